//! Project automation for the QEMU dynamic-monitor test integration:
//! `cargo xtask <command>`.

mod apt;
mod bench;
mod bisect;
mod build;
mod ci;
mod deps;
mod files;
mod flags;
mod interrupt;
mod meson;
mod paths;
mod pipeline;
mod series;
mod source;
mod steps;
mod suite;
mod test;
mod vcs;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use xshell::Shell;

use flags::Args;
use pipeline::SourceArgs;
use steps::Steps;
use suite::Outcome;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  test     fetch or locate QEMU, build it, wire meson, run the suite, write JUnit
  fetch    fetch the pinned QEMU release (or check a located tree) and apply the series
  build    build qemu-system-TARGET and print its path
  wire     add monitor_hotplug to the tree's functional-test meson list
  unwire   undo `wire`, restoring the files byte for byte
  bisect   find the QEMU commit that broke a scenario, with git bisect run
  ci       the project's own test command: lints, unit and integration tests, pipeline
  bench    time the floor, each scenario, the suite and the pipeline; write target/bench

Each command takes --help.";

const FETCH_HELP: &str = "\
cargo xtask fetch: install host dependencies, fetch the pinned QEMU release
into target/qemu/src (or check a located tree) and apply the series.

{SOURCE}";

const BUILD_HELP: &str = "\
cargo xtask build: fetch or locate QEMU, apply the series, configure once and
build qemu-system-TARGET out of tree; prints the binary's path.

Source:
{SOURCE}
Build:
{BUILD}";

const WIRE_HELP: &str = "\
cargo xtask wire: add 'monitor_hotplug' to the tree's tests_generic_system
meson list and write the test file meson needs, so that
`meson test func-TARGET-monitor_hotplug` and `make check-functional` run the
qmp-tests suite. Wiring twice changes nothing; `cargo xtask unwire` undoes it.

  --qemu-src PATH       the tree to wire (default: the fetched pinned tree)";

const UNWIRE_HELP: &str = "\
cargo xtask unwire: restore what `cargo xtask wire` changed, byte for byte.

  --qemu-src PATH       the tree to unwire (default: the fetched pinned tree)";

fn help(text: &str) -> String {
    text.replace("{SOURCE}", pipeline::SOURCE_HELP)
        .replace("{BUILD}", pipeline::BUILD_HELP)
}

/// What a command's success means for the exit status.
enum Done {
    Ok,
    Suite(Outcome),
}

fn main() -> ExitCode {
    interrupt::install();
    let mut argv: Vec<_> = std::env::args_os().skip(1).collect();
    if argv.is_empty() {
        eprintln!("{HELP}");
        return ExitCode::from(2);
    }
    let command = argv.remove(0).to_string_lossy().into_owned();
    let mut args = Args::new(argv);
    // Run by git bisect, which reads the exit status itself (0 good, 1 bad,
    // 125 skip, 128 abort): it bypasses the mapping below.
    if command == "bisect-step" {
        return bisect::step_main(args);
    }
    let help_text = match command.as_str() {
        "test" => Some(test::HELP),
        "fetch" => Some(FETCH_HELP),
        "build" => Some(BUILD_HELP),
        "wire" => Some(WIRE_HELP),
        "unwire" => Some(UNWIRE_HELP),
        "bisect" => Some(bisect::HELP),
        "ci" => Some(ci::HELP),
        "bench" => Some(bench::HELP),
        "help" | "--help" | "-h" => Some(HELP),
        _ => None,
    };
    if command == "help"
        || command == "--help"
        || command == "-h"
        || args.flag("--help")
        || args.flag("-h")
    {
        match help_text {
            Some(text) => {
                // A closed pipe (`| head`) is no error worth a panic.
                let _ = writeln!(std::io::stdout(), "{}", help(text));
                return ExitCode::SUCCESS;
            }
            None => {
                eprintln!("unknown command `{command}`\n\n{HELP}");
                return ExitCode::from(2);
            }
        }
    }
    match run(&command, args) {
        Ok(Done::Ok) | Ok(Done::Suite(Outcome::Passed)) => ExitCode::SUCCESS,
        Ok(Done::Suite(outcome)) => {
            if let Err(err) = test::fail_on(outcome) {
                eprintln!("error: {err}");
            }
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: &str, mut args: Args) -> Result<Done> {
    let sh = Shell::new()?;
    match command {
        "test" => Ok(Done::Suite(test::run(&sh, args)?.outcome)),
        "ci" => ci::run(&sh, args).map(|()| Done::Ok),
        "bisect" => bisect::run(&sh, args).map(|()| Done::Ok),
        "bench" => bench::run(&sh, args).map(|()| Done::Ok),
        "fetch" => {
            let src = SourceArgs::parse(&mut args)?;
            args.finish("fetch")?;
            let mut steps = Steps::new(3);
            pipeline::host_step(&mut steps, &sh)?;
            let prepared = pipeline::source_steps(&mut steps, &sh, &src)?;
            println!("{}", prepared.tree.path.display());
            Ok(Done::Ok)
        }
        "build" => {
            let src = SourceArgs::parse(&mut args)?;
            let opts = pipeline::parse_build(&mut args)?;
            args.finish("build")?;
            let mut steps = Steps::new(5);
            pipeline::host_step(&mut steps, &sh)?;
            let prepared = pipeline::source_steps(&mut steps, &sh, &src)?;
            let built = pipeline::build_step(&mut steps, &sh, &prepared.tree, &opts)?;
            println!("{}", built.binary.display());
            Ok(Done::Ok)
        }
        "wire" | "unwire" => {
            let src = SourceArgs::parse(&mut args)?;
            args.finish(command)?;
            let tree = match src.located {
                Some(tree) => tree,
                None => source::fetch(&sh, &source::Pin::load()?, &src.fetch)?,
            };
            if command == "unwire" {
                if meson::unwire(&tree.path)? {
                    eprintln!("unwired {}", tree.path.display());
                } else {
                    eprintln!("nothing is wired in {}: nothing to do", tree.path.display());
                }
                return Ok(Done::Ok);
            }
            let bin = suite::binary(&sh)?;
            match meson::wire(&tree.path, &bin, false)? {
                meson::Wired::Added(p) => eprintln!("wired monitor_hotplug into {}", p.display()),
                meson::Wired::Already(p) => {
                    eprintln!("monitor_hotplug is already in {}", p.display())
                }
                meson::Wired::NoFunctionalTests => eprintln!(
                    "{} has no functional-test list (QEMU before 9.2): nothing to wire",
                    tree.path.display()
                ),
            }
            Ok(Done::Ok)
        }
        _ => anyhow::bail!("unknown command `{command}`; see `cargo xtask --help`"),
    }
}
