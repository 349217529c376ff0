//! `cargo xtask mutants --explore N`: beside the suite, `qmp-tests
//! explore` runs the first N sequences of seed 0 on each mutant's binary
//! and stops at its first failure, so that the kill matrix says which
//! faults the generated sequences catch and which only a scenario does.
//!
//! A mutant explore misses is a finding, not a failed run: the suite's
//! verdict alone decides the exit status.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qmp_tests::cli::ExploreArgs;
use serde::Deserialize;

use crate::interrupt;

/// How long a failure may be shrunk: the kind and the sequence number
/// are what the comparison needs; a short sequence is a bonus.
pub const SHRINK_SECS: u64 = 20;

/// Explore's `--time`: the fixed set ends by its count, never by time
/// (explore's own default, 60 s, would cut it short on a slow machine);
/// the limit the run is given ends a hang.
const FIXED_SET_SECS: u64 = 24 * 3600;

/// How explore ended on one binary.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A sequence failed: the first failure's kind, the number of the
    /// first failing sequence, and the shrunk sequence's length.
    Caught { kind: String, sequence: usize, shrunk_ops: usize, seed: String },
    /// Every sequence passed.
    Missed { sequences: usize },
    /// No verdict within the limit.
    Timeout(Duration),
    /// Explore itself could not run: its words.
    Broken(String),
    /// Not run on this mutant: why.
    Skipped(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub verdict: Verdict,
    pub secs: f64,
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Caught { .. } => "caught",
            Verdict::Missed { .. } => "missed",
            Verdict::Timeout(_) => "timeout",
            Verdict::Broken(_) => "broken",
            Verdict::Skipped(_) => "skipped",
        }
    }

    /// One line: what failed and after how many sequences, or why not.
    pub fn detail(&self) -> String {
        match self {
            Verdict::Caught { kind, sequence, shrunk_ops, seed } => format!(
                "{kind} at sequence {sequence}, shrunk to {shrunk_ops} operations (--replay {seed})"
            ),
            Verdict::Missed { sequences } => format!("{sequences} sequences passed"),
            Verdict::Timeout(limit) => format!("no verdict within {:.0}s", limit.as_secs_f64()),
            Verdict::Broken(why) | Verdict::Skipped(why) => why.clone(),
        }
    }
}

/// The part of `qmp-tests explore --summary` this reads.
#[derive(Deserialize)]
struct Summary {
    sequences: usize,
    found: Vec<Found>,
}

#[derive(Deserialize)]
struct Found {
    kind: String,
    sequence: usize,
    shrunk_ops: usize,
    seed: String,
}

/// The options of one explore run: the fixed set, one failure, its
/// reports in `dir`.
pub fn options(sequences: usize, jobs: usize, dir: &Path) -> ExploreArgs {
    ExploreArgs {
        seed: Some(0),
        sequences: Some(sequences),
        time: FIXED_SET_SECS,
        jobs: Some(jobs),
        max_failures: 1,
        shrink_time: SHRINK_SECS,
        reruns: 2,
        summary: Some(dir.join("explore.json")),
        junit: Some(dir.join("explore-junit.xml")),
        out: Some(dir.to_owned()),
        ..ExploreArgs::default()
    }
}

/// Runs explore on `qemu`, its output in `dir/explore.log`.
pub fn run(
    qmp_tests: &Path,
    qemu: &Path,
    sequences: usize,
    dir: &Path,
    limit: Option<Duration>,
) -> Result<Run> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let log_path = dir.join("explore.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = std::process::Command::new(qmp_tests);
    command
        .arg("explore")
        .arg("--qemu")
        .arg(qemu)
        .args(options(sequences, jobs, dir).to_args())
        .stdout(log.try_clone().context("sharing explore's log")?)
        .stderr(log);
    let start = Instant::now();
    let running = interrupt::spawn(&mut command, "qmp-tests explore")?;
    let Some(status) = super::wait_limited(running, limit)? else {
        let verdict = Verdict::Timeout(limit.unwrap_or_default());
        return Ok(Run { verdict, secs: start.elapsed().as_secs_f64() });
    };
    let secs = start.elapsed().as_secs_f64();
    let summary = dir.join("explore.json");
    let verdict = match status.code() {
        Some(0 | 1) => read(&summary)?,
        _ => Verdict::Broken(format!(
            "qmp-tests explore could not run ({status}); see {}",
            log_path.display()
        )),
    };
    Ok(Run { verdict, secs })
}

/// The verdict a summary file gives.
fn read(path: &Path) -> Result<Verdict> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    verdict(&text).with_context(|| format!("parsing explore's summary {}", path.display()))
}

fn verdict(text: &str) -> Result<Verdict> {
    let summary: Summary = serde_json::from_str(text)?;
    Ok(match summary.found.into_iter().next() {
        Some(f) => Verdict::Caught {
            kind: f.kind,
            sequence: f.sequence,
            shrunk_ops: f.shrunk_ops,
            seed: f.seed,
        },
        None => Verdict::Missed { sequences: summary.sequences },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use qmp_tests::cli::ExploreCli;

    #[test]
    fn a_summary_with_a_failure_is_a_catch() {
        let text = r#"{"seed": "0000000000000000", "sequences": 14, "operations": 300,
            "secs": 3.5, "first_failure": 12, "failures": {"output cut": 1},
            "found": [{"kind": "output cut", "sequence": 12, "seed": "725e4b0689c80412",
            "ops": 30, "shrunk_ops": 8, "at": "op 8", "message": "m",
            "reruns_failed": 2, "reruns": 2}]}"#;
        let v = verdict(text).unwrap();
        assert_eq!(v.label(), "caught");
        assert_eq!(
            v.detail(),
            "output cut at sequence 12, shrunk to 8 operations (--replay 725e4b0689c80412)"
        );
    }

    #[test]
    fn a_summary_without_one_is_a_miss() {
        let text = r#"{"seed": "0000000000000000", "sequences": 200, "operations": 4000,
            "secs": 25.0, "first_failure": null, "failures": {}, "found": []}"#;
        assert_eq!(verdict(text).unwrap(), Verdict::Missed { sequences: 200 });
    }

    #[test]
    fn the_run_is_the_fixed_set_stopping_at_one_failure() {
        let opts = options(200, 2, Path::new("/out/m"));
        assert_eq!(
            (opts.seed, opts.sequences, opts.time, opts.jobs, opts.max_failures),
            (Some(0), Some(200), FIXED_SET_SECS, Some(2), 1)
        );
        assert_eq!(opts.summary.as_deref(), Some(Path::new("/out/m/explore.json")));
        // What qmp-tests explore parses back from the arguments.
        let argv = ["explore", "--qemu", "/q"].map(std::ffi::OsString::from);
        let back = ExploreCli::try_parse_from(argv.into_iter().chain(opts.to_args())).unwrap();
        assert_eq!(back.explore, opts);
    }
}
