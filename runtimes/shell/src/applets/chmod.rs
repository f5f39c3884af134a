//! `chmod MODE FILE…` (octal or symbolic modes, `-R`). WASI has no permission bits: there the
//! mode goes to the shell's mode store (see `crate::modes`), which `ls -l`, `test -x` and running
//! `./script` consult; natively the mode is applied.

pub fn chmod(args: &[String]) -> i32 {
    let mut recursive = false;
    let mut rest = Vec::new();
    for a in args {
        match a.as_str() {
            "-R" | "--recursive" => recursive = true,
            "-v" | "-c" | "-f" | "--silent" | "--quiet" => {}
            _ => rest.push(a.clone()),
        }
    }
    if rest.len() < 2 {
        eprintln!("chmod: missing operand");
        return 1;
    }
    let mode = rest.remove(0);
    if parse_mode(&mode, 0o644).is_none() {
        eprintln!("chmod: invalid mode: '{mode}'");
        return 1;
    }
    let mut st = 0;
    for f in &rest {
        if !apply(f, &mode, recursive) {
            st = 1;
        }
    }
    st
}

/// Change `path` (and below it with `-R`); false after any error (said on stderr, GNU's words).
fn apply(path: &str, mode: &str, recursive: bool) -> bool {
    let msg = crate::exec::io_err_msg;
    let p = std::path::Path::new(path);
    let md = match std::fs::metadata(p) {
        Ok(md) => md,
        Err(e) => {
            eprintln!("chmod: cannot access '{path}': {}", msg(&e));
            return false;
        }
    };
    let mut ok = true;
    let cur = crate::modes::mode_of(p, &md);
    if let Some(m) = parse_mode(mode, cur) {
        if let Err(e) = crate::modes::set_mode(p, m) {
            eprintln!("chmod: changing permissions of '{path}': {}", msg(&e));
            ok = false;
        }
    }
    if recursive && md.is_dir() {
        match std::fs::read_dir(path) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if !crate::modes::is_store_name(&e.file_name()) {
                        ok &= apply(&e.path().to_string_lossy(), mode, true);
                    }
                }
            }
            Err(e) => {
                eprintln!("chmod: cannot read directory '{path}': {}", msg(&e));
                ok = false;
            }
        }
    }
    ok
}

/// The new mode for `spec` (octal, or symbolic like `u+x,go-w`) applied to `cur`.
pub fn parse_mode(spec: &str, cur: u32) -> Option<u32> {
    if !spec.is_empty() && spec.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(spec, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut mode = cur;
    for clause in spec.split(',') {
        let who_end = clause
            .find(|c: char| !"ugoa".contains(c))
            .unwrap_or(clause.len());
        let (who, ops) = clause.split_at(who_end);
        let mask = if who.is_empty() {
            0o755 // no "who": all, except the bits of the umask (022)
        } else if who.contains('a') {
            0o777
        } else {
            let mut m = 0;
            for c in who.chars() {
                m |= match c {
                    'u' => 0o700,
                    'g' => 0o070,
                    _ => 0o007,
                };
            }
            m
        };
        let mut chars = ops.chars().peekable();
        chars.peek()?;
        while let Some(op) = chars.next() {
            if !"+-=".contains(op) {
                return None;
            }
            let mut bits = 0;
            while let Some(&p) = chars.peek() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' | 'X' => 0o111,
                    's' | 't' => 0,
                    _ => break,
                };
                chars.next();
            }
            let bits = bits & mask;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                _ => mode = (mode & !mask) | bits,
            }
        }
    }
    Some(mode)
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("755", 0), Some(0o755));
        assert_eq!(parse_mode("+x", 0o644), Some(0o755));
        assert_eq!(parse_mode("go-w,u+x", 0o666), Some(0o744));
        assert_eq!(parse_mode("a=r", 0o777), Some(0o444));
        assert_eq!(parse_mode("q", 0o644), None);
    }
}
