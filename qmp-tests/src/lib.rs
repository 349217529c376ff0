//! Tests for QEMU's dynamic QMP monitors (`monitor-add`, `monitor-remove`,
//! `query-monitors`), and the QMP client and QEMU launcher they run on.
//!
//! [`Machine`] starts a QEMU with a main QMP monitor; [`Qmp`] talks to
//! any QMP socket; [`runner`] runs the [`scenarios`] and the [`report`]
//! and [`junit`] modules present the outcome.
//!
//! ```no_run
//! use std::{path::Path, time::{Duration, Instant}};
//!
//! use qmp_tests::{LaunchOptions, Machine};
//! use serde_json::Value;
//!
//! let qemu = Path::new("qemu-system-x86_64");
//! let mut machine = Machine::launch(qemu, &LaunchOptions::default())?;
//! let version = machine.cmd("query-version", Value::Null)?;
//! let deadline = Instant::now() + Duration::from_secs(30);
//! let schema: Vec<u8> = machine
//!     .qmp()
//!     .execute_raw("query-qmp-schema", Value::Null, deadline)?;
//! let shutdown = machine.shutdown()?;
//! println!("{version}: {} schema bytes; QEMU {shutdown}", schema.len());
//! # anyhow::Ok(())
//! ```

pub mod cli;
pub mod deadline;
pub mod exit;
pub mod explore;
pub mod janitor;
pub mod junit;
pub mod machine;
pub mod outcome;
pub mod phases;
pub mod pidfd;
pub mod probe;
pub mod program;
pub mod qmp;
pub mod report;
pub mod route;
pub mod runner;
pub mod sanitizer;
pub mod scenarios;
pub mod text;

pub use machine::{LaunchOptions, Machine};
pub use qmp::{Qmp, QmpError, Transcript};

/// A path as the user meant it: relative to the directory the command was
/// run in, whatever directory a later step runs in.
pub fn absolute(path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::path::absolute(path).with_context(|| {
        format!("making {} absolute against the current directory", path.display())
    })
}
