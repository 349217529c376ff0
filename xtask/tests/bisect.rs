//! `cargo xtask bisect` on a real QEMU history: the pinned release, the
//! project's series as commits, then the commits in data/bisect/, where
//! one breaks self-removal and one does not compile.
//!
//! These build QEMU (the first build of a fresh clone is a cold one), so
//! they are ignored by default; `cargo xtask ci` runs them with the pinned
//! tree in XTASK_TEST_QEMU_TREE and the series in XTASK_TEST_SERIES.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The data patches, by subject.
const NO_BUILD: &str = "monitor: Hold monitor_lock through query-monitors";
const CULPRIT: &str = "monitor: Refuse monitor-remove on the monitor it arrives on";

const BRANCH: &str = "bisect-test";

/// One QEMU build at a time: the tests would otherwise build in parallel.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn required(name: &str, what: &str) -> PathBuf {
    match std::env::var_os(name).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => panic!("{name} is not set: point it at {what} (`cargo xtask ci` does)"),
    }
}

/// The target directory, by the rule the xtask itself follows.
fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .envs([
            ("GIT_COMMITTER_NAME", "xtask tests"),
            ("GIT_COMMITTER_EMAIL", "tests@xtask.invalid"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// `git format-patch` files of a directory, in order, cover letter left out.
fn patches(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".patch") && !name.contains("cover-letter")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .patch files in {}", dir.display());
    files
}

fn am(dir: &Path, files: &[PathBuf]) {
    let mut args = vec!["am", "--quiet", "--3way"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    git(dir, &args);
}

/// A fresh clone of the pinned tree under the target directory, at a
/// fixed path per test, so that the build directory (keyed by tree path)
/// and ccache serve reruns.
fn clone_pinned(name: &str) -> PathBuf {
    let source = required(
        "XTASK_TEST_QEMU_TREE",
        "the fetched pinned QEMU tree (a git repository whose `base` tag is the release)",
    );
    let tree = target_dir().join("bisect-tests").join(name).join("qemu");
    // A clone left by an earlier run is reset rather than made again: the
    // files that end up the same keep their times, so the bisect's first
    // build recompiles what changed, not every object of QEMU.
    if tree.join(".git").exists() && reset(&tree) {
        return tree;
    }
    if tree.exists() {
        std::fs::remove_dir_all(&tree).unwrap();
    }
    std::fs::create_dir_all(tree.parent().unwrap()).unwrap();
    let out = Command::new("git")
        .args(["clone", "--quiet", "--shared", "--no-checkout"])
        .arg(&source)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloning {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    tree
}

/// Back to `base`, clean, with no bisect or `git am` left from a run that
/// was cut short; false if git could not, and the clone is made anew.
fn reset(tree: &Path) -> bool {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(tree)
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    // Either may have nothing to undo, and fail for that alone.
    git(&["bisect", "reset", "--quiet"]);
    git(&["am", "--abort"]);
    git(&["checkout", "--quiet", "--force", "--detach", "base"])
        && git(&["clean", "--quiet", "-fdx"])
}

/// A clone of the pinned tree with the whole history to bisect.
struct History {
    tree: PathBuf,
    /// The series' last commit: good.
    good: String,
    /// The last data commit: bad.
    bad: String,
}

impl History {
    fn new(name: &str) -> History {
        let series = required(
            "XTASK_TEST_SERIES",
            "a directory of the project's QEMU series as format-patch files",
        );
        let tree = clone_pinned(name);
        git(&tree, &["checkout", "--quiet", "-B", BRANCH, "base"]);
        am(&tree, &patches(&series));
        let good = git(&tree, &["rev-parse", "HEAD"]);
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bisect");
        am(&tree, &patches(&data));
        let bad = git(&tree, &["rev-parse", "HEAD"]);
        History { tree, good, bad }
    }

    fn commit(&self, subject: &str) -> String {
        let range = format!("{}..{}", self.good, self.bad);
        let log = git(&self.tree, &["log", "--format=%H %s", &range]);
        log.lines()
            .find_map(|l| l.strip_suffix(subject).map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| panic!("no commit `{subject}` in {range}:\n{log}"))
    }

    fn bisect(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.arg("bisect")
            .arg("--qemu-src")
            .arg(&self.tree)
            .args(["--good", &self.good, "--bad", &self.bad])
            .args(extra)
            .stdin(Stdio::null());
        cmd
    }

    /// Back on the branch and commit it started from, clean, no bisect.
    fn assert_restored(&self) {
        let tree = &self.tree;
        assert_eq!(git(tree, &["symbolic-ref", "--short", "HEAD"]), BRANCH);
        assert_eq!(git(tree, &["rev-parse", "HEAD"]), self.bad);
        assert_eq!(git(tree, &["status", "--porcelain", "--untracked-files=all"]), "");
        assert_eq!(git(tree, &["for-each-ref", "refs/bisect"]), "");
        let start = git(tree, &["rev-parse", "--git-path", "BISECT_START"]);
        assert!(!tree.join(start).exists(), "a bisect is still in progress");
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report row of a commit.
fn row<'a>(stdout: &'a str, commit: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{} ", &commit[..12])))
        .unwrap_or_else(|| panic!("no step for {commit} in the report:\n{stdout}"))
}

#[test]
#[ignore = "needs a QEMU tree: run by cargo xtask ci"]
fn names_the_commit_that_breaks_self_removal() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let history = History::new("culprit");
    let out = history.bisect(&["--scenario", "test_self_removal"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "bisect failed:\n{stdout}\n{stderr}");

    let culprit = history.commit(CULPRIT);
    assert!(
        stdout.contains(&format!("first bad commit {culprit}\n  subject: {CULPRIT}\n")),
        "the report names another commit:\n{stdout}"
    );
    let broken = row(&stdout, &history.commit(NO_BUILD));
    assert!(broken.contains("skip (does not build)"), "{broken}");
    assert!(broken.contains("error:"), "no compiler error as cause: {broken}");
    let bad = row(&stdout, &culprit);
    assert!(bad.contains("bad (failed)"), "{bad}");
    assert!(bad.contains("test_self_removal"), "{bad}");
    assert!(!stdout.contains("abort"), "{stdout}");

    // The log and each tested step's JUnit are written side by side.
    let log = stderr
        .lines()
        .find_map(|l| l.strip_prefix("bisect log: "))
        .unwrap_or_else(|| panic!("no bisect log named:\n{stderr}"));
    let log = Path::new(log);
    let written = std::fs::read_to_string(log).unwrap();
    assert!(written.contains(&culprit), "{written}");
    let junit = log.with_file_name(format!("step-{}.xml", &culprit[..12]));
    let mut report = String::new();
    std::fs::File::open(&junit)
        .unwrap_or_else(|e| panic!("{}: {e}", junit.display()))
        .read_to_string(&mut report)
        .unwrap();
    assert!(report.contains("test_self_removal"), "{report}");

    history.assert_restored();
}

#[test]
#[ignore = "needs a QEMU tree: run by cargo xtask ci"]
fn ctrl_c_resets_the_tree() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let history = History::new("interrupt");
    let mut cmd = history.bisect(&[]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, signalled as a whole: what Ctrl-C in a
    // terminal does.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id() as libc::pid_t;
    let stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        BufReader::new(stdout).read_to_string(&mut s).unwrap();
        s
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "the bisect ended before a step started:\n{seen}");
        seen.push_str(&line);
        // Printed by the first step once it owns the tree.
        if line.starts_with("==> bisect step ") {
            break;
        }
    }
    let group = rustix::process::Pid::from_raw(pgid).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    stderr.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    let stdout = out_reader.join().unwrap();

    assert_eq!(status.code(), Some(2), "{stdout}\n{seen}");
    assert!(seen.contains("error: interrupted"), "{seen}");
    assert!(!stdout.contains("first bad commit"), "{stdout}");
    history.assert_restored();
}

#[test]
#[ignore = "needs a QEMU tree: run by cargo xtask ci"]
fn a_history_without_monitor_add_says_so_and_names_series() {
    // The stock release and three commits of its own: no commit has
    // monitor-add, as in upstream QEMU, so every step is skipped.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = clone_pinned("upstream");
    git(&tree, &["checkout", "--quiet", "-B", BRANCH, "base"]);
    for n in 1..=3 {
        std::fs::write(tree.join("NOTES"), format!("note {n}\n")).unwrap();
        git(&tree, &["add", "NOTES"]);
        git(
            &tree,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t.invalid",
                "commit",
                "--quiet",
                "-m",
                &format!("notes {n}"),
            ],
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bisect")
        .arg("--qemu-src")
        .arg(&tree)
        .args(["--good", "base", "--bad", "HEAD"])
        .args(["--scenario", "test_hotplug_cycle"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    // Two steps ran (the two commits between), each with a start and an
    // end line; the note came once.
    assert_eq!(stderr.matches("==> bisect step ").count(), 4, "{stderr}");
    assert_eq!(
        stderr.matches("has no monitor-add, so this step is skipped").count(),
        1,
        "said once, on the first such step:\n{stderr}"
    );
    assert!(stderr.contains("`--series patches/monitor-hotplug`"), "{stderr}");
    assert!(stderr.contains("error: every step's QEMU had no monitor-add"), "{stderr}");
}
