//! Which scenarios to start first for a mutant: those that caught it last
//! time, then those that caught other mutants of the same file, then the
//! rest by how many mutants they caught. The history is the last kill
//! matrix (`mutants.json`) of the whole run and of each shard, and
//! `target/mutants-history.json`, which every run updates with what it
//! saw, so that a run of a few mutants does not make the others forget.
//!
//! A scenario that kills a mutant once kills it again, so with the run
//! stopping at its first failure most mutants cost one scenario's time.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::catalogue::Mutant;
use super::{MutantOutcome, Verdict};

/// What earlier runs recorded: each mutant's file and catching
/// scenarios, in the report's spelling (`test_x`, `test_x (qom)`).
#[derive(Debug, Default)]
pub struct History {
    caught: HashMap<String, Caught>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Caught {
    name: String,
    file: String,
    caught_by: Vec<String>,
}

#[derive(Deserialize, Serialize)]
struct Report {
    mutants: Vec<Caught>,
}

impl History {
    /// Every report in `reports` that exists; a later one wins for a
    /// mutant both name. A report that does not parse is named.
    pub fn load(reports: &[impl AsRef<Path>]) -> Result<History> {
        let mut history = History::default();
        for path in reports {
            let path = path.as_ref();
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
            };
            let report: Report = serde_json::from_str(&text).with_context(|| {
                format!(
                    "parsing the earlier kill matrix {} (delete it to start afresh)",
                    path.display()
                )
            })?;
            history.add(report.mutants);
        }
        Ok(history)
    }

    fn add(&mut self, mutants: Vec<Caught>) {
        for m in mutants {
            if !m.caught_by.is_empty() {
                self.caught.insert(m.name.clone(), m);
            }
        }
    }

    /// What this run saw: a mutant's new catchers first, then those
    /// it had (a first-kill run names one, an earlier full run them all).
    pub fn record(&mut self, outcomes: &[MutantOutcome]) {
        for o in outcomes {
            let Verdict::Caught(by) = &o.verdict else {
                continue;
            };
            let mut caught_by = by.clone();
            if let Some(old) = self.caught.remove(&o.mutant.name) {
                caught_by.extend(old.caught_by.into_iter().filter(|s| !by.contains(s)));
            }
            let caught =
                Caught { name: o.mutant.name.clone(), file: o.mutant.file.clone(), caught_by };
            self.caught.insert(caught.name.clone(), caught);
        }
    }

    /// Writes the history as a report `load` reads.
    pub fn save(self, path: &Path) -> Result<()> {
        let mut mutants: Vec<Caught> = self.caught.into_values().collect();
        mutants.sort_by(|a, b| a.name.cmp(&b.name));
        let text = serde_json::to_string_pretty(&Report { mutants })
            .context("writing the mutants' history as JSON")?;
        crate::files::write_atomic(path, &format!("{text}\n"))
    }

    pub fn is_empty(&self) -> bool {
        self.caught.is_empty()
    }

    /// The runs to start first for `mutant`, as qmp-tests' `--first`
    /// takes them (`NAME/ROUTE`): its own catchers in the order they were
    /// reported, then the catchers of other mutants of its file, then
    /// every other catcher, each group by how many mutants it caught.
    pub fn first(&self, mutant: &Mutant) -> Vec<String> {
        let mut order: Vec<String> = Vec::new();
        let mut push = |run: &str| {
            if let Some(pick) = pick(run) {
                if !order.contains(&pick) {
                    order.push(pick);
                }
            }
        };
        if let Some(own) = self.caught.get(&mutant.name) {
            own.caught_by.iter().for_each(|run| push(run));
        }
        let (same_file, others): (Vec<&Caught>, Vec<&Caught>) = self
            .caught
            .values()
            .filter(|c| c.name != mutant.name)
            .partition(|c| c.file == mutant.file);
        for group in [same_file, others] {
            for run in by_kills(&group) {
                push(&run);
            }
        }
        order
    }
}

/// The catching runs of `group`, most kills first, then by name.
fn by_kills(group: &[&Caught]) -> Vec<String> {
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    for caught in group {
        for run in &caught.caught_by {
            *kills.entry(run.as_str()).or_default() += 1;
        }
    }
    let mut runs: Vec<(&str, usize)> = kills.into_iter().collect();
    runs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    runs.into_iter().map(|(run, _)| run.to_owned()).collect()
}

/// `test_x` -> `test_x/commands`, `test_x (qom)` -> `test_x/qom`; what is
/// not a scenario of the suite (a note such as "every scenario: no
/// route") gives none.
fn pick(run: &str) -> Option<String> {
    let (name, route) = match run.strip_suffix(" (qom)") {
        Some(name) => (name, "qom"),
        None => (run, "commands"),
    };
    qmp_tests::scenarios::find(name).map(|_| format!("{name}/{route}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutant(name: &str, file: &str) -> Mutant {
        Mutant {
            name: name.into(),
            path: "/nonexistent.diff".into(),
            file: file.into(),
            spec: String::new(),
            fault: String::new(),
            program: Default::default(),
        }
    }

    fn caught(name: &str, file: &str, by: &[&str]) -> Caught {
        Caught {
            name: name.into(),
            file: file.into(),
            caught_by: by.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn history() -> History {
        let mut history = History::default();
        history.add(vec![
            caught("a", "monitor/qmp.c", &["test_many (qom)", "test_greeting"]),
            caught("b", "monitor/qmp.c", &["test_soak"]),
            caught("c", "monitor/qmp.c", &["test_soak", "test_reconnect"]),
            caught("d", "qom/object.c", &["test_errors", "test_errors (qom)"]),
            caught("e", "qom/object.c", &["test_errors"]),
            caught("f", "monitor/hmp.c", &[]),
        ]);
        history
    }

    #[test]
    fn own_catchers_first_then_the_files_then_the_rest() {
        let first = history().first(&mutant("a", "monitor/qmp.c"));
        assert_eq!(
            first,
            [
                "test_many/qom",
                "test_greeting/commands",
                // b and c: test_soak twice.
                "test_soak/commands",
                "test_reconnect/commands",
                // Other files: test_errors twice.
                "test_errors/commands",
                "test_errors/qom",
            ]
        );
    }

    #[test]
    fn a_new_mutant_starts_with_its_files_catchers() {
        let first = history().first(&mutant("new", "qom/object.c"));
        assert_eq!(first[..2], ["test_errors/commands", "test_errors/qom"]);
        assert_eq!(first[2], "test_soak/commands");
        assert!(History::default().first(&mutant("new", "qom/object.c")).is_empty());
    }

    #[test]
    fn the_reports_load_a_later_one_winning_and_a_missing_one_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let report = |by: &str| {
            format!(
                r#"{{"mutants": [{{"name": "a", "file": "monitor/qmp.c", "caught_by": ["{by}"],
                "outcome": "caught"}}]}}"#
            )
        };
        let (old, new) = (dir.path().join("old.json"), dir.path().join("new.json"));
        std::fs::write(&old, report("test_soak")).unwrap();
        std::fs::write(&new, report("test_many")).unwrap();
        let missing = dir.path().join("none.json");
        let history = History::load(&[&old, &missing, &new]).unwrap();
        assert_eq!(history.first(&mutant("a", "monitor/qmp.c")), ["test_many/commands"]);
        std::fs::write(&old, "{").unwrap();
        let err = History::load(&[&old]).unwrap_err();
        assert!(format!("{err:#}").contains("old.json"), "{err:#}");
    }

    #[test]
    fn a_run_puts_its_catchers_first_and_keeps_the_others() {
        let outcome = |name: &str, verdict| MutantOutcome {
            mutant: mutant(name, "monitor/qmp.c"),
            verdict,
            build_secs: 0.0,
            cached: false,
            suite_secs: 0.0,
            explore: None,
        };
        let mut history = history();
        history.record(&[
            outcome("c", Verdict::Caught(vec!["test_reconnect".into()])),
            outcome("new", Verdict::Caught(vec!["test_pretty".into()])),
            outcome("b", Verdict::Missed),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        history.save(&path).unwrap();
        let history = History::load(&[&path]).unwrap();
        let own = |name: &str| history.caught[name].caught_by.clone();
        assert_eq!(own("c"), ["test_reconnect", "test_soak"]);
        assert_eq!(own("new"), ["test_pretty"]);
        assert_eq!(own("b"), ["test_soak"]);
    }

    #[test]
    fn notes_that_are_not_scenarios_are_left_out() {
        assert_eq!(pick("(every scenario: no route)"), None);
        assert_eq!(pick("test_soak (qom)").as_deref(), Some("test_soak/qom"));
    }
}
