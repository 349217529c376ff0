//! Monitor ids are unique among all of a program's monitors, command-line
//! ones included, in qemu-system and in qemu-storage-daemon alike: a
//! second command-line monitor with an id already taken stops the program
//! at start-up, and adding a monitor with a command-line monitor's id is
//! refused. (qemu-system's `-mon` refuses duplicates through its option
//! parser; qemu-storage-daemon's `--monitor` had no check, so
//! `monitor-remove` by id was ambiguous there.)

use std::{
    fs::{self, File},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    pidfd::PidFd,
    program::Program,
    scenarios::{
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// A command-line monitor with an id, on a socket the scenario connects to.
pub const EXTRA_ARGS: &[&str] = &[
    "-chardev",
    "socket,id=cl-chr,path={dir}/cl-mon.sock,server=on,wait=off",
    "-mon",
    "chardev=cl-chr,mode=control,id=cl-mon",
];
const CL_ID: &str = "cl-mon";
const DUP_ID: &str = "dup-mon";

/// Kills the program it holds if the scenario ends before it did.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn duplicate_ids(ctx: &mut Ctx) -> Result<()> {
    duplicates_on_command_line(ctx).context("two command-line monitors with one id")?;
    command_line_id_refused(ctx)
}

/// The same program, started with two monitors of one id (on two
/// chardevs), must exit with an error naming the id, and not run.
fn duplicates_on_command_line(ctx: &mut Ctx) -> Result<()> {
    let program = ctx.settings.program;
    let dir = ctx.machine.dir().to_path_buf();
    let mut args: Vec<String> = match program {
        Program::System => {
            ["-machine", "none", "-nodefaults", "-display", "none"].map(str::to_owned).to_vec()
        }
        Program::StorageDaemon => Vec::new(),
    };
    for name in ["dup-a", "dup-b"] {
        let path = ctx.machine.socket_path(&format!("{name}.sock"))?;
        args.push(program.spell("-chardev"));
        args.push(format!("socket,id={name},path={},server=on,wait=off", path.display()));
    }
    for name in ["dup-a", "dup-b"] {
        args.push(program.spell("-mon"));
        args.push(format!("chardev={name},mode=control,id={DUP_ID}"));
    }
    ctx.log("dup", &format!("starting {}", args.join(" ")));
    let log = dir.join("dup.stderr.log");
    let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let qemu = ctx.machine.qemu().to_path_buf();
    let child = Command::new(&qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let mut started = Started(child);
    let pidfd = PidFd::open(started.0.id())
        .with_context(|| format!("opening a pidfd for {}", qemu.display()))?;
    let exited = pidfd
        .wait_exit(ctx.wait())
        .with_context(|| format!("waiting for {} to exit", qemu.display()))?;
    if !exited {
        bail!(
            "{} started with two monitors with id {DUP_ID} and was still running {:.1}s \
             later; a duplicate monitor id must stop it at start-up",
            qemu.display(),
            ctx.wait_limit().as_secs_f64()
        );
    }
    let status = started.0.wait().with_context(|| format!("reaping {}", qemu.display()))?;
    let text = fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
    for line in text.lines() {
        ctx.log("dup", line);
    }
    ensure!(
        status.code().is_some_and(|code| code != 0),
        "{} with two monitors with id {DUP_ID} ended with {status}, not an error exit; \
         stderr: {}",
        qemu.display(),
        text.trim()
    );
    ensure!(
        text.to_lowercase().contains("duplicate") && text.contains(&format!("'{DUP_ID}'")),
        "{} refused two monitors with id {DUP_ID}, but its error does not say the id is a \
         duplicate: {}",
        qemu.display(),
        text.trim()
    );
    ctx.note(format!("refused at start-up: {}", text.trim()));
    Ok(())
}

/// Adding a monitor with the command-line monitor's id is refused, names
/// the id, changes nothing, and leaves the command-line monitor working;
/// the same chardev then takes a monitor with an id of its own.
fn command_line_id_refused(ctx: &mut Ctx) -> Result<()> {
    let free = DynMon::new(ctx, "")?;
    hotplug::add_chardev(ctx, &free.chardev, &free.path)?;
    let before = hotplug::query_monitors(ctx)?;
    ensure!(
        hotplug::find_monitor(&before, CL_ID).is_some(),
        "query-monitors does not list the command-line monitor {CL_ID}: {}",
        Value::Array(before.clone())
    );
    let request = ctx.add_request(json!({ "id": CL_ID, "chardev": free.chardev }));
    let err = ctx
        .main_refused_naming(request, &[CL_ID])
        .with_context(|| format!("adding a monitor with the command-line monitor's id {CL_ID}"))?;
    ctx.note(format!("adding {CL_ID} again: {err}"));
    let after = hotplug::query_monitors(ctx)?;
    ensure!(
        after == before,
        "the refused add changed query-monitors from {} to {}",
        Value::Array(before),
        Value::Array(after)
    );
    let cl = DynMon {
        id: CL_ID.to_owned(),
        chardev: "cl-chr".to_owned(),
        path: ctx.machine.socket_path("cl-mon.sock")?,
    };
    let mut client = hotplug::connect_negotiated(ctx, &cl)
        .context("the command-line monitor after the refused add")?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();
    hotplug::add_monitor(ctx, &free)
        .context("monitor-add on the chardev the refused add named, with an id of its own")?;
    let mut client = hotplug::connect_negotiated(ctx, &free)?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();
    hotplug::remove(ctx, &free)
}
