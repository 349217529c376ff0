//! The mutant catalogue: `patches/mutants/NAME.diff`, one planted fault
//! each. A file is a header of `Key: value` lines, then a unified diff of
//! one source file of the patched tree, as `git diff` writes it:
//!
//! ```text
//! Spec: Self-removal: ... the connection stays open: QEMU does not close it.
//! Fault: the self-removed connection is closed after the reply.
//!
//! diff --git a/monitor/qmp.c b/monitor/qmp.c
//! ...
//! ```
//!
//! An optional `Program: storage-daemon` line says the fault is in code
//! only qemu-storage-daemon runs: that mutant is built and tested as the
//! daemon (`system`, qemu-system-TARGET, is the default).
//!
//! `git apply` skips the header, so the file applies as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use qmp_tests::program::Program;

use crate::paths;

#[derive(Debug)]
pub struct Mutant {
    pub name: String,
    /// The diff file, applied with `git apply`.
    pub path: PathBuf,
    /// The source file the diff edits, relative to the tree.
    pub file: String,
    /// The line of the behaviour spec the fault breaks.
    pub spec: String,
    /// What the edit does, in a few words.
    pub fault: String,
    /// The program the mutated code is in, which is built and tested.
    pub program: Program,
}

pub fn dir() -> PathBuf {
    paths::project_root().join("patches/mutants")
}

/// Every mutant of `dir`, in name order.
pub fn load(dir: &Path) -> Result<Vec<Mutant>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the catalogue {}", dir.display()))?;
    let mut mutants = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "diff") {
            mutants.push(parse(&path)?);
        }
    }
    if mutants.is_empty() {
        bail!("the catalogue {} holds no NAME.diff files", dir.display());
    }
    mutants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(mutants)
}

fn parse(path: &Path) -> Result<Mutant> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .with_context(|| {
            format!("{}: a mutant's file name is NAME.diff, NAME of a-z, 0-9 and -", path.display())
        })?
        .to_owned();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_text(name, path, &text).with_context(|| format!("in the mutant {}", path.display()))
}

fn parse_text(name: String, path: &Path, text: &str) -> Result<Mutant> {
    let (mut spec, mut fault, mut files) = (None, None, Vec::new());
    let mut program = Program::System;
    let mut in_diff = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            in_diff = true;
            let file = rest.split(" b/").next().unwrap_or(rest);
            files.push(file.to_owned());
        } else if !in_diff {
            if let Some(v) = line.strip_prefix("Spec:") {
                spec = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("Fault:") {
                fault = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("Program:") {
                program = Program::parse(v.trim()).with_context(|| {
                    format!("`Program: {}`: the program is system or storage-daemon", v.trim())
                })?;
            }
        }
    }
    let spec = spec
        .filter(|s| !s.is_empty())
        .context("no `Spec:` line naming the behaviour the fault breaks")?;
    let fault =
        fault.filter(|s| !s.is_empty()).context("no `Fault:` line saying what the edit does")?;
    let file = match files.as_slice() {
        [one] => one.clone(),
        [] => bail!("no diff (a `diff --git a/FILE b/FILE` section, as git diff writes it)"),
        _ => bail!("a mutant edits one file; this one edits {}", files.join(", ")),
    };
    Ok(Mutant { name, path: path.to_owned(), file, spec, fault, program })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/monitor/qmp.c b/monitor/qmp.c
--- a/monitor/qmp.c
+++ b/monitor/qmp.c
@@ -1 +1 @@
-a
+b
";

    #[test]
    fn a_mutant_has_a_spec_line_a_fault_and_one_file() {
        let text = format!("Spec: events once negotiated\nFault: events always\n\n{DIFF}");
        let m = parse_text("events".into(), Path::new("x.diff"), &text).unwrap();
        assert_eq!(m.file, "monitor/qmp.c");
        assert_eq!(m.spec, "events once negotiated");
        assert_eq!(m.fault, "events always");
        assert_eq!(m.program, Program::System);
        let text = format!("Spec: s\nFault: f\nProgram: storage-daemon\n{DIFF}");
        let m = parse_text("d".into(), Path::new("d.diff"), &text).unwrap();
        assert_eq!(m.program, Program::StorageDaemon);
        let text = format!("Spec: s\nFault: f\nProgram: qsd\n{DIFF}");
        let err = parse_text("d".into(), Path::new("d.diff"), &text).unwrap_err();
        assert!(err.to_string().contains("storage-daemon"), "{err}");
    }

    #[test]
    fn missing_parts_are_named() {
        let no_spec = format!("Fault: f\n{DIFF}");
        let err = parse_text("x".into(), Path::new("x.diff"), &no_spec).unwrap_err();
        assert!(err.to_string().contains("Spec:"), "{err}");
        let no_diff = "Spec: s\nFault: f\n";
        let err = parse_text("x".into(), Path::new("x.diff"), no_diff).unwrap_err();
        assert!(err.to_string().contains("no diff"), "{err}");
        let two = format!("Spec: s\nFault: f\n{DIFF}{}", DIFF.replace("qmp.c", "hmp.c"));
        let err = parse_text("x".into(), Path::new("x.diff"), &two).unwrap_err();
        assert!(err.to_string().contains("one file"), "{err}");
    }

    #[test]
    fn the_projects_catalogue_loads() {
        let mutants = load(&dir()).unwrap();
        assert!(mutants.len() >= 10, "{} mutants", mutants.len());
    }

    #[test]
    fn a_bad_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Bad Name.diff");
        std::fs::write(&path, format!("Spec: s\nFault: f\n{DIFF}")).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("NAME.diff"), "{err:#}");
    }
}

#[cfg(test)]
mod readme {
    /// README's kill matrix has a row for exactly the catalogue's mutants.
    #[test]
    fn the_readme_matrix_lists_the_catalogue() {
        let readme = std::fs::read_to_string(crate::paths::project_root().join("docs/mutants.md"))
            .expect("docs/mutants.md");
        let listed =
            qmp_tests::text::table_first_column(&readme, "| mutant | file | fault | caught by |")
                .expect("README has the kill matrix");
        let catalogue = super::load(&super::dir()).unwrap();
        let names: Vec<&str> = catalogue.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(listed, names, "README's kill matrix and patches/mutants differ");
    }
}
