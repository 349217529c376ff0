//! Applying a patch series with `git am` on a branch of its own.
//!
//! The branch is named after the series' content, so running again with
//! the same series checks out what is already there: no file is rewritten
//! and the build stays a no-op.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::interrupt::{self, Controlled};
use crate::{paths, source::Tree, vcs};

/// The project's own series, applied to the pinned release by default.
pub fn default_series() -> PathBuf {
    paths::project_root().join("patches/monitor-hotplug")
}

/// The patch files of a series: a directory of `git format-patch` output
/// (cover letter left out: it carries no change) or a single mbox. Each
/// is checked to hold a patch, so that a wrong file is refused before any
/// work rather than by `git am` after the fetch.
pub fn patch_files(series: &Path) -> Result<Vec<PathBuf>> {
    let files = files_of(series)?;
    for file in &files {
        let bytes =
            std::fs::read(file).with_context(|| format!("reading the patch {}", file.display()))?;
        if !is_patch(&bytes) {
            bail!(
                "series {}: {} is not a patch (no `diff --git` or `---`/`+++` lines); \
                 give a directory of `git format-patch` output or an mbox",
                series.display(),
                file.display()
            );
        }
    }
    Ok(files)
}

/// Whether `bytes` hold a diff git am can apply: a git diff header, or a
/// unified diff's `---` line followed by its `+++` line.
fn is_patch(bytes: &[u8]) -> bool {
    let mut previous: &[u8] = b"";
    for line in bytes.split(|&b| b == b'\n') {
        if line.starts_with(b"diff --git ")
            || (previous.starts_with(b"--- ") && line.starts_with(b"+++ "))
        {
            return true;
        }
        previous = line;
    }
    false
}

fn files_of(series: &Path) -> Result<Vec<PathBuf>> {
    if series.is_file() {
        return Ok(vec![series.to_path_buf()]);
    }
    if !series.is_dir() {
        bail!("series {}: no such file or directory", series.display());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(series)
        .with_context(|| format!("listing the series directory {}", series.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            (name.ends_with(".patch") || name.ends_with(".mbx") || name.ends_with(".eml"))
                && !name.contains("cover-letter")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "series {} holds no .patch files; give a directory of `git format-patch` output or an mbox",
            series.display()
        );
    }
    Ok(files)
}

/// Keyed by bytes: a patch in Latin-1 is as good to `git am` as one in
/// UTF-8.
fn series_key(files: &[PathBuf], base: &str) -> Result<String> {
    let mut texts = vec![base.as_bytes().to_vec()];
    for f in files {
        texts.push(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?);
    }
    let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    Ok(paths::key(&refs))
}

/// Checks out `base` in a tree the xtask owns (no series).
pub fn checkout_base(sh: &Shell, tree: &Tree) -> Result<()> {
    let dir = &tree.path;
    if vcs::head(sh, dir)? != vcs::base(sh, dir)? {
        let base = vcs::BASE;
        cmd!(sh, "git -C {dir} checkout --quiet --detach {base}")
            .quiet()
            .spawn_run()
            .with_context(|| format!("checking out the base release in {}", dir.display()))?;
    }
    Ok(())
}

/// Applies `series` on a fresh branch from `base` of a tree the xtask
/// owns, in a worktree of its own beside the tree: the base tree and every
/// series keep their files (and modification times), so each build
/// directory stays incremental. Returns the worktree, its branch and the
/// patch count.
pub fn apply(sh: &Shell, tree: &Tree, series: &Path) -> Result<(Tree, String, usize)> {
    let files = patch_files(series)?;
    let dir = &tree.path;
    let base = vcs::base(sh, dir)?;
    let branch = format!("series-{}", series_key(&files, &base)?);
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let wt = dir.with_file_name(format!("{name}-{branch}"));
    let worktree = Tree {
        path: wt.clone(),
        located: false,
        description: format!("{} with {}", tree.description, series.display()),
    };
    if wt.join(".git").exists() {
        let (want, have) = (patch_ids_of_files(sh, &files)?, applied_patch_ids(sh, &wt)?);
        if want == have {
            return Ok((worktree, branch, files.len()));
        }
        eprintln!(
            "    note: {} holds {} commits where the series has {} patches \
             (a git am cut off?); applying the series again",
            wt.display(),
            have.len(),
            want.len()
        );
        let _ = cmd!(sh, "git -C {dir} worktree remove --force {wt}")
            .quiet()
            .ignore_stderr()
            .spawn_run();
    }
    // Leftovers of an interrupted apply: a directory git no longer knows,
    // or a branch without its worktree.
    let _ = std::fs::remove_dir_all(&wt);
    cmd!(sh, "git -C {dir} worktree prune").quiet().spawn_run()?;
    let _ = cmd!(sh, "git -C {dir} branch --quiet -D {branch}").quiet().ignore_stderr().spawn_run();
    cmd!(sh, "git -C {dir} worktree add --quiet -b {branch} {wt} {base}")
        .quiet()
        .spawn_run()
        .with_context(|| format!("creating the worktree {} for the series", wt.display()))?;
    let applied = am(sh, &wt, &files, series);
    if let Ok(Ok(())) = applied {
        return Ok((worktree, branch, files.len()));
    }
    // Leave nothing of the attempt behind before reporting, also after a
    // Ctrl-C.
    interrupt::cleanup(|| {
        let _ = cmd!(sh, "git -C {dir} worktree remove --force {wt}").quiet().spawn_run();
        let _ = cmd!(sh, "git -C {dir} branch --quiet -D {branch}").quiet().spawn_run();
    });
    match applied {
        Ok(Err(why)) => bail!("{why}"),
        Err(err) => Err(err),
        Ok(Ok(())) => unreachable!("returned above"),
    }
}

/// The one way a series is applied: by `test` in its worktree and by each
/// bisect step in place, so that a series applies under both or neither.
/// `git am -3`: a patch whose context moved falls back to a three-way
/// merge where the repository has the blobs the patch names (its `index`
/// lines), as a developer rebasing the series would. The patches keep
/// their authors; the committer is the xtask's fixed one. A failure is
/// aborted (`git am --abort`) and returned as the message naming the
/// patch and the file; the outer error is the harness's.
pub fn am(
    sh: &Shell,
    dir: &Path,
    files: &[PathBuf],
    series: &Path,
) -> Result<std::result::Result<(), String>> {
    let am = cmd!(sh, "git -C {dir} -c commit.gpgsign=false am -3 {files...}")
        .envs(vcs::identity().filter(|(k, _)| k.starts_with("GIT_COMMITTER")));
    let out = interrupt::output(am.into(), "git am")?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    interrupt::cleanup(|| {
        let _ = cmd!(sh, "git -C {dir} am --abort").quiet().ignore_stderr().spawn_run();
    });
    // git am stopped by a Ctrl-C is no fault of the series.
    interrupt::check().with_context(|| {
        format!("applying the series {} in {}", series.display(), dir.display())
    })?;
    Ok(Err(am_failure(series, &log)))
}

/// `git patch-id --stable` of a patch stream: one id per patch, in order.
fn patch_ids(sh: &Shell, stream: Vec<u8>, what: &str) -> Result<Vec<String>> {
    let out = cmd!(sh, "git patch-id --stable")
        .quiet()
        .spawn_read_with(stream)
        .with_context(|| format!("computing the patch ids of {what}"))?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next().map(str::to_owned)).collect())
}

fn patch_ids_of_files(sh: &Shell, files: &[PathBuf]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        ids.extend(patch_ids(sh, bytes, &f.display().to_string())?);
    }
    Ok(ids)
}

/// The patch ids of the commits a worktree has on top of `base`, oldest
/// first: the same as the series' own when every patch was applied.
fn applied_patch_ids(sh: &Shell, wt: &Path) -> Result<Vec<String>> {
    let range = format!("{}..HEAD", vcs::BASE);
    let log = cmd!(sh, "git -C {wt} log --reverse --no-color --no-ext-diff -p {range}")
        .quiet()
        .spawn_output()
        .with_context(|| format!("reading the commits of {}", wt.display()))?;
    if !log.status.success() {
        bail!(
            "reading the commits of {} with git log failed ({}): {}",
            wt.display(),
            log.status,
            String::from_utf8_lossy(&log.stderr).trim_end()
        );
    }
    patch_ids(sh, log.stdout, &wt.display().to_string())
}

/// Names the patch and the file that did not apply, from git am's output.
pub fn am_failure(series: &Path, log: &str) -> String {
    let patch =
        log.lines().find_map(|l| l.strip_prefix("Patch failed at ")).unwrap_or("an unknown patch");
    // A three-way merge's conflict names the file better than the failed
    // hunk before it.
    let conflict =
        log.lines().find_map(|l| l.strip_prefix("CONFLICT (content): Merge conflict in "));
    let file = conflict
        .or_else(|| {
            log.lines().find_map(|l| {
                l.strip_prefix("error: patch failed: ")
                    .or_else(|| {
                        l.strip_prefix("error: ")
                            .and_then(|r| r.strip_suffix(": does not exist in index"))
                    })
                    .or_else(|| {
                        l.strip_prefix("error: ")
                            .and_then(|r| r.strip_suffix(": patch does not apply"))
                    })
                    .or_else(|| {
                        l.strip_prefix("error: sha1 information is lacking or useless (")
                            .and_then(|r| r.strip_suffix(")."))
                    })
            })
        })
        .unwrap_or("unknown file");
    format!(
        "series {} does not apply: patch {patch} fails on {file}; the tree was restored (git am --abort)\n{}",
        series.display(),
        log.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_patch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes.patch");
        std::fs::write(&notes, "just some notes\n--- not a diff\n").unwrap();
        let err = format!("{:#}", patch_files(&notes).unwrap_err());
        assert!(err.contains("notes.patch is not a patch"), "{err}");
        assert!(err.contains("give a directory of `git format-patch`"), "{err}");
        let unified = dir.path().join("0001-x.patch");
        std::fs::write(&unified, "Subject: x\n\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n").unwrap();
        let err = patch_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("notes.patch"), "{err}");
        std::fs::remove_file(&notes).unwrap();
        assert_eq!(patch_files(dir.path()).unwrap(), [unified]);
    }

    #[test]
    fn failure_names_patch_and_file() {
        let log = "Applying: monitor: add x\nerror: patch failed: monitor/qmp.c:42\n\
                   error: monitor/qmp.c: patch does not apply\nPatch failed at 0002 monitor: add x\n";
        let msg = am_failure(Path::new("s"), log);
        assert!(
            msg.starts_with(
                "series s does not apply: patch 0002 monitor: add x fails on monitor/qmp.c:42;"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_three_way_conflict_names_the_file() {
        let log = "Applying: monitor: add x\nerror: patch failed: monitor/qmp.c:42\n\
                   Falling back to patching base and 3-way merge...\n\
                   CONFLICT (content): Merge conflict in monitor/hmp.c\n\
                   Patch failed at 0002 monitor: add x\n";
        let msg = am_failure(Path::new("s"), log);
        assert!(
            msg.starts_with(
                "series s does not apply: patch 0002 monitor: add x fails on monitor/hmp.c;"
            ),
            "{msg}"
        );
    }
}
