//! Cold-start benchmark (issue 5): every execution is a fresh WebAssembly instance, measured end
//! to end, side by side with native process spawns, in one run.
//!
//! For python `print('hello')`, javascript `console.log('hello')` and shell `echo hello` (the
//! shell only when its runtime is installed), at 1, 8 and 64 concurrent clients (tokio tasks):
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

use wasmbox::api::{ConnectionLimits, Server, ServerConfig};
use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

const CONCURRENCY: [usize; 3] = [1, 8, 64];
const EXPECTED: &str = "hello\n";
const TIMEOUT: Duration = Duration::from_secs(30);
const API_KEY: &str = "cold-start-bench-key";
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
        let detail = format!(
            "`{} {}` ({})",
            w.native_program,
            w.native_args[0],
            binary.display()
        );
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
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-server")
        .build()
        .context("starting the server runtime")?;
    let server = server_rt
        .block_on(Server::bind(ServerConfig {
            settings: Settings {
                data_dir: scratch.path().join("server"),
                ..snap_settings.clone()
            },
            listen: "127.0.0.1:0".parse()?,
            api_key: Some(API_KEY.into()),
            public_url: None,
            queue_wait: Duration::from_secs(60),
            connections: ConnectionLimits::default(),
        }))
        .context("starting the server")?;
    let base_url = format!("http://{}", server.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(async {
        let _ = stop_rx.await;
    }));

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

    let _ = stop_tx.send(());
    match server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), serving).await })
    {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("server failed: {e}"),
        Ok(Err(e)) => bail!("server task failed: {e}"),
        Err(_) => bail!("server did not stop within 30 s"),
    }

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

/// Warms up, then measures `opts.iters` executions (at least one per client) over `jobs`.
fn measure(
    rt: &tokio::runtime::Runtime,
    jobs: &[Job],
    opts: &Options,
    w: &Workload,
    path: Route,
) -> Result<Stats> {
    let clients = jobs.len();
    let what = format!("{} {} x{clients}", w.label, path.label());
    // Every client issues at least one request (connections, pool slots), 10 or more in all.
    let warm_per_client = if opts.quick {
        1
    } else {
        10usize.div_ceil(clients)
    };
    rt.block_on(closed_loop(jobs, warm_per_client))
        .with_context(|| format!("{what}: warm-up"))?;
    let per_client = opts.iters.div_ceil(clients).max(1);
    let cpu_before = CpuTimes::now();
    let (latencies, engine, wall) = rt
        .block_on(closed_loop(jobs, per_client))
        .with_context(|| format!("{what}: measurement"))?;
    let others = CpuTimes::now()
        .zip(cpu_before)
        .and_then(|(after, before)| after.others_since(&before));
    let stats = summarize(latencies, engine, wall, others);
    eprintln!(
        "  {what:<48} n={:<4} p50 {:>8} ms  p99 {:>8} ms  {:>8.1} exec/s  other load {}",
        stats.n,
        ms(stats.p50),
        ms(stats.p99),
        stats.throughput,
        percent(stats.others)
    );
    Ok(stats)
}

/// `jobs.len()` clients, each issuing `per_client` operations back to back. A sample runs from
/// the moment the client is ready to issue (the start, or its previous result) to its result,
/// so time spent waiting for a CPU (behind the other clients) counts. Clients yield between
/// operations, as a client doing I/O would.
async fn closed_loop(
    jobs: &[Job],
    per_client: usize,
) -> Result<(Vec<Duration>, Vec<Duration>, Duration)> {
    let (release, start) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(jobs.len());
    for job in jobs {
        let job = job.clone();
        let mut start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut ready = start
                .wait_for(Option::is_some)
                .await
                .map_err(|_| anyhow!("start signal lost"))?
                .unwrap_or_else(Instant::now);
            let mut latencies = Vec::with_capacity(per_client);
            let mut engine = Vec::new();
            for _ in 0..per_client {
                let inner = job().await?;
                let done = Instant::now();
                latencies.push(done - ready);
                engine.extend(inner);
                tokio::task::yield_now().await;
                ready = done;
            }
            Ok::<_, anyhow::Error>((latencies, engine))
        }));
    }
    let began = Instant::now();
    release.send_replace(Some(began));
    let mut latencies = Vec::new();
    let mut engine = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((l, e))) => {
                latencies.extend(l);
                engine.extend(e);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow!("client task panicked: {e}"));
            }
        }
    }
    let wall = began.elapsed();
    match first_error {
        Some(e) => Err(e),
        None => Ok((latencies, engine, wall)),
    }
}

/// CPU time counters: the whole machine's (from `/proc/stat`) and this process's including
/// its waited-for children (from `/proc/self/stat`), in clock ticks.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    total: u64,
    busy: u64,
    own: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<u64> = own_stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // Fields 14-17 of stat(5): utime stime cutime cstime (the list starts at field 3).
        let own = fields.get(11..15)?.iter().sum();
        Some(CpuTimes {
            total,
            busy: total - idle,
            own,
        })
    }

    /// Share of the machine's CPU time that other processes used since `earlier`, in percent.
    fn others_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        let own = self.own.checked_sub(earlier.own)?;
        (total > 0).then(|| busy.saturating_sub(own) as f64 * 100.0 / total as f64)
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summarize(
    mut latencies: Vec<Duration>,
    mut engine: Vec<Duration>,
    wall: Duration,
    others: Option<f64>,
) -> Stats {
    latencies.sort();
    engine.sort();
    Stats {
        n: latencies.len(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        throughput: latencies.len() as f64 / wall.as_secs_f64(),
        engine_p50: (!engine.is_empty()).then(|| percentile(&engine, 0.5)),
        others,
    }
}

fn check_output(what: &str, stdout: &str, ok: bool, detail: impl FnOnce() -> String) -> Result<()> {
    if ok && stdout == EXPECTED {
        Ok(())
    } else {
        bail!(
            "{what} printed {stdout:?} (expected {EXPECTED:?}), {}",
            detail()
        )
    }
}

fn library_job(
    executor: Arc<Executor>,
    fs: Arc<SandboxFs>,
    language: Language,
    code: &'static str,
) -> Job {
    let env = Arc::new(BTreeMap::new());
    Arc::new(move || {
        let (executor, fs, env) = (executor.clone(), fs.clone(), env.clone());
        Box::pin(async move {
            let result = executor
                .run(&fs, &env, RunRequest::new(language, code, TIMEOUT))
                .await
                .with_context(|| format!("running {language} through the library"))?;
            check_output(
                &format!("{language} (library)"),
                &result.stdout,
                result.success(),
                || format!("exit {}, stderr {:?}", result.exit_code, result.stderr),
            )?;
            Ok(Some(result.duration))
        })
    })
}

fn native_job(binary: PathBuf, args: [&'static str; 2]) -> Job {
    Arc::new(move || {
        let binary = binary.clone();
        Box::pin(async move {
            let out = tokio::process::Command::new(&binary)
                .args(args)
                .output()
                .await
                .with_context(|| format!("spawning {}", binary.display()))?;
            check_output(
                &binary.display().to_string(),
                &String::from_utf8_lossy(&out.stdout),
                out.status.success(),
                || {
                    format!(
                        "{}, stderr {:?}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    )
                },
            )?;
            Ok(None)
        })
    })
}

struct HttpSandbox {
    id: String,
    /// The sandbox's agent base URL (`public_host`).
    agent_url: String,
    token: String,
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(None)
        .build()
        .context("building the HTTP client")
}

/// Sends `request` and returns the JSON body of a 2xx answer (else an error with the body).
async fn send_json(request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the response"))?;
    ensure!(status.is_success(), "{what}: HTTP {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{what}: response is not JSON: {body}"))
}

async fn create_sandbox(client: &reqwest::Client, base_url: &str) -> Result<HttpSandbox> {
    let body = send_json(
        client
            .post(format!("{base_url}/v1/sandboxes"))
            .header("X-API-Key", API_KEY)
            .json(&json!({ "template_name": "code-interpreter" })),
        "POST /v1/sandboxes",
    )
    .await?;
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("POST /v1/sandboxes: no `{name}` in {body}"))
    };
    Ok(HttpSandbox {
        id: field("id")?,
        agent_url: field("public_host")?,
        token: field("auth_token")?,
    })
}

/// `POST {public_host}/execute`, checked; returns the server-reported execution time.
async fn execute(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    language: Language,
    code: &str,
) -> Result<Duration> {
    let what = format!("POST /execute ({language})");
    let body = send_json(
        client.post(url).bearer_auth(token).json(&json!({
            "language": language.name(),
            "code": code,
            "timeout": TIMEOUT.as_secs(),
        })),
        &what,
    )
    .await?;
    let stdout = body.get("stdout").and_then(Value::as_str).unwrap_or("");
    let ok = body.get("success").and_then(Value::as_bool) == Some(true);
    check_output(&what, stdout, ok, || format!("response {body}"))?;
    let seconds = body
        .get("execution_time")
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("{what}: no execution_time in {body}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

fn http_job(
    client: reqwest::Client,
    sandbox: &HttpSandbox,
    language: Language,
    code: &'static str,
) -> Job {
    let url: Arc<str> = format!("{}/execute", sandbox.agent_url).into();
    let token: Arc<str> = sandbox.token.clone().into();
    Arc::new(move || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        Box::pin(async move { Ok(Some(execute(&client, &url, &token, language, code).await?)) })
    })
}

struct Scale {
    count: usize,
    clients: usize,
    total: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    /// Whether the peak (VmHWM) was reset at the start of the phase.
    hwm_reset: bool,
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/self/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn scale_check(base_url: &str, count: usize) -> Result<Scale> {
    const CLIENTS: usize = 8;
    // Reset the peak-RSS mark so VmHWM covers this phase only (Linux >= 4.0).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (rss_before_kib, _) = memory_kib()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let base_url = base_url.to_string();
        tasks.push(tokio::spawn(async move {
            let http = http_client()?;
            let mut ids = Vec::new();
            for n in (client..count).step_by(CLIENTS) {
                let sandbox = create_sandbox(&http, &base_url)
                    .await
                    .with_context(|| format!("sandbox #{n}"))?;
                let url = format!("{}/execute", sandbox.agent_url);
                execute(
                    &http,
                    &url,
                    &sandbox.token,
                    Language::JavaScript,
                    "console.log('hello')",
                )
                .await
                .with_context(|| format!("sandbox #{n} ({})", sandbox.id))?;
                ids.push(sandbox.id);
            }
            Ok::<_, anyhow::Error>(ids)
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.extend(task.await.context("client task panicked")??);
    }
    let total = started.elapsed();
    ensure!(
        ids.len() == count,
        "expected {count} distinct sandboxes, got {}",
        ids.len()
    );
    let (rss_after_kib, hwm_kib) = memory_kib()?;
    Ok(Scale {
        count,
        clients: CLIENTS,
        total,
        rss_before_kib,
        rss_after_kib,
        hwm_kib,
        hwm_reset,
    })
}

/// The real interpreter binary behind `program` (pyenv and similar install shell-script shims
/// whose own start-up would be counted otherwise).
fn real_binary(program: &str) -> Result<PathBuf> {
    let probe: Option<[&str; 2]> = match program {
        "python3" => Some(["-c", "import sys; print(sys.executable)"]),
        "node" => Some(["-e", "console.log(process.execPath)"]),
        _ => None,
    };
    let path = match probe {
        Some(args) => {
            let out = Command::new(program)
                .args(args)
                .output()
                .with_context(|| format!("native baseline: cannot run `{program}`"))?;
            ensure!(
                out.status.success(),
                "native baseline: `{program}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("native baseline: `{program}` is not on PATH"))?,
    };
    ensure!(
        path.is_file(),
        "native baseline: `{program}` resolved to {}, which is not a file",
        path.display()
    );
    Ok(path)
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "?".into(), |p| format!("{p:.0}%"))
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// `p50` next to the native p50, as "N× faster" or "N× slower".
fn vs_native(p50: Duration, native: Duration) -> String {
    let ratio = p50.as_secs_f64() / native.as_secs_f64();
    if ratio <= 1.0 {
        let speedup = 1.0 / ratio;
        if speedup >= 10.0 {
            format!("{speedup:.0}× faster")
        } else {
            format!("{speedup:.1}× faster")
        }
    } else {
        format!("{ratio:.1}× slower")
    }
}

fn find(rows: &[Row], workload: usize, path: Route, clients: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.path == path && r.clients == clients)
}

fn stats_of(rows: &[Row], workload: usize, path: Route, clients: usize) -> Option<&Stats> {
    find(rows, workload, path, clients).and_then(|r| r.result.as_ref().ok())
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The command that reproduces this run.
fn reproduce(opts: &Options) -> String {
    let mut vars = Vec::new();
    for name in [
        "BENCH_QUICK",
        "BENCH_ITERS",
        "BENCH_SANDBOXES",
        "WASMBOX_MAX_INSTANCES",
        "WASMBOX_MEMORY_MB",
        "WASMBOX_OUTPUT_BYTES",
        "WASMBOX_FUEL",
    ] {
        if let Ok(v) = std::env::var(name) {
            if !v.is_empty() {
                vars.push(format!("{name}={v}"));
            }
        }
    }
    if std::env::var("BENCH_ITERS").is_err() {
        vars.push(format!("BENCH_ITERS={}", opts.iters));
    }
    vars.push("cargo bench --bench cold_start".into());
    vars.join(" ")
}

fn report(
    opts: &Options,
    workloads: &[Workload],
    rows: &[Row],
    scale: &Scale,
    elapsed: Duration,
    others: Option<f64>,
) -> String {
    let mut md = String::new();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let commit = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    )
    .map(|c| format!(", commit `{c}`"))
    .unwrap_or_default();
    let when = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let quick = if opts.quick {
        " Quick smoke run: too few samples for a meaningful p99."
    } else {
        ""
    };
    let _ = writeln!(md, "# wasmbox cold start\n");
    let _ = writeln!(
        md,
        "Measured {when} on {nproc} CPU(s), {cpu}, Linux {kernel}{commit}. \
         The bench took {:.0} s.{quick}\n",
        elapsed.as_secs_f64(),
    );
    match others {
        Some(share) if share >= 10.0 => {
            let _ = writeln!(
                md,
                "**Warning: other processes used {share:.0}% of the machine's CPU time during \
                 this run; the figures are pessimistic. Re-run on an idle machine.**\n"
            );
        }
        Some(share) => {
            let _ = writeln!(
                md,
                "Other processes used {share:.0}% of the machine's CPU time during the run.\n"
            );
        }
        None => {}
    }
    let _ = writeln!(
        md,
        "Reproduce (release build):\n\n```sh\n{}\n```\n",
        reproduce(opts)
    );
    let _ = writeln!(
        md,
        "Every execution is a fresh WebAssembly instance, timed end to end by the client: \
         `Executor::run` through the library (warm engine), `POST /sandboxes/{{id}}/execute` over \
         loopback against the server started in-process (own tokio runtime, one sandbox and one \
         keep-alive connection per client), or a native process spawn of the real interpreter. \
         Clients are tokio tasks (on a runtime with one worker per CPU) in a closed loop: each \
         issues its next request when the previous one returned, and a sample runs from that \
         moment to the result, so waiting for a CPU behind the other clients counts. Each \
         scenario is warmed up first with the same code and concurrency. *engine p50* is the \
         engine's own median duration for the execution (wasmbox paths; it includes waiting for \
         a CPU once started); the rest of *p50* is overhead around it. *other load* is the share \
         of the machine's CPU time that other processes used during the scenario. {} measured \
         executions per scenario (at least one per client).\n",
        opts.iters
    );

    let _ = writeln!(md, "## Targets (issue 5)\n");
    let _ = writeln!(md, "| target | measured | met |\n|---|---:|:---:|");
    let mut target = |name: String, measured: Option<f64>, unit: &str, goal: f64, at_most: bool| {
        let (value, met) = match measured {
            Some(v) => {
                let ok = if at_most { v <= goal } else { v >= goal };
                (format!("{v:.2} {unit}"), if ok { "yes" } else { "**no**" })
            }
            None => ("not measured".into(), "–"),
        };
        let _ = writeln!(md, "| {name} | {value} | {met} |");
    };
    let p50_ms =
        |wi: usize, path: Route| stats_of(rows, wi, path, 1).map(|s| s.p50.as_secs_f64() * 1000.0);
    for (wi, w) in workloads.iter().enumerate() {
        let (lib, http) = if w.language == Language::Python {
            (5.0, 7.0)
        } else {
            (1.0, 2.0)
        };
        target(
            format!("{} p50 via the library ≤ {lib} ms", w.label),
            p50_ms(wi, Route::LibrarySnapshot),
            "ms",
            lib,
            true,
        );
        target(
            format!("{} p50 over HTTP ≤ {http} ms", w.label),
            p50_ms(wi, Route::Http),
            "ms",
            http,
            true,
        );
    }
    for (wi, w) in workloads.iter().enumerate() {
        let goal = match w.language {
            Language::Python => 200.0,
            Language::JavaScript => 1000.0,
            Language::Bash => continue,
        };
        target(
            format!("{} over HTTP, 8 clients ≥ {goal} exec/s", w.label),
            stats_of(rows, wi, Route::Http, 8).map(|s| s.throughput),
            "exec/s",
            goal,
            false,
        );
    }
    let _ = writeln!(
        md,
        "| {} sandboxes created over HTTP and each run once (javascript), no error | {:.1} s, RSS {} → {} MiB | yes |",
        scale.count,
        scale.total.as_secs_f64(),
        scale.rss_before_kib / 1024,
        scale.rss_after_kib / 1024,
    );

    let _ = writeln!(md, "\n## Latency and throughput\n");
    let _ = writeln!(
        md,
        "| language | path | module | clients | n | p50 ms | p99 ms | exec/s | engine p50 ms | p50 vs native | other load |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (wi, w) in workloads.iter().enumerate() {
        for path in Route::ALL {
            for clients in CONCURRENCY {
                let Some(row) = find(rows, wi, path, clients) else {
                    continue;
                };
                match &row.result {
                    Ok(s) => {
                        let engine = s.engine_p50.map(ms).unwrap_or_default();
                        let ratio = match (path, stats_of(rows, wi, Route::Native, clients)) {
                            (Route::Native, _) | (_, None) => String::new(),
                            (_, Some(n)) => vs_native(s.p50, n.p50),
                        };
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} | {clients} | {} | {} | {} | {:.0} | {engine} | {ratio} | {} |",
                            w.label,
                            path.label(),
                            row.detail,
                            s.n,
                            ms(s.p50),
                            ms(s.p99),
                            s.throughput,
                            percent(s.others),
                        );
                    }
                    Err(why) => {
                        let _ = writeln!(
                            md,
                            "| {} | {} | – | {clients} | – | – | – | – | – | skipped: {why} | |",
                            w.label,
                            path.label(),
                        );
                    }
                }
            }
        }
    }

    let _ = writeln!(md, "\n## Scale check\n");
    let _ = writeln!(
        md,
        "{} sandboxes created with `POST /v1/sandboxes` and each run once with \
         `console.log('hello')` over HTTP by {} concurrent clients, all kept alive: no error, \
         {:.1} s in all ({:.0} sandboxes/s, create + execute). Resident memory of the bench \
         process (server in-process): {} MiB before, {} MiB after, peak {} MiB {}.\n",
        scale.count,
        scale.clients,
        scale.total.as_secs_f64(),
        scale.count as f64 / scale.total.as_secs_f64(),
        scale.rss_before_kib / 1024,
        scale.rss_after_kib / 1024,
        scale.hwm_kib / 1024,
        if scale.hwm_reset {
            "during the phase"
        } else {
            "over the whole run (the peak mark could not be reset)"
        },
    );
    let _ = writeln!(md, "![cold start chart](cold_start.png)");
    md
}

/// Registers the TTF at `path` as the chart's `sans-serif` font.
fn register_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "reading the chart font {} (install fonts-dejavu-core or set BENCH_FONT)",
            path.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a usable TrueType font", path.display()))
}

/// Grouped bars (one group per language and client count, one bar per path): p50 latency on
/// top, throughput below, both on log scales.
fn chart(path: &Path, subtitle: &str, workloads: &[Workload], rows: &[Row]) -> Result<()> {
    let mut groups = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for clients in CONCURRENCY {
            groups.push((wi, format!("{} ×{clients}", w.label), clients));
        }
    }
    let series = |value: fn(&Stats) -> f64| -> Vec<(Route, Vec<Option<f64>>)> {
        Route::ALL
            .into_iter()
            .map(|p| {
                let values = groups
                    .iter()
                    .map(|(wi, _, c)| stats_of(rows, *wi, p, *c).map(value))
                    .collect();
                (p, values)
            })
            .collect()
    };
    let labels: Vec<String> = groups.iter().map(|(_, l, _)| l.clone()).collect();
    let root = BitMapBackend::new(path, (1600, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (title, body) = root.split_vertically(64);
    title
        .draw(&Text::new(
            "wasmbox cold start: print / console.log / echo 'hello', fresh instance per execution",
            (800, 10),
            ("sans-serif", 22)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    title
        .draw(&Text::new(
            subtitle.to_string(),
            (800, 40),
            ("sans-serif", 14)
                .into_font()
                .color(&RGBColor(80, 80, 80))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    let (top, bottom) = body.split_vertically(470);
    panel(
        &top,
        "p50 latency per execution (ms, log scale; lower is better)",
        &labels,
        &series(|s| s.p50.as_secs_f64() * 1000.0),
        true,
    )?;
    panel(
        &bottom,
        "throughput (executions/s, log scale; higher is better)",
        &labels,
        &series(|s| s.throughput),
        false,
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    labels: &[String],
    series: &[(Route, Vec<Option<f64>>)],
    legend: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| *v > 0.0)
        .collect();
    ensure!(!values.is_empty(), "nothing to plot");
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    // Just below a power of ten, so that the axis labels it.
    let lo = 10f64.powf(min.log10().floor()) * 0.999;
    // Room above the bars for the value labels (and the legend, on the panel that has it).
    let headroom = if legend { 3.0 } else { 1.5 };
    let hi = 10f64.powf((max * headroom).log10().ceil());
    let groups = labels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .margin_left(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..groups as f64 - 0.5, (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| tick(*v))
        .y_label_style(("sans-serif", 14))
        .draw()
        .map_err(plot_err)?;

    // Group labels under the axis, drawn on the panel at the groups' pixel positions.
    let base = area.get_base_pixel();
    for (g, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64, lo));
        area.draw(&Text::new(
            label.clone(),
            (x - base.0, y - base.1 + 8),
            ("sans-serif", 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
    }

    let width = 0.84 / series.len() as f64;
    for (si, (path, values)) in series.iter().enumerate() {
        let color = path.color();
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            let v = (*v)?;
            let x0 = g as f64 - 0.42 + si as f64 * width;
            Some(Rectangle::new(
                [(x0 + 0.01, lo), (x0 + width - 0.01, v)],
                color.filled(),
            ))
        });
        let drawn = chart.draw_series(bars).map_err(plot_err)?;
        if legend {
            drawn.label(path.label()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
            });
        }
        chart
            .draw_series(values.iter().enumerate().filter_map(|(g, v)| {
                let v = (*v)?;
                let x = g as f64 - 0.42 + (si as f64 + 0.5) * width;
                let text = if v >= 100.0 {
                    format!("{v:.0}")
                } else if v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                };
                Some(Text::new(
                    text,
                    (x, v),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))
            }))
            .map_err(plot_err)?;
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}
