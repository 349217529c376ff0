//! The bench's results: each figure's runs summarised, the machine they
//! came from, a table for people and the same as JSON for tools (`cargo
//! xtask docs --bench` renders docs/benchmarks.md from it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// A figure's runs, summarised. Times are in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub runs: usize,
    pub median: f64,
    pub min: f64,
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
        Some(Stats { runs: n, median, min: sorted[0], max: sorted[n - 1] })
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
    let samples = (0..runs).map(|_| crate::interrupt::check().and_then(|()| f()));
    Stats::of(&samples.collect::<Result<Vec<_>>>()?).context("a figure of no runs")
}

/// Seconds taken by `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    f().map(|value| (start.elapsed().as_secs_f64(), value))
}

/// The machine the figures came from, read off /proc (what it cannot
/// read is "unknown" or 0): the figures mean little without it.
pub fn host(qemu: String) -> Value {
    let proc = |name: &str| std::fs::read_to_string(name).unwrap_or_default();
    let field = |text: String, key: &str| {
        let mut fields = text.lines().filter_map(|line| line.split_once(':'));
        fields.find(|(name, _)| name.trim() == key).map(|(_, value)| value.trim().to_owned())
    };
    let memory = field(proc("/proc/meminfo"), "MemTotal");
    let kib: Option<u64> = memory.and_then(|v| v.split_whitespace().next()?.parse().ok());
    let kernel = proc("/proc/sys/kernel/osrelease").trim().to_owned();
    json!({
        "nproc": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": field(proc("/proc/cpuinfo"), "model name").unwrap_or("unknown".into()),
        "memory_kib": kib.unwrap_or(0),
        "kernel": if kernel.is_empty() { "unknown".into() } else { kernel },
        "qemu": qemu,
    })
}

/// The report as `cargo xtask docs --bench` renders it, and where it went.
pub type Written = (String, PathBuf, PathBuf);

/// Writes `report` as `latest.json` and a copy named after its date into
/// `dir`.
pub fn write(report: &Value, dir: &Path) -> Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = report["date"].as_str().unwrap_or_default().replace(['-', ':'], "");
    let (latest, dated) = (dir.join("latest.json"), dir.join(format!("bench-{stamp}.json")));
    for path in [&dated, &latest] {
        crate::files::write_atomic(path, &format!("{report:#}\n"))?;
    }
    Ok((crate::docs::benchmarks_md(report)?, latest, dated))
}

#[test]
fn medians_of_odd_even_and_no_runs() {
    let odd = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((odd.runs, odd.median, odd.min, odd.max), (3, 2.0, 1.0, 3.0));
    assert_eq!(Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    assert_eq!(Stats::of(&[]), None);
    assert_eq!(odd.minus(1.5).max, 1.5);
}
