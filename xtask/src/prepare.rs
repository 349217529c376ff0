//! `fetch`, `build`, `wire` and `unwire`: the commands that prepare a
//! tree or a binary without running the suite.

use anyhow::Result;
use xshell::Shell;

use crate::flags::{Build, Fetch, Unwire, Wire};
use crate::meson::{self, Wired};
use crate::pipeline::{self, Run, Targets};
use crate::{lock, source, suite, Done};

impl Fetch {
    /// Host dependencies, source, series; prints the tree a build would use.
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let _lock = lock::cache()?;
        let (_, prepared) = pipeline::prepare(sh, 3, &source)?;
        println!("{}", prepared.tree.path.display());
        Ok(Done::Ok)
    }
}

impl Build {
    /// Up to the QEMU binary; prints its path.
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let build = self.program.options(&self.build, Targets::of(&source))?;
        let _lock = lock::cache()?;
        let mut run = Run::new(sh, 5);
        run.host()?;
        let (prepared, venv) = run.prepared_with_venv(&source)?;
        let python = run.meson(venv, &prepared.tree.path)?;
        let built = run.build(&prepared.tree.path, &python, &build)?;
        println!("{}", built.binary.display());
        Ok(Done::Ok)
    }
}

impl Wire {
    /// The meson entry, for good, in the tree `test` would build with the
    /// same flags.
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let source = self.source.source_args()?;
        let _lock = lock::cache()?;
        let mut run = Run::new(sh, 2);
        let tree = run.source(&source)?;
        let tree = run.series(&source, &tree)?.tree.path;
        let bin = suite::binary(sh)?;
        match meson::wire(&tree, &bin, false)? {
            Wired::Added(p) => eprintln!("wired monitor_hotplug into {}", p.display()),
            Wired::Already(p) => eprintln!("monitor_hotplug is already in {}", p.display()),
            Wired::NoFunctionalTests => eprintln!(
                "{} has no functional-test list (QEMU before 9.2): nothing to wire",
                tree.display()
            ),
        }
        println!("{}", tree.display());
        Ok(Done::Ok)
    }
}

impl Unwire {
    /// Reads only the wiring records, so it never fetches or builds; the
    /// tree named is checked before the lock is taken (and its file made).
    pub fn run(self, _sh: &Shell) -> Result<Done> {
        let tree = self
            .qemu_src
            .map(|path| Ok::<_, anyhow::Error>(source::locate(&path)?.path))
            .transpose()?;
        let _lock = lock::cache()?;
        meson::unwire_trees(tree.as_deref())?;
        Ok(Done::Ok)
    }
}
