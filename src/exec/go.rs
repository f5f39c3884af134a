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
    Entry, ExecResult, ExecSpec, Limits, Mount, PreparedModule, ResourceUsage, Termination,
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
        let toolchain = self.runtimes().go_toolchain()?;
        let source = match go::program_source(&request.code) {
            Ok(source) => source,
            Err(e) => return Ok(build_failed(format!("{SOURCE_FILE}: {e}\n"), started)),
        };
        let key = toolchain.program_key(&source);
        let program = match self.engine().cached_program(&key).await? {
            Some(program) => program,
            None => {
                match self
                    .build_go(fs, toolchain, &source, key, deadline, &request)
                    .await?
                {
                    Ok(program) => program,
                    Err(mut failed) => {
                        failed.duration = started.elapsed();
                        return Ok(failed);
                    }
                }
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

    /// Compiles and links `source` in a fresh scratch folder, then compiles the result to machine
    /// code and caches it under `key`. A failed stage is `Ok(Err(result))`: the compiler's (or
    /// linker's) messages on stderr, its exit status, as a failed execution.
    async fn build_go(
        &self,
        fs: &SandboxFs,
        toolchain: &GoToolchain,
        source: &str,
        key: String,
        deadline: Instant,
        request: &RunRequest,
    ) -> Result<Result<Arc<PreparedModule>, ExecResult>, ExecError> {
        let root = self.runtimes().cache_dir().join("go-build");
        let scratch_err = |source| ExecError::Scratch {
            path: root.clone(),
            source,
        };
        std::fs::create_dir_all(&root).map_err(scratch_err)?;
        let scratch = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&root)
            .map_err(scratch_err)?;
        std::fs::write(scratch.path().join(SOURCE_FILE), source).map_err(scratch_err)?;
        let limits = Limits {
            timeout: request.timeout,
            deadline: Some(deadline),
            memory_bytes: self.limits.memory_bytes.max(TOOLCHAIN_MEMORY),
            tenant: Some(self.tenant(fs)),
            ..self.limits.clone()
        };
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
            let module = self.engine().prepare(tool).await?;
            let spec = ExecSpec {
                argv,
                env: toolchain.env(),
                mounts: mounts.clone(),
                limits: limits.clone(),
                ..ExecSpec::default()
            };
            let result = self.engine().execute(&module, spec).await?;
            tracing::debug!(tool = %tool.display(), elapsed = ?stage_started.elapsed(), "go build stage");
            if !result.success() {
                return Ok(Err(stage_failed(result)));
            }
        }
        let wasm = std::fs::read(scratch.path().join(PROGRAM_FILE)).map_err(scratch_err)?;
        drop(scratch);
        let compile_started = Instant::now();
        let program = self.engine().compile_program(key, wasm).await?;
        tracing::debug!(elapsed = ?compile_started.elapsed(), "go program compiled to machine code");
        Ok(Ok(program))
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
