//! `cargo xtask unwire`: restores what wiring changed. Reads only the
//! wiring records, so it never fetches or builds anything.

use anyhow::{bail, Result};

use crate::cli::{self, Command, Flag, Kind, Matches};
use crate::{meson, paths, source, wire_record};

const FLAGS: &[Flag] = &[cli::value(
    "qemu-src",
    "PATH",
    Kind::Path,
    "the tree to unwire (also: QEMU_SRC); without it, every\n\
     wired tree in the cache: what `wire` and `test` wire\n\
     without flags",
)];

pub const COMMAND: Command = Command {
    name: "unwire",
    summary: "undo `wire`, restoring the files byte for byte",
    about: "restore what `cargo xtask wire` (or a killed
`cargo xtask test`) changed, byte for byte. A file edited since it was
wired is left alone, and that is an error.",
    groups: &[("", FLAGS)],
    after: "",
};

pub fn run(m: &Matches) -> Result<()> {
    let located = match m.path("qemu-src")? {
        Some(p) => Some(p),
        None => std::env::var_os("QEMU_SRC")
            .filter(|v| !v.is_empty())
            .map(|v| cli::absolute(v.into()))
            .transpose()?,
    };
    let _lock = crate::lock::cache()?;
    if let Some(path) = located {
        let tree = source::locate(&path)?.path;
        if meson::unwire(&tree)? {
            eprintln!("unwired {}", tree.display());
        } else {
            eprintln!("nothing is wired in {}: nothing to do", tree.display());
        }
        return Ok(());
    }
    // The trees `wire` and `test` pick without flags are the cache's own;
    // a tree of the user's is only ever named.
    let cache_src = paths::qemu_cache().join("src");
    let records: Vec<_> = wire_record::all()?
        .into_iter()
        .filter(|(_, r)| r.tree.starts_with(&cache_src))
        .collect();
    if records.is_empty() {
        eprintln!(
            "nothing is wired in the trees of {}: nothing to do",
            cache_src.display()
        );
        return Ok(());
    }
    let mut failed = Vec::new();
    for (state, record) in &records {
        match meson::restore(state, record) {
            Ok(()) => eprintln!("unwired {}", record.tree.display()),
            Err(err) => {
                eprintln!("error: {err:#}");
                failed.push(record.tree.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not unwire {}", failed.join(", "));
    }
    Ok(())
}
