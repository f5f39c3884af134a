//! Pre-initialised snapshots: run a reactor module's init export once (under a WASI context like
//! an execution's), then let wasmtime-wizer write memory and globals back into a new module.
//! Every execution then starts from that state, restored copy-on-write by the pooling allocator,
//! and pays only for what its own code does.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmtime::{Instance, Module, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::fingerprint::Fingerprint;

use super::output::CapturedOutput;
use super::{Engine, EngineError, ExecSpec, HostState};

/// How to pre-initialise a reactor.
#[derive(Clone, Debug)]
pub struct SnapshotRecipe {
    /// The export that does the one-off work (`() -> ()`); removed from the snapshot. Empty
    /// for a module that is already initialised and only gets `init_turn`.
    pub init_func: String,
    /// Python source run through the module's `turn` export after `init_func` (session
    /// reactors: the data runtime imports its libraries this way).
    pub init_turn: Option<String>,
    /// argv, env and mounts the init function sees. Mount order matters: guest libc records
    /// preopened descriptors by position, so executions must mount the same guest paths in the
    /// same order.
    pub spec: ExecSpec,
    /// Changes whenever something the init function reads (e.g. a prelude file) changes.
    pub fingerprint: u64,
    /// How to find the interpreter's interrupt flags in the snapshot, for a runtime that does
    /// not name them itself (no `wasmbox_interrupt_slots` export).
    pub interrupt_probe: Option<InterruptProbe>,
}

/// Finds where a runtime keeps its interrupt flags by raising the interrupt once in the
/// initialised instance (after its snapshot is taken) and comparing memory before and after.
/// Kernels of the snapshot then interrupt a cell by setting the same bits (see `kernel`).
#[derive(Clone, Debug)]
pub struct InterruptProbe {
    /// The module's function (by its name-section name) that raises the interrupt,
    /// `(i32) -> i32` returning 0: CPython's `PyErr_SetInterruptEx`.
    pub function: String,
    /// Its argument (CPython: `SIGINT`).
    pub argument: i32,
    /// What a turn writes on stderr when the interrupt arrives: the flags found are checked
    /// by setting them and running one turn.
    pub raised: String,
}

/// A pre-initialised module and what was learnt while making it.
pub(super) struct Snapshot {
    pub wasm: Vec<u8>,
    /// (address, bits) of the interrupt flags; empty when there is no probe or it failed.
    pub interrupt_slots: Vec<(u32, u32)>,
}

/// The export the probed function is given in the instrumented module.
const PROBE_EXPORT: &str = "wasmbox_probe_interrupt";

/// Bytes under the shadow-stack pointer that the probe call's own frames may write.
const PROBE_STACK_WINDOW: u32 = 64 << 10;

/// More changed words than this are not a handful of flags: the probe is not trusted.
const MAX_INTERRUPT_SLOTS: usize = 16;

/// Where the snapshot of `reactor` made with `recipe` is cached.
pub(super) fn snapshot_path(
    reactor: &Path,
    recipe: &SnapshotRecipe,
    cache_dir: &Path,
) -> Result<PathBuf, EngineError> {
    let meta = std::fs::metadata(reactor).map_err(|e| EngineError::ModuleMissing {
        path: reactor.to_path_buf(),
        source: e.into(),
    })?;
    let mut key = Fingerprint::default();
    key.path(reactor)
        .number(meta.len().into())
        .mtime(meta.modified().ok())
        .bytes(&recipe.init_func)
        .bytes(recipe.init_turn.as_deref().unwrap_or(""))
        .number(recipe.fingerprint.into())
        .bytes(env!("CARGO_PKG_VERSION"));
    if let Some(probe) = &recipe.interrupt_probe {
        key.bytes(&probe.function);
    }
    let stem = reactor
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module");
    Ok(cache_dir.join(format!("{stem}-snapshot-{}.wasm", key.hex())))
}

/// Runs `recipe.init_func` on `wasm` and returns the pre-initialised module.
pub(super) async fn preinitialize(
    engine: &Engine,
    wasm: &[u8],
    recipe: &SnapshotRecipe,
) -> Result<Snapshot, EngineError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        EngineError::Snapshot(format!("{what}: {e:#}").into())
    };
    // The probed function is exported so that the host can call it after the snapshot; the
    // snapshot keeps the export (nothing calls it: guests cannot reach their own exports).
    let probed = match &recipe.interrupt_probe {
        Some(probe) => match export_function(wasm, &probe.function, PROBE_EXPORT) {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(error = %e, "no interrupt probe: kernel cells will not be interruptible");
                None
            }
        },
        None => None,
    };
    let wasm = probed.as_ref().map_or(wasm, |p| p.wasm.as_slice());
    let mut wizer = Wizer::new();
    if !recipe.init_func.is_empty() {
        wizer.init_func(recipe.init_func.clone());
    }
    let (cx, instrumented) = wizer
        .instrument(wasm)
        .map_err(|e| failed("instrumenting", &e))?;
    let module =
        Module::new(&engine.inner.wasmtime, &instrumented).map_err(|e| failed("compiling", &e))?;

    let stdout = CapturedOutput::new(64 << 10);
    let stderr = CapturedOutput::new(64 << 10);
    let deadline = Instant::now() + recipe.spec.limits.timeout;
    let mut store = engine.new_store(
        &recipe.spec,
        wasmtime_wasi::p2::pipe::MemoryInputPipe::new(Vec::<u8>::new()),
        stdout.clone(),
        stderr.clone(),
        deadline,
    )?;
    let instance = engine
        .inner
        .linker
        .instantiate_async(&mut store, &module)
        .await
        .map_err(|e| failed("instantiating", &e))?;
    for name in ["_initialize", recipe.init_func.as_str()] {
        if name.is_empty() {
            continue;
        }
        let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, name) else {
            if name == "_initialize" {
                continue;
            }
            return Err(failed("init function", &format!("no export {name}")));
        };
        if let Err(e) = func.call_async(&mut store, ()).await {
            let (out, _) = stdout.contents();
            let (err, _) = stderr.contents();
            return Err(failed(
                &format!("running {name}"),
                &format!("{e:?}\nstdout: {out}\nstderr: {err}"),
            ));
        }
    }
    if let Some(source) = &recipe.init_turn {
        let status = super::turn(&mut store, &instance, source).await?;
        if !matches!(status, Ok(0)) {
            let (out, _) = stdout.contents();
            let (err, _) = stderr.contents();
            return Err(failed(
                "running the init turn",
                &format!("{status:?}\nstdout: {out}\nstderr: {err}"),
            ));
        }
    }
    let mut state = WizerState { store, instance };
    let wasm = wizer
        .snapshot(&cx, &mut state)
        .await
        .map_err(|e| failed("snapshotting", &e))?;
    let interrupt_slots = match (&recipe.interrupt_probe, &probed) {
        (Some(probe), Some(probed)) => {
            match probe_interrupt(&mut state, probe, probed.stack_pointer, &stderr).await {
                Ok(slots) => {
                    tracing::info!(?slots, "interrupt flags found");
                    slots
                }
                Err(e) => {
                    tracing::warn!(error = %e, "interrupt probe failed: kernel cells will not be interruptible");
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    };
    Ok(Snapshot {
        wasm,
        interrupt_slots,
    })
}

/// A module with one more export, and what the probe needs to know about it.
struct Probed {
    wasm: Vec<u8>,
    /// Index of the `__stack_pointer` global, if the name section names it.
    stack_pointer: Option<u32>,
}

/// Adds an export `export` of the function the name section calls `function`.
fn export_function(wasm: &[u8], function: &str, export: &str) -> Result<Probed, String> {
    use wasm_encoder::{ExportKind, ExportSection, RawSection};
    use wasmparser::{ExternalKind, KnownCustom, Name, Parser, Payload};

    let mut index = None;
    let mut stack_pointer = None;
    let mut exports = None;
    let mut sections = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("reading the module: {e}"))?;
        match &payload {
            Payload::ExportSection(reader) => exports = Some(reader.clone()),
            Payload::CustomSection(custom) => {
                if let KnownCustom::Name(names) = custom.as_known() {
                    for name in names {
                        let (map, wanted, found) = match name {
                            Ok(Name::Function(map)) => (map, function, &mut index),
                            Ok(Name::Global(map)) => (map, "__stack_pointer", &mut stack_pointer),
                            _ => continue,
                        };
                        if let Some(naming) = map.into_iter().flatten().find(|n| n.name == wanted) {
                            *found = Some(naming.index);
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(section) = payload.as_section() {
            sections.push(section);
        }
    }
    let index = index.ok_or_else(|| format!("the module names no function {function}"))?;
    let exports = exports.ok_or("the module has no export section")?;
    let mut section = ExportSection::new();
    for item in exports {
        let item = item.map_err(|e| format!("reading the exports: {e}"))?;
        let kind = match item.kind {
            ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
            ExternalKind::Table => ExportKind::Table,
            ExternalKind::Memory => ExportKind::Memory,
            ExternalKind::Global => ExportKind::Global,
            ExternalKind::Tag => ExportKind::Tag,
        };
        section.export(item.name, kind, item.index);
    }
    section.export(export, ExportKind::Func, index);
    let mut module = wasm_encoder::Module::new();
    for (id, range) in sections {
        if id == wasm_encoder::SectionId::Export as u8 {
            module.section(&section);
        } else {
            module.section(&RawSection {
                id,
                data: &wasm[range],
            });
        }
    }
    Ok(Probed {
        wasm: module.finish(),
        stack_pointer,
    })
}

/// Raises the interrupt in the (already snapshotted) instance and returns the words it set,
/// after checking that setting them alone interrupts a turn.
async fn probe_interrupt(
    state: &mut WizerState,
    probe: &InterruptProbe,
    stack_pointer: Option<u32>,
    stderr: &CapturedOutput,
) -> Result<Vec<(u32, u32)>, String> {
    let WizerState { store, instance } = state;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or("no exported memory")?;
    // Without the stack pointer the probe's own frames could not be told from flags, and
    // setting "flags" there would write into a running cell's stack: no probe then.
    let sp = stack_pointer
        .and_then(|i| {
            instance
                .get_global(&mut *store, &format!("__wizer_global_{i}"))
                .map(|g| g.get(&mut *store))
        })
        .and_then(|value| match value {
            Val::I32(sp) => Some(sp as u32),
            _ => None,
        })
        .ok_or("the module names no __stack_pointer global")?;
    let before = memory.data(&*store).to_vec();
    let raise = instance
        .get_typed_func::<i32, i32>(&mut *store, PROBE_EXPORT)
        .map_err(|e| format!("{e:#}"))?;
    let status = raise
        .call_async(&mut *store, probe.argument)
        .await
        .map_err(|e| format!("calling {}: {e:#}", probe.function))?;
    if status != 0 {
        return Err(format!("{} returned {status}", probe.function));
    }
    let after = memory.data(&*store);
    if after.len() != before.len() {
        return Err("memory grew during the probe".into());
    }
    let slots = changed_flags(&before, after, sp)?;
    // The check: the memory as the snapshot has it, plus the bits, must interrupt a turn.
    let data = memory.data_mut(&mut *store);
    data.copy_from_slice(&before);
    super::kernel::set_bits(data, &slots);
    let status = super::turn(&mut *store, instance, "pass\n")
        .await
        .map_err(|e| format!("the check turn: {e}"))?;
    let (err, _) = stderr.contents();
    if matches!(status, Ok(0)) || !err.contains(&probe.raised) {
        return Err(format!(
            "setting the flags {slots:?} did not interrupt a turn ({status:?})"
        ));
    }
    Ok(slots)
}

/// The 4-byte words that only gained bits between `before` and `after`, as (address, bits);
/// words in the probe call's own stack frames (just under `sp`) are left out. A word that
/// lost bits means something else changed: not a set of flags.
fn changed_flags(before: &[u8], after: &[u8], sp: u32) -> Result<Vec<(u32, u32)>, String> {
    let in_frames = |at: u32| at < sp && at >= sp.saturating_sub(PROBE_STACK_WINDOW);
    let mut slots = Vec::new();
    for (page, (old, new)) in before.chunks(4096).zip(after.chunks(4096)).enumerate() {
        if old == new {
            continue;
        }
        for (word, (o, n)) in old.chunks_exact(4).zip(new.chunks_exact(4)).enumerate() {
            let at = (page * 4096 + word * 4) as u32;
            let (o, n) = (
                u32::from_le_bytes([o[0], o[1], o[2], o[3]]),
                u32::from_le_bytes([n[0], n[1], n[2], n[3]]),
            );
            if o == n || in_frames(at) {
                continue;
            }
            if o & !n != 0 {
                return Err(format!("the word at {at:#x} lost bits ({o:#x} -> {n:#x})"));
            }
            slots.push((at, n & !o));
        }
    }
    if slots.is_empty() {
        return Err("raising the interrupt changed nothing (no handler installed?)".into());
    }
    if slots.len() > MAX_INTERRUPT_SLOTS {
        return Err(format!(
            "raising the interrupt changed {} words",
            slots.len()
        ));
    }
    Ok(slots)
}

struct WizerState {
    store: Store<HostState>,
    instance: Instance,
}

impl InstanceState for WizerState {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        // wizer only asks for the globals its own instrumentation exported.
        let value = self
            .instance
            .get_global(&mut self.store, name)
            .map(|g| g.get(&mut self.store));
        match value {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            other => panic!("wizer asked for global {name} of unsupported kind {other:?}"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut self.store, name) {
            Some(memory) => contents(memory.data(&self.store)),
            None => panic!("wizer asked for memory {name}, which the instance does not export"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(memory: &mut [u8], at: usize, value: u32) {
        memory[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn the_probe_keeps_the_bits_set_outside_its_own_frames() {
        let sp = 0x20000u32;
        let before = vec![0u8; 0x30000];
        let mut after = before.clone();
        word(&mut after, 0x100, 1); // a trip flag
        word(&mut after, 0x2a000, 2); // the eval breaker, above the stack
        word(&mut after, sp as usize - 64, 0xdead); // the probe's own frame
        assert_eq!(
            changed_flags(&before, &after, sp),
            Ok(vec![(0x100, 1), (0x2a000, 2)])
        );
    }

    #[test]
    fn a_probe_that_clears_bits_or_sets_nothing_is_not_trusted() {
        let mut before = vec![0u8; 0x10000];
        word(&mut before, 0x200, 0b11);
        let mut after = before.clone();
        word(&mut after, 0x200, 0b01);
        assert!(changed_flags(&before, &after, 0x8000).is_err());
        assert!(changed_flags(&before, &before, 0x8000).is_err());
        let mut many = before.clone();
        for i in 0..=MAX_INTERRUPT_SLOTS {
            word(&mut many, 0x9000 + 8 * i, 1);
        }
        assert!(changed_flags(&before, &many, 0x8000).is_err());
    }
}
