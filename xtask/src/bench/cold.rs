//! `cargo xtask test` from fresh clones, side by side: an earlier commit
//! and HEAD with nothing built, then HEAD with the ccache of the run before
//! (host packages, crates and pip's downloads present, nothing else); each
//! step's time read off the lines the run prints.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use super::process::run_timed;
use crate::{interrupt::Controlled, paths};

/// One timed run: the whole process, and each step in the order it ended.
#[derive(Serialize)]
pub struct Run {
    pub label: String,
    pub commit: String,
    pub total_s: f64,
    pub steps: Vec<(String, f64)>,
}

/// Variables that would point a nested run at this checkout's caches or
/// binaries instead of its own (CCACHE_DIR is set for each run).
const NOT_PASSED: &[&str] = &[
    "CARGO_TARGET_DIR",
    "XTASK_QEMU_CACHE",
    "XTASK_QEMU_PIN",
    crate::lock::HELD,
    "QMP_TESTS_BIN",
    "QEMU_SRC",
];

/// The commit `rev` names in this checkout, checked before any figure.
pub fn resolve(sh: &Shell, rev: &str) -> Result<String> {
    let root = paths::project_root();
    let spec = format!("{rev}^{{commit}}");
    let git = cmd!(sh, "git -C {root} rev-parse --verify --quiet {spec}").quiet();
    let no_such = || format!("--cold {rev}: no such commit, tag or branch in {}", root.display());
    git.spawn_read().ok().with_context(no_such)
}

/// The earlier commit `base` (resolved, see [`resolve`]), HEAD, and HEAD
/// again with the ccache of the run before.
pub fn measure(sh: &Shell, base: &str) -> Result<[Run; 3]> {
    let (root, head) = (paths::project_root(), resolve(sh, "HEAD")?);
    if !crate::vcs::status(sh, &root)?.is_empty() {
        eprintln!("    note: {} has uncommitted changes; the cold runs clone HEAD", root.display());
    }
    let scratch = tempfile::Builder::new().prefix("xtask-cold-").tempdir();
    let scratch = scratch.context("creating a directory for the fresh clones")?;
    let short = |commit: &str| commit[..12.min(commit.len())].to_owned();
    let (b, h, dir) = (short(base), format!("HEAD {}", short(&head)), scratch.path());
    let go = |commit: &str, name: &str, cache: &str, warm: bool| {
        let state = if warm { "ccache from the run before" } else { "empty ccache" };
        let (clone, ccache) = (dir.join(format!("{cache}-{warm}")), dir.join(cache));
        run(sh, format!("fresh clone of {name}, {state}"), commit, &clone, &ccache)
    };
    Ok([go(base, &b, "base", false)?, go(&head, &h, "head", false)?, go(&head, &h, "head", true)?])
}

fn run(sh: &Shell, label: String, commit: &str, clone: &Path, ccache: &Path) -> Result<Run> {
    eprintln!("==> cold cargo xtask test: {label}");
    let root = paths::project_root();
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}").quiet().spawn_run()?;
    cmd!(sh, "git -C {clone} checkout --quiet --detach {commit}").quiet().spawn_run()?;
    let cargo = paths::cargo();
    let _cd = sh.push_dir(clone);
    let command =
        NOT_PASSED.iter().fold(cmd!(sh, "{cargo} xtask test"), |c, name| c.env_remove(name));
    // Else the writeback of the clone just removed slows this run's first
    // steps (a fetch right after another: 10.4 s against 6.9 s).
    rustix::fs::sync();
    let (total_s, stderr) = run_timed(command.env("CCACHE_DIR", ccache))
        .with_context(|| format!("the cold cargo xtask test ({label})"))?;
    eprintln!("    {label}: {total_s:.1}s");
    // The clone holds a QEMU build: gone before the next one starts.
    let _ = std::fs::remove_dir_all(clone);
    Ok(Run { label, commit: commit.to_owned(), total_s, steps: step_times(&stderr) })
}

/// `[4/9] build: configured, ... (103.1s)` -> ("build", 103.1), one per
/// finished step, in the order they finished.
fn step_times(log: &str) -> Vec<(String, f64)> {
    let step = |line: &str| {
        let (_, rest) = line.strip_prefix('[')?.split_once("] ")?;
        let (name, rest) = rest.split_once(": ")?;
        let secs = rest.strip_suffix("s)")?.rsplit_once(" (")?.1;
        Some((name.to_owned(), secs.parse().ok()?))
    };
    log.lines().filter_map(step).collect()
}

#[test]
fn reads_the_finished_step_lines_only() {
    let log = "[1/9] host dependencies ...\n\
               [1/9] host dependencies: all present (0.1s)\n\
               [4/9] qmp-tests binary ... (building beside the steps after it)\n\
               [8/9] build: configured, x (y) built (103.1s)\n\
               test test_x ... ok (0.10s)\n";
    let steps = [("host dependencies".to_owned(), 0.1), ("build".to_owned(), 103.1)];
    assert_eq!(step_times(log), steps);
}
