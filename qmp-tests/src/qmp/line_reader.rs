//! Newline-framed reading with a deadline on every read.
//!
//! The buffer is our own rather than a `BufReader` so that a single
//! multi-hundred-KiB line costs linear time: only bytes that arrived since
//! the last scan are searched for '\n', and storage grows by doubling.

use std::{
    io::{self, Read},
    net::TcpStream,
    os::unix::net::UnixStream,
    time::{Duration, Instant},
};

use crate::{
    deadline::{remaining, timed_out},
    qmp::QmpError,
};

const MIN_GROWTH: usize = 64 * 1024;

/// A stream socket a [`LineReader`] can read with a deadline: QMP runs
/// over unix and TCP sockets alike.
pub(crate) trait Socket {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Socket for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

pub(crate) struct LineReader {
    /// Initialised storage; only `start..end` holds unread data.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `start..scanned` is known to hold no '\n'.
    scanned: usize,
    eof: bool,
    /// The end came as a connection reset rather than an orderly close.
    reset: bool,
}

impl LineReader {
    pub(crate) fn new() -> LineReader {
        LineReader { buf: Vec::new(), start: 0, end: 0, scanned: 0, eof: false, reset: false }
    }

    /// The next line without its '\n'.
    ///
    /// Lines that arrived before the peer closed are all returned before
    /// `Eof` is reported.
    pub(crate) fn read_line(
        &mut self,
        stream: &impl Socket,
        deadline: Instant,
        awaiting: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, QmpError> {
        self.read_line_paced(stream, deadline, usize::MAX, awaiting)
    }

    /// Like [`LineReader::read_line`], taking at most `chunk` bytes per
    /// read: a client that reads slowly, so QEMU's output backs up.
    pub(crate) fn read_line_paced(
        &mut self,
        stream: &impl Socket,
        deadline: Instant,
        chunk: usize,
        awaiting: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, QmpError> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            if self.eof {
                return Err(QmpError::Eof);
            }
            let Some(left) = remaining(deadline) else {
                return Err(QmpError::Timeout { awaiting: awaiting() });
            };
            stream.set_read_timeout(Some(left))?;
            self.make_room();
            let room = self.buf.len().min(self.end.saturating_add(chunk));
            match stream.read_some(&mut self.buf[self.end..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if timed_out(&err) => {
                    return Err(QmpError::Timeout { awaiting: awaiting() })
                }
                // A reset after QEMU died is, for the caller, the same as
                // a close: the peer is gone.
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    self.reset = true;
                }
                Err(err) => return Err(QmpError::Io(err)),
            }
        }
    }

    /// Whether the end of file was a connection reset.
    pub(crate) fn was_reset(&self) -> bool {
        self.reset
    }

    /// Whether the peer's end of file has been read.
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Bytes of an unterminated line still held, e.g. after `Eof`.
    pub(crate) fn partial(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let newline = self.buf[self.scanned..self.end].iter().position(|&b| b == b'\n');
        let Some(offset) = newline else {
            self.scanned = self.end;
            return None;
        };
        let line_end = self.scanned + offset;
        let line = self.buf[self.start..line_end].to_vec();
        self.start = line_end + 1;
        self.scanned = self.start;
        Some(line)
    }

    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        // Moving unread bytes to the front only when they are at most half
        // the buffer keeps the total copying linear in the bytes received.
        if self.start > 0 && self.end - self.start <= self.buf.len() / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
            return;
        }
        let growth = self.buf.len().max(MIN_GROWTH);
        self.buf.resize(self.buf.len() + growth, 0);
    }
}
