//! Opening the files of a stage's redirections inside the sandbox's mounts.

use std::io::Seek;

use wasmbox_spawn_abi::OutputMode;

use crate::engine::Mount;

/// Lexically normalise an absolute guest path.
pub(super) fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn io_message(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "No such file or directory".into(),
        PermissionDenied => "Permission denied".into(),
        IsADirectory => "Is a directory".into(),
        NotADirectory => "Not a directory".into(),
        ReadOnlyFilesystem => "Read-only file system".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// Open a guest path inside the sandbox's mounts (cap-std: no escape through `..` or symlinks),
/// for reading when `write` is `None`.
pub(super) fn open_in_sandbox(
    mounts: &[Mount],
    cwd: &str,
    path: &str,
    write: Option<OutputMode>,
    offset: Option<u64>,
) -> Result<std::fs::File, String> {
    let abs = if path.starts_with('/') {
        normalize(path)
    } else {
        normalize(&format!("{cwd}/{path}"))
    };
    let mount = mounts
        .iter()
        .filter(|m| {
            let g = m.guest.trim_end_matches('/');
            g.is_empty() || abs == g || abs.starts_with(&format!("{g}/"))
        })
        .max_by_key(|m| m.guest.trim_end_matches('/').len())
        .ok_or_else(|| "No such file or directory".to_string())?;
    let rel = abs[mount.guest.trim_end_matches('/').len()..].trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    if write.is_some() && !mount.writable {
        return Err("Read-only file system".into());
    }
    let dir = cap_std::fs::Dir::open_ambient_dir(&mount.host, cap_std::ambient_authority())
        .map_err(|e| io_message(&e))?;
    let mut o = cap_std::fs::OpenOptions::new();
    match write {
        None => o.read(true),
        Some(OutputMode::Append) => o.append(true).create(true),
        Some(OutputMode::ReadWrite) => o.read(true).write(true).create(true),
        Some(OutputMode::Write) => o.write(true).create(true).truncate(true),
    };
    let f = dir.open_with(rel, &o).map_err(|e| io_message(&e))?;
    let mut f = f.into_std();
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err("Is a directory".into());
    }
    if let Some(off) = offset {
        f.seek(std::io::SeekFrom::Start(off))
            .map_err(|e| io_message(&e))?;
    }
    Ok(f)
}
