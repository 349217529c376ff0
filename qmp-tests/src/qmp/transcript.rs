//! A shared, timestamped log of QMP traffic, kept so that a failure report
//! can show the exchange that led to it.

use std::{
    collections::VecDeque,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Lines longer than this are cut in the transcript: a 240 KB schema reply
/// says nothing more useful in full than its opening does.
const MAX_LINE: usize = 300;

/// Enough history to cover the failing exchange without letting a long
/// soak grow the transcript without bound.
const MAX_ENTRIES: usize = 4000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
    Note,
}

struct Entry {
    at: Duration,
    who: String,
    direction: Direction,
    text: String,
}

struct Log {
    start: Instant,
    entries: VecDeque<Entry>,
    dropped: usize,
}

/// Both directions of one or more QMP connections, in the order seen.
///
/// Clones share the same log, so the main monitor and dynamic monitors of
/// one scenario interleave in a single timeline.
#[derive(Clone)]
pub struct Transcript {
    log: Arc<Mutex<Log>>,
}

impl Default for Transcript {
    fn default() -> Self {
        Transcript::new()
    }
}

impl Transcript {
    pub fn new() -> Transcript {
        let log = Log { start: Instant::now(), entries: VecDeque::new(), dropped: 0 };
        Transcript { log: Arc::new(Mutex::new(log)) }
    }

    pub fn record(&self, who: &str, direction: Direction, bytes: &[u8]) {
        self.push(who, direction, abbreviate(bytes));
    }

    pub fn note(&self, who: &str, text: &str) {
        self.push(who, Direction::Note, text.to_string());
    }

    fn push(&self, who: &str, direction: Direction, text: String) {
        let mut log = self.lock();
        let at = log.start.elapsed();
        if log.entries.len() == MAX_ENTRIES {
            log.entries.pop_front();
            log.dropped += 1;
        }
        log.entries.push_back(Entry { at, who: who.to_string(), direction, text });
    }

    /// The last `max_entries` entries, one per line, times in ms since the
    /// transcript was created.
    pub fn tail(&self, max_entries: usize) -> String {
        let log = self.lock();
        let skip = log.entries.len().saturating_sub(max_entries);
        let mut out = String::new();
        if log.dropped + skip > 0 {
            let _ = writeln!(out, "({} earlier entries omitted)", log.dropped + skip);
        }
        for entry in log.entries.iter().skip(skip) {
            let arrow = match entry.direction {
                Direction::Sent => "->",
                Direction::Received => "<-",
                Direction::Note => "--",
            };
            let ms = entry.at.as_secs_f64() * 1000.0;
            let _ = writeln!(out, "{ms:>10.1} ms {} {arrow} {}", entry.who, entry.text);
        }
        out
    }

    /// Every entry kept, oldest first: (time since start, who, direction,
    /// text).
    pub fn entries(&self) -> Vec<(Duration, String, Direction, String)> {
        self.lock()
            .entries
            .iter()
            .map(|e| (e.at, e.who.clone(), e.direction, e.text.clone()))
            .collect()
    }

    pub fn render(&self) -> String {
        self.tail(usize::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock leaves the log consistent (every
        // push is complete or absent), and the transcript matters most
        // exactly when something panicked.
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The text of `bytes`, cut to `MAX_LINE` bytes on a character boundary.
pub(crate) fn abbreviate(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_LINE {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let head = &bytes[..MAX_LINE];
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text.len(),
        Err(err) => err.valid_up_to(),
    };
    let head = String::from_utf8_lossy(&head[..valid]);
    format!("{head}... ({} bytes)", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let mut line = "x".repeat(MAX_LINE - 1).into_bytes();
        line.extend("é".repeat(100).as_bytes());
        let text = abbreviate(&line);
        assert!(text.starts_with(&"x".repeat(MAX_LINE - 1)));
        assert!(text.ends_with(&format!("... ({} bytes)", line.len())));
        assert!(!text.contains('\u{FFFD}'));
    }

    #[test]
    fn tail_keeps_the_newest_entries() {
        let transcript = Transcript::new();
        for i in 0..5 {
            transcript.note("main", &format!("entry {i}"));
        }
        let tail = transcript.tail(2);
        assert!(tail.starts_with("(3 earlier entries omitted)"));
        assert!(tail.contains("entry 3") && tail.contains("entry 4"));
        assert!(!tail.contains("entry 2"));
    }
}
