//! A standard input fed while the guest runs (a terminal's keystrokes), instead of bytes known
//! up front: the host pushes into the same bounded pipe pipeline stages use.

use super::pipe::{Pipe, PipeReader, PipeWriter, PIPE_CAPACITY};

/// The guest's end: put it in [`crate::engine::ExecSpec::live_stdin`].
#[derive(Clone, Debug)]
pub struct LiveStdin(pub(crate) PipeReader);

/// The host's end. Dropping it is end-of-file for the guest.
#[derive(Debug)]
pub struct StdinFeed(PipeWriter);

/// The guest no longer reads its standard input (it ended).
#[derive(Debug, thiserror::Error)]
#[error("the program's standard input is closed")]
pub struct StdinClosed;

/// A new live standard input and the feed that writes to it.
pub fn live_stdin() -> (LiveStdin, StdinFeed) {
    let pipe = Pipe::new(PIPE_CAPACITY);
    (LiveStdin(pipe.reader()), StdinFeed(pipe.writer()))
}

impl StdinFeed {
    /// Appends `bytes`, waiting while the pipe is full (the guest is not reading), so a client
    /// that types faster than the program reads costs the host at most the pipe's capacity.
    pub async fn send(&self, mut bytes: &[u8]) -> Result<(), StdinClosed> {
        while !bytes.is_empty() {
            let room = self.0.space().map_err(|_| StdinClosed)?;
            if room == 0 {
                self.0.wait_writable().await;
                continue;
            }
            let n = room.min(bytes.len());
            self.0.push(&bytes[..n]).map_err(|_| StdinClosed)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}
