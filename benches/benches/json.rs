//! JSON access-log parser throughput (one core) on Caddy v2 and nginx `escape=json` lines
//! synthesised from the two bundled sample days (about 19,500 lines each).
//!
//! `cargo bench -p logveil-benches --bench json`

use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logveil_parse::json::{JsonFields, JsonParser};
use logveil_parse::{LineParser, LogFormat, LogRecord};

/// The well-formed, ordinary-length lines of both sample days, parsed.
fn sample_lines() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-logs");
    ["access-2026-11-01.log", "access-2026-11-02.log"]
        .iter()
        .flat_map(|name| {
            let data = std::fs::read(dir.join(name)).expect("sample log (run from the repository)");
            logveil_ingest::lines(&data)
                .filter(|l| l.len() < 4096)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Apache-escaped log text as the body of a JSON string: `\"` and `\\` are already JSON,
/// `\xHH` becomes `\u00HH`.
fn json_text(out: &mut String, value: &[u8]) {
    let text = String::from_utf8_lossy(value).replace("\\x", "\\u00");
    out.push_str(&text);
}

fn or_dash(value: Option<&[u8]>) -> &[u8] {
    value.unwrap_or(b"-")
}

/// A Caddy ≥ 2.7 access-log line (`log_credentials` on) carrying the record's fields.
fn caddy_line(r: &LogRecord<'_>, n: usize) -> String {
    let t = r.time.unwrap();
    let ip = r.client.map_or(&b"-"[..], |c| c.expose_for_hashing());
    let req = r.request.unwrap();
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        r#"{{"level":"info","ts":{}.{:06}{},"logger":"http.log.access.log0","msg":"handled request","request":{{"remote_ip":""#,
        t.utc_micros.div_euclid(1_000_000),
        t.utc_micros.rem_euclid(1_000_000),
        n % 10
    );
    json_text(&mut s, ip);
    let _ = write!(
        s,
        r#"","remote_port":"{}","client_ip":""#,
        30_000 + n % 30_000
    );
    json_text(&mut s, ip);
    s.push_str(r#"","proto":""#);
    json_text(&mut s, req.protocol.unwrap_or(b"HTTP/1.0"));
    s.push_str(r#"","method":""#);
    json_text(&mut s, req.method);
    s.push_str(r#"","host":"www.example.com","uri":""#);
    json_text(&mut s, req.target);
    s.push_str(r#"","headers":{"Accept":["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],"User-Agent":[""#);
    json_text(&mut s, or_dash(r.user_agent));
    s.push_str(r#""],"Referer":[""#);
    json_text(&mut s, or_dash(r.referer));
    s.push_str(r#""],"Accept-Encoding":["gzip, deflate, br, zstd"],"Accept-Language":["ja,en-US;q=0.7,en;q=0.3"]"#);
    if let Some(uid) = r.visitor_cookie {
        s.push_str(r#","Cookie":["lang=en; jt_uid="#);
        json_text(&mut s, uid.expose_for_hashing());
        s.push_str(r#""]"#);
    }
    let _ = write!(
        s,
        r#"}},"tls":{{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2","server_name":"www.example.com"}}}},"bytes_read":0,"user_id":"","duration":0.00{}{:04},"size":{},"status":{},"resp_headers":{{"Server":["Caddy"],"Alt-Svc":["h3=\":443\"; ma=2592000"],"Content-Type":["text/html; charset=utf-8"]}}}}"#,
        1 + n % 9,
        n % 10_000,
        r.bytes.unwrap_or(0),
        r.status.unwrap_or(200)
    );
    s
}

/// An nginx `escape=json` line (every value a string, as nginx writes them).
fn nginx_line(r: &LogRecord<'_>, n: usize) -> String {
    let t = r.time.unwrap();
    let req = r.request.unwrap();
    let mut s = String::with_capacity(512);
    // $time_iso8601 in +09:00 from the UTC instant.
    let local = t.utc_micros / 1_000_000 + 9 * 3600;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = logveil_parse::time::civil_from_days(days as i32);
    let _ = write!(
        s,
        r#"{{"time_iso8601":"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+09:00","remote_addr":""#,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    json_text(
        &mut s,
        r.client.map_or(&b"-"[..], |c| c.expose_for_hashing()),
    );
    s.push_str(r#"","remote_user":"","request":""#);
    json_text(&mut s, req.method);
    s.push(' ');
    json_text(&mut s, req.target);
    if let Some(p) = req.protocol {
        s.push(' ');
        json_text(&mut s, p);
    }
    let _ = write!(
        s,
        r#"","status":"{}","body_bytes_sent":"{}","request_time":"0.{:03}","http_referer":""#,
        r.status.unwrap_or(200),
        r.bytes.unwrap_or(0),
        n % 1000
    );
    json_text(&mut s, r.referer.unwrap_or_default());
    s.push_str(r#"","http_user_agent":""#);
    json_text(&mut s, r.user_agent.unwrap_or_default());
    s.push_str(r#"","http_cookie":""#);
    if let Some(uid) = r.visitor_cookie {
        s.push_str("lang=en; jt_uid=");
        json_text(&mut s, uid.expose_for_hashing());
    }
    s.push_str(r#"","http_x_forwarded_for":"","host":"www.example.com"}"#);
    s
}

/// The sample as Caddy and nginx JSON logs, one string each (newline-terminated lines).
fn json_logs() -> (Vec<u8>, Vec<u8>) {
    let parser = LineParser::new(
        LogFormat::from_name_or_format("combined_cookie").unwrap(),
        Some("jt_uid"),
    );
    let (mut caddy, mut nginx) = (String::new(), String::new());
    for (n, line) in sample_lines().iter().enumerate() {
        let Ok(record) = parser.parse(line) else {
            continue;
        };
        if record.request.is_none() {
            continue;
        }
        caddy.push_str(&caddy_line(&record, n));
        caddy.push('\n');
        nginx.push_str(&nginx_line(&record, n));
        nginx.push('\n');
    }
    (caddy.into_bytes(), nginx.into_bytes())
}

fn bench_json(c: &mut Criterion) {
    let (caddy, nginx) = json_logs();
    for (name, data, fields) in [
        ("caddy", &caddy, JsonFields::caddy()),
        ("nginx_json", &nginx, JsonFields::nginx()),
    ] {
        let parser = JsonParser::new(fields, Some("jt_uid"));
        let lines = logveil_ingest::lines(data).count();
        let ok = logveil_ingest::lines(data)
            .filter(|l| parser.parse(l).is_ok())
            .count();
        assert_eq!(ok, lines, "{name}: every synthesised line parses");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function("parse", |b| {
            b.iter(|| {
                let mut ok = 0u64;
                for line in logveil_ingest::lines(data) {
                    ok += u64::from(parser.parse(line).is_ok());
                }
                ok
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench_json);
criterion_main!(benches);
