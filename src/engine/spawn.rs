//! Host side of the shell guest's process ABI (see `runtimes/shell/ABI.md`).
//!
//! WASI preview 1 has no fork/exec, so the shell (`sh.wasm`) asks the host to start programs
//! through the `wasmbox.spawn` import. Every stage of a request runs as a fresh instance in the
//! same sandbox (same mounts, memory cap, deadline), concurrently, wired by bounded in-memory pipes.
//! A per-execution [`Tree`] counts instances so that fork-bomb-like scripts fail cleanly.
//!
//! Streams are our own types ([`Source`], [`Sink`]) so that a child can share ("inherit") its
//! parent's stdin/stdout/stderr: reads take exactly what the guest asks for (no read-ahead), so a
//! parent `read` and a child `cat` see one consistent input.

use std::collections::VecDeque;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use wasmbox_spawn_abi::{Input, Output, OutputMode, Request, Response, Stage};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};

use super::{
    CapturedOutput, DiskQuota, Engine, EngineError, Entry, ExecResult, ExecSpec, HostState, Limits,
    Mount, PreparedModule, Termination,
};

/// Bytes buffered in one pipe between two stages before the writer waits.
pub const PIPE_CAPACITY: usize = 64 * 1024;
/// Largest spawn request (JSON) accepted from a guest.
const MAX_REQUEST_BYTES: usize = 4 << 20;

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
    fn resolve(&self, argv: &[String], cwd: &str) -> Result<Resolved, String> {
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
type Resolved = (PathBuf, Vec<String>, Vec<(String, String)>);

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

/// Instance counters shared by every instance of one execution.
#[derive(Debug, Default)]
struct Tree {
    total: AtomicU32,
    live: AtomicU32,
}

/// Per-instance spawn state, kept in the store's [`HostState`].
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
        stdin: Source,
        stdout: Sink,
        stderr: Sink,
    ) -> Self {
        Self {
            engine,
            config: Arc::new(config),
            tree: Arc::new(Tree::default()),
            depth: 0,
            mounts: spec.mounts.clone(),
            limits: spec.limits.clone(),
            deadline,
            stdin,
            stdout,
            stderr,
            pending: None,
        }
    }
}

impl Engine {
    /// Like [`Engine::execute`], for the shell: the guest may start programs through the
    /// `wasmbox.spawn` import, as configured by `spawn`. Children share the execution's deadline,
    /// memory cap, mounts and (when they inherit them) its captured stdout/stderr.
    pub async fn execute_with_spawn(
        &self,
        module: &PreparedModule,
        spec: ExecSpec,
        spawn: SpawnConfig,
    ) -> Result<ExecResult, EngineError> {
        let _ticket = self.admit(&spec.limits).await?;
        let stdout = CapturedOutput::new(spec.limits.output_bytes);
        let stderr = CapturedOutput::new(spec.limits.output_bytes);
        let started = Instant::now();
        let deadline = started + spec.limits.timeout;
        let stdin = Source::data(spec.stdin.clone());
        let (out, err) = (
            Sink::Captured(stdout.clone()),
            Sink::Captured(stderr.clone()),
        );
        let state = SpawnState::root(
            self.clone(),
            spawn,
            &spec,
            deadline,
            stdin.clone(),
            out.clone(),
            err.clone(),
        );
        let (termination, exit_code) = self
            .run_instance_with(module, &spec, stdin, out, err, deadline, Some(state))
            .await?;
        Ok(ExecResult::collect(
            &stdout,
            &stderr,
            termination,
            exit_code,
            started.elapsed(),
            &spec.limits,
        ))
    }
}

// ------------------------------------------------------------------------------------- pipes

#[derive(Debug, Default)]
struct PipeState {
    buf: VecDeque<u8>,
    writers: usize,
    readers: usize,
}

#[derive(Debug)]
struct PipeShared {
    state: Mutex<PipeState>,
    notify: Notify,
    cap: usize,
}

impl PipeShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded in-memory pipe; EOF for readers when every writer is gone, `EPIPE` for writers when
/// every reader is gone.
#[derive(Debug, Clone)]
pub(crate) struct Pipe(Arc<PipeShared>);

impl Pipe {
    pub(crate) fn new(cap: usize) -> Self {
        Pipe(Arc::new(PipeShared {
            state: Mutex::new(PipeState::default()),
            notify: Notify::new(),
            cap,
        }))
    }

    /// A pipe that already holds `data` and has no writer (reads `data`, then EOF).
    pub(crate) fn with_data(data: Vec<u8>) -> Self {
        let p = Pipe::new(data.len().max(1));
        p.0.lock().buf.extend(data);
        p
    }

    pub(crate) fn reader(&self) -> PipeReader {
        self.0.lock().readers += 1;
        PipeReader(self.0.clone())
    }

    pub(crate) fn writer(&self) -> PipeWriter {
        self.0.lock().writers += 1;
        PipeWriter(self.0.clone())
    }
}

#[derive(Debug)]
pub(crate) struct PipeReader(Arc<PipeShared>);

impl Clone for PipeReader {
    fn clone(&self) -> Self {
        self.0.lock().readers += 1;
        PipeReader(self.0.clone())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.lock().readers -= 1;
        self.0.notify.notify_waiters();
    }
}

impl PipeReader {
    /// Up to `size` bytes; `Ok(None)` at EOF; empty when nothing is available yet.
    fn take(&self, size: usize) -> Option<Bytes> {
        let mut st = self.0.lock();
        if !st.buf.is_empty() {
            let n = size.min(st.buf.len());
            let v: Vec<u8> = st.buf.drain(..n).collect();
            drop(st);
            self.0.notify.notify_waiters();
            return Some(Bytes::from(v));
        }
        if st.writers == 0 {
            return None;
        }
        Some(Bytes::new())
    }

    async fn wait_readable(&self) {
        loop {
            let notified = self.0.notify.notified();
            {
                let st = self.0.lock();
                if !st.buf.is_empty() || st.writers == 0 {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
pub(crate) struct PipeWriter(Arc<PipeShared>);

impl Clone for PipeWriter {
    fn clone(&self) -> Self {
        self.0.lock().writers += 1;
        PipeWriter(self.0.clone())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.0.lock().writers -= 1;
        self.0.notify.notify_waiters();
    }
}

impl PipeWriter {
    fn space(&self) -> Result<usize, StreamError> {
        let st = self.0.lock();
        if st.readers == 0 {
            return Err(StreamError::Closed);
        }
        Ok(self.0.cap.saturating_sub(st.buf.len()))
    }

    fn push(&self, bytes: &[u8]) -> Result<(), StreamError> {
        let mut st = self.0.lock();
        if st.readers == 0 {
            return Err(StreamError::Closed);
        }
        st.buf.extend(bytes);
        drop(st);
        self.0.notify.notify_waiters();
        Ok(())
    }

    async fn wait_writable(&self) {
        loop {
            let notified = self.0.notify.notified();
            {
                let st = self.0.lock();
                if st.readers == 0 || st.buf.len() < self.0.cap {
                    return;
                }
            }
            notified.await;
        }
    }
}

// ---------------------------------------------------------------------------- stdin sources

/// A guest's standard input.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Pipe(PipeReader),
    File(Arc<Mutex<std::fs::File>>),
    Empty,
}

impl Source {
    pub(crate) fn data(data: Vec<u8>) -> Self {
        Source::Pipe(Pipe::with_data(data).reader())
    }
}

impl IsTerminal for Source {
    fn is_terminal(&self) -> bool {
        false
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Source {
    async fn ready(&mut self) {
        if let Source::Pipe(r) = self {
            r.wait_readable().await;
        }
    }
}

impl InputStream for Source {
    fn read(&mut self, size: usize) -> Result<Bytes, StreamError> {
        match self {
            Source::Pipe(r) => r.take(size).ok_or(StreamError::Closed),
            Source::File(f) => {
                let mut buf = vec![0u8; size.min(64 * 1024)];
                let n = f
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(&mut buf)
                    .map_err(|e| StreamError::LastOperationFailed(e.into()))?;
                if n == 0 && size > 0 {
                    return Err(StreamError::Closed);
                }
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Source::Empty => Err(StreamError::Closed),
        }
    }
}

/// Only used by WASI preview 3 paths (preview 1 goes through [`InputStream`]).
impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match InputStream::read(&mut *self, buf.remaining()) {
            Ok(b) if b.is_empty() && buf.remaining() > 0 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(b) => {
                buf.put_slice(&b);
                Poll::Ready(Ok(()))
            }
            Err(StreamError::Closed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }
}

impl StdinStream for Source {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

// ------------------------------------------------------------------------------- out sinks

/// A guest's standard output or error.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    Captured(CapturedOutput),
    /// The flag is the writing instance's "SIGPIPE received" mark.
    Pipe(PipeWriter, Arc<AtomicBool>),
    /// A file opened for a redirection; writes are charged to the sandbox's disk quota.
    File(Arc<Mutex<std::fs::File>>, Option<Arc<DiskQuota>>),
    Null,
}

impl Sink {
    /// The same destination, reporting a broken pipe to `flag` (the instance that will use it).
    fn for_instance(&self, flag: &Arc<AtomicBool>) -> Sink {
        match self {
            Sink::Pipe(p, _) => Sink::Pipe(p.clone(), flag.clone()),
            other => other.clone(),
        }
    }

    fn append(&self, bytes: &[u8]) -> Result<(), StreamError> {
        match self {
            Sink::Captured(c) => c.append(bytes),
            Sink::Pipe(p, flag) => p.push(bytes).map_err(|e| sigpipe(e, flag))?,
            Sink::File(f, quota) => {
                let charged = quota
                    .as_ref()
                    .is_none_or(|q| q.try_charge(u64::try_from(bytes.len()).unwrap_or(u64::MAX)));
                if !charged {
                    return Err(StreamError::LastOperationFailed(
                        std::io::Error::from(std::io::ErrorKind::StorageFull).into(),
                    ));
                }
                f.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write_all(bytes)
                    .map_err(|e| StreamError::LastOperationFailed(e.into()))?
            }
            Sink::Null => {}
        }
        Ok(())
    }
}

/// Writing to a pipe nobody reads: a POSIX process dies of SIGPIPE. WASI has no signals, so the
/// write traps and the stage reports status 141 (128 + SIGPIPE), silently, as a shell would.
fn sigpipe(e: StreamError, flag: &AtomicBool) -> StreamError {
    match e {
        StreamError::Closed => {
            flag.store(true, Ordering::SeqCst);
            StreamError::trap("broken pipe (SIGPIPE)")
        }
        e => e,
    }
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {
        if let Sink::Pipe(p, _) = self {
            p.wait_writable().await;
        }
    }
}

impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self {
            Sink::Pipe(p, flag) => p.space().map_err(|e| sigpipe(e, flag)),
            _ => Ok(64 * 1024),
        }
    }
}

/// Only used by WASI preview 3 paths (preview 1 goes through [`OutputStream`]).
impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.append(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(StreamError::Closed) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl StdoutStream for Sink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

// ----------------------------------------------------------------------------- file access

/// Lexically normalise an absolute guest path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn io_message(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "No such file or directory".into(),
        PermissionDenied => "Permission denied".into(),
        IsADirectory => "Is a directory".into(),
        NotADirectory => "Not a directory".into(),
        ReadOnlyFilesystem => "Read-only file system".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// Open a guest path inside the sandbox's mounts (cap-std: no escape through `..` or symlinks),
/// for reading when `write` is `None`.
fn open_in_sandbox(
    mounts: &[Mount],
    cwd: &str,
    path: &str,
    write: Option<OutputMode>,
    offset: Option<u64>,
) -> Result<std::fs::File, String> {
    let abs = if path.starts_with('/') {
        normalize(path)
    } else {
        normalize(&format!("{cwd}/{path}"))
    };
    let mount = mounts
        .iter()
        .filter(|m| {
            let g = m.guest.trim_end_matches('/');
            g.is_empty() || abs == g || abs.starts_with(&format!("{g}/"))
        })
        .max_by_key(|m| m.guest.trim_end_matches('/').len())
        .ok_or_else(|| "No such file or directory".to_string())?;
    let rel = abs[mount.guest.trim_end_matches('/').len()..].trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    if write.is_some() && !mount.writable {
        return Err("Read-only file system".into());
    }
    let dir = cap_std::fs::Dir::open_ambient_dir(&mount.host, cap_std::ambient_authority())
        .map_err(|e| io_message(&e))?;
    let mut o = cap_std::fs::OpenOptions::new();
    match write {
        None => o.read(true),
        Some(OutputMode::Append) => o.append(true).create(true),
        Some(OutputMode::ReadWrite) => o.read(true).write(true).create(true),
        Some(OutputMode::Write) => o.write(true).create(true).truncate(true),
    };
    let f = dir.open_with(rel, &o).map_err(|e| io_message(&e))?;
    let mut f = f.into_std();
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err("Is a directory".into());
    }
    if let Some(off) = offset {
        f.seek(std::io::SeekFrom::Start(off))
            .map_err(|e| io_message(&e))?;
    }
    Ok(f)
}

// ------------------------------------------------------------------------------ the imports

fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Adds `wasmbox.spawn` and `wasmbox.spawn_result` (`wasmbox.exit` is added by the engine).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    linker
        .func_wrap_async(
            "wasmbox",
            "spawn",
            |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
                Box::new(async move {
                    let Some(mem) = memory(&mut caller) else {
                        return Ok(-1);
                    };
                    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
                    if len > MAX_REQUEST_BYTES {
                        return Ok(-2);
                    }
                    let mut req = vec![0u8; len];
                    if mem.read(&caller, ptr, &mut req).is_err() {
                        return Ok(-1);
                    }
                    let Some(state) = caller.data_mut().spawn.as_mut() else {
                        return Ok(-3);
                    };
                    let ctx = state.child_context();
                    // An unknown stream name or mode is refused here, whole, with the reason.
                    let response = match serde_json::from_slice::<Request>(&req) {
                        Ok(r) => run_request(ctx, r).await,
                        Err(e) => Response::refused(format!("bad spawn request: {e}")),
                    };
                    let json = serde_json::to_vec(&response).unwrap_or_default();
                    let n = json.len() as i32;
                    if let Some(state) = caller.data_mut().spawn.as_mut() {
                        state.pending = Some(json);
                    }
                    Ok::<i32, wasmtime::Error>(n)
                })
            },
        )
        .map_err(|e| EngineError::Config(e.to_string()))?;
    linker
        .func_wrap(
            "wasmbox",
            "spawn_result",
            |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
                let Some(data) = caller
                    .data_mut()
                    .spawn
                    .as_mut()
                    .and_then(|s| s.pending.take())
                else {
                    return Ok(0);
                };
                let n = data.len().min(len.max(0) as usize);
                let Some(mem) = memory(&mut caller) else {
                    return Ok(-1);
                };
                if mem
                    .write(&mut caller, ptr as u32 as usize, &data[..n])
                    .is_err()
                {
                    return Ok(-1);
                }
                Ok(n as i32)
            },
        )
        .map_err(|e| EngineError::Config(e.to_string()))?;
    Ok(())
}

/// What a spawn request needs from the calling instance (cloned out of the store).
struct ChildContext {
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
}

impl SpawnState {
    fn child_context(&self) -> ChildContext {
        ChildContext {
            engine: self.engine.clone(),
            config: self.config.clone(),
            tree: self.tree.clone(),
            depth: self.depth,
            mounts: self.mounts.clone(),
            limits: self.limits.clone(),
            deadline: self.deadline,
            stdin: self.stdin.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
        }
    }
}

/// Aborts the child tasks if the spawning instance goes away (e.g. its deadline passed).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Decrements the live-instance count when a child ends (or is aborted).
struct LiveGuard(Arc<Tree>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct StageIo {
    sigpipe: Arc<AtomicBool>,
    stdin: Source,
    stdout: Sink,
    stderr: Sink,
    /// Set when a redirection could not be opened: the stage is not run.
    error: Option<String>,
}

fn build_io(
    ctx: &ChildContext,
    st: &Stage,
    i: usize,
    pipes: &[Pipe],
    caps: &(CapturedOutput, CapturedOutput),
) -> StageIo {
    let cwd = st.cwd.as_str();
    let sigpipe = Arc::new(AtomicBool::new(false));
    let mut error = None;
    let stdin = match &st.stdin {
        Input::Pipe if i > 0 => Source::Pipe(pipes[i - 1].reader()),
        Input::Pipe | Input::Null => Source::Empty,
        Input::Inherit => ctx.stdin.clone(),
        Input::Data(data) => Source::data(data.clone().into_bytes()),
        Input::File { file, offset } => {
            if file == "/dev/null" {
                Source::Empty
            } else {
                match open_in_sandbox(&ctx.mounts, cwd, file, None, *offset) {
                    Ok(f) => Source::File(Arc::new(Mutex::new(f))),
                    Err(e) => {
                        error = Some(format!("sh: {file}: {e}\n"));
                        Source::Empty
                    }
                }
            }
        }
    };
    let out_of = |r: &Output, is_err: bool, error: &mut Option<String>| -> Option<Sink> {
        Some(match r {
            Output::Pipe if i < pipes.len() => Sink::Pipe(pipes[i].writer(), sigpipe.clone()),
            Output::Pipe | Output::Null => Sink::Null,
            Output::Capture => Sink::Captured(if is_err {
                caps.1.clone()
            } else {
                caps.0.clone()
            }),
            Output::ParentStdout => ctx.stdout.for_instance(&sigpipe),
            Output::ParentStderr => ctx.stderr.for_instance(&sigpipe),
            Output::Stdout | Output::Stderr => return None, // dup of the other stream, resolved below
            Output::Inherit => {
                if is_err {
                    ctx.stderr.for_instance(&sigpipe)
                } else {
                    ctx.stdout.for_instance(&sigpipe)
                }
            }
            Output::File { file, mode, offset } => {
                if file == "/dev/null" {
                    Sink::Null
                } else {
                    match open_in_sandbox(&ctx.mounts, cwd, file, Some(*mode), *offset) {
                        Ok(f) => Sink::File(
                            Arc::new(Mutex::new(f)),
                            ctx.limits.tenant.as_ref().and_then(|t| t.disk().cloned()),
                        ),
                        Err(e) => {
                            error.get_or_insert(format!("sh: {file}: {e}\n"));
                            Sink::Null
                        }
                    }
                }
            }
        })
    };
    let out = out_of(&st.stdout, false, &mut error);
    let err = out_of(&st.stderr, true, &mut error);
    let (stdout, stderr) = match (out, err) {
        (Some(o), Some(e)) => (o, e),
        (Some(o), None) => (o.clone(), o),
        (None, Some(e)) => (e.clone(), e),
        (None, None) => (
            ctx.stdout.for_instance(&sigpipe),
            ctx.stderr.for_instance(&sigpipe),
        ),
    };
    StageIo {
        sigpipe,
        stdin,
        stdout,
        stderr,
        error,
    }
}

async fn run_request(ctx: ChildContext, req: Request) -> Response {
    let n = req.stages.len();
    if n == 0 {
        return Response::default();
    }
    let cfg = ctx.config.clone();
    if ctx.depth + 1 > cfg.max_depth {
        return Response::refused(format!(
            "spawn limit reached (nesting deeper than {})",
            cfg.max_depth
        ));
    }
    // Reserve the instances up front so a pipeline starts whole or not at all.
    let total = ctx.tree.total.fetch_add(n as u32, Ordering::SeqCst) + n as u32;
    if total > cfg.max_total {
        return Response::refused(format!(
            "spawn limit reached ({} programs per execution)",
            cfg.max_total
        ));
    }
    let live = ctx.tree.live.fetch_add(n as u32, Ordering::SeqCst) + n as u32;
    if live > cfg.max_concurrent {
        ctx.tree.live.fetch_sub(n as u32, Ordering::SeqCst);
        return Response::refused(format!(
            "spawn limit reached ({} programs at once)",
            cfg.max_concurrent
        ));
    }
    let mut guards: Vec<Option<LiveGuard>> =
        (0..n).map(|_| Some(LiveGuard(ctx.tree.clone()))).collect();
    // Every stage is an instance of the host's pool: admit them all before starting any.
    let mut tickets = Vec::with_capacity(n);
    for _ in 0..n {
        match ctx.engine.admit_child(&ctx.limits) {
            Ok(ticket) => tickets.push(Some(ticket)),
            Err(refusal) => {
                return Response::refused(format!(
                    "cannot start a program: resource temporarily unavailable ({refusal})"
                ))
            }
        }
    }

    let caps = (
        CapturedOutput::new(ctx.limits.output_bytes),
        CapturedOutput::new(ctx.limits.output_bytes),
    );
    let pipes: Vec<Pipe> = (0..n.saturating_sub(1))
        .map(|_| Pipe::new(PIPE_CAPACITY))
        .collect();
    let mut ios: Vec<StageIo> = req
        .stages
        .iter()
        .enumerate()
        .map(|(i, st)| build_io(&ctx, st, i, &pipes, &caps))
        .collect();
    drop(pipes); // only the stages' ends keep the pipes open now

    let mut statuses = vec![0i32; n];
    let mut tasks: Vec<Option<tokio::task::JoinHandle<i32>>> = Vec::with_capacity(n);
    let mut aborts = AbortOnDrop(Vec::new());
    for (i, st) in req.stages.into_iter().enumerate() {
        let io = std::mem::replace(
            &mut ios[i],
            StageIo {
                sigpipe: Arc::default(),
                stdin: Source::Empty,
                stdout: Sink::Null,
                stderr: Sink::Null,
                error: None,
            },
        );
        if let Some(msg) = io.error {
            let _ = io.stderr.append(msg.as_bytes());
            statuses[i] = 1;
            tasks.push(None);
            continue; // dropping `io` closes this stage's pipe ends
        }
        let cwd = st.cwd;
        let (module_path, argv, extra_env) = match cfg.resolve(&st.argv, &cwd) {
            Ok(r) => r,
            Err(msg) => {
                let _ = io.stderr.append(format!("sh: {msg}\n").as_bytes());
                statuses[i] = 127;
                tasks.push(None);
                continue;
            }
        };
        let module = match ctx.engine.prepare(&module_path).await {
            Ok(m) => m,
            Err(e) => {
                let _ = io.stderr.append(
                    format!(
                        "sh: {}: {e}\n",
                        st.argv.first().map(String::as_str).unwrap_or("")
                    )
                    .as_bytes(),
                );
                statuses[i] = 126;
                tasks.push(None);
                continue;
            }
        };
        let mut env: Vec<(String, String)> =
            st.env.into_iter().filter(|(k, _)| k != "PWD").collect();
        for (k, v) in extra_env {
            env.retain(|(x, _)| *x != k);
            env.push((k, v));
        }
        env.push(("PWD".into(), cwd));
        let spec = ExecSpec {
            entry: Entry::Start,
            argv,
            env,
            mounts: ctx.mounts.clone(),
            stdin: Vec::new(),
            limits: ctx.limits.clone(),
        };
        let child_state = SpawnState {
            engine: ctx.engine.clone(),
            config: ctx.config.clone(),
            tree: ctx.tree.clone(),
            depth: ctx.depth + 1,
            mounts: ctx.mounts.clone(),
            limits: ctx.limits.clone(),
            deadline: ctx.deadline,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            pending: None,
        };
        let engine = ctx.engine.clone();
        let deadline = ctx.deadline;
        let guard = guards[i].take();
        let ticket = tickets[i].take();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let _ticket = ticket;
            let StageIo {
                sigpipe,
                stdin,
                stdout,
                stderr,
                ..
            } = io;
            let errsink = stderr.clone();
            match engine
                .run_instance_with(
                    &module,
                    &spec,
                    stdin,
                    stdout,
                    stderr,
                    deadline,
                    Some(child_state),
                )
                .await
            {
                Ok((Termination::Exited, code)) => code,
                Ok((Termination::Trapped, _)) if sigpipe.load(Ordering::SeqCst) => 141,
                Ok((_, code)) => code,
                Err(e) => {
                    let _ = errsink.append(
                        format!(
                            "sh: {}: {e}\n",
                            spec.argv.first().map(String::as_str).unwrap_or("")
                        )
                        .as_bytes(),
                    );
                    126
                }
            }
        });
        aborts.0.push(task.abort_handle());
        tasks.push(Some(task));
    }
    drop(ios);
    for (i, t) in tasks.into_iter().enumerate() {
        if let Some(t) = t {
            statuses[i] = t.await.unwrap_or(134);
        }
    }
    drop(aborts);
    let (out, _) = caps.0.contents();
    let (err, _) = caps.1.contents();
    Response {
        statuses,
        stdout: out,
        stderr: err,
        error: None,
    }
}
