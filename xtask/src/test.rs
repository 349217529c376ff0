//! `cargo xtask test`: the whole pipeline, then the suite.

use std::path::PathBuf;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::cli::{self, Command, Flag, Kind, Matches};
use crate::pipeline::{self, Pipeline, SourceArgs};
use crate::suite::{self, Outcome, SuiteOptions};

pub const SUITE_FLAGS: &[Flag] = &[
    cli::shared::SCENARIO,
    cli::value(
        "jobs",
        "N",
        Kind::Text,
        "scenarios run in parallel (default: number of cores)",
    ),
    cli::shared::ROUTE,
    cli::value("timeout", "SECS", Kind::Text, "per-scenario deadline"),
    cli::value("soak", "N", Kind::Text, "cycles of the soak scenario"),
    cli::value(
        "junit",
        "PATH",
        Kind::Path,
        "where the report goes (default target/qmp-tests/junit.xml)",
    ),
];

pub const COMMAND: Command = Command {
    name: "test",
    summary: "fetch or locate QEMU, build it, wire meson, run the suite, write JUnit",
    about: "fetch or locate QEMU, build qemu-system (or qemu-storage-daemon),
wire the meson entry, run the qmp-tests suite and write a JUnit report.",
    groups: &[
        ("Source", pipeline::SOURCE_FLAGS),
        ("Build", pipeline::BUILD_FLAGS),
        ("Program", pipeline::PROGRAM_FLAGS),
        ("Suite", SUITE_FLAGS),
    ],
    after: "Exit status: 0 all scenarios passed, 1 a scenario failed or the QEMU has
no monitor-add, 2 the pipeline itself failed (fetch, build, bad input).",
};

/// `cargo xtask test`'s input, checked: its pipeline.
pub fn parse(m: &Matches) -> Result<Pipeline> {
    let source = SourceArgs::from_matches(m)?;
    let mut build = pipeline::build_options(m, pipeline::Targets::of(&source))?;
    build.program = pipeline::program(m)?;
    let suite = SuiteOptions::from_matches(m)?;
    let steps = pipeline::test_steps(build.program);
    Ok(Pipeline::new(source, build, suite, &steps))
}

/// What one run of the pipeline produced.
pub struct Run {
    pub outcome: Outcome,
    pub binary: PathBuf,
    /// The tree that was built: the located or fetched one, or the
    /// series' worktree.
    pub tree: PathBuf,
}

/// Runs the pipeline and the suite.
pub fn run(sh: &Shell, pipeline: &Pipeline) -> Result<Run> {
    let state = pipeline.run(sh)?;
    let (Some(outcome), Some(built), Some(tree)) = (state.outcome, state.built, state.tree) else {
        bail!("`cargo xtask test`'s pipeline has no suite step (a bug in the xtask)");
    };
    let junit = pipeline
        .suite
        .junit
        .clone()
        .unwrap_or_else(suite::default_junit);
    eprintln!("JUnit report: {}", junit.display());
    if outcome == Outcome::Unsupported && state.series == "none" && !tree.located {
        eprintln!("note: the pinned release has no monitor-add; drop --no-series to test the project's series");
    }
    Ok(Run {
        outcome,
        binary: built.binary,
        tree: tree.path,
    })
}

pub fn fail_on(outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Passed => Ok(()),
        Outcome::Failed => bail!("some scenarios failed"),
        Outcome::Unsupported => bail!("this QEMU has no monitor-add: every scenario failed"),
    }
}
