//! A helper process that cleans up after a runner that could not.
//!
//! PR_SET_PDEATHSIG kills QEMU when the runner dies, but nothing removes
//! the temp dirs of a runner killed by SIGKILL. So the runner starts a copy
//! of its own binary as `qmp-tests __janitor`, keeps a pipe to its stdin,
//! and registers every temp dir and QEMU pid there. When the pipe reaches
//! end-of-file, the janitor kills what is still registered and removes
//! what is left, then exits.
//!
//! Protocol, one line each: `dir PATH`, `undir PATH`, `pid PID`, `unpid PID`.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    io::{self, BufRead, Write},
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{atomic::AtomicBool, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use rustix::process::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::pidfd::PidFd;

/// The hidden subcommand that runs [`serve`].
pub const SUBCOMMAND: &str = "__janitor";

/// Signals that reach a whole foreground process group (Ctrl-C, Ctrl-\,
/// a closing terminal); the janitor must outlive them to do its job.
const TERMINAL_SIGNALS: [i32; 4] = [SIGINT, SIGQUIT, SIGHUP, SIGTERM];

/// How long the janitor waits for killed processes before removing dirs.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The runner's side: a pipe to the janitor process.
pub struct Janitor {
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
}

impl Janitor {
    /// Starts `program __janitor`; `program` is normally the current exe.
    pub fn spawn(program: &Path) -> Result<Janitor> {
        let mut command = Command::new(program);
        command.arg(SUBCOMMAND).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        // Its own process group keeps terminal signals for the runner's
        // group away; the janitor also catches them itself
        // ([`ignore_terminal_signals`]) for a signal sent to its pid on
        // purpose by a wrapper script.
        command.process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the janitor process {}", program.display()))?;
        let stdin = child.stdin.take();
        Ok(Janitor { child, stdin: Mutex::new(stdin) })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn register_dir(&self, dir: &Path) {
        self.send("dir", dir.as_os_str());
    }

    pub fn unregister_dir(&self, dir: &Path) {
        self.send("undir", dir.as_os_str());
    }

    pub fn register_pid(&self, pid: u32) {
        self.send("pid", OsStr::new(&pid.to_string()));
    }

    pub fn unregister_pid(&self, pid: u32) {
        self.send("unpid", OsStr::new(&pid.to_string()));
    }

    fn send(&self, verb: &str, arg: &OsStr) {
        // A newline would split the record; temp dir names never contain
        // one, and a TMPDIR that does is not worth a protocol escape.
        if arg.as_bytes().contains(&b'\n') {
            eprintln!("janitor: not registering a path with a newline: {arg:?}");
            return;
        }
        let mut line = format!("{verb} ").into_bytes();
        line.extend_from_slice(arg.as_bytes());
        line.push(b'\n');
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pipe) = stdin.as_mut() else { return };
        if let Err(err) = pipe.write_all(&line) {
            // Losing the janitor loses only the SIGKILL safety net: the
            // runner itself still cleans up, so carry on, but say so once.
            eprintln!("janitor: lost the janitor process ({err}); cleanup after SIGKILL is off");
            *stdin = None;
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        // Closing the pipe is the signal to finish; everything the runner
        // cleaned up itself has been unregistered by then.
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let _ = self.child.wait();
    }
}

/// Makes the janitor outlive the signals a terminal sends to a whole
/// group: each only sets a flag that nothing reads. Called first thing by
/// the janitor's entry point.
pub fn ignore_terminal_signals() {
    static SEEN: AtomicBool = AtomicBool::new(false);
    for signal in TERMINAL_SIGNALS {
        if let Err(err) = signal_hook::flag::register(signal, &SEEN) {
            eprintln!("janitor: cannot catch signal {signal}: {err}");
        }
    }
}

/// The janitor's side: reads registrations until end-of-file, then kills
/// and removes whatever is still registered.
pub fn serve(input: impl BufRead) -> io::Result<()> {
    let mut dirs = BTreeSet::new();
    let mut pids = BTreeMap::new();
    for line in input.split(b'\n') {
        let line = line?;
        let mut words = line.splitn(2, |&b| b == b' ');
        let (Some(verb), Some(arg)) = (words.next(), words.next()) else { continue };
        let pid = || std::str::from_utf8(arg).ok()?.parse::<u32>().ok();
        match verb {
            b"dir" => {
                dirs.insert(PathBuf::from(OsStr::from_bytes(arg)));
            }
            b"undir" => {
                dirs.remove(Path::new(OsStr::from_bytes(arg)));
            }
            // Opened now, while the runner still holds the child unreaped,
            // so the fd names QEMU and not a later process that happens to
            // get the same pid.
            b"pid" => {
                if let Some((pid, Ok(pidfd))) = pid().map(|pid| (pid, PidFd::open(pid))) {
                    pids.insert(pid, pidfd);
                }
            }
            b"unpid" => {
                if let Some(pid) = pid() {
                    pids.remove(&pid);
                }
            }
            _ => {}
        }
    }
    for pidfd in pids.values() {
        let _ = pidfd.signal(Signal::KILL);
    }
    // Dead before their dirs go, so no QEMU recreates a socket in a
    // directory we are removing.
    let deadline = Instant::now() + KILL_WAIT;
    for pidfd in pids.values() {
        let _ = pidfd.wait_exit(deadline);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_registered_dirs_and_keeps_unregistered_ones() {
        let root = tempfile::tempdir().unwrap();
        let left = root.path().join("left");
        let done = root.path().join("done");
        std::fs::create_dir_all(left.join("sub")).unwrap();
        std::fs::create_dir(&done).unwrap();
        let input = format!(
            "dir {}\ndir {}\nundir {}\npid notanumber\n",
            left.display(),
            done.display(),
            done.display()
        );
        serve(input.as_bytes()).unwrap();
        assert!(!left.exists());
        assert!(done.exists());
    }

    #[test]
    fn kills_registered_processes() {
        let mut child = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
        let input = format!("pid {}\n", child.id());
        serve(input.as_bytes()).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
