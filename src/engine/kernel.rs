//! Kernels: one live instance that runs cell after cell, keeping its memory (variables,
//! imports, functions) in between, as a Jupyter kernel does.
//!
//! Each cell gets a fresh WASI context (its own argv = the code, environment, captured
//! stdout/stderr, the sandbox's mounts in the same order) in the same store; the guest glue
//! (`wasmbox_cell`) re-reads them. A cell that runs past its timeout is *interrupted*, not
//! killed: the host ORs the guest's interrupt flags into its memory (the guest named them through
//! `wasmbox_interrupt_slots`: for CPython what a SIGINT trips, for QuickJS its interrupt flag),
//! from the epoch callback while the guest computes or from the `poll_oneoff` shadow while it
//! sleeps; the interpreter raises `KeyboardInterrupt` and the kernel lives on. Only a guest that
//! ignores the interrupt for [`INTERRUPT_GRACE`] is killed with its kernel.
//!
//! A kernel's state is its linear memory: the modules have one mutable global, the shadow-stack
//! pointer, which is back at its base whenever no call runs (checked when the module is
//! loaded). An image is a header and a log of records: the first holds the 4 KiB chunks (pages)
//! that differ from a fresh instance's memory, each later one the chunks that changed since the
//! record before (found by hashing, with xxh3, the pages written since the instance was made;
//! pagemap says which are still untouched copy-on-write or never-faulted pages). A page that an
//! earlier record of this kernel already holds is recorded only in its changed 256-byte
//! [`SUBCHUNK`]s (an interpreter writes a few words of each page it touches: a cell's record is
//! a fraction of its pages). Restoring is a fresh instance plus the chunks, the last record
//! winning. Each record carries a CRC-32: a
//! damaged record makes the image unusable, while a record cut short at the end of the file (a
//! crash while appending; never acknowledged) is ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmtime::{AsContextMut, Caller, Extern, Linker, Memory, Store, TypedFunc, UpdateDeadline};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::wasi_limits::call_wasi;
use super::written::WrittenPages;

use super::display::DisplaySink;
use super::output::CapturedOutput;
use super::{
    classify, DeadlineExceeded, Engine, EngineError, ExecResult, ExecSpec, HostState,
    PreparedModule, Termination, Ticket, EXIT_TIMEOUT,
};

/// How long a cell may ignore its interrupt before it is killed (and its kernel with it).
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// Granularity of kernel images.
pub(super) const CHUNK: usize = 4 << 10;
/// WebAssembly's page size: memories grow in these.
const WASM_PAGE: usize = 64 << 10;
/// Part of a chunk a record can hold alone (a chunk's `u16` mask has one bit per part).
pub(super) const SUBCHUNK: usize = CHUNK / 16;
/// Start of every kernel image file: records with masks (v3) and whole chunks (v2, still read).
const MAGIC: &[u8; 8] = b"WBXKRNL3";
const MAGIC_V2: &[u8; 8] = b"WBXKRNL2";
/// Start of every record.
const RECORD: u32 = 0x4452_4352;

/// The interrupt of the running cell, shared by the epoch callback, the `poll_oneoff` shadow
/// and the timer that fires it.
pub(crate) struct CellInterrupt {
    requested: AtomicBool,
    delivered: AtomicBool,
    notify: Notify,
    slots: Arc<[(u32, u32)]>,
    memory: Memory,
}

impl CellInterrupt {
    fn new(slots: Arc<[(u32, u32)]>, memory: Memory) -> Self {
        Self {
            requested: AtomicBool::new(false),
            delivered: AtomicBool::new(false),
            notify: Notify::new(),
            slots,
            memory,
        }
    }

    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the cell should be interrupted.
    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once the interrupt is requested.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }

    /// Sets the guest's interrupt flags, once. Only called while the guest is suspended (in the
    /// epoch callback or a host call), so it never races guest code.
    pub(crate) fn deliver(&self, mut store: impl AsContextMut<Data = HostState>) {
        if self.delivered.swap(true, Ordering::SeqCst) {
            return;
        }
        set_bits(self.memory.data_mut(&mut store), &self.slots);
    }
}

/// ORs each (address, bits) of `slots` into the little-endian word at that address of `memory`
/// (one out of bounds is skipped).
pub(super) fn set_bits(memory: &mut [u8], slots: &[(u32, u32)]) {
    for &(addr, bits) in slots {
        let at = addr as usize;
        if let Some(word) = memory.get_mut(at..at + 4) {
            let mut value = [0u8; 4];
            value.copy_from_slice(word);
            word.copy_from_slice(&(u32::from_le_bytes(value) | bits).to_le_bytes());
        }
    }
}

/// Shadows `poll_oneoff`, for every instance:
///
/// - A lone relative clock (a plain sleep: `setTimeout`'s wait, `nanosleep`) sleeps on the
///   async timer here. wasmtime-wasi would `std::thread::sleep` it on the thread running the
///   guest once file operations may block that thread (see `wasi_ctx`), which no timeout
///   could cut short.
/// - A cell parked in it (`time.sleep`, a timer) returns as soon as it is interrupted: its
///   flags are delivered and the poll reports its clock as fired, so the interpreter gets back
///   to checking them (CPython then raises `KeyboardInterrupt` at the call).
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    linker.allow_shadowing(true);
    linker
        .func_wrap_async(
            "wasi_snapshot_preview1",
            "poll_oneoff",
            |mut caller: Caller<'_, HostState>,
             (subs, events, count, nevents): (i32, i32, i32, i32)| {
                Box::new(async move {
                    let sleep = lone_relative_clock(&mut caller, subs, count);
                    let interrupt = caller.data().interrupt.clone();
                    if !interrupt.as_ref().is_some_and(|i| i.requested()) {
                        let finished = {
                            let poll = async {
                                match sleep {
                                    Some(duration) => {
                                        tokio::time::sleep(duration).await;
                                        Ok(wake_early(&mut caller, subs, events, count, nevents))
                                    }
                                    None => call_wasi!(
                                        caller,
                                        poll_oneoff,
                                        subs,
                                        events,
                                        count,
                                        nevents
                                    ),
                                }
                            };
                            match &interrupt {
                                None => Some(poll.await),
                                Some(interrupt) => tokio::select! {
                                    result = poll => Some(result),
                                    () = interrupt.wait() => None,
                                },
                            }
                        };
                        if let Some(result) = finished {
                            return result;
                        }
                    }
                    // Only a cell's poll gets here: interrupted before or while it waited.
                    if let Some(interrupt) = interrupt {
                        interrupt.deliver(&mut caller);
                    }
                    Ok(wake_early(&mut caller, subs, events, count, nevents))
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    Ok(())
}

/// How long to sleep when the poll's only subscription is a clock with a relative timeout;
/// `None` for anything else (absolute clocks, descriptors, several subscriptions, bad memory),
/// which wasmtime-wasi polls.
fn lone_relative_clock(
    caller: &mut Caller<'_, HostState>,
    subs: i32,
    count: i32,
) -> Option<Duration> {
    const CLOCK: u8 = 0;
    const ABSTIME: u16 = 1;
    if count != 1 {
        return None;
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return None;
    };
    let at = subs as u32 as usize;
    // subscription: userdata u64, tag u8 (+7), clock id u32 (+4), timeout u64, precision u64,
    // flags u16.
    let sub = memory.data(&caller).get(at..at + 48)?;
    if sub[8] != CLOCK {
        return None;
    }
    let timeout = u64::from_le_bytes(sub[24..32].try_into().ok()?);
    let flags = u16::from_le_bytes(sub[40..42].try_into().ok()?);
    (flags & ABSTIME == 0).then(|| Duration::from_nanos(timeout))
}

/// Ends an interrupted poll successfully: a lone clock subscription is reported as fired (what
/// `clock_nanosleep` expects), anything else as no event (a timeout).
fn wake_early(
    caller: &mut Caller<'_, HostState>,
    subs: i32,
    events: i32,
    count: i32,
    nevents: i32,
) -> i32 {
    const SUBSCRIPTION: usize = 48;
    const EVENT: usize = 32;
    const CLOCK: u8 = 0;
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return wasmtime_wasi::p1::types::Errno::Fault as i32;
    };
    let data = memory.data_mut(caller);
    let (subs, events, nevents) = (
        subs as u32 as usize,
        events as u32 as usize,
        nevents as u32 as usize,
    );
    let mut fired = 0u32;
    let first = data.get(subs..subs + SUBSCRIPTION).map(|sub| {
        let mut userdata = [0u8; 8];
        userdata.copy_from_slice(&sub[..8]);
        (userdata, sub[8])
    });
    if let (1, Some((userdata, CLOCK))) = (count, first) {
        if let Some(event) = data.get_mut(events..events + EVENT) {
            event.fill(0);
            event[..8].copy_from_slice(&userdata);
            event[10] = CLOCK;
            fired = 1;
        }
    }
    match data.get_mut(nevents..nevents + 4) {
        Some(out) => {
            out.copy_from_slice(&fired.to_le_bytes());
            wasmtime_wasi::p1::types::Errno::Success as i32
        }
        None => wasmtime_wasi::p1::types::Errno::Fault as i32,
    }
}

/// Why a kernel image cannot be restored; the caller starts a fresh kernel instead.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file is damaged (torn, truncated or altered): its checksum or layout is wrong.
    #[error("the kernel image is corrupt ({0})")]
    Corrupt(&'static str),
    /// The image was made from another module (e.g. the runtime was upgraded).
    #[error("the kernel image belongs to another runtime build ({0})")]
    OtherModule(String),
    /// The file ends inside a record or the header.
    #[error("the kernel image is corrupt (truncated)")]
    Truncated,
    /// The runtime's state is not only its memory, so it has no images.
    #[error("this runtime's kernels cannot be hibernated")]
    Unsupported,
    /// Writing the image failed.
    #[error("writing the kernel image failed")]
    Write(#[from] std::io::Error),
}

/// A decoded kernel image: the parts of memory that differ from a fresh instance, by offset.
pub struct KernelImage<'a> {
    memory_len: usize,
    chunks: Vec<(usize, &'a [u8])>,
}

/// The memory size one record was written at, and the (offset, bytes) runs it holds: each a
/// whole chunk or consecutive parts of one.
type Record<'a> = (usize, Vec<(usize, &'a [u8])>);

/// What the records so far hold of one chunk: a whole copy, then newer parts.
#[derive(Default)]
struct ChunkState<'a> {
    whole: Option<&'a [u8]>,
    parts: [Option<&'a [u8]>; 16],
}

impl<'a> KernelImage<'a> {
    /// Checks and decodes an image written by [`Kernel::write_image`] and
    /// [`Kernel::write_changes`] for `module`.
    pub fn decode(bytes: &'a [u8], module: &PreparedModule) -> Result<Self, ImageError> {
        let mut r = Reader(bytes);
        let masked = match r.take(MAGIC.len())? {
            m if m == MAGIC => true,
            m if m == MAGIC_V2 => false,
            _ => return Err(ImageError::Corrupt("not a kernel image")),
        };
        let name_len = r.u32()? as usize;
        let name = r.take(name_len)?;
        let header_len = bytes.len() - r.0.len();
        if crc32fast::hash(&bytes[..header_len]) != r.u32()? {
            return Err(ImageError::Corrupt("header checksum mismatch"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if name != module.identity() {
            return Err(ImageError::OtherModule(name));
        }
        let mut state = std::collections::BTreeMap::<usize, ChunkState<'a>>::new();
        let mut memory_len = None;
        while !r.0.is_empty() {
            let Some((len, record)) = Self::record(&mut r, masked)? else {
                break; // cut short by a crash while appending: never acknowledged
            };
            memory_len = Some(len);
            for (at, run) in record {
                let chunk = state.entry(at / CHUNK).or_default();
                if run.len() == CHUNK {
                    *chunk = ChunkState {
                        whole: Some(run),
                        ..ChunkState::default()
                    };
                } else {
                    let first = at % CHUNK / SUBCHUNK;
                    for (slot, part) in chunk.parts[first..].iter_mut().zip(run.chunks(SUBCHUNK)) {
                        *slot = Some(part);
                    }
                }
            }
        }
        let memory_len = memory_len.ok_or(ImageError::Corrupt("no state"))?;
        // Copied in this order, each chunk's newer parts land over its older whole copy.
        let mut chunks = Vec::with_capacity(state.len());
        for (index, chunk) in state {
            let at = index * CHUNK;
            chunks.extend(chunk.whole.map(|whole| (at, whole)));
            for (part, bytes) in chunk.parts.iter().enumerate() {
                chunks.extend(bytes.map(|bytes| (at + part * SUBCHUNK, bytes)));
            }
        }
        Ok(Self { memory_len, chunks })
    }

    /// One record (chunks with part masks when `masked`, else whole chunks): `Ok(None)` if the
    /// bytes end inside it.
    fn record(r: &mut Reader<'a>, masked: bool) -> Result<Option<Record<'a>>, ImageError> {
        let start = r.0;
        let parse = |r: &mut Reader<'a>| -> Result<Record<'a>, ImageError> {
            if r.u32()? != RECORD {
                return Err(ImageError::Corrupt("bad record"));
            }
            let memory_len =
                usize::try_from(r.u64()?).map_err(|_| ImageError::Corrupt("memory size"))?;
            if memory_len % WASM_PAGE != 0 {
                return Err(ImageError::Corrupt("memory size"));
            }
            let count = r.u32()? as usize;
            let mut chunks = Vec::with_capacity(count.min(1 << 16));
            for _ in 0..count {
                let at = r.u32()? as usize * CHUNK;
                if at + CHUNK > memory_len {
                    return Err(ImageError::Corrupt("chunk out of range"));
                }
                let mask = if masked { r.u16()? } else { u16::MAX };
                for (first, end) in part_runs(mask) {
                    let run = r.take((end - first) * SUBCHUNK)?;
                    chunks.push((at + first * SUBCHUNK, run));
                }
            }
            let body_len = start.len() - r.0.len();
            if crc32fast::hash(&start[..body_len]) != r.u32()? {
                return Err(ImageError::Corrupt("checksum mismatch"));
            }
            Ok((memory_len, chunks))
        };
        match parse(r) {
            Ok(record) => Ok(Some(record)),
            Err(ImageError::Truncated) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        if self.0.len() < n {
            return Err(ImageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, ImageError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, ImageError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

/// How a cell ended, and whether its kernel is still usable.
#[derive(Debug)]
pub struct CellOutcome {
    /// Output, status and rich outputs of the cell.
    pub result: ExecResult,
    /// False when the cell trapped, ran out of memory or ignored its interrupt: the kernel's
    /// state is gone and it must be replaced.
    pub alive: bool,
}

/// A live interpreter instance that keeps its state between cells.
pub struct Kernel {
    /// Which pages were written since the last image record, once the first whole image is
    /// written (None: not started, or not available here). Declared before `store`, so the
    /// range is unregistered before the memory goes back to the pool.
    written: Option<WrittenPages>,
    /// Whether starting `written` failed once (then chunks are hashed).
    untrackable: bool,
    engine: Engine,
    store: Store<HostState>,
    memory: Memory,
    /// `wasmbox_cell`, or None for a session reactor whose cells are turns (the data runtime).
    cell: Option<TypedFunc<(), i32>>,
    instance: wasmtime::Instance,
    slots: Arc<[(u32, u32)]>,
    module: Arc<PreparedModule>,
    /// The kernel's pool slot and the memory it holds between cells.
    ticket: Ticket,
    memory_cap: u64,
    /// Hash of each chunk as of the last record written (None: the next image must be whole).
    recorded: Option<Vec<u64>>,
    /// Hashes of the parts of each chunk an appended record wrote, as of the last record: the
    /// next change to such a chunk records only the parts whose hash changed.
    part_hashes: PartHashes,
}

/// The hashes of the parts of some chunks, by chunk index.
type PartHashes = std::collections::HashMap<usize, [u64; 16]>;
/// A chunk a cell changed: its index, and its part hashes if they were computed.
type ChangedChunk = (usize, Option<[u64; 16]>);

impl Engine {
    /// Starts a kernel of `module` (a snapshot whose glue exports `wasmbox_cell`) under the
    /// mounts and limits of `spec`. It holds a pool slot for its whole life and, between cells,
    /// the bytes of memory it has grown to.
    pub async fn start_kernel(
        &self,
        module: &Arc<PreparedModule>,
        spec: &ExecSpec,
    ) -> Result<Kernel, EngineError> {
        self.instantiate_kernel(module, spec, None).await
    }

    /// Restores a kernel from `image` (see [`KernelImage::decode`]).
    pub async fn restore_kernel(
        &self,
        module: &Arc<PreparedModule>,
        spec: &ExecSpec,
        image: &KernelImage<'_>,
    ) -> Result<Kernel, EngineError> {
        self.instantiate_kernel(module, spec, Some(image)).await
    }

    async fn instantiate_kernel(
        &self,
        module: &Arc<PreparedModule>,
        spec: &ExecSpec,
        image: Option<&KernelImage<'_>>,
    ) -> Result<Kernel, EngineError> {
        let ticket = self.admit(&spec.limits).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut store = self.new_store(
            spec,
            MemoryInputPipe::new(Vec::<u8>::new()),
            CapturedOutput::new(0),
            CapturedOutput::new(0),
            deadline,
        )?;
        let instance = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| EngineError::Instantiate(e.into()))?;
        let missing = |what: &str| {
            EngineError::Instantiate(
                format!("the module has no {what}: not a kernel runtime").into(),
            )
        };
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing("memory"))?;
        // A session reactor (exports `turn`) runs cells as turns and names no interrupt flags
        // itself: its snapshot's probe found them, or its cells can only be killed at the end
        // of the grace period.
        let session = instance.get_export(&mut store, "turn").is_some();
        let cell = match instance.get_typed_func::<(), i32>(&mut store, "wasmbox_cell") {
            Ok(cell) => Some(cell),
            Err(_) if session => None,
            Err(_) => return Err(missing("wasmbox_cell export")),
        };
        let slots_fn =
            match instance.get_typed_func::<(), u32>(&mut store, "wasmbox_interrupt_slots") {
                Ok(slots) => Some(slots),
                Err(_) if session => None,
                Err(_) => return Err(missing("wasmbox_interrupt_slots export")),
            };
        // Before any guest code runs: the baseline images are diffs against.
        module.pristine_memory(memory.data(&store));
        if let Some(image) = image {
            let pages = image.memory_len.saturating_sub(memory.data_size(&store)) / WASM_PAGE;
            if pages > 0 {
                memory
                    .grow_async(&mut store, pages as u64)
                    .await
                    .map_err(|e| {
                        EngineError::Instantiate(e.context("restoring a kernel").into())
                    })?;
            }
            let data = memory.data_mut(&mut store);
            if data.len() != image.memory_len {
                return Err(EngineError::Instantiate(
                    "a kernel image is smaller than the fresh instance".into(),
                ));
            }
            for (at, part) in &image.chunks {
                data[*at..*at + part.len()].copy_from_slice(part);
            }
        }
        let slots = match slots_fn {
            Some(slots_fn) => {
                let table = slots_fn
                    .call_async(&mut store, ())
                    .await
                    .map_err(|e| EngineError::Instantiate(e.into()))?
                    as usize;
                read_slots(memory.data(&store), table)
            }
            None => module.interrupt_slots.to_vec(),
        };
        let mut kernel = Kernel {
            written: None,
            untrackable: false,
            engine: self.clone(),
            store,
            memory,
            cell,
            instance,
            slots: slots.into(),
            module: module.clone(),
            ticket,
            memory_cap: self.memory_cap(&spec.limits),
            recorded: None,
            part_hashes: Default::default(),
        };
        kernel.settle();
        Ok(kernel)
    }
}

/// (address, bits) pairs from the guest's table at `at`, up to the 0 address.
fn read_slots(memory: &[u8], at: usize) -> Vec<(u32, u32)> {
    let word = |i: usize| -> Option<u32> {
        let bytes = memory.get(at + 4 * i..at + 4 * i + 4)?;
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes);
        Some(u32::from_le_bytes(b))
    };
    (0..8)
        .map_while(|i| {
            let addr = word(2 * i)?;
            (addr != 0).then_some((addr, word(2 * i + 1)?))
        })
        .collect()
}

impl Kernel {
    /// Bytes of linear memory the kernel has grown to.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    /// Holds only the memory the kernel has between cells.
    fn settle(&mut self) {
        let resident = self.memory_bytes();
        self.engine
            .inner
            .budget
            .set_memory(&mut self.ticket, resident);
    }

    /// Runs one cell: `spec.argv` carries the code (`[argv0, "<cell>", code]`), `spec.env`,
    /// `spec.mounts` (the same as at start) and `spec.limits` (timeout, output caps) apply to it.
    pub async fn run_cell(&mut self, spec: &ExecSpec) -> Result<CellOutcome, EngineError> {
        let engine = self.engine.clone();
        // The cell may grow to the cap: hold the difference while it runs.
        let extra = self.memory_cap.saturating_sub(self.memory_bytes());
        let _hold = engine
            .inner
            .budget
            .admit_memory(extra, spec.limits.admission_wait)
            .await?;

        let stdout = CapturedOutput::tapped(spec.limits.output_bytes, spec.taps.stdout.clone());
        let stderr = CapturedOutput::tapped(spec.limits.output_bytes, spec.taps.stderr.clone());
        let wasi = engine.wasi_ctx(
            spec,
            MemoryInputPipe::new(spec.stdin.clone()),
            stdout.clone(),
            stderr.clone(),
        )?;
        let interrupt = Arc::new(CellInterrupt::new(self.slots.clone(), self.memory));
        {
            let state = self.store.data_mut();
            state.wasi = wasi;
            state.open_files = engine.open_files();
            state.display = DisplaySink::default();
            state.disk = spec.limits.tenant.as_ref().and_then(|t| t.disk().cloned());
            state.interrupt = Some(interrupt.clone());
        }
        let started = Instant::now();
        let deadline = started + spec.limits.timeout;
        let hard_deadline = deadline + INTERRUPT_GRACE;
        let epoch_interrupt = interrupt.clone();
        self.store.set_epoch_deadline(1);
        self.store.epoch_deadline_callback(move |mut cx| {
            let now = Instant::now();
            if now >= deadline {
                epoch_interrupt.request();
            }
            if epoch_interrupt.requested() {
                epoch_interrupt.deliver(&mut cx);
            }
            if now >= hard_deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let tenant = spec.limits.tenant.clone();
        let cancelled = async move {
            match tenant {
                Some(tenant) => tenant.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        let (outcome, interrupted) = {
            let (cell, instance, store) = (self.cell.clone(), self.instance, &mut self.store);
            let call = async move {
                match (&spec.entry, cell) {
                    (super::Entry::Turn(source), _) => super::turn(store, &instance, source)
                        .await
                        .unwrap_or_else(|e| Err(wasmtime::Error::msg(e.to_string()))),
                    (_, Some(cell)) => cell.call_async(store, ()).await,
                    (_, None) => Err(wasmtime::Error::msg("this kernel runs cells as turns")),
                }
            };
            tokio::pin!(call);
            tokio::select! {
                r = &mut call => (Some(r), false),
                () = &mut cancelled => (None, false),
                () = tokio::time::sleep_until(deadline.into()) => {
                    interrupt.request();
                    tokio::select! {
                        r = &mut call => (Some(r), true),
                        () = &mut cancelled => (None, true),
                        () = tokio::time::sleep_until(hard_deadline.into()) => (None, true),
                    }
                }
            }
        };
        // The epoch callback may have fired the interrupt before the timer did.
        let interrupted = interrupted || interrupt.requested();
        let (termination, exit_code, alive) = match outcome {
            Some(result) => {
                let refused = self.store.data().limiter.refused;
                let (termination, code) = classify(result, refused);
                let alive = termination == Termination::Exited;
                if alive && interrupted {
                    (Termination::TimedOut, EXIT_TIMEOUT, true)
                } else {
                    (termination, code, alive)
                }
            }
            None if interrupted => (Termination::TimedOut, EXIT_TIMEOUT, false),
            None => (Termination::Cancelled, super::EXIT_MEMORY, false),
        };
        {
            // Between cells the kernel holds no descriptors and no interrupt.
            let state = self.store.data_mut();
            state.interrupt = None;
            state.wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
            state.open_files = engine.open_files();
        }
        let outputs = self.store.data().display.take_noting(&stderr);
        if termination == Termination::TimedOut {
            let note = if alive {
                "\nwasmbox: the cell was interrupted at its timeout; the kernel keeps its state\n"
                    .to_string()
            } else {
                format!(
                    "\nwasmbox: the cell ignored its interrupt for {}s and was killed; the kernel \
                     was restarted (its state is lost)\n",
                    INTERRUPT_GRACE.as_secs()
                )
            };
            stderr.append(note.as_bytes());
        } else if !alive && termination != Termination::Cancelled {
            stderr.append(b"\nwasmbox: the kernel was lost with this cell and will be restarted\n");
        }
        // A live kernel's only note is its own (above); a lost one also gets the execution's.
        let noted = if alive {
            Termination::Exited
        } else {
            termination.clone()
        };
        let mut result = ExecResult::collect(
            &stdout,
            &stderr,
            noted,
            exit_code,
            started.elapsed(),
            &spec.limits,
        );
        result.termination = termination;
        result.outputs = outputs;
        result.usage.peak_memory_bytes = self.memory_bytes();
        if alive {
            self.settle();
        }
        Ok(CellOutcome { result, alive })
    }

    /// Writes a whole image (a header and one record of the chunks that differ from a fresh
    /// instance) to `out`; -> bytes written. Only valid between cells, which `&mut self`
    /// guarantees.
    pub fn write_image(&mut self, out: &mut impl std::io::Write) -> Result<u64, ImageError> {
        if !self.module.memory_is_whole_state() {
            return Err(ImageError::Unsupported);
        }
        let name = self.module.identity();
        let mut header = Vec::with_capacity(16 + name.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(name.len() as u32).to_le_bytes());
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        write(out, &header)?;
        // The whole image holds whole chunks; part hashes start again from the next record.
        self.part_hashes.clear();
        let pristine_hashes = self.module.pristine_hashes();
        let zero = [0u8; CHUNK];
        let zero_hash = zero_chunk_hash();
        // Rewriting an image this kernel keeps records for (compaction): the chunks whose hash
        // differs from the fresh instance's, hashing only what was written since the last
        // record.
        if let Some(previous) = self.recorded.take() {
            let (hashes, _) = self.current_hashes(previous);
            let data = self.memory.data(&self.store);
            let changed = data
                .chunks(CHUNK)
                .enumerate()
                .filter(|(index, _)| {
                    hashes[*index] != pristine_hashes.get(*index).copied().unwrap_or(zero_hash)
                })
                .map(|(index, chunk)| (index, u16::MAX, chunk));
            let written = write_record(out, data.len(), changed)?;
            self.recorded = Some(hashes);
            return Ok(header.len() as u64 + written);
        }
        let pristine = self.module.pristine_memory(&[]);
        let data = self.memory.data(&self.store);
        // Untouched pages equal the fresh instance's and are not even read (reading a page
        // beyond the image would map the zero page and make it look written from then on).
        let untouched = untouched_pages(data).unwrap_or_default();
        let is_untouched = |index: usize| untouched.get(index) == Some(&true);
        let base = |index: usize| -> &[u8] {
            let at = index * CHUNK;
            pristine.get(at..at + CHUNK).unwrap_or(&zero)
        };
        // An untouched chunk hashes as the fresh instance's (hashed once per module).
        let hashes: Vec<u64> = data
            .chunks(CHUNK)
            .enumerate()
            .map(|(index, chunk)| {
                if !is_untouched(index) {
                    chunk_hash(chunk)
                } else {
                    pristine_hashes.get(index).copied().unwrap_or(zero_hash)
                }
            })
            .collect();
        let changed = data
            .chunks(CHUNK)
            .enumerate()
            .filter(|(index, chunk)| !is_untouched(*index) && *chunk != base(*index))
            .map(|(index, chunk)| (index, u16::MAX, chunk));
        let written = write_record(out, data.len(), changed)?;
        // From here on only pages written after this image need hashing again.
        if self.written.is_none() && !self.untrackable {
            // All the memory may grow into, so growth during a cell is tracked too.
            let cap = usize::try_from(self.memory_cap).unwrap_or(usize::MAX);
            self.written = WrittenPages::track(data.as_ptr(), cap.max(data.len()));
            self.untrackable = self.written.is_none();
        }
        let len = data.len();
        if let Some(Err(e)) = self.written.as_mut().map(|w| w.protect_all(len)) {
            self.stop_tracking(&e);
        }
        self.recorded = Some(hashes);
        Ok(header.len() as u64 + written)
    }

    /// Appends a record of the chunks changed since the last one to `out` (an image this kernel
    /// wrote); -> bytes written, or `None` when the image must be written whole first (none
    /// written since the kernel started or was restored, or the last write failed).
    pub fn write_changes(
        &mut self,
        out: &mut impl std::io::Write,
    ) -> Result<Option<u64>, ImageError> {
        let Some(previous) = self.recorded.take() else {
            return Ok(None);
        };
        let grew = self.memory.data(&self.store).len() / CHUNK != previous.len();
        let (hashes, changed) = self.current_hashes(previous);
        if changed.is_empty() && !grew {
            self.recorded = Some(hashes);
            return Ok(Some(0));
        }
        // A chunk recorded by an earlier append: only its parts that changed; else all of it.
        let data = self.memory.data(&self.store);
        let mut chunks = Vec::with_capacity(changed.len());
        for (index, parts) in changed {
            let Some(chunk) = data.get(index * CHUNK..(index + 1) * CHUNK) else {
                continue;
            };
            let parts = parts.unwrap_or_else(|| part_hashes(chunk));
            let mask = match self.part_hashes.insert(index, parts) {
                Some(before) => (0..16)
                    .filter(|part| before[*part] != parts[*part])
                    .fold(0u16, |mask, part| mask | (1 << part)),
                None => u16::MAX,
            };
            // Equal parts with a different chunk hash cannot happen short of a collision:
            // then the chunk is written whole.
            chunks.push((index, if mask == 0 { u16::MAX } else { mask }, chunk));
        }
        let written = write_record(out, data.len(), chunks.into_iter())?;
        self.recorded = Some(hashes);
        Ok(Some(written))
    }

    /// The hash of every chunk now, from `previous` (the hashes of the last record, updated in
    /// place), and the chunks whose hash changed, in order, with their part hashes when they
    /// were computed on the way. Only the pages written since the last record are hashed again
    /// (all the pages the kernel ever wrote when writes are not tracked).
    fn current_hashes(&mut self, mut hashes: Vec<u64>) -> (Vec<u64>, Vec<ChangedChunk>) {
        let len = self.memory.data_size(&self.store);
        let reported = match self.written.as_ref().map(|w| w.written(len)) {
            Some(Ok(ranges)) => Some(ranges),
            Some(Err(e)) => {
                self.stop_tracking(&e);
                None
            }
            None => None,
        };
        let data = self.memory.data(&self.store);
        let zero_hash = zero_chunk_hash();
        // Pages the memory grew into and nobody wrote are zero, as a restore's grown memory is.
        hashes.resize(data.len() / CHUNK, zero_hash);
        match reported {
            // Only the pages written since the last record can have changed.
            Some(ranges) => {
                let mut changed = Vec::new();
                for index in ranges.iter().cloned().flatten() {
                    let (Some(slot), Some(chunk)) = (
                        hashes.get_mut(index),
                        data.get(index * CHUNK..(index + 1) * CHUNK),
                    ) else {
                        continue;
                    };
                    let parts = part_hashes(chunk);
                    let hash = combine(&parts);
                    if hash != *slot {
                        *slot = hash;
                        changed.push((index, Some(parts)));
                    }
                }
                // Hashed: protect them again (but the pages that keep changing).
                let is_changed =
                    |index: usize| changed.binary_search_by_key(&index, |c| c.0).is_ok();
                if let Some(Err(e)) = self
                    .written
                    .as_mut()
                    .map(|w| w.protect(len, &ranges, is_changed))
                {
                    self.stop_tracking(&e);
                }
                (hashes, changed)
            }
            None => {
                // Pages the kernel has not written since it was instantiated cannot have
                // changed since the last record: only the others are hashed.
                let untouched = untouched_pages(data);
                let mut changed = Vec::new();
                for (index, chunk) in data.chunks(CHUNK).enumerate() {
                    if untouched.as_ref().and_then(|u| u.get(index)) == Some(&true) {
                        continue;
                    }
                    let hash = chunk_hash(chunk);
                    if let Some(slot) = hashes.get_mut(index).filter(|slot| **slot != hash) {
                        *slot = hash;
                        changed.push((index, None));
                    }
                }
                (hashes, changed)
            }
        }
    }

    /// Gives up tracking written pages after `e`: from now on the pages the kernel ever wrote
    /// are hashed instead.
    fn stop_tracking(&mut self, e: &std::io::Error) {
        tracing::warn!(error = %e, "tracking written kernel pages failed; hashing them");
        self.written = None;
        self.untrackable = true;
    }

    /// Forgets what was recorded: the next image is written whole.
    pub fn forget_image(&mut self) {
        self.recorded = None;
        self.part_hashes.clear();
    }
}

/// For each page of `data`, whether this process has provably never written it since the memory
/// was mapped: from `/proc/self/pagemap`, a page still backed by the copy-on-write image file
/// (present and file-backed) or never faulted in (not present, not swapped). Private pages that
/// were written are anonymous, and only swap can take them out of memory, so both kinds are
/// unchanged. `None` (hash everything) when the page size is not [`CHUNK`] or pagemap cannot be
/// read.
fn untouched_pages(data: &[u8]) -> Option<Vec<bool>> {
    use std::os::unix::fs::FileExt;
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE_OR_SHARED: u64 = 1 << 61;
    if rustix::param::page_size() != CHUNK || !(data.as_ptr() as usize).is_multiple_of(CHUNK) {
        return None;
    }
    let pages = data.len() / CHUNK;
    let mut entries = vec![0u8; pages * 8];
    let pagemap = std::fs::File::open("/proc/self/pagemap").ok()?;
    let offset = (data.as_ptr() as usize / CHUNK * 8) as u64;
    pagemap.read_exact_at(&mut entries, offset).ok()?;
    Some(
        entries
            .chunks_exact(8)
            .map(|entry| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(entry);
                let flags = u64::from_le_bytes(bytes);
                if flags & PRESENT != 0 {
                    flags & FILE_OR_SHARED != 0
                } else {
                    flags & SWAPPED == 0
                }
            })
            .collect(),
    )
}

fn write(out: &mut impl std::io::Write, bytes: &[u8]) -> Result<(), ImageError> {
    Ok(out.write_all(bytes)?)
}

/// The runs of consecutive parts `mask` names, as (first, end) part numbers.
fn part_runs(mask: u16) -> impl Iterator<Item = (usize, usize)> {
    let mut part = 0;
    std::iter::from_fn(move || {
        while part < 16 && mask & (1 << part) == 0 {
            part += 1;
        }
        let first = part;
        while part < 16 && mask & (1 << part) != 0 {
            part += 1;
        }
        (first < 16).then_some((first, part))
    })
}

/// The hash of a chunk: of its parts' hashes, so that hashing a chunk yields its part hashes
/// on the way.
pub(super) fn chunk_hash(chunk: &[u8]) -> u64 {
    combine(&part_hashes(chunk))
}

/// The hash of a chunk of zeros (memory grown into and never written), computed once.
fn zero_chunk_hash() -> u64 {
    static HASH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HASH.get_or_init(|| chunk_hash(&[0u8; CHUNK]))
}

/// A chunk's hash from its part hashes.
fn combine(parts: &[u64; 16]) -> u64 {
    let mut bytes = [0u8; 16 * 8];
    for (out, hash) in bytes.chunks_exact_mut(8).zip(parts) {
        out.copy_from_slice(&hash.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The xxh3 hash of each [`SUBCHUNK`] of `chunk`.
fn part_hashes(chunk: &[u8]) -> [u64; 16] {
    let mut hashes = [0u64; 16];
    for (hash, part) in hashes.iter_mut().zip(chunk.chunks(SUBCHUNK)) {
        *hash = xxhash_rust::xxh3::xxh3_64(part);
    }
    hashes
}

/// One record: memory size, the given (index, part mask, chunk) triples (each chunk's index,
/// mask and the parts the mask names), CRC-32. -> bytes written.
fn write_record<'a>(
    out: &mut impl std::io::Write,
    memory_len: usize,
    chunks: impl Iterator<Item = (usize, u16, &'a [u8])> + Clone,
) -> Result<u64, ImageError> {
    let count = chunks.clone().count();
    let mut written = 16 + 4;
    let mut hasher = crc32fast::Hasher::new();
    let mut head = Vec::with_capacity(16);
    head.extend_from_slice(&RECORD.to_le_bytes());
    head.extend_from_slice(&(memory_len as u64).to_le_bytes());
    head.extend_from_slice(&(count as u32).to_le_bytes());
    hasher.update(&head);
    write(out, &head)?;
    for (index, mask, chunk) in chunks {
        let mut head = [0u8; 6];
        head[..4].copy_from_slice(&(index as u32).to_le_bytes());
        head[4..].copy_from_slice(&mask.to_le_bytes());
        hasher.update(&head);
        write(out, &head)?;
        written += head.len();
        for (first, end) in part_runs(mask) {
            let run = &chunk[first * SUBCHUNK..end * SUBCHUNK];
            hasher.update(run);
            write(out, run)?;
            written += run.len();
        }
    }
    write(out, &hasher.finalize().to_le_bytes())?;
    Ok(written as u64)
}

/// Whether a module's only mutable global is the shadow-stack pointer, so that memory is the
/// whole state of an idle instance.
pub(super) fn memory_is_whole_state(wasm: &[u8]) -> bool {
    let mut mutable = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::GlobalSection(globals)) => {
                for global in globals {
                    match global {
                        Ok(g) if g.ty.mutable => mutable += 1,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            }
            Ok(wasmparser::Payload::ImportSection(imports)) => {
                for import in imports.into_imports() {
                    match import {
                        Ok(i) if matches!(i.ty, wasmparser::TypeRef::Global(_)) => return false,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    mutable <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_zero_address() {
        let mut memory = vec![0u8; 64];
        for (i, v) in [40u32, 1, 44, 2, 0].iter().enumerate() {
            memory[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(read_slots(&memory, 8), vec![(40, 1), (44, 2)]);
        assert_eq!(read_slots(&memory, 1000), vec![]);
    }

    #[test]
    fn records_hold_the_parts_their_masks_name_and_later_records_win() {
        let memory_len = 2 * WASM_PAGE;
        let whole = vec![1u8; CHUNK];
        let mut changed = vec![1u8; CHUNK];
        changed[3 * SUBCHUNK..4 * SUBCHUNK].fill(7);
        changed[15 * SUBCHUNK] = 9;
        let mask = (0..16)
            .filter(|p| part_hashes(&whole)[*p] != part_hashes(&changed)[*p])
            .fold(0u16, |m, p| m | (1 << p));
        assert_eq!(mask, (1 << 3) | (1 << 15));
        assert_eq!(part_runs(mask).collect::<Vec<_>>(), vec![(3, 4), (15, 16)]);
        assert_eq!(part_runs(u16::MAX).collect::<Vec<_>>(), vec![(0, 16)]);
        assert_eq!(
            part_runs(0b0110_0000_0000_0011).collect::<Vec<_>>(),
            vec![(0, 2), (13, 15)]
        );
        assert_eq!(part_runs(0).count(), 0);
        let mut bytes = Vec::new();
        let first = write_record(
            &mut bytes,
            memory_len,
            [(2, u16::MAX, &whole[..])].into_iter(),
        )
        .expect("first record");
        let second = write_record(
            &mut bytes,
            memory_len,
            [(2, mask, &changed[..])].into_iter(),
        )
        .expect("second record");
        assert_eq!(first as usize, 20 + 6 + CHUNK);
        assert_eq!(second as usize, 20 + 6 + 2 * SUBCHUNK);
        assert_eq!(bytes.len() as u64, first + second);

        let mut reader = Reader(&bytes);
        let mut memory = vec![0u8; memory_len];
        for _ in 0..2 {
            let (len, parts) = KernelImage::record(&mut reader, true)
                .expect("valid record")
                .expect("complete record");
            assert_eq!(len, memory_len);
            for (at, part) in parts {
                memory[at..at + part.len()].copy_from_slice(part);
            }
        }
        assert!(reader.0.is_empty());
        assert_eq!(&memory[2 * CHUNK..3 * CHUNK], &changed[..]);
        assert!(memory[..2 * CHUNK].iter().all(|b| *b == 0));

        // A version-2 record (whole chunks, no masks) reads as whole chunks.
        let mut v2 = Vec::new();
        v2.extend_from_slice(&RECORD.to_le_bytes());
        v2.extend_from_slice(&(memory_len as u64).to_le_bytes());
        v2.extend_from_slice(&1u32.to_le_bytes());
        v2.extend_from_slice(&5u32.to_le_bytes());
        v2.extend_from_slice(&changed);
        let crc = crc32fast::hash(&v2);
        v2.extend_from_slice(&crc.to_le_bytes());
        let (_, parts) = KernelImage::record(&mut Reader(&v2), false)
            .expect("valid v2 record")
            .expect("complete v2 record");
        assert_eq!(parts, vec![(5 * CHUNK, &changed[..])]);

        // A record cut short is no record; a flipped byte fails its checksum.
        let cut = &bytes[first as usize..bytes.len() - 1];
        assert!(matches!(
            KernelImage::record(&mut Reader(cut), true),
            Ok(None)
        ));
        let mut flipped = bytes[first as usize..].to_vec();
        flipped[30] ^= 1;
        assert!(matches!(
            KernelImage::record(&mut Reader(&flipped), true),
            Err(ImageError::Corrupt(_))
        ));
    }
}
