//! bash process substitution on top of the synchronous spawn import: `<(cmd)` runs `cmd` first,
//! its output captured into a scratch file whose name the word expands to; `>(cmd)` expands to
//! an empty scratch file and runs `cmd` on what was written there once the command that used
//! it has ended. The files go to `$TMPDIR`, `/tmp` or the working directory, and are removed
//! when that command ends. There are no pipes between the two sides, so both ends must finish
//! (a `<(yes)` never does).

use crate::ast::Program;
use crate::exec::{Flow, In, InFile, Shell};
use std::cell::RefCell;
use std::rc::Rc;

/// A scratch file made for a process substitution, and for `>(…)` the command to feed it to.
pub struct ProcSubFile {
    path: String,
    reader: Option<Rc<Program>>,
}

impl Shell {
    fn scratch_path(&mut self) -> String {
        let dir = match self.get_var("TMPDIR") {
            Some(d) if std::path::Path::new(&d).is_dir() => d,
            _ if std::path::Path::new("/tmp").is_dir() => "/tmp".into(),
            _ => self.cwd.clone(),
        };
        let n = self.next_random() & 0xffff_ffff;
        format!("{}/.wasmbox-procsub-{n:08x}", dir.trim_end_matches('/'))
    }

    /// Expand `<(prog)` / `>(prog)` to a file name.
    pub fn process_subst(&mut self, prog: &Rc<Program>, output: bool) -> Result<String, Flow> {
        let path = self.scratch_path();
        let data = if output {
            Vec::new()
        } else {
            let buf = Rc::new(RefCell::new(Vec::new()));
            let b2 = buf.clone();
            self.subshell(move |sh| {
                sh.io.stdout = crate::exec::Out::Capture(b2);
                sh.exec_program(prog)
            })?;
            let v = std::mem::take(&mut *buf.borrow_mut());
            v
        };
        if let Err(e) = std::fs::write(&path, data) {
            let m = format!(
                "process substitution: cannot create {path}: {}",
                crate::exec::io_err_msg(&e)
            );
            self.errmsg(&m);
            return Err(Flow::Exit(1));
        }
        self.procsubs.push(ProcSubFile {
            path: path.clone(),
            reader: output.then(|| prog.clone()),
        });
        Ok(path)
    }

    /// After a command: feed `>(…)` readers and remove the files made since `mark`.
    pub fn finish_procsubs(&mut self, mark: usize) {
        if self.procsubs.len() <= mark {
            return;
        }
        let done: Vec<ProcSubFile> = self.procsubs.drain(mark..).collect();
        for f in done {
            if let Some(prog) = f.reader {
                if let Ok(file) = std::fs::File::open(&f.path) {
                    let input = In::File(Rc::new(InFile {
                        path: f.path.clone(),
                        file: RefCell::new(file),
                        buf: RefCell::new((Vec::new(), 0, 0)),
                    }));
                    let _ = self.subshell(move |sh| {
                        sh.io.stdin = input;
                        sh.exec_program(&prog)
                    });
                }
            }
            let _ = std::fs::remove_file(&f.path);
        }
    }
}
