//! Facts README states that the repository itself knows: checked here so
//! that the text cannot go stale unnoticed.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README's words with every run of whitespace made one space.
fn readme() -> String {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_series_version_and_patch_count_are_the_cover_letters() {
    let dir = root().join("patches/monitor-hotplug");
    let cover = std::fs::read_to_string(dir.join("0000-cover-letter.patch")).unwrap();
    let subject = cover
        .lines()
        .find_map(|l| l.strip_prefix("Subject: [PATCH "))
        .expect("the cover letter has a [PATCH vN 00/M] subject");
    // "v4 00/16] monitor: ..."
    let (version, rest) = subject.split_once(' ').unwrap();
    let count: usize = rest
        .strip_prefix("00/")
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .expect("00/M in the subject");
    let patches = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".patch") && !name.starts_with("0000-")
        })
        .count();
    assert_eq!(patches, count, "the cover letter announces {count} patches");
    let stated = format!("({version}, {count} patches)");
    assert!(
        readme().contains(&stated),
        "README's QEMU series section should say {stated}"
    );
}
