//! `tac`: lines of each file (or stdin) in reverse order. Ours, because uutils' tac asks for a
//! temporary directory when reading a pipe, which WASI does not have.

use std::io::Write;

pub fn tac(args: &[String]) -> i32 {
    let mut sep = b"\n".to_vec();
    let mut before = false;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-b" | "--before" => before = true,
            "-s" | "--separator" => {
                i += 1;
                match args.get(i) {
                    Some(s) if !s.is_empty() => sep = s.as_bytes().to_vec(),
                    _ => {
                        eprintln!("tac: option requires an argument -- 's'");
                        return 1;
                    }
                }
            }
            "-r" | "--regex" => {
                eprintln!("tac: -r: not supported");
                return 1;
            }
            "--" => {
                files.extend(args[i + 1..].iter().cloned());
                break;
            }
            _ => files.push(a.clone()),
        }
        i += 1;
    }
    if files.is_empty() {
        files.push("-".into());
    }
    let mut st = 0;
    let mut out = std::io::stdout().lock();
    for f in files {
        let mut data = Vec::new();
        let r = crate::vfs::read_all(&f).map(|d| data = d);
        if let Err(e) = r {
            eprintln!("tac: {f}: {}", crate::exec::io_err_msg(&e));
            st = 1;
            continue;
        }
        if out.write_all(&reverse(&data, &sep, before)).is_err() {
            return 1;
        }
    }
    let _ = out.flush();
    st
}

/// The records of `data` (each ending with `sep`, or starting with it when `before`) reversed.
fn reverse(data: &[u8], sep: &[u8], before: bool) -> Vec<u8> {
    let mut records: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= data.len() {
        if &data[i..i + sep.len()] == sep {
            if before {
                if i > start {
                    records.push(&data[start..i]);
                }
                start = i;
            } else {
                records.push(&data[start..i + sep.len()]);
                start = i + sep.len();
            }
            i += sep.len();
        } else {
            i += 1;
        }
    }
    if start < data.len() {
        records.push(&data[start..]);
    }
    records.reverse();
    records.concat()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reverses_records() {
        assert_eq!(super::reverse(b"1\n2\n3\n", b"\n", false), b"3\n2\n1\n");
        assert_eq!(super::reverse(b"a\nb", b"\n", false), b"ba\n");
        assert_eq!(super::reverse(b"", b"\n", false), b"");
    }
}
