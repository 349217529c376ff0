//! One bisect step, run by git in the tree at the commit to test: the
//! steps of `cargo xtask test` (tree as it is, series, wiring, build,
//! suite), then the tree put back for the next checkout.
//! Its exit status is its verdict.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::interrupt::Controlled;
use anyhow::{anyhow, Context, Result};
use qmp_tests::pidfd::PidFd;
use rustix::process::{getpid, kill_process, Signal};
use xshell::{cmd, Shell};

use super::{first_line, records, short, step_lock, Record, StepFlags, Unsupported, ABORT};
use crate::build::BuildOptions;
use crate::flags::BisectStep;
use crate::pipeline::{Prepared, Run, SourceArgs, SuiteRun, Targets};
use crate::suite::Outcome;
use crate::{interrupt, series, source, vcs};
use clap::Parser as _;
use qmp_tests::cli::SuiteCli;

/// The outcome of a step whose QEMU has no monitor-add.
pub(super) const NO_MONITOR_ADD: &str = "no monitor-add";

/// What a step found.
enum Finding {
    Passed,
    Failed,
    Unsupported,
    DoesNotBuild(String),
    SeriesDoesNotApply(String),
    /// Not the commit's fault: the harness, I/O.
    Harness(String),
    Interrupted,
}

impl Finding {
    /// The verdict git gets, as its exit status.
    fn exit_code(&self, unsupported: Unsupported) -> u8 {
        match self {
            Finding::Passed => 0,
            Finding::Failed => 1,
            Finding::Unsupported => match unsupported {
                Unsupported::Good => 0,
                Unsupported::Bad => 1,
                Unsupported::Skip => 125,
            },
            Finding::DoesNotBuild(_) | Finding::SeriesDoesNotApply(_) => 125,
            Finding::Harness(_) | Finding::Interrupted => ABORT,
        }
    }

    /// The outcome, as the report names it, and the detail that says why.
    fn outcome(&self) -> (&'static str, &str) {
        match self {
            Finding::Passed => ("passed", ""),
            Finding::Failed => ("failed", ""),
            Finding::Unsupported => (NO_MONITOR_ADD, ""),
            Finding::DoesNotBuild(d) => ("does not build", d),
            Finding::SeriesDoesNotApply(d) => ("series does not apply", d),
            Finding::Harness(d) => ("harness failure", d),
            Finding::Interrupted => ("interrupted", ""),
        }
    }
}

/// The step's entry point. Every way out maps to an exit status git
/// understands; a panic (which would exit 101, "bad") aborts instead.
pub fn step_main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(args)));
    match result.unwrap_or_else(|_| Err(anyhow!("it panicked (a bug in the xtask)"))) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: bisect step: {err:#}\nerror: aborting the bisect");
            ExitCode::from(ABORT)
        }
    }
}

/// The bisect that started this step, by pid: git runs the step through
/// a shell, so neither has a death signal tied to the bisect's life.
pub const BISECT_PID: &str = "XTASK_BISECT_PID";

/// Ends this step like a Ctrl-C (SIGTERM to itself: its children are
/// told, the tree is unwired and reset) when the bisect dies, kill -9
/// included: the step must not build on, a tree wired, with no lock held.
fn die_with_the_bisect() -> Result<()> {
    let Some(pid) = std::env::var(BISECT_PID).ok().and_then(|p| p.parse::<u32>().ok()) else {
        return Ok(());
    };
    let bisect = PidFd::open(pid).with_context(|| format!("the bisect (process {pid}) is gone"))?;
    std::thread::spawn(move || {
        // No deadline but the bisect's end: a day at a time.
        let day = Duration::from_secs(86_400);
        while !matches!(bisect.wait_exit(Instant::now() + day), Ok(true)) {}
        let _ = kill_process(getpid(), Signal::TERM);
    });
    Ok(())
}

/// What a step knows about where it runs.
struct Step<'a> {
    sh: &'a Shell,
    tree: PathBuf,
    qmp_tests: PathBuf,
    /// Where the suite writes its JUnit report.
    junit: PathBuf,
    commit: String,
    flags: StepFlags,
    build: BuildOptions,
}

fn step(args: impl Iterator<Item = OsString>) -> Result<u8> {
    let start = Instant::now();
    die_with_the_bisect()?;
    let BisectStep { qemu_src: tree, qmp_tests, log_dir, step: flags } =
        BisectStep::try_parse_from(args).context(
            "bisect-step is run by `cargo xtask bisect`; see `cargo xtask bisect --help`",
        )?;
    let build = flags.build.options(Targets::AtBuild)?;
    let sh = Shell::new()?;
    let _lock = step_lock(&log_dir)?;
    // A step that git started just before a Ctrl-C must not touch the tree
    // the bisect is about to reset.
    interrupt::check()?;

    let commit = vcs::head(&sh, &tree)?;
    let short = short(&commit);
    let subject = cmd!(sh, "git -C {tree} log -1 --format=%s").quiet().spawn_read()?;
    eprintln!("==> bisect step {short}: {subject}");
    let junit = log_dir.join(format!("step-{short}/junit.xml"));
    let step = Step { sh: &sh, tree, qmp_tests, junit, commit: commit.clone(), flags, build };
    // The build and test times are filled in by the step as it runs.
    let mut record = Record { commit: commit.clone(), subject, ..Record::default() };
    let finding = test_leaving_clean(&step, &mut record);
    // The suite's report, when it wrote one, goes beside the bisect log,
    // where the report and the user look for it.
    let written = &step.junit;
    record.junit = written.exists().then(|| log_dir.join(format!("step-{short}.xml")));
    if let Some(to) = &record.junit {
        std::fs::copy(written, to)
            .with_context(|| format!("copying {} to {}", written.display(), to.display()))?;
    }
    let code = finding.exit_code(step.flags.unsupported);
    let (outcome, detail) = finding.outcome();
    // Read before this step's record is added: is it the first to find
    // no monitor-add?
    let first_unsupported = outcome == NO_MONITOR_ADD
        && !records(&log_dir)?.iter().any(|r| r.outcome == NO_MONITOR_ADD);
    let overhead = start.elapsed().as_secs_f64() - record.build_secs - record.test_secs;
    record.overhead_secs = overhead.max(0.0);
    record.outcome = outcome.to_owned();
    let verdict = match code {
        0 => "good",
        1 => "bad",
        125 => "skip",
        _ => "abort",
    };
    record.verdict = verdict.to_owned();
    record.detail = first_line(detail).to_owned();
    record.append(&log_dir)?;
    if first_unsupported && code == 125 {
        eprintln!("{}", no_monitor_add_hint(short, step.flags.series.is_some()));
    }
    // A harness failure says the bisect stops.
    if matches!(finding, Finding::Harness(_)) {
        eprintln!("error: {detail}\nerror: not the commit's fault: aborting the bisect");
    } else if !detail.is_empty() {
        eprintln!("{detail}");
    }
    eprintln!(
        "==> bisect step {short}: {} ({outcome}; build {:.1}s, tests {:.2}s, xtask {:.2}s)",
        record.verdict, record.build_secs, record.test_secs, record.overhead_secs
    );
    Ok(code)
}

/// The commit's finding, or a harness failure when the step left the
/// tree dirty: the next checkout needs it clean.
fn test_leaving_clean(step: &Step, record: &mut Record) -> Finding {
    let finding = match test_commit(step, record) {
        _ if interrupt::interrupted() => Finding::Interrupted,
        Ok(f) => f,
        Err(err) => Finding::Harness(format!("{err:#}")),
    };
    // The next checkout needs a clean tree; say so now rather than let git
    // fail on it.
    match interrupt::cleanup(|| vcs::status(step.sh, &step.tree)) {
        Ok(dirty) if dirty.is_empty() => finding,
        Ok(dirty) => Finding::Harness(format!(
            "the step left changes in {}: {}",
            step.tree.display(),
            dirty.join(", ")
        )),
        Err(err) => Finding::Harness(format!("{err:#}")),
    }
}

/// Said on the first step whose QEMU has no monitor-add, when such steps
/// are skipped: upstream QEMU has none, so a plain bisect of it skips
/// every step and ends without an answer.
fn no_monitor_add_hint(short: &str, with_series: bool) -> String {
    let advice = if with_series {
        "The --series given applied here, yet gave no monitor-add: \
         check that it is the monitor-hotplug series."
    } else {
        "To bisect it with the series applied on each commit, add \
         `--series patches/monitor-hotplug` (or your own series); \
         `--unsupported good` or `bad` counts such commits instead."
    };
    format!(
        "note: {short} has no monitor-add, so this step is skipped (--unsupported skip). \
         QEMU without a monitor-hotplug series has none: a bisect of such a history \
         skips every step and ends without an answer. {advice}"
    )
}

/// The steps of `cargo xtask test` on the step's commit: the tree as it
/// is, the series in place, wiring, venv, build, suite, unwiring. The
/// guards undo series and wiring on every way out. Errors are harness
/// failures (a venv pip cannot make included: that is the machine's
/// fault, not the commit's); the commit's own failures are findings.
fn test_commit(step: &Step, record: &mut Record) -> Result<Finding> {
    let (sh, tree) = (step.sh, &step.tree);
    let mut run = Run::new(sh, 5 + usize::from(step.flags.series.is_some()));
    let located = run.source(&SourceArgs::located(source::locate(tree)?))?;
    // Declared before the wiring, so that the wiring is undone first.
    let mut _series = None;
    let series = match step.flags.series.as_deref() {
        None => "none".to_owned(),
        Some(path) => {
            // Applied in place with the same `git am` as `cargo xtask test`;
            // the outer error is the harness's, the inner one says why the
            // series does not apply here.
            let applied = run.own("series", || {
                let files = series::patch_files(path)?;
                // Exists before git am starts, so a cut-off am is undone too.
                let guard = SeriesGuard { tree: tree.clone(), commit: step.commit.clone() };
                let applied = series::am(sh, tree, &files, path)?.map(|()| guard);
                let summary = match &applied {
                    Ok(_) => format!("{} applied in place", path.display()),
                    Err(_) => "does not apply".to_owned(),
                };
                Ok((applied, summary))
            })?;
            match applied {
                Ok(guard) => _series = Some(guard),
                Err(why) => return Ok(Finding::SeriesDoesNotApply(why)),
            }
            path.display().to_string()
        }
    };
    let prepared = Prepared { tree: located, series };
    let guard = run.wire(&prepared.tree, &step.qmp_tests)?;
    let started = Instant::now();
    let python = run
        .venv(tree)
        .context("making the python venv failed: the machine's fault, not the commit's")?;
    let built = run.build(tree, &python, &step.build);
    record.build_secs = started.elapsed().as_secs_f64();
    let built = match built {
        Ok(built) => built,
        Err(err) if is_build_failure(&err) => {
            eprintln!("{err:#}");
            return Ok(Finding::DoesNotBuild(build_cause(&format!("{err:#}"), tree)));
        }
        Err(err) => return Err(err),
    };
    let started = Instant::now();
    let outcome = run.suite(SuiteRun {
        prepared: &prepared,
        commit: Some(step.commit.clone()),
        built: &built,
        qmp_tests: &step.qmp_tests,
        qmp_python: None,
        program: step.build.program,
        opts: &SuiteCli {
            suite: step.flags.suite.clone(),
            junit: Some(step.junit.clone()),
            ..SuiteCli::default()
        },
    });
    record.test_secs = started.elapsed().as_secs_f64();
    if let Some(guard) = guard {
        guard.finish()?;
    }
    Ok(match outcome? {
        Outcome::Passed => Finding::Passed,
        Outcome::Failed => Finding::Failed,
        Outcome::Unsupported => Finding::Unsupported,
    })
}

/// Whether a build error is the commit's fault: configure or ninja ran and
/// failed. An I/O error or a program that would not start is the harness's,
/// and so is an interruption.
fn is_build_failure(err: &anyhow::Error) -> bool {
    !interrupt::interrupted()
        && !err.chain().any(|e| e.is::<std::io::Error>() || e.is::<xshell::Error>())
}

/// Resets the tree to the step's commit when dropped, dropping the series'
/// commits (and a half-done `git am`), so git can check out the next one.
struct SeriesGuard {
    tree: PathBuf,
    commit: String,
}

impl Drop for SeriesGuard {
    fn drop(&mut self) {
        let (tree, commit) = (&self.tree, &self.commit);
        let Ok(sh) = Shell::new() else { return };
        interrupt::cleanup(|| {
            let _ = super::abort_am(&sh, tree);
            let reset = cmd!(sh, "git -C {tree} reset --quiet --hard {commit}").quiet().spawn_run();
            if let Err(err) = reset {
                eprintln!("error: could not reset {} to {commit}: {err}", tree.display());
            }
        });
    }
}

/// The line of a failed configure or build that says why: the first error
/// (compiler or configure), with its path made relative to the tree.
fn build_cause(output: &str, tree: &Path) -> String {
    let line = output
        .lines()
        .skip(1)
        .find(|l| l.contains("error:") || l.starts_with("ERROR:"))
        .unwrap_or_else(|| first_line(output))
        .trim();
    // Sources are named relative to the build directory
    // (../../src/qemu/monitor/x.c), headers often by absolute path.
    let absolute = format!("{}/", tree.display());
    let relative = match tree.file_name().map(|n| format!("/{}/", n.to_string_lossy())) {
        Some(name) if line.starts_with("../") => line.find(&name).map(|i| &line[i + name.len()..]),
        _ => None,
    };
    line.strip_prefix(&absolute).or(relative).unwrap_or(line).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_without_monitor_add_names_series() {
        let hint = no_monitor_add_hint("0123456789ab", false);
        assert!(hint.starts_with("note: 0123456789ab has no monitor-add"), "{hint}");
        assert!(hint.contains("`--series patches/monitor-hotplug`"), "{hint}");
        assert!(hint.contains("--unsupported good"), "{hint}");
        let hint = no_monitor_add_hint("0123456789ab", true);
        assert!(hint.contains("The --series given applied here"), "{hint}");
    }

    #[test]
    fn every_finding_maps_to_an_exit_status_git_understands() {
        use Unsupported::*;
        let code = |f: Finding, u| f.exit_code(u);
        assert_eq!(code(Finding::Passed, Skip), 0);
        assert_eq!(code(Finding::Failed, Skip), 1);
        assert_eq!(code(Finding::Unsupported, Skip), 125);
        assert_eq!(code(Finding::Unsupported, Bad), 1);
        assert_eq!(code(Finding::Unsupported, Good), 0);
        assert_eq!(code(Finding::DoesNotBuild(String::new()), Skip), 125);
        assert_eq!(code(Finding::SeriesDoesNotApply(String::new()), Skip), 125);
        assert!(code(Finding::Harness(String::new()), Skip) >= 128);
        assert!(code(Finding::Interrupted, Skip) >= 128);
    }

    #[test]
    fn build_failures_are_told_from_harness_failures() {
        assert!(is_build_failure(&anyhow::anyhow!("building qemu-system-x86_64 failed")));
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "ninja");
        let err = anyhow::Error::new(io).context("starting ninja");
        assert!(!is_build_failure(&err));
    }

    #[test]
    fn build_cause_is_the_first_error_relative_to_the_tree() {
        let out = "building qemu-system-x86_64 failed:\nFAILED: x.o\ncc -c ../../src/qemu/a.c\n\
                   ../../src/qemu/monitor/a.c:104:46: error: expected ';'\n";
        assert_eq!(
            build_cause(out, Path::new("/t/src/qemu")),
            "monitor/a.c:104:46: error: expected ';'"
        );
        let configure = "configure failed in /b:\nchecking...\nERROR: glib-2.56 required\n";
        assert_eq!(build_cause(configure, Path::new("/q")), "ERROR: glib-2.56 required");
        assert_eq!(build_cause("no details\n", Path::new("/q")), "no details");
        let header = "building x failed:\n/t/qemu/include/q.h:4:9: error: expected ';'\n";
        assert_eq!(
            build_cause(header, Path::new("/t/qemu")),
            "include/q.h:4:9: error: expected ';'"
        );
    }
}
