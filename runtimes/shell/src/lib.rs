//! wasmbox shell guest: a POSIX-sh subset and coreutils-style applets in one WASI command module.
//! See ABI.md for the host interface.

pub mod applets;
pub mod arith;
pub mod ast;
pub mod builtins;
pub mod bytes;
pub mod cond;
pub mod exec;
pub mod expand;
pub mod interactive;
pub mod jobs;
pub mod modes;
pub mod parse;
pub mod pattern;
pub mod procsub;
pub mod spawn;
pub mod text;
pub mod unparse;
pub mod vars;
pub mod vfs;

use std::io::Read;

/// Set by the shell on a child whose stdin is `/dev/zero` (`zero`) or `/dev/urandom` (`random`),
/// which WASI cannot open: the child starts itself again behind a stage writing those bytes.
pub const STDIN_DEVICE: &str = "WASMBOX_STDIN_DEVICE";

/// `args` again, its stdin fed by the endless device `kind`.
fn run_behind_device(kind: &str, args: Vec<String>) -> i32 {
    use spawn::{Input, Output, Request, Stage};
    std::env::remove_var(STDIN_DEVICE);
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cwd = std::env::var("PWD").unwrap_or_else(|_| "/".into());
    let stage = |argv: Vec<String>, stdin, stdout| Stage {
        argv,
        env: env.clone(),
        cwd: cwd.clone(),
        stdin,
        stdout,
        stderr: Output::Inherit,
    };
    let req = Request {
        stages: vec![
            stage(
                vec![applets::DEVCAT.into(), kind.into()],
                Input::Null,
                Output::Pipe,
            ),
            stage(args, Input::Pipe, Output::Inherit),
        ],
    };
    let r = spawn::default_spawner().spawn(&req);
    if let Some(e) = r.error {
        eprintln!("sh: {e}");
        return 126;
    }
    r.statuses.last().copied().unwrap_or(0)
}

/// The multicall entry point: dispatch on the basename of argv[0]. Returns the exit status.
pub fn main_entry(args: Vec<String>) -> i32 {
    if let Ok(kind) = std::env::var(STDIN_DEVICE) {
        return run_behind_device(&kind, args);
    }
    // WASI libc starts every process in `/`: move to $PWD.
    if let Ok(pwd) = std::env::var("PWD") {
        if pwd.starts_with('/') {
            let _ = std::env::set_current_dir(&pwd);
        }
    }
    let argv0 = args.first().cloned().unwrap_or_else(|| "sh".into());
    let name = argv0
        .rsplit('/')
        .next()
        .unwrap_or(&argv0)
        .trim_start_matches('-')
        .to_string();
    match name.as_str() {
        "sh" | "dash" | "wasmbox-sh" => shell_main(&args, false),
        "bash" => shell_main(&args, true),
        _ => applets::run(&name, args),
    }
}

fn usage_error(sh_name: &str, msg: &str) -> i32 {
    eprintln!("{sh_name}: {msg}");
    2
}

/// `sh [-eux…] [-o opt] (-c STRING [NAME [ARG…]] | FILE [ARG…] | -s [ARG…] | -i [ARG…])`
pub fn shell_main(args: &[String], bash: bool) -> i32 {
    let mut sh = exec::Shell::new(spawn::default_spawner(), bash);
    let sh_name = sh.name.clone();
    let mut i = 1;
    let mut command: Option<bool> = None;
    let mut from_stdin = false;
    let mut interactive = false;
    let mut set_args: Vec<String> = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if a == "--" || a == "-" {
            i += 1;
            break;
        }
        if a == "--version" {
            println!("wasmbox sh {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        if a == "--list" {
            println!("{}", applets::applet_names().join("\n"));
            return 0;
        }
        if a.starts_with("--") {
            // bash long options we can ignore
            match a.as_str() {
                "--norc" | "--noprofile" | "--posix" | "--login" => {
                    i += 1;
                    continue;
                }
                _ => return usage_error(&sh_name, &format!("{a}: not supported")),
            }
        }
        let (on, flags) = match (a.strip_prefix('-'), a.strip_prefix('+')) {
            (Some(f), _) if !f.is_empty() => (true, f),
            (_, Some(f)) if !f.is_empty() => (false, f),
            _ => break,
        };
        for c in flags.chars() {
            match c {
                'c' => command = Some(true),
                's' => from_stdin = true,
                'i' => interactive = true,
                'l' => {}
                'o' => {
                    i += 1;
                    let Some(o) = args.get(i) else {
                        return usage_error(&sh_name, "-o: option requires an argument");
                    };
                    set_args.push(format!("{}o", if on { '-' } else { '+' }));
                    set_args.push(o.clone());
                }
                c => set_args.push(format!("{}{c}", if on { '-' } else { '+' })),
            }
        }
        i += 1;
    }
    let mut k = 0;
    while k < set_args.len() {
        let mut a = vec!["set".to_string(), set_args[k].clone()];
        if set_args[k].ends_with('o') && set_args[k].len() == 2 {
            k += 1;
            a.push(set_args[k].clone());
        }
        match builtins::run_builtin(&mut sh, &a) {
            Ok(0) => {}
            _ => return 2,
        }
        k += 1;
    }
    let rest = &args[i.min(args.len())..];
    let src = if command == Some(true) {
        let Some(s) = rest.first() else {
            return usage_error(&sh_name, "-c requires an argument");
        };
        if let Some(n) = rest.get(1) {
            sh.arg0 = n.clone();
            sh.params = rest[2..].to_vec();
        } else {
            sh.params = Vec::new();
        }
        s.clone()
    } else if !from_stdin && !rest.is_empty() {
        let file = &rest[0];
        sh.arg0 = file.clone();
        sh.params = rest[1..].to_vec();
        match std::fs::read(file) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                eprintln!("{sh_name}: 0: cannot open {file}: {}", exec::io_err_msg(&e));
                return if bash { 127 } else { 2 };
            }
        }
    } else if interactive {
        sh.params = rest.to_vec();
        return sh.run_interactive();
    } else {
        sh.params = rest.to_vec();
        let mut s = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    };
    sh.run_script(&src)
}
