//! What the xtask's integration tests share: a stand-in QEMU tree, the
//! xtask binary in a private cache, git.
//!
//! The stand-in has real git, real ninja and a configure script that writes
//! a build.ninja whose one rule is chosen by the test (copy a real QEMU
//! binary, fail, or block until interrupted).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LIST: &str = "# SPDX-License-Identifier: GPL-2.0-or-later\n\ntests_generic_system = [\n  'empty_cpu_model',\n  'info_usernet',\n  'version',\n  'vnc',\n]\n\ntests_generic_linuxuser = [\n]\n";

pub const CONFIGURE: &str = r#"#!/bin/sh
# Stand-in for QEMU's configure: one build rule, taken from FAKE_BUILD.
cat > build.ninja <<EOF
rule make
  command = $FAKE_BUILD
build qemu-system-x86_64: make
EOF
"#;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub tree: PathBuf,
    pub cache: PathBuf,
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A stand-in QEMU tree, committed to git when `git_repo`.
pub fn fixture(git_repo: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("qemu");
    write(&tree.join("VERSION"), "10.2.50\n");
    write(&tree.join("meson.build"), "project('qemu')\n");
    write(&tree.join("qapi/qapi-schema.json"), "{}\n");
    write(
        &tree.join("pythondeps.toml"),
        "[meson]\nmeson = { accepted = \">=1.5.0\", installed = \"1.9.0\", canary = \"meson\" }\n",
    );
    write(&tree.join("tests/functional/generic/meson.build"), LIST);
    write(&tree.join("tests/functional/meson.build"), "subdir('generic')\n");
    write(&tree.join("configure"), CONFIGURE);
    let mut perm = std::fs::metadata(tree.join("configure")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(tree.join("configure"), perm).unwrap();
    if git_repo {
        git(&tree, &["init", "-q"]);
        git(&tree, &["add", "-A"]);
        git(&tree, &["commit", "-q", "-m", "stand-in tree"]);
    }
    let cache = dir.path().join("cache");
    Fixture { _dir: dir, tree, cache }
}

pub fn xtask(fx: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args).env("XTASK_QEMU_CACHE", &fx.cache).env_remove("QEMU_SRC").stdin(Stdio::null());
    if std::env::var_os("QMP_TESTS_BIN").is_none() {
        // Wiring only records this path; the tests that run the suite get
        // the real binary from the project's test command.
        cmd.env("QMP_TESTS_BIN", "/bin/false");
    }
    cmd
}

pub fn run(cmd: &mut Command) -> (i32, String) {
    let Output { status, stderr, .. } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stderr).into_owned())
}

pub fn status(tree: &Path) -> String {
    git(tree, &["status", "--porcelain", "--untracked-files=all"])
}

pub fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A release tarball of the stand-in tree and a pin that points at it.
pub fn tarball_pin(fx: &Fixture) -> (PathBuf, String) {
    let dir = fx.cache.parent().unwrap().join("release");
    std::fs::create_dir_all(&dir).unwrap();
    let tarball = dir.join("qemu-10.2.50.tar.xz");
    let parent = fx.tree.parent().unwrap();
    let ok = Command::new("tar")
        .arg("-cJf")
        .arg(&tarball)
        .arg("-C")
        .arg(parent)
        .arg("qemu")
        .status()
        .unwrap();
    assert!(ok.success());
    let sum = Command::new("sha256sum").arg(&tarball).output().unwrap();
    let sha = String::from_utf8(sum.stdout).unwrap().split_whitespace().next().unwrap().to_owned();
    let pin = dir.join("pin.json");
    let json = serde_json::json!({
        "version": "10.2.50",
        "sources": {"tarball": {"url": format!("file://{}", tarball.display()), "sha256": null}}
    });
    write(&pin, &json.to_string());
    (pin, sha)
}

/// A one-patch series that applies to the stand-in tree.
pub const BUMP: &[u8] = b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
From: T <t@t.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
Subject: [PATCH] version: bump\n\n---\n\
diff --git a/VERSION b/VERSION\n--- a/VERSION\n+++ b/VERSION\n@@ -1 +1 @@\n\
-10.2.50\n+10.2.51\n--\n2.0\n\n";

/// A `cargo xtask test` on the stand-in tree whose build has started and
/// blocks until something ends it.
pub struct Blocked {
    pub child: std::process::Child,
    stderr: std::thread::JoinHandle<String>,
}

impl Blocked {
    /// Starts the run in a process group of its own, as a shell would, and
    /// returns once the build has said it started (through a FIFO: nothing
    /// here waits by sleeping). `wait_for` is a line of stderr to see
    /// first, when not the start of the build.
    pub fn start(fx: &Fixture, name: &str) -> Blocked {
        Blocked::start_args(fx, name, &["test", "--qemu-src", fx.tree.to_str().unwrap()])
    }

    /// [`Blocked::start`] for any command that builds.
    pub fn start_args(fx: &Fixture, name: &str, args: &[&str]) -> Blocked {
        Blocked::start_env(fx, name, args, &[])
    }

    /// [`Blocked::start_args`] with more environment for the xtask.
    pub fn start_env(fx: &Fixture, name: &str, args: &[&str], env: &[(&str, &Path)]) -> Blocked {
        use std::io::{BufRead, BufReader};
        let fifo = fx.cache.parent().unwrap().join(name);
        let (fifo_type, mode) = (rustix::fs::FileType::Fifo, rustix::fs::Mode::from(0o600));
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, fifo_type, mode, 0).unwrap();
        let mut cmd = xtask(fx, args);
        cmd.envs(env.iter().copied());
        cmd.env("FAKE_BUILD", format!("echo started > {}; exec sleep 600", fifo.display()))
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n")
        });
        // Opening the FIFO blocks until the build writes to it; a deadline
        // keeps a build that never starts from hanging the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::read_to_string(fifo).unwrap_or_default());
        });
        let started = rx.recv_timeout(std::time::Duration::from_secs(300));
        let blocked = Blocked { child, stderr };
        if started.as_deref().map(str::trim) != Ok("started") {
            let (code, seen) = blocked.kill_and_wait(libc::SIGKILL);
            panic!("the build never started ({code:?}): {seen}");
        }
        blocked
    }

    /// Sends `signal` to the xtask alone, or to its whole group when
    /// `group`; returns the exit code and all of stderr.
    pub fn signal(mut self, signal: i32, group: bool) -> (Option<i32>, String) {
        let pid = self.child.id() as i32;
        send_signal(if group { -pid } else { pid }, signal);
        let code = self.child.wait().unwrap().code();
        (code, self.stderr.join().unwrap())
    }

    /// Waits for the xtask to exit; its exit code and all of stderr (read
    /// to its end: every process that holds it has exited).
    pub fn wait(mut self) -> (Option<i32>, String) {
        let code = self.child.wait().unwrap().code();
        (code, self.stderr.join().unwrap())
    }

    fn kill_and_wait(self, signal: i32) -> (Option<i32>, String) {
        self.signal(signal, true)
    }

    /// kill -9 of the xtask's whole group: the build's processes die with
    /// it, as they do when a terminal closes on them.
    pub fn kill9(self) -> String {
        self.kill_and_wait(libc::SIGKILL).1
    }
}

/// Processes whose command line mentions `path`, e.g. a ninja building in
/// a fixture's cache.
pub fn processes_mentioning(path: &std::path::Path) -> Vec<i32> {
    let needle = path.to_str().unwrap().as_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Waits for `pid` to exit, up to `secs`: poll(2) on a pidfd, no sleeping.
/// True when it exited (or was already gone).
pub fn exits_within(pid: i32, secs: u64) -> bool {
    let Ok(pidfd) = qmp_tests::pidfd::PidFd::open(pid as u32) else {
        return true;
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    pidfd.wait_exit(deadline).unwrap()
}

/// kill(2) of `pid`, of its group when negative, with `signal`.
pub fn send_signal(pid: i32, signal: i32) {
    let signal = rustix::process::Signal::from_named_raw(signal).unwrap();
    let target = rustix::process::Pid::from_raw(pid.abs()).unwrap();
    match pid < 0 {
        true => rustix::process::kill_process_group(target, signal).unwrap(),
        false => rustix::process::kill_process(target, signal).unwrap(),
    }
}

/// A patch against a VERSION the stand-in tree does not have.
pub const STALE: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
From: T <t@t.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
Subject: [PATCH 1/1] monitor: change\n\n---\n\
diff --git a/VERSION b/VERSION\n--- a/VERSION\n+++ b/VERSION\n@@ -1 +1 @@\n\
-9.0.0\n+9.0.1\n--\n2.0\n\n";
