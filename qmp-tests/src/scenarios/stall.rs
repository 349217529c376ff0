//! A client that removes its own monitor with a lot of output pending
//! and then stops reading must not stall QEMU.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

use crate::{
    qmp::{Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        lifecycle::full_cycle,
        Ctx,
    },
};

/// Replies of hundreds of KiB each, far more than a socket buffer holds.
const SCHEMAS: usize = 4;

/// The client queues `SCHEMAS` query-qmp-schema and a monitor-remove of
/// its own monitor, then reads nothing.
fn stall(ctx: &mut Ctx, mon: &DynMon) -> Result<Qmp> {
    hotplug::add(ctx, mon)?;
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    for _ in 0..SCHEMAS {
        client
            .send("query-qmp-schema", Value::Null, ctx.wait())
            .with_context(|| format!("query-qmp-schema on {}", mon.id))?;
    }
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    client
        .send(command, args, ctx.wait())
        .with_context(|| format!("monitor-remove of itself on {}", mon.id))?;
    Ok(client)
}

/// Returns once the main monitor no longer lists `mon`. Each query is a
/// reply from the dispatcher, so this waits on replies, not time; the
/// dispatcher serves the client's requests in order, interleaved with
/// these.
/// There is no event for a removal, and the dispatcher takes requests
/// from the monitors in turn, so one query cannot be ordered after it:
/// the queries repeat, each a reply, all within one wait.
fn wait_removed(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::wait_unlisted(ctx, mon).map_err(|err| match err.downcast_ref::<QmpError>() {
        Some(QmpError::Timeout { .. }) => stalled_for(mon, "query-monitors", ctx.wait_limit()),
        _ => err,
    })
}

/// "Promptly" is one wait: QEMU needs milliseconds; waiting on the
/// client would mean forever.
fn prompt(ctx: &Ctx) -> Instant {
    ctx.wait()
}

fn stalled(err: QmpError, command: &str, mon: &DynMon, limit: Duration) -> anyhow::Error {
    match err {
        QmpError::Timeout { .. } => stalled_for(mon, command, limit),
        err => anyhow::Error::new(err).context(format!("{command} on the main monitor")),
    }
}

/// QEMU gave no reply to `command` within `limit` while `mon`'s client
/// does not read.
fn stalled_for(mon: &DynMon, command: &str, limit: Duration) -> anyhow::Error {
    anyhow::anyhow!(
        "QEMU stalled: {command} on the main monitor got no reply within {:.1}s while {}'s \
         client, which removed its monitor with output pending, does not read",
        limit.as_secs_f64(),
        mon.id
    )
}

/// Runs `command` on the main monitor within one wait.
fn promptly(ctx: &mut Ctx, mon: &DynMon, command: &str, args: Value) -> Result<Value> {
    let limit = prompt(ctx);
    ctx.machine
        .qmp()
        .execute(command, args, limit)
        .map_err(|err| stalled(err, command, mon, ctx.wait_limit()))
}

/// In-band commands on the main monitor keep working, and chardev-remove
/// of the stalled client's chardev succeeds, dropping the output.
pub fn stalled_client_commands(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let mut client = stall(ctx, &mon)?;
    wait_removed(ctx, &mon)?;
    let alive = ctx.alive_command();
    let reply = promptly(ctx, &mon, alive, Value::Null)?;
    super::ctx::check_alive_reply(alive, &reply)?;
    let other = DynMon::new(ctx, "-other")?;
    full_cycle(ctx, &other).context("another dynamic monitor while the client stalls")?;
    promptly(ctx, &mon, "chardev-remove", json!({ "id": mon.chardev }))?;
    let drained = client
        .read_until_eof(ctx.wait())
        .context("the stalled client after chardev-remove must see end of file")?;
    ensure!(
        !client.was_reset(),
        "chardev-remove reset the stalled client's connection instead of closing it"
    );
    ctx.note(format!(
        "the stalled client read {} complete messages before end of file",
        drained.len()
    ));
    Ok(())
}

/// quit on the main monitor ends QEMU promptly.
pub fn stalled_client_quit(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let _client = stall(ctx, &mon)?;
    // Stalled already is the defect too, but what quit does then is
    // the point here, so it is tried anyway.
    let stalled_before = match wait_removed(ctx, &mon) {
        Ok(()) => false,
        Err(err) => {
            ctx.note(format!("{err:#}"));
            true
        }
    };
    // The reply races with QEMU closing the socket on exit; QEMU exiting
    // is what counts, so no reply is fine too.
    let limit = prompt(ctx);
    match ctx.machine.qmp().execute("quit", Value::Null, limit) {
        Ok(_) | Err(QmpError::Eof | QmpError::Timeout { .. }) => {}
        Err(err) => return Err(err).context("quit on the main monitor"),
    }
    let Some(exit) = ctx.machine.wait_exit(limit)? else {
        let before = if stalled_before { " (in-band commands had stalled already)" } else { "" };
        bail!(
            "QEMU did not exit within {:.1}s of sending quit while {}'s client, which removed its \
             monitor with output pending, does not read{before}",
            ctx.wait_limit().as_secs_f64(),
            mon.id
        );
    };
    ensure!(exit.success(), "QEMU ended with {exit} after quit");
    Ok(())
}

/// SIGTERM ends QEMU promptly, as it does without the stalled client.
pub fn stalled_client_sigterm(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let _client = stall(ctx, &mon)?;
    // As for quit: what SIGTERM does is the point, stalled or not.
    if let Err(err) = wait_removed(ctx, &mon) {
        ctx.note(format!("{err:#}"));
    }
    let pid = ctx.machine.pid();
    // QEMU is our child and not reaped yet, so the pid is still its.
    let qemu = i32::try_from(pid).ok().and_then(Pid::from_raw);
    let qemu = qemu.with_context(|| format!("QEMU's pid {pid} is no process id"))?;
    kill_process(qemu, Signal::TERM).context("sending QEMU SIGTERM")?;
    let limit = prompt(ctx);
    let Some(exit) = ctx.machine.wait_exit(limit)? else {
        bail!(
            "QEMU did not exit within {:.1}s of SIGTERM while {}'s client, which removed its \
             monitor with output pending, does not read",
            ctx.wait_limit().as_secs_f64(),
            mon.id
        );
    };
    ctx.note(format!("QEMU after SIGTERM: {exit}"));
    Ok(())
}

/// A client that read nothing while it removed its own monitor with
/// replies of hundreds of KiB pending, and reads only once QEMU is done
/// with the removal, gets every reply complete, the removal's last; then
/// the connection stays open and silent until chardev-remove ends it.
pub fn slow_reader_drains(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    let mut ids = Vec::new();
    for _ in 0..SCHEMAS {
        ids.push(
            client
                .send("query-qmp-schema", Value::Null, ctx.wait())
                .with_context(|| format!("query-qmp-schema on {}", mon.id))?,
        );
    }
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    let removal = client
        .send(command, args, ctx.wait())
        .with_context(|| format!("{command} of itself on {}", mon.id))?;
    wait_removed(ctx, &mon)?;
    let alive = ctx.alive_command();
    promptly(ctx, &mon, alive, Value::Null)?;

    let mut bytes = 0;
    for id in &ids {
        let schema = client
            .read_reply("query-qmp-schema", id, ctx.wait())
            .with_context(|| format!("draining {}'s pending replies after the removal", mon.id))?;
        let Value::Array(entries) = &schema else {
            bail!("query-qmp-schema on {} returned no list: {schema:.200}", mon.id);
        };
        ensure!(!entries.is_empty(), "query-qmp-schema on {} returned an empty list", mon.id);
        bytes += schema.to_string().len();
    }
    let reply = client
        .read_reply(command, &removal, ctx.wait())
        .with_context(|| format!("the reply to {command} after the pending output"))?;
    ensure!(reply == json!({}), "{command} of itself on {} returned {reply}", mon.id);
    ctx.note(format!(
        "read {SCHEMAS} schema replies ({bytes} bytes of JSON) and the removal's reply after the removal"
    ));
    hotplug::expect_quiet(&mut client, "after draining its output")?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    client
        .wait_eof(ctx.wait())
        .context("the drained client after chardev-remove must see end of file")?;
    ensure!(
        !client.was_reset(),
        "chardev-remove reset the drained client's connection instead of closing it"
    );
    Ok(())
}
