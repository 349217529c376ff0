//! SIGINT, SIGTERM and SIGHUP: passed on to the running children, then
//! unwound through the guards.
//!
//! The xtask must not die at the first signal, because it still has to
//! unwire a located tree and reset a bisect; it records the signal and
//! checks the record between steps. Its long-running children (configure,
//! ninja, git am, the suite, git bisect) each run in a process group of
//! their own and the handler signals those groups itself: a SIGTERM sent
//! to the xtask alone reaches ninja and its compilers as surely as a
//! Ctrl-C from the terminal, which now reaches the xtask alone and so the
//! children once. A second signal exits at once; the next run restores
//! any wiring left behind.

use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use anyhow::{bail, Context, Result};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Process groups of the running children; 0 is a free slot. Fixed-size,
/// because the handler may not allocate or take a lock.
static CHILDREN: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];

const AGAIN: &[u8] =
    b"\nerror: interrupted again: exiting now; the next run restores any wiring left behind\n";

extern "C" fn on_signal(signal: libc::c_int) {
    let count = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
    let forward = if count == 1 { signal } else { libc::SIGKILL };
    for slot in &CHILDREN {
        let group = slot.load(Ordering::SeqCst);
        if group > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(-group, forward) };
        }
    }
    if count > 1 {
        // SAFETY: write and _exit are async-signal-safe; AGAIN is a
        // static buffer of the length given.
        unsafe {
            libc::write(2, AGAIN.as_ptr().cast(), AGAIN.len());
            libc::_exit(130);
        }
    }
}

pub fn install() {
    // SAFETY: the handler only touches atomics and calls async-signal-safe
    // functions; sigaction with a zeroed mask is well-formed. No
    // SA_RESTART: a blocking wait for a lock ends with EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut());
    }
}

pub fn interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Fails when a signal arrived, so the caller unwinds through its guards.
pub fn check() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// A child the handler signals; unregistered when dropped.
pub struct Forwarded {
    pub child: Child,
    slot: usize,
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        CHILDREN[self.slot].store(0, Ordering::SeqCst);
    }
}

thread_local! {
    static CLEANING_UP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, whose children put things back (git bisect reset, git am
/// --abort, unwiring): they start, and are not signalled, even after a
/// signal, which would otherwise stop every new child.
pub fn cleanup<T>(f: impl FnOnce() -> T) -> T {
    CLEANING_UP.with(|c| c.set(c.get() + 1));
    let value = f();
    CLEANING_UP.with(|c| c.set(c.get() - 1));
    value
}

/// Starts `command` in a process group of its own, registered for the
/// handler. `what` names it in errors. After a signal only the children
/// of [`cleanup`] start.
pub fn spawn(command: &mut Command, what: &str) -> Result<Forwarded> {
    let cleaning_up = CLEANING_UP.with(|c| c.get()) > 0;
    if !cleaning_up {
        check()?;
    }
    std::os::unix::process::CommandExt::process_group(command, 0);
    // A kill -9 of the xtask cannot be caught, and the child's own group
    // does not die with ours: have the kernel send it SIGTERM when we go
    // (ninja passes that on to its commands). Spawned from the thread
    // that waits for it, so the signal comes only when the xtask ends.
    // SAFETY: getpid is async-signal-safe and runs before fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (prctl, getppid) run between
    // fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The xtask may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the xtask exited during spawn"));
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let group = child.id() as i32;
    let Some(slot) = CHILDREN.iter().position(|s| {
        s.compare_exchange(0, group, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }) else {
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "{what}: more than {} children at once, which the xtask never starts (a bug)",
            CHILDREN.len()
        );
    };
    // A signal that came between the spawn and the registration found no
    // group to forward to: pass it on now.
    if interrupted() && !cleaning_up {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-group, libc::SIGINT) };
    }
    Ok(Forwarded { child, slot })
}

/// Runs `command` to completion, output captured, signals forwarded.
pub fn output(command: Command, what: &str) -> Result<Output> {
    output_with_input(command, None, what)
}

/// [`output`], with `input` written to the child's stdin.
pub fn output_with_input(
    mut command: Command,
    input: Option<Vec<u8>>,
    what: &str,
) -> Result<Output> {
    use std::io::Read;
    use std::process::Stdio;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut running = spawn(&mut command, what)?;
    // Written from a thread: a child that answers before it has read all
    // of its input would otherwise block us both.
    let writer = match (input, running.child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&bytes)
        })),
        _ => None,
    };
    let (Some(mut stdout), Some(mut stderr)) =
        (running.child.stdout.take(), running.child.stderr.take())
    else {
        unreachable!("both outputs were piped");
    };
    // Both pipes drain at once, or a child that fills one would block.
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let mut err = Vec::new();
    stderr
        .read_to_end(&mut err)
        .with_context(|| format!("reading the output of {what}"))?;
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader of {what}'s output panicked"))?
        .with_context(|| format!("reading the output of {what}"))?;
    let status = running
        .child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    if let Some(writer) = writer {
        // A child that exits without reading all its input closes the pipe
        // (EPIPE): its exit status says what happened, not the write.
        let _ = writer.join();
    }
    Ok(Output {
        status,
        stdout: out,
        stderr: err,
    })
}

/// Runs `command` to completion with the xtask's own stdout and stderr,
/// signals forwarded; a non-zero exit is an error naming `what`.
pub fn run(mut command: Command, what: &str) -> Result<()> {
    let status = spawn(&mut command, what)?
        .child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    if !status.success() {
        check()?;
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// xshell's commands, run through [`spawn`] like every other child: in a
/// process group the handler signals, killed with the xtask. xshell's own
/// `run`, `read` and `output` would start them where neither reaches.
/// Errors name the command line.
pub trait Controlled {
    /// Runs with the xtask's stdout and stderr; a non-zero exit is an
    /// error.
    fn spawn_run(self) -> Result<()>;
    /// Runs with stdout captured and returned trimmed; a non-zero exit is
    /// an error that carries what the command wrote to stderr.
    fn spawn_read(self) -> Result<String>;
    /// Runs with both outputs captured, whatever the exit status.
    fn spawn_output(self) -> Result<Output>;
    /// [`Controlled::spawn_read`], with `input` as its stdin.
    fn spawn_read_with(self, input: Vec<u8>) -> Result<String>;
}

impl Controlled for xshell::Cmd<'_> {
    fn spawn_run(self) -> Result<()> {
        let what = self.to_string();
        run(self.into(), &what)
    }

    fn spawn_read(self) -> Result<String> {
        let what = self.to_string();
        read_checked(output(self.into(), &what)?, &what)
    }

    fn spawn_output(self) -> Result<Output> {
        let what = self.to_string();
        output(self.into(), &what)
    }

    fn spawn_read_with(self, input: Vec<u8>) -> Result<String> {
        let what = self.to_string();
        read_checked(output_with_input(self.into(), Some(input), &what)?, &what)
    }
}

fn read_checked(out: Output, what: &str) -> Result<String> {
    if !out.status.success() {
        check()?;
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let mut text = String::from_utf8(out.stdout)
        .map_err(|_| anyhow::anyhow!("`{what}` wrote output that is not UTF-8"))?;
    // As xshell's read: one trailing newline is the end of the line.
    if text.ends_with('\n') {
        text.pop();
    }
    if text.ends_with('\r') {
        text.pop();
    }
    Ok(text)
}
