//! What a sandbox's agent reports about itself: `/ping`, `/metrics/snapshot` (also `/metrics`,
//! the async Python client's path), `/metrics/prometheus`, `/system`, and `/cache/stats` and
//! `/cache/clear` — in wasmbox a sandbox's "cache" is its `/tmp`, the only scratch space its
//! programs have.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use crate::sandbox::Sandbox;

use super::auth::SandboxAccess;
use super::error::ApiError;
use super::models::{iso, ExecutionResponse};
use super::AppState;

/// Counters of one sandbox's runs since the server started.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct RunCounters {
    /// Runs that ended (scripts, commands, cells and streamed runs; not background runs).
    executions: u64,
    /// Of those, the ones that failed (any reason, timeouts included).
    failed: u64,
    /// Of those, the ones stopped by their timeout.
    timed_out: u64,
    /// Their wall-clock time, seconds.
    execution_seconds: f64,
    /// Bytes they wrote to standard output and standard error.
    output_bytes: u64,
    /// The largest linear memory any of them had.
    peak_memory_bytes: u64,
}

/// Per-sandbox [`RunCounters`].
#[derive(Default)]
pub(super) struct RunStats(Mutex<HashMap<String, RunCounters>>);

impl RunStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunCounters>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a run of `sandbox` that ended with `response`.
    pub(super) fn record(&self, sandbox: &str, response: &ExecutionResponse) {
        let mut all = self.lock();
        let counters = all.entry(sandbox.to_string()).or_default();
        counters.executions += 1;
        counters.failed += u64::from(!response.success);
        counters.timed_out += u64::from(response.timed_out);
        counters.execution_seconds += response.execution_time;
        counters.output_bytes +=
            response.resources.usage.stdout_bytes + response.resources.usage.stderr_bytes;
        counters.peak_memory_bytes = counters
            .peak_memory_bytes
            .max(response.resources.usage.peak_memory_bytes);
    }

    fn get(&self, sandbox: &str) -> RunCounters {
        self.lock().get(sandbox).cloned().unwrap_or_default()
    }

    /// Forgets a deleted sandbox.
    pub(super) fn remove(&self, sandbox: &str) {
        self.lock().remove(sandbox);
    }
}

/// `GET /sandboxes/{id}/ping`.
pub async fn ping(SandboxAccess(_): SandboxAccess) -> Json<Value> {
    Json(json!({ "status": "ok", "message": "pong", "timestamp": iso(chrono::Utc::now()) }))
}

/// The sandbox's figures: disk use against its quota, live kernels' memory, running work.
struct Figures {
    disk_bytes: u64,
    tmp: TmpUsage,
    kernel_memory: u64,
    kernels: usize,
    background: usize,
}

/// What the sandbox's `/tmp` (its cache) holds.
#[derive(Clone, Copy, Default)]
struct TmpUsage {
    bytes: u64,
    entries: usize,
}

impl TmpUsage {
    /// Measures `<root>/tmp` (file-system work: call it off the async workers).
    fn of(root: &Path) -> Self {
        let tmp = root.join("tmp");
        Self {
            bytes: crate::sandbox::disk_usage(&tmp).unwrap_or(0),
            entries: std::fs::read_dir(&tmp).map_or(0, |d| d.count()),
        }
    }

    /// `{"size": entries, "bytes", "path"}`.
    fn json(self) -> Value {
        json!({ "size": self.entries, "bytes": self.bytes, "path": "/tmp" })
    }
}

/// Runs file-system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn tmp_usage(app: &AppState, sandbox: &Sandbox) -> Result<TmpUsage, ApiError> {
    let root = app.store.files(&sandbox.id)?.root().to_path_buf();
    blocking(move || TmpUsage::of(&root)).await
}

async fn figures(app: &AppState, sandbox: &Sandbox) -> Result<Figures, ApiError> {
    let root = app.store.files(&sandbox.id)?.root().to_path_buf();
    let (disk_bytes, tmp) = blocking(move || {
        (
            crate::sandbox::disk_usage(&root).unwrap_or(0),
            TmpUsage::of(&root),
        )
    })
    .await?;
    let sessions = app
        .kernels
        .list(&sandbox.id, &app.store.state_dir(&sandbox.id));
    let live: Vec<_> = sessions
        .iter()
        .filter(|k| k.state != crate::kernels::KernelState::Hibernated)
        .collect();
    Ok(Figures {
        disk_bytes,
        tmp,
        kernel_memory: live.iter().map(|k| k.memory_bytes).sum(),
        kernels: live.len(),
        background: app.processes.running_in(&sandbox.id),
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

/// The host's load over the last minute as a share of its cores (the sandbox has no CPU of
/// its own to measure).
fn host_cpu() -> Value {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    json!({
        "cores": cores,
        "load_1m": load,
        "usage_percent": ((load / cores as f64) * 10_000.0).round().min(1_000_000.0) / 100.0,
        "scope": "host",
    })
}

/// `GET /sandboxes/{id}/metrics/snapshot` and `/metrics`.
pub async fn snapshot(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<Json<Value>, ApiError> {
    let f = figures(&app, &sandbox).await?;
    let runs = app.run_stats.get(&sandbox.id);
    let memory_limit = app.memory_mb << 20;
    let quota = app.disk_quota_bytes;
    let uptime = (chrono::Utc::now() - sandbox.created_at)
        .num_seconds()
        .max(0);
    Ok(Json(json!({
        "timestamp": iso(chrono::Utc::now()),
        "sandbox_id": sandbox.id,
        "uptime_seconds": uptime,
        "system": {
            "cpu": host_cpu(),
            "memory": {
                "limit_bytes": memory_limit,
                "used_bytes": f.kernel_memory,
                "usage_percent": percent(f.kernel_memory, memory_limit),
            },
            "disk": {
                "quota_bytes": quota,
                "used_bytes": f.disk_bytes,
                "usage_percent": percent(f.disk_bytes, quota),
            },
        },
        "process": {
            "count": f.kernels + f.background,
            "kernels": f.kernels,
            "background_running": f.background,
        },
        "cache": f.tmp.json(),
        "executions": runs,
        "total_requests": runs.executions,
        "total_errors": runs.failed,
    })))
}

/// `GET /sandboxes/{id}/metrics/prometheus`: the same figures in Prometheus' text format.
pub async fn prometheus(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<impl IntoResponse, ApiError> {
    let f = figures(&app, &sandbox).await?;
    let runs = app.run_stats.get(&sandbox.id);
    let metrics: [(&str, &str, &str, String); 8] = [
        (
            "wasmbox_sandbox_executions_total",
            "counter",
            "Runs that ended.",
            runs.executions.to_string(),
        ),
        (
            "wasmbox_sandbox_execution_failures_total",
            "counter",
            "Runs that failed.",
            runs.failed.to_string(),
        ),
        (
            "wasmbox_sandbox_execution_timeouts_total",
            "counter",
            "Runs stopped by their timeout.",
            runs.timed_out.to_string(),
        ),
        (
            "wasmbox_sandbox_execution_seconds_total",
            "counter",
            "Wall-clock time of the runs.",
            runs.execution_seconds.to_string(),
        ),
        (
            "wasmbox_sandbox_output_bytes_total",
            "counter",
            "Bytes the runs wrote to stdout and stderr.",
            runs.output_bytes.to_string(),
        ),
        (
            "wasmbox_sandbox_disk_bytes",
            "gauge",
            "Bytes the sandbox's files occupy.",
            f.disk_bytes.to_string(),
        ),
        (
            "wasmbox_sandbox_kernel_memory_bytes",
            "gauge",
            "Linear memory of the live kernels.",
            f.kernel_memory.to_string(),
        ),
        (
            "wasmbox_sandbox_background_running",
            "gauge",
            "Background runs going.",
            f.background.to_string(),
        ),
    ];
    let text: String = metrics
        .iter()
        .map(|(name, kind, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n")
        })
        .collect();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// `GET /sandboxes/{id}/system`: limits, use and runtimes.
pub async fn system(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<Json<Value>, ApiError> {
    let f = figures(&app, &sandbox).await?;
    let runtimes = super::agent::runtime_list(&app);
    Ok(Json(json!({
        "os": "wasi",
        "arch": "wasm32",
        "isolation": "webassembly (wasmtime)",
        "cpu": host_cpu(),
        "memory": { "limit_bytes": app.memory_mb << 20, "kernels_bytes": f.kernel_memory },
        "disk": { "quota_bytes": app.disk_quota_bytes, "used_bytes": f.disk_bytes },
        "runtimes": runtimes,
        "timestamp": iso(chrono::Utc::now()),
    })))
}

/// `GET /sandboxes/{id}/cache/stats`: what `/tmp` holds.
pub async fn cache_stats(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<Json<Value>, ApiError> {
    let tmp = tmp_usage(&app, &sandbox).await?;
    // The Python client documents hits, misses, hit_rate, size (MB) and count at the top
    // level: /tmp has no hits or misses, so those are 0.
    Ok(Json(json!({
        "hits": 0,
        "misses": 0,
        "hit_rate": 0.0,
        "size": (tmp.bytes as f64 / (1 << 20) as f64 * 100.0).round() / 100.0,
        "count": tmp.entries,
        "bytes": tmp.bytes,
        "path": "/tmp",
        "cache": tmp.json(),
        "timestamp": iso(chrono::Utc::now()),
    })))
}

/// `POST /sandboxes/{id}/cache/clear`: empties `/tmp` (its entries move to the trash at once and
/// are removed in the background; `/workspace` is untouched).
pub async fn cache_clear(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<Json<Value>, ApiError> {
    let fs = app.store.files(&sandbox.id)?;
    let worker = app.clone();
    let (before, cleared) = blocking(move || -> std::io::Result<(TmpUsage, usize)> {
        let before = TmpUsage::of(fs.root());
        let tmp = fs.dir()?.open_dir("tmp")?;
        let names: Vec<_> = tmp.entries()?.flatten().map(|e| e.file_name()).collect();
        for name in &names {
            worker.store.discard(&tmp, std::path::Path::new(name))?;
        }
        Ok((before, names.len()))
    })
    .await?
    .map_err(|e| ApiError::internal(format!("clearing /tmp failed: {e}")))?;
    app.housekeeping.notify_one();
    Ok(Json(json!({
        "success": true,
        "cleared_entries": cleared,
        "entries_removed": cleared,
        "cleared_bytes": before.bytes,
        "path": "/tmp",
    })))
}
