//! Interoperability with a client nobody here wrote: QEMU's own Python
//! library, `qemu.qmp`, from the tree under test, used the way QEMU's
//! functional tests and its users use it.

use std::{
    fs::{self, File},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

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
    let python = ctx
        .settings
        .python
        .clone()
        .context("test_qemu_python_client runs only with --qemu-src")?;
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;

    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    let removal = json!({ "execute": command, "arguments": args });
    let dir = ctx.machine.dir().to_path_buf();
    let script = dir.join("qemu_qmp_client.py");
    fs::write(&script, DRIVER).with_context(|| format!("writing {}", script.display()))?;
    let (out, err) = (
        dir.join("qemu_qmp_client.out"),
        dir.join("qemu_qmp_client.err"),
    );
    // Each of the library's waits gets the per-wait limit; the client as
    // a whole, the scenario's deadline.
    let step_timeout = ctx.wait_limit();
    let child = Command::new(&python.interpreter)
        // -B: importing the library must not leave bytecode in the tree.
        .arg("-B")
        .arg(&script)
        .arg(&mon.path)
        .arg(&mon.id)
        .arg(format!("{:.3}", step_timeout.as_secs_f64()))
        .arg(removal.to_string())
        .env("PYTHONPATH", python.qemu_src.join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(create(&out)?)
        .stderr(create(&err)?)
        .spawn()
        .with_context(|| format!("starting {}", python.interpreter.display()))?;
    let mut driver = Driver(child);
    let pidfd = PidFd::open(driver.0.id()).context("opening a pidfd for the Python client")?;
    let finished = pidfd
        .wait_exit(ctx.scenario_deadline())
        .context("waiting for the Python client")?;
    if !finished {
        let _ = driver.0.kill();
    }
    let status = driver.0.wait().context("reaping the Python client")?;

    let stdout = fs::read_to_string(&out).unwrap_or_default();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    for line in stdout.lines().chain(stderr.lines()) {
        ctx.log(WHO, line);
    }
    let last = stdout.lines().last().unwrap_or("(nothing)");
    if !finished {
        bail!(
            "the qemu.qmp client did not finish by the scenario's deadline; its last line: {last}"
        );
    }
    if let Some(failure) = stdout.lines().find_map(|line| line.strip_prefix("FAIL ")) {
        bail!("qemu.qmp failed at {failure}");
    }
    ensure!(
        status.success(),
        "the qemu.qmp client exited with {status}: {}",
        stderr.lines().last().unwrap_or(last)
    );
    ensure!(
        stdout.lines().any(|line| line == "closed"),
        "the qemu.qmp client exited without reaching close(); its last line: {last}"
    );

    let list = hotplug::query_monitors(ctx)?;
    if let Some(entry) = hotplug::find_monitor(&list, &mon.id) {
        bail!(
            "query-monitors still lists {} after qemu.qmp removed it: {entry}",
            mon.id
        );
    }
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}
