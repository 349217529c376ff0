//! Command-line parsing: each command declares its flags once, in a table
//! that both the parser and the `--help` text are made from, so the two
//! cannot disagree.
//!
//! Splitting argv is lexopt's job. It keeps values as `OsString` (a path
//! need not be UTF-8), reads `--flag=value`, and gives a flag that takes a
//! value the next argument whatever it looks like, so
//! `--configure-arg --enable-debug` is one configure argument; it has no
//! dependencies and no derive layer to fight for the checks below.
//!
//! Not xflags (rust-analyzer's choice), weighed for issue 20: its help has
//! its own layout, without the titled groups and the closing paragraphs
//! (exit status) that every command's help and the README reference have,
//! and a value's rules (scenario names, targets, ranges) would still be
//! checked by our own code after it parsed. What xflags would remove is
//! this table and its help printer; the table stays the one declaration.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{bail, Result};

/// What a flag's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No value.
    Switch,
    /// A path, made absolute against the directory the command was run
    /// in, so every step sees the file the user meant.
    Path,
    /// UTF-8 text: a name, a revision, a number.
    Text,
    /// An argument for another program, taken as it is even when it
    /// starts with `-`.
    Passed,
}

#[derive(Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub value: &'static str,
    pub kind: Kind,
    pub repeat: bool,
    /// Help text; `\n` continues it on the next line, in the same column.
    pub help: &'static str,
}

impl Flag {
    /// The same flag, with the help a command gives it.
    pub const fn help(self, help: &'static str) -> Flag {
        Flag { help, ..self }
    }
}

/// The flags several commands take, each declared once: name, value and
/// kind, and the help most commands give it.
pub mod shared {
    use super::{repeated, value, Flag, Kind};

    pub const QEMU_SRC: Flag = value(
        "qemu-src",
        "PATH",
        Kind::Path,
        "use this QEMU tree as it is (also: QEMU_SRC)",
    );
    pub const SERIES: Flag = value(
        "series",
        "PATH",
        Kind::Path,
        "apply this series (directory of format-patch files or mbox)",
    );
    pub const SCENARIO: Flag = repeated(
        "scenario",
        "NAME",
        Kind::Text,
        "run only this scenario (repeatable)",
    );
    pub const ROUTE: Flag = value(
        "route",
        "ROUTE",
        Kind::Text,
        "how monitors are added: commands (monitor-add), qom\n(object-add of monitor-qmp) or all (default: every\nroute the QEMU has)",
    );
}

pub const fn switch(name: &'static str, help: &'static str) -> Flag {
    Flag {
        name,
        value: "",
        kind: Kind::Switch,
        repeat: false,
        help,
    }
}

pub const fn value(
    name: &'static str,
    value: &'static str,
    kind: Kind,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        value,
        kind,
        repeat: false,
        help,
    }
}

pub const fn repeated(
    name: &'static str,
    value_name: &'static str,
    kind: Kind,
    help: &'static str,
) -> Flag {
    Flag {
        repeat: true,
        ..value(name, value_name, kind, help)
    }
}

/// A command: its flags in titled groups, and the text around them.
pub struct Command {
    pub name: &'static str,
    /// One line for the list of commands.
    pub summary: &'static str,
    /// The paragraph that opens its `--help`.
    pub about: &'static str,
    pub groups: &'static [(&'static str, &'static [Flag])],
    /// Closing paragraphs (exit status and the like); may be empty.
    pub after: &'static str,
}

/// The column flag help starts in.
const HELP_COLUMN: usize = 24;

impl Command {
    fn flags(&self) -> impl Iterator<Item = &Flag> {
        self.groups.iter().flat_map(|(_, flags)| flags.iter())
    }

    fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags().find(|f| f.name == name)
    }

    pub fn help(&self) -> String {
        let mut out = format!("cargo xtask {}: {}\n", self.name, self.about.trim_end());
        for (title, flags) in self.groups {
            out.push('\n');
            if !title.is_empty() {
                out.push_str(&format!("{title}:\n"));
            }
            for flag in *flags {
                let mut head = format!("  --{}", flag.name);
                if flag.kind != Kind::Switch {
                    head.push(' ');
                    head.push_str(flag.value);
                }
                let mut lines = flag.help.lines();
                if head.len() + 2 > HELP_COLUMN {
                    out.push_str(&format!("{head}\n"));
                } else {
                    let first = lines.next().unwrap_or("");
                    out.push_str(&format!("{head:<HELP_COLUMN$}{first}\n"));
                }
                for line in lines {
                    out.push_str(&format!("{:HELP_COLUMN$}{line}\n", ""));
                }
            }
        }
        if !self.after.is_empty() {
            out.push('\n');
            out.push_str(self.after.trim_end());
            out.push('\n');
        }
        out
    }
}

pub enum Parsed {
    Help,
    Args(Matches),
}

/// The flags given, in order, with their values.
pub struct Matches {
    command: &'static str,
    declared: Vec<&'static str>,
    given: Vec<(&'static str, Option<OsString>)>,
}

fn looks_like_flag(value: &OsStr) -> bool {
    let bytes = value.as_encoded_bytes();
    bytes.len() > 1 && bytes[0] == b'-'
}

pub fn parse(command: &'static Command, argv: Vec<OsString>) -> Result<Parsed> {
    use lexopt::Arg;
    let see_help = format!("see `cargo xtask {} --help`", command.name);
    let mut parser = lexopt::Parser::from_args(argv);
    let mut given: Vec<(&'static str, Option<OsString>)> = Vec::new();
    while let Some(arg) = parser
        .next()
        .map_err(|e| anyhow::anyhow!("{e}; {see_help}"))?
    {
        let name = match arg {
            Arg::Long("help") | Arg::Short('h') => return Ok(Parsed::Help),
            Arg::Long(name) => name.to_owned(),
            Arg::Short(c) => bail!("unknown flag `-{c}` for `cargo xtask {}`; {see_help}", command.name),
            Arg::Value(v) => bail!(
                "unexpected argument `{}` for `cargo xtask {}`: every value follows its flag; {see_help}",
                v.to_string_lossy(),
                command.name
            ),
        };
        let Some(flag) = command.flag(&name) else {
            bail!(
                "unknown flag `--{name}` for `cargo xtask {}`; {see_help}",
                command.name
            );
        };
        if !flag.repeat && given.iter().any(|(n, _)| *n == flag.name) {
            bail!("--{name} was given twice; give it once");
        }
        let value = match flag.kind {
            Kind::Switch => None,
            kind => Some(match parser.optional_value() {
                // `--flag=value` says the value is meant, whatever it is.
                Some(v) => v,
                None => {
                    let v = parser.value().map_err(|_| {
                        anyhow::anyhow!("--{name} needs a value: --{name} {}", flag.value)
                    })?;
                    if kind != Kind::Passed && looks_like_flag(&v) {
                        bail!(
                            "--{name} needs a value, and `{}` looks like a flag; \
                             write --{name}={} if that is the value you mean",
                            v.to_string_lossy(),
                            v.to_string_lossy()
                        );
                    }
                    v
                }
            }),
        };
        given.push((flag.name, value));
    }
    Ok(Parsed::Args(Matches {
        command: command.name,
        declared: command.flags().map(|f| f.name).collect(),
        given,
    }))
}

impl Matches {
    fn raw<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a OsString> + 'a {
        debug_assert!(
            self.declared.contains(&name),
            "`cargo xtask {}` reads --{name}, which it does not declare",
            self.command
        );
        self.given
            .iter()
            .filter(move |(n, _)| *n == name)
            .filter_map(|(_, v)| v.as_ref())
    }

    pub fn switch(&self, name: &str) -> bool {
        debug_assert!(self.declared.contains(&name));
        self.given.iter().any(|(n, _)| *n == name)
    }

    pub fn path(&self, name: &str) -> Result<Option<PathBuf>> {
        self.raw(name)
            .next()
            .map(|v| qmp_tests::absolute(std::path::Path::new(&v)))
            .transpose()
    }

    pub fn texts(&self, name: &str) -> Result<Vec<String>> {
        self.raw(name)
            .map(|v| {
                v.clone().into_string().map_err(|v| {
                    anyhow::anyhow!(
                        "the value of --{name} is not UTF-8: `{}`",
                        v.to_string_lossy()
                    )
                })
            })
            .collect()
    }

    pub fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.texts(name)?.into_iter().next())
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match self.text(name)? {
            None => Ok(None),
            Some(v) => match v.parse() {
                Ok(n) => Ok(Some(n)),
                Err(_) => bail!("--{name} takes a whole number, not `{v}`"),
            },
        }
    }
}

/// Parses, or prints the help and says so.
pub fn parse_or_help(command: &'static Command, argv: Vec<OsString>) -> Result<Option<Matches>> {
    match parse(command, argv)? {
        Parsed::Help => {
            use std::io::Write;
            // A closed pipe (`| head`) is no error worth reporting.
            let _ = write!(std::io::stdout(), "{}", command.help());
            Ok(None)
        }
        Parsed::Args(m) => Ok(Some(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        value("qemu-src", "PATH", Kind::Path, "the tree"),
        repeated("configure-arg", "ARG", Kind::Passed, "for configure"),
        switch("no-series", "no series"),
        value("jobs", "N", Kind::Text, "jobs\nsecond line"),
    ];
    const CMD: Command = Command {
        name: "t",
        summary: "a test",
        about: "a test command.",
        groups: &[("Group", FLAGS)],
        after: "Exit status: 0.",
    };

    fn args(list: &[&str]) -> Result<Matches> {
        match parse(&CMD, list.iter().map(OsString::from).collect())? {
            Parsed::Args(m) => Ok(m),
            Parsed::Help => bail!("help"),
        }
    }

    #[test]
    fn a_passed_value_may_look_like_a_flag() {
        let m = args(&["--configure-arg", "--no-series", "--jobs", "2"]).unwrap();
        assert_eq!(m.texts("configure-arg").unwrap(), ["--no-series"]);
        assert!(!m.switch("no-series"));
        assert_eq!(m.number::<usize>("jobs").unwrap(), Some(2));
        let m = args(&["--configure-arg", "--help"]).unwrap();
        assert_eq!(m.texts("configure-arg").unwrap(), ["--help"]);
    }

    #[test]
    fn a_path_is_not_a_flag_unless_attached() {
        let err = args(&["--qemu-src", "--no-series"]).err().unwrap();
        assert!(err.to_string().contains("looks like a flag"), "{err}");
        let m = args(&["--qemu-src=--odd"]).unwrap();
        let p = m.path("qemu-src").unwrap().unwrap();
        assert!(p.is_absolute() && p.ends_with("--odd"), "{}", p.display());
    }

    #[test]
    fn unknown_stray_and_twice_are_errors() {
        for (argv, needle) in [
            (&["--series", "x"][..], "unknown flag `--series`"),
            (&["stray"][..], "unexpected argument `stray`"),
            (&["--jobs", "1", "--jobs", "2"][..], "given twice"),
            (&["--jobs"][..], "--jobs needs a value"),
            (&["--no-series=1"][..], "see `cargo xtask t --help`"),
        ] {
            let err = format!("{:#}", args(argv).err().unwrap());
            assert!(err.contains(needle), "{argv:?}: {err}");
        }
    }

    #[test]
    fn non_utf8_paths_survive() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(b"/tmp/caf\xe9".to_vec());
        let m = match parse(&CMD, vec!["--qemu-src".into(), raw.clone()]).unwrap() {
            Parsed::Args(m) => m,
            Parsed::Help => unreachable!(),
        };
        assert_eq!(m.path("qemu-src").unwrap().unwrap().as_os_str(), raw);
    }

    #[test]
    fn help_is_made_from_the_table() {
        assert_eq!(
            CMD.help(),
            "cargo xtask t: a test command.\n\nGroup:\n  --qemu-src PATH       the tree\n  \
             --configure-arg ARG   for configure\n  --no-series           no series\n  \
             --jobs N              jobs\n                        second line\n\nExit status: 0.\n"
        );
        assert!(matches!(
            parse(&CMD, vec!["--jobs".into(), "1".into(), "-h".into()]).unwrap(),
            Parsed::Help
        ));
    }
}
