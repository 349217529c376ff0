//! The bench's results: each figure's runs summarised, the machine they
//! came from, a table for people and the same as JSON for tools (`cargo
//! xtask docs --bench` renders docs/benchmarks.md from it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

/// A figure's runs, summarised. Times are in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub runs: usize,
    #[serde(rename = "median_s")]
    pub median: f64,
    #[serde(rename = "min_s")]
    pub min: f64,
    #[serde(rename = "max_s")]
    pub max: f64,
}

impl Stats {
    /// `None` for no samples; the median of an even count is the mean of
    /// the middle two, so that two runs do not report the faster one.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = (sorted.get((n.max(1) - 1) / 2)? + sorted.get(n / 2)?) / 2.0;
        let (min, max) = (sorted[0], sorted[n - 1]);
        Some(Stats { runs: n, median, min, max })
    }

    /// Every run less `offset`, e.g. a whole pipeline less its suite.
    pub fn minus(self, offset: f64) -> Stats {
        let (median, min, max) = (self.median - offset, self.min - offset, self.max - offset);
        Stats { median, min, max, ..self }
    }
}

/// Runs `f` `runs` times, each returning its own measured seconds;
/// Ctrl-C is looked for between runs.
pub fn sample(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        crate::interrupt::check()?;
        samples.push(f()?);
    }
    Stats::of(&samples).context("a figure of no runs")
}

/// Seconds taken by `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed().as_secs_f64(), value))
}

#[derive(Serialize)]
pub struct Figure {
    /// A stable name for tools reading the JSON.
    pub key: String,
    pub label: String,
    #[serde(flatten)]
    pub stats: Stats,
    /// Median over the floor's median, for figures that contain a QEMU.
    pub floor_ratio: Option<f64>,
}

/// A limit a figure is held to: reported, never enforced.
#[derive(Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    /// "s" for seconds, "x" for a ratio.
    pub unit: &'static str,
    /// How the limit was arrived at.
    pub basis: String,
    pub pass: bool,
}

/// One seed scenario's phases (see `qmp_tests::phases`), medians.
#[derive(Serialize)]
pub struct PhaseRow {
    pub scenario: String,
    pub phases: BTreeMap<String, f64>,
    pub total: f64,
}

/// The machine the figures came from: they mean little without it.
#[derive(Serialize)]
pub struct Host {
    pub nproc: usize,
    pub cpu: String,
    pub memory_kib: u64,
    pub kernel: String,
    pub qemu: String,
}

impl Host {
    /// Reads /proc; what it cannot read is "unknown", not an error.
    pub fn read(qemu: String) -> Host {
        let proc = |name: &str| std::fs::read_to_string(name).unwrap_or_default();
        let kernel = proc("/proc/sys/kernel/osrelease").trim().to_owned();
        let memory = proc_field(&proc("/proc/meminfo"), "MemTotal").and_then(|v| {
            let kib = v.split_whitespace().next()?;
            kib.parse().ok()
        });
        Host {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: proc_field(&proc("/proc/cpuinfo"), "model name").unwrap_or("unknown".into()),
            memory_kib: memory.unwrap_or(0),
            kernel: if kernel.is_empty() { "unknown".into() } else { kernel },
            qemu,
        }
    }
}

/// The value of the first `key: value` line of a /proc file.
fn proc_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}

#[derive(Serialize)]
pub struct Report {
    /// UTC, ISO 8601.
    pub date: String,
    pub machine: Host,
    pub runs: usize,
    pub figures: Vec<Figure>,
    pub schema_bytes: usize,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    pub seed_phases_s: Vec<PhaseRow>,
    /// The cold pipeline runs, when asked for.
    pub cold: Option<serde_json::Value>,
}

impl Report {
    /// Writes `latest.json` and a dated copy into `dir`; returns the
    /// report as `cargo xtask docs --bench` renders it, and both paths.
    pub fn write(&self, dir: &Path) -> Result<(String, PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_value(self)?;
        let text = format!("{json:#}\n");
        let stamp: String = self.date.chars().filter(|c| !matches!(c, '-' | ':')).collect();
        let (latest, dated) = (dir.join("latest.json"), dir.join(format!("bench-{stamp}.json")));
        for path in [&dated, &latest] {
            crate::files::write_atomic(path, &text)?;
        }
        Ok((crate::docs::benchmarks_md(&json)?, latest, dated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_runs() {
        let odd = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.runs, odd.median, odd.min, odd.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(Stats::of(&[0.5]).unwrap().median, 0.5);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(odd.minus(1.5).max, 1.5);
    }

    #[test]
    fn the_report_is_written_as_the_docs_read_it() {
        let stats = Stats::of(&[0.02]).unwrap();
        let machine = Host::read("10.2.2".into());
        let (key, label) = ("floor".to_owned(), "floor".to_owned());
        let figures = vec![Figure { key, label, stats, floor_ratio: Some(1.0) }];
        let phases = BTreeMap::from([("harness".to_owned(), 0.001)]);
        let seed_phases_s = vec![PhaseRow { scenario: "test_x".into(), phases, total: 0.012 }];
        let date = "2000-02-29T12:00:00Z".to_owned();
        let (targets, notes) = (Vec::new(), vec!["a note".to_owned()]);
        let report = Report {
            date,
            machine,
            runs: 1,
            figures,
            schema_bytes: 9,
            targets,
            notes,
            seed_phases_s,
            cold: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let (md, latest, dated) = report.write(dir.path()).unwrap();
        assert_eq!(dated.file_name().unwrap(), "bench-20000229T120000Z.json");
        assert_eq!(std::fs::read(latest).unwrap(), std::fs::read(dated).unwrap());
        assert!(md.contains("| floor | 1 | 20.0 ms | 20.0 ms | 20.0 ms | 1.00 |"), "{md}");
        assert!(md.contains("| test_x | - | - | - | - | - | - | - | - | - | 1.0 | 12.0 |"), "{md}");
        let cpuinfo = "a: 1\nmodel name\t: X @ 2GHz\n";
        assert_eq!(proc_field(cpuinfo, "model name").as_deref(), Some("X @ 2GHz"));
    }
}
