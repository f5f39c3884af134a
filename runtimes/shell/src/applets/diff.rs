//! `diff [-u|-U N|-q] A B`: line differences (normal or unified format) from a longest common
//! subsequence. Status 0 same, 1 different, 2 trouble. Files of up to a few thousand lines.
//! Unified headers name the files without timestamps.

use std::io::Write;

/// Past this many line pairs the LCS table would be too big for the instance.
const MAX_CELLS: usize = 16_000_000;

pub fn diff(args: &[String]) -> i32 {
    let mut context: Option<usize> = None;
    let mut brief = false;
    let mut files = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-u" | "--unified" => context = Some(3),
            "-U" => {
                i += 1;
                context = args.get(i).and_then(|n| n.parse().ok()).or(Some(3));
            }
            "-q" | "--brief" => brief = true,
            s if s.starts_with("-U") => context = s[2..].parse().ok().or(Some(3)),
            s if s.starts_with("--unified=") => context = s[10..].parse().ok().or(Some(3)),
            "-" => files.push(a.clone()),
            s if s.starts_with('-') && s.len() > 1 => {
                eprintln!("diff: {s}: option not supported");
                return 2;
            }
            _ => files.push(a.clone()),
        }
        i += 1;
    }
    let [a, b] = files.as_slice() else {
        eprintln!("diff: expected two files");
        return 2;
    };
    let (Some(ta), Some(tb)) = (read(a), read(b)) else {
        return 2;
    };
    if ta == tb {
        return 0;
    }
    if brief {
        println!("Files {a} and {b} differ");
        return 1;
    }
    let la: Vec<&str> = lines(&ta);
    let lb: Vec<&str> = lines(&tb);
    if la.len().saturating_mul(lb.len()) > MAX_CELLS {
        eprintln!("diff: {a}, {b}: files too large to compare here");
        return 2;
    }
    let ops = edit_script(&la, &lb);
    let out = match context {
        Some(n) => unified(a, b, &la, &lb, &ops, n),
        None => normal(&la, &lb, &ops),
    };
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    1
}

fn read(path: &str) -> Option<String> {
    let r = crate::vfs::read_all(path);
    match r {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) => {
            eprintln!("diff: {path}: {}", crate::exec::io_err_msg(&e));
            None
        }
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.split_inclusive('\n').collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The edit script turning `a` into `b`: one Op per line of either side, in order.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * (m + 1) + j] = if a[i] == b[j] {
                t[(i + 1) * (m + 1) + j + 1] + 1
            } else {
                t[(i + 1) * (m + 1) + j].max(t[i * (m + 1) + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i * (m + 1) + j + 1] >= t[(i + 1) * (m + 1) + j]) {
            ops.push(Op::Add);
            j += 1;
        } else {
            ops.push(Op::Del);
            i += 1;
        }
    }
    // deletions before additions inside a change, as diff prints them
    let mut k = 0;
    while k < ops.len() {
        if ops[k] == Op::Same {
            k += 1;
            continue;
        }
        let start = k;
        while k < ops.len() && ops[k] != Op::Same {
            k += 1;
        }
        ops[start..k].sort_by_key(|o| *o != Op::Del);
    }
    ops
}

fn line_out(prefix: &str, l: &str, out: &mut String) {
    out.push_str(prefix);
    out.push_str(l);
    if !l.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

fn range(start: usize, len: usize) -> String {
    // 1-based; an empty range names the line before it
    match len {
        0 => start.to_string(),
        1 => (start + 1).to_string(),
        _ => format!("{},{}", start + 1, start + len),
    }
}

fn normal(a: &[&str], b: &[&str], ops: &[Op]) -> String {
    let mut out = String::new();
    let (mut i, mut j, mut k) = (0, 0, 0);
    while k < ops.len() {
        if ops[k] == Op::Same {
            i += 1;
            j += 1;
            k += 1;
            continue;
        }
        let (si, sj) = (i, j);
        while k < ops.len() && ops[k] != Op::Same {
            match ops[k] {
                Op::Del => i += 1,
                _ => j += 1,
            }
            k += 1;
        }
        let (dl, al) = (i - si, j - sj);
        let c = match (dl, al) {
            (_, 0) => 'd',
            (0, _) => 'a',
            _ => 'c',
        };
        let left = if dl == 0 {
            si.to_string()
        } else {
            range(si, dl)
        };
        let right = if al == 0 {
            sj.to_string()
        } else {
            range(sj, al)
        };
        out.push_str(&format!("{left}{c}{right}\n"));
        for l in &a[si..i] {
            line_out("< ", l, &mut out);
        }
        if dl > 0 && al > 0 {
            out.push_str("---\n");
        }
        for l in &b[sj..j] {
            line_out("> ", l, &mut out);
        }
    }
    out
}

fn unified(na: &str, nb: &str, a: &[&str], b: &[&str], ops: &[Op], ctx: usize) -> String {
    let mut out = format!("--- {na}\n+++ {nb}\n");
    // positions (index in a, index in b) before each op
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    pos.push((i, j));
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut g = 0;
    while g < changed.len() {
        let start = changed[g].saturating_sub(ctx);
        let mut end = (changed[g] + 1 + ctx).min(ops.len());
        g += 1;
        while g < changed.len() && changed[g] <= end + ctx {
            end = (changed[g] + 1 + ctx).min(ops.len());
            g += 1;
        }
        let (ai, bj) = pos[start];
        let (ae, be) = pos[end];
        let hdr = |s: usize, l: usize| match l {
            0 => format!("{s},0"),
            1 => format!("{}", s + 1),
            _ => format!("{},{l}", s + 1),
        };
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            hdr(ai, ae - ai),
            hdr(bj, be - bj)
        ));
        for k in start..end {
            let (x, y) = pos[k];
            match ops[k] {
                Op::Same => line_out(" ", a[x], &mut out),
                Op::Del => line_out("-", a[x], &mut out),
                Op::Add => line_out("+", b[y], &mut out),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_and_unified() {
        let a = lines("a\nb\nc\n");
        let b = lines("a\nB\nc\nd\n");
        let ops = edit_script(&a, &b);
        assert_eq!(normal(&a, &b, &ops), "2c2\n< b\n---\n> B\n3a4\n> d\n");
        assert_eq!(
            unified("x", "y", &a, &b, &ops, 3),
            "--- x\n+++ y\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"
        );
    }
}
