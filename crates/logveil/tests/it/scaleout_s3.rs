//! Scale-out (issue #9) with object storage: partials and final reports on S3 (a throwaway
//! `SeaweedFS`, see `s3`), events through a throwaway `nats-server -js` (see `nats`). The
//! reports `logveil merge` puts under `s3://BUCKET/reports` must equal one local `logveil
//! run` over the same files, cell by cell; partials stay under `partials/`; merging again
//! rewrites no object; the privacy budget ledger stays on the merging machine, in its
//! privacy state directory (`--privacy-state`), never in the bucket.
//!
//! Skipped with a notice when `nats-server` or `weed` is missing (the fixtures' rule), a
//! failure under CI.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ObjectStore as _, ObjectStoreExt as _};

use crate::nats::NatsServer;
use crate::s3::SeaweedS3;
use crate::util::{
    EditedPipeline, batch_rows, bin, files_under, key_value_metadata, read_batches, repo,
};

const SAMPLES: [&str; 2] = ["access-2026-11-01.log", "access-2026-11-02.log"];

/// A differentially private report added to `pipelines/daily.toml`, so that merge charges
/// the `public` audience's budget and the ledger is written (on this machine, not on S3).
/// Its keys are a public list, so both runs release the same rows; merge and run give each
/// window the same release identity, so the same noise: the counts are equal too, and the
/// run (sharing merge's privacy state) is charged nothing.
const DP_REPORT: &str = r#"
[[report]]
name = "devices_daily_dp"
audience = "public"
purpose = "improve_services"
bucket = "day"
dimensions = ["device_class"]
metrics = ["visitors"]
public_keys = true
"#;

/// One `logveil` process, its stdout and stderr in a log file; killed when dropped, so a
/// failing test leaves nothing running.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, args: &[String], env: &[(String, String)], logs: &Path) -> Self {
        let log = File::create(logs.join(format!("{name}.log"))).unwrap();
        let child = bin()
            .current_dir(repo())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Self {
            name: name.to_owned(),
            child,
        }
    }

    /// Waits for the process to exit by itself, with status 0, within `limit`.
    fn wait_success(&mut self, limit: Duration, logs: &dyn Fn() -> String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited {status}:\n{}",
                    self.name,
                    logs()
                );
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{} did not exit within {limit:?}:\n{}",
                self.name,
                logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One object as listed and read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    e_tag: Option<String>,
    last_modified: String,
    bytes: Vec<u8>,
}

/// The test bucket, reached with the `object_store` crate directly (the binary's `Store` is
/// not a library), with the same `AWS_*` settings the `logveil` processes get.
struct Bucket {
    s3: AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    fn open(server: &SeaweedS3) -> Self {
        let mut builder = AmazonS3Builder::new().with_bucket_name(&server.bucket);
        for (name, value) in server.env() {
            let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().unwrap();
            builder = builder.with_config(key, value);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self {
            s3: builder.build().unwrap(),
            rt,
        }
    }

    /// Every object of the bucket by key, with its `ETag`, modification time and bytes.
    fn objects(&self) -> BTreeMap<String, Object> {
        self.rt.block_on(async {
            let metas: Vec<_> = self.s3.list(None).try_collect().await.unwrap();
            let mut objects = BTreeMap::new();
            for meta in metas {
                let bytes = self
                    .s3
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(bytes.len() as u64, meta.size, "{}", meta.location);
                objects.insert(
                    meta.location.to_string(),
                    Object {
                        e_tag: meta.e_tag,
                        last_modified: meta.last_modified.to_rfc3339(),
                        bytes: bytes.to_vec(),
                    },
                );
            }
            objects
        })
    }
}

/// The rows of one Parquet file as JSON strings, sorted.
fn file_rows(path: &Path) -> Vec<String> {
    let mut rows: Vec<String> = read_batches(path)
        .iter()
        .flat_map(batch_rows)
        .map(|row| row.to_string())
        .collect();
    rows.sort();
    rows
}

/// Every process log, and the end of the NATS server's, for failure messages.
fn all_logs(logs: &Path, nats: &NatsServer) -> String {
    let mut text = String::new();
    for f in files_under(logs) {
        let log = std::fs::read_to_string(logs.join(&f)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let _ = write!(
            text,
            "=== {f} ===\n{}\n",
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
    }
    let log = nats.log();
    let lines: Vec<&str> = log.lines().collect();
    let _ = write!(
        text,
        "=== nats-server ===\n{}\n",
        lines[lines.len().saturating_sub(20)..].join("\n")
    );
    text
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Two edges (one file each) → `JetStream` (4 partitions) → two aggregators writing partials
/// to `s3://BUCKET/partials` → `logveil merge --out s3://BUCKET/reports`. The reports
/// downloaded equal a local `logveil run`'s files, cell by cell; only partials (and merge's
/// records) are under `partials/`, only report files under `reports/`, no ledger in the
/// bucket; a second merge writes nothing and rewrites no object.
#[test]
fn partials_and_finals_on_s3_equal_a_local_run() {
    let started = Instant::now();
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let nats_ready = started.elapsed();
    let Some(server) = SeaweedS3::start() else {
        return;
    };
    let s3_ready = started.elapsed();
    let env = server.env();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name);
    let logs = path("logs");
    std::fs::create_dir(&logs).unwrap();
    let all_logs = || all_logs(&logs, &nats);

    // The pipeline's own output directory, moved to the temporary directory (nothing lands
    // in the repo); the ledgers are in the privacy state directory, on this machine.
    let local_out = path("merge-local");
    let privacy = path("privacy-state");
    let pipeline = EditedPipeline::new("scaleout-s3", |p| {
        let edited = p.replace(
            "[output]\ndir = \"../out\"\n",
            &format!("[output]\ndir = {:?}\n", local_out.display().to_string()),
        );
        assert_ne!(edited, p, "pipelines/daily.toml: [output] dir not found");
        format!(
            "{edited}{DP_REPORT}\n[scaleout]\nsite = \"s3t\"\npartitions = 4\npartials = {:?}\n",
            server.url("partials")
        )
    });
    let common = |command: &str| -> Vec<String> {
        vec![
            command.to_owned(),
            pipeline.0.display().to_string(),
            "--nats".to_owned(),
            nats.url.clone(),
        ]
    };

    let inputs: Vec<PathBuf> = SAMPLES
        .iter()
        .map(|name| {
            let copy = path(name);
            std::fs::copy(repo().join("sample-logs").join(name), &copy).unwrap();
            copy
        })
        .collect();
    let total_lines: usize = inputs
        .iter()
        .map(|f| std::fs::read(f).unwrap().split(|b| *b == b'\n').count() - 1)
        .sum();

    // Edges: each publishes its file and a final watermark, then exits.
    let mut edges: Vec<Proc> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let host = format!("web{}", i + 1);
            let mut args = common("edge");
            args.extend([
                "--input".to_owned(),
                input.display().to_string(),
                "--state".to_owned(),
                path(&format!("state-{host}")).display().to_string(),
                "--host".to_owned(),
                host.clone(),
                "--idle-exit".to_owned(),
                "1".to_owned(),
                "--summary".to_owned(),
                path(&format!("edge-{host}.json")).display().to_string(),
            ]);
            Proc::spawn(&format!("edge-{host}"), &args, &env, &logs)
        })
        .collect();
    for edge in &mut edges {
        edge.wait_success(Duration::from_mins(2), &all_logs);
    }
    let edges_done = started.elapsed();
    let edge_lines: u64 = ["web1", "web2"]
        .iter()
        .map(|h| {
            let s = summary(&path(&format!("edge-{h}.json")));
            assert_eq!(s["lines_late"], 0, "edge {h}: late lines: {s}");
            s["lines_read"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(edge_lines as usize, total_lines, "lines read by the edges");

    // Aggregators: partials to the pipeline's `scaleout.partials` (S3), then exit when idle.
    // Started once the edges are done (the stream keeps the messages): with `--idle-exit 3`
    // an aggregator started first could stop before a slow edge's first batch.
    let mut aggregators: Vec<Proc> = ["0-1", "2-3"]
        .iter()
        .map(|partitions| {
            let mut args = common("aggregate");
            args.extend([
                "--partitions".to_owned(),
                (*partitions).to_owned(),
                "--idle-exit".to_owned(),
                "3".to_owned(),
                "--summary".to_owned(),
                path(&format!("aggregate-{partitions}.json"))
                    .display()
                    .to_string(),
            ]);
            Proc::spawn(&format!("aggregate-{partitions}"), &args, &env, &logs)
        })
        .collect();
    for aggregator in &mut aggregators {
        aggregator.wait_success(Duration::from_mins(3), &all_logs);
    }
    let aggregated = started.elapsed();
    let partials_written: u64 = ["0-1", "2-3"]
        .iter()
        .map(|p| {
            summary(&path(&format!("aggregate-{p}.json")))["partials_written"]
                .as_u64()
                .unwrap()
        })
        .sum();

    // Merge into s3://BUCKET/reports; its staging directory (TMPDIR) is left empty.
    let merge_tmp = path("merge-tmp");
    std::fs::create_dir(&merge_tmp).unwrap();
    let merge = |what: &str| -> (Output, serde_json::Value) {
        let summary_path = path(&format!("merge-{what}.json"));
        let mut args = common("merge");
        args.extend([
            "--privacy-state".to_owned(),
            privacy.display().to_string(),
            "--out".to_owned(),
            server.url("reports"),
            "--summary".to_owned(),
            summary_path.display().to_string(),
        ]);
        let output = bin()
            .current_dir(repo())
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TMPDIR", &merge_tmp)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "merge ({what}) exited {}:\n{printed}\n{}",
            output.status,
            all_logs()
        );
        let s = summary(&summary_path);
        assert_eq!(
            s["windows_open"],
            0,
            "merge ({what}) left windows open:\n{printed}\n{}",
            all_logs()
        );
        assert!(
            files_under(&merge_tmp).is_empty(),
            "merge ({what}) left staging files: {:?}",
            files_under(&merge_tmp)
        );
        eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim_end());
        (output, s)
    };
    let (_, first) = merge("first");
    let merged = started.elapsed();
    let ledger_file = privacy.join("ledger/public.jsonl");
    let ledger_after_merge = std::fs::read(&ledger_file).unwrap_or_else(|e| {
        panic!(
            "merge keeps the public audience's ledger at {}: {e}",
            ledger_file.display()
        )
    });
    let spends = crate::util::ledger_records(&privacy, "public");
    assert_eq!(
        spends
            .iter()
            .filter(|r| r["kind"] == "spend" && r["report"] == "devices_daily_dp")
            .count(),
        2,
        "merge charged the DP report's two days: {spends:?}"
    );

    // The batch run over the same files, into a local directory.
    let run_out = path("run-out");
    let run_summary = path("run.json");
    let mut run = bin();
    run.current_dir(repo())
        .arg("run")
        .arg(&pipeline.0)
        .arg("--out")
        .arg(&run_out)
        .arg("--summary")
        .arg(&run_summary)
        .arg("--privacy-state")
        .arg(&privacy);
    for input in &inputs {
        run.arg("--input").arg(input);
    }
    let output = run.output().unwrap();
    assert!(
        output.status.success(),
        "logveil run: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        summary(&run_summary)["lines_read"].as_u64().unwrap() as usize,
        total_lines,
        "the batch run reads every line"
    );
    let ran = started.elapsed();

    // What the bucket holds.
    let bucket = Bucket::open(&server);
    let objects = bucket.objects();
    let keys: Vec<&String> = objects.keys().collect();
    let outside: Vec<&&String> = keys
        .iter()
        .filter(|k| !k.starts_with("partials/") && !k.starts_with("reports/"))
        .collect();
    assert!(
        outside.is_empty(),
        "objects outside partials/ and reports/: {outside:?}"
    );
    let ledgers: Vec<&&String> = keys
        .iter()
        .filter(|k| {
            let lower = k.to_ascii_lowercase();
            lower.contains("ledger")
                || lower.contains("privacy")
                || Path::new(&lower)
                    .extension()
                    .is_some_and(|e| e == "jsonl" || e == "lock")
        })
        .collect();
    assert!(
        ledgers.is_empty(),
        "a budget ledger (or its lock) on S3: {ledgers:?}"
    );
    assert!(
        files_under(&local_out)
            .iter()
            .chain(&files_under(&run_out))
            .all(|f| f.ends_with(".parquet")),
        "no ledger in an output directory: {:?} {:?}",
        files_under(&local_out),
        files_under(&run_out)
    );
    assert_eq!(
        std::fs::read(&ledger_file).unwrap(),
        ledger_after_merge,
        "the batch run of the same windows is the same release as merge's: charged nothing"
    );

    // Partials: under partials/, in every partition, listed by batch manifests.
    let partial_keys: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("partials/"))
        .collect();
    let partial_files: Vec<&&str> = partial_keys
        .iter()
        .filter(|k| k.contains("/day=") && k.contains("/p=") && k.ends_with(".parquet"))
        .collect();
    assert_eq!(
        partial_files.len() as u64,
        partials_written,
        "partial objects under partials/ (the aggregators wrote {partials_written}): {partial_keys:?}"
    );
    let partitions: BTreeSet<&str> = partial_files
        .iter()
        .filter_map(|k| k.split('/').find(|part| part.starts_with("p=")))
        .collect();
    assert_eq!(
        partitions,
        BTreeSet::from(["p=0000", "p=0001", "p=0002", "p=0003"]),
        "partials in every partition"
    );
    assert!(
        partial_keys.iter().any(|k| k.starts_with("manifests/")),
        "no batch manifest under partials/: {partial_keys:?}"
    );
    // Besides partials and manifests, only merge's records of finalised windows.
    let records = partial_keys
        .iter()
        .filter(|k| {
            k.starts_with("merged/") && Path::new(k).extension().is_some_and(|e| e == "json")
        })
        .count();
    assert_eq!(
        records as u64,
        first["windows_written"].as_u64().unwrap(),
        "merge's records under partials/merged/: {partial_keys:?}"
    );
    assert_eq!(
        partial_files.len()
            + records
            + partial_keys
                .iter()
                .filter(|k| k.starts_with("manifests/"))
                .count(),
        partial_keys.len(),
        "only partials, manifests and merge records under partials/: {partial_keys:?}"
    );

    // Reports: exactly the batch run's report files, nothing else.
    let report_keys: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("reports/"))
        .map(str::to_owned)
        .collect();
    let run_files: Vec<String> = files_under(&run_out);
    assert!(!run_files.is_empty(), "the batch run wrote no report");
    assert_eq!(
        report_keys, run_files,
        "objects under reports/ against the batch run's files"
    );
    for key in &report_keys {
        assert!(
            key.ends_with(".parquet")
                && !key.contains("partial")
                && !key.contains("manifest")
                && !key.split('/').any(|part| part.starts_with('.')),
            "not a final report file under reports/: {key}"
        );
    }
    assert_eq!(
        first["windows_written"].as_u64().unwrap() as usize,
        report_keys.len(),
        "one window written per report file: {first}"
    );

    // Downloaded, cell by cell against the batch run's files; the same metadata keys.
    let downloaded = path("downloaded");
    for key in &report_keys {
        let file = downloaded.join(key);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &objects[&format!("reports/{key}")].bytes).unwrap();
    }
    let mut problems = Vec::new();
    let mut cells = 0;
    for f in &run_files {
        let (m, r) = (file_rows(&downloaded.join(f)), file_rows(&run_out.join(f)));
        if m != r {
            let only = |x: &[String], y: &[String]| -> Vec<String> {
                x.iter()
                    .filter(|row| !y.contains(row))
                    .take(10)
                    .cloned()
                    .collect()
            };
            problems.push(format!(
                "{f}: {} rows on S3, {} in the run\n    only on S3: {:?}\n    only in the run: {:?}",
                m.len(),
                r.len(),
                only(&m, &r),
                only(&r, &m)
            ));
        }
        cells += r.len();
        let keys = |base: &Path| -> Vec<String> {
            key_value_metadata(&base.join(f)).into_keys().collect()
        };
        if keys(&downloaded) != keys(&run_out) {
            problems.push(format!(
                "{f}: metadata keys {:?} on S3, {:?} in the run",
                keys(&downloaded),
                keys(&run_out)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the reports on S3 differ from `logveil run`:\n  {}\n{}",
        problems.join("\n  "),
        all_logs()
    );

    // Merge again: nothing written, no object rewritten (same ETag, time and bytes), the
    // local ledger unchanged.
    let ledger_before = std::fs::read(&ledger_file).unwrap();
    let (again, again_summary) = merge("again");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("merge: 0 windows written"),
        "second merge: {stdout}"
    );
    assert_eq!(again_summary["windows_written"], 0, "{again_summary}");
    assert_eq!(
        again_summary["windows_unchanged"], first["windows_written"],
        "second merge finds every window unchanged: {again_summary}"
    );
    let after = bucket.objects();
    let changed: Vec<&String> = objects
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let added: Vec<&String> = after.keys().filter(|k| !objects.contains_key(*k)).collect();
    assert!(
        changed.is_empty() && added.is_empty(),
        "second merge: objects changed or gone {changed:?}, added {added:?}"
    );
    assert!(
        objects.values().all(|o| o.e_tag.is_some()),
        "every object has an ETag"
    );
    assert_eq!(
        std::fs::read(&ledger_file).unwrap(),
        ledger_before,
        "second merge: the budget ledger"
    );

    eprintln!(
        "scale-out on S3: {total_lines} lines; {} partials, {} report files ({cells} rows) \
         equal to `logveil run`; nats up at {}, SeaweedFS ready at {} (its own {} ms), \
         edges done at {}, aggregators at {}, merge at {}, run at {}, all checked at {}",
        partial_files.len(),
        report_keys.len(),
        secs(nats_ready),
        secs(s3_ready),
        server.ready_in.as_millis(),
        secs(edges_done),
        secs(aggregated),
        secs(merged),
        secs(ran),
        secs(started.elapsed()),
    );
}
