//! The HTTP API through the real `wasmbox serve` binary on an ephemeral port: every control-plane
//! and agent route, auth, bad input, file confinement and concurrency.

mod api_common;
mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "test-account-key";

struct Fixture {
    server: ServerProcess,
    api: Api,
    data: tempfile::TempDir,
}

fn start() -> Fixture {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(data.path(), &["--api-key", KEY], &[]);
    let api = Api::new(&server.url, KEY);
    Fixture { server, api, data }
}

/// Asserts the agent error shape: `error` and `message` strings, `code`, `request_id`.
fn assert_agent_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].is_string() && body["message"] == body["error"],
        "{body}"
    );
    assert!(
        body["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{body}"
    );
}

/// Asserts the control-plane error shape: `error` object plus top-level `message` and `code`.
fn assert_control_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].is_string() && body["message"] == body["error"]["message"],
        "{body}"
    );
    assert!(body["error"]["details"].is_object(), "{body}");
}

fn is_iso_utc(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[test]
fn health_and_templates() {
    let f = start();
    let reply = f.api.send(f.api.anon(Method::GET, "/health"));
    // The async Python client parses only `application/json` bodies.
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(reply.expect(200)["status"], "ok");

    let list = f
        .api
        .send(f.api.control(Method::GET, "/v1/templates"))
        .expect(200);
    let names: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in ["code-interpreter", "python", "javascript", "bash"] {
        assert!(names.contains(&name), "{names:?}");
    }
    for t in list["data"].as_array().expect("data") {
        assert!(t["id"].is_string() && t["display_name"].is_string(), "{t}");
    }
    let filtered = f
        .api
        .send(
            f.api
                .control(Method::GET, "/v1/templates?language=javascript"),
        )
        .expect(200);
    assert_eq!(filtered["data"].as_array().map(Vec::len), Some(1));

    let one = f
        .api
        .send(f.api.control(Method::GET, "/v1/templates/python"))
        .expect(200);
    assert_eq!(one["name"], "python");
    let missing = f
        .api
        .send(f.api.control(Method::GET, "/v1/templates/cobol"))
        .expect(404);
    assert_control_error(&missing, "TEMPLATE_NOT_FOUND");
    // Templates need the key too.
    f.api
        .send(f.api.anon(Method::GET, "/v1/templates"))
        .expect(401);
}

#[test]
fn control_plane_auth() {
    let f = start();
    let reply = f.api.send(f.api.anon(Method::GET, "/v1/sandboxes"));
    assert!(reply.request_id.is_some());
    let body = reply.expect(401);
    assert_control_error(&body, "UNAUTHORIZED");

    let wrong = f
        .api
        .send(
            f.api
                .anon(Method::GET, "/v1/sandboxes")
                .header("X-API-Key", "nope"),
        )
        .expect(401);
    assert_control_error(&wrong, "INVALID_API_KEY");
    let wrong_bearer = f.api.send(
        f.api
            .anon(Method::POST, "/v1/sandboxes")
            .bearer_auth("nope")
            .json(&json!({})),
    );
    wrong_bearer.expect(401);

    // The key works as X-API-Key and as a bearer token.
    f.api
        .send(f.api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    f.api
        .send(f.api.anon(Method::GET, "/v1/sandboxes").bearer_auth(KEY))
        .expect(200);
}

#[test]
fn sandbox_create_get_delete_with_exact_field_types() {
    let f = start();
    let sbx = f.api.create(json!({
        "template_name": "code-interpreter",
        "timeout_seconds": 600,
        "env_vars": {"GREETING": "hi"},
        "region": "eu-1",
        "internet_access": true,
    }));
    let info = &sbx.info;
    assert!(sbx.id.starts_with("sbx_"));
    assert_eq!(info["status"], "running");
    assert_eq!(info["template_name"], "code-interpreter");
    assert!(info["template_id"].is_string());
    assert!(info["organization_id"].is_i64());
    for key in ["vcpu", "memory_mb", "disk_mb"] {
        assert!(info["resources"][key].is_u64(), "{info}");
    }
    assert_eq!(sbx.host, format!("{}/sandboxes/{}", f.server.url, sbx.id));
    assert!(
        is_iso_utc(&info["created_at"]) && is_iso_utc(&info["expires_at"]),
        "{info}"
    );
    assert_eq!(info["timeout_seconds"], 600);
    assert_eq!(info["internet_access"], false);
    // The token must be valid for more than the SDKs' one-hour refresh margin.
    let expires =
        chrono::DateTime::parse_from_rfc3339(info["token_expires_at"].as_str().expect("expiry"))
            .expect("rfc3339");
    assert!(
        expires > chrono::Utc::now() + chrono::Duration::hours(23),
        "{expires}"
    );

    let got = f
        .api
        .send(
            f.api
                .control(Method::GET, &format!("/v1/sandboxes/{}", sbx.id)),
        )
        .expect(200);
    assert_eq!(got["id"], sbx.id);
    assert_eq!(got["public_host"], sbx.host);
    assert!(got.get("auth_token").is_none());

    // template_id (a string) is accepted too; unknown templates are 404.
    let by_id = f.api.create(json!({ "template_id": "python" }));
    assert_eq!(by_id.info["template_name"], "python");
    let unknown = f
        .api
        .send(
            f.api
                .control(Method::POST, "/v1/sandboxes")
                .json(&json!({"template_name": "nope"})),
        )
        .expect(404);
    assert_control_error(&unknown, "TEMPLATE_NOT_FOUND");
    let bad_env = f
        .api
        .send(
            f.api
                .control(Method::POST, "/v1/sandboxes")
                .json(&json!({"env_vars": {"A": 1}})),
        )
        .expect(400);
    assert_eq!(bad_env["error"]["details"]["field"], "env_vars.A");

    let deleted = f
        .api
        .send(
            f.api
                .control(Method::DELETE, &format!("/v1/sandboxes/{}", sbx.id)),
        )
        .expect(200);
    assert_eq!(deleted["status"], "deleted");
    let gone = f
        .api
        .send(
            f.api
                .control(Method::GET, &format!("/v1/sandboxes/{}", sbx.id)),
        )
        .expect(404);
    assert_control_error(&gone, "SANDBOX_NOT_FOUND");
    assert!(gone["message"]
        .as_str()
        .is_some_and(|m| m.contains("not found")));
    f.api
        .send(
            f.api
                .control(Method::DELETE, &format!("/v1/sandboxes/{}", sbx.id)),
        )
        .expect(404);
    assert!(!f.data.path().join("sandboxes").join(&sbx.id).exists());
    // Agent routes of a deleted sandbox are 404 in the agent's shape.
    let body = f
        .api
        .send(f.api.agent(&sbx, Method::GET, "/env"))
        .expect(404);
    assert_agent_error(&body, "SANDBOX_NOT_FOUND");
}

#[test]
fn list_pages_with_cursor_and_filters() {
    let f = start();
    let ids: Vec<String> = (0..5).map(|_| f.api.create_default().id).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sandboxes?limit=2&cursor={c}"),
            None => "/v1/sandboxes?limit=2".to_string(),
        };
        let page = f.api.send(f.api.control(Method::GET, &path)).expect(200);
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 2);
        seen.extend(
            data.iter()
                .map(|s| s["id"].as_str().expect("id").to_string()),
        );
        if page["has_more"] == json!(true) {
            cursor = Some(
                page["next_cursor"]
                    .as_str()
                    .expect("next_cursor")
                    .to_string(),
            );
        } else {
            assert!(page["next_cursor"].is_null());
            break;
        }
    }
    assert_eq!(seen, ids, "every sandbox exactly once, oldest first");

    f.api
        .send(
            f.api
                .control(Method::POST, &format!("/v1/sandboxes/{}/pause", ids[1])),
        )
        .expect(200);
    let paused = f
        .api
        .send(f.api.control(Method::GET, "/v1/sandboxes?status=paused"))
        .expect(200);
    assert_eq!(paused["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(paused["data"][0]["id"], ids[1]);
    f.api
        .send(f.api.control(Method::GET, "/v1/sandboxes?cursor=%%%"))
        .expect(400);
    f.api
        .send(f.api.control(Method::GET, "/v1/sandboxes?limit=abc"))
        .expect(400);
}

#[test]
fn timeout_token_refresh_pause_resume() {
    let f = start();
    let sbx = f.api.create_default();
    let path = |p: &str| format!("/v1/sandboxes/{}{p}", sbx.id);

    let updated = f
        .api
        .send(
            f.api
                .control(Method::PUT, &path("/timeout"))
                .json(&json!({"timeout_seconds": 3600})),
        )
        .expect(200);
    assert_eq!(updated["timeout_seconds"], 3600);
    assert!(is_iso_utc(&updated["expires_at"]));
    f.api
        .send(
            f.api
                .control(Method::PUT, &path("/timeout"))
                .json(&json!({"timeout_seconds": 0})),
        )
        .expect(400);
    f.api
        .send(
            f.api
                .control(Method::PUT, &path("/timeout"))
                .json(&json!({})),
        )
        .expect(400);

    let refreshed = f
        .api
        .send(f.api.control(Method::POST, &path("/token/refresh")))
        .expect(200);
    let token = refreshed["auth_token"].as_str().expect("auth_token");
    assert!(is_iso_utc(&refreshed["token_expires_at"]));
    let fresh = Sbx {
        token: token.to_string(),
        ..f.api.create_default()
    };
    // The refreshed token is for `sbx`, not for the other sandbox whose host `fresh` carries.
    f.api
        .send(f.api.agent(&fresh, Method::GET, "/env"))
        .expect(401);
    let own = Sbx {
        id: sbx.id.clone(),
        token: token.to_string(),
        host: sbx.host.clone(),
        info: Value::Null,
    };
    f.api
        .send(f.api.agent(&own, Method::GET, "/env"))
        .expect(200);

    let paused = f
        .api
        .send(f.api.control(Method::POST, &path("/pause")))
        .expect(200);
    assert_eq!(paused["status"], "paused");
    let refused = f
        .api
        .send(
            f.api
                .agent(&sbx, Method::POST, "/execute")
                .json(&json!({"code": "print(1)"})),
        )
        .expect(409);
    assert_agent_error(&refused, "SANDBOX_PAUSED");
    // Files and env stay reachable while paused.
    f.api
        .send(f.api.agent(&sbx, Method::GET, "/env"))
        .expect(200);
    let resumed = f
        .api
        .send(f.api.control(Method::POST, &path("/resume")))
        .expect(200);
    assert_eq!(resumed["status"], "running");
    assert_eq!(stdout(&f.api.python(&sbx, "print(6*7)")), "42\n");
    f.api
        .send(f.api.control(Method::POST, "/v1/sandboxes/sbx_nope/pause"))
        .expect(404);
}

#[test]
fn agent_auth_is_per_sandbox() {
    let f = start();
    let a = f.api.create_default();
    let b = f.api.create_default();
    let url = |sbx: &Sbx| format!("{}/env", sbx.host);

    let none = f.api.send(f.api.http.get(url(&a))).expect(401);
    assert_agent_error(&none, "UNAUTHORIZED");
    let garbage = f
        .api
        .send(f.api.http.get(url(&a)).bearer_auth("not-a-token"))
        .expect(401);
    assert_agent_error(&garbage, "INVALID_TOKEN");
    let cross = f
        .api
        .send(f.api.http.get(url(&b)).bearer_auth(&a.token))
        .expect(401);
    assert_agent_error(&cross, "INVALID_TOKEN");
    let cross_exec = f
        .api
        .http
        .post(format!("{}/execute", b.host))
        .bearer_auth(&a.token)
        .json(&json!({"code": "print(1)"}));
    f.api.send(cross_exec).expect(401);
    f.api
        .send(f.api.http.get(url(&a)).header("X-API-Key", "wrong"))
        .expect(401);

    // Own token, or the account key as X-API-Key (the JS SDK without a token) or bearer.
    f.api
        .send(f.api.http.get(url(&a)).bearer_auth(&a.token))
        .expect(200);
    f.api
        .send(f.api.http.get(url(&b)).header("X-API-Key", KEY))
        .expect(200);
    f.api
        .send(f.api.http.get(url(&b)).bearer_auth(KEY))
        .expect(200);

    // An expired token signed with the server's own secret: TOKEN_EXPIRED.
    let secret =
        std::fs::read_to_string(f.data.path().join("server/token_secret")).expect("secret file");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({ "sub": a.id, "iat": now - 7200, "exp": now - 3600 });
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.trim().as_bytes()),
    )
    .expect("sign");
    let body = f
        .api
        .send(f.api.http.get(url(&a)).bearer_auth(&expired))
        .expect(401);
    assert_agent_error(&body, "TOKEN_EXPIRED");

    // Health needs no credentials (a readiness probe); unknown sandboxes are 404.
    let health = f
        .api
        .send(f.api.http.get(format!("{}/health", a.host)))
        .expect(200);
    assert_eq!(health["status"], "healthy");
    let missing = f.api.send(
        f.api
            .http
            .get(format!("{}/sandboxes/sbx_missing/env", f.server.url))
            .header("X-API-Key", KEY),
    );
    assert_agent_error(&missing.expect(404), "SANDBOX_NOT_FOUND");
    // Without credentials an unknown id is 401, so ids cannot be probed.
    f.api
        .send(
            f.api
                .http
                .get(format!("{}/sandboxes/sbx_missing/env", f.server.url)),
        )
        .expect(401);
}

#[test]
fn execute_python_and_javascript() {
    let f = start();
    let sbx = f
        .api
        .create(json!({ "template_name": "code-interpreter", "env_vars": {"FROM_CREATE": "c"} }));

    let r = f.api.python(&sbx, "print('Hello, World!')");
    assert_eq!(stdout(&r), "Hello, World!\n");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["success"], true);
    assert!(r["execution_time"].is_f64());
    for rich in ["png", "html", "json", "dataframe", "result"] {
        assert!(r.get(rich).is_none(), "no rich keys: {r}");
    }

    for language in ["javascript", "js", "node", "nodejs"] {
        let r = f.api.execute(
            &sbx,
            json!({ "language": language, "code": "console.log(6 * 7)" }),
        );
        assert_eq!(stdout(&r), "42\n", "{language}: {r}");
    }
    let r = f.api.execute(
        &sbx,
        json!({ "language": "python3", "code": "import sys; print(sys.version_info[0])" }),
    );
    assert_eq!(stdout(&r), "3\n");
    // No language means python.
    let r = f.api.execute(&sbx, json!({ "code": "print('py')" }));
    assert_eq!(stdout(&r), "py\n");

    let fail = f.api.python(&sbx, "print(undefined_var)");
    assert_eq!(fail["success"], false);
    assert_eq!(fail["exit_code"], 1);
    assert!(
        fail["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("NameError")),
        "{fail}"
    );
    let exit3 = f.api.python(&sbx, "import sys; sys.exit(3)");
    assert_eq!(
        (exit3["exit_code"].clone(), exit3["success"].clone()),
        (json!(3), json!(false))
    );
    let js_fail = f.api.execute(
        &sbx,
        json!({ "language": "javascript", "code": "throw new Error('boom')" }),
    );
    assert_eq!(js_fail["success"], false);
    assert_ne!(js_fail["exit_code"], 0);
}

#[test]
fn execute_env_priority_and_workdir() {
    let f = start();
    let sbx = f
        .api
        .create(json!({ "env_vars": {"A": "create", "B": "create"} }));
    f.api
        .send(
            f.api
                .agent(&sbx, Method::PATCH, "/env")
                .json(&json!({"env_vars": {"B": "sandbox", "C": "sandbox"}, "merge": true})),
        )
        .expect(200);
    let code = "import os; print(os.environ['A'], os.environ['B'], os.environ['C'], os.environ['D'], os.environ.get('HOME'))";
    let r = f.api.execute(
        &sbx,
        json!({ "code": code, "env": {"C": "request", "D": "request"} }),
    );
    assert_eq!(
        stdout(&r),
        "create sandbox request request /workspace\n",
        "{r}"
    );
    // The request env applies to that request only.
    let r = f.api.python(&sbx, "import os; print(os.environ.get('D'))");
    assert_eq!(stdout(&r), "None\n");

    // Both spellings of the working directory; it is created if missing.
    let r = f.api.execute(
        &sbx,
        json!({ "code": "import os; print(os.getcwd())", "workdir": "/tmp/myproject" }),
    );
    assert_eq!(stdout(&r), "/tmp/myproject\n");
    let r = f.api.execute(
        &sbx,
        json!({ "code": "import os; print(os.getcwd())", "working_dir": "/workspace/sub" }),
    );
    assert_eq!(stdout(&r), "/workspace/sub\n");
    let r = f.api.execute(&sbx, json!({ "language": "javascript", "code": "console.log(process.env.A)", "workdir": "/tmp" }));
    assert_eq!(stdout(&r), "create\n");
    let escape = f
        .api
        .send(
            f.api
                .agent(&sbx, Method::POST, "/execute")
                .json(&json!({"code": "print(1)", "workdir": "/../../etc"})),
        )
        .expect(403);
    assert_agent_error(&escape, "PATH_NOT_ALLOWED");
}

#[test]
fn execute_timeout_is_a_result_not_an_error() {
    let f = start();
    let sbx = f.api.create_default();
    let busy = f
        .api
        .execute(&sbx, json!({ "code": "while True: pass", "timeout": 1 }));
    assert_eq!(busy["success"], false);
    assert_eq!(busy["exit_code"], 124);
    assert_eq!(busy["timed_out"], true);
    assert!(
        busy["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("timed out")),
        "{busy}"
    );
    let sleeping = f.api.execute(
        &sbx,
        json!({ "code": "import time; time.sleep(30)", "timeout": 1 }),
    );
    assert_eq!(sleeping["exit_code"], 124);
    assert!(sleeping["execution_time"]
        .as_f64()
        .is_some_and(|t| t < 10.0));
    let js = f.api.execute(
        &sbx,
        json!({ "language": "javascript", "code": "for(;;){}", "timeout": 1 }),
    );
    assert_eq!(js["exit_code"], 124);
}

#[test]
fn bad_input_gets_json_errors() {
    let f = start();
    let sbx = f.api.create_default();
    let post = |path: &str, body: &str| {
        f.api.send(
            f.api
                .agent(&sbx, Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    let malformed = post("/execute", "{\"code\": ").expect(400);
    assert_agent_error(&malformed, "INVALID_REQUEST");
    let missing = post("/execute", "{\"language\": \"python\"}").expect(400);
    assert_agent_error(&missing, "INVALID_REQUEST");
    assert_eq!(missing["details"]["field"], "code");
    assert!(missing["message"]
        .as_str()
        .is_some_and(|m| m.contains("code")));
    let no_command = post("/commands/run", "{\"timeout\": 5}").expect(400);
    assert_eq!(no_command["details"]["field"], "command");
    post("/commands/run", "{\"command\": \"  \"}").expect(400);
    let wrong_type = post("/execute", "{\"code\": 5}").expect(400);
    assert_eq!(wrong_type["details"]["field"], "code");
    let unknown = post("/execute", "{\"code\": \"x\", \"language\": \"cobol\"}").expect(400);
    assert_agent_error(&unknown, "UNSUPPORTED_LANGUAGE");
    post("/execute", "{\"code\": \"x\", \"language\": \"ruby\"}").expect(400);
    post("/execute", "{\"code\": \"print(1)\", \"timeout\": -1}").expect(400);
    post("/env", "{\"env_vars\": {\"A=B\": \"1\"}}").expect(405);
    f.api
        .send(
            f.api
                .agent(&sbx, Method::PUT, "/env")
                .json(&json!({"env_vars": {"A=B": "1"}})),
        )
        .expect(400);

    // Oversized body: 413 with a JSON body.
    let big = format!("{{\"code\": \"{}\"}}", "x".repeat(11 << 20));
    let too_big = post("/execute", &big).expect(413);
    assert_agent_error(&too_big, "PAYLOAD_TOO_LARGE");
    let control_big = f
        .api
        .send(f.api.control(Method::POST, "/v1/sandboxes").body(big))
        .expect(413);
    assert_control_error(&control_big, "PAYLOAD_TOO_LARGE");

    // Unknown routes and methods are JSON too.
    let nowhere = f
        .api
        .send(f.api.agent(&sbx, Method::GET, "/nowhere"))
        .expect(404);
    assert_agent_error(&nowhere, "NOT_FOUND");
    let wrong_method = f
        .api
        .send(f.api.agent(&sbx, Method::GET, "/execute"))
        .expect(405);
    assert_agent_error(&wrong_method, "METHOD_NOT_ALLOWED");
    let control_nowhere = f
        .api
        .send(f.api.control(Method::GET, "/v2/things"))
        .expect(404);
    assert_control_error(&control_nowhere, "NOT_FOUND");
}

#[test]
fn commands_run_accepts_both_forms() {
    let f = start();
    let sbx = f.api.create_default();
    let forms = [
        json!({ "command": "bash", "args": ["-c", "echo hi"], "timeout": 30, "workdir": "/workspace" }),
        json!({ "command": "echo hi", "working_dir": "/workspace" }),
    ];
    for body in forms {
        let reply = f
            .api
            .send(f.api.agent(&sbx, Method::POST, "/commands/run").json(&body));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(stdout(&reply.body), "hi\n", "{}", reply.body);
        assert_eq!(reply.body["exit_code"], 0);
        assert_eq!(reply.body["success"], true);
    }
}

#[test]
fn env_routes() {
    let f = start();
    let sbx = f.api.create(json!({ "env_vars": {"A": "1"} }));
    let env = |method: Method, body: Option<Value>| {
        let request = f.api.agent(&sbx, method, "/env");
        let request = match body {
            Some(b) => request.json(&b),
            None => request,
        };
        f.api.send(request).expect(200)["env_vars"].clone()
    };
    // Every answer is the effective environment: the defaults under the sandbox's own.
    let with_defaults = |own: Value| {
        let mut all = json!({
            "HOME": "/workspace", "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": "/tmp", "USER": "sandbox"
        });
        for (k, v) in own.as_object().expect("object") {
            all[k] = v.clone();
        }
        all
    };
    assert_eq!(env(Method::GET, None), with_defaults(json!({"A": "1"})));
    assert_eq!(
        env(
            Method::PATCH,
            Some(json!({"env_vars": {"B": "2"}, "merge": true}))
        ),
        with_defaults(json!({"A": "1", "B": "2"}))
    );
    assert_eq!(
        env(
            Method::PUT,
            Some(json!({"env_vars": {"C": "3", "HOME": "/tmp"}}))
        ),
        with_defaults(json!({"C": "3", "HOME": "/tmp"}))
    );
    assert_eq!(
        env(
            Method::PATCH,
            Some(json!({"env_vars": {"D": "4"}, "merge": false}))
        ),
        with_defaults(json!({"D": "4"}))
    );
    assert_eq!(env(Method::GET, None), with_defaults(json!({"D": "4"})));
    assert_eq!(env(Method::DELETE, None), with_defaults(json!({})));
    assert_eq!(env(Method::GET, None), with_defaults(json!({})));
    f.api
        .send(
            f.api
                .agent(&sbx, Method::PATCH, "/env")
                .json(&json!({"nothing": 1})),
        )
        .expect(400);
}

#[test]
fn files_roundtrip() {
    let f = start();
    let sbx = f.api.create_default();
    let get = |path: &str| f.api.send(f.api.agent(&sbx, Method::GET, path));
    let post = |path: &str, body: Value| {
        f.api
            .send(f.api.agent(&sbx, Method::POST, path).json(&body))
    };

    let wrote = post(
        "/files/write",
        json!({"path": "/workspace/a.txt", "content": "hello", "mode": "0644"}),
    )
    .expect(200);
    assert_eq!(
        (wrote["success"].clone(), wrote["size"].clone()),
        (json!(true), json!(5))
    );
    let read = get("/files/read?path=/workspace/a.txt").expect(200);
    assert_eq!(read["content"], "hello");
    // Relative paths are relative to /workspace; user code sees the same file.
    assert_eq!(
        get("/files/read?path=a.txt").expect(200)["content"],
        "hello"
    );
    assert_eq!(
        stdout(&f.api.python(&sbx, "print(open('/workspace/a.txt').read())")),
        "hello\n"
    );
    f.api.python(
        &sbx,
        "open('/workspace/from_code.txt', 'w').write('made by code')",
    );
    assert_eq!(
        get("/files/read?path=/workspace/from_code.txt").expect(200)["content"],
        "made by code"
    );

    // Binary through base64, parents created.
    let bytes: Vec<u8> = (0u8..=255).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    post(
        "/files/write",
        json!({"path": "/workspace/bin/data.bin", "content": b64, "encoding": "base64"}),
    )
    .expect(200);
    let read = get("/files/read?path=/workspace/bin/data.bin").expect(200);
    assert_eq!(
        (read["encoding"].clone(), read["content"].clone()),
        (json!("base64"), json!(b64))
    );
    let raw = f
        .api
        .agent(
            &sbx,
            Method::GET,
            "/files/download?path=/workspace/bin/data.bin",
        )
        .send()
        .expect("download");
    assert_eq!(raw.status().as_u16(), 200);
    assert_eq!(raw.bytes().expect("bytes").to_vec(), bytes);

    let conflict = post(
        "/files/write",
        json!({"path": "/workspace/a.txt", "content": "x", "overwrite": false}),
    )
    .expect(409);
    assert_agent_error(&conflict, "FILE_ALREADY_EXISTS");
    let missing = get("/files/read?path=/workspace/none.txt").expect(404);
    assert_agent_error(&missing, "FILE_NOT_FOUND");
    assert_eq!(missing["path"], "/workspace/none.txt");
    let dir = get("/files/read?path=/workspace").expect(400);
    assert_agent_error(&dir, "INVALID_PATH");
    get("/files/read").expect(400);

    post("/files/mkdir", json!({"path": "/workspace/d1/d2"})).expect(200);
    post("/files/mkdir", json!({"path": "/workspace/d1/d2"})).expect(200);
    let list = get("/files/list?path=/workspace").expect(200);
    let entries = list["files"].as_array().expect("files");
    let names: Vec<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["a.txt", "bin", "d1", "from_code.txt"]);
    let a = &entries[0];
    assert_eq!(
        (
            a["path"].clone(),
            a["size"].clone(),
            a["is_directory"].clone(),
            a["is_dir"].clone()
        ),
        (
            json!("/workspace/a.txt"),
            json!(5),
            json!(false),
            json!(false)
        )
    );
    assert_eq!(
        (a["permissions"].clone(), a["mode"].clone()),
        (json!("-rw-r--r--"), json!("0644"))
    );
    assert!(
        is_iso_utc(&a["modified_time"]) && is_iso_utc(&a["modified"]),
        "{a}"
    );
    assert_eq!(entries[2]["is_directory"], true);
    // Default directory is /workspace.
    assert_eq!(get("/files/list").expect(200)["count"], 4);
    assert_agent_error(
        &get("/files/list?path=/workspace/a.txt").expect(400),
        "DIRECTORY_NOT_FOUND",
    );

    assert_eq!(
        get("/files/exists?path=/workspace/a.txt").expect(200)["exists"],
        true
    );
    assert_eq!(
        get("/files/exists?path=/workspace/zzz").expect(200)["exists"],
        false
    );
    let removed = f
        .api
        .send(
            f.api
                .agent(&sbx, Method::DELETE, "/files/remove?path=/workspace/d1"),
        )
        .expect(200);
    assert_eq!(removed["success"], true);
    assert_eq!(
        get("/files/exists?path=/workspace/d1/d2").expect(200)["exists"],
        false
    );
    f.api
        .send(
            f.api
                .agent(&sbx, Method::DELETE, "/files/remove?path=/workspace/a.txt"),
        )
        .expect(200);
    f.api
        .send(
            f.api
                .agent(&sbx, Method::DELETE, "/files/remove?path=/workspace/a.txt"),
        )
        .expect(404);
    f.api
        .send(f.api.agent(&sbx, Method::DELETE, "/files/remove?path=/"))
        .expect(403);

    // Multipart upload (as the SDKs send it): to a file path, and into a directory.
    let upload = |path: &str, name: &str, content: &[u8]| {
        let boundary = "wasmboxtestboundary";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n{path}\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        f.api.send(
            f.api
                .agent(&sbx, Method::POST, "/files/upload")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
    };
    let up = upload("/workspace/up/u.bin", "local.bin", b"\x00\x01uploaded").expect(200);
    assert_eq!(up["path"], "/workspace/up/u.bin");
    let into_dir = upload("/workspace/up", "named.txt", b"named").expect(200);
    assert_eq!(into_dir["path"], "/workspace/up/named.txt");
    assert_eq!(
        get("/files/read?path=/workspace/up/named.txt").expect(200)["content"],
        "named"
    );
    let not_multipart = f
        .api
        .send(
            f.api
                .agent(&sbx, Method::POST, "/files/upload")
                .json(&json!({})),
        )
        .expect(400);
    assert_agent_error(&not_multipart, "INVALID_REQUEST");
}

#[test]
fn files_cannot_leave_the_sandbox() {
    let f = start();
    let sbx = f.api.create_default();
    let get = |path: &str| f.api.send(f.api.agent(&sbx, Method::GET, path));
    let write = |path: &str| {
        f.api.send(
            f.api
                .agent(&sbx, Method::POST, "/files/write")
                .json(&json!({"path": path, "content": "pwned"})),
        )
    };

    for path in [
        "../../etc/passwd",
        "/../etc/passwd",
        "/workspace/../../../etc/passwd",
    ] {
        let body = get(&format!("/files/read?path={path}")).expect(403);
        assert_agent_error(&body, "PATH_NOT_ALLOWED");
        assert_agent_error(&write(path).expect(403), "PATH_NOT_ALLOWED");
    }
    // A host path names a path inside the sandbox, which does not exist there.
    let body = get("/files/read?path=/etc/passwd").expect(404);
    assert_agent_error(&body, "FILE_NOT_FOUND");
    assert!(body.get("content").is_none());

    // Symlinks planted in the tree (as guest code could) that point out of it.
    let outside = tempfile::tempdir().expect("outside dir");
    std::fs::write(outside.path().join("secret.txt"), "host secret").expect("write secret");
    let workspace = f
        .data
        .path()
        .join("sandboxes")
        .join(&sbx.id)
        .join("fs/workspace");
    std::os::unix::fs::symlink(outside.path(), workspace.join("abs_link")).expect("symlink");
    std::os::unix::fs::symlink(
        "../../../../../../../../../../..",
        workspace.join("rel_link"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        workspace.join("file_link"),
    )
    .expect("symlink");
    for path in [
        "/workspace/abs_link/secret.txt",
        "/workspace/file_link",
        "/workspace/rel_link/etc/passwd",
    ] {
        let reply = get(&format!("/files/read?path={path}"));
        assert!(
            matches!(reply.status, 403 | 404),
            "{path}: {} {}",
            reply.status,
            reply.body
        );
        assert!(
            reply.body.get("content").is_none(),
            "{path}: {}",
            reply.body
        );
        let reply = write(path);
        assert!(
            matches!(reply.status, 403 | 404),
            "{path}: {} {}",
            reply.status,
            reply.body
        );
    }
    assert_agent_error(
        &get("/files/read?path=/workspace/file_link").expect(403),
        "PATH_NOT_ALLOWED",
    );
    get("/files/list?path=/workspace/abs_link").expect(403);
    f.api
        .send(
            f.api
                .agent(&sbx, Method::POST, "/files/mkdir")
                .json(&json!({"path": "/workspace/abs_link/newdir"})),
        )
        .expect(403);
    let download = f
        .api
        .agent(
            &sbx,
            Method::GET,
            "/files/download?path=/workspace/file_link",
        )
        .send()
        .expect("download");
    assert_eq!(download.status().as_u16(), 403);

    // Listing shows links as links; removing one removes the link, not its target.
    let list = get("/files/list?path=/workspace").expect(200);
    let link = list["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|e| e["name"] == "abs_link")
        .cloned()
        .expect("abs_link listed");
    assert_eq!(link["is_symlink"], true);
    f.api
        .send(f.api.agent(
            &sbx,
            Method::DELETE,
            "/files/remove?path=/workspace/abs_link",
        ))
        .expect(200);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).expect("secret"),
        "host secret"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        1,
        "nothing written outside"
    );
}

#[test]
fn fifty_parallel_executes_all_correct() {
    let f = start();
    let sbx = f.api.create_default();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let api = f.api.clone();
            let sbx = Sbx {
                id: sbx.id.clone(),
                token: sbx.token.clone(),
                host: sbx.host.clone(),
                info: Value::Null,
            };
            std::thread::spawn(move || {
                let (language, code) = if i % 2 == 0 {
                    ("python", format!("print({i} * {i})"))
                } else {
                    ("javascript", format!("console.log({i} * {i})"))
                };
                let r = api.execute(
                    &sbx,
                    json!({ "language": language, "code": code, "timeout": 120 }),
                );
                (i, r)
            })
        })
        .collect();
    for handle in handles {
        let (i, r) = handle.join().expect("thread");
        assert_eq!(stdout(&r), format!("{}\n", i * i), "{r}");
        assert_eq!(r["success"], true);
    }
}

#[test]
fn info_reports_the_agent() {
    let f = start();
    let sbx = f.api.create_default();
    let info = f
        .api
        .send(f.api.agent(&sbx, Method::GET, "/info"))
        .expect(200);
    assert_eq!(info["agent"], "wasmbox");
    assert_eq!(info["sandbox_id"], sbx.id);
    assert!(info["languages"]
        .as_array()
        .is_some_and(|l| l.len() == wasmbox::runtimes::Language::ALL.len()));
    f.api
        .send(f.api.http.get(format!("{}/info", sbx.host)))
        .expect(401);
}
