//! The bounded in-memory pipe between two pipeline stages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use wasmtime_wasi::p2::StreamError;

/// Bytes buffered in one pipe between two stages before the writer waits.
pub const PIPE_CAPACITY: usize = 64 * 1024;

#[derive(Debug, Default)]
struct PipeState {
    buf: VecDeque<u8>,
    writers: usize,
    readers: usize,
}

#[derive(Debug)]
struct PipeShared {
    state: Mutex<PipeState>,
    notify: Notify,
    cap: usize,
}

impl PipeShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded in-memory pipe; EOF for readers when every writer is gone, `EPIPE` for writers when
/// every reader is gone.
#[derive(Debug, Clone)]
pub(crate) struct Pipe(Arc<PipeShared>);

impl Pipe {
    pub(crate) fn new(cap: usize) -> Self {
        Pipe(Arc::new(PipeShared {
            state: Mutex::new(PipeState::default()),
            notify: Notify::new(),
            cap,
        }))
    }

    /// A pipe that already holds `data` and has no writer (reads `data`, then EOF).
    pub(crate) fn with_data(data: Vec<u8>) -> Self {
        let p = Pipe::new(data.len().max(1));
        p.0.lock().buf.extend(data);
        p
    }

    pub(crate) fn reader(&self) -> PipeReader {
        self.0.lock().readers += 1;
        PipeReader(self.0.clone())
    }

    pub(crate) fn writer(&self) -> PipeWriter {
        self.0.lock().writers += 1;
        PipeWriter(self.0.clone())
    }
}

#[derive(Debug)]
pub(crate) struct PipeReader(Arc<PipeShared>);

impl Clone for PipeReader {
    fn clone(&self) -> Self {
        self.0.lock().readers += 1;
        PipeReader(self.0.clone())
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.0.lock().readers -= 1;
        self.0.notify.notify_waiters();
    }
}

impl PipeReader {
    /// Up to `size` bytes; `Ok(None)` at EOF; empty when nothing is available yet.
    pub(super) fn take(&self, size: usize) -> Option<Bytes> {
        let mut st = self.0.lock();
        if !st.buf.is_empty() {
            let n = size.min(st.buf.len());
            let v: Vec<u8> = st.buf.drain(..n).collect();
            drop(st);
            self.0.notify.notify_waiters();
            return Some(Bytes::from(v));
        }
        if st.writers == 0 {
            return None;
        }
        Some(Bytes::new())
    }

    pub(super) async fn wait_readable(&self) {
        loop {
            let notified = self.0.notify.notified();
            {
                let st = self.0.lock();
                if !st.buf.is_empty() || st.writers == 0 {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
pub(crate) struct PipeWriter(Arc<PipeShared>);

impl Clone for PipeWriter {
    fn clone(&self) -> Self {
        self.0.lock().writers += 1;
        PipeWriter(self.0.clone())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.0.lock().writers -= 1;
        self.0.notify.notify_waiters();
    }
}

impl PipeWriter {
    pub(super) fn space(&self) -> Result<usize, StreamError> {
        let st = self.0.lock();
        if st.readers == 0 {
            return Err(StreamError::Closed);
        }
        Ok(self.0.cap.saturating_sub(st.buf.len()))
    }

    pub(super) fn push(&self, bytes: &[u8]) -> Result<(), StreamError> {
        let mut st = self.0.lock();
        if st.readers == 0 {
            return Err(StreamError::Closed);
        }
        st.buf.extend(bytes);
        drop(st);
        self.0.notify.notify_waiters();
        Ok(())
    }

    pub(super) async fn wait_writable(&self) {
        loop {
            let notified = self.0.notify.notified();
            {
                let st = self.0.lock();
                if st.readers == 0 || st.buf.len() < self.0.cap {
                    return;
                }
            }
            notified.await;
        }
    }
}
