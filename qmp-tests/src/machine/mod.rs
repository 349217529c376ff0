//! Launching QEMU with a main QMP monitor, and making sure it goes away.
//!
//! We bind and listen on the monitor socket ourselves and hand QEMU the
//! listening fd. Our `connect` then completes at once (the connection waits
//! in the backlog until QEMU accepts) and, should QEMU die first, the last
//! copy of the listener closes with it and our read fails at once. So no
//! polling for the socket to appear, and no sleeps.

mod exit;
mod process;

use std::{
    ffi::OsString,
    fs::{self, File},
    io,
    os::{
        fd::{AsRawFd, BorrowedFd},
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use rustix::{
    io::{fcntl_setfd, FdFlags},
    process::{getpid, getppid, set_parent_process_death_signal, Signal},
    thread::{sched_setaffinity, CpuSet},
};
use serde_json::Value;

use crate::{
    janitor::Janitor,
    program::Program,
    qmp::{Qmp, QmpError, Transcript},
    text::tail_lines,
};
use process::{Process, WorkDir};

pub use exit::{Exit, Shutdown, StoppedBy};
pub use process::Killer;

/// Stands for the machine's temp dir in [`LaunchOptions::extra_args`].
pub const DIR_PLACEHOLDER: &str = "{dir}";

/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Generous because sanitizer builds run leak checks on exit.
const QUIT_WAIT: Duration = Duration::from_secs(20);
const SIGTERM_WAIT: Duration = Duration::from_secs(10);
const SIGKILL_WAIT: Duration = Duration::from_secs(10);

/// How to start a [`Machine`].
#[derive(Clone)]
pub struct LaunchOptions {
    /// Names the stderr log file (`NAME.stderr.log`).
    pub name: String,
    /// Appended to the fixed command line, with [`DIR_PLACEHOLDER`]
    /// replaced by the machine's private temp dir (for socket paths).
    pub extra_args: Vec<OsString>,
    /// Where QEMU's stderr is kept; `None` keeps it in the temp dir, which
    /// goes away with the machine.
    pub log_dir: Option<PathBuf>,
    /// Registers the temp dir and the pid for cleanup if we are killed.
    pub janitor: Option<Arc<Janitor>>,
    /// Receives the main monitor's traffic (as "main").
    pub transcript: Transcript,
    /// Budget for QEMU to greet and negotiate on the main monitor.
    pub start_timeout: Duration,
    /// Budget for each [`Machine::cmd`].
    pub command_timeout: Duration,
    /// Runs QEMU on this one CPU (all of its threads), so that its main
    /// loop and I/O thread interleave instead of running side by side.
    pub cpu: Option<usize>,
    /// Which QEMU program this is: how its main monitor is given.
    pub program: Program,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            name: "qemu".to_string(),
            extra_args: Vec::new(),
            log_dir: None,
            janitor: None,
            transcript: Transcript::new(),
            start_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            cpu: None,
            program: Program::System,
        }
    }
}

/// A running QEMU (`-machine none`) with a negotiated main QMP monitor.
///
/// Dropping it kills QEMU and removes its temp dir. QEMU also gets SIGKILL
/// when the *thread* that launched it exits (PR_SET_PDEATHSIG), so launch
/// from the thread that owns the machine.
pub struct Machine {
    // Field order is drop order: the connection closes, then QEMU is
    // killed and reaped, then its directory goes.
    qmp: Qmp,
    process: Process,
    dir: WorkDir,
    qemu: PathBuf,
    log: PathBuf,
    command_timeout: Duration,
    start_time: Duration,
}

impl Machine {
    /// Starts `qemu`, reads the main monitor's greeting and negotiates.
    pub fn launch(qemu: &Path, opts: &LaunchOptions) -> Result<Machine> {
        let meta = fs::metadata(qemu).with_context(|| format!("QEMU binary {}", qemu.display()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            bail!("QEMU binary {} is not an executable file", qemu.display());
        }
        let dir = WorkDir::create(opts.janitor.clone())?;
        let socket = socket_in(dir.path(), "main.sock")?;
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("binding the main monitor socket {}", socket.display()))?;
        let log = match &opts.log_dir {
            Some(log_dir) => {
                fs::create_dir_all(log_dir)
                    .with_context(|| format!("creating log dir {}", log_dir.display()))?;
                log_dir.join(format!("{}.stderr.log", opts.name))
            }
            None => dir.path().join("qemu.stderr.log"),
        };
        let log_file =
            File::create(&log).with_context(|| format!("creating log file {}", log.display()))?;

        let mut command = qemu_command(qemu, &listener, opts, dir.path());
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicating the log file handle")?)
            .stderr(log_file);
        let child = command.spawn().with_context(|| format!("starting {}", qemu.display()))?;
        let mut process = Process::new(child, opts.janitor.clone())?;
        // QEMU holds its own copy now; ours must go so that QEMU's death
        // closes the listener and fails our connection at once.
        drop(listener);

        let spawned = Instant::now();
        let deadline = spawned + opts.start_timeout;
        let qmp = UnixStream::connect(&socket)
            .map_err(QmpError::from)
            .and_then(|stream| Qmp::from_stream(stream, "main", opts.transcript.clone(), deadline))
            .and_then(|mut qmp| qmp.negotiate(deadline).map(|()| qmp));
        let qmp = match qmp {
            Ok(qmp) => qmp,
            Err(err) => return Err(not_qemu(qemu, err, &mut process, &log)),
        };
        Ok(Machine {
            qmp,
            process,
            dir,
            qemu: qemu.to_path_buf(),
            log,
            command_timeout: opts.command_timeout,
            start_time: spawned.elapsed(),
        })
    }

    /// Runs `command` on the main monitor with the launch options'
    /// command timeout. `args` of `Value::Null` sends no arguments.
    pub fn cmd(&mut self, command: &str, args: Value) -> Result<Value, QmpError> {
        let deadline = Instant::now() + self.command_timeout;
        self.qmp.execute(command, args, deadline)
    }

    /// From spawning QEMU to a negotiated main monitor: what the slowest
    /// part of this machine, under this run's load, costs.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// The main monitor, for calls with a deadline of the caller's.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    pub fn pid(&self) -> u32 {
        self.process.pidfd.pid()
    }

    pub fn qemu(&self) -> &Path {
        &self.qemu
    }

    /// The private (0700) temp dir holding this machine's sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path for a socket called `name` in the machine's temp dir,
    /// checked against the unix socket path limit.
    pub fn socket_path(&self, name: &str) -> Result<PathBuf> {
        socket_in(self.dir.path(), name)
    }

    /// Where QEMU's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// QEMU's stderr so far.
    pub fn stderr(&self) -> Result<String> {
        read_log(&self.log)
    }

    /// A handle that can SIGKILL this QEMU from another thread, and is
    /// harmless once the process is gone.
    pub fn killer(&self) -> Killer {
        self.process.killer()
    }

    /// Waits for QEMU to exit by itself (e.g. after a `quit` sent by the
    /// caller); `None` if it is still running at `deadline`.
    pub fn wait_exit(&mut self, deadline: Instant) -> Result<Option<Exit>> {
        self.process
            .wait_exit(deadline)
            .with_context(|| format!("waiting for QEMU (pid {}) to exit", self.pid()))
    }

    /// Stops QEMU: `quit`, then SIGTERM, then SIGKILL, each given a while.
    pub fn shutdown(&mut self) -> Result<Shutdown> {
        if let Some(exit) = self.wait_exit(Instant::now())? {
            return Ok(Shutdown { exit, stopped_by: StoppedBy::Itself });
        }
        let deadline = Instant::now() + QUIT_WAIT;
        // The reply to quit races with QEMU closing the socket, so end of
        // file is as good as a reply; other failures fall through to the
        // signals below.
        let _ = self.qmp.execute("quit", Value::Null, deadline);
        if let Some(exit) = self.wait_exit(deadline)? {
            return Ok(Shutdown { exit, stopped_by: StoppedBy::Quit });
        }
        self.terminate()
    }

    /// Stops QEMU without asking: SIGTERM, then SIGKILL.
    pub fn terminate(&mut self) -> Result<Shutdown> {
        self.signal_until_exit(&[
            (Signal::TERM, SIGTERM_WAIT, StoppedBy::Sigterm),
            (Signal::KILL, SIGKILL_WAIT, StoppedBy::Sigkill),
        ])
    }

    /// Stops QEMU at once with SIGKILL, for a run whose verdict is already
    /// known: a QEMU that hangs on quit or SIGTERM costs no windows. One
    /// that had exited by itself keeps its own exit (a crash stays one).
    pub fn kill(&mut self) -> Result<Shutdown> {
        if let Some(exit) = self.wait_exit(Instant::now())? {
            return Ok(Shutdown { exit, stopped_by: StoppedBy::Itself });
        }
        self.signal_until_exit(&[(Signal::KILL, SIGKILL_WAIT, StoppedBy::Sigkill)])
    }

    /// Each signal in turn, each given its wait, until QEMU exits.
    fn signal_until_exit(&mut self, signals: &[(Signal, Duration, StoppedBy)]) -> Result<Shutdown> {
        for &(signal, wait, stopped_by) in signals {
            if self.process.exit.is_none() {
                self.process
                    .pidfd
                    .signal(signal)
                    .with_context(|| format!("signalling QEMU (pid {})", self.pid()))?;
            }
            if let Some(exit) = self.wait_exit(Instant::now() + wait)? {
                return Ok(Shutdown { exit, stopped_by });
            }
        }
        bail!("QEMU (pid {}) survived SIGKILL for {SIGKILL_WAIT:?}", self.pid())
    }
}

fn qemu_command(qemu: &Path, listener: &UnixListener, opts: &LaunchOptions, dir: &Path) -> Command {
    let fd = listener.as_raw_fd();
    let cpu = opts.cpu;
    let mut command = Command::new(qemu);
    // wait=on: QEMU accepts our connection (already in the backlog)
    // before it creates the monitor, so the monitor sees the client and
    // sends its greeting before it joins the monitor list. With wait=off,
    // a monitor connected later gets broadcast events (RESUME at start)
    // before its greeting, which QMP clients rightly refuse. (QEMU's
    // python/qemu/machine gets the same from a chardev that connects to
    // the test's listener.)
    command
        .args(opts.program.main_monitor_args(fd))
        .args(opts.extra_args.iter().map(|arg| expand_dir(arg, dir)));
    let parent = getpid();
    // SAFETY: between fork and exec the closure makes raw system calls
    // (prctl, getppid, fcntl, sched_setaffinity) through rustix, which
    // neither allocate nor take locks; the CpuSet is plain data on the
    // child's stack. pre_exec has no safe form.
    unsafe {
        command.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before prctl took effect; then no
            // signal will ever come, so do not start at all.
            if getppid() != Some(parent) {
                return Err(io::Error::other("the runner exited during spawn"));
            }
            // The listener is close-on-exec like every fd std creates;
            // this one, in this child only, must survive exec.
            // SAFETY: the listener outlives the spawn that runs this.
            let listener = BorrowedFd::borrow_raw(fd);
            fcntl_setfd(listener, FdFlags::empty())?;
            if let Some(cpu) = cpu {
                let mut set = CpuSet::new();
                set.set(cpu);
                sched_setaffinity(None, &set)?;
            }
            Ok(())
        });
    }
    command
}

fn expand_dir(arg: &OsString, dir: &Path) -> OsString {
    match (arg.to_str(), dir.to_str()) {
        (Some(text), Some(dir)) if text.contains(DIR_PLACEHOLDER) => {
            text.replace(DIR_PLACEHOLDER, dir).into()
        }
        _ => arg.clone(),
    }
}

/// The error for a process that did not greet and negotiate like QEMU,
/// with what it left behind: its exit status and the end of its stderr.
fn not_qemu(qemu: &Path, err: QmpError, process: &mut Process, log: &Path) -> anyhow::Error {
    // On end of file the process is exiting; give it a moment to be
    // reaped so the status can be reported. Otherwise it is hung.
    let wait = if matches!(err, QmpError::Eof) { Duration::from_secs(5) } else { Duration::ZERO };
    let status = match process.wait_exit(Instant::now() + wait) {
        Ok(Some(exit)) => format!("it ended with {exit}"),
        _ => "it was still running".to_string(),
    };
    let stderr = read_log(log).unwrap_or_default();
    let stderr = match tail_lines(&stderr, 10).trim() {
        "" => "nothing on stderr".to_string(),
        tail => format!("its stderr ends:\n{tail}"),
    };
    anyhow::anyhow!(
        "{} did not start as QEMU (no QMP greeting and negotiation on its monitor: {err}); \
         {status}; {stderr}",
        qemu.display()
    )
}

/// `dir/name`, refused with the fix spelled out when it cannot be a unix
/// socket address; `bind` would otherwise fail with a bare EINVAL.
fn socket_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit for unix \
             sockets; set TMPDIR to a shorter directory",
            path.display()
        );
    }
    Ok(path)
}

fn read_log(log: &Path) -> Result<String> {
    let bytes = fs::read(log).with_context(|| format!("reading QEMU log {}", log.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dir_placeholder_becomes_the_machine_dir() {
        let dir = Path::new("/tmp/qmp-x");
        let arg = OsString::from("unix:{dir}/a.sock,server=on");
        assert_eq!(expand_dir(&arg, dir), "unix:/tmp/qmp-x/a.sock,server=on");
        let plain = OsString::from("-nodefaults");
        assert_eq!(expand_dir(&plain, dir), plain);
    }

    #[test]
    fn long_paths_are_refused_with_the_fix() {
        let long = format!("/{}", "d".repeat(120));
        let err = socket_in(Path::new(&long), "main.sock").unwrap_err().to_string();
        assert!(err.contains(&format!("{long}/main.sock")) && err.contains("TMPDIR"), "{err}");
        socket_in(Path::new("/tmp/qmp-x"), "main.sock").unwrap();
    }
}
