//! `cargo xtask bench`: what the suite and the pipeline cost, each figure
//! also set against the cheapest thing a scenario can do, start one QEMU.

mod client;
mod cold;
mod host;
mod mutants;
mod phases;
mod process;
mod report;
mod stats;

use std::ffi::OsString;
use std::time::SystemTime;

use anyhow::Result;
use xshell::Shell;

use crate::build::BuildOptions;
use crate::pipeline::{self, SourceArgs};
use crate::{flags, lock, paths, Done};
use host::Host;
use report::{seconds, Figure, Report, Target};
use stats::Stats;

/// A rebuild takes tens of seconds: three runs give a median without
/// making the bench take many minutes.
const PIPELINE_RUNS: usize = 3;
/// The scenarios the specification names; the rest came after.
const SEEDS: [&str; 4] = [
    "test_hotplug_cycle",
    "test_self_removal",
    "test_large_response",
    "test_events_after_negotiation",
];
/// The seeds' bound, in multiples of (floor + raw schema reply).
const SEEDS_BOUND: f64 = 1.5;
/// How many times faster the seeds run than the same through meson test.
const MESON_RATIO: f64 = 10.0;
/// A cold `cargo xtask test` on 2 cores, at most.
const COLD_LIMIT: f64 = 240.0;
/// ... and at most this share of the earlier commit's, side by side.
const COLD_RATIO: f64 = 0.5;
/// The whole mutant catalogue, first kill and warm, at most.
const MUTANTS_LIMIT: f64 = 60.0;
/// Touched, not changed, to time the pipeline's rebuild.
const TOUCHED: &str = "monitor/qmp.c";

/// `cargo xtask bench`'s input, checked.
pub struct Options {
    runs: usize,
    /// The commit the cold figures are set against.
    cold: Option<String>,
    mutants: bool,
    source: SourceArgs,
    build: BuildOptions,
    /// The arguments the timed `cargo xtask test` runs get, so that they
    /// build the same tree.
    forwarded: Vec<std::ffi::OsString>,
}

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let src = self.source.source_args()?;
        let build_opts = self.build.options(pipeline::Targets::of(&src))?;
        let cold = self.cold.as_deref().map(cold::resolve).transpose()?;
        // The timed `cargo xtask test` runs build the same tree.
        let mut forwarded = self.source.to_args();
        forwarded.extend(self.build.to_args());
        let opts = Options {
            runs: self.runs,
            cold,
            mutants: self.mutants,
            source: src,
            build: build_opts,
            forwarded,
        };
        let _lock = lock::cache()?;
        run(sh, &opts)?;
        Ok(Done::Ok)
    }
}

fn run(sh: &Shell, opts: &Options) -> Result<()> {
    let (runs, forwarded) = (opts.runs, &opts.forwarded);
    // The QEMU to time and the suite binary.
    let ready = pipeline::ready(sh, &opts.source, &opts.build, true)?;
    let (tree, qmp_tests, built) = (ready.prepared.tree, ready.qmp_tests, ready.built);
    let qemu = built.binary.as_path();
    let host = Host::read(client::qemu_version(qemu)?);
    eprintln!("==> timing against {}", qemu.display());

    let floor = client::floor(qemu, runs)?;
    let mut figures = Figures::new(floor);
    figures.add(
        "floor",
        "floor: bare QEMU start, negotiate, quit",
        floor,
        true,
    );

    let first = client::first_schema(qemu, runs)?;
    let schema = client::schema(qemu, runs)?;
    let dynamic = schema.dynamic;
    for (key, label, stats) in [
        (
            "schema.dynamic.parsed",
            "query-qmp-schema, dynamic monitor, parsed",
            dynamic.parsed,
        ),
        (
            "schema.dynamic.raw",
            "query-qmp-schema, dynamic monitor, raw",
            dynamic.raw,
        ),
        (
            "schema.main.parsed",
            "query-qmp-schema, main monitor, parsed",
            schema.main.parsed,
        ),
        (
            "schema.main.raw",
            "query-qmp-schema, main monitor, raw",
            schema.main.raw,
        ),
        (
            "schema.dynamic.first_raw",
            "query-qmp-schema, fresh QEMU's first reply, raw",
            first,
        ),
    ] {
        figures.add(key, label, stats, false);
    }

    // The two Python clients' scenarios run, as in `cargo xtask test`,
    // rather than time a skip.
    let mut clients: Vec<OsString> = vec![
        "--qemu-src".into(),
        tree.path.clone().into(),
        "--python".into(),
        built.python.clone().into(),
    ];
    if let Some(python) = &ready.qmp_python {
        clients.extend(["--qmp-python".into(), python.clone().into()]);
    }
    let suite_runs = |args: &[&str]| -> Result<Stats> {
        let mut args = os_strings(args);
        args.extend(clients.iter().cloned());
        process::suite(sh, &qmp_tests, qemu, &args, runs)
    };
    // Single scenarios and the seeds through one route, the commands one,
    // as the targets are set; the whole suite through every route the
    // QEMU has, as users run it.
    let commands = qmp_tests::route::Route::Commands;
    for scenario in qmp_tests::scenarios::all()
        .iter()
        .filter(|scenario| scenario.routes.contains(&commands))
    {
        let name = scenario.name;
        let stats = suite_runs(&["--scenario", name, "--jobs", "1", "--route", "commands"])?;
        figures.add(
            &format!("scenario.{name}"),
            &format!("{name} alone"),
            stats,
            true,
        );
    }
    let one_job = suite_runs(&["--jobs", "1"])?;
    figures.add("suite.jobs1", "whole suite, --jobs 1", one_job, true);
    let default_jobs = suite_runs(&[])?;
    figures.add(
        "suite.default",
        "whole suite, default jobs",
        default_jobs,
        true,
    );
    let mut seed_args: Vec<&str> = SEEDS.iter().flat_map(|s| ["--scenario", s]).collect();
    seed_args.extend(["--route", "commands"]);
    let seeds = suite_runs(&seed_args)?;
    let seed_args = os_strings(&seed_args);
    figures.add(
        "seeds.default",
        "four seed scenarios, default jobs",
        seeds,
        true,
    );

    let meson = process::meson(
        sh,
        &tree.path,
        qemu,
        &qmp_tests,
        &opts.build.target,
        &SEEDS,
        runs,
    )?;
    figures.add(
        "seeds.meson",
        "  the same four through meson test (wired)",
        meson,
        true,
    );
    let phase_rows = phases::measure(qemu, &SEEDS, runs)?;
    eprint!("{}", phases::table(&phase_rows));

    let pipeline_runs = runs.min(PIPELINE_RUNS);
    let warm = process::pipeline(sh, forwarded, pipeline_runs, || Ok(()))?;
    figures.add(
        "pipeline.warm",
        "cargo xtask test, nothing changed",
        warm,
        false,
    );
    // The suite alone, with the same jobs, from this same run: what the
    // pipeline adds is the rest.
    let overhead = warm.minus(default_jobs.median);
    figures.add(
        "pipeline.warm_overhead",
        "  its overhead beyond the suite",
        overhead,
        false,
    );
    let touched = tree.path.join(TOUCHED);
    let rebuild = process::pipeline(sh, forwarded, pipeline_runs, || process::touch(&touched))?;
    figures.add(
        "pipeline.rebuild",
        "cargo xtask test after touching monitor/qmp.c",
        rebuild,
        false,
    );

    let seeds_target = Target::within(
        "four seed scenarios, default jobs",
        seeds.median,
        SEEDS_BOUND * (floor.median + dynamic.raw.median),
        "s",
        format!(
            "{SEEDS_BOUND} x (floor {} + raw query-qmp-schema reply {})",
            seconds(floor.median),
            seconds(dynamic.raw.median)
        ),
    );
    let meson_target = Target::at_least(
        "four seed scenarios, how many times faster than through meson test",
        meson.median / seeds.median,
        MESON_RATIO,
        "x",
        format!(
            "meson test {} / qmp-tests {}, the same scenarios on the same binary",
            seconds(meson.median),
            seconds(seeds.median)
        ),
    );
    let mut notes = Vec::new();
    if let Some((phase, time, share)) = phases::heaviest(&phase_rows) {
        notes.push(format!(
            "the seed scenarios run alone spend most in '{phase}': {} summed over the four, \
             {:.0}% of their phases (see the phase table).",
            seconds(time),
            share * 100.0
        ));
    }
    let mut targets = vec![
        seeds_target,
        meson_target,
        Target::under(
            "warm cargo xtask test overhead",
            overhead.median,
            3.0,
            "s",
            format!(
                "cargo xtask test {} less the suite alone {}",
                seconds(warm.median),
                seconds(default_jobs.median)
            ),
        ),
        Target::under(
            "rebuild after touching monitor/qmp.c, plus suite (a bisect step's work)",
            rebuild.median,
            60.0,
            "s",
            "the whole cargo xtask test process".into(),
        ),
        Target::within(
            "query-qmp-schema parsed by our client, over raw",
            dynamic.parsed.median / dynamic.raw.median,
            1.1,
            "x",
            format!(
                "parsed {} / raw {} on a dynamic monitor",
                seconds(dynamic.parsed.median),
                seconds(dynamic.raw.median)
            ),
        ),
    ];
    // A wait no QEMU can shorten, which the seeds' bound predates.
    notes.push(format!(
        "test_self_removal and the other silence checks watch {} after a removal for \
         anything a removed monitor must not send: that window is their 'harness' phase, \
         and the seeds cannot end sooner.",
        seconds(qmp_tests::scenarios::QUIET_WINDOW.as_secs_f64())
    ));
    notes.push(format!(
        "x floor: a median over the floor's median ({}).",
        seconds(floor.median)
    ));
    if pipeline_runs < runs {
        notes.push(format!(
            "the cargo xtask test figures have {pipeline_runs} runs, the rest {runs}: \
             each rebuild takes tens of seconds."
        ));
    }
    notes.push(
        "the overhead is each cargo xtask test run less the median of the whole suite \
         alone with default jobs."
            .into(),
    );
    notes.push(format!(
        "floor and query-qmp-schema times come from this xtask's {} build of the \
         qmp-tests client and serde_json; the suite binary is a release build.",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    ));
    notes.push(
        "query-qmp-schema: raw is execute_raw, parsed is execute; each timed request \
         follows an untimed query-version, so that QEMU is done with the previous reply."
            .into(),
    );

    let mutants = if opts.mutants {
        let measured = mutants::measure(sh)?;
        figures.add(
            "mutants.full",
            "cargo xtask mutants --all-failures, the whole catalogue",
            measured.full,
            false,
        );
        figures.add(
            "mutants.whole",
            "cargo xtask mutants, the whole catalogue (first kill, warm)",
            measured.fast,
            false,
        );
        let shards: Vec<String> = measured
            .shards
            .iter()
            .enumerate()
            .map(|(i, secs)| format!("{}/{}: {secs:.0} s", i + 1, mutants::SHARDS))
            .collect();
        targets.push(Target::within(
            "cargo xtask mutants, the whole catalogue (first kill, warm)",
            measured.fast.median,
            MUTANTS_LIMIT,
            "s",
            format!(
                "{} of {} caught; the full run took {:.0} s",
                measured.caught, measured.total, measured.full.median
            ),
        ));
        targets.push(Target::within(
            "mutants whose first-kill verdict differs from the full run's",
            measured.differing.len() as f64,
            0.0,
            "",
            list_or_none(&measured.differing),
        ));
        targets.push(Target::within(
            "shards 1/3 + 2/3 + 3/3 against the whole run (mutants or verdicts that differ)",
            measured.shards_differ.len() as f64,
            0.0,
            "",
            format!(
                "{}; shards took {}",
                list_or_none(&measured.shards_differ),
                shards.join(", ")
            ),
        ));
        Some(format!(
            "mutants: the full run is also the first-kill run's history (its scenario \
             order); each shard runs the baseline itself. Differing: {}",
            list_or_none(&measured.differing)
        ))
    } else {
        None
    };
    notes.extend(mutants);
    let cold = match &opts.cold {
        Some(rev) => {
            // Each cold run's QEMU, timed before its clone goes: what the
            // build options change in what the suite waits for.
            let time_qemu = |qemu: &std::path::Path| -> Result<(Stats, Stats)> {
                let floor = client::floor(qemu, runs)?;
                let seeds = process::suite(sh, &qmp_tests, qemu, &seed_args, runs)?;
                Ok((floor, seeds))
            };
            let cold = cold::measure(sh, rev, &time_qemu)?;
            for (key, run) in [
                ("pipeline.cold.baseline", &cold.baseline),
                ("pipeline.cold", &cold.head),
                ("pipeline.cold.warm_ccache", &cold.warm_ccache),
            ] {
                figures.add(
                    key,
                    &format!("cargo xtask test, {}", run.label),
                    Stats::of(&[run.total]).expect("one run"),
                    false,
                );
            }
            targets.push(Target::within(
                "cold cargo xtask test, fresh clone, empty ccache",
                cold.head.total,
                COLD_LIMIT,
                "s",
                "host packages, crates and pip downloads present".into(),
            ));
            for (name, run) in [
                (
                    "cold cargo xtask test against the earlier commit's",
                    &cold.head,
                ),
                (
                    "the same from a second clone, ccache warm, against it",
                    &cold.warm_ccache,
                ),
            ] {
                targets.push(Target::within(
                    name,
                    run.total / cold.baseline.total,
                    COLD_RATIO,
                    "x",
                    format!(
                        "{} / {}, side by side in this run",
                        seconds(run.total),
                        seconds(cold.baseline.total)
                    ),
                ));
            }
            Some(cold)
        }
        None => None,
    };

    let report = Report {
        date: crate::files::iso(SystemTime::now()),
        host,
        runs,
        figures: figures.list,
        schema_bytes: schema.bytes,
        targets,
        notes,
        phases: phase_rows,
        cold,
    };
    println!("{}", report.table());
    let (latest, dated) = report.write(&paths::target_dir().join("bench"))?;
    eprintln!("wrote {} and {}", latest.display(), dated.display());
    Ok(())
}

/// The figures so far, each announced as it is taken: a bench takes minutes.
struct Figures {
    floor: Stats,
    list: Vec<Figure>,
}

impl Figures {
    fn new(floor: Stats) -> Figures {
        Figures {
            floor,
            list: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, label: &str, stats: Stats, against_floor: bool) {
        eprintln!(
            "    {label}: {} (min {}, max {}, {} runs)",
            seconds(stats.median),
            seconds(stats.min),
            seconds(stats.max),
            stats.runs
        );
        self.list.push(Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            stats,
            floor_ratio: against_floor.then(|| stats.median / self.floor.median),
        });
    }
}

fn os_strings(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `items` joined, or "none".
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join("; ")
    }
}
