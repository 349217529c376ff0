//! The whole suite against a QEMU that has dynamic monitors, and what a
//! killed runner leaves behind.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use qmp_tests::{pidfd::PidFd, route::Route, scenarios};

use common::{leftovers, qemu, run_binary, BIN, HOTPLUG};

#[test]
#[ignore = "needs a QEMU with monitor-add: set QMP_TESTS_QEMU_HOTPLUG and run with --include-ignored"]
fn every_scenario_passes() {
    let qemu = qemu(HOTPLUG);
    let tmp = tempfile::tempdir().unwrap();
    // The routes this QEMU must have come from the test, not from what
    // the suite prints: QMP_TESTS_ROUTES (commands,qom by default, what
    // the project's series has). Each is required, so a QEMU that lacks
    // one fails instead of passing with fewer scenarios.
    let routes = expected_routes();
    let mut args = vec!["--qemu".to_string(), qemu.to_str().unwrap().to_string()];
    for route in &routes {
        args.push("--require-route".into());
        args.push(route.name().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_binary(&args, tmp.path(), Duration::from_secs(600));
    // Without --qemu-src, what needs the tree's Python client is skipped;
    // cargo xtask test runs it with the tree.
    let settings = scenarios::Settings::default();
    let runs: Vec<_> = routes
        .iter()
        .flat_map(|route| {
            scenarios::all().iter().filter(move |scenario| scenario.routes.contains(route))
        })
        .collect();
    let skipped = runs.iter().filter(|scenario| scenario.skip_reason(&settings).is_some()).count();
    let passed = runs.len() - skipped;
    assert_eq!(run.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.lines().last(),
        Some(format!("{passed} passed, 0 failed, {skipped} skipped").as_str())
    );
    assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
}

/// QMP_TESTS_ROUTES, comma-separated route names; both routes if unset.
fn expected_routes() -> Vec<Route> {
    match std::env::var("QMP_TESTS_ROUTES") {
        Ok(text) if !text.trim().is_empty() => text
            .split(',')
            .map(|name| {
                Route::parse(name.trim())
                    .unwrap_or_else(|| panic!("QMP_TESTS_ROUTES: unknown route {name:?}"))
            })
            .collect(),
        _ => Route::ALL.to_vec(),
    }
}

/// What `--verbose` said the runner started.
struct Started {
    janitor: u32,
    qemu: u32,
    dir: PathBuf,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ').find_map(|word| word.strip_prefix(key))
}

fn wait_for_start(lines: &mpsc::Receiver<String>, deadline: Instant) -> Started {
    let mut janitor = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            lines.recv_timeout(left).expect("the runner printed no `start test_soak` line in time");
        if line.starts_with("janitor ") {
            janitor = field(&line, "pid=").map(|pid| pid.parse().unwrap());
        }
        if line.starts_with("start test_soak ") {
            return Started {
                janitor: janitor.expect("`janitor pid=` comes first"),
                qemu: field(&line, "pid=").unwrap().parse().unwrap(),
                dir: PathBuf::from(field(&line, "dir=").unwrap()),
            };
        }
    }
}

/// Starts the runner on a soak long enough to be interrupted, in its own
/// process group (as a shell would for a foreground job).
fn start_long_runner(qemu: &std::path::Path, tmp: &std::path::Path) -> std::process::Child {
    Command::new(BIN)
        .args(["--qemu", qemu.to_str().unwrap(), "--verbose", "--jobs", "1"])
        .args(["--scenario", "test_soak", "--soak", "100000"])
        .env("TMPDIR", tmp)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills the runner with `stop` once it has started QEMU, then checks
/// that QEMU and the janitor are gone and nothing is left in TMPDIR.
fn interrupt_and_check(stop: impl FnOnce(&mut std::process::Child), expected_signal: i32) {
    let qemu = qemu(HOTPLUG);
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = start_long_runner(&qemu, tmp.path());
    let stdout = runner.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = wait_for_start(&lines, Instant::now() + Duration::from_secs(60));
    assert!(started.dir.starts_with(tmp.path()), "{}", started.dir.display());
    assert!(started.dir.exists());
    // Opened before the kill, so they name these processes and no later
    // ones with the same pids.
    let qemu_pidfd = PidFd::open(started.qemu).unwrap();
    let janitor_pidfd = PidFd::open(started.janitor).unwrap();

    stop(&mut runner);
    let status = runner.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(expected_signal),
        "the runner must have been running when stopped, for this test to mean anything"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(qemu_pidfd.wait_exit(deadline).unwrap(), "QEMU {} survived the runner", started.qemu);
    assert!(
        janitor_pidfd.wait_exit(deadline).unwrap(),
        "the janitor {} did not finish",
        started.janitor
    );
    assert!(!started.dir.exists(), "{} left behind", started.dir.display());
    assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
}

#[test]
#[ignore = "needs a QEMU with monitor-add: set QMP_TESTS_QEMU_HOTPLUG and run with --include-ignored"]
fn a_killed_runner_leaves_no_qemu_and_no_files() {
    interrupt_and_check(|runner| runner.kill().unwrap(), libc::SIGKILL);
}

#[test]
#[ignore = "needs a QEMU with monitor-add: set QMP_TESTS_QEMU_HOTPLUG and run with --include-ignored"]
fn ctrl_c_of_the_runners_group_leaves_no_qemu_and_no_files() {
    // Ctrl-C signals the whole foreground group; the janitor, in a group
    // of its own and ignoring SIGINT, must survive it to clean up.
    let interrupt = |runner: &mut std::process::Child| {
        let group = rustix::process::Pid::from_child(runner);
        rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    };
    interrupt_and_check(interrupt, libc::SIGINT);
}
