//! What each step did, as one JSON line per step in the log directory,
//! and the report made from those lines and the steps' JUnit files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{first_line, short, BisectResult};

const RECORDS: &str = "steps.jsonl";

/// Seconds a step may spend outside configure, build and suite.
const OVERHEAD_BUDGET: f64 = 2.0;

/// What one step did.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Record {
    pub commit: String,
    pub subject: String,
    pub build_secs: f64,
    pub test_secs: f64,
    /// Everything but configure, build and suite.
    pub overhead_secs: f64,
    pub outcome: String,
    pub verdict: String,
    pub detail: String,
    /// The step's JUnit report, when the suite ran.
    #[serde(with = "crate::path_serde::option")]
    pub junit: Option<PathBuf>,
}

impl Record {
    /// Steps run one after another, so appending a line each keeps them
    /// in order.
    pub fn append(&self, log_dir: &Path) -> Result<()> {
        let path = log_dir.join(RECORDS);
        let line = serde_json::to_string(self)
            .with_context(|| format!("encoding the record of step {}", short(&self.commit)))?;
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))
    }
}

/// The records of a bisect's steps, in the order they ran.
pub(super) fn read(log_dir: &Path) -> Result<Vec<Record>> {
    let path = log_dir.join(RECORDS);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        read => read.with_context(|| format!("reading {}", path.display()))?,
    };
    serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing a step record in {}", path.display()))
}

/// The first failing (or erroring) scenario of a JUnit report and the
/// first line of its message; `(+N)` counts the others.
fn first_failure(junit: &Path) -> Result<Option<(String, String)>> {
    let cases = crate::suite::read_report(junit)?.into_iter();
    let mut failing = cases.filter_map(|c| Some((c.name, first_line(&c.failure?).to_owned())));
    let Some((name, cause)) = failing.next() else {
        return Ok(None);
    };
    let more = failing.count();
    let name = if more > 0 { format!("{name} (+{more})") } else { name };
    Ok(Some((name, cause)))
}

/// The first bad commit and a table of the steps, with the failing
/// scenario and its cause from each step's JUnit.
pub(super) fn render(
    first_bad: Option<&str>,
    result: &BisectResult,
    steps: &[Record],
) -> Result<String> {
    let mut out = match (first_bad, result) {
        (Some(desc), _) => format!("first bad {desc}\n\n"),
        (None, BisectResult::Candidates(list)) => format!(
            "no single first bad commit (skipped commits in the way); one of:\n  {}\n\n",
            list.join("\n  ")
        ),
        _ => "the bisect did not finish\n\n".to_owned(),
    };
    let header = ["commit", "build s", "test s", "xtask s", "outcome", "failing scenario", "cause"];
    let mut rows = vec![header.map(str::to_owned)];
    for s in steps {
        let failure = s.junit.as_deref().map(first_failure).transpose()?.flatten();
        let (scenario, cause) = failure.unwrap_or_else(|| (String::new(), s.detail.clone()));
        rows.push([
            short(&s.commit).to_owned(),
            format!("{:.1}", s.build_secs),
            format!("{:.2}", s.test_secs),
            format!("{:.2}", s.overhead_secs),
            format!("{} ({})", s.verdict, s.outcome),
            scenario,
            cause,
        ]);
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left; the last column unpadded.
            let _ = match i {
                1..=3 => write!(line, "{cell:>w$}  "),
                6 => write!(line, "{cell}"),
                _ => write!(line, "{cell:<w$}  "),
            };
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for s in steps.iter().filter(|s| s.overhead_secs > OVERHEAD_BUDGET) {
        let _ = writeln!(
            out,
            "note: step {} spent {:.1}s in the xtask itself, over the {OVERHEAD_BUDGET}s budget",
            short(&s.commit),
            s.overhead_secs
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_in_order_and_the_report_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("step-bbbbbbbbbbbb.xml");
        std::fs::write(
            &junit,
            r#"<testsuites><testsuite name="monitor_hotplug" tests="2">
<testcase classname="monitor_hotplug" name="test_hotplug_cycle"/>
<testcase classname="monitor_hotplug" name="test_self_removal">
<failure message="no reply before end-of-file&#10;details">x</failure></testcase>
</testsuite></testsuites>"#,
        )
        .unwrap();
        let record = |commit: &str, verdict: &str, outcome: &str, junit: Option<PathBuf>| Record {
            commit: commit.repeat(40),
            subject: "s".into(),
            build_secs: 1.0,
            test_secs: 2.0,
            overhead_secs: 0.5,
            outcome: outcome.into(),
            verdict: verdict.into(),
            detail: if junit.is_none() { "x.c:1: error: y".into() } else { String::new() },
            junit,
        };
        record("a", "skip", "does not build", None).append(dir.path()).unwrap();
        record("b", "bad", "failed", Some(junit)).append(dir.path()).unwrap();
        let steps = read(dir.path()).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(short(&steps[0].commit), "aaaaaaaaaaaa");
        let text =
            render(Some("commit bbbb"), &BisectResult::Found("bbbb".into()), &steps).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "first bad commit bbbb");
        assert!(lines[3].starts_with("aaaaaaaaaaaa"), "{text}");
        assert!(
            lines[3].ends_with("skip (does not build)                     x.c:1: error: y"),
            "{text}"
        );
        assert!(
            lines[4]
                .ends_with("bad (failed)           test_self_removal  no reply before end-of-file"),
            "{text}"
        );
        assert!(!text.contains("note:"), "{text}");
    }
}
