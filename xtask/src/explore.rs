//! `cargo xtask explore`: the pipeline up to the build, then `qmp-tests
//! explore` against the binary it built.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use qmp_tests::cli::ExploreArgs;
use xshell::Shell;

use crate::build::BuildOptions;
use crate::pipeline::{self, SourceArgs};
use crate::{flags, interrupt, lock, paths, Done};

impl flags::Explore {
    /// Explore's own options were checked by the parser, before any build:
    /// a typo should not cost one.
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let build = self.build.options(pipeline::Targets::of(&source))?;
        let _lock = lock::cache()?;
        Ok(match run(sh, &source, &build, self.explore)? {
            true => Done::Ok,
            false => Done::Found,
        })
    }
}

/// The CI matrix's explore leg: `secs` long, a random seed (printed), the
/// report at `junit`. Whether explore found nothing.
pub fn run_leg(sh: &Shell, source: SourceArgs, secs: u64, junit: PathBuf) -> Result<bool> {
    let args = ExploreArgs { time: secs, junit: Some(junit), ..ExploreArgs::default() };
    run(sh, &source, &Default::default(), args)
}

fn default_dir() -> PathBuf {
    paths::target_dir().join("explore")
}

/// The pipeline up to the build, then explore; whether it found nothing.
/// The report and the failures' transcripts go to target/explore unless
/// the arguments say otherwise.
fn run(sh: &Shell, src: &SourceArgs, build: &BuildOptions, mut args: ExploreArgs) -> Result<bool> {
    let ready = pipeline::ready(sh, src, build, false)?;
    let (qmp_tests, built) = (ready.qmp_tests, ready.built);
    for (path, default) in
        [(&mut args.junit, default_dir().join("junit.xml")), (&mut args.out, default_dir())]
    {
        let given = path.take().unwrap_or(default);
        *path = Some(qmp_tests::absolute(&given)?);
    }
    std::fs::create_dir_all(default_dir())
        .with_context(|| format!("creating {}", default_dir().display()))?;
    let mut command = std::process::Command::new(&qmp_tests);
    command.arg("explore").arg("--qemu").arg(&built.binary).args(args.to_args());
    let status = interrupt::spawn(&mut command, "qmp-tests explore")?
        .child
        .wait()
        .with_context(|| format!("running {} explore", qmp_tests.display()))?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("qmp-tests explore could not run ({status}); see its messages above"),
    }
}
