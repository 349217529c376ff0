//! Paths in the xtask's JSON records, byte for byte: a string when the
//! path is UTF-8 (every record so far), else its bytes as a list of
//! numbers, so that a tree at a path that is not UTF-8 is recorded like
//! any other instead of refused (serde's own impl) or a panic (`json!`).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    match path.to_str() {
        Some(text) => s.serialize_str(text),
        None => s.collect_seq(path.as_os_str().as_bytes()),
    }
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a path: a string or a list of bytes")]
enum Repr {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<Repr> for PathBuf {
    fn from(repr: Repr) -> PathBuf {
        match repr {
            Repr::Text(text) => PathBuf::from(text),
            Repr::Bytes(bytes) => PathBuf::from(OsString::from_vec(bytes)),
        }
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    Repr::deserialize(d).map(PathBuf::from)
}

/// The same for a path that may be absent (`null`, which must be there).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(path) => super::serialize(path, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Repr>::deserialize(d)?.map(PathBuf::from))
    }
}

/// An `Option` field that must be present, `null` or not: serde takes a
/// missing one for `None` otherwise, and a record missing a field is not
/// one the xtask wrote.
pub fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}
