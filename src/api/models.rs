//! Wire types. Requests accept both spellings the clients use (`workdir`/`working_dir`, …);
//! responses use the field names and JSON types the official SDKs parse (string ids, integer
//! `organization_id`, ISO-8601 timestamps ending in `Z`).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;

/// ISO-8601 in UTC with a `Z`, to the second (every Python `fromisoformat` parses it).
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Environment variables as sent by clients; validated with [`validate_env`].
pub type EnvVars = BTreeMap<String, String>;

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
    #[serde(default, alias = "env")]
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
    pub code: String,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default, alias = "working_dir", alias = "cwd")]
    pub workdir: Option<String>,
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<f64>,
    #[serde(default, alias = "env_vars")]
    pub env: Option<EnvVars>,
}

/// `POST /commands/run`: `{command, args}` runs argv, `{command}` alone is a shell line.
#[derive(Debug, Deserialize)]
pub struct CommandRequest {
    pub command: String,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default, alias = "working_dir", alias = "cwd")]
    pub workdir: Option<String>,
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<f64>,
    #[serde(default, alias = "env_vars")]
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
}

/// `PUT`/`PATCH /env`.
#[derive(Debug, Deserialize)]
pub struct EnvUpdate {
    #[serde(alias = "env")]
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
