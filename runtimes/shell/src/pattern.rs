//! Shell patterns: matching (`case`, `[[ == ]]`, `${v#pat}`), bash extended patterns
//! (`@(…)` `!(…)` `+(…)` `*(…)` `?(…)`) and pathname expansion.

use crate::expand::PChar;

/// Pathname-expansion options (bash `shopt`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobOpts {
    /// `*` also matches names starting with `.`.
    pub dotglob: bool,
    /// `**` alone as a component matches any number of directories (bash `globstar`).
    pub globstar: bool,
}

/// Every directory below `base` (relative names ending in `/`), depth first, sorted.
fn subdirs(cwd: &str, base: &str, dotglob: bool, out: &mut Vec<String>) {
    let dir = if base.is_empty() {
        cwd.to_string()
    } else if base.starts_with('/') {
        base.to_string()
    } else {
        format!("{cwd}/{base}")
    };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut names: Vec<(String, bool)> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    names.sort();
    for (n, is_dir) in names {
        if is_dir && (dotglob || !n.starts_with('.')) {
            let sub = format!("{base}{n}/");
            out.push(sub.clone());
            subdirs(cwd, &sub, dotglob, out);
        }
    }
}

/// Does the pattern contain an unquoted extglob group opener?
fn has_extglob(p: &[PChar]) -> bool {
    p.windows(2)
        .any(|w| !w[0].1 && "@!+*?".contains(w[0].0) && w[1] == ('(', false))
}

/// The index of the `)` closing the group opened at `open` (the `(`), and the alternatives.
fn group(p: &[PChar], open: usize) -> Option<(usize, Vec<&[PChar]>)> {
    let mut depth = 0;
    let mut alts = Vec::new();
    let mut start = open + 1;
    for (i, &(c, q)) in p.iter().enumerate().skip(open) {
        if q {
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    alts.push(&p[start..i]);
                    return Some((i, alts));
                }
            }
            '|' if depth == 1 => {
                alts.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

fn any_alt(alts: &[&[PChar]], s: &[char]) -> bool {
    alts.iter().any(|a| ext_match(a, s))
}

/// One or more repetitions of the alternatives make up all of `s`.
fn repeat(alts: &[&[PChar]], s: &[char]) -> bool {
    if s.is_empty() {
        return false;
    }
    (1..=s.len()).any(|k| any_alt(alts, &s[..k]) && (k == s.len() || repeat(alts, &s[k..])))
}

/// Backtracking matcher with extglob groups.
fn ext_match(p: &[PChar], s: &[char]) -> bool {
    let Some(&(c, q)) = p.first() else {
        return s.is_empty();
    };
    if !q && "@!+*?".contains(c) && p.get(1) == Some(&('(', false)) {
        if let Some((close, alts)) = group(p, 1) {
            let rest = &p[close + 1..];
            return (0..=s.len()).any(|k| {
                let head = &s[..k];
                let ok = match c {
                    '@' => any_alt(&alts, head),
                    '?' => head.is_empty() || any_alt(&alts, head),
                    '*' => head.is_empty() || repeat(&alts, head),
                    '+' => repeat(&alts, head),
                    _ => !any_alt(&alts, head),
                };
                ok && ext_match(rest, &s[k..])
            });
        }
    }
    if !q && c == '*' {
        return (0..=s.len()).any(|k| ext_match(&p[1..], &s[k..]));
    }
    let Some(&ch) = s.first() else {
        return false;
    };
    if !q && c == '?' {
        return ext_match(&p[1..], &s[1..]);
    }
    if !q && c == '[' {
        if let Some((matched, next)) = bracket(p, 0, ch) {
            return matched && ext_match(&p[next..], &s[1..]);
        }
    }
    c == ch && ext_match(&p[1..], &s[1..])
}

/// Does the pattern match all of `s`? (extglob groups when the pattern has any)
pub fn pat_match(p: &[PChar], s: &[char]) -> bool {
    if has_extglob(p) {
        return ext_match(p, s);
    }
    simple_match(p, s)
}

/// `*`, `?`, `[…]` only: iterative, linear in practice.
fn simple_match(p: &[PChar], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let (mut star_p, mut star_s) = (usize::MAX, 0usize);
    while si < s.len() {
        if pi < p.len() {
            let (c, q) = p[pi];
            if !q && c == '*' {
                star_p = pi;
                star_s = si;
                pi += 1;
                continue;
            }
            if !q && c == '?' {
                pi += 1;
                si += 1;
                continue;
            }
            if !q && c == '[' {
                if let Some((matched, next)) = bracket(p, pi, s[si]) {
                    if matched {
                        pi = next;
                        si += 1;
                        continue;
                    }
                } else if s[si] == '[' {
                    pi += 1;
                    si += 1;
                    continue;
                }
            } else if c == s[si] {
                pi += 1;
                si += 1;
                continue;
            }
        }
        if star_p != usize::MAX {
            pi = star_p + 1;
            star_s += 1;
            si = star_s;
            continue;
        }
        return false;
    }
    while pi < p.len() && p[pi] == ('*', false) {
        pi += 1;
    }
    pi == p.len()
}

/// A bracket expression at p[start] == '['. Returns (matched, index after `]`), or None if not a
/// valid bracket expression.
fn bracket(p: &[PChar], start: usize, ch: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let mut negate = false;
    if i < p.len() && !p[i].1 && (p[i].0 == '!' || p[i].0 == '^') {
        negate = true;
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let (c, q) = p[i];
        if c == ']' && !q && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if c == '[' && !q && i + 1 < p.len() && p[i + 1].0 == ':' {
            // character class
            let rest: String = p[i + 2..].iter().map(|x| x.0).collect();
            if let Some(end) = rest.find(":]") {
                let class = &rest[..end];
                let m = match class {
                    "alpha" => ch.is_alphabetic(),
                    "digit" => ch.is_ascii_digit(),
                    "alnum" => ch.is_alphanumeric(),
                    "upper" => ch.is_uppercase(),
                    "lower" => ch.is_lowercase(),
                    "space" => ch.is_whitespace(),
                    "blank" => ch == ' ' || ch == '\t',
                    "punct" => ch.is_ascii_punctuation(),
                    "xdigit" => ch.is_ascii_hexdigit(),
                    "print" => !ch.is_control(),
                    "graph" => !ch.is_control() && ch != ' ',
                    "cntrl" => ch.is_control(),
                    _ => false,
                };
                matched |= m;
                i += 2 + class.chars().count() + 2;
                continue;
            }
        }
        if i + 2 < p.len() && p[i + 1] == ('-', false) && p[i + 2].0 != ']' {
            let hi = p[i + 2].0;
            if c <= ch && ch <= hi {
                matched = true;
            }
            i += 3;
            continue;
        }
        if c == ch {
            matched = true;
        }
        i += 1;
    }
    None
}

/// Pathname expansion of one field. Returns sorted matches (empty if none).
pub fn glob(pat: &[PChar], cwd: &str, opts: GlobOpts) -> Vec<String> {
    let absolute = pat.first().map(|c| c.0) == Some('/');
    // split into components
    let mut comps: Vec<Vec<PChar>> = vec![Vec::new()];
    for &c in pat {
        if c.0 == '/' {
            comps.push(Vec::new());
        } else {
            comps.last_mut().unwrap().push(c);
        }
    }
    let mut results: Vec<String> = vec![if absolute {
        "/".to_string()
    } else {
        String::new()
    }];
    let start = if absolute { 1 } else { 0 };
    let ncomp = comps.len();
    for (ci, comp) in comps.iter().enumerate().skip(start) {
        let last = ci + 1 == ncomp;
        if opts.globstar && !last && comp.as_slice() == [('*', false), ('*', false)] {
            // `**/`: this directory and every one below it
            let mut next = Vec::new();
            for base in &results {
                next.push(base.clone());
                subdirs(cwd, base, opts.dotglob, &mut next);
            }
            results = next;
            continue;
        }
        let has_glob = comp
            .iter()
            .any(|&(c, q)| !q && (c == '*' || c == '?' || c == '['))
            || has_extglob(comp);
        let mut next = Vec::new();
        for base in &results {
            if comp.is_empty() {
                // trailing slash or `//`
                next.push(base.clone());
                continue;
            }
            if !has_glob {
                let name: String = comp.iter().map(|c| c.0).collect();
                let p = format!("{base}{name}");
                let full = if p.starts_with('/') {
                    p.clone()
                } else {
                    format!("{cwd}/{p}")
                };
                if std::fs::symlink_metadata(&full).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.is_empty() {
                cwd.to_string()
            } else if base.starts_with('/') {
                base.clone()
            } else {
                format!("{cwd}/{base}")
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter(|e| !crate::modes::is_store_name(&e.file_name()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let explicit_dot = comp.first().map(|c| c.0) == Some('.');
            for n in names {
                if n.starts_with('.') && !explicit_dot && (!opts.dotglob || n == "." || n == "..") {
                    continue;
                }
                let nc: Vec<char> = n.chars().collect();
                if pat_match(comp, &nc) {
                    let p = format!("{base}{n}");
                    if !last {
                        let full = if p.starts_with('/') {
                            p.clone()
                        } else {
                            format!("{cwd}/{p}")
                        };
                        if !std::path::Path::new(&full).is_dir() {
                            continue;
                        }
                    }
                    next.push(p);
                }
            }
        }
        results = next
            .into_iter()
            .map(|p| if last { p } else { format!("{p}/") })
            .collect();
        if results.is_empty() {
            return results;
        }
    }
    results.sort();
    results
}
