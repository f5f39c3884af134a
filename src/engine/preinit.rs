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
}

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
    let stem = reactor
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module");
    Ok(cache_dir.join(format!("{stem}-snapshot-{}.wasm", key.hex())))
}

/// Runs `recipe.init_func` on `wasm` and returns the pre-initialised module's bytes.
pub(super) async fn preinitialize(
    engine: &Engine,
    wasm: &[u8],
    recipe: &SnapshotRecipe,
) -> Result<Vec<u8>, EngineError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        EngineError::Snapshot(format!("{what}: {e:#}").into())
    };
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
    wizer
        .snapshot(&cx, &mut state)
        .await
        .map_err(|e| failed("snapshotting", &e))
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
