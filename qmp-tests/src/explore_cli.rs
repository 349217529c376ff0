//! `qmp-tests explore`: the run and its reports.

use std::{fs, io::Write as _, path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use qmp_tests::{
    cli::{ExploreArgs, ExploreCli},
    explore::{self, Found, Options, Summary, Target},
    janitor::Janitor,
    junit::{self, SuiteInfo},
    outcome::{Failure, Outcome},
};

/// Runs; the exit status.
pub fn main(cli: ExploreCli) -> Result<u8> {
    let opts = cli.explore.options(cli.qemu);
    let ExploreArgs { out, junit: junit_path, leg, summary: summary_path, .. } = cli.explore;
    let exe = std::env::current_exe().context("finding our own executable for the janitor")?;
    let janitor = Arc::new(Janitor::spawn(&exe)?);
    let opts = Options { target: Target { janitor: Some(janitor), ..opts.target }, ..opts };
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
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    file.persist(&path).with_context(|| format!("writing {}", path.display()))?;
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
        "race_reruns": { "sequences": summary.race_reruns.0, "runs": summary.race_reruns.1 },
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
    let passed = Outcome { duration, notes, ..Outcome::new("explore") };
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
