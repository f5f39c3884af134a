//! Shared helpers for the integration tests: the built `wasmbox` binary, runtimes installed once
//! per test binary, and private data directories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// The official Python client the client tests install (`hopx-ai`, pinned).
pub const PYTHON_PACKAGE: &str = "hopx-ai==0.5.0";

/// Where the official clients are installed, reused by later runs.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("official-clients")
}

pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A virtualenv with `hopx-ai`; returns its interpreter.
pub fn python_client(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, hopx_ai; assert m.version('hopx-ai') == '0.5.0'",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (needs python3-venv)",
        );
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                PYTHON_PACKAGE,
            ]),
            "pip install hopx-ai",
        );
    }
    python
}
