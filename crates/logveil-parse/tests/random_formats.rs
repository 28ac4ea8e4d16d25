//! Property tests over random formats (issue #3): a random Apache `LogFormat` or nginx
//! `log_format` string (1 to 12 distinct fields, exactly one of them a time, random
//! separators), a random record rendered with it, parsed back field by field. Plus: format
//! compilation never panics on strings mixing directives and junk, and lines built from
//! whatever compiles never panic the parser.
//!
//! Expected values are computed here, independently of the crate (own day count, own
//! request/cookie model); the crate's `time` module is not used.

use std::net::{Ipv4Addr, Ipv6Addr};

use logveil_parse::{
    Field, LineParser, LogFormat, LogRecord, Parsed, Parser, ParserState, RawIdentifier, Token,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Separators between fields. Each holds a blank, so no unquoted value (which never holds
/// one) can contain a separator.
const SEPARATORS: [&str; 4] = [" ", " | ", "\t", " :: "];

const VISITOR_COOKIE: &str = "jt_uid";

// ---------------------------------------------------------------------------------------------
// Independent date arithmetic: the Fliegel–Van Flandern Julian Day Number (a different
// algorithm from the crate's `days_from_civil`), valid for every year from -4713 on.

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    DAYS[(month - 1) as usize] + i64::from(month == 2 && is_leap(year))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    // -1 for January and February, 0 otherwise (division truncates toward zero).
    let a = (month - 14) / 12;
    let jdn = (1461 * (year + 4800 + a)) / 4 + (367 * (month - 2 - 12 * a)) / 12
        - (3 * ((year + 4900 + a) / 100)) / 4
        + day
        - 32_075;
    // JDN of 1970-01-01.
    jdn - 2_440_588
}

#[test]
fn independent_day_count_agrees_with_known_dates() {
    assert_eq!(days_since_epoch(1970, 1, 1), 0);
    assert_eq!(days_since_epoch(1969, 12, 31), -1);
    assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
    assert_eq!(days_since_epoch(2024, 2, 29), 19_782);
    assert_eq!(days_since_epoch(2026, 11, 1), 20_758);
    assert_eq!(days_since_epoch(1, 1, 1), -719_162);
    assert_eq!(days_since_epoch(9999, 12, 31), 2_932_896);
    // Consecutive days stay consecutive across month, year and century ends.
    let mut expected = days_since_epoch(1, 1, 1);
    for year in [1, 4, 100, 400, 1900, 2000, 2100] {
        expected = days_since_epoch(year, 1, 1);
        for month in 1..=12 {
            for day in 1..=days_in_month(year, month) {
                assert_eq!(
                    days_since_epoch(year, month, day),
                    expected,
                    "{year}-{month}-{day}"
                );
                expected += 1;
            }
        }
    }
    assert_eq!(expected, days_since_epoch(2101, 1, 1));
}

// ---------------------------------------------------------------------------------------------
// Layouts: which fields, in which order, spelled how.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Apache,
    Nginx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    User,
    Time,
    Request,
    Status,
    Bytes,
    Referer,
    UserAgent,
    CookieHeader,
    VisitorCookie,
    ForwardedFor,
    Duration,
    Vhost,
}

/// Every field but the time, which each layout holds exactly once.
const OTHER_KINDS: [Kind; 12] = [
    Kind::Client,
    Kind::User,
    Kind::Request,
    Kind::Status,
    Kind::Bytes,
    Kind::Referer,
    Kind::UserAgent,
    Kind::CookieHeader,
    Kind::VisitorCookie,
    Kind::ForwardedFor,
    Kind::Duration,
    Kind::Vhost,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeForm {
    /// Apache `%t`: `[dd/Mon/yyyy:HH:MM:SS +zzzz]`.
    ApacheClf,
    /// Apache `[%{%d/%b/%Y:%H:%M:%S %z}t]`: the same text through a strftime pattern.
    ApachePattern,
    /// Apache `%{sec}t`: whole seconds since the epoch.
    ApacheSec,
    /// Apache `%{msec}t`: milliseconds since the epoch.
    ApacheMsec,
    /// nginx `[$time_local]`.
    NginxLocal,
    /// nginx `$time_iso8601`: `2026-11-01T09:15:02+09:00`.
    NginxIso,
    /// nginx `$msec`: `1793492102.123`.
    NginxMsec,
}

impl TimeForm {
    fn is_epoch(self) -> bool {
        matches!(self, Self::ApacheSec | Self::ApacheMsec | Self::NginxMsec)
    }

    /// What replaces the directive in the line (brackets the format holds are not included).
    fn value(self, w: &When) -> String {
        let secs = w.utc_seconds();
        match self {
            Self::ApacheClf => format!("[{}]", w.clf()),
            Self::ApachePattern | Self::NginxLocal => w.clf(),
            Self::NginxIso => w.iso(),
            Self::ApacheSec => secs.to_string(),
            Self::ApacheMsec => (secs * 1000 + w.millis).to_string(),
            Self::NginxMsec => format!("{secs}.{:03}", w.millis),
        }
    }

    /// `(utc_micros, offset_seconds)` the parser must read. Epoch forms are UTC.
    fn expected(self, w: &When) -> (i64, i32) {
        let secs = w.utc_seconds() * 1_000_000;
        let offset = (w.offset_minutes * 60) as i32;
        match self {
            Self::ApacheClf | Self::ApachePattern | Self::NginxLocal | Self::NginxIso => {
                (secs, offset)
            }
            Self::ApacheSec => (secs, 0),
            Self::ApacheMsec | Self::NginxMsec => (secs + w.millis * 1000, 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DurationForm {
    /// Apache `%D`: microseconds.
    ApacheMicros,
    /// Apache `%T`: whole seconds.
    ApacheSeconds,
    /// nginx `$request_time`: seconds with milliseconds (`0.125`).
    NginxSeconds,
}

impl DurationForm {
    fn value(self, micros: u64) -> String {
        match self {
            Self::ApacheMicros => micros.to_string(),
            Self::ApacheSeconds => (micros / 1_000_000).to_string(),
            Self::NginxSeconds => format!("{}.{:03}", micros / 1_000_000, micros / 1000 % 1000),
        }
    }

    fn expected(self, micros: u64) -> u64 {
        match self {
            Self::ApacheMicros => micros,
            Self::ApacheSeconds => micros / 1_000_000 * 1_000_000,
            Self::NginxSeconds => micros / 1000 * 1000,
        }
    }
}

#[derive(Debug, Clone)]
struct Layout {
    dialect: Dialect,
    kinds: Vec<Kind>,
    time: TimeForm,
    duration: DurationForm,
    /// `separators[i]` sits between `kinds[i]` and `kinds[i + 1]`.
    separators: Vec<&'static str>,
    /// Per-position spellings that must not change the layout. Apache: bit 0/1 write the
    /// opening/closing quote as `\"`, bit 2 writes a tab separator before the field as `\t`,
    /// bit 3 writes `%a` for `%h`, bits 4.. pick the header name's case. nginx: bit 0 writes
    /// `${name}` for `$name`.
    spelling: Vec<u8>,
}

impl Layout {
    /// The format string.
    fn format(&self) -> String {
        let mut out = String::new();
        for (i, &kind) in self.kinds.iter().enumerate() {
            if i > 0 {
                let sep = self.separators[i - 1];
                let escaped_tab =
                    self.dialect == Dialect::Apache && sep == "\t" && self.spelling[i] & 4 != 0;
                out.push_str(if escaped_tab { "\\t" } else { sep });
            }
            out.push_str(&match self.dialect {
                Dialect::Apache => self.apache_directive(i, kind),
                Dialect::Nginx => self.nginx_directive(i, kind),
            });
        }
        out
    }

    fn apache_directive(&self, i: usize, kind: Kind) -> String {
        let spelling = self.spelling[i];
        let quote = |escaped: bool| if escaped { "\\\"" } else { "\"" };
        let quoted = |inner: &str| {
            format!(
                "{}{inner}{}",
                quote(spelling & 1 != 0),
                quote(spelling & 2 != 0)
            )
        };
        let header = |name: &str| {
            let name = match (spelling >> 4) % 3 {
                0 => name.to_owned(),
                1 => name.to_ascii_lowercase(),
                _ => name.to_ascii_uppercase(),
            };
            quoted(&format!("%{{{name}}}i"))
        };
        match kind {
            Kind::Client if spelling & 8 != 0 => "%a".to_owned(),
            Kind::Client => "%h".to_owned(),
            Kind::User => "%u".to_owned(),
            Kind::Time => match self.time {
                TimeForm::ApacheClf => "%t",
                TimeForm::ApachePattern => "[%{%d/%b/%Y:%H:%M:%S %z}t]",
                TimeForm::ApacheSec => "%{sec}t",
                TimeForm::ApacheMsec => "%{msec}t",
                other => unreachable!("{other:?} is not an Apache time"),
            }
            .to_owned(),
            Kind::Request => quoted("%r"),
            Kind::Status => "%>s".to_owned(),
            Kind::Bytes => "%b".to_owned(),
            Kind::Referer => header("Referer"),
            Kind::UserAgent => header("User-Agent"),
            Kind::CookieHeader => header("Cookie"),
            Kind::VisitorCookie => format!("%{{{VISITOR_COOKIE}}}C"),
            Kind::ForwardedFor => header("X-Forwarded-For"),
            Kind::Duration => match self.duration {
                DurationForm::ApacheMicros => "%D",
                DurationForm::ApacheSeconds => "%T",
                DurationForm::NginxSeconds => unreachable!("not an Apache duration"),
            }
            .to_owned(),
            Kind::Vhost => "%v".to_owned(),
        }
    }

    fn nginx_directive(&self, i: usize, kind: Kind) -> String {
        let var = |name: &str| {
            if self.spelling[i] & 1 != 0 {
                format!("${{{name}}}")
            } else {
                format!("${name}")
            }
        };
        let quoted = |name: &str| format!("\"{}\"", var(name));
        match kind {
            Kind::Client => var("remote_addr"),
            Kind::User => var("remote_user"),
            Kind::Time => match self.time {
                TimeForm::NginxLocal => format!("[{}]", var("time_local")),
                TimeForm::NginxIso => var("time_iso8601"),
                TimeForm::NginxMsec => var("msec"),
                other => unreachable!("{other:?} is not an nginx time"),
            },
            Kind::Request => quoted("request"),
            Kind::Status => var("status"),
            Kind::Bytes => var("body_bytes_sent"),
            Kind::Referer => quoted("http_referer"),
            Kind::UserAgent => quoted("http_user_agent"),
            Kind::CookieHeader => quoted("http_cookie"),
            Kind::VisitorCookie => var(&format!("cookie_{VISITOR_COOKIE}")),
            Kind::ForwardedFor => quoted("http_x_forwarded_for"),
            Kind::Duration => var("request_time"),
            Kind::Vhost => var("host"),
        }
    }

    /// The line a server with this format writes for `g`.
    fn line(&self, g: &Record) -> String {
        let mut out = String::new();
        for (i, &kind) in self.kinds.iter().enumerate() {
            if i > 0 {
                out.push_str(self.separators[i - 1]);
            }
            out.push_str(&self.value(kind, g));
        }
        out
    }

    /// What one field writes, with the quotes or brackets around it that the format holds.
    fn value(&self, kind: Kind, g: &Record) -> String {
        let quoted = |s: &str| format!("\"{s}\"");
        match kind {
            Kind::Client => g.client.clone(),
            Kind::User => g.user.clone(),
            Kind::Time => match self.time {
                TimeForm::ApachePattern | TimeForm::NginxLocal => {
                    format!("[{}]", self.time.value(&g.when))
                }
                form => form.value(&g.when),
            },
            Kind::Request => quoted(
                &g.request
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), Request::text),
            ),
            Kind::Status => g.status.to_string(),
            Kind::Bytes => g.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            Kind::Referer => quoted(&g.referer),
            Kind::UserAgent => quoted(&g.user_agent),
            Kind::CookieHeader => quoted(&g.cookie.text()),
            Kind::VisitorCookie => g.visitor_field.clone(),
            Kind::ForwardedFor => quoted(&g.forwarded_for),
            Kind::Duration => self.duration.value(g.duration_micros),
            Kind::Vhost => g.vhost.clone(),
        }
    }

    fn has(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

fn layout(dialect: Dialect) -> impl Strategy<Value = Layout> {
    let (times, durations) = match dialect {
        Dialect::Apache => (
            vec![
                TimeForm::ApacheClf,
                TimeForm::ApachePattern,
                TimeForm::ApacheSec,
                TimeForm::ApacheMsec,
            ],
            vec![DurationForm::ApacheMicros, DurationForm::ApacheSeconds],
        ),
        Dialect::Nginx => (
            vec![
                TimeForm::NginxLocal,
                TimeForm::NginxIso,
                TimeForm::NginxMsec,
            ],
            vec![DurationForm::NginxSeconds],
        ),
    };
    // 0..=11 other fields plus the time: 1..=12 fields in all, shuffled.
    let kinds = subsequence(OTHER_KINDS.to_vec(), 0..=11).prop_flat_map(|mut kinds| {
        kinds.push(Kind::Time);
        Just(kinds).prop_shuffle()
    });
    (
        kinds,
        select(times),
        select(durations),
        vec(select(SEPARATORS.to_vec()), 12),
        vec(any::<u8>(), 13),
    )
        .prop_map(
            move |(kinds, time, duration, separators, spelling)| Layout {
                dialect,
                kinds,
                time,
                duration,
                separators,
                spelling,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Records

#[derive(Debug, Clone)]
struct When {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    /// 0..=60: `:60` (a leap second) counts as the next second.
    second: i64,
    /// -720..=840 (-1200..+1400).
    offset_minutes: i64,
    /// Written only by the millisecond epoch forms.
    millis: i64,
    /// `Nov`, `NOV` or `nov` (parsers accept any case).
    month_case: u8,
    /// Write a zero offset as `-0000` / `-00:00`.
    negative_zero: bool,
}

impl When {
    fn utc_seconds(&self) -> i64 {
        days_since_epoch(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
            - self.offset_minutes * 60
    }

    fn offset(&self, colon: bool) -> String {
        let sign = if self.offset_minutes < 0 || (self.offset_minutes == 0 && self.negative_zero) {
            '-'
        } else {
            '+'
        };
        let off = self.offset_minutes.abs();
        let colon = if colon { ":" } else { "" };
        format!("{sign}{:02}{colon}{:02}", off / 60, off % 60)
    }

    /// `dd/Mon/yyyy:HH:MM:SS +zzzz`
    fn clf(&self) -> String {
        let month = MONTHS[(self.month - 1) as usize];
        let month = match self.month_case {
            0 => month.to_owned(),
            1 => month.to_ascii_uppercase(),
            _ => month.to_ascii_lowercase(),
        };
        format!(
            "{:02}/{month}/{:04}:{:02}:{:02}:{:02} {}",
            self.day,
            self.year,
            self.hour,
            self.minute,
            self.second,
            self.offset(false)
        )
    }

    /// `yyyy-mm-ddTHH:MM:SS+hh:mm`
    fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.offset(true)
        )
    }
}

fn date(min_year: i64) -> impl Strategy<Value = (i64, i64, i64)> {
    let any_year = (min_year..=9999, 1i64..=12)
        .prop_flat_map(|(y, m)| (Just(y), Just(m), 1..=days_in_month(y, m)));
    let recent = (1971i64..=2100, 1i64..=12)
        .prop_flat_map(|(y, m)| (Just(y), Just(m), 1..=days_in_month(y, m)));
    let leap_day = ((min_year + 3) / 4..=2499)
        .prop_map(|k| k * 4)
        .prop_filter("leap year", |&y| is_leap(y))
        .prop_map(|y| (y, 2, 29));
    prop_oneof![2 => any_year, 2 => recent, 1 => leap_day]
}

/// `min_year` 1971 keeps epoch forms non-negative whatever the offset.
fn when(min_year: i64) -> impl Strategy<Value = When> {
    (
        date(min_year),
        0i64..24,
        0i64..60,
        0i64..=60,
        -720i64..=840,
        0i64..1000,
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
                millis,
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
                millis,
                month_case,
                negative_zero,
            },
        )
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|v| Ipv6Addr::from(v).to_string()),
    ]
}

fn client() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => ip(),
        1 => "[a-z][a-z0-9-]{0,9}(\\.[a-z0-9-]{1,10}){0,3}",
    ]
}

/// An unquoted free-text value: no blank, so it never holds a separator; sometimes `-`.
fn unquoted() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => "[A-Za-z0-9._:/-]{1,20}",
        1 => Just("-".to_owned()),
    ]
}

/// Text inside a quoted field as a server writes it: printable ASCII with `"` and `\`
/// escaped (Apache's `\"`, `\\`; nginx's `\x22`). May be empty or `-`.
fn quoted_text(max_pieces: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[ !#-\\[\\]-~]{1,10}",
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
        1 => "\\\\x[0-9a-f]{2}",
    ];
    prop_oneof![
        1 => Just("-".to_owned()),
        8 => vec(piece, 0..max_pieces).prop_map(|p| p.concat()),
    ]
}

fn forwarded_for() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("-".to_owned()),
        3 => vec(ip(), 1..4).prop_map(|ips| ips.join(", ")),
        1 => quoted_text(6),
    ]
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    /// As logged: may hold spaces and `\"`, `\\` escapes.
    target: String,
    /// `None`: an HTTP/0.9 request line (`GET /x`).
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

/// A request line, or `None` for a logged `-`.
fn request() -> impl Strategy<Value = Option<Request>> {
    let method = select(vec![
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND",
    ])
    .prop_map(str::to_owned);
    // Lower case only, so no space-separated piece of the target can look like `HTTP/…`.
    let piece = prop_oneof![
        6 => "[a-z0-9/._~%=&;:,+-]{1,8}",
        1 => Just(" ".to_owned()),
        1 => Just("\\\"".to_owned()),
        1 => Just("\\\\".to_owned()),
    ];
    let path = vec(piece, 0..8).prop_map(|p| format!("/{}", p.concat()));
    let query = proptest::option::of("[a-z0-9=&%._-]{0,12}");
    let target = (path, query).prop_map(|(path, query)| match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    });
    let protocol = prop_oneof![
        4 => select(vec!["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]).prop_map(|p| Some(p.to_owned())),
        1 => Just(None),
    ];
    let request = (method, target, protocol).prop_map(|(method, target, protocol)| Request {
        method,
        target,
        protocol,
    });
    proptest::option::weighted(0.9, request)
}

#[derive(Debug, Clone)]
enum CookieHeader {
    Dash,
    Pairs {
        /// Other cookies, in order.
        others: Vec<(String, String)>,
        /// The visitor cookie: inserted before `others[index % (len + 1)]`; `true` writes
        /// its value in Apache's escaped quotes (`jt_uid=\"v\"`).
        uid: Option<(usize, String, bool)>,
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
                if let Some((index, value, escaped_quotes)) = uid {
                    let value = if *escaped_quotes {
                        format!("\\\"{value}\\\"")
                    } else {
                        value.clone()
                    };
                    pairs.insert(
                        index % (pairs.len() + 1),
                        format!("{VISITOR_COOKIE}={value}"),
                    );
                }
                if let Some(value) = duplicate {
                    pairs.push(format!("{VISITOR_COOKIE}={value}"));
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
                .map(|(_, v, _)| v.as_str())
                .or(duplicate.as_deref()),
        }
    }
}

fn cookie_header() -> impl Strategy<Value = CookieHeader> {
    let name =
        "[A-Za-z_][A-Za-z0-9_]{0,7}".prop_filter("not the visitor cookie", |n| n != VISITOR_COOKIE);
    let other = (name, "[A-Za-z0-9._%-]{0,12}");
    let value = "[A-Za-z0-9._-]{1,16}";
    let pairs = (
        vec(other, 0..5),
        proptest::option::weighted(0.8, (any::<usize>(), value, proptest::bool::weighted(0.2))),
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

/// Every field a layout may log; each layout writes only its own.
#[derive(Debug, Clone)]
struct Record {
    client: String,
    user: String,
    when: When,
    request: Option<Request>,
    status: u16,
    bytes: Option<u64>,
    referer: String,
    user_agent: String,
    cookie: CookieHeader,
    /// `%{jt_uid}C` / `$cookie_jt_uid`.
    visitor_field: String,
    forwarded_for: String,
    duration_micros: u64,
    vhost: String,
}

fn record(min_year: i64) -> impl Strategy<Value = Record> {
    (
        (
            client(),
            unquoted(),
            when(min_year),
            request(),
            100u16..=999,
            proptest::option::of(prop_oneof![0u64..100_000, 0u64..=u64::MAX]),
        ),
        (
            quoted_text(8),
            quoted_text(12),
            cookie_header(),
            unquoted(),
            forwarded_for(),
            prop_oneof![0u64..2_000_000, 0u64..100_000_000_000],
            unquoted(),
        ),
    )
        .prop_map(
            |(
                (client, user, when, request, status, bytes),
                (referer, user_agent, cookie, visitor_field, forwarded_for, duration_micros, vhost),
            )| Record {
                client,
                user,
                when,
                request,
                status,
                bytes,
                referer,
                user_agent,
                cookie,
                visitor_field,
                forwarded_for,
                duration_micros,
                vhost,
            },
        )
}

/// A layout, a record whose time its time form can write, and a line end.
fn case(dialect: Dialect) -> impl Strategy<Value = (Layout, Record, &'static str)> {
    layout(dialect).prop_flat_map(|layout| {
        let min_year = if layout.time.is_epoch() { 1971 } else { 1 };
        (
            Just(layout),
            record(min_year),
            select(vec!["", "\n", "\r\n"]),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Checks

/// A `-` means "not logged".
fn dash_is_none(s: &str) -> Option<&[u8]> {
    (s != "-").then_some(s.as_bytes())
}

fn exposed(id: Option<RawIdentifier<'_>>) -> Option<&[u8]> {
    id.map(|i| i.expose_for_hashing())
}

/// Every field of `r` equals what `layout` wrote for `g`; fields the layout does not log are `None`.
fn check(layout: &Layout, g: &Record, r: &LogRecord<'_>, ctx: &str) -> Result<(), TestCaseError> {
    let only = |kind: Kind| layout.has(kind);

    prop_assert_eq!(
        exposed(r.client),
        only(Kind::Client).then_some(g.client.as_bytes()),
        "client; {}",
        ctx
    );
    prop_assert_eq!(
        exposed(r.remote_user),
        dash_is_none(&g.user).filter(|_| only(Kind::User)),
        "remote user; {}",
        ctx
    );
    prop_assert_eq!(
        r.time.map(|t| (t.utc_micros, t.offset_seconds)),
        Some(layout.time.expected(&g.when)),
        "time (utc µs, offset s) of {:?}; {}",
        g.when,
        ctx
    );
    prop_assert_eq!(
        r.request.map(|q| (q.method, q.target, q.protocol)),
        g.request.as_ref().filter(|_| only(Kind::Request)).map(|q| (
            q.method.as_bytes(),
            q.target.as_bytes(),
            q.protocol.as_deref().map(str::as_bytes)
        )),
        "request; {}",
        ctx
    );
    prop_assert_eq!(
        r.status,
        only(Kind::Status).then_some(g.status),
        "status; {}",
        ctx
    );
    prop_assert_eq!(
        r.bytes,
        g.bytes.filter(|_| only(Kind::Bytes)),
        "bytes; {}",
        ctx
    );
    prop_assert_eq!(
        r.referer,
        dash_is_none(&g.referer).filter(|_| only(Kind::Referer)),
        "referer; {}",
        ctx
    );
    prop_assert_eq!(
        r.user_agent,
        dash_is_none(&g.user_agent).filter(|_| only(Kind::UserAgent)),
        "user agent; {}",
        ctx
    );
    // Both a `Cookie` header and a `%{jt_uid}C` field may be logged: the later one in the
    // format sets the visitor cookie (each writes its value, `None` included).
    let mut visitor = None;
    for kind in &layout.kinds {
        match kind {
            Kind::CookieHeader => visitor = g.cookie.visitor().map(str::as_bytes),
            Kind::VisitorCookie => visitor = dash_is_none(&g.visitor_field),
            _ => {}
        }
    }
    prop_assert_eq!(
        exposed(r.visitor_cookie),
        visitor,
        "visitor cookie from {:?}; {}",
        g.cookie.text(),
        ctx
    );
    prop_assert_eq!(
        exposed(r.forwarded_for),
        dash_is_none(&g.forwarded_for).filter(|_| only(Kind::ForwardedFor)),
        "forwarded for; {}",
        ctx
    );
    prop_assert_eq!(
        r.duration_micros,
        only(Kind::Duration).then(|| layout.duration.expected(g.duration_micros)),
        "duration; {}",
        ctx
    );
    prop_assert_eq!(
        r.vhost,
        dash_is_none(&g.vhost).filter(|_| only(Kind::Vhost)),
        "vhost; {}",
        ctx
    );
    // Nothing this file generates fills the split request fields.
    prop_assert_eq!(
        (r.method, r.url_path, r.query),
        (None, None, None),
        "split request fields; {}",
        ctx
    );
    Ok(())
}

fn round_trip(layout: &Layout, g: &Record, line_end: &str) -> Result<(), TestCaseError> {
    let fmt = layout.format();
    let format = LogFormat::from_name_or_format(&fmt);
    prop_assert!(
        format.is_ok(),
        "format {:?} refused: {:?}",
        fmt,
        format.err()
    );
    let format = format.unwrap();
    prop_assert_eq!(format.source(), fmt.as_str());
    let fields: Vec<&Field> = format
        .tokens()
        .iter()
        .filter_map(|t| match t {
            Token::Field(f) => Some(f),
            Token::Literal(_) => None,
        })
        .collect();
    prop_assert_eq!(fields.len(), layout.kinds.len(), "fields of {:?}", fmt);
    prop_assert_eq!(fields.iter().filter(|f| f.is_time()).count(), 1);

    let line = format!("{}{line_end}", layout.line(g));
    let ctx = format!("format {fmt:?}, line {line:?}");
    let parser = LineParser::new(format, Some(VISITOR_COOKIE));
    let parsed = parser.parse(line.as_bytes());
    prop_assert!(parsed.is_ok(), "rejected {:?}; {}", parsed.err(), ctx);
    check(layout, g, &parsed.unwrap(), &ctx)?;

    // The `Parser` facade reads the same record.
    let facade = Parser::new(&fmt, Some(VISITOR_COOKIE), None);
    prop_assert!(facade.is_ok(), "facade refused {:?}", fmt);
    match facade
        .unwrap()
        .parse(line.as_bytes(), &mut ParserState::default())
    {
        Ok(Parsed::Record(r)) => check(layout, g, &r, &ctx)?,
        other => prop_assert!(false, "facade: {:?}; {}", other, ctx),
    }
    Ok(())
}

/// The model above agrees with hand-checked values (the crate's own doc example).
#[test]
fn model_matches_a_known_line() {
    let when = When {
        year: 2026,
        month: 11,
        day: 1,
        hour: 9,
        minute: 15,
        second: 2,
        offset_minutes: 9 * 60,
        millis: 250,
        month_case: 0,
        negative_zero: false,
    };
    assert_eq!(when.clf(), "01/Nov/2026:09:15:02 +0900");
    assert_eq!(when.iso(), "2026-11-01T09:15:02+09:00");
    assert_eq!(
        TimeForm::ApacheClf.expected(&when),
        (1_793_492_102_000_000, 32_400)
    );
    assert_eq!(TimeForm::NginxMsec.value(&when), "1793492102.250");
    assert_eq!(
        TimeForm::ApacheMsec.expected(&when),
        (1_793_492_102_250_000, 0)
    );
    let layout = Layout {
        dialect: Dialect::Nginx,
        kinds: vec![Kind::Client, Kind::Time, Kind::Request, Kind::Duration],
        time: TimeForm::NginxLocal,
        duration: DurationForm::NginxSeconds,
        separators: vec![" ", " | ", "\t"],
        spelling: vec![0, 0, 1, 0],
    };
    assert_eq!(
        layout.format(),
        "$remote_addr [$time_local] | \"${request}\"\t$request_time"
    );
    let g = Record {
        client: "192.0.2.1".to_owned(),
        user: "-".to_owned(),
        when,
        request: Some(Request {
            method: "GET".to_owned(),
            target: "/a?b".to_owned(),
            protocol: Some("HTTP/1.1".to_owned()),
        }),
        status: 200,
        bytes: None,
        referer: "-".to_owned(),
        user_agent: "-".to_owned(),
        cookie: CookieHeader::Dash,
        visitor_field: "-".to_owned(),
        forwarded_for: "-".to_owned(),
        duration_micros: 1_234_567,
        vhost: "-".to_owned(),
    };
    assert_eq!(
        layout.line(&g),
        "192.0.2.1 [01/Nov/2026:09:15:02 +0900] | \"GET /a?b HTTP/1.1\"\t1.234"
    );
    round_trip(&layout, &g, "\n").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Compiling junk

/// Directives of both dialects, valid and not.
const DIRECTIVES: &[&str] = &[
    "%h",
    "%a",
    "%l",
    "%u",
    "%t",
    "%r",
    "%>s",
    "%s",
    "%b",
    "%B",
    "%O",
    "%D",
    "%T",
    "%v",
    "%V",
    "%m",
    "%U",
    "%q",
    "%U%q",
    "%H",
    "%p",
    "%X",
    "%^",
    "%{sec}t",
    "%{msec}t",
    "%{usec}t",
    "%{msec_frac}t",
    "%{begin:sec}t",
    "%{end:%d/%b/%Y}t",
    "[%{%d/%b/%Y:%H:%M:%S %z}t]",
    "%{%F %T.%f}t",
    "%{%H:%M}t",
    "%{%Y %Q}t",
    "%{%Y%%}t",
    "%{Referer}i",
    "%{User-Agent}i",
    "%{Cookie}i",
    "%{X-Forwarded-For}i",
    "%{jt_uid}C",
    "%400,501{User-agent}i",
    "%{x}n",
    "%{Host}i",
    "%<s",
    "%!200u",
    "$remote_addr",
    "$remote_user",
    "$time_local",
    "[$time_local]",
    "$time_iso8601",
    "$msec",
    "$request",
    "$status",
    "$body_bytes_sent",
    "$http_referer",
    "$http_user_agent",
    "$http_cookie",
    "$cookie_jt_uid",
    "$http_x_forwarded_for",
    "$request_time",
    "$host",
    "${request}",
    "${msec}",
    "$request_uri",
    "$uri",
    "$args",
    "$upstream_http_x",
    "$arg_q",
    "$bogus",
];

const JUNK: &[&str] = &[
    "%", "%%", "%{", "%{}", "}", "{", "$", "${", "${}", "$$", "\\", "\\t", "\\n", "\\\"", "\\%",
    "\"", "\" \"", "[", "]", " ", "\t", "%>", "%<", "%!", "%4", "%{%", "%{%z", ":", "é", "日本",
    "\u{0}", "\n", "\u{7f}", "-",
];

fn format_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(DIRECTIVES).prop_map(str::to_owned),
        3 => select(SEPARATORS.to_vec()).prop_map(str::to_owned),
        3 => select(JUNK).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[ -~]{1,4}",
    ]
}

/// A format string: either pure soup, or directives between separators with junk mixed in
/// now and then (so that a good share compiles and its lines get parsed).
fn format_spec() -> impl Strategy<Value = String> {
    let structured = vec(
        (
            select(DIRECTIVES),
            select(SEPARATORS.to_vec()),
            proptest::option::weighted(0.15, format_piece()),
        ),
        1..10,
    )
    .prop_map(|parts| {
        let mut spec = String::new();
        for (directive, separator, junk) in parts {
            spec.push_str(directive);
            spec.push_str(junk.as_deref().unwrap_or(separator));
        }
        spec
    });
    prop_oneof![
        1 => vec(format_piece(), 0..16).prop_map(|p| p.concat()),
        2 => structured,
    ]
}

/// Values a field of this kind plausibly holds.
fn plausible(field: &Field) -> &'static [&'static str] {
    match field {
        Field::Client => &["192.0.2.1", "2001:db8::1", "host.example", "-"],
        Field::Ident | Field::RemoteUser | Field::Skip => &["-", "alice", "443"],
        Field::Time => &[
            "[01/Nov/2026:09:15:02 +0900]",
            "[29/Feb/2024:00:00:60 -1200]",
        ],
        Field::TimeClf => &["01/Nov/2026:09:15:02 +0900"],
        Field::TimeIso8601 => &["2026-11-01T09:15:02+09:00", "2026-11-01T00:15:02.5Z"],
        Field::TimeEpochSeconds => &["1793492102", "1793492102.123"],
        Field::TimeEpochUnits(_) => &["1793492102123", "0"],
        Field::TimePattern(_) => &["01/Nov/2026:09:15:02 +0900", "2026-11-01 00:15:02.5"],
        Field::Request => &[
            "GET /a?b HTTP/1.1",
            "GET /images/\" HTTP/1.0",
            "GET /x",
            "-",
        ],
        Field::Method => &["GET", "POST"],
        Field::UrlPath => &["/a/b", "/"],
        Field::Query => &["?x=1", ""],
        Field::Target => &["/a?b=c"],
        Field::Protocol => &["HTTP/1.1"],
        Field::Status => &["200", "404", "-"],
        Field::Bytes => &["0", "5123", "-"],
        Field::DurationMicros => &["1234", "-"],
        Field::DurationSeconds => &["0.125", "3"],
        Field::ForwardedFor => &["203.0.113.5, 198.51.100.9", "-"],
        Field::Header(_) => &["Mozilla/5.0 (X11)", "a=b; jt_uid=u-1", "-", "q \\\" x"],
        Field::Cookie(_) => &["u-9", "-"],
        Field::VirtualHost => &["www.example.com", "-"],
    }
}

/// Anything at all for a field.
fn junk_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "-", "", "[01/Nov/2026:09:15:02 +0900]", "\"GET /a\" b\"", "jt_uid=u-1", "\\\"",
            "\"", "\\", "a b", "?x=1", "[", "]", " :: ", " | ", "\t",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,8}",
        1 => any::<char>().prop_map(String::from),
    ]
}

/// A line for `format`: its literals, and at each field a plausible value for the field's
/// kind (`choices`) or, now and then, a junk value.
fn line_for(format: &LogFormat, choices: &[(usize, Option<String>)]) -> Vec<u8> {
    let mut line = Vec::new();
    let mut next = choices.iter().cycle();
    for token in format.tokens() {
        match token {
            Token::Literal(lit) => line.extend_from_slice(lit),
            Token::Field(field) => match next.next() {
                Some((_, Some(junk))) => line.extend_from_slice(junk.as_bytes()),
                Some((pick, None)) => {
                    let values = plausible(field);
                    line.extend_from_slice(values[pick % values.len()].as_bytes());
                }
                None => {}
            },
        }
    }
    line
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A random Apache `LogFormat`: every generated field parses back equal.
    #[test]
    fn apache_random_format_round_trip((layout, record, line_end) in case(Dialect::Apache)) {
        round_trip(&layout, &record, line_end)?;
    }

    /// A random nginx `log_format`: every generated field parses back equal.
    #[test]
    fn nginx_random_format_round_trip((layout, record, line_end) in case(Dialect::Nginx)) {
        round_trip(&layout, &record, line_end)?;
    }

    /// Compiling strings that mix directives and junk returns Ok or Err, never panics;
    /// whatever compiles has a time field, remembers its source, and parses lines built
    /// from its own literals without panicking.
    #[test]
    fn format_compile_never_panics(
        spec in format_spec(),
        choices in vec((any::<usize>(), proptest::option::weighted(0.1, junk_value())), 1..16),
    ) {
        let compiled = [
            LogFormat::from_name_or_format(&spec),
            LogFormat::apache(&spec),
            LogFormat::nginx(&spec),
        ];
        let _ = Parser::new(&spec, Some(VISITOR_COOKIE), None);
        for (i, format) in compiled.into_iter().enumerate() {
            let Ok(format) = format else { continue };
            prop_assert!(
                format.tokens().iter().any(|t| matches!(t, Token::Field(f) if f.is_time())),
                "{:?} compiled without a time", spec
            );
            if i > 0 {
                prop_assert_eq!(format.source(), spec.as_str());
            }
            let line = line_for(&format, &choices);
            let parser = LineParser::new(format, Some(VISITOR_COOKIE));
            for candidate in [&line[..], &line[..line.len() / 2]] {
                if let Ok(r) = parser.parse(candidate) {
                    prop_assert!(r.time.is_some(), "accepted without a time");
                    if let Some(s) = r.status {
                        prop_assert!((100..=999).contains(&s));
                    }
                }
            }
        }
    }
}
