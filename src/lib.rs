//! wasmbox: run untrusted Python, JavaScript and shell code in WebAssembly sandboxes.
//!
//! Layers, each owning one concern: [`engine`] (wasmtime), [`runtimes`] (interpreters and their
//! artifacts), [`sandbox`] (directories, environment, lifecycle), [`exec`] (running a request
//! in a sandbox), [`kernels`] (live interpreters that keep state between cells), [`processes`] (background runs), [`webhooks`] (their callbacks), [`config`] (settings), [`api`] (the HopX-compatible HTTP service).

pub mod api;
mod atomic_write;
pub mod config;
pub mod engine;
pub mod exec;
mod fingerprint;
mod ids;
pub mod kernels;
pub mod packages;
pub mod processes;
pub mod runtimes;
pub mod sandbox;
pub mod terminal;
pub mod tls;
pub mod webhooks;

/// `err` and each of its causes, joined with `: ` — how the edges report a failure without
/// losing the context chain the library keeps in its error sources.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn describe_error_keeps_the_chain() {
        let io = std::io::Error::other("disk on fire");
        let err = crate::engine::EngineError::Cache(Box::new(io));
        assert_eq!(
            crate::describe_error(&err),
            "the compiled-module cache failed: disk on fire"
        );
    }
}
