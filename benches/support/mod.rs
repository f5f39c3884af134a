//! What several benches share: the real server started inside the bench process, a blocking
//! JSON client for it, and percentiles.

// Each bench uses part of it (cold_start only the server).
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use wasmbox::api::{ConnectionLimits, Server, ServerConfig};
use wasmbox::config::Settings;

/// The `q` quantile of `samples` (sorted in place; zero when there are none).
pub fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

/// The account key the bench servers accept.
pub const API_KEY: &str = "bench-key";

/// `wasmbox serve` on 127.0.0.1 (an ephemeral port) on a runtime of its own; stopped on drop.
pub struct BenchServer {
    runtime: tokio::runtime::Runtime,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<Result<(), wasmbox::api::ServeError>>>,
}

impl BenchServer {
    pub fn start(settings: Settings) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-server")
            .build()?;
        let server = runtime
            .block_on(Server::bind(ServerConfig {
                settings,
                listen: "127.0.0.1:0".parse()?,
                api_key: Some(API_KEY.into()),
                public_url: None,
                tls: None,
                sandbox_domain: None,
                queue_wait: Duration::from_secs(60),
                connections: ConnectionLimits::default(),
            }))
            .context("starting the server")?;
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            runtime,
            base,
            stop: Some(stop),
            serving: Some(serving),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Stops the server, failing if it failed or does not stop within 30 s.
    pub fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(serving) = self.serving.take() else {
            return Ok(());
        };
        match self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), serving).await })
        {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => anyhow::bail!("server failed: {e}"),
            Ok(Err(e)) => anyhow::bail!("server task failed: {e}"),
            Err(_) => anyhow::bail!("server did not stop within 30 s"),
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = self.runtime.block_on(serving);
        }
    }
}

/// A sandbox the bench made: its public host and token.
pub struct BenchSandbox {
    pub host: String,
    pub token: String,
}

/// One keep-alive connection driven on the bench thread (no hop to a runtime thread of its
/// own, which `reqwest::blocking` would add: ~0.3 ms per call).
pub struct BenchClient {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl BenchClient {
    pub fn new(server: &BenchServer) -> Result<Self> {
        wasmbox::tls::install_crypto_provider();
        Ok(Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: reqwest::Client::builder().tcp_nodelay(true).build()?,
            base: server.base().to_string(),
        })
    }

    fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        self.runtime.block_on(async {
            let response = request.send().await?;
            ensure!(response.status().is_success(), "{}", response.status());
            Ok(response.json().await?)
        })
    }

    /// `POST /v1/sandboxes` with `template`.
    pub fn create(&self, template: &str) -> Result<BenchSandbox> {
        let created = self.send(
            self.client
                .post(format!("{}/v1/sandboxes", self.base))
                .header("X-API-Key", API_KEY)
                .json(&json!({ "template_name": template })),
        )?;
        let field = |name: &str| -> Result<String> {
            Ok(created[name]
                .as_str()
                .context(name.to_string())?
                .to_string())
        };
        Ok(BenchSandbox {
            host: field("public_host")?,
            token: field("auth_token")?,
        })
    }

    /// Runs `code` (default language, 60 s timeout) through the agent route `path`
    /// (`/execute`, `/execute/ipython`); the run must succeed.
    pub fn run_code(&self, sandbox: &BenchSandbox, path: &str, code: &str) -> Result<Value> {
        let body = self.post(sandbox, path, json!({ "code": code, "timeout": 60 }))?;
        ensure!(body["success"] == true, "{path} {code:?}: {body}");
        Ok(body)
    }

    /// POSTs `body` to the sandbox's agent route `path`; the answer must be a 2xx.
    pub fn post(&self, sandbox: &BenchSandbox, path: &str, body: Value) -> Result<Value> {
        self.send(
            self.client
                .post(format!("{}{path}", sandbox.host))
                .bearer_auth(&sandbox.token)
                .json(&body),
        )
    }
}
