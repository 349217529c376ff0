//! Removing a dynamic monitor while its client is busy or still there:
//! what the client sees, and what can be reused at once.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    qmp::{Pending, Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        lifecycle::full_cycle,
        Ctx,
    },
};

/// Requests the client pipelines; more than QEMU queues per monitor (8),
/// each slow enough (query-qmp-schema) that removal overtakes them.
const PIPELINED: usize = 16;

/// The client pipelines requests; once the first is answered the others
/// are queued or in flight, and monitor-remove from the main monitor
/// drops them: the client gets fewer replies, then end of file. The ids
/// and path are reusable at once.
pub fn remove_pipelined(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut client = hotplug::connect_negotiated(ctx, &mon)?;
    let mut ids = Vec::new();
    for _ in 0..PIPELINED {
        ids.push(
            client
                .send("query-qmp-schema", Value::Null, ctx.wait())
                .with_context(|| format!("pipelining query-qmp-schema on {}", mon.id))?,
        );
    }
    client
        .read_reply("query-qmp-schema", &ids[0], ctx.wait())
        .with_context(|| format!("the first pipelined query-qmp-schema on {}", mon.id))?;
    ctx.remove_monitor(json!({ "id": mon.id }))?;
    let rest = client.read_until_eof(ctx.wait()).with_context(|| {
        format!(
            "{}'s client after monitor-remove with requests queued",
            mon.id
        )
    })?;
    // Requests beyond QEMU's queue were never read: closing over them
    // must still be an orderly end of file, not a reset.
    ensure!(
        !client.was_reset(),
        "the client of {} saw a connection reset, not an orderly end of file, when the main \
         monitor removed it with requests unread",
        mon.id
    );
    let answered = 1 + rest.iter().filter(|m| m.get("return").is_some()).count();
    ctx.note(format!(
        "{answered} of {PIPELINED} pipelined requests answered before removal"
    ));
    ensure!(
        answered < PIPELINED,
        "all {PIPELINED} pipelined requests on {} were answered: the queued ones must be \
         dropped by monitor-remove",
        mon.id
    );
    check_gone(ctx, &mon)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    full_cycle(ctx, &mon).context("the same ids and path right after the removal")
}

/// The monitor is absent from query-monitors and the main monitor works.
fn check_gone(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    let list = hotplug::query_monitors(ctx)?;
    if let Some(entry) = hotplug::find_monitor(&list, &mon.id) {
        bail!(
            "query-monitors still lists {} after its removal: {entry}",
            mon.id
        );
    }
    Ok(())
}

/// Removing a monitor whose client is still connected (from the main
/// monitor, and by itself) releases ids and path at once: chardev-add and
/// monitor-add with the same ones work before the old client has gone.
pub fn reuse_while_connected(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut removed_by_main = hotplug::connect_negotiated(ctx, &mon)?;
    hotplug::remove(ctx, &mon)?;
    hotplug::add(ctx, &mon)
        .context("re-adding with the same ids and path, old client connected")?;
    let mut removed_itself = hotplug::connect_negotiated(ctx, &mon)?;
    hotplug::execute(ctx, &mut removed_itself, "query-version", Value::Null)?;
    removed_by_main
        .wait_eof(ctx.wait())
        .context("the client of the monitor removed from the main monitor must see end of file")?;

    hotplug::remove_itself(ctx, &mut removed_itself, &mon.id)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    full_cycle(ctx, &mon).context("the same ids and path after self-removal, client connected")?;
    removed_itself
        .wait_eof(ctx.wait())
        .context("the self-removed monitor's client must see end of file at chardev-remove")
}

/// Sends `command` on a self-removed monitor's connection; end of file
/// means QEMU closed it, which it must not.
fn send_after_removal(client: &mut Qmp, oob: bool, command: &str, ctx: &Ctx) -> Result<()> {
    let sent = if oob {
        client.send_oob(command, Value::Null, ctx.wait())
    } else {
        client.send(command, Value::Null, ctx.wait())
    };
    match sent {
        Ok(_) => Ok(()),
        Err(QmpError::Eof) => bail!(
            "QEMU closed {}'s connection after it removed itself (it must stay open until the \
             client closes it or chardev-remove)",
            client.name()
        ),
        Err(err) => Err(err).with_context(|| format!("sending {command} on {}", client.name())),
    }
}

/// After self-removal nothing the client sends is executed or answered,
/// not even exec-oob, and no event reaches it; the connection stays open
/// until chardev-remove.
pub fn self_removal_silence(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut client = hotplug::connect(ctx, &mon)?;
    ensure!(
        client.offers("oob"),
        "{} does not offer oob: {}",
        mon.id,
        client.greeting()
    );
    client
        .negotiate_with(&["oob"], ctx.wait())
        .with_context(|| format!("qmp_capabilities enabling oob on {}", mon.id))?;
    hotplug::remove_itself(ctx, &mut client, &mon.id)?;

    send_after_removal(&mut client, false, "query-version", ctx)?;
    // migrate-pause is allowed out-of-band and answers (with an error)
    // when no migration runs: any reply means it was executed.
    send_after_removal(&mut client, true, "migrate-pause", ctx)?;
    // Commands on the main monitor run after the removal has finished;
    // the events they cause are broadcast.
    check_gone(ctx, &mon)?;
    ctx.main("stop", Value::Null)?;
    ctx.main("cont", Value::Null)?;
    for event in ["STOP", "RESUME"] {
        let wait = ctx.wait();
        ctx.machine
            .qmp()
            .wait_event(event, wait)
            .with_context(|| format!("{event} on the main monitor"))?;
    }
    match client.pending()? {
        Pending::Nothing => {}
        Pending::Data => {
            // What it is, for the report; it may be a line cut short.
            let glance = ctx.wait().min(Instant::now() + Duration::from_secs(2));
            let what = client
                .read_any(glance)
                .map_or_else(|err| err.to_string(), |message| message.to_string());
            bail!("{} answered or sent after removing itself: {what}", mon.id)
        }
        Pending::Closed => bail!(
            "QEMU closed {}'s connection after it removed itself (it must stay open until the \
             client closes it or chardev-remove)",
            mon.id
        ),
    }
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    client
        .wait_eof(ctx.wait())
        .context("the self-removed monitor's client must see end of file at chardev-remove")?;
    let late = client.take_events();
    ensure!(
        late.is_empty(),
        "events reached {} after it removed itself: {}",
        mon.id,
        Value::Array(late)
    );
    Ok(())
}
