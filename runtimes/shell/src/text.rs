//! Our own `grep`, `sed` and `find` (basics), used as applets.

use regex::{Regex, RegexBuilder};
use std::io::Write;

/// Translate a POSIX regular expression (basic or extended) into `regex` crate syntax.
pub fn posix_to_regex(pat: &str, extended: bool) -> String {
    let c: Vec<char> = pat.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut at_start = true; // position where `*` is literal (BRE)
    while i < c.len() {
        let ch = c[i];
        let start_here = at_start;
        at_start = false;
        match ch {
            '\\' if i + 1 < c.len() => {
                let n = c[i + 1];
                i += 2;
                if !extended && matches!(n, '(' | ')' | '{' | '}' | '|' | '+' | '?') {
                    out.push(n);
                    if n == '(' || n == '|' {
                        at_start = true;
                    }
                    continue;
                }
                match n {
                    '<' | '>' => out.push_str("\\b"),
                    'w' | 'W' | 's' | 'S' | 'b' | 'B' | 'd' | 'D' => {
                        out.push('\\');
                        out.push(n)
                    }
                    'n' => out.push_str("\\n"),
                    't' => out.push_str("\\t"),
                    n if n.is_ascii_digit() => {
                        // back-references are not supported by the regex engine: match literally
                        out.push_str(&regex::escape(&n.to_string()));
                    }
                    n => out.push_str(&regex::escape(&n.to_string())),
                }
                continue;
            }
            '[' => {
                // bracket expression
                let mut j = i + 1;
                let mut s = String::from("[");
                if j < c.len() && (c[j] == '^' || c[j] == '!') {
                    s.push('^');
                    j += 1;
                }
                if j < c.len() && c[j] == ']' {
                    s.push_str("\\]");
                    j += 1;
                }
                let mut closed = false;
                while j < c.len() {
                    if c[j] == ']' {
                        closed = true;
                        j += 1;
                        break;
                    }
                    if c[j] == '[' && j + 1 < c.len() && matches!(c[j + 1], ':' | '.' | '=') {
                        let delim = c[j + 1];
                        let rest: String = c[j + 2..].iter().collect();
                        let end = format!("{delim}]");
                        if let Some(e) = rest.find(&end) {
                            if delim == ':' {
                                s.push_str(&format!("[:{}:]", &rest[..e]));
                            } else {
                                s.push_str(&regex::escape(&rest[..e]));
                            }
                            j += 2 + rest[..e].chars().count() + 2;
                            continue;
                        }
                    }
                    match c[j] {
                        '\\' | '[' | '&' | '~' | '-' if c[j] != '-' => {
                            s.push('\\');
                            s.push(c[j]);
                        }
                        ch => s.push(ch),
                    }
                    j += 1;
                }
                if closed {
                    s.push(']');
                    out.push_str(&s);
                    i = j;
                } else {
                    out.push_str("\\[");
                    i += 1;
                }
                continue;
            }
            '*' if start_here && !extended => out.push_str("\\*"),
            '*' => out.push('*'),
            '^' => {
                if extended || start_here {
                    out.push('^');
                    at_start = true;
                } else {
                    out.push_str("\\^");
                }
            }
            '$' => {
                if extended
                    || i + 1 == c.len()
                    || (i + 2 < c.len() + 1
                        && c.get(i + 1) == Some(&'\\')
                        && matches!(c.get(i + 2), Some(')') | Some('|')))
                {
                    out.push('$');
                } else {
                    out.push_str("\\$");
                }
            }
            '(' | ')' | '|' | '+' | '?' | '{' | '}' => {
                if extended {
                    if ch == '{'
                        && !c[i + 1..]
                            .iter()
                            .take_while(|&&x| x != '}')
                            .all(|x| x.is_ascii_digit() || *x == ',')
                    {
                        out.push_str("\\{");
                    } else {
                        out.push(ch);
                    }
                    if ch == '(' || ch == '|' {
                        at_start = true;
                    }
                } else {
                    out.push('\\');
                    out.push(ch);
                }
            }
            '.' => out.push('.'),
            ch => out.push_str(&regex::escape(&ch.to_string())),
        }
        i += 1;
    }
    out
}

fn build_regex(
    pats: &[String],
    extended: bool,
    fixed: bool,
    icase: bool,
    word: bool,
    line: bool,
) -> Result<Regex, String> {
    let alts: Vec<String> = pats
        .iter()
        .map(|p| {
            if fixed {
                regex::escape(p)
            } else {
                posix_to_regex(p, extended)
            }
        })
        .map(|p| format!("(?:{p})"))
        .collect();
    let mut re = alts.join("|");
    if word {
        re = format!("\\b(?:{re})\\b");
    }
    if line {
        re = format!("^(?:{re})$");
    }
    RegexBuilder::new(&re)
        .case_insensitive(icase)
        .multi_line(false)
        .build()
        .map_err(|e| e.to_string())
}

fn read_input(path: &str) -> std::io::Result<Vec<u8>> {
    crate::vfs::read_all(path)
}

fn err_msg(e: &std::io::Error) -> String {
    crate::exec::io_err_msg(e)
}

fn simple_match(pat: &str, name: &str) -> bool {
    let p: Vec<(char, bool)> = pat.chars().map(|c| (c, false)).collect();
    let n: Vec<char> = name.chars().collect();
    crate::expand::pat_match(&p, &n)
}

pub fn grep(name: &str, args: &[String]) -> i32 {
    let mut extended = name == "egrep";
    let mut fixed = name == "fgrep";
    let (mut icase, mut invert, mut count, mut number, mut quiet, mut recursive) =
        (false, false, false, false, false, false);
    let (mut list, mut list_non, mut only, mut word, mut line, mut silent) =
        (false, false, false, false, false, false);
    let mut with_name: Option<bool> = None;
    let mut pats: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let mut includes: Vec<String> = Vec::new();
    let mut excludes: Vec<String> = Vec::new();
    let mut max_count: Option<usize> = None;
    let (mut after, mut before) = (0usize, 0usize);
    let mut i = 0;
    let mut opts_done = false;
    while i < args.len() {
        let a = &args[i];
        if opts_done || !a.starts_with('-') || a == "-" {
            files.push(a.clone());
            i += 1;
            continue;
        }
        if a == "--" {
            opts_done = true;
            i += 1;
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (k, v) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (long, None),
            };
            match k {
                "ignore-case" => icase = true,
                "invert-match" => invert = true,
                "count" => count = true,
                "line-number" => number = true,
                "quiet" | "silent" => quiet = true,
                "recursive" | "dereference-recursive" => recursive = true,
                "files-with-matches" => list = true,
                "files-without-match" => list_non = true,
                "only-matching" => only = true,
                "word-regexp" => word = true,
                "line-regexp" => line = true,
                "extended-regexp" => extended = true,
                "fixed-strings" => fixed = true,
                "no-filename" => with_name = Some(false),
                "with-filename" => with_name = Some(true),
                "no-messages" => silent = true,
                "color" | "colour" => {}
                "include" => includes.extend(v),
                "exclude" => excludes.extend(v),
                "regexp" => pats.extend(v),
                "max-count" => max_count = v.and_then(|v| v.parse().ok()),
                _ => {
                    eprintln!("grep: --{k}: not supported");
                    return 2;
                }
            }
            i += 1;
            continue;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            let takes = matches!(c, 'e' | 'f' | 'm' | 'A' | 'B' | 'C');
            if takes {
                let val: String = if k + 1 < chars.len() {
                    chars[k + 1..].iter().collect()
                } else {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => {
                            eprintln!("grep: option requires an argument -- '{c}'");
                            return 2;
                        }
                    }
                };
                match c {
                    'e' => pats.push(val),
                    'f' => match std::fs::read_to_string(&val) {
                        Ok(s) => pats.extend(s.lines().map(|l| l.to_string())),
                        Err(e) => {
                            eprintln!("grep: {val}: {}", err_msg(&e));
                            return 2;
                        }
                    },
                    'm' => max_count = val.parse().ok(),
                    'A' => after = val.parse().unwrap_or(0),
                    'B' => before = val.parse().unwrap_or(0),
                    _ => {
                        after = val.parse().unwrap_or(0);
                        before = after;
                    }
                }
                break;
            }
            match c {
                'i' | 'y' => icase = true,
                'v' => invert = true,
                'c' => count = true,
                'n' => number = true,
                'q' => quiet = true,
                'r' | 'R' => recursive = true,
                'l' => list = true,
                'L' => list_non = true,
                'o' => only = true,
                'w' => word = true,
                'x' => line = true,
                'E' => extended = true,
                'F' => fixed = true,
                'G' => extended = false,
                'h' => with_name = Some(false),
                'H' => with_name = Some(true),
                's' => silent = true,
                'I' | 'a' | 'U' => {}
                _ => {
                    eprintln!("grep: invalid option -- '{c}'");
                    return 2;
                }
            }
            k += 1;
        }
        i += 1;
    }
    if pats.is_empty() {
        if files.is_empty() {
            eprintln!("Usage: grep [OPTION]... PATTERNS [FILE]...");
            return 2;
        }
        pats.push(files.remove(0));
    }
    let re = match build_regex(&pats, extended, fixed, icase, word, line) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grep: invalid regular expression: {e}");
            return 2;
        }
    };
    let implicit_dot = recursive && files.is_empty();
    if files.is_empty() {
        files.push(if recursive { ".".into() } else { "-".into() });
    }
    // expand directories when recursive
    let mut inputs: Vec<String> = Vec::new();
    let mut errors = false;
    for f in &files {
        if recursive && std::path::Path::new(f).is_dir() {
            walk(f, &mut inputs);
        } else if !recursive && f != "-" && std::path::Path::new(f).is_dir() {
            if !silent {
                eprintln!("grep: {f}: Is a directory");
            }
            errors = true;
        } else {
            inputs.push(f.clone());
        }
    }
    if !includes.is_empty() || !excludes.is_empty() {
        inputs.retain(|p| {
            let base = p.rsplit('/').next().unwrap_or(p);
            (includes.is_empty() || includes.iter().any(|g| simple_match(g, base)))
                && !excludes.iter().any(|g| simple_match(g, base))
        });
    }
    let show_name = with_name.unwrap_or(recursive || inputs.len() > 1);
    let mut any = false;
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    for path in &inputs {
        let data = match read_input(path) {
            Ok(d) => d,
            Err(e) => {
                if !silent {
                    let _ = o.flush();
                    eprintln!("grep: {path}: {}", err_msg(&e));
                }
                errors = true;
                continue;
            }
        };
        let display = if path == "-" {
            "(standard input)".to_string()
        } else if implicit_dot {
            path.strip_prefix("./").unwrap_or(path).to_string()
        } else {
            path.clone()
        };
        let text = String::from_utf8_lossy(&data);
        let mut lines: Vec<&str> = text.split('\n').collect();
        if text.ends_with('\n') || text.is_empty() {
            lines.pop();
        }
        let mut n = 0usize;
        let mut last_printed: Option<usize> = None;
        let mut after_left = 0usize;
        for (ln, l) in lines.iter().enumerate() {
            if max_count.is_some_and(|m| n >= m) {
                break;
            }
            let m = re.is_match(l);
            if m != invert {
                n += 1;
                any = true;
                if quiet {
                    let _ = o.flush();
                    return 0;
                }
                if count || list || list_non {
                    continue;
                }
                // before-context
                if before > 0 {
                    let from = ln.saturating_sub(before);
                    let from = match last_printed {
                        Some(lp) => from.max(lp + 1),
                        None => from,
                    };
                    if let Some(lp) = last_printed {
                        if from > lp + 1 {
                            let _ = writeln!(o, "--");
                        }
                    }
                    for (k, cl) in lines.iter().enumerate().take(ln).skip(from) {
                        let _ = write_line(&mut o, show_name, &display, number, k + 1, '-', cl);
                    }
                } else if (after > 0 || before > 0) && last_printed.is_some_and(|lp| ln > lp + 1) {
                    let _ = writeln!(o, "--");
                }
                if only && !invert {
                    for mt in re.find_iter(l) {
                        if mt.as_str().is_empty() {
                            continue;
                        }
                        let _ = write_line(
                            &mut o,
                            show_name,
                            &display,
                            number,
                            ln + 1,
                            ':',
                            mt.as_str(),
                        );
                    }
                } else {
                    let _ = write_line(&mut o, show_name, &display, number, ln + 1, ':', l);
                }
                last_printed = Some(ln);
                after_left = after;
            } else if after_left > 0 && !count && !list && !list_non {
                after_left -= 1;
                let _ = write_line(&mut o, show_name, &display, number, ln + 1, '-', l);
                last_printed = Some(ln);
            }
        }
        if count {
            if show_name {
                let _ = writeln!(o, "{display}:{n}");
            } else {
                let _ = writeln!(o, "{n}");
            }
        }
        if list && n > 0 {
            let _ = writeln!(o, "{display}");
        }
        if list_non && n == 0 {
            let _ = writeln!(o, "{display}");
        }
    }
    let _ = o.flush();
    if errors && !(quiet && any) {
        return 2;
    }
    if list_non {
        return 0;
    }
    if any {
        0
    } else {
        1
    }
}

fn write_line(
    o: &mut impl Write,
    show_name: bool,
    name: &str,
    number: bool,
    ln: usize,
    sep: char,
    text: &str,
) -> std::io::Result<()> {
    if show_name {
        write!(o, "{name}{sep}")?;
    }
    if number {
        write!(o, "{ln}{sep}")?;
    }
    writeln!(o, "{text}")
}

fn walk(dir: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        out.push(dir.to_string());
        return;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !crate::modes::is_store_name(&e.file_name()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let p = if dir.ends_with('/') {
            format!("{dir}{n}")
        } else {
            format!("{dir}/{n}")
        };
        let md = std::fs::symlink_metadata(&p);
        match md {
            Ok(m) if m.is_dir() => walk(&p, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------ sed

#[derive(Debug, Clone)]
enum Addr {
    Line(usize),
    Last,
    Re(Option<Regex>), // None: last regex
}

#[derive(Debug, Clone)]
enum Cmd {
    Block(usize), // index of matching `}`
    EndBlock,
    Subst {
        re: Option<Regex>,
        rep: Vec<RepPart>,
        global: bool,
        nth: usize,
        print: bool,
    },
    Translit(Vec<char>, Vec<char>),
    Delete,
    DeleteFirst,
    Print,
    PrintFirst,
    Next,
    NextAppend,
    Quit(i32),
    QuitSilent(i32),
    LineNo,
    Append(String),
    Insert(String),
    Change(String),
    Hold,
    HoldAppend,
    Get,
    GetAppend,
    Exchange,
    Label,
    Branch(String),
    BranchIf(String),
    BranchIfNot(String),
    Zap,
}

#[derive(Debug, Clone)]
enum RepPart {
    Lit(String),
    Group(usize),
}

#[derive(Debug, Clone)]
struct SedCmd {
    a1: Option<Addr>,
    a2: Option<Addr>,
    negate: bool,
    cmd: Cmd,
    label: String,
}

struct SedParser<'a> {
    c: Vec<char>,
    i: usize,
    extended: bool,
    icase_dummy: &'a (),
}

impl SedParser<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.i += 1;
        }
    }
    fn read_delimited(&mut self, delim: char) -> Result<String, String> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(format!(
                        "unterminated address regex or command (missing {delim})"
                    ))
                }
                Some('\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) if c == delim => {
                            s.push(c);
                            self.i += 1;
                        }
                        Some('n') => {
                            s.push('\n');
                            self.i += 1;
                        }
                        Some(c) => {
                            s.push('\\');
                            s.push(c);
                            self.i += 1;
                        }
                        None => return Err("trailing backslash".into()),
                    }
                }
                Some(c) if c == delim => {
                    self.i += 1;
                    return Ok(s);
                }
                Some('[') => {
                    // bracket expressions may contain the delimiter
                    let start = self.i;
                    let mut j = self.i + 1;
                    if self.c.get(j) == Some(&'^') {
                        j += 1;
                    }
                    if self.c.get(j) == Some(&']') {
                        j += 1;
                    }
                    while j < self.c.len() && self.c[j] != ']' && self.c[j] != '\n' {
                        j += 1;
                    }
                    if j < self.c.len() && self.c[j] == ']' {
                        s.extend(self.c[start..=j].iter());
                        self.i = j + 1;
                    } else {
                        s.push('[');
                        self.i += 1;
                    }
                }
                Some(c) => {
                    s.push(c);
                    self.i += 1;
                }
            }
        }
    }
    fn regex(&self, s: &str, icase: bool) -> Result<Option<Regex>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        let r = posix_to_regex(s, self.extended);
        RegexBuilder::new(&r)
            .case_insensitive(icase)
            .build()
            .map(Some)
            .map_err(|e| format!("invalid regex {s}: {e}"))
    }
    fn addr(&mut self) -> Result<Option<Addr>, String> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                let st = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let n: String = self.c[st..self.i].iter().collect();
                Ok(Some(Addr::Line(n.parse().unwrap_or(0))))
            }
            Some('$') => {
                self.i += 1;
                Ok(Some(Addr::Last))
            }
            Some('/') | Some('\\') => {
                let d = if self.peek() == Some('\\') {
                    self.i += 1;
                    let d = self.peek().ok_or("bad address")?;
                    self.i += 1;
                    d
                } else {
                    self.i += 1;
                    '/'
                };
                let s = self.read_delimited(d)?;
                let mut icase = false;
                if self.peek() == Some('I') {
                    icase = true;
                    self.i += 1;
                }
                Ok(Some(Addr::Re(self.regex(&s, icase)?)))
            }
            _ => Ok(None),
        }
    }
    fn text_arg(&mut self) -> String {
        // a\ text  |  a text (GNU one-liner)
        self.skip_ws();
        if self.peek() == Some('\\') {
            self.i += 1;
            if self.peek() == Some('\n') {
                self.i += 1;
            }
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            if c == '\\' {
                self.i += 1;
                match self.peek() {
                    Some('\n') => {
                        s.push('\n');
                        self.i += 1;
                        continue;
                    }
                    Some('t') => {
                        s.push('\t');
                        self.i += 1;
                        continue;
                    }
                    Some(c) => {
                        s.push(c);
                        self.i += 1;
                        continue;
                    }
                    None => break,
                }
            }
            s.push(c);
            self.i += 1;
        }
        s
    }
    fn label(&mut self) -> String {
        self.skip_ws();
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' || c == ';' {
                break;
            }
            s.push(c);
            self.i += 1;
        }
        s.trim().to_string()
    }
    fn parse(&mut self) -> Result<Vec<SedCmd>, String> {
        let mut cmds: Vec<SedCmd> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ') | Some('\t') | Some('\n') | Some(';')) {
                self.i += 1;
            }
            let Some(_) = self.peek() else { break };
            if self.peek() == Some('#') {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
                continue;
            }
            let a1 = self.addr()?;
            let mut a2 = None;
            if a1.is_some() && self.peek() == Some(',') {
                self.i += 1;
                a2 = self.addr()?;
                if a2.is_none() {
                    return Err("unexpected ','".into());
                }
            }
            self.skip_ws();
            let mut negate = false;
            while self.peek() == Some('!') {
                negate = true;
                self.i += 1;
                self.skip_ws();
            }
            let Some(c) = self.peek() else {
                return Err("missing command".into());
            };
            self.i += 1;
            let mut label = String::new();
            let cmd = match c {
                '{' => {
                    stack.push(cmds.len());
                    Cmd::Block(0)
                }
                '}' => {
                    let open = stack.pop().ok_or("unexpected '}'")?;
                    let idx = cmds.len();
                    cmds[open].cmd = Cmd::Block(idx);
                    Cmd::EndBlock
                }
                's' => {
                    let d = self.peek().ok_or("unterminated `s' command")?;
                    self.i += 1;
                    let pat = self.read_delimited(d)?;
                    let rep_raw = self.read_delimited(d)?;
                    let (mut global, mut nth, mut print, mut icase) = (false, 1usize, false, false);
                    loop {
                        match self.peek() {
                            Some('g') => global = true,
                            Some('p') => print = true,
                            Some('i') | Some('I') => icase = true,
                            Some(c) if c.is_ascii_digit() => {
                                let st = self.i;
                                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                                    self.i += 1;
                                }
                                nth = self.c[st..self.i]
                                    .iter()
                                    .collect::<String>()
                                    .parse()
                                    .unwrap_or(1)
                                    .max(1);
                                continue;
                            }
                            Some('w') => return Err("s///w: not supported".into()),
                            _ => break,
                        }
                        self.i += 1;
                    }
                    let re = self.regex(&pat, icase)?;
                    Cmd::Subst {
                        re,
                        rep: parse_rep(&rep_raw, self.extended),
                        global,
                        nth,
                        print,
                    }
                }
                'y' => {
                    let d = self.peek().ok_or("unterminated `y' command")?;
                    self.i += 1;
                    let a: Vec<char> = self
                        .read_delimited(d)?
                        .replace("\\\\", "\\")
                        .chars()
                        .collect();
                    let b: Vec<char> = self
                        .read_delimited(d)?
                        .replace("\\\\", "\\")
                        .chars()
                        .collect();
                    if a.len() != b.len() {
                        return Err("strings for `y' command are different lengths".into());
                    }
                    Cmd::Translit(a, b)
                }
                'd' => Cmd::Delete,
                'D' => Cmd::DeleteFirst,
                'p' => Cmd::Print,
                'P' => Cmd::PrintFirst,
                'n' => Cmd::Next,
                'N' => Cmd::NextAppend,
                'q' | 'Q' => {
                    self.skip_ws();
                    let st = self.i;
                    while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.i += 1;
                    }
                    let code = self.c[st..self.i]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .unwrap_or(0);
                    if c == 'q' {
                        Cmd::Quit(code)
                    } else {
                        Cmd::QuitSilent(code)
                    }
                }
                '=' => Cmd::LineNo,
                'a' => Cmd::Append(self.text_arg()),
                'i' => Cmd::Insert(self.text_arg()),
                'c' => Cmd::Change(self.text_arg()),
                'h' => Cmd::Hold,
                'H' => Cmd::HoldAppend,
                'g' => Cmd::Get,
                'G' => Cmd::GetAppend,
                'x' => Cmd::Exchange,
                'z' => Cmd::Zap,
                ':' => {
                    label = self.label();
                    Cmd::Label
                }
                'b' => Cmd::Branch(self.label()),
                't' => Cmd::BranchIf(self.label()),
                'T' => Cmd::BranchIfNot(self.label()),
                other => return Err(format!("{other}: unknown or unsupported command")),
            };
            cmds.push(SedCmd {
                a1,
                a2,
                negate,
                cmd,
                label,
            });
        }
        if !stack.is_empty() {
            return Err("unmatched `{'".into());
        }
        Ok(cmds)
    }
}

fn parse_rep(s: &str, _extended: bool) -> Vec<RepPart> {
    let c: Vec<char> = s.chars().collect();
    let mut v = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 < c.len() => {
                let n = c[i + 1];
                i += 2;
                if n.is_ascii_digit() {
                    if !lit.is_empty() {
                        v.push(RepPart::Lit(std::mem::take(&mut lit)));
                    }
                    v.push(RepPart::Group(n.to_digit(10).unwrap() as usize));
                } else {
                    lit.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                continue;
            }
            '&' => {
                if !lit.is_empty() {
                    v.push(RepPart::Lit(std::mem::take(&mut lit)));
                }
                v.push(RepPart::Group(0));
            }
            ch => lit.push(ch),
        }
        i += 1;
    }
    if !lit.is_empty() {
        v.push(RepPart::Lit(lit));
    }
    v
}

struct SedRun {
    cmds: Vec<SedCmd>,
    active: Vec<bool>,
    last_re: Option<Regex>,
    quiet: bool,
}

impl SedRun {
    fn re<'a>(&'a mut self, r: &'a Option<Regex>) -> Option<Regex> {
        match r {
            Some(r) => {
                self.last_re = Some(r.clone());
                Some(r.clone())
            }
            None => self.last_re.clone(),
        }
    }

    fn addr_match(&mut self, a: &Addr, ps: &str, ln: usize, last: bool) -> bool {
        match a {
            Addr::Line(n) => ln == *n,
            Addr::Last => last,
            Addr::Re(r) => match self.re(r) {
                Some(re) => re.is_match(ps),
                None => false,
            },
        }
    }

    fn selected(&mut self, idx: usize, ps: &str, ln: usize, last: bool) -> bool {
        let c = self.cmds[idx].clone();
        let m = match (&c.a1, &c.a2) {
            (None, _) => true,
            (Some(a1), None) => self.addr_match(a1, ps, ln, last),
            (Some(a1), Some(a2)) => {
                if self.active[idx] {
                    let end = match a2 {
                        Addr::Line(n) => ln >= *n,
                        _ => self.addr_match(a2, ps, ln, last),
                    };
                    if end {
                        self.active[idx] = false;
                    }
                    true
                } else if self.addr_match(a1, ps, ln, last) {
                    let end_now = match a2 {
                        Addr::Line(n) => *n <= ln,
                        _ => false,
                    };
                    self.active[idx] = !end_now;
                    true
                } else {
                    false
                }
            }
        };
        m != c.negate
    }

    /// Process a stream of lines; returns (output, quit status).
    fn run(
        &mut self,
        lines: &[String],
        ln_base: usize,
        is_last_stream: bool,
        out: &mut String,
    ) -> Option<i32> {
        let mut hold = String::new();
        let mut idx = 0;
        let n = lines.len();
        let mut ln = ln_base;
        while idx < n {
            let mut ps = lines[idx].clone();
            idx += 1;
            ln += 1;
            let mut append_q: Vec<String> = Vec::new();
            let mut pc = 0;
            let mut subst_flag = false;
            let mut deleted = false;
            let mut restart = false;
            while pc < self.cmds.len() {
                let last = idx == n && is_last_stream;
                let cmd = self.cmds[pc].cmd.clone();
                if matches!(cmd, Cmd::EndBlock | Cmd::Label) {
                    pc += 1;
                    continue;
                }
                if !self.selected(pc, &ps, ln, last) {
                    if let Cmd::Block(end) = cmd {
                        pc = end + 1;
                    } else {
                        pc += 1;
                    }
                    continue;
                }
                match cmd {
                    Cmd::Block(_) | Cmd::EndBlock | Cmd::Label => {}
                    Cmd::Subst {
                        re,
                        rep,
                        global,
                        nth,
                        print,
                    } => {
                        if let Some(re) = self.re(&re) {
                            let mut res = String::new();
                            let mut lastpos = 0;
                            let mut count = 0;
                            let mut did = false;
                            for caps in re.captures_iter(&ps) {
                                let m = caps.get(0).unwrap();
                                count += 1;
                                if count < nth || (did && !global) {
                                    continue;
                                }
                                res.push_str(&ps[lastpos..m.start()]);
                                for p in &rep {
                                    match p {
                                        RepPart::Lit(s) => res.push_str(s),
                                        RepPart::Group(g) => res.push_str(
                                            caps.get(*g).map(|x| x.as_str()).unwrap_or(""),
                                        ),
                                    }
                                }
                                lastpos = m.end();
                                did = true;
                            }
                            if did {
                                res.push_str(&ps[lastpos..]);
                                ps = res;
                                subst_flag = true;
                                if print {
                                    out.push_str(&ps);
                                    out.push('\n');
                                }
                            }
                        }
                    }
                    Cmd::Translit(a, b) => {
                        ps = ps
                            .chars()
                            .map(|c| a.iter().position(|&x| x == c).map(|i| b[i]).unwrap_or(c))
                            .collect();
                    }
                    Cmd::Delete => {
                        deleted = true;
                        break;
                    }
                    Cmd::DeleteFirst => {
                        if let Some(p) = ps.find('\n') {
                            ps = ps[p + 1..].to_string();
                            restart = true;
                        } else {
                            deleted = true;
                        }
                        break;
                    }
                    Cmd::Print => {
                        out.push_str(&ps);
                        out.push('\n');
                    }
                    Cmd::PrintFirst => {
                        out.push_str(ps.split('\n').next().unwrap_or(""));
                        out.push('\n');
                    }
                    Cmd::Next => {
                        if !self.quiet {
                            out.push_str(&ps);
                            out.push('\n');
                        }
                        for a in append_q.drain(..) {
                            out.push_str(&a);
                        }
                        if idx >= n {
                            deleted = true;
                            break;
                        }
                        ps = lines[idx].clone();
                        idx += 1;
                        ln += 1;
                    }
                    Cmd::NextAppend => {
                        if idx >= n {
                            break; // GNU: print pattern space and exit
                        }
                        ps.push('\n');
                        ps.push_str(&lines[idx]);
                        idx += 1;
                        ln += 1;
                    }
                    Cmd::Quit(code) => {
                        if !self.quiet {
                            out.push_str(&ps);
                            out.push('\n');
                        }
                        for a in append_q.drain(..) {
                            out.push_str(&a);
                        }
                        return Some(code);
                    }
                    Cmd::QuitSilent(code) => return Some(code),
                    Cmd::LineNo => out.push_str(&format!("{ln}\n")),
                    Cmd::Append(t) => append_q.push(format!("{t}\n")),
                    Cmd::Insert(t) => {
                        out.push_str(&t);
                        out.push('\n');
                    }
                    Cmd::Change(t) => {
                        let c = &self.cmds[pc];
                        let range_end = c.a2.is_none() || !self.active[pc];
                        if range_end {
                            out.push_str(&t);
                            out.push('\n');
                        }
                        deleted = true;
                        break;
                    }
                    Cmd::Hold => hold = ps.clone(),
                    Cmd::HoldAppend => {
                        hold.push('\n');
                        hold.push_str(&ps);
                    }
                    Cmd::Get => ps = hold.clone(),
                    Cmd::GetAppend => {
                        ps.push('\n');
                        ps.push_str(&hold);
                    }
                    Cmd::Exchange => std::mem::swap(&mut ps, &mut hold),
                    Cmd::Zap => ps.clear(),
                    Cmd::Branch(l) | Cmd::BranchIf(l) | Cmd::BranchIfNot(l) => {
                        let take = match &self.cmds[pc].cmd {
                            Cmd::Branch(_) => true,
                            Cmd::BranchIf(_) => std::mem::take(&mut subst_flag),
                            _ => !std::mem::take(&mut subst_flag),
                        };
                        if take {
                            if l.is_empty() {
                                pc = self.cmds.len();
                            } else {
                                match self
                                    .cmds
                                    .iter()
                                    .position(|c| matches!(c.cmd, Cmd::Label) && c.label == l)
                                {
                                    Some(p) => pc = p,
                                    None => pc = self.cmds.len(),
                                }
                            }
                            continue;
                        }
                    }
                }
                pc += 1;
            }
            let _ = restart;
            if !deleted && !self.quiet {
                out.push_str(&ps);
                out.push('\n');
            }
            for a in append_q {
                out.push_str(&a);
            }
        }
        None
    }
}

pub fn sed(args: &[String]) -> i32 {
    let mut quiet = false;
    let mut extended = false;
    let mut in_place: Option<String> = None;
    let mut scripts: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-n" | "--quiet" | "--silent" => quiet = true,
            "-E" | "-r" | "--regexp-extended" => extended = true,
            "-e" => {
                i += 1;
                scripts.push(args.get(i).cloned().unwrap_or_default());
            }
            "-f" => {
                i += 1;
                match std::fs::read_to_string(args.get(i).map(|s| s.as_str()).unwrap_or("")) {
                    Ok(s) => scripts.push(s),
                    Err(e) => {
                        eprintln!("sed: couldn't open file: {}", err_msg(&e));
                        return 1;
                    }
                }
            }
            "-s" | "-u" | "--posix" => {}
            "--" => {
                files.extend(args[i + 1..].iter().cloned());
                break;
            }
            s if s.starts_with("-i") => in_place = Some(s[2..].to_string()),
            s if s.starts_with("--in-place") => {
                in_place = Some(s.strip_prefix("--in-place=").unwrap_or("").to_string())
            }
            s if s.starts_with('-')
                && s.len() > 1
                && s[1..].chars().all(|c| "nErs".contains(c)) =>
            {
                for c in s[1..].chars() {
                    match c {
                        'n' => quiet = true,
                        'E' | 'r' => extended = true,
                        _ => {}
                    }
                }
            }
            s if s.starts_with('-') && s.len() > 1 => {
                eprintln!("sed: {s}: not supported");
                return 1;
            }
            _ => files.push(a.clone()),
        }
        i += 1;
    }
    if scripts.is_empty() {
        if files.is_empty() {
            eprintln!("Usage: sed [OPTION]... {{script-only-if-no-other-script}} [input-file]...");
            return 1;
        }
        scripts.push(files.remove(0));
    }
    let script = scripts.join("\n");
    let mut p = SedParser {
        c: script.chars().collect(),
        i: 0,
        extended,
        icase_dummy: &(),
    };
    let _ = p.icase_dummy;
    let cmds = match p.parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sed: -e expression #1: {e}");
            return 1;
        }
    };
    let n = cmds.len();
    let mut run = SedRun {
        cmds,
        active: vec![false; n],
        last_re: None,
        quiet,
    };
    if files.is_empty() {
        files.push("-".into());
    }
    let mut status = 0;
    let to_lines = |data: &[u8]| -> Vec<String> {
        let t = String::from_utf8_lossy(data);
        let mut v: Vec<String> = t.split('\n').map(|s| s.to_string()).collect();
        if t.ends_with('\n') || t.is_empty() {
            v.pop();
        }
        v
    };
    if let Some(suffix) = in_place {
        for f in &files {
            let data = match std::fs::read(f) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("sed: can't read {f}: {}", err_msg(&e));
                    status = 2;
                    continue;
                }
            };
            let mut out = String::new();
            run.active = vec![false; n];
            let q = run.run(&to_lines(&data), 0, true, &mut out);
            if !suffix.is_empty() {
                let _ = std::fs::write(format!("{f}{suffix}"), &data);
            }
            if let Err(e) = std::fs::write(f, out) {
                eprintln!("sed: couldn't write {f}: {}", err_msg(&e));
                status = 4;
            }
            if let Some(c) = q {
                return c;
            }
        }
        return status;
    }
    let mut all = Vec::new();
    for f in &files {
        match read_input(f) {
            Ok(d) => {
                let mut l = to_lines(&d);
                all.append(&mut l);
            }
            Err(e) => {
                eprintln!("sed: can't read {f}: {}", err_msg(&e));
                status = 2;
            }
        }
    }
    let mut out = String::new();
    let q = run.run(&all, 0, true, &mut out);
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    let _ = o.flush();
    q.unwrap_or(status)
}

// ------------------------------------------------------------------ find

#[derive(Debug)]
enum FExpr {
    True,
    Name(String, bool),
    Path(String),
    Type(char),
    Empty,
    Print,
    Print0,
    Delete,
    /// `-exec CMD … {} ;` (run per file) or `-exec CMD … {} +` (`batch`: the files collected
    /// and run once at the end).
    Exec {
        argv: Vec<String>,
        batch: Option<std::cell::RefCell<Vec<String>>>,
    },
    Not(Box<FExpr>),
    And(Box<FExpr>, Box<FExpr>),
    Or(Box<FExpr>, Box<FExpr>),
}

struct FParser<'a> {
    a: &'a [String],
    i: usize,
    has_action: bool,
    maxdepth: Option<usize>,
    mindepth: usize,
}

impl FParser<'_> {
    fn or(&mut self) -> Result<FExpr, String> {
        let mut l = self.and()?;
        while matches!(
            self.a.get(self.i).map(|s| s.as_str()),
            Some("-o") | Some("-or")
        ) {
            self.i += 1;
            let r = self.and()?;
            l = FExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<FExpr, String> {
        let mut l = self.not()?;
        loop {
            match self.a.get(self.i).map(|s| s.as_str()) {
                Some("-a") | Some("-and") => {
                    self.i += 1;
                }
                Some("-o") | Some("-or") | Some(")") | None => break,
                _ => {}
            }
            let r = self.not()?;
            l = FExpr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<FExpr, String> {
        if matches!(
            self.a.get(self.i).map(|s| s.as_str()),
            Some("!") | Some("-not")
        ) {
            self.i += 1;
            return Ok(FExpr::Not(Box::new(self.not()?)));
        }
        self.prim()
    }
    fn arg(&mut self, what: &str) -> Result<String, String> {
        self.i += 1;
        self.a
            .get(self.i)
            .cloned()
            .ok_or_else(|| format!("missing argument to `{what}'"))
    }
    fn prim(&mut self) -> Result<FExpr, String> {
        let Some(t) = self.a.get(self.i).cloned() else {
            return Err("expected an expression".into());
        };
        let e = match t.as_str() {
            "(" => {
                self.i += 1;
                let e = self.or()?;
                if self.a.get(self.i).map(|s| s.as_str()) != Some(")") {
                    return Err("missing )".into());
                }
                e
            }
            "-name" => FExpr::Name(self.arg("-name")?, false),
            "-iname" => FExpr::Name(self.arg("-iname")?, true),
            "-path" | "-wholename" => FExpr::Path(self.arg("-path")?),
            "-type" => FExpr::Type(self.arg("-type")?.chars().next().unwrap_or('f')),
            "-empty" => FExpr::Empty,
            "-print" => {
                self.has_action = true;
                FExpr::Print
            }
            "-print0" => {
                self.has_action = true;
                FExpr::Print0
            }
            "-delete" => {
                self.has_action = true;
                FExpr::Delete
            }
            "-exec" => {
                self.has_action = true;
                let mut argv = Vec::new();
                let mut plus = false;
                loop {
                    self.i += 1;
                    match self.a.get(self.i).map(String::as_str) {
                        Some(";") => break,
                        Some("+") if argv.last().is_some_and(|a| a == "{}") => {
                            plus = true;
                            break;
                        }
                        Some(a) => argv.push(a.to_string()),
                        None => return Err("-exec: missing terminating ';' or '+'".into()),
                    }
                }
                if argv.is_empty() {
                    return Err("-exec: missing command".into());
                }
                if plus {
                    argv.pop();
                }
                FExpr::Exec {
                    argv,
                    batch: plus.then(|| std::cell::RefCell::new(Vec::new())),
                }
            }
            "-maxdepth" => {
                self.maxdepth = self.arg("-maxdepth")?.parse().ok();
                FExpr::True
            }
            "-mindepth" => {
                self.mindepth = self.arg("-mindepth")?.parse().unwrap_or(0);
                FExpr::True
            }
            "-true" => FExpr::True,
            "-false" => FExpr::Not(Box::new(FExpr::True)),
            other => return Err(format!("{other}: not supported")),
        };
        self.i += 1;
        Ok(e)
    }
}

fn feval(e: &FExpr, path: &str, md: &std::fs::Metadata, out: &mut String) -> bool {
    match e {
        FExpr::True => true,
        FExpr::Name(p, icase) => {
            let base = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(path);
            if *icase {
                simple_match(&p.to_lowercase(), &base.to_lowercase())
            } else {
                simple_match(p, base)
            }
        }
        FExpr::Path(p) => simple_match(p, path),
        FExpr::Type(c) => match c {
            'f' => md.is_file(),
            'd' => md.is_dir(),
            'l' => md.file_type().is_symlink(),
            _ => false,
        },
        FExpr::Empty => {
            if md.is_dir() {
                std::fs::read_dir(path)
                    .map(|mut r| {
                        r.all(|e| e.is_ok_and(|e| crate::modes::is_store_name(&e.file_name())))
                    })
                    .unwrap_or(false)
            } else {
                md.len() == 0
            }
        }
        FExpr::Print => {
            out.push_str(path);
            out.push('\n');
            true
        }
        FExpr::Print0 => {
            out.push_str(path);
            out.push('\0');
            true
        }
        FExpr::Delete => {
            if md.is_dir() {
                std::fs::remove_dir(path).is_ok()
            } else {
                std::fs::remove_file(path).is_ok()
            }
        }
        FExpr::Exec { argv, batch } => match batch {
            Some(b) => {
                b.borrow_mut().push(path.to_string());
                true
            }
            None => {
                let argv = argv.iter().map(|a| a.replace("{}", path)).collect();
                // what was found so far comes before the command's output
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(out.as_bytes());
                let _ = o.flush();
                out.clear();
                crate::applets::run_command(argv) == 0
            }
        },
        FExpr::Not(x) => !feval(x, path, md, out),
        FExpr::And(a, b) => feval(a, path, md, out) && feval(b, path, md, out),
        FExpr::Or(a, b) => feval(a, path, md, out) || feval(b, path, md, out),
    }
}

pub fn find(args: &[String]) -> i32 {
    let mut roots = Vec::new();
    let mut i = 0;
    while i < args.len() && !args[i].starts_with('-') && args[i] != "(" && args[i] != "!" {
        roots.push(args[i].clone());
        i += 1;
    }
    if roots.is_empty() {
        roots.push(".".into());
    }
    let rest = &args[i..];
    let mut p = FParser {
        a: rest,
        i: 0,
        has_action: false,
        maxdepth: None,
        mindepth: 0,
    };
    let expr = if rest.is_empty() {
        FExpr::True
    } else {
        match p.or() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("find: {e}");
                return 1;
            }
        }
    };
    if p.i < rest.len() {
        eprintln!("find: unexpected `{}'", rest[p.i]);
        return 1;
    }
    let expr = if p.has_action {
        expr
    } else {
        FExpr::And(Box::new(expr), Box::new(FExpr::Print))
    };
    let stdout = std::io::stdout();
    /// One `find` walk: the expression, the depth bounds and where results go.
    struct Walk<'a, 'o> {
        expr: &'a FExpr,
        maxdepth: Option<usize>,
        mindepth: usize,
        out: String,
        o: std::io::StdoutLock<'o>,
        status: i32,
    }
    impl Walk<'_, '_> {
        fn visit(&mut self, path: &str, depth: usize) {
            let md = match std::fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(err) => {
                    let _ = self.o.write_all(self.out.as_bytes());
                    self.out.clear();
                    eprintln!("find: '{path}': {}", err_msg(&err));
                    self.status = 1;
                    return;
                }
            };
            let is_dir = md.is_dir();
            // children first if the expression deletes (like -depth); otherwise pre-order
            let deletes = format!("{:?}", self.expr).contains("Delete");
            if !deletes && depth >= self.mindepth {
                feval(self.expr, path, &md, &mut self.out);
            }
            if is_dir && self.maxdepth.is_none_or(|m| depth < m) {
                if let Ok(rd) = std::fs::read_dir(path) {
                    let mut names: Vec<String> = rd
                        .filter_map(|x| x.ok())
                        .filter(|x| !crate::modes::is_store_name(&x.file_name()))
                        .map(|x| x.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        let child = if path.ends_with('/') {
                            format!("{path}{n}")
                        } else {
                            format!("{path}/{n}")
                        };
                        self.visit(&child, depth + 1);
                    }
                }
            }
            if deletes && depth >= self.mindepth {
                feval(self.expr, path, &md, &mut self.out);
            }
            if self.out.len() > 8192 {
                let _ = self.o.write_all(self.out.as_bytes());
                self.out.clear();
            }
        }
    }
    let mut walk = Walk {
        expr: &expr,
        maxdepth: p.maxdepth,
        mindepth: p.mindepth,
        out: String::new(),
        o: stdout.lock(),
        status: 0,
    };
    for r in &roots {
        walk.visit(r, 0);
    }
    let _ = walk.o.write_all(walk.out.as_bytes());
    let _ = walk.o.flush();
    let mut status = walk.status;
    drop(walk);
    run_batches(&expr, &mut status);
    status
}

/// `-exec … {} +`: run each batch command once with every file it collected.
fn run_batches(e: &FExpr, status: &mut i32) {
    match e {
        FExpr::Exec {
            argv,
            batch: Some(b),
        } => {
            let files = std::mem::take(&mut *b.borrow_mut());
            if !files.is_empty() {
                let mut v = argv.clone();
                v.extend(files);
                if crate::applets::run_command(v) != 0 {
                    *status = 1;
                }
            }
        }
        FExpr::Not(x) => run_batches(x, status),
        FExpr::And(a, b) | FExpr::Or(a, b) => {
            run_batches(a, status);
            run_batches(b, status);
        }
        _ => {}
    }
}
