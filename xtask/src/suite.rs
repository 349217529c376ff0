//! Running the qmp-tests suite binary against a built QEMU.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use qmp_tests::cli::SuiteCli;
use qmp_tests::exit;

use crate::paths;

/// What the suite's exit code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    /// The QEMU has no monitor-add: every scenario failed for that reason.
    Unsupported,
}

/// A suite binary built elsewhere (the project's own tests pass one in).
pub fn prebuilt() -> Option<PathBuf> {
    std::env::var_os("QMP_TESTS_BIN").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where [`binary`] puts the suite binary.
pub fn binary_path() -> PathBuf {
    prebuilt().unwrap_or_else(|| paths::target_dir().join("debug/qmp-tests"))
}

/// Builds the suite binary and returns its path.
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
    // The profile and the package set of `cargo xtask` itself, so that
    // cargo resolves the same features: the library and every dependency
    // are the ones the xtask's own build just compiled, and only main.rs
    // is left to compile (Cargo.toml says which crates the dev profile
    // optimises).
    let build =
        cmd!(sh, "{cargo} build --quiet --package xtask --package qmp-tests --bin qmp-tests")
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
    opts: &SuiteCli,
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

/// The suite's command line for `opts` against `qemu`: the report in
/// target/qmp-tests/ unless `opts` says otherwise, its directory created,
/// QEMU's stderr logs beside it.
pub fn command(
    bin: &Path,
    qemu: &Path,
    opts: &SuiteCli,
    properties: &[(String, String)],
) -> Result<std::process::Command> {
    let mut args = opts.clone();
    args.qemu = Some(qemu.to_owned());
    let junit = args.junit.get_or_insert_with(default_junit);
    if let Some(dir) = junit.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        args.log_dir = Some(dir.join("logs"));
    }
    args.properties.extend(properties.iter().cloned());
    let mut command = std::process::Command::new(bin);
    command.args(args.to_args());
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
            let opts =
                SuiteCli { junit: Some(dir.path().join("junit.xml")), ..SuiteCli::default() };
            let got = run(&bin, Path::new("/q"), &opts, &[], true).unwrap();
            assert_eq!(got, outcome, "exit {code}");
        }
    }
}
