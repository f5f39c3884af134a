//! What the shell may start: the modules behind program names and the limits of one tree.

use std::path::PathBuf;

use super::open::normalize;

/// An interpreter the shell may start by name (`python3 …`, `node …`).
#[derive(Clone, Debug)]
pub struct Interpreter {
    /// The module file.
    pub module: PathBuf,
    /// Replaces argv[0] (e.g. `["qjs", "--std", "-I", "/usr/lib/wasmbox/prelude.js"]`).
    pub argv_prefix: Vec<String>,
    /// Added to the child's environment (e.g. `PYTHONPATH`).
    pub env: Vec<(String, String)>,
}

/// Enables the `wasmbox.spawn` import for an execution (set [`ExecSpec::spawn`]).
#[derive(Clone, Debug)]
pub struct SpawnConfig {
    /// `sh.wasm`: runs every command that is not python/node (its applets, `sh`, `bash`).
    pub shell: PathBuf,
    /// `python`, `python3`.
    pub python: Option<Interpreter>,
    /// `node`, `nodejs`.
    pub javascript: Option<Interpreter>,
    /// Child instances one execution may start in total.
    pub max_total: u32,
    /// Child instances alive at once in one execution.
    pub max_concurrent: u32,
    /// Nesting depth of spawning instances (the top-level program is depth 0).
    pub max_depth: u32,
}

impl SpawnConfig {
    /// Limits that stop `f(){ f|f; }; f` within a few hundred instances.
    pub fn new(shell: PathBuf) -> Self {
        Self {
            shell,
            python: None,
            javascript: None,
            max_total: 512,
            max_concurrent: 32,
            max_depth: 16,
        }
    }

    /// Module, argv and extra environment for a command line.
    pub(super) fn resolve(&self, argv: &[String], cwd: &str) -> Result<Resolved, String> {
        let name = argv.first().map(String::as_str).unwrap_or("");
        let interp = match name {
            "python" | "python3" | "python3.12" => Some((&self.python, "python")),
            "node" | "nodejs" => Some((&self.javascript, "node")),
            _ => None,
        };
        match interp {
            Some((Some(i), what)) => {
                let mut a = i.argv_prefix.clone();
                let mut rest = argv[1..].to_vec();
                if what == "python" {
                    absolute_script_path(&mut rest, cwd);
                }
                a.extend(rest);
                Ok((i.module.clone(), a, i.env.clone()))
            }
            Some((None, what)) => Err(format!(
                "{name}: the {what} runtime is not installed in this sandbox"
            )),
            None => Ok((self.shell.clone(), argv.to_vec(), Vec::new())),
        }
    }
}

/// Module, argv and extra environment of a program to start.
pub(super) type Resolved = (PathBuf, Vec<String>, Vec<(String, String)>);

/// CPython makes its script path absolute from the process's initial directory (`/` under WASI)
/// before `sitecustomize` can move to `$PWD`, so give it an absolute path.
fn absolute_script_path(args: &mut [String], cwd: &str) {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-c" | "-m" | "-" => return,
            "-W" | "-X" | "-Q" => i += 2,
            _ if a.starts_with('-') => i += 1,
            _ => {
                if !a.starts_with('/') {
                    args[i] = normalize(&format!("{cwd}/{a}"));
                }
                return;
            }
        }
    }
}
