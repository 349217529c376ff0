//! `cargo xtask bench --mutants`: the mutant catalogue run three ways,
//! and the runs set against each other. The full run (`--all-failures`,
//! every scenario on every mutant) is the reference and, as the last
//! kill matrix, the history the others order their scenarios by; the
//! first-kill run is what `cargo xtask mutants` does by default, and is
//! timed; the shards 1/3, 2/3 and 3/3 together must give exactly its
//! mutants and verdicts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::stats::{sample, timed, Stats};
use crate::interrupt::Controlled;
use crate::paths;

/// The shards the bench runs.
pub const SHARDS: usize = 3;

/// One mutant's line of a kill matrix (`mutants.json`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Line {
    pub outcome: String,
    pub caught_by: Vec<String>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    outcome: String,
    caught_by: Vec<String>,
}

#[derive(Deserialize)]
struct Matrix {
    mutants: Vec<Entry>,
}

/// A kill matrix by mutant name.
pub type Verdicts = BTreeMap<String, Line>;

pub fn read(path: &Path) -> Result<Verdicts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let matrix: Matrix =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(matrix
        .mutants
        .into_iter()
        .map(|e| {
            let line = Line {
                outcome: e.outcome,
                caught_by: e.caught_by,
            };
            (e.name, line)
        })
        .collect())
}

/// The mutants whose first-kill verdict differs from the full run's: a
/// different outcome, a catcher the full run did not name, or a mutant
/// only one of them ran.
pub fn differing(full: &Verdicts, fast: &Verdicts) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in full {
        match fast.get(name) {
            None => out.push(format!("{name}: not in the first-kill run")),
            Some(got) if got.outcome != want.outcome => out.push(format!(
                "{name}: {} in the first-kill run, {} in the full run",
                got.outcome, want.outcome
            )),
            Some(got) => {
                let strays: Vec<&str> = got
                    .caught_by
                    .iter()
                    .filter(|s| !want.caught_by.contains(s))
                    .map(String::as_str)
                    .collect();
                if !strays.is_empty() {
                    out.push(format!(
                        "{name}: caught by {} in the first-kill run, which the full run did not name",
                        strays.join(", ")
                    ));
                }
            }
        }
    }
    for name in fast.keys().filter(|n| !full.contains_key(*n)) {
        out.push(format!("{name}: not in the full run"));
    }
    out
}

/// Where the shards' union differs from the whole run: a mutant missing,
/// in two shards, or with another outcome.
pub fn shards_differ(whole: &Verdicts, shards: &[Verdicts]) -> Vec<String> {
    let mut union: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for shard in shards {
        for (name, line) in shard {
            union.entry(name).or_default().push(line);
        }
    }
    let mut out = Vec::new();
    for (name, want) in whole {
        match union.remove(name.as_str()).as_deref() {
            None | Some([]) => out.push(format!("{name}: in no shard")),
            Some([got]) if got.outcome != want.outcome => out.push(format!(
                "{name}: {} in its shard, {} in the whole run",
                got.outcome, want.outcome
            )),
            Some([_]) => {}
            Some(many) => out.push(format!("{name}: in {} shards", many.len())),
        }
    }
    for name in union.keys() {
        out.push(format!("{name}: in a shard, not in the whole run"));
    }
    out
}

/// What the three ways gave.
pub struct Measured {
    pub full: Stats,
    pub fast: Stats,
    /// Each shard's run, in order.
    pub shards: Vec<f64>,
    pub differing: Vec<String>,
    pub shards_differ: Vec<String>,
    pub caught: usize,
    pub total: usize,
}

/// Runs the catalogue in full, then first-kill (warm: every build in
/// ccache from the full run), then in shards.
pub fn measure(sh: &Shell) -> Result<Measured> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let _cd = sh.push_dir(paths::project_root());
    let dir = paths::target_dir().join("mutants");
    let run = |args: &[&str]| -> Result<f64> {
        let what = format!("cargo xtask mutants {}", args.join(" "));
        eprintln!("    {what} ...");
        let (secs, ()) = timed(|| {
            cmd!(sh, "{cargo} xtask mutants {args...}")
                .quiet()
                .ignore_stdout()
                .spawn_run()
                .with_context(|| format!("running {what}"))
        })?;
        eprintln!("    {what}: {secs:.1} s");
        Ok(secs)
    };
    let full = sample(1, || run(&["--all-failures"]))?;
    let full_verdicts = read(&dir.join("mutants.json"))?;
    let fast = sample(1, || run(&[]))?;
    let fast_verdicts = read(&dir.join("mutants.json"))?;
    let mut shards = Vec::new();
    let mut shard_verdicts = Vec::new();
    for index in 1..=SHARDS {
        let shard = format!("{index}/{SHARDS}");
        shards.push(run(&["--shard", &shard])?);
        let report = dir
            .join(format!("shard-{index}-of-{SHARDS}"))
            .join("mutants.json");
        shard_verdicts.push(read(&report)?);
    }
    let caught = fast_verdicts
        .values()
        .filter(|l| l.outcome == "caught")
        .count();
    Ok(Measured {
        full,
        fast,
        shards,
        differing: differing(&full_verdicts, &fast_verdicts),
        shards_differ: shards_differ(&fast_verdicts, &shard_verdicts),
        caught,
        total: fast_verdicts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(lines: &[(&str, &str, &[&str])]) -> Verdicts {
        lines
            .iter()
            .map(|(name, outcome, by)| {
                let line = Line {
                    outcome: outcome.to_string(),
                    caught_by: by.iter().map(|s| s.to_string()).collect(),
                };
                (name.to_string(), line)
            })
            .collect()
    }

    #[test]
    fn a_first_kill_among_the_full_runs_catchers_is_the_same_verdict() {
        let full = verdicts(&[
            ("a", "caught", &["test_x", "test_y (qom)"]),
            ("b", "caught", &["test_x"]),
            ("c", "missed", &[]),
            ("d", "caught", &["test_z"]),
        ]);
        let fast = verdicts(&[
            ("a", "caught", &["test_y (qom)"]),
            ("b", "caught", &["test_w"]),
            ("c", "caught", &["test_x"]),
            ("e", "caught", &["test_x"]),
        ]);
        assert_eq!(
            differing(&full, &fast),
            [
                "b: caught by test_w in the first-kill run, which the full run did not name",
                "c: caught in the first-kill run, missed in the full run",
                "d: not in the first-kill run",
                "e: not in the full run",
            ]
        );
        assert!(differing(&full, &full).is_empty());
    }

    #[test]
    fn shards_must_cover_the_whole_run_once_with_its_outcomes() {
        let whole = verdicts(&[
            ("a", "caught", &["test_x"]),
            ("b", "caught", &["test_x"]),
            ("c", "missed", &[]),
        ]);
        let good = [
            verdicts(&[("a", "caught", &["test_y"]), ("c", "missed", &[])]),
            verdicts(&[("b", "caught", &["test_x"])]),
        ];
        assert!(shards_differ(&whole, &good).is_empty());
        let bad = [
            verdicts(&[("a", "caught", &[]), ("c", "caught", &["test_x"])]),
            verdicts(&[("a", "caught", &[]), ("d", "caught", &[])]),
        ];
        assert_eq!(
            shards_differ(&whole, &bad),
            [
                "a: in 2 shards",
                "b: in no shard",
                "c: caught in its shard, missed in the whole run",
                "d: in a shard, not in the whole run",
            ]
        );
    }
}
