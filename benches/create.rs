//! Sandbox creation → first result over HTTP, and what idle sandboxes and live kernels cost in
//! memory, next to a native `python3` spawn, in one run.
//!
//! `cargo bench --bench create` starts the real server in this process (default settings) and
//! measures, at one client on one keep-alive connection: `POST /v1/sandboxes` alone, and
//! create followed by `/execute` `print('hello')` with the returned token (p50/p99); then the
//! process's resident memory per idle sandbox (created, never run) and per live kernel (a
//! `python` template kernel holding `x = 1`, and a `code-interpreter` one: the data runtime).
//! It writes `docs/bench/create.md` (`BENCH_QUICK=1`: fewer iterations, `target/bench`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use wasmbox::config::Settings;

#[path = "support/mod.rs"]
mod support;
use support::{percentile, BenchClient, BenchSandbox, BenchServer};

fn main() {
    if let Err(e) = run() {
        eprintln!("\ncreate bench FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// This process's resident memory in KiB (`VmRSS`).
fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/self/status")
}

fn run() -> Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (iters, idle, kernels, data_kernels) = if quick {
        (30, 200, 20, 3)
    } else {
        (200, 1000, 100, 10)
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join(if quick { "target/bench" } else { "docs/bench" });
    let scratch = tempfile::tempdir()?;
    let server = BenchServer::start(Settings {
        data_dir: scratch.path().join("server"),
        ..Settings::from_env()
    })?;
    let client = BenchClient::new(&server)?;
    let create = |template: &str| client.create(template);
    let post =
        |sandbox: &BenchSandbox, path: &str, code: &str| client.run_code(sandbox, path, code);

    // Warm-up: the runtimes' modules are loaded before anything is timed.
    for template in ["python", "code-interpreter"] {
        let sandbox = create(template)?;
        post(&sandbox, "/execute", "print('hello')")?;
    }
    let mut creates = Vec::new();
    for _ in 0..iters {
        let started = Instant::now();
        create("python")?;
        creates.push(started.elapsed());
    }
    let mut first_results = Vec::new();
    for _ in 0..iters {
        let started = Instant::now();
        let sandbox = create("python")?;
        let body = post(&sandbox, "/execute", "print('hello')")?;
        first_results.push(started.elapsed());
        ensure!(body["stdout"] == "hello\n", "{body}");
    }

    let before = rss_kib()?;
    for _ in 0..idle {
        create("python")?;
    }
    let idle_kib = rss_kib()?.saturating_sub(before) as f64 / idle as f64;

    let kernel_kib = |template: &str, n: usize| -> Result<f64> {
        let sandboxes: Vec<_> = (0..n).map(|_| create(template)).collect::<Result<_>>()?;
        let before = rss_kib()?;
        for sandbox in &sandboxes {
            post(sandbox, "/execute/ipython", "x = 1")?;
        }
        Ok(rss_kib()?.saturating_sub(before) as f64 / n as f64)
    };
    let plain_kernel_kib = kernel_kib("python", kernels)?;
    let data_kernel_kib = kernel_kib("code-interpreter", data_kernels)?;
    drop(client);
    drop(server);

    let mut native: Vec<Duration> = (0..iters.min(50))
        .map(|_| {
            let started = Instant::now();
            let out = Command::new("python3")
                .args(["-c", "print('hello')"])
                .output()?;
            ensure!(out.status.success(), "python3 failed");
            Ok(started.elapsed())
        })
        .collect::<Result<_>>()?;

    let mut table = String::new();
    let _ = writeln!(table, "| what | p50 | p99 |\n| --- | ---: | ---: |");
    for (what, samples) in [
        ("`POST /v1/sandboxes` (create)", &mut creates),
        (
            "create → first result (`/execute` `print('hello')` with the new token)",
            &mut first_results,
        ),
        ("native `python3 -c \"print('hello')\"` spawn", &mut native),
    ] {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let _ = writeln!(table, "| {what} | {} | {} |", ms(p50), ms(p99));
    }
    let _ = writeln!(
        table,
        "\n| memory (this process's RSS growth) | per item |\n| --- | ---: |\n\
         | idle sandbox (created, never run; {idle} of them) | {idle_kib:.1} KiB |\n\
         | live kernel, `python` template (`x = 1`; {kernels} of them) | {:.1} MiB |\n\
         | live kernel, `code-interpreter` (the data runtime; {data_kernels} of them) | {:.1} MiB |",
        plain_kernel_kib / 1024.0,
        data_kernel_kib / 1024.0
    );
    let _ = writeln!(
        table,
        "\nThe real server in this process on loopback, one client on one keep-alive connection, \
         {iters} iterations each (python template: CPython 3.13); the server's data directory \
         on the machine's disk."
    );
    print!("{table}");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("create.md"), &table)?;
    Ok(())
}
