//! Just enough of an HMP (readline monitor) client to tell that one
//! answers: send a command line, read until the output and the prompt.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};

use crate::{
    deadline::remaining,
    qmp::{Direction, Transcript},
    scenarios::Ctx,
};

const PROMPT: &str = "(qemu) ";

/// Connects to the HMP monitor at `path`, waits for the banner and its
/// prompt, then runs `info version` and checks that the output after the
/// command (the banner names the version too, so it does not count)
/// names `version` and ends with the prompt.
pub fn check_answers(ctx: &Ctx, path: &Path, name: &str, version: &str) -> Result<()> {
    let transcript = ctx.transcript();
    transcript.note(name, &format!("connect {}", path.display()));
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("connecting to HMP monitor {name} at {}", path.display()))?;
    let deadline = ctx.wait();
    let banner =
        read_until(transcript, &mut stream, name, deadline, "its banner and prompt", |text| {
            text.ends_with(PROMPT)
        })?;
    let line = b"info version\n";
    transcript.record(name, Direction::Sent, line);
    stream
        .write_all(line)
        .with_context(|| format!("sending info version to HMP monitor {name}"))?;
    let deadline = ctx.wait();
    let output = read_until(
        transcript,
        &mut stream,
        name,
        deadline,
        &format!("the output of info version ({version:?}) and a prompt"),
        |text| {
            // The echo of the command line comes first; the answer after.
            let answer = text.find("info version").map_or(text, |at| &text[at + 12..]);
            answer.find(version).is_some_and(|at| answer[at..].ends_with(PROMPT))
        },
    )?;
    ensure!(!banner.is_empty() && !output.is_empty(), "HMP monitor {name} sent nothing");
    Ok(())
}

/// Reads from an HMP connection until `done` holds for all read so far.
fn read_until(
    transcript: &Transcript,
    stream: &mut UnixStream,
    name: &str,
    deadline: Instant,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    let mut output = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&output).into_owned();
        if done(&text) {
            return Ok(text);
        }
        let Some(left) = remaining(deadline) else {
            bail!("HMP monitor {name} did not send {what}; got {text:?}");
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
