//! JSON access logs: Caddy v2 and nginx `escape=json` lines, malformed input, and property
//! tests (arbitrary bytes never panic; `serde_json`-written objects parse back).

use logveil_parse::json::{JsonFields, JsonParser, MAX_DEPTH};
use logveil_parse::{LogRecord, RejectReason};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// 2026-11-01T00:15:02Z = 2026-11-01T09:15:02+09:00.
const BASE: i64 = 1_793_492_102_000_000;

fn caddy() -> JsonParser {
    JsonParser::new(JsonFields::caddy(), Some("jt_uid"))
}

fn nginx() -> JsonParser {
    JsonParser::new(JsonFields::nginx(), Some("jt_uid"))
}

fn ok<'a>(parser: &JsonParser, line: &'a [u8]) -> LogRecord<'a> {
    match parser.parse(line) {
        Ok(r) => r,
        Err(e) => panic!("rejected ({e}): {}", String::from_utf8_lossy(line)),
    }
}

fn err(parser: &JsonParser, line: &[u8]) -> RejectReason {
    match parser.parse(line) {
        Ok(r) => panic!("accepted {r:?}: {}", String::from_utf8_lossy(line)),
        Err(e) => e,
    }
}

fn client<'a>(r: &LogRecord<'a>) -> Option<&'a [u8]> {
    r.client.map(|c| c.expose_for_hashing())
}

fn cookie<'a>(r: &LogRecord<'a>) -> Option<&'a [u8]> {
    r.visitor_cookie.map(|c| c.expose_for_hashing())
}

/// Whether `part` lies inside `line`'s memory.
fn within(line: &[u8], part: &[u8]) -> bool {
    if part.is_empty() {
        return true;
    }
    let (start, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
    p >= start && p + part.len() <= start + line.len()
}

/// Invariants of every accepted record: a time, a plausible status, nothing borrowed from
/// outside the line.
fn check_accepted(line: &[u8], r: &LogRecord<'_>) -> Result<(), TestCaseError> {
    prop_assert!(r.time.is_some(), "accepted without a time");
    if let Some(s) = r.status {
        prop_assert!((100..=999).contains(&s));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for id in [r.client, r.remote_user, r.visitor_cookie, r.forwarded_for]
        .into_iter()
        .flatten()
    {
        parts.push(id.expose_for_hashing());
    }
    if let Some(req) = r.request {
        parts.extend([req.method, req.target]);
        parts.extend(req.protocol);
    }
    parts.extend(
        [
            r.method,
            r.url_path,
            r.query,
            r.referer,
            r.user_agent,
            r.vhost,
        ]
        .into_iter()
        .flatten(),
    );
    for part in parts {
        prop_assert!(within(line, part), "a field does not borrow the line");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Caddy v2

/// Caddy ≥ 2.7 (`client_ip`), HTTP/2 over TLS, `log_credentials` on so the cookie is logged.
const CADDY_27: &[u8] = br#"{"level":"info","ts":1793492102.5241024,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"192.0.2.10","remote_port":"41342","client_ip":"192.0.2.10","proto":"HTTP/2.0","method":"GET","host":"www.example.com","uri":"/en/tokyo?email=a%40example.com","headers":{"Accept":["text/html,application/xhtml+xml"],"User-Agent":["Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"],"Referer":["https://www.google.com/"],"Cookie":["lang=en; jt_uid=u-1"],"Accept-Encoding":["gzip, deflate, br, zstd"]},"tls":{"resumed":false,"version":772,"cipher_suite":4865,"proto":"h2","server_name":"www.example.com"}},"bytes_read":0,"user_id":"","duration":0.000929675,"size":10900,"status":200,"resp_headers":{"Server":["Caddy"],"Content-Type":["text/html; charset=utf-8"],"Alt-Svc":["h3=\":443\"; ma=2592000"]}}"#;

/// Caddy 2.6 behind a proxy: `remote_ip` only, cookie redacted, `X-Forwarded-For` logged.
const CADDY_26: &[u8] = br#"{"level":"error","ts":1793492102,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"192.0.2.20","remote_port":"52114","proto":"HTTP/1.1","method":"POST","host":"shop.example.com:8443","uri":"/cart","headers":{"X-Forwarded-For":["203.0.113.9, 192.0.2.20"],"Cookie":["REDACTED"],"Content-Type":["application/x-www-form-urlencoded"],"User-Agent":["curl/8.5.0"]}},"user_id":"","duration":0.012,"size":0,"status":404,"resp_headers":{}}"#;

/// Caddy 2.4: `remote_addr` as `IP:port`, no headers the parser wants.
const CADDY_24: &[u8] = br#"{"level":"info","ts":1793492102.25,"logger":"http.log.access","msg":"handled request","request":{"remote_addr":"192.0.2.30:5555","proto":"HTTP/1.1","method":"HEAD","host":"example.com","uri":"/","headers":{}},"common_log":"192.0.2.30 - - [01/Nov/2026:00:15:02 +0000] \"HEAD / HTTP/1.1\" 304 0","duration":0.0001,"size":0,"status":304,"resp_headers":{}}"#;

/// Caddy with `time_format iso8601`.
const CADDY_ISO: &[u8] = br#"{"level":"info","ts":"2026-11-01T00:15:02.524Z","logger":"http.log.access","msg":"handled request","request":{"client_ip":"2001:db8::7","method":"GET","host":"example.com","uri":"/a","headers":{"User-Agent":["Go-http-client/1.1"]}},"duration":1.5,"size":12,"status":200}"#;

#[test]
fn caddy_27_line() {
    let r = ok(&caddy(), CADDY_27);
    assert_eq!(client(&r), Some(&b"192.0.2.10"[..]));
    assert_eq!(r.time.unwrap().utc_micros, BASE + 524_102);
    assert_eq!(r.time.unwrap().offset_seconds, 0);
    assert_eq!(r.method(), Some(&b"GET"[..]));
    assert_eq!(r.url_path, Some(&b"/en/tokyo?email=a%40example.com"[..]));
    assert_eq!(
        r.target_path(),
        Some(&b"/en/tokyo?email=a%40example.com"[..])
    );
    assert!(r.request.is_none());
    assert_eq!(r.status, Some(200));
    assert_eq!(r.bytes, Some(10_900));
    assert_eq!(r.duration_micros, Some(930));
    assert_eq!(r.referer, Some(&b"https://www.google.com/"[..]));
    assert_eq!(
        r.user_agent,
        Some(&b"Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"[..])
    );
    assert_eq!(cookie(&r), Some(&b"u-1"[..]));
    assert_eq!(r.vhost, Some(&b"www.example.com"[..]));
    assert!(r.forwarded_for.is_none());
}

#[test]
fn caddy_26_and_24_fall_back_to_older_client_fields() {
    let r = ok(&caddy(), CADDY_26);
    assert_eq!(client(&r), Some(&b"192.0.2.20"[..]));
    assert_eq!(r.time.unwrap().utc_micros, BASE);
    assert_eq!(r.method(), Some(&b"POST"[..]));
    assert_eq!(r.status, Some(404));
    assert_eq!(r.bytes, Some(0));
    assert_eq!(r.duration_micros, Some(12_000));
    assert_eq!(cookie(&r), None, "a redacted header has no visitor cookie");
    assert_eq!(
        r.forwarded_for.map(|f| f.expose_for_hashing()),
        Some(&b"203.0.113.9, 192.0.2.20"[..])
    );
    assert_eq!(r.user_agent, Some(&b"curl/8.5.0"[..]));
    assert_eq!(r.referer, None);
    assert_eq!(r.vhost, Some(&b"shop.example.com:8443"[..]));

    let r = ok(&caddy(), CADDY_24);
    assert_eq!(client(&r), Some(&b"192.0.2.30:5555"[..]));
    assert_eq!(r.time.unwrap().utc_micros, BASE + 250_000);
    assert_eq!(r.status, Some(304));
    assert_eq!(r.duration_micros, Some(100));
    assert_eq!((r.user_agent, r.referer), (None, None));
}

#[test]
fn caddy_iso_time_and_ipv6() {
    let r = ok(&caddy(), CADDY_ISO);
    assert_eq!(client(&r), Some(&b"2001:db8::7"[..]));
    assert_eq!(r.time.unwrap().utc_micros, BASE + 524_000);
    assert_eq!(r.duration_micros, Some(1_500_000));
    assert_eq!(r.user_agent, Some(&b"Go-http-client/1.1"[..]));
}

#[test]
fn caddy_without_visitor_cookie_name_ignores_the_header() {
    let r = ok(&JsonParser::new(JsonFields::caddy(), None), CADDY_27);
    assert!(r.visitor_cookie.is_none());
    assert_eq!(r.status, Some(200));
}

// ---------------------------------------------------------------------------------------------
// nginx escape=json

const NGINX: &[u8] = br#"{"time":"2026-11-01T09:15:02+09:00","remote_addr":"203.0.113.7","request":"GET /x HTTP/1.1","status":"200","body_bytes_sent":"512","http_referer":"","http_user_agent":"Mozilla/5.0 \"q\"","http_cookie":"jt_uid=u-2"}"#;

#[test]
fn nginx_line_with_numbers_as_strings() {
    let r = ok(&nginx(), NGINX);
    assert_eq!(client(&r), Some(&b"203.0.113.7"[..]));
    let t = r.time.unwrap();
    assert_eq!((t.utc_micros, t.offset_seconds), (BASE, 9 * 3600));
    let req = r.request.unwrap();
    assert_eq!(
        (req.method, req.target, req.protocol),
        (&b"GET"[..], &b"/x"[..], Some(&b"HTTP/1.1"[..]))
    );
    assert_eq!(r.status, Some(200));
    assert_eq!(r.bytes, Some(512));
    assert_eq!(r.referer, None, "an empty string is not logged");
    assert_eq!(
        r.user_agent,
        Some(&br#"Mozilla/5.0 \"q\""#[..]),
        "escapes kept"
    );
    assert_eq!(cookie(&r), Some(&b"u-2"[..]));
}

#[test]
fn nginx_common_layouts() {
    let p = nginx();
    // The widely copied `json_combined` snippet: `$time_local`, `http_referrer`, numbers unquoted.
    let line = br#"{"time_local":"01/Nov/2026:09:15:02 +0900","remote_addr":"192.0.2.1","remote_user":"","request":"GET /en/tokyo?x=1 HTTP/2.0","status": 301,"body_bytes_sent":0,"request_time":"0.005","http_referrer":"https://example.com/","http_user_agent":"curl/8.5.0","http_x_forwarded_for":"-"}"#;
    let r = ok(&p, line);
    assert_eq!(r.time.unwrap().utc_micros, BASE);
    assert_eq!(r.status, Some(301));
    assert_eq!(r.bytes, Some(0));
    assert_eq!(r.duration_micros, Some(5_000));
    assert_eq!(r.referer, Some(&b"https://example.com/"[..]));
    assert!(r.forwarded_for.is_none(), "`-` is not logged");
    assert!(r.visitor_cookie.is_none());

    // `time_iso8601` wins over `time_local` wherever it sits; `$msec` alone works too.
    let line = br#"{"time_local":"01/Nov/2027:09:15:02 +0900","remote_addr":"192.0.2.1","time_iso8601":"2026-11-01T09:15:02+09:00","msec":"1.000"}"#;
    assert_eq!(ok(&p, line).time.unwrap().utc_micros, BASE);
    let line = br#"{"msec":"1793492102.125","remote_addr":"192.0.2.1"}"#;
    assert_eq!(ok(&p, line).time.unwrap().utc_micros, BASE + 125_000);
    // An empty alternative falls through to the next one.
    let line = br#"{"time_iso8601":"","time_local":"01/Nov/2026:09:15:02 +0900","remote_addr":"192.0.2.1"}"#;
    assert_eq!(ok(&p, line).time.unwrap().utc_micros, BASE);

    // Escaped quotes around a cookie value, host, X-Forwarded-For.
    let line = br#"{"time_iso8601":"2026-11-01T00:15:02Z","remote_addr":"192.0.2.1","host":"example.com","http_cookie":"a=1; jt_uid=\"u-3\"","http_x_forwarded_for":"198.51.100.4"}"#;
    let r = ok(&p, line);
    assert_eq!(cookie(&r), Some(&b"u-3"[..]));
    assert_eq!(r.vhost, Some(&b"example.com"[..]));
    assert_eq!(
        r.forwarded_for.map(|f| f.expose_for_hashing()),
        Some(&b"198.51.100.4"[..])
    );
    assert!(r.request.is_none() && r.status.is_none() && r.bytes.is_none());
}

/// (logged request, method, target, protocol)
type RequestCase = (
    &'static [u8],
    &'static [u8],
    &'static [u8],
    Option<&'static [u8]>,
);

#[test]
fn request_line_split_like_the_apache_parser() {
    let p = nginx();
    let cases: &[RequestCase] = &[
        (b"GET /a b HTTP/1.0", b"GET", b"/a b", Some(b"HTTP/1.0")),
        (b"GET /ksc.html", b"GET", b"/ksc.html", None),
        (br"\u0016\u0003\u0001", br"\u0016\u0003\u0001", b"", None),
        (
            br#"GET /a\"b HTTP/1.1"#,
            b"GET",
            br#"/a\"b"#,
            Some(b"HTTP/1.1"),
        ),
    ];
    for &(request, method, target, protocol) in cases {
        let mut line =
            br#"{"remote_addr":"192.0.2.1","time":"2026-11-01T00:15:02Z","request":""#.to_vec();
        line.extend_from_slice(request);
        line.extend_from_slice(b"\"}");
        let r = ok(&p, &line);
        let req = r.request.unwrap();
        assert_eq!(
            (req.method, req.target, req.protocol),
            (method, target, protocol)
        );
    }
    let line = br#"{"remote_addr":"192.0.2.1","time":"2026-11-01T00:15:02Z","request":"-"}"#;
    assert!(ok(&p, line).request.is_none());
}

// ---------------------------------------------------------------------------------------------
// Configuration: paths, arrays, alternatives, duplicates

fn fields(client: &str, time: &str) -> JsonFields {
    JsonFields {
        client: client.to_owned(),
        time: time.to_owned(),
        method: None,
        uri: None,
        request: None,
        status: None,
        bytes: None,
        referer: None,
        user_agent: None,
        cookie: None,
        forwarded_for: None,
        host: None,
        duration_seconds: None,
    }
}

#[test]
fn arrays_yield_their_first_element_at_any_level() {
    let p = JsonParser::new(
        JsonFields {
            user_agent: Some("h.ua".to_owned()),
            status: Some("s".to_owned()),
            ..fields("a.b.c", "t")
        },
        None,
    );
    let line = br#"{"a":[{"b":{"c":["192.0.2.1","192.0.2.2"]}},{"b":{"c":"x"}}],"t":[[1793492102]],"h":{"ua":[]},"s":[200,300]}"#;
    let r = ok(&p, line);
    assert_eq!(client(&r), Some(&b"192.0.2.1"[..]));
    assert_eq!(r.time.unwrap().utc_micros, BASE);
    assert_eq!(r.user_agent, None);
    assert_eq!(r.status, Some(200));
    // A path through a non-object finds nothing.
    let line = br#"{"a":"192.0.2.1","t":1793492102}"#;
    assert_eq!(err(&p, line), RejectReason::BadClient);
}

#[test]
fn duplicate_keys_first_wins() {
    let p = nginx();
    let line = br#"{"remote_addr":"192.0.2.1","remote_addr":"192.0.2.2","time":"2026-11-01T00:15:02Z","status":200,"status":"abc"}"#;
    let r = ok(&p, line);
    assert_eq!(client(&r), Some(&b"192.0.2.1"[..]));
    assert_eq!(r.status, Some(200));
    // Nested: both `request` objects are walked, the first value of each leaf is kept.
    let line = br#"{"ts":1793492102,"request":{"client_ip":"192.0.2.1"},"request":{"client_ip":"192.0.2.2","method":"GET"}}"#;
    let r = ok(&caddy(), line);
    assert_eq!(client(&r), Some(&b"192.0.2.1"[..]));
    assert_eq!(r.method, Some(&b"GET"[..]));
}

#[test]
fn two_fields_may_share_a_path_and_empty_paths_never_match() {
    let p = JsonParser::new(
        JsonFields {
            host: Some("c".to_owned()),
            referer: Some(String::new()),
            user_agent: Some("a..b|ua".to_owned()),
            ..fields("c", "t")
        },
        None,
    );
    let r = ok(
        &p,
        br#"{"c":"192.0.2.1","t":1793492102,"":"x","ua":"curl/8"}"#,
    );
    assert_eq!(r.vhost, Some(&b"192.0.2.1"[..]));
    assert_eq!(client(&r), Some(&b"192.0.2.1"[..]));
    assert_eq!(r.referer, None);
    assert_eq!(r.user_agent, Some(&b"curl/8"[..]));
}

#[test]
fn client_values() {
    let p = nginx();
    let with = |v: &str| format!(r#"{{"time":"2026-11-01T00:15:02Z","remote_addr":{v}}}"#);
    assert_eq!(client(&ok(&p, with("\"-\"").as_bytes())), None);
    assert_eq!(client(&ok(&p, with("null").as_bytes())), None);
    assert_eq!(
        client(&ok(&p, with("3221225985").as_bytes())),
        Some(&b"3221225985"[..])
    );
    for bad in ["\"\"", "true", "{}", "[]", "{\"a\":1}"] {
        assert_eq!(
            err(&p, with(bad).as_bytes()),
            RejectReason::BadClient,
            "{bad}"
        );
    }
    assert_eq!(
        err(&p, br#"{"time":"2026-11-01T00:15:02Z"}"#),
        RejectReason::BadClient
    );
}

// ---------------------------------------------------------------------------------------------
// Rejections

#[test]
fn field_rejections() {
    let p = nginx();
    let line = |extra: &str| {
        format!(r#"{{"remote_addr":"192.0.2.1","time":"2026-11-01T00:15:02Z"{extra}}}"#)
    };
    let cases: &[(&str, RejectReason)] = &[
        (r#","status":"abc""#, RejectReason::BadStatus),
        (r#","status":99"#, RejectReason::BadStatus),
        (r#","status":1000"#, RejectReason::BadStatus),
        (r#","status":200.0"#, RejectReason::BadStatus),
        (r#","status":-200"#, RejectReason::BadStatus),
        (r#","status":true"#, RejectReason::BadStatus),
        (r#","status":{"code":200}"#, RejectReason::BadStatus),
        (r#","body_bytes_sent":"-1""#, RejectReason::BadBytes),
        (r#","body_bytes_sent":1e3"#, RejectReason::BadBytes),
        (
            r#","body_bytes_sent":18446744073709551616"#,
            RejectReason::BadBytes,
        ),
        (r#","request_time":"fast""#, RejectReason::BadNumber),
        (r#","request_time":-0.1"#, RejectReason::BadNumber),
        (r#","request_time":"inf""#, RejectReason::BadNumber),
        (r#","request_time":1e300"#, RejectReason::BadNumber),
    ];
    for (extra, reason) in cases {
        assert_eq!(err(&p, line(extra).as_bytes()), *reason, "{extra}");
    }
    for extra in [
        r#","status":null"#,
        r#","status":"-""#,
        r#","body_bytes_sent":"""#,
    ] {
        let text = line(extra);
        let r = ok(&p, text.as_bytes());
        assert!(r.status.is_none() && r.bytes.is_none(), "{extra}");
    }
    let text = line(r#","request_time":1.5e-3,"body_bytes_sent":"18446744073709551615""#);
    let r = ok(&p, text.as_bytes());
    assert_eq!(r.duration_micros, Some(1_500));
    assert_eq!(r.bytes, Some(u64::MAX));
}

#[test]
fn time_rejections() {
    let p = nginx();
    for time in [
        "",
        "\"\"",
        "\"-\"",
        "null",
        "\"yesterday\"",
        "\"2026-13-01T00:15:02Z\"",
        "\"01/Nov/2026:09:15:02\"",
        "-1",
        "1e9",
        "[]",
        "{}",
    ] {
        let text = if time.is_empty() {
            r#"{"remote_addr":"192.0.2.1"}"#.to_owned()
        } else {
            format!(r#"{{"remote_addr":"192.0.2.1","time":{time}}}"#)
        };
        assert_eq!(err(&p, text.as_bytes()), RejectReason::BadTime, "{text}");
    }
}

#[test]
fn not_json_objects() {
    let p = caddy();
    let cases: &[(&[u8], RejectReason)] = &[
        (b"", RejectReason::BlankLine),
        (b" \t ", RejectReason::BlankLine),
        (b"\r\n", RejectReason::BlankLine),
        (b"[1,2]", RejectReason::UnexpectedText),
        (b"\"x\"", RejectReason::UnexpectedText),
        (b"42", RejectReason::UnexpectedText),
        (b"null", RejectReason::UnexpectedText),
        (b"}", RejectReason::UnexpectedText),
        (
            br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 1"#,
            RejectReason::UnexpectedText,
        ),
        (b"{\"ts\":1}{\"ts\":2}", RejectReason::UnexpectedText),
        (b"{\"ts\":1} x", RejectReason::UnexpectedText),
        (b"{'ts':1}", RejectReason::UnexpectedText),
        (b"{ts:1}", RejectReason::UnexpectedText),
        (b"{\"ts\" 1}", RejectReason::UnexpectedText),
        (b"{\"ts\":1,}", RejectReason::UnexpectedText),
        (b"{,\"ts\":1}", RejectReason::UnexpectedText),
        (b"{\"ts\":01}", RejectReason::UnexpectedText),
        (b"{\"ts\":1.}", RejectReason::UnexpectedText),
        (b"{\"ts\":.5}", RejectReason::UnexpectedText),
        (b"{\"ts\":+1}", RejectReason::UnexpectedText),
        (b"{\"ts\":tru}", RejectReason::UnexpectedText),
        (b"{\"ts\":NaN}", RejectReason::UnexpectedText),
        (b"{\"x\":[1,]}", RejectReason::UnexpectedText),
        (b"{\"x\":[1 2]}", RejectReason::UnexpectedText),
        (b"{\"x\":{\"a\":1]}", RejectReason::UnexpectedText),
        (b"{\"x\":[{\"a\":1}}", RejectReason::UnexpectedText),
        (b"{\"x\":{\"a\"}}", RejectReason::UnexpectedText),
        (b"{\"x\":{1:2}}", RejectReason::UnexpectedText),
        (br#"{"x":"\x41"}"#, RejectReason::UnexpectedText),
        (br#"{"x":"\u12G4"}"#, RejectReason::UnexpectedText),
        (br#"{"x":"\u12"}"#, RejectReason::UnexpectedText),
        (b"{\"x\":\"a\x00b\"}", RejectReason::Binary),
        (b"{\"x\":\"a\nb\"}", RejectReason::Binary),
        (b"\x00\x01\x02\x03", RejectReason::Binary),
        (b"{\"x\":\r1}", RejectReason::Binary),
    ];
    for (line, reason) in cases {
        assert_eq!(err(&p, line), *reason, "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn garbage_bytes_are_rejected() {
    let p = caddy();
    for line in [
        &b"\xff\xfe{\x00\"\x00"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\xef\xbb\xbf",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
        "{\"ts\":1793492102,\"request\":{\"client_ip\":\"192.0.2.1\"}}\u{2028}".as_bytes(),
        b"{\"ts\":1793492102,\"request\":{\"client_ip\":\"192.0.2.1\"}}\xc0",
    ] {
        assert!(p.parse(line).is_err(), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn every_strict_prefix_is_truncated() {
    for (parser, line) in [
        (caddy(), CADDY_27),
        (caddy(), CADDY_26),
        (caddy(), CADDY_24),
        (nginx(), NGINX),
        (
            caddy(),
            br#"{ "n" : -1.5e+3 , "a" : [ true , false , null , { } , [ ] , "\u00e9\\\"" ] , "ts" : 1793492102 , "request":{"client_ip":"192.0.2.1"}}"#,
        ),
    ] {
        ok(&parser, line);
        for cut in 1..line.len() {
            let prefix = &line[..cut];
            assert_eq!(
                err(&parser, prefix),
                RejectReason::Truncated,
                "{}",
                String::from_utf8_lossy(prefix)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Escapes, whitespace, depth

#[test]
fn unicode_escapes_are_kept_as_written() {
    let p = caddy();
    let line = br#"{"ts":1793492102,"request":{"client_ip":"192.0.2.1","uri":"/caf\u00e9/\ud83d\ude00?q=\"x\"\\\/","headers":{"User-Agent":["Mozilla\/5.0 \u0028\u0058\u0031\u0031\u0029"],"Cookie":["jt_uid=u-\u00e9"]}},"msg":"\u65e5\u672c"}"#;
    let r = ok(&JsonParser::new(JsonFields::caddy(), Some("jt_uid")), line);
    assert_eq!(
        r.url_path,
        Some(&br#"/caf\u00e9/\ud83d\ude00?q=\"x\"\\\/"#[..])
    );
    assert_eq!(
        r.user_agent,
        Some(&br"Mozilla\/5.0 \u0028\u0058\u0031\u0031\u0029"[..])
    );
    assert_eq!(cookie(&r), Some(&br"u-\u00e9"[..]));
    // Raw UTF-8 passes through untouched, and so do bytes that are not UTF-8.
    let mut line = br#"{"ts":1793492102,"request":{"client_ip":"192.0.2.1","uri":"/"#.to_vec();
    line.extend_from_slice("東京".as_bytes());
    line.extend_from_slice(b"\xff\x80\"}}");
    let r = ok(&p, &line);
    let mut expected = b"/".to_vec();
    expected.extend_from_slice("東京".as_bytes());
    expected.extend_from_slice(b"\xff\x80");
    assert_eq!(r.url_path, Some(&expected[..]));
    // An escaped key is compared as written: `\u0075ri` is not `uri`.
    let line = br#"{"ts":1793492102,"request":{"client_ip":"192.0.2.1","\u0075ri":"/x"}}"#;
    assert_eq!(ok(&p, line).url_path, None);
}

#[test]
fn whitespace_variations() {
    let p = caddy();
    for line in [
        &b"{\"ts\":1793492102,\"status\":200,\"request\":{\"client_ip\":\"192.0.2.1\"}}"[..],
        b"  { \"ts\" : 1793492102 , \"status\" : 200 , \"request\" : { \"client_ip\" : \"192.0.2.1\" } }  ",
        b"\t{\t\"ts\"\t:\t1793492102,\"status\":\t200,\"request\":{\"client_ip\":\"192.0.2.1\"\t}\t}\t",
        b"{\"ts\":1793492102,\"status\":200,\"request\":{\"client_ip\":\"192.0.2.1\"}}\r",
        b"{\"ts\":1793492102,\"status\":200,\"request\":{\"client_ip\":\"192.0.2.1\"}}\r\n",
        b"\xef\xbb\xbf{\"ts\":1793492102,\"status\":200,\"request\":{\"client_ip\":\"192.0.2.1\"}}",
    ] {
        let r = ok(&p, line);
        assert_eq!((client(&r), r.status), (Some(&b"192.0.2.1"[..]), Some(200)));
        assert_eq!(r.time.unwrap().utc_micros, BASE);
    }
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!(
        r#"{{"ts":1793492102,"request":{{"client_ip":"192.0.2.1"}},"deep":{}1{}}}"#,
        open.repeat(depth),
        close.repeat(depth)
    )
}

#[test]
fn nesting_is_bounded() {
    let p = caddy();
    let max = MAX_DEPTH as usize;
    // The line's object is level 1, so `max - 1` more levels fit.
    for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
        let fits = nested(max - 1, open, close);
        assert_eq!(ok(&p, fits.as_bytes()).status, None);
        let deeper = nested(max, open, close);
        assert_eq!(
            err(&p, deeper.as_bytes()),
            RejectReason::UnexpectedText,
            "{deeper}"
        );
    }
    // Hostile depth: no stack overflow, no quadratic time.
    let hostile = "[".repeat(100_000);
    let line = format!(r#"{{"ts":1793492102,"a":{hostile}"#);
    assert_eq!(err(&p, line.as_bytes()), RejectReason::UnexpectedText);
    // Depth inside a wanted path counts too.
    let line = format!(
        r#"{{"ts":1793492102,"request":{{"client_ip":{}"192.0.2.1"{}}}}}"#,
        "[".repeat(max),
        "]".repeat(max)
    );
    assert_eq!(err(&p, line.as_bytes()), RejectReason::UnexpectedText);
    let line = format!(
        r#"{{"ts":1793492102,"request":{{"client_ip":{}"192.0.2.1"{}}}}}"#,
        "[".repeat(max - 2),
        "]".repeat(max - 2)
    );
    assert_eq!(client(&ok(&p, line.as_bytes())), Some(&b"192.0.2.1"[..]));
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Days since 1970-01-01 (independent of the crate's `time` module).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let is_leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = |y: i64, m: i64| {
        [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize]
            + i64::from(m == 2 && is_leap(y))
    };
    let y = year - 1;
    let before_year = 365 * y + y / 4 - y / 100 + y / 400;
    let before_month: i64 = (1..month).map(|m| dim(year, m)).sum();
    before_year + before_month + day - 1 - 719_162
}

/// Any JSON value, small, for the keys the parser does not want.
fn noise() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(("[a-z_]{1,8}|[ -~]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum When {
    /// Epoch seconds and microseconds, written as a JSON number.
    Epoch(i64, u32),
    /// `(y, m, d, H, M, S, offset minutes)` written as ISO 8601.
    Iso(i64, i64, i64, i64, i64, i64, i64),
    /// The same, as nginx `$time_local`.
    Clf(i64, i64, i64, i64, i64, i64, i64),
}

impl When {
    fn value(&self) -> Value {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        match *self {
            When::Epoch(s, 0) => json!(s),
            When::Epoch(s, us) => json!(s as f64 + f64::from(us) / 1e6),
            When::Iso(y, mo, d, h, mi, s, off) => {
                let sign = if off < 0 { '-' } else { '+' };
                Value::String(format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{sign}{:02}:{:02}",
                    off.abs() / 60,
                    off.abs() % 60
                ))
            }
            When::Clf(y, mo, d, h, mi, s, off) => {
                let sign = if off < 0 { '-' } else { '+' };
                Value::String(format!(
                    "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02} {sign}{:02}{:02}",
                    MONTHS[(mo - 1) as usize],
                    off.abs() / 60,
                    off.abs() % 60
                ))
            }
        }
    }

    fn utc_micros(&self) -> i64 {
        match *self {
            When::Epoch(s, us) => s * 1_000_000 + i64::from(us),
            When::Iso(y, mo, d, h, mi, s, off) | When::Clf(y, mo, d, h, mi, s, off) => {
                ((days_since_epoch(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) - off * 60)
                    * 1_000_000
            }
        }
    }
}

fn when() -> impl Strategy<Value = When> {
    let civil = (
        1970i64..=2100,
        1i64..=12,
        1i64..=28,
        0i64..24,
        0i64..60,
        0i64..60,
        -720i64..=840,
    );
    prop_oneof![
        (946_684_800i64..=4_102_444_800, 0u32..1_000_000).prop_map(|(s, us)| When::Epoch(s, us)),
        (0i64..=4_102_444_800).prop_map(|s| When::Epoch(s, 0)),
        civil
            .clone()
            .prop_map(|(y, mo, d, h, mi, s, off)| When::Iso(y, mo, d, h, mi, s, off)),
        civil.prop_map(|(y, mo, d, h, mi, s, off)| When::Clf(y, mo, d, h, mi, s, off)),
    ]
}

#[derive(Debug, Clone)]
struct Generated {
    client: String,
    when: When,
    status: u16,
    bytes: u64,
    numbers_as_strings: bool,
    user_agent: String,
    uid: Option<String>,
    noise: Vec<(String, Value)>,
    /// Where among the noise the wanted keys go.
    positions: [prop::sample::Index; 6],
    pretty: bool,
}

impl Generated {
    /// An nginx-style object written by `serde_json`, keys interleaved with noise.
    fn line(&self) -> String {
        let num = |n: u64| {
            if self.numbers_as_strings {
                Value::String(n.to_string())
            } else {
                json!(n)
            }
        };
        let mut members: Vec<(String, Value)> = self.noise.clone();
        let wanted = [
            ("remote_addr", Value::String(self.client.clone())),
            ("time", self.when.value()),
            ("status", num(u64::from(self.status))),
            ("body_bytes_sent", num(self.bytes)),
            ("http_user_agent", Value::String(self.user_agent.clone())),
            (
                "http_cookie",
                Value::String(
                    self.uid
                        .as_ref()
                        .map_or_else(String::new, |u| format!("lang=ja; jt_uid={u}; _ga=GA1.2.3")),
                ),
            ),
        ];
        for ((key, value), at) in wanted.into_iter().zip(&self.positions) {
            let i = at.index(members.len() + 1);
            members.insert(i, (key.to_owned(), value));
        }
        // `serde_json::Map` would sort or dedupe keys; write the members in order by hand.
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| {
                let v = if self.pretty {
                    serde_json::to_string_pretty(v).unwrap()
                } else {
                    serde_json::to_string(v).unwrap()
                };
                format!("{}:{v}", serde_json::to_string(k).unwrap())
            })
            .collect();
        let sep = if self.pretty { ", " } else { "," };
        // Pretty output puts newlines between tokens only (never inside strings): make them spaces.
        format!("{{{}}}", body.join(sep)).replace('\n', " ")
    }
}

fn generated() -> impl Strategy<Value = Generated> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|v| std::net::Ipv6Addr::from(v).to_string()),
    ];
    let noise_key = "[a-z_]{1,10}".prop_filter("not a wanted key", |k| {
        ![
            "remote_addr",
            "time",
            "time_iso8601",
            "time_local",
            "msec",
            "status",
            "body_bytes_sent",
            "http_user_agent",
            "http_cookie",
            "request",
            "request_time",
            "http_referer",
            "http_referrer",
            "http_x_forwarded_for",
            "host",
            "http_host",
        ]
        .contains(&k.as_str())
    });
    (
        ip,
        when(),
        100u16..=999,
        prop_oneof![0u64..100_000, any::<u64>()],
        any::<bool>(),
        any::<String>(),
        proptest::option::of("[A-Za-z0-9._-]{1,16}"),
        vec((noise_key, noise()), 0..8),
        any::<[prop::sample::Index; 6]>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                client,
                when,
                status,
                bytes,
                numbers_as_strings,
                user_agent,
                uid,
                noise,
                positions,
                pretty,
            )| Generated {
                client,
                when,
                status,
                bytes,
                numbers_as_strings,
                user_agent,
                uid,
                noise,
                positions,
                pretty,
            },
        )
}

fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            select(vec![
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"",
                "\\",
                "\\\"",
                "\\u",
                "\\u00e9",
                " ",
                "\t",
                "\r",
                "null",
                "true",
                "fals",
                "-",
                "0",
                "1.5e-3",
                "e",
                ".",
                "\"ts\":",
                "\"request\":{",
                "\"client_ip\":\"192.0.2.1\"",
                "\"headers\":{\"Cookie\":[",
                "\"jt_uid=u-1\"",
                "1793492102.5",
                "\"status\":200",
                "\"size\":\"12\"",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            vec(any::<u8>(), 1..4),
        ],
        0..80,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes: Ok or Err, never a panic; what is accepted borrows the line.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..=2048)) {
        for p in [caddy(), nginx()] {
            if let Ok(r) = p.parse(&bytes) {
                check_accepted(&bytes, &r)?;
            }
        }
    }

    /// JSON-shaped soup reaches the scanner's corners that random bytes never do.
    #[test]
    fn json_shaped_soup_never_panics(bytes in json_soup()) {
        for p in [caddy(), nginx()] {
            if let Ok(r) = p.parse(&bytes) {
                check_accepted(&bytes, &r)?;
            }
        }
    }

    /// A valid Caddy line with random byte edits.
    #[test]
    fn mutated_caddy_lines_never_panic(edits in vec((any::<prop::sample::Index>(), 0u8..3, prop_oneof![
        Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b','), Just(b':'), any::<u8>(),
    ]), 1..6)) {
        let mut bytes = CADDY_27.to_vec();
        for (at, op, b) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, b),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = b,
                _ => bytes.push(b),
            }
        }
        if let Ok(r) = caddy().parse(&bytes) {
            check_accepted(&bytes, &r)?;
        }
    }

    /// Objects written by `serde_json` (numbers or strings, any noise around, compact or
    /// spaced) parse back to the client, time, status, bytes, user agent and cookie written.
    #[test]
    fn serde_json_objects_round_trip(g in generated()) {
        let line = g.line();
        let r = nginx().parse(line.as_bytes());
        prop_assert!(r.is_ok(), "rejected {:?}: {}", r.as_ref().err(), line);
        let r = r.unwrap();
        check_accepted(line.as_bytes(), &r)?;
        prop_assert_eq!(client(&r), Some(g.client.as_bytes()));
        let t = r.time.unwrap();
        let expected = g.when.utc_micros();
        // An epoch written as an f64 may lose the last microsecond in decimal conversion.
        prop_assert!((t.utc_micros - expected).abs() <= 1, "time {} != {} in {}", t.utc_micros, expected, line);
        prop_assert_eq!(r.status, Some(g.status));
        prop_assert_eq!(r.bytes, Some(g.bytes));
        let ua = serde_json::to_string(&g.user_agent).unwrap();
        let ua = &ua.as_bytes()[1..ua.len() - 1];
        let expected_ua = (!ua.is_empty() && ua != b"-").then_some(ua);
        prop_assert_eq!(r.user_agent, expected_ua);
        prop_assert_eq!(cookie(&r), g.uid.as_deref().map(str::as_bytes));

        // The same line, cut anywhere, is truncated.
        for cut in (1..line.len()).step_by(7) {
            if line.is_char_boundary(cut) && !line[..cut].trim().is_empty() {
                prop_assert_eq!(nginx().parse(&line.as_bytes()[..cut]).err(), Some(RejectReason::Truncated), "{}", &line[..cut]);
            }
        }
    }
}
