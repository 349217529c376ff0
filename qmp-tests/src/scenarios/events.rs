//! Broadcast events on dynamic monitors: after negotiation, not before,
//! and to every monitor.

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::{
    program::Program,
    scenarios::{
        hotplug::{self, expect_event, DynMon},
        Ctx,
    },
};

pub fn after_negotiation(ctx: &mut Ctx) -> Result<()> {
    let (mon, mut client) = hotplug::add_negotiated(ctx, "")?;
    for name in hotplug::broadcast(ctx, 0)? {
        expect_event(ctx, &mut client, name)?;
    }
    // Every broadcast event, not two names: RESET comes from elsewhere
    // (qemu-system only; the daemon has no machine to reset).
    if ctx.settings.program == Program::System {
        ctx.main("system_reset", Value::Null)?;
        expect_event(ctx, &mut client, "RESET")?;
    }
    client.close();
    hotplug::remove(ctx, &mon)
}

pub fn none_before_negotiation(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let mut client = hotplug::connect(ctx, &mon)?;
    // The main monitor seeing them proves the events were broadcast while
    // the dynamic client sat in negotiation mode.
    for name in hotplug::broadcast(ctx, 0)? {
        let wait = ctx.wait();
        ctx.machine
            .qmp()
            .wait_event(name, wait)
            .with_context(|| format!("{name} on the main monitor"))?;
    }

    // Both events were emitted before we sent anything on the dynamic
    // monitor. Delivered at once, or queued for negotiation, they would
    // come before the replies to these two commands; held and flushed
    // later, they would come after: so the client watches a quiet window
    // too. The events after negotiation below are the positive control.
    client.negotiate(ctx.wait()).context("qmp_capabilities on the dynamic monitor")?;
    let alive = ctx.alive_command();
    hotplug::execute(ctx, &mut client, alive, Value::Null)?;
    let early = client
        .observe(hotplug::QUIET_WINDOW)
        .context("watching the dynamic monitor after negotiation")?;
    ensure!(
        early.silent(),
        "events broadcast before negotiation reached {} (up to {} ms after it negotiated): {}",
        mon.id,
        hotplug::QUIET_WINDOW.as_millis(),
        early.describe()
    );

    for name in hotplug::broadcast(ctx, 1)? {
        expect_event(ctx, &mut client, name)?;
    }
    client.close();
    hotplug::remove(ctx, &mon)
}

pub const MANY: usize = 8;

pub fn many(ctx: &mut Ctx) -> Result<()> {
    let mut mons = Vec::new();
    for i in 0..MANY {
        let mon = DynMon::new(ctx, &format!("-{i}"))?;
        hotplug::add(ctx, &mon)?;
        mons.push(mon);
    }
    let mut clients = Vec::new();
    for mon in &mons {
        clients.push(hotplug::connect_negotiated(ctx, mon)?);
    }
    let list = hotplug::query_monitors(ctx)?;
    let dynamic = list.iter().filter(|mon| mon["dynamic"] == true).count();
    ensure!(dynamic == MANY, "query-monitors lists {dynamic} dynamic monitors, not {MANY}");
    let names = hotplug::broadcast(ctx, 0)?;
    for client in &mut clients {
        for name in names {
            expect_event(ctx, client, name)?;
        }
    }
    for client in clients {
        client.close();
    }
    for mon in &mons {
        hotplug::remove(ctx, mon)?;
    }
    Ok(())
}
