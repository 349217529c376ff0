//! The steps the commands share: host dependencies, source, series, the
//! suite binary, wiring, venv, build and suite.

use std::path::{Path, PathBuf};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::build::{self, BuildOptions, Built};
use crate::meson::{self, WireGuard, Wired};
use crate::source::{self, FetchOptions, Pin, Tree};
use crate::steps::{Beside, Steps};
use crate::suite::{self, Outcome};
use crate::{deps, paths, series, vcs};
use qmp_tests::cli::{Routes, SuiteCli};
use qmp_tests::program::Program;
use qmp_tests::route::Route;

/// Which tree, which series.
pub struct SourceArgs {
    /// A located tree, checked while parsing so that bad input fails
    /// before anything is installed or built.
    pub located: Option<Tree>,
    pub fetch: FetchOptions,
    pub series: Option<PathBuf>,
    pub no_series: bool,
}

impl SourceArgs {
    /// The pinned release from the first source that works.
    pub fn pinned(no_series: bool) -> SourceArgs {
        SourceArgs {
            located: None,
            fetch: FetchOptions { from: None, sha256: None },
            series: None,
            no_series,
        }
    }

    /// A tree as it is.
    pub fn located(tree: Tree) -> SourceArgs {
        SourceArgs { located: Some(tree), ..SourceArgs::pinned(false) }
    }
}

/// Which list of targets --target is checked against while parsing.
pub enum Targets<'a> {
    /// The pinned release's, before it is fetched.
    Pinned,
    Tree(&'a Path),
    /// None yet: the tree changes under the command (a bisect step), and
    /// the build checks each commit's own list.
    AtBuild,
}

impl<'a> Targets<'a> {
    pub fn of(src: &'a SourceArgs) -> Targets<'a> {
        match &src.located {
            Some(tree) => Targets::Tree(&tree.path),
            None => Targets::Pinned,
        }
    }
}

/// The tree the build runs on, and how it got there.
pub struct Prepared {
    pub tree: Tree,
    pub series: String,
}

/// The suite binary: built, or building on a thread of its own beside
/// the steps after it (cargo and ninja overlap, and configure, which runs
/// on one core, leaves the other free).
pub enum QmpTests {
    Built(PathBuf),
    Building(Beside<PathBuf>),
}

impl QmpTests {
    /// Where the binary is, or will be: the wiring names it.
    pub fn path(&self) -> PathBuf {
        match self {
            QmpTests::Built(bin) => bin.clone(),
            QmpTests::Building(_) => suite::binary_path(),
        }
    }

    /// The binary, once its build has finished; the step's line ends then.
    pub fn finish(self) -> Result<PathBuf> {
        match self {
            QmpTests::Built(bin) => Ok(bin),
            QmpTests::Building(step) => step.finish(),
        }
    }
}

/// The meson venv, made beside the series for the meson the tree asked
/// for before it; [`Run::meson`] checks that the series did not change
/// that.
pub struct MesonVenv {
    spec: String,
    step: Beside<PathBuf>,
}

/// The steps the commands share, each a function that takes what it needs
/// and returns what it made, wrapped in the step printer: a step cannot
/// run before the ones it needs, and each command counts its own.
pub struct Run<'a> {
    sh: &'a Shell,
    steps: Steps,
}

/// What the suite step runs against.
pub struct SuiteRun<'a> {
    pub prepared: &'a Prepared,
    /// The checked-out commit, read before wiring changed the tree.
    pub commit: Option<String>,
    pub built: &'a Built,
    pub qmp_tests: &'a Path,
    /// A Python with the standalone qemu.qmp package; none when pip could
    /// not install it (its scenario is then skipped, saying why).
    pub qmp_python: Option<PathBuf>,
    /// What the binary is: qemu-system or qemu-storage-daemon.
    pub program: Program,
    pub opts: &'a SuiteCli,
}

impl<'a> Run<'a> {
    /// A run of `count` steps.
    pub fn new(sh: &'a Shell, count: usize) -> Run<'a> {
        Run { sh, steps: Steps::new(count) }
    }

    /// Runs a step of the command's own, counted with the others.
    pub fn own<T>(&mut self, name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        self.steps.run(name, f)
    }

    pub fn host(&mut self) -> Result<()> {
        let sh = self.sh;
        self.own("host dependencies", || Ok(((), deps::ensure_host(sh)?)))
    }

    pub fn source(&mut self, src: &SourceArgs) -> Result<Tree> {
        let sh = self.sh;
        self.own("QEMU source", || {
            let tree = match &src.located {
                Some(tree) => tree.clone(),
                None => source::fetch(sh, &Pin::load()?, &src.fetch)?,
            };
            let summary = format!("{} (version {})", tree.description, tree.version());
            Ok((tree, summary))
        })
    }

    pub fn series(&mut self, src: &SourceArgs, tree: &Tree) -> Result<Prepared> {
        series_step(&mut self.steps, self.sh, src, tree)
    }

    /// The source, then the series with the meson venv made beside it.
    pub fn prepared_with_venv(&mut self, src: &SourceArgs) -> Result<(Prepared, MesonVenv)> {
        let tree = self.source(src)?;
        let spec = deps::meson_spec(&tree.path)?;
        let venv = MesonVenv {
            step: self.steps.beside("python venv (meson)", {
                let spec = spec.clone();
                move |sh| deps::ensure_meson(sh, &spec)
            })?,
            spec,
        };
        let prepared = self.series(src, &tree)?;
        Ok((prepared, venv))
    }

    /// The venv's Python, for the meson `tree` asks for: a series that
    /// changed the version gets a venv of that version too.
    pub fn meson(&mut self, venv: MesonVenv, tree: &Path) -> Result<PathBuf> {
        let python = venv.step.finish()?;
        let spec = deps::meson_spec(tree)?;
        if spec == venv.spec {
            return Ok(python);
        }
        eprintln!("    the series asks for {spec} instead of {}", venv.spec);
        Ok(deps::ensure_meson(self.sh, &spec)?.0)
    }

    /// The standalone qemu.qmp package for the second real client, made
    /// beside the steps after it: only the suite needs it.
    pub fn qmp_package(&mut self) -> Result<Beside<Option<PathBuf>>> {
        self.steps.beside("qemu.qmp package", crate::qmp_package::ensure)
    }

    /// The suite binary; `beside` a QEMU build, built on a thread of its
    /// own (unless one was built elsewhere).
    pub fn qmp_tests(&mut self, beside: bool) -> Result<QmpTests> {
        if beside && suite::prebuilt().is_none() {
            let step = self.steps.beside("qmp-tests binary", |sh| {
                let bin = suite::build_binary(sh, true)?;
                let summary = format!("{} (built beside the QEMU build)", bin.display());
                Ok((bin, summary))
            })?;
            return Ok(QmpTests::Building(step));
        }
        let sh = self.sh;
        let bin = self.own("qmp-tests binary", || {
            let bin = suite::binary(sh)?;
            let summary = bin.display().to_string();
            Ok((bin, summary))
        })?;
        Ok(QmpTests::Built(bin))
    }

    /// Wires the tree; for a located tree the returned guard unwires it
    /// again.
    pub fn wire(&mut self, tree: &Tree, qmp_tests: &Path) -> Result<Option<WireGuard>> {
        wire_step(&mut self.steps, tree, qmp_tests)
    }

    /// The venv with the meson the tree's configure wants; its Python.
    pub fn venv(&mut self, tree: &Path) -> Result<PathBuf> {
        let sh = self.sh;
        self.own("python venv (meson)", || deps::ensure_python(sh, tree))
    }

    pub fn build(&mut self, tree: &Path, python: &Path, opts: &BuildOptions) -> Result<Built> {
        let sh = self.sh;
        self.own("build", || build::build(sh, tree, python, opts))
    }

    /// Runs the suite, with the facts of the run qmp-tests cannot find
    /// itself in its report (it records the binary and its version).
    pub fn suite(&mut self, run: SuiteRun) -> Result<Outcome> {
        let SuiteRun { prepared, built, qmp_tests, .. } = run;
        let tree = &prepared.tree;
        let mut properties = vec![
            ("qemu_tree".to_owned(), tree.path.display().to_string()),
            ("qemu_source".to_owned(), tree.description.clone()),
            ("series".to_owned(), prepared.series.clone()),
            ("configure".to_owned(), built.configure[1..].join(" ")),
            ("program".to_owned(), run.program.name().to_owned()),
        ];
        if let Some(commit) = run.commit {
            properties.push(("qemu_commit".to_owned(), commit));
        }
        // The tree's python/ holds qemu.qmp, which one scenario drives with
        // the Python the build was configured with. A tree without it (an
        // old QEMU, a trimmed copy) has that scenario reported skipped.
        let has_client = tree.path.join("python/qemu/qmp").is_dir();
        // The project's own series has both routes: one missing is a
        // failure, not a skip. Only the routes the run asks for count.
        let series = series::default_series().display().to_string();
        let require_routes = if prepared.series == series {
            match run.opts.suite.route {
                Some(Routes::Commands) => vec![Route::Commands],
                Some(Routes::Qom) => vec![Route::Qom],
                // monitor-qmp objects are qemu-system's (monitor/qmp-object.c
                // is system code): the daemon has the commands route only.
                _ if run.program == Program::StorageDaemon => vec![Route::Commands],
                Some(Routes::All) | None => Route::ALL.to_vec(),
            }
        } else {
            Vec::new()
        };
        let mut opts = SuiteCli {
            qemu_src: has_client.then(|| tree.path.clone()),
            python: has_client.then(|| built.python.clone()),
            require_routes,
            qmp_python: run.qmp_python,
            program: run.program,
            ..run.opts.clone()
        };
        // The suite step comes after the build, when the cores are free,
        // and a scenario mostly waits on QEMU: twice the CPUs keep them busy (the whole suite
        // 9-10 s against 14-16 s on 2 cores). A sanitized QEMU keeps its
        // CPU busy, so more of them than CPUs only slows each. Where the
        // suite runs beside other work (the mutants, meson test, the
        // integration tests) it keeps its own default, one per CPU: more
        // under that load ran past a 2 s wait in `cargo xtask ci`.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        opts.suite.jobs.get_or_insert(if built.sanitized() { cpus } else { 2 * cpus });
        let binary = &built.binary;
        self.own("suite", || {
            eprintln!("==> qmp-tests against {}", binary.display());
            let outcome = suite::run(qmp_tests, binary, &opts, &properties, false)?;
            let summary = match outcome {
                Outcome::Passed => "every scenario passed",
                Outcome::Failed => "a scenario failed",
                Outcome::Unsupported => "this QEMU has no monitor-add",
            };
            Ok((outcome, summary.to_owned()))
        })
    }
}

/// The steps every pipeline starts with: host dependencies, the source,
/// the series. `count` is the whole run's.
pub fn prepare<'a>(sh: &'a Shell, count: usize, src: &SourceArgs) -> Result<(Run<'a>, Prepared)> {
    let mut run = Run::new(sh, count);
    run.host()?;
    let tree = run.source(src)?;
    let prepared = run.series(src, &tree)?;
    Ok((run, prepared))
}

/// A QEMU built as `cargo xtask test` builds it, and the suite binary.
pub struct Ready {
    pub prepared: Prepared,
    pub qmp_tests: PathBuf,
    /// With `package`: a Python with the standalone qemu.qmp package.
    pub qmp_python: Option<PathBuf>,
    pub built: Built,
}

/// The suite binary (beside the build), host, with `package` the
/// qemu.qmp package (beside), source, series and venv (beside), build.
pub fn ready(sh: &Shell, src: &SourceArgs, opts: &BuildOptions, package: bool) -> Result<Ready> {
    let mut run = Run::new(sh, 6 + usize::from(package));
    let qmp_tests = run.qmp_tests(true)?;
    run.host()?;
    let qmp_package = package.then(|| run.qmp_package()).transpose()?;
    let (prepared, venv) = run.prepared_with_venv(src)?;
    let python = run.meson(venv, &prepared.tree.path)?;
    let built = run.build(&prepared.tree.path, &python, opts)?;
    Ok(Ready {
        prepared,
        qmp_tests: qmp_tests.finish()?,
        qmp_python: finish_package(qmp_package)?,
        built,
    })
}

fn finish_package(step: Option<Beside<Option<PathBuf>>>) -> Result<Option<PathBuf>> {
    Ok(step.map(Beside::finish).transpose()?.flatten())
}

/// What `cargo xtask test` runs: the whole pipeline, then the suite.
pub struct Test {
    pub source: SourceArgs,
    pub build: BuildOptions,
    pub suite: SuiteCli,
}

/// What a run of the test pipeline found.
pub struct Tested {
    pub outcome: Outcome,
    pub prepared: Prepared,
    pub built: Built,
}

/// What `test` runs beside the build and suite for a program.
#[derive(Debug, PartialEq, Eq)]
struct Extras {
    /// The meson wiring: the wired functional test runs qemu-system-TARGET.
    wire: bool,
    /// The standalone qemu.qmp package: the scenario it serves drives STOP
    /// and RESUME, which qemu-storage-daemon lacks.
    package: bool,
}

fn extras(program: Program) -> Extras {
    let system = program == Program::System;
    Extras { wire: system, package: system }
}

/// Host, source, series, the suite binary (beside the build), the
/// qemu.qmp package, wiring (undone when the run ends, however it ends),
/// venv, build, suite; qemu-storage-daemon's leaves out the package and
/// the wiring.
pub fn test(sh: &Shell, plan: &Test) -> Result<Tested> {
    let extras = extras(plan.build.program);
    let count = 7 + usize::from(extras.wire) + usize::from(extras.package);
    // Whatever does not need the tree starts first, beside the rest.
    let mut run = Run::new(sh, count);
    let qmp_tests = run.qmp_tests(true)?;
    run.host()?;
    let qmp_package = extras.package.then(|| run.qmp_package()).transpose()?;
    let (prepared, venv) = run.prepared_with_venv(&plan.source)?;
    let tree = &prepared.tree;
    // Read before wiring, which the report must not count as a change of
    // the tree's.
    let commit = vcs::describe(sh, &tree.path);
    let guard = match extras.wire {
        true => run.wire(tree, &qmp_tests.path())?,
        false => None,
    };
    let python = run.meson(venv, &tree.path)?;
    let built = run.build(&tree.path, &python, &plan.build)?;
    let qmp_tests = qmp_tests.finish()?;
    let qmp_python = finish_package(qmp_package)?;
    let outcome = run.suite(SuiteRun {
        prepared: &prepared,
        commit,
        built: &built,
        qmp_tests: &qmp_tests,
        qmp_python,
        program: plan.build.program,
        opts: &plan.suite,
    })?;
    if let Some(guard) = guard {
        guard.finish()?;
    }
    Ok(Tested { outcome, prepared, built })
}

/// The series on the tree: in a worktree of the fetched release, in a
/// private clone of a located tree (its HEAD and uncommitted changes);
/// none asked, the tree as it is.
fn series_step(steps: &mut Steps, sh: &Shell, src: &SourceArgs, tree: &Tree) -> Result<Prepared> {
    steps.run("series", || {
        let (tree, series, summary) = apply_series(sh, src, tree)?;
        let series = series.map_or("none".to_owned(), |path| path.display().to_string());
        Ok((Prepared { tree, series }, summary))
    })
}

/// The tree with the series asked for, the series' path (none, none) and
/// the step's summary.
fn apply_series(
    sh: &Shell,
    src: &SourceArgs,
    tree: &Tree,
) -> Result<(Tree, Option<PathBuf>, String)> {
    if tree.located {
        let Some(path) = &src.series else {
            let summary = "none (the located tree is tested as it is)";
            return Ok((tree.clone(), None, summary.into()));
        };
        // The user's tree is never changed: the series goes into a
        // private clone of its HEAD and working-tree changes.
        let clone = private_clone(sh, tree)?;
        let (applied, branch, n) = series::apply(sh, &clone, path)?;
        let summary = format!(
            "{n} patches from {} on {branch} in {} ({})",
            path.display(),
            applied.path.display(),
            clone.description
        );
        return Ok((applied, Some(path.clone()), summary));
    }
    if src.no_series {
        series::checkout_base(sh, tree)?;
        return Ok((tree.clone(), None, "none (--no-series)".into()));
    }
    let path = src.series.clone().unwrap_or_else(series::default_series);
    let (applied, branch, n) = series::apply(sh, tree, &path)?;
    let summary =
        format!("{n} patches from {} on {branch} in {}", path.display(), applied.path.display());
    Ok((applied, Some(path), summary))
}

/// A clone of a located git tree in the cache, refreshed to the tree's
/// current HEAD and its uncommitted changes, and tagged `base` there.
fn private_clone(sh: &Shell, tree: &Tree) -> Result<Tree> {
    let dir = &tree.path;
    if !vcs::is_repo(sh, dir) {
        bail!("--series on a located tree needs a git repository; {} is not one", dir.display());
    }
    let clone = paths::qemu_cache()
        .join("src")
        .join(format!("clone-{}", paths::key(&[dir.as_os_str().as_encoded_bytes()])));
    if !clone.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&clone);
        cmd!(sh, "git clone --quiet --shared --no-checkout {dir} {clone}")
            .quiet()
            .spawn_run()
            .with_context(|| format!("cloning {} into {}", dir.display(), clone.display()))?;
    }
    let head = vcs::head(sh, dir)?;
    cmd!(sh, "git -C {clone} fetch --quiet origin {head}").quiet().spawn_run().with_context(
        || format!("fetching {head} of {} into {}", dir.display(), clone.display()),
    )?;
    let short = &head[..12.min(head.len())];
    // What the developer has is what is tested: HEAD, plus a commit of the
    // working tree's changes when there are any, with the series on top.
    let (base_commit, description) = if vcs::status(sh, dir)?.is_empty() {
        (head.clone(), format!("clone of {} at {short}", dir.display()))
    } else {
        (
            vcs::snapshot(sh, dir, &clone, &head)?,
            format!("clone of {} at {short} with its uncommitted changes", dir.display()),
        )
    };
    let base = vcs::BASE;
    cmd!(sh, "git -C {clone} tag --force {base} {base_commit}")
        .quiet()
        .ignore_stdout()
        .spawn_run()
        .with_context(|| format!("tagging {base_commit} as {base} in {}", clone.display()))?;
    Ok(Tree { path: clone, located: false, description })
}

/// Wires the tree; for a located tree the returned guard unwires it again.
fn wire_step(steps: &mut Steps, tree: &Tree, qmp_tests: &Path) -> Result<Option<WireGuard>> {
    steps.run("meson wiring", || {
        let wired = meson::wire(&tree.path, qmp_tests, true)?;
        // Every run unwires at the end, so the tree is left as it was found,
        // and the kept modification times make that cost nothing at build
        // time.
        let guard = match &wired {
            Wired::Added(_) => Some(WireGuard::new(&tree.path)),
            _ => None,
        };
        let summary = match wired {
            Wired::Added(p) => {
                format!("monitor_hotplug added to {} until the run ends", p.display())
            }
            Wired::Already(p) => format!("monitor_hotplug already in {}", p.display()),
            Wired::NoFunctionalTests => {
                "this tree has no functional-test list (QEMU before 9.2): not wired".into()
            }
        };
        Ok((guard, summary))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_test_neither_wires_nor_installs_the_package() {
        let both = Extras { wire: true, package: true };
        assert_eq!(extras(Program::System), both);
        let none = Extras { wire: false, package: false };
        assert_eq!(extras(Program::StorageDaemon), none);
    }
}
