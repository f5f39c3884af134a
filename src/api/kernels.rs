//! Kernel routes: `POST /execute/ipython` runs a cell in the sandbox's kernel for its language
//! (state kept between calls; WS `/stream/ipython`, in `stream.rs`, streams cells),
//! `GET /jupyter/sessions` (and `/kernels`) lists the kernels, `POST /kernels/{id}/restart` and
//! `DELETE /kernels/{id}` drop one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::engine::OutputTaps;
use crate::sandbox::Sandbox;

use crate::kernels::KERNEL_LANGUAGES;
use crate::runtimes::Language;

use super::agent::{finished, ready_to_run, run_request};
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
    Ok(Json(
        run_cell(&app, &sandbox, request, OutputTaps::default()).await?,
    ))
}

/// Runs `request` as a cell of `sandbox`'s kernel, streaming its output to `taps`.
pub(super) async fn run_cell(
    app: &AppState,
    sandbox: &Sandbox,
    request: ExecuteRequest,
    taps: OutputTaps,
) -> Result<ExecutionResponse, ApiError> {
    let mut run = run_request(request, CELL_DEFAULT_TIMEOUT)?;
    run.language = app.executor.language_for(&sandbox.template, run.language);
    let language = run.language;
    if !KERNEL_LANGUAGES.contains(&language) {
        return Err(ApiError::bad_request(format!(
            "language '{}' has no kernel; kernels run python and javascript",
            language.name()
        ))
        .with_detail("field", "language"));
    }
    run.taps = taps;
    ready_to_run(sandbox, &run)?;
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
    finished(sandbox, &reply.result)?;
    let response = ExecutionResponse::new(&reply.result, language);
    app.run_stats.record(&sandbox.id, &response);
    super::server_metrics::record_run(super::server_metrics::RunKind::Cell, &response);
    Ok(response)
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

/// `POST /sandboxes/{id}/kernels/{kernel}/restart`: the next cell starts a fresh kernel.
pub async fn restart(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, kernel)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    drop_kernel(&app, &sandbox, &kernel, false).await?;
    Ok(Json(json!({ "id": kernel, "status": "restarted" })))
}

/// `DELETE /sandboxes/{id}/kernels/{kernel}`.
pub async fn delete(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Path((_, kernel)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    drop_kernel(&app, &sandbox, &kernel, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops kernel `id` of `sandbox` with its image (and forgets it when `forget`); 404 if there
/// is no such kernel.
async fn drop_kernel(
    app: &AppState,
    sandbox: &Sandbox,
    id: &str,
    forget: bool,
) -> Result<(), ApiError> {
    // `python` names the kernel cells of this sandbox run in (the data runtime's, in a data
    // template), as `/execute/ipython` with `language: python` does.
    let language = app
        .executor
        .language_for(&sandbox.template, kernel_language(id)?);
    let state_dir = app.store.state_dir(&sandbox.id);
    let existed = if forget {
        app.kernels.delete(&sandbox.id, &state_dir, language).await
    } else {
        app.kernels.restart(&sandbox.id, &state_dir, language).await
    };
    if existed {
        Ok(())
    } else {
        Err(kernel_not_found(id))
    }
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
