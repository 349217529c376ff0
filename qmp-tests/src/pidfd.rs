//! Process handles that cannot be confused by pid reuse.
//!
//! A pidfd names one process for as long as the fd is open, so signalling
//! or polling it after the process was reaped hits nothing else; and
//! `poll` on it is how we wait for an exit with a deadline, without sleeps.

use std::{io, os::fd::OwnedFd, time::Instant};

use rustix::{
    io::Errno,
    process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal},
};

#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
}

impl PidFd {
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let raw = i32::try_from(pid).map_err(io::Error::other)?;
        let id = Pid::from_raw(raw).ok_or_else(|| io::Error::other("pid 0 names no process"))?;
        let fd = pidfd_open(id, PidfdFlags::empty())?;
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal`; a process that is already gone is not an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match pidfd_send_signal(&self.fd, signal) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Waits until the process has exited or `deadline` passes; returns
    /// whether it exited. For our own children an exited process is still
    /// to be reaped.
    pub fn wait_exit(&self, deadline: Instant) -> io::Result<bool> {
        crate::deadline::wait_readable(&self.fd, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{process::Command, time::Duration};

    #[test]
    fn waits_for_exit_and_times_out_while_alive() {
        let mut child = Command::new("cat").stdin(std::process::Stdio::piped()).spawn().unwrap();
        let pidfd = PidFd::open(child.id()).unwrap();
        let start = Instant::now();
        assert!(!pidfd.wait_exit(start + Duration::from_millis(100)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(100));
        pidfd.signal(Signal::KILL).unwrap();
        assert!(pidfd.wait_exit(Instant::now() + Duration::from_secs(10)).unwrap());
        child.wait().unwrap();
        // Reaped: signalling is now a no-op, not an error or a stray kill.
        pidfd.signal(Signal::KILL).unwrap();
    }
}
