//! A private apt configuration for downloading Debian source packages.
//!
//! Debian 12 machines have no deb-src lines, and the pinned release lives
//! in another suite. Rather than touching /etc/apt, this points apt at
//! lists, caches and a sources file of our own, using the mirror and the
//! keyring that the system's own apt sources already trust.

use std::path::{Path, PathBuf};

use crate::interrupt::Controlled;
use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::paths;

pub struct PrivateApt {
    root: PathBuf,
}

/// A `deb` entry of the system's apt sources.
#[derive(Debug, PartialEq)]
pub struct Mirror {
    pub uri: String,
    pub keyring: Option<String>,
}

const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl PrivateApt {
    pub fn new(suite: &str) -> Result<PrivateApt> {
        check_available()?;
        let mirror = system_mirror()?;
        let root = paths::qemu_cache().join("apt");
        for dir in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        let keyring = mirror.keyring.as_deref().unwrap_or(DEFAULT_KEYRING);
        let line = format!("deb-src [signed-by={keyring}] {} {suite} main\n", mirror.uri);
        write_if_changed(&root.join("sources.list"), &line)?;
        write_if_changed(&root.join("status"), "")?;
        Ok(PrivateApt { root })
    }

    fn options(&self) -> Vec<String> {
        let r = &self.root;
        let mut opts = vec![
            format!("Dir::Etc::SourceList={}", r.join("sources.list").display()),
            format!("Dir::Etc::SourceParts={}", r.join("sources.list.d").display()),
            format!("Dir::State::Lists={}", r.join("lists").display()),
            format!("Dir::Cache={}", r.join("cache").display()),
            format!("Dir::State::status={}", r.join("status").display()),
        ];
        // As root apt drops to _apt, which cannot write into our cache.
        if rustix::process::geteuid().is_root() {
            opts.push("APT::Sandbox::User=root".to_owned());
        }
        opts.into_iter().flat_map(|o| ["-o".to_owned(), o]).collect()
    }

    /// Downloads `spec` (`package=version`) into `dest`, verified by apt
    /// against the signed index.
    pub fn source(&self, sh: &Shell, dest: &Path, spec: &str) -> Result<()> {
        let owned = self.options();
        let opts = &owned;
        cmd!(sh, "apt-get {opts...} -qq update")
            .quiet()
            .ignore_stdout()
            .spawn_run()
            .context("updating the private apt index (apt-get update)")?;
        let _dir = sh.push_dir(dest);
        let download =
            cmd!(sh, "apt-get {opts...} -qq source --download-only {spec}").ignore_stdout();
        crate::interrupt::run(download.into(), "apt-get source")
            .with_context(|| format!("downloading the Debian source package {spec}"))?;
        Ok(())
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The first Debian archive mirror in the system's apt sources.
fn system_mirror() -> Result<Mirror> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let deb822 = f.extension().is_some_and(|e| e == "sources");
            let list = f.extension().is_some_and(|e| e == "list");
            if deb822 || list {
                if let Ok(t) = std::fs::read_to_string(&f) {
                    texts.push((deb822, t));
                }
            }
        }
    }
    texts
        .iter()
        .find_map(|(deb822, text)| if *deb822 { parse_deb822(text) } else { parse_one_line(text) })
        .context(
            "found no Debian archive in /etc/apt/sources.list or /etc/apt/sources.list.d; \
             the Debian source needs one (or use --from git|tarball, or --qemu-src)",
        )
}

/// The security archive carries no source of the pinned suite; any other
/// entry with the main component serves the whole archive.
fn is_archive(uri: &str, suites: &[&str], components: &[&str]) -> bool {
    components.contains(&"main")
        && !uri.contains("security")
        && suites.iter().all(|s| !s.ends_with("-security"))
}

pub fn parse_deb822(text: &str) -> Option<Mirror> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name) && !l.starts_with('#')).then(|| v.trim())
            })
        };
        let (Some(types), Some(uris)) = (field("Types"), field("URIs")) else {
            continue;
        };
        if !types.split_whitespace().any(|t| t == "deb") || field("Enabled") == Some("no") {
            continue;
        }
        let suites: Vec<&str> = field("Suites").unwrap_or("").split_whitespace().collect();
        let components: Vec<&str> = field("Components").unwrap_or("").split_whitespace().collect();
        let uri = uris.split_whitespace().next()?;
        if is_archive(uri, &suites, &components) {
            let keyring = field("Signed-By").filter(|k| k.starts_with('/')).map(str::to_owned);
            return Some(Mirror { uri: uri.to_owned(), keyring });
        }
    }
    None
}

pub fn parse_one_line(text: &str) -> Option<Mirror> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut keyring = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let (opts, after) = opts.split_once(']')?;
            keyring = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_owned);
            rest = after.trim();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        let components: Vec<&str> = words.collect();
        if is_archive(uri, &[suite], &components) {
            return Some(Mirror { uri: uri.to_owned(), keyring });
        }
    }
    None
}

/// Refuses clearly when apt itself is missing.
fn check_available() -> Result<()> {
    if which::which("apt-get").is_err() {
        bail!("apt-get not found: the Debian source needs a Debian-based host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_skips_security_and_other_types() {
        let text = "Types: deb-src\nURIs: http://a.example/debian\nSuites: x\nComponents: main\n\n\
                    Types: deb\nURIs: http://b.example/debian-security\nSuites: x-security\nComponents: main\n\n\
                    Types: deb\nURIs: http://c.example/debian\nSuites: x x-updates\nComponents: main contrib\n\
                    Signed-By: /usr/share/keyrings/k.gpg\n";
        assert_eq!(
            parse_deb822(text),
            Some(Mirror {
                uri: "http://c.example/debian".into(),
                keyring: Some("/usr/share/keyrings/k.gpg".into())
            })
        );
    }

    #[test]
    fn one_line_format_with_options() {
        let text = "# comment\ndeb-src http://a.example/debian x main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://b.example/debian x main\n";
        assert_eq!(
            parse_one_line(text),
            Some(Mirror { uri: "http://b.example/debian".into(), keyring: Some("/k.gpg".into()) })
        );
        assert_eq!(parse_one_line("deb http://b.example/debian x contrib\n"), None);
    }
}
