//! The seed scenarios broken into phases (spawn to greeting, chardev-add,
//! monitor-add, connect, negotiate, command, remove, quit and reap), read
//! off each run's transcript by the qmp-tests library, so that where the
//! time goes is seen rather than guessed.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use qmp_tests::phases::PHASES;
use qmp_tests::route::Route;
use qmp_tests::runner::{self, RunConfig};
use qmp_tests::scenarios::{self, Settings};
use serde_json::{json, Value};

use super::stats::Stats;

/// One scenario's phases, each a median over the runs, in seconds.
pub struct Row {
    pub scenario: &'static str,
    pub phases: Vec<(&'static str, f64)>,
    pub total: f64,
}

/// Runs each of `names` alone `runs` times, in this process.
pub fn measure(qemu: &Path, names: &[&str], runs: usize) -> Result<Vec<Row>> {
    let config = RunConfig {
        qemu: qemu.to_path_buf(),
        jobs: 1,
        settings: Settings::default(),
        log_dir: None,
        janitor: None,
        routes: vec![Route::Commands],
        grace: runner::DEFAULT_GRACE,
    };
    let mut rows = Vec::new();
    for &name in names {
        let Some(scenario) = scenarios::find(name) else {
            bail!("no scenario {name}");
        };
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len()];
        let mut totals = Vec::new();
        for _ in 0..runs {
            crate::interrupt::check()?;
            let outcome = runner::run(&config, &[scenario], |_| {})
                .pop()
                .expect("one outcome per scenario");
            if let Some(failure) = &outcome.failure {
                bail!("{name} failed while timing its phases: {}", failure.cause);
            }
            for (i, (_, time)) in outcome.phases.iter().enumerate() {
                samples[i].push(time.as_secs_f64());
            }
            totals.push(outcome.duration.as_secs_f64());
        }
        let median = |s: &[f64]| Stats::of(s).map_or(0.0, |stats| stats.median);
        rows.push(Row {
            scenario: scenario.name,
            phases: PHASES
                .iter()
                .copied()
                .zip(samples.iter().map(|s| median(s)))
                .collect(),
            total: median(&totals),
        });
    }
    Ok(rows)
}

/// The phase that costs most over all `rows`, with its share of the sum.
pub fn heaviest(rows: &[Row]) -> Option<(&'static str, f64, f64)> {
    let sum: f64 = rows
        .iter()
        .map(|row| row.phases.iter().map(|p| p.1).sum::<f64>())
        .sum();
    PHASES
        .iter()
        .map(|&phase| {
            let time: f64 = rows
                .iter()
                .flat_map(|row| row.phases.iter())
                .filter(|(name, _)| *name == phase)
                .map(|(_, time)| time)
                .sum();
            (phase, time)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(phase, time)| (phase, time, if sum > 0.0 { time / sum } else { 0.0 }))
}

/// A table: a row per scenario, a column per phase, in milliseconds.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<32}", "phase medians, ms");
    for phase in PHASES {
        let _ = write!(out, " {:>9}", short(phase));
    }
    let _ = writeln!(out, " {:>9}", "scenario");
    for row in rows {
        let _ = write!(out, "{:<32}", row.scenario);
        for (_, time) in &row.phases {
            let _ = write!(out, " {:>9.2}", time * 1000.0);
        }
        let _ = writeln!(out, " {:>9.2}", row.total * 1000.0);
    }
    out
}

pub fn to_json(rows: &[Row]) -> Value {
    rows.iter()
        .map(|row| {
            let phases: serde_json::Map<String, Value> = row
                .phases
                .iter()
                .map(|(name, time)| (name.to_string(), json!(time)))
                .collect();
            json!({ "scenario": row.scenario, "phases": phases, "total": row.total })
        })
        .collect()
}

/// Column headings short enough for a terminal.
fn short(phase: &str) -> &str {
    match phase {
        "spawn to greeting" => "spawn",
        "chardev-add" => "chr-add",
        "monitor-add" => "mon-add",
        "negotiate" => "negot.",
        "quit and reap" => "quit",
        other => other,
    }
}
