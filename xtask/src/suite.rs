//! Running the qmp-tests suite binary against a built QEMU.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use qmp_tests::{exit, program::Program};

use crate::cli::Matches;
use crate::paths;

/// What the suite's exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    /// The QEMU has no monitor-add: every scenario failed for that reason.
    Unsupported,
}

#[derive(Clone, Debug, Default)]
pub struct SuiteOptions {
    pub scenarios: Vec<String>,
    pub jobs: Option<usize>,
    pub timeout: Option<u64>,
    pub soak: Option<u32>,
    pub junit: Option<PathBuf>,
    /// The source tree the QEMU was built from, and the Python to run its
    /// `qemu.qmp` library with (test_qemu_python_client).
    pub qemu_src: Option<PathBuf>,
    pub python: Option<PathBuf>,
    /// `commands`, `qom` or `all` (the suite's default).
    pub route: Option<String>,
    /// Routes whose absence fails the run instead of skipping their
    /// scenarios: the project's series has both.
    pub require_routes: Vec<String>,
    /// A Python with the standalone qemu.qmp package
    /// (test_qmp_asyncio_client).
    pub qmp_python: Option<PathBuf>,
    /// The CI leg, which names the report's testsuites.
    pub leg: Option<String>,
    /// What the binary is: qemu-system or qemu-storage-daemon.
    pub program: Program,
}

impl SuiteOptions {
    /// The suite flags, each refused here, before any fetch or build,
    /// when qmp-tests would refuse it after them: the xtask links
    /// qmp-tests and so knows its scenario names and ranges.
    pub fn from_matches(m: &Matches) -> Result<SuiteOptions> {
        Ok(SuiteOptions {
            scenarios: scenarios(m)?,
            jobs: positive(m, "jobs", "jobs", "scenarios run at once")?,
            timeout: positive(m, "timeout", "seconds", "a scenario's deadline")?,
            soak: positive(m, "soak", "cycles", "the soak scenario's cycles")?,
            junit: m.path("junit")?,
            route: route(m.text("route")?)?,
            ..SuiteOptions::default()
        })
    }
}

/// `--scenario NAME`, each one a scenario of the linked qmp-tests.
pub fn scenarios(m: &Matches) -> Result<Vec<String>> {
    let names = m.texts("scenario")?;
    for name in &names {
        if qmp_tests::scenarios::find(name).is_none() {
            let known: Vec<&str> = qmp_tests::scenarios::all().iter().map(|s| s.name).collect();
            bail!(
                "--scenario {name}: no such scenario; pick one of: {}",
                known.join(" ")
            );
        }
    }
    Ok(names)
}

/// A whole number from 1 up: 0 jobs, seconds or cycles would only fail
/// (or hang) once the suite starts.
fn positive<T: std::str::FromStr + Default + PartialEq>(
    m: &Matches,
    name: &str,
    unit: &str,
    what: &str,
) -> Result<Option<T>> {
    let value = m.number::<T>(name)?;
    if value == Some(T::default()) {
        bail!("--{name} 0: {what} cannot be none; give a whole number of {unit} from 1 up");
    }
    Ok(value)
}

/// The `--route` values the suite takes.
const ROUTES: [&str; 3] = ["commands", "qom", "all"];

/// `--route ROUTE` as given, checked before any work is done.
pub fn route(text: Option<String>) -> Result<Option<String>> {
    match text {
        Some(route) if !ROUTES.contains(&route.as_str()) => {
            bail!("--route takes commands, qom or all, not `{route}`")
        }
        route => Ok(route),
    }
}

/// A suite binary built elsewhere (the project's own tests pass one in).
pub fn prebuilt() -> Option<PathBuf> {
    std::env::var_os("QMP_TESTS_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where [`binary`] puts the suite binary.
pub fn binary_path() -> PathBuf {
    prebuilt().unwrap_or_else(|| paths::target_dir().join("release/qmp-tests"))
}

/// Builds the suite binary (release: the large-reply parsing is timed by
/// the benchmark) and returns its path.
pub fn binary(sh: &Shell) -> Result<PathBuf> {
    build_binary(sh, false)
}

/// [`binary`]; `captured` keeps cargo's output and shows it only if the
/// build fails, for a build that runs beside another step's output.
pub fn build_binary(sh: &Shell, captured: bool) -> Result<PathBuf> {
    if let Some(bin) = prebuilt() {
        return Ok(bin);
    }
    let cargo = paths::cargo();
    let root = paths::project_root();
    let _cd = sh.push_dir(&root);
    let build = cmd!(
        sh,
        "{cargo} build --quiet --release --package qmp-tests --bin qmp-tests"
    )
    .quiet();
    if captured {
        let out = build.spawn_output()?;
        if !out.status.success() {
            crate::interrupt::check()?;
            bail!(
                "building the qmp-tests binary failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
    } else {
        build.spawn_run().context("building the qmp-tests binary")?;
    }
    let bin = binary_path();
    if !bin.exists() {
        bail!("cargo built qmp-tests but {} does not exist", bin.display());
    }
    Ok(bin)
}

pub fn default_junit() -> PathBuf {
    paths::target_dir().join("qmp-tests/junit.xml")
}

/// Runs the suite with its output going straight to the terminal.
pub fn run(
    bin: &Path,
    qemu: &Path,
    opts: &SuiteOptions,
    properties: &[(String, String)],
    quiet: bool,
) -> Result<Outcome> {
    let mut command = command(bin, qemu, opts, properties)?;
    if quiet {
        command.stdout(Stdio::null());
    }
    let status = crate::interrupt::spawn(&mut command, "qmp-tests")?
        .child
        .wait()
        .with_context(|| format!("running {}", bin.display()))?;
    outcome(status)
}

/// The suite's command line for `opts`, its report directory created.
pub fn command(
    bin: &Path,
    qemu: &Path,
    opts: &SuiteOptions,
    properties: &[(String, String)],
) -> Result<std::process::Command> {
    let mut command = std::process::Command::new(bin);
    command.arg("--qemu").arg(qemu);
    if opts.program != Program::System {
        command.arg("--program").arg(opts.program.name());
    }
    for s in &opts.scenarios {
        command.arg("--scenario").arg(s);
    }
    if let Some(j) = opts.jobs {
        command.arg("--jobs").arg(j.to_string());
    }
    if let Some(t) = opts.timeout {
        command.arg("--timeout").arg(t.to_string());
    }
    if let Some(n) = opts.soak {
        command.arg("--soak").arg(n.to_string());
    }
    if let Some(route) = &opts.route {
        command.arg("--route").arg(route);
    }
    for route in &opts.require_routes {
        command.arg("--require-route").arg(route);
    }
    if let Some(python) = &opts.qmp_python {
        command.arg("--qmp-python").arg(python);
    }
    if let Some(leg) = &opts.leg {
        command.arg("--leg").arg(leg);
    }
    if let Some(src) = &opts.qemu_src {
        command.arg("--qemu-src").arg(src);
        if let Some(python) = &opts.python {
            command.arg("--python").arg(python);
        }
    }
    let junit = opts.junit.clone().unwrap_or_else(default_junit);
    if let Some(dir) = junit.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    command.arg("--junit").arg(&junit);
    if let Some(dir) = junit.parent() {
        command.arg("--log-dir").arg(dir.join("logs"));
    }
    for (k, v) in properties {
        command.arg("--property").arg(format!("{k}={v}"));
    }
    Ok(command)
}

/// What the suite's exit status says; a harness failure is an error.
pub fn outcome(status: std::process::ExitStatus) -> Result<Outcome> {
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    match code {
        Some(exit::PASSED) => Ok(Outcome::Passed),
        Some(exit::FAILED) => Ok(Outcome::Failed),
        Some(exit::NO_MONITOR_ADD) => Ok(Outcome::Unsupported),
        Some(code) => bail!("the qmp-tests harness failed (exit {code}); see its message above"),
        None => {
            crate::interrupt::check()?;
            bail!("the qmp-tests harness was killed by a signal")
        }
    }
}

/// One scenario of a suite's JUnit report.
pub struct Case {
    /// The scenario, without the route.
    pub name: String,
    /// Whether it ran through the QOM route (a testsuite of its own).
    pub qom: bool,
    pub secs: f64,
    /// The message of its failure or error, if it had one.
    pub failure: Option<String>,
    /// What it wrote to its output: notes and phases.
    pub out: String,
}

/// Every scenario of the JUnit report at `junit`, as the suite writes it.
pub fn read_report(junit: &Path) -> Result<Vec<Case>> {
    let file =
        std::fs::File::open(junit).with_context(|| format!("opening {}", junit.display()))?;
    let suites = junit_parser::from_reader(std::io::BufReader::new(file))
        .with_context(|| format!("parsing the JUnit report {}", junit.display()))?;
    let mut cases = Vec::new();
    for suite in &suites.suites {
        for case in &suite.cases {
            let status = &case.status;
            let failure = if status.is_failure() {
                Some(status.failure_as_ref().message.clone())
            } else if status.is_error() {
                Some(status.error_as_ref().message.clone())
            } else {
                None
            };
            cases.push(Case {
                // `name` is prefixed with the class name; the scenario is
                // the original.
                name: case.original_name.clone(),
                qom: suite.name.ends_with("_qom"),
                secs: case.time,
                failure,
                out: case.system_out.clone().unwrap_or_default(),
            });
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_follows_the_runners_own_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        for (code, outcome) in [
            (exit::PASSED, Outcome::Passed),
            (exit::FAILED, Outcome::Failed),
            (exit::NO_MONITOR_ADD, Outcome::Unsupported),
        ] {
            let bin = dir.path().join(format!("runner-{code}"));
            std::fs::write(&bin, format!("#!/bin/sh\nexit {code}\n")).unwrap();
            let mut perm = std::fs::metadata(&bin).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&bin, perm).unwrap();
            let opts = SuiteOptions {
                junit: Some(dir.path().join("junit.xml")),
                ..SuiteOptions::default()
            };
            let got = run(&bin, Path::new("/q"), &opts, &[], true).unwrap();
            assert_eq!(got, outcome, "exit {code}");
        }
    }
}
