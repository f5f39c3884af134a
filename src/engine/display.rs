//! Rich outputs: mime bundles a guest hands to the host through the `wasmbox.emit_output`
//! import (`display(obj)`, a kernel cell's last value), as the JSON document the guest glue
//! writes (`runtimes/python/_wasmbox.py`, `runtimes/js/prelude.js`).

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasmtime::{Caller, Extern, Linker};

use super::output::CapturedOutput;
use super::{EngineError, HostState};

/// Bytes of rich output one execution or cell may hand over; later outputs are dropped.
pub const RICH_OUTPUT_BYTES: usize = 16 << 20;

/// Where a rich output came from, as Jupyter's message types name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// `display(obj)`.
    DisplayData,
    /// The value of a cell's last expression.
    ExecuteResult,
}

/// One rich output: every representation of one object, keyed by mime type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisplayOutput {
    /// How the object was shown.
    pub kind: OutputKind,
    /// Representations: `text/plain` (always), `text/html`, `image/png` (base64), ….
    pub data: Map<String, Value>,
    /// Per-output metadata the object supplied (e.g. image sizes).
    #[serde(default)]
    pub metadata: Value,
}

impl DisplayOutput {
    /// The richest representation's mime type, in the order Jupyter front ends prefer.
    pub fn primary_type(&self) -> &str {
        const PREFERRED: [&str; 9] = [
            "application/vnd.dataframe+json",
            "image/png",
            "image/jpeg",
            "image/svg+xml",
            "text/html",
            "text/markdown",
            "text/latex",
            "application/json",
            "application/javascript",
        ];
        PREFERRED
            .into_iter()
            .find(|mime| self.data.contains_key(*mime))
            .or_else(|| {
                self.data
                    .keys()
                    .map(String::as_str)
                    .find(|k| *k != "text/plain")
            })
            .unwrap_or("text/plain")
    }

    /// The plain-text representation.
    pub fn text(&self) -> Option<&str> {
        self.data.get("text/plain").and_then(Value::as_str)
    }
}

#[derive(Debug, Default)]
struct Collected {
    outputs: Vec<DisplayOutput>,
    bytes: usize,
    dropped: usize,
}

/// The rich outputs of one execution or cell, capped at [`RICH_OUTPUT_BYTES`].
#[derive(Clone, Debug, Default)]
pub struct DisplaySink {
    inner: Arc<Mutex<Collected>>,
}

/// What `emit_output` tells the guest.
const KEPT: i32 = 0;
const DROPPED: i32 = 1;
const MALFORMED: i32 = 2;

impl DisplaySink {
    fn lock(&self) -> MutexGuard<'_, Collected> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parses and keeps one output document; -> what to tell the guest.
    fn push(&self, document: &[u8]) -> i32 {
        let mut collected = self.lock();
        if collected.bytes + document.len() > RICH_OUTPUT_BYTES {
            collected.dropped += 1;
            return DROPPED;
        }
        match serde_json::from_slice::<DisplayOutput>(document) {
            Ok(output) => {
                collected.bytes += document.len();
                collected.outputs.push(output);
                KEPT
            }
            Err(_) => MALFORMED,
        }
    }

    /// The outputs kept so far and how many were dropped over the cap; empties the sink.
    pub fn take(&self) -> (Vec<DisplayOutput>, usize) {
        let mut collected = self.lock();
        let outputs = std::mem::take(&mut collected.outputs);
        let dropped = std::mem::take(&mut collected.dropped);
        collected.bytes = 0;
        (outputs, dropped)
    }

    /// [`Self::take`], saying on `stderr` how many outputs were dropped over the cap.
    pub(crate) fn take_noting(&self, stderr: &CapturedOutput) -> Vec<DisplayOutput> {
        let (outputs, dropped) = self.take();
        if dropped > 0 {
            stderr.append(
                format!("\nwasmbox: {dropped} rich output(s) over the size cap were dropped\n")
                    .as_bytes(),
            );
        }
        outputs
    }
}

/// `wasmbox.emit_output(ptr, len) -> i32`: one output document from guest memory.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<(), EngineError> {
    linker
        .func_wrap(
            "wasmbox",
            "emit_output",
            |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| -> i32 {
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return MALFORMED;
                };
                let (bytes, state) = memory.data_and_store_mut(&mut caller);
                let (start, len) = (ptr as usize, len as usize);
                match start.checked_add(len).and_then(|end| bytes.get(start..end)) {
                    Some(document) => state.display.push(document),
                    None => MALFORMED,
                }
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    // The data runtime's only host import, `host.call(ptr, len, out_ptr_ptr, out_len_ptr)`: a
    // door for opaque frames (`_host.call(frame) -> bytes` in the guest). A frame starting with
    // DISPLAY_FRAME carries one output document; the answer is empty. Anything else gets -1, the
    // runtime's "no host bound" (its tool protocol then says it has no tools).
    linker
        .func_wrap(
            "host",
            "call",
            |mut caller: Caller<'_, HostState>,
             ptr: i32,
             len: i32,
             out_ptr_ptr: i32,
             out_len_ptr: i32|
             -> i32 {
                const NO_HOST: i32 = -1;
                const FAULT: i32 = -2;
                let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                    return FAULT;
                };
                let (bytes, state) = memory.data_and_store_mut(&mut caller);
                let (start, len) = (ptr as u32 as usize, len as u32 as usize);
                let Some(frame) = start.checked_add(len).and_then(|end| bytes.get(start..end))
                else {
                    return FAULT;
                };
                let Some(document) = frame.strip_prefix(DISPLAY_FRAME) else {
                    return NO_HOST;
                };
                // Kept, dropped over the cap or malformed: the host notes drops on stderr. The
                // answer is empty (pointer 0, length 0), which needs no guest allocation.
                state.display.push(document);
                for at in [out_ptr_ptr, out_len_ptr] {
                    let at = at as u32 as usize;
                    match at.checked_add(4).and_then(|end| bytes.get_mut(at..end)) {
                        Some(word) => word.copy_from_slice(&0u32.to_le_bytes()),
                        None => return FAULT,
                    }
                }
                0
            },
        )
        .map_err(|e| EngineError::Config(e.into()))?;
    Ok(())
}

/// How a `host.call` frame that carries a rich output starts (then the JSON document).
pub const DISPLAY_FRAME: &[u8] = b"wasmbox-display\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_documents_in_order_and_refuses_garbage() {
        let sink = DisplaySink::default();
        let doc = br#"{"kind":"execute_result","data":{"text/plain":"42"},"metadata":{}}"#;
        assert_eq!(sink.push(doc), KEPT);
        assert_eq!(sink.push(b"not json"), MALFORMED);
        let html = br#"{"kind":"display_data","data":{"text/plain":"x","text/html":"<b>x</b>"}}"#;
        assert_eq!(sink.push(html), KEPT);
        let (outputs, dropped) = sink.take();
        assert_eq!(dropped, 0);
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].text(), Some("42"));
        assert_eq!(outputs[1].primary_type(), "text/html");
        assert!(sink.take().0.is_empty());
    }

    #[test]
    fn over_the_cap_is_dropped_and_counted() {
        let sink = DisplaySink::default();
        let big = format!(
            r#"{{"kind":"display_data","data":{{"text/plain":"{}"}}}}"#,
            "x".repeat(RICH_OUTPUT_BYTES)
        );
        assert_eq!(sink.push(big.as_bytes()), DROPPED);
        assert_eq!(sink.take(), (Vec::new(), 1));
    }
}
