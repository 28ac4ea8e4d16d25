//! The same traffic written by other servers gives the same reports: the samples are
//! rewritten (by an independent splitter, not logveil's parser) as IIS W3C extended logs,
//! Caddy JSON and nginx `escape=json` lines, then run through the real binary.

use std::fmt::Write as _;

use crate::util::{
    EditedPipeline, bin, date_string, project_like, report_rows, sample, sorted, truth,
};

/// One well-formed sample line, split by hand.
struct Line {
    ip: String,
    /// UTC seconds since the epoch.
    epoch: i64,
    method: String,
    target: String,
    status: u16,
    bytes: Option<u64>,
    referer: Option<String>,
    user_agent: Option<String>,
    cookie: Option<String>,
}

fn month(m: &str) -> Option<i64> {
    [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|x| *x == m)
    .map(|i| i as i64 + 1)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn dash(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

/// `ip - - [dd/Mon/yyyy:HH:MM:SS +zzzz] "M T P" status bytes "ref" "ua" "cookie"`; `None`
/// for the generator's deliberately malformed lines.
fn split(line: &str) -> Option<Line> {
    let (ip, rest) = line.split_once(" - - [")?;
    let (time, rest) = rest.split_once("] \"")?;
    let quoted: Vec<&str> = rest.split('"').collect();
    // request, " status bytes ", referer, " ", ua, " ", cookie, ""
    if quoted.len() != 8 {
        return None;
    }
    let mut req = quoted[0].split(' ');
    let (method, target) = (req.next()?.to_owned(), req.next()?.to_owned());
    let mut nums = quoted[1].split_whitespace();
    let status: u16 = nums.next()?.parse().ok()?;
    let bytes = match nums.next()? {
        "-" => None,
        n => Some(n.parse().ok()?),
    };
    let t = time.as_bytes();
    if t.len() != 26 {
        return None;
    }
    let num = |a: usize, b: usize| time[a..b].parse::<i64>().ok();
    let local = days_from_civil(num(7, 11)?, month(&time[3..6])?, num(0, 2)?) * 86_400
        + num(12, 14)? * 3600
        + num(15, 17)? * 60
        + num(18, 20)?;
    if !(1..=31).contains(&num(0, 2)?) || num(12, 14)? > 23 {
        return None;
    }
    let sign = if &time[21..22] == "-" { -1 } else { 1 };
    let offset = sign * (num(22, 24)? * 3600 + num(24, 26)? * 60);
    Some(Line {
        ip: ip.to_owned(),
        epoch: local - offset,
        method,
        target,
        status,
        bytes,
        referer: dash(quoted[2]),
        user_agent: dash(quoted[4]),
        cookie: dash(quoted[6]),
    })
}

fn sample_lines() -> Vec<Line> {
    let mut lines = Vec::new();
    let mut malformed = 0;
    for name in ["access-2026-11-01.log", "access-2026-11-02.log"] {
        for l in String::from_utf8_lossy(&sample(name)).lines() {
            // The deliberately over-long line is well formed but rejected as too_long.
            match split(l).filter(|_| l.len() <= 65_536) {
                Some(line) => lines.push(line),
                None => malformed += 1,
            }
        }
    }
    assert_eq!(
        malformed, 12,
        "the generator writes exactly 12 malformed lines"
    );
    lines
}

fn w3c(lines: &[Line]) -> String {
    let plus = |s: &Option<String>| s.as_deref().map_or("-".to_owned(), |v| v.replace(' ', "+"));
    let mut out =
        String::from("#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n");
    out.push_str("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Cookie) cs(Referer) sc-status sc-substatus sc-win32-status sc-bytes time-taken\n");
    for (i, l) in lines.iter().enumerate() {
        if i == lines.len() / 2 {
            // A mid-file layout change, as IIS writes after a restart.
            out.push_str("#Date: 2026-11-01 12:00:00\n#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status sc-bytes cs(User-Agent) cs(Referer) cs(Cookie)\n");
        }
        let (stem, query) = l.target.split_once('?').unwrap_or((&l.target, "-"));
        let (date, time) = (
            date_string(l.epoch.div_euclid(86_400)),
            l.epoch.rem_euclid(86_400),
        );
        let clock = format!(
            "{:02}:{:02}:{:02}",
            time / 3600,
            time % 3600 / 60,
            time % 60
        );
        let bytes = l.bytes.map_or("-".to_owned(), |b| b.to_string());
        let (ua, cookie, referer) = (plus(&l.user_agent), plus(&l.cookie), plus(&l.referer));
        if i < lines.len() / 2 {
            let _ = writeln!(
                out,
                "{date} {clock} 10.0.0.1 {} {stem} {query} 443 - {} {ua} {cookie} {referer} {} 0 0 {bytes} 15",
                l.method, l.ip, l.status
            );
        } else {
            let _ = writeln!(
                out,
                "{date} {clock} {} {} {stem} {query} {} {bytes} {ua} {referer} {cookie}",
                l.ip, l.method, l.status
            );
        }
    }
    out
}

fn caddy(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        let mut headers = serde_json::Map::new();
        for (name, value) in [
            ("User-Agent", &l.user_agent),
            ("Referer", &l.referer),
            ("Cookie", &l.cookie),
        ] {
            if let Some(v) = value {
                headers.insert(name.into(), serde_json::json!([v]));
            }
        }
        let record = serde_json::json!({
            "level": "info", "ts": l.epoch as f64 + 0.25, "logger": "http.log.access", "msg": "handled request",
            "request": {"remote_ip": l.ip, "remote_port": "50000", "proto": "HTTP/2.0", "method": l.method,
                        "host": "en.japantourist.jp", "uri": l.target, "headers": headers},
            "bytes_read": 0, "duration": 0.004, "size": l.bytes.unwrap_or(0), "status": l.status
        });
        out.push_str(&record.to_string());
        out.push('\n');
    }
    out
}

fn nginx_json(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let record = serde_json::json!({
            "time_iso8601": format!("{}T{:02}:{:02}:{:02}+00:00", date_string(l.epoch.div_euclid(86_400)), l.epoch.rem_euclid(86_400) / 3600, l.epoch.rem_euclid(3600) / 60, l.epoch.rem_euclid(60)),
            "remote_addr": l.ip, "request": format!("{} {} HTTP/1.1", l.method, l.target),
            "status": l.status.to_string(), "body_bytes_sent": l.bytes.map_or("0".to_owned(), |b| b.to_string()),
            "http_referer": s(&l.referer), "http_user_agent": s(&l.user_agent), "http_cookie": s(&l.cookie),
        });
        out.push_str(&record.to_string());
        out.push('\n');
    }
    out
}

/// Runs the daily pipeline over `text` with a format (and extra `[input]` keys).
fn run_format(
    tag: &str,
    text: &str,
    format: &str,
    extra_input: &str,
) -> (serde_json::Value, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(format!("{tag}.log"));
    std::fs::write(&log, text).unwrap();
    let pipeline = EditedPipeline::new(tag, |p| {
        p.replace(
            "format = \"combined_cookie\"",
            &format!("format = {format:?}"),
        )
        .replace("[keys]", &format!("{extra_input}\n[keys]"))
    });
    let summary = tmp.path().join("summary.json");
    let out = bin()
        .arg("run")
        .arg(&pipeline.0)
        .arg("--input")
        .arg(&log)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--summary")
        .arg(&summary)
        .arg("--privacy-state")
        .arg(tmp.path().join("privacy-state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap(),
        tmp,
    )
}

fn assert_same_reports(tag: &str, summary: &serde_json::Value, tmp: &tempfile::TempDir) {
    let truth = truth();
    assert_eq!(
        summary["lines_parsed"], truth["lines_parsed"],
        "{tag}: {summary}"
    );
    let rejected: u64 = summary["lines_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 0, "{tag}: {summary}");
    for report in [
        "page_views_hourly",
        "visitors_daily",
        "referrers_daily",
        "demographics_daily",
    ] {
        crate::util::assert_matches_truth(&tmp.path().join("out"), report, tag);
    }
}

#[test]
fn iis_w3c_rewrite_gives_the_same_reports() {
    let text = w3c(&sample_lines());
    let (summary, tmp) = run_format("w3c", &text, "w3c", "");
    assert_eq!(summary["lines_directives"], 5, "{summary}");
    assert_same_reports("w3c", &summary, &tmp);
}

#[test]
fn caddy_json_rewrite_gives_the_same_reports() {
    let (summary, tmp) = run_format("caddy", &caddy(&sample_lines()), "json", "");
    assert_same_reports("caddy", &summary, &tmp);
}

#[test]
fn nginx_escape_json_rewrite_gives_the_same_reports() {
    let (summary, tmp) = run_format(
        "nginxjson",
        &nginx_json(&sample_lines()),
        "json",
        "[input.json]\nlayout = \"nginx\"\n",
    );
    assert_same_reports("nginx-json", &summary, &tmp);
}

#[test]
fn nginx_preset_reads_the_samples_unchanged() {
    // nginx's default layout plus "$http_cookie" is byte-for-byte the same as Apache combined+cookie.
    let text: String = ["access-2026-11-01.log", "access-2026-11-02.log"]
        .iter()
        .map(|n| String::from_utf8_lossy(&sample(n)).into_owned())
        .collect();
    let (summary, tmp) = run_format("nginx", &text, "nginx_combined_cookie", "");
    assert_eq!(summary["lines_read"], truth()["lines_total"]);
    let expected = sorted(truth()["reports"]["visitors_daily"].as_array().unwrap());
    assert_eq!(
        project_like(
            &report_rows(&tmp.path().join("out"), "visitors_daily"),
            &expected
        ),
        expected
    );
}

#[test]
fn forwarded_for_is_used_only_behind_trusted_proxies() {
    // Three cookieless clients behind one load balancer: without trust they are one
    // visitor (the balancer); trusting it, three.
    let mut text = String::new();
    for client in ["198.51.100.1", "198.51.100.2", "2001:db8::3"] {
        let _ = writeln!(
            text,
            r#"10.0.0.9 - - [01/Nov/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "Mozilla/5.0" "-" "{client}, 10.0.0.8""#
        );
    }
    let format = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{Cookie}i" "%{X-Forwarded-For}i""#;
    let visitors = |summary_tmp: (serde_json::Value, tempfile::TempDir)| {
        let rows = report_rows(&summary_tmp.1.path().join("out"), "visitors_daily");
        rows[0]["visitors"].as_i64().unwrap()
    };
    assert_eq!(visitors(run_format("xff-off", &text, format, "")), 1);
    assert_eq!(
        visitors(run_format(
            "xff-on",
            &text,
            format,
            "trusted_proxies = [\"10.0.0.0/8\"]\n"
        )),
        3
    );
    let (summary, _tmp) = run_format(
        "xff-on",
        &text,
        format,
        "trusted_proxies = [\"10.0.0.0/8\"]\n",
    );
    assert_eq!(summary["lines_parsed"], 3);
}

#[test]
fn bad_trusted_proxy_and_json_layout_are_config_errors() {
    let pipeline = EditedPipeline::new("badxff", |p| {
        p.replace(
            "visitor_cookie = \"jt_uid\"",
            "visitor_cookie = \"jt_uid\"\ntrusted_proxies = [\"10.0.0.0/40\"]",
        )
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("input.trusted_proxies: `10.0.0.0/40`: prefix must be 0 to 32")
    );
    let pipeline = EditedPipeline::new("badjson", |p| {
        p.replace("format = \"combined_cookie\"", "format = \"json\"")
            .replace("[keys]", "[input.json]\nlayout = \"iis\"\n[keys]")
    });
    let out = bin().arg("check").arg(&pipeline.0).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("input.json.layout: `iis` is not a layout (allowed: caddy, nginx)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
