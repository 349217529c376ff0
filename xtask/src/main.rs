//! Project automation for the QEMU dynamic-monitor test integration:
//! `cargo xtask <command>`.

mod apt;
mod bench;
mod bisect;
mod build;
mod ccache;
mod ci;
mod deps;
mod docs;
mod explore;
mod files;
mod flags;
mod interrupt;
mod jobs;
mod lock;
mod meson;
mod mutants;
mod path_serde;
mod paths;
mod pipeline;
mod prepare;
mod qmp_package;
mod series;
mod shard;
mod source;
mod steps;
mod stock;
mod suite;
mod templates;
mod test;
mod vcs;
mod wire_record;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use xshell::Shell;

use flags::Command;
use suite::Outcome;

/// What a command's success means for the exit status.
pub enum Done {
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
    // An empty QEMU_SRC names no tree (`QEMU_SRC= cargo xtask test`).
    if std::env::var_os("QEMU_SRC").is_some_and(|v| v.is_empty()) {
        std::env::remove_var("QEMU_SRC");
    }
    // Run by git bisect, which reads the exit status itself (0 good, 1 bad,
    // 125 skip, 128 abort): it bypasses the mapping below.
    if std::env::args_os().nth(1).is_some_and(|a| a == "bisect-step") {
        return bisect::step_main(std::env::args_os().skip(1));
    }
    let command = match flags::Xtask::try_parse() {
        Ok(xtask) => xtask.command,
        // --help, to stdout; a usage error, to stderr with exit status 2.
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    match Shell::new().map_err(anyhow::Error::from).and_then(|sh| run(&sh, command)) {
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

/// Every command checks its input first, then takes the cache's lock if
/// it touches the cache (lock.rs says why), then works.
fn run(sh: &Shell, command: Command) -> Result<Done> {
    match command {
        Command::Test(c) => c.run(sh),
        Command::Fetch(c) => c.run(sh),
        Command::Build(c) => c.run(sh),
        Command::Wire(c) => c.run(sh),
        Command::Unwire(c) => c.run(sh),
        Command::Bisect(c) => c.run(sh),
        Command::Ci(c) => c.run(sh),
        Command::Bench(c) => c.run(sh),
        Command::Mutants(c) => c.run(sh),
        Command::Explore(c) => c.run(sh),
        Command::Docs(c) => c.run(sh),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_declarations_are_consistent() {
        use clap::CommandFactory;
        crate::flags::Xtask::command().debug_assert();
        crate::flags::BisectStep::command().debug_assert();
    }

    /// docs/commands.md holds every command's --help as printed (the
    /// rest of it, qmp-tests' help, is checked by qmp-tests).
    #[test]
    fn docs_commands_md_is_every_help() {
        let path = crate::paths::project_root().join(crate::docs::COMMANDS_MD);
        let text = std::fs::read_to_string(&path).expect("docs/commands.md");
        let part = crate::docs::xtask_part();
        assert!(text.contains(&part), "{} is stale; run `cargo xtask docs`", path.display());
    }

    #[test]
    fn the_minimum_rust_is_declared() {
        // File::lock and io::pipe: older toolchains fail on them with
        // errors that do not say why.
        assert_eq!(env!("CARGO_PKG_RUST_VERSION"), "1.89");
    }
}
