//! The `wasmbox.spawn*` imports: guest memory in, JSON out (`spawn`, `spawn_result`), and the
//! background jobs (`spawn_start`, `spawn_wait`, `spawn_poll`, `spawn_kill`).

use wasmbox_spawn_abi::{Request, Response};
use wasmtime::{Caller, Extern, Linker};

use super::jobs::{Signalled, WaitStep, NO_SUCH_JOB};
use super::request::run_request;
use crate::engine::{EngineError, HostState};

/// Largest spawn request (JSON) accepted from a guest.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The request in `json`, or the refusal to answer with: a stream name or mode the ABI does not
/// know refuses the whole request, naming the value.
fn parse_request(json: &[u8]) -> Result<Request, Response> {
    serde_json::from_slice(json).map_err(|e| Response::refused(format!("bad spawn request: {e}")))
}

/// The guest's exported linear memory.
pub(super) fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// The request bytes at `ptr`/`len` in guest memory, or the negative answer for the guest
/// (−1 memory error, −2 too large, −3 spawning not enabled).
fn read_request(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    let mem = memory(caller).ok_or(-1)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > MAX_REQUEST_BYTES {
        return Err(-2);
    }
    let mut req = vec![0u8; len];
    mem.read(&*caller, ptr, &mut req).map_err(|_| -1)?;
    if caller.data().spawn.is_none() {
        return Err(-3);
    }
    Ok(req)
}

/// Keeps `response` for `spawn_result`; returns its length.
fn set_pending(caller: &mut Caller<'_, HostState>, response: &Response) -> i32 {
    let json = serde_json::to_vec(response).unwrap_or_default();
    let n = json.len() as i32;
    if let Some(state) = caller.data_mut().spawn.as_mut() {
        state.pending = Some(json);
    }
    n
}

/// A job handle from the guest (`-1`, any job, is `None`); `Err` for other negative values.
fn job_handle(raw: i32) -> Result<Option<u32>, ()> {
    match raw {
        -1 => Ok(None),
        h if h >= 0 => Ok(Some(h as u32)),
        _ => Err(()),
    }
}

/// Adds the `wasmbox.spawn*` imports (`wasmbox.exit` is added by the engine).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    linker
        .func_wrap_async(
            "wasmbox",
            "spawn",
            |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
                Box::new(async move {
                    let req = match read_request(&mut caller, ptr, len) {
                        Ok(req) => req,
                        Err(code) => return Ok(code),
                    };
                    let Some(state) = caller.data_mut().spawn.as_mut() else {
                        return Ok(-3);
                    };
                    let ctx = state.child_context();
                    let response = match parse_request(&req) {
                        Ok(r) => run_request(ctx, r).await,
                        Err(refusal) => refusal,
                    };
                    Ok::<i32, wasmtime::Error>(set_pending(&mut caller, &response))
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    linker
        .func_wrap_async(
            "wasmbox",
            "spawn_start",
            |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
                Box::new(async move {
                    let req = match read_request(&mut caller, ptr, len) {
                        Ok(req) => req,
                        Err(code) => return Ok(code),
                    };
                    let Some(state) = caller.data_mut().spawn.as_mut() else {
                        return Ok(-3);
                    };
                    let response = match parse_request(&req) {
                        Ok(r) => {
                            let ctx = state.child_context();
                            state.jobs.start(ctx, r).await
                        }
                        Err(refusal) => refusal,
                    };
                    Ok::<i32, wasmtime::Error>(set_pending(&mut caller, &response))
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    linker
        .func_wrap_async(
            "wasmbox",
            "spawn_wait",
            |mut caller: Caller<'_, HostState>, (job,): (i32,)| {
                Box::new(async move {
                    let Ok(handle) = job_handle(job) else {
                        return Ok(NO_SUCH_JOB);
                    };
                    loop {
                        let Some(state) = caller.data_mut().spawn.as_mut() else {
                            return Ok(-3);
                        };
                        match state.jobs.wait_step(handle) {
                            WaitStep::NoSuchJob => return Ok(NO_SUCH_JOB),
                            WaitStep::Pending(ended) => ended.notified().await,
                            WaitStep::Job(h, wait) => {
                                let response = wait.result(h).await;
                                return Ok::<i32, wasmtime::Error>(set_pending(
                                    &mut caller,
                                    &response,
                                ));
                            }
                        }
                    }
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    linker
        .func_wrap(
            "wasmbox",
            "spawn_poll",
            |caller: Caller<'_, HostState>, job: i32| -> wasmtime::Result<i32> {
                let Some(state) = caller.data().spawn.as_ref() else {
                    return Ok(-3);
                };
                let running = u32::try_from(job).ok().and_then(|h| state.jobs.running(h));
                Ok(match running {
                    Some(running) => running as i32,
                    None => NO_SUCH_JOB,
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    linker
        .func_wrap(
            "wasmbox",
            "spawn_kill",
            |mut caller: Caller<'_, HostState>, job: i32, signal: i32| -> wasmtime::Result<i32> {
                let Some(state) = caller.data_mut().spawn.as_mut() else {
                    return Ok(-3);
                };
                let Ok(handle) = u32::try_from(job) else {
                    return Ok(NO_SUCH_JOB);
                };
                // signal 0 only asks whether the job is still there, as kill(2) does
                let outcome = if signal <= 0 {
                    state.jobs.running(handle).map(|running| {
                        if running {
                            Signalled::WasRunning
                        } else {
                            Signalled::AlreadyEnded
                        }
                    })
                } else {
                    state.jobs.kill(handle, signal.min(127))
                };
                Ok(match outcome {
                    Some(Signalled::WasRunning) => 0,
                    Some(Signalled::AlreadyEnded) => 1,
                    None => NO_SUCH_JOB,
                })
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    linker
        .func_wrap(
            "wasmbox",
            "spawn_result",
            |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
                let Some(data) = caller
                    .data_mut()
                    .spawn
                    .as_mut()
                    .and_then(|s| s.pending.take())
                else {
                    return Ok(0);
                };
                let n = data.len().min(len.max(0) as usize);
                let Some(mem) = memory(&mut caller) else {
                    return Ok(-1);
                };
                if mem
                    .write(&mut caller, ptr as u32 as usize, &data[..n])
                    .is_err()
                {
                    return Ok(-1);
                }
                Ok(n as i32)
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_stream_names_refuse_the_request() {
        let refusal = parse_request(br#"{"stages":[{"argv":["ls"],"stdout":"inhert"}]}"#)
            .expect_err("an unknown stream name must not run");
        let message = refusal.error.unwrap_or_default();
        assert!(
            message.starts_with("bad spawn request: unknown output target \"inhert\""),
            "{message}"
        );
        assert!(refusal.statuses.is_empty());
    }

    #[test]
    fn requests_of_the_shell_parse() {
        let req = parse_request(
            br#"{"stages":[{"argv":["cat"],"env":[],"cwd":"/","stdin":"pipe","stdout":"capture","stderr":"stdout"}]}"#,
        )
        .unwrap_or_else(|r| panic!("{:?}", r.error));
        assert_eq!(req.stages[0].argv, ["cat"]);
    }
}
