//! The standalone `qemu.qmp` package, in a venv of its own, for the
//! suite's second real client (test_qmp_asyncio_client). Pinned, so a new
//! release cannot change what a green run means; a machine that cannot
//! reach the package index gets the scenario skipped, with the reason.

use std::path::PathBuf;

use anyhow::Result;
use xshell::Shell;

use crate::deps::{self, Venv};

/// The release the suite is known to pass with.
pub const SPEC: &str = "qemu.qmp==0.0.6";

/// The venv's Python, installing the package on first use; `None`, with
/// the reason, when pip could not install it.
pub fn ensure(sh: &Shell) -> Result<(Option<PathBuf>, String)> {
    Ok(match deps::venv(sh, &[SPEC])? {
        Venv::Ready { python, cached: true, .. } => (Some(python), format!("{SPEC} (cached venv)")),
        Venv::Ready { python, dir, .. } => {
            let summary = format!("{SPEC} installed into {}", dir.display());
            (Some(python), summary)
        }
        Venv::PipFailed { why, .. } => {
            (None, format!("{SPEC} not installed ({why}): its scenario is skipped"))
        }
    })
}
