//! Signals, crashes and a second run at once, against the stand-in tree
//! and real ninja (QEMU's build dependencies, which `cargo xtask ci`
//! installs first, and a venv with meson, made once per target directory).

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

const TEST_FILE: &str = "tests/functional/generic/test_monitor_hotplug.py";

fn assert_clean(fx: &Fixture, before: &str, seen: &str) {
    assert_eq!(status(&fx.tree), before, "{seen}");
    assert!(!fx.tree.join(TEST_FILE).exists(), "{seen}");
}

#[test]
fn ctrl_c_during_the_build_leaves_the_tree_clean() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    // Like Ctrl-C in a terminal: the whole foreground group gets SIGINT.
    let (code, seen) = Blocked::start(&fx, "started").signal(libc::SIGINT, true);
    assert_eq!(code, Some(2), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert_clean(&fx, &before, &seen);
}

#[test]
fn sigterm_to_the_xtask_alone_reaches_the_build() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    // The build sleeps 600 s: an exit at all means ninja was told.
    let (code, seen) = Blocked::start(&fx, "started").signal(libc::SIGTERM, false);
    assert_eq!(code, Some(2), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert_clean(&fx, &before, &seen);
}

#[test]
fn a_run_killed_while_wired_is_restored_by_the_next() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    let blocked = Blocked::start(&fx, "started");
    let builders = processes_mentioning(&fx.cache);
    assert!(!builders.is_empty(), "no ninja building in {}", fx.cache.display());
    let seen = blocked.kill9();
    assert!(fx.tree.join(TEST_FILE).exists(), "wired when killed: {seen}");
    // The build does not outlive the xtask that ran it.
    for pid in builders {
        assert!(exits_within(pid, 10), "process {pid} outlived the killed xtask: {seen}");
    }
    // Another configure argument, another build directory: the killed
    // run's build.ninja still holds its blocking rule.
    let (code, err) = run(xtask(&fx, &["test", "--configure-arg=--second", "--qemu-src"])
        .arg(&fx.tree)
        .env("FAKE_BUILD", "exit 1"));
    assert_eq!(code, 2, "the build fails: {err}");
    assert!(err.contains("a killed run left"), "{err}");
    assert!(err.contains("added to"), "wired afresh: {err}");
    assert_clean(&fx, &before, &err);
}

#[test]
fn a_second_run_waits_for_the_first() {
    let fx = fixture(false);
    // What the first run holds for its whole life.
    std::fs::create_dir_all(&fx.cache).unwrap();
    let lock = File::create(fx.cache.join("lock")).unwrap();
    lock.lock().unwrap();
    let mut second = xtask(&fx, &["unwire", "--qemu-src", fx.tree.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(second.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("another cargo xtask run is using") && first.contains("waiting"),
        "{first}"
    );
    drop(lock);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(second.wait().unwrap().success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("nothing is wired")), "ran after the wait: {rest:?}");
}

/// Reads stderr up to the line saying the xtask waits for the lock.
fn waits_for_the_lock(child: &mut std::process::Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    // The rest is drained in the background, so the xtask never blocks on
    // a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    first
}

fn hold_lock(fx: &Fixture) -> File {
    std::fs::create_dir_all(&fx.cache).unwrap();
    let lock = File::create(fx.cache.join("lock")).unwrap();
    lock.lock().unwrap();
    lock
}

#[test]
fn every_command_that_uses_the_cache_waits_for_its_lock() {
    let fx = fixture(true);
    let _lock = hold_lock(&fx);
    let tree = fx.tree.to_str().unwrap();
    // bench used to run beside a rebuilding test; mutants and bisect took
    // the lock in their own way.
    for args in [
        &["test", "--qemu-src", tree][..],
        &["fetch", "--qemu-src", tree],
        &["build", "--qemu-src", tree],
        &["wire", "--qemu-src", tree],
        &["unwire", "--qemu-src", tree],
        &["bench", "--qemu-src", tree],
        &["bisect", "--qemu-src", tree, "--good", "HEAD", "--bad", "HEAD"],
        &["mutants"],
    ] {
        let mut child = xtask(&fx, args).stderr(Stdio::piped()).spawn().unwrap();
        let first = waits_for_the_lock(&mut child);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            first.contains("another cargo xtask run is using") && first.contains("waiting"),
            "{args:?}: {first}"
        );
    }
}

#[test]
fn a_nested_run_works_under_its_parents_lock() {
    let fx = fixture(false);
    let _lock = hold_lock(&fx);
    // What `bench` gives the `cargo xtask test` runs it times.
    let (code, err) = run(xtask(&fx, &["unwire", "--qemu-src"])
        .arg(&fx.tree)
        .env("XTASK_HELD_LOCK", fx.cache.join("lock")));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("waiting"), "{err}");
    assert!(err.contains("nothing is wired"), "{err}");
}

type Stderr = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// The xtask with `args` and a tree, once it says it waits for a lock:
/// what it printed before and that line, and the rest of its stderr.
fn run_until_waiting(
    fx: &Fixture,
    args: &[&str],
) -> (std::process::Child, Vec<String>, String, Stderr) {
    let mut child = xtask(fx, args).arg(&fx.tree).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("waiting") {
            return (child, before, line, lines);
        }
        before.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{args:?} never waited for a lock: {before:?}");
}

/// `unwire` started while the lock is held, once it says it waits, which
/// it must before anything else; the rest of its stderr.
fn unwire_waiting(fx: &Fixture) -> (std::process::Child, Stderr) {
    let (child, before, _, lines) = run_until_waiting(fx, &["unwire", "--qemu-src"]);
    assert!(before.is_empty(), "{before:?}");
    (child, lines)
}

#[test]
fn ctrl_c_while_waiting_for_the_lock_stops_the_run() {
    let fx = fixture(false);
    let _lock = hold_lock(&fx);
    let (mut child, lines) = unwire_waiting(&fx);
    send_signal(child.id() as i32, libc::SIGINT);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(2), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert!(!rest.iter().any(|l| l.contains("nothing is wired")), "did no work: {rest:?}");
}

#[test]
fn signals_that_are_not_ours_do_not_end_the_wait_for_the_lock() {
    let fx = fixture(false);
    let lock = hold_lock(&fx);
    let (mut child, lines) = unwire_waiting(&fx);
    // Ctrl-Z and fg, a terminal resized, a child of someone else's: each
    // can end a blocking call with EINTR.
    for signal in [libc::SIGSTOP, libc::SIGCONT, libc::SIGWINCH, libc::SIGCHLD, libc::SIGURG] {
        send_signal(child.id() as i32, signal);
    }
    drop(lock);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("nothing is wired")),
        "the run went on once the lock was free: {rest:?}"
    );
}

#[test]
fn a_second_run_waits_while_another_makes_the_shared_venvs() {
    let fx = fixture(false);
    // The venvs live in the target directory, shared by every cache (and
    // so by runs that do not share the cache's lock).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venvs = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
    .join("qemu");
    std::fs::create_dir_all(&venvs).unwrap();
    // The stand-in tree asks for meson 1.9.0.
    let lock = File::create(venvs.join("venv-meson==1.9.0_pycotap.lock")).unwrap();
    lock.lock().unwrap();
    // Without the venv lock the run made its venv and never waited.
    let (mut child, _, waiting, _) = run_until_waiting(&fx, &["build", "--qemu-src"]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lock);
    assert!(waiting.contains("is making a python venv for meson==1.9.0 pycotap in"), "{waiting}");
}

#[test]
fn unwire_checks_its_tree_before_making_the_lock_file() {
    let fx = fixture(false);
    let (code, err) = run(xtask(&fx, &["unwire", "--qemu-src"]).arg(fx.tree.join("nope")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such directory"), "{err}");
    assert!(!fx.cache.exists(), "no lock file was made: {err}");
}

#[test]
fn ctrl_c_during_git_am_is_an_interruption_not_a_broken_series() {
    let fx = fixture(true);
    let here = fx.cache.parent().unwrap().to_path_buf();
    write_bytes(&here.join("series/0001-version-bump.patch"), BUMP);
    // git am runs the applypatch-msg hook: it blocks there, as a long
    // git am would, until the signal.
    write(&here.join("hooks/applypatch-msg"), "#!/bin/sh\neval \"$FAKE_BUILD\"\n");
    let hook = here.join("hooks/applypatch-msg");
    let mut perm = std::fs::metadata(&hook).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&hook, perm).unwrap();
    write(
        &here.join("gitconfig"),
        &format!("[core]\n\thooksPath = {}\n", here.join("hooks").display()),
    );
    let series = here.join("series");
    let config = here.join("gitconfig");
    let blocked = Blocked::start_env(
        &fx,
        "started",
        &["fetch", "--series", series.to_str().unwrap(), "--qemu-src", fx.tree.to_str().unwrap()],
        &[("GIT_CONFIG_GLOBAL", config.as_path())],
    );
    let (code, seen) = blocked.signal(libc::SIGINT, true);
    assert_eq!(code, Some(2), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert!(!seen.contains("does not apply"), "{seen}");
}

#[test]
fn a_killed_bisect_takes_its_step_along_and_the_next_run_restores_the_tree() {
    let fx = fixture(true);
    let tree = fx.tree.to_str().unwrap();
    for n in 1..=2 {
        write(&fx.tree.join("NEWS"), &format!("{n}\n"));
        git(&fx.tree, &["add", "NEWS"]);
        git(&fx.tree, &["commit", "-q", "-m", &format!("news {n}")]);
    }
    let branch = git(&fx.tree, &["symbolic-ref", "--short", "HEAD"]);
    let good = git(&fx.tree, &["rev-parse", "HEAD~2"]);
    let before = status(&fx.tree);
    let blocked = Blocked::start_args(
        &fx,
        "started",
        &["bisect", "--qemu-src", tree, "--good", good.trim(), "--bad", "HEAD"],
    );
    // git bisect run, its shell, the step: all name the tree.
    let step = processes_mentioning(&fx.tree);
    let builders = processes_mentioning(&fx.cache);
    assert!(!step.is_empty() && !builders.is_empty());
    // kill -9 of the xtask alone: git and the step are in other groups.
    send_signal(blocked.child.id() as i32, libc::SIGKILL);
    for pid in step.iter().chain(&builders) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            exits_within(*pid, 20),
            "process {pid} ({}) outlived the killed bisect",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
    let (_, seen) = blocked.wait();
    // The next run puts the tree back before anything else (its steps
    // fail to build here: every commit is skipped).
    let (code, err) = run(xtask(
        &fx,
        &[
            "bisect",
            "--configure-arg=--second",
            "--qemu-src",
            tree,
            "--good",
            good.trim(),
            "--bad",
            branch.trim(),
        ],
    )
    .env("FAKE_BUILD", "exit 1"));
    assert!(err.contains("a killed cargo xtask bisect left"), "{seen}\n{err}");
    assert!(err.contains("only skipped commits are left"), "restored, then bisected: {err}");
    assert_eq!(code, 2, "{err}");
    assert_eq!(git(&fx.tree, &["symbolic-ref", "--short", "HEAD"]), branch, "{err}");
    assert_eq!(status(&fx.tree), before, "{err}");
    assert!(!fx.tree.join(".git/BISECT_START").exists(), "{err}");
}

#[test]
fn a_venv_pip_cannot_make_aborts_the_bisect_rather_than_skip_the_commit() {
    let fx = fixture(true);
    let here = fx.cache.parent().unwrap().to_path_buf();
    // A meson no venv has yet, and a python3 that cannot make one.
    write(
        &fx.tree.join("pythondeps.toml"),
        "[meson]\nmeson = { accepted = \">=0.0.1\", installed = \"0.0.1\", canary = \"meson\" }\n",
    );
    git(&fx.tree, &["commit", "-q", "-a", "-m", "old meson"]);
    write(&here.join("bin/python3"), "#!/bin/sh\nexit 1\n");
    let python = here.join("bin/python3");
    let mut perm = std::fs::metadata(&python).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&python, perm).unwrap();
    let log = here.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let path = format!("{}:{}", here.join("bin").display(), std::env::var("PATH").unwrap());
    let (code, err) = run(xtask(&fx, &["bisect-step", "--qmp-tests=/bin/false"])
        .arg(format!("--qemu-src={}", fx.tree.display()))
        .arg(format!("--log-dir={}", log.display()))
        .env("PATH", path));
    assert_eq!(code, 128, "git aborts the bisect: {err}");
    assert!(err.contains("the machine's fault, not the commit's"), "{err}");
    assert!(err.contains("aborting the bisect"), "{err}");
}
