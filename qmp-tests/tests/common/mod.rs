//! Shared by the integration tests that need a real QEMU.
#![allow(dead_code)] // each test binary uses a different part

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// Stock qemu-system-x86_64, without monitor-add.
pub const STOCK: &str = "QMP_TESTS_QEMU";
/// A qemu-system-x86_64 built with monitor-add.
pub const HOTPLUG: &str = "QMP_TESTS_QEMU_HOTPLUG";

/// The QEMU named by `var`. Unset is a failure, not a skip: these tests
/// run only when asked for (--include-ignored), and then a missing binary
/// must not look like a pass.
pub fn qemu(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!("{var} is not set: point it at a qemu-system-x86_64 binary to run this test"),
    }
}

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

use std::{
    fs::File,
    process::{Command, ExitStatus},
};

use qmp_tests::pidfd::PidFd;

/// The qmp-tests binary built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_qmp-tests");

pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs the binary with `args` and a private TMPDIR (`tmp`), within
/// `limit`; a run that overstays is killed and fails the test.
pub fn run_binary(args: &[&str], tmp: &std::path::Path, limit: Duration) -> Run {
    let out_dir = tempfile::tempdir().unwrap();
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env("TMPDIR", tmp)
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting qmp-tests");
    let pidfd = PidFd::open(child.id()).unwrap();
    if !pidfd.wait_exit(start + limit).unwrap() {
        let _ = child.kill();
        let _ = child.wait();
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        panic!("qmp-tests {args:?} ran longer than {limit:?}; stdout so far:\n{stdout}");
    }
    let status = child.wait().unwrap();
    Run {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap(),
        elapsed: start.elapsed(),
    }
}

/// Entries left in `dir`; a run must leave its TMPDIR as it found it.
pub fn leftovers(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect()
}
