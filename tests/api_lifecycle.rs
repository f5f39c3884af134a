//! Server lifecycle through the real binary: restart persistence, generated keys, expiry and
//! reaping, bounded concurrency (429), graceful shutdown, and the CLI's remote mode.

mod api_common;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, ServerProcess};

#[test]
fn restart_loses_nothing() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");

    // No key configured: one is generated into the data dir and reused on restart.
    let mut first = ServerProcess::start(data.path(), &[], &[]);
    let key_file = data.path().join("server/api_key");
    let key = std::fs::read_to_string(&key_file)
        .expect("generated key file")
        .trim()
        .to_string();
    assert!(
        first.log().contains(&key_file.display().to_string()),
        "{}",
        first.log()
    );
    assert!(!first.log().contains(&key), "the key itself is not printed");
    let api = Api::new(&first.url, &key);
    api.send(api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    api.send(
        api.anon(Method::GET, "/v1/sandboxes")
            .header("X-API-Key", "wrong"),
    )
    .expect(401);

    let sbx = api.create(json!({ "template_name": "python", "env_vars": {"AT_CREATE": "yes"} }));
    api.send(
        api.agent(&sbx, Method::POST, "/files/write")
            .json(&json!({"path": "/workspace/keep.txt", "content": "kept"})),
    )
    .expect(200);
    api.send(
        api.agent(&sbx, Method::PATCH, "/env")
            .json(&json!({"env_vars": {"SET_LATER": "also"}})),
    )
    .expect(200);
    assert!(first.stop(), "graceful exit 0:\n{}", first.log());

    let second = ServerProcess::start(data.path(), &[], &[]);
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file").trim(),
        key
    );
    let api = Api::new(&second.url, &key);
    // The old token and the old public host's path still work against the new server.
    let mut old = sbx;
    old.host = format!("{}/sandboxes/{}", second.url, old.id);
    let read = api
        .send(api.agent(&old, Method::GET, "/files/read?path=/workspace/keep.txt"))
        .expect(200);
    assert_eq!(read["content"], "kept");
    let env = api.send(api.agent(&old, Method::GET, "/env")).expect(200);
    // The sandbox's own variables over the defaults every execution starts from.
    assert_eq!(env["env_vars"]["AT_CREATE"], "yes", "{env}");
    assert_eq!(env["env_vars"]["SET_LATER"], "also", "{env}");
    assert_eq!(env["env_vars"]["HOME"], "/workspace", "{env}");
    let r = api.python(&old, "import os; print(os.environ['AT_CREATE'], os.environ['SET_LATER'], open('keep.txt').read())");
    assert_eq!(stdout(&r), "yes also kept\n");
    let listed = api
        .send(api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    assert_eq!(listed["data"][0]["id"], old.id);
    assert_eq!(listed["data"][0]["template_name"], "python");
}

#[test]
fn expired_sandboxes_are_gone_and_reaped() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(data.path(), &["--api-key", "k"], &[]);
    let api = Api::new(&server.url, "k");
    let short = api.create(json!({ "timeout_seconds": 1 }));
    let long = api.create(json!({ "timeout_seconds": 3600 }));
    std::thread::sleep(Duration::from_millis(1500));
    api.send(api.control(Method::GET, &format!("/v1/sandboxes/{}", short.id)))
        .expect(404);
    api.send(api.agent(&short, Method::GET, "/env")).expect(404);
    api.send(api.control(Method::GET, &format!("/v1/sandboxes/{}", long.id)))
        .expect(200);
    let dir = data.path().join("sandboxes").join(&short.id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!dir.exists(), "the reaper deletes expired sandboxes");
    assert!(data.path().join("sandboxes").join(&long.id).exists());
}

#[test]
fn excess_load_gets_429_with_retry_after() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(
        data.path(),
        &["--api-key", "k", "--queue-wait", "0"],
        &[("WASMBOX_MAX_INSTANCES", "1")],
    );
    let api = Api::new(&server.url, "k");
    let sbx = api.create_default();
    // Warm up so the slow request below is slow only because of the sleep.
    api.python(&sbx, "print(1)");
    let (api2, host, token) = (api.clone(), sbx.host.clone(), sbx.token.clone());
    let busy = std::thread::spawn(move || {
        let request = api2
            .http
            .post(format!("{host}/execute"))
            .bearer_auth(token)
            .json(&json!({"code": "import time; time.sleep(4); print('done')"}));
        api2.send(request).expect(200)
    });
    std::thread::sleep(Duration::from_millis(1000));
    let reply = api.send(
        api.agent(&sbx, Method::POST, "/execute")
            .json(&json!({"code": "print(2)"})),
    );
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.body["code"], "RATE_LIMITED");
    assert!(reply.body["retry_after"].is_u64());
    assert!(reply.body["details"]["retry_after_seconds"].is_u64());
    assert!(reply.headers.get("retry-after").is_some());
    assert_eq!(stdout(&busy.join().expect("busy thread")), "done\n");
    assert_eq!(stdout(&api.python(&sbx, "print(3)")), "3\n");
}

#[test]
fn excess_load_waits_for_a_slot_within_queue_wait() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(
        data.path(),
        &["--api-key", "k", "--queue-wait", "30"],
        &[("WASMBOX_MAX_INSTANCES", "2")],
    );
    let api = Api::new(&server.url, "k");
    let sbx = api.create_default();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (api, host, token) = (api.clone(), sbx.host.clone(), sbx.token.clone());
            std::thread::spawn(move || {
                let request = api
                    .http
                    .post(format!("{host}/execute"))
                    .bearer_auth(token)
                    .json(&json!({"code": format!("print({i})")}));
                (i, api.send(request).expect(200))
            })
        })
        .collect();
    for handle in handles {
        let (i, r) = handle.join().expect("thread");
        assert_eq!(stdout(&r), format!("{i}\n"));
    }
}

#[test]
fn sigterm_lets_running_executions_finish() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = ServerProcess::start(data.path(), &["--api-key", "k"], &[]);
    let api = Api::new(&server.url, "k");
    let sbx = api.create_default();
    api.python(&sbx, "print(1)");
    let (api2, host, token) = (api.clone(), sbx.host.clone(), sbx.token.clone());
    let running = std::thread::spawn(move || {
        let request = api2
            .http
            .post(format!("{host}/execute"))
            .bearer_auth(token)
            .json(&json!({"code": "import time; time.sleep(2); print('finished')"}));
        api2.send(request).expect(200)
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(server.stop(), "exit 0 after SIGTERM:\n{}", server.log());
    assert_eq!(stdout(&running.join().expect("thread")), "finished\n");
    assert!(server.log().contains("stopped"));
}

/// `wasmbox ARGS…` with the remote settings cleared from the environment.
fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmbox"))
        .args(args)
        .env_remove("WASMBOX_SERVER")
        .env_remove("WASMBOX_API_KEY")
        .env_remove("WASMBOX_OUTPUT")
        .output()
        .expect("running wasmbox")
}

fn json_stdout(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn cli_remote_mode() {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(data.path(), &["--api-key", "remote-key"], &[]);
    let url = server.url.as_str();
    let rcli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", url, "--api-key", "remote-key"]);
        cli(&all)
    };

    let out = rcli(&["run", "print('Hello, World!')", "-o", "json"]);
    let report = json_stdout(&out);
    assert_eq!(
        (report["stdout"].clone(), report["exit_code"].clone()),
        (json!("Hello, World!\n"), json!(0))
    );
    assert!(out.status.success());
    // The temporary sandbox is deleted afterwards.
    let api = Api::new(url, "remote-key");
    let listed = api
        .send(api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    assert_eq!(listed["data"], json!([]));

    let out = rcli(&[
        "run",
        "console.log(process.env.X)",
        "-l",
        "javascript",
        "-e",
        "X=from-cli",
        "-o",
        "plain",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-cli\n");
    let out = rcli(&["run", "import sys; sys.exit(7)"]);
    assert_eq!(out.status.code(), Some(7));
    let out = rcli(&["run", "while True: pass", "-T", "1", "-o", "json"]);
    assert_eq!(out.status.code(), Some(5), "timeout exit code");
    assert_eq!(json_stdout(&out)["timed_out"], true);

    // Auth failure (3), unknown sandbox (4), unknown language (2).
    let out = cli(&["run", "--server", url, "--api-key", "wrong", "print(1)"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rcli(&["run", "print(1)", "--sandbox", "sbx_doesnotexist"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rcli(&["run", "x", "-l", "cobol"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["run", "--server", "http://127.0.0.1:1", "print(1)"]);
    assert_eq!(out.status.code(), Some(1));

    // sandbox create/get/list/kill, with the server given by flags or by environment.
    let out = rcli(&["sandbox", "create", "-e", "K=V", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = json_stdout(&out);
    let id = created["id"].as_str().expect("id").to_string();
    let out = rcli(&[
        "run",
        "import os; print(os.environ['K'])",
        "--sandbox",
        &id,
        "-o",
        "plain",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "V\n");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmbox"))
        .args(["sandbox", "list"])
        .env("WASMBOX_SERVER", url)
        .env("WASMBOX_API_KEY", "remote-key")
        .output()
        .expect("list");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&id),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = rcli(&["sandbox", "get", &id, "-o", "json"]);
    assert_eq!(json_stdout(&out)["id"], id.as_str());
    let out = rcli(&["sandbox", "kill", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("deleted {id}\n")
    );
    let out = rcli(&["sandbox", "get", &id]);
    assert_eq!(out.status.code(), Some(4));
    let out = cli(&["sandbox", "list", "--server", url, "--api-key", "wrong"]);
    assert_eq!(out.status.code(), Some(3));
}
