//! WS `/terminal` (also at the origin root): an interactive bash session in the sandbox.
//!
//! The client sends `{"type":"input","data"}` (raw keystrokes) and `{"type":"resize","cols",
//! "rows"}` (accepted; the shell has no window to size); the server sends `{"type":"output",
//! "data"}` and, when the shell ends (`exit`, Ctrl-D, its timeout), `{"type":"exit","code"}`
//! before closing. A sandbox has no PTY: [`LineDiscipline`] echoes and edits the typed line the
//! way one would, and the shell (`bash -i`) reads whole lines. The session is one execution: it
//! holds an instance of the sandbox's share, is ended by its timeout (the `timeout` query
//! parameter, default and cap [`SESSION_TIMEOUT`]) and by the socket closing, and its output is
//! streamed, never kept.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{live_stdin, OutputTap, OutputTaps};
use crate::exec::RunRequest;
use crate::runtimes::Language;
use crate::sandbox::Sandbox;
use crate::terminal::{terminal_output, LineDiscipline};

use super::agent::ready_to_run;
use super::auth::SandboxAccess;
use super::error::ApiError;
use super::AppState;

/// Longest a terminal session lives (and its default).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Output bytes waiting for a slow client before more is dropped (with a notice).
const MAX_QUEUED_OUTPUT: usize = 1 << 20;
/// Least time between two output frames (see the stream routes: the JS client loses frames
/// that reach it in one read).
const FRAME_GAP: Duration = Duration::from_millis(2);

#[derive(Deserialize)]
pub struct TerminalQuery {
    /// Session length in seconds.
    timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Input {
        data: String,
    },
    Resize {
        #[allow(dead_code)]
        cols: u16,
        #[allow(dead_code)]
        rows: u16,
    },
}

/// WS `/sandboxes/{id}/terminal` and `/terminal`.
pub async fn terminal(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    Query(query): Query<TerminalQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let timeout = query
        .timeout
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| Duration::from_secs_f64(t).min(SESSION_TIMEOUT))
        .unwrap_or(SESSION_TIMEOUT);
    upgrade.on_upgrade(move |socket| session(app, sandbox, socket, timeout))
}

/// Output of the session on its way to the client, bounded by [`MAX_QUEUED_OUTPUT`].
struct OutputQueue {
    queued: AtomicUsize,
    dropped: AtomicBool,
    tx: mpsc::UnboundedSender<String>,
}

impl OutputQueue {
    fn tap(self: &Arc<Self>) -> OutputTap {
        let queue = self.clone();
        Arc::new(move |bytes: &[u8]| {
            if queue.queued.load(Ordering::Relaxed) > MAX_QUEUED_OUTPUT {
                queue.dropped.store(true, Ordering::Relaxed);
                return;
            }
            queue.queued.fetch_add(bytes.len(), Ordering::Relaxed);
            let _ = queue.tx.send(String::from_utf8_lossy(bytes).into_owned());
        })
    }
}

fn output_frame(data: &str) -> Message {
    Message::Text(
        json!({ "type": "output", "data": terminal_output(data) })
            .to_string()
            .into(),
    )
}

async fn send_json(socket: &mut WebSocket, value: Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn refuse(mut socket: WebSocket, error: ApiError) {
    let _ = send_json(
        &mut socket,
        json!({ "type": "error", "code": error.code, "error": error.message }),
    )
    .await;
    let _ = socket.send(Message::Close(None)).await;
}

async fn session(app: AppState, sandbox: Sandbox, mut socket: WebSocket, timeout: Duration) {
    let (live, feed) = live_stdin();
    let (tx, mut output) = mpsc::unbounded_channel();
    let queue = Arc::new(OutputQueue {
        queued: AtomicUsize::new(0),
        dropped: AtomicBool::new(false),
        tx,
    });
    let mut run = RunRequest::new(Language::Bash, "exec bash -i", timeout);
    run.env.insert("TERM".into(), "dumb".into());
    run.live_stdin = Some(live);
    run.taps = OutputTaps {
        stdout: Some(queue.tap()),
        stderr: Some(queue.tap()),
        stream_only: true,
    };
    if let Err(e) = ready_to_run(&sandbox, &run) {
        return refuse(socket, e).await;
    }
    let fs = match app.store.files(&sandbox.id) {
        Ok(fs) => fs,
        Err(e) => return refuse(socket, e.into()).await,
    };
    // Typed lines go to the shell from their own task: a shell that is not reading must not
    // stop output and socket messages from flowing.
    let (lines, mut typed) = mpsc::channel::<String>(64);
    let mut lines = Some(lines);
    tokio::spawn(async move {
        while let Some(line) = typed.recv().await {
            if feed.send(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let execution = app.executor.run(&fs, &sandbox.env, run);
    tokio::pin!(execution);
    let mut discipline = LineDiscipline::default();
    let mut pending = String::new();
    let mut next_send = Instant::now();
    let outcome = loop {
        tokio::select! {
            outcome = &mut execution => break outcome,
            Some(text) = output.recv() => {
                queue.queued.fetch_sub(text.len(), Ordering::Relaxed);
                pending.push_str(&text);
            }
            () = tokio::time::sleep_until(next_send), if !pending.is_empty() => {
                if socket.send(output_frame(&pending)).await.is_err() {
                    return;
                }
                pending.clear();
                if queue.dropped.swap(false, Ordering::Relaxed) {
                    pending.push_str("\nwasmbox: output dropped: the client reads slower than the program writes\n");
                }
                next_send = Instant::now() + FRAME_GAP;
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let Ok(message) = serde_json::from_str::<ClientMessage>(&text) else {
                        let error = json!({
                            "type": "error",
                            "code": "INVALID_REQUEST",
                            "error": "expected {\"type\":\"input\",\"data\"} or {\"type\":\"resize\",\"cols\",\"rows\"}",
                        });
                        if !send_json(&mut socket, error).await {
                            return;
                        }
                        continue;
                    };
                    if let ClientMessage::Input { data } = message {
                        let keys = discipline.keystrokes(&data);
                        pending.push_str(&keys.echo);
                        if !keys.input.is_empty() {
                            if let Some(lines) = &lines {
                                // A client pasting faster than the shell reads loses the excess.
                                let _ = lines.try_send(keys.input);
                            }
                        }
                        if keys.end_of_input {
                            lines = None;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Dropping the execution ends the shell and everything it started.
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    };
    while let Ok(text) = output.try_recv() {
        pending.push_str(&text);
    }
    if !pending.is_empty() {
        tokio::time::sleep_until(next_send).await;
        let _ = socket.send(output_frame(&pending)).await;
        tokio::time::sleep(FRAME_GAP).await;
    }
    let code = match outcome {
        Ok(result) => result.exit_code,
        Err(e) => {
            let error = ApiError::from(e);
            let _ = send_json(
                &mut socket,
                json!({ "type": "error", "code": error.code, "error": error.message }),
            )
            .await;
            tokio::time::sleep(FRAME_GAP).await;
            1
        }
    };
    let _ = send_json(&mut socket, json!({ "type": "exit", "code": code })).await;
    let _ = socket.send(Message::Close(None)).await;
}
