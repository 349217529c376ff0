//! What CI runs: one list of jobs, from which both consumers come.
//! `cargo xtask ci` (what `.ci/run` runs) runs the jobs marked for it, in
//! this order, as its stages; the GitLab and GitHub templates (templates.rs,
//! `cargo xtask ci --write-templates`; a test fails when the files differ)
//! run every job in its leg, one CI job per leg (`cargo xtask ci --leg
//! NAME`, the same command locally).

use qmp_tests::cli::{spelled, Routes};
use qmp_tests::program::Program;

use crate::shard::Shard;

/// What a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Fmt,
    Clippy,
    /// The host's build dependencies (installed when root).
    HostDeps,
    /// The templates against the vendors' schemas.
    Templates,
    UnitTests,
    /// `cargo xtask test`: the suite on this build of the pinned release.
    Suite(Build),
    /// `cargo test -- --include-ignored` against the stock and series builds.
    IntegrationTests,
    /// `meson test` through the wiring, on the series build.
    MesonTest,
    /// The mutant catalogue: one run locally, one leg per shard in CI.
    Mutants,
    /// explore: the first `sequences` of seed 0 locally (the same set on
    /// every machine, so that a failure is the change's); a random seed
    /// for `secs` in CI, where docs/explore.md lists what it finds.
    #[rustfmt::skip]
    Explore { sequences: usize, secs: u64 },
}

/// The QEMU a suite job builds: without the series every scenario must
/// fail with the no-monitor-add message; `target` is unused for
/// qemu-storage-daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Build {
    pub target: &'static str,
    /// `--sanitize address,undefined`.
    pub sanitizers: bool,
    pub series: bool,
    pub program: Program,
}

/// How `cargo xtask ci` runs a job: a stage, in order; started beside the
/// next stages and awaited at the end; a stage `--skip-sanitizer` leaves
/// out; or not at all (CI's matrix only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Stage,
    Beside,
    Sanitizer,
    No,
}

/// How the templates run a job: the legs it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legs {
    /// The leg of this name, with the other jobs of that name.
    One(&'static str),
    /// The leg of this name, on one route.
    Route(&'static str, Routes),
    /// One leg per route, NAME-commands and NAME-qom; both routes locally.
    PerRoute(&'static str),
    /// One leg per shard, NAME-K-of-N.
    Shards(&'static str, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    /// The stage's title in `cargo xtask ci`'s output and summary.
    pub title: &'static str,
    pub work: Work,
    pub local: Local,
    pub legs: Legs,
}

/// A job as one CI job of the templates runs it, or as `cargo xtask ci`
/// does (`local`: explore's fixed sequences, the mutants unsharded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub name: String,
    pub job: Job,
    /// The route the suite runs, and must find (both when `None`).
    pub route: Option<Routes>,
    pub shard: Option<Shard>,
    pub local: bool,
}

const fn build(target: &'static str, sanitizers: bool, series: bool, program: Program) -> Work {
    Work::Suite(Build { target, sanitizers, series, program })
}

const fn job(title: &'static str, work: Work, local: Local, legs: Legs) -> Job {
    Job { title, work, local, legs }
}

const SYSTEM: Program = Program::System;

/// The stock and the series build, on which the integration tests and
/// meson test run.
#[rustfmt::skip]
pub const STOCK: Job = job("pipeline, pinned release without the series", build("x86_64", false, false, SYSTEM), Local::Stage, Legs::One("x86_64-stock"));
#[rustfmt::skip]
pub const SERIES: Job = job("pipeline, pinned release with the series", build("x86_64", false, true, SYSTEM), Local::Stage, Legs::PerRoute("x86_64-release"));

/// Every job, in the order `cargo xtask ci` runs them: the checks without
/// QEMU, the pipelines, then the stages on what they built, the slow ones
/// beside the others. The stock leg stays on x86_64; qemu-storage-daemon
/// takes the commands route (monitor-qmp objects are qemu-system's).
#[rustfmt::skip]
pub const JOBS: [Job; 15] = {
    use Legs::*;
    use Local::*;
    use Work::*;
    [
        job("cargo fmt --check", Fmt, Stage, One("checks")),
        job("clippy", Clippy, Stage, One("checks")),
        // The schema check's venv needs python3-venv; the unit tests'
        // signal and kill -9 tests build a stand-in tree with real ninja.
        job("host dependencies", HostDeps, Stage, One("checks")),
        job("CI templates against the vendors' schemas", Templates, Stage, One("checks")),
        job("unit tests", UnitTests, Stage, One("checks")),
        STOCK,
        SERIES,
        // Its own build directory on the series tree the stage above
        // made, no wiring: its build overlaps the QEMU runs below.
        job("qemu-storage-daemon with the series (leg qsd)", build("x86_64", false, true, Program::StorageDaemon), Beside, Route("qsd", Routes::Commands)),
        // Their own scratch build; they mostly wait on the linker and on
        // QEMUs with one vCPU-less machine each.
        job("mutants: every catalogued fault caught", Mutants, Beside, Shards("mutants", 3)),
        job("integration tests against the built QEMUs", IntegrationTests, Stage, One("integration")),
        job("meson test through the wiring", MesonTest, Stage, One("integration")),
        job("explore: the first 500 sequences of seed 0 against the series", Explore { sequences: 500, secs: 600 }, Stage, One("explore")),
        job("sanitizer build (address,undefined) with the series", build("x86_64", true, true, SYSTEM), Sanitizer, PerRoute("x86_64-asan")),
        job("aarch64 release with the series", build("aarch64", false, true, SYSTEM), No, PerRoute("aarch64-release")),
        job("aarch64 sanitizer build with the series", build("aarch64", true, true, SYSTEM), No, PerRoute("aarch64-asan")),
    ]
};

impl Work {
    /// Whether it writes a JUnit report of its own.
    pub fn reports(self) -> bool {
        matches!(self, Work::Suite(_) | Work::Mutants | Work::Explore { .. })
    }
}

impl Job {
    /// The legs this job is in.
    pub fn legs(self) -> Vec<Leg> {
        let leg = |name: String, route, shard| Leg { name, job: self, route, shard, local: false };
        match self.legs {
            Legs::One(_) | Legs::Route(..) => vec![Leg { local: false, ..self.local_leg() }],
            Legs::PerRoute(name) => [Routes::Commands, Routes::Qom]
                .map(|r| leg(format!("{name}-{}", spelled(&r)), Some(r), None))
                .to_vec(),
            Legs::Shards(name, count) => (1..=count)
                .map(|index| Shard { index, count })
                .map(|s| leg(format!("{name}-{}", s.slug()), None, Some(s)))
                .collect(),
        }
    }

    /// Whether it tests a QEMU with monitor-add, and so has a meaning on a
    /// QEMU project's own tree: not this project's checks and integration
    /// tests, the stock release's refusal, the mutants planted in the series.
    pub fn on_any_tree(self) -> bool {
        matches!(self.work, Work::Suite(Build { series: true, .. }) | Work::Explore { .. })
    }

    /// How `cargo xtask ci` runs it: under its legs' name, on its one
    /// route or both.
    pub fn local_leg(self) -> Leg {
        let (name, route) = match self.legs {
            Legs::Route(name, route) => (name, Some(route)),
            Legs::One(name) | Legs::PerRoute(name) | Legs::Shards(name, _) => (name, None),
        };
        Leg { name: name.to_owned(), job: self, route, shard: None, local: true }
    }
}

/// Every leg's name (of those on any tree, or all), in order, each once:
/// the jobs of one leg are next to each other.
pub fn names(tree: bool) -> Vec<String> {
    let jobs = JOBS.iter().filter(|j| !tree || j.on_any_tree());
    let mut names: Vec<String> = jobs.flat_map(|j| j.legs()).map(|l| l.name).collect();
    names.dedup();
    names
}

/// What `cargo xtask ci` runs, in order (without the sanitizer build when
/// `skip_sanitizer`).
pub fn local(skip_sanitizer: bool) -> Vec<Leg> {
    let runs =
        |j: &&Job| !matches!((j.local, skip_sanitizer), (Local::No, _) | (Local::Sanitizer, true));
    JOBS.iter().filter(runs).map(|j| j.local_leg()).collect()
}

/// The jobs of the leg `name`, in order; empty when there is none.
pub fn leg(name: &str) -> Vec<Leg> {
    JOBS.iter().flat_map(|j| j.legs()).filter(|l| l.name == name).collect()
}

/// Where a leg's JUnit report goes.
pub fn junit_path(name: &str) -> String {
    format!("target/qmp-tests/{name}/junit.xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legs_are_the_matrix() {
        // Target x build x route, qsd, stock, three shards, explore, the
        // checks and the integration tests, each once.
        let all = names(false);
        let unique: std::collections::BTreeSet<&String> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (16, 16), "{all:?}");
        assert_eq!(leg("checks").len(), 5);
        assert!(leg("aarch64-asan-qom").iter().all(|l| l.route == Some(Routes::Qom)));
        assert!(leg("qsd").iter().all(|l| l.route == Some(Routes::Commands)));
        assert!(leg("mutants-2-of-3").iter().all(|l| l.shard.is_some_and(|s| s.index == 2)));
        assert!(leg("nothing").is_empty());
        // A QEMU tree runs every leg with monitor-add: not the stock one,
        // the checks, or the mutant shards, which plant faults in the
        // project's series.
        let tree = names(true);
        assert!(tree.iter().all(|n| !n.contains("stock") && !n.starts_with("mutants")));
        assert_eq!(tree.len(), 8 + 1 + 1, "{tree:?}");
    }

    #[test]
    fn the_local_run_keeps_its_stages() {
        let count = |l: Local| JOBS.iter().filter(|j| j.local == l).count();
        let counts = (count(Local::Stage), count(Local::Beside), count(Local::Sanitizer));
        assert_eq!(counts, (10, 2, 1));
        assert_eq!((local(true).len(), local(false).len()), (12, 13));
        // Every x86_64 job runs locally; aarch64 only in CI.
        let aarch64 = |j: &Job| j.local_leg().name.starts_with("aarch64");
        assert!(JOBS.iter().all(|j| (j.local == Local::No) == aarch64(j)));
    }
}
