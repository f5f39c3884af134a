//! Host side of the shell guest's process ABI (see `runtimes/shell/ABI.md`).
//!
//! WASI preview 1 has no fork/exec, so the shell (`sh.wasm`) asks the host to start programs
//! through the `wasmbox.spawn` import. Every stage of a request runs as a fresh instance in the
//! same sandbox (same mounts, memory cap, deadline), concurrently, wired by bounded in-memory pipes.
//! A per-execution [`Tree`] counts instances so that fork-bomb-like scripts fail cleanly.
//!
//! The wire types are the `wasmbox-spawn-abi` crate's, shared with the guest. Here: `config`
//! (what may be started), `pipe` (the bounded pipe), `stdio` (every instance's streams), `open`
//! (redirection files inside the mounts), `imports` (the linker functions), `request` (running
//! one request) and `jobs` (requests started in the background, `list &`).
//!
//! A background job outlives nothing but its own instance: when the instance that started it
//! ends, the job goes on (as an orphan does in a real shell), but when the execution's top-level
//! program ends, or its deadline passes, [`ExecutionJobs`] aborts every job of the tree. A
//! sandbox must not leave work running after the execution has answered.

mod config;
mod feed;
mod fifo;
mod imports;
mod jobs;
mod open;
mod pipe;
mod request;
mod stdio;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use config::{
    BuildFailure, BuildFuture, CommandFuture, CommandOutput, HostCommand, Interpreter,
    ProgramBuilder, SpawnConfig,
};
pub use feed::{live_stdin, LiveStdin, StdinClosed, StdinFeed};
pub use pipe::PIPE_CAPACITY;
pub(crate) use stdio::{InstanceIo, Sink, Source};

use super::{Engine, ExecSpec, Limits, Mount};

/// Instance counters and background jobs shared by every instance of one execution.
#[derive(Debug, Default)]
struct Tree {
    total: AtomicU32,
    live: AtomicU32,
    /// Signalled when `live` drops to zero.
    idle: Notify,
    /// Every background job started in this execution (by any instance), so that the end of
    /// the execution can stop them all, orphans included.
    jobs: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The execution's named pipes (`mkfifo`), shared by all its instances.
    named_pipes: fifo::NamedPipes,
}

/// How long the end of an execution waits for its aborted jobs to be torn down (an aborted
/// instance stops at its next epoch tick; this only bounds a pathological case).
const JOB_TEARDOWN: Duration = Duration::from_secs(5);

impl Tree {
    /// Remembers a background job so the end of the execution can stop it.
    fn register_job(&self, job: tokio::task::AbortHandle) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|j| !j.is_finished());
        jobs.push(job);
    }

    /// Aborts every background job of the execution.
    fn abort_jobs(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()));
        for job in jobs {
            job.abort();
        }
    }

    /// Aborts every background job and waits until no child instance is alive any more.
    async fn end_jobs(&self) {
        self.abort_jobs();
        let until = tokio::time::Instant::now() + JOB_TEARDOWN;
        loop {
            let idle = self.idle.notified();
            let live = self.live.load(Ordering::SeqCst);
            if live == 0 {
                return;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                tracing::warn!(
                    live,
                    "background jobs still alive after the execution ended"
                );
                return;
            }
        }
    }
}

/// The background jobs of one execution, held by whoever runs its top-level instance:
/// [`ExecutionJobs::end`] stops them and waits for that; dropping it (the execution's future
/// was cancelled) at least aborts them.
pub(crate) struct ExecutionJobs(Arc<Tree>);

impl ExecutionJobs {
    /// Stops every job still running once the top-level program has ended.
    pub(crate) async fn end(self) {
        self.0.end_jobs().await;
    }
}

impl Drop for ExecutionJobs {
    fn drop(&mut self) {
        self.0.abort_jobs();
    }
}

/// Adds the `wasmbox.spawn*` and `wasmbox.fifo_*` imports.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::Linker<super::HostState>,
) -> Result<(), super::EngineError> {
    imports::add_to_linker(linker)?;
    fifo::add_to_linker(linker)
}

/// Per-instance spawn state, kept in the store's `HostState`.
pub(crate) struct SpawnState {
    engine: Engine,
    config: Arc<SpawnConfig>,
    tree: Arc<Tree>,
    depth: u32,
    mounts: Vec<Mount>,
    limits: Limits,
    deadline: Instant,
    stdin: Source,
    stdout: Sink,
    stderr: Sink,
    pending: Option<Vec<u8>>,
    /// The background jobs this instance started.
    jobs: jobs::JobTable,
    /// The named-pipe ends this instance holds open itself.
    fifo_ends: fifo::OpenEnds,
}

impl SpawnState {
    /// State for the top-level instance of an execution.
    pub(crate) fn root(
        engine: Engine,
        config: SpawnConfig,
        spec: &ExecSpec,
        deadline: Instant,
        io: &InstanceIo,
    ) -> Self {
        Self {
            engine,
            config: Arc::new(config),
            tree: Arc::new(Tree::default()),
            depth: 0,
            mounts: spec.mounts.clone(),
            limits: spec.limits.clone(),
            deadline,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            pending: None,
            jobs: jobs::JobTable::default(),
            fifo_ends: fifo::OpenEnds::default(),
        }
    }

    /// The handle on the execution's background jobs (see [`ExecutionJobs`]).
    pub(crate) fn execution_jobs(&self) -> ExecutionJobs {
        ExecutionJobs(self.tree.clone())
    }
}
