//! Running Go source: compile, link, run — each a fresh instance under the request's one deadline.
//!
//! The toolchain's instances see only a private scratch folder (read-write, at `/build`) and the
//! standard library's archives (read-only); the program then runs like any other language, with
//! the sandbox's files, environment and working directory. The scratch folder lives outside
//! every sandbox tree, so no guest can touch another request's `main.a` or `prog.wasm` (which
//! would poison the shared program cache); its writes are still charged to the sandbox's disk
//! quota, and its memory cap is at least [`TOOLCHAIN_MEMORY`].
//!
//! Compiled programs are cached by a digest of the source and the toolchain, shared by every
//! sandbox: the output depends on nothing else, and a repeated source then skips both toolchain
//! stages and the machine-code compile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{
    BuildFailure, BuildFuture, Engine, Entry, ExecResult, ExecSpec, Limits, Mount, PreparedModule,
    ProgramBuilder, ResourceUsage, Termination,
};
use crate::runtimes::data::TurnMode;
use crate::runtimes::go::{self, GoToolchain, GUEST_BUILD, GUEST_PKG, PROGRAM_FILE, SOURCE_FILE};
use crate::runtimes::Invocation;
use crate::sandbox::SandboxFs;

use super::{ExecError, Executor, RunRequest};

/// The least memory the compile and link stages get, whatever the sandbox's cap (linking hello
/// world takes 76 MiB; a program using `net/http` several times that).
pub const TOOLCHAIN_MEMORY: u64 = 512 << 20;

/// The exit status of a build that failed (as `go build`/`go run` report it).
const EXIT_BUILD_FAILED: i32 = 2;

impl Executor {
    /// Runs `request` (Go) in `fs`: from the program cache when this source was built before.
    pub(super) async fn run_go(
        &self,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
    ) -> Result<ExecResult, ExecError> {
        let started = Instant::now();
        let deadline = started + request.timeout;
        let builds = self.go_builds()?;
        let limits = Limits {
            timeout: request.timeout,
            tenant: Some(self.tenant(fs)),
            ..self.limits.clone()
        };
        let program = match builds
            .program(&request.code, SOURCE_FILE, limits, deadline)
            .await?
        {
            Ok(program) => program,
            Err(mut failed) => {
                failed.duration = started.elapsed();
                return Ok(failed);
            }
        };
        let invocation = Invocation {
            module: program.path().to_path_buf(),
            entry: Entry::Start,
            argv: vec!["main".into()],
            env: Vec::new(),
            snapshot: None,
            mounts: Vec::new(),
        };
        let mut spec = self.spec(fs, base_env, request, invocation, TurnMode::Run)?;
        spec.limits.deadline = Some(deadline);
        let mut result = self.engine().execute(&program, spec).await?;
        result.duration = started.elapsed();
        Ok(result)
    }

    /// The Go builder, for a direct run and for the shell's `go run`.
    pub(super) fn go_builds(&self) -> Result<GoBuilds, ExecError> {
        Ok(GoBuilds {
            engine: self.engine().clone(),
            toolchain: self.runtimes().go_toolchain()?.clone(),
            scratch_root: self.runtimes().cache_dir().join("go-build"),
        })
    }
}

/// Builds Go programs: from the shared program cache when the source was built before, else
/// compile → link → machine code.
#[derive(Clone)]
pub(crate) struct GoBuilds {
    engine: Engine,
    toolchain: GoToolchain,
    /// Where each build gets its private scratch folder.
    scratch_root: PathBuf,
}

impl GoBuilds {
    /// The program for `code` (a file or a snippet, see [`go::program_source`]; messages name
    /// `file_name`), built under
    /// `limits` (the sandbox's, raised to [`TOOLCHAIN_MEMORY`] for the toolchain) until
    /// `deadline`. A refused source or failed stage is `Ok(Err(result))`.
    pub(crate) async fn program(
        &self,
        code: &str,
        file_name: &str,
        limits: Limits,
        deadline: Instant,
    ) -> Result<Result<Arc<PreparedModule>, ExecResult>, ExecError> {
        let started = Instant::now();
        let source = match go::program_source(code, file_name) {
            Ok(source) => source,
            Err(e) => return Ok(Err(build_failed(format!("{file_name}: {e}\n"), started))),
        };
        let key = self.toolchain.program_key(&source);
        if let Some(program) = self.engine.cached_program(&key).await? {
            return Ok(Ok(program));
        }
        self.build(&source, key, limits, deadline).await
    }

    /// Compiles and links `source` in a fresh scratch folder, then compiles the result to machine
    /// code and caches it under `key`. A failed stage is `Ok(Err(result))`: the compiler's (or
    /// linker's) messages on stderr, its exit status, as a failed execution.
    async fn build(
        &self,
        source: &str,
        key: String,
        limits: Limits,
        deadline: Instant,
    ) -> Result<Result<Arc<PreparedModule>, ExecResult>, ExecError> {
        let root = &self.scratch_root;
        let scratch_err = |source| ExecError::Scratch {
            path: root.clone(),
            source,
        };
        std::fs::create_dir_all(root).map_err(scratch_err)?;
        let scratch = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(root)
            .map_err(scratch_err)?;
        std::fs::write(scratch.path().join(SOURCE_FILE), source).map_err(scratch_err)?;
        let limits = Limits {
            deadline: Some(limits.deadline.map_or(deadline, |d| d.min(deadline))),
            memory_bytes: limits.memory_bytes.max(TOOLCHAIN_MEMORY),
            ..limits
        };
        let toolchain = &self.toolchain;
        let mounts = vec![
            Mount {
                host: scratch.path().to_path_buf(),
                guest: GUEST_BUILD.into(),
                writable: true,
            },
            Mount {
                host: toolchain.pkg.clone(),
                guest: GUEST_PKG.into(),
                writable: false,
            },
        ];
        let stages: [(&PathBuf, Vec<String>); 2] = [
            (&toolchain.compile, toolchain.compile_argv()),
            (&toolchain.link, toolchain.link_argv()),
        ];
        for (tool, argv) in stages {
            let stage_started = Instant::now();
            let module = self.engine.prepare(tool).await?;
            let spec = ExecSpec {
                argv,
                env: toolchain.env(),
                mounts: mounts.clone(),
                limits: limits.clone(),
                ..ExecSpec::default()
            };
            let result = self.engine.execute(&module, spec).await?;
            tracing::debug!(tool = %tool.display(), elapsed = ?stage_started.elapsed(), peak_memory = result.usage.peak_memory_bytes, "go build stage");
            if !result.success() {
                return Ok(Err(stage_failed(result)));
            }
        }
        let wasm = std::fs::read(scratch.path().join(PROGRAM_FILE)).map_err(scratch_err)?;
        drop(scratch);
        let compile_started = Instant::now();
        let program = self.engine.compile_program(key, wasm).await?;
        tracing::debug!(elapsed = ?compile_started.elapsed(), "go program compiled to machine code");
        Ok(Ok(program))
    }
}

/// The shell's `go run`: a failed build is the stage's stderr and `go run`'s status.
impl ProgramBuilder for GoBuilds {
    fn build(
        &self,
        source: String,
        file_name: String,
        limits: Limits,
        deadline: Instant,
    ) -> BuildFuture<'_> {
        Box::pin(async move {
            match self.program(&source, &file_name, limits, deadline).await {
                Ok(Ok(program)) => Ok(program),
                Ok(Err(failed)) => Err(BuildFailure {
                    message: failed.stderr,
                    status: failed.exit_code,
                }),
                Err(e) => Err(BuildFailure {
                    message: format!("go: {}\n", crate::describe_error(&e)),
                    status: 1,
                }),
            }
        })
    }

    fn version(&self) -> String {
        self.toolchain.version_line()
    }
}

/// The result of a failed compile or link stage: the tool's messages (the compiler prints them
/// on stdout) as the execution's stderr, nothing on stdout.
fn stage_failed(stage: ExecResult) -> ExecResult {
    let mut stderr = stage.stdout;
    stderr.push_str(&stage.stderr);
    let exit_code = match stage.termination {
        Termination::Exited if stage.exit_code != 0 => stage.exit_code,
        Termination::Exited => EXIT_BUILD_FAILED,
        _ => stage.exit_code,
    };
    ExecResult {
        stdout: String::new(),
        stderr,
        exit_code,
        stdout_truncated: false,
        ..stage
    }
}

/// A build refused before any stage ran.
fn build_failed(message: String, started: Instant) -> ExecResult {
    ExecResult {
        stdout: String::new(),
        stderr: message,
        exit_code: EXIT_BUILD_FAILED,
        termination: Termination::Exited,
        stdout_truncated: false,
        stderr_truncated: false,
        duration: started.elapsed(),
        outputs: Vec::new(),
        usage: ResourceUsage::default(),
    }
}
