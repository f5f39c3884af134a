//! The files scripts expect that a WASI sandbox tree does not have: the device files
//! (`/dev/null`, `/dev/zero`, `/dev/urandom`, `/dev/random`, `/dev/stdin`, `/dev/stdout`,
//! `/dev/stderr`) and the program directories `/bin` and `/usr/bin`, which list the applets.
//! Each name is virtual only while the sandbox tree has nothing real at that path, so a real
//! file or directory of the user's is never shadowed (and natively the real ones are used).

use std::io::{self, Read};
use std::path::Path;

/// A virtual device file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    Null,
    Zero,
    Random,
    Stdin,
    Stdout,
    Stderr,
}

/// A virtual path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Virt {
    Dev(Dev),
    /// `/dev`, `/bin`, `/usr/bin`, `/usr`: directories.
    Dir,
    /// `/bin/NAME`, `/usr/bin/NAME` for a program the sandbox runs.
    Program,
}

/// The device `path` names (exact spelling), whether or not a real file exists there.
pub fn device_name(path: &str) -> Option<Dev> {
    Some(match path {
        "/dev/null" => Dev::Null,
        "/dev/zero" => Dev::Zero,
        "/dev/urandom" | "/dev/random" => Dev::Random,
        "/dev/stdin" | "/dev/fd/0" => Dev::Stdin,
        "/dev/stdout" | "/dev/fd/1" => Dev::Stdout,
        "/dev/stderr" | "/dev/fd/2" => Dev::Stderr,
        _ => return None,
    })
}

/// The device `path` names when the sandbox tree has no real file there.
pub fn device(path: &str) -> Option<Dev> {
    device_name(path).filter(|_| !real(path))
}

fn real(path: &str) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Where the sandbox says its programs live (what `which`, `command -v` and `type` print).
pub fn program_path(name: &str) -> String {
    format!("/usr/bin/{name}")
}

/// The program directories whose listing is the applets.
pub fn is_bin_dir(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "/bin" | "/usr/bin")
}

/// What `path` is, if it is virtual (nothing real there).
pub fn lookup(path: &str) -> Option<Virt> {
    if let Some(d) = device_name(path) {
        return (!real(path)).then_some(Virt::Dev(d));
    }
    let t = path.trim_end_matches('/');
    if matches!(t, "/dev" | "/bin" | "/usr" | "/usr/bin") {
        return (!real(t)).then_some(Virt::Dir);
    }
    if let Some((dir, base)) = t.rsplit_once('/') {
        if is_bin_dir(dir) && crate::exec::is_known_program(base) && !real(t) {
            return Some(Virt::Program);
        }
    }
    None
}

/// `test`'s file operators on a virtual path (None: not virtual, use the real file).
pub fn test_file(op: &str, path: &str) -> Option<bool> {
    let v = lookup(path)?;
    Some(matches!(
        (op, v),
        ("-e" | "-a" | "-r", _)
            | ("-w" | "-c", Virt::Dev(_))
            | ("-d" | "-x", Virt::Dir)
            | ("-f" | "-x" | "-s", Virt::Program)
    ))
}

/// The names `ls /bin` shows: the applets, python3 and node.
pub fn bin_listing() -> Vec<String> {
    let mut v: Vec<String> = crate::applets::applet_names()
        .into_iter()
        .map(str::to_string)
        .chain(["node", "python3"].map(String::from))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// An endless reader of zero bytes or of random bytes.
pub struct Endless {
    random: bool,
    state: u64,
}

impl Endless {
    pub fn new(random: bool) -> Endless {
        let mut seed = [0u8; 8];
        if random {
            // std's hasher keys come from the system's randomness (WASI random_get)
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            seed = h.finish().to_le_bytes();
        }
        Endless {
            random,
            state: u64::from_le_bytes(seed) | 1,
        }
    }
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.random {
            for b in buf.iter_mut() {
                // xorshift64*
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                *b = (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
            }
        } else {
            buf.fill(0);
        }
        Ok(buf.len())
    }
}

/// Open `path` for reading the way applets do: `-` and the device files included.
pub fn open_read(path: &str) -> io::Result<Box<dyn Read>> {
    if path == "-" {
        return Ok(Box::new(io::stdin()));
    }
    match device(path) {
        Some(Dev::Null | Dev::Stdout | Dev::Stderr) => Ok(Box::new(io::empty())),
        Some(Dev::Zero) => Ok(Box::new(Endless::new(false))),
        Some(Dev::Random) => Ok(Box::new(Endless::new(true))),
        Some(Dev::Stdin) => Ok(Box::new(io::stdin())),
        None => Ok(Box::new(std::fs::File::open(Path::new(path))?)),
    }
}

/// The whole content of `path` (`-` and the device files included; the endless ones refuse).
pub fn read_all(path: &str) -> io::Result<Vec<u8>> {
    if matches!(device(path), Some(Dev::Zero | Dev::Random)) {
        return Err(io::Error::other(
            "endless device, read it through head -c N",
        ));
    }
    let mut v = Vec::new();
    open_read(path)?.read_to_end(&mut v)?;
    Ok(v)
}
