//! Figures taken as whole processes: the suite binary, `meson test` and
//! `cargo xtask test`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use qmp_tests::text::tail_lines;
use xshell::{cmd, Cmd, Shell};

use super::report::{sample, timed, Stats};
use crate::paths;

/// A scenario's time and phases (seconds) in one suite run, by name.
pub type Cases = BTreeMap<String, (f64, Vec<(String, f64)>)>;

/// A figure of suite runs, with each run's scenarios.
pub type Suite = (Stats, Vec<Cases>);

/// Runs the suite binary `runs` times with `args` after `--qemu`; each
/// run's JUnit report gives the scenarios of the commands route.
pub fn suite(
    sh: &Shell,
    (qmp_tests, qemu): (&Path, &Path),
    args: &[OsString],
    runs: usize,
) -> Result<Suite> {
    let junit = paths::target_dir().join("bench/suite.xml");
    let mut cases = Vec::new();
    let stats = sample(runs, || {
        let command = cmd!(sh, "{qmp_tests} --qemu {qemu} --junit {junit} {args...}");
        let secs = run_timed(command)?;
        cases.push(read_cases(&junit)?);
        Ok(secs)
    })?;
    Ok((stats, cases))
}

fn read_cases(junit: &Path) -> Result<Cases> {
    let cases = crate::suite::read_report(junit)?.into_iter().filter(|case| !case.qom);
    let phases = |out: &str| qmp_tests::junit::read_times(out, "phase");
    Ok(cases.map(|c| (c.name, (c.secs, phases(&c.out)))).collect())
}

/// Runs `cargo xtask test` `runs` times, with the source and build options
/// the bench was given. `before` runs ahead of each, untimed.
pub fn pipeline(
    sh: &Shell,
    forwarded: &[OsString],
    runs: usize,
    mut before: impl FnMut() -> Result<()>,
) -> Result<Stats> {
    let cargo = paths::cargo();
    let _cd = sh.push_dir(paths::project_root());
    // Its report goes beside ours, leaving the user's last one in place.
    let junit = paths::target_dir().join("bench/junit.xml");
    sample(runs, || {
        before()?;
        run_timed(cmd!(sh, "{cargo} xtask test {forwarded...} --junit {junit}"))
    })
}

/// Runs `scenarios` `runs` times the way a QEMU developer would, through
/// the meson wiring: `meson test func-TARGET-monitor_hotplug` in the build
/// directory. One untimed run first lets meson reconfigure for the test.
pub fn meson(
    sh: &Shell,
    paths: (&Path, &Path, &Path),
    target: &str,
    scenarios: &[&str],
    runs: usize,
) -> Result<Stats> {
    let _env = sh.push_env("QMP_TESTS_SCENARIOS", scenarios.join(","));
    let _route = sh.push_env("QMP_TESTS_ROUTE", "commands");
    crate::meson::test_wired(sh, paths, target, |meson| {
        run_timed(meson(&[]))?;
        sample(runs, || run_timed(meson(&["--no-rebuild"])))
    })
}

/// Seconds the command took; its output is kept for the error only.
fn run_timed(cmd: Cmd<'_>) -> Result<f64> {
    let what = cmd.to_string();
    let running = || (cmd.quiet().spawn_output()).with_context(|| format!("running {what}"));
    let (secs, out) = timed(running)?;
    if !out.status.success() {
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        bail!(
            "{what} failed ({}); a benchmark of a failing run means nothing. \
             Its output ends:\n{}\n{}",
            out.status,
            tail_lines(&stdout, 15),
            tail_lines(&stderr, 15)
        );
    }
    Ok(secs)
}

/// Marks `path` as changed for make and ninja without changing a byte.
pub fn touch(path: &Path) -> Result<()> {
    let file = File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} to update its modification time", path.display()))?;
    file.set_modified(SystemTime::now())
        .with_context(|| format!("updating the modification time of {}", path.display()))
}
