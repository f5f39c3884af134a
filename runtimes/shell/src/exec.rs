//! The executor: shell state, I/O contexts, compound commands, pipelines and spawning.

use crate::ast::*;
use crate::parse::{self, is_name, Parser};
use crate::spawn::{Input, Output, OutputMode, Request, Response, Spawner, Stage};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::rc::Rc;

/// How long buffered stdout may wait before it is written (see [`Shell::flush_soon`]).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Maximum function-call nesting inside one shell instance.
pub const MAX_FUNC_DEPTH: usize = 300;

pub use crate::vars::{Value, Var};

#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub errexit: bool,
    pub nounset: bool,
    pub xtrace: bool,
    pub noglob: bool,
    pub pipefail: bool,
    pub noclobber: bool,
    pub allexport: bool,
}

/// An output file opened by the shell itself (redirection of a builtin or compound command).
pub struct OutFile {
    pub path: String,
    pub file: RefCell<std::fs::File>,
}

/// An input file opened by the shell, read through a small buffer; `pos` is the logical offset.
pub struct InFile {
    pub path: String,
    pub file: RefCell<std::fs::File>,
    pub buf: RefCell<(Vec<u8>, usize, u64)>, // (buffer, index in buffer, file offset of buffer start)
}

#[derive(Clone)]
pub enum Out {
    Fd1,
    Fd2,
    File(Rc<OutFile>),
    Capture(Rc<RefCell<Vec<u8>>>),
    /// The write end of a named pipe, held open by this shell.
    Fifo(Rc<crate::spawn::FifoEnd>),
    Null,
}

#[derive(Clone)]
pub enum In {
    Fd0,
    File(Rc<InFile>),
    /// The read end of a named pipe, held open by this shell (read a byte at a time, so that
    /// what a builtin does not read stays in the pipe).
    Fifo(Rc<crate::spawn::FifoEnd>),
    Data(Rc<RefCell<(Vec<u8>, usize)>>),
    Null,
}

#[derive(Clone)]
pub struct Io {
    pub stdin: In,
    pub stdout: Out,
    pub stderr: Out,
    /// Descriptors 3–9 opened by redirections (`exec 3>file`, `{ …; } 4<in`).
    pub extra: std::collections::BTreeMap<u32, Fd>,
}

/// What an extra descriptor refers to.
#[derive(Clone)]
pub enum Fd {
    In(In),
    Out(Out),
}

/// The bash release whose behaviour bash mode follows (and the table is recorded from).
const BASH_VERSION: &str = "5.2.15(1)-release";

/// The highest descriptor a redirection may name.
const MAX_FD: u32 = 9;

/// Non-local control flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    Exit(i32),
    Return(i32),
    Break(usize),
    Continue(usize),
}

pub type R = Result<i32, Flow>;

/// State saved around a subshell run in-process.
/// An external pipeline stage: its argv, environment and redirections.
type External<'a> = (Vec<String>, Vec<(String, String)>, &'a [Redir]);

struct Saved {
    vars: HashMap<String, Var>,
    funcs: HashMap<String, Rc<Command>>,
    params: Vec<String>,
    opts: Opts,
    cwd: String,
    exit_trap: Option<String>,
    locals: Vec<Vec<(String, Option<Var>)>>,
    io: Io,
}

pub struct Shell {
    pub vars: HashMap<String, Var>,
    pub funcs: HashMap<String, Rc<Command>>,
    pub params: Vec<String>,
    pub arg0: String,
    pub status: i32,
    pub opts: Opts,
    pub io: Io,
    pub spawner: Box<dyn Spawner>,
    pub locals: Vec<Vec<(String, Option<Var>)>>,
    pub loop_depth: usize,
    pub errexit_off: usize,
    pub exit_trap: Option<String>,
    pub bash: bool,
    pub cwd: String,
    pub func_depth: usize,
    pub subst_status: Option<i32>,
    pub line: usize,
    out_buf: Vec<u8>,
    /// `alias` definitions (expanded with `shopt -s expand_aliases`).
    pub aliases: std::collections::BTreeMap<String, String>,
    /// `pushd`/`popd`: the stacked directories, most recent last.
    pub dir_stack: Vec<String>,
    /// bash's ERR and RETURN traps.
    pub bash_traps: std::collections::BTreeMap<String, String>,
    /// Aliases being expanded (an alias is not expanded inside itself).
    alias_active: Vec<String>,
    /// `$_`: the last argument of the previous simple command.
    pub last_arg: String,
    /// Scratch files of process substitutions still in use.
    pub procsubs: Vec<crate::procsub::ProcSubFile>,
    /// When the shell started (`$SECONDS`).
    pub started: std::time::Instant,
    /// Background jobs (`list &`), `$!`.
    pub jobs: crate::jobs::Jobs,
    /// The last status came from an and-or list whose final pipeline was skipped
    /// (`false && x`): `set -e` ignores it, also when it ends a `{ …; }` or a function.
    errexit_exempt: bool,
    /// When `out_buf` was last written out (see [`Shell::flush_soon`]).
    last_flush: std::time::Instant,
    pub getopts_pos: usize,
    pub rand_state: u64,
    /// The name used in messages ("sh" or "bash").
    pub name: String,
    pub pending_captures: Vec<(Sink, Sink)>,
    /// bash `shopt` settings.
    pub shopt: crate::builtins::shopt::Shopt,
}

pub fn io_err_msg(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "No such file or directory".into(),
        PermissionDenied => "Permission denied".into(),
        AlreadyExists => "File exists".into(),
        IsADirectory => "Is a directory".into(),
        NotADirectory => "Not a directory".into(),
        DirectoryNotEmpty => "Directory not empty".into(),
        ReadOnlyFilesystem => "Read-only file system".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// Writing to a pipe whose reader is gone: a real shell dies of SIGPIPE (status 141). There are
/// no signals in WASI, so end the instance the same way.
pub fn broken_pipe_exit(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        crate::spawn::exit_process(141);
    }
}

/// Quote a string for sh.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%^".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Lexically normalise an absolute path (resolve `.` and `..`).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// May this file be run? Natively: an execute bit. WASI has no permission bits, so every
/// file may.
fn is_executable(p: &std::path::Path) -> bool {
    crate::modes::is_executable(p)
}

/// Programs the host can start (the applets of this module, sh itself, python, node, go) or
/// answers itself (pip).
pub fn is_known_program(name: &str) -> bool {
    matches!(
        name,
        "python" | "python3" | "node" | "nodejs" | "go" | "pip" | "pip3"
    ) || crate::applets::is_applet(name)
}

impl Shell {
    pub fn new(spawner: Box<dyn Spawner>, bash: bool) -> Shell {
        let mut vars = HashMap::new();
        for (k, v) in std::env::vars() {
            if is_name(&k) {
                vars.insert(k, Var::scalar(&v, true));
            }
        }
        let cwd = match vars.get("PWD") {
            Some(Var {
                value: Value::Str(v),
                ..
            }) if v.starts_with('/') => normalize(v),
            _ => std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/".into()),
        };
        let mut sh = Shell {
            vars,
            funcs: HashMap::new(),
            params: Vec::new(),
            arg0: if bash { "bash".into() } else { "sh".into() },
            status: 0,
            opts: Opts::default(),
            io: Io {
                stdin: In::Fd0,
                stdout: Out::Fd1,
                stderr: Out::Fd2,
                extra: Default::default(),
            },
            spawner,
            locals: Vec::new(),
            loop_depth: 0,
            errexit_off: 0,
            exit_trap: None,
            bash,
            cwd: cwd.clone(),
            func_depth: 0,
            subst_status: None,
            line: 0,
            out_buf: Vec::new(),
            last_flush: std::time::Instant::now(),
            errexit_exempt: false,
            jobs: Default::default(),
            started: std::time::Instant::now(),
            procsubs: Vec::new(),
            last_arg: String::new(),
            aliases: Default::default(),
            dir_stack: Vec::new(),
            bash_traps: Default::default(),
            alias_active: Vec::new(),
            getopts_pos: 0,
            rand_state: 0x2545F4914F6CDD1D
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
            name: if bash { "bash".into() } else { "sh".into() },
            pending_captures: Vec::new(),
            shopt: Default::default(),
        };
        let _ = std::env::set_current_dir(&cwd);
        sh.set_var_exported("PWD", &cwd);
        for (k, v) in [
            ("IFS", " \t\n"),
            ("PS1", "$ "),
            ("PS2", "> "),
            ("PS4", "+ "),
            ("OPTIND", "1"),
        ] {
            if !sh.vars.contains_key(k) {
                sh.vars.insert(k.into(), Var::scalar(v, false));
            }
        }
        if bash {
            // what scripts test for to know they run under bash
            for (k, v) in [
                ("BASH", "/bin/bash"),
                ("BASH_VERSION", BASH_VERSION),
                ("HOSTNAME", crate::applets::UNAME_NODENAME),
                ("OSTYPE", "linux-gnu"),
                ("MACHTYPE", "wasm32-unknown-wasi"),
            ] {
                sh.vars
                    .entry(k.into())
                    .or_insert_with(|| Var::scalar(v, false));
            }
            // the user's number, as `id -u` gives it
            let uid = crate::applets::uid().to_string();
            for k in ["UID", "EUID"] {
                sh.vars
                    .entry(k.into())
                    .or_insert_with(|| Var::scalar(&uid, false));
            }
            let info = ["5", "2", "15", "1", "release", "wasm32-unknown-wasi"]
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64, v.to_string()))
                .collect();
            sh.put("BASH_VERSINFO", Value::Indexed(info));
        }
        if !sh.vars.contains_key("PATH") {
            sh.vars.insert(
                "PATH".into(),
                Var::scalar("/usr/local/bin:/usr/bin:/bin", true),
            );
        }
        sh
    }

    // ------------------------------------------------------------ variables

    pub fn get_var(&self, name: &str) -> Option<String> {
        self.vars
            .get(&self.resolve_name(name))
            .and_then(|v| v.text().map(str::to_string))
    }

    pub fn set_var(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name == "RANDOM" && self.bash {
            // seeding: the same seed gives the same sequence
            let seed = value.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
            });
            self.rand_state = seed | 1;
            return Ok(());
        }
        let resolved = self.resolve_name(name);
        let name = resolved.as_str();
        match self.vars.get_mut(name) {
            Some(v) => {
                if v.readonly {
                    return Err(if self.bash {
                        format!("{name}: readonly variable")
                    } else {
                        format!("{name}: is read only")
                    });
                }
                if v.is_array() || v.attrs != crate::vars::Attrs::default() {
                    return self.assign_elem(name, "0", value, false);
                }
                v.value = Value::Str(value.to_string());
            }
            None => {
                let exported = self.opts.allexport;
                self.vars
                    .insert(name.to_string(), Var::scalar(value, exported));
            }
        }
        if name == "OPTIND" {
            self.getopts_pos = 0;
        }
        Ok(())
    }

    fn set_var_exported(&mut self, name: &str, value: &str) {
        let v = self
            .vars
            .entry(name.to_string())
            .or_insert_with(|| Var::scalar("", true));
        v.value = Value::Str(value.to_string());
        v.exported = true;
    }

    pub fn unset_var(&mut self, name: &str) -> Result<(), String> {
        if let Some(v) = self.vars.get(name) {
            if v.readonly {
                return Err(format!("{name}: is read only"));
            }
        }
        self.vars.remove(name);
        Ok(())
    }

    pub fn exported_env(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(_, v)| v.exported && !v.is_array())
            .map(|(k, v)| (k.clone(), v.text().unwrap_or_default().to_string()))
            .collect();
        v.sort();
        v
    }

    pub fn next_random(&mut self) -> u64 {
        let mut x = self.rand_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rand_state = x;
        x
    }

    // ------------------------------------------------------------ output

    /// Write buffered stdout if it has waited long enough. Called after every and-or list:
    /// a script killed at its deadline (the host stops the instance, nothing runs after) then
    /// loses at most the last few milliseconds of output, while a loop printing many lines
    /// still makes few writes.
    /// While background jobs run, their output and the shell's interleave as they happen, so
    /// nothing is held back then.
    pub fn flush_soon(&mut self) {
        if !self.out_buf.is_empty()
            && (self.last_flush.elapsed() >= FLUSH_EVERY || self.jobs.any_running())
        {
            self.flush_stdout();
        }
    }

    pub fn flush_stdout(&mut self) {
        self.last_flush = std::time::Instant::now();
        if !self.out_buf.is_empty() {
            let mut o = std::io::stdout().lock();
            let r = o.write_all(&self.out_buf).and_then(|_| o.flush());
            self.out_buf.clear();
            drop(o);
            if let Err(e) = r {
                broken_pipe_exit(&e);
            }
        }
    }

    pub(crate) fn write_to(&mut self, out: &Out, data: &[u8]) -> bool {
        match out {
            Out::Fd1 => {
                self.out_buf.extend_from_slice(data);
                if self.out_buf.len() > 16 * 1024 {
                    self.flush_stdout();
                }
                true
            }
            Out::Fd2 => {
                self.flush_stdout();
                let mut e = std::io::stderr().lock();
                match e.write_all(data) {
                    Ok(()) => true,
                    Err(err) => {
                        drop(e);
                        broken_pipe_exit(&err);
                        false
                    }
                }
            }
            Out::File(f) => f.file.borrow_mut().write_all(data).is_ok(),
            Out::Fifo(f) => {
                self.flush_stdout(); // the write may wait for a reader
                let written = f.write_all(data);
                match written {
                    Ok(()) => true,
                    Err(e) => {
                        broken_pipe_exit(&e);
                        false
                    }
                }
            }
            Out::Capture(b) => {
                b.borrow_mut().extend_from_slice(data);
                true
            }
            Out::Null => true,
        }
    }

    pub fn out(&mut self, s: &str) -> bool {
        let o = self.io.stdout.clone();
        self.write_to(&o, &crate::bytes::encode(s))
    }

    pub fn out_bytes(&mut self, s: &[u8]) -> bool {
        let o = self.io.stdout.clone();
        self.write_to(&o, s)
    }

    pub fn err(&mut self, s: &str) {
        let o = self.io.stderr.clone();
        self.write_to(&o, &crate::bytes::encode(s));
    }

    /// `sh: MESSAGE` on the current stderr.
    pub fn errmsg(&mut self, msg: &str) {
        let s = format!("{}: {}\n", self.name, msg);
        self.err(&s);
    }

    // ------------------------------------------------------------ input

    /// Read one byte from the current stdin (unbuffered for fd 0 so that children see the rest).
    pub fn read_byte(&mut self) -> Option<u8> {
        match &self.io.stdin {
            In::Fd0 => {
                self.flush_stdout();
                let mut b = [0u8; 1];
                // SAFETY: fd 0 stays open for the life of the process and ManuallyDrop never
                // closes it; a raw File (not io::stdin) reads without read-ahead.
                let mut f = std::mem::ManuallyDrop::new(unsafe {
                    <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(0)
                });
                loop {
                    match f.read(&mut b) {
                        Ok(0) => return None,
                        Ok(_) => return Some(b[0]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return None,
                    }
                }
            }
            In::File(f) => {
                let mut buf = f.buf.borrow_mut();
                if buf.1 >= buf.0.len() {
                    let start = buf.2 + buf.0.len() as u64;
                    let mut chunk = vec![0u8; 8192];
                    let n = f.file.borrow_mut().read(&mut chunk).unwrap_or(0);
                    chunk.truncate(n);
                    *buf = (chunk, 0, start);
                    if n == 0 {
                        return None;
                    }
                }
                let b = buf.0[buf.1];
                buf.1 += 1;
                Some(b)
            }
            In::Data(d) => {
                let mut d = d.borrow_mut();
                if d.1 < d.0.len() {
                    let b = d.0[d.1];
                    d.1 += 1;
                    Some(b)
                } else {
                    None
                }
            }
            In::Fifo(f) => {
                let f = f.clone();
                self.flush_stdout(); // the read may wait for a writer
                let mut b = [0u8; 1];
                match f.read(&mut b) {
                    Ok(1) => Some(b[0]),
                    _ => None,
                }
            }
            In::Null => None,
        }
    }

    // ------------------------------------------------------------ running scripts

    /// Run a whole script, parsing it one top-level command at a time (like dash).
    pub fn run_script(&mut self, src: &str) -> i32 {
        let mut p = Parser::new(src);
        if !self.bash {
            p = p.posix();
        }
        loop {
            let prog = match p.next_complete_command() {
                Ok(Some(prog)) => prog,
                Ok(None) => break,
                Err(e) => {
                    self.errmsg(&e.to_string());
                    self.status = 2;
                    return self.finish(2);
                }
            };
            self.line = p.line();
            match self.exec_program(&prog) {
                Ok(_) => {}
                Err(Flow::Exit(n)) => return self.finish(n),
                Err(Flow::Return(n)) => {
                    // `return` outside a function: like dash, end the script
                    self.status = n;
                    return self.finish(n);
                }
                Err(Flow::Break(_)) | Err(Flow::Continue(_)) => {}
            }
        }
        let st = self.status;
        self.finish(st)
    }

    /// Run the EXIT trap and flush; returns the final status.
    pub fn finish(&mut self, status: i32) -> i32 {
        self.status = status;
        if let Some(t) = self.exit_trap.take() {
            if let Ok(prog) = parse::parse(&t) {
                let _ = self.exec_program(&prog);
            }
        }
        self.flush_stdout();
        status
    }

    pub fn exec_program(&mut self, p: &Program) -> R {
        let mut st = self.status;
        for ao in &p.items {
            st = if ao.background {
                self.run_background(ao)
            } else {
                self.exec_and_or(ao)?
            };
        }
        Ok(st)
    }

    pub(crate) fn exec_and_or(&mut self, ao: &AndOr) -> R {
        let r = self.exec_and_or_inner(ao);
        self.flush_soon();
        r
    }

    fn exec_and_or_inner(&mut self, ao: &AndOr) -> R {
        let n = ao.rest.len();
        if n > 0 {
            self.errexit_off += 1;
        }
        let r = self.exec_pipeline(&ao.first);
        let mut st = match r {
            Ok(s) => s,
            Err(e) => {
                if n > 0 {
                    self.errexit_off -= 1;
                }
                return Err(e);
            }
        };
        let mut last_bang = ao.first.bang;
        for (i, (op, p)) in ao.rest.iter().enumerate() {
            let run = match op {
                AndOrOp::And => st == 0,
                AndOrOp::Or => st != 0,
            };
            if !run {
                continue;
            }
            let is_last = i == n - 1;
            if is_last {
                self.errexit_off -= 1;
            }
            let r = self.exec_pipeline(p);
            if !is_last {
                if let Err(e) = r {
                    self.errexit_off -= 1;
                    return Err(e);
                }
            }
            st = r?;
            last_bang = p.bang;
            if is_last {
                // errexit applies to the last pipeline
                self.status = st;
                if st != 0 && self.errexit_off == 0 && !last_bang {
                    self.run_err_trap(st)?;
                    if self.opts.errexit {
                        return Err(Flow::Exit(st));
                    }
                }
                return Ok(st);
            }
        }
        if n > 0 {
            // the last pipeline was skipped: errexit does not apply
            self.errexit_off -= 1;
            self.status = st;
            self.errexit_exempt = true;
            return Ok(st);
        }
        self.status = st;
        if st != 0 && self.errexit_off == 0 && !last_bang && !self.errexit_exempt {
            self.run_err_trap(st)?;
            if self.opts.errexit {
                return Err(Flow::Exit(st));
            }
        }
        Ok(st)
    }

    /// bash `trap … ERR`: run after a command fails where `set -e` would act.
    fn run_err_trap(&mut self, st: i32) -> Result<(), Flow> {
        self.run_bash_trap("ERR")?;
        self.status = st;
        Ok(())
    }

    /// Run bash's trap for `name` (ERR, RETURN) if one is set; not inside itself.
    fn run_bash_trap(&mut self, name: &str) -> Result<(), Flow> {
        let Some(action) = self.bash_traps.remove(name) else {
            return Ok(());
        };
        let st = self.status;
        let r = match parse::parse(&action) {
            Ok(prog) => self.exec_program(&prog).map(|_| ()),
            Err(_) => Ok(()),
        };
        self.bash_traps.entry(name.to_string()).or_insert(action);
        self.status = st;
        r
    }

    fn exec_pipeline(&mut self, p: &Pipeline) -> R {
        let mark = self.procsubs.len();
        let start = std::time::Instant::now();
        let r = self.exec_pipeline_inner(p);
        self.finish_procsubs(mark);
        if p.timed {
            // wall-clock only: the sandbox has no per-process CPU accounting to report
            let t = start.elapsed().as_secs_f64();
            let m = (t / 60.0).floor();
            let s = format!(
                "\nreal\t{}m{:.3}s\nuser\t0m0.000s\nsys\t0m0.000s\n",
                m,
                t - m * 60.0
            );
            self.err(&s);
        }
        r
    }

    fn exec_pipeline_inner(&mut self, p: &Pipeline) -> R {
        self.errexit_exempt = false;
        if p.bang {
            self.errexit_off += 1;
        }
        let r = if p.cmds.len() == 1 {
            self.exec_command(&p.cmds[0])
        } else {
            self.exec_multi(&p.cmds)
        };
        if p.bang {
            self.errexit_off -= 1;
        }
        let st = r?;
        if self.bash && p.cmds.len() == 1 {
            self.set_pipestatus(&[st]);
        }
        let st = if p.bang { (st == 0) as i32 } else { st };
        self.status = st;
        Ok(st)
    }

    pub fn exec_command(&mut self, c: &Command) -> R {
        let mark = self.procsubs.len();
        let r = self.exec_command_inner(c);
        self.finish_procsubs(mark);
        r
    }

    fn exec_command_inner(&mut self, c: &Command) -> R {
        match c {
            Command::Simple(s) => self.exec_simple(s),
            Command::Compound(cc, redirs) => {
                let saved = self.io.clone();
                if let Err(msg) = self.apply_redirs(redirs) {
                    self.io = saved;
                    self.errmsg(&msg);
                    self.status = 1;
                    return Ok(1);
                }
                let r = self.exec_compound(cc);
                self.io = saved;
                r
            }
            Command::FuncDef(name, body) => {
                self.funcs.insert(name.clone(), body.clone());
                self.status = 0;
                Ok(0)
            }
        }
    }

    fn cond(&mut self, p: &Program) -> R {
        self.errexit_off += 1;
        let r = self.exec_program(p);
        self.errexit_off -= 1;
        r
    }

    fn exec_compound(&mut self, c: &Compound) -> R {
        match c {
            Compound::Brace(p) => self.exec_program(p),
            Compound::Subshell(p) => self.subshell(|sh| sh.exec_program(p)),
            Compound::If { branches, else_ } => {
                for (c, b) in branches {
                    if self.cond(c)? == 0 {
                        return self.exec_program(b);
                    }
                }
                match else_ {
                    Some(e) => self.exec_program(e),
                    None => {
                        self.status = 0;
                        Ok(0)
                    }
                }
            }
            Compound::For { var, words, body } => {
                let items = match words {
                    Some(ws) => self.expand_words(ws)?,
                    None => self.params.clone(),
                };
                let mut st = 0;
                self.loop_depth += 1;
                for it in items {
                    if let Err(m) = self.set_var(var, &it) {
                        self.errmsg(&m);
                        self.loop_depth -= 1;
                        return Err(Flow::Exit(2));
                    }
                    match self.exec_program(body) {
                        Ok(s) => st = s,
                        Err(Flow::Break(n)) => {
                            if n > 1 {
                                self.loop_depth -= 1;
                                return Err(Flow::Break(n - 1));
                            }
                            st = 0;
                            break;
                        }
                        Err(Flow::Continue(n)) => {
                            if n > 1 {
                                self.loop_depth -= 1;
                                return Err(Flow::Continue(n - 1));
                            }
                            st = 0;
                        }
                        Err(e) => {
                            self.loop_depth -= 1;
                            return Err(e);
                        }
                    }
                }
                self.loop_depth -= 1;
                self.status = st;
                Ok(st)
            }
            Compound::While { cond, body, until } => {
                let mut st = 0;
                self.loop_depth += 1;
                loop {
                    let c = match self.cond(cond) {
                        Ok(c) => c,
                        Err(Flow::Break(n)) => {
                            self.loop_depth -= 1;
                            if n > 1 {
                                return Err(Flow::Break(n - 1));
                            }
                            break;
                        }
                        Err(Flow::Continue(n)) => {
                            if n > 1 {
                                self.loop_depth -= 1;
                                return Err(Flow::Continue(n - 1));
                            }
                            continue;
                        }
                        Err(e) => {
                            self.loop_depth -= 1;
                            return Err(e);
                        }
                    };
                    if (c == 0) == *until {
                        self.loop_depth -= 1;
                        break;
                    }
                    match self.exec_program(body) {
                        Ok(s) => st = s,
                        Err(Flow::Break(n)) => {
                            self.loop_depth -= 1;
                            if n > 1 {
                                return Err(Flow::Break(n - 1));
                            }
                            st = 0;
                            break;
                        }
                        Err(Flow::Continue(n)) => {
                            if n > 1 {
                                self.loop_depth -= 1;
                                return Err(Flow::Continue(n - 1));
                            }
                        }
                        Err(e) => {
                            self.loop_depth -= 1;
                            return Err(e);
                        }
                    }
                }
                self.status = st;
                Ok(st)
            }
            Compound::Case { word, arms } => {
                let subject = self.expand_string(word)?;
                let subj: Vec<char> = subject.chars().collect();
                let mut matched = false;
                let mut st = 0;
                for arm in arms {
                    if !matched {
                        for p in &arm.patterns {
                            let pat = self.expand_pattern(p)?;
                            if crate::expand::pat_match(&pat, &subj) {
                                matched = true;
                                break;
                            }
                        }
                    }
                    if matched {
                        st = self.exec_program(&arm.body)?;
                        if arm.test_next {
                            matched = false;
                        } else if !arm.fallthrough {
                            break;
                        }
                    }
                }
                self.status = st;
                Ok(st)
            }
            Compound::ArithFor {
                init,
                cond,
                step,
                body,
            } => {
                let e = self.expand_string(init)?;
                if !e.trim().is_empty() {
                    self.arith(&e)?;
                }
                self.loop_depth += 1;
                let r = self.arith_for_loop(cond, step, body);
                self.loop_depth -= 1;
                let st = r?;
                self.status = st;
                Ok(st)
            }
            Compound::Arith(w) => {
                let s = self.expand_string(w)?;
                let v = self.arith(&s)?;
                Ok((v == 0) as i32)
            }
            Compound::Test(words) => self.dbl_bracket(words),
        }
    }

    /// bash `PIPESTATUS`: the statuses of the last pipeline's commands.
    fn set_pipestatus(&mut self, statuses: &[i32]) {
        let m = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64, s.to_string()))
            .collect();
        self.put("PIPESTATUS", Value::Indexed(m));
    }

    /// The iterations of `for ((…))` (after init), with break/continue.
    fn arith_for_loop(&mut self, cond: &Word, step: &Word, body: &Program) -> R {
        let mut st = 0;
        loop {
            let c = self.expand_string(cond)?;
            if !c.trim().is_empty() && self.arith(&c)? == 0 {
                return Ok(st);
            }
            match self.exec_program(body) {
                Ok(s) => st = s,
                Err(Flow::Break(n)) => {
                    return if n > 1 {
                        Err(Flow::Break(n - 1))
                    } else {
                        Ok(0)
                    };
                }
                Err(Flow::Continue(n)) if n > 1 => return Err(Flow::Continue(n - 1)),
                Err(Flow::Continue(_)) => {}
                Err(e) => return Err(e),
            }
            let s = self.expand_string(step)?;
            if !s.trim().is_empty() {
                self.arith(&s)?;
            }
        }
    }

    /// Run `f` as a subshell in this instance: variables, functions, options, cwd and traps are
    /// restored afterwards; `exit` ends only the subshell.
    pub fn subshell<F: FnOnce(&mut Shell) -> R>(&mut self, f: F) -> R {
        self.subshell_keeping_jobs(false, f)
    }

    /// [`Shell::subshell`]; with `keep_jobs` it sees this shell's background jobs (a command
    /// substitution does in bash, `( … )` does not).
    fn subshell_keeping_jobs<F: FnOnce(&mut Shell) -> R>(&mut self, keep_jobs: bool, f: F) -> R {
        let saved = Saved {
            vars: self.vars.clone(),
            funcs: self.funcs.clone(),
            params: self.params.clone(),
            opts: self.opts.clone(),
            cwd: self.cwd.clone(),
            exit_trap: self.exit_trap.take(),
            locals: std::mem::take(&mut self.locals),
            io: self.io.clone(),
        };
        let loop_depth = std::mem::replace(&mut self.loop_depth, 0);
        let func_depth = self.func_depth;
        let errexit_off = self.errexit_off;
        let jobs = self.jobs.enter_subshell(keep_jobs);
        let r = f(self);
        let st = match r {
            Ok(s) => s,
            Err(Flow::Exit(s)) => s,
            Err(Flow::Return(s)) => s,
            Err(_) => self.status,
        };
        // the subshell's EXIT trap runs at its end
        if let Some(t) = self.exit_trap.take() {
            if let Ok(prog) = parse::parse(&t) {
                let _ = self.exec_program(&prog);
            }
        }
        self.vars = saved.vars;
        self.funcs = saved.funcs;
        self.params = saved.params;
        self.opts = saved.opts;
        if self.cwd != saved.cwd {
            let _ = std::env::set_current_dir(&saved.cwd);
        }
        self.cwd = saved.cwd;
        self.exit_trap = saved.exit_trap;
        self.locals = saved.locals;
        self.io = saved.io;
        self.loop_depth = loop_depth;
        self.func_depth = func_depth;
        self.errexit_off = errexit_off;
        self.jobs.leave_subshell(jobs);
        self.status = st;
        Ok(st)
    }

    /// `$(…)`: run in a subshell with stdout captured; trailing newlines removed.
    pub fn command_subst(&mut self, p: &Program) -> Result<String, Flow> {
        if let Some(r) = self.read_file_subst(p) {
            return r;
        }
        let buf = Rc::new(RefCell::new(Vec::new()));
        let b2 = buf.clone();
        // `$(jobs)` lists this shell's jobs, as in bash
        let st = self.subshell_keeping_jobs(true, move |sh| {
            sh.io.stdout = Out::Capture(b2);
            sh.exec_program(p)
        })?;
        self.subst_status = Some(st);
        let mut v = std::mem::take(&mut *buf.borrow_mut());
        while v.last() == Some(&b'\n') {
            v.pop();
        }
        Ok(crate::bytes::decode(&v))
    }

    /// `$(< file)`: the file's contents (trailing newlines removed), without running anything.
    fn read_file_subst(&mut self, p: &Program) -> Option<Result<String, Flow>> {
        let [ao] = p.items.as_slice() else {
            return None;
        };
        let [Command::Simple(s)] = ao.first.cmds.as_slice() else {
            return None;
        };
        let [r] = s.redirs.as_slice() else {
            return None;
        };
        if !ao.rest.is_empty() || !s.words.is_empty() || !s.assigns.is_empty() {
            return None;
        }
        if r.op != RedirOp::In || r.fd.is_some_and(|fd| fd != 0) {
            return None;
        }
        let name = match self.expand_string(&r.target) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        Some(match std::fs::read(self.abs_path(&name)) {
            Ok(mut v) => {
                while v.last() == Some(&b'\n') {
                    v.pop();
                }
                self.subst_status = Some(0);
                Ok(crate::bytes::decode(&v))
            }
            Err(e) => {
                self.errmsg(&format!("{name}: {}", io_err_msg(&e)));
                self.subst_status = Some(1);
                Ok(String::new())
            }
        })
    }

    // ------------------------------------------------------------ redirections (in-shell)

    /// The absolute path of `path` when it names a named pipe the host keeps.
    fn host_fifo(&self, path: &str) -> Option<String> {
        let abs = self.abs_path(path);
        crate::modes::is_host_fifo(std::path::Path::new(&abs)).then_some(abs)
    }

    fn abs_path(&self, p: &str) -> String {
        if p.starts_with('/') {
            p.to_string()
        } else if self.cwd == "/" {
            format!("/{p}")
        } else {
            format!("{}/{}", self.cwd, p)
        }
    }

    fn open_out(&self, path: &str, append: bool) -> Result<Out, String> {
        self.open_out_mode(path, append, false)
    }

    /// `clobber`: `>|` writes even under `set -C`.
    fn open_out_mode(&self, path: &str, append: bool, clobber: bool) -> Result<Out, String> {
        if path == "/dev/null" {
            return Ok(Out::Null);
        }
        if path == "/dev/stdout" {
            return Ok(self.io.stdout.clone());
        }
        if path == "/dev/stderr" {
            return Ok(self.io.stderr.clone());
        }
        if let Some(abs) = self.host_fifo(path) {
            return crate::spawn::FifoEnd::open(&abs, true)
                .map(|f| Out::Fifo(Rc::new(f)))
                .map_err(|e| format!("cannot create {path}: {}", io_err_msg(&e)));
        }
        let abs = self.abs_path(path);
        if self.opts.noclobber && !append && !clobber && std::path::Path::new(&abs).is_file() {
            return Err(format!("cannot create {path}: File exists"));
        }
        let mut o = std::fs::OpenOptions::new();
        if append {
            o.append(true).create(true);
        } else {
            o.write(true).create(true).truncate(true);
        }
        match o.open(&abs) {
            Ok(f) => Ok(Out::File(Rc::new(OutFile {
                path: abs,
                file: RefCell::new(f),
            }))),
            Err(e) => Err(format!("cannot create {path}: {}", io_err_msg(&e))),
        }
    }

    fn open_in(&self, path: &str) -> Result<In, String> {
        if path == "/dev/null" {
            return Ok(In::Null);
        }
        if path == "/dev/stdin" {
            return Ok(self.io.stdin.clone());
        }
        if let Some(abs) = self.host_fifo(path) {
            return crate::spawn::FifoEnd::open(&abs, false)
                .map(|f| In::Fifo(Rc::new(f)))
                .map_err(|e| format!("cannot open {path}: {}", io_err_msg(&e)));
        }
        let abs = self.abs_path(path);
        match std::fs::File::open(&abs) {
            Ok(f) => {
                if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    return Err(format!("{path}: Is a directory"));
                }
                Ok(In::File(Rc::new(InFile {
                    path: abs,
                    file: RefCell::new(f),
                    buf: RefCell::new((Vec::new(), 0, 0)),
                })))
            }
            Err(e) => Err(format!("cannot open {path}: {}", io_err_msg(&e))),
        }
    }

    fn heredoc_text(&mut self, hd: &Rc<RefCell<HereDoc>>) -> Result<String, Flow> {
        let h = hd.borrow().clone();
        match &h.parts {
            Some(parts) => self.expand_parts_string(parts),
            None => Ok(h.raw.clone()),
        }
    }

    /// Apply redirections to `self.io` (for builtins, functions and compound commands).
    /// Err carries the message (without the `sh: ` prefix).
    pub fn apply_redirs(&mut self, redirs: &[Redir]) -> Result<(), String> {
        for r in redirs {
            let fd = r.fd.unwrap_or(match r.op {
                RedirOp::In
                | RedirOp::DupIn
                | RedirOp::HereDoc(_)
                | RedirOp::HereString
                | RedirOp::ReadWrite => 0,
                _ => 1,
            });
            if fd > MAX_FD {
                return Err(format!("{fd}: bad file descriptor"));
            }
            match &r.op {
                RedirOp::HereDoc(hd) => {
                    let t = self
                        .heredoc_text(hd)
                        .map_err(|_| "here-document expansion failed".to_string())?;
                    self.set_in(fd, In::Data(Rc::new(RefCell::new((t.into_bytes(), 0)))))?;
                }
                RedirOp::HereString => {
                    let mut t = self
                        .expand_string(&r.target)
                        .map_err(|_| "expansion failed".to_string())?;
                    t.push('\n');
                    self.set_in(fd, In::Data(Rc::new(RefCell::new((t.into_bytes(), 0)))))?;
                }
                op => {
                    let target = self
                        .expand_string(&r.target)
                        .map_err(|_| "expansion failed".to_string())?;
                    match op {
                        RedirOp::In => {
                            let i = self.open_in(&target)?;
                            self.set_in(fd, i)?;
                        }
                        RedirOp::ReadWrite => {
                            let abs = self.abs_path(&target);
                            std::fs::OpenOptions::new()
                                .read(true)
                                .write(true)
                                .create(true)
                                .truncate(false)
                                .open(&abs)
                                .map_err(|e| format!("cannot open {target}: {}", io_err_msg(&e)))?;
                            let i = self.open_in(&target)?;
                            self.set_in(fd, i)?;
                        }
                        RedirOp::Clobber => {
                            let o = self.open_out_mode(&target, false, true)?;
                            self.set_out(fd, o)?;
                        }
                        RedirOp::Out | RedirOp::Append => {
                            let o = self.open_out(&target, matches!(op, RedirOp::Append))?;
                            self.set_out(fd, o)?;
                        }
                        RedirOp::OutErr | RedirOp::AppendOutErr => {
                            let o = self.open_out(&target, matches!(op, RedirOp::AppendOutErr))?;
                            self.io.stdout = o.clone();
                            self.io.stderr = o;
                        }
                        RedirOp::DupOut | RedirOp::DupIn => {
                            if target == "-" {
                                match fd {
                                    0 => self.io.stdin = In::Null,
                                    1 | 2 => self.set_out(fd, Out::Null)?,
                                    _ => {
                                        self.io.extra.remove(&fd);
                                    }
                                }
                                continue;
                            }
                            match target.parse::<u32>() {
                                Ok(n) => match self.dup_source(n) {
                                    Some(Fd::Out(o)) => self.set_out(fd, o)?,
                                    Some(Fd::In(i)) => self.set_in(fd, i)?,
                                    None => return Err(format!("{target}: bad file descriptor")),
                                },
                                Err(_)
                                    if matches!(op, RedirOp::DupOut)
                                        && fd == 1
                                        && r.fd.is_none() =>
                                {
                                    // `>&word` with a file name (bash): same as &>
                                    let o = self.open_out(&target, false)?;
                                    self.io.stdout = o.clone();
                                    self.io.stderr = o;
                                }
                                Err(_) => return Err(format!("{target}: bad file descriptor")),
                            }
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        Ok(())
    }

    /// What descriptor `n` refers to now (the source of `N>&n` / `N<&n`).
    fn dup_source(&self, n: u32) -> Option<Fd> {
        match n {
            0 => Some(Fd::In(self.io.stdin.clone())),
            1 => Some(Fd::Out(self.io.stdout.clone())),
            2 => Some(Fd::Out(self.io.stderr.clone())),
            n => self.io.extra.get(&n).cloned(),
        }
    }

    fn set_in(&mut self, fd: u32, i: In) -> Result<(), String> {
        match fd {
            0 => self.io.stdin = i,
            1 | 2 => {
                return Err(format!(
                    "{fd}: input redirection of an output descriptor: not supported"
                ))
            }
            n => {
                self.io.extra.insert(n, Fd::In(i));
            }
        }
        Ok(())
    }

    fn set_out(&mut self, fd: u32, o: Out) -> Result<(), String> {
        match fd {
            1 => self.io.stdout = o,
            2 => self.io.stderr = o,
            0 => return Err("0: output redirection of standard input: not supported".into()),
            n => {
                self.io.extra.insert(n, Fd::Out(o));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ simple commands

    /// `name args` where `name` is an alias: run the alias text followed by the rest of the
    /// command, re-parsed.
    fn expand_alias(&mut self, cmd: &SimpleCmd) -> Option<R> {
        if !self.shopt.get("expand_aliases") {
            return None;
        }
        let name = cmd.words.first()?.as_literal()?;
        if self.alias_active.iter().any(|a| a == name) {
            return None;
        }
        let value = self.aliases.get(name)?.clone();
        let mut rest = cmd.clone();
        rest.words.remove(0);
        rest.assigns.clear();
        let tail = parse::unparse_command(&Command::Simple(rest));
        let src = format!("{value} {tail}");
        let prog = match parse::parse(&src) {
            Ok(p) => p,
            Err(e) => {
                self.errmsg(&e.to_string());
                return Some(Ok(2));
            }
        };
        self.alias_active.push(name.to_string());
        let r = self.exec_program(&prog);
        self.alias_active.pop();
        Some(r)
    }

    fn exec_simple(&mut self, cmd: &SimpleCmd) -> R {
        if let Some(r) = self.expand_alias(cmd) {
            return r;
        }
        self.line = cmd.line;
        self.subst_status = None;
        let argv = self.expand_command_words(&cmd.words)?;
        if argv.is_empty() {
            // assignments only (and redirections for their side effects)
            for a in &cmd.assigns {
                if let Err(m) = self.perform_assign(a)? {
                    self.errmsg(&m);
                    if self.bash {
                        self.status = 1;
                        return Ok(1);
                    }
                    return Err(Flow::Exit(2));
                }
            }
            let st = self.subst_status.unwrap_or(0);
            if !cmd.redirs.is_empty() {
                let saved = self.io.clone();
                let r = self.apply_redirs(&cmd.redirs);
                self.io = saved;
                if let Err(m) = r {
                    self.errmsg(&m);
                    self.status = 1;
                    return Ok(1);
                }
            }
            self.status = st;
            return Ok(st);
        }
        // prefix assignments: each one's expansion sees the ones before it
        let mut assigns = Vec::new();
        let mut shadowed = Vec::new();
        let mut failed = None;
        for a in &cmd.assigns {
            if let AssignValue::Scalar(w) = &a.value {
                let v = match self.expand_assign(w) {
                    Ok(v) => v,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                shadowed.push((a.name.clone(), self.vars.get(&a.name).cloned()));
                if let Some(var) = self.vars.get_mut(&a.name) {
                    if !var.readonly && !var.is_array() {
                        var.value = Value::Str(v.clone());
                    }
                } else {
                    self.vars.insert(a.name.clone(), Var::scalar(&v, false));
                }
                assigns.push((a.name.clone(), v));
            }
        }
        for (n, old) in shadowed.into_iter().rev() {
            match old {
                Some(v) => {
                    self.vars.insert(n, v);
                }
                None => {
                    self.vars.remove(&n);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if self.opts.xtrace {
            let mut s = self.ps4();
            for (n, v) in &assigns {
                s.push_str(&format!("{}={} ", n, shell_quote(v)));
            }
            s.push_str(
                &argv
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            s.push('\n');
            self.err(&s);
        }
        let name = argv[0].clone();
        if let Some(last) = argv.last() {
            self.last_arg = last.clone();
        }
        if crate::builtins::is_special_builtin(&name) {
            for (n, v) in &assigns {
                if let Err(m) = self.set_var(n, v) {
                    self.errmsg(&m);
                    return Err(Flow::Exit(2));
                }
            }
            return self.run_builtin_redir(&argv, &cmd.redirs);
        }
        if let Some(body) = self.funcs.get(&name).cloned() {
            return self.with_temp_assigns(&assigns, |sh| {
                let saved = sh.io.clone();
                if let Err(m) = sh.apply_redirs(&cmd.redirs) {
                    sh.io = saved;
                    sh.errmsg(&m);
                    return Ok(1);
                }
                let r = sh.call_function(&name, &body, &argv[1..]);
                sh.io = saved;
                r
            });
        }
        if crate::builtins::is_builtin(&name, self.bash) {
            return self.with_temp_assigns(&assigns, |sh| sh.run_builtin_redir(&argv, &cmd.redirs));
        }
        // external command
        let st = self.run_external(argv, assigns, &cmd.redirs)?;
        self.status = st;
        Ok(st)
    }

    fn ps4(&self) -> String {
        self.get_var("PS4").unwrap_or_else(|| "+ ".into())
    }

    fn with_temp_assigns<F: FnOnce(&mut Shell) -> R>(
        &mut self,
        assigns: &[(String, String)],
        f: F,
    ) -> R {
        if assigns.is_empty() {
            return f(self);
        }
        let mut saved = Vec::new();
        for (n, v) in assigns {
            saved.push((n.clone(), self.vars.get(n).cloned()));
            let e = self
                .vars
                .entry(n.clone())
                .or_insert_with(|| Var::scalar("", true));
            if e.readonly {
                continue;
            }
            e.value = Value::Str(v.clone());
            e.exported = true;
        }
        let r = f(self);
        for (n, old) in saved.into_iter().rev() {
            match old {
                Some(v) => {
                    self.vars.insert(n, v);
                }
                None => {
                    self.vars.remove(&n);
                }
            }
        }
        r
    }

    fn run_builtin_redir(&mut self, argv: &[String], redirs: &[Redir]) -> R {
        let saved = self.io.clone();
        if let Err(m) = self.apply_redirs(redirs) {
            self.io = saved;
            self.errmsg(&m);
            self.status = 1;
            if crate::builtins::is_special_builtin(&argv[0]) {
                return Err(Flow::Exit(1));
            }
            return Ok(1);
        }
        let keep_io = argv[0] == "exec" && argv.len() == 1;
        let r = crate::builtins::run_builtin(self, argv);
        if !keep_io {
            self.io = saved;
        }
        if let Ok(st) = r {
            self.status = st;
        }
        r
    }

    pub fn call_function(&mut self, _name: &str, body: &Rc<Command>, args: &[String]) -> R {
        if self.func_depth >= MAX_FUNC_DEPTH {
            self.errmsg(&format!(
                "{_name}: maximum function nesting depth ({MAX_FUNC_DEPTH}) exceeded"
            ));
            return Err(Flow::Exit(2));
        }
        let saved_params = std::mem::replace(&mut self.params, args.to_vec());
        let saved_funcname = self.bash.then(|| self.vars.get("FUNCNAME").cloned());
        if self.bash {
            // FUNCNAME: the call stack, innermost first
            let mut stack = vec![_name.to_string()];
            stack.extend(self.array_values("FUNCNAME"));
            let m = stack
                .into_iter()
                .enumerate()
                .map(|(i, n)| (i as i64, n))
                .collect();
            self.put("FUNCNAME", Value::Indexed(m));
        }
        self.func_depth += 1;
        self.locals.push(Vec::new());
        let saved_loop = std::mem::replace(&mut self.loop_depth, 0);
        let mut r = self.exec_command(body);
        if self.bash_traps.contains_key("RETURN") {
            if let Ok(st) | Err(Flow::Return(st)) = r {
                self.status = st;
                if let Err(e) = self.run_bash_trap("RETURN") {
                    r = Err(e);
                }
            }
        }
        self.loop_depth = saved_loop;
        let frame = self.locals.pop().unwrap_or_default();
        for (n, old) in frame.into_iter().rev() {
            match old {
                Some(v) => {
                    self.vars.insert(n, v);
                }
                None => {
                    self.vars.remove(&n);
                }
            }
        }
        self.func_depth -= 1;
        self.params = saved_params;
        match saved_funcname {
            Some(Some(v)) => {
                self.vars.insert("FUNCNAME".into(), v);
            }
            Some(None) => {
                self.vars.remove("FUNCNAME");
            }
            None => {}
        }
        let st = match r {
            Ok(s) => s,
            Err(Flow::Return(s)) => s,
            Err(e) => return Err(e),
        };
        self.status = st;
        Ok(st)
    }

    /// Resolve a command name to the argv the host should start: scripts with a `#!` line or a
    /// path are rewritten to their interpreter. Err is (status, message).
    pub fn resolve_program(&self, mut argv: Vec<String>) -> Result<Vec<String>, (i32, String)> {
        let mut name = argv[0].clone();
        if !name.contains('/') {
            if is_known_program(&name) {
                return Ok(argv);
            }
            match self.path_lookup(&name) {
                Some(found) => name = found,
                None => return Err((127, format!("{name}: command not found"))),
            }
        }
        let abs = self.abs_path(&name);
        let p = std::path::Path::new(&abs);
        if p.is_dir() {
            return Err((126, format!("{name}: Permission denied")));
        }
        if p.is_file() && !is_executable(p) {
            return Err((126, format!("{name}: Permission denied")));
        }
        if p.is_file() {
            let mut head = [0u8; 256];
            let n = std::fs::File::open(p)
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            let head = &head[..n];
            if head.starts_with(b"#!") {
                let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
                let line = String::from_utf8_lossy(&head[2..line_end])
                    .trim()
                    .to_string();
                let mut parts = line.split_whitespace();
                let interp = parts.next().unwrap_or("sh");
                let mut base = interp.rsplit('/').next().unwrap_or(interp).to_string();
                let mut rest: Vec<String> = parts.map(|s| s.to_string()).collect();
                if base == "env" {
                    rest.retain(|a| a != "-S");
                    if rest.is_empty() {
                        return Err((127, format!("{name}: bad interpreter")));
                    }
                    base = rest.remove(0);
                }
                let base = match base.as_str() {
                    b if b.starts_with("python") => "python3".to_string(),
                    b => b.to_string(),
                };
                if !is_known_program(&base) {
                    return Err((
                        127,
                        format!("{name}: {interp}: bad interpreter: No such file or directory"),
                    ));
                }
                let mut v = vec![base];
                v.extend(rest);
                v.push(name);
                v.extend(argv.drain(1..));
                return Ok(v);
            }
            // no #!: run it with sh (what shells do on ENOEXEC)
            let mut v = vec!["sh".to_string(), name];
            v.extend(argv.drain(1..));
            return Ok(v);
        }
        // /bin/ls, /usr/bin/env … name our programs even though no such file exists in the sandbox
        let (dir, base) = name.rsplit_once('/').unwrap();
        if matches!(
            dir,
            "/bin" | "/usr/bin" | "/usr/local/bin" | "/sbin" | "/usr/sbin"
        ) && is_known_program(base)
        {
            argv[0] = base.to_string();
            return Ok(argv);
        }
        Err((127, format!("{name}: not found")))
    }

    /// A script named without a slash: the first `$PATH` directory holding a file of that name.
    /// The system directories are skipped: in the sandbox they hold nothing but the programs
    /// [`is_known_program`] already knows (and natively, the host's own binaries).
    pub fn path_lookup(&self, name: &str) -> Option<String> {
        let path = self.get_var("PATH")?;
        path.split(':')
            .filter(|d| {
                !matches!(
                    d.trim_end_matches('/'),
                    "/bin"
                        | "/usr/bin"
                        | "/usr/local/bin"
                        | "/sbin"
                        | "/usr/sbin"
                        | "/usr/local/sbin"
                )
            })
            .map(|d| {
                if d.is_empty() {
                    name.to_string()
                } else {
                    format!("{}/{name}", d.trim_end_matches('/'))
                }
            })
            .find(|p| std::path::Path::new(&self.abs_path(p)).is_file())
            .map(|p| if p.contains('/') { p } else { format!("./{p}") })
    }

    fn run_external(
        &mut self,
        argv: Vec<String>,
        assigns: Vec<(String, String)>,
        redirs: &[Redir],
    ) -> R {
        let argv = match self.resolve_program(argv) {
            Ok(a) => a,
            Err((st, msg)) => {
                // still perform the redirections (files get created, like a real shell)
                let saved = self.io.clone();
                let r = self.apply_redirs(redirs);
                let m2 = r.err();
                if let Some(m) = m2 {
                    self.io = saved;
                    self.errmsg(&m);
                    return Ok(1);
                }
                self.errmsg(&msg);
                self.io = saved;
                return Ok(st);
            }
        };
        let mut env = self.exported_env();
        for (n, v) in assigns {
            env.retain(|(k, _)| *k != n);
            env.push((n, v));
        }
        let stage = match self.build_stage(argv, env, redirs, false, false) {
            Ok(s) => s,
            Err(m) => {
                self.errmsg(&m);
                return Ok(1);
            }
        };
        let statuses = self.spawn_stages(vec![stage])?;
        Ok(statuses.last().copied().unwrap_or(0))
    }

    fn out_sink(&self, o: &Out, fdnum: u8) -> Sink {
        match o {
            Out::Fd1 => Sink::Parent(1),
            Out::Fd2 => Sink::Parent(2),
            Out::Null => Sink::Null,
            Out::File(f) => Sink::File {
                path: f.path.clone(),
                mode: OutputMode::Append,
                id: Rc::as_ptr(f) as usize,
            },
            Out::Capture(b) => Sink::Capture(Rc::as_ptr(b) as usize),
            Out::Fifo(f) => Sink::Fifo(f.path.clone()),
        }
        .with_fd(fdnum)
    }

    /// Build one stage: base streams come from the shell's current I/O context (or the adjacent
    /// pipe), then the command's own redirections are resolved on top.
    fn build_stage(
        &mut self,
        argv: Vec<String>,
        mut env: Vec<(String, String)>,
        redirs: &[Redir],
        pipe_in: bool,
        pipe_out: bool,
    ) -> Result<Stage, String> {
        let mut stdin = if pipe_in {
            Input::Pipe
        } else {
            input_of(&self.io.stdin)
        };
        let mut out = if pipe_out {
            Sink::Pipe
        } else {
            self.out_sink(&self.io.stdout, 1)
        };
        let mut err = self.out_sink(&self.io.stderr, 2);
        let mut file_id = 1usize; // ids for files opened by this stage's own redirections
        for r in redirs {
            let fd = r.fd.unwrap_or(match r.op {
                RedirOp::In
                | RedirOp::DupIn
                | RedirOp::HereDoc(_)
                | RedirOp::HereString
                | RedirOp::ReadWrite => 0,
                _ => 1,
            });
            if fd > MAX_FD {
                return Err(format!("{fd}: bad file descriptor"));
            }
            if fd > 2 {
                // the child gets descriptors 0–2 only; a file named here is still created
                // (below), the rest of such a redirection concerns nobody
                continue;
            }
            match &r.op {
                RedirOp::HereDoc(hd) => {
                    let t = self
                        .heredoc_text(hd)
                        .map_err(|_| "here-document expansion failed".to_string())?;
                    if fd != 0 {
                        return Err("here-document on an output descriptor: not supported".into());
                    }
                    stdin = Input::Data(t);
                }
                RedirOp::HereString => {
                    let mut t = self
                        .expand_string(&r.target)
                        .map_err(|_| "expansion failed".to_string())?;
                    t.push('\n');
                    stdin = Input::Data(t);
                }
                op => {
                    let target = self
                        .expand_string(&r.target)
                        .map_err(|_| "expansion failed".to_string())?;
                    let fifo = self.host_fifo(&target);
                    let file_sink = |mode: OutputMode, id: &mut usize| -> Sink {
                        *id += 1;
                        match (target.as_str(), &fifo) {
                            ("/dev/null", _) => Sink::Null,
                            (_, Some(abs)) => Sink::Fifo(abs.clone()),
                            _ => Sink::File {
                                path: target.clone(),
                                mode,
                                id: *id,
                            },
                        }
                    };
                    match op {
                        RedirOp::In | RedirOp::ReadWrite => {
                            if fd != 0 {
                                return Err(format!("{fd}<: not supported"));
                            }
                            let endless = match crate::vfs::device(&target) {
                                Some(crate::vfs::Dev::Zero) => Some("zero"),
                                Some(crate::vfs::Dev::Random) => Some("random"),
                                _ => None,
                            };
                            if let Some(kind) = endless {
                                // the child feeds itself from a device stage (lib.rs)
                                env.retain(|(k, _)| k != crate::STDIN_DEVICE);
                                env.push((crate::STDIN_DEVICE.into(), kind.into()));
                            }
                            stdin = match target.as_str() {
                                "/dev/null" => Input::Null,
                                "/dev/stdin" => stdin,
                                _ if endless.is_some() => Input::Null,
                                _ if let Some(abs) = &fifo => Input::Fifo(abs.clone()),
                                _ => Input::File {
                                    file: target.clone(),
                                    offset: None,
                                },
                            };
                        }
                        RedirOp::Out | RedirOp::Clobber | RedirOp::Append => {
                            let mode = if matches!(op, RedirOp::Append) {
                                OutputMode::Append
                            } else {
                                OutputMode::Write
                            };
                            if self.opts.noclobber
                                && matches!(op, RedirOp::Out)
                                && std::path::Path::new(&self.abs_path(&target)).is_file()
                            {
                                return Err(format!("cannot create {target}: File exists"));
                            }
                            let s = match target.as_str() {
                                "/dev/stdout" => out.clone(),
                                "/dev/stderr" => err.clone(),
                                _ => file_sink(mode, &mut file_id),
                            };
                            match fd {
                                1 => out = s,
                                2 => err = s,
                                _ => return Err("0>: not supported".into()),
                            }
                        }
                        RedirOp::OutErr | RedirOp::AppendOutErr => {
                            let mode = if matches!(op, RedirOp::AppendOutErr) {
                                OutputMode::Append
                            } else {
                                OutputMode::Write
                            };
                            let s = file_sink(mode, &mut file_id);
                            out = s.clone();
                            err = s;
                        }
                        RedirOp::DupOut | RedirOp::DupIn => match (fd, target.as_str()) {
                            (0, "-") => stdin = Input::Null,
                            (0, "0") => {}
                            (1, "-") => out = Sink::Null,
                            (2, "-") => err = Sink::Null,
                            (1, "1") | (2, "2") => {}
                            (1, "2") => out = err.clone(),
                            (2, "1") => err = out.clone(),
                            (1, t) if r.fd.is_none() && !t.chars().all(|c| c.is_ascii_digit()) => {
                                let s = file_sink(OutputMode::Write, &mut file_id);
                                out = s.clone();
                                err = s;
                            }
                            (_, t) => {
                                // a descriptor the shell opened (`exec 3>f; cmd >&3`)
                                let n = t.parse::<u32>().ok().filter(|n| *n > 2);
                                match (fd, n.and_then(|n| self.io.extra.get(&n).cloned())) {
                                    (1, Some(Fd::Out(o))) => out = self.out_sink(&o, 1),
                                    (2, Some(Fd::Out(o))) => err = self.out_sink(&o, 2),
                                    (0, Some(Fd::In(i))) => stdin = input_of(&i),
                                    _ => return Err(format!("{t}: bad file descriptor")),
                                }
                            }
                        },
                        _ => unreachable!(),
                    }
                }
            }
        }
        // files named by redirections that were then overridden must still be created/truncated
        for r in redirs {
            if let RedirOp::Out
            | RedirOp::Clobber
            | RedirOp::Append
            | RedirOp::OutErr
            | RedirOp::AppendOutErr = r.op
            {
                if let Ok(t) = self.expand_string(&r.target) {
                    let used = [&out, &err]
                        .iter()
                        .any(|s| matches!(s, Sink::File { path, .. } if *path == t));
                    if !used && !t.starts_with("/dev/") {
                        let abs = self.abs_path(&t);
                        let mut o = std::fs::OpenOptions::new();
                        if matches!(r.op, RedirOp::Append | RedirOp::AppendOutErr) {
                            o.append(true).create(true);
                        } else {
                            o.write(true).create(true).truncate(true);
                        }
                        o.open(&abs)
                            .map_err(|e| format!("cannot create {t}: {}", io_err_msg(&e)))?;
                    }
                }
            }
        }
        let (stdout, stderr) = sinks_to_streams(&out, &err);
        self.pending_captures.push((out, err));
        Ok(Stage {
            argv,
            env,
            cwd: self.cwd.clone(),
            stdin,
            stdout,
            stderr,
        })
    }
}

/// A child's standard input for what the shell reads from.
fn input_of(i: &In) -> Input {
    match i {
        In::Fd0 => Input::Inherit,
        In::Null => Input::Null,
        In::File(f) => {
            let b = f.buf.borrow();
            let off = b.2 + b.1 as u64;
            Input::File {
                file: f.path.clone(),
                offset: Some(off),
            }
        }
        In::Data(d) => {
            let d = d.borrow();
            Input::Data(String::from_utf8_lossy(&d.0[d.1..]).into_owned())
        }
        In::Fifo(f) => Input::Fifo(f.path.clone()),
    }
}

/// A resolved output destination of a stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// This shell's own fd 1 or 2 (`fd` = the stream it is used for: 1 or 2).
    Parent(u8),
    ParentAs(u8, u8),
    Pipe,
    Null,
    File {
        path: String,
        mode: OutputMode,
        id: usize,
    },
    /// A named pipe's write end (absolute path).
    Fifo(String),
    Capture(usize),
}

impl Sink {
    fn with_fd(self, _fd: u8) -> Sink {
        self
    }
}

fn sinks_to_streams(out: &Sink, err: &Sink) -> (Output, Output) {
    let plain = |s: &Sink, fd: u8| -> Output {
        match s {
            Sink::Parent(p) | Sink::ParentAs(p, _) => {
                if *p == fd {
                    Output::Inherit
                } else if *p == 1 {
                    Output::ParentStdout
                } else {
                    Output::ParentStderr
                }
            }
            Sink::Pipe => Output::Pipe,
            Sink::Null => Output::Null,
            Sink::File { path, mode, .. } => Output::File {
                file: path.clone(),
                mode: *mode,
                offset: None,
            },
            Sink::Capture(_) => Output::Capture,
            Sink::Fifo(path) => Output::Fifo(path.clone()),
        }
    };
    let so = plain(out, 1);
    if out == err {
        // same destination: stderr is a dup of stdout (for Parent(1) both ways work)
        return (so, Output::Stdout);
    }
    let se = plain(err, 2);
    (so, se)
}

impl Shell {
    /// Spawn stages through the host; route captured output into the right buffers; return statuses.
    pub fn spawn_stages(&mut self, stages: Vec<Stage>) -> Result<Vec<i32>, Flow> {
        let captures = std::mem::take(&mut self.pending_captures);
        self.flush_stdout();
        for o in [&self.io.stdout, &self.io.stderr] {
            if let Out::File(f) = o {
                let _ = f.file.borrow_mut().flush();
            }
        }
        let n = stages.len();
        let req = Request { stages };
        let res: Response = self.spawner.spawn(&req);
        self.reap_jobs();
        if let Some(e) = &res.error {
            let m = e.clone();
            self.errmsg(&m);
            return Ok(vec![126; n]);
        }
        self.out_files_to_end();
        // Where do captured stdout/stderr go? (the capture buffers are those of the io context)
        let find_buf = |id: usize, io: &Io| -> Option<Rc<RefCell<Vec<u8>>>> {
            for o in [&io.stdout, &io.stderr] {
                if let Out::Capture(b) = o {
                    if Rc::as_ptr(b) as usize == id {
                        return Some(b.clone());
                    }
                }
            }
            None
        };
        let mut out_buf = None;
        let mut err_buf = None;
        for (o, e) in &captures {
            if let Sink::Capture(id) = o {
                out_buf = find_buf(*id, &self.io);
            }
            if let Sink::Capture(id) = e {
                if o != e {
                    err_buf = find_buf(*id, &self.io);
                } else if out_buf.is_none() {
                    out_buf = find_buf(*id, &self.io);
                }
            }
        }
        if !res.stdout.is_empty() {
            match &out_buf {
                Some(b) => b.borrow_mut().extend_from_slice(res.stdout.as_bytes()),
                None => {
                    let o = self.io.stdout.clone();
                    self.write_to(&o, res.stdout.as_bytes());
                }
            }
        }
        if !res.stderr.is_empty() {
            match &err_buf {
                Some(b) => b.borrow_mut().extend_from_slice(res.stderr.as_bytes()),
                None => match &out_buf {
                    Some(b) => b.borrow_mut().extend_from_slice(res.stderr.as_bytes()),
                    None => {
                        let o = self.io.stderr.clone();
                        self.write_to(&o, res.stderr.as_bytes());
                    }
                },
            }
        }
        let mut st = res.statuses;
        st.resize(n, 0);
        Ok(st)
    }

    /// In-shell files that children appended to: move our offsets to the end (a real shell
    /// shares the offset with its children).
    pub(crate) fn out_files_to_end(&self) {
        let extra_outs = self.io.extra.values().filter_map(|f| match f {
            Fd::Out(o) => Some(o),
            Fd::In(_) => None,
        });
        for o in [&self.io.stdout, &self.io.stderr]
            .into_iter()
            .chain(extra_outs)
        {
            if let Out::File(f) = o {
                let _ = f.file.borrow_mut().seek(std::io::SeekFrom::End(0));
            }
        }
    }

    /// A multi-stage pipeline: every stage is a fresh instance.
    /// bash `shopt -s lastpipe`: the last command of a pipeline runs in this shell (so
    /// `… | while read x; do n=…; done` keeps `n`), reading what the others wrote. With the
    /// synchronous spawn the others finish first and their output is handed over whole.
    fn exec_lastpipe(&mut self, cmds: &[Command]) -> R {
        let (last, front) = match cmds.split_last() {
            Some(x) => x,
            None => return Ok(0),
        };
        let buf = Rc::new(RefCell::new(Vec::new()));
        let saved_out = std::mem::replace(&mut self.io.stdout, Out::Capture(buf.clone()));
        let r = self.exec_stages(front);
        self.io.stdout = saved_out;
        r?;
        let mut statuses = self.array_values("PIPESTATUS");
        let data = std::mem::take(&mut *buf.borrow_mut());
        let saved_in = std::mem::replace(
            &mut self.io.stdin,
            In::Data(Rc::new(RefCell::new((data, 0)))),
        );
        let r = self.exec_command(last);
        self.io.stdin = saved_in;
        let st = r?;
        statuses.push(st.to_string());
        let all: Vec<i32> = statuses.iter().map(|s| s.parse().unwrap_or(0)).collect();
        self.set_pipestatus(&all);
        let r = if self.opts.pipefail {
            all.iter().rev().find(|&&s| s != 0).copied().unwrap_or(0)
        } else {
            st
        };
        self.status = r;
        Ok(r)
    }

    fn exec_multi(&mut self, cmds: &[Command]) -> R {
        if self.bash && self.shopt.get("lastpipe") {
            return self.exec_lastpipe(cmds);
        }
        self.exec_stages(cmds)
    }

    /// Every command of a pipeline as its own instance.
    fn exec_stages(&mut self, cmds: &[Command]) -> R {
        let stages = self.pipeline_stages(cmds)?;
        let st = self.spawn_stages(stages)?;
        if self.bash {
            self.set_pipestatus(&st);
        }
        let last = *st.last().unwrap_or(&0);
        let r = if self.opts.pipefail {
            st.iter().rev().find(|&&s| s != 0).copied().unwrap_or(0)
        } else {
            last
        };
        self.status = r;
        Ok(r)
    }

    /// The stages of a pipeline: an external command as itself, anything else as a child shell
    /// (see [`Shell::child_source`]). Their captures are left in `pending_captures`.
    pub(crate) fn pipeline_stages(&mut self, cmds: &[Command]) -> Result<Vec<Stage>, Flow> {
        let n = cmds.len();
        let mut stages = Vec::with_capacity(n);
        let mut pre_status: Vec<Option<i32>> = vec![None; n];
        for (i, c) in cmds.iter().enumerate() {
            let pipe_in = i > 0;
            let pipe_out = i + 1 < n;
            let mut ext: Option<External<'_>> = None;
            let mut listing_stage: Option<String> = None;
            // every stage is a subshell: what its expansions assign does not reach this shell
            let vars_before = self.vars.clone();
            if let Command::Simple(s) = c {
                if !s.words.is_empty() {
                    let argv = self.expand_words(&s.words)?;
                    if let Some((pids_only, long)) = self.jobs_listing_command(c) {
                        // `jobs | …`: a child shell has no jobs; hand it this shell's listing
                        // (bash, too, lets a plain `jobs` in a pipeline list its parent's jobs)
                        let listing = self.list_jobs(pids_only, long);
                        listing_stage = Some(format!("printf %s {}", shell_quote(&listing)));
                    } else if let Some(name) = argv.first() {
                        if !self.funcs.contains_key(name)
                            && !crate::builtins::is_builtin(name, self.bash)
                        {
                            let mut env = self.exported_env();
                            for a in &s.assigns {
                                if let AssignValue::Scalar(w) = &a.value {
                                    let v = self.expand_assign(w)?;
                                    // later prefix assignments see this one (the stage's
                                    // variables are put back below)
                                    let _ = self.set_var(&a.name, &v);
                                    env.retain(|(k, _)| *k != a.name);
                                    env.push((a.name.clone(), v));
                                }
                            }
                            let argv = match self.resolve_program(argv.clone()) {
                                Ok(a) => a,
                                Err((st, msg)) => {
                                    // the stage reports the error itself (unknown programs end with 127)
                                    pre_status[i] = Some(st);
                                    let _ = msg;
                                    argv
                                }
                            };
                            ext = Some((argv, env, &s.redirs));
                        }
                    }
                }
            }
            self.vars = vars_before;
            let stage = match ext {
                Some((argv, env, redirs)) => self.build_stage(argv, env, redirs, pipe_in, pipe_out),
                None if listing_stage.is_some() => {
                    let src = listing_stage.take().unwrap_or_default();
                    let argv = vec![self.name.clone(), "-c".into(), src];
                    let env = self.exported_env();
                    self.build_stage(argv, env, &[], pipe_in, pipe_out)
                }
                None => {
                    let src = self.child_source(c);
                    let mut argv = vec![self.name.clone(), "-c".into(), src, self.arg0.clone()];
                    argv.extend(self.params.iter().cloned());
                    let env = self.exported_env();
                    self.build_stage(argv, env, &[], pipe_in, pipe_out)
                }
            };
            match stage {
                Ok(s) => stages.push(s),
                Err(m) => {
                    self.errmsg(&m);
                    // replace by a stage that fails
                    let env = self.exported_env();
                    let s = self
                        .build_stage(vec!["false".into()], env, &[], pipe_in, pipe_out)
                        .map_err(|_| Flow::Exit(2))?;
                    stages.push(s);
                }
            }
        }
        let _ = pre_status;
        Ok(stages)
    }

    /// The `sh -c` text for a pipeline stage run in a child shell: function definitions,
    /// non-exported variables and options first, then the command.
    pub fn child_source(&self, c: &Command) -> String {
        let mut s = String::new();
        let mut fnames: Vec<&String> = self.funcs.keys().collect();
        fnames.sort();
        for name in fnames {
            let body = &self.funcs[name];
            s.push_str(&parse::unparse_command(&Command::FuncDef(
                name.clone(),
                body.clone(),
            )));
        }
        let mut vnames: Vec<&String> = self.vars.keys().collect();
        vnames.sort();
        for name in vnames {
            let v = &self.vars[name];
            if v.exported || matches!(name.as_str(), "PPID" | "OPTIND") {
                continue;
            }
            if v.is_array() || v.attrs != crate::vars::Attrs::default() {
                s.push_str(&crate::vars::declare_line(name, v));
                s.push('\n');
            } else {
                let text = v.text().unwrap_or_default();
                s.push_str(&format!("{}={}\n", name, shell_quote(text)));
            }
        }
        if self.status != 0 {
            s.push_str(&format!("(exit {})\n", self.status));
        }
        let mut flags = String::new();
        if self.opts.errexit {
            flags.push('e');
        }
        if self.opts.nounset {
            flags.push('u');
        }
        if self.opts.xtrace {
            flags.push('x');
        }
        if self.opts.noglob {
            flags.push('f');
        }
        if self.opts.noclobber {
            flags.push('C');
        }
        if !flags.is_empty() {
            s.push_str(&format!("set -{flags}\n"));
        }
        if self.opts.pipefail {
            s.push_str("set -o pipefail\n");
        }
        // descriptors 3–9 this shell opened for writing (`exec 3>log`): the child appends to
        // the same files
        for (n, fd) in &self.io.extra {
            match fd {
                Fd::Out(Out::File(f)) => {
                    s.push_str(&format!("exec {n}>>{}\n", shell_quote(&f.path)));
                }
                Fd::Out(Out::Null) => s.push_str(&format!("exec {n}>/dev/null\n")),
                _ => {}
            }
        }
        s.push_str(&parse::unparse_command(c));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spawn::{Input, JobHandle, Output, OutputMode, Request, Response, Spawner};
    use std::sync::{Arc, Mutex};

    /// Records requests; answers with canned output (stdout = argv joined, status 3 for
    /// `--fail`). Background jobs run at once; their results wait in the second list.
    #[derive(Clone, Default)]
    struct Mock(Arc<Mutex<Vec<Request>>>, Arc<Mutex<Vec<Option<Response>>>>);

    impl Spawner for Mock {
        fn spawn(&mut self, req: &Request) -> Response {
            self.0.lock().unwrap().push(req.clone());
            let statuses = req
                .stages
                .iter()
                .map(|s| {
                    if s.argv.iter().any(|a| a == "--fail") {
                        3
                    } else {
                        0
                    }
                })
                .collect();
            let last = req.stages.last().unwrap();
            let stdout = if last.stdout == Output::Capture {
                format!("{}\n", last.argv.join(" "))
            } else {
                String::new()
            };
            Response {
                statuses,
                stdout,
                stderr: String::new(),
                error: None,
                job: None,
            }
        }

        /// Runs the request at once; `wait` hands its result over.
        fn start(&mut self, req: &Request) -> Result<JobHandle, String> {
            let res = self.spawn(req);
            let mut finished = self.1.lock().unwrap();
            finished.push(Some(res));
            Ok(finished.len() as JobHandle - 1)
        }

        fn wait(&mut self, job: Option<JobHandle>) -> Option<(JobHandle, Response)> {
            let mut finished = self.1.lock().unwrap();
            let h = match job {
                Some(h) => h,
                None => finished.iter().position(Option::is_some)? as JobHandle,
            };
            let res = finished.get_mut(h as usize)?.take()?;
            Some((h, res))
        }

        fn running(&mut self, job: JobHandle) -> Option<bool> {
            let finished = self.1.lock().unwrap();
            finished.get(job as usize)?.as_ref().map(|_| false)
        }

        fn kill(&mut self, job: JobHandle, _signal: i32) -> Option<bool> {
            self.running(job)
        }
    }

    fn run(src: &str) -> (String, i32, Vec<Request>) {
        let mock = Mock::default();
        let mut sh = Shell::new(Box::new(mock.clone()), false);
        let buf = Rc::new(RefCell::new(Vec::new()));
        sh.io.stdout = Out::Capture(buf.clone());
        sh.io.stderr = Out::Null;
        let st = sh.run_script(src);
        let out = String::from_utf8_lossy(&buf.borrow()).into_owned();
        let reqs = mock.0.lock().unwrap().clone();
        (out, st, reqs)
    }

    #[test]
    fn builtins_run_in_process() {
        let (out, st, reqs) =
            run("x=5; echo $((x*2)); f() { echo \"f:$1\"; }; f a; [ 1 -lt 2 ] && echo ok");
        assert_eq!(out, "10\nf:a\nok\n");
        assert_eq!(st, 0);
        assert!(reqs.is_empty(), "no spawn for builtins: {reqs:?}");
    }

    #[test]
    fn external_command_request() {
        let (_, st, reqs) = run("export K=v; ls -l dir > out.txt 2>&1");
        assert_eq!(st, 0);
        assert_eq!(reqs.len(), 1);
        let s = &reqs[0].stages[0];
        assert_eq!(s.argv, ["ls", "-l", "dir"]);
        assert!(s.env.contains(&("K".into(), "v".into())));
        assert_eq!(
            s.stdout,
            Output::File {
                file: "out.txt".into(),
                mode: OutputMode::Write,
                offset: None
            }
        );
        assert_eq!(s.stderr, Output::Stdout);
    }

    #[test]
    fn pipeline_stages_and_child_shell_prelude() {
        let (_, _, reqs) = run("v=1; g() { echo g; }; echo hi | wc -l | g");
        let st = &reqs[0].stages;
        assert_eq!(st.len(), 3);
        assert_eq!(st[0].argv[0..2], ["sh".to_string(), "-c".to_string()]);
        assert!(
            st[0].argv[2].contains("g() {")
                && st[0].argv[2].contains("v=1")
                && st[0].argv[2].ends_with("echo hi\n")
        );
        assert_eq!(st[0].stdout, Output::Pipe);
        assert_eq!(st[1].argv, ["wc", "-l"]);
        assert_eq!((&st[1].stdin, &st[1].stdout), (&Input::Pipe, &Output::Pipe));
        assert_eq!(st[2].stdin, Input::Pipe);
    }

    #[test]
    fn command_substitution_captures_child_output() {
        let (out, _, reqs) = run("x=$(ls a b); echo \"[$x]\"");
        assert_eq!(out, "[ls a b]\n");
        assert_eq!(reqs[0].stages[0].stdout, Output::Capture);
    }

    #[test]
    fn heredoc_goes_as_data() {
        let (_, _, reqs) = run("n=2; cat <<EOF\nv=$n\nEOF");
        assert_eq!(reqs[0].stages[0].stdin, Input::Data("v=2\n".into()));
    }

    #[test]
    fn unknown_command_is_127_without_spawning() {
        let (_, st, reqs) = run("nosuchprog_x");
        assert_eq!(st, 127);
        assert!(reqs.is_empty());
    }

    #[test]
    fn statuses_flow_back_and_set_e() {
        let (out, st, _) = run("ls --fail; echo $?; set -e; ls --fail; echo no");
        // (the test's stdout is a capture buffer, so the mock's "output" shows up too)
        assert_eq!(out, "ls --fail\n3\nls --fail\n");
        assert_eq!(st, 3);
    }

    #[test]
    fn unsupported_is_exit_2() {
        let (_, st, _) = run("fg");
        assert_eq!(st, 2);
    }

    #[test]
    fn kill_reaches_only_this_shell() {
        let (out, st, _) =
            run("kill -0 $$ && echo alive; kill 4242; echo $?; kill -TERM $$; echo no");
        assert_eq!(out, "alive\n1\n");
        assert_eq!(st, 143);
    }

    #[test]
    fn background_jobs_report_through_wait() {
        let (out, st, reqs) = run("ls --fail & echo \"job $!\"; wait $!; echo $?; wait 7");
        assert_eq!(out, "ls --fail\njob 1000\n3\n");
        assert_eq!(st, 127);
        assert_eq!(reqs[0].stages[0].stdin, Input::Null);
    }

    /// Outside `$(…)`, `list &` is started through the spawner and `wait` collects it.
    #[test]
    fn background_lists_are_started_and_waited_for() {
        let mock = Mock::default();
        let mut sh = Shell::new(Box::new(mock.clone()), true);
        sh.io.stdout = Out::Null;
        sh.io.stderr = Out::Null;
        sh.run_script(
            "ls --fail & p=$!; wait $p; a=$?; echo x | cat & wait -n; b=$?; wait $p; c=$?",
        );
        assert_eq!(sh.get_var("p").as_deref(), Some("1000"));
        assert_eq!(sh.get_var("a").as_deref(), Some("3"));
        assert_eq!(sh.get_var("b").as_deref(), Some("0"));
        // a job that was waited for still reports its status
        assert_eq!(sh.get_var("c").as_deref(), Some("3"));
        let reqs = mock.0.lock().unwrap().clone();
        assert_eq!(reqs[0].stages[0].argv, ["ls", "--fail"]);
        assert_eq!(reqs[0].stages[0].stdin, Input::Null);
        // a pipeline with a builtin: a child shell for the builtin, the external one directly
        assert_eq!(reqs[1].stages[0].argv[0..2], ["bash", "-c"]);
        assert_eq!(reqs[1].stages[1].argv, ["cat"]);
        assert!(sh.jobs.table.is_empty());
    }

    #[test]
    fn subshell_restores_state() {
        let (out, _, _) =
            run("x=1; (x=2; f() { :; }; exit 4); echo $? $x; type f >/dev/null 2>&1 || echo nof");
        assert_eq!(out, "4 1\nnof\n");
    }
}
