//! A self-removed monitor's connection (the orphan) and the chardev's next
//! client: the orphan ends by its own close on every socket kind, and a
//! client that waited behind it is greeted by the new monitor, whichever
//! thread that monitor runs in; at chardev-remove the client sees an
//! orderly end of file.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixStream,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    explore::conn::{tcp_port, Addr, Conn, Read},
    qmp::Qmp,
    scenarios::{
        hotplug::{self, DynMon},
        usage::usage,
        Ctx,
    },
};

/// Rounds of the race in [`waiting_client_greeted`]: it needs the main
/// loop preempted at the wrong moment, so one round rarely shows it.
const ROUNDS: usize = 10;

/// What query-chardev says of `chardev`'s connection.
fn chardev_filename(ctx: &mut Ctx, chardev: &str) -> Result<String> {
    let list = ctx.main("query-chardev", Value::Null)?;
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["label"] == chardev))
        .and_then(|c| c["filename"].as_str())
        .map(str::to_string)
        .with_context(|| format!("query-chardev does not list {chardev}: {list}"))
}

/// Adds `chardev`, a TCP server socket on a free port of 127.0.0.1 that
/// doesn't wait for a client, and returns its address.
fn add_tcp_chardev(ctx: &mut Ctx, chardev: &str) -> Result<Addr> {
    let addr = json!({ "type": "inet", "data": { "host": "127.0.0.1", "port": "0" } });
    let backend =
        json!({ "type": "socket", "data": { "addr": addr, "server": true, "wait": false } });
    ctx.main("chardev-add", json!({ "id": chardev, "backend": backend }))?;
    let filename = chardev_filename(ctx, chardev)?;
    let port = tcp_port(&filename)
        .with_context(|| format!("no port in query-chardev's filename {filename}"))?;
    Ok(Addr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

/// `mon`'s id on a new TCP chardev (see [`add_tcp_chardev`]), and that
/// chardev's address.
fn on_tcp_chardev(ctx: &mut Ctx, mon: DynMon) -> Result<(DynMon, Addr)> {
    let chardev = "hp-tcp";
    let tcp = add_tcp_chardev(ctx, chardev)?;
    let mon = DynMon { id: mon.id, chardev: chardev.into(), path: Default::default() };
    Ok((mon, tcp))
}

/// A self-removes with four schema replies unread; a new monitor is added
/// on its chardev; B connects and waits; A reads everything, sees end of
/// file and closes. B must then be greeted by the new monitor and work,
/// and query-chardev must show B's connection. On series v4 the orphan's
/// end, run from the main loop after the new monitor had moved the
/// chardev to the I/O thread, let the I/O thread accept B and swallow its
/// greeting.
pub fn waiting_client_greeted(ctx: &mut Ctx) -> Result<()> {
    let old = DynMon::new(ctx, "")?;
    hotplug::add_chardev(ctx, &old.chardev, &old.path)?;
    for round in 1..=ROUNDS {
        one_round(ctx, &old).with_context(|| format!("round {round} of {ROUNDS}"))?;
    }
    ctx.main("chardev-remove", json!({ "id": old.chardev }))?;
    Ok(())
}

fn one_round(ctx: &mut Ctx, old: &DynMon) -> Result<()> {
    hotplug::add_monitor(ctx, old)?;
    let mut a = hotplug::connect_negotiated(ctx, old)?;
    let mut batch: Vec<(bool, &str, Value)> =
        (0..4).map(|_| (false, "query-qmp-schema", Value::Null)).collect();
    let (command, args) = ctx.remove_request(json!({ "id": old.id }));
    batch.push((false, command, args));
    a.send_batch(&batch, ctx.wait())?;
    hotplug::wait_unlisted(ctx, old)?;
    let new = hotplug::successor(old);
    hotplug::add_monitor(ctx, &new)?;
    // B's connect completes in the listen queue; its greeting comes only
    // once A's connection has ended.
    let b_stream = UnixStream::connect(&old.path).context("connecting B")?;
    let got = a.read_until_eof(ctx.wait()).context("A reading its output to the end of file")?;
    ensure!(
        got.len() == batch.len(),
        "A got {} messages before the end of file, not its {} replies",
        got.len(),
        batch.len()
    );
    a.close();
    let mut b = Qmp::from_stream(b_stream, "B", ctx.transcript().clone(), ctx.wait())
        .context("B, waiting behind the self-removed client, must be greeted by the new monitor")?;
    b.negotiate(ctx.wait()).context("qmp_capabilities on B")?;
    hotplug::execute(ctx, &mut b, "query-version", Value::Null)?;
    let filename = chardev_filename(ctx, &old.chardev)?;
    ensure!(
        !filename.starts_with("disconnected:"),
        "query-chardev says {} is {filename} while B talks on it",
        old.chardev
    );
    ctx.remove_monitor(json!({ "id": new.id }))?;
    b.wait_eof(ctx.wait()).context("B after its monitor was removed")?;
    Ok(())
}

/// On a TCP socket chardev: the client removes its own monitor, reads
/// the reply and closes. "The self-removed client's own close ends its
/// connection at once on every socket kind (unix and TCP), leaving no
/// half-closed socket behind": query-chardev shows the chardev without a
/// connection within the wait limit. (On series v4 a TCP peer's close
/// raised no hang-up and the socket stayed in CLOSE_WAIT.)
pub fn tcp_close(ctx: &mut Ctx) -> Result<()> {
    let chardev = "hp-tcp";
    let addr = add_tcp_chardev(ctx, chardev)?;
    ctx.add_monitor(json!({ "id": "hp-mon", "chardev": chardev }))?;
    let mut client = Conn::connect(&addr, "tcp", ctx.transcript().clone(), ctx.wait())
        .with_context(|| format!("connecting to {chardev}'s TCP socket"))?;
    let (command, args) = ctx.remove_request(json!({ "id": "hp-mon" }));
    let requests = [(false, "qmp_capabilities", Value::Null), (false, command, args)];
    client.send(&requests, ctx.wait())?;
    // The greeting and the two replies.
    for what in ["the greeting", "qmp_capabilities' reply", "the self-removal's reply"] {
        match client.read(ctx.wait(), usize::MAX)? {
            Read::Line(line) => {
                let message: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
                ensure!(
                    message.get("QMP").is_some() || message.get("return").is_some(),
                    "{what} on the TCP client: {message}"
                );
            }
            Read::Eof { .. } => bail!("end of file before {what} on the TCP client"),
            Read::Nothing => bail!("no {what} on the TCP client"),
        }
    }
    hotplug::wait_unlisted(
        ctx,
        &DynMon { id: "hp-mon".into(), chardev: chardev.into(), path: Default::default() },
    )?;
    client.close();
    let deadline = ctx.wait();
    loop {
        let filename = chardev_filename(ctx, chardev)?;
        if filename.starts_with("disconnected:") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{chardev} still holds the self-removed client's connection {:.1}s after the client \
             closed it (query-chardev: {filename}): a half-closed socket",
            ctx.wait_limit().as_secs_f64()
        );
    }
    ctx.main("chardev-remove", json!({ "id": chardev }))?;
    Ok(())
}

/// On a unix and on a TCP socket chardev: a client connects before the
/// monitor is added, negotiates, asks for the schema and removes its own
/// monitor in two writes, reading nothing; a new monitor with the same id
/// is added on the chardev (which ends the old connection once its output
/// is written); the client then sends `query-version` and only then
/// reads. "After self-removal the client gets all its output then a
/// clean end-of-file; input after self-removal is discarded": the schema
/// and the removal's reply, complete, then end of file, not a reset. (On
/// series v5 the TCP socket was closed with the output still in its send
/// queue, and the late request made the kernel reset the connection.)
pub fn late_input_eof(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add_chardev(ctx, &mon.chardev, &mon.path)?;
    let unix = Addr::Unix(mon.path.clone());
    late_input_eof_on(ctx, &mon, &unix, "unix")?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;

    let (mon, tcp) = on_tcp_chardev(ctx, mon)?;
    late_input_eof_on(ctx, &mon, &tcp, "tcp")?;
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;
    Ok(())
}

/// Connects a client to `addr` before `mon` is added on its chardev, then
/// adds it; the client reads its greeting and negotiates.
fn connect_then_add(ctx: &mut Ctx, mon: &DynMon, addr: &Addr, kind: &str) -> Result<Conn> {
    let mut client = Conn::connect(addr, kind, ctx.transcript().clone(), ctx.wait())
        .with_context(|| format!("connecting to {}'s {kind} socket", mon.chardev))?;
    hotplug::add_monitor(ctx, mon)?;
    let greeting = read_message(ctx, &mut client, kind, "the greeting")?;
    ensure!(
        greeting.get("QMP").is_some(),
        "the {kind} client's first message is not a greeting: {greeting}"
    );
    client.send(&[(false, "qmp_capabilities", Value::Null)], ctx.wait())?;
    let reply = read_message(ctx, &mut client, kind, "qmp_capabilities' reply")?;
    ensure!(reply.get("return").is_some(), "qmp_capabilities on the {kind} client: {reply}");
    Ok(client)
}

fn late_input_eof_on(ctx: &mut Ctx, mon: &DynMon, addr: &Addr, kind: &str) -> Result<()> {
    let mut client = connect_then_add(ctx, mon, addr, kind)?;
    client.send(&[(false, "query-qmp-schema", Value::Null)], ctx.wait())?;
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    client.send(&[(false, command, args)], ctx.wait())?;
    hotplug::wait_unlisted(ctx, mon)?;
    hotplug::add_monitor(ctx, mon)?;
    client.send(&[(false, "query-version", Value::Null)], ctx.wait())?;

    // Owed: the schema and the removal's reply, then end of file.
    for what in ["query-qmp-schema's reply", "the self-removal's reply"] {
        let reply = read_message(ctx, &mut client, kind, what)?;
        ensure!(
            reply.get("return").is_some(),
            "{what} on the {kind} client after its self-removal: {reply}"
        );
    }
    match client.read(ctx.wait(), usize::MAX)? {
        Read::Eof { partial: None, reset: false } => {}
        Read::Eof { reset: true, .. } => bail!(
            "the self-removed {kind} client, which sent a request after the new monitor was \
             added, saw a connection reset after its output, not an orderly end of file"
        ),
        Read::Eof { partial: Some(part), .. } => {
            bail!("the self-removed {kind} client's output ended inside a line: {part}")
        }
        Read::Line(line) => bail!(
            "after its self-removal's reply the {kind} client got {}",
            String::from_utf8_lossy(&line)
        ),
        Read::Nothing => bail!(
            "the self-removed {kind} client saw no end of file after its output, though a new \
             monitor was added on its chardev"
        ),
    }
    client.close();
    ctx.remove_monitor(json!({ "id": mon.id }))?;
    Ok(())
}

/// On a unix and on a TCP socket chardev: a client negotiates, then sends
/// `query-version`, `query-qmp-schema` and the removal of its own monitor
/// in one write and reads nothing; once the monitor is gone it sends
/// `query-version` twice, in two writes, still reading nothing; then the
/// main monitor removes the chardev. "The connection ends ... at
/// chardev-remove, which the client then sees as end-of-file": the client
/// reads whatever output reached it (pending output may be lost), then an
/// orderly end of file, not a reset; once it closed, QEMU holds no more
/// file descriptors than before the chardev was added. (On series v5 the
/// chardev's removal closed its connection at once, after discarding the
/// input that had arrived; the second `query-version`, which the client's
/// TCP stack held back until the first was acknowledged, arrived at a
/// closed socket, and the kernel reset the connection.)
pub fn eof_at_chardev_remove(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let before = usage(ctx.machine.pid())?.fds;
    hotplug::add_chardev(ctx, &mon.chardev, &mon.path)?;
    let unix = Addr::Unix(mon.path.clone());
    eof_at_chardev_remove_on(ctx, &mon, &unix, "unix", before)?;

    let (mon, tcp) = on_tcp_chardev(ctx, mon)?;
    eof_at_chardev_remove_on(ctx, &mon, &tcp, "tcp", before)
}

fn eof_at_chardev_remove_on(
    ctx: &mut Ctx,
    mon: &DynMon,
    addr: &Addr,
    kind: &str,
    fds_before: i64,
) -> Result<()> {
    let mut client = connect_then_add(ctx, mon, addr, kind)?;
    let (command, args) = ctx.remove_request(json!({ "id": mon.id }));
    let batch = [
        (false, "query-version", Value::Null),
        (false, "query-qmp-schema", Value::Null),
        (false, command, args),
    ];
    client.send(&batch, ctx.wait())?;
    hotplug::wait_unlisted(ctx, mon)?;
    for _ in 0..2 {
        client.send(&[(false, "query-version", Value::Null)], ctx.wait())?;
    }
    ctx.main("chardev-remove", json!({ "id": mon.chardev }))?;

    // Whatever output got through, then an orderly end of file.
    let mut lines = 0;
    loop {
        match client.read(ctx.wait(), usize::MAX)? {
            Read::Line(_) => lines += 1,
            Read::Eof { reset: false, .. } => break,
            Read::Eof { reset: true, .. } => bail!(
                "at chardev-remove the self-removed {kind} client, which sent requests after its \
                 self-removal, saw a connection reset after {lines} complete lines of output, not \
                 an orderly end of file"
            ),
            Read::Nothing => bail!(
                "the self-removed {kind} client saw no end of file after {lines} complete lines of \
                 output, though its chardev was removed"
            ),
        }
    }
    client.close();

    // The connection, done with, must not outlive the client's close.
    let deadline = ctx.wait();
    loop {
        let fds = usage(ctx.machine.pid())?.fds;
        if fds <= fds_before {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{:.1}s after the {kind} client closed its connection to the removed chardev, QEMU \
             holds {fds} file descriptors, {fds_before} before the chardev was added",
            ctx.wait_limit().as_secs_f64()
        );
        // Paces the look and lets QEMU's main loop run.
        ctx.main("query-monitors", Value::Null)?;
    }
}

/// One message the client is owed, within the wait limit.
fn read_message(ctx: &Ctx, client: &mut Conn, kind: &str, what: &str) -> Result<Value> {
    match client.read(ctx.wait(), usize::MAX)? {
        Read::Line(line) => serde_json::from_slice(&line)
            .with_context(|| format!("{what} on the {kind} client is not JSON")),
        Read::Eof { reset, .. } => bail!(
            "{} before {what} on the {kind} client",
            if reset { "a connection reset" } else { "end of file" }
        ),
        Read::Nothing => bail!("no {what} on the {kind} client"),
    }
}
