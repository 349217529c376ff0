use std::{io::Write, path::Path};

use super::{seconds, totals, Reporter};
use crate::outcome::Outcome;

/// TAP version 13. Tests are numbered in the order they finish, since
/// consumers (meson among them) insist on consecutive numbers.
pub struct Tap<W: Write> {
    out: W,
    verbose: bool,
    next: usize,
}

impl<W: Write> Tap<W> {
    pub fn new(out: W, verbose: bool) -> Tap<W> {
        Tap { out, verbose, next: 1 }
    }

    fn diagnostic(&mut self, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.out, "# {line}");
        }
    }
}

impl<W: Write> Reporter for Tap<W> {
    fn plan(&mut self, total: usize, qemu_line: &str) {
        let _ = writeln!(self.out, "TAP version 13\n1..{total}");
        self.diagnostic(&format!("against {qemu_line}"));
    }

    fn started(&mut self, name: &str, pid: u32, dir: &Path) {
        if self.verbose {
            self.diagnostic(&format!("start {name} pid={pid} dir={}", dir.display()));
            let _ = self.out.flush();
        }
    }

    fn finished(&mut self, outcome: &Outcome) {
        let number = self.next;
        self.next += 1;
        let _ = match (&outcome.failure, &outcome.skipped) {
            (None, Some(reason)) => {
                writeln!(self.out, "ok {number} - {} # SKIP {reason}", outcome.display_name())
            }
            (None, None) => writeln!(self.out, "ok {number} - {}", outcome.display_name()),
            // The cause goes in the description, not after a '#', where
            // a cause starting with "skip" or "todo" would read as a
            // directive; a '#' in it is escaped for the same reason.
            (Some(failure), _) => writeln!(
                self.out,
                "not ok {number} - {}: {}",
                escape(&outcome.display_name()),
                escape(&crate::text::one_line(&failure.cause))
            ),
        };
        self.diagnostic(&format!("time {}", seconds(outcome)));
        for note in &outcome.notes {
            self.diagnostic(note);
        }
        if let Some(failure) = &outcome.failure {
            self.diagnostic(&failure.body());
        }
        let _ = self.out.flush();
    }

    fn summary(&mut self, outcomes: &[Outcome]) {
        self.diagnostic(&totals(outcomes));
        let _ = self.out.flush();
    }
}

/// A TAP description: `\` and `#` escaped, so that nothing in it starts
/// a directive.
pub(crate) fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('#', "\\#")
}
