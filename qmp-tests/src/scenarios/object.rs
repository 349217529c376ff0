//! A monitor-qmp object from the command line (`-object`), on the QOM
//! route only: it works like any QMP monitor and object-del removes it.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::scenarios::{hotplug, Ctx};

const ID: &str = "cl-obj";
const CHARDEV: &str = "cl-obj-chr";

pub const EXTRA_ARGS: &[&str] = &[
    "-chardev",
    "socket,id=cl-obj-chr,path={dir}/cl-obj.sock,server=on,wait=off",
    "-object",
    "monitor-qmp,id=cl-obj,chardev=cl-obj-chr",
];

pub fn command_line_object(ctx: &mut Ctx) -> Result<()> {
    let list = hotplug::query_monitors(ctx)?;
    let Some(entry) = hotplug::find_monitor(&list, ID) else {
        bail!("query-monitors does not list the -object monitor-qmp {ID}: {}", Value::Array(list));
    };
    // Created with QEMU, not at run time: the spec's `dynamic` is false.
    ensure!(
        entry["mode"] == "control" && entry["chardev"] == CHARDEV && entry["dynamic"] == false,
        "query-monitors lists {ID} as {entry}, not a control monitor on {CHARDEV} \
         with dynamic false (an -object monitor-qmp is no run-time addition)"
    );

    let path = ctx.machine.dir().join("cl-obj.sock");
    let mut client = ctx.connect(&path, ID)?;
    client.negotiate(ctx.wait()).with_context(|| format!("qmp_capabilities on {ID}"))?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;

    ctx.remove_monitor(json!({ "id": ID }))
        .context("object-del of a monitor-qmp object from the command line")?;
    client
        .wait_eof(ctx.wait())
        .with_context(|| format!("{ID}'s client after object-del from the main monitor"))?;
    ensure!(
        !client.was_reset(),
        "the client of {ID} saw a connection reset, not an orderly end of file"
    );
    let list = hotplug::query_monitors(ctx)?;
    ensure!(
        hotplug::find_monitor(&list, ID).is_none(),
        "query-monitors still lists {ID} after object-del"
    );
    ctx.main("chardev-remove", json!({ "id": CHARDEV }))?;
    Ok(())
}
