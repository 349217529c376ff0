//! Where the project and its caches live.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo that runs the xtask, for the cargo commands it runs itself.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Cargo's target directory, honouring CARGO_TARGET_DIR like cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                project_root().join(dir)
            }
        }
        None => project_root().join("target"),
    }
}

/// Everything the QEMU side of the pipeline caches: sources, downloads,
/// builds, wiring records. XTASK_QEMU_CACHE moves it (the project's own
/// tests use that to work in a private cache).
pub fn qemu_cache() -> PathBuf {
    match std::env::var_os("XTASK_QEMU_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("qemu"),
    }
}

/// Python venvs: shared by every cache, since they depend only on the
/// meson version.
pub fn venv_cache() -> PathBuf {
    target_dir().join("qemu")
}

/// The pinned release's description; XTASK_QEMU_PIN points elsewhere.
pub fn pin_file() -> PathBuf {
    match std::env::var_os("XTASK_QEMU_PIN").filter(|v| !v.is_empty()) {
        Some(file) => PathBuf::from(file),
        None => project_root().join("qemu-pin.json"),
    }
}

/// A short key for cache directories and records, the same on every
/// toolchain: std's `DefaultHasher` may change between Rust releases,
/// which would lose a wiring record between `wire` and `unwire`. FNV-1a,
/// over bytes so that a series in any encoding has a key; each part is
/// preceded by its length, so `["ab", "c"]` and `["a", "bc"]` differ.
pub fn key(parts: &[&[u8]]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    };
    for part in parts {
        feed(&(part.len() as u64).to_le_bytes());
        feed(part);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_and_part_boundaries_count() {
        // Fixed values: a change here orphans every cached record.
        assert_eq!(key(&[]), "9ce484222325");
        assert_eq!(key(&[b"/tmp/qemu"]), "e9fb4840190f");
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_eq!(key(&[b"x86_64"]).len(), 12);
    }
}
