//! Host side of the shell guest's process ABI (see `runtimes/shell/ABI.md`).
//!
//! WASI preview 1 has no fork/exec, so the shell (`sh.wasm`) asks the host to start programs
//! through the `wasmbox.spawn` import. Every stage of a request runs as a fresh instance in the
//! same sandbox (same mounts, memory cap, deadline), concurrently, wired by bounded in-memory pipes.
//! A per-execution [`Tree`] counts instances so that fork-bomb-like scripts fail cleanly.
//!
//! The wire types are the `wasmbox-spawn-abi` crate's, shared with the guest. Here: `config`
//! (what may be started), `pipe` (the bounded pipe), `stdio` (every instance's streams), `open`
//! (redirection files inside the mounts), `imports` (the linker functions) and `request` (running
//! one request).

mod config;
mod feed;
mod imports;
mod open;
mod pipe;
mod request;
mod stdio;

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

pub use config::{Interpreter, SpawnConfig};
pub use feed::{live_stdin, LiveStdin, StdinClosed, StdinFeed};
pub(crate) use imports::add_to_linker;
pub use pipe::PIPE_CAPACITY;
pub(crate) use stdio::{InstanceIo, Sink, Source};

use super::{Engine, ExecSpec, Limits, Mount};

/// Instance counters shared by every instance of one execution.
#[derive(Debug, Default)]
struct Tree {
    total: AtomicU32,
    live: AtomicU32,
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
        }
    }
}
