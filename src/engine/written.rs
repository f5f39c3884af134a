//! Which pages of a kernel's linear memory were written since the last look, read from the
//! host kernel's page tables instead of by hashing memory.
//!
//! The range is registered with a userfaultfd in asynchronous write-protect mode: nothing
//! handles faults, a write to a protected page just clears its protection (one minor fault,
//! ~1 µs here). A `PAGEMAP_SCAN` ioctl lists the pages without protection, and the caller
//! protects them again once it has hashed them — all but the pages that keep changing: an
//! interpreter rewrites the same hundred-odd pages (stack, allocator heads, the frame it runs
//! in) in every cell, and faulting each of them every cell cost more than hashing them. Those
//! stay writable ("open") until they stop changing. Both need Linux ≥ 6.7; where either is
//! missing (older kernels, a seccomp filter, another OS) [`WrittenPages::track`] returns `None`
//! and kernels fall back to hashing pages.

#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use linux_raw_sys::general::{
    page_region, pm_scan_arg, uffdio_api, uffdio_range, uffdio_register, PAGE_IS_WRITTEN,
    PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING, UFFDIO_REGISTER_MODE_WP, UFFD_API,
    UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED, UFFD_USER_MODE_ONLY,
};
use rustix::ioctl::{opcode, Ioctl, IoctlOutput, Opcode, Updater};

const UFFDIO_API: Opcode = opcode::read_write::<uffdio_api>(0xAA, 0x3F);
const UFFDIO_REGISTER: Opcode = opcode::read_write::<uffdio_register>(0xAA, 0x00);
const PAGEMAP_SCAN: Opcode = opcode::read_write::<pm_scan_arg>(b'f', 16);

/// Regions returned per `PAGEMAP_SCAN` call (consecutive written pages form one region).
const REGIONS: usize = 256;
/// Calls after which an open page that did not change is protected again.
const OPEN_ROUNDS: u8 = 4;
/// At most this many pages stay open (each is hashed at every call while open).
const OPEN_PAGES: usize = 512;
/// Protecting more separate runs than this takes one scan of the whole range instead (each
/// run is an ioctl of ~1 µs), which protects the open pages too.
const PROTECT_RUNS: usize = 24;

/// Tracks writes to one page-aligned range of this process's memory.
///
/// Dropping it unregisters the range, so it must be dropped before the memory is unmapped or
/// handed to another instance (the [`super::Kernel`] declares it before its store).
pub(super) struct WrittenPages {
    /// Keeps the registration alive; closing it unregisters the range.
    _uffd: OwnedFd,
    pagemap: &'static File,
    start: u64,
    end: u64,
    page: u64,
    /// Pages left writable, in order, with the calls since each last changed.
    open: Vec<(usize, u8)>,
}

impl WrittenPages {
    /// Starts tracking `[start, start + len)` (all of it the memory may grow into); nothing is
    /// protected until the first [`Self::take`]. The range must stay mapped (accessible or not)
    /// while the tracker lives.
    pub(super) fn track(start: *const u8, len: usize) -> Option<Self> {
        let page = rustix::param::page_size();
        let start = start as u64;
        if !start.is_multiple_of(page as u64) || len == 0 || !len.is_multiple_of(page) {
            return None;
        }
        // SAFETY: the descriptor only write-protects the range registered below, in async mode:
        // faults are resolved by the kernel, so no thread ever blocks on it.
        let uffd = unsafe {
            rustix::mm::userfaultfd(
                rustix::mm::UserfaultfdFlags::CLOEXEC
                    | rustix::mm::UserfaultfdFlags::NONBLOCK
                    | rustix::mm::UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY),
            )
        }
        .ok()?;
        let mut api = uffdio_api {
            api: UFFD_API.into(),
            features: (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED).into(),
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API takes a `struct uffdio_api`, which `api` is.
        unsafe { rustix::ioctl::ioctl(&uffd, Updater::<UFFDIO_API, _>::new(&mut api)) }.ok()?;
        let mut register = uffdio_register {
            range: uffdio_range {
                start,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_WP.into(),
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER takes a `struct uffdio_register`, which `register` is.
        unsafe { rustix::ioctl::ioctl(&uffd, Updater::<UFFDIO_REGISTER, _>::new(&mut register)) }
            .ok()?;
        Some(Self {
            _uffd: uffd,
            pagemap: pagemap()?,
            start,
            end: start + len as u64,
            page: page as u64,
            open: Vec::new(),
        })
    }

    /// Page indexes of the first `len` bytes that may have changed since [`Self::protect`]
    /// last ran: the ones written since, and the open ones. Protects nothing. Only what was
    /// accessible is scanned: pages the memory grows into later are unprotected, so the first
    /// scan that covers them reports the ones present.
    pub(super) fn written(&self, len: usize) -> std::io::Result<Vec<Range<usize>>> {
        let end = self.end.min(self.start + len as u64);
        let mut written = Vec::new();
        let mut regions = [page_region {
            start: 0,
            end: 0,
            categories: 0,
        }; REGIONS];
        let mut from = self.start;
        while from < end {
            let mut scan = Scan(scan_arg(PM_SCAN_CHECK_WPASYNC, from, end, &mut regions));
            // SAFETY: `scan` points the kernel at `regions`, REGIONS entries long, which
            // outlives the call.
            let filled = unsafe { rustix::ioctl::ioctl(self.pagemap, &mut scan) }?;
            for region in regions.iter().take(filled) {
                written.push(
                    ((region.start - self.start) / self.page) as usize
                        ..((region.end - self.start) / self.page) as usize,
                );
            }
            if scan.0.walk_end <= from {
                break;
            }
            from = scan.0.walk_end;
        }
        Ok(written)
    }

    /// Protects the pages [`Self::written`] reported (`reported`) again, once the caller has
    /// hashed them, except the ones that keep changing: a page that was protected and got
    /// written, or an open one `changed` says differs from its last hash, stays open until
    /// it has not changed for [`OPEN_ROUNDS`] calls.
    pub(super) fn protect(
        &mut self,
        len: usize,
        reported: &[Range<usize>],
        changed: impl Fn(usize) -> bool,
    ) -> std::io::Result<()> {
        let mut open = Vec::with_capacity(self.open.len());
        let mut runs: Vec<Range<usize>> = Vec::new();
        // Both in page order: one pass over the pages open before.
        let mut before = self.open.iter().peekable();
        for page in reported.iter().cloned().flatten() {
            while before.next_if(|(open, _)| *open < page).is_some() {}
            let idle = match before.next_if(|(open, _)| *open == page) {
                // Reported while protected: written in this round.
                None => 0,
                Some(_) if changed(page) => 0,
                Some((_, idle)) => idle.saturating_add(1),
            };
            if idle < OPEN_ROUNDS && open.len() < OPEN_PAGES {
                open.push((page, idle));
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.end == page => run.end += 1,
                _ => runs.push(page..page + 1),
            }
        }
        if runs.len() > PROTECT_RUNS {
            return self.protect_all(len);
        }
        for run in runs {
            let from = self.start + run.start as u64 * self.page;
            self.wp(from, self.start + run.end as u64 * self.page)?;
        }
        self.open = open;
        Ok(())
    }

    /// Protects all of the first `len` bytes, open pages too.
    pub(super) fn protect_all(&mut self, len: usize) -> std::io::Result<()> {
        self.open.clear();
        self.wp(self.start, self.end.min(self.start + len as u64))
    }

    /// Write-protects the written pages of `[from, end)`, reporting nothing.
    fn wp(&self, from: u64, end: u64) -> std::io::Result<()> {
        let mut scan = Scan(scan_arg(
            PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            from,
            end,
            &mut [],
        ));
        // SAFETY: no output vector: the kernel reads `scan` and writes only its `walk_end`,
        // walking the whole range (it stops early only when an output vector is full).
        unsafe { rustix::ioctl::ioctl(self.pagemap, &mut scan) }?;
        Ok(())
    }
}

/// A `PAGEMAP_SCAN` of `[start, end)` for pages without write protection, into `regions`.
fn scan_arg(flags: u32, start: u64, end: u64, regions: &mut [page_region]) -> pm_scan_arg {
    pm_scan_arg {
        size: std::mem::size_of::<pm_scan_arg>() as u64,
        flags: flags.into(),
        start,
        end,
        walk_end: 0,
        vec: if regions.is_empty() {
            0
        } else {
            regions.as_mut_ptr() as u64
        },
        vec_len: regions.len() as u64,
        max_pages: 0,
        category_inverted: 0,
        category_mask: PAGE_IS_WRITTEN.into(),
        category_anyof_mask: 0,
        return_mask: PAGE_IS_WRITTEN.into(),
    }
}

/// Whether this kernel has `PAGEMAP_SCAN` (Linux 6.7+): one scan of an empty range.
pub(super) fn pagemap_scan_supported() -> bool {
    let Some(pagemap) = pagemap() else {
        return false;
    };
    let mut scan = Scan(pm_scan_arg {
        size: std::mem::size_of::<pm_scan_arg>() as u64,
        flags: 0,
        start: 0,
        end: 0,
        walk_end: 0,
        vec: 0,
        vec_len: 0,
        max_pages: 0,
        category_inverted: 0,
        category_mask: 0,
        category_anyof_mask: 0,
        return_mask: 0,
    });
    // SAFETY: an empty range with no output vector: the kernel reads `scan` and writes only
    // its `walk_end`.
    unsafe { rustix::ioctl::ioctl(pagemap, &mut scan) }.is_ok()
}

/// This process's pagemap, opened once: every tracker scans through it.
fn pagemap() -> Option<&'static File> {
    static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();
    PAGEMAP
        .get_or_init(|| File::open("/proc/self/pagemap").ok())
        .as_ref()
}

/// `PAGEMAP_SCAN`, whose result (regions filled) is the ioctl's return value.
struct Scan(pm_scan_arg);

// SAFETY: PAGEMAP_SCAN takes a `struct pm_scan_arg`, updates its `walk_end` and returns how many
// regions it wrote to `vec`.
unsafe impl Ioctl for &mut Scan {
    type Output = usize;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        PAGEMAP_SCAN
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (&mut self.0 as *mut pm_scan_arg).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<usize> {
        Ok(usize::try_from(out).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_scan_is_found_exactly_on_kernels_that_have_it() {
        if pagemap().is_none() {
            eprintln!("/proc/self/pagemap cannot be opened here; skipped");
            return;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let expected = (major, minor) >= (6, 7);
        assert_eq!(pagemap_scan_supported(), expected, "kernel {release}");
    }

    /// What [`WrittenPages::written`] reports, then everything protected again.
    fn take(tracker: &mut WrittenPages, len: usize) -> Vec<Range<usize>> {
        let written = tracker.written(len).expect("scan");
        tracker.protect_all(len).expect("protect");
        written
    }

    #[test]
    fn reports_exactly_the_pages_written_since_the_last_look() {
        let page = rustix::param::page_size();
        let memory = memmap_anon(16 * page);
        memory[page] = 7; // written before tracking starts
        let Some(mut tracker) = WrittenPages::track(memory.as_ptr(), memory.len()) else {
            eprintln!("userfaultfd write-protect tracking is not available here; skipped");
            return;
        };
        // The first scan of a part reports every page not yet protected, written or not.
        let first = take(&mut tracker, 12 * page);
        assert!(first.iter().any(|r| r.contains(&1)), "{first:?}");
        assert!(take(&mut tracker, 12 * page).is_empty());
        memory[3 * page] = 1;
        memory[3 * page + 1] = 2;
        memory[7 * page + 5] = 1;
        memory[8 * page] = 1;
        let _ = std::hint::black_box(memory[10 * page]); // a read is not a write
                                                         // Reporting alone protects nothing.
        assert_eq!(tracker.written(12 * page).expect("scan"), vec![3..4, 7..9]);
        assert_eq!(take(&mut tracker, 12 * page), vec![3..4, 7..9]);
        memory[14 * page] = 1; // beyond what was scanned so far: "grown into"
        let grown = take(&mut tracker, 16 * page);
        assert!(grown.iter().any(|r| r.contains(&14)), "{grown:?}");
        assert!(grown.iter().all(|r| r.start >= 12), "{grown:?}");
        assert!(take(&mut tracker, 16 * page).is_empty());
        memory[15 * page] = 9;
        assert_eq!(take(&mut tracker, 16 * page), vec![15..16]);
        drop(tracker);
    }

    #[test]
    fn pages_that_keep_changing_stay_open_and_are_reported_until_they_settle() {
        let page = rustix::param::page_size();
        let memory = memmap_anon(16 * page);
        let Some(mut tracker) = protected_tracker(memory) else {
            return;
        };
        let len = memory.len();
        // Pages 2 and 5 are written: reported, and left open.
        memory[2 * page] = 1;
        memory[5 * page] = 1;
        let reported = tracker.written(len).expect("scan");
        assert_eq!(reported, vec![2..3, 5..6]);
        tracker.protect(len, &reported, |_| true).expect("protect");
        // Open pages are reported at every look, written or not; page 9, written now, joins.
        memory[9 * page] = 1;
        let reported = tracker.written(len).expect("scan");
        assert_eq!(reported, vec![2..3, 5..6, 9..10]);
        // Page 2 keeps changing; 5 and 9 do not: after OPEN_ROUNDS looks 5 is protected
        // (9 came later and is still open).
        for _ in 0..OPEN_ROUNDS {
            let reported = tracker.written(len).expect("scan");
            tracker
                .protect(len, &reported, |p| p == 2)
                .expect("protect");
        }
        assert_eq!(tracker.written(len).expect("scan"), vec![2..3, 9..10]);
        // A protected page written again is reported again.
        memory[5 * page] = 2;
        assert_eq!(tracker.written(len).expect("scan"), vec![2..3, 5..6, 9..10]);
        // Protecting all closes the open pages too.
        tracker.protect_all(len).expect("protect");
        assert!(tracker.written(len).expect("scan").is_empty());
        drop(tracker);
    }

    #[test]
    fn many_separate_runs_are_protected_with_one_scan() {
        let page = rustix::param::page_size();
        let pages = 2 * (PROTECT_RUNS + 2);
        let memory = memmap_anon(pages * page);
        let Some(mut tracker) = protected_tracker(memory) else {
            return;
        };
        let len = memory.len();
        // Every other page written once and never changed: all settle at once, in more runs
        // than are protected one by one.
        for p in (0..pages).step_by(2) {
            memory[p * page] = 1;
        }
        let mut reported = tracker.written(len).expect("scan");
        assert_eq!(reported.len(), pages / 2);
        for _ in 0..=OPEN_ROUNDS {
            tracker.protect(len, &reported, |_| false).expect("protect");
            reported = tracker.written(len).expect("scan");
        }
        assert!(reported.is_empty(), "{reported:?}");
        drop(tracker);
    }

    /// A tracker of all of `memory` with every page protected; None (and a note) where
    /// tracking is not available.
    fn protected_tracker(memory: &[u8]) -> Option<WrittenPages> {
        let Some(mut tracker) = WrittenPages::track(memory.as_ptr(), memory.len()) else {
            eprintln!("userfaultfd write-protect tracking is not available here; skipped");
            return None;
        };
        tracker.written(memory.len()).expect("scan");
        tracker.protect_all(memory.len()).expect("protect");
        Some(tracker)
    }

    /// Page-aligned, zeroed memory for the test (a `Vec` is not page-aligned).
    fn memmap_anon(len: usize) -> &'static mut [u8] {
        // SAFETY: a fresh private anonymous mapping, leaked for the test's life.
        unsafe {
            let ptr = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
            .expect("mmap");
            std::slice::from_raw_parts_mut(ptr.cast(), len)
        }
    }
}
