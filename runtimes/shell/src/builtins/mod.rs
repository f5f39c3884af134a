//! Shell builtins, and the helpers (`echo`, `printf`, `test`) shared with the applets.

use crate::exec::{normalize, shell_quote, Flow, Shell, Var, R};
use crate::parse::{self, is_name};

mod alias;
mod declare;
mod mapfile;
pub mod shopt;

/// How POSIX (and bash) classify a builtin: special builtins' assignments persist and their
/// errors end a non-interactive shell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Special,
    Regular,
    /// bash's own (also run in sh mode: a script that calls them means them).
    BashOnly,
}

/// One builtin: its name, kind and implementation (`run(shell, name, args)`).
pub struct Builtin {
    pub name: &'static str,
    pub kind: Kind,
    pub run: BuiltinFn,
}

/// `run(shell, name, args)`: the name as invoked (one function may serve several names).
pub type BuiltinFn = fn(&mut Shell, &str, &[String]) -> R;

/// Every builtin. To add one: write `fn bi_x(sh, name, args) -> R` and list it here.
static BUILTINS: &[Builtin] = &[
    b(":", Special, bi_colon),
    b("true", Regular, bi_colon),
    b("false", Regular, bi_false),
    b("echo", Regular, bi_echo),
    b("printf", Regular, bi_printf),
    b("test", Regular, bi_test),
    b("[", Regular, bi_test),
    b("cd", Regular, bi_cd),
    b("pwd", Regular, bi_pwd),
    b("exit", Special, bi_exit),
    b("return", Special, bi_return),
    b("break", Special, bi_break),
    b("continue", Special, bi_break),
    b("shift", Special, bi_shift),
    b("set", Special, bi_set),
    b("export", Special, bi_export),
    b("readonly", Special, bi_export),
    b("unset", Special, bi_unset),
    b("shopt", BashOnly, bi_shopt),
    b("alias", Regular, bi_alias),
    b("unalias", Regular, bi_unalias),
    b("pushd", BashOnly, bi_pushd),
    b("popd", BashOnly, bi_popd),
    b("dirs", BashOnly, bi_dirs),
    b("mapfile", BashOnly, bi_mapfile),
    b("readarray", BashOnly, bi_mapfile),
    b("local", Regular, bi_local),
    b("declare", BashOnly, bi_local),
    b("typeset", BashOnly, bi_local),
    b("read", Regular, bi_read),
    b("eval", Special, bi_eval),
    b(".", Special, bi_source),
    b("source", BashOnly, bi_source),
    b("exec", Special, bi_exec),
    b("trap", Special, bi_trap),
    b("type", Regular, bi_type),
    b("command", Regular, bi_command),
    b("hash", Regular, bi_hash),
    b("builtin", BashOnly, bi_builtin),
    b("wait", Regular, bi_wait),
    b("kill", Regular, bi_kill),
    b("jobs", Regular, bi_jobs),
    b("umask", Regular, bi_umask),
    b("getopts", Regular, bi_getopts),
    b("let", BashOnly, bi_let),
    b("fg", Regular, bi_unsupported),
    b("bg", Regular, bi_unsupported),
    b("ulimit", Regular, bi_unsupported),
    b("times", Regular, bi_unsupported),
    b("disown", BashOnly, bi_unsupported),
    b("suspend", BashOnly, bi_unsupported),
];

const fn b(name: &'static str, kind: Kind, run: BuiltinFn) -> Builtin {
    Builtin { name, kind, run }
}

use Kind::{BashOnly, Regular, Special};

fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn is_special_builtin(name: &str) -> bool {
    lookup(name).is_some_and(|b| b.kind == Kind::Special)
}

pub fn is_builtin(name: &str, _bash: bool) -> bool {
    lookup(name).is_some()
}

pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// Builtins the sandbox cannot provide (job control, resource limits): status 2.
fn bi_unsupported(sh: &mut Shell, name: &str, _args: &[String]) -> R {
    sh.errmsg(&format!("{name}: not supported"));
    Ok(2)
}

fn parse_num(sh: &mut Shell, cmd: &str, s: &str) -> Result<i64, Flow> {
    match s.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        _ => {
            sh.errmsg(&format!("{cmd}: Illegal number: {s}"));
            Err(Flow::Exit(2))
        }
    }
}

pub fn run_builtin(sh: &mut Shell, argv: &[String]) -> R {
    let name = argv[0].as_str();
    let args = &argv[1..];
    match lookup(name) {
        Some(b) => (b.run)(sh, name, args),
        None => {
            sh.errmsg(&format!("{name}: not supported"));
            Ok(2)
        }
    }
}

/// `:`, `true`.
fn bi_colon(_sh: &mut Shell, _name: &str, _args: &[String]) -> R {
    Ok(0)
}

/// `false`.
fn bi_false(_sh: &mut Shell, _name: &str, _args: &[String]) -> R {
    Ok(1)
}

/// `echo`.
fn bi_echo(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let s = echo(args, sh.bash);
    if !sh.out(&s) {
        return Ok(1);
    }
    Ok(0)
}

/// `printf`.
fn bi_printf(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut args = args;
    let mut var = None;
    if sh.bash && args.first().is_some_and(|a| a == "-v") {
        var = args.get(1).cloned();
        args = args.get(2..).unwrap_or(&[]);
    }
    if args.first().is_some_and(|a| a == "--") {
        args = &args[1..];
    }
    if args.is_empty() {
        sh.errmsg("printf: usage: printf [-v var] format [arguments]");
        return Ok(2);
    }
    let (s, err) = printf(&args[0], &args[1..]);
    match var {
        Some(v) => {
            let r = match crate::vars::split_subscript(&v) {
                Some((n, sub)) => {
                    let sub = sh.expand_subscript_text(sub)?;
                    sh.assign_elem(n, &sub, &s, false)
                }
                None => sh.set_var(&v, &s),
            };
            if let Err(m) = r {
                sh.errmsg(&format!("printf: {m}"));
                return Ok(1);
            }
        }
        None => {
            sh.out(&s);
        }
    }
    if let Some(e) = err {
        sh.errmsg(&format!("printf: {e}"));
        return Ok(1);
    }
    Ok(0)
}

/// `test`, `[`.
fn bi_test(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let mut a = args.to_vec();
    if name == "[" {
        if a.last().map(|s| s.as_str()) != Some("]") {
            sh.errmsg("[: missing ]");
            return Ok(2);
        }
        a.pop();
    }
    match test_eval(&a, &sh.cwd) {
        Ok(b) => Ok(if b { 0 } else { 1 }),
        Err(e) => {
            sh.errmsg(&format!("{name}: {e}"));
            Ok(2)
        }
    }
}

/// `cd`.
fn bi_cd(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_cd(sh, args)
}

/// `pwd`.
fn bi_pwd(sh: &mut Shell, _name: &str, _args: &[String]) -> R {
    let s = format!("{}\n", sh.cwd);
    sh.out(&s);
    Ok(0)
}

/// `exit`.
fn bi_exit(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let st = match args.first() {
        Some(a) => parse_num(sh, "exit", a)? as i32 & 0xff,
        None => sh.status,
    };
    Err(Flow::Exit(st))
}

/// `return`.
fn bi_return(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let st = match args.first() {
        Some(a) => parse_num(sh, "return", a)? as i32 & 0xff,
        None => sh.status,
    };
    Err(Flow::Return(st))
}

/// `break`, `continue`.
fn bi_break(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let n = match args.first() {
        Some(a) => parse_num(sh, name, a)?.max(1) as usize,
        None => 1,
    };
    if sh.loop_depth == 0 {
        return Ok(0);
    }
    let n = n.min(sh.loop_depth);
    Err(if name == "break" {
        Flow::Break(n)
    } else {
        Flow::Continue(n)
    })
}

/// `shift`.
fn bi_shift(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let n = match args.first() {
        Some(a) => parse_num(sh, "shift", a)? as usize,
        None => 1,
    };
    if n > sh.params.len() {
        if sh.bash {
            // bash: a failed shift is just status 1
            return Ok(1);
        }
        sh.errmsg("shift: can't shift that many");
        return Err(Flow::Exit(2));
    }
    sh.params.drain(..n);
    Ok(0)
}

/// `set`.
fn bi_set(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_set(sh, args)
}

/// `export`, `readonly`.
fn bi_export(sh: &mut Shell, name: &str, args: &[String]) -> R {
    builtin_export(sh, name, args)
}

/// `unset`.
fn bi_unset(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut funcs = false;
    let mut st = 0;
    for a in args {
        match a.as_str() {
            "-f" => funcs = true,
            "-v" => funcs = false,
            a => {
                if funcs {
                    sh.funcs.remove(a);
                } else if sh.bash && declare::unset_element(sh, a)? {
                } else if let Err(m) = sh.unset_var(a) {
                    sh.errmsg(&format!("unset: {m}"));
                    st = 1;
                }
            }
        }
    }
    Ok(st)
}

/// `shopt`.
fn bi_shopt(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    shopt::shopt(sh, args)
}

/// `alias`.
fn bi_alias(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    alias::alias(sh, args)
}

/// `unalias`.
fn bi_unalias(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    alias::unalias(sh, args)
}

/// `pushd`.
fn bi_pushd(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    alias::pushd(sh, args)
}

/// `popd`.
fn bi_popd(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    alias::popd(sh, args)
}

/// `dirs`.
fn bi_dirs(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    alias::dirs(sh, args)
}

/// `mapfile`, `readarray`.
fn bi_mapfile(sh: &mut Shell, name: &str, args: &[String]) -> R {
    mapfile::mapfile(sh, name, args)
}

/// `local`, `declare`, `typeset`.
fn bi_local(sh: &mut Shell, name: &str, args: &[String]) -> R {
    declare::declare(sh, name, args)
}

/// `read`.
fn bi_read(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_read(sh, args)
}

/// `eval`.
fn bi_eval(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let src = args.join(" ");
    match parse::parse(&src) {
        Ok(p) => sh.exec_program(&p),
        Err(e) => {
            sh.errmsg(&format!("eval: {e}"));
            Ok(2)
        }
    }
}

/// `.`, `source`.
fn bi_source(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let Some(file) = args.first() else {
        sh.errmsg(&format!("{name}: filename argument required"));
        return Ok(2);
    };
    let found;
    let file = if file.contains('/') {
        file
    } else {
        // PATH first; bash then tries the current directory
        match sh.path_lookup(file) {
            Some(p) => {
                found = p;
                &found
            }
            None if sh.bash => file,
            None => {
                sh.errmsg(&format!("{name}: {file}: not found"));
                return Err(Flow::Exit(2));
            }
        }
    };
    let src = match crate::vfs::read_all(file).and_then(|b| {
        String::from_utf8(b).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
    }) {
        Ok(s) => s,
        Err(e) => {
            sh.errmsg(&format!(
                "{name}: cannot open {file}: {}",
                crate::exec::io_err_msg(&e)
            ));
            return Err(Flow::Exit(2));
        }
    };
    let prog = match parse::parse(&src) {
        Ok(p) => p,
        Err(e) => {
            sh.errmsg(&format!("{file}: {e}"));
            return Err(Flow::Exit(2));
        }
    };
    let saved = if args.len() > 1 {
        Some(std::mem::replace(&mut sh.params, args[1..].to_vec()))
    } else {
        None
    };
    let r = sh.exec_program(&prog);
    if let Some(p) = saved {
        sh.params = p;
    }
    match r {
        Err(Flow::Return(n)) => Ok(n),
        r => r,
    }
}

/// `exec`.
fn bi_exec(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    if args.is_empty() {
        return Ok(0); // redirections stay in effect (see run_builtin_redir)
    }
    let st = if is_builtin(&args[0], sh.bash) {
        run_builtin(sh, args)?
    } else {
        let c = crate::ast::Command::Simple(crate::ast::SimpleCmd {
            assigns: vec![],
            words: args
                .iter()
                .map(|a| parse::lit_word(&shell_quote(a)))
                .map(|mut w| {
                    w.parts = vec![crate::ast::WordPart::Quoted(unquote_simple(&w.raw))];
                    w
                })
                .collect(),
            redirs: vec![],
            line: sh.line,
        });
        let saved = std::mem::take(&mut sh.funcs);
        let r = sh.exec_command(&c);
        sh.funcs = saved;
        r?
    };
    Err(Flow::Exit(st))
}

/// `trap`.
fn bi_trap(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_trap(sh, args)
}

/// `type`.
fn bi_type(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut st = 0;
    let mut kind_only = false;
    let mut path_only = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "-t" => kind_only = true,
            "-p" | "-P" => path_only = true,
            "-a" | "-f" => {}
            _ => names.push(a.clone()),
        }
    }
    for a in &names {
        if kind_only || path_only {
            let kind = if sh.funcs.contains_key(a) {
                "function"
            } else if crate::parse::KEYWORDS.contains(&a.as_str()) || a == "[[" {
                "keyword"
            } else if is_builtin(a, sh.bash) {
                "builtin"
            } else if crate::exec::is_known_program(a) {
                "file"
            } else {
                st = 1;
                continue;
            };
            let s = match (path_only, kind) {
                (false, k) => format!("{k}\n"),
                (true, "file") => format!("{}\n", crate::vfs::program_path(a)),
                (true, _) => continue,
            };
            sh.out(&s);
            continue;
        }
        let s = if sh.funcs.contains_key(a) {
            format!("{a} is a shell function\n")
        } else if is_special_builtin(a) {
            format!("{a} is a special shell builtin\n")
        } else if is_builtin(a, sh.bash) {
            format!("{a} is a shell builtin\n")
        } else if matches!(
            a.as_str(),
            "if" | "then"
                | "else"
                | "elif"
                | "fi"
                | "for"
                | "while"
                | "until"
                | "do"
                | "done"
                | "case"
                | "esac"
                | "{"
                | "}"
                | "!"
        ) {
            format!("{a} is a shell keyword\n")
        } else if crate::exec::is_known_program(a) {
            format!("{a} is {}\n", crate::vfs::program_path(a))
        } else {
            st = if sh.bash { 1 } else { 127 };
            sh.errmsg(&format!("type: {a}: not found"));
            continue;
        };
        sh.out(&s);
    }
    Ok(st)
}

/// `command`.
fn bi_command(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut i = 0;
    let mut mode = ' ';
    while i < args.len() && args[i].starts_with('-') && args[i].len() > 1 {
        match args[i].as_str() {
            "-v" => mode = 'v',
            "-V" => mode = 'V',
            "-p" => {}
            "--" => {
                i += 1;
                break;
            }
            o => {
                sh.errmsg(&format!("command: {o}: bad option"));
                return Ok(2);
            }
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() {
        return Ok(0);
    }
    if mode == 'v' || mode == 'V' {
        let mut st = 0;
        for a in rest {
            let known = sh.funcs.contains_key(a)
                || is_builtin(a, sh.bash)
                || crate::exec::is_known_program(a)
                || matches!(
                    a.as_str(),
                    "if" | "then" | "else" | "fi" | "for" | "while" | "case" | "do" | "done"
                );
            if known {
                let program = !sh.funcs.contains_key(a)
                    && !is_builtin(a, sh.bash)
                    && crate::exec::is_known_program(a);
                let s = match (mode, program) {
                    ('v', true) => format!("{}\n", crate::vfs::program_path(a)),
                    ('v', false) => format!("{a}\n"),
                    (_, true) => format!("{a} is {}\n", crate::vfs::program_path(a)),
                    _ => format!("{a} is {a}\n"),
                };
                sh.out(&s);
            } else {
                st = 1;
            }
        }
        return Ok(st);
    }
    if is_builtin(&rest[0], sh.bash) {
        return run_builtin(sh, rest);
    }
    let saved = std::mem::take(&mut sh.funcs);
    let c = crate::ast::Command::Simple(crate::ast::SimpleCmd {
        assigns: vec![],
        words: rest
            .iter()
            .map(|a| crate::ast::Word {
                raw: shell_quote(a),
                parts: vec![crate::ast::WordPart::Quoted(a.clone())],
            })
            .collect(),
        redirs: vec![],
        line: sh.line,
    });
    let r = sh.exec_command(&c);
    sh.funcs = saved;
    r
}

/// `hash`.
fn bi_hash(_sh: &mut Shell, _name: &str, _args: &[String]) -> R {
    Ok(0)
}

/// `builtin`.
fn bi_builtin(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    match args.first() {
        Some(b) if is_builtin(b, sh.bash) => run_builtin(sh, args),
        Some(b) => {
            sh.errmsg(&format!("builtin: {b}: not a shell builtin"));
            Ok(1)
        }
        None => Ok(0),
    }
}

/// `wait`.
fn bi_wait(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_wait(sh, args)
}

/// `kill`.
fn bi_kill(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_kill(sh, args)
}

/// `jobs [-l|-p]`: the background jobs (see `Shell::list_jobs`).
fn bi_jobs(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut pids_only = false;
    let mut long = false;
    for a in args {
        match a.as_str() {
            "-p" => pids_only = true,
            "-l" => long = true,
            "-r" | "-s" | "-n" | "--" => {}
            other => {
                sh.errmsg(&format!("jobs: {other}: invalid option"));
                return Ok(2);
            }
        }
    }
    let listing = sh.list_jobs(pids_only, long);
    sh.out(&listing);
    Ok(0)
}

/// `umask`.
fn bi_umask(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    if args.is_empty() {
        sh.out("0022\n");
    }
    Ok(0)
}

/// `getopts`.
fn bi_getopts(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    builtin_getopts(sh, args)
}

/// `let`.
fn bi_let(sh: &mut Shell, _name: &str, args: &[String]) -> R {
    let mut v = 0;
    for a in args {
        v = sh.arith(a)?;
    }
    Ok((v == 0) as i32)
}

/// `kill [-SIG | -s SIG | -0] ID…`: the processes are this shell (`$$`) and its background
/// jobs (by pid or `%N`). A signal to `$$` ends the shell with 128 + the signal number, as the
/// default action would; a job is stopped (it reports 128 + the signal). `-0` checks that an
/// ID exists; signals whose default action is to do nothing (CHLD, CONT, URG, WINCH) do nothing.
fn builtin_kill(sh: &mut Shell, args: &[String]) -> R {
    let mut sig = 15;
    let mut ids = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-l" | "-L" => {
                sh.out(&format!("{}\n", SIGNAL_NAMES[1..].join(" ")));
                return Ok(0);
            }
            "-s" | "-n" => {
                i += 1;
                sig = args.get(i).map(|s| signal_number(s)).unwrap_or(-1);
            }
            "--" => {}
            a if a.starts_with('-') && ids.is_empty() && a.len() > 1 => {
                sig = signal_number(&a[1..])
            }
            _ => ids.push(a.clone()),
        }
        i += 1;
    }
    if sig < 0 {
        sh.errmsg("kill: invalid signal specification");
        return Ok(1);
    }
    if ids.is_empty() {
        sh.errmsg("kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ...");
        return Ok(2);
    }
    let mut st = 0;
    for id in ids {
        if id == "1" || id == "$$" {
            if sig != 0 {
                return Err(Flow::Exit(128 + sig));
            }
            continue;
        }
        let Some(index) = sh.jobs.find(&id) else {
            if id.starts_with('%') {
                sh.errmsg(&format!("kill: {id}: no such job"));
            } else if id.parse::<u32>().is_err() {
                sh.errmsg(&format!("kill: {id}: arguments must be process or job IDs"));
            } else {
                sh.errmsg(&format!("kill: ({id}) - No such process"));
            }
            st = 1;
            continue;
        };
        if let crate::jobs::JobState::Running(handle) = sh.jobs.table[index].state {
            // 17 CHLD, 18 CONT, 23 URG, 28 WINCH: ignored by default
            if sig != 0 && !matches!(sig, 17 | 18 | 23 | 28) {
                let _ = sh.spawner.kill(handle, sig);
            }
        }
        // an ended job not yet waited for is still there (a zombie), as in a real shell
    }
    Ok(st)
}

/// Signal names by number (Linux x86 numbering).
const SIGNAL_NAMES: [&str; 32] = [
    "0", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

fn signal_number(s: &str) -> i32 {
    let s = s.trim_start_matches("SIG");
    if let Ok(n) = s.parse::<i32>() {
        return n;
    }
    SIGNAL_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .map(|p| p as i32)
        .unwrap_or(-1)
}

/// `wait [-n] [-p VAR] [ID…]`: waits for background jobs (all of them without IDs, then status
/// 0). An ID is a pid or `%N`; a job that already left the table still reports its status; one
/// that is no job of this shell is status 127. `-n` waits for the next job to end (among the IDs
/// if given), 127 when there is none; `-p VAR` names it in VAR.
fn builtin_wait(sh: &mut Shell, args: &[String]) -> R {
    let mut next = false;
    let mut pid_var = None;
    let mut ids: Vec<&String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-n" => next = true,
            "-f" | "--" => {}
            "-p" => {
                i += 1;
                pid_var = args.get(i).cloned();
            }
            _ => ids.push(&args[i]),
        }
        i += 1;
    }
    if next {
        let among: Option<Vec<u32>> = (!ids.is_empty()).then(|| {
            ids.iter()
                .filter_map(|id| sh.jobs.find(id).map(|i| sh.jobs.table[i].pid))
                .collect()
        });
        let waited = sh.wait_any_job(among.as_deref());
        return Ok(match waited {
            Some((pid, st)) => {
                if let Some(var) = &pid_var {
                    let _ = sh.set_var(var, &pid.to_string());
                }
                st
            }
            None => 127,
        });
    }
    if ids.is_empty() {
        while !sh.jobs.table.is_empty() {
            sh.wait_job(0);
        }
        return Ok(0);
    }
    let mut st = 0;
    for id in ids {
        st = match sh.jobs.find(id) {
            Some(index) => {
                let pid = sh.jobs.table[index].pid;
                if let Some(var) = &pid_var {
                    let _ = sh.set_var(var, &pid.to_string());
                }
                sh.wait_job(index)
            }
            None => match sh.jobs.reaped_status(id) {
                Some(st) => st,
                None => {
                    if id.starts_with('%') {
                        sh.errmsg(&format!("wait: {id}: no such job"));
                    } else {
                        sh.errmsg(&format!("wait: pid {id} is not a child of this shell"));
                    }
                    127
                }
            },
        };
    }
    Ok(st)
}

fn unquote_simple(s: &str) -> String {
    if s.starts_with('\'') && s.ends_with('\'') && s.len() >= 2 {
        s[1..s.len() - 1].replace("'\\''", "'")
    } else {
        s.to_string()
    }
}

fn builtin_cd(sh: &mut Shell, args: &[String]) -> R {
    let args: Vec<&String> = args
        .iter()
        .filter(|a| !matches!(a.as_str(), "-L" | "-P" | "--"))
        .collect();
    let mut print = false;
    let target = match args.first().map(|s| s.as_str()) {
        None => match sh.get_var("HOME") {
            Some(h) if !h.is_empty() => h,
            _ => {
                sh.errmsg("cd: HOME not set");
                return Ok(if sh.bash { 1 } else { 2 });
            }
        },
        Some("-") => {
            print = true;
            match sh.get_var("OLDPWD") {
                Some(o) => o,
                None => {
                    sh.errmsg("cd: OLDPWD not set");
                    return Ok(if sh.bash { 1 } else { 2 });
                }
            }
        }
        Some(t) => t.to_string(),
    };
    let new = if target.starts_with('/') {
        normalize(&target)
    } else {
        normalize(&format!("{}/{}", sh.cwd, target))
    };
    let ok = std::fs::metadata(&new).map(|m| m.is_dir()).unwrap_or(false)
        && std::env::set_current_dir(&new).is_ok();
    if !ok {
        let why = match std::fs::metadata(&new) {
            Ok(m) if !m.is_dir() => "Not a directory",
            Ok(_) => "Permission denied",
            Err(_) => "No such file or directory",
        };
        if sh.bash {
            sh.errmsg(&format!("cd: {target}: {why}"));
            return Ok(1);
        }
        sh.errmsg(&format!("cd: can't cd to {target}"));
        return Ok(2);
    }
    let old = sh.cwd.clone();
    sh.cwd = new.clone();
    let _ = sh.set_var("OLDPWD", &old);
    let _ = sh.set_var("PWD", &new);
    if let Some(v) = sh.vars.get_mut("PWD") {
        v.exported = true;
    }
    if print {
        sh.out(&format!("{new}\n"));
    }
    Ok(0)
}

/// `set -o` (`on`) / `set +o` listings, in the reference shell's format.
fn option_listing(sh: &Shell, on: bool) -> String {
    let names: &[&str] = if sh.bash {
        &[
            "allexport",
            "braceexpand",
            "emacs",
            "errexit",
            "errtrace",
            "functrace",
            "hashall",
            "histexpand",
            "history",
            "ignoreeof",
            "interactive-comments",
            "keyword",
            "monitor",
            "noclobber",
            "noexec",
            "noglob",
            "nolog",
            "notify",
            "nounset",
            "onecmd",
            "physical",
            "pipefail",
            "posix",
            "privileged",
            "verbose",
            "vi",
            "xtrace",
        ]
    } else {
        &[
            "errexit",
            "noglob",
            "ignoreeof",
            "interactive",
            "monitor",
            "noexec",
            "stdin",
            "xtrace",
            "verbose",
            "vi",
            "emacs",
            "noclobber",
            "allexport",
            "notify",
            "nounset",
            "privileged",
            "nolog",
            "debug",
        ]
    };
    let mut s = String::new();
    if on && !sh.bash {
        s.push_str("Current option settings\n");
    }
    for n in names {
        let v = option_is_on(sh, n);
        if !on {
            s.push_str(&format!("set {}o {n}\n", if v { '-' } else { '+' }));
        } else if sh.bash {
            s.push_str(&format!("{n:<15}\t{}\n", onoff(v)));
        } else {
            s.push_str(&format!("{n:<16}{}\n", onoff(v)));
        }
    }
    s
}

/// Is the `set -o` option `name` on? (`[[ -o name ]]`, listings)
pub fn option_is_on(sh: &Shell, name: &str) -> bool {
    let o = &sh.opts;
    match name {
        "errexit" => o.errexit,
        "nounset" => o.nounset,
        "xtrace" => o.xtrace,
        "noglob" => o.noglob,
        "noclobber" => o.noclobber,
        "allexport" => o.allexport,
        "pipefail" => o.pipefail,
        "braceexpand" | "hashall" | "interactive-comments" => sh.bash,
        _ => false,
    }
}

fn set_opt(sh: &mut Shell, name: &str, on: bool) -> bool {
    match name {
        "e" | "errexit" => sh.opts.errexit = on,
        "u" | "nounset" => sh.opts.nounset = on,
        "x" | "xtrace" => sh.opts.xtrace = on,
        "f" | "noglob" => sh.opts.noglob = on,
        "C" | "noclobber" => sh.opts.noclobber = on,
        "a" | "allexport" => sh.opts.allexport = on,
        "pipefail" => sh.opts.pipefail = on,
        "v"
        | "verbose"
        | "h"
        | "hashall"
        | "b"
        | "notify"
        | "m"
        | "monitor"
        | "B"
        | "braceexpand"
        | "H"
        | "histexpand"
        | "posix"
        | "interactive-comments" => {}
        "n" | "noexec" => {}
        _ => return false,
    }
    true
}

fn builtin_set(sh: &mut Shell, args: &[String]) -> R {
    if args.is_empty() {
        let mut names: Vec<&String> = sh.vars.keys().collect();
        names.sort();
        let mut s = String::new();
        for n in names {
            let text = sh.vars[n].text().unwrap_or_default();
            s.push_str(&format!("{}={}\n", n, shell_quote(text)));
        }
        sh.out(&s);
        return Ok(0);
    }
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            sh.params = args[i + 1..].to_vec();
            return Ok(0);
        }
        if a == "-" {
            sh.opts.xtrace = false;
            sh.params = args[i + 1..].to_vec();
            return Ok(0);
        }
        let (on, flags) = if let Some(f) = a.strip_prefix('-') {
            (true, f)
        } else if let Some(f) = a.strip_prefix('+') {
            (false, f)
        } else {
            sh.params = args[i..].to_vec();
            return Ok(0);
        };
        if flags == "o" {
            match args.get(i + 1) {
                Some(o) => {
                    if !set_opt(sh, o, on) {
                        sh.errmsg(&format!("set: {o}: not supported"));
                        return Ok(2);
                    }
                    i += 2;
                    continue;
                }
                None => {
                    let s = option_listing(sh, on);
                    sh.out(&s);
                    return Ok(0);
                }
            }
        }
        for c in flags.chars() {
            if c == 'o' {
                // `set -euo pipefail`: the option name is the next argument
                i += 1;
                let Some(o) = args.get(i) else {
                    sh.errmsg("set: -o: option requires an argument");
                    return Ok(2);
                };
                if !set_opt(sh, o, on) {
                    sh.errmsg(&format!("set: {o}: invalid option name"));
                    return Ok(2);
                }
                continue;
            }
            if !set_opt(sh, &c.to_string(), on) {
                sh.errmsg(&format!("set: -{c}: not supported"));
                return Ok(2);
            }
        }
        i += 1;
    }
    Ok(0)
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn builtin_export(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let ro = name == "readonly";
    let mut unexport = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "-p" => {}
            "-n" if !ro => unexport = true,
            "-f" => {
                sh.errmsg(&format!("{name} -f: not supported"));
                return Ok(2);
            }
            _ => names.push(a.clone()),
        }
    }
    if names.is_empty() {
        let mut ks: Vec<(&String, &Var)> = sh
            .vars
            .iter()
            .filter(|(_, v)| if ro { v.readonly } else { v.exported })
            .collect();
        ks.sort_by(|a, b| a.0.cmp(b.0));
        let mut s = String::new();
        for (k, v) in ks {
            let text = v.text().unwrap_or_default();
            s.push_str(&format!("{name} {}={}\n", k, shell_quote(text)));
        }
        sh.out(&s);
        return Ok(0);
    }
    for a in names {
        let (n, val) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if !is_name(&n) {
            sh.errmsg(&format!("{name}: {n}: bad variable name"));
            return Err(Flow::Exit(2));
        }
        if let Some(v) = val {
            if let Err(m) = sh.set_var(&n, &v) {
                sh.errmsg(&m);
                return Err(Flow::Exit(2));
            }
        }
        let e = sh
            .vars
            .entry(n.clone())
            .or_insert_with(|| Var::scalar("", false));
        if ro {
            e.readonly = true;
        } else {
            e.exported = !unexport;
        }
        if !ro && !unexport && !sh.vars.contains_key(&n) {
            // `export NAME` of an unset variable: remember the export (value empty)
        }
    }
    Ok(0)
}

fn builtin_read(sh: &mut Shell, args: &[String]) -> R {
    let mut raw = false;
    let mut delim = Some(b'\n');
    let mut nchars: Option<usize> = None;
    let mut array: Option<String> = None;
    let mut names = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" && names.is_empty() {
            names.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 && names.is_empty() {
            let flags: Vec<char> = a[1..].chars().collect();
            for (k, &c) in flags.iter().enumerate() {
                match c {
                    'r' => raw = true,
                    's' | 'e' => {}
                    'a' | 'd' | 'n' | 'N' | 'p' | 't' | 'u' | 'i' => {
                        // the value is the rest of this argument or the next one
                        let rest: String = flags[k + 1..].iter().collect();
                        let val = if rest.is_empty() {
                            i += 1;
                            match args.get(i) {
                                Some(v) => v.clone(),
                                None => {
                                    sh.errmsg(&format!("read: -{c}: option requires an argument"));
                                    return Ok(2);
                                }
                            }
                        } else {
                            rest
                        };
                        match c {
                            'a' => array = Some(val),
                            'd' => delim = Some(val.bytes().next().unwrap_or(0)),
                            'n' | 'N' => {
                                nchars = val.parse().ok();
                                if c == 'N' {
                                    delim = None;
                                }
                            }
                            't' if val.parse::<f64>().is_ok_and(|t| t == 0.0) => {
                                // -t 0: only asks whether input is ready; it always is here
                                return Ok(0);
                            }
                            'u' if val != "0" => {
                                sh.errmsg(&format!("read: -u {val}: only fd 0 is supported"));
                                return Ok(2);
                            }
                            // -p: the prompt only shows on a terminal; -t: input here never
                            // blocks on a terminal either
                            _ => {}
                        }
                        break;
                    }
                    o => {
                        sh.errmsg(&format!("read: -{o}: invalid option"));
                        return Ok(2);
                    }
                }
            }
            i += 1;
            continue;
        }
        names.push(a.clone());
        i += 1;
    }
    if names.is_empty() && array.is_none() {
        if sh.bash {
            names.push("REPLY".into());
        } else {
            sh.errmsg("read: arg count");
            return Ok(2);
        }
    }
    // read the line
    let mut line: Vec<u8> = Vec::new();
    let mut quoted_mask: Vec<bool> = Vec::new();
    let mut eof = false;
    loop {
        if let Some(n) = nchars {
            if line.len() >= n {
                break;
            }
        }
        let Some(b) = sh.read_byte() else {
            eof = true;
            break;
        };
        if Some(b) == delim {
            break;
        }
        if b == b'\\' && !raw {
            match sh.read_byte() {
                Some(b'\n') => continue,
                Some(c) => {
                    line.push(c);
                    quoted_mask.push(true);
                    continue;
                }
                None => {
                    eof = true;
                    break;
                }
            }
        }
        line.push(b);
        quoted_mask.push(false);
    }
    let text = crate::bytes::decode(&line);
    let ifs = sh.get_var("IFS").unwrap_or_else(|| " \t\n".into());
    if let Some(a) = array {
        let elems = split_read(&text, &ifs, usize::MAX)
            .into_iter()
            .map(|value| crate::vars::Elem { key: None, value })
            .collect();
        if let Err(m) = sh.assign_array(&a, elems, false, false) {
            sh.errmsg(&format!("read: {m}"));
            return Ok(2);
        }
        return Ok(if eof { 1 } else { 0 });
    }
    let values = split_read(&text, &ifs, names.len());
    for (k, n) in names.iter().enumerate() {
        let v = values.get(k).cloned().unwrap_or_default();
        if let Err(m) = sh.set_var(n, &v) {
            sh.errmsg(&format!("read: {m}"));
            return Ok(2);
        }
    }
    Ok(if eof { 1 } else { 0 })
}

/// Split a line read by `read` into at most `n` fields; the last gets the rest.
pub fn split_read(s: &str, ifs: &str, n: usize) -> Vec<String> {
    let is_ws = |c: char| ifs.contains(c) && (c == ' ' || c == '\t' || c == '\n');
    let is_ifs = |c: char| ifs.contains(c);
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    // skip leading IFS whitespace
    while i < chars.len() && is_ws(chars[i]) {
        i += 1;
    }
    let mut out = Vec::new();
    while i < chars.len() && out.len() + 1 < n {
        let st = i;
        while i < chars.len() && !is_ifs(chars[i]) {
            i += 1;
        }
        out.push(chars[st..i].iter().collect::<String>());
        // skip separator: ws* [non-ws-ifs] ws*
        while i < chars.len() && is_ws(chars[i]) {
            i += 1;
        }
        if i < chars.len() && is_ifs(chars[i]) && !is_ws(chars[i]) {
            i += 1;
            while i < chars.len() && is_ws(chars[i]) {
                i += 1;
            }
        }
    }
    if i < chars.len() || out.len() + 1 == n {
        let mut rest: String = chars[i.min(chars.len())..].iter().collect();
        while rest.ends_with(|c: char| is_ws(c)) {
            rest.pop();
        }
        if i < chars.len() {
            out.push(rest);
        }
    }
    out
}

fn builtin_trap(sh: &mut Shell, args: &[String]) -> R {
    if args.is_empty() {
        if let Some(t) = &sh.exit_trap {
            let s = format!("trap -- {} EXIT\n", shell_quote(t));
            sh.out(&s);
        }
        return Ok(0);
    }
    let (action, sigs) = if args[0].chars().all(|c| c.is_ascii_digit()) && args.len() == 1 {
        ("-".to_string(), args)
    } else {
        (args[0].clone(), &args[1..])
    };
    for s in sigs {
        let s = s.trim_start_matches("SIG");
        match s {
            "EXIT" | "0" => {
                sh.exit_trap = if action == "-" || action.is_empty() {
                    None
                } else {
                    Some(action.clone())
                };
            }
            "ERR" | "RETURN" if sh.bash => {
                if action == "-" || action.is_empty() {
                    sh.bash_traps.remove(s);
                } else {
                    sh.bash_traps.insert(s.to_string(), action.clone());
                }
            }
            // Signals are never delivered inside the sandbox: accepting these traps is exact.
            "INT" | "TERM" | "HUP" | "QUIT" | "PIPE" | "USR1" | "USR2" | "ALRM" | "CHLD" | "1"
            | "2" | "3" | "13" | "15" => {}
            other => {
                sh.errmsg(&format!("trap: {other}: not supported"));
                return Ok(2);
            }
        }
    }
    Ok(0)
}

fn builtin_getopts(sh: &mut Shell, args: &[String]) -> R {
    if args.len() < 2 {
        sh.errmsg("getopts: usage: getopts optstring name [arg ...]");
        return Ok(2);
    }
    let optstring = args[0].clone();
    let var = args[1].clone();
    let list: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        sh.params.clone()
    };
    let silent = optstring.starts_with(':');
    let mut optind: usize = sh
        .get_var("OPTIND")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut pos = sh.getopts_pos;
    let set = |sh: &mut Shell, optind: usize, pos: usize| {
        let _ = sh.set_var("OPTIND", &optind.to_string());
        sh.getopts_pos = pos;
    };
    let Some(arg) = list.get(optind - 1).cloned() else {
        let _ = sh.set_var(&var, "?");
        set(sh, optind, 0);
        return Ok(1);
    };
    if pos == 0 {
        if arg == "--" {
            let _ = sh.set_var(&var, "?");
            set(sh, optind + 1, 0);
            return Ok(1);
        }
        if !arg.starts_with('-') || arg == "-" {
            let _ = sh.set_var(&var, "?");
            set(sh, optind, 0);
            return Ok(1);
        }
        pos = 1;
    }
    let chars: Vec<char> = arg.chars().collect();
    let c = chars[pos];
    pos += 1;
    let spec = optstring.find(c).filter(|_| c != ':');
    if spec.is_none() {
        if pos >= chars.len() {
            optind += 1;
            pos = 0;
        }
        let _ = sh.set_var(&var, "?");
        if silent {
            let _ = sh.set_var("OPTARG", &c.to_string());
        } else {
            sh.errmsg(&format!("Illegal option -{c}"));
            sh.vars.remove("OPTARG");
        }
        set(sh, optind, pos);
        return Ok(0);
    }
    let needs_arg = optstring[spec.unwrap() + c.len_utf8()..].starts_with(':');
    if needs_arg {
        let optarg = if pos < chars.len() {
            let s: String = chars[pos..].iter().collect();
            optind += 1;
            Some(s)
        } else {
            optind += 1;
            let a = list.get(optind - 1).cloned();
            if a.is_some() {
                optind += 1;
            }
            a
        };
        pos = 0;
        match optarg {
            Some(a) => {
                let _ = sh.set_var("OPTARG", &a);
                let _ = sh.set_var(&var, &c.to_string());
            }
            None => {
                if silent {
                    let _ = sh.set_var(&var, ":");
                    let _ = sh.set_var("OPTARG", &c.to_string());
                } else {
                    let _ = sh.set_var(&var, "?");
                    sh.errmsg(&format!("No arg for -{c} option"));
                }
            }
        }
        set(sh, optind, pos);
        return Ok(0);
    }
    if pos >= chars.len() {
        optind += 1;
        pos = 0;
    }
    let _ = sh.set_var(&var, &c.to_string());
    sh.vars.remove("OPTARG");
    set(sh, optind, pos);
    Ok(0)
}

// ---------------------------------------------------------------- echo / printf

/// Interpret backslash escapes (echo/%b style). Returns (text, stop) where stop means `\c` seen.
/// `hex`: `\xHH` is an escape (bash, `%b`), not in dash's echo.
pub fn echo_escapes(s: &str, echo_style_octal: bool, hex: bool) -> (String, bool) {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] != '\\' || i + 1 >= c.len() {
            out.push(c[i]);
            i += 1;
            continue;
        }
        i += 1;
        match c[i] {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'c' => return (out, true),
            'e' | 'E' => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '0'..='7' => {
                // echo: \0NNN; %b: \0NNN and \NNN
                let mut j = i;
                let max = if c[i] == '0' { 4 } else { 3 };
                if c[i] != '0' && echo_style_octal {
                    out.push('\\');
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                let mut v = 0u32;
                let mut k = 0;
                while j < c.len() && k < max && ('0'..='7').contains(&c[j]) {
                    v = v * 8 + c[j].to_digit(8).unwrap();
                    j += 1;
                    k += 1;
                }
                out.push(crate::bytes::byte_char((v & 0xff) as u8));
                i = j;
                continue;
            }
            'x' => {
                let mut j = i + 1;
                let mut v = 0u32;
                while j < c.len() && j < i + 3 && c[j].is_ascii_hexdigit() {
                    v = v * 16 + c[j].to_digit(16).unwrap();
                    j += 1;
                }
                if j == i + 1 || !hex {
                    out.push_str("\\x");
                    if !hex {
                        j = i + 1;
                    }
                } else {
                    out.push(crate::bytes::byte_char(v as u8));
                }
                i = j;
                continue;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        i += 1;
    }
    (out, false)
}

/// `echo`: dash semantics (only -n, escapes always) unless `bash` (-n -e -E, no escapes by default).
pub fn echo(args: &[String], bash: bool) -> String {
    let mut newline = true;
    let mut escapes = !bash;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() < 2 || !a.starts_with('-') {
            break;
        }
        let flags = &a[1..];
        let valid = if bash {
            flags.chars().all(|c| "neE".contains(c))
        } else {
            flags.chars().all(|c| c == 'n')
        };
        if !valid {
            break;
        }
        for c in flags.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                'E' => escapes = false,
                _ => {}
            }
        }
        i += 1;
    }
    let mut out = String::new();
    for (k, a) in args[i..].iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        if escapes {
            let (s, stop) = echo_escapes(a, false, bash);
            out.push_str(&s);
            if stop {
                return out;
            }
        } else {
            out.push_str(a);
        }
    }
    if newline {
        out.push('\n');
    }
    out
}

fn printf_num(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(0);
    }
    if let Some(r) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        return Ok(r.chars().next().map(|c| c as i64).unwrap_or(0));
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16)
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8)
    } else {
        body.parse::<i64>()
    };
    match v {
        Ok(v) => Ok(if neg { -v } else { v }),
        Err(_) => Err(format!("{s}: invalid number")),
    }
}

fn printf_float(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(0.0);
    }
    if let Some(r) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        return Ok(r.chars().next().map(|c| c as i64 as f64).unwrap_or(0.0));
    }
    t.parse::<f64>()
        .or_else(|_| printf_num(t).map(|v| v as f64))
        .map_err(|_| format!("{s}: invalid number"))
}

fn pad(s: String, width: Option<usize>, left: bool, zero: bool) -> String {
    let len = s.chars().count();
    match width {
        Some(w) if w > len => {
            let fill = w - len;
            if left {
                s + &" ".repeat(fill)
            } else if zero {
                let (sign, digits) = if s.starts_with('-') || s.starts_with('+') {
                    s.split_at(1)
                } else {
                    ("", s.as_str())
                };
                format!("{sign}{}{digits}", "0".repeat(fill))
            } else {
                " ".repeat(fill) + &s
            }
        }
        _ => s,
    }
}

fn fmt_exp(v: f64, prec: usize, upper: bool) -> String {
    let s = format!("{:.*e}", prec, v);
    // Rust: 1.5e2 -> C: 1.5e+02
    let (m, e) = s.split_once('e').unwrap();
    let (sign, digits) = if let Some(d) = e.strip_prefix('-') {
        ('-', d)
    } else {
        ('+', e)
    };
    let r = format!("{m}e{sign}{:0>2}", digits);
    if upper {
        r.to_uppercase()
    } else {
        r
    }
}

fn fmt_g(v: f64, prec: usize, upper: bool, alt: bool) -> String {
    let p = if prec == 0 { 1 } else { prec };
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let s = if exp < -4 || exp >= p as i32 {
        let s = fmt_exp(v, p - 1, upper);
        if alt {
            s
        } else {
            let (m, e) = s.split_once(if upper { 'E' } else { 'e' }).unwrap();
            let m = if m.contains('.') {
                m.trim_end_matches('0').trim_end_matches('.')
            } else {
                m
            };
            format!("{m}{}{e}", if upper { 'E' } else { 'e' })
        }
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        let s = format!("{:.*}", decimals, v);
        if alt || !s.contains('.') {
            s
        } else {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    s
}

/// POSIX printf. Returns the output and the first error (conversion errors still print).
pub fn printf(fmt: &str, args: &[String]) -> (String, Option<String>) {
    let f: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut err = None;
    let mut ai = 0;
    loop {
        let mut i = 0;
        let mut consumed = false;
        while i < f.len() {
            let c = f[i];
            if c == '\\' {
                // escapes in the format
                let rest: String = f[i..].iter().collect();
                let (n, s) = format_escape(&rest);
                out.push_str(&s);
                i += n;
                continue;
            }
            if c != '%' {
                out.push(c);
                i += 1;
                continue;
            }
            i += 1;
            if i >= f.len() {
                out.push('%');
                break;
            }
            if f[i] == '%' {
                out.push('%');
                i += 1;
                continue;
            }
            let mut left = false;
            let mut zero = false;
            let mut plus = false;
            let mut space = false;
            let mut alt = false;
            while i < f.len() && "-0+ #".contains(f[i]) {
                match f[i] {
                    '-' => left = true,
                    '0' => zero = true,
                    '+' => plus = true,
                    ' ' => space = true,
                    _ => alt = true,
                }
                i += 1;
            }
            let mut width: Option<usize> = None;
            if i < f.len() && f[i] == '*' {
                let w = args
                    .get(ai)
                    .map(|a| printf_num(a).unwrap_or(0))
                    .unwrap_or(0);
                ai += 1;
                consumed = true;
                if w < 0 {
                    left = true;
                }
                width = Some(w.unsigned_abs() as usize);
                i += 1;
            } else {
                let st = i;
                while i < f.len() && f[i].is_ascii_digit() {
                    i += 1;
                }
                if i > st {
                    width = f[st..i].iter().collect::<String>().parse().ok();
                }
            }
            let mut prec: Option<usize> = None;
            if i < f.len() && f[i] == '.' {
                i += 1;
                if i < f.len() && f[i] == '*' {
                    let p = args
                        .get(ai)
                        .map(|a| printf_num(a).unwrap_or(0))
                        .unwrap_or(0);
                    ai += 1;
                    consumed = true;
                    prec = Some(p.max(0) as usize);
                    i += 1;
                } else {
                    let st = i;
                    while i < f.len() && f[i].is_ascii_digit() {
                        i += 1;
                    }
                    prec = Some(f[st..i].iter().collect::<String>().parse().unwrap_or(0));
                }
            }
            // length modifiers
            while i < f.len() && "hlLjzt".contains(f[i]) {
                i += 1;
            }
            if i >= f.len() {
                err.get_or_insert_with(|| "missing format character".to_string());
                break;
            }
            let conv = f[i];
            i += 1;
            let arg = args.get(ai).cloned();
            if arg.is_some() {
                consumed = true;
            }
            ai += 1;
            let a = arg.unwrap_or_default();
            let s = match conv {
                's' => {
                    let s = match prec {
                        Some(p) => a.chars().take(p).collect(),
                        None => a,
                    };
                    pad(s, width, left, false)
                }
                'b' => {
                    let (s, stop) = echo_escapes(&a, false, true);
                    out.push_str(&pad(s, width, left, false));
                    if stop {
                        return (out, err);
                    }
                    continue;
                }
                'q' => pad(quote_q(&a), width, left, false),
                'c' => pad(
                    a.chars().next().map(|c| c.to_string()).unwrap_or_default(),
                    width,
                    left,
                    false,
                ),
                'd' | 'i' | 'u' | 'x' | 'X' | 'o' => {
                    let v = match printf_num(&a) {
                        Ok(v) => v,
                        Err(e) => {
                            err.get_or_insert(e);
                            // like printf(1): the number the argument starts with
                            let t = a.trim_start();
                            let end = t
                                .char_indices()
                                .find(|&(i, c)| {
                                    !(c.is_ascii_digit() || (i == 0 && "+-".contains(c)))
                                })
                                .map(|(i, _)| i)
                                .unwrap_or(t.len());
                            t[..end].parse().unwrap_or(0)
                        }
                    };
                    let mut digits = match conv {
                        'd' | 'i' => v.unsigned_abs().to_string(),
                        'u' => (v as u64).to_string(),
                        'x' => format!("{:x}", v as u64),
                        'X' => format!("{:X}", v as u64),
                        _ => format!("{:o}", v as u64),
                    };
                    if let Some(p) = prec {
                        while digits.len() < p {
                            digits.insert(0, '0');
                        }
                    }
                    if alt && conv == 'x' && v != 0 {
                        digits.insert_str(0, "0x");
                    }
                    if alt && conv == 'X' && v != 0 {
                        digits.insert_str(0, "0X");
                    }
                    if alt && conv == 'o' && !digits.starts_with('0') {
                        digits.insert(0, '0');
                    }
                    let sign = if matches!(conv, 'd' | 'i') {
                        if v < 0 {
                            "-"
                        } else if plus {
                            "+"
                        } else if space {
                            " "
                        } else {
                            ""
                        }
                    } else {
                        ""
                    };
                    pad(
                        format!("{sign}{digits}"),
                        width,
                        left,
                        zero && prec.is_none(),
                    )
                }
                'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
                    let v = match printf_float(&a) {
                        Ok(v) => v,
                        Err(e) => {
                            err.get_or_insert(e);
                            0.0
                        }
                    };
                    let p = prec.unwrap_or(6);
                    let mut s = match conv {
                        'f' | 'F' => format!("{:.*}", p, v),
                        'e' | 'E' => fmt_exp(v, p, conv == 'E'),
                        _ => fmt_g(v, p, conv == 'G', alt),
                    };
                    if v >= 0.0 {
                        if plus {
                            s.insert(0, '+');
                        } else if space {
                            s.insert(0, ' ');
                        }
                    }
                    pad(s, width, left, zero)
                }
                other => {
                    err.get_or_insert_with(|| format!("%{other}: invalid directive"));
                    String::new()
                }
            };
            out.push_str(&s);
        }
        if ai >= args.len() || !consumed {
            break;
        }
    }
    (out, err)
}

/// One escape at the start of `s` (which begins with `\`) in a printf format: (chars used, text).
/// `printf %q`: quoted so that the shell reads it back as `s` (bash's style: backslashes,
/// `$'…'` when there are control characters, `''` for the empty string).
fn quote_q(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars().any(|c| c.is_control()) {
        let mut o = String::from("$'");
        for c in s.chars() {
            match c {
                '\n' => o.push_str("\\n"),
                '\t' => o.push_str("\\t"),
                '\r' => o.push_str("\\r"),
                '\x1b' => o.push_str("\\E"),
                '\'' | '\\' => {
                    o.push('\\');
                    o.push(c);
                }
                c if c.is_control() => o.push_str(&format!("\\{:03o}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('\'');
        return o;
    }
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        let special = " '\"\\$`*?[](){}<>|&;!^,".contains(c) || (i == 0 && (c == '~' || c == '#'));
        if special {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn format_escape(s: &str) -> (usize, String) {
    let c: Vec<char> = s.chars().collect();
    if c.len() < 2 {
        return (1, "\\".into());
    }
    let simple = match c[1] {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        'e' => Some('\x1b'),
        '\\' => Some('\\'),
        '"' => Some('"'),
        '\'' => Some('\''),
        _ => None,
    };
    if let Some(ch) = simple {
        return (2, ch.to_string());
    }
    if c[1].is_digit(8) {
        let mut v = 0u32;
        let mut j = 1;
        while j < c.len() && j < 4 && c[j].is_digit(8) {
            v = v * 8 + c[j].to_digit(8).unwrap();
            j += 1;
        }
        return (j, crate::bytes::byte_char((v & 0xff) as u8).to_string());
    }
    if c[1] == 'x' {
        let mut v = 0u32;
        let mut j = 2;
        while j < c.len() && j < 4 && c[j].is_ascii_hexdigit() {
            v = v * 16 + c[j].to_digit(16).unwrap();
            j += 1;
        }
        if j > 2 {
            return (j, crate::bytes::byte_char(v as u8).to_string());
        }
    }
    (2, format!("\\{}", c[1]))
}

// ---------------------------------------------------------------- test

fn file_test(op: &str, path: &str) -> bool {
    let md = if op == "-h" || op == "-L" {
        std::fs::symlink_metadata(path)
    } else {
        std::fs::metadata(path)
    };
    let Ok(m) = md else {
        return crate::vfs::test_file(op, path).unwrap_or(false);
    };
    let fifo = || crate::modes::is_fifo(std::path::Path::new(path));
    match op {
        "-e" | "-a" => true,
        "-f" => m.is_file() && !fifo(),
        "-p" if !cfg!(unix) => fifo(),
        "-d" => m.is_dir(),
        "-h" | "-L" => m.file_type().is_symlink(),
        "-s" => m.len() > 0,
        "-r" | "-w" => true,
        "-x" => crate::modes::mode_of(std::path::Path::new(path), &m) & 0o111 != 0,
        "-p" | "-S" | "-b" | "-c" => special_file(op, &m),
        "-g" | "-u" | "-k" | "-t" => false,
        "-O" | "-G" => true,
        _ => false,
    }
}

const UNARY: &[&str] = &[
    "-e", "-f", "-d", "-h", "-L", "-s", "-r", "-w", "-x", "-p", "-S", "-b", "-c", "-g", "-u", "-k",
    "-t", "-O", "-G", "-n", "-z", "-a",
];
const BINARY: &[&str] = &[
    "=", "==", "!=", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt", "-ot", "-ef",
];

fn int_arg(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("{s}: integer expression expected"))
}

fn binary(a: &str, op: &str, b: &str) -> Result<bool, String> {
    Ok(match op {
        "=" | "==" => a == b,
        "!=" => a != b,
        "<" => a < b,
        ">" => a > b,
        "-eq" => int_arg(a)? == int_arg(b)?,
        "-ne" => int_arg(a)? != int_arg(b)?,
        "-lt" => int_arg(a)? < int_arg(b)?,
        "-le" => int_arg(a)? <= int_arg(b)?,
        "-gt" => int_arg(a)? > int_arg(b)?,
        "-ge" => int_arg(a)? >= int_arg(b)?,
        "-nt" | "-ot" => {
            let ma = std::fs::metadata(a).and_then(|m| m.modified()).ok();
            let mb = std::fs::metadata(b).and_then(|m| m.modified()).ok();
            match (ma, mb) {
                (Some(x), Some(y)) => {
                    if op == "-nt" {
                        x > y
                    } else {
                        x < y
                    }
                }
                (Some(_), None) => op == "-nt",
                (None, Some(_)) => op == "-ot",
                _ => false,
            }
        }
        "-ef" => same_file(a, b),
        _ => return Err(format!("{op}: unknown operator")),
    })
}

/// `-p` `-S` `-b` `-c`: the kind of a special file.
#[cfg(unix)]
fn special_file(op: &str, m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    match op {
        "-p" => t.is_fifo(),
        "-S" => t.is_socket(),
        "-b" => t.is_block_device(),
        _ => t.is_char_device(),
    }
}

/// WASI's stable std tells files, directories and links apart only: anything else that exists
/// (the host's device files) counts as a character device.
#[cfg(not(unix))]
fn special_file(op: &str, m: &std::fs::Metadata) -> bool {
    let t = m.file_type();
    op == "-c" && !t.is_file() && !t.is_dir() && !t.is_symlink()
}

/// Same file: same device and inode (hard links included; on WASI as the host reports them).
fn same_file(a: &str, b: &str) -> bool {
    use std::path::Path;
    match (
        crate::modes::file_id(Path::new(a)),
        crate::modes::file_id(Path::new(b)),
    ) {
        (Some(x), Some(y)) if x != (0, 0) => x == y,
        _ => false,
    }
}

fn unary(op: &str, a: &str) -> bool {
    match op {
        "-n" => !a.is_empty(),
        "-z" => a.is_empty(),
        _ => file_test(op, a),
    }
}

/// Evaluate `test` arguments (without the closing `]`).
pub fn test_eval(args: &[String], _cwd: &str) -> Result<bool, String> {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match a.len() {
        0 => Ok(false),
        1 => Ok(!a[0].is_empty()),
        2 => {
            if a[0] == "!" {
                return Ok(a[1].is_empty());
            }
            if UNARY.contains(&a[0]) {
                return Ok(unary(a[0], a[1]));
            }
            Err(format!("{}: unexpected operator", a[0]))
        }
        3 => {
            if BINARY.contains(&a[1]) {
                return binary(a[0], a[1], a[2]);
            }
            if a[1] == "-a" {
                return Ok(!a[0].is_empty() && !a[2].is_empty());
            }
            if a[1] == "-o" {
                return Ok(!a[0].is_empty() || !a[2].is_empty());
            }
            if a[0] == "!" {
                return test_eval(&args[1..], _cwd).map(|b| !b);
            }
            if a[0] == "(" && a[2] == ")" {
                return Ok(!a[1].is_empty());
            }
            Err(format!("{}: unexpected operator", a[1]))
        }
        4 if a[0] == "!" => test_eval(&args[1..], _cwd).map(|b| !b),
        4 if a[0] == "(" && a[3] == ")" => test_eval(&args[1..3], _cwd),
        _ => {
            let mut p = TestParser { a: &a, pos: 0 };
            let v = p.or()?;
            if p.pos != a.len() {
                return Err(format!("{}: unexpected operator", a[p.pos]));
            }
            Ok(v)
        }
    }
}

struct TestParser<'a> {
    a: &'a [&'a str],
    pos: usize,
}

impl TestParser<'_> {
    fn or(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.a.get(self.pos) == Some(&"-o") {
            self.pos += 1;
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }
    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.not()?;
        while self.a.get(self.pos) == Some(&"-a") {
            self.pos += 1;
            let r = self.not()?;
            v = v && r;
        }
        Ok(v)
    }
    fn not(&mut self) -> Result<bool, String> {
        if self.a.get(self.pos) == Some(&"!") {
            self.pos += 1;
            return Ok(!self.not()?);
        }
        self.prim()
    }
    fn prim(&mut self) -> Result<bool, String> {
        let Some(&t) = self.a.get(self.pos) else {
            return Err("argument expected".into());
        };
        if t == "(" {
            self.pos += 1;
            let v = self.or()?;
            if self.a.get(self.pos) != Some(&")") {
                return Err("missing )".into());
            }
            self.pos += 1;
            return Ok(v);
        }
        if let Some(&op) = self.a.get(self.pos + 1) {
            if BINARY.contains(&op) && self.pos + 2 < self.a.len() {
                let r = binary(t, op, self.a[self.pos + 2])?;
                self.pos += 3;
                return Ok(r);
            }
        }
        if UNARY.contains(&t) && self.pos + 1 < self.a.len() {
            let r = unary(t, self.a[self.pos + 1]);
            self.pos += 2;
            return Ok(r);
        }
        self.pos += 1;
        Ok(!t.is_empty())
    }
}
