//! What monitor-add and monitor-remove must refuse, with every kind of
//! command-line monitor present: each refusal is a QMP error, changes
//! nothing in query-monitors, and leaves every monitor working.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::scenarios::{
    command_line::{self, MONITORS},
    hotplug::{self, DynMon},
    Ctx,
};

pub use command_line::EXTRA_ARGS;

/// `command args` must be refused and leave query-monitors as `before`.
fn refused_unchanged(
    ctx: &mut Ctx,
    what: &str,
    request: (&str, Value),
    names: &[&str],
    before: &[Value],
) -> Result<()> {
    let err = ctx.main_refused_naming(request, names).context(what.to_string())?;
    ctx.note(format!("{what}: {err}"));
    let after = hotplug::query_monitors(ctx)?;
    ensure!(
        after == before,
        "{what} changed query-monitors from {} to {}",
        Value::Array(before.to_vec()),
        Value::Array(after)
    );
    Ok(())
}

/// The dynamic monitor `mon` still greets, negotiates and answers.
fn check_dynamic_works(ctx: &mut Ctx, mon: &DynMon) -> Result<()> {
    let mut client = hotplug::connect_negotiated(ctx, mon)?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();
    Ok(())
}

/// A dynamic monitor next to the command-line ones, and a free chardev.
fn setup(ctx: &mut Ctx) -> Result<(DynMon, DynMon)> {
    let existing = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &existing)?;
    let free = DynMon::new(ctx, "-free")?;
    hotplug::add_chardev(ctx, &free.chardev, &free.path)?;
    Ok((existing, free))
}

/// Everything still works after the refusals, and the free chardev was
/// not claimed by any of them.
fn check_nothing_broken(ctx: &mut Ctx, existing: &DynMon, free: &DynMon) -> Result<()> {
    command_line::check_all_work(ctx).context("after the refusals")?;
    check_dynamic_works(ctx, existing).context("after the refusals")?;
    hotplug::add_monitor(ctx, free)
        .context("monitor-add on the chardev the refused attempts named")?;
    check_dynamic_works(ctx, free)?;
    hotplug::remove(ctx, free)?;
    hotplug::remove(ctx, existing)
}

/// `dynamic` is false for every command-line monitor (with an id or
/// not), `mode` is readline for HMP ones, and no chardev is "".
pub fn command_line_listed(ctx: &mut Ctx) -> Result<()> {
    let (existing, free) = setup(ctx)?;
    let list = hotplug::query_monitors(ctx)?;
    command_line::check_listed(&list)?;
    let Some(main) = list.iter().find(|m| m["chardev"] == "main") else {
        bail!("query-monitors does not list the main monitor (chardev main)");
    };
    ensure!(
        main["dynamic"] == false && main["mode"] == "control",
        "the main monitor (-mon without id) should be listed with dynamic false and mode \
         control: {main}"
    );
    let dynamic: Vec<&Value> = list.iter().filter(|m| m["dynamic"] == true).collect();
    ensure!(
        dynamic.len() == 1 && dynamic[0]["id"] == existing.id.as_str(),
        "exactly {} should be dynamic, got {}",
        existing.id,
        Value::Array(list.clone())
    );
    ensure!(
        list.len() == MONITORS.len() + 2,
        "query-monitors should list {} monitors (main, {} command-line, 1 dynamic): {}",
        MONITORS.len() + 2,
        MONITORS.len(),
        Value::Array(list)
    );
    hotplug::remove(ctx, &existing)?;
    ctx.main("chardev-remove", json!({ "id": free.chardev }))?;
    Ok(())
}

/// monitor-remove refuses every command-line monitor (-qmp, -monitor,
/// -mon) and a missing id; all monitors keep working.
pub fn remove_refused(ctx: &mut Ctx) -> Result<()> {
    let (existing, free) = setup(ctx)?;
    let before = hotplug::query_monitors(ctx)?;
    for mon in &MONITORS {
        let what = format!("monitor-remove of {}", mon.describe());
        refused_unchanged(
            ctx,
            &what,
            ctx.remove_request(json!({ "id": mon.id })),
            &[mon.id],
            &before,
        )?;
    }
    refused_unchanged(
        ctx,
        "monitor-remove without an id",
        ctx.remove_request(json!({})),
        &["id"],
        &before,
    )?;
    check_nothing_broken(ctx, &existing, &free)
}

/// monitor-add refuses a missing id or chardev, and a chardev that has
/// a frontend already: any command-line monitor's, the mux's base, a
/// non-monitor device's (rng-egd); all monitors keep working.
pub fn add_refused(ctx: &mut Ctx) -> Result<()> {
    let (existing, free) = setup(ctx)?;
    let before = hotplug::query_monitors(ctx)?;
    let mut cases = vec![
        ("monitor-add without an id".to_string(), json!({ "chardev": free.chardev }), "id"),
        ("monitor-add without a chardev".to_string(), json!({ "id": free.id }), "chardev"),
        (
            "monitor-add on the chardev of rng-egd (a frontend that is no monitor)".to_string(),
            json!({ "id": free.id, "chardev": "rng-chr" }),
            "rng-chr",
        ),
        (
            "monitor-add on mux-chr-base (the mux=on chardev's backend)".to_string(),
            json!({ "id": free.id, "chardev": "mux-chr-base" }),
            "mux-chr-base",
        ),
    ];
    for mon in MONITORS.iter().filter(|mon| mon.chardev != "mux-chr") {
        cases.push((
            format!("monitor-add on the chardev of {}", mon.describe()),
            json!({ "id": free.id, "chardev": mon.chardev }),
            mon.chardev,
        ));
    }
    // Ids are unique among all monitors, HMP ones included.
    for mon in &MONITORS {
        cases.push((
            format!("monitor-add with the id of {}", mon.describe()),
            json!({ "id": mon.id, "chardev": free.chardev }),
            mon.id,
        ));
    }
    for (what, args, name) in cases {
        refused_unchanged(ctx, &what, ctx.add_request(args), &[name], &before)?;
    }
    check_nothing_broken(ctx, &existing, &free)
}

/// Ids must be well-formed like every QEMU id: a letter first, then
/// letters, digits, '-', '.', '_'.
pub fn add_malformed_id(ctx: &mut Ctx) -> Result<()> {
    let (existing, free) = setup(ctx)?;
    let before = hotplug::query_monitors(ctx)?;
    for id in ["has space", "1abc", "_under", "a/b", "a,b"] {
        let what = format!("monitor-add with the malformed id {id:?}");
        let args = json!({ "id": id, "chardev": free.chardev });
        // The route's own id check may not repeat the id; no name asked.
        refused_unchanged(ctx, &what, ctx.add_request(args), &[], &before)?;
    }
    check_nothing_broken(ctx, &existing, &free)
}

/// A multiplexed chardev (mux=on, what -serial mon:stdio makes) is
/// refused even though the mux would take another frontend; the HMP
/// monitor on it keeps working.
pub fn add_mux_refused(ctx: &mut Ctx) -> Result<()> {
    let (existing, free) = setup(ctx)?;
    let before = hotplug::query_monitors(ctx)?;
    refused_unchanged(
        ctx,
        "monitor-add on a mux=on chardev (with an HMP monitor on it)",
        ctx.add_request(json!({ "id": free.id, "chardev": "mux-chr" })),
        &["mux-chr"],
        &before,
    )?;
    // Refused for being a mux, not for having a frontend.
    refused_unchanged(
        ctx,
        "monitor-add on a mux=on chardev without a frontend",
        ctx.add_request(json!({ "id": free.id, "chardev": "bare-mux" })),
        &["bare-mux"],
        &before,
    )?;
    check_nothing_broken(ctx, &existing, &free)
}

/// QEMU waits in preconfig, with a chardev for the monitor.
pub const PRECONFIG_ARGS: &[&str] =
    &["--preconfig", "-chardev", "socket,id=pre-chr,path={dir}/pre.sock,server=on,wait=off"];

/// In `--preconfig` (before the machine is initialised), with a chardev
/// from the command line: "Adding and removing are allowed in the same
/// phases: a monitor that can be added in --preconfig can be removed
/// there too (both routes)." On series v4 monitor-remove was refused
/// there while monitor-add worked.
pub fn preconfig(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon {
        id: "pre-mon".into(),
        chardev: "pre-chr".into(),
        path: ctx.machine.socket_path("pre.sock")?,
    };
    let status = ctx.main("query-status", Value::Null)?;
    ensure!(
        status["status"] == "prelaunch" || status["status"] == "preconfig",
        "QEMU with --preconfig reports {status}, not the preconfig phase"
    );
    hotplug::add_monitor(ctx, &mon).context("adding a monitor in preconfig")?;
    let mut client = hotplug::connect_negotiated(ctx, &mon)?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    ctx.remove_monitor(json!({ "id": mon.id }))
        .context("removing, in preconfig, the monitor added there")?;
    client.wait_eof(ctx.wait()).context("the client of the monitor removed in preconfig")?;
    hotplug::wait_unlisted(ctx, &mon)
}
