//! A raw QMP connection for explore: unix or TCP, connected without
//! reading anything (the client may wait behind another connection), with
//! every line and the end of file handed to the caller unjudged. The
//! suite's [`crate::Qmp`] reads the greeting at connect and sorts replies
//! from events; explore needs to see the order itself.

use std::{
    io::{self, Write},
    mem,
    net::{SocketAddr, TcpStream},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, net::UnixStream},
    },
    path::Path,
    time::{Duration, Instant},
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
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket for Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read_some(buf),
            Stream::Tcp(s) => s.read_some(buf),
        }
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
            let line = request_line(
                key,
                command,
                args.clone(),
                &id,
                &self.name,
                &self.transcript,
            );
            bytes.extend_from_slice(&line);
            ids.push(id);
        }
        let left = remaining(deadline).ok_or(QmpError::Timeout {
            awaiting: format!("room to send on {}", self.name),
        })?;
        let result = match &mut self.stream {
            Stream::Unix(s) => s
                .set_write_timeout(Some(left))
                .and_then(|()| s.write_all(&bytes)),
            Stream::Tcp(s) => s
                .set_write_timeout(Some(left))
                .and_then(|()| s.write_all(&bytes)),
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
        match self
            .reader
            .read_line_paced(&self.stream, deadline, chunk, &String::new)
        {
            Ok(line) => {
                self.transcript
                    .record(&self.name, Direction::Received, &line);
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
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes for the call.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            io::Error::other("the chardev's listen queue is full")
        } else {
            err
        });
    }
    let stream = UnixStream::from(owned);
    stream.set_nonblocking(false)?;
    Ok(stream)
}
