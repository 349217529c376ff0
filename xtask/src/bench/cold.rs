//! `cargo xtask test` from fresh clones, side by side: this checkout's
//! HEAD and an earlier commit, each with nothing built, then HEAD again
//! with the compiler cache the first HEAD run filled. Each step's time is
//! read off the step lines the run prints.
//!
//! Host packages, crates and pip's downloads are already on the machine,
//! as the figure is defined; nothing else carries over. Each run gets a
//! clone, a target directory and (until the last) a ccache of its own.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::interrupt::{self, Controlled};
use crate::paths;

/// One timed run: the whole process and each of its step lines.
#[derive(Serialize)]
pub struct Run {
    pub label: String,
    pub commit: String,
    #[serde(rename = "total_s")]
    pub total: f64,
    pub steps: Vec<Step>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Step {
    step: String,
    s: f64,
}

impl Run {
    /// The seconds of the step named `name`.
    pub fn step(&self, name: &str) -> Option<f64> {
        self.steps.iter().find(|s| s.step == name).map(|s| s.s)
    }
}

/// The three runs: the earlier commit, HEAD, HEAD with a warm ccache.
#[derive(Serialize)]
pub struct Cold {
    pub baseline: Run,
    pub head: Run,
    #[serde(rename = "head_warm_ccache")]
    pub warm_ccache: Run,
}

/// Variables that would point a nested run at this checkout's caches or
/// binaries instead of its own.
const NOT_PASSED: &[&str] = &[
    "CARGO_TARGET_DIR",
    "XTASK_QEMU_CACHE",
    "XTASK_QEMU_PIN",
    crate::lock::HELD,
    "QMP_TESTS_BIN",
    "QEMU_SRC",
    "CCACHE_DIR",
];

/// The commit `rev` names in this checkout, checked before any figure is
/// taken.
pub fn resolve(rev: &str) -> Result<String> {
    let sh = Shell::new()?;
    let root = paths::project_root();
    let spec = format!("{rev}^{{commit}}");
    let git = cmd!(sh, "git -C {root} rev-parse --verify --quiet {spec}").quiet();
    git.spawn_read().map_err(|_| {
        let root = root.display();
        anyhow::anyhow!(
            "--cold {rev}: no such commit in {root}; give a commit, tag or branch of this checkout"
        )
    })
}

/// `base` is a resolved commit (see [`resolve`]).
pub fn measure(sh: &Shell, base: &str) -> Result<Cold> {
    let root = paths::project_root();
    let head = resolve("HEAD")?;
    if !crate::vcs::status(sh, &root)?.is_empty() {
        let root = root.display();
        eprintln!(
            "    note: uncommitted changes in {root} are not in the cold figures, which clone HEAD"
        );
    }
    let scratch = tempfile::Builder::new().prefix("xtask-cold-").tempdir();
    let scratch = scratch.context("creating a directory for the fresh clones")?;
    let dir = scratch.path();
    let short = |commit: &str| commit[..12.min(commit.len())].to_owned();
    let (base_label, head_label) = (short(base), format!("HEAD {}", short(&head)));
    let fresh = |name: &str, commit: &str, label: String, ccache: &str| {
        run(sh, label, commit, &dir.join(name), &dir.join(ccache))
    };
    Ok(Cold {
        baseline: fresh(
            "baseline",
            base,
            format!("fresh clone of {base_label}, empty ccache"),
            "ccache-baseline",
        )?,
        head: fresh(
            "head",
            &head,
            format!("fresh clone of {head_label}, empty ccache"),
            "ccache-head",
        )?,
        warm_ccache: fresh(
            "head-again",
            &head,
            format!("fresh clone of {head_label}, ccache from the run before"),
            "ccache-head",
        )?,
    })
}

fn run(sh: &Shell, label: String, commit: &str, clone: &Path, ccache: &Path) -> Result<Run> {
    eprintln!("==> cold cargo xtask test: {label}");
    let root = paths::project_root();
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}").quiet().spawn_run()?;
    cmd!(sh, "git -C {clone} checkout --quiet --detach {commit}").quiet().spawn_run()?;
    let cargo = paths::cargo();
    let mut command: std::process::Command = cmd!(sh, "{cargo} xtask test").into();
    for name in NOT_PASSED {
        command.env_remove(name);
    }
    command.current_dir(clone).env("CCACHE_DIR", ccache);
    // The previous run's clone was just removed: its writeback would
    // slow this run's first steps (a `cargo xtask fetch` right after
    // another took 10.4 s against 6.9 s), and so favour whichever run
    // goes first.
    rustix::fs::sync();
    let start = Instant::now();
    let out = interrupt::output(command, "a cold cargo xtask test")?;
    let total = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::write(clone.join("cold.log"), stderr.as_bytes()).ok();
    if !out.status.success() {
        interrupt::check()?;
        bail!(
            "the cold cargo xtask test ({label}) failed ({}); a benchmark of a failing run \
             means nothing. Its output ends:\n{}",
            out.status,
            qmp_tests::text::tail_lines(&stderr, 15)
        );
    }
    eprintln!("    {label}: {total:.1}s");
    // The clone holds a QEMU build: gone before the next one starts.
    let _ = std::fs::remove_dir_all(clone);
    let (commit, steps) = (commit.to_owned(), step_times(&stderr));
    Ok(Run { label, commit, total, steps })
}

/// `[4/9] build: configured, ... (103.1s)` -> ("build", 103.1), one per
/// finished step, in the order they finished.
fn step_times(log: &str) -> Vec<Step> {
    let step = |line: &str| {
        let (_, rest) = line.strip_prefix('[')?.split_once("] ")?;
        let (name, rest) = rest.split_once(": ")?;
        let secs = rest.strip_suffix("s)")?.rsplit_once(" (")?.1;
        Some(Step { step: name.to_owned(), s: secs.parse().ok()? })
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
    let step = |name: &str, s| Step { step: name.to_owned(), s };
    assert_eq!(step_times(log), [step("host dependencies", 0.1), step("build", 103.1)]);
}
