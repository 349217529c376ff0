//! Where the project and its caches live.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
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

/// A short, stable key for cache directories. The std hasher is stable for
/// a given toolchain, which is all a cache key needs; a new toolchain costs
/// one rebuild at most.
pub fn key(parts: &[&str]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}
