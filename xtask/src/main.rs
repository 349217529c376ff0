//! Project automation for the QEMU dynamic-monitor test integration:
//! `cargo xtask <command>`.

mod apt;
mod bench;
mod bisect;
mod build;
mod ci;
mod cli;
mod commands;
mod deps;
mod files;
mod interrupt;
mod lock;
mod meson;
mod mutants;
mod paths;
mod pipeline;
mod series;
mod source;
mod steps;
mod suite;
mod test;
mod vcs;
mod wire_record;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use xshell::Shell;

use cli::{Command, Matches};
use suite::Outcome;

/// Every command, in the order `cargo xtask --help` lists them.
const COMMANDS: [&Command; 9] = [
    &test::COMMAND,
    &commands::fetch::COMMAND,
    &commands::build::COMMAND,
    &commands::wire::COMMAND,
    &commands::unwire::COMMAND,
    &bisect::COMMAND,
    &ci::COMMAND,
    &bench::COMMAND,
    &mutants::COMMAND,
];

fn help() -> String {
    let mut out = "cargo xtask <command> [options]\n\nCommands:\n".to_owned();
    for c in COMMANDS {
        out.push_str(&format!("  {:<9}{}\n", c.name, c.summary));
    }
    out.push_str("\nEach command takes --help.\n");
    out
}

/// What a command's success means for the exit status.
enum Done {
    Ok,
    Suite(Outcome),
    /// `mutants`: some mutant was not caught.
    Survivors,
}

fn main() -> ExitCode {
    interrupt::install();
    // The xtask reads tools' output (git am's failure lines, ninja's
    // progress, git bisect's log): in the C locale, not the user's. Set
    // once here, before any thread, so every child inherits it.
    std::env::set_var("LC_ALL", "C");
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    if argv.is_empty() {
        eprint!("{}", help());
        return ExitCode::from(2);
    }
    let name = argv.remove(0);
    // Run by git bisect, which reads the exit status itself (0 good, 1 bad,
    // 125 skip, 128 abort): it bypasses the mapping below.
    if name == "bisect-step" {
        return bisect::step_main(argv);
    }
    if name == "help" || name == "--help" || name == "-h" {
        // A closed pipe (`| head`) is no error worth a panic.
        let _ = write!(std::io::stdout(), "{}", help());
        return ExitCode::SUCCESS;
    }
    let Some(command) = COMMANDS.into_iter().find(|c| name == c.name) else {
        eprintln!(
            "error: unknown command `{}`\n\n{}",
            name.to_string_lossy(),
            help()
        );
        return ExitCode::from(2);
    };
    let result = cli::parse_or_help(command, argv).and_then(|m| match m {
        Some(m) => run(command.name, &m),
        None => Ok(Done::Ok),
    });
    match result {
        Ok(Done::Ok) | Ok(Done::Suite(Outcome::Passed)) => ExitCode::SUCCESS,
        Ok(Done::Survivors) => {
            eprintln!("error: some mutants were not caught (see the list above)");
            ExitCode::from(1)
        }
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

fn run(command: &str, m: &Matches) -> Result<Done> {
    let sh = Shell::new()?;
    let ok = |()| Done::Ok;
    match command {
        "test" => {
            let opts = test::Options::from_matches(m)?;
            Ok(Done::Suite(test::run(&sh, &opts)?.outcome))
        }
        "fetch" => commands::fetch::run(&sh, m).map(ok),
        "build" => commands::build::run(&sh, m).map(ok),
        "wire" => commands::wire::run(&sh, m).map(ok),
        "unwire" => commands::unwire::run(m).map(ok),
        "bisect" => bisect::run(&sh, m).map(ok),
        "ci" => ci::run(&sh, m).map(ok),
        "bench" => bench::run(&sh, m).map(ok),
        "mutants" => Ok(if mutants::run(&sh, m)? {
            Done::Ok
        } else {
            Done::Survivors
        }),
        _ => unreachable!("every command in COMMANDS is dispatched"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_names_are_unique() {
        let mut names: Vec<_> = super::COMMANDS.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), super::COMMANDS.len());
    }

    #[test]
    fn the_minimum_rust_is_declared() {
        // File::lock and io::pipe: older toolchains fail on them with
        // errors that do not say why.
        assert_eq!(env!("CARGO_PKG_RUST_VERSION"), "1.89");
    }
}
