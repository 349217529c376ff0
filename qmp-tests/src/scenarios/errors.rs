//! Every way to misuse monitor-add and monitor-remove is refused and
//! changes nothing.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::scenarios::{
    hotplug::{self, DynMon},
    Ctx,
};

/// A second command-line monitor, with an id, so there is a
/// command-line monitor that monitor-remove can name.
pub const EXTRA_ARGS: &[&str] = &[
    "-chardev",
    "null,id=cl-chr",
    "-mon",
    "chardev=cl-chr,mode=control,id=cl-mon",
];

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
        ),
        (
            "monitor-add on the main monitor's chardev",
            add(&free.id, "main"),
        ),
        (
            "monitor-add on a command-line monitor's chardev",
            add(&free.id, "cl-chr"),
        ),
        (
            "monitor-add on a dynamic monitor's chardev",
            add(&free.id, &existing.chardev),
        ),
        (
            "monitor-add with a dynamic monitor's id",
            add(&existing.id, &free.chardev),
        ),
        (
            "monitor-add with a command-line monitor's id",
            add("cl-mon", &free.chardev),
        ),
        ("monitor-add with an empty id", add("", &free.chardev)),
        (
            "monitor-remove of a command-line monitor",
            route.remove_request(json!({ "id": "cl-mon" })),
        ),
        (
            "monitor-remove of an unknown id",
            route.remove_request(json!({ "id": "no-such-monitor" })),
        ),
    ];
    for (what, (command, args)) in cases {
        let err = ctx.main_refused(command, args).context(what)?;
        ctx.note(format!("{what}: {err}"));
        let after = hotplug::query_monitors(ctx)?;
        ensure!(
            after == before,
            "{what} changed query-monitors from {} to {}",
            Value::Array(before),
            Value::Array(after)
        );
    }

    // The refused attempts must not have claimed the free chardev.
    ctx.add_monitor(json!({ "id": free.id, "chardev": free.chardev }))
        .context("monitor-add on the chardev the refused attempts used")?;
    hotplug::remove(ctx, &free)?;
    hotplug::remove(ctx, &existing)
}
