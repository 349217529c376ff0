//! `pretty`: a dynamic monitor added with `pretty: true` prints its JSON
//! as a command-line QMP monitor with `pretty=on` does, each message
//! spread over several lines. The line-based client cannot read that, so
//! this scenario reads the socket itself, one JSON value at a time.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Instant,
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

pub fn pretty(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    hotplug::add_chardev(ctx, &mon.chardev, &mon.path)?;
    ctx.add_monitor(json!({ "id": mon.id, "chardev": mon.chardev, "pretty": true }))?;

    let mut client = RawClient::connect(&mon.path, ctx.wait())?;
    let greeting = client.message(ctx, "greeting")?;
    ensure!(greeting["QMP"]["version"].is_object(), "{} did not greet: {greeting}", mon.id);
    client.send(ctx, r#"{"execute": "qmp_capabilities"}"#)?;
    let reply = client.message(ctx, "qmp_capabilities")?;
    ensure!(reply["return"].is_object(), "qmp_capabilities on {} returned {reply}", mon.id);
    client.send(ctx, r#"{"execute": "query-version"}"#)?;
    let version = client.message(ctx, "query-version")?;
    ensure!(
        version["return"]["qemu"].is_object(),
        "query-version on {} returned {version}",
        mon.id
    );
    drop(client);
    hotplug::remove(ctx, &mon)
}

/// A client of a pretty-printing monitor.
struct RawClient {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl RawClient {
    fn connect(path: &Path, deadline: Instant) -> Result<RawClient> {
        ensure!(remaining(deadline).is_some(), "no time left to connect to {}", path.display());
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        Ok(RawClient { stream, pending: Vec::new() })
    }

    fn send(&mut self, ctx: &Ctx, line: &str) -> Result<()> {
        ctx.log("pretty >", line);
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .context("writing to the pretty monitor")
    }

    /// The next JSON value, which must span more than one line.
    fn message(&mut self, ctx: &Ctx, what: &str) -> Result<Value> {
        let deadline = ctx.wait();
        loop {
            let mut values =
                serde_json::Deserializer::from_slice(&self.pending).into_iter::<Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let end = values.byte_offset();
                    let text = String::from_utf8_lossy(&self.pending[..end]).trim().to_owned();
                    self.pending.drain(..end);
                    ctx.log("pretty <", &text);
                    ensure!(
                        text.lines().count() > 1,
                        "the {what} of a monitor added with pretty true is on one line, \
                         as without it: {text}"
                    );
                    return Ok(value);
                }
                Some(Err(err)) if !err.is_eof() => {
                    bail!("the {what} of the pretty monitor is no JSON: {err}")
                }
                _ => {}
            }
            let Some(left) = remaining(deadline) else {
                bail!(
                    "no complete {what} from the pretty monitor in time; got {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            };
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the pretty monitor closed the connection before its {what}"),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
                    ) => {}
                Err(err) => return Err(err).context("reading from the pretty monitor"),
            }
        }
    }
}
