//! The WebAssembly engine: one shared wasmtime [`wasmtime::Engine`], precompiled modules with an
//! [`InstancePre`] each, and one fresh [`Store`] per execution with its own WASI context and limits.
//!
//! Only this module knows wasmtime. Callers describe an execution as an [`ExecSpec`] (argv, env,
//! mounts, stdin, [`Limits`]) and get back an [`ExecResult`]; a guest failure (non-zero exit, trap,
//! timeout, memory exhaustion) is a result, never an `Err`.

mod admission;
mod cache;
pub mod display;
mod kernel;
pub mod output;
mod preinit;
mod programs;
mod quota;
pub mod spawn;
mod wasi_limits;
mod written;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, InstanceAllocationStrategy, InstancePre, Linker, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::cli::{StdinStream, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

pub use admission::{HostBudget, Refusal, Tenant, Ticket};
pub use display::{DisplayOutput, DisplaySink, OutputKind};
pub use kernel::{CellOutcome, ImageError, Kernel, KernelImage, INTERRUPT_GRACE};
pub use output::{CapturedOutput, OutputTap};
pub use preinit::{InterruptProbe, SnapshotRecipe};
pub use programs::ProgramCompiler;
pub use quota::{DiskQuota, Measure, ENTRY_BYTES};
pub use spawn::{
    live_stdin, BuildFailure, BuildFuture, CommandFuture, CommandOutput, HostCommand, Interpreter,
    LiveStdin, ProgramBuilder, SpawnConfig, StdinClosed, StdinFeed,
};
use spawn::{InstanceIo, Sink, Source, SpawnState};
pub use wasi_limits::FdBudget;

/// How often the epoch ticks; also the granularity at which a busy guest yields to the executor.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled memory slot kept resident between instances when the kernel has
/// `PAGEMAP_SCAN` (Linux 6.7+): only the pages the last run dirtied are then copied back from
/// the snapshot image, so this can cover the snapshot heap (a python run dirtied ~0.9 MiB beyond
/// the first MiB, which with 1 MiB were discarded by `madvise` and copy-on-write faulted in
/// again on every run: 233 faults, ~0.5 ms of kernel time; docs/bench/scaling.md).
const MEMORY_KEEP_RESIDENT_SCANNED: usize = 16 << 20;

/// Without `PAGEMAP_SCAN` wasmtime memsets the whole resident part on every reset, so it stays
/// small.
const MEMORY_KEEP_RESIDENT_MEMSET: usize = 1 << 20;

/// Bytes of each pooled table slot kept resident between instances (reset in place, no faults).
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// The cause of an [`EngineError`]: wasmtime's errors keep their context chain through it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures of the host to set up or run an execution. Guest failures are not errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The module file cannot be read: the runtimes are not installed (here).
    #[error("runtime module {path} is not available; run `wasmbox runtimes fetch`")]
    ModuleMissing {
        /// The module file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: BoxError,
    },
    /// Cranelift rejected the module.
    #[error("compiling a WebAssembly module failed")]
    Compile(#[source] BoxError),
    /// The on-disk cache of compiled modules could not be read or written.
    #[error("the compiled-module cache failed")]
    Cache(#[source] BoxError),
    /// The engine, linker or store could not be configured as asked.
    #[error("configuring the engine failed")]
    Config(#[source] BoxError),
    /// A host directory could not be preopened for the guest.
    #[error("cannot mount {path} into the sandbox")]
    Mount {
        /// The host directory.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: BoxError,
    },
    /// The module could not be linked or instantiated (missing import or entry point).
    #[error("instantiating the module failed")]
    Instantiate(#[source] BoxError),
    /// Running the initialiser of a snapshot failed.
    #[error("pre-initialising a snapshot failed")]
    Snapshot(#[source] BoxError),
    /// No instance could be admitted (in time): retry later.
    #[error(transparent)]
    Busy(#[from] Refusal),
}

/// Engine-wide settings, fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Directory for precompiled artifacts.
    pub cache_dir: PathBuf,
    /// Instances that may be alive at once (the pool size). Executions beyond this wait or fail.
    pub max_instances: u32,
    /// Upper bound for any one instance's linear memory; per-execution limits may only be lower.
    pub max_memory_bytes: u64,
    /// Meter fuel so executions can carry a deterministic CPU budget (costs throughput).
    pub fuel: bool,
    /// Upper bound for the sum of the memory caps of all live instances.
    pub memory_budget_bytes: u64,
    /// Files one instance may hold open at once.
    pub max_open_files: u32,
    /// Host descriptors all guests together may hold open.
    pub max_guest_fds: u64,
    /// The compiler for modules built from user source (Go programs).
    pub program_compiler: ProgramCompiler,
    /// Bytes the on-disk cache of compiled user programs may hold.
    pub program_cache_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("compiled"),
            max_instances: 128,
            max_memory_bytes: 2 << 30,
            fuel: false,
            memory_budget_bytes: 16 << 30,
            max_open_files: 256,
            max_guest_fds: 8192,
            program_compiler: ProgramCompiler::default(),
            program_cache_bytes: 1 << 30,
        }
    }
}

/// Per-execution limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock budget, enforced while computing and while blocked in a host call.
    pub timeout: Duration,
    /// Linear-memory cap for the guest.
    pub memory_bytes: u64,
    /// Bytes kept of each of stdout and stderr; the rest is counted and dropped.
    pub output_bytes: usize,
    /// Deterministic CPU budget in fuel units; only honoured when the engine meters fuel.
    pub fuel: Option<u64>,
    /// The sandbox this execution belongs to: its instance share, cancellation and disk quota.
    pub tenant: Option<Arc<Tenant>>,
    /// How long the execution may wait for a free instance before it is refused.
    pub admission_wait: Duration,
    /// An end that wins over `timeout` when earlier: the stages of one request (Go's compile,
    /// link and run) share the request's deadline while notes still name its timeout.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_bytes: 512 << 20,
            output_bytes: 1 << 20,
            fuel: None,
            tenant: None,
            admission_wait: Duration::ZERO,
            deadline: None,
        }
    }
}

/// A host directory made visible to the guest.
#[derive(Clone, Debug)]
pub struct Mount {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (e.g. `/workspace`).
    pub guest: String,
    /// Whether the guest may change it; read-only mounts hold the runtimes' libraries.
    pub writable: bool,
}

/// How an execution enters the module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// A WASI command: call `_start`; the exit status comes from `proc_exit` (0 if it returns).
    #[default]
    Start,
    /// A reactor (e.g. a pre-initialised snapshot): call this export, `() -> i32`, whose return
    /// value is the exit status.
    Export(String),
    /// A session reactor (the data runtime): copy this Python source into the guest with its
    /// `host_alloc` export and run it with `turn(ptr, len) -> i32`, whose value is the status.
    Turn(String),
}

/// How much of the host's instance pool is taken (see [`Engine::pool_use`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolUse {
    /// Live instances (executions, kernels' cells, shell children).
    pub instances: u32,
    /// The most instances at once.
    pub instance_slots: u32,
    /// The memory caps of the live instances, added up.
    pub memory_bytes: u64,
    /// The most those caps may add up to.
    pub memory_budget_bytes: u64,
}

/// Everything one execution needs besides the module.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    /// Where the module is entered.
    pub entry: Entry,
    /// The guest's argv, `argv[0]` included.
    pub argv: Vec<String>,
    /// The guest's complete environment: nothing of the host's leaks in.
    pub env: Vec<(String, String)>,
    /// The only host directories the guest can see.
    pub mounts: Vec<Mount>,
    /// The guest's whole standard input (then EOF).
    pub stdin: Vec<u8>,
    /// A standard input fed while the guest runs; when set, `stdin` is not used.
    pub live_stdin: Option<LiveStdin>,
    /// Time, memory, output and tenancy limits.
    pub limits: Limits,
    /// Where stdout and stderr are streamed as they are written (kernel cells; optional).
    pub taps: OutputTaps,
}

/// Streams of a kernel cell's stdout and stderr, as written.
#[derive(Clone, Default)]
pub struct OutputTaps {
    /// Receives standard output.
    pub stdout: Option<OutputTap>,
    /// Receives standard error.
    pub stderr: Option<OutputTap>,
    /// Output goes only to the taps, none is kept for the result and no output cap applies
    /// (a terminal session; the tap's owner bounds what it buffers).
    pub stream_only: bool,
}

impl std::fmt::Debug for OutputTaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputTaps")
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("stream_only", &self.stream_only)
            .finish()
    }
}

/// Why an execution ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// The program exited on its own (any status).
    Exited,
    /// The wall-clock budget ran out.
    TimedOut,
    /// The fuel budget ran out.
    OutOfFuel,
    /// The guest trapped after being refused memory.
    MemoryLimit,
    /// The guest trapped (stack overflow, `unreachable`, …).
    Trapped,
    /// Stopped because its sandbox was deleted.
    Cancelled,
}

/// The outcome of one execution.
#[derive(Clone, Debug)]
pub struct ExecResult {
    /// Captured standard output (lossy UTF-8, at most `Limits::output_bytes`).
    pub stdout: String,
    /// Captured standard error, with a note when the host stopped the program.
    pub stderr: String,
    /// The exit status; for host-stopped programs the conventional one (124, 137, 134).
    pub exit_code: i32,
    /// Why the execution ended.
    pub termination: Termination,
    /// Standard output went over the cap and was cut.
    pub stdout_truncated: bool,
    /// Standard error went over the cap and was cut.
    pub stderr_truncated: bool,
    /// Wall-clock time from start to end.
    pub duration: Duration,
    /// Rich outputs (`display()`, a kernel cell's last value), in order.
    pub outputs: Vec<DisplayOutput>,
    /// What the execution used, for hosts that bill tenants.
    pub usage: ResourceUsage,
}

/// What one execution used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceUsage {
    /// Largest linear memory the top-level instance had (a kernel: its memory after the cell).
    pub peak_memory_bytes: u64,
    /// Bytes the program wrote to standard output, kept or not.
    pub stdout_bytes: u64,
    /// Bytes the program wrote to standard error, kept or not (host notes excluded).
    pub stderr_bytes: u64,
}

impl ExecResult {
    /// The result of an execution that ended with `termination`: the captured output, with a
    /// note on stderr when the host stopped the program.
    pub(crate) fn collect(
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
        termination: Termination,
        exit_code: i32,
        duration: Duration,
        limits: &Limits,
    ) -> Self {
        let usage = ResourceUsage {
            peak_memory_bytes: 0,
            stdout_bytes: stdout.written(),
            stderr_bytes: stderr.written(),
        };
        if let Some(note) = termination_note(&termination, limits) {
            stderr.append(note.as_bytes());
        }
        if let Some(quota) = limits.tenant.as_ref().and_then(|t| t.disk()) {
            if quota.take_refused() {
                stderr.append(
                    format!(
                        "\nwasmbox: disk quota of {} MiB exceeded (writes failed with ENOSPC)\n",
                        quota.limit() >> 20
                    )
                    .as_bytes(),
                );
            }
        }
        let (stdout, stdout_truncated) = stdout.contents();
        let (stderr, stderr_truncated) = stderr.contents();
        Self {
            stdout,
            stderr,
            exit_code,
            termination,
            stdout_truncated,
            stderr_truncated,
            duration,
            outputs: Vec::new(),
            usage,
        }
    }

    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.termination == Termination::Exited && self.exit_code == 0
    }

    /// Ended by the wall-clock or fuel budget.
    pub fn timed_out(&self) -> bool {
        matches!(
            self.termination,
            Termination::TimedOut | Termination::OutOfFuel
        )
    }
}

/// A compiled module ready to instantiate cheaply.
pub struct PreparedModule {
    path: PathBuf,
    pre: InstancePre<HostState>,
    /// A fresh instance's memory, captured when the first kernel starts: kernel images are
    /// diffs against it.
    pristine: std::sync::OnceLock<Arc<[u8]>>,
    /// Hash of each page of `pristine`, computed at the first whole kernel image: rewriting
    /// an image then hashes only the pages the kernel wrote, not all of its memory.
    pristine_hashes: std::sync::OnceLock<Arc<[u64]>>,
    /// Whether an idle instance's state is its memory alone (see `kernel`), read lazily.
    whole_state: std::sync::OnceLock<bool>,
    /// (address, bits) of the interpreter's interrupt flags, when its snapshot found them (a
    /// runtime without a `wasmbox_interrupt_slots` export; see [`InterruptProbe`]).
    interrupt_slots: Arc<[(u32, u32)]>,
}

impl PreparedModule {
    /// The module file this was compiled from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names this exact build (snapshot files are named by a hash of what made them).
    pub fn identity(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The fresh-instance memory, recorded from `fresh` the first time.
    fn pristine_memory(&self, fresh: &[u8]) -> Arc<[u8]> {
        self.pristine.get_or_init(|| Arc::from(fresh)).clone()
    }

    /// The hash of each page of the fresh-instance memory (see [`Self::pristine_memory`]).
    fn pristine_hashes(&self) -> Arc<[u64]> {
        self.pristine_hashes
            .get_or_init(|| {
                self.pristine_memory(&[])
                    .chunks(kernel::CHUNK)
                    .map(kernel::chunk_hash)
                    .collect()
            })
            .clone()
    }

    fn memory_is_whole_state(&self) -> bool {
        *self.whole_state.get_or_init(|| {
            std::fs::read(&self.path).is_ok_and(|wasm| kernel::memory_is_whole_state(&wasm))
        })
    }
}

/// Where the interrupt flags a snapshot's probe found are kept: beside the snapshot, as
/// little-endian (address, bits) pairs.
fn interrupt_slots_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("interrupt")
}

/// The interrupt flags recorded beside `module`; none when there is no such file.
fn read_interrupt_slots(module: &Path) -> Vec<(u32, u32)> {
    let bytes = std::fs::read(interrupt_slots_path(module)).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|pair| {
            let word = |at: usize| {
                u32::from_le_bytes([pair[at], pair[at + 1], pair[at + 2], pair[at + 3]])
            };
            (word(0), word(4))
        })
        .collect()
}

/// Host-side state of one store.
pub struct HostState {
    wasi: WasiP1Ctx,
    /// The shell's `wasmbox.spawn` import (None: the import refuses).
    spawn: Option<SpawnState>,
    limiter: MemoryLimiter,
    open_files: wasi_limits::OpenFiles,
    /// Where file writes are charged (the sandbox's quota).
    disk: Option<Arc<DiskQuota>>,
    /// Rich outputs the guest hands over.
    display: DisplaySink,
    /// A kernel cell's interrupt (None outside kernels).
    interrupt: Option<Arc<kernel::CellInterrupt>>,
}

/// Caps linear memory and remembers whether it refused a growth, so a later trap can be blamed
/// on the memory limit.
struct MemoryLimiter {
    max_bytes: usize,
    refused: bool,
    /// The largest size the memory was allowed to grow to.
    peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes && maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.peak = self.peak.max(desired);
        } else {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000 && maximum.is_none_or(|max| desired <= max))
    }
}

/// Marker error raised from the epoch callback when the deadline has passed.
#[derive(Debug)]
pub(crate) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("execution deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Increments the engine epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Vec<wasmtime::Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type ModuleSlot = Arc<tokio::sync::OnceCell<Arc<PreparedModule>>>;

struct EngineInner {
    wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    config: EngineConfig,
    modules: Mutex<HashMap<PathBuf, ModuleSlot>>,
    budget: Arc<HostBudget>,
    fds: Arc<FdBudget>,
    /// Serialises snapshot generation so concurrent first uses make one snapshot, not several.
    snapshot_lock: tokio::sync::Mutex<()>,
    /// The second tier, for modules built from user source.
    programs: programs::Programs,
    _ticker: EpochTicker,
}

/// The shared engine. Cheap to clone; create one per process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl Engine {
    /// Builds the wasmtime engine (pooling allocator, copy-on-write memory images, epoch
    /// interruption) and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.max_instances.max(1);
        let max_memory = usize::try_from(config.max_memory_bytes).map_err(|_| {
            EngineError::Config("max_memory_bytes does not fit this platform".into())
        })?;
        // The data runtime's CPython throws wasm exceptions, which live in a GC heap; the pool
        // gives each store's GC heap a memory slot of its own, hence two slots per instance.
        pool.total_core_instances(slots)
            .total_memories(slots.saturating_mul(2))
            .total_gc_heaps(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memory_size(max_memory)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .linear_memory_keep_resident(if written::pagemap_scan_supported() {
                MEMORY_KEEP_RESIDENT_SCANNED
            } else {
                MEMORY_KEEP_RESIDENT_MEMSET
            })
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Reset only the dirtied pages of the resident part; falls back where unsupported.
            .pagemap_scan(wasmtime::Enabled::Auto);

        let build = |compiler: Option<ProgramCompiler>| {
            let mut wasm_config = Config::new();
            wasm_config
                .epoch_interruption(true)
                .consume_fuel(config.fuel)
                .memory_init_cow(true)
                .max_wasm_stack(8 << 20)
                .async_stack_size(9 << 20)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool.clone()));
            match compiler {
                Some(compiler) => compiler.configure(&mut wasm_config),
                // Modules compiled with C++/setjmp exceptions (the data runtime) need the
                // proposal; modules that do not use it compile to the same code. (Go programs,
                // on the second engine, do not use it, and Winch does not implement it.)
                None => {
                    wasm_config
                        .wasm_exceptions(true)
                        .collector(wasmtime::Collector::DeferredReferenceCounting);
                }
            }
            let wasmtime =
                wasmtime::Engine::new(&wasm_config).map_err(|e| EngineError::Config(e.into()))?;
            let linker = new_linker(&wasmtime)?;
            Ok::<_, EngineError>((wasmtime, linker))
        };
        let (wasmtime, linker) = build(None)?;
        let (program_engine, program_linker) = build(Some(config.program_compiler))?;
        let programs = programs::Programs::new(
            program_engine.clone(),
            program_linker,
            config.program_compiler,
            config.cache_dir.join("programs"),
            config.program_cache_bytes,
        );

        let budget = Arc::new(HostBudget::new(slots, config.memory_budget_bytes));
        let fds = Arc::new(FdBudget::new(config.max_guest_fds));
        let ticker = EpochTicker::start(vec![wasmtime.clone(), program_engine]);
        Ok(Self {
            inner: Arc::new(EngineInner {
                wasmtime,
                linker,
                config,
                modules: Mutex::new(HashMap::new()),
                budget,
                fds,
                snapshot_lock: tokio::sync::Mutex::new(()),
                programs,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The host-wide instance and memory budget every instance is admitted from.
    pub fn budget(&self) -> &Arc<HostBudget> {
        &self.inner.budget
    }

    /// Descriptors held by guests.
    pub fn guest_fds(&self) -> &FdBudget {
        &self.inner.fds
    }

    /// The memory cap an instance under `limits` is admitted with.
    fn memory_cap(&self, limits: &Limits) -> u64 {
        limits.memory_bytes.min(self.inner.config.max_memory_bytes)
    }

    /// The instance pool now: (instances in use, instance slots, memory-cap bytes reserved,
    /// memory budget bytes).
    pub fn pool_use(&self) -> PoolUse {
        let (instances, memory_bytes) = self.inner.budget.in_use();
        let (instance_slots, memory_budget_bytes) = self.inner.budget.capacity();
        PoolUse {
            instances,
            instance_slots,
            memory_bytes,
            memory_budget_bytes,
        }
    }

    /// Admits a request's top-level instance, waiting up to `limits.admission_wait`.
    pub(crate) async fn admit(&self, limits: &Limits) -> Result<Ticket, EngineError> {
        Ok(self
            .inner
            .budget
            .admit(
                self.memory_cap(limits),
                limits.tenant.as_ref(),
                limits.admission_wait,
            )
            .await?)
    }

    /// Admits a shell child now or not at all (as `fork` fails with `EAGAIN`).
    pub(crate) fn admit_child(&self, limits: &Limits) -> Result<Ticket, Refusal> {
        self.inner
            .budget
            .try_admit(self.memory_cap(limits), limits.tenant.as_ref(), true)
    }

    /// Loads (compiling on first use, from the on-disk cache afterwards) and links the module at
    /// `wasm`. Concurrent callers for the same module share one load.
    pub async fn prepare(&self, wasm: &Path) -> Result<Arc<PreparedModule>, EngineError> {
        let slot = {
            let mut modules = self.inner.modules.lock().unwrap_or_else(|e| e.into_inner());
            modules.entry(wasm.to_path_buf()).or_default().clone()
        };
        let prepared = slot
            .get_or_try_init(|| async {
                let inner = self.inner.clone();
                let path = wasm.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    let module =
                        cache::load_module(&inner.wasmtime, &path, &inner.config.cache_dir)?;
                    let pre = inner
                        .linker
                        .instantiate_pre(&module)
                        .map_err(|e| EngineError::Instantiate(e.into()))?;
                    let interrupt_slots = read_interrupt_slots(&path).into();
                    Ok::<_, EngineError>(Arc::new(PreparedModule {
                        path,
                        pre,
                        pristine: Default::default(),
                        pristine_hashes: Default::default(),
                        whole_state: Default::default(),
                        interrupt_slots,
                    }))
                })
                .await
                .map_err(|e| EngineError::Compile(e.into()))?
            })
            .await?;
        Ok(prepared.clone())
    }

    /// The user program cached under `key` (see [`Self::compile_program`]), if any.
    pub async fn cached_program(
        &self,
        key: &str,
    ) -> Result<Option<Arc<PreparedModule>>, EngineError> {
        self.inner.programs.cached(key)
    }

    /// Compiles a module built from user source with the program compiler and caches it under
    /// `key`, which must name everything `wasm` was built from (a digest of the source and the
    /// toolchain): the cache is shared by every sandbox.
    pub async fn compile_program(
        &self,
        key: String,
        wasm: Vec<u8>,
    ) -> Result<Arc<PreparedModule>, EngineError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.programs.compile(&key, &wasm))
            .await
            .map_err(|e| EngineError::Compile(e.into()))?
    }

    /// Loads the pre-initialised snapshot of the reactor at `reactor` made with `recipe`,
    /// creating it (and caching it on disk) on first use.
    pub async fn prepare_snapshot(
        &self,
        reactor: &Path,
        recipe: &SnapshotRecipe,
    ) -> Result<Arc<PreparedModule>, EngineError> {
        let path = preinit::snapshot_path(reactor, recipe, &self.inner.config.cache_dir)?;
        if !path.is_file() {
            let _guard = self.inner.snapshot_lock.lock().await;
            if !path.is_file() {
                let wasm = std::fs::read(reactor).map_err(|e| EngineError::ModuleMissing {
                    path: reactor.to_path_buf(),
                    source: e.into(),
                })?;
                tracing::info!(reactor = %reactor.display(), "pre-initialising a snapshot (first use; cached afterwards)");
                let snapshot = preinit::preinitialize(self, &wasm, recipe).await?;
                let cache_err = |e: std::io::Error| {
                    EngineError::Cache(format!("writing {}: {e}", path.display()).into())
                };
                std::fs::create_dir_all(&self.inner.config.cache_dir).map_err(cache_err)?;
                // The flags first: a snapshot on disk always has the flags it found beside it
                // (a snapshot without any has no file).
                if !snapshot.interrupt_slots.is_empty() {
                    let slots: Vec<u8> = snapshot
                        .interrupt_slots
                        .iter()
                        .flat_map(|&(at, bits)| [at.to_le_bytes(), bits.to_le_bytes()])
                        .flatten()
                        .collect();
                    crate::atomic_write::write_atomic(&interrupt_slots_path(&path), &slots)
                        .map_err(cache_err)?;
                }
                crate::atomic_write::write_atomic(&path, &snapshot.wasm).map_err(cache_err)?;
            }
        }
        self.prepare(&path).await
    }

    /// Runs `module` once in a fresh store, capturing stdout/stderr.
    pub async fn execute(
        &self,
        module: &PreparedModule,
        spec: ExecSpec,
    ) -> Result<ExecResult, EngineError> {
        self.execute_captured(module, spec, None).await
    }

    /// Like [`Engine::execute`], for the shell: the guest may start programs through the
    /// `wasmbox.spawn` import, as configured by `spawn`. Children share the execution's deadline,
    /// memory cap, mounts and (when they inherit them) its captured stdout/stderr.
    pub async fn execute_with_spawn(
        &self,
        module: &PreparedModule,
        spec: ExecSpec,
        spawn: SpawnConfig,
    ) -> Result<ExecResult, EngineError> {
        self.execute_captured(module, spec, Some(spawn)).await
    }

    /// One top-level execution, with or without the spawn import: admission, captured output,
    /// the same stream types a shell's children get.
    async fn execute_captured(
        &self,
        module: &PreparedModule,
        spec: ExecSpec,
        spawn: Option<SpawnConfig>,
    ) -> Result<ExecResult, EngineError> {
        let _ticket = self.admit(&spec.limits).await?;
        let sink = |tap: &Option<OutputTap>| match (spec.taps.stream_only, tap) {
            (true, Some(tap)) => CapturedOutput::streaming(tap.clone()),
            _ => CapturedOutput::tapped(spec.limits.output_bytes, tap.clone()),
        };
        let stdout = sink(&spec.taps.stdout);
        let stderr = sink(&spec.taps.stderr);
        let started = Instant::now();
        let deadline = spec
            .limits
            .deadline
            .map_or(started + spec.limits.timeout, |end| {
                end.min(started + spec.limits.timeout)
            });
        let display = DisplaySink::default();
        let io = InstanceIo {
            stdin: match &spec.live_stdin {
                Some(live) => Source::Pipe(live.0.clone()),
                None => Source::data(spec.stdin.clone()),
            },
            stdout: Sink::Captured(stdout.clone()),
            stderr: Sink::Captured(stderr.clone()),
            display: display.clone(),
            peak_memory: Default::default(),
        };
        let peak_memory = io.peak_memory.clone();
        let spawn =
            spawn.map(|config| SpawnState::root(self.clone(), config, &spec, deadline, &io));
        let jobs = spawn.as_ref().map(SpawnState::execution_jobs);
        let outcome = self.run_instance(module, &spec, io, deadline, spawn).await;
        // Nothing the program started in the background outlives it.
        if let Some(jobs) = jobs {
            jobs.end().await;
        }
        let (termination, exit_code) = outcome?;
        let outputs = display.take_noting(&stderr);
        let mut result = ExecResult::collect(
            &stdout,
            &stderr,
            termination,
            exit_code,
            started.elapsed(),
            &spec.limits,
        );
        result.outputs = outputs;
        result.usage.peak_memory_bytes = peak_memory.load(std::sync::atomic::Ordering::Relaxed);
        Ok(result)
    }

    /// The WASI context of one instance or kernel cell: argv, env, mounts and the given streams.
    fn wasi_ctx(
        &self,
        spec: &ExecSpec,
        stdin: impl StdinStream + 'static,
        stdout: impl StdoutStream + 'static,
        stderr: impl StdoutStream + 'static,
    ) -> Result<WasiP1Ctx, EngineError> {
        let mut wasi = WasiCtxBuilder::new();
        // File operations run on the thread running the guest instead of being handed to
        // tokio's blocking pool and back: that round trip cost more than the operation itself
        // (a fresh CPython opens and stats a dozen files; Go's linker reads its archives in
        // thousands of small reads). The guest waits for them either way, and only regular
        // files and directories of the sandbox's own tree and the read-only runtime mounts are
        // reachable (WASI cannot make FIFOs or devices), so no operation can block for long.
        wasi.allow_blocking_current_thread(true);
        wasi.args(&spec.argv)
            .envs(&spec.env)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        for mount in &spec.mounts {
            let perms = if mount.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&mount.host, &mount.guest, perms)
                .map_err(|e| EngineError::Mount {
                    path: mount.host.clone(),
                    source: e.into(),
                })?;
        }
        Ok(wasi.build_p1())
    }

    fn open_files(&self) -> wasi_limits::OpenFiles {
        wasi_limits::OpenFiles::new(self.inner.config.max_open_files, self.inner.fds.clone())
    }

    /// A fresh store for one instance: WASI context (argv, env, mounts, the given streams),
    /// memory limiter, epoch deadline and optional fuel.
    pub(crate) fn new_store(
        &self,
        spec: &ExecSpec,
        stdin: impl StdinStream + 'static,
        stdout: impl StdoutStream + 'static,
        stderr: impl StdoutStream + 'static,
        deadline: Instant,
    ) -> Result<Store<HostState>, EngineError> {
        self.new_store_in(&self.inner.wasmtime, spec, stdin, stdout, stderr, deadline)
    }

    /// [`Self::new_store`] in the given wasmtime engine (the program tier's for user programs).
    fn new_store_in(
        &self,
        wasmtime: &wasmtime::Engine,
        spec: &ExecSpec,
        stdin: impl StdinStream + 'static,
        stdout: impl StdoutStream + 'static,
        stderr: impl StdoutStream + 'static,
        deadline: Instant,
    ) -> Result<Store<HostState>, EngineError> {
        let memory_cap = usize::try_from(self.memory_cap(&spec.limits)).unwrap_or(usize::MAX);
        let state = HostState {
            wasi: self.wasi_ctx(spec, stdin, stdout, stderr)?,
            spawn: None,
            limiter: MemoryLimiter {
                max_bytes: memory_cap,
                refused: false,
                peak: 0,
            },
            open_files: self.open_files(),
            disk: spec.limits.tenant.as_ref().and_then(|t| t.disk().cloned()),
            display: DisplaySink::default(),
            interrupt: None,
        };
        let mut store = Store::new(wasmtime, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        if self.inner.config.fuel {
            store
                .set_fuel(spec.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| EngineError::Config(e.into()))?;
        }
        Ok(store)
    }

    /// Instantiates `module` and runs its entry with the given streams (and, for the shell and
    /// its children, spawn state) until it ends, `deadline` passes or its tenant is cancelled.
    /// Returns how it ended and the exit status to report.
    pub(crate) async fn run_instance(
        &self,
        module: &PreparedModule,
        spec: &ExecSpec,
        io: InstanceIo,
        deadline: Instant,
        spawn: Option<SpawnState>,
    ) -> Result<(Termination, i32), EngineError> {
        let peak_memory = io.peak_memory;
        let mut store = self.new_store_in(
            module.pre.module().engine(),
            spec,
            io.stdin,
            io.stdout,
            io.stderr,
            deadline,
        )?;
        store.data_mut().spawn = spawn;
        store.data_mut().display = io.display;

        let run = async {
            let instance = module
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| EngineError::Instantiate(e.into()))?;
            let result = match &spec.entry {
                Entry::Start => {
                    let start = instance
                        .get_typed_func::<(), ()>(&mut store, "_start")
                        .map_err(|e| {
                            EngineError::Instantiate(e.context("the module has no _start").into())
                        })?;
                    start.call_async(&mut store, ()).await.map(|()| 0)
                }
                Entry::Export(name) => {
                    let run = instance
                        .get_typed_func::<(), i32>(&mut store, name)
                        .map_err(|e| {
                            EngineError::Instantiate(
                                e.context(format!("the module has no export {name}")).into(),
                            )
                        })?;
                    run.call_async(&mut store, ()).await
                }
                Entry::Turn(source) => turn(&mut store, &instance, source).await?,
            };
            Ok::<_, EngineError>(classify(result, store.data().limiter.refused))
        };
        let cancelled = async {
            match &spec.limits.tenant {
                Some(tenant) => tenant.cancelled().await,
                None => std::future::pending().await,
            }
        };
        // Either way out drops the future, which drops the store and frees the instance, even
        // when the guest is parked in a host call (sleep, read).
        let outcome = tokio::select! {
            outcome = tokio::time::timeout_at(deadline.into(), run) => match outcome {
                Ok(outcome) => outcome,
                Err(_) => Ok((Termination::TimedOut, EXIT_TIMEOUT)),
            },
            () = cancelled => Ok((Termination::Cancelled, EXIT_MEMORY)),
        };
        peak_memory.store(
            store.data().limiter.peak as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        outcome
    }
}

/// Runs `source` through a session reactor's `host_alloc` and `turn` exports. The outer error is
/// a module without that interface; the inner result is the guest's (a trap, an exit).
pub(crate) async fn turn(
    store: &mut Store<HostState>,
    instance: &wasmtime::Instance,
    source: &str,
) -> Result<wasmtime::Result<i32>, EngineError> {
    let missing = |what: &str| {
        EngineError::Instantiate(format!("the module has no {what}: not a session reactor").into())
    };
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| missing("memory"))?;
    let alloc = instance
        .get_typed_func::<i32, i32>(&mut *store, "host_alloc")
        .map_err(|_| missing("host_alloc export"))?;
    let turn = instance
        .get_typed_func::<(i32, i32), i32>(&mut *store, "turn")
        .map_err(|_| missing("turn export"))?;
    let Ok(len) = i32::try_from(source.len()) else {
        return Ok(Err(wasmtime::Error::msg("the code is larger than 2 GiB")));
    };
    let ptr = match alloc.call_async(&mut *store, len).await {
        Ok(ptr) => ptr,
        Err(e) => return Ok(Err(e)),
    };
    // A failed allocation (0) or one outside memory: the guest gets no code (and says so).
    let written = ptr != 0
        && memory
            .write(&mut *store, ptr as u32 as usize, source.as_bytes())
            .is_ok();
    let (ptr, len) = if written { (ptr, len) } else { (0, 0) };
    Ok(turn.call_async(&mut *store, (ptr, len)).await)
}

/// Exit status reported for executions stopped by their time or fuel budget (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit status reported when the guest died after being refused memory (as a SIGKILL'd process).
pub const EXIT_MEMORY: i32 = 137;
/// Exit status reported for other traps (as SIGABRT).
pub const EXIT_TRAP: i32 = 134;

pub(crate) fn classify(result: wasmtime::Result<i32>, memory_refused: bool) -> (Termination, i32) {
    let err = match result {
        Ok(status) => return (Termination::Exited, status),
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return (Termination::Exited, exit.0);
    }
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return (Termination::TimedOut, EXIT_TIMEOUT);
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (Termination::OutOfFuel, EXIT_TIMEOUT),
        Some(Trap::Interrupt) => (Termination::TimedOut, EXIT_TIMEOUT),
        _ if memory_refused => (Termination::MemoryLimit, EXIT_MEMORY),
        _ => {
            tracing::debug!(error = ?err, "guest trapped");
            (Termination::Trapped, EXIT_TRAP)
        }
    }
}

fn termination_note(termination: &Termination, limits: &Limits) -> Option<String> {
    match termination {
        Termination::Exited => None,
        Termination::TimedOut => Some(format!(
            "\nwasmbox: execution timed out after {}s\n",
            limits.timeout.as_secs_f64()
        )),
        Termination::OutOfFuel => Some("\nwasmbox: CPU budget (fuel) exhausted\n".into()),
        Termination::MemoryLimit => Some(format!(
            "\nwasmbox: memory limit of {} MiB exceeded\n",
            limits.memory_bytes >> 20
        )),
        Termination::Trapped => Some("\nwasmbox: the program crashed (WebAssembly trap)\n".into()),
        Termination::Cancelled => Some("\nwasmbox: stopped: the sandbox was deleted\n".into()),
    }
}

/// A linker with WASI (and its limits) and our own imports.
fn new_linker(wasmtime: &wasmtime::Engine) -> Result<Linker<HostState>, EngineError> {
    let mut linker = Linker::new(wasmtime);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| &mut s.wasi)
        .map_err(|e| EngineError::Config(e.into()))?;
    wasi_limits::add_to_linker(&mut linker)?;
    add_host_imports(&mut linker)?;
    Ok(linker)
}

/// Imports under the `wasmbox` module that our own guests may use.
fn add_host_imports(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    // `proc_exit` refuses statuses >= 126, which a shell needs (126, 127); this carries any status.
    linker
        .func_wrap("wasmbox", "exit", |status: i32| -> wasmtime::Result<()> {
            Err(I32Exit(status).into())
        })
        .map_err(|e| EngineError::Config(e.into()))?;
    spawn::add_to_linker(linker)?;
    display::add_to_linker(linker)?;
    kernel::add_to_linker(linker)?;
    Ok(())
}
