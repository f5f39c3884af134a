//! The multicall dispatcher: applets by argv[0] basename. uutils crates where they work on WASI,
//! our own code for the rest (grep, sed, uname, env, xargs, find, echo/printf/test).

mod awk;
mod chmod;
mod diff;
mod tac;
mod tar;
mod virt;

pub use virt::DEVCAT;

use crate::spawn::{default_spawner, Input, Output, Request, Stage};
use std::ffi::OsString;
use std::io::{Read, Write};

type UuMain = fn(std::vec::IntoIter<OsString>) -> i32;

macro_rules! uu {
    ($($name:literal => $krate:ident),* $(,)?) => {
        const UU: &[(&str, UuMain)] = &[
            $(($name, |a| $krate::uumain(a)),)*
        ];
    };
}

uu! {
    "ls" => uu_ls, "cat" => uu_cat, "wc" => uu_wc, "head" => uu_head, "tail" => uu_tail,
    "mkdir" => uu_mkdir, "mv" => uu_mv, "cp" => uu_cp, "rm" => uu_rm, "rmdir" => uu_rmdir,
    "touch" => uu_touch, "pwd" => uu_pwd, "sort" => uu_sort, "uniq" => uu_uniq, "tr" => uu_tr,
    "cut" => uu_cut, "seq" => uu_seq, "date" => uu_date, "sleep" => uu_sleep,
    "basename" => uu_basename, "dirname" => uu_dirname, "tee" => uu_tee, "yes" => uu_yes,
    "nl" => uu_nl, "paste" => uu_paste, "comm" => uu_comm, "fold" => uu_fold,
    "expand" => uu_expand, "base64" => uu_base64, "realpath" => uu_realpath,
    "readlink" => uu_readlink, "printenv" => uu_printenv, "expr" => uu_expr,
    "factor" => uu_factor, "shuf" => uu_shuf, "ln" => uu_ln, "mktemp" => uu_mktemp,
    "truncate" => uu_truncate, "od" => uu_od, "split" => uu_split, "join" => uu_join,
    "numfmt" => uu_numfmt, "md5sum" => uu_md5sum, "sha256sum" => uu_sha256sum,
}

const OURS: &[&str] = &[
    "sh", "bash", "dash", "echo", "printf", "test", "[", "true", "false", "uname", "grep", "egrep",
    "fgrep", "sed", "env", "xargs", "find", "hostname", "nproc", "arch", "which", "tac", "chmod",
    "whoami", "id", "diff", "awk", "mkfifo", "tar", "gzip", "gunzip", "zcat",
];

pub fn is_applet(name: &str) -> bool {
    OURS.contains(&name) || UU.iter().any(|(n, _)| *n == name)
}

/// All applet names (for `--list`).
pub fn applet_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = OURS
        .iter()
        .copied()
        .chain(UU.iter().map(|(n, _)| *n))
        .collect();
    v.sort();
    v
}

pub const UNAME_SYSNAME: &str = "wasmbox";
pub const UNAME_NODENAME: &str = "sandbox";
pub const UNAME_RELEASE: &str = env!("CARGO_PKG_VERSION");
pub const UNAME_VERSION: &str = "wasm32-wasip1";
pub const UNAME_MACHINE: &str = "wasm32";
pub const UNAME_OS: &str = "WebAssembly";

/// Run applet `name` with full argv (argv[0] = name). Returns the exit status.
pub fn run(name: &str, args: Vec<String>) -> i32 {
    if let Some(st) = virt::before_uu(name, &args) {
        let _ = std::io::stdout().flush();
        return st;
    }
    if let Some(st) = run_uu(name, &args) {
        return st;
    }
    let rest = &args[1..];
    let out = |s: &str| -> i32 {
        let mut o = std::io::stdout().lock();
        if o.write_all(&crate::bytes::encode(s))
            .and_then(|_| o.flush())
            .is_err()
        {
            return 1;
        }
        0
    };
    match name {
        "true" => 0,
        "false" => 1,
        "echo" => out(&crate::builtins::echo(rest, true)),
        "printf" => {
            if rest.is_empty() {
                eprintln!("printf: missing operand");
                return 1;
            }
            let (s, err) = crate::builtins::printf(&rest[0], &rest[1..]);
            out(&s);
            if let Some(e) = err {
                eprintln!("printf: {e}");
                return 1;
            }
            0
        }
        "test" | "[" => {
            let mut a = rest.to_vec();
            if name == "[" {
                if a.last().map(|s| s.as_str()) != Some("]") {
                    eprintln!("[: missing ']'");
                    return 2;
                }
                a.pop();
            }
            match crate::builtins::test_eval(&a, ".") {
                Ok(b) => (!b) as i32,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    2
                }
            }
        }
        "uname" => uname(rest),
        "hostname" => out(&format!("{UNAME_NODENAME}\n")),
        "arch" => out(&format!("{UNAME_MACHINE}\n")),
        "nproc" => out("1\n"),
        "which" => virt::which(rest),
        "mkfifo" => mkfifo(rest),
        virt::DEVCAT => virt::devcat(rest),
        "grep" | "egrep" | "fgrep" => crate::text::grep(name, rest),
        "sed" => crate::text::sed(rest),
        "env" => env(rest),
        "xargs" => xargs(rest),
        "find" => crate::text::find(rest),
        "tac" => tac::tac(rest),
        "whoami" => out(&format!("{}\n", user())),
        "id" => {
            // -u/-g/-G print the number, with -n the name; no option: the whole line
            let u = user();
            let n = uid();
            let mut opts = String::new();
            for a in rest {
                match a.as_str() {
                    "--user" => opts.push('u'),
                    "--group" => opts.push('g'),
                    "--groups" => opts.push('G'),
                    "--name" => opts.push('n'),
                    "--real" => opts.push('r'),
                    a if a.starts_with('-') && a.len() > 1 => opts.push_str(&a[1..]),
                    a if a == u => {}
                    a => {
                        eprintln!("id: '{a}': no such user");
                        return 1;
                    }
                }
            }
            if let Some(c) = opts.chars().find(|c| !"ugGnr".contains(*c)) {
                eprintln!("id: invalid option -- '{c}'");
                return 1;
            }
            let s = if opts.chars().all(|c| c == 'r') {
                format!("uid={n}({u}) gid={n}({u}) groups={n}({u})\n")
            } else if opts.contains('n') {
                format!("{u}\n")
            } else {
                format!("{n}\n")
            };
            out(&s)
        }
        "diff" => diff::diff(rest),
        "awk" => awk::awk(rest),
        "chmod" => chmod::chmod(rest),
        "tar" => tar::tar(rest),
        "gzip" | "gunzip" | "zcat" => tar::gzip(name, rest),
        _ => {
            eprintln!("sh: {name}: command not found");
            127
        }
    }
}

/// Run the uutils applet `name` as it is, if there is one.
fn run_uu(name: &str, args: &[String]) -> Option<i32> {
    let (_, f) = UU.iter().find(|(n, _)| *n == name)?;
    let _ = uucore::locale::setup_localization(name);
    let a: Vec<OsString> = args.iter().map(OsString::from).collect();
    let st = f(a.into_iter());
    let _ = std::io::stdout().flush();
    Some(st)
}

fn uname(args: &[String]) -> i32 {
    let mut flags = String::new();
    for a in args {
        match a.as_str() {
            "--all" => flags.push('a'),
            "--kernel-name" => flags.push('s'),
            "--nodename" => flags.push('n'),
            "--kernel-release" => flags.push('r'),
            "--kernel-version" => flags.push('v'),
            "--machine" => flags.push('m'),
            "--processor" => flags.push('p'),
            "--hardware-platform" => flags.push('i'),
            "--operating-system" => flags.push('o'),
            a if a.starts_with('-') && a.len() > 1 => flags.push_str(&a[1..]),
            a => {
                eprintln!("uname: extra operand '{a}'");
                return 1;
            }
        }
    }
    if flags.is_empty() {
        flags.push('s');
    }
    let mut parts = Vec::new();
    let all = flags.contains('a');
    for (c, v) in [
        ('s', UNAME_SYSNAME),
        ('n', UNAME_NODENAME),
        ('r', UNAME_RELEASE),
        ('v', UNAME_VERSION),
        ('m', UNAME_MACHINE),
        ('p', UNAME_MACHINE),
        ('i', UNAME_MACHINE),
        ('o', UNAME_OS),
    ] {
        if flags.contains(c) || (all && !matches!(c, 'p' | 'i')) {
            parts.push(v);
        }
    }
    for c in flags.chars() {
        if !"asnrvmpio".contains(c) {
            eprintln!("uname: invalid option -- '{c}'");
            return 1;
        }
    }
    println!("{}", parts.join(" "));
    0
}

/// The sandbox's one user: `$USER` if the environment names one (the engine sets `sandbox`,
/// with `HOME=/workspace`), else root. `whoami`, `id` and `ls -l` all show it.
pub fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// The user's number: 0 for root, 1000 (Debian's first user) for any other name.
pub fn uid() -> u32 {
    if user() == "root" {
        0
    } else {
        1000
    }
}

fn cwd() -> String {
    std::env::var("PWD").unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or("/".into())
    })
}

/// Run one command through the host, with this instance's streams.
/// Run one command (an applet, sh, python, node) with this instance's environment and stdio;
/// its status (for `find -exec`).
pub fn run_command(argv: Vec<String>) -> i32 {
    let env = std::env::vars().collect();
    spawn_one(argv, env, Input::Null)
}

fn spawn_one(argv: Vec<String>, env: Vec<(String, String)>, stdin: Input) -> i32 {
    let _ = std::io::stdout().flush();
    let name = argv[0].clone();
    let argv = if crate::exec::is_known_program(&name) || name.contains('/') {
        argv
    } else {
        eprintln!("{name}: command not found");
        return 127;
    };
    let req = Request {
        stages: vec![Stage {
            argv,
            env,
            cwd: cwd(),
            stdin,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
        }],
    };
    let r = default_spawner().spawn(&req);
    if let Some(e) = r.error {
        eprintln!("{name}: {e}");
        return 126;
    }
    r.statuses.first().copied().unwrap_or(0)
}

fn env(args: &[String]) -> i32 {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-i" || a == "-" || a == "--ignore-environment" {
            vars.clear();
        } else if a == "-u" {
            if let Some(n) = args.get(i + 1) {
                vars.retain(|(k, _)| k != n);
            }
            i += 1;
        } else if a == "--" {
            i += 1;
            break;
        } else if a.starts_with('-') && a.len() > 1 {
            eprintln!("env: {a}: not supported");
            return 125;
        } else if let Some((k, v)) = a.split_once('=') {
            vars.retain(|(x, _)| x != k);
            vars.push((k.to_string(), v.to_string()));
        } else {
            break;
        }
        i += 1;
    }
    if i >= args.len() {
        let mut o = std::io::stdout().lock();
        for (k, v) in &vars {
            let _ = writeln!(o, "{k}={v}");
        }
        return 0;
    }
    spawn_one(args[i..].to_vec(), vars, Input::Inherit)
}

fn xargs(args: &[String]) -> i32 {
    let mut max_args: Option<usize> = None;
    let mut replace: Option<String> = None;
    let mut null = false;
    let mut no_run_empty = false;
    let mut delim: Option<char> = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-n" => {
                max_args = args.get(i + 1).and_then(|s| s.parse().ok());
                i += 1;
            }
            "-I" => {
                replace = args.get(i + 1).cloned();
                i += 1;
            }
            "-0" | "--null" => null = true,
            "-r" | "--no-run-if-empty" => no_run_empty = true,
            "-d" => {
                delim = args.get(i + 1).and_then(|s| {
                    crate::builtins::echo_escapes(s, false, true)
                        .0
                        .chars()
                        .next()
                });
                i += 1;
            }
            s if s.starts_with("-n") && s.len() > 2 => max_args = s[2..].parse().ok(),
            s if s.starts_with("-I") && s.len() > 2 => replace = Some(s[2..].to_string()),
            "--" => {
                i += 1;
                break;
            }
            s if s.starts_with('-') && s.len() > 1 => {
                eprintln!("xargs: {s}: not supported");
                return 1;
            }
            _ => break,
        }
        i += 1;
    }
    let cmd: Vec<String> = if i < args.len() {
        args[i..].to_vec()
    } else {
        vec!["echo".into()]
    };
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    let items: Vec<String> = if null {
        input
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    } else if let Some(d) = delim {
        input
            .split(d)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    } else if replace.is_some() {
        input
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        split_xargs(&input)
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    if items.is_empty() {
        if no_run_empty || replace.is_some() {
            return 0;
        }
        return norm(spawn_one(cmd, env, Input::Null));
    }
    let mut worst = 0;
    if let Some(r) = replace {
        for it in items {
            let argv: Vec<String> = cmd.iter().map(|a| a.replace(&r, &it)).collect();
            let st = spawn_one(argv, env.clone(), Input::Null);
            if st != 0 {
                worst = worst.max(norm(st));
            }
        }
        return worst;
    }
    let chunk = max_args.unwrap_or(5000).max(1);
    for c in items.chunks(chunk) {
        let mut argv = cmd.clone();
        argv.extend(c.iter().cloned());
        let st = spawn_one(argv, env.clone(), Input::Null);
        if st == 127 || st == 126 {
            return st;
        }
        if st != 0 {
            worst = 123;
        }
    }
    worst
}

fn norm(st: i32) -> i32 {
    if st == 0 || st == 126 || st == 127 {
        st
    } else {
        123
    }
}

fn split_xargs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut q: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match q {
            Some(qc) => {
                if c == qc {
                    q = None;
                } else {
                    cur.push(c);
                }
            }
            None => match c {
                '\'' | '"' => {
                    q = Some(c);
                    have = true;
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                        have = true;
                    }
                }
                c if c.is_whitespace() => {
                    if have || !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                        have = false;
                    }
                }
                c => cur.push(c),
            },
        }
    }
    if have || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `mkfifo [-m MODE] NAME…`: named pipes (see `crate::modes::make_fifo`).
fn mkfifo(args: &[String]) -> i32 {
    let mut perm = 0o644; // 0666 less the sandbox's umask (022)
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-m" => match it.next().and_then(|m| u32::from_str_radix(m, 8).ok()) {
                Some(m) if m <= 0o7777 => perm = m,
                _ => {
                    eprintln!("mkfifo: invalid mode");
                    return 1;
                }
            },
            "--" => names.extend(it.by_ref().cloned()),
            s if s.starts_with("-m") && s.len() > 2 => match u32::from_str_radix(&s[2..], 8) {
                Ok(m) if m <= 0o7777 => perm = m,
                _ => {
                    eprintln!("mkfifo: invalid mode '{}'", &s[2..]);
                    return 1;
                }
            },
            s if s.starts_with('-') && s.len() > 1 => {
                eprintln!("mkfifo: invalid option -- '{}'", &s[1..]);
                return 1;
            }
            _ => names.push(a.clone()),
        }
    }
    if names.is_empty() {
        eprintln!("mkfifo: missing operand");
        return 1;
    }
    let mut status = 0;
    for n in names {
        if let Err(e) = crate::modes::make_fifo(std::path::Path::new(&n), perm) {
            eprintln!(
                "mkfifo: cannot create fifo '{n}': {}",
                crate::exec::io_err_msg(&e)
            );
            status = 1;
        }
    }
    status
}
