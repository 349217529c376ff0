//! `cargo xtask fetch`: host dependencies, the source and the series.

use anyhow::Result;
use xshell::Shell;

use crate::cli::{Command, Matches};
use crate::pipeline::{self, SourceArgs};
use crate::steps::Steps;

pub const COMMAND: Command = Command {
    name: "fetch",
    summary: "fetch the pinned QEMU release (or check a located tree) and apply the series",
    about: "install host dependencies, fetch the pinned QEMU release
into target/qemu/src (or check a located tree) and apply the series; prints
the path of the tree a build would use.",
    groups: &[("Source", pipeline::SOURCE_FLAGS)],
    after: "",
};

pub fn run(sh: &Shell, m: &Matches) -> Result<()> {
    let src = SourceArgs::from_matches(m)?;
    let _lock = crate::lock::cache()?;
    let mut steps = Steps::new(3);
    pipeline::host_step(&mut steps, sh)?;
    let prepared = pipeline::source_steps(&mut steps, sh, &src)?;
    println!("{}", prepared.tree.path.display());
    Ok(())
}
