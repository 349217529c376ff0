//! Arguments as a new user types them: values that look like flags, flags
//! a command does not take, relative and non-UTF-8 paths, and input that
//! must be refused before any work.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn a_configure_argument_may_look_like_a_flag() {
    let fx = fixture(false);
    let missing = fx.tree.join("nope");
    // Before: `2` was an unknown argument, `--help` printed the help.
    for value in ["--no-series", "--help"] {
        let (code, err) = run(xtask(&fx, &["test", "--configure-arg", value, "--jobs", "2"])
            .arg("--qemu-src")
            .arg(&missing));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("no such directory"), "{value}: {err}");
    }
}

#[test]
fn a_path_flag_does_not_swallow_the_next_flag() {
    let fx = fixture(false);
    let (code, err) = run(&mut xtask(&fx, &["test", "--qemu-src", "--no-series"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a value is required for '--qemu-src <PATH>'"), "{err}");
}

#[test]
fn a_flag_a_command_does_not_take_is_refused() {
    let fx = fixture(false);
    let (code, err) = run(&mut xtask(&fx, &["unwire", "--series", "X"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unexpected argument '--series'"), "{err}");
    let (code, err) = run(&mut xtask(&fx, &["fetch", "stray"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unexpected argument 'stray'"), "{err}");
}

#[test]
fn a_non_utf8_path_is_kept_as_it_is() {
    let fx = fixture(false);
    let odd = fx.tree.with_file_name(OsStr::from_bytes(b"qemu-caf\xe9"));
    std::fs::rename(&fx.tree, &odd).unwrap();
    let out = xtask(&fx, &["unwire", "--qemu-src"]).arg(&odd).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("nothing is wired in"), "{err}");
    assert!(err.contains("qemu-caf\u{fffd}"), "the tree was found: {err}");
}

#[test]
fn a_relative_series_is_relative_to_where_the_command_runs() {
    let fx = fixture(true);
    let here = fx.cache.parent().unwrap().join("here");
    write_bytes(&here.join("mine/0001-version-bump.patch"), BUMP);
    let out = xtask(&fx, &["fetch", "--series", "mine"])
        .arg("--qemu-src")
        .arg(&fx.tree)
        .current_dir(&here)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let worktree = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(worktree.trim()).join("VERSION")).unwrap(),
        "10.2.51\n"
    );
}

#[test]
fn an_unknown_target_is_refused_before_any_work() {
    let fx = fixture(true);
    // The pinned release's list, before anything is fetched.
    let (code, err) = run(&mut xtask(&fx, &["test", "--target", "nonsense"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--target nonsense: no such system emulator in the pinned release"),
        "{err}"
    );
    assert!(err.contains("x86_64"), "lists the choices: {err}");
    assert!(!err.contains("[1/"), "no step ran: {err}");
    assert!(!fx.cache.exists(), "nothing was made");
    // A located tree's own list.
    write(&fx.tree.join("configs/targets/x86_64-softmmu.mak"), "");
    let (code, err) =
        run(xtask(&fx, &["build", "--target", "aarch64"]).arg("--qemu-src").arg(&fx.tree));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pick one of: x86_64"), "{err}");
    assert!(!fx.cache.exists(), "no build directory: {err}");
}

#[test]
fn a_missing_series_is_refused_before_any_work() {
    let fx = fixture(true);
    let (code, err) =
        run(xtask(&fx, &["test", "--series", "/nonexistent"]).arg("--qemu-src").arg(&fx.tree));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("series /nonexistent: no such file or directory"), "{err}");
    assert!(!err.contains("[1/"), "no step ran: {err}");
    assert!(!fx.cache.exists(), "no clone was made");
}

#[test]
fn suite_values_the_suite_would_refuse_are_refused_before_any_work() {
    let fx = fixture(true);
    for (args, needle) in [
        (&["--jobs", "0"][..], "invalid value '0' for '--jobs <N>': wants a positive whole number"),
        (&["--timeout", "0"][..], "invalid value '0' for '--timeout <SECS>'"),
        (&["--soak=0"][..], "'--soak <N>'"),
        (&["--scenario", "test_nosuch"][..], "unknown scenario \"test_nosuch\"; pick one of: "),
        (&["--jobs", "two"][..], "invalid value 'two' for '--jobs <N>'"),
    ] {
        let (code, err) = run(xtask(&fx, &["test"]).args(args).arg("--qemu-src").arg(&fx.tree));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("[1/"), "no step ran: {err}");
        assert!(!fx.cache.exists(), "nothing was made: {err}");
    }
    let (_, err) = run(&mut xtask(&fx, &["test", "--scenario", "nope"]));
    assert!(err.contains("test_hotplug_cycle"), "lists the names: {err}");
    let (code, err) =
        run(xtask(&fx, &["bisect", "--good", "HEAD", "--bad", "HEAD", "--scenario", "nope"])
            .arg("--qemu-src")
            .arg(&fx.tree));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown scenario \"nope\""), "{err}");
}

#[test]
fn a_non_utf8_tree_is_wired_and_unwired() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    let odd = fx.tree.with_file_name(OsStr::from_bytes(b"qemu-caf\xe9"));
    std::fs::rename(&fx.tree, &odd).unwrap();
    // Before: the wiring record was made from the path with json!, which
    // panicked on a path that is not UTF-8.
    let (code, err) = run(xtask(&fx, &["wire", "--qemu-src"]).arg(&odd));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wired monitor_hotplug into"), "{err}");
    let (code, err) = run(xtask(&fx, &["unwire", "--qemu-src"]).arg(&odd));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unwired"), "{err}");
    assert_eq!(status(&odd), before);
}

#[test]
fn a_file_that_is_not_a_patch_is_refused_as_a_series() {
    let fx = fixture(true);
    let notes = fx.cache.parent().unwrap().join("notes.txt");
    write(&notes, "Remember to send the series.\n");
    let (code, err) =
        run(xtask(&fx, &["test", "--series"]).arg(&notes).arg("--qemu-src").arg(&fx.tree));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("notes.txt is not a patch"), "{err}");
    assert!(!err.contains("[1/"), "no step ran: {err}");
    assert!(!fx.cache.exists(), "no clone was made");
}

#[test]
fn the_tools_whose_output_is_read_run_in_the_c_locale() {
    let fx = fixture(true);
    let here = fx.cache.parent().unwrap();
    write_bytes(&here.join("series/0001-version-bump.patch"), BUMP);
    // A git that notes its locale, then runs the real one.
    let bin = here.join("bin");
    let seen = here.join("locales");
    let real = String::from_utf8(
        Command::new("sh").args(["-c", "command -v git"]).output().unwrap().stdout,
    )
    .unwrap();
    write(
        &bin.join("git"),
        &format!(
            "#!/bin/sh\necho \"$LC_ALL\" >> {}\nexec {} \"$@\"\n",
            seen.display(),
            real.trim()
        ),
    );
    let mut perm = std::fs::metadata(bin.join("git")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(bin.join("git"), perm).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let (code, err) = run(xtask(&fx, &["fetch", "--series"])
        .arg(here.join("series"))
        .arg("--qemu-src")
        .arg(&fx.tree)
        .env("PATH", path)
        .env("LC_ALL", "de_DE.UTF-8")
        .env("LANG", "de_DE.UTF-8"));
    assert_eq!(code, 0, "{err}");
    let locales = std::fs::read_to_string(&seen).unwrap();
    assert!(!locales.is_empty());
    assert!(locales.lines().all(|l| l == "C"), "{locales}");
}
