//! Random identifiers and secrets: sandbox ids, request ids, generated keys.

use rand::distr::Alphanumeric;
use rand::Rng;

/// `len` random ASCII letters and digits from the thread's cryptographically secure generator.
pub(crate) fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
