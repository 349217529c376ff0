//! Every command's flags, declared once as types (clap derive): the
//! parser, the `--help` text and the values the commands read are made
//! from the same declaration, so a misspelt flag is a compile error, not
//! a run-time one. The suite's and explore's options are qmp-tests' own
//! structs, embedded: a value qmp-tests would refuse is refused here,
//! before any fetch or build, and forwarded with their `to_args`.
//!
//! Each command's `run` is in its own module (`impl Test { fn run }` in
//! test.rs, and so on); the worker modules below them never see a flag.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use qmp_tests::cli::{positive, program, spelled, Argv, ExploreArgs, SuiteArgs};
use qmp_tests::program::Program;

use crate::build::BuildOptions;
use crate::pipeline::{SourceArgs, Targets};
use crate::shard::Shard;
use crate::source::{FetchOptions, Origin};
use crate::{series, source};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project automation for the QEMU dynamic-monitor tests.",
    disable_version_flag = true,
    arg_required_else_help = true,
    term_width = 80,
    after_help = "Each command takes --help."
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

/// A command's help: the paragraph that says what it does (its `about`
/// is the line in the list of commands), then its flags.
const HELP: &str = "{before-help}{usage-heading} {usage}\n\n{all-args}{after-help}";

#[derive(Subcommand)]
pub enum Command {
    Test(Test),
    Fetch(Fetch),
    Build(Build),
    Wire(Wire),
    Unwire(Unwire),
    Bisect(Bisect),
    Ci(Ci),
    Bench(Bench),
    Mutants(Mutants),
    Explore(Explore),
    Docs(Docs),
}

/// A path flag, made absolute at parse (see `qmp_tests::absolute`); its
/// bytes are kept, as a path need not be UTF-8.
fn path() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    clap::builder::OsStringValueParser::new()
        .try_map(|v: OsString| qmp_tests::absolute(Path::new(&v)))
}

/// Which tree, which series.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Source")]
pub struct SourceFlags {
    /// use this QEMU tree as it is
    #[arg(long, value_name = "PATH", env = "QEMU_SRC", hide_env_values = true, value_parser = path())]
    pub qemu_src: Option<PathBuf>,
    /// fetch the pinned release from debian, git or tarball only
    #[arg(long, value_name = "SOURCE", value_parser = Origin::parse, conflicts_with = "qemu_src")]
    pub from: Option<Origin>,
    /// checksum of the release tarball (for --from tarball)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// apply this series (directory of format-patch files or mbox)
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub series: Option<PathBuf>,
    /// test the pinned release without the project's series
    #[arg(long, conflicts_with = "series")]
    pub no_series: bool,
}

impl SourceFlags {
    /// The tree and series, checked before any work: the tree, the series.
    pub fn source_args(&self) -> Result<SourceArgs> {
        let located = self.qemu_src.as_deref().map(source::locate).transpose()?;
        if let Some(path) = &self.series {
            series::patch_files(path)?;
        }
        Ok(SourceArgs {
            located,
            fetch: FetchOptions { from: self.from, sha256: self.sha256.clone() },
            series: self.series.clone(),
            no_series: self.no_series,
        })
    }

    /// The same flags as arguments, `--NAME=VALUE`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv::default();
        out.path("qemu-src", self.qemu_src.as_ref());
        out.opt("from", &self.from);
        out.opt("sha256", &self.sha256);
        out.path("series", self.series.as_ref());
        out.switch("no-series", self.no_series);
        out.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sanitizer {
    Address,
    Undefined,
}

/// How to configure and build.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Build")]
pub struct BuildFlags {
    /// build qemu-system-T (default x86_64)
    #[arg(long, value_name = "T")]
    pub target: Option<String>,
    /// pass ARG to configure (repeatable)
    #[arg(long = "configure-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub configure_args: Vec<String>,
    /// build with sanitizers: address,undefined
    #[arg(long, value_name = "LIST", value_enum, value_delimiter = ',')]
    pub sanitize: Vec<Sanitizer>,
}

impl BuildFlags {
    /// The build's options, refusing a target configure would refuse only
    /// after the fetch and the build's preparations.
    pub fn options(&self, targets: Targets) -> Result<BuildOptions> {
        let mut sanitize: Vec<String> = self.sanitize.iter().map(spelled).collect();
        sanitize.sort();
        sanitize.dedup();
        let opts = BuildOptions {
            target: self.target.clone().unwrap_or_else(|| "x86_64".to_owned()),
            configure_args: self.configure_args.clone(),
            sanitize,
            build_root: None,
            program: Program::System,
        };
        match targets {
            Targets::Pinned => crate::build::check_options(&opts, None)?,
            Targets::Tree(tree) => crate::build::check_options(&opts, Some(tree))?,
            Targets::AtBuild => {}
        }
        Ok(opts)
    }

    /// The same flags as arguments, `--NAME=VALUE`: a configure argument
    /// that starts with `--` stays a value.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv::default();
        out.opt("target", &self.target);
        for arg in &self.configure_args {
            out.text("configure-arg", arg);
        }
        for s in &self.sanitize {
            out.text("sanitize", spelled(s));
        }
        out.0
    }
}

/// Which QEMU program `build` and `test` build (and test).
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Program")]
pub struct ProgramFlag {
    /// system (qemu-system-T) or storage-daemon (qemu-storage-daemon,
    /// configured with the tools in a build directory of its own; the
    /// suite skips what needs qemu-system, saying why)
    #[arg(long, value_name = "PROGRAM", default_value = "system", value_parser = program)]
    pub program: Program,
}

impl ProgramFlag {
    /// The build's options for the program: qemu-storage-daemon has no
    /// target to pick.
    pub fn options(&self, build: &BuildFlags, targets: Targets) -> Result<BuildOptions> {
        if self.program == Program::StorageDaemon && build.target.is_some() {
            anyhow::bail!(
                "--target picks qemu-system's target; qemu-storage-daemon has none, so leave it out"
            );
        }
        Ok(BuildOptions { program: self.program, ..build.options(targets)? })
    }
}

/// Where `test`'s report goes.
#[derive(Args, Clone, Debug, Default)]
pub struct Junit {
    /// where the report goes (default target/qmp-tests/junit.xml)
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub junit: Option<PathBuf>,
}

/// fetch or locate QEMU, build it, wire meson, run the suite, write JUnit
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "fetch or locate QEMU, build qemu-system (or qemu-storage-daemon), wire \
                  the meson entry, run the qmp-tests suite and write a JUnit report.",
    after_help = "Exit status: 0 all scenarios passed, 1 a scenario failed or the QEMU has\n\
                  no monitor-add, 2 the pipeline itself failed (fetch, build, bad input)."
)]
pub struct Test {
    #[command(flatten)]
    pub source: SourceFlags,
    #[command(flatten)]
    pub build: BuildFlags,
    #[command(flatten)]
    pub program: ProgramFlag,
    #[command(flatten, next_help_heading = "Suite")]
    pub suite: SuiteArgs,
    #[command(flatten, next_help_heading = "Suite")]
    pub junit: Junit,
}

/// fetch the pinned QEMU release (or check a located tree) and apply the series
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "install host dependencies, fetch the pinned QEMU release into \
                        target/qemu/src (or check a located tree) and apply the series; \
                        prints the path of the tree a build would use."
)]
pub struct Fetch {
    #[command(flatten)]
    pub source: SourceFlags,
}

/// build qemu-system-TARGET (or qemu-storage-daemon) and print its path
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "fetch or locate QEMU, apply the series, configure once and build \
                   qemu-system-TARGET (or, with --program storage-daemon, qemu-storage-daemon) \
                   out of tree; prints the binary's path."
)]
pub struct Build {
    #[command(flatten)]
    pub source: SourceFlags,
    #[command(flatten)]
    pub build: BuildFlags,
    #[command(flatten)]
    pub program: ProgramFlag,
}

/// add monitor_hotplug to the tree's functional-test meson list
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "add 'monitor_hotplug' to the tree's tests_generic_system meson list \
                        and write the test file meson needs, so that `meson test \
                        func-TARGET-monitor_hotplug` and `make check-functional` run the \
                        qmp-tests suite. The tree is the one `cargo xtask test` with the same \
                        flags builds: by default the pinned release with the project's series. \
                        Wiring twice changes nothing; `cargo xtask unwire` undoes it."
)]
pub struct Wire {
    #[command(flatten)]
    pub source: SourceFlags,
}

/// undo `wire`, restoring the files byte for byte
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "restore what `cargo xtask wire` (or a killed `cargo xtask test`) \
                        changed, byte for byte. A file edited since it was wired is left \
                        alone, and that is an error."
)]
pub struct Unwire {
    /// the tree to unwire; without it, every wired tree in the cache: what
    /// `wire` and `test` wire without flags
    #[arg(long, value_name = "PATH", env = "QEMU_SRC", hide_env_values = true, value_parser = path())]
    pub qemu_src: Option<PathBuf>,
}

/// What to count a QEMU without monitor-add as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Unsupported {
    #[default]
    Skip,
    Bad,
    Good,
}

/// What each bisect step is given, by `bisect` and again by `bisect-step`.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Steps")]
pub struct StepFlags {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// count a QEMU without monitor-add as skip, bad or good
    #[arg(long, value_name = "AS", value_enum, default_value_t = Unsupported::Skip)]
    pub unsupported: Unsupported,
    /// apply this series on top of each step's commit
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub series: Option<PathBuf>,
    #[command(flatten)]
    pub build: BuildFlags,
}

impl StepFlags {
    /// The same flags as arguments of `bisect-step`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Argv(self.suite.to_args());
        out.text("unsupported", spelled(&self.unsupported));
        out.path("series", self.series.as_ref());
        out.0.extend(self.build.to_args());
        out.0
    }
}

/// find the QEMU commit that broke a scenario, with git bisect run
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "find the first commit of a QEMU git tree that breaks the qmp-tests suite, \
                  with git bisect run. Each step builds qemu-system-T incrementally in one \
                  shared build directory and runs the chosen scenarios (default: all).",
    after_help = "A step is good when the scenarios pass, bad when one fails, and skipped
when the commit does not build (or the series does not apply). A failure
of the harness itself aborts the bisect rather than blame a commit. The
tree goes back to where it was (git bisect reset), also on an error or
Ctrl-C. The report and each step's JUnit go to target/bisect/TIME/.

Exit status: 0 the first bad commit was found, 2 otherwise."
)]
pub struct Bisect {
    /// the QEMU git tree to bisect (its work tree must be clean)
    #[arg(long, value_name = "PATH", value_parser = path(), help_heading = "Bisect")]
    pub qemu_src: PathBuf,
    /// a commit that passes
    #[arg(long, value_name = "REV", help_heading = "Bisect")]
    pub good: String,
    /// a commit that fails
    #[arg(long, value_name = "REV", help_heading = "Bisect")]
    pub bad: String,
    #[command(flatten)]
    pub step: StepFlags,
}

/// One step of `cargo xtask bisect`, run by git bisect run: its own
/// parser, so that even a usage error exits with a status git reads as
/// "abort".
#[derive(Parser)]
#[command(name = "cargo xtask bisect-step", disable_version_flag = true)]
pub struct BisectStep {
    /// the tree
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub qemu_src: PathBuf,
    /// the suite binary
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub qmp_tests: PathBuf,
    /// the bisect's log directory
    #[arg(long, value_name = "PATH", value_parser = path())]
    pub log_dir: PathBuf,
    #[command(flatten)]
    pub step: StepFlags,
}

/// the project's own test command: lints, unit and integration tests, pipeline
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "the project's own test command: the jobs of the CI list \
                        (xtask/src/jobs.rs) marked for it, in order. cargo fmt --check, clippy, \
                        the host's dependencies, the templates' schemas, the unit tests, `cargo \
                        xtask test` against the pinned release without and with the project's \
                        series, beside the rest qemu-storage-daemon with the series (leg qsd) \
                        and `cargo xtask mutants` over the whole catalogue, the integration \
                        tests against those builds, `meson test` through the wiring, explore's \
                        first 500 sequences of seed 0, and a sanitizer build; then each stage's \
                        time."
)]
pub struct Ci {
    /// leave out the address,undefined build
    #[arg(long)]
    pub skip_sanitizer: bool,
    /// run one leg of the CI matrix as the CI templates do (its jobs in
    /// xtask/src/jobs.rs: the checks, a suite build on one route, ...), a
    /// suite's JUnit report in target/qmp-tests/NAME/
    #[arg(long, value_name = "NAME", help_heading = "CI matrix")]
    pub leg: Option<String>,
    /// with --leg: run the leg on this QEMU tree as it is, not the pinned
    /// release (a QEMU project's own pipeline)
    #[arg(long, value_name = "PATH", value_parser = path(), requires = "leg", help_heading = "CI matrix")]
    pub qemu_src: Option<PathBuf>,
    /// with --leg: apply this series first (on the tree of --qemu-src, or
    /// on the pinned release)
    #[arg(long, value_name = "PATH", value_parser = path(), requires = "leg", help_heading = "CI matrix")]
    pub series: Option<PathBuf>,
    /// print the legs of the CI matrix
    #[arg(long, help_heading = "CI matrix")]
    pub list_legs: bool,
    /// render ci/gitlab-ci.yml and .github/workflows/monitor-hotplug.yml
    /// from the legs
    #[arg(long, help_heading = "CI matrix")]
    pub write_templates: bool,
    /// check both templates against the GitLab and GitHub JSON schemas
    /// (check-jsonschema's bundled copies)
    #[arg(long, help_heading = "CI matrix")]
    pub check_templates: bool,
}

/// time the floor, each scenario, the suite and the pipeline; write target/bench
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "build what `cargo xtask test` builds, then time, N runs each: a QEMU \
                        started, probed and quit (the floor), each scenario alone (with the \
                        query-qmp-schema reply test_large_response times, raw and parsed), \
                        the suite, the seed scenarios against `meson test`, and `cargo xtask \
                        test` warm and after touching monitor/qmp.c. Prints a table and writes \
                        it as JSON to target/bench/latest.json and a dated copy. Targets are \
                        reported, not enforced: a miss still exits 0."
)]
pub struct Bench {
    /// runs of each figure (the pipeline gets at most 3)
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = positive::<usize>)]
    pub runs: usize,
    /// also time cargo xtask mutants over the whole catalogue (minutes)
    #[arg(long)]
    pub mutants: bool,
    /// also time cargo xtask test from fresh clones of REV and HEAD, side
    /// by side (minutes)
    #[arg(long, value_name = "REV", conflicts_with_all = ["qemu_src", "series", "no_series"])]
    pub cold: Option<String>,
    #[command(flatten)]
    pub source: SourceFlags,
    #[command(flatten)]
    pub build: BuildFlags,
}

/// plant each catalogued fault in the series; show which scenarios catch it
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "plant each fault of the catalogue (patches/mutants/*.diff) in a scratch \
                  copy of the pinned release with the project's series, rebuild it \
                  incrementally and run the suite with its default deadlines. An unmutated \
                  baseline runs first and must pass. Each mutant ends caught (with the \
                  scenarios that caught it), missed, unviable (does not build), timeout or \
                  not applying. A mutant's suite run stops at its first failing scenario, and \
                  starts with the scenarios that caught it in the last run (or that caught \
                  mutants of its file). Prints a kill matrix and writes it to \
                  target/mutants/mutants.json and target/mutants/junit.xml \
                  (target/mutants/shard-K-of-N/ for a shard).",
    after_help = "Exit status: 0 every mutant was caught, 1 a mutant was missed, timed
out, did not build or did not apply, 2 the pipeline failed (the baseline
included)."
)]
pub struct Mutants {
    /// run only this mutant (repeatable; see --list)
    #[arg(long = "mutant", value_name = "NAME")]
    pub mutants: Vec<String>,
    /// run each mutant's whole suite, to list every scenario that catches
    /// it (the full kill matrix)
    #[arg(long)]
    pub all_failures: bool,
    /// run the K-th of N parts of the catalogue (dealt round-robin in name
    /// order), after the baseline
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// also run qmp-tests explore on each mutant (and the baseline): seed
    /// 0's first N sequences, stopping at the first failure; its verdict is
    /// an extra column
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub explore: Option<usize>,
    /// print the catalogue (or the shard's part) and exit
    #[arg(long)]
    pub list: bool,
}

/// build QEMU as `test` does, then run random operation sequences against a model of the spec
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "build qemu-system as `cargo xtask test` does (the pinned release with the \
                  project's series unless told otherwise), then run `qmp-tests explore`: \
                  random sequences of chardev, monitor and client operations, each step \
                  checked against a model of the behaviour spec. A failing sequence is \
                  shrunk, rerun to count how often it fails, and written with its QMP \
                  transcript to target/explore/explore-SEED.txt (--out); --replay SEED reruns \
                  it. The report goes to target/explore/junit.xml unless --junit says \
                  otherwise.",
    after_help = "Exit status: 0 no sequence failed, 1 a sequence failed, 2 the pipeline or
explore itself failed (fetch, build, bad input)."
)]
pub struct Explore {
    #[command(flatten)]
    pub source: SourceFlags,
    #[command(flatten)]
    pub build: BuildFlags,
    #[command(flatten, next_help_heading = "Explore")]
    pub explore: ExploreArgs,
}

/// write docs/commands.md from every --help; docs/benchmarks.md from a bench
#[derive(Args)]
#[command(
    help_template = HELP,
    before_help = "write docs/commands.md from the --help of every xtask command and of \
                        qmp-tests, and, given a `cargo xtask bench` JSON report, \
                        docs/benchmarks.md from it."
)]
pub struct Docs {
    /// write nothing; fail when docs/commands.md is not what the commands
    /// print
    #[arg(long)]
    pub check: bool,
    /// render docs/benchmarks.md from this bench report
    /// (target/bench/latest.json after `cargo xtask bench`)
    #[arg(long, value_name = "JSON", value_parser = path())]
    pub bench: Option<PathBuf>,
}

/// Parses `cargo xtask ARGS...` (for tests).
#[cfg(test)]
pub fn parse(argv: &[&str]) -> clap::error::Result<Xtask> {
    Xtask::try_parse_from(std::iter::once("cargo xtask").chain(argv.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `bench` forwards to the `cargo xtask test` runs it times is
    /// its source and build flags, without its own.
    #[test]
    fn bench_forwards_its_source_and_build_flags_alone() {
        let Ok(Xtask { command: Command::Bench(bench) }) = parse(&[
            "bench",
            "--runs=3",
            "--mutants",
            "--no-series",
            "--target",
            "aarch64",
            "--configure-arg",
            "--enable-debug",
            "--sanitize=address,undefined",
        ]) else {
            panic!("bench's flags do not parse")
        };
        let mut forwarded: Vec<OsString> = vec!["cargo xtask".into(), "build".into()];
        forwarded.extend(bench.source.to_args());
        forwarded.extend(bench.build.to_args());
        let Ok(Xtask { command: Command::Build(build) }) = Xtask::try_parse_from(&forwarded) else {
            panic!("{forwarded:?} does not parse")
        };
        assert!(build.source.no_series);
        assert_eq!(build.build.target.as_deref(), Some("aarch64"));
        assert_eq!(build.build.configure_args, ["--enable-debug"]);
        assert_eq!(build.build.sanitize, [Sanitizer::Address, Sanitizer::Undefined]);
    }

    #[test]
    fn the_storage_daemon_takes_no_target() {
        let build = |argv: &[&str]| match parse(argv) {
            Ok(Xtask { command: Command::Build(build) }) => {
                build.program.options(&build.build, Targets::AtBuild)
            }
            _ => panic!("{argv:?} does not parse"),
        };
        let opts = build(&["build", "--program", "storage-daemon"]).unwrap();
        assert_eq!(opts.program, Program::StorageDaemon);
        let err = build(&["build", "--program=storage-daemon", "--target=aarch64"]).unwrap_err();
        assert!(err.to_string().contains("qemu-storage-daemon has none"), "{err}");
        assert_eq!(build(&["build"]).unwrap().target, "x86_64");
    }

    #[test]
    fn contradictions_are_refused_before_any_work() {
        for (argv, needle) in [
            (&["test", "--series", "s", "--no-series"][..], "cannot be used with"),
            (&["fetch", "--qemu-src", "q", "--from", "git"], "cannot be used with"),
            (&["ci", "--series", "s"], "--leg"),
            (&["bench", "--runs", "0"], "a positive whole number"),
            (&["test", "--sanitize", "thread"], "possible values: address, undefined"),
            (&["mutants", "--shard", "0/2"], "K-th of N"),
        ] {
            let err = parse(argv).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{argv:?}: {err}");
        }
    }
}
