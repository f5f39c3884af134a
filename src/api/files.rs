//! `/sandboxes/{id}/files/…`: the sandbox tree through cap-std.
//!
//! Guest paths are normalised lexically first (`..` may not climb above `/`: 403
//! `PATH_NOT_ALLOWED`), then every operation goes through a [`Dir`] rooted at the sandbox, which
//! refuses to follow a symlink out of the tree (also 403). A host path such as `/etc/passwd`
//! simply names a file inside the sandbox, which usually does not exist (404 `FILE_NOT_FOUND`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cap_std::fs::{Dir, Metadata, Permissions, PermissionsExt};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::engine::DiskQuota;
use crate::sandbox::fs::{normalize, to_guest};
use crate::sandbox::{Sandbox, WORKSPACE};

use super::auth::SandboxAccess;
use super::error::ApiError;
use super::extract::{too_large, ApiJson, ApiQuery};
use super::models::{iso, FileEntry, MkdirRequest, PathQuery, WriteFileRequest};
use super::AppState;

/// Largest file `/files/read` returns inside a JSON body; larger ones are refused with a pointer
/// to `/files/download`, which streams.
pub const READ_LIMIT: u64 = 10 << 20;
/// Entries `/files/list` returns at most (the response says when it stopped there).
pub const LIST_LIMIT: usize = 10_000;

/// A guest path resolved against one sandbox's tree.
struct Target {
    dir: Dir,
    /// The sandbox's disk quota, charged for what the API writes.
    quota: Option<Arc<DiskQuota>>,
    /// Relative to the sandbox root; `.` for the root itself.
    relative: PathBuf,
    /// Normalised absolute guest path, for responses and errors.
    guest: String,
}

impl Target {
    fn resolve(app: &AppState, sandbox: &Sandbox, guest: &str) -> Result<Self, ApiError> {
        if guest.trim().is_empty() {
            return Err(
                ApiError::bad_request("path must not be empty").with_detail("field", "path")
            );
        }
        let relative = normalize(guest)?;
        let files = app.store.files(&sandbox.id)?;
        let dir = files.dir().map_err(|e| {
            ApiError::internal(format!("opening the tree of sandbox {}: {e}", sandbox.id))
        })?;
        let quota = app.executor.tenant(&files).disk().cloned();
        let guest = to_guest(&relative);
        let relative = if relative.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            relative
        };
        Ok(Self {
            dir,
            quota,
            relative,
            guest,
        })
    }

    fn is_root(&self) -> bool {
        self.relative == Path::new(".")
    }

    fn err(&self, e: std::io::Error) -> ApiError {
        ApiError::file(&self.guest, &e)
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("file task failed: {e}")))?
}

fn required_path(query: &PathQuery) -> Result<&str, ApiError> {
    query
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing required query parameter 'path'")
                .with_detail("field", "path")
        })
}

/// `GET /files/read?path=[&encoding=base64]`: text as is; binary (or on request) as base64.
pub async fn read(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    let target = Target::resolve(&app, &sandbox, required_path(&query)?)?;
    let want_base64 = query
        .encoding
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
    blocking(move || {
        let bytes = read_file(&target)?;
        let size = bytes.len();
        let (content, encoding) = match String::from_utf8(bytes) {
            Ok(text) if !want_base64 => (text, "utf-8"),
            Ok(text) => (BASE64.encode(text), "base64"),
            Err(e) => (BASE64.encode(e.into_bytes()), "base64"),
        };
        Ok(Json(
            json!({ "content": content, "path": target.guest, "size": size, "encoding": encoding }),
        ))
    })
    .await
}

/// The file at `target`, opened for reading, with its size; refused when larger than `limit`.
/// The size is the file's apparent one, so a sparse file cannot slip past as small.
fn open_file(target: &Target, limit: u64, advice: &str) -> Result<(std::fs::File, u64), ApiError> {
    let file = target
        .dir
        .open(&target.relative)
        .map_err(|e| target.err(e))?
        .into_std();
    let meta = file.metadata().map_err(|e| target.err(e))?;
    if meta.is_dir() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_PATH",
            format!("{} is a directory", target.guest),
        )
        .with_path(&target.guest));
    }
    if meta.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "FILE_TOO_LARGE",
            format!(
                "{} is {} bytes, more than the {limit} bytes this endpoint returns{advice}",
                target.guest,
                meta.len()
            ),
        )
        .with_path(&target.guest)
        .with_detail("size", meta.len())
        .with_detail("limit", limit));
    }
    Ok((file, meta.len()))
}

/// The contents of the file at `target`, at most [`READ_LIMIT`] bytes.
fn read_file(target: &Target) -> Result<Vec<u8>, ApiError> {
    let (file, size) = open_file(target, READ_LIMIT, "; use /files/download")?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow after the size check: never read past the limit.
    file.take(READ_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| target.err(e))?;
    Ok(bytes)
}

/// `GET /files/download?path=`: the raw bytes.
pub async fn download(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Response, ApiError> {
    let target = Target::resolve(&app, &sandbox, required_path(&query)?)?;
    let name = target
        .relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let limit = app.executor.disk_quota_bytes();
    let (file, size) = blocking(move || open_file(&target, limit, "")).await?;
    // Streamed in chunks: the server holds a few KiB of the file at a time, however big.
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), size);
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let safe_name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `POST /files/write {path, content, encoding?, mode?, overwrite?}`; parent directories are
/// created.
pub async fn write(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<WriteFileRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = Target::resolve(&app, &sandbox, &request.path)?;
    let bytes = match request
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("" | "utf-8" | "utf8" | "text" | "plain") => request.content.into_bytes(),
        Some("base64") => BASE64.decode(request.content.trim()).map_err(|e| {
            ApiError::bad_request(format!("content is not valid base64: {e}"))
                .with_detail("field", "content")
        })?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown encoding '{other}' (use utf-8 or base64)"
            ))
            .with_detail("field", "encoding"))
        }
    };
    let mode = parse_mode(request.mode.as_ref())?;
    let overwrite = request.overwrite.unwrap_or(true);
    blocking(move || {
        let size = store_file(&target, &bytes, overwrite, mode)?;
        Ok(Json(
            json!({ "success": true, "path": target.guest, "size": size }),
        ))
    })
    .await
}

/// Writes `bytes` at `target`, creating parents; returns the size written.
fn store_file(
    target: &Target,
    bytes: &[u8],
    overwrite: bool,
    mode: Option<u32>,
) -> Result<usize, ApiError> {
    if target.is_root() {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_PATH", "/ is a directory")
                .with_path("/"),
        );
    }
    if let Some(parent) = target
        .relative
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        create_dirs(target, parent)?;
    }
    match target.dir.symlink_metadata(&target.relative) {
        Ok(meta) if meta.is_dir() => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                format!("{} is a directory", target.guest),
            )
            .with_path(&target.guest))
        }
        Ok(_) if !overwrite => {
            return Err(ApiError::file(
                &target.guest,
                &std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        _ => {}
    }
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if let Some(quota) = &target.quota {
        if !quota.try_charge(size.saturating_add(crate::engine::ENTRY_BYTES)) {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "STORAGE_FULL",
                format!(
                    "writing {} bytes to {} would exceed the sandbox's disk quota of {} MiB",
                    bytes.len(),
                    target.guest,
                    quota.limit() >> 20
                ),
            )
            .with_path(&target.guest)
            .with_detail("quota_bytes", quota.limit()));
        }
    }
    let is_symlink = target
        .dir
        .symlink_metadata(&target.relative)
        .is_ok_and(|m| m.is_symlink());
    if is_symlink {
        // Write through the link as before (cap-std refuses one that leads out of the tree);
        // renaming over it would silently replace the link with a file.
        target
            .dir
            .write(&target.relative, bytes)
            .map_err(|e| target.err(e))?;
        if let Some(mode) = mode {
            target
                .dir
                .set_permissions(&target.relative, Permissions::from_mode(mode))
                .map_err(|e| target.err(e))?;
        }
    } else {
        replace_file(target, bytes, mode).map_err(|e| target.err(e))?;
    }
    Ok(bytes.len())
}

/// Writes `bytes` to a new file beside `target` and renames it over `target`, so a crash at any
/// moment leaves either the old content or the new, never a truncated file.
fn replace_file(target: &Target, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let name = target
        .relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    let temp = target
        .relative
        .with_file_name(format!(".{name}.wasmbox-{suffix:016x}"));
    let written = (|| {
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = target.dir.open_with(&temp, &options)?;
        file.write_all(bytes)?;
        let permissions = match (mode, target.dir.metadata(&target.relative)) {
            (Some(mode), _) => Some(Permissions::from_mode(mode)),
            // Replacing keeps the old file's permissions.
            (None, Ok(old)) => Some(old.permissions()),
            (None, Err(_)) => None,
        };
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        target.dir.rename(&temp, &target.dir, &target.relative)
    })();
    if written.is_err() {
        let _ = target.dir.remove_file(&temp);
    }
    written
}

/// `create_dir_all` that reports why an existing non-directory is in the way (a symlink
/// leading out of the tree is 403, not "already exists").
fn create_dirs(target: &Target, relative: &Path) -> Result<(), ApiError> {
    match target.dir.create_dir_all(relative) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match target.dir.metadata(relative) {
                Err(inner) => Err(target.err(inner)),
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(target.err(std::io::ErrorKind::NotADirectory.into())),
            }
        }
        Err(e) => Err(target.err(e)),
    }
}

/// `"0644"`/`"644"`/`"0o644"` (octal) or an integer holding the bits; only permission bits.
fn parse_mode(mode: Option<&Value>) -> Result<Option<u32>, ApiError> {
    let invalid = || {
        ApiError::bad_request("mode must be an octal string such as \"0644\"")
            .with_detail("field", "mode")
    };
    let bits = match mode {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => {
            u32::from_str_radix(s.trim().trim_start_matches("0o"), 8).map_err(|_| invalid())?
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(invalid)?,
        Some(_) => return Err(invalid()),
    };
    if bits > 0o7777 {
        return Err(invalid());
    }
    // Keep the owner able to read and write: the API itself must go on serving the file.
    Ok(Some((bits & 0o777) | 0o600))
}

/// `GET /files/list?path=` (default `/workspace`).
pub async fn list(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    let guest = query
        .path
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| WORKSPACE.to_string());
    let target = Target::resolve(&app, &sandbox, &guest)?;
    blocking(move || {
        let meta = target
            .dir
            .metadata(&target.relative)
            .map_err(|e| target.err(e))?;
        if !meta.is_dir() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIRECTORY_NOT_FOUND",
                format!("{} is not a directory", target.guest),
            )
            .with_path(&target.guest));
        }
        let entries = target
            .dir
            .read_dir(&target.relative)
            .map_err(|e| target.err(e))?;
        let mut files = Vec::new();
        let mut truncated = false;
        for entry in entries {
            if files.len() >= LIST_LIMIT {
                truncated = true;
                break;
            }
            let entry = entry.map_err(|e| target.err(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // DirEntry::metadata does not follow symlinks: a link is listed as what it is.
            let Ok(meta) = entry.metadata() else { continue };
            let path = if target.guest == "/" {
                format!("/{name}")
            } else {
                format!("{}/{name}", target.guest)
            };
            files.push(file_entry(name, path, &meta));
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let count = files.len();
        let mut body = json!({ "path": target.guest, "files": files, "count": count });
        if truncated {
            body["truncated"] = json!(true);
        }
        Ok(Json(body))
    })
    .await
}

fn file_entry(name: String, path: String, meta: &Metadata) -> FileEntry {
    let mode = meta.permissions().mode() & 0o7777;
    let kind = if meta.is_symlink() {
        'l'
    } else if meta.is_dir() {
        'd'
    } else {
        '-'
    };
    let modified = meta
        .modified()
        .ok()
        .map(|t| iso(DateTime::<Utc>::from(t.into_std())));
    FileEntry {
        name,
        path,
        size: meta.len(),
        is_directory: meta.is_dir(),
        is_dir: meta.is_dir(),
        is_file: meta.is_file(),
        is_symlink: meta.is_symlink(),
        permissions: format!("{kind}{}", rwx(mode)),
        mode: format!("{mode:04o}"),
        modified_time: modified.clone(),
        modified,
    }
}

/// `rwxr-xr-x` for the permission bits of `mode`.
fn rwx(mode: u32) -> String {
    (0..9)
        .map(|i| {
            let bit = 0o400 >> i;
            if mode & bit == 0 {
                '-'
            } else {
                ['r', 'w', 'x'][i % 3]
            }
        })
        .collect()
}

/// `GET /files/exists?path=`.
pub async fn exists(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    let target = Target::resolve(&app, &sandbox, required_path(&query)?)?;
    blocking(move || {
        let meta = match target.dir.metadata(&target.relative) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(target.err(e)),
        };
        Ok(Json(json!({
            "exists": meta.is_some(),
            "path": target.guest,
            "is_directory": meta.as_ref().is_some_and(Metadata::is_dir),
        })))
    })
    .await
}

/// `DELETE /files/remove?path=`: a file, a symlink (not its target) or a directory tree.
pub async fn remove(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Value>, ApiError> {
    let target = Target::resolve(&app, &sandbox, required_path(&query)?)?;
    if target.is_root() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "PATH_NOT_ALLOWED",
            "the sandbox root cannot be removed",
        )
        .with_path("/"));
    }
    blocking(move || {
        let meta = target
            .dir
            .symlink_metadata(&target.relative)
            .map_err(|e| target.err(e))?;
        if meta.is_dir() {
            // The guest shaped this tree: move it out in one step and let housekeeping
            // remove it without recursion.
            app.store.discard(&target.dir, &target.relative)
        } else {
            target.dir.remove_file(&target.relative)
        }
        .map_err(|e| target.err(e))?;
        if let Some(quota) = &target.quota {
            quota.freed();
        }
        if meta.is_dir() {
            app.housekeeping.notify_one();
        }
        Ok(Json(json!({ "success": true, "path": target.guest })))
    })
    .await
}

/// `POST /files/mkdir {path}`: creates the directory and its parents (no error if present).
pub async fn mkdir(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    ApiJson(request): ApiJson<MkdirRequest>,
) -> Result<Json<Value>, ApiError> {
    let target = Target::resolve(&app, &sandbox, &request.path)?;
    blocking(move || {
        if !target.is_root() {
            create_dirs(&target, &target.relative)?;
        }
        Ok(Json(json!({ "success": true, "path": target.guest })))
    })
    .await
}

/// `POST /files/upload` (multipart: part `file`, part `path`). A `path` naming a directory
/// (or ending in `/`) receives the file under its uploaded name.
pub async fn upload(
    State(app): State<AppState>,
    SandboxAccess(sandbox): SandboxAccess,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let mut path: Option<String> = None;
    let mut file: Option<(Option<String>, Vec<u8>)> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("path") => path = Some(field.text().await.map_err(multipart_error)?),
            Some("file") => {
                let name = field.file_name().map(str::to_string);
                file = Some((name, field.bytes().await.map_err(multipart_error)?.to_vec()));
            }
            _ => {}
        }
    }
    let (name, bytes) = file.ok_or_else(|| {
        ApiError::bad_request("missing multipart part 'file'").with_detail("field", "file")
    })?;
    let base_name = name
        .as_deref()
        .and_then(|n| Path::new(n).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let path = match path.filter(|p| !p.trim().is_empty()) {
        Some(p) if p.ends_with('/') => match &base_name {
            Some(n) => format!("{p}{n}"),
            None => {
                return Err(ApiError::bad_request(
                    "path names a directory and the file part has no name",
                ))
            }
        },
        Some(p) => p,
        None => match &base_name {
            Some(n) => format!("{WORKSPACE}/{n}"),
            None => {
                return Err(ApiError::bad_request("missing multipart part 'path'")
                    .with_detail("field", "path"))
            }
        },
    };
    let mut target = Target::resolve(&app, &sandbox, &path)?;
    blocking(move || {
        if target
            .dir
            .metadata(&target.relative)
            .is_ok_and(|m| m.is_dir())
        {
            let Some(n) = base_name else {
                return Err(ApiError::bad_request(
                    "path names a directory and the file part has no name",
                ));
            };
            target.relative.push(&n);
            target.guest = to_guest(&target.relative);
        }
        let size = store_file(&target, &bytes, true, None)?;
        Ok(Json(
            json!({ "success": true, "path": target.guest, "size": size }),
        ))
    })
    .await
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request(format!("invalid multipart body: {}", err.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(Some(&json!("0644"))).ok(), Some(Some(0o644)));
        assert_eq!(parse_mode(Some(&json!("755"))).ok(), Some(Some(0o755)));
        assert_eq!(parse_mode(Some(&json!("0o400"))).ok(), Some(Some(0o600)));
        assert_eq!(parse_mode(Some(&json!(420))).ok(), Some(Some(0o644)));
        assert!(parse_mode(Some(&json!("rw-"))).is_err());
        assert_eq!(parse_mode(None).ok(), Some(None));
    }

    #[test]
    fn permission_strings() {
        assert_eq!(rwx(0o755), "rwxr-xr-x");
        assert_eq!(rwx(0o640), "rw-r-----");
    }
}
