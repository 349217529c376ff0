//! The record of one wiring, kept in the cache outside the tree: what each
//! file held before and after, so unwiring restores it byte for byte and
//! never clobbers an edit made since.
//!
//! Read strictly: a record that lacks a field is not one the xtask wrote,
//! and trusting it would report a tree unwired while it stays wired.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::files::write_atomic;
use crate::paths;

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub path: PathBuf,
    /// None: the file did not exist before wiring.
    pub original: Option<String>,
    pub wired: String,
    /// The modification time to restore, in seconds since the epoch.
    pub mtime: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
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
    paths::qemu_cache().join("wire").join(format!(
        "{}.json",
        paths::key(&[tree.as_os_str().as_encoded_bytes()])
    ))
}

fn field<'a>(v: &'a Value, name: &str, what: &str) -> Result<&'a Value> {
    v.get(name)
        .with_context(|| format!("{what} has no `{name}`"))
}

/// A path as JSON: a string when it is UTF-8 (every record so far), else
/// its bytes as a list of numbers, so that a tree at a non-UTF-8 path is
/// wired and unwired like any other rather than refused (or, as `json!`
/// did, a panic).
fn path_json(path: &Path) -> Value {
    match path.to_str() {
        Some(s) => Value::from(s),
        None => Value::from(path.as_os_str().as_encoded_bytes().to_vec()),
    }
}

fn path(v: &Value, name: &str, what: &str) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    match field(v, name, what)? {
        Value::String(s) => Ok(PathBuf::from(s)),
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(|b| PathBuf::from(std::ffi::OsString::from_vec(b)))
            .with_context(|| format!("`{name}` of {what} is not a list of bytes")),
        _ => bail!("`{name}` of {what} is neither a string nor a list of bytes"),
    }
}

fn string(v: &Value, name: &str, what: &str) -> Result<String> {
    field(v, name, what)?
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("`{name}` of {what} is not a string"))
}

impl FileRecord {
    fn from_json(v: &Value) -> Result<FileRecord> {
        let what = "a file entry";
        let original = match field(v, "original", what)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => bail!("`original` of {what} is neither a string nor null"),
        };
        let mtime = match field(v, "mtime", what)? {
            Value::Null => None,
            m => Some(
                m.as_f64()
                    .context("`mtime` of a file entry is not a number")?,
            ),
        };
        Ok(FileRecord {
            path: path(v, "path", what)?,
            original,
            wired: string(v, "wired", what)?,
            mtime,
        })
    }
}

impl Record {
    pub fn from_json(v: &Value) -> Result<Record> {
        let what = "the record";
        let files = field(v, "files", what)?
            .as_array()
            .context("`files` of the record is not a list")?
            .iter()
            .map(FileRecord::from_json)
            .collect::<Result<Vec<_>>>()?;
        if files.is_empty() {
            bail!("the record lists no file");
        }
        Ok(Record {
            tree: path(v, "tree", what)?,
            keep_times: field(v, "keep_times", what)?
                .as_bool()
                .context("`keep_times` of the record is not true or false")?,
            files,
        })
    }

    pub fn to_json(&self) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|f| {
                json!({"path": path_json(&f.path), "original": f.original, "wired": f.wired, "mtime": f.mtime})
            })
            .collect();
        json!({"tree": path_json(&self.tree), "keep_times": self.keep_times, "files": files})
    }

    /// The record at `path`, None when there is none; a record that is
    /// not one the xtask wrote is an error that names the file.
    pub fn load(path: &Path) -> Result<Option<Record>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let parsed = serde_json::from_str(&text)
            .map_err(anyhow::Error::from)
            .and_then(|v| Record::from_json(&v));
        match parsed {
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
        let text = serde_json::to_string_pretty(&self.to_json())
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
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
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
        assert_eq!(Record::from_json(&record.to_json()).unwrap(), record);
        use std::os::unix::ffi::OsStrExt;
        let odd = Record {
            tree: std::ffi::OsStr::from_bytes(b"/caf\xe9").into(),
            ..record.clone()
        };
        assert_eq!(Record::from_json(&odd.to_json()).unwrap(), odd);
        for bad in [
            json!({}),
            json!({"tree": "/t", "keep_times": true, "files": []}),
            json!({"tree": "/t", "keep_times": true, "files": [{"path": "/t/m"}]}),
            json!({"tree": 1, "keep_times": true, "files": [{"path": "/t/m", "original": null, "wired": "x", "mtime": null}]}),
        ] {
            assert!(Record::from_json(&bad).is_err(), "{bad}");
        }
    }
}
