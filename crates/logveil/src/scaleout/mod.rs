//! Scale-out on NATS `JetStream` (issue #9): `logveil edge` on each web server, `logveil
//! aggregate` workers owning partitions, `logveil merge` finalising windows.
//!
//! ```text
//!  web server ─ edge ─┐                      ┌─ aggregate (partitions 0-3) ─┐
//!  web server ─ edge ─┼─ `JetStream` stream ───┤                              ├─ partials ─ merge ─ finals
//!  web server ─ edge ─┘  logveil.<site>.<p>  └─ aggregate (partitions 4-7) ─┘  (Parquet)   (disclosure once)
//! ```
//!
//! * Edges parse and pseudonymize on the web server (raw identifiers never leave it) and
//!   publish batches of events ([`logveil_privacy::wire`]) to `logveil.<site>.<p>`, `p =
//!   visitor pseudonym mod partitions`. Message ids are `host/file-fingerprint/start-end/p<p>.<i>`:
//!   a batch re-published after a crash is dropped by the server's duplicate window.
//! * Aggregators consume their partitions through durable pull consumers (`agg-<p>`), write
//!   one partial per (report, window, partition, stream-sequence range), create-only, then a
//!   batch manifest, then ack, then move the partition's watermark in the KV bucket.
//! * Merge finalises a window once every partition's watermark has passed it: partials of
//!   committed batches are summed (a visitor is in one partition only, so distinct counts
//!   add up exactly) and disclosure control runs once, on the merged counts.

pub mod aggregate;
pub mod edge;
pub mod merge;
pub mod settings;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};

pub use settings::ScaleoutSettings;

/// The async runtime of a scale-out command: two workers (I/O waits on NATS and storage;
/// parsing runs on rayon).
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The `JetStream` stream of a site.
pub fn stream_name(site: &str) -> String {
    format!("LOGVEIL_{}", site.to_ascii_uppercase().replace('-', "_"))
}

/// The subject of one partition.
pub fn subject(site: &str, partition: u32) -> String {
    format!("logveil.{site}.{partition}")
}

/// The KV bucket holding partition watermarks.
pub fn watermark_bucket(site: &str) -> String {
    format!("logveil_{}_watermarks", site.replace('-', "_"))
}

/// The KV key of a partition's watermark.
pub fn watermark_key(partition: u32) -> String {
    format!("partition.{partition}")
}

/// What an aggregator publishes per partition after each committed batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWatermark {
    /// Every event of this partition older than this (UTC µs) has been committed in a
    /// partial, except late ones (which are committed too and make merge rewrite a window).
    pub watermark_micros: i64,
    /// The last stream sequence committed for this partition.
    pub committed_seq: u64,
    /// Each edge's latest watermark seen in this partition (the minimum is the partition's).
    pub edges: BTreeMap<String, i64>,
}

/// Connects and returns the `JetStream` context, with the site's stream and watermark bucket
/// created when missing.
pub async fn connect(
    url: &str,
    settings: &ScaleoutSettings,
) -> Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::ConnectOptions::new()
        .name("logveil")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let js = jetstream::new(client.clone());
    ensure_stream(
        &js,
        jetstream::stream::Config {
            name: stream_name(&settings.site),
            subjects: vec![format!("logveil.{}.*", settings.site)],
            storage: jetstream::stream::StorageType::File,
            max_age: settings.retention,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("creating or opening stream {}", stream_name(&settings.site)))?;
    Ok((client, js))
}

/// Opens a stream, creating it when missing. Processes starting together race to create
/// it, and the loser's create fails (nats-server 2.9 answers "subjects overlap with an
/// existing stream"): it then opens the winner's.
async fn ensure_stream(js: &jetstream::Context, config: jetstream::stream::Config) -> Result<()> {
    let name = config.name.clone();
    let mut last = None;
    for attempt in 0..5u64 {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        if js.get_stream(&name).await.is_ok() {
            return Ok(());
        }
    }
    Err(last.expect("an attempt failed").into())
}

/// The watermark bucket (created when missing).
pub async fn watermarks(
    js: &jetstream::Context,
    settings: &ScaleoutSettings,
) -> Result<jetstream::kv::Store> {
    let bucket = watermark_bucket(&settings.site);
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    // The bucket's stream, made by hand as `create_key_value` would: that call first asks
    // for account information in a shape nats-server 2.9 does not answer with.
    ensure_stream(
        js,
        jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("creating KV bucket {bucket}"))?;
    js.get_key_value(&bucket)
        .await
        .with_context(|| format!("opening KV bucket {bucket}"))
}

/// Reads one partition's watermark (`None`: no aggregator has committed it yet).
pub async fn read_watermark(
    kv: &jetstream::kv::Store,
    partition: u32,
) -> Result<Option<PartitionWatermark>> {
    let Some(bytes) = kv
        .get(watermark_key(partition))
        .await
        .with_context(|| format!("reading the watermark of partition {partition}"))?
    else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
        format!("the watermark of partition {partition} is not valid JSON")
    })?))
}

/// `0-3`, `0,2,5`, `7`, or a mix (`0-2,6`): sorted, distinct, each below `partitions`.
pub fn parse_partitions(text: &str, partitions: u32) -> Result<Vec<u32>> {
    let rule = format!(
        "allowed: partition numbers 0 to {} as a range `0-3`, a list `0,2,5` or both",
        partitions - 1
    );
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (part.parse::<u32>(), part.parse::<u32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            bail!("--partitions: `{part}` is not a partition or range ({rule})");
        };
        if lo > hi || hi >= partitions {
            bail!("--partitions: `{part}` is out of range ({rule})");
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_ranges_and_lists() {
        assert_eq!(parse_partitions("0-3", 8).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_partitions("5,0,2", 8).unwrap(), vec![0, 2, 5]);
        assert_eq!(parse_partitions("0-1,1,7", 8).unwrap(), vec![0, 1, 7]);
        let e = parse_partitions("0-8", 8).unwrap_err().to_string();
        assert!(e.contains("out of range") && e.contains("0 to 7"), "{e}");
        assert!(parse_partitions("x", 8).is_err());
        assert!(parse_partitions("3-1", 8).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(stream_name("www-jp"), "LOGVEIL_WWW_JP");
        assert_eq!(subject("www", 3), "logveil.www.3");
        assert_eq!(watermark_bucket("www"), "logveil_www_watermarks");
    }
}
