//! wasmbox: run untrusted Python, JavaScript and shell code in WebAssembly sandboxes.
//!
//! Layers, each owning one concern: [`engine`] (wasmtime), [`runtimes`] (interpreters and their
//! artifacts), [`sandbox`] (directories, environment, lifecycle), [`exec`] (running a request
//! in a sandbox), [`config`] (settings), [`api`] (the HopX-compatible HTTP service).

pub mod api;
pub mod config;
pub mod engine;
pub mod exec;
pub mod runtimes;
pub mod sandbox;
