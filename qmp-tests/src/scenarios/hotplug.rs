//! The steps every scenario is built from: add a socket chardev and a
//! monitor on it, connect, remove.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::{qmp::Qmp, scenarios::Ctx};

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

/// Connects to `mon` and negotiates capabilities.
pub fn connect_negotiated(ctx: &Ctx, mon: &DynMon) -> Result<Qmp> {
    let mut client = connect(ctx, mon)?;
    client
        .negotiate(ctx.wait())
        .with_context(|| format!("qmp_capabilities on {}", mon.id))?;
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
    if let Some(bad) = list
        .iter()
        .find(|mon| mon["chardev"].as_str().is_none_or(str::is_empty))
    {
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
    ensure!(
        event["event"] == name,
        "expected event {name} on {}, got {event}",
        client.name()
    );
    Ok(())
}
