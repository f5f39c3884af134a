//! Hand-written lexer and recursive-descent parser for the POSIX-sh subset, plus the
//! unparser that re-serialises a command for a child `sh -c` instance.

use crate::ast::*;
pub use crate::unparse::{unparse_command, unparse_program, Unparser};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub msg: String,
    pub line: usize,
    /// A construct we recognise but do not implement (reported as `…: not supported`).
    pub unsupported: bool,
    /// The input ended in the middle of a construct.
    pub incomplete: bool,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unsupported {
            write!(f, "line {}: {}: not supported", self.line, self.msg)
        } else {
            write!(f, "line {}: syntax error: {}", self.line, self.msg)
        }
    }
}

type PResult<T> = Result<T, ParseError>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word),
    Op(&'static str),
    IoNum(u32),
    Newline,
    Eof,
}

const OPS: &[&str] = &[
    "<<<", "<<-", "&>>", ";;&", "&&", "||", ";;", ";&", "<<", ">>", "<&", ">&", "<>", ">|", "&>",
    "|&", ";", "&", "|", "<", ">", "(", ")",
];

pub const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "{", "}", "!",
];

pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    match c.next() {
        Some(ch) if ch == '_' || ch.is_ascii_alphabetic() => {}
        _ => return false,
    }
    c.all(|ch| ch == '_' || ch.is_ascii_alphanumeric())
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')'
    )
}

pub struct Parser {
    src: Vec<char>,
    pos: usize,
    line: usize,
    peeked: Option<(Tok, usize, usize)>,
    pending: Vec<Rc<RefCell<HereDoc>>>,
    /// Lexing the right side of `[[ … =~ … ]]`: `(`, `)`, `|`, `<`, `>` are part of the word.
    in_regex: bool,
    /// sh mode: bash-only syntax (array literals) is a syntax error, as in dash.
    posix: bool,
}

impl Parser {
    pub fn new(src: &str) -> Self {
        Parser {
            src: src.chars().collect(),
            pos: 0,
            line: 1,
            peeked: None,
            pending: Vec::new(),
            in_regex: false,
            posix: false,
        }
    }

    /// Parse as sh (dash) does: no bash-only syntax.
    pub fn posix(mut self) -> Self {
        self.posix = true;
        self
    }

    pub fn line(&self) -> usize {
        self.line
    }

    fn err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            msg: msg.into(),
            line: self.line,
            unsupported: false,
            incomplete: false,
        })
    }
    fn unsupported<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            msg: msg.into(),
            line: self.line,
            unsupported: true,
            incomplete: false,
        })
    }
    fn eof_err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            msg: msg.into(),
            line: self.line,
            unsupported: false,
            incomplete: true,
        })
    }

    fn ch(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }
    fn ch_at(&self, off: usize) -> Option<char> {
        self.src.get(self.pos + off).copied()
    }
    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.ch_at(i) == Some(c))
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.ch()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    // ---------------------------------------------------------------- tokens

    fn peek(&mut self) -> PResult<&Tok> {
        if self.peeked.is_none() {
            let line = self.line;
            let t = self.lex()?;
            self.peeked = Some((t, self.pos, line));
        }
        Ok(&self.peeked.as_ref().unwrap().0)
    }

    fn next(&mut self) -> PResult<Tok> {
        self.peek()?;
        Ok(self.peeked.take().unwrap().0)
    }

    fn peek_op(&mut self, op: &str) -> PResult<bool> {
        Ok(matches!(self.peek()?, Tok::Op(o) if *o == op))
    }

    fn peek_kw(&mut self, kw: &str) -> PResult<bool> {
        Ok(matches!(self.peek()?, Tok::Word(w) if w.as_literal() == Some(kw) && w.raw == kw))
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.peek_kw(kw)? {
            self.next()?;
            Ok(())
        } else if matches!(self.peek()?, Tok::Eof) {
            self.eof_err(format!("unexpected end of file (expecting \"{kw}\")"))
        } else {
            let t = self.describe_peek()?;
            self.err(format!("{t} unexpected (expecting \"{kw}\")"))
        }
    }

    fn describe_peek(&mut self) -> PResult<String> {
        Ok(match self.peek()? {
            Tok::Word(w) => format!("\"{}\"", w.raw),
            Tok::Op(o) => format!("\"{o}\""),
            Tok::IoNum(n) => format!("\"{n}\""),
            Tok::Newline => "newline".into(),
            Tok::Eof => "end of file".into(),
        })
    }

    fn skip_newlines(&mut self) -> PResult<()> {
        while matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        Ok(())
    }

    fn lex(&mut self) -> PResult<Tok> {
        // blanks, continuations, comments
        loop {
            match self.ch() {
                Some(' ') | Some('\t') | Some('\r') => {
                    self.pos += 1;
                }
                Some('\\') if self.ch_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.ch() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
        let Some(c) = self.ch() else {
            return Ok(Tok::Eof);
        };
        if c == '\n' {
            self.bump();
            self.read_heredocs()?;
            return Ok(Tok::Newline);
        }
        if c.is_ascii_digit() {
            let mut end = self.pos;
            while self.src.get(end).is_some_and(|c| c.is_ascii_digit()) {
                end += 1;
            }
            if matches!(self.src.get(end), Some('<') | Some('>')) {
                let n: String = self.src[self.pos..end].iter().collect();
                self.pos = end;
                return Ok(Tok::IoNum(n.parse().unwrap_or(u32::MAX)));
            }
        }
        let proc_sub = (c == '<' || c == '>') && self.ch_at(1) == Some('(');
        if is_meta(c) && !(self.in_regex && "()|<>".contains(c)) && !proc_sub {
            for op in OPS {
                if self.starts_with(op) {
                    self.pos += op.chars().count();
                    return Ok(Tok::Op(op));
                }
            }
        }
        let w = self.lex_word()?;
        Ok(Tok::Word(w))
    }

    fn read_heredocs(&mut self) -> PResult<()> {
        let pending = std::mem::take(&mut self.pending);
        for hd in pending {
            let (delim, strip) = {
                let h = hd.borrow();
                (h.delim.clone(), h.strip_tabs)
            };
            let mut body = String::new();
            let mut found = false;
            while self.ch().is_some() {
                let mut line = String::new();
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                    line.push(c);
                }
                let l = if strip {
                    line.trim_start_matches('\t').to_string()
                } else {
                    line
                };
                if l == delim {
                    found = true;
                    break;
                }
                body.push_str(&l);
                body.push('\n');
            }
            let _ = found; // like dash: a missing delimiter ends the here-doc at end of file
            let mut h = hd.borrow_mut();
            if !h.quoted {
                let mut p = Parser::new(&body);
                p.line = self.line;
                h.parts = Some(p.lex_dq_body(None, true)?);
            }
            h.raw = body;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- words

    fn lex_word(&mut self) -> PResult<Word> {
        let start = self.pos;
        let mut parts: Vec<WordPart> = Vec::new();
        let mut lit = String::new();
        fn flush(lit: &mut String, parts: &mut Vec<WordPart>) {
            if !lit.is_empty() {
                parts.push(WordPart::Lit(std::mem::take(lit)));
            }
        }
        // tilde prefix
        if self.ch() == Some('~') {
            let mut end = self.pos + 1;
            while let Some(&c) = self.src.get(end) {
                if c == '/'
                    || is_meta(c)
                    || !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                {
                    break;
                }
                end += 1;
            }
            let next = self.src.get(end).copied();
            if next.is_none() || next == Some('/') || next.is_some_and(is_meta) {
                let user: String = self.src[self.pos + 1..end].iter().collect();
                parts.push(WordPart::Tilde(user));
                self.pos = end;
            }
        }
        // NAME[sub]= / NAME[sub]+= (bash array element assignment)
        if parts.is_empty() {
            if let Some((name, sub_end)) = self.subscript_assignment_ahead() {
                let sub_src: String = self.src[self.pos + name.len() + 1..sub_end]
                    .iter()
                    .collect();
                parts.push(WordPart::Lit(name.clone()));
                parts.push(WordPart::Subscript(Box::new(subscript_word(&sub_src)?)));
                self.pos = sub_end + 1;
            }
        }
        while let Some(c) = self.ch() {
            if (c == '<' || c == '>') && self.ch_at(1) == Some('(') && !self.in_regex {
                // process substitution <(…) / >(…)
                self.pos += 2;
                let saved = self.peeked.take();
                let prog = self.parse_compound_list()?;
                match self.next()? {
                    Tok::Op(")") => {}
                    Tok::Eof => return self.eof_err("unterminated process substitution"),
                    _ => return self.err("expecting \")\" to end a process substitution"),
                }
                self.peeked = saved;
                flush(&mut lit, &mut parts);
                parts.push(WordPart::ProcSub {
                    prog: Rc::new(prog),
                    output: c == '>',
                });
                continue;
            }
            if c == '(' && lit.ends_with(['@', '!', '+', '*', '?']) {
                // bash extended pattern `@(a|b)`: literal text up to the matching `)`
                let mut depth = 0;
                while let Some(c) = self.bump() {
                    lit.push(c);
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                continue;
            }
            if self.in_regex && "()|<>".contains(c) {
                self.bump();
                lit.push(c);
                continue;
            }
            if is_meta(c) {
                if c == '(' {
                    // NAME=( … ) / NAME+=( … ) is a bash array literal
                    let head = lit.strip_suffix("+=").or_else(|| lit.strip_suffix('='));
                    let plain = parts.is_empty() && head.is_some_and(is_name);
                    let indexed =
                        matches!(parts.as_slice(), [WordPart::Lit(_), WordPart::Subscript(_)])
                            && (lit == "=" || lit == "+=");
                    if (plain || indexed) && self.posix {
                        return self.err("\"(\" unexpected");
                    }
                    if plain || indexed {
                        self.bump();
                        let elems = self.lex_array_literal()?;
                        flush(&mut lit, &mut parts);
                        parts.push(WordPart::ArrayLit(elems));
                        continue;
                    }
                }
                break;
            }
            match c {
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) => {
                            flush(&mut lit, &mut parts);
                            parts.push(WordPart::Quoted(e.to_string()));
                        }
                        None => lit.push('\\'),
                    }
                }
                '\'' | '"' | '`' => {
                    let p = self.lex_quoted_part(c, false)?;
                    flush(&mut lit, &mut parts);
                    parts.push(p);
                }
                '$' => {
                    if self.ch_at(1) == Some('\'') {
                        self.pos += 2;
                        let s = self.lex_ansi_c()?;
                        flush(&mut lit, &mut parts);
                        parts.push(WordPart::Quoted(s));
                    } else if let Some(p) = self.lex_dollar(false)? {
                        flush(&mut lit, &mut parts);
                        parts.push(p);
                    } else {
                        lit.push('$');
                    }
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut lit, &mut parts);
        let raw: String = self.src[start..self.pos].iter().collect();
        Ok(Word { raw, parts })
    }

    /// At the start of a word: `NAME[…]=` or `NAME[…]+=`? Returns the name and the index of
    /// the closing `]`.
    fn subscript_assignment_ahead(&self) -> Option<(String, usize)> {
        let mut i = self.pos;
        while self
            .src
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            i += 1;
        }
        let name: String = self.src[self.pos..i].iter().collect();
        if !is_name(&name) || self.src.get(i) != Some(&'[') {
            return None;
        }
        let mut depth = 0;
        let mut j = i;
        while let Some(&c) = self.src.get(j) {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                '\n' => return None,
                _ => {}
            }
            j += 1;
        }
        match (self.src.get(j + 1), self.src.get(j + 2)) {
            (Some('='), _) | (Some('+'), Some('=')) => Some((name, j)),
            _ => None,
        }
    }

    /// The elements of `( … )` after `NAME=`; the `(` is consumed, the `)` is too.
    fn lex_array_literal(&mut self) -> PResult<Vec<ArrayElem>> {
        let mut elems = Vec::new();
        loop {
            // blanks, newlines and comments separate elements
            match self.ch() {
                Some(' ') | Some('\t') | Some('\r') => {
                    self.pos += 1;
                    continue;
                }
                Some('\n') => {
                    self.bump();
                    continue;
                }
                Some('\\') if self.ch_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                    continue;
                }
                Some('#') => {
                    while self.ch().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                    continue;
                }
                Some(')') => {
                    self.bump();
                    return Ok(elems);
                }
                None => return self.eof_err("unterminated array literal (expecting \")\")"),
                _ => {}
            }
            let mut key = None;
            if self.ch() == Some('[') {
                // [key]=value
                let mut depth = 0;
                let mut j = self.pos;
                while let Some(&c) = self.src.get(j) {
                    match c {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if self.src.get(j + 1) == Some(&'=') {
                    let k: String = self.src[self.pos + 1..j].iter().collect();
                    key = Some(subscript_word(&k)?);
                    self.pos = j + 2;
                }
            }
            let w = if self.ch().is_some_and(is_meta) {
                lit_word("")
            } else {
                self.lex_word()?
            };
            if key.is_none() && w.raw.is_empty() {
                return self.err("syntax error in array literal");
            }
            elems.push(ArrayElem { key, value: w });
        }
    }

    /// Body of a double-quoted string (terminated by `term`) or of an unquoted here-doc (`term`
    /// = None, `heredoc` = true: `"` is literal).
    fn lex_dq_body(&mut self, term: Option<char>, heredoc: bool) -> PResult<Vec<WordPart>> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        fn flush(lit: &mut String, parts: &mut Vec<WordPart>) {
            if !lit.is_empty() {
                parts.push(WordPart::Quoted(std::mem::take(lit)));
            }
        }
        loop {
            let Some(c) = self.ch() else {
                if term.is_some() {
                    return self.eof_err("unterminated quoted string");
                }
                break;
            };
            if Some(c) == term {
                self.bump();
                break;
            }
            match c {
                '\\' => {
                    self.bump();
                    match self.ch() {
                        Some('\n') => {
                            self.bump();
                        }
                        Some(e @ ('$' | '`' | '\\')) => {
                            self.bump();
                            lit.push(e);
                        }
                        Some('"') if !heredoc => {
                            self.bump();
                            lit.push('"');
                        }
                        _ => lit.push('\\'),
                    }
                }
                '`' => {
                    let p = self.lex_backtick(true)?;
                    flush(&mut lit, &mut parts);
                    parts.push(p);
                }
                '$' => {
                    if let Some(p) = self.lex_dollar(true)? {
                        flush(&mut lit, &mut parts);
                        parts.push(p);
                    } else {
                        lit.push('$');
                    }
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut lit, &mut parts);
        Ok(parts)
    }

    fn lex_ansi_c(&mut self) -> PResult<String> {
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.eof_err("unterminated $'…' string"),
                Some('\'') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('a') => s.push('\x07'),
                    Some('b') => s.push('\x08'),
                    Some('e') | Some('E') => s.push('\x1b'),
                    Some('f') => s.push('\x0c'),
                    Some('v') => s.push('\x0b'),
                    Some('0') => {
                        let mut v = 0u32;
                        for _ in 0..3 {
                            match self.ch() {
                                Some(d @ '0'..='7') => {
                                    self.bump();
                                    v = v * 8 + d.to_digit(8).unwrap();
                                }
                                _ => break,
                            }
                        }
                        s.push(crate::bytes::byte_char((v & 0xff) as u8));
                    }
                    Some(d @ '1'..='7') => {
                        let mut v = d.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match self.ch().and_then(|c| c.to_digit(8)) {
                                Some(x) => {
                                    self.bump();
                                    v = v * 8 + x;
                                }
                                None => break,
                            }
                        }
                        s.push(crate::bytes::byte_char((v & 0xff) as u8));
                    }
                    Some(u @ ('u' | 'U')) => {
                        let max = if u == 'u' { 4 } else { 8 };
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < max {
                            match self.ch().and_then(|c| c.to_digit(16)) {
                                Some(x) => {
                                    self.bump();
                                    v = v * 16 + x;
                                    n += 1;
                                }
                                None => break,
                            }
                        }
                        match char::from_u32(v) {
                            Some(c) if n > 0 => s.push(c),
                            _ => {
                                s.push('\\');
                                s.push(u);
                            }
                        }
                    }
                    Some('c') => {
                        // \cX: control character
                        if let Some(x) = self.bump() {
                            s.push(((x.to_ascii_uppercase() as u8) ^ 0x40) as char);
                        }
                    }
                    Some('x') => {
                        let mut v = 0u32;
                        for _ in 0..2 {
                            match self.ch() {
                                Some(d) if d.is_ascii_hexdigit() => {
                                    self.bump();
                                    v = v * 16 + d.to_digit(16).unwrap_or(0);
                                }
                                _ => break,
                            }
                        }
                        s.push(crate::bytes::byte_char((v & 0xff) as u8));
                    }
                    Some(c) => {
                        if !matches!(c, '\\' | '\'' | '"' | '?') {
                            s.push('\\');
                        }
                        s.push(c)
                    }
                    None => return self.eof_err("unterminated $'…' string"),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn lex_backtick(&mut self, in_dq: bool) -> PResult<WordPart> {
        self.bump(); // `
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return self.eof_err("unterminated `…` command substitution"),
                Some('`') => break,
                Some('\\') => match self.ch() {
                    Some(c @ ('$' | '`' | '\\')) => {
                        self.bump();
                        s.push(c);
                    }
                    Some('"') if in_dq => {
                        self.bump();
                        s.push('"');
                    }
                    _ => s.push('\\'),
                },
                Some(c) => s.push(c),
            }
        }
        let mut p = Parser::new(&s);
        p.line = self.line;
        let prog = p.parse_all()?;
        Ok(WordPart::Cmd(Rc::new(prog)))
    }

    /// At a `$`. Returns None when the `$` is literal.
    fn lex_dollar(&mut self, in_dq: bool) -> PResult<Option<WordPart>> {
        match self.ch_at(1) {
            Some('{') => {
                self.pos += 2;
                Ok(Some(self.lex_brace_param(in_dq)?))
            }
            Some('(') => {
                if self.ch_at(2) == Some('(') {
                    if let Some(end) = self.find_arith_end(self.pos + 3) {
                        let inner: String = self.src[self.pos + 3..end].iter().collect();
                        let mut p = Parser::new(&inner);
                        p.line = self.line;
                        let parts = p.lex_dq_body(None, true)?;
                        for c in &self.src[self.pos..end + 2] {
                            if *c == '\n' {
                                self.line += 1;
                            }
                        }
                        self.pos = end + 2;
                        return Ok(Some(WordPart::Arith(parts)));
                    }
                }
                self.pos += 2;
                let saved = self.peeked.take();
                let prog = self.parse_compound_list()?;
                match self.next()? {
                    Tok::Op(")") => {}
                    Tok::Eof => return self.eof_err("unterminated $(…) command substitution"),
                    _ => return self.err("expecting \")\" to end $(…)"),
                }
                self.peeked = saved;
                Ok(Some(WordPart::Cmd(Rc::new(prog))))
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                self.pos += 1;
                let mut name = String::new();
                while let Some(c) = self.ch() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Ok(Some(param(name, ParamOp::Plain)))
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => {
                self.pos += 2;
                Ok(Some(param(c.to_string(), ParamOp::Plain)))
            }
            _ => {
                let _ = in_dq;
                self.pos += 1;
                Ok(None)
            }
        }
    }

    /// Index of the first `)` of the closing `))` of `$((`, if the parentheses balance that way.
    fn find_arith_end(&self, from: usize) -> Option<usize> {
        let mut depth = 0i32;
        let mut i = from;
        while i < self.src.len() {
            match self.src[i] {
                '(' => depth += 1,
                ')' => {
                    if depth == 0 {
                        return if self.src.get(i + 1) == Some(&')') {
                            Some(i)
                        } else {
                            None
                        };
                    }
                    depth -= 1;
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    fn lex_brace_param(&mut self, in_dq: bool) -> PResult<WordPart> {
        // after "${"
        let mut length = false;
        if self.ch() == Some('#') && !matches!(self.ch_at(1), Some('}') | None) {
            // ${#name}; but ${#-…}/${#?…} are ops on $# — treat `#` followed by name/special as length
            let n = self.ch_at(1).unwrap();
            if n == '_'
                || n.is_ascii_alphanumeric()
                || "@*?$!#-".contains(n) && self.ch_at(2) == Some('}')
            {
                length = true;
                self.pos += 1;
            }
        }
        let mut indirect = false;
        if !length
            && self.ch() == Some('!')
            && self
                .ch_at(1)
                .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric() || c == '@' || c == '*')
        {
            indirect = true;
            self.pos += 1;
        }
        let mut name = String::new();
        match self.ch() {
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                while let Some(c) = self.ch() {
                    if c == '_' || c.is_ascii_alphanumeric() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.ch() {
                    if c.is_ascii_digit() {
                        name.push(c);
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
            }
            Some(c) if "@*#?-$!".contains(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => return self.err("bad substitution"),
        }
        let mut index = None;
        if self.ch() == Some('[') && is_name(&name) {
            let mut depth = 0;
            let mut j = self.pos;
            while let Some(&c) = self.src.get(j) {
                match c {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j >= self.src.len() {
                return self.eof_err("unterminated ${…}");
            }
            let sub: String = self.src[self.pos + 1..j].iter().collect();
            index = Some(match sub.as_str() {
                "@" => Subscript::All,
                "*" => Subscript::Star,
                _ => Subscript::Expr(subscript_word(&sub)?),
            });
            self.pos = j + 1;
        }
        let with_index = |w: WordPart, index: Option<Subscript>, indirect: bool| match w {
            WordPart::Param(mut pe) => {
                pe.index = index;
                pe.indirect = indirect;
                WordPart::Param(pe)
            }
            w => w,
        };
        if length {
            if self.bump() != Some('}') {
                return self.err("bad substitution");
            }
            return Ok(with_index(param(name, ParamOp::Length), index, false));
        }
        if indirect && index.is_none() && matches!(self.ch(), Some('@') | Some('*')) {
            // ${!prefix@}: the names of the variables starting with prefix
            let star = self.bump() == Some('*');
            if self.bump() != Some('}') {
                return self.err("bad substitution");
            }
            return Ok(param(name, ParamOp::Names { star }));
        }
        let op = match (self.ch(), self.ch_at(1)) {
            (Some('}'), _) => {
                self.pos += 1;
                return Ok(with_index(param(name, ParamOp::Plain), index, indirect));
            }
            (Some(':'), Some('-')) => (2, ParamOp::Default { colon: true }),
            (Some(':'), Some('=')) => (2, ParamOp::Assign { colon: true }),
            (Some(':'), Some('?')) => (2, ParamOp::Error { colon: true }),
            (Some(':'), Some('+')) => (2, ParamOp::Alt { colon: true }),
            (Some(':'), _) => (1, ParamOp::Substring),
            (Some('-'), _) => (1, ParamOp::Default { colon: false }),
            (Some('='), _) => (1, ParamOp::Assign { colon: false }),
            (Some('?'), _) => (1, ParamOp::Error { colon: false }),
            (Some('+'), _) => (1, ParamOp::Alt { colon: false }),
            (Some('#'), Some('#')) => (2, ParamOp::RemoveLargestPrefix),
            (Some('#'), _) => (1, ParamOp::RemoveSmallestPrefix),
            (Some('%'), Some('%')) => (2, ParamOp::RemoveLargestSuffix),
            (Some('%'), _) => (1, ParamOp::RemoveSmallestSuffix),
            (Some('/'), Some('/')) => (
                2,
                ParamOp::Replace {
                    all: true,
                    anchor: 0,
                },
            ),
            (Some('/'), Some('#')) => (
                2,
                ParamOp::Replace {
                    all: false,
                    anchor: b'#',
                },
            ),
            (Some('/'), Some('%')) => (
                2,
                ParamOp::Replace {
                    all: false,
                    anchor: b'%',
                },
            ),
            (Some('/'), _) => (
                1,
                ParamOp::Replace {
                    all: false,
                    anchor: 0,
                },
            ),
            (Some('^'), Some('^')) => (
                2,
                ParamOp::Case {
                    upper: true,
                    all: true,
                },
            ),
            (Some('^'), _) => (
                1,
                ParamOp::Case {
                    upper: true,
                    all: false,
                },
            ),
            (Some(','), Some(',')) => (
                2,
                ParamOp::Case {
                    upper: false,
                    all: true,
                },
            ),
            (Some(','), _) => (
                1,
                ParamOp::Case {
                    upper: false,
                    all: false,
                },
            ),
            (Some('@'), Some(c)) if "QEPAaUuLK".contains(c) => (2, ParamOp::Transform { op: c }),
            (None, _) => return self.eof_err("unterminated ${…}"),
            _ => return self.err("bad substitution"),
        };
        self.pos += op.0;
        let op = op.1;
        let pattern_like = matches!(
            op,
            ParamOp::RemoveLargestPrefix
                | ParamOp::RemoveSmallestPrefix
                | ParamOp::RemoveLargestSuffix
                | ParamOp::RemoveSmallestSuffix
                | ParamOp::Replace { .. }
        );
        let (arg, arg2) = match op {
            ParamOp::Replace { .. } => {
                let a = self.lex_param_arg(&['/', '}'], in_dq && !pattern_like)?;
                let a2 = if self.ch() == Some('/') {
                    self.pos += 1;
                    Some(self.lex_param_arg(&['}'], in_dq)?)
                } else {
                    None
                };
                (a, a2)
            }
            ParamOp::Substring => {
                let a = self.lex_param_arg(&[':', '}'], true)?;
                let a2 = if self.ch() == Some(':') {
                    self.pos += 1;
                    Some(self.lex_param_arg(&['}'], true)?)
                } else {
                    None
                };
                (a, a2)
            }
            _ => (self.lex_param_arg(&['}'], in_dq && !pattern_like)?, None),
        };
        if self.bump() != Some('}') && !matches!(op, ParamOp::Replace { .. } | ParamOp::Substring) {
            return self.eof_err("unterminated ${…}");
        }
        if matches!(op, ParamOp::Replace { .. } | ParamOp::Substring)
            && self.src.get(self.pos - 1) != Some(&'}')
        {
            return self.eof_err("unterminated ${…}");
        }
        Ok(WordPart::Param(Box::new(ParamExp {
            name,
            index,
            indirect,
            op,
            arg,
            arg2,
        })))
    }

    /// The word inside `${name OP word}`, up to one of `stops` at brace depth 0.
    /// The quoted part at `c` (`'…'`, `"…"` or `` `…` ``), lexed the same in words and in
    /// `${v…}` operands (`quoted_lits`: the operand is itself inside double quotes).
    fn lex_quoted_part(&mut self, c: char, quoted_lits: bool) -> PResult<WordPart> {
        match c {
            '\'' => {
                self.bump();
                let mut s = String::new();
                loop {
                    match self.bump() {
                        Some('\'') => return Ok(WordPart::Quoted(s)),
                        Some(c) => s.push(c),
                        None => return self.eof_err("unterminated quoted string"),
                    }
                }
            }
            '"' => {
                self.bump();
                Ok(WordPart::Dq(self.lex_dq_body(Some('"'), false)?))
            }
            _ => self.lex_backtick(quoted_lits),
        }
    }

    fn lex_param_arg(&mut self, stops: &[char], quoted_lits: bool) -> PResult<Vec<WordPart>> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let push_lit = |lit: &mut String, parts: &mut Vec<WordPart>| {
            if !lit.is_empty() {
                let s = std::mem::take(lit);
                parts.push(if quoted_lits {
                    WordPart::Quoted(s)
                } else {
                    WordPart::Lit(s)
                });
            }
        };
        let mut depth = 0;
        loop {
            let Some(c) = self.ch() else {
                return self.eof_err("unterminated ${…}");
            };
            if depth == 0 && stops.contains(&c) {
                break;
            }
            match c {
                '{' => {
                    depth += 1;
                    self.bump();
                    lit.push(c);
                }
                '}' => {
                    depth -= 1;
                    self.bump();
                    lit.push(c);
                }
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(e) => {
                            push_lit(&mut lit, &mut parts);
                            parts.push(WordPart::Quoted(e.to_string()));
                        }
                        None => return self.eof_err("unterminated ${…}"),
                    }
                }
                // inside a quoted `"${v:-…}"` a `'` is a literal character
                '\'' | '"' | '`' if c != '\'' || !quoted_lits => {
                    let p = self.lex_quoted_part(c, quoted_lits)?;
                    push_lit(&mut lit, &mut parts);
                    parts.push(p);
                }
                '$' => {
                    if let Some(p) = self.lex_dollar(quoted_lits)? {
                        push_lit(&mut lit, &mut parts);
                        parts.push(p);
                    } else {
                        lit.push('$');
                    }
                }
                _ => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        push_lit(&mut lit, &mut parts);
        Ok(parts)
    }

    // ---------------------------------------------------------------- grammar

    /// Parse the whole input.
    pub fn parse_all(&mut self) -> PResult<Program> {
        let mut prog = Program::default();
        while let Some(p) = self.next_complete_command()? {
            prog.items.extend(p.items);
        }
        Ok(prog)
    }

    /// Parse the next top-level line (a list ended by a newline). `None` at end of input.
    pub fn next_complete_command(&mut self) -> PResult<Option<Program>> {
        self.skip_newlines()?;
        if matches!(self.peek()?, Tok::Eof) {
            return Ok(None);
        }
        let mut prog = Program::default();
        loop {
            let ao = self.parse_and_or()?;
            prog.items.push(ao);
            match self.peek()? {
                Tok::Op(";") => {
                    self.next()?;
                    if matches!(self.peek()?, Tok::Newline | Tok::Eof) {
                        break;
                    }
                }
                Tok::Op("&") => {
                    self.next()?;
                    if let Some(last) = prog.items.last_mut() {
                        last.background = true;
                    }
                    if matches!(self.peek()?, Tok::Newline | Tok::Eof) {
                        break;
                    }
                }
                Tok::Newline | Tok::Eof => break,
                _ => {
                    let t = self.describe_peek()?;
                    return self.err(format!("{t} unexpected"));
                }
            }
        }
        if matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        Ok(Some(prog))
    }

    fn at_list_end(&mut self) -> PResult<bool> {
        Ok(match self.peek()? {
            Tok::Eof => true,
            Tok::Op(")") | Tok::Op(";;") | Tok::Op(";&") | Tok::Op(";;&") => true,
            Tok::Word(w) => {
                matches!(
                    w.as_literal(),
                    Some("then" | "else" | "elif" | "fi" | "do" | "done" | "esac" | "}")
                ) && w.parts.len() == 1
                    && KEYWORDS.contains(&w.raw.as_str())
            }
            _ => false,
        })
    }

    fn parse_compound_list(&mut self) -> PResult<Program> {
        let mut prog = Program::default();
        self.skip_newlines()?;
        loop {
            if self.at_list_end()? {
                break;
            }
            let ao = self.parse_and_or()?;
            prog.items.push(ao);
            match self.peek()? {
                Tok::Op(";") | Tok::Newline => {
                    self.next()?;
                    self.skip_newlines()?;
                }
                Tok::Op("&") => {
                    self.next()?;
                    if let Some(last) = prog.items.last_mut() {
                        last.background = true;
                    }
                    self.skip_newlines()?;
                }
                _ => break,
            }
        }
        Ok(prog)
    }

    /// A compound list that must not be empty (bodies of if/while/for, groups).
    fn parse_nonempty_list(&mut self) -> PResult<Program> {
        let p = self.parse_compound_list()?;
        if p.items.is_empty() {
            if matches!(self.peek()?, Tok::Eof) {
                return self.eof_err("unexpected end of file");
            }
            let t = self.describe_peek()?;
            return self.err(format!("{t} unexpected"));
        }
        Ok(p)
    }

    fn parse_and_or(&mut self) -> PResult<AndOr> {
        let first = self.parse_pipeline()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek()? {
                Tok::Op("&&") => AndOrOp::And,
                Tok::Op("||") => AndOrOp::Or,
                _ => break,
            };
            self.next()?;
            self.skip_newlines()?;
            rest.push((op, self.parse_pipeline()?));
        }
        Ok(AndOr {
            first,
            rest,
            background: false,
        })
    }

    fn parse_pipeline(&mut self) -> PResult<Pipeline> {
        let mut bang = false;
        while self.peek_kw("!")? {
            self.next()?;
            bang = !bang;
        }
        let mut timed = false;
        if self.peek_kw("time")? {
            self.next()?;
            timed = true;
            if self.peek_kw("-p")? {
                self.next()?;
            }
            while self.peek_kw("!")? {
                self.next()?;
                bang = !bang;
            }
            if matches!(
                self.peek()?,
                Tok::Newline | Tok::Eof | Tok::Op(";") | Tok::Op("&")
            ) {
                // `time` alone times nothing
                return Ok(Pipeline {
                    bang,
                    cmds: vec![Command::Simple(SimpleCmd {
                        assigns: Vec::new(),
                        words: vec![lit_word(":")],
                        redirs: Vec::new(),
                        line: self.line,
                    })],
                    timed,
                });
            }
        }
        let mut cmds = vec![self.parse_command()?];
        loop {
            let both = match self.peek()? {
                Tok::Op("|") => false,
                Tok::Op("|&") => true,
                _ => break,
            };
            self.next()?;
            if both {
                let dup = Redir {
                    fd: Some(2),
                    op: RedirOp::DupOut,
                    target: lit_word("1"),
                };
                match cmds.last_mut().unwrap() {
                    Command::Simple(s) => s.redirs.push(dup),
                    Command::Compound(_, r) => r.push(dup),
                    Command::FuncDef(..) => {}
                }
            }
            self.skip_newlines()?;
            cmds.push(self.parse_command()?);
        }
        Ok(Pipeline { bang, cmds, timed })
    }

    fn parse_command(&mut self) -> PResult<Command> {
        let tok = self.peek()?.clone();
        match tok {
            Tok::Op("(") => {
                self.next()?;
                if self.ch() == Some('(') && self.pos == self.peeked_pos_after_open() {
                    // `((` arithmetic command (bash)
                    if let Some(end) = self.find_arith_end(self.pos + 1) {
                        let inner: String = self.src[self.pos + 1..end].iter().collect();
                        self.pos = end + 2;
                        let mut p = Parser::new(&inner);
                        let parts = p.lex_dq_body(None, true)?;
                        let c = Compound::Arith(Word { raw: inner, parts });
                        let r = self.parse_redirs()?;
                        return Ok(Command::Compound(c, r));
                    }
                }
                let body = self.parse_nonempty_list()?;
                match self.next()? {
                    Tok::Op(")") => {}
                    Tok::Eof => return self.eof_err("unexpected end of file (expecting \")\")"),
                    _ => return self.err("expecting \")\""),
                }
                let r = self.parse_redirs()?;
                Ok(Command::Compound(Compound::Subshell(body), r))
            }
            Tok::Word(w) if w.parts.len() == 1 && w.as_literal().is_some() => {
                let kw = w.raw.clone();
                match kw.as_str() {
                    "if" => self.parse_if(),
                    "while" | "until" => self.parse_while(kw == "until"),
                    "for" => self.parse_for(),
                    "case" => self.parse_case(),
                    "{" => {
                        self.next()?;
                        let body = self.parse_nonempty_list()?;
                        self.expect_kw("}")?;
                        let r = self.parse_redirs()?;
                        Ok(Command::Compound(Compound::Brace(body), r))
                    }
                    "[[" => self.parse_dbl_bracket(),
                    "function" => {
                        self.next()?;
                        let name = match self.next()? {
                            Tok::Word(w) if is_name_or_fn(&w.raw) => w.raw,
                            _ => return self.err("bad function name"),
                        };
                        if self.peek_op("(")? {
                            self.next()?;
                            if !self.peek_op(")")? {
                                return self.err("expecting \")\"");
                            }
                            self.next()?;
                        }
                        self.func_body(name)
                    }
                    "select" | "coproc" => self.unsupported(kw),
                    "then" | "else" | "elif" | "fi" | "do" | "done" | "esac" | "}" | "in" => {
                        self.err(format!("\"{kw}\" unexpected"))
                    }
                    _ => self.parse_simple(),
                }
            }
            Tok::Word(_)
            | Tok::IoNum(_)
            | Tok::Op(
                "<" | ">" | ">>" | "<<" | "<<-" | "<<<" | "<&" | ">&" | "<>" | ">|" | "&>" | "&>>",
            ) => self.parse_simple(),
            Tok::Eof => self.eof_err("unexpected end of file"),
            _ => {
                let t = self.describe_peek()?;
                self.err(format!("{t} unexpected"))
            }
        }
    }

    /// Position right after the `(` token that was just consumed (used to detect `((`).
    fn peeked_pos_after_open(&self) -> usize {
        self.pos
    }

    fn func_body(&mut self, name: String) -> PResult<Command> {
        self.skip_newlines()?;
        let body = self.parse_command()?;
        match body {
            Command::Compound(..) => Ok(Command::FuncDef(name, Rc::new(body))),
            _ => self.err("function body must be a compound command"),
        }
    }

    fn parse_if(&mut self) -> PResult<Command> {
        self.next()?; // if
        let mut branches = Vec::new();
        let mut else_ = None;
        let cond = self.parse_nonempty_list()?;
        self.expect_kw("then")?;
        let body = self.parse_nonempty_list()?;
        branches.push((cond, body));
        loop {
            if self.peek_kw("elif")? {
                self.next()?;
                let c = self.parse_nonempty_list()?;
                self.expect_kw("then")?;
                let b = self.parse_nonempty_list()?;
                branches.push((c, b));
            } else if self.peek_kw("else")? {
                self.next()?;
                else_ = Some(self.parse_nonempty_list()?);
                self.expect_kw("fi")?;
                break;
            } else {
                self.expect_kw("fi")?;
                break;
            }
        }
        let r = self.parse_redirs()?;
        Ok(Command::Compound(Compound::If { branches, else_ }, r))
    }

    fn parse_while(&mut self, until: bool) -> PResult<Command> {
        self.next()?;
        let cond = self.parse_nonempty_list()?;
        self.expect_kw("do")?;
        let body = self.parse_nonempty_list()?;
        self.expect_kw("done")?;
        let r = self.parse_redirs()?;
        Ok(Command::Compound(Compound::While { cond, body, until }, r))
    }

    fn parse_for(&mut self) -> PResult<Command> {
        self.next()?; // for
        if self.peek_op("(")? {
            return self.parse_arith_for();
        }
        let var = match self.next()? {
            Tok::Word(w) if is_name(&w.raw) => w.raw,
            _ => return self.err("bad for loop variable"),
        };
        let mut words = None;
        self.skip_newlines()?;
        if self.peek_kw("in")? {
            self.next()?;
            let mut ws = Vec::new();
            loop {
                match self.peek()? {
                    Tok::Word(_) => {
                        if let Tok::Word(w) = self.next()? {
                            ws.push(w);
                        }
                    }
                    Tok::Op(";") | Tok::Newline => {
                        self.next()?;
                        break;
                    }
                    _ => {
                        let t = self.describe_peek()?;
                        return self.err(format!("{t} unexpected"));
                    }
                }
            }
            words = Some(ws);
        } else if self.peek_op(";")? {
            self.next()?;
        }
        self.skip_newlines()?;
        self.expect_kw("do")?;
        let body = self.parse_nonempty_list()?;
        self.expect_kw("done")?;
        let r = self.parse_redirs()?;
        Ok(Command::Compound(Compound::For { var, words, body }, r))
    }

    /// `for (( init; cond; step ))` after `for`, the first `(` peeked.
    fn parse_arith_for(&mut self) -> PResult<Command> {
        self.next()?;
        if self.ch() != Some('(') {
            return self.err("expecting \"((\" after for");
        }
        let Some(end) = self.find_arith_end(self.pos + 1) else {
            return self.eof_err("unterminated for ((…))");
        };
        let inner: String = self.src[self.pos + 1..end].iter().collect();
        self.pos = end + 2;
        let mut exprs = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for c in inner.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ';' if depth == 0 => {
                    exprs.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        exprs.push(cur);
        if exprs.len() != 3 {
            return self.err("for ((…)): expected three expressions separated by `;'");
        }
        let mut words = Vec::new();
        for e in exprs {
            let mut p = Parser::new(&e);
            let parts = p.lex_dq_body(None, true)?;
            words.push(Word { raw: e, parts });
        }
        let step = words.pop().unwrap_or_else(|| lit_word(""));
        let cond = words.pop().unwrap_or_else(|| lit_word(""));
        let init = words.pop().unwrap_or_else(|| lit_word(""));
        if self.peek_op(";")? {
            self.next()?;
        }
        self.skip_newlines()?;
        let body = if self.peek_kw("{")? {
            self.next()?;
            let b = self.parse_compound_list()?;
            self.expect_kw("}")?;
            b
        } else {
            self.expect_kw("do")?;
            let b = self.parse_nonempty_list()?;
            self.expect_kw("done")?;
            b
        };
        let r = self.parse_redirs()?;
        Ok(Command::Compound(
            Compound::ArithFor {
                init,
                cond,
                step,
                body,
            },
            r,
        ))
    }

    fn parse_case(&mut self) -> PResult<Command> {
        self.next()?; // case
        let word = match self.next()? {
            Tok::Word(w) => w,
            _ => return self.err("expecting a word after \"case\""),
        };
        self.skip_newlines()?;
        self.expect_kw("in")?;
        self.skip_newlines()?;
        let mut arms = Vec::new();
        loop {
            if self.peek_kw("esac")? {
                self.next()?;
                break;
            }
            if self.peek_op("(")? {
                self.next()?;
            }
            let mut patterns = Vec::new();
            loop {
                match self.next()? {
                    Tok::Word(w) => patterns.push(w),
                    Tok::Eof => return self.eof_err("unexpected end of file in case"),
                    _ => return self.err("bad case pattern"),
                }
                match self.next()? {
                    Tok::Op("|") => continue,
                    Tok::Op(")") => break,
                    _ => return self.err("expecting \")\" after case pattern"),
                }
            }
            let body = self.parse_compound_list()?;
            let mut fallthrough = false;
            let mut test_next = false;
            match self.peek()? {
                Tok::Op(";;") => {
                    self.next()?;
                }
                Tok::Op(";;&") => {
                    self.next()?;
                    test_next = true;
                }
                Tok::Op(";&") => {
                    self.next()?;
                    fallthrough = true;
                }
                _ => {}
            }
            arms.push(CaseArm {
                patterns,
                body,
                fallthrough,
                test_next,
            });
            self.skip_newlines()?;
            if !fallthrough && !self.peek_kw("esac")? && !arms.is_empty() {
                // previous arm must have ended with ;; unless esac follows
            }
            if matches!(self.peek()?, Tok::Eof) {
                return self.eof_err("unexpected end of file (expecting \"esac\")");
            }
        }
        let r = self.parse_redirs()?;
        Ok(Command::Compound(Compound::Case { word, arms }, r))
    }

    fn parse_dbl_bracket(&mut self) -> PResult<Command> {
        self.next()?; // [[
        let mut words = Vec::new();
        loop {
            match self.next()? {
                Tok::Word(w) if w.raw == "]]" => break,
                Tok::Word(w) if w.raw == "=~" => {
                    words.push(TestWord::Word(w));
                    // the regex: one word in which ( ) | < > are ordinary characters
                    self.in_regex = true;
                    let t = self.next();
                    self.in_regex = false;
                    match t? {
                        Tok::Word(w) => words.push(TestWord::Word(w)),
                        _ => return self.err("expected a regular expression after =~"),
                    }
                }
                Tok::Word(w) => words.push(TestWord::Word(w)),
                Tok::Op(o @ ("&&" | "||" | "(" | ")" | "<" | ">")) => {
                    words.push(TestWord::Op(o.to_string()))
                }
                Tok::Eof => return self.eof_err("unexpected end of file (expecting \"]]\")"),
                Tok::Newline => {}
                _ => return self.err("unexpected token in [[ … ]]"),
            }
        }
        let r = self.parse_redirs()?;
        Ok(Command::Compound(Compound::Test(words), r))
    }

    fn parse_redirs(&mut self) -> PResult<Vec<Redir>> {
        let mut v = Vec::new();
        while let Some(r) = self.try_redir()? {
            v.push(r);
        }
        Ok(v)
    }

    fn try_redir(&mut self) -> PResult<Option<Redir>> {
        let fd = match self.peek()? {
            Tok::IoNum(n) => {
                let n = *n;
                self.next()?;
                Some(n)
            }
            Tok::Op(_) => None,
            _ => return Ok(None),
        };
        let op = match self.peek()? {
            Tok::Op(o) => *o,
            _ => return self.err("expecting a redirection operator"),
        };
        let rop = match op {
            "<" => RedirOp::In,
            ">" => RedirOp::Out,
            ">|" => RedirOp::Clobber,
            ">>" => RedirOp::Append,
            "<>" => RedirOp::ReadWrite,
            ">&" => RedirOp::DupOut,
            "<&" => RedirOp::DupIn,
            "<<<" => RedirOp::HereString,
            "&>" => RedirOp::OutErr,
            "&>>" => RedirOp::AppendOutErr,
            "<<" | "<<-" => RedirOp::HereDoc(Rc::new(RefCell::new(HereDoc {
                delim: String::new(),
                raw: String::new(),
                parts: None,
                strip_tabs: op == "<<-",
                quoted: false,
                delim_raw: String::new(),
            }))),
            _ => {
                if fd.is_some() {
                    return self.err(format!("\"{op}\" unexpected"));
                }
                return Ok(None);
            }
        };
        self.next()?;
        let target = match self.next()? {
            Tok::Word(w) => w,
            Tok::Eof => {
                return self.eof_err("unexpected end of file (expecting a redirection target)")
            }
            _ => return self.err("expecting a word after redirection"),
        };
        if let RedirOp::HereDoc(hd) = &rop {
            let mut h = hd.borrow_mut();
            h.quoted = target.raw.contains(['\'', '"', '\\']);
            h.delim = literal_text(&target.parts);
            h.delim_raw = target.raw.clone();
            drop(h);
            self.pending.push(hd.clone());
        }
        Ok(Some(Redir {
            fd,
            op: rop,
            target,
        }))
    }

    fn parse_simple(&mut self) -> PResult<Command> {
        let line = self.line;
        let mut cmd = SimpleCmd {
            assigns: Vec::new(),
            words: Vec::new(),
            redirs: Vec::new(),
            line,
        };
        loop {
            if let Some(r) = self.try_redir()? {
                cmd.redirs.push(r);
                continue;
            }
            match self.peek()? {
                Tok::Word(_) => {
                    let Tok::Word(w) = self.next()? else {
                        unreachable!()
                    };
                    if cmd.words.is_empty() {
                        if let Some(a) = split_assignment(&w) {
                            cmd.assigns.push(a);
                            continue;
                        }
                        // function definition: NAME ( )
                        if cmd.assigns.is_empty()
                            && cmd.redirs.is_empty()
                            && is_name_or_fn(&w.raw)
                            && self.peek_op("(")?
                        {
                            self.next()?;
                            if !self.peek_op(")")? {
                                return self.err("expecting \")\" in function definition");
                            }
                            self.next()?;
                            return self.func_body(w.raw);
                        }
                    }
                    cmd.words.push(w);
                }
                Tok::Op("(") if !cmd.words.is_empty() || !cmd.assigns.is_empty() => {
                    return self.err("\"(\" unexpected");
                }
                _ => break,
            }
        }
        if cmd.words.is_empty() && cmd.assigns.is_empty() && cmd.redirs.is_empty() {
            let t = self.describe_peek()?;
            return self.err(format!("{t} unexpected"));
        }
        Ok(Command::Simple(cmd))
    }
}

fn is_name_or_fn(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !KEYWORDS.contains(&s)
}

fn param(name: String, op: ParamOp) -> WordPart {
    WordPart::Param(Box::new(ParamExp {
        name,
        index: None,
        indirect: false,
        op,
        arg: Vec::new(),
        arg2: None,
    }))
}

pub fn lit_word(s: &str) -> Word {
    Word {
        raw: s.to_string(),
        parts: vec![WordPart::Lit(s.to_string())],
    }
}

/// The text of a word with quotes removed and no expansion (here-doc delimiters).
pub fn literal_text(parts: &[WordPart]) -> String {
    let mut s = String::new();
    for p in parts {
        match p {
            WordPart::Lit(t) | WordPart::Quoted(t) => s.push_str(t),
            WordPart::Dq(inner) => s.push_str(&literal_text(inner)),
            WordPart::Tilde(u) => {
                s.push('~');
                s.push_str(u)
            }
            WordPart::Param(p) => {
                s.push('$');
                s.push_str(&p.name)
            }
            _ => {}
        }
    }
    s
}

/// Parse the text of a subscript (`a[…]`, `[key]=`) as a word: quotes removed, expansions kept.
pub fn subscript_word(src: &str) -> PResult<Word> {
    let mut p = Parser::new(src);
    let w = p.lex_word()?;
    if p.pos == p.src.len() {
        return Ok(Word {
            raw: src.to_string(),
            parts: w.parts,
        });
    }
    // blanks inside (`a[i + 1]`): an arithmetic text with expansions, quotes kept
    let mut p = Parser::new(src);
    let parts = p.lex_dq_body(None, true)?;
    Ok(Word {
        raw: src.to_string(),
        parts,
    })
}

/// `name=value`, `name+=value`, `name[sub]=value`, `name=(…)` as an assignment.
pub fn split_assignment(w: &Word) -> Option<Assign> {
    let (name, index, rest_parts) = match w.parts.as_slice() {
        [WordPart::Lit(n), WordPart::Subscript(sub), rest @ ..] if is_name(n) => {
            (n.clone(), Some((**sub).clone()), rest)
        }
        _ => {
            let WordPart::Lit(first) = w.parts.first()? else {
                return None;
            };
            let eq = first.find('=')?;
            let name = first[..eq].strip_suffix('+').unwrap_or(&first[..eq]);
            if !is_name(name) {
                return None;
            }
            (name.to_string(), None, &w.parts[..])
        }
    };
    // rest_parts starts with the Lit holding `=`/`+=` (after the name, or after the subscript)
    let WordPart::Lit(head) = rest_parts.first()? else {
        return None;
    };
    let after_name = if index.is_some() {
        head.as_str()
    } else {
        &head[name.len()..]
    };
    let (append, rest) = if let Some(r) = after_name.strip_prefix("+=") {
        (true, r)
    } else {
        (false, after_name.strip_prefix('=')?)
    };
    let mut parts = Vec::new();
    if let Some(t) = rest.strip_prefix('~') {
        // tilde prefix of an assignment value: `x=~`, `d=~/src`
        let end = t.find(['/', ':']).unwrap_or(t.len());
        let user = &t[..end];
        let whole_lit = rest_parts.len() == 1 || end < t.len();
        if whole_lit
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            parts.push(WordPart::Tilde(user.to_string()));
            if end < t.len() {
                parts.push(WordPart::Lit(t[end..].to_string()));
            }
        } else {
            parts.push(WordPart::Lit(rest.to_string()));
        }
    } else if !rest.is_empty() {
        parts.push(WordPart::Lit(rest.to_string()));
    }
    parts.extend(rest_parts[1..].iter().cloned());
    let value = match parts.as_slice() {
        [WordPart::ArrayLit(elems)] => AssignValue::Array(elems.clone()),
        _ => {
            let raw = match w.raw.find('=') {
                Some(i) => w.raw[i + 1..].to_string(),
                None => String::new(),
            };
            AssignValue::Scalar(Word { raw, parts })
        }
    };
    Some(Assign {
        name,
        index,
        append,
        value,
        raw: w.raw.clone(),
    })
}

/// Parse a whole script.
pub fn parse(src: &str) -> Result<Program, ParseError> {
    Parser::new(src).parse_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(p: &Program, i: usize) -> &SimpleCmd {
        match &p.items[i].first.cmds[0] {
            Command::Simple(s) => s,
            c => panic!("not simple: {c:?}"),
        }
    }

    #[test]
    fn words_and_quotes() {
        let p = parse(r#"echo a 'b c' "d $x" e\ f"#).unwrap();
        let s = simple(&p, 0);
        let raws: Vec<&str> = s.words.iter().map(|w| w.raw.as_str()).collect();
        assert_eq!(raws, ["echo", "a", "'b c'", "\"d $x\"", "e\\ f"]);
        assert_eq!(s.words[2].parts, vec![WordPart::Quoted("b c".into())]);
        assert!(matches!(&s.words[3].parts[0], WordPart::Dq(inner) if inner.len() == 2));
        assert_eq!(
            s.words[4].parts,
            vec![
                WordPart::Lit("e".into()),
                WordPart::Quoted(" ".into()),
                WordPart::Lit("f".into())
            ]
        );
    }

    #[test]
    fn assignments_and_redirections() {
        let p = parse("A=1 B=\"x y\" cmd arg >out 2>&1 <in").unwrap();
        let s = simple(&p, 0);
        assert_eq!(s.assigns.len(), 2);
        assert_eq!(s.assigns[0].name, "A");
        assert_eq!(s.words.len(), 2);
        assert_eq!(s.redirs.len(), 3);
        assert_eq!(s.redirs[1].fd, Some(2));
        assert_eq!(s.redirs[1].op, RedirOp::DupOut);
        assert_eq!(s.redirs[2].op, RedirOp::In);
    }

    #[test]
    fn lists_pipelines_and_or() {
        let p = parse("a | b | c && ! d || e; f").unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[0].first.cmds.len(), 3);
        assert_eq!(p.items[0].rest.len(), 2);
        assert!(p.items[0].rest[0].1.bang);
    }

    #[test]
    fn compound_commands() {
        let src = "if a; then b; elif c; then d; else e; fi\nfor i in 1 2; do echo $i; done\nwhile x; do y; done\nuntil x; do y; done\ncase $v in a|b) one;; *) two;; esac\nf() { echo hi; }\n( sub )\n{ grp; }";
        let p = parse(src).unwrap();
        assert_eq!(p.items.len(), 8);
        match &p.items[0].first.cmds[0] {
            Command::Compound(Compound::If { branches, else_ }, _) => {
                assert_eq!(branches.len(), 2);
                assert!(else_.is_some());
            }
            c => panic!("{c:?}"),
        }
        match &p.items[4].first.cmds[0] {
            Command::Compound(Compound::Case { arms, .. }, _) => {
                assert_eq!(arms.len(), 2);
                assert_eq!(arms[0].patterns.len(), 2);
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(&p.items[5].first.cmds[0], Command::FuncDef(n, _) if n == "f"));
    }

    #[test]
    fn expansions() {
        let p = parse("echo ${x:-d} ${#y} $((1+2)) $(cmd arg) `bq` ~/p ${v%%.*}").unwrap();
        let s = simple(&p, 0);
        assert!(
            matches!(&s.words[1].parts[0], WordPart::Param(pe) if pe.op == ParamOp::Default { colon: true })
        );
        assert!(matches!(&s.words[2].parts[0], WordPart::Param(pe) if pe.op == ParamOp::Length));
        assert!(matches!(&s.words[3].parts[0], WordPart::Arith(_)));
        assert!(matches!(&s.words[4].parts[0], WordPart::Cmd(_)));
        assert!(matches!(&s.words[5].parts[0], WordPart::Cmd(_)));
        assert!(matches!(&s.words[6].parts[0], WordPart::Tilde(u) if u.is_empty()));
        assert!(
            matches!(&s.words[7].parts[0], WordPart::Param(pe) if pe.op == ParamOp::RemoveLargestSuffix)
        );
    }

    #[test]
    fn heredocs() {
        let p = parse("cat <<EOF; cat <<-'X'\nhello $name\nEOF\n\tliteral $v\n\tX\necho after")
            .unwrap();
        assert_eq!(p.items.len(), 3);
        let s = simple(&p, 0);
        let RedirOp::HereDoc(h) = &s.redirs[0].op else {
            panic!()
        };
        assert_eq!(h.borrow().raw, "hello $name\n");
        assert!(h.borrow().parts.is_some());
        let s = simple(&p, 1);
        let RedirOp::HereDoc(h) = &s.redirs[0].op else {
            panic!()
        };
        assert_eq!(h.borrow().raw, "literal $v\n");
        assert!(h.borrow().quoted && h.borrow().parts.is_none());
    }

    #[test]
    fn arrays() {
        let p = parse("a=(1 \"b c\" [5]=x) m[k]+=v; echo ${a[@]} ${#a[1]} ${!m[@]}").unwrap();
        let s = simple(&p, 0);
        let AssignValue::Array(elems) = &s.assigns[0].value else {
            panic!("not an array literal: {:?}", s.assigns[0]);
        };
        assert_eq!(elems.len(), 3);
        assert_eq!(elems[2].key.as_ref().map(|k| k.raw.as_str()), Some("5"));
        assert_eq!(s.assigns[1].name, "m");
        assert!(s.assigns[1].append && s.assigns[1].index.is_some());
        let e = simple(&p, 1);
        let WordPart::Param(pe) = &e.words[1].parts[0] else {
            panic!("{:?}", e.words[1]);
        };
        assert_eq!(pe.index, Some(Subscript::All));
        let WordPart::Param(pe) = &e.words[3].parts[0] else {
            panic!("{:?}", e.words[3]);
        };
        assert!(pe.indirect && pe.index == Some(Subscript::All));
    }

    #[test]
    fn unsupported_and_errors() {
        assert!(parse("sleep 1 &").unwrap().items[0].background);
        assert!(matches!(
            &simple(&parse("diff <(a) >(b)").unwrap(), 0).words[2].parts[0],
            WordPart::ProcSub { output: true, .. }
        ));
        let e = parse("if then fi").unwrap_err();
        assert!(!e.unsupported);
        assert!(parse("echo 'open").unwrap_err().incomplete);
        assert!(parse("for x in a; do").unwrap_err().incomplete);
    }

    #[test]
    fn unparse_round_trip() {
        let srcs = [
            "a | b && c || ! d",
            "if a; then b; elif c; then d; else e; fi > out",
            "for i in 1 \"2 3\"; do echo $i; done | sort",
            "f() { local x=1; echo \"$x\" >&2; }",
            "case $x in a|b) echo one;; *) echo two;; esac",
            "while read l; do echo \"$l\"; done <<EOF\nbody $x\nEOF",
            "cat <<'Q' | tr a-z A-Z\nraw $y\nQ",
            "( cd d && ls ) 2>/dev/null",
            "x=$(echo `echo hi`) y=${z:-d} cmd",
        ];
        for src in srcs {
            let p1 = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let u1 = unparse_program(&p1);
            let p2 = parse(&u1).unwrap_or_else(|e| panic!("reparse of {u1:?}: {e}"));
            let u2 = unparse_program(&p2);
            assert_eq!(u1, u2, "unparse not stable for {src:?}");
        }
    }
}
