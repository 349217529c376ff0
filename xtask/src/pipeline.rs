//! The steps shared by `fetch`, `build`, `test` and `bench`: host
//! dependencies, source, series, wiring and build.

use std::path::{Path, PathBuf};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use qmp_tests::program::Program;
use xshell::{cmd, Shell};

use crate::build::{self, BuildOptions, Built};
use crate::cli::{self, Flag, Kind, Matches};
use crate::meson::{self, WireGuard, Wired};
use crate::source::{self, FetchOptions, Origin, Pin, Tree};
use crate::steps::{Begun, Steps};
use crate::suite::{self, Outcome, SuiteOptions};
use crate::{deps, paths, series, vcs};

/// Which tree, which series.
pub struct SourceArgs {
    /// A located tree, checked while parsing so that bad input fails
    /// before anything is installed or built.
    pub located: Option<Tree>,
    pub fetch: FetchOptions,
    pub series: Option<PathBuf>,
    pub no_series: bool,
}

pub const SOURCE_FLAGS: &[Flag] = &[
    cli::shared::QEMU_SRC,
    cli::value(
        "from",
        "SOURCE",
        Kind::Text,
        "fetch the pinned release from debian, git or tarball only",
    ),
    cli::value(
        "sha256",
        "HEX",
        Kind::Text,
        "checksum of the release tarball (for --from tarball)",
    ),
    cli::shared::SERIES,
    cli::switch(
        "no-series",
        "test the pinned release without the project's series",
    ),
];

pub const BUILD_FLAGS: &[Flag] = &[
    cli::value(
        "target",
        "T",
        Kind::Text,
        "build qemu-system-T (default x86_64)",
    ),
    cli::repeated(
        "configure-arg",
        "ARG",
        Kind::Passed,
        "pass ARG to configure (repeatable)",
    ),
    cli::repeated(
        "sanitize",
        "LIST",
        Kind::Text,
        "build with sanitizers: address,undefined",
    ),
];

/// Which QEMU program `build` and `test` build (and test).
pub const PROGRAM_FLAGS: &[Flag] = &[cli::value(
    "program",
    "PROGRAM",
    Kind::Text,
    "system (qemu-system-T, the default) or storage-daemon\n(qemu-storage-daemon, configured with the tools in a\nbuild directory of its own; the suite skips what needs\nqemu-system, saying why)",
)];

/// `--program PROGRAM`, checked.
pub fn program(m: &Matches) -> Result<Program> {
    match m.text("program")? {
        None => Ok(Program::System),
        Some(text) => match Program::parse(&text) {
            Some(Program::StorageDaemon) if m.text("target")?.is_some() => bail!(
                "--target picks qemu-system's target; qemu-storage-daemon has none, so leave it out"
            ),
            Some(program) => Ok(program),
            None => bail!("--program takes system or storage-daemon, not `{text}`"),
        },
    }
}

/// --qemu-src, or else QEMU_SRC, as an absolute path.
pub fn qemu_src(m: &Matches) -> Result<Option<PathBuf>> {
    match m.path("qemu-src")? {
        Some(p) => Ok(Some(p)),
        None => std::env::var_os("QEMU_SRC")
            .filter(|v| !v.is_empty())
            .map(|v| qmp_tests::absolute(Path::new(&v)))
            .transpose(),
    }
}

impl SourceArgs {
    /// The pinned release from the first source that works.
    pub fn pinned(no_series: bool) -> SourceArgs {
        SourceArgs {
            located: None,
            fetch: FetchOptions {
                from: None,
                sha256: None,
            },
            series: None,
            no_series,
        }
    }

    /// A tree as it is.
    pub fn located(tree: Tree) -> SourceArgs {
        SourceArgs {
            located: Some(tree),
            ..SourceArgs::pinned(false)
        }
    }

    /// Reads the source flags and checks what can be checked before any
    /// work: the tree, the series.
    pub fn from_matches(m: &Matches) -> Result<SourceArgs> {
        let qemu_src = qemu_src(m)?;
        let from = m.text("from")?.map(|s| Origin::parse(&s)).transpose()?;
        let sha256 = m.text("sha256")?;
        let series = m.path("series")?;
        let no_series = m.switch("no-series");
        if series.is_some() && no_series {
            bail!("--series and --no-series contradict each other; give one");
        }
        if qemu_src.is_some() && from.is_some() {
            bail!(
                "--from picks where to fetch the pinned release; it has no meaning with --qemu-src"
            );
        }
        let located = qemu_src.as_deref().map(source::locate).transpose()?;
        if let Some(path) = &series {
            series::patch_files(path)?;
        }
        Ok(SourceArgs {
            located,
            fetch: FetchOptions { from, sha256 },
            series,
            no_series,
        })
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

/// Reads the build flags, refusing a target or sanitizer that configure
/// would refuse only after the fetch and the build's preparations.
pub fn build_options(m: &Matches, targets: Targets) -> Result<BuildOptions> {
    let mut opts = BuildOptions::default();
    if let Some(t) = m.text("target")? {
        opts.target = t;
    }
    opts.configure_args = m.texts("configure-arg")?;
    for list in m.texts("sanitize")? {
        opts.sanitize
            .extend(list.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    opts.sanitize.sort();
    opts.sanitize.dedup();
    match targets {
        Targets::Pinned => build::check_options(&opts, None)?,
        Targets::Tree(tree) => build::check_options(&opts, Some(tree))?,
        Targets::AtBuild => build::check_sanitize(&opts)?,
    }
    Ok(opts)
}

/// The tree the build runs on, and how it got there.
pub struct Prepared {
    pub tree: Tree,
    pub series: String,
}

/// A step of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Host,
    Source,
    Series,
    /// The standalone qemu.qmp package for the second real client.
    QmpPackage,
    QmpTests,
    Wire,
    Venv,
    Build,
    Suite,
    /// A step of the command's own (mutants' scratch tree, a bisect
    /// step's series in place), run by the command through [`Run::own`]
    /// and counted like the others.
    Own(&'static str),
}

/// The steps of each command that runs the pipeline.
pub const FETCH: &[Step] = &[Step::Host, Step::Source, Step::Series];
pub const BUILD: &[Step] = &[
    Step::Host,
    Step::Source,
    Step::Series,
    Step::Venv,
    Step::Build,
];
pub const TEST: &[Step] = &[
    Step::Host,
    Step::Source,
    Step::Series,
    Step::QmpTests,
    Step::QmpPackage,
    Step::Wire,
    Step::Venv,
    Step::Build,
    Step::Suite,
];

/// The steps of `test` for `program`. qemu-storage-daemon's leave out
/// the meson wiring (the wired functional test runs qemu-system-TARGET)
/// and the standalone qemu.qmp package (the scenario it serves drives
/// STOP and RESUME, which the daemon lacks).
pub fn test_steps(program: Program) -> Vec<Step> {
    TEST.iter()
        .copied()
        .filter(|step| program == Program::System || !matches!(step, Step::Wire | Step::QmpPackage))
        .collect()
}

/// The pipeline as one value: the steps a command runs and the options
/// they run with. Every command that builds or tests QEMU makes one and
/// runs it; the step count is the list's length.
pub struct Pipeline {
    pub source: SourceArgs,
    pub build: BuildOptions,
    pub suite: SuiteOptions,
    pub steps: Vec<Step>,
}

/// What the steps found so far.
#[derive(Default)]
pub struct State {
    pub tree: Option<Tree>,
    /// The series applied, for reports: its path or `none`.
    pub series: String,
    pub qmp_tests: Option<PathBuf>,
    /// A Python with the standalone qemu.qmp package; none when pip could
    /// not install it (its scenario is then skipped, saying why).
    pub qmp_python: Option<PathBuf>,
    /// The checked-out commit, read before wiring changed the tree.
    pub commit: Option<String>,
    pub python: Option<PathBuf>,
    pub built: Option<Built>,
    pub outcome: Option<Outcome>,
    /// Unwires a located tree when the run ends, however it ends.
    guard: Option<WireGuard>,
    /// The qmp-tests build, while it runs beside the QEMU build.
    building: Option<Building>,
}

/// A qmp-tests build running on a thread of its own: cargo and ninja
/// overlap, and configure, which runs on one core, leaves the other free.
struct Building {
    begun: Begun,
    /// The binary, and how long its build took.
    thread: std::thread::JoinHandle<(Result<PathBuf>, std::time::Duration)>,
}

impl Pipeline {
    pub fn new(
        source: SourceArgs,
        build: BuildOptions,
        suite: SuiteOptions,
        steps: &[Step],
    ) -> Pipeline {
        Pipeline {
            source,
            build,
            suite,
            steps: steps.to_vec(),
        }
    }

    pub fn start(&self) -> Run<'_> {
        Run {
            pipeline: self,
            steps: Steps::new(self.steps.len()),
            state: State::default(),
        }
    }

    /// Runs every step; a pipeline with steps of the command's own is run
    /// by the command, one step at a time.
    pub fn run(&self, sh: &Shell) -> Result<State> {
        let mut run = self.start();
        for &step in &self.steps {
            run.step(sh, step)?;
        }
        run.finish()
    }
}

/// A pipeline being run.
pub struct Run<'a> {
    pipeline: &'a Pipeline,
    steps: Steps,
    pub state: State,
}

impl Run<'_> {
    /// The tree the steps so far have made.
    pub fn tree(&self) -> Result<&Tree> {
        self.state
            .tree
            .as_ref()
            .context("a pipeline step needs the source step before it (a bug in the xtask)")
    }

    pub fn step(&mut self, sh: &Shell, step: Step) -> Result<()> {
        let p = self.pipeline;
        match step {
            Step::Host => self
                .steps
                .run("host dependencies", || Ok(((), deps::ensure_host(sh)?))),
            Step::Source => {
                let tree = self.steps.run("QEMU source", || {
                    let tree = match &p.source.located {
                        Some(tree) => tree.clone(),
                        None => source::fetch(sh, &Pin::load()?, &p.source.fetch)?,
                    };
                    let summary = format!("{} (version {})", tree.description, tree.version());
                    Ok((tree, summary))
                })?;
                self.state.series = "none".into();
                self.state.tree = Some(tree);
                Ok(())
            }
            Step::Series => {
                let tree = self.tree()?.clone();
                let prepared = series_step(&mut self.steps, sh, &p.source, &tree)?;
                self.state.tree = Some(prepared.tree);
                self.state.series = prepared.series;
                Ok(())
            }
            Step::QmpPackage => {
                self.state.qmp_python = self
                    .steps
                    .run("qemu.qmp package", || crate::qmp_package::ensure(sh))?;
                Ok(())
            }
            Step::QmpTests => {
                let builds_qemu = p
                    .steps
                    .iter()
                    .skip_while(|&&s| s != Step::QmpTests)
                    .any(|&s| s == Step::Build);
                if builds_qemu && suite::prebuilt().is_none() {
                    let begun = self
                        .steps
                        .begin("qmp-tests binary", " (building beside the steps after it)")?;
                    let thread = std::thread::spawn(|| {
                        let start = std::time::Instant::now();
                        let built = Shell::new()
                            .map_err(anyhow::Error::from)
                            .and_then(|sh| suite::build_binary(&sh, true));
                        (built, start.elapsed())
                    });
                    self.state.building = Some(Building { begun, thread });
                    return Ok(());
                }
                let bin = self.steps.run("qmp-tests binary", || {
                    let bin = suite::binary(sh)?;
                    let summary = bin.display().to_string();
                    Ok((bin, summary))
                })?;
                self.state.qmp_tests = Some(bin);
                Ok(())
            }
            Step::Wire => {
                let tree = self.tree()?.clone();
                // Read before wiring, which the report must not count as a
                // change of the tree's.
                if self.state.commit.is_none() {
                    self.state.commit = vcs::describe(sh, &tree.path);
                }
                // The wrapper names the binary; it need not exist yet.
                let qmp_tests = match &self.state.building {
                    Some(_) => suite::binary_path(),
                    None => self.qmp_tests()?,
                };
                self.state.guard = wire_step(&mut self.steps, &tree, &qmp_tests)?;
                Ok(())
            }
            Step::Venv => {
                let tree = self.tree()?.path.clone();
                let python = self
                    .steps
                    .run("python venv (meson)", || deps::ensure_python(sh, &tree))?;
                self.state.python = Some(python);
                Ok(())
            }
            Step::Build => {
                let tree = self.tree()?.path.clone();
                let python =
                    self.state.python.clone().context(
                        "the build step needs the venv step before it (a bug in the xtask)",
                    )?;
                let built = self
                    .steps
                    .run("build", || build::build(sh, &tree, &python, &p.build))?;
                self.state.built = Some(built);
                Ok(())
            }
            Step::Suite => {
                let outcome = self.suite_step()?;
                self.state.outcome = Some(outcome);
                Ok(())
            }
            Step::Own(name) => bail!(
                "`{name}` is a step of the command's own, run with Run::own (a bug in the xtask)"
            ),
        }
    }

    /// Runs a step of the command's own, counted with the others.
    pub fn own<T>(&mut self, name: &str, f: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        self.steps.run(name, f)
    }

    /// The suite binary, once its build has finished.
    pub fn qmp_tests(&mut self) -> Result<PathBuf> {
        if let Some(Building { begun, thread }) = self.state.building.take() {
            let (built, took) = thread
                .join()
                .map_err(|_| anyhow::anyhow!("the thread building qmp-tests panicked"))?;
            let result = built.map(|bin| {
                let summary = format!("{} (built beside the QEMU build)", bin.display());
                (bin, summary)
            });
            let bin = begun.end(result, took)?;
            self.state.qmp_tests = Some(bin);
        }
        self.state
            .qmp_tests
            .clone()
            .context("a pipeline step needs the qmp-tests step before it (a bug in the xtask)")
    }

    /// Runs the suite, with the facts of the run qmp-tests cannot find
    /// itself in its report (it records the binary and its version).
    fn suite_step(&mut self) -> Result<Outcome> {
        let tree = self.tree()?.clone();
        let qmp_tests = self.qmp_tests()?;
        let built = self
            .state
            .built
            .as_ref()
            .context("the suite step needs the build step before it (a bug in the xtask)")?;
        let mut properties = vec![
            ("qemu_tree".to_owned(), tree.path.display().to_string()),
            ("qemu_source".to_owned(), tree.description.clone()),
            ("series".to_owned(), self.state.series.clone()),
            ("configure".to_owned(), built.configure[1..].join(" ")),
            (
                "program".to_owned(),
                self.pipeline.build.program.name().to_owned(),
            ),
        ];
        if let Some(commit) = &self.state.commit {
            properties.push(("qemu_commit".to_owned(), commit.clone()));
        }
        // The tree's python/ holds qemu.qmp, which one scenario drives with
        // the Python the build was configured with. A tree without it (an
        // old QEMU, a trimmed copy) has that scenario reported skipped.
        let has_client = tree.path.join("python/qemu/qmp").is_dir();
        // The project's own series has both routes: one missing is a
        // failure, not a skip. Only the routes the run asks for count.
        let series = series::default_series().display().to_string();
        let program = self.pipeline.build.program;
        let require_routes = if self.state.series == series {
            match self.pipeline.suite.route.as_deref() {
                Some(route) if route != "all" => vec![route.to_owned()],
                // monitor-qmp objects are qemu-system's (monitor/qmp-object.c
                // is system code): the daemon has the commands route only.
                _ if program == Program::StorageDaemon => vec!["commands".to_owned()],
                _ => vec!["commands".to_owned(), "qom".to_owned()],
            }
        } else {
            Vec::new()
        };
        let opts = SuiteOptions {
            qemu_src: has_client.then(|| tree.path.clone()),
            python: has_client.then(|| built.python.clone()),
            require_routes,
            qmp_python: self.state.qmp_python.clone(),
            program,
            ..self.pipeline.suite.clone()
        };
        let binary = built.binary.clone();
        self.steps.run("suite", || {
            eprintln!("==> qmp-tests against {}", binary.display());
            let outcome = suite::run(&qmp_tests, &binary, &opts, &properties, false)?;
            let summary = match outcome {
                Outcome::Passed => "every scenario passed",
                Outcome::Failed => "a scenario failed",
                Outcome::Unsupported => "this QEMU has no monitor-add",
            };
            Ok((outcome, summary.to_owned()))
        })
    }

    /// Unwires what the run wired; what the steps found.
    pub fn finish(mut self) -> Result<State> {
        if self.state.building.is_some() {
            self.qmp_tests()?;
        }
        if let Some(guard) = self.state.guard.take() {
            guard.finish()?;
        }
        Ok(self.state)
    }
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
    let summary = format!(
        "{n} patches from {} on {branch} in {}",
        path.display(),
        applied.path.display()
    );
    Ok((applied, Some(path), summary))
}

/// A clone of a located git tree in the cache, refreshed to the tree's
/// current HEAD and its uncommitted changes, and tagged `base` there.
fn private_clone(sh: &Shell, tree: &Tree) -> Result<Tree> {
    let dir = &tree.path;
    if !vcs::is_repo(sh, dir) {
        bail!(
            "--series on a located tree needs a git repository; {} is not one",
            dir.display()
        );
    }
    let clone = paths::qemu_cache().join("src").join(format!(
        "clone-{}",
        paths::key(&[dir.as_os_str().as_encoded_bytes()])
    ));
    if !clone.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&clone);
        cmd!(sh, "git clone --quiet --shared --no-checkout {dir} {clone}")
            .quiet()
            .spawn_run()
            .with_context(|| format!("cloning {} into {}", dir.display(), clone.display()))?;
    }
    let head = vcs::head(sh, dir)?;
    cmd!(sh, "git -C {clone} fetch --quiet origin {head}")
        .quiet()
        .spawn_run()
        .with_context(|| {
            format!(
                "fetching {head} of {} into {}",
                dir.display(),
                clone.display()
            )
        })?;
    let short = &head[..12.min(head.len())];
    // What the developer has is what is tested: HEAD, plus a commit of the
    // working tree's changes when there are any, with the series on top.
    let (base_commit, description) = if vcs::status(sh, dir)?.is_empty() {
        (
            head.clone(),
            format!("clone of {} at {short}", dir.display()),
        )
    } else {
        (
            vcs::snapshot(sh, dir, &clone, &head)?,
            format!(
                "clone of {} at {short} with its uncommitted changes",
                dir.display()
            ),
        )
    };
    let base = vcs::BASE;
    cmd!(sh, "git -C {clone} tag --force {base} {base_commit}")
        .quiet()
        .ignore_stdout()
        .spawn_run()
        .with_context(|| format!("tagging {base_commit} as {base} in {}", clone.display()))?;
    Ok(Tree {
        path: clone,
        located: false,
        description,
    })
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
            Wired::Added(p) => format!(
                "monitor_hotplug added to {} until the run ends",
                p.display()
            ),
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
        assert_eq!(test_steps(Program::System), TEST);
        let daemon = test_steps(Program::StorageDaemon);
        assert!(!daemon.contains(&Step::Wire) && !daemon.contains(&Step::QmpPackage));
        let rest: Vec<Step> = TEST
            .iter()
            .copied()
            .filter(|s| !matches!(s, Step::Wire | Step::QmpPackage))
            .collect();
        assert_eq!(daemon, rest);
    }
}
