//! The unparser: syntax back to sh source. Child shells (pipeline stages that are builtins,
//! functions or compound commands) receive their command, and the functions they need, as text.

use crate::ast::*;
use std::cell::RefCell;
use std::rc::Rc;

/// Re-serialise syntax as sh source (used for the `sh -c` text of child shells).
#[derive(Default)]
pub struct Unparser {
    pub out: String,
    pending: Vec<Rc<RefCell<HereDoc>>>,
}

impl Unparser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nl(&mut self) {
        self.out.push('\n');
        for hd in std::mem::take(&mut self.pending) {
            let h = hd.borrow();
            self.out.push_str(&h.raw);
            self.out.push_str(&h.delim);
            self.out.push('\n');
        }
    }

    pub fn program(&mut self, p: &Program) {
        for ao in &p.items {
            self.and_or(ao);
            self.nl();
        }
    }

    pub fn and_or(&mut self, ao: &AndOr) {
        self.pipeline(&ao.first);
        for (op, p) in &ao.rest {
            self.out.push_str(match op {
                AndOrOp::And => " && ",
                AndOrOp::Or => " || ",
            });
            self.pipeline(p);
        }
        if ao.background {
            self.out.push_str(" &");
        }
    }

    pub fn pipeline(&mut self, p: &Pipeline) {
        if p.timed {
            self.out.push_str("time ");
        }
        if p.bang {
            self.out.push_str("! ");
        }
        for (i, c) in p.cmds.iter().enumerate() {
            if i > 0 {
                self.out.push_str(" | ");
            }
            self.command(c);
        }
    }

    pub fn command(&mut self, c: &Command) {
        match c {
            Command::Simple(s) => {
                let mut first = true;
                let mut sp = |o: &mut String| {
                    if !first {
                        o.push(' ');
                    }
                    first = false;
                };
                for a in &s.assigns {
                    sp(&mut self.out);
                    self.out.push_str(&a.raw);
                }
                for w in &s.words {
                    sp(&mut self.out);
                    self.out.push_str(&w.raw);
                }
                self.redirs(&s.redirs);
            }
            Command::Compound(cc, r) => {
                self.compound(cc);
                self.redirs(r);
            }
            Command::FuncDef(name, body) => {
                self.out.push_str(name);
                self.out.push_str("() ");
                self.command(body);
            }
        }
    }

    fn compound(&mut self, c: &Compound) {
        match c {
            Compound::Brace(p) => {
                self.out.push('{');
                self.nl();
                self.program(p);
                self.out.push('}');
            }
            Compound::Subshell(p) => {
                self.out.push('(');
                self.nl();
                self.program(p);
                self.out.push(')');
            }
            Compound::If { branches, else_ } => {
                for (i, (c, b)) in branches.iter().enumerate() {
                    self.out.push_str(if i == 0 { "if" } else { "elif" });
                    self.nl();
                    self.program(c);
                    self.out.push_str("then");
                    self.nl();
                    self.program(b);
                }
                if let Some(e) = else_ {
                    self.out.push_str("else");
                    self.nl();
                    self.program(e);
                }
                self.out.push_str("fi");
            }
            Compound::For { var, words, body } => {
                self.out.push_str("for ");
                self.out.push_str(var);
                if let Some(ws) = words {
                    self.out.push_str(" in");
                    for w in ws {
                        self.out.push(' ');
                        self.out.push_str(&w.raw);
                    }
                }
                self.nl();
                self.out.push_str("do");
                self.nl();
                self.program(body);
                self.out.push_str("done");
            }
            Compound::ArithFor {
                init,
                cond,
                step,
                body,
            } => {
                self.out
                    .push_str(&format!("for (({}; {}; {}))", init.raw, cond.raw, step.raw));
                self.nl();
                self.out.push_str("do");
                self.nl();
                self.program(body);
                self.out.push_str("done");
            }
            Compound::While { cond, body, until } => {
                self.out.push_str(if *until { "until" } else { "while" });
                self.nl();
                self.program(cond);
                self.out.push_str("do");
                self.nl();
                self.program(body);
                self.out.push_str("done");
            }
            Compound::Case { word, arms } => {
                self.out.push_str("case ");
                self.out.push_str(&word.raw);
                self.out.push_str(" in");
                self.nl();
                for arm in arms {
                    for (i, p) in arm.patterns.iter().enumerate() {
                        if i > 0 {
                            self.out.push('|');
                        }
                        self.out.push_str(&p.raw);
                    }
                    self.out.push(')');
                    self.nl();
                    self.program(&arm.body);
                    self.out.push_str(if arm.fallthrough {
                        ";&"
                    } else if arm.test_next {
                        ";;&"
                    } else {
                        ";;"
                    });
                    self.nl();
                }
                self.out.push_str("esac");
            }
            Compound::Arith(w) => {
                self.out.push_str("((");
                self.out.push_str(&w.raw);
                self.out.push_str("))");
            }
            Compound::Test(ws) => {
                self.out.push_str("[[");
                for w in ws {
                    self.out.push(' ');
                    match w {
                        TestWord::Word(w) => self.out.push_str(&w.raw),
                        TestWord::Op(o) => self.out.push_str(o),
                    }
                }
                self.out.push_str(" ]]");
            }
        }
    }

    fn redirs(&mut self, rs: &[Redir]) {
        for r in rs {
            self.out.push(' ');
            if let Some(fd) = r.fd {
                self.out.push_str(&fd.to_string());
            }
            let op = match &r.op {
                RedirOp::In => "<",
                RedirOp::Out => ">",
                RedirOp::Clobber => ">|",
                RedirOp::Append => ">>",
                RedirOp::ReadWrite => "<>",
                RedirOp::DupOut => ">&",
                RedirOp::DupIn => "<&",
                RedirOp::HereString => "<<<",
                RedirOp::OutErr => "&>",
                RedirOp::AppendOutErr => "&>>",
                RedirOp::HereDoc(hd) => {
                    self.pending.push(hd.clone());
                    "<<"
                }
            };
            self.out.push_str(op);
            if let RedirOp::HereDoc(hd) = &r.op {
                let h = hd.borrow();
                // Re-quote so the body keeps its (non-)expansion semantics; tabs were already stripped.
                if h.quoted {
                    self.out.push('\'');
                    self.out.push_str(&h.delim);
                    self.out.push('\'');
                } else {
                    self.out.push_str(&h.delim);
                }
            } else {
                self.out.push_str(&r.target.raw);
            }
        }
    }
}

pub fn unparse_command(c: &Command) -> String {
    let mut u = Unparser::new();
    u.command(c);
    u.nl();
    u.out
}

pub fn unparse_program(p: &Program) -> String {
    let mut u = Unparser::new();
    u.program(p);
    u.out
}
