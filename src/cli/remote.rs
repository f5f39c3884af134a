//! Remote mode: the same commands against a running `wasmbox serve`, over its HTTP API.
//!
//! Requests and responses are the server's own wire types ([`wasmbox::api::models`]), so the
//! client and the server cannot disagree on a field. Code runs through the agent routes at
//! `<server>/sandboxes/<id>` with the account key (which the agent accepts), so no token
//! round-trip is needed. HTTP failures become the CLI's exit codes: 401 → 3, unknown sandbox
//! → 4, bad input → 2.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use wasmbox::api::models::{
    CreateSandboxRequest, ErrorSummary, ExecuteRequest, ExecutionResponse, ListQuery, SandboxInfo,
    SandboxList,
};

use super::backend::RunSpec;
use super::CliError;

/// Largest page the server hands out.
const PAGE: usize = 1000;

/// Where a remote server is and how to authenticate to it.
#[derive(Clone, Debug, Default, Args)]
pub struct RemoteArgs {
    /// Talk to this wasmbox server (e.g. http://127.0.0.1:8080) instead of running in-process.
    #[arg(long, env = "WASMBOX_SERVER", global = true)]
    pub server: Option<String>,

    /// Account API key for --server.
    #[arg(long, env = "WASMBOX_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// PEM file of certificates to trust for an https:// --server, besides the system's (a
    /// self-signed `serve --tls-cert`).
    #[arg(long, env = "WASMBOX_CACERT", value_name = "FILE", global = true)]
    pub cacert: Option<std::path::PathBuf>,
}

impl RemoteArgs {
    /// A client when a server was given.
    pub fn client(&self) -> Result<Option<Remote>, CliError> {
        match self
            .server
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => Ok(None),
            Some(server) => {
                Remote::new(server, self.api_key.clone(), self.cacert.as_deref()).map(Some)
            }
        }
    }
}

/// A blocking client for one server.
pub struct Remote {
    base: String,
    api_key: Option<String>,
    http: Client,
}

impl Remote {
    fn new(
        server: &str,
        api_key: Option<String>,
        cacert: Option<&std::path::Path>,
    ) -> Result<Self, CliError> {
        if !server.starts_with("http://") && !server.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--server must be an http:// or https:// URL, got '{server}'"
            )));
        }
        wasmbox::tls::install_crypto_provider();
        let mut builder = Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = cacert {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("--cacert {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CliError::Usage(format!(
                    "--cacert {}: no PEM certificates: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(CliError::Usage(format!(
                    "--cacert {}: no PEM certificates",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Other(format!("cannot create an HTTP client: {e}")))?;
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => builder.header("X-API-Key", key),
            None => builder,
        }
    }

    fn send<T: DeserializeOwned>(&self, builder: RequestBuilder) -> Result<T, CliError> {
        let response = builder.send().map_err(|e| {
            CliError::Other(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        decode(response)
    }

    /// Creates a sandbox.
    pub fn create_sandbox(
        &self,
        template: &str,
        env: BTreeMap<String, String>,
        timeout_seconds: Option<u64>,
    ) -> Result<SandboxInfo, CliError> {
        let body = CreateSandboxRequest {
            template_name: Some(template.to_string()),
            template_id: None,
            timeout_seconds,
            env_vars: Some(env),
        };
        self.send(
            self.request(reqwest::Method::POST, "/v1/sandboxes")
                .json(&body),
        )
    }

    /// The sandbox `id`.
    pub fn get_sandbox(&self, id: &str) -> Result<SandboxInfo, CliError> {
        self.send(self.request(
            reqwest::Method::GET,
            &format!("/v1/sandboxes/{}", segment(id)),
        ))
    }

    /// Every sandbox, following the cursor.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>, CliError> {
        let mut all = Vec::new();
        let mut query = ListQuery {
            limit: Some(PAGE),
            ..ListQuery::default()
        };
        loop {
            let page: SandboxList = self.send(
                self.request(reqwest::Method::GET, "/v1/sandboxes")
                    .query(&query),
            )?;
            all.extend(page.data);
            match page.next_cursor {
                Some(next) if page.has_more => query.cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Deletes sandbox `id`.
    pub fn delete_sandbox(&self, id: &str) -> Result<(), CliError> {
        self.send::<serde::de::IgnoredAny>(self.request(
            reqwest::Method::DELETE,
            &format!("/v1/sandboxes/{}", segment(id)),
        ))
        .map(drop)
    }

    /// Runs code as `wasmbox run` does: in `run.sandbox`, or in a temporary sandbox deleted
    /// afterwards.
    pub fn run(&self, run: RunSpec) -> Result<ExecutionResponse, CliError> {
        let (id, temporary) = match &run.sandbox {
            Some(id) => {
                self.get_sandbox(id)?;
                (id.clone(), false)
            }
            None => {
                let template = run.template.as_deref().unwrap_or("code-interpreter");
                (
                    self.create_sandbox(template, BTreeMap::new(), None)?.id,
                    true,
                )
            }
        };
        let result = self.execute(&id, run);
        if temporary {
            if let Err(e) = self.delete_sandbox(&id) {
                eprintln!("wasmbox: warning: could not delete temporary sandbox {id}: {e}");
            }
        }
        result
    }

    fn execute(&self, id: &str, run: RunSpec) -> Result<ExecutionResponse, CliError> {
        let run = run.request;
        let body = ExecuteRequest {
            code: run.code,
            language: Some(run.language.name().to_string()),
            workdir: run.workdir,
            timeout: Some(run.timeout.as_secs_f64()),
            env: Some(run.env),
            name: None,
        };
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("/sandboxes/{}/execute", segment(id)),
            )
            .timeout(run.timeout + Duration::from_secs(60))
            .json(&body);
        self.send(request)
    }
}

/// A path segment with the characters that would change the URL's meaning escaped.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body of a success as `T`, or the error mapped to the CLI's exit codes.
fn decode<T: DeserializeOwned>(response: Response) -> Result<T, CliError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .map_err(|e| CliError::Other(format!("reading the server's answer failed: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Other(format!(
                "the server's answer is not what wasmbox expects: {e}"
            ))
        });
    }
    let message = serde_json::from_slice::<ErrorSummary>(&bytes)
        .map_or_else(|_| format!("server answered {status}"), |e| e.message);
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Auth(message),
        StatusCode::NOT_FOUND => CliError::NotFound(message),
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE => CliError::Usage(message),
        _ => CliError::Other(message),
    })
}
