//! What a client of a dynamic monitor is greeted with.

use std::{
    io::{ErrorKind, Read},
    os::unix::net::UnixStream,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::{
    deadline::remaining,
    scenarios::{
        hotplug::{self, DynMon},
        Ctx,
    },
};

/// On a unix socket the dynamic monitor offers "oob", and its greeting
/// is the one the main (command-line, unix socket) monitor gave. On a
/// telnet socket, whose handshake is a source of the chardev's own, the
/// monitor runs in the main loop and offers no "oob".
pub fn greeting(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add(ctx, &mon)?;
    let client = hotplug::connect(ctx, &mon)?;
    ensure!(
        client.offers("oob"),
        "the greeting on {} (unix socket) does not offer oob: {}",
        mon.id,
        client.greeting()
    );
    let main = ctx.machine.qmp().greeting().clone();
    ensure!(
        *client.greeting() == main,
        "the greeting on {} differs from the command-line monitor's: {} vs {main}",
        mon.id,
        client.greeting()
    );
    client.close();
    hotplug::remove(ctx, &mon)?;
    telnet(ctx)
}

fn telnet(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "-telnet")?;
    let path = mon.path.to_str().context("socket path is not UTF-8")?;
    ctx.main(
        "chardev-add",
        json!({
            "id": mon.chardev,
            "backend": { "type": "socket", "data": {
                "addr": { "type": "unix", "data": { "path": path } },
                "server": true,
                "wait": false,
                "telnet": true,
            }},
        }),
    )?;
    hotplug::add_monitor(ctx, &mon)?;
    let mut stream =
        UnixStream::connect(&mon.path).with_context(|| format!("connecting to {path}"))?;
    let greeting = telnet_line(ctx, &mut stream)?;
    ctx.log(&mon.id, &greeting.to_string());
    ensure!(
        greeting["QMP"]["version"].is_object(),
        "{} on a telnet socket did not greet: {greeting}",
        mon.id
    );
    let caps = greeting["QMP"]["capabilities"].as_array();
    ensure!(
        caps.is_some_and(|caps| !caps.iter().any(|c| c == "oob")),
        "the greeting on {} (telnet socket) offers oob, but a monitor on a chardev that creates \
         sources of its own runs in the main loop: {greeting}",
        mon.id
    );
    drop(stream);
    hotplug::remove(ctx, &mon)
}

/// The first line after the telnet negotiation QEMU opens with
/// (`IAC cmd option` triples), as JSON.
fn telnet_line(ctx: &Ctx, stream: &mut UnixStream) -> Result<Value> {
    const IAC: u8 = 255;
    let deadline = ctx.wait();
    let mut bytes = Vec::new();
    loop {
        let mut text = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == IAC {
                i += 3;
            } else {
                text.push(bytes[i]);
                i += 1;
            }
        }
        if let Some(end) = text.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&text[..end]).into_owned();
            return serde_json::from_str(line.trim())
                .with_context(|| format!("the telnet greeting is no JSON: {line:?}"));
        }
        let Some(left) = remaining(deadline) else {
            bail!("no greeting on the telnet socket in time; got {bytes:?}");
        };
        stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => bail!("the telnet socket closed before the greeting"),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                ) => {}
            Err(err) => return Err(err).context("reading the telnet socket"),
        }
    }
}
