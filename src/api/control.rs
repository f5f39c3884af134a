//! The control plane (`/v1/…`): sandboxes and templates, authenticated with the account key.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::sandbox::{NewSandbox, Sandbox, SandboxStatus};

use super::auth::AccountAuth;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::models::{
    iso, validate_env, CreateSandboxRequest, ListQuery, SandboxInfo, SandboxList,
    SetTimeoutRequest, Template, TemplateQuery, TokenResponse,
};
use super::AppState;

/// Page size when `limit` is absent, and the largest accepted.
pub(super) const DEFAULT_PAGE: usize = 100;
pub(super) const MAX_PAGE: usize = 1000;
/// Longest sandbox lifetime (`timeout_seconds`) a request may ask for: ten years.
const MAX_SANDBOX_TIMEOUT_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// The template used when a create request names none.
const DEFAULT_TEMPLATE: &str = "code-interpreter";

/// The templates this server offers. Every sandbox can run every language; the template is
/// recorded and reported, and picks nothing else.
pub const TEMPLATES: &[Template] = &[
    template(
        "code-interpreter",
        "Code Interpreter",
        "Python, JavaScript, shell and Go in one WebAssembly sandbox",
        "python",
    ),
    template("python", "Python", "CPython 3.12 (WASI)", "python"),
    template(
        "javascript",
        "JavaScript",
        "QuickJS with Node-like shims",
        "javascript",
    ),
    template("bash", "Bash", "A POSIX-like shell with coreutils", "bash"),
    template(
        "go",
        "Go",
        "Go 1.24, compiled inside the sandbox (wasip1)",
        "go",
    ),
];

const fn template(
    name: &'static str,
    display_name: &'static str,
    description: &'static str,
    language: &'static str,
) -> Template {
    Template {
        id: name,
        name,
        display_name,
        description,
        category: "development",
        language,
        features: &["code-execution", "files", "env"],
        tags: &["wasm"],
        is_active: true,
        is_public: true,
        status: "active",
        object: "template",
    }
}

/// Looks a template up by id or name.
fn find_template(key: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.id == key || t.name == key)
}

/// `GET /health` (no auth). In cluster mode it also carries what peers place by: the node id,
/// live instances and sandboxes.
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let mut health = json!({
        "status": "ok",
        "service": "wasmbox",
        "version": env!("CARGO_PKG_VERSION"),
        "running_background_processes": app.processes.running(),
    });
    if let (Some(cluster), Some(fields)) = (&app.cluster, health.as_object_mut()) {
        fields.insert("node_id".into(), json!(cluster.node_id()));
        fields.insert("peers".into(), cluster.report());
        fields.insert("sandboxes".into(), json!(app.store.len()));
        fields.insert(
            "live_instances".into(),
            json!(app.executor.engine().pool_use().instances),
        );
    }
    Json(health)
}

/// `POST /v1/sandboxes`.
pub async fn create(
    State(app): State<AppState>,
    _: AccountAuth,
    ApiJson(request): ApiJson<CreateSandboxRequest>,
) -> Result<(StatusCode, Json<SandboxInfo>), ApiError> {
    let wanted = match (&request.template_id, &request.template_name) {
        (Some(Value::String(id)), _) => id.clone(),
        (Some(Value::Number(id)), _) => id.to_string(),
        (Some(Value::Null) | None, Some(name)) => name.clone(),
        (Some(Value::Null) | None, None) => DEFAULT_TEMPLATE.to_string(),
        (Some(_), _) => {
            return Err(ApiError::bad_request("template_id must be a string")
                .with_detail("field", "template_id"))
        }
    };
    let template = find_template(&wanted).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "TEMPLATE_NOT_FOUND",
            format!("Template '{wanted}' not found (available: code-interpreter, python, javascript, bash, go)"),
        )
        .with_detail("template", wanted.clone())
    })?;
    let env = request.env_vars.unwrap_or_default();
    validate_env(&env)?;
    // 0 means "no expiry" here (as before); any other value passes the same check as an update.
    let timeout_seconds = request.timeout_seconds.filter(|s| *s > 0);
    if let Some(seconds) = timeout_seconds {
        expiry_after(seconds)?;
    }
    let store = app.clone();
    let sandbox = tokio::task::spawn_blocking(move || {
        store.store.create(NewSandbox {
            template: template.name.to_string(),
            env,
            timeout_seconds,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("create task failed: {e}")))??;
    let token = app.auth.issue(&sandbox.id)?;
    let mut info = sandbox_info(&app, &sandbox);
    info.auth_token = Some(token.token);
    info.token_expires_at = Some(iso(token.expires_at));
    tracing::info!(id = %sandbox.id, template = %sandbox.template, "sandbox created");
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/sandboxes/{id}`.
pub async fn get(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    Ok(Json(sandbox_info(&app, &app.store.get(&id)?)))
}

/// `GET /v1/sandboxes`: oldest first, `limit` per page, `cursor` from the previous page.
pub async fn list(
    State(app): State<AppState>,
    _: AccountAuth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<SandboxList>, ApiError> {
    // A peer merging pages needs each item's exact sort key (`created_at` is in seconds).
    let with_cursors = app.cluster.is_some() && headers.contains_key(super::cluster::LOCAL_HEADER);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = query
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    let mut matching = app
        .store
        .list()
        .into_iter()
        .filter(|s| status.as_deref().is_none_or(|want| s.status.name() == want))
        .filter(|s| {
            after
                .as_ref()
                .is_none_or(|(at, id)| (s.created_at, s.id.as_str()) > (*at, id.as_str()))
        })
        .peekable();
    let page: Vec<Sandbox> = matching.by_ref().take(limit).collect();
    let has_more = matching.peek().is_some();
    let next_cursor = page.last().filter(|_| has_more).map(encode_cursor);
    Ok(Json(SandboxList {
        object: "list".to_string(),
        data: page
            .iter()
            .map(|s| {
                let mut info = sandbox_info(&app, s);
                info.cursor = with_cursors.then(|| encode_cursor(s));
                info
            })
            .collect(),
        has_more,
        next_cursor,
    }))
}

/// `DELETE /v1/sandboxes/{id}`: 200 with a body (Python parses every success body).
pub async fn delete(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.delete_sandbox(&id)?;
    tracing::info!(%id, "sandbox deleted");
    Ok(Json(
        json!({ "id": id, "sandbox_id": id, "status": "deleted", "message": "Sandbox deleted" }),
    ))
}

/// `PUT /v1/sandboxes/{id}/timeout`: the sandbox now expires `timeout_seconds` from now.
pub async fn set_timeout(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SetTimeoutRequest>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let seconds = request.timeout_seconds;
    if seconds == 0 {
        return Err(
            ApiError::bad_request("timeout_seconds must be greater than 0")
                .with_detail("field", "timeout_seconds"),
        );
    }
    let expires_at = expiry_after(seconds)?;
    let sandbox = app.store.update(&id, |s| {
        s.timeout_seconds = Some(seconds);
        s.expires_at = Some(expires_at);
    })?;
    Ok(Json(sandbox_info(&app, &sandbox)))
}

/// When a sandbox given `seconds` to live from now expires; 400 naming `timeout_seconds` past
/// [`MAX_SANDBOX_TIMEOUT_SECONDS`]. The cap sits far below chrono's range, so the store's own
/// `now + timeout` a moment later cannot overflow either.
fn expiry_after(seconds: u64) -> Result<DateTime<Utc>, ApiError> {
    let too_large = || {
        ApiError::bad_request(format!(
            "timeout_seconds must be at most {MAX_SANDBOX_TIMEOUT_SECONDS} (10 years)"
        ))
        .with_detail("field", "timeout_seconds")
        .with_detail("limit", MAX_SANDBOX_TIMEOUT_SECONDS)
    };
    if seconds > MAX_SANDBOX_TIMEOUT_SECONDS {
        return Err(too_large());
    }
    i64::try_from(seconds)
        .ok()
        .and_then(ChronoDuration::try_seconds)
        .and_then(|offset| Utc::now().checked_add_signed(offset))
        .ok_or_else(too_large)
}

/// `POST /v1/sandboxes/{id}/token/refresh`.
pub async fn refresh_token(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
) -> Result<Json<TokenResponse>, ApiError> {
    let sandbox = app.store.get(&id)?;
    let token = app.auth.issue(&sandbox.id)?;
    Ok(Json(TokenResponse {
        id: sandbox.id.clone(),
        sandbox_id: sandbox.id,
        auth_token: token.token,
        token_expires_at: iso(token.expires_at),
    }))
}

/// `POST /v1/sandboxes/{id}/pause`: executions are refused until resumed.
pub async fn pause(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let sandbox = app
        .store
        .update(&id, |s| s.status = SandboxStatus::Paused)?;
    // A paused sandbox holds no instances: its kernels go to disk (resumed on the next cell)
    // and its background runs stop.
    app.processes.kill_sandbox(&id);
    app.kernels.hibernate_sandbox(&id).await;
    Ok(Json(sandbox_info(&app, &sandbox)))
}

/// `POST /v1/sandboxes/{id}/resume`.
pub async fn resume(
    State(app): State<AppState>,
    _: AccountAuth,
    Path(id): Path<String>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let sandbox = app
        .store
        .update(&id, |s| s.status = SandboxStatus::Running)?;
    Ok(Json(sandbox_info(&app, &sandbox)))
}

/// `GET /v1/templates`.
pub async fn list_templates(
    _: AccountAuth,
    ApiQuery(query): ApiQuery<TemplateQuery>,
) -> Json<Value> {
    let data: Vec<&Template> = TEMPLATES
        .iter()
        .filter(|t| {
            query
                .category
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(t.category))
        })
        .filter(|t| {
            query
                .language
                .as_deref()
                .is_none_or(|l| l.eq_ignore_ascii_case(t.language))
        })
        .collect();
    Json(json!({ "object": "list", "data": data, "has_more": false }))
}

/// `GET /v1/templates/{name}` (by name or id).
pub async fn get_template(
    _: AccountAuth,
    Path(name): Path<String>,
) -> Result<Json<Template>, ApiError> {
    find_template(&name).cloned().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "TEMPLATE_NOT_FOUND",
            format!("Template '{name}' not found"),
        )
    })
}

/// DELETE `/v1/templates/{name}`: the templates are built into the server, so there is nothing
/// a client can delete (403 naming why; an unknown name is 404 as for GET).
pub async fn delete_template(
    auth: AccountAuth,
    Path(name): Path<String>,
) -> Result<Json<Template>, ApiError> {
    let Json(template) = get_template(auth, Path(name)).await?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "TEMPLATE_BUILT_IN",
        format!(
            "Template '{}' is built in to this server and cannot be deleted",
            template.name
        ),
    ))
}

/// The control-plane view of a sandbox.
pub fn sandbox_info(app: &AppState, sandbox: &Sandbox) -> SandboxInfo {
    SandboxInfo::new(
        sandbox,
        Some(app.public_hosts.of(&sandbox.id)),
        app.memory_mb,
    )
}

/// What a cursor encodes: the (creation time, id) of the last item of a page.
pub(super) type CursorKey = (DateTime<Utc>, String);

/// Cursor = the (creation time, id) of the last item of a page, opaque to clients.
fn encode_cursor(sandbox: &Sandbox) -> String {
    cursor_of(sandbox.created_at, &sandbox.id)
}

/// The cursor of an item created at `at` with id `id`.
pub(super) fn cursor_of(at: DateTime<Utc>, id: &str) -> String {
    let at = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    URL_SAFE_NO_PAD.encode(format!("{at}|{id}"))
}

pub(super) fn decode_cursor(cursor: &str) -> Result<CursorKey, ApiError> {
    let invalid = || {
        ApiError::bad_request("invalid cursor: pass next_cursor from the previous page")
            .with_detail("field", "cursor")
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| invalid())?;
    Ok((at.with_timezone(&Utc), id.to_string()))
}
