//! Series: a worktree from a `git am` that was cut off is not reused, and
//! a series in Latin-1 applies like one in UTF-8.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A second patch on top of BUMP.
const ADD: &[u8] = b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
From: T <t@t.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
Subject: [PATCH 2/2] notes: add\n\n---\n\
diff --git a/NOTES b/NOTES\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES\n@@ -0,0 +1 @@\n\
+a note\n--\n2.0\n\n";

/// A patch whose author, subject and content are Latin-1.
const LATIN1: &[u8] = b"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
From: Jos\xe9 <j@t.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
Subject: [PATCH] caf\xe9: add\nMIME-Version: 1.0\n\
Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n---\n\
diff --git a/CAFE b/CAFE\nnew file mode 100644\n--- /dev/null\n+++ b/CAFE\n@@ -0,0 +1 @@\n\
+caf\xe9\n--\n2.0\n\n";

fn fetch(fx: &Fixture, series: &Path) -> (i32, String, PathBuf) {
    let out = xtask(fx, &["fetch", "--series"])
        .arg(series)
        .arg("--qemu-src")
        .arg(&fx.tree)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let tree = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.code().unwrap_or(-1), err, tree)
}

#[test]
fn a_worktree_missing_patches_is_applied_again() {
    let fx = fixture(true);
    let series = fx.cache.parent().unwrap().join("series");
    write_bytes(&series.join("0001-version-bump.patch"), BUMP);
    write_bytes(&series.join("0002-notes-add.patch"), ADD);
    let (code, err, wt) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(git(&wt, &["rev-list", "--count", "base..HEAD"]).trim(), "2");
    // What a git am cut off after its first patch leaves.
    git(&wt, &["reset", "--quiet", "--hard", "HEAD~1"]);

    let (code, err, again) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, wt);
    assert!(
        err.contains("holds 1 commits where the series has 2 patches"),
        "{err}"
    );
    assert_eq!(git(&wt, &["rev-list", "--count", "base..HEAD"]).trim(), "2");
    assert_eq!(
        std::fs::read_to_string(wt.join("NOTES")).unwrap(),
        "a note\n"
    );

    let (code, err, _) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("applying the series again"), "reused: {err}");
}

#[test]
fn a_latin1_series_applies() {
    let fx = fixture(true);
    let series = fx.cache.parent().unwrap().join("latin1.patch");
    write_bytes(&series, LATIN1);
    let (code, err, wt) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(wt.join("CAFE")).unwrap(), b"caf\xe9\n");
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%an: %s"]).trim(),
        "Jos\u{e9}: caf\u{e9}: add"
    );
}

#[test]
fn a_series_fails_alike_under_test_and_bisect() {
    // One `git am` serves both: the same series on the same commit fails
    // under both with the same message (bisect used to add --3way).
    let fx = fixture(true);
    let series = fx.cache.parent().unwrap().join("stale.patch");
    write(&series, STALE);
    let (code, from_test, _) = fetch(&fx, &series);
    assert_eq!(code, 2, "{from_test}");
    let head = git(&fx.tree, &["rev-parse", "HEAD"]);
    let log_dir = fx.cache.parent().unwrap().join("bisect");
    std::fs::create_dir_all(&log_dir).unwrap();
    let (code, from_step) = run(xtask(&fx, &["bisect-step", "--qmp-tests=/bin/false"])
        .arg("--qemu-src")
        .arg(&fx.tree)
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--series")
        .arg(&series));
    assert_eq!(code, 125, "skipped: {from_step}");
    let cause = format!(
        "series {} does not apply: patch 0001 monitor: change fails on VERSION",
        series.display()
    );
    assert!(from_test.contains(&cause), "{from_test}");
    assert!(from_step.contains(&cause), "{from_step}");
    assert_eq!(git(&fx.tree, &["rev-parse", "HEAD"]), head);
    assert_eq!(status(&fx.tree), "");
}
