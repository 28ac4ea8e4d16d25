//! Property tests for the line parser: it never panics, structured lines round-trip field by
//! field, and truncated lines are rejected or parse to a record consistent with the prefix.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use logveil_parse::{LineParser, LogFormat, LogRecord, PRESETS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats beyond the presets that exercise other code paths (`%v:%p`, `%D`, `%U%q`, `%{..}C`, `%T`).
const CUSTOM_FORMATS: [&str; 3] = [
    r#"%v:%p %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#,
    r#"%h %t "%m %U%q %H" %>s %{jt_uid}C %T"#,
    r#"%a %t "%{Host}i" "%r" %s %B "%{Cookie}i""#,
];

fn parser(spec: &str) -> LineParser {
    LineParser::new(
        LogFormat::from_name_or_format(spec).expect("format compiles"),
        Some("jt_uid"),
    )
}

fn all_parsers() -> Vec<LineParser> {
    PRESETS
        .iter()
        .map(|(name, _)| *name)
        .chain(CUSTOM_FORMATS)
        .map(parser)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Independent date arithmetic (not the crate's `time` module): days counted from 0001-01-01.

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    DAYS[(month - 1) as usize] + i64::from(month == 2 && is_leap(year))
}

/// Days since 1970-01-01 of a proleptic Gregorian date with `year >= 1`.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let y = year - 1;
    let before_year = 365 * y + y / 4 - y / 100 + y / 400;
    let before_month: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
    // 719_162 days from 0001-01-01 to 1970-01-01.
    before_year + before_month + day - 1 - 719_162
}

#[test]
fn independent_day_count_agrees_with_known_dates() {
    assert_eq!(days_since_epoch(1970, 1, 1), 0);
    assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
    assert_eq!(days_since_epoch(2026, 11, 1), 20_758);
    assert_eq!(days_since_epoch(1969, 12, 31), -1);
    assert_eq!(days_since_epoch(2024, 2, 29), 19_782);
    assert_eq!(days_since_epoch(1, 1, 1), -719_162);
    assert_eq!(days_since_epoch(9999, 12, 31), 2_932_896);
}

// ---------------------------------------------------------------------------------------------
// Generators

#[derive(Debug, Clone)]
struct When {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    /// 0..=60: `:60` (a leap second) is accepted and counts as the next second.
    second: i64,
    offset_minutes: i64,
    /// How the month is spelled: `Nov`, `NOV` or `nov` (the parser is case-insensitive).
    month_case: u8,
    /// Write a zero offset as `-0000` instead of `+0000`.
    negative_zero: bool,
}

impl When {
    fn text(&self) -> String {
        let month = match self.month_case {
            0 => MONTHS[(self.month - 1) as usize].to_owned(),
            1 => MONTHS[(self.month - 1) as usize].to_ascii_uppercase(),
            _ => MONTHS[(self.month - 1) as usize].to_ascii_lowercase(),
        };
        let sign = if self.offset_minutes < 0 || (self.offset_minutes == 0 && self.negative_zero) {
            '-'
        } else {
            '+'
        };
        let off = self.offset_minutes.abs();
        format!(
            "{:02}/{month}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.day,
            self.year,
            self.hour,
            self.minute,
            self.second,
            off / 60,
            off % 60
        )
    }

    fn utc_micros(&self) -> i64 {
        let local = days_since_epoch(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second;
        (local - self.offset_minutes * 60) * 1_000_000
    }
}

fn leap_day() -> impl Strategy<Value = (i64, i64, i64)> {
    (1i64..=2499)
        .prop_map(|k| k * 4)
        .prop_filter("leap year", |&y| is_leap(y))
        .prop_map(|y| (y, 2, 29))
}

fn date() -> impl Strategy<Value = (i64, i64, i64)> {
    let any_year = (1i64..=9999, 1i64..=12)
        .prop_flat_map(|(y, m)| (Just(y), Just(m), 1..=days_in_month(y, m)));
    let recent = (1970i64..=2100, 1i64..=12)
        .prop_flat_map(|(y, m)| (Just(y), Just(m), 1..=days_in_month(y, m)));
    prop_oneof![2 => any_year, 2 => recent, 1 => leap_day()]
}

fn when() -> impl Strategy<Value = When> {
    (
        date(),
        0i64..24,
        0i64..60,
        0i64..=60,
        -720i64..=840,
        0u8..3,
        any::<bool>(),
    )
        .prop_map(
            |(
                (year, month, day),
                hour,
                minute,
                second,
                offset_minutes,
                month_case,
                negative_zero,
            )| When {
                year,
                month,
                day,
                hour,
                minute,
                second,
                offset_minutes,
                month_case,
                negative_zero,
            },
        )
}

fn client() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
        "[a-z][a-z0-9-]{0,9}(\\.[a-z0-9-]{1,10}){0,3}",
    ]
}

/// Text inside a quoted field as Apache writes it: printable ASCII with `"` and `\` escaped.
fn quoted_text(max_pieces: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[ !#-\\[\\]-~]{1,10}",
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
        1 => "\\\\x[0-9a-f]{2}",
    ];
    vec(piece, 0..max_pieces).prop_map(|p| p.concat())
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// As logged: may hold spaces and `\"`, `\\` escapes.
    target: String,
    protocol: Option<String>,
}

impl Request {
    fn text(&self) -> String {
        match &self.protocol {
            Some(p) => format!("{} {} {p}", self.method, self.target),
            None => format!("{} {}", self.method, self.target),
        }
    }
}

fn request() -> impl Strategy<Value = Request> {
    let method = select(vec![
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND",
    ])
    .prop_map(str::to_owned);
    // Lower case only, so no space-separated piece of the target can look like `HTTP/…`.
    let piece = prop_oneof![
        6 => "[a-z0-9/._~%?=&;:,+-]{1,8}",
        1 => Just(" ".to_owned()),
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
    ];
    let target = vec(piece, 0..12).prop_map(|p| format!("/{}", p.concat()));
    let protocol = prop_oneof![
        4 => select(vec!["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]).prop_map(|p| Some(p.to_owned())),
        1 => Just(None),
    ];
    (method, target, protocol).prop_map(|(method, target, protocol)| Request {
        method,
        target,
        protocol,
    })
}

#[derive(Debug, Clone)]
enum CookieHeader {
    Dash,
    Pairs {
        /// Other cookies, in order.
        others: Vec<(String, String)>,
        /// The visitor cookie: inserted before `others[index % (len + 1)]`.
        uid: Option<(usize, String)>,
        /// A second `jt_uid` appended at the end (the first must win).
        duplicate: Option<String>,
        separator: &'static str,
    },
}

impl CookieHeader {
    fn text(&self) -> String {
        match self {
            Self::Dash => "-".to_owned(),
            Self::Pairs {
                others,
                uid,
                duplicate,
                separator,
            } => {
                let mut pairs: Vec<String> =
                    others.iter().map(|(n, v)| format!("{n}={v}")).collect();
                if let Some((index, value)) = uid {
                    pairs.insert(index % (pairs.len() + 1), format!("jt_uid={value}"));
                }
                if let Some(value) = duplicate {
                    pairs.push(format!("jt_uid={value}"));
                }
                pairs.join(separator)
            }
        }
    }

    fn visitor(&self) -> Option<&str> {
        match self {
            Self::Dash => None,
            Self::Pairs { uid, duplicate, .. } => uid
                .as_ref()
                .map(|(_, v)| v.as_str())
                .or(duplicate.as_deref()),
        }
    }
}

fn cookie_header() -> impl Strategy<Value = CookieHeader> {
    let name =
        "[A-Za-z_][A-Za-z0-9_]{0,7}".prop_filter("not the visitor cookie", |n| n != "jt_uid");
    let other = (name, "[A-Za-z0-9._%-]{0,12}");
    let value = "[A-Za-z0-9._-]{1,16}";
    let pairs = (
        vec(other, 0..5),
        proptest::option::weighted(0.8, (any::<usize>(), value)),
        proptest::option::weighted(0.2, value),
        select(vec!["; ", ";", " ; "]),
    )
        .prop_map(|(others, uid, duplicate, separator)| CookieHeader::Pairs {
            others,
            uid,
            duplicate,
            separator,
        });
    prop_oneof![1 => Just(CookieHeader::Dash), 5 => pairs]
}

#[derive(Debug, Clone)]
struct Line {
    client: String,
    user: Option<String>,
    when: When,
    request: Request,
    status: u16,
    bytes: Option<u64>,
    referer: String,
    user_agent: String,
    cookie: CookieHeader,
}

impl Line {
    /// `common`: `%h %l %u %t "%r" %>s %b`
    fn common(&self) -> String {
        let bytes = self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
        format!(
            "{} - {} [{}] \"{}\" {} {bytes}",
            self.client,
            self.user.as_deref().unwrap_or("-"),
            self.when.text(),
            self.request.text(),
            self.status
        )
    }

    /// `combined`: common + `"%{Referer}i" "%{User-Agent}i"`
    fn combined(&self) -> String {
        format!(
            "{} \"{}\" \"{}\"",
            self.common(),
            self.referer,
            self.user_agent
        )
    }

    /// `combined_cookie`: combined + `"%{Cookie}i"`
    fn combined_cookie(&self) -> String {
        format!("{} \"{}\"", self.combined(), self.cookie.text())
    }
}

fn line() -> impl Strategy<Value = Line> {
    (
        client(),
        proptest::option::of("[a-z][a-z0-9._@]{0,10}"),
        when(),
        request(),
        100u16..=999,
        proptest::option::of(prop_oneof![0u64..100_000, 0u64..10_000_000_000_000_000_000]),
        quoted_text(8),
        quoted_text(12),
        cookie_header(),
    )
        .prop_map(
            |(client, user, when, request, status, bytes, referer, user_agent, cookie)| Line {
                client,
                user,
                when,
                request,
                status,
                bytes,
                referer,
                user_agent,
                cookie,
            },
        )
}

/// A `-` in a quoted header field means "not sent".
fn dash_is_none(s: &str) -> Option<&[u8]> {
    (s != "-").then_some(s.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Whether `part` lies inside `line`'s memory (records borrow the line, never anything else).
fn within(line: &[u8], part: &[u8]) -> bool {
    if part.is_empty() {
        // An empty field may be a `b""` constant (a request without a target).
        return true;
    }
    let (start, p) = (line.as_ptr() as usize, part.as_ptr() as usize);
    p >= start && p + part.len() <= start + line.len()
}

/// Invariants of every record the parser accepts, whatever the input.
fn check_accepted(line: &[u8], r: &LogRecord<'_>) -> Result<(), TestCaseError> {
    prop_assert!(r.time.is_some(), "accepted without a time");
    if let Some(s) = r.status {
        prop_assert!((100..=999).contains(&s));
    }
    let t = r.time.unwrap();
    prop_assert!((-12 * 3600..=14 * 3600).contains(&t.offset_seconds));
    let mut parts: Vec<&[u8]> = Vec::new();
    parts.extend(r.client.map(|c| c.expose_for_hashing()));
    parts.extend(r.remote_user.map(|c| c.expose_for_hashing()));
    parts.extend(r.visitor_cookie.map(|c| c.expose_for_hashing()));
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

fn check_round_trip(g: &Line, r: &LogRecord<'_>) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        r.client.map(|c| c.expose_for_hashing()),
        Some(g.client.as_bytes())
    );
    prop_assert_eq!(
        r.remote_user.map(|c| c.expose_for_hashing()),
        g.user.as_deref().map(str::as_bytes)
    );
    let t = r.time.expect("time");
    prop_assert_eq!(t.utc_micros, g.when.utc_micros(), "time {}", g.when.text());
    prop_assert_eq!(i64::from(t.offset_seconds), g.when.offset_minutes * 60);
    let req = r.request.expect("request");
    prop_assert_eq!(req.method, g.request.method.as_bytes());
    prop_assert_eq!(req.target, g.request.target.as_bytes());
    prop_assert_eq!(
        req.protocol,
        g.request.protocol.as_deref().map(str::as_bytes)
    );
    prop_assert_eq!(r.status, Some(g.status));
    prop_assert_eq!(r.bytes, g.bytes);
    prop_assert_eq!(
        (r.method, r.url_path, r.query, r.vhost, r.duration_micros),
        (None, None, None, None, None)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Arbitrary bytes: every format returns Ok or Err, never panics, and what it accepts
    /// borrows the line.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..=2048)) {
        for p in all_parsers() {
            if let Ok(r) = p.parse(&bytes) {
                check_accepted(&bytes, &r)?;
            }
        }
    }

    /// (a) Bytes made of log syntax (quotes, escapes, brackets, timestamps, dashes), which
    /// reach the backtracking paths random bytes never do.
    #[test]
    fn log_shaped_soup_never_panics(pieces in vec(prop_oneof![
        Just("\"".to_owned()), Just("\" \"".to_owned()), Just("\" ".to_owned()), Just(" ".to_owned()),
        Just("\\".to_owned()), Just("\\\"".to_owned()), Just("-".to_owned()), Just("[".to_owned()), Just("]".to_owned()),
        Just(":".to_owned()), Just("?".to_owned()), Just("\r".to_owned()), Just("\t".to_owned()),
        Just("[01/Nov/2026:09:15:02 +0900]".to_owned()), Just("GET / HTTP/1.1".to_owned()),
        "[0-9]{1,5}", "[a-z]{1,4}", Just("jt_uid=".to_owned()), Just("; ".to_owned()),
    ], 0..60)) {
        let line = pieces.concat();
        for p in all_parsers() {
            if let Ok(r) = p.parse(line.as_bytes()) {
                check_accepted(line.as_bytes(), &r)?;
            }
        }
    }

    /// (a) A valid line with random byte edits.
    #[test]
    fn mutated_lines_never_panic(g in line(), edits in vec((any::<prop::sample::Index>(), 0u8..3, prop_oneof![
        Just(b'"'), Just(b'\\'), Just(b' '), Just(b'['), Just(b']'), Just(b'-'), Just(b'\n'), any::<u8>(),
    ]), 1..6)) {
        let mut bytes = g.combined_cookie().into_bytes();
        for (at, op, b) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, b),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = b,
                _ => bytes.push(b),
            }
        }
        for p in all_parsers() {
            if let Ok(r) = p.parse(&bytes) {
                check_accepted(&bytes, &r)?;
            }
        }
    }

    /// (b) Structured `combined_cookie` lines parse back to what was generated, and the
    /// `combined` and `common` cuts of the same line do too.
    #[test]
    fn combined_cookie_round_trip(g in line()) {
        let text = g.combined_cookie();
        let r = parser("combined_cookie").parse(text.as_bytes());
        prop_assert!(r.is_ok(), "rejected {:?}: {}", r.as_ref().err(), text);
        let r = r.unwrap();
        check_accepted(text.as_bytes(), &r)?;
        check_round_trip(&g, &r)?;
        prop_assert_eq!(r.referer, dash_is_none(&g.referer));
        prop_assert_eq!(r.user_agent, dash_is_none(&g.user_agent));
        prop_assert_eq!(r.visitor_cookie.map(|c| c.expose_for_hashing()), g.cookie.visitor().map(str::as_bytes), "cookie header {}", g.cookie.text());

        // Line ends and trailing blanks change nothing.
        for suffix in ["\n", "\r\n", "  ", " \t\r\n"] {
            let with = format!("{text}{suffix}");
            let again = parser("combined_cookie").parse(with.as_bytes());
            prop_assert!(again.is_ok(), "suffix {:?} rejected: {:?}", suffix, again.err());
            check_round_trip(&g, &again.unwrap())?;
        }

        let text = g.combined();
        let r = parser("combined").parse(text.as_bytes());
        prop_assert!(r.is_ok(), "combined rejected {:?}: {}", r.as_ref().err(), text);
        let r = r.unwrap();
        check_round_trip(&g, &r)?;
        prop_assert_eq!(r.referer, dash_is_none(&g.referer));
        prop_assert_eq!(r.user_agent, dash_is_none(&g.user_agent));
        prop_assert!(r.visitor_cookie.is_none());

        let text = g.common();
        let r = parser("common").parse(text.as_bytes());
        prop_assert!(r.is_ok(), "common rejected {:?}: {}", r.as_ref().err(), text);
        let r = r.unwrap();
        check_round_trip(&g, &r)?;
        prop_assert_eq!((r.referer, r.user_agent), (None, None));
    }

    /// (c) A line cut at any byte: `combined_cookie` and `combined` lines end in a closing
    /// quote, so every strict prefix is rejected; a `common` prefix parses exactly when it
    /// ends inside the size, and then reads a size that is a decimal prefix of the original.
    #[test]
    fn truncated_lines_are_rejected_or_prefix_consistent(g in line()) {
        for (preset, text) in [("combined_cookie", g.combined_cookie()), ("combined", g.combined())] {
            let p = parser(preset);
            for cut in 0..text.len() {
                let prefix = &text.as_bytes()[..cut];
                let result = p.parse(prefix);
                prop_assert!(result.is_err(), "{} accepted a prefix of {} bytes: {}", preset, cut, String::from_utf8_lossy(prefix));
            }
        }

        let text = g.common();
        let bytes_text = g.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
        let size_starts = text.len() - bytes_text.len();
        let p = parser("common");
        for cut in 0..=text.len() {
            let prefix = &text.as_bytes()[..cut];
            match p.parse(prefix) {
                Ok(r) => {
                    prop_assert!(cut > size_starts, "accepted a prefix of {} bytes before the size: {}", cut, String::from_utf8_lossy(prefix));
                    check_accepted(prefix, &r)?;
                    let expected = Line { bytes: bytes_text[..cut - size_starts].parse().ok(), ..g.clone() };
                    check_round_trip(&expected, &r)?;
                }
                Err(reason) => prop_assert!(cut <= size_starts, "rejected a prefix of {} bytes ({}): {}", cut, reason, String::from_utf8_lossy(prefix)),
            }
        }
    }
}

/// Deterministic companion of (c): every cut of real-world oddities, including NASA's
/// unescaped quote and HTTP/0.9 lines, under every format; never a panic.
#[test]
fn every_cut_of_odd_lines_is_handled() {
    let lines: [&[u8]; 6] = [
        br#"frank.mtsu.edu - - [03/Jul/1995:02:41:15 -0400] "GET /images/" HTTP/1.0" 404 -"#,
        br#"columbia.acc.brad.ac.uk - - [01/Jul/1995:00:51:31 -0400] "GET /ksc.html" 200 7074"#,
        br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET /a\"b\\ HTTP/1.1" 200 1 "-" "agent \"quoted\" \\ end" "lang=ja; jt_uid=u-1""#,
        b"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] \"\\x16\\x03\\x01\" 400 0 \"-\" \"-\" \"-\"\r\n",
        br#"localhost:443 192.0.2.9 id user [26/Jul/2023:00:01:26 -0700] "GET /x HTTP/2.0" 200 17163 "-" "Mozilla/5.0" 116075"#,
        br#"192.0.2.1 [01/Nov/2026:09:15:02 +0900] "GET /a/b?x=1 HTTP/1.1" 200 u-9 3"#,
    ];
    let parsers = all_parsers();
    let mut accepted = String::new();
    for line in lines {
        for cut in 0..=line.len() {
            for p in &parsers {
                if let Ok(r) = p.parse(&line[..cut]) {
                    let check = check_accepted(&line[..cut], &r);
                    assert!(
                        check.is_ok(),
                        "{check:?}: {}",
                        String::from_utf8_lossy(&line[..cut])
                    );
                    let _ = writeln!(accepted, "{} {cut}", p.format().source());
                }
            }
        }
    }
    // Each full line is accepted by at least one format.
    for line in lines {
        assert!(
            parsers.iter().any(|p| p.parse(line).is_ok()),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    assert!(!accepted.is_empty());
}
