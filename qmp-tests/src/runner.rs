//! Runs scenarios in parallel, each on its own thread with its own QEMU,
//! and turns whatever happens into an [`Outcome`].
//!
//! A scenario bounds its own waits by its deadline. Should it still not
//! finish (a bug of ours, or a wait we did not bound), the runner kills its
//! QEMU, which makes every pending read fail at once, and if even that
//! does not end the thread, reports the scenario and moves on without it.

use std::{
    collections::{HashMap, VecDeque},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use crate::{
    deadline::remaining,
    janitor::Janitor,
    machine::{Killer, LaunchOptions, Machine, StoppedBy},
    outcome::{Failure, Outcome},
    phases,
    probe::{self, Capabilities},
    qmp::{QmpError, Transcript},
    route::Route,
    sanitizer,
    scenarios::{Ctx, Scenario, Settings},
    text::{clean, one_line, tail_lines},
};

/// Past the scenario's deadline: time for its own timeout to surface and
/// for QEMU to be shut down (quit, SIGTERM, SIGKILL) and reaped.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(45);
const TRANSCRIPT_ENTRIES: usize = 60;
const STDERR_LINES: usize = 40;

#[derive(Clone)]
pub struct RunConfig {
    pub qemu: PathBuf,
    /// Scenarios running at once.
    pub jobs: usize,
    pub settings: Settings,
    /// Keep each scenario's QEMU stderr as `DIR/NAME.ROUTE.stderr.log`.
    pub log_dir: Option<PathBuf>,
    pub janitor: Option<Arc<Janitor>>,
    /// Each scenario runs once per route listed here that the QEMU has.
    /// Empty: the scenarios need no dynamic monitors; each runs once
    /// (as the commands route) whatever the QEMU has.
    pub routes: Vec<Route>,
    /// How long past its deadline a scenario may take before the runner
    /// kills its QEMU, and again before the runner stops waiting for it.
    pub grace: Duration,
    /// These start first, in this order; the rest follow in the usual
    /// order (long scenarios first).
    pub first: Vec<Pick>,
    /// Once a scenario fails, nothing more starts and the scenarios still
    /// running are stopped (their QEMU killed); both are reported skipped,
    /// naming the failure that stopped the run.
    pub fail_fast: bool,
}

/// What the runner reports as it goes.
pub enum Progress<'a> {
    Started {
        name: &'a str,
        pid: u32,
        dir: &'a Path,
        /// What the scenario's QEMU said it has, asked before the
        /// scenario runs.
        caps: &'a Capabilities,
    },
    Finished(&'a Outcome),
}

enum Message {
    Started { index: usize, killer: Killer, dir: PathBuf, caps: Capabilities },
    Finished { index: usize, outcome: Outcome },
}

struct Running {
    name: &'static str,
    started: Instant,
    deadline: Instant,
    killer: Option<Killer>,
    killed_at: Option<Instant>,
    route: Route,
    /// Stopped because another scenario failed: its outcome is reported
    /// skipped, whatever the kill made of it.
    stopped: bool,
}

impl Running {
    /// When the runner must next act on this scenario if it stays silent.
    fn next_action(&self, grace: Duration) -> Instant {
        match self.killed_at {
            Some(at) => at + grace,
            None => self.deadline,
        }
    }
}

/// A scenario on one route, or on each of its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub scenario: String,
    pub route: Option<Route>,
}

impl Pick {
    /// `NAME` (every route of the scenario) or `NAME/ROUTE`.
    pub fn parse(text: &str) -> Result<Pick, String> {
        let (scenario, route) = match text.split_once('/') {
            Some((name, route)) => match Route::parse(route) {
                Some(route) => (name, Some(route)),
                None => return Err(format!("{text:?}: the route after '/' is commands or qom")),
            },
            None => (text, None),
        };
        Ok(Pick { scenario: scenario.to_owned(), route })
    }

    fn matches(&self, job: &Job) -> bool {
        self.scenario == job.scenario.name && self.route.is_none_or(|route| route == job.route)
    }
}

/// Runs each of `scenarios` through each of `config.routes`, at most
/// `config.jobs` at a time, starting the runs `config.first` names first,
/// and with `config.fail_fast` ending at the first failure; outcomes come
/// back route by route, each in the order given.
///
/// The first QEMU is asked what it has before any other starts: a route
/// it lacks is then not started at all (reported skipped), and a QEMU
/// with none of the routes fails everything after one start.
pub fn run(
    config: &RunConfig,
    scenarios: &[&'static Scenario],
    progress: impl FnMut(Progress<'_>),
) -> Vec<Outcome> {
    let (tx, rx) = mpsc::channel();
    let routes = if config.routes.is_empty() { &[Route::Commands][..] } else { &config.routes[..] };
    // With no routes asked for, every scenario runs once, whatever it is for.
    let any_route = config.routes.is_empty();
    let jobs: Vec<Job> = routes
        .iter()
        .flat_map(|&route| {
            scenarios
                .iter()
                .filter(move |scenario| any_route || scenario.routes.contains(&route))
                .map(move |&scenario| Job { scenario, route })
        })
        .collect();
    let mut supervisor = Supervisor {
        config,
        tx,
        queue: start_order(&jobs, &config.first),
        stopped_by: None,
        running: HashMap::new(),
        outcomes: vec![None; jobs.len()],
        caps: None,
        progress,
    };
    loop {
        supervisor.start_ready();
        let Some(next) = supervisor.next_action() else {
            break;
        };
        match rx.recv_timeout(remaining(next).unwrap_or_default()) {
            Ok(message) => supervisor.handle(message),
            Err(mpsc::RecvTimeoutError::Timeout) => supervisor.act_on_overdue(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                unreachable!("the supervisor holds a sender")
            }
        }
    }
    supervisor.outcomes.into_iter().map(|outcome| outcome.expect("every scenario ends")).collect()
}

/// One scenario through one route.
#[derive(Clone, Copy)]
struct Job {
    scenario: &'static Scenario,
    route: Route,
}

/// The runs picked first, in their order; then the long scenarios, so
/// that the short ones fill the other jobs meanwhile instead of the long
/// one ending the run alone.
fn start_order(jobs: &[Job], first: &[Pick]) -> VecDeque<(usize, Job)> {
    let mut order: Vec<_> = jobs.iter().copied().enumerate().collect();
    order.sort_by_key(|(_, job)| {
        let picked = first.iter().position(|pick| pick.matches(job));
        (picked.unwrap_or(usize::MAX), !job.scenario.long)
    });
    order.into()
}

/// The runner's bookkeeping: what waits, what runs, what has ended.
struct Supervisor<'a, P> {
    config: &'a RunConfig,
    tx: mpsc::Sender<Message>,
    queue: VecDeque<(usize, Job)>,
    /// The run whose failure stopped the others (`--fail-fast`).
    stopped_by: Option<String>,
    running: HashMap<usize, Running>,
    outcomes: Vec<Option<Outcome>>,
    /// What the first QEMU that answered has.
    caps: Option<Capabilities>,
    progress: P,
}

impl<P: FnMut(Progress<'_>)> Supervisor<'_, P> {
    fn start_ready(&mut self) {
        while self.running.len() < self.config.jobs.max(1) {
            let Some((index, Job { scenario, route })) = self.next_job() else {
                return;
            };
            if let Some(reason) = scenario.skip_reason(&self.config.settings) {
                self.finish(index, Outcome::skipped(scenario.name, &reason).on(route));
                continue;
            }
            let started = Instant::now();
            let (config, tx) = (self.config.clone(), self.tx.clone());
            let spawned = thread::Builder::new().name(scenario.name.to_string()).spawn(move || {
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    run_one(&config, scenario, route, index, &tx)
                }))
                .unwrap_or_else(|panic| {
                    let cause = format!("the harness panicked: {}", panic_message(&panic));
                    harness_failure(scenario.name, route, cause)
                });
                let _ = tx.send(Message::Finished { index, outcome });
            });
            if let Err(err) = spawned {
                let cause = format!("could not start a thread: {err}");
                self.finish(index, harness_failure(scenario.name, route, cause));
                continue;
            }
            let entry = Running {
                name: scenario.name,
                started,
                deadline: started + scenario.timeout(&self.config.settings) + self.config.grace,
                killer: None,
                killed_at: None,
                route,
                stopped: false,
            };
            self.running.insert(index, entry);
        }
    }

    fn next_action(&self) -> Option<Instant> {
        let grace = self.config.grace;
        self.running.values().map(|r| r.next_action(grace)).min()
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Started { index, killer, dir, caps } => {
                let Some(entry) = self.running.get_mut(&index) else {
                    return;
                };
                let (name, pid) = (entry.name, killer.pid());
                if entry.stopped {
                    killer.kill();
                }
                entry.killer = Some(killer);
                if self.caps.is_none() {
                    self.settle_queue(&caps);
                }
                (self.progress)(Progress::Started { name, pid, dir: &dir, caps: &caps });
            }
            Message::Finished { index, mut outcome } => {
                // A report from a thread we already gave up on is dropped.
                let Some(entry) = self.running.remove(&index) else {
                    return;
                };
                if entry.stopped {
                    let outcome = self.stopped(entry.name, entry.route, entry.started.elapsed());
                    self.finish(index, outcome);
                    return;
                }
                if entry.killed_at.is_some() {
                    let failure = outcome.failure.get_or_insert_with(Failure::default);
                    let mut cause = format!("{} (QEMU killed)", timeout_cause(&entry));
                    if !failure.cause.is_empty() {
                        cause = format!("{cause}; {}", failure.cause);
                    }
                    failure.cause = cause;
                }
                self.finish(index, outcome);
            }
        }
    }

    /// First kill the overdue scenario's QEMU, which fails its pending
    /// reads; if its thread still does not report, give up on it.
    fn act_on_overdue(&mut self) {
        let now = Instant::now();
        let grace = self.config.grace;
        let overdue: Vec<usize> = self
            .running
            .iter()
            .filter(|(_, entry)| entry.next_action(grace) <= now)
            .map(|(&index, _)| index)
            .collect();
        for index in overdue {
            let entry = self.running.get_mut(&index).expect("overdue is running");
            if entry.killed_at.is_none() {
                if let Some(killer) = &entry.killer {
                    killer.kill();
                }
                entry.killed_at = Some(now);
                continue;
            }
            let entry = self.running.remove(&index).expect("overdue is running");
            let duration = entry.started.elapsed();
            let outcome = match entry.stopped {
                true => self.stopped(entry.name, entry.route, duration),
                false => Outcome {
                    duration,
                    ..harness_failure(entry.name, entry.route, timeout_cause(&entry))
                },
            };
            self.finish(index, outcome);
        }
    }

    /// The next job to start. Until a QEMU has said what it has, only
    /// jobs of the first job's route start: were it missing, they all
    /// fail at once with the same cause, while the other routes are then
    /// known before they cost a QEMU.
    fn next_job(&mut self) -> Option<(usize, Job)> {
        if self.caps.is_some() || self.config.routes.is_empty() {
            return self.queue.pop_front();
        }
        let first = match self.running.values().next() {
            Some(entry) => entry.route,
            None => self.queue.front()?.1.route,
        };
        match self.queue.iter().position(|(_, job)| job.route == first) {
            Some(position) => self.queue.remove(position),
            // No QEMU has answered yet, and none is running to: go on with
            // what is left rather than wait for nothing.
            None if self.running.is_empty() => self.queue.pop_front(),
            None => None,
        }
    }

    /// Once the first QEMU has answered: what it lacks is not started.
    fn settle_queue(&mut self, caps: &Capabilities) {
        self.caps = Some(caps.clone());
        if self.config.routes.is_empty() {
            return;
        }
        let refusal = caps.refusal(&self.config.qemu, &self.config.routes);
        let queue = std::mem::take(&mut self.queue);
        for (index, Job { scenario, route }) in queue {
            match &refusal {
                Some(refusal) => {
                    self.finish(index, harness_failure(scenario.name, route, refusal.clone()))
                }
                None if !caps.has(route) => self.finish(index, absent(scenario.name, route)),
                None => self.queue.push_back((index, Job { scenario, route })),
            }
        }
    }

    fn finish(&mut self, index: usize, outcome: Outcome) {
        let stops = self.config.fail_fast && outcome.failed() && self.stopped_by.is_none();
        if stops {
            self.stopped_by = Some(outcome.display_name());
        }
        (self.progress)(Progress::Finished(&outcome));
        self.outcomes[index] = Some(outcome);
        if stops {
            self.stop_the_rest();
        }
    }

    /// `--fail-fast`: what waits is not started, what runs is stopped.
    fn stop_the_rest(&mut self) {
        for (index, job) in std::mem::take(&mut self.queue) {
            let outcome = self.stopped(job.scenario.name, job.route, Duration::ZERO);
            self.finish(index, outcome);
        }
        for entry in self.running.values_mut() {
            entry.stopped = true;
            if let Some(killer) = &entry.killer {
                killer.kill();
            }
        }
    }

    /// A run that `--fail-fast` did not start or stopped.
    fn stopped(&self, name: &str, route: Route, duration: Duration) -> Outcome {
        let by = self.stopped_by.as_deref().unwrap_or("a failure");
        let outcome = Outcome::skipped(name, &format!("not run: --fail-fast stopped at {by}"));
        Outcome { duration, ..outcome.on(route) }
    }
}

fn timeout_cause(entry: &Running) -> String {
    let allowed = entry.deadline.duration_since(entry.started);
    format!("timeout: {} did not finish within {}s", entry.name, allowed.as_secs())
}

fn harness_failure(name: &str, route: Route, cause: String) -> Outcome {
    Outcome::failing(name, Failure { cause, ..Failure::default() }).on(route)
}

/// A route this QEMU does not have: not run.
fn absent(name: &str, route: Route) -> Outcome {
    Outcome::skipped(name, &format!("this QEMU has {}", route.lacking())).on(route)
}

/// The scenario thread: launch, run, shut down, inspect. With
/// `config.fail_fast`, a scenario that failed ends the run: its QEMU is
/// killed like the other running scenarios' rather than shut down.
fn run_one(
    config: &RunConfig,
    scenario: &'static Scenario,
    route: Route,
    index: usize,
    tx: &mpsc::Sender<Message>,
) -> Outcome {
    let started = Instant::now();
    let transcript = Transcript::new();
    let machine = match start(config, scenario, (route, index), tx, started, &transcript) {
        Ok(machine) => machine,
        Err(outcome) => return *outcome,
    };

    let deadline = started + scenario.timeout(&config.settings);
    let mut ctx = Ctx::new(machine, deadline, config.settings.clone(), transcript.clone(), route);
    let result = panic::catch_unwind(AssertUnwindSafe(|| scenario.run(&mut ctx)));
    let mut problems = Vec::new();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) if timed_out(&err) => problems.push(format!(
            "{err:#} (each wait may take {:.1}s; --wait changes it)",
            ctx.wait_limit().as_secs_f64()
        )),
        Ok(Err(err)) => problems.push(format!("{err:#}")),
        Err(panic) => problems.push(format!("panicked: {}", panic_message(&panic))),
    }
    // The verdict is known: a QEMU that hangs on quit (the bug some
    // scenarios catch) would otherwise cost quit's and SIGTERM's windows.
    let killed = config.fail_fast && !problems.is_empty();
    let (stderr, report) = shut_down(&mut ctx, &transcript, &mut problems, killed);

    let failure = (!problems.is_empty()).then(|| Failure {
        cause: clean(&one_line(&problems.join("; "))),
        transcript: transcript.tail(TRANSCRIPT_ENTRIES),
        stderr_tail: clean(tail_lines(&stderr, STDERR_LINES)),
        sanitizer: report.map(|r| clean(&r.excerpt)),
        log: config.log_dir.as_ref().map(|_| ctx.machine.log_path().to_path_buf()),
    });
    let (duration, notes, phases) =
        (started.elapsed(), ctx.take_notes(), phases::phases(&transcript));
    let outcome =
        Outcome { duration, notes, phases, failure, route, ..Outcome::new(scenario.name) };
    // Dropped before reporting, so that when the runner hears of the
    // outcome, this QEMU and its directory are gone.
    drop(ctx);
    outcome
}

/// Launches the scenario's QEMU and asks it what it has, telling the
/// runner; the machine, or the outcome of a scenario that cannot run
/// (boxed: an outcome is large).
fn start(
    config: &RunConfig,
    scenario: &'static Scenario,
    (route, index): (Route, usize),
    tx: &mpsc::Sender<Message>,
    started: Instant,
    transcript: &Transcript,
) -> Result<Machine, Box<Outcome>> {
    let program = config.settings.program;
    let opts = LaunchOptions {
        // One log per scenario and route: the routes' runs must not share
        // a file (--log-dir).
        name: format!("{}.{}", scenario.name, route.name()),
        extra_args: scenario.extra_args.iter().map(|arg| program.spell(arg).into()).collect(),
        log_dir: config.log_dir.clone(),
        janitor: config.janitor.clone(),
        transcript: transcript.clone(),
        start_timeout: config.settings.timeout,
        command_timeout: config.settings.timeout,
        cpu: None,
        program,
    };
    // A scenario that failed before it ran, with what its QEMU said so far.
    let fail = |cause: String| {
        let mut outcome = harness_failure(scenario.name, route, cause);
        outcome.duration = started.elapsed();
        if let Some(failure) = &mut outcome.failure {
            failure.transcript = transcript.tail(TRANSCRIPT_ENTRIES);
        }
        Box::new(outcome)
    };
    // Launched here, not by the runner, because QEMU's PDEATHSIG follows
    // the launching thread.
    let mut machine = Machine::launch(&config.qemu, &opts)
        .map_err(|err| fail(one_line(&format!("QEMU did not start: {err:#}"))))?;
    let caps = probe::check(&mut machine)
        .map_err(|err| fail(one_line(&format!("asking QEMU what it has: {err:#}"))))?;
    let lacks_route = !config.routes.is_empty() && !caps.has(route);
    let refusal = caps.refusal(&config.qemu, &config.routes);
    let (killer, dir) = (machine.killer(), machine.dir().to_path_buf());
    let _ = tx.send(Message::Started { index, killer, dir, caps });
    match lacks_route {
        // With none of the routes there is nothing to run: the caller
        // reports every scenario with the refusal.
        true => Err(refusal.map_or_else(|| Box::new(absent(scenario.name, route)), fail)),
        false => Ok(machine),
    }
}

/// Shuts the scenario's QEMU down, or with `kill` kills it at once,
/// adding to `problems` an unclean end (the kill itself is none) and a
/// sanitizer's report; QEMU's stderr and that report.
fn shut_down(
    ctx: &mut Ctx,
    transcript: &Transcript,
    problems: &mut Vec<String>,
    kill: bool,
) -> (String, Option<sanitizer::Report>) {
    let shutdown = match kill {
        true => {
            transcript.note("harness", "killing QEMU: --fail-fast stops at this failure");
            ctx.machine.kill()
        }
        false => ctx.machine.shutdown(),
    };
    transcript.note("harness", phases::REAPED);
    match shutdown {
        Ok(shutdown) if shutdown.clean() => {}
        Ok(shutdown) if kill && shutdown.stopped_by == StoppedBy::Sigkill => {}
        Ok(shutdown) => problems.push(format!("QEMU ended with {shutdown}")),
        Err(err) => problems.push(format!("{err:#}")),
    }
    let stderr = ctx.machine.stderr().unwrap_or_else(|err| format!("({err:#})"));
    let report = sanitizer::find_report(&stderr);
    if let Some(report) = &report {
        problems.push(format!("sanitizer report in QEMU's stderr: {}", report.headline));
    }
    (stderr, report)
}

/// Whether a wait for a reply or an event ran out of time.
fn timed_out(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|cause| matches!(cause.downcast_ref::<QmpError>(), Some(QmpError::Timeout { .. })))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    let text = panic.downcast_ref::<String>().map(String::as_str);
    text.or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two short scenarios and a long one of the suite.
    fn jobs() -> Vec<Job> {
        let scenarios = ["test_greeting", "test_many", "test_soak"]
            .map(|name| crate::scenarios::find(name).expect("a scenario of the suite"));
        assert!(scenarios[2].long && !scenarios[0].long && !scenarios[1].long);
        Route::ALL
            .iter()
            .flat_map(|&route| scenarios.map(|scenario| Job { scenario, route }))
            .collect()
    }

    fn order(first: &[&str]) -> Vec<String> {
        let picks: Vec<Pick> = first.iter().map(|p| Pick::parse(p).unwrap()).collect();
        start_order(&jobs(), &picks)
            .into_iter()
            .map(|(_, job)| format!("{}/{}", job.scenario.name, job.route))
            .collect()
    }

    #[test]
    fn without_picks_the_long_scenarios_start_first() {
        assert_eq!(
            order(&[]),
            [
                "test_soak/commands",
                "test_soak/qom",
                "test_greeting/commands",
                "test_many/commands",
                "test_greeting/qom",
                "test_many/qom"
            ]
        );
    }

    #[test]
    fn picks_start_first_in_their_order_then_the_usual_order() {
        assert_eq!(
            order(&["test_many/qom", "test_greeting"]),
            [
                "test_many/qom",
                "test_greeting/commands",
                "test_greeting/qom",
                "test_soak/commands",
                "test_soak/qom",
                "test_many/commands"
            ]
        );
    }

    #[test]
    fn a_pick_names_a_scenario_and_maybe_a_route() {
        assert_eq!(
            Pick::parse("test_greeting/qom"),
            Ok(Pick { scenario: "test_greeting".into(), route: Some(Route::Qom) })
        );
        assert_eq!(Pick::parse("test_greeting").unwrap().route, None);
        assert!(Pick::parse("test_greeting/both").unwrap_err().contains("commands or qom"));
    }
}
