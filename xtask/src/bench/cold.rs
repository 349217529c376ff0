//! `cargo xtask test` from fresh clones, side by side: this checkout's
//! HEAD and an earlier commit, each with nothing built, then HEAD again
//! with the compiler cache the first HEAD run filled.
//!
//! Host packages, crates and pip's downloads are already on the machine,
//! as the figure is defined; nothing else carries over. Each run gets a
//! clone, a target directory and (until the last) a ccache of its own.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::interrupt::{self, Controlled};
use crate::paths;

use super::stats::Stats;

/// One timed run: the whole process and each of its step lines.
pub struct Run {
    pub label: String,
    pub commit: String,
    pub total: f64,
    pub steps: Vec<(String, f64)>,
    /// What the QEMU it built costs: the floor and the seed scenarios,
    /// timed with this checkout's suite.
    pub qemu: Option<(Stats, Stats)>,
}

/// Times a QEMU binary: its floor and the seed scenarios.
pub type TimeQemu<'a> = &'a dyn Fn(&Path) -> Result<(Stats, Stats)>;

/// The three runs: the earlier commit, HEAD, HEAD with a warm ccache.
pub struct Cold {
    pub baseline: Run,
    pub head: Run,
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
    cmd!(sh, "git -C {root} rev-parse --verify --quiet {spec}")
        .quiet()
        .spawn_read()
        .map_err(|_| {
            anyhow::anyhow!(
                "--cold {rev}: no such commit in {}; give a commit, tag or branch of this checkout",
                root.display()
            )
        })
}

/// `base` is a resolved commit (see [`resolve`]).
pub fn measure(sh: &Shell, base: &str, time_qemu: TimeQemu) -> Result<Cold> {
    let root = paths::project_root();
    let head = resolve("HEAD")?;
    if !crate::vcs::status(sh, &root)?.is_empty() {
        eprintln!(
            "    note: uncommitted changes in {} are not in the cold figures, which clone HEAD",
            root.display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("xtask-cold-")
        .tempdir()
        .context("creating a directory for the fresh clones")?;
    let dir = scratch.path();
    let ccache = dir.join("ccache-head");
    let baseline = run(
        sh,
        &format!("fresh clone of {}, empty ccache", short(base)),
        base,
        &dir.join("baseline"),
        &dir.join("ccache-baseline"),
        Some(time_qemu),
    )?;
    let head_run = run(
        sh,
        &format!("fresh clone of HEAD {}, empty ccache", short(&head)),
        &head,
        &dir.join("head"),
        &ccache,
        Some(time_qemu),
    )?;
    let warm_ccache = run(
        sh,
        &format!(
            "fresh clone of HEAD {}, ccache from the run before",
            short(&head)
        ),
        &head,
        &dir.join("head-again"),
        &ccache,
        None,
    )?;
    Ok(Cold {
        baseline,
        head: head_run,
        warm_ccache,
    })
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

fn run(
    sh: &Shell,
    label: &str,
    commit: &str,
    clone: &Path,
    ccache: &Path,
    time_qemu: Option<TimeQemu>,
) -> Result<Run> {
    eprintln!("==> cold cargo xtask test: {label}");
    let root = paths::project_root();
    cmd!(sh, "git clone --quiet --no-hardlinks {root} {clone}")
        .quiet()
        .spawn_run()?;
    cmd!(sh, "git -C {clone} checkout --quiet --detach {commit}")
        .quiet()
        .spawn_run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
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
        let lines: Vec<&str> = stderr.lines().collect();
        bail!(
            "the cold cargo xtask test ({label}) failed ({}); a benchmark of a failing run \
             means nothing. Its output ends:\n{}",
            out.status,
            lines[lines.len().saturating_sub(15)..].join("\n")
        );
    }
    let steps = step_times(&stderr);
    eprintln!("    {label}: {total:.1}s");
    let qemu = match time_qemu {
        Some(time) => {
            let binary = built_binary(&stderr).with_context(|| {
                format!("the cold run ({label}) printed no build step naming its build directory")
            })?;
            Some(time(&binary)?)
        }
        None => None,
    };
    // The clone holds a QEMU build: gone before the next one starts.
    let _ = std::fs::remove_dir_all(clone);
    Ok(Run {
        label: label.to_owned(),
        commit: commit.to_owned(),
        total,
        steps,
        qemu,
    })
}

/// The binary of the build step's line: `[8/9] build: ..., in DIR (12.0s)`.
fn built_binary(log: &str) -> Option<std::path::PathBuf> {
    let line = log
        .lines()
        .find(|l| l.starts_with('[') && l.contains("] build: ") && l.ends_with("s)"))?;
    let (rest, _) = line.rsplit_once(" (")?;
    let (_, dir) = rest.rsplit_once(", in ")?;
    Some(Path::new(dir).join("qemu-system-x86_64"))
}

/// `[4/9] build: configured, ... (103.1s)` -> ("build", 103.1), one per
/// finished step, in the order they finished.
pub fn step_times(log: &str) -> Vec<(String, f64)> {
    log.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (_, rest) = rest.split_once("] ")?;
            let (name, rest) = rest.split_once(": ")?;
            let secs = rest.strip_suffix("s)")?.rsplit_once(" (")?.1;
            Some((name.to_owned(), secs.parse().ok()?))
        })
        .collect()
}

impl Cold {
    fn runs(&self) -> [&Run; 3] {
        [&self.baseline, &self.head, &self.warm_ccache]
    }

    /// Steps down, runs across; the whole process last, the xtask's own
    /// compilation and what no step line covers beside it.
    pub fn table(&self) -> String {
        let runs = self.runs();
        let mut names: Vec<&str> = Vec::new();
        for r in runs {
            for (name, _) in &r.steps {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(32);
        let mut out = String::from("cold cargo xtask test, seconds per step:\n");
        for (i, r) in runs.iter().enumerate() {
            let _ = writeln!(out, "  ({}) {}", i + 1, r.label);
        }
        let _ = writeln!(
            out,
            "  {:<width$}  {:>7}  {:>7}  {:>7}",
            "step", "(1)", "(2)", "(3)"
        );
        let cell = |r: &Run, name: &str| {
            r.steps
                .iter()
                .find(|(n, _)| n == name)
                .map_or("-".to_owned(), |(_, s)| format!("{s:.1}"))
        };
        for name in &names {
            let _ = writeln!(
                out,
                "  {name:<width$}  {:>7}  {:>7}  {:>7}",
                cell(runs[0], name),
                cell(runs[1], name),
                cell(runs[2], name)
            );
        }
        let rest = |r: &Run| r.total - r.steps.iter().map(|(_, s)| s).sum::<f64>();
        let _ = writeln!(
            out,
            "  {:<width$}  {:>7.1}  {:>7.1}  {:>7.1}",
            "xtask compile, overlap, the rest",
            rest(runs[0]),
            rest(runs[1]),
            rest(runs[2])
        );
        let _ = writeln!(
            out,
            "  {:<width$}  {:>7.1}  {:>7.1}  {:>7.1}",
            "whole process", runs[0].total, runs[1].total, runs[2].total
        );
        for (name, pick) in [
            (
                "its QEMU: floor, ms",
                (|q| q.0.median) as fn(&(Stats, Stats)) -> f64,
            ),
            ("its QEMU: four seed scenarios, ms", |q| q.1.median),
        ] {
            let ms = |r: &Run| {
                r.qemu
                    .as_ref()
                    .map_or("-".to_owned(), |q| format!("{:.1}", pick(q) * 1000.0))
            };
            let _ = writeln!(
                out,
                "  {name:<width$}  {:>7}  {:>7}  {:>7}",
                ms(runs[0]),
                ms(runs[1]),
                ms(runs[2])
            );
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let run = |r: &Run| {
            json!({
                "label": r.label,
                "commit": r.commit,
                "total_s": r.total,
                "steps": r.steps.iter().map(|(n, s)| json!({"step": n, "s": s})).collect::<Vec<_>>(),
                "qemu_floor_s": r.qemu.as_ref().map(|q| q.0.median),
                "qemu_seeds_s": r.qemu.as_ref().map(|q| q.1.median),
            })
        };
        json!({
            "baseline": run(&self.baseline),
            "head": run(&self.head),
            "head_warm_ccache": run(&self.warm_ccache),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_binary_in_the_build_steps_line() {
        let log = "[8/9] build ...\n\
                   [8/9] build: configured, qemu-system-x86_64 built (1386 steps), \
                   in /t/qemu/build-x86_64-0f2c (103.1s)\n";
        assert_eq!(
            built_binary(log),
            Some(Path::new("/t/qemu/build-x86_64-0f2c/qemu-system-x86_64").to_path_buf())
        );
        assert_eq!(built_binary("[8/9] build: failed (3.0s)\n"), None);
    }

    #[test]
    fn reads_the_finished_step_lines_only() {
        let log = "[1/9] host dependencies ...\n\
                   [1/9] host dependencies: all present (0.1s)\n\
                   [4/9] qmp-tests binary ... (building beside the steps after it)\n\
                   [8/9] build: configured, x (y) built (103.1s)\n\
                   [8/9] suite: failed (4.0s)\n\
                   [4/9] qmp-tests binary: target/release/qmp-tests (built beside the QEMU build) (41.5s)\n\
                   test test_x ... ok (0.10s)\n";
        assert_eq!(
            step_times(log),
            vec![
                ("host dependencies".to_owned(), 0.1),
                ("build".to_owned(), 103.1),
                ("suite".to_owned(), 4.0),
                ("qmp-tests binary".to_owned(), 41.5),
            ]
        );
    }
}
