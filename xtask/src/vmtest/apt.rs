//! An apt client for kernel packages: this machine's apt, or a private configuration whose
//! sources are this machine's with another suite, or another architecture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

use crate::arch::Arch;
use crate::run_step;

/// Which apt sources a kernel is looked for in.
#[derive(Clone, Copy)]
pub(super) enum Suite {
    /// This machine's own apt sources, as they are.
    Machine,
    /// This machine's sources with the release's codename replaced by this one (its
    /// `-security` and `-updates` suites likewise).
    Codename(&'static str),
    /// This machine's release's backports suite (`<codename>-backports`).
    Backports,
}

/// A machine suite's name in the private configuration, if it has one there.
type SuiteRename = dyn Fn(&str) -> Option<String>;

/// Runs apt with this machine's configuration, or with a private one under the cache.
pub(super) struct Apt {
    /// The private configuration's directory, if any.
    private: Option<PathBuf>,
    /// The architecture whose packages it lists and fetches, when not this machine's.
    foreign: Option<Arch>,
    /// The suites of its sources, for messages.
    suites: Vec<String>,
}

impl Apt {
    /// Packages of `arch` from `suite`: another architecture's have a private configuration
    /// of their own, even for this machine's suites (whose lists here are of its own
    /// architecture only).
    pub(super) fn for_suite(suite: Suite, arch: Arch, cache: &Path) -> Result<Apt> {
        let stanzas = machine_sources()?;
        let release = machine_codename(&stanzas)?;
        let foreign = (!arch.is_host()).then_some(arch);
        let (label, rename): (String, Box<SuiteRename>) = match suite {
            Suite::Machine if foreign.is_none() => {
                let suites = stanzas.iter().flat_map(|s| s.suites.clone()).collect();
                return Ok(Apt {
                    private: None,
                    foreign,
                    suites,
                });
            }
            Suite::Machine => (
                release.clone(),
                Box::new(|suite: &str| Some(suite.to_string())),
            ),
            Suite::Codename(codename) => {
                let release = release.clone();
                (
                    codename.to_string(),
                    Box::new(move |suite: &str| {
                        let rest = suite.strip_prefix(release.as_str())?;
                        Some(format!("{codename}{rest}"))
                    }),
                )
            }
            Suite::Backports => {
                let release = release.clone();
                let backports = format!("{release}-backports");
                (
                    backports.clone(),
                    Box::new(move |suite: &str| (suite == release).then(|| backports.clone())),
                )
            }
        };
        let dir = match foreign {
            None => cache.join("apt").join(&label),
            Some(arch) => cache.join("apt").join(format!("{label}-{}", arch.debian())),
        };
        for sub in ["lists/partial", "archives/partial"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let mut list = String::new();
        let mut suites = Vec::new();
        for stanza in &stanzas {
            for suite in stanza.suites.iter().filter_map(|s| rename(s)) {
                for uri in &stanza.uris {
                    let options = match &stanza.signed_by {
                        Some(keyring) => format!("[signed-by={keyring}] "),
                        None => String::new(),
                    };
                    let components = stanza.components.join(" ");
                    list.push_str(&format!("deb {options}{uri} {suite} {components}\n"));
                }
                suites.push(suite);
            }
        }
        ensure!(
            !list.is_empty(),
            "this machine's apt sources have no suite to derive {label} from"
        );
        let sources = dir.join("sources.list");
        if std::fs::read_to_string(&sources).ok().as_deref() != Some(list.as_str()) {
            std::fs::write(&sources, &list)?;
            // New sources: the lists must be read anew.
            let _ = std::fs::remove_dir_all(dir.join("lists"));
            std::fs::create_dir_all(dir.join("lists/partial"))?;
        }
        Ok(Apt {
            private: Some(dir),
            foreign,
            suites,
        })
    }

    /// `program` (apt-get, apt-cache) with this configuration.
    pub(super) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "APT::Sandbox::User=root"]);
        if let Some(dir) = &self.private {
            let set = |key: &str, value: &Path| format!("{key}={}", value.display());
            for option in [
                set("Dir::Etc::SourceList", &dir.join("sources.list")),
                set("Dir::Etc::SourceParts", &dir.join("sources.list.d")),
                set("Dir::State", dir),
                set("Dir::State::Lists", &dir.join("lists")),
                set("Dir::State::status", &dir.join("status")),
                set("Dir::Cache", dir),
                set("Dir::Cache::Archives", &dir.join("archives")),
            ] {
                command.args(["-o", &option]);
            }
        }
        if let Some(arch) = self.foreign {
            command
                .args(["-o", &format!("APT::Architecture={}", arch.debian())])
                .args(["-o", &format!("APT::Architectures::={}", arch.debian())]);
        }
        command
    }

    /// The kernel image packages that `matches` accepts.
    pub(super) fn packages(&self, matches: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let output = self
            .command("apt-cache")
            .args(["pkgnames", "linux-image-"])
            .output()
            .context("cannot run apt-cache")?;
        let names = String::from_utf8_lossy(&output.stdout);
        Ok(names
            .lines()
            .filter(|p| matches(p))
            .map(String::from)
            .collect())
    }

    /// Reads the package lists anew; false if they were just read (nothing new to find).
    pub(super) fn refresh(&self) -> Result<bool> {
        let lists = match &self.private {
            Some(dir) => dir.join("lists"),
            None => PathBuf::from("/var/lib/apt/lists"),
        };
        let fresh = std::fs::metadata(&lists)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < Duration::from_secs(600)));
        let has_lists = std::fs::read_dir(&lists)
            .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())));
        if fresh && has_lists {
            return Ok(false);
        }
        run_step(self.command("apt-get").arg("update").stdout(Stdio::null()))
            .context("apt-get update failed")?;
        Ok(true)
    }

    pub(super) fn describe(&self) -> String {
        match &self.private {
            Some(dir) => format!(
                "{} (apt configuration {})",
                self.suites.join(" "),
                dir.display()
            ),
            None => format!("{} (this machine's apt sources)", self.suites.join(" ")),
        }
    }
}

/// One deb822 stanza of this machine's apt sources.
struct Stanza {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
    signed_by: Option<String>,
}

/// The binary-package stanzas of `/etc/apt/sources.list.d/*.sources`.
fn machine_sources() -> Result<Vec<Stanza>> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    files.sort();
    let mut stanzas = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        stanzas.extend(parse_sources(&text));
    }
    ensure!(
        !stanzas.is_empty(),
        "no deb source in {}/*.sources to take the mirror from",
        dir.display()
    );
    Ok(stanzas)
}

/// Parses deb822 sources (`Types`, `URIs`, `Suites`, `Components`, `Signed-By`), keeping the
/// stanzas of binary packages that are not disabled.
fn parse_sources(text: &str) -> Vec<Stanza> {
    let mut stanzas = Vec::new();
    for block in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in block.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((key, value)) = line.split_once(':')
                && !line.starts_with(' ')
            {
                fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let words = |key: &str| -> Vec<String> {
            fields
                .get(key)
                .map(|v| v.split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let enabled = fields.get("enabled").is_none_or(|v| v != "no");
        if enabled && words("types").iter().any(|t| t == "deb") {
            stanzas.push(Stanza {
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
                signed_by: fields.get("signed-by").cloned(),
            });
        }
    }
    stanzas
}

/// The release this machine's sources name (the one suite without a `-` suffix).
fn machine_codename(stanzas: &[Stanza]) -> Result<String> {
    stanzas
        .iter()
        .flat_map(|s| &s.suites)
        .find(|suite| !suite.contains('-') && !suite.contains('/'))
        .cloned()
        .context("this machine's apt sources name no release suite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_and_suites_derived() {
        let text = "Types: deb\n# http://old.example/debian\nURIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n\
                    Components: main\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\nEnabled: no\n";
        let stanzas = parse_sources(text);
        assert_eq!(stanzas.len(), 1);
        assert_eq!(stanzas[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(stanzas[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            stanzas[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert_eq!(machine_codename(&stanzas).unwrap(), "bookworm");
    }
}
