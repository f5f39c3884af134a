//! `awk`: a documented subset of POSIX awk for what scripts do with it — fields and records
//! (`-F`, `FS`, `OFS`, `NR`, `NF`, `$n`), `BEGIN`/`END`, regex and expression patterns,
//! `print`/`printf`, variables and associative arrays (`for (k in a)`, `delete`, `in`),
//! `if`/`while`/`for`, `next`/`exit`, arithmetic and string operators, `~`/`!~`, and the
//! functions `length substr index split sub gsub match sprintf tolower toupper int`.
//! Not supported: getline, output redirection, user-defined functions, range patterns.

use regex::Regex;
use std::collections::HashMap;
use std::io::Write;

pub fn awk(args: &[String]) -> i32 {
    let mut fs: Option<String> = None;
    let mut assigns = Vec::new();
    let mut i = 0;
    let mut prog_text = None;
    while i < args.len() {
        let a = &args[i];
        if a == "-F" {
            i += 1;
            fs = args.get(i).cloned();
        } else if let Some(f) = a.strip_prefix("-F") {
            fs = Some(f.to_string());
        } else if a == "-v" {
            i += 1;
            if let Some(v) = args.get(i) {
                assigns.push(v.clone());
            }
        } else if a == "--" {
            i += 1;
            break;
        } else {
            break;
        }
        i += 1;
    }
    if let Some(p) = args.get(i) {
        prog_text = Some(p.clone());
        i += 1;
    }
    let Some(src) = prog_text else {
        eprintln!("usage: awk [-F fs] [-v var=value] 'program' [file ...]");
        return 2;
    };
    let prog = match Parser::new(&src).program() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("awk: syntax error: {e}");
            return 2;
        }
    };
    let mut m = Machine::default();
    m.set_var(
        "FS",
        fs.map(|f| if f == "t" { "\t".into() } else { f })
            .unwrap_or(" ".into()),
    );
    m.set_var("OFS", " ".into());
    m.set_var("ORS", "\n".into());
    m.set_var("SUBSEP", "\x1c".into());
    for a in assigns {
        if let Some((k, v)) = a.split_once('=') {
            m.set_var(k, unescape(v));
        }
    }
    let mut inputs: Vec<String> = args[i..].to_vec();
    let st = m.run(&prog, &mut inputs);
    let _ = m.out.flush();
    st
}

fn unescape(s: &str) -> String {
    crate::builtins::echo_escapes(s, false, true).0
}

// ---------------------------------------------------------------- syntax

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    Regex(String),
    Field(Box<Expr>),
    Var(String),
    Index(String, Vec<Expr>),
    Assign(Box<Expr>, String, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Bin(String, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Incr(Box<Expr>, f64, bool),
    Call(String, Vec<Expr>),
    In(Vec<Expr>, String),
    Concat(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Print(Vec<Expr>),
    Printf(Vec<Expr>),
    Expr(Expr),
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    While(Expr, Box<Stmt>),
    For(Option<Expr>, Option<Expr>, Option<Expr>, Box<Stmt>),
    ForIn(String, String, Box<Stmt>),
    Block(Vec<Stmt>),
    Delete(String, Option<Vec<Expr>>),
    Next,
    Exit(Option<Expr>),
    Break,
    Continue,
}

#[derive(Debug, Default)]
struct Program {
    begin: Vec<Stmt>,
    rules: Vec<(Option<Expr>, Option<Vec<Stmt>>)>,
    end: Vec<Stmt>,
}

struct Parser {
    c: Vec<char>,
    p: usize,
}

type PR<T> = Result<T, String>;

impl Parser {
    fn new(s: &str) -> Parser {
        Parser {
            c: s.chars().collect(),
            p: 0,
        }
    }
    fn skip_ws(&mut self, newlines: bool) {
        while let Some(&ch) = self.c.get(self.p) {
            if ch == ' ' || ch == '\t' || (newlines && (ch == '\n' || ch == ';')) {
                self.p += 1;
            } else if ch == '\\' && self.c.get(self.p + 1) == Some(&'\n') {
                self.p += 2;
            } else if ch == '#' {
                while self.c.get(self.p).is_some_and(|c| *c != '\n') {
                    self.p += 1;
                }
            } else {
                break;
            }
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip_ws(false);
        self.c.get(self.p).copied()
    }
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws(false);
        let n = s.chars().count();
        if self.c[self.p.min(self.c.len())..].starts_with(&s.chars().collect::<Vec<_>>()) {
            // keywords must not run into a name
            let last_alpha = s.chars().last().is_some_and(|c| c.is_alphabetic());
            if last_alpha
                && self
                    .c
                    .get(self.p + n)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
            {
                return false;
            }
            self.p += n;
            return true;
        }
        false
    }
    fn expect(&mut self, s: &str) -> PR<()> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(format!("expected `{s}' at {}", self.p))
        }
    }
    fn name(&mut self) -> Option<String> {
        self.skip_ws(false);
        let st = self.p;
        while self
            .c
            .get(self.p)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            self.p += 1;
        }
        (self.p > st && !self.c[st].is_ascii_digit()).then(|| self.c[st..self.p].iter().collect())
    }

    fn program(&mut self) -> PR<Program> {
        let mut prog = Program::default();
        loop {
            self.skip_ws(true);
            if self.p >= self.c.len() {
                return Ok(prog);
            }
            if self.eat("BEGIN") {
                prog.begin.extend(self.block()?);
            } else if self.eat("END") {
                prog.end.extend(self.block()?);
            } else {
                let pat = if self.peek() == Some('{') {
                    None
                } else {
                    Some(self.expr()?)
                };
                let action = if self.peek() == Some('{') {
                    Some(self.block()?)
                } else {
                    None
                };
                prog.rules.push((pat, action));
            }
        }
    }

    fn block(&mut self) -> PR<Vec<Stmt>> {
        self.skip_ws(true);
        self.expect("{")?;
        let mut v = Vec::new();
        loop {
            self.skip_ws(true);
            if self.eat("}") {
                return Ok(v);
            }
            if self.p >= self.c.len() {
                return Err("missing }".into());
            }
            v.push(self.stmt()?);
        }
    }

    fn simple_or_block(&mut self) -> PR<Stmt> {
        self.skip_ws(true);
        if self.peek() == Some('{') {
            Ok(Stmt::Block(self.block()?))
        } else {
            self.stmt()
        }
    }

    fn stmt(&mut self) -> PR<Stmt> {
        self.skip_ws(false);
        if self.peek() == Some('{') {
            return Ok(Stmt::Block(self.block()?));
        }
        if self.eat("if") {
            self.expect("(")?;
            let c = self.expr()?;
            self.expect(")")?;
            let t = self.simple_or_block()?;
            let save = self.p;
            self.skip_ws(true);
            if self.eat("else") {
                let e = self.simple_or_block()?;
                return Ok(Stmt::If(c, Box::new(t), Some(Box::new(e))));
            }
            self.p = save;
            return Ok(Stmt::If(c, Box::new(t), None));
        }
        if self.eat("while") {
            self.expect("(")?;
            let c = self.expr()?;
            self.expect(")")?;
            return Ok(Stmt::While(c, Box::new(self.simple_or_block()?)));
        }
        if self.eat("for") {
            self.expect("(")?;
            let save = self.p;
            if let Some(v) = self.name() {
                if self.eat("in") {
                    let arr = self.name().ok_or("expected an array name")?;
                    self.expect(")")?;
                    return Ok(Stmt::ForIn(v, arr, Box::new(self.simple_or_block()?)));
                }
            }
            self.p = save;
            let init = if self.peek() == Some(';') {
                None
            } else {
                Some(self.expr()?)
            };
            self.expect(";")?;
            let cond = if self.peek() == Some(';') {
                None
            } else {
                Some(self.expr()?)
            };
            self.expect(";")?;
            let step = if self.peek() == Some(')') {
                None
            } else {
                Some(self.expr()?)
            };
            self.expect(")")?;
            return Ok(Stmt::For(
                init,
                cond,
                step,
                Box::new(self.simple_or_block()?),
            ));
        }
        let s = if self.eat("printf") {
            Stmt::Printf(self.expr_list()?)
        } else if self.eat("print") {
            Stmt::Print(self.expr_list()?)
        } else if self.eat("next") {
            Stmt::Next
        } else if self.eat("exit") {
            let e = match self.peek() {
                None | Some(';') | Some('\n') | Some('}') => None,
                _ => Some(self.expr()?),
            };
            Stmt::Exit(e)
        } else if self.eat("break") {
            Stmt::Break
        } else if self.eat("continue") {
            Stmt::Continue
        } else if self.eat("delete") {
            let n = self.name().ok_or("expected an array name")?;
            let idx = if self.eat("[") {
                let v = self.expr_list()?;
                self.expect("]")?;
                Some(v)
            } else {
                None
            };
            Stmt::Delete(n, idx)
        } else {
            Stmt::Expr(self.expr()?)
        };
        self.skip_ws(false);
        if matches!(self.peek(), Some(';') | Some('\n')) {
            self.p += 1;
        }
        Ok(s)
    }

    fn expr_list(&mut self) -> PR<Vec<Expr>> {
        let mut v = Vec::new();
        let paren = {
            let save = self.p;
            if self.eat("(") {
                // print (a, b): a parenthesised list
                let mut l = vec![self.expr()?];
                while self.eat(",") {
                    l.push(self.expr()?);
                }
                if self.eat(")") && matches!(self.peek(), None | Some(';') | Some('\n') | Some('}'))
                {
                    return Ok(l);
                }
                self.p = save;
            }
            false
        };
        let _ = paren;
        if matches!(
            self.peek(),
            None | Some(';') | Some('\n') | Some('}') | Some(']')
        ) {
            return Ok(v);
        }
        v.push(self.expr()?);
        while self.eat(",") {
            self.skip_ws(true);
            v.push(self.expr()?);
        }
        Ok(v)
    }

    fn expr(&mut self) -> PR<Expr> {
        self.ternary()
    }
    fn ternary(&mut self) -> PR<Expr> {
        let c = self.or()?;
        if self.eat("?") {
            let a = self.ternary()?;
            self.expect(":")?;
            let b = self.ternary()?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        // assignment (lvalue only)
        if matches!(c, Expr::Var(_) | Expr::Index(..) | Expr::Field(_)) {
            for op in ["+=", "-=", "*=", "/=", "%=", "^="] {
                if self.eat(op) {
                    let r = self.ternary()?;
                    return Ok(Expr::Assign(Box::new(c), op[..1].into(), Box::new(r)));
                }
            }
            self.skip_ws(false);
            if self.c.get(self.p) == Some(&'=') && self.c.get(self.p + 1) != Some(&'=') {
                self.p += 1;
                let r = self.ternary()?;
                return Ok(Expr::Assign(Box::new(c), String::new(), Box::new(r)));
            }
        }
        Ok(c)
    }
    fn or(&mut self) -> PR<Expr> {
        let mut l = self.and()?;
        while self.eat("||") {
            self.skip_ws(true);
            l = Expr::Bin("||".into(), Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> PR<Expr> {
        let mut l = self.in_expr()?;
        while self.eat("&&") {
            self.skip_ws(true);
            l = Expr::Bin("&&".into(), Box::new(l), Box::new(self.in_expr()?));
        }
        Ok(l)
    }
    fn in_expr(&mut self) -> PR<Expr> {
        let l = self.matching()?;
        if self.eat("in") {
            let arr = self.name().ok_or("expected an array name")?;
            return Ok(Expr::In(vec![l], arr));
        }
        Ok(l)
    }
    fn matching(&mut self) -> PR<Expr> {
        let mut l = self.compare()?;
        loop {
            let op = if self.eat("!~") {
                "!~"
            } else if self.peek() == Some('~') {
                self.p += 1;
                "~"
            } else {
                return Ok(l);
            };
            l = Expr::Bin(op.into(), Box::new(l), Box::new(self.compare()?));
        }
    }
    fn compare(&mut self) -> PR<Expr> {
        let l = self.concat()?;
        for op in ["<=", ">=", "==", "!=", "<", ">"] {
            if self.eat(op) {
                return Ok(Expr::Bin(op.into(), Box::new(l), Box::new(self.concat()?)));
            }
        }
        Ok(l)
    }
    fn concat(&mut self) -> PR<Expr> {
        let mut l = self.additive()?;
        loop {
            let next_digit = self.c.get(self.p + 1).is_some_and(|d| d.is_ascii_digit());
            let starts_operand = match self.peek() {
                Some(c) => {
                    matches!(c, '$' | '"' | '(' | '_')
                        || c.is_alphanumeric()
                        || (c == '.' && next_digit)
                }
                None => false,
            };
            let save = self.p;
            if starts_operand && !self.eat("in") {
                self.p = save;
                l = Expr::Concat(Box::new(l), Box::new(self.additive()?));
            } else {
                self.p = save;
                return Ok(l);
            }
        }
    }
    fn additive(&mut self) -> PR<Expr> {
        let mut l = self.mult()?;
        loop {
            self.skip_ws(false);
            let c = self.c.get(self.p).copied();
            let n = self.c.get(self.p + 1).copied();
            match c {
                Some(op @ ('+' | '-')) if n != Some('=') && n != Some(op) => {
                    self.p += 1;
                    l = Expr::Bin(op.to_string(), Box::new(l), Box::new(self.mult()?));
                }
                _ => return Ok(l),
            }
        }
    }
    fn mult(&mut self) -> PR<Expr> {
        let mut l = self.unary()?;
        loop {
            self.skip_ws(false);
            let c = self.c.get(self.p).copied();
            let n = self.c.get(self.p + 1).copied();
            match c {
                Some(op @ ('*' | '/' | '%')) if n != Some('=') => {
                    self.p += 1;
                    l = Expr::Bin(op.to_string(), Box::new(l), Box::new(self.unary()?));
                }
                _ => return Ok(l),
            }
        }
    }
    fn unary(&mut self) -> PR<Expr> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.skip_ws(false);
        if self.c.get(self.p) == Some(&'-') && self.c.get(self.p + 1) != Some(&'-') {
            self.p += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.c.get(self.p) == Some(&'+') && self.c.get(self.p + 1) != Some(&'+') {
            self.p += 1;
            return self.unary();
        }
        self.power()
    }
    fn power(&mut self) -> PR<Expr> {
        let b = self.postfix()?;
        if self.eat("^") || self.eat("**") {
            return Ok(Expr::Bin("^".into(), Box::new(b), Box::new(self.unary()?)));
        }
        Ok(b)
    }
    fn postfix(&mut self) -> PR<Expr> {
        if self.eat("++") {
            return Ok(Expr::Incr(Box::new(self.primary()?), 1.0, true));
        }
        if self.eat("--") {
            return Ok(Expr::Incr(Box::new(self.primary()?), -1.0, true));
        }
        let e = self.primary()?;
        if matches!(e, Expr::Var(_) | Expr::Index(..) | Expr::Field(_)) {
            if self.eat("++") {
                return Ok(Expr::Incr(Box::new(e), 1.0, false));
            }
            if self.eat("--") {
                return Ok(Expr::Incr(Box::new(e), -1.0, false));
            }
        }
        Ok(e)
    }
    fn primary(&mut self) -> PR<Expr> {
        let Some(c) = self.peek() else {
            return Err("unexpected end of program".into());
        };
        if c == '$' {
            self.p += 1;
            return Ok(Expr::Field(Box::new(self.postfix_primary()?)));
        }
        if c == '(' {
            self.p += 1;
            let e = self.expr()?;
            if self.eat(",") {
                // (a, b) in arr
                let mut keys = vec![e];
                keys.push(self.expr()?);
                while self.eat(",") {
                    keys.push(self.expr()?);
                }
                self.expect(")")?;
                self.expect("in")?;
                let arr = self.name().ok_or("expected an array name")?;
                return Ok(Expr::In(keys, arr));
            }
            self.expect(")")?;
            return Ok(e);
        }
        if c == '"' {
            self.p += 1;
            let mut s = String::new();
            while let Some(&ch) = self.c.get(self.p) {
                self.p += 1;
                match ch {
                    '"' => return Ok(Expr::Str(unescape(&s))),
                    '\\' => {
                        if let Some(&n) = self.c.get(self.p) {
                            self.p += 1;
                            if n == '"' || n == '/' {
                                s.push(n);
                            } else {
                                s.push('\\');
                                s.push(n);
                            }
                        }
                    }
                    _ => s.push(ch),
                }
            }
            return Err("unterminated string".into());
        }
        if c == '/' {
            self.p += 1;
            let mut s = String::new();
            while let Some(&ch) = self.c.get(self.p) {
                self.p += 1;
                match ch {
                    '/' => return Ok(Expr::Regex(s)),
                    '\\' if self.c.get(self.p) == Some(&'/') => {
                        s.push('/');
                        self.p += 1;
                    }
                    _ => s.push(ch),
                }
            }
            return Err("unterminated regex".into());
        }
        if c.is_ascii_digit() || c == '.' {
            let st = self.p;
            while self
                .c
                .get(self.p)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                self.p += 1;
            }
            let t: String = self.c[st..self.p].iter().collect();
            let v = if let Some(h) = t.strip_prefix("0x") {
                i64::from_str_radix(h, 16).map(|v| v as f64).ok()
            } else {
                t.parse().ok()
            };
            return v.map(Expr::Num).ok_or(format!("bad number {t}"));
        }
        let Some(n) = self.name() else {
            return Err(format!("unexpected `{c}'"));
        };
        if self.c.get(self.p) == Some(&'(') {
            self.p += 1;
            let mut a = Vec::new();
            if !self.eat(")") {
                a.push(self.expr()?);
                while self.eat(",") {
                    a.push(self.expr()?);
                }
                self.expect(")")?;
            }
            return Ok(Expr::Call(n, a));
        }
        if matches!(n.as_str(), "length") {
            return Ok(Expr::Call(n, Vec::new()));
        }
        if self.c.get(self.p) == Some(&'[') {
            self.p += 1;
            let mut k = vec![self.expr()?];
            while self.eat(",") {
                k.push(self.expr()?);
            }
            self.expect("]")?;
            return Ok(Expr::Index(n, k));
        }
        Ok(Expr::Var(n))
    }
    /// After `$`: a number, a name or a parenthesised expression (no concatenation).
    fn postfix_primary(&mut self) -> PR<Expr> {
        if self.eat("++") || self.eat("--") {
            return Err("$++ not supported".into());
        }
        self.primary()
    }
}

// ---------------------------------------------------------------- running

enum Flow {
    Next,
    Exit(i32),
    Break,
    Continue,
}

#[derive(Default)]
struct Machine {
    vars: HashMap<String, String>,
    arrays: HashMap<String, HashMap<String, String>>,
    fields: Vec<String>,
    record: String,
    nr: usize,
    out: Vec<u8>,
    regexes: HashMap<String, Option<Regex>>,
}

fn num(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    let b = t.as_bytes();
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_e = false;
    while end < b.len() {
        let c = b[end];
        if c.is_ascii_digit() {
            seen_digit = true;
        } else if (c == b'+' || c == b'-')
            && (end == 0 || (seen_e && matches!(b[end - 1], b'e' | b'E')))
        {
        } else if c == b'.' && !seen_dot && !seen_e {
            seen_dot = true;
        } else if (c == b'e' || c == b'E') && seen_digit && !seen_e {
            seen_e = true;
        } else {
            break;
        }
        end += 1;
    }
    t[..end].parse().unwrap_or(0.0)
}

fn looks_numeric(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && t.parse::<f64>().is_ok()
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e16 {
        format!("{}", v as i64)
    } else {
        let (s, _) = crate::builtins::printf("%.6g", &[v.to_string()]);
        s
    }
}

impl Machine {
    fn set_var(&mut self, k: &str, v: String) {
        if k == "NF" {
            let n = num(&v) as usize;
            self.fields.resize(n, String::new());
            self.rebuild();
            return;
        }
        self.vars.insert(k.to_string(), v);
    }
    fn var(&self, k: &str) -> String {
        match k {
            "NR" | "FNR" => self.nr.to_string(),
            "NF" => self.fields.len().to_string(),
            _ => self.vars.get(k).cloned().unwrap_or_default(),
        }
    }
    fn regex(&mut self, re: &str) -> Option<Regex> {
        if !self.regexes.contains_key(re) {
            let r = Regex::new(&crate::text::posix_to_regex(re, true)).ok();
            self.regexes.insert(re.to_string(), r);
        }
        self.regexes.get(re).cloned().flatten()
    }
    fn split_record(&mut self) {
        let fs = self.var("FS");
        self.fields = split(&self.record.clone(), &fs, self);
    }
    fn rebuild(&mut self) {
        self.record = self.fields.join(&self.var("OFS"));
    }
    fn field(&self, i: usize) -> String {
        if i == 0 {
            self.record.clone()
        } else {
            self.fields.get(i - 1).cloned().unwrap_or_default()
        }
    }
    fn key(&mut self, k: &[Expr]) -> Result<String, Flow> {
        let mut parts = Vec::new();
        for e in k {
            parts.push(self.eval(e)?);
        }
        Ok(parts.join(&self.var("SUBSEP")))
    }
    fn assign(&mut self, lv: &Expr, v: String) -> Result<(), Flow> {
        match lv {
            Expr::Var(n) => self.set_var(n, v),
            Expr::Index(n, k) => {
                let k = self.key(k)?;
                self.arrays.entry(n.clone()).or_default().insert(k, v);
            }
            Expr::Field(i) => {
                let i = num(&self.eval(i)?) as usize;
                if i == 0 {
                    self.record = v;
                    self.split_record();
                } else {
                    if self.fields.len() < i {
                        self.fields.resize(i, String::new());
                    }
                    self.fields[i - 1] = v;
                    self.rebuild();
                }
            }
            _ => {}
        }
        Ok(())
    }
    fn truth(&mut self, e: &Expr) -> Result<bool, Flow> {
        if let Expr::Regex(r) = e {
            let rec = self.record.clone();
            return Ok(self.regex(r).is_some_and(|re| re.is_match(&rec)));
        }
        let v = self.eval(e)?;
        Ok(match e {
            Expr::Str(_) | Expr::Concat(..) => !v.is_empty(),
            Expr::Num(_) | Expr::Bin(..) | Expr::Not(_) | Expr::Neg(_) | Expr::In(..) => {
                num(&v) != 0.0
            }
            _ => {
                if looks_numeric(&v) {
                    num(&v) != 0.0
                } else {
                    !v.is_empty()
                }
            }
        })
    }

    fn eval(&mut self, e: &Expr) -> Result<String, Flow> {
        Ok(match e {
            Expr::Num(n) => fmt_num(*n),
            Expr::Str(s) => s.clone(),
            Expr::Regex(_) => (self.truth(e)? as i32).to_string(),
            Expr::Field(i) => {
                let i = num(&self.eval(i)?) as usize;
                self.field(i)
            }
            Expr::Var(n) => self.var(n),
            Expr::Index(n, k) => {
                let k = self.key(k)?;
                self.arrays
                    .entry(n.clone())
                    .or_default()
                    .entry(k)
                    .or_default()
                    .clone()
            }
            Expr::Assign(lv, op, r) => {
                let rv = self.eval(r)?;
                let v = if op.is_empty() {
                    rv
                } else {
                    let cur = num(&self.eval(lv)?);
                    fmt_num(arith(op, cur, num(&rv)))
                };
                self.assign(lv, v.clone())?;
                v
            }
            Expr::Cond(c, a, b) => {
                if self.truth(c)? {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::Not(x) => ((!self.truth(x)?) as i32).to_string(),
            Expr::Neg(x) => fmt_num(-num(&self.eval(x)?)),
            Expr::Incr(lv, d, pre) => {
                let cur = num(&self.eval(lv)?);
                self.assign(lv, fmt_num(cur + d))?;
                fmt_num(if *pre { cur + d } else { cur })
            }
            Expr::In(k, arr) => {
                let k = self.key(k)?;
                (self.arrays.get(arr).is_some_and(|a| a.contains_key(&k)) as i32).to_string()
            }
            Expr::Concat(a, b) => self.eval(a)? + &self.eval(b)?,
            Expr::Bin(op, a, b) => match op.as_str() {
                "&&" => ((self.truth(a)? && self.truth(b)?) as i32).to_string(),
                "||" => ((self.truth(a)? || self.truth(b)?) as i32).to_string(),
                "~" | "!~" => {
                    let s = self.eval(a)?;
                    let re = match &**b {
                        Expr::Regex(r) => r.clone(),
                        other => self.eval(other)?,
                    };
                    let m = self.regex(&re).is_some_and(|r| r.is_match(&s));
                    ((m == (op == "~")) as i32).to_string()
                }
                "<" | "<=" | ">" | ">=" | "==" | "!=" => {
                    let x = self.eval(a)?;
                    let y = self.eval(b)?;
                    let numeric = |e: &Expr, v: &str| match e {
                        Expr::Str(_) | Expr::Concat(..) => false,
                        Expr::Num(_) => true,
                        _ => looks_numeric(v),
                    };
                    let ord = if numeric(a, &x) && numeric(b, &y) {
                        num(&x)
                            .partial_cmp(&num(&y))
                            .unwrap_or(std::cmp::Ordering::Equal)
                    } else {
                        x.cmp(&y)
                    };
                    use std::cmp::Ordering::*;
                    let r = match op.as_str() {
                        "<" => ord == Less,
                        "<=" => ord != Greater,
                        ">" => ord == Greater,
                        ">=" => ord != Less,
                        "==" => ord == Equal,
                        _ => ord != Equal,
                    };
                    (r as i32).to_string()
                }
                _ => {
                    let x = num(&self.eval(a)?);
                    let y = num(&self.eval(b)?);
                    fmt_num(arith(op, x, y))
                }
            },
            Expr::Call(f, args) => self.call(f, args)?,
        })
    }

    fn call(&mut self, f: &str, args: &[Expr]) -> Result<String, Flow> {
        let mut v = Vec::new();
        let arg = |m: &mut Machine, i: usize| -> Result<String, Flow> {
            match args.get(i) {
                Some(e) => m.eval(e),
                None => Ok(String::new()),
            }
        };
        Ok(match f {
            "length" => match args.first() {
                Some(Expr::Var(n)) if self.arrays.contains_key(n) => {
                    self.arrays[n].len().to_string()
                }
                Some(e) => self.eval(e)?.chars().count().to_string(),
                None => self.record.chars().count().to_string(),
            },
            "substr" => {
                let s: Vec<char> = arg(self, 0)?.chars().collect();
                let start = num(&arg(self, 1)?).round() as i64;
                let len = if args.len() > 2 {
                    num(&arg(self, 2)?).round() as i64
                } else {
                    s.len() as i64 + 1
                };
                let from = start.max(1);
                let to = (start + len).min(s.len() as i64 + 1);
                if to <= from {
                    String::new()
                } else {
                    s[(from - 1) as usize..(to - 1) as usize].iter().collect()
                }
            }
            "index" => {
                let s = arg(self, 0)?;
                let t = arg(self, 1)?;
                s.find(&t)
                    .map(|i| s[..i].chars().count() + 1)
                    .unwrap_or(0)
                    .to_string()
            }
            "split" => {
                let s = arg(self, 0)?;
                let Some(Expr::Var(arr)) = args.get(1) else {
                    return Ok("0".into());
                };
                let fs = if args.len() > 2 {
                    match &args[2] {
                        Expr::Regex(r) => r.clone(),
                        e => self.eval(e)?,
                    }
                } else {
                    self.var("FS")
                };
                let parts = split(&s, &fs, self);
                let n = parts.len();
                let a = self.arrays.entry(arr.clone()).or_default();
                a.clear();
                for (i, p) in parts.into_iter().enumerate() {
                    a.insert((i + 1).to_string(), p);
                }
                n.to_string()
            }
            "sub" | "gsub" => {
                let re = match args.first() {
                    Some(Expr::Regex(r)) => r.clone(),
                    Some(e) => self.eval(e)?,
                    None => String::new(),
                };
                let rep = arg(self, 1)?;
                let target = args
                    .get(2)
                    .cloned()
                    .unwrap_or(Expr::Field(Box::new(Expr::Num(0.0))));
                let s = self.eval(&target)?;
                let Some(r) = self.regex(&re) else {
                    return Ok("0".into());
                };
                let mut count = 0;
                let limit = if f == "sub" { 1 } else { usize::MAX };
                let out = r
                    .replacen(&s, limit, |c: &regex::Captures| {
                        count += 1;
                        let m = c.get(0).map(|m| m.as_str()).unwrap_or("");
                        let mut o = String::new();
                        let mut it = rep.chars().peekable();
                        while let Some(ch) = it.next() {
                            match ch {
                                '\\' if it.peek() == Some(&'&') => {
                                    it.next();
                                    o.push('&');
                                }
                                '&' => o.push_str(m),
                                _ => o.push(ch),
                            }
                        }
                        o
                    })
                    .into_owned();
                self.assign(&target, out)?;
                count.to_string()
            }
            "match" => {
                let s = arg(self, 0)?;
                let re = match args.get(1) {
                    Some(Expr::Regex(r)) => r.clone(),
                    Some(e) => self.eval(e)?,
                    None => String::new(),
                };
                let (start, len) = match self.regex(&re).and_then(|r| r.find(&s)) {
                    Some(m) => (
                        s[..m.start()].chars().count() as i64 + 1,
                        m.as_str().chars().count() as i64,
                    ),
                    None => (0, -1),
                };
                self.vars.insert("RSTART".into(), start.to_string());
                self.vars.insert("RLENGTH".into(), len.to_string());
                start.to_string()
            }
            "sprintf" => {
                for i in 0..args.len() {
                    v.push(arg(self, i)?);
                }
                let Some((fmt, rest)) = v.split_first() else {
                    return Ok(String::new());
                };
                crate::builtins::printf(fmt, rest).0
            }
            "tolower" => arg(self, 0)?.to_lowercase(),
            "toupper" => arg(self, 0)?.to_uppercase(),
            "int" => fmt_num(num(&arg(self, 0)?).trunc()),
            "sqrt" => fmt_num(num(&arg(self, 0)?).sqrt()),
            "exp" => fmt_num(num(&arg(self, 0)?).exp()),
            "log" => fmt_num(num(&arg(self, 0)?).ln()),
            "sin" => fmt_num(num(&arg(self, 0)?).sin()),
            "cos" => fmt_num(num(&arg(self, 0)?).cos()),
            "atan2" => fmt_num(num(&arg(self, 0)?).atan2(num(&arg(self, 1)?))),
            "rand" => "0.5".into(),
            "srand" | "system" | "close" | "fflush" => "0".into(),
            other => {
                eprintln!("awk: {other}(): not supported");
                return Err(Flow::Exit(2));
            }
        })
    }

    fn exec(&mut self, s: &Stmt) -> Result<(), Flow> {
        match s {
            Stmt::Print(es) => {
                let line = if es.is_empty() {
                    self.record.clone()
                } else {
                    let mut v = Vec::new();
                    for e in es {
                        v.push(self.eval(e)?);
                    }
                    v.join(&self.var("OFS"))
                };
                let ors = self.var("ORS");
                self.out.extend_from_slice(line.as_bytes());
                self.out.extend_from_slice(ors.as_bytes());
                self.maybe_flush();
            }
            Stmt::Printf(es) => {
                let mut v = Vec::new();
                for e in es {
                    v.push(self.eval(e)?);
                }
                if let Some((fmt, rest)) = v.split_first() {
                    let (s, _) = crate::builtins::printf(fmt, rest);
                    self.out.extend_from_slice(&crate::bytes::encode(&s));
                    self.maybe_flush();
                }
            }
            Stmt::Expr(e) => {
                self.eval(e)?;
            }
            Stmt::If(c, t, e) => {
                if self.truth(c)? {
                    self.exec(t)?;
                } else if let Some(e) = e {
                    self.exec(e)?;
                }
            }
            Stmt::While(c, b) => {
                while self.truth(c)? {
                    match self.exec(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(f) => return Err(f),
                    }
                }
            }
            Stmt::For(i, c, st, b) => {
                if let Some(i) = i {
                    self.eval(i)?;
                }
                loop {
                    if let Some(c) = c {
                        if !self.truth(c)? {
                            break;
                        }
                    }
                    match self.exec(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(f) => return Err(f),
                    }
                    if let Some(st) = st {
                        self.eval(st)?;
                    }
                }
            }
            Stmt::ForIn(v, arr, b) => {
                let mut keys: Vec<String> = self
                    .arrays
                    .get(arr)
                    .map(|a| a.keys().cloned().collect())
                    .unwrap_or_default();
                keys.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                    _ => a.cmp(b),
                });
                for k in keys {
                    self.set_var(v, k);
                    match self.exec(b) {
                        Err(Flow::Break) => break,
                        Err(Flow::Continue) | Ok(()) => {}
                        Err(f) => return Err(f),
                    }
                }
            }
            Stmt::Block(v) => {
                for s in v {
                    self.exec(s)?;
                }
            }
            Stmt::Delete(n, k) => match k {
                Some(k) => {
                    let k = self.key(k)?;
                    if let Some(a) = self.arrays.get_mut(n) {
                        a.remove(&k);
                    }
                }
                None => {
                    self.arrays.remove(n);
                }
            },
            Stmt::Next => return Err(Flow::Next),
            Stmt::Exit(e) => {
                let st = match e {
                    Some(e) => num(&self.eval(e)?) as i32,
                    None => 0,
                };
                return Err(Flow::Exit(st));
            }
            Stmt::Break => return Err(Flow::Break),
            Stmt::Continue => return Err(Flow::Continue),
        }
        Ok(())
    }

    fn maybe_flush(&mut self) {
        if self.out.len() > 16 * 1024 {
            let _ = self.out.flush();
        }
    }

    fn run(&mut self, prog: &Program, inputs: &mut Vec<String>) -> i32 {
        let mut status = 0;
        let mut exiting = None;
        for s in &prog.begin {
            if let Err(Flow::Exit(n)) = self.exec(s) {
                exiting = Some(n);
                break;
            }
        }
        if exiting.is_none() && (!prog.rules.is_empty() || !prog.end.is_empty()) {
            if inputs
                .iter()
                .all(|a| a.contains('=') && !a.starts_with('='))
            {
                inputs.push("-".into());
            }
            'files: for f in inputs.iter() {
                if let Some((k, v)) = f.split_once('=') {
                    if k.chars().all(|c| c.is_alphanumeric() || c == '_') && !k.is_empty() {
                        self.set_var(k, unescape(v));
                        continue;
                    }
                }
                let mut data = Vec::new();
                let r = crate::vfs::read_all(f).map(|d| data = d);
                if let Err(e) = r {
                    eprintln!("awk: cannot open {f}: {}", crate::exec::io_err_msg(&e));
                    status = 2;
                    continue;
                }
                let text = crate::bytes::decode(&data);
                let mut lines: Vec<&str> = text.split('\n').collect();
                if lines.last() == Some(&"") {
                    lines.pop();
                }
                for line in lines {
                    self.nr += 1;
                    self.record = line.to_string();
                    self.split_record();
                    for (pat, action) in &prog.rules {
                        let hit = match pat {
                            None => true,
                            Some(p) => match self.truth(p) {
                                Ok(b) => b,
                                Err(Flow::Exit(n)) => {
                                    exiting = Some(n);
                                    break 'files;
                                }
                                Err(_) => false,
                            },
                        };
                        if !hit {
                            continue;
                        }
                        let r = match action {
                            None => self.exec(&Stmt::Print(Vec::new())),
                            Some(v) => v.iter().try_for_each(|s| self.exec(s)),
                        };
                        match r {
                            Err(Flow::Next) => break,
                            Err(Flow::Exit(n)) => {
                                exiting = Some(n);
                                break 'files;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        for s in &prog.end {
            if let Err(Flow::Exit(n)) = self.exec(s) {
                exiting = Some(n);
                break;
            }
        }
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(&self.out);
        let _ = o.flush();
        self.out.clear();
        exiting.unwrap_or(status)
    }
}

fn arith(op: &str, x: f64, y: f64) -> f64 {
    match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => {
            if y == 0.0 {
                0.0
            } else {
                x / y
            }
        }
        "%" => {
            if y == 0.0 {
                0.0
            } else {
                x % y
            }
        }
        "^" => x.powf(y),
        _ => 0.0,
    }
}

/// Split a record or string by FS: " " (default) splits on blank runs, one other character
/// splits on it, anything longer is a regular expression.
fn split(s: &str, fs: &str, m: &mut Machine) -> Vec<String> {
    if fs == " " {
        return s.split_whitespace().map(str::to_string).collect();
    }
    if s.is_empty() {
        return Vec::new();
    }
    let mut cs = fs.chars();
    if let (Some(c), None) = (cs.next(), cs.next()) {
        if c != '\\' {
            return s.split(c).map(str::to_string).collect();
        }
    }
    match m.regex(fs) {
        Some(r) => r.split(s).map(str::to_string).collect(),
        None => vec![s.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::Parser;

    #[test]
    fn parses_common_programs() {
        for p in [
            "{print $2}",
            "{s+=$1} END {print s}",
            "NR==2",
            "/foo/ {print NR\": \"$0}",
            "BEGIN{FS=\":\"} {a[$1]++} END{for(k in a) print k, a[k]}",
            "{ if ($1 > 1) print \"big\"; else print \"small\" }",
            "length($0) > 3 { n++ } END { printf \"%d\\n\", n }",
            "{ gsub(/a/, \"b\"); print toupper($0) }",
        ] {
            assert!(Parser::new(p).program().is_ok(), "{p}");
        }
    }
}
