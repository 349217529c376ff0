//! What dynamic monitors report and return.

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::junit::time_line;
use crate::route::{Route, QOM_TYPE};
use crate::scenarios::{
    hotplug::{self, DynMon},
    Ctx,
};

pub fn query_monitors(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let list = hotplug::query_monitors(ctx)?;
    let listed = Value::Array(list.clone());
    let Some(entry) = hotplug::find_monitor(&list, &mon.id) else {
        bail!("query-monitors does not list {}: {listed}", mon.id);
    };
    ensure!(
        entry["dynamic"] == true
            && entry["chardev"] == mon.chardev.as_str()
            && entry["mode"] == "control",
        "{} should be listed with dynamic true, chardev {} and mode control: {entry}",
        mon.id,
        mon.chardev
    );
    let Some(main) = list.iter().find(|m| m["chardev"] == "main") else {
        bail!("query-monitors does not list the command-line monitor on chardev main: {listed}");
    };
    ensure!(
        main["dynamic"] == false && main["mode"] == "control",
        "the command-line monitor should be listed with dynamic false and mode control: {main}"
    );

    ctx.remove_monitor(json!({ "id": mon.id }))?;
    let list = hotplug::query_monitors(ctx)?;
    ensure!(
        hotplug::find_monitor(&list, &mon.id).is_none(),
        "query-monitors still lists {} after monitor-remove: {}",
        mon.id,
        Value::Array(list.clone())
    );
    ensure!(
        list.iter().any(|m| m["chardev"] == "main"),
        "the command-line monitor vanished from query-monitors: {}",
        Value::Array(list)
    );
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

pub fn large_response(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    let start = Instant::now();
    let raw = client
        .execute_raw("query-qmp-schema", Value::Null, ctx.wait())
        .context("query-qmp-schema on the dynamic monitor")?;
    let received = start.elapsed();
    let reply = crate::qmp::parse(&raw)
        .with_context(|| format!("the {}-byte query-qmp-schema reply is not JSON", raw.len()))?;
    // A fresh QEMU's first large reply, and our parse (`cargo xtask bench` reads both).
    ctx.note(time_line("timing", "query-qmp-schema reply", received));
    ctx.note(time_line("timing", "query-qmp-schema parse", start.elapsed() - received));
    let Some(schema) = reply["return"].as_array() else {
        bail!("query-qmp-schema on {} returned no list ({} bytes)", mon.id, raw.len());
    };
    ensure!(!schema.is_empty(), "query-qmp-schema on {} returned an empty list", mon.id);
    ctx.note(format!(
        "query-qmp-schema: {} bytes in one line, {} entries",
        raw.len(),
        schema.len()
    ));
    // Intact, not merely parseable: every entry has the shape the schema
    // introspection gives, and the schema knows the command under test.
    // (A second query on the main monitor as a reference would double the
    // scenario's time: QEMU builds this reply anew each time.)
    if let Some(bad) = schema.iter().find(|e| !e["name"].is_string() || !e["meta-type"].is_string())
    {
        bail!("query-qmp-schema on {} has an entry without name or meta-type: {bad}", mon.id);
    }
    // What the route added to the schema: the command, or the object type
    // among object-add's choices.
    let (listed, what) = match ctx.route() {
        Route::Commands => (
            schema.iter().any(|e| e["name"] == "monitor-add" && e["meta-type"] == "command"),
            "the monitor-add command",
        ),
        Route::Qom => (
            schema.iter().any(|e| {
                e["meta-type"] == "enum"
                    && e["values"]
                        .as_array()
                        .is_some_and(|values| values.iter().any(|v| v == QOM_TYPE))
            }),
            "the monitor-qmp object type",
        ),
    };
    ensure!(listed, "query-qmp-schema on {} does not list {what}", mon.id);
    client.close();
    hotplug::remove(ctx, &mon)
}
