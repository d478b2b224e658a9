//! `http(s)://…` and `s3://bucket/prefix`: each profile an object in a store, through the
//! object_store crate (one HTTP client, S3's request signing and the usual AWS environment).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::runtime::Runtime;

use super::{ProfileWriter, WriteError, redacted, scrub};

/// The environment variable naming a file whose content is sent as a bearer token with each
/// HTTP `PUT` (`Authorization: Bearer …`): a token kept out of the URL, so out of the
/// command line that every user can read. The file must be trusted (`host::trust`) and
/// readable by its owner only.
pub const TOKEN_FILE_VARIABLE: &str = "MEMORY_MONITOR_PROFILE_TOKEN_FILE";

/// How long one request may take; the profiler's own retries bound the rest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes profiles as objects: `PUT` to a URL, or to an S3 bucket.
#[derive(Debug)]
pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    /// Key prefix, without slashes at either end; may be empty.
    prefix: String,
    /// The writer's own runtime: profiles are written from the profiler's thread. (An
    /// `Option` only so that dropping can shut it down without blocking, wherever that is.)
    runtime: Option<Runtime>,
    description: String,
    /// The URL as given (HTTP), whose secrets are scrubbed from error messages.
    url: String,
}

impl ObjectWriter {
    /// `PUT`s each profile to `url` + `/` + its name, with the bearer token of the file
    /// [`TOKEN_FILE_VARIABLE`] names, if it is set.
    pub fn http(url: &str) -> Result<ObjectWriter, WriteError> {
        // A plain http:// URL is a deliberate choice here, not a downgrade.
        let mut options = client_options().with_allow_http(url.starts_with("http://"));
        if let Some(file) = std::env::var_os(TOKEN_FILE_VARIABLE) {
            options = options.with_default_headers(bearer(std::path::Path::new(&file))?);
        }
        let store = HttpBuilder::new()
            .with_url(url)
            .with_client_options(options)
            .with_retry(no_retries())
            .build()
            .map_err(|error| scrub(&error.to_string(), url))?;
        let mut writer = ObjectWriter::new(Arc::new(store), "", redacted(url))?;
        writer.url = url.to_owned();
        Ok(writer)
    }

    /// Puts each profile in `bucket` under `prefix/`. Credentials, region and endpoint come
    /// from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible store, `AWS_ALLOW_HTTP=true`
    /// for one without TLS, …).
    pub fn s3(bucket: &str, prefix: &str) -> Result<ObjectWriter, WriteError> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client_options())
            .with_retry(no_retries())
            .build()?;
        ObjectWriter::new(Arc::new(store), prefix, format!("s3://{bucket}/{prefix}"))
    }

    fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        description: String,
    ) -> Result<ObjectWriter, WriteError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(ObjectWriter {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            runtime: Some(runtime),
            description,
            url: String::new(),
        })
    }
}

/// The `Authorization` header of the token in `file`: trusted, readable by its owner only.
fn bearer(file: &std::path::Path) -> Result<hyper::header::HeaderMap, WriteError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut opened = crate::host::trust::open_trusted_file(file)?;
    if opened.metadata()?.mode() & 0o077 != 0 {
        let why = "must be readable by its owner only (chmod 600)";
        return Err(format!("{TOKEN_FILE_VARIABLE}: {}: {why}", file.display()).into());
    }
    let mut token = String::new();
    opened.read_to_string(&mut token)?;
    let mut value = hyper::header::HeaderValue::try_from(format!("Bearer {}", token.trim()))?;
    value.set_sensitive(true);
    let mut headers = hyper::header::HeaderMap::new();
    headers.insert(hyper::header::AUTHORIZATION, value);
    Ok(headers)
}

/// The environment's settings (e.g. `AWS_ALLOW_HTTP`) with a bound on each request.
fn client_options() -> ClientOptions {
    let from_env = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    ClientOptions::new()
        .with_allow_http(from_env)
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(REQUEST_TIMEOUT)
}

/// The profiler retries a failed write itself, within its own bound.
fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

impl ProfileWriter for ObjectWriter {
    fn write(&self, name: &str, profile: &[u8]) -> Result<(), WriteError> {
        let key = match self.prefix.as_str() {
            "" => Path::from(name),
            prefix => Path::from(format!("{prefix}/{name}")),
        };
        let payload = PutPayload::from(profile.to_vec());
        let runtime = self.runtime.as_ref().expect("present until dropped");
        match runtime.block_on(self.store.put(&key, payload)) {
            Ok(_) => Ok(()),
            Err(error) => {
                // The whole chain as one message, which may quote the URL.
                let mut said = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    said = format!("{said}: {cause}");
                    source = cause.source();
                }
                Err(scrub(&said, &self.url).into())
            }
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
