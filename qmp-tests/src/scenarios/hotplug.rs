//! The steps every scenario is built from: add a socket chardev and a
//! monitor on it, connect, remove.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    program::Program,
    qmp::{Qmp, QmpError},
    scenarios::Ctx,
};

/// A dynamic monitor's ids and socket path.
pub struct DynMon {
    pub id: String,
    pub chardev: String,
    pub path: PathBuf,
}

impl DynMon {
    /// The spec's `hp-mon`/`hp-chr` pair; `suffix` tells several apart.
    pub fn new(ctx: &Ctx, suffix: &str) -> Result<DynMon> {
        Ok(DynMon {
            id: format!("hp-mon{suffix}"),
            chardev: format!("hp-chr{suffix}"),
            path: ctx.machine.socket_path(&format!("hp{suffix}.sock"))?,
        })
    }
}

pub fn add_chardev(ctx: &mut Ctx, chardev: &str, path: &std::path::Path) -> Result<()> {
    let path = path.to_str().context("socket path is not UTF-8")?;
    ctx.main(
        "chardev-add",
        json!({
            "id": chardev,
            "backend": { "type": "socket", "data": {
                "addr": { "type": "unix", "data": { "path": path } },
                "server": true,
                "wait": false,
            }},
        }),
    )?;
    Ok(())
}

/// chardev-add, then monitor-add on it.
pub fn add(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    add_chardev(ctx, &mon.chardev, &mon.path)?;
    add_monitor(ctx, mon)
}

/// monitor-add on the chardev already there.
pub fn add_monitor(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    ctx.add_monitor(json!({ "id": mon.id, "chardev": mon.chardev }))?;
    Ok(())
}

/// monitor-remove, then chardev-remove.
pub fn remove(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    ctx.remove_monitor(json!({ "id": mon.id }))?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// Connects to `mon` and checks the greeting has the shape of one.
pub fn connect(ctx: &Ctx, mon: &DynMon) -> Result<Qmp> {
    let client = ctx.connect(&mon.path, &mon.id)?;
    let qmp = &client.greeting()["QMP"];
    ensure!(
        qmp["version"].is_object() && qmp["capabilities"].is_array(),
        "greeting on {} lacks QMP.version or QMP.capabilities: {}",
        mon.id,
        client.greeting()
    );
    Ok(client)
}

/// A new monitor (`suffix` on the scenario's id) added, with a client
/// connected and negotiated.
pub fn add_negotiated(ctx: &mut Ctx, suffix: &str) -> Result<(DynMon, Qmp)> {
    let mon = DynMon::new(ctx, suffix)?;
    add(ctx, &mon)?;
    let client = connect_negotiated(ctx, &mon)?;
    Ok((mon, client))
}

/// Connects to `mon` and negotiates capabilities.
pub fn connect_negotiated(ctx: &Ctx, mon: &DynMon) -> Result<Qmp> {
    let mut client = connect(ctx, mon)?;
    client.negotiate(ctx.wait()).with_context(|| format!("qmp_capabilities on {}", mon.id))?;
    Ok(client)
}

/// Removes the monitor `client` is connected to, on that connection,
/// through the scenario's route; must succeed.
pub fn remove_itself(ctx: &Ctx, client: &mut Qmp, id: &str) -> Result<Value> {
    let (command, args) = ctx.remove_request(json!({ "id": id }));
    execute(ctx, client, command, args)
}

/// Runs `command` on a dynamic monitor's client; must succeed.
pub fn execute(ctx: &Ctx, client: &mut Qmp, command: &str, args: Value) -> Result<Value> {
    let what = super::ctx::describe(command, &args);
    client
        .execute(command, args, ctx.wait())
        .with_context(|| format!("{what} on {}", client.name()))
}

pub fn query_monitors(ctx: &mut Ctx) -> Result<Vec<Value>> {
    let list = ctx.main("query-monitors", Value::Null)?;
    let Value::Array(list) = list else {
        anyhow::bail!("query-monitors returned no list: {list}");
    };
    // Every monitor has a chardev; "" would be a name for none.
    if let Some(bad) = list.iter().find(|mon| mon["chardev"].as_str().is_none_or(str::is_empty)) {
        anyhow::bail!("query-monitors lists a monitor without a chardev name: {bad}");
    }
    Ok(list)
}

pub fn find_monitor<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|mon| mon["id"] == id)
}

/// Waits for the next event on `client` and checks its name.
pub fn expect_event(ctx: &Ctx, client: &mut Qmp, name: &str) -> Result<()> {
    let event = client
        .next_event(ctx.wait())
        .with_context(|| format!("waiting for {name} on {}", client.name()))?;
    ensure!(event["event"] == name, "expected event {name} on {}, got {event}", client.name());
    Ok(())
}

/// How long a check that something does NOT happen (no write, no close,
/// no execution, no event) watches for it. An observation period, not a
/// synchronisation: every such check first synchronises with QEMU, and
/// shows with a positive control that the same path produces output.
pub const QUIET_WINDOW: Duration = Duration::from_millis(300);

/// Watches `client` for [`QUIET_WINDOW`]: nothing may arrive, and the
/// connection must still be open at the end. `when` says at what point,
/// for the failure message.
pub fn expect_quiet(client: &mut Qmp, when: &str) -> Result<()> {
    let seen = client
        .observe(QUIET_WINDOW)
        .with_context(|| format!("watching {} {when}", client.name()))?;
    if seen.silent() {
        return Ok(());
    }
    let ms = QUIET_WINDOW.as_millis();
    if seen.closed && seen.messages.is_empty() && seen.partial.is_none() {
        bail!(
            "QEMU closed {}'s connection {when} (within {ms} ms); a self-removed monitor's \
             connection must stay open until the client closes it or chardev-remove",
            client.name()
        );
    }
    bail!("{} {when}, QEMU still wrote within {ms} ms: {}", client.name(), seen.describe())
}

/// The event qemu-storage-daemon broadcasts when an NBD export is deleted.
pub const EXPORT_EVENT: &str = "BLOCK_EXPORT_DELETED";
/// The node a removed monitor's client asks qemu-storage-daemon to add;
/// it must never appear.
const INERT_NODE: &str = "inert-node";
/// The null block node the daemon's NBD exports serve.
const EXPORT_NODE: &str = "ev-node";

/// qemu-storage-daemon's event source, made once per scenario: a null
/// block node and an NBD server on a unix socket in the machine's dir.
pub fn export_setup(ctx: &mut Ctx) -> Result<()> {
    let path = ctx.machine.socket_path("nbd.sock")?;
    let path = path.to_str().context("socket path is not UTF-8")?.to_owned();
    ctx.main("blockdev-add", json!({ "driver": "null-co", "node-name": EXPORT_NODE }))?;
    ctx.main("nbd-server-start", json!({ "addr": { "type": "unix", "data": { "path": path } } }))?;
    Ok(())
}

/// Adding and deleting the NBD export `id` (no client ever connects):
/// exactly one [`EXPORT_EVENT`], before the deletion's reply.
pub fn export_cycle(id: &str) -> [(&'static str, Value); 2] {
    [
        ("block-export-add", json!({ "type": "nbd", "id": id, "node-name": EXPORT_NODE })),
        ("block-export-del", json!({ "id": id })),
    ]
}

/// Makes QEMU broadcast events from the main monitor and returns their
/// names, in order. qemu-system: `stop` and `cont`, with `-machine none`
/// nothing else emits events, so exactly STOP and RESUME.
/// qemu-storage-daemon has no run state: an NBD export added and deleted
/// gives exactly [`EXPORT_EVENT`]. `round` numbers the calls of one
/// scenario; without a [`control_stop_cont`] before it, the scenario's
/// first call is round 0, which makes the event source.
pub fn broadcast(ctx: &mut Ctx, round: usize) -> Result<&'static [&'static str]> {
    if ctx.settings.program == Program::System {
        ctx.main("stop", Value::Null)?;
        ctx.main("cont", Value::Null)?;
        return Ok(&["STOP", "RESUME"]);
    }
    if round == 0 {
        export_setup(ctx)?;
    }
    for (command, args) in export_cycle(&format!("ev-export{round}")) {
        ctx.main(command, args)?;
    }
    Ok(&[EXPORT_EVENT])
}

/// Positive control for the "nothing is executed" checks: `stop` and
/// `cont` on `client` are answered there, reach it as STOP and RESUME
/// (both emitted before the reply), and show on the main monitor.
///
/// qemu-storage-daemon has no run state: there an NBD export added and
/// deleted on `client` stands in, reaching it and the main monitor as
/// BLOCK_EXPORT_DELETED (emitted before the deletion's reply).
pub fn control_stop_cont(ctx: &mut Ctx, client: &mut Qmp) -> Result<()> {
    let expected: &[&str] = match ctx.settings.program {
        Program::System => {
            execute(ctx, client, "stop", Value::Null).context("positive control")?;
            execute(ctx, client, "cont", Value::Null).context("positive control")?;
            &["STOP", "RESUME"]
        }
        Program::StorageDaemon => {
            export_setup(ctx)?;
            for (command, args) in export_cycle("ctl-export") {
                execute(ctx, client, command, args).context("positive control")?;
            }
            &[EXPORT_EVENT]
        }
    };
    let names: Vec<Value> =
        client.take_events().into_iter().map(|ev| ev["event"].clone()).collect();
    ensure!(
        names == expected.iter().map(|name| json!(name)).collect::<Vec<_>>(),
        "positive control: the requests on {} delivered {} there, not {}",
        client.name(),
        Value::Array(names),
        expected.join(" and ")
    );
    for &event in expected {
        let wait = ctx.wait();
        ctx.machine
            .qmp()
            .wait_event(event, wait)
            .with_context(|| format!("positive control: {event} on the main monitor"))?;
    }
    Ok(())
}

/// The VM runs and the main monitor saw no STOP: a `stop` sent on a
/// removed monitor was not executed. `query-status` synchronises: events
/// emitted before it are read before its reply.
///
/// qemu-storage-daemon has no run state, so no `stop` can have run
/// there: it must still answer.
pub fn expect_running_no_stop(ctx: &mut Ctx, why: &str) -> Result<()> {
    if ctx.settings.program == Program::StorageDaemon {
        ctx.check_alive().with_context(|| why.to_owned())?;
        let nodes = ctx.main("query-named-block-nodes", Value::Null)?;
        let added = nodes
            .as_array()
            .is_some_and(|list| list.iter().any(|node| node["node-name"] == INERT_NODE));
        ensure!(
            !added,
            "{why}: query-named-block-nodes lists {INERT_NODE}: a blockdev-add the removed \
             monitor's client sent was executed"
        );
        return Ok(());
    }
    let status = ctx.main("query-status", Value::Null)?;
    let events = ctx.machine.qmp().take_events();
    let stops: Vec<&Value> = events.iter().filter(|ev| ev["event"] == "STOP").collect();
    ensure!(
        stops.is_empty() && status["status"] == "running",
        "{why}: the main monitor saw {} and query-status says {status}: a stop the removed \
         monitor's client sent was executed",
        Value::Array(events.clone())
    );
    Ok(())
}

/// A self-removed monitor's connection is inert: `stop` and a query sent
/// on it (and `exec-oob migrate-pause` with `oob`) are neither answered
/// nor executed, nothing else arrives, and the connection stays open.
///
/// Synchronisation: `query-monitors` on the main monitor runs after the
/// removal and no longer lists `mon`. Then [`QUIET_WINDOW`] of watching.
/// The caller has shown the same commands answered and executed on this
/// connection before the removal (the positive control).
pub fn check_removed_inert(ctx: &mut Ctx, client: &mut Qmp, mon: &DynMon, oob: bool) -> Result<()> {
    let mut requests = match ctx.settings.program {
        Program::System => vec![(false, "stop", Value::Null), (false, "query-status", Value::Null)],
        // A command with an effect the main monitor can see, and a query.
        Program::StorageDaemon => vec![
            (false, "blockdev-add", json!({ "driver": "null-co", "node-name": INERT_NODE })),
            (false, "query-version", Value::Null),
        ],
    };
    if oob {
        requests.push((true, "migrate-pause", Value::Null));
    }
    match client.send_batch(&requests, ctx.wait()) {
        Ok(_) => {}
        Err(QmpError::Eof) => bail!(
            "QEMU closed {}'s connection after it removed itself (it must stay open until the \
             client closes it or chardev-remove)",
            mon.id
        ),
        Err(err) => return Err(err).context("sending after self-removal"),
    }
    let list = query_monitors(ctx)?;
    if let Some(entry) = find_monitor(&list, &mon.id) {
        bail!("query-monitors still lists {} after it removed itself: {entry}", mon.id);
    }
    expect_quiet(client, "after removing itself and being sent a command and a query")?;
    expect_running_no_stop(ctx, &format!("after stop was sent on the removed {}", mon.id))
}

/// `stop` then `cont` on the main monitor, and their STOP and RESUME seen
/// there: the positive control for events that must not reach a removed
/// monitor.
///
/// On qemu-storage-daemon, [`broadcast`] after a [`control_stop_cont`].
pub fn main_stop_cont_seen(ctx: &mut Ctx) -> Result<()> {
    let names = broadcast(ctx, 1)?;
    for &event in names {
        let wait = ctx.wait();
        ctx.machine
            .qmp()
            .wait_event(event, wait)
            .with_context(|| format!("{event} on the main monitor"))?;
    }
    Ok(())
}

/// A second monitor on `old`'s chardev, with its own id.
pub fn successor(old: &DynMon) -> DynMon {
    DynMon { id: format!("{}-2", old.id), chardev: old.chardev.clone(), path: old.path.clone() }
}

/// Returns once query-monitors no longer lists `mon`, within one wait.
/// No event tells of a removal, and the dispatcher serves the monitors in
/// turn, so no one query is ordered after it: the queries repeat, each
/// answered by QEMU, none a sleep.
pub fn wait_unlisted(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    let deadline = ctx.wait();
    loop {
        let list = query_monitors(ctx)?;
        if find_monitor(&list, &mon.id).is_none() {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{} is still listed by query-monitors {:.1}s after it was removed",
            mon.id,
            ctx.wait_limit().as_secs_f64()
        );
    }
}
