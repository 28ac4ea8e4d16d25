//! Scale-out (issue #9): `logveil edge` → NATS `JetStream` → `logveil aggregate` → `logveil
//! merge`, against a throwaway `nats-server -js` (see `nats`). The merged reports must equal
//! one `logveil run` over the union of the lines, report by report, cell by cell — through
//! SIGKILLs and restarts of an edge and an aggregator, the same input published twice,
//! messages delivered again and `merge` run again. Partials never reach the final layout, and
//! nothing `JetStream` stores carries a raw address or cookie.
//!
//! Skipped with a notice when `nats-server` is not installed (`scripts/setup-nats`), a
//! failure under CI.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::nats::NatsServer;
use crate::util::{
    EditedPipeline, batch_rows, bin, files_under, key_value_metadata, raw_identifiers,
    read_batches, repo, sample, sample_lines,
};

const REPORTS: [&str; 4] = [
    "demographics_daily",
    "page_views_hourly",
    "referrers_daily",
    "visitors_daily",
];

/// The `[scaleout]` section every test adds to `pipelines/daily.toml` (whose reports are
/// noise-free: k-anonymity and complementary suppression, no DP).
const SCALEOUT: &str = "\n[scaleout]\nsite = \"t\"\npartitions = 8\n";

/// The sample traffic as two web servers behind a load balancer log it: alternate lines, so
/// both files cover the same hours.
fn two_servers() -> [Vec<Vec<u8>>; 2] {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, line) in sample_lines().into_iter().enumerate() {
        if i % 2 == 0 { &mut a } else { &mut b }.push(line);
    }
    [a, b]
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// One `logveil` process of the scale-out (edge, aggregate), its stderr and stdout appended
/// to a log file kept across restarts. Killed when dropped, so a failing test leaves no
/// process behind.
struct Proc {
    name: String,
    args: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, args: Vec<String>, log: PathBuf) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = bin()
            .current_dir(repo())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Self {
            name: name.to_owned(),
            args,
            child,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited by itself ({status}) before the test killed it:\n{}",
                self.name,
                self.logs()
            );
        }
    }

    /// SIGKILL, then the same command again (same arguments, same state, same log).
    fn kill9_and_restart(&mut self) {
        self.assert_running();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        append(
            &self.log,
            b"--- test: SIGKILL; restarting with the same arguments ---\n",
        );
        *self = Self::spawn(&self.name, std::mem::take(&mut self.args), self.log.clone());
    }

    fn kill9(&mut self) {
        self.assert_running();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits up to `limit` for the process to exit by itself.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
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

/// A NATS server, a pipeline with `[scaleout]`, and where processes write.
struct Scaleout {
    nats: NatsServer,
    pipeline: EditedPipeline,
    tmp: tempfile::TempDir,
    /// `--partials` and `--out` of aggregate and merge; `None`: their defaults (the
    /// pipeline's output directory and `<output dir>-partials` beside it).
    locations: Option<(PathBuf, PathBuf)>,
}

impl Scaleout {
    /// `None` when `nats-server` is missing (outside CI).
    fn new(tag: &str) -> Option<Self> {
        let nats = NatsServer::start()?;
        let tmp = tempfile::tempdir().unwrap();
        let locations = Some((tmp.path().join("partials"), tmp.path().join("out")));
        Some(Self {
            nats,
            pipeline: EditedPipeline::new(tag, |p| p + SCALEOUT),
            tmp,
            locations,
        })
    }

    /// With the pipeline's output directory moved to the temporary directory, and no
    /// `--partials`/`--out`: the defaults are used.
    fn with_default_locations(tag: &str) -> Option<Self> {
        let nats = NatsServer::start()?;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let pipeline = EditedPipeline::new(tag, |p| {
            let edited = p.replace(
                "[output]\ndir = \"../out\"\n",
                &format!("[output]\ndir = {:?}\n", out.display().to_string()),
            );
            assert_ne!(edited, p, "pipelines/daily.toml: [output] dir not found");
            edited + SCALEOUT
        });
        Some(Self {
            nats,
            pipeline,
            tmp,
            locations: None,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn out(&self) -> PathBuf {
        self.locations
            .as_ref()
            .map_or_else(|| self.path("out"), |(_, out)| out.clone())
    }

    fn partials(&self) -> PathBuf {
        self.locations
            .as_ref()
            .map_or_else(|| self.path("out-partials"), |(p, _)| p.clone())
    }

    fn common(&self, command: &str) -> Vec<String> {
        vec![
            command.to_owned(),
            self.pipeline.0.display().to_string(),
            "--nats".to_owned(),
            self.nats.url.clone(),
        ]
    }

    /// Merge's privacy state (the audiences' ledgers): the test's own, kept across merges.
    fn privacy_state(&self) -> PathBuf {
        self.path("privacy-state")
    }

    fn proc_log(&self, name: &str) -> PathBuf {
        let dir = self.path("logs");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}.log"))
    }

    /// `logveil edge` on one file, as host `host`, with its own state directory and summary.
    fn edge(&self, host: &str, input: &Path, idle_exit: u32) -> Proc {
        let mut args = self.common("edge");
        args.extend([
            "--input".to_owned(),
            input.display().to_string(),
            "--state".to_owned(),
            self.edge_state(host).display().to_string(),
            "--host".to_owned(),
            host.to_owned(),
            "--idle-exit".to_owned(),
            idle_exit.to_string(),
            "--summary".to_owned(),
            self.path(&format!("edge-{host}.summary.json"))
                .display()
                .to_string(),
        ]);
        let name = format!("edge-{host}");
        Proc::spawn(&name, args, self.proc_log(&name))
    }

    fn edge_state(&self, host: &str) -> PathBuf {
        self.path(&format!("state-{host}"))
    }

    /// `logveil aggregate` owning `partitions`.
    fn aggregate(&self, partitions: &str, idle_exit: u32) -> Proc {
        let mut args = self.common("aggregate");
        args.extend([
            "--partitions".to_owned(),
            partitions.to_owned(),
            "--idle-exit".to_owned(),
            idle_exit.to_string(),
            "--summary".to_owned(),
            self.path(&format!("aggregate-{partitions}.summary.json"))
                .display()
                .to_string(),
        ]);
        if let Some((partials, _)) = &self.locations {
            args.extend(["--partials".to_owned(), partials.display().to_string()]);
        }
        let name = format!("aggregate-{partitions}");
        Proc::spawn(&name, args, self.proc_log(&name))
    }

    /// Waits for `proc` to exit by itself; it must exit 0 within `limit`.
    fn wait_success(&self, proc: &mut Proc, limit: Duration) {
        match proc.wait(limit) {
            Some(status) if status.success() => {}
            Some(status) => panic!("{} exited {status}:\n{}", proc.name, self.all_logs()),
            None => panic!(
                "{} did not exit within {limit:?}:\n{}",
                proc.name,
                self.all_logs()
            ),
        }
    }

    /// `logveil merge` once; it must exit 0 and leave no window open (the edges' final
    /// watermarks passed them all). Returns what it printed and its summary.
    fn merge(&self) -> (Output, serde_json::Value) {
        let mut args = self.common("merge");
        args.extend([
            "--privacy-state".to_owned(),
            self.privacy_state().display().to_string(),
        ]);
        if let Some((partials, out)) = &self.locations {
            args.extend(["--partials".to_owned(), partials.display().to_string()]);
            args.extend(["--out".to_owned(), out.display().to_string()]);
        }
        let summary_path = self.path("merge.summary.json");
        args.extend(["--summary".to_owned(), summary_path.display().to_string()]);
        let output = bin().current_dir(repo()).args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "logveil merge exited {}:\n{}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.all_logs()
        );
        let summary = summary(&summary_path);
        eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim_end());
        assert_eq!(
            summary["windows_open"],
            0,
            "merge left windows open: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.all_logs()
        );
        (output, summary)
    }

    /// Every process log, whole.
    fn full_logs(&self) -> Vec<u8> {
        files_under(&self.path("logs"))
            .iter()
            .flat_map(|f| std::fs::read(self.path("logs").join(f)).unwrap())
            .collect()
    }

    /// Every process log and the server's (their ends), for failure messages.
    fn all_logs(&self) -> String {
        let mut text = String::new();
        for f in files_under(&self.path("logs")) {
            let log = std::fs::read_to_string(self.path("logs").join(&f)).unwrap_or_default();
            let _ = write!(text, "=== {f} ===\n{}\n", tail(&log, 60));
        }
        let _ = write!(
            text,
            "=== nats-server ===\n{}\n",
            tail(&self.nats.log(), 30)
        );
        text
    }

    /// `logveil run` over `inputs` into `out` (same pipeline); returns its summary.
    fn batch(&self, inputs: &[&Path], out: &Path) -> serde_json::Value {
        crate::util::batch_run(&self.pipeline.0, inputs, out)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap()
}

/// The rows of one Parquet file, as JSON strings, sorted.
fn file_rows(path: &Path) -> Vec<String> {
    let mut rows: Vec<String> = read_batches(path)
        .iter()
        .flat_map(batch_rows)
        .map(|r| r.to_string())
        .collect();
    rows.sort();
    rows
}

/// The files of a report a reader sees (hidden files are temporary files of a killed write).
fn visible_files(out: &Path, report: &str) -> Vec<String> {
    files_under(&out.join(report))
        .into_iter()
        .filter(|f| {
            !Path::new(f)
                .iter()
                .any(|c| c.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// The merged reports equal the batch run's: the same files (partitions), the same rows in
/// each. On a difference, names every file and row that differs (the first 10 of each).
fn assert_same_reports(merged: &Path, batch: &Path, what: &str, context: &str) {
    let mut problems = Vec::new();
    for report in REPORTS {
        let m = visible_files(merged, report);
        let b = visible_files(batch, report);
        assert!(
            !b.is_empty(),
            "{what}: {report}: the batch run wrote nothing"
        );
        let only = |x: &[String], y: &[String]| -> Vec<String> {
            x.iter().filter(|f| !y.contains(f)).cloned().collect()
        };
        let (only_m, only_b) = (only(&m, &b), only(&b, &m));
        if !only_m.is_empty() || !only_b.is_empty() {
            problems.push(format!(
                "{report}: files only in merge {only_m:?}, only in run {only_b:?}"
            ));
        }
        for f in b.iter().filter(|f| m.contains(f)) {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            let (mr, br) = (
                file_rows(&merged.join(report).join(f)),
                file_rows(&batch.join(report).join(f)),
            );
            for r in &mr {
                *counts.entry(r.clone()).or_default() += 1;
            }
            for r in &br {
                *counts.entry(r.clone()).or_default() -= 1;
            }
            let extra: Vec<&String> = counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, _)| r)
                .collect();
            let missing: Vec<&String> = counts
                .iter()
                .filter(|(_, n)| **n < 0)
                .map(|(r, _)| r)
                .collect();
            if extra.is_empty() && missing.is_empty() {
                continue;
            }
            let show = |rows: &[&String]| {
                rows.iter().take(10).fold(String::new(), |mut text, r| {
                    let _ = write!(text, "\n      {r}");
                    text
                })
            };
            problems.push(format!(
                "{report}/{f}: {} rows merged, {} in the run\n    only in merge ({}):{}\n    only in run ({}):{}",
                mr.len(),
                br.len(),
                extra.len(),
                show(&extra),
                missing.len(),
                show(&missing)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: the merged reports differ from `logveil run`:\n  {}\n{context}",
        problems.join("\n  ")
    );
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn assert_same_snapshot(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k).is_some_and(|a| a != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        added.is_empty() && removed.is_empty() && changed.is_empty(),
        "{what}: added {added:?}, removed {removed:?}, changed {changed:?}"
    );
}

/// One message as `JetStream` stores it in a `msgs/*.blk` file of the `-sd` directory
/// (nats-server 2.9 file store: `u32 length | hbit`, `u64 sequence`, `i64 time`, `u16`
/// subject length, subject, with headers `u32` length and headers, payload, 8-byte hash;
/// little-endian).
#[derive(Debug)]
struct StoredMsg {
    stream: String,
    seq: u64,
    subject: String,
    headers: String,
    payload: Vec<u8>,
}

impl StoredMsg {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn stored_messages(store: &Path) -> Vec<StoredMsg> {
    const HBIT: u32 = 1 << 31;
    const EBIT: u64 = 1 << 63;
    let mut msgs = Vec::new();
    for file in crate::nats::store_files(store) {
        if file.extension().is_none_or(|e| e != "blk") {
            continue;
        }
        // .../streams/<STREAM>/msgs/N.blk
        let stream = file
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let buf = std::fs::read(&file).unwrap();
        let mut at = 0;
        while at + 22 <= buf.len() {
            let u32_at = |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap());
            let rl = u32_at(at);
            let len = (rl & !HBIT) as usize;
            if len < 22 + 8 || at + len > buf.len() {
                break;
            }
            let rec = &buf[at..at + len];
            let seq = u64::from_le_bytes(rec[4..12].try_into().unwrap());
            let slen = u16::from_le_bytes(rec[20..22].try_into().unwrap()) as usize;
            let mut i = 22 + slen;
            let subject = String::from_utf8_lossy(&rec[22..i]).into_owned();
            let mut headers = String::new();
            if rl & HBIT != 0 {
                let hlen = u32::from_le_bytes(rec[i..i + 4].try_into().unwrap()) as usize;
                headers = String::from_utf8_lossy(&rec[i + 4..i + 4 + hlen]).into_owned();
                i += 4 + hlen;
            }
            let payload = rec[i..len - 8].to_vec();
            if seq & EBIT == 0 {
                msgs.push(StoredMsg {
                    stream: stream.clone(),
                    seq,
                    subject,
                    headers,
                    payload,
                });
            }
            at += len;
        }
    }
    msgs
}

/// The event messages of the test site's stream (subjects `logveil.t.<p>`).
fn event_messages(store: &Path) -> Vec<StoredMsg> {
    stored_messages(store)
        .into_iter()
        .filter(|m| m.stream == "LOGVEIL_T" && m.subject.starts_with("logveil.t."))
        .collect()
}

/// The lines the stored batches say they read (each counted in one message).
fn lines_in(msgs: &[StoredMsg]) -> u64 {
    msgs.iter()
        .map(|m| {
            logveil_privacy::wire::decode(&m.payload)
                .unwrap_or_else(|e| panic!("message {} does not decode: {e}", m.seq))
                .header
                .lines_read
        })
        .sum()
}

/// Every zstd frame found in `bytes` (anywhere: a payload may frame it with a version or
/// wrap each buffer), decompressed as far as it decodes.
fn zstd_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let mut frames = Vec::new();
    for i in memchr_all(bytes, &MAGIC) {
        let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(&bytes[i..]) else {
            continue;
        };
        let mut out = Vec::new();
        // Bounded: 256 MiB of output per frame at most.
        let _ = decoder.single_frame().take(256 << 20).read_to_end(&mut out);
        if !out.is_empty() {
            frames.push(out);
        }
    }
    frames
}

fn memchr_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The raw identifiers of the samples, indexed by their first 6 bytes (all are at least 6
/// long), to search megabytes for thousands of them at once.
struct IdIndex(HashMap<[u8; 6], Vec<String>>);

impl IdIndex {
    fn new() -> Self {
        let mut map: HashMap<[u8; 6], Vec<String>> = HashMap::new();
        for id in raw_identifiers() {
            let key: [u8; 6] = id.as_bytes()[..6].try_into().unwrap();
            map.entry(key).or_default().push(id);
        }
        Self(map)
    }

    /// The first raw identifier found in `hay`, if any.
    fn find(&self, hay: &[u8]) -> Option<&str> {
        if !memchr_all(hay, b"@example.").is_empty() {
            return Some("an e-mail address (@example.)");
        }
        (0..hay.len().saturating_sub(5)).find_map(|i| {
            let key: [u8; 6] = hay[i..i + 6].try_into().unwrap();
            self.0
                .get(&key)?
                .iter()
                .find(|id| hay[i..].starts_with(id.as_bytes()))
                .map(String::as_str)
        })
    }

    /// Also inside every zstd frame of `bytes` (compressed pages, payloads).
    fn assert_absent(&self, bytes: &[u8], what: &str) {
        for frame in zstd_frames(bytes) {
            if let Some(id) = self.find(&frame) {
                panic!(
                    "a raw identifier ({} chars, starting {:?}) is in {what}, in a zstd frame",
                    id.len(),
                    &id[..3.min(id.len())]
                );
            }
        }
        if let Some(id) = self.find(bytes) {
            panic!(
                "a raw identifier ({} chars, starting {:?}) is in {what}",
                id.len(),
                &id[..3.min(id.len())]
            );
        }
    }
}

/// Two growing files, two edges, three aggregators; one edge and one aggregator killed with SIGKILL
/// mid-way and restarted; then one merge. The result must be what `logveil run` writes
/// over both files.
#[test]
fn two_edges_three_aggregators_with_kills_equal_one_run() {
    let Some(s) = Scaleout::new("scaleout-kills") else {
        return;
    };
    let started = Instant::now();
    let logs = s.path("logs-web");
    std::fs::create_dir_all(&logs).unwrap();
    let files = [logs.join("web1.log"), logs.join("web2.log")];
    let servers = two_servers();
    let total: usize = servers.iter().map(Vec::len).sum();

    // Both files grow in slices of 50 lines every 20 ms (about 4 s); every third slice ends
    // in the middle of a line, finished by the next one.
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (files, written) = (files.clone(), Arc::clone(&written));
        std::thread::spawn(move || {
            let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
            let mut next = [0usize; 2];
            let mut slice = 0;
            while next[0] < servers[0].len() || next[1] < servers[1].len() {
                for k in 0..2 {
                    let end = (next[k] + 50).min(servers[k].len());
                    let mut bytes = std::mem::take(&mut pending[k]);
                    for line in &servers[k][next[k]..end] {
                        bytes.extend_from_slice(line);
                    }
                    if slice % 3 == 0 && end < servers[k].len() && end > next[k] {
                        let last = servers[k][end - 1].len();
                        pending[k] = bytes.split_off(bytes.len() - last / 2);
                    }
                    written.fetch_add(end - next[k], Ordering::SeqCst);
                    next[k] = end;
                    append(&files[k], &bytes);
                }
                slice += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            for k in 0..2 {
                append(&files[k], &std::mem::take(&mut pending[k]));
            }
        })
    };
    let wait_written = |fraction: f64| {
        let deadline = Instant::now() + Duration::from_mins(1);
        while (written.load(Ordering::SeqCst) as f64) < fraction * total as f64 {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    let mut aggregators: Vec<Proc> = ["0-2", "3-5", "6-7"]
        .iter()
        .map(|p| s.aggregate(p, 5))
        .collect();
    wait_written(0.02);
    let mut edges = [s.edge("web1", &files[0], 2), s.edge("web2", &files[1], 2)];

    wait_written(1.0 / 3.0);
    edges[1].kill9_and_restart();
    wait_written(2.0 / 3.0);
    // Once it has committed something, so the kill loses work it must redo.
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&s.partials()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no partial written:\n{}",
            s.all_logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    aggregators[1].kill9_and_restart();
    writer.join().unwrap();
    let writing_done = started.elapsed();
    for edge in &mut edges {
        assert!(
            edge.exited().is_none(),
            "{} exited while its file was still growing (a stall longer than --idle-exit?):\n{}",
            edge.name,
            s.all_logs()
        );
    }

    for edge in &mut edges {
        s.wait_success(edge, Duration::from_secs(90));
    }
    for aggregator in &mut aggregators {
        s.wait_success(aggregator, Duration::from_mins(2));
    }
    let consumed = started.elapsed();
    s.merge();

    let batch_out = s.path("batch");
    let batch = s.batch(&[&files[0], &files[1]], &batch_out);
    assert_eq!(
        batch["lines_read"].as_u64().unwrap() as usize,
        total,
        "the batch run reads every line once"
    );
    // The edges read every line once, across the kill, none late.
    let edge_summaries =
        ["web1", "web2"].map(|h| summary(&s.path(&format!("edge-{h}.summary.json"))));
    let read: u64 = edge_summaries
        .iter()
        .map(|e| e["lines_read"].as_u64().unwrap())
        .sum();
    assert_eq!(
        read as usize, total,
        "lines read by both edges: {edge_summaries:?}"
    );
    for e in &edge_summaries {
        assert_eq!(e["lines_late"], 0, "late lines: {e}");
    }
    assert_same_reports(
        &s.out(),
        &batch_out,
        "2 edges, 3 aggregators, kills",
        &s.all_logs(),
    );
    eprintln!("scale-out: {}", s.nats.command_line());
    eprintln!(
        "scale-out: {total} lines: written in {:.1} s, consumed at {:.1} s, merged and compared at {:.1} s",
        writing_done.as_secs_f64(),
        consumed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The same input published twice (the edge's state lost), messages delivered again (an
/// aggregator killed right after its first partial, before it acked), `merge` run again:
/// no count changes, no final file changes.
#[test]
fn replays_change_nothing() {
    let Some(mut s) = Scaleout::new("scaleout-replays") else {
        return;
    };
    let input = s.path("web1.log");
    let lines = sample_lines();
    std::fs::write(&input, lines.concat()).unwrap();

    // 1. The whole file, published once.
    s.wait_success(&mut s.edge("web1", &input, 1), Duration::from_mins(1));
    let published = event_messages(&s.nats.store_dir());
    assert_eq!(
        lines_in(&published),
        lines.len() as u64,
        "lines counted by the stored batches:\n{}",
        s.all_logs()
    );

    // 2. An aggregator killed the moment its first partial appears (between writing
    //    partials and acking them): the restarted one gets those messages again.
    let mut first = s.aggregate("0-7", 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&s.partials()).is_empty() {
        assert!(
            first.exited().is_none(),
            "the aggregator exited before writing a partial:\n{}",
            first.logs()
        );
        assert!(
            Instant::now() < deadline,
            "no partial written:\n{}",
            s.all_logs()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    first.kill9();
    drop(first);
    s.wait_success(&mut s.aggregate("0-7", 3), Duration::from_secs(90));
    let (_, merged) = s.merge();
    let batch_out = s.path("batch");
    s.batch(&[&input], &batch_out);
    assert_same_reports(
        &s.out(),
        &batch_out,
        "aggregator killed before acking",
        &s.all_logs(),
    );
    let finals = snapshot(&s.out());

    // 3. Merge again: nothing new, every final byte-identical.
    let (again, again_summary) = s.merge();
    assert_same_snapshot(&finals, &snapshot(&s.out()), "merge run again");
    assert_eq!(
        again_summary["windows_written"],
        0,
        "merge run again writes nothing: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(
        again_summary["windows_unchanged"], merged["windows_written"],
        "merge run again finds every window unchanged"
    );

    // 4. The edge's state lost (and the server restarted meanwhile: it rebuilds its
    //    duplicate window from the store): the same file published again is dropped by the
    //    server (same message ids), so the stream holds no new event message...
    std::fs::remove_dir_all(s.edge_state("web1")).unwrap();
    s.nats.restart();
    s.wait_success(&mut s.edge("web1", &input, 1), Duration::from_mins(1));
    let republished = event_messages(&s.nats.store_dir());
    let ids = |msgs: &[StoredMsg]| -> Vec<String> {
        let mut ids: Vec<String> = msgs
            .iter()
            .filter_map(|m| m.header("Nats-Msg-Id").map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&republished),
        ids(&published),
        "message ids stored after publishing the same file twice"
    );
    assert_eq!(
        republished.len(),
        published.len(),
        "event messages stored after publishing the same file twice"
    );
    assert_eq!(
        lines_in(&republished),
        lines.len() as u64,
        "lines counted by the stored batches"
    );
    let replay = summary(&s.path("edge-web1.summary.json"));
    assert!(
        replay["duplicates"].as_u64().unwrap() > 0,
        "the edge saw the server drop its replayed messages: {replay}"
    );
    // ...and aggregating and merging again change nothing.
    s.wait_success(&mut s.aggregate("0-7", 2), Duration::from_mins(1));
    let (_, last) = s.merge();
    assert_same_snapshot(
        &finals,
        &snapshot(&s.out()),
        "after the replayed publication",
    );
    assert_eq!(last["windows_written"], 0, "after the replayed publication");
}

/// With the default locations (partials in `<output dir>-partials`, beside it): the output
/// directory holds exactly the files `logveil run` writes, with the same metadata keys (no
/// partial, no temporary file), and neither the stored messages, the partials nor any log
/// carry a raw identifier.
#[test]
fn partials_stay_internal_and_the_wire_carries_no_raw_identifier() {
    let Some(s) = Scaleout::with_default_locations("scaleout-layout") else {
        return;
    };
    let inputs: Vec<PathBuf> = ["access-2026-11-01.log", "access-2026-11-02.log"]
        .iter()
        .map(|d| repo().join("sample-logs").join(d))
        .collect();
    let glob = repo().join("sample-logs/access-2026-11-0*.log");
    s.wait_success(&mut s.edge("web1", &glob, 1), Duration::from_mins(1));
    s.wait_success(&mut s.aggregate("0-7", 2), Duration::from_mins(1));
    let (merge, _) = s.merge();
    let merged_files = files_under(&s.out());
    let batch_out = s.path("batch");
    s.batch(&[&inputs[0], &inputs[1]], &batch_out);

    // The layout: exactly the run's files, each with the run's metadata keys; the
    // partials apart.
    let out = s.out();
    assert_eq!(
        merged_files,
        files_under(&batch_out),
        "the files under the output directory"
    );
    for f in &merged_files {
        assert!(f.ends_with(".parquet") && !f.contains("partial"), "{f}");
        let keys = |base: &Path| -> Vec<String> {
            key_value_metadata(&base.join(f)).into_keys().collect()
        };
        assert_eq!(keys(&out), keys(&batch_out), "{f}: metadata keys");
    }
    let partials = files_under(&s.partials());
    assert!(
        !partials.is_empty(),
        "no partials under the default {}",
        s.partials().display()
    );
    assert_same_reports(&out, &batch_out, "default locations", &s.all_logs());

    // Nothing `JetStream` stores carries a raw identifier: not the store's raw bytes, not a
    // subject or message id, not a payload decompressed.
    let ids = IdIndex::new();
    // The scan finds what it looks for, plain and compressed.
    let raw = sample("access-2026-11-01.log");
    assert!(ids.find(&raw).is_some(), "the scan finds raw identifiers");
    let compressed = zstd::encode_all(&raw[..4096], 3).unwrap();
    assert!(
        zstd_frames(&compressed)
            .iter()
            .any(|f| ids.find(f).is_some()),
        "the scan finds them in zstd frames"
    );
    let store = s.nats.store_dir();
    for f in crate::nats::store_files(&store) {
        ids.assert_absent(&std::fs::read(&f).unwrap(), &format!("{}", f.display()));
    }
    let msgs = event_messages(&store);
    let subjects: std::collections::BTreeSet<&str> =
        msgs.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects.len(),
        8,
        "events in every partition's subject: {subjects:?}"
    );
    let mut decompressed = 0;
    let mut events = 0;
    for m in &msgs {
        let id = m.header("Nats-Msg-Id");
        assert!(id.is_some(), "message {} has no Nats-Msg-Id", m.seq);
        let what = format!("message {} ({})", m.seq, m.subject);
        ids.assert_absent(&m.payload, &what);
        ids.assert_absent(id.unwrap().as_bytes(), &format!("{what}: Nats-Msg-Id"));
        decompressed += zstd_frames(&m.payload).iter().map(Vec::len).sum::<usize>();
        // Decoded (`logveil_privacy::wire`): every event in its visitor's partition, and
        // nothing in any field that is a raw identifier.
        let batch = logveil_privacy::wire::decode(&m.payload)
            .unwrap_or_else(|e| panic!("{what} does not decode: {e}"));
        let partition: u32 = m.subject.rsplit('.').next().unwrap().parse().unwrap();
        assert_eq!(batch.header.partition, partition, "{what}: header");
        for e in &batch.events {
            assert_eq!(
                e.visitor.partition(8),
                partition,
                "{what}: an event's partition"
            );
        }
        ids.assert_absent(format!("{batch:?}").as_bytes(), &format!("{what}, decoded"));
        events += batch.events.len();
    }
    assert!(
        decompressed > 0 && events > 0,
        "{} event messages: {decompressed} bytes decompressed, {events} events",
        msgs.len()
    );
    // The partials are pseudonymous too, and so are the logs and what merge printed.
    for f in &partials {
        let bytes = std::fs::read(s.partials().join(f)).unwrap();
        ids.assert_absent(&bytes, &format!("partial {f}"));
    }
    ids.assert_absent(&s.full_logs(), "the process logs");
    ids.assert_absent(&merge.stdout, "merge's stdout");
    ids.assert_absent(&merge.stderr, "merge's stderr");
}

/// Processes starting together race to create the stream: every one must start (the loser
/// opens the winner's stream). CI hit this once with two edges (nats-server 2.9 answered the
/// loser's create with "subjects overlap with an existing stream"); the race is narrow and
/// does not reproduce on demand, so this starts 16 at once to give it every chance.
#[test]
fn processes_starting_together_share_one_stream() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let pipeline = EditedPipeline::new("scaleout-race", |p| p + SCALEOUT);
    let children: Vec<Child> = (0..16)
        .map(|i| {
            bin()
                .current_dir(repo())
                .arg("edge")
                .arg(&pipeline.0)
                .args(["--nats", &nats.url, "--retire"])
                .args(["--host", &format!("web{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "an edge started with the others failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
