//! Background-run routes: `POST /execute/background` and `/commands/background` start a run and
//! answer at once; `GET /execute/processes` (and `/processes`, the async Python client's and the
//! system-process listing's path) lists them; `GET /execute/processes/{id}` reads one with its
//! output; `POST /execute/kill/{id}`, `POST /processes/{id}/kill` and `DELETE
//! /execute/kill?process_id=` stop one.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::ExecResult;

use super::models::ExecutionResponse;
use super::server_metrics::RunKind;
use crate::exec::RunRequest;
use crate::processes::{ProcessError, ProcessKind, ProcessRecord, ProcessSpec};
use crate::sandbox::Sandbox;
use crate::webhooks::{Callback, WebhookError};

use super::agent::{command_request, ready_to_run, run_request_within};
use super::auth::SandboxAccess;
use super::error::ApiError;
use super::extract::ApiJson;
use super::models::{iso, CommandRequest, ExecuteRequest};
use super::AppState;

/// Background timeout when the request gives none (seconds; the SDKs send 300).
const BACKGROUND_DEFAULT_TIMEOUT: f64 = 300.0;
/// `/execute/async` timeout when the request gives none (seconds; the SDK sends 1800).
const ASYNC_DEFAULT_TIMEOUT: f64 = 1800.0;
/// Longest background run (seconds); longer requests are capped to it.
const BACKGROUND_MAX_TIMEOUT: f64 = 3600.0;

/// `POST /sandboxes/{id}/execute/background`: `{code, language, timeout, env, workdir, name}`.
pub async fn execute_background(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Json<Value>, ApiError> {
    let name = request.name.clone();
    let run = run_request_within(request, BACKGROUND_DEFAULT_TIMEOUT, BACKGROUND_MAX_TIMEOUT)?;
    let record = launch(&app, &sandbox, code_spec(name, &run), run, None)?;
    Ok(started(&record, "Background execution started"))
}

/// `POST /execute/async`: an `/execute` body plus where to deliver the result.
#[derive(Deserialize)]
pub struct AsyncExecuteRequest {
    #[serde(flatten)]
    execute: ExecuteRequest,
    /// Where the result is POSTed (an allowed host).
    callback_url: String,
    /// Extra headers of the callback.
    #[serde(default)]
    callback_headers: Option<BTreeMap<String, String>>,
    /// Signs the callback body (HMAC-SHA256) when given.
    #[serde(default)]
    callback_signature_secret: Option<String>,
}

/// `POST /sandboxes/{id}/execute/async`: starts the run like `/execute/background` and answers
/// `{execution_id, status: "queued"}`; when it ends its result is POSTed to `callback_url`
/// (see [`crate::webhooks`]). A killed run is not delivered.
pub async fn execute_async(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<AsyncExecuteRequest>,
) -> Result<Json<Value>, ApiError> {
    let refused = |e: WebhookError| {
        ApiError::new(StatusCode::FORBIDDEN, "CALLBACK_NOT_ALLOWED", e.to_string())
            .with_detail("field", "callback_url")
    };
    let url = app
        .callbacks
        .check(&request.callback_url)
        .map_err(|e| match e {
            WebhookError::HostNotAllowed(..) => refused(e),
            e => ApiError::bad_request(e.to_string()).with_detail("field", "callback_url"),
        })?;
    let callback = Callback {
        url,
        headers: request.callback_headers.unwrap_or_default(),
        secret: request.callback_signature_secret.filter(|s| !s.is_empty()),
    };
    callback.validate().map_err(|e| {
        ApiError::bad_request(e.to_string()).with_detail("field", "callback_headers")
    })?;
    let name = request.execute.name.clone();
    let run = run_request_within(
        request.execute,
        ASYNC_DEFAULT_TIMEOUT,
        BACKGROUND_MAX_TIMEOUT,
    )?;
    let target = callback.url.to_string();
    let record = launch(&app, &sandbox, code_spec(name, &run), run, Some(callback))?;
    Ok(Json(json!({
        "execution_id": record.execution_id,
        "process_id": record.process_id,
        "status": "queued",
        "callback_url": target,
        "start_time": iso(record.start_time),
        "message": "Execution queued; the result will be POSTed to callback_url",
    })))
}

/// `POST /sandboxes/{id}/commands/background`: the `/commands/run` body.
pub async fn command_background(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<CommandRequest>,
) -> Result<Json<Value>, ApiError> {
    let name = request.name.clone();
    let run = command_request(request, BACKGROUND_DEFAULT_TIMEOUT, BACKGROUND_MAX_TIMEOUT)?;
    let spec = ProcessSpec {
        kind: ProcessKind::Command,
        name,
        language: run.language.name().to_string(),
        command: Some(run.code.clone()),
    };
    let record = launch(&app, &sandbox, spec, run, None)?;
    Ok(started(&record, "Background command started"))
}

/// What a background run of code records.
fn code_spec(name: Option<String>, run: &RunRequest) -> ProcessSpec {
    ProcessSpec {
        kind: ProcessKind::Code,
        name,
        language: run.language.name().to_string(),
        command: None,
    }
}

/// Starts `run` in the background in `sandbox`; when it ends, its result goes to `callback`
/// (if any). -> the record as started.
fn launch(
    app: &AppState,
    sandbox: &Sandbox,
    spec: ProcessSpec,
    mut run: RunRequest,
    callback: Option<Callback>,
) -> Result<ProcessRecord, ApiError> {
    ready_to_run(sandbox, &run)?;
    run.language = app.executor.language_for(&sandbox.template, run.language);
    let fs = app.store.files(&sandbox.id)?;
    let runner = app.clone();
    let base_env = sandbox.env.clone();
    Ok(app.processes.start(
        &sandbox.id,
        &app.store.state_dir(&sandbox.id),
        spec,
        move |id, taps| {
            run.taps = taps;
            let id = id.to_string();
            let language = run.language;
            async move {
                let result = runner.executor.run(&fs, &base_env, run).await;
                if let Ok(ended) = &result {
                    let response = ExecutionResponse::new(ended, language);
                    super::server_metrics::record_run(RunKind::Background, &response);
                }
                if let (Some(callback), Ok(ended)) = (callback, &result) {
                    deliver(callback, id, ended);
                }
                result
            }
        },
    )?)
}

/// POSTs the result of run `id` to `callback` on a task of its own, so retries do not hold
/// the run's record open.
fn deliver(callback: Callback, id: String, ended: &ExecResult) {
    let body = json!({
        "execution_id": id,
        "status": crate::processes::status_of(ended),
        "stdout": ended.stdout,
        "stderr": ended.stderr,
        "exit_code": ended.exit_code,
        "execution_time": ended.duration.as_secs_f64(),
        "success": ended.success(),
    });
    tokio::spawn(async move {
        match callback.deliver(body.to_string().into_bytes()).await {
            Ok(attempts) => tracing::info!(execution = %id, attempts, "callback delivered"),
            Err(e) => {
                tracing::warn!(execution = %id, error = %crate::describe_error(&e), "callback not delivered")
            }
        }
    });
}

/// The answer to a start: the record and a message.
fn started(record: &ProcessRecord, message: &str) -> Json<Value> {
    let mut body = process_json(record);
    body["message"] = json!(message);
    Json(body)
}

/// `GET /sandboxes/{id}/execute/processes` and `/processes`.
pub async fn list(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Json<Value> {
    let records = app
        .processes
        .list(&sandbox.id, &app.store.state_dir(&sandbox.id));
    let processes: Vec<Value> = records.iter().map(process_json).collect();
    Json(json!({
        "processes": processes,
        "count": processes.len(),
        "timestamp": iso(chrono::Utc::now()),
    }))
}

/// `GET /sandboxes/{id}/execute/processes/{process_id}`: one run with its output so far.
pub async fn get(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, process_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = app
        .processes
        .get(&sandbox.id, &app.store.state_dir(&sandbox.id), &process_id)?;
    Ok(Json(process_json(&record)))
}

/// `POST /sandboxes/{id}/execute/kill/{process_id}` and `/processes/{process_id}/kill`.
pub async fn kill(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, process_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    kill_one(&app, &sandbox, &process_id).await
}

/// `?process_id=` of `DELETE /execute/kill`.
#[derive(Deserialize)]
pub struct KillQuery {
    process_id: Option<String>,
}

/// `DELETE /sandboxes/{id}/execute/kill?process_id=…`.
pub async fn kill_by_query(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Query(query): Query<KillQuery>,
) -> Result<Json<Value>, ApiError> {
    let Some(process_id) = query.process_id.filter(|p| !p.is_empty()) else {
        return Err(
            ApiError::bad_request("process_id is required").with_detail("field", "process_id")
        );
    };
    kill_one(&app, &sandbox, &process_id).await
}

async fn kill_one(
    app: &AppState,
    sandbox: &Sandbox,
    process_id: &str,
) -> Result<Json<Value>, ApiError> {
    let record = app
        .processes
        .kill(&sandbox.id, &app.store.state_dir(&sandbox.id), process_id)
        .await?;
    let mut body = process_json(&record);
    body["success"] = json!(true);
    body["message"] = json!(format!("process {process_id} is {}", status_name(&record)));
    Ok(Json(body))
}

fn status_name(record: &ProcessRecord) -> String {
    serde_json::to_value(record.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A record as the clients read it (HopX's `ProcessInfo` plus the output), times in the API's
/// ISO format.
fn process_json(record: &ProcessRecord) -> Value {
    let mut body = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    body["start_time"] = json!(iso(record.start_time));
    body["end_time"] = json!(record.end_time.map(iso));
    body
}

impl From<ProcessError> for ApiError {
    fn from(err: ProcessError) -> Self {
        match &err {
            ProcessError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "PROCESS_NOT_FOUND",
                format!("Process not found: {id}"),
            )
            .with_detail("process_id", id.as_str()),
            ProcessError::TooMany => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_PROCESSES",
                err.to_string(),
            ),
            ProcessError::Record(_) => ApiError::internal(crate::describe_error(&err)),
        }
    }
}
