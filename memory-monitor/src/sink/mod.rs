//! Where profiles go: the [`ProfileWriter`] trait and the built-in writers, chosen with
//! `--profile-to`:
//!
//! - `dir:PATH` ([`dir::DirWriter`]): a file in a directory, never overwriting one;
//! - `cmd:COMMAND` ([`command::CommandWriter`]): a shell command, profile on stdin;
//! - `http://…`, `https://…` ([`object::ObjectWriter::http`]): an HTTP `PUT` of the URL plus
//!   the name;
//! - `s3://bucket/prefix` ([`object::ObjectWriter::s3`]): an object in S3 or an S3-compatible
//!   store.
//!
//! The HTTP and S3 writers are the `object-store` feature's (object_store and its HTTP, TLS and
//! signing stack are most of what a build compiles); a build without it refuses their
//! destinations when it parses them, saying how to build with it.

pub mod command;
pub mod dir;
#[cfg(feature = "object-store")]
pub mod object;

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A writer's failure, whatever the writer: its message is logged with the profile's name.
pub type WriteError = Box<dyn StdError + Send + Sync>;

/// What a profile is about, for writers that pass it on (e.g. to a command's environment).
#[derive(Debug, Clone, Copy)]
pub struct ProfileInfo<'a> {
    /// The profiled process.
    pub pid: i32,
    /// Its name (`comm`).
    pub name: &'a str,
    /// Its exact RSS at the breach, bytes.
    pub rss: u64,
    /// The limit it went over, bytes.
    pub limit: u64,
    /// The container runtime's ID of its container, when it is in one.
    pub container_id: Option<&'a str>,
    /// Its pod's UID, when it is in one.
    pub pod_uid: Option<&'a str>,
}

/// Somewhere to put profiles: the library's answer to go-mem-monitor's `Writer`.
///
/// ```
/// use memory_monitor::sink::{ProfileWriter, WriteError};
///
/// /// Keeps profiles in memory.
/// struct Keep(std::sync::Mutex<Vec<(String, Vec<u8>)>>);
///
/// impl ProfileWriter for Keep {
///     fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
///         self.0.lock().unwrap().push((name.to_owned(), profile.to_vec()));
///         Ok(())
///     }
/// }
/// ```
pub trait ProfileWriter: Send + Sync {
    /// Stores `profile` (gzip-compressed pprof) under `name`; an error is retried a few times,
    /// then logged and counted.
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError>;

    /// As [`write`](Self::write), with facts about the profiled process for writers that
    /// want them; by default they are not used.
    fn write_about(
        &self,
        name: &str,
        profile: &[u8],
        _about: &ProfileInfo<'_>,
    ) -> Result<(), WriteError> {
        self.write(name, profile)
    }

    /// Where this writer writes, for log lines.
    fn describe(&self) -> String {
        "a custom writer".to_owned()
    }
}

/// A built-in writer as `--profile-to` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `dir:PATH`.
    Dir(PathBuf),
    /// `cmd:COMMAND`, run with `sh -c`.
    Command(String),
    /// `http://…` or `https://…`: the base URL.
    Http(String),
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

/// A `--profile-to` value that names no writer this build has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSink {
    /// Not a destination at all.
    #[error(
        "'{0}' is not a profile destination: use dir:PATH, cmd:COMMAND, http(s)://HOST/PATH or s3://BUCKET/PREFIX"
    )]
    Unknown(String),
    /// An HTTP or S3 destination, in a build without the `object-store` feature.
    #[error(
        "'{0}': this memory-monitor was built without HTTP and S3 profile writers; use the release binary or package, or build with `cargo build --release --features object-store`"
    )]
    NotBuiltIn(String),
}

impl FromStr for SinkSpec {
    type Err = BadSink;

    fn from_str(text: &str) -> Result<SinkSpec, BadSink> {
        let bad = || BadSink::Unknown(redacted(text));
        if let Some(path) = text.strip_prefix("dir:") {
            return (!path.is_empty())
                .then(|| SinkSpec::Dir(path.into()))
                .ok_or_else(bad);
        }
        if let Some(command) = text.strip_prefix("cmd:") {
            return (!command.trim().is_empty())
                .then(|| SinkSpec::Command(command.to_owned()))
                .ok_or_else(bad);
        }
        let object = text.starts_with("s3://")
            || text.starts_with("http://")
            || text.starts_with("https://");
        if object && !cfg!(feature = "object-store") {
            return Err(BadSink::NotBuiltIn(redacted(text)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return (!bucket.is_empty())
                .then(|| SinkSpec::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                })
                .ok_or_else(bad);
        }
        if let Some(host) = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
        {
            return (!host.is_empty())
                .then(|| SinkSpec::Http(text.to_owned()))
                .ok_or_else(bad);
        }
        Err(bad())
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Dir(path) => write!(f, "dir:{}", path.display()),
            SinkSpec::Command(command) => write!(f, "cmd:{command}"),
            SinkSpec::Http(url) => f.write_str(&redacted(url)),
            SinkSpec::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// What of an HTTP destination URL is secret: its user information (`user:password@`) and the
/// values of its query (`?token=…`). Never logged, nor printed by `--check-config`.
fn secrets(url: &str) -> Vec<&str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let user = authority.rsplit_once('@').map(|(user, _)| user);
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let query = query.split('#').next().unwrap_or_default();
    let values = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(_, v)| v));
    user.into_iter()
        .chain(values)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `text` with every secret of `url` (see [`secrets`]) written as `***`.
fn scrub(text: &str, url: &str) -> String {
    secrets(url)
        .into_iter()
        .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
}

/// `url` with its secrets written as `***`: how it is shown.
fn redacted(url: &str) -> String {
    scrub(url, url)
}

/// Opens the writer `spec` names.
pub fn open(spec: &SinkSpec) -> Result<Box<dyn ProfileWriter>, WriteError> {
    Ok(match spec {
        SinkSpec::Dir(path) => Box::new(dir::DirWriter::new(path)),
        SinkSpec::Command(command) => Box::new(command::CommandWriter::new(command)),
        #[cfg(feature = "object-store")]
        SinkSpec::Http(url) => Box::new(object::ObjectWriter::http(url)?),
        #[cfg(feature = "object-store")]
        SinkSpec::S3 { bucket, prefix } => Box::new(object::ObjectWriter::s3(bucket, prefix)?),
        // Never parsed in such a build (`SinkSpec::from_str` refuses them); made by hand, the
        // same refusal.
        #[cfg(not(feature = "object-store"))]
        SinkSpec::Http(_) | SinkSpec::S3 { .. } => {
            return Err(BadSink::NotBuiltIn(spec.to_string()).into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_parsed_and_nonsense_is_refused() {
        assert_eq!("dir:/var/tmp".parse(), Ok(SinkSpec::Dir("/var/tmp".into())));
        assert_eq!(
            "cmd:cat > /dev/null".parse(),
            Ok(SinkSpec::Command("cat > /dev/null".into()))
        );
        for bad in ["", "dir:", "cmd: ", "ftp://x", "/tmp"] {
            assert!(bad.parse::<SinkSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn object_destinations_are_parsed() {
        assert_eq!(
            "s3://bucket/a/b/".parse(),
            Ok(SinkSpec::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            "http://127.0.0.1:9/p".parse(),
            Ok(SinkSpec::Http("http://127.0.0.1:9/p".into()))
        );
        assert!("s3://".parse::<SinkSpec>().is_err());
    }

    #[test]
    fn a_url_is_shown_without_its_credentials_or_query_values() {
        let url = "https://user:p4ss@example.com:8443/up?token=s3cret&x=1#frag";
        assert_eq!(
            redacted(url),
            "https://***@example.com:8443/up?token=***&x=***#frag"
        );
        assert_eq!(redacted("http://127.0.0.1:9/p"), "http://127.0.0.1:9/p");
        let said = format!("error sending request for url ({url}): refused");
        assert!(!scrub(&said, url).contains("p4ss") && !scrub(&said, url).contains("s3cret"));
    }

    #[cfg(not(feature = "object-store"))]
    #[test]
    fn object_destinations_are_refused_saying_how_to_build_them() {
        for url in ["s3://bucket/a", "http://127.0.0.1:9/p", "https://host/p"] {
            let error = url.parse::<SinkSpec>().unwrap_err();
            assert_eq!(error, BadSink::NotBuiltIn(url.to_owned()));
            assert!(
                error.to_string().contains("--features object-store"),
                "{error}"
            );
        }
    }
}
