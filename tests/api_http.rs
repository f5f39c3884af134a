//! HTTP behaviour that runs no guest code, tested in-process on the router with
//! `tower::ServiceExt::oneshot`: auth, paging, error shapes and input checks. No socket, no
//! runtimes, no server process — these run in milliseconds.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use wasmbox::api::{in_process_router, ConnectionLimits, ServerConfig, BODY_LIMIT};
use wasmbox::config::Settings;

const KEY: &str = "test-key";

/// A router over a fresh data directory, with account key [`KEY`].
fn app() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::from_env();
    settings.data_dir = dir.path().join("data");
    settings.cache_dir = dir.path().join("cache");
    // A small pool: nothing here instantiates a module.
    settings.max_instances = 4;
    let config = ServerConfig {
        settings,
        listen: "127.0.0.1:8080".parse().expect("address"),
        api_key: Some(KEY.to_string()),
        public_url: None,
        tls: None,
        sandbox_domain: None,
        queue_wait: Duration::ZERO,
        connections: ConnectionLimits::default(),
    };
    (in_process_router(&config).expect("router"), dir)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// Sends one request; `body` is sent as is (so tests can send broken JSON).
async fn send(app: &Router, method: Method, path: &str, key: Option<&str>, body: &str) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let request = request.body(Body::from(body.to_string())).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, path: &str) -> Reply {
    send(app, Method::GET, path, Some(KEY), "").await
}

async fn post(app: &Router, path: &str, body: Value) -> Reply {
    send(app, Method::POST, path, Some(KEY), &body.to_string()).await
}

/// The control plane's error shape: `error` is an object and `message`/`code` are repeated at
/// the top level, with the request id in the body and the header.
fn assert_control_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["message"], body["message"], "{body}");
    let request_id = reply
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id header");
    assert!(request_id.starts_with("req_"), "{request_id}");
    assert_eq!(body["request_id"], request_id, "{body}");
    assert_eq!(body["error"]["request_id"], request_id, "{body}");
}

/// The agent's error shape: `error` is the message string.
fn assert_agent_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["error"], body["message"], "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    assert!(reply.headers.contains_key("x-request-id"));
}

async fn create(app: &Router) -> Value {
    let reply = post(app, "/v1/sandboxes", json!({})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn control_plane_wants_the_account_key() {
    let (app, _dir) = app();
    let missing = send(&app, Method::GET, "/v1/sandboxes", None, "").await;
    assert_control_error(&missing, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let wrong = send(&app, Method::GET, "/v1/sandboxes", Some("nope"), "").await;
    assert_control_error(&wrong, StatusCode::UNAUTHORIZED, "INVALID_API_KEY");
    let create = send(&app, Method::POST, "/v1/sandboxes", Some("nope"), "{}").await;
    assert_control_error(&create, StatusCode::UNAUTHORIZED, "INVALID_API_KEY");
    // Nothing was created by the refused request.
    assert_eq!(get(&app, "/v1/sandboxes").await.body["data"], json!([]));
    // /health needs no key.
    let health = send(&app, Method::GET, "/health", None, "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
}

#[tokio::test]
async fn agent_wants_a_token_or_the_account_key() {
    let (app, _dir) = app();
    let sandbox = create(&app).await;
    let id = sandbox["id"].as_str().expect("id");
    let env = format!("/sandboxes/{id}/env");
    let missing = send(&app, Method::GET, &env, None, "").await;
    assert_agent_error(&missing, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let wrong = send(&app, Method::GET, &env, Some("nope"), "").await;
    assert_agent_error(&wrong, StatusCode::UNAUTHORIZED, "INVALID_API_KEY");

    let with_token = |token: &str| {
        Request::builder()
            .uri(env.as_str())
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    let token = sandbox["auth_token"].as_str().expect("auth_token");
    let ok = app
        .clone()
        .oneshot(with_token(token))
        .await
        .expect("infallible");
    assert_eq!(ok.status(), StatusCode::OK);
    let forged = app
        .clone()
        .oneshot(with_token("not.a.jwt"))
        .await
        .expect("infallible");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // A token for one sandbox opens no other.
    let other = create(&app).await;
    let crossed = app
        .clone()
        .oneshot(
            Request::builder()
                .uri(format!(
                    "/sandboxes/{}/env",
                    other["id"].as_str().expect("id")
                ))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(crossed.status(), StatusCode::UNAUTHORIZED);
    // The account key works on the agent too (the JS SDK sends it when it has no token).
    assert_eq!(get(&app, &env).await.status, StatusCode::OK);
}

#[tokio::test]
async fn list_pages_with_a_cursor() {
    let (app, _dir) = app();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create(&app).await["id"].as_str().expect("id").to_string());
    }

    let mut seen = Vec::new();
    let mut path = "/v1/sandboxes?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = get(&app, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["object"], "list");
        let data = page.body["data"].as_array().expect("data");
        assert!(data.len() <= 2, "{}", page.body);
        seen.extend(
            data.iter()
                .map(|s| s["id"].as_str().expect("id").to_string()),
        );
        pages += 1;
        if page.body["has_more"] == json!(false) {
            assert_eq!(page.body["next_cursor"], Value::Null);
            break;
        }
        let cursor = page.body["next_cursor"].as_str().expect("next_cursor");
        path = format!("/v1/sandboxes?limit=2&cursor={cursor}");
    }
    assert_eq!(pages, 3);
    // Oldest first, each exactly once.
    assert_eq!(seen, created);

    // Without a limit everything fits one page; a status filter applies before paging.
    let all = get(&app, "/v1/sandboxes").await.body;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(5));
    assert_eq!(all["has_more"], false);
    let paused = post(
        &app,
        &format!("/v1/sandboxes/{}/pause", created[3]),
        json!({}),
    )
    .await;
    assert_eq!(paused.body["status"], "paused");
    let only = get(&app, "/v1/sandboxes?status=paused&limit=1").await.body;
    assert_eq!(only["data"][0]["id"], created[3].as_str());
    assert_eq!(only["has_more"], false);

    let bad = get(&app, "/v1/sandboxes?cursor=%25%25not-a-cursor").await;
    assert_control_error(&bad, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(bad.body["error"]["details"]["field"], "cursor");
    let bad_limit = get(&app, "/v1/sandboxes?limit=lots").await;
    assert_control_error(&bad_limit, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (app, _dir) = app();
    let missing = get(&app, "/v1/nothing-here").await;
    assert_control_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");
    let agent = get(&app, "/sandboxes/sbx_x/nothing-here").await;
    assert_agent_error(&agent, StatusCode::NOT_FOUND, "NOT_FOUND");
    let method = send(&app, Method::PATCH, "/v1/sandboxes", Some(KEY), "{}").await;
    assert_control_error(
        &method,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    let sandbox = get(&app, "/v1/sandboxes/sbx_doesnotexist").await;
    assert_control_error(&sandbox, StatusCode::NOT_FOUND, "SANDBOX_NOT_FOUND");
    let template = get(&app, "/v1/templates/cobol").await;
    assert_control_error(&template, StatusCode::NOT_FOUND, "TEMPLATE_NOT_FOUND");
}

#[tokio::test]
async fn bad_json_bodies_are_400_naming_the_field() {
    let (app, _dir) = app();
    let wrong_type = post(&app, "/v1/sandboxes", json!({ "timeout_seconds": "soon" })).await;
    assert_control_error(&wrong_type, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(
        wrong_type.body["error"]["details"]["field"],
        "timeout_seconds"
    );
    assert!(
        wrong_type.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("timeout_seconds")),
        "{}",
        wrong_type.body
    );

    let sandbox = create(&app).await;
    let id = sandbox["id"].as_str().expect("id");
    let timeout = format!("/v1/sandboxes/{id}/timeout");
    let missing = send(&app, Method::PUT, &timeout, Some(KEY), "{}").await;
    assert_control_error(&missing, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(missing.body["error"]["details"]["field"], "timeout_seconds");

    let broken = send(
        &app,
        Method::POST,
        "/v1/sandboxes",
        Some(KEY),
        "{\"env_vars\":",
    )
    .await;
    assert_control_error(&broken, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let array = send(&app, Method::POST, "/v1/sandboxes", Some(KEY), "[]").await;
    assert_control_error(&array, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let trailing = send(&app, Method::POST, "/v1/sandboxes", Some(KEY), "{} {}").await;
    assert_control_error(&trailing, StatusCode::BAD_REQUEST, "INVALID_REQUEST");

    let execute = format!("/sandboxes/{id}/execute");
    let no_code = post(&app, &execute, json!({ "language": "python" })).await;
    assert_agent_error(&no_code, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(no_code.body["details"]["field"], "code");
}

#[tokio::test]
async fn oversized_inputs_are_refused() {
    let (app, _dir) = app();
    let too_long = post(
        &app,
        "/v1/sandboxes",
        json!({ "timeout_seconds": 11u64 * 365 * 24 * 3600 }),
    )
    .await;
    assert_control_error(&too_long, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(
        too_long.body["error"]["details"]["field"],
        "timeout_seconds"
    );

    let many: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("V{i}"), json!("x"))).collect();
    let env = post(&app, "/v1/sandboxes", json!({ "env_vars": many })).await;
    assert_control_error(&env, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(env.body["error"]["details"]["field"], "env_vars");

    let huge = format!(
        "{{\"env_vars\": {{\"A\": \"{}\"}}}}",
        "x".repeat(BODY_LIMIT)
    );
    let body = send(&app, Method::POST, "/v1/sandboxes", Some(KEY), &huge).await;
    assert_control_error(&body, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    // None of these created a sandbox.
    assert_eq!(get(&app, "/v1/sandboxes").await.body["data"], json!([]));
}

/// No runtime is installed under this router's cache directory, so a request that got as far as
/// running code would fail differently (503): each 4xx here was decided before any code ran.
#[tokio::test]
async fn bad_execution_requests_run_nothing() {
    let (app, _dir) = app();
    let sandbox = create(&app).await;
    let id = sandbox["id"].as_str().expect("id");
    let execute = format!("/sandboxes/{id}/execute");

    let nul = post(&app, &execute, json!({ "code": "print(1)\u{0}" })).await;
    assert_agent_error(&nul, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(nul.body["details"]["field"], "code");
    let language = post(&app, &execute, json!({ "code": "x", "language": "cobol" })).await;
    assert_agent_error(&language, StatusCode::BAD_REQUEST, "UNSUPPORTED_LANGUAGE");
    for timeout in [json!(-1), json!(0)] {
        let reply = post(&app, &execute, json!({ "code": "x", "timeout": timeout })).await;
        assert_agent_error(&reply, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        assert_eq!(reply.body["details"]["field"], "timeout");
    }
    let env = post(
        &app,
        &execute,
        json!({ "code": "x", "env": { "A=B": "c" } }),
    )
    .await;
    assert_agent_error(&env, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    let command = post(
        &app,
        &format!("/sandboxes/{id}/commands/run"),
        json!({ "command": " " }),
    )
    .await;
    assert_agent_error(&command, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    assert_eq!(command.body["details"]["field"], "command");
    let gone = post(
        &app,
        "/sandboxes/sbx_doesnotexist/execute",
        json!({ "code": "x" }),
    )
    .await;
    assert_agent_error(&gone, StatusCode::NOT_FOUND, "SANDBOX_NOT_FOUND");
}
