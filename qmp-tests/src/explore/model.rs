//! The reference model: what docs/behaviour.md (the behaviour
//! under test) says QEMU does, one operation at a time.
//!
//! It knows the chardevs, the dynamic monitors and the clients, and for
//! each operation says what must happen: whether the command succeeds,
//! which client must be greeted now, what QEMU owes each client (replies,
//! events, end of file) and what it must never send. It is written from
//! the spec's sentences, quoted beside the rules they give, not from the
//! series' code: a rule that is wrong here shows as a failure on a QEMU
//! that is right, and the quote says which sentence to read again.
//!
//! Nothing in here depends on timing. Where the spec leaves an order open
//! (a client waiting behind an orphaned connection may be greeted before
//! or after that connection drains), the model says "no later than", and
//! where a removal races with an accept it marks the client unsure.

use std::collections::VecDeque;

use super::ops::Mix;
use crate::route::Route;

/// Chardev slots (`c0`...): few, so operations meet on the same one.
pub const CHARDEVS: usize = 3;
/// Monitor id slots (`m0`...): few, so ids are reused and collide.
pub const MONITORS: usize = 3;
/// Client slots (`a`...).
pub const CLIENTS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Unix,
    Tcp,
    /// A pty: no connections, one side held by whoever opens the slave.
    Pty,
}

impl Kind {
    /// "Chardevs without connections (pty, file, pipe, serial) have no
    /// end-of-file to give".
    pub fn has_connections(self) -> bool {
        self != Kind::Pty
    }
}

/// How a removal is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemoveCmd {
    MonitorRemove,
    ObjectDel,
    /// `human-monitor-command` with `object_del ID`.
    Hmp,
}

impl RemoveCmd {
    /// "Only monitors created by monitor-add can be removed [with
    /// monitor-remove]"; "object-del removes [a monitor-qmp object]";
    /// HMP's object_del is object-del.
    pub fn removes(self, route: Route) -> bool {
        matches!(
            (self, route),
            (RemoveCmd::MonitorRemove, Route::Commands)
                | (RemoveCmd::ObjectDel | RemoveCmd::Hmp, Route::Qom)
        )
    }

    /// The command that removes a monitor of `route`.
    pub fn for_route(route: Route) -> RemoveCmd {
        match route {
            Route::Commands => RemoveCmd::MonitorRemove,
            Route::Qom => RemoveCmd::ObjectDel,
        }
    }
}

/// A request a client sends without waiting for its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// query-version: small.
    Version,
    /// query-qmp-schema: hundreds of KiB in one line.
    Schema,
    /// query-status.
    Status,
    /// stop: a side effect, sent only where it must not run (after the
    /// client's own removal), so no ordering against other monitors.
    Stop,
    /// exec-oob migrate-pause (answered with an error outside postcopy).
    Oob,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Never connected, or closed and forgotten.
    Free,
    /// Connected, no greeting owed yet: waiting behind another connection,
    /// or accepted by a chardev that has no frontend.
    Waiting,
    /// Greeted by this monitor slot (capabilities negotiation mode).
    Greeted(usize),
    /// Negotiated with this monitor slot.
    Negotiated(usize),
    /// Its monitor removed itself: the connection stays open, inert.
    Orphan { ends_after_drain: bool },
    /// QEMU ended the connection; the client has yet to read the end.
    Ended,
    /// A removal raced with QEMU accepting this connection: it may be
    /// greeted, may see end of file, and is only read and closed.
    Unsure,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub state: ClientState,
    pub chardev: usize,
    /// Whether "oob" was negotiated.
    pub oob: bool,
    /// QEMU owes it output it has not read (the output may still be in
    /// QEMU's buffer: what decides when an orphan's connection ends).
    pub unread: bool,
    /// That output has a query-qmp-schema reply: more than a socket's
    /// buffers hold, so part of it stays in QEMU until the client reads.
    /// Timing only, for the situations a report names; no rule uses it.
    pub large_unread: bool,
}

#[derive(Clone, Debug)]
pub struct Chardev {
    pub kind: Kind,
    /// The monitor slot that is its frontend.
    pub frontend: Option<usize>,
    /// The connection the chardev holds (not an orphan's).
    pub conn: Option<usize>,
    /// A self-removed monitor's client, still connected.
    pub orphan: Option<usize>,
    /// Connected clients the chardev has not accepted yet, in order.
    pub backlog: VecDeque<usize>,
    /// A client closed a connection no frontend was reading: QEMU may
    /// hold it until a frontend attaches (a TCP peer's close raises no
    /// HUP), and the listen queue is no place to test.
    pub stale: bool,
    /// A pty's slave was opened once. QEMU sees a pty's holder come and
    /// go only by polling it, and the spec says nothing of a second
    /// holder, so each pty gets one.
    pub held: bool,
}

#[derive(Clone, Debug)]
pub struct Monitor {
    pub route: Route,
    pub chardev: usize,
}

/// How the run ends, chosen with the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Finish {
    /// Close every client, remove every monitor and chardev, compare
    /// QEMU's fds and memory with the start, then `quit`.
    Teardown,
    /// `quit` with whatever is left.
    Quit,
    /// SIGTERM with whatever is left.
    Sigterm,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub chardevs: [Option<Chardev>; CHARDEVS],
    pub monitors: [Option<Monitor>; MONITORS],
    pub clients: [Client; CLIENTS],
    pub running: bool,
    pub finish: Finish,
    /// Run QEMU on one CPU.
    pub pinned: bool,
    /// On that CPU, QEMU's monitor I/O thread runs at real-time priority:
    /// when the main loop wakes it, it runs at once, ahead of the rest of
    /// what the main loop was doing. Scheduling only, no rule reads it;
    /// see [`Model::io_thread_first`].
    pub io_first: bool,
    /// Which kinds of operation the sequence is drawn from: generation
    /// only, no rule reads it.
    pub mix: Mix,
}

/// One operation. Slots are indices; see [`super::ops`] for how they are
/// chosen and printed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    ChardevAdd {
        chardev: usize,
        kind: Kind,
    },
    ChardevRemove {
        chardev: usize,
    },
    MonitorAdd {
        monitor: usize,
        chardev: usize,
        route: Route,
    },
    /// From the main monitor.
    Remove {
        monitor: usize,
        cmd: RemoveCmd,
    },
    /// From a client of another dynamic monitor, which reads the reply.
    RemoveFrom {
        client: usize,
        monitor: usize,
        cmd: RemoveCmd,
    },
    /// A client sends `before`, the removal of its own monitor and `then`
    /// in one write, reading nothing.
    RemoveSelf {
        client: usize,
        before: Vec<Request>,
        cmd: RemoveCmd,
        then: Vec<Request>,
    },
    /// stop or cont (whichever changes the run state) on the main monitor.
    StopCont,
    /// The same from a negotiated client, which reads the reply.
    StopContFrom {
        client: usize,
    },
    Connect {
        client: usize,
        chardev: usize,
    },
    Negotiate {
        client: usize,
        oob: bool,
    },
    /// Requests in one write, nothing read.
    Send {
        client: usize,
        requests: Vec<Request>,
    },
    /// Read everything QEMU owes, in chunks of at most `chunk` bytes.
    Read {
        client: usize,
        chunk: usize,
    },
    Close {
        client: usize,
    },
}

/// What QEMU owes a client, in order within each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owed {
    /// A greeting from a monitor on a chardev of this kind.
    Greeting {
        oob: bool,
    },
    /// The reply to the i-th request the op sends on this client.
    Reply {
        request: usize,
        answer: Answer,
    },
    Event(&'static str),
    /// End of file. `drop_ok`: replies and events still owed may be lost
    /// (the monitor was removed from elsewhere, or the chardev went), and
    /// the last line may be cut. `reset_ok`: the connection was never
    /// accepted, so its listener's close resets it.
    Eof {
        drop_ok: bool,
        reset_ok: bool,
    },
    /// The client became [`ClientState::Unsure`].
    Unsure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Return,
    Error,
}

/// What the executor checks and waits for in one operation.
#[derive(Debug, Default)]
pub struct Step {
    /// A command on the main monitor (or a client's removal or stop/cont
    /// request): whether it must succeed.
    pub succeeds: Option<bool>,
    /// A word the refusal's message must hold.
    pub refusal_names: Option<&'static str>,
    /// Owed output, appended to the clients' ledgers.
    pub owed: Vec<(usize, Owed)>,
    /// Clients whose greeting must arrive now.
    pub greet_now: Vec<usize>,
    /// Clients whose whole ledger is read in this step (Read, and the
    /// client of a synchronous request).
    pub settle: Vec<usize>,
    /// A monitor whose client removed it: wait until it is unlisted.
    pub wait_unlisted: Option<usize>,
    /// A chardev that must show no connection once QEMU has seen the
    /// client's close.
    pub idle: Option<usize>,
}

impl Model {
    pub fn new(finish: Finish, pinned: bool) -> Model {
        let client = Client {
            state: ClientState::Free,
            chardev: 0,
            oob: false,
            unread: false,
            large_unread: false,
        };
        Model {
            chardevs: Default::default(),
            monitors: Default::default(),
            clients: std::array::from_fn(|_| client.clone()),
            running: true,
            finish,
            pinned,
            io_first: false,
            mix: Mix::ALL,
        }
    }

    /// The same start, run with QEMU on one CPU and its monitor I/O thread
    /// ahead of the main loop there. The spec's "whichever thread that
    /// monitor runs in" leaves the order of the two threads open; one CPU
    /// alone interleaves them, but the scheduler lets the running thread
    /// finish its slice, so an I/O thread woken in the middle of the main
    /// loop's work seldom gets in between. With its priority, it always
    /// does: the interleaving a race needs, every time, with no delay
    /// added to either thread.
    pub fn io_thread_first(&self) -> Model {
        Model { pinned: true, io_first: true, ..self.clone() }
    }

    /// Whether `op` can be run from this state: it names clients that can
    /// do it. Commands on the main monitor always can; the model says
    /// which are refused.
    pub fn allows(&self, op: &Op) -> bool {
        match op {
            Op::ChardevAdd { .. }
            | Op::ChardevRemove { .. }
            | Op::MonitorAdd { .. }
            | Op::StopCont => true,
            Op::Remove { monitor, .. } => self.leaves_holder_clean(*monitor),
            Op::RemoveFrom { client, monitor, .. } => {
                matches!(self.live_monitor_of(*client), Some(own) if own != *monitor)
                    && self.leaves_holder_clean(*monitor)
            }
            Op::RemoveSelf { client, before, cmd, then } => {
                let Some(monitor) = self.live_monitor_of(*client) else {
                    return false;
                };
                let route = self.monitors[monitor].as_ref().expect("live").route;
                // After a refused removal the requests run: no stop there,
                // as in Send.
                // What goes before runs as a Send would: no stop, and no
                // exec-oob, which could overtake the removal.
                !before.contains(&Request::Stop)
                    && !before.contains(&Request::Oob)
                    && (self.clients[*client].oob || !then.contains(&Request::Oob))
                    && (cmd.removes(route) || !then.contains(&Request::Stop))
                    // A pty keeps its input for the next frontend: what
                    // follows the removal would be that monitor's.
                    && (self.has_connections(*client) || then.is_empty())
            }
            Op::StopContFrom { client } => self.live_monitor_of(*client).is_some(),
            // QEMU listens with a backlog of one: a second client waiting
            // would block in connect().
            Op::Connect { client, chardev } => {
                self.clients[*client].state == ClientState::Free
                    && self.chardevs[*chardev]
                        .as_ref()
                        .is_some_and(|c| c.backlog.is_empty() && !c.stale && !c.held)
                    && !self.has_unsure(*chardev)
            }
            Op::Negotiate { client, oob } => {
                matches!(self.clients[*client].state, ClientState::Greeted(_))
                    && (!oob || self.offers_oob(*client))
            }
            Op::Send { client, requests } => {
                let c = &self.clients[*client];
                let sendable = match c.state {
                    // stop is only sent where the spec says it must not run.
                    ClientState::Greeted(_) | ClientState::Negotiated(_) => {
                        !requests.contains(&Request::Stop)
                    }
                    // On a pty it would be the next frontend's input.
                    ClientState::Orphan { .. } => self.has_connections(*client),
                    _ => false,
                };
                sendable && (c.oob || !requests.contains(&Request::Oob))
            }
            Op::Read { client, .. } => self.clients[*client].state != ClientState::Free,
            // A client that gives up while waiting stays in the kernel's
            // queue until QEMU gets to it, where the spec says nothing.
            Op::Close { client } => {
                self.clients[*client].state != ClientState::Free && !self.queued(*client)
            }
        }
    }

    /// Runs `op` on the model: the next state, and what QEMU must do.
    pub fn apply(&mut self, op: &Op) -> Step {
        let mut step = Step::default();
        match op {
            Op::ChardevAdd { chardev, kind } => {
                let ok = self.chardevs[*chardev].is_none();
                if ok {
                    self.chardevs[*chardev] = Some(Chardev {
                        kind: *kind,
                        frontend: None,
                        conn: None,
                        orphan: None,
                        backlog: VecDeque::new(),
                        stale: false,
                        held: false,
                    });
                }
                step.succeeds = Some(ok);
            }
            Op::ChardevRemove { chardev } => self.chardev_remove(*chardev, &mut step),
            Op::MonitorAdd { monitor, chardev, route } => {
                self.monitor_add(*monitor, *chardev, *route, &mut step)
            }
            Op::Remove { monitor, cmd } => {
                let ok = self.removable(*monitor, *cmd);
                step.succeeds = Some(ok);
                step.refusal_names = self.refusal_names(*monitor, *cmd);
                if ok {
                    self.remove_from_elsewhere(*monitor, &mut step);
                }
            }
            Op::RemoveFrom { client, monitor, cmd } => {
                let ok = self.removable(*monitor, *cmd);
                step.succeeds = Some(ok);
                self.settle(*client, &mut step);
                if ok {
                    self.remove_from_elsewhere(*monitor, &mut step);
                }
            }
            Op::RemoveSelf { client, before, cmd, then } => {
                self.remove_self(*client, before, *cmd, then, &mut step)
            }
            Op::StopCont => {
                step.succeeds = Some(true);
                self.toggle_run_state(&mut step);
            }
            Op::StopContFrom { client } => {
                step.succeeds = Some(true);
                self.toggle_run_state(&mut step);
                self.settle(*client, &mut step);
            }
            Op::Connect { client, chardev } => self.connect(*client, *chardev, &mut step),
            Op::Negotiate { client, oob } => {
                let ClientState::Greeted(monitor) = self.clients[*client].state else {
                    unreachable!("allows() checked the client is greeted");
                };
                self.clients[*client].state = ClientState::Negotiated(monitor);
                self.clients[*client].oob = *oob;
                step.succeeds = Some(true);
                self.settle(*client, &mut step);
            }
            Op::Send { client, requests } => self.send(*client, requests, &mut step),
            Op::Read { client, .. } => self.read(*client, &mut step),
            Op::Close { client } => self.close(*client, &mut step),
        }
        step
    }

    /// The live monitor a negotiated client talks to.
    pub fn live_monitor_of(&self, client: usize) -> Option<usize> {
        match self.clients[client].state {
            ClientState::Negotiated(monitor) if self.monitors[monitor].is_some() => Some(monitor),
            _ => None,
        }
    }

    /// "on a plain unix-socket chardev the monitor runs on the monitor I/O
    /// thread like a command-line QMP monitor, so oob is offered"; a plain
    /// TCP server socket creates no sources of its own either. "on a
    /// chardev that creates sources of its own (... a pty's poll timer)
    /// it runs in the main loop and its greeting offers no "oob"".
    pub fn offers_oob(&self, client: usize) -> bool {
        let chardev = self.clients[client].chardev;
        self.chardevs[chardev].as_ref().is_some_and(|c| matches!(c.kind, Kind::Unix | Kind::Tcp))
    }

    /// Whether the client's chardev has connections (not a pty).
    fn has_connections(&self, client: usize) -> bool {
        let chardev = self.clients[client].chardev;
        self.chardevs[chardev].as_ref().is_none_or(|c| c.kind.has_connections())
    }

    /// A removal of `monitor` from elsewhere leaves its chardev's holder
    /// in a state the spec speaks for. On a pty, "removal stops the
    /// monitor" without an end of file, so output it still owed may stop
    /// inside a line that the holder then reads before the next
    /// frontend's greeting: the holder must have read everything first.
    fn leaves_holder_clean(&self, monitor: usize) -> bool {
        let Some(m) = &self.monitors[monitor] else {
            return true;
        };
        let Some(ch) = &self.chardevs[m.chardev] else {
            return true;
        };
        ch.kind.has_connections() || ch.conn.is_none_or(|c| !self.clients[c].unread)
    }

    fn queued(&self, client: usize) -> bool {
        self.chardevs.iter().flatten().any(|c| c.backlog.contains(&client))
    }

    fn has_unsure(&self, chardev: usize) -> bool {
        self.clients.iter().any(|c| c.chardev == chardev && c.state == ClientState::Unsure)
    }

    /// "Only monitors created by monitor-add can be removed. ... an
    /// unknown id gives an error and changes nothing"; "monitor-remove
    /// refuses an object's monitor and names object-del; object-del of a
    /// monitor-add monitor's id is refused".
    fn removable(&self, monitor: usize, cmd: RemoveCmd) -> bool {
        self.monitors[monitor].as_ref().is_some_and(|m| cmd.removes(m.route))
    }

    /// "`monitor-remove` refuses an object's monitor and names
    /// `object-del`".
    fn refusal_names(&self, monitor: usize, cmd: RemoveCmd) -> Option<&'static str> {
        let route = self.monitors[monitor].as_ref()?.route;
        (cmd == RemoveCmd::MonitorRemove && route == Route::Qom).then_some("object-del")
    }

    /// "The chardev must exist and must not already have a frontend";
    /// "id is required, unique among all monitors".
    fn monitor_add(&mut self, monitor: usize, chardev: usize, route: Route, step: &mut Step) {
        let ok = self.monitors[monitor].is_none()
            && self.chardevs[chardev].as_ref().is_some_and(|c| c.frontend.is_none());
        step.succeeds = Some(ok);
        if !ok {
            return;
        }
        self.monitors[monitor] = Some(Monitor { route, chardev });
        let ch = self.chardevs[chardev].as_mut().expect("checked above");
        ch.frontend = Some(monitor);
        // The monitor reads the connection, so a dead one is found and
        // the next client gets in.
        if std::mem::take(&mut ch.stale) && ch.conn.is_none() && ch.orphan.is_none() {
            let next = ch.backlog.pop_front();
            ch.conn = next;
        }
        if ch.kind == Kind::Pty {
            if let Some(old) = ch.orphan.take() {
                // "Chardevs without connections (pty, file, pipe, serial)
                // have no end-of-file to give: ... a new frontend talks to
                // whatever holds the other side." The self-removed
                // monitor's output comes first, complete ("Meanwhile
                // nothing the new frontend does reaches the old client"),
                // then the new monitor's greeting.
                ch.conn = Some(old);
            }
            if let Some(holder) = ch.conn {
                self.greet(holder, monitor, step);
            }
            return;
        }
        if let Some(old) = ch.orphan {
            // "A new frontend on that chardev never inherits the
            // self-removed monitor's client: QEMU first ends that
            // connection ... If the old client still has output pending,
            // its connection ends only after the last byte is written."
            self.clients[old].state = ClientState::Orphan { ends_after_drain: true };
            if !self.clients[old].unread {
                self.end_orphan(chardev, step);
            }
            return;
        }
        // "A client that connects gets the same greeting as on a -qmp
        // monitor."
        if let Some(conn) = ch.conn {
            self.greet(conn, monitor, step);
        }
    }

    fn greet(&mut self, client: usize, monitor: usize, step: &mut Step) {
        if self.clients[client].state == ClientState::Unsure {
            // It may have been ended already; it takes a greeting if one
            // comes.
            return;
        }
        let oob = self.offers_oob(client);
        self.clients[client].state = ClientState::Greeted(monitor);
        step.owed.push((client, Owed::Greeting { oob }));
        step.greet_now.push(client);
    }

    /// The orphan's connection ends (its output all written): it reads end
    /// of file, and the chardev accepts the next client.
    fn end_orphan(&mut self, chardev: usize, step: &mut Step) {
        let ch = self.chardevs[chardev].as_mut().expect("orphan's chardev");
        let old = ch.orphan.take().expect("an orphan");
        self.clients[old].state = ClientState::Ended;
        step.owed.push((old, Owed::Eof { drop_ok: false, reset_ok: false }));
        self.accept_next(chardev, step);
    }

    /// The chardev has no connection: it accepts the first waiting client,
    /// which its frontend (if any) greets: "A client that connects
    /// meanwhile waits, and is then greeted by the new monitor, whichever
    /// thread that monitor runs in."
    fn accept_next(&mut self, chardev: usize, step: &mut Step) {
        let ch = self.chardevs[chardev].as_mut().expect("a chardev");
        debug_assert!(ch.conn.is_none() && ch.orphan.is_none());
        let Some(next) = ch.backlog.pop_front() else {
            step.idle = Some(chardev);
            return;
        };
        ch.conn = Some(next);
        if let Some(monitor) = ch.frontend {
            self.greet(next, monitor, step);
        }
    }

    /// "Removed from another monitor: the monitor stops, its queued
    /// requests are dropped, the connected client (if any) sees a clean
    /// end-of-file ... and the chardev's frontend is released."
    fn remove_from_elsewhere(&mut self, monitor: usize, step: &mut Step) {
        let m = self.monitors[monitor].take().expect("removable() checked");
        let ch = self.chardevs[m.chardev].as_mut().expect("a monitor's chardev");
        ch.frontend = None;
        if ch.orphan.is_some() {
            // "Removing the new frontend before the old connection ended
            // changes nothing for the old client: it still gets all of
            // its output, then end-of-file." The first waiting client may
            // or may not have been accepted and greeted already (the
            // orphan's output may all be in the socket): it is unsure.
            if let Some(&next) = ch.backlog.front() {
                self.clients[next].state = ClientState::Unsure;
                step.owed.push((next, Owed::Unsure));
            }
            return;
        }
        if !ch.kind.has_connections() {
            // "Chardevs without connections (pty, file, pipe, serial)
            // have no end-of-file to give: removal stops the monitor":
            // the holder keeps the pty and hears nothing more.
            if let Some(holder) = ch.conn {
                self.clients[holder].state = ClientState::Waiting;
            }
            return;
        }
        if let Some(conn) = ch.conn.take() {
            self.clients[conn].state = ClientState::Ended;
            step.owed.push((conn, Owed::Eof { drop_ok: true, reset_ok: false }));
            self.accept_next(m.chardev, step);
        }
    }

    /// Self-removal: "the {"return": {}} reply is written completely to
    /// that client, and then the connection stays open ... Nothing more
    /// is written on it ... and nothing the client sends is executed,
    /// not even out-of-band commands", which covers "requests already
    /// queued behind the removal".
    fn remove_self(
        &mut self,
        client: usize,
        before: &[Request],
        cmd: RemoveCmd,
        then: &[Request],
        step: &mut Step,
    ) {
        let monitor = self.live_monitor_of(client).expect("allows() checked");
        let route = self.monitors[monitor].as_ref().expect("live").route;
        // Requests queued ahead of the removal run and are answered first.
        self.answer(client, before, 0, step);
        let removal = before.len();
        if !cmd.removes(route) {
            // A refusal changes nothing: what follows runs as usual.
            step.owed.push((client, Owed::Reply { request: removal, answer: Answer::Error }));
            self.clients[client].unread = true;
            self.answer(client, then, removal + 1, step);
            return;
        }
        step.owed.push((client, Owed::Reply { request: removal, answer: Answer::Return }));
        self.clients[client].unread = true;
        let chardev = self.monitors[monitor].take().expect("live").chardev;
        let ch = self.chardevs[chardev].as_mut().expect("a monitor's chardev");
        ch.frontend = None;
        ch.conn = None;
        ch.orphan = Some(client);
        self.clients[client].state = ClientState::Orphan { ends_after_drain: false };
        step.wait_unlisted = Some(monitor);
    }

    /// "stop then cont on the main monitor deliver STOP then RESUME":
    /// every broadcast event goes to each negotiated client of a live
    /// monitor ("once its client has negotiated capabilities, and none
    /// before"). Only a change of run state emits one.
    fn toggle_run_state(&mut self, step: &mut Step) {
        let event = if self.running { "STOP" } else { "RESUME" };
        self.running = !self.running;
        for client in 0..CLIENTS {
            if self.live_monitor_of(client).is_some() {
                step.owed.push((client, Owed::Event(event)));
                self.clients[client].unread = true;
            }
        }
    }

    fn connect(&mut self, client: usize, chardev: usize, step: &mut Step) {
        self.clients[client] = Client {
            state: ClientState::Waiting,
            chardev,
            oob: false,
            unread: false,
            large_unread: false,
        };
        let ch = self.chardevs[chardev].as_mut().expect("allows() checked");
        ch.held |= ch.kind == Kind::Pty;
        if ch.conn.is_some() || ch.orphan.is_some() || !ch.backlog.is_empty() {
            ch.backlog.push_back(client);
        } else {
            ch.conn = Some(client);
            if let Some(monitor) = ch.frontend {
                self.greet(client, monitor, step);
            }
        }
    }

    fn send(&mut self, client: usize, requests: &[Request], step: &mut Step) {
        match self.clients[client].state {
            ClientState::Orphan { .. } => {}
            ClientState::Greeted(_) => {
                // "The new monitor starts in capabilities-negotiation
                // mode": everything but qmp_capabilities is refused.
                for i in 0..requests.len() {
                    step.owed.push((client, Owed::Reply { request: i, answer: Answer::Error }));
                }
                self.clients[client].unread |= !requests.is_empty();
            }
            _ => self.answer(client, requests, 0, step),
        }
    }

    /// Replies to requests a live negotiated monitor runs, the first being
    /// the op's request number `first`.
    fn answer(&mut self, client: usize, requests: &[Request], first: usize, step: &mut Step) {
        for (i, request) in requests.iter().enumerate() {
            let answer = match request {
                // migrate-pause outside postcopy is an error.
                Request::Oob => Answer::Error,
                _ => Answer::Return,
            };
            step.owed.push((client, Owed::Reply { request: first + i, answer }));
            self.clients[client].large_unread |= *request == Request::Schema;
            if *request == Request::Stop && self.running {
                self.toggle_run_state(step);
            }
        }
        self.clients[client].unread |= !requests.is_empty();
    }

    /// Reads all that is owed: an orphan whose connection is to end after
    /// its output then sees end of file.
    fn read(&mut self, client: usize, step: &mut Step) {
        self.settle(client, step);
        match self.clients[client].state.clone() {
            ClientState::Orphan { ends_after_drain: true } => {
                let chardev = self.clients[client].chardev;
                self.end_orphan(chardev, step);
                // The end is read in this same step.
                self.clients[client].state = ClientState::Free;
            }
            ClientState::Ended => {
                self.clients[client].state = ClientState::Free;
                self.forget(client);
            }
            // Whether it was ended is unknown: it stays until it closes.
            _ => {}
        }
    }

    fn settle(&mut self, client: usize, step: &mut Step) {
        step.settle.push(client);
        self.clients[client].unread = false;
        self.clients[client].large_unread = false;
    }

    /// "The connection ends when the client closes it"; "The self-removed
    /// client's own close ends its connection at once on every socket
    /// kind (unix and TCP), leaving no half-closed socket behind."
    fn close(&mut self, client: usize, step: &mut Step) {
        let chardev = self.clients[client].chardev;
        let state = std::mem::replace(&mut self.clients[client].state, ClientState::Free);
        self.clients[client].unread = false;
        self.clients[client].large_unread = false;
        if matches!(state, ClientState::Free | ClientState::Ended) {
            return;
        }
        let Some(ch) = self.chardevs[chardev].as_mut() else {
            return;
        };
        if !ch.kind.has_connections() {
            // The pty's one holder lets go: nothing else is owed to anyone.
            ch.orphan = ch.orphan.filter(|&c| c != client);
            ch.conn = ch.conn.filter(|&c| c != client);
        } else if ch.orphan == Some(client) {
            ch.orphan = None;
            self.accept_next(chardev, step);
        } else if ch.conn == Some(client) {
            ch.conn = None;
            // Without a frontend nothing reads the connection, so QEMU
            // may only see the close when a monitor attaches and writes
            // its greeting: the next client is accepted then, and no
            // idle chardev can be asked for. An unsure client may have
            // been ended already. has_unsure() kept others from
            // connecting behind it.
            if ch.frontend.is_some() && state != ClientState::Unsure {
                self.accept_next(chardev, step);
            } else {
                ch.stale = true;
            }
        } else {
            ch.backlog.retain(|&c| c != client);
        }
    }

    fn forget(&mut self, client: usize) {
        for ch in self.chardevs.iter_mut().flatten() {
            if ch.conn == Some(client) {
                ch.conn = None;
            }
            ch.backlog.retain(|&c| c != client);
        }
    }

    /// "chardev-remove succeeds" once the frontend is gone; "The
    /// connection ends ... at chardev-remove, which the client then sees
    /// as end-of-file." Its output still pending may be lost with it.
    fn chardev_remove(&mut self, chardev: usize, step: &mut Step) {
        let ok = self.chardevs[chardev].as_ref().is_some_and(|c| c.frontend.is_none());
        step.succeeds = Some(ok);
        if !ok {
            return;
        }
        let ch = self.chardevs[chardev].take().expect("checked above");
        // A client never greeted may still be in the listen queue (see
        // close()): the listener's close resets it. A pty's holder sees
        // the hang-up of the master side as its end of file.
        let connected = ch.conn.into_iter().chain(ch.orphan).chain(ch.backlog);
        for client in connected {
            let reset_ok =
                ch.kind.has_connections() && self.clients[client].state == ClientState::Waiting;
            if self.clients[client].state != ClientState::Unsure {
                self.clients[client].state = ClientState::Ended;
            }
            let drop_ok = true;
            step.owed.push((client, Owed::Eof { drop_ok, reset_ok }));
        }
    }

    /// Live monitors, for query-monitors: (slot, chardev slot).
    pub fn listed(&self) -> Vec<(usize, usize)> {
        self.monitors
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m.chardev)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
