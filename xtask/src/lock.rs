//! One run at a time per cache: two runs would run ninja in the same
//! build directory, and the first to finish would unwire the tree under
//! the second.
//!
//! The discipline: each command's `run` takes the cache's lock once, after
//! its input is checked and before any work, when the command touches the
//! cache; nothing below the commands takes the lock again.
//! A command the xtask runs as a child (`bench` times `cargo xtask test`)
//! inherits it through the environment instead of waiting for its own
//! parent. Each python venv, shared by every cache, has a lock of its own,
//! held only while it is made.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::paths;

/// How often a run waiting for another's lock looks again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The lock file an ancestor of this process holds for it.
pub const HELD: &str = "XTASK_HELD_LOCK";

/// Held for the whole of a command that changes the cache; released when
/// dropped, and by the kernel when the process dies, kill -9 included.
pub struct Lock {
    _file: Option<File>,
}

/// Takes the cache's lock, saying so when another run holds it.
pub fn cache() -> Result<Lock> {
    let dir = paths::qemu_cache();
    let path = dir.join("lock");
    if std::env::var_os(HELD).is_some_and(|held| Path::new(&held) == path) {
        return Ok(Lock { _file: None });
    }
    let lock = take(&path, &format!("is using {}", dir.display()))?;
    // Inherited by the children: a nested `cargo xtask` runs under this
    // lock rather than deadlock waiting for it. Set before any thread
    // but the signal thread, which reads no environment, exists (a
    // command's run calls this before any work).
    std::env::set_var(HELD, &path);
    Ok(lock)
}

/// The lock on the shared python venv of `spec` (pip requirements), for
/// the time it is made. Named for the spec, readably: two specs that read
/// the same here only take turns.
pub fn venv(spec: &str) -> Result<Lock> {
    let dir = paths::venv_cache();
    let name: String = spec
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '=' | '-' => c,
            _ => '_',
        })
        .collect();
    take(
        &dir.join(format!("venv-{name}.lock")),
        &format!("is making a python venv for {spec} in {}", dir.display()),
    )
}

/// Opens (creating it and its directory) and locks `path`; `doing` says
/// what the holder does, for the message while waiting.
pub fn take(path: &Path, doing: &str) -> Result<Lock> {
    let dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => return Ok(Lock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    eprintln!(
        "==> another cargo xtask run {doing}; waiting for it to finish (lock {})",
        path.display()
    );
    // Polled rather than blocked on: a signal that lands between a check
    // of the interrupt flag and a blocking flock(2) would leave the wait
    // deaf to Ctrl-C for as long as the other run lasts.
    loop {
        crate::interrupt::check()
            .with_context(|| format!("waiting for the lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => std::thread::sleep(LOCK_POLL),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("waiting for the lock {}", path.display()))
            }
        }
    }
    eprintln!("==> the other run finished; going on");
    Ok(Lock { _file: Some(file) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_taken_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lock");
        let lock = take(&path, "tests").unwrap();
        let other = File::open(&path).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(lock);
        other.try_lock().unwrap();
    }
}
