//! `http(s)://…` and `s3://bucket/prefix`: each profile an object in a store, through the
//! object_store crate (one HTTP client, S3's request signing and the usual AWS environment).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::runtime::Runtime;

use super::{ProfileWriter, WriteError};

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
}

impl ObjectWriter {
    /// `PUT`s each profile to `url` + `/` + its name.
    pub fn http(url: &str) -> Result<ObjectWriter, WriteError> {
        // A plain http:// URL is a deliberate choice here, not a downgrade.
        let options = client_options().with_allow_http(url.starts_with("http://"));
        let store = HttpBuilder::new()
            .with_url(url)
            .with_client_options(options)
            .with_retry(no_retries())
            .build()?;
        ObjectWriter::new(Arc::new(store), "", url.to_owned())
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
        })
    }
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
        runtime.block_on(self.store.put(&key, payload))?;
        Ok(())
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
