//! The JUnit XML report: one testsuite per route, "monitor_hotplug" for
//! the monitor-add commands and "monitor_hotplug_qom" for monitor-qmp
//! objects, each with the scenarios' own names, so that dashboards keep
//! their history and GitLab sees no repeated names.
//!
//! junit-report escapes markup but passes control characters through, so
//! every string handed to it goes through [`clean`] first.

use std::{fs, io::Write, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, Result};
use junit_report::{
    OffsetDateTime, Report, ReportBuilder, TestCase, TestCaseBuilder, TestSuiteBuilder,
};

use crate::{
    outcome::Outcome,
    route::Route,
    text::{clean, one_line},
};

/// The commands route's suite name, and its testcases' classname: GitLab
/// shows the classname as the suite.
pub const SUITE: &str = "monitor_hotplug";

/// Facts about the run that go in the report.
pub struct SuiteInfo {
    pub timestamp: OffsetDateTime,
    pub hostname: String,
    /// Written as "key: value" lines in the suite's system-out, since
    /// junit-report 0.9 writes no `<properties>`.
    pub properties: Vec<(String, String)>,
    /// The CI leg this run is (`--leg`): it names the testsuites, so that
    /// the legs of one pipeline keep a history each and never collide.
    pub leg: Option<String>,
}

/// A route's testsuite name and classname, with the leg after a dot.
pub fn suite_name(route: Route, leg: Option<&str>) -> String {
    match leg {
        Some(leg) => format!("{}.{leg}", route.suite()),
        None => route.suite().to_owned(),
    }
}

pub fn build(info: &SuiteInfo, outcomes: &[Outcome]) -> Report {
    let properties: String = info
        .properties
        .iter()
        .map(|(key, value)| format!("{}: {}\n", one_line(key), one_line(value)))
        .collect();
    let mut report = ReportBuilder::new();
    for route in Route::ALL {
        let cases: Vec<&Outcome> = outcomes.iter().filter(|o| o.route == route).collect();
        // The commands route's suite is always there, if only to carry
        // the run's facts.
        if cases.is_empty() && route != Route::Commands {
            continue;
        }
        let name = suite_name(route, info.leg.as_deref());
        let mut suite = TestSuiteBuilder::new(&name)
            // Whole seconds: JUnit readers choke on nanoseconds.
            .set_timestamp(info.timestamp.replace_nanosecond(0).unwrap_or(info.timestamp))
            .set_system_out(&clean(&properties))
            .add_testcases(cases.into_iter().map(|o| testcase(o, &name)))
            .build();
        suite.hostname = clean(&info.hostname);
        report.add_testsuite(suite);
    }
    report.build()
}

fn testcase(outcome: &Outcome, classname: &str) -> TestCase {
    let name = clean(&outcome.name);
    let time = junit_report::Duration::seconds_f64(outcome.duration.as_secs_f64());
    let mut builder = match (&outcome.failure, &outcome.skipped) {
        (None, Some(reason)) => {
            TestCaseBuilder::skipped_with_cause(&name, "skipped", &clean(&one_line(reason)))
        }
        (None, None) => TestCaseBuilder::success(&name, time),
        (Some(failure), _) => {
            let message = clean(&one_line(&failure.cause));
            let mut builder = TestCaseBuilder::failure(&name, time, "failure", &message);
            builder.set_trace(&clean(&failure.body()));
            builder
        }
    };
    builder.set_classname(classname);
    // Where the time went, one `phase NAME: MS ms` line each, after the
    // notes: for whoever reads the report, `cargo xtask bench` included.
    let lines: Vec<String> = (outcome.notes.iter().cloned()).chain(phase_lines(outcome)).collect();
    if !lines.is_empty() {
        builder.set_system_out(&clean(&lines.join("\n")));
    }
    builder.build()
}

/// The lines of [`testcase`]'s output that give its phases.
pub fn phase_lines(outcome: &Outcome) -> impl Iterator<Item = String> + '_ {
    outcome.phases.iter().map(|(name, time)| time_line("phase", name, *time))
}

/// A `KIND NAME: MS ms` line of a testcase's output: a phase, or a time a
/// scenario measured itself (kind `timing`, written as a note).
pub fn time_line(kind: &str, name: &str, time: std::time::Duration) -> String {
    format!("{kind} {name}: {:.3} ms", time.as_secs_f64() * 1000.0)
}

/// The [`time_line`]s of `kind` in a testcase's output, in seconds.
pub fn read_times(system_out: &str, kind: &str) -> Vec<(String, f64)> {
    let time = |line: &str| {
        let (name, ms) = line.strip_prefix(kind)?.strip_prefix(' ')?.rsplit_once(": ")?;
        Some((name.to_owned(), ms.strip_suffix(" ms")?.parse::<f64>().ok()? / 1000.0))
    };
    system_out.lines().filter_map(time).collect()
}

pub fn to_xml(info: &SuiteInfo, outcomes: &[Outcome]) -> Result<Vec<u8>> {
    let mut xml = Vec::new();
    build(info, outcomes).write_xml(&mut xml).context("rendering the JUnit report")?;
    Ok(xml)
}

/// Writes the report to `path` atomically: a reader never sees half a
/// file, and a failed run leaves the previous report intact.
pub fn write(path: &Path, info: &SuiteInfo, outcomes: &[Outcome]) -> Result<()> {
    let xml = to_xml(info, outcomes)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!("creating a temp file in {} for the JUnit report", dir.display())
    })?;
    file.write_all(&xml)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing the JUnit report next to {}", path.display()))?;
    // NamedTempFile is 0600; a report is meant to be read by CI tooling.
    fs::set_permissions(file.path(), fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting permissions on {}", file.path().display()))?;
    file.persist(path)
        .with_context(|| format!("renaming the JUnit report into place at {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
