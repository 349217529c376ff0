//! Figures taken as whole processes: the suite binary, `meson test` and
//! `cargo xtask`, each run `runs` times.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};
use qmp_tests::{junit::read_times, text::tail_lines};
use xshell::{cmd, Cmd, Shell};

use super::report::{sample, timed, Stats};
use crate::interrupt::{self, Controlled};
use crate::{paths, suite::Case};

/// The scenarios of the commands route in one suite run, by name.
pub type Cases = BTreeMap<String, Case>;

/// A figure of suite runs, with each run's scenarios.
pub type Suite = (Stats, Vec<Cases>);

/// The seconds of the phase or noted timing `name` of `case`.
pub fn time(case: &Case, name: &str) -> Option<f64> {
    let times = ["phase", "timing"].into_iter().flat_map(|kind| read_times(&case.out, kind));
    times.into_iter().find(|(n, _)| n == name).map(|(_, s)| s)
}

/// Runs the suite binary `runs` times with `args` after `--qemu`; each
/// run's JUnit report gives its scenarios.
pub fn suite(sh: &Shell, bins: (&Path, &Path), args: &[OsString], runs: usize) -> Result<Suite> {
    let ((qmp_tests, qemu), junit) = (bins, paths::target_dir().join("bench/suite.xml"));
    let mut cases = Vec::new();
    let stats = sample(runs, || {
        let (secs, _) = run_timed(cmd!(sh, "{qmp_tests} --qemu {qemu} --junit {junit} {args...}"))?;
        let report = crate::suite::read_report(&junit)?.into_iter().filter(|case| !case.qom);
        cases.push(report.map(|case| (case.name.clone(), case)).collect());
        Ok(secs)
    })?;
    Ok((stats, cases))
}

/// Runs `cargo xtask ARGS` `runs` times in the project, each after
/// touching `touch` (untimed) if given.
pub fn xtask(sh: &Shell, args: &[OsString], runs: usize, touch: Option<&Path>) -> Result<Stats> {
    let (cargo, _cd) = (paths::cargo(), sh.push_dir(paths::project_root()));
    sample(runs, || {
        // Changed for make and ninja without changing a byte.
        if let Some(path) = touch {
            let file = std::fs::File::options().write(true).open(path);
            file.and_then(|file| file.set_modified(std::time::SystemTime::now()))
                .with_context(|| format!("updating the modification time of {}", path.display()))?;
        }
        Ok(run_timed(cmd!(sh, "{cargo} xtask {args...}"))?.0)
    })
}

/// Runs the seed scenarios `runs` times as a QEMU developer would, through
/// the meson wiring: `meson test func-TARGET-monitor_hotplug` in the build
/// directory. One untimed run first lets meson reconfigure for the test.
pub fn meson(sh: &Shell, wired: (&Path, &Path, &Path), target: &str, runs: usize) -> Result<Stats> {
    let _env = sh.push_env("QMP_TESTS_SCENARIOS", qmp_tests::scenarios::SPECIFIED.join(","));
    let _route = sh.push_env("QMP_TESTS_ROUTE", "commands");
    crate::meson::test_wired(sh, wired, target, |meson| {
        run_timed(meson(&[]))?;
        sample(runs, || Ok(run_timed(meson(&["--no-rebuild"]))?.0))
    })
}

/// Seconds the command took, and its stderr; a failure is an error with
/// the end of its output.
pub fn run_timed(cmd: Cmd<'_>) -> Result<(f64, String)> {
    let what = cmd.to_string();
    let running = || (cmd.quiet().spawn_output()).with_context(|| format!("running {what}"));
    let (secs, out) = timed(running)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        interrupt::check()?;
        let (status, stdout) = (out.status, String::from_utf8_lossy(&out.stdout));
        let ends = format!("{}\n{}", tail_lines(&stdout, 15), tail_lines(&stderr, 15));
        bail!("{what} failed ({status}); a benchmark of a failing run means nothing. It ends:\n{ends}");
    }
    Ok((secs, stderr))
}
