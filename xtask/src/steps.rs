//! One line per pipeline step, with what it found and how long it took.

use std::time::{Duration, Instant};

use anyhow::Result;
use xshell::Shell;

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

/// A step running on a thread of its own while the steps after it run:
/// its line ends when [`Beside::finish`] joins it.
pub struct Beside<T> {
    begun: Begun,
    thread: std::thread::JoinHandle<(Result<(T, String)>, Duration)>,
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

    /// Starts a step on a thread of its own, with a shell of its own
    /// (a `Shell` stays on the thread that made it).
    pub fn beside<T: Send + 'static>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Shell) -> Result<(T, String)> + Send + 'static,
    ) -> Result<Beside<T>> {
        let begun = self.begin(name, " (beside the steps after it)")?;
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let result = Shell::new().map_err(anyhow::Error::from).and_then(|sh| f(&sh));
            (result, start.elapsed())
        });
        Ok(Beside { begun, thread })
    }

    /// Announces a step that finishes later, perhaps after others have
    /// run beside it; `note` says so on its first line.
    fn begin(&mut self, name: &str, note: &str) -> Result<Begun> {
        interrupt::check()?;
        self.done += 1;
        let label = format!("[{}/{}] {name}", self.done, self.total);
        eprintln!("{label} ...{note}");
        Ok(Begun { label, start: Instant::now() })
    }
}

impl<T> Beside<T> {
    /// Waits for the step and ends its line.
    pub fn finish(self) -> Result<T> {
        let Beside { begun, thread } = self;
        let (result, took) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the thread of step {:?} panicked", begun.label))?;
        begun.end(result, took)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_beside_gives_its_value_or_its_error_when_joined() {
        let mut steps = Steps::new(3);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting =
            steps.beside("waits", move |_| Ok((rx.recv()?, "got it".to_owned()))).unwrap();
        // The step after it runs while the first still waits.
        let after = steps.run("after", || Ok((7, String::new()))).unwrap();
        tx.send(after * 6).unwrap();
        assert_eq!(waiting.finish().unwrap(), 42);
        let failing =
            steps.beside("fails", |_| -> Result<((), String)> { anyhow::bail!("no") }).unwrap();
        assert_eq!(failing.finish().unwrap_err().to_string(), "no");
    }

    #[test]
    fn a_panic_beside_is_an_error_naming_the_step() {
        let mut steps = Steps::new(1);
        let step = steps.beside("boom", |_| -> Result<((), String)> { panic!("boom") }).unwrap();
        let err = step.finish().unwrap_err().to_string();
        assert!(err.contains("[1/1] boom") && err.contains("panicked"), "{err}");
    }
}
