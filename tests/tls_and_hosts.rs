//! `serve --tls-cert/--tls-key` and `--sandbox-domain` over real connections: HTTPS with a
//! self-signed certificate (made with `openssl`, checked by Python's `ssl` against it), plain
//! HTTP refused on the TLS port, unusable TLS files refused at start; and a sandbox host
//! (`{id}.DOMAIN`, `{port}-{id}.DOMAIN`) routed to that sandbox's agent API at the origin root,
//! WebSockets included, with another sandbox's token refused there.

mod api_common;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use api_common::{Api, ServerProcess};

const KEY: &str = "hosts-key";

/// A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem).
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(status.success());
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// GET or POST `url` with Python's `urllib`, trusting only `ca`; -> (status, body).
fn https(url: &str, ca: &str, method: &str, body: Option<&Value>, key: &str) -> (u16, Value) {
    let script = r#"
import json, ssl, sys, urllib.request, urllib.error
url, ca, method, body, key = sys.argv[1:6]
context = ssl.create_default_context(cafile=ca)
data = body.encode() if body else None
request = urllib.request.Request(url, data=data, method=method,
    headers={"X-API-Key": key, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, context=context, timeout=30) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"#;
    let body = body.map(Value::to_string).unwrap_or_default();
    let out = Command::new("python3")
        .args(["-c", script, url, ca, method, &body, key])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, json) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("no answer: {text} {}", String::from_utf8_lossy(&out.stderr)));
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(json.trim()).unwrap_or(Value::Null),
    )
}

#[test]
fn https_serves_the_api_and_its_public_hosts() {
    common::ensure_runtimes();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server = ServerProcess::start(
        &dir.path().join("data"),
        &["--api-key", KEY, "--tls-cert", &cert, "--tls-key", &key],
        &[],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let (status, health) = https(&format!("{}/health", server.url), &cert, "GET", None, KEY);
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let (status, created) = https(
        &format!("{}/v1/sandboxes", server.url),
        &cert,
        "POST",
        Some(&json!({ "template_name": "code-interpreter" })),
        KEY,
    );
    assert_eq!(status, 201, "{created}");
    let public_host = created["public_host"].as_str().unwrap();
    assert!(public_host.starts_with("https://127.0.0.1:"), "{created}");
    let (status, result) = https(
        &format!("{public_host}/execute"),
        &cert,
        "POST",
        Some(&json!({ "code": "print(6 * 7)" })),
        KEY,
    );
    assert_eq!((status, result["stdout"].as_str()), (200, Some("42\n")));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = server.url.replacen("https://", "http://", 1);
    let answer = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
        .get(format!("{plain}/health"))
        .send();
    assert!(
        answer.as_ref().map_or(true, |r| !r.status().is_success()),
        "{answer:?}"
    );
}

#[test]
fn unusable_tls_files_stop_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for (cert, key, expected) in [
        (&missing, &garbage, "missing.pem"),
        (&garbage, &garbage, "no certificate"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmbox"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("TLS") && stderr.contains(expected),
            "{stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wasmbox"))
        .args(["serve", "--tls-cert", "c.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--tls-cert needs --tls-key");
}

#[test]
fn sandbox_hosts_route_to_their_agent_api_at_the_origin_root() {
    common::ensure_runtimes();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["--api-key", KEY, "--sandbox-domain", "Sbx.Test"],
        &[],
    );
    let api = Api::new(&server.url, KEY);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let a = api.create_default();
    let b = api.create_default();
    assert_eq!(a.host, format!("http://{}.sbx.test:{port}", a.id));

    let at = |host: &str, method: Method, path: &str, token: &str| {
        api.http
            .request(method, format!("{}{path}", server.url))
            .header("Host", host)
            .bearer_auth(token)
    };
    let host_a = format!("{}.sbx.test:{port}", a.id);
    let reply = api.send(
        at(&host_a, Method::POST, "/execute", &a.token).json(&json!({ "code": "print('from a')" })),
    );
    assert_eq!(reply.expect(200)["stdout"], "from a\n");
    let reply = api.send(at(
        &format!("7777-{}", host_a),
        Method::GET,
        "/files/list?path=/workspace",
        &a.token,
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // B's token on A's host is refused; the control plane is unchanged on the server's host.
    let reply = api
        .send(at(&host_a, Method::POST, "/execute", &b.token).json(&json!({ "code": "print(1)" })));
    assert_eq!(reply.status, 401, "{}", reply.body);
    let listed = api
        .send(api.control(Method::GET, "/v1/sandboxes"))
        .expect(200);
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));

    // WebSockets at the origin root of the sandbox host.
    let mut request = format!("ws://127.0.0.1:{port}/terminal")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Host", host_a.parse().unwrap());
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", a.token).parse().unwrap(),
    );
    let (mut socket, _) = tungstenite::connect(request).expect("websocket on the sandbox host");
    let input = json!({ "type": "input", "data": "echo host-$((40 + 2))\rexit\r" });
    socket.send(Message::text(input.to_string())).unwrap();
    let mut output = String::new();
    while let Ok(message) = socket.read() {
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        match frame["type"].as_str() {
            Some("output") => output.push_str(frame["data"].as_str().unwrap()),
            Some("exit") => break,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert!(output.contains("host-42\r\n"), "{output:?}");
}
