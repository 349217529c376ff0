//! What the xtask's integration tests share: a stand-in QEMU tree, the
//! xtask binary in a private cache, git.
//!
//! The stand-in has real git, real ninja and a configure script that writes
//! a build.ninja whose one rule is chosen by the test (copy a real QEMU
//! binary, fail, or block until interrupted).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const LIST: &str = "# SPDX-License-Identifier: GPL-2.0-or-later\n\ntests_generic_system = [\n  'empty_cpu_model',\n  'info_usernet',\n  'version',\n  'vnc',\n]\n\ntests_generic_linuxuser = [\n]\n";

pub const CONFIGURE: &str = r#"#!/bin/sh
# Stand-in for QEMU's configure: one build rule, taken from FAKE_BUILD.
cat > build.ninja <<EOF
rule make
  command = $FAKE_BUILD
build qemu-system-x86_64: make
EOF
"#;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub tree: PathBuf,
    pub cache: PathBuf,
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A stand-in QEMU tree, committed to git when `git_repo`.
pub fn fixture(git_repo: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("qemu");
    write(&tree.join("VERSION"), "10.2.50\n");
    write(&tree.join("meson.build"), "project('qemu')\n");
    write(&tree.join("qapi/qapi-schema.json"), "{}\n");
    write(
        &tree.join("pythondeps.toml"),
        "[meson]\nmeson = { accepted = \">=1.5.0\", installed = \"1.9.0\", canary = \"meson\" }\n",
    );
    write(&tree.join("tests/functional/generic/meson.build"), LIST);
    write(
        &tree.join("tests/functional/meson.build"),
        "subdir('generic')\n",
    );
    write(&tree.join("configure"), CONFIGURE);
    let mut perm = std::fs::metadata(tree.join("configure"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(tree.join("configure"), perm).unwrap();
    if git_repo {
        git(&tree, &["init", "-q"]);
        git(&tree, &["add", "-A"]);
        git(&tree, &["commit", "-q", "-m", "stand-in tree"]);
    }
    let cache = dir.path().join("cache");
    Fixture {
        _dir: dir,
        tree,
        cache,
    }
}

pub fn xtask(fx: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("XTASK_QEMU_CACHE", &fx.cache)
        .env_remove("QEMU_SRC")
        .stdin(Stdio::null());
    if std::env::var_os("QMP_TESTS_BIN").is_none() {
        // Wiring only records this path; the tests that run the suite get
        // the real binary from the project's test command.
        cmd.env("QMP_TESTS_BIN", "/bin/false");
    }
    cmd
}

pub fn run(cmd: &mut Command) -> (i32, String) {
    let Output { status, stderr, .. } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

pub fn status(tree: &Path) -> String {
    git(tree, &["status", "--porcelain", "--untracked-files=all"])
}

pub fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
