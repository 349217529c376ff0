//! Where a scenario's time went, read off its transcript: each stretch
//! between two entries is charged to what the later entry ended.
//!
//! A reply ends the oldest command still unanswered on its connection
//! (in-band replies come in order), a greeting ends a spawn or a connect,
//! and a request we send ends time spent in the harness itself.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use crate::qmp::{Direction, Transcript};

/// The phases, in the order a scenario goes through them.
pub const PHASES: [&str; 10] = [
    "spawn to greeting",
    "probe",
    "chardev-add",
    "monitor-add",
    "connect",
    "negotiate",
    "command",
    "remove",
    "quit and reap",
    "harness",
];

/// The note the runner adds once QEMU has been reaped.
pub const REAPED: &str = "QEMU reaped";

/// The time of each phase, in [`PHASES`] order.
pub fn phases(transcript: &Transcript) -> Vec<(&'static str, Duration)> {
    let mut totals: HashMap<&'static str, Duration> = HashMap::new();
    let mut pending: HashMap<String, VecDeque<&'static str>> = HashMap::new();
    let mut previous = Duration::ZERO;
    for (at, who, direction, text) in transcript.entries() {
        let phase = match direction {
            Direction::Sent => {
                pending.entry(who.clone()).or_default().push_back(phase_of(command_of(&text)));
                "harness"
            }
            Direction::Received if text.starts_with("{\"QMP\"") => {
                if who == "main" {
                    "spawn to greeting"
                } else {
                    "connect"
                }
            }
            Direction::Received if text.contains("\"event\"") => {
                pending.get(&who).and_then(|queue| queue.front().copied()).unwrap_or("command")
            }
            Direction::Received => {
                pending.get_mut(&who).and_then(VecDeque::pop_front).unwrap_or("command")
            }
            Direction::Note if text == REAPED => "quit and reap",
            Direction::Note => "harness",
        };
        *totals.entry(phase).or_default() += at.saturating_sub(previous);
        previous = at;
    }
    PHASES.iter().map(|&phase| (phase, totals.get(phase).copied().unwrap_or_default())).collect()
}

/// The command of a request as the client serialised it.
fn command_of(text: &str) -> &str {
    const KEY: &str = "\"execute\":\"";
    text.find(KEY)
        .map(|start| &text[start + KEY.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
}

fn phase_of(command: &str) -> &'static str {
    match command {
        "qmp_capabilities" => "negotiate",
        "query-commands" => "probe",
        "chardev-add" => "chardev-add",
        "monitor-add" => "monitor-add",
        "monitor-remove" | "chardev-remove" => "remove",
        "quit" => "quit and reap",
        _ => "command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(phases: &[(&str, Duration)], name: &str) -> Duration {
        phases.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn every_stretch_goes_to_what_ended_it() {
        let t = Transcript::new();
        t.record("main", Direction::Received, br#"{"QMP": {}}"#);
        t.record("main", Direction::Sent, br#"{"execute":"monitor-add","id":"main-3"}"#);
        t.record("main", Direction::Received, br#"{"event": "X"}"#);
        t.record("main", Direction::Received, br#"{"return": {}, "id": "main-3"}"#);
        t.note("hp", "connect /x");
        t.record("hp", Direction::Received, br#"{"QMP": {}}"#);
        t.note("harness", REAPED);
        let phases = phases(&t);
        let total: Duration = phases.iter().map(|(_, d)| *d).sum();
        let last = t.entries().last().unwrap().0;
        assert_eq!(total, last);
        assert_eq!(phases.len(), PHASES.len());
        // Nothing here is charged to a phase that did not happen.
        assert_eq!(get(&phases, "chardev-add"), Duration::ZERO);
        assert_eq!(get(&phases, "negotiate"), Duration::ZERO);
    }

    #[test]
    fn commands_are_read_from_requests() {
        assert_eq!(
            command_of(r#"{"arguments":{},"execute":"chardev-add","id":"m-2"}"#),
            "chardev-add"
        );
        assert_eq!(command_of("no request"), "");
        assert_eq!(phase_of("monitor-remove"), "remove");
        assert_eq!(phase_of("query-version"), "command");
    }
}
