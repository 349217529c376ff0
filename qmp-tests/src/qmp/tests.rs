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

use super::{Qmp, QmpError};

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
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let writer = stream.try_clone().unwrap();
        script(Peer {
            reader: BufReader::new(stream),
            writer,
        });
    });
    Server {
        _dir: dir,
        path,
        thread,
    }
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
        assert!(
            req.get("arguments").is_none(),
            "plain negotiation sends no arguments"
        );
        peer.reply(&req, json!({}));
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert!(!qmp.offers("oob"));
    qmp.negotiate(soon()).unwrap();
    server.finish();
}

#[test]
fn events_before_the_greeting_are_kept() {
    let server = serve(|mut peer| {
        peer.send(r#"{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 0}}"#);
        peer.send(GREETING);
    });
    let mut qmp = Qmp::connect(&server.path, soon()).unwrap();
    assert!(qmp.offers("oob"));
    let events = qmp.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "RESUME");
    server.finish();
}

#[test]
fn a_first_line_that_is_no_greeting_is_malformed() {
    let server = serve(|mut peer| peer.send(r#"{"return": {}}"#));
    match Qmp::connect(&server.path, soon()) {
        Err(QmpError::Malformed { line }) => assert!(line.contains("return")),
        other => panic!("expected Malformed, got {:?}", other.err()),
    }
    server.finish();
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
    let names: Vec<Value> = (0..3)
        .map(|_| qmp.next_event(soon()).unwrap()["event"].clone())
        .collect();
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
    qmp.execute("monitor-remove", json!({ "id": "self" }), soon())
        .unwrap();
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
    let err = qmp
        .execute(
            "query-status",
            Value::Null,
            start + Duration::from_millis(200),
        )
        .unwrap_err();
    let waited = start.elapsed();
    match err {
        QmpError::Timeout { awaiting } => assert!(awaiting.contains("query-status"), "{awaiting}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(200),
        "gave up early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "gave up late: {waited:?}");
    assert!(qmp.transcript().render().contains("timed out"));
    release.send(()).unwrap();
    server.finish();
}
