//! What may leave the parse step of the free-text fields: the page (and its page group),
//! allow-listed query values, the referrer domain and the bot flag (the user agent's
//! classification is in [`crate::classify`]).
//!
//! # Personal-looking text
//!
//! A request target can carry personal data: `/u/alice@example.com`, `/reset/<token>`,
//! `/cart;jsessionid=…`, `?email=…`, `?tel=…`. [`Page::from_target`] keeps the path only,
//! drops `;params` and replaces every path segment that [looks personal](looks_personal)
//! by [`REDACTED`]; [`QueryValues::from_target`] keeps only the allow-listed parameters
//! and applies the same test to their values. The test runs on the **percent-decoded**
//! text (decoded on the fly, never stored: `alice%40example.com` is an e-mail address,
//! `03%201234%205678` a phone number); the page itself keeps the logged encoding.
//! Text looks personal when it contains any of:
//!
//! 1. **E-mail**: an `@`, or Mailman's `--at--` spelling (`user--at--example.com`).
//! 2. **Hex token**: 16 or more hex digits in a row (`[0-9A-Fa-f]`): session ids
//!    (Tomcat's `JSESSIONID` is 32), hashes, reset tokens; also any 16+ digit number.
//! 3. **UUID**: `8-4-4-4-12` hex digits joined by `-`.
//! 4. **Phone or card number**: 9 or more digits in a run of digits, spaces, `-`, `(`,
//!    `)` and `+` (`03-1234-5678`, `+81312345678`, `+81 3 1234 5678`,
//!    `4111 1111 1111 1111`). Every card number (13–19 digits) is such a run, so no Luhn
//!    check is made: a failed checksum is usually a mistyped real number. A `.` ends the
//!    run, so versions and dotted dates (`xdotool-2.20110530`) stay; an ISO date has 8
//!    digits and stays, but a date with a time (`2026-11-01-1230`) does not.
//! 5. **Base64-like token**: a run of 20 or more characters from `[A-Za-z0-9+/=_-]` that
//!    is not made of words. Split the run into *pieces*: runs of digits, runs of lower-case
//!    letters (with the one capital before them, `Hotel`), and runs of the remaining
//!    capitals; `+ / = _ -` end a piece. The run is a token when its pieces are on average
//!    shorter than 3 letters or digits (3 × pieces > letters and digits) — random text
//!    switches between capitals, small letters and digits every 1.5–2.5 characters,
//!    words and CamelCase every 3 or more — unless `-` or `_` split it into parts of
//!    which one is a word (3+ letters, all small, all capitals, or one capital and then
//!    small: the `Pro` of `iPhone-15-Pro-Max-256GB`). Measured on random strings: about
//!    96 % of base64url and 98–99 % of mixed-case alphanumeric tokens of 20–64 characters
//!    are caught, and about 80 % of lower-case (or upper-case) alphanumeric ones (PHP and
//!    Django session ids); letters-only tokens shorter than that, and tokens under 20
//!    characters, are not. Ordinary slugs and file names stay (`tokyo-hotels-2026`,
//!    `logstash-monitorama-2013`, `TWikiUpgradeTo01May2000`,
//!    `ui-bg_highlight-soft_25_327E04_1x100.png`); content-hashed file names such as
//!    Google Fonts' `xjAJXh38I15wypJXxuGMBp0EAVxt0G0biEntp43Qt6E.ttf` are redacted (by
//!    shape they are tokens), as are CamelCase names dense with numbers
//!    (`MacBookPro16Inch2019M1Max`).
//!
//! Every rule is a single pass over the bytes with a few counters: no regular expression
//! and no allocation. A segment shorter than 16 bytes without `%` is first screened by
//! counting digits (most path segments end there).
//! The rules are pinned by the table tests below (real paths from the corpora in
//! `../shared/corpora`) and by `crates/logveil/tests/it/sanitize.rs`, which runs them
//! over every path of those corpora.

use std::fmt;
use std::sync::{Arc, LazyLock};

/// Replaces a path segment or query value that looks like personal data.
pub const REDACTED: &str = ":redacted";

/// Hex digits in a row that make a hex token.
const HEX_TOKEN_MIN: u32 = 16;
/// Digits in a phone-number run that make it personal.
const PHONE_MIN_DIGITS: u32 = 9;
/// Length of a base64-like run before it can be a token.
const TOKEN_MIN: u32 = 20;
/// The UUID's hex groups.
const UUID_GROUPS: [u32; 5] = [8, 4, 4, 4, 12];

/// Bytes of `raw`, percent-decoded on the fly (`%4` or `%zz` stay as they are); with
/// `plus_is_space`, `+` is a space (query strings, `application/x-www-form-urlencoded`).
#[derive(Debug, Clone)]
struct Decoded<'a> {
    raw: &'a [u8],
    plus_is_space: bool,
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.raw.split_first()?;
        if b == b'%'
            && let [h, l, tail @ ..] = rest
            && let (Some(h), Some(l)) = (hex_value(*h), hex_value(*l))
        {
            self.raw = tail;
            return Some(h << 4 | l);
        }
        self.raw = rest;
        Some(if b == b'+' && self.plus_is_space {
            b' '
        } else {
            b
        })
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum CharClass {
    /// Start of a run, or after `+ / = _ -`.
    #[default]
    None,
    Upper,
    Lower,
    Digit,
}

/// The base64-like rule's counters over one run of `[A-Za-z0-9+/=_-]`.
#[derive(Debug, Default)]
struct TokenRun {
    len: u32,
    alnum: u32,
    pieces: u32,
    prev: CharClass,
    upper_run: u32,
    /// `-` and `_` seen: the run has more than one part.
    separators: u32,
    /// Some part is a word.
    has_word: bool,
    part_len: u32,
    part_upper: u32,
    part_first_upper: bool,
    part_not_letters: bool,
}

impl TokenRun {
    /// Feeds one byte; returns whether a run just ended as a token.
    fn feed(&mut self, b: u8) -> bool {
        let class = match b {
            b'A'..=b'Z' => CharClass::Upper,
            b'a'..=b'z' => CharClass::Lower,
            b'0'..=b'9' => CharClass::Digit,
            b'-' | b'_' => {
                self.len += 1;
                self.end_part();
                self.separators += 1;
                self.prev = CharClass::None;
                return false;
            }
            b'+' | b'/' | b'=' => {
                self.len += 1;
                self.part_len += 1;
                self.part_not_letters = true;
                self.prev = CharClass::None;
                return false;
            }
            _ => return self.end_run(),
        };
        self.len += 1;
        self.alnum += 1;
        match (self.prev, class) {
            // `Hotel`: the capital starts the piece the small letters continue; after
            // `XMLHttp`'s `XMLH`, the `H` moves to the new piece `Http`.
            (CharClass::Upper, CharClass::Lower) => self.pieces += u32::from(self.upper_run > 1),
            (prev, class) if prev == class => {}
            _ => self.pieces += 1,
        }
        self.upper_run = match (self.prev, class) {
            (CharClass::Upper, CharClass::Upper) => self.upper_run + 1,
            (_, CharClass::Upper) => 1,
            _ => 0,
        };
        self.prev = class;
        self.part_len += 1;
        match class {
            CharClass::Upper => {
                self.part_first_upper |= self.part_len == 1;
                self.part_upper += 1;
            }
            CharClass::Digit => self.part_not_letters = true,
            CharClass::Lower | CharClass::None => {}
        }
        false
    }

    fn end_part(&mut self) {
        let word = !self.part_not_letters
            && self.part_len >= 3
            && (self.part_upper == 0
                || self.part_upper == self.part_len
                || (self.part_upper == 1 && self.part_first_upper));
        self.has_word |= word;
        self.part_len = 0;
        self.part_upper = 0;
        self.part_first_upper = false;
        self.part_not_letters = false;
    }

    /// Ends the current run; whether it was a token.
    fn end_run(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        self.end_part();
        let token = self.len >= TOKEN_MIN
            && !(self.separators > 0 && self.has_word)
            && 3 * self.pieces > self.alnum;
        *self = Self::default();
        token
    }
}

/// All rules' counters, fed one decoded byte at a time.
#[derive(Debug, Default)]
struct Detector {
    hit: bool,
    hex_run: u32,
    /// UUID groups matched so far (0–4).
    uuid_groups: usize,
    phone_digits: u32,
    /// Bytes of `--at--` matched so far (0–5).
    at_word: u8,
    token: TokenRun,
}

impl Detector {
    fn feed(&mut self, b: u8) {
        if b == b'@' {
            self.hit = true;
        }
        // `--at--`, matched as a tiny automaton (after `--`, a third `-` keeps `--`).
        self.at_word = match (self.at_word, b) {
            (5, b'-') => {
                self.hit = true;
                0
            }
            (0 | 1 | 4, b'-') | (2, b'a') | (3, b't') => self.at_word + 1,
            (2, b'-') => 2,
            (3, b'-') => 1,
            _ => 0,
        };
        if b.is_ascii_hexdigit() {
            self.hex_run += 1;
            self.hit |= self.hex_run >= HEX_TOKEN_MIN;
        } else {
            self.end_hex_group(b == b'-');
            self.hex_run = 0;
        }
        if b.is_ascii_digit() {
            self.phone_digits += 1;
            self.hit |= self.phone_digits >= PHONE_MIN_DIGITS;
        } else if !matches!(b, b' ' | b'-' | b'(' | b')' | b'+') {
            self.phone_digits = 0;
        }
        self.hit |= self.token.feed(b);
    }

    /// A run of hex digits ended (at a `-` when `dash`): one more UUID group, or a restart.
    fn end_hex_group(&mut self, dash: bool) {
        let g = self.uuid_groups;
        if g == 4 {
            self.hit |= self.hex_run == UUID_GROUPS[4];
            self.uuid_groups = 0;
        } else if dash && self.hex_run == UUID_GROUPS[g] {
            self.uuid_groups += 1;
        } else if dash && self.hex_run == UUID_GROUPS[0] {
            self.uuid_groups = 1;
        } else {
            self.uuid_groups = 0;
        }
    }

    fn finish(mut self) -> bool {
        self.end_hex_group(false);
        self.hit | self.token.end_run()
    }
}

/// Whether decoded text looks like personal data (see the [module](self) documentation).
pub fn looks_personal(decoded: impl IntoIterator<Item = u8>) -> bool {
    let mut detector = Detector::default();
    for b in decoded {
        detector.feed(b);
        if detector.hit {
            return true;
        }
    }
    detector.finish()
}

/// Whether a path segment or query value, as logged, looks like personal data.
fn raw_looks_personal(raw: &[u8], plus_is_space: bool) -> bool {
    if raw.len() < HEX_TOKEN_MIN as usize {
        // Too short for a hex token, UUID or base64-like token (decoding only shortens):
        // without `%`, only an `@`, `--` (of `--at--`) or 9 digits can make it personal.
        let (mut digits, mut dashes, mut prev_dash) = (0u32, false, false);
        for &b in raw {
            match b {
                b'@' => return true,
                b'%' => return looks_personal(Decoded { raw, plus_is_space }),
                b'0'..=b'9' => digits += 1,
                _ => {}
            }
            dashes |= prev_dash && b == b'-';
            prev_dash = b == b'-';
        }
        if digits < PHONE_MIN_DIGITS && !dashes {
            return false;
        }
    }
    looks_personal(Decoded { raw, plus_is_space })
}

/// The requested page: the URL path only, with personal-looking segments redacted.
///
/// It can only be built by [`Page::from_target`], so holding a `Page` means the
/// query string and `;params` are gone and personal-looking segments are redacted — or
/// decoded by `Page::from_wire` from an event batch that an edge built from pages made
/// that way.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Page(Arc<str>);

impl Page {
    /// From a request target as logged (`/a/b?x=1`).
    ///
    /// Keeps the path up to the first `?` or `#`; drops `;params` (`;jsessionid=…`) from
    /// each segment; replaces a segment that [looks personal](looks_personal) by
    /// [`REDACTED`]. Percent-encoding is kept as logged; non-UTF-8 bytes become U+FFFD.
    /// When nothing needs redacting, the only allocation is the page's own text.
    pub fn from_target(target: &[u8]) -> Self {
        let end = memchr::memchr2(b'?', b'#', target).unwrap_or(target.len());
        let path = &target[..end];
        if path.is_empty() {
            return Self(Arc::from("/"));
        }
        let clean = memchr::memchr(b';', path).is_none()
            && !path
                .split(|&b| b == b'/')
                .any(|segment| raw_looks_personal(segment, false));
        if clean {
            return Self(Arc::from(String::from_utf8_lossy(path)));
        }
        let mut out = Vec::with_capacity(path.len());
        for (i, segment) in path.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            let segment = memchr::memchr(b';', segment).map_or(segment, |p| &segment[..p]);
            if raw_looks_personal(segment, false) {
                out.extend_from_slice(REDACTED.as_bytes());
            } else {
                out.extend_from_slice(segment);
            }
        }
        Self(Arc::from(String::from_utf8_lossy(&out)))
    }

    /// A page read back from an event batch ([`crate::wire`]), which an edge built with
    /// [`Page::from_target`]. Only the decoder calls this. The sanitiser cannot be re-run
    /// on its own output, so only the shape is checked: `None` unless the text starts
    /// with `/` (as every event's page does: events are made only from targets that start
    /// with `/`) and has no `?`, `#` or `;` (no query, fragment or path parameters).
    pub(crate) fn from_wire(text: Arc<str>) -> Option<Self> {
        let shaped =
            text.starts_with('/') && memchr::memchr3(b'?', b'#', b';', text.as_bytes()).is_none();
        shaped.then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page({:?})", &*self.0)
    }
}

/// A query parameter that can become a report dimension when the policy allow-lists it
/// (`[query] allow` in the policy file). Every other parameter is always dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryParam {
    UtmSource,
    UtmMedium,
    UtmCampaign,
}

impl QueryParam {
    pub const ALL: [QueryParam; 3] = [Self::UtmSource, Self::UtmMedium, Self::UtmCampaign];

    /// The parameter's name in the query string, which is also its dimension's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UtmSource => "utm_source",
            Self::UtmMedium => "utm_medium",
            Self::UtmCampaign => "utm_campaign",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().as_bytes() == name)
    }

    /// `utm_source, utm_medium, utm_campaign`, for error messages.
    pub fn allowed_names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for QueryParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of query parameters a policy keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QueryAllow(u8);

impl QueryAllow {
    pub const fn allows(self, param: QueryParam) -> bool {
        self.0 & (1 << param.index()) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[must_use]
    pub const fn with(self, param: QueryParam) -> Self {
        Self(self.0 | (1 << param.index()))
    }

    /// The allowed parameters, in [`QueryParam::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = QueryParam> {
        QueryParam::ALL.into_iter().filter(move |p| self.allows(*p))
    }
}

impl FromIterator<QueryParam> for QueryAllow {
    fn from_iter<I: IntoIterator<Item = QueryParam>>(iter: I) -> Self {
        iter.into_iter().fold(Self::default(), Self::with)
    }
}

/// Label for an allow-listed parameter that the request did not carry (or left empty).
pub const NO_QUERY_VALUE: &str = "(none)";
/// Characters kept of a query value.
pub const QUERY_VALUE_MAX_CHARS: usize = 64;

/// The value of an allow-listed query parameter: percent-decoded (`+` is a space),
/// trimmed, [`REDACTED`] if it [looks personal](looks_personal), else lower-cased
/// with control characters as U+FFFD and cut to [`QUERY_VALUE_MAX_CHARS`] characters.
/// Built only by [`QueryValues::from_target`], or decoded by `QueryValue::from_wire`
/// from an event batch that an edge built from values made that way.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryValue(Arc<str>);

impl QueryValue {
    /// `None` for an empty value.
    fn from_raw(raw: &[u8]) -> Option<Self> {
        let decoded: Vec<u8> = Decoded {
            raw,
            plus_is_space: true,
        }
        .collect();
        let decoded = decoded.trim_ascii();
        if decoded.is_empty() {
            return None;
        }
        if looks_personal(decoded.iter().copied()) {
            return Some(Self(Arc::from(REDACTED)));
        }
        let text: String = String::from_utf8_lossy(decoded)
            .to_lowercase()
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .take(QUERY_VALUE_MAX_CHARS)
            .collect();
        Some(Self(Arc::from(text)))
    }

    /// A value read back from an event batch ([`crate::wire`]), which an edge built with
    /// [`QueryValues::from_target`]. Only the decoder calls this. Only the shape is
    /// checked: `None` unless the text is non-empty, at most [`QUERY_VALUE_MAX_CHARS`]
    /// characters and free of control characters.
    pub(crate) fn from_wire(text: Arc<str>) -> Option<Self> {
        let shaped = !text.is_empty()
            && text.chars().count() <= QUERY_VALUE_MAX_CHARS
            && !text.chars().any(char::is_control);
        shaped.then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// [`NO_QUERY_VALUE`], shared (one allocation for the whole process).
    pub fn none_shared() -> Arc<str> {
        static NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(NO_QUERY_VALUE));
        Arc::clone(&NONE)
    }
}

impl fmt::Debug for QueryValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryValue({:?})", &*self.0)
    }
}

/// The allow-listed query values of one request; nothing else of the query survives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryValues([Option<QueryValue>; 3]);

impl QueryValues {
    /// From a request target as logged: the query runs from the first `?` to `#`; pairs
    /// are split at `&`, names compared exactly as logged; the **first** occurrence of a
    /// name wins (an empty first value counts as missing). Parameters not in `allow` are
    /// never looked at.
    pub fn from_target(target: &[u8], allow: QueryAllow) -> Self {
        let mut values = Self::default();
        if allow.is_empty() {
            return values;
        }
        let Some(start) = memchr::memchr(b'?', target) else {
            return values;
        };
        let query = &target[start + 1..];
        let query = memchr::memchr(b'#', query).map_or(query, |end| &query[..end]);
        let mut seen = QueryAllow::default();
        for pair in query.split(|&b| b == b'&') {
            let (name, value) = memchr::memchr(b'=', pair)
                .map_or((pair, &b""[..]), |eq| (&pair[..eq], &pair[eq + 1..]));
            let Some(param) = QueryParam::from_name(name) else {
                continue;
            };
            if allow.allows(param) && !seen.allows(param) {
                seen = seen.with(param);
                values.0[param.index()] = QueryValue::from_raw(value);
            }
        }
        values
    }

    /// The value of `param`; `None` when not allow-listed, absent or empty.
    pub fn get(&self, param: QueryParam) -> Option<&QueryValue> {
        self.0[param.index()].as_ref()
    }

    /// The values read back from an event batch ([`crate::wire`]), in [`QueryParam::ALL`]
    /// order. Only the decoder calls this (each value came through `QueryValue::from_wire`).
    pub(crate) fn from_wire(values: [Option<QueryValue>; 3]) -> Self {
        Self(values)
    }
}

/// Label for a page that matches no route template.
pub const OTHER_PAGE_GROUP: &str = "(other)";

/// The route template a page matches (its text, as declared), or [`OTHER_PAGE_GROUP`].
/// Built only by [`RouteTemplates::group`], or decoded by `PageGroup::from_wire` from an
/// event batch that an edge built from groups made that way.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageGroup(Arc<str>);

impl PageGroup {
    /// A page group read back from an event batch ([`crate::wire`]), which an edge built
    /// with [`RouteTemplates::group`]. Only the decoder calls this. Only the shape is
    /// checked: `None` unless the text is [`OTHER_PAGE_GROUP`] or starts with `/` (as
    /// every template must).
    pub(crate) fn from_wire(text: Arc<str>) -> Option<Self> {
        let shaped = &*text == OTHER_PAGE_GROUP || text.starts_with('/');
        shaped.then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for PageGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageGroup({:?})", &*self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSegment {
    /// Matches exactly this segment (as logged, percent-encoding included).
    Literal(Box<str>),
    /// `{name}`: any one non-empty segment.
    Param,
}

#[derive(Debug, Clone)]
struct Template {
    group: PageGroup,
    segments: Box<[TemplateSegment]>,
    /// Ends in `*`: any further segments, none included.
    rest: bool,
}

/// A path as matched: without the leading and one trailing `/`, and its segment count
/// (`/` has none).
fn match_path(path: &str) -> (&str, usize) {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    let count = if path.is_empty() {
        0
    } else {
        memchr::memchr_iter(b'/', path.as_bytes()).count() + 1
    };
    (path, count)
}

impl Template {
    fn matches(&self, path: &str, count: usize) -> bool {
        let len = self.segments.len();
        if count < len || (count > len && !self.rest) {
            return false;
        }
        let mut segments = path.split('/');
        for want in &self.segments {
            let Some(got) = segments.next() else {
                return false;
            };
            let ok = match want {
                TemplateSegment::Literal(literal) => **literal == *got,
                TemplateSegment::Param => !got.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Route templates (`[pages] templates` in the pipeline), compiled once: the first that
/// matches a page gives its [`PageGroup`].
///
/// A template is a path of `/`-separated segments: a literal segment matches itself, `{name}`
/// matches any one non-empty segment, and a final `*` matches whatever follows (nothing
/// included). A trailing `/` is ignored on both sides, so `/en/tokyo/hotels/` matches
/// `/en/{city}/hotels`. Matching runs on the sanitised [`Page`], so `{id}` also matches
/// a [`REDACTED`] segment.
#[derive(Debug, Clone, Default)]
pub struct RouteTemplates {
    templates: Vec<Template>,
    other: Option<PageGroup>,
}

impl RouteTemplates {
    /// Compiles `templates` in priority order; the error names the template and the rule.
    pub fn parse(templates: &[String]) -> Result<Self, String> {
        let mut compiled: Vec<Template> = Vec::with_capacity(templates.len());
        for (i, text) in templates.iter().enumerate() {
            let at = format!("templates[{i}] `{text}`");
            if compiled.iter().any(|t| t.group.as_str() == text) {
                return Err(format!("{at}: listed twice"));
            }
            let Some(body) = text.strip_prefix('/') else {
                return Err(format!("{at}: must start with `/`"));
            };
            let body = body.strip_suffix('/').unwrap_or(body);
            let parts: Vec<&str> = if body.is_empty() {
                Vec::new()
            } else {
                body.split('/').collect()
            };
            let mut segments = Vec::with_capacity(parts.len());
            let mut rest = false;
            for (j, part) in parts.iter().enumerate() {
                if *part == "*" {
                    if j + 1 != parts.len() {
                        return Err(format!("{at}: `*` may only be the last segment"));
                    }
                    rest = true;
                } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
                {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(format!(
                            "{at}: `{part}` is not a parameter (`{{name}}` with letters, digits, `_`)"
                        ));
                    }
                    segments.push(TemplateSegment::Param);
                } else if part.is_empty() {
                    return Err(format!("{at}: empty segment (`//`)"));
                } else if part.bytes().any(|b| {
                    matches!(b, b'{' | b'}' | b'*' | b'?' | b'#' | b';') || b.is_ascii_whitespace()
                }) {
                    return Err(format!(
                        "{at}: segment `{part}` has a character that cannot match (`{{`, `}}`, `*`, `?`, `#`, `;`, space)"
                    ));
                } else {
                    segments.push(TemplateSegment::Literal(Box::from(*part)));
                }
            }
            compiled.push(Template {
                group: PageGroup(Arc::from(text.as_str())),
                segments: segments.into_boxed_slice(),
                rest,
            });
        }
        Ok(Self {
            other: (!compiled.is_empty()).then(|| PageGroup(Arc::from(OTHER_PAGE_GROUP))),
            templates: compiled,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// The first template `page` matches, else [`OTHER_PAGE_GROUP`]; `None` without templates.
    pub fn group(&self, page: &Page) -> Option<PageGroup> {
        let other = self.other.as_ref()?;
        let (path, count) = match_path(page.as_str());
        Some(
            self.templates
                .iter()
                .find(|t| t.matches(path, count))
                .map_or(other, |t| &t.group)
                .clone(),
        )
    }
}

/// What the sanitiser needs beyond the request: the policy's query allowlist and the
/// pipeline's route templates.
#[derive(Debug, Clone, Default)]
pub struct SanitizePolicy {
    pub query_allow: QueryAllow,
    pub routes: RouteTemplates,
}

/// Label for a request without a Referer.
pub const NO_REFERRER: &str = "(none)";
/// Label for a Referer that has no recognisable host.
pub const INVALID_REFERRER: &str = "(invalid)";

/// The host of the Referer, lower-cased, without scheme, user info, port, path or query.
///
/// Built only by [`ReferrerDomain::from_referer`], or decoded by
/// `ReferrerDomain::from_wire` from an event batch that an edge built from domains made
/// that way.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReferrerDomain(Arc<str>);

impl ReferrerDomain {
    pub fn from_referer(referer: Option<&[u8]>) -> Self {
        let Some(referer) = referer.filter(|r| !r.is_empty()) else {
            return Self(Arc::from(NO_REFERRER));
        };
        let after_scheme =
            memchr::memmem::find(referer, b"://").map_or(referer, |i| &referer[i + 3..]);
        let authority_end =
            memchr::memchr3(b'/', b'?', b'#', after_scheme).unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_end];
        // User info (`user:pass@host`) is personal data: skip to the host.
        let host_port = memchr::memrchr(b'@', authority).map_or(authority, |i| &authority[i + 1..]);
        let host = if host_port.starts_with(b"[") {
            memchr::memchr(b']', host_port).map_or(host_port, |i| &host_port[..=i])
        } else {
            memchr::memchr(b':', host_port).map_or(host_port, |i| &host_port[..i])
        };
        let valid =
            !host.is_empty() && host.len() <= MAX_HOST_LEN && host.iter().all(|&b| host_byte(b));
        if !valid {
            return Self(Arc::from(INVALID_REFERRER));
        }
        Self(Arc::from(
            String::from_utf8_lossy(host).to_ascii_lowercase(),
        ))
    }

    /// A domain read back from an event batch ([`crate::wire`]), which an edge built with
    /// [`ReferrerDomain::from_referer`]. Only the decoder calls this. `None` unless the text
    /// is [`NO_REFERRER`], [`INVALID_REFERRER`] or a host as `from_referer` keeps it: 1 to
    /// 253 bytes of lower-case letters, digits, `.`, `-`, `_`, `[`, `]` and `:`.
    pub(crate) fn from_wire(text: Arc<str>) -> Option<Self> {
        let shaped = [NO_REFERRER, INVALID_REFERRER].contains(&&*text)
            || (!text.is_empty()
                && text.len() <= MAX_HOST_LEN
                && text
                    .bytes()
                    .all(|b| host_byte(b) && !b.is_ascii_uppercase()));
        shaped.then_some(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, shared (cheap to clone into many report cells).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

/// The longest host name a referrer domain keeps.
const MAX_HOST_LEN: usize = 253;

/// A byte a referrer host may have (before lower-casing).
fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
}

impl fmt::Debug for ReferrerDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReferrerDomain({:?})", &*self.0)
    }
}

/// The bot definition now lives with the device and browser tables in [`crate::classify`].
pub use crate::classify::{BOT_MARKERS, is_bot};

#[cfg(test)]
mod tests {
    use super::*;

    fn page(target: &str) -> String {
        Page::from_target(target.as_bytes()).as_str().to_owned()
    }

    #[test]
    fn page_keeps_path_only() {
        assert_eq!(page("/en/tokyo?email=a%40b.com"), "/en/tokyo");
        assert_eq!(page("/a#frag"), "/a");
        assert_eq!(page(""), "/");
        assert_eq!(page("/cart;jsessionid=ABC123/x"), "/cart/x");
        assert_eq!(page("/u/alice@example.com/profile"), "/u/:redacted/profile");
        assert_eq!(page("/u/alice%40example.com"), "/u/:redacted");
    }

    /// Real paths from `../shared/corpora` (paths only) that must come out unchanged.
    const ORDINARY: &[&str] = &[
        // elastic apache_logs
        "/presentations/logstash-monitorama-2013/images/1983_delorean_dmc-12-pic-38289.jpeg",
        "/blog/geekery/xdotool-2.20110530.html",
        "/files/xdotool/xdotool-2.20101014.3063.tar.gz",
        "/presentations/logstash-1/css/theme/images/ui-bg_highlight-soft_25_327E04_1x100.png",
        "/blog/tags/why%20did%20this%20take%20all%20night",
        "/blog/geekery/session-balancing-across-tomcats-with-apache.html",
        "/blog/geekery/find-that-lost-screen-session-2.html",
        // monitorware apache 2004 (TWiki, Mailman)
        "/twiki/bin/view/TWiki/TWikiUpgradeTo01May2000",
        "/twiki/bin/edit/Main/Header_address_token_limit",
        "/LateEmail.html",
        // NASA Jul 95
        "/shuttle/missions/sts-58/images/KSC-93PC-1374-smaller.jpg",
        "/shuttle/missions/sts-71/images/KSC-95EC-0913.jpg",
        "/news/sci.space.news/archive/sci-space-news-26-feb-1994-07.txt",
        "/history/apollo/apollo-7/images/68HC651.GIF",
        "/shuttle/technology/images/srb_mod_compare_3-small.gif",
        // lnav shop log: Persian slugs, percent-encoded filters, numeric ids
        "/product/31893/62100/%D8%B3%D8%B4%D9%88%D8%A7%D8%B1-%D8%AE%D8%A7%D9%86%DA%AF%DB%8C-%D9%BE%D8%B1%D9%86%D8%B3%D9%84%DB%8C-%D9%85%D8%AF%D9%84-PR257AT",
        "/m/product/33978/64784/%DA%AF%D9%88%D8%B4%DB%8C-%D9%85%D9%88%D8%A8%D8%A7%DB%8C%D9%84-%D8%B3%D8%A7%D9%85%D8%B3%D9%88%D9%86%DA%AF-%D9%85%D8%AF%D9%84-Galaxy-A9-%282018%29-Dual-128GB-%28SM-A920%29",
        "/filter/b874%2Cb32%2Cb63%2Cb99%2Cb126%2Cb820%2Cb249%2Cb3%2Cb148%2Cb724%2Cb613%2Cb183%2Cb213%2Cb484",
        "/filter/27|13%20%D9%85%DA%AF%D8%A7%D9%BE%DB%8C%DA%A9%D8%B3%D9%84,27|%DA%A9%D9%85%D8%AA%D8%B1%20%D8%A7%D8%B2%205%20%D9%85%DA%AF%D8%A7%D9%BE%DB%8C%DA%A9%D8%B3%D9%84,p53",
        "/image/60844/productModel/200x200",
        // the sample site
        "/en/tokyo/hotels",
        "/en/hiroshima/peace-memorial",
        "/api/v1/availability",
        "/",
        // ordinary slugs that are long, numbered or CamelCase
        "/en/tokyo-hotels-2026",
        "/shop/iPhone-15-Pro-Max-256GB-Blue",
        "/p/HP-LaserJet-Pro-M404dn-W1A53A",
        "/dl/GoogleChromeStandaloneEnterprise64.msi",
        "/news/2026-11-01/top-10-onsen",
        "/static/app.3f9a1c2e.js",
        "/isbn/978-4-06",
    ];

    #[test]
    fn ordinary_paths_are_unchanged() {
        for path in ORDINARY {
            assert_eq!(page(path), *path, "{path}");
        }
    }

    #[test]
    fn personal_segments_are_redacted() {
        let cases: &[(&str, &str)] = &[
            // Real: e-mail addresses in paths (monitorware Mailman, NASA, logstash fixture).
            (
                "/mailman/options/ppwc/ppwctwentynine@shaw.com",
                "/mailman/options/ppwc/:redacted",
            ),
            (
                "/mailman/options/cnc_notice/arobin%40shaw.c",
                "/mailman/options/cnc_notice/:redacted",
            ),
            (
                "/mailman/options/ppwc/ppwctwentynine--at--shaw.com",
                "/mailman/options/ppwc/:redacted",
            ),
            (
                "/persons/nasa-cm/mailto:dumoulin@titan.ksc.nasa.gov",
                "/persons/nasa-cm/:redacted",
            ),
            (
                "/bar/foo/users/1/username%40example.com/authenticate?token=blargh&client_id=15",
                "/bar/foo/users/1/:redacted/authenticate",
            ),
            // Real: a base64url content hash (Google Fonts) is token-shaped.
            (
                "/presentations/logstash-scale11x/css/fonts/xjAJXh38I15wypJXxuGMBp0EAVxt0G0biEntp43Qt6E.ttf",
                "/presentations/logstash-scale11x/css/fonts/:redacted",
            ),
            // Session ids: path parameters dropped, hex in a segment redacted.
            (
                "/shop/cart;jsessionid=0A1B2C3D4E5F60718293A4B5C6D7E8F9",
                "/shop/cart",
            ),
            (
                "/shop/cart;JSESSIONID=abc;foo=1/checkout",
                "/shop/cart/checkout",
            ),
            (
                "/s/0a1b2c3d4e5f60718293a4b5c6d7e8f9/cart",
                "/s/:redacted/cart",
            ),
            ("/sid_0123456789abcdef", "/:redacted"),
            // Reset and confirmation tokens.
            ("/reset/MQ/5ul-8a1c3f9b2d4e6f8a0b1c", "/reset/MQ/:redacted"),
            (
                "/confirm/eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "/confirm/:redacted",
            ),
            (
                "/unsubscribe/k3i9v0d9o5e4b8p3g2c1m7n6a0",
                "/unsubscribe/:redacted",
            ),
            ("/share/1a2B3cD4eF5gH6iJ7kL8mN9oP0qR", "/share/:redacted"),
            // UUIDs.
            (
                "/orders/550e8400-e29b-41d4-a716-446655440000",
                "/orders/:redacted",
            ),
            (
                "/u/PROCESS_123e4567-e89b-12d3-a456-42661bd74000/x",
                "/u/:redacted/x",
            ),
            // Phone numbers.
            ("/callback/03-1234-5678", "/callback/:redacted"),
            ("/callback/+81312345678", "/callback/:redacted"),
            ("/callback/%2B81%203%201234%205678", "/callback/:redacted"),
            ("/tel/(03)%201234-5678", "/tel/:redacted"),
            // Card numbers (Luhn-valid or not: both are 13+ digit runs).
            ("/pay/4111111111111111", "/pay/:redacted"),
            ("/pay/4111%201111%201111%201111/ok", "/pay/:redacted/ok"),
            ("/pay/4111-1111-1111-1112", "/pay/:redacted"),
            // A date with a time has too many digits to tell from a phone number.
            ("/backup/2026-11-01-1230", "/backup/:redacted"),
            // Every segment is checked, not only the last.
            (
                "/a/alice@example.com/b/03-1234-5678/c",
                "/a/:redacted/b/:redacted/c",
            ),
        ];
        for (target, want) in cases {
            assert_eq!(page(target), *want, "{target}");
        }
    }

    #[test]
    fn detector_boundaries() {
        let personal = |s: &str| looks_personal(s.bytes());
        // Hex: 16 in a row, not 15.
        assert!(personal("0123456789abcdef"));
        assert!(!personal("abcdefabcdef012"));
        assert!(!personal("abcdef01234567a-abcdef01234567a"));
        // Phone: 9 digits, not 8; a `.` ends the run.
        assert!(personal("123-456-789"));
        assert!(!personal("1234-5678"));
        assert!(!personal("2026-11-01"));
        assert!(!personal("1234.56789"));
        // UUID shape, exactly.
        // (Letters-only groups and a word part, so no other rule fires.)
        assert!(personal("xx-deadbeef-cafe-babe-f00d-abcdefabcdef-yy"));
        assert!(personal("deadbeef-cafe-babe-f00d-abcdefabcdef"));
        assert!(!personal("deadbeef-cafe-babe-f00d-abcdefabcde"));
        assert!(!personal("deadbeef-cafe-babe-f00d"));
        assert!(!personal("deadbeefa-cafe-babe-f00d-abcdefabcdef"));
        // Base64-like: 20 characters, not 19; words and CamelCase stay.
        assert!(personal("aB3dE5fG7hI9jK1lM3nO"));
        assert!(!personal("aB3dE5fG7hI9jK1lM3n"));
        assert!(!personal("GoogleChromeStandaloneEnterprise"));
        assert!(!personal("supercalifragilisticexpialidocious"));
        assert!(!personal("XMLHttpRequestEventTarget"));
        assert!(!personal("Top10BestPlacesToVisitIn2026"));
        // A `-`-separated run with a word part is a slug; without one it is a token.
        assert!(!personal("Win10_22H2_EnglishInternational_x64v1"));
        assert!(personal("Zx9_Kq2-Lm7Wp4Rt8Yv3Nb6"));
        // `--at--` anywhere, also after more dashes; not `--a-t--` or `-at-`.
        assert!(personal("bob--at--example.com"));
        assert!(personal("bob---at--example.com"));
        assert!(personal("--at--"));
        assert!(!personal("bob--a-t--example.com"));
        assert!(!personal("bob-at-example.com"));
        assert!(!personal("bob--at-example.com"));
        // Nothing from nothing.
        assert!(!personal(""));
        assert!(!personal("-_-_-_-_-_-_-_-_-_-_-_-_"));
    }

    #[test]
    fn percent_decoding_is_lenient() {
        let decoded = |s: &str, plus| {
            Decoded {
                raw: s.as_bytes(),
                plus_is_space: plus,
            }
            .collect::<Vec<u8>>()
        };
        assert_eq!(decoded("a%40b%2fc", false), b"a@b/c");
        assert_eq!(decoded("%zz%4%", false), b"%zz%4%");
        assert_eq!(decoded("a+b", false), b"a+b");
        assert_eq!(decoded("a+b", true), b"a b");
        assert_eq!(decoded("%E3%81%82", true), "あ".as_bytes());
    }

    fn utm(target: &str) -> [Option<String>; 3] {
        let allow: QueryAllow = QueryParam::ALL.into_iter().collect();
        let v = QueryValues::from_target(target.as_bytes(), allow);
        QueryParam::ALL.map(|p| v.get(p).map(|v| v.as_str().to_owned()))
    }

    #[test]
    fn query_values_are_allow_listed_decoded_and_redacted() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            utm("/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn2026"),
            [s("newsletter"), s("email"), s("autumn2026")]
        );
        assert_eq!(
            utm("/en/tokyo/hotels?utm_source=twitter"),
            [s("twitter"), None, None]
        );
        assert_eq!(
            utm("/?email=alice%40example.com&tel=0312345678"),
            [None, None, None]
        );
        assert_eq!(utm("/no-query"), [None, None, None]);
        // Real (elastic apache_logs, FeedBurner): both spellings give the same values.
        let feed = [
            s("feedburner"),
            s("feed"),
            s("feed: semicomplete/main (semicomplete.com - jordan sissel)"),
        ];
        assert_eq!(
            utm(
                "/blog/geekery/disabling-battery-in-ubuntu-vms.html?utm_source=feedburner&utm_medium=feed&utm_campaign=Feed%3A+semicomplete%2Fmain+%28semicomplete.com+-+Jordan+Sissel%29"
            ),
            feed
        );
        assert_eq!(
            utm(
                "/blog/geekery/CEE-logging-for-profit.html?utm_source=feedburner&utm_medium=feed&utm_campaign=Feed:+semicomplete/main+(semicomplete.com+-+Jordan+Sissel)"
            ),
            feed
        );
        // Real (logstash-patterns-core fixture): other parameters never survive.
        assert_eq!(
            utm("/bar/foo/users/1/username%40example.com/authenticate?token=blargh&client_id=15"),
            [None, None, None]
        );
        // Decoded, `+` is a space, lower-cased, trimmed; empty is missing; first wins.
        assert_eq!(
            utm("/?utm_source=News%20Letter&utm_campaign=Spring+Sale&utm_medium="),
            [s("news letter"), None, s("spring sale")]
        );
        assert_eq!(
            utm("/?utm_source=a&utm_source=b&utm_medium=&utm_medium=x"),
            [s("a"), None, None]
        );
        assert_eq!(utm("/?utm_source=x#utm_medium=y"), [s("x"), None, None]);
        // Names are compared as logged.
        assert_eq!(utm("/?UTM_SOURCE=x&utm_source%3Dy"), [None, None, None]);
        // Personal-looking values are redacted by the path rules.
        for v in [
            "alice%40example.com",
            "alice@example.com",
            "03-1234-5678",
            "%2B81+3+1234+5678",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "550e8400-e29b-41d4-a716-446655440000",
            "bob--at--example.com",
        ] {
            assert_eq!(utm(&format!("/?utm_source={v}"))[0], s(REDACTED), "{v}");
        }
        // Cut to 64 characters (not bytes), control characters replaced.
        let long = "あ".repeat(70);
        assert_eq!(
            utm(&format!("/?utm_campaign={long}"))[2],
            Some("あ".repeat(64))
        );
        assert_eq!(utm("/?utm_medium=a%0Ab")[1], s("a\u{fffd}b"));
    }

    #[test]
    fn only_allowed_parameters_are_kept() {
        let allow = QueryAllow::default().with(QueryParam::UtmSource);
        let v = QueryValues::from_target(b"/?utm_source=x&utm_medium=y&utm_campaign=z", allow);
        assert_eq!(v.get(QueryParam::UtmSource).unwrap().as_str(), "x");
        assert!(v.get(QueryParam::UtmMedium).is_none() && v.get(QueryParam::UtmCampaign).is_none());
        let none = QueryValues::from_target(b"/?utm_source=x", QueryAllow::default());
        assert_eq!(none, QueryValues::default());
        assert_eq!(allow.iter().collect::<Vec<_>>(), [QueryParam::UtmSource]);
        assert_eq!(
            QueryParam::from_name(b"utm_campaign"),
            Some(QueryParam::UtmCampaign)
        );
        assert_eq!(QueryParam::from_name(b"gclid"), None);
        assert_eq!(
            QueryParam::allowed_names(),
            "utm_source, utm_medium, utm_campaign"
        );
    }

    fn routes(templates: &[&str]) -> RouteTemplates {
        RouteTemplates::parse(
            &templates
                .iter()
                .map(|t| (*t).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    fn group(routes: &RouteTemplates, path: &str) -> String {
        routes
            .group(&Page::from_target(path.as_bytes()))
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn route_templates_first_match_wins() {
        let r = routes(&[
            "/en/{city}/hotels/{id}",
            "/en/guides/{guide}",
            "/{lang}/{city}/hotels",
            "/{lang}/{city}/temples",
            "/account/*",
            "/",
        ]);
        assert_eq!(r.len(), 6);
        let cases = [
            ("/en/tokyo/hotels/123", "/en/{city}/hotels/{id}"),
            (
                "/en/tokyo/hotels/alice@example.com",
                "/en/{city}/hotels/{id}",
            ),
            ("/en/tokyo/hotels", "/{lang}/{city}/hotels"),
            ("/en/tokyo/hotels/", "/{lang}/{city}/hotels"),
            ("/ja/kyoto/temples?utm_source=x", "/{lang}/{city}/temples"),
            ("/en/guides/jr-pass", "/en/guides/{guide}"),
            ("/account/login", "/account/*"),
            ("/account/bookings/42/edit", "/account/*"),
            ("/account", "/account/*"),
            ("/", "/"),
            ("/en/tokyo", OTHER_PAGE_GROUP),
            ("/en//hotels", OTHER_PAGE_GROUP),
            ("/en/tokyo/hotels/1/2", OTHER_PAGE_GROUP),
            ("/EN/tokyo/temples", "/{lang}/{city}/temples"),
            ("/en/guides", OTHER_PAGE_GROUP),
        ];
        for (path, want) in cases {
            assert_eq!(group(&r, path), want, "{path}");
        }
        // Literal segments are case-sensitive and compared as logged.
        assert_eq!(group(&routes(&["/En/*"]), "/en/x"), OTHER_PAGE_GROUP);
        assert_eq!(group(&routes(&["/*"]), "/anything/at/all"), "/*");
        assert!(
            RouteTemplates::default()
                .group(&Page::from_target(b"/"))
                .is_none()
        );
        assert!(RouteTemplates::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_route_templates_are_named() {
        let err = |t: &str| RouteTemplates::parse(&[t.to_owned()]).unwrap_err();
        assert!(err("en/x").contains("must start with `/`"));
        assert!(err("/a/*/b").contains("`*` may only be the last segment"));
        assert!(err("/a/{}").contains("`{}` is not a parameter"));
        assert!(err("/a/{ci ty}").contains("is not a parameter"));
        assert!(err("/a//b").contains("empty segment"));
        assert!(err("/a/b?c").contains("cannot match"));
        assert!(err("/a/x{id}").contains("cannot match"));
        let e = RouteTemplates::parse(&["/a".to_owned(), "/a".to_owned()]).unwrap_err();
        assert_eq!(e, "templates[1] `/a`: listed twice");
    }

    #[test]
    fn wire_constructors_accept_what_the_sanitiser_makes_and_nothing_unshaped() {
        let targets = ORDINARY.iter().copied().chain([
            "",
            "/cart;jsessionid=ABC123/x?y#z",
            "/u/alice@example.com",
            "/\u{7f}%zz",
        ]);
        for target in targets {
            let page = Page::from_target(target.as_bytes());
            assert_eq!(Page::from_wire(page.shared()), Some(page), "{target}");
        }
        for bad in ["", "en/x", "/a?b", "/a#b", "/a;b"] {
            assert!(Page::from_wire(Arc::from(bad)).is_none(), "{bad}");
        }
        let allow: QueryAllow = QueryParam::ALL.into_iter().collect();
        let target = format!(
            "/?utm_source=A%40b&utm_medium=%0A+x+&utm_campaign={}",
            "\u{3042}".repeat(70)
        );
        let values = QueryValues::from_target(target.as_bytes(), allow);
        let again = QueryValues::from_wire(QueryParam::ALL.map(|p| {
            values
                .get(p)
                .map(|v| QueryValue::from_wire(v.shared()).unwrap())
        }));
        assert_eq!(again, values);
        assert!(QueryParam::ALL.iter().all(|p| values.get(*p).is_some()));
        for bad in [String::new(), "a\nb".to_owned(), "x".repeat(65)] {
            assert!(
                QueryValue::from_wire(Arc::from(bad.as_str())).is_none(),
                "{bad}"
            );
        }
        let routes = RouteTemplates::parse(&["/en/{city}".to_owned()]).unwrap();
        for path in ["/en/tokyo", "/ja"] {
            let group = routes.group(&Page::from_target(path.as_bytes())).unwrap();
            assert_eq!(PageGroup::from_wire(group.shared()), Some(group));
        }
        assert!(PageGroup::from_wire(Arc::from("en")).is_none());
        for referer in [
            None,
            Some("https://www.Example.COM:8080/x"),
            Some("http://[2001:db8::1]:80/"),
            Some("\u{7f}junk"),
        ] {
            let domain = ReferrerDomain::from_referer(referer.map(str::as_bytes));
            assert_eq!(ReferrerDomain::from_wire(domain.shared()), Some(domain));
        }
        for bad in ["", "Example.com", "a/b", "a b", &"a".repeat(254)] {
            assert!(ReferrerDomain::from_wire(Arc::from(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn referrer_domain_is_host_only() {
        let d = |s: &str| {
            ReferrerDomain::from_referer(Some(s.as_bytes()))
                .as_str()
                .to_owned()
        };
        assert_eq!(d("https://www.google.com/search?q=x"), "www.google.com");
        assert_eq!(d("http://Example.COM:8080/x"), "example.com");
        assert_eq!(d("https://user:secret@host.example/"), "host.example");
        assert_eq!(d("http://[2001:db8::1]:80/"), "[2001:db8::1]");
        assert_eq!(
            d("android-app://com.google.android.gm"),
            "com.google.android.gm"
        );
        assert_eq!(d("\u{7f}junk"), INVALID_REFERRER);
        assert_eq!(ReferrerDomain::from_referer(None).as_str(), NO_REFERRER);
    }

    #[test]
    fn bots_and_tools_are_recognised() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "AhrefsBot",
            "SomeCrawler/1.0",
            "Baiduspider",
            "curl/8.5.0",
            "Wget/1.21",
            "python-requests/2.31",
        ] {
            assert!(is_bot(Some(ua.as_bytes())), "{ua}");
        }
        assert!(!is_bot(Some(
            b"Mozilla/5.0 (Windows NT 10.0) Firefox/120.0"
        )));
        assert!(!is_bot(None));
    }
}
