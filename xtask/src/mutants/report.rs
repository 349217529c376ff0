//! The kill matrix: on the terminal, as JSON, and as JUnit (one testcase
//! per mutant, failing unless it was caught).

use std::path::Path;

use anyhow::Result;
use junit_report::TestCase;
use qmp_tests::text::{clean, one_line};
use serde_json::json;

use super::explore::Verdict as ExploreVerdict;
use super::{MutantOutcome, Plan, Verdict};

/// The failing scenarios of a suite's JUnit report, ` (qom)` marking the
/// QOM route's.
pub fn failing(junit: &Path) -> Result<Vec<String>> {
    let cases = crate::suite::read_report(junit)?.into_iter();
    let failed = cases.filter(|case| case.failure.is_some());
    let name = |case: crate::suite::Case| match case.qom {
        true => format!("{} (qom)", case.name),
        false => case.name,
    };
    Ok(failed.map(name).collect())
}

/// The verdict's detail for one line: who caught it, or why not.
pub fn detail(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Caught(by) => by.join(", "),
        Verdict::Missed => "the suite passed with the fault in place".to_owned(),
        Verdict::Unviable(why) | Verdict::NotApplied(why) => why.clone(),
        Verdict::Timeout(limit) => format!("no verdict within {:.0}s", limit.as_secs_f64()),
    }
}

/// Which routes of `scenario` caught the mutant: `c` commands, `q` QOM,
/// `x` both.
fn mark(verdict: &Verdict, scenario: &str) -> &'static str {
    let Verdict::Caught(by) = verdict else {
        return ".";
    };
    let commands = by.iter().any(|n| n == scenario);
    let qom = by.iter().any(|n| n.strip_suffix(" (qom)").is_some_and(|base| base == scenario));
    match (commands, qom) {
        (true, true) => "x",
        (true, false) => "c",
        (false, true) => "q",
        (false, false) => ".",
    }
}

/// The mutants, numbered, then a scenario x mutant table.
/// With `all_failures` unset, a mutant's column marks only the scenario
/// that stopped its run.
pub fn matrix(outcomes: &[MutantOutcome], scenarios: &[String], all_failures: bool) -> String {
    let mut out = String::from("\nmutants\n");
    for (i, o) in outcomes.iter().enumerate() {
        out.push_str(&format!(
            "  M{:<3} {:<36} {:<11} {}\n",
            i + 1,
            o.mutant.name,
            o.verdict.label(),
            o.mutant.fault
        ));
        if let Some(run) = &o.explore {
            out.push_str(&format!(
                "       {:<36} {:<11} {}\n",
                "explore",
                run.verdict.label(),
                run.verdict.detail()
            ));
        }
    }
    out.push_str(if all_failures {
        "\nkill matrix (x both routes, c commands, q qom)\n"
    } else {
        "\nfirst kills (x both routes, c commands, q qom; --all-failures gives every scenario that catches each)\n"
    });
    let width = scenarios.iter().map(|s| s.len()).max().unwrap_or(8);
    out.push_str(&format!("  {:<width$}", ""));
    for i in 0..outcomes.len() {
        out.push_str(&format!(" {:>3}", format!("M{}", i + 1)));
    }
    out.push('\n');
    let mut idle = Vec::new();
    for scenario in scenarios {
        let marks: Vec<&str> = outcomes.iter().map(|o| mark(&o.verdict, scenario)).collect();
        if marks.iter().all(|m| *m == ".") {
            idle.push(scenario.as_str());
        }
        out.push_str(&format!("  {scenario:<width$}"));
        for m in marks {
            out.push_str(&format!(" {m:>3}"));
        }
        out.push('\n');
    }
    // Explore's verdict, as one more catcher: `e` where it caught.
    if outcomes.iter().any(|o| o.explore.is_some()) {
        out.push_str(&format!("  {:<width$}", "(explore)"));
        for o in outcomes {
            let m = match &o.explore {
                Some(run) if matches!(run.verdict, ExploreVerdict::Caught { .. }) => "e",
                _ => ".",
            };
            out.push_str(&format!(" {m:>3}"));
        }
        out.push('\n');
    }
    if !idle.is_empty() {
        out.push_str(&format!(
            "\nscenarios that caught none of these mutants: {}\n",
            idle.join(", ")
        ));
    }
    out
}

pub fn json(
    outcomes: &[MutantOutcome],
    baseline_secs: f64,
    scenarios: &[String],
    plan: &Plan,
) -> String {
    let mutants: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let caught_by = match &o.verdict {
                Verdict::Caught(by) => by.clone(),
                _ => Vec::new(),
            };
            json!({
                "name": o.mutant.name,
                "file": o.mutant.file,
                "spec": o.mutant.spec,
                "fault": o.mutant.fault,
                "outcome": o.verdict.label(),
                "detail": detail(&o.verdict),
                "caught_by": caught_by,
                "build_secs": o.build_secs,
                "binary_cached": o.cached,
                "suite_secs": o.suite_secs,
                "explore": o.explore.as_ref().map(explore_json),
            })
        })
        .collect();
    let catching: Vec<_> = scenarios
        .iter()
        .map(|s| {
            let killed: Vec<&str> = outcomes
                .iter()
                .filter(|o| mark(&o.verdict, s) != ".")
                .map(|o| o.mutant.name.as_str())
                .collect();
            json!({ "scenario": s, "kills": killed })
        })
        .collect();
    let text = json!({
        "baseline_suite_secs": baseline_secs,
        // Without it, caught_by is the scenario that stopped the run.
        "all_failures": plan.all_failures,
        "shard": plan.shard.map(|s| s.to_string()),
        "explore_sequences": plan.explore,
        "mutants": mutants,
        "scenarios": catching,
    });
    format!("{text:#}\n")
}

/// Explore's verdict on a mutant: the kind of its first failure and the
/// number of the first failing sequence, or how many passed.
fn explore_json(run: &super::explore::Run) -> serde_json::Value {
    let mut value = json!({
        "outcome": run.verdict.label(),
        "detail": run.verdict.detail(),
        "secs": run.secs,
    });
    match &run.verdict {
        ExploreVerdict::Caught { kind, sequence, shrunk_ops, seed } => {
            value["kind"] = json!(kind);
            value["sequence"] = json!(sequence);
            value["shrunk_ops"] = json!(shrunk_ops);
            value["seed"] = json!(seed);
        }
        ExploreVerdict::Missed { sequences } => value["sequences"] = json!(sequences),
        ExploreVerdict::Timeout(_) | ExploreVerdict::Broken(_) | ExploreVerdict::Skipped(_) => {}
    }
    value
}

/// One testsuite `mutants`, one testcase per mutant.
pub fn junit(path: &Path, outcomes: &[MutantOutcome]) -> Result<()> {
    let cases = outcomes.iter().map(|o| {
        let name = clean(&o.mutant.name);
        let secs = o.build_secs + o.suite_secs;
        let duration = junit_report::Duration::seconds_f64(secs);
        let mut case = if o.verdict.is_success() {
            TestCase::success(&name, duration)
        } else {
            let diff = std::fs::read_to_string(&o.mutant.path).unwrap_or_default();
            let message = one_line(&format!("{}: {}", o.verdict.label(), detail(&o.verdict)));
            let mut case = TestCase::failure(&name, duration, o.verdict.label(), &clean(&message));
            case.set_system_out(&clean(&format!("spec: {}\n\n{diff}", o.mutant.spec)));
            case
        };
        case.set_classname("mutants");
        if let Verdict::Caught(by) = &o.verdict {
            case.set_system_out(&clean(&format!(
                "caught by: {}\nspec: {}",
                by.join(", "),
                o.mutant.spec
            )));
        }
        case
    });
    crate::files::write_junit(path, "mutants", cases.collect())
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::Mutant;
    use super::*;

    fn outcome(name: &str, verdict: Verdict) -> MutantOutcome {
        MutantOutcome {
            mutant: Mutant {
                name: name.to_owned(),
                path: "/nonexistent.diff".into(),
                file: "monitor/qmp.c".into(),
                spec: "spec line".into(),
                fault: "a fault".into(),
                program: Default::default(),
            },
            verdict,
            build_secs: 1.0,
            cached: false,
            suite_secs: 2.0,
            explore: None,
        }
    }

    #[test]
    fn the_matrix_marks_routes_and_names_idle_scenarios() {
        let outcomes = [
            outcome("a", Verdict::Caught(vec!["test_x".into(), "test_x (qom)".into()])),
            outcome("b", Verdict::Caught(vec!["test_y (qom)".into()])),
            outcome("c", Verdict::Missed),
        ];
        let scenarios = ["test_x".to_owned(), "test_y".into(), "test_z".into()];
        let text = matrix(&outcomes, &scenarios, true);
        let row = |s: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(s))
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("test_x"), "x . .");
        assert_eq!(row("test_y"), ". q .");
        assert!(text.contains("caught none of these mutants: test_z"), "{text}");
    }

    #[test]
    fn explore_is_one_more_row_and_a_json_field() {
        let mut caught = outcome("a", Verdict::Caught(vec!["test_x".into()]));
        caught.explore = Some(super::super::explore::Run {
            verdict: ExploreVerdict::Caught {
                kind: "output cut".into(),
                sequence: 3,
                shrunk_ops: 8,
                seed: "00000000000000ab".into(),
            },
            secs: 4.0,
        });
        let mut missed = outcome("b", Verdict::Caught(vec!["test_x".into()]));
        missed.explore = Some(super::super::explore::Run {
            verdict: ExploreVerdict::Missed { sequences: 200 },
            secs: 25.0,
        });
        let outcomes = [caught, missed];
        let scenarios = ["test_x".to_owned()];
        let text = matrix(&outcomes, &scenarios, false);
        let row = text.lines().find(|l| l.trim_start().starts_with("(explore)")).unwrap();
        assert_eq!(row.split_whitespace().skip(1).collect::<Vec<_>>(), ["e", "."]);
        assert!(text.contains("output cut at sequence 3"), "{text}");
        let plan = Plan { explore: Some(200), ..Plan::default() };
        let value: serde_json::Value =
            serde_json::from_str(&json(&outcomes, 1.0, &scenarios, &plan)).unwrap();
        assert_eq!(value["explore_sequences"], 200);
        assert_eq!(value["mutants"][0]["explore"]["kind"], "output cut");
        assert_eq!(value["mutants"][0]["explore"]["sequence"], 3);
        assert_eq!(value["mutants"][1]["explore"]["outcome"], "missed");
        assert_eq!(value["mutants"][1]["explore"]["sequences"], 200);
    }

    #[test]
    fn junit_fails_every_mutant_not_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let outcomes = [
            outcome("caught", Verdict::Caught(vec!["test_x".into()])),
            outcome("missed", Verdict::Missed),
            outcome("old", Verdict::NotApplied("patch does not apply\x1b[0m".into())),
        ];
        junit(&path, &outcomes).unwrap();
        let suites =
            junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(&path).unwrap()))
                .unwrap();
        let cases = &suites.suites[0].cases;
        assert_eq!(cases.len(), 3);
        assert!(cases[0].status.is_success());
        assert!(cases[1].status.is_failure());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains('\x1b'), "control characters are cleaned");
    }
}
