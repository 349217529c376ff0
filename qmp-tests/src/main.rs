//! `qmp-tests`: runs the dynamic-monitor scenarios against a QEMU binary.
//! See `qmp-tests --help` for options and exit codes.

mod app;
mod cli;
mod explore_cli;

use std::process::ExitCode;

use qmp_tests::janitor;

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
        return match explore_cli::main(args) {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                eprintln!("qmp-tests explore: error: {err:#}\nTry 'qmp-tests explore --help'.");
                ExitCode::from(app::EXIT_HARNESS)
            }
        };
    }
    let args = match cli::parse(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("qmp-tests: {message}\nTry 'qmp-tests --help'.");
            return ExitCode::from(app::EXIT_HARNESS);
        }
    };
    if args.help {
        print!("{}", cli::HELP);
        return ExitCode::SUCCESS;
    }
    match app::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("qmp-tests: error: {err:#}");
            ExitCode::from(app::EXIT_HARNESS)
        }
    }
}
