//! bash `shopt`: the options scripts set. The ones that change behaviour here are `extglob`
//! (always on for matching), `nullglob`, `dotglob`, `nocasematch`, `expand_aliases`; the rest
//! are accepted and remembered so that `shopt -q`/`shopt NAME` answer like bash.

use crate::exec::{Shell, R};
use std::collections::BTreeMap;

/// Every option bash 5.2 knows, with its default in a non-interactive shell.
const KNOWN: &[(&str, bool)] = &[
    ("assoc_expand_once", false),
    ("autocd", false),
    ("cdable_vars", false),
    ("cdspell", false),
    ("checkhash", false),
    ("checkjobs", false),
    ("checkwinsize", true),
    ("cmdhist", true),
    ("compat31", false),
    ("compat32", false),
    ("compat40", false),
    ("compat41", false),
    ("compat42", false),
    ("compat43", false),
    ("compat44", false),
    ("complete_fullquote", true),
    ("direxpand", false),
    ("dirspell", false),
    ("dotglob", false),
    ("execfail", false),
    ("expand_aliases", false),
    ("extdebug", false),
    ("extglob", false),
    ("extquote", true),
    ("failglob", false),
    ("force_fignore", true),
    ("globasciiranges", true),
    ("globskipdots", true),
    ("globstar", false),
    ("gnu_errfmt", false),
    ("histappend", false),
    ("histreedit", false),
    ("histverify", false),
    ("hostcomplete", true),
    ("huponexit", false),
    ("inherit_errexit", false),
    ("interactive_comments", true),
    ("lastpipe", false),
    ("lithist", false),
    ("localvar_inherit", false),
    ("localvar_unset", false),
    ("login_shell", false),
    ("mailwarn", false),
    ("no_empty_cmd_completion", false),
    ("nocaseglob", false),
    ("nocasematch", false),
    ("noexpand_translation", false),
    ("nullglob", false),
    ("patsub_replacement", true),
    ("progcomp", true),
    ("progcomp_alias", false),
    ("promptvars", true),
    ("restricted_shell", false),
    ("shift_verbose", false),
    ("sourcepath", true),
    ("varredir_close", false),
    ("xpg_echo", false),
];

/// The shell's `shopt` settings.
#[derive(Debug, Clone)]
pub struct Shopt(BTreeMap<&'static str, bool>);

impl Default for Shopt {
    fn default() -> Self {
        Shopt(KNOWN.iter().copied().collect())
    }
}

impl Shopt {
    pub fn get(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }
}

pub fn shopt(sh: &mut Shell, args: &[String]) -> R {
    let mut set: Option<bool> = None;
    let mut quiet = false;
    let mut print = false;
    let mut names = Vec::new();
    for a in args {
        match a.as_str() {
            "-s" => set = Some(true),
            "-u" => set = Some(false),
            "-q" => quiet = true,
            "-p" => print = true,
            "-o" => {
                // `shopt -o` is `set -o`: hand over
                let mut v = vec!["set".to_string()];
                for n in args.iter().filter(|a| !a.starts_with('-')) {
                    v.push(if set == Some(false) { "+o" } else { "-o" }.into());
                    v.push(n.clone());
                }
                return super::run_builtin(sh, &v);
            }
            _ => names.push(a.clone()),
        }
    }
    let mut st = 0;
    for n in &names {
        if !sh.shopt.0.contains_key(n.as_str()) {
            sh.errmsg(&format!("shopt: {n}: invalid shell option name"));
            st = 1;
        }
    }
    if st != 0 {
        return Ok(st);
    }
    if let Some(on) = set {
        for n in &names {
            if let Some(v) = sh.shopt.0.get_mut(n.as_str()) {
                *v = on;
            }
        }
        if names.is_empty() {
            // `shopt -s` alone lists the options that are on
            return Ok(list(sh, |v| v == on, print));
        }
        return Ok(0);
    }
    if names.is_empty() {
        return Ok(list(sh, |_| true, print));
    }
    let mut out = String::new();
    for n in &names {
        let on = sh.shopt.get(n);
        if !on {
            st = 1;
        }
        if !quiet {
            out.push_str(&line(n, on, print));
        }
    }
    sh.out(&out);
    Ok(st)
}

fn line(name: &str, on: bool, print: bool) -> String {
    if print {
        format!("shopt {} {name}\n", if on { "-s" } else { "-u" })
    } else {
        format!("{name:<15}\t{}\n", if on { "on" } else { "off" })
    }
}

fn list(sh: &mut Shell, which: impl Fn(bool) -> bool, print: bool) -> i32 {
    let out: String = sh
        .shopt
        .0
        .iter()
        .filter(|(_, &v)| which(v))
        .map(|(n, &v)| line(n, v, print))
        .collect();
    sh.out(&out);
    0
}
