//! Facts README and docs/ state that the repository itself knows, and
//! what README must stay: short, with the first things a newcomer needs
//! near its top. Checked here so that the text cannot go stale unnoticed.

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
    assert!(readme().contains(&stated), "README's introduction should say {stated}");
    let series = doc("docs/series.md");
    assert!(
        series.contains(&format!("({version}, {count} patches)")),
        "docs/series.md should say {stated}"
    );
}

fn doc(path: &str) -> String {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn readme_lines() -> Vec<String> {
    std::fs::read_to_string(root().join("README.md")).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn the_readme_is_short_and_starts_with_what_a_newcomer_needs() {
    let lines = readme_lines();
    assert!(lines.len() <= 250, "README has {} lines", lines.len());
    let long: Vec<&String> = lines.iter().filter(|l| l.chars().count() > 120).collect();
    assert!(long.is_empty(), "README lines over 120 characters: {long:?}");
    let top = lines[..100.min(lines.len())].join("\n");
    for needed in [
        "cargo xtask test --qemu-src",
        "--series",
        "## Reading a failure",
        "target/qmp-tests/junit.xml",
        "<failure",
    ] {
        assert!(top.contains(needed), "README's first 100 lines should have `{needed}`");
    }
}

#[test]
fn the_readme_names_the_rust_version_cargo_toml_declares() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.toml declares rust-version");
    assert!(
        readme().contains(&format!("Rust {version} or later")),
        "README should say Rust {version} or later"
    );
}

#[test]
fn every_page_the_readme_and_docs_link_to_exists() {
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        pages.push(entry.path());
    }
    let mut missing = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let dir = page.parent().unwrap();
        for link in text.split("](").skip(1) {
            let target = link.split([')', '#']).next().unwrap_or_default();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            if !dir.join(target).exists() {
                missing.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(missing.is_empty(), "links to nothing: {missing:?}");
}
