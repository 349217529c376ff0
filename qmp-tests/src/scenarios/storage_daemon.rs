//! Which scenarios run on qemu-storage-daemon. It offers the dynamic
//! monitor commands under the same rules as qemu-system, but it has no VM
//! run state (no `stop`, `cont`, STOP, RESUME, `query-status`), no HMP,
//! no `-qmp`/`-monitor`/`--preconfig`, no `getfd`, and no `monitor-qmp`
//! object type. The scenarios that need one of these are reported skipped
//! there, each with the reason below; every other scenario runs. (Where
//! qemu-system's scenarios use `stop` and `cont` as an event source or as
//! a command with a visible effect, the daemon's own stand in where the
//! helpers allow: see hotplug::broadcast and hotplug::control_stop_cont.)

const RUN_STATE: &str = "needs stop/cont and their STOP/RESUME events; it has no VM run state";
const COMMAND_LINE: &str =
    "needs -qmp, -monitor, HMP monitors and an rng-egd object on the command line; \
     it has QMP --monitor only";
const HMP: &str = "needs HMP (human-monitor-command); it has none";
const PRECONFIG: &str = "needs --preconfig; it has no machine phases";
const GETFD: &str = "needs getfd; it has none";
const OBJECT: &str = "needs -object monitor-qmp; monitor-qmp objects are qemu-system's";

/// Each scenario that does not run on qemu-storage-daemon, and why.
const SYSTEM_ONLY: &[(&str, &str)] = &[
    ("test_qemu_python_client", RUN_STATE),
    ("test_qmp_asyncio_client", RUN_STATE),
    ("test_remove_pipelined", RUN_STATE),
    ("test_self_removal_silence", RUN_STATE),
    ("test_no_takeover", RUN_STATE),
    ("test_no_takeover_other_frontend", RUN_STATE),
    ("test_command_line_monitors", COMMAND_LINE),
    ("test_remove_refused", COMMAND_LINE),
    ("test_add_refused", COMMAND_LINE),
    ("test_add_malformed_id", COMMAND_LINE),
    ("test_add_mux_refused", COMMAND_LINE),
    ("test_self_removal_hmp", HMP),
    ("test_self_removal_silence_hmp", HMP),
    ("test_preconfig", PRECONFIG),
    ("test_getfd_closed_on_removal", GETFD),
    ("test_command_line_object", OBJECT),
];

/// Why `scenario` does not run on qemu-storage-daemon; `None`: it does.
pub fn system_only(scenario: &str) -> Option<&'static str> {
    SYSTEM_ONLY.iter().find(|(name, _)| *name == scenario).map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_scenario_of_the_suite() {
        for (name, _) in SYSTEM_ONLY {
            assert!(super::super::find(name).is_some(), "{name} is no scenario");
        }
        assert!(system_only("test_hotplug_cycle").is_none());
        assert!(system_only("test_duplicate_monitor_ids").is_none());
    }
}
