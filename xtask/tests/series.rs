//! Series: a worktree from a `git am` that was cut off is not reused, a
//! series in Latin-1 applies like one in UTF-8, a located tree's
//! uncommitted changes are under the series, and a patch whose context
//! moved applies by a three-way merge.

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
    assert!(err.contains("holds 1 commits where the series has 2 patches"), "{err}");
    assert_eq!(git(&wt, &["rev-list", "--count", "base..HEAD"]).trim(), "2");
    assert_eq!(std::fs::read_to_string(wt.join("NOTES")).unwrap(), "a note\n");

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
    assert_eq!(git(&wt, &["log", "-1", "--format=%an: %s"]).trim(), "Jos\u{e9}: caf\u{e9}: add");
}

#[test]
fn a_series_fails_alike_under_test_and_bisect() {
    // One `git am -3` serves both: the same series on the same commit
    // fails under both with the same message.
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

#[test]
fn a_located_trees_uncommitted_changes_are_under_the_series() {
    let fx = fixture(true);
    let series = fx.cache.parent().unwrap().join("add.patch");
    write_bytes(&series, ADD);
    // A tracked edit, one staged, and a new file: what a developer has.
    write(&fx.tree.join("meson.build"), "project('qemu')\n# edited\n");
    write(&fx.tree.join("qapi/qapi-schema.json"), "{ }\n");
    git(&fx.tree, &["add", "qapi/qapi-schema.json"]);
    write(&fx.tree.join("NEW.c"), "int x;\n");
    let before = status(&fx.tree);
    let index = std::fs::read(fx.tree.join(".git/index")).unwrap();

    let (code, err, wt) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(wt.join("meson.build")).unwrap(),
        "project('qemu')\n# edited\n"
    );
    assert_eq!(std::fs::read_to_string(wt.join("NEW.c")).unwrap(), "int x;\n");
    assert_eq!(
        std::fs::read_to_string(wt.join("NOTES")).unwrap(),
        "a note\n",
        "the series is on top"
    );
    assert!(err.contains("with its uncommitted changes"), "{err}");
    assert_eq!(status(&fx.tree), before, "the tree is as it was");
    assert_eq!(std::fs::read(fx.tree.join(".git/index")).unwrap(), index, "and so is its index");

    // The same changes again: the same base, the worktree reused.
    let (code, err, again) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, wt);
}

#[test]
fn a_patch_whose_context_moved_applies_by_a_three_way_merge() {
    let fx = fixture(true);
    let file = fx.tree.join("LINES");
    write(&file, "one\ntwo\nthree\nfour\nfive\nsix\nseven\n");
    git(&fx.tree, &["add", "LINES"]);
    git(&fx.tree, &["commit", "--quiet", "-m", "lines"]);
    // The patch is made here, against this commit...
    write(&file, "one\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n");
    let patch = git(&fx.tree, &["diff", "--full-index"]);
    git(&fx.tree, &["checkout", "--quiet", "LINES"]);
    // ...and the tree moves on under it, the context of its hunk included.
    write(&file, "one\ntwo\nthree\nfour-changed\nfive\nsix\nseven\n");
    git(&fx.tree, &["commit", "--quiet", "-am", "moved"]);
    let series = fx.cache.parent().unwrap().join("moved.patch");
    write(
        &series,
        &format!(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
             From: T <t@t.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
             Subject: [PATCH] lines: shout\n\n---\n{patch}--\n2.0\n\n"
        ),
    );
    let (code, err, wt) = fetch(&fx, &series);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(wt.join("LINES")).unwrap(),
        "one\ntwo\nthree\nfour-changed\nfive\nsix\nSEVEN\n"
    );
}
