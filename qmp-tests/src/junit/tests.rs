//! Round trip through a real JUnit parser, with the text QEMU really
//! produces: colours, NULs, and CDATA terminators.

use std::time::Duration;

use junit_parser::TestStatus;
use junit_report::OffsetDateTime;

use super::{write, SuiteInfo, SUITE};
use crate::outcome::{Failure, Outcome};
use crate::route::Route;

fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome {
            name: "test_hotplug_cycle".into(),
            duration: Duration::from_millis(120),
            notes: vec![super::time_line("timing", "a reply", Duration::from_micros(2_500))],
            skipped: None,
            phases: vec![
                ("spawn to greeting", Duration::from_micros(14_250)),
                ("harness", Duration::from_micros(500)),
            ],
            route: Route::Commands,
            failure: None,
        },
        Outcome {
            name: "test_self_removal".into(),
            duration: Duration::from_millis(1500),
            notes: vec!["a note".into()],
            skipped: None,
            phases: Vec::new(),
            route: Route::Commands,
            failure: Some(Failure {
                cause:
                    "monitor-remove on the main monitor: QMP error GenericError: nope\nsecond line"
                        .into(),
                transcript: "  1.0 ms main -> {\"execute\":\"quit\"}\n".into(),
                stderr_tail: "\u{1b}[1;31merror\u{1b}[0m: bad\u{0}byte ]]> end".into(),
                sanitizer: None,
                log: None,
            }),
        },
        Outcome::skipped("test_qemu_python_client", "no tree\ngiven"),
    ]
}

/// Every character XML 1.0 allows (its "Char" production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

#[test]
fn report_round_trips_through_a_junit_parser() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.xml");
    let info = SuiteInfo {
        timestamp: OffsetDateTime::now_utc(),
        hostname: "builder".into(),
        properties: vec![
            ("qemu_binary".into(), "/opt/qemu".into()),
            ("commit".into(), "abc\u{7}123".into()),
        ],
        leg: None,
    };
    write(&path, &info, &outcomes()).unwrap();

    let xml = std::fs::read_to_string(&path).unwrap();
    if let Some(bad) = xml.chars().find(|&c| !xml_char(c)) {
        panic!("character {bad:?} is not allowed in XML 1.0");
    }
    let suites = junit_parser::from_reader(xml.as_bytes()).expect("the report parses as JUnit");
    assert_eq!(suites.suites.len(), 1);
    let suite = &suites.suites[0];
    assert_eq!(suite.name, SUITE);
    assert_eq!(suite.tests, 3);
    assert_eq!(suite.failures, 1);
    assert_eq!(suite.hostname.as_deref(), Some("builder"));
    assert!(suite.timestamp.is_some());
    let system_out = suite.system_out.as_deref().unwrap_or_default();
    assert!(system_out.contains("qemu_binary: /opt/qemu"), "{system_out}");
    assert!(system_out.contains("commit: abc\\x07123"), "{system_out}");

    let names: Vec<&str> = suite.cases.iter().map(|c| c.original_name.as_str()).collect();
    assert_eq!(names, ["test_hotplug_cycle", "test_self_removal", "test_qemu_python_client"]);
    let TestStatus::Skipped(skip) = &suite.cases[2].status else {
        panic!("third case should be skipped: {:?}", suite.cases[2].status);
    };
    assert_eq!(skip.message, "no tree | given");
    assert!(suite.cases.iter().all(|c| c.classname.as_deref() == Some(SUITE)));
    assert!(suite.cases[0].status.is_success());
    let out = suite.cases[0].system_out.as_deref().unwrap_or_default();
    assert_eq!(
        super::read_times(out, "phase"),
        [("spawn to greeting".to_owned(), 0.01425), ("harness".to_owned(), 0.0005)]
    );
    assert_eq!(super::read_times(out, "timing"), [("a reply".to_owned(), 0.0025)]);
    assert!((suite.cases[1].time - 1.5).abs() < 1e-9);

    let TestStatus::Failure(failure) = &suite.cases[1].status else {
        panic!("second case should fail: {:?}", suite.cases[1].status);
    };
    assert_eq!(
        failure.message,
        "monitor-remove on the main monitor: QMP error GenericError: nope | second line"
    );
    assert!(failure.text.contains("main -> {\"execute\":\"quit\"}"), "{}", failure.text);
    assert!(failure.text.contains("error: bad\\x00byte ]] > end"), "{}", failure.text);
}

#[test]
fn each_route_has_its_own_suite_and_classname() {
    let mut outcomes = outcomes();
    let qom = Outcome::skipped("test_hotplug_cycle", "nothing").on(Route::Qom);
    outcomes.push(Outcome { skipped: None, ..qom });
    let info = SuiteInfo {
        timestamp: OffsetDateTime::now_utc(),
        hostname: "builder".into(),
        properties: vec![],
        leg: None,
    };
    let xml = super::to_xml(&info, &outcomes).unwrap();
    let suites = junit_parser::from_reader(xml.as_slice()).unwrap();
    let names: Vec<&str> = suites.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [SUITE, "monitor_hotplug_qom"]);
    let qom = &suites.suites[1];
    assert_eq!(qom.cases.len(), 1);
    // The same test name as in the commands suite: history is per suite.
    assert_eq!(qom.cases[0].original_name, "test_hotplug_cycle");
    assert_eq!(qom.cases[0].classname.as_deref(), Some("monitor_hotplug_qom"));
}

#[test]
fn a_leg_names_the_suites_and_classnames_and_timestamps_are_whole_seconds() {
    let outcomes = vec![Outcome {
        skipped: None,
        ..Outcome::skipped("test_hotplug_cycle", "nothing").on(Route::Qom)
    }];
    let info = SuiteInfo {
        timestamp: OffsetDateTime::now_utc().replace_nanosecond(123_456_789).unwrap(),
        hostname: "builder".into(),
        properties: vec![],
        leg: Some("aarch64-asan-qom".into()),
    };
    let xml = String::from_utf8(super::to_xml(&info, &outcomes).unwrap()).unwrap();
    let suites = junit_parser::from_reader(xml.as_bytes()).unwrap();
    let names: Vec<&str> = suites.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["monitor_hotplug.aarch64-asan-qom", "monitor_hotplug_qom.aarch64-asan-qom"]);
    let case = &suites.suites[1].cases[0];
    assert_eq!(case.classname.as_deref(), Some("monitor_hotplug_qom.aarch64-asan-qom"));
    assert!(!xml.contains(".123456789"), "{xml}");
}
