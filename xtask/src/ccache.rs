//! ccache in front of QEMU's compilers, and what it saved.
//!
//! QEMU's configure writes the compiler it picked into meson's machine
//! file, so meson never puts ccache in front of it on its own: the xtask
//! names `ccache cc` itself. Hits across checkouts need the paths in the
//! compile commands to agree, so the cache is told the project's target
//! directory is a base directory and not to hash the working directory.

use std::collections::HashMap;
use std::process::Command;

use xshell::{cmd, Shell};

use crate::interrupt::Controlled;
use crate::paths;

/// Whether builds go through ccache: the host has it and the user did not
/// name a compiler of their own.
pub fn wanted(configure_args: &[String]) -> bool {
    let names_compiler =
        configure_args.iter().any(|a| a.starts_with("--cc=") || a.starts_with("--cxx="));
    !names_compiler && which::which("ccache").is_ok()
}

/// The configure arguments that wrap the compilers configure would pick.
pub fn configure_args() -> Vec<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    vec![format!("--cc=ccache {cc}"), format!("--cxx=ccache {cxx}")]
}

/// Sets the environment the compilers run in under ccache. Depend mode
/// hashes the dependency file the compiler writes anyway (meson asks for
/// one): without it a miss runs the preprocessor as well as the compiler,
/// which made a build into an empty cache a third slower than no ccache.
pub fn environment(command: &mut Command) {
    command
        .env("CCACHE_BASEDIR", paths::target_dir())
        .env("CCACHE_NOHASHDIR", "1")
        .env("CCACHE_DEPEND", "1");
}

/// ccache's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
}

impl Counters {
    /// None where ccache cannot say (not installed, an old version).
    pub fn read(sh: &Shell) -> Option<Counters> {
        let text = cmd!(sh, "ccache --print-stats").quiet().ignore_stderr().spawn_read().ok()?;
        Some(Counters::parse(&text))
    }

    fn parse(text: &str) -> Counters {
        let values: HashMap<&str, u64> = text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once('\t')?;
                Some((key.trim(), value.trim().parse().ok()?))
            })
            .collect();
        let get = |key: &str| values.get(key).copied().unwrap_or(0);
        Counters {
            hits: get("direct_cache_hit") + get("preprocessed_cache_hit"),
            misses: get("cache_miss"),
        }
    }

    /// What happened between `self` and `later`, for the build step's line.
    pub fn summary(self, later: Counters) -> String {
        let hits = later.hits.saturating_sub(self.hits);
        let misses = later.misses.saturating_sub(self.misses);
        match hits + misses {
            0 => "ccache: no compiles".to_owned(),
            total => format!(
                "ccache: {hits} of {total} compiles hit ({:.0}%)",
                100.0 * hits as f64 / total as f64
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_of_both_modes_and_misses() {
        let before = Counters::parse("cache_miss\t10\ndirect_cache_hit\t3\nfiles_in_cache\t99\n");
        let after = Counters::parse(
            "cache_miss\t12\ndirect_cache_hit\t9\npreprocessed_cache_hit\t2\nstats_updated_timestamp\t1\n",
        );
        assert_eq!(before, Counters { hits: 3, misses: 10 });
        assert_eq!(before.summary(after), "ccache: 8 of 10 compiles hit (80%)");
        assert_eq!(after.summary(after), "ccache: no compiles");
    }

    #[test]
    fn a_compiler_of_the_users_own_turns_it_off() {
        assert!(!wanted(&["--cc=clang".to_owned()]));
        assert!(!wanted(&["--cxx=clang++".to_owned()]));
    }
}
