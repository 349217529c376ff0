//! The QMP client and the launcher against a stock QEMU.

mod common;

use std::{path::Path, time::Instant};

use qmp_tests::{
    machine::{Exit, StoppedBy},
    pidfd::PidFd,
    LaunchOptions, Machine, Qmp,
};
use serde_json::Value;

use common::{qemu, soon, STOCK};

fn launch() -> Machine {
    Machine::launch(&qemu(STOCK), &LaunchOptions::default()).expect("launching QEMU")
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn greeting_version_and_a_large_schema() {
    let mut machine = launch();
    let greeting = machine.qmp().greeting().clone();
    assert!(greeting["QMP"]["version"]["qemu"]["major"].is_u64(), "{greeting}");
    assert!(machine.qmp().offers("oob"), "a socket monitor offers oob: {greeting}");
    let version = machine.cmd("query-version", Value::Null).unwrap();
    assert_eq!(version["qemu"], greeting["QMP"]["version"]["qemu"]);

    let raw = machine.qmp().execute_raw("query-qmp-schema", Value::Null, soon()).unwrap();
    assert!(raw.len() > 100_000, "schema reply is only {} bytes", raw.len());
    let parsed = machine.cmd("query-qmp-schema", Value::Null).unwrap();
    let reply: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(reply["return"], parsed);
    assert!(machine.shutdown().unwrap().clean());
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn a_socket_nobody_serves_times_out_instead_of_hanging() {
    let mut machine = launch();
    let path = machine.socket_path("extra.sock").unwrap();
    let args = serde_json::json!({
        "id": "extra",
        "backend": { "type": "socket", "data": {
            "addr": { "type": "unix", "data": { "path": path.to_str().unwrap() } },
            "server": true, "wait": false,
        }},
    });
    machine.cmd("chardev-add", args).unwrap();
    // Stock QEMU cannot attach a monitor at run time, so the client only
    // sees a socket that nobody talks on: the read must time out, not hang.
    let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let deadline = Instant::now() + std::time::Duration::from_millis(300);
    let err = Qmp::from_stream(stream, "extra", Default::default(), deadline).err();
    assert!(matches!(err, Some(qmp_tests::QmpError::Timeout { .. })), "{err:?}");
    assert!(machine.shutdown().unwrap().clean());
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn quit_exits_zero_and_leaves_nothing() {
    let mut machine = launch();
    let dir = machine.dir().to_path_buf();
    let pidfd = PidFd::open(machine.pid()).unwrap();
    let shutdown = machine.shutdown().unwrap();
    assert_eq!(shutdown.exit, Exit::Code(0));
    assert_eq!(shutdown.stopped_by, StoppedBy::Quit);
    assert!(pidfd.wait_exit(Instant::now()).unwrap());
    drop(machine);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn terminate_stops_qemu_with_sigterm() {
    let mut machine = launch();
    let shutdown = machine.terminate().unwrap();
    assert_eq!(shutdown.stopped_by, StoppedBy::Sigterm);
    // QEMU turns SIGTERM into an orderly shutdown.
    assert_eq!(shutdown.exit, Exit::Code(0), "{shutdown}");
    let stderr = machine.stderr().unwrap();
    assert!(stderr.contains("terminating on signal 15"), "{stderr}");
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn drop_kills_qemu_and_removes_its_dir() {
    let machine = launch();
    let dir = machine.dir().to_path_buf();
    assert!(dir.join("main.sock").exists());
    let pidfd = PidFd::open(machine.pid()).unwrap();
    drop(machine);
    assert!(pidfd.wait_exit(soon()).unwrap(), "QEMU survived drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn a_machine_launched_in_a_finished_thread_is_killed() {
    // PR_SET_PDEATHSIG fires when the launching thread exits; leak the
    // machine so only that mechanism can stop QEMU.
    let qemu = qemu(STOCK);
    let (pid, dir) = std::thread::spawn(move || {
        let machine = Machine::launch(&qemu, &LaunchOptions::default()).unwrap();
        let found = (machine.pid(), machine.dir().to_path_buf());
        std::mem::forget(machine);
        found
    })
    .join()
    .unwrap();
    if let Ok(pidfd) = PidFd::open(pid) {
        assert!(pidfd.wait_exit(soon()).unwrap(), "QEMU outlived its thread");
    }
    // The forgotten machine could not remove its own directory.
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let err = Machine::launch(Path::new("/nonexistent/qemu"), &LaunchOptions::default())
        .err()
        .expect("launch must fail");
    assert!(format!("{err:#}").contains("/nonexistent/qemu"), "{err:#}");
}

#[test]
fn a_program_that_is_not_qemu_is_reported_with_its_exit_status() {
    let err = Machine::launch(Path::new("/bin/true"), &LaunchOptions::default())
        .err()
        .expect("launch must fail");
    let text = format!("{err:#}");
    assert!(text.contains("did not start as QEMU"), "{text}");
    assert!(text.contains("exit status 0"), "{text}");
}
