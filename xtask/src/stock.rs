//! The stock leg's report. On a QEMU without monitor-add every scenario
//! fails, naming monitor-add, and that is what the leg checks: its own
//! JUnit report says the check passed and lists each scenario as skipped
//! with the suite's reason, so a green pipeline shows no failures. The
//! suite's own report, failures and all, stays beside it.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use junit_report::{Duration, TestCaseBuilder};
use qmp_tests::text::{clean, one_line};

/// What the suite says of a QEMU without monitor-add.
pub const REFUSAL: &str = "has no monitor-add";

/// The testcase that carries the leg's verdict.
pub const CHECK: &str = "refuses_stock_qemu";

/// One scenario of the suite's report.
struct Case {
    suite: String,
    name: String,
    /// The failure's message; `None` when the scenario did not fail.
    failure: Option<String>,
}

fn read(junit: &Path) -> Result<Vec<Case>> {
    let file = File::open(junit).with_context(|| format!("opening {}", junit.display()))?;
    let suites = junit_parser::from_reader(std::io::BufReader::new(file))
        .with_context(|| format!("parsing the JUnit report {}", junit.display()))?;
    let mut cases = Vec::new();
    for suite in &suites.suites {
        for case in &suite.cases {
            let failure = if case.status.is_failure() {
                Some(case.status.failure_as_ref().message.clone())
            } else if case.status.is_error() {
                Some(case.status.error_as_ref().message.clone())
            } else {
                None
            };
            cases.push(Case {
                suite: suite.name.clone(),
                name: case.original_name.clone(),
                failure,
            });
        }
    }
    Ok(cases)
}

/// What is wrong with the suite's report of a stock QEMU, if anything:
/// no scenario at all, or one that passed or failed for another reason.
fn problems(cases: &[Case]) -> Vec<String> {
    if cases.is_empty() {
        return vec!["the suite's report has no scenario".to_owned()];
    }
    cases
        .iter()
        .filter_map(|c| match &c.failure {
            Some(message) if message.contains(REFUSAL) => None,
            Some(message) => Some(format!("{} failed for another reason: {message}", c.name)),
            None => Some(format!("{} did not fail", c.name)),
        })
        .collect()
}

/// Reads the suite's report of the stock leg (`suite_junit`) and writes
/// the leg's own to `leg_junit`: one testcase [`CHECK`], passed when every
/// scenario failed naming monitor-add and failed otherwise, and every
/// scenario as skipped with its cause. An error when the check failed.
pub fn leg_report(suite_junit: &Path, leg_junit: &Path, leg: &str) -> Result<()> {
    let cases = read(suite_junit)?;
    let problems = problems(&cases);
    let suite_name = format!("{}.{leg}", qmp_tests::junit::SUITE);
    let mut check = if problems.is_empty() {
        let mut case = TestCaseBuilder::success(CHECK, Duration::ZERO);
        case.set_system_out(&clean(&format!(
            "every scenario ({}) failed naming monitor-add, as it must on a QEMU \
             without it; the suite's own report: {}",
            cases.len(),
            suite_junit.display()
        )));
        case
    } else {
        let message = one_line(&problems.join("; "));
        let mut case = TestCaseBuilder::failure(CHECK, Duration::ZERO, "failure", &clean(&message));
        case.set_system_out(&clean(&format!("the suite's own report: {}", suite_junit.display())));
        case
    };
    check.set_classname(&suite_name);
    let mut testcases = vec![check.build()];
    for case in &cases {
        let reason = format!(
            "stock QEMU, expected on this leg: {}",
            case.failure.as_deref().unwrap_or("the scenario did not fail")
        );
        let mut skipped =
            TestCaseBuilder::skipped_with_cause(&case.name, "skipped", &clean(&one_line(&reason)));
        skipped.set_classname(&case.suite);
        testcases.push(skipped.build());
    }
    crate::files::write_junit(leg_junit, &suite_name, testcases)?;
    if !problems.is_empty() {
        bail!(
            "leg {leg}: the suite should refuse a QEMU without monitor-add in every scenario: {}",
            problems.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as qmp-tests writes it on a stock QEMU, with the second
    /// scenario's message given.
    fn suite_report(dir: &Path, second: &str) -> std::path::PathBuf {
        let path = dir.join("suite.xml");
        let xml = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite id="0" name="monitor_hotplug.x86_64-stock" package="testsuite/monitor_hotplug.x86_64-stock" tests="2" errors="0" failures="2" hostname="h" timestamp="2026-01-01T00:00:00Z" time="0.1">
    <testcase name="test_hotplug_cycle" time="0.05" classname="monitor_hotplug.x86_64-stock">
      <failure type="failure" message="this QEMU (10.2.2, /q) has no monitor-add and no monitor-qmp object type"/>
    </testcase>
    <testcase name="test_errors" time="0.05" classname="monitor_hotplug.x86_64-stock">
      <failure type="failure" message="{second}"/>
    </testcase>
  </testsuite>
</testsuites>
"#
        );
        std::fs::write(&path, xml).unwrap();
        path
    }

    fn parsed(path: &Path) -> junit_parser::TestSuites {
        junit_parser::from_reader(std::io::BufReader::new(File::open(path).unwrap())).unwrap()
    }

    #[test]
    fn a_refusal_in_every_scenario_is_a_passed_check_and_skipped_scenarios() {
        let dir = tempfile::tempdir().unwrap();
        let suite = suite_report(
            dir.path(),
            "this QEMU (10.2.2, /q) has no monitor-add and no monitor-qmp object type",
        );
        let leg = dir.path().join("junit.xml");
        leg_report(&suite, &leg, "x86_64-stock").unwrap();
        let report = parsed(&leg);
        let failing = |r: &junit_parser::TestSuites| {
            r.suites
                .iter()
                .flat_map(|s| &s.cases)
                .filter(|c| c.status.is_failure() || c.status.is_error())
                .count()
        };
        assert_eq!(failing(&report), 0);
        assert_eq!(report.suites[0].failures, 0);
        let cases: Vec<_> = report.suites.iter().flat_map(|s| &s.cases).collect();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].original_name, CHECK);
        assert!(cases[0].status.is_success());
        for case in &cases[1..] {
            assert!(case.status.is_skipped(), "{}", case.original_name);
            let message = &case.status.skipped_as_ref().message;
            assert!(message.contains(REFUSAL), "{message}");
        }
        assert_eq!(report.suites[0].name, "monitor_hotplug.x86_64-stock");
        let xml = std::fs::read_to_string(&leg).unwrap();
        let stamp = xml.split("timestamp=\"").nth(1).unwrap();
        assert!(
            stamp.starts_with(|c: char| c.is_ascii_digit()) && stamp[..20].ends_with('Z'),
            "{stamp}"
        );
    }

    #[test]
    fn another_cause_fails_the_check_and_names_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let suite = suite_report(dir.path(), "QEMU died: signal 11");
        let leg = dir.path().join("junit.xml");
        let err = format!("{:#}", leg_report(&suite, &leg, "x86_64-stock").unwrap_err());
        assert!(err.contains("test_errors failed for another reason: QEMU died"), "{err}");
        let report = parsed(&leg);
        assert_eq!(report.suites[0].failures, 1, "the check, and only the check, fails");
        let check = &report.suites[0].cases[0];
        assert_eq!(check.original_name, CHECK);
        assert!(check.status.is_failure());
    }

    #[test]
    fn an_empty_report_is_no_refusal() {
        assert_eq!(problems(&[]), ["the suite's report has no scenario"]);
        let passed = [Case { suite: "s".into(), name: "test_x".into(), failure: None }];
        assert_eq!(problems(&passed), ["test_x did not fail"]);
    }
}
