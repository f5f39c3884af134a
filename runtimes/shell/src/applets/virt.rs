//! The uutils applets open files with std, which on WASI knows no device files and no `/bin`:
//! this is where their arguments meet [`crate::vfs`] before they run.
//!
//! * `ls` of virtual paths (`ls /bin`, `ls -l /dev/null`) is answered here; `ls` of real ones
//!   gets the mode store's permission bits and the user's name (hooks in vendor/uu_ls).
//! * One reading operand that is a device: `/dev/stdin` becomes `-`; `/dev/null`, `/dev/zero` and
//!   `/dev/urandom` become `-` in a fresh instance whose stdin is empty, or is fed by a
//!   [`DEVCAT`] stage (`head -c 4 /dev/zero`).
//! * `cp /dev/null F` empties F, `cp F /dev/null` and `tee /dev/null` write nothing.
//! * `rmdir` first removes a mode store left alone in the directory.

use crate::spawn::{default_spawner, Input, Output, Request, Stage};
use crate::vfs::{self, Dev, Virt};
use std::io::Write;

/// The hidden applet that writes a device's endless bytes (`zero`, `random`) to stdout.
pub const DEVCAT: &str = "wasmbox-devcat";

/// Applets whose operands are names, not contents (devices pass through untouched).
const NOT_READERS: &[&str] = &[
    "ls", "mkdir", "mv", "rm", "rmdir", "touch", "pwd", "basename", "dirname", "realpath",
    "readlink", "ln", "mktemp", "truncate", "printenv", "expr", "factor", "seq", "date", "sleep",
    "yes", "tee", "cp", "tr",
];

pub fn before_uu(name: &str, args: &[String]) -> Option<i32> {
    let rest = &args[1..];
    match name {
        "ls" => {
            let _ = uu_ls::WASMBOX_HOOKS.set(uu_ls::WasmboxHooks {
                mode: |p, md| (!cfg!(unix)).then(|| crate::modes::mode_of(p, md)),
                owner: super::user,
                hidden: crate::modes::is_store_name,
            });
            return ls(rest);
        }
        "rmdir" => {
            for a in rest.iter().filter(|a| !a.starts_with('-')) {
                crate::modes::drop_lone_store(std::path::Path::new(a));
            }
            return None;
        }
        "cp" => return cp(rest),
        "tee" => {
            if rest.iter().any(|a| vfs::device(a) == Some(Dev::Null)) {
                let mut v = args.to_vec();
                v.retain(|a| vfs::device(a) != Some(Dev::Null));
                return Some(super::run(name, v));
            }
            return None;
        }
        _ => {}
    }
    if NOT_READERS.contains(&name) || !super::UU.iter().any(|(n, _)| *n == name) {
        return None;
    }
    let devs: Vec<(usize, Dev)> = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| args[i - 1] != "-o")
        .filter_map(|(i, a)| vfs::device(a).map(|d| (i, d)))
        .filter(|(_, d)| !matches!(d, Dev::Stdout | Dev::Stderr))
        .collect();
    let [(i, dev)] = devs[..] else {
        return None;
    };
    let mut argv = args.to_vec();
    argv[i] = "-".into();
    if dev == Dev::Stdin {
        return Some(super::run(name, argv));
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cwd = super::cwd();
    let mut stages = Vec::new();
    let stdin = match dev {
        Dev::Null => Input::Null,
        _ => {
            let kind = if dev == Dev::Zero { "zero" } else { "random" };
            stages.push(Stage {
                argv: vec![DEVCAT.into(), kind.into()],
                env: env.clone(),
                cwd: cwd.clone(),
                stdin: Input::Null,
                stdout: Output::Pipe,
                stderr: Output::Inherit,
            });
            Input::Pipe
        }
    };
    stages.push(Stage {
        argv,
        env,
        cwd,
        stdin,
        stdout: Output::Inherit,
        stderr: Output::Inherit,
    });
    let _ = std::io::stdout().flush();
    let r = default_spawner().spawn(&Request { stages });
    if let Some(e) = r.error {
        eprintln!("{name}: {e}");
        return Some(126);
    }
    Some(r.statuses.last().copied().unwrap_or(0))
}

/// `wasmbox-devcat zero|random`: endless bytes on stdout (until the reader goes).
pub fn devcat(args: &[String]) -> i32 {
    let random = args.first().is_some_and(|a| a == "random");
    let mut src = vfs::Endless::new(random);
    let mut out = std::io::stdout().lock();
    let _ = std::io::copy(&mut src, &mut out);
    0
}

/// `cp` with a device operand: `cp /dev/null F` empties (creates) F, `cp F /dev/null` reads
/// nothing and writes nothing.
fn cp(rest: &[String]) -> Option<i32> {
    let ops: Vec<&String> = rest.iter().filter(|a| !a.starts_with('-')).collect();
    let [src, dst] = ops[..] else {
        return None;
    };
    if vfs::device(dst) == Some(Dev::Null) {
        return Some(
            if std::path::Path::new(src).exists() || vfs::device(src).is_some() {
                0
            } else {
                eprintln!("cp: cannot stat '{src}': No such file or directory");
                1
            },
        );
    }
    if vfs::device(src) != Some(Dev::Null) {
        return None;
    }
    let mut target = std::path::PathBuf::from(dst);
    if target.is_dir() {
        target.push("null");
    }
    match std::fs::File::create(&target) {
        Ok(_) => Some(0),
        Err(e) => {
            eprintln!(
                "cp: cannot create regular file '{}': {}",
                target.display(),
                crate::exec::io_err_msg(&e)
            );
            Some(1)
        }
    }
}

/// `which NAME…`: the sandbox's programs in `/usr/bin`, else the first executable file of that
/// name on `$PATH`.
pub fn which(args: &[String]) -> i32 {
    let mut st = 0;
    let mut out = String::new();
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        if a.contains('/') {
            if crate::modes::is_executable(std::path::Path::new(a)) {
                out.push_str(&format!("{a}\n"));
            } else {
                st = 1;
            }
            continue;
        }
        if crate::exec::is_known_program(a) {
            out.push_str(&format!("{}\n", vfs::program_path(a)));
            continue;
        }
        let path = std::env::var("PATH").unwrap_or_default();
        let found = path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{a}", d.trim_end_matches('/')))
            .find(|p| {
                let p = std::path::Path::new(p);
                p.is_file() && crate::modes::is_executable(p)
            });
        match found {
            Some(p) => out.push_str(&format!("{p}\n")),
            None => st = 1,
        }
    }
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes()).and_then(|_| o.flush());
    st
}

/// The long-format line of a virtual file.
fn long_line(kind: &Virt, name: &str) -> String {
    let (perm, size) = match kind {
        Virt::Dev(Dev::Null) => ("crw-rw-rw-", "1, 3".to_string()),
        Virt::Dev(Dev::Zero) => ("crw-rw-rw-", "1, 5".to_string()),
        Virt::Dev(Dev::Random) => ("crw-rw-rw-", "1, 9".to_string()),
        Virt::Dev(_) => ("lrwxrwxrwx", "15".to_string()),
        Virt::Dir => ("drwxr-xr-x", "4096".to_string()),
        Virt::Program => ("-rwxr-xr-x", "0".to_string()),
    };
    format!("{perm} 1 root root {size} Jan  1  1970 {name}\n")
}

/// `ls` whose operands are all virtual paths; None when any is real (uu_ls lists them).
fn ls(rest: &[String]) -> Option<i32> {
    let mut long = false;
    let mut dir_itself = false;
    let mut ops = Vec::new();
    let mut opts_done = false;
    for a in rest {
        if !opts_done && a == "--" {
            opts_done = true;
        } else if !opts_done && a.starts_with("--") {
            match a.as_str() {
                "--directory" => dir_itself = true,
                "--all" | "--almost-all" | "--color=never" | "--color=auto" => {}
                _ => return None,
            }
        } else if !opts_done && a.starts_with('-') && a.len() > 1 {
            for c in a[1..].chars() {
                match c {
                    'l' | 'n' | 'g' | 'o' => long = true,
                    'd' => dir_itself = true,
                    '1' | 'a' | 'A' | 'h' | 'F' | 'p' | 'C' | 'x' | 'S' | 't' | 'r' | 'U' => {}
                    _ => return None,
                }
            }
        } else {
            ops.push(a.clone());
        }
    }
    let virts: Vec<(String, Virt)> = ops
        .iter()
        .map(|o| vfs::lookup(o).map(|v| (o.clone(), v)))
        .collect::<Option<_>>()?;
    if virts.is_empty() {
        return None;
    }
    let mut out = String::new();
    let (dirs, files): (Vec<_>, Vec<_>) = virts
        .into_iter()
        .partition(|(_, v)| *v == Virt::Dir && !dir_itself);
    let mut files = files;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (n, v) in &files {
        if long {
            out.push_str(&long_line(v, n));
        } else {
            out.push_str(&format!("{n}\n"));
        }
    }
    let many = dirs.len() + files.len() > 1;
    for (k, (d, _)) in dirs.iter().enumerate() {
        if k > 0 || !files.is_empty() {
            out.push('\n');
        }
        if many {
            out.push_str(&format!("{d}:\n"));
        }
        let t = d.trim_end_matches('/');
        let names: Vec<String> = match t {
            "/dev" => [
                "null", "random", "stderr", "stdin", "stdout", "urandom", "zero",
            ]
            .map(String::from)
            .to_vec(),
            "/usr" => vec!["bin".into()],
            _ => vfs::bin_listing(),
        };
        if long {
            out.push_str("total 0\n");
        }
        for n in names {
            if long {
                let v = vfs::lookup(&format!("{t}/{n}")).unwrap_or(Virt::Program);
                out.push_str(&long_line(&v, &n));
            } else {
                out.push_str(&format!("{n}\n"));
            }
        }
    }
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes()).and_then(|_| o.flush());
    Some(0)
}
