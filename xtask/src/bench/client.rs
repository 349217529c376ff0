//! Figures taken in process with the qmp-tests library: the floor, and
//! the large query-qmp-schema reply parsed versus received raw.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use qmp_tests::machine::StoppedBy;
use qmp_tests::{probe, LaunchOptions, Machine, Qmp};
use serde_json::{json, Value};

use super::stats::{sample, timed, Stats};

/// Bounds every wait of a figure; generous, since a miss is an error.
const TIMEOUT: Duration = Duration::from_secs(30);

/// QEMU's version as the suite reports it, with its package string.
pub fn qemu_version(qemu: &Path) -> Result<String> {
    let caps = probe::probe(qemu, &LaunchOptions::default())
        .with_context(|| format!("asking {} for its version", qemu.display()))?;
    Ok(caps.full_version())
}

/// The floor: a bare QEMU started, greeted, negotiated, `quit` and reaped.
/// Every scenario pays at least this once, so it is what they compare to.
pub fn floor(qemu: &Path, runs: usize) -> Result<Stats> {
    sample(runs, || {
        let (secs, shutdown) = timed(|| {
            // Machine::launch starts `-machine none -nodefaults -display
            // none`, reads the greeting and negotiates; shutdown sends
            // quit and reaps. The drop, which removes the temp dir, is
            // part of what every scenario pays too.
            let mut machine = Machine::launch(qemu, &LaunchOptions::default())
                .with_context(|| format!("starting {}", qemu.display()))?;
            let shutdown = machine.shutdown()?;
            drop(machine);
            Ok(shutdown)
        })?;
        ensure!(
            shutdown.stopped_by == StoppedBy::Quit && shutdown.exit.success(),
            "QEMU did not end cleanly on quit: {shutdown}"
        );
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
}

/// Times query-qmp-schema on a dynamic monitor and on the main monitor of
/// one QEMU, `runs` times each way.
pub fn schema(qemu: &Path, runs: usize) -> Result<Schema> {
    let mut machine = Machine::launch(qemu, &LaunchOptions::default())
        .with_context(|| format!("starting {}", qemu.display()))?;
    let mut client = dynamic_monitor(&mut machine)?;
    let (bytes, dynamic) = reply_times(&mut client, runs).context("on the dynamic monitor")?;
    let (_, main) = reply_times(machine.qmp(), runs).context("on the main monitor")?;
    client.close();
    machine.shutdown()?;
    Ok(Schema {
        bytes,
        dynamic,
        main,
    })
}

/// The first query-qmp-schema reply of a fresh QEMU on a dynamic monitor,
/// raw. QEMU's first reply costs more than later ones, and the first is
/// the one test_large_response gets.
pub fn first_schema(qemu: &Path, runs: usize) -> Result<Stats> {
    sample(runs, || {
        let mut machine = Machine::launch(qemu, &LaunchOptions::default())
            .with_context(|| format!("starting {}", qemu.display()))?;
        let mut client = dynamic_monitor(&mut machine)?;
        let deadline = Instant::now() + TIMEOUT;
        let (secs, _) =
            timed(|| Ok(client.execute_raw("query-qmp-schema", Value::Null, deadline)?))?;
        client.close();
        machine.shutdown()?;
        Ok(secs)
    })
}

/// Adds a socket chardev and a monitor on it, then connects and
/// negotiates, as test_large_response does.
fn dynamic_monitor(machine: &mut Machine) -> Result<Qmp> {
    let path = machine.socket_path("bench.sock")?;
    let path_text = path.to_str().context("the socket path is not UTF-8")?;
    machine
        .cmd(
            "chardev-add",
            json!({
                "id": "bench-chr",
                "backend": { "type": "socket", "data": {
                    "addr": { "type": "unix", "data": { "path": path_text } },
                    "server": true,
                    "wait": false,
                }},
            }),
        )
        .context("chardev-add for the dynamic monitor")?;
    machine
        .cmd(
            "monitor-add",
            json!({ "id": "bench-mon", "chardev": "bench-chr" }),
        )
        .context("monitor-add (does this QEMU carry the series?)")?;
    let deadline = Instant::now() + TIMEOUT;
    let mut client = Qmp::connect(&path, deadline)
        .with_context(|| format!("connecting to {}", path.display()))?;
    client
        .negotiate(deadline)
        .context("qmp_capabilities on the dynamic monitor")?;
    Ok(client)
}

fn reply_times(qmp: &mut Qmp, runs: usize) -> Result<(usize, Reply)> {
    // One untimed round each way first: our read buffer grows to the
    // reply's size once, and later runs should not pay for that.
    let raw = qmp.execute_raw("query-qmp-schema", Value::Null, Instant::now() + TIMEOUT)?;
    let parsed = qmp.execute("query-qmp-schema", Value::Null, Instant::now() + TIMEOUT)?;
    let reply: Value = serde_json::from_slice(&raw).context("the raw reply is not JSON")?;
    ensure!(
        parsed.as_array().is_some_and(|a| !a.is_empty()) && reply["return"] == parsed,
        "the raw and the parsed query-qmp-schema replies differ"
    );
    let bytes = raw.len();
    // Alternating the two ways keeps drift (caches, frequency) out of
    // their ratio.
    let mut parsed = Vec::with_capacity(runs);
    let mut raw = Vec::with_capacity(runs);
    for _ in 0..runs {
        crate::interrupt::check()?;
        let deadline = Instant::now() + TIMEOUT;
        // QEMU frees a reply after sending it, and serves the next request
        // only then: a cheap round trip first keeps that out of the next
        // timed request, which would otherwise always be the parsed one.
        settle(qmp, deadline)?;
        let (secs, line) =
            timed(|| Ok(qmp.execute_raw("query-qmp-schema", Value::Null, deadline)?))?;
        raw.push(secs);
        drop(line);
        settle(qmp, deadline)?;
        let (secs, value) =
            timed(|| Ok(qmp.execute("query-qmp-schema", Value::Null, deadline)?))?;
        parsed.push(secs);
        drop(value);
    }
    let reply = Reply {
        parsed: Stats::of(&parsed).context("no runs")?,
        raw: Stats::of(&raw).context("no runs")?,
    };
    Ok((bytes, reply))
}

fn settle(qmp: &mut Qmp, deadline: Instant) -> Result<()> {
    qmp.execute("query-version", Value::Null, deadline)
        .context("query-version between timed requests")?;
    Ok(())
}
