//! `alias`/`unalias`, and bash's directory stack (`pushd`, `popd`, `dirs`).
//!
//! Aliases are expanded when a simple command runs (not when it is parsed, as in bash) and only
//! with `shopt -s expand_aliases` (bash's rule for scripts): `alias ll='ls -l'` then `ll x`
//! works, aliases that open compound syntax (`alias x='if true; then'`) do not.

use crate::exec::{shell_quote, Shell, R};

pub fn alias(sh: &mut Shell, args: &[String]) -> R {
    let args: Vec<&String> = args.iter().filter(|a| a.as_str() != "-p").collect();
    if args.is_empty() {
        let out: String = sh
            .aliases
            .iter()
            .map(|(k, v)| format!("alias {k}={}\n", quote_always(v)))
            .collect();
        sh.out(&out);
        return Ok(0);
    }
    let mut st = 0;
    for a in args {
        match a.split_once('=') {
            Some((n, v)) => {
                sh.aliases.insert(n.to_string(), v.to_string());
            }
            None => match sh.aliases.get(a.as_str()) {
                Some(v) => {
                    let s = format!("alias {a}={}\n", quote_always(v));
                    sh.out(&s);
                }
                None => {
                    sh.errmsg(&format!("alias: {a}: not found"));
                    st = 1;
                }
            },
        }
    }
    Ok(st)
}

pub fn unalias(sh: &mut Shell, args: &[String]) -> R {
    let mut st = 0;
    for a in args {
        if a == "-a" {
            sh.aliases.clear();
        } else if sh.aliases.remove(a.as_str()).is_none() {
            sh.errmsg(&format!("unalias: {a}: not found"));
            st = 1;
        }
    }
    Ok(st)
}

/// bash prints alias values single-quoted even when they need no quotes.
fn quote_always(v: &str) -> String {
    let q = shell_quote(v);
    if q.starts_with('\'') {
        q
    } else {
        format!("'{v}'")
    }
}

fn print_stack(sh: &mut Shell) {
    let home = sh.get_var("HOME").unwrap_or_default();
    let tilde = |d: &str| -> String {
        match d.strip_prefix(home.as_str()) {
            Some(rest) if !home.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
                format!("~{rest}")
            }
            _ => d.to_string(),
        }
    };
    let mut parts = vec![tilde(&sh.cwd)];
    parts.extend(sh.dir_stack.iter().rev().map(|d| tilde(d)));
    let s = format!("{}\n", parts.join(" "));
    sh.out(&s);
}

pub fn pushd(sh: &mut Shell, args: &[String]) -> R {
    let quiet = args.iter().any(|a| a == "-n");
    let Some(dir) = args.iter().find(|a| !a.starts_with('-')) else {
        // no argument: swap the top two
        let Some(top) = sh.dir_stack.pop() else {
            sh.errmsg("pushd: no other directory");
            return Ok(1);
        };
        let here = sh.cwd.clone();
        let st = super::run_builtin(sh, &["cd".to_string(), top])?;
        if st == 0 {
            sh.dir_stack.push(here);
            print_stack(sh);
        }
        return Ok(st);
    };
    let here = sh.cwd.clone();
    let st = super::run_builtin(sh, &["cd".to_string(), dir.clone()])?;
    if st == 0 {
        sh.dir_stack.push(here);
        if !quiet {
            print_stack(sh);
        }
    }
    Ok(st)
}

pub fn popd(sh: &mut Shell, _args: &[String]) -> R {
    let Some(top) = sh.dir_stack.pop() else {
        sh.errmsg("popd: directory stack empty");
        return Ok(1);
    };
    let st = super::run_builtin(sh, &["cd".to_string(), top])?;
    if st == 0 {
        print_stack(sh);
    }
    Ok(st)
}

pub fn dirs(sh: &mut Shell, args: &[String]) -> R {
    if args.iter().any(|a| a == "-c") {
        sh.dir_stack.clear();
        return Ok(0);
    }
    print_stack(sh);
    Ok(0)
}
