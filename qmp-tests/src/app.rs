//! One run: janitor, capability probe, scenarios, reports.

use std::{
    io::{self, Write},
    path::Path,
    sync::Arc,
    thread,
};

use anyhow::{bail, Context, Result};
use qmp_tests::{
    cli::SuiteCli,
    exit,
    janitor::Janitor,
    junit::{self, SuiteInfo},
    outcome::{Failure, Outcome},
    probe::Capabilities,
    report::{Console, Reporter, Tap},
    route::Route,
    runner::{self, Progress, RunConfig},
    scenarios::{self, PythonClient, Scenario, Settings},
};

pub fn run(args: SuiteCli) -> Result<u8> {
    let selected = select(&args.suite.scenarios);
    if args.list {
        let names: String =
            selected.iter().map(|scenario| format!("{}\n", scenario.name)).collect();
        let _ = io::stdout().write_all(names.as_bytes());
        return Ok(exit::PASSED);
    }
    let qemu = args.qemu.clone().expect("the parser insists on --qemu");
    let mut reporter: Box<dyn Reporter> = match args.tap {
        true => Box::new(Tap::new(io::stdout(), args.verbose)),
        false => Box::new(Console::new(io::stdout(), args.verbose)),
    };
    let config = config(&args, &qemu)?;
    let timestamp = junit_report::OffsetDateTime::now_utc();
    let (outcomes, code, caps) = run_gated(&args, &config, &selected, reporter.as_mut())?;
    reporter.summary(&outcomes);

    if let Some(path) = &args.junit {
        let mut properties = vec![
            ("qemu_binary".to_string(), qemu.display().to_string()),
            ("qemu_version".to_string(), caps.full_version()),
        ];
        properties.extend(args.properties.iter().cloned());
        let info = SuiteInfo { timestamp, hostname: hostname(), properties, leg: args.leg.clone() };
        junit::write(path, &info, &outcomes)?;
    }
    Ok(code)
}

/// The run's configuration, its janitor started.
fn config(args: &SuiteCli, qemu: &Path) -> Result<RunConfig> {
    let exe = std::env::current_exe().context("finding our own executable for the janitor")?;
    let janitor = Arc::new(Janitor::spawn(&exe)?);
    if args.verbose {
        // A TAP consumer only accepts diagnostics as comments.
        let prefix = if args.tap { "# " } else { "" };
        let _ = writeln!(io::stdout(), "{prefix}janitor pid={}", janitor.pid());
    }
    let defaults = Settings::default();
    let suite = &args.suite;
    Ok(RunConfig {
        qemu: qemu.to_owned(),
        jobs: (suite.jobs)
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get())),
        settings: Settings {
            timeout: (suite.timeout).map_or(defaults.timeout, std::time::Duration::from_secs),
            wait: suite.wait,
            soak_cycles: suite.soak.unwrap_or(defaults.soak_cycles),
            python: python_client(args)?,
            qmp_package: args.qmp_python.as_deref().map(interpreter).transpose()?,
            program: args.program,
        },
        log_dir: args.log_dir.clone(),
        janitor: Some(janitor),
        routes: args.routes(),
        grace: runner::DEFAULT_GRACE,
        first: suite.first.clone(),
        fail_fast: suite.fail_fast,
    })
}

/// Runs the scenarios through the gate; the outcomes, the exit status and
/// what the QEMU said it has.
fn run_gated(
    args: &SuiteCli,
    config: &RunConfig,
    selected: &[&'static Scenario],
    reporter: &mut dyn Reporter,
) -> Result<(Vec<Outcome>, u8, Capabilities)> {
    let qemu = &config.qemu;
    let mut gate = Gate {
        reporter,
        scenarios: selected,
        config,
        required: &args.require_routes,
        caps: None,
        refused: false,
        held: Vec::new(),
    };
    let outcomes = runner::run(config, selected, |progress| gate.progress(progress));
    let (outcomes, code) = match gate.caps.clone() {
        // Not one QEMU came up far enough to be asked: the binary is the
        // problem, not a scenario.
        None if outcomes.iter().any(Outcome::failed) => {
            let failure = outcomes.iter().find_map(|outcome| outcome.failure.as_ref());
            bail!("{}: {}", qemu.display(), failure.map_or("", |failure| &failure.cause));
        }
        None => {
            gate.open(&Capabilities::unknown());
            (outcomes, exit::PASSED)
        }
        Some(caps) => match caps.refusal(qemu, &config.routes) {
            Some(refusal) => {
                // The transcript of a scenario whose QEMU refused; the
                // scenarios that never started have none.
                let mut failures = outcomes.iter().filter_map(|outcome| outcome.failure.as_ref());
                let transcript = (failures
                    .find(|f| f.cause == refusal && !f.transcript.is_empty()))
                .map(|failure| failure.transcript.clone())
                .unwrap_or_default();
                let failure = Failure { cause: refusal, transcript, ..Failure::default() };
                // Once per scenario, under the first route asked for.
                let fail = |s: &&Scenario| Outcome::failing(s.name, failure.clone());
                let outcomes: Vec<Outcome> =
                    selected.iter().map(|s| fail(s).on(config.routes[0])).collect();
                for outcome in &outcomes {
                    gate.reporter.finished(outcome);
                }
                (outcomes, exit::NO_MONITOR_ADD)
            }
            None => {
                // Routes this QEMU lacks were not run: each of their
                // scenarios is reported skipped with the reason, or
                // failed when the route is required.
                let outcomes: Vec<Outcome> = outcomes
                    .into_iter()
                    .map(|outcome| account(outcome, &caps, &args.require_routes))
                    .collect();
                let code =
                    if outcomes.iter().any(Outcome::failed) { exit::FAILED } else { exit::PASSED };
                (outcomes, code)
            }
        },
    };
    let caps = gate.caps.clone().unwrap_or_else(Capabilities::unknown);
    Ok((outcomes, code, caps))
}

/// Holds results back until a scenario's QEMU has said what it is: the
/// plan line names its version, and a QEMU without monitor-add has every
/// scenario reported with that one cause, in the suite's order, instead of
/// as each found out.
struct Gate<'a> {
    reporter: &'a mut dyn Reporter,
    scenarios: &'a [&'static Scenario],
    config: &'a RunConfig,
    required: &'a [Route],
    /// What the first QEMU that answered has, and whether it has none of
    /// the routes (then every outcome is reported at the end, with one
    /// cause).
    caps: Option<Capabilities>,
    refused: bool,
    held: Vec<Outcome>,
}

impl Gate<'_> {
    fn progress(&mut self, progress: Progress<'_>) {
        match progress {
            Progress::Started { name, pid, dir, caps } => {
                if self.caps.is_none() {
                    self.open(caps);
                }
                if !self.refused {
                    self.reporter.started(name, pid, dir);
                }
            }
            Progress::Finished(outcome) => match &self.caps {
                None => self.held.push(outcome.clone()),
                Some(caps) if !self.refused => {
                    self.reporter.finished(&account(outcome.clone(), caps, self.required))
                }
                Some(_) => {}
            },
        }
    }

    /// Prints the plan and what was held back, unless the QEMU refuses.
    fn open(&mut self, caps: &Capabilities) {
        self.caps = Some(caps.clone());
        self.refused = caps.refusal(&self.config.qemu, &self.config.routes).is_some();
        let version = caps.full_version() + " ";
        let qemu = format!("QEMU {}({})", version.trim_start(), self.config.qemu.display());
        let (total, line) = if self.refused {
            (self.scenarios.len(), qemu)
        } else {
            let (present, absent): (Vec<Route>, Vec<Route>) =
                self.config.routes.iter().partition(|&&route| caps.has(route));
            let present: Vec<&str> = present.iter().map(|route| route.name()).collect();
            let absent: String = absent
                .iter()
                .map(|&route| {
                    let verdict = match self.required.contains(&route) {
                        true => "required: its scenarios fail",
                        false => "its scenarios are skipped",
                    };
                    format!("; route {route} absent ({}, {verdict})", route.lacking())
                })
                .collect();
            // Some scenarios are for one route only; those of an absent
            // route are reported too, skipped or failed.
            let runs = (self.config.routes.iter())
                .map(|route| self.scenarios.iter().filter(|s| s.routes.contains(route)).count())
                .sum();
            let noun = if present.len() == 1 { "route" } else { "routes" };
            (runs, format!("{qemu}, {noun} {}{absent}", present.join(" and ")))
        };
        self.reporter.plan(total, &line);
        let held = std::mem::take(&mut self.held);
        for outcome in held.into_iter().filter(|_| !self.refused) {
            self.reporter.finished(&account(outcome, caps, self.required));
        }
    }
}

/// An outcome on a route this QEMU lacks (the runner reports it skipped
/// with the reason) is a failure when that route is required.
fn account(outcome: Outcome, caps: &Capabilities, required: &[Route]) -> Outcome {
    if caps.has(outcome.route) || !required.contains(&outcome.route) {
        return outcome;
    }
    let cause = format!(
        "this QEMU has {}, and --require-route {} asks for it",
        outcome.route.lacking(),
        outcome.route
    );
    Outcome { skipped: None, failure: Some(Failure { cause, ..Failure::default() }), ..outcome }
}

/// The client runs in the scenario's own directory, so relative paths are
/// made absolute here; a bare interpreter name is left to `PATH`.
fn python_client(args: &SuiteCli) -> Result<Option<PythonClient>> {
    let Some(src) = &args.qemu_src else {
        return Ok(None);
    };
    let interpreter = interpreter(args.python.as_deref().unwrap_or("python3".as_ref()))?;
    Ok(Some(PythonClient { interpreter, qemu_src: qmp_tests::absolute(src)? }))
}

/// A Python given by path is made absolute; a bare name is left to `PATH`.
fn interpreter(python: &Path) -> Result<std::path::PathBuf> {
    match python.components().count() > 1 {
        true => qmp_tests::absolute(python),
        false => Ok(python.to_owned()),
    }
}

/// The chosen scenarios in the suite's order, or all of them.
fn select(names: &[String]) -> Vec<&'static Scenario> {
    scenarios::all()
        .iter()
        .filter(|scenario| names.is_empty() || names.iter().any(|name| name == scenario.name))
        .collect()
}

fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
