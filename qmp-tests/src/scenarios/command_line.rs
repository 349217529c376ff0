//! A QEMU with one command-line monitor of every kind, each on a unix
//! socket of its own so that a scenario can reconnect to it afterwards.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::scenarios::{hmp, hotplug, Ctx};

/// Added to QEMU's command line; `{dir}` is the machine's temp dir.
pub const EXTRA_ARGS: &[&str] = &[
    "-qmp",
    "unix:{dir}/cl-qmp.sock,server=on,wait=off",
    "-monitor",
    "unix:{dir}/cl-hmp.sock,server=on,wait=off",
    "-chardev",
    "socket,id=cl-chr,path={dir}/cl-mon.sock,server=on,wait=off",
    "-mon",
    "chardev=cl-chr,mode=control,id=cl-mon",
    "-chardev",
    "socket,id=hmp-chr,path={dir}/hmp-mon.sock,server=on,wait=off",
    "-mon",
    "chardev=hmp-chr,mode=readline,id=hmp-mon",
    // What -serial mon:stdio makes: an HMP monitor on a multiplexed
    // chardev (with mux-chr-base under it).
    "-chardev",
    "socket,id=mux-chr,path={dir}/mux.sock,server=on,wait=off,mux=on",
    "-mon",
    "chardev=mux-chr,mode=readline,id=mux-mon",
    // A multiplexed chardev nobody uses yet.
    "-chardev",
    "socket,id=bare-mux,path={dir}/bare-mux.sock,server=on,wait=off,mux=on",
    // A chardev with a frontend that is no monitor.
    "-chardev",
    "null,id=rng-chr",
    "-object",
    "rng-egd,id=rng0,chardev=rng-chr",
];

/// One monitor from [`EXTRA_ARGS`] (the main monitor is not listed).
pub struct CommandLineMonitor {
    /// What made it: `-qmp`, `-monitor`, `-mon`.
    pub option: &'static str,
    /// `-qmp` and `-monitor` give `compat_monitorN` in option order.
    pub id: &'static str,
    pub chardev: &'static str,
    pub mode: &'static str,
    pub socket: &'static str,
}

pub const MONITORS: [CommandLineMonitor; 5] = [
    CommandLineMonitor {
        option: "-qmp",
        id: "compat_monitor0",
        chardev: "compat_monitor0",
        mode: "control",
        socket: "cl-qmp.sock",
    },
    CommandLineMonitor {
        option: "-monitor",
        id: "compat_monitor1",
        chardev: "compat_monitor1",
        mode: "readline",
        socket: "cl-hmp.sock",
    },
    CommandLineMonitor {
        option: "-mon mode=control",
        id: "cl-mon",
        chardev: "cl-chr",
        mode: "control",
        socket: "cl-mon.sock",
    },
    CommandLineMonitor {
        option: "-mon mode=readline",
        id: "hmp-mon",
        chardev: "hmp-chr",
        mode: "readline",
        socket: "hmp-mon.sock",
    },
    CommandLineMonitor {
        option: "-mon mode=readline on a mux=on chardev",
        id: "mux-mon",
        chardev: "mux-chr",
        mode: "readline",
        socket: "mux.sock",
    },
];

impl CommandLineMonitor {
    pub fn path(&self, ctx: &Ctx) -> Result<PathBuf> {
        ctx.machine.socket_path(self.socket)
    }

    pub fn describe(&self) -> String {
        format!("the {} monitor {}", self.option, self.id)
    }
}

/// Checks `list` (from query-monitors) has every command-line monitor,
/// by id, with its chardev and mode, and `dynamic` false.
pub fn check_listed(list: &[Value]) -> Result<()> {
    for mon in &MONITORS {
        let Some(entry) = hotplug::find_monitor(list, mon.id) else {
            bail!(
                "query-monitors does not list {} (id {}): {}",
                mon.describe(),
                mon.id,
                Value::Array(list.to_vec())
            );
        };
        ensure!(
            entry["dynamic"] == false
                && entry["mode"] == mon.mode
                && entry["chardev"] == mon.chardev,
            "{} should be listed with dynamic false, mode {} and chardev {}: {entry}",
            mon.describe(),
            mon.mode,
            mon.chardev
        );
    }
    Ok(())
}

/// Reconnects to every command-line monitor and has it run a command:
/// QMP ones greet, negotiate and answer query-version, HMP ones answer
/// `info version`.
pub fn check_all_work(ctx: &mut Ctx) -> Result<()> {
    let version = ctx.main("query-version", Value::Null)?;
    let qemu = &version["qemu"];
    let version = format!("{}.{}.{}", qemu["major"], qemu["minor"], qemu["micro"]);
    for mon in &MONITORS {
        let path = mon.path(ctx)?;
        if mon.mode == "readline" {
            hmp::check_answers(ctx, &path, mon.id, &version)?;
            continue;
        }
        let mut client = ctx.connect(&path, mon.id)?;
        client
            .negotiate(ctx.wait())
            .with_context(|| format!("qmp_capabilities on {}", mon.describe()))?;
        hotplug::execute(ctx, &mut client, "query-version", Value::Null)
            .with_context(|| mon.describe())?;
        client.close();
    }
    Ok(())
}
