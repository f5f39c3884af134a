//! Permission bits and file identity where WASI has none.
//!
//! WASI preview 1 stores no mode bits, so on WASI the shell keeps them itself: each directory
//! holding a file whose mode was set (`chmod`, `tar x`) gets a small hidden file
//! [`STORE`] with one line per such entry, `MODE INODE NAME` (octal mode, the inode the host
//! reported when the mode was set, the entry's name). A line applies to the entry of that name
//! while it is still the same file (same inode, when the host reports inodes), so a file created
//! later under a removed one's name or inode does not inherit its mode; `rm` also drops the
//! lines of what it removed, and `cp`/`mv` carry modes along themselves (applets/virt.rs).
//! Files without a line have the defaults: files 644, directories 755, symlinks 777. `ls`, globs,
//! `find` and `tar` never show the store. Natively (the tests) the real mode bits are used.
//!
//! A line's mode may carry a file type: [`FIFO_TYPE`] marks an empty plain file as the name of
//! a named pipe (`mkfifo`), whose pipe the host keeps (`crate::spawn::FifoEnd`, ABI.md).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// The per-directory mode store's file name.
pub const STORE: &str = ".wasmbox-modes";

/// Whether a directory entry is the mode store (hidden from listings).
pub fn is_store_name(name: &OsStr) -> bool {
    name == STORE
}

/// The file-type bits of a named pipe (`S_IFIFO`), kept in the store on WASI.
pub const FIFO_TYPE: u32 = 0o010000;
/// The file-type bits of a mode (`S_IFMT`).
const TYPE_MASK: u32 = 0o170000;

/// The default mode of a file of this kind.
pub fn default_mode(md: &std::fs::Metadata) -> u32 {
    let ft = md.file_type();
    if ft.is_symlink() {
        0o777
    } else if ft.is_dir() {
        0o755
    } else {
        0o644
    }
}

/// The permission bits (0o7777) of `path`, following symlinks; None if it does not exist.
pub fn mode(path: &Path) -> Option<u32> {
    let md = std::fs::metadata(path).ok()?;
    Some(mode_of(path, &md))
}

/// The permission bits of `path` whose metadata is `md`.
pub fn mode_of(path: &Path, md: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        let _ = path;
        use std::os::unix::fs::PermissionsExt;
        md.permissions().mode() & 0o7777
    }
    #[cfg(not(unix))]
    {
        stored(path, md).map_or_else(|| default_mode(md), |m| m & 0o7777)
    }
}

/// The permission bits of `path` with [`FIFO_TYPE`] added for a named pipe (for `ls -l`).
pub fn mode_with_type(path: &Path, md: &std::fs::Metadata) -> u32 {
    let fifo = if is_fifo(path) { FIFO_TYPE } else { 0 };
    mode_of(path, md) | fifo
}

/// Whether `path` (following symlinks) names a named pipe.
pub fn is_fifo(path: &Path) -> bool {
    let Ok(md) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        md.file_type().is_fifo()
    }
    #[cfg(not(unix))]
    {
        md.is_file() && stored(path, &md).is_some_and(|m| m & TYPE_MASK == FIFO_TYPE)
    }
}

/// Whether `path` names a named pipe whose pipe the host keeps (`crate::spawn::FifoEnd`): on
/// WASI; natively a named pipe is a real FIFO the OS opens like a file.
pub fn is_host_fifo(path: &Path) -> bool {
    !cfg!(unix) && is_fifo(path)
}

/// Make the name of a named pipe at `path` with permission bits `perm` (`mkfifo`): natively a
/// real FIFO, on WASI an empty file marked [`FIFO_TYPE`] in the store.
pub fn make_fifo(path: &Path, perm: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let status = std::process::Command::new("mkfifo")
            .arg("-m")
            .arg(format!("{:o}", perm & 0o7777))
            .arg(path)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other("mkfifo failed"))
        }
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let md = std::fs::metadata(path)?;
        store(path, &md, FIFO_TYPE | (perm & 0o7777))
    }
}

/// Whether `path` may be run (any execute bit).
pub fn is_executable(path: &Path) -> bool {
    mode(path).is_some_and(|m| m & 0o111 != 0)
}

/// Give `path` the permission bits `mode`.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let md = std::fs::metadata(path)?;
        store(path, &md, mode)
    }
}

/// (device, inode) of `path` following symlinks, when the platform reports them (0 otherwise).
pub fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(target_os = "wasi")]
    {
        wasi_id(path)
    }
    #[cfg(not(any(unix, target_os = "wasi")))]
    {
        std::fs::metadata(path).ok().map(|_| (0, 0))
    }
}

#[cfg(target_os = "wasi")]
fn wasi_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn fd_filestat_get(fd: i32, buf: *mut u64) -> i32;
    }
    let f = std::fs::File::open(path).ok()?;
    // filestat: dev u64, ino u64, filetype u8 (padded to 8), nlink, size, atim, mtim, ctim
    let mut buf = [0u64; 8];
    // SAFETY: `buf` is 64 writable, 8-aligned bytes, the size of WASI's filestat; the fd is open.
    let err = unsafe { fd_filestat_get(f.as_raw_fd(), buf.as_mut_ptr()) };
    (err == 0).then_some((buf[0], buf[1]))
}

/// Where the store line for `path` lives: (store file, entry name).
fn store_path(path: &Path) -> Option<(PathBuf, String)> {
    let name = path.file_name()?.to_str()?.to_string();
    if name.contains('\n') {
        return None;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir.join(STORE), name))
}

/// One store line: (mode, inode, name).
fn parse_line(l: &str) -> Option<(u32, u64, &str)> {
    let (m, rest) = l.split_once(' ')?;
    let (ino, name) = rest.split_once(' ')?;
    Some((u32::from_str_radix(m, 8).ok()?, ino.parse().ok()?, name))
}

fn matches(line_ino: u64, line_name: &str, ino: u64, name: &str) -> bool {
    line_name == name && (line_ino == 0 || ino == 0 || line_ino == ino)
}

/// The mode the store holds for `path`, if any.
pub fn stored(path: &Path, md: &std::fs::Metadata) -> Option<u32> {
    if md.file_type().is_symlink() {
        return None;
    }
    let (store, name) = store_path(path)?;
    let text = std::fs::read_to_string(store).ok()?;
    let ino = file_id(path).map(|i| i.1).unwrap_or(0);
    text.lines()
        .filter_map(parse_line)
        .find(|&(_, i, n)| matches(i, n, ino, &name))
        .map(|(m, _, _)| m)
}

/// Record `mode` for `path` in its directory's store (a default mode removes the line, and the
/// store goes when it is empty).
pub fn store(path: &Path, md: &std::fs::Metadata, mode: u32) -> io::Result<()> {
    let Some((store, name)) = store_path(path) else {
        return Ok(());
    };
    let ino = file_id(path).map(|i| i.1).unwrap_or(0);
    let old = std::fs::read_to_string(&store).unwrap_or_default();
    let mut out = String::new();
    let mut mode = mode;
    for l in old.lines() {
        match parse_line(l) {
            // chmod keeps the file type (a named pipe stays one)
            Some((m, i, n)) if matches(i, n, ino, &name) && mode & TYPE_MASK == 0 => {
                mode |= m & TYPE_MASK;
            }
            Some((_, i, n)) if matches(i, n, ino, &name) || n == name => {}
            Some(_) => {
                out.push_str(l);
                out.push('\n');
            }
            None => {}
        }
    }
    if mode != default_mode(md) {
        out.push_str(&format!("{mode:o} {ino} {name}\n"));
    }
    if out.is_empty() {
        match std::fs::remove_file(&store) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        std::fs::write(&store, out)
    }
}

/// Drop the store line of `path`, which is gone (after `rm`).
pub fn forget(path: &Path) {
    let Some((store, name)) = store_path(path) else {
        return;
    };
    let Ok(old) = std::fs::read_to_string(&store) else {
        return;
    };
    let kept: String = old
        .lines()
        .filter(|l| parse_line(l).is_some_and(|(_, _, n)| n != name))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() == old.len() {
        return;
    }
    let _ = if kept.is_empty() {
        std::fs::remove_file(&store)
    } else {
        std::fs::write(&store, kept)
    };
}

/// Remove `dir`'s store if it is the only entry left (before `rmdir`).
pub fn drop_lone_store(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut only_store = false;
    for e in rd.flatten() {
        if is_store_name(&e.file_name()) {
            only_store = true;
        } else {
            return;
        }
    }
    if only_store {
        let _ = std::fs::remove_file(dir.join(STORE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ino(d: &Path, name: &str) -> Option<u64> {
        let text = std::fs::read_to_string(d.join(STORE)).ok()?;
        text.lines()
            .filter_map(parse_line)
            .find(|l| l.2 == name)
            .map(|l| l.1)
    }

    #[test]
    fn store_roundtrip() {
        let d = std::env::temp_dir().join(format!("wasmbox-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("f");
        let g = d.join("g");
        std::fs::write(&f, "x").unwrap();
        std::fs::write(&g, "y").unwrap();
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(stored(&f, &md), None);
        store(&f, &md, 0o600).unwrap();
        store(&g, &md, 0o755).unwrap();
        assert_eq!(stored(&f, &md), Some(0o600));
        assert_eq!(stored(&g, &md), Some(0o755));
        store(&f, &md, 0o700).unwrap();
        assert_eq!(stored(&f, &md), Some(0o700));
        // the line is the name's: another name for the same file (a hard link) has none, a
        // new file under the name (another inode) neither
        let h = d.join("h");
        std::fs::hard_link(&f, &h).unwrap();
        assert_eq!(stored(&h, &md), None);
        std::fs::remove_file(&g).unwrap();
        std::fs::write(d.join("keep"), "so that g's inode is not the next one").unwrap();
        std::fs::write(&g, "new").unwrap();
        if file_id(&g).map(|i| i.1) != parse_ino(&d, "g") {
            assert_eq!(stored(&g, &md), None);
        }
        forget(&g);
        assert_eq!(parse_ino(&d, "g"), None);
        std::fs::remove_file(d.join("keep")).unwrap();
        // back to the default: the lines go, then the store
        store(&f, &md, 0o644).unwrap();
        store(&g, &md, 0o644).unwrap();
        assert!(!d.join(STORE).exists());
        std::fs::remove_file(&f).unwrap();
        std::fs::remove_file(&g).unwrap();
        std::fs::remove_file(&h).unwrap();
        std::fs::write(d.join(STORE), "600 1 x\n").unwrap();
        drop_lone_store(&d);
        std::fs::remove_dir(&d).unwrap();
    }
}
