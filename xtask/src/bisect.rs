//! `cargo xtask bisect`: finds the commit that broke a scenario, with
//! `git bisect run`.
//!
//! git drives the search; each step is this binary again (the hidden
//! `bisect-step` command), so git gets exactly the exit status it expects
//! (0 good, 1 bad, 125 skip, 128 abort) and never mistakes a harness
//! failure for a bad commit. Build directories are keyed by tree path and
//! options, not by commit, so all steps share one and every build after
//! the first is incremental.

mod step;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::interrupt::Controlled;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::flags::{self, StepFlags, Unsupported};
use crate::pipeline::Targets;
use crate::{build, deps, interrupt, lock, meson, paths, series, source, suite, vcs, Done};

pub use step::step_main;

/// The exit status that makes git abort the bisect: anything from 128 up.
const ABORT: u8 = 128;

/// Marks a tree as being bisected by the xtask, in its git directory:
/// a run that finds it and no bisect running (it holds the lock) knows a
/// killed one left the tree mid-bisect.
const MARKER: &str = "xtask-bisect";

/// What `git bisect run` passes to each step; paths that are not UTF-8
/// reach the steps unchanged.
fn step_args(tree: &Path, qmp_tests: &Path, log_dir: &Path, flags: &StepFlags) -> Vec<OsString> {
    let mut args = qmp_tests::cli::Argv(vec![OsString::from("bisect-step")]);
    args.path("qemu-src", Some(tree));
    args.path("qmp-tests", Some(qmp_tests));
    args.path("log-dir", Some(log_dir));
    args.0.extend(flags.to_args());
    args.0
}

impl flags::Bisect {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        // Checked against the tree before anything moves.
        let tree = source::locate(&self.qemu_src)?.path;
        let build = self.step.build.options(Targets::Tree(&tree))?;
        ensure!(
            vcs::is_repo(sh, &tree),
            "{} is not the top of a git repository; bisect needs the tree's history",
            tree.display()
        );
        let good = resolve(sh, &tree, &self.good, "--good")?;
        let bad = resolve(sh, &tree, &self.bad, "--bad")?;
        // Mistakes every step would make are caught before anything moves.
        build::configure_args(&tree, &build)?;
        if let Some(path) = &self.step.series {
            series::patch_files(path)?;
        }
        // The steps build in the cache under this lock, not their own.
        let _lock = lock::cache()?;
        restore_killed(sh, &tree)?;
        // A tree that bisecting would lose work in is refused.
        let dirty = vcs::status(sh, &tree)?;
        ensure!(
            dirty.is_empty(),
            "{} has uncommitted changes; commit or stash them first (nothing was touched):\n  {}",
            tree.display(),
            dirty.join("\n  ")
        );
        ensure!(
            !git_path(sh, &tree, "BISECT_START")?.exists(),
            "a bisect is already in progress in {}; end it with `git bisect reset` first",
            tree.display()
        );
        deps::ensure_host(sh)?;
        // Made once here, so no step pays for it (or for pip) as overhead.
        deps::ensure_python(sh, &tree)?;
        let qmp_tests = suite::binary(sh)?;
        let log_dir = new_log_dir()?;
        eprintln!("==> bisecting {} (log: {})", tree.display(), log_dir.display());
        let exe =
            std::env::current_exe().context("locating the xtask binary for the bisect steps")?;
        let mut git = std::process::Command::new("git");
        git.arg("-C").arg(&tree).args(["bisect", "run"]).arg(exe);
        git.args(step_args(&tree, &qmp_tests, &log_dir, &self.step))
            .env(step::BISECT_PID, std::process::id().to_string())
            .stdin(std::process::Stdio::null());
        bisect(sh, &tree, [&good, &bad], git, &log_dir)?;
        Ok(Done::Ok)
    }
}

/// Runs `git bisect run`, `git`, over `good..bad`, and reports what it
/// found.
fn bisect(
    sh: &Shell,
    tree: &Path,
    [good, bad]: [&str; 2],
    mut git: std::process::Command,
    log_dir: &Path,
) -> Result<()> {
    let session = Session::start(sh, tree, good, bad)?;
    // The signal thread passes a signal on to git and the steps, also when it
    // was sent to the xtask alone, and from the moment git starts: a
    // check-then-wait loop here would lose one that came in between.
    let status = interrupt::spawn(&mut git, "git bisect run")
        .and_then(|mut git| git.child.wait().context("waiting for git bisect run"));
    // git may be gone (Ctrl-C) while a step still cleans up the tree: wait
    // for it before the reset, and keep later steps out.
    let lock = step_lock(log_dir)?;
    // What git concluded is in the log's comment lines, which are meant for
    // people and stable across git versions.
    let git_log = interrupt::cleanup(|| {
        cmd!(sh, "git -C {tree} bisect log").quiet().spawn_read().unwrap_or_default()
    });
    let mut result = parse_result(&git_log);
    // The report is written even when the reset fails: it says what the
    // steps found, and the error below says what to do about the tree.
    let reset = interrupt::cleanup(|| session.finish());
    drop(lock);

    let steps = records(log_dir)?;
    if let BisectResult::Found(commit) = &mut result {
        let format = "--format=commit %H%n  subject: %s%n  author:  %an <%ae>%n  date:    %ad";
        let show = cmd!(sh, "git -C {tree} show --no-patch {format} {commit}").quiet();
        let described = show.spawn_read();
        *commit =
            described.with_context(|| format!("describing {commit} in {}", tree.display()))?;
    }
    let report = render(&result, &steps)?;
    print!("{report}");
    let log = log_dir.join("bisect.log");
    std::fs::write(&log, format!("{report}\ngit bisect log:\n{git_log}\n"))
        .with_context(|| format!("writing the bisect log {}", log.display()))?;
    eprintln!("bisect log: {}", log.display());
    reset?;
    interrupt::check()?;
    let status = status?;

    // What the bisect concluded: a first bad commit, or why there is none.
    ensure!(
        matches!(result, BisectResult::Found(_))
            || steps.is_empty()
            || steps.iter().any(|s| s.outcome != step::NO_MONITOR_ADD),
        "every step's QEMU had no monitor-add, so no commit could be judged; \
         bisect with the series applied on each commit: --series patches/monitor-hotplug \
         (or your own series)"
    );
    match result {
        BisectResult::Found(_) => Ok(()),
        BisectResult::Candidates(list) => anyhow::bail!(
            "only skipped commits are left: the first bad commit is one of {}",
            list.join(", ")
        ),
        BisectResult::None => {
            let why = steps
                .iter()
                .rev()
                .find(|s| s.verdict == "abort")
                .map(|s| format!(": step {} aborted it: {}", short(&s.commit), s.detail))
                .unwrap_or_default();
            anyhow::bail!("git bisect run did not finish ({status}){why}")
        }
    }
}

fn git_path(sh: &Shell, tree: &Path, name: &str) -> Result<PathBuf> {
    let path = cmd!(sh, "git -C {tree} rev-parse --git-path {name}")
        .quiet()
        .spawn_read()
        .with_context(|| format!("locating the git directory of {}", tree.display()))?;
    Ok(tree.join(path))
}

/// Ends the `git am` a step was cut off in, if any.
fn abort_am(sh: &Shell, tree: &Path) -> Result<()> {
    if git_path(sh, tree, "rebase-apply")?.exists() {
        cmd!(sh, "git -C {tree} am --abort").quiet().spawn_run()?;
    }
    Ok(())
}

/// Puts back what a killed bisect left: the wiring and series of its last
/// step, and git's bisect state, back to the branch it started on.
fn restore_killed(sh: &Shell, tree: &Path) -> Result<()> {
    let marker = git_path(sh, tree, MARKER)?;
    if !marker.exists() {
        return Ok(());
    }
    eprintln!("==> a killed cargo xtask bisect left {} mid-bisect; restoring it", tree.display());
    interrupt::cleanup(|| -> Result<()> {
        meson::unwire(tree)?;
        abort_am(sh, tree)?;
        if git_path(sh, tree, "BISECT_START")?.exists() {
            reset(tree)?;
        }
        Ok(())
    })
    .with_context(|| format!("restoring {} after a killed bisect", tree.display()))?;
    // The reset removed the marker if git was mid-bisect.
    unmark(sh, tree)
}

fn resolve(sh: &Shell, tree: &Path, rev: &str, flag: &str) -> Result<String> {
    let spec = format!("{rev}^{{commit}}");
    cmd!(sh, "git -C {tree} rev-parse --verify --quiet {spec}")
        .quiet()
        .spawn_read()
        .map_err(|_| anyhow::anyhow!("{flag} {rev}: no such commit in {}", tree.display()))
}

/// target/bisect/TIME, fresh for each bisect.
fn new_log_dir() -> Result<PathBuf> {
    let parent = paths::target_dir().join("bisect");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let stamp = crate::files::compact(SystemTime::now());
    let mut dir = parent.join(&stamp);
    for n in 2.. {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                dir = parent.join(format!("{stamp}-{n}"));
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    Ok(dir)
}

/// The branch HEAD is on, or the commit when it is detached.
fn position(sh: &Shell, tree: &Path) -> Result<String> {
    let branch = cmd!(sh, "git -C {tree} symbolic-ref --quiet --short HEAD").quiet().spawn_read();
    branch.or_else(|_| vcs::head(sh, tree))
}

/// A bisect in progress; dropping it puts the tree back where the user
/// had it, on success, error and Ctrl-C alike.
struct Session {
    tree: PathBuf,
    /// The branch (or detached commit) the user was on.
    origin: String,
    finished: bool,
}

impl Session {
    fn start(sh: &Shell, tree: &Path, good: &str, bad: &str) -> Result<Session> {
        let origin = position(sh, tree)?;
        // The guard exists before git starts, so a start that fails half
        // way is undone too.
        let session = Session { tree: tree.to_path_buf(), origin, finished: false };
        let marker = git_path(sh, tree, MARKER)?;
        std::fs::write(&marker, "")
            .with_context(|| format!("marking the bisect in {}", marker.display()))?;
        cmd!(sh, "git -C {tree} bisect start {bad} {good}")
            .quiet()
            .spawn_run()
            .with_context(|| format!("starting git bisect in {}", tree.display()))?;
        Ok(session)
    }

    /// Resets, and checks that the tree is where it was and clean.
    fn finish(mut self) -> Result<()> {
        self.finished = true;
        let (tree, origin) = (&self.tree, &self.origin);
        reset(tree)?;
        let sh = Shell::new()?;
        let now = position(&sh, tree)?;
        ensure!(
            &now == origin,
            "after git bisect reset, {} is on {now}, not on {origin} where the bisect started",
            tree.display()
        );
        let dirty = vcs::status(&sh, tree)?;
        ensure!(
            dirty.is_empty(),
            "after the bisect, {} has changes the xtask did not expect:\n  {}",
            tree.display(),
            dirty.join("\n  ")
        );
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Err(err) = reset(&self.tree) {
            let tree = self.tree.display();
            eprintln!(
                "error: could not end the bisect in {tree}: {err:#}\n  \
                 run `git -C {tree} bisect reset` to go back to {}",
                self.origin
            );
        }
    }
}

fn reset(tree: &Path) -> Result<()> {
    let sh = Shell::new()?;
    interrupt::cleanup(|| {
        cmd!(sh, "git -C {tree} bisect reset").quiet().ignore_stdout().spawn_run()
    })
    .with_context(|| format!("running git bisect reset in {}", tree.display()))?;
    unmark(&sh, tree)
}

/// Removes the [`MARKER`], if it is still there.
fn unmark(sh: &Shell, tree: &Path) -> Result<()> {
    let marker = git_path(sh, tree, MARKER)?;
    match std::fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", marker.display()))
        }
        _ => Ok(()),
    }
}

/// Held by a step for its whole life, and by the bisect after git is gone:
/// the tree is never touched by both at once.
fn step_lock(log_dir: &Path) -> Result<File> {
    let path = log_dir.join("step.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

enum BisectResult {
    /// The first bad commit: its hash, then its description.
    Found(String),
    /// Skipped commits hide which one is first.
    Candidates(Vec<String>),
    None,
}

fn parse_result(log: &str) -> BisectResult {
    // The hashes of the lines "PREFIX[HASH] subject".
    let hashes = |prefix: &str| -> Vec<String> {
        let hash = |l: &str| {
            Some(l.strip_prefix(prefix)?.strip_prefix('[')?.split_once(']')?.0.to_owned())
        };
        log.lines().filter_map(hash).collect()
    };
    match (
        hashes("# first bad commit: ").into_iter().next(),
        hashes("# possible first bad commit: "),
    ) {
        (Some(commit), _) => BisectResult::Found(commit),
        (None, list) if list.is_empty() => BisectResult::None,
        (None, list) => BisectResult::Candidates(list),
    }
}

/// A commit's hash, shortened as the report shows it.
fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// The first non-blank line, trimmed: a cause that fits in a table cell.
fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

/// What each step did, one JSON line per step in the log directory; the
/// report is made from those lines and the steps' JUnit files.
const RECORDS: &str = "steps.jsonl";

/// Seconds a step may spend outside configure, build and suite.
const OVERHEAD_BUDGET: f64 = 2.0;

/// What one step did.
#[derive(Default, Serialize, Deserialize)]
struct Record {
    commit: String,
    subject: String,
    build_secs: f64,
    test_secs: f64,
    /// Everything but configure, build and suite.
    overhead_secs: f64,
    outcome: String,
    verdict: String,
    detail: String,
    /// The step's JUnit report, when the suite ran.
    #[serde(with = "crate::path_serde::option")]
    junit: Option<PathBuf>,
}

impl Record {
    /// Steps run one after another, so appending a line each keeps them
    /// in order.
    fn append(&self, log_dir: &Path) -> Result<()> {
        let path = log_dir.join(RECORDS);
        let line = serde_json::to_string(self)
            .with_context(|| format!("encoding the record of step {}", short(&self.commit)))?;
        let file = std::fs::File::options().create(true).append(true).open(&path);
        file.and_then(|mut file| writeln!(file, "{line}"))
            .with_context(|| format!("appending to {}", path.display()))
    }
}

/// The records of a bisect's steps, in the order they ran.
fn records(log_dir: &Path) -> Result<Vec<Record>> {
    let path = log_dir.join(RECORDS);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        read => read.with_context(|| format!("reading {}", path.display()))?,
    };
    serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing a step record in {}", path.display()))
}

/// The first failing (or erroring) scenario of a JUnit report and the
/// first line of its message; `(+N)` counts the others.
fn first_failure(junit: &Path) -> Result<Option<(String, String)>> {
    let cases = crate::suite::read_report(junit)?.into_iter();
    let mut failing = cases.filter_map(|c| Some((c.name, first_line(&c.failure?).to_owned())));
    let Some((name, cause)) = failing.next() else {
        return Ok(None);
    };
    let more = failing.count();
    let name = if more > 0 { format!("{name} (+{more})") } else { name };
    Ok(Some((name, cause)))
}

/// The first bad commit and a table of the steps, with the failing
/// scenario and its cause from each step's JUnit.
fn render(result: &BisectResult, steps: &[Record]) -> Result<String> {
    let mut out = match result {
        BisectResult::Found(desc) => format!("first bad {desc}\n\n"),
        BisectResult::Candidates(list) => format!(
            "no single first bad commit (skipped commits in the way); one of:\n  {}\n\n",
            list.join("\n  ")
        ),
        BisectResult::None => "the bisect did not finish\n\n".to_owned(),
    };
    let header = ["commit", "build s", "test s", "xtask s", "outcome", "failing scenario", "cause"];
    let mut rows = vec![header.map(str::to_owned)];
    for s in steps {
        let failure = s.junit.as_deref().map(first_failure).transpose()?.flatten();
        let (scenario, cause) = failure.unwrap_or_else(|| (String::new(), s.detail.clone()));
        rows.push([
            short(&s.commit).to_owned(),
            format!("{:.1}", s.build_secs),
            format!("{:.2}", s.test_secs),
            format!("{:.2}", s.overhead_secs),
            format!("{} ({})", s.verdict, s.outcome),
            scenario,
            cause,
        ]);
    }
    let widths: [usize; 7] =
        std::array::from_fn(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0));
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers right-aligned, text left; the last column unpadded.
            let _ = match i {
                1..=3 => write!(line, "{cell:>w$}  "),
                6 => write!(line, "{cell}"),
                _ => write!(line, "{cell:<w$}  "),
            };
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for s in steps.iter().filter(|s| s.overhead_secs > OVERHEAD_BUDGET) {
        let _ = writeln!(
            out,
            "note: step {} spent {:.1}s in the xtask itself, over the {OVERHEAD_BUDGET}s budget",
            short(&s.commit),
            s.overhead_secs
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_from_the_bisect_log() {
        let found = "git bisect start 'b' 'g'\n# first bad commit: [abc123] monitor: x\n";
        assert!(matches!(parse_result(found), BisectResult::Found(c) if c == "abc123"));
        let skipped = "# only skipped commits left to test\n\
                       # possible first bad commit: [aaa] x\n\
                       # possible first bad commit: [bbb] y\n";
        assert!(
            matches!(parse_result(skipped), BisectResult::Candidates(c) if c == ["aaa", "bbb"])
        );
        assert!(matches!(parse_result("# bad: [x] y\n"), BisectResult::None));
    }

    #[test]
    fn step_arguments_parse_back_to_the_same_options() {
        use clap::Parser;
        let argv =
            "bisect --qemu-src=/t --good=a --bad=b --scenario=test_self_removal --route=qom \
                    --target=aarch64 --configure-arg --enable-debug --sanitize=address \
                    --unsupported=bad --series=/s";
        let flags = crate::flags::parse(&argv.split_whitespace().collect::<Vec<_>>());
        let Ok(crate::flags::Xtask { command: crate::flags::Command::Bisect(bisect) }) = flags
        else {
            panic!("bisect's flags do not parse")
        };
        // Paths that are not UTF-8 reach the step byte for byte.
        use std::os::unix::ffi::OsStrExt;
        let odd = |name: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(name));
        let (tree, bin, logs) = (odd(b"/q/caf\xe9"), odd(b"/b\xff"), odd(b"/l\xfe"));
        let argv = step_args(&tree, &bin, &logs, &bisect.step);
        assert_eq!(argv[0], "bisect-step");
        let back = crate::flags::BisectStep::try_parse_from(&argv).unwrap();
        assert_eq!(back.qemu_src, tree);
        assert_eq!(back.qmp_tests, bin);
        assert_eq!(back.log_dir, logs);
        let build = back.step.build.options(Targets::AtBuild).unwrap();
        let step = back.step;
        assert_eq!(step.suite, bisect.step.suite);
        assert_eq!(step.suite.scenarios, ["test_self_removal"]);
        assert_eq!(build.target, "aarch64");
        assert_eq!(build.configure_args, ["--enable-debug"]);
        assert_eq!(build.sanitize, ["address"]);
        assert_eq!(step.unsupported, Unsupported::Bad);
        assert_eq!(step.series, Some(PathBuf::from("/s")));
    }

    #[test]
    fn records_read_back_in_order_and_the_report_shows_them() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("step-bbbbbbbbbbbb.xml");
        std::fs::write(
            &junit,
            r#"<testsuites><testsuite name="monitor_hotplug" tests="2">
<testcase classname="monitor_hotplug" name="test_hotplug_cycle"/>
<testcase classname="monitor_hotplug" name="test_self_removal">
<failure message="no reply before end-of-file&#10;details">x</failure></testcase>
</testsuite></testsuites>"#,
        )
        .unwrap();
        let record = |commit: &str, verdict: &str, outcome: &str, junit: Option<PathBuf>| Record {
            commit: commit.repeat(40),
            subject: "s".into(),
            build_secs: 1.0,
            test_secs: 2.0,
            overhead_secs: 0.5,
            outcome: outcome.into(),
            verdict: verdict.into(),
            detail: if junit.is_none() { "x.c:1: error: y".into() } else { String::new() },
            junit,
        };
        record("a", "skip", "does not build", None).append(dir.path()).unwrap();
        record("b", "bad", "failed", Some(junit)).append(dir.path()).unwrap();
        let steps = records(dir.path()).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(short(&steps[0].commit), "aaaaaaaaaaaa");
        let text = render(&BisectResult::Found("commit bbbb".into()), &steps).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "first bad commit bbbb");
        assert!(lines[3].starts_with("aaaaaaaaaaaa"), "{text}");
        assert!(
            lines[3].ends_with("skip (does not build)                     x.c:1: error: y"),
            "{text}"
        );
        assert!(
            lines[4]
                .ends_with("bad (failed)           test_self_removal  no reply before end-of-file"),
            "{text}"
        );
        assert!(!text.contains("note:"), "{text}");
    }
}
