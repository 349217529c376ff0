//! Median, min and max of a figure's runs.

use std::time::Instant;

use anyhow::Result;

/// A figure's runs, summarised. Times are in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub runs: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for no samples: a figure without runs has no median.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        // The mean of the middle two for an even count, so that two runs
        // do not report the faster one as typical.
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            runs: n,
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    /// Every run less `offset`, e.g. a whole pipeline less its suite.
    pub fn minus(self, offset: f64) -> Stats {
        Stats {
            runs: self.runs,
            median: self.median - offset,
            min: self.min - offset,
            max: self.max - offset,
        }
    }
}

/// Runs `f` `runs` times; each run returns its own measured seconds.
/// Checks for Ctrl-C between runs, so a long figure can be cut short.
pub fn sample(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        crate::interrupt::check()?;
        samples.push(f()?);
    }
    Ok(Stats::of(&samples).expect("at least one run"))
}

/// Seconds taken by `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let start = Instant::now();
    let value = f()?;
    Ok((start.elapsed().as_secs_f64(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Stats {
                runs: 3,
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
    }

    #[test]
    fn even_count_averages_the_middle_two() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!((s.min, s.max, s.runs), (1.0, 4.0, 4));
    }

    #[test]
    fn one_run_and_none() {
        let s = Stats::of(&[0.5]).unwrap();
        assert_eq!((s.median, s.min, s.max), (0.5, 0.5, 0.5));
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn minus_shifts_every_figure() {
        let s = Stats::of(&[2.0, 3.0, 4.0]).unwrap().minus(1.5);
        assert_eq!((s.median, s.min, s.max), (1.5, 0.5, 2.5));
    }

    #[test]
    fn sample_runs_the_closure_each_time() {
        let mut n = 0.0;
        let s = sample(3, || {
            n += 1.0;
            Ok(n)
        })
        .unwrap();
        assert_eq!((s.runs, s.median), (3, 2.0));
    }
}
