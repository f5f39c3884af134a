//! The control plane's server-wide Prometheus `GET /metrics` (account key): runs by language,
//! kind and outcome, a run-latency histogram, bytes written, and at scrape time the live
//! sandboxes, kernels, background runs and the instance pool. Counters go through the `metrics`
//! facade into one process-wide `metrics-exporter-prometheus` recorder, which renders the text.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::auth::AccountAuth;
use super::error::ApiError;
use super::models::ExecutionResponse;
use super::AppState;

/// Buckets of the run-latency histogram, seconds: from a warm kernel cell to the longest run.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// The process-wide recorder's handle; `None` when another recorder was installed first.
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("wasmbox_run_duration_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "wasmbox_runs_total",
        "Runs that ended, by language, kind and outcome."
    );
    metrics::describe_histogram!(
        "wasmbox_run_duration_seconds",
        metrics::Unit::Seconds,
        "Wall-clock time of the runs that ended."
    );
    metrics::describe_counter!(
        "wasmbox_output_bytes_total",
        metrics::Unit::Bytes,
        "Bytes runs wrote to stdout and stderr (kept or not)."
    );
    metrics::describe_gauge!("wasmbox_sandboxes", "Sandboxes, by status.");
    metrics::describe_gauge!("wasmbox_kernels_live", "Kernels in memory.");
    metrics::describe_gauge!("wasmbox_background_runs", "Background runs going.");
    metrics::describe_gauge!("wasmbox_instances_in_use", "Live WebAssembly instances.");
    metrics::describe_gauge!("wasmbox_instance_slots", "The most instances at once.");
    metrics::describe_gauge!(
        "wasmbox_instance_memory_reserved_bytes",
        metrics::Unit::Bytes,
        "Memory caps of the live instances, added up."
    );
    metrics::describe_gauge!(
        "wasmbox_instance_memory_budget_bytes",
        metrics::Unit::Bytes,
        "The most the instances' memory caps may add up to."
    );
}

/// Folds the histogram samples recorded since the last call into their buckets: without it
/// they pile up in memory until the next scrape (the housekeeping task calls this).
pub(super) fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// What kind of run ended: a script or command, a kernel cell, a background or async run.
#[derive(Clone, Copy)]
pub(super) enum RunKind {
    Execution,
    Cell,
    Background,
}

impl RunKind {
    fn name(self) -> &'static str {
        match self {
            RunKind::Execution => "execution",
            RunKind::Cell => "cell",
            RunKind::Background => "background",
        }
    }
}

/// Counts a run that ended with `response`.
pub(super) fn record_run(kind: RunKind, response: &ExecutionResponse) {
    if handle().is_none() {
        return;
    }
    let outcome = if response.timed_out {
        "timeout"
    } else if response.success {
        "success"
    } else {
        "failure"
    };
    let language = response.language.clone();
    metrics::counter!("wasmbox_runs_total", "language" => language.clone(), "kind" => kind.name(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("wasmbox_run_duration_seconds", "language" => language, "kind" => kind.name())
        .record(response.execution_time);
    let usage = &response.resources.usage;
    metrics::counter!("wasmbox_output_bytes_total", "stream" => "stdout")
        .increment(usage.stdout_bytes);
    metrics::counter!("wasmbox_output_bytes_total", "stream" => "stderr")
        .increment(usage.stderr_bytes);
}

/// `GET /metrics` (account key): the Prometheus text exposition.
pub async fn metrics(
    State(app): State<AppState>,
    _: AccountAuth,
) -> Result<impl IntoResponse, ApiError> {
    let handle = handle().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "METRICS_UNAVAILABLE",
            "another metrics recorder is installed in this process",
        )
    })?;
    let sandboxes = tokio::task::spawn_blocking({
        let app = app.clone();
        move || app.store.list()
    })
    .await
    .unwrap_or_default();
    for status in crate::sandbox::SandboxStatus::ALL {
        let count = sandboxes.iter().filter(|s| s.status == status).count();
        metrics::gauge!("wasmbox_sandboxes", "status" => status.name()).set(count as f64);
    }
    metrics::gauge!("wasmbox_kernels_live").set(app.kernels.live() as f64);
    metrics::gauge!("wasmbox_background_runs").set(app.processes.running() as f64);
    let pool = app.executor.engine().pool_use();
    metrics::gauge!("wasmbox_instances_in_use").set(f64::from(pool.instances));
    metrics::gauge!("wasmbox_instance_slots").set(f64::from(pool.instance_slots));
    metrics::gauge!("wasmbox_instance_memory_reserved_bytes").set(pool.memory_bytes as f64);
    metrics::gauge!("wasmbox_instance_memory_budget_bytes").set(pool.memory_budget_bytes as f64);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}
