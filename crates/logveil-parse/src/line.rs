//! The line parser: walks a compiled [`LogFormat`] over one line's bytes.

use memchr::memmem;

use crate::cookie::find_cookie;
use crate::error::RejectReason;
use crate::format::{Field, LogFormat, Token};
use crate::record::{LogRecord, RawIdentifier, Request};
use crate::time::{self, parse_clf_time};

/// Default limit on one line: longer lines are rejected as `too_long` and reading goes on.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// How many closing-quote candidates a quoted field may try before the line is rejected.
/// Real logs need 2 (NASA's `"GET /a" b" 404`); the bound keeps hostile lines linear.
const MAX_QUOTE_CANDIDATES: u32 = 8;

/// Parses lines of one format.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: LogFormat,
    visitor_cookie: Option<Vec<u8>>,
    max_line_bytes: usize,
}

impl LineParser {
    /// `visitor_cookie` names the cookie whose value identifies a visitor; the parser pulls
    /// just that value out of the `Cookie` header (or a `%{NAME}C` field) and nothing else.
    pub fn new(format: LogFormat, visitor_cookie: Option<&str>) -> Self {
        Self {
            format,
            visitor_cookie: visitor_cookie.map(|c| c.as_bytes().to_vec()),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    #[must_use]
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// Parses one line (with or without its `\n` / `\r\n`).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<LogRecord<'a>, RejectReason> {
        let line = crate::parser::precheck(line, self.max_line_bytes)?;
        let mut record = LogRecord::default();
        let mut budget = MAX_QUOTE_CANDIDATES;
        self.parse_from(0, line, 0, &mut record, &mut budget)?;
        if record.time.is_none() {
            return Err(RejectReason::BadTime);
        }
        Ok(record)
    }

    /// Walks the tokens from `index` at byte `pos`. Iterative, except at a quoted request:
    /// there each plausible closing quote is tried in turn (recursing once), restoring the
    /// record between attempts so no value from a failed attempt survives.
    fn parse_from<'a>(
        &self,
        mut index: usize,
        line: &'a [u8],
        mut pos: usize,
        record: &mut LogRecord<'a>,
        budget: &mut u32,
    ) -> Result<(), RejectReason> {
        let tokens = &self.format.tokens;
        loop {
            let Some(token) = tokens.get(index) else {
                // Servers and editors leave trailing blanks; anything else is an extra field.
                return if line[pos..].iter().all(|b| matches!(b, b' ' | b'\t')) {
                    Ok(())
                } else {
                    Err(RejectReason::FieldCount)
                };
            };
            let field = match token {
                Token::Literal(lit) => {
                    if line[pos..].starts_with(lit) {
                        pos += lit.len();
                        index += 1;
                        continue;
                    }
                    return Err(if line.len() <= pos {
                        RejectReason::Truncated
                    } else {
                        RejectReason::UnexpectedText
                    });
                }
                Token::Field(field) => field,
            };
            let next_literal = match tokens.get(index + 1) {
                Some(Token::Literal(lit)) => Some(lit.as_slice()),
                _ => None,
            };
            let quoted = index > 0
                && matches!(&tokens[index - 1], Token::Literal(l) if l.ends_with(b"\""))
                && next_literal.is_some_and(|l| l.starts_with(b"\""));

            if quoted {
                let next_literal = next_literal.unwrap_or_default();
                let fits = |close: usize| {
                    line[close..].starts_with(next_literal) || close + 1 == line.len()
                };
                if *field != Field::Request {
                    // Apache and nginx escape quotes inside headers: the first fitting quote ends the field.
                    let mut from = pos;
                    let close = loop {
                        match find_closing_quote(line, from) {
                            Some(close) if fits(close) => break close,
                            Some(close) => from = close + 1,
                            None => return Err(RejectReason::UnterminatedQuote),
                        }
                    };
                    apply_field(self, field, &line[pos..close], record)?;
                    pos = close;
                    index += 1;
                    continue;
                }
                // Only the request may hold an unescaped quote (old servers such as NASA's wrote them).
                let mut first_error = None;
                let mut from = pos;
                let saved = record.clone();
                while let Some(close) = find_closing_quote(line, from) {
                    from = close + 1;
                    if !fits(close) {
                        continue;
                    }
                    let attempt = apply_field(self, field, &line[pos..close], record)
                        .and_then(|()| self.parse_from(index + 1, line, close, record, budget));
                    match attempt {
                        Ok(()) => return Ok(()),
                        Err(e) => {
                            *record = saved.clone();
                            first_error.get_or_insert(e);
                            *budget = budget.saturating_sub(1);
                            if *budget == 0 {
                                break;
                            }
                        }
                    }
                }
                return Err(first_error.unwrap_or(RejectReason::BadRequest));
            }

            if *field == Field::Time {
                match line.get(pos) {
                    None => return Err(RejectReason::Truncated),
                    Some(b'[') => {
                        let close =
                            memchr::memchr(b']', &line[pos..]).ok_or(RejectReason::BadTime)? + pos;
                        record.time = Some(
                            parse_clf_time(&line[pos + 1..close]).ok_or(RejectReason::BadTime)?,
                        );
                        pos = close + 1;
                        index += 1;
                        continue;
                    }
                    Some(_) => return Err(RejectReason::BadTime),
                }
            }

            let end = if *field == Field::UrlPath
                && matches!(tokens.get(index + 1), Some(Token::Field(Field::Query)))
            {
                // `%U%q`: the path ends where the query's `?` starts, or where the query's own terminator is.
                let stop = match tokens.get(index + 2) {
                    Some(Token::Literal(lit)) => {
                        memmem::find(&line[pos..], lit).map_or(line.len(), |i| pos + i)
                    }
                    _ => line.len(),
                };
                memchr::memchr(b'?', &line[pos..stop]).map_or(stop, |i| pos + i)
            } else {
                match next_literal {
                    Some(lit) => match memmem::find(&line[pos..], lit) {
                        Some(i) => pos + i,
                        None if *field == Field::Query => line.len(),
                        None => return Err(RejectReason::Truncated),
                    },
                    None => line.len(),
                }
            };
            apply_field(self, field, &line[pos..end], record)?;
            pos = end;
            index += 1;
        }
    }
}

/// The next `"` at or after `from` that is not escaped by a backslash (Apache writes `\"` and `\\`).
fn find_closing_quote(line: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = memchr::memchr2(b'"', b'\\', line.get(from..)?)? + from;
        if line[i] == b'"' {
            return Some(i);
        }
        from = i + 2;
    }
}

fn is_dash(value: &[u8]) -> bool {
    value == b"-"
}

fn parse_u64(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn dash_to_none(value: &[u8]) -> Option<&[u8]> {
    (!is_dash(value)).then_some(value)
}

/// `12`, `0.123` (nginx `$request_time`) → microseconds.
fn parse_seconds_micros(value: &[u8]) -> Option<u64> {
    let dot = memchr::memchr(b'.', value).unwrap_or(value.len());
    let whole = parse_u64(&value[..dot])?;
    let mut micros = whole.checked_mul(1_000_000)?;
    if dot < value.len() {
        let frac = &value[dot + 1..];
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for (i, d) in frac.iter().take(6).enumerate() {
            micros += u64::from(d - b'0') * 10u64.pow(5 - i as u32);
        }
    }
    Some(micros)
}

/// Stores one field's value. Every arm writes its field (`None` for `-`), so no value
/// can survive from an abandoned parse attempt.
fn apply_field<'a>(
    parser: &LineParser,
    field: &Field,
    value: &'a [u8],
    record: &mut LogRecord<'a>,
) -> Result<(), RejectReason> {
    let number = |reason| -> Result<Option<u64>, RejectReason> {
        dash_to_none(value)
            .map(|v| parse_u64(v).ok_or(reason))
            .transpose()
    };
    let time = |parsed: Option<crate::Timestamp>| parsed.map(Some).ok_or(RejectReason::BadTime);
    match field {
        Field::Client => {
            if value.is_empty() {
                return Err(RejectReason::BadClient);
            }
            record.client = dash_to_none(value).map(RawIdentifier::new);
        }
        Field::Ident | Field::Skip | Field::Protocol => {}
        Field::Time => {
            // Reached only when `%t` sits inside quotes; the usual bracketed form is handled by the caller.
            let inner = value
                .strip_prefix(b"[")
                .and_then(|v| v.strip_suffix(b"]"))
                .unwrap_or(value);
            record.time = time(parse_clf_time(inner))?;
        }
        Field::TimeClf => record.time = time(parse_clf_time(value))?,
        Field::TimeIso8601 => record.time = time(time::parse_iso8601(value))?,
        Field::TimeEpochSeconds => record.time = time(time::parse_epoch_seconds(value))?,
        Field::TimeEpochUnits(unit) => record.time = time(time::parse_epoch_units(value, *unit))?,
        Field::TimePattern(pattern) => record.time = time(pattern.parse(value))?,
        Field::RemoteUser => record.remote_user = dash_to_none(value).map(RawIdentifier::new),
        Field::Request => record.request = dash_to_none(value).map(split_request),
        Field::Method => record.method = dash_to_none(value),
        Field::UrlPath => record.url_path = dash_to_none(value),
        Field::Target => {
            // `$request_uri` holds path and query: keep them as the request target.
            record.url_path = dash_to_none(value);
            record.query = None;
        }
        Field::Query => record.query = (!value.is_empty()).then_some(value),
        Field::Status => {
            record.status = number(RejectReason::BadStatus)?
                .map(|s| {
                    u16::try_from(s)
                        .ok()
                        .filter(|s| (100..=999).contains(s))
                        .ok_or(RejectReason::BadStatus)
                })
                .transpose()?;
        }
        Field::Bytes => record.bytes = number(RejectReason::BadBytes)?,
        Field::DurationMicros => record.duration_micros = number(RejectReason::BadNumber)?,
        Field::DurationSeconds => {
            record.duration_micros = dash_to_none(value)
                .map(|v| parse_seconds_micros(v).ok_or(RejectReason::BadNumber))
                .transpose()?;
        }
        Field::ForwardedFor => record.forwarded_for = dash_to_none(value).map(RawIdentifier::new),
        Field::Header(name) => {
            let value = dash_to_none(value);
            match name.as_str() {
                "referer" => record.referer = value,
                "user-agent" => record.user_agent = value,
                "cookie" => {
                    record.visitor_cookie = parser
                        .visitor_cookie
                        .as_deref()
                        .and_then(|wanted| find_cookie(value?, wanted))
                        .map(RawIdentifier::new);
                }
                _ => {}
            }
        }
        Field::Cookie(name) => {
            if parser.visitor_cookie.as_deref() == Some(name.as_bytes()) {
                record.visitor_cookie = dash_to_none(value)
                    .filter(|v| !v.is_empty())
                    .map(RawIdentifier::new);
            }
        }
        Field::VirtualHost => record.vhost = dash_to_none(value),
    }
    Ok(())
}

/// Splits `METHOD TARGET PROTOCOL`. Tolerates spaces inside the target (NASA logs them
/// unescaped) and HTTP/0.9 lines without a protocol. A request with no space at all
/// (junk such as TLS bytes sent to a plain-HTTP port) keeps its bytes as the method and
/// an empty target: the line is well formed, the request is not, so it is never a view.
pub(crate) fn split_request(value: &[u8]) -> Request<'_> {
    let Some(first) = memchr::memchr(b' ', value) else {
        return Request {
            method: value,
            target: b"",
            protocol: None,
        };
    };
    let method = &value[..first];
    let rest = &value[first + 1..];
    if let Some(last) = memchr::memrchr(b' ', rest) {
        let candidate = &rest[last + 1..];
        if candidate.starts_with(b"HTTP/") {
            return Request {
                method,
                target: &rest[..last],
                protocol: Some(candidate),
            };
        }
    }
    Request {
        method,
        target: rest,
        protocol: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(fmt: &str) -> LineParser {
        LineParser::new(LogFormat::from_name_or_format(fmt).unwrap(), Some("jt_uid"))
    }

    const COMBINED_COOKIE: &[u8] = br#"203.0.113.7 - - [01/Nov/2026:09:15:02 +0900] "GET /en/tokyo?email=a%40example.com HTTP/1.1" 200 5123 "https://www.google.com/search?q=x" "Mozilla/5.0 (X11)" "lang=ja; jt_uid=u-1234""#;

    #[test]
    fn parses_combined_cookie_line() {
        let r = parser("combined_cookie").parse(COMBINED_COOKIE).unwrap();
        assert_eq!(r.client.unwrap().expose_for_hashing(), b"203.0.113.7");
        let req = r.request.unwrap();
        assert_eq!(req.method, b"GET");
        assert_eq!(req.target, b"/en/tokyo?email=a%40example.com");
        assert_eq!(req.protocol, Some(&b"HTTP/1.1"[..]));
        assert_eq!(r.status, Some(200));
        assert_eq!(r.bytes, Some(5123));
        assert_eq!(r.referer, Some(&b"https://www.google.com/search?q=x"[..]));
        assert_eq!(r.user_agent, Some(&b"Mozilla/5.0 (X11)"[..]));
        assert_eq!(r.visitor_cookie.unwrap().expose_for_hashing(), b"u-1234");
    }

    #[test]
    fn combined_cookie_with_dash_cookie_and_crlf() {
        let line =
            br#"2001:db8::1 - - [01/Nov/2026:09:15:02 +0900] "HEAD / HTTP/1.0" 304 - "-" "-" "-""#;
        let mut with_crlf = line.to_vec();
        with_crlf.extend_from_slice(b"\r\n");
        let r = parser("combined_cookie").parse(&with_crlf).unwrap();
        assert!(r.visitor_cookie.is_none());
        assert!(r.referer.is_none() && r.user_agent.is_none() && r.bytes.is_none());
        assert_eq!(r.status, Some(304));
    }

    #[test]
    fn escaped_quotes_stay_inside_fields() {
        let line = br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET /a HTTP/1.1" 200 1 "-" "agent \"quoted\" \\ end""#;
        let r = parser("combined").parse(line).unwrap();
        assert_eq!(r.user_agent, Some(&br#"agent \"quoted\" \\ end"#[..]));
    }

    #[test]
    fn nasa_unescaped_quote_and_http09() {
        let p = parser("common");
        let r = p.parse(br#"frank.mtsu.edu - - [03/Jul/1995:02:41:15 -0400] "GET /images/" HTTP/1.0" 404 -"#).unwrap();
        assert_eq!(r.request.unwrap().target, br#"/images/""#);
        assert_eq!(r.status, Some(404));
        let r = p.parse(br#"columbia.acc.brad.ac.uk - - [01/Jul/1995:00:51:31 -0400] "GET /ksc.html" 200 7074"#).unwrap();
        assert_eq!(r.request.unwrap().protocol, None);
        assert_eq!(r.request.unwrap().target, b"/ksc.html");
    }

    #[test]
    fn rejections_carry_reasons() {
        let p = parser("combined_cookie");
        let cases: &[(&[u8], RejectReason)] = &[
            (b"", RejectReason::BlankLine),
            (b"   \r\n", RejectReason::BlankLine),
            (b"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900]", RejectReason::Truncated),
            (br#"192.0.2.1 - - [32/Nov/2026:25:61:00 +0900] "GET / HTTP/1.1" 200 1 "-" "-" "-""#, RejectReason::BadTime),
            (br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" abc 1 "-" "-" "-""#, RejectReason::BadStatus),
            (br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1"#, RejectReason::BadRequest),
            (br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 x1 "-" "-" "-""#, RejectReason::BadBytes),
            (br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 1 "-" "Mozilla"#, RejectReason::UnterminatedQuote),
            (br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 1 "-" "-" "-" extra"#, RejectReason::FieldCount),
            (b"hello world", RejectReason::Truncated),
            (b"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] GET / 200 1", RejectReason::UnexpectedText),
        ];
        for (line, reason) in cases {
            assert_eq!(
                p.parse(line).unwrap_err(),
                *reason,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let long = vec![b'a'; DEFAULT_MAX_LINE_BYTES + 1];
        assert_eq!(p.parse(&long).unwrap_err(), RejectReason::TooLong);
    }

    #[test]
    fn last_quoted_header_does_not_swallow_an_extra_field() {
        let line = br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 1 "-" "Mozilla" "jt_uid=u-1""#;
        assert_eq!(
            parser("combined").parse(line).unwrap_err(),
            RejectReason::FieldCount
        );
    }

    #[test]
    fn nginx_lines_with_hex_escapes_iso_time_and_forwarded_for() {
        let p = LineParser::new(
            LogFormat::nginx(r#"$remote_addr - $remote_user [$time_iso8601] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_time $cookie_jt_uid"#).unwrap(),
            Some("jt_uid"),
        );
        let line = br#"198.51.100.9 - - [2026-11-01T09:15:02+09:00] "GET /a?q=\x22x\x22 HTTP/2.0" 200 12 "-" "UA \x22quoted\x22" "203.0.113.5, 198.51.100.9" 0.125 u-77"#;
        let r = p.parse(line).unwrap();
        assert_eq!(r.time.unwrap().utc_micros, 1_793_492_102_000_000);
        assert_eq!(r.request.unwrap().target, br"/a?q=\x22x\x22");
        assert_eq!(r.user_agent, Some(&br"UA \x22quoted\x22"[..]));
        assert_eq!(
            r.forwarded_for.unwrap().expose_for_hashing(),
            b"203.0.113.5, 198.51.100.9"
        );
        assert_eq!(r.duration_micros, Some(125_000));
        assert_eq!(r.visitor_cookie.unwrap().expose_for_hashing(), b"u-77");
        let preset = parser("nginx_combined");
        let r = preset
            .parse(br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "GET / HTTP/1.1" 200 1 "-" "M""#)
            .unwrap();
        assert_eq!(r.status, Some(200));
    }

    #[test]
    fn epoch_and_strftime_times_in_apache_formats() {
        let p = LineParser::new(LogFormat::apache(r#"%h %{msec}t "%r" %>s"#).unwrap(), None);
        let r = p
            .parse(br#"192.0.2.1 1793492102250 "GET / HTTP/1.1" 200"#)
            .unwrap();
        assert_eq!(r.time.unwrap().utc_micros, 1_793_492_102_250_000);
        let p = LineParser::new(
            LogFormat::apache(r#"%h [%{%Y-%m-%d %H:%M:%S %z}t] "%r" %>s"#).unwrap(),
            None,
        );
        let r = p
            .parse(br#"192.0.2.1 [2026-11-01 09:15:02 +0900] "GET / HTTP/1.1" 200"#)
            .unwrap();
        assert_eq!(r.time.unwrap().utc_micros, 1_793_492_102_000_000);
        assert_eq!(
            p.parse(br#"192.0.2.1 [2026-11-01 09:15:02] "GET / HTTP/1.1" 200"#)
                .unwrap_err(),
            RejectReason::BadTime
        );
    }

    #[test]
    fn junk_request_is_parsed_but_has_no_target() {
        let line =
            br#"192.0.2.1 - - [01/Nov/2026:09:15:02 +0900] "\x16\x03\x01" 400 0 "-" "-" "-""#;
        let r = parser("combined_cookie").parse(line).unwrap();
        assert_eq!(r.request.unwrap().target, b"");
    }

    #[test]
    fn named_cookie_field_and_path_query_fields() {
        let p = LineParser::new(
            LogFormat::apache(r#"%h %t "%m %U%q %H" %>s %{jt_uid}C"#).unwrap(),
            Some("jt_uid"),
        );
        let r = p
            .parse(br#"192.0.2.1 [01/Nov/2026:09:15:02 +0900] "GET /a/b?x=1 HTTP/1.1" 200 u-9"#)
            .unwrap();
        assert_eq!(r.method(), Some(&b"GET"[..]));
        assert_eq!(r.url_path, Some(&b"/a/b"[..]));
        assert_eq!(r.query, Some(&b"?x=1"[..]));
        assert_eq!(r.visitor_cookie.unwrap().expose_for_hashing(), b"u-9");
    }
}
