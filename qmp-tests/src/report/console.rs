use std::{io::Write, path::Path};

use super::{seconds, totals, Reporter};
use crate::outcome::Outcome;

/// `test NAME ... ok (0.12s)` per scenario, failure details at the end,
/// and the totals alone on the last line.
pub struct Console<W: Write> {
    out: W,
    verbose: bool,
}

impl<W: Write> Console<W> {
    pub fn new(out: W, verbose: bool) -> Console<W> {
        Console { out, verbose }
    }

    fn failure_details(&mut self, failed: &[&Outcome]) {
        let out = &mut self.out;
        let _ = writeln!(out, "\nfailures:");
        let mut shown: Vec<(String, &str, String)> = Vec::new();
        for outcome in failed {
            let failure = outcome.failure.as_ref().expect("only failed outcomes");
            let _ = writeln!(out, "\n---- {} ----", outcome.display_name());
            let _ = writeln!(out, "cause: {}", failure.cause);
            let body = failure.body();
            // A failure found before any scenario ran (the capability
            // probe) is the same for all of them; show its details once.
            let seen = shown
                .iter()
                .find(|(_, cause, seen_body)| *cause == failure.cause && *seen_body == body);
            if let Some((first, ..)) = seen {
                let _ = writeln!(out, "(details as for {first})");
                continue;
            }
            if !body.is_empty() {
                let _ = writeln!(out, "{}", body.trim_end());
            }
            if failure.log.is_none() && !failure.stderr_tail.is_empty() {
                let _ = writeln!(out, "\nQEMU log: not kept; --log-dir DIR keeps it");
            }
            shown.push((outcome.display_name(), &failure.cause, body));
        }
        let _ = writeln!(out, "\nfailures:");
        for outcome in failed {
            let _ = writeln!(out, "    {}", outcome.display_name());
        }
        let _ = writeln!(out);
    }
}

impl<W: Write> Reporter for Console<W> {
    fn plan(&mut self, total: usize, qemu_line: &str) {
        let noun = if total == 1 { "scenario" } else { "scenarios" };
        let _ = writeln!(self.out, "running {total} {noun} against {qemu_line}");
    }

    fn started(&mut self, name: &str, pid: u32, dir: &Path) {
        if self.verbose {
            let _ = writeln!(self.out, "start {name} pid={pid} dir={}", dir.display());
            let _ = self.out.flush();
        }
    }

    fn finished(&mut self, outcome: &Outcome) {
        let _ = match (&outcome.skipped, outcome.failed()) {
            (Some(reason), _) => {
                writeln!(self.out, "test {} ... skipped: {reason}", outcome.display_name())
            }
            (None, failed) => writeln!(
                self.out,
                "test {} ... {} ({})",
                outcome.display_name(),
                if failed { "FAILED" } else { "ok" },
                seconds(outcome)
            ),
        };
        for note in &outcome.notes {
            let _ = writeln!(self.out, "    {note}");
        }
        let _ = self.out.flush();
    }

    fn summary(&mut self, outcomes: &[Outcome]) {
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed()).collect();
        if !failed.is_empty() {
            self.failure_details(&failed);
        }
        let _ = writeln!(self.out, "{}", totals(outcomes));
        let _ = self.out.flush();
    }
}
