//! Figures taken in process through the qmp-tests library's public API:
//! the floor, and the large query-qmp-schema reply parsed and raw.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use qmp_tests::{probe, LaunchOptions, Machine, Qmp};
use serde_json::{json, Value};

use super::report::{sample, timed, Stats};

/// Bounds every wait of a figure; generous, since a miss is an error.
const TIMEOUT: Duration = Duration::from_secs(30);

/// QEMU's version as the suite reports it, with its package string.
pub fn qemu_version(qemu: &Path) -> Result<String> {
    let caps = probe::probe(qemu, &LaunchOptions::default())
        .with_context(|| format!("asking {} for its version", qemu.display()))?;
    Ok(caps.full_version())
}

fn launch(qemu: &Path) -> Result<Machine> {
    Machine::launch(qemu, &LaunchOptions::default())
        .with_context(|| format!("starting {}", qemu.display()))
}

/// The floor: a bare QEMU started, greeted, negotiated, `quit`, reaped and
/// its temp dir removed. Every scenario pays at least this once.
pub fn floor(qemu: &Path, runs: usize) -> Result<Stats> {
    sample(runs, || {
        let (secs, shutdown) = timed(|| launch(qemu)?.shutdown())?;
        ensure!(shutdown.exit.success(), "QEMU did not end cleanly on quit: {shutdown}");
        Ok(secs)
    })
}

/// query-qmp-schema on one monitor: the reply parsed by our client and
/// the same reply received as a raw line.
pub struct Reply {
    pub parsed: Stats,
    pub raw: Stats,
}

pub struct Schema {
    /// The reply line's length, without its newline.
    pub bytes: usize,
    pub dynamic: Reply,
    pub main: Reply,
    /// The first reply of a fresh QEMU on a dynamic monitor, raw: it costs
    /// more than later ones, and is the one test_large_response gets.
    pub first: Stats,
}

/// Times query-qmp-schema on a dynamic and on the main monitor of one
/// QEMU, and the first reply of `runs` fresh ones.
pub fn schema(qemu: &Path, runs: usize) -> Result<Schema> {
    let first = sample(runs, || {
        let mut machine = launch(qemu)?;
        let mut client = dynamic_monitor(&mut machine)?;
        let deadline = Instant::now() + TIMEOUT;
        let (secs, _) =
            timed(|| Ok(client.execute_raw("query-qmp-schema", Value::Null, deadline)?))?;
        client.close();
        machine.shutdown()?;
        Ok(secs)
    })?;
    let mut machine = launch(qemu)?;
    let mut client = dynamic_monitor(&mut machine)?;
    let (bytes, dynamic) = replies(&mut client, runs).context("on the dynamic monitor")?;
    let (_, main) = replies(machine.qmp(), runs).context("on the main monitor")?;
    client.close();
    machine.shutdown()?;
    Ok(Schema { bytes, dynamic, main, first })
}

/// Adds a socket chardev and a monitor on it, then connects and
/// negotiates, as test_large_response does.
fn dynamic_monitor(machine: &mut Machine) -> Result<Qmp> {
    let path = machine.socket_path("bench.sock")?;
    let text = path.to_str().context("the socket path is not UTF-8")?;
    let addr = json!({ "type": "unix", "data": { "path": text } });
    let data = json!({ "addr": addr, "server": true, "wait": false });
    let backend = json!({ "type": "socket", "data": data });
    machine
        .cmd("chardev-add", json!({ "id": "bench-chr", "backend": backend }))
        .context("chardev-add for the dynamic monitor")?;
    machine
        .cmd("monitor-add", json!({ "id": "bench-mon", "chardev": "bench-chr" }))
        .context("monitor-add (does this QEMU carry the series?)")?;
    let deadline = Instant::now() + TIMEOUT;
    let mut client = Qmp::connect(&path, deadline)
        .with_context(|| format!("connecting to {}", path.display()))?;
    client.negotiate(deadline).context("qmp_capabilities on the dynamic monitor")?;
    Ok(client)
}

fn replies(qmp: &mut Qmp, runs: usize) -> Result<(usize, Reply)> {
    // One untimed round each way first: our read buffer grows to the
    // reply's size once, and later runs should not pay for that.
    let raw = qmp.execute_raw("query-qmp-schema", Value::Null, Instant::now() + TIMEOUT)?;
    let parsed = qmp.execute("query-qmp-schema", Value::Null, Instant::now() + TIMEOUT)?;
    let reply: Value = serde_json::from_slice(&raw).context("the raw reply is not JSON")?;
    ensure!(
        parsed.as_array().is_some_and(|a| !a.is_empty()) && reply["return"] == parsed,
        "the raw and the parsed query-qmp-schema replies differ"
    );
    // Alternating the two ways keeps drift (caches, frequency) out of
    // their ratio. QEMU frees a reply after sending it and serves the next
    // request only then: an untimed query-version first keeps that out of
    // the timed request.
    let (mut parsed, mut raw_times) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        crate::interrupt::check()?;
        let deadline = Instant::now() + TIMEOUT;
        qmp.execute("query-version", Value::Null, deadline)?;
        raw_times
            .push(timed(|| Ok(qmp.execute_raw("query-qmp-schema", Value::Null, deadline)?))?.0);
        qmp.execute("query-version", Value::Null, deadline)?;
        parsed.push(timed(|| Ok(qmp.execute("query-qmp-schema", Value::Null, deadline)?))?.0);
    }
    let parsed = Stats::of(&parsed).context("no runs")?;
    let raw_stats = Stats::of(&raw_times).context("no runs")?;
    Ok((raw.len(), Reply { parsed, raw: raw_stats }))
}
