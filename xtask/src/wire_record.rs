//! The record of one wiring, kept in the cache outside the tree: what each
//! file held before and after, so unwiring restores it byte for byte and
//! never clobbers an edit made since.
//!
//! Read strictly: a record that lacks a field is not one the xtask wrote,
//! and trusting it would report a tree unwired while it stays wired.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::path_serde::{self, required};
use crate::paths;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    #[serde(with = "path_serde")]
    pub path: PathBuf,
    /// None: the file did not exist before wiring.
    #[serde(deserialize_with = "required")]
    pub original: Option<String>,
    pub wired: String,
    /// The modification time to restore, in seconds since the epoch.
    #[serde(deserialize_with = "required")]
    pub mtime: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(with = "path_serde")]
    pub tree: PathBuf,
    /// Set by a pipeline run, which hides its wiring from ninja and undoes
    /// it when it ends; a record of one found later means the run was
    /// killed. `cargo xtask wire` leaves it unset: that wiring is meant
    /// to stay.
    pub keep_times: bool,
    pub files: Vec<FileRecord>,
}

/// Where the record of `tree`'s wiring lives.
pub fn path_for(tree: &Path) -> PathBuf {
    paths::qemu_cache()
        .join("wire")
        .join(format!("{}.json", paths::key(&[tree.as_os_str().as_encoded_bytes()])))
}

impl Record {
    /// Reads a record strictly: every field there, and at least one file.
    fn parse(text: &str) -> Result<Record> {
        let record: Record = serde_json::from_str(text)?;
        if record.files.is_empty() {
            bail!("the record lists no file");
        }
        Ok(record)
    }

    /// The record at `path`, None when there is none; a record that is
    /// not one the xtask wrote is an error that names the file.
    pub fn load(path: &Path) -> Result<Option<Record>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match Record::parse(&text) {
            Ok(record) => Ok(Some(record)),
            Err(err) => bail!(
                "{} is not a wiring record the xtask wrote ({err:#}); nothing was restored. \
                 Check the tree's meson files by hand, then remove that file",
                path.display()
            ),
        }
    }

    pub fn store(&self, path: &Path) -> Result<()> {
        let dir = path.parent().context("a record has a directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = serde_json::to_string_pretty(self)
            .with_context(|| format!("encoding the wiring record of {}", self.tree.display()))?;
        write_atomic(path, &text)
    }
}

/// Every record in the cache, with its file.
pub fn all() -> Result<Vec<(PathBuf, Record)>> {
    let dir = paths::qemu_cache().join("wire");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Some(record) = Record::load(&path)? {
                out.push((path, record));
            }
        }
    }
    out.sort_by(|a, b| a.1.tree.cmp(&b.1.tree));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_reads_back_and_a_partial_one_is_refused() {
        let record = Record {
            tree: "/t".into(),
            keep_times: true,
            files: vec![FileRecord {
                path: "/t/m".into(),
                original: None,
                wired: "x".into(),
                mtime: Some(1.5),
            }],
        };
        let round_trip = |r: &Record| Record::parse(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!(round_trip(&record), record);
        use std::os::unix::ffi::OsStrExt;
        let odd =
            Record { tree: std::ffi::OsStr::from_bytes(b"/caf\xe9").into(), ..record.clone() };
        assert_eq!(round_trip(&odd), odd);
        let text = serde_json::to_string(&odd).unwrap();
        assert!(text.starts_with(r#"{"tree":[47,99,97,102,233],"#), "{text}");
        for bad in [
            json!({}),
            json!({"tree": "/t", "keep_times": true, "files": []}),
            json!({"tree": "/t", "keep_times": true, "files": [{"path": "/t/m"}]}),
            json!({"tree": 1, "keep_times": true, "files": [{"path": "/t/m", "original": null, "wired": "x", "mtime": null}]}),
            // Each field must be there, even one that may be null.
            json!({"tree": "/t", "keep_times": true, "files": [{"path": "/t/m", "wired": "x", "mtime": null}]}),
        ] {
            assert!(Record::parse(&bad.to_string()).is_err(), "{bad}");
        }
    }
}
