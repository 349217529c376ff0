use std::{fmt, os::unix::process::ExitStatusExt, process::ExitStatus};

/// How a QEMU process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            // Stopped/continued statuses never come out of wait() here.
            (None, None) => Exit::Code(-1),
        }
    }

    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exit status {code}"),
            Exit::Signal(signal) => match signal_name(signal) {
                Some(name) => write!(f, "signal {signal} ({name})"),
                None => write!(f, "signal {signal}"),
            },
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => return None,
    })
}

/// Which step of [`Machine::shutdown`](super::Machine::shutdown) ended QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoppedBy {
    /// It had exited before shutdown began (a `quit` of the caller's, or a
    /// crash).
    Itself,
    Quit,
    Sigterm,
    Sigkill,
}

/// The result of stopping QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    pub exit: Exit,
    pub stopped_by: StoppedBy,
}

impl Shutdown {
    /// Stopped by `quit` (or by itself) with status 0.
    pub fn clean(&self) -> bool {
        self.exit.success() && matches!(self.stopped_by, StoppedBy::Quit | StoppedBy::Itself)
    }
}

impl fmt::Display for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.stopped_by {
            StoppedBy::Itself => "on its own",
            StoppedBy::Quit => "after quit",
            StoppedBy::Sigterm => "after SIGTERM (quit did not stop it)",
            StoppedBy::Sigkill => "after SIGKILL (quit and SIGTERM did not stop it)",
        };
        write!(f, "{} {how}", self.exit)
    }
}
