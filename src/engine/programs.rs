//! Modules built from user source (a Go program's `prog.wasm`): compiled with a cheap tier and
//! cached by a key the caller derives from everything the module depends on.
//!
//! The interpreters are few and hot, so they get Cranelift's optimising tier once. A user's
//! program is new on every edit and usually runs once, so what matters is the time to the first
//! instruction: the baseline compiler (Winch) compiles several times faster than even Cranelift
//! at `opt-level=none`, and still honours epoch interruption, the memory cap and every WASI limit
//! (those are enforced by the runtime and the generated bounds checks, not by the optimiser).
//!
//! Compiled programs are kept on disk (so a repeated source is fast across CLI runs and
//! restarts) in a folder bounded in bytes, least recently used evicted first, and loaded ones in
//! memory, bounded in count. Keys are full SHA-256 digests of the source and toolchain, so one
//! tenant's entry can neither be named nor collided with by another's.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use wasmtime::{Config, Linker, Module};

use super::{EngineError, HostState, PreparedModule};
use crate::atomic_write::write_atomic;

/// Which compiler turns user programs into machine code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgramCompiler {
    /// Wasmtime's baseline compiler: one pass, no optimisation, fastest to compile.
    #[default]
    Winch,
    /// Cranelift with `opt-level=none`.
    Cranelift,
}

impl ProgramCompiler {
    /// The name used in settings and file names.
    pub fn name(self) -> &'static str {
        match self {
            ProgramCompiler::Winch => "winch",
            ProgramCompiler::Cranelift => "cranelift",
        }
    }

    /// Selects this compiler in an engine configuration.
    pub(crate) fn configure(self, config: &mut Config) {
        match self {
            // Winch still compiles one Cranelift trampoline per function a table or export
            // exposes, and a Go program exposes every function: those tiny trampolines cost
            // more than Winch's own pass, so they get Cranelift's cheapest settings.
            ProgramCompiler::Winch => {
                config
                    .strategy(wasmtime::Strategy::Winch)
                    .cranelift_opt_level(wasmtime::OptLevel::None)
                    .cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
            }
            ProgramCompiler::Cranelift => {
                config
                    .strategy(wasmtime::Strategy::Cranelift)
                    .cranelift_opt_level(wasmtime::OptLevel::None);
            }
        }
    }
}

impl std::str::FromStr for ProgramCompiler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "winch" => Ok(ProgramCompiler::Winch),
            "cranelift" => Ok(ProgramCompiler::Cranelift),
            other => Err(format!(
                "unknown program compiler '{other}' (winch or cranelift)"
            )),
        }
    }
}

/// Loaded programs kept in memory (each holds its compiled code and memory image).
const LOADED: usize = 64;

/// The program tier: its own wasmtime engine and linker, and the cache of what it compiled.
pub(crate) struct Programs {
    pub(crate) wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    compiler: ProgramCompiler,
    dir: PathBuf,
    max_disk_bytes: u64,
    loaded: Mutex<VecDeque<(String, Arc<PreparedModule>)>>,
}

impl Programs {
    pub(crate) fn new(
        wasmtime: wasmtime::Engine,
        linker: Linker<HostState>,
        compiler: ProgramCompiler,
        dir: PathBuf,
        max_disk_bytes: u64,
    ) -> Self {
        Self {
            wasmtime,
            linker,
            compiler,
            dir,
            max_disk_bytes,
            loaded: Mutex::new(VecDeque::new()),
        }
    }

    fn artifact(&self, key: &str) -> PathBuf {
        let mut compat = crate::fingerprint::Fingerprint::default();
        compat
            .hashed(&self.wasmtime.precompile_compatibility_hash())
            .bytes(env!("CARGO_PKG_VERSION"));
        self.dir.join(format!(
            "{key}-{}-{}.cwasm",
            self.compiler.name(),
            compat.hex()
        ))
    }

    fn remember(&self, key: &str, module: Arc<PreparedModule>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.retain(|(k, _)| k != key);
        loaded.push_front((key.to_string(), module));
        loaded.truncate(LOADED);
    }

    /// The program cached under `key`, from memory or disk; `None` when it was never compiled
    /// (or was evicted).
    pub(crate) fn cached(&self, key: &str) -> Result<Option<Arc<PreparedModule>>, EngineError> {
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = loaded.iter().position(|(k, _)| k == key) {
                let entry = loaded.remove(at);
                if let Some(entry) = entry {
                    let module = entry.1.clone();
                    loaded.push_front(entry);
                    return Ok(Some(module));
                }
            }
        }
        let path = self.artifact(key);
        if !path.is_file() {
            return Ok(None);
        }
        // SAFETY: the artifact was written by `compile` below from `precompile_module` of this
        // program engine (its compatibility hash and our version are in the file name), into the
        // server's private cache folder; wasmtime also checks its header.
        let module = match unsafe { Module::deserialize_file(&self.wasmtime, &path) } {
            Ok(module) => module,
            Err(e) => {
                tracing::warn!(artifact = %path.display(), error = %e, "unusable cached program; recompiling");
                return Ok(None);
            }
        };
        touch(&path);
        let module = self.link(module, path)?;
        self.remember(key, module.clone());
        Ok(Some(module))
    }

    /// Compiles `wasm` with the program compiler, stores it under `key` and loads it. Blocking.
    pub(crate) fn compile(
        &self,
        key: &str,
        wasm: &[u8],
    ) -> Result<Arc<PreparedModule>, EngineError> {
        let compiled = self
            .wasmtime
            .precompile_module(wasm)
            .map_err(|e| EngineError::Compile(e.into()))?;
        let path = self.artifact(key);
        let cache_err = |e: std::io::Error| {
            EngineError::Cache(format!("writing {}: {e}", path.display()).into())
        };
        fs::create_dir_all(&self.dir).map_err(cache_err)?;
        write_atomic(&path, &compiled).map_err(cache_err)?;
        self.evict();
        // SAFETY: as in `cached`: we just wrote this artifact from `precompile_module`.
        let module = unsafe { Module::deserialize_file(&self.wasmtime, &path) }
            .map_err(|e| EngineError::Compile(e.into()))?;
        let module = self.link(module, path)?;
        self.remember(key, module.clone());
        Ok(module)
    }

    fn link(&self, module: Module, path: PathBuf) -> Result<Arc<PreparedModule>, EngineError> {
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| EngineError::Instantiate(e.into()))?;
        Ok(Arc::new(PreparedModule {
            path,
            pre,
            pristine: Default::default(),
            pristine_hashes: Default::default(),
            whole_state: Default::default(),
            interrupt_slots: Arc::new([]),
        }))
    }

    /// Removes the least recently used artifacts until the folder is within its byte bound.
    /// A loaded module keeps working after its file is removed (its mapping stays valid).
    fn evict(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| {
                    (
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        meta.len(),
                        e.path(),
                    )
                })
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_disk_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

/// Marks a cached artifact as just used (eviction is by modification time).
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
