//! Shell variables: scalars, bash indexed arrays and associative arrays, and their attributes.
//!
//! A scalar and element 0 of an indexed array are the same thing to the rest of the shell
//! (`$a` is `${a[0]}`), so [`Shell::get_var`]/[`Shell::set_var`] work on every kind of variable
//! and only the array-aware code (subscripts, `a=(…)`, `declare -a/-A`) looks further.

use crate::exec::Shell;
use std::collections::BTreeMap;

/// The value of a variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// Sparse, ordered by index (`${!a[@]}` lists indices in increasing order).
    Indexed(BTreeMap<i64, String>),
    /// Keys kept sorted: bash's order is a hash order nobody can rely on; sorted is predictable.
    Assoc(BTreeMap<String, String>),
}

/// `declare -i/-l/-u`: transformations applied on every assignment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Attrs {
    pub integer: bool,
    pub lower: bool,
    pub upper: bool,
    /// `declare -n`: the value names the variable this one stands for.
    pub nameref: bool,
}

#[derive(Debug, Clone)]
pub struct Var {
    pub value: Value,
    pub exported: bool,
    pub readonly: bool,
    pub attrs: Attrs,
}

impl Var {
    pub fn scalar(value: &str, exported: bool) -> Var {
        Var {
            value: Value::Str(value.to_string()),
            exported,
            readonly: false,
            attrs: Attrs::default(),
        }
    }

    /// `$name`: the string, element 0 of an indexed array, key "0" of an associative one.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            Value::Indexed(m) => m.get(&0).map(String::as_str),
            Value::Assoc(m) => m.get("0").map(String::as_str),
        }
    }

    pub fn is_array(&self) -> bool {
        !matches!(self.value, Value::Str(_))
    }

    /// The values, in order (`${a[@]}`); a scalar is a one-element list.
    pub fn values(&self) -> Vec<String> {
        match &self.value {
            Value::Str(s) => vec![s.clone()],
            Value::Indexed(m) => m.values().cloned().collect(),
            Value::Assoc(m) => m.values().cloned().collect(),
        }
    }

    /// The subscripts, in order (`${!a[@]}`).
    pub fn keys(&self) -> Vec<String> {
        match &self.value {
            Value::Str(_) => vec!["0".into()],
            Value::Indexed(m) => m.keys().map(|k| k.to_string()).collect(),
            Value::Assoc(m) => m.keys().cloned().collect(),
        }
    }
}

/// Element of an array literal `(a [k]=v …)`, already expanded.
pub struct Elem {
    pub key: Option<String>,
    pub value: String,
}

impl Shell {
    /// The variable `name` stands for, following `declare -n` references (a few levels).
    pub fn resolve_name(&self, name: &str) -> String {
        let mut n = name.to_string();
        for _ in 0..8 {
            match self.vars.get(&n) {
                Some(v) if v.attrs.nameref => match v.text() {
                    Some(t) if !t.is_empty() && t != n => n = t.to_string(),
                    _ => break,
                },
                _ => break,
            }
        }
        n
    }

    /// Apply `declare -i/-l/-u` to a value about to be stored in `name` (`old` for `+=`).
    fn transform(
        &mut self,
        attrs: Attrs,
        value: &str,
        old: Option<&str>,
    ) -> Result<String, String> {
        let mut v = if attrs.integer {
            let n = self
                .arith(value)
                .map_err(|_| format!("{value}: arithmetic syntax error"))?;
            match old {
                Some(o) => (self.arith(o).unwrap_or(0).wrapping_add(n)).to_string(),
                None => n.to_string(),
            }
        } else {
            match old {
                Some(o) => format!("{o}{value}"),
                None => value.to_string(),
            }
        };
        if attrs.lower {
            v = v.to_lowercase();
        } else if attrs.upper {
            v = v.to_uppercase();
        }
        Ok(v)
    }

    fn attrs_of(&self, name: &str) -> Attrs {
        self.vars.get(name).map(|v| v.attrs).unwrap_or_default()
    }

    fn check_writable(&self, name: &str) -> Result<(), String> {
        match self.vars.get(name) {
            Some(v) if v.readonly => Err(format!("{name}: readonly variable")),
            _ => Ok(()),
        }
    }

    /// `name=value` / `name+=value` (scalar, or element 0 / key "0" of an array).
    pub fn assign_scalar(&mut self, name: &str, value: &str, append: bool) -> Result<(), String> {
        if !append && self.attrs_of(name) == Attrs::default() {
            return self.set_var(name, value);
        }
        self.assign_elem(name, "0", value, append)
    }

    /// Evaluate a subscript of an indexed array (arithmetic; negative counts from the end).
    fn index_of(&mut self, name: &str, sub: &str) -> Result<i64, String> {
        let i = self
            .arith(sub)
            .map_err(|_| format!("{sub}: bad array subscript"))?;
        if i >= 0 {
            return Ok(i);
        }
        let len = match self.vars.get(name).map(|v| &v.value) {
            Some(Value::Indexed(m)) => m.keys().next_back().map(|k| k + 1).unwrap_or(0),
            Some(Value::Str(_)) => 1,
            _ => 0,
        };
        if len + i < 0 {
            return Err(format!("{name}[{sub}]: bad array subscript"));
        }
        Ok(len + i)
    }

    /// `${name[sub]}`.
    pub fn get_elem(&mut self, name: &str, sub: &str) -> Result<Option<String>, String> {
        let resolved = self.resolve_name(name);
        let name = resolved.as_str();
        let assoc = matches!(self.vars.get(name).map(|v| &v.value), Some(Value::Assoc(_)));
        if assoc {
            return Ok(match self.vars.get(name).map(|v| &v.value) {
                Some(Value::Assoc(m)) => m.get(sub).cloned(),
                _ => None,
            });
        }
        if !self.vars.contains_key(name) {
            // still evaluate the subscript (side effects, errors)
            self.arith(sub)
                .map_err(|_| format!("{sub}: bad array subscript"))?;
            return Ok(None);
        }
        let i = self.index_of(name, sub)?;
        Ok(match self.vars.get(name).map(|v| &v.value) {
            Some(Value::Indexed(m)) => m.get(&i).cloned(),
            Some(Value::Str(s)) if i == 0 => Some(s.clone()),
            _ => None,
        })
    }

    /// `name[sub]=value` / `name[sub]+=value`.
    pub fn assign_elem(
        &mut self,
        name: &str,
        sub: &str,
        value: &str,
        append: bool,
    ) -> Result<(), String> {
        let resolved = self.resolve_name(name);
        let name = resolved.as_str();
        self.check_writable(name)?;
        let attrs = self.attrs_of(name);
        let assoc = matches!(self.vars.get(name).map(|v| &v.value), Some(Value::Assoc(_)));
        if assoc {
            let old = match self.vars.get(name).map(|v| &v.value) {
                Some(Value::Assoc(m)) if append => m.get(sub).cloned(),
                _ => None,
            };
            let v = self.transform(attrs, value, old.as_deref())?;
            if let Some(Var {
                value: Value::Assoc(m),
                ..
            }) = self.vars.get_mut(name)
            {
                m.insert(sub.to_string(), v);
            }
            return Ok(());
        }
        let i = self.index_of(name, sub)?;
        let old = if append {
            self.get_elem(name, &i.to_string())?
        } else {
            None
        };
        let v = self.transform(attrs, value, old.as_deref())?;
        let exported = self.opts.allexport;
        let var = self.vars.entry(name.to_string()).or_insert_with(|| Var {
            value: Value::Indexed(Default::default()),
            ..Var::scalar("", exported)
        });
        match &mut var.value {
            Value::Str(s) if i == 0 => *s = v,
            Value::Str(s) => {
                let mut m = BTreeMap::new();
                m.insert(0, std::mem::take(s));
                m.insert(i, v);
                var.value = Value::Indexed(m);
            }
            Value::Indexed(m) => {
                m.insert(i, v);
            }
            Value::Assoc(_) => {}
        }
        Ok(())
    }

    /// `name=(…)` / `name+=(…)`; `assoc` when `declare -A` made (or makes) it associative.
    pub fn assign_array(
        &mut self,
        name: &str,
        elems: Vec<Elem>,
        append: bool,
        assoc: bool,
    ) -> Result<(), String> {
        let resolved = self.resolve_name(name);
        let name = resolved.as_str();
        self.check_writable(name)?;
        let attrs = self.attrs_of(name);
        let existing_assoc = matches!(self.vars.get(name).map(|v| &v.value), Some(Value::Assoc(_)));
        if assoc || existing_assoc {
            let mut m = match self.vars.get(name).map(|v| &v.value) {
                Some(Value::Assoc(m)) if append => m.clone(),
                _ => BTreeMap::new(),
            };
            for e in elems {
                let Some(k) = e.key else {
                    return Err(format!(
                        "{name}: {}: must use subscript when assigning associative array",
                        e.value
                    ));
                };
                let v = self.transform(attrs, &e.value, None)?;
                m.insert(k, v);
            }
            self.put(name, Value::Assoc(m));
            return Ok(());
        }
        let mut m = match self.vars.get(name).map(|v| &v.value) {
            Some(Value::Indexed(m)) if append => m.clone(),
            Some(Value::Str(s)) if append => BTreeMap::from([(0, s.clone())]),
            _ => BTreeMap::new(),
        };
        let mut next = m.keys().next_back().map(|k| k + 1).unwrap_or(0);
        for e in elems {
            let i = match e.key {
                Some(k) => self
                    .arith(&k)
                    .map_err(|_| format!("{k}: bad array subscript"))?,
                None => next,
            };
            let v = self.transform(attrs, &e.value, None)?;
            m.insert(i, v);
            next = i + 1;
        }
        self.put(name, Value::Indexed(m));
        Ok(())
    }

    /// Store a whole value, keeping the variable's flags.
    pub fn put(&mut self, name: &str, value: Value) {
        let exported = self.opts.allexport;
        let var = self
            .vars
            .entry(name.to_string())
            .or_insert_with(|| Var::scalar("", exported));
        var.value = value;
    }

    /// `unset 'name[sub]'`.
    pub fn unset_elem(&mut self, name: &str, sub: &str) -> Result<(), String> {
        self.check_writable(name)?;
        let assoc = matches!(self.vars.get(name).map(|v| &v.value), Some(Value::Assoc(_)));
        if assoc {
            if let Some(Var {
                value: Value::Assoc(m),
                ..
            }) = self.vars.get_mut(name)
            {
                m.remove(sub);
            }
            return Ok(());
        }
        if !self.vars.contains_key(name) {
            return Ok(());
        }
        let i = self.index_of(name, sub)?;
        let var_is_str = matches!(self.vars.get(name).map(|v| &v.value), Some(Value::Str(_)));
        if var_is_str {
            if i == 0 {
                self.vars.remove(name);
            }
            return Ok(());
        }
        if let Some(Var {
            value: Value::Indexed(m),
            ..
        }) = self.vars.get_mut(name)
        {
            m.remove(&i);
        }
        Ok(())
    }

    /// The values of `name` as a list (`${name[@]}`); empty when unset.
    pub fn array_values(&self, name: &str) -> Vec<String> {
        self.vars
            .get(&self.resolve_name(name))
            .map(Var::values)
            .unwrap_or_default()
    }

    /// The subscripts of `name` (`${!name[@]}`); empty when unset.
    pub fn array_keys(&self, name: &str) -> Vec<String> {
        self.vars
            .get(&self.resolve_name(name))
            .map(Var::keys)
            .unwrap_or_default()
    }
}

/// Split `name[sub]` into its parts (for `unset`, `read`, `printf -v`, `[[ -v ]]`).
pub fn split_subscript(s: &str) -> Option<(&str, &str)> {
    let open = s.find('[')?;
    let inner = s[open + 1..].strip_suffix(']')?;
    let name = &s[..open];
    crate::parse::is_name(name).then_some((name, inner))
}

/// `"…"` quoting as `declare -p` prints it.
fn dq(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// The `declare` line that recreates `name` (what `declare -p name` prints, and how arrays
/// travel to child shells).
pub fn declare_line(name: &str, v: &Var) -> String {
    let mut flags = String::new();
    match v.value {
        Value::Indexed(_) => flags.push('a'),
        Value::Assoc(_) => flags.push('A'),
        Value::Str(_) => {}
    }
    for (on, c) in [
        (v.attrs.integer, 'i'),
        (v.attrs.lower, 'l'),
        (v.attrs.nameref, 'n'),
        (v.readonly, 'r'),
        (v.attrs.upper, 'u'),
        (v.exported, 'x'),
    ] {
        if on {
            flags.push(c);
        }
    }
    if flags.is_empty() {
        flags.push('-');
    }
    let value = match &v.value {
        Value::Str(s) => dq(s),
        Value::Indexed(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("[{k}]={}", dq(v))).collect();
            format!("({})", items.join(" "))
        }
        Value::Assoc(m) => {
            let items: String = m
                .iter()
                .map(|(k, v)| format!("[{}]={} ", crate::exec::shell_quote(k), dq(v)))
                .collect();
            format!("({items})")
        }
    };
    format!("declare -{flags} {name}={value}")
}

impl Shell {
    /// Perform one assignment word of a command without a command name (or of `declare`).
    /// Err carries the message.
    pub fn perform_assign(
        &mut self,
        a: &crate::ast::Assign,
    ) -> Result<Result<(), String>, crate::exec::Flow> {
        use crate::ast::AssignValue;
        match &a.value {
            AssignValue::Array(elems) => {
                let elems = self.expand_array_elems(elems)?;
                Ok(self.assign_array(&a.name, elems, a.append, false))
            }
            AssignValue::Scalar(w) => {
                let v = self.expand_assign(w)?;
                if self.opts.xtrace {
                    let s = format!(
                        "{}{}{}={}\n",
                        self.get_var("PS4").unwrap_or_else(|| "+ ".into()),
                        a.name,
                        if a.append { "+" } else { "" },
                        crate::exec::shell_quote(&v)
                    );
                    self.err(&s);
                }
                match &a.index {
                    Some(sub) => {
                        let sub = self.expand_string(sub)?;
                        Ok(self.assign_elem(&a.name, &sub, &v, a.append))
                    }
                    None => Ok(self.assign_scalar(&a.name, &v, a.append)),
                }
            }
        }
    }
}
