//! A remote in an S3 bucket (AWS, or an S3-compatible server: `endpoint`, path-style), through
//! `object_store` on a private tokio runtime, as polars uses it: the rest of magpipe stays
//! synchronous. Records are written create-only (`If-None-Match: *`), which the server must
//! honour: [`S3::check`] tries it and refuses a server that ignores it. Objects are named by
//! their hash, so two writers of one object write the same bytes; a large one is streamed in
//! parts (a multipart upload becomes visible whole, or not at all, when it completes).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use super::config::Credentials;
use super::{Backend, Put, RemoteError};

/// Objects up to this size go in one PUT; larger ones in parts of this size.
const PART: usize = 16 << 20;

/// Where a bucket is and how to reach it, from the remote's configuration.
pub struct S3Settings {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<Credentials>,
}

pub struct S3 {
    store: Arc<AmazonS3>,
    rt: tokio::runtime::Runtime,
    prefix: String,
    url: String,
    bucket: String,
    /// The server, for messages: the endpoint, or AWS.
    server: String,
}

/// The access key from `~/.aws/credentials` (or `$AWS_SHARED_CREDENTIALS_FILE`), profile
/// `$AWS_PROFILE` or `default`, for when the environment has none: (id, secret, token).
fn shared_credentials() -> Option<(String, String, Option<String>)> {
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, secret?, token))
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The credentials a remote uses, from the sources the user set up and no others: the
/// environment's keys, then `~/.aws/credentials`, then a provider the environment names (web
/// identity, a container's credentials); the instance metadata service only when the remote's
/// config says `credentials: imds`. Without any, a one-line error before any request, instead of
/// object_store's fallback to 169.254.169.254.
fn with_credentials(b: AmazonS3Builder, s: &S3Settings) -> Result<AmazonS3Builder, RemoteError> {
    if s.credentials == Some(Credentials::Anonymous) {
        return Ok(b.with_skip_signature(true));
    }
    if env_set("AWS_ACCESS_KEY_ID") && env_set("AWS_SECRET_ACCESS_KEY") {
        return Ok(b); // from_env read them
    }
    if let Some((id, secret, token)) = shared_credentials() {
        let b = b.with_access_key_id(id).with_secret_access_key(secret);
        return Ok(match token {
            Some(t) => b.with_token(t),
            None => b,
        });
    }
    let named_provider = (env_set("AWS_WEB_IDENTITY_TOKEN_FILE") && env_set("AWS_ROLE_ARN"))
        || env_set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || env_set("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if named_provider || (s.credentials == Some(Credentials::Imds) && s.endpoint.is_none()) {
        return Ok(b);
    }
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    Err(RemoteError::Config(format!(
        "{}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile `{profile}` keys in ~/.aws/credentials (AWS_PROFILE picks another){}",
        s.url,
        if s.endpoint.is_none() {
            "; on an AWS machine, `magpipe remote add … --credentials imds` uses its instance role"
        } else {
            ""
        }
    )))
}

/// `s3://BUCKET/PREFIX` as (bucket, prefix).
fn bucket_and_prefix(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    rest.split_once('/').unwrap_or((rest, ""))
}

impl S3 {
    /// The client alone, without its runtime: what the `remote_config` fuzz property builds.
    pub fn client(s: &S3Settings) -> Result<(), RemoteError> {
        Self::store(s).map(drop)
    }

    pub fn new(s: &S3Settings) -> Result<S3, RemoteError> {
        let store = Self::store(s)?;
        let (bucket, prefix) = bucket_and_prefix(&s.url);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("magpipe-s3")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Io(format!("cannot start the S3 client: {e}")))?;
        Ok(S3 {
            store: Arc::new(store),
            rt,
            prefix: prefix.trim_matches('/').to_string(),
            url: s.url.clone(),
            bucket: bucket.to_string(),
            server: s.endpoint.clone().unwrap_or_else(|| "AWS".into()),
        })
    }

    fn store(s: &S3Settings) -> Result<AmazonS3, RemoteError> {
        let (bucket, _) = bucket_and_prefix(&s.url);
        if bucket.is_empty() {
            return Err(RemoteError::Config(format!(
                "{}: no bucket (s3://BUCKET/PREFIX)",
                s.url
            )));
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            });
        b = with_credentials(b, s)?;
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        if let Some(e) = &s.endpoint {
            // An S3-compatible server on its own host: path-style, plain HTTP if it says so.
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
            if s.region.is_none() && std::env::var_os("AWS_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
        }
        b.build()
            .map_err(|e| RemoteError::Config(format!("{}: {}", s.url, one_line(&e))))
    }

    fn path(&self, key: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> RemoteError {
        let text = one_line(&e);
        let chain = causes(&e);
        if text.contains("NoSuchBucket") {
            return self.no_bucket();
        }
        if let Some(why) = connect_failure(&chain) {
            return RemoteError::Unreachable(format!(
                "{}: cannot connect to {}: {why}",
                self.url, self.server
            ));
        }
        let denied = matches!(
            e,
            object_store::Error::Unauthenticated { .. }
                | object_store::Error::PermissionDenied { .. }
        ) || text.contains("403 Forbidden")
            || s3_code(&text).is_some_and(|c| {
                matches!(
                    c,
                    "AccessDenied" | "SignatureDoesNotMatch" | "InvalidAccessKeyId"
                )
            });
        let at = if key.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{key}", self.url)
        };
        RemoteError::Io(if denied {
            format!(
                "{}: access denied ({}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) to a key this bucket accepts",
                self.url,
                s3_code(&text).unwrap_or("403")
            )
        } else {
            format!("{at}: {text}")
        })
    }

    fn no_bucket(&self) -> RemoteError {
        RemoteError::Config(format!(
            "{}: there is no bucket `{}` on {}; check the name, or create it (magpipe never creates buckets)",
            self.url, self.bucket, self.server
        ))
    }

    fn put_create(&self, key: &str, payload: PutPayload) -> Result<Put, RemoteError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .rt
            .block_on(self.store.put_opts(&self.path(key), payload, opts))
        {
            Ok(_) => Ok(Put::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Put::Existed),
            Err(e) => Err(self.err(key, e)),
        }
    }
}

/// An error with its causes, on one line (object_store's own message stops at "error sending
/// request"; the cause that says why is further down).
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = one_line(&e.to_string());
    let mut next = e.source();
    while let Some(c) = next {
        out.push_str(": ");
        out.push_str(&one_line(&c.to_string()));
        next = c.source();
    }
    out
}

/// What stopped a connection, from an error's chain of causes (a wrong port, a host that does
/// not resolve), instead of the whole retry chain.
fn connect_failure(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    [
        ("connection refused", "connection refused"),
        ("dns error", "the host name does not resolve"),
        ("failed to lookup address", "the host name does not resolve"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "the network is unreachable"),
        ("timed out", "the connection timed out"),
    ]
    .into_iter()
    .find(|(needle, _)| t.contains(needle))
    .map(|(_, why)| why)
}

/// The S3 error code in a server's reply (`SignatureDoesNotMatch`, `InvalidAccessKeyId`).
fn s3_code(msg: &str) -> Option<&str> {
    let start = msg.find("<Code>")? + "<Code>".len();
    let end = msg[start..].find("</Code>")? + start;
    Some(&msg[start..end])
}

/// An object_store error on one line (they nest their causes with newlines).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Backend for S3 {
    fn describe(&self) -> String {
        self.url.clone()
    }

    /// Reachable, the bucket there and the credentials accepted: a listing of the prefix (a HEAD
    /// cannot tell a missing bucket from a missing name). Never creates the bucket: a misspelt
    /// one is an error, not a new empty cache.
    fn check(&self) -> Result<(), RemoteError> {
        let base = self.path("");
        match self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&base)))
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(self.no_bucket()),
            Err(e) => Err(self.err("", e)),
        }
    }

    /// Create-only writes honoured: a second create-only PUT of one name must fail, or two
    /// pushers could replace each other's records.
    fn check_writes(&self) -> Result<(), RemoteError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let probe = format!("tmp/probe-{}-{nanos}", std::process::id());
        let first = self.put_create(&probe, PutPayload::from_static(b"magpipe probe"))?;
        let second = self.put_create(&probe, PutPayload::from_static(b"magpipe probe 2"))?;
        let _ = self.rt.block_on(self.store.delete(&self.path(&probe)));
        if first != Put::Created || second != Put::Existed {
            return Err(RemoteError::Config(format!(
                "{}: the server ignores create-only writes (If-None-Match: *), so concurrent pushes could replace each other's records; use a server that honours them",
                self.url
            )));
        }
        Ok(())
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        match self.rt.block_on(self.store.head(&self.path(key))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        let got = self.rt.block_on(async {
            let r = self.store.get(&self.path(key)).await?;
            r.bytes().await
        });
        match got {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn get_file(&self, key: &str, dest: &Path) -> Result<bool, RemoteError> {
        let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", dest.display()));
        let got = self.rt.block_on(async {
            let r = match self.store.get(&self.path(key)).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(self.err(key, e)),
            };
            let mut f = std::fs::File::create(dest).map_err(io)?;
            let mut stream = r.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err(key, e))?;
                f.write_all(&chunk).map_err(io)?;
            }
            f.sync_all().map_err(io)?;
            Ok(true)
        });
        if !matches!(got, Ok(true)) {
            let _ = std::fs::remove_file(dest);
        }
        got
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<Put, RemoteError> {
        if self.exists(key)? {
            return Ok(Put::Existed);
        }
        let io = |e: std::io::Error| RemoteError::Io(format!("{}: {e}", src.display()));
        let mut f = std::fs::File::open(src).map_err(io)?;
        let size = f.metadata().map_err(io)?.len() as usize;
        if size <= PART {
            let mut buf = Vec::with_capacity(size);
            f.read_to_end(&mut buf).map_err(io)?;
            return self.put_create(key, PutPayload::from(buf));
        }
        // Streamed in parts, never whole in memory. Not create-only (S3 has no such multipart
        // mode), which is safe here: the name is the content's hash, so a racing writer writes
        // the same bytes.
        let path = self.path(key);
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| self.err(key, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            let sent: Result<(), RemoteError> = async {
                loop {
                    let n = f.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.wait_for_capacity(4).await.map_err(|e| self.err(key, e))?;
                    w.write(&buf[..n]);
                }
            }
            .await;
            if let Err(e) = sent {
                // Not left behind as an invisible, billed, unfinished upload.
                let _ = w.abort().await;
                return Err(e);
            }
            w.finish().await.map_err(|e| self.err(key, e))?;
            Ok(Put::Created)
        })
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<Put, RemoteError> {
        self.put_create(key, PutPayload::from(bytes.to_vec()))
    }

    fn list_times(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, RemoteError> {
        let base = self.path(prefix);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out: Vec<(String, std::time::SystemTime)> = self.rt.block_on(async {
            let mut s = self.store.list(Some(&base));
            let mut v = Vec::new();
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err(prefix, e))?;
                let loc = m.location.to_string();
                v.push((
                    loc.strip_prefix(&strip).unwrap_or(&loc).to_string(),
                    std::time::SystemTime::from(m.last_modified),
                ));
            }
            Ok::<_, RemoteError>(v)
        })?;
        out.sort();
        Ok(out)
    }

    fn put_replace(&self, key: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        self.rt
            .block_on(
                self.store
                    .put(&self.path(key), PutPayload::from(bytes.to_vec())),
            )
            .map(drop)
            .map_err(|e| self.err(key, e))
    }

    fn delete(&self, key: &str) -> Result<(), RemoteError> {
        match self.rt.block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        Ok(self
            .list_times(prefix)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }
}
