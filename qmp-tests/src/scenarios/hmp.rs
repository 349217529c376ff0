//! Just enough of an HMP (readline monitor) client to tell that one
//! answers: send a command line, read until the output and the prompt.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
};

use anyhow::{bail, Context, Result};

use crate::{deadline::remaining, qmp::Direction, scenarios::Ctx};

const PROMPT: &str = "(qemu) ";

/// Connects to the HMP monitor at `path`, runs `info version` and checks
/// the answer names `version` and ends with the prompt.
pub fn check_answers(ctx: &Ctx, path: &Path, name: &str, version: &str) -> Result<()> {
    let transcript = ctx.transcript();
    transcript.note(name, &format!("connect {}", path.display()));
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to HMP monitor {name} at {}", path.display()))?;
    let line = b"info version\n";
    transcript.record(name, Direction::Sent, line);
    stream
        .write_all(line)
        .with_context(|| format!("sending info version to HMP monitor {name}"))?;
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = ctx.wait();
    loop {
        let text = String::from_utf8_lossy(&output);
        if let Some(at) = text.find(version) {
            if text[at..].ends_with(PROMPT) {
                return Ok(());
            }
        }
        let Some(left) = remaining(deadline) else {
            bail!("HMP monitor {name} did not answer info version with {version:?} and a prompt; got {text:?}");
        };
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => bail!("HMP monitor {name} closed the connection; it had sent {text:?}"),
            Ok(n) => {
                transcript.record(name, Direction::Received, &chunk[..n]);
                output.extend_from_slice(&chunk[..n]);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) if crate::deadline::timed_out(&err) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("reading from HMP monitor {name}"))
            }
        }
    }
}
