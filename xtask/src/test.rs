//! `cargo xtask test`: the whole pipeline, then the suite.

use std::path::PathBuf;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags::Args;
use crate::pipeline::{self, SourceArgs};
use crate::steps::Steps;
use crate::suite::{self, Outcome, SuiteOptions};
use crate::vcs;

pub const HELP: &str = "\
cargo xtask test: fetch or locate QEMU, build qemu-system, wire the meson
entry, run the qmp-tests suite and write a JUnit report.

Source:
{SOURCE}
Build:
{BUILD}
Suite:
  --scenario NAME       run only this scenario (repeatable)
  --jobs N              scenarios run in parallel (default: number of cores)
  --timeout SECS        per-scenario deadline
  --soak N              cycles of the soak scenario
  --junit PATH          where the report goes (default target/qmp-tests/junit.xml)

Exit status: 0 all scenarios passed, 1 a scenario failed or the QEMU has
no monitor-add, 2 the pipeline itself failed (fetch, build, bad input).";

pub fn parse_suite(args: &mut Args) -> Result<SuiteOptions> {
    Ok(SuiteOptions {
        scenarios: args.values("--scenario")?,
        jobs: args.number("--jobs")?,
        timeout: args.number("--timeout")?,
        soak: args.number("--soak")?,
        junit: args.path("--junit")?,
        ..SuiteOptions::default()
    })
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
pub fn run(sh: &Shell, mut args: Args) -> Result<Run> {
    let src = SourceArgs::parse(&mut args)?;
    let build_opts = pipeline::parse_build(&mut args)?;
    let mut suite_opts = parse_suite(&mut args)?;
    args.finish("test")?;

    let mut steps = Steps::new(7);
    pipeline::host_step(&mut steps, sh)?;
    let prepared = pipeline::source_steps(&mut steps, sh, &src)?;
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
    let built = pipeline::build_step(&mut steps, sh, tree, &build_opts)?;

    // qmp-tests records the binary and its version itself.
    let mut properties = vec![
        ("qemu_tree".to_owned(), tree.path.display().to_string()),
        ("qemu_source".to_owned(), tree.description.clone()),
        ("series".to_owned(), prepared.series.clone()),
        ("configure".to_owned(), built.configure[1..].join(" ")),
    ];
    if let Some(commit) = commit {
        properties.push(("qemu_commit".to_owned(), commit));
    }
    crate::interrupt::check()?;
    suite_opts.qemu_src = Some(tree.path.clone());
    suite_opts.python = Some(built.python.clone());
    eprintln!("==> qmp-tests against {}", built.binary.display());
    let outcome = suite::run(&qmp_tests, &built.binary, &suite_opts, &properties, false);
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
