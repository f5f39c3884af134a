//! `serve --tls-cert/--tls-key` and `--sandbox-domain` over real connections: HTTPS with a
//! self-signed certificate (made with `openssl`, checked by Python's `ssl` against it), plain
//! HTTP refused on the TLS port, unusable TLS files refused at start; and a sandbox host
//! (`{id}.DOMAIN`, `{port}-{id}.DOMAIN`) routed to that sandbox's agent API at the origin root,
//! WebSockets included, with another sandbox's token refused there; the remote CLI and
//! `/execute/async` callbacks as HTTPS clients.

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
        // a server certificate, not a CA (webpki refuses a CA as the end entity)
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
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
    wasmbox::tls::install_crypto_provider();
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

    // The remote CLI over HTTPS: trusting the certificate with --cacert it runs code there;
    // without it the unknown issuer is refused before anything is sent.
    let cli = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wasmbox"))
            .args(["run", "--server", &server.url, "--api-key", KEY])
            .args(extra)
            .arg("print(6 * 7)")
            .env_remove("WASMBOX_CACERT")
            .output()
            .expect("wasmbox run")
    };
    let trusted = cli(&["--cacert", &cert]);
    assert!(
        trusted.status.success() && String::from_utf8_lossy(&trusted.stdout).contains("42"),
        "{trusted:?}"
    );
    let untrusted = cli(&[]);
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert_eq!(untrusted.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
    let bad = cli(&["--cacert", &key]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
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

/// `/execute/async` calls back over HTTPS: the server verifies the receiver's certificate
/// against the system's roots (here `SSL_CERT_FILE` names the test's own certificate) and
/// delivers the signed result; a receiver whose certificate it does not trust gets nothing.
#[test]
fn callbacks_are_delivered_over_https_to_trusted_receivers() {
    use std::io::{BufRead, BufReader};
    common::ensure_runtimes();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    // A one-request HTTPS receiver: prints the body it got on one line, answers 200.
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
        print(body.decode(), flush=True)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
while True:
    try: srv.handle_request()
    except Exception as e: print("error", e, file=sys.stderr, flush=True)
"#;
    let mut receiver = Command::new("python3")
        .args(["-c", script, &cert, &key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines.next().unwrap().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let hook = format!("https://localhost:{port}/hook");

    let run_async = |server: &ServerProcess| {
        let api = Api::new(&server.url, KEY);
        let sbx = api.create_default();
        api.send(
            api.agent(&sbx, Method::POST, "/execute/async")
                .json(&json!({
                    "code": "print(6 * 7)", "timeout": 60, "callback_url": hook,
                })),
        )
        .expect(200)
    };
    let hosts = [("WASMBOX_CALLBACK_HOSTS", "localhost")];
    // Not trusted (the system's roots only): the delivery fails and nothing arrives.
    let untrusting = ServerProcess::start(&dir.path().join("a"), &["--api-key", KEY], &hosts);
    run_async(&untrusting);
    assert!(
        rx.recv_timeout(Duration::from_secs(5)).is_err(),
        "delivered to an untrusted certificate"
    );
    drop(untrusting);
    let trusting = ServerProcess::start(
        &dir.path().join("b"),
        &["--api-key", KEY],
        &[hosts[0], ("SSL_CERT_FILE", &cert)],
    );
    let queued = run_async(&trusting);
    let body = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("an https delivery");
    let result: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(result["execution_id"], queued["execution_id"]);
    assert_eq!(result["stdout"], "42\n", "{result}");
    let _ = receiver.kill();
    let _ = receiver.wait();
}
