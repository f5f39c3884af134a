//! Precompiled-module cache: compile each WebAssembly module once per wasmtime version and engine
//! configuration, then map the artifact straight from disk on every later start.

use std::fs;
use std::path::{Path, PathBuf};

use wasmtime::Module;

use crate::atomic_write::write_atomic;
use crate::fingerprint::Fingerprint;

use super::EngineError;

/// Where the compiled artifact for `wasm` lives: the key covers the module's identity (path, size,
/// modification time) and everything in the engine that affects compiled code.
fn artifact_path(
    engine: &wasmtime::Engine,
    wasm: &Path,
    cache_dir: &Path,
) -> Result<PathBuf, EngineError> {
    let meta = fs::metadata(wasm).map_err(|e| EngineError::ModuleMissing {
        path: wasm.to_path_buf(),
        source: e.into(),
    })?;
    let mut key = Fingerprint::default();
    key.path(wasm)
        .number(meta.len().into())
        .mtime(meta.modified().ok())
        .hashed(&engine.precompile_compatibility_hash())
        .bytes(env!("CARGO_PKG_VERSION"));
    let stem = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("module");
    Ok(cache_dir.join(format!("{stem}-{}.cwasm", key.hex())))
}

/// Loads `wasm` as a [`Module`], compiling and caching it on the first call.
pub(crate) fn load_module(
    engine: &wasmtime::Engine,
    wasm: &Path,
    cache_dir: &Path,
) -> Result<Module, EngineError> {
    let artifact = artifact_path(engine, wasm, cache_dir)?;
    if artifact.exists() {
        // SAFETY: the artifact was produced by `Engine::precompile_module` of this same wasmtime
        // version and configuration (both are part of its file name) and lives in our private
        // cache directory; wasmtime additionally checks the header before mapping it.
        match unsafe { Module::deserialize_file(engine, &artifact) } {
            Ok(module) => return Ok(module),
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), error = %e, "stale compiled module; recompiling")
            }
        }
    }
    let bytes = fs::read(wasm).map_err(|e| EngineError::ModuleMissing {
        path: wasm.to_path_buf(),
        source: e.into(),
    })?;
    tracing::info!(module = %wasm.display(), "compiling WebAssembly module (first use; cached afterwards)");
    let compiled = engine
        .precompile_module(&bytes)
        .map_err(|e| EngineError::Compile(e.into()))?;
    fs::create_dir_all(cache_dir).map_err(|e| EngineError::Cache(e.into()))?;
    write_atomic(&artifact, &compiled)
        .map_err(|e| EngineError::Cache(format!("writing {}: {e}", artifact.display()).into()))?;
    // SAFETY: as above; we just wrote this artifact from `precompile_module`.
    unsafe { Module::deserialize_file(engine, &artifact) }
        .map_err(|e| EngineError::Compile(e.into()))
}
