//! Standard streams of an instance as our own types, so a child can share ("inherit") its
//! parent's: reads take exactly what the guest asks for (no read-ahead), so a parent `read` and a
//! child `cat` see one consistent input. Every instance, shell or not, gets its streams here.

use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};

use super::pipe::{Pipe, PipeReader, PipeWriter};
use crate::engine::{CapturedOutput, DiskQuota};

/// The three standard streams of one instance.
pub(crate) struct InstanceIo {
    pub(crate) stdin: Source,
    pub(crate) stdout: Sink,
    pub(crate) stderr: Sink,
    /// Rich outputs (a shell's children get their own, which are not reported).
    pub(crate) display: crate::engine::DisplaySink,
    /// Receives the instance's peak linear memory when it ends.
    pub(crate) peak_memory: Arc<std::sync::atomic::AtomicU64>,
}

/// A guest's standard input.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Pipe(PipeReader),
    File(Arc<Mutex<std::fs::File>>),
    Empty,
}

impl Source {
    pub(crate) fn data(data: Vec<u8>) -> Self {
        Source::Pipe(Pipe::with_data(data).reader())
    }
}

impl IsTerminal for Source {
    fn is_terminal(&self) -> bool {
        false
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Source {
    async fn ready(&mut self) {
        if let Source::Pipe(r) = self {
            r.wait_readable().await;
        }
    }
}

impl InputStream for Source {
    fn read(&mut self, size: usize) -> Result<Bytes, StreamError> {
        match self {
            Source::Pipe(r) => r.take(size).ok_or(StreamError::Closed),
            Source::File(f) => {
                let mut buf = vec![0u8; size.min(64 * 1024)];
                let n = f
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(&mut buf)
                    .map_err(|e| StreamError::LastOperationFailed(e.into()))?;
                if n == 0 && size > 0 {
                    return Err(StreamError::Closed);
                }
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Source::Empty => Err(StreamError::Closed),
        }
    }
}

/// Only used by WASI preview 3 paths (preview 1 goes through [`InputStream`]).
impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match InputStream::read(&mut *self, buf.remaining()) {
            Ok(b) if b.is_empty() && buf.remaining() > 0 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(b) => {
                buf.put_slice(&b);
                Poll::Ready(Ok(()))
            }
            Err(StreamError::Closed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }
}

impl StdinStream for Source {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

/// A guest's standard output or error.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    Captured(CapturedOutput),
    /// The flag is the writing instance's "SIGPIPE received" mark.
    Pipe(PipeWriter, Arc<AtomicBool>),
    /// A file opened for a redirection; writes are charged to the sandbox's disk quota.
    File(Arc<Mutex<std::fs::File>>, Option<Arc<DiskQuota>>),
    Null,
}

impl Sink {
    /// The same destination, reporting a broken pipe to `flag` (the instance that will use it).
    pub(super) fn for_instance(&self, flag: &Arc<AtomicBool>) -> Sink {
        match self {
            Sink::Pipe(p, _) => Sink::Pipe(p.clone(), flag.clone()),
            other => other.clone(),
        }
    }

    pub(super) fn append(&self, bytes: &[u8]) -> Result<(), StreamError> {
        match self {
            Sink::Captured(c) => c.append(bytes),
            Sink::Pipe(p, flag) => p.push(bytes).map_err(|e| sigpipe(e, flag))?,
            Sink::File(f, quota) => {
                let charged = quota
                    .as_ref()
                    .is_none_or(|q| q.try_charge(u64::try_from(bytes.len()).unwrap_or(u64::MAX)));
                if !charged {
                    return Err(StreamError::LastOperationFailed(
                        std::io::Error::from(std::io::ErrorKind::StorageFull).into(),
                    ));
                }
                f.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write_all(bytes)
                    .map_err(|e| StreamError::LastOperationFailed(e.into()))?
            }
            Sink::Null => {}
        }
        Ok(())
    }
}

/// Writing to a pipe nobody reads: a POSIX process dies of SIGPIPE. WASI has no signals, so the
/// write traps and the stage reports status 141 (128 + SIGPIPE), silently, as a shell would.
fn sigpipe(e: StreamError, flag: &AtomicBool) -> StreamError {
    match e {
        StreamError::Closed => {
            flag.store(true, Ordering::SeqCst);
            StreamError::trap("broken pipe (SIGPIPE)")
        }
        e => e,
    }
}

impl IsTerminal for Sink {
    fn is_terminal(&self) -> bool {
        false
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sink {
    async fn ready(&mut self) {
        if let Sink::Pipe(p, _) = self {
            p.wait_writable().await;
        }
    }
}

impl OutputStream for Sink {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self {
            Sink::Pipe(p, flag) => p.space().map_err(|e| sigpipe(e, flag)),
            _ => Ok(64 * 1024),
        }
    }
}

/// Only used by WASI preview 3 paths (preview 1 goes through [`OutputStream`]).
impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.append(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(StreamError::Closed) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl StdoutStream for Sink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
