//! `cargo xtask ci`: the project's own test command, and one leg of the
//! CI matrix (`--leg`). Both run the jobs of jobs.rs: the local run those
//! marked for it, in order, as its stages, timed and summed up at the end.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use crate::interrupt::Controlled;
use anyhow::{bail, ensure, Context, Result};
use junit_report::TestCaseBuilder;
use qmp_tests::cli::{SuiteArgs, SuiteCli};
use qmp_tests::text::{clean, one_line, tail_lines};
use xshell::{cmd, Shell};

use crate::build::BuildOptions;
use crate::jobs::{self, Build, Job, Leg, Local, Work};
use crate::pipeline::{self, SourceArgs};
use crate::suite::Outcome;
use crate::{deps, flags, interrupt, lock, meson, mutants, paths, series, stock, suite, templates};
use crate::{test, Done};

impl flags::Ci {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        if self.list_legs {
            jobs::names(false).iter().for_each(|name| println!("{name}"));
        } else if self.write_templates {
            write_templates()?;
        } else if self.check_templates {
            check_templates(sh)?;
        } else {
            let (legs, source) = match &self.leg {
                Some(name) => self.leg(name)?,
                None => (jobs::local(self.skip_sanitizer), None),
            };
            let _lock = lock::cache()?;
            let (started, mut stages) = (Instant::now(), Stages::default());
            let run = stages.run_legs(sh, &legs, source);
            match &self.leg {
                None => run.map(|()| stages.summary(started))?,
                // A leg whose jobs write no report (the checks, the
                // integration tests) leaves one too: a testcase per job.
                Some(name) if !legs.iter().any(|l| l.job.work.reports()) => {
                    let failed = run.as_ref().err().zip(legs.get(stages.done.len()));
                    let junit = paths::project_root().join(jobs::junit_path(name));
                    stages.report(&junit, name, failed.map(|(e, l)| (l.job.title, e)))?;
                    run?
                }
                Some(_) => run?,
            }
        }
        Ok(Done::Ok)
    }

    /// The jobs of `--leg NAME` and the source of --qemu-src and --series,
    /// checked before any work. Only a leg that tests a QEMU with
    /// monitor-add takes them; the others test the pinned release.
    fn leg(&self, name: &str) -> Result<(Vec<Leg>, Option<SourceArgs>)> {
        let (legs, names) = (jobs::leg(name), jobs::names(false).join(", "));
        ensure!(
            !legs.is_empty(),
            "no CI leg `{name}`; `cargo xtask ci --list-legs` lists them: {names}"
        );
        if self.qemu_src.is_none() && self.series.is_none() {
            return Ok((legs, None));
        }
        ensure!(
            legs.iter().all(|l| l.job.on_any_tree()),
            "leg {name}: tests the project on the pinned release; it takes no --qemu-src or --series"
        );
        let located = self.qemu_src.as_deref().map(crate::source::locate).transpose()?;
        self.series.as_deref().map(series::patch_files).transpose()?;
        let series = self.series.clone();
        Ok((legs, Some(SourceArgs { located, series, ..SourceArgs::pinned(false) })))
    }
}

/// What the pipelines built, by job: the integration tests and meson test
/// run on the stock and the series build.
#[derive(Default)]
struct Built(Vec<(Job, test::Run)>);

impl Built {
    /// The binary and tree `job`'s pipeline built, run first when it has
    /// not run (in the leg of the integration tests).
    fn get(&mut self, sh: &Shell, job: Job) -> Result<(PathBuf, PathBuf)> {
        if !self.0.iter().any(|(j, _)| *j == job) {
            run_job(sh, &job.local_leg(), None, self)?;
        }
        let (_, run) = self.0.iter().find(|(j, _)| *j == job).context("no run of the pipeline")?;
        Ok((run.binary.clone(), run.tree.clone()))
    }
}

/// Runs one job: in its leg, as a CI job does, or as `cargo xtask ci`
/// does (`leg.local`). `source` is the pinned release (with the series
/// unless the job tests the stock release) unless given.
fn run_job(sh: &Shell, leg: &Leg, source: Option<SourceArgs>, built: &mut Built) -> Result<()> {
    let cargo = paths::cargo();
    let _cd = sh.push_dir(paths::project_root());
    let junit = paths::project_root().join(jobs::junit_path(&leg.name));
    match leg.job.work {
        Work::Fmt => {
            // A minimal toolchain, as in CI's rust image, lacks both.
            let rustfmt = cmd!(sh, "rustfmt -V").quiet().spawn_output();
            if !rustfmt.is_ok_and(|out| out.status.success()) && which::which("rustup").is_ok() {
                cmd!(sh, "rustup component add rustfmt clippy").spawn_run()?;
            }
            cmd!(sh, "{cargo} fmt --all -- --check").spawn_run()
        }
        Work::Clippy => {
            cmd!(sh, "{cargo} clippy --quiet --workspace --all-targets -- -D warnings").spawn_run()
        }
        Work::HostDeps => deps::ensure_host(sh).map(drop),
        Work::Templates => check_templates(sh),
        Work::UnitTests => cmd!(sh, "{cargo} test --quiet --workspace").spawn_run(),
        Work::Suite(build) => {
            let source = source.unwrap_or_else(|| SourceArgs::pinned(!build.series));
            suite(sh, build, leg, source).map(|run| built.0.push((leg.job, run)))
        }
        Work::IntegrationTests => {
            let (stock_qemu, stock_tree) = built.get(sh, jobs::STOCK)?;
            let (hotplug, _) = built.get(sh, jobs::SERIES)?;
            let (series, qmp_tests) = (series::default_series(), suite::binary(sh)?);
            cmd!(sh, "{cargo} test --quiet --workspace -- --include-ignored")
                .env("QMP_TESTS_QEMU", stock_qemu)
                .env("QMP_TESTS_QEMU_HOTPLUG", hotplug)
                .env("QMP_TESTS_BIN", qmp_tests)
                .env("XTASK_TEST_QEMU_TREE", stock_tree)
                .env("XTASK_TEST_SERIES", series)
                .spawn_run()
        }
        Work::MesonTest => {
            // Wired for good, run as a QEMU developer would, and unwired.
            let ((qemu, tree), bin) = (built.get(sh, jobs::SERIES)?, suite::binary(sh)?);
            meson::test_wired(sh, (&tree, &qemu, &bin), "x86_64", |meson| {
                (meson(&["--print-errorlogs"]).spawn_run())
                    .context("running meson test func-x86_64-monitor_hotplug")
            })
        }
        Work::Mutants => {
            let all = mutants::select(&[])?;
            let chosen = match leg.shard {
                Some(shard) => shard.take(all),
                None => all,
            };
            let plan = mutants::Plan { shard: leg.shard, junit: Some(junit), ..Default::default() };
            if !mutants::execute(sh, chosen, &plan)? {
                bail!("leg {}: a mutant was not caught; the kill matrix above names it", leg.name);
            }
            Ok(())
        }
        Work::Explore { sequences, .. } if leg.local => {
            let (qemu, n) = (built.get(sh, jobs::SERIES)?.0, sequences.to_string());
            let (bin, out) = (suite::binary(sh)?, paths::target_dir().join("explore"));
            let junit = out.join("junit.xml");
            cmd!(sh, "{bin} explore --qemu {qemu} --time 300 --seed 0 --sequences {n} --junit {junit} --out {out}")
                .spawn_run()
                .context("explore found a failing sequence or could not run")
        }
        Work::Explore { secs, .. } => {
            let source = source.unwrap_or_else(|| SourceArgs::pinned(false));
            if !crate::explore::run_leg(sh, source, secs, junit)? {
                bail!("leg {}: explore found a failing sequence (above)", leg.name);
            }
            Ok(())
        }
    }
}

/// `cargo xtask test` for one build on the leg's route (or both), the
/// report in the leg's directory: with the series every scenario must
/// pass; without it, the suite's own report goes to `suite/` below and the
/// leg's says whether the refusal was the expected one (stock.rs).
fn suite(sh: &Shell, build: Build, leg: &Leg, source: SourceArgs) -> Result<test::Run> {
    let (name, route) = (&leg.name, leg.route);
    let leg_junit = paths::project_root().join(jobs::junit_path(name));
    let junit = match build.series {
        true => leg_junit.clone(),
        false => leg_junit.with_file_name("suite").join("junit.xml"),
    };
    let sanitize = if build.sanitizers { vec!["address", "undefined"] } else { Vec::new() };
    let plan = pipeline::Test {
        source,
        build: BuildOptions {
            target: build.target.to_owned(),
            sanitize: sanitize.into_iter().map(str::to_owned).collect(),
            program: build.program,
            ..BuildOptions::default()
        },
        suite: SuiteCli {
            junit: Some(junit.clone()),
            suite: SuiteArgs { route, ..SuiteArgs::default() },
            leg: Some(name.to_owned()),
            ..SuiteCli::default()
        },
    };
    let run = test::run(sh, &plan)?;
    match (build.series, run.outcome) {
        (true, Outcome::Passed) => {}
        (true, outcome) => bail!("leg {name}: the suite reported {outcome:?}"),
        (false, outcome) => {
            // The leg's report says whether each scenario failed naming
            // monitor-add, and names any that did not.
            let checked = stock::leg_report(&junit, &leg_junit, name);
            if outcome != Outcome::Unsupported {
                bail!("leg {name}: the stock release should lack monitor-add, but the suite reported {outcome:?}");
            }
            checked?;
            eprintln!(
                "leg {name}: the suite refused the stock QEMU, as it must; leg report: {}",
                leg_junit.display()
            );
        }
    }
    Ok(run)
}

/// Writes the CI templates from the jobs.
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

#[derive(Default)]
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

    /// The stages as a JUnit report at `path`: a testcase each, then the
    /// one that `failed` (its title and error).
    fn report(&self, path: &Path, leg: &str, failed: Option<(&str, &anyhow::Error)>) -> Result<()> {
        let time = junit_report::Duration::seconds_f64;
        let mut cases: Vec<_> = self
            .done
            .iter()
            .map(|(name, secs, _)| TestCaseBuilder::success(name, time(*secs)))
            .collect();
        if let Some((name, error)) = failed {
            let message = clean(&one_line(&format!("{error:#}")));
            cases.push(TestCaseBuilder::failure(name, time(0.0), "failure", &message));
        }
        let suite = format!("{}.{leg}", qmp_tests::junit::SUITE);
        let cases = cases.iter_mut().map(|case| case.set_classname(&suite).build()).collect();
        crate::files::write_junit(path, &suite, cases)
    }

    /// Runs `legs` in order, a stage each; in the local run, the jobs
    /// beside the others are started and awaited at the end.
    fn run_legs(&mut self, sh: &Shell, legs: &[Leg], mut source: Option<SourceArgs>) -> Result<()> {
        let (cargo, root) = (paths::cargo(), paths::project_root());
        let (mut built, mut beside) = (Built::default(), Vec::new());
        for leg in legs {
            if !(leg.local && leg.job.local == Local::Beside) {
                self.run(leg.job.title, || run_job(sh, leg, source.take(), &mut built))?;
                continue;
            }
            // `cargo xtask mutants` runs the whole catalogue; any other job
            // beside is its leg. ci tests the pinned release, whatever
            // QEMU_SRC says.
            let mut command = std::process::Command::new(&cargo);
            match leg.job.work {
                Work::Mutants => command.args(["xtask", "mutants"]),
                _ => command.args(["xtask", "ci", "--leg", &leg.name]),
            };
            command.current_dir(&root).env_remove("QEMU_SRC");
            let log = paths::target_dir().join(format!("ci/{}.log", leg.name));
            beside.push(self.start_beside(leg.job.title, log, command)?);
        }
        beside.into_iter().try_for_each(|job| self.join(job))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_beside_keeps_its_output_and_is_timed_when_joined() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ci/echo.log");
        let mut echo = std::process::Command::new("echo");
        echo.arg("caught them all");
        let mut stages = Stages::default();
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
    fn a_leg_without_reports_of_its_own_reports_each_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checks/junit.xml");
        let mut stages = Stages::default();
        stages.run("clippy", || Ok(())).unwrap();
        let error = anyhow::anyhow!("3 unit tests failed");
        stages.report(&path, "checks", Some(("unit tests", &error))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for part in [r#"name="monitor_hotplug.checks""#, r#"tests="2""#, r#"failures="1""#] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        assert!(text.contains(r#"<testcase name="clippy""#), "{text}");
        assert!(text.contains(r#"message="3 unit tests failed""#), "{text}");
    }

    #[test]
    fn a_failing_stage_beside_names_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("false.log");
        let mut stages = Stages::default();
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
        let beside =
            Stages::default().start_beside("sleep", dir.path().join("sleep.log"), sleep).unwrap();
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
