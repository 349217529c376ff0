//! Every way to misuse monitor-add and monitor-remove is refused and
//! changes nothing.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    qmp::QmpError,
    route::Route,
    scenarios::{
        ctx::check_refusal,
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// A second command-line monitor, with an id, so there is a
/// command-line monitor that monitor-remove can name.
pub const EXTRA_ARGS: &[&str] =
    &["-chardev", "null,id=cl-chr", "-mon", "chardev=cl-chr,mode=control,id=cl-mon"];

pub fn errors(ctx: &mut Ctx) -> Result<()> {
    let existing = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &existing)?;
    let free = DynMon::new(ctx, "-free")?;
    hotplug::add_chardev(ctx, &free.chardev, &free.path)?;
    let before = hotplug::query_monitors(ctx)?;

    let route = ctx.route();
    let add = |id: &str, chardev: &str| route.add_request(json!({ "id": id, "chardev": chardev }));
    let cases = [
        (
            "monitor-add with an unknown chardev",
            add(&free.id, "no-such-chardev"),
            &["no-such-chardev"][..],
        ),
        ("monitor-add on the main monitor's chardev", add(&free.id, "main"), &["main"][..]),
        (
            "monitor-add on a command-line monitor's chardev",
            add(&free.id, "cl-chr"),
            &["cl-chr"][..],
        ),
        (
            "monitor-add on a dynamic monitor's chardev",
            add(&free.id, &existing.chardev),
            &[existing.chardev.as_str()][..],
        ),
        (
            "monitor-add with a dynamic monitor's id",
            add(&existing.id, &free.chardev),
            &[existing.id.as_str()][..],
        ),
        (
            "monitor-add with a command-line monitor's id",
            add("cl-mon", &free.chardev),
            &["cl-mon"][..],
        ),
        ("monitor-add with an empty id", add("", &free.chardev), &[][..]),
        (
            "monitor-remove of a command-line monitor",
            route.remove_request(json!({ "id": "cl-mon" })),
            &["cl-mon"][..],
        ),
        (
            "monitor-remove of an unknown id",
            route.remove_request(json!({ "id": "no-such-monitor" })),
            &["no-such-monitor"][..],
        ),
    ];
    for (what, request, names) in cases {
        let err = ctx.main_refused_naming(request, names).context(what)?;
        ctx.note(format!("{what}: {err}"));
        unchanged(ctx, &before, what)?;
    }
    other_routes_removal_refused(ctx, &existing, &before)?;

    // The refused attempts must not have claimed the free chardev.
    ctx.add_monitor(json!({ "id": free.id, "chardev": free.chardev }))
        .context("monitor-add on the chardev the refused attempts used")?;
    hotplug::remove(ctx, &free)?;
    hotplug::remove(ctx, &existing)
}

/// The other route's removal refuses this route's monitor, or is not in
/// this QEMU; either way query-monitors is as `before`.
fn other_routes_removal_refused(ctx: &mut Ctx, existing: &DynMon, before: &[Value]) -> Result<()> {
    let (what, request, names) = match ctx.route() {
        Route::Commands => (
            "object-del of a monitor-add monitor's id (no such object)",
            ("object-del", json!({ "id": existing.id })),
            vec![existing.id.as_str(), "not found"],
        ),
        Route::Qom => (
            "monitor-remove of a monitor-qmp object's monitor (names object-del)",
            ("monitor-remove", json!({ "id": existing.id })),
            vec![existing.id.as_str(), "object-del"],
        ),
    };
    let wait = ctx.wait();
    match ctx.machine.qmp().execute(request.0, request.1.clone(), wait) {
        // A QEMU with only the QOM route has no monitor-remove.
        Err(QmpError::Qmp { class, .. }) if class == "CommandNotFound" => {
            ctx.note(format!("{what}: no {} in this QEMU", request.0));
        }
        Err(err @ QmpError::Qmp { .. }) => {
            check_refusal(&err, &names).context(what)?;
            ctx.note(format!("{what}: {err}"));
        }
        Ok(ret) => bail!("{what} succeeded (returned {ret}), but must be refused"),
        Err(err) => return Err(err).context(what),
    }
    unchanged(ctx, before, what)
}

/// query-monitors lists what it listed `before` the refused `what`.
fn unchanged(ctx: &mut Ctx, before: &[Value], what: &str) -> Result<()> {
    let after = hotplug::query_monitors(ctx)?;
    ensure!(
        after == before,
        "{what} changed query-monitors from {} to {}",
        Value::Array(before.to_vec()),
        Value::Array(after)
    );
    Ok(())
}
