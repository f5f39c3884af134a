//! Kernel routes: `POST /execute/ipython` runs a cell in the sandbox's kernel for its language
//! (state kept between calls), WS `/stream/ipython` runs cells while streaming their output,
//! `GET /jupyter/sessions` (and `/kernels`) lists the kernels, `POST /kernels/{id}/restart` and
//! `DELETE /kernels/{id}` drop one.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::engine::{OutputTap, OutputTaps};
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
async fn run_cell(
    app: &AppState,
    sandbox: &Sandbox,
    request: ExecuteRequest,
    taps: OutputTaps,
) -> Result<ExecutionResponse, ApiError> {
    let mut run = run_request(request, CELL_DEFAULT_TIMEOUT)?;
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
    Ok(ExecutionResponse::new(&reply.result, language))
}

/// WS `/sandboxes/{id}/stream/ipython`: each text message `{"code", "timeout", "env",
/// "language", "workdir"}` (a `"type":"execute"` field is accepted) runs a cell; the server sends
/// `{"type":"stdout"|"stderr","data","timestamp"}` as the cell writes, then each rich output
/// (`{"type":"display_data"|"execute_result","data","metadata"}`; a plain-text value shows only
/// as the result's `result`), then `{"type":"result", …the /execute/ipython response…}` and `{"type":"complete","success"}`. A refused cell gets
/// `{"type":"error","error","code"}` and `complete`. The socket stays open for further cells.
pub async fn stream_cells(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| stream_session(app, sandbox, socket))
}

async fn stream_session(app: AppState, sandbox: Sandbox, mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return,
            _ => continue,
        };
        if text.trim().is_empty() {
            continue;
        }
        let frames = match serde_json::from_str::<ExecuteRequest>(&text) {
            Ok(request) => stream_one(&app, &sandbox, request, &mut socket).await,
            Err(e) => vec![
                json!({ "type": "error", "code": "INVALID_REQUEST", "error": format!("invalid cell message: {e}") }),
                json!({ "type": "complete", "success": false }),
            ],
        };
        for frame in frames {
            if socket
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// `{"type": "stdout"|"stderr", "data", "timestamp"}`.
fn output_frame(kind: &str, data: String) -> Value {
    json!({ "type": kind, "data": data, "timestamp": super::models::iso(chrono::Utc::now()) })
}

/// Runs one cell, sending its output frames as they come; -> the closing frames.
async fn stream_one(
    app: &AppState,
    sandbox: &Sandbox,
    request: ExecuteRequest,
    socket: &mut WebSocket,
) -> Vec<Value> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, String)>();
    let tap = |kind: &'static str| -> OutputTap {
        let tx = tx.clone();
        Arc::new(move |bytes: &[u8]| {
            let _ = tx.send((kind, String::from_utf8_lossy(bytes).into_owned()));
        })
    };
    let taps = OutputTaps {
        stdout: Some(tap("stdout")),
        stderr: Some(tap("stderr")),
    };
    drop(tx);
    let cell = run_cell(app, sandbox, request, taps);
    tokio::pin!(cell);
    let outcome = loop {
        tokio::select! {
            outcome = &mut cell => break outcome,
            Some((kind, data)) = rx.recv() => {
                let frame = output_frame(kind, data);
                // A client that went away does not stop the cell; its result is still kept.
                let _ = socket.send(Message::Text(frame.to_string().into())).await;
            }
        }
    };
    let mut frames: Vec<Value> = Vec::new();
    while let Ok((kind, data)) = rx.try_recv() {
        frames.push(output_frame(kind, data));
    }
    match outcome {
        Ok(response) => {
            for output in &response.rich.rich_outputs {
                frames.push(json!({
                    "type": output.output_type,
                    "data": output.data,
                    "metadata": output.metadata,
                }));
            }
            let success = response.success;
            let mut result = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
            if let Some(fields) = result.as_object_mut() {
                fields.insert("type".into(), json!("result"));
            }
            frames.push(result);
            frames.push(json!({ "type": "complete", "success": success }));
        }
        Err(e) => {
            frames.push(json!({ "type": "error", "code": e.code, "error": e.message }));
            frames.push(json!({ "type": "complete", "success": false }));
        }
    }
    frames
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
    let language = kernel_language(id)?;
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
