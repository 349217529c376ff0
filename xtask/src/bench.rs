//! `cargo xtask bench`: what the suite and the pipeline cost, each figure
//! also set against the cheapest thing a scenario can do, start one QEMU.
//! Every figure is a whole process timed, or read off what the suite, the
//! pipeline and `cargo xtask mutants` report.

mod cold;
mod process;
mod report;

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};
use qmp_tests::{phases::PHASES, probe, route::Route, scenarios};
use xshell::Shell;

use crate::{docs::secs, flags, lock, paths, pipeline, suite::Case, Done};
use process::{time, Cases};
use report::{sample, timed, Stats};
use serde_json::{json, Value};

/// A rebuild takes tens of seconds: three runs give a median without
/// making the bench take many minutes.
const PIPELINE_RUNS: usize = 3;
const SEEDS_LABEL: &str = "four seed scenarios, default jobs";
/// Touched, not changed, to time the pipeline's rebuild.
const TOUCHED: &str = "monitor/qmp.c";
/// What test_large_response notes (see `qmp_tests::junit::time_line`).
const LARGE: (&str, [&str; 2]) =
    ("test_large_response", ["query-qmp-schema reply", "query-qmp-schema parse"]);

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<Done> {
        let src = self.source.source_args()?;
        let build = self.build.options(pipeline::Targets::of(&src))?;
        let cold = self.cold.as_deref().map(|rev| cold::resolve(sh, rev)).transpose()?;
        // The timed `cargo xtask test` runs build the same tree.
        let forwarded = [self.source.to_args(), self.build.to_args()].concat();
        let _lock = lock::cache()?;
        let ready = pipeline::ready(sh, &src, &build, true)?;
        let (tree, qemu) = (&ready.prepared.tree.path, ready.built.binary.as_path());
        eprintln!("==> timing against {}", qemu.display());
        let mut b = Bench::floor(qemu, self.runs)?;
        // The two Python clients' scenarios run, as in `cargo xtask test`,
        // rather than time a skip.
        let mut clients: Vec<OsString> = vec!["--qemu-src".into(), tree.into()];
        clients.extend(["--python".into(), ready.built.python.clone().into()]);
        clients.extend(ready.qmp_python.iter().flat_map(|p| ["--qmp-python".into(), p.into()]));
        let suite = |args: &[&str]| {
            let args: Vec<OsString> =
                args.iter().map(OsString::from).chain(clients.clone()).collect();
            process::suite(sh, (&ready.qmp_tests, qemu), &args, self.runs)
        };
        let [default_jobs, seeds, reply] = b.suite(&suite)?;
        let wired = (tree.as_path(), qemu, ready.qmp_tests.as_path());
        let meson = process::meson(sh, wired, &build.target, self.runs)?;
        b.add("seeds.meson", "  the same four through meson test (wired)", meson);
        let (floor, f, r) = (b.floor.median, secs(b.floor.median), secs(reply));
        let basis = format!("1.5 x (floor {f} + a fresh QEMU's query-qmp-schema reply {r})");
        b.target(SEEDS_LABEL, seeds, 1.5 * (floor + reply), "s", basis);
        let name = "four seed scenarios, how many times faster than through meson test";
        b.ratio(name, (meson.median, "meson test"), (seeds, "qmp-tests"), 10.0);
        // A ratio to reach, not to stay under.
        if let Some(t) = b.targets.last_mut() {
            t["pass"] = json!(t["value"].as_f64() >= t["limit"].as_f64());
        }
        b.pipeline(sh, &forwarded, &tree.join(TOUCHED), default_jobs)?;
        if self.mutants {
            b.mutants(sh)?;
        }
        let cold = cold.map(|rev| b.cold(sh, &rev)).transpose()?;
        let (table, latest, dated) = b.write(cold, &paths::target_dir().join("bench"))?;
        println!("{table}");
        eprintln!("wrote {} and {}", latest.display(), dated.display());
        Ok(Done::Ok)
    }
}

/// The figures, targets and notes so far, each figure announced as it is
/// taken: a bench takes minutes.
#[derive(Default)]
struct Bench {
    runs: usize,
    machine: Value,
    floor: Stats,
    figures: Vec<Value>,
    targets: Vec<Value>,
    notes: Vec<String>,
    phases: Value,
}

impl Bench {
    /// The floor: a QEMU started, greeted, negotiated, probed (as every
    /// scenario's is), `quit` and reaped, through the suite's own probe.
    fn floor(qemu: &Path, runs: usize) -> Result<Bench> {
        let probe = || {
            probe::probe(qemu, &Default::default())
                .with_context(|| format!("starting and probing {}", qemu.display()))
        };
        // Untimed: the version, and the binary in the page cache.
        let machine = report::host(probe()?.full_version());
        let floor = sample(runs, || Ok(timed(probe)?.0))?;
        let mut b = Bench { runs, machine, floor, ..Default::default() };
        b.add("floor", "floor: bare QEMU start, negotiate, probe, quit", floor);
        Ok(b)
    }

    /// Figures keyed `pipeline`, `schema` or `mutants` hold no QEMU of
    /// their own: they are not set against the floor.
    fn add(&mut self, key: &str, label: &str, stats: Stats) {
        let Stats { runs, median, min, max } = stats;
        eprintln!("    {label}: {} ({} to {}, {runs} runs)", secs(median), secs(min), secs(max));
        let own = ["pipeline", "schema", "mutants"].iter().any(|k| key.starts_with(k));
        let floor_ratio = (!own).then(|| median / self.floor.median);
        self.figures.push(json!({"key": key, "label": label, "runs": runs, "median_s": median,
            "min_s": min, "max_s": max, "floor_ratio": floor_ratio}));
    }

    /// A target met when `value` is at most `limit`.
    fn target(&mut self, name: &str, value: f64, limit: f64, unit: &'static str, basis: String) {
        self.targets.push(json!({"name": name, "value": value, "limit": limit, "unit": unit,
            "basis": basis, "pass": value <= limit}));
    }

    /// A target on `a` over `b`, both seconds, each named in the basis.
    fn ratio(&mut self, name: &str, (a, a_is): (f64, &str), (b, b_is): (f64, &str), limit: f64) {
        let basis = format!("{a_is} {} / {b_is} {}", secs(a), secs(b));
        self.target(name, a / b, limit, "x", basis);
    }

    /// The whole suite with one job (each scenario, the seeds' phases, the
    /// query-qmp-schema times), with default jobs, and the seeds alone.
    fn suite(&mut self, suite: &dyn Fn(&[&str]) -> Result<process::Suite>) -> Result<[f64; 3]> {
        let (one_job, runs) = suite(&["--jobs", "1"])?;
        let all = scenarios::all().iter().filter(|s| s.routes.contains(&Route::Commands));
        for name in all.map(|s| s.name) {
            if let Some(stats) = across(&runs, name, |c| Some(c.secs)) {
                self.add(&format!("scenario.{name}"), &format!("{name} alone"), stats);
            }
        }
        let (large, [reply, parse]) = LARGE;
        let raw = across(&runs, large, |c| time(c, reply));
        let parsed = across(&runs, large, |c| Some(time(c, reply)? + time(c, parse)?));
        let (raw, parsed) = raw.zip(parsed).context("test_large_response noted no times")?;
        let first = "query-qmp-schema, a fresh QEMU's first reply on a dynamic monitor";
        self.add("schema.raw", &format!("{first}, raw (test_large_response)"), raw);
        self.add("schema.parsed", &format!("{first}, received and parsed"), parsed);
        let name = "query-qmp-schema parsed by our client, over raw";
        self.ratio(name, (parsed.median, "parsed"), (raw.median, "raw"), 1.1);
        self.add("suite.jobs1", "whole suite, --jobs 1", one_job);
        let (default_jobs, _) = suite(&[])?;
        self.add("suite.default", "whole suite, default jobs", default_jobs);
        let seeds = scenarios::SPECIFIED.iter().flat_map(|s| ["--scenario", s]);
        let (seeds, _) = suite(&seeds.chain(["--route", "commands"]).collect::<Vec<_>>())?;
        self.add("seeds.default", SEEDS_LABEL, seeds);
        let (phases, heaviest) = phase_table(&runs);
        self.notes.extend(heaviest);
        self.phases = phases;
        Ok([default_jobs.median, seeds.median, raw.median])
    }

    /// `cargo xtask test` warm, less the suite alone, and after a touch.
    fn pipeline(&mut self, sh: &Shell, args: &[OsString], file: &Path, suite: f64) -> Result<()> {
        // Its report goes beside ours, leaving the user's last one in place.
        let junit = paths::target_dir().join("bench/junit.xml");
        let args = [&["test".into()], args, &["--junit".into(), junit.into()]].concat();
        let runs = self.runs.min(PIPELINE_RUNS);
        let warm = process::xtask(sh, &args, runs, None)?;
        self.add("pipeline.warm", "cargo xtask test, nothing changed", warm);
        let overhead = warm.minus(suite);
        self.add("pipeline.warm_overhead", "  its overhead beyond the suite", overhead);
        let rebuild = process::xtask(sh, &args, runs, Some(file))?;
        self.add("pipeline.rebuild", "cargo xtask test after touching monitor/qmp.c", rebuild);
        let (w, s) = (secs(warm.median), secs(suite));
        let basis = format!("cargo xtask test {w} less the suite alone {s}");
        self.target("warm cargo xtask test overhead", overhead.median, 3.0, "s", basis);
        let name = "rebuild after touching monitor/qmp.c, plus suite (a bisect step's work)";
        self.target(name, rebuild.median, 60.0, "s", "the whole cargo xtask test process".into());
        Ok(())
    }

    /// `cargo xtask mutants` over the whole catalogue (first kill, as it
    /// runs by default), timed once, with the verdicts of the kill matrix
    /// it writes.
    fn mutants(&mut self, sh: &Shell) -> Result<()> {
        eprintln!("    cargo xtask mutants ...");
        let whole = process::xtask(sh, &["mutants".into()], 1, None)?;
        let path = paths::target_dir().join("mutants/mutants.json");
        let shown = path.display();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {shown}"))?;
        let matrix: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {shown}"))?;
        let mutants = matrix["mutants"].as_array().map_or(&[][..], Vec::as_slice);
        let caught = mutants.iter().filter(|m| m["outcome"] == "caught").count();
        let label = "cargo xtask mutants, the whole catalogue (first kill, warm)";
        self.add("mutants", label, whole);
        let basis = format!("{caught} of {} caught", mutants.len());
        self.target(label, whole.median, 60.0, "s", basis);
        Ok(())
    }

    /// What the xtask adds around the compile, cold: against its own build
    /// step, and that step against the earlier commit's. The runs' steps
    /// and totals are the report's cold table.
    fn cold(&mut self, sh: &Shell, rev: &str) -> Result<[cold::Run; 3]> {
        let runs = cold::measure(sh, rev)?;
        let [base, head, warm] = &runs;
        let build = |run: &cold::Run| {
            let step = run.steps.iter().find(|(name, _)| name == "build").map(|(_, s)| *s);
            step.with_context(|| format!("the run of {} printed no build step", run.label))
        };
        let (build, base_build) = (build(head)?, build(base)?);
        let name = "cold cargo xtask test over its own build step";
        self.ratio(name, (head.total_s, "the whole"), (build, "its build step"), 1.15);
        let name = "its build step against the earlier commit's";
        self.ratio(name, (build, "HEAD"), (base_build, "side by side"), 1.0);
        let basis = "host packages, crates and pip downloads present".to_owned();
        self.target(
            "cold cargo xtask test, fresh clone, empty ccache",
            head.total_s,
            240.0,
            "s",
            basis,
        );
        let name = "cold cargo xtask test against the earlier commit's";
        self.ratio(name, (head.total_s, "HEAD"), (base.total_s, "the earlier commit"), 0.5);
        let name = "the same from a second clone, ccache warm, against it";
        self.ratio(name, (warm.total_s, "ccache warm"), (base.total_s, "the earlier commit"), 0.5);
        Ok(runs)
    }

    /// The notes, then the report written into `dir` (see [`report::write`]).
    fn write(mut self, cold: Option<[cold::Run; 3]>, dir: &Path) -> Result<report::Written> {
        let (quiet, floor) = (secs(scenarios::QUIET_WINDOW.as_secs_f64()), secs(self.floor.median));
        self.notes.extend([
            format!(
                "test_self_removal and the other silence checks watch {quiet} after a removal \
                 for anything a removed monitor must not send: that window is their 'harness' \
                 phase, and the seeds cannot end sooner."
            ),
            format!("x floor: a median over the floor's median ({floor})."),
            "each scenario alone, the phase table and the query-qmp-schema times are read off \
             the JUnit reports of the whole suite with --jobs 1."
                .into(),
            format!(
                "cargo xtask test: at most {PIPELINE_RUNS} runs, as a rebuild takes tens of \
                 seconds; its overhead is each run less the suite's median with default jobs."
            ),
        ]);
        let report = json!({"date": crate::files::iso(std::time::SystemTime::now()),
            "machine": self.machine, "runs": self.runs, "figures": self.figures,
            "targets": self.targets, "notes": self.notes, "seed_phases_s": self.phases,
            "cold": cold});
        report::write(&report, dir)
    }
}

/// What `value` gives for `scenario` in each run that has it, summarised.
fn across(runs: &[Cases], scenario: &str, value: impl Fn(&Case) -> Option<f64>) -> Option<Stats> {
    let samples: Vec<f64> = runs.iter().filter_map(|c| value(c.get(scenario)?)).collect();
    Stats::of(&samples)
}

/// The seeds' phases and times, medians over the runs' JUnit reports, and
/// a note on the phase that costs them most.
fn phase_table(runs: &[Cases]) -> (Value, Option<String>) {
    let mut sums = [0.0; PHASES.len()];
    let rows = scenarios::SPECIFIED.map(|seed| {
        let median = |value: &dyn Fn(&Case) -> Option<f64>| {
            across(runs, seed, value).map_or(0.0, |stats| stats.median)
        };
        let mut phases = serde_json::Map::new();
        for (phase, sum) in PHASES.iter().zip(&mut sums) {
            let time = median(&|c| time(c, phase));
            *sum += time;
            phases.insert(phase.to_string(), json!(time));
        }
        json!({"scenario": seed, "phases": phases, "total": median(&|c| Some(c.secs))})
    });
    let all: f64 = sums.iter().sum();
    let heaviest = PHASES.iter().zip(sums).max_by(|a, b| a.1.total_cmp(&b.1));
    let note = heaviest.filter(|_| all > 0.0).map(|(phase, time)| {
        let (time, share) = (secs(time), time / all * 100.0);
        format!(
            "the seed scenarios spend most in '{phase}': {time} summed over the four, \
             {share:.0}% of their phases (see the phase table)."
        )
    });
    (json!(rows), note)
}

#[test]
fn the_report_is_written_as_the_docs_read_it() {
    let (floor, machine) = (Stats::of(&[0.02]).unwrap(), report::host("10.2.2".into()));
    let (name, out) = ("test_hotplug_cycle".to_owned(), "phase harness: 1.000 ms".to_owned());
    let case = Case { name: name.clone(), qom: false, secs: 0.012, failure: None, out };
    let (phases, _) = phase_table(&[Cases::from([(name, case)])]);
    let mut b = Bench { runs: 1, machine, floor, phases, ..Default::default() };
    b.add("floor", "floor", floor);
    b.target("a target", 0.5, 1.0, "s", "a basis".into());
    let dir = tempfile::tempdir().unwrap();
    let run = |label: &str| {
        let (commit, steps) = ("abc".to_owned(), vec![("build".to_owned(), 200.0)]);
        cold::Run { label: label.into(), commit, total_s: 300.0, steps }
    };
    let (md, latest, dated) = b.write(Some([run("a"), run("b"), run("c")]), dir.path()).unwrap();
    assert!(dated.file_name().unwrap().to_string_lossy().starts_with("bench-20"), "{dated:?}");
    assert_eq!(std::fs::read(latest).unwrap(), std::fs::read(dated).unwrap());
    assert!(md.contains("--cold abc`") && md.contains("| build | 200.0 | 200.0 | 200.0 |"), "{md}");
    assert!(md.contains("| floor | 1 | 20.0 ms | 20.0 ms | 20.0 ms | 1.00 |"), "{md}");
    assert!(md.contains("| a target (a basis) | 500.0 ms | 1.00 s | yes |"), "{md}");
    let row =
        "| test_hotplug_cycle | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 1.0 | 12.0 |";
    assert!(md.contains(row) && md.contains("- QEMU: 10.2.2\n"), "{md}");
}
