//! Named pipes (`mkfifo`). WASI has no FIFO files, so the shell keeps a plain file with a FIFO
//! mark as the name and the host keeps the pipe itself: one [`NamedPipes`] per execution, keyed
//! by absolute guest path, shared by every instance of the tree. A stage reaches a named pipe
//! through a `{"fifo": PATH}` stream; the shell's own builtins (`echo hi > p`, `read l < p`)
//! through the `wasmbox.fifo_*` imports added here, which hold an end open for as long as the
//! shell does, so readers see EOF only when every writer, the shell included, has closed.
//!
//! A named pipe is bounded like any pipe ([`PIPE_CAPACITY`]); an execution may hold at most
//! [`MAX_NAMED_PIPES`] of them, and one instance at most [`MAX_OPEN_ENDS`] ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use wasmtime::{Caller, Linker};

use super::imports::memory;
use super::open::normalize;
use super::pipe::{Pipe, PipeReader, PipeWriter, PIPE_CAPACITY};
use crate::engine::{EngineError, HostState};

/// Named pipes one execution may have at once.
pub(super) const MAX_NAMED_PIPES: usize = 64;
/// Named-pipe ends one instance may hold open through the imports.
const MAX_OPEN_ENDS: usize = 16;
/// Longest path the guest may name.
const MAX_PATH_BYTES: usize = 4096;

/// Answers of the `fifo_*` imports besides a handle or a byte count.
const ERR_MEMORY: i32 = -1;
const ERR_NO_SPAWN: i32 = -3;
const ERR_BAD_HANDLE: i32 = -4;
const ERR_TOO_MANY: i32 = -24; // EMFILE
const ERR_BROKEN_PIPE: i32 = -32; // EPIPE

/// The named pipes of one execution.
#[derive(Debug, Default)]
pub(super) struct NamedPipes(Mutex<HashMap<String, Pipe>>);

/// The execution already has [`MAX_NAMED_PIPES`] named pipes in use.
#[derive(Debug)]
pub(super) struct TooManyNamedPipes;

impl NamedPipes {
    /// The pipe at `path` (absolute, normalised here), made on first use or after the last one
    /// there was read and closed.
    pub(super) fn get(&self, path: &str) -> Result<Pipe, TooManyNamedPipes> {
        let key = normalize(path);
        let mut pipes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pipes.get(&key).filter(|p| !p.is_spent()) {
            return Ok(p.clone());
        }
        pipes.retain(|_, p| !p.is_spent());
        if pipes.len() >= MAX_NAMED_PIPES {
            return Err(TooManyNamedPipes);
        }
        let p = Pipe::named(PIPE_CAPACITY);
        pipes.insert(key, p.clone());
        Ok(p)
    }
}

/// One end of a named pipe that an instance holds open itself.
#[derive(Debug, Clone)]
enum End {
    Read(PipeReader),
    Write(PipeWriter),
}

/// The named-pipe ends one instance holds, by handle; dropped (closed) with its store.
#[derive(Debug, Default)]
pub(crate) struct OpenEnds {
    next: u32,
    ends: BTreeMap<u32, End>,
}

/// A copy of the instance's open end `handle` (so no borrow of the store is held across a
/// wait), or the answer for the guest.
fn open_end(caller: &Caller<'_, HostState>, handle: i32) -> Result<End, i32> {
    let state = caller.data().spawn.as_ref().ok_or(ERR_NO_SPAWN)?;
    state
        .fifo_ends
        .ends
        .get(&(handle as u32))
        .cloned()
        .ok_or(ERR_BAD_HANDLE)
}

fn guest_bytes(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as u32 as usize];
    mem.read(&*caller, ptr as u32 as usize, &mut buf).ok()?;
    Some(buf)
}

/// Adds `wasmbox.fifo_open(path_ptr, path_len, write) -> handle`, `fifo_read(h, ptr, len) ->
/// n` (0 at EOF), `fifo_write(h, ptr, len) -> n` and `fifo_close(h)`. Negative answers are
/// errors (−1 memory, −3 no spawning, −4 bad handle, −24 too many, −32 broken pipe). Reads and
/// writes wait like a pipe's; the execution's deadline ends any wait.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    let config = |e: wasmtime::Error| EngineError::Config(e.into());
    linker
        .func_wrap(
            "wasmbox",
            "fifo_open",
            |mut caller: Caller<'_, HostState>,
             ptr: i32,
             len: i32,
             write: i32|
             -> wasmtime::Result<i32> {
                if len as u32 as usize > MAX_PATH_BYTES {
                    return Ok(ERR_MEMORY);
                }
                let Some(path) = guest_bytes(&mut caller, ptr, len) else {
                    return Ok(ERR_MEMORY);
                };
                let path = String::from_utf8_lossy(&path).into_owned();
                let Some(state) = caller.data_mut().spawn.as_mut() else {
                    return Ok(ERR_NO_SPAWN);
                };
                if state.fifo_ends.ends.len() >= MAX_OPEN_ENDS {
                    return Ok(ERR_TOO_MANY);
                }
                let Ok(pipe) = state.tree.named_pipes.get(&path) else {
                    return Ok(ERR_TOO_MANY);
                };
                let end = if write != 0 {
                    End::Write(pipe.writer())
                } else {
                    End::Read(pipe.reader())
                };
                let table = &mut state.fifo_ends;
                let handle = table.next;
                table.next = table.next.wrapping_add(1) & 0x7fff_ffff;
                table.ends.insert(handle, end);
                Ok(handle as i32)
            },
        )
        .map_err(config)?;
    linker
        .func_wrap(
            "wasmbox",
            "fifo_close",
            |mut caller: Caller<'_, HostState>, handle: i32| -> wasmtime::Result<i32> {
                let Some(state) = caller.data_mut().spawn.as_mut() else {
                    return Ok(ERR_NO_SPAWN);
                };
                Ok(match state.fifo_ends.ends.remove(&(handle as u32)) {
                    Some(_) => 0,
                    None => ERR_BAD_HANDLE,
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            "wasmbox",
            "fifo_read",
            |mut caller: Caller<'_, HostState>, (handle, ptr, len): (i32, i32, i32)| {
                Box::new(async move {
                    let reader = match open_end(&caller, handle) {
                        Ok(End::Read(r)) => r,
                        Ok(End::Write(_)) => return Ok(ERR_BAD_HANDLE),
                        Err(code) => return Ok(code),
                    };
                    let bytes = loop {
                        match reader.take(len.max(0) as usize) {
                            None => return Ok(0),
                            Some(b) if b.is_empty() && len > 0 => reader.wait_readable().await,
                            Some(b) => break b,
                        }
                    };
                    let Some(mem) = memory(&mut caller) else {
                        return Ok(ERR_MEMORY);
                    };
                    if mem.write(&mut caller, ptr as u32 as usize, &bytes).is_err() {
                        return Ok(ERR_MEMORY);
                    }
                    Ok::<i32, wasmtime::Error>(bytes.len() as i32)
                })
            },
        )
        .map_err(config)?;
    linker
        .func_wrap_async(
            "wasmbox",
            "fifo_write",
            |mut caller: Caller<'_, HostState>, (handle, ptr, len): (i32, i32, i32)| {
                Box::new(async move {
                    let Some(bytes) = guest_bytes(&mut caller, ptr, len) else {
                        return Ok(ERR_MEMORY);
                    };
                    let writer = match open_end(&caller, handle) {
                        Ok(End::Write(w)) => w,
                        Ok(End::Read(_)) => return Ok(ERR_BAD_HANDLE),
                        Err(code) => return Ok(code),
                    };
                    let mut rest = &bytes[..];
                    while !rest.is_empty() {
                        match writer.space() {
                            Err(_) => return Ok(ERR_BROKEN_PIPE),
                            Ok(0) => writer.wait_writable().await,
                            Ok(n) => {
                                let (now, later) = rest.split_at(n.min(rest.len()));
                                if writer.push(now).is_err() {
                                    return Ok(ERR_BROKEN_PIPE);
                                }
                                rest = later;
                            }
                        }
                    }
                    Ok::<i32, wasmtime::Error>(bytes.len() as i32)
                })
            },
        )
        .map_err(config)?;
    Ok(())
}
