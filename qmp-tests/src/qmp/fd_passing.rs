//! Sending a file descriptor along with bytes (SCM_RIGHTS), the way QMP's
//! `getfd` expects it: in the same message as the command naming it.

use std::{
    io::{self, IoSlice},
    mem::MaybeUninit,
    os::{fd::BorrowedFd, unix::net::UnixStream},
};

use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

/// One `sendmsg` of (a prefix of) `bytes` carrying a copy of `fd`;
/// returns how many bytes went out. The fd travels with the first byte.
pub(crate) fn send_with_fd(
    stream: &UnixStream,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("one fd does not fit its control message"));
    }
    let iov = [IoSlice::new(bytes)];
    Ok(sendmsg(stream, &iov, &mut control, SendFlags::NOSIGNAL)?)
}
