//! `qmp-tests`: runs the dynamic-monitor scenarios against a QEMU binary.
//! See `qmp-tests --help` for options and exit codes.

mod app;
mod explore_cli;

use std::process::ExitCode;

use clap::Parser;
use qmp_tests::{
    cli::{ExploreCli, SuiteCli},
    janitor,
};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|arg| arg == janitor::SUBCOMMAND) {
        janitor::ignore_terminal_signals();
        return match janitor::serve(std::io::stdin().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    if args.peek().is_some_and(|arg| arg == "explore") {
        args.next();
        let argv = std::iter::once("qmp-tests explore".into()).chain(args);
        let cli = match ExploreCli::try_parse_from(argv) {
            Ok(cli) => cli,
            Err(err) => return usage(err, "qmp-tests explore"),
        };
        return match explore_cli::main(cli) {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                eprintln!("qmp-tests explore: error: {err:#}\nTry 'qmp-tests explore --help'.");
                ExitCode::from(qmp_tests::exit::HARNESS)
            }
        };
    }
    let argv = std::iter::once("qmp-tests".into()).chain(args);
    let cli = match SuiteCli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => return usage(err, "qmp-tests"),
    };
    match app::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("qmp-tests: error: {err:#}");
            ExitCode::from(qmp_tests::exit::HARNESS)
        }
    }
}

/// `--help` printed (exit 0), or a usage error said (exit 2).
fn usage(err: clap::Error, program: &str) -> ExitCode {
    if !err.use_stderr() {
        print!("{err}");
        return ExitCode::SUCCESS;
    }
    eprint!("{program}: {err}");
    ExitCode::from(qmp_tests::exit::HARNESS)
}
