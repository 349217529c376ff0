//! One run at a time per cache: two runs would run ninja in the same
//! build directory, and the first to finish would unwire the tree under
//! the second.

use std::fs::{File, TryLockError};

use anyhow::{Context, Result};

use crate::paths;

/// Held for the whole of a command that changes the cache; released when
/// dropped, and by the kernel when the process dies, kill -9 included.
pub struct CacheLock {
    _file: File,
}

/// Takes the cache's lock, saying so when another run holds it.
pub fn cache() -> Result<CacheLock> {
    let dir = paths::qemu_cache();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "==> another cargo xtask run is using {}; waiting for it to finish (lock {})",
                dir.display(),
                path.display()
            );
            file.lock()
                .with_context(|| format!("waiting for the lock {}", path.display()))?;
            crate::interrupt::check()?;
            eprintln!("==> the other run finished; going on");
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    Ok(CacheLock { _file: file })
}
