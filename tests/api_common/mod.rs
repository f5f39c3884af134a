//! Helpers for the API tests: the real `wasmbox serve` binary on an ephemeral port (stopped
//! with SIGTERM on drop), and a small blocking HTTP client that speaks the API.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::{json, Value};

/// A running `wasmbox serve` child process.
pub struct ServerProcess {
    child: Child,
    pub url: String,
    /// Everything the server wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `wasmbox serve --listen 127.0.0.1:0 --data-dir DATA ARGS…` with `envs` and waits
    /// for its "listening on" line.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_with_fd_limit(data_dir, args, envs, None)
    }

    /// [`Self::start`] with the server's open-file limit (soft and hard) set to `nofile`.
    pub fn start_with_fd_limit(
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmbox"));
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            let rlimit = rustix::process::Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            };
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, rlimit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("WASMBOX_API_KEY")
            .env("WASMBOX_LOG", "info")
            // These suites test the plain runtimes (their limits are sized for them): python in
            // `code-interpreter` stays CPython 3.13 unless a test names the data templates
            // itself (tests/data_stack.rs, and the official clients with the real default).
            .env("WASMBOX_DATA_TEMPLATES", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting wasmbox serve");
        let stderr = child.stderr.take().expect("stderr pipe");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        Self { child, url, log }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib << 10)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A blocking client for one server and account key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: String,
    pub http: Client,
}

/// A response's status, `X-Request-ID` header and JSON body (`Null` if not JSON).
pub struct Reply {
    pub status: u16,
    pub request_id: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    fn from(response: Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            request_id,
            headers,
            body,
        }
    }

    /// Asserts the status, printing the body otherwise.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }
}

/// A created sandbox: id, token and agent base URL.
pub struct Sbx {
    pub id: String,
    pub token: String,
    pub host: String,
    pub info: Value,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Self {
        wasmbox::tls::install_crypto_provider();
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
        }
    }

    /// A request to `base + path` with the account key.
    pub fn control(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", &self.key)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub fn send(&self, request: RequestBuilder) -> Reply {
        Reply::from(request.send().expect("request failed"))
    }

    pub fn create(&self, body: Value) -> Sbx {
        let info = self
            .send(self.control(Method::POST, "/v1/sandboxes").json(&body))
            .expect(201);
        Sbx {
            id: info["id"].as_str().expect("id").to_string(),
            token: info["auth_token"].as_str().expect("auth_token").to_string(),
            host: info["public_host"]
                .as_str()
                .expect("public_host")
                .to_string(),
            info,
        }
    }

    pub fn create_default(&self) -> Sbx {
        self.create(json!({ "template_name": "code-interpreter" }))
    }

    /// A request to the sandbox's agent with its token.
    /// An existing sandbox with a fresh token (after a server restart, say).
    pub fn reconnect(&self, id: &str) -> Sbx {
        let info = self
            .send(self.control(Method::GET, &format!("/v1/sandboxes/{id}")))
            .expect(200);
        let token = self
            .send(self.control(Method::POST, &format!("/v1/sandboxes/{id}/token/refresh")))
            .expect(200);
        Sbx {
            id: id.to_string(),
            token: token["auth_token"]
                .as_str()
                .expect("auth_token")
                .to_string(),
            host: info["public_host"]
                .as_str()
                .expect("public_host")
                .to_string(),
            info,
        }
    }

    pub fn agent(&self, sbx: &Sbx, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", sbx.host))
            .bearer_auth(&sbx.token)
    }

    /// `POST /execute` with `body`, expecting 200.
    pub fn execute(&self, sbx: &Sbx, body: Value) -> Value {
        self.send(self.agent(sbx, Method::POST, "/execute").json(&body))
            .expect(200)
    }

    pub fn python(&self, sbx: &Sbx, code: &str) -> Value {
        self.execute(sbx, json!({ "language": "python", "code": code }))
    }

    pub fn delete(&self, sbx: &Sbx) {
        self.send(self.control(Method::DELETE, &format!("/v1/sandboxes/{}", sbx.id)))
            .expect(200);
    }
}

/// The `stdout` of an execution result.
pub fn stdout(result: &Value) -> &str {
    result["stdout"].as_str().unwrap_or_default()
}
