//! Host dependencies of a QEMU build: found, installed, or named.

use std::path::{Path, PathBuf};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::paths;

/// One thing a QEMU build needs from the host, and the Debian package
/// that provides it.
struct Need {
    what: &'static str,
    package: &'static str,
    check: Check,
}

enum Check {
    Program(&'static str),
    PkgConfig(&'static str),
    PythonModules(&'static str),
    /// Debian 12's libfdt-dev ships no pkg-config file; QEMU looks for the
    /// library and header directly, and so does this check.
    Header(&'static str),
}

const NEEDS: &[Need] = &[
    Need { what: "git", package: "git", check: Check::Program("git") },
    Need { what: "ninja", package: "ninja-build", check: Check::Program("ninja") },
    Need { what: "flex", package: "flex", check: Check::Program("flex") },
    Need { what: "bison", package: "bison", check: Check::Program("bison") },
    Need { what: "pkg-config", package: "pkg-config", check: Check::Program("pkg-config") },
    Need { what: "dpkg-source", package: "dpkg-dev", check: Check::Program("dpkg-source") },
    Need { what: "xz", package: "xz-utils", check: Check::Program("xz") },
    Need { what: "python3", package: "python3", check: Check::Program("python3") },
    Need {
        what: "python3 venv",
        package: "python3-venv",
        check: Check::PythonModules("import venv, ensurepip"),
    },
    Need { what: "glib-2.0", package: "libglib2.0-dev", check: Check::PkgConfig("glib-2.0") },
    Need { what: "pixman-1", package: "libpixman-1-dev", check: Check::PkgConfig("pixman-1") },
    Need { what: "libfdt", package: "libfdt-dev", check: Check::Header("libfdt.h") },
    // Not required, but it turns every rebuild after the first into cache
    // hits; installed when we can, never demanded.
    Need { what: "ccache", package: "ccache", check: Check::Program("ccache") },
];

const OPTIONAL: &[&str] = &["ccache"];

fn present(sh: &Shell, need: &Need) -> bool {
    match need.check {
        Check::Program(name) => which::which(name).is_ok(),
        Check::PkgConfig(module) => {
            which::which("pkg-config").is_ok()
                && cmd!(sh, "pkg-config --exists {module}")
                    .quiet()
                    .ignore_stderr()
                    .spawn_run()
                    .is_ok()
        }
        Check::Header(name) => Path::new("/usr/include").join(name).exists(),
        Check::PythonModules(code) => cmd!(sh, "python3 -c {code}")
            .quiet()
            .ignore_stderr()
            .ignore_stdout()
            .spawn_run()
            .is_ok(),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Makes sure the host can build QEMU; returns the step's summary line.
pub fn ensure_host(sh: &Shell) -> Result<String> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !present(sh, n)).collect();
    if missing.is_empty() {
        return Ok("all present".to_owned());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let required: Vec<&str> =
        missing.iter().filter(|n| !OPTIONAL.contains(&n.what)).map(|n| n.what).collect();
    if !is_root() || which::which("apt-get").is_err() {
        if required.is_empty() {
            return Ok("all required present (ccache missing: builds will not be cached)".into());
        }
        bail!(
            "missing build dependencies: {}\n  install them with: sudo apt-get install -y {}",
            required.join(", "),
            packages.join(" ")
        );
    }
    eprintln!("    installing {}", packages.join(" "));
    // The package lists may be missing or stale on a fresh machine.
    cmd!(sh, "apt-get update -qq")
        .quiet()
        .spawn_run()
        .context("running apt-get update to install build dependencies")?;
    let to_install = &packages;
    // dpkg talks even under -qq: its output is shown only on failure.
    let out = cmd!(sh, "apt-get install -y -qq --no-install-recommends {to_install...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .spawn_output()?;
    if !out.status.success() {
        bail!(
            "installing {} with apt-get failed:\n{}{}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let still: Vec<&str> = NEEDS
        .iter()
        .filter(|n| !present(sh, n) && !OPTIONAL.contains(&n.what))
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(format!("installed {}", packages.join(" ")))
}

/// The meson version a tree asks for, from its pythondeps.toml:
/// (minimum accepted, version the tree was tested with). A tree without
/// the file (or the entry) gets the minimum current QEMU needs.
fn meson_versions(tree: &Path) -> Result<(String, Option<String>)> {
    let path = tree.join("pythondeps.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let table: toml::Table =
        text.parse().with_context(|| format!("parsing {} as TOML", path.display()))?;
    let meson = table.values().filter_map(|group| group.get("meson")).next();
    let field = |name: &str| meson?.get(name)?.as_str().map(str::to_owned);
    let accepted = field("accepted").unwrap_or_else(|| ">=1.5.0".to_owned());
    Ok((accepted, field("installed")))
}

/// The pip requirement for the meson a tree's configure wants: the
/// version it was tested with, else its minimum.
pub fn meson_spec(tree: &Path) -> Result<String> {
    let (accepted, installed) = meson_versions(tree)?;
    Ok(match installed {
        Some(v) => format!("meson=={v}"),
        None => format!("meson{accepted}"),
    })
}

/// A private virtual environment with `spec`'s meson (and pycotap) for
/// configure; Debian 12's meson is too old for current QEMU. Returns the
/// venv's python, which configure gets as --python.
pub fn ensure_meson(sh: &Shell, spec: &str) -> Result<(PathBuf, String)> {
    match venv(sh, &[spec, "pycotap"])? {
        Venv::Ready { python, dir, cached } => {
            let summary = if cached {
                format!("{spec} (cached venv)")
            } else {
                format!("{spec} installed into {}", dir.display())
            };
            Ok((python, summary))
        }
        Venv::PipFailed { dir, why } => bail!(
            "installing {spec} and pycotap into {} with pip failed ({why}); without a package \
             index, install them by hand into that venv",
            dir.display()
        ),
    }
}

/// [`ensure_meson`] for the meson `tree` asks for.
pub fn ensure_python(sh: &Shell, tree: &Path) -> Result<(PathBuf, String)> {
    ensure_meson(sh, &meson_spec(tree)?)
}

/// A venv of the xtask's own.
pub enum Venv {
    Ready {
        python: PathBuf,
        dir: PathBuf,
        /// Made by an earlier run.
        cached: bool,
    },
    /// pip could not install the packages: its last words.
    PipFailed { dir: PathBuf, why: String },
}

/// A venv with `packages` (pip requirement specs) installed, shared by
/// every cache and made once: a venv is not relocatable, so it is built in
/// place, and a marker written last tells a complete one from a run that
/// died half way, which is made again.
pub fn venv(sh: &Shell, packages: &[&str]) -> Result<Venv> {
    let spec = packages.join(" ");
    let dir = paths::venv_cache().join(format!("pyenv-{}", paths::key(&[spec.as_bytes()])));
    let python = dir.join("bin/python3");
    let ready = dir.join(".xtask-ready");
    // Every cache shares the venvs: two runs must not make one at once,
    // while one run may make two side by side.
    let _lock = crate::lock::venv(&spec)?;
    if ready.exists() {
        return Ok(Venv::Ready { python, dir, cached: true });
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the incomplete venv {}", dir.display()))?;
    }
    cmd!(sh, "python3 -m venv {dir}")
        .quiet()
        .spawn_run()
        .with_context(|| format!("creating a python venv at {}", dir.display()))?;
    let out = cmd!(sh, "{python} -m pip install --quiet --disable-pip-version-check {packages...}")
        .spawn_output()?;
    if !out.status.success() {
        crate::interrupt::check()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_owned();
        return Ok(Venv::PipFailed { dir, why });
    }
    std::fs::write(&ready, &spec).with_context(|| format!("writing {}", ready.display()))?;
    Ok(Venv::Ready { python, dir, cached: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meson_version_is_read_from_pythondeps_toml() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(meson_versions(dir.path()).unwrap(), (">=1.5.0".to_owned(), None));
        // QEMU's own layout, and the same table written out over lines.
        for text in [
            "[meson]\n# the build\nmeson = { accepted = \">=1.5.0\", installed = \"1.9.0\", canary = \"meson\" }\n",
            "[meson.meson]\ninstalled = \"1.9.0\"\naccepted = \">=1.5.0\"\n",
        ] {
            std::fs::write(dir.path().join("pythondeps.toml"), text).unwrap();
            assert_eq!(
                meson_versions(dir.path()).unwrap(),
                (">=1.5.0".to_owned(), Some("1.9.0".to_owned())),
                "{text}"
            );
        }
        std::fs::write(dir.path().join("pythondeps.toml"), "meson = {").unwrap();
        let err = format!("{:#}", meson_versions(dir.path()).unwrap_err());
        assert!(err.contains("pythondeps.toml as TOML"), "{err}");
    }
}
