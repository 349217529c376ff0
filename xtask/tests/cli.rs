//! Bad input and faults, through the real `xtask` binary.
//!
//! Most tests use a small stand-in QEMU tree: real git, real ninja and a
//! configure script that writes a build.ninja whose one rule is chosen by
//! the test (copy a real QEMU binary, fail, or block until interrupted).
//! Each test works in a private cache (XTASK_QEMU_CACHE).

mod common;

use std::path::Path;

use common::*;

#[test]
fn nonexistent_qemu_src_is_refused_before_anything_runs() {
    let fx = fixture(false);
    let missing = fx.tree.join("nope");
    let (code, err) =
        run(xtask(&fx, &["test", "--qemu-src", missing.to_str().unwrap()]).arg("--no-series"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such directory"), "{err}");
    assert!(!err.contains("host dependencies"), "checked before any step: {err}");
}

#[test]
fn a_directory_that_is_not_qemu_is_refused() {
    let fx = fixture(false);
    let not_qemu = fx.tree.join("qapi");
    let (code, err) = run(&mut xtask(&fx, &["build", "--qemu-src", not_qemu.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a QEMU source tree (missing VERSION"), "{err}");
}

#[test]
fn qemu_src_from_the_environment() {
    let fx = fixture(false);
    let (code, err) = run(xtask(&fx, &["unwire"]).env("QEMU_SRC", &fx.tree));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("nothing is wired in {}", fx.tree.canonicalize().unwrap().display())),
        "{err}"
    );
}

#[test]
fn meson_file_without_the_list_is_left_untouched() {
    let fx = fixture(false);
    let list = fx.tree.join("tests/functional/generic/meson.build");
    let text = "tests_generic_bsduser = [\n]\n";
    write(&list, text);
    let (code, err) = run(&mut xtask(&fx, &["wire", "--qemu-src", fx.tree.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&list.canonicalize().unwrap().display().to_string()),
        "names the file: {err}"
    );
    assert_eq!(std::fs::read_to_string(&list).unwrap(), text);
    assert!(!fx.tree.join("tests/functional/generic/test_monitor_hotplug.py").exists());
}

#[test]
fn wiring_twice_changes_nothing_and_unwire_restores_bytes() {
    let fx = fixture(false);
    let list = fx.tree.join("tests/functional/generic/meson.build");
    let test = fx.tree.join("tests/functional/generic/test_monitor_hotplug.py");
    let src = fx.tree.to_str().unwrap();
    let (code, err) = run(&mut xtask(&fx, &["wire", "--qemu-src", src]));
    assert_eq!(code, 0, "{err}");
    let wired = std::fs::read_to_string(&list).unwrap();
    assert!(wired.contains("  'info_usernet',\n  'monitor_hotplug',\n  'version',\n"), "{wired}");
    let script = std::fs::read_to_string(&test).unwrap();
    assert!(script.contains("QEMU_TEST_QEMU_BINARY"), "{script}");

    let (code, err) = run(&mut xtask(&fx, &["wire", "--qemu-src", src]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("already"), "{err}");
    assert_eq!(std::fs::read_to_string(&list).unwrap(), wired);

    let (code, err) = run(&mut xtask(&fx, &["unwire", "--qemu-src", src]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&list).unwrap(), LIST);
    assert!(!test.exists());

    let (code, err) = run(&mut xtask(&fx, &["unwire", "--qemu-src", src]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing is wired"), "{err}");
}

#[test]
fn unwire_refuses_to_clobber_a_file_edited_since_wiring() {
    let fx = fixture(false);
    let list = fx.tree.join("tests/functional/generic/meson.build");
    let src = fx.tree.to_str().unwrap();
    assert_eq!(run(&mut xtask(&fx, &["wire", "--qemu-src", src])).0, 0);
    let edited = std::fs::read_to_string(&list).unwrap() + "# the user's edit\n";
    write(&list, &edited);
    let (code, err) = run(&mut xtask(&fx, &["unwire", "--qemu-src", src]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since it was wired"), "{err}");
    assert_eq!(std::fs::read_to_string(&list).unwrap(), edited);
}

#[test]
fn a_series_that_does_not_apply_names_patch_and_file_and_restores() {
    let fx = fixture(true);
    let series = fx.cache.parent().unwrap().join("series");
    write(&series.join("0001-monitor-change.patch"), STALE);
    let before = status(&fx.tree);
    let head = git(&fx.tree, &["rev-parse", "HEAD"]);
    let (code, err) = run(xtask(&fx, &["fetch", "--qemu-src", fx.tree.to_str().unwrap()])
        .arg("--series")
        .arg(&series));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("patch 0001 monitor: change fails on VERSION"), "{err}");
    assert!(err.contains("git am --abort"), "{err}");
    assert_eq!(status(&fx.tree), before);
    assert_eq!(git(&fx.tree, &["rev-parse", "HEAD"]), head);
    // The series went into a worktree of a private clone; both are gone
    // again, and the clone keeps no branch of the attempt.
    let left: Vec<_> = std::fs::read_dir(fx.cache.join("src")).unwrap().flatten().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let clone = left[0].path();
    assert!(clone.file_name().unwrap().to_str().unwrap().starts_with("clone-"));
    assert_eq!(git(&clone, &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
    assert_eq!(git(&clone, &["branch", "--list", "series-*"]), "");
}

#[test]
fn a_build_failure_is_reported_and_the_tree_left_clean() {
    let fx = fixture(true);
    let before = status(&fx.tree);
    let (code, err) = run(xtask(&fx, &["test", "--qemu-src", fx.tree.to_str().unwrap()])
        .env("FAKE_BUILD", "echo 'fatal error: deliberate.h: No such file' >&2; exit 1"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("building qemu-system-x86_64 failed"), "{err}");
    assert!(err.contains("deliberate.h"), "quotes the failing command: {err}");
    assert!(err.contains("full log: "), "{err}");
    assert_eq!(status(&fx.tree), before, "{err}");
}

#[test]
#[ignore = "needs QEMU's build dependencies and a stock QEMU (QMP_TESTS_QEMU): run by cargo xtask ci"]
fn a_located_tree_is_left_clean_after_a_run() {
    let qemu = std::env::var("QMP_TESTS_QEMU").expect("set QMP_TESTS_QEMU to a qemu-system-x86_64");
    assert!(
        std::env::var_os("QMP_TESTS_BIN").is_some(),
        "set QMP_TESTS_BIN to the qmp-tests binary"
    );
    let fx = fixture(true);
    let before = status(&fx.tree);
    let junit = fx.cache.join("junit.xml");
    let (code, err) = run(xtask(&fx, &["test", "--qemu-src", fx.tree.to_str().unwrap()])
        .arg("--junit")
        .arg(&junit)
        .env("FAKE_BUILD", format!("cp {qemu} qemu-system-x86_64")));
    assert_eq!(code, 1, "a stock QEMU fails every scenario: {err}");
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(report.contains("has no monitor-add"), "{report}");
    assert_eq!(status(&fx.tree), before, "{err}");
}

#[test]
fn an_interrupted_fetch_leaves_nothing_that_is_used_next_time() {
    let fx = fixture(false);
    let (pin, sha) = tarball_pin(&fx);
    // What a fetch killed half-way leaves: a staging directory of a
    // process that no longer exists, holding half a tree.
    let stale = fx.cache.join("src/.partial-4194303-abc/tree");
    write(&stale.join("VERSION"), "half\n");

    let (code, err) =
        run(xtask(&fx, &["fetch", "--from", "tarball", "--no-series", "--sha256", "00"])
            .env("XTASK_QEMU_PIN", &pin));
    assert_eq!(code, 2, "a wrong checksum fails: {err}");
    assert!(err.contains("expected 00"), "{err}");
    assert!(!fx.cache.join("src/qemu-10.2.50-tarball").exists(), "nothing half-fetched is kept");

    let (code, err) =
        run(xtask(&fx, &["fetch", "--from", "tarball", "--no-series", "--sha256", &sha])
            .env("XTASK_QEMU_PIN", &pin));
    assert_eq!(code, 0, "{err}");
    let tree = fx.cache.join("src/qemu-10.2.50-tarball");
    assert_eq!(std::fs::read_to_string(tree.join("VERSION")).unwrap(), "10.2.50\n");
    assert!(!fx.cache.join("src/.partial-4194303-abc").exists(), "stale staging removed");
    assert_eq!(git(&tree, &["rev-list", "--count", "base"]).trim(), "1");
    assert_eq!(status(&tree), "");

    // Reused offline: the tarball is gone, the cached tree is enough.
    std::fs::remove_dir_all(pin.parent().unwrap().join("qemu-10.2.50.tar.xz")).ok();
    let (code, err) =
        run(xtask(&fx, &["fetch", "--from", "tarball", "--no-series"]).env("XTASK_QEMU_PIN", &pin));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cached"), "{err}");
}

#[test]
fn all_sources_failing_lists_each() {
    let fx = fixture(false);
    let pin = fx.cache.parent().unwrap().join("pin.json");
    let json = serde_json::json!({
        "version": "10.2.50",
        "sources": {
            "git": {"url": format!("file://{}/missing.git", fx.tree.display()), "tag": "v10.2.50"},
            "tarball": {"url": "file:///nonexistent/qemu.tar.xz", "sha256": null}
        }
    });
    write(&pin, &json.to_string());
    let (code, err) = run(xtask(&fx, &["fetch", "--no-series"]).env("XTASK_QEMU_PIN", &pin));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("could not fetch QEMU 10.2.50 from any source"), "{err}");
    assert!(err.contains("  debian: qemu-pin.json has no sources.debian.package"), "{err}");
    assert!(err.contains("  git: cloning file://"), "{err}");
    assert!(err.contains("  tarball: no sha256 to verify"), "{err}");
}

#[test]
fn bisect_refuses_a_tree_that_is_not_a_git_repository() {
    let fx = fixture(false);
    let (code, err) = run(&mut xtask(
        &fx,
        &["bisect", "--qemu-src", fx.tree.to_str().unwrap(), "--good", "a", "--bad", "b"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not the top of a git repository"), "{err}");
}

#[test]
fn bisect_refuses_a_dirty_tree_naming_the_files_and_touches_nothing() {
    let fx = fixture(true);
    write(&fx.tree.join("VERSION"), "10.2.51\n");
    write(&fx.tree.join("new-file.c"), "int x;\n");
    let before = status(&fx.tree);
    let head = git(&fx.tree, &["rev-parse", "HEAD"]);
    let (code, err) = run(&mut xtask(
        &fx,
        &["bisect", "--qemu-src", fx.tree.to_str().unwrap(), "--good", "HEAD", "--bad", "HEAD"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("VERSION") && err.contains("new-file.c"), "names the files: {err}");
    assert_eq!(status(&fx.tree), before);
    assert_eq!(git(&fx.tree, &["rev-parse", "HEAD"]), head);
    assert!(!fx.tree.join(".git/BISECT_LOG").exists(), "no bisect was started");
}

#[test]
fn the_command_reference_is_the_help() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/commands.md"))
            .unwrap();
    let fx = fixture(false);
    let commands = [
        "", "test", "fetch", "build", "wire", "unwire", "bisect", "ci", "bench", "mutants",
        "explore", "docs",
    ];
    for command in commands {
        let mut cmd = xtask(&fx, &[]);
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = cmd.arg("--help").output().unwrap();
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            readme.contains(&format!("```\n{help}```\n")),
            "docs/commands.md lacks `cargo xtask {command} --help` as printed (run `cargo xtask docs`):\n{help}"
        );
    }
}

/// Flags of other programs that the xtask's sources and README name: the
/// ones the xtask passes on (configure, git, cargo, curl, apt, pip, meson)
/// and the suite's own. Every other `--flag` they mention must be one the
/// xtask declares, so that no error or paragraph sends a user to a flag
/// that does not exist.
const OTHER_PROGRAMS: &[(&str, &[&str])] = &[
    (
        "configure",
        &[
            "--target-list",
            "--without-default-devices",
            "--disable-docs",
            "--disable-install-blobs",
            "--enable-asan",
            "--enable-ubsan",
            "--enable-debug",
            "--without-default-features",
            "--disable-debug-info",
            "--enable-debug-info",
            "--enable-kvm",
            "--disable-system",
            "--disable-user",
            "--enable-tools",
            "--cc",
            "--cxx",
            "--python",
        ],
    ),
    (
        "git",
        &[
            "--abort",
            "--all",
            "--branch",
            "--depth",
            "--detach",
            "--force",
            "--format",
            "--git-path",
            "--hard",
            "--initial-branch",
            "--is-inside-work-tree",
            "--no-checkout",
            "--no-hardlinks",
            "--no-color",
            "--no-ext-diff",
            "--no-patch",
            "--no-verify",
            "--path-format",
            "--porcelain",
            "--quiet",
            "--reverse",
            "--shared",
            "--short",
            "--show-toplevel",
            "--stable",
            "--untracked-files",
            "--verify",
        ],
    ),
    (
        "cargo",
        &[
            "--all-targets",
            "--bin",
            "--check",
            "--include-ignored",
            "--package",
            "--release",
            "--workspace",
        ],
    ),
    ("curl", &["--fail", "--location", "--output", "--show-error", "--silent"]),
    ("apt-get", &["--download-only", "--no-install-recommends"]),
    ("pip", &["--disable-pip-version-check"]),
    ("meson", &["--no-rebuild", "--print-errorlogs", "--tap"]),
    ("dpkg-source", &["--no-check"]),
    ("pkg-config", &["--exists"]),
    ("ccache", &["--print-stats"]),
    ("qemu-storage-daemon", &["--chardev", "--monitor"]),
    (
        "qmp-tests",
        &[
            "--qemu",
            "--list",
            "--log-dir",
            "--property",
            "--wait",
            "--mutant",
            "--require-route",
            "--qmp-python",
            "--tap",
            "--out",
            "--reruns",
            "--sequences",
            "--fail-fast",
            "--first",
            "--summary",
            "--shrink-time",
            // The old spelling of --chardevs, an alias the help leaves out.
            "--sockets",
        ],
    ),
    ("check-jsonschema", &["--builtin-schema"]),
    ("qemu-system", &["--preconfig"]),
    ("xtask bisect-step (hidden)", &["--qmp-tests"]),
    ("this test's own examples", &["--flag", "--odd", "--git"]),
];

/// `--name` mentions in `text`: a `--` that starts a word.
fn flag_mentions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while let Some(at) = line[i..].find("--") {
            let start = i + at;
            let word_start = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
            let end = start
                + 2
                + line[start + 2..]
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                    .unwrap_or(line.len() - start - 2);
            let name = line[start..end].trim_end_matches('-');
            if word_start && name.len() > 2 && bytes[start + 2].is_ascii_lowercase() {
                out.push((n + 1, name.to_owned()));
            }
            i = end.max(start + 2);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_flag_an_error_or_the_readme_names_exists() {
    let fx = fixture(false);
    let help = |command: &str| {
        let mut cmd = xtask(&fx, &[]);
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = cmd.arg("--help").output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let commands: Vec<String> = help("")
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(commands.len() > 5, "{commands:?}");
    let mut known: Vec<String> = vec!["--help".to_owned()];
    for command in &commands {
        for line in help(command).lines() {
            // Flags are indented by two or six spaces; their help, more.
            let flag = line.strip_prefix("      --").or(line.strip_prefix("  --"));
            if let Some(rest) = flag {
                known.push(format!("--{}", rest.split_whitespace().next().unwrap()));
            }
        }
    }
    known.extend(OTHER_PROGRAMS.iter().flat_map(|(_, flags)| flags.iter().map(|f| f.to_string())));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("../README.md")];
    for entry in std::fs::read_dir(root.join("../docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    rust_files(&root.join("src"), &mut files);
    let mut unknown = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, flag) in flag_mentions(&text) {
            if !known.contains(&flag) {
                unknown.push(format!("{}:{line}: {flag}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags no xtask command declares (add them, fix the text, or list the \
         program they belong to in OTHER_PROGRAMS):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn flag_mentions_are_words_that_start_with_two_dashes() {
    let found = flag_mentions("run `cargo xtask test --no-wire`, a--b, --, --X, ---x\n--jobs=2");
    assert_eq!(found, [(1, "--no-wire".to_owned()), (2, "--jobs".to_owned())]);
}

#[test]
fn every_child_is_started_through_the_one_spawn_path() {
    // xshell's run/read/output and std's spawn/status/output start a child
    // that the signal handler does not know and that outlives a killed
    // xtask; interrupt.rs wraps them (interrupt::Controlled, spawn, run).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("interrupt.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for call in
                [".run()", ".read()", ".output()", ".status()", ".spawn()", ".read_stderr()"]
            {
                if line.contains(call) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "children started outside interrupt.rs:\n{}", found.join("\n"));
}
