//! Command-line parsing. Few enough options that a parser of our own is
//! shorter than configuring one.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use qmp_tests::{program::Program, route::Route, runner::Pick, scenarios};

pub const HELP: &str = "\
qmp-tests: test QEMU's dynamic QMP monitors (monitor-add, monitor-remove,
query-monitors) against a qemu-system or qemu-storage-daemon binary.

Usage:
    qmp-tests --qemu PATH [OPTIONS]
    qmp-tests --list

Options:
    --qemu PATH            the qemu-system binary to test
    --program PROGRAM      what --qemu is: system (qemu-system-TARGET, the
                           default) or storage-daemon (qemu-storage-daemon;
                           the scenarios that need what only qemu-system
                           has are reported skipped, with the reason)
    --junit FILE           write a JUnit XML report to FILE
    --scenario NAME        run only NAME (repeatable; see --list)
    --jobs N               scenarios run at once (default: number of CPUs)
    --route ROUTE          how monitors are added and removed: commands
                           (monitor-add, monitor-remove), qom (object-add
                           and object-del of monitor-qmp objects), or all
                           (default: every route this QEMU has); the
                           scenarios of a route asked for that this QEMU
                           lacks are reported skipped, with the reason
    --require-route ROUTE  a route this QEMU must have (commands or qom;
                           repeatable; implies --route for it): if it
                           lacks it, each of the route's scenarios fails
                           with that cause instead of being skipped
    --timeout SECS         deadline per scenario (default: 60; test_soak
                           gets one per 200 cycles)
    --wait SECS            limit for each wait for a reply or an event
                           (default: 100 x the scenario's QEMU start, from
                           spawn to a negotiated main monitor, at least 2;
                           fractions allowed)
    --soak N               full hotplug cycles in test_soak (default: 200)
    --log-dir DIR          keep each QEMU's stderr as
                           DIR/NAME.ROUTE.stderr.log (ROUTE: commands, qom)
    --qemu-src DIR         the QEMU source tree the binary was built from:
                           test_qemu_python_client drives a monitor with its
                           python/qemu/qmp library (skipped without it)
    --python PATH          the Python that runs that library (default:
                           python3)
    --qmp-python PATH      a Python with the standalone qemu.qmp package
                           installed: test_qmp_asyncio_client drives
                           monitors with its asyncio QMPClient (skipped
                           without it)
    --property KEY=VALUE   record KEY: VALUE in the JUnit report (repeatable)
    --leg NAME             the CI leg this run is: the JUnit testsuites and
                           classnames become monitor_hotplug.NAME (and
                           monitor_hotplug_qom.NAME)
    --first LIST           start these first, in this order: scenario names
                           separated by commas, each NAME (every route) or
                           NAME/ROUTE; the others follow in the usual order
    --fail-fast            stop at the first failing scenario: nothing more
                           starts, the scenarios still running are stopped,
                           and both are reported skipped, naming it
    --tap                  print TAP version 13 instead of the usual lines
    --list                 print the scenario names and exit
    -h, --help             print this help

Exit status:
    0   every scenario passed
    1   at least one scenario failed
    2   usage error, or the harness could not run (e.g. the binary does not
        exist or does not start as QEMU, or the report cannot be written)
    3   this QEMU has none of the routes asked for (no monitor-add, or
        monitor-remove, query-monitors; no monitor-qmp object type):
        every scenario is reported failed with that one-line cause
";

#[derive(Debug, Default)]
pub struct Args {
    pub qemu: Option<PathBuf>,
    pub program: Program,
    pub junit: Option<PathBuf>,
    pub scenarios: Vec<String>,
    pub jobs: Option<usize>,
    pub routes: Vec<Route>,
    pub required_routes: Vec<Route>,
    pub timeout: Option<Duration>,
    pub wait: Option<Duration>,
    pub soak: Option<u32>,
    pub log_dir: Option<PathBuf>,
    pub qemu_src: Option<PathBuf>,
    pub python: Option<PathBuf>,
    pub qmp_python: Option<PathBuf>,
    pub leg: Option<String>,
    pub properties: Vec<(String, String)>,
    /// `--first`: the runs started before the others.
    pub first: Vec<Pick>,
    pub fail_fast: bool,
    pub tap: bool,
    pub list: bool,
    pub help: bool,
    /// Hidden: print `start NAME pid=PID dir=DIR` as each QEMU starts, for
    /// tests that must find what the runner started.
    pub verbose: bool,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("option is not UTF-8: {arg:?}"))?;
        // Both "--opt value" and "--opt=value".
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(OsString::from(value)))
            }
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<OsString, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--qemu" => parsed.qemu = Some(value("--qemu")?.into()),
            "--program" => {
                let text = utf8("--program", value("--program")?)?;
                parsed.program = Program::parse(&text).ok_or_else(|| {
                    format!("--program takes system or storage-daemon, got {text:?}")
                })?;
            }
            "--junit" => parsed.junit = Some(value("--junit")?.into()),
            "--log-dir" => parsed.log_dir = Some(value("--log-dir")?.into()),
            "--qemu-src" => parsed.qemu_src = Some(value("--qemu-src")?.into()),
            "--python" => parsed.python = Some(value("--python")?.into()),
            "--qmp-python" => parsed.qmp_python = Some(value("--qmp-python")?.into()),
            "--scenario" => {
                let name = utf8("--scenario", value("--scenario")?)?;
                if scenarios::find(&name).is_none() {
                    return Err(format!("unknown scenario {name:?}; --list shows them"));
                }
                if !parsed.scenarios.contains(&name) {
                    parsed.scenarios.push(name);
                }
            }
            "--route" => {
                let text = utf8("--route", value("--route")?)?;
                parsed.routes = match (text.as_str(), Route::parse(&text)) {
                    ("all", _) => Route::ALL.to_vec(),
                    (_, Some(route)) => vec![route],
                    _ => return Err(format!("--route takes commands, qom or all, got {text:?}")),
                };
            }
            "--require-route" => {
                let text = utf8("--require-route", value("--require-route")?)?;
                let Some(route) = Route::parse(&text) else {
                    return Err(format!(
                        "--require-route takes commands or qom, got {text:?}"
                    ));
                };
                if !parsed.required_routes.contains(&route) {
                    parsed.required_routes.push(route);
                }
            }
            "--jobs" => parsed.jobs = Some(positive("--jobs", value("--jobs")?)?),
            "--timeout" => {
                let secs = positive("--timeout", value("--timeout")?)?;
                parsed.timeout = Some(Duration::from_secs(secs));
            }
            "--wait" => {
                let text = utf8("--wait", value("--wait")?)?;
                match text
                    .parse::<f64>()
                    .ok()
                    .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                {
                    Some(wait) if !wait.is_zero() => parsed.wait = Some(wait),
                    _ => {
                        return Err(format!(
                            "--wait wants a positive number of seconds, got {text:?}"
                        ))
                    }
                }
            }
            "--soak" => parsed.soak = Some(positive("--soak", value("--soak")?)?),
            "--property" => {
                let pair = utf8("--property", value("--property")?)?;
                match pair.split_once('=') {
                    Some((key, val)) if !key.is_empty() => {
                        parsed.properties.push((key.to_string(), val.to_string()))
                    }
                    _ => return Err(format!("--property wants KEY=VALUE, got {pair:?}")),
                }
            }
            "--first" => {
                let list = utf8("--first", value("--first")?)?;
                for text in list.split(',').filter(|t| !t.is_empty()) {
                    let pick = Pick::parse(text).map_err(|err| format!("--first {err}"))?;
                    if scenarios::find(&pick.scenario).is_none() {
                        return Err(format!(
                            "--first: unknown scenario {:?}; --list shows them",
                            pick.scenario
                        ));
                    }
                    parsed.first.push(pick);
                }
            }
            "--fail-fast" => parsed.fail_fast = true,
            "--tap" => parsed.tap = true,
            "--leg" => {
                let leg = utf8("--leg", value("--leg")?)?;
                let ok = !leg.is_empty()
                    && leg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(format!(
                        "--leg {leg:?}: a leg name is letters, digits, '-', '_' and '.'"
                    ));
                }
                parsed.leg = Some(leg);
            }
            "--list" => parsed.list = true,
            "--verbose" => parsed.verbose = true,
            "-h" | "--help" => parsed.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.routes.is_empty() {
        parsed.routes = Route::ALL.to_vec();
    }
    for route in &parsed.required_routes {
        if !parsed.routes.contains(route) {
            parsed.routes.push(*route);
        }
    }
    if parsed.qemu.is_none() && !parsed.list && !parsed.help {
        return Err("--qemu PATH is required".to_string());
    }
    if let Some(src) = &parsed.qemu_src {
        let library = src.join("python/qemu/qmp");
        if !library.is_dir() {
            return Err(format!(
                "--qemu-src {}: no {} there; give the QEMU source tree the binary was built from",
                src.display(),
                library.display()
            ));
        }
    }
    if parsed.python.is_some() && parsed.qemu_src.is_none() {
        return Err("--python needs --qemu-src: it runs that tree's qemu.qmp".to_string());
    }
    Ok(parsed)
}

fn utf8(name: &str, value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|value| format!("{name} value is not UTF-8: {value:?}"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    name: &str,
    value: OsString,
) -> Result<T, String> {
    let text = utf8(name, value)?;
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!(
            "{name} wants a positive whole number, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/commands.md has the help as the binary prints it.
    #[test]
    fn the_command_reference_has_the_help() {
        let doc = include_str!("../../docs/commands.md");
        assert!(
            doc.contains(&format!("```\n{HELP}```\n")),
            "docs/commands.md lacks qmp-tests --help as printed; run `cargo xtask docs`"
        );
    }

    fn parse_strs(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn options_with_separate_and_inline_values() {
        let args = parse_strs(&[
            "--qemu=/q",
            "--scenario",
            "test_soak",
            "--jobs",
            "3",
            "--timeout=5",
            "--property",
            "commit=abc=def",
            "--tap",
        ])
        .unwrap();
        assert_eq!(args.qemu, Some(PathBuf::from("/q")));
        assert_eq!(args.scenarios, ["test_soak"]);
        assert_eq!(args.jobs, Some(3));
        assert_eq!(args.timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            args.properties,
            [("commit".to_string(), "abc=def".to_string())]
        );
        assert!(args.tap);
        assert_eq!(args.program, Program::System);
        let args = parse_strs(&["--qemu", "q", "--program=storage-daemon"]).unwrap();
        assert_eq!(args.program, Program::StorageDaemon);
        assert!(parse_strs(&["--qemu", "q", "--program", "qsd"])
            .unwrap_err()
            .contains("storage-daemon"));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(parse_strs(&[]).unwrap_err().contains("--qemu"));
        assert!(parse_strs(&["--qemu", "/q", "--jobs", "0"]).is_err());
        assert!(parse_strs(&["--qemu", "/q", "--scenario", "test_nope"])
            .unwrap_err()
            .contains("test_nope"));
        assert!(parse_strs(&["--qemu", "/q", "--property", "=x"]).is_err());
        assert!(parse_strs(&["--qemu"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_strs(&["--list"]).is_ok());
    }

    #[test]
    fn require_route_is_repeatable_and_implies_the_route() {
        let args = parse_strs(&[
            "--qemu",
            "q",
            "--route",
            "commands",
            "--require-route",
            "qom",
            "--require-route",
            "qom",
        ])
        .unwrap();
        assert_eq!(args.required_routes, vec![Route::Qom]);
        assert_eq!(args.routes, vec![Route::Commands, Route::Qom]);
        assert!(parse_strs(&["--qemu", "q", "--require-route", "all"]).is_err());
    }

    #[test]
    fn first_lists_scenarios_and_routes_in_order() {
        let args = parse_strs(&[
            "--qemu",
            "q",
            "--fail-fast",
            "--first",
            "test_soak/qom,test_greeting",
            "--first=test_many",
        ])
        .unwrap();
        assert!(args.fail_fast);
        let picks: Vec<(&str, Option<Route>)> = args
            .first
            .iter()
            .map(|p| (p.scenario.as_str(), p.route))
            .collect();
        assert_eq!(
            picks,
            [
                ("test_soak", Some(Route::Qom)),
                ("test_greeting", None),
                ("test_many", None)
            ]
        );
        assert!(parse_strs(&["--qemu", "q", "--first", "test_nope"])
            .unwrap_err()
            .contains("test_nope"));
        assert!(parse_strs(&["--qemu", "q", "--first", "test_soak/all"])
            .unwrap_err()
            .contains("commands or qom"));
        assert!(!parse_strs(&["--qemu", "q"]).unwrap().fail_fast);
    }
}
