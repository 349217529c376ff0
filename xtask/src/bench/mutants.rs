//! `cargo xtask bench --mutants`: the whole mutant catalogue through
//! `cargo xtask mutants` (first kill, as it runs by default), timed, with
//! its verdicts from the kill matrix it writes (`mutants.json`).

use anyhow::{Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::report::{timed, Stats};
use crate::interrupt::Controlled;
use crate::paths;

/// The run's time, and how many of its mutants were caught.
pub struct Measured {
    pub whole: Stats,
    pub caught: usize,
    pub total: usize,
}

pub fn measure(sh: &Shell) -> Result<Measured> {
    #[derive(Deserialize)]
    struct Matrix {
        mutants: Vec<Line>,
    }
    #[derive(Deserialize)]
    struct Line {
        outcome: String,
    }
    let cargo = paths::cargo();
    let _cd = sh.push_dir(paths::project_root());
    let command = cmd!(sh, "{cargo} xtask mutants").quiet().ignore_stdout();
    eprintln!("    cargo xtask mutants ...");
    let (secs, ()) = timed(|| command.spawn_run().context("running cargo xtask mutants"))?;
    let path = paths::target_dir().join("mutants/mutants.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let matrix: Matrix =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let caught = matrix.mutants.iter().filter(|l| l.outcome == "caught").count();
    let whole = Stats::of(&[secs]).context("one run")?;
    Ok(Measured { whole, caught, total: matrix.mutants.len() })
}
