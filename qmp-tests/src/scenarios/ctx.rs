use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    machine::Machine,
    program::Program,
    qmp::{Qmp, QmpError, Transcript},
    route::Route,
    scenarios::Settings,
};

/// What a scenario works with: its QEMU, its deadline, and a place for
/// figures worth reporting even on success.
pub struct Ctx {
    pub machine: Machine,
    /// How monitors are added and removed in this run of the scenario.
    route: Route,
    /// Bounds the whole scenario.
    deadline: Instant,
    /// Bounds each wait for a reply or an event, within `deadline`.
    wait_limit: Duration,
    pub settings: Settings,
    transcript: Transcript,
    notes: Vec<String>,
}

impl Ctx {
    pub fn new(
        machine: Machine,
        deadline: Instant,
        settings: Settings,
        transcript: Transcript,
        route: Route,
    ) -> Ctx {
        let wait_limit = super::wait_limit(&settings, machine.start_time());
        Ctx { machine, route, deadline, wait_limit, settings, transcript, notes: Vec::new() }
    }

    /// The deadline for one wait starting now: the per-wait limit, cut
    /// short by the scenario's own deadline.
    pub fn wait(&self) -> Instant {
        (Instant::now() + self.wait_limit).min(self.deadline)
    }

    /// The per-wait limit this scenario runs with.
    pub fn wait_limit(&self) -> Duration {
        self.wait_limit
    }

    /// The deadline of the whole scenario, for work made of many waits.
    pub fn scenario_deadline(&self) -> Instant {
        self.deadline
    }

    pub fn route(&self) -> Route {
        self.route
    }

    /// The request adding a monitor on this route, from arguments as
    /// monitor-add takes them.
    pub fn add_request(&self, args: Value) -> (&'static str, Value) {
        self.route.add_request(args)
    }

    /// The request removing a monitor on this route, from monitor-remove's
    /// arguments.
    pub fn remove_request(&self, args: Value) -> (&'static str, Value) {
        self.route.remove_request(args)
    }

    /// Adds a monitor through this route on the main monitor.
    pub fn add_monitor(&mut self, args: Value) -> Result<Value> {
        let (command, args) = self.add_request(args);
        self.main(command, args)
    }

    /// Removes a monitor through this route on the main monitor.
    pub fn remove_monitor(&mut self, args: Value) -> Result<Value> {
        let (command, args) = self.remove_request(args);
        self.main(command, args)
    }

    /// The command that shows the main loop still answers: `query-status`
    /// (a run state) on qemu-system; qemu-storage-daemon has no run
    /// state, so `query-version` there.
    pub fn alive_command(&self) -> &'static str {
        match self.settings.program {
            Program::System => "query-status",
            Program::StorageDaemon => "query-version",
        }
    }

    /// Runs [`Ctx::alive_command`] on the main monitor; its reply must
    /// have the shape of one.
    pub fn check_alive(&mut self) -> Result<()> {
        let command = self.alive_command();
        let reply = self.main(command, Value::Null)?;
        check_alive_reply(command, &reply)
    }

    /// Runs `command` on the main monitor; must succeed.
    pub fn main(&mut self, command: &str, args: Value) -> Result<Value> {
        let wait = self.wait();
        self.machine
            .qmp()
            .execute(command, args.clone(), wait)
            .with_context(|| format!("{} on the main monitor", describe(command, &args)))
    }

    /// Runs `command` on the main monitor; must be refused with a QMP
    /// error, which is returned.
    pub fn main_refused(&mut self, command: &str, args: Value) -> Result<QmpError> {
        let wait = self.wait();
        match self.machine.qmp().execute(command, args.clone(), wait) {
            Err(err @ QmpError::Qmp { .. }) => Ok(err),
            Ok(ret) => bail!(
                "{} on the main monitor succeeded (returned {ret}), but must fail",
                describe(command, &args)
            ),
            Err(err) => Err(err)
                .with_context(|| format!("{} on the main monitor", describe(command, &args))),
        }
    }

    /// Like [`Ctx::main_refused`], for a `(command, arguments)` request,
    /// and the refusal must be a GenericError (what QEMU uses for all of
    /// these; the other classes are for the few cases QMP clients tell
    /// apart, e.g. CommandNotFound) whose text names each of `names` (the
    /// offending id or chardev).
    pub fn main_refused_naming(
        &mut self,
        request: (&str, Value),
        names: &[&str],
    ) -> Result<QmpError> {
        let what = describe(request.0, &request.1);
        let err = self.main_refused(request.0, request.1)?;
        check_refusal(&err, names).with_context(|| format!("{what} on the main monitor"))?;
        Ok(err)
    }

    /// Connects a client named `name` to the socket at `path`, reading the
    /// greeting; its traffic joins the scenario's transcript.
    pub fn connect(&self, path: &Path, name: &str) -> Result<Qmp> {
        Qmp::connect_named(path, name, self.transcript.clone(), self.wait())
            .with_context(|| format!("connecting {name} to {}", path.display()))
    }

    /// A line in the scenario's transcript, from `who`: what a helper
    /// process said, for the failure report.
    pub fn log(&self, who: &str, text: &str) {
        self.transcript.note(who, text);
    }

    /// Where the scenario's monitors record their traffic.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// A line for the report, shown whether the scenario passes or not.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// `command {args}` for messages; the arguments tell which call failed.
pub(crate) fn describe(command: &str, args: &Value) -> String {
    if args.is_null() {
        command.to_string()
    } else {
        format!("{command} {args}")
    }
}

/// The reply to [`Ctx::alive_command`] has the shape of one: a run state
/// from `query-status`, a major version from `query-version`.
pub(crate) fn check_alive_reply(command: &str, reply: &Value) -> Result<()> {
    let ok = match command {
        "query-status" => reply["status"].is_string(),
        _ => reply["qemu"]["major"].is_u64(),
    };
    if !ok {
        bail!("{command} returned {reply}");
    }
    Ok(())
}

/// A refusal is a GenericError whose text names each of `names`.
pub(crate) fn check_refusal(err: &QmpError, names: &[&str]) -> Result<()> {
    let QmpError::Qmp { class, desc } = err else {
        bail!("expected a QMP error, got {err}");
    };
    if class != "GenericError" {
        bail!("refused with class {class}, not GenericError: {desc}");
    }
    if let Some(missing) = names.iter().find(|name| !desc.contains(*name)) {
        bail!("the refusal does not name {missing:?}: {desc}");
    }
    Ok(())
}
