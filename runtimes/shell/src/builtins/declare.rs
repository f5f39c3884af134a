//! `declare`/`typeset`/`local` (bash; `local` also in sh mode): variable attributes, arrays,
//! function-local scope, `-p`/`-f`/`-F` listings.

use crate::exec::{Flow, Shell, R};
use crate::parse::is_name;
use crate::vars::{declare_line, split_subscript, Value, Var};

#[derive(Default)]
struct Flags {
    indexed: bool,
    assoc: bool,
    integer: Option<bool>,
    lower: Option<bool>,
    upper: Option<bool>,
    readonly: bool,
    export: Option<bool>,
    global: bool,
    print: bool,
    funcs: bool,
    func_names: bool,
    nameref: bool,
}

pub fn declare(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let mut f = Flags::default();
    let mut items = Vec::new();
    for a in args {
        let sign = a.chars().next();
        if items.is_empty() && a.len() > 1 && matches!(sign, Some('-') | Some('+')) {
            if a == "--" {
                continue;
            }
            let on = sign == Some('-');
            for c in a[1..].chars() {
                match c {
                    'a' => f.indexed = on,
                    'A' => f.assoc = on,
                    'i' => f.integer = Some(on),
                    'l' => f.lower = Some(on),
                    'u' => f.upper = Some(on),
                    'r' => f.readonly |= on,
                    'x' => f.export = Some(on),
                    'g' => f.global = on,
                    'p' => f.print = true,
                    'f' => f.funcs = true,
                    'F' => f.func_names = true,
                    'n' => f.nameref = on,
                    't' => {}
                    _ => {
                        sh.errmsg(&format!("{name}: -{c}: invalid option"));
                        return Ok(2);
                    }
                }
            }
            continue;
        }
        items.push(a.clone());
    }
    let in_func = !sh.locals.is_empty();
    if name == "local" && !in_func {
        sh.errmsg("local: can only be used in a function");
        return Ok(if sh.bash { 1 } else { 2 });
    }
    if f.funcs || f.func_names {
        return list_functions(sh, &items, f.func_names);
    }
    if f.print || (items.is_empty() && name != "local") {
        return print(sh, name, &items);
    }
    let local = in_func && (name == "local" || !f.global);
    let mut st = 0;
    for item in items {
        let (lhs, value) = match item.split_once('=') {
            Some((l, v)) => (l.to_string(), Some(v.to_string())),
            None => (item.clone(), None),
        };
        let (lhs, append) = match lhs.strip_suffix('+') {
            Some(l) if value.is_some() => (l.to_string(), true),
            _ => (lhs, false),
        };
        let (var, sub) = match split_subscript(&lhs) {
            Some((n, s)) => (n.to_string(), Some(s.to_string())),
            None => (lhs.clone(), None),
        };
        if !is_name(&var) {
            sh.errmsg(&format!("{name}: `{item}': not a valid identifier"));
            st = 1;
            continue;
        }
        if local {
            let old = sh.vars.get(&var).cloned();
            if let Some(frame) = sh.locals.last_mut() {
                if !frame.iter().any(|(k, _)| *k == var) {
                    frame.push((var.clone(), old));
                    if sh.bash {
                        // a new local starts unset (dash keeps the outer value)
                        sh.vars.remove(&var);
                    }
                }
            }
        }
        if let Err(m) = declare_one(sh, &f, &var, sub.as_deref(), value.as_deref(), append) {
            sh.errmsg(&format!("{name}: {m}"));
            st = 1;
        }
    }
    Ok(st)
}

fn declare_one(
    sh: &mut Shell,
    f: &Flags,
    var: &str,
    sub: Option<&str>,
    value: Option<&str>,
    append: bool,
) -> Result<(), String> {
    if sh.vars.get(var).is_some_and(|v| v.readonly) && value.is_some() {
        return Err(format!("{var}: readonly variable"));
    }
    if f.nameref {
        // the value is a variable name, kept as it is (not assigned through)
        let target = value.unwrap_or_default();
        if !target.is_empty() && split_subscript(target).is_none() && !is_name(target) {
            return Err(format!(
                "{target}: invalid variable name for name reference"
            ));
        }
        let v = sh
            .vars
            .entry(var.to_string())
            .or_insert_with(|| Var::scalar("", false));
        v.value = Value::Str(target.to_string());
        v.attrs.nameref = true;
        return Ok(());
    }
    // the kind first, so that the value is stored the right way
    if f.assoc || f.indexed {
        let exported = sh.opts.allexport;
        let v = sh
            .vars
            .entry(var.to_string())
            .or_insert_with(|| Var::scalar("", exported));
        match (&v.value, f.assoc) {
            (Value::Assoc(_), true) | (Value::Indexed(_), false) => {}
            (Value::Str(s), false) => {
                let first = s.clone();
                v.value = Value::Indexed(if value.is_none() && !first.is_empty() {
                    [(0, first)].into_iter().collect()
                } else {
                    Default::default()
                });
            }
            (_, true) => v.value = Value::Assoc(Default::default()),
            (Value::Assoc(_), false) => {
                return Err(format!(
                    "{var}: cannot convert associative to indexed array"
                ))
            }
        }
    }
    {
        let exported = sh.opts.allexport;
        let v = sh
            .vars
            .entry(var.to_string())
            .or_insert_with(|| Var::scalar("", exported));
        if value.is_none() && !f.assoc && !f.indexed && v.text() == Some("") && !v.is_array() {
            // `declare x` leaves x unset-but-declared; we keep it as empty
        }
        if let Some(i) = f.integer {
            v.attrs.integer = i;
        }
        if let Some(l) = f.lower {
            v.attrs.lower = l;
            if l {
                v.attrs.upper = false;
            }
        }
        if let Some(u) = f.upper {
            v.attrs.upper = u;
            if u {
                v.attrs.lower = false;
            }
        }
        if let Some(x) = f.export {
            v.exported = x;
        }
    }
    if let Some(value) = value {
        match sub {
            Some(s) => sh.assign_elem(var, s, value, append)?,
            None if value.starts_with('(') && value.ends_with(')') => {
                let elems = parse_array_text(sh, var, value)?;
                sh.assign_array(var, elems, append, f.assoc)?;
            }
            None => sh.assign_scalar(var, value, append)?,
        }
    } else if !sh.vars.get(var).is_some_and(|v| v.is_array()) && !sh.bash {
        // dash: `local x` keeps the value; nothing to do
    }
    if f.readonly {
        if let Some(v) = sh.vars.get_mut(var) {
            v.readonly = true;
        }
    }
    Ok(())
}

/// `(a 'b c' [k]=v)` as produced by expanding an array literal: parse and expand it again
/// (its words are quoted, so this is exact).
fn parse_array_text(
    sh: &mut Shell,
    var: &str,
    text: &str,
) -> Result<Vec<crate::vars::Elem>, String> {
    let src = format!("{var}={text}");
    let prog = crate::parse::parse(&src).map_err(|e| e.to_string())?;
    let elems = prog
        .items
        .first()
        .and_then(|ao| ao.first.cmds.first())
        .and_then(|c| match c {
            crate::ast::Command::Simple(s) => s.assigns.first().cloned(),
            _ => None,
        })
        .and_then(|a| match a.value {
            crate::ast::AssignValue::Array(e) => Some(e),
            _ => None,
        })
        .ok_or_else(|| format!("{text}: bad array literal"))?;
    sh.expand_array_elems(&elems)
        .map_err(|_| format!("{text}: bad array literal"))
}

fn print(sh: &mut Shell, name: &str, items: &[String]) -> R {
    let mut names: Vec<String> = if items.is_empty() {
        sh.vars.keys().cloned().collect()
    } else {
        items.to_vec()
    };
    names.sort();
    let mut st = 0;
    let mut out = String::new();
    for n in names {
        match sh.vars.get(&n) {
            Some(v) => {
                out.push_str(&declare_line(&n, v));
                out.push('\n');
            }
            None => {
                sh.errmsg(&format!("{name}: {n}: not found"));
                st = 1;
            }
        }
    }
    sh.out(&out);
    Ok(st)
}

fn list_functions(sh: &mut Shell, items: &[String], names_only: bool) -> R {
    let mut names: Vec<String> = if items.is_empty() {
        sh.funcs.keys().cloned().collect()
    } else {
        items.to_vec()
    };
    names.sort();
    let mut st = 0;
    let mut out = String::new();
    for n in names {
        match sh.funcs.get(&n) {
            Some(body) if names_only => {
                let _ = body;
                out.push_str(&format!("{n}\n"));
            }
            Some(body) => {
                out.push_str(&crate::parse::unparse_command(
                    &crate::ast::Command::FuncDef(n.clone(), body.clone()),
                ));
            }
            None => st = 1,
        }
    }
    sh.out(&out);
    Ok(st)
}

/// `unset NAME[SUB]`: true when `a` named an element (and it was handled).
pub fn unset_element(sh: &mut Shell, a: &str) -> Result<bool, Flow> {
    let Some((n, sub)) = split_subscript(a) else {
        return Ok(false);
    };
    let sub = sh.expand_subscript_text(sub)?;
    if let Err(m) = sh.unset_elem(n, &sub) {
        sh.errmsg(&format!("unset: {m}"));
    }
    Ok(true)
}
