//! One line per pipeline step, with what it found and how long it took.

use std::time::Instant;

use anyhow::Result;

use crate::interrupt;

pub struct Steps {
    total: usize,
    done: usize,
}

impl Steps {
    pub fn new(total: usize) -> Steps {
        Steps { total, done: 0 }
    }

    /// Runs one step. The closure returns its value and a short summary
    /// for the step's line.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        interrupt::check()?;
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        eprintln!("{label} ...");
        let start = Instant::now();
        let result = f();
        let secs = start.elapsed().as_secs_f64();
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
