//! Wiring `monitor_hotplug` into QEMU's functional-test meson list.
//!
//! What wiring changed is recorded outside the tree (original bytes and
//! modification time of every file), so unwiring restores the files byte
//! for byte and a wired file the user has since edited is never clobbered.

use crate::paths;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::files::write_atomic;
use crate::wire_record::{self, FileRecord, Record};

const ENTRY: &str = "monitor_hotplug";
const LIST: &str = "tests_generic_system = [";

/// The meson files that have held the list: 10.1 and later keep generic
/// tests in their own directory, 9.2 and 10.0 in the top file.
const CANDIDATES: [&str; 2] =
    ["tests/functional/generic/meson.build", "tests/functional/meson.build"];

#[derive(Debug, PartialEq)]
pub enum Wired {
    /// Wiring was added now.
    Added(PathBuf),
    /// Everything was already in place.
    Already(PathBuf),
    /// The tree predates functional tests: nothing to wire.
    NoFunctionalTests,
}

/// Where the list lives, or why it cannot be wired.
fn find_list(tree: &Path) -> Result<Option<PathBuf>> {
    if !tree.join("tests/functional").is_dir() {
        return Ok(None);
    }
    let mut looked = Vec::new();
    for rel in CANDIDATES {
        let path = tree.join(rel);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if text.lines().any(|l| l.trim_start().starts_with(LIST)) {
            return Ok(Some(path));
        }
        looked.push(path.display().to_string());
    }
    if looked.is_empty() {
        bail!(
            "{} has no meson.build; expected {}",
            tree.join("tests/functional").display(),
            CANDIDATES.join(" or ")
        );
    }
    bail!(
        "found no `{LIST}` list in {}; this tree's functional tests are laid out in a way \
         the xtask does not know: add `monitor_hotplug` to its functional-test list by hand, \
         or build with `cargo xtask build`, which does not wire, and run the qmp-tests \
         binary against the QEMU it prints",
        looked.join(" or ")
    )
}

/// Inserts the entry into the list in sorted order, in the indentation of
/// the list's own entries. Returns None when it is already there.
pub fn insert_entry(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_start().starts_with(LIST))?;
    let end = start + lines[start..].iter().position(|l| l.trim_start().starts_with(']'))?;
    let entries = &lines[start + 1..end];
    let name = |l: &str| l.trim().trim_end_matches(',').trim_matches('\'').to_owned();
    if entries.iter().any(|l| name(l) == ENTRY) {
        return None;
    }
    let indent = entries
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .unwrap_or("  ");
    let at = entries
        .iter()
        .position(|l| {
            let n = name(l);
            !n.is_empty() && !n.starts_with('#') && n.as_str() > ENTRY
        })
        .map_or(end, |i| start + 1 + i);
    let mut out: String = lines[..at].concat();
    out.push_str(&format!("{indent}'{ENTRY}',\n"));
    out.push_str(&lines[at..].concat());
    Some(out)
}

fn mtime_secs(path: &Path) -> Result<f64> {
    let m = std::fs::metadata(path)?.modified()?;
    Ok(m.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64())
}

fn set_mtime(path: &Path, secs: f64) -> Result<()> {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} to restore its time", path.display()))?;
    file.set_modified(UNIX_EPOCH + Duration::from_secs_f64(secs))
        .with_context(|| format!("restoring the modification time of {}", path.display()))
}

/// The test file meson needs next to the list: a TAP wrapper around the
/// qmp-tests binary, pointed at the QEMU that meson hands it.
fn wrapper_script(qmp_tests: &Path) -> String {
    format!(
        r#"#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Dynamic QMP monitor hotplug: runs the qmp-tests suite against the QEMU
# binary meson hands to functional tests, and passes its TAP through.
# Written by `cargo xtask wire`; `cargo xtask unwire` removes it.

import os
import subprocess
import sys
from pathlib import Path

QMP_TESTS = os.environ.get("QMP_TESTS_BIN", {bin:?})

if os.environ.get("QEMU_TEST_PRECACHE"):
    # Nothing to download: mark the pre-cache step done.
    open(os.environ["QEMU_TEST_PRECACHE"], "w").close()
    sys.exit(0)

qemu = os.environ.get("QEMU_TEST_QEMU_BINARY")
if not qemu:
    print("1..0 # SKIP QEMU_TEST_QEMU_BINARY is not set")
    sys.exit(0)
if not os.access(QMP_TESTS, os.X_OK):
    print("Bail out! qmp-tests binary not found at " + QMP_TESTS +
          "; run `cargo xtask build` in the qemu-hotplug-tests checkout")
    sys.exit(1)
# This file sits in tests/functional/generic/ (tests/functional/ before
# QEMU 10.1); the tree's python/ holds qemu.qmp, which one scenario drives
# with the Python meson runs us with.
argv = [QMP_TESTS, "--tap", "--qemu", qemu]
# A comma-separated subset, e.g. the seed scenarios for a benchmark.
for name in filter(None, os.environ.get("QMP_TESTS_SCENARIOS", "").split(",")):
    argv += ["--scenario", name]
if os.environ.get("QMP_TESTS_ROUTE"):
    argv += ["--route", os.environ["QMP_TESTS_ROUTE"]]
tree = next((p for p in Path(__file__).resolve().parents
             if (p / "python" / "qemu" / "qmp").is_dir()), None)
if tree:
    argv += ["--qemu-src", str(tree), "--python", sys.executable]
sys.exit(subprocess.call(argv))
"#,
        bin = qmp_tests.display().to_string()
    )
}

/// Wires the tree. `keep_times` gives changed files their old modification
/// time, so a temporary wiring does not make ninja re-run meson each time.
pub fn wire(tree: &Path, qmp_tests: &Path, keep_times: bool) -> Result<Wired> {
    restore_stale(tree)?;
    let Some(list) = find_list(tree)? else {
        return Ok(Wired::NoFunctionalTests);
    };
    let test = list.with_file_name(format!("test_{ENTRY}.py"));
    let text =
        std::fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
    let new_list = insert_entry(&text);
    let new_test = (!test.exists()).then(|| wrapper_script(qmp_tests));
    if new_list.is_none() && new_test.is_none() {
        return Ok(Wired::Already(list));
    }
    let state = wire_record::path_for(tree);
    if Record::load(&state)?.is_some() {
        bail!(
            "{} records an earlier wiring of {} that the tree no longer shows; \
             check the tree, then remove that file",
            state.display(),
            tree.display()
        );
    }
    let list_mtime = mtime_secs(&list)?;
    let mut files = Vec::new();
    if let Some(wired) = &new_list {
        files.push(FileRecord {
            path: list.clone(),
            original: Some(text.clone()),
            wired: wired.clone(),
            mtime: Some(list_mtime),
        });
    }
    if let Some(wired) = &new_test {
        files.push(FileRecord {
            path: test.clone(),
            original: None,
            wired: wired.clone(),
            mtime: None,
        });
    }
    // The record is written first: an interrupted wiring can always be undone.
    let record = Record { tree: tree.to_path_buf(), keep_times, files };
    record.store(&state)?;
    if let Some(wired) = &new_list {
        write_atomic(&list, wired)?;
        if keep_times {
            set_mtime(&list, list_mtime)?;
        }
    }
    if let Some(wired) = &new_test {
        write_atomic(&test, wired)?;
        let mut perm = std::fs::metadata(&test)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&test, perm)?;
        if keep_times {
            set_mtime(&test, list_mtime)?;
        }
    }
    Ok(Wired::Added(list))
}

/// A run's own wiring outlives it only when the run was killed (kill -9,
/// a crash): the files are restored before anything else, or the run
/// would find its entry "already" there and never undo it. Runs on one
/// cache take turns (the cache lock), so a run's record found here is
/// never that of a run still going.
fn restore_stale(tree: &Path) -> Result<()> {
    let state = wire_record::path_for(tree);
    match Record::load(&state)? {
        Some(record) if record.keep_times => {
            eprintln!(
                "    note: a killed run left {} wired; restoring its files first",
                tree.display()
            );
            restore(&state, &record)
        }
        _ => Ok(()),
    }
}

/// Restores every file wiring changed. Returns false when nothing was wired.
pub fn unwire(tree: &Path) -> Result<bool> {
    let state = wire_record::path_for(tree);
    let Some(record) = Record::load(&state)? else {
        return Ok(false);
    };
    restore(&state, &record)?;
    Ok(true)
}

/// Puts back what `record` says wiring changed, then drops the record.
pub fn restore(state: &Path, record: &Record) -> Result<()> {
    for f in &record.files {
        let path = &f.path;
        let current = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match (current.as_deref(), f.original.as_deref()) {
            (None, None) => {}
            (Some(c), original) if Some(c) == original => {}
            (Some(c), _) if c != f.wired => bail!(
                "{} changed since it was wired; not restoring it. Its original content is in {}",
                path.display(),
                state.display()
            ),
            (_, None) => std::fs::remove_file(path)
                .with_context(|| format!("removing {}", path.display()))?,
            (_, Some(original)) => {
                write_atomic(path, original)?;
                // A wiring that kept times is undone the same way; one that
                // let meson see the change is undone visibly too, so the
                // build directory follows.
                if let Some(mtime) = f.mtime.filter(|_| record.keep_times) {
                    set_mtime(path, mtime)?;
                }
            }
        }
    }
    std::fs::remove_file(state).with_context(|| format!("removing {}", state.display()))
}

/// Unwires when dropped: on success, on error and after Ctrl-C alike.
pub struct WireGuard {
    tree: Option<PathBuf>,
}

impl WireGuard {
    pub fn new(tree: &Path) -> WireGuard {
        WireGuard { tree: Some(tree.to_path_buf()) }
    }

    pub fn finish(mut self) -> Result<()> {
        match self.tree.take() {
            Some(tree) => unwire(&tree).map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for WireGuard {
    fn drop(&mut self) {
        if let Some(tree) = self.tree.take() {
            if let Err(err) = unwire(&tree) {
                eprintln!("error: could not unwire {}: {err:#}", tree.display());
            }
        }
    }
}

/// Wires the tree for `qmp_tests` for the time of `run` (unwired after,
/// unless it was wired before), and gives `run` the `meson test` of the
/// wired test for `target` in the build directory of `qemu`, with the
/// flags it is given.
pub fn test_wired<'a, T>(
    sh: &'a Shell,
    (tree, qemu, qmp_tests): (&Path, &Path, &Path),
    target: &str,
    run: impl FnOnce(&dyn Fn(&[&str]) -> xshell::Cmd<'a>) -> Result<T>,
) -> Result<T> {
    let build_dir = qemu.parent().context("the QEMU binary has a build directory")?;
    let guard = match wire(tree, qmp_tests, false)? {
        Wired::Added(_) => Some(WireGuard::new(tree)),
        Wired::Already(_) => None,
        Wired::NoFunctionalTests => bail!("{} has no functional-test list to wire", tree.display()),
    };
    let meson = build_dir.join("pyvenv/bin/meson");
    let test = format!("func-{target}-{ENTRY}");
    let result = run(&|flags| xshell::cmd!(sh, "{meson} test -C {build_dir} {flags...} {test}"));
    if let Some(guard) = guard {
        guard.finish()?;
    }
    result
}

/// Unwires `tree`, or else every wired tree of the cache: what `wire`
/// and `test` wire without flags.
pub fn unwire_trees(tree: Option<&Path>) -> Result<()> {
    if let Some(tree) = tree {
        if unwire(tree)? {
            eprintln!("unwired {}", tree.display());
        } else {
            eprintln!("nothing is wired in {}: nothing to do", tree.display());
        }
        return Ok(());
    }
    // The trees `wire` and `test` pick without flags are the cache's own;
    // a tree of the user's is only ever named.
    let cache_src = paths::qemu_cache().join("src");
    let records: Vec<_> =
        wire_record::all()?.into_iter().filter(|(_, r)| r.tree.starts_with(&cache_src)).collect();
    if records.is_empty() {
        eprintln!("nothing is wired in the trees of {}: nothing to do", cache_src.display());
        return Ok(());
    }
    let mut failed = Vec::new();
    for (state, record) in &records {
        match restore(state, record) {
            Ok(()) => eprintln!("unwired {}", record.tree.display()),
            Err(err) => {
                eprintln!("error: {err:#}");
                failed.push(record.tree.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not unwire {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_10_2: &str = "# SPDX\n\ntests_generic_system = [\n  'empty_cpu_model',\n  'info_usernet',\n  'version',\n  'vnc',\n]\n\ntests_generic_linuxuser = [\n]\n";

    #[test]
    fn inserts_in_sorted_order_with_the_list_indentation() {
        let out = insert_entry(LIST_10_2).unwrap();
        assert!(out.contains("  'info_usernet',\n  'monitor_hotplug',\n  'version',\n"), "{out}");
        assert_eq!(insert_entry(&out), None, "wiring twice changes nothing");
        let tabbed = "tests_generic_system = [\n    'a',\n    'zz',\n]\n";
        assert_eq!(
            insert_entry(tabbed).unwrap(),
            "tests_generic_system = [\n    'a',\n    'monitor_hotplug',\n    'zz',\n]\n"
        );
        let empty = "tests_generic_system = [\n]\n";
        assert_eq!(
            insert_entry(empty).unwrap(),
            "tests_generic_system = [\n  'monitor_hotplug',\n]\n"
        );
        let last = "tests_generic_system = [\n  'a',\n]\n";
        assert_eq!(
            insert_entry(last).unwrap(),
            "tests_generic_system = [\n  'a',\n  'monitor_hotplug',\n]\n"
        );
    }

    #[test]
    fn a_wiring_that_keeps_times_is_undone_keeping_them() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("qemu");
        let list = tree.join("tests/functional/generic/meson.build");
        std::fs::create_dir_all(list.parent().unwrap()).unwrap();
        std::fs::write(&list, LIST_10_2).unwrap();
        set_mtime(&list, 1_000_000_000.0).unwrap();
        // SAFETY: no other test of this binary reads the cache variable.
        unsafe { std::env::set_var("XTASK_QEMU_CACHE", dir.path().join("cache")) };
        assert!(matches!(wire(&tree, Path::new("/bin/false"), true).unwrap(), Wired::Added(_)));
        assert_eq!(mtime_secs(&list).unwrap(), 1_000_000_000.0, "ninja must not see the wiring");
        assert!(unwire(&tree).unwrap());
        assert_eq!(std::fs::read_to_string(&list).unwrap(), LIST_10_2);
        assert_eq!(mtime_secs(&list).unwrap(), 1_000_000_000.0, "nor the unwiring");
    }

    #[test]
    fn no_list_no_change() {
        assert_eq!(insert_entry("tests_x86_64_system_quick = [\n]\n"), None);
    }
}
