//! A new frontend on a self-removed monitor's chardev never inherits that
//! monitor's client: QEMU ends the old connection first (end of file, its
//! unread input discarded and never executed), and only a new client is
//! greeted.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    qmp::{Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// A self-removed monitor's client A that has then sent
/// `qmp_capabilities` and `stop`, which must never run.
fn removed_with_input(ctx: &mut Ctx, mon: &DynMon) -> Result<Qmp> {
    hotplug::add(ctx, mon)?;
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    hotplug::remove_itself(ctx, &mut client, &mon.id)?;
    client
        .send_batch(
            &[(false, "qmp_capabilities", Value::Null), (false, "stop", Value::Null)],
            ctx.wait(),
        )
        .context("sending qmp_capabilities and stop after self-removal")?;
    // Synchronise: the removal is complete once the main monitor answers.
    let list = hotplug::query_monitors(ctx)?;
    ensure!(
        hotplug::find_monitor(&list, &mon.id).is_none(),
        "query-monitors still lists {} after it removed itself",
        mon.id
    );
    Ok(client)
}

/// A, whose chardev just got a new frontend (`frontend`), must see end of
/// file and nothing before it: a greeting or any reply means the new
/// frontend took A's connection over.
fn expect_ended(ctx: &mut Ctx, client: &mut Qmp, frontend: &str) -> Result<()> {
    let mut got = Vec::new();
    let mut deadline = ctx.wait();
    let ended = loop {
        match client.read_any(deadline) {
            Ok(message) => {
                // Collect what follows for the report, briefly.
                if got.is_empty() {
                    deadline = deadline.min(Instant::now() + hotplug::QUIET_WINDOW);
                }
                got.push(message);
            }
            Err(QmpError::Eof) => break true,
            Err(QmpError::Timeout { .. }) => break false,
            Err(err) => {
                return Err(err).context(format!(
                    "the self-removed monitor's client after {frontend} on its chardev"
                ))
            }
        }
    };
    ensure!(
        got.is_empty(),
        "takeover: after {frontend} on its chardev, the self-removed monitor's client got {}{} \
         (it must see only end of file: a new frontend must not inherit the old client)",
        Value::Array(got),
        if ended { "" } else { " and no end of file" }
    );
    ensure!(
        ended,
        "takeover: after {frontend} on its chardev, the self-removed monitor's client did not \
         see end of file (QEMU must end that connection before a new frontend uses the chardev)"
    );
    hotplug::expect_running_no_stop(
        ctx,
        &format!("after {frontend} on the self-removed monitor's chardev"),
    )
}

/// monitor-add (or object-add monitor-qmp) again on the chardev of a
/// monitor that removed itself: the old client A sees end of file with
/// no greeting and no replies, its `stop` never runs, and a new client B
/// gets a fresh greeting and a working session.
pub fn no_takeover(ctx: &mut Ctx) -> Result<()> {
    let old = DynMon::new(ctx, "")?;
    let mut client = removed_with_input(ctx, &old)?;
    let new = hotplug::successor(&old);
    hotplug::add_monitor(ctx, &new)
        .context("adding a second monitor on the self-removed monitor's chardev")?;
    let (command, _) = ctx.add_request(json!({}));
    expect_ended(ctx, &mut client, command)?;

    super::lifecycle::session_then_remove(ctx, &new).context("a new client on the new monitor")
}

/// Another frontend (rng-egd, which works on -machine none) on the chardev
/// of a monitor that removed itself: the old client sees end of file and
/// nothing it sent runs.
pub fn no_takeover_other_frontend(ctx: &mut Ctx) -> Result<()> {
    let old = DynMon::new(ctx, "")?;
    let mut client = removed_with_input(ctx, &old)?;
    ctx.main(
        "object-add",
        json!({ "qom-type": "rng-egd", "id": "rng-hp", "chardev": old.chardev }),
    )
    .context("rng-egd on the self-removed monitor's chardev")?;
    expect_ended(ctx, &mut client, "object-add rng-egd")?;
    ctx.main("object-del", json!({ "id": "rng-hp" }))?;
    ctx.main("chardev-remove", json!({ "id": old.chardev }))?;
    Ok(())
}

/// The same with output still pending: A removed itself with four schema
/// replies queued and has read nothing when the new monitor is added.
/// monitor-add does not wait for A; A then gets every reply complete (the
/// output is not cut mid-line), the removal's last, and end of file, but
/// never the new monitor's greeting.
pub fn no_takeover_pending_output(ctx: &mut Ctx) -> Result<()> {
    pending_output(ctx, false)
}

/// The same, but the new monitor is removed from the main monitor before
/// A reads anything: "Removing the new frontend before the old
/// connection ended changes nothing for the old client: it still gets
/// all of its output, then end-of-file." (explore found this cut on
/// series v4: the removal ended a connection that frontend never owned.)
pub fn orphan_outlives_new_frontend(ctx: &mut Ctx) -> Result<()> {
    pending_output(ctx, true)
}

fn pending_output(ctx: &mut Ctx, remove_new_first: bool) -> Result<()> {
    const SCHEMAS: usize = 4;
    let old = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &old)?;
    let mut client = hotplug::connect_negotiated(ctx, &old)?;
    let mut batch: Vec<(bool, &str, Value)> =
        (0..SCHEMAS).map(|_| (false, "query-qmp-schema", Value::Null)).collect();
    let (command, args) = ctx.remove_request(json!({ "id": old.id }));
    batch.push((false, command, args));
    let ids = client
        .send_batch(&batch, ctx.wait())
        .context("queueing schema requests and the self-removal")?;
    // Synchronise: gone from query-monitors means the removal ran.
    hotplug::wait_unlisted(ctx, &old)?;
    let new = hotplug::successor(&old);
    hotplug::add_monitor(ctx, &new)
        .context("adding a second monitor while the self-removed one's output is pending")?;
    if remove_new_first {
        ctx.remove_monitor(json!({ "id": new.id }))
            .context("removing the new monitor while the old client's output is pending")?;
    }

    for (i, id) in ids.iter().enumerate() {
        let (_, name, _) = &batch[i];
        let reply = client.read_reply(name, id, ctx.wait()).with_context(|| {
            format!(
                "the self-removed monitor's pending reply {} of {} after a new monitor was added \
                 on its chardev (takeover, or output cut?)",
                i + 1,
                ids.len()
            )
        })?;
        if *name == "query-qmp-schema" {
            ensure!(
                reply.as_array().is_some_and(|list| !list.is_empty()),
                "query-qmp-schema {} returned {reply:.200}",
                i + 1
            );
        }
    }
    let (command, _) = ctx.add_request(json!({}));
    expect_ended(ctx, &mut client, command)?;
    if remove_new_first {
        ctx.main("chardev-remove", json!({ "id": new.chardev }))?;
        return Ok(());
    }
    super::lifecycle::session_then_remove(ctx, &new).context("a new client on the new monitor")
}
