//! The scenarios: what each checks, and the context they run in.
//!
//! Each scenario gets its own QEMU (so they can run in parallel), one
//! deadline that bounds it as a whole, and a shorter limit for each wait
//! for a reply or an event inside it.

mod backends;
mod command_line;
mod ctx;
mod duplicate_ids;
mod errors;
mod events;
mod greeting;
mod hmp;
mod hotplug;
mod interop;
mod leaks;
mod lifecycle;
mod object;
mod orphan;
mod pretty;
mod query;
mod refusals;
mod removal;
mod soak;
mod stall;
mod storage_daemon;
mod takeover;
pub(crate) mod usage;

use std::{path::PathBuf, time::Duration};

use crate::{program::Program, route::Route};

use anyhow::Result;

pub use ctx::Ctx;
pub use hotplug::QUIET_WINDOW;

/// Knobs that change what scenarios do or how long they may take.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Deadline for one scenario.
    pub timeout: Duration,
    /// Deadline for each wait for a reply or an event; `None` derives it
    /// from the scenario's own QEMU (see [`wait_limit`]).
    pub wait: Option<Duration>,
    /// Full hotplug cycles in `test_soak`.
    pub soak_cycles: u32,
    /// QEMU's own Python client library, from the tree under test.
    pub python: Option<PythonClient>,
    /// A Python with the standalone `qemu.qmp` package installed.
    pub qmp_package: Option<PathBuf>,
    /// The QEMU program under test.
    pub program: Program,
}

/// Where `qemu.qmp` comes from and what runs it.
#[derive(Clone, Debug)]
pub struct PythonClient {
    pub interpreter: PathBuf,
    /// The QEMU source tree; its `python/` directory holds `qemu.qmp`.
    pub qemu_src: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(60),
            wait: None,
            soak_cycles: soak::DEFAULT_CYCLES,
            python: None,
            qmp_package: None,
            program: Program::System,
        }
    }
}

/// A wait's default limit is this many times the scenario's QEMU start...
pub const WAIT_FACTOR: u32 = 100;
/// ...but never less than this.
pub const MIN_WAIT: Duration = Duration::from_secs(2);

/// How long one wait for a reply or an event may take: `settings.wait`,
/// or [`WAIT_FACTOR`] times `start` (spawn to a negotiated main monitor,
/// measured on the scenario's own QEMU) and at least [`MIN_WAIT`]. A
/// loaded machine or a sanitizer build starts QEMU slower and so gets
/// longer waits; a QEMU that withholds a reply fails in seconds, not at
/// the scenario's deadline.
pub fn wait_limit(settings: &Settings, start: Duration) -> Duration {
    settings.wait.unwrap_or_else(|| start.saturating_mul(WAIT_FACTOR).max(MIN_WAIT))
}

/// The scenarios the specification names; the rest came after.
pub const SPECIFIED: [&str; 4] = [
    "test_hotplug_cycle",
    "test_self_removal",
    "test_large_response",
    "test_events_after_negotiation",
];

pub struct Scenario {
    pub name: &'static str,
    /// Added to QEMU's command line for this scenario.
    pub extra_args: &'static [&'static str],
    run: fn(&mut Ctx) -> Result<()>,
    /// The timeout covers `DEFAULT_CYCLES`; more cycles get
    /// proportionally more time.
    scales_with_soak: bool,
    /// Drives a monitor with QEMU's Python client, so it needs the tree.
    needs_python: bool,
    /// Drives monitors with the standalone qemu.qmp package.
    needs_package: bool,
    /// Takes many times longer than most: started before the others.
    pub long: bool,
    /// The routes it makes sense on; most scenarios run on every route.
    pub routes: &'static [Route],
}

impl Scenario {
    /// A scenario with default settings; the suite's own are in [`all`].
    pub const fn new(name: &'static str, run: fn(&mut Ctx) -> Result<()>) -> Scenario {
        Scenario {
            name,
            extra_args: &[],
            run,
            scales_with_soak: false,
            needs_python: false,
            needs_package: false,
            long: false,
            routes: &Route::ALL,
        }
    }

    /// Why this scenario cannot run with `settings`, if it cannot.
    pub fn skip_reason(&self, settings: &Settings) -> Option<String> {
        if let (Program::StorageDaemon, Some(why)) =
            (settings.program, storage_daemon::system_only(self.name))
        {
            return Some(format!("not on qemu-storage-daemon: {why}"));
        }
        if self.needs_python && settings.python.is_none() {
            return Some(
                "no QEMU source tree given (--qemu-src): qemu.qmp comes from the tree under test"
                    .to_string(),
            );
        }
        (self.needs_package && settings.qmp_package.is_none()).then(|| {
            "no Python with the qemu.qmp package given (--qmp-python); cargo xtask test \
             installs one when the package index answers"
                .to_string()
        })
    }

    pub fn run(&self, ctx: &mut Ctx) -> Result<()> {
        (self.run)(ctx)
    }

    pub fn timeout(&self, settings: &Settings) -> Duration {
        if !self.scales_with_soak {
            return settings.timeout;
        }
        let factor = settings.soak_cycles.div_ceil(soak::DEFAULT_CYCLES).max(1);
        settings.timeout.saturating_mul(factor)
    }
}

static ALL: &[Scenario] = &[
    Scenario::new("test_hotplug_cycle", lifecycle::hotplug_cycle),
    Scenario::new("test_self_removal", lifecycle::self_removal),
    Scenario::new("test_self_removal_chardev_remove", lifecycle::self_removal_chardev_remove),
    Scenario { long: true, ..Scenario::new("test_large_response", query::large_response) },
    Scenario::new("test_events_after_negotiation", events::after_negotiation),
    Scenario { extra_args: errors::EXTRA_ARGS, ..Scenario::new("test_errors", errors::errors) },
    Scenario::new("test_query_monitors", query::query_monitors),
    Scenario::new("test_no_events_before_negotiation", events::none_before_negotiation),
    Scenario::new("test_remove_connected", lifecycle::remove_connected),
    Scenario::new("test_reconnect", lifecycle::reconnect),
    Scenario::new("test_many", events::many),
    Scenario { scales_with_soak: true, long: true, ..Scenario::new("test_soak", soak::soak) },
    Scenario::new("test_quit_with_monitors", lifecycle::quit_with_monitors),
    Scenario {
        needs_python: true,
        long: true,
        ..Scenario::new("test_qemu_python_client", interop::qemu_python_client)
    },
    Scenario::new("test_greeting", greeting::greeting),
    Scenario {
        extra_args: refusals::EXTRA_ARGS,
        ..Scenario::new("test_command_line_monitors", refusals::command_line_listed)
    },
    Scenario {
        extra_args: refusals::EXTRA_ARGS,
        ..Scenario::new("test_remove_refused", refusals::remove_refused)
    },
    Scenario {
        extra_args: refusals::EXTRA_ARGS,
        ..Scenario::new("test_add_refused", refusals::add_refused)
    },
    Scenario {
        extra_args: refusals::EXTRA_ARGS,
        ..Scenario::new("test_add_malformed_id", refusals::add_malformed_id)
    },
    Scenario {
        extra_args: refusals::EXTRA_ARGS,
        ..Scenario::new("test_add_mux_refused", refusals::add_mux_refused)
    },
    Scenario::new("test_remove_pipelined", removal::remove_pipelined),
    Scenario::new("test_reuse_while_connected", removal::reuse_while_connected),
    Scenario::new("test_self_removal_silence", removal::self_removal_silence),
    Scenario::new("test_stalled_client_commands", stall::stalled_client_commands),
    Scenario::new("test_stalled_client_quit", stall::stalled_client_quit),
    Scenario::new("test_stalled_client_sigterm", stall::stalled_client_sigterm),
    Scenario::new("test_slow_reader_drains", stall::slow_reader_drains),
    Scenario::new("test_removal_paths_no_leak", leaks::removal_paths),
    Scenario::new("test_getfd_closed_on_removal", leaks::getfd_closed),
    Scenario {
        needs_package: true,
        ..Scenario::new("test_qmp_asyncio_client", interop::qmp_asyncio_client)
    },
    Scenario::new("test_pretty", pretty::pretty),
    Scenario::new("test_pty_chardev", backends::pty),
    Scenario::new("test_pty_greeted_once", backends::pty_greeted_once),
    Scenario::new(
        "test_pty_self_removal_then_chardev_remove",
        backends::pty_self_removal_then_chardev_remove,
    ),
    Scenario::new(
        "test_pty_new_monitor_after_self_removal",
        backends::pty_new_monitor_after_self_removal,
    ),
    Scenario::new("test_reconnecting_client_chardev", backends::reconnecting_client),
    Scenario::new(
        "test_reconnecting_client_removed_while_connecting",
        backends::reconnecting_client_removed_while_connecting,
    ),
    Scenario::new("test_no_takeover", takeover::no_takeover),
    Scenario::new("test_no_takeover_other_frontend", takeover::no_takeover_other_frontend),
    Scenario::new("test_no_takeover_pending_output", takeover::no_takeover_pending_output),
    Scenario {
        routes: &[Route::Qom],
        ..Scenario::new("test_self_removal_hmp", lifecycle::self_removal_hmp)
    },
    Scenario {
        routes: &[Route::Qom],
        ..Scenario::new("test_self_removal_silence_hmp", removal::self_removal_silence_hmp)
    },
    Scenario::new("test_orphan_outlives_new_frontend", takeover::orphan_outlives_new_frontend),
    Scenario::new("test_waiting_client_greeted_after_orphan", orphan::waiting_client_greeted),
    Scenario::new("test_orphan_close_tcp", orphan::tcp_close),
    Scenario::new("test_orphan_eof_after_late_input", orphan::late_input_eof),
    Scenario::new("test_self_removed_eof_at_chardev_remove", orphan::eof_at_chardev_remove),
    Scenario {
        extra_args: refusals::PRECONFIG_ARGS,
        ..Scenario::new("test_preconfig", refusals::preconfig)
    },
    Scenario {
        extra_args: object::EXTRA_ARGS,
        routes: &[Route::Qom],
        ..Scenario::new("test_command_line_object", object::command_line_object)
    },
    Scenario {
        extra_args: duplicate_ids::EXTRA_ARGS,
        ..Scenario::new("test_duplicate_monitor_ids", duplicate_ids::duplicate_ids)
    },
];

/// Every scenario, in the order they are listed and started.
pub fn all() -> &'static [Scenario] {
    ALL
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().find(|scenario| scenario.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_include_the_specified_four() {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for name in SPECIFIED {
            assert!(names.contains(&name), "{name} missing");
        }
    }

    #[test]
    fn soak_time_scales_with_cycles() {
        let soak = find("test_soak").unwrap();
        let mut settings = Settings::default();
        assert_eq!(soak.timeout(&settings), settings.timeout);
        settings.soak_cycles = 100_000;
        assert_eq!(soak.timeout(&settings), settings.timeout * 500);
        assert_eq!(find("test_many").unwrap().timeout(&settings), settings.timeout);
    }
}

#[cfg(test)]
mod readme {
    /// docs/scenarios.md's table lists exactly the suite's scenarios.
    #[test]
    fn the_docs_table_is_the_suite() {
        let doc = include_str!("../../../docs/scenarios.md");
        let listed = crate::text::table_first_column(doc, "| scenario | checks |")
            .expect("docs/scenarios.md has the scenario table");
        let mut suite: Vec<&str> = super::all().iter().map(|s| s.name).collect();
        suite.sort();
        assert_eq!(listed, suite, "docs/scenarios.md's scenario table and the suite differ");
    }
}
