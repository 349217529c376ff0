//! Process handles that cannot be confused by pid reuse.
//!
//! A pidfd names one process for as long as the fd is open, so signalling
//! or polling it after the process was reaped hits nothing else; and
//! `poll` on it is how we wait for an exit with a deadline, without sleeps.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Instant,
};

use crate::deadline::{poll_millis, remaining};

#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
}

impl PidFd {
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid_arg = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_arg, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just handed us this fd and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal`; a process that is already gone is not an error.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own; no pointers are passed
        // (the siginfo argument is NULL).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Waits until the process has exited or `deadline` passes; returns
    /// whether it exited. For our own children an exited process is still
    /// to be reaped.
    pub fn wait_exit(&self, deadline: Instant) -> io::Result<bool> {
        loop {
            let timeout = remaining(deadline).map_or(0, poll_millis);
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
            if rc > 0 {
                return Ok(true);
            }
            if rc == 0 {
                if timeout == 0 {
                    return Ok(false);
                }
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{process::Command, time::Duration};

    #[test]
    fn waits_for_exit_and_times_out_while_alive() {
        let mut child = Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pidfd = PidFd::open(child.id()).unwrap();
        let start = Instant::now();
        assert!(!pidfd.wait_exit(start + Duration::from_millis(100)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(100));
        pidfd.signal(libc::SIGKILL).unwrap();
        assert!(pidfd
            .wait_exit(Instant::now() + Duration::from_secs(10))
            .unwrap());
        child.wait().unwrap();
        // Reaped: signalling is now a no-op, not an error or a stray kill.
        pidfd.signal(libc::SIGKILL).unwrap();
    }
}
