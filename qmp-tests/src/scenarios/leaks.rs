//! No fd or memory growth on any way a dynamic monitor ends, including
//! fds passed to it with getfd. (Under AddressSanitizer, LeakSanitizer
//! reports leaked memory at QEMU's exit; the runner fails on that.)

use std::fs::File;

use anyhow::{Context, Result};
use serde_json::json;

use crate::{
    qmp::Qmp,
    scenarios::{
        hotplug::{self, DynMon},
        soak::WARM_UP,
        usage::bounded_growth,
        Ctx,
    },
};

const CYCLES: u32 = 40;
/// fds passed per getfd cycle; a leak of them shows as this many per
/// cycle, far over the usage tolerance.
const PASSED_FDS: usize = 2;
const GETFD_CYCLES: u32 = 3;

type Cycle = fn(&mut Ctx, &DynMon) -> Result<()>;

/// The client removes its own monitor, then closes; chardev-remove.
fn self_removed(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add(ctx, mon)?;
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    hotplug::remove_itself(ctx, &mut client, &mon.id)?;
    client.close();
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// Removed from the main monitor with its client connected.
fn removed_connected(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add(ctx, mon)?;
    let client = hotplug::connect_negotiated(ctx, mon)?;
    remove_with_client(ctx, mon, client)
}

/// monitor-remove from the main monitor, the client sees end of file,
/// chardev-remove.
fn remove_with_client(ctx: &mut Ctx, mon: &DynMon, mut client: Qmp) -> Result<()> {
    ctx.remove_monitor(json!({ "id": mon.id }))?;
    client
        .wait_eof(ctx.wait())
        .with_context(|| format!("{}'s client after monitor-remove", mon.id))?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// Added and removed without a client ever connecting.
fn never_connected(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add(ctx, mon)?;
    hotplug::remove(ctx, mon)
}

/// monitor-add refused: the id is taken, then the chardev is busy.
fn refused_add(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add_chardev(ctx, &mon.chardev, &mon.path)?;
    ctx.main_refused_naming(
        ctx.add_request(json!({ "id": "hp-mon-taken", "chardev": mon.chardev })),
        &["hp-mon-taken"],
    )
    .context("monitor-add with an id in use")?;
    ctx.main_refused_naming(
        ctx.add_request(json!({ "id": mon.id, "chardev": "hp-chr-taken" })),
        &["hp-chr-taken"],
    )
    .context("monitor-add on a chardev in use")?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

pub fn removal_paths(ctx: &mut Ctx) -> Result<()> {
    // Holds the id and the chardev that refused_add collides with.
    let taken = DynMon::new(ctx, "-taken")?;
    hotplug::add(ctx, &taken)?;
    let mon = DynMon::new(ctx, "")?;
    let paths: [(&str, Cycle); 4] = [
        ("self-removal", self_removed),
        ("removal with the client connected", removed_connected),
        ("removal without a client", never_connected),
        ("refused monitor-add", refused_add),
    ];
    for (what, cycle) in paths {
        for i in 0..WARM_UP {
            cycle(ctx, &mon).with_context(|| format!("{what}: warm-up cycle {}", i + 1))?;
        }
        bounded_growth(ctx, what, CYCLES, |ctx| cycle(ctx, &mon))?;
    }
    hotplug::remove(ctx, &taken)
}

/// A client passes fds with getfd and never claims them; its monitor is
/// removed: the fds must be closed with it.
fn getfd_cycle(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    hotplug::add(ctx, mon)?;
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    for i in 0..PASSED_FDS {
        let file = File::open("/dev/null").context("opening /dev/null to pass")?;
        client
            .execute_with_fd(
                "getfd",
                json!({ "fdname": format!("unclaimed{i}") }),
                std::os::fd::AsFd::as_fd(&file),
                ctx.wait(),
            )
            .with_context(|| format!("getfd unclaimed{i} on {}", mon.id))?;
    }
    remove_with_client(ctx, mon, client)
}

pub fn getfd_closed(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    getfd_cycle(ctx, &mon).context("warm-up")?;
    let what = format!("removal with {PASSED_FDS} unclaimed getfd fds");
    // getfd succeeding proves QEMU received each fd.
    bounded_growth(ctx, &what, GETFD_CYCLES, |ctx| getfd_cycle(ctx, &mon))
}
