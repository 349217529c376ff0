//! `qmp-tests explore`: options, the run, and its reports.

use std::{ffi::OsString, fs, io::Write as _, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use qmp_tests::{
    explore::{self, model::Kind, Found, Options, Summary, Target},
    janitor::Janitor,
    junit::{self, SuiteInfo},
    outcome::{Failure, Outcome},
};

pub const HELP: &str = "\
qmp-tests explore: random sequences of chardev, monitor and client
operations, each step checked against a model of the spec; a failing
sequence is shrunk to a short one and rerun to say how often it fails.

Usage:
    qmp-tests explore --qemu PATH [OPTIONS]

Options:
    --qemu PATH        the qemu-system binary to test
    --time SECS        start sequences for this long (default: 60)
    --jobs N           sequences at once, each with its own QEMU (default:
                       number of CPUs)
    --seed HEX         the run's seed (default: random); the same seed and
                       --time on the same machine run the same sequences
    --sequences N      stop after the seed's first N sequences, even with
                       time left (a fixed set, as a regression gate)
    --replay HEX       run only the sequence with this seed, as a report
                       printed it (shrunk again if it fails)
    --max-ops N        operations per sequence, at most (default: 40)
    --reruns N         runs of a shrunk failure, to count how often it
                       fails (default: 10)
    --shrink-time SECS time spent shrinking each failure, at most (default:
                       120)
    --chardevs KINDS   the chardevs' kinds, comma-separated, of unix, tcp
                       and pty (default: unix,tcp); --sockets is the old
                       spelling
    --max-failures N   stop after failures of N different kinds (default:
                       3); more of a kind already found are counted
    --wait SECS        limit for each wait for a reply, event or end of
                       file (default: 100 x QEMU's start, at least 2)
    --out DIR          write a failure's sequence and transcript to
                       DIR/explore-SEED.txt
    --junit FILE       write a JUnit report: one testcase, explore
    --summary FILE     write the run's figures and each failure's kind,
                       sequence number and shrunk length as JSON
    --leg NAME         the CI leg: the testsuite is monitor_hotplug.NAME
    -h, --help         print this help

Exit status:
    0   no sequence failed
    1   a sequence failed (each kind's shrunk sequence, seed and
        transcript printed)
    2   usage error, or the harness could not run
";

/// Parses and runs; the exit status.
pub fn main(args: impl Iterator<Item = OsString>) -> Result<u8> {
    let Some(parsed) = parse(args)? else {
        print!("{HELP}");
        return Ok(0);
    };
    let Parsed {
        opts,
        out,
        junit: junit_path,
        leg,
        summary: summary_path,
    } = parsed;
    let exe = std::env::current_exe().context("finding our own executable for the janitor")?;
    let janitor = Arc::new(Janitor::spawn(&exe)?);
    let opts = Options {
        target: Target {
            janitor: Some(janitor),
            ..opts.target
        },
        ..opts
    };
    let what = match opts.replay {
        Some(seed) => format!("replaying sequence {seed:016x}"),
        None => format!("{}s with {} jobs", opts.time.as_secs(), opts.jobs),
    };
    println!("explore: {} against {}", what, opts.target.qemu.display());
    let progress = |line: &str| println!("{line}");
    let summary = explore::run(&opts, &progress);
    print!("{}", summary.render());
    for found in &summary.found {
        println!(
            "FAILED: {}: {}\nshrunk from {} to {} operations in {} runs; the shrunk sequence failed {} of {} reruns",
            found.failure.at,
            found.failure.message,
            found.original_len,
            found.ops.len(),
            found.shrink_runs,
            found.reruns.0,
            found.reruns.1
        );
        print!("{}", found.sequence());
        println!(
            "replay: qmp-tests explore --qemu {} --replay {:016x}",
            opts.target.qemu.display(),
            found.seed
        );
        if let Some(dir) = &out {
            let path = write_found(dir, &summary, found)?;
            println!("transcript: {}", path.display());
        }
    }
    if let Some(path) = &junit_path {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_junit(path, leg, &summary)?;
    }
    if let Some(path) = &summary_path {
        write_summary(path, &summary)?;
    }
    Ok(u8::from(!summary.found.is_empty()))
}

struct Parsed {
    opts: Options,
    out: Option<PathBuf>,
    junit: Option<PathBuf>,
    leg: Option<String>,
    summary: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = OsString>) -> Result<Option<Parsed>> {
    let mut qemu = None;
    let mut opts = Options {
        target: Target {
            qemu: PathBuf::new(),
            wait: None,
            janitor: None,
        },
        time: Duration::from_secs(60),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seed: None,
        replay: None,
        max_ops: 40,
        reruns: 10,
        shrink_time: Duration::from_secs(120),
        max_failures: 3,
        chardevs: vec![Kind::Unix, Kind::Tcp],
        sequences: None,
    };
    let (mut out, mut junit, mut leg, mut summary) = (None, None, None, None);
    let mut args = args.map(|a| {
        a.into_string()
            .map_err(|a| anyhow::anyhow!("argument is not UTF-8: {a:?}"))
    });
    while let Some(arg) = args.next() {
        let arg = arg?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        let mut value = || -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .transpose()?
                    .with_context(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--qemu" => qemu = Some(PathBuf::from(value()?)),
            "--time" => opts.time = Duration::from_secs(number(&flag, &value()?)?),
            "--jobs" => opts.jobs = number(&flag, &value()?)? as usize,
            "--seed" => opts.seed = Some(hex(&flag, &value()?)?),
            "--sequences" => opts.sequences = Some(number(&flag, &value()?)? as usize),
            "--replay" => opts.replay = Some(hex(&flag, &value()?)?),
            "--max-ops" => opts.max_ops = number(&flag, &value()?)? as usize,
            "--reruns" => opts.reruns = u32::try_from(number(&flag, &value()?)?)?,
            "--shrink-time" => opts.shrink_time = Duration::from_secs(number(&flag, &value()?)?),
            "--max-failures" => opts.max_failures = number(&flag, &value()?)? as usize,
            "--wait" => {
                let text = value()?;
                let secs: f64 =
                    text.parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0)
                        .with_context(|| {
                            format!("--wait wants a positive number of seconds, got {text:?}")
                        })?;
                opts.target.wait = Some(Duration::from_secs_f64(secs));
            }
            "--chardevs" | "--sockets" => {
                let text = value()?;
                opts.chardevs = text
                    .split(',')
                    .map(|kind| match kind {
                        "unix" => Ok(Kind::Unix),
                        "tcp" => Ok(Kind::Tcp),
                        "pty" => Ok(Kind::Pty),
                        _ => bail!("{flag} takes unix, tcp and pty, comma-separated; got {text:?}"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "--junit" => junit = Some(PathBuf::from(value()?)),
            "--leg" => leg = Some(value()?),
            "--summary" => summary = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?} for explore"),
        }
    }
    opts.target.qemu = qemu.context("--qemu PATH is required")?;
    Ok(Some(Parsed {
        opts,
        out,
        junit,
        leg,
        summary,
    }))
}

fn number(flag: &str, text: &str) -> Result<u64> {
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{flag} wants a positive whole number, got {text:?}"))
}

fn hex(flag: &str, text: &str) -> Result<u64> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .with_context(|| format!("{flag} wants a seed in hex, as a report prints it, got {text:?}"))
}

/// The shrunk sequence, then the transcript of its last failing run.
fn write_found(dir: &std::path::Path, summary: &Summary, found: &Found) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("explore-{:016x}.txt", found.seed));
    let text = format!(
        "{}\nfailed at {}: {}\n\n{}\nQMP transcript (ms since start):\n{}",
        found.sequence(),
        found.failure.at,
        found.failure.message,
        summary.render(),
        found.transcript
    );
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The run as JSON, for a program that runs explore (`cargo xtask
/// mutants --explore`): the figures, and each failure found.
fn write_summary(path: &std::path::Path, summary: &Summary) -> Result<()> {
    let found: Vec<serde_json::Value> = summary
        .found
        .iter()
        .map(|f| {
            serde_json::json!({
                "kind": f.failure.kind(),
                "sequence": f.number,
                "seed": format!("{:016x}", f.seed),
                "ops": f.original_len,
                "shrunk_ops": f.ops.len(),
                "at": f.failure.at,
                "message": f.failure.message,
                "reruns_failed": f.reruns.0,
                "reruns": f.reruns.1,
            })
        })
        .collect();
    let text = serde_json::json!({
        "seed": format!("{:016x}", summary.seed),
        "sequences": summary.sequences,
        "operations": summary.ops,
        "secs": summary.elapsed.as_secs_f64(),
        "first_failure": summary.first_failure,
        "failures": summary.failures,
        "found": found,
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, format!("{text:#}\n")).with_context(|| format!("writing {}", path.display()))
}

fn write_junit(path: &std::path::Path, leg: Option<String>, summary: &Summary) -> Result<()> {
    let notes: Vec<String> = summary.render().lines().map(str::to_string).collect();
    let duration = summary.elapsed;
    let passed = Outcome {
        duration,
        notes,
        ..Outcome::new("explore")
    };
    // One testcase per kind of failure, named for it: GitLab drops
    // testcases whose names repeat.
    let outcomes: Vec<Outcome> = if summary.found.is_empty() {
        vec![passed]
    } else {
        summary
            .found
            .iter()
            .map(|found| Outcome {
                name: format!("explore: {}", found.failure.kind()),
                failure: Some(Failure {
                    cause: format!("{}: {}", found.failure.at, found.failure.message),
                    transcript: format!(
                        "{}failed {} of {} reruns; replay with --replay {:016x}\n\n{}",
                        found.sequence(),
                        found.reruns.0,
                        found.reruns.1,
                        found.seed,
                        found.transcript
                    ),
                    ..Failure::default()
                }),
                ..passed.clone()
            })
            .collect()
    };
    let info = SuiteInfo {
        timestamp: junit_report::OffsetDateTime::now_utc(),
        hostname: String::new(),
        properties: vec![("seed".into(), format!("{:016x}", summary.seed))],
        leg,
    };
    junit::write(path, &info, &outcomes)
}
