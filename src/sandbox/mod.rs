//! Sandboxes: an id, a directory tree, an environment and an expiry, persisted on disk so a
//! restarted server (or a later CLI call) finds them again.

pub mod fs;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use fs::{PathError, SandboxFs, WORKSPACE};

const META_FILE: &str = "sandbox.json";
const FS_DIR: &str = "fs";

/// Errors of the sandbox registry.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox '{0}' not found")]
    NotFound(String),
    #[error("sandbox store at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sandbox metadata at {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Lifecycle state as the HopX API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    Running,
    Paused,
}

/// Persisted description of one sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub template: String,
    pub status: SandboxStatus,
    /// Environment every execution in this sandbox starts with (request env wins over it).
    pub env: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    /// When the sandbox is reaped; `None` keeps it until deleted.
    pub expires_at: Option<DateTime<Utc>>,
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
    pub template: String,
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: Option<u64>,
}

/// The registry of sandboxes under one data directory.
#[derive(Debug)]
pub struct SandboxStore {
    dir: PathBuf,
    sandboxes: RwLock<HashMap<String, Sandbox>>,
}

impl SandboxStore {
    /// Opens (creating if needed) the store under `data_dir`, loading every persisted sandbox.
    pub fn open(data_dir: &Path) -> Result<Self, SandboxError> {
        let dir = data_dir.join("sandboxes");
        std::fs::create_dir_all(&dir).map_err(|source| SandboxError::Io {
            path: dir.clone(),
            source,
        })?;
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
            sandboxes: RwLock::new(sandboxes),
        })
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The directory tree of sandbox `id` (the guest's `/`).
    pub fn files(&self, id: &str) -> Result<SandboxFs, SandboxError> {
        self.get(id)?;
        let root = self.sandbox_dir(id).join(FS_DIR);
        SandboxFs::create(&root).map_err(|source| SandboxError::Io { path: root, source })
    }

    /// Creates and persists a new sandbox with an empty `/workspace` and `/tmp`.
    pub fn create(&self, new: NewSandbox) -> Result<Sandbox, SandboxError> {
        let now = Utc::now();
        let sandbox = Sandbox {
            id: new_id(),
            template: new.template,
            status: SandboxStatus::Running,
            env: new.env,
            created_at: now,
            expires_at: new.timeout_seconds.map(|s| {
                now + ChronoDuration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
            }),
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

    /// Deletes sandbox `id` with all its files.
    pub fn delete(&self, id: &str) -> Result<(), SandboxError> {
        if self.write_lock().remove(id).is_none() {
            return Err(SandboxError::NotFound(id.to_string()));
        }
        let dir = self.sandbox_dir(id);
        std::fs::remove_dir_all(&dir).map_err(|source| SandboxError::Io { path: dir, source })
    }

    /// Deletes every expired sandbox; returns how many were reaped.
    pub fn reap_expired(&self) -> usize {
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
            .iter()
            .filter(|id| {
                self.write_lock().remove(id.as_str());
                std::fs::remove_dir_all(self.sandbox_dir(id)).is_ok()
            })
            .count()
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
        let json = serde_json::to_vec_pretty(sandbox).map_err(|e| SandboxError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        std::fs::write(&tmp, json).map_err(io_err)?;
        std::fs::rename(&tmp, &path).map_err(io_err)
    }
}

/// A fresh sandbox id: `sbx_` and 16 random lowercase letters and digits.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("sbx_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(store.reap_expired(), 1);
        assert!(!tmp.path().join("sandboxes").join(&sb.id).exists());
    }
}
