//! Integration tests over real access logs kept outside the repository, in `shared/corpora`
//! beside the workspace (`../shared/corpora` from the workspace root). Each corpus directory
//! has a `SOURCE.txt` recording where the data comes from and the facts asserted here.
//!
//! Without the corpora these tests print a notice and pass, except under CI (`CI` set),
//! where a missing corpus is a failure: CI must check `shared/` out beside the repository.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use logveil_parse::{LineParser, LogFormat, LogRecord, RejectReason};

/// `../shared/corpora` relative to the workspace root, or `None` (after a notice) when it is
/// absent outside CI. Under CI a missing directory fails the test.
fn corpora_dir() -> Option<PathBuf> {
    // CARGO_MANIFEST_DIR is <workspace>/crates/logveil-parse; shared/ sits beside <workspace>.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora");
    if dir.is_dir() {
        return Some(dir);
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !in_ci,
        "corpora directory {} is missing: CI must provide ../shared/corpora beside the workspace",
        dir.display()
    );
    eprintln!(
        "skipping: ../shared/corpora not present (looked in {})",
        dir.display()
    );
    None
}

fn parser(spec: &str) -> LineParser {
    LineParser::new(
        LogFormat::from_name_or_format(spec).expect("format compiles"),
        Some("jt_uid"),
    )
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines of a file, without their `\n` (a `\r` stays: the parser must strip it).
fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Outcome counts over a whole file.
#[derive(Debug, Default)]
struct Tally {
    parsed: usize,
    rejected: BTreeMap<RejectReason, usize>,
}

impl Tally {
    fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    fn histogram(&self) -> String {
        let mut out = String::new();
        if self.rejected.is_empty() {
            out.push_str("  (none)\n");
        }
        for (reason, n) in &self.rejected {
            let _ = writeln!(out, "  {:<20} {n}", reason.as_str());
        }
        out
    }
}

fn tally<'a>(
    parser: &LineParser,
    lines: &[&'a [u8]],
    mut each: impl FnMut(&'a [u8], &Result<LogRecord<'a>, RejectReason>),
) -> Tally {
    let mut t = Tally::default();
    for &line in lines {
        let result = parser.parse(line);
        match &result {
            Ok(_) => t.parsed += 1,
            Err(reason) => *t.rejected.entry(*reason).or_default() += 1,
        }
        each(line, &result);
    }
    t
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Seconds since the epoch of a UTC civil time, computed here by counting days (not with the
/// crate's `time` module, so a shared mistake cannot hide).
fn utc_seconds(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> i64 {
    let is_leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut days: i64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    days += month_days[..(month - 1) as usize].iter().sum::<i64>();
    days += day - 1;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

/// `[dd/Mon/yyyy:HH:MM:SS +zzzz]` as the bytes between the first `[` and the next `]`, if that
/// text has the well-formed shape (shape only: digits where digits go, a known month).
fn has_well_formed_clf_timestamp(line: &[u8]) -> bool {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let Some(open) = line.iter().position(|&b| b == b'[') else {
        return false;
    };
    let Some(len) = line[open + 1..].iter().position(|&b| b == b']') else {
        return false;
    };
    let inner = &line[open + 1..open + 1 + len];
    inner.len() == 26
        && inner.iter().enumerate().all(|(i, &b)| match i {
            2 | 6 => b == b'/',
            11 | 14 | 17 => b == b':',
            20 => b == b' ',
            21 => b == b'+' || b == b'-',
            3..=5 => b.is_ascii_alphabetic(),
            _ => b.is_ascii_digit(),
        })
        && MONTHS.contains(&&inner[3..6])
}

#[test]
fn elastic_apache_logs_combined() {
    let Some(dir) = corpora_dir() else { return };
    let data = read(&dir.join("elastic-apache_logs/apache_logs"));
    let lines = lines(&data);
    assert_eq!(lines.len(), 10_000, "SOURCE.txt: line_count 10000");

    let p = parser("combined");
    let (mut size_dash, mut referer_dash, mut ua_dash) = (0, 0, 0);
    let mut rejected_lines = Vec::new();
    let first = utc_seconds(2015, 5, 17, 0, 0, 0) * 1_000_000;
    let end = utc_seconds(2015, 5, 21, 0, 0, 0) * 1_000_000;
    let t = tally(&p, &lines, |line, result| match result {
        Ok(r) => {
            let client =
                std::str::from_utf8(r.client.expect("client").expose_for_hashing()).unwrap();
            assert!(
                client.parse::<Ipv4Addr>().is_ok(),
                "SOURCE.txt: all clients are IPv4"
            );
            let time = r.time.unwrap();
            assert_eq!(time.offset_seconds, 0, "SOURCE.txt: tz +0000");
            assert!(
                (first..end).contains(&time.utc_micros),
                "SOURCE.txt: 2015-05-17..2015-05-20"
            );
            assert!(r.status.is_some() && r.request.is_some());
            size_dash += usize::from(r.bytes.is_none());
            referer_dash += usize::from(r.referer.is_none());
            ua_dash += usize::from(r.user_agent.is_none());
        }
        Err(reason) => rejected_lines.push((*reason, line)),
    });
    eprintln!(
        "elastic apache_logs: {} parsed, rejected:\n{}",
        t.parsed,
        t.histogram()
    );
    assert_eq!(t.parsed, 9999);
    assert_eq!(t.rejected_total(), 1);
    let [(reason, line)] = rejected_lines[..] else {
        unreachable!()
    };
    assert_eq!(reason, RejectReason::UnterminatedQuote);
    assert!(
        line.ends_with(b"(compatible; Googlebot/2.1; +http://www.google.com/bot.html"),
        "the truncated Googlebot UA"
    );
    // SOURCE.txt's counts are over the 9999 parsed lines (the rejected one also has a `-` referer).
    assert_eq!(size_dash, 669);
    assert_eq!(referer_dash, 4072);
    assert_eq!(ua_dash, 190);
}

#[test]
fn elastic_apache_logs_xnn_escapes_are_kept_verbatim() {
    let Some(dir) = corpora_dir() else { return };
    let data = read(&dir.join("elastic-apache_logs/apache_logs"));
    let p = parser("combined");
    let escaped: Vec<_> = lines(&data)
        .into_iter()
        .filter_map(|l| p.parse(l).ok())
        .filter_map(|r| r.referer)
        .filter(|referer| contains(referer, b"\\x"))
        .collect();
    assert_eq!(
        escaped.len(),
        3,
        "SOURCE.txt: 3 referers carry Apache \\xNN escapes"
    );
    for referer in escaped {
        assert!(
            referer.is_ascii(),
            "`\\xNN` stays four ASCII bytes, it is not decoded"
        );
    }
}

#[test]
fn nasa_jul95_common() {
    let Some(dir) = corpora_dir() else { return };
    let gz = read(&dir.join("nasa-http-jul95/NASA_access_log_Jul95.first267838.gz"));
    let mut data = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_end(&mut data)
        .expect("gunzip");
    let lines = lines(&data);
    assert_eq!(lines.len(), 267_838, "SOURCE.txt: line_count");

    let p = parser("common");
    let first = (utc_seconds(1995, 7, 1, 0, 0, 1) + 4 * 3600) * 1_000_000;
    let last = (utc_seconds(1995, 7, 4, 18, 11, 14) + 4 * 3600) * 1_000_000;
    let (mut seen_first, mut seen_last) = (false, false);
    let mut bad_time_but_well_formed = Vec::new();
    let mut unescaped_quote = (0, 0); // (lines, parsed)
    let mut http09 = (0, 0);
    let mut statuses = BTreeMap::new();
    let mut methods = BTreeMap::new();
    let mut size_dash = 0;
    let t = tally(&p, &lines, |line, result| {
        let quotes = line.split(|&b| b == b'"').count() - 1;
        if quotes > 2 {
            unescaped_quote.0 += 1;
            if let Ok(r) = result {
                unescaped_quote.1 += 1;
                let req = r.request.unwrap();
                assert!(
                    req.target.ends_with(b"\""),
                    "the stray quote stays in the target"
                );
                assert_eq!(req.protocol, Some(&b"HTTP/1.0"[..]));
            }
        }
        // `"METHOD TARGET"` with neither protocol nor stray quote: HTTP/0.9 style.
        let in_quotes = line.split(|&b| b == b'"').nth(1).unwrap_or_default();
        if quotes == 2 && !contains(in_quotes, b" HTTP/") && in_quotes.contains(&b' ') {
            http09.0 += 1;
            if let Ok(r) = result {
                http09.1 += 1;
                assert_eq!(r.request.unwrap().protocol, None);
            }
        }
        match result {
            Ok(r) => {
                let time = r.time.unwrap();
                assert_eq!(time.offset_seconds, -4 * 3600, "SOURCE.txt: tz -0400");
                assert!(
                    (first..=last).contains(&time.utc_micros),
                    "SOURCE.txt: 1995-07-01 00:00:01 .. 1995-07-04 18:11:14"
                );
                seen_first |= time.utc_micros == first;
                seen_last |= time.utc_micros == last;
                *statuses.entry(r.status.unwrap()).or_insert(0) += 1;
                *methods.entry(r.method().unwrap().to_vec()).or_insert(0) += 1;
                size_dash += usize::from(r.bytes.is_none());
            }
            Err(RejectReason::BadTime) if has_well_formed_clf_timestamp(line) => {
                bad_time_but_well_formed.push(String::from_utf8_lossy(line).into_owned());
            }
            Err(_) => {}
        }
    });
    let rate = t.parsed as f64 / lines.len() as f64;
    eprintln!(
        "NASA Jul95 (first {} lines): {} parsed ({:.4}%), {} rejected:\n{}",
        lines.len(),
        t.parsed,
        rate * 100.0,
        t.rejected_total(),
        t.histogram()
    );
    eprintln!(
        "  unescaped quote in request: {}/{} parsed; HTTP/0.9 requests: {}/{} parsed",
        unescaped_quote.1, unescaped_quote.0, http09.1, http09.0
    );
    assert!(rate >= 0.999, "parse rate {rate} below 99.9%");
    assert!(
        bad_time_but_well_formed.is_empty(),
        "well-formed timestamps rejected: {bad_time_but_well_formed:?}"
    );
    assert!(
        seen_first && seen_last,
        "first and last timestamps of SOURCE.txt are present"
    );
    assert_eq!(
        unescaped_quote,
        (4, 4),
        "SOURCE.txt: 4 lines with an unescaped quote inside the request, all parse"
    );
    assert!(
        http09.0 > 0 && http09.1 == http09.0,
        "every HTTP/0.9 request parses: {http09:?}"
    );
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200, 302, 304, 403, 404, 500],
        "SOURCE.txt statuses"
    );
    assert_eq!(
        methods.keys().cloned().collect::<Vec<_>>(),
        [b"GET".to_vec(), b"HEAD".to_vec(), b"POST".to_vec()],
        "SOURCE.txt methods"
    );
    // SOURCE.txt says 2701; `awk '$NF == "-"'` over the file counts 2705, as does the parser.
    assert_eq!(size_dash, 2705, "size '-'");

    // The quirks named in SOURCE.txt, by the exact lines.
    let r = p
        .parse(br#"frank.mtsu.edu - - [03/Jul/1995:02:41:15 -0400] "GET /images/" HTTP/1.0" 404 -"#)
        .unwrap();
    assert_eq!(r.request.unwrap().target, br#"/images/""#);
    assert_eq!((r.status, r.bytes), (Some(404), None));
    let r = p
        .parse(
            br#"columbia.acc.brad.ac.uk - - [01/Jul/1995:00:51:31 -0400] "GET /ksc.html" 200 7074"#,
        )
        .unwrap();
    assert_eq!(r.request.unwrap().target, b"/ksc.html");
    assert_eq!(r.request.unwrap().protocol, None);
    assert!(lines.iter().any(|l| l.starts_with(
        b"frank.mtsu.edu - - [03/Jul/1995:02:41:15 -0400] \"GET /images/\" HTTP/1.0\""
    )));
}

#[test]
fn monitorware_common_with_crlf() {
    let Some(dir) = corpora_dir() else { return };
    let data = read(&dir.join("monitorware-apache-2004/access_log"));
    let lines = lines(&data);
    assert_eq!(lines.len(), 1536, "SOURCE.txt: line_count");
    assert!(
        lines.iter().all(|l| l.ends_with(b"\r")),
        "SOURCE.txt: all lines end in CR LF"
    );
    let p = parser("common");
    let (mut size_dash, mut request_dash, mut hostnames) = (0, 0, 0);
    let t = tally(&p, &lines, |_, result| {
        if let Ok(r) = result {
            assert_eq!(r.time.unwrap().offset_seconds, -8 * 3600);
            size_dash += usize::from(r.bytes.is_none());
            if r.request.is_none() {
                request_dash += 1;
                assert_eq!(r.status, Some(408));
            }
            let client = std::str::from_utf8(r.client.unwrap().expose_for_hashing()).unwrap();
            assert!(!client.ends_with('\r'));
            hostnames += usize::from(client.parse::<IpAddr>().is_err());
        }
    });
    assert_eq!(
        (t.parsed, t.rejected_total()),
        (1536, 0),
        "{}",
        t.histogram()
    );
    assert_eq!(
        (size_dash, request_dash, hostnames),
        (139, 1, 697),
        "SOURCE.txt: 139 size '-', 1 request '-', 697 DNS names"
    );
}

#[test]
fn lnav_access_logs() {
    let Some(dir) = corpora_dir() else { return };
    let dir = dir.join("lnav-testlogs");
    let combined = parser("combined");

    let data = read(&dir.join("logfile_access_log.0"));
    let records: Vec<_> = lines(&data)
        .into_iter()
        .map(|l| combined.parse(l).expect("logfile_access_log.0 parses"))
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(
        records
            .iter()
            .map(|r| r.status.unwrap())
            .collect::<Vec<_>>(),
        [200, 404, 200]
    );
    assert_eq!(records[1].bytes, Some(46_210));
    assert_eq!(
        records[1].request.unwrap().target,
        b"/vmw/vSphere/default/vmkboot.gz"
    );
    assert_eq!(records[0].user_agent, Some(&b"gPXE/0.9.7"[..]));
    assert_eq!(
        records[0].time.unwrap().utc_micros,
        utc_seconds(2009, 7, 20, 22, 59, 26) * 1_000_000
    );

    let data = read(&dir.join("logfile_access_log.1"));
    let [line] = lines(&data)[..] else {
        panic!("logfile_access_log.1 has one line")
    };
    let r = combined.parse(line).expect("request \"-\" parses");
    assert!(r.request.is_none(), "request `-` is None");
    assert_eq!(
        (r.status, r.bytes, r.referer, r.user_agent),
        (Some(400), Some(0), None, None)
    );

    let data = read(&dir.join("logfile_bad_access_log.0"));
    let results: Vec<_> = lines(&data)
        .into_iter()
        .map(|l| combined.parse(l).map(|r| r.status))
        .collect();
    // Line 2 lacks the ident and user fields: `%l %u` take the timestamp's halves, and `%t` then sees `"GET`.
    assert_eq!(
        results,
        [Ok(Some(200)), Err(RejectReason::BadTime), Ok(Some(200))]
    );
}

#[test]
fn lnav_shop_access_log_with_forwarded_for_and_plus0330() {
    let Some(dir) = corpora_dir() else { return };
    let data = read(&dir.join("lnav-testlogs/logfile_shop_access_log.0"));
    let p =
        parser(r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{X-Forwarded-For}i""#);
    let lines = lines(&data);
    assert_eq!(lines.len(), 1000);
    let mut records = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let r = p
            .parse(line)
            .unwrap_or_else(|e| panic!("line {} rejected: {e}", n + 1));
        assert_eq!(
            r.time.unwrap().offset_seconds,
            3 * 3600 + 30 * 60,
            "line {}",
            n + 1
        );
        records.push(r);
    }
    // Line 1, by hand: 22/Jan/2019:03:56:14 +0330 is 2019-01-22T00:26:14Z. 2019-01-01 is day
    // 17897 since the epoch (1546300800 / 86400), so the 22nd is day 17918:
    // 17918 * 86400 + 26 * 60 + 14 = 1548116774.
    assert_eq!(records[0].time.unwrap().utc_micros, 1_548_116_774_000_000);
    assert_eq!(
        records[0].time.unwrap().utc_micros,
        utc_seconds(2019, 1, 22, 0, 26, 14) * 1_000_000
    );
    assert!(
        records[0]
            .request
            .unwrap()
            .target
            .starts_with(b"/filter/27|13%20%D9%85")
    );
    assert_eq!(records[0].status, Some(200));
    assert_eq!(records[0].bytes, Some(30_577));
    assert_eq!(
        records[1].referer,
        Some(&b"https://www.zanbil.ir/m/filter/b113"[..])
    );
    // Times are monotonic-ish real traffic from one morning.
    let min = records
        .iter()
        .map(|r| r.time.unwrap().utc_micros)
        .min()
        .unwrap();
    let max = records
        .iter()
        .map(|r| r.time.unwrap().utc_micros)
        .max()
        .unwrap();
    assert!(
        min >= utc_seconds(2019, 1, 22, 0, 0, 0) * 1_000_000
            && max < utc_seconds(2019, 1, 23, 0, 0, 0) * 1_000_000
    );
    // The same file as plain `combined_cookie` also parses (the trailing field is read as a cookie header).
    let cookie = parser("combined_cookie");
    assert!(
        lines
            .iter()
            .all(|l| cookie.parse(l).is_ok_and(|r| r.visitor_cookie.is_none()))
    );
}

#[test]
fn lnav_regexp_access_log_vhost_port_and_duration() {
    let Some(dir) = corpora_dir() else { return };
    let data = read(&dir.join("lnav-testlogs/logfile_regexp_access_log.0"));
    // `localhost:443 178.20.184.42 1j0vhgd jsmith [26/Jul/2023:00:01:26 -0700] "GET … HTTP/2.0" 200 17163 "-" "Mozilla/5.0" 116075`
    let p = parser(r#"%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#);
    let records: Vec<_> = lines(&data)
        .into_iter()
        .map(|l| p.parse(l).expect("parses"))
        .collect();
    assert_eq!(records.len(), 2);
    let r = &records[0];
    assert_eq!(r.vhost, Some(&b"localhost"[..]));
    assert_eq!(r.client.unwrap().expose_for_hashing(), b"178.20.184.42");
    assert_eq!(r.remote_user.unwrap().expose_for_hashing(), b"jsmith");
    assert_eq!(r.request.unwrap().protocol, Some(&b"HTTP/2.0"[..]));
    assert_eq!(r.time.unwrap().offset_seconds, -7 * 3600);
    assert_eq!(
        r.time.unwrap().utc_micros,
        utc_seconds(2023, 7, 26, 7, 1, 26) * 1_000_000
    );
    assert_eq!(
        (r.status, r.bytes, r.referer),
        (Some(200), Some(17_163), None)
    );
    assert_eq!(r.duration_micros, Some(116_075));
    assert_eq!(records[1].duration_micros, Some(156_302));
    assert_eq!(
        records[1].remote_user.unwrap().expose_for_hashing(),
        b"khenry"
    );
    assert!(
        records[1]
            .referer
            .unwrap()
            .starts_with(b"https://localhost/secure/RapidBoard.jspa")
    );
    // The vhost_combined preset does not log %D: the trailing number is trailing text.
    assert!(
        lines(&data)
            .into_iter()
            .all(|l| parser("vhost_combined").parse(l).unwrap_err() == RejectReason::FieldCount)
    );
}

#[test]
fn lnav_w3c_and_haproxy_are_rejected_by_every_preset() {
    let Some(dir) = corpora_dir() else { return };
    let dir = dir.join("lnav-testlogs");
    let presets: Vec<_> = logveil_parse::PRESETS
        .iter()
        .map(|(name, _)| parser(name))
        .collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("logfile_w3c") || name.starts_with("logfile_haproxy")) {
            continue;
        }
        let data = read(&path);
        for (n, line) in lines(&data).into_iter().enumerate() {
            for p in &presets {
                let result = p.parse(line);
                assert!(
                    result.is_err(),
                    "{name} line {}: {} accepted by {}",
                    n + 1,
                    String::from_utf8_lossy(line),
                    p.format().source()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 300, "W3C and HAProxy lines checked: {checked}");
}

// ---------------------------------------------------------------------------------------------
// odd-cases/odd_cases.tsv

const ODD_PRESETS: [&str; 4] = ["combined_cookie", "combined", "common", "vhost_combined"];

struct OddCase<'a> {
    name: String,
    line: &'a [u8],
    /// Per preset in `ODD_PRESETS` order.
    results: Vec<Result<LogRecord<'a>, RejectReason>>,
}

fn outcome(results: &[Result<LogRecord<'_>, RejectReason>]) -> String {
    if let Some(i) = results.iter().position(Result::is_ok) {
        return format!("parsed by {}", ODD_PRESETS[i]);
    }
    let reasons: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().unwrap_err().as_str())
        .collect();
    format!("rejected: {}", reasons.join(","))
}

/// Rows of the TSV: (case, line bytes). The line is the last column, raw; only `CloudFront` rows
/// write their TABs as `\t`, which are turned back into TABs.
fn odd_rows(tsv: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut rows = Vec::new();
    for (n, row) in lines(tsv).into_iter().enumerate() {
        let cols: Vec<&[u8]> = row.splitn(6, |&b| b == b'\t').collect();
        assert_eq!(
            cols.len(),
            6,
            "odd_cases.tsv row {} has {} columns",
            n + 1,
            cols.len()
        );
        if n == 0 {
            assert_eq!(
                &cols[..5],
                [&b"case"[..], b"kind", b"repository", b"commit", b"path"],
                "header"
            );
            continue;
        }
        let name = String::from_utf8(cols[0].to_vec()).expect("case names are UTF-8");
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "case name {name:?} must be an identifier (the golden file holds names only)"
        );
        let mut line = cols[5].to_vec();
        if name.to_ascii_lowercase().contains("cloudfront") {
            line = replace(&line, b"\\t", b"\t");
        }
        rows.push((name, line));
    }
    rows
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Cases in formats logveil does not read (W3C/IIS, AWS ALB) or that are not access-log lines.
fn unsupported(name: &str) -> bool {
    [
        "w3c_",
        "iis_",
        "alb_",
        "cloudfront",
        "json",
        "non_log_line",
        "hostname_that_starts_like_ipv4",
    ]
    .iter()
    .any(|p| name.contains(p))
}

#[test]
fn odd_cases() {
    let Some(dir) = corpora_dir() else { return };
    let tsv = read(&dir.join("odd-cases/odd_cases.tsv"));
    let rows = odd_rows(&tsv);
    assert!(rows.len() >= 37, "odd_cases.tsv rows: {}", rows.len());
    let parsers: Vec<_> = ODD_PRESETS.iter().map(|p| parser(p)).collect();

    let cases: Vec<OddCase<'_>> = rows
        .iter()
        .map(|(name, line)| OddCase {
            name: name.clone(),
            line,
            results: parsers.iter().map(|p| p.parse(line)).collect(),
        })
        .collect();

    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut golden = String::from(
        "# logveil-parse odd cases: presets tried in order combined_cookie, combined, common, vhost_combined.\n",
    );
    golden.push_str(
        "# Regenerate: UPDATE_GOLDEN=1 cargo test -p logveil-parse --test corpora odd_cases\n",
    );
    for case in &cases {
        let _ = writeln!(golden, "{:<width$}  {}", case.name, outcome(&case.results));
    }
    eprintln!("odd cases:\n{golden}");

    let get = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("case {name} missing from odd_cases.tsv"))
    };
    let common = ODD_PRESETS.iter().position(|p| *p == "common").unwrap();
    let combined = ODD_PRESETS.iter().position(|p| *p == "combined").unwrap();
    let vhost = ODD_PRESETS
        .iter()
        .position(|p| *p == "vhost_combined")
        .unwrap();

    // NASA quirks parse with `common`.
    for name in [
        "unescaped_quote_in_request",
        "http09_request_no_protocol",
        "spaces_inside_uri",
        "html_junk_in_uri",
    ] {
        let r = get(name).results[common]
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: rejected by common: {e}"));
        assert!(r.request.is_some() && r.status.is_some(), "{name}");
    }
    let r = get("unescaped_quote_in_request").results[common]
        .as_ref()
        .unwrap();
    assert_eq!(r.request.unwrap().target, br#"/images/""#);
    assert_eq!(r.request.unwrap().protocol, Some(&b"HTTP/1.0"[..]));
    assert_eq!(
        get("http09_request_no_protocol").results[common]
            .as_ref()
            .unwrap()
            .request
            .unwrap()
            .protocol,
        None
    );
    let r = get("spaces_inside_uri").results[common].as_ref().unwrap();
    assert_eq!(
        r.request.unwrap().target,
        b"/shuttle/missions/missions.html Shuttle Launches from Kennedy Space Center"
    );
    let r = get("html_junk_in_uri").results[common].as_ref().unwrap();
    assert_eq!(r.request.unwrap().protocol, None);
    assert!(
        r.request
            .unwrap()
            .target
            .starts_with(b"/elv/uplink.htm>This Atlas/Centaur")
    );

    // More common-format lines, including a `"-"` request with a CR LF line end.
    for name in [
        "u_fffd_bytes_in_uri",
        "hostname_not_ip",
        "size_dash",
        "options_star",
        "request_dash_408_crlf_line_end",
        "ipv6_loopback_request_dash_408",
    ] {
        assert!(
            get(name).results[common].is_ok(),
            "{name}: {}",
            outcome(&get(name).results)
        );
    }
    let r = get("request_dash_408_crlf_line_end").results[common]
        .as_ref()
        .unwrap();
    assert!(get("request_dash_408_crlf_line_end").line.ends_with(b"\r"));
    assert_eq!((r.request, r.status, r.bytes), (None, Some(408), None));
    assert_eq!(
        get("options_star").results[common]
            .as_ref()
            .unwrap()
            .request
            .unwrap()
            .target,
        b"*"
    );

    // Combined lines with odd field contents.
    let r = get("truncated_user_agent_no_closing_quote");
    assert_eq!(
        r.results[combined].as_ref().unwrap_err(),
        &RejectReason::UnterminatedQuote
    );
    let r = get("status_dash_options_user_with_dot").results[combined]
        .as_ref()
        .unwrap();
    assert_eq!((r.status, r.bytes), (None, Some(7908)));
    assert_eq!(r.remote_user.unwrap().expose_for_hashing(), b"a.user");
    let r = get("email_in_user_field_empty_referer").results[combined]
        .as_ref()
        .unwrap();
    assert_eq!(
        r.referer,
        Some(&b""[..]),
        "an empty quoted referer is Some(\"\"), not `-`"
    );
    for name in ["gh0st_probe_apache_xNN", "binary_request_nginx_xNN"] {
        let r = get(name).results[combined]
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            r.request.unwrap().target,
            b"",
            "{name}: a request without a space has no target"
        );
    }
    let r = get("apache_xNN_escaped_high_bytes_in_referer").results[combined]
        .as_ref()
        .unwrap();
    assert!(r.referer.unwrap().starts_with(b"http://\\xe4\\xe5"));

    // vhost_combined: `%v:%p` prefix; the client may carry a port or be `unix:`.
    for (name, client) in [
        ("client_ip_with_port", &b"14.212.143.11:42918"[..]),
        ("ipv6_loopback_vhost", b"::1"),
        ("unix_socket_client_garbage_request", b"unix:"),
        (
            "escaped_quotes_backslashes_xNN_in_ua_joomla_exploit",
            b"185.234.218.71",
        ),
    ] {
        let r = get(name).results[vhost]
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: rejected by vhost_combined: {e}"));
        assert_eq!(r.client.unwrap().expose_for_hashing(), client, "{name}");
    }
    let r = get("escaped_quotes_backslashes_xNN_in_ua_joomla_exploit").results[vhost]
        .as_ref()
        .unwrap();
    assert!(
        r.user_agent
            .unwrap()
            .starts_with(br#"}__test|O:21:\"JDatabaseDriverMysqli\":3:{s:4:\"\\0\\0\\0a\""#)
    );
    assert_eq!(
        get("vhost_port_prefix_and_trailing_usec").results[vhost]
            .as_ref()
            .unwrap_err(),
        &RejectReason::FieldCount
    );

    // Lines in formats logveil does not read (yet), and non-log lines: rejected by every preset, with a reason.
    let mut unsupported_seen = 0;
    for case in cases.iter().filter(|c| unsupported(&c.name)) {
        unsupported_seen += 1;
        assert!(
            case.results.iter().all(Result::is_err),
            "{}: {}",
            case.name,
            outcome(&case.results)
        );
    }
    assert!(
        unsupported_seen >= 7,
        "unsupported cases: {unsupported_seen}"
    );
    // Neither are mangled client lists, nor CLF lines missing fields.
    for name in [
        "missing_ident_user_fields",
        "all_dash_clf",
        "combined_unquoted_dash_referer_ua",
        "ipv6_in_xff_list_as_client",
        "quoted_xff_list_before_client",
        "xff_list_unquoted_as_client",
        "leading_duration_then_client_trailing_xff_host",
    ] {
        assert!(
            get(name).results.iter().all(Result::is_err),
            "{name}: {}",
            outcome(&get(name).results)
        );
    }

    // Golden file: case names and outcomes only (names are checked to be identifiers above).
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/odd_cases.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, &golden).unwrap();
        eprintln!("wrote {}", golden_path.display());
        return;
    }
    let expected = std::fs::read_to_string(&golden_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            golden_path.display()
        )
    });
    if expected != golden {
        let diff: Vec<_> = expected
            .lines()
            .zip(golden.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "odd-case outcomes differ from {} (rerun with UPDATE_GOLDEN=1 if the change is intended):\n{}\n(golden {} lines, now {} lines)",
            golden_path.display(),
            diff.join("\n"),
            expected.lines().count(),
            golden.lines().count()
        );
    }
}
