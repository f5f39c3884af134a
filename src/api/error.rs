//! Errors as HTTP responses, in the two body shapes the official clients parse.
//!
//! A handler returns an [`ApiError`]; its `IntoResponse` stores the error in the response's
//! extensions, and [`request_context`] renders the body for the plane the request was on (the
//! control plane under `/v1`, the agent under `/sandboxes/{id}`), stamping an `X-Request-ID`.
//! Rendering in one place also catches extractor rejections and fallbacks, so no response is
//! ever axum's plain text.

use std::any::Any;
use std::io;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::engine::{EngineError, Refusal};
use crate::exec::ExecError;
use crate::runtimes::{Language, RuntimeError};
use crate::sandbox::{PathError, SandboxError};

use super::models::iso;

/// An error answer: status, machine-readable code, a message a user can act on.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// Stable machine-readable code (`INVALID_REQUEST`, …) clients branch on.
    pub code: &'static str,
    /// What went wrong, worded for the user.
    pub message: String,
    /// The guest path a file error is about.
    pub path: Option<String>,
    /// Extra fields a client can act on (the limit that was hit, the offending field).
    pub details: Map<String, Value>,
    /// Seconds a client should wait before retrying (429).
    pub retry_after: Option<u32>,
    /// What went wrong inside, for the log only (500s).
    cause: Option<Box<str>>,
}

impl ApiError {
    /// An error answer with no details; add them with the `with_*` builders.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            path: None,
            details: Map::new(),
            retry_after: None,
            cause: None,
        }
    }

    /// 400 `INVALID_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 500 for faults of the server itself (never for anything a request or user code did).
    /// The cause is logged with the request id; the body says only that something failed, so
    /// no host path or internal message reaches a client.
    pub fn internal(cause: impl Into<String>) -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal server error; the server log has the details under this request id",
        );
        err.cause = Some(cause.into().into_boxed_str());
        err
    }

    /// 429 `RATE_LIMITED`: come back in `retry_after` seconds.
    pub fn busy(message: impl Into<String>, retry_after: u32) -> Self {
        let mut err = Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
            .with_detail("retry_after_seconds", retry_after);
        err.retry_after = Some(retry_after);
        err
    }

    /// 404 `SANDBOX_NOT_FOUND`. The JS SDK turns a 404 whose message says "sandbox … not found"
    /// into `SandboxExpiredError`, so the wording matters.
    pub fn sandbox_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SANDBOX_NOT_FOUND",
            format!("Sandbox not found: {id}"),
        )
        .with_detail("sandbox_id", id)
    }

    /// Attaches the guest path a file error is about (top level and in `details`).
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self.with_detail("path", path)
    }

    /// Adds one machine-readable detail to the body.
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The error for an I/O failure on guest path `path`.
    pub fn file(path: &str, err: &io::Error) -> Self {
        use io::ErrorKind as K;
        let (status, code, message) = match err.kind() {
            K::NotFound => (
                StatusCode::NOT_FOUND,
                "FILE_NOT_FOUND",
                format!("File not found: {path}"),
            ),
            // cap-std reports any attempt to leave the tree (`..`, absolute or escaping
            // symlinks) as PermissionDenied.
            K::PermissionDenied => (
                StatusCode::FORBIDDEN,
                "PATH_NOT_ALLOWED",
                format!("Path not allowed: {path} leads outside the sandbox or is not accessible"),
            ),
            K::AlreadyExists => (
                StatusCode::CONFLICT,
                "FILE_ALREADY_EXISTS",
                format!("File already exists: {path}"),
            ),
            K::NotADirectory => (
                StatusCode::BAD_REQUEST,
                "DIRECTORY_NOT_FOUND",
                format!("Not a directory: a component of {path} is a file"),
            ),
            K::IsADirectory => (
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("{path} is a directory"),
            ),
            K::DirectoryNotEmpty => (
                StatusCode::CONFLICT,
                "DIRECTORY_NOT_EMPTY",
                format!("Directory not empty: {path}"),
            ),
            K::InvalidInput | K::InvalidFilename | K::InvalidData => (
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("Invalid path {path}: {err}"),
            ),
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge => (
                StatusCode::INSUFFICIENT_STORAGE,
                "STORAGE_FULL",
                format!("No space left for {path}"),
            ),
            // ELOOP and ENAMETOOLONG have no stable ErrorKind yet.
            _ if matches!(err.raw_os_error(), Some(40 | 36)) => (
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("Invalid path {path}: {err}"),
            ),
            _ => {
                return Self::internal(format!("file operation on {path} failed: {err}"))
                    .with_path(path)
            }
        };
        Self::new(status, code, message).with_path(path)
    }

    /// Renders the body for `plane`. Both shapes carry `message` and `code` at the top level
    /// (JS reads those); the control plane nests an `error` object (Python's control client),
    /// the agent puts the message string in `error` (Python's agent client).
    fn body(&self, plane: Plane, request_id: &str) -> Value {
        let details = Value::Object(self.details.clone());
        let mut body = match plane {
            Plane::Control => json!({
                "error": {
                    "message": self.message,
                    "code": self.code,
                    "request_id": request_id,
                    "details": details,
                },
                "message": self.message,
                "code": self.code,
                "request_id": request_id,
            }),
            Plane::Agent => json!({
                "error": self.message,
                "message": self.message,
                "code": self.code,
                "details": details,
                "request_id": request_id,
                "timestamp": iso(chrono::Utc::now()),
            }),
        };
        if let Some(path) = &self.path {
            body["path"] = json!(path);
        }
        if let Some(seconds) = self.retry_after {
            body["retry_after"] = json!(seconds);
        }
        body
    }

    fn render(&self, plane: Plane, request_id: &str) -> Response {
        let mut response = (self.status, axum::Json(self.body(plane, request_id))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Rendered properly by `request_context`; this body only shows if that layer is absent.
        let mut response = self.render(Plane::Control, "");
        response.extensions_mut().insert(self);
        response
    }
}

impl From<SandboxError> for ApiError {
    fn from(err: SandboxError) -> Self {
        match err {
            SandboxError::NotFound(id) => Self::sandbox_not_found(&id),
            other => Self::internal(crate::describe_error(&other)),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        match err {
            RuntimeError::UnknownLanguage(_) | RuntimeError::Unsupported(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED_LANGUAGE",
                err.to_string(),
            )
            .with_detail("supported", json!(Language::ALL.map(Language::name))),
            // Not the user's fault, but not something a retry fixes either: a 4xx keeps the SDKs
            // from re-sending.
            RuntimeError::NotAvailable(language) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "RUNTIME_NOT_AVAILABLE",
                format!("the {language} runtime is not available on this server yet"),
            )
            .with_detail("language", language.name()),
            RuntimeError::NotInstalled { .. } => {
                tracing::error!(error = %err, "runtime missing");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "RUNTIME_NOT_INSTALLED",
                    err.to_string(),
                )
            }
            other => Self::internal(crate::describe_error(&other)),
        }
    }
}

impl From<PathError> for ApiError {
    fn from(err: PathError) -> Self {
        match err {
            PathError::Escapes(path) => Self::new(
                StatusCode::FORBIDDEN,
                "PATH_NOT_ALLOWED",
                format!("Path not allowed: {path} leaves the sandbox"),
            )
            .with_path(&path),
            PathError::Invalid(path) => Self::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("Invalid path: {path}"),
            )
            .with_path(&path),
            PathError::Io { path, source } => Self::file(&path, &source),
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(err: ExecError) -> Self {
        match err {
            ExecError::Runtime(e) => e.into(),
            ExecError::Workdir(e) => {
                let mut api = Self::from(e);
                api.message = format!("working directory: {}", api.message);
                api
            }
            ExecError::Engine(EngineError::Busy(refusal)) => match refusal {
                Refusal::HostBusy { .. } | Refusal::TenantBusy { .. } => {
                    Self::busy(format!("{refusal}; retry shortly"), 1)
                }
                Refusal::Cancelled => Self::new(
                    StatusCode::NOT_FOUND,
                    "SANDBOX_NOT_FOUND",
                    "Sandbox not found: it was deleted while the code was waiting or running",
                ),
                Refusal::TooLarge { .. } => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "LIMIT_EXCEEDED",
                    refusal.to_string(),
                ),
            },
            ExecError::NoKernel(_) => {
                Self::bad_request(err.to_string()).with_detail("field", "language")
            }
            ExecError::Engine(e) => Self::internal(crate::describe_error(&e)),
            e @ (ExecError::Scratch { .. } | ExecError::PackageIndex(_)) => {
                Self::internal(crate::describe_error(&e))
            }
        }
    }
}

/// Which API a request was for; decides the error body shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Control,
    Agent,
}

impl Plane {
    fn of(path: &str) -> Self {
        if path.starts_with("/sandboxes/") {
            Plane::Agent
        } else {
            Plane::Control
        }
    }
}

tokio::task_local! {
    /// The id of the request being handled, for what is logged outside a handler (a panic).
    static REQUEST_ID: String;
}

/// Middleware: gives every request an id (`X-Request-ID`) and renders [`ApiError`] bodies.
pub async fn request_context(request: Request, next: Next) -> Response {
    let plane = Plane::of(request.uri().path());
    let request_id = new_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .await;
    if let Some(err) = response.extensions_mut().remove::<ApiError>() {
        match &err.cause {
            Some(cause) => {
                tracing::error!(%request_id, %method, %path, %cause, "internal error")
            }
            None => {
                tracing::debug!(%method, %path, status = %err.status, code = err.code, message = %err.message, "request failed")
            }
        }
        response = err.render(plane, &request_id);
    } else if is_plain_error(&response) {
        // A rejection or layer that answered in plain text: same message, our body.
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 10)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        response = ApiError::new(status, code_for(status), message).render(plane, &request_id);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The answer to a handler that panicked (`CatchPanicLayer`, inside [`request_context`]): the
/// usual 500 body, rendered by `request_context`; the panic message goes to the log with the
/// request id, never to the client.
pub fn panic_response(panic: Box<dyn Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let request_id = REQUEST_ID.try_with(String::clone).unwrap_or_default();
    tracing::error!(%request_id, panic = message, "request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "internal server error",
    )
    .into_response()
}

fn is_plain_error(response: &Response) -> bool {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (response.status().is_client_error() || response.status().is_server_error()) && !json
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "INVALID_REQUEST",
        StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        s if s.is_server_error() => "INTERNAL_ERROR",
        _ => "HTTP_ERROR",
    }
}

fn new_request_id() -> String {
    format!(
        "req_{}",
        crate::ids::random_alphanumeric(16).to_ascii_lowercase()
    )
}

/// Fallback for unknown routes.
pub async fn route_not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Fallback for a known route called with the wrong method.
pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!(
            "{} is not supported on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

    use super::*;

    /// A panicking handler answers with our JSON 500 and a request id, and the service survives.
    #[tokio::test]
    async fn a_panic_is_a_json_500() {
        async fn boom() -> &'static str {
            panic!("secret internal detail")
        }
        let app = Router::new()
            .route("/sandboxes/x/boom", get(boom))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(axum::middleware::from_fn(request_context));
        for _ in 0..2 {
            let request = Request::get("/sandboxes/x/boom")
                .body(Body::empty())
                .expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let header_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .expect("x-request-id");
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .expect("body");
            let body: Value = serde_json::from_slice(&bytes).expect("JSON body");
            assert_eq!(body["code"], "INTERNAL_ERROR", "{body}");
            assert_eq!(body["request_id"], header_id.as_str(), "{body}");
            assert!(!body.to_string().contains("secret"), "{body}");
        }
    }
}
