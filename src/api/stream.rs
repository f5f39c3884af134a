//! WebSocket routes that stream a run's output as it is written: `/stream/ipython` (kernel
//! cells), `/execute/stream` (and `/stream`) for fresh-instance executions, `/commands/stream`
//! for shell commands.
//!
//! Each text message starts one run (an `/execute/ipython`, `/execute` or `/commands/run` body;
//! a `"type":"execute"` field is accepted). The server sends `{"type":"stdout"|"stderr","data",
//! "timestamp"}` as the program writes, then each rich output (`{"type":"display_data"|
//! "execute_result","data","metadata"}`), then `{"type":"result", …the synchronous route's
//! response…}` (which carries `exit_code` and `execution_time`) and `{"type":"complete",
//! "success"}`. A refused run gets `{"type":"error","error","code"}` and `complete`. The socket
//! stays open for further runs; a client that goes away does not stop a run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::engine::{OutputTap, OutputTaps};
use crate::sandbox::Sandbox;

use super::agent::{
    command_request, run_in, run_request, COMMAND_DEFAULT_TIMEOUT, EXECUTE_DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
};
use super::auth::SandboxAccess;
use super::error::ApiError;
use super::models::{CommandRequest, ExecuteRequest, ExecutionResponse};
use super::AppState;

/// What the messages of a stream run.
#[derive(Clone, Copy)]
enum Runs {
    Cells,
    Executions,
    Commands,
}

/// WS `/sandboxes/{id}/stream/ipython`.
pub async fn cells(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| session(app, sandbox, socket, Runs::Cells))
}

/// WS `/sandboxes/{id}/execute/stream` and `/stream`.
pub async fn executions(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| session(app, sandbox, socket, Runs::Executions))
}

/// WS `/sandboxes/{id}/commands/stream`.
pub async fn commands(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| session(app, sandbox, socket, Runs::Commands))
}

async fn session(app: AppState, sandbox: Sandbox, mut socket: WebSocket, runs: Runs) {
    while let Some(Ok(message)) = socket.recv().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => {
                // Completes the closing handshake (clients wait for it before they exit).
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            _ => continue,
        };
        if text.trim().is_empty() {
            continue;
        }
        let frames = stream_one(&app, &sandbox, runs, &text, &mut socket).await;
        for frame in frames {
            tokio::time::sleep(FRAME_GAP).await;
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

/// Least time between two frames. The JS client's message iterator listens for one message at
/// a time, so frames that reach it in one read are lost (`complete` after `result`, above all);
/// spacing them keeps each in its own read. Output written meanwhile is merged, not delayed.
const FRAME_GAP: Duration = Duration::from_millis(2);

/// Appends a piece of output, merged into the last queued frame when it is of the same stream.
fn enqueue(queued: &mut VecDeque<(&'static str, String)>, kind: &'static str, data: String) {
    match queued.back_mut() {
        Some((last, text)) if *last == kind => text.push_str(&data),
        _ => queued.push_back((kind, data)),
    }
}

/// `{"type": "stdout"|"stderr", "data", "timestamp"}`.
fn output_frame(kind: &str, data: String) -> Value {
    json!({ "type": kind, "data": data, "timestamp": super::models::iso(chrono::Utc::now()) })
}

/// Runs one message's program, sending its output frames as they come; -> the closing frames.
async fn stream_one(
    app: &AppState,
    sandbox: &Sandbox,
    runs: Runs,
    text: &str,
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
        ..OutputTaps::default()
    };
    drop(tx);
    let run = run_message(app, sandbox, runs, text, taps);
    tokio::pin!(run);
    // Output waiting to be sent, consecutive pieces of one stream merged into one frame.
    let mut queued: VecDeque<(&'static str, String)> = VecDeque::new();
    let mut next_send = Instant::now();
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            Some((kind, data)) = rx.recv() => enqueue(&mut queued, kind, data),
            () = tokio::time::sleep_until(next_send), if !queued.is_empty() => {
                if let Some((kind, data)) = queued.pop_front() {
                    // A client that went away does not stop the run; its result is still kept.
                    let _ = socket
                        .send(Message::Text(output_frame(kind, data).to_string().into()))
                        .await;
                }
                next_send = Instant::now() + FRAME_GAP;
            }
        }
    };
    while let Ok((kind, data)) = rx.try_recv() {
        enqueue(&mut queued, kind, data);
    }
    let mut frames: Vec<Value> = queued
        .into_iter()
        .map(|(kind, data)| output_frame(kind, data))
        .collect();
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

/// Parses and runs one message with its output going to `taps`. Python's output is
/// line-buffered for it (`PYTHONUNBUFFERED`, as a terminal would make it), so lines arrive as
/// they are printed.
async fn run_message(
    app: &AppState,
    sandbox: &Sandbox,
    runs: Runs,
    text: &str,
    taps: OutputTaps,
) -> Result<ExecutionResponse, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid message: {e}"));
    match runs {
        Runs::Cells => {
            let request: ExecuteRequest = serde_json::from_str(text).map_err(invalid)?;
            super::kernels::run_cell(app, sandbox, request, taps).await
        }
        Runs::Executions => {
            let request: ExecuteRequest = serde_json::from_str(text).map_err(invalid)?;
            let mut run = run_request(request, EXECUTE_DEFAULT_TIMEOUT)?;
            run.env
                .entry("PYTHONUNBUFFERED".into())
                .or_insert_with(|| "1".into());
            run.taps = taps;
            run_in(app, sandbox, run).await
        }
        Runs::Commands => {
            let request: CommandRequest = serde_json::from_str(text).map_err(invalid)?;
            let mut run = command_request(request, COMMAND_DEFAULT_TIMEOUT, MAX_TIMEOUT)?;
            run.taps = taps;
            run_in(app, sandbox, run).await
        }
    }
}
