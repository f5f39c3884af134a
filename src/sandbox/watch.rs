//! Change events under a directory of a sandbox tree (inotify, through `notify`), reported as
//! guest paths. Symbolic links are not followed, and a path that resolves outside the tree is
//! refused, so a watch never sees past the sandbox.

use std::path::{Path, PathBuf};

use notify::{Config, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::fs::{normalize, to_guest, PathError, SandboxFs};

/// Events queued per watch before further ones are dropped (a slow client loses events, the
/// server does not grow).
const QUEUE: usize = 1024;

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A file or directory appeared.
    Created,
    /// Its contents or metadata changed.
    Modified,
    /// It was removed.
    Deleted,
    /// It was renamed (reported for both names).
    Renamed,
}

/// One change, at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Absolute guest path (`/workspace/a.txt`).
    pub path: String,
    /// What happened.
    pub kind: ChangeKind,
}

/// A live watch; dropping it stops the events.
pub struct TreeWatch {
    _watcher: notify::RecommendedWatcher,
    /// The changes, as they happen.
    pub changes: mpsc::Receiver<Change>,
}

/// Why a path cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The path is invalid or leaves the sandbox.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The path is not an existing directory.
    #[error("'{0}' is not a directory in the sandbox")]
    NotADirectory(String),
    /// The kernel refused the watch (e.g. out of inotify instances).
    #[error("watching '{path}' failed")]
    Watch {
        /// The guest path.
        path: String,
        /// The watcher's failure.
        #[source]
        source: notify::Error,
    },
}

/// Watches the directory `guest` (and everything under it) of the tree `fs`.
pub fn watch(fs: &SandboxFs, guest: &str) -> Result<TreeWatch, WatchError> {
    let relative = normalize(guest)?;
    let root = fs.root().canonicalize().map_err(|source| PathError::Io {
        path: "/".into(),
        source,
    })?;
    let target = root
        .join(&relative)
        .canonicalize()
        .map_err(|_| WatchError::NotADirectory(guest.to_string()))?;
    if !target.starts_with(&root) {
        return Err(PathError::Escapes(guest.to_string()).into());
    }
    if !target.is_dir() {
        return Err(WatchError::NotADirectory(guest.to_string()));
    }
    let (tx, changes) = mpsc::channel(QUEUE);
    let handler_root = root.clone();
    let mut watcher = notify::RecommendedWatcher::new(
        move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let Some(kind) = kind_of(&event.kind) else {
                return;
            };
            for path in &event.paths {
                // The file API's own temporary files (written, then renamed over the target).
                let temporary = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.contains(".wasmbox-"));
                if temporary {
                    continue;
                }
                if let Some(path) = guest_path(&handler_root, path) {
                    // A full queue drops the event rather than holding the watcher's thread.
                    let _ = tx.try_send(Change { path, kind });
                }
            }
        },
        Config::default().with_follow_symlinks(false),
    )
    .map_err(|source| WatchError::Watch {
        path: guest.to_string(),
        source,
    })?;
    watcher
        .watch(&target, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            path: guest.to_string(),
            source,
        })?;
    Ok(TreeWatch {
        _watcher: watcher,
        changes,
    })
}

/// A rename's halves are what they look like from the watched tree: the new name appears
/// (created), the old one goes (deleted); a rename reported as one event is `renamed`.
fn kind_of(kind: &EventKind) -> Option<ChangeKind> {
    use notify::event::{ModifyKind, RenameMode};
    match kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            Some(ChangeKind::Created)
        }
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            Some(ChangeKind::Deleted)
        }
        EventKind::Modify(ModifyKind::Name(_)) => Some(ChangeKind::Renamed),
        EventKind::Modify(_) => Some(ChangeKind::Modified),
        _ => None,
    }
}

/// The guest path of a host path under `root`; `None` outside it.
fn guest_path(root: &Path, host: &Path) -> Option<String> {
    let relative: PathBuf = host.strip_prefix(root).ok()?.to_path_buf();
    Some(to_guest(&relative))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn next(watch: &mut TreeWatch) -> Change {
        tokio::time::timeout(Duration::from_secs(5), watch.changes.recv())
            .await
            .expect("an event in time")
            .expect("open")
    }

    #[tokio::test]
    async fn reports_guest_paths_and_refuses_paths_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = SandboxFs::create(dir.path().join("root")).expect("create");
        let mut watch = watch(&fs, "/workspace").expect("watch");
        std::fs::write(fs.root().join("workspace/a.txt"), b"1").expect("write");
        let first = next(&mut watch).await;
        assert_eq!(
            first,
            Change {
                path: "/workspace/a.txt".into(),
                kind: ChangeKind::Created
            }
        );
        std::fs::remove_file(fs.root().join("workspace/a.txt")).expect("remove");
        let mut kinds = Vec::new();
        while let Ok(Some(change)) =
            tokio::time::timeout(Duration::from_millis(500), watch.changes.recv()).await
        {
            kinds.push(change.kind);
        }
        assert!(kinds.contains(&ChangeKind::Deleted), "{kinds:?}");

        assert!(matches!(
            super::watch(&fs, "/../etc"),
            Err(WatchError::Path(_))
        ));
        assert!(matches!(
            super::watch(&fs, "/workspace/missing"),
            Err(WatchError::NotADirectory(_))
        ));
        std::os::unix::fs::symlink("/etc", fs.root().join("workspace/out")).expect("symlink");
        assert!(matches!(
            super::watch(&fs, "/workspace/out"),
            Err(WatchError::Path(PathError::Escapes(_)))
        ));
    }
}
