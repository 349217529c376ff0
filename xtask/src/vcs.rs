//! The git operations the pipeline needs on a QEMU tree.

use std::path::Path;

use crate::interrupt::Controlled;
use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// The identity of commits made in trees the xtask owns. Fixed, so that it
/// works where the user has no git identity, and so that the base commit of
/// a fetched release is the same on every machine.
const IDENTITY: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "qemu-hotplug xtask"),
    ("GIT_AUTHOR_EMAIL", "xtask@qemu-hotplug.invalid"),
    ("GIT_COMMITTER_NAME", "qemu-hotplug xtask"),
    ("GIT_COMMITTER_EMAIL", "xtask@qemu-hotplug.invalid"),
    ("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z"),
    ("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z"),
];

/// The tag on the pristine release commit of a fetched tree.
pub const BASE: &str = "base";

pub fn identity() -> impl Iterator<Item = (&'static str, &'static str)> {
    IDENTITY.into_iter()
}

/// Makes `dir` a repository whose single commit is its current content.
pub fn init_base(sh: &Shell, dir: &Path, message: &str) -> Result<()> {
    let _cd = sh.push_dir(dir);
    let run = || -> Result<()> {
        cmd!(sh, "git init --quiet --initial-branch=master").quiet().spawn_run()?;
        // The release's ten thousand files become as many loose objects,
        // and the commit would start git's automatic gc behind our back,
        // packing them all beside the series and the build: a minute of
        // CPU, for disk space a cache does not need.
        for (key, value) in [("gc.auto", "0"), ("maintenance.auto", "false")] {
            cmd!(sh, "git config {key} {value}").quiet().spawn_run()?;
        }
        // -f: the release's own .gitignore must not hide released files.
        cmd!(sh, "git add --all --force").quiet().spawn_run()?;
        cmd!(sh, "git -c commit.gpgsign=false commit --quiet --no-verify -m {message}")
            .envs(identity())
            .quiet()
            .spawn_run()?;
        cmd!(sh, "git tag {BASE}").quiet().spawn_run()?;
        Ok(())
    };
    run().with_context(|| format!("making {} a git repository", dir.display()))
}

pub fn is_repo(sh: &Shell, dir: &Path) -> bool {
    cmd!(sh, "git -C {dir} rev-parse --is-inside-work-tree")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .spawn_run()
        .is_ok()
        && cmd!(sh, "git -C {dir} rev-parse --show-toplevel")
            .quiet()
            .spawn_read()
            .is_ok_and(|top| Path::new(top.trim()) == dir)
}

pub fn head(sh: &Shell, dir: &Path) -> Result<String> {
    cmd!(sh, "git -C {dir} rev-parse HEAD")
        .quiet()
        .spawn_read()
        .with_context(|| format!("reading HEAD of {}", dir.display()))
}

/// The release commit the [`BASE`] tag names.
pub fn base(sh: &Shell, dir: &Path) -> Result<String> {
    let rev = format!("{BASE}^{{commit}}");
    cmd!(sh, "git -C {dir} rev-parse {rev}")
        .quiet()
        .spawn_read()
        .with_context(|| format!("finding the base commit of {}", dir.display()))
}

/// `git status --porcelain` lines, untracked files included.
pub fn status(sh: &Shell, dir: &Path) -> Result<Vec<String>> {
    let out = cmd!(sh, "git -C {dir} status --porcelain --untracked-files=all")
        .quiet()
        .spawn_read()
        .with_context(|| format!("reading git status of {}", dir.display()))?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// A one-line description of the checked-out commit, for reports.
pub fn describe(sh: &Shell, dir: &Path) -> Option<String> {
    if !is_repo(sh, dir) {
        return None;
    }
    let commit = cmd!(sh, "git -C {dir} log -1 --format=%H%x20%s").quiet().spawn_read().ok()?;
    let dirty = status(sh, dir).map(|s| !s.is_empty()).unwrap_or(false);
    Some(if dirty { format!("{commit} (with uncommitted changes)") } else { commit })
}

/// A commit in `clone` (a `--shared` clone of `dir` that has `head`) of
/// `dir`'s working tree as `git add --all` sees it: tracked changes, staged
/// or not, and untracked files that are not ignored. `dir` is left as it
/// was: the index is a temporary one in the clone, and the new objects go
/// into the clone's object store. The commit has the xtask's fixed
/// identity and date, so the same changes give the same commit.
pub fn snapshot(sh: &Shell, dir: &Path, clone: &Path, head: &str) -> Result<String> {
    let objects = cmd!(sh, "git -C {dir} rev-parse --path-format=absolute --git-path objects")
        .quiet()
        .spawn_read()
        .with_context(|| format!("locating the object store of {}", dir.display()))?;
    let index = clone.join(".git/xtask-snapshot-index");
    let _ = std::fs::remove_file(&index);
    let in_dir = |args: &[&str]| {
        cmd!(sh, "git -C {dir} {args...}")
            .env("GIT_INDEX_FILE", &index)
            .env("GIT_OBJECT_DIRECTORY", clone.join(".git/objects"))
            .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects)
            .quiet()
    };
    let tree = (|| -> Result<String> {
        in_dir(&["read-tree", head]).spawn_run()?;
        in_dir(&["add", "--all"]).ignore_stdout().spawn_run()?;
        in_dir(&["write-tree"]).spawn_read()
    })()
    .with_context(|| {
        format!("recording the uncommitted changes of {} in {}", dir.display(), clone.display())
    });
    let _ = std::fs::remove_file(&index);
    let tree = tree?;
    let message = format!("Uncommitted changes of {}", dir.display());
    cmd!(sh, "git -C {clone} commit-tree {tree} -p {head} -m {message}")
        .envs(identity())
        .quiet()
        .spawn_read()
        .with_context(|| format!("committing the uncommitted changes of {}", dir.display()))
}
