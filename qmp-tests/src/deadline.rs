//! Deadlines are absolute instants so that a chain of waits shares one
//! budget instead of each step restarting its own clock.

use std::time::{Duration, Instant};

/// Time left until `deadline`, or `None` once it has passed.
///
/// A zero duration counts as passed: `set_read_timeout(Some(ZERO))` is an
/// error, and a wait of nothing is no wait.
pub fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// Whether a socket operation failed because its timeout (set from a
/// deadline) ran out; Linux reports that as EAGAIN.
pub(crate) fn timed_out(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Milliseconds for `poll(2)`, rounded up so a wait never ends early.
pub(crate) fn poll_millis(left: Duration) -> libc::c_int {
    let millis = left.as_nanos().div_ceil(1_000_000);
    millis.min(libc::c_int::MAX as u128) as libc::c_int
}
