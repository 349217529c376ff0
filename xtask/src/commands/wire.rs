//! `cargo xtask wire`: the meson entry, for good, in the tree `test` would
//! build.

use anyhow::Result;
use xshell::Shell;

use crate::cli::{Command, Matches};
use crate::meson::{self, Wired};
use crate::pipeline::{self, SourceArgs};
use crate::steps::Steps;
use crate::suite;

pub const COMMAND: Command = Command {
    name: "wire",
    summary: "add monitor_hotplug to the tree's functional-test meson list",
    about: "add 'monitor_hotplug' to the tree's tests_generic_system
meson list and write the test file meson needs, so that
`meson test func-TARGET-monitor_hotplug` and `make check-functional` run the
qmp-tests suite. The tree is the one `cargo xtask test` with the same flags
builds: by default the pinned release with the project's series. Wiring
twice changes nothing; `cargo xtask unwire` undoes it.",
    groups: &[("Source", pipeline::SOURCE_FLAGS)],
    after: "",
};

pub fn run(sh: &Shell, m: &Matches) -> Result<()> {
    let src = SourceArgs::from_matches(m)?;
    let _lock = crate::lock::cache()?;
    let mut steps = Steps::new(2);
    let prepared = pipeline::source_steps(&mut steps, sh, &src)?;
    let tree = &prepared.tree.path;
    let bin = suite::binary(sh)?;
    match meson::wire(tree, &bin, false)? {
        Wired::Added(p) => eprintln!("wired monitor_hotplug into {}", p.display()),
        Wired::Already(p) => eprintln!("monitor_hotplug is already in {}", p.display()),
        Wired::NoFunctionalTests => eprintln!(
            "{} has no functional-test list (QEMU before 9.2): nothing to wire",
            tree.display()
        ),
    }
    println!("{}", tree.display());
    Ok(())
}
