//! Syntax tree of the POSIX-sh subset.

use std::cell::RefCell;
use std::rc::Rc;

/// One piece of a word, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum WordPart {
    /// Unquoted literal text (subject to field splitting only if it came from an expansion,
    /// and to pathname expansion if it contains `*`, `?` or `[`).
    Lit(String),
    /// Quoted text: single quotes, a backslash escape, `$'…'` or literal text inside double quotes.
    Quoted(String),
    /// `"…"`.
    Dq(Vec<WordPart>),
    /// `$name`, `${…}`.
    Param(Box<ParamExp>),
    /// `$(…)` or backticks.
    Cmd(Rc<Program>),
    /// `$((…))`: the parts expand to the expression text.
    Arith(Vec<WordPart>),
    /// `~` or `~user` at the start of a word.
    Tilde(String),
    /// bash: `<(…)` (`output` false) or `>(…)` (`output` true): expands to a file name.
    ProcSub { prog: Rc<Program>, output: bool },
    /// bash: the `[sub]` of an assignment word `name[sub]=value` (expands to `[sub]` elsewhere).
    Subscript(Box<Word>),
    /// bash: the `(…)` of `name=(…)` (only right after a literal `name=` or `name+=`).
    ArrayLit(Vec<ArrayElem>),
}

/// One element of an array literal: `value` or `[key]=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayElem {
    pub key: Option<Word>,
    pub value: Word,
}

/// The subscript of `${name[…]}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Subscript {
    /// `[@]`
    All,
    /// `[*]`
    Star,
    /// an arithmetic index (indexed arrays) or a key (associative arrays), unexpanded
    Expr(Word),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamExp {
    pub name: String,
    /// `${name[sub]}` (bash arrays).
    pub index: Option<Subscript>,
    /// `${!name}` (indirection), `${!name[@]}` (keys), `${!prefix@}` (names).
    pub indirect: bool,
    pub op: ParamOp,
    /// The word after the operator (default value, pattern, …).
    pub arg: Vec<WordPart>,
    /// Second argument: replacement for `/`, length for `:off:len`.
    pub arg2: Option<Vec<WordPart>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamOp {
    Plain,
    Length,
    /// `-`, `=`, `?`, `+`; `colon` for the `:` forms.
    Default {
        colon: bool,
    },
    Assign {
        colon: bool,
    },
    Error {
        colon: bool,
    },
    Alt {
        colon: bool,
    },
    RemoveSmallestPrefix,
    RemoveLargestPrefix,
    RemoveSmallestSuffix,
    RemoveLargestSuffix,
    /// bash: `${v/p/r}`, `${v//p/r}`, `${v/#p/r}`, `${v/%p/r}`
    Replace {
        all: bool,
        anchor: u8,
    },
    /// bash: `${v:off}` / `${v:off:len}`
    Substring,
    /// bash: `${v@Q}` and the other `@` transformations (Q E U u L a A).
    Transform {
        op: char,
    },
    /// bash: `${!prefix@}` / `${!prefix*}`: names of the set variables starting with `name`.
    Names {
        star: bool,
    },
    /// bash: `${v^^}` `${v,,}` `${v^}` `${v,}`
    Case {
        upper: bool,
        all: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word exactly as written (used to re-serialise code for child shells).
    pub raw: String,
    pub parts: Vec<WordPart>,
}

impl Word {
    /// The word when it is a plain unquoted literal (for keywords, function names…).
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [WordPart::Lit(s)] => Some(s.as_str()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HereDoc {
    pub delim: String,
    /// Raw body text, as written (tabs already stripped for `<<-`).
    pub raw: String,
    /// Parsed body (expansions) when the delimiter was unquoted; `None` for quoted delimiters.
    pub parts: Option<Vec<WordPart>>,
    pub strip_tabs: bool,
    pub quoted: bool,
    /// The delimiter word as written (with its quotes).
    pub delim_raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RedirOp {
    /// `<`
    In,
    /// `>`
    Out,
    /// `>|`: like `>` but even under `set -C`
    Clobber,
    /// `>>`
    Append,
    /// `<>`
    ReadWrite,
    /// `>&` with a target word (fd number, `-`).
    DupOut,
    /// `<&`
    DupIn,
    /// `<<`, `<<-`
    HereDoc(Rc<RefCell<HereDoc>>),
    /// `<<<` (bash)
    HereString,
    /// `&>` (bash): stdout and stderr to a file.
    OutErr,
    /// `&>>` (bash): stdout and stderr appended to a file.
    AppendOutErr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redir {
    pub fd: Option<u32>,
    pub op: RedirOp,
    /// Target word (unused for here-docs).
    pub target: Word,
}

/// `name=value`, `name+=value`, `name[sub]=value`, `name=(…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub name: String,
    pub index: Option<Word>,
    pub append: bool,
    pub value: AssignValue,
    /// The whole word as written (for re-serialising).
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssignValue {
    Scalar(Word),
    Array(Vec<ArrayElem>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimpleCmd {
    pub assigns: Vec<Assign>,
    pub words: Vec<Word>,
    pub redirs: Vec<Redir>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseArm {
    pub patterns: Vec<Word>,
    pub body: Program,
    /// `;&` (bash): run the next arm's body too.
    pub fallthrough: bool,
    /// `;;&` (bash): go on testing the next arms' patterns.
    pub test_next: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Compound {
    Brace(Program),
    Subshell(Program),
    If {
        branches: Vec<(Program, Program)>,
        else_: Option<Program>,
    },
    For {
        var: String,
        words: Option<Vec<Word>>,
        body: Program,
    },
    While {
        cond: Program,
        body: Program,
        until: bool,
    },
    Case {
        word: Word,
        arms: Vec<CaseArm>,
    },
    /// bash `(( expr ))`
    Arith(Word),
    /// bash `for (( init; cond; step ))`; an empty condition is true.
    ArithFor {
        init: Word,
        cond: Word,
        step: Word,
        body: Program,
    },
    /// bash `[[ … ]]`: the words between the brackets, unexpanded.
    Test(Vec<TestWord>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestWord {
    Word(Word),
    Op(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Simple(SimpleCmd),
    Compound(Compound, Vec<Redir>),
    FuncDef(String, Rc<Command>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub bang: bool,
    pub cmds: Vec<Command>,
    /// `time pipeline` (bash keyword): report the elapsed time on stderr.
    pub timed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AndOrOp {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AndOr {
    pub first: Pipeline,
    pub rest: Vec<(AndOrOp, Pipeline)>,
    /// Ended by `&`: an asynchronous list.
    pub background: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    pub items: Vec<AndOr>,
}
