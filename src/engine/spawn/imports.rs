//! The `wasmbox.spawn` and `wasmbox.spawn_result` imports: guest memory in, JSON out.

use wasmbox_spawn_abi::{Request, Response};
use wasmtime::{Caller, Extern, Linker};

use super::request::run_request;
use crate::engine::{EngineError, HostState};

/// Largest spawn request (JSON) accepted from a guest.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The request in `json`, or the refusal to answer with: a stream name or mode the ABI does not
/// know refuses the whole request, naming the value.
fn parse_request(json: &[u8]) -> Result<Request, Response> {
    serde_json::from_slice(json).map_err(|e| Response::refused(format!("bad spawn request: {e}")))
}

fn memory(caller: &mut Caller<'_, HostState>) -> Option<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Adds `wasmbox.spawn` and `wasmbox.spawn_result` (`wasmbox.exit` is added by the engine).
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    linker
        .func_wrap_async(
            "wasmbox",
            "spawn",
            |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
                Box::new(async move {
                    let Some(mem) = memory(&mut caller) else {
                        return Ok(-1);
                    };
                    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
                    if len > MAX_REQUEST_BYTES {
                        return Ok(-2);
                    }
                    let mut req = vec![0u8; len];
                    if mem.read(&caller, ptr, &mut req).is_err() {
                        return Ok(-1);
                    }
                    let Some(state) = caller.data_mut().spawn.as_mut() else {
                        return Ok(-3);
                    };
                    let ctx = state.child_context();
                    let response = match parse_request(&req) {
                        Ok(r) => run_request(ctx, r).await,
                        Err(refusal) => refusal,
                    };
                    let json = serde_json::to_vec(&response).unwrap_or_default();
                    let n = json.len() as i32;
                    if let Some(state) = caller.data_mut().spawn.as_mut() {
                        state.pending = Some(json);
                    }
                    Ok::<i32, wasmtime::Error>(n)
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
