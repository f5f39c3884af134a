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
    /// A named pipe (`mkfifo`) has no ends when it is made: a reader waits for a first writer
    /// (rather than seeing EOF) and a writer for a first reader (rather than `EPIPE`).
    named: bool,
    had_writer: bool,
    had_reader: bool,
}

impl PipeState {
    /// Every writer is gone: readers see EOF once the buffer is drained.
    fn writers_gone(&self) -> bool {
        self.writers == 0 && (!self.named || self.had_writer)
    }

    /// Every reader is gone: writers get `EPIPE`.
    fn readers_gone(&self) -> bool {
        self.readers == 0 && (!self.named || self.had_reader)
    }
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

    /// A named pipe (see [`PipeState::named`]).
    pub(crate) fn named(cap: usize) -> Self {
        let p = Pipe::new(cap);
        p.0.lock().named = true;
        p
    }

    /// A named pipe that was read and has no ends left, so that its name opens a fresh one
    /// (what the last reader left unread is gone, as with a FIFO). Bytes written before any
    /// reader came stay for the first reader: a writer here does not wait for one to open.
    pub(crate) fn is_spent(&self) -> bool {
        let st = self.0.lock();
        st.readers == 0 && st.writers == 0 && st.had_reader
    }

    /// A pipe that already holds `data` and has no writer (reads `data`, then EOF).
    pub(crate) fn with_data(data: Vec<u8>) -> Self {
        let p = Pipe::new(data.len().max(1));
        p.0.lock().buf.extend(data);
        p
    }

    pub(crate) fn reader(&self) -> PipeReader {
        {
            let mut st = self.0.lock();
            st.readers += 1;
            st.had_reader = true;
        }
        self.0.notify.notify_waiters();
        PipeReader(self.0.clone())
    }

    pub(crate) fn writer(&self) -> PipeWriter {
        {
            let mut st = self.0.lock();
            st.writers += 1;
            st.had_writer = true;
        }
        self.0.notify.notify_waiters();
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
        if st.writers_gone() {
            return None;
        }
        Some(Bytes::new())
    }

    pub(super) async fn wait_readable(&self) {
        loop {
            let notified = self.0.notify.notified();
            {
                let st = self.0.lock();
                if !st.buf.is_empty() || st.writers_gone() {
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
        if st.readers_gone() {
            return Err(StreamError::Closed);
        }
        Ok(self.0.cap.saturating_sub(st.buf.len()))
    }

    pub(super) fn push(&self, bytes: &[u8]) -> Result<(), StreamError> {
        let mut st = self.0.lock();
        if st.readers_gone() {
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
                if st.readers_gone() || st.buf.len() < self.0.cap {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named pipe's reader waits for a first writer instead of seeing EOF, and its writer
    /// buffers for a first reader instead of failing; once both sides have come and gone, EOF
    /// and EPIPE are as for any pipe, and the pipe is spent.
    #[test]
    fn named_pipes_wait_for_their_first_peer() {
        let p = Pipe::named(4);
        let r = p.reader();
        assert_eq!(
            r.take(8).map(|b| b.len()),
            Some(0),
            "no writer yet: wait, not EOF"
        );
        drop(r);
        assert!(p.is_spent(), "read and closed: its name opens a fresh pipe");
        let p = Pipe::named(4);
        let w = p.writer();
        assert_eq!(w.space().ok(), Some(4), "no reader yet: buffer, not EPIPE");
        w.push(b"ab").expect("push");
        drop(w);
        assert!(!p.is_spent(), "written bytes wait for the first reader");
        let r = p.reader();
        assert_eq!(r.take(8).as_deref(), Some(&b"ab"[..]));
        assert_eq!(r.take(8), None, "every writer gone: EOF");
        drop(r);
        assert!(p.is_spent());
        // a plain pipe keeps its old meaning
        let plain = Pipe::new(4);
        let r = plain.reader();
        assert_eq!(r.take(8), None, "no writer on a plain pipe: EOF");
    }
}
