//! Shared helpers for the integration tests: the built `wasmbox` binary, runtimes installed once
//! per test binary, and private data directories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `wasmbox` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmbox"))
}

/// Installs and precompiles every runtime once per test binary (a no-op when already cached).
pub fn ensure_runtimes() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(binary())
            .args(["runtimes", "fetch"])
            .output()
            .expect("running wasmbox runtimes fetch");
        assert!(
            out.status.success(),
            "wasmbox runtimes fetch failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A `wasmbox` command whose sandboxes live in `data_dir`.
pub fn wasmbox(data_dir: &Path) -> Command {
    ensure_runtimes();
    let mut cmd = Command::new(binary());
    cmd.env("WASMBOX_DATA_DIR", data_dir)
        .env_remove("WASMBOX_OUTPUT");
    cmd
}

/// Runs `wasmbox run ARGS… -o json` and parses the JSON report.
pub fn run_json(data_dir: &Path, args: &[&str]) -> (serde_json::Value, Output) {
    let out = wasmbox(data_dir)
        .arg("run")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("running wasmbox");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a JSON report ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out)
}

/// Every file path below `dir`, relative to it, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(base)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            );
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
