//! SIGINT, SIGTERM and SIGHUP: passed on to the running children, then
//! unwound through the guards.
//!
//! The xtask must not die at the first signal, because it still has to
//! unwire a located tree and reset a bisect; it records the signal and
//! checks the record between steps. Its long-running children (configure,
//! ninja, git am, the suite, git bisect) each run in a process group of
//! their own, and a thread that receives the signals signals those groups
//! itself: a SIGTERM sent to the xtask alone reaches ninja and its
//! compilers as surely as a Ctrl-C from the terminal, which now reaches
//! the xtask alone and so the children once. A second signal exits at
//! once; the next run restores any wiring left behind.

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{getpid, getppid, kill_process_group, set_parent_process_death_signal};
use rustix::process::{Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Process groups of the running children. The thread that forwards a
/// signal and [`spawn`] both hold it while they look at [`SIGNALS`], so a
/// child registered just as a signal comes is signalled by one of them.
static CHILDREN: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

fn children() -> MutexGuard<'static, Vec<Pid>> {
    CHILDREN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the thread that receives SIGINT, SIGTERM and SIGHUP. It reads
/// no environment, so the dispatcher may still set variables after it.
pub fn install() -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("catching SIGINT, SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || signals.forever().for_each(forward))
        .context("starting the thread that forwards signals")?;
    Ok(())
}

/// The first signal goes on to every child's group; a second kills them
/// and exits.
fn forward(signal: i32) {
    let groups = children();
    let count = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
    let forward = match Signal::from_named_raw(signal) {
        Some(signal) if count == 1 => signal,
        _ => Signal::KILL,
    };
    for &group in groups.iter() {
        // A group that is already gone has nothing left to stop.
        let _ = kill_process_group(group, forward);
    }
    if count > 1 {
        let _ = std::io::stderr().write_all(
            b"\nerror: interrupted again: exiting now; the next run restores any wiring left behind\n",
        );
        signal_hook::low_level::exit(130);
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

/// A child the signal thread signals, leading a process group of its own;
/// unregistered when dropped.
pub struct Forwarded {
    pub child: Child,
    group: Registered,
}

/// A process group in [`CHILDREN`] until dropped.
struct Registered(Pid);

impl Drop for Registered {
    fn drop(&mut self) {
        children().retain(|&group| group != self.0);
    }
}

impl Forwarded {
    /// Sends `signal` to the child's whole group; a group already gone is
    /// not an error.
    pub fn signal_group(&self, signal: Signal) {
        let _ = kill_process_group(self.group.0, signal);
    }

    /// Waits for the child to exit, at most `limit` when there is one:
    /// `None` when the limit passed first, the child still running.
    pub fn wait_for(&mut self, limit: Option<Duration>, what: &str) -> Result<Option<ExitStatus>> {
        if let Some(limit) = limit {
            let pidfd = qmp_tests::pidfd::PidFd::open(self.child.id())
                .with_context(|| format!("opening a pidfd for {what}"))?;
            let exited = pidfd
                .wait_exit(Instant::now() + limit)
                .with_context(|| format!("waiting for {what}"))?;
            if !exited {
                return Ok(None);
            }
        }
        let status = self.child.wait().with_context(|| format!("waiting for {what}"))?;
        Ok(Some(status))
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
/// signal thread. `what` names it in errors. After a signal only the
/// children of [`cleanup`] start.
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
    let parent = getpid();
    // SAFETY: between fork and exec the closure makes two raw system
    // calls (prctl, getppid) through rustix, which neither allocate nor
    // take locks. pre_exec has no safe form.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            set_parent_process_death_signal(Some(Signal::TERM))?;
            // The xtask may have died before prctl took effect.
            if getppid() != Some(parent) {
                return Err(std::io::Error::other("the xtask exited during spawn"));
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| format!("starting {what}"))?;
    let group = Pid::from_child(&child);
    let mut groups = children();
    groups.push(group);
    // A signal that came before the registration found no group to
    // forward to: pass it on now.
    if interrupted() && !cleaning_up {
        let _ = kill_process_group(group, Signal::INT);
    }
    drop(groups);
    let group = Registered(group);
    Ok(Forwarded { child, group })
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
    // Registered until it has exited; both pipes drain at once.
    let Forwarded { child, group: _group } = running;
    let out = child.wait_with_output().with_context(|| format!("waiting for {what}"))?;
    if let Some(writer) = writer {
        // A child that exits without reading all its input closes the pipe
        // (EPIPE): its exit status says what happened, not the write.
        let _ = writer.join();
    }
    Ok(out)
}

/// Runs `command` to completion with the xtask's own stdout and stderr,
/// signals forwarded; a non-zero exit is an error naming `what`.
pub fn run(mut command: Command, what: &str) -> Result<()> {
    let status =
        spawn(&mut command, what)?.child.wait().with_context(|| format!("waiting for {what}"))?;
    if !status.success() {
        check()?;
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// xshell's commands, run through [`spawn`] like every other child: in a
/// process group the signal thread signals, killed with the xtask. xshell's own
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
