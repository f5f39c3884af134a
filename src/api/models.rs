//! Wire types. Requests accept both spellings the clients use (`workdir`/`working_dir`, …);
//! responses use the field names and JSON types the official SDKs parse (string ids, integer
//! `organization_id`, ISO-8601 timestamps ending in `Z`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use crate::engine::{DisplayOutput, OutputKind};

/// ISO-8601 in UTC with a `Z`, to the second (every Python `fromisoformat` parses it).
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Environment variables as sent by clients; validated with [`validate_env`].
pub type EnvVars = BTreeMap<String, String>;

/// Most variables one environment (a sandbox's, or one request's) may hold. A sandbox's
/// environment is persisted and rewritten on every change, and copied into every execution, so
/// it has to stay small; these caps are far above what programs need.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 256;
/// Longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 64 << 10;
/// Most bytes of names plus values in one environment.
pub const MAX_ENV_TOTAL_BYTES: usize = 256 << 10;

/// An environment over one of the size caps.
#[derive(Debug, thiserror::Error)]
pub enum EnvLimitError {
    #[error("more than {MAX_ENV_VARS} environment variables (limit {MAX_ENV_VARS})")]
    TooManyVars,
    #[error("an environment variable name is longer than {MAX_ENV_NAME_BYTES} bytes (limit {MAX_ENV_NAME_BYTES})")]
    NameTooLong,
    #[error("environment variable '{0}' is longer than {MAX_ENV_VALUE_BYTES} bytes (limit {MAX_ENV_VALUE_BYTES})")]
    ValueTooLong(String),
    #[error("environment variables total more than {MAX_ENV_TOTAL_BYTES} bytes (limit {MAX_ENV_TOTAL_BYTES})")]
    TooLarge,
}

/// Running totals of an environment checked against the caps one variable at a time, so an
/// oversized request is refused before it is all in memory.
#[derive(Default)]
struct EnvBudget {
    vars: usize,
    bytes: usize,
}

impl EnvBudget {
    fn add(&mut self, name: &str, value: &str) -> Result<(), EnvLimitError> {
        self.vars += 1;
        self.bytes = self.bytes.saturating_add(name.len() + value.len());
        if self.vars > MAX_ENV_VARS {
            Err(EnvLimitError::TooManyVars)
        } else if name.len() > MAX_ENV_NAME_BYTES {
            Err(EnvLimitError::NameTooLong)
        } else if value.len() > MAX_ENV_VALUE_BYTES {
            Err(EnvLimitError::ValueTooLong(name.to_string()))
        } else if self.bytes > MAX_ENV_TOTAL_BYTES {
            Err(EnvLimitError::TooLarge)
        } else {
            Ok(())
        }
    }
}

/// Checks a whole environment (e.g. a sandbox's after a merge) against the size caps.
pub fn check_env_limits(env: &EnvVars) -> Result<(), EnvLimitError> {
    let mut budget = EnvBudget::default();
    env.iter()
        .try_for_each(|(name, value)| budget.add(name, value))
}

/// Deserializes an environment object, failing as soon as it passes a size cap (the error
/// names the field through `serde_path_to_error`).
fn bounded_env<'de, D: Deserializer<'de>>(deserializer: D) -> Result<EnvVars, D::Error> {
    struct BoundedEnv;

    impl<'de> Visitor<'de> for BoundedEnv {
        type Value = EnvVars;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvVars, A::Error> {
            let mut env = EnvVars::new();
            let mut budget = EnvBudget::default();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                budget.add(&name, &value).map_err(de::Error::custom)?;
                env.insert(name, value);
            }
            Ok(env)
        }
    }

    deserializer.deserialize_map(BoundedEnv)
}

fn optional_bounded_env<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<EnvVars>, D::Error> {
    #[derive(Deserialize)]
    struct Bounded(#[serde(deserialize_with = "bounded_env")] EnvVars);
    Ok(Option::<Bounded>::deserialize(deserializer)?.map(|b| b.0))
}

/// A string a program receives as code or argv. WASI passes those as C strings, so a NUL would
/// silently cut everything after it off; it is refused instead.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct NulFree(String);

impl TryFrom<String> for NulFree {
    type Error = &'static str;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.contains('\0') {
            Err("must not contain NUL characters (\\u0000)")
        } else {
            Ok(NulFree(text))
        }
    }
}

fn nul_free<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(NulFree::deserialize(deserializer)?.0)
}

fn optional_nul_free_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    let list = Option::<Vec<NulFree>>::deserialize(deserializer)?;
    Ok(list.map(|items| items.into_iter().map(|item| item.0).collect()))
}

/// Rejects names and values a process environment cannot hold.
pub fn validate_env(env: &EnvVars) -> Result<(), ApiError> {
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "invalid environment variable name '{}'",
                name.escape_default()
            ))
            .with_detail("field", "env_vars"));
        }
        if value.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "environment variable '{name}' contains a NUL byte"
            ))
            .with_detail("field", "env_vars"));
        }
    }
    Ok(())
}

/// `POST /v1/sandboxes`. `region` and `internet_access` are tolerated and ignored (one region;
/// sandboxes never have network access), like any other unknown field.
#[derive(Debug, Default, Deserialize)]
pub struct CreateSandboxRequest {
    #[serde(default, alias = "template")]
    pub template_name: Option<String>,
    /// Sent as a string by the SDKs; a number is tolerated.
    #[serde(default)]
    pub template_id: Option<Value>,
    #[serde(default, alias = "timeout")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, alias = "env", deserialize_with = "optional_bounded_env")]
    pub env_vars: Option<EnvVars>,
}

/// `PUT /v1/sandboxes/{id}/timeout`.
#[derive(Debug, Deserialize)]
pub struct SetTimeoutRequest {
    #[serde(alias = "timeout")]
    pub timeout_seconds: u64,
}

/// `GET /v1/sandboxes` query (`region` is ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub status: Option<String>,
}

/// `GET /v1/templates` query.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateQuery {
    pub category: Option<String>,
    pub language: Option<String>,
}

/// Resources as the Python SDK reads them: all three keys or none.
#[derive(Debug, Serialize)]
pub struct Resources {
    pub vcpu: u32,
    pub memory_mb: u64,
    /// 0: disk use is not limited.
    pub disk_mb: u64,
}

/// A sandbox as the control plane reports it.
#[derive(Debug, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub sandbox_id: String,
    pub object: &'static str,
    pub status: String,
    pub template_name: String,
    pub template_id: String,
    /// Base URL of this sandbox's agent API.
    pub public_host: String,
    pub direct_url: String,
    pub region: &'static str,
    pub organization_id: i64,
    pub resources: Resources,
    pub internet_access: bool,
    pub live_mode: bool,
    pub timeout_seconds: Option<u64>,
    pub created_at: String,
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Serialize)]
pub struct SandboxList {
    pub object: &'static str,
    pub data: Vec<SandboxInfo>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// A fresh sandbox token.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub id: String,
    pub sandbox_id: String,
    pub auth_token: String,
    pub token_expires_at: String,
}

/// A template: every sandbox has every runtime, so templates only label intent.
#[derive(Clone, Debug, Serialize)]
pub struct Template {
    pub id: &'static str,
    pub name: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub language: &'static str,
    pub features: &'static [&'static str],
    pub tags: &'static [&'static str],
    pub is_active: bool,
    pub is_public: bool,
    pub status: &'static str,
    pub object: &'static str,
}

/// `POST /execute`.
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    #[serde(deserialize_with = "nul_free")]
    pub code: String,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default, alias = "working_dir", alias = "cwd")]
    pub workdir: Option<String>,
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<f64>,
    #[serde(default, alias = "env_vars", deserialize_with = "optional_bounded_env")]
    pub env: Option<EnvVars>,
}

/// `POST /commands/run`: `{command, args}` runs argv, `{command}` alone is a shell line.
#[derive(Debug, Deserialize)]
pub struct CommandRequest {
    #[serde(deserialize_with = "nul_free")]
    pub command: String,
    #[serde(default, deserialize_with = "optional_nul_free_list")]
    pub args: Option<Vec<String>>,
    #[serde(default, alias = "working_dir", alias = "cwd")]
    pub workdir: Option<String>,
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<f64>,
    #[serde(default, alias = "env_vars", deserialize_with = "optional_bounded_env")]
    pub env: Option<EnvVars>,
}

/// The result of `/execute` and `/commands/run`. Never carries rich-output keys (`png`, `html`,
/// `json`, `result`): `hopx -o json run` crashes on them.
#[derive(Debug, Serialize)]
pub struct ExecutionResponse {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// Seconds.
    pub execution_time: f64,
    pub success: bool,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdout_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stderr_truncated: bool,
    pub language: String,
    pub timestamp: String,
    /// Rich outputs, only when there are any.
    #[serde(flatten)]
    pub rich: RichFields,
}

/// Rich outputs as the official clients read them (PROTOCOL.md §4.3): the first of each kind
/// as a top-level key, `result` (a cell's value as text, read by the JS client), and every
/// output in order in `rich_outputs`. Each key is left out when there is nothing for it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RichFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataframe: Option<Value>,
    /// Read by the JS client's `runIpython` (not by `run_code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
    /// Read by the JS client's `runIpython`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rich_outputs: Vec<RichOutput>,
}

/// One entry of `rich_outputs`: `{type, data: {mime: value}, metadata, kind}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RichOutput {
    /// The richest mime type of the output.
    #[serde(rename = "type")]
    pub kind: String,
    /// Every representation, keyed by mime type.
    pub data: serde_json::Map<String, Value>,
    pub metadata: Value,
    /// `display_data` or `execute_result`.
    #[serde(rename = "output_type")]
    pub output_type: String,
}

impl RichFields {
    /// From an execution's outputs: a cell's plain-text value only sets `result`; everything
    /// with a richer representation, and every `display()` call, is listed.
    pub fn from_outputs(outputs: &[DisplayOutput]) -> Self {
        let mut rich = Self::default();
        for output in outputs {
            let is_result = output.kind == OutputKind::ExecuteResult;
            if is_result {
                rich.result = output.text().map(str::to_string);
            }
            let data = &output.data;
            let string = |mime: &str| data.get(mime).and_then(Value::as_str).map(str::to_string);
            if rich.png.is_none() {
                rich.png = string("image/png");
            }
            if rich.html.is_none() {
                rich.html = string("text/html");
            }
            if rich.svg.is_none() {
                rich.svg = string("image/svg+xml");
            }
            if rich.markdown.is_none() {
                rich.markdown = string("text/markdown");
            }
            if rich.json.is_none() && output.primary_type() == "application/json" {
                rich.json = data.get("application/json").cloned();
            }
            if rich.dataframe.is_none() {
                rich.dataframe = data.get("application/vnd.dataframe+json").cloned();
            }
            let plain = output.primary_type() == "text/plain";
            if !is_result || !plain {
                rich.rich_outputs.push(RichOutput {
                    kind: output.primary_type().to_string(),
                    data: data.clone(),
                    metadata: output.metadata.clone(),
                    output_type: match output.kind {
                        OutputKind::DisplayData => "display_data",
                        OutputKind::ExecuteResult => "execute_result",
                    }
                    .into(),
                });
            }
        }
        rich
    }
}

/// `PUT`/`PATCH /env`.
#[derive(Debug, Deserialize)]
pub struct EnvUpdate {
    #[serde(alias = "env", deserialize_with = "bounded_env")]
    pub env_vars: EnvVars,
    /// PATCH merges unless this is `false`.
    #[serde(default)]
    pub merge: Option<bool>,
}

/// `{"env_vars": {...}}`.
#[derive(Debug, Serialize)]
pub struct EnvResponse {
    pub env_vars: EnvVars,
}

/// `?path=` of the file endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct PathQuery {
    pub path: Option<String>,
    pub encoding: Option<String>,
}

/// `POST /files/write`.
#[derive(Debug, Deserialize)]
pub struct WriteFileRequest {
    pub path: String,
    pub content: String,
    /// Octal permission string such as `"0644"` (an integer is taken as the mode bits).
    #[serde(default)]
    pub mode: Option<Value>,
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// `"base64"` for binary content; text otherwise.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// `POST /files/mkdir`.
#[derive(Debug, Deserialize)]
pub struct MkdirRequest {
    pub path: String,
}

/// One entry of `/files/list`, with both spellings of each field.
#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub is_directory: bool,
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    /// `ls -l` style, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// Octal, e.g. `0644`.
    pub mode: String,
    pub modified_time: Option<String>,
    pub modified: Option<String>,
}
