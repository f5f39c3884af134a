//! Per-sandbox disk quota, enforced while the guest writes.
//!
//! Measuring a tree on every write would be far too slow and filesystems here have no
//! per-directory quotas, so the quota keeps an estimate: the usage last measured plus every
//! byte written and every entry created since (an upper bound — overwrites and deletions only
//! make the true figure smaller). Only when a write would take the estimate past the limit is the
//! tree measured again (at most every [`REMEASURE_INTERVAL`]); if it is still over, the write
//! fails with `ENOSPC` in the guest.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes charged for creating a file, directory or link (a block and an inode).
pub const ENTRY_BYTES: u64 = 4096;
/// Shortest time between two measurements of the same tree.
const REMEASURE_INTERVAL: Duration = Duration::from_millis(250);

/// Measures the bytes a tree occupies now.
pub type Measure = Box<dyn Fn() -> io::Result<u64> + Send + Sync>;

/// A byte budget for one sandbox's files.
pub struct DiskQuota {
    limit: u64,
    estimate: AtomicU64,
    measure: Measure,
    last_measured: Mutex<Option<Instant>>,
    /// Set when a write was refused, so the result can say why.
    refused: AtomicBool,
}

impl fmt::Debug for DiskQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskQuota")
            .field("limit", &self.limit)
            .field("estimate", &self.estimate.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl DiskQuota {
    /// A quota of `limit` bytes over the tree that `measure` sizes (measured once now).
    pub fn new(limit: u64, measure: Measure) -> Self {
        let quota = Self {
            limit,
            estimate: AtomicU64::new(0),
            measure,
            last_measured: Mutex::new(None),
            refused: AtomicBool::new(false),
        };
        quota.remeasure(true);
        quota
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The current estimate of bytes in use (an upper bound of the truth).
    pub fn estimate(&self) -> u64 {
        self.estimate.load(Ordering::Relaxed)
    }

    /// Charges `bytes` about to be written; `false` means the write must fail with `ENOSPC`.
    pub fn try_charge(&self, bytes: u64) -> bool {
        if self.charge_within_limit(bytes) {
            return true;
        }
        if self.remeasure(false) && self.charge_within_limit(bytes) {
            return true;
        }
        self.refused.store(true, Ordering::Relaxed);
        false
    }

    /// Notes that something was removed: the next charge past the estimate measures the tree
    /// again at once instead of waiting out the interval.
    pub fn freed(&self) {
        *self.last_measured.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a write was refused since the last call (and clears the mark).
    pub fn take_refused(&self) -> bool {
        self.refused.swap(false, Ordering::Relaxed)
    }

    fn charge_within_limit(&self, bytes: u64) -> bool {
        self.estimate
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Measures the tree again unless that was done very recently (or `force`); returns whether
    /// the estimate was refreshed. A failed measurement keeps the old (higher) estimate.
    pub fn remeasure(&self, force: bool) -> bool {
        let mut last = self.last_measured.lock().unwrap_or_else(|e| e.into_inner());
        if !force && last.is_some_and(|at| at.elapsed() < REMEASURE_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match (self.measure)() {
            Ok(bytes) => {
                self.estimate.store(bytes, Ordering::SeqCst);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "measuring a sandbox's disk use failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn charges_up_to_the_limit_then_remeasures() {
        let real = Arc::new(AtomicU64::new(100));
        let probe = real.clone();
        let quota = DiskQuota::new(1000, Box::new(move || Ok(probe.load(Ordering::SeqCst))));
        assert_eq!(quota.estimate(), 100);
        assert!(quota.try_charge(900));
        // Full, and measured a moment ago: refused without measuring again.
        assert!(!quota.try_charge(500));
        assert!(quota.take_refused());
        assert!(!quota.take_refused());
        // Later the tree is measured: it really holds 100 bytes (the writes overwrote).
        std::thread::sleep(REMEASURE_INTERVAL);
        assert!(quota.try_charge(500));
        assert_eq!(quota.estimate(), 600);
        // A removal lets the next charge measure at once.
        real.store(0, Ordering::SeqCst);
        quota.freed();
        assert!(quota.try_charge(1000));
        real.store(600, Ordering::SeqCst);
        quota.freed();
        assert!(quota.try_charge(1));
        assert_eq!(quota.estimate(), 601);
        // Now the tree really is full: a write past the estimate measures and is refused.
        real.store(1000, Ordering::SeqCst);
        std::thread::sleep(REMEASURE_INTERVAL);
        assert!(!quota.try_charge(500));
        assert_eq!(quota.estimate(), 1000);
    }
}
