//! Project automation for the QEMU dynamic-monitor test integration:
//! `cargo xtask <command>`.

mod apt;
mod bench;
mod bisect;
mod build;
mod ccache;
mod ci;
mod cli;
mod deps;
mod docs;
mod explore;
mod files;
mod interrupt;
mod legs;
mod lock;
mod meson;
mod mutants;
mod path_serde;
mod paths;
mod pipeline;
mod qmp_package;
mod series;
mod source;
mod steps;
mod stock;
mod suite;
mod templates;
mod test;
mod vcs;
mod wire_record;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use xshell::Shell;

use cli::{Command, Matches};
use suite::Outcome;

/// Every command, in the order `cargo xtask --help` lists them.
const COMMANDS: [&Command; 11] = [
    &test::COMMAND,
    &source::COMMAND,
    &build::COMMAND,
    &meson::WIRE,
    &meson::UNWIRE,
    &bisect::COMMAND,
    &ci::COMMAND,
    &bench::COMMAND,
    &mutants::COMMAND,
    &explore::COMMAND,
    &docs::COMMAND,
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
    /// `explore`: a sequence failed.
    Found,
}

fn main() -> ExitCode {
    if let Err(err) = interrupt::install() {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    // The xtask reads tools' output (git am's failure lines, ninja's
    // progress, git bisect's log): in the C locale, not the user's. Set
    // once here, before any thread but the signal thread (which reads no
    // environment), so every child inherits it.
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
        Ok(Done::Found) => {
            eprintln!("error: explore found a failing sequence (see above)");
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

/// A command's input, parsed and checked: nothing has run yet.
enum Task {
    Test(pipeline::Pipeline),
    Fetch(pipeline::Pipeline),
    Build(pipeline::Pipeline),
    Wire(pipeline::Pipeline),
    Unwire(Option<PathBuf>),
    Bisect(bisect::Request),
    Ci(ci::Options),
    Bench(bench::Options),
    Mutants(mutants::Options),
    Explore(explore::Options),
    Docs(docs::Options),
}

impl Task {
    fn parse(sh: &Shell, command: &str, m: &Matches) -> Result<Task> {
        Ok(match command {
            "test" => Task::Test(test::parse(m)?),
            "fetch" => Task::Fetch(source::parse(m)?),
            "build" => Task::Build(build::parse(m)?),
            "wire" => Task::Wire(meson::parse_wire(m)?),
            "unwire" => Task::Unwire(meson::parse_unwire(m)?),
            "bisect" => Task::Bisect(bisect::parse(sh, m)?),
            "ci" => Task::Ci(ci::parse(m)?),
            "bench" => Task::Bench(bench::parse(m)?),
            "mutants" => Task::Mutants(mutants::parse(m)?),
            "explore" => Task::Explore(explore::parse(m)?),
            "docs" => Task::Docs(docs::parse(m)?),
            _ => unreachable!("every command in COMMANDS is parsed"),
        })
    }

    /// Whether it touches the cache (builds, trees, wiring records), and
    /// so runs under its lock.
    fn uses_cache(&self) -> bool {
        match self {
            Task::Mutants(opts) => !opts.list,
            Task::Ci(opts) => opts.uses_cache(),
            Task::Docs(_) => false,
            _ => true,
        }
    }

    fn run(self, sh: &Shell) -> Result<Done> {
        let ok = |()| Done::Ok;
        match self {
            Task::Test(p) => Ok(Done::Suite(test::run(sh, &p)?.outcome)),
            Task::Fetch(p) => source::run(sh, &p).map(ok),
            Task::Build(p) => build::run(sh, &p).map(ok),
            Task::Wire(p) => meson::run_wire(sh, &p).map(ok),
            Task::Unwire(tree) => meson::run_unwire(tree.as_deref()).map(ok),
            Task::Bisect(request) => bisect::run(sh, &request).map(ok),
            Task::Ci(opts) => ci::run(sh, &opts).map(ok),
            Task::Bench(opts) => bench::run(sh, &opts).map(ok),
            Task::Docs(opts) => docs::run(sh, &opts, &help(), &COMMANDS).map(ok),
            Task::Mutants(opts) => Ok(if mutants::run(sh, opts)? {
                Done::Ok
            } else {
                Done::Survivors
            }),
            Task::Explore(opts) => Ok(if explore::run(sh, &opts)? {
                Done::Ok
            } else {
                Done::Found
            }),
        }
    }
}

/// Every command: its input checked first, then the cache's lock taken,
/// here and nowhere else (lock.rs says why), then the work.
fn run(command: &str, m: &Matches) -> Result<Done> {
    let sh = Shell::new()?;
    let task = Task::parse(&sh, command, m)?;
    let _lock = if task.uses_cache() {
        Some(lock::cache()?)
    } else {
        None
    };
    task.run(&sh)
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

    /// docs/commands.md holds every command's --help as printed (the
    /// rest of it, qmp-tests' help, is checked by qmp-tests).
    #[test]
    fn docs_commands_md_is_every_help() {
        let path = crate::paths::project_root().join(crate::docs::COMMANDS_MD);
        let text = std::fs::read_to_string(&path).expect("docs/commands.md");
        let part = crate::docs::xtask_part(&super::help(), &super::COMMANDS);
        assert!(
            text.contains(&part),
            "{} is stale; run `cargo xtask docs`",
            path.display()
        );
    }

    #[test]
    fn the_minimum_rust_is_declared() {
        // File::lock and io::pipe: older toolchains fail on them with
        // errors that do not say why.
        assert_eq!(env!("CARGO_PKG_RUST_VERSION"), "1.89");
    }
}
