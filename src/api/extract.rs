//! Request extractors whose failures are [`ApiError`]s (JSON bodies naming the field) instead of
//! axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body. The content type is not checked (curl users forget it; the SDKs always send
/// it), and an empty body reads as `{}` so body-less POSTs work.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state).await.map_err(body_error)?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(text).map(ApiJson).map_err(json_error)
    }
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_query(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

fn serde_urlencoded_query<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{query}").parse().map_err(|e| format!("{e}"))?)
        .map(|q| q.0)
        .map_err(|e| e.body_text())
}

/// Maps a body-buffering failure: too large is 413, anything else a bad request.
pub fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body is larger than this endpoint accepts",
        )
    } else {
        ApiError::bad_request(format!("cannot read the request body: {}", rejection.body_text()))
    }
}

/// A JSON error naming the field at fault when serde says which one.
fn json_error(err: serde_json::Error) -> ApiError {
    let message = err.to_string();
    let field = ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field.to_string());
    let text = match (err.classify(), &field) {
        (serde_json::error::Category::Data, Some(field)) if message.starts_with("missing field") => {
            format!("missing required field '{field}'")
        }
        (serde_json::error::Category::Data, _) => format!("invalid request body: {message}"),
        _ => format!("malformed JSON body: {message}"),
    };
    let mut api = ApiError::bad_request(text);
    if let Some(field) = field {
        api = api.with_detail("field", field);
    }
    api
}
