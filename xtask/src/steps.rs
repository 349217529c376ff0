//! One line per pipeline step, with what it found and how long it took.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::interrupt;

pub struct Steps {
    total: usize,
    done: usize,
}

/// A step whose line is open: announced, not yet finished.
pub struct Begun {
    label: String,
    start: Instant,
}

impl Steps {
    pub fn new(total: usize) -> Steps {
        Steps { total, done: 0 }
    }

    /// Runs one step. The closure returns its value and a short summary
    /// for the step's line.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        let begun = self.begin(name, "")?;
        let result = f();
        let elapsed = begun.start.elapsed();
        begun.end(result, elapsed)
    }

    /// Announces a step that finishes later, perhaps after others have
    /// run beside it; `note` says so on its first line.
    pub fn begin(&mut self, name: &str, note: &str) -> Result<Begun> {
        interrupt::check()?;
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        eprintln!("{label} ...{note}");
        Ok(Begun {
            label,
            start: Instant::now(),
        })
    }
}

impl Begun {
    /// Ends the step's line with its summary and the time it took.
    pub fn end<T>(self, result: Result<(T, String)>, took: Duration) -> Result<T> {
        let (label, secs) = (self.label, took.as_secs_f64());
        match result {
            Ok((value, summary)) => {
                eprintln!("{label}: {summary} ({secs:.1}s)");
                Ok(value)
            }
            Err(err) => {
                eprintln!("{label}: failed ({secs:.1}s)");
                Err(err)
            }
        }
    }
}
