//! Configuring and building qemu-system-TARGET (or qemu-storage-daemon)
//! out of tree.
//!
//! One build directory per (tree, target, options): configure runs once,
//! after that ninja alone decides what is stale (it re-runs meson itself
//! when a meson file changes), so an unchanged tree builds as a no-op.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use qmp_tests::program::Program;
use qmp_tests::text::tail_lines;
use xshell::{cmd, Shell};

use crate::{ccache, interrupt, paths};

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub target: String,
    pub configure_args: Vec<String>,
    /// Sanitizers, as given to --sanitize: `address`, `undefined`.
    pub sanitize: Vec<String>,
    /// Where the build directory goes; the cache itself by default.
    pub build_root: Option<PathBuf>,
    /// qemu-system-TARGET, or qemu-storage-daemon (`target` unused).
    pub program: Program,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            target: "x86_64".to_owned(),
            configure_args: Vec::new(),
            sanitize: Vec::new(),
            build_root: None,
            program: Program::System,
        }
    }
}

impl BuildOptions {
    /// The binary's path in the build directory, as ninja names it.
    pub fn binary_name(&self) -> String {
        match self.program {
            Program::System => format!("qemu-system-{}", self.target),
            Program::StorageDaemon => "storage-daemon/qemu-storage-daemon".to_owned(),
        }
    }

    /// What the build directory's name starts with: the target, or the
    /// program when it has none.
    fn slug(&self) -> &str {
        match self.program {
            Program::System => &self.target,
            Program::StorageDaemon => "storage-daemon",
        }
    }
}

pub struct Built {
    pub binary: PathBuf,
    /// The configure command line, for reports.
    pub configure: Vec<String>,
    /// The Python the build was configured with; it also runs the tree's
    /// own `qemu.qmp` client in the suite.
    pub python: PathBuf,
}

impl Built {
    /// Built with a sanitizer: configure was given one of its flags.
    pub fn sanitized(&self) -> bool {
        let flags = ["address", "undefined"].map(|s| sanitizer_flag(s).ok());
        self.configure.iter().any(|arg| flags.contains(&Some(arg.as_str())))
    }
}

const MARKER: &str = "xtask-configured";

/// The system emulators of the pinned release (its
/// configs/targets/*-softmmu.mak): --target is checked against them before
/// the release is fetched, and against the fetched tree's own list again
/// before configure.
const PINNED_TARGETS: &[&str] = &[
    "aarch64",
    "alpha",
    "arm",
    "avr",
    "hppa",
    "i386",
    "loongarch64",
    "m68k",
    "microblaze",
    "microblazeel",
    "mips",
    "mips64",
    "mips64el",
    "mipsel",
    "or1k",
    "ppc",
    "ppc64",
    "riscv32",
    "riscv64",
    "rx",
    "s390x",
    "sh4",
    "sh4eb",
    "sparc",
    "sparc64",
    "tricore",
    "x86_64",
    "xtensa",
    "xtensaeb",
];

/// Refuses a sanitizer configure would refuse, and a target the tree (or,
/// before it is fetched, the pinned release) has no emulator for.
pub fn check_options(opts: &BuildOptions, tree: Option<&Path>) -> Result<()> {
    check_sanitize(opts)?;
    match tree {
        Some(tree) => check_target(&opts.target, tree),
        None if PINNED_TARGETS.contains(&opts.target.as_str()) => Ok(()),
        None => bail!(
            "--target {}: no such system emulator in the pinned release \
             (the xtask's copy of its list, checked again against the tree once fetched); \
             pick one of: {}",
            opts.target,
            PINNED_TARGETS.join(" ")
        ),
    }
}

pub fn check_sanitize(opts: &BuildOptions) -> Result<()> {
    opts.sanitize.iter().try_for_each(|s| sanitizer_flag(s).map(drop))
}

/// configure's flag for a sanitizer given to --sanitize.
fn sanitizer_flag(name: &str) -> Result<&'static str> {
    match name {
        "address" => Ok("--enable-asan"),
        "undefined" => Ok("--enable-ubsan"),
        other => bail!("--sanitize takes address and/or undefined, not `{other}`"),
    }
}

/// Refuses a target the tree has no configs/targets/TARGET-softmmu.mak
/// for: configure would refuse it too, after its slow preparations.
pub fn check_target(target: &str, tree: &Path) -> Result<()> {
    let dir = tree.join("configs/targets");
    // A tree without the directory predates it (or is a stand-in):
    // configure is its only judge.
    if !dir.is_dir() {
        return Ok(());
    }
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing the targets in {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix("-softmmu.mak")?.to_owned())
        })
        .collect();
    if known.iter().any(|t| t == target) {
        return Ok(());
    }
    known.sort();
    bail!(
        "--target {target}: no such system emulator in {}; pick one of: {}",
        tree.display(),
        known.join(" ")
    )
}

/// The configure arguments for a tree and options, python excepted.
pub fn configure_args(tree: &Path, opts: &BuildOptions) -> Result<Vec<String>> {
    // What the suite and the functional-test wrapper need and no more:
    // `-machine none`, chardevs and the monitor are core code. Optional
    // libraries (slirp, vnc, gnutls, KVM, ...) and debug info cost about a
    // quarter of a cold build; `--configure-arg` turns any of it back on.
    let mut args = match opts.program {
        Program::System => vec![
            format!("--target-list={}-softmmu", opts.target),
            "--without-default-devices".to_owned(),
        ],
        // No emulator at all: the daemon is one of the tools, which
        // --without-default-features turns off.
        Program::StorageDaemon => vec![
            "--disable-system".to_owned(),
            "--disable-user".to_owned(),
            "--enable-tools".to_owned(),
        ],
    };
    args.extend(["--without-default-features".to_owned(), "--disable-docs".to_owned()]);
    // A sanitizer's report needs file and line.
    if opts.sanitize.is_empty() {
        args.push("--disable-debug-info".to_owned());
    }
    // Debian's repacked source drops the firmware blobs that meson would
    // otherwise insist on installing.
    if !tree.join("pc-bios/bios-256k.bin").exists() {
        args.push("--disable-install-blobs".to_owned());
    }
    for s in &opts.sanitize {
        args.push(sanitizer_flag(s)?.to_owned());
    }
    if ccache::wanted(&opts.configure_args) {
        args.extend(ccache::configure_args());
    }
    args.extend(opts.configure_args.iter().cloned());
    Ok(args)
}

pub fn build_dir(tree: &Path, opts: &BuildOptions, args: &[String]) -> PathBuf {
    let mut refs = vec![tree.as_os_str().as_encoded_bytes()];
    refs.extend(args.iter().map(|a| a.as_bytes()));
    let san = if opts.sanitize.is_empty() {
        String::new()
    } else {
        format!("-{}", opts.sanitize.join("-"))
    };
    let root = opts.build_root.clone().unwrap_or_else(paths::qemu_cache);
    root.join(format!("build-{}{san}-{}", opts.slug(), paths::key(&refs)))
}

/// Configures when needed, then builds the one binary. Returns what was
/// built and the step's summary.
pub fn build(
    sh: &Shell,
    tree: &Path,
    python: &Path,
    opts: &BuildOptions,
) -> Result<(Built, String)> {
    // The tree may differ from the one checked while parsing (the fetched
    // release, a bisect step's commit).
    if opts.program == Program::System {
        check_target(&opts.target, tree)?;
    }
    let args = configure_args(tree, opts)?;
    let dir = build_dir(tree, opts, &args);
    let mut configure = vec![
        tree.join("configure").display().to_string(),
        format!("--python={}", python.display()),
    ];
    configure.extend(args);
    let mut summary = Vec::new();
    if !dir.join(MARKER).exists() {
        run_configure(sh, &dir, &configure)?;
        summary.push("configured".to_owned());
    }
    let name = opts.binary_name();
    let cached = ccache::wanted(&opts.configure_args);
    let before = cached.then(|| ccache::Counters::read(sh)).flatten();
    let steps = run_ninja(sh, &dir, &name)?;
    summary.push(match steps {
        0 => format!("{name} up to date"),
        n => format!("{name} built ({n} steps)"),
    });
    let after = before.and_then(|_| ccache::Counters::read(sh));
    if let (Some(before), Some(after)) = (before, after) {
        summary.push(before.summary(after));
    }
    let binary = dir.join(&name);
    if !binary.exists() {
        bail!("ninja finished but {} does not exist", binary.display());
    }
    summary.push(format!("in {}", dir.display()));
    let built = Built { binary, configure, python: python.to_path_buf() };
    Ok((built, summary.join(", ")))
}

fn run_configure(sh: &Shell, dir: &Path, configure: &[String]) -> Result<()> {
    // A directory without the marker is a configure that did not finish.
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("xtask-configure.log");
    let (program, args) = configure.split_first().unwrap();
    let _cd = sh.push_dir(dir);
    let mut command: std::process::Command = cmd!(sh, "{program} {args...}").into();
    ccache::environment(&mut command);
    let out = interrupt::output(command, "configure")?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;
    if !out.status.success() {
        crate::interrupt::check()?;
        bail!(
            "configure failed in {}:\n{}\n  full log: {}",
            dir.display(),
            tail_lines(&text, 30),
            log.display()
        );
    }
    std::fs::write(dir.join(MARKER), configure.join("\n"))?;
    Ok(())
}

/// Builds with fewer steps take seconds, and each of a mutants run's or a
/// bisect's rebuilds would otherwise log ten lines of progress.
const LOGGED_PROGRESS: usize = 100;

/// Runs ninja with progress on one line (a terminal) or, for a long build,
/// one line per 10% (a log), keeping the whole output in a file. Returns
/// how many build steps ran.
fn run_ninja(sh: &Shell, dir: &Path, target: &str) -> Result<usize> {
    let log_path = dir.join("xtask-build.log");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let (reader, writer) = std::io::pipe().context("creating a pipe for ninja's output")?;
    let mut command: std::process::Command = cmd!(sh, "ninja -C {dir} {target}").into();
    ccache::environment(&mut command);
    command.stdout(writer.try_clone()?).stderr(writer);
    let mut ninja = interrupt::spawn(&mut command, "ninja")?;
    // The command still holds the pipe's write ends; drop them so the read
    // below ends when ninja does.
    drop(command);
    let terminal = std::io::stderr().is_terminal();
    let mut steps = 0;
    let mut last_decile = 0;
    let mut output = String::new();
    for line in BufReader::new(reader).lines() {
        let line = line.context("reading ninja's output")?;
        writeln!(log, "{line}")?;
        output.push_str(&line);
        output.push('\n');
        let Some((done, total)) = progress(&line) else {
            continue;
        };
        steps = done;
        if terminal {
            eprint!("\r    [{done}/{total}] building {target}\x1b[K");
        } else if total >= LOGGED_PROGRESS && done * 10 / total > last_decile {
            last_decile = done * 10 / total;
            eprintln!("    build {}% ({done}/{total})", last_decile * 10);
        }
    }
    if terminal && steps > 0 {
        eprint!("\r\x1b[K");
    }
    let status = ninja.child.wait().context("waiting for ninja")?;
    if !status.success() {
        crate::interrupt::check()?;
        let failed = output.find("FAILED: ").map_or(output.as_str(), |i| &output[i..]);
        bail!(
            "building {target} failed:\n{}\n  full log: {}",
            tail_lines(failed, 30),
            log_path.display()
        );
    }
    Ok(steps)
}

/// `[12/345] Compiling ...` -> (12, 345).
pub fn progress(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix('[')?;
    let (counts, _) = rest.split_once(']')?;
    let (done, total) = counts.split_once('/')?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_checked_against_the_trees_own_list() {
        let dir = tempfile::tempdir().unwrap();
        // No list: configure judges (an old tree, a stand-in).
        check_target("aarch64", dir.path()).unwrap();
        let configs = dir.path().join("configs/targets");
        std::fs::create_dir_all(&configs).unwrap();
        std::fs::write(configs.join("x86_64-softmmu.mak"), "").unwrap();
        std::fs::write(configs.join("aarch64-linux-user.mak"), "").unwrap();
        check_target("x86_64", dir.path()).unwrap();
        let err = check_target("aarch64", dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("pick one of: x86_64"), "{err}");
        let opts = BuildOptions { target: "nonsense".into(), ..BuildOptions::default() };
        let err = check_options(&opts, None).unwrap_err().to_string();
        assert!(err.contains("the pinned release (the xtask's copy"), "{err}");
    }

    #[test]
    fn configure_asks_for_what_the_suite_needs_and_lets_the_user_add() {
        let tree = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            configure_args: vec!["--enable-debug-info".into()],
            ..BuildOptions::default()
        };
        let args = configure_args(tree.path(), &opts).unwrap();
        assert!(args.contains(&"--without-default-features".to_owned()));
        // The user's own come last, so configure takes them over ours.
        let ours = args.iter().position(|a| a == "--disable-debug-info").unwrap();
        let theirs = args.iter().position(|a| a == "--enable-debug-info").unwrap();
        assert!(ours < theirs, "{args:?}");
        let asan = BuildOptions { sanitize: vec!["address".into()], ..BuildOptions::default() };
        let args = configure_args(tree.path(), &asan).unwrap();
        assert!(!args.contains(&"--disable-debug-info".to_owned()), "{args:?}");
        assert!(args.contains(&"--enable-asan".to_owned()));
        let built = |configure| Built { binary: "q".into(), configure, python: "p".into() };
        assert!(built(args).sanitized());
        assert!(!built(configure_args(tree.path(), &opts).unwrap()).sanitized());
    }

    #[test]
    fn the_storage_daemon_has_a_configure_and_build_dir_of_its_own() {
        let tree = tempfile::tempdir().unwrap();
        let system = BuildOptions::default();
        let qsd = BuildOptions { program: Program::StorageDaemon, ..BuildOptions::default() };
        let system_args = configure_args(tree.path(), &system).unwrap();
        let qsd_args = configure_args(tree.path(), &qsd).unwrap();
        assert!(system_args.contains(&"--target-list=x86_64-softmmu".to_owned()));
        assert!(!system_args.iter().any(|a| a.contains("tools")));
        for arg in ["--disable-system", "--enable-tools", "--without-default-features"] {
            assert!(qsd_args.contains(&arg.to_owned()), "{qsd_args:?}");
        }
        let dir = build_dir(tree.path(), &qsd, &qsd_args);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("build-storage-daemon-"), "{name}");
        assert_ne!(dir, build_dir(tree.path(), &system, &system_args));
        assert_eq!(qsd.binary_name(), "storage-daemon/qemu-storage-daemon");
        assert_eq!(system.binary_name(), "qemu-system-x86_64");
    }

    #[test]
    fn parses_ninja_progress() {
        assert_eq!(progress("[12/345] Compiling C object x.o"), Some((12, 345)));
        assert_eq!(progress("ninja: no work to do."), None);
        assert_eq!(progress("[a/b] x"), None);
    }
}
