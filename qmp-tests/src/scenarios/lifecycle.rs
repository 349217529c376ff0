//! Adding, using and removing dynamic monitors, and QEMU going away with
//! them.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    qmp::{Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// add, connect, greeting, negotiate, query-version, disconnect, remove.
pub(super) fn full_cycle(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add(ctx, mon)?;
    session_then_remove(ctx, mon)
}

/// An added monitor's new client is greeted, negotiates and gets
/// query-version answered, then disconnects; the monitor is removed.
pub(super) fn session_then_remove(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    let version = hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    ensure!(
        version["qemu"].is_object(),
        "query-version on {} has no return.qemu: {version}",
        mon.id
    );
    client.close();
    hotplug::remove(ctx, mon)
}

pub fn hotplug_cycle(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    full_cycle(ctx, &mon).context("first cycle")?;
    // Same ids and path: removal must have released all three.
    full_cycle(ctx, &mon).context("second cycle, same ids and path")
}

/// Sends monitor-remove for the monitor `client` is connected to, on that
/// same connection, and checks the reply arrives complete.
fn remove_self(ctx: &Ctx, client: &mut Qmp, mon: &DynMon) -> Result<()> {
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    match client.execute(command, args, ctx.wait()) {
        Ok(_) => Ok(()),
        Err(QmpError::Eof) => {
            bail!("the connection dropped before the reply to monitor-remove of itself arrived")
        }
        Err(err) => Err(err).context("monitor-remove of itself on the dynamic monitor"),
    }
}

/// Self-removal: the reply arrives complete; afterwards the connection
/// stays open and silent, and `stop` and a query sent on it are neither
/// answered nor executed (shown answered and executed before, as the
/// positive control); the client closes it itself, as QEMU's own Python
/// client does.
pub fn self_removal(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    hotplug::control_stop_cont(ctx, &mut client)?;
    remove_self(ctx, &mut client, &mon)?;
    hotplug::check_removed_inert(ctx, &mut client, &mon, false)?;
    client.close();
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// Self-removal with the client staying connected: the connection ends at
/// `chardev-remove`, and nothing at all reaches the client before that end
/// of file, neither a reply to what it sent after the removal nor an event.
pub fn self_removal_chardev_remove(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    hotplug::control_stop_cont(ctx, &mut client)?;
    remove_self(ctx, &mut client, &mon)?;
    // Events broadcast now must not reach the removed monitor; the main
    // monitor seeing them is the positive control.
    hotplug::main_stop_cont_seen(ctx)?;
    hotplug::check_removed_inert(ctx, &mut client, &mon, false)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    match client.read_any(ctx.wait()) {
        Err(QmpError::Eof) if client.was_reset() => bail!(
            "chardev-remove reset the self-removed monitor's connection instead of closing it \
             (QEMU left the client's input unread)"
        ),
        Err(QmpError::Eof) => {}
        Ok(message) => bail!(
            "after self-removal, {} received {message} before the end of file of chardev-remove",
            mon.id
        ),
        Err(err) => {
            return Err(err).context(
                "waiting for end of file on the self-removed monitor after chardev-remove",
            )
        }
    }
    // The ids and the path are free again.
    full_cycle(ctx, &mon).context("a full cycle with the same ids and path")
}

pub fn remove_connected(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    ctx.remove_monitor(json!({ "id": mon.id }))?;
    client
        .wait_eof(ctx.wait())
        .context("a client of a monitor removed from the main monitor must see end of file")?;
    ensure!(
        !client.was_reset(),
        "the client of {} saw a connection reset, not an orderly end of file, when the main \
         monitor removed it",
        mon.id
    );
    ctx.check_alive()?;
    let list = hotplug::query_monitors(ctx)?;
    ensure!(
        hotplug::find_monitor(&list, &mon.id).is_none(),
        "query-monitors still lists {} after monitor-remove",
        mon.id
    );
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

pub fn reconnect(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();

    let mut client = hotplug::connect(ctx, &mon).context("reconnecting")?;
    // A fresh session starts in negotiation mode: ordinary commands are
    // refused until qmp_capabilities.
    match client.execute("query-version", Value::Null, ctx.wait()) {
        Err(QmpError::Qmp { class, .. }) if class == "CommandNotFound" => {}
        Ok(_) => bail!("after reconnecting, query-version worked before negotiation"),
        Err(err) => return Err(err).context("query-version before negotiation after reconnecting"),
    }
    client.negotiate(ctx.wait()).context("qmp_capabilities after reconnecting")?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();
    hotplug::remove(ctx, &mon)
}

pub fn quit_with_monitors(ctx: &mut Ctx) -> Result<()> {
    let negotiated = DynMon::new(ctx, "-negotiated")?;
    let connected = DynMon::new(ctx, "-connected")?;
    let idle = DynMon::new(ctx, "-idle")?;
    for mon in [&negotiated, &connected, &idle] {
        hotplug::add(ctx, mon)?;
    }
    let mut clients =
        vec![hotplug::connect_negotiated(ctx, &negotiated)?, hotplug::connect(ctx, &connected)?];
    // The reply races with QEMU closing the socket on exit.
    let wait = ctx.wait();
    match ctx.machine.qmp().execute("quit", Value::Null, wait) {
        Ok(_) | Err(QmpError::Eof) => {}
        Err(err) => return Err(err).context("quit on the main monitor"),
    }
    // A hang on quit is the bug to catch here, so it gets no more time
    // than a normal shutdown does.
    let exit = ctx.machine.wait_exit(ctx.wait())?;
    let Some(exit) = exit else {
        bail!("QEMU did not exit after quit with dynamic monitors present");
    };
    ensure!(exit.success(), "QEMU ended with {exit} after quit");
    // The process is gone, so this only drains what was sent before.
    let drain = ctx.wait();
    for client in &mut clients {
        client.wait_eof(drain).with_context(|| format!("{} after QEMU exited", client.name()))?;
    }
    Ok(())
}

/// Self-removal through HMP: `human-monitor-command` with `object_del`
/// of its own monitor-qmp object, sent by the monitor's own client, is a
/// self-removal like `object-del`: the reply arrives complete, then the
/// connection stays open and inert until chardev-remove.
pub fn self_removal_hmp(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    hotplug::control_stop_cont(ctx, &mut client)?;
    let line = format!("object_del {}", mon.id);
    let output = hotplug::execute(
        ctx,
        &mut client,
        "human-monitor-command",
        json!({ "command-line": line }),
    )
    .context("human-monitor-command object_del of its own monitor")?;
    ensure!(
        output.as_str().is_some_and(|text| text.trim().is_empty()),
        "human-monitor-command {line:?} on {} printed {output} (an HMP error?)",
        mon.id
    );
    hotplug::check_removed_inert(ctx, &mut client, &mon, false)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    client.wait_eof(ctx.wait()).context("the client after chardev-remove must see end of file")?;
    Ok(())
}
