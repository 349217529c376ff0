//! Chardevs that are no listening unix socket: a pty, and a socket in
//! client mode that reconnects. Both create sources of their own (the
//! pty's poll timer, the reconnect timer), so the spec has monitor-add
//! take them and run the monitor in the main loop: a working monitor
//! whose greeting offers no "oob". Nothing crashes or breaks.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::{
            fs::OpenOptionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::Path,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};
use rustix::{
    io::Errno,
    net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType},
};
use serde_json::{json, Value};

use crate::{
    qmp::{Qmp, QmpError},
    scenarios::{
        hotplug::{self, DynMon},
        lifecycle::full_cycle,
        Ctx,
    },
};

const MON_ID: &str = "odd-mon";
const RECONNECT_MS: u64 = 100;

/// monitor-add on `chardev`, which the spec says must be taken.
fn add(ctx: &mut Ctx, chardev: &str) -> Result<()> {
    let args = json!({ "id": MON_ID, "chardev": chardev });
    let (command, args) = ctx.add_request(args);
    let wait = ctx.wait();
    match ctx.machine.qmp().execute(command, args, wait) {
        Ok(_) => Ok(()),
        Err(QmpError::Qmp { class, desc }) => bail!(
            "{command} on {chardev} was refused ({class}: {desc}); the spec runs a monitor \
             on such a chardev in the main loop instead"
        ),
        Err(err) => Err(err).with_context(|| format!("{command} on {chardev}")),
    }
}

/// A greeting on a chardev with sources of its own: the monitor runs in
/// the main loop, so out-of-band execution is not offered.
fn check_no_oob(greeting: &Value, chardev: &str) -> Result<()> {
    let caps = &greeting["QMP"]["capabilities"];
    ensure!(
        caps.is_array(),
        "the greeting of {MON_ID} on {chardev} has no capabilities list: {greeting}"
    );
    ensure!(
        !caps.as_array().is_some_and(|c| c.iter().any(|x| x == "oob")),
        "the greeting of {MON_ID} on {chardev} offers oob, but a monitor on a chardev \
         that creates sources of its own runs in the main loop: {greeting}"
    );
    Ok(())
}

/// query-monitors lists `MON_ID` on `chardev` as dynamic exactly when
/// `present`.
fn check_listed(ctx: &mut Ctx, chardev: &str, present: bool) -> Result<()> {
    let list = hotplug::query_monitors(ctx)?;
    match (hotplug::find_monitor(&list, MON_ID), present) {
        (None, false) => Ok(()),
        (Some(entry), true) => {
            ensure!(
                entry["dynamic"] == true && entry["chardev"] == chardev,
                "{MON_ID} should be listed with dynamic true and chardev {chardev}: {entry}"
            );
            Ok(())
        }
        (Some(entry), false) => {
            bail!("query-monitors lists {MON_ID} though it is not there: {entry}")
        }
        (None, true) => bail!(
            "query-monitors does not list {MON_ID} after monitor-add on {chardev} succeeded: {}",
            Value::Array(list)
        ),
    }
}

/// After the chardev is gone: QEMU answers and a socket monitor works.
fn check_still_works(ctx: &mut Ctx) -> Result<()> {
    ctx.check_alive()?;
    let mon = DynMon::new(ctx, "")?;
    full_cycle(ctx, &mon).context("a unix-socket dynamic monitor afterwards")
}

pub fn pty(ctx: &mut Ctx) -> Result<()> {
    let (chardev, path) = add_pty(ctx)?;
    add(ctx, chardev)?;
    check_listed(ctx, chardev, true)?;
    // A working monitor: open the pty and talk.
    let mut client = PtyClient::open(&path)?;
    read_greeting(ctx, &mut client, chardev)?;
    negotiate(ctx, &mut client)?;
    ctx.remove_monitor(json!({ "id": MON_ID }))?;
    check_listed(ctx, chardev, false)?;
    ctx.main("chardev-remove", json!({ "id": chardev }))?;
    check_still_works(ctx)
}

/// A holder that opened the pty before monitor-add, before QEMU's once a
/// second poll noticed it, is greeted once: attaching the monitor polls
/// the pty and finds it open, and that is the one greeting the holder is
/// owed. Both greetings would be written before monitor-add's reply, so
/// the line after the first one, once qmp_capabilities is sent, shows a
/// second greeting without a quiet window.
pub fn pty_greeted_once(ctx: &mut Ctx) -> Result<()> {
    let (chardev, mut client) = pty_with_holder(ctx)?;
    add(ctx, chardev)?;
    read_greeting(ctx, &mut client, chardev)?;
    client.write_line(r#"{"execute": "qmp_capabilities"}"#)?;
    let next = client.read_line(soon(ctx))?;
    ensure!(
        !next.contains("\"QMP\""),
        "{MON_ID} greeted a pty holder that opened the pty before monitor-add twice: \
         the second greeting came where qmp_capabilities' reply belongs: {next:?}"
    );
    ensure!(
        next.contains("\"return\""),
        "{MON_ID} on the pty answered qmp_capabilities with {next:?}"
    );
    ctx.remove_monitor(json!({ "id": MON_ID }))?;
    ctx.main("chardev-remove", json!({ "id": chardev }))?;
    check_still_works(ctx)
}

/// A pty's monitor removes itself while its holder keeps the pty open,
/// then the pty is removed: QEMU must go on (the removal once left a
/// read watch on the freed chardev, which the main loop's next poll
/// ran). A command on the main monitor after the removal is that next
/// poll.
pub fn pty_self_removal_then_chardev_remove(ctx: &mut Ctx) -> Result<()> {
    // The holder opens the pty after monitor-add, so that this scenario
    // stays apart from test_pty_greeted_once.
    let (chardev, mut client) = negotiated_holder(ctx)?;
    let (command, args) = ctx.remove_request(json!({ "id": MON_ID }));
    let request = json!({ "execute": command, "arguments": args });
    client.write_line(&request.to_string())?;
    let reply = client.read_line(soon(ctx))?;
    ensure!(
        reply.contains("\"return\""),
        "{MON_ID} on the pty answered its own {command} with {reply:?}"
    );
    check_listed(ctx, chardev, false)?;
    ctx.main("chardev-remove", json!({ "id": chardev }))
        .context("chardev-remove of the pty whose monitor removed itself")?;
    check_still_works(ctx).context("after chardev-remove of a pty a holder keeps open")?;
    // The holder's close is what a watch left on the freed chardev would
    // wake up for; the second command runs after the main loop saw it.
    drop(client);
    check_still_works(ctx).context("after the holder of a removed pty closed it")?;
    check_still_works(ctx).context("after the holder of a removed pty closed it")
}

/// After a pty's monitor removed itself, a new monitor on the pty talks
/// to whoever holds it (the spec: a chardev without connections has no
/// end-of-file to give, and a new frontend talks to whatever holds the
/// other side). The holder asks for the schema and removes the monitor
/// in one write and reads nothing, so the old monitor's output is still
/// pending when the new monitor comes: the holder then reads all of it,
/// and after it the new monitor's greeting.
pub fn pty_new_monitor_after_self_removal(ctx: &mut Ctx) -> Result<()> {
    let (chardev, mut client) = negotiated_holder(ctx)?;
    let (command, args) = ctx.remove_request(json!({ "id": MON_ID }));
    let removal = json!({ "execute": command, "arguments": args, "id": "removal" });
    client.write_line(&format!(
        "{}\n{removal}",
        json!({ "execute": "query-qmp-schema", "id": "schema" })
    ))?;
    let removed =
        DynMon { id: MON_ID.to_owned(), chardev: chardev.to_owned(), path: Default::default() };
    hotplug::wait_unlisted(ctx, &removed)?;
    add(ctx, chardev).context("a new monitor on the pty after a self-removal")?;
    for id in ["schema", "removal"] {
        let line = client.read_line(ctx.wait())?;
        let reply: Value = serde_json::from_str(&line).with_context(|| {
            format!("the pty's holder read a cut or garbled line where the {id} reply belongs")
        })?;
        ensure!(
            reply["id"] == id && reply.get("return").is_some(),
            "the pty's holder expected the {id} reply of the removed monitor, got {:.200}",
            line
        );
    }
    read_greeting(ctx, &mut client, chardev)
        .context("the new monitor greeting the pty's holder after a self-removal")?;
    negotiate(ctx, &mut client)?;
    ctx.remove_monitor(json!({ "id": MON_ID }))?;
    ctx.main("chardev-remove", json!({ "id": chardev }))?;
    check_still_works(ctx)
}

fn negotiate(ctx: &Ctx, client: &mut PtyClient) -> Result<()> {
    client.write_line(r#"{"execute": "qmp_capabilities"}"#)?;
    let reply = client.read_line(soon(ctx))?;
    ensure!(
        reply.contains("\"return\""),
        "{MON_ID} on the pty answered qmp_capabilities with {reply:?}"
    );
    Ok(())
}

/// A pty chardev with a monitor, then its holder: opened after
/// monitor-add (QEMU's poll greets it), negotiated.
fn negotiated_holder(ctx: &mut Ctx) -> Result<(&'static str, PtyClient)> {
    let (chardev, path) = add_pty(ctx)?;
    add(ctx, chardev)?;
    let mut client = PtyClient::open(&path)?;
    read_greeting(ctx, &mut client, chardev)?;
    negotiate(ctx, &mut client)?;
    Ok((chardev, client))
}

/// A pty chardev, and its slave side opened at once.
fn pty_with_holder(ctx: &mut Ctx) -> Result<(&'static str, PtyClient)> {
    let (chardev, path) = add_pty(ctx)?;
    Ok((chardev, PtyClient::open(&path)?))
}

/// Adds a pty chardev; its id and the path of its slave side.
fn add_pty(ctx: &mut Ctx) -> Result<(&'static str, String)> {
    let chardev = "pty-chr";
    let ret = ctx
        .main("chardev-add", json!({ "id": chardev, "backend": { "type": "pty", "data": {} } }))?;
    ctx.note(format!("pty chardev: {ret}"));
    let path = ret["pty"].as_str().context("chardev-add pty returned no pty path")?;
    Ok((chardev, path.to_owned()))
}

fn read_greeting(ctx: &Ctx, client: &mut PtyClient, chardev: &str) -> Result<()> {
    let line = client.read_line(soon(ctx))?;
    let greeting: Value = serde_json::from_str(&line)
        .with_context(|| format!("{MON_ID} on the pty did not greet with JSON: {line:?}"))?;
    ensure!(greeting["QMP"]["version"].is_object(), "{MON_ID} on the pty did not greet: {line:?}");
    check_no_oob(&greeting, chardev)
}

/// One wait: a pty is polled by QEMU once a second, a reconnect is
/// timed in milliseconds, both well within a wait.
fn soon(ctx: &Ctx) -> Instant {
    ctx.wait()
}

/// The pty's slave side, raw (QEMU sets it so), read with deadlines.
struct PtyClient {
    file: File,
    pending: Vec<u8>,
}

impl PtyClient {
    fn open(path: &str) -> Result<PtyClient> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .with_context(|| format!("opening the pty {path}"))?;
        Ok(PtyClient { file, pending: Vec::new() })
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        self.file.write_all(format!("{line}\n").as_bytes()).context("writing to the pty")
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line).trim().to_string());
            }
            wait_readable(&self.file, deadline)
                .with_context(|| format!("reading a line from {MON_ID} on the pty"))?;
            let mut chunk = [0u8; 4096];
            match self.file.read(&mut chunk) {
                Ok(0) => bail!("the pty closed while reading from {MON_ID}"),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("reading from the pty"),
            }
        }
    }
}

/// Waits until `fd` is readable, failing at `deadline`.
fn wait_readable(fd: impl AsFd, deadline: Instant) -> Result<()> {
    ensure!(crate::deadline::wait_readable(fd, deadline)?, "nothing arrived in time");
    Ok(())
}

/// Waits for QEMU to connect (or reconnect) to `listener`.
fn accept(listener: &UnixListener, deadline: Instant) -> Result<UnixStream> {
    wait_readable(listener, deadline)
        .context("QEMU did not connect its client-mode chardev to our socket")?;
    let (stream, _) = listener.accept().context("accepting QEMU's connection")?;
    Ok(stream)
}

/// Our end of a connection QEMU made: greeting, negotiation, a command.
fn talk(ctx: &Ctx, stream: UnixStream, name: &str) -> Result<()> {
    let mut client = Qmp::from_stream(stream, name, ctx.transcript().clone(), soon(ctx))
        .with_context(|| format!("the greeting of {MON_ID} on connection {name}"))?;
    check_no_oob(client.greeting(), "a reconnecting client socket")?;
    client.negotiate(ctx.wait()).with_context(|| format!("qmp_capabilities on {name}"))?;
    hotplug::execute(ctx, &mut client, "query-version", Value::Null)?;
    client.close();
    Ok(())
}

/// chardev-add of `chardev`: a unix socket in client mode to `path`,
/// reconnecting after `RECONNECT_MS`.
fn add_reconnecting_chardev(ctx: &mut Ctx, chardev: &str, path: &Path) -> Result<()> {
    let path_text = path.to_str().context("socket path is not UTF-8")?;
    ctx.main(
        "chardev-add",
        json!({
            "id": chardev,
            "backend": { "type": "socket", "data": {
                "addr": { "type": "unix", "data": { "path": path_text } },
                "server": false,
                "reconnect-ms": RECONNECT_MS,
            }},
        }),
    )?;
    Ok(())
}

/// The monitor added again on `chardev`, connected to us as `stream`:
/// greeted without oob, negotiated, removed while our session is open;
/// then the chardev goes, and QEMU still works.
fn readd_on_connection(ctx: &mut Ctx, chardev: &str, stream: UnixStream, name: &str) -> Result<()> {
    add(ctx, chardev)?;
    let mut client = Qmp::from_stream(stream, name, ctx.transcript().clone(), soon(ctx))
        .with_context(|| format!("the greeting of {MON_ID} added again"))?;
    check_no_oob(client.greeting(), "a reconnecting client socket")?;
    client.negotiate(ctx.wait()).with_context(|| format!("qmp_capabilities on {name}"))?;
    ctx.remove_monitor(json!({ "id": MON_ID }))?;
    check_listed(ctx, chardev, false)?;
    ctx.main("chardev-remove", json!({ "id": chardev }))?;
    check_still_works(ctx)
}

pub fn reconnecting_client(ctx: &mut Ctx) -> Result<()> {
    let chardev = "rc-chr";
    let path = ctx.machine.socket_path("rc.sock")?;
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    add_reconnecting_chardev(ctx, chardev, &path)?;
    let first = accept(&listener, soon(ctx))?;
    add(ctx, chardev)?;
    check_listed(ctx, chardev, true)?;
    // A working monitor: we are its client, and when we hang up, QEMU
    // reconnects to a fresh session.
    talk(ctx, first, "rc-first")?;
    let second = accept(&listener, soon(ctx)).context("reconnecting, monitor attached")?;
    talk(ctx, second, "rc-second")?;
    // Removed while QEMU is between connections (we hung up, its
    // reconnect is pending), the chardev goes on alone, reconnecting
    // with no frontend.
    ctx.remove_monitor(json!({ "id": MON_ID }))?;
    check_listed(ctx, chardev, false)?;
    let third = accept(&listener, soon(ctx)).context("reconnecting, monitor removed")?;
    // Added again on the connected chardev, and removed while our session
    // is open.
    readd_on_connection(ctx, chardev, third, "rc-third")
}

/// A listening socket at `path` whose backlog is full: a blocking
/// connect to it waits until we accept. The returned streams hold the
/// backlog; accepting them lets the waiting connect through.
fn full_listener(path: &Path) -> Result<(UnixListener, Vec<OwnedFd>)> {
    let addr = SocketAddrUnix::new(path)
        .with_context(|| format!("the socket address {}", path.display()))?;
    let fd = net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .context("creating a unix socket")?;
    net::bind(&fd, &addr).with_context(|| format!("binding {}", path.display()))?;
    // A backlog of 0 holds one pending connection.
    net::listen(&fd, 0).with_context(|| format!("listening on {}", path.display()))?;
    let mut fillers = Vec::new();
    loop {
        let filler = net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .context("creating a unix socket")?;
        match net::connect(&filler, &addr) {
            Ok(()) => fillers.push(filler),
            Err(Errno::AGAIN) => break,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("filling the backlog of {}", path.display()))
            }
        }
        ensure!(fillers.len() < 64, "the backlog of {} never filled up", path.display());
    }
    Ok((UnixListener::from(fd), fillers))
}

/// The monitor on a reconnecting client socket is removed while QEMU's
/// connection attempt is still under way (our backlog is full, so its
/// connect waits): there is no client to disconnect yet. Series v5
/// aborted here (the socket unregistered a yank function for a channel
/// it did not have); the CI saw it when a reconnect raced a removal.
/// The attempt then completes as usual, with no frontend, and a monitor
/// added again greets that connection.
pub fn reconnecting_client_removed_while_connecting(ctx: &mut Ctx) -> Result<()> {
    let chardev = "rc-chr";
    let path = ctx.machine.socket_path("rc.sock")?;
    let (listener, fillers) = full_listener(&path)?;
    add_reconnecting_chardev(ctx, chardev, &path)?;
    // chardev-add started the connection attempt; it waits on our backlog.
    add(ctx, chardev)?;
    check_listed(ctx, chardev, true)?;
    ctx.remove_monitor(json!({ "id": MON_ID }))
        .context("removing the monitor while its chardev is still connecting")?;
    check_listed(ctx, chardev, false)?;
    ctx.check_alive()?;
    // Let QEMU's connect through: take the connections holding the backlog.
    let deadline = soon(ctx);
    for _ in &fillers {
        accept(&listener, deadline).context("taking a connection that held the backlog")?;
    }
    let pending =
        accept(&listener, deadline).context("QEMU's connection attempt, monitor removed")?;
    drop(fillers);
    // The chardev is connected with no frontend: a new monitor greets it.
    readd_on_connection(ctx, chardev, pending, "rc-late")
}
