//! The mutant binaries a run built, kept for the next run.
//!
//! A mutant's binary depends on the series commit the scratch tree was
//! at, the mutant's diff, the build configuration and the program built;
//! the cache keeps each binary under `binaries/KEY/` where KEY hashes
//! exactly those. A later run with the same KEY skips applying and
//! building the mutant and runs the suite on the kept binary: only the
//! build is reused, the verdict is computed afresh every time.
//!
//! The key leaves out which worker built the binary (the scratch tree's
//! path): every worker builds the same commit with the same configure
//! arguments, so any worker may use any entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use qmp_tests::program::Program;

use super::Mutant;
use crate::build::{self, BuildOptions};
use crate::paths;

/// What a mutant's binary is built from, beside its diff.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The series commit the scratch trees are at.
    pub commit: String,
    /// The configure command line, tree path left out, and the target.
    pub config: Vec<String>,
}

impl Recipe {
    /// The recipe of `program`'s builds in `tree` (any worker's) with
    /// `python` and `opts`.
    pub fn new(
        commit: &str,
        tree: &Path,
        python: &Path,
        opts: &BuildOptions,
        program: Program,
    ) -> Result<Recipe> {
        let opts = BuildOptions { program, ..opts.clone() };
        let mut config = build::configure_args(tree, &opts)?;
        config.push(format!("--python={}", python.display()));
        config.push(opts.sanitize.join(","));
        config.push(opts.binary_name());
        Ok(Recipe { commit: commit.to_owned(), config })
    }

    /// The key of the binary built from this recipe with `diff` applied.
    pub fn key(&self, diff: &[u8], program: Program) -> String {
        let mut parts: Vec<&[u8]> =
            vec![b"mutant-binary", self.commit.as_bytes(), diff, program.name().as_bytes()];
        parts.extend(self.config.iter().map(|arg| arg.as_bytes()));
        paths::key(&parts)
    }
}

/// The kept binaries: `DIR/KEY/NAME`.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache every worker shares, beside worker 0's scratch tree.
    pub fn shared() -> Cache {
        Cache::at(paths::qemu_cache().join("mutants").join("binaries"))
    }

    pub fn at(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binary kept under `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<PathBuf> {
        let entry = self.dir.join(key);
        let binary = std::fs::read_dir(&entry).ok()?.flatten().next()?.path();
        binary.is_file().then_some(binary)
    }

    /// Keeps a copy of `binary` under `key` and returns the copy's path.
    /// The entry appears whole or not at all: it is filled under a
    /// temporary name and renamed into place.
    pub fn put(&self, key: &str, binary: &Path) -> Result<PathBuf> {
        let name = binary
            .file_name()
            .with_context(|| format!("the binary {} has no file name", binary.display()))?;
        let entry = self.dir.join(key);
        let partial = self.dir.join(format!(".{key}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        // A copy, not a hard link: the build directory's binary is
        // relinked by the next mutant's build, and a linker that wrote
        // in place would change the kept one under us.
        std::fs::copy(binary, partial.join(name)).with_context(|| {
            format!("copying the mutant binary {} into {}", binary.display(), partial.display())
        })?;
        let _ = std::fs::remove_dir_all(&entry);
        std::fs::rename(&partial, &entry)
            .with_context(|| format!("moving {} to {}", partial.display(), entry.display()))?;
        Ok(entry.join(name))
    }

    /// Drops every entry whose key is not in `keep`, and what an
    /// interrupted `put` left; returns how many entries went.
    pub fn retain(&self, keep: &[String]) -> Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err).with_context(|| format!("listing {}", self.dir.display())),
        };
        let mut dropped = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the stale mutant binary {}", path.display()))?;
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// The cache with the recipes of this run's builds: what a mutant's
/// binary is looked up and kept under.
pub struct Kept {
    pub cache: Cache,
    system: Recipe,
    daemon: Recipe,
    /// Mutants served from the cache, and built and kept, this run.
    pub reused: AtomicUsize,
    pub built: AtomicUsize,
}

impl Kept {
    /// The shared cache, for builds of `commit` in a scratch tree like
    /// `tree` with `python` and `opts`.
    pub fn new(commit: &str, tree: &Path, python: &Path, opts: &BuildOptions) -> Result<Kept> {
        let recipe = |program| Recipe::new(commit, tree, python, opts, program);
        Ok(Kept {
            cache: Cache::shared(),
            system: recipe(Program::System)?,
            daemon: recipe(Program::StorageDaemon)?,
            reused: AtomicUsize::new(0),
            built: AtomicUsize::new(0),
        })
    }

    /// The key of `mutant`'s binary: its diff file's bytes as they are now.
    pub fn key(&self, mutant: &Mutant) -> Result<String> {
        let diff = std::fs::read(&mutant.path)
            .with_context(|| format!("reading the mutant {}", mutant.path.display()))?;
        let recipe = match mutant.program {
            Program::System => &self.system,
            Program::StorageDaemon => &self.daemon,
        };
        Ok(recipe.key(&diff, mutant.program))
    }

    /// Drops the binaries no mutant of `catalogue` has a key for (a diff
    /// rewritten, a mutant removed, the series or the configuration
    /// changed); returns how many went.
    pub fn prune(&self, catalogue: &[Mutant]) -> Result<usize> {
        let keep = catalogue.iter().map(|mutant| self.key(mutant)).collect::<Result<Vec<_>>>()?;
        self.cache.retain(&keep)
    }

    /// One line on what this run reused, built and dropped.
    pub fn summary(&self, dropped: usize) -> String {
        format!(
            "mutant binaries: {} reused, {} built and kept, {dropped} stale dropped ({})",
            self.reused.load(Ordering::Relaxed),
            self.built.load(Ordering::Relaxed),
            self.cache.dir().display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            commit: "0123456789abcdef".to_owned(),
            config: vec!["--target-list=x86_64-softmmu".to_owned()],
        }
    }

    #[test]
    fn the_key_changes_with_each_input() {
        let base = recipe();
        let key = base.key(b"diff a", Program::System);
        assert_eq!(key, base.key(b"diff a", Program::System), "stable");
        assert_ne!(key, base.key(b"diff b", Program::System), "diff");
        assert_ne!(key, base.key(b"diff a", Program::StorageDaemon), "program");
        let commit = Recipe { commit: "fedcba9876543210".to_owned(), ..recipe() };
        assert_ne!(key, commit.key(b"diff a", Program::System), "commit");
        let config =
            Recipe { config: vec!["--target-list=aarch64-softmmu".to_owned()], ..recipe() };
        assert_ne!(key, config.key(b"diff a", Program::System), "config");
    }

    #[test]
    fn the_recipe_leaves_out_the_workers_tree_but_not_the_configuration() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let python = Path::new("/usr/bin/python3");
        let opts = BuildOptions::default();
        let at = |tree: &Path, opts: &BuildOptions, program| {
            Recipe::new("c0ffee", tree, python, opts, program).unwrap()
        };
        let a = at(one.path(), &opts, Program::System);
        let b = at(two.path(), &opts, Program::System);
        assert_eq!(a.key(b"d", Program::System), b.key(b"d", Program::System));
        let asan = BuildOptions { sanitize: vec!["address".to_owned()], ..BuildOptions::default() };
        let c = at(one.path(), &asan, Program::System);
        assert_ne!(a.key(b"d", Program::System), c.key(b"d", Program::System));
        let qsd = at(one.path(), &opts, Program::StorageDaemon);
        assert_ne!(a.config, qsd.config);
    }

    #[test]
    fn entries_are_kept_found_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("binaries"));
        assert_eq!(cache.get("k1"), None);
        assert_eq!(cache.retain(&[]).unwrap(), 0, "no directory yet");
        let built = dir.path().join("qemu-system-x86_64");
        std::fs::write(&built, b"binary one").unwrap();
        let kept = cache.put("k1", &built).unwrap();
        std::fs::write(&built, b"relinked").unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), b"binary one");
        assert_eq!(cache.get("k1"), Some(kept));
        cache.put("k2", &built).unwrap();
        std::fs::create_dir_all(cache.dir().join(".k3.partial-1")).unwrap();
        assert_eq!(cache.retain(&["k2".to_owned()]).unwrap(), 2);
        assert_eq!(cache.get("k1"), None);
        assert!(cache.get("k2").is_some());
    }
}
