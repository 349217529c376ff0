//! The CI matrix: every leg a CI system runs, as `cargo xtask ci --leg
//! NAME` runs it locally. The GitLab and GitHub templates are rendered
//! from this list (templates.rs, `cargo xtask ci --write-templates`), and
//! a test fails when they differ, so the two cannot drift apart.

use qmp_tests::cli::{spelled, Routes};
use qmp_tests::program::Program;

use crate::shard::Shard;

/// One leg of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub name: String,
    pub target: &'static str,
    /// Built with `--sanitize address,undefined`.
    pub sanitizers: bool,
    /// The route the suite runs, and must find; `None` for the stock leg.
    pub route: Option<Routes>,
    /// The pinned release with the project's series; without it, every
    /// scenario must fail with the no-monitor-add message.
    pub series: bool,
    /// A shard of `cargo xtask mutants` (on the series build) instead of
    /// the suite.
    pub mutants: Option<Shard>,
    /// `cargo xtask explore` for this many seconds instead of the suite.
    pub explore: Option<u64>,
    /// The program built and tested; `target` is unused for
    /// qemu-storage-daemon.
    pub program: Program,
}

const TARGETS: [&str; 2] = ["x86_64", "aarch64"];
const ROUTES: [Routes; 2] = [Routes::Commands, Routes::Qom];
/// The mutants run as this many legs.
const MUTANT_SHARDS: usize = 3;

/// Target x build x route with the series, qemu-storage-daemon with the
/// series, the stock release, then the mutant shards and explore.
pub fn all() -> Vec<Leg> {
    let mut legs = Vec::new();
    for target in TARGETS {
        for sanitizers in [false, true] {
            for route in ROUTES {
                let build = if sanitizers { "asan" } else { "release" };
                legs.push(Leg {
                    name: format!("{target}-{build}-{}", spelled(&route)),
                    target,
                    sanitizers,
                    route: Some(route),
                    series: true,
                    mutants: None,
                    explore: None,
                    program: Program::System,
                });
            }
        }
    }
    // The third QMP server: qemu-storage-daemon with the series, on the
    // commands route (monitor-qmp objects are qemu-system's).
    legs.push(Leg {
        name: "qsd".to_owned(),
        target: "x86_64",
        sanitizers: false,
        route: Some(Routes::Commands),
        series: true,
        mutants: None,
        explore: None,
        program: Program::StorageDaemon,
    });
    legs.push(Leg {
        name: "x86_64-stock".to_owned(),
        target: "x86_64",
        sanitizers: false,
        route: None,
        series: false,
        mutants: None,
        explore: None,
        program: Program::System,
    });
    for index in 1..=MUTANT_SHARDS {
        let shard = Shard { index, count: MUTANT_SHARDS };
        legs.push(Leg {
            name: format!("mutants-{}", shard.slug()),
            target: "x86_64",
            sanitizers: false,
            route: None,
            series: true,
            mutants: Some(shard),
            explore: None,
            program: Program::System,
        });
    }
    // Ten times the budget of `cargo xtask ci`'s explore stage.
    legs.push(Leg {
        name: "explore".to_owned(),
        target: "x86_64",
        sanitizers: false,
        route: None,
        series: true,
        mutants: None,
        explore: Some(600),
        program: Program::System,
    });
    legs
}

pub fn find(name: &str) -> Option<Leg> {
    all().into_iter().find(|leg| leg.name == name)
}

/// Where a leg's JUnit report goes.
pub fn junit_path(name: &str) -> String {
    format!("target/qmp-tests/{name}/junit.xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_are_the_matrix_and_unique() {
        let legs = all();
        assert_eq!(legs.len(), TARGETS.len() * 2 * ROUTES.len() + 1 + 1 + MUTANT_SHARDS + 1);
        let mut names: Vec<&str> = legs.iter().map(|l| l.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), legs.len());
        assert!(find("aarch64-asan-qom").is_some_and(|l| l.sanitizers && l.series));
        assert!(find("x86_64-stock").is_some_and(|l| !l.series && l.route.is_none()));
        assert!(find("mutants-2-of-3").is_some_and(|l| l.mutants.is_some_and(|s| s.index == 2)));
        assert!(find("explore").is_some_and(|l| l.series && l.explore == Some(600)));
        assert!(find("qsd").is_some_and(|l| l.series && l.program == Program::StorageDaemon));
    }
}
