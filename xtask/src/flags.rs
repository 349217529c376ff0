//! Command-line parsing for the xtask subcommands.
//!
//! Hand-written: the flag set is small and fixed, and every subcommand's
//! `--help` text lives next to the parser that accepts it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Arguments left to parse, consumed front to back.
pub struct Args {
    rest: Vec<OsString>,
}

impl Args {
    pub fn new(rest: Vec<OsString>) -> Args {
        Args { rest }
    }

    /// Takes a boolean switch wherever it appears.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes every `NAME VALUE` and `NAME=VALUE` occurrence, in order.
    pub fn values(&mut self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut i = 0;
        let prefix = format!("{name}=");
        while i < self.rest.len() {
            let arg = self.rest[i].to_string_lossy().into_owned();
            if arg == name {
                let Some(value) = self.rest.get(i + 1) else {
                    bail!("{name} needs a value");
                };
                let value = value
                    .to_str()
                    .with_context(|| format!("the value of {name} is not UTF-8"))?
                    .to_owned();
                self.rest.drain(i..i + 2);
                out.push(value);
            } else if let Some(value) = arg.strip_prefix(&prefix) {
                out.push(value.to_owned());
                self.rest.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// Takes at most one `NAME VALUE`.
    pub fn value(&mut self, name: &str) -> Result<Option<String>> {
        let mut all = self.values(name)?;
        if all.len() > 1 {
            bail!("{name} was given {} times; give it once", all.len());
        }
        Ok(all.pop())
    }

    pub fn path(&mut self, name: &str) -> Result<Option<PathBuf>> {
        Ok(self.value(name)?.map(PathBuf::from))
    }

    pub fn number<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        match self.value(name)? {
            None => Ok(None),
            Some(v) => match v.parse() {
                Ok(n) => Ok(Some(n)),
                Err(_) => bail!("{name} takes a whole number, not `{v}`"),
            },
        }
    }

    /// Fails on anything not consumed, so a typo never passes silently.
    pub fn finish(self, command: &str) -> Result<()> {
        if let Some(first) = self.rest.first() {
            bail!(
                "unknown argument `{}` for `cargo xtask {command}`; see `cargo xtask {command} --help`",
                first.to_string_lossy()
            );
        }
        Ok(())
    }
}
