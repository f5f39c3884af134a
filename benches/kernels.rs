//! Kernel costs side by side with `/execute`'s fresh instance, in one run: starting a kernel,
//! a warm cell (`x + 1`) in the library and over HTTP (where every cell also writes the kernel's
//! image), hibernating (writing an image: time and bytes) and restoring, for python and
//! javascript; plus a native `python3 -c` / `node -e` spawn for scale.
//!
//! `cargo bench --bench kernels` writes `docs/bench/kernels.md` (`BENCH_QUICK=1`: fewer
//! iterations, output under `target/bench`). The runtimes must be installed (`wasmbox runtimes
//! fetch`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};

use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::kernels::{Durability, Kernels};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::{NewSandbox, SandboxStore};

#[path = "support/mod.rs"]
mod support;
use support::{percentile, BenchClient, BenchServer};
const TIMEOUT: Duration = Duration::from_secs(30);

struct Row {
    language: Language,
    what: &'static str,
    p50: Duration,
    p90: Duration,
    note: String,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\nkernels bench FAILED: {e:#}");
        std::process::exit(1);
    }
}

/// `/execute` and warm cells over HTTP against a server whose kernels write an image record
/// after every cell (`each_cell`) or only when hibernated.
fn http_rows(
    settings: &Settings,
    scratch: &Path,
    iters: usize,
    each_cell: bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let server = BenchServer::start(Settings {
        data_dir: scratch.join(format!("server-{each_cell}")),
        kernel_image_each_cell: each_cell,
        ..settings.clone()
    })?;
    let client = BenchClient::new(&server)?;
    // The `python` template: these rows are the plain CPython 3.13 (code-interpreter's python
    // is the data runtime, measured by `cargo bench --bench data`).
    let sandbox = client.create("python")?;
    let post = |path: &str, body: Value| client.post(&sandbox, path, body);
    for (language, print, define) in [
        (Language::Python, "x = 41\nprint(x + 1)", "x = 41"),
        (
            Language::JavaScript,
            "var x = 41; console.log(x + 1)",
            "var x = 41",
        ),
    ] {
        let mut fresh = Vec::new();
        for _ in 0..if each_cell { iters } else { 0 } {
            let (took, body) = time(|| {
                post(
                    "/execute",
                    json!({ "code": print, "language": language.name() }),
                )
            })?;
            ensure!(body["stdout"] == "42\n", "HTTP /execute: {body}");
            fresh.push(took);
        }
        if each_cell {
            rows.push(row(
                language,
                "`/execute` (fresh instance), HTTP",
                fresh,
                String::new(),
            ));
        }
        post(
            "/execute/ipython",
            json!({ "code": define, "language": language.name() }),
        )?;
        let mut cells = Vec::new();
        for _ in 0..iters {
            let (took, body) = time(|| {
                post(
                    "/execute/ipython",
                    json!({ "code": "x + 1", "language": language.name() }),
                )
            })?;
            ensure!(body["result"] == "42", "HTTP cell: {body}");
            cells.push(took);
        }
        rows.push(row(
            language,
            if each_cell {
                "warm cell `x + 1`, HTTP (durability `cell`: image record per cell)"
            } else {
                "warm cell `x + 1`, HTTP (durability `hibernate`)"
            },
            cells,
            String::new(),
        ));
    }
    Ok(())
}

fn row(language: Language, what: &'static str, mut samples: Vec<Duration>, note: String) -> Row {
    Row {
        language,
        what,
        p50: percentile(&mut samples, 0.5),
        p90: percentile(&mut samples, 0.9),
        note,
    }
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let started = Instant::now();
    let value = f()?;
    Ok((started.elapsed(), value))
}

fn run() -> Result<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10 } else { 200 });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = std::env::var_os("BENCH_OUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(if quick { "target/bench" } else { "docs/bench" }));
    let scratch = tempfile::tempdir()?;
    let settings = Settings {
        data_dir: scratch.path().join("lib"),
        ..Settings::from_env()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let executor = Executor::new(&settings)?;
    let store = SandboxStore::open(&settings.data_dir)?;
    let sandbox = store.create(NewSandbox {
        template: "python".into(),
        env: BTreeMap::new(),
        timeout_seconds: None,
    })?;
    let fs = store.files(&sandbox.id)?;
    let env = BTreeMap::new();
    let kernels = Kernels::new(16, u64::MAX, Durability::EachCell);
    let mut rows = Vec::new();

    for (language, print) in [
        (Language::Python, "x = 41\nprint(x + 1)"),
        (Language::JavaScript, "var x = 41; console.log(x + 1)"),
    ] {
        eprintln!("kernels bench: {language}");
        executor.ensure_installed(language)?;
        rt.block_on(executor.warm_up(language))?;
        let request = |code: &str| RunRequest::new(language, code, TIMEOUT);

        // `/execute`: a fresh instance per run.
        let mut fresh = Vec::new();
        for _ in 0..iters {
            let (took, result) =
                time(|| Ok(rt.block_on(executor.run(&fs, &env, request(print)))?))?;
            ensure!(result.stdout == "42\n", "{language} /execute: {result:?}");
            fresh.push(took);
        }
        rows.push(row(
            language,
            "`/execute` (fresh instance), library",
            fresh,
            String::new(),
        ));

        // Kernel start (from the snapshot, until ready for a cell).
        let mut starts = Vec::new();
        for _ in 0..iters {
            let (took, kernel) = time(|| Ok(rt.block_on(executor.start_kernel(&fs, language))?))?;
            drop(kernel);
            starts.push(took);
        }
        rows.push(row(language, "kernel start", starts, String::new()));

        // A warm cell, library only (no image written).
        let mut kernel = rt.block_on(executor.start_kernel(&fs, language))?;
        let define = if language == Language::Python {
            "x = 41"
        } else {
            "var x = 41"
        };
        rt.block_on(executor.run_cell(&mut kernel, &fs, &env, request(define)))?;
        let mut cells = Vec::new();
        for _ in 0..iters * 5 {
            let (took, outcome) = time(|| {
                Ok(rt.block_on(executor.run_cell(&mut kernel, &fs, &env, request("x + 1")))?)
            })?;
            let text = outcome
                .result
                .outputs
                .first()
                .and_then(|o| o.text().map(str::to_string));
            ensure!(
                text.as_deref() == Some("42"),
                "{language} cell: {:?}",
                outcome.result
            );
            cells.push(took);
        }
        rows.push(row(
            language,
            "warm cell `x + 1`, library",
            cells,
            String::new(),
        ));

        // Hibernate (write the image) and restore.
        let mut writes = Vec::new();
        let mut image = Vec::new();
        for _ in 0..iters {
            image.clear();
            let (took, _) = time(|| kernel.write_image(&mut image).map_err(|e| anyhow!(e)))?;
            writes.push(took);
        }
        let bytes = image.len();
        let memory = kernel.memory_bytes();
        rows.push(row(
            language,
            "hibernate (write image to memory)",
            writes,
            format!(
                "image {} KiB of {} MiB linear memory",
                bytes >> 10,
                memory >> 20
            ),
        ));
        let mut restores = Vec::new();
        for _ in 0..iters {
            let (took, restored) = time(|| {
                rt.block_on(executor.restore_kernel(&fs, language, &image))?
                    .map_err(|e| anyhow!(e))
            })?;
            drop(restored);
            restores.push(took);
        }
        rows.push(row(language, "restore from image", restores, String::new()));

        // What durability costs per cell: the record of the chunks `x + 1` changed.
        let mut records = Vec::new();
        let mut record_bytes = Vec::new();
        let mut log = Vec::new();
        kernel.write_image(&mut log).map_err(|e| anyhow!(e))?;
        for _ in 0..iters {
            rt.block_on(executor.run_cell(&mut kernel, &fs, &env, request("x + 1")))?;
            log.clear();
            let (took, written) = time(|| kernel.write_changes(&mut log).map_err(|e| anyhow!(e)))?;
            records.push(took);
            record_bytes.push(written.context("a whole image was written before")?);
        }
        record_bytes.sort_unstable();
        rows.push(row(
            language,
            "image record after a cell (changed chunks only)",
            records,
            format!(
                "median record {} KiB",
                record_bytes[record_bytes.len() / 2] >> 10
            ),
        ));
        drop(kernel);

        // Through the kernel manager: every cell also writes the image to disk (durability).
        let state_dir = store.state_dir(&sandbox.id);
        rt.block_on(kernels.run_cell(
            &executor,
            &sandbox.id,
            &state_dir,
            &fs,
            &env,
            request(define),
        ))?;
        let mut durable = Vec::new();
        for _ in 0..iters {
            let (took, reply) = time(|| {
                Ok(rt.block_on(kernels.run_cell(
                    &executor,
                    &sandbox.id,
                    &state_dir,
                    &fs,
                    &env,
                    request("x + 1"),
                ))?)
            })?;
            ensure!(
                reply.result.success(),
                "{language} durable cell: {:?}",
                reply.result
            );
            durable.push(took);
        }
        rows.push(row(
            language,
            "warm cell + image to disk, library",
            durable,
            String::new(),
        ));
    }

    // HTTP: the real server in this process, once per durability mode.
    for each_cell in [true, false] {
        http_rows(&settings, scratch.path(), iters, each_cell, &mut rows)?;
    }

    // Native, for scale: a process per run.
    for (language, program, args) in [
        (Language::Python, "python3", ["-c", "x = 41\nprint(x + 1)"]),
        (
            Language::JavaScript,
            "node",
            ["-e", "var x = 41; console.log(x + 1)"],
        ),
    ] {
        let mut native = Vec::new();
        for _ in 0..iters.min(50) {
            let (took, out) = time(|| Ok(Command::new(program).args(args).output()?))?;
            if !out.status.success() {
                break;
            }
            native.push(took);
        }
        if !native.is_empty() {
            rows.push(row(
                language,
                "native process spawn",
                native,
                program.to_string(),
            ));
        }
    }

    let mut md = String::from(
        "# Kernels vs fresh instances\n\n`cargo bench --bench kernels` (one run, same machine). \
         p50 / p90 wall-clock per operation.\n\n| language | operation | p50 | p90 | note |\n\
         |---|---|---:|---:|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.3} ms | {:.3} ms | {} |\n",
            r.language,
            r.what,
            r.p50.as_secs_f64() * 1e3,
            r.p90.as_secs_f64() * 1e3,
            r.note
        ));
    }
    md.push_str(&format!(
        "\n{iters} iterations per row (warm library cells: {}); machine: {} cores. HTTP rows: the \
         real server in this process on loopback, one keep-alive connection, an async reqwest \
         client driven on the bench thread.\n",
        iters * 5,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join("kernels.md");
    std::fs::write(&path, &md)?;
    println!("{md}\nwritten to {}", path.display());
    Ok(())
}
