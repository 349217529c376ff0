//! The steps shared by `fetch`, `build`, `test` and `bench`: host
//! dependencies, source, series, wiring and build.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::build::{self, BuildOptions, Built};
use crate::cli::{self, Flag, Kind, Matches};
use crate::meson::{self, WireGuard, Wired};
use crate::source::{self, FetchOptions, Origin, Pin, Tree};
use crate::steps::Steps;
use crate::suite::{self, Outcome, SuiteOptions};
use crate::{deps, paths, series, vcs};

/// Which tree, which series.
pub struct SourceArgs {
    /// A located tree, checked while parsing so that bad input fails
    /// before anything is installed or built.
    pub located: Option<Tree>,
    pub fetch: FetchOptions,
    pub series: Option<PathBuf>,
    pub no_series: bool,
}

pub const SOURCE_FLAGS: &[Flag] = &[
    cli::value(
        "qemu-src",
        "PATH",
        Kind::Path,
        "use this QEMU tree as it is (also: QEMU_SRC)",
    ),
    cli::value(
        "from",
        "SOURCE",
        Kind::Text,
        "fetch the pinned release from debian, git or tarball only",
    ),
    cli::value(
        "sha256",
        "HEX",
        Kind::Text,
        "checksum of the release tarball (for --from tarball)",
    ),
    cli::value(
        "series",
        "PATH",
        Kind::Path,
        "apply this series (directory of format-patch files or mbox)",
    ),
    cli::switch(
        "no-series",
        "test the pinned release without the project's series",
    ),
];

pub const BUILD_FLAGS: &[Flag] = &[
    cli::value(
        "target",
        "T",
        Kind::Text,
        "build qemu-system-T (default x86_64)",
    ),
    cli::repeated(
        "configure-arg",
        "ARG",
        Kind::Passed,
        "pass ARG to configure (repeatable)",
    ),
    cli::repeated(
        "sanitize",
        "LIST",
        Kind::Text,
        "build with sanitizers: address,undefined",
    ),
];

impl SourceArgs {
    /// The pinned release from the first source that works.
    pub fn pinned(no_series: bool) -> SourceArgs {
        SourceArgs {
            located: None,
            fetch: FetchOptions {
                from: None,
                sha256: None,
            },
            series: None,
            no_series,
        }
    }

    /// A tree as it is.
    pub fn located(tree: Tree) -> SourceArgs {
        SourceArgs {
            located: Some(tree),
            ..SourceArgs::pinned(false)
        }
    }

    /// Reads the source flags and checks what can be checked before any
    /// work: the tree, the series.
    pub fn from_matches(m: &Matches) -> Result<SourceArgs> {
        let qemu_src = match m.path("qemu-src")? {
            Some(p) => Some(p),
            None => std::env::var_os("QEMU_SRC")
                .filter(|v| !v.is_empty())
                .map(|v| cli::absolute(PathBuf::from(v)))
                .transpose()?,
        };
        let from = m.text("from")?.map(|s| Origin::parse(&s)).transpose()?;
        let sha256 = m.text("sha256")?;
        let series = m.path("series")?;
        let no_series = m.switch("no-series");
        if series.is_some() && no_series {
            bail!("--series and --no-series contradict each other; give one");
        }
        if qemu_src.is_some() && from.is_some() {
            bail!(
                "--from picks where to fetch the pinned release; it has no meaning with --qemu-src"
            );
        }
        let located = qemu_src.as_deref().map(source::locate).transpose()?;
        if let Some(path) = &series {
            series::patch_files(path)?;
        }
        Ok(SourceArgs {
            located,
            fetch: FetchOptions { from, sha256 },
            series,
            no_series,
        })
    }
}

/// Which list of targets --target is checked against while parsing.
pub enum Targets<'a> {
    /// The pinned release's, before it is fetched.
    Pinned,
    Tree(&'a Path),
    /// None yet: the tree changes under the command (a bisect step), and
    /// the build checks each commit's own list.
    AtBuild,
}

impl<'a> Targets<'a> {
    pub fn of(src: &'a SourceArgs) -> Targets<'a> {
        match &src.located {
            Some(tree) => Targets::Tree(&tree.path),
            None => Targets::Pinned,
        }
    }
}

/// Reads the build flags, refusing a target or sanitizer that configure
/// would refuse only after the fetch and the build's preparations.
pub fn build_options(m: &Matches, targets: Targets) -> Result<BuildOptions> {
    let mut opts = BuildOptions::default();
    if let Some(t) = m.text("target")? {
        opts.target = t;
    }
    opts.configure_args = m.texts("configure-arg")?;
    for list in m.texts("sanitize")? {
        opts.sanitize
            .extend(list.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    opts.sanitize.sort();
    opts.sanitize.dedup();
    match targets {
        Targets::Pinned => build::check_options(&opts, None)?,
        Targets::Tree(tree) => build::check_options(&opts, Some(tree))?,
        Targets::AtBuild => build::check_sanitize(&opts)?,
    }
    Ok(opts)
}

/// The tree the build runs on, and how it got there.
pub struct Prepared {
    pub tree: Tree,
    pub series: String,
}

pub fn host_step(steps: &mut Steps, sh: &Shell) -> Result<()> {
    steps.run("host dependencies", || Ok(((), deps::ensure_host(sh)?)))
}

/// Locates or fetches the tree and puts the series in place.
pub fn source_steps(steps: &mut Steps, sh: &Shell, src: &SourceArgs) -> Result<Prepared> {
    let tree = source_step(steps, sh, src)?;
    series_step(steps, sh, src, &tree)
}

/// The located tree as it is, or the pinned release fetched.
pub fn source_step(steps: &mut Steps, sh: &Shell, src: &SourceArgs) -> Result<Tree> {
    steps.run("QEMU source", || {
        let tree = match &src.located {
            Some(tree) => tree.clone(),
            None => source::fetch(sh, &Pin::load()?, &src.fetch)?,
        };
        let summary = format!("{} (version {})", tree.description, tree.version());
        Ok((tree, summary))
    })
}

/// The series on the tree: in a worktree of the fetched release, in a
/// private clone of a located tree; none asked, the tree as it is.
fn series_step(steps: &mut Steps, sh: &Shell, src: &SourceArgs, tree: &Tree) -> Result<Prepared> {
    steps.run("series", || {
        if tree.located {
            let Some(path) = &src.series else {
                return Ok((
                    Prepared {
                        tree: tree.clone(),
                        series: "none".into(),
                    },
                    "none (the located tree is tested as it is)".into(),
                ));
            };
            // The user's tree is never changed: the series goes into a
            // private clone of its HEAD.
            let clone = private_clone(sh, tree)?;
            let (applied, branch, n) = series::apply(sh, &clone, path)?;
            let summary = format!(
                "{n} patches from {} on {branch} in {}",
                path.display(),
                applied.path.display()
            );
            return Ok((
                Prepared {
                    tree: applied,
                    series: path.display().to_string(),
                },
                summary,
            ));
        }
        if src.no_series {
            series::checkout_base(sh, tree)?;
            return Ok((
                Prepared {
                    tree: tree.clone(),
                    series: "none".into(),
                },
                "none (--no-series)".into(),
            ));
        }
        let path = src.series.clone().unwrap_or_else(series::default_series);
        let (applied, branch, n) = series::apply(sh, tree, &path)?;
        let summary = format!(
            "{n} patches from {} on {branch} in {}",
            path.display(),
            applied.path.display()
        );
        Ok((
            Prepared {
                tree: applied,
                series: path.display().to_string(),
            },
            summary,
        ))
    })
}

/// A clone of a located git tree's HEAD in the cache, refreshed to the
/// tree's current HEAD and tagged `base` there.
fn private_clone(sh: &Shell, tree: &Tree) -> Result<Tree> {
    let dir = &tree.path;
    if !vcs::is_repo(sh, dir) {
        bail!(
            "--series on a located tree needs a git repository; {} is not one",
            dir.display()
        );
    }
    let clone = paths::qemu_cache().join("src").join(format!(
        "clone-{}",
        paths::key(&[dir.as_os_str().as_encoded_bytes()])
    ));
    if !clone.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&clone);
        cmd!(sh, "git clone --quiet --shared --no-checkout {dir} {clone}")
            .quiet()
            .run()
            .with_context(|| format!("cloning {} into {}", dir.display(), clone.display()))?;
    }
    let head = vcs::head(sh, dir)?;
    cmd!(sh, "git -C {clone} fetch --quiet origin {head}")
        .quiet()
        .run()?;
    let base = vcs::BASE;
    cmd!(sh, "git -C {clone} tag --force {base} {head}")
        .quiet()
        .ignore_stdout()
        .run()?;
    if !vcs::status(sh, dir)?.is_empty() {
        eprintln!(
            "    note: uncommitted changes in {} are not in the series build",
            dir.display()
        );
    }
    let description = format!(
        "clone of {} at {}",
        dir.display(),
        &head[..12.min(head.len())]
    );
    Ok(Tree {
        path: clone,
        located: false,
        description,
    })
}

/// Wires the tree; for a located tree the returned guard unwires it again.
pub fn wire_step(steps: &mut Steps, tree: &Tree, qmp_tests: &Path) -> Result<Option<WireGuard>> {
    steps.run("meson wiring", || {
        let wired = meson::wire(&tree.path, qmp_tests, true)?;
        // Every run unwires at the end, so the tree is left as it was found,
        // and the kept modification times make that cost nothing at build
        // time.
        let guard = match &wired {
            Wired::Added(_) => Some(WireGuard::new(&tree.path)),
            _ => None,
        };
        let summary = match wired {
            Wired::Added(p) => format!(
                "monitor_hotplug added to {} until the run ends",
                p.display()
            ),
            Wired::Already(p) => format!("monitor_hotplug already in {}", p.display()),
            Wired::NoFunctionalTests => {
                "this tree has no functional-test list (QEMU before 9.2): not wired".into()
            }
        };
        Ok((guard, summary))
    })
}

/// Runs the suite, with the facts of the run qmp-tests cannot find itself
/// in its report (it records the binary and its version).
pub fn suite_step(
    steps: &mut Steps,
    qmp_tests: &Path,
    built: &Built,
    facts: &RunFacts,
    opts: &SuiteOptions,
) -> Result<Outcome> {
    let mut properties = vec![
        (
            "qemu_tree".to_owned(),
            facts.tree.path.display().to_string(),
        ),
        ("qemu_source".to_owned(), facts.tree.description.clone()),
        ("series".to_owned(), facts.series.clone()),
        ("configure".to_owned(), built.configure[1..].join(" ")),
    ];
    if let Some(commit) = &facts.commit {
        properties.push(("qemu_commit".to_owned(), commit.clone()));
    }
    // The tree's python/ holds qemu.qmp, which one scenario drives with
    // the Python the build was configured with. A tree without it (an old
    // QEMU, a trimmed copy) has that scenario reported skipped.
    let has_client = facts.tree.path.join("python/qemu/qmp").is_dir();
    let opts = SuiteOptions {
        qemu_src: has_client.then(|| facts.tree.path.clone()),
        python: has_client.then(|| built.python.clone()),
        ..opts.clone()
    };
    steps.run("suite", || {
        eprintln!("==> qmp-tests against {}", built.binary.display());
        let outcome = suite::run(qmp_tests, &built.binary, &opts, &properties, false)?;
        let summary = match outcome {
            Outcome::Passed => "every scenario passed",
            Outcome::Failed => "a scenario failed",
            Outcome::Unsupported => "this QEMU has no monitor-add",
        };
        Ok((outcome, summary.to_owned()))
    })
}

/// What a run's report says about the tree it tested.
pub struct RunFacts {
    pub tree: Tree,
    pub series: String,
    /// The checked-out commit, read before wiring changed the tree.
    pub commit: Option<String>,
}

pub fn build_step(
    steps: &mut Steps,
    sh: &Shell,
    tree: &Tree,
    opts: &BuildOptions,
) -> Result<Built> {
    let (python, _) = steps.run("python venv (meson)", || {
        let (python, summary) = deps::ensure_python(sh, &tree.path)?;
        Ok(((python, ()), summary))
    })?;
    steps.run("build", || build::build(sh, &tree.path, &python, opts))
}
