//! The markdown report: the table, the comparisons with native spawns, how to reproduce.

use super::*;

pub(super) fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "?".into(), |p| format!("{p:.0}%"))
}

pub(super) fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// `p50` next to the native p50, as "N× faster" or "N× slower".
pub(super) fn vs_native(p50: Duration, native: Duration) -> String {
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

pub(super) fn find(rows: &[Row], workload: usize, path: Route, clients: usize) -> Option<&Row> {
    rows.iter()
        .find(|r| r.workload == workload && r.path == path && r.clients == clients)
}

pub(super) fn stats_of(
    rows: &[Row],
    workload: usize,
    path: Route,
    clients: usize,
) -> Option<&Stats> {
    find(rows, workload, path, clients).and_then(|r| r.result.as_ref().ok())
}

pub(super) fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}

pub(super) fn command_output(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The command that reproduces this run.
pub(super) fn reproduce(opts: &Options) -> String {
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

pub(super) fn report(
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
            Language::Bash | Language::Go | Language::DataPython => continue,
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
