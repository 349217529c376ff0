//! The standalone `qemu.qmp` package, in a venv of its own, for the
//! suite's second real client (test_qmp_asyncio_client). Pinned, so a new
//! release cannot change what a green run means; a machine that cannot
//! reach the package index gets the scenario skipped, with the reason.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::interrupt::Controlled;
use crate::paths;

/// The release the suite is known to pass with.
pub const SPEC: &str = "qemu.qmp==0.0.6";

/// The venv's Python, installing the package on first use; `None`, with
/// the reason, when pip could not install it.
pub fn ensure(sh: &Shell) -> Result<(Option<PathBuf>, String)> {
    let venv = paths::venv_cache().join(format!("pyenv-{}", paths::key(&[SPEC.as_bytes()])));
    let python = venv.join("bin/python3");
    let ready = venv.join(".xtask-ready");
    // Every cache shares the venvs: two runs must not make one at once.
    let _lock = crate::lock::venvs()?;
    if ready.exists() {
        return Ok((Some(python), format!("{SPEC} (cached venv)")));
    }
    // The marker is written last; a venv without it is built again.
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("removing the incomplete venv {}", venv.display()))?;
    }
    cmd!(sh, "python3 -m venv {venv}")
        .quiet()
        .spawn_run()
        .with_context(|| format!("creating a python venv at {}", venv.display()))?;
    let pip = cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check {SPEC}"
    );
    let out = pip.spawn_output()?;
    if !out.status.success() {
        crate::interrupt::check()?;
        let why = String::from_utf8_lossy(&out.stderr);
        let last = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Ok((
            None,
            format!(
                "{SPEC} not installed ({}): its scenario is skipped",
                last.trim()
            ),
        ));
    }
    std::fs::write(&ready, SPEC).with_context(|| format!("writing {}", ready.display()))?;
    Ok((
        Some(python),
        format!("{SPEC} installed into {}", venv.display()),
    ))
}
