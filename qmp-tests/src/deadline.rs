//! Deadlines are absolute instants so that a chain of waits shares one
//! budget instead of each step restarting its own clock.

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

use rustix::{
    event::{poll, PollFd, PollFlags, Timespec},
    io::Errno,
};

/// Time left until `deadline`, or `None` once it has passed.
///
/// A zero duration counts as passed: `set_read_timeout(Some(ZERO))` is an
/// error, and a wait of nothing is no wait.
pub fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())
}

/// Whether a socket operation failed because its timeout (set from a
/// deadline) ran out; Linux reports that as EAGAIN.
pub(crate) fn timed_out(err: &std::io::Error) -> bool {
    matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// Waits until `fd` is readable (for a pidfd: its process has exited) or
/// `deadline` passes; returns whether it became readable.
pub fn wait_readable(fd: impl AsFd, deadline: Instant) -> std::io::Result<bool> {
    wait_ready(fd, PollFlags::IN, deadline)
}

/// Waits until `fd` is ready for `events` or `deadline` passes; returns
/// whether it became ready. A signal that interrupts the wait does not
/// end it.
pub fn wait_ready(fd: impl AsFd, events: PollFlags, deadline: Instant) -> std::io::Result<bool> {
    let mut fds = [PollFd::new(&fd, events)];
    loop {
        // A passed deadline still polls once, so a ready fd is seen.
        let left = remaining(deadline).unwrap_or_default();
        let timeout = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => return Ok(true),
            Err(err) => return Err(err.into()),
        }
    }
}
