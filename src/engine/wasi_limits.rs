//! Limits on what a guest does through WASI that wasmtime-wasi itself does not bound: bytes
//! written to disk (the sandbox's [`DiskQuota`]) and files held open (per execution and for the
//! whole process, since every guest file is a host descriptor the server also needs for
//! accepting connections).
//!
//! The WASI preview-1 functions that write, create or open are shadowed in the linker by
//! wrappers that check the limit, then call wasmtime-wasi's own implementation (the same entry
//! point its generated linker glue calls), then account for the outcome. A refused call returns
//! the POSIX errno a program expects (`ENOSPC`, `EMFILE`); the guest decides what to do with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::types::Errno;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1};

use super::quota::ENTRY_BYTES;
use super::{EngineError, HostState};

/// `oflags` bit for `O_CREAT` in `path_open`.
const OFLAGS_CREAT: i32 = 1;
/// Standard streams are not files on disk.
const FIRST_FILE_FD: i32 = 3;

/// Guest-held host descriptors across the process, with their cap.
#[derive(Debug)]
pub struct FdBudget {
    max: u64,
    open: AtomicU64,
}

impl FdBudget {
    /// A budget of `max` descriptors for all guests together.
    pub fn new(max: u64) -> Self {
        Self {
            max,
            open: AtomicU64::new(0),
        }
    }

    /// Descriptors held by guests now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn try_take(&self) -> bool {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        let _ = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                Some(open.saturating_sub(n))
            });
    }
}

/// One store's open files, returned to the process budget when the store is dropped.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    max: u32,
    open: u32,
    budget: Arc<FdBudget>,
}

impl OpenFiles {
    pub(crate) fn new(max: u32, budget: Arc<FdBudget>) -> Self {
        Self {
            max,
            open: 0,
            budget,
        }
    }

    fn try_open(&mut self) -> bool {
        if self.open >= self.max || !self.budget.try_take() {
            return false;
        }
        self.open += 1;
        true
    }

    /// Undoes a [`Self::try_open`] whose open failed, or accounts for a close.
    fn closed(&mut self) {
        if self.open > 0 {
            self.open -= 1;
            self.budget.give_back(1);
        }
    }
}

impl Drop for OpenFiles {
    fn drop(&mut self) {
        self.budget.give_back(u64::from(self.open));
    }
}

/// Calls wasmtime-wasi's implementation of `$func` with the caller's memory, as its generated
/// linker glue does.
macro_rules! call_wasi {
    ($caller:ident, $func:ident $(, $arg:expr)* $(,)?) => {{
        let fuel = $caller.as_context_mut().hostcall_fuel();
        let Some(Extern::Memory(memory)) = $caller.get_export("memory") else {
            return Err(wasmtime::Error::msg("missing required memory export"));
        };
        let (bytes, state) = memory.data_and_store_mut(&mut $caller);
        let wasi = &mut state.wasi;
        wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(bytes);
        p1::$func(wasi, &mut guest $(, $arg)*).await
    }};
}

pub(super) use call_wasi;

/// Sum of the lengths in a guest `ciovec` array (0 if it cannot be read: the real call will then
/// fail on its own).
fn iovec_bytes(caller: &mut Caller<'_, HostState>, iovs: i32, count: i32) -> u64 {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return 0;
    };
    let data = memory.data(&caller);
    let (start, count) = (iovs as u32 as usize, count as u32 as usize);
    let Some(table) = count
        .checked_mul(8)
        .and_then(|len| data.get(start..start.checked_add(len)?))
    else {
        return 0;
    };
    table
        .chunks_exact(8)
        .map(|iov| u64::from(u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]])))
        .sum()
}

/// Charges `bytes` to the store's disk quota; `false` if the quota refuses.
fn charge(caller: &Caller<'_, HostState>, bytes: u64) -> bool {
    caller
        .data()
        .disk
        .as_ref()
        .is_none_or(|quota| quota.try_charge(bytes))
}

const NOSPC: i32 = Errno::Nospc as i32;
const MFILE: i32 = Errno::Mfile as i32;
const SUCCESS: i32 = Errno::Success as i32;

/// Shadows the preview-1 functions that write, create, open and close.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    let config = |e: wasmtime::Error| EngineError::Config(e.into());
    linker.allow_shadowing(true);
    const M: &str = "wasi_snapshot_preview1";
    linker
        .func_wrap_async(
            M,
            "fd_write",
            |mut caller: Caller<'_, HostState>, (fd, iovs, len, written): (i32, i32, i32, i32)| {
                Box::new(async move {
                    if fd >= FIRST_FILE_FD {
                        let bytes = iovec_bytes(&mut caller, iovs, len);
                        if !charge(&caller, bytes) {
                            return Ok(NOSPC);
                        }
                    }
                    call_wasi!(caller, fd_write, fd, iovs, len, written)
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "fd_pwrite",
            |mut caller: Caller<'_, HostState>,
             (fd, iovs, len, offset, written): (i32, i32, i32, i64, i32)| {
                Box::new(async move {
                    let bytes = iovec_bytes(&mut caller, iovs, len);
                    if !charge(&caller, bytes) {
                        return Ok(NOSPC);
                    }
                    call_wasi!(caller, fd_pwrite, fd, iovs, len, offset, written)
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "path_open",
            |mut caller: Caller<'_, HostState>,
             (dirfd, lookup, path, path_len, oflags, base, inheriting, fdflags, opened): (
                i32,
                i32,
                i32,
                i32,
                i32,
                i64,
                i64,
                i32,
                i32,
            )| {
                Box::new(async move {
                    if !caller.data_mut().open_files.try_open() {
                        return Ok(MFILE);
                    }
                    if oflags & OFLAGS_CREAT != 0 && !charge(&caller, ENTRY_BYTES) {
                        caller.data_mut().open_files.closed();
                        return Ok(NOSPC);
                    }
                    let errno = call_wasi!(
                        caller, path_open, dirfd, lookup, path, path_len, oflags, base, inheriting,
                        fdflags, opened,
                    );
                    if !matches!(errno, Ok(SUCCESS)) {
                        caller.data_mut().open_files.closed();
                    }
                    errno
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "fd_close",
            |mut caller: Caller<'_, HostState>, (fd,): (i32,)| {
                Box::new(async move {
                    let errno = call_wasi!(caller, fd_close, fd);
                    if fd >= FIRST_FILE_FD && matches!(errno, Ok(SUCCESS)) {
                        caller.data_mut().open_files.closed();
                    }
                    errno
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "fd_renumber",
            |mut caller: Caller<'_, HostState>, (from, to): (i32, i32)| {
                Box::new(async move {
                    let errno = call_wasi!(caller, fd_renumber, from, to);
                    // The descriptor at `to` was closed to make room.
                    if from != to && matches!(errno, Ok(SUCCESS)) {
                        caller.data_mut().open_files.closed();
                    }
                    errno
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "path_create_directory",
            |mut caller: Caller<'_, HostState>, (fd, path, len): (i32, i32, i32)| {
                Box::new(async move {
                    if !charge(&caller, ENTRY_BYTES) {
                        return Ok(NOSPC);
                    }
                    call_wasi!(caller, path_create_directory, fd, path, len)
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "path_symlink",
            |mut caller: Caller<'_, HostState>,
             (old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32)| {
                Box::new(async move {
                    if !charge(&caller, ENTRY_BYTES) {
                        return Ok(NOSPC);
                    }
                    call_wasi!(caller, path_symlink, old, old_len, fd, new, new_len)
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            M,
            "path_link",
            |mut caller: Caller<'_, HostState>,
             (old_fd, flags, old, old_len, fd, new, new_len): (
                i32,
                i32,
                i32,
                i32,
                i32,
                i32,
                i32,
            )| {
                Box::new(async move {
                    if !charge(&caller, ENTRY_BYTES) {
                        return Ok(NOSPC);
                    }
                    call_wasi!(caller, path_link, old_fd, flags, old, old_len, fd, new, new_len)
                })
            },
        )
        .map_err(config)?;
    for name in ["path_unlink_file", "path_remove_directory"] {
        linker
            .func_wrap_async(
                M,
                name,
                move |mut caller: Caller<'_, HostState>, (fd, path, len): (i32, i32, i32)| {
                    Box::new(async move {
                        let errno = if name == "path_unlink_file" {
                            call_wasi!(caller, path_unlink_file, fd, path, len)
                        } else {
                            call_wasi!(caller, path_remove_directory, fd, path, len)
                        };
                        if matches!(errno, Ok(SUCCESS)) {
                            if let Some(quota) = &caller.data().disk {
                                quota.freed();
                            }
                        }
                        errno
                    })
                },
            )
            .map_err(config)?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
