//! Interoperability with clients nobody here wrote: QEMU's own Python
//! library, `qemu.qmp`, from the tree under test, used the way QEMU's
//! functional tests use it; and the same library released as a package
//! of its own, whose asyncio client tools outside QEMU use.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    pidfd::PidFd,
    scenarios::{
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// The driver: connect and negotiate, query-version, STOP and RESUME,
/// self-removal, close(); any exception from the library is the failure.
const DRIVER: &str = include_str!("interop/qemu_qmp_client.py");
const WHO: &str = "qemu.qmp";
/// The same library as a package of its own, with its asyncio client.
const ASYNCIO_DRIVER: &str = include_str!("interop/qmp_asyncio_client.py");
const PACKAGE: &str = "the qemu.qmp package";

/// Kills the driver if the scenario ends before it does.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn qemu_python_client(ctx: &mut Ctx) -> Result<()> {
    let python =
        ctx.settings.python.clone().context("test_qemu_python_client runs only with --qemu-src")?;
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;

    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    let removal = json!({ "execute": command, "arguments": args });
    // Each of the library's waits gets the per-wait limit; the client as
    // a whole, the scenario's deadline.
    let step_timeout = ctx.wait_limit();
    let client = Client {
        who: WHO,
        interpreter: &python.interpreter,
        script: ("qemu_qmp_client.py", DRIVER),
        args: vec![
            mon.path.display().to_string(),
            mon.id.clone(),
            format!("{:.3}", step_timeout.as_secs_f64()),
            removal.to_string(),
        ],
        pythonpath: Some(python.qemu_src.join("python")),
    };
    client.run(ctx)?;
    gone_then_chardev_remove(ctx, &mon, WHO)
}

/// The standalone package's asyncio client, as tools outside QEMU use it:
/// through the first monitor's client, a whole hotplug cycle of a second
/// one; STOP and RESUME; self-removal; disconnect without an exception.
pub fn qmp_asyncio_client(ctx: &mut Ctx) -> Result<()> {
    let interpreter = ctx
        .settings
        .qmp_package
        .clone()
        .context("test_qmp_asyncio_client runs only with --qmp-python")?;
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let second = DynMon::new(ctx, "-2")?;

    let request = |(command, args): (&str, Value)| json!({ "execute": command, "arguments": args });
    let path = |m: &DynMon| -> Result<String> {
        Ok(m.path.to_str().context("socket path is not UTF-8")?.to_owned())
    };
    let plan = json!({
        "socket": path(&mon)?,
        "id": mon.id,
        "timeout": ctx.wait_limit().as_secs_f64(),
        "removal": request(ctx.remove_request(json!({ "id": mon.id }))),
        "second": {
            "socket": path(&second)?,
            "id": second.id,
            "chardev_add": request(("chardev-add", json!({
                "id": second.chardev,
                "backend": { "type": "socket", "data": {
                    "addr": { "type": "unix", "data": { "path": path(&second)? } },
                    "server": true,
                    "wait": false,
                }},
            }))),
            "add": request(ctx.add_request(json!({ "id": second.id, "chardev": second.chardev }))),
            "remove": request(ctx.remove_request(json!({ "id": second.id }))),
            "chardev_remove": request(("chardev-remove", json!({ "id": second.chardev }))),
        },
    });
    let client = Client {
        who: PACKAGE,
        interpreter: &interpreter,
        script: ("qmp_asyncio_client.py", ASYNCIO_DRIVER),
        args: vec![plan.to_string()],
        pythonpath: None,
    };
    client.run(ctx)?;
    let list = hotplug::query_monitors(ctx)?;
    if let Some(entry) = hotplug::find_monitor(&list, &second.id) {
        bail!("query-monitors still lists {} after {PACKAGE} removed it: {entry}", second.id);
    }
    gone_then_chardev_remove(ctx, &mon, PACKAGE)
}

/// After a client removed its own monitor: gone from query-monitors, and
/// its chardev can be removed.
fn gone_then_chardev_remove(ctx: &mut Ctx, mon: &DynMon, who: &str) -> Result<()> {
    let list = hotplug::query_monitors(ctx)?;
    if let Some(entry) = hotplug::find_monitor(&list, &mon.id) {
        bail!("query-monitors still lists {} after {who} removed it: {entry}", mon.id);
    }
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// A Python driver and how to run it.
struct Client<'a> {
    who: &'a str,
    interpreter: &'a Path,
    /// File name and text, written to the scenario's directory.
    script: (&'a str, &'a str),
    args: Vec<String>,
    pythonpath: Option<PathBuf>,
}

impl Client<'_> {
    /// Runs the driver to its end, within the scenario's deadline; its
    /// output goes to the transcript. The driver prints a line per step,
    /// `FAIL step: ...` on an exception, and `closed` at the end.
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let who = self.who;
        let dir = ctx.machine.dir().to_path_buf();
        let (name, text) = self.script;
        let script = dir.join(name);
        fs::write(&script, text).with_context(|| format!("writing {}", script.display()))?;
        let (out, err) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
        let mut command = Command::new(self.interpreter);
        // -B: importing a library must not leave bytecode behind.
        command
            .arg("-B")
            .arg(&script)
            .args(&self.args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(create(&out)?)
            .stderr(create(&err)?);
        if let Some(path) = &self.pythonpath {
            command.env("PYTHONPATH", path);
        }
        let child =
            command.spawn().with_context(|| format!("starting {}", self.interpreter.display()))?;
        let mut driver = Driver(child);
        let pidfd = PidFd::open(driver.0.id()).context("opening a pidfd for the Python client")?;
        let finished =
            pidfd.wait_exit(ctx.scenario_deadline()).context("waiting for the Python client")?;
        if !finished {
            let _ = driver.0.kill();
        }
        let status = driver.0.wait().context("reaping the Python client")?;

        let stdout = fs::read_to_string(&out).unwrap_or_default();
        let stderr = fs::read_to_string(&err).unwrap_or_default();
        for line in stdout.lines().chain(stderr.lines()) {
            ctx.log(who, line);
        }
        let last = stdout.lines().last().unwrap_or("(nothing)");
        if !finished {
            bail!(
                "the {who} client did not finish by the scenario's deadline; its last line: {last}"
            );
        }
        if let Some(failure) = stdout.lines().find_map(|line| line.strip_prefix("FAIL ")) {
            bail!("{who} failed at {failure}");
        }
        ensure!(
            status.success(),
            "the {who} client exited with {status}: {}",
            stderr.lines().last().unwrap_or(last)
        );
        ensure!(
            stdout.lines().any(|line| line == "closed"),
            "the {who} client exited without closing; its last line: {last}"
        );
        Ok(())
    }
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}
