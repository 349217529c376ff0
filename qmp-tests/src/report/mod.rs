//! What the runner prints: cargo-test-like lines for people, or TAP 13
//! for meson.
//!
//! Write errors are ignored on purpose: a closed stdout (`| head`) must
//! not stop the run, lose the JUnit report or change the exit status.

mod console;
mod tap;

#[cfg(test)]
mod tests;

use std::path::Path;

use crate::outcome::Outcome;

pub use console::Console;
pub use tap::Tap;

/// Called as the run goes; each format decides what to show.
pub trait Reporter {
    /// Before any scenario runs.
    fn plan(&mut self, total: usize, qemu_line: &str);
    /// A scenario's QEMU is up (shown with --verbose).
    fn started(&mut self, name: &str, pid: u32, dir: &Path);
    fn finished(&mut self, outcome: &Outcome);
    /// After the last scenario.
    fn summary(&mut self, outcomes: &[Outcome]);
}

/// "N passed, M failed", and ", K skipped" when some were.
pub fn totals(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    let skipped = outcomes.len() - passed - failed;
    if skipped == 0 {
        format!("{passed} passed, {failed} failed")
    } else {
        format!("{passed} passed, {failed} failed, {skipped} skipped")
    }
}

fn seconds(outcome: &Outcome) -> String {
    format!("{:.2}s", outcome.duration.as_secs_f64())
}
