//! `cargo xtask explore`: the pipeline up to the build, then `qmp-tests
//! explore` against the binary it built.

use std::{ffi::OsString, path::PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::cli::{self, Command, Flag, Kind, Matches};
use crate::pipeline::{self, Pipeline, SourceArgs, Step};
use crate::suite::SuiteOptions;
use crate::{interrupt, paths};

pub const FLAGS: &[Flag] = &[
    cli::value(
        "time",
        "SECS",
        Kind::Text,
        "start sequences for this long (default: 60)",
    ),
    cli::value(
        "seed",
        "HEX",
        Kind::Text,
        "the run's seed (default: random)",
    ),
    cli::value(
        "replay",
        "HEX",
        Kind::Text,
        "run only the sequence a report printed with this seed",
    ),
    cli::value(
        "jobs",
        "N",
        Kind::Text,
        "sequences at once (default: number of cores)",
    ),
    cli::value(
        "chardevs",
        "KINDS",
        Kind::Text,
        "chardev kinds, comma-separated, of unix, tcp and pty\n(default: unix,tcp)",
    ),
    cli::value(
        "sockets",
        "KINDS",
        Kind::Text,
        "the old spelling of --chardevs",
    ),
    cli::value(
        "max-failures",
        "N",
        Kind::Text,
        "stop after failures of N kinds (default: 3)",
    ),
    cli::value(
        "junit",
        "PATH",
        Kind::Path,
        "where the report goes (default target/explore/junit.xml)",
    ),
];

pub const COMMAND: Command = Command {
    name: "explore",
    summary:
        "build QEMU as `test` does, then run random operation sequences against a model of the spec",
    about: "build qemu-system as `cargo xtask test` does (the pinned release with the
project's series unless told otherwise), then run `qmp-tests explore`:
random sequences of chardev, monitor and client operations, each step
checked against a model of the behaviour spec. A failing sequence is
shrunk, rerun to count how often it fails, and written with its QMP
transcript to target/explore/explore-SEED.txt; --replay SEED reruns it.",
    groups: &[
        ("Source", pipeline::SOURCE_FLAGS),
        ("Build", pipeline::BUILD_FLAGS),
        ("Explore", FLAGS),
    ],
    after: "Exit status: 0 no sequence failed, 1 a sequence failed, 2 the pipeline or
explore itself failed (fetch, build, bad input).",
};

pub struct Options {
    pipeline: Pipeline,
    /// `qmp-tests explore`'s own arguments, checked here before any build.
    args: Vec<OsString>,
}

/// The arguments for `qmp-tests explore`, each checked now: a typo should
/// not cost a QEMU build.
pub fn parse(m: &Matches) -> Result<Options> {
    let source = SourceArgs::from_matches(m)?;
    let build = pipeline::build_options(m, pipeline::Targets::of(&source))?;
    let mut args: Vec<OsString> = Vec::new();
    for (flag, hex) in [
        ("time", false),
        ("jobs", false),
        ("max-failures", false),
        ("seed", true),
        ("replay", true),
    ] {
        let Some(text) = m.text(flag)? else { continue };
        let ok = if hex {
            u64::from_str_radix(text.trim_start_matches("0x"), 16).is_ok()
        } else {
            text.parse::<u64>().is_ok_and(|n| n > 0)
        };
        if !ok {
            let want = if hex {
                "a seed in hex, as a report prints it"
            } else {
                "a positive whole number"
            };
            bail!("--{flag} wants {want}, got {text:?}");
        }
        args.extend([format!("--{flag}").into(), text.into()]);
    }
    for flag in ["chardevs", "sockets"] {
        let Some(text) = m.text(flag)? else { continue };
        if !text.split(',').all(|k| ["unix", "tcp", "pty"].contains(&k)) {
            bail!("--{flag} takes unix, tcp and pty, comma-separated; got {text:?}");
        }
        args.extend(["--chardevs".into(), text.into()]);
    }
    let junit = match m.path("junit")? {
        Some(path) => qmp_tests::absolute(&path)?,
        None => default_dir().join("junit.xml"),
    };
    args.extend(["--junit".into(), junit.into_os_string()]);
    args.extend(["--out".into(), default_dir().into_os_string()]);
    Ok(Options {
        pipeline: Pipeline::new(source, build, SuiteOptions::default(), STEPS),
        args,
    })
}

/// The pipeline up to the build; explore runs after it.
const STEPS: &[Step] = &[
    Step::Host,
    Step::Source,
    Step::Series,
    Step::QmpTests,
    Step::Venv,
    Step::Build,
];

impl Options {
    /// The CI matrix's explore leg: `secs` long, a random seed (printed),
    /// the report at `junit`.
    pub fn for_leg(source: SourceArgs, secs: u64, junit: PathBuf) -> Options {
        let build = crate::build::BuildOptions::default();
        let args = vec![
            "--time".into(),
            secs.to_string().into(),
            "--junit".into(),
            junit.into_os_string(),
            "--out".into(),
            default_dir().into_os_string(),
        ];
        Options {
            pipeline: Pipeline::new(source, build, SuiteOptions::default(), STEPS),
            args,
        }
    }
}

fn default_dir() -> PathBuf {
    paths::target_dir().join("explore")
}

/// Whether explore found nothing.
pub fn run(sh: &Shell, opts: &Options) -> Result<bool> {
    let mut run = opts.pipeline.start();
    for &step in &opts.pipeline.steps {
        run.step(sh, step)?;
    }
    let qmp_tests = run.qmp_tests()?;
    let state = run.finish()?;
    let built = state.built.context("explore's pipeline builds QEMU")?;
    std::fs::create_dir_all(default_dir())
        .with_context(|| format!("creating {}", default_dir().display()))?;
    let mut command = std::process::Command::new(&qmp_tests);
    command
        .arg("explore")
        .arg("--qemu")
        .arg(&built.binary)
        .args(&opts.args);
    let status = interrupt::spawn(&mut command, "qmp-tests explore")?
        .child
        .wait()
        .with_context(|| format!("running {} explore", qmp_tests.display()))?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("qmp-tests explore could not run ({status}); see its messages above"),
    }
}
