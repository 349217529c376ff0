//! The result of one scenario, as every report format sees it.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use crate::route::Route;

#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub duration: Duration,
    /// Figures worth showing whether the scenario passed or not.
    pub notes: Vec<String>,
    pub failure: Option<Failure>,
    /// Where the time went (see [`crate::phases`]); empty when QEMU did
    /// not start.
    pub phases: Vec<(&'static str, Duration)>,
    /// Why the scenario did not run; a skipped scenario has not failed,
    /// but it has not passed either.
    pub skipped: Option<String>,
    /// How the scenario added and removed its monitors.
    pub route: Route,
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
    /// A scenario that passed in no time, on the commands route: the
    /// start every other outcome is built from.
    pub fn new(name: &str) -> Outcome {
        Outcome {
            name: name.to_string(),
            duration: std::time::Duration::ZERO,
            notes: Vec::new(),
            phases: Vec::new(),
            failure: None,
            skipped: None,
            route: Route::Commands,
        }
    }

    /// A scenario that did not run, for `reason`.
    pub fn skipped(name: &str, reason: &str) -> Outcome {
        let skipped = Some(reason.to_string());
        Outcome { skipped, ..Outcome::new(name) }
    }

    /// A scenario that failed before it ran, for `failure`.
    pub fn failing(name: &str, failure: Failure) -> Outcome {
        let failure = Some(failure);
        Outcome { failure, ..Outcome::new(name) }
    }

    /// The same outcome, for `route`.
    pub fn on(mut self, route: Route) -> Outcome {
        self.route = route;
        self
    }

    /// The name people see: the scenario's, with the route when it is not
    /// the commands route, whose names dashboards already know.
    pub fn display_name(&self) -> String {
        match self.route {
            Route::Commands => self.name.clone(),
            route => format!("{} ({route})", self.name),
        }
    }

    /// Ran and met every assertion.
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.skipped.is_none()
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
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
            let _ =
                writeln!(out, "QMP transcript (ms since start):\n{}", self.transcript.trim_end());
        }
        if !self.stderr_tail.trim().is_empty() {
            let _ = writeln!(out, "\nQEMU stderr (last lines):\n{}", self.stderr_tail.trim_end());
        }
        if let Some(log) = &self.log {
            let _ = writeln!(out, "\nQEMU log: {}", log.display());
        }
        out
    }
}
