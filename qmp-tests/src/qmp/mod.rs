//! A QMP client over a unix socket.
//!
//! Every wait takes an absolute deadline. Events that arrive while a reply
//! is awaited are kept, in order, for later `wait_event`/`next_event`.

mod error;
mod fd_passing;
pub(crate) mod line_reader;
pub(crate) mod transcript;

#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    io::{self, Write},
    os::{fd::BorrowedFd, unix::net::UnixStream},
    path::Path,
    time::{Duration, Instant},
};

use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    io::Errno,
    net::{recv, RecvFlags},
};
use serde_json::{json, Map, Value};

use crate::deadline::{remaining, timed_out};
use line_reader::LineReader;

pub use error::QmpError;

pub use transcript::{Direction, Transcript};

/// Lines longer than this are never events; `execute_raw` hands them back
/// unparsed, which is the point of it.
const MAX_EVENT_LINE: usize = 64 * 1024;

/// One connection to a QMP monitor.
pub struct Qmp {
    stream: UnixStream,
    reader: LineReader,
    greeting: Value,
    events: VecDeque<Value>,
    next_id: u64,
    name: String,
    transcript: Transcript,
}

impl Qmp {
    /// Connects to the monitor at `path` and reads its greeting.
    ///
    /// `deadline` bounds the greeting. The connect itself does not wait on
    /// the peer: on a listening unix socket the kernel completes it at once
    /// (the connection waits in the backlog; only a full backlog would
    /// block), and with no listener it fails at once.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Qmp, QmpError> {
        Qmp::connect_named(path, "qmp", Transcript::new(), deadline)
    }

    /// Like [`Qmp::connect`], recording traffic as `name` in `transcript`.
    pub fn connect_named(
        path: &Path,
        name: &str,
        transcript: Transcript,
        deadline: Instant,
    ) -> Result<Qmp, QmpError> {
        transcript.note(name, &format!("connect {}", path.display()));
        let stream = UnixStream::connect(path).inspect_err(|err| {
            transcript.note(name, &format!("connect failed: {err}"));
        })?;
        Qmp::from_stream(stream, name, transcript, deadline)
    }

    /// Takes over an already connected stream and reads the greeting.
    pub fn from_stream(
        stream: UnixStream,
        name: &str,
        transcript: Transcript,
        deadline: Instant,
    ) -> Result<Qmp, QmpError> {
        let mut qmp = Qmp {
            stream,
            reader: LineReader::new(),
            greeting: Value::Null,
            events: VecDeque::new(),
            next_id: 1,
            name: name.to_string(),
            transcript,
        };
        // Like QEMU's own client (python/qemu/qmp), anything but the
        // greeting first is a protocol error, not something to queue.
        let (line, message) = qmp.read_message(deadline, &|| "the QMP greeting".into())?;
        if message.get("QMP").is_none() {
            return Err(QmpError::BeforeGreeting { line: transcript::abbreviate(&line) });
        }
        qmp.greeting = message;
        Ok(qmp)
    }

    /// The `{"QMP": {...}}` greeting as received.
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Whether the greeting offers `capability` (e.g. "oob").
    pub fn offers(&self, capability: &str) -> bool {
        self.greeting["QMP"]["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|cap| cap == capability))
    }

    /// The name this connection has in the transcript.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Leaves capabilities-negotiation mode without enabling anything.
    pub fn negotiate(&mut self, deadline: Instant) -> Result<(), QmpError> {
        self.negotiate_with(&[], deadline)
    }

    /// Leaves capabilities-negotiation mode enabling `capabilities`.
    pub fn negotiate_with(
        &mut self,
        capabilities: &[&str],
        deadline: Instant,
    ) -> Result<(), QmpError> {
        let args =
            if capabilities.is_empty() { Value::Null } else { json!({ "enable": capabilities }) };
        self.execute("qmp_capabilities", args, deadline)?;
        Ok(())
    }

    /// Runs `command` and returns its `return` value. `args` of
    /// `Value::Null` sends no arguments.
    pub fn execute(
        &mut self,
        command: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<Value, QmpError> {
        let id = self.send(command, args, deadline)?;
        self.read_reply(command, &id, deadline)
    }

    /// Sends `command` without waiting; returns the id its reply will carry.
    pub fn send(
        &mut self,
        command: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<String, QmpError> {
        self.send_as("execute", command, args, deadline)
    }

    /// Sends `command` out-of-band (`exec-oob`; needs "oob" negotiated)
    /// without waiting; returns the id its reply will carry.
    pub fn send_oob(
        &mut self,
        command: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<String, QmpError> {
        self.send_as("exec-oob", command, args, deadline)
    }

    fn send_as(
        &mut self,
        key: &str,
        command: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<String, QmpError> {
        let (id, line) = self.request(key, command, args);
        self.write_all(&line, deadline, command)?;
        Ok(id)
    }

    /// Runs `command` with a copy of `fd` passed along (SCM_RIGHTS), as
    /// `getfd` wants, and returns its `return` value.
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        args: Value,
        fd: BorrowedFd<'_>,
        deadline: Instant,
    ) -> Result<Value, QmpError> {
        let (id, line) = self.request("execute", command, args);
        // The socket is blocking with a write timeout, so one sendmsg
        // either takes a prefix (the fd goes with it) or times out.
        let left = remaining(deadline).ok_or_else(|| self.send_timeout(command))?;
        self.stream.set_write_timeout(Some(left))?;
        let sent = loop {
            match fd_passing::send_with_fd(&self.stream, &line, fd) {
                Ok(sent) => break sent,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.write_error(err, command)),
            }
        };
        self.write_all(&line[sent..], deadline, command)?;
        self.read_reply(command, &id, deadline)
    }

    /// Builds a request line (newline-terminated) and records it.
    fn request(&mut self, key: &str, command: &str, args: Value) -> (String, Vec<u8>) {
        let id = format!("{}-{}", self.name, self.next_id);
        self.next_id += 1;
        let line = request_line(key, command, args, &id, &self.name, &self.transcript);
        (id, line)
    }

    /// Waits for the reply with `id` to `command`, keeping events that
    /// arrive first.
    pub fn read_reply(
        &mut self,
        command: &str,
        id: &str,
        deadline: Instant,
    ) -> Result<Value, QmpError> {
        let who = self.name.clone();
        let awaiting = || format!("the reply to {command} (id {id}) on {who}");
        loop {
            let (line, message) = self.read_message(deadline, &awaiting)?;
            if message.get("event").is_some() {
                self.events.push_back(message);
                continue;
            }
            match message.get("id").and_then(Value::as_str) {
                Some(got) if got == id => return reply_result(message, &line),
                // A reply to a request of ours whose wait was given up
                // (a timeout or an error): late, not a protocol error.
                Some(got) if self.is_abandoned(got) => {
                    self.transcript.note(
                        &self.name,
                        &format!("ignoring a late reply to abandoned request {got}"),
                    );
                }
                _ => return Err(malformed(&line)),
            }
        }
    }

    /// Whether `id` is one this connection sent before the request it
    /// waits for now, i.e. one whose reply nobody waits for any more.
    fn is_abandoned(&self, id: &str) -> bool {
        id.strip_prefix(&self.name)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n + 1 < self.next_id)
    }

    /// Runs `command` and returns its reply line unparsed, for callers that
    /// measure or store replies without paying for JSON parsing.
    ///
    /// Short lines are parsed to set events aside; a line too long to be an
    /// event is taken as the reply without looking inside.
    pub fn execute_raw(
        &mut self,
        command: &str,
        args: Value,
        deadline: Instant,
    ) -> Result<Vec<u8>, QmpError> {
        self.send(command, args, deadline)?;
        let who = self.name.clone();
        let awaiting = || format!("the reply to {command} on {who}");
        loop {
            let line = self.read_line(deadline, &awaiting)?;
            if line.len() < MAX_EVENT_LINE {
                let message = parse(&line)?;
                if message.get("event").is_some() {
                    self.events.push_back(message);
                    continue;
                }
            }
            return Ok(line);
        }
    }

    /// Waits for the first event called `name`; other events stay queued.
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> Result<Value, QmpError> {
        if let Some(pos) = self.events.iter().position(|ev| ev["event"] == name) {
            return Ok(self.events.remove(pos).expect("position is in range"));
        }
        let who = self.name.clone();
        let awaiting = || format!("event {name} on {who}");
        loop {
            let event = self.read_event(deadline, &awaiting)?;
            if event["event"] == name {
                return Ok(event);
            }
            self.events.push_back(event);
        }
    }

    /// The oldest event not yet taken, waiting for one if none is queued.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Value, QmpError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        let who = self.name.clone();
        let awaiting = || format!("an event on {who}");
        self.read_event(deadline, &awaiting)
    }

    /// Removes and returns every queued event.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Waits for the peer to close the connection. Events before the close
    /// are queued; anything else is unexpected.
    pub fn wait_eof(&mut self, deadline: Instant) -> Result<(), QmpError> {
        let who = self.name.clone();
        let awaiting = || format!("end of file on {who}");
        loop {
            match self.read_event(deadline, &awaiting) {
                Ok(event) => self.events.push_back(event),
                Err(QmpError::Eof) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads one message of any kind, bypassing the event queue.
    pub fn read_any(&mut self, deadline: Instant) -> Result<Value, QmpError> {
        let who = self.name.clone();
        let awaiting = || format!("a message on {who}");
        self.read_message(deadline, &awaiting).map(|(_, message)| message)
    }

    /// What the connection holds at this instant, without waiting: a
    /// message not yet read, end of file, or nothing. For asserting that
    /// QEMU wrote nothing and kept the connection open.
    pub fn pending(&mut self) -> Result<Pending, QmpError> {
        if !self.reader.partial().is_empty() {
            return Ok(Pending::Data);
        }
        if self.reader.at_eof() {
            return Ok(Pending::Closed);
        }
        let pending = poll_now(&self.stream)?;
        let note = match pending {
            Pending::Nothing => "nothing pending, connection open",
            Pending::Data => "data pending",
            Pending::Closed => "end of file pending",
        };
        self.transcript.note(&self.name, note);
        Ok(pending)
    }

    /// Whether the end of file read so far was a connection reset, which
    /// a peer causes by closing with input of ours still unread: the spec
    /// asks for an orderly end of file.
    pub fn was_reset(&self) -> bool {
        self.reader.was_reset()
    }

    /// Watches the connection for `window`: an observation period, not a
    /// synchronisation. Events already queued count as received. Returns
    /// everything that arrived, and whether the peer closed the
    /// connection before the window ended.
    pub fn observe(&mut self, window: Duration) -> Result<Observed, QmpError> {
        let end = Instant::now() + window;
        self.transcript.note(&self.name, &format!("watching for {} ms", window.as_millis()));
        let mut observed =
            Observed { messages: self.events.drain(..).collect(), ..Observed::default() };
        loop {
            match self.reader.read_line(&self.stream, end, &|| String::new()) {
                Ok(line) => {
                    self.transcript.record(&self.name, Direction::Received, &line);
                    observed.messages.push(parse(&line).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&line).into_owned())
                    }));
                }
                Err(QmpError::Timeout { .. }) => break,
                Err(QmpError::Eof) => {
                    observed.closed = true;
                    self.transcript.note(&self.name, "end of file");
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        if !self.reader.partial().is_empty() {
            observed.partial = Some(transcript::abbreviate(self.reader.partial()));
        }
        if !observed.closed && observed.messages.is_empty() && observed.partial.is_none() {
            self.transcript.note(&self.name, "nothing arrived, connection open");
        }
        Ok(observed)
    }

    /// Sends several requests in one write, so that QEMU finds them in its
    /// input together; returns their ids in order. Each is `(out_of_band,
    /// command, args)`.
    pub fn send_batch(
        &mut self,
        requests: &[(bool, &str, Value)],
        deadline: Instant,
    ) -> Result<Vec<String>, QmpError> {
        let mut ids = Vec::new();
        let mut bytes = Vec::new();
        for (oob, command, args) in requests {
            let key = if *oob { "exec-oob" } else { "execute" };
            let (id, line) = self.request(key, command, args.clone());
            ids.push(id);
            bytes.extend_from_slice(&line);
        }
        self.write_all(&bytes, deadline, "a batch of requests")?;
        Ok(ids)
    }

    /// Reads every message until the peer closes the connection.
    pub fn read_until_eof(&mut self, deadline: Instant) -> Result<Vec<Value>, QmpError> {
        let mut messages = Vec::new();
        loop {
            match self.read_any(deadline) {
                Ok(message) => messages.push(message),
                Err(QmpError::Eof) => return Ok(messages),
                Err(err) => return Err(err),
            }
        }
    }

    /// Closes the connection, noting it in the transcript.
    pub fn close(self) {
        self.transcript.note(&self.name, "disconnect");
    }

    fn read_event(
        &mut self,
        deadline: Instant,
        awaiting: &dyn Fn() -> String,
    ) -> Result<Value, QmpError> {
        let (line, message) = self.read_message(deadline, awaiting)?;
        if message.get("event").is_none() {
            return Err(malformed(&line));
        }
        Ok(message)
    }

    fn read_message(
        &mut self,
        deadline: Instant,
        awaiting: &dyn Fn() -> String,
    ) -> Result<(Vec<u8>, Value), QmpError> {
        let line = self.read_line(deadline, awaiting)?;
        let message = parse(&line)?;
        Ok((line, message))
    }

    fn read_line(
        &mut self,
        deadline: Instant,
        awaiting: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, QmpError> {
        let result = self.reader.read_line(&self.stream, deadline, awaiting);
        match &result {
            Ok(line) => self.transcript.record(&self.name, Direction::Received, line),
            Err(QmpError::Eof) if self.reader.was_reset() => {
                self.transcript.note(&self.name, "connection reset by QEMU");
            }
            Err(QmpError::Eof) if !self.reader.partial().is_empty() => {
                let partial = transcript::abbreviate(self.reader.partial());
                let note = format!("end of file after an unterminated line: {partial}");
                self.transcript.note(&self.name, &note);
            }
            Err(err) => self.transcript.note(&self.name, &err.to_string()),
        }
        result
    }

    fn write_all(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        command: &str,
    ) -> Result<(), QmpError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = remaining(deadline).ok_or_else(|| self.send_timeout(command))?;
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(rest) {
                Ok(0) => return Err(QmpError::Eof),
                Ok(n) => rest = &rest[n..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.write_error(err, command)),
            }
        }
        Ok(())
    }

    fn send_timeout(&self, command: &str) -> QmpError {
        QmpError::Timeout { awaiting: format!("room to send {command} on {}", self.name) }
    }

    fn write_error(&self, err: io::Error, command: &str) -> QmpError {
        if timed_out(&err) {
            return self.send_timeout(command);
        }
        match err.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => QmpError::Eof,
            _ => QmpError::Io(err),
        }
    }
}

/// What [`Qmp::observe`] saw during its window.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Every message, in order (a line that is no JSON object as a string).
    pub messages: Vec<Value>,
    /// Bytes of a line that had not ended when the window closed.
    pub partial: Option<String>,
    /// The peer closed the connection.
    pub closed: bool,
}

impl Observed {
    /// Nothing arrived and the connection is still open.
    pub fn silent(&self) -> bool {
        self.messages.is_empty() && self.partial.is_none() && !self.closed
    }

    /// What arrived, for a failure message.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.messages.iter().map(Value::to_string).collect();
        if let Some(partial) = &self.partial {
            parts.push(format!("an unterminated line {partial}"));
        }
        if self.closed {
            parts.push("end of file".to_string());
        }
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// See [`Qmp::pending`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Nothing,
    Data,
    Closed,
}

/// Polls `stream` with a zero timeout, then peeks to tell data from end
/// of file: both make the socket readable.
fn poll_now(stream: &UnixStream) -> Result<Pending, QmpError> {
    let mut fds = [PollFd::new(stream, PollFlags::IN | PollFlags::RDHUP)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    if poll(&mut fds, Some(&now)).map_err(|err| QmpError::Io(err.into()))? == 0 {
        return Ok(Pending::Nothing);
    }
    // MSG_PEEK leaves the byte for the next read.
    let mut byte = [0u8; 1];
    match recv(stream, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((0, _)) => Ok(Pending::Closed),
        Ok(_) => Ok(Pending::Data),
        Err(Errno::AGAIN) => Ok(Pending::Nothing),
        Err(Errno::CONNRESET) => Ok(Pending::Closed),
        Err(err) => Err(QmpError::Io(err.into())),
    }
}

/// One request as a newline-terminated line (`key` is `execute` or
/// `exec-oob`), recorded in `transcript` as sent by `who`.
pub(crate) fn request_line(
    key: &str,
    command: &str,
    args: Value,
    id: &str,
    who: &str,
    transcript: &Transcript,
) -> Vec<u8> {
    let mut request = Map::new();
    request.insert(key.into(), command.into());
    if !args.is_null() {
        request.insert("arguments".into(), args);
    }
    request.insert("id".into(), id.into());
    let mut line = serde_json::to_vec(&Value::Object(request)).expect("JSON values serialise");
    transcript.record(who, Direction::Sent, &line);
    line.push(b'\n');
    line
}

/// One QMP message: a JSON object.
pub fn parse(line: &[u8]) -> Result<Value, QmpError> {
    // `str::parse` runs serde_json's own instantiation of the parser,
    // optimised with the crate, where `from_slice::<Value>` would be
    // instantiated in this unoptimised one: half the time or less for
    // query-qmp-schema's 240 KB. JSON is UTF-8; other bytes are malformed.
    let text = std::str::from_utf8(line).map_err(|_| malformed(line))?;
    match text.parse::<Value>() {
        Ok(message @ Value::Object(_)) => Ok(message),
        _ => Err(malformed(line)),
    }
}

fn reply_result(mut message: Value, line: &[u8]) -> Result<Value, QmpError> {
    if let Some(ret) = message.get_mut("return") {
        return Ok(ret.take());
    }
    match message.get("error") {
        Some(error) => Err(QmpError::Qmp {
            class: error["class"].as_str().unwrap_or_default().to_string(),
            desc: error["desc"].as_str().unwrap_or_default().to_string(),
        }),
        None => Err(malformed(line)),
    }
}

fn malformed(line: &[u8]) -> QmpError {
    QmpError::Malformed { line: transcript::abbreviate(line) }
}
