//! Replacing a file so that readers (another process, or this one after a crash) see either the
//! old contents or the new, never a torn write.

use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same directory that is synced
/// and then renamed over `path`. The file is created with mode 0600 (`tempfile`'s default):
/// everything written this way is private to the server (keys, metadata, compiled code).
///
/// The sync matters: without it a crash shortly after the rename can leave an empty file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let entries = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(entries, 1);
    }
}
