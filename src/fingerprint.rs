//! Cache keys that stay the same across Rust releases.
//!
//! `DefaultHasher`'s algorithm is explicitly unspecified and may change with any toolchain
//! update, which would silently orphan every cached artifact; SHA-256 over length-prefixed
//! fields does not change.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A running SHA-256 over a sequence of fields.
#[derive(Clone, Default)]
pub(crate) struct Fingerprint(Sha256);

impl Fingerprint {
    /// Adds one field. Each field is length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
    pub(crate) fn bytes(&mut self, field: impl AsRef<[u8]>) -> &mut Self {
        let field = field.as_ref();
        self.0.update((field.len() as u64).to_le_bytes());
        self.0.update(field);
        self
    }

    /// Adds a number.
    pub(crate) fn number(&mut self, value: u128) -> &mut Self {
        self.bytes(value.to_le_bytes())
    }

    /// Adds a path as its raw bytes.
    pub(crate) fn path(&mut self, path: &Path) -> &mut Self {
        self.bytes(path.as_os_str().as_encoded_bytes())
    }

    /// Adds a modification time (nanoseconds since the epoch; 0 when unknown).
    pub(crate) fn mtime(&mut self, modified: Option<SystemTime>) -> &mut Self {
        let nanos = modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        self.number(nanos)
    }

    /// Adds a folder mounted into guests: its host path, its guest path and its modification
    /// time (so replacing what is mounted there changes the key).
    pub(crate) fn mount(&mut self, host: &Path, guest: &str) -> &mut Self {
        let modified = std::fs::metadata(host).and_then(|m| m.modified()).ok();
        self.path(host).bytes(guest).mtime(modified)
    }

    /// Adds a value through its `Hash` implementation, for types (such as wasmtime's engine
    /// settings) that expose nothing else. Only the hasher was unstable: a derived `Hash` of
    /// plain data feeds the same bytes every time.
    pub(crate) fn hashed(&mut self, value: &impl Hash) -> &mut Self {
        let mut fields = FieldHasher(Sha256::new());
        value.hash(&mut fields);
        self.bytes(fields.0.finalize())
    }

    /// The first 64 bits of the digest: plenty to tell a handful of cached versions apart.
    pub(crate) fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    /// The whole digest as 64 hex digits, for keys that must not collide even when someone
    /// tries (content shared between tenants).
    pub(crate) fn digest_hex(&self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// [`Self::finish`] as 16 hex digits, for file names.
    pub(crate) fn hex(&self) -> String {
        format!("{:016x}", self.finish())
    }
}

/// Feeds what a `Hash` implementation writes into SHA-256.
struct FieldHasher(Sha256);

impl Hasher for FieldHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Never called by `Hash` implementations; the digest is what [`Fingerprint`] reads.
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_stable_and_field_separated() {
        let mut a = Fingerprint::default();
        a.bytes("ab").bytes("c");
        let mut b = Fingerprint::default();
        b.bytes("a").bytes("bc");
        assert_ne!(a.finish(), b.finish());
        assert_eq!(a.hex().len(), 16);
        let mut again = Fingerprint::default();
        again.bytes("ab").bytes("c");
        assert_eq!(a.hex(), again.hex());
        // SHA-256 does not change between releases: this value is fixed for good.
        let mut known = Fingerprint::default();
        known.bytes("wasmbox");
        assert_eq!(known.hex(), "c841a753421f1aa2");
    }
}
