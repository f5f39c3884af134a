//! The per-sandbox agent API (`/sandboxes/{id}/…`): code execution, commands, environment.
//!
//! A program that fails is a 200 with `success: false` and its exit status; a timeout is a 200
//! with `exit_code: 124`. Only requests the server cannot act on are errors, and none of those a
//! user can cause is a 5xx (the SDKs re-send on 5xx, which would run code twice).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::engine::{ExecResult, Termination};
use crate::exec::RunRequest;
use crate::runtimes::Language;
use crate::sandbox::{Sandbox, SandboxStatus};

use super::auth::SandboxAccess;
use super::error::ApiError;
use super::extract::ApiJson;
use super::models::{
    check_env_limits, iso, validate_env, CommandRequest, EnvResponse, EnvUpdate, EnvVars,
    ExecuteRequest, ExecutionResponse,
};
use super::AppState;

/// `/execute` timeout when the request gives none (seconds).
pub const EXECUTE_DEFAULT_TIMEOUT: f64 = 60.0;
/// `/commands/run` timeout when the request gives none (seconds).
pub const COMMAND_DEFAULT_TIMEOUT: f64 = 30.0;
/// Longest synchronous execution; longer requests are capped to it.
pub const MAX_TIMEOUT: f64 = 300.0;

/// `GET /sandboxes/{id}/health` (no auth: a readiness probe).
pub async fn health(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sandbox = app.store.get(&id)?;
    Ok(Json(
        json!({ "status": "healthy", "sandbox_id": sandbox.id, "agent": "wasmbox", "version": env!("CARGO_PKG_VERSION") }),
    ))
}

/// `GET /sandboxes/{id}/info`.
pub async fn info(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Json<Value> {
    let languages = runtime_list(&app);
    Json(json!({
        "agent": "wasmbox",
        "agent_version": env!("CARGO_PKG_VERSION"),
        "vm_id": sandbox.id,
        "sandbox_id": sandbox.id,
        "template": sandbox.template,
        "status": sandbox.status.name(),
        "os": "wasi",
        "arch": "wasm32",
        "languages": languages,
        "features": ["execute", "commands", "files", "env"],
        "limits": {
            "max_timeout_seconds": MAX_TIMEOUT,
            "memory_mb": app.memory_mb,
            "max_concurrent_executions": app.max_concurrency,
        },
        "created_at": iso(sandbox.created_at),
        "expires_at": sandbox.expires_at.map(iso),
    }))
}

/// Each language with whether its runtime is installed and which it is.
pub(super) fn runtime_list(app: &AppState) -> Vec<Value> {
    Language::ALL
        .iter()
        .map(|&l| {
            json!({
                "language": l.name(),
                "available": app.executor.runtimes().is_installed(l),
                "runtime": app.executor.runtimes().describe(l),
            })
        })
        .collect()
}

/// `POST /sandboxes/{id}/execute`.
pub async fn execute(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    let run = run_request(request, EXECUTE_DEFAULT_TIMEOUT)?;
    Ok(Json(run_in(&app, &sandbox, run).await?))
}

/// The run an `/execute`-shaped body asks for: language (default python), timeout (default
/// `default_timeout` seconds), env, working directory.
pub(super) fn run_request(
    request: ExecuteRequest,
    default_timeout: f64,
) -> Result<RunRequest, ApiError> {
    run_request_within(request, default_timeout, MAX_TIMEOUT)
}

/// [`run_request`] with the timeout capped at `max_timeout` seconds.
pub(super) fn run_request_within(
    request: ExecuteRequest,
    default_timeout: f64,
    max_timeout: f64,
) -> Result<RunRequest, ApiError> {
    let language: Language = request.language.as_deref().unwrap_or("python").parse()?;
    let timeout = resolve_timeout(request.timeout, default_timeout, max_timeout)?;
    let mut run = RunRequest::new(language, request.code, timeout);
    run.env = request.env.unwrap_or_default();
    run.workdir = request.workdir.filter(|w| !w.is_empty());
    Ok(run)
}

/// `POST /sandboxes/{id}/commands/run`: `{command, args}` (the SDKs send `bash -c LINE`) or a
/// bare `{command}` shell line, run by the shell runtime.
pub async fn run_command(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<CommandRequest>,
) -> Result<Json<ExecutionResponse>, ApiError> {
    let run = command_request(request, COMMAND_DEFAULT_TIMEOUT, MAX_TIMEOUT)?;
    Ok(Json(run_in(&app, &sandbox, run).await?))
}

/// The shell run a `/commands/…` body asks for, its timeout capped at `max_timeout` seconds.
pub(super) fn command_request(
    request: CommandRequest,
    default_timeout: f64,
    max_timeout: f64,
) -> Result<RunRequest, ApiError> {
    if request.command.trim().is_empty() {
        return Err(
            ApiError::bad_request("command must not be empty").with_detail("field", "command")
        );
    }
    let line = shell_line(
        &request.command,
        request.args.as_deref().unwrap_or_default(),
    );
    let timeout = resolve_timeout(request.timeout, default_timeout, max_timeout)?;
    let mut run = RunRequest::new(Language::Bash, line, timeout);
    run.env = request.env.unwrap_or_default();
    run.workdir = request.workdir.filter(|w| !w.is_empty());
    Ok(run)
}

/// Runs `run` in `sandbox` under a concurrency permit.
pub(super) async fn run_in(
    app: &AppState,
    sandbox: &Sandbox,
    mut run: RunRequest,
) -> Result<ExecutionResponse, ApiError> {
    ready_to_run(sandbox, &run)?;
    run.language = app.executor.language_for(&sandbox.template, run.language);
    let language = run.language;
    let fs = app.store.files(&sandbox.id)?;
    let result = app.executor.run(&fs, &sandbox.env, run).await?;
    finished(sandbox, &result)?;
    let response = ExecutionResponse::new(&result, language);
    app.run_stats.record(&sandbox.id, &response);
    super::server_metrics::record_run(super::server_metrics::RunKind::Execution, &response);
    Ok(response)
}

/// Refuses code for a paused sandbox (409, as HopX does) and bad environments (400).
pub(super) fn ready_to_run(sandbox: &Sandbox, run: &RunRequest) -> Result<(), ApiError> {
    if sandbox.status == SandboxStatus::Paused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "SANDBOX_PAUSED",
            format!(
                "Sandbox {} is paused; resume it (POST /v1/sandboxes/{}/resume) to run code",
                sandbox.id, sandbox.id
            ),
        ));
    }
    validate_env(&run.env)
}

/// A run stopped because its sandbox was deleted answers 404, like any later request would.
pub(super) fn finished(sandbox: &Sandbox, result: &ExecResult) -> Result<(), ApiError> {
    if result.termination == Termination::Cancelled {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SANDBOX_NOT_FOUND",
            format!(
                "Sandbox not found: {} was deleted while the code ran",
                sandbox.id
            ),
        )
        .with_detail("sandbox_id", sandbox.id.as_str()));
    }
    Ok(())
}

/// The request's timeout in seconds, defaulted and capped at `max` seconds.
fn resolve_timeout(requested: Option<f64>, default: f64, max: f64) -> Result<Duration, ApiError> {
    let seconds = requested.unwrap_or(default);
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(
            ApiError::bad_request("timeout must be a positive number of seconds")
                .with_detail("field", "timeout"),
        );
    }
    Ok(Duration::from_secs_f64(seconds.min(max)))
}

/// The shell line for a command request, run by the shell guest in bash mode. `bash -c LINE`
/// is LINE itself; other argv (`sh -c LINE` among it, so that `sh` keeps POSIX semantics in a
/// child shell) is quoted word by word.
fn shell_line(command: &str, args: &[String]) -> String {
    let program = command.rsplit('/').next().unwrap_or(command);
    if program == "bash" && args.first().is_some_and(|a| a == "-c") {
        if let Some(line) = args.get(1) {
            return line.clone();
        }
    }
    if args.is_empty() {
        return command.to_string();
    }
    std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// POSIX single-quoting, leaving plainly safe words alone.
fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',' | '@' | '%')
        });
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What `/env` answers show instead of a secret-looking value, as HopX's agent does.
pub(super) const MASKED: &str = "***MASKED***";

/// A name that says its value is a secret: it contains KEY, SECRET, TOKEN or PASSWORD.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "SECRET", "TOKEN", "PASSWORD"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The effective environment as `/env` answers show it: secret-looking values masked (code in
/// the sandbox still sees them).
fn shown_env(own: &EnvVars) -> EnvResponse {
    let mut env_vars = crate::exec::effective_env(own);
    for (name, value) in env_vars.iter_mut() {
        if looks_secret(name) {
            *value = MASKED.to_string();
        }
    }
    EnvResponse { env_vars }
}

/// `GET /sandboxes/{id}/env`: the environment code runs with — the defaults every execution
/// starts from, overridden by the sandbox's own variables (HopX's agent also lists the whole
/// environment, so `env.get_all()` is never empty), secret-looking values masked. Writing it
/// back with PUT is harmless: the defaults then become the sandbox's own, with the same values,
/// and a masked value stands for the value it hides.
pub async fn get_env(SandboxAccess(sandbox): SandboxAccess) -> Json<EnvResponse> {
    Json(shown_env(&sandbox.env))
}

/// `PUT /sandboxes/{id}/env`: replaces the sandbox environment.
pub async fn put_env(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(update): ApiJson<EnvUpdate>,
) -> Result<Json<EnvResponse>, ApiError> {
    set_env(&app, &sandbox, update.env_vars, false)
}

/// `PATCH /sandboxes/{id}/env`: merges into the sandbox environment (unless `merge: false`).
pub async fn patch_env(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(update): ApiJson<EnvUpdate>,
) -> Result<Json<EnvResponse>, ApiError> {
    set_env(
        &app,
        &sandbox,
        update.env_vars,
        update.merge.unwrap_or(true),
    )
}

/// `DELETE /sandboxes/{id}/env`: clears the sandbox environment.
pub async fn delete_env(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
) -> Result<Json<EnvResponse>, ApiError> {
    set_env(&app, &sandbox, EnvVars::new(), false)
}

fn set_env(
    app: &AppState,
    sandbox: &Sandbox,
    vars: EnvVars,
    merge: bool,
) -> Result<Json<EnvResponse>, ApiError> {
    validate_env(&vars)?;
    // The caps apply to the result, checked under the store's lock so concurrent PATCHes cannot
    // each pass against an older environment.
    let mut over_limit = None;
    let updated = app.store.update(&sandbox.id, |s| {
        // The SDKs' `env.delete` reads the (masked) listing and PUTs it back: a masked value
        // keeps the value it stands for.
        let vars: EnvVars = vars
            .into_iter()
            .map(|(name, value)| match s.env.get(&name) {
                Some(kept) if value == MASKED => (name, kept.clone()),
                _ => (name, value),
            })
            .collect();
        let env = if merge {
            let mut env = s.env.clone();
            env.extend(vars);
            env
        } else {
            vars
        };
        match check_env_limits(&env) {
            Ok(()) => s.env = env,
            Err(e) => over_limit = Some(e),
        }
    })?;
    if let Some(err) = over_limit {
        return Err(ApiError::bad_request(format!(
            "the sandbox environment would be too large: {err}"
        ))
        .with_detail("field", "env_vars"));
    }
    Ok(Json(shown_env(&updated.env)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_dash_c_is_the_line_itself_sh_stays_posix() {
        assert_eq!(
            shell_line("bash", &["-c".into(), "ls -la | wc -l".into()]),
            "ls -la | wc -l"
        );
        assert_eq!(
            shell_line("/bin/bash", &["-c".into(), "echo $X".into()]),
            "echo $X"
        );
        assert_eq!(
            shell_line("sh", &["-c".into(), "echo $X".into()]),
            "sh -c 'echo $X'"
        );
        assert_eq!(shell_line("echo $HOME && ls", &[]), "echo $HOME && ls");
    }

    #[test]
    fn argv_is_quoted() {
        assert_eq!(
            shell_line("echo", &["a b".into(), "it's".into(), "x".into()]),
            r"echo 'a b' 'it'\''s' x"
        );
        assert_eq!(shell_line("printf", &["".into()]), "printf ''");
    }

    #[test]
    fn timeouts_default_and_cap() {
        assert_eq!(
            resolve_timeout(None, 60.0, MAX_TIMEOUT).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            resolve_timeout(Some(1000.0), 60.0, MAX_TIMEOUT).ok(),
            Some(Duration::from_secs(300))
        );
        assert!(resolve_timeout(Some(0.0), 60.0, MAX_TIMEOUT).is_err());
        assert!(resolve_timeout(Some(-3.0), 60.0, MAX_TIMEOUT).is_err());
    }
}
