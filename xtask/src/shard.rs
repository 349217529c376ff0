//! `--shard K/N`: one of N parts of the catalogue, so that CI can run the
//! mutants as N jobs side by side. The parts are dealt round-robin over
//! the catalogue in name order (as cargo-mutants does): the same
//! catalogue always gives the same parts, they differ in size by at most
//! one, and together they are the whole catalogue, each mutant in
//! exactly one. Every shard runs the unmutated baseline itself.

use std::fmt;

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// From 1 up to `count`.
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard> {
        let parsed = text.split_once('/').and_then(|(k, n)| {
            let (index, count) = (k.trim().parse().ok()?, n.trim().parse().ok()?);
            Some(Shard { index, count })
        });
        match parsed {
            Some(shard) if shard.index >= 1 && shard.index <= shard.count => Ok(shard),
            _ => {
                bail!("--shard {text}: give K/N, the K-th of N parts, with 1 <= K <= N (e.g. 2/3)")
            }
        }
    }

    /// This shard's part of `items` (the catalogue, in name order).
    pub fn take<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, item)| item)
            .collect()
    }

    /// A name for its report directory and CI leg: `2-of-3`.
    pub fn slug(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_together_are_the_whole_each_item_once() {
        for len in [0, 1, 5, 42, 43] {
            let items: Vec<usize> = (0..len).collect();
            for count in 1..=7 {
                let mut union = Vec::new();
                let mut sizes = Vec::new();
                for index in 1..=count {
                    let part = Shard { index, count }.take(items.clone());
                    sizes.push(part.len());
                    union.extend(part);
                }
                union.sort();
                assert_eq!(union, items, "{len} items in {count} shards");
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn the_same_catalogue_gives_the_same_shards() {
        let names = || vec!["a", "b", "c", "d", "e"];
        let shard = Shard::parse("2/3").unwrap();
        assert_eq!(shard.take(names()), ["b", "e"]);
        assert_eq!(shard.take(names()), shard.take(names()));
        assert_eq!(shard.slug(), "2-of-3");
    }

    #[test]
    fn a_shard_outside_its_count_is_refused() {
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "/"] {
            let err = Shard::parse(bad).unwrap_err().to_string();
            assert!(err.contains("K/N"), "{bad}: {err}");
        }
        assert_eq!(Shard::parse("3/3").unwrap(), Shard { index: 3, count: 3 });
    }
}
