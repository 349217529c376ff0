//! The QEMU source tree: a user's tree located as it is, or the pinned
//! release fetched into the cache.
//!
//! A fetched tree is unpacked in a private temporary directory, made a git
//! repository whose first commit (tagged `base`) is the pristine release,
//! and only then renamed into place, so an interrupted fetch never leaves
//! something that looks finished.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::{interrupt, paths, vcs};

/// Where a tree came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    Debian,
    Git,
    Tarball,
}

impl Origin {
    pub const ALL: [Origin; 3] = [Origin::Debian, Origin::Git, Origin::Tarball];

    pub fn parse(s: &str) -> Result<Origin> {
        match s {
            "debian" => Ok(Origin::Debian),
            "git" => Ok(Origin::Git),
            "tarball" => Ok(Origin::Tarball),
            _ => bail!("--from takes debian, git or tarball, not `{s}`"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Debian => "debian",
            Origin::Git => "git",
            Origin::Tarball => "tarball",
        })
    }
}

/// A QEMU source tree the pipeline works on.
#[derive(Clone, Debug)]
pub struct Tree {
    pub path: PathBuf,
    /// A user's own tree: never changed for good, only wired for the
    /// duration of a command.
    pub located: bool,
    pub description: String,
}

impl Tree {
    pub fn version(&self) -> String {
        std::fs::read_to_string(self.path.join("VERSION"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned())
    }
}

/// The checked-in description of the pinned release.
pub struct Pin {
    json: Value,
}

impl Pin {
    pub fn load() -> Result<Pin> {
        let path = paths::pin_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let json = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as JSON", path.display()))?;
        Ok(Pin { json })
    }

    pub fn version(&self) -> &str {
        self.json["version"].as_str().unwrap_or("unknown")
    }

    fn field(&self, source: Origin, name: &str) -> Result<&str> {
        self.json["sources"][source.to_string()][name]
            .as_str()
            .with_context(|| format!("qemu-pin.json has no sources.{source}.{name}"))
    }

    fn optional(&self, source: Origin, name: &str) -> Option<&str> {
        self.json["sources"][source.to_string()][name].as_str()
    }
}

/// Uses `path` as it is, after checking that it is a QEMU tree.
pub fn locate(path: &Path) -> Result<Tree> {
    if !path.exists() {
        bail!(
            "--qemu-src {}: no such directory; give the top directory of a QEMU checkout",
            path.display()
        );
    }
    let path = path
        .canonicalize()
        .with_context(|| format!("resolving the QEMU tree path {}", path.display()))?;
    let missing: Vec<&str> = ["VERSION", "configure", "meson.build", "qapi/qapi-schema.json"]
        .into_iter()
        .filter(|f| !path.join(f).exists())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a QEMU source tree (missing {}); give the top directory of a QEMU checkout",
            path.display(),
            missing.join(", ")
        );
    }
    let description = format!("located tree {}", path.display());
    Ok(Tree { path, located: true, description })
}

/// What the user asked of the fetch.
pub struct FetchOptions {
    pub from: Option<Origin>,
    pub sha256: Option<String>,
}

/// Returns the cached pinned tree, fetching it first when needed.
pub fn fetch(sh: &Shell, pin: &Pin, opts: &FetchOptions) -> Result<Tree> {
    let order: Vec<Origin> = match opts.from {
        Some(o) => vec![o],
        None => Origin::ALL.to_vec(),
    };
    // A tree already fetched from any allowed source is reused offline.
    for &origin in &order {
        let dest = tree_dir(pin, origin);
        if dest.join(".git").exists() {
            return Ok(fetched(pin, origin, dest, "cached"));
        }
    }
    let src_dir = paths::qemu_cache().join("src");
    std::fs::create_dir_all(&src_dir).with_context(|| format!("creating {}", src_dir.display()))?;
    remove_stale_partials(&src_dir);
    let mut failures = Vec::new();
    for &origin in &order {
        crate::interrupt::check()?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".partial-{}-", std::process::id()))
            .tempdir_in(&src_dir)
            .with_context(|| format!("creating a staging directory in {}", src_dir.display()))?;
        let unpacked = staging.path().join("tree");
        let result = match origin {
            Origin::Debian => fetch_debian(sh, pin, staging.path(), &unpacked),
            Origin::Git => fetch_git(sh, pin, &unpacked),
            Origin::Tarball => fetch_tarball(sh, pin, opts, staging.path(), &unpacked),
        }
        .and_then(|()| {
            vcs::init_base(sh, &unpacked, &format!("QEMU {} ({origin})", pin.version()))
        });
        match result {
            Ok(()) => {
                let dest = tree_dir(pin, origin);
                std::fs::rename(&unpacked, &dest).with_context(|| {
                    format!("moving the fetched tree into place at {}", dest.display())
                })?;
                return Ok(fetched(pin, origin, dest, "fetched"));
            }
            Err(err) => {
                let why = format!("{err:#}").replace('\n', " ");
                eprintln!("    {origin}: unavailable: {why}");
                failures.push(format!("  {origin}: {why}"));
            }
        }
    }
    bail!(
        "could not fetch QEMU {} from any source:\n{}\n  \
         give a tree with --qemu-src PATH, or pick a source with --from",
        pin.version(),
        failures.join("\n")
    )
}

fn tree_dir(pin: &Pin, origin: Origin) -> PathBuf {
    paths::qemu_cache().join("src").join(format!("qemu-{}-{origin}", pin.version()))
}

fn fetched(pin: &Pin, origin: Origin, path: PathBuf, how: &str) -> Tree {
    let description = format!("QEMU {} from {origin} ({how}, {})", pin.version(), path.display());
    Tree { path, located: false, description }
}

/// Staging directories of fetches whose process is gone.
fn remove_stale_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".partial-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The Debian source package, through an apt configuration of our own so
/// that no system file is touched; the mirror is the one the system's own
/// apt sources already use.
fn fetch_debian(sh: &Shell, pin: &Pin, staging: &Path, unpacked: &Path) -> Result<()> {
    let package = pin.field(Origin::Debian, "package")?;
    let version = pin.field(Origin::Debian, "version")?;
    let suite = pin.field(Origin::Debian, "suite")?;
    let downloads = paths::qemu_cache()
        .join("downloads")
        .join(format!("debian-{package}-{}", version.replace(':', "_")));
    if !downloads.exists() {
        let apt = crate::apt::PrivateApt::new(suite)?;
        let dl = staging.join("download");
        std::fs::create_dir_all(&dl)?;
        apt.source(sh, &dl, &format!("{package}={version}"))?;
        // apt has checked every file against the signed index; keep the
        // verified files for offline reuse.
        std::fs::create_dir_all(downloads.parent().unwrap())?;
        std::fs::rename(&dl, &downloads)
            .with_context(|| format!("keeping the downloads in {}", downloads.display()))?;
    }
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    let dsc = downloads.join(format!("{package}_{upstream}.dsc"));
    if !dsc.exists() {
        bail!(
            "{} is missing from the download cache; remove {} and retry",
            dsc.display(),
            downloads.display()
        );
    }
    // Without --no-check, dpkg-source verifies each file's checksum against
    // the .dsc, which apt verified against the signed archive index. It
    // applies Debian's patches, which are what make the repacked tree build.
    // dpkg-source warns that it cannot check the maintainer's signature
    // (Debian's maintainer keyring is not installed): its output is shown
    // only when unpacking fails.
    let out = cmd!(sh, "dpkg-source -x {dsc} {unpacked}").quiet().spawn_output()?;
    if !out.status.success() {
        bail!(
            "unpacking {} with dpkg-source failed:\n{}",
            dsc.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    // quilt's bookkeeping is not part of the source.
    let _ = std::fs::remove_dir_all(unpacked.join(".pc"));
    Ok(())
}

fn fetch_git(sh: &Shell, pin: &Pin, unpacked: &Path) -> Result<()> {
    let url = pin.field(Origin::Git, "url")?;
    let tag = pin.field(Origin::Git, "tag")?;
    let clone = cmd!(sh, "git clone --quiet --depth 1 --branch {tag} {url} {unpacked}")
        .env("GIT_TERMINAL_PROMPT", "0");
    interrupt::run(clone.into(), "git clone").with_context(|| format!("cloning {url} at {tag}"))?;
    // The clone's own history is replaced by a single base commit, like the
    // other sources, so every fetched tree looks the same to the pipeline.
    std::fs::remove_dir_all(unpacked.join(".git"))?;
    Ok(())
}

fn fetch_tarball(
    sh: &Shell,
    pin: &Pin,
    opts: &FetchOptions,
    staging: &Path,
    unpacked: &Path,
) -> Result<()> {
    let url = pin.field(Origin::Tarball, "url")?;
    let Some(sha256) = opts.sha256.as_deref().or(pin.optional(Origin::Tarball, "sha256")) else {
        bail!("no sha256 to verify {url} against; pass --sha256 HEX");
    };
    let name = url.rsplit('/').next().unwrap_or("qemu.tar.xz");
    let cached = paths::qemu_cache().join("downloads").join(name);
    if !cached.exists() {
        let part = staging.join(name);
        let curl = cmd!(sh, "curl --fail --silent --show-error --location --output {part} {url}");
        interrupt::run(curl.into(), "curl").with_context(|| format!("downloading {url}"))?;
        verify_sha256(sh, &part, sha256)?;
        std::fs::create_dir_all(cached.parent().unwrap())?;
        std::fs::rename(&part, &cached)?;
    } else {
        verify_sha256(sh, &cached, sha256)?;
    }
    let out = staging.join("untar");
    std::fs::create_dir_all(&out)?;
    interrupt::run(cmd!(sh, "tar -xf {cached} -C {out}").into(), "tar")
        .with_context(|| format!("unpacking {}", cached.display()))?;
    let top = std::fs::read_dir(&out)?
        .flatten()
        .find(|e| e.path().is_dir())
        .with_context(|| format!("{} holds no directory", cached.display()))?;
    std::fs::rename(top.path(), unpacked)?;
    Ok(())
}

fn verify_sha256(sh: &Shell, file: &Path, expected: &str) -> Result<()> {
    let out = cmd!(sh, "sha256sum {file}").quiet().spawn_read()?;
    let actual = out.split_whitespace().next().unwrap_or("");
    if !actual.eq_ignore_ascii_case(expected) {
        bail!("{} has sha256 {actual}, expected {expected}", file.display());
    }
    Ok(())
}
