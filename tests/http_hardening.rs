//! What a hostile tenant tried at the HTTP edge (issue 8, rows 8, 10, 11 and 13), through the real
//! `wasmbox serve` binary on an ephemeral loopback port: inputs that used to panic or be
//! silently cut, oversized environments, and connections that used to lock everyone else out.

mod api_common;
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "hardening-key";

fn start(args: &[&str]) -> (ServerProcess, Api, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut all = vec!["--api-key", KEY];
    all.extend_from_slice(args);
    let server = ServerProcess::start(data.path(), &all, &[]);
    let api = Api::new(&server.url, KEY);
    (server, api, data)
}

/// The `host:port` of a server URL.
fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Asserts a 400 whose body names `field` in `details.field`; returns the message.
fn assert_bad_field(reply: api_common::Reply, field: &str) -> String {
    let body = reply.expect(400);
    assert_eq!(body["code"], "INVALID_REQUEST", "{body}");
    let details = if body["error"].is_object() {
        &body["error"]["details"]
    } else {
        &body["details"]
    };
    assert_eq!(details["field"], field, "{body}");
    body["message"].as_str().expect("message").to_string()
}

fn health_is_ok(api: &Api) {
    assert_eq!(
        api.send(api.anon(Method::GET, "/health")).expect(200)["status"],
        "ok"
    );
}

#[test]
fn huge_sandbox_timeouts_are_a_400_not_a_crash() {
    let (_server, api, _data) = start(&[]);
    for seconds in [10_000_000_000_000_u64, u64::MAX, 315_360_001] {
        let reply = api.send(
            api.control(Method::POST, "/v1/sandboxes")
                .json(&json!({ "timeout_seconds": seconds })),
        );
        let message = assert_bad_field(reply, "timeout_seconds");
        assert!(message.contains("315360000"), "{message}");
        health_is_ok(&api);
    }
    // The same rule on update, and a sane value still works on both.
    let sbx = api.create(json!({ "timeout_seconds": 315_360_000 }));
    let reply = api.send(
        api.control(Method::PUT, &format!("/v1/sandboxes/{}/timeout", sbx.id))
            .json(&json!({ "timeout_seconds": 10_000_000_000_000_u64 })),
    );
    assert_bad_field(reply, "timeout_seconds");
    let updated = api
        .send(
            api.control(Method::PUT, &format!("/v1/sandboxes/{}/timeout", sbx.id))
                .json(&json!({ "timeout_seconds": 3600 })),
        )
        .expect(200);
    assert_eq!(updated["timeout_seconds"], 3600);
}

#[test]
fn create_bodies_must_be_json_objects() {
    let (_server, api, _data) = start(&[]);
    for body in ["[]", "[1]", "\"x\"", "5", "null", "true"] {
        let reply = api.send(
            api.control(Method::POST, "/v1/sandboxes")
                .header("content-type", "application/json")
                .body(body),
        );
        let error = reply.expect(400);
        assert_eq!(error["code"], "INVALID_REQUEST", "{body}: {error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("object")),
            "{body}: {error}"
        );
    }
    let list = api
        .send(api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    assert_eq!(list["data"], json!([]), "no sandbox was created: {list}");
    // An empty body still means `{}`.
    let created = api
        .send(api.control(Method::POST, "/v1/sandboxes"))
        .expect(201);
    assert!(created["id"].is_string());
}

#[test]
fn nul_in_code_command_or_args_is_refused() {
    let (_server, api, _data) = start(&[]);
    let sbx = api.create_default();
    let cases = [
        (
            "/execute",
            json!({ "code": "print(1)\u{0}print(2)" }),
            "code",
        ),
        (
            "/commands/run",
            json!({ "command": "echo a\u{0}b" }),
            "command",
        ),
        (
            "/commands/run",
            json!({ "command": "echo", "args": ["a", "b\u{0}c"] }),
            "args[1]",
        ),
    ];
    for (path, body, field) in cases {
        let reply = api.send(api.agent(&sbx, Method::POST, path).json(&body));
        let message = assert_bad_field(reply, field);
        assert!(message.contains("NUL"), "{message}");
    }
}

/// `count` variables named `V0…` with values of `value_bytes` bytes.
fn env_of(count: usize, value_bytes: usize) -> Value {
    let value = "x".repeat(value_bytes);
    Value::Object(
        (0..count)
            .map(|i| (format!("V{i}"), Value::String(value.clone())))
            .collect(),
    )
}

#[test]
fn environment_size_caps() {
    let (_server, api, _data) = start(&[]);
    let long_name = json!({ "N".repeat(257): "1" });
    let over_caps = [
        (env_of(257, 1), "256 environment variables"),
        (long_name, "256 bytes"),
        (env_of(1, 64 * 1024 + 1), "65536"),
        (env_of(5, 60 * 1024), "262144"),
    ];
    let sbx = api.create_default();
    for (env, limit) in &over_caps {
        // On create…
        let reply = api.send(
            api.control(Method::POST, "/v1/sandboxes")
                .json(&json!({ "env_vars": env })),
        );
        let message = assert_bad_field(reply, "env_vars");
        assert!(message.contains(limit), "{message}");
        // …on /env…
        for method in [Method::PUT, Method::PATCH] {
            let reply = api.send(
                api.agent(&sbx, method, "/env")
                    .json(&json!({ "env_vars": env })),
            );
            let message = assert_bad_field(reply, "env_vars");
            assert!(message.contains(limit), "{message}");
        }
        // …and per request.
        let reply = api.send(
            api.agent(&sbx, Method::POST, "/execute")
                .json(&json!({ "code": "print(1)", "env": env })),
        );
        assert!(assert_bad_field(reply, "env").contains(limit));
        let reply = api.send(
            api.agent(&sbx, Method::POST, "/commands/run")
                .json(&json!({ "command": "true", "env": env })),
        );
        assert!(assert_bad_field(reply, "env").contains(limit));
    }

    // Row 11: one 5 MiB value is refused outright.
    let reply = api.send(
        api.agent(&sbx, Method::PATCH, "/env")
            .json(&json!({ "env_vars": { "BIG": "x".repeat(5 << 20) } })),
    );
    assert_bad_field(reply, "env_vars");

    // PATCHes that fit one by one are refused once the merged environment would not.
    for i in 0..4 {
        let reply = api.send(
            api.agent(&sbx, Method::PATCH, "/env")
                .json(&json!({ "env_vars": { format!("P{i}"): "x".repeat(60 * 1024) } })),
        );
        reply.expect(200);
    }
    let reply = api.send(
        api.agent(&sbx, Method::PATCH, "/env")
            .json(&json!({ "env_vars": { "P4": "x".repeat(60 * 1024) } })),
    );
    let message = assert_bad_field(reply, "env_vars");
    assert!(message.contains("262144"), "{message}");
    let env = api.send(api.agent(&sbx, Method::GET, "/env")).expect(200);
    // (The answer is the effective environment: the defaults are there too.)
    let names: Vec<&String> = env["env_vars"]
        .as_object()
        .expect("env")
        .keys()
        .filter(|k| k.len() == 2 && k.starts_with('P'))
        .collect();
    assert_eq!(
        names,
        ["P0", "P1", "P2", "P3"],
        "the refused PATCH changed nothing"
    );
    assert_eq!(env["env_vars"]["HOME"], "/workspace");
    // Replacing (PUT) is judged on the new environment alone.
    api.send(
        api.agent(&sbx, Method::PUT, "/env")
            .json(&json!({ "env_vars": env_of(256, 16) })),
    )
    .expect(200);
}

/// Opens a TCP connection to `address`, failing the test on error.
fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Waits up to `limit` for the server to close `stream` (EOF or reset); when it did, after how
/// long. Whatever the server sent first (a 408, say) is read and ignored.
fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn silent_half_sent_and_idle_connections_are_closed_on_time() {
    let (server, _api, _data) = start(&["--header-timeout", "1.5", "--idle-timeout", "3"]);
    let address = address(&server.url);
    let header = Duration::from_millis(1500);
    let idle = Duration::from_secs(3);
    let slack = Duration::from_millis(1500);

    // A connection that never sends a byte gets the header timeout for its first request.
    let mut silent = connect(&address);
    // A half-sent head: the header timeout counts from its first byte.
    let mut half = connect(&address);
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // A keep-alive connection after a complete exchange gets the (longer) idle timeout.
    let mut idle_conn = connect(&address);
    idle_conn
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut response = [0u8; 512];
    let n = idle_conn.read(&mut response).expect("response");
    assert!(
        response[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response[..n])
    );

    let silent_after = time_until_closed(&mut silent, header + slack).expect("silent closed");
    assert!(
        silent_after + Duration::from_millis(200) >= header,
        "{silent_after:?}"
    );
    let half_after = time_until_closed(&mut half, slack).expect("half-sent head closed");
    assert!(silent_after + half_after < header + slack, "{half_after:?}");
    // The idle connection is still open at the header timeout, and closed at the idle timeout.
    let idle_after = time_until_closed(&mut idle_conn, idle + slack).expect("idle closed");
    let idle_total = silent_after + half_after + idle_after;
    assert!(
        idle_total + Duration::from_millis(200) >= idle && idle_total < idle + slack,
        "closed after {idle_total:?}"
    );
}

/// Row 10: 1,100 idle connections and a few half-sent heads held open. Each connection over
/// the cap takes the slot of the longest-idle one, so the victim, with its pooled connection
/// and with fresh ones, never sees a failure; the server closes the held connections on time.
#[test]
fn idle_connections_cannot_lock_others_out() {
    common::ensure_runtimes();
    // This process holds the 1,100 connections; the server raises its own limit.
    let needed = 1100 + 100;
    let fd_limit = wasmbox::api::listener::raise_fd_limit();
    assert!(
        fd_limit >= needed,
        "this test needs RLIMIT_NOFILE >= {needed} (hard limit {fd_limit})"
    );
    let (server, api, _data) = start(&["--header-timeout", "2", "--idle-timeout", "4"]);
    let address = address(&server.url);
    let sbx = api.create_default();
    assert_eq!(stdout(&api.python(&sbx, "print(1)")), "1\n");

    let attacking = Arc::new(AtomicBool::new(true));
    let victim = {
        let (api, attacking) = (api.clone(), attacking.clone());
        let sbx = Sbx {
            id: sbx.id.clone(),
            token: sbx.token.clone(),
            host: sbx.host.clone(),
            info: Value::Null,
        };
        std::thread::spawn(move || {
            let mut rounds = 0;
            let mut slowest = Duration::ZERO;
            let deadline = Instant::now() + Duration::from_secs(60);
            while attacking.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                victim_round(&api, &sbx);
                slowest = slowest.max(started.elapsed());
                rounds += 1;
            }
            (rounds, slowest)
        })
    };

    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..1100).map(|_| connect(&address)).collect();
    let mut half: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut stream = connect(&address);
            stream
                .write_all(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nX-API-Key: ")
                .expect("write");
            stream
        })
        .collect();
    let half_sent = Instant::now();
    eprintln!("opened 1,105 connections in {:?}", opened.elapsed());

    // At the cap, a brand-new client is served at once.
    let fresh = Api::new(&server.url, KEY);
    let asked = Instant::now();
    health_is_ok(&fresh);
    assert_eq!(stdout(&fresh.python(&sbx, "print(2)")), "2\n");
    eprintln!(
        "a new client at the cap: /health and print(2) in {:?}",
        asked.elapsed()
    );

    // The half-sent heads are closed after the header timeout (2 s) from their first byte.
    for stream in &mut half {
        time_until_closed(stream, Duration::from_secs(5)).expect("half-sent head closed");
        let after = half_sent.elapsed();
        assert!(
            after > Duration::from_millis(1800) && after < Duration::from_millis(3500),
            "closed {after:?} after the first byte"
        );
    }
    // The idle connections are all closed too: the oldest made room for newer ones, the rest
    // timed out.
    let mut still_open = 0;
    for mut stream in idle {
        if time_until_closed(&mut stream, Duration::from_millis(50)).is_none() {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle connections the server kept open");

    attacking.store(false, Ordering::Relaxed);
    let (rounds, slowest) = victim.join().expect("victim never saw a failure");
    eprintln!("victim: {rounds} rounds of 4 requests, slowest round {slowest:?}");
    assert!(rounds >= 3, "the victim completed only {rounds} rounds");
    // And new connections work once the attack is over.
    health_is_ok(&Api::new(&server.url, KEY));
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// One round of the victim: `/health` and `print(1)`, each over the pooled connection and over a
/// fresh one. Any failure panics the victim thread.
fn victim_round(api: &Api, sbx: &Sbx) {
    wasmbox::tls::install_crypto_provider();
    let fresh = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for client in [&api.http, &fresh] {
        let health = client
            .get(format!("{}/health", api.base))
            .send()
            .expect("/health: connection failed");
        assert_eq!(health.status(), 200);
        let run = client
            .post(format!("{}/execute", sbx.host))
            .bearer_auth(&sbx.token)
            .json(&json!({ "code": "print(1)" }))
            .send()
            .expect("/execute: connection failed");
        assert_eq!(run.status(), 200);
        let body: Value = run.json().expect("JSON");
        assert_eq!(stdout(&body), "1\n", "{body}");
    }
}

/// The connection cap follows the descriptor limit: under a hard RLIMIT_NOFILE of 400 (soft 300,
/// which the server raises) the cap is 400 - 256 = 144, and 300 idle connections neither crash
/// the server (no EMFILE) nor keep a new client out.
#[test]
fn the_connection_cap_fits_the_descriptor_limit() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("prlimit")
        .arg("--nofile=300:400")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_wasmbox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", KEY])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--header-timeout", "30"])
        .env("WASMBOX_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs wasmbox serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let mut url = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while url.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = Some(rest.trim().to_string());
            }
            log.push_str(&line);
            log.push('\n');
        }
    }
    let url = url.unwrap_or_else(|| panic!("server did not start:\n{log}"));
    let api = Api::new(&url, KEY);
    health_is_ok(&api);
    let idle: Vec<TcpStream> = (0..300).map(|_| connect(&address(&url))).collect();
    health_is_ok(&Api::new(&url, KEY));
    api.create_default();
    drop(idle);
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push_str(&line);
        log.push('\n');
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{log}");
    let plain = without_ansi_colours(&log);
    assert!(
        plain.contains("accepting connections max_connections=144 fd_limit=400"),
        "{plain}"
    );
    assert!(!log.contains("accepting a connection failed"), "{log}");
    assert!(!log.contains("connection refused"), "{log}");
}

/// `text` without terminal colour sequences (`ESC [ … m`), which the server's log has.
fn without_ansi_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}
