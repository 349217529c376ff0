//! Figures taken as whole processes: the suite binary and the pipeline.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::time::SystemTime;

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Cmd, Shell};

use super::stats::{sample, timed, Stats};
use crate::paths;

/// Runs the suite binary `runs` times with `args` after `--qemu`.
pub fn suite(
    sh: &Shell,
    qmp_tests: &Path,
    qemu: &Path,
    args: &[OsString],
    runs: usize,
) -> Result<Stats> {
    sample(runs, || {
        run_timed(cmd!(sh, "{qmp_tests} --qemu {qemu} {args...}"))
    })
}

/// Runs `cargo xtask test` `runs` times, with the source and build options
/// the bench was given. `before` runs ahead of each, untimed.
pub fn pipeline(
    sh: &Shell,
    forwarded: &[OsString],
    runs: usize,
    mut before: impl FnMut() -> Result<()>,
) -> Result<Stats> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let _cd = sh.push_dir(paths::project_root());
    // Its report goes beside ours, leaving the user's last one in place.
    let junit = paths::target_dir().join("bench/junit.xml");
    sample(runs, || {
        before()?;
        run_timed(cmd!(
            sh,
            "{cargo} xtask test {forwarded...} --junit {junit}"
        ))
    })
}

/// Runs `scenarios` `runs` times the way a QEMU developer would, through
/// the meson wiring: `meson test func-TARGET-monitor_hotplug` in the build
/// directory. The tree is wired for the figure and unwired after; one
/// untimed run first lets meson reconfigure for the new test.
pub fn meson(
    sh: &Shell,
    tree: &Path,
    qemu: &Path,
    qmp_tests: &Path,
    target: &str,
    scenarios: &[&str],
    runs: usize,
) -> Result<Stats> {
    let build_dir = qemu
        .parent()
        .context("the QEMU binary has a build directory")?;
    let guard = match crate::meson::wire(tree, qmp_tests, false)? {
        crate::meson::Wired::Added(_) => Some(crate::meson::WireGuard::new(tree)),
        crate::meson::Wired::Already(_) => None,
        crate::meson::Wired::NoFunctionalTests => {
            bail!("{} has no functional-test list to wire", tree.display())
        }
    };
    let meson_bin = build_dir.join("pyvenv/bin/meson");
    let test = format!("func-{target}-monitor_hotplug");
    let _env = sh.push_env("QMP_TESTS_SCENARIOS", scenarios.join(","));
    let _route = sh.push_env("QMP_TESTS_ROUTE", "commands");
    let result = run_timed(cmd!(sh, "{meson_bin} test -C {build_dir} {test}")).and_then(|_| {
        sample(runs, || {
            run_timed(cmd!(
                sh,
                "{meson_bin} test -C {build_dir} --no-rebuild {test}"
            ))
        })
    });
    if let Some(guard) = guard {
        guard.finish()?;
    }
    result
}

/// Seconds the command took; its output is kept for the error only.
fn run_timed(cmd: Cmd<'_>) -> Result<f64> {
    let what = cmd.to_string();
    let (secs, out) = timed(|| {
        cmd.quiet()
            .spawn_output()
            .with_context(|| format!("running {what}"))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        bail!(
            "{what} failed ({}); a benchmark of a failing run means nothing. \
             Its output ends:\n{}\n{}",
            out.status,
            tail(&stdout, 15),
            tail(&stderr, 15)
        );
    }
    Ok(secs)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
