//! WS `/terminal` over real HTTP: an interactive shell that keeps its state between lines,
//! edits typed lines like a terminal, ends at `exit`, at its timeout and when the socket
//! closes (nothing it started keeps running), and answers bad input and paused sandboxes with
//! an error frame.

mod api_common;
mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use api_common::{Api, Sbx, ServerProcess};

const KEY: &str = "terminal-key";

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn server(data: &Path) -> (ServerProcess, Api) {
    common::ensure_runtimes();
    let server = ServerProcess::start(data, &["--api-key", KEY], &[]);
    let api = Api::new(&server.url, KEY);
    (server, api)
}

fn connect(sbx: &Sbx, query: &str) -> Socket {
    let url = format!(
        "{}/terminal{query}",
        sbx.host.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", sbx.token).parse().unwrap(),
    );
    let (socket, _) = tungstenite::connect(request).expect("websocket handshake");
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    socket
}

fn type_keys(socket: &mut Socket, data: &str) {
    let message = json!({ "type": "input", "data": data });
    socket.send(Message::text(message.to_string())).unwrap();
}

fn next_frame(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads until the output contains `wanted` (or the exit frame, or the socket ends); -> the
/// output so far and the exit code if one came.
fn read_until(socket: &mut Socket, wanted: &str) -> (String, Option<i64>) {
    let mut output = String::new();
    while let Some(frame) = next_frame(socket) {
        match frame["type"].as_str() {
            Some("output") => output.push_str(frame["data"].as_str().unwrap_or_default()),
            Some("exit") => return (output, frame["code"].as_i64()),
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
        if !wanted.is_empty() && output.contains(wanted) {
            break;
        }
    }
    (output, None)
}

#[test]
fn a_session_keeps_state_edits_lines_and_exits_with_the_shells_status() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    let mut socket = connect(&sbx, "");
    let resize = json!({ "type": "resize", "cols": 80, "rows": 24 });
    socket.send(Message::text(resize.to_string())).unwrap();
    // Typed with a mistake and backspaces, Enter as a terminal sends it (`\r`).
    type_keys(&mut socket, "x=4\u{7f}41; cd /tmp\r");
    type_keys(&mut socket, "f() { echo \"f:$1 $2\"; }\r");
    type_keys(&mut socket, "f $((x + 1)) $PWD\r");
    let (output, _) = read_until(&mut socket, "f:42 /tmp\r\n");
    assert!(output.contains("f:42 /tmp\r\n"), "{output:?}");
    assert!(
        output.contains("x=4\u{8} \u{8}41"),
        "typed keys are echoed: {output:?}"
    );
    // A multi-line command waits for its end before it runs.
    type_keys(&mut socket, "for i in 1 2; do\r");
    type_keys(&mut socket, "echo i=$i; done\r");
    let (output, _) = read_until(&mut socket, "i=2");
    assert!(output.contains("i=1\r\ni=2"), "{output:?}");
    type_keys(&mut socket, "exit 5\r");
    let (_, code) = read_until(&mut socket, "");
    assert_eq!(code, Some(5));
    assert!(
        next_frame(&mut socket).is_none(),
        "the socket closes after exit"
    );
}

#[test]
fn the_timeout_and_a_closed_socket_end_the_shell_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    // A busy loop ends at the session's timeout.
    let started = Instant::now();
    let mut socket = connect(&sbx, "?timeout=1");
    type_keys(&mut socket, "while :; do :; done\r");
    let (_, code) = read_until(&mut socket, "");
    assert!(code.is_some(), "an exit frame at the timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A background loop writing a file stops when the client goes away.
    let mut socket = connect(&sbx, "");
    type_keys(
        &mut socket,
        "while :; do echo t >> /workspace/ticks; sleep 0.1; done\r",
    );
    let ticks = dir.path().to_path_buf();
    let size = || -> u64 {
        walk(&ticks)
            .into_iter()
            .find(|p| p.ends_with("workspace/ticks"))
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while size() < 4 {
        assert!(Instant::now() < deadline, "the loop never wrote");
        std::thread::sleep(Duration::from_millis(50));
    }
    socket.close(None).unwrap();
    let _ = socket.flush();
    drop(socket);
    std::thread::sleep(Duration::from_millis(500));
    let after_close = size();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        size(),
        after_close,
        "the loop still runs after the socket closed"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[test]
fn bad_messages_and_paused_sandboxes_get_error_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    let mut socket = connect(&sbx, "");
    socket
        .send(Message::text(r#"{"type":"launch","data":"x"}"#))
        .unwrap();
    let frame = loop {
        let frame = next_frame(&mut socket).expect("a frame");
        if frame["type"] != "output" {
            break frame;
        }
    };
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "INVALID_REQUEST", "{frame}");
    type_keys(&mut socket, "echo still-here\r");
    let (output, _) = read_until(&mut socket, "still-here\r\n");
    assert!(output.contains("still-here\r\n"), "{output:?}");
    drop(socket);

    api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/pause", sbx.id)))
        .expect(200);
    let mut socket = connect(&sbx, "");
    let frame = next_frame(&mut socket).expect("an error frame");
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "SANDBOX_PAUSED", "{frame}");
    assert!(next_frame(&mut socket).is_none());
}
