//! Background-run routes: `POST /execute/background` and `/commands/background` start a run and
//! answer at once; `GET /execute/processes` (and `/processes`, the async Python client's and the
//! system-process listing's path) lists them; `GET /execute/processes/{id}` reads one with its
//! output; `POST /execute/kill/{id}`, `POST /processes/{id}/kill` and `DELETE
//! /execute/kill?process_id=` stop one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::exec::RunRequest;
use crate::processes::{ProcessError, ProcessKind, ProcessRecord, ProcessSpec};
use crate::sandbox::Sandbox;

use super::agent::{command_request, ready_to_run, run_request_within};
use super::auth::SandboxAccess;
use super::error::ApiError;
use super::extract::ApiJson;
use super::models::{iso, CommandRequest, ExecuteRequest};
use super::AppState;

/// Background timeout when the request gives none (seconds; the SDKs send 300).
const BACKGROUND_DEFAULT_TIMEOUT: f64 = 300.0;
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
    let spec = ProcessSpec {
        kind: ProcessKind::Code,
        name,
        language: run.language.name().to_string(),
        command: None,
    };
    start(&app, &sandbox, spec, run, "Background execution started")
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
    start(&app, &sandbox, spec, run, "Background command started")
}

fn start(
    app: &AppState,
    sandbox: &Sandbox,
    spec: ProcessSpec,
    mut run: RunRequest,
    message: &str,
) -> Result<Json<Value>, ApiError> {
    ready_to_run(sandbox, &run)?;
    let fs = app.store.files(&sandbox.id)?;
    let runner = app.clone();
    let base_env = sandbox.env.clone();
    let record = app.processes.start(
        &sandbox.id,
        &app.store.state_dir(&sandbox.id),
        spec,
        move |taps| {
            run.taps = taps;
            async move { runner.executor.run(&fs, &base_env, run).await }
        },
    )?;
    let mut body = process_json(&record);
    body["message"] = json!(message);
    Ok(Json(body))
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
