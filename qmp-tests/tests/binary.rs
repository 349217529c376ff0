//! The qmp-tests binary: exit codes, output and reports, against stock
//! QEMU (which lacks monitor-add) and without any QEMU.

mod common;

use std::time::Duration;

use junit_parser::TestStatus;
use qmp_tests::scenarios;

use common::{leftovers, qemu, run_binary, STOCK};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn list_prints_every_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_binary(&["--list"], tmp.path(), LIMIT);
    assert!(run.status.success());
    let names: Vec<&str> = run.stdout.lines().collect();
    let expected: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&[][..], &["--qemu", "/q", "--scenario", "test_nope"], &["--bogus"]] {
        let run = run_binary(args, tmp.path(), LIMIT);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("qmp-tests:"), "{}", run.stderr);
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_binary(&["--help"], tmp.path(), LIMIT);
    assert!(run.status.success());
    for code in ["0 ", "1 ", "2 ", "3 "] {
        assert!(run.stdout.contains(&format!("    {code}")), "exit code {code} undocumented");
    }
}

#[test]
fn a_missing_qemu_exits_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_binary(&["--qemu", "/nonexistent/qemu-system-x86_64"], tmp.path(), LIMIT);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("/nonexistent/qemu-system-x86_64"), "{}", run.stderr);
    assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
}

#[test]
fn a_program_that_is_not_qemu_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let run = run_binary(&["--qemu", "/bin/true"], tmp.path(), LIMIT);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("did not start as QEMU"), "{}", run.stderr);
    assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));
}

#[test]
fn a_tmpdir_too_long_for_sockets_exits_2_naming_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("d".repeat(100));
    std::fs::create_dir(&long).unwrap();
    // The check comes before QEMU is started, so any executable will do.
    let run = run_binary(&["--qemu", "/bin/true"], &long, LIMIT);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("107-byte limit"), "{}", run.stderr);
    assert!(run.stderr.contains("set TMPDIR to a shorter directory"), "{}", run.stderr);
    assert!(leftovers(&long).is_empty(), "{:?}", leftovers(&long));
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn stock_qemu_fails_every_scenario_at_once_and_exits_3() {
    let qemu = qemu(STOCK);
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.xml");
    let args = [
        "--qemu",
        qemu.to_str().unwrap(),
        "--junit",
        report.to_str().unwrap(),
        "--property",
        "commit=0123abc",
    ];
    let run = run_binary(&args, tmp.path(), LIMIT);
    assert_eq!(run.status.code(), Some(3), "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    // The probe answers in well under a second; a slow run means some
    // scenario waited for a timeout instead.
    assert!(run.elapsed < Duration::from_secs(20), "took {:?}", run.elapsed);
    let total = scenarios::all().len();
    assert_eq!(run.stdout.lines().last(), Some(format!("0 passed, {total} failed").as_str()));
    for scenario in scenarios::all() {
        let line = format!("test {} ... FAILED", scenario.name);
        assert!(run.stdout.contains(&line), "no line {line:?} in\n{}", run.stdout);
    }
    assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));

    let xml = std::fs::read(&report).unwrap();
    let suites = junit_parser::from_reader(xml.as_slice()).unwrap();
    let suite = &suites.suites[0];
    assert_eq!(suite.cases.len(), total);
    let system_out = suite.system_out.as_deref().unwrap_or_default();
    assert!(system_out.contains("commit: 0123abc"), "{system_out}");
    assert!(system_out.contains("qemu_version: "), "{system_out}");
    for case in &suite.cases {
        let TestStatus::Failure(failure) = &case.status else {
            panic!("{} did not fail", case.original_name);
        };
        let expected_end =
            format!(", {}) has no monitor-add and no monitor-qmp object type", qemu.display());
        assert!(
            failure.message.starts_with("this QEMU (") && failure.message.ends_with(&expected_end),
            "{}",
            failure.message
        );
        // What the QEMU that refused said, whichever scenario asked it.
        assert!(failure.text.contains("main -> {\"execute\":\"query-commands\""), "{failure:?}");
    }
}

#[test]
#[ignore = "needs QEMU: set QMP_TESTS_QEMU and run with --include-ignored"]
fn tap_output_for_stock_qemu() {
    let qemu = qemu(STOCK);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_binary(
        &[
            "--qemu",
            qemu.to_str().unwrap(),
            "--tap",
            "--scenario",
            "test_many",
            "--scenario",
            "test_errors",
        ],
        tmp.path(),
        LIMIT,
    );
    assert_eq!(run.status.code(), Some(3));
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[..2], ["TAP version 13", "1..2"]);
    let results: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with("ok ") || line.starts_with("not ok "))
        .collect();
    assert_eq!(results.len(), 2);
    // Listed in suite order: test_errors comes before test_many.
    assert!(results[0].starts_with("not ok 1 - test_errors: this QEMU ("), "{}", results[0]);
    assert!(results[1].starts_with("not ok 2 - test_many: "), "{}", results[1]);
    assert!(lines.iter().all(|line| line.starts_with("ok ")
        || line.starts_with("not ok ")
        || line.starts_with('#')
        || line.starts_with("TAP version")
        || line.starts_with("1..")));
}
