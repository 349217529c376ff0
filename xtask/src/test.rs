//! `cargo xtask test`: the whole pipeline, then the suite.

use std::path::PathBuf;

use anyhow::{bail, Result};
use xshell::Shell;

use qmp_tests::cli::SuiteCli;

use crate::pipeline;
use crate::suite::{self, Outcome};
use crate::{flags, lock, Done};

impl flags::Test {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let build = self.program.options(&self.build, pipeline::Targets::of(&source))?;
        let suite = SuiteCli { suite: self.suite, junit: self.junit.junit, ..SuiteCli::default() };
        let plan = pipeline::Test { source, build, suite };
        let _lock = lock::cache()?;
        Ok(Done::Suite(run(sh, &plan)?.outcome))
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
pub fn run(sh: &Shell, plan: &pipeline::Test) -> Result<Run> {
    let tested = pipeline::test(sh, plan)?;
    let junit = plan.suite.junit.clone().unwrap_or_else(suite::default_junit);
    eprintln!("JUnit report: {}", junit.display());
    let tree = tested.prepared.tree;
    let (outcome, series) = (tested.outcome, tested.prepared.series);
    if outcome == Outcome::Unsupported && series == "none" && !tree.located {
        eprintln!("note: the pinned release has no monitor-add; drop --no-series to test the project's series");
    }
    Ok(Run { outcome, binary: tested.built.binary, tree: tree.path })
}

pub fn fail_on(outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Passed => Ok(()),
        Outcome::Failed => bail!("some scenarios failed"),
        Outcome::Unsupported => bail!("this QEMU has no monitor-add: every scenario failed"),
    }
}
