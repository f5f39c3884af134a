//! Word expansion: parameters, command substitution, field splitting, pathname expansion
//! (arithmetic is arith.rs, patterns pattern.rs).

use crate::ast::*;
use crate::exec::{Flow, Shell};
pub use crate::pattern::{glob, pat_match, GlobOpts};

/// A character of an expanded word and whether it is quoted (not special for globbing).
pub type PChar = (char, bool);

#[derive(Default)]
struct Fields {
    done: Vec<Vec<PChar>>,
    cur: Vec<PChar>,
    /// The current field exists even if empty (it contained quotes).
    started: bool,
    /// Last thing appended was a whitespace field separator.
    after_ws_split: bool,
}

impl Fields {
    fn push_lit(&mut self, s: &str, quoted: bool) {
        for c in s.chars() {
            self.cur.push((c, quoted));
        }
        if quoted {
            self.started = true;
        }
        if !s.is_empty() {
            self.after_ws_split = false;
        }
    }
    fn end_field(&mut self) {
        if self.started || !self.cur.is_empty() {
            self.done.push(std::mem::take(&mut self.cur));
        }
        self.started = false;
    }
    /// Append the result of an unquoted expansion, splitting on IFS.
    fn push_split(&mut self, s: &str, ifs: &str) {
        for c in s.chars() {
            if ifs.contains(c) {
                if c == ' ' || c == '\t' || c == '\n' {
                    if self.started || !self.cur.is_empty() {
                        self.end_field();
                        self.after_ws_split = true;
                    }
                } else {
                    if !self.after_ws_split {
                        self.started = true;
                        self.end_field();
                    }
                    self.after_ws_split = false;
                }
            } else {
                self.cur.push((c, false));
                self.after_ws_split = false;
            }
        }
    }
    fn finish(mut self) -> Vec<Vec<PChar>> {
        self.end_field();
        self.done
    }
}

/// `"$@"`-like: expands to several fields inside double quotes.
fn is_at_list(pe: &ParamExp) -> bool {
    match &pe.index {
        None => pe.name == "@" && !pe.indirect || matches!(pe.op, ParamOp::Names { star: false }),
        Some(Subscript::All) => true,
        _ => false,
    }
}

fn chars_to_string(v: &[PChar]) -> String {
    v.iter().map(|c| c.0).collect()
}

impl Shell {
    fn ifs(&self) -> String {
        self.get_var("IFS").unwrap_or_else(|| " \t\n".into())
    }

    /// Expand words into fields (with splitting and pathname expansion).
    pub fn expand_words(&mut self, words: &[Word]) -> Result<Vec<String>, Flow> {
        let mut out = Vec::new();
        for w in words {
            let fields = self.expand_word_fields(w)?;
            for f in fields {
                self.glob_field(&f, &mut out);
            }
        }
        Ok(out)
    }

    /// The words of a simple command. Arguments of the declaration utilities (`export`,
    /// `readonly`, `local`, and bash's `declare`/`typeset`) that look like assignments are
    /// expanded like assignments: no field splitting, no pathname expansion.
    pub fn expand_command_words(&mut self, words: &[Word]) -> Result<Vec<String>, Flow> {
        let decl = words.first().and_then(|w| w.as_literal()).is_some_and(|n| {
            matches!(n, "export" | "readonly" | "local")
                || (self.bash && matches!(n, "declare" | "typeset"))
        });
        if !decl {
            return self.expand_words(words);
        }
        let mut out = Vec::new();
        for w in words {
            if crate::parse::split_assignment(w).is_some() {
                out.push(self.expand_string(w)?);
            } else {
                out.extend(self.expand_words(std::slice::from_ref(w))?);
            }
        }
        Ok(out)
    }

    pub fn expand_word_fields(&mut self, w: &Word) -> Result<Vec<Vec<PChar>>, Flow> {
        if self.bash {
            if let Some(alts) = crate::expand::brace_expand(w) {
                let mut all = Vec::new();
                for a in alts {
                    let mut f = Fields::default();
                    self.expand_parts_into(&a.parts, &mut f, false)?;
                    all.extend(f.finish());
                }
                return Ok(all);
            }
        }
        let mut f = Fields::default();
        self.expand_parts_into(&w.parts, &mut f, false)?;
        Ok(f.finish())
    }

    fn glob_field(&self, f: &[PChar], out: &mut Vec<String>) {
        let has_glob = !self.opts.noglob
            && (f
                .iter()
                .any(|&(c, q)| !q && (c == '*' || c == '?' || c == '['))
                || (self.bash
                    && f.windows(2)
                        .any(|w| !w[0].1 && "@!+*?".contains(w[0].0) && w[1] == ('(', false))));
        if has_glob {
            let opts = GlobOpts {
                dotglob: self.shopt.get("dotglob"),
                globstar: self.shopt.get("globstar"),
            };
            let matches = glob(f, &self.cwd_for_glob(), opts);
            if !matches.is_empty() || self.shopt.get("nullglob") {
                out.extend(matches);
                return;
            }
        }
        out.push(chars_to_string(f));
    }

    fn cwd_for_glob(&self) -> String {
        self.cwd.clone()
    }

    /// Expand a word to a single string: no field splitting, no globbing (redirection targets,
    /// case subjects, here-strings).
    pub fn expand_string(&mut self, w: &Word) -> Result<String, Flow> {
        let v = self.expand_nosplit(&w.parts)?;
        Ok(chars_to_string(&v))
    }

    /// Assignment values: tilde is expanded, no splitting/globbing.
    pub fn expand_assign(&mut self, w: &Word) -> Result<String, Flow> {
        self.expand_string(w)
    }

    pub fn expand_parts_string(&mut self, parts: &[WordPart]) -> Result<String, Flow> {
        let v = self.expand_nosplit(parts)?;
        Ok(chars_to_string(&v))
    }

    /// A pattern (case, `${v#pat}`): quoted characters match literally.
    pub fn expand_pattern(&mut self, w: &Word) -> Result<Vec<PChar>, Flow> {
        self.expand_nosplit(&w.parts)
    }

    fn expand_nosplit(&mut self, parts: &[WordPart]) -> Result<Vec<PChar>, Flow> {
        let mut f = Fields::default();
        self.expand_parts_into(parts, &mut f, true)?;
        // join all fields (there is only one unless "$@" produced several)
        let done = f.finish();
        let mut v = Vec::new();
        for (i, d) in done.into_iter().enumerate() {
            if i > 0 {
                v.push((' ', true));
            }
            v.extend(d);
        }
        Ok(v)
    }

    /// `nosplit`: the context does no field splitting (assignments, case, redirections).
    fn expand_parts_into(
        &mut self,
        parts: &[WordPart],
        f: &mut Fields,
        nosplit: bool,
    ) -> Result<(), Flow> {
        for p in parts {
            match p {
                WordPart::Lit(s) => f.push_lit(s, false),
                WordPart::Quoted(s) => f.push_lit(s, true),
                WordPart::Tilde(user) => {
                    let home = if user.is_empty() {
                        self.get_var("HOME").unwrap_or_else(|| "/".into())
                    } else if user == "root" {
                        "/root".into()
                    } else {
                        format!("~{user}")
                    };
                    f.push_lit(&home, true);
                }
                WordPart::Dq(inner) => {
                    f.started = true;
                    self.expand_dq(inner, f)?;
                }
                WordPart::Param(pe) => {
                    if !nosplit {
                        if let Some((items, _)) = self.param_list(pe)? {
                            let ifs = self.ifs();
                            for (i, a) in items.iter().enumerate() {
                                if i > 0 {
                                    f.end_field();
                                }
                                f.push_split(a, &ifs);
                            }
                            continue;
                        }
                        if self.picks_word(pe)? {
                            // ${v:-word} unquoted: the word's own quoting decides its splitting
                            let ifs = self.ifs();
                            for part in &pe.arg {
                                match part {
                                    WordPart::Lit(s) => f.push_split(s, &ifs),
                                    p => {
                                        self.expand_parts_into(std::slice::from_ref(p), f, nosplit)?
                                    }
                                }
                            }
                            continue;
                        }
                    }
                    let v = self.expand_param(pe, false)?;
                    if let Some(v) = v {
                        if nosplit {
                            f.push_lit(&v, false);
                            // expansion results are not glob-quoted but must not be treated as
                            // quoted either; in nosplit contexts (patterns) they stay unquoted
                        } else {
                            let ifs = self.ifs();
                            f.push_split(&v, &ifs);
                        }
                    }
                }
                WordPart::ProcSub { prog, output } => {
                    let path = self.process_subst(prog, *output)?;
                    f.push_lit(&path, true);
                }
                WordPart::Cmd(prog) => {
                    let v = self.command_subst(prog)?;
                    if nosplit {
                        f.push_lit(&v, false);
                    } else {
                        let ifs = self.ifs();
                        f.push_split(&v, &ifs);
                    }
                }
                WordPart::Subscript(w) => {
                    let sub = self.expand_string(w)?;
                    f.push_lit(&format!("[{sub}]"), false);
                }
                WordPart::ArrayLit(elems) => {
                    let text = self.array_literal_text(elems)?;
                    f.push_lit(&text, true);
                }
                WordPart::Arith(inner) => {
                    let s = self.expand_parts_string(inner)?;
                    let v = self.arith(&s)?;
                    let v = v.to_string();
                    if nosplit {
                        f.push_lit(&v, false);
                    } else {
                        let ifs = self.ifs();
                        f.push_split(&v, &ifs);
                    }
                }
            }
        }
        Ok(())
    }

    fn expand_dq(&mut self, inner: &[WordPart], f: &mut Fields) -> Result<(), Flow> {
        for p in inner {
            match p {
                WordPart::Param(pe) if is_at_list(pe) && pe.op != ParamOp::Length => {
                    let Some((params, _)) = self.param_list(pe)? else {
                        continue;
                    };
                    for (i, a) in params.iter().enumerate() {
                        if i > 0 {
                            f.end_field();
                            f.started = true;
                        }
                        f.push_lit(a, true);
                    }
                    if params.is_empty() && f.cur.is_empty() {
                        // "$@" with no parameters yields no field unless other text is present
                        f.started = inner.len() > 1 || !f.cur.is_empty();
                    }
                }
                WordPart::Param(pe) => {
                    if let Some(v) = self.expand_param(pe, true)? {
                        f.push_lit(&v, true);
                    }
                }
                WordPart::Cmd(prog) => {
                    let v = self.command_subst(prog)?;
                    f.push_lit(&v, true);
                }
                WordPart::ProcSub { .. } => {}
                WordPart::Arith(inner) => {
                    let s = self.expand_parts_string(inner)?;
                    let v = self.arith(&s)?;
                    f.push_lit(&v.to_string(), true);
                }
                WordPart::Quoted(s) | WordPart::Lit(s) => f.push_lit(s, true),
                WordPart::Dq(i) => self.expand_dq(i, f)?,
                WordPart::Tilde(u) => f.push_lit(&format!("~{u}"), true),
                WordPart::Subscript(w) => {
                    let sub = self.expand_string(w)?;
                    f.push_lit(&format!("[{sub}]"), true);
                }
                WordPart::ArrayLit(elems) => {
                    let text = self.array_literal_text(elems)?;
                    f.push_lit(&text, true);
                }
            }
        }
        Ok(())
    }

    /// The value of a parameter, `None` if unset.
    pub fn param_value(&mut self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "#" => Some(self.params.len().to_string()),
            "@" | "*" => {
                let sep = match self.get_var("IFS") {
                    Some(s) => s.chars().next().map(|c| c.to_string()).unwrap_or_default(),
                    None => " ".into(),
                };
                Some(self.params.join(&sep))
            }
            "0" => Some(self.arg0.clone()),
            "$" => Some("1".into()),
            "!" => self.jobs.last_pid.map(|pid| pid.to_string()),
            "-" => {
                let mut s = String::new();
                if self.opts.errexit {
                    s.push('e');
                }
                if self.opts.noglob {
                    s.push('f');
                }
                if self.opts.nounset {
                    s.push('u');
                }
                if self.opts.xtrace {
                    s.push('x');
                }
                Some(s)
            }
            n if n.chars().all(|c| c.is_ascii_digit()) => {
                let i: usize = n.parse().ok()?;
                self.params.get(i - 1).cloned()
            }
            "RANDOM" => Some((self.next_random() % 32768).to_string()),
            "_" if self.bash => Some(self.last_arg.clone()),
            "SECONDS" if self.bash => Some(self.started.elapsed().as_secs().to_string()),
            "LINENO" => Some(self.line.to_string()),
            "PPID" => Some(self.get_var("PPID").unwrap_or_else(|| "0".into())),
            n => self.get_var(n),
        }
    }

    /// The status a failed expansion ends a non-interactive shell with: 2 in dash, 1 in bash.
    pub fn expansion_error_status(&self) -> i32 {
        if self.bash {
            1
        } else {
            2
        }
    }

    /// Expand the text of a subscript given as a string (`unset 'a[$i]'`, `[[ -v a[k] ]]`).
    pub fn expand_subscript_text(&mut self, text: &str) -> Result<String, Flow> {
        match crate::parse::subscript_word(text) {
            Ok(w) => self.expand_string(&w),
            Err(_) => Ok(text.to_string()),
        }
    }

    /// Does `${name OP word}` expand to its word (`:-`/`-` on an unset or empty value, `:+`/`+`
    /// on a set one)?
    fn picks_word(&mut self, pe: &ParamExp) -> Result<bool, Flow> {
        let (colon, default) = match pe.op {
            ParamOp::Default { colon } => (colon, true),
            ParamOp::Alt { colon } => (colon, false),
            _ => return Ok(false),
        };
        let val = self.param_scalar(pe)?;
        let full = if colon {
            val.as_deref().is_some_and(|v| !v.is_empty())
        } else {
            val.is_some()
        };
        Ok(full != default)
    }

    /// `(a [k]=v)` expanded and re-quoted: what `declare`/`local` receive for `name=(…)`.
    pub fn array_literal_text(&mut self, elems: &[ArrayElem]) -> Result<String, Flow> {
        let mut items = Vec::new();
        for e in elems {
            let key = match &e.key {
                Some(k) => Some(self.expand_string(k)?),
                None => None,
            };
            let values = match key {
                Some(_) => vec![self.expand_string(&e.value)?],
                None => self.expand_words(std::slice::from_ref(&e.value))?,
            };
            for v in values {
                items.push(match &key {
                    Some(k) => format!(
                        "[{}]={}",
                        crate::exec::shell_quote(k),
                        crate::exec::shell_quote(&v)
                    ),
                    None => crate::exec::shell_quote(&v),
                });
            }
        }
        Ok(format!("({})", items.join(" ")))
    }

    /// Expand the elements of an array literal.
    pub fn expand_array_elems(
        &mut self,
        elems: &[ArrayElem],
    ) -> Result<Vec<crate::vars::Elem>, Flow> {
        let mut out = Vec::new();
        for e in elems {
            match &e.key {
                Some(k) => {
                    let key = self.expand_string(k)?;
                    let value = self.expand_string(&e.value)?;
                    out.push(crate::vars::Elem {
                        key: Some(key),
                        value,
                    });
                }
                None => {
                    for value in self.expand_words(std::slice::from_ref(&e.value))? {
                        out.push(crate::vars::Elem { key: None, value });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The value of `${name}`, `${name[sub]}` or `${!name}` before any operator.
    fn param_scalar(&mut self, pe: &ParamExp) -> Result<Option<String>, Flow> {
        let mut name = pe.name.clone();
        let mut index = pe.index.clone();
        if pe.indirect {
            let Some(target) = self.param_value(&name) else {
                return Ok(None);
            };
            match crate::vars::split_subscript(&target) {
                Some((n, sub)) => {
                    name = n.to_string();
                    index = Some(Subscript::Expr(crate::parse::lit_word(sub)));
                }
                None => name = target,
            }
        }
        match index {
            Some(Subscript::Expr(w)) => {
                let sub = self.expand_string(&w)?;
                match self.get_elem(&name, &sub) {
                    Ok(v) => Ok(v),
                    Err(m) => {
                        self.errmsg(&m);
                        Err(Flow::Exit(1))
                    }
                }
            }
            Some(_) => {
                // ${a[@]} in a scalar context: the values joined by spaces
                let v = self.array_values(&name);
                Ok((!v.is_empty() || self.vars.contains_key(&name)).then(|| v.join(" ")))
            }
            None => Ok(self.param_value(&name)),
        }
    }

    /// `${a[@]}`, `${a[*]}`, `$@`, `$*`, `${!a[@]}`, `${!prefix@}`: the items (after the
    /// operator, applied to each) and whether they join like `*`. `None` for scalar expansions.
    fn param_list(&mut self, pe: &ParamExp) -> Result<Option<(Vec<String>, bool)>, Flow> {
        let (items, star) = match (&pe.index, pe.name.as_str()) {
            (None, "@" | "*") if !pe.indirect => (self.params.clone(), pe.name == "*"),
            (Some(Subscript::All), _) | (Some(Subscript::Star), _) => {
                let star = pe.index == Some(Subscript::Star);
                let items = if pe.indirect {
                    self.array_keys(&pe.name)
                } else {
                    self.array_values(&pe.name)
                };
                (items, star)
            }
            _ => {
                if let ParamOp::Names { star } = pe.op {
                    let mut names: Vec<String> = self
                        .vars
                        .keys()
                        .filter(|k| k.starts_with(&pe.name))
                        .cloned()
                        .collect();
                    names.sort();
                    return Ok(Some((names, star)));
                }
                return Ok(None);
            }
        };
        let items = match pe.op {
            ParamOp::Plain => items,
            ParamOp::Length => return Ok(None),
            ParamOp::Default { colon } | ParamOp::Alt { colon } => {
                let set = !items.is_empty();
                let full = if colon {
                    items.iter().any(|s| !s.is_empty())
                } else {
                    set
                };
                let use_arg = match pe.op {
                    ParamOp::Default { .. } => !full,
                    _ => full,
                };
                if use_arg {
                    vec![self.expand_parts_string(&pe.arg)?]
                } else if matches!(pe.op, ParamOp::Alt { .. }) {
                    Vec::new()
                } else {
                    items
                }
            }
            ParamOp::Substring => {
                let off_s = self.expand_parts_string(&pe.arg)?;
                let mut off = self.arith(&off_s)?;
                let mut items = items;
                if pe.index.is_none() {
                    // positional parameters count from $0
                    items.insert(0, self.arg0.clone());
                }
                let n = items.len() as i64;
                if off < 0 {
                    off = (n + off).max(0);
                }
                let start = off.min(n) as usize;
                let end = match &pe.arg2 {
                    Some(a) => {
                        let l = self.expand_parts_string(a)?;
                        let l = self.arith(&l)?;
                        if l < 0 {
                            let m = format!("{}: substring expression < 0", l);
                            self.errmsg(&m);
                            return Err(Flow::Exit(1));
                        }
                        (start + l as usize).min(items.len())
                    }
                    None => items.len(),
                };
                items[start..end].to_vec()
            }
            _ => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    if let Some(v) = self.apply_op(pe, Some(it))? {
                        out.push(v);
                    }
                }
                out
            }
        };
        Ok(Some((items, star)))
    }

    fn expand_param(&mut self, pe: &ParamExp, in_dq: bool) -> Result<Option<String>, Flow> {
        let _ = in_dq;
        if pe.op == ParamOp::Length && pe.index.is_some() {
            if let Some(Subscript::All | Subscript::Star) = pe.index {
                let n = match self.vars.get(&pe.name) {
                    Some(v) => v.values().len(),
                    None => 0,
                };
                return Ok(Some(n.to_string()));
            }
        }
        if let Some((items, star)) = self.param_list(pe)? {
            let sep = if star {
                match self.get_var("IFS") {
                    Some(s) => s.chars().next().map(|c| c.to_string()).unwrap_or_default(),
                    None => " ".into(),
                }
            } else {
                " ".into()
            };
            return Ok(Some(items.join(&sep)));
        }
        let val = self.param_scalar(pe)?;
        self.apply_op(pe, val)
    }

    /// Apply `${name OP word}` to a value (`None`: unset).
    fn apply_op(&mut self, pe: &ParamExp, val: Option<String>) -> Result<Option<String>, Flow> {
        let is_set = val.is_some();
        let nonempty = val.as_deref().is_some_and(|v| !v.is_empty());
        let check_unset = |sh: &mut Shell, val: &Option<String>| -> Result<(), Flow> {
            if val.is_none() && sh.opts.nounset && pe.name != "@" && pe.name != "*" {
                let m = format!("{}: parameter not set", pe.name);
                sh.errmsg(&m);
                return Err(Flow::Exit(sh.expansion_error_status()));
            }
            Ok(())
        };
        match pe.op {
            ParamOp::Plain => {
                check_unset(self, &val)?;
                Ok(val)
            }
            ParamOp::Length => {
                check_unset(self, &val)?;
                Ok(Some(val.unwrap_or_default().chars().count().to_string()))
            }
            ParamOp::Default { colon } => {
                if if colon { nonempty } else { is_set } {
                    Ok(val)
                } else {
                    Ok(Some(self.expand_parts_string(&pe.arg)?))
                }
            }
            ParamOp::Assign { colon } => {
                if if colon { nonempty } else { is_set } {
                    Ok(val)
                } else {
                    let v = self.expand_parts_string(&pe.arg)?;
                    if !crate::parse::is_name(&pe.name) {
                        let m = format!("{}: bad variable name", pe.name);
                        self.errmsg(&m);
                        return Err(Flow::Exit(self.expansion_error_status()));
                    }
                    if let Err(m) = self.set_var(&pe.name, &v) {
                        self.errmsg(&m);
                        return Err(Flow::Exit(self.expansion_error_status()));
                    }
                    Ok(Some(v))
                }
            }
            ParamOp::Error { colon } => {
                if if colon { nonempty } else { is_set } {
                    Ok(val)
                } else {
                    let m = self.expand_parts_string(&pe.arg)?;
                    let m = if m.is_empty() {
                        "parameter null or not set".to_string()
                    } else {
                        m
                    };
                    let msg = format!("{}: {}", pe.name, m);
                    self.errmsg(&msg);
                    Err(Flow::Exit(self.expansion_error_status()))
                }
            }
            ParamOp::Alt { colon } => {
                if if colon { nonempty } else { is_set } {
                    Ok(Some(self.expand_parts_string(&pe.arg)?))
                } else {
                    Ok(Some(String::new()))
                }
            }
            ParamOp::RemoveSmallestPrefix
            | ParamOp::RemoveLargestPrefix
            | ParamOp::RemoveSmallestSuffix
            | ParamOp::RemoveLargestSuffix => {
                check_unset(self, &val)?;
                let v: Vec<char> = val.unwrap_or_default().chars().collect();
                let pat = self.expand_nosplit(&pe.arg)?;
                let n = v.len();
                let r = match pe.op {
                    ParamOp::RemoveSmallestPrefix => (0..=n)
                        .find(|&i| pat_match(&pat, &v[..i]))
                        .map(|i| v[i..].to_vec()),
                    ParamOp::RemoveLargestPrefix => (0..=n)
                        .rev()
                        .find(|&i| pat_match(&pat, &v[..i]))
                        .map(|i| v[i..].to_vec()),
                    ParamOp::RemoveSmallestSuffix => (0..=n)
                        .rev()
                        .find(|&i| pat_match(&pat, &v[i..]))
                        .map(|i| v[..i].to_vec()),
                    _ => (0..=n)
                        .find(|&i| pat_match(&pat, &v[i..]))
                        .map(|i| v[..i].to_vec()),
                };
                Ok(Some(r.unwrap_or(v).into_iter().collect()))
            }
            ParamOp::Replace { all, anchor } => {
                check_unset(self, &val)?;
                let v: Vec<char> = val.unwrap_or_default().chars().collect();
                let pat = self.expand_nosplit(&pe.arg)?;
                let rep = match &pe.arg2 {
                    Some(a) => self.expand_parts_string(a)?,
                    None => String::new(),
                };
                let mut out = String::new();
                let n = v.len();
                let mut i = 0;
                let mut replaced = false;
                while i <= n {
                    if (all || !replaced) && (anchor != b'#' || i == 0) {
                        let ends: Vec<usize> = if anchor == b'%' {
                            vec![n]
                        } else {
                            (i..=n).rev().collect()
                        };
                        let mut hit = None;
                        for e in ends {
                            if e < i {
                                continue;
                            }
                            if (e > i || pat.is_empty()) && pat_match(&pat, &v[i..e]) {
                                hit = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = hit {
                            if e > i {
                                out.push_str(&rep);
                                replaced = true;
                                i = e;
                                continue;
                            }
                        }
                    }
                    if i < n {
                        out.push(v[i]);
                    }
                    i += 1;
                }
                Ok(Some(out))
            }
            ParamOp::Substring => {
                check_unset(self, &val)?;
                let v: Vec<char> = val.unwrap_or_default().chars().collect();
                let off_s = self.expand_parts_string(&pe.arg)?;
                let off = self.arith(&off_s)?;
                let n = v.len() as i64;
                let start = if off < 0 {
                    (n + off).max(0)
                } else {
                    off.min(n)
                };
                let end = match &pe.arg2 {
                    Some(a) => {
                        let l = self.expand_parts_string(a)?;
                        let l = self.arith(&l)?;
                        if l < 0 {
                            (n + l).max(start)
                        } else {
                            (start + l).min(n)
                        }
                    }
                    None => n,
                };
                Ok(Some(
                    v[start as usize..end.max(start) as usize].iter().collect(),
                ))
            }
            ParamOp::Names { .. } => Ok(None),
            ParamOp::Transform { op } => {
                let Some(v) = val else {
                    return Ok(None);
                };
                Ok(Some(match op {
                    'Q' | 'K' => format!("'{}'", v.replace('\'', "'\\''")),
                    'E' => crate::builtins::echo_escapes(&v, false, true).0,
                    'U' => v.to_uppercase(),
                    'L' => v.to_lowercase(),
                    'u' => {
                        let mut c = v.chars();
                        c.next()
                            .map(|f| f.to_uppercase().chain(c).collect())
                            .unwrap_or_default()
                    }
                    'a' => {
                        let var = self.vars.get(&pe.name);
                        let mut flags = String::new();
                        if let Some(var) = var {
                            match var.value {
                                crate::vars::Value::Indexed(_) => flags.push('a'),
                                crate::vars::Value::Assoc(_) => flags.push('A'),
                                _ => {}
                            }
                            if var.attrs.integer {
                                flags.push('i');
                            }
                            if var.readonly {
                                flags.push('r');
                            }
                            if var.exported {
                                flags.push('x');
                            }
                        }
                        flags
                    }
                    'A' => format!("{}='{}'", pe.name, v.replace('\'', "'\\''")),
                    _ => v,
                }))
            }
            ParamOp::Case { upper, all } => {
                check_unset(self, &val)?;
                let v = val.unwrap_or_default();
                // `${v^^pat}`: only characters matching the pattern (default: any)
                let pat = if pe.arg.is_empty() {
                    None
                } else {
                    Some(self.expand_nosplit(&pe.arg)?)
                };
                let mut out = String::with_capacity(v.len());
                for (i, c) in v.chars().enumerate() {
                    let eligible =
                        (all || i == 0) && pat.as_ref().is_none_or(|p| pat_match(p, &[c]));
                    if !eligible {
                        out.push(c);
                    } else if upper {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                }
                Ok(Some(out))
            }
        }
    }
}

/// bash brace expansion on the unquoted literal parts of a word: `{a,b}` and `{1..5}`.
pub fn brace_expand(w: &Word) -> Option<Vec<Word>> {
    // only handle the simple case where the braces are inside one Lit part
    for (i, p) in w.parts.iter().enumerate() {
        let WordPart::Lit(s) = p else { continue };
        let Some(open) = s.find('{') else { continue };
        let mut depth = 0;
        let mut close = None;
        for (j, ch) in s[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close?;
        let inner = &s[open + 1..close];
        let pre = &s[..open];
        let post = &s[close + 1..];
        let alts: Vec<String> = if let Some((a, b)) = inner.split_once("..") {
            let (a2, step) = match b.split_once("..") {
                Some((b2, st)) => (b2, st.parse::<i64>().ok()?.abs().max(1)),
                None => (b, 1),
            };
            if let (Ok(x), Ok(y)) = (a.parse::<i64>(), a2.parse::<i64>()) {
                let width = if (a.starts_with('0') && a.len() > 1)
                    || (a2.starts_with('0') && a2.len() > 1)
                {
                    a.len().max(a2.len())
                } else {
                    0
                };
                let mut v = Vec::new();
                let mut k = x;
                if (x - y).abs() / step > 100_000 {
                    return None;
                }
                loop {
                    v.push(format!("{k:0width$}"));
                    if k == y {
                        break;
                    }
                    if x < y {
                        k += step;
                        if k > y {
                            break;
                        }
                    } else {
                        k -= step;
                        if k < y {
                            break;
                        }
                    }
                }
                v
            } else if a.chars().count() == 1 && a2.chars().count() == 1 {
                let (x, y) = (a.chars().next()? as u32, a2.chars().next()? as u32);
                let r: Vec<u32> = if x <= y {
                    (x..=y).collect()
                } else {
                    (y..=x).rev().collect()
                };
                r.into_iter()
                    .step_by(step as usize)
                    .filter_map(char::from_u32)
                    .map(|c| c.to_string())
                    .collect()
            } else {
                return None;
            }
        } else {
            // split on top-level commas
            let mut v = Vec::new();
            let mut depth = 0;
            let mut cur = String::new();
            for ch in inner.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        cur.push(ch)
                    }
                    '}' => {
                        depth -= 1;
                        cur.push(ch)
                    }
                    ',' if depth == 0 => v.push(std::mem::take(&mut cur)),
                    _ => cur.push(ch),
                }
            }
            v.push(cur);
            if v.len() < 2 {
                return None;
            }
            v
        };
        let mut out = Vec::new();
        for a in alts {
            let mut parts = w.parts[..i].to_vec();
            parts.push(WordPart::Lit(format!("{pre}{a}{post}")));
            parts.extend(w.parts[i + 1..].iter().cloned());
            let nw = Word {
                raw: w.raw.clone(),
                parts,
            };
            match brace_expand(&nw) {
                Some(more) => out.extend(more),
                None => out.push(nw),
            }
        }
        return Some(out);
    }
    None
}
