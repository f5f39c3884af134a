//! Kernel routes: `POST /execute/ipython` runs a cell in the sandbox's kernel for its language
//! (state kept between calls), `GET /jupyter/sessions` (and `/kernels`) lists the kernels,
//! `POST /kernels/{id}/restart` and `DELETE /kernels/{id}` drop one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::exec::RunRequest;
use crate::kernels::KERNEL_LANGUAGES;
use crate::runtimes::Language;

use super::agent::{finished, ready_to_run, resolve_timeout};
use super::auth::SandboxAccess;
use super::error::ApiError;
use super::extract::ApiJson;
use super::models::{ExecuteRequest, ExecutionResponse};
use super::AppState;

/// The JS client's default for `runIpython`.
const CELL_DEFAULT_TIMEOUT: f64 = 60.0;

/// `POST /sandboxes/{id}/execute/ipython`: `{code, timeout, env, language?, workdir?}`.
pub async fn execute_cell(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    let language: Language = request.language.as_deref().unwrap_or("python").parse()?;
    if !KERNEL_LANGUAGES.contains(&language) {
        return Err(ApiError::bad_request(format!(
            "language '{}' has no kernel; kernels run python and javascript",
            language.name()
        ))
        .with_detail("field", "language"));
    }
    let timeout = resolve_timeout(request.timeout, CELL_DEFAULT_TIMEOUT)?;
    let mut run = RunRequest::new(language, request.code, timeout);
    run.env = request.env.unwrap_or_default();
    run.workdir = request.workdir.filter(|w| !w.is_empty());
    ready_to_run(&sandbox, &run)?;
    let fs = app.store.files(&sandbox.id)?;
    let reply = app
        .kernels
        .run_cell(
            &app.executor,
            &sandbox.id,
            &app.store.state_dir(&sandbox.id),
            &fs,
            &sandbox.env,
            run,
        )
        .await?;
    finished(&sandbox, &reply.result)?;
    Ok(Json(ExecutionResponse::new(&reply.result, language)))
}

/// `GET /sandboxes/{id}/jupyter/sessions`: `{sessions: [...]}`.
pub async fn sessions(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Json<Value> {
    let sessions = app
        .kernels
        .list(&sandbox.id, &app.store.state_dir(&sandbox.id));
    Json(json!({ "sessions": sessions, "count": sessions.len() }))
}

/// `POST /sandboxes/{id}/kernels/{kernel}/restart`.
pub async fn restart(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, kernel)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let language = kernel_language(&kernel)?;
    let existed = app
        .kernels
        .restart(&sandbox.id, &app.store.state_dir(&sandbox.id), language)
        .await;
    if !existed {
        return Err(kernel_not_found(&kernel));
    }
    Ok(Json(json!({ "id": kernel, "status": "restarted" })))
}

/// `DELETE /sandboxes/{id}/kernels/{kernel}`.
pub async fn delete(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, kernel)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let language = kernel_language(&kernel)?;
    let existed = app
        .kernels
        .delete(&sandbox.id, &app.store.state_dir(&sandbox.id), language)
        .await;
    if !existed {
        return Err(kernel_not_found(&kernel));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A kernel id is its language's name (aliases such as `js` or `python3` are accepted).
fn kernel_language(id: &str) -> Result<Language, ApiError> {
    match id.parse::<Language>() {
        Ok(language) if KERNEL_LANGUAGES.contains(&language) => Ok(language),
        _ => Err(kernel_not_found(id)),
    }
}

fn kernel_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "KERNEL_NOT_FOUND",
        format!("Kernel not found: {id} (kernel ids are python and javascript)"),
    )
    .with_detail("kernel_id", id)
}
