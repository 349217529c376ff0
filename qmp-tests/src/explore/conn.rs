//! A raw QMP connection for explore: unix or TCP, connected without
//! reading anything (the client may wait behind another connection), or
//! a pty's slave side, with every line and the end of file handed to the
//! caller unjudged. The suite's [`crate::Qmp`] reads the greeting at
//! connect and sorts replies from events; explore needs to see the order
//! itself.

use std::{
    cell::Cell,
    fs::File,
    io::{self, Read as _, Write},
    net::{SocketAddr, TcpStream},
    os::unix::{fs::OpenOptionsExt, net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use rustix::{
    event::PollFlags,
    io::Errno,
    net::{connect, socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType},
    termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions},
};
use serde_json::Value;

use crate::{
    deadline::remaining,
    qmp::{
        line_reader::{LineReader, Socket},
        request_line, transcript, Direction, QmpError, Transcript,
    },
};

pub enum Addr {
    Unix(std::path::PathBuf),
    Tcp(SocketAddr),
    /// A pty's slave side, as chardev-add returned it.
    Pty(std::path::PathBuf),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Pty(Pty),
}

impl Socket for Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Pty(s) => {
                s.timeout.set(timeout);
                Ok(())
            }
        }
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read_some(buf),
            Stream::Tcp(s) => s.read_some(buf),
            Stream::Pty(s) => s.read_some(buf),
        }
    }
}

/// A pty's slave, opened non-blocking: reads and writes wait with poll
/// until their deadline.
struct Pty {
    file: File,
    timeout: Cell<Option<Duration>>,
}

impl Pty {
    /// Opens the slave and makes it raw, without echo, before anything
    /// is read or written: no line discipline between us and QEMU.
    fn open(path: &Path) -> io::Result<Pty> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)?;
        let mut tio = tcgetattr(&file)?;
        tio.make_raw();
        tio.local_modes.remove(LocalModes::ECHO | LocalModes::ECHONL);
        tcsetattr(&file, OptionalActions::Now, &tio)?;
        Ok(Pty { file, timeout: Cell::new(None) })
    }

    /// Waits up to `left` for `events`; false when the time ran out.
    fn wait(&self, events: PollFlags, left: Duration) -> io::Result<bool> {
        crate::deadline::wait_ready(&self.file, events, Instant::now() + left)
    }

    /// A hang-up (QEMU closed the master side) reads as end of file.
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.timeout.get().unwrap_or(Duration::from_secs(3600));
        if !self.wait(PollFlags::IN, left)? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match (&self.file).read(buf) {
            Err(err) if err.raw_os_error() == Some(libc::EIO) => Ok(0),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                Err(io::ErrorKind::Interrupted.into())
            }
            other => other,
        }
    }

    fn write_all(&self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(left) = remaining(deadline) else {
                return Err(io::ErrorKind::TimedOut.into());
            };
            self.wait(PollFlags::OUT, left)?;
            match (&self.file).write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) if err.raw_os_error() == Some(libc::EIO) => {
                    return Err(io::ErrorKind::BrokenPipe.into())
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// What one read gave.
pub enum Read {
    Line(Vec<u8>),
    /// End of file; `partial` holds an unterminated last line, if any.
    Eof {
        partial: Option<String>,
        reset: bool,
    },
    /// Nothing by the deadline.
    Nothing,
}

pub struct Conn {
    stream: Stream,
    reader: LineReader,
    name: String,
    transcript: Transcript,
    next_id: u64,
}

impl Conn {
    /// Connects without waiting for the peer to accept: the connection
    /// may sit in the listen queue. A full queue is an error, not a wait.
    pub fn connect(
        addr: &Addr,
        name: &str,
        transcript: Transcript,
        deadline: Instant,
    ) -> io::Result<Conn> {
        let stream = match addr {
            Addr::Unix(path) => Stream::Unix(connect_unix_nonblocking(path)?),
            Addr::Tcp(addr) => {
                let left = remaining(deadline).unwrap_or(Duration::from_millis(1));
                Stream::Tcp(TcpStream::connect_timeout(addr, left)?)
            }
            Addr::Pty(path) => Stream::Pty(Pty::open(path)?),
        };
        transcript.note(name, "connected");
        Ok(Conn {
            stream,
            reader: LineReader::new(),
            name: name.to_string(),
            transcript,
            next_id: 1,
        })
    }

    /// Sends `requests` (`exec-oob` for those marked) in one write; returns
    /// their ids.
    pub fn send(
        &mut self,
        requests: &[(bool, &str, Value)],
        deadline: Instant,
    ) -> Result<Vec<String>, QmpError> {
        let mut ids = Vec::new();
        let mut bytes = Vec::new();
        for (oob, command, args) in requests {
            let id = format!("{}-{}", self.name, self.next_id);
            self.next_id += 1;
            let key = if *oob { "exec-oob" } else { "execute" };
            let line = request_line(key, command, args.clone(), &id, &self.name, &self.transcript);
            bytes.extend_from_slice(&line);
            ids.push(id);
        }
        let left = remaining(deadline)
            .ok_or(QmpError::Timeout { awaiting: format!("room to send on {}", self.name) })?;
        let result = match &mut self.stream {
            Stream::Unix(s) => s.set_write_timeout(Some(left)).and_then(|()| s.write_all(&bytes)),
            Stream::Tcp(s) => s.set_write_timeout(Some(left)).and_then(|()| s.write_all(&bytes)),
            Stream::Pty(s) => s.write_all(&bytes, deadline),
        };
        match result {
            Ok(()) => Ok(ids),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                Err(QmpError::Eof)
            }
            Err(err) => Err(QmpError::Io(err)),
        }
    }

    /// The next line, the end of file, or nothing by `deadline`; reads of
    /// at most `chunk` bytes.
    pub fn read(&mut self, deadline: Instant, chunk: usize) -> Result<Read, QmpError> {
        match self.reader.read_line_paced(&self.stream, deadline, chunk, &String::new) {
            Ok(line) => {
                self.transcript.record(&self.name, Direction::Received, &line);
                Ok(Read::Line(line))
            }
            Err(QmpError::Eof) => {
                let partial = (!self.reader.partial().is_empty())
                    .then(|| transcript::abbreviate(self.reader.partial()));
                let reset = self.reader.was_reset();
                let note = match (&partial, reset) {
                    (_, true) => "connection reset".to_string(),
                    (Some(p), _) => format!("end of file after an unterminated line: {p}"),
                    (None, _) => "end of file".to_string(),
                };
                self.transcript.note(&self.name, &note);
                Ok(Read::Eof { partial, reset })
            }
            Err(QmpError::Timeout { .. }) => Ok(Read::Nothing),
            Err(err) => Err(err),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn close(self) {
        self.transcript.note(&self.name, "close");
    }
}

/// The port of a TCP server chardev, from query-chardev's filename
/// (`disconnected:tcp:127.0.0.1:PORT,server=on`).
pub fn tcp_port(filename: &str) -> Option<u16> {
    filename.split(',').next()?.rsplit(':').next()?.parse().ok()
}

/// `connect(2)` on a non-blocking unix socket: a listener whose queue is
/// full fails with EAGAIN at once instead of blocking us.
fn connect_unix_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let addr = SocketAddrUnix::new(path)?;
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd = socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    match connect(&fd, &addr) {
        Ok(()) => {}
        Err(Errno::AGAIN) => return Err(io::Error::other("the chardev's listen queue is full")),
        Err(err) => return Err(err.into()),
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}
