//! W3C extended log format (IIS, Oracle Web Cache, Incapsula, …).
//!
//! The layout is declared inside the file: a `#Fields:` directive lists the fields of the
//! lines that follow, and may change mid-file. `#Date:`/`#Start-Date:` supply the date
//! for files that log only `time`; `#GMT-Offset: -0800` shifts local times to UTC (W3C
//! times are UTC otherwise). Values are separated by runs of spaces or tabs; a value may
//! be double-quoted (`""` inside is a quote); `-` is empty; IIS writes spaces in values as
//! `+` (kept as logged, except when splitting the Cookie header).
//!
//! The state a line needs (current fields, date, offset) lives in [`W3cState`], which the
//! caller carries from line to line and across chunks.

use std::sync::Arc;

use crate::cookie::find_cookie_plus_spaces;
use crate::error::RejectReason;
use crate::record::{LogRecord, RawIdentifier, Timestamp};
use crate::time::{self, MICROS_PER_SECOND};

/// What a W3C field maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum W3cField {
    Date,
    Time,
    ClientIp,
    UserName,
    Method,
    UriStem,
    UriQuery,
    Uri,
    Status,
    Bytes,
    UserAgent,
    Referer,
    Cookie,
    Host,
    ForwardedFor,
    TimeTakenMillis,
    Other,
}

fn field_for(name: &str) -> W3cField {
    match name.to_ascii_lowercase().as_str() {
        "date" | "date-local" => W3cField::Date,
        "time" | "time-local" => W3cField::Time,
        "c-ip" => W3cField::ClientIp,
        "cs-username" | "c-auth-id" => W3cField::UserName,
        "cs-method" => W3cField::Method,
        "cs-uri-stem" => W3cField::UriStem,
        "cs-uri-query" => W3cField::UriQuery,
        "cs-uri" => W3cField::Uri,
        "sc-status" => W3cField::Status,
        "sc-bytes" | "bytes" => W3cField::Bytes,
        "cs(user-agent)" => W3cField::UserAgent,
        "cs(referer)" | "cs(referrer)" => W3cField::Referer,
        "cs(cookie)" => W3cField::Cookie,
        "cs(host)" | "cs-host" => W3cField::Host,
        "cs(x-forwarded-for)" | "x-forwarded-for" => W3cField::ForwardedFor,
        "time-taken" | "timetakenms" => W3cField::TimeTakenMillis,
        _ => W3cField::Other,
    }
}

/// What the directives seen so far say about the lines that follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct W3cState {
    fields: Option<Arc<[W3cField]>>,
    /// From `#Date:` / `#Start-Date:`: the day for lines without a `date` field.
    default_day: Option<i32>,
    /// From `#GMT-Offset:`, seconds east of UTC.
    offset_seconds: i32,
}

impl W3cState {
    /// Applies one directive line (starting with `#`). Unknown directives change nothing.
    pub fn apply_directive(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line[1..].split_once(':') else {
            return;
        };
        // Some writers append comments after the value (`#Version: 1.0   // …`).
        let value = value.split("//").next().unwrap_or_default().trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "fields" => {
                self.fields = Some(value.split_ascii_whitespace().map(field_for).collect());
            }
            "date" | "start-date" => {
                if let Some(date) = value.split_ascii_whitespace().next()
                    && let Some(ts) = time::parse_date_and_time(date.as_bytes(), b"00:00:00")
                {
                    self.default_day = Some(ts.utc_micros.div_euclid(time::MICROS_PER_DAY) as i32);
                }
            }
            "gmt-offset" => {
                if let Some(seconds) = parse_gmt_offset(value) {
                    self.offset_seconds = seconds;
                }
            }
            _ => {}
        }
    }
}

fn parse_gmt_offset(value: &str) -> Option<i32> {
    let b = value.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = value[1..].replace(':', "");
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = (
        digits[..2].parse::<i32>().ok()?,
        digits[2..].parse::<i32>().ok()?,
    );
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Splits a data line into values: runs of spaces/tabs separate; `"…"` quotes (with `""`).
fn values(line: &[u8]) -> impl Iterator<Item = Result<&[u8], RejectReason>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < line.len() && matches!(line[pos], b' ' | b'\t') {
            pos += 1;
        }
        if pos >= line.len() {
            return None;
        }
        let start = pos;
        if line[pos] == b'"' {
            let mut i = pos + 1;
            loop {
                match memchr::memchr(b'"', &line[i..]) {
                    None => {
                        pos = line.len();
                        return Some(Err(RejectReason::UnterminatedQuote));
                    }
                    Some(k) if line.get(i + k + 1) == Some(&b'"') => i += k + 2,
                    Some(k) => {
                        pos = i + k + 1;
                        return Some(Ok(&line[start + 1..i + k]));
                    }
                }
            }
        }
        let end = memchr::memchr2(b' ', b'\t', &line[pos..]).map_or(line.len(), |k| pos + k);
        pos = end;
        Some(Ok(&line[start..end]))
    })
}

fn none_if_dash(v: &[u8]) -> Option<&[u8]> {
    (!v.is_empty() && v != b"-").then_some(v)
}

fn number(v: &[u8], reason: RejectReason) -> Result<Option<u64>, RejectReason> {
    none_if_dash(v)
        .map(|v| {
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(reason);
            }
            Ok(v.iter()
                .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0')))
        })
        .transpose()
}

/// Parses one W3C data line under `state` (the caller handles `#` directive lines).
pub fn parse_w3c_line<'a>(
    line: &'a [u8],
    state: &W3cState,
    visitor_cookie: Option<&[u8]>,
) -> Result<LogRecord<'a>, RejectReason> {
    let fields = state.fields.as_deref().ok_or(RejectReason::NoFields)?;
    let mut record = LogRecord::default();
    let (mut date, mut clock): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut stem: Option<&[u8]> = None;
    let mut values = values(line);
    for field in fields {
        let value = values.next().ok_or(RejectReason::Truncated)??;
        match field {
            W3cField::Date => date = none_if_dash(value),
            W3cField::Time => clock = none_if_dash(value),
            W3cField::ClientIp => record.client = none_if_dash(value).map(RawIdentifier::new),
            W3cField::UserName => record.remote_user = none_if_dash(value).map(RawIdentifier::new),
            W3cField::Method => record.method = none_if_dash(value),
            W3cField::UriStem => stem = none_if_dash(value),
            W3cField::UriQuery => record.query = none_if_dash(value),
            W3cField::Uri => record.url_path = none_if_dash(value),
            W3cField::Status => {
                record.status = number(value, RejectReason::BadStatus)?
                    .map(|s| {
                        u16::try_from(s)
                            .ok()
                            .filter(|s| (100..=999).contains(s))
                            .ok_or(RejectReason::BadStatus)
                    })
                    .transpose()?;
            }
            W3cField::Bytes => record.bytes = number(value, RejectReason::BadBytes)?,
            W3cField::UserAgent => record.user_agent = none_if_dash(value),
            W3cField::Referer => record.referer = none_if_dash(value),
            W3cField::Cookie => {
                record.visitor_cookie = visitor_cookie
                    .and_then(|name| find_cookie_plus_spaces(none_if_dash(value)?, name))
                    .map(RawIdentifier::new);
            }
            W3cField::Host => record.vhost = none_if_dash(value),
            W3cField::ForwardedFor => {
                record.forwarded_for = none_if_dash(value).map(RawIdentifier::new);
            }
            W3cField::TimeTakenMillis => {
                record.duration_micros =
                    number(value, RejectReason::BadNumber)?.map(|ms| ms.saturating_mul(1000));
            }
            W3cField::Other => {}
        }
    }
    if values.next().is_some() {
        return Err(RejectReason::FieldCount);
    }
    if let Some(stem) = stem {
        // `cs-uri-stem` (+ `cs-uri-query`) is the request target; a `cs-uri` already is.
        record.url_path = Some(stem);
    }
    let clock = clock.ok_or(RejectReason::BadTime)?;
    let local = match date {
        Some(date) => time::parse_date_and_time(date, clock),
        None => state.default_day.and_then(|day| {
            let midnight = time::parse_date_and_time(b"1970-01-01", clock)?;
            Some(Timestamp {
                utc_micros: midnight.utc_micros + i64::from(day) * time::MICROS_PER_DAY,
                offset_seconds: 0,
            })
        }),
    }
    .ok_or(RejectReason::BadTime)?;
    record.time = Some(Timestamp {
        utc_micros: local.utc_micros - i64::from(state.offset_seconds) * MICROS_PER_SECOND,
        offset_seconds: state.offset_seconds,
    });
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(directives: &[&str]) -> W3cState {
        let mut s = W3cState::default();
        for d in directives {
            s.apply_directive(d.as_bytes());
        }
        s
    }

    #[test]
    fn iis_line_with_plus_spaces_and_cookie() {
        let s = state(&[
            "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Cookie) cs(Referer) sc-status sc-substatus sc-win32-status sc-bytes time-taken",
        ]);
        let line = b"2026-11-01 00:15:02 10.0.0.1 GET /en/tokyo q=1 443 - 192.0.2.7 Mozilla/5.0+(Windows+NT+10.0) lang=ja;+jt_uid=u-9 https://www.google.com/ 200 0 0 5120 31";
        let r = parse_w3c_line(line, &s, Some(b"jt_uid")).unwrap();
        assert_eq!(r.time.unwrap().utc_micros, 1_793_492_102_000_000);
        assert_eq!(r.client.unwrap().expose_for_hashing(), b"192.0.2.7");
        assert_eq!(r.url_path, Some(&b"/en/tokyo"[..]));
        assert_eq!(r.method(), Some(&b"GET"[..]));
        assert_eq!(
            (r.status, r.bytes, r.duration_micros),
            (Some(200), Some(5120), Some(31_000))
        );
        assert_eq!(r.visitor_cookie.unwrap().expose_for_hashing(), b"u-9");
        assert_eq!(r.referer, Some(&b"https://www.google.com/"[..]));
    }

    #[test]
    fn fields_change_mid_file_and_counts_must_match() {
        let mut s = state(&["#Fields: date time c-ip cs-method cs-uri-stem sc-status"]);
        assert!(parse_w3c_line(b"2026-11-01 00:00:00 192.0.2.1 GET / 200", &s, None).is_ok());
        assert_eq!(
            parse_w3c_line(b"2026-11-01 00:00:00 192.0.2.1 GET /", &s, None).unwrap_err(),
            RejectReason::Truncated
        );
        assert_eq!(
            parse_w3c_line(b"2026-11-01 00:00:00 192.0.2.1 GET / 200 9", &s, None).unwrap_err(),
            RejectReason::FieldCount
        );
        s.apply_directive(b"#Fields: time c-ip cs-method cs-uri-stem sc-status");
        assert_eq!(
            parse_w3c_line(b"00:00:00 192.0.2.1 GET / 200", &s, None).unwrap_err(),
            RejectReason::BadTime,
            "no date anywhere"
        );
        s.apply_directive(b"#Date: 2026-11-01 00:00:00");
        let r = parse_w3c_line(b"01:00:00 192.0.2.1 GET / 200", &s, None).unwrap();
        assert_eq!(
            r.time.unwrap().utc_micros,
            (20_758 * 86_400 + 3600) * MICROS_PER_SECOND
        );
        assert_eq!(
            parse_w3c_line(b"x", &W3cState::default(), None).unwrap_err(),
            RejectReason::NoFields
        );
    }

    #[test]
    fn quoted_values_gmt_offset_and_oracle_layout() {
        let s = state(&[
            "#GMT-Offset: -0800",
            "#Fields:  c-ip  c-dns  c-auth-id  date  time  cs-method  cs-uri  sc-status  bytes  cs(Cookie)  cs(Referrer)  time-taken  cs(User-Agent)",
        ]);
        let line = br#"192.0.2.2      client_x      DMS.user      2001-10-31     00:00:18      GET      /admin/a.gif    200     350    "jt_uid=abc; other=1"         "http://www.example.com/p.html"   0  "Mozilla ""quoted"" agent""#;
        let r = parse_w3c_line(line, &s, Some(b"jt_uid")).unwrap();
        assert_eq!(r.visitor_cookie.unwrap().expose_for_hashing(), b"abc");
        assert_eq!(r.user_agent, Some(&br#"Mozilla ""quoted"" agent"#[..]));
        assert_eq!(r.time.unwrap().offset_seconds, -8 * 3600);
        let utc = time::parse_date_and_time(b"2001-10-31", b"08:00:18")
            .unwrap()
            .utc_micros;
        assert_eq!(r.time.unwrap().utc_micros, utc);
        assert_eq!(r.remote_user.unwrap().expose_for_hashing(), b"DMS.user");
        assert_eq!(
            parse_w3c_line(
                br#"192.0.2.2 x y 2001-10-31 00:00:18 GET / 200 1 "open"#,
                &s,
                None
            )
            .unwrap_err(),
            RejectReason::UnterminatedQuote
        );
    }
}
