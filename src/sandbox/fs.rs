//! A sandbox's directory tree on the host, and safe resolution of guest paths inside it.
//!
//! The tree is mounted as the guest's `/`; it always holds `workspace/` (the default working
//! directory) and `tmp/`. Host-side access goes through cap-std, so `..` and symlinks can never
//! lead outside the tree.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::engine::Mount;

/// The default working directory inside every sandbox.
pub const WORKSPACE: &str = "/workspace";

/// Directories every sandbox tree has at its root.
const SYSTEM_DIRS: [&str; 2] = ["workspace", "tmp"];

/// Errors resolving guest paths.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path points outside the sandbox (through `..` or a symlink).
    #[error("path '{0}' is not allowed: it leaves the sandbox")]
    Escapes(String),
    /// The path is empty, relative where it must not be, or holds a NUL.
    #[error("path '{0}' is not valid")]
    Invalid(String),
    /// The file system refused the operation.
    #[error("{path}: {source}")]
    Io {
        /// The guest path.
        path: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

/// The root of one sandbox's files on the host (the guest's `/`).
#[derive(Clone, Debug)]
pub struct SandboxFs {
    root: PathBuf,
}

impl SandboxFs {
    /// Opens the tree at `root` (creating it if needed) and makes sure it has its `workspace/`
    /// and `tmp/` directories.
    ///
    /// The guest owns everything inside, so either may have been removed or replaced by a file
    /// or a symlink; such an entry is replaced by a fresh, empty directory (as a boot clears
    /// `/tmp`), so one bad run cannot break every later call. All of it goes through cap-std:
    /// a symlink the guest left is removed, never followed.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Self::open(root)
    }

    /// Like [`Self::create`] for a tree that must exist already (a sandbox deleted meanwhile
    /// must not come back as an empty directory).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let dir = Dir::open_ambient_dir(&root, ambient_authority())?;
        for name in SYSTEM_DIRS {
            match dir.symlink_metadata(name) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => {
                    tracing::info!(path = %root.display(), entry = name, "replacing a non-directory with the sandbox's system directory");
                    dir.remove_file(name)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            match dir.create_dir(name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self { root })
    }

    /// The host directory that is the guest's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-write mount of the tree at the guest's `/`.
    pub fn mount(&self) -> Mount {
        Mount {
            host: self.root.clone(),
            guest: "/".into(),
            writable: true,
        }
    }

    /// A capability handle on the tree: every path opened through it stays inside.
    pub fn dir(&self) -> io::Result<Dir> {
        Dir::open_ambient_dir(&self.root, ambient_authority())
    }

    /// Creates the guest directory `guest` (absolute, or relative to `/workspace`) if missing and
    /// returns its normalised absolute guest path.
    pub fn ensure_workdir(&self, guest: &str) -> Result<String, PathError> {
        let relative = normalize(guest)?;
        if !relative.as_os_str().is_empty() {
            self.dir()
                .and_then(|dir| dir.create_dir_all(&relative))
                .map_err(|source| PathError::Io {
                    path: guest.to_string(),
                    source,
                })?;
        }
        Ok(to_guest(&relative))
    }
}

/// Lexically normalises a guest path to a path relative to the sandbox root. Relative input is
/// taken relative to `/workspace`; `..` may not climb above `/`.
pub fn normalize(guest: &str) -> Result<PathBuf, PathError> {
    if guest.contains('\0') {
        return Err(PathError::Invalid(guest.escape_default().to_string()));
    }
    let full = if guest.starts_with('/') {
        PathBuf::from(guest)
    } else {
        Path::new(WORKSPACE).join(guest)
    };
    let mut out = PathBuf::new();
    for component in full.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(PathError::Escapes(guest.to_string()));
                }
            }
            Component::Prefix(_) => return Err(PathError::Invalid(guest.to_string())),
        }
    }
    Ok(out)
}

/// The absolute guest path for a root-relative path.
pub fn to_guest(relative: &Path) -> String {
    format!("/{}", relative.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_inside_root() {
        assert_eq!(
            normalize("/workspace/a/../b").ok(),
            Some(PathBuf::from("workspace/b"))
        );
        assert_eq!(
            normalize("data.txt").ok(),
            Some(PathBuf::from("workspace/data.txt"))
        );
        assert_eq!(normalize("/").ok(), Some(PathBuf::new()));
        assert_eq!(normalize("../tmp").ok(), Some(PathBuf::from("tmp")));
    }

    #[test]
    fn refuses_climbing_out() {
        assert!(matches!(
            normalize("/../etc/passwd"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(normalize("../../tmp"), Err(PathError::Escapes(_))));
        assert!(matches!(
            normalize("../../../etc"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(normalize("a\0b"), Err(PathError::Invalid(_))));
    }

    #[test]
    fn workdir_is_created_inside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = SandboxFs::create(tmp.path()).expect("create");
        assert_eq!(
            fs.ensure_workdir("/tmp/myproject").ok().as_deref(),
            Some("/tmp/myproject")
        );
        assert!(tmp.path().join("tmp/myproject").is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn workdir_through_symlink_out_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let fs = SandboxFs::create(tmp.path()).expect("create");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("workspace/out"))
            .expect("symlink");
        assert!(fs.ensure_workdir("/workspace/out/x").is_err());
        assert!(!outside.path().join("x").exists());
    }

    #[cfg(unix)]
    #[test]
    fn replaced_system_directories_heal_without_following_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("keep"), "x").expect("write");
        let fs = SandboxFs::create(tmp.path()).expect("create");
        std::fs::remove_dir(tmp.path().join("tmp")).expect("rmdir");
        std::fs::write(tmp.path().join("tmp"), "not a dir").expect("file");
        std::fs::remove_dir(tmp.path().join("workspace")).expect("rmdir");
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("workspace")).expect("link");
        let healed = SandboxFs::create(fs.root()).expect("heal");
        assert!(healed.root().join("tmp").is_dir());
        let workspace = std::fs::symlink_metadata(tmp.path().join("workspace")).expect("meta");
        assert!(workspace.is_dir() && !workspace.file_type().is_symlink());
        assert!(outside.path().join("keep").exists());
    }
}
