//! QEMU as a child process, reaped exactly once and killed if dropped
//! alive, and its private directory; both registered with the janitor.

use std::{
    fs, io, os::unix::fs::PermissionsExt, path::Path, process::Child, sync::Arc, time::Instant,
};

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::Exit;
use crate::{janitor::Janitor, pidfd::PidFd};

/// Kills one QEMU from any thread; see [`Machine::killer`](super::Machine::killer).
#[derive(Clone)]
pub struct Killer(Arc<PidFd>);

impl Killer {
    pub fn kill(&self) {
        let _ = self.0.signal(rustix::process::Signal::KILL);
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }
}

/// QEMU as a child process; killed and reaped on drop.
pub(super) struct Process {
    child: Child,
    pub(super) pidfd: Arc<PidFd>,
    pub(super) exit: Option<Exit>,
    janitor: Option<Arc<Janitor>>,
}

impl Process {
    pub(super) fn new(mut child: Child, janitor: Option<Arc<Janitor>>) -> Result<Process> {
        // Unreaped, the pid cannot have been reused yet.
        let pidfd = match PidFd::open(child.id()) {
            Ok(pidfd) => pidfd,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err).context("opening a pidfd for QEMU (Linux 5.3 or later needed)");
            }
        };
        if let Some(janitor) = &janitor {
            janitor.register_pid(child.id());
        }
        Ok(Process { child, pidfd: Arc::new(pidfd), exit: None, janitor })
    }

    pub(super) fn killer(&self) -> Killer {
        Killer(self.pidfd.clone())
    }

    pub(super) fn wait_exit(&mut self, deadline: Instant) -> io::Result<Option<Exit>> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        if !self.pidfd.wait_exit(deadline)? {
            return Ok(None);
        }
        let status = self.child.wait()?;
        Ok(Some(self.reaped(Exit::from_status(status))))
    }

    fn reaped(&mut self, exit: Exit) -> Exit {
        self.exit = Some(exit);
        if let Some(janitor) = &self.janitor {
            janitor.unregister_pid(self.pidfd.pid());
        }
        exit
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.pidfd.signal(rustix::process::Signal::KILL);
            if let Ok(status) = self.child.wait() {
                self.reaped(Exit::from_status(status));
            }
        }
    }
}

/// A private temp dir under the system temp dir (short paths matter for
/// sockets), removed on drop.
pub(super) struct WorkDir {
    dir: TempDir,
    janitor: Option<Arc<Janitor>>,
}

impl WorkDir {
    pub(super) fn create(janitor: Option<Arc<Janitor>>) -> Result<WorkDir> {
        let parent = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("qmp-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
        if let Some(janitor) = &janitor {
            janitor.register_dir(dir.path());
        }
        Ok(WorkDir { dir, janitor })
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for WorkDir {
    /// Removed before it is unregistered, so that no moment is left in
    /// which a SIGKILL would leave it behind.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.dir.path());
        if let Some(janitor) = &self.janitor {
            janitor.unregister_dir(self.dir.path());
        }
    }
}
