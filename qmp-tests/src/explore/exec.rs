//! Runs one sequence against a real QEMU: each operation on the wire, then
//! what the model says must follow, checked with a deadline on every read.
//!
//! Each client has a ledger of what QEMU owes it (greeting, replies in
//! order, events in order, end of file). Every line a client reads must be
//! the next thing its ledger holds; a read that finds nothing by the
//! deadline, or finds anything else, is the failure, named with the
//! operation that was running.

use std::{
    collections::{BTreeSet, VecDeque},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustix::{
    process::Pid,
    thread::{sched_getaffinity, CpuSet},
};
use serde_json::{json, Value};

use super::{
    conn::{Addr, Conn, Read},
    model::{
        Answer, ClientState, Finish, Kind, Model, Op, Owed, RemoveCmd, Step, CHARDEVS, CLIENTS,
    },
    ops::{chardev_id, client_name, monitor_id, ALL_AT_ONCE},
};
use crate::{
    janitor::Janitor,
    machine::{LaunchOptions, Machine, StoppedBy},
    qmp::{QmpError, Transcript},
    sanitizer,
    scenarios::{
        usage::{has_asan, usage, FD_TOLERANCE, RSS_TOLERANCE_KIB},
        MIN_WAIT, WAIT_FACTOR,
    },
};

/// The final watch for output nobody is owed, after a synchronising
/// command on the main monitor. Shorter than the suite's 300 ms: explore
/// runs it once per sequence, hundreds of times per run.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Resident memory a sequence may add, against the suite's 512 KiB over
/// many identical cycles: a sequence queues up to a few MiB of schema
/// replies at once, and malloc keeps some of what they freed (one run in
/// 563 grew 544 KiB and never again in 10 reruns). A leak per operation
/// still shows over a long sequence; LeakSanitizer on the sanitizer build
/// is the exact check.
pub const RSS_BOUND_KIB: i64 = 4 * RSS_TOLERANCE_KIB;

/// Where and how sequences run.
#[derive(Clone)]
pub struct Target {
    pub qemu: PathBuf,
    /// Limit for each wait; `None` derives it from QEMU's start time.
    pub wait: Option<Duration>,
    pub janitor: Option<Arc<Janitor>>,
}

/// A sequence's run.
pub struct Run {
    /// `None` when every check held.
    pub failure: Option<Failure>,
    /// Operations executed, the failing one included.
    pub ops: usize,
    /// The operations and every QMP line each client saw.
    pub transcript: String,
    /// Situations of the model this run reached (see [`situations`]).
    pub reached: BTreeSet<&'static str>,
}

#[derive(Clone, Debug)]
pub struct Failure {
    /// The operation (`op 3: a: close`) or the finish.
    pub at: String,
    pub message: String,
}

impl Failure {
    /// Which rule broke, in a word: shrinking keeps to failures of the
    /// same kind, so that it does not slip to another bug on the way.
    pub fn kind(&self) -> &'static str {
        const KINDS: [(&str, &str); 18] = [
            ("a reply nobody is owed", "unexpected reply"),
            ("not owed here", "unexpected event"),
            ("connecting to", "connect"),
            ("sanitizer", "sanitizer"),
            ("output cut", "output cut"),
            ("inside a line", "output cut"),
            ("connection reset", "reset"),
            ("QEMU ended the connection", "early end of file"),
            ("still has a connection", "connection kept"),
            ("query-monitors lists", "listing"),
            ("still listed", "listing"),
            ("but the spec refuses", "refusal"),
            ("but must succeed", "refusal"),
            ("but the spec's refusal names", "refusal"),
            ("greeting", "greeting"),
            ("waited", "missing output"),
            ("after removing everything", "leak"),
            ("QEMU ", "exit"),
        ];
        KINDS
            .iter()
            .find(|(phrase, _)| self.message.contains(phrase))
            .map_or("other", |(_, kind)| kind)
    }
}

/// What a reply must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Answer(Answer),
    /// human-monitor-command: a return whose text is empty on success
    /// and the error otherwise.
    Hmp {
        ok: bool,
    },
}

#[derive(Default)]
struct Ledger {
    greeting: Option<bool>,
    greeted: bool,
    replies: VecDeque<(String, Check, bool)>,
    events: VecDeque<&'static str>,
    eof: Option<(bool, bool)>,
    unsure: bool,
    ended: bool,
    /// Earlier connections on this chardev that closed with replies
    /// owed: QEMU may still deliver those replies, to whoever is
    /// connected next. The spec is silent on it and a command-line QMP
    /// monitor does the same, so it is tolerated and counted.
    stale: Vec<String>,
    saw_stale: bool,
}

impl Ledger {
    fn settled(&self) -> bool {
        self.greeting.is_none()
            && self.replies.is_empty()
            && self.events.is_empty()
            && self.eof.is_none()
    }

    fn describe(&self) -> String {
        let mut owed = Vec::new();
        if self.greeting.is_some() {
            owed.push("its greeting".to_string());
        }
        if !self.replies.is_empty() {
            let ids: Vec<&str> = self.replies.iter().map(|(id, _, _)| id.as_str()).collect();
            owed.push(format!("replies to {}", ids.join(", ")));
        }
        if !self.events.is_empty() {
            owed.push(format!("events {}", Vec::from(self.events.clone()).join(", ")));
        }
        if self.eof.is_some() {
            owed.push("end of file".to_string());
        }
        if owed.is_empty() {
            "nothing".to_string()
        } else {
            owed.join(", then ")
        }
    }

    /// Takes one line off the ledger, or says why it may not come now.
    fn take_line(&mut self, line: &[u8]) -> Result<(), String> {
        let shown = crate::qmp::transcript::abbreviate(line);
        let Ok(Value::Object(msg)) = serde_json::from_slice::<Value>(line) else {
            return Err(format!("a line that is no JSON object: {shown}"));
        };
        let id = msg.get("id").and_then(Value::as_str).unwrap_or_default();
        if self
            .stale
            .iter()
            .any(|c| id.strip_prefix(c.as_str()).is_some_and(|r| r.starts_with('-')))
        {
            self.saw_stale = true;
            return Ok(());
        }
        if let Some(qmp) = msg.get("QMP") {
            let oob = qmp["capabilities"].as_array().is_some_and(|c| c.iter().any(|c| c == "oob"));
            if qmp["version"]["qemu"].is_null() || !qmp["capabilities"].is_array() {
                return Err(format!(
                    "a greeting without QMP.version and QMP.capabilities: {shown}"
                ));
            }
            if self.unsure {
                self.greeted = true;
                return Ok(());
            }
            let Some(want_oob) = self.greeting.take() else {
                return Err(format!(
                    "a greeting it was not owed (owed: {}): {shown}",
                    self.describe()
                ));
            };
            if oob != want_oob {
                return Err(format!(
                    "a greeting that {} oob: {shown}",
                    if oob { "offers" } else { "does not offer" }
                ));
            }
            self.greeted = true;
            return Ok(());
        }
        if !self.greeted {
            return Err(format!("a message before any greeting: {shown}"));
        }
        if self.unsure {
            return Err(format!(
                "a message on a connection no monitor could have negotiated: {shown}"
            ));
        }
        if let Some(event) = msg.get("event").and_then(Value::as_str) {
            if self.events.front() == Some(&event) {
                self.events.pop_front();
                return Ok(());
            }
            return Err(format!("event {event}, not owed here (owed: {})", self.describe()));
        }
        // In-band replies come in order; out-of-band ones may overtake.
        let first_in_band = self.replies.iter().position(|(_, _, oob)| !oob);
        let pos = self
            .replies
            .iter()
            .position(|(owed, _, _)| owed == id)
            .filter(|&p| self.replies[p].2 || Some(p) == first_in_band);
        let Some(pos) = pos else {
            return Err(format!(
                "a reply nobody is owed, or out of order (owed: {}): {shown}",
                self.describe()
            ));
        };
        let (_, check, _) = self.replies.remove(pos).expect("position is in range");
        let got_return = msg.contains_key("return");
        let ok = match check {
            Check::Answer(Answer::Return) => got_return,
            Check::Answer(Answer::Error) => msg.contains_key("error"),
            Check::Hmp { ok } => {
                let text = msg.get("return").and_then(Value::as_str);
                text.is_some_and(|t| t.trim().is_empty() == ok)
            }
        };
        if !ok {
            return Err(format!("the reply to {id} should be {check:?}: {shown}"));
        }
        Ok(())
    }

    /// Takes what one read gave off the ledger; false when it gave
    /// nothing by its deadline.
    fn take(&mut self, read: Result<Read, QmpError>, name: &str) -> Result<bool, String> {
        match read.map_err(|e| format!("reading {name}: {e}"))? {
            Read::Line(line) => self.take_line(&line).map_err(|e| format!("{name} got {e}"))?,
            Read::Eof { partial, reset } => {
                self.take_eof(partial, reset).map_err(|e| format!("{name}: {e}"))?
            }
            Read::Nothing => return Ok(false),
        }
        Ok(true)
    }

    fn take_eof(&mut self, partial: Option<String>, reset: bool) -> Result<(), String> {
        self.ended = true;
        if self.unsure {
            self.greeting = None;
            self.eof = None;
            return Ok(());
        }
        let Some((drop_ok, reset_ok)) = self.eof.take() else {
            return Err(format!(
                "QEMU ended the connection{} while it owed {}",
                if reset { " with a reset" } else { "" },
                self.describe()
            ));
        };
        if reset && !reset_ok {
            return Err("a connection reset where the spec asks for an orderly end of file".into());
        }
        if !drop_ok {
            if let Some(partial) = partial {
                return Err(format!("end of file inside a line (output cut): {partial}"));
            }
            if !self.settled() {
                return Err(format!(
                    "end of file while QEMU still owed {} (output cut)",
                    self.describe()
                ));
            }
        }
        self.greeting = None;
        self.replies.clear();
        self.events.clear();
        Ok(())
    }
}

/// The names of the situations of the model an operation meets: what a
/// user reads to see what a run explored.
pub fn situations(model: &Model, op: &Op) -> Vec<&'static str> {
    let mut out = Vec::new();
    let orphan_of = |chardev: usize| model.chardevs[chardev].as_ref().and_then(|c| c.orphan);
    let pty =
        |chardev: usize| model.chardevs[chardev].as_ref().is_some_and(|c| c.kind == Kind::Pty);
    let pty_held = |chardev: usize| {
        model.chardevs[chardev]
            .as_ref()
            .is_some_and(|c| c.kind == Kind::Pty && (c.conn.is_some() || c.orphan.is_some()))
    };
    // The orphan's end accepts the waiting client for a frontend that may
    // run in another thread: the race the spec's "whichever thread that
    // monitor runs in" is about.
    // With a large reply unread, the orphan's end comes from the main
    // loop after the new frontend moved the chardev.
    let orphan_ends_with_waiter = |client: usize| {
        let c = &model.clients[client];
        let waiting = matches!(c.state, ClientState::Orphan { .. })
            && model.chardevs[c.chardev].as_ref().is_some_and(|ch| {
                ch.kind.has_connections() && ch.frontend.is_some() && !ch.backlog.is_empty()
            });
        match (waiting, c.large_unread) {
            (false, _) => None,
            (true, false) => Some("orphan ends with a client waiting for the new frontend"),
            (true, true) => {
                Some("orphan ends a large reply behind, a client waiting for the new frontend")
            }
        }
    };
    match op {
        Op::MonitorAdd { chardev, .. }
            if pty_held(*chardev)
                && model.chardevs[*chardev].as_ref().is_some_and(|c| c.frontend.is_none()) =>
        {
            out.push(if orphan_of(*chardev).is_some() {
                "pty: new frontend after a self-removal greets the holder"
            } else {
                "pty: new frontend greets the holder"
            });
        }
        Op::MonitorAdd { chardev, .. } => {
            if let Some(old) = orphan_of(*chardev) {
                if model.chardevs[*chardev].as_ref().is_some_and(|c| c.frontend.is_none()) {
                    out.push(if model.clients[old].unread {
                        "new frontend while the orphan's output is unread"
                    } else {
                        "new frontend on an orphan with nothing unread"
                    });
                }
            }
        }
        Op::Remove { monitor, cmd } | Op::RemoveFrom { monitor, cmd, .. } => {
            if let Some(m) = &model.monitors[*monitor] {
                if orphan_of(m.chardev).is_some() {
                    out.push("new frontend removed while the orphan drains");
                }
                if pty_held(m.chardev) && cmd.removes(m.route) {
                    out.push("pty: removal leaves the holder");
                }
            }
            if matches!(op, Op::RemoveFrom { .. }) {
                out.push("removal from another dynamic monitor");
            }
            if matches!(
                op,
                Op::Remove { cmd: RemoveCmd::Hmp, .. } | Op::RemoveFrom { cmd: RemoveCmd::Hmp, .. }
            ) {
                out.push("removal through HMP");
            }
        }
        Op::RemoveSelf { before, then, cmd, client } => {
            out.push("self-removal");
            if !before.is_empty() {
                out.push("self-removal behind pipelined requests");
            }
            if pty(model.clients[*client].chardev) {
                out.push("pty: self-removal");
            }
            if !then.is_empty() {
                out.push("self-removal with requests queued behind it");
            }
            if *cmd == RemoveCmd::Hmp {
                out.push("self-removal through HMP");
            }
        }
        Op::Connect { chardev, .. } if pty(*chardev) => out.push("pty: holder opens it"),
        Op::Connect { chardev, .. } => {
            if orphan_of(*chardev).is_some() {
                out.push("client waiting behind an orphan");
            } else if model.chardevs[*chardev].as_ref().is_some_and(|c| c.conn.is_some()) {
                out.push("client waiting behind a connection");
            }
        }
        Op::Close { client } => {
            let c = &model.clients[*client];
            out.extend(orphan_ends_with_waiter(*client));
            if matches!(c.state, ClientState::Orphan { .. }) {
                let kind = model.chardevs[c.chardev].as_ref().map(|ch| ch.kind);
                out.push(match kind {
                    Some(Kind::Tcp) => "orphan closed by its client (TCP)",
                    Some(Kind::Pty) => "pty: self-removed monitor's holder closes",
                    _ => "orphan closed by its client (unix)",
                });
            }
        }
        Op::ChardevRemove { chardev } if orphan_of(*chardev).is_some() => {
            out.push("chardev-remove under an orphan");
        }
        Op::Send { client, .. }
            if matches!(model.clients[*client].state, ClientState::Orphan { .. }) =>
        {
            out.push("requests after self-removal");
        }
        Op::Negotiate { oob: true, .. } => out.push("oob negotiated"),
        Op::Read { client, chunk } => {
            out.extend(orphan_ends_with_waiter(*client));
            if *chunk != ALL_AT_ONCE {
                out.push("slow reader");
            }
        }
        _ => {}
    }
    out
}

struct Exec {
    machine: Machine,
    model: Model,
    conns: [Option<Conn>; CLIENTS],
    ledgers: [Ledger; CLIENTS],
    addrs: [Option<Addr>; CHARDEVS],
    transcript: Transcript,
    wait: Duration,
    reached: BTreeSet<&'static str>,
    /// Connections made so far: each gets a name of its own (`b3`), so
    /// a reply meant for an earlier connection is told apart.
    serial: usize,
    stale: [Vec<String>; CHARDEVS],
}

type Checked<T> = Result<T, String>;

/// Runs `ops` from `initial` on a QEMU of its own.
pub fn run(target: &Target, initial: &Model, ops: &[Op], cpu: Option<usize>) -> Run {
    let transcript = Transcript::new();
    let cpu = cpu.filter(|_| initial.pinned);
    let opts = LaunchOptions {
        name: "explore".into(),
        janitor: target.janitor.clone(),
        transcript: transcript.clone(),
        cpu,
        // QEMU names its threads with this, and the monitor I/O thread
        // is found by its name.
        extra_args: match initial.io_first {
            true => vec!["-name".into(), "explore,debug-threads=on".into()],
            false => Vec::new(),
        },
        ..LaunchOptions::default()
    };
    let started = Machine::launch(&target.qemu, &opts).map_err(|err| format!("{err:#}")).and_then(
        |machine| {
            let schedule = schedule(&machine, cpu, initial.io_first)?;
            transcript.note("explore", &schedule);
            Ok(machine)
        },
    );
    let machine = match started {
        Ok(machine) => machine,
        Err(message) => {
            return Run {
                failure: Some(Failure { at: "start".into(), message }),
                ops: 0,
                transcript: transcript.render(),
                reached: BTreeSet::new(),
            }
        }
    };
    let wait = target
        .wait
        .unwrap_or_else(|| machine.start_time().saturating_mul(WAIT_FACTOR).max(MIN_WAIT));
    let mut exec = Exec {
        machine,
        model: initial.clone(),
        conns: Default::default(),
        ledgers: Default::default(),
        addrs: Default::default(),
        transcript: transcript.clone(),
        wait,
        reached: BTreeSet::new(),
        serial: 0,
        stale: Default::default(),
    };
    let mut done = 0;
    let mut failure = None;
    let baseline = exec.baseline();
    for (i, op) in ops.iter().enumerate() {
        done = i + 1;
        let at = format!("op {}: {op}", i + 1);
        transcript.note("explore", &at);
        if let Err(message) = exec.op(op) {
            failure = Some(Failure { at, message });
            break;
        }
    }
    if failure.is_none() {
        transcript.note("explore", &format!("finish: {}", initial.finish));
        if let Err(message) = baseline.and_then(|b| exec.finish(b)) {
            failure = Some(Failure { at: format!("finish: {}", initial.finish), message });
        }
    }
    // A crash shows in stderr even when the wire looked right.
    let _ = exec.machine.terminate();
    if failure.is_none() {
        if let Some(report) = exec.machine.stderr().ok().as_deref().and_then(sanitizer::find_report)
        {
            failure = Some(Failure {
                at: "exit".into(),
                message: format!("sanitizer: {}", report.headline),
            });
        }
    }
    Run { failure, ops: done, transcript: transcript.render(), reached: exec.reached }
}

/// The name QEMU gives its monitor I/O thread with `debug-threads=on`.
const IO_THREAD: &str = "IO mon_iothread";

/// Real-time priority for `tid` (0: the calling thread), the lowest
/// there is: enough to run ahead of every ordinary thread.
fn real_time(tid: i32) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: the kernel reads `param` during the call and keeps no
    // pointer to it; a thread that is gone is an error (ESRCH).
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process may give a thread real-time priority, tried on
/// a thread of its own that ends at once.
pub fn may_raise_priority() -> Result<(), String> {
    std::thread::spawn(|| real_time(0))
        .join()
        .map_err(|_| "the thread trying real-time priority panicked".to_string())?
        .map_err(|e| format!("no real-time priority for QEMU's monitor I/O thread here ({e})"))
}

/// Checks that QEMU runs where the sequence says, and puts its monitor
/// I/O thread first when it says so; the line for the transcript.
fn schedule(machine: &Machine, cpu: Option<usize>, io_first: bool) -> Checked<String> {
    let pid = machine.pid();
    let place = match cpu {
        None => "QEMU on any CPU".to_string(),
        Some(cpu) => {
            // The affinity is set before exec: every thread QEMU starts
            // has it.
            let allowed =
                sched_getaffinity(Some(Pid::from_raw(pid as i32).expect("a live pid")))
                    .map_err(|e| format!("reading the CPU affinity of QEMU (pid {pid}): {e}"))?;
            let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).collect();
            if cpus != [cpu] {
                return Err(format!(
                    "QEMU (pid {pid}) was to run on CPU {cpu} alone, but may run on {cpus:?}"
                ));
            }
            format!("QEMU on CPU {cpu}")
        }
    };
    if !io_first {
        return Ok(place);
    }
    let tasks = format!("/proc/{pid}/task");
    let entries =
        std::fs::read_dir(&tasks).map_err(|e| format!("listing QEMU's threads in {tasks}: {e}"))?;
    let mut io_threads = Vec::new();
    for entry in entries.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != IO_THREAD {
            continue;
        }
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        real_time(tid).map_err(|e| {
            format!("giving QEMU's monitor I/O thread {tid} real-time priority (SCHED_FIFO): {e}")
        })?;
        io_threads.push(tid.to_string());
    }
    if io_threads.is_empty() {
        return Err(format!(
            "no thread named {IO_THREAD:?} in {tasks}: QEMU has no monitor I/O thread"
        ));
    }
    Ok(format!("{place}, its monitor I/O thread ({}) at real-time priority", io_threads.join(", ")))
}

impl Exec {
    fn deadline(&self) -> Instant {
        Instant::now() + self.wait
    }

    fn main(&mut self, command: &str, args: Value) -> Result<Value, QmpError> {
        let deadline = self.deadline();
        self.machine.qmp().execute(command, args, deadline)
    }

    /// A main-monitor command whose success the model decides.
    fn main_expect(
        &mut self,
        command: &str,
        args: Value,
        succeeds: Option<bool>,
    ) -> Checked<Value> {
        let want = succeeds.expect("the model decides every main command");
        let shown = format!("{command} {args}");
        match self.main(command, args) {
            Ok(ret) if want => Ok(ret),
            Ok(ret) => Err(format!("{shown} succeeded ({ret}), but the spec refuses it here")),
            Err(QmpError::Qmp { desc, .. }) if !want => Ok(Value::String(desc)),
            Err(QmpError::Qmp { class, desc }) => {
                Err(format!("{shown} was refused ({class}: {desc}), but must succeed"))
            }
            Err(err) => Err(format!("{shown} on the main monitor: {err}")),
        }
    }

    fn op(&mut self, op: &Op) -> Checked<()> {
        self.reached.extend(situations(&self.model, op));
        let was_running = self.model.running;
        let own_monitor = match op {
            Op::RemoveSelf { client, .. } => self.model.live_monitor_of(*client),
            _ => None,
        };
        let step = self.model.apply(op);
        // Requests this op sends, by the index the model's ledger entries use.
        let mut sent: Vec<(String, bool, bool)> = Vec::new();
        match op {
            Op::ChardevAdd { chardev, kind } => {
                let id = chardev_id(*chardev);
                let addr = match kind {
                    Kind::Unix => {
                        let path = self
                            .machine
                            .socket_path(&format!("{id}.sock"))
                            .map_err(|e| format!("{e:#}"))?;
                        json!({ "type": "unix", "data": { "path": path } })
                    }
                    Kind::Tcp | Kind::Pty => {
                        json!({ "type": "inet", "data": { "host": "127.0.0.1", "port": "0" } })
                    }
                };
                let backend = match kind {
                    Kind::Pty => json!({ "type": "pty", "data": {} }),
                    _ => {
                        json!({ "type": "socket", "data": { "addr": addr, "server": true, "wait": false } })
                    }
                };
                let ret = self.main_expect(
                    "chardev-add",
                    json!({ "id": id, "backend": backend }),
                    step.succeeds,
                )?;
                if step.succeeds == Some(true) {
                    self.addrs[*chardev] = Some(match kind {
                        Kind::Pty => {
                            let path = ret["pty"].as_str().ok_or_else(|| {
                                format!("chardev-add {id} (pty) returned no pty path: {ret}")
                            })?;
                            Addr::Pty(path.into())
                        }
                        _ => self.address(&id, *kind)?,
                    });
                }
            }
            Op::ChardevRemove { chardev } => {
                self.main_expect(
                    "chardev-remove",
                    json!({ "id": chardev_id(*chardev) }),
                    step.succeeds,
                )?;
            }
            Op::MonitorAdd { monitor, chardev, route } => {
                let (command, args) = route.add_request(
                    json!({ "id": monitor_id(*monitor), "chardev": chardev_id(*chardev) }),
                );
                self.main_expect(command, args, step.succeeds)?;
            }
            Op::Remove { monitor, cmd } => {
                let (command, args) = remove_request(*cmd, *monitor);
                let ret = self.main_expect(
                    command,
                    args,
                    step.succeeds.filter(|_| *cmd != RemoveCmd::Hmp).or(Some(true)),
                )?;
                if let Some(word) = step.refusal_names {
                    if !ret.as_str().is_some_and(|desc| desc.contains(word)) {
                        return Err(format!(
                            "{cmd} {} was refused with {ret}, but the spec's refusal names {word}",
                            monitor_id(*monitor)
                        ));
                    }
                }
                if *cmd == RemoveCmd::Hmp {
                    let ok = ret.as_str().is_some_and(|t| t.trim().is_empty());
                    if Some(ok) != step.succeeds {
                        return Err(format!(
                            "HMP object_del {} printed {ret}, but the spec {} it",
                            monitor_id(*monitor),
                            if ok { "refuses" } else { "allows" }
                        ));
                    }
                }
            }
            Op::RemoveFrom { client, monitor, cmd } => {
                let (command, args) = remove_request(*cmd, *monitor);
                let ok = step.succeeds.expect("decided");
                let id = self.send(*client, &[(false, command, args)])?.remove(0);
                self.ledgers[*client].replies.push_back((id, check_for(*cmd, ok), false));
            }
            Op::RemoveSelf { client, before, cmd, then } => {
                let own = own_monitor.expect("the model removes live monitors");
                let (command, args) = remove_request(*cmd, own);
                let mut requests: Vec<_> = before.iter().map(|r| r.to_send()).collect();
                requests.push((false, command, args));
                requests.extend(then.iter().map(|r| r.to_send()));
                let ids = self.send(*client, &requests)?;
                for (i, id) in ids.into_iter().enumerate() {
                    let hmp = i == before.len() && *cmd == RemoveCmd::Hmp;
                    sent.push((id, requests[i].0, hmp));
                }
            }
            Op::StopCont => {
                let command = if was_running { "stop" } else { "cont" };
                self.main_expect(command, Value::Null, step.succeeds)?;
            }
            Op::StopContFrom { client } => {
                let command = if was_running { "stop" } else { "cont" };
                let id = self.send(*client, &[(false, command, Value::Null)])?.remove(0);
                self.ledgers[*client].replies.push_back((id, Check::Answer(Answer::Return), false));
            }
            Op::Connect { client, chardev } => {
                let addr =
                    self.addrs[*chardev].as_ref().expect("the model connects to existing chardevs");
                let deadline = Instant::now() + self.wait;
                let conn = Conn::connect(
                    addr,
                    &format!("{}{}", client_name(*client), self.serial),
                    self.transcript.clone(),
                    deadline,
                )
                .map_err(|e| format!("connecting to {}: {e}", chardev_id(*chardev)))?;
                self.conns[*client] = Some(conn);
                self.serial += 1;
                self.ledgers[*client] =
                    Ledger { stale: self.stale[*chardev].clone(), ..Ledger::default() };
            }
            Op::Negotiate { client, oob } => {
                let args = if *oob { json!({ "enable": ["oob"] }) } else { Value::Null };
                let id = self.send(*client, &[(false, "qmp_capabilities", args)])?.remove(0);
                self.ledgers[*client].replies.push_back((id, Check::Answer(Answer::Return), false));
            }
            Op::Send { client, requests } => {
                let wire: Vec<_> = requests.iter().map(|r| r.to_send()).collect();
                // An orphan whose end is due may already be closed: its
                // requests are owed nothing either way.
                let may_be_closed = matches!(
                    self.model.clients[*client].state,
                    ClientState::Orphan { ends_after_drain: true }
                );
                let ids = match self.send(*client, &wire) {
                    Err(_) if may_be_closed => Vec::new(),
                    other => other?,
                };
                sent.extend(ids.into_iter().zip(&wire).map(|(id, w)| (id, w.0, false)));
            }
            Op::Read { .. } => {}
            Op::Close { client } => {
                let chardev = self.model.clients[*client].chardev;
                if let Some(conn) = self.conns[*client].take() {
                    if !self.ledgers[*client].replies.is_empty() {
                        self.stale[chardev].push(conn.name().to_string());
                        for (c, ledger) in self.ledgers.iter_mut().enumerate() {
                            if self.model.clients[c].chardev == chardev {
                                ledger.stale = self.stale[chardev].clone();
                            }
                        }
                    }
                    conn.close();
                }
                if std::mem::take(&mut self.ledgers[*client]).saw_stale {
                    self.reached.insert("reply from an earlier connection delivered");
                }
            }
        }
        self.follow(op, step, &sent)
    }

    /// Everything the model says follows the op.
    fn follow(&mut self, op: &Op, step: Step, sent: &[(String, bool, bool)]) -> Checked<()> {
        for (client, owed) in step.owed {
            let ledger = &mut self.ledgers[client];
            match owed {
                Owed::Greeting { oob } => ledger.greeting = Some(oob),
                Owed::Reply { request, answer } => {
                    let (id, oob, hmp) = sent[request].clone();
                    let check = if hmp {
                        Check::Hmp { ok: answer == Answer::Return }
                    } else {
                        Check::Answer(answer)
                    };
                    ledger.replies.push_back((id, check, oob));
                }
                Owed::Event(name) => ledger.events.push_back(name),
                Owed::Eof { drop_ok, reset_ok } => ledger.eof = Some((drop_ok, reset_ok)),
                Owed::Unsure => {
                    ledger.unsure = true;
                    ledger.greeting = None;
                }
            }
        }
        let chunk = match op {
            Op::Read { chunk, .. } => *chunk,
            _ => ALL_AT_ONCE,
        };
        for client in step.settle {
            self.settle(client, chunk)?;
        }
        for client in step.greet_now {
            self.settle(client, ALL_AT_ONCE)?;
        }
        if let Some(monitor) = step.wait_unlisted {
            self.wait_unlisted(monitor)?;
        }
        if let Some(chardev) = step.idle {
            self.wait_idle(chardev)?;
        }
        self.check_listed()
    }

    fn send(&mut self, client: usize, requests: &[(bool, &str, Value)]) -> Checked<Vec<String>> {
        let deadline = self.deadline();
        let conn = self.conns[client].as_mut().expect("the model sends on connected clients");
        conn.send(requests, deadline).map_err(|e| format!("sending on {}: {e}", conn.name()))
    }

    /// Reads until the client's ledger is empty.
    fn settle(&mut self, client: usize, chunk: usize) -> Checked<()> {
        let Some(conn) = self.conns[client].as_mut() else {
            return Ok(());
        };
        let ledger = &mut self.ledgers[client];
        let name = conn.name().to_string();
        if ledger.unsure {
            // Whatever has come by now: a greeting, an end of file.
            while !ledger.ended {
                let read = conn.read(Instant::now() + Duration::from_millis(1), chunk);
                if !ledger.take(read, &name)? {
                    break;
                }
            }
            return Ok(());
        }
        let deadline = Instant::now() + self.wait;
        while !ledger.settled() {
            if ledger.ended {
                return Err(format!(
                    "{name} is at end of file but QEMU still owes {}",
                    ledger.describe()
                ));
            }
            if !ledger.take(conn.read(deadline, chunk), &name)? {
                return Err(format!(
                    "{name} waited {:.1}s for {}",
                    self.wait.as_secs_f64(),
                    ledger.describe()
                ));
            }
        }
        Ok(())
    }

    fn address(&mut self, id: &str, kind: Kind) -> Checked<Addr> {
        if kind == Kind::Unix {
            let path =
                self.machine.socket_path(&format!("{id}.sock")).map_err(|e| format!("{e:#}"))?;
            return Ok(Addr::Unix(path));
        }
        let filename = self.chardev_filename(id)?;
        let port = super::conn::tcp_port(&filename)
            .ok_or_else(|| format!("no port in query-chardev's filename for {id}: {filename}"))?;
        Ok(Addr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
    }

    fn chardev_filename(&mut self, id: &str) -> Checked<String> {
        let list =
            self.main("query-chardev", Value::Null).map_err(|e| format!("query-chardev: {e}"))?;
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["label"] == id))
            .and_then(|c| c["filename"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("query-chardev does not list {id}: {list}"))
    }

    /// The chardev's connection ended once QEMU saw the client's close:
    /// query-chardev says so within the wait limit.
    fn wait_idle(&mut self, chardev: usize) -> Checked<()> {
        if self.model.chardevs[chardev].is_none() {
            return Ok(());
        }
        let id = chardev_id(chardev);
        let deadline = self.deadline();
        loop {
            let filename = self.chardev_filename(&id)?;
            if filename.starts_with("disconnected:") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{id} still has a connection {:.1}s after its client closed it (query-chardev: {filename})",
                    self.wait.as_secs_f64()
                ));
            }
        }
    }

    fn wait_unlisted(&mut self, monitor: usize) -> Checked<()> {
        let id = monitor_id(monitor);
        let deadline = self.deadline();
        loop {
            let listed = self.listed_ids()?;
            if !listed.iter().any(|m| m.split('@').next() == Some(id.as_str())) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{id} is still listed {:.1}s after it removed itself",
                    self.wait.as_secs_f64()
                ));
            }
        }
    }

    fn listed_ids(&mut self) -> Checked<Vec<String>> {
        let list =
            self.main("query-monitors", Value::Null).map_err(|e| format!("query-monitors: {e}"))?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["dynamic"] == true)
            .filter_map(|m| Some(format!("{}@{}", m["id"].as_str()?, m["chardev"].as_str()?)))
            .collect())
    }

    /// query-monitors lists exactly the model's live dynamic monitors, each
    /// on its chardev.
    fn check_listed(&mut self) -> Checked<()> {
        let mut got = self.listed_ids()?;
        got.sort();
        let mut want: Vec<String> = self
            .model
            .listed()
            .into_iter()
            .map(|(m, c)| format!("{}@{}", monitor_id(m), chardev_id(c)))
            .collect();
        want.sort();
        if got != want {
            return Err(format!(
                "query-monitors lists [{}], the spec [{}]",
                got.join(", "),
                want.join(", ")
            ));
        }
        Ok(())
    }

    fn baseline(&mut self) -> Checked<Option<(i64, i64)>> {
        if self.model.finish != Finish::Teardown {
            return Ok(None);
        }
        // One monitor's life first, so that what QEMU makes once (the
        // monitor I/O thread, the schema) is not counted.
        let path = self.machine.socket_path("warm.sock").map_err(|e| format!("{e:#}"))?;
        let backend = json!({ "type": "socket", "data": { "addr": { "type": "unix", "data": { "path": path } }, "server": true, "wait": false } });
        self.main("chardev-add", json!({ "id": "warm", "backend": backend }))
            .map_err(|e| format!("warm-up: {e}"))?;
        self.main("monitor-add", json!({ "id": "warm", "chardev": "warm" }))
            .map_err(|e| format!("warm-up: {e}"))?;
        let deadline = self.deadline();
        let mut client =
            crate::Qmp::connect_named(&path, "warm", self.transcript.clone(), deadline)
                .map_err(|e| format!("warm-up: {e}"))?;
        client.negotiate(deadline).map_err(|e| format!("warm-up: {e}"))?;
        client
            .execute_raw("query-qmp-schema", Value::Null, deadline)
            .map_err(|e| format!("warm-up: {e}"))?;
        self.main("monitor-remove", json!({ "id": "warm" }))
            .map_err(|e| format!("warm-up: {e}"))?;
        client.wait_eof(deadline).map_err(|e| format!("warm-up: {e}"))?;
        self.main("chardev-remove", json!({ "id": "warm" }))
            .map_err(|e| format!("warm-up: {e}"))?;
        let u = usage(self.machine.pid()).map_err(|e| format!("{e:#}"))?;
        Ok(Some((u.fds, u.rss_kib)))
    }

    /// Reads what every client is owed, as the Read operation does (an
    /// orphan due to end sees its end of file).
    fn read_all(&mut self) -> Checked<()> {
        for client in 0..CLIENTS {
            if self.model.clients[client].state != ClientState::Free {
                self.op(&Op::Read { client, chunk: ALL_AT_ONCE })?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, baseline: Option<(i64, i64)>) -> Checked<()> {
        self.read_all()?;
        // Positive control for the window: events do reach every client
        // the spec says they reach, now.
        if (0..CLIENTS).any(|c| self.model.live_monitor_of(c).is_some()) {
            self.op(&Op::StopCont)?;
            self.op(&Op::StopCont)?;
            self.read_all()?;
        }
        let status =
            self.main("query-status", Value::Null).map_err(|e| format!("query-status: {e}"))?;
        if status["running"] != self.model.running {
            return Err(format!(
                "query-status says {status}, but the VM must be {}",
                if self.model.running { "running" } else { "paused" }
            ));
        }
        self.window()?;
        match self.model.finish {
            Finish::Teardown => self.teardown(baseline.expect("taken for a teardown")),
            Finish::Quit => {
                let shutdown = self.machine.shutdown().map_err(|e| format!("{e:#}"))?;
                if shutdown.stopped_by != StoppedBy::Quit || !shutdown.exit.success() {
                    return Err(format!("quit with dynamic monitors present: QEMU {shutdown}"));
                }
                Ok(())
            }
            Finish::Sigterm => {
                let shutdown = self.machine.terminate().map_err(|e| format!("{e:#}"))?;
                if shutdown.stopped_by != StoppedBy::Sigterm || !shutdown.exit.success() {
                    return Err(format!("SIGTERM with dynamic monitors present: QEMU {shutdown}"));
                }
                Ok(())
            }
        }
    }

    /// Nothing arrives on any connection in [`WINDOW`]: every ledger is
    /// settled, so anything would be output nobody is owed.
    fn window(&mut self) -> Checked<()> {
        let end = Instant::now() + WINDOW;
        for client in 0..CLIENTS {
            let Some(conn) = self.conns[client].as_mut() else {
                continue;
            };
            let ledger = &mut self.ledgers[client];
            if ledger.ended || ledger.unsure {
                continue;
            }
            let name = conn.name().to_string();
            match conn.read(end, ALL_AT_ONCE).map_err(|e| format!("reading {name}: {e}"))? {
                Read::Nothing => {}
                Read::Line(line) => ledger
                    .take_line(&line)
                    .map_err(|e| format!("{name} got {e} after everything owed was read"))?,
                Read::Eof { partial, reset } => {
                    ledger.take_eof(partial, reset).map_err(|e| format!("{name}: {e}"))?
                }
            }
        }
        Ok(())
    }

    fn teardown(&mut self, (fds, rss): (i64, i64)) -> Checked<()> {
        // A client waiting in the listen queue is closed once it got in:
        // closed while queued, it would stay there as a dead connection.
        while let Some(client) = (0..CLIENTS).find(|&client| {
            self.model.clients[client].state != ClientState::Free
                && self.model.allows(&Op::Close { client })
        }) {
            self.op(&Op::Close { client })?;
        }
        for monitor in 0..self.model.monitors.len() {
            if let Some(m) = &self.model.monitors[monitor] {
                let cmd = RemoveCmd::for_route(m.route);
                self.op(&Op::Remove { monitor, cmd })?;
            }
        }
        for chardev in 0..CHARDEVS {
            if self.model.chardevs[chardev].is_some() {
                self.op(&Op::ChardevRemove { chardev })?;
            }
        }
        // A client that read its end of file still holds its socket, and
        // QEMU may hold its end until that client's close (an orderly
        // close waits for the peer's): close them all, as a client does
        // after its end of file, and give QEMU's main loop the turns it
        // needs to see the closes, up to the wait limit.
        self.conns = Default::default();
        let pid = self.machine.pid();
        let asan = has_asan(pid);
        let deadline = self.deadline();
        let now = loop {
            let now = usage(pid).map_err(|e| format!("{e:#}"))?;
            if now.fds - fds <= FD_TOLERANCE || Instant::now() >= deadline {
                break now;
            }
            self.main("query-status", Value::Null).map_err(|e| format!("query-status: {e}"))?;
        };
        if now.fds - fds > FD_TOLERANCE || (!asan && now.rss_kib - rss > RSS_BOUND_KIB) {
            return Err(format!(
                "after removing everything QEMU holds {} fds (at the start {fds}, bound +{FD_TOLERANCE}) and {} KiB \
                 resident (at the start {rss}, bound +{RSS_BOUND_KIB})",
                now.fds, now.rss_kib
            ));
        }
        let shutdown = self.machine.shutdown().map_err(|e| format!("{e:#}"))?;
        if shutdown.stopped_by != StoppedBy::Quit || !shutdown.exit.success() {
            return Err(format!("quit after the teardown: QEMU {shutdown}"));
        }
        Ok(())
    }
}

fn remove_request(cmd: RemoveCmd, monitor: usize) -> (&'static str, Value) {
    let id = monitor_id(monitor);
    match cmd {
        RemoveCmd::MonitorRemove => ("monitor-remove", json!({ "id": id })),
        RemoveCmd::ObjectDel => ("object-del", json!({ "id": id })),
        RemoveCmd::Hmp => {
            ("human-monitor-command", json!({ "command-line": format!("object_del {id}") }))
        }
    }
}

fn check_for(cmd: RemoveCmd, ok: bool) -> Check {
    match (cmd, ok) {
        (RemoveCmd::Hmp, ok) => Check::Hmp { ok },
        (_, true) => Check::Answer(Answer::Return),
        (_, false) => Check::Answer(Answer::Error),
    }
}
