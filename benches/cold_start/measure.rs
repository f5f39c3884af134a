//! The closed loop every scenario runs, CPU accounting and the statistics of one scenario.

use super::*;

/// Warms up, then measures `opts.iters` executions (at least one per client) over `jobs`.
pub(super) fn measure(
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
pub(super) async fn closed_loop(
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
pub(super) struct CpuTimes {
    total: u64,
    busy: u64,
    own: u64,
}

impl CpuTimes {
    pub(super) fn now() -> Option<CpuTimes> {
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
    pub(super) fn others_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        let own = self.own.checked_sub(earlier.own)?;
        (total > 0).then(|| busy.saturating_sub(own) as f64 * 100.0 / total as f64)
    }
}

/// Nearest-rank percentile of sorted samples.
pub(super) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(super) fn summarize(
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

pub(super) fn check_output(
    what: &str,
    stdout: &str,
    ok: bool,
    detail: impl FnOnce() -> String,
) -> Result<()> {
    if ok && stdout == EXPECTED {
        Ok(())
    } else {
        bail!(
            "{what} printed {stdout:?} (expected {EXPECTED:?}), {}",
            detail()
        )
    }
}
