//! Request extractors whose failures are [`ApiError`]s (JSON bodies naming the field) instead of
//! axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest JSON body a route accepts, as a request extension (default [`super::BODY_LIMIT`]).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// How much of an oversized body is read and discarded so the client sees the 413: closing a
/// connection with unread data makes the kernel send RST, which can destroy the response
/// before the client reads it.
const DRAIN_CAP: usize = 256 << 20;

/// A JSON object body. The content type is not checked (curl users forget it; the SDKs always
/// send it), and an empty body reads as `{}` so body-less POSTs work. Anything but an object is
/// a 400: serde would otherwise read an array such as `[]` as a struct with every field absent.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(super::BODY_LIMIT, |l| l.0);
        let bytes = read_body(request, limit).await?;
        let text: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => b"{}",
            Some(b'{') => &bytes,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object ({...})",
                ))
            }
        };
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
        deserializer
            .end()
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
        Ok(ApiJson(value))
    }
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// Buffers the body up to `limit` bytes; past that, drains (up to [`DRAIN_CAP`]) and fails
/// with 413.
async fn read_body(request: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = request.into_body();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > DRAIN_CAP {
            break;
        }
        if total <= limit {
            buffer.extend_from_slice(&data);
        }
    }
    if total > limit {
        return Err(too_large().with_detail("limit_bytes", limit));
    }
    Ok(buffer)
}

/// 413 with our body.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "request body is larger than this endpoint accepts",
    )
}

/// A JSON error naming the field at fault.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = inner.to_string();
    // serde reports a missing field at the enclosing object; name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| {
            if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        });
    let (text, field) = match (inner.classify(), missing) {
        (serde_json::error::Category::Data, Some(field)) => {
            (format!("missing required field '{field}'"), Some(field))
        }
        (serde_json::error::Category::Data, None) if path == "." => {
            (format!("invalid request body: {message}"), None)
        }
        (serde_json::error::Category::Data, None) => (
            format!("invalid value for field '{path}': {message}"),
            Some(path),
        ),
        _ => (format!("malformed JSON body: {message}"), None),
    };
    let mut api = ApiError::bad_request(text);
    if let Some(field) = field {
        api = api.with_detail("field", field);
    }
    api
}
