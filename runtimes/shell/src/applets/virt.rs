//! The uutils applets open files with std, which on WASI knows no device files and no `/bin`:
//! this is where their arguments meet [`crate::vfs`] before they run.
//!
//! * `ls` of virtual paths (`ls /bin`, `ls -l /dev/null`) is answered here; `ls` of real ones
//!   gets the mode store's permission bits and the user's name (hooks in vendor/uu_ls).
//! * One reading operand that is a device: `/dev/stdin` becomes `-`; `/dev/null`, `/dev/zero` and
//!   `/dev/urandom` become `-` in a fresh instance whose stdin is empty, or is fed by a
//!   [`DEVCAT`] stage (`head -c 4 /dev/zero`).
//! * `cp /dev/null F` empties F, `cp F /dev/null` writes nothing, `tee` writes to the device
//!   files too.
//! * On WASI `cp` and `mv` carry permission bits along (the store is per directory): `mv` keeps
//!   them, `cp` gives a new file the source's bits less the umask (all of them with `-p`/`-a`).
//! * `rmdir` first removes a mode store left alone in the directory, `rm` drops the store lines
//!   of what it removed.

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
                mode: |p, md| (!cfg!(unix)).then(|| crate::modes::mode_with_type(p, md)),
                owner: super::user,
                owner_id: super::uid,
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
        "cp" => return cp(rest).or_else(|| carry_modes(name, args)),
        "mv" => return carry_modes(name, args),
        "rm" => {
            let st = super::run_uu(name, args)?;
            for a in rest.iter().filter(|a| !a.starts_with('-')) {
                let p = std::path::Path::new(a.trim_end_matches('/'));
                if std::fs::symlink_metadata(p).is_err() {
                    crate::modes::forget(p);
                }
            }
            return Some(st);
        }
        "tee" => return tee(rest),
        _ => {}
    }
    if NOT_READERS.contains(&name) || !super::UU.iter().any(|(n, _)| *n == name) {
        return None;
    }
    if let Some(status) = read_named_pipe(name, args) {
        return Some(status);
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

/// One reading operand that is a named pipe (`cat p`, `wc -l p`): the applet runs again in a
/// fresh instance reading `-`, whose stdin is the pipe's read end (held by the host, shared
/// with the writers in other instances).
fn read_named_pipe(name: &str, args: &[String]) -> Option<i32> {
    let cwd = super::cwd();
    let abs = |a: &str| {
        if a.starts_with('/') {
            a.to_string()
        } else {
            format!("{}/{a}", cwd.trim_end_matches('/'))
        }
    };
    let fifos: Vec<(usize, String)> = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, a)| args[i - 1] != "-o" && !a.starts_with('-'))
        .map(|(i, a)| (i, abs(a)))
        .filter(|(_, p)| crate::modes::is_host_fifo(std::path::Path::new(p)))
        .collect();
    let [(i, path)] = &fifos[..] else {
        return None;
    };
    let mut argv = args.to_vec();
    argv[*i] = "-".into();
    let stage = Stage {
        argv,
        env: std::env::vars().collect(),
        cwd,
        stdin: Input::Fifo(path.clone()),
        stdout: Output::Inherit,
        stderr: Output::Inherit,
    };
    let _ = std::io::stdout().flush();
    let r = default_spawner().spawn(&Request {
        stages: vec![stage],
    });
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

/// `tee [-a] FILE…` when a FILE is a device: the device names write to our streams.
fn tee(rest: &[String]) -> Option<i32> {
    // /dev/stdout and /dev/stderr are always our own streams (reopening the real ones would
    // truncate a file they are redirected to)
    let dev = |a: &str| match vfs::device_name(a) {
        Some(d @ (Dev::Stdout | Dev::Stderr)) => Some(d),
        _ => vfs::device(a),
    };
    if !rest.iter().any(|a| dev(a).is_some()) {
        return None;
    }
    let mut append = false;
    let mut files = Vec::new();
    for a in rest {
        match a.as_str() {
            "-a" | "--append" => append = true,
            "-i" | "-p" | "--ignore-interrupts" => {}
            a if a.starts_with('-') && a.len() > 1 => return None,
            a => files.push(a.to_string()),
        }
    }
    enum Sink {
        Out,
        Err,
        File(std::fs::File),
    }
    let mut st = 0;
    let mut sinks = Vec::new();
    for f in &files {
        match dev(f) {
            Some(Dev::Null | Dev::Zero | Dev::Random | Dev::Stdin) => {}
            Some(Dev::Stdout) => sinks.push(Sink::Out),
            Some(Dev::Stderr) => sinks.push(Sink::Err),
            None => {
                let mut o = std::fs::OpenOptions::new();
                if append {
                    o.append(true).create(true);
                } else {
                    o.write(true).create(true).truncate(true);
                }
                match o.open(f) {
                    Ok(h) => sinks.push(Sink::File(h)),
                    Err(e) => {
                        eprintln!("tee: {f}: {}", crate::exec::io_err_msg(&e));
                        st = 1;
                    }
                }
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut input = std::io::stdin().lock();
    loop {
        let n = match std::io::Read::read(&mut input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                st = 1;
                break;
            }
        };
        let chunk = &buf[..n];
        if std::io::stdout().write_all(chunk).is_err() {
            return Some(st.max(1));
        }
        for s in sinks.iter_mut() {
            let r = match s {
                Sink::Out => std::io::stdout().write_all(chunk),
                Sink::Err => std::io::stderr().write_all(chunk),
                Sink::File(f) => f.write_all(chunk),
            };
            if r.is_err() {
                st = 1;
            }
        }
    }
    let _ = std::io::stdout().flush();
    Some(st)
}

/// The non-default permission bits under `path` (itself included), by path relative to it.
fn collect_modes(
    path: &std::path::Path,
    rel: &std::path::Path,
    out: &mut Vec<(std::path::PathBuf, u32)>,
) {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return;
    };
    let m = crate::modes::mode_of(path, &md);
    if m != crate::modes::default_mode(&md) {
        out.push((rel.to_path_buf(), m));
    }
    if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                if !crate::modes::is_store_name(&e.file_name()) {
                    collect_modes(&e.path(), &rel.join(e.file_name()), out);
                }
            }
        }
    }
}

/// `cp`/`mv` on WASI: run the applet, then give the copies the modes of their sources (the mode
/// store is per directory and keyed by inode, so neither a copy nor a move to another
/// directory finds the old line).
fn carry_modes(name: &str, args: &[String]) -> Option<i32> {
    if cfg!(unix) {
        return None;
    }
    let mut preserve = name == "mv";
    let mut ops = Vec::new();
    let mut no_target_dir = false;
    for a in &args[1..] {
        match a.as_str() {
            "-p" | "-a" | "--archive" => preserve = true,
            s if s.starts_with("--preserve") => preserve = true,
            "-T" | "--no-target-directory" => no_target_dir = true,
            s if s.starts_with("-t") || s.starts_with("--target-directory") => return None,
            s if s.starts_with("--") => {}
            s if s.starts_with('-') && s.len() > 1 => {
                if s.contains('a') || s.contains('p') {
                    preserve = true;
                }
            }
            s => ops.push(s.to_string()),
        }
    }
    if ops.len() < 2 {
        return None;
    }
    let dst = ops.pop().unwrap_or_default();
    let into_dir = !no_target_dir && (ops.len() > 1 || std::path::Path::new(&dst).is_dir());
    // (destination, existed before, modes under the source)
    let mut plan = Vec::new();
    for src in &ops {
        let sp = std::path::Path::new(src.trim_end_matches('/'));
        let target = if into_dir {
            match sp.file_name() {
                Some(b) => std::path::Path::new(&dst).join(b),
                None => continue,
            }
        } else {
            std::path::PathBuf::from(&dst)
        };
        let existed = std::fs::symlink_metadata(&target).is_ok();
        let mut modes = Vec::new();
        collect_modes(sp, std::path::Path::new(""), &mut modes);
        plan.push((target, existed, modes));
    }
    let st = super::run_uu(name, args)?;
    for (target, existed, modes) in plan {
        if existed && !preserve && name == "cp" {
            continue;
        }
        for (rel, m) in modes {
            let m = if preserve { m } else { m & !0o022 };
            let t = if rel.as_os_str().is_empty() {
                target.clone()
            } else {
                target.join(rel)
            };
            let _ = crate::modes::set_mode(&t, m);
        }
    }
    Some(st)
}
