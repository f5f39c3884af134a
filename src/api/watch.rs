//! WS `/files/watch` (also at the origin root): the client sends `{"action":"watch","path"}`
//! (default `/workspace`); the server sends `{"type":"change","path","event":"created"|
//! "modified"|"deleted"|"renamed","timestamp"}` for everything under that directory until the
//! socket closes. A path that is not a directory of the sandbox gets `{"type":"error","code",
//! "error"}` and the socket is closed.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::sandbox::watch::{watch, WatchError};
use crate::sandbox::{Sandbox, WORKSPACE};

use super::auth::SandboxAccess;
use super::models::iso;
use super::AppState;

/// Watches open at once, server-wide: each holds an inotify instance, of which a user has few
/// (128 by default on Linux).
pub(super) const MAX_WATCHES: usize = 64;

/// Open watches, server-wide.
#[derive(Default)]
pub(super) struct WatchCount(AtomicUsize);

/// Gives its slot back when the watch ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchCount {
    fn take(&self) -> Option<Slot<'_>> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_WATCHES).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.0))
    }
}

#[derive(Deserialize)]
struct WatchRequest {
    #[serde(default)]
    path: Option<String>,
}

/// WS `/sandboxes/{id}/files/watch` and `/files/watch`.
pub async fn files(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| session(app, sandbox, socket))
}

async fn session(app: AppState, sandbox: Sandbox, mut socket: WebSocket) {
    // The first text message names the directory.
    let path = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                let request: Option<WatchRequest> = serde_json::from_str(&text).ok();
                break request
                    .and_then(|r| r.path)
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| WORKSPACE.to_string());
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    };
    let refuse = |code: &str, error: String| {
        json!({ "type": "error", "code": code, "error": error }).to_string()
    };
    let Some(_slot) = app.watches.take() else {
        let frame = refuse(
            "TOO_MANY_WATCHES",
            format!("the server already runs {MAX_WATCHES} file watches; try again later"),
        );
        let _ = socket.send(Message::Text(frame.into())).await;
        return;
    };
    let watched = app
        .store
        .files(&sandbox.id)
        .map_err(|e| refuse("SANDBOX_NOT_FOUND", e.to_string()))
        .and_then(|fs| {
            watch(&fs, &path).map_err(|e| match e {
                WatchError::Path(_) => refuse("PATH_NOT_ALLOWED", e.to_string()),
                WatchError::NotADirectory(_) => refuse("NOT_A_DIRECTORY", e.to_string()),
                WatchError::Watch { .. } => refuse("WATCH_FAILED", crate::describe_error(&e)),
            })
        });
    let mut watch = match watched {
        Ok(watch) => watch,
        Err(frame) => {
            let _ = socket.send(Message::Text(frame.into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    loop {
        tokio::select! {
            change = watch.changes.recv() => {
                let Some(change) = change else { return };
                let frame = json!({
                    "type": "change",
                    "path": change.path,
                    "event": change.kind,
                    "timestamp": iso(chrono::Utc::now()),
                });
                if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
