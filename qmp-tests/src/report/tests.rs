use std::time::Duration;

use super::{Console, Reporter, Tap};
use crate::outcome::{Failure, Outcome};
use crate::route::Route;

fn outcomes() -> Vec<Outcome> {
    let failure = |cause: &str| Failure {
        cause: cause.into(),
        transcript: "  1.0 ms main -> {}\n".into(),
        ..Failure::default()
    };
    vec![
        Outcome {
            name: "test_a".into(),
            duration: Duration::from_millis(120),
            notes: vec!["figures".into()],
            skipped: None,
            phases: Vec::new(),
            route: Route::Commands,
            failure: None,
        },
        Outcome {
            name: "test_b".into(),
            duration: Duration::from_millis(50),
            notes: vec![],
            skipped: None,
            phases: Vec::new(),
            route: Route::Commands,
            failure: Some(failure("same cause")),
        },
        Outcome {
            name: "test_c".into(),
            duration: Duration::ZERO,
            notes: vec![],
            skipped: None,
            phases: Vec::new(),
            route: Route::Commands,
            failure: Some(failure("same cause")),
        },
        Outcome::skipped("test_d", "no tree"),
    ]
}

fn render(reporter: &mut dyn Reporter, outcomes: &[Outcome]) {
    reporter.plan(outcomes.len(), "QEMU 10.2.2 (/q)");
    for outcome in outcomes {
        reporter.finished(outcome);
    }
    reporter.summary(outcomes);
}

#[test]
fn console_lines_details_and_totals() {
    let mut out = Vec::new();
    render(&mut Console::new(&mut out, false), &outcomes());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("test test_a ... ok (0.12s)\n    figures\n"), "{text}");
    assert!(text.contains("test test_b ... FAILED (0.05s)\n"), "{text}");
    assert!(text.contains("---- test_b ----\ncause: same cause\nQMP transcript"), "{text}");
    assert!(
        text.contains("---- test_c ----\ncause: same cause\n(details as for test_b)"),
        "{text}"
    );
    assert!(text.contains("test test_d ... skipped: no tree\n"), "{text}");
    assert!(!text.contains("---- test_d"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed, 1 skipped"));
}

#[test]
fn tap_plan_results_and_diagnostics() {
    let mut out = Vec::new();
    render(&mut Tap::new(&mut out, false), &outcomes());
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["TAP version 13", "1..4"]);
    assert!(lines.contains(&"ok 4 - test_d # SKIP no tree"));
    assert!(lines.contains(&"ok 1 - test_a"));
    assert!(lines.contains(&"not ok 2 - test_b: same cause"));
    assert!(lines.contains(&"not ok 3 - test_c: same cause"));
    assert!(lines.contains(&"# figures"));
    let stray = lines.iter().find(|line| {
        !(line.starts_with("ok ")
            || line.starts_with("not ok ")
            || line.starts_with('#')
            || line.starts_with("TAP version")
            || line.starts_with("1.."))
    });
    assert_eq!(stray, None, "a line TAP does not know");
}

#[test]
fn tap_failure_cause_is_no_directive() {
    let mut outcome = Outcome::skipped("test_e", "");
    outcome.skipped = None;
    outcome.failure =
        Some(Failure { cause: "skip # TODO not really".into(), ..Failure::default() });
    let mut out = Vec::new();
    render(&mut Tap::new(&mut out, false), &[outcome]);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines().any(|line| line == "not ok 1 - test_e: skip \\# TODO not really"),
        "{text}"
    );
}
