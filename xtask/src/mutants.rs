//! `cargo xtask mutants`: plants each fault of the catalogue
//! (patches/mutants/) in a scratch copy of the pinned release with the
//! project's series, rebuilds it incrementally and runs the suite, to show
//! which scenarios catch each fault. A fault no scenario catches is a
//! check the suite lacks.
//!
//! The scratch copy is a worktree of the series branch that belongs to
//! this command alone: a user's tree is never mutated. Before a run and
//! after every mutant it is reset to the series' commit, so a run that
//! was interrupted, even by kill -9, leaves nothing that the next one
//! keeps.

mod binaries;
mod catalogue;
mod explore;
mod history;
mod report;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use qmp_tests::program::Program;
use rustix::process::Signal;
use xshell::{cmd, Shell};

use crate::build::{self, BuildOptions, Built};
use crate::pipeline::{self, SourceArgs};
use crate::source::Tree;
use crate::suite::{self, Outcome};
use crate::{flags, lock, Done};
use crate::{interrupt, paths, vcs};
use qmp_tests::cli::{SuiteArgs, SuiteCli};
use qmp_tests::route::Route;
use qmp_tests::runner::Pick;

use crate::shard::Shard;
pub use catalogue::Mutant;

/// How one mutant ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The suite failed: these scenarios (with ` (qom)` on that route).
    Caught(Vec<String>),
    /// The suite passed with the fault in place.
    Missed,
    /// The mutated tree does not build: the catalogue entry is wrong.
    Unviable(String),
    /// The suite did not end within the limit.
    Timeout(Duration),
    /// The diff no longer applies to the series: git's words.
    NotApplied(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Caught(_) => "caught",
            Verdict::Missed => "missed",
            Verdict::Unviable(_) => "unviable",
            Verdict::Timeout(_) => "timeout",
            Verdict::NotApplied(_) => "not applied",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Verdict::Caught(_))
    }
}

pub struct MutantOutcome {
    pub mutant: Mutant,
    pub verdict: Verdict,
    pub build_secs: f64,
    pub suite_secs: f64,
    /// The binary was an earlier run's build of the same mutant.
    pub cached: bool,
    /// With `--explore`: how explore ended on the mutant.
    pub explore: Option<explore::Run>,
}

/// How a run goes, beside which mutants it runs.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Each mutant's whole suite, not only up to its first failure.
    pub all_failures: bool,
    /// The part of the catalogue this run is; its report goes to
    /// `target/mutants/shard-K-of-N/`.
    pub shard: Option<Shard>,
    /// A copy of the JUnit report here too (a CI leg's report path).
    pub junit: Option<PathBuf>,
    /// Also run explore's first N sequences of seed 0 on each mutant.
    pub explore: Option<usize>,
}

impl flags::Mutants {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let mut mutants = select(&self.mutants)?;
        if let Some(shard) = self.shard {
            mutants = shard.take(mutants);
        }
        if self.list {
            for x in &mutants {
                println!("{:<36} {:<28} {}", x.name, x.file, x.fault);
            }
            return Ok(Done::Ok);
        }
        let plan = Plan {
            all_failures: self.all_failures,
            shard: self.shard,
            junit: None,
            explore: self.explore,
        };
        let _lock = lock::cache()?;
        Ok(match execute(sh, mutants, &plan)? {
            true => Done::Ok,
            false => Done::Survivors,
        })
    }
}

/// Where a run's reports go: `target/mutants`, a shard's in it.
pub fn out_dir(shard: Option<Shard>) -> PathBuf {
    let dir = paths::target_dir().join("mutants");
    match shard {
        Some(shard) => dir.join(format!("shard-{}", shard.slug())),
        None => dir,
    }
}

/// What every run adds to: which scenarios caught which mutant.
fn history_path() -> PathBuf {
    paths::target_dir().join("mutants-history.json")
}

/// The kill matrices earlier runs left, oldest first: the whole run's,
/// each shard's, and the history.
fn history_reports() -> Vec<PathBuf> {
    let dir = out_dir(None);
    let mut reports = vec![dir.join("mutants.json"), history_path()];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("shard-") {
                reports.push(entry.path().join("mutants.json"));
            }
        }
    }
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    reports.sort_by_key(modified);
    reports
}

/// The catalogue, or the named part of it; an unknown name is refused
/// before any work.
pub fn select(wanted: &[String]) -> Result<Vec<Mutant>> {
    let mut mutants = catalogue::load(&catalogue::dir())?;
    if !wanted.is_empty() {
        for name in wanted {
            if !mutants.iter().any(|x| &x.name == name) {
                bail!(
                    "no mutant `{name}` in {}; `cargo xtask mutants --list` lists them",
                    catalogue::dir().display()
                );
            }
        }
        mutants.retain(|x| wanted.contains(&x.name));
    }
    Ok(mutants)
}

/// Runs the baseline, then `mutants`, and reports.
pub fn execute(sh: &Shell, mutants: Vec<Mutant>, plan: &Plan) -> Result<bool> {
    // Read before this run's report directory is cleared.
    let history = history::History::load(&history_reports())?;
    // The pinned release with the project's series, copied into a
    // scratch tree that the build then builds; the baseline last.
    let mut run = pipeline::Run::new(sh, 9);
    let qmp_tests = run.qmp_tests(true)?;
    run.host()?;
    let qmp_python = run.qmp_package()?;
    let (series, venv) = run.prepared_with_venv(&SourceArgs::pinned(false))?;
    let scratch = run.own("scratch tree", || {
        let scratch = Scratch::prepare(sh, &series.tree, 0)?;
        let summary = format!("{} at {}", scratch.tree.path.display(), &scratch.commit[..12]);
        Ok((scratch, summary))
    })?;
    let scratch_path = scratch.tree.path.clone();
    let series = series.tree;
    let opts = BuildOptions { build_root: Some(scratch_root(0)), ..BuildOptions::default() };
    let python = run.meson(venv, &scratch_path)?;
    let built = run.build(&scratch_path, &python, &opts)?;
    let qmp_tests = qmp_tests.finish()?;
    let qmp_python = qmp_python.finish()?;
    let kept = binaries::Kept::new(&scratch.commit, &scratch_path, &built.python, &opts)?;

    let out_dir = out_dir(plan.shard);
    let _ = std::fs::remove_dir_all(&out_dir);
    let runner = Runner {
        qmp_tests: &qmp_tests,
        built: &built,
        tree: &scratch_path,
        out_dir: &out_dir,
        qmp_python: qmp_python.as_deref(),
        history: &history,
        kept: &kept,
        all_failures: plan.all_failures,
        explore: plan.explore,
    };
    // The other workers' scratch trees are made and built (incrementally,
    // or from ccache the first time) while the baseline runs.
    let others = (1..workers(mutants.len())).map(|worker| {
        let (series, python, opts) = (&series, &built.python, &opts);
        move || prepare_worker(series, python, opts, worker)
    });
    let (baseline, others) = std::thread::scope(|scope| {
        let others: Vec<_> = others.map(|prepare| scope.spawn(prepare)).collect();
        let baseline = run.own("baseline: the suite on the unmutated series", || {
            run_baseline(&runner, &built.binary)
        });
        let others: Result<Vec<Worker>> = others
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (baseline, others)
    });
    let (baseline, explored) = baseline?;
    let mut workers = vec![Worker { scratch, opts }];
    workers.extend(others?);
    // The suite's own deadlines end a hung scenario; this only catches a
    // harness that hangs past them.
    let limit = baseline * 5 + Duration::from_secs(120);
    // A mutant's explore stops at its first failure, then shrinks it.
    let explore_limit =
        explored.map(|secs| secs * 5 + Duration::from_secs(explore::SHRINK_SECS * 2 + 120));

    announce(plan, &history, mutants.len(), workers.len());
    let mutants_start = Instant::now();
    let outcomes = runner.all(&workers, mutants, limit, explore_limit)?;
    let dropped = kept.prune(&catalogue::load(&catalogue::dir())?)?;
    eprintln!(
        "==> mutants done in {:.1}s; {}",
        mutants_start.elapsed().as_secs_f64(),
        kept.summary(dropped)
    );
    report_all(outcomes, baseline, plan, &out_dir, history)
}

/// Says what the run is about to do: how many mutants, at once, how far.
fn announce(plan: &Plan, history: &history::History, mutants: usize, workers: usize) {
    let shard = plan.shard.map_or_else(String::new, |s| format!(" (shard {s})"));
    let how = if plan.all_failures {
        "each through the whole suite"
    } else if history.is_empty() {
        "each up to its first failing scenario"
    } else {
        "each up to its first failing scenario, its earlier catchers first"
    };
    eprintln!("==> {mutants} mutants{shard}, {workers} at a time (a scratch tree each), {how}");
}

/// The suite, and explore if asked, on the unmutated series: both must
/// pass for a mutant's verdict to mean anything. Their times, and the
/// step's summary.
fn run_baseline(runner: &Runner, binary: &Path) -> Result<((Duration, Option<Duration>), String)> {
    let start = Instant::now();
    match runner.suite("baseline", binary, Program::System, None, SuiteArgs::default())? {
        SuiteRun::Done(Outcome::Passed, _) => {}
        SuiteRun::Done(outcome, failing) => bail!(
            "the suite must pass on the unmutated series before mutants mean anything; \
             it reported {outcome:?} ({}); see {}",
            failing.join(", "),
            runner.out_dir.join("baseline/junit.xml").display()
        ),
        SuiteRun::Timeout(limit) => {
            bail!("the suite did not finish on the unmutated series in {limit:?}")
        }
    }
    let secs = start.elapsed();
    let mut summary = format!("passed in {:.1}s", secs.as_secs_f64());
    let explored = match runner.explore("baseline", binary, None)? {
        None => None,
        Some(run) if matches!(run.verdict, explore::Verdict::Missed { .. }) => {
            summary.push_str(&format!("; explore {}", run.verdict.detail()));
            Some(Duration::from_secs_f64(run.secs))
        }
        Some(run) => bail!(
            "explore must pass on the unmutated series before its verdicts on mutants \
             mean anything; it reported {}: {}; see {}",
            run.verdict.label(),
            run.verdict.detail(),
            runner.out_dir.join("baseline/explore.log").display()
        ),
    };
    Ok(((secs, explored), summary))
}

/// Worker `worker`'s scratch tree of the series, built.
fn prepare_worker(
    series: &Tree,
    python: &Path,
    opts: &BuildOptions,
    worker: usize,
) -> Result<Worker> {
    let (sh, start) = (Shell::new()?, Instant::now());
    let scratch = Scratch::prepare(&sh, series, worker)?;
    let opts = BuildOptions { build_root: Some(scratch_root(worker)), ..opts.clone() };
    build::build(&sh, &scratch.tree.path, python, &opts)
        .with_context(|| format!("building the scratch tree {}", scratch.tree.path.display()))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("==> worker {}'s scratch tree made and built in {secs:.1}s", worker + 1);
    Ok(Worker { scratch, opts })
}

/// Prints the kill matrix, writes it (JSON, JUnit, the copy asked for) and
/// the history; whether every mutant was caught.
fn report_all(
    mut outcomes: Vec<MutantOutcome>,
    baseline: Duration,
    plan: &Plan,
    out_dir: &Path,
    mut history: history::History,
) -> Result<bool> {
    outcomes.sort_by(|a, b| a.mutant.name.cmp(&b.mutant.name));
    let scenarios: Vec<String> =
        qmp_tests::scenarios::all().iter().map(|s| s.name.to_owned()).collect();
    print!("{}", report::matrix(&outcomes, &scenarios, plan.all_failures));
    let json = out_dir.join("mutants.json");
    crate::files::write_atomic(
        &json,
        &report::json(&outcomes, baseline.as_secs_f64(), &scenarios, plan),
    )?;
    let junit = out_dir.join("junit.xml");
    report::junit(&junit, &outcomes)?;
    history.record(&outcomes);
    history.save(&history_path())?;
    if let Some(copy) = &plan.junit {
        if let Some(dir) = copy.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::copy(&junit, copy)
            .with_context(|| format!("copying {} to {}", junit.display(), copy.display()))?;
    }
    eprintln!("Kill matrix: {}\nJUnit report: {}", json.display(), junit.display());
    let failed = outcomes.iter().filter(|o| !o.verdict.is_success()).count();
    println!(
        "mutants: {} caught, {failed} not caught, of {}",
        outcomes.len() - failed,
        outcomes.len()
    );
    Ok(failed == 0)
}

/// One line for a mutant's outcome (and one for its explore run): the
/// `done`th of `total`.
fn print_progress(done: usize, total: usize, outcome: &MutantOutcome) {
    let build = match outcome.cached {
        true => "cached".to_owned(),
        false => format!("{:.1}s", outcome.build_secs),
    };
    eprintln!(
        "    [{done}/{total}] {:<36} {:<11} build {build:>6}  suite {:>5.1}s  {}",
        outcome.mutant.name,
        outcome.verdict.label(),
        outcome.suite_secs,
        report::detail(&outcome.verdict)
    );
    if let Some(run) = &outcome.explore {
        eprintln!(
            "          explore {:<11} {:>5.1}s  {}",
            run.verdict.label(),
            run.secs,
            run.verdict.detail()
        );
    }
}

/// A worktree of the series' commit, owned by this command.
struct Scratch {
    tree: Tree,
    commit: String,
}

/// The scratch tree and its build directory sit as the series' own do
/// in the cache (`src/NAME` beside `build-*`), so the compile commands
/// match theirs and ccache serves the scratch build from the series
/// build.
/// Worker 0's is `mutants`, the others' `mutants-2`, `mutants-3`...
fn scratch_root(worker: usize) -> PathBuf {
    match worker {
        0 => paths::qemu_cache().join("mutants"),
        n => paths::qemu_cache().join(format!("mutants-{}", n + 1)),
    }
}

/// How many mutants build and run at once: one per core, each in a
/// scratch tree of its own. A mutant's rebuild is one compile (a ccache
/// hit after the first run) and a link, and its suite mostly waits on
/// QEMU, so two workers on two cores keep both busy.
fn workers(mutants: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(MAX_WORKERS).min(mutants).max(1)
}

/// Each worker's scratch tree and build cost disk (about 0.5 GB).
const MAX_WORKERS: usize = 4;

/// A scratch tree and the options that build it in its own directory.
struct Worker {
    scratch: Scratch,
    opts: BuildOptions,
}

impl Scratch {
    fn prepare(sh: &Shell, series: &Tree, worker: usize) -> Result<Scratch> {
        let commit = vcs::head(sh, &series.path)?;
        let name = series.path.file_name().context("the series tree has a name")?;
        let path = scratch_root(worker).join("src").join(name);
        let src = &series.path;
        if !path.join(".git").exists() {
            // Scratch trees of other series versions, and the one path
            // used before: a tree at `mutants/src` itself.
            let _ = std::fs::remove_dir_all(scratch_root(worker).join("src"));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            cmd!(sh, "git -C {src} worktree prune").quiet().spawn_run()?;
            cmd!(sh, "git -C {src} worktree add --quiet --detach --force {path} {commit}")
                .quiet()
                .spawn_run()
                .with_context(|| format!("creating the scratch worktree {}", path.display()))?;
        } else {
            // A checkout rewrites only the files that differ, so the
            // build directory stays incremental across series versions.
            cmd!(sh, "git -C {path} checkout --quiet --force --detach {commit}")
                .quiet()
                .spawn_run()
                .with_context(|| format!("checking out {commit} in {}", path.display()))?;
        }
        let scratch = Scratch {
            tree: Tree {
                path,
                located: false,
                description: format!("scratch copy of {}", series.description),
            },
            commit,
        };
        scratch.restore()?;
        Ok(scratch)
    }

    /// Back to the series' commit: undoes an applied mutant, also one
    /// left by a run that was killed.
    fn restore(&self) -> Result<()> {
        let path = &self.tree.path;
        let mut git = std::process::Command::new("git");
        git.arg("-C").arg(path).args(["reset", "--quiet", "--hard", &self.commit]);
        crate::interrupt::cleanup(|| crate::interrupt::run(git, "git reset --hard"))
            .with_context(|| format!("restoring {}", path.display()))
    }
}

/// The child's exit status, or `None` when it ran past `limit` and was
/// killed with its process group.
fn wait_limited(
    mut running: interrupt::Forwarded,
    limit: Option<Duration>,
) -> Result<Option<std::process::ExitStatus>> {
    let status = running.wait_for(limit, "qmp-tests")?;
    if status.is_none() {
        running.signal_group(Signal::KILL);
        let _ = running.child.wait();
    }
    Ok(status)
}

/// Restores the scratch tree when a mutant's run ends, however it ends.
struct Applied<'a>(&'a Scratch);

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.0.restore() {
            eprintln!("warning: {err:#}");
        }
    }
}

enum SuiteRun {
    /// The outcome and the failing scenarios.
    Done(Outcome, Vec<String>),
    Timeout(Duration),
}

struct Runner<'a> {
    qmp_tests: &'a Path,
    built: &'a Built,
    tree: &'a Path,
    out_dir: &'a Path,
    qmp_python: Option<&'a Path>,
    history: &'a history::History,
    kept: &'a binaries::Kept,
    all_failures: bool,
    explore: Option<usize>,
}

/// A mutant after its build: ended there, or built and ready for the
/// suite with its binary.
enum Prepared {
    Ended(MutantOutcome),
    Built(MutantOutcome, PathBuf),
}

impl Runner<'_> {
    /// Every mutant, each worker taking the next one in file order (so
    /// that mutants of one file follow each other and a rebuild compiles
    /// that file alone), building it in its scratch tree and running the
    /// suite on it.
    fn all(
        &self,
        workers: &[Worker],
        mut mutants: Vec<Mutant>,
        limit: Duration,
        explore_limit: Option<Duration>,
    ) -> Result<Vec<MutantOutcome>> {
        mutants.sort_by(|a, b| a.file.cmp(&b.file).then(a.name.cmp(&b.name)));
        let total = mutants.len();
        let queue = Mutex::new(VecDeque::from(mutants));
        let outcomes = Mutex::new(Vec::new());
        let work = |worker: &Worker| -> Result<()> {
            let sh = Shell::new()?;
            loop {
                interrupt::check()?;
                let Some(mutant) = queue.lock().expect("no worker panics").pop_front() else {
                    return Ok(());
                };
                let outcome = self.one(&sh, worker, mutant, (limit, explore_limit))?;
                let mut outcomes = outcomes.lock().expect("no worker panics");
                print_progress(outcomes.len() + 1, total, &outcome);
                outcomes.push(outcome);
            }
        };
        std::thread::scope(|scope| -> Result<()> {
            let running: Vec<_> = workers
                .iter()
                .map(|worker| {
                    scope.spawn(|| {
                        let done = work(worker);
                        if done.is_err() {
                            // The others stop after their current mutant.
                            queue.lock().expect("no worker panics").clear();
                        }
                        done
                    })
                })
                .collect();
            for handle in running {
                handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            }
            Ok(())
        })?;
        Ok(outcomes.into_inner().expect("no worker panics"))
    }

    /// Builds `mutant` in the worker's scratch tree, then runs the suite
    /// and explore on it: its outcome.
    fn one(
        &self,
        sh: &Shell,
        worker: &Worker,
        mutant: Mutant,
        (limit, explore_limit): (Duration, Option<Duration>),
    ) -> Result<MutantOutcome> {
        let (outcome, binary) = match self.build(sh, &worker.scratch, mutant, &worker.opts)? {
            Prepared::Ended(outcome) => return Ok(outcome),
            Prepared::Built(outcome, binary) => (outcome, binary),
        };
        let mut outcome = self.test(outcome, &binary, limit)?;
        outcome.explore = match outcome.mutant.program {
            Program::System => self.explore(&outcome.mutant.name, &binary, explore_limit)?,
            // Explore drives qemu-system's VM run state.
            Program::StorageDaemon => self.explore.map(|_| explore::Run {
                verdict: explore::Verdict::Skipped(
                    "built as qemu-storage-daemon; explore drives qemu-system".to_owned(),
                ),
                secs: 0.0,
            }),
        };
        Ok(outcome)
    }

    /// Applies `mutant` and builds it; the scratch tree is restored
    /// before this returns.
    fn build(
        &self,
        sh: &Shell,
        scratch: &Scratch,
        mutant: Mutant,
        opts: &BuildOptions,
    ) -> Result<Prepared> {
        let mut outcome = MutantOutcome {
            verdict: Verdict::Missed,
            build_secs: 0.0,
            suite_secs: 0.0,
            cached: false,
            explore: None,
            mutant,
        };
        // The same diff on the same commit and configuration: the binary
        // an earlier run built, the suite still run on it below.
        let key = self.kept.key(&outcome.mutant)?;
        if let Some(binary) = self.kept.cache.get(&key) {
            outcome.cached = true;
            self.kept.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(Prepared::Built(outcome, binary));
        }
        let path = &scratch.tree.path;
        let diff = &outcome.mutant.path;
        let check = interrupt::output(
            cmd!(sh, "git -C {path} apply --check {diff}").into(),
            "git apply --check",
        )?;
        if !check.status.success() {
            let why = String::from_utf8_lossy(&check.stderr);
            outcome.verdict = Verdict::NotApplied(qmp_tests::text::one_line(why.trim()));
            return Ok(Prepared::Ended(outcome));
        }
        let _applied = Applied(scratch);
        cmd!(sh, "git -C {path} apply {diff}")
            .quiet()
            .spawn_run()
            .with_context(|| format!("applying {}", diff.display()))?;
        let start = Instant::now();
        // A fault in the daemon's own code: the daemon is built (in a
        // build directory of its own beside the worker's qemu-system one).
        let opts = BuildOptions { program: outcome.mutant.program, ..opts.clone() };
        let built = build::build(sh, path, &self.built.python, &opts);
        let built = match built {
            Ok((built, _)) => built,
            Err(err) => {
                outcome.build_secs = start.elapsed().as_secs_f64();
                interrupt::check()?;
                let text = format!("{err:#}");
                let first =
                    text.lines().find(|l| l.contains("error:")).unwrap_or("the build failed");
                outcome.verdict = Verdict::Unviable(first.trim().to_owned());
                return Ok(Prepared::Ended(outcome));
            }
        };
        let binary = self.kept.cache.put(&key, &built.binary)?;
        self.kept.built.fetch_add(1, Ordering::Relaxed);
        outcome.build_secs = start.elapsed().as_secs_f64();
        Ok(Prepared::Built(outcome, binary))
    }

    /// Runs the suite on a mutant's `binary`.
    fn test(
        &self,
        mut outcome: MutantOutcome,
        binary: &Path,
        limit: Duration,
    ) -> Result<MutantOutcome> {
        let start = Instant::now();
        let mut plan = SuiteArgs::default();
        if !self.all_failures {
            plan.fail_fast = true;
            plan.first = (self.history.first(&outcome.mutant).iter())
                .map(|pick| Pick::parse(pick).map_err(|err| anyhow::anyhow!("{err}")))
                .collect::<Result<_>>()?;
        }
        let program = outcome.mutant.program;
        let run = self.suite(&outcome.mutant.name, binary, program, Some(limit), plan)?;
        outcome.suite_secs = start.elapsed().as_secs_f64();
        outcome.verdict = match run {
            SuiteRun::Done(Outcome::Passed, _) => Verdict::Missed,
            SuiteRun::Done(Outcome::Failed, failing) => Verdict::Caught(failing),
            SuiteRun::Done(Outcome::Unsupported, _) => {
                Verdict::Caught(vec!["(every scenario: no route)".to_owned()])
            }
            SuiteRun::Timeout(limit) => Verdict::Timeout(limit),
        };
        Ok(outcome)
    }

    /// With `--explore`, explore's run on `qemu`, its reports in
    /// `out_dir/NAME/`.
    fn explore(
        &self,
        name: &str,
        qemu: &Path,
        limit: Option<Duration>,
    ) -> Result<Option<explore::Run>> {
        let Some(sequences) = self.explore else {
            return Ok(None);
        };
        let dir = self.out_dir.join(name);
        explore::run(self.qmp_tests, qemu, sequences, &dir, limit).map(Some)
    }

    /// Runs the suite as `plan` says, its report in `out_dir/NAME/`.
    fn suite(
        &self,
        name: &str,
        qemu: &Path,
        program: Program,
        limit: Option<Duration>,
        plan: SuiteArgs,
    ) -> Result<SuiteRun> {
        let junit = self.out_dir.join(name).join("junit.xml");
        let opts = SuiteCli {
            junit: Some(junit.clone()),
            suite: plan,
            qemu_src: Some(self.tree.to_owned()),
            python: Some(self.built.python.clone()),
            // A fault that takes a route away must fail, not skip; the
            // daemon has the commands route only.
            require_routes: match program {
                Program::System => Route::ALL.to_vec(),
                Program::StorageDaemon => vec![Route::Commands],
            },
            qmp_python: self.qmp_python.map(Path::to_owned),
            program,
            ..SuiteCli::default()
        };
        let mut command = suite::command(self.qmp_tests, qemu, &opts, &[])?;
        command.stdout(std::process::Stdio::null());
        let running = interrupt::spawn(&mut command, "qmp-tests")?;
        let Some(status) = wait_limited(running, limit)? else {
            return Ok(SuiteRun::Timeout(limit.unwrap_or_default()));
        };
        let outcome = suite::outcome(status)?;
        let failing =
            if outcome == Outcome::Passed { Vec::new() } else { report::failing(&junit)? };
        Ok(SuiteRun::Done(outcome, failing))
    }
}
