//! The command lines of `qmp-tests` and `qmp-tests explore`, each declared
//! once. The binary parses them; the xtask embeds [`SuiteArgs`] and
//! [`ExploreArgs`] in its own commands, so a value qmp-tests would refuse
//! is refused before a QEMU is fetched or built, with the same message,
//! and passes them on with `to_args`.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{builder::TypedValueParser as _, Args, Parser, ValueEnum};

use crate::{explore, program::Program, route::Route, runner::Pick, scenarios};

/// What to run and how long to give it: the options `cargo xtask test`
/// takes as well.
#[derive(Args, Clone, Debug, Default, PartialEq)]
pub struct SuiteArgs {
    /// run only NAME (repeatable; `qmp-tests --list` names them)
    #[arg(long = "scenario", value_name = "NAME", value_parser = scenario)]
    pub scenarios: Vec<String>,
    /// scenarios run at once (default: number of CPUs; twice that in
    /// cargo xtask test's suite step, but for a sanitizer build)
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub jobs: Option<usize>,
    /// how monitors are added and removed: commands (monitor-add,
    /// monitor-remove), qom (object-add and object-del of monitor-qmp
    /// objects), or all (default: every route this QEMU has); the
    /// scenarios of a route asked for that this QEMU lacks are reported
    /// skipped, with the reason
    #[arg(long, value_name = "ROUTE", value_enum)]
    pub route: Option<Routes>,
    /// deadline per scenario (default: 60; test_soak gets one per 200
    /// cycles)
    #[arg(long, value_name = "SECS", value_parser = positive::<u64>)]
    pub timeout: Option<u64>,
    /// limit for each wait for a reply or an event (default: 100 x the
    /// scenario's QEMU start, from spawn to a negotiated main monitor, at
    /// least 2; fractions allowed)
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub wait: Option<Duration>,
    /// full hotplug cycles in test_soak (default: 200)
    #[arg(long, value_name = "N", value_parser = positive::<u32>)]
    pub soak: Option<u32>,
    /// start these first, in this order: scenario names separated by
    /// commas, each NAME (every route) or NAME/ROUTE; the others follow in
    /// the usual order
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = pick)]
    pub first: Vec<Pick>,
    /// stop at the first failing scenario: nothing more starts, the
    /// scenarios still running are stopped, and both are reported skipped,
    /// naming it
    #[arg(long)]
    pub fail_fast: bool,
}

/// `--route`: one route, or every one the QEMU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Routes {
    Commands,
    Qom,
    All,
}

/// qmp-tests' whole command line.
#[derive(Parser, Clone, Debug, Default, PartialEq)]
#[command(
    name = "qmp-tests",
    about = "qmp-tests: test QEMU's dynamic QMP monitors (monitor-add, monitor-remove,\n\
             query-monitors) against a qemu-system or qemu-storage-daemon binary.",
    override_usage = "qmp-tests --qemu PATH [OPTIONS]\n       qmp-tests --list",
    after_help = SUITE_EXIT,
    disable_version_flag = true,
    term_width = 80
)]
pub struct SuiteCli {
    /// the qemu-system binary to test
    #[arg(long, value_name = "PATH", required_unless_present = "list")]
    pub qemu: Option<PathBuf>,
    /// what --qemu is: system (qemu-system-TARGET) or storage-daemon
    /// (qemu-storage-daemon; the scenarios that need what only qemu-system
    /// has are reported skipped, with the reason)
    #[arg(long, value_name = "PROGRAM", default_value = "system", value_parser = program)]
    pub program: Program,
    /// write a JUnit XML report to FILE
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// a route this QEMU must have (commands or qom; repeatable; implies
    /// --route for it): if it lacks it, each of the route's scenarios fails
    /// with that cause instead of being skipped
    #[arg(long = "require-route", value_name = "ROUTE", value_parser = route)]
    pub require_routes: Vec<Route>,
    /// keep each QEMU's stderr as DIR/NAME.ROUTE.stderr.log (ROUTE:
    /// commands, qom)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// the QEMU source tree the binary was built from:
    /// test_qemu_python_client drives a monitor with its python/qemu/qmp
    /// library (skipped without it)
    #[arg(long, value_name = "DIR", value_parser = clap::builder::PathBufValueParser::new().try_map(qemu_src))]
    pub qemu_src: Option<PathBuf>,
    /// the Python that runs that library (default: python3)
    #[arg(long, value_name = "PATH", requires = "qemu_src")]
    pub python: Option<PathBuf>,
    /// a Python with the standalone qemu.qmp package installed:
    /// test_qmp_asyncio_client drives monitors with its asyncio QMPClient
    /// (skipped without it)
    #[arg(long, value_name = "PATH")]
    pub qmp_python: Option<PathBuf>,
    /// record KEY: VALUE in the JUnit report (repeatable)
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
    /// the CI leg this run is: the JUnit testsuites and classnames become
    /// monitor_hotplug.NAME (and monitor_hotplug_qom.NAME)
    #[arg(long, value_name = "NAME", value_parser = leg)]
    pub leg: Option<String>,
    /// print TAP version 13 instead of the usual lines
    #[arg(long)]
    pub tap: bool,
    /// print the scenario names and exit
    #[arg(long)]
    pub list: bool,
    /// print `start NAME pid=PID dir=DIR` as each QEMU starts, for tests
    /// that must find what the runner started
    #[arg(long, hide = true)]
    pub verbose: bool,
}

const SUITE_EXIT: &str = "\
Exit status:
    0   every scenario passed
    1   at least one scenario failed
    2   usage error, or the harness could not run (e.g. the binary does not
        exist or does not start as QEMU, or the report cannot be written)
    3   this QEMU has none of the routes asked for (no monitor-add, or
        monitor-remove, query-monitors; no monitor-qmp object type):
        every scenario is reported failed with that one-line cause";

impl SuiteCli {
    /// The routes to run: `--route` (every route by default) and each
    /// required one.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = match self.suite.route {
            Some(Routes::Commands) => vec![Route::Commands],
            Some(Routes::Qom) => vec![Route::Qom],
            Some(Routes::All) | None => Route::ALL.to_vec(),
        };
        for route in &self.require_routes {
            if !routes.contains(route) {
                routes.push(*route);
            }
        }
        routes
    }

    /// The same command line as arguments, each `--NAME=VALUE` so a value
    /// that starts with `-` stays a value and a path keeps its bytes.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv::default();
        out.path("qemu", self.qemu.as_ref());
        if self.program != Program::System {
            out.text("program", self.program.name());
        }
        out.path("junit", self.junit.as_ref());
        out.0.extend(self.suite.to_args());
        out.each("require-route", &self.require_routes);
        out.path("log-dir", self.log_dir.as_ref());
        out.path("qemu-src", self.qemu_src.as_ref());
        out.path("python", self.python.as_ref());
        out.path("qmp-python", self.qmp_python.as_ref());
        out.each("property", self.properties.iter().map(|(key, value)| format!("{key}={value}")));
        out.opt("leg", &self.leg);
        out.switch("tap", self.tap);
        out.switch("list", self.list);
        out.switch("verbose", self.verbose);
        out.0
    }
}

impl SuiteArgs {
    /// These options alone as arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv::default();
        out.each("scenario", &self.scenarios);
        out.opt("jobs", &self.jobs);
        out.opt("route", &self.route.as_ref().map(spelled));
        out.opt("timeout", &self.timeout);
        out.opt("wait", &self.wait.map(|wait| wait.as_secs_f64()));
        out.opt("soak", &self.soak);
        out.each(
            "first",
            self.first.iter().map(|pick| match pick.route {
                Some(route) => format!("{}/{route}", pick.scenario),
                None => pick.scenario.clone(),
            }),
        );
        out.switch("fail-fast", self.fail_fast);
        out.0
    }
}

/// `qmp-tests explore`'s options.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct ExploreArgs {
    /// start sequences for this long
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = positive::<u64>)]
    pub time: u64,
    /// sequences at once, each with its own QEMU (default: number of CPUs)
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub jobs: Option<usize>,
    /// the run's seed (default: random); the same seed and --time on the
    /// same machine run the same sequences
    #[arg(long, value_name = "HEX", value_parser = hex)]
    pub seed: Option<u64>,
    /// stop after the seed's first N sequences, even with time left (a
    /// fixed set, as a regression gate)
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub sequences: Option<usize>,
    /// run only the sequence with this seed, as a report printed it
    /// (shrunk again if it fails)
    #[arg(long, value_name = "HEX", value_parser = hex)]
    pub replay: Option<u64>,
    /// operations per sequence, at most
    #[arg(long, value_name = "N", default_value_t = 40, value_parser = positive::<usize>)]
    pub max_ops: usize,
    /// runs of a shrunk failure, to count how often it fails
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = positive::<u32>)]
    pub reruns: u32,
    /// time spent shrinking each failure, at most
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = positive::<u64>)]
    pub shrink_time: u64,
    /// runs more of a sequence that passed through a race (an orphan's end
    /// with a client waiting for the new monitor, a new monitor removed while
    /// an orphan drains), up to N, until one fails, every other one with
    /// QEMU on one CPU and its monitor I/O thread first (real-time priority,
    /// where this user may set it); 0: none
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub race_reruns: u32,
    /// the chardevs' kinds, comma-separated, of unix, tcp and pty (default:
    /// unix,tcp); --sockets is the old spelling
    #[arg(long, alias = "sockets", value_name = "KINDS", value_delimiter = ',', value_parser = chardev)]
    pub chardevs: Vec<explore::model::Kind>,
    /// stop after failures of N different kinds; more of a kind already
    /// found are counted
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = positive::<usize>)]
    pub max_failures: usize,
    /// limit for each wait for a reply, event or end of file (default: 100
    /// x QEMU's start, at least 2)
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub wait: Option<Duration>,
    /// write a failure's sequence and transcript to DIR/explore-SEED.txt
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// write a JUnit report: one testcase, explore
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// write the run's figures and each failure's kind, sequence number and
    /// shrunk length as JSON
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// the CI leg: the testsuite is monitor_hotplug.NAME
    #[arg(long, value_name = "NAME", value_parser = leg)]
    pub leg: Option<String>,
}

impl Default for ExploreArgs {
    /// Every option at its default, as if none were given.
    fn default() -> ExploreArgs {
        #[derive(Parser)]
        struct Bare {
            #[command(flatten)]
            explore: ExploreArgs,
        }
        Bare::parse_from(["explore"]).explore
    }
}

/// `qmp-tests explore`'s whole command line.
#[derive(Parser, Clone, Debug, PartialEq)]
#[command(
    name = "qmp-tests explore",
    about = "qmp-tests explore: random sequences of chardev, monitor and client\n\
             operations, each step checked against a model of the spec; a failing\n\
             sequence is shrunk to a short one and rerun to say how often it fails.",
    after_help = EXPLORE_EXIT,
    disable_version_flag = true,
    term_width = 80
)]
pub struct ExploreCli {
    /// the qemu-system binary to test
    #[arg(long, value_name = "PATH")]
    pub qemu: PathBuf,
    #[command(flatten)]
    pub explore: ExploreArgs,
}

const EXPLORE_EXIT: &str = "\
Exit status:
    0   no sequence failed
    1   a sequence failed (each kind's shrunk sequence, seed and
        transcript printed)
    2   usage error, or the harness could not run";

impl ExploreArgs {
    /// The options as explore runs them, against `qemu`.
    pub fn options(&self, qemu: PathBuf) -> explore::Options {
        use explore::model::Kind;
        explore::Options {
            target: explore::Target { qemu, wait: self.wait, janitor: None },
            time: Duration::from_secs(self.time),
            jobs: self
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            seed: self.seed,
            replay: self.replay,
            max_ops: self.max_ops,
            reruns: self.reruns,
            shrink_time: Duration::from_secs(self.shrink_time),
            race_reruns: self.race_reruns,
            max_failures: self.max_failures,
            chardevs: match self.chardevs.is_empty() {
                true => vec![Kind::Unix, Kind::Tcp],
                false => self.chardevs.clone(),
            },
            sequences: self.sequences,
        }
    }

    /// The same options as arguments of `qmp-tests explore`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv::default();
        out.text("time", self.time);
        out.opt("jobs", &self.jobs);
        out.opt("seed", &self.seed.map(|seed| format!("{seed:016x}")));
        out.opt("sequences", &self.sequences);
        out.opt("replay", &self.replay.map(|seed| format!("{seed:016x}")));
        out.text("max-ops", self.max_ops);
        out.text("reruns", self.reruns);
        out.text("shrink-time", self.shrink_time);
        out.text("race-reruns", self.race_reruns);
        out.each("chardevs", self.chardevs.iter().map(|&kind| CHARDEVS[kind as usize]));
        out.text("max-failures", self.max_failures);
        out.opt("wait", &self.wait.map(|wait| wait.as_secs_f64()));
        out.path("out", self.out.as_ref());
        out.path("junit", self.junit.as_ref());
        out.path("summary", self.summary.as_ref());
        out.opt("leg", &self.leg);
        out.0
    }
}

/// Arguments being written, each `--NAME=VALUE`; a path's bytes are kept
/// as they are, as a path need not be UTF-8.
#[derive(Default)]
pub struct Argv(pub Vec<OsString>);

impl Argv {
    pub fn text(&mut self, name: &str, value: impl std::fmt::Display) {
        self.0.push(format!("--{name}={value}").into());
    }

    pub fn opt(&mut self, name: &str, value: &Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.text(name, value);
        }
    }

    pub fn path(&mut self, name: &str, path: Option<impl AsRef<std::ffi::OsStr>>) {
        if let Some(path) = path {
            let mut arg = OsString::from(format!("--{name}="));
            arg.push(path.as_ref());
            self.0.push(arg);
        }
    }

    /// `--NAME=VALUE` for each value: a repeatable option.
    pub fn each<T: std::fmt::Display>(&mut self, name: &str, values: impl IntoIterator<Item = T>) {
        for value in values {
            self.text(name, value);
        }
    }

    pub fn switch(&mut self, name: &str, on: bool) {
        if on {
            self.0.push(format!("--{name}").into());
        }
    }
}

/// A value as its flag spells it.
pub fn spelled(value: &impl ValueEnum) -> String {
    let value = value.to_possible_value().expect("no value is skipped");
    value.get_name().to_owned()
}

/// `--chardevs`' names, in the order of [`explore::model::Kind`]'s variants.
const CHARDEVS: [&str; 3] = ["unix", "tcp", "pty"];

fn scenario(name: &str) -> Result<String, String> {
    if scenarios::find(name).is_some() {
        return Ok(name.to_owned());
    }
    let known: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
    Err(format!("unknown scenario {name:?}; pick one of: {}", known.join(" ")))
}

/// A whole number from 1 up: 0 jobs, seconds or cycles would only fail
/// (or hang) once the run starts.
pub fn positive<T: std::str::FromStr + PartialOrd + Default>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err("wants a positive whole number".to_owned()),
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|wait| !wait.is_zero())
        .ok_or_else(|| "wants a positive number of seconds".to_owned())
}

/// `--program`: system or storage-daemon.
pub fn program(text: &str) -> Result<Program, String> {
    Program::parse(text).ok_or_else(|| "takes system or storage-daemon".to_owned())
}

fn route(text: &str) -> Result<Route, String> {
    Route::parse(text).ok_or_else(|| "takes commands or qom".to_owned())
}

fn pick(text: &str) -> Result<Pick, String> {
    let pick = Pick::parse(text)?;
    scenario(&pick.scenario)?;
    Ok(pick)
}

fn property(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("wants KEY=VALUE".to_owned()),
    }
}

fn leg(name: &str) -> Result<String, String> {
    let ok =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    match ok {
        true => Ok(name.to_owned()),
        false => Err("a leg name is letters, digits, '-', '_' and '.'".to_owned()),
    }
}

fn qemu_src(src: PathBuf) -> Result<PathBuf, String> {
    let library = src.join("python/qemu/qmp");
    if !library.is_dir() {
        return Err(format!(
            "no {} there; give the QEMU source tree the binary was built from",
            library.display()
        ));
    }
    Ok(src)
}

fn chardev(name: &str) -> Result<explore::model::Kind, String> {
    use explore::model::Kind;
    let kind =
        [Kind::Unix, Kind::Tcp, Kind::Pty].into_iter().find(|&k| CHARDEVS[k as usize] == name);
    kind.ok_or_else(|| "takes unix, tcp and pty, comma-separated".to_owned())
}

fn hex(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .map_err(|_| "wants a seed in hex, as a report prints it".to_owned())
}

#[cfg(test)]
mod tests;
