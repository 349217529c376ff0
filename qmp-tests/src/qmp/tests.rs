//! The client against a scripted QMP peer in a thread.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::PathBuf,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::{Pending, Qmp, QmpError};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;
const GREETING_NO_OOB: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 10}, "package": ""}, "capabilities": []}}"#;

/// The server side of one connection.
struct Peer {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Peer {
    fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    fn request(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn reply(&mut self, request: &Value, ret: Value) {
        let line = json!({ "return": ret, "id": request["id"] }).to_string();
        self.send(&line);
    }
}

struct Server {
    _dir: TempDir,
    path: PathBuf,
    thread: JoinHandle<()>,
}

impl Server {
    fn finish(self) {
        self.thread.join().expect("the fake server panicked");
    }
}

fn serve(script: impl FnOnce(Peer) + Send + 'static) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // The peer is part of the test: it must not hang it either.
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let writer = stream.try_clone().unwrap();
        script(Peer { reader: BufReader::new(stream), writer });
    });
    Server { _dir: dir, path, thread }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[test]
fn greeting_with_oob_and_negotiation_enabling_it() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let req = peer.request();
        assert_eq!(req["execute"], "qmp_capabilities");
        assert_eq!(req["arguments"], json!({ "enable": ["oob"] }));
        peer.reply(&req, json!({}));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert_eq!(qmp.greeting()["QMP"]["version"]["qemu"]["major"], 10);
    assert!(qmp.offers("oob"));
    qmp.negotiate_with(&["oob"], soon()).unwrap();
    server.finish();
}

#[test]
fn greeting_without_oob() {
    let server = serve(|mut peer| {
        peer.send(GREETING_NO_OOB);
        let req = peer.request();
        assert!(req.get("arguments").is_none(), "plain negotiation sends no arguments");
        peer.reply(&req, json!({}));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert!(!qmp.offers("oob"));
    qmp.negotiate(soon()).unwrap();
    server.finish();
}

#[test]
fn an_event_before_the_greeting_is_refused() {
    let server = serve(|peer| {
        // One write: the client hangs up after the first line, and a
        // second write could then fail.
        let event = r#"{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 0}}"#;
        let mut writer = peer.writer;
        writer.write_all(format!("{event}\n{GREETING}\n").as_bytes()).unwrap();
    });
    match Qmp::connect(&server.path, soon()) {
        Err(err @ QmpError::BeforeGreeting { .. }) => {
            let text = err.to_string();
            assert!(text.contains("RESUME") && text.contains("greeting"), "{text}");
        }
        other => panic!("expected BeforeGreeting, got {:?}", other.err()),
    }
    server.finish();
}

#[test]
fn pending_tells_nothing_data_and_end_of_file() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let server = serve(move |mut peer| {
        peer.send(GREETING);
        go_rx.recv().unwrap();
        peer.send(r#"{"return": {"late": true}}"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert_eq!(qmp.pending().unwrap(), Pending::Nothing);
    go_tx.send(()).unwrap();
    server.finish();
    // The peer wrote, then closed: data first, then end of file.
    assert_eq!(qmp.pending().unwrap(), Pending::Data);
    assert_eq!(qmp.read_any(soon()).unwrap()["return"]["late"], true);
    assert_eq!(qmp.pending().unwrap(), Pending::Closed);
}

#[test]
fn execute_with_fd_passes_the_fd_with_the_command() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let (line, fds) = recv_with_fds(&peer.writer);
        let req: Value = serde_json::from_slice(line.trim_ascii_end()).unwrap();
        assert_eq!(req["execute"], "getfd");
        assert_eq!(fds, 1, "one fd must come with the command");
        peer.reply(&req, json!({}));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    qmp.execute_with_fd("getfd", json!({ "fdname": "x" }), std::os::fd::AsFd::as_fd(&file), soon())
        .unwrap();
    server.finish();
}

/// One recvmsg: the bytes and how many fds came with them (closed here).
fn recv_with_fds(stream: &UnixStream) -> (Vec<u8>, usize) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; 4096];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let got = rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::empty()).unwrap();
    assert!(got.bytes > 0, "recvmsg: end of file");
    // Dropping the OwnedFds closes them.
    let fds = control
        .drain()
        .map(|message| match message {
            RecvAncillaryMessage::ScmRights(fds) => fds.count(),
            _ => 0,
        })
        .sum();
    buf.truncate(got.bytes);
    (buf, fds)
}

#[test]
fn events_around_a_reply_are_kept_in_order() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let req = peer.request();
        peer.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}"#);
        peer.send(r#"{"event": "RESUME", "timestamp": {"seconds": 2, "microseconds": 0}}"#);
        peer.reply(&req, json!({ "status": "running" }));
        peer.send(r#"{"event": "SHUTDOWN", "timestamp": {"seconds": 3, "microseconds": 0}}"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let ret = qmp.execute("query-status", Value::Null, soon()).unwrap();
    assert_eq!(ret["status"], "running");
    let names: Vec<Value> =
        (0..3).map(|_| qmp.next_event(soon()).unwrap()["event"].clone()).collect();
    assert_eq!(names, ["STOP", "RESUME", "SHUTDOWN"]);
    server.finish();
}

#[test]
fn wait_event_skips_but_keeps_other_events() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        peer.send(r#"{"event": "A", "timestamp": {"seconds": 1, "microseconds": 0}}"#);
        peer.send(r#"{"event": "B", "timestamp": {"seconds": 2, "microseconds": 0}}"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert_eq!(qmp.wait_event("B", soon()).unwrap()["event"], "B");
    let rest: Vec<Value> = qmp.take_events();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["event"], "A");
    server.finish();
}

#[test]
fn a_reply_just_before_close_comes_first_then_eof() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let req = peer.request();
        let line = json!({ "return": {}, "id": req["id"] }).to_string() + "\n";
        // Reply and close back to back, as QEMU does on self-removal.
        peer.writer.write_all(line.as_bytes()).unwrap();
        peer.writer.shutdown(std::net::Shutdown::Both).unwrap();
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    qmp.execute("monitor-remove", json!({ "id": "self" }), soon()).unwrap();
    assert!(matches!(qmp.read_any(soon()), Err(QmpError::Eof)));
    // Eof is sticky: it does not turn into a timeout on the next read.
    assert!(matches!(qmp.read_any(soon()), Err(QmpError::Eof)));
    server.finish();
}

#[test]
fn wait_eof_queues_events_before_the_close() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        peer.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    qmp.wait_eof(soon()).unwrap();
    assert_eq!(qmp.take_events().len(), 1);
    server.finish();
}

#[test]
fn a_one_mib_reply_in_small_writes() {
    const SIZE: usize = 1 << 20;
    let server = serve(|mut peer| {
        peer.send(GREETING);
        for _ in 0..2 {
            let req = peer.request();
            let line = json!({ "return": "x".repeat(SIZE), "id": req["id"] }).to_string() + "\n";
            for chunk in line.as_bytes().chunks(997) {
                peer.writer.write_all(chunk).unwrap();
            }
        }
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let ret = qmp.execute("query-big", Value::Null, soon()).unwrap();
    assert_eq!(ret.as_str().map(str::len), Some(SIZE));
    let raw = qmp.execute_raw("query-big", Value::Null, soon()).unwrap();
    let reply: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["return"].as_str().map(str::len), Some(SIZE));
    server.finish();
}

#[test]
fn malformed_json_reports_the_line() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        peer.request();
        peer.send(r#"{"return": oops"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    match qmp.execute("query-status", Value::Null, soon()) {
        Err(QmpError::Malformed { line }) => assert_eq!(line, r#"{"return": oops"#),
        other => panic!("expected Malformed, got {other:?}"),
    }
    server.finish();
}

#[test]
fn qmp_errors_carry_class_and_desc() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let req = peer.request();
        let line = json!({
            "error": { "class": "CommandNotFound", "desc": "The command nope has not been found" },
            "id": req["id"],
        });
        peer.send(&line.to_string());
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let err = qmp.execute("nope", Value::Null, soon()).unwrap_err();
    assert_eq!(err.class(), Some("CommandNotFound"));
    assert!(err.to_string().contains("has not been found"));
    server.finish();
}

#[test]
fn silence_times_out_at_the_deadline() {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let server = serve(move |mut peer| {
        peer.send(GREETING);
        peer.request();
        // Stay connected and say nothing until the client has given up.
        let _ = released.recv_timeout(Duration::from_secs(10));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let start = Instant::now();
    let err =
        qmp.execute("query-status", Value::Null, start + Duration::from_millis(200)).unwrap_err();
    let waited = start.elapsed();
    match err {
        QmpError::Timeout { awaiting } => assert!(awaiting.contains("query-status"), "{awaiting}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(200), "gave up early: {waited:?}");
    assert!(waited < Duration::from_secs(2), "gave up late: {waited:?}");
    assert!(qmp.transcript().render().contains("timed out"));
    release.send(()).unwrap();
    server.finish();
}

#[test]
fn late_reply_to_an_abandoned_request_is_skipped() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let first = peer.request();
        let second = peer.request();
        // The first request's reply comes only after the client gave up
        // on it and sent the second.
        peer.reply(&first, json!("late"));
        peer.reply(&second, json!("second"));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let first = qmp.send("query-a", Value::Null, soon()).unwrap();
    assert!(matches!(
        qmp.read_reply("query-a", &first, Instant::now() + Duration::from_millis(50)),
        Err(QmpError::Timeout { .. })
    ));
    let ret = qmp.execute("query-b", Value::Null, soon()).unwrap();
    assert_eq!(ret, json!("second"));
    assert!(qmp.transcript().render().contains("ignoring a late reply to abandoned request qmp-1"));
    server.finish();
}

#[test]
fn a_reply_with_a_foreign_id_is_still_malformed() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        let _ = peer.request();
        peer.send(r#"{"return": {}, "id": "someone-else-7"}"#);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert!(matches!(qmp.execute("query-a", Value::Null, soon()), Err(QmpError::Malformed { .. })));
    server.finish();
}

#[test]
fn observe_reports_silence_data_and_end_of_file() {
    let server = serve(|mut peer| {
        peer.send(GREETING);
        // Silent until the client's request, then a late line and close.
        let request = peer.request();
        peer.reply(&request, json!({}));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    let quiet = qmp.observe(Duration::from_millis(50)).unwrap();
    assert!(quiet.silent(), "{}", quiet.describe());
    qmp.send("stop", Value::Null, soon()).unwrap();
    let seen = qmp.observe(Duration::from_millis(300)).unwrap();
    assert_eq!(seen.messages.len(), 1, "{}", seen.describe());
    assert!(seen.closed);
    assert!(!seen.silent());
    server.finish();
}
