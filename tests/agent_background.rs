//! Background runs and streaming over real HTTP: `/execute/background` and
//! `/commands/background` answer at once, are listed while running, keep their output, can be
//! killed (also by pausing or deleting the sandbox), survive a server restart as records; WS
//! `/execute/stream` and `/commands/stream` deliver lines as they are printed; the effective
//! environment; and the 4xx answers for bad input.

mod api_common;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{Api, Sbx, ServerProcess};

const KEY: &str = "background-key";

fn server(data: &Path) -> (ServerProcess, Api) {
    common::ensure_runtimes();
    let server = ServerProcess::start(data, &["--api-key", KEY], &[]);
    let api = Api::new(&server.url, KEY);
    (server, api)
}

fn start_code(api: &Api, sbx: &Sbx, code: &str, name: &str) -> Value {
    let started = api
        .send(
            api.agent(sbx, Method::POST, "/execute/background")
                .json(&json!({ "code": code, "language": "python", "timeout": 60, "name": name })),
        )
        .expect(200);
    assert_eq!(started["status"], "running", "{started}");
    assert!(
        started["process_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("proc_")),
        "{started}"
    );
    started
}

fn process(api: &Api, sbx: &Sbx, id: &str) -> Value {
    api.send(api.agent(sbx, Method::GET, &format!("/execute/processes/{id}")))
        .expect(200)
}

/// Polls until the process is no longer running.
fn wait_ended(api: &Api, sbx: &Sbx, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = process(api, sbx, id);
        if p["status"] != "running" {
            return p;
        }
        assert!(Instant::now() < deadline, "{id} still running: {p}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn listed(api: &Api, sbx: &Sbx, path: &str) -> Vec<Value> {
    let body = api.send(api.agent(sbx, Method::GET, path)).expect(200);
    assert_eq!(
        body["count"].as_u64(),
        body["processes"].as_array().map(|p| p.len() as u64)
    );
    body["processes"].as_array().cloned().unwrap_or_default()
}

#[test]
fn background_runs_are_listed_read_and_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    // A run that finishes: its output and exit code are kept.
    let t = Instant::now();
    let done = start_code(&api, &sbx, "print('from the background')", "short");
    assert!(t.elapsed() < Duration::from_secs(5));
    let id = done["process_id"].as_str().unwrap().to_string();
    let ended = wait_ended(&api, &sbx, &id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["exit_code"], 0);
    assert_eq!(ended["stdout"], "from the background\n");
    assert_eq!(ended["name"], "short");
    assert!(ended["end_time"].is_string() && ended["duration"].is_number());

    // A long run: listed as running (output so far visible), then killed.
    let started = Instant::now();
    let long = start_code(
        &api,
        &sbx,
        "import time\nprint('tick', flush=True)\ntime.sleep(30)\nprint('never')",
        "sleeper",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    let long_id = long["process_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while process(&api, &sbx, &long_id)["stdout"] != "tick\n" {
        assert!(Instant::now() < deadline, "no output while running");
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in ["/execute/processes", "/processes"] {
        let all = listed(&api, &sbx, path);
        let entry = all
            .iter()
            .find(|p| p["process_id"] == long_id.as_str())
            .unwrap_or_else(|| panic!("{long_id} not in {all:?}"));
        assert_eq!(entry["status"], "running");
        assert!(
            entry["pid"].is_u64() && entry["name"] == "sleeper",
            "{entry}"
        );
    }
    let killed = api
        .send(api.agent(&sbx, Method::POST, &format!("/execute/kill/{long_id}")))
        .expect(200);
    assert_eq!(killed["status"], "killed", "{killed}");
    assert_eq!(killed["success"], true);
    assert!(killed["stdout"].as_str().unwrap().starts_with("tick\n"));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "killed, not waited for"
    );
    let all = listed(&api, &sbx, "/execute/processes");
    let entry = all
        .iter()
        .find(|p| p["process_id"] == long_id.as_str())
        .unwrap();
    assert_eq!(entry["status"], "killed");

    // The other kill routes; a command in the background.
    let cmd = api
        .send(api.agent(&sbx, Method::POST, "/commands/background").json(
            &json!({ "command": "bash", "args": ["-c", "echo cmd-out; sleep 30"], "timeout": 60 }),
        ))
        .expect(200);
    let cmd_id = cmd["process_id"].as_str().unwrap().to_string();
    assert!(cmd_id.starts_with("cmd_"), "{cmd}");
    let killed = api
        .send(api.agent(&sbx, Method::POST, &format!("/processes/{cmd_id}/kill")))
        .expect(200);
    assert_eq!(killed["status"], "killed", "{killed}");
    let third = start_code(&api, &sbx, "import time; time.sleep(30)", "third");
    let third_id = third["process_id"].as_str().unwrap();
    let killed = api
        .send(api.agent(
            &sbx,
            Method::DELETE,
            &format!("/execute/kill?process_id={third_id}"),
        ))
        .expect(200);
    assert_eq!(killed["status"], "killed");

    // A failing run is failed, with its traceback; a timeout is a timeout.
    let failing = start_code(&api, &sbx, "raise ValueError('bad')", "failing");
    let ended = wait_ended(&api, &sbx, failing["process_id"].as_str().unwrap());
    assert_eq!(ended["status"], "failed");
    assert!(ended["stderr"].as_str().unwrap().contains("ValueError"));
    let slow = api
        .send(
            api.agent(&sbx, Method::POST, "/execute/background")
                .json(&json!({ "code": "while True: pass", "language": "python", "timeout": 1 })),
        )
        .expect(200);
    let ended = wait_ended(&api, &sbx, slow["process_id"].as_str().unwrap());
    assert_eq!(ended["status"], "timeout", "{ended}");
    assert_eq!(ended["exit_code"], 124);
}

#[test]
fn pause_and_delete_stop_background_work_and_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let finished_id;
    let sbx_id;
    {
        let (mut server, api) = server(dir.path());
        let sbx = api.create_default();
        sbx_id = sbx.id.clone();
        let done = start_code(&api, &sbx, "print(6 * 7)", "kept");
        finished_id = done["process_id"].as_str().unwrap().to_string();
        wait_ended(&api, &sbx, &finished_id);

        // Pausing stops what runs.
        let long = start_code(&api, &sbx, "import time; time.sleep(60)", "paused");
        let long_id = long["process_id"].as_str().unwrap().to_string();
        api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/pause", sbx.id)))
            .expect(200);
        let ended = wait_ended(&api, &sbx, &long_id);
        assert_eq!(ended["status"], "killed", "{ended}");
        // A paused sandbox starts nothing.
        api.send(
            api.agent(&sbx, Method::POST, "/execute/background")
                .json(&json!({ "code": "print(1)" })),
        )
        .expect(409);
        api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/resume", sbx.id)))
            .expect(200);

        // Deleting a sandbox stops its background work: nothing keeps running.
        let other = api.create_default();
        let busy = start_code(&api, &other, "while True: pass", "spinner");
        assert_eq!(
            process(&api, &other, busy["process_id"].as_str().unwrap())["status"],
            "running"
        );
        api.delete(&other);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = api.send(api.anon(Method::GET, "/health")).expect(200);
            if health["running_background_processes"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "still running: {health}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.kill9();
    }
    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&sbx_id);
    let kept = process(&api, &sbx, &finished_id);
    assert_eq!(kept["status"], "completed");
    assert_eq!(kept["stdout"], "42\n");
}

#[test]
fn background_routes_answer_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    let body = api
        .send(api.agent(&sbx, Method::POST, "/execute/kill/proc_nope"))
        .expect(404);
    assert_eq!(body["code"], "PROCESS_NOT_FOUND", "{body}");
    api.send(api.agent(&sbx, Method::GET, "/execute/processes/proc_nope"))
        .expect(404);
    api.send(api.agent(&sbx, Method::DELETE, "/execute/kill"))
        .expect(400);
    let bad = api
        .send(
            api.agent(&sbx, Method::POST, "/execute/background")
                .json(&json!({ "code": "print(1)", "language": "cobol" })),
        )
        .expect(400);
    assert!(bad.to_string().contains("cobol"), "{bad}");
    api.send(
        api.agent(&sbx, Method::POST, "/commands/background")
            .json(&json!({ "command": "" })),
    )
    .expect(400);
    api.send(
        api.agent(&sbx, Method::POST, "/execute/background")
            .json(&json!({ "code": "print(1)", "timeout": -1 })),
    )
    .expect(400);
    // More than the per-sandbox cap at once is refused with 429, not queued without bound.
    let mut ids = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let reply = api.send(
            api.agent(&sbx, Method::POST, "/execute/background")
                .json(&json!({ "code": "import time; time.sleep(30)" })),
        );
        if reply.status == 429 {
            refused = Some(reply.expect(429));
            break;
        }
        ids.push(
            reply.expect(200)["process_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let refused = refused.expect("the cap refuses");
    assert_eq!(refused["code"], "TOO_MANY_PROCESSES", "{refused}");
    assert_eq!(ids.len(), 16);
    for id in ids {
        api.send(api.agent(&sbx, Method::POST, &format!("/execute/kill/{id}")))
            .expect(200);
    }
}

fn connect(
    sbx: &Sbx,
    path: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}{path}", sbx.host.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", sbx.token).parse().unwrap(),
    );
    tungstenite::connect(request)
        .expect("websocket handshake")
        .0
}

/// Sends one message and reads frames up to `complete`, timing each from the send.
fn stream(
    socket: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    message: Value,
) -> Vec<(Duration, Value)> {
    use tungstenite::Message;
    let started = Instant::now();
    socket.send(Message::text(message.to_string())).unwrap();
    let mut frames = Vec::new();
    loop {
        let Message::Text(text) = socket.read().expect("frame") else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let done = frame["type"] == "complete";
        frames.push((started.elapsed(), frame));
        if done {
            return frames;
        }
    }
}

#[test]
fn execute_and_command_streams_deliver_lines_as_they_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    // Python without flush=True: a line every 200 ms, the first long before the end.
    let mut socket = connect(&sbx, "/execute/stream");
    let frames = stream(
        &mut socket,
        json!({
            "type": "execute", "language": "python", "timeout": 30, "workdir": "/workspace",
            "code": "import time\nfor i in range(5):\n    print('line', i)\n    time.sleep(0.2)",
        }),
    );
    let kinds: Vec<&str> = frames
        .iter()
        .map(|(_, f)| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["stdout", "stdout", "stdout", "stdout", "stdout", "result", "complete"],
        "{frames:?}"
    );
    let (first_at, first) = &frames[0];
    assert_eq!(first["data"], "line 0\n");
    assert!(
        *first_at < Duration::from_millis(300),
        "first line after {first_at:?}"
    );
    let (result_at, result) = &frames[5];
    assert!(*result_at >= Duration::from_millis(800), "{frames:?}");
    assert_eq!(result["exit_code"], 0);
    assert!(result["execution_time"].is_number(), "{result}");
    assert_eq!(frames[6].1["success"], true);

    // The socket takes another run; a failing one completes with success false.
    let frames = stream(
        &mut socket,
        json!({ "type": "execute", "language": "javascript", "code": "console.log('js'); throw new Error('boom')" }),
    );
    assert_eq!(frames[0].1["type"], "stdout");
    assert_eq!(frames[0].1["data"], "js\n");
    assert!(
        frames.iter().any(|(_, f)| f["type"] == "stderr"),
        "{frames:?}"
    );
    assert_eq!(frames.last().unwrap().1["success"], false);
    // A bad message is an error frame, not a dropped socket.
    let frames = stream(&mut socket, json!({ "type": "execute", "code": 5 }));
    assert_eq!(frames[0].1["type"], "error", "{frames:?}");
    assert_eq!(frames[1].1["success"], false);

    // Commands stream too.
    let mut socket = connect(&sbx, "/commands/stream");
    let frames = stream(
        &mut socket,
        json!({ "command": "bash", "args": ["-c", "echo one; sleep 1; echo two"], "timeout": 30 }),
    );
    let stdout: Vec<&Value> = frames
        .iter()
        .filter(|(_, f)| f["type"] == "stdout")
        .map(|(_, f)| &f["data"])
        .collect();
    assert_eq!(
        stdout.iter().filter_map(|v| v.as_str()).collect::<String>(),
        "one\ntwo\n"
    );
    assert!(
        frames[0].0 < Duration::from_millis(700),
        "first line after {:?}",
        frames[0].0
    );
}

#[test]
fn env_lists_the_effective_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create(json!({ "env_vars": { "OWN": "1" } }));
    let env = api.send(api.agent(&sbx, Method::GET, "/env")).expect(200);
    assert_eq!(env["env_vars"]["OWN"], "1");
    assert_eq!(env["env_vars"]["PATH"], "/usr/local/bin:/usr/bin:/bin");
    // What code sees agrees.
    let r = api.python(
        &sbx,
        "import os; print(os.environ['PATH'], os.environ['OWN'])",
    );
    assert_eq!(api_common::stdout(&r), "/usr/local/bin:/usr/bin:/bin 1\n");

    // Secret-looking values are masked in every /env answer; a masked value written back
    // keeps what it hides; code sees the real values.
    let put = |body: Value| {
        api.send(api.agent(&sbx, Method::PUT, "/env").json(&body))
            .expect(200)
    };
    let shown =
        put(json!({ "env_vars": { "OPENAI_API_KEY": "sk-1", "db_password": "pw", "OWN": "2" } }));
    assert_eq!(
        shown["env_vars"]["OPENAI_API_KEY"], "***MASKED***",
        "{shown}"
    );
    assert_eq!(shown["env_vars"]["db_password"], "***MASKED***", "{shown}");
    assert_eq!(shown["env_vars"]["OWN"], "2", "{shown}");
    let listed = api.send(api.agent(&sbx, Method::GET, "/env")).expect(200);
    assert_eq!(listed["env_vars"]["OPENAI_API_KEY"], "***MASKED***");
    let mut round_trip = listed["env_vars"].clone();
    round_trip.as_object_mut().unwrap().remove("OWN");
    put(json!({ "env_vars": round_trip }));
    let r = api.python(
        &sbx,
        "import os; print(os.environ['OPENAI_API_KEY'], os.environ['db_password'], 'OWN' in os.environ)",
    );
    assert_eq!(api_common::stdout(&r), "sk-1 pw False\n");
}

#[test]
fn metrics_system_cache_and_resource_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    let get = |path: &str| api.send(api.agent(&sbx, Method::GET, path)).expect(200);

    assert_eq!(get("/ping")["message"], "pong");

    // Every result reports what it used.
    let r = api.python(&sbx, "x = bytearray(40_000_000)\nprint('a' * 1000)");
    let resources = &r["resources"];
    assert_eq!(resources["stdout_bytes"], 1001, "{r}");
    assert!(
        resources["peak_memory_bytes"].as_u64().unwrap() >= 40_000_000,
        "{r}"
    );
    assert!(resources["wall_time_ms"].as_f64().unwrap() > 0.0, "{r}");
    api.python(&sbx, "raise SystemExit(3)");

    // The snapshot counts the runs and reads the disk.
    api.python(
        &sbx,
        "open('/workspace/big.bin', 'wb').write(b'x' * 3_000_000)",
    );
    api.python(&sbx, "open('/tmp/scratch.txt', 'w').write('y' * 5000)");
    for path in ["/metrics/snapshot", "/metrics"] {
        let m = get(path);
        assert_eq!(m["executions"]["executions"], 4, "{m}");
        assert_eq!(m["total_errors"], 1, "{m}");
        assert!(
            m["system"]["disk"]["used_bytes"].as_u64().unwrap() >= 3_000_000,
            "{m}"
        );
        assert!(m["system"]["cpu"]["usage_percent"].is_number(), "{m}");
        assert!(m["system"]["memory"]["usage_percent"].is_number(), "{m}");
        assert_eq!(m["cache"]["size"], 1, "{m}");
        assert!(m["process"]["count"].is_u64(), "{m}");
    }
    let text = api
        .agent(&sbx, Method::GET, "/metrics/prometheus")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains("wasmbox_sandbox_executions_total 4"),
        "{text}"
    );

    let system = get("/system");
    assert!(
        system["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["language"] == "python" && r["available"] == true),
        "{system}"
    );

    // The cache is /tmp: stats, then clear; /workspace stays.
    let stats = get("/cache/stats");
    assert_eq!(stats["count"], 1, "{stats}");
    assert!(stats["cache"]["bytes"].as_u64().unwrap() >= 5000, "{stats}");
    let cleared = api
        .send(api.agent(&sbx, Method::POST, "/cache/clear"))
        .expect(200);
    assert_eq!(cleared["cleared_entries"], 1, "{cleared}");
    assert_eq!(get("/cache/stats")["cache"]["size"], 0);
    let r = api.python(
        &sbx,
        "import os; print(os.listdir('/tmp'), os.path.getsize('/workspace/big.bin'))",
    );
    assert_eq!(api_common::stdout(&r), "[] 3000000\n", "{r}");

    // The old clients' stop/start are pause/resume.
    api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/stop", sbx.id)))
        .expect(200);
    api.send(
        api.agent(&sbx, Method::POST, "/execute")
            .json(&json!({"code": "print(1)"})),
    )
    .expect(409);
    api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/start", sbx.id)))
        .expect(200);
    assert_eq!(api_common::stdout(&api.python(&sbx, "print(1)")), "1\n");
}

/// One request a receiver got: its headers (lowercase names) and body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

/// A one-shot HTTP receiver on loopback: answers each request with the next status of
/// `statuses` and hands over (headers, body) of every request.
fn receiver(statuses: Vec<u16>) -> (String, std::sync::mpsc::Receiver<Delivery>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap(); // request line
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let trimmed = line.trim_end();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((k, v)) = trimmed.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            let _ = tx.send((headers, body));
        }
    });
    (url, rx)
}

#[test]
fn async_execution_calls_back_signed_and_only_to_allowed_hosts() {
    use hmac::Mac;
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    // The receiver fails the first delivery: the server retries.
    let (url, deliveries) = receiver(vec![500, 200]);
    let queued = api
        .send(api.agent(&sbx, Method::POST, "/execute/async").json(&json!({
            "code": "print(6 * 7)", "language": "python", "timeout": 1800, "workdir": "/workspace",
            "callback_url": url,
            "callback_headers": { "Authorization": "Bearer receiver-token" },
            "callback_signature_secret": "topsecret",
        })))
        .expect(200);
    assert_eq!(queued["status"], "queued", "{queued}");
    let id = queued["execution_id"].as_str().unwrap().to_string();
    let (_, first) = deliveries
        .recv_timeout(Duration::from_secs(30))
        .expect("first attempt");
    let (headers, body) = deliveries
        .recv_timeout(Duration::from_secs(30))
        .expect("retried");
    assert_eq!(first, body, "the retry sends the same body");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    };
    let result: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(result["execution_id"], id.as_str());
    assert_eq!(result["status"], "completed");
    assert_eq!(result["stdout"], "42\n");
    assert_eq!(result["exit_code"], 0);
    assert_eq!(header("authorization"), "Bearer receiver-token");
    assert!(header("x-hopx-timestamp").parse::<i64>().is_ok());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"topsecret").unwrap();
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header("x-hopx-signature"), format!("sha256={expected}"));
    // The run is listed like any background run.
    assert_eq!(wait_ended(&api, &sbx, &id)["status"], "completed");

    // Hosts the operator did not allow are refused before anything runs.
    for target in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3:8080/hook",
    ] {
        let refused = api
            .send(
                api.agent(&sbx, Method::POST, "/execute/async")
                    .json(&json!({ "code": "print(1)", "callback_url": target })),
            )
            .expect(403);
        assert_eq!(refused["code"], "CALLBACK_NOT_ALLOWED", "{refused}");
    }
    let bad = api
        .send(
            api.agent(&sbx, Method::POST, "/execute/async")
                .json(&json!({ "code": "print(1)", "callback_url": "file:///etc/passwd" })),
        )
        .expect(400);
    assert_eq!(bad["details"]["field"], "callback_url", "{bad}");
    api.send(
        api.agent(&sbx, Method::POST, "/execute/async")
            .json(&json!({ "code": "print(1)" })),
    )
    .expect(400);
}

#[test]
fn files_watch_reports_changes_under_a_sandbox_directory() {
    use tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    // At the origin root, as the clients connect (the token names the sandbox).
    let root = Sbx {
        host: sbx.host.split("/sandboxes/").next().unwrap().to_string(),
        id: sbx.id.clone(),
        token: sbx.token.clone(),
        info: Value::Null,
    };
    let mut socket = connect(&root, "/files/watch");
    socket
        .send(Message::text(
            json!({ "action": "watch", "path": "/workspace" }).to_string(),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    api.send(
        api.agent(&sbx, Method::POST, "/files/write")
            .json(&json!({ "path": "/workspace/w.txt", "content": "hi" })),
    )
    .expect(200);
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &Value| e["path"] == "/workspace/w.txt" && e["event"] == "created")
    {
        let Message::Text(text) = socket.read().expect("a change") else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["type"], "change", "{frame}");
        events.push(frame);
        assert!(events.len() < 50, "{events:?}");
    }
    // Code's changes show too.
    api.python(&sbx, "import os; os.remove('/workspace/w.txt')");
    loop {
        let Message::Text(text) = socket.read().expect("a change") else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["event"] == "deleted" {
            assert_eq!(frame["path"], "/workspace/w.txt");
            break;
        }
    }

    // A path outside the sandbox or not a directory is an error frame.
    for (path, code) in [
        ("/../../etc", "PATH_NOT_ALLOWED"),
        ("/workspace/nope", "NOT_A_DIRECTORY"),
    ] {
        let mut socket = connect(&sbx, "/files/watch");
        socket
            .send(Message::text(
                json!({ "action": "watch", "path": path }).to_string(),
            ))
            .unwrap();
        let Message::Text(text) = socket.read().expect("an answer") else {
            panic!("no text answer for {path}");
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], code, "{frame}");
    }
}

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn server_wide_prometheus_metrics_count_runs_by_language_kind_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    let paused = api.create_default();
    api.send(api.control(Method::POST, &format!("/v1/sandboxes/{}/pause", paused.id)))
        .expect(200);
    api.python(&sbx, "print('ok')");
    api.python(&sbx, "1 / 0");
    api.python(&sbx, "import time; time.sleep(5)");
    api.execute(
        &sbx,
        json!({ "code": "import time; time.sleep(5)", "language": "python", "timeout": 1 }),
    );
    api.send(
        api.agent(&sbx, Method::POST, "/execute/ipython")
            .json(&json!({ "code": "6 * 7", "language": "javascript" })),
    )
    .expect(200);
    let bg = start_code(&api, &sbx, "print('bg')", "metrics");
    wait_ended(&api, &sbx, bg["process_id"].as_str().unwrap());

    let reply = api.send(api.anon(Method::GET, "/metrics"));
    assert_eq!(
        reply.status, 401,
        "the server-wide metrics need the account key"
    );
    let response = api.control(Method::GET, "/metrics").send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().unwrap();
    let runs = |labels: &[&str]| sample(&text, "wasmbox_runs_total", labels).unwrap_or(0.0);
    let python_execution = [r#"language="python""#, r#"kind="execution""#];
    assert_eq!(
        runs(&[
            python_execution[0],
            python_execution[1],
            r#"outcome="success""#
        ]),
        2.0,
        "{text}"
    );
    assert_eq!(
        runs(&[
            python_execution[0],
            python_execution[1],
            r#"outcome="failure""#
        ]),
        1.0,
        "{text}"
    );
    assert_eq!(
        runs(&[
            python_execution[0],
            python_execution[1],
            r#"outcome="timeout""#
        ]),
        1.0,
        "{text}"
    );
    assert_eq!(
        runs(&[
            r#"language="javascript""#,
            r#"kind="cell""#,
            r#"outcome="success""#
        ]),
        1.0,
        "{text}"
    );
    assert_eq!(
        runs(&[r#"kind="background""#, r#"outcome="success""#]),
        1.0,
        "{text}"
    );
    let latency_count = sample(
        &text,
        "wasmbox_run_duration_seconds_count",
        &python_execution,
    );
    assert_eq!(latency_count, Some(4.0), "{text}");
    assert!(
        text.contains(
            r#"wasmbox_run_duration_seconds_bucket{language="python",kind="execution",le="0.005"}"#
        ),
        "{text}"
    );
    assert!(sample(&text, "wasmbox_output_bytes_total", &[r#"stream="stdout""#]).unwrap() >= 3.0);
    assert_eq!(
        sample(&text, "wasmbox_sandboxes", &[r#"status="running""#]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "wasmbox_sandboxes", &[r#"status="paused""#]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "wasmbox_kernels_live", &[]),
        Some(1.0),
        "{text}"
    );
    // Nothing runs now; the live kernel holds its instance.
    assert_eq!(
        sample(&text, "wasmbox_instances_in_use", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "wasmbox_instance_slots", &[]).unwrap() >= 1.0);
}
