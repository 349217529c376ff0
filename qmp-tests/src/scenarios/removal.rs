//! Removing a dynamic monitor while its client is busy or still there:
//! what the client sees, and what can be reused at once.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    qmp::{Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        lifecycle::full_cycle,
        Ctx,
    },
};

/// Requests the client pipelines in one write: `stop` and `cont` in
/// turn, so that each one executed changes the run state and emits exactly
/// one event on the main monitor. Far more than QEMU queues per monitor
/// (8 with OOB) or reads in the time the removal takes to arrive.
const PIPELINED: usize = 256;

/// The client (OOB negotiated, so QEMU queues requests ahead) pipelines
/// `stop`/`cont`; once the first is answered, the main monitor removes
/// the monitor. Exactly the requests executed before the removal (counted
/// by their events on the main monitor, which precede the reply to
/// monitor-remove) are answered; none is executed after it (no event in a
/// quiet window after it, and the run state matches the count); the
/// client sees an orderly end of file. The ids and path are reusable at
/// once.
pub fn remove_pipelined(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut client = hotplug::connect(ctx, &mon)?;
    client
        .negotiate_with(&["oob"], ctx.wait())
        .with_context(|| format!("qmp_capabilities enabling oob on {}", mon.id))?;
    let executed = pipeline_then_remove(ctx, &mon, &mut client)?;
    let rest = client.read_until_eof(ctx.wait()).with_context(|| {
        format!("{}'s client after monitor-remove with requests queued", mon.id)
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
        "{executed} of {PIPELINED} pipelined requests executed before the removal, {answered} \
         answered"
    ));
    ensure!(
        answered == executed,
        "{executed} pipelined requests on {} were executed before monitor-remove (their events \
         reached the main monitor before its reply), but {answered} were answered: each \
         request executed before the removal must be answered, no other",
        mon.id
    );
    ensure!(
        executed < PIPELINED,
        "all {PIPELINED} pipelined requests on {} ran before monitor-remove: the removal must \
         overtake queued and unread requests (nothing shows they are dropped)",
        mon.id
    );
    none_ran_after(ctx, &mon, executed)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    full_cycle(ctx, &mon).context("the same ids and path right after the removal")
}

/// Pipelines the stop/cont requests on `client`; once the first is
/// answered, the main monitor removes the monitor. How many of them were
/// executed before the removal, counted by their events.
fn pipeline_then_remove(ctx: &mut Ctx, mon: &DynMon, client: &mut Qmp) -> Result<usize> {
    let requests: Vec<(bool, &str, Value)> = (0..PIPELINED)
        .map(|i| (false, if i % 2 == 0 { "stop" } else { "cont" }, Value::Null))
        .collect();
    let ids = client
        .send_batch(&requests, ctx.wait())
        .with_context(|| format!("pipelining stop and cont on {}", mon.id))?;
    client
        .read_reply("stop", &ids[0], ctx.wait())
        .with_context(|| format!("the first pipelined stop on {}", mon.id))?;
    // Nothing else emits events in this QEMU (-machine none), and the
    // main monitor has not been read since negotiation: every STOP and
    // RESUME before the reply to monitor-remove is one request executed.
    // The main monitor keeps the dispatcher busy (query-qmp-schema takes
    // milliseconds) while the client's requests fill the monitor's queue;
    // the removal, sent in the same write, comes next.
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    let wait = ctx.wait();
    let main = ctx.machine.qmp();
    let main_ids = main
        .send_batch(&[(false, "query-qmp-schema", Value::Null), (false, command, args)], wait)
        .context("query-qmp-schema and the removal on the main monitor")?;
    main.read_reply("query-qmp-schema", &main_ids[0], wait)
        .context("query-qmp-schema on the main monitor")?;
    main.read_reply(command, &main_ids[1], wait)
        .with_context(|| format!("{command} of {} on the main monitor", mon.id))?;
    Ok(ctx
        .machine
        .qmp()
        .take_events()
        .iter()
        .filter(|ev| ev["event"] == "STOP" || ev["event"] == "RESUME")
        .count())
}

/// The monitor is gone from query-monitors, and none of the requests the
/// removal dropped runs after it: no event in a quiet window, and the run
/// state is what `executed` of them make. The VM is left running.
fn none_ran_after(ctx: &mut Ctx, mon: &DynMon, executed: usize) -> Result<()> {
    // None may run after the removal: watch the main monitor for events.
    check_gone(ctx, mon)?;
    let late = ctx
        .machine
        .qmp()
        .observe(hotplug::QUIET_WINDOW)
        .context("watching the main monitor after monitor-remove")?;
    ensure!(
        late.messages.is_empty() && !late.closed,
        "after monitor-remove of {}, its dropped requests still ran: the main monitor got {}",
        mon.id,
        late.describe()
    );
    let status = ctx.main("query-status", Value::Null)?;
    let expected = if executed % 2 == 1 { "paused" } else { "running" };
    ensure!(
        status["status"] == expected,
        "after {executed} alternating stop/cont ran before monitor-remove of {}, the VM should \
         be {expected}, but query-status says {status}",
        mon.id
    );
    if expected == "paused" {
        ctx.main("cont", Value::Null)?;
    }
    Ok(())
}

/// The monitor is absent from query-monitors and the main monitor works.
fn check_gone(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    let list = hotplug::query_monitors(ctx)?;
    if let Some(entry) = hotplug::find_monitor(&list, &mon.id) {
        bail!("query-monitors still lists {} after its removal: {entry}", mon.id);
    }
    Ok(())
}

/// Removing a monitor whose client is still connected (from the main
/// monitor, and by itself) releases ids and path at once: chardev-add and
/// monitor-add with the same ones work before the old client has gone.
pub fn reuse_while_connected(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut removed_by_main) = hotplug::add_negotiated(ctx, "")?;
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

/// With OOB negotiated: `exec-oob` and `stop` are answered and executed
/// on the monitor before its self-removal (the positive control); the
/// requests written together with the self-removal, in one write, are
/// dropped: exactly one reply (the removal's) arrives; afterwards nothing
/// sent is answered or executed, not even exec-oob, no event reaches the
/// client, and the connection stays open until chardev-remove.
pub fn self_removal_silence(ctx: &mut Ctx) -> Result<()> {
    silence_after(ctx, |ctx, id| ctx.remove_request(json!({ "id": id })))
}

/// The same with the removal asked through HMP: `human-monitor-command`
/// with `object_del` of the client's own monitor-qmp object. The
/// out-of-band command written after it must not run either, although
/// nothing in the QMP request itself names a monitor removal.
pub fn self_removal_silence_hmp(ctx: &mut Ctx) -> Result<()> {
    silence_after(ctx, |_, id| {
        ("human-monitor-command", json!({ "command-line": format!("object_del {id}") }))
    })
}

fn silence_after(
    ctx: &mut Ctx,
    removal: impl Fn(&Ctx, &str) -> (&'static str, Value),
) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut client = hotplug::connect(ctx, &mon)?;
    ensure!(client.offers("oob"), "{} does not offer oob: {}", mon.id, client.greeting());
    client
        .negotiate_with(&["oob"], ctx.wait())
        .with_context(|| format!("qmp_capabilities enabling oob on {}", mon.id))?;
    positive_control(ctx, &mut client, &mon)?;

    let (command, args) = removal(ctx, &mon.id);
    // A schema reply first keeps the dispatcher busy while the removal
    // waits in the queue, so QEMU reads what follows it before the
    // removal runs: the out-of-band command must not run all the same.
    let batch = [
        (false, "query-qmp-schema", Value::Null),
        (false, command, args),
        (false, "stop", Value::Null),
        (false, "query-status", Value::Null),
        (true, "migrate-pause", Value::Null),
    ];
    let ids = client.send_batch(&batch, ctx.wait())?;
    let (schema, early) = read_to_removal_reply(ctx, &mut client, &mon, command, &ids)?;
    ensure!(
        schema,
        "the query-qmp-schema written before the self-removal of {} was not answered before it",
        mon.id
    );
    ensure!(
        early.is_empty(),
        "of {} requests written in one write with the self-removal of {}, only the schema \
         before it and the removal may be answered, but {} also got: {}",
        batch.len(),
        mon.id,
        mon.id,
        Value::Array(early)
    );
    // The rest of that write is watched along with what follows.
    hotplug::check_removed_inert(ctx, &mut client, &mon, true)?;
    ctx.note(format!(
        "2 of {} requests written with the self-removal answered (the schema before it, the removal)",
        batch.len()
    ));

    hotplug::main_stop_cont_seen(ctx)?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    let late = client
        .read_until_eof(ctx.wait())
        .context("the self-removed monitor's client must see end of file at chardev-remove")?;
    ensure!(
        late.is_empty(),
        "after removing itself, {} received before the end of file: {}",
        mon.id,
        Value::Array(late)
    );
    Ok(())
}

/// The positive control: before its removal the monitor executes an
/// out-of-band command and stop and cont.
fn positive_control(ctx: &mut Ctx, client: &mut Qmp, mon: &DynMon) -> Result<()> {
    // migrate-pause is allowed out-of-band and answers (with an error)
    // when no migration runs: any reply means it was executed.
    let id = client.send_oob("migrate-pause", Value::Null, ctx.wait())?;
    match client.read_reply("migrate-pause", &id, ctx.wait()) {
        Ok(_) | Err(QmpError::Qmp { .. }) => {}
        Err(err) => {
            return Err(err).context(format!(
                "positive control: exec-oob migrate-pause on {} before its removal",
                mon.id
            ))
        }
    }
    hotplug::control_stop_cont(ctx, client)
}

/// Reads up to the reply to the removal (`ids[1]`): whether the schema
/// written before it (`ids[0]`) was answered, and what else arrived.
fn read_to_removal_reply(
    ctx: &Ctx,
    client: &mut Qmp,
    mon: &DynMon,
    command: &str,
    ids: &[String],
) -> Result<(bool, Vec<Value>)> {
    // Everything up to the removal's reply but the schema; anything else
    // is a request of that write answered (or its event) before the
    // removal finished.
    let mut early = Vec::new();
    let mut schema = false;
    let deadline = ctx.wait();
    loop {
        match client.read_any(deadline) {
            Ok(message) if message["id"] == ids[0].as_str() && !schema => schema = true,
            Ok(message) if message["id"] == ids[1].as_str() => {
                // HMP answers with its output: text there is an error.
                let ok = match message.get("return") {
                    Some(Value::String(text)) => text.trim().is_empty(),
                    other => other.is_some(),
                };
                ensure!(ok, "{command} of {} on itself failed: {message}", mon.id);
                return Ok((schema, early));
            }
            Ok(message) => early.push(message),
            Err(QmpError::Eof) => bail!(
                "the connection of {} dropped before the reply to {command} of itself arrived",
                mon.id
            ),
            Err(err) => return Err(err).context(format!("{command} of itself on {}", mon.id)),
        }
    }
}
