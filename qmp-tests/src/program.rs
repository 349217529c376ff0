//! The QEMU programs with QMP monitors the suite runs against:
//! qemu-system-TARGET and qemu-storage-daemon. Both offer the dynamic
//! monitor commands under the same rules; they differ in how the main
//! monitor is given on the command line, and qemu-storage-daemon has no
//! VM run state (no `stop`, `cont`, STOP, RESUME), no HMP and no
//! `-machine`.

use std::ffi::OsString;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Program {
    /// qemu-system-TARGET, started with `-machine none`.
    #[default]
    System,
    /// qemu-storage-daemon.
    StorageDaemon,
}

impl Program {
    pub const ALL: [Program; 2] = [Program::System, Program::StorageDaemon];

    /// As `--program` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Program::System => "system",
            Program::StorageDaemon => "storage-daemon",
        }
    }

    pub fn parse(text: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|p| p.name() == text)
    }

    /// The command line up to and including the main monitor on the
    /// chardev `main`, a listening socket passed as `fd`. `wait=on`: the
    /// program accepts our connection before it creates the monitor, so
    /// the greeting comes before any event.
    pub fn main_monitor_args(self, fd: i32) -> Vec<OsString> {
        let chardev = format!("socket,id=main,fd={fd},server=on,wait=on");
        let args: Vec<String> = match self {
            Program::System => vec![
                "-machine".into(),
                "none".into(),
                "-nodefaults".into(),
                "-display".into(),
                "none".into(),
                "-chardev".into(),
                chardev,
                "-mon".into(),
                "chardev=main,mode=control".into(),
            ],
            Program::StorageDaemon => {
                vec!["--chardev".into(), chardev, "--monitor".into(), "chardev=main".into()]
            }
        };
        args.into_iter().map(OsString::from).collect()
    }

    /// A scenario's extra arguments, written in qemu-system's spelling,
    /// in this program's: qemu-storage-daemon takes `--chardev` and
    /// `--monitor` (QMP only, so `mode=control` is its default and may
    /// stay). Other options have no counterpart there; the scenarios
    /// that use them do not run on it.
    pub fn spell(self, arg: &str) -> String {
        match (self, arg) {
            (Program::StorageDaemon, "-chardev") => "--chardev".to_owned(),
            (Program::StorageDaemon, "-mon") => "--monitor".to_owned(),
            _ => arg.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_daemon_gets_its_own_spelling() {
        for program in Program::ALL {
            assert_eq!(Program::parse(program.name()), Some(program));
        }
        assert_eq!(Program::parse("qsd"), None);
        let args = Program::StorageDaemon.main_monitor_args(7);
        assert_eq!(
            args,
            ["--chardev", "socket,id=main,fd=7,server=on,wait=on", "--monitor", "chardev=main"]
        );
        assert_eq!(Program::StorageDaemon.spell("-mon"), "--monitor");
        assert_eq!(Program::System.spell("-mon"), "-mon");
        assert_eq!(Program::StorageDaemon.spell("null,id=c"), "null,id=c");
    }
}
