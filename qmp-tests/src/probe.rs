//! Does this QEMU have dynamic monitors at all? Asked of the QEMU each
//! scenario starts anyway, before the scenario runs, so that a QEMU
//! without them fails every scenario with one clear line instead of a
//! dozen timeouts, and a QEMU with them costs no extra start.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::{
    machine::{LaunchOptions, Machine},
    route::{Route, QOM_TYPE},
};

/// What the `monitor-add` route needs.
pub const REQUIRED_COMMANDS: [&str; 3] = ["monitor-add", "monitor-remove", "query-monitors"];

#[derive(Clone, Debug)]
pub struct Capabilities {
    /// "MAJOR.MINOR.MICRO".
    pub version: String,
    /// The build's package string, often empty.
    pub package: String,
    /// The routes to dynamic monitors this QEMU has.
    pub routes: Vec<Route>,
}

impl Capabilities {
    /// For a run in which no QEMU was asked (every scenario skipped).
    pub fn unknown() -> Capabilities {
        Capabilities { version: String::new(), package: String::new(), routes: Route::ALL.to_vec() }
    }

    /// The version with the package string, if there is one.
    pub fn full_version(&self) -> String {
        match self.package.trim() {
            "" => self.version.clone(),
            package => format!("{} ({package})", self.version),
        }
    }

    pub fn has(&self, route: Route) -> bool {
        self.routes.contains(&route)
    }

    /// Why every scenario must fail, if one must: none of the `wanted`
    /// routes is there.
    pub fn refusal(&self, qemu: &Path, wanted: &[Route]) -> Option<String> {
        if wanted.iter().any(|&route| self.has(route)) {
            return None;
        }
        let lacking: Vec<&str> = wanted.iter().map(|route| route.lacking()).collect();
        Some(format!(
            "this QEMU ({}, {}) has {}",
            self.version,
            qemu.display(),
            lacking.join(" and ")
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
    let commands = machine.cmd("query-commands", Value::Null).context("query-commands")?;
    let names: Vec<&str> = commands
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let mut routes = Vec::new();
    if REQUIRED_COMMANDS.iter().all(|required| names.contains(required)) {
        routes.push(Route::Commands);
    }
    // Removal by object-del needs nothing new; listing needs query-monitors.
    if names.contains(&"query-monitors") {
        let types = machine
            .cmd("qom-list-types", json!({ "implements": "user-creatable" }))
            .context("qom-list-types")?;
        let listed =
            types.as_array().is_some_and(|list| list.iter().any(|t| t["name"] == QOM_TYPE));
        if listed {
            routes.push(Route::Qom);
        }
    }

    let qemu_version = &version["qemu"];
    let number = |key: &str| qemu_version[key].as_u64().unwrap_or_default();
    Ok(Capabilities {
        version: format!("{}.{}.{}", number("major"), number("minor"), number("micro")),
        package: version["package"].as_str().unwrap_or_default().to_string(),
        routes,
    })
}
