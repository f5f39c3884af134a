//! Sandboxes: an id, a directory tree, an environment and an expiry, persisted on disk so a
//! restarted server (or a later CLI call) finds them again.

pub mod fs;
mod tree;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

use crate::atomic_write::write_atomic;
use crate::ids::random_alphanumeric;

pub use fs::{PathError, SandboxFs, WORKSPACE};
pub use tree::{disk_usage, remove_tree};

const META_FILE: &str = "sandbox.json";
const FS_DIR: &str = "fs";
/// Beside `sandboxes/` in the data dir: deleted sandboxes wait here to be removed.
const TRASH_DIR: &str = "trash";

/// Errors of the sandbox registry.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No sandbox has this id (or it expired).
    #[error("sandbox '{0}' not found")]
    NotFound(String),
    /// The registry on disk could not be read or written.
    #[error("sandbox store at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// A sandbox's metadata could not be encoded or decoded.
    #[error("sandbox metadata at {path} is corrupt")]
    Corrupt {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

/// Lifecycle state as the HopX API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    /// Accepts executions.
    Running,
    /// Refuses executions until resumed.
    Paused,
}

impl SandboxStatus {
    /// Every status.
    pub const ALL: [SandboxStatus; 2] = [SandboxStatus::Running, SandboxStatus::Paused];

    /// The name the API reports (and its `status` filter takes).
    pub fn name(self) -> &'static str {
        match self {
            SandboxStatus::Running => "running",
            SandboxStatus::Paused => "paused",
        }
    }
}

/// Persisted description of one sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    /// The id clients address it by (also its directory name).
    pub id: String,
    /// The template it was created from (the HopX name, e.g. `code-interpreter`).
    pub template: String,
    /// Whether it accepts executions.
    pub status: SandboxStatus,
    /// Environment every execution in this sandbox starts with (request env wins over it).
    pub env: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the sandbox is reaped; `None` keeps it until deleted.
    pub expires_at: Option<DateTime<Utc>>,
    /// The lifetime asked for at creation; `expires_at` is derived from it.
    pub timeout_seconds: Option<u64>,
}

impl Sandbox {
    /// Whether the sandbox has outlived its expiry at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What a new sandbox starts with.
#[derive(Clone, Debug, Default)]
pub struct NewSandbox {
    /// The template name to record.
    pub template: String,
    /// Environment every execution in it starts with.
    pub env: BTreeMap<String, String>,
    /// Lifetime in seconds; `None` keeps it until deleted.
    pub timeout_seconds: Option<u64>,
}

/// The registry of sandboxes under one data directory.
///
/// Deleting a sandbox renames its directory into the trash (atomic: after that it is gone,
/// even if the process dies a moment later) and [`Self::purge_trash`] removes the files later,
/// off the request path and without recursion (see `tree.rs`); a restarted server finishes
/// whatever an earlier one left in the trash.
#[derive(Debug)]
pub struct SandboxStore {
    dir: PathBuf,
    trash: PathBuf,
    sandboxes: RwLock<HashMap<String, Sandbox>>,
    /// In cluster mode, this node's id: new sandbox ids name it so any node finds the owner.
    node: Option<String>,
}

impl SandboxStore {
    /// Opens (creating if needed) the store under `data_dir`, loading every persisted sandbox.
    pub fn open(data_dir: &Path) -> Result<Self, SandboxError> {
        let dir = data_dir.join("sandboxes");
        let trash = data_dir.join(TRASH_DIR);
        for path in [&dir, &trash] {
            std::fs::create_dir_all(path).map_err(|source| SandboxError::Io {
                path: path.clone(),
                source,
            })?;
        }
        let mut sandboxes = HashMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| SandboxError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let meta = entry.path().join(META_FILE);
            let Ok(text) = std::fs::read_to_string(&meta) else {
                continue;
            };
            match serde_json::from_str::<Sandbox>(&text) {
                Ok(sandbox) => {
                    sandboxes.insert(sandbox.id.clone(), sandbox);
                }
                Err(e) => {
                    tracing::warn!(path = %meta.display(), error = %e, "skipping corrupt sandbox metadata")
                }
            }
        }
        Ok(Self {
            dir,
            trash,
            sandboxes: RwLock::new(sandboxes),
            node: None,
        })
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Where the tree of sandbox `id` lives (whether or not the sandbox exists).
    pub fn fs_root(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join(FS_DIR)
    }

    /// Where sandbox `id` keeps state the guest must not see (kernel images): beside its tree.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.sandbox_dir(id).join("kernels")
    }

    /// The directory tree of sandbox `id` (the guest's `/`).
    pub fn files(&self, id: &str) -> Result<SandboxFs, SandboxError> {
        self.get(id)?;
        let root = self.fs_root(id);
        SandboxFs::open(&root).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => SandboxError::NotFound(id.to_string()),
            _ => SandboxError::Io { path: root, source },
        })
    }

    /// Names new sandboxes after cluster node `node` (`sbx_<node>_<random>`).
    pub fn set_node(&mut self, node: &str) {
        self.node = Some(node.to_string());
    }

    /// Live sandboxes (for placement).
    pub fn len(&self) -> usize {
        let now = Utc::now();
        let sandboxes = self.sandboxes.read().unwrap_or_else(|e| e.into_inner());
        sandboxes.values().filter(|s| !s.is_expired(now)).count()
    }

    /// Whether there is no live sandbox.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates and persists a new sandbox with an empty `/workspace` and `/tmp`.
    pub fn create(&self, new: NewSandbox) -> Result<Sandbox, SandboxError> {
        let now = Utc::now();
        let sandbox = Sandbox {
            id: new_id(self.node.as_deref()),
            template: new.template,
            status: SandboxStatus::Running,
            env: new.env,
            created_at: now,
            expires_at: new.timeout_seconds.and_then(|s| expiry(now, s)),
            timeout_seconds: new.timeout_seconds,
        };
        let root = self.sandbox_dir(&sandbox.id).join(FS_DIR);
        SandboxFs::create(&root).map_err(|source| SandboxError::Io { path: root, source })?;
        self.persist(&sandbox)?;
        self.write_lock()
            .insert(sandbox.id.clone(), sandbox.clone());
        Ok(sandbox)
    }

    /// The sandbox `id`, unless it does not exist or has expired.
    pub fn get(&self, id: &str) -> Result<Sandbox, SandboxError> {
        let sandboxes = self.sandboxes.read().unwrap_or_else(|e| e.into_inner());
        match sandboxes.get(id) {
            Some(s) if !s.is_expired(Utc::now()) => Ok(s.clone()),
            _ => Err(SandboxError::NotFound(id.to_string())),
        }
    }

    /// All live sandboxes, oldest first.
    pub fn list(&self) -> Vec<Sandbox> {
        let now = Utc::now();
        let sandboxes = self.sandboxes.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Sandbox> = sandboxes
            .values()
            .filter(|s| !s.is_expired(now))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        list
    }

    /// Applies `change` to sandbox `id` and persists the result. The write lock is held across
    /// the change and the write to disk, so concurrent updates (two `PATCH /env` at once) cannot
    /// lose each other's changes.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Sandbox),
    ) -> Result<Sandbox, SandboxError> {
        let mut sandboxes = self.write_lock();
        let sandbox = match sandboxes.get_mut(id) {
            Some(s) if !s.is_expired(Utc::now()) => s,
            _ => return Err(SandboxError::NotFound(id.to_string())),
        };
        let mut changed = sandbox.clone();
        change(&mut changed);
        self.persist(&changed)?;
        *sandbox = changed.clone();
        Ok(changed)
    }

    /// Deletes sandbox `id`: its directory moves into the trash at once; call
    /// [`Self::purge_trash`] to remove the files.
    pub fn delete(&self, id: &str) -> Result<(), SandboxError> {
        let mut sandboxes = self.write_lock();
        if !sandboxes.contains_key(id) {
            return Err(SandboxError::NotFound(id.to_string()));
        }
        self.move_to_trash(id)?;
        sandboxes.remove(id);
        Ok(())
    }

    fn move_to_trash(&self, id: &str) -> Result<(), SandboxError> {
        let from = self.sandbox_dir(id);
        let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let to = self.trash.join(format!("{id}.{stamp}"));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SandboxError::Io { path: from, source }),
        }
    }

    /// Moves `relative` (inside the tree `dir`) into the trash, so a tree of any shape leaves
    /// the sandbox in one atomic step; [`Self::purge_trash`] removes it.
    pub fn discard(&self, dir: &cap_std::fs::Dir, relative: &Path) -> io::Result<()> {
        let trash = cap_std::fs::Dir::open_ambient_dir(&self.trash, cap_std::ambient_authority())?;
        let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        dir.rename(
            relative,
            &trash,
            format!("discarded.{stamp}.{}", new_id(None)),
        )
    }

    /// Removes everything in the trash; returns how many trees were removed. Slow for big
    /// trees: run it off the request path.
    pub fn purge_trash(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.trash) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| match tree::remove_tree(&entry.path()) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "removing a deleted sandbox's files failed");
                    false
                }
            })
            .count()
    }

    /// Bytes the files of sandbox `id` occupy on disk.
    pub fn disk_usage(&self, id: &str) -> io::Result<u64> {
        tree::disk_usage(&self.sandbox_dir(id).join(FS_DIR))
    }

    /// Moves every expired sandbox to the trash; returns the ids reaped.
    pub fn reap_expired(&self) -> Vec<String> {
        let now = Utc::now();
        let expired: Vec<String> = {
            let sandboxes = self.sandboxes.read().unwrap_or_else(|e| e.into_inner());
            sandboxes
                .values()
                .filter(|s| s.is_expired(now))
                .map(|s| s.id.clone())
                .collect()
        };
        expired
            .into_iter()
            .filter(|id| {
                let mut sandboxes = self.write_lock();
                match self.move_to_trash(id) {
                    Ok(()) => sandboxes.remove(id).is_some(),
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "reaping an expired sandbox failed");
                        false
                    }
                }
            })
            .collect()
    }

    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Sandbox>> {
        self.sandboxes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, sandbox: &Sandbox) -> Result<(), SandboxError> {
        let dir = self.sandbox_dir(&sandbox.id);
        let path = dir.join(META_FILE);
        let io_err = |source| SandboxError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(sandbox).map_err(|source| SandboxError::Corrupt {
            path: path.clone(),
            source,
        })?;
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        write_atomic(&path, &json).map_err(io_err)
    }
}

/// When a sandbox created at `now` with a timeout of `seconds` expires; `None` when that lies
/// beyond what a timestamp can hold (as good as never).
pub fn expiry(now: DateTime<Utc>, seconds: u64) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(seconds).ok()?;
    now.checked_add_signed(ChronoDuration::try_seconds(seconds)?)
}

/// A fresh sandbox id: `sbx_`, the cluster node's id and `_` in cluster mode, and 16 random
/// lowercase letters and digits.
fn new_id(node: Option<&str>) -> String {
    let random = random_alphanumeric(16).to_ascii_lowercase();
    match node {
        Some(node) => format!("sbx_{node}_{random}"),
        None => format!("sbx_{random}"),
    }
}

/// The cluster node a sandbox id names (`sbx_<node>_<random>`); `None` for single-node ids.
pub fn node_of(id: &str) -> Option<&str> {
    let (node, random) = id.strip_prefix("sbx_")?.rsplit_once('_')?;
    (is_node_id(node) && !random.is_empty()).then_some(node)
}

/// Node ids are DNS labels (StatefulSet pod names such as `wasmbox-0`): lowercase letters,
/// digits and `-`, at most 40, so they fit in ids, paths and host names.
pub fn is_node_id(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 40
        && !node.starts_with('-')
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_name_their_node() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = SandboxStore::open(tmp.path()).expect("open");
        let single = store.create(NewSandbox::default()).expect("create");
        assert_eq!(node_of(&single.id), None);
        store.set_node("wasmbox-2");
        let clustered = store.create(NewSandbox::default()).expect("create");
        assert!(
            clustered.id.starts_with("sbx_wasmbox-2_"),
            "{}",
            clustered.id
        );
        assert_eq!(node_of(&clustered.id), Some("wasmbox-2"));
        assert_eq!(store.get(&clustered.id).expect("get").id, clustered.id);
        assert_eq!(node_of("sbx_Bad_x"), None);
        assert_eq!(node_of("sbx_a_"), None);
        assert!(!is_node_id("a_b") && !is_node_id("") && is_node_id("n1"));
    }

    #[test]
    fn create_get_persist_delete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SandboxStore::open(tmp.path()).expect("open");
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let sb = store
            .create(NewSandbox {
                template: "python".into(),
                env,
                timeout_seconds: None,
            })
            .expect("create");
        assert!(store
            .files(&sb.id)
            .expect("files")
            .root()
            .join("workspace")
            .is_dir());
        let reopened = SandboxStore::open(tmp.path()).expect("reopen");
        assert_eq!(
            reopened
                .get(&sb.id)
                .expect("get")
                .env
                .get("A")
                .map(String::as_str),
            Some("1")
        );
        reopened.delete(&sb.id).expect("delete");
        assert!(!tmp.path().join("sandboxes").join(&sb.id).exists());
        reopened.purge_trash();
        assert!(matches!(
            reopened.get(&sb.id),
            Err(SandboxError::NotFound(_))
        ));
    }

    #[test]
    fn expired_sandboxes_are_hidden_and_reaped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = SandboxStore::open(tmp.path()).expect("open");
        let sb = store.create(NewSandbox::default()).expect("create");
        store
            .update(&sb.id, |s| {
                s.expires_at = Some(Utc::now() - ChronoDuration::seconds(1))
            })
            .expect("update");
        // `update` refuses expired sandboxes only after the change, so the expiry sticks.
        assert!(store.get(&sb.id).is_err());
        assert_eq!(store.reap_expired(), vec![sb.id.clone()]);
        assert!(!tmp.path().join("sandboxes").join(&sb.id).exists());
        assert_eq!(store.purge_trash(), 1);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("trash"))
                .expect("trash")
                .count(),
            0
        );
    }
}
