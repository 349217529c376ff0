//! Signals, crashes and a second run at once, against the stand-in tree
//! and real ninja (ignored by default; `cargo xtask ci` runs them).

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
#[ignore = "needs QEMU's build dependencies (ninja): run by cargo xtask ci"]
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
#[ignore = "needs QEMU's build dependencies (ninja): run by cargo xtask ci"]
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
#[ignore = "needs QEMU's build dependencies (ninja): run by cargo xtask ci"]
fn a_run_killed_while_wired_is_restored_by_the_next() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    let blocked = Blocked::start(&fx, "started");
    let builders = processes_mentioning(&fx.cache);
    assert!(
        !builders.is_empty(),
        "no ninja building in {}",
        fx.cache.display()
    );
    let seen = blocked.kill9();
    assert!(
        fx.tree.join(TEST_FILE).exists(),
        "wired when killed: {seen}"
    );
    // The build does not outlive the xtask that ran it.
    for pid in builders {
        assert!(
            exits_within(pid, 10),
            "process {pid} outlived the killed xtask: {seen}"
        );
    }
    // Another configure argument, another build directory: the killed
    // run's build.ninja still holds its blocking rule.
    let (code, err) = run(
        xtask(&fx, &["test", "--configure-arg=--second", "--qemu-src"])
            .arg(&fx.tree)
            .env("FAKE_BUILD", "exit 1"),
    );
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
    assert!(
        rest.iter().any(|l| l.contains("nothing is wired")),
        "ran after the wait: {rest:?}"
    );
}
