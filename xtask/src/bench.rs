//! `cargo xtask bench`: what the suite and the pipeline cost, each figure
//! also set against the cheapest thing a scenario can do, start one QEMU.

mod cold;
mod figures;
mod mutants;
mod process;
mod report;

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::build::BuildOptions;
use crate::docs::secs;
use crate::pipeline::{self, SourceArgs};
use crate::{flags, lock, paths, Done};
use process::{Cases, Suite};
use report::{Figure, Host, PhaseRow, Report, Stats, Target};

/// A rebuild takes tens of seconds: three runs give a median without
/// making the bench take many minutes.
const PIPELINE_RUNS: usize = 3;
const SEEDS_LABEL: &str = "four seed scenarios, default jobs";
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
/// ... and at most this many times its own build step: what the xtask
/// adds around the compile.
const COLD_OVER_BUILD: f64 = 1.15;
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
    // The QEMU to time and the suite binary.
    let ready = pipeline::ready(sh, &opts.source, &opts.build, true)?;
    let (tree, qmp_tests, built) = (ready.prepared.tree, ready.qmp_tests, ready.built);
    let (qemu, runs) = (built.binary.as_path(), opts.runs);
    let machine = Host::read(figures::qemu_version(qemu)?);
    eprintln!("==> timing against {}", qemu.display());
    let mut b = Bench::new(figures::floor(qemu, runs)?);
    let schema = b.schema(qemu, runs)?;
    // The two Python clients' scenarios run, as in `cargo xtask test`,
    // rather than time a skip.
    let mut clients: Vec<OsString> = vec!["--qemu-src".into(), tree.path.clone().into()];
    clients.extend(["--python".into(), built.python.clone().into()]);
    if let Some(python) = &ready.qmp_python {
        clients.extend(["--qmp-python".into(), python.clone().into()]);
    }
    let suite = |args: &[&str]| {
        let args = args.iter().map(OsString::from).chain(clients.iter().cloned());
        process::suite(sh, (&qmp_tests, qemu), &args.collect::<Vec<_>>(), runs)
    };
    let (default_jobs, seeds, phases) = b.suite(&suite)?;
    let wired = (tree.path.as_path(), qemu, qmp_tests.as_path());
    let meson = process::meson(sh, wired, &opts.build.target, &SEEDS, runs)?;
    b.add("seeds.meson", "  the same four through meson test (wired)", meson);
    b.seed_targets(&schema, seeds, meson);
    b.pipeline(sh, opts, &tree.path.join(TOUCHED), default_jobs)?;
    let (parsed, raw) = (schema.dynamic.parsed.median, schema.dynamic.raw.median);
    let basis = format!("parsed {} / raw {} on a dynamic monitor", secs(parsed), secs(raw));
    b.target("query-qmp-schema parsed by our client, over raw", (parsed / raw, 1.1), "x", basis);
    b.notes(runs, &phases);
    if opts.mutants {
        b.mutants(sh)?;
    }
    let cold = opts.cold.as_ref().map(|rev| b.cold(sh, rev)).transpose()?;
    let (date, schema_bytes) = (crate::files::iso(SystemTime::now()), schema.bytes);
    let (figures, targets, notes, seed_phases_s) = (b.figures, b.targets, b.notes, phases);
    let report =
        Report { date, machine, runs, figures, schema_bytes, targets, notes, seed_phases_s, cold };
    let (table, latest, dated) = report.write(&paths::target_dir().join("bench"))?;
    println!("{table}");
    eprintln!("wrote {} and {}", latest.display(), dated.display());
    Ok(())
}

/// The figures, targets and notes so far, each figure announced as it is
/// taken: a bench takes minutes.
struct Bench {
    floor: Stats,
    figures: Vec<Figure>,
    targets: Vec<Target>,
    notes: Vec<String>,
}

impl Bench {
    fn new(floor: Stats) -> Bench {
        let (figures, targets, notes) = (Vec::new(), Vec::new(), Vec::new());
        let mut bench = Bench { floor, figures, targets, notes };
        bench.add("floor", "floor: bare QEMU start, negotiate, quit", floor);
        bench
    }

    /// Figures whose label starts `cargo xtask` or `query-qmp-schema`
    /// hold no QEMU of their own: they are not set against the floor.
    fn add(&mut self, key: &str, label: &str, stats: Stats) {
        let (median, min, max) = (secs(stats.median), secs(stats.min), secs(stats.max));
        eprintln!("    {label}: {median} (min {min}, max {max}, {} runs)", stats.runs);
        let own = ["cargo xtask", "  its overhead", "query-qmp-schema"];
        let against_floor = !own.iter().any(|prefix| label.starts_with(prefix));
        let floor_ratio = against_floor.then(|| stats.median / self.floor.median);
        let (key, label) = (key.to_owned(), label.to_owned());
        self.figures.push(Figure { key, label, stats, floor_ratio });
    }

    /// A target met when `value` is at most `limit`.
    fn target(
        &mut self,
        name: &str,
        (value, limit): (f64, f64),
        unit: &'static str,
        basis: String,
    ) {
        let (name, pass) = (name.to_owned(), value <= limit);
        self.targets.push(Target { name, value, limit, unit, basis, pass });
    }

    fn schema(&mut self, qemu: &Path, runs: usize) -> Result<figures::Schema> {
        let schema = figures::schema(qemu, runs)?;
        let (dynamic, main) = (&schema.dynamic, &schema.main);
        for (key, monitor, way, stats) in [
            ("dynamic.parsed", "dynamic monitor", "parsed", dynamic.parsed),
            ("dynamic.raw", "dynamic monitor", "raw", dynamic.raw),
            ("main.parsed", "main monitor", "parsed", main.parsed),
            ("main.raw", "main monitor", "raw", main.raw),
            ("dynamic.first_raw", "fresh QEMU's first reply", "raw", schema.first),
        ] {
            self.add(
                &format!("schema.{key}"),
                &format!("query-qmp-schema, {monitor}, {way}"),
                stats,
            );
        }
        Ok(schema)
    }

    /// The whole suite with one job, each scenario's time and the seeds'
    /// phases read off its JUnit reports; with default jobs; the seeds.
    fn suite(
        &mut self,
        suite: &dyn Fn(&[&str]) -> Result<Suite>,
    ) -> Result<(Stats, Stats, Vec<PhaseRow>)> {
        let (one_job, runs) = suite(&["--jobs", "1"])?;
        let commands = qmp_tests::route::Route::Commands;
        let all = qmp_tests::scenarios::all().iter().filter(|s| s.routes.contains(&commands));
        for name in all.map(|s| s.name) {
            let times: Vec<f64> = runs.iter().filter_map(|c| Some(c.get(name)?.0)).collect();
            if let Some(stats) = Stats::of(&times) {
                self.add(&format!("scenario.{name}"), &format!("{name} alone"), stats);
            }
        }
        self.add("suite.jobs1", "whole suite, --jobs 1", one_job);
        let (default_jobs, _) = suite(&[])?;
        self.add("suite.default", "whole suite, default jobs", default_jobs);
        let mut seed_args: Vec<&str> = SEEDS.iter().flat_map(|s| ["--scenario", s]).collect();
        seed_args.extend(["--route", "commands"]);
        let (seeds, _) = suite(&seed_args)?;
        self.add("seeds.default", SEEDS_LABEL, seeds);
        let phases = SEEDS.iter().map(|seed| phase_row(seed, &runs)).collect();
        Ok((default_jobs, seeds, phases))
    }

    fn seed_targets(&mut self, schema: &figures::Schema, seeds: Stats, meson: Stats) {
        let (floor, raw) = (self.floor.median, schema.dynamic.raw.median);
        let bound = SEEDS_BOUND * (floor + raw);
        let (floor, raw) = (secs(floor), secs(raw));
        let basis = format!("{SEEDS_BOUND} x (floor {floor} + raw query-qmp-schema reply {raw})");
        self.target(SEEDS_LABEL, (seeds.median, bound), "s", basis);
        let (m, s) = (secs(meson.median), secs(seeds.median));
        let basis =
            format!("meson test {m} / qmp-tests {s}, the same scenarios on the same binary");
        let name = "four seed scenarios, how many times faster than through meson test";
        self.target(name, (meson.median / seeds.median, MESON_RATIO), "x", basis);
        // A ratio to reach, not to stay under.
        if let Some(t) = self.targets.last_mut() {
            t.pass = t.value >= t.limit;
        }
    }

    /// `cargo xtask test` warm, less the suite alone, and after a touch.
    fn pipeline(&mut self, sh: &Shell, opts: &Options, touched: &Path, suite: Stats) -> Result<()> {
        let (runs, args) = (opts.runs.min(PIPELINE_RUNS), &opts.forwarded);
        let warm = process::pipeline(sh, args, runs, || Ok(()))?;
        self.add("pipeline.warm", "cargo xtask test, nothing changed", warm);
        let overhead = warm.minus(suite.median);
        self.add("pipeline.warm_overhead", "  its overhead beyond the suite", overhead);
        let rebuild = process::pipeline(sh, args, runs, || process::touch(touched))?;
        self.add("pipeline.rebuild", "cargo xtask test after touching monitor/qmp.c", rebuild);
        let (w, s) = (secs(warm.median), secs(suite.median));
        let basis = format!("cargo xtask test {w} less the suite alone {s}");
        self.target("warm cargo xtask test overhead", (overhead.median, 3.0), "s", basis);
        let name = "rebuild after touching monitor/qmp.c, plus suite (a bisect step's work)";
        let basis = "the whole cargo xtask test process".to_owned();
        self.target(name, (rebuild.median, 60.0), "s", basis);
        Ok(())
    }

    fn notes(&mut self, runs: usize, phases: &[PhaseRow]) {
        if let Some((phase, time, share)) = heaviest(phases) {
            let (time, share) = (secs(time), share * 100.0);
            self.notes.push(format!(
                "the seed scenarios spend most in '{phase}': {time} summed over the four, \
                 {share:.0}% of their phases (see the phase table)."
            ));
        }
        let quiet = secs(qmp_tests::scenarios::QUIET_WINDOW.as_secs_f64());
        let floor = secs(self.floor.median);
        let build = if cfg!(debug_assertions) { "debug" } else { "release" };
        self.notes.extend([
            // A wait no QEMU can shorten, which the seeds' bound predates.
            format!(
                "test_self_removal and the other silence checks watch {quiet} after a removal \
                 for anything a removed monitor must not send: that window is their 'harness' \
                 phase, and the seeds cannot end sooner."
            ),
            format!("x floor: a median over the floor's median ({floor})."),
            "each scenario alone and the phase table: read off the JUnit reports of the whole \
             suite run with --jobs 1."
                .into(),
            format!(
                "the cargo xtask test figures have at most {PIPELINE_RUNS} runs, the rest {runs}: \
                 each rebuild takes tens of seconds."
            ),
            "the overhead is each cargo xtask test run less the median of the whole suite alone \
             with default jobs."
                .into(),
            format!(
                "floor and query-qmp-schema times come from this xtask's {build} build of the \
                 qmp-tests client and serde_json, the same build the suite binary links."
            ),
            "query-qmp-schema: raw is execute_raw, parsed is execute; each timed request follows \
             an untimed query-version, so that QEMU is done with the previous reply."
                .into(),
        ]);
    }

    fn mutants(&mut self, sh: &Shell) -> Result<()> {
        let m = mutants::measure(sh)?;
        let label = "cargo xtask mutants, the whole catalogue (first kill, warm)";
        self.add("mutants", label, m.whole);
        let basis = format!("{} of {} caught", m.caught, m.total);
        self.target(label, (m.whole.median, MUTANTS_LIMIT), "s", basis);
        Ok(())
    }

    fn cold(&mut self, sh: &Shell, rev: &str) -> Result<serde_json::Value> {
        let cold = cold::measure(sh, rev)?;
        let [base, head, warm] = [&cold.baseline, &cold.head, &cold.warm_ccache];
        let keys = ["pipeline.cold.baseline", "pipeline.cold", "pipeline.cold.warm_ccache"];
        for (key, run) in keys.into_iter().zip([base, head, warm]) {
            let stats = Stats::of(&[run.total]).context("one run")?;
            self.add(key, &format!("cargo xtask test, {}", run.label), stats);
        }
        let name = "cold cargo xtask test, fresh clone, empty ccache";
        let basis = "host packages, crates and pip downloads present".to_owned();
        self.target(name, (head.total, COLD_LIMIT), "s", basis);
        let build = |run: &cold::Run| {
            run.step("build")
                .with_context(|| format!("the run of {} printed no build step", run.label))
        };
        let (head_build, base_build) = (build(head)?, build(base)?);
        let basis = format!("{} / its build step {}", secs(head.total), secs(head_build));
        let name = "cold cargo xtask test over its own build step";
        self.target(name, (head.total / head_build, COLD_OVER_BUILD), "x", basis);
        let basis = format!("{} / {}, side by side", secs(head_build), secs(base_build));
        let name = "its build step against the earlier commit's";
        self.target(name, (head_build / base_build, 1.0), "x", basis);
        for (name, run) in [
            ("cold cargo xtask test against the earlier commit's", head),
            ("the same from a second clone, ccache warm, against it", warm),
        ] {
            let (this, base_s) = (secs(run.total), secs(base.total));
            let basis = format!("{this} / {base_s}, side by side in this run");
            self.target(name, (run.total / base.total, COLD_RATIO), "x", basis);
        }
        Ok(serde_json::to_value(&cold)?)
    }
}

/// A seed's phases and time, medians over the runs' JUnit reports.
fn phase_row(seed: &str, runs: &[Cases]) -> PhaseRow {
    let median = |samples: Vec<f64>| Stats::of(&samples).map_or(0.0, |s| s.median);
    let cases: Vec<_> = runs.iter().filter_map(|cases| cases.get(seed)).collect();
    let phases = qmp_tests::phases::PHASES.iter().map(|&phase| {
        let times = cases.iter().flat_map(|(_, p)| p.iter().filter(|(n, _)| n == phase));
        (phase.to_owned(), median(times.map(|(_, t)| *t).collect()))
    });
    let total = median(cases.iter().map(|(time, _)| *time).collect());
    PhaseRow { scenario: seed.to_owned(), phases: phases.collect(), total }
}

/// The phase that costs most over all `rows`, with its share of the sum.
fn heaviest(rows: &[PhaseRow]) -> Option<(String, f64, f64)> {
    let mut sums = std::collections::BTreeMap::<&str, f64>::new();
    for (phase, time) in rows.iter().flat_map(|row| &row.phases) {
        *sums.entry(phase).or_default() += time;
    }
    let all: f64 = sums.values().sum();
    let (phase, time) = sums.into_iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some((phase.to_owned(), time, if all > 0.0 { time / all } else { 0.0 }))
}
