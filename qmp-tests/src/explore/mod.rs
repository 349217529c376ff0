//! Explore: random sequences of monitor, chardev and client operations,
//! each checked step by step against a model of the spec, and a failing
//! sequence shrunk to a short one that still fails.
//!
//! The fixed scenarios walk the orders someone thought of; explore walks
//! the rest. proptest generates each sequence from a seed of its own
//! (printed, and rerun exactly with `--replay SEED`) through
//! proptest-state-machine's reference state machine ([`ops::Explore`]
//! over [`model::Model`]), and shrinks a failure with the same value
//! tree, as proptest's own runner does. A failure found under a race is
//! rerun to say how often the shrunk sequence fails.

pub mod conn;
pub mod exec;
pub mod model;
pub mod ops;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use proptest_state_machine::ReferenceStateMachine;

pub use exec::{Failure, Target};
use model::{Model, Op};
use ops::Explore;

/// What to explore and for how long.
#[derive(Clone)]
pub struct Options {
    pub target: Target,
    /// Stop starting sequences after this long.
    pub time: Duration,
    /// Sequences run at once, each with a QEMU of its own.
    pub jobs: usize,
    /// Where the sequences' seeds come from; random when `None`.
    pub seed: Option<u64>,
    /// Run just this sequence (a seed a report printed).
    pub replay: Option<u64>,
    /// Operations per sequence, at most.
    pub max_ops: usize,
    /// Runs of a shrunk failure, to say how often it fails.
    pub reruns: u32,
    /// Time spent shrinking a failure, at most.
    pub shrink_time: Duration,
    /// More runs of a sequence that passed through one of [`RACES`].
    pub race_reruns: u32,
    /// Stop after this many failures of different kinds; a failure of a
    /// kind already found is counted, not shrunk again.
    pub max_failures: usize,
    /// The kinds chardevs are made of.
    pub chardevs: Vec<model::Kind>,
    /// Stop after this many sequences (the first ones of the seed), even
    /// with time left: the same set on a fast machine and a slow one.
    pub sequences: Option<usize>,
}

/// What a run of explore did and found.
pub struct Summary {
    pub seed: u64,
    pub sequences: usize,
    pub ops: usize,
    pub elapsed: Duration,
    /// Operations run, by kind.
    pub op_kinds: BTreeMap<&'static str, usize>,
    /// Situations of the model reached, and in how many sequences.
    pub reached: BTreeMap<&'static str, usize>,
    /// One shrunk failure per kind, in the order found.
    pub found: Vec<Found>,
    /// Sequences that failed, by kind, the shrunk ones included.
    pub failures: BTreeMap<&'static str, usize>,
    /// The number (from 1, in the seed's order) of the first sequence
    /// that failed: how far a fixed set got before it caught something.
    pub first_failure: Option<usize>,
    /// Sequences run again for a race they passed through, and those runs.
    pub race_reruns: (usize, usize),
}

/// A failing sequence, shrunk.
pub struct Found {
    /// The seed that generated the sequence (`--replay`).
    pub seed: u64,
    /// Its number in the run, from 1.
    pub number: usize,
    pub original_len: usize,
    pub initial: Model,
    pub ops: Vec<Op>,
    pub failure: Failure,
    /// The shrunk sequence's run, operations and QMP lines.
    pub transcript: String,
    pub shrink_runs: usize,
    /// (failed, runs) of the shrunk sequence rerun.
    pub reruns: (u32, u32),
}

type Tree = <proptest_state_machine::strategy::Sequential<
    Model,
    Op,
    proptest::strategy::BoxedStrategy<Model>,
    proptest::strategy::BoxedStrategy<Op>,
> as Strategy>::Tree;

/// The sequence a seed stands for, as a proptest value tree (which also
/// shrinks it).
fn tree(seed: u64, max_ops: usize) -> Tree {
    let mut bytes = [0u8; 32];
    let mut state = seed;
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    Explore::sequential_strategy(1..=max_ops)
        .new_tree(&mut runner)
        .expect("a model with main-monitor operations always has a transition")
}

/// splitmix64: spreads consecutive numbers into unrelated seeds.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the `index`-th sequence of a run seeded `base`.
pub fn sequence_seed(base: u64, index: usize) -> u64 {
    let mut state = base ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    splitmix(&mut state)
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::ChardevAdd { .. } => "chardev-add",
        Op::ChardevRemove { .. } => "chardev-remove",
        Op::MonitorAdd { .. } => "monitor add",
        Op::Remove { .. } => "remove from main",
        Op::RemoveFrom { .. } => "remove from another monitor",
        Op::RemoveSelf { .. } => "remove itself",
        Op::StopCont => "stop/cont from main",
        Op::StopContFrom { .. } => "stop/cont from a client",
        Op::Connect { .. } => "connect",
        Op::Negotiate { .. } => "negotiate",
        Op::Send { .. } => "send requests",
        Op::Read { .. } => "read",
        Op::Close { .. } => "close",
    }
}

struct Shared {
    next: AtomicUsize,
    stop: AtomicBool,
    tally: Mutex<Summary>,
}

/// Runs sequences until `opts.time` is up or one fails; a failure is
/// shrunk and rerun before this returns.
pub fn run(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Summary {
    let seed = opts.seed.unwrap_or_else(random_seed);
    ops::set_kinds(&opts.chardevs);
    // Race reruns put QEMU's monitor I/O thread first where real-time
    // priority may be given (root, or CAP_SYS_NICE), else they rerun each
    // sequence as it is.
    let io_first = match exec::may_raise_priority() {
        Ok(()) => true,
        Err(err) => {
            progress(&format!(
                "explore: {err}; race reruns run each sequence as it says, without the I/O thread first"
            ));
            false
        }
    };
    let start = Instant::now();
    let shared = Shared {
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        tally: Mutex::new(Summary {
            seed,
            sequences: 0,
            ops: 0,
            elapsed: Duration::ZERO,
            op_kinds: BTreeMap::new(),
            reached: BTreeMap::new(),
            found: Vec::new(),
            failures: BTreeMap::new(),
            first_failure: None,
            race_reruns: (0, 0),
        }),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| worker(opts, seed, start, cpus, io_first, &shared, progress));
        }
    });
    shared.tally.into_inner().expect("no worker panicked holding the tally")
}

fn worker(
    opts: &Options,
    base: u64,
    start: Instant,
    cpus: usize,
    io_first: bool,
    shared: &Shared,
    progress: &(dyn Fn(&str) + Sync),
) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        let seed = match opts.replay {
            Some(seed) if index == 0 => seed,
            Some(_) => return,
            None if start.elapsed() >= opts.time => return,
            None if opts.sequences.is_some_and(|n| index >= n) => return,
            None => sequence_seed(base, index),
        };
        let tree = tree(seed, opts.max_ops);
        let (initial, ops, seen) = tree.current();
        let cpu = Some(index % cpus);
        let mut run = exec::run(&opts.target, &initial, &ops, cpu);
        let racy = run.reached.iter().any(|s| RACES.contains(s));
        let mut reruns = 0;
        // The start the last run had: a failing rerun's is the one shrunk.
        let mut ran = initial.clone();
        while racy && run.failure.is_none() && reruns < opts.race_reruns {
            reruns += 1;
            ran = rerun_start(&initial, reruns, io_first);
            run = exec::run(&opts.target, &ran, &ops, cpu);
        }
        // Shrinking first drops what the run never reached.
        if let Some(seen) = seen {
            seen.store(run.ops, Ordering::SeqCst);
        }
        {
            let mut tally = shared.tally.lock().expect("tally");
            tally.sequences += 1;
            tally.ops += run.ops;
            if reruns > 0 {
                tally.race_reruns.0 += 1;
                tally.race_reruns.1 += reruns as usize;
            }
            for op in &ops[..run.ops] {
                *tally.op_kinds.entry(op_kind(op)).or_default() += 1;
            }
            for situation in &run.reached {
                *tally.reached.entry(situation).or_default() += 1;
            }
            // Exploring, not shrinking: the rate a user reads.
            tally.elapsed = tally.elapsed.max(start.elapsed());
        }
        let Some(failure) = run.failure else { continue };
        {
            let mut tally = shared.tally.lock().expect("tally");
            let number = tally.first_failure.map_or(index + 1, |n| n.min(index + 1));
            tally.first_failure = Some(number);
            let seen = tally.failures.entry(failure.kind()).or_default();
            *seen += 1;
            if *seen > 1 {
                continue;
            }
        }
        progress(&format!(
            "explore: sequence {seed:016x} ({} ops) failed at {}: {}; shrinking",
            ops.len(),
            failure.at,
            failure.message
        ));
        let first = (ran, ops, failure, run.transcript);
        let mut found = shrink(opts, seed, tree, first, cpu, progress);
        found.number = index + 1;
        let mut tally = shared.tally.lock().expect("tally");
        tally.found.push(found);
        if tally.found.len() >= opts.max_failures || opts.replay.is_some() {
            shared.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// How the `rerun`-th rerun (from 1) of a sequence that passed through a
/// race starts: every odd one with QEMU's monitor I/O thread first (see
/// [`Model::io_thread_first`]), every even one as the sequence says. The
/// race that loses a greeting needs the I/O thread to run between two
/// steps of the main loop, which one CPU alone gives in one run of five
/// to twenty (and two CPUs more rarely still); with the I/O thread first,
/// in every run. The other order is worth its runs too. Without
/// `io_first` (no real-time priority to give), each rerun is as the
/// sequence says.
pub fn rerun_start(initial: &Model, rerun: u32, io_first: bool) -> Model {
    if io_first && rerun % 2 == 1 {
        initial.io_thread_first()
    } else {
        initial.clone()
    }
}

/// proptest's shrink loop over the value tree: simplify while the run
/// still fails, step back when it passes. Every candidate runs with the
/// schedule the failing run had.
fn shrink(
    opts: &Options,
    seed: u64,
    mut tree: Tree,
    first: (Model, Vec<Op>, Failure, String),
    cpu: Option<usize>,
    progress: &(dyn Fn(&str) + Sync),
) -> Found {
    let original_len = first.1.len();
    let (initial, ops) = (&first.0, &first.1);
    let io_first = initial.io_first;
    let start = |initial: Model| match io_first {
        true => initial.io_thread_first(),
        false => initial,
    };
    // A failure that does not come back at once is a race: each smaller
    // candidate then gets a few runs before it counts as passing.
    let kind = first.2.kind();
    let fails = |initial: &Model, ops: &[Op]| {
        let run = exec::run(&opts.target, initial, ops, cpu);
        let failed = run.failure.as_ref().is_some_and(|f| f.kind() == kind);
        (failed, run)
    };
    let tries = if fails(initial, ops).0 {
        1
    } else {
        let tries = opts.race_reruns.max(2) + 1;
        progress(&format!(
            "explore: the failure did not repeat at once; shrinking with {tries} runs per candidate"
        ));
        tries
    };
    // What a run depends on: the sequence, and how QEMU runs and ends.
    let key = |initial: &Model, ops: &[Op]| {
        (initial.finish, initial.pinned, initial.io_first, ops.to_vec())
    };
    // proptest steps back to a candidate it tried before once a smaller
    // one passes; a race that failed there once is not asked again, or
    // one lucky pass would end the shrink on the first sequence.
    let mut failed_before = vec![key(initial, ops)];
    let mut best = first;
    let deadline = Instant::now() + opts.shrink_time;
    let mut runs = 1;
    let mut more = tree.simplify();
    while more && Instant::now() < deadline {
        let (initial, ops, _) = tree.current();
        let initial = start(initial);
        if failed_before.contains(&key(&initial, &ops)) {
            more = tree.simplify();
            continue;
        }
        let mut run = None;
        for _ in 0..tries {
            runs += 1;
            let (failed, this) = fails(&initial, &ops);
            run = Some(this);
            if failed {
                break;
            }
        }
        let run = run.expect("at least one try");
        match run.failure.filter(|f| f.kind() == kind) {
            Some(failure) => {
                if ops.len() < best.1.len() {
                    progress(&format!("explore: still fails with {} ops", ops.len()));
                }
                failed_before.push(key(&initial, &ops));
                best = (initial, ops, failure, run.transcript);
                more = tree.simplify();
            }
            None => more = tree.complicate(),
        }
    }
    let (initial, ops, failure, transcript) = best;
    let mut failed = 0;
    for _ in 0..opts.reruns {
        if fails(&initial, &ops).0 {
            failed += 1;
        }
    }
    Found {
        seed,
        number: 0,
        original_len,
        initial,
        ops,
        failure,
        transcript,
        shrink_runs: runs,
        reruns: (failed, opts.reruns),
    }
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // A seed only has to differ between runs; the clock is the fallback.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return nanos as u64;
    }
    u64::from_le_bytes(bytes)
}

impl Found {
    /// The shrunk sequence as numbered lines, with how the run ends.
    pub fn sequence(&self) -> String {
        let mut out = String::new();
        let pinned = match (self.initial.pinned, self.initial.io_first) {
            (_, true) => ", QEMU on one CPU, its monitor I/O thread first",
            (true, false) => ", QEMU on one CPU",
            (false, false) => "",
        };
        let _ = writeln!(out, "sequence {:016x}{pinned}:", self.seed);
        for (i, op) in self.ops.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {op}", i + 1);
        }
        let _ = writeln!(out, "  then: {}", self.initial.finish);
        out
    }
}

impl Summary {
    /// The lines a user reads: the rate, what was reached, what was found.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let mut out = format!(
            "explore: {} sequences, {} operations in {:.1}s ({:.1} sequences/s, {:.0} operations/s), seed {:016x}\n",
            self.sequences,
            self.ops,
            secs,
            self.sequences as f64 / secs,
            self.ops as f64 / secs,
            self.seed
        );
        let kinds: Vec<String> = self.op_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "operations: {}", kinds.join(", "));
        let reached: Vec<String> = self.reached.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let _ = writeln!(out, "situations reached (sequences): {}", reached.join("; "));
        if self.race_reruns.0 > 0 {
            let _ = writeln!(
                out,
                "run again for a race they passed through: {} sequences, {} more runs",
                self.race_reruns.0, self.race_reruns.1
            );
        }
        // A run without ptys reaches none of theirs: not worth a word.
        let ptys = self.reached.keys().any(|s| s.starts_with("pty:"));
        let unreached: Vec<&str> = SITUATIONS
            .iter()
            .copied()
            .filter(|s| !self.reached.contains_key(s))
            .filter(|s| ptys || !s.starts_with("pty:"))
            .collect();
        if !unreached.is_empty() {
            let _ = writeln!(out, "not reached: {}", unreached.join("; "));
        }
        let failures: Vec<String> =
            self.failures.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let failures = match self.first_failure {
            None => "none".to_string(),
            Some(n) => format!("{} (the first: sequence {n})", failures.join("; ")),
        };
        let _ = writeln!(out, "failed sequences by kind: {failures}");
        out
    }
}

/// Situations whose outcome hangs on which of QEMU's threads gets there
/// first: the orphan's end runs in the main loop while the new monitor's
/// I/O thread may already accept the waiting client. One run rarely loses
/// such a race, so a sequence that passes through one is run again.
pub const RACES: [&str; 2] = [
    "orphan ends a large reply behind, a client waiting for the new frontend",
    "new frontend removed while the orphan drains",
];

/// Every situation [`exec::situations`] names, for the "not reached" line.
pub const SITUATIONS: [&str; 26] = [
    "reply from an earlier connection delivered",
    "new frontend while the orphan's output is unread",
    "new frontend on an orphan with nothing unread",
    "new frontend removed while the orphan drains",
    "removal from another dynamic monitor",
    "removal through HMP",
    "self-removal",
    "self-removal with requests queued behind it",
    "self-removal behind pipelined requests",
    "self-removal through HMP",
    "client waiting behind an orphan",
    "client waiting behind a connection",
    "orphan ends with a client waiting for the new frontend",
    "orphan ends a large reply behind, a client waiting for the new frontend",
    "orphan closed by its client (TCP)",
    "orphan closed by its client (unix)",
    "chardev-remove under an orphan",
    "requests after self-removal",
    "oob negotiated",
    "slow reader",
    "pty: holder opens it",
    "pty: new frontend greets the holder",
    "pty: removal leaves the holder",
    "pty: self-removal",
    "pty: new frontend after a self-removal greets the holder",
    "pty: self-removed monitor's holder closes",
];
