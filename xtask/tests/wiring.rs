//! The wiring record: strict, stable, and found again after a run that
//! died while its tree was wired.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const TEST_FILE: &str = "tests/functional/generic/test_monitor_hotplug.py";

fn the_record(fx: &Fixture) -> PathBuf {
    let records: Vec<_> =
        std::fs::read_dir(fx.cache.join("wire")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    records[0].clone()
}

fn list(tree: &Path) -> String {
    std::fs::read_to_string(tree.join("tests/functional/generic/meson.build")).unwrap()
}

#[test]
fn a_record_that_is_not_the_xtasks_fails_and_leaves_the_tree_wired() {
    let fx = fixture(false);
    let (code, err) = run(xtask(&fx, &["wire"]).arg("--qemu-src").arg(&fx.tree));
    assert_eq!(code, 0, "{err}");
    let record = the_record(&fx);
    std::fs::write(&record, "{}").unwrap();
    let (code, err) = run(xtask(&fx, &["unwire"]).arg("--qemu-src").arg(&fx.tree));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not a wiring record the xtask wrote") && err.contains("missing field"),
        "{err}"
    );
    assert!(!err.contains("unwired"), "{err}");
    assert!(list(&fx.tree).contains("'monitor_hotplug'"), "still wired");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "{}", "kept");
}

#[test]
fn the_record_is_found_under_a_fixed_name() {
    // FNV-1a of the tree path: the same name whatever toolchain built the
    // xtask, so `unwire` after a Rust update still finds `wire`'s record.
    let fx = fixture(false);
    assert_eq!(run(xtask(&fx, &["wire"]).arg("--qemu-src").arg(&fx.tree)).0, 0);
    let canonical = fx.tree.canonicalize().unwrap();
    let name = the_record(&fx);
    assert_eq!(
        name.file_name().unwrap().to_str().unwrap(),
        format!("{}.json", fnv_key(canonical.as_os_str().as_encoded_bytes()))
    );
}

/// The xtask's key, written out again so a change to it fails here.
fn fnv_key(part: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in (part.len() as u64).to_le_bytes().iter().chain(part) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

#[test]
fn unwire_without_flags_undoes_what_wire_without_a_tree_wired() {
    // Not a git tree: the release tarball is made of it.
    let fx = fixture(false);
    let (pin, sha) = tarball_pin(&fx);
    let series = fx.cache.parent().unwrap().join("bump.patch");
    write_bytes(&series, BUMP);
    let out = xtask(&fx, &["wire", "--from", "tarball", "--sha256", &sha])
        .arg("--series")
        .arg(&series)
        .env("XTASK_QEMU_PIN", &pin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let worktree = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(worktree.starts_with(fx.cache.join("src")), "{err}");
    assert!(worktree.join(TEST_FILE).exists());

    let (code, err) = run(&mut xtask(&fx, &["unwire"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("unwired {}", worktree.display())), "{err}");
    assert!(!worktree.join(TEST_FILE).exists());
    assert_eq!(list(&worktree), LIST);
    assert_eq!(git(&worktree, &["status", "--porcelain"]), "");
    let (code, err) = run(&mut xtask(&fx, &["unwire"]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing is wired"), "{err}");
}
