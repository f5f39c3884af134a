//! What the shell may start: the modules behind program names and the limits of one tree.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::open::normalize;
use crate::engine::{Limits, PreparedModule};

/// Builds a program from source for the shell's `go run FILE.go`, inside the sandbox's limits.
/// The executor implements it (the toolchain is a runtime, above the engine); the engine only
/// reads the source file from the sandbox and runs what comes back as the stage.
pub trait ProgramBuilder: Send + Sync {
    /// The program built from `source`, the contents of the file `file_name` (cached or
    /// compiled, within `limits` until `deadline`).
    fn build(
        &self,
        source: String,
        file_name: String,
        limits: Limits,
        deadline: Instant,
    ) -> BuildFuture<'_>;

    /// What `go version` prints.
    fn version(&self) -> String;
}

/// What [`ProgramBuilder::build`] returns.
pub type BuildFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<PreparedModule>, BuildFailure>> + Send + 'a>>;

/// A build that produced no program: the toolchain's messages and the exit status to report.
#[derive(Debug)]
pub struct BuildFailure {
    /// Printed on the stage's stderr.
    pub message: String,
    /// The stage's exit status.
    pub status: i32,
}

/// A command the host answers itself on the sandbox's behalf (the shell's `pip`): it runs no
/// guest code, and what it prints becomes the stage's output.
pub trait HostCommand: Send + Sync {
    /// Runs with `args` (after the command name) in the guest directory `cwd`.
    fn run(&self, args: Vec<String>, cwd: String) -> CommandFuture<'_>;
}

/// What [`HostCommand::run`] returns.
pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = CommandOutput> + Send + 'a>>;

/// A host command's output and exit status.
#[derive(Debug, Default)]
pub struct CommandOutput {
    /// The stage's stdout.
    pub stdout: String,
    /// The stage's stderr.
    pub stderr: String,
    /// The stage's exit status.
    pub status: i32,
}

/// Source files `go run` reads, at most (a single-file program; bigger is not a program).
pub(super) const MAX_SOURCE_BYTES: u64 = 4 << 20;

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
#[derive(Clone)]
pub struct SpawnConfig {
    /// `sh.wasm`: runs every command that is not python/node (its applets, `sh`, `bash`).
    pub shell: PathBuf,
    /// `python`, `python3`.
    pub python: Option<Interpreter>,
    /// `node`, `nodejs`.
    pub javascript: Option<Interpreter>,
    /// `go run`: builds Go programs from the sandbox's source files.
    pub go: Option<Arc<dyn ProgramBuilder>>,
    /// `pip`, `pip3`, `python3 -m pip`: packages into the sandbox's site-packages.
    pub pip: Option<Arc<dyn HostCommand>>,
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
            go: None,
            pip: None,
            max_total: 512,
            max_concurrent: 32,
            max_depth: 16,
        }
    }

    /// What to start for a command line: a module with argv and extra environment, a program to
    /// build from source first (`go run`), or an answer without any instance.
    pub(super) fn resolve(&self, argv: &[String], cwd: &str) -> Result<Resolved, String> {
        let name = argv.first().map(String::as_str).unwrap_or("");
        let pip_args = match (name, argv.get(1).map(String::as_str), argv.get(2)) {
            ("pip" | "pip3", _, _) => Some(&argv[1..]),
            ("python" | "python3" | "python3.12", Some("-m"), Some(module)) if module == "pip" => {
                Some(&argv[3..])
            }
            _ => None,
        };
        if let Some(args) = pip_args {
            return match &self.pip {
                Some(command) => Ok(Resolved::Host {
                    command: command.clone(),
                    args: args.to_vec(),
                }),
                None => Err("pip: package installation is not available in this sandbox".into()),
            };
        }
        let interp = match name {
            "python" | "python3" | "python3.12" => Some((&self.python, "python")),
            "node" | "nodejs" => Some((&self.javascript, "node")),
            "go" => {
                return match &self.go {
                    Some(builder) => Ok(go_command(builder, &argv[1..], cwd)),
                    None => Err("go: the go runtime is not installed in this sandbox".into()),
                }
            }
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
                Ok(Resolved::Module(i.module.clone(), a, i.env.clone()))
            }
            Some((None, what)) => Err(format!(
                "{name}: the {what} runtime is not installed in this sandbox"
            )),
            None => Ok(Resolved::Module(
                self.shell.clone(),
                argv.to_vec(),
                Vec::new(),
            )),
        }
    }
}

impl std::fmt::Debug for SpawnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnConfig")
            .field("shell", &self.shell)
            .field("python", &self.python)
            .field("javascript", &self.javascript)
            .field("go", &self.go.is_some())
            .field("pip", &self.pip.is_some())
            .field("max_total", &self.max_total)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

/// What a stage of a spawn request starts.
pub(super) enum Resolved {
    /// Module, argv and extra environment of a program to start.
    Module(PathBuf, Vec<String>, Vec<(String, String)>),
    /// Build the program in the source file (absolute guest path) first, then run it with argv.
    Build {
        builder: Arc<dyn ProgramBuilder>,
        source: String,
        argv: Vec<String>,
    },
    /// A command the host answers itself, with these arguments.
    Host {
        command: Arc<dyn HostCommand>,
        args: Vec<String>,
    },
    /// No instance: print this (on stdout for status 0, else on stderr) and end with `status`.
    Answer { text: String, status: i32 },
}

/// `go run FILE.go [args]` (or a folder holding `main.go`), `go version`; the rest of the `go`
/// command needs a module-aware build that runs tools as subprocesses, which WASI cannot.
fn go_command(builder: &Arc<dyn ProgramBuilder>, args: &[String], cwd: &str) -> Resolved {
    let refuse = |text: String| Resolved::Answer { text, status: 2 };
    match args.first().map(String::as_str) {
        Some("version") => Resolved::Answer {
            text: format!("{}\n", builder.version()),
            status: 0,
        },
        Some("run") => {
            let mut rest = args[1..].iter().skip_while(|a| a.starts_with('-'));
            let Some(target) = rest.next() else {
                return refuse("go: no go files listed\n".into());
            };
            let path = if target.starts_with('/') {
                normalize(target)
            } else {
                normalize(&format!("{cwd}/{target}"))
            };
            let source = if target.ends_with(".go") {
                path
            } else {
                format!("{path}/main.go")
            };
            if rest.clone().next().is_some_and(|a| a.ends_with(".go")) {
                return refuse(
                    "go run: only single-file programs can be built here (one .go file)\n".into(),
                );
            }
            let mut argv = vec!["main".to_string()];
            argv.extend(rest.cloned());
            Resolved::Build {
                builder: builder.clone(),
                source,
                argv,
            }
        }
        Some("help") | None => Resolved::Answer {
            text: "Go is a tool for managing Go source code.\n\nUsage:\n\n\tgo run FILE.go [arguments]\n\tgo version\n".into(),
            status: if args.is_empty() { 2 } else { 0 },
        },
        Some(other) => refuse(format!(
            "go {other}: not available in this sandbox (go run FILE.go and go version are)\n"
        )),
    }
}

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
