//! bash `mapfile`/`readarray`: lines of standard input into an indexed array.

use crate::exec::{Shell, R};
use crate::vars::Elem;

pub fn mapfile(sh: &mut Shell, name: &str, args: &[String]) -> R {
    let mut strip = false;
    let mut delim = b'\n';
    let mut count: Option<usize> = None;
    let mut skip = 0usize;
    let mut array = "MAPFILE".to_string();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-t" => strip = true,
            "-d" | "-n" | "-s" | "-u" | "-C" | "-c" | "-O" => {
                i += 1;
                let Some(v) = args.get(i) else {
                    sh.errmsg(&format!("{name}: {a}: option requires an argument"));
                    return Ok(2);
                };
                let num = v.parse::<usize>().ok();
                match a.as_str() {
                    "-d" => delim = v.bytes().next().unwrap_or(0),
                    "-n" => count = num.filter(|&n| n > 0),
                    "-s" => skip = num.unwrap_or(0),
                    "-u" if v != "0" => {
                        sh.errmsg(&format!("{name}: -u {v}: only fd 0 is supported"));
                        return Ok(2);
                    }
                    _ => {}
                }
            }
            o if o.starts_with('-') && o.len() > 1 => {
                sh.errmsg(&format!("{name}: {o}: invalid option"));
                return Ok(2);
            }
            _ => array = a.clone(),
        }
        i += 1;
    }
    let mut elems = Vec::new();
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        if count.is_some_and(|c| elems.len() >= c) {
            break;
        }
        let b = sh.read_byte();
        if let Some(b) = b {
            line.push(b);
            if b != delim {
                continue;
            }
        }
        if line.is_empty() {
            break;
        }
        if strip && line.last() == Some(&delim) {
            line.pop();
        }
        if seen >= skip {
            elems.push(Elem {
                key: None,
                value: crate::bytes::decode(&line),
            });
        }
        seen += 1;
        line.clear();
        if b.is_none() {
            break;
        }
    }
    match sh.assign_array(&array, elems, false, false) {
        Ok(()) => Ok(0),
        Err(m) => {
            sh.errmsg(&format!("{name}: {m}"));
            Ok(1)
        }
    }
}
