//! The runner's handling of scenarios that fail, overrun or hang, with
//! throwaway scenarios on a stock QEMU.

mod common;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use qmp_tests::{
    janitor::Janitor,
    route::Route,
    runner::{self, RunConfig},
    scenarios::{Ctx, Scenario, Settings},
};
use rustix::process::{kill_process, Pid, Signal};

use common::{qemu, BIN, HOTPLUG, STOCK};

/// Held by the test while `test_stuck` must stay stuck.
static GATE: Mutex<()> = Mutex::new(());
/// The same for `test_stuck_qom`, whose test runs beside that one.
static QOM_GATE: Mutex<()> = Mutex::new(());

fn passes(ctx: &mut Ctx) -> Result<()> {
    ctx.main("query-status", serde_json::Value::Null)?;
    ctx.note("checked status");
    Ok(())
}

fn overruns(ctx: &mut Ctx) -> Result<()> {
    let deadline = ctx.scenario_deadline();
    ctx.machine.qmp().wait_event("NEVER", deadline)?;
    Ok(())
}

/// Ignores its deadline entirely, as a scenario with a bug might.
fn stuck(_: &mut Ctx) -> Result<()> {
    drop(GATE.lock());
    Ok(())
}

fn stuck_qom(_: &mut Ctx) -> Result<()> {
    drop(QOM_GATE.lock());
    Ok(())
}

fn panics(_: &mut Ctx) -> Result<()> {
    panic!("scenario bug");
}

/// Fails with its QEMU stopped (SIGSTOP): quit gets no reply and
/// SIGTERM does nothing, as with a QEMU that hangs on exit.
fn freezes_then_fails(ctx: &mut Ctx) -> Result<()> {
    let pid = ctx.machine.pid();
    // QEMU is our child and not reaped yet, so the pid is still its.
    let qemu = i32::try_from(pid).ok().and_then(Pid::from_raw);
    let qemu = qemu.with_context(|| format!("QEMU's pid {pid} is no process id"))?;
    kill_process(qemu, Signal::STOP).context("sending QEMU SIGSTOP")?;
    anyhow::bail!("the scenario's own failure")
}

static PASSES: Scenario = Scenario::new("test_passes", passes);
static OVERRUNS: Scenario = Scenario::new("test_overruns", overruns);
static STUCK: Scenario = Scenario::new("test_stuck", stuck);
static STUCK_QOM: Scenario = Scenario::new("test_stuck_qom", stuck_qom);
static PANICS: Scenario = Scenario::new("test_panics", panics);
static FREEZES: Scenario = Scenario::new("test_freezes", freezes_then_fails);

fn config() -> RunConfig {
    RunConfig {
        qemu: qemu(STOCK),
        jobs: 4,
        settings: Settings { timeout: Duration::from_secs(1), ..Settings::default() },
        log_dir: None,
        // The scenarios here use the main monitor only.
        routes: Vec::new(),
        // The stuck scenario's thread may still own its QEMU's directory
        // when this test process exits; the janitor removes it then.
        janitor: Some(Arc::new(Janitor::spawn(Path::new(BIN)).unwrap())),
        grace: Duration::from_secs(2),
        first: Vec::new(),
        fail_fast: false,
    }
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn failures_overruns_and_hangs_are_reported_not_waited_for() {
    let config = config();
    let gate = GATE.lock().unwrap();
    let start = Instant::now();
    let outcomes = runner::run(&config, &[&PASSES, &OVERRUNS, &STUCK, &PANICS], |_| {});
    let elapsed = start.elapsed();
    drop(gate);

    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["test_passes", "test_overruns", "test_stuck", "test_panics"]);
    let cause = |i: usize| outcomes[i].failure.as_ref().map(|f| f.cause.clone());

    assert!(outcomes[0].passed(), "{:?}", cause(0));
    assert_eq!(outcomes[0].notes, ["checked status"]);
    let overrun = cause(1).unwrap();
    assert!(overrun.contains("timed out awaiting event NEVER on main"), "{overrun}");
    assert!(outcomes[1].failure.as_ref().unwrap().transcript.contains("main ->"));
    let stuck = cause(2).unwrap();
    assert!(stuck.starts_with("timeout: test_stuck did not finish within 3s"), "{stuck}");
    let panicked = cause(3).unwrap();
    assert!(panicked.contains("panicked: scenario bug"), "{panicked}");
    // Deadline 1 s, grace 2 s, then 2 s more after the kill.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn fail_fast_stops_at_the_first_failure_and_skips_the_rest() {
    let mut config = config();
    config.jobs = 2;
    // Long enough that a run which waited for test_overruns would show.
    config.settings.timeout = Duration::from_secs(20);
    config.first =
        ["test_overruns", "test_panics"].map(|name| runner::Pick::parse(name).unwrap()).to_vec();
    config.fail_fast = true;
    let start = Instant::now();
    let outcomes = runner::run(&config, &[&PASSES, &OVERRUNS, &PANICS], |_| {});
    let elapsed = start.elapsed();

    let failed: Vec<&str> =
        outcomes.iter().filter(|o| o.failed()).map(|o| o.name.as_str()).collect();
    assert_eq!(failed, ["test_panics"]);
    // test_overruns was running (stopped), test_passes still waiting.
    for i in [0, 1] {
        let skipped = outcomes[i].skipped.as_deref().unwrap_or_default();
        assert!(
            skipped.contains("--fail-fast stopped at test_panics"),
            "{}: {skipped:?}",
            outcomes[i].name
        );
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn fail_fast_kills_the_failed_scenarios_qemu_without_waiting_for_quit() {
    let config = RunConfig { fail_fast: true, ..config() };
    let start = Instant::now();
    let outcomes = runner::run(&config, &[&FREEZES], |_| {});
    let elapsed = start.elapsed();
    let failure = outcomes[0].failure.as_ref().expect("test_freezes fails");
    // Its own cause alone: the kill is not a second failure.
    assert_eq!(failure.cause, "the scenario's own failure");
    assert!(
        failure.transcript.contains("--fail-fast stops at this failure"),
        "{}",
        failure.transcript
    );
    // A shutdown would wait out quit's 20 s and SIGTERM's 10 s.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU_HOTPLUG and run with --include-ignored"]
fn a_scenario_given_up_on_is_reported_on_its_route() {
    let config = RunConfig { qemu: qemu(HOTPLUG), routes: vec![Route::Qom], ..config() };
    let gate = QOM_GATE.lock().unwrap();
    let outcomes = runner::run(&config, &[&STUCK_QOM], |_| {});
    drop(gate);
    let cause = outcomes[0].failure.as_ref().map(|failure| failure.cause.as_str());
    assert!(cause.is_some_and(|c| c.starts_with("timeout: test_stuck_qom")), "{cause:?}");
    assert_eq!(outcomes[0].route, Route::Qom);
}
