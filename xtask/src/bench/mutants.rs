//! `cargo xtask bench --mutants`: the mutant catalogue run two ways, their
//! kill matrices (`mutants.json`, which each run writes) set against each
//! other. The full run (`--all-failures`) is the reference and, as the
//! last kill matrix, the history the first-kill run (what `cargo xtask
//! mutants` does by default) orders its scenarios by. That shards add up
//! to the whole run is `cargo xtask mutants`' own tests' to show.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::report::{timed, Stats};
use crate::interrupt::Controlled;
use crate::paths;

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Line {
    name: String,
    outcome: String,
    caught_by: Vec<String>,
}

/// A kill matrix by mutant name.
pub type Verdicts = BTreeMap<String, Line>;

fn read(path: &Path) -> Result<Verdicts> {
    #[derive(Deserialize)]
    struct Matrix {
        mutants: Vec<Line>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let matrix: Matrix =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(matrix
        .mutants
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect())
}

/// The mutants whose first-kill verdict differs from the full run's: a
/// different outcome, a catcher the full run did not name, or a mutant
/// only one of them ran.
pub fn differing(full: &Verdicts, fast: &Verdicts) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in full {
        let Some(got) = fast.get(name) else {
            out.push(format!("{name}: not in the first-kill run"));
            continue;
        };
        let strays: Vec<&str> = (got.caught_by.iter())
            .filter(|s| !want.caught_by.contains(s))
            .map(String::as_str)
            .collect();
        if got.outcome != want.outcome {
            let (got, want) = (&got.outcome, &want.outcome);
            out.push(format!(
                "{name}: {got} in the first-kill run, {want} in the full run"
            ));
        } else if !strays.is_empty() {
            let strays = strays.join(", ");
            out.push(format!(
                "{name}: caught by {strays} in the first-kill run, which the full run did not name"
            ));
        }
    }
    let extra = fast.keys().filter(|n| !full.contains_key(*n));
    out.extend(extra.map(|name| format!("{name}: not in the full run")));
    out
}

/// What the two ways gave.
pub struct Measured {
    pub full: Stats,
    pub fast: Stats,
    pub differing: Vec<String>,
    pub caught: usize,
    pub total: usize,
}

/// Runs the catalogue in full, then first-kill (warm: every build in
/// ccache from the full run), then in shards, each once.
pub fn measure(sh: &Shell) -> Result<Measured> {
    let cargo = paths::cargo();
    let _cd = sh.push_dir(paths::project_root());
    let dir = paths::target_dir().join("mutants");
    let run = |args: &[&str], report: &Path| -> Result<(f64, Verdicts)> {
        let what = format!("cargo xtask mutants {}", args.join(" "));
        eprintln!("    {what} ...");
        let command = cmd!(sh, "{cargo} xtask mutants {args...}")
            .quiet()
            .ignore_stdout();
        let (secs, ()) = timed(|| {
            command
                .spawn_run()
                .with_context(|| format!("running {what}"))
        })?;
        eprintln!("    {what}: {secs:.1} s");
        Ok((secs, read(report)?))
    };
    let (full, full_verdicts) = run(&["--all-failures"], &dir.join("mutants.json"))?;
    let (fast, fast_verdicts) = run(&[], &dir.join("mutants.json"))?;
    let caught = fast_verdicts
        .values()
        .filter(|l| l.outcome == "caught")
        .count();
    Ok(Measured {
        full: Stats::of(&[full]).context("one run")?,
        fast: Stats::of(&[fast]).context("one run")?,
        differing: differing(&full_verdicts, &fast_verdicts),
        caught,
        total: fast_verdicts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(lines: &[(&str, &str, &[&str])]) -> Verdicts {
        let line = |(name, outcome, by): &(&str, &str, &[&str])| Line {
            name: name.to_string(),
            outcome: outcome.to_string(),
            caught_by: by.iter().map(|s| s.to_string()).collect(),
        };
        lines.iter().map(|l| (l.0.to_owned(), line(l))).collect()
    }

    #[test]
    fn first_kills_are_set_against_the_full_run() {
        let full = verdicts(&[
            ("a", "caught", &["test_x", "test_y (qom)"]),
            ("b", "caught", &["test_x"]),
            ("c", "missed", &[]),
        ]);
        let fast = verdicts(&[
            ("a", "caught", &["test_y (qom)"]),
            ("b", "caught", &["test_w"]),
            ("e", "caught", &["test_x"]),
        ]);
        assert_eq!(
            differing(&full, &fast),
            [
                "b: caught by test_w in the first-kill run, which the full run did not name",
                "c: not in the first-kill run",
                "e: not in the full run",
            ]
        );
        assert!(differing(&full, &full).is_empty());
    }
}
