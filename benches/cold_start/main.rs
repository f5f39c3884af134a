//! Cold-start benchmark (issue 5): every execution is a fresh WebAssembly instance, measured end
//! to end, side by side with native process spawns, in one run.
//!
//! For python `print('hello')`, javascript `console.log('hello')` and shell `echo hello` (the
//! shell only when its runtime is installed), at 1, 2, 4, 8, 16 and 64 concurrent clients (tokio
//! tasks):
//!
//! - library: `Executor::run` on a warm engine, with pre-initialised snapshots (the default) and
//!   with `snapshots: false`;
//! - HTTP: `POST /sandboxes/{id}/execute` over loopback against the real server, started
//!   in-process on 127.0.0.1:0 on its own tokio runtime, one sandbox and one keep-alive client
//!   per client task;
//! - native: `python3 -c`, `node -e`, `sh -c` (the real interpreter binaries, not shims).
//!
//! Then the scale check: sandboxes created over HTTP and each run once (javascript), with the
//! process's resident memory before and after.
//!
//! Every scenario runs the same closed loop (each client issues its next request when the
//! previous one returned) after a warm-up round with the same code and concurrency; any error
//! aborts the bench. Output: a markdown table on stdout and in `docs/bench/cold_start.md`, and a
//! chart in `docs/bench/cold_start.png`.
//!
//! Environment: `BENCH_ITERS` (measured executions per scenario, default 200),
//! `BENCH_QUICK=1` (smoke run: few iterations, 100 sandboxes, output to `target/bench/`),
//! `BENCH_SANDBOXES` (scale check size, default 1000), `BENCH_OUT_DIR` (output directory),
//! `BENCH_FONT` (TTF for the chart, default DejaVu Sans). `WASMBOX_CACHE_DIR` etc. as usual.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures::future::BoxFuture;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Value};

use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

mod chart;
mod jobs;
mod measure;
mod report;
#[path = "../support/mod.rs"]
mod support;

use chart::*;
use jobs::*;
use measure::*;
use report::*;
use support::{BenchServer, API_KEY};

const CONCURRENCY: [usize; 6] = [1, 2, 4, 8, 16, 64];
const EXPECTED: &str = "hello\n";
const TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One benchmarked language: the guest code and the native command that does the same.
struct Workload {
    language: Language,
    label: &'static str,
    code: &'static str,
    native_program: &'static str,
    native_args: [&'static str; 2],
    /// Whether wasmbox can run it here (the shell runtime may not be installed yet).
    available: Result<(), String>,
}

/// How an execution is issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    LibrarySnapshot,
    LibraryPlain,
    Http,
    Native,
}

impl Route {
    const ALL: [Route; 4] = [
        Route::LibrarySnapshot,
        Route::LibraryPlain,
        Route::Http,
        Route::Native,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::LibrarySnapshot => "library, snapshots on",
            Route::LibraryPlain => "library, snapshots off",
            Route::Http => "HTTP /execute (snapshots on)",
            Route::Native => "native process",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Route::LibrarySnapshot => RGBColor(31, 119, 180),
            Route::LibraryPlain => RGBColor(158, 202, 225),
            Route::Http => RGBColor(255, 127, 14),
            Route::Native => RGBColor(120, 120, 120),
        }
    }
}

/// The measurements of one scenario.
#[derive(Clone, Debug)]
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    /// Executions completed per second of wall time, all clients together.
    throughput: f64,
    /// Median of the engine's own duration (wasmbox paths only): the rest is overhead.
    engine_p50: Option<Duration>,
    /// Share of the machine's CPU that other processes used meanwhile (percent).
    others: Option<f64>,
}

struct Row {
    workload: usize,
    path: Route,
    clients: usize,
    /// Which module the executions ran (snapshot or command module), or the native binary.
    detail: String,
    result: Result<Stats, String>,
}

/// One client's operation: returns the engine-reported duration when there is one.
type Job = Arc<dyn Fn() -> BoxFuture<'static, Result<Option<Duration>>> + Send + Sync>;

struct Options {
    quick: bool,
    iters: usize,
    sandboxes: usize,
    out_dir: PathBuf,
    font: PathBuf,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\ncold_start bench FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name}={v:?} is not a number")),
        _ => Ok(None),
    }
}

fn options() -> Result<Options> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let iters = env_usize("BENCH_ITERS")?.unwrap_or(if quick { 16 } else { 200 });
    ensure!(iters > 0, "BENCH_ITERS must be at least 1");
    let sandboxes = env_usize("BENCH_SANDBOXES")?.unwrap_or(if quick { 100 } else { 1000 });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = std::env::var_os("BENCH_OUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if quick {
                root.join("target/bench")
            } else {
                root.join("docs/bench")
            }
        });
    let font = std::env::var_os("BENCH_FONT")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_FONT.into());
    Ok(Options {
        quick,
        iters,
        sandboxes,
        out_dir,
        font,
    })
}

fn run() -> Result<()> {
    let opts = options()?;
    let bench_started = Instant::now();
    let cpu_started = CpuTimes::now();
    // Fail before measuring anything if the chart could not be drawn.
    register_font(&opts.font)?;

    let base = Settings::from_env();
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let snap_settings = Settings {
        snapshots: true,
        data_dir: scratch.path().join("data"),
        ..base.clone()
    };
    let plain_settings = Settings {
        snapshots: false,
        ..snap_settings.clone()
    };
    let snap = Arc::new(Executor::new(&snap_settings).context("building the engine")?);
    let plain = Arc::new(Executor::new(&plain_settings).context("building the engine")?);

    let mut workloads = vec![
        Workload {
            language: Language::Python,
            label: "python",
            code: "print('hello')",
            native_program: "python3",
            native_args: ["-c", "print('hello')"],
            available: Ok(()),
        },
        Workload {
            language: Language::JavaScript,
            label: "javascript",
            code: "console.log('hello')",
            native_program: "node",
            native_args: ["-e", "console.log('hello')"],
            available: Ok(()),
        },
        Workload {
            language: Language::Bash,
            label: "shell",
            code: "echo hello",
            native_program: "sh",
            native_args: ["-c", "echo hello"],
            available: Ok(()),
        },
    ];
    for w in &mut workloads {
        if w.language == Language::Bash {
            let runtimes = snap.runtimes();
            w.available = if !runtimes.is_installed(Language::Bash) {
                Err("shell runtime not installed".into())
            } else {
                runtimes
                    .invocation(Language::Bash, w.code)
                    .map(|_| ())
                    .map_err(|e| format!("shell runtime unusable: {e}"))
            };
            if let Err(why) = &w.available {
                eprintln!("cold_start: skipping wasmbox shell: {why}");
            }
        } else {
            snap.ensure_installed(w.language)
                .with_context(|| format!("installing the {} runtime", w.language))?;
        }
    }

    // The server below is built from the same settings as `snap`, so it runs the same modules.
    let http_detail: Vec<String> = workloads.iter().map(|w| module_kind(&snap, w)).collect();

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()
        .context("starting the client runtime")?;

    eprintln!(
        "cold_start: {} measured executions per scenario (BENCH_ITERS), clients {CONCURRENCY:?}{}",
        opts.iters,
        if opts.quick { ", quick mode" } else { "" }
    );

    let mut rows: Vec<Row> = Vec::new();

    // Library paths: one sandbox tree per client, as the server has one per sandbox.
    let client_fs: Vec<Arc<SandboxFs>> = (0..max_clients())
        .map(|i| {
            SandboxFs::create(scratch.path().join(format!("lib-{i}")))
                .map(Arc::new)
                .context("creating a sandbox tree")
        })
        .collect::<Result<_>>()?;
    for (wi, w) in workloads.iter().enumerate() {
        for (path, executor) in [
            (Route::LibrarySnapshot, &snap),
            (Route::LibraryPlain, &plain),
        ] {
            if let Err(why) = &w.available {
                rows.extend(skipped(wi, path, why));
                continue;
            }
            let detail = module_kind(executor, w);
            client_rt
                .block_on(executor.warm_up(w.language))
                .with_context(|| format!("warming up {} ({})", w.label, path.label()))?;
            for clients in CONCURRENCY {
                let jobs: Vec<Job> = client_fs[..clients]
                    .iter()
                    .map(|fs| library_job(executor.clone(), fs.clone(), w.language, w.code))
                    .collect();
                let stats = measure(&client_rt, &jobs, &opts, w, path)?;
                rows.push(Row {
                    workload: wi,
                    path,
                    clients,
                    detail: detail.clone(),
                    result: Ok(stats),
                });
            }
        }
    }
    drop((snap, plain, client_fs));

    // Native process spawns.
    for (wi, w) in workloads.iter().enumerate() {
        let binary = real_binary(w.native_program)?;
        // The binary's name, not its path: reports are committed and name no machine paths.
        let name = binary.file_name().map_or_else(
            || binary.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let detail = format!("`{} {}` ({name})", w.native_program, w.native_args[0]);
        for clients in CONCURRENCY {
            let jobs: Vec<Job> = (0..clients)
                .map(|_| native_job(binary.clone(), w.native_args))
                .collect();
            let stats = measure(&client_rt, &jobs, &opts, w, Route::Native)?;
            rows.push(Row {
                workload: wi,
                path: Route::Native,
                clients,
                detail: detail.clone(),
                result: Ok(stats),
            });
        }
    }

    // HTTP: the real server, in this process on its own runtime (as `wasmbox serve` builds it).
    let server = BenchServer::start(Settings {
        data_dir: scratch.path().join("server"),
        ..snap_settings.clone()
    })?;
    let base_url = server.base().to_string();

    let sandboxes: Vec<HttpSandbox> = client_rt
        .block_on(async {
            let setup = http_client()?;
            let mut out = Vec::new();
            for _ in 0..max_clients() {
                out.push(create_sandbox(&setup, &base_url).await?);
            }
            Ok::<_, anyhow::Error>(out)
        })
        .context("creating the HTTP sandboxes")?;
    // One keep-alive client (connection) per client task, reused across scenarios.
    let http_clients: Vec<reqwest::Client> = (0..max_clients())
        .map(|_| http_client())
        .collect::<Result<_>>()?;
    for (wi, w) in workloads.iter().enumerate() {
        if let Err(why) = &w.available {
            rows.extend(skipped(wi, Route::Http, why));
            continue;
        }
        for clients in CONCURRENCY {
            let jobs: Vec<Job> = (0..clients)
                .map(|i| http_job(http_clients[i].clone(), &sandboxes[i], w.language, w.code))
                .collect();
            let stats = measure(&client_rt, &jobs, &opts, w, Route::Http)?;
            rows.push(Row {
                workload: wi,
                path: Route::Http,
                clients,
                detail: http_detail[wi].clone(),
                result: Ok(stats),
            });
        }
    }
    drop(http_clients);

    // Scale check: many sandboxes, each created and run once, all kept alive.
    let scale = client_rt
        .block_on(scale_check(&base_url, opts.sandboxes))
        .context("scale check")?;
    eprintln!(
        "cold_start: scale check: {} sandboxes in {:.1} s, RSS {} -> {} MiB (peak {} MiB)",
        scale.count,
        scale.total.as_secs_f64(),
        scale.rss_before_kib / 1024,
        scale.rss_after_kib / 1024,
        scale.hwm_kib / 1024
    );

    server.stop()?;

    let elapsed = bench_started.elapsed();
    let others = CpuTimes::now()
        .zip(cpu_started)
        .and_then(|(now, then)| now.others_since(&then));
    let report = report(&opts, &workloads, &rows, &scale, elapsed, others);
    println!("\n{report}");
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let md = opts.out_dir.join("cold_start.md");
    std::fs::write(&md, &report).with_context(|| format!("writing {}", md.display()))?;
    let png = opts.out_dir.join("cold_start.png");
    let subtitle = format!(
        "{}, {} CPU(s), {}; {}{}",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line("/proc/cpuinfo", "model name").unwrap_or_default(),
        reproduce(&opts),
        others.map_or(String::new(), |p| format!(
            "; other processes used {p:.0}% of the CPU meanwhile"
        )),
    );
    chart(&png, &subtitle, &workloads, &rows)
        .with_context(|| format!("drawing {}", png.display()))?;
    eprintln!(
        "cold_start: wrote {} and {} ({:.0} s in all)",
        md.display(),
        png.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn max_clients() -> usize {
    CONCURRENCY.into_iter().max().unwrap_or(1)
}

fn skipped(workload: usize, path: Route, why: &str) -> Vec<Row> {
    CONCURRENCY
        .into_iter()
        .map(|clients| Row {
            workload,
            path,
            clients,
            detail: String::new(),
            result: Err(why.to_string()),
        })
        .collect()
}

/// Whether `executor` runs `w` from a pre-initialised snapshot or the plain command module.
fn module_kind(executor: &Executor, w: &Workload) -> String {
    match executor.runtimes().invocation(w.language, w.code) {
        Ok(inv) if inv.snapshot.is_some() => "snapshot".into(),
        Ok(_) => "command module".into(),
        Err(e) => format!("({e})"),
    }
}
