//! bash `[[ … ]]`: operators are recognised by position on the unexpanded words, operands are
//! expanded without splitting or globbing and only when needed (`&&`/`||` short-circuit), the
//! right side of `==`/`!=` is a pattern (quoted parts literal) and of `=~` an extended regular
//! expression (quoted parts literal) whose groups land in `BASH_REMATCH`.

use crate::ast::{TestWord, Word};
use crate::exec::{Flow, Shell};
use crate::expand::PChar;
use crate::pattern::pat_match;

const UNARY: &[&str] = &[
    "-a", "-b", "-c", "-d", "-e", "-f", "-g", "-h", "-k", "-p", "-r", "-s", "-t", "-u", "-w", "-x",
    "-O", "-G", "-L", "-S", "-N", "-n", "-z", "-o", "-v", "-R",
];

const BINARY: &[&str] = &[
    "==", "=", "!=", "=~", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt", "-ot", "-ef",
];

/// A syntax error inside `[[ ]]` (status 2) or a flow change from an expansion.
enum Stop {
    Syntax(String),
    Flow(Flow),
}

impl From<Flow> for Stop {
    fn from(f: Flow) -> Stop {
        Stop::Flow(f)
    }
}

type CR = Result<bool, Stop>;

struct Cond<'a> {
    words: &'a [TestWord],
    pos: usize,
    sh: &'a mut Shell,
}

fn text(w: &TestWord) -> Option<&str> {
    match w {
        TestWord::Op(o) => Some(o),
        TestWord::Word(w) => w.as_literal(),
    }
}

impl Cond<'_> {
    fn peek(&self) -> Option<&str> {
        self.words.get(self.pos).and_then(text)
    }

    fn peek_op(&self, op: &str) -> bool {
        matches!(self.words.get(self.pos), Some(TestWord::Op(o)) if o == op)
    }

    fn word(&mut self) -> Result<&Word, Stop> {
        match self.words.get(self.pos) {
            Some(TestWord::Word(w)) => {
                self.pos += 1;
                Ok(w)
            }
            Some(TestWord::Op(o)) => Err(Stop::Syntax(format!("syntax error near `{o}'"))),
            None => Err(Stop::Syntax("unexpected argument".into())),
        }
    }

    fn or(&mut self, eval: bool) -> CR {
        let mut v = self.and(eval)?;
        while self.peek_op("||") {
            self.pos += 1;
            let r = self.and(eval && !v)?;
            v = v || r;
        }
        Ok(v)
    }

    fn and(&mut self, eval: bool) -> CR {
        let mut v = self.not(eval)?;
        while self.peek_op("&&") {
            self.pos += 1;
            let r = self.not(eval && v)?;
            v = v && r;
        }
        Ok(v)
    }

    fn not(&mut self, eval: bool) -> CR {
        if matches!(self.words.get(self.pos), Some(TestWord::Word(w)) if w.as_literal() == Some("!"))
            && self.pos + 1 < self.words.len()
        {
            self.pos += 1;
            return Ok(!self.not(eval)?);
        }
        self.prim(eval)
    }

    fn prim(&mut self, eval: bool) -> CR {
        if self.peek_op("(") {
            self.pos += 1;
            let v = self.or(eval)?;
            if !self.peek_op(")") {
                return Err(Stop::Syntax("expected `)'".into()));
            }
            self.pos += 1;
            return Ok(v);
        }
        // binary operator after the first operand?
        let op = self
            .words
            .get(self.pos + 1)
            .and_then(text)
            .map(str::to_string);
        if let Some(op) = op.filter(|o| BINARY.contains(&o.as_str())) {
            let lhs = self.word()?.clone();
            self.pos += 1;
            let rhs = self.word()?.clone();
            if !eval {
                return Ok(false);
            }
            return self.binary(&lhs, &op, &rhs);
        }
        let first = self.peek().map(str::to_string);
        if let Some(u) = first.filter(|u| UNARY.contains(&u.as_str())) {
            if matches!(self.words.get(self.pos + 1), Some(TestWord::Word(_))) {
                self.pos += 1;
                let w = self.word()?.clone();
                if !eval {
                    return Ok(false);
                }
                let arg = self.sh.expand_string(&w)?;
                return Ok(self.unary(&u, &arg)?);
            }
        }
        let w = self.word()?.clone();
        if !eval {
            return Ok(false);
        }
        Ok(!self.sh.expand_string(&w)?.is_empty())
    }

    fn unary(&mut self, op: &str, arg: &str) -> Result<bool, Flow> {
        match op {
            "-v" => Ok(match crate::vars::split_subscript(arg) {
                Some((n, sub)) => {
                    let sub = self.sh.expand_subscript_text(sub)?;
                    matches!(self.sh.get_elem(n, &sub), Ok(Some(_)))
                }
                None => self.sh.vars.contains_key(arg) || self.sh.param_value(arg).is_some(),
            }),
            "-o" => Ok(crate::builtins::option_is_on(self.sh, arg)),
            "-R" => Ok(false),
            _ => {
                let args = vec![op.to_string(), arg.to_string()];
                Ok(crate::builtins::test_eval(&args, &self.sh.cwd).unwrap_or(false))
            }
        }
    }

    fn binary(&mut self, lhs: &Word, op: &str, rhs: &Word) -> CR {
        let a = self.sh.expand_string(lhs)?;
        let nocase = self.sh.shopt.get("nocasematch");
        match op {
            "==" | "=" | "!=" => {
                let mut pat = self.sh.expand_pattern(rhs)?;
                let mut subj: Vec<char> = a.chars().collect();
                if nocase {
                    pat = pat.into_iter().map(|(c, q)| (lower(c), q)).collect();
                    subj = subj.into_iter().map(lower).collect();
                }
                Ok(pat_match(&pat, &subj) == (op != "!="))
            }
            "=~" => {
                let pat = self.sh.expand_pattern(rhs)?;
                self.regex(&a, &pat, nocase)
            }
            "<" | ">" => {
                let b = self.sh.expand_string(rhs)?;
                Ok(if op == "<" { a < b } else { a > b })
            }
            "-nt" | "-ot" | "-ef" => {
                let b = self.sh.expand_string(rhs)?;
                let args = vec![a, op.to_string(), b];
                Ok(crate::builtins::test_eval(&args, &self.sh.cwd).unwrap_or(false))
            }
            _ => {
                let b = self.sh.expand_string(rhs)?;
                let x = self.sh.arith(&a)?;
                let y = self.sh.arith(&b)?;
                Ok(match op {
                    "-eq" => x == y,
                    "-ne" => x != y,
                    "-lt" => x < y,
                    "-le" => x <= y,
                    "-gt" => x > y,
                    _ => x >= y,
                })
            }
        }
    }

    /// `=~`: quoted characters match literally; the match and its groups go to BASH_REMATCH.
    fn regex(&mut self, subject: &str, pat: &[PChar], nocase: bool) -> CR {
        let mut ere = String::new();
        for &(c, quoted) in pat {
            if quoted && !c.is_alphanumeric() {
                ere.push('\\');
            }
            ere.push(c);
        }
        let mut src = crate::text::posix_to_regex(&ere, true);
        if nocase {
            src = format!("(?i){src}");
        }
        let re = regex::Regex::new(&src)
            .map_err(|_| Stop::Syntax(format!("{ere}: invalid regular expression")))?;
        let elems = match re.captures(subject) {
            Some(caps) => caps
                .iter()
                .map(|m| crate::vars::Elem {
                    key: None,
                    value: m.map(|m| m.as_str().to_string()).unwrap_or_default(),
                })
                .collect(),
            None => Vec::new(),
        };
        let matched = !elems.is_empty();
        let _ = self.sh.assign_array("BASH_REMATCH", elems, false, false);
        Ok(matched)
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

impl Shell {
    /// Run `[[ words ]]`: 0 true, 1 false, 2 syntax error.
    pub fn dbl_bracket(&mut self, words: &[TestWord]) -> Result<i32, Flow> {
        let mut c = Cond {
            words,
            pos: 0,
            sh: self,
        };
        let r = c.or(true);
        let done = c.pos == words.len();
        match r {
            Ok(b) if done => Ok(if b { 0 } else { 1 }),
            Ok(_) => {
                self.errmsg("syntax error in conditional expression");
                Ok(2)
            }
            Err(Stop::Syntax(m)) => {
                self.errmsg(&m);
                Ok(2)
            }
            Err(Stop::Flow(f)) => Err(f),
        }
    }
}
