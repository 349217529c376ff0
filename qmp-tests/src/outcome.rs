//! The result of one scenario, as every report format sees it.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub duration: Duration,
    /// Figures worth showing whether the scenario passed or not.
    pub notes: Vec<String>,
    pub failure: Option<Failure>,
}

#[derive(Clone, Debug, Default)]
pub struct Failure {
    /// One line: the cause.
    pub cause: String,
    /// The QMP exchange that led to the failure, all monitors interleaved.
    pub transcript: String,
    /// The end of QEMU's stderr.
    pub stderr_tail: String,
    /// A sanitizer report found in QEMU's stderr.
    pub sanitizer: Option<String>,
    /// QEMU's full stderr, when it is kept (`--log-dir`).
    pub log: Option<PathBuf>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl Failure {
    /// Everything but the cause, as plain text sections.
    pub fn body(&self) -> String {
        let mut out = String::new();
        if let Some(report) = &self.sanitizer {
            let _ = writeln!(out, "sanitizer report:\n{}\n", report.trim_end());
        }
        if !self.transcript.is_empty() {
            let _ = writeln!(
                out,
                "QMP transcript (ms since start):\n{}",
                self.transcript.trim_end()
            );
        }
        if !self.stderr_tail.trim().is_empty() {
            let _ = writeln!(
                out,
                "\nQEMU stderr (last lines):\n{}",
                self.stderr_tail.trim_end()
            );
        }
        if let Some(log) = &self.log {
            let _ = writeln!(out, "\nQEMU log: {}", log.display());
        }
        out
    }
}
