//! `logveil daemon`: exactly-once output through appends, rotations (rename and
//! copytruncate), truncation and replacement while stopped, SIGKILL, SIGTERM and SIGHUP —
//! always compared with `logveil run` over the same lines, report by report, cell by cell.
//!
//! The crash harness is seedable: `LOGVEIL_CRASH_SEED=N LOGVEIL_CRASH_CYCLES=M cargo test
//! -p logveil --test it daemon::crash_harness -- --nocapture` (`scripts/crash-harness`
//! runs 200 cycles).

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::{batch_rows, bin, read_batches, repo, sample_lines};

const REPORTS: [&str; 4] = [
    "demographics_daily",
    "page_views_hourly",
    "referrers_daily",
    "visitors_daily",
];

/// splitmix64: small, seedable, good enough to pick moments and sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Appends held lines to `logs/access.log` and rotates it like logrotate: by rename
/// (`access.log` → `access.log.1`, older ones shifted up) or by copytruncate.
struct Writer {
    dir: PathBuf,
    lines: Vec<Vec<u8>>,
    next: usize,
    /// The rest of a line written only in part.
    pending: Vec<u8>,
    rotations: u32,
    renames: u32,
    copytruncates: u32,
    /// A copytruncate copied but not truncated yet (logrotate copies, then truncates; a
    /// daemon may look, or be killed, in between). Nothing is appended meanwhile.
    copied: bool,
}

impl Writer {
    fn new(dir: &Path, lines: Vec<Vec<u8>>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Self {
            dir: dir.to_owned(),
            lines,
            next: 0,
            pending: Vec::new(),
            rotations: 0,
            renames: 0,
            copytruncates: 0,
            copied: false,
        }
    }

    fn live(&self) -> PathBuf {
        self.dir.join("access.log")
    }

    fn left(&self) -> usize {
        self.lines.len() - self.next
    }

    fn write(&self, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Appends `n` lines; with `split`, the last one only in part (the rest comes first
    /// with the next append).
    fn append(&mut self, n: usize, split: bool, rng: &mut Rng) {
        self.truncate();
        let mut bytes = std::mem::take(&mut self.pending);
        let n = n.min(self.left());
        for line in &self.lines[self.next..self.next + n] {
            bytes.extend_from_slice(line);
        }
        self.next += n;
        if split && n > 0 {
            let last = self.lines[self.next - 1].len();
            let cut = bytes.len() - last + rng.below(last as u64) as usize;
            self.pending = bytes.split_off(cut);
        }
        if !bytes.is_empty() {
            self.write(&bytes);
        }
    }

    fn finish_line(&mut self) {
        self.truncate();
        let bytes = std::mem::take(&mut self.pending);
        if !bytes.is_empty() {
            self.write(&bytes);
        }
    }

    fn shift(&self) {
        for i in (1..=self.rotations).rev() {
            let from = self.dir.join(format!("access.log.{i}"));
            if from.exists() {
                std::fs::rename(&from, self.dir.join(format!("access.log.{}", i + 1))).unwrap();
            }
        }
    }

    /// Rotates at a line boundary (a writer never rotates mid-line).
    fn rotate(&mut self, copytruncate: bool) {
        self.finish_line();
        if !self.live().exists() {
            return;
        }
        self.shift();
        let first = self.dir.join("access.log.1");
        if copytruncate {
            std::fs::copy(self.live(), &first).unwrap();
            self.copied = true;
            self.copytruncates += 1;
        } else {
            std::fs::rename(self.live(), &first).unwrap();
            self.renames += 1;
        }
        self.rotations += 1;
    }

    /// The second half of copytruncate.
    fn truncate(&mut self) {
        if std::mem::take(&mut self.copied) {
            OpenOptions::new()
                .write(true)
                .open(self.live())
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    }

    /// One random step: mostly appends, sometimes a rotation (a copytruncate's truncation
    /// comes a step after its copy).
    fn step(&mut self, rng: &mut Rng, quota: &mut usize) {
        if self.copied {
            // The copy sits beside the original for a while (logrotate copies big files).
            if rng.chance(0.3) {
                self.truncate();
            }
        } else if rng.chance(0.06) {
            let copytruncate = rng.chance(0.5);
            self.rotate(copytruncate);
        } else {
            let n = (1 + rng.below(120) as usize).min(*quota);
            *quota -= n;
            self.append(n, rng.chance(0.3), rng);
        }
    }
}

/// A running daemon with its logs going to a file (kept across restarts for asserts).
struct Daemon {
    child: Child,
    log: PathBuf,
}

struct Setup {
    _tmp: tempfile::TempDir,
    logs: PathBuf,
    out: PathBuf,
    state: PathBuf,
    /// `--privacy-state`: the audiences' ledgers, kept across restarts like `state`.
    privacy: PathBuf,
    daemon_log: PathBuf,
    summary: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Self {
            logs: root.join("logs"),
            out: root.join("out"),
            state: root.join("state"),
            privacy: root.join("privacy-state"),
            daemon_log: root.join("daemon.log"),
            summary: root.join("summary.json"),
            _tmp: tmp,
        }
    }

    fn glob(&self) -> String {
        self.logs.join("access.log*").display().to_string()
    }

    fn start(&self, pipeline: &Path, extra: &[&str]) -> Daemon {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.daemon_log)
            .unwrap();
        let child = bin()
            .current_dir(repo())
            .arg("daemon")
            .arg(pipeline)
            .args(["--input", &self.glob()])
            .arg("--out")
            .arg(&self.out)
            .arg("--state")
            .arg(&self.state)
            .arg("--privacy-state")
            .arg(&self.privacy)
            .arg("--summary")
            .arg(&self.summary)
            .args(extra)
            .env("LOGVEIL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Daemon {
            child,
            log: self.daemon_log.clone(),
        }
    }

    /// Runs the daemon with `--idle-exit 1` until it stops; it must exit 0.
    fn drain(&self) -> serde_json::Value {
        self.drain_with(&daily())
    }

    fn drain_with(&self, pipeline: &Path) -> serde_json::Value {
        let mut d = self.start(pipeline, &["--idle-exit", "1"]);
        let status = d.wait_timeout(Duration::from_secs(90));
        assert!(
            status.is_some_and(|s| s.success()),
            "draining daemon: {status:?}\n{}",
            d.logs()
        );
        serde_json::from_slice(&std::fs::read(&self.summary).unwrap()).unwrap()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
    }
}

impl Daemon {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name}");
    }

    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("daemon exited by itself ({status}):\n{}", self.logs());
        }
    }

    fn kill9(mut self) {
        self.assert_running();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the logs contain `text` (JSON logs, one object a line).
    fn wait_for_log(&mut self, text: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| l.contains(text)) {
                return line.to_owned();
            }
            self.assert_running();
            assert!(start.elapsed() < limit, "no `{text}` in the logs:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn daily() -> PathBuf {
    repo().join("pipelines/daily.toml")
}

/// `logveil run` over `inputs` into `out`; returns its summary.
fn batch(inputs: &[String], out: &Path) -> serde_json::Value {
    batch_with(&daily(), inputs, out)
}

fn batch_with(pipeline: &Path, inputs: &[String], out: &Path) -> serde_json::Value {
    crate::util::batch_run(pipeline, inputs, out)
}

/// The published Parquet files of a report (hidden temporary files of a killed write are
/// not part of the output).
fn part_files(out: &Path, report: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(out.join(report)) else {
        return files;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
            {
                files.push(f);
            }
        }
    }
    files.sort();
    files
}

/// Same partition files, same rows in each: report by report, cell by cell.
fn assert_same_output(daemon_out: &Path, batch_out: &Path, what: &str) {
    assert_same_reports(daemon_out, batch_out, &REPORTS, what);
}

fn assert_same_reports(daemon_out: &Path, batch_out: &Path, reports: &[&str], what: &str) {
    for &report in reports {
        let rel = |files: Vec<PathBuf>, base: &Path| -> Vec<PathBuf> {
            files
                .into_iter()
                .map(|f| f.strip_prefix(base).unwrap().to_owned())
                .collect()
        };
        let d = part_files(daemon_out, report);
        let b = part_files(batch_out, report);
        assert_eq!(
            rel(d.clone(), daemon_out),
            rel(b.clone(), batch_out),
            "{what}: {report}: partitions"
        );
        assert!(!b.is_empty(), "{report}: batch wrote nothing");
        for (df, bf) in d.iter().zip(&b) {
            let rows = |f: &Path| {
                let mut rows: Vec<String> = read_batches(f)
                    .iter()
                    .flat_map(batch_rows)
                    .map(|r| r.to_string())
                    .collect();
                rows.sort();
                rows
            };
            let (dr, br) = (rows(df), rows(bf));
            assert_eq!(dr.len(), br.len(), "{what}: {}: row count", bf.display());
            for (a, e) in dr.iter().zip(&br) {
                assert_eq!(a, e, "{what}: {}", bf.display());
            }
        }
    }
}

fn assert_same_lines(daemon: &serde_json::Value, batch: &serde_json::Value, what: &str) {
    for key in ["lines_read", "lines_parsed", "lines_rejected"] {
        assert_eq!(daemon[key], batch[key], "{what}: {key}");
    }
    assert_eq!(daemon["lines_late"], 0, "{what}: late lines");
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn crash_harness_output_equals_batch() {
    let seed = env_u64("LOGVEIL_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let cycles = env_u64("LOGVEIL_CRASH_CYCLES").unwrap_or(20).max(1) as usize;
    eprintln!("crash harness: seed {seed}, {cycles} cycles (LOGVEIL_CRASH_SEED={seed} to repeat)");
    let what = format!("seed {seed}");
    let mut rng = Rng(seed);
    let setup = Setup::new();
    let mut writer = Writer::new(&setup.logs, sample_lines());
    // Frequent looks and checkpoints: more interleavings with the writer and the kills.
    let pipeline = crate::util::EditedPipeline::new("daemon-crash", |s| {
        s + "\n[daemon]\npoll_interval = \"20ms\"\ncheckpoint_interval = \"100ms\"\n"
    });
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut quota = writer.left().div_ceil(cycles - cycle);
        let daemon = setup.start(&pipeline.0, &[]);
        // Let it run, while writing, for a random time; then SIGKILL.
        let run_for = Duration::from_millis(50 + rng.below(500));
        let t = Instant::now();
        while t.elapsed() < run_for {
            // Steps go on when the cycle's lines are written: rotations, truncations.
            if rng.chance(0.7) {
                writer.step(&mut rng, &mut quota);
            }
            std::thread::sleep(Duration::from_millis(rng.below(15)));
        }
        daemon.kill9();
        // Sometimes the logs move on while the daemon is down.
        if rng.chance(0.5) {
            for _ in 0..rng.below(4) {
                writer.step(&mut rng, &mut quota);
            }
        }
        if cycle % 10 == 9 {
            eprintln!(
                "  cycle {}: {} lines written, {} rotations, {:.1} s",
                cycle + 1,
                writer.next,
                writer.rotations,
                started.elapsed().as_secs_f64()
            );
        }
    }
    writer.append(writer.left(), false, &mut rng);
    writer.finish_line();
    let daemon = setup.drain();
    // The daemon's logs, kept for a failure (they hold paths and offsets, no log lines).
    let kept = std::env::temp_dir().join(format!("logveil-crash-harness-{seed}.log"));
    let _ = std::fs::copy(&setup.daemon_log, &kept);
    let what = format!("{what} (daemon logs: {})", kept.display());

    let batch_out = setup.out.with_file_name("batch");
    let batch = batch(&[setup.glob()], &batch_out);
    assert_eq!(
        batch["lines_read"].as_u64().unwrap() as usize,
        writer.lines.len(),
        "{what}: the batch run reads every line once"
    );
    assert_same_lines(&daemon, &batch, &what);
    assert_same_output(&setup.out, &batch_out, &what);
    eprintln!(
        "crash harness: seed {seed}: {cycles} cycles, {} SIGKILLs, {} rotations ({} rename, {} copytruncate), {} lines: output equals the batch run ({:.1} s)",
        cycles,
        writer.rotations,
        writer.renames,
        writer.copytruncates,
        writer.lines.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn truncated_copied_and_replaced_while_stopped_lose_and_repeat_nothing() {
    let setup = Setup::new();
    let lines: Vec<Vec<u8>> = sample_lines().into_iter().take(6000).collect();
    let seg = |a: usize, b: usize| lines[a..b].concat();
    let mut writer = Writer::new(&setup.logs, Vec::new());
    let mut all = Vec::new();
    let mut write = |bytes: Vec<u8>, writer: &mut Writer| {
        writer.write(&bytes);
        all.extend(bytes);
    };

    // 1. The daemon reads 1000 lines and stops.
    write(seg(0, 1000), &mut writer);
    setup.drain();
    // 2. Stopped: 500 more lines, then copytruncate, then 500 lines in the emptied file.
    write(seg(1000, 1500), &mut writer);
    writer.rotate(true);
    writer.truncate();
    write(seg(1500, 2000), &mut writer);
    setup.drain();
    assert!(
        setup
            .logs()
            .contains("continuing in the copy made by copytruncate while stopped"),
        "{}",
        setup.logs()
    );
    // 3. Stopped: truncated in place and rewritten longer than the offset was.
    OpenOptions::new()
        .write(true)
        .open(writer.live())
        .unwrap()
        .set_len(0)
        .unwrap();
    write(seg(2000, 3500), &mut writer);
    setup.drain();
    assert!(
        setup.logs().contains("while stopped\""),
        "truncation logged: {}",
        setup.logs()
    );
    // 4. Stopped: deleted and replaced by a new file (which may get the same inode).
    std::fs::remove_file(writer.live()).unwrap();
    write(seg(3500, 6000), &mut writer);
    let daemon = setup.drain();
    let logs = setup.logs();
    assert!(
        logs.contains("checkpointed file is gone") || logs.contains("replaced"),
        "replacement logged: {logs}"
    );

    // The same lines in one file, for the batch run.
    let all_path = setup.logs.with_file_name("all.log");
    std::fs::write(&all_path, &all).unwrap();
    let batch_out = setup.out.with_file_name("batch");
    let batch = batch(&[all_path.display().to_string()], &batch_out);
    assert_eq!(batch["lines_read"], 6000);
    assert_same_lines(&daemon, &batch, "stopped-file changes");
    assert_same_output(&setup.out, &batch_out, "stopped-file changes");
}

#[test]
fn sigterm_under_load_exits_in_time_and_loses_nothing() {
    let setup = Setup::new();
    let lines = sample_lines();
    let total = lines.len();
    let writer_dir = setup.logs.clone();
    // A writer appending as fast as it can, rotating now and then.
    let writing = std::thread::spawn(move || {
        let mut rng = Rng(7);
        let mut writer = Writer::new(&writer_dir, lines);
        while writer.left() > 0 {
            writer.append(50, false, &mut rng);
            if rng.chance(0.01) {
                writer.rotate(rng.chance(0.5));
            }
        }
        writer.finish_line();
    });
    let mut daemon = setup.start(&daily(), &[]);
    std::thread::sleep(Duration::from_millis(400));
    daemon.assert_running();
    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_timeout(Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: exit 0 within 10 s, got {status:?} after {took:?}\n{}",
        setup.logs()
    );
    writing.join().unwrap();
    let daemon = setup.drain();
    let batch_out = setup.out.with_file_name("batch");
    let batch = batch(&[setup.glob()], &batch_out);
    assert_eq!(batch["lines_read"].as_u64().unwrap() as usize, total);
    assert_same_lines(&daemon, &batch, "sigterm");
    assert_same_output(&setup.out, &batch_out, "sigterm");
}

#[test]
fn sighup_with_an_invalid_pipeline_keeps_running_with_the_old_one() {
    let setup = Setup::new();
    let pipeline = crate::util::EditedPipeline::new("daemon-hup", |s| s);
    let valid = std::fs::read_to_string(&pipeline.0).unwrap();
    let lines = sample_lines();
    let mut writer = Writer::new(&setup.logs, lines[..3000].to_vec());
    let mut rng = Rng(1);
    writer.append(1000, false, &mut rng);
    let mut daemon = setup.start(&pipeline.0, &[]);
    daemon.wait_for_log("following new file", Duration::from_secs(20));

    std::fs::write(
        &pipeline.0,
        valid.replace("bucket = \"day\"", "bucket = \"fortnight\""),
    )
    .unwrap();
    daemon.signal("HUP");
    let refused = daemon.wait_for_log("reload refused", Duration::from_secs(20));
    assert!(
        refused.contains("fortnight"),
        "names the problem: {refused}"
    );
    writer.append(1000, false, &mut rng);
    std::thread::sleep(Duration::from_millis(500));
    daemon.assert_running();

    std::fs::write(&pipeline.0, &valid).unwrap();
    daemon.signal("HUP");
    daemon.wait_for_log("pipeline reloaded", Duration::from_secs(20));
    writer.append(1000, false, &mut rng);
    daemon.signal("TERM");
    let status = daemon.wait_timeout(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let daemon = setup.drain();
    let batch_out = setup.out.with_file_name("batch");
    let batch = batch(&[setup.glob()], &batch_out);
    assert_eq!(batch["lines_read"], 3000);
    assert_same_lines(&daemon, &batch, "sighup");
    assert_same_output(&setup.out, &batch_out, "sighup");
}

fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn metrics_endpoint_serves_counters() {
    let setup = Setup::new();
    let lines = sample_lines();
    let mut writer = Writer::new(&setup.logs, lines[..2000].to_vec());
    let mut rng = Rng(2);
    writer.append(2000, false, &mut rng);
    let mut daemon = setup.start(&daily(), &["--metrics-addr", "127.0.0.1:0"]);
    let line = daemon.wait_for_log("/metrics", Duration::from_secs(20));
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = log["addr"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let start = Instant::now();
    let body = loop {
        let (status, body) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if body.contains("logveil_lines_read_total 2000\n") {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for expected in [
        "# TYPE logveil_lines_read_total counter",
        "logveil_lines_parsed_total ",
        "logveil_lines_rejected_total{reason=\"too_long\"} ",
        "logveil_lines_late_total 0",
        "logveil_windows_written_total ",
        "logveil_file_lag_bytes{file=\"",
        "logveil_joins_total{report=\"demographics_daily\",outcome=\"joined\"} ",
        "logveil_open_windows{report=\"visitors_daily\"} ",
        "logveil_watermark_seconds ",
    ] {
        assert!(body.contains(expected), "missing `{expected}` in\n{body}");
    }
    assert_eq!(
        http_get(&addr, "/healthz"),
        ("HTTP/1.1 200 OK".to_owned(), "ok\n".to_owned())
    );
    assert!(http_get(&addr, "/nope").0.contains("404"));
    daemon.signal("TERM");
    assert!(
        daemon
            .wait_timeout(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn metrics_address_must_be_loopback() {
    let setup = Setup::new();
    std::fs::create_dir_all(&setup.logs).unwrap();
    let mut daemon = setup.start(&daily(), &["--metrics-addr", "0.0.0.0:9464"]);
    let status = daemon.wait_timeout(Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()));
    assert!(
        setup.logs().contains("not a loopback address"),
        "{}",
        setup.logs()
    );
}

#[test]
fn a_key_rotation_takes_effect_without_restart() {
    let setup = Setup::new();
    let key = setup.logs.with_file_name("site.key");
    let keys = |args: &[&str]| {
        let out = bin().args(args).arg(&key).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    keys(&["keygen", "--not-before", "2026-01-01"]);
    let pipeline = crate::util::EditedPipeline::new("daemon-keys", |p| {
        p.replace("../sample-logs/demo.key", key.to_str().unwrap())
            + "\n[daemon]\naccounts_refresh = \"1s\"\n"
    });
    let lines = sample_lines();
    let day1 = lines
        .iter()
        .position(|l| l.windows(11).any(|w| w == b"02/Nov/2026"))
        .unwrap();
    let mut writer = Writer::new(&setup.logs, lines.clone());
    let mut rng = Rng(3);
    writer.append(day1, false, &mut rng);
    let mut daemon = setup.start(&pipeline.0, &["--idle-exit", "4"]);
    daemon.wait_for_log("following new file", Duration::from_secs(20));
    // Rotate while it runs; the next refresh picks the new key up.
    let before = daemon
        .logs()
        .matches("key ring and account snapshot refreshed")
        .count();
    keys(&["keys", "rotate", "--not-before", "2026-11-02"]);
    let start = Instant::now();
    while daemon
        .logs()
        .matches("key ring and account snapshot refreshed")
        .count()
        < before + 2
    {
        daemon.assert_running();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no refresh:\n{}",
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.append(writer.left(), false, &mut rng);
    let status = daemon.wait_timeout(Duration::from_mins(1));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        setup.logs()
    );
    assert_eq!(
        setup.logs().matches("resuming from checkpoint").count(),
        0,
        "one process throughout"
    );
    let listed = keys(&["keys", "list"]);
    let ids: Vec<&str> = listed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    let kv = |day: &str| {
        crate::util::key_value_metadata(
            &setup
                .out
                .join(format!("visitors_daily/date={day}/part-00000.parquet")),
        )
    };
    assert_eq!(kv("2026-11-01")["logveil.key_id"], ids[0]);
    assert_eq!(kv("2026-11-02")["logveil.key_id"], ids[1]);
}

#[test]
fn local_days_weeks_months_and_no_lateness_match_batch() {
    // Asia/Tokyo partitions, week and month buckets, and windows closed the moment the
    // watermark moves on (allowed_lateness 0): in-order input still loses nothing.
    let pipeline = crate::util::EditedPipeline::new("daemon-tz", |p| {
        p.replace(
            "[output]\ndir = \"../out\"\n",
            "[output]\ndir = \"../out\"\ntimezone = \"Asia/Tokyo\"\n",
        ) + r#"
[[report]]
name = "visitors_weekly"
audience = "internal"
purpose = "improve_services"
bucket = "week"
metrics = ["views", "visitors", "bytes"]

[[report]]
name = "pages_monthly"
audience = "internal"
purpose = "improve_services"
bucket = "month"
dimensions = ["page_group"]
metrics = ["views", "visitors"]

[daemon]
allowed_lateness = "0s"
poll_interval = "20ms"
checkpoint_interval = "100ms"
"#
    });
    let setup = Setup::new();
    let lines = sample_lines();
    let total = lines.len();
    let mut writer = Writer::new(&setup.logs, lines);
    let mut rng = Rng(5);
    for round in 0..4 {
        let daemon = setup.start(&pipeline.0, &[]);
        for _ in 0..10 {
            writer.append(total / 40 + 1, rng.chance(0.5), &mut rng);
            if rng.chance(0.3) {
                writer.rotate(round % 2 == 0);
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(100 * round));
        daemon.kill9();
    }
    writer.append(writer.left(), false, &mut rng);
    writer.finish_line();
    let daemon = setup.drain_with(&pipeline.0);
    let batch_out = setup.out.with_file_name("batch");
    let batch = batch_with(&pipeline.0, &[setup.glob()], &batch_out);
    assert_eq!(batch["lines_read"].as_u64().unwrap() as usize, total);
    assert_same_lines(&daemon, &batch, "tz");
    let mut reports = REPORTS.to_vec();
    reports.extend(["visitors_weekly", "pages_monthly"]);
    assert_same_reports(&setup.out, &batch_out, &reports, "tz");
    // Tokyo days: the UTC 2026-11-01..02 lines fall on three local days.
    assert_eq!(part_files(&batch_out, "visitors_daily").len(), 3);
}

#[test]
fn late_lines_are_counted_and_dropped() {
    let setup = Setup::new();
    let lines = sample_lines();
    let mut writer = Writer::new(&setup.logs, lines.clone());
    let mut rng = Rng(9);
    writer.append(lines.len(), false, &mut rng);
    setup.drain();
    // A day after its window closed: the first 100 lines of 2026-11-01 once more.
    let late: Vec<u8> = lines[..100].concat();
    writer.write(&late);
    let daemon = setup.drain();

    let late_path = setup.logs.with_file_name("late.log");
    std::fs::write(&late_path, &late).unwrap();
    let late_only = batch(
        &[late_path.display().to_string()],
        &setup.out.with_file_name("late-only"),
    );
    let all = batch(
        &[setup.logs.join("access.log").display().to_string()],
        &setup.out.with_file_name("all"),
    );
    assert!(daemon["lines_late"].as_u64().unwrap() > 90);
    assert_eq!(daemon["lines_late"], late_only["lines_parsed"]);
    assert_eq!(
        daemon["lines_read"], all["lines_read"],
        "late lines are read"
    );
    // The daemon's files are those of the lines on time.
    let on_time_path = setup.logs.with_file_name("on-time.log");
    std::fs::write(&on_time_path, lines.concat()).unwrap();
    let on_time_out = setup.out.with_file_name("on-time");
    batch(&[on_time_path.display().to_string()], &on_time_out);
    assert_same_output(&setup.out, &on_time_out, "late");
}
