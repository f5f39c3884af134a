//! Walking a guest-shaped directory tree without recursion and without long paths.
//!
//! A tenant controls the shape of its tree: 25,000 nested directories overflow a recursive walk
//! (a stack overflow aborts the whole server) and exceed `PATH_MAX` for a path-based one. This
//! walker keeps one directory open at a time, works relative to file descriptors (`openat`,
//! `unlinkat`), and remembers the way back as a stack of names, readdir cookies and inode
//! identities, so memory grows with depth by a few dozen bytes a level and no host path is ever
//! built. Going up uses `..`, checked against the remembered identity of the parent, so a guest
//! that moves directories during a walk cannot lead it anywhere but the tree it started in.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};

/// Entries a single walk visits at most: a bound on the host work one tenant can cause.
const MAX_ENTRIES: u64 = 20_000_000;

/// One level of the way back up.
struct Level {
    /// This directory's name in its parent.
    name: CString,
    /// Where to resume reading the parent.
    parent_cookie: i64,
    /// The parent's identity, checked when `..` is opened.
    parent_id: (u64, u64),
}

/// What the walk does with entries.
trait Visitor {
    /// A non-directory entry `name` in the directory `dir`.
    fn entry(&mut self, dir: &Dir, name: &CStr) -> io::Result<()>;
    /// A directory entry whose contents have all been visited, just before it is left; `dir`
    /// is the directory itself.
    fn directory_done(&mut self, dir: &Dir) -> io::Result<()>;
    /// After returning to `parent` from its finished subdirectory `name`.
    fn returned(&mut self, parent: &Dir, name: &CStr) -> io::Result<()>;
}

fn open_dir(base: impl AsFd, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        base,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn identity(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let stat = rfs::fstat(fd)?;
    Ok((stat.st_dev, stat.st_ino))
}

fn walk(root: &Path, visitor: &mut impl Visitor) -> io::Result<()> {
    let root_fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut id = identity(&root_fd)?;
    let mut dir = Dir::new(root_fd)?;
    let mut stack: Vec<Level> = Vec::new();
    let mut visited: u64 = 0;
    loop {
        let mut descended = false;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            visited += 1;
            if visited > MAX_ENTRIES {
                return Err(io::Error::other("directory tree too large to walk"));
            }
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                FileType::Directory => true,
                FileType::Unknown => rfs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)?,
                _ => false,
            };
            if !is_dir {
                visitor.entry(&dir, name)?;
                continue;
            }
            let child = match open_dir(dir.fd()?, name) {
                Ok(fd) => fd,
                // Replaced by a non-directory since it was listed: treat it as one.
                Err(e) if e.raw_os_error() == Some(20) || e.raw_os_error() == Some(40) => {
                    visitor.entry(&dir, name)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            stack.push(Level {
                name: name.to_owned(),
                parent_cookie: entry.offset(),
                parent_id: id,
            });
            id = identity(&child)?;
            dir = Dir::new(child)?;
            descended = true;
            break;
        }
        if descended {
            continue;
        }
        visitor.directory_done(&dir)?;
        let Some(level) = stack.pop() else {
            return Ok(());
        };
        let parent = open_dir(dir.fd()?, c"..")?;
        if identity(&parent)? != level.parent_id {
            return Err(io::Error::other(
                "directory tree changed during the walk; stopped",
            ));
        }
        id = level.parent_id;
        dir = Dir::new(parent)?;
        visitor.returned(&dir, &level.name)?;
        dir.seek(level.parent_cookie)?;
    }
}

/// Bytes of disk the tree at `root` occupies (allocated blocks of every entry, the root
/// included), counting hard-linked files once per link.
pub fn disk_usage(root: &Path) -> io::Result<u64> {
    struct Usage(u64);
    impl Visitor for Usage {
        fn entry(&mut self, dir: &Dir, name: &CStr) -> io::Result<()> {
            match rfs::statat(dir.fd()?, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => self.0 += allocated(&stat),
                // Removed since it was listed.
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        fn directory_done(&mut self, dir: &Dir) -> io::Result<()> {
            self.0 += allocated(&rfs::fstat(dir.fd()?)?);
            Ok(())
        }
        fn returned(&mut self, _: &Dir, _: &CStr) -> io::Result<()> {
            Ok(())
        }
    }
    let mut usage = Usage(0);
    walk(root, &mut usage)?;
    Ok(usage.0)
}

fn allocated(stat: &rfs::Stat) -> u64 {
    u64::try_from(stat.st_blocks).unwrap_or(0) * 512
}

/// Removes the tree at `root` and `root` itself, however deep.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    struct Remove;
    impl Visitor for Remove {
        fn entry(&mut self, dir: &Dir, name: &CStr) -> io::Result<()> {
            match rfs::unlinkat(dir.fd()?, name, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        fn directory_done(&mut self, _: &Dir) -> io::Result<()> {
            Ok(())
        }
        fn returned(&mut self, parent: &Dir, name: &CStr) -> io::Result<()> {
            match rfs::unlinkat(parent.fd()?, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
    // A directory whose entries moved while it was read may still hold some: walk again.
    let mut last = Ok(());
    for _ in 0..3 {
        match std::fs::symlink_metadata(root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Ok(meta) if !meta.is_dir() => return std::fs::remove_file(root),
            _ => {}
        }
        last = walk(root, &mut Remove).and_then(|()| std::fs::remove_dir(root));
        if last.is_ok() {
            return Ok(());
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` nested directories under `root`, built relative to descriptors (the
    /// full path would exceed PATH_MAX), with a file at the bottom.
    fn deep_chain(root: &Path, depth: usize) {
        let mut fd =
            rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open root");
        for _ in 0..depth {
            rfs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).expect("mkdirat");
            fd = open_dir(&fd, c"d").expect("open child");
        }
        let file = rfs::openat(
            &fd,
            c"f",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .expect("create file");
        rustix::io::write(&file, &[7u8; 5000]).expect("write");
    }

    #[test]
    fn removes_a_tree_deeper_than_path_max_and_the_stack() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("tree");
        std::fs::create_dir(&root).expect("mkdir");
        deep_chain(&root, 30_000);
        let usage = disk_usage(&root).expect("usage");
        // 30,001 directories of at least one block, and the file's 5000 bytes.
        assert!(usage >= 30_001 * 512 + 4096, "usage {usage}");
        remove_tree(&root).expect("remove");
        assert!(!root.exists());
    }

    #[test]
    fn usage_counts_files_and_symlinks_without_following_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("tree");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/b/big"), vec![1u8; 1 << 20]).expect("write");
        std::os::unix::fs::symlink("/", root.join("a/escape")).expect("symlink");
        let usage = disk_usage(&root).expect("usage");
        assert!((1 << 20..(1 << 20) + 64 * 1024).contains(&usage), "{usage}");
        remove_tree(&root).expect("remove");
        assert!(!root.exists());
        assert!(Path::new("/").exists());
    }

    #[test]
    fn remove_of_a_missing_tree_is_fine() {
        let tmp = tempfile::tempdir().expect("tempdir");
        remove_tree(&tmp.path().join("missing")).expect("remove");
    }
}
