//! `cargo xtask build`: the pipeline up to the QEMU binary.

use anyhow::Result;
use xshell::Shell;

use crate::cli::{Command, Matches};
use crate::pipeline::{self, SourceArgs};
use crate::steps::Steps;

pub const COMMAND: Command = Command {
    name: "build",
    summary: "build qemu-system-TARGET and print its path",
    about: "fetch or locate QEMU, apply the series, configure once and
build qemu-system-TARGET out of tree; prints the binary's path.",
    groups: &[
        ("Source", pipeline::SOURCE_FLAGS),
        ("Build", pipeline::BUILD_FLAGS),
    ],
    after: "",
};

pub fn run(sh: &Shell, m: &Matches) -> Result<()> {
    let src = SourceArgs::from_matches(m)?;
    let opts = pipeline::build_options(m, pipeline::Targets::of(&src))?;
    let _lock = crate::lock::cache()?;
    let mut steps = Steps::new(5);
    pipeline::host_step(&mut steps, sh)?;
    let prepared = pipeline::source_steps(&mut steps, sh, &src)?;
    let built = pipeline::build_step(&mut steps, sh, &prepared.tree, &opts)?;
    println!("{}", built.binary.display());
    Ok(())
}
