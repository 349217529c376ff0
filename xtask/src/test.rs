//! `cargo xtask test`: the whole pipeline, then the suite.

use std::path::PathBuf;

use anyhow::{bail, Result};
use xshell::Shell;

use qmp_tests::cli::SuiteCli;

use crate::pipeline::{self, Pipeline};
use crate::suite::{self, Outcome};
use crate::{flags, lock, Done};

impl flags::Test {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let build = self
            .program
            .options(&self.build, pipeline::Targets::of(&source))?;
        let suite = SuiteCli {
            suite: self.suite,
            junit: self.junit.junit,
            ..SuiteCli::default()
        };
        let steps = pipeline::test_steps(build.program);
        let pipeline = Pipeline::new(source, build, suite, &steps);
        let _lock = lock::cache()?;
        Ok(Done::Suite(run(sh, &pipeline)?.outcome))
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
pub fn run(sh: &Shell, pipeline: &Pipeline) -> Result<Run> {
    let state = pipeline.run(sh)?;
    let (Some(outcome), Some(built), Some(tree)) = (state.outcome, state.built, state.tree) else {
        bail!("`cargo xtask test`'s pipeline has no suite step");
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
