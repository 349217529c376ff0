//! The bench's results: a table for people, the same as JSON for tools.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::files::write_atomic;

use super::host::Host;
use super::stats::Stats;

/// One measured figure.
pub struct Figure {
    /// A stable name for tools reading the JSON.
    pub key: String,
    pub label: String,
    pub stats: Stats,
    /// Median over the floor's median, for figures that contain a QEMU.
    pub floor_ratio: Option<f64>,
}

/// A limit a figure is held to: reported, never enforced.
pub struct Target {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    /// "s" for seconds, "x" for a ratio.
    pub unit: &'static str,
    /// How the limit was arrived at, for the table.
    pub basis: String,
    pub pass: bool,
}

impl Target {
    /// Passes when `value <= limit`.
    pub fn within(name: &str, value: f64, limit: f64, unit: &'static str, basis: String) -> Target {
        Target {
            name: name.to_owned(),
            value,
            limit,
            unit,
            basis,
            pass: value <= limit,
        }
    }

    /// Passes when `value >= limit`.
    pub fn at_least(
        name: &str,
        value: f64,
        limit: f64,
        unit: &'static str,
        basis: String,
    ) -> Target {
        Target {
            pass: value >= limit,
            ..Target::within(name, value, limit, unit, basis)
        }
    }

    /// Passes when `value < limit`.
    pub fn under(name: &str, value: f64, limit: f64, unit: &'static str, basis: String) -> Target {
        Target {
            pass: value < limit,
            ..Target::within(name, value, limit, unit, basis)
        }
    }
}

pub struct Report {
    /// UTC, ISO 8601.
    pub date: String,
    pub host: Host,
    pub runs: usize,
    pub figures: Vec<Figure>,
    pub schema_bytes: usize,
    pub targets: Vec<Target>,
    /// Said under the table: fewer runs, what a figure includes.
    pub notes: Vec<String>,
    /// The seed scenarios' phases.
    pub phases: Vec<super::phases::Row>,
    /// The cold pipeline runs, when asked for.
    pub cold: Option<super::cold::Cold>,
}

impl Report {
    pub fn table(&self) -> String {
        let width = self
            .figures
            .iter()
            .map(|f| f.label.len())
            .max()
            .unwrap_or(0)
            .max("figure".len());
        let mut out = String::new();
        let _ = writeln!(out, "bench {} on {}", self.date, self.host.summary());
        let _ = writeln!(
            out,
            "{:<width$}  {:>4}  {:>9}  {:>9}  {:>9}  {:>7}",
            "figure", "runs", "median", "min", "max", "x floor"
        );
        for f in &self.figures {
            let ratio = f.floor_ratio.map_or(String::new(), |r| format!("{r:.2}"));
            let row = format!(
                "{:<width$}  {:>4}  {:>9}  {:>9}  {:>9}  {:>7}",
                f.label,
                f.stats.runs,
                seconds(f.stats.median),
                seconds(f.stats.min),
                seconds(f.stats.max),
                ratio
            );
            // No trailing blanks where a figure has no floor ratio.
            let _ = writeln!(out, "{}", row.trim_end());
        }
        let _ = writeln!(out, "query-qmp-schema reply: {} bytes", self.schema_bytes);
        let _ = writeln!(out, "\ntargets (medians):");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  {:<4}  {}: {} against {} ({})",
                if t.pass { "pass" } else { "MISS" },
                t.name,
                value(t.value, t.unit),
                value(t.limit, t.unit),
                t.basis
            );
        }
        if !self.phases.is_empty() {
            let _ = writeln!(out, "\n{}", super::phases::table(&self.phases).trim_end());
        }
        if let Some(cold) = &self.cold {
            let _ = writeln!(out, "\n{}", cold.table().trim_end());
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for note in &self.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "key": f.key,
                    "label": f.label,
                    "runs": f.stats.runs,
                    "median_s": f.stats.median,
                    "min_s": f.stats.min,
                    "max_s": f.stats.max,
                    "floor_ratio": f.floor_ratio,
                })
            })
            .collect();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "value": t.value,
                    "limit": t.limit,
                    "unit": t.unit,
                    "basis": t.basis,
                    "pass": t.pass,
                })
            })
            .collect();
        json!({
            "date": self.date,
            "machine": self.host.to_json(),
            "runs": self.runs,
            "figures": figures,
            "schema_bytes": self.schema_bytes,
            "targets": targets,
            "notes": self.notes,
            "seed_phases_s": super::phases::to_json(&self.phases),
            "cold": self.cold.as_ref().map(super::cold::Cold::to_json),
        })
    }

    /// Writes `latest.json` and a dated copy into `dir`; returns both.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut text = serde_json::to_string_pretty(&self.to_json())?;
        text.push('\n');
        let stamp: String = self
            .date
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        let dated = dir.join(format!("bench-{stamp}.json"));
        let latest = dir.join("latest.json");
        write_atomic(&dated, &text)?;
        write_atomic(&latest, &text)?;
        Ok((latest, dated))
    }
}

/// Milliseconds below a second, where the differences that matter are.
pub fn seconds(secs: f64) -> String {
    if secs.abs() < 1.0 {
        format!("{:.1} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

fn value(v: f64, unit: &str) -> String {
    match unit {
        "s" => seconds(v),
        _ => format!("{v:.2}{unit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let stats = |median| Stats {
            runs: 3,
            median,
            min: median / 2.0,
            max: median * 2.0,
        };
        Report {
            date: "2000-02-29T12:00:00Z".into(),
            host: Host {
                nproc: 2,
                cpu: "Example CPU".into(),
                memory_kib: 2 * 1024 * 1024,
                kernel: "6.1.0".into(),
                qemu: "10.2.2".into(),
            },
            runs: 3,
            figures: vec![
                Figure {
                    key: "floor".into(),
                    label: "floor".into(),
                    stats: stats(0.02),
                    floor_ratio: Some(1.0),
                },
                Figure {
                    key: "pipeline.rebuild".into(),
                    label: "rebuild and suite".into(),
                    stats: stats(42.0),
                    floor_ratio: None,
                },
            ],
            schema_bytes: 241_003,
            targets: vec![
                Target::under("warm overhead", 3.5, 3.0, "s", "fixed".into()),
                Target::within("parse", 1.05, 1.1, "x", "raw 2.0 ms".into()),
            ],
            notes: vec!["pipeline: 3 runs".into()],
            phases: vec![super::super::phases::Row {
                scenario: "test_x",
                phases: qmp_tests::phases::PHASES
                    .iter()
                    .map(|&phase| (phase, 0.001))
                    .collect(),
                total: 0.012,
            }],
            cold: None,
        }
    }

    #[test]
    fn table_lines_up_and_marks_misses() {
        let table = report().table();
        let expected = "\
bench 2000-02-29T12:00:00Z on 2 x Example CPU, 2.0 GiB, Linux 6.1.0, QEMU 10.2.2
figure             runs     median        min        max  x floor
floor                 3    20.0 ms    10.0 ms    40.0 ms     1.00
rebuild and suite     3    42.00 s    21.00 s    84.00 s
query-qmp-schema reply: 241003 bytes

targets (medians):
  MISS  warm overhead: 3.50 s against 3.00 s (fixed)
  pass  parse: 1.05x against 1.10x (raw 2.0 ms)

phase medians, ms                    spawn     probe   chr-add   mon-add   connect    negot.   command    remove      quit   harness  scenario
test_x                                1.00      1.00      1.00      1.00      1.00      1.00      1.00      1.00      1.00      1.00     12.00

notes:
  - pipeline: 3 runs
";
        assert_eq!(table, expected);
    }

    #[test]
    fn json_has_the_machine_figures_and_targets() {
        let json = report().to_json();
        assert_eq!(json["machine"]["nproc"], 2);
        assert_eq!(json["machine"]["cpu"], "Example CPU");
        assert_eq!(json["figures"][0]["key"], "floor");
        assert_eq!(json["figures"][0]["median_s"], 0.02);
        assert_eq!(json["figures"][1]["floor_ratio"], Value::Null);
        assert_eq!(json["targets"][0]["pass"], false);
        assert_eq!(json["targets"][1]["pass"], true);
        assert_eq!(json["targets"][1]["unit"], "x");
        assert_eq!(json["schema_bytes"], 241_003);
        assert_eq!(json["seed_phases_s"][0]["phases"]["monitor-add"], 0.001);
    }

    #[test]
    fn write_puts_latest_and_a_dated_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (latest, dated) = report().write(dir.path()).unwrap();
        assert_eq!(dated.file_name().unwrap(), "bench-20000229T120000Z.json");
        let text = std::fs::read_to_string(&latest).unwrap();
        assert_eq!(text, std::fs::read_to_string(&dated).unwrap());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report().to_json());
    }
}
