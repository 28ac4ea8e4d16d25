//! Where partial and final outputs go (#9): a local directory, the default, or an
//! S3-compatible bucket (`s3://bucket/prefix`), both through [`object_store`].
//!
//! A [`Store`] is opened from one location string and then addressed by *keys*: `/`-separated
//! relative names such as `partials/2026-11-29/worker-1.bin`, below the location's directory
//! or prefix. It offers what scale-out needs and no more: a create-only put (the first writer
//! of a key wins, for claiming work and for partials that must not be overwritten), an
//! atomic replacing put (for finals), get, sorted listing, delete, and the upload of a
//! directory of finished files.
//!
//! # Locations
//!
//! - `s3://BUCKET` or `s3://BUCKET/PREFIX`: keys live under `PREFIX/`. Settings come from the
//!   standard environment (`object_store`'s `AmazonS3Builder::from_env`):
//!   - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` for temporary
//!     credentials); without them, the container or instance credentials of the host;
//!   - `AWS_REGION` (or `AWS_DEFAULT_REGION`), `us-east-1` when unset;
//!   - `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` for an S3-compatible server other than AWS
//!     (e.g. `http://10.0.0.5:8333`; requests then use path-style addressing);
//!   - `AWS_ALLOW_HTTP=true` to allow a plain-HTTP endpoint.
//!
//!   The bucket must exist. Credentials never go in the URL (one with `user@` is refused),
//!   and no error or display form of a store contains them.
//! - Anything else is a filesystem path, created if missing; a relative path is relative to
//!   the current directory. Keys are files below it.
//!
//! # Create-only puts
//!
//! [`Store::put_create`] uses `object_store`'s `PutMode::Create`. On the filesystem that is a
//! staged file hard-linked into place, which fails if the name exists. On S3 it is a
//! conditional `PUT` with `If-None-Match: *` (`S3ConditionalPut::ETagMatch`, `object_store`'s
//! default), which AWS S3 has honoured since 2024, and so do `MinIO`, Cloudflare R2 and the
//! `SeaweedFS` (4.48) that the tests run against (`crates/logveil/tests/it/s3.rs`, also with
//! eight concurrent writers). A server that ignores the header would silently overwrite.
//! `AWS_CONDITIONAL_PUT=disabled` turns the header off, and create-only puts then fail
//! with an error rather than race.
//!
//! # Replacing puts
//!
//! [`Store::put_replace`] is atomic on both back ends: an S3 `PUT` replaces the whole object
//! or nothing; the filesystem writes a staging file next to the target (`NAME#N`), fsyncs
//! it and renames it over the target. Which is why keys may not contain `#`.

// The CLI uses a subset (scale-out, #9); the tests, which include this file, use all of it.
#![allow(dead_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Where partial and final outputs go: a local directory (default) or `s3://bucket/prefix`.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Prepended to every key (S3 only; the filesystem store is rooted at its directory).
    prefix: ObjectPath,
    /// `s3://bucket/prefix` or the path as given: for messages, never holds credentials.
    display: String,
    /// The canonical directory of a filesystem store.
    local: Option<PathBuf>,
}

impl Store {
    /// Opens `s3://bucket[/prefix]` or a filesystem directory (created if missing). No
    /// request is made: a wrong bucket or credentials show up at the first operation.
    pub fn open(location: &str) -> Result<Store> {
        Self::open_with(location, &[])
    }

    /// [`Store::open`] with S3 settings given as `AWS_*` variable names and values that take
    /// precedence over the environment's (for tests, which cannot set the environment of
    /// their own process safely); ignored for a directory.
    pub fn open_with(location: &str, s3_settings: &[(String, String)]) -> Result<Store> {
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::open_s3(location, rest, s3_settings);
        }
        if let Some((scheme, _)) = location.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            bail!(
                "output location {location:?}: unsupported scheme {scheme}:// (use s3://BUCKET/PREFIX or a directory path)"
            );
        }
        Self::open_dir(location)
    }

    fn open_s3(location: &str, rest: &str, settings: &[(String, String)]) -> Result<Store> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Say as little as possible of a refused URL: it may hold a secret.
        if bucket.contains('@') || bucket.contains(':') {
            bail!(
                "output location s3://…: credentials or ports do not go in the URL; \
                 set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL instead"
            );
        }
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            bail!(
                "output location {location:?}: {bucket:?} is not a bucket name (lower-case letters, digits, '-' and '.')"
            );
        }
        if prefix.contains(['?', '#']) {
            bail!("output location {location:?}: the prefix may not contain '?' or '#'");
        }
        let prefix = ObjectPath::parse(prefix)
            .map_err(|e| anyhow!("output location {location:?}: bad prefix: {e}"))?;
        let display = if prefix.as_ref().is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        let mut builder = AmazonS3Builder::from_env();
        for (name, value) in settings {
            let key = name
                .strip_prefix("AWS_")
                .and_then(|_| name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>().ok())
                .ok_or_else(|| anyhow!("output location {display}: unknown S3 setting {name}"))?;
            builder = builder.with_config(key, value);
        }
        let s3 = builder
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("output location {display}: S3 settings"))?;
        Ok(Store {
            inner: Arc::new(s3),
            prefix,
            display,
            local: None,
        })
    }

    fn open_dir(location: &str) -> Result<Store> {
        if location.is_empty() {
            bail!("output location is empty (give a directory or s3://BUCKET/PREFIX)");
        }
        std::fs::create_dir_all(location)
            .with_context(|| format!("output location {location}: cannot create directory"))?;
        let dir = std::fs::canonicalize(location)
            .with_context(|| format!("output location {location}: cannot resolve"))?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("output location {location}"))?
            .with_fsync(true);
        Ok(Store {
            inner: Arc::new(fs),
            prefix: ObjectPath::default(),
            display: location.to_owned(),
            local: Some(dir),
        })
    }

    /// The directory of a filesystem store (canonical, absolute); `None` for S3.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// Writes `key` only if it does not exist: `Ok(true)` written, `Ok(false)` it already
    /// existed (and is unchanged).
    pub async fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.failed("create-only put of", key, &e)),
        }
    }

    /// Writes `key`, replacing it atomically if it exists.
    pub async fn put_replace(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.failed("put of", key, &e))?;
        Ok(())
    }

    /// The content of `key`, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let result = match self.inner.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("get of", key, &e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.failed("get of", key, &e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Every key below `prefix`, relative to the store (so they can be passed back to
    /// [`Store::get`]), sorted. `prefix` is matched by whole segments: `partials` lists
    /// `partials/a` but not `partials-old/a`; `""` lists the whole store.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let under = if prefix.is_empty() {
            self.prefix.clone()
        } else {
            self.path(prefix)?
        };
        let metas: Vec<_> = self
            .inner
            .list(Some(&under))
            .try_collect()
            .await
            .map_err(|e| self.failed("listing of", prefix, &e))?;
        let mut keys: Vec<String> = metas
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|part| part.as_ref().to_owned())
                    .collect();
                Some(parts.join("/"))
            })
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Removes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete of", key, &e)),
        }
    }

    /// Puts every file below `dir` (following symbolic links to files) at
    /// `under/<path relative to dir>` with [`Store::put_replace`], in sorted order, and
    /// returns the keys written. `under` may be `""`. Each file is read whole into memory.
    pub async fn upload_dir(&self, dir: &Path, under: &str) -> Result<Vec<String>> {
        let under = under.trim_matches('/');
        if !under.is_empty() {
            self.path(under)?;
        }
        let root = dir.to_owned();
        let files = tokio::task::spawn_blocking(move || files_below(&root))
            .await
            .context("listing a directory to upload")??;
        let mut keys = Vec::with_capacity(files.len());
        for (relative, file) in files {
            let key = if under.is_empty() {
                relative
            } else {
                format!("{under}/{relative}")
            };
            let source = file.clone();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(&source))
                .await
                .context("reading a file to upload")?
                .with_context(|| format!("cannot read {}", file.display()))?;
            self.put_replace(&key, bytes)
                .await
                .with_context(|| format!("uploading {}", file.display()))?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// The object path of `key`, after checking that `key` is a plain relative name.
    fn path(&self, key: &str) -> Result<ObjectPath> {
        let parsed = ObjectPath::parse(key).ok().filter(|p| p.as_ref() == key);
        let Some(parsed) = parsed.filter(|_| !key.is_empty() && !key.contains('#')) else {
            bail!(
                "{self}: bad key {key:?}: keys are non-empty '/'-separated names without \
                 empty, '.' or '..' segments, control characters or '#'"
            );
        };
        Ok(self.prefix.parts().chain(parsed.parts()).collect())
    }

    /// The error of `operation` on `key`: names the location and key. `object_store`'s own
    /// message names the object's path or request URL (never a credential) and the cause,
    /// and already includes its sources (which is why they are not chained again).
    fn failed(&self, operation: &str, key: &str, e: &object_store::Error) -> anyhow::Error {
        anyhow!("{self}: {operation} {key:?} failed: {e}")
    }
}

/// The files below `root` as (`/`-joined relative path, filesystem path), sorted.
fn files_below(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut dirs = vec![(String::new(), root.to_owned())];
    while let Some((relative, dir)) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!("cannot upload {}: the name is not UTF-8", path.display());
            };
            let child = if relative.is_empty() {
                name.to_owned()
            } else {
                format!("{relative}/{name}")
            };
            let file_type = entry
                .file_type()
                .with_context(|| format!("cannot stat {}", path.display()))?;
            if file_type.is_dir() {
                dirs.push((child, path));
            } else if file_type.is_file() || std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push((child, path));
            } else {
                bail!(
                    "cannot upload {}: not a file or directory (a link to a directory, or dangling?)",
                    path.display()
                );
            }
        }
    }
    files.sort();
    Ok(files)
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Only the display form: the inner store's own `Debug` could show credentials.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.display)
            .finish_non_exhaustive()
    }
}
