//! Does this QEMU have dynamic monitors at all? Asked of the QEMU each
//! scenario starts anyway, before the scenario runs, so that a QEMU
//! without them fails every scenario with one clear line instead of a
//! dozen timeouts, and a QEMU with them costs no extra start.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::machine::{LaunchOptions, Machine};

pub const REQUIRED_COMMANDS: [&str; 3] = ["monitor-add", "monitor-remove", "query-monitors"];

#[derive(Clone, Debug)]
pub struct Capabilities {
    /// "MAJOR.MINOR.MICRO".
    pub version: String,
    /// The build's package string, often empty.
    pub package: String,
    /// Required commands this QEMU lacks.
    pub missing: Vec<&'static str>,
}

impl Capabilities {
    /// For a run in which no QEMU was asked (every scenario skipped).
    pub fn unknown() -> Capabilities {
        Capabilities {
            version: String::new(),
            package: String::new(),
            missing: Vec::new(),
        }
    }

    /// The version with the package string, if there is one.
    pub fn full_version(&self) -> String {
        match self.package.trim() {
            "" => self.version.clone(),
            package => format!("{} ({package})", self.version),
        }
    }

    /// Why every scenario must fail, if one must.
    pub fn refusal(&self, qemu: &Path) -> Option<String> {
        let missing = self.missing.first()?;
        Some(format!(
            "this QEMU ({}, {}) has no {missing}",
            self.version,
            qemu.display()
        ))
    }
}

/// Starts `qemu` once and asks its main monitor.
pub fn probe(qemu: &Path, opts: &LaunchOptions) -> Result<Capabilities> {
    let mut machine = Machine::launch(qemu, opts)?;
    let caps = check(&mut machine)?;
    let shutdown = machine.shutdown()?;
    if !shutdown.clean() {
        eprintln!("warning: the probe QEMU ended with {shutdown}");
    }
    Ok(caps)
}

/// Asks a running QEMU's main monitor; the version comes from its greeting.
pub fn check(machine: &mut Machine) -> Result<Capabilities> {
    let version = machine.qmp().greeting()["QMP"]["version"].clone();
    let commands = machine
        .cmd("query-commands", Value::Null)
        .context("query-commands")?;

    let qemu_version = &version["qemu"];
    let number = |key: &str| qemu_version[key].as_u64().unwrap_or_default();
    let names: Vec<&str> = commands
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    Ok(Capabilities {
        version: format!(
            "{}.{}.{}",
            number("major"),
            number("minor"),
            number("micro")
        ),
        package: version["package"].as_str().unwrap_or_default().to_string(),
        missing: REQUIRED_COMMANDS
            .into_iter()
            .filter(|required| !names.contains(required))
            .collect(),
    })
}
