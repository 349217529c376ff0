//! Which operations a sequence is made of, and how they read in a report.
//!
//! Generation follows the model's state (proptest-state-machine's
//! reference state machine): client operations name clients that can do
//! them; main-monitor commands name any slot, so that refusals (unknown
//! ids, busy chardevs, the wrong removal command) come up as often as
//! successes. Shrinking drops operations and simplifies the rest while
//! [`Model::allows`] still holds.

use std::{
    fmt,
    sync::atomic::{AtomicU8, Ordering},
};

use proptest::{
    prelude::*,
    sample::select,
    strategy::{BoxedStrategy, Union},
};
use proptest_state_machine::ReferenceStateMachine;
use serde_json::Value;

use super::model::{
    ClientState, Finish, Kind, Model, Op, RemoveCmd, Request, CHARDEVS, CLIENTS, MONITORS,
};
use crate::route::Route;

/// The reference state machine proptest generates sequences from.
pub struct Explore;

/// Reads of this size are "slow": QEMU's output backs up behind them.
pub const SLOW_CHUNK: usize = 4096;
pub const ALL_AT_ONCE: usize = usize::MAX;

impl ReferenceStateMachine for Explore {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (
            prop_oneof![
                2 => Just(Finish::Teardown),
                1 => Just(Finish::Quit),
                1 => Just(Finish::Sigterm),
            ],
            any::<bool>(),
            Mix::strategy(),
        )
            .prop_map(|(finish, pinned, mix)| Model { mix, ..Model::new(finish, pinned) })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let mix = state.mix;
        // Main-monitor commands on any slot (refusals), and more often on
        // the slots where they succeed, so that sequences get somewhere.
        let free_chardevs: Vec<usize> =
            (0..CHARDEVS).filter(|&c| state.chardevs[c].is_none()).collect();
        let idle_chardevs: Vec<usize> = (0..CHARDEVS)
            .filter(|&c| state.chardevs[c].as_ref().is_some_and(|c| c.frontend.is_none()))
            .collect();
        let free_monitors: Vec<usize> =
            (0..MONITORS).filter(|&m| state.monitors[m].is_none()).collect();
        let live_monitors: Vec<usize> =
            (0..MONITORS).filter(|&m| state.monitors[m].is_some()).collect();
        let mut options: Vec<(u32, BoxedStrategy<Op>)> = vec![
            (1, chardev_add(0..CHARDEVS)),
            (
                mix.weight(Mix::CHARDEV_REMOVE, 1),
                (0..CHARDEVS).prop_map(|chardev| Op::ChardevRemove { chardev }).boxed(),
            ),
            (1, monitor_add(0..MONITORS, 0..CHARDEVS)),
            (mix.weight(Mix::REMOVE, 1), remove(state, 0..MONITORS)),
            (mix.weight(Mix::STOP_CONT, 1), Just(Op::StopCont).boxed()),
        ];
        if !free_chardevs.is_empty() {
            options.push((2, chardev_add(select(free_chardevs))));
        }
        if !idle_chardevs.is_empty() {
            let op =
                select(idle_chardevs.clone()).prop_map(|chardev| Op::ChardevRemove { chardev });
            options.push((mix.weight(Mix::CHARDEV_REMOVE, 1), op.boxed()));
            if !free_monitors.is_empty() {
                options.push((4, monitor_add(select(free_monitors), select(idle_chardevs))));
            }
        }
        if !live_monitors.is_empty() {
            options.push((mix.weight(Mix::REMOVE, 2), remove(state, select(live_monitors))));
        }
        let with = |pred: &dyn Fn(usize, &super::model::Client) -> bool| -> Vec<usize> {
            (0..CLIENTS).filter(|&i| pred(i, &state.clients[i])).collect()
        };
        let free = with(&|_, c| c.state == ClientState::Free);
        let greeted = with(&|_, c| matches!(c.state, ClientState::Greeted(_)));
        let live = with(&|i, _| state.live_monitor_of(i).is_some());
        let senders = with(&|i, c| {
            matches!(c.state, ClientState::Greeted(_) | ClientState::Orphan { .. })
                || state.live_monitor_of(i).is_some()
        });
        let connected = with(&|_, c| c.state != ClientState::Free);
        let chardevs: Vec<usize> = (0..CHARDEVS).filter(|&c| state.chardevs[c].is_some()).collect();
        if !free.is_empty() && !chardevs.is_empty() {
            let op = (select(free), select(chardevs))
                .prop_map(|(client, chardev)| Op::Connect { client, chardev });
            options.push((4, op.boxed()));
        }
        if !greeted.is_empty() {
            let op = (select(greeted), any::<bool>())
                .prop_map(|(client, oob)| Op::Negotiate { client, oob });
            options.push((4, op.boxed()));
        }
        if !live.is_empty() {
            options.push((mix.weight(Mix::REMOVE_SELF, 2), remove_self(state, &live)));
            let op = (select(live.clone()), 0..MONITORS, remove_cmd())
                .prop_map(|(client, monitor, cmd)| Op::RemoveFrom { client, monitor, cmd });
            options.push((mix.weight(Mix::REMOVE_FROM, 1), op.boxed()));
            let op = select(live).prop_map(|client| Op::StopContFrom { client });
            options.push((mix.weight(Mix::STOP_CONT, 1), op.boxed()));
        }
        if !senders.is_empty() {
            let oob: Vec<bool> = state.clients.iter().map(|c| c.oob).collect();
            let orphan: Vec<bool> = state
                .clients
                .iter()
                .map(|c| matches!(c.state, ClientState::Orphan { .. }))
                .collect();
            let op = select(senders).prop_flat_map(move |client| {
                requests(mix, oob[client], orphan[client])
                    .prop_map(move |requests| Op::Send { client, requests })
            });
            options.push((mix.weight(Mix::SEND, 3), op.boxed()));
        }
        if !connected.is_empty() {
            let op = (select(connected.clone()), select(vec![ALL_AT_ONCE, SLOW_CHUNK]))
                .prop_map(|(client, chunk)| Op::Read { client, chunk });
            options.push((mix.weight(Mix::READ, 3), op.boxed()));
            let op = select(connected).prop_map(|client| Op::Close { client });
            options.push((mix.weight(Mix::CLOSE, 2), op.boxed()));
        }
        options.retain(|(weight, _)| *weight > 0);
        Union::new_weighted(options).boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        state.apply(op);
        state
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        state.allows(op)
    }
}

/// Which kinds of operation and request a sequence leaves out: swarm
/// testing (Groce et al., ISSTA 2012). With every kind in every
/// sequence, the states that need several steps of a few kinds in a row
/// (a self-removed client with a schema reply unread, a new monitor on
/// its chardev, a client waiting behind it, then the orphan read to its
/// end) come rarely; a sequence without, say, chardev-remove and
/// stop/cont gets there far more often. Chardev-add, monitor add,
/// connect and negotiate are in every sequence: without them nothing
/// else happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    left_out: u16,
}

impl Mix {
    pub const ALL: Mix = Mix { left_out: 0 };
    pub const CHARDEV_REMOVE: u16 = 1 << 0;
    pub const REMOVE: u16 = 1 << 1;
    pub const REMOVE_FROM: u16 = 1 << 2;
    pub const REMOVE_SELF: u16 = 1 << 3;
    pub const STOP_CONT: u16 = 1 << 4;
    pub const SEND: u16 = 1 << 5;
    pub const READ: u16 = 1 << 6;
    pub const CLOSE: u16 = 1 << 7;
    pub const STATUS: u16 = 1 << 8;
    pub const SCHEMA: u16 = 1 << 9;
    pub const STOP: u16 = 1 << 10;
    pub const OOB: u16 = 1 << 11;
    /// How many kinds a sequence may leave out: the bits above.
    const KINDS: u32 = 12;

    /// A quarter of the sequences have every kind; the others leave each
    /// out with even odds.
    fn strategy() -> BoxedStrategy<Mix> {
        let all = (1u16 << Mix::KINDS) - 1;
        prop_oneof![
            1 => Just(Mix::ALL),
            3 => any::<u16>().prop_map(move |bits| Mix { left_out: bits & all }),
        ]
        .boxed()
    }

    /// `weight`, or 0 for a kind this sequence leaves out.
    fn weight(self, kind: u16, weight: u32) -> u32 {
        if self.left_out & kind == 0 {
            weight
        } else {
            0
        }
    }
}

/// The chardev kinds sequences use (`--chardevs`): a bit per [`Kind`].
/// Global because proptest-state-machine's strategies take no
/// parameters; set once before a run.
static KINDS: AtomicU8 = AtomicU8::new(UNIX | TCP);
const UNIX: u8 = 1;
const TCP: u8 = 2;
const PTY: u8 = 4;

pub fn set_kinds(kinds: &[Kind]) {
    let bits = kinds.iter().fold(0, |bits, kind| {
        bits | match kind {
            Kind::Unix => UNIX,
            Kind::Tcp => TCP,
            Kind::Pty => PTY,
        }
    });
    KINDS.store(bits, Ordering::SeqCst);
}

/// Unix sockets most, then TCP and pty. Without pty, the same draws as
/// before pty was a kind, so that a seed printed then replays the same
/// sequence.
fn chardev_add(slots: impl Strategy<Value = usize> + 'static) -> BoxedStrategy<Op> {
    let kind = match KINDS.load(Ordering::SeqCst) {
        UNIX => Just(Kind::Unix).boxed(),
        TCP => Just(Kind::Tcp).boxed(),
        PTY => Just(Kind::Pty).boxed(),
        bits if bits == UNIX | TCP => {
            prop_oneof![3 => Just(Kind::Unix), 1 => Just(Kind::Tcp)].boxed()
        }
        bits => {
            let weighted = [(UNIX, 3, Kind::Unix), (TCP, 1, Kind::Tcp), (PTY, 1, Kind::Pty)];
            let options: Vec<(u32, BoxedStrategy<Kind>)> = weighted
                .into_iter()
                .filter(|(bit, _, _)| bits & bit != 0)
                .map(|(_, weight, kind)| (weight, Just(kind).boxed()))
                .collect();
            Union::new_weighted(options).boxed()
        }
    };
    (slots, kind).prop_map(|(chardev, kind)| Op::ChardevAdd { chardev, kind }).boxed()
}

fn monitor_add(
    monitors: impl Strategy<Value = usize> + 'static,
    chardevs: impl Strategy<Value = usize> + 'static,
) -> BoxedStrategy<Op> {
    (monitors, chardevs, select(Route::ALL.to_vec()))
        .prop_map(|(monitor, chardev, route)| Op::MonitorAdd { monitor, chardev, route })
        .boxed()
}

fn remove_cmd() -> BoxedStrategy<RemoveCmd> {
    select(vec![RemoveCmd::MonitorRemove, RemoveCmd::ObjectDel, RemoveCmd::Hmp]).boxed()
}

/// Mostly the command that fits the monitor's route: a wrong one is a
/// refusal, worth meeting but not most of the time.
fn fitting_cmd(route: Option<Route>) -> BoxedStrategy<RemoveCmd> {
    match route {
        Some(Route::Commands) => {
            prop_oneof![4 => Just(RemoveCmd::MonitorRemove), 1 => remove_cmd()].boxed()
        }
        Some(Route::Qom) => prop_oneof![
            3 => Just(RemoveCmd::ObjectDel),
            1 => Just(RemoveCmd::Hmp),
            1 => remove_cmd(),
        ]
        .boxed(),
        None => remove_cmd(),
    }
}

fn remove(state: &Model, monitors: impl Strategy<Value = usize> + 'static) -> BoxedStrategy<Op> {
    let routes: Vec<Option<Route>> =
        state.monitors.iter().map(|m| m.as_ref().map(|m| m.route)).collect();
    monitors
        .prop_flat_map(move |monitor| {
            fitting_cmd(routes[monitor]).prop_map(move |cmd| Op::Remove { monitor, cmd })
        })
        .boxed()
}

fn remove_self(state: &Model, live: &[usize]) -> BoxedStrategy<Op> {
    let routes: Vec<Option<Route>> = (0..CLIENTS)
        .map(|c| state.live_monitor_of(c).and_then(|m| state.monitors[m].as_ref()).map(|m| m.route))
        .collect();
    let oob: Vec<bool> = state.clients.iter().map(|c| c.oob).collect();
    let mix = state.mix;
    select(live.to_vec())
        .prop_flat_map(move |client| {
            let before = prop_oneof![
                2 => Just(Vec::new()),
                1 => requests(mix, false, false),
            ];
            let then = prop_oneof![
                2 => Just(Vec::new()),
                1 => requests(mix, oob[client], true),
            ];
            (before, fitting_cmd(routes[client]), then)
                .prop_map(move |(before, cmd, then)| Op::RemoveSelf { client, before, cmd, then })
        })
        .boxed()
}

/// One to four requests; `stop` where `allow_stop` (the model refuses it
/// where it would run), `exec-oob` where `oob`.
fn requests(mix: Mix, oob: bool, allow_stop: bool) -> BoxedStrategy<Vec<Request>> {
    let mut kinds = vec![
        (4, Just(Request::Version).boxed()),
        (mix.weight(Mix::STATUS, 2), Just(Request::Status).boxed()),
        (mix.weight(Mix::SCHEMA, 2), Just(Request::Schema).boxed()),
    ];
    if allow_stop {
        kinds.push((mix.weight(Mix::STOP, 1), Just(Request::Stop).boxed()));
    }
    if oob {
        kinds.push((mix.weight(Mix::OOB, 1), Just(Request::Oob).boxed()));
    }
    kinds.retain(|(weight, _)| *weight > 0);
    proptest::collection::vec(Union::new_weighted(kinds), 1..=4).boxed()
}

impl Request {
    /// `(out_of_band, command)` as the connection sends it.
    pub fn wire(self) -> (bool, &'static str) {
        match self {
            Request::Version => (false, "query-version"),
            Request::Schema => (false, "query-qmp-schema"),
            Request::Status => (false, "query-status"),
            Request::Stop => (false, "stop"),
            Request::Oob => (true, "migrate-pause"),
        }
    }

    /// `(out_of_band, command, arguments)`, as [`super::conn::Conn::send`]
    /// takes it: none of these requests has arguments.
    pub fn to_send(self) -> (bool, &'static str, Value) {
        let (oob, command) = self.wire();
        (oob, command, Value::Null)
    }
}

pub fn chardev_id(slot: usize) -> String {
    format!("c{slot}")
}

pub fn monitor_id(slot: usize) -> String {
    format!("m{slot}")
}

pub fn client_name(slot: usize) -> String {
    char::from(b'a' + slot as u8).to_string()
}

impl fmt::Display for RemoveCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveCmd::MonitorRemove => "monitor-remove",
            RemoveCmd::ObjectDel => "object-del",
            RemoveCmd::Hmp => "HMP object_del",
        })
    }
}

fn request_list(requests: &[Request]) -> String {
    let names: Vec<String> = requests
        .iter()
        .map(|r| match r.wire() {
            (true, command) => format!("exec-oob {command}"),
            (false, command) => command.to_string(),
        })
        .collect();
    names.join(", ")
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |slot: &usize| client_name(*slot);
        match self {
            Op::ChardevAdd { chardev, kind } => {
                let kind = match kind {
                    Kind::Unix => "unix socket, server, wait=off",
                    Kind::Tcp => "TCP socket, server, wait=off",
                    Kind::Pty => "pty",
                };
                write!(f, "main: chardev-add {} ({kind})", chardev_id(*chardev))
            }
            Op::ChardevRemove { chardev } => {
                write!(f, "main: chardev-remove {}", chardev_id(*chardev))
            }
            Op::MonitorAdd { monitor, chardev, route } => {
                let how = match route {
                    Route::Commands => "monitor-add",
                    Route::Qom => "object-add monitor-qmp",
                };
                write!(f, "main: {how} {} on {}", monitor_id(*monitor), chardev_id(*chardev))
            }
            Op::Remove { monitor, cmd } => write!(f, "main: {cmd} {}", monitor_id(*monitor)),
            Op::RemoveFrom { client, monitor, cmd } => {
                write!(
                    f,
                    "{}: {cmd} {} (another monitor), read the reply",
                    c(client),
                    monitor_id(*monitor)
                )
            }
            Op::RemoveSelf { client, before, cmd, then } => {
                write!(f, "{}: ", c(client))?;
                if !before.is_empty() {
                    write!(f, "{}, then ", request_list(before))?;
                }
                write!(f, "{cmd} of its own monitor")?;
                if !then.is_empty() {
                    write!(f, ", then {}", request_list(then))?;
                }
                if !before.is_empty() || !then.is_empty() {
                    write!(f, " in the same write")?;
                }
                write!(f, ", read nothing")
            }
            Op::StopCont => write!(f, "main: stop or cont (whichever changes the run state)"),
            Op::StopContFrom { client } => {
                write!(
                    f,
                    "{}: stop or cont (whichever changes the run state), read the reply",
                    c(client)
                )
            }
            Op::Connect { client, chardev } => {
                write!(f, "{}: connect to {}", c(client), chardev_id(*chardev))
            }
            Op::Negotiate { client, oob: true } => {
                write!(f, "{}: qmp_capabilities with oob", c(client))
            }
            Op::Negotiate { client, oob: false } => write!(f, "{}: qmp_capabilities", c(client)),
            Op::Send { client, requests } => {
                write!(
                    f,
                    "{}: send {} in one write, read nothing",
                    c(client),
                    request_list(requests)
                )
            }
            Op::Read { client, chunk: ALL_AT_ONCE } => {
                write!(f, "{}: read everything owed", c(client))
            }
            Op::Read { client, chunk } => {
                write!(f, "{}: read everything owed, {chunk} bytes at a time", c(client))
            }
            Op::Close { client } => write!(f, "{}: close", c(client)),
        }
    }
}

impl fmt::Display for Finish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Finish::Teardown => "close all, remove all, compare fds and memory, quit",
            Finish::Quit => "quit with what is left",
            Finish::Sigterm => "SIGTERM with what is left",
        })
    }
}
