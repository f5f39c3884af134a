//! Captured guest output with a hard size cap.
//!
//! The guest may print without bound; the host keeps only the first `cap` bytes and counts the
//! rest, so a print flood costs the host no memory and the result can say it was truncated.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Receives each piece of output as it is kept (streaming to a client while it is captured).
pub type OutputTap = Arc<dyn Fn(&[u8]) + Send + Sync>;

#[derive(Debug, Default)]
struct Buffer {
    data: Vec<u8>,
    dropped: u64,
}

/// A shareable, size-capped output sink; clones write to the same buffer.
#[derive(Clone)]
pub struct CapturedOutput {
    cap: usize,
    inner: Arc<Mutex<Buffer>>,
    tap: Option<OutputTap>,
    /// The tap gets every byte, not only the kept ones (see [`Self::streaming`]).
    tap_all: bool,
}

impl std::fmt::Debug for CapturedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapturedOutput")
            .field("cap", &self.cap)
            .field("tapped", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

impl CapturedOutput {
    /// A sink that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Arc::new(Mutex::new(Buffer::default())),
            tap: None,
            tap_all: false,
        }
    }

    /// Like [`Self::new`], also handing every kept piece to `tap` as it arrives.
    pub fn tapped(cap: usize, tap: Option<OutputTap>) -> Self {
        Self {
            tap,
            ..Self::new(cap)
        }
    }

    /// A sink that keeps nothing and hands everything to `tap` (counted as written and dropped).
    pub fn streaming(tap: OutputTap) -> Self {
        Self {
            tap: Some(tap),
            tap_all: true,
            ..Self::new(0)
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still valid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends what fits under the cap and counts the rest as dropped.
    pub fn append(&self, bytes: &[u8]) {
        let mut buf = self.lock();
        let room = self.cap.saturating_sub(buf.data.len());
        let kept = room.min(bytes.len());
        buf.data.extend_from_slice(&bytes[..kept]);
        buf.dropped += (bytes.len() - kept) as u64;
        drop(buf);
        let tapped = if self.tap_all { bytes } else { &bytes[..kept] };
        if let (Some(tap), false) = (&self.tap, tapped.is_empty()) {
            tap(tapped);
        }
    }

    /// The captured bytes (lossily decoded) and whether anything was dropped.
    pub fn contents(&self) -> (String, bool) {
        let buf = self.lock();
        (
            String::from_utf8_lossy(&buf.data).into_owned(),
            buf.dropped > 0,
        )
    }

    /// Bytes written to the sink, kept or dropped.
    pub fn written(&self) -> u64 {
        let buf = self.lock();
        buf.data.len() as u64 + buf.dropped
    }

    /// The captured bytes, unmodified.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().data.clone()
    }

    /// How many bytes were written past the cap.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: excess is discarded rather than blocking or failing the guest.
        Ok(64 * 1024)
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_prefix_and_counts_the_rest() {
        let out = CapturedOutput::new(4);
        out.append(b"ab");
        out.append(b"cdef");
        assert_eq!(out.contents(), ("abcd".to_string(), true));
        assert_eq!(out.dropped(), 2);
    }

    #[test]
    fn under_cap_is_not_truncated() {
        let out = CapturedOutput::new(10);
        out.clone().append(b"hi");
        assert_eq!(out.contents(), ("hi".to_string(), false));
    }
}
