//! Shell arithmetic (`$((…))`, `((…))`, `let`, subscripts, `declare -i`): a lexer and a
//! precedence-climbing evaluator over i64 with C semantics (wrapping), variables read and
//! assigned through the shell (array elements included).

use crate::exec::{Flow, Shell};

impl Shell {
    pub fn arith(&mut self, expr: &str) -> Result<i64, Flow> {
        let toks = match arith_lex(expr) {
            Ok(t) => t,
            Err(e) => {
                let m = format!("arithmetic expression: {e}: \"{}\"", expr.trim());
                self.errmsg(&m);
                return Err(Flow::Exit(self.expansion_error_status()));
            }
        };
        let mut p = Evaluator {
            toks,
            pos: 0,
            sh: self,
            depth: 0,
        };
        let r = p.expr(true);
        let r = match r {
            Ok(v) if p.pos == p.toks.len() => Ok(v),
            Ok(_) => Err("syntax error".to_string()),
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let m = format!("arithmetic expression: {e}: \"{}\"", expr.trim());
                self.errmsg(&m);
                Err(Flow::Exit(self.expansion_error_status()))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(i64),
    Name(String),
    Op(&'static str),
}

const OPERATORS: &[&str] = &[
    "<<=", ">>=", "**", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=", "/=",
    "%=", "&=", "^=", "|=", "++", "--", "+", "-", "*", "/", "%", "<", ">", "&", "^", "|", "!", "~",
    "?", ":", "=", "(", ")", ",",
];

fn arith_lex(s: &str) -> Result<Vec<Token>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut v = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch.is_ascii_digit() {
            let st = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '#') {
                i += 1;
            }
            let t: String = c[st..i].iter().collect();
            let n = parse_int(&t).ok_or_else(|| format!("bad number \"{t}\""))?;
            v.push(Token::Num(n));
            continue;
        }
        if ch.is_ascii_alphabetic() || ch == '_' {
            let st = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            if c.get(i) == Some(&'[') {
                // array element: the name keeps its `[subscript]`
                let mut depth = 0;
                while i < c.len() {
                    match c[i] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if depth != 0 {
                    return Err("missing `]'".into());
                }
            }
            v.push(Token::Name(c[st..i].iter().collect()));
            continue;
        }
        let mut found = false;
        for op in OPERATORS {
            let oc: Vec<char> = op.chars().collect();
            if c[i..].starts_with(&oc) {
                v.push(Token::Op(op));
                i += oc.len();
                found = true;
                break;
            }
        }
        if !found {
            return Err(format!("unexpected character '{ch}'"));
        }
    }
    Ok(v)
}

fn parse_int(t: &str) -> Option<i64> {
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    if let Some((b, d)) = t.split_once('#') {
        let base: u32 = b.parse().ok()?;
        if !(2..=36).contains(&base) {
            return None;
        }
        return i64::from_str_radix(d, base).ok();
    }
    if t.len() > 1 && t.starts_with('0') {
        return i64::from_str_radix(&t[1..], 8).ok();
    }
    t.parse().ok()
}

struct Evaluator<'a> {
    toks: Vec<Token>,
    pos: usize,
    sh: &'a mut Shell,
    depth: usize,
}

type Value = Result<i64, String>;

impl Evaluator<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some(Token::Op(o)) => Some(o),
            _ => None,
        }
    }
    fn var(&mut self, name: &str) -> Value {
        let v = match crate::vars::split_subscript(name) {
            Some((n, sub)) => self.sh.get_elem(n, sub)?,
            None => self.sh.param_value(name),
        };
        match v {
            None => {
                if self.sh.opts.nounset {
                    return Err(format!("{name}: parameter not set"));
                }
                Ok(0)
            }
            Some(s) => {
                let t = s.trim();
                if t.is_empty() {
                    return Ok(0);
                }
                if let Some(n) =
                    parse_int(t).or_else(|| t.strip_prefix('-').and_then(parse_int).map(|n| -n))
                {
                    return Ok(n);
                }
                if self.depth > 20 {
                    return Err("expression recursion level exceeded".into());
                }
                let toks = arith_lex(t)?;
                let mut p = Evaluator {
                    toks,
                    pos: 0,
                    sh: self.sh,
                    depth: self.depth + 1,
                };
                let r = p.expr(true)?;
                if p.pos != p.toks.len() {
                    return Err(format!("bad value \"{t}\" for {name}"));
                }
                Ok(r)
            }
        }
    }
    fn assign(&mut self, name: &str, v: i64, eval: bool) -> Result<(), String> {
        if eval {
            match crate::vars::split_subscript(name) {
                Some((n, sub)) => self.sh.assign_elem(n, sub, &v.to_string(), false)?,
                None => self.sh.set_var(name, &v.to_string())?,
            }
        }
        Ok(())
    }
    /// comma expression
    fn expr(&mut self, eval: bool) -> Value {
        let mut v = self.assign_expr(eval)?;
        while self.peek_op() == Some(",") {
            self.pos += 1;
            v = self.assign_expr(eval)?;
        }
        Ok(v)
    }
    fn assign_expr(&mut self, eval: bool) -> Value {
        if let (Some(Token::Name(n)), Some(Token::Op(op))) = (
            self.toks.get(self.pos).cloned(),
            self.toks.get(self.pos + 1).cloned(),
        ) {
            if matches!(
                op,
                "=" | "+=" | "-=" | "*=" | "/=" | "%=" | "<<=" | ">>=" | "&=" | "^=" | "|="
            ) {
                self.pos += 2;
                let rhs = self.assign_expr(eval)?;
                let v = if op == "=" {
                    rhs
                } else {
                    let cur = if eval { self.var(&n)? } else { 0 };
                    binop(&op[..op.len() - 1], cur, rhs, eval)?
                };
                self.assign(&n, v, eval)?;
                return Ok(v);
            }
        }
        self.ternary(eval)
    }
    fn ternary(&mut self, eval: bool) -> Value {
        let c = self.binary(1, eval)?;
        if self.peek_op() == Some("?") {
            self.pos += 1;
            let a = self.expr(eval && c != 0)?;
            if self.peek_op() != Some(":") {
                return Err("expecting ':'".into());
            }
            self.pos += 1;
            let b = self.ternary(eval && c == 0)?;
            return Ok(if c != 0 { a } else { b });
        }
        Ok(c)
    }
    fn binary(&mut self, min_prec: u8, eval: bool) -> Value {
        let mut lhs = self.unary(eval)?;
        while let Some(op) = self.peek_op() {
            let prec = match op {
                "||" => 1,
                "&&" => 2,
                "|" => 3,
                "^" => 4,
                "&" => 5,
                "==" | "!=" => 6,
                "<" | ">" | "<=" | ">=" => 7,
                "<<" | ">>" => 8,
                "+" | "-" => 9,
                "*" | "/" | "%" => 10,
                "**" => 11,
                _ => break,
            };
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            let next_min = if op == "**" { prec } else { prec + 1 };
            if op == "&&" {
                let r = self.binary(next_min, eval && lhs != 0)?;
                lhs = (lhs != 0 && r != 0) as i64;
                continue;
            }
            if op == "||" {
                let r = self.binary(next_min, eval && lhs == 0)?;
                lhs = (lhs != 0 || r != 0) as i64;
                continue;
            }
            let rhs = self.binary(next_min, eval)?;
            lhs = binop(op, lhs, rhs, eval)?;
        }
        Ok(lhs)
    }
    fn unary(&mut self, eval: bool) -> Value {
        match self.toks.get(self.pos).cloned() {
            Some(Token::Op("-")) => {
                self.pos += 1;
                Ok(self.unary(eval)?.wrapping_neg())
            }
            Some(Token::Op("+")) => {
                self.pos += 1;
                self.unary(eval)
            }
            Some(Token::Op("!")) => {
                self.pos += 1;
                Ok((self.unary(eval)? == 0) as i64)
            }
            Some(Token::Op("~")) => {
                self.pos += 1;
                Ok(!self.unary(eval)?)
            }
            Some(Token::Op(op @ ("++" | "--"))) => {
                self.pos += 1;
                let Some(Token::Name(n)) = self.toks.get(self.pos).cloned() else {
                    return Err("bad ++/--".into());
                };
                self.pos += 1;
                let v = self.var(&n)? + if op == "++" { 1 } else { -1 };
                self.assign(&n, v, eval)?;
                Ok(v)
            }
            _ => self.postfix(eval),
        }
    }
    fn postfix(&mut self, eval: bool) -> Value {
        match self.toks.get(self.pos).cloned() {
            Some(Token::Num(n)) => {
                self.pos += 1;
                Ok(n)
            }
            Some(Token::Name(n)) => {
                self.pos += 1;
                let v = self.var(&n)?;
                if let Some(op @ ("++" | "--")) = self.peek_op() {
                    self.pos += 1;
                    self.assign(&n, v + if op == "++" { 1 } else { -1 }, eval)?;
                }
                Ok(v)
            }
            Some(Token::Op("(")) => {
                self.pos += 1;
                let v = self.expr(eval)?;
                if self.peek_op() != Some(")") {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(v)
            }
            Some(t) => Err(format!("unexpected {t:?}")
                .replace("Op(", "")
                .replace(')', "")),
            None => Err("missing operand".into()),
        }
    }
}

fn binop(op: &str, a: i64, b: i64, eval: bool) -> Value {
    Ok(match op {
        "+" => a.wrapping_add(b),
        "-" => a.wrapping_sub(b),
        "*" => a.wrapping_mul(b),
        "/" | "%" => {
            if b == 0 {
                if !eval {
                    return Ok(0);
                }
                return Err("division by zero".into());
            }
            if op == "/" {
                a.wrapping_div(b)
            } else {
                a.wrapping_rem(b)
            }
        }
        "**" => {
            if b < 0 {
                return Err("exponent less than 0".into());
            }
            a.wrapping_pow(b.min(u32::MAX as i64) as u32)
        }
        "<<" => a.wrapping_shl(b as u32),
        ">>" => a.wrapping_shr(b as u32),
        "<" => (a < b) as i64,
        ">" => (a > b) as i64,
        "<=" => (a <= b) as i64,
        ">=" => (a >= b) as i64,
        "==" => (a == b) as i64,
        "!=" => (a != b) as i64,
        "&" => a & b,
        "^" => a ^ b,
        "|" => a | b,
        _ => return Err(format!("bad operator {op}")),
    })
}
