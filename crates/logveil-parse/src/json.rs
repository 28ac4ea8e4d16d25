//! JSON access logs: one object per line, field names configurable (Caddy, nginx `escape=json`).
//!
//! [`JsonParser`] walks each line once with a small hand-written scanner: no allocation, no
//! copy. Members whose key starts a configured path are descended into; every other value is
//! skipped (strings with `memchr`, nested containers with a depth counter). The whole line is
//! still checked as JSON, so a cut-off line is `truncated` and text around the object is
//! `unexpected_text`.
//!
//! # Values are kept as logged
//!
//! A string value is the raw bytes between its quotes, **escapes left as written**:
//! `"Mozilla/5.0 \"q\""` yields `Mozilla/5.0 \"q\"` and `"\u00e9"` yields `\u00e9`. This keeps
//! parsing zero-copy, and it is the same convention as the Apache parser (which also keeps
//! `\"` escapes). Identifiers (client address, visitor cookie) are therefore hashed in their
//! logged form: a server that logs the same value escaped in one line and unescaped in another
//! would yield two pseudonyms. Servers escape deterministically, so in practice this does not
//! happen. Keys are compared in their raw form as well (a key written `"\u0075ri"` is not `uri`).
//!
//! `null`, `""` and `"-"` mean "not logged" (`None`). Numbers may be written as JSON numbers
//! or as strings (nginx writes `"status":"200"`). When a key repeats in one object, the
//! **first** occurrence wins. Nesting deeper than 32 levels is rejected.
//!
//! ```
//! use logveil_parse::json::{JsonFields, JsonParser};
//! let parser = JsonParser::new(JsonFields::nginx(), Some("jt_uid"));
//! let line = br#"{"time_iso8601":"2026-11-01T09:15:02+09:00","remote_addr":"192.0.2.1","request":"GET /a HTTP/1.1","status":"200","body_bytes_sent":"12","http_cookie":"jt_uid=u-1"}"#;
//! let record = parser.parse(line).expect("valid line");
//! assert_eq!(record.status, Some(200));
//! assert_eq!(record.time.unwrap().utc_micros, 1_793_492_102_000_000);
//! assert_eq!(record.visitor_cookie.unwrap().expose_for_hashing(), b"u-1");
//! ```

use crate::cookie::find_cookie;
use crate::error::RejectReason;
use crate::record::{LogRecord, RawIdentifier};
use crate::time::{parse_clf_time, parse_epoch_seconds, parse_iso8601};

/// Deepest nesting accepted (the line's own object is level 1).
pub const MAX_DEPTH: u32 = 32;

/// At most this many paths (counting `|` alternatives) are looked up; further ones are ignored.
pub const MAX_PATHS: usize = 32;

/// Where each field lives in the JSON object.
///
/// A path is a key, or dotted keys into nested objects: `request.headers.User-Agent`. When a
/// value on the way (or at the end) is an array, its first element is used: Caddy logs headers
/// as arrays (`"User-Agent":["curl/8"]`). Alternatives are separated by `|` and tried in order,
/// the first one present with a value other than `null`, `""` or `-` wins:
/// `time_iso8601|time_local`. Keys containing `.` or `|` cannot be addressed. An empty path
/// never matches.
///
/// `client` and `time` are required: a line without them is rejected (`bad_client`,
/// `bad_time`). The others are optional; `None` means the log does not have the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFields {
    /// Client address (IP, `IP:port` or host name).
    pub client: String,
    /// A JSON number is seconds since the epoch (with fraction); a string is ISO 8601 /
    /// RFC 3339, the Apache/nginx `dd/Mon/yyyy:HH:MM:SS +zzzz` layout, or epoch seconds.
    pub time: String,
    pub method: Option<String>,
    /// Request target (path and query); goes to [`LogRecord::url_path`].
    pub uri: Option<String>,
    /// A whole request line `GET / HTTP/1.1`, as nginx `$request`.
    pub request: Option<String>,
    pub status: Option<String>,
    /// Response size in bytes.
    pub bytes: Option<String>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// A `Cookie` request header; only the visitor cookie's value is kept.
    pub cookie: Option<String>,
    /// `X-Forwarded-For` as logged (for an array, the first header only).
    pub forwarded_for: Option<String>,
    /// Virtual host; goes to [`LogRecord::vhost`].
    pub host: Option<String>,
    /// Request duration in seconds (fraction allowed); stored as microseconds.
    pub duration_seconds: Option<String>,
}

impl JsonFields {
    /// Caddy v2's access log (`http.log.access`, JSON encoder, default settings).
    ///
    /// The client is `request.client_ip` (Caddy ≥ 2.7, honours `trusted_proxies`), falling
    /// back to `request.remote_ip` (2.5, 2.6) and `request.remote_addr` (older, `IP:port`).
    /// Caddy redacts the `Cookie` header unless `log_credentials` is enabled; redacted lines
    /// simply have no visitor cookie.
    pub fn caddy() -> Self {
        let s = |v: &str| Some(v.to_owned());
        Self {
            client: "request.client_ip|request.remote_ip|request.remote_addr".to_owned(),
            time: "ts".to_owned(),
            method: s("request.method"),
            uri: s("request.uri"),
            request: None,
            status: s("status"),
            bytes: s("size"),
            referer: s("request.headers.Referer"),
            user_agent: s("request.headers.User-Agent"),
            cookie: s("request.headers.Cookie"),
            forwarded_for: s("request.headers.X-Forwarded-For"),
            host: s("request.host"),
            duration_seconds: s("duration"),
        }
    }

    /// The common nginx `log_format … escape=json` layout: keys named after the variables
    /// (`remote_addr`, `time_iso8601` or `time_local`, `request`, `status`, `body_bytes_sent`,
    /// `http_referer`, `http_user_agent`, `http_cookie`, `http_x_forwarded_for`,
    /// `request_time`, `host`), plus a few spellings seen in widely copied configurations
    /// (`time`, `msec`, `http_referrer`, `http_host`).
    pub fn nginx() -> Self {
        let s = |v: &str| Some(v.to_owned());
        Self {
            client: "remote_addr".to_owned(),
            time: "time_iso8601|time_local|time|msec".to_owned(),
            method: None,
            uri: None,
            request: s("request"),
            status: s("status"),
            bytes: s("body_bytes_sent"),
            referer: s("http_referer|http_referrer"),
            user_agent: s("http_user_agent"),
            cookie: s("http_cookie"),
            forwarded_for: s("http_x_forwarded_for"),
            host: s("host|http_host"),
            duration_seconds: s("request_time"),
        }
    }
}

/// The fields a parser resolves, in [`JsonParser::alternatives`] order.
mod field {
    pub const CLIENT: usize = 0;
    pub const TIME: usize = 1;
    pub const METHOD: usize = 2;
    pub const URI: usize = 3;
    pub const REQUEST: usize = 4;
    pub const STATUS: usize = 5;
    pub const BYTES: usize = 6;
    pub const REFERER: usize = 7;
    pub const USER_AGENT: usize = 8;
    pub const COOKIE: usize = 9;
    pub const HOST: usize = 10;
    pub const DURATION: usize = 11;
    pub const FORWARDED_FOR: usize = 12;
    pub const COUNT: usize = 13;
}

/// One key level of the wanted paths.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Next key segment → node index.
    children: Vec<(Box<[u8]>, usize)>,
    /// Bit `i`: a path ends here and its value goes to capture slot `i`.
    slots: u32,
}

/// Parses JSON access-log lines; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct JsonParser {
    /// Trie of wanted paths; index 0 is the line's top-level object.
    nodes: Vec<Node>,
    /// For each field, the capture slots of its alternatives, in preference order.
    alternatives: [Vec<u8>; field::COUNT],
    visitor_cookie: Option<Vec<u8>>,
}

/// A captured value: strings and numbers as their raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val<'a> {
    Str(&'a [u8]),
    Num(&'a [u8]),
    Null,
    /// `true`, `false`, an object or an array with nothing usable in it.
    Other,
}

impl Val<'_> {
    /// Whether the value counts as logged (`null`, `""`, `"-"` do not).
    fn is_present(self) -> bool {
        !matches!(self, Val::Null | Val::Str(b"" | b"-"))
    }
}

type Captures<'a> = [Option<Val<'a>>; MAX_PATHS];

impl JsonParser {
    /// `visitor_cookie` names the cookie whose value identifies a visitor; only that value is
    /// taken from the `cookie` field. Paths are compiled here, once.
    pub fn new(fields: JsonFields, visitor_cookie: Option<&str>) -> Self {
        let mut parser = Self {
            nodes: vec![Node::default()],
            alternatives: Default::default(),
            visitor_cookie: visitor_cookie.map(|c| c.as_bytes().to_vec()),
        };
        let JsonFields {
            client,
            time,
            method,
            uri,
            request,
            status,
            bytes,
            referer,
            user_agent,
            cookie,
            forwarded_for,
            host,
            duration_seconds,
        } = fields;
        let wanted: [(usize, Option<String>); field::COUNT] = [
            (field::CLIENT, Some(client)),
            (field::TIME, Some(time)),
            (field::METHOD, method),
            (field::URI, uri),
            (field::REQUEST, request),
            (field::STATUS, status),
            (field::BYTES, bytes),
            (field::REFERER, referer),
            (field::USER_AGENT, user_agent),
            // Without a visitor cookie name there is nothing to take from the header.
            (field::COOKIE, cookie.filter(|_| visitor_cookie.is_some())),
            (field::HOST, host),
            (field::DURATION, duration_seconds),
            (field::FORWARDED_FOR, forwarded_for),
        ];
        let mut next_slot = 0usize;
        for (index, spec) in wanted {
            let Some(spec) = spec else { continue };
            for path in spec.split('|') {
                if path.is_empty() || path.split('.').any(str::is_empty) || next_slot >= MAX_PATHS {
                    continue;
                }
                let node = parser.insert(path);
                parser.nodes[node].slots |= 1 << next_slot;
                parser.alternatives[index].push(next_slot as u8);
                next_slot += 1;
            }
        }
        parser
    }

    fn insert(&mut self, path: &str) -> usize {
        let mut node = 0;
        for segment in path.split('.') {
            let segment = segment.as_bytes();
            node = if let Some(&(_, child)) = self.nodes[node]
                .children
                .iter()
                .find(|(key, _)| **key == *segment)
            {
                child
            } else {
                let child = self.nodes.len();
                self.nodes.push(Node::default());
                self.nodes[node].children.push((segment.into(), child));
                child
            };
        }
        node
    }

    /// Parses one line (a trailing `\n` / `\r\n` is ignored, as is a UTF-8 byte-order mark).
    /// Line length limits are the caller's job.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<LogRecord<'a>, RejectReason> {
        let line = strip_eol(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        if line.iter().all(|b| matches!(b, b' ' | b'\t')) {
            return Err(RejectReason::BlankLine);
        }
        // JSON escapes control characters; raw ones mean a corrupt or binary file.
        if has_control(line) {
            return Err(RejectReason::Binary);
        }
        let mut scan = Scanner { b: line, pos: 0 };
        scan.skip_ws();
        if scan.peek()? != b'{' {
            return Err(RejectReason::UnexpectedText);
        }
        let mut captures: Captures<'a> = [None; MAX_PATHS];
        self.object(&mut scan, 0, 1, &mut captures)?;
        scan.skip_ws();
        if scan.pos != line.len() {
            return Err(RejectReason::UnexpectedText);
        }
        self.build(&captures)
    }

    /// Walks the object at `scan.pos` (a `{`), the value of trie node `node`, at nesting `depth`.
    fn object<'a>(
        &self,
        scan: &mut Scanner<'a>,
        node: usize,
        depth: u32,
        captures: &mut Captures<'a>,
    ) -> Result<(), RejectReason> {
        if depth > MAX_DEPTH {
            return Err(RejectReason::UnexpectedText);
        }
        scan.pos += 1;
        scan.skip_ws();
        if scan.peek()? == b'}' {
            scan.pos += 1;
            return Ok(());
        }
        let children = &self.nodes[node].children;
        loop {
            if scan.peek()? != b'"' {
                return Err(RejectReason::UnexpectedText);
            }
            let key = scan.string()?;
            scan.skip_ws();
            scan.expect(b':')?;
            scan.skip_ws();
            match children.iter().find(|(k, _)| **k == *key) {
                Some(&(_, child)) => self.value(scan, child, depth, captures)?,
                None => scan.skip_value(depth)?,
            }
            scan.skip_ws();
            match scan.peek()? {
                b',' => {
                    scan.pos += 1;
                    scan.skip_ws();
                }
                b'}' => {
                    scan.pos += 1;
                    return Ok(());
                }
                _ => return Err(RejectReason::UnexpectedText),
            }
        }
    }

    /// A value the configuration wants (trie node `node`) inside a container at `depth`.
    fn value<'a>(
        &self,
        scan: &mut Scanner<'a>,
        node: usize,
        depth: u32,
        captures: &mut Captures<'a>,
    ) -> Result<(), RejectReason> {
        let slots = self.nodes[node].slots;
        let value = match scan.peek()? {
            b'{' if !self.nodes[node].children.is_empty() => {
                self.object(scan, node, depth + 1, captures)?;
                Val::Other
            }
            b'{' => {
                scan.skip_value(depth)?;
                Val::Other
            }
            b'[' => {
                // The first element stands for the array; the rest are skipped.
                if depth + 1 > MAX_DEPTH {
                    return Err(RejectReason::UnexpectedText);
                }
                scan.pos += 1;
                scan.skip_ws();
                if scan.peek()? == b']' {
                    scan.pos += 1;
                    Val::Other
                } else {
                    self.value(scan, node, depth + 1, captures)?;
                    loop {
                        scan.skip_ws();
                        match scan.peek()? {
                            b',' => {
                                scan.pos += 1;
                                scan.skip_ws();
                                scan.skip_value(depth + 1)?;
                            }
                            b']' => {
                                scan.pos += 1;
                                break;
                            }
                            _ => return Err(RejectReason::UnexpectedText),
                        }
                    }
                    // The element already filled the slots (or had nothing).
                    return Ok(());
                }
            }
            _ => scan.scalar()?,
        };
        let mut bits = slots;
        while bits != 0 {
            let slot = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // Duplicate keys: the first occurrence wins.
            captures[slot].get_or_insert(value);
        }
        Ok(())
    }

    /// The value of a field: its first alternative that is present, else the first found.
    fn get<'a>(&self, captures: &Captures<'a>, field: usize) -> Option<Val<'a>> {
        let slots = &self.alternatives[field];
        slots
            .iter()
            .filter_map(|&s| captures[usize::from(s)])
            .find(|v| v.is_present())
            .or_else(|| slots.iter().find_map(|&s| captures[usize::from(s)]))
    }

    fn build<'a>(&self, captures: &Captures<'a>) -> Result<LogRecord<'a>, RejectReason> {
        let get = |field| self.get(captures, field);
        let client = match get(field::CLIENT) {
            Some(Val::Null | Val::Str(b"-")) => None,
            Some(Val::Str(s) | Val::Num(s)) if !s.is_empty() => Some(RawIdentifier::new(s)),
            _ => return Err(RejectReason::BadClient),
        };
        let time = match get(field::TIME) {
            Some(Val::Num(n)) => parse_epoch_seconds(n),
            Some(Val::Str(s)) => parse_iso8601(s)
                .or_else(|| parse_clf_time(s))
                .or_else(|| parse_epoch_seconds(s)),
            _ => None,
        }
        .ok_or(RejectReason::BadTime)?;
        let mut record = LogRecord {
            client,
            time: Some(time),
            method: text(get(field::METHOD)),
            url_path: text(get(field::URI)),
            request: text(get(field::REQUEST)).map(crate::line::split_request),
            referer: text(get(field::REFERER)),
            user_agent: text(get(field::USER_AGENT)),
            vhost: text(get(field::HOST)),
            forwarded_for: text(get(field::FORWARDED_FOR)).map(RawIdentifier::new),
            ..LogRecord::default()
        };
        if let Some(v) = number(get(field::STATUS), RejectReason::BadStatus)? {
            let status = parse_u64(v)
                .filter(|s| (100..=999).contains(s))
                .ok_or(RejectReason::BadStatus)?;
            record.status = Some(status as u16);
        }
        if let Some(v) = number(get(field::BYTES), RejectReason::BadBytes)? {
            record.bytes = Some(parse_u64(v).ok_or(RejectReason::BadBytes)?);
        }
        if let Some(v) = number(get(field::DURATION), RejectReason::BadNumber)? {
            record.duration_micros = Some(seconds_to_micros(v).ok_or(RejectReason::BadNumber)?);
        }
        if let (Some(wanted), Some(header)) = (&self.visitor_cookie, text(get(field::COOKIE))) {
            record.visitor_cookie = find_cookie(header, wanted).map(RawIdentifier::new);
        }
        Ok(record)
    }
}

/// A text field: strings and numbers as their raw bytes; `null`, `""`, `"-"`, objects → `None`.
fn text(value: Option<Val<'_>>) -> Option<&[u8]> {
    match value? {
        v @ (Val::Str(s) | Val::Num(s)) if v.is_present() => Some(s),
        _ => None,
    }
}

/// A numeric field written as a number or a string; `Err(bad)` for `true`, objects, arrays.
fn number(value: Option<Val<'_>>, bad: RejectReason) -> Result<Option<&[u8]>, RejectReason> {
    match value {
        None | Some(Val::Null | Val::Str(b"" | b"-")) => Ok(None),
        Some(Val::Str(s) | Val::Num(s)) => Ok(Some(s)),
        Some(Val::Other) => Err(bad),
    }
}

fn strip_eol(mut line: &[u8]) -> &[u8] {
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

/// Any raw control byte other than tab. No early exit, so the loop vectorises.
fn has_control(line: &[u8]) -> bool {
    line.iter()
        .fold(0u8, |acc, &b| acc | u8::from(b < 0x20 && b != b'\t'))
        != 0
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

/// Non-negative seconds (`0.000929675`, `12`, `1.5e-3`) → microseconds, rounded.
fn seconds_to_micros(value: &[u8]) -> Option<u64> {
    // Only JSON number syntax: `str::parse` alone would also take `inf`, `NaN` or `+1`.
    if !value.first().is_some_and(u8::is_ascii_digit)
        || !value
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let seconds: f64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    let micros = (seconds * 1e6).round();
    // 2^64 is exactly representable; anything at or above it does not fit.
    (micros < 18_446_744_073_709_551_616.0).then_some(micros as u64)
}

/// Strings up to this long are scanned byte by byte, longer ones with `memchr2`.
const SHORT_STRING: usize = 16;

/// A cursor over one line. Reading past the end is `Truncated`; anything that is not JSON is
/// `UnexpectedText`.
#[derive(Debug)]
struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Result<u8, RejectReason> {
        self.b.get(self.pos).copied().ok_or(RejectReason::Truncated)
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), RejectReason> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(RejectReason::UnexpectedText)
        }
    }

    /// The string at `pos` (a `"`): its raw content, escapes checked but left as written.
    fn string(&mut self) -> Result<&'a [u8], RejectReason> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            let rest = self.b.get(i..).ok_or(RejectReason::Truncated)?;
            // Most strings in access logs (keys, methods, numbers-as-strings) are short: a
            // plain loop finds their end before `memchr2` would have set up.
            let short = rest.len().min(SHORT_STRING);
            i += match rest[..short].iter().position(|&c| c == b'"' || c == b'\\') {
                Some(at) => at,
                None => {
                    short
                        + memchr::memchr2(b'"', b'\\', &rest[short..])
                            .ok_or(RejectReason::Truncated)?
                }
            };
            if self.b[i] == b'"' {
                self.pos = i + 1;
                return Ok(&self.b[start..i]);
            }
            match self.b.get(i + 1) {
                None => return Err(RejectReason::Truncated),
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = &self.b[i + 2..self.b.len().min(i + 6)];
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(RejectReason::UnexpectedText);
                    }
                    if hex.len() < 4 {
                        return Err(RejectReason::Truncated);
                    }
                    i += 6;
                }
                Some(_) => return Err(RejectReason::UnexpectedText),
            }
        }
    }

    /// A number at `pos`, checked against the JSON grammar.
    fn number(&mut self) -> Result<&'a [u8], RejectReason> {
        let b = self.b;
        let start = self.pos;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let digits = |i: usize| {
            b.get(i..)
                .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
        };
        let need_digits = |i: usize| -> Result<usize, RejectReason> {
            match digits(i) {
                0 if i >= b.len() => Err(RejectReason::Truncated),
                0 => Err(RejectReason::UnexpectedText),
                n => Ok(n),
            }
        };
        i += if b.get(i) == Some(&b'0') {
            1
        } else {
            need_digits(i)?
        };
        if b.get(i) == Some(&b'.') {
            i += 1;
            i += need_digits(i)?;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            i += need_digits(i)?;
        }
        self.pos = i;
        Ok(&b[start..i])
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), RejectReason> {
        let rest = &self.b[self.pos..];
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(rest) {
            Err(RejectReason::Truncated)
        } else {
            Err(RejectReason::UnexpectedText)
        }
    }

    /// A string, number or literal at `pos`.
    fn scalar(&mut self) -> Result<Val<'a>, RejectReason> {
        match self.peek()? {
            b'"' => self.string().map(Val::Str),
            b'-' | b'0'..=b'9' => self.number().map(Val::Num),
            b't' => self.literal(b"true").map(|()| Val::Other),
            b'f' => self.literal(b"false").map(|()| Val::Other),
            b'n' => self.literal(b"null").map(|()| Val::Null),
            _ => Err(RejectReason::UnexpectedText),
        }
    }

    /// Skips the value at `pos`, inside a container at `depth`. Containers are walked
    /// iteratively, with a bit stack (1 = object) for matching their closing brackets.
    fn skip_value(&mut self, depth: u32) -> Result<(), RejectReason> {
        let mut level = 0u32;
        let mut objects = 0u64;
        'value: loop {
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    level += 1;
                    if depth + level > MAX_DEPTH {
                        return Err(RejectReason::UnexpectedText);
                    }
                    let is_object = open == b'{';
                    objects = (objects << 1) | u64::from(is_object);
                    self.pos += 1;
                    self.skip_ws();
                    match self.peek()? {
                        b'}' if is_object => self.pos += 1,
                        b']' if !is_object => self.pos += 1,
                        _ => {
                            if is_object {
                                self.key()?;
                            }
                            continue 'value;
                        }
                    }
                    // An empty container: done with it.
                    level -= 1;
                    objects >>= 1;
                }
                _ => {
                    self.scalar()?;
                }
            }
            // A value is complete; close containers until one continues.
            while level > 0 {
                self.skip_ws();
                let in_object = objects & 1 == 1;
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.skip_ws();
                        if in_object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return Err(RejectReason::UnexpectedText),
                }
                self.pos += 1;
                level -= 1;
                objects >>= 1;
            }
            return Ok(());
        }
    }

    /// `"key" :` and the whitespace after it.
    fn key(&mut self) -> Result<(), RejectReason> {
        if self.peek()? != b'"' {
            return Err(RejectReason::UnexpectedText);
        }
        self.string()?;
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        Ok(())
    }
}
