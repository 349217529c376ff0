//! `cargo xtask ci`: the project's own test command.
//!
//! Lints, unit tests, then the pipeline against real QEMU builds: the
//! stock release (every scenario must fail with the no-monitor-add
//! message), the release with the project's series (every scenario must
//! pass), qemu-storage-daemon with the series (the CI leg `qsd`, beside
//! the stages after it), the integration tests that need those binaries, the meson
//! wiring run through `meson test`, every catalogued mutant caught
//! (`cargo xtask mutants`), and a sanitizer build.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use qmp_tests::text::tail_lines;
use xshell::{cmd, Shell};

use crate::build::BuildOptions;
use crate::legs::{self, Leg};
use crate::pipeline::{self, SourceArgs};
use crate::suite::Outcome;
use crate::{deps, flags, interrupt, lock, meson, mutants, paths, series, stock, suite, templates};
use crate::{test, Done};
use qmp_tests::cli::{SuiteArgs, SuiteCli};

impl flags::Ci {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let leg = self.leg()?;
        if self.list_legs {
            legs::all().iter().for_each(|leg| println!("{}", leg.name));
        } else if self.write_templates {
            write_templates()?;
        } else if self.check_templates {
            check_templates(sh)?;
        } else {
            let _lock = lock::cache()?;
            match leg {
                Some((leg, source)) => run_leg(sh, &leg, source)?,
                None => run_all(sh, self.skip_sanitizer)?,
            }
        }
        Ok(Done::Ok)
    }

    /// `--leg NAME` and the source it tests, checked before any work: the
    /// pinned release with the project's series (none on the stock leg),
    /// or the tree of --qemu-src, and the series of --series (the parser
    /// takes neither without --leg).
    fn leg(&self) -> Result<Option<(Leg, SourceArgs)>> {
        let Some(name) = &self.leg else {
            return Ok(None);
        };
        let leg = legs::find(name).with_context(|| {
            let names: Vec<String> = legs::all().into_iter().map(|l| l.name).collect();
            format!(
                "no CI leg `{name}`; `cargo xtask ci --list-legs` lists them: {}",
                names.join(", ")
            )
        })?;
        if !leg.series && (self.qemu_src.is_some() || self.series.is_some()) {
            bail!(
                "leg {}: checks that the suite refuses the stock release; it takes no --qemu-src or --series",
                leg.name
            );
        }
        let mut source = match &self.qemu_src {
            Some(path) => SourceArgs::located(crate::source::locate(path)?),
            None => SourceArgs::pinned(!leg.series),
        };
        if let Some(path) = &self.series {
            series::patch_files(path)?;
        }
        source.series = self.series.clone();
        Ok(Some((leg, source)))
    }
}

/// `cargo xtask ci --leg NAME`: the leg's pipeline, as a CI job runs it.
/// The stock leg's suite report goes to `suite/` below the leg's
/// directory, and the leg's own report says whether the refusal was the
/// expected one (stock.rs).
fn run_leg(sh: &Shell, leg: &Leg, source: SourceArgs) -> Result<()> {
    let leg_junit = paths::project_root().join(legs::junit_path(&leg.name));
    let junit = if leg.series {
        leg_junit.clone()
    } else {
        leg_junit.with_file_name("suite").join("junit.xml")
    };
    if let Some(secs) = leg.explore {
        if !crate::explore::run_leg(sh, source, secs, leg_junit)? {
            bail!("leg {}: explore found a failing sequence (above)", leg.name);
        }
        return Ok(());
    }
    if let Some(shard) = leg.mutants {
        let plan = mutants::Plan {
            shard: Some(shard),
            junit: Some(leg_junit),
            ..mutants::Plan::default()
        };
        if !mutants::execute(sh, shard.take(mutants::select(&[])?), &plan)? {
            bail!(
                "leg {}: a mutant of shard {shard} was not caught; the kill matrix above names it",
                leg.name
            );
        }
        return Ok(());
    }
    let plan = pipeline::Test {
        source,
        build: BuildOptions {
            target: leg.target.to_owned(),
            sanitize: if leg.sanitizers {
                vec!["address".to_owned(), "undefined".to_owned()]
            } else {
                Vec::new()
            },
            program: leg.program,
            ..BuildOptions::default()
        },
        suite: SuiteCli {
            junit: Some(junit.clone()),
            suite: SuiteArgs { route: leg.route, ..SuiteArgs::default() },
            leg: Some(leg.name.clone()),
            ..SuiteCli::default()
        },
    };
    let run = test::run(sh, &plan)?;
    let name = &leg.name;
    match (leg.series, run.outcome) {
        (true, Outcome::Passed) => Ok(()),
        (false, Outcome::Unsupported) => {
            stock::leg_report(&junit, &leg_junit, name)?;
            eprintln!(
                "leg {name}: the suite refused the stock QEMU, as it must; leg report: {}",
                leg_junit.display()
            );
            Ok(())
        }
        (true, outcome) => bail!("leg {name}: the suite reported {outcome:?}"),
        (false, outcome) => {
            // The leg's report says so too, naming what did not fail.
            let _ = stock::leg_report(&junit, &leg_junit, name);
            bail!(
                "leg {name}: the stock release should lack monitor-add, but the suite reported {outcome:?}"
            )
        }
    }
}

/// Writes the CI templates from the legs.
fn write_templates() -> Result<()> {
    let root = paths::project_root();
    for (file, text, _) in templates::all() {
        let path = root.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        crate::files::write_atomic(&path, &text)?;
        println!("{file}");
    }
    Ok(())
}

/// The GitLab and GitHub templates pass the vendors' own JSON schemas,
/// as bundled with check-jsonschema (pinned; no schema is downloaded).
fn check_templates(sh: &Shell) -> Result<()> {
    const SPEC: &str = "check-jsonschema==0.39.0";
    let bin = match deps::venv(sh, &[SPEC])? {
        deps::Venv::Ready { dir, .. } => dir.join("bin/check-jsonschema"),
        deps::Venv::PipFailed { dir, why } => {
            bail!("installing {SPEC} into {} with pip failed ({why})", dir.display())
        }
    };
    let _cd = sh.push_dir(paths::project_root());
    for (file, _, schema) in templates::all() {
        cmd!(sh, "{bin} --builtin-schema {schema} {file}")
            .spawn_run()
            .with_context(|| format!("checking {file} against {schema}"))?;
    }
    Ok(())
}

struct Stages {
    /// Each stage's name, seconds, and whether it ran beside others.
    done: Vec<(String, f64, bool)>,
}

impl Stages {
    /// Each stage's time, and the count of stages passed.
    fn summary(&self, started: Instant) {
        eprintln!("\n==== ci summary (wall time {:.1}s)", started.elapsed().as_secs_f64());
        for (name, secs, beside) in &self.done {
            let beside = if *beside { "  (beside the others)" } else { "" };
            eprintln!("  {secs:>7.1}s  {name}{beside}");
        }
        println!("{} passed, 0 failed", self.done.len());
    }

    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        interrupt::check()?;
        eprintln!("\n==== ci: {name}");
        let start = Instant::now();
        let value = f().with_context(|| format!("ci stage `{name}` failed"))?;
        let secs = start.elapsed().as_secs_f64();
        eprintln!("==== ci: {name}: ok ({secs:.1}s)");
        self.done.push((name.to_owned(), secs, false));
        Ok(value)
    }

    /// Starts `command` as a stage that runs beside the next ones, its
    /// output kept in `log` (it would interleave with theirs);
    /// [`Stages::join`] waits for it.
    fn start_beside(
        &mut self,
        name: &'static str,
        log: PathBuf,
        mut command: std::process::Command,
    ) -> Result<Beside> {
        interrupt::check()?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("opening {} twice", log.display()))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        eprintln!(
            "\n==== ci: {name}: started, beside the next stages (output in {})",
            log.display()
        );
        let running = interrupt::spawn(&mut command, name)?;
        Ok(Beside { name, running, log, started: SystemTime::now() })
    }

    /// Waits for a stage started with [`Stages::start_beside`].
    fn join(&mut self, mut beside: Beside) -> Result<()> {
        let name = beside.name;
        eprintln!("\n==== ci: {name}: waiting for it");
        let status = beside
            .running
            .child
            .wait()
            .with_context(|| format!("waiting for the ci stage `{name}`"))?;
        let log = &beside.log;
        // Its own time, not the time until it was joined: until the last
        // line it wrote.
        let ended =
            std::fs::metadata(log).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
        let secs = ended.duration_since(beside.started).unwrap_or_default().as_secs_f64();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if !status.success() {
            eprintln!("{}", tail_lines(&text, 60));
            bail!("ci stage `{name}` failed ({status}); its whole output is in {}", log.display());
        }
        eprintln!("{}", tail_lines(&text, 3));
        eprintln!(
            "==== ci: {name}: ok ({secs:.1}s beside the others; output in {})",
            log.display()
        );
        self.done.push((name.to_owned(), secs, true));
        Ok(())
    }
}

/// A stage running beside others: stopped if the run ends before it is
/// joined (a failing stage, a signal).
struct Beside {
    name: &'static str,
    running: interrupt::Forwarded,
    log: PathBuf,
    started: SystemTime,
}

impl Drop for Beside {
    fn drop(&mut self) {
        if let Ok(None) = self.running.child.try_wait() {
            self.running.signal_group(rustix::process::Signal::TERM);
            let _ = self.running.child.wait();
        }
    }
}

/// `cargo xtask test` on the pinned release, whatever QEMU_SRC says: ci
/// tests the project, not a tree of the user's.
fn xtask_test(
    sh: &Shell,
    no_series: bool,
    sanitize: &[&str],
    junit: Option<PathBuf>,
) -> Result<test::Run> {
    let plan = pipeline::Test {
        source: SourceArgs::pinned(no_series),
        build: BuildOptions {
            sanitize: sanitize.iter().map(|s| s.to_string()).collect(),
            ..BuildOptions::default()
        },
        suite: SuiteCli { junit, ..SuiteCli::default() },
    };
    test::run(sh, &plan)
}

/// Every stage, in the order that lets the slow ones overlap: the checks
/// without QEMU, the pipelines, then the stages on what they built.
fn run_all(sh: &Shell, skip_sanitizer: bool) -> Result<()> {
    let cargo = paths::cargo();
    let root = paths::project_root();
    let _cd = sh.push_dir(&root);
    let mut stages = Stages { done: Vec::new() };
    let started = Instant::now();

    static_checks(&mut stages, sh, &cargo)?;

    let stock = stages.run("pipeline, pinned release without the series", || stock_pipeline(sh))?;
    let hotplug = stages.run("pipeline, pinned release with the series", || {
        series_pipeline(sh, &[], "the project's series")
    })?;
    // qemu-storage-daemon with the series: a build directory of its own
    // on the series tree the stage above made, and no wiring, so it
    // touches nothing the stages below use; its build overlaps their
    // QEMU runs.
    let qsd = stages.start_beside(
        "qemu-storage-daemon with the series (leg qsd)",
        paths::target_dir().join("ci/qsd.log"),
        nested_xtask(&cargo, &root, &["ci", "--leg", "qsd"]),
    )?;
    // The mutants have their own scratch build and touch no tree the
    // stages below use, and mostly wait on the linker and on QEMUs with
    // one vCPU-less machine each: they run beside the rest.
    let mutants = stages.start_beside(
        "mutants: every catalogued fault caught",
        paths::target_dir().join("ci/mutants.log"),
        nested_xtask(&cargo, &root, &["mutants"]),
    )?;
    stages.run("integration tests against the built QEMUs", || {
        let series = series::default_series();
        let qmp_tests = suite::binary(sh)?;
        cmd!(sh, "{cargo} test --quiet --workspace -- --include-ignored")
            .env("QMP_TESTS_QEMU", &stock.binary)
            .env("QMP_TESTS_QEMU_HOTPLUG", &hotplug.binary)
            .env("QMP_TESTS_BIN", qmp_tests)
            .env("XTASK_TEST_QEMU_TREE", &stock.tree)
            .env("XTASK_TEST_SERIES", &series)
            .spawn_run()
    })?;
    stages
        .run("meson test through the wiring", || meson_test(sh, &hotplug.tree, &hotplug.binary))?;
    stages.run("explore: the first 500 sequences of seed 0 against the series", || {
        explore_stage(sh, &hotplug.binary)
    })?;
    if !skip_sanitizer {
        stages.run("sanitizer build (address,undefined) with the series", || {
            series_pipeline(sh, &["address", "undefined"], "the sanitizer build").map(drop)
        })?;
    }
    stages.join(qsd)?;
    stages.join(mutants)?;
    stages.summary(started);
    Ok(())
}

/// What needs no QEMU: formatting, clippy, the CI templates, the host's
/// packages and the unit tests.
fn static_checks(stages: &mut Stages, sh: &Shell, cargo: &std::ffi::OsStr) -> Result<()> {
    stages.run("cargo fmt --check", || cmd!(sh, "{cargo} fmt --all -- --check").spawn_run())?;
    stages.run("clippy", || {
        cmd!(sh, "{cargo} clippy --quiet --workspace --all-targets -- -D warnings").spawn_run()
    })?;
    stages.run("CI templates against the vendors' schemas", || check_templates(sh))?;
    // The signal and kill -9 tests build a stand-in tree with real ninja
    // among the unit tests: the build dependencies come first.
    stages.run("host dependencies", || deps::ensure_host(sh).map(drop))?;
    stages.run("unit tests", || cmd!(sh, "{cargo} test --quiet --workspace").spawn_run())?;
    Ok(())
}

/// The pinned release without the series: the suite must find no
/// monitor-add and say so in its report.
fn stock_pipeline(sh: &Shell) -> Result<test::Run> {
    let dir = paths::target_dir().join("qmp-tests/stock");
    let junit = dir.join("junit.xml");
    let run = xtask_test(sh, true, &[], Some(junit.clone()))?;
    if run.outcome != Outcome::Unsupported {
        bail!("stock QEMU should lack monitor-add, but the suite reported {:?}", run.outcome);
    }
    let text =
        std::fs::read_to_string(&junit).with_context(|| format!("reading {}", junit.display()))?;
    if !text.contains("has no monitor-add") {
        bail!("{} does not mention `has no monitor-add`", junit.display());
    }
    Ok(run)
}

/// The pinned release with the series, built with `sanitize`: the suite
/// must pass against `what`.
fn series_pipeline(sh: &Shell, sanitize: &[&str], what: &str) -> Result<test::Run> {
    let run = xtask_test(sh, false, sanitize, None)?;
    if run.outcome != Outcome::Passed {
        bail!("the suite failed against {what} ({:?})", run.outcome);
    }
    Ok(run)
}

/// `cargo xtask ARGS` in the project root, for a stage beside the others.
fn nested_xtask(cargo: &std::ffi::OsStr, root: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(cargo);
    command
        .arg("xtask")
        .args(args)
        .current_dir(root)
        // ci tests the pinned release, whatever QEMU_SRC says.
        .env_remove("QEMU_SRC");
    command
}

/// `qmp-tests explore` on the series build: the first 500 sequences of
/// seed 0 (about 60 s here), the same set on every machine, so that a
/// failure here is the change's. The CI matrix's `explore` leg roams
/// with a random seed for 600 s; docs/explore.md lists what it finds on
/// the current series.
fn explore_stage(sh: &Shell, qemu: &Path) -> Result<()> {
    let bin = suite::binary(sh)?;
    let dir = paths::target_dir().join("explore");
    let junit = dir.join("junit.xml");
    cmd!(
        sh,
        "{bin} explore --qemu {qemu} --time 300 --seed 0 --sequences 500 --junit {junit} --out {dir}"
    )
    .spawn_run()
    .context("explore found a failing sequence or could not run")
}

/// Wires the pinned tree for good, runs the test the way a QEMU developer
/// would (`meson test` in the build directory), and unwires.
fn meson_test(sh: &Shell, tree: &Path, qemu: &Path) -> Result<()> {
    let bin = suite::binary(sh)?;
    meson::test_wired(sh, (tree, qemu, &bin), "x86_64", |meson| {
        (meson(&["--print-errorlogs"]).spawn_run())
            .context("running meson test func-x86_64-monitor_hotplug")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> Stages {
        Stages { done: Vec::new() }
    }

    #[test]
    fn a_stage_beside_keeps_its_output_and_is_timed_when_joined() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ci/echo.log");
        let mut echo = std::process::Command::new("echo");
        echo.arg("caught them all");
        let mut stages = stages();
        let beside = stages.start_beside("echo", log.clone(), echo).unwrap();
        // The other stages go on after it has ended.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stages.join(beside).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "caught them all\n");
        // Timed to its end, not to the join a while later.
        assert!(
            matches!(stages.done.as_slice(), [(name, secs, true)] if name == "echo" && *secs < 1.0),
            "{:?}",
            stages.done
        );
    }

    #[test]
    fn a_failing_stage_beside_names_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("false.log");
        let mut stages = stages();
        let beside =
            stages.start_beside("false", log.clone(), std::process::Command::new("false")).unwrap();
        let err = format!("{:#}", stages.join(beside).unwrap_err());
        assert!(err.contains("`false` failed") && err.contains("false.log"), "{err}");
        assert!(stages.done.is_empty());
    }

    #[test]
    fn a_stage_beside_that_is_never_joined_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleep = std::process::Command::new("sleep");
        sleep.arg("60");
        let beside = stages().start_beside("sleep", dir.path().join("sleep.log"), sleep).unwrap();
        let pid = beside.running.child.id() as i32;
        let start = Instant::now();
        drop(beside);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        let alive =
            rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid).unwrap())
                .is_ok();
        assert!(!alive, "the stage's process {pid} outlived it");
    }
}
