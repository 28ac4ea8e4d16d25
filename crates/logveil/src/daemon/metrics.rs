//! Prometheus `/metrics` (text format 0.0.4) and `/healthz`, served by a small HTTP/1.1
//! responder on a loopback address: one request per connection, at most 16 connections
//! at a time, 5 s per connection.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logveil_ingest::tail::FileStatus;
use logveil_report::JoinCounts;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::checkpoint::LineTotals;

/// What `/metrics` shows. Counters are set by the daemon loop after each step.
#[derive(Debug, Default)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub lines_parsed: AtomicU64,
    pub lines_directives: AtomicU64,
    pub lines_late: AtomicU64,
    pub windows_written: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Unix milliseconds of the last committed checkpoint (0: none yet).
    pub checkpoint_at_ms: AtomicU64,
    /// Unix milliseconds of the loop's last turn (for `/healthz`).
    pub heartbeat_ms: AtomicU64,
    /// The latest event time seen, UTC microseconds (`i64::MIN`: none).
    pub max_event_micros: AtomicI64,
    pub allowed_lateness_micros: AtomicI64,
    pub labelled: Mutex<Labelled>,
}

/// Labelled values, replaced as a whole by the loop.
#[derive(Debug, Default, Clone)]
pub struct Labelled {
    pub rejected: Vec<(String, u64)>,
    pub files: Vec<FileStatus>,
    /// Report → join outcomes (reports that join accounts).
    pub joins: Vec<(String, JoinCounts)>,
    /// Report → open windows.
    pub open_windows: Vec<(String, usize)>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self::default();
        m.max_event_micros.store(i64::MIN, Ordering::Relaxed);
        m.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        m
    }

    pub fn set_lines(&self, lines: &LineTotals) {
        self.lines_read.store(lines.read, Ordering::Relaxed);
        self.lines_parsed.store(lines.parsed, Ordering::Relaxed);
        self.lines_directives
            .store(lines.directives, Ordering::Relaxed);
        self.lines_late.store(lines.late, Ordering::Relaxed);
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The loop turned within the last 30 s (a turn is bounded by one read batch, one
    /// window write and one checkpoint).
    pub fn healthy(&self) -> bool {
        now_ms().saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)) < 30_000
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let counter = |s: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut s,
            "logveil_lines_read_total",
            "Lines read (parsed, rejected or directives).",
            load(&self.lines_read),
        );
        counter(
            &mut s,
            "logveil_lines_parsed_total",
            "Lines parsed into events.",
            load(&self.lines_parsed),
        );
        counter(
            &mut s,
            "logveil_lines_directives_total",
            "W3C # directive lines.",
            load(&self.lines_directives),
        );
        counter(
            &mut s,
            "logveil_lines_late_total",
            "Parsed lines left out of a report because its window had closed (dropped).",
            load(&self.lines_late),
        );
        counter(
            &mut s,
            "logveil_windows_written_total",
            "Report partitions written.",
            load(&self.windows_written),
        );
        counter(
            &mut s,
            "logveil_checkpoints_total",
            "Checkpoints committed by this process.",
            load(&self.checkpoints),
        );
        let labelled = self.labelled.lock().map(|l| l.clone()).unwrap_or_default();
        let _ = writeln!(
            s,
            "# HELP logveil_lines_rejected_total Lines rejected, by reason.\n# TYPE logveil_lines_rejected_total counter"
        );
        for (reason, n) in &labelled.rejected {
            let _ = writeln!(
                s,
                "logveil_lines_rejected_total{{reason=\"{}\"}} {n}",
                label(reason)
            );
        }
        let _ = writeln!(
            s,
            "# HELP logveil_file_bytes_read_total Bytes consumed from a followed file by this process.\n# TYPE logveil_file_bytes_read_total counter"
        );
        for f in &labelled.files {
            let _ = writeln!(
                s,
                "logveil_file_bytes_read_total{{file=\"{}\"}} {}",
                label(&f.path.display().to_string()),
                f.bytes_read
            );
        }
        let _ = writeln!(
            s,
            "# HELP logveil_file_lag_bytes Bytes of a followed file not consumed yet.\n# TYPE logveil_file_lag_bytes gauge"
        );
        for f in &labelled.files {
            let _ = writeln!(
                s,
                "logveil_file_lag_bytes{{file=\"{}\"}} {}",
                label(&f.path.display().to_string()),
                f.size.saturating_sub(f.offset)
            );
        }
        let _ = writeln!(
            s,
            "# HELP logveil_file_offset_bytes Offset consumed in a followed file.\n# TYPE logveil_file_offset_bytes gauge"
        );
        for f in &labelled.files {
            let _ = writeln!(
                s,
                "logveil_file_offset_bytes{{file=\"{}\",rotated=\"{}\"}} {}",
                label(&f.path.display().to_string()),
                !f.in_glob,
                f.offset
            );
        }
        let _ = writeln!(
            s,
            "# HELP logveil_joins_total Views by account join outcome (reports that join accounts; open state and written windows).\n# TYPE logveil_joins_total counter"
        );
        for (report, j) in &labelled.joins {
            for (outcome, n) in [
                ("joined", j.joined),
                ("no_account", j.no_account),
                ("no_consent", j.no_consent),
                ("deleted", j.deleted),
            ] {
                let _ = writeln!(
                    s,
                    "logveil_joins_total{{report=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(report)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP logveil_open_windows Report partitions open (not yet closed by the watermark).\n# TYPE logveil_open_windows gauge"
        );
        for (report, n) in &labelled.open_windows {
            let _ = writeln!(
                s,
                "logveil_open_windows{{report=\"{}\"}} {n}",
                label(report)
            );
        }
        let checkpoint_at = load(&self.checkpoint_at_ms);
        if checkpoint_at > 0 {
            let _ = writeln!(
                s,
                "# HELP logveil_checkpoint_age_seconds Seconds since the last checkpoint was committed.\n# TYPE logveil_checkpoint_age_seconds gauge\nlogveil_checkpoint_age_seconds {:.3}",
                now_ms().saturating_sub(checkpoint_at) as f64 / 1000.0
            );
        }
        let max_event = self.max_event_micros.load(Ordering::Relaxed);
        if max_event != i64::MIN {
            let lateness = self.allowed_lateness_micros.load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "# HELP logveil_watermark_seconds The watermark (latest event time − allowed lateness), Unix seconds.\n# TYPE logveil_watermark_seconds gauge\nlogveil_watermark_seconds {:.3}",
                (max_event - lateness) as f64 / 1e6
            );
            let lag = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
                - max_event as f64 / 1e6;
            let _ = writeln!(
                s,
                "# HELP logveil_event_lag_seconds Wall clock minus the latest event time seen.\n# TYPE logveil_event_lag_seconds gauge\nlogveil_event_lag_seconds {lag:.3}"
            );
        }
        s
    }
}

/// Serves `/metrics` and `/healthz` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(16));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Busy: drop the connection rather than queue it.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), respond(stream, &metrics)).await;
            drop(slot);
        });
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render()),
        ("GET" | "HEAD", "/healthz") if metrics.healthy() => ("200 OK", "ok\n".to_owned()),
        ("GET" | "HEAD", "/healthz") => (
            "503 Service Unavailable",
            "stalled: the daemon loop has not turned for 30 s\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: try /metrics or /healthz\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_owned()),
    };
    let content_type = if path == "/metrics" {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
