//! `cargo xtask test`: the whole pipeline, then the suite.

use std::path::PathBuf;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::build::BuildOptions;
use crate::cli::{self, Command, Flag, Kind, Matches};
use crate::pipeline::{self, RunFacts, SourceArgs};
use crate::steps::Steps;
use crate::suite::{self, Outcome, SuiteOptions};
use crate::vcs;

pub const SUITE_FLAGS: &[Flag] = &[
    cli::repeated(
        "scenario",
        "NAME",
        Kind::Text,
        "run only this scenario (repeatable)",
    ),
    cli::value(
        "jobs",
        "N",
        Kind::Text,
        "scenarios run in parallel (default: number of cores)",
    ),
    cli::value(
        "route",
        "ROUTE",
        Kind::Text,
        "how monitors are added: commands (monitor-add), qom\n(object-add of monitor-qmp) or all (default: every\nroute the QEMU has)",
    ),
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
    about: "fetch or locate QEMU, build qemu-system, wire the meson
entry, run the qmp-tests suite and write a JUnit report.",
    groups: &[
        ("Source", pipeline::SOURCE_FLAGS),
        ("Build", pipeline::BUILD_FLAGS),
        ("Suite", SUITE_FLAGS),
    ],
    after: "Exit status: 0 all scenarios passed, 1 a scenario failed or the QEMU has
no monitor-add, 2 the pipeline itself failed (fetch, build, bad input).",
};

/// Everything `cargo xtask test` is asked to do; `ci` builds one directly.
pub struct Options {
    pub source: SourceArgs,
    pub build: BuildOptions,
    pub suite: SuiteOptions,
}

impl Options {
    pub fn from_matches(m: &Matches) -> Result<Options> {
        let source = SourceArgs::from_matches(m)?;
        let build = pipeline::build_options(m, pipeline::Targets::of(&source))?;
        let suite = SuiteOptions::from_matches(m)?;
        Ok(Options {
            source,
            build,
            suite,
        })
    }
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
pub fn run(sh: &Shell, opts: &Options) -> Result<Run> {
    let (src, build_opts, suite_opts) = (&opts.source, &opts.build, &opts.suite);
    let _lock = crate::lock::cache()?;

    let mut steps = Steps::new(8);
    pipeline::host_step(&mut steps, sh)?;
    let prepared = pipeline::source_steps(&mut steps, sh, src)?;
    let tree = &prepared.tree;
    let qmp_tests = steps.run("qmp-tests binary", || {
        let bin = suite::binary(sh)?;
        let summary = bin.display().to_string();
        Ok((bin, summary))
    })?;
    // Read before wiring, which the report must not count as a change of
    // the tree's.
    let commit = vcs::describe(sh, &tree.path);
    let guard = pipeline::wire_step(&mut steps, tree, &qmp_tests)?;
    let built = pipeline::build_step(&mut steps, sh, tree, build_opts)?;

    let facts = RunFacts {
        tree: tree.clone(),
        series: prepared.series.clone(),
        commit,
    };
    let outcome = pipeline::suite_step(&mut steps, &qmp_tests, &built, &facts, suite_opts);
    if let Some(guard) = guard {
        guard.finish()?;
    }
    let outcome = outcome?;
    let junit = suite_opts
        .junit
        .clone()
        .unwrap_or_else(suite::default_junit);
    eprintln!("JUnit report: {}", junit.display());
    if outcome == Outcome::Unsupported && prepared.series == "none" && !tree.located {
        eprintln!("note: the pinned release has no monitor-add; drop --no-series to test the project's series");
    }
    Ok(Run {
        outcome,
        binary: built.binary,
        tree: tree.path.clone(),
    })
}

pub fn fail_on(outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Passed => Ok(()),
        Outcome::Failed => bail!("some scenarios failed"),
        Outcome::Unsupported => bail!("this QEMU has no monitor-add: every scenario failed"),
    }
}
