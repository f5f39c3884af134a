//! Wire types. Requests accept both spellings the clients use (`workdir`/`working_dir`, …);
//! responses use the field names and JSON types the official SDKs parse (string ids, integer
//! `organization_id`, ISO-8601 timestamps ending in `Z`).
//!
//! The CLI's remote client speaks the API through these same types: it serialises the requests
//! and deserialises the responses, so the two edges cannot drift apart.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::ExecResult;
use crate::runtimes::Language;
use crate::sandbox::{Sandbox, SandboxStatus};

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
    /// More than [`MAX_ENV_VARS`] variables.
    #[error("more than {MAX_ENV_VARS} environment variables (limit {MAX_ENV_VARS})")]
    TooManyVars,
    /// A name longer than [`MAX_ENV_NAME_BYTES`].
    #[error("an environment variable name is longer than {MAX_ENV_NAME_BYTES} bytes (limit {MAX_ENV_NAME_BYTES})")]
    NameTooLong,
    /// The named variable's value is longer than [`MAX_ENV_VALUE_BYTES`].
    #[error("environment variable '{0}' is longer than {MAX_ENV_VALUE_BYTES} bytes (limit {MAX_ENV_VALUE_BYTES})")]
    ValueTooLong(String),
    /// Names and values together exceed [`MAX_ENV_TOTAL_BYTES`].
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
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct CreateSandboxRequest {
    /// The template to create from; `template_id` wins when both are given.
    #[serde(default, alias = "template", skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    /// Sent as a string by the SDKs; a number is tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<Value>,
    /// Lifetime in seconds; absent or 0 keeps the sandbox until it is deleted.
    #[serde(default, alias = "timeout", skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Environment every execution in the sandbox starts with.
    #[serde(
        default,
        alias = "env",
        deserialize_with = "optional_bounded_env",
        skip_serializing_if = "Option::is_none"
    )]
    pub env_vars: Option<EnvVars>,
}

/// `PUT /v1/sandboxes/{id}/timeout`.
#[derive(Debug, Deserialize)]
pub struct SetTimeoutRequest {
    /// The sandbox expires this many seconds from now.
    #[serde(alias = "timeout")]
    pub timeout_seconds: u64,
}

/// `GET /v1/sandboxes` query (`region` is ignored).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ListQuery {
    /// Page size (1 to 1000; 100 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Only sandboxes in this state (`running`, `paused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `GET /v1/templates` query.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateQuery {
    /// Only templates in this category.
    pub category: Option<String>,
    /// Only templates for this language.
    pub language: Option<String>,
}

/// Resources as the Python SDK reads them: all three keys or none.
#[derive(Debug, Deserialize, Serialize)]
pub struct Resources {
    /// Virtual CPUs (always 1: one execution runs on one thread).
    pub vcpu: u32,
    /// Memory cap of one execution.
    pub memory_mb: u64,
    /// 0: disk use is not limited.
    pub disk_mb: u64,
}

/// A sandbox as the control plane reports it.
#[derive(Debug, Deserialize, Serialize)]
pub struct SandboxInfo {
    /// The sandbox id.
    pub id: String,
    /// The id again (the JS SDK reads this spelling).
    pub sandbox_id: String,
    /// Always `sandbox`.
    pub object: String,
    /// Whether it accepts executions.
    pub status: SandboxStatus,
    /// The template it was created from.
    pub template_name: String,
    /// That template's id.
    pub template_id: String,
    /// Base URL of this sandbox's agent API; absent only in the CLI's local mode, where no
    /// server runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// The same URL (the JS SDK's spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_url: Option<String>,
    /// Always `local`: one region.
    pub region: String,
    /// Always 1: one organisation.
    pub organization_id: i64,
    /// What one execution may use.
    pub resources: Resources,
    /// Always false: guests have no network.
    pub internet_access: bool,
    /// Always false.
    pub live_mode: bool,
    /// The lifetime asked for at creation (or by the last timeout update).
    pub timeout_seconds: Option<u64>,
    /// ISO-8601 creation time.
    pub created_at: String,
    /// ISO-8601 expiry; `None` keeps the sandbox until it is deleted.
    pub expires_at: Option<String>,
    /// The item's exact list position, only in the pages cluster nodes send each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// A sandbox token for the agent API (on create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// When `auth_token` expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
}

impl SandboxInfo {
    /// The API's view of `sandbox`, whose agent API is at `public_host` (`None`: no server),
    /// with `memory_mb` the memory cap of one execution.
    pub fn new(sandbox: &Sandbox, public_host: Option<String>, memory_mb: u64) -> Self {
        SandboxInfo {
            id: sandbox.id.clone(),
            sandbox_id: sandbox.id.clone(),
            object: "sandbox".to_string(),
            status: sandbox.status,
            template_name: sandbox.template.clone(),
            // Every template's id is its name.
            template_id: sandbox.template.clone(),
            direct_url: public_host.clone(),
            public_host,
            region: "local".to_string(),
            organization_id: 1,
            resources: Resources {
                vcpu: 1,
                memory_mb,
                disk_mb: 0,
            },
            internet_access: false,
            live_mode: false,
            timeout_seconds: sandbox.timeout_seconds,
            created_at: iso(sandbox.created_at),
            expires_at: sandbox.expires_at.map(iso),
            auth_token: None,
            token_expires_at: None,
            cursor: None,
        }
    }
}

/// `GET /v1/sandboxes`.
#[derive(Debug, Deserialize, Serialize)]
pub struct SandboxList {
    /// Always `list`.
    pub object: String,
    /// This page, oldest first.
    pub data: Vec<SandboxInfo>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The `cursor` for the next page when `has_more`.
    pub next_cursor: Option<String>,
}

/// A fresh sandbox token.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The sandbox id.
    pub id: String,
    /// The id again (the JS SDK's spelling).
    pub sandbox_id: String,
    /// The token (a JWT) the agent API accepts for this sandbox.
    pub auth_token: String,
    /// ISO-8601 expiry of the token.
    pub token_expires_at: String,
}

/// A template: every sandbox has every runtime, so templates only label intent.
#[derive(Clone, Debug, Serialize)]
pub struct Template {
    /// Stable id (the same as `name`).
    pub id: &'static str,
    /// What `template_name` says to create from it.
    pub name: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// One line about what it is for.
    pub description: &'static str,
    /// Always `development`.
    pub category: &'static str,
    /// The language it leans to (every sandbox runs every language).
    pub language: &'static str,
    /// What sandboxes made from it can do.
    pub features: &'static [&'static str],
    /// Search tags.
    pub tags: &'static [&'static str],
    /// Always true.
    pub is_active: bool,
    /// Always true.
    pub is_public: bool,
    /// Always `active`.
    pub status: &'static str,
    /// Always `template`.
    pub object: &'static str,
}

/// `POST /execute`.
#[derive(Debug, Deserialize, Serialize)]
pub struct ExecuteRequest {
    /// The program text.
    #[serde(deserialize_with = "nul_free")]
    pub code: String,
    /// Any alias [`Language`] parses; Python when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Working directory inside the sandbox (created if missing).
    #[serde(
        default,
        alias = "working_dir",
        alias = "cwd",
        skip_serializing_if = "Option::is_none"
    )]
    pub workdir: Option<String>,
    /// Seconds; capped at the server's maximum.
    #[serde(
        default,
        alias = "timeout_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<f64>,
    /// Variables for this execution only (over the sandbox's).
    #[serde(
        default,
        alias = "env_vars",
        deserialize_with = "optional_bounded_env",
        skip_serializing_if = "Option::is_none"
    )]
    pub env: Option<EnvVars>,
    /// A name for a background run (`/execute/background`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /commands/run`: `{command, args}` runs argv, `{command}` alone is a shell line.
#[derive(Debug, Deserialize)]
pub struct CommandRequest {
    /// The program, or a whole shell line when `args` is absent.
    #[serde(deserialize_with = "nul_free")]
    pub command: String,
    /// Arguments of `command`.
    #[serde(default, deserialize_with = "optional_nul_free_list")]
    pub args: Option<Vec<String>>,
    /// Working directory inside the sandbox (created if missing).
    #[serde(default, alias = "working_dir", alias = "cwd")]
    pub workdir: Option<String>,
    /// Seconds; capped at the server's maximum.
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<f64>,
    /// Variables for this command only (over the sandbox's).
    #[serde(default, alias = "env_vars", deserialize_with = "optional_bounded_env")]
    pub env: Option<EnvVars>,
    /// A name for a background run (`/commands/background`).
    #[serde(default)]
    pub name: Option<String>,
}

/// The result of `/execute`, `/execute/ipython` and `/commands/run`, and what `wasmbox run -o
/// json` prints. Rich-output keys appear only when there is rich output (`hopx -o json run`
/// crashes on them, so a plain run must not carry them).
#[derive(Debug, Deserialize, Serialize)]
pub struct ExecutionResponse {
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error, with a note when the host stopped the program.
    pub stderr: String,
    /// The program's exit status (124 timed out, 137 memory limit, 134 crashed).
    pub exit_code: i32,
    /// Seconds.
    pub execution_time: f64,
    /// Exited with status 0.
    pub success: bool,
    /// Stopped by its time (or fuel) budget.
    pub timed_out: bool,
    /// Standard output went over the cap and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdout_truncated: bool,
    /// Standard error went over the cap and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stderr_truncated: bool,
    /// The language's canonical name.
    pub language: String,
    /// ISO-8601 time the result was made.
    pub timestamp: String,
    /// What the run used (wall time, peak memory, bytes written), for billing and limits.
    #[serde(default)]
    pub resources: ResourceReport,
    /// Rich outputs, only when there are any.
    #[serde(flatten)]
    pub rich: RichFields,
}

/// A run's resource use as reported to clients: its wall time and the engine's figures.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ResourceReport {
    /// Wall-clock time of the run, milliseconds.
    pub wall_time_ms: f64,
    /// Peak linear memory and bytes written (`peak_memory_bytes`, `stdout_bytes`,
    /// `stderr_bytes`).
    #[serde(flatten)]
    pub usage: crate::engine::ResourceUsage,
}

/// Rich outputs as the official clients read them (PROTOCOL.md §4.3): the first of each kind
/// as a top-level key, `result` (a cell's value as text, read by the JS client), and every
/// output in order in `rich_outputs`. Each key is left out when there is nothing for it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RichFields {
    /// The first `image/png`, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png: Option<String>,
    /// The first `text/html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The first output whose richest form is `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// The first `application/vnd.dataframe+json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataframe: Option<Value>,
    /// Read by the JS client's `runIpython` (not by `run_code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
    /// Read by the JS client's `runIpython`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    /// A kernel cell's last value as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Every rich output, in order.
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
    /// What the object said about its representations (e.g. image sizes).
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

impl ExecutionResponse {
    /// The response for `result`, a run of `language` that just ended.
    pub fn new(result: &ExecResult, language: Language) -> Self {
        Self {
            stdout: result.stdout.clone(),
            stderr: result.stderr.clone(),
            exit_code: result.exit_code,
            execution_time: result.duration.as_secs_f64(),
            success: result.success(),
            timed_out: result.timed_out(),
            stdout_truncated: result.stdout_truncated,
            stderr_truncated: result.stderr_truncated,
            language: language.name().to_string(),
            timestamp: iso(chrono::Utc::now()),
            resources: ResourceReport {
                wall_time_ms: result.duration.as_secs_f64() * 1e3,
                usage: result.usage,
            },
            rich: RichFields::from_outputs(&result.outputs),
        }
    }
}

/// What every error body carries at its top level, whichever plane answered (see
/// [`ApiError`]'s rendering): enough for a client to report the failure.
#[derive(Debug, Deserialize)]
pub struct ErrorSummary {
    /// What went wrong, worded for the user.
    pub message: String,
    /// Stable machine-readable code (`INVALID_REQUEST`, …).
    pub code: String,
}

/// `PUT`/`PATCH /env`.
#[derive(Debug, Deserialize)]
pub struct EnvUpdate {
    /// The variables to set (PUT replaces all, PATCH merges by default).
    #[serde(alias = "env", deserialize_with = "bounded_env")]
    pub env_vars: EnvVars,
    /// PATCH merges unless this is `false`.
    #[serde(default)]
    pub merge: Option<bool>,
}

/// `{"env_vars": {...}}`.
#[derive(Debug, Serialize)]
pub struct EnvResponse {
    /// The sandbox's environment.
    pub env_vars: EnvVars,
}

/// `?path=` of the file endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct PathQuery {
    /// Guest path, absolute or relative to `/workspace`.
    pub path: Option<String>,
    /// `base64` to read binary content as base64.
    pub encoding: Option<String>,
}

/// `POST /files/write`.
#[derive(Debug, Deserialize)]
pub struct WriteFileRequest {
    /// Guest path, absolute or relative to `/workspace`.
    pub path: String,
    /// The contents, as text or (with `encoding: base64`) base64.
    pub content: String,
    /// Octal permission string such as `"0644"` (an integer is taken as the mode bits).
    #[serde(default)]
    pub mode: Option<Value>,
    /// `false` refuses to replace an existing file.
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// `"base64"` for binary content; text otherwise.
    #[serde(default)]
    pub encoding: Option<String>,
}

/// `POST /files/mkdir`.
#[derive(Debug, Deserialize)]
pub struct MkdirRequest {
    /// Guest path of the directory (parents are created too).
    pub path: String,
}

/// One entry of `/files/list`, with both spellings of each field.
#[derive(Debug, Serialize)]
pub struct FileEntry {
    /// File name.
    pub name: String,
    /// Absolute guest path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether it is a directory.
    pub is_directory: bool,
    /// The same (the other SDK's spelling).
    pub is_dir: bool,
    /// Whether it is a regular file.
    pub is_file: bool,
    /// Whether it is a symbolic link.
    pub is_symlink: bool,
    /// `ls -l` style, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// Octal, e.g. `0644`.
    pub mode: String,
    /// ISO-8601 modification time.
    pub modified_time: Option<String>,
    /// The same (the other SDK's spelling).
    pub modified: Option<String>,
}
