use std::{error::Error, fmt, io};

/// What went wrong talking to a QMP monitor.
#[derive(Debug)]
pub enum QmpError {
    /// QEMU answered the command with `{"error": {"class", "desc"}}`.
    Qmp {
        class: String,
        desc: String,
    },
    /// The deadline passed while waiting for `awaiting`.
    Timeout {
        awaiting: String,
    },
    /// The peer closed the connection.
    Eof,
    /// A line that is not a QMP message, or not the one expected here.
    Malformed {
        line: String,
    },
    /// The first message was not the `{"QMP": ...}` greeting.
    BeforeGreeting {
        line: String,
    },
    Io(io::Error),
}

impl QmpError {
    /// The QMP error class, if QEMU rejected the command.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Qmp { class, .. } => Some(class),
            _ => None,
        }
    }
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Qmp { class, desc } => write!(f, "QMP error {class}: {desc}"),
            QmpError::Timeout { awaiting } => write!(f, "timed out awaiting {awaiting}"),
            QmpError::Eof => f.write_str("connection closed by peer (end of file)"),
            QmpError::Malformed { line } => write!(f, "unexpected QMP line: {line}"),
            QmpError::BeforeGreeting { line } => write!(
                f,
                "the server sent a message before its QMP greeting (refused, as QEMU's own \
                 client does): {line}"
            ),
            QmpError::Io(err) => write!(f, "I/O error: {err}"),
        }
    }
}

impl Error for QmpError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            QmpError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for QmpError {
    fn from(err: io::Error) -> Self {
        QmpError::Io(err)
    }
}
