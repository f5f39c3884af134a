//! Remote mode: the same commands against a running `wasmbox serve`, over its HTTP API.
//!
//! Code runs through the agent routes at `<server>/sandboxes/<id>` with the account key (which
//! the agent accepts), so no token round-trip is needed. HTTP failures become the CLI's exit
//! codes: 401 → 3, unknown sandbox → 4, bad input → 2.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::output::RunReport;
use super::CliError;

/// Where a remote server is and how to authenticate to it.
#[derive(Clone, Debug, Default, Args)]
pub struct RemoteArgs {
    /// Talk to this wasmbox server (e.g. http://127.0.0.1:8080) instead of running in-process.
    #[arg(long, env = "WASMBOX_SERVER", global = true)]
    pub server: Option<String>,

    /// Account API key for --server.
    #[arg(long, env = "WASMBOX_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
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
            Some(server) => Remote::new(server, self.api_key.clone()).map(Some),
        }
    }
}

/// What `wasmbox run` asks a server to execute.
pub struct RemoteRun {
    pub language: String,
    pub code: String,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub timeout: Duration,
    /// Existing sandbox; `None` creates a temporary one and deletes it afterwards.
    pub sandbox: Option<String>,
}

/// A blocking client for one server.
pub struct Remote {
    base: String,
    api_key: Option<String>,
    http: Client,
}

impl Remote {
    fn new(server: &str, api_key: Option<String>) -> Result<Self, CliError> {
        if !server.starts_with("http://") && !server.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--server must be an http:// URL, got '{server}'"
            )));
        }
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
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

    fn send(&self, builder: RequestBuilder) -> Result<Value, CliError> {
        let response = builder.send().map_err(|e| {
            CliError::Other(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        decode(response)
    }

    /// Creates a sandbox; returns the server's sandbox object.
    pub fn create_sandbox(
        &self,
        template: &str,
        env: &BTreeMap<String, String>,
        timeout_seconds: Option<u64>,
    ) -> Result<Value, CliError> {
        let mut body = json!({ "template_name": template, "env_vars": env });
        if let Some(seconds) = timeout_seconds {
            body["timeout_seconds"] = json!(seconds);
        }
        self.send(
            self.request(reqwest::Method::POST, "/v1/sandboxes")
                .json(&body),
        )
    }

    /// The sandbox object for `id`.
    pub fn get_sandbox(&self, id: &str) -> Result<Value, CliError> {
        self.send(self.request(
            reqwest::Method::GET,
            &format!("/v1/sandboxes/{}", segment(id)),
        ))
    }

    /// Every sandbox, following the cursor.
    pub fn list_sandboxes(&self) -> Result<Vec<Value>, CliError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "1000".to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page = self.send(
                self.request(reqwest::Method::GET, "/v1/sandboxes")
                    .query(&query),
            )?;
            all.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) if page["has_more"] == json!(true) => cursor = Some(next.to_string()),
                _ => return Ok(all),
            }
        }
    }

    /// Deletes sandbox `id`.
    pub fn delete_sandbox(&self, id: &str) -> Result<(), CliError> {
        self.send(self.request(
            reqwest::Method::DELETE,
            &format!("/v1/sandboxes/{}", segment(id)),
        ))
        .map(drop)
    }

    /// Runs code as `wasmbox run` does, returning the report to print.
    pub fn run(&self, run: RemoteRun) -> Result<RunReport, CliError> {
        let (id, temporary) = match &run.sandbox {
            Some(id) => {
                self.get_sandbox(id)?;
                (id.clone(), false)
            }
            None => {
                let created = self.create_sandbox("code-interpreter", &BTreeMap::new(), None)?;
                let id = created["id"]
                    .as_str()
                    .ok_or_else(|| {
                        CliError::Other("the server's create response has no id".into())
                    })?
                    .to_string();
                (id, true)
            }
        };
        let result = self.execute(&id, &run);
        if temporary {
            if let Err(e) = self.delete_sandbox(&id) {
                eprintln!("wasmbox: warning: could not delete temporary sandbox {id}: {e}");
            }
        }
        result
    }

    fn execute(&self, id: &str, run: &RemoteRun) -> Result<RunReport, CliError> {
        let mut body = json!({
            "language": run.language,
            "code": run.code,
            "timeout": run.timeout.as_secs_f64(),
            "env": run.env,
        });
        if let Some(workdir) = &run.workdir {
            body["workdir"] = json!(workdir);
        }
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("/sandboxes/{}/execute", segment(id)),
            )
            .timeout(run.timeout + Duration::from_secs(60))
            .json(&body);
        let result = self.send(request)?;
        let text = |key: &str| result[key].as_str().unwrap_or_default().to_string();
        let flag = |key: &str| result[key].as_bool().unwrap_or(false);
        Ok(RunReport {
            stdout: text("stdout"),
            stderr: text("stderr"),
            exit_code: result["exit_code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(1),
            success: flag("success"),
            execution_time: result["execution_time"].as_f64().unwrap_or(0.0),
            timed_out: flag("timed_out"),
            stdout_truncated: flag("stdout_truncated"),
            stderr_truncated: flag("stderr_truncated"),
            language: result["language"]
                .as_str()
                .unwrap_or(&run.language)
                .to_string(),
        })
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

/// The JSON body of a success, or the error mapped to the CLI's exit codes.
fn decode(response: Response) -> Result<Value, CliError> {
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["message"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .or_else(|| body["error"].as_str())
        .map_or_else(|| format!("server answered {status}"), str::to_string);
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Auth(message),
        StatusCode::NOT_FOUND => CliError::NotFound(message),
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::PAYLOAD_TOO_LARGE => CliError::Usage(message),
        _ => CliError::Other(message),
    })
}
