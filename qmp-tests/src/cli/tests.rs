use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{CommandFactory, Parser};

use super::*;

/// `line` split at whitespace, as qmp-tests' arguments.
fn parse(line: &str) -> Result<SuiteCli, String> {
    let argv = std::iter::once("qmp-tests").chain(line.split_whitespace());
    SuiteCli::try_parse_from(argv).map_err(|err| err.to_string())
}

/// docs/commands.md has the help as the binary prints it.
#[test]
fn the_command_reference_has_the_help() {
    let doc = include_str!("../../../docs/commands.md");
    let help =
        |command: clap::Command, name: &str| match command.try_get_matches_from([name, "--help"]) {
            Err(err) => err.render().to_string(),
            Ok(_) => unreachable!("--help ends the parse"),
        };
    for help in
        [help(SuiteCli::command(), "qmp-tests"), help(ExploreCli::command(), "qmp-tests explore")]
    {
        assert!(
            doc.contains(&format!("```\n{help}```\n")),
            "docs/commands.md lacks a qmp-tests --help as printed; run `cargo xtask docs`"
        );
    }
}

#[test]
fn the_declarations_are_consistent() {
    SuiteCli::command().debug_assert();
    ExploreCli::command().debug_assert();
}

#[test]
fn options_with_separate_and_inline_values() {
    let args = parse(
        "--qemu=/q --scenario test_soak --jobs 3 --timeout=5 --wait=0.5 --property commit=abc=def --tap",
    )
    .unwrap();
    assert_eq!(args.qemu, Some(PathBuf::from("/q")));
    assert_eq!(args.suite.scenarios, ["test_soak"]);
    assert_eq!(args.suite.jobs, Some(3));
    assert_eq!(args.suite.timeout, Some(5));
    assert_eq!(args.suite.wait, Some(Duration::from_millis(500)));
    assert_eq!(args.properties, [("commit".to_string(), "abc=def".to_string())]);
    assert!(args.tap);
    assert_eq!(args.program, Program::System);
    assert_eq!(parse("--qemu q --program=storage-daemon").unwrap().program, Program::StorageDaemon);
    assert!(parse("--qemu q --program qsd").unwrap_err().contains("storage-daemon"));
}

#[test]
fn mistakes_are_reported() {
    for (args, needle) in [
        ("", "--qemu"),
        ("--qemu /q --jobs 0", "positive whole number"),
        ("--qemu /q --wait 0", "positive number of seconds"),
        ("--qemu /q --scenario test_nope", "test_nope"),
        ("--qemu /q --property =x", "KEY=VALUE"),
        ("--qemu /q --leg a/b", "a leg name is"),
        ("--qemu /q --route both", "commands, qom, all"),
        ("--qemu /q --python p", "--qemu-src"),
        ("--qemu /q --qemu-src /nonexistent", "python/qemu/qmp"),
        ("--qemu /q --jobs 1 --jobs 2", "multiple times"),
        ("--qemu", "a value is required"),
        ("--bogus", "--bogus"),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(parse("--list").is_ok());
}

#[test]
fn require_route_is_repeatable_and_implies_the_route() {
    let args = parse("--qemu q --route commands --require-route qom --require-route qom").unwrap();
    assert_eq!(args.routes(), vec![Route::Commands, Route::Qom]);
    assert_eq!(parse("--qemu q").unwrap().routes(), Route::ALL);
    assert!(parse("--qemu q --require-route all").is_err());
}

#[test]
fn first_lists_scenarios_and_routes_in_order() {
    let args = parse("--qemu q --fail-fast --first test_soak/qom,test_greeting --first=test_many")
        .unwrap();
    assert!(args.suite.fail_fast);
    let picks: Vec<(&str, Option<Route>)> =
        args.suite.first.iter().map(|p| (p.scenario.as_str(), p.route)).collect();
    assert_eq!(
        picks,
        [("test_soak", Some(Route::Qom)), ("test_greeting", None), ("test_many", None)]
    );
    assert!(parse("--qemu q --first test_nope").unwrap_err().contains("test_nope"));
    assert!(parse("--qemu q --first test_soak/all").unwrap_err().contains("commands or qom"));
    assert!(!parse("--qemu q").unwrap().suite.fail_fast);
}

/// What `to_args` writes parses back to the same options: the xtask's
/// forwarding loses nothing, a non-UTF-8 path included.
#[test]
fn to_args_parses_back_to_the_same_options() {
    use std::os::unix::ffi::OsStringExt;
    let odd = PathBuf::from(OsString::from_vec(b"/tmp/caf\xe9-q".to_vec()));
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("python/qemu/qmp")).unwrap();
    let cli = SuiteCli {
        qemu: Some(odd.clone()),
        program: Program::StorageDaemon,
        junit: Some(PathBuf::from("-report.xml")),
        suite: SuiteArgs {
            scenarios: vec!["test_soak".into(), "test_greeting".into()],
            jobs: Some(2),
            route: Some(Routes::Qom),
            timeout: Some(7),
            wait: Some(Duration::from_millis(2500)),
            soak: Some(3),
            first: vec![Pick::parse("test_soak/qom").unwrap()],
            fail_fast: true,
        },
        require_routes: vec![Route::Qom],
        log_dir: Some(odd),
        qemu_src: Some(src.path().to_owned()),
        python: Some("python3".into()),
        qmp_python: Some("/venv/bin/python".into()),
        properties: vec![("k".into(), "v=w".into())],
        leg: Some("x86_64".into()),
        tap: true,
        list: false,
        verbose: true,
    };
    let argv = std::iter::once(OsString::from("qmp-tests")).chain(cli.to_args());
    assert_eq!(SuiteCli::try_parse_from(argv).unwrap(), cli);

    let explore = ExploreArgs {
        seed: Some(0xabc),
        replay: Some(1),
        chardevs: vec![explore::model::Kind::Tcp, explore::model::Kind::Pty],
        summary: Some("s.json".into()),
        wait: Some(Duration::from_secs(3)),
        junit: Some("j.xml".into()),
        jobs: Some(1),
        ..ExploreArgs::default()
    };
    let argv = ["explore", "--qemu", "/q"].map(OsString::from);
    let back = ExploreCli::try_parse_from(argv.into_iter().chain(explore.to_args())).unwrap();
    assert_eq!(back.explore, explore);
}

#[test]
fn explore_defaults_and_mistakes() {
    let opts = ExploreArgs::default().options("/q".into());
    assert_eq!(opts.time, Duration::from_secs(60));
    assert_eq!((opts.max_ops, opts.reruns, opts.max_failures), (40, 10, 3));
    assert_eq!(opts.chardevs.len(), 2);
    let parse = |line: &str| {
        let argv = ["explore", "--qemu", "/q"].into_iter().chain(line.split_whitespace());
        ExploreCli::try_parse_from(argv).map_err(|err| err.to_string())
    };
    use explore::model::Kind;
    let args = parse("--seed 0xff --sockets unix").unwrap();
    assert_eq!(args.explore.seed, Some(255));
    assert_eq!(args.explore.chardevs, [Kind::Unix]);
    assert_eq!(parse("--chardevs=unix,pty").unwrap().explore.chardevs, [Kind::Unix, Kind::Pty]);
    for (args, needle) in [
        ("--time 0", "positive whole number"),
        ("--seed xyz", "a seed in hex"),
        ("--sockets unix,udp", "unix, tcp and pty"),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
