//! Event batches: the versioned binary encoding in which edge agents publish pseudonymized
//! [`Event`]s (to NATS `JetStream`, issue #9) and aggregators read them back. [`encode`]
//! writes a batch, [`decode`] reads one and rejects — never panics on — anything that is
//! not a well-formed batch of this version.
//!
//! A batch carries only what an [`Event`] holds: pseudonyms, sanitised texts, a truncated
//! network, closed enums and counts. No raw address, cookie, user agent, query string or
//! user name is ever encoded, and the header carries names and counts only.
//!
//! # Format, version 1
//!
//! This is a public contract: edges and aggregators of different builds exchange it.
//! Changing any byte of it requires a new [`WIRE_VERSION`] (the golden test in this module
//! pins the bytes of a small batch, `tests/golden/wire-v1.hex`).
//!
//! ```text
//! batch = "LVEB"      WIRE_MAGIC, 4 bytes
//!         0x01        WIRE_VERSION, 1 byte
//!         body        one zstd frame (RFC 8878)
//! ```
//!
//! The encoder compresses at level 3 with the content size in the frame header and a
//! content checksum. The decoder accepts any zstd frame(s) whose window is at most
//! 2^23 bytes (8 MiB) and whose content is at most [`MAX_BODY_BYTES`] (256 MiB) — a
//! larger declared or actual size is rejected before or while decompressing.
//!
//! The decompressed **body**, all integers little-endian, no padding or alignment:
//!
//! | part | layout |
//! |---|---|
//! | header | `u32` length, then that many bytes of JSON: a [`BatchHeader`] object with every field present (unknown fields are ignored); the decoder does not interpret its values |
//! | string table | `u32` count, then per string a `u32` byte length and the UTF-8 bytes |
//! | event count | `u32` n |
//! | events | 16 columns, in the order below; each holds the values of all n events, event 0 first |
//!
//! and nothing after the last column. Texts are **string indexes**: a `u32` position in the
//! string table, [`NO_STRING`] (`u32::MAX`) for none. The encoder writes each distinct
//! string once (a page and a referrer with the same text share an entry), in order of first
//! use, column by column (key ids first, then pages, page groups, the three query values,
//! referrers); the decoder also accepts duplicate and unused entries. Decoded events of
//! one batch share one `Arc<str>` per table entry.
//!
//! | # | column | bytes per event | value |
//! |---|---|---|---|
//! | 1 | `utc_micros` | 8 | `i64` |
//! | 2 | `visitor` | 16 | the pseudonym's bytes |
//! | 3 | `key_id` | 4 | string index (never none): 1 or more ASCII letters, digits, `-`, `_` |
//! | 4 | flags | 1 | bit 0 `cookie_visitor`; bit 1 `bot`; bit 2 status present; bit 3 page present; bit 4 page group present; bits 5–6 `ip_prefix` kind: 0 none, 1 IPv4, 2 IPv6 (3 is invalid); bit 7 zero |
//! | 5 | `method` | 1 | [`Method::wire_code`]: GET 0, HEAD 1, POST 2, other 3 |
//! | 6 | `status` | 2 | `u16`; 0 when absent |
//! | 7 | `bytes` | 8 | `u64` |
//! | 8 | `page` | 4 | string index, none exactly when flag bit 3 is clear |
//! | 9 | `page_group` | 4 | string index, none exactly when flag bit 4 is clear; only with a page |
//! | 10 | `utm_source` | 4 | string index or none |
//! | 11 | `utm_medium` | 4 | string index or none |
//! | 12 | `utm_campaign` | 4 | string index or none |
//! | 13 | `referrer` | 4 | string index (never none) |
//! | 14 | `device` | 1 | [`DeviceClass::wire_code`]: desktop 0, mobile 1, tablet 2, bot 3, other 4 |
//! | 15 | `browser` | 1 | [`BrowserFamily::wire_code`]: chrome 0, edge 1, firefox 2, safari 3, opera 4, samsung 5, ie 6, bot 7, tool 8, other 9 |
//! | 16 | `ip_prefix` | 0, 5 or 17 | by the flags' kind: nothing (none); or the prefix length (`u8`) and the network's 4 (IPv4) or 16 (IPv6) bytes in network order |
//!
//! Columns 1–15 are fixed-width (66 bytes per event), so the decoder checks that the body
//! can hold n events before it allocates any. Keeping each field's values together is what
//! lets zstd find the repetition (statuses, methods, devices, string indexes); see the
//! size test for what a typical event costs.
//!
//! # What the decoder rejects
//!
//! Every read is bound-checked; [`decode`] returns a [`WireError`] (whose message never
//! quotes the batch's texts) for: a missing magic, an unknown version, a body that does not
//! decompress or exceeds [`MAX_BODY_BYTES`], data that ends early or runs on after the last
//! column, a header that is not a [`BatchHeader`], a string that is not UTF-8, and per
//! event: a string index out of the table (or none where a value is required), a set
//! reserved flag bit or prefix kind 3, an unknown enum code, a status without its flag, an
//! index that disagrees with its flag, a page group without a page, a prefix longer than
//! [`MAX_IPV4_PREFIX`](crate::client::MAX_IPV4_PREFIX) /
//! [`MAX_IPV6_PREFIX`](crate::client::MAX_IPV6_PREFIX) or with a host bit set, `bot` not
//! exactly when `device` is bot and `browser` is bot or tool, a key id that is not a key
//! id, and a text that does not have the shape of its type (a page starts with `/` and has
//! no `?`, `#` or `;`; a page group is `(other)` or starts with `/`; a query value is 1 to
//! 64 characters without control characters; a referrer domain is `(none)`, `(invalid)` or
//! a lower-case host: see the `from_wire` constructors in [`crate::sanitize`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::classify::{BrowserFamily, DeviceClass};
use crate::client::IpPrefix;
use crate::event::{Event, Method};
use crate::pseudonym::Pseudonym;
use crate::sanitize::{Page, PageGroup, QueryParam, QueryValue, QueryValues, ReferrerDomain};

/// The first bytes of every batch.
pub const WIRE_MAGIC: [u8; 4] = *b"LVEB";
/// The format version this build writes and the only one it reads.
pub const WIRE_VERSION: u8 = 1;
/// The largest decompressed body [`decode`] accepts (256 MiB: about 3.7 million typical
/// events; it stops zip bombs, not honest batches).
pub const MAX_BODY_BYTES: usize = 256 << 20;
/// The string index that stands for "no value".
pub const NO_STRING: u32 = u32::MAX;

/// zstd level of [`encode`].
const ZSTD_LEVEL: i32 = 3;
/// The largest zstd window the decoder allocates (2^23 = 8 MiB; level 3 uses at most 2^21).
const WINDOW_LOG_MAX: u32 = 23;
/// Bytes of the fixed-width columns 1–15, per event.
const FIXED_EVENT_BYTES: usize = 8 + 16 + 4 + 1 + 1 + 2 + 8 + 6 * 4 + 1 + 1;

const FLAG_COOKIE: u8 = 1 << 0;
const FLAG_BOT: u8 = 1 << 1;
const FLAG_STATUS: u8 = 1 << 2;
const FLAG_PAGE: u8 = 1 << 3;
const FLAG_PAGE_GROUP: u8 = 1 << 4;
const PREFIX_SHIFT: u8 = 5;
const PREFIX_MASK: u8 = 0b11 << PREFIX_SHIFT;
const PREFIX_NONE: u8 = 0;
const PREFIX_V4: u8 = 1;
const PREFIX_V6: u8 = 2;
const FLAG_RESERVED: u8 = 1 << 7;

/// What a batch says besides its events: who sent it, for which partition, how far the
/// edge has read, and its line counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchHeader {
    /// The edge's host name.
    pub host: String,
    pub site: String,
    /// This batch's partition (`0..partitions`): every event's
    /// [`Pseudonym::partition`]`(partitions)` when the edge partitions by visitor. The codec
    /// does not check either value.
    pub partition: u32,
    pub partitions: u32,
    /// The edge's event-time watermark after this batch (UTC µs): it will publish no event
    /// older than this, except late ones (counted).
    pub watermark_micros: i64,
    /// true when the edge is stopping after draining its files (watermark = `i64::MAX` then).
    pub last: bool,
    /// Lines the edge read for this batch (counted once, in partition 0's message; 0
    /// elsewhere), parsed, and rejected per reason name.
    pub lines_read: u64,
    pub lines_parsed: u64,
    pub lines_rejected: BTreeMap<String, u64>,
    pub lines_late: u64,
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    pub header: BatchHeader,
    pub events: Vec<Event>,
}

/// Why bytes are not a batch. Messages name the part and the event number, never the
/// batch's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("not an event batch: it does not start with `LVEB`")]
    NotABatch,
    #[error("event batch version {0} is not supported (this build reads version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("event batch body does not decompress: {0}")]
    Decompress(String),
    #[error("event batch body is larger than {MAX_BODY_BYTES} bytes decompressed")]
    TooLarge,
    #[error("event batch is truncated: it ends inside the {0}")]
    Truncated(&'static str),
    #[error("event batch header is not a BatchHeader in JSON ({0} error at column {1})")]
    HeaderJson(&'static str, usize),
    #[error("event batch string {0} is not UTF-8")]
    NotUtf8(u32),
    #[error("event batch event {event}: {field}: {problem}")]
    BadEvent {
        /// The event's position in the batch.
        event: u32,
        field: &'static str,
        problem: &'static str,
    },
    #[error("event batch has {0} bytes after its last event")]
    TrailingBytes(usize),
}

/// Encodes one batch (see the [module](self) documentation for the format).
///
/// Deterministic: the same header and events give the same bytes with the same zstd
/// library. An edge keeps batches far below [`MAX_BODY_BYTES`] (and its transport's
/// message limit): 66 to 83 bytes per event before compression plus the distinct texts,
/// about 13 bytes per event after it (the sample logs).
///
/// The events must keep the invariants [`Event`] documents, as every event a
/// [`Pseudonymizer`](crate::Pseudonymizer) makes does (`bot` exactly when `device` is
/// bot, a page group only with a page, …): [`decode`] rejects a batch with an event that
/// breaks one. Debug builds assert them here.
///
/// # Panics
///
/// When the body would be larger than [`MAX_BODY_BYTES`] ([`decode`] would refuse it): a
/// bug of the caller, which must split its batches.
pub fn encode(header: &BatchHeader, events: &[Event]) -> Vec<u8> {
    debug_assert!(
        events.iter().all(|e| {
            let bot_browser = matches!(e.browser, BrowserFamily::Bot | BrowserFamily::Tool);
            e.bot == (e.device == DeviceClass::Bot)
                && e.bot == bot_browser
                && (e.page.is_some() || e.page_group.is_none())
        }),
        "an event breaks the Event invariants (bot/device/browser, page group without page)"
    );
    let json = serde_json::to_vec(header).expect("a BatchHeader serialises");
    let mut table = StringTable::default();
    let key_ids: Vec<u32> = events.iter().map(|e| table.index(&e.key_id)).collect();
    let pages: Vec<u32> = events
        .iter()
        .map(|e| table.optional(e.page.as_ref().map(Page::as_str)))
        .collect();
    let groups: Vec<u32> = events
        .iter()
        .map(|e| table.optional(e.page_group.as_ref().map(PageGroup::as_str)))
        .collect();
    let query: Vec<Vec<u32>> = QueryParam::ALL
        .iter()
        .map(|&param| {
            events
                .iter()
                .map(|e| table.optional(e.query.get(param).map(QueryValue::as_str)))
                .collect()
        })
        .collect();
    let referrers: Vec<u32> = events
        .iter()
        .map(|e| table.index(e.referrer.as_str()))
        .collect();

    let n = events.len();
    let mut body = Vec::with_capacity(12 + json.len() + table.bytes + n * (FIXED_EVENT_BYTES + 17));
    put_len(&mut body, json.len());
    body.extend_from_slice(&json);
    put_len(&mut body, table.strings.len());
    for s in &table.strings {
        put_len(&mut body, s.len());
        body.extend_from_slice(s.as_bytes());
    }
    put_len(&mut body, n);
    for e in events {
        body.extend_from_slice(&e.utc_micros.to_le_bytes());
    }
    for e in events {
        body.extend_from_slice(e.visitor.as_bytes());
    }
    put_indexes(&mut body, &key_ids);
    body.extend(events.iter().map(flags));
    body.extend(events.iter().map(|e| e.method.wire_code()));
    for e in events {
        body.extend_from_slice(&e.status.unwrap_or(0).to_le_bytes());
    }
    for e in events {
        body.extend_from_slice(&e.bytes.to_le_bytes());
    }
    put_indexes(&mut body, &pages);
    put_indexes(&mut body, &groups);
    for column in &query {
        put_indexes(&mut body, column);
    }
    put_indexes(&mut body, &referrers);
    body.extend(events.iter().map(|e| e.device.wire_code()));
    body.extend(events.iter().map(|e| e.browser.wire_code()));
    for prefix in events.iter().filter_map(|e| e.ip_prefix) {
        body.push(prefix.prefix_len());
        match prefix.network() {
            IpAddr::V4(v4) => body.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => body.extend_from_slice(&v6.octets()),
        }
    }
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "event batch body of {} bytes is over the {MAX_BODY_BYTES}-byte limit: publish smaller batches",
        body.len()
    );

    let mut out = Vec::with_capacity(5 + body.len() / 4);
    out.extend_from_slice(&WIRE_MAGIC);
    out.push(WIRE_VERSION);
    out.extend_from_slice(&compress(&body));
    out
}

fn compress(body: &[u8]) -> Vec<u8> {
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 3");
    compressor
        .include_checksum(true)
        .expect("zstd checksum flag");
    compressor
        .compress(body)
        .expect("zstd compresses into a growable buffer")
}

/// The distinct strings of a batch, in order of first use.
#[derive(Default)]
struct StringTable<'a> {
    strings: Vec<&'a str>,
    index: HashMap<&'a str, u32, foldhash::fast::RandomState>,
    /// Bytes the table takes in the body.
    bytes: usize,
}

impl<'a> StringTable<'a> {
    fn index(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.strings.len())
            .ok()
            .filter(|&i| i != NO_STRING)
            .expect("fewer than 2^32 - 1 distinct strings in a batch");
        self.strings.push(s);
        self.index.insert(s, i);
        self.bytes += 4 + s.len();
        i
    }

    fn optional(&mut self, s: Option<&'a str>) -> u32 {
        s.map_or(NO_STRING, |s| self.index(s))
    }
}

fn put_len(body: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("a batch part under 4 GiB");
    body.extend_from_slice(&len.to_le_bytes());
}

fn put_indexes(body: &mut Vec<u8>, indexes: &[u32]) {
    for i in indexes {
        body.extend_from_slice(&i.to_le_bytes());
    }
}

fn flags(e: &Event) -> u8 {
    let kind = match e.ip_prefix.map(|p| p.network()) {
        None => PREFIX_NONE,
        Some(IpAddr::V4(_)) => PREFIX_V4,
        Some(IpAddr::V6(_)) => PREFIX_V6,
    };
    let bit = |set: bool, flag: u8| if set { flag } else { 0 };
    bit(e.cookie_visitor, FLAG_COOKIE)
        | bit(e.bot, FLAG_BOT)
        | bit(e.status.is_some(), FLAG_STATUS)
        | bit(e.page.is_some(), FLAG_PAGE)
        | bit(e.page_group.is_some(), FLAG_PAGE_GROUP)
        | kind << PREFIX_SHIFT
}

/// Decodes one batch (see the [module](self) documentation for the format and what is
/// rejected). Never panics.
pub fn decode(bytes: &[u8]) -> Result<EventBatch, WireError> {
    let Some((magic, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(WireError::NotABatch);
    };
    if *magic != WIRE_MAGIC {
        return Err(WireError::NotABatch);
    }
    let Some((&version, frame)) = rest.split_first() else {
        return Err(WireError::Truncated("version"));
    };
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let body = decompress(frame)?;
    decode_body(&body)
}

/// The body of a batch's zstd frame, at most [`MAX_BODY_BYTES`] (checked while it grows).
fn decompress(frame: &[u8]) -> Result<Vec<u8>, WireError> {
    let failed = |e: &std::io::Error| WireError::Decompress(e.to_string());
    if frame.is_empty() {
        return Err(WireError::Truncated("zstd frame"));
    }
    // The declared size, when the frame has one: a start size, or an early refusal.
    let declared = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .unwrap_or(0);
    if declared > MAX_BODY_BYTES as u64 {
        return Err(WireError::TooLarge);
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| failed(&e))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| failed(&e))?;
    // One byte over the declared size, so the last read sees EOF without growing the
    // buffer; at most 16 MiB up front, whatever a frame declares (then it grows as filled).
    let mut body = vec![0u8; (declared as usize + 1).clamp(4096, 16 << 20)];
    let mut filled = 0;
    loop {
        if filled == body.len() {
            if body.len() > MAX_BODY_BYTES {
                return Err(WireError::TooLarge);
            }
            let grown = body.len().saturating_mul(2).min(MAX_BODY_BYTES + 1);
            body.resize(grown, 0);
        }
        match decoder.read(&mut body[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(&e)),
        }
    }
    body.truncate(filled);
    Ok(body)
}

/// A bound-checked cursor over the body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let Some((taken, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(WireError::Truncated(what));
        };
        self.rest = rest;
        Ok(*taken)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// A `u32` count or length, as a `usize`.
    fn count(&mut self, what: &'static str) -> Result<usize, WireError> {
        self.u32(what).map(|n| n as usize)
    }
}

/// One fixed-width column: `W` bytes per event.
#[derive(Clone, Copy)]
struct Column<'a, const W: usize>(&'a [u8]);

impl<'a, const W: usize> Column<'a, W> {
    fn read(r: &mut Reader<'a>, n: usize, what: &'static str) -> Result<Self, WireError> {
        r.take(n * W, what).map(Self)
    }

    /// Event `i`'s value (`i` < n, which [`Column::read`] checked the column holds).
    fn get(self, i: usize) -> [u8; W] {
        let mut value = [0u8; W];
        value.copy_from_slice(&self.0[i * W..(i + 1) * W]);
        value
    }
}

impl Column<'_, 4> {
    fn u32(self, i: usize) -> u32 {
        u32::from_le_bytes(self.get(i))
    }
}

/// The columns of a body, after its string table and event count.
struct Columns<'a> {
    utc_micros: Column<'a, 8>,
    visitor: Column<'a, 16>,
    key_id: Column<'a, 4>,
    flags: Column<'a, 1>,
    method: Column<'a, 1>,
    status: Column<'a, 2>,
    bytes: Column<'a, 8>,
    page: Column<'a, 4>,
    page_group: Column<'a, 4>,
    query: [Column<'a, 4>; 3],
    referrer: Column<'a, 4>,
    device: Column<'a, 1>,
    browser: Column<'a, 1>,
}

impl<'a> Columns<'a> {
    fn read(r: &mut Reader<'a>, n: usize) -> Result<Self, WireError> {
        Ok(Self {
            utc_micros: Column::read(r, n, "utc_micros column")?,
            visitor: Column::read(r, n, "visitor column")?,
            key_id: Column::read(r, n, "key_id column")?,
            flags: Column::read(r, n, "flags column")?,
            method: Column::read(r, n, "method column")?,
            status: Column::read(r, n, "status column")?,
            bytes: Column::read(r, n, "bytes column")?,
            page: Column::read(r, n, "page column")?,
            page_group: Column::read(r, n, "page_group column")?,
            query: [
                Column::read(r, n, "utm_source column")?,
                Column::read(r, n, "utm_medium column")?,
                Column::read(r, n, "utm_campaign column")?,
            ],
            referrer: Column::read(r, n, "referrer column")?,
            device: Column::read(r, n, "device column")?,
            browser: Column::read(r, n, "browser column")?,
        })
    }
}

const QUERY_FIELDS: [&str; 3] = ["utm_source", "utm_medium", "utm_campaign"];

fn decode_body(body: &[u8]) -> Result<EventBatch, WireError> {
    let mut r = Reader { rest: body };
    let header_len = r.count("header length")?;
    let json = r.take(header_len, "header")?;
    let header: BatchHeader = serde_json::from_slice(json).map_err(|e| {
        let category = match e.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "end of input",
        };
        WireError::HeaderJson(category, e.column())
    })?;

    let count = r.count("string table")?;
    // Every string takes at least its 4-byte length: no allocation beyond the body's size.
    if count > r.rest.len() / 4 {
        return Err(WireError::Truncated("string table"));
    }
    let mut strings: Vec<Arc<str>> = Vec::with_capacity(count);
    for i in 0..count {
        let len = r.count("string table")?;
        let bytes = r.take(len, "string table")?;
        let text = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8(i as u32))?;
        strings.push(Arc::from(text));
    }

    let n = r.count("event count")?;
    if n > r.rest.len() / FIXED_EVENT_BYTES {
        return Err(WireError::Truncated("events"));
    }
    let columns = Columns::read(&mut r, n)?;
    let mut events = Vec::with_capacity(n);
    for i in 0..n {
        events.push(decode_event(&columns, i, &strings, &mut r)?);
    }
    if !r.rest.is_empty() {
        return Err(WireError::TrailingBytes(r.rest.len()));
    }
    Ok(EventBatch { header, events })
}

/// Event `i` of `columns`; its `ip_prefix` is read from `prefixes`, the last column.
fn decode_event(
    columns: &Columns<'_>,
    i: usize,
    strings: &[Arc<str>],
    prefixes: &mut Reader<'_>,
) -> Result<Event, WireError> {
    let bad = |field: &'static str, problem: &'static str| WireError::BadEvent {
        event: i as u32,
        field,
        problem,
    };
    let text = |index: u32, field: &'static str| -> Result<Option<Arc<str>>, WireError> {
        if index == NO_STRING {
            return Ok(None);
        }
        strings
            .get(index as usize)
            .map(|s| Some(Arc::clone(s)))
            .ok_or_else(|| bad(field, "string index out of the table"))
    };
    let required =
        |index: u32, field: &'static str| text(index, field)?.ok_or_else(|| bad(field, "missing"));

    let [flags] = columns.flags.get(i);
    if flags & FLAG_RESERVED != 0 {
        return Err(bad("flags", "reserved bit set"));
    }
    let bot = flags & FLAG_BOT != 0;

    let key_id = required(columns.key_id.u32(i), "key_id")?;
    let key_id_ok = !key_id.is_empty()
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !key_id_ok {
        return Err(bad("key_id", "not a key id"));
    }

    let [method] = columns.method.get(i);
    let method = Method::from_wire_code(method).ok_or_else(|| bad("method", "unknown code"))?;
    let status = u16::from_le_bytes(columns.status.get(i));
    let status = match (flags & FLAG_STATUS != 0, status) {
        (true, s) => Some(s),
        (false, 0) => None,
        (false, _) => return Err(bad("status", "set without its flag")),
    };

    let page = text(columns.page.u32(i), "page")?;
    let page = match (flags & FLAG_PAGE != 0, page) {
        (true, Some(p)) => Some(Page::from_wire(p).ok_or_else(|| bad("page", "not a page"))?),
        (false, None) => None,
        _ => return Err(bad("page", "disagrees with its flag")),
    };
    let page_group = text(columns.page_group.u32(i), "page_group")?;
    let page_group = match (flags & FLAG_PAGE_GROUP != 0, page_group) {
        (true, Some(g)) => {
            Some(PageGroup::from_wire(g).ok_or_else(|| bad("page_group", "not a page group"))?)
        }
        (false, None) => None,
        _ => return Err(bad("page_group", "disagrees with its flag")),
    };
    if page_group.is_some() && page.is_none() {
        return Err(bad("page_group", "without a page"));
    }

    let mut query: [Option<QueryValue>; 3] = Default::default();
    for ((slot, column), field) in query.iter_mut().zip(columns.query).zip(QUERY_FIELDS) {
        if let Some(value) = text(column.u32(i), field)? {
            *slot =
                Some(QueryValue::from_wire(value).ok_or_else(|| bad(field, "not a query value"))?);
        }
    }

    let referrer = required(columns.referrer.u32(i), "referrer")?;
    let referrer = ReferrerDomain::from_wire(referrer)
        .ok_or_else(|| bad("referrer", "not a referrer domain"))?;

    let [device] = columns.device.get(i);
    let device =
        DeviceClass::from_wire_code(device).ok_or_else(|| bad("device", "unknown code"))?;
    let [browser] = columns.browser.get(i);
    let browser =
        BrowserFamily::from_wire_code(browser).ok_or_else(|| bad("browser", "unknown code"))?;
    let bot_browser = matches!(browser, BrowserFamily::Bot | BrowserFamily::Tool);
    if bot != (device == DeviceClass::Bot) || bot != bot_browser {
        return Err(bad(
            "bot",
            "not exactly when device is bot and browser is bot or tool",
        ));
    }

    let ip_prefix = match (flags & PREFIX_MASK) >> PREFIX_SHIFT {
        PREFIX_NONE => None,
        PREFIX_V4 => {
            let [len] = prefixes.array("ip_prefix column")?;
            let network = Ipv4Addr::from(prefixes.array::<4>("ip_prefix column")?);
            Some(
                IpPrefix::from_wire(IpAddr::V4(network), len)
                    .ok_or_else(|| bad("ip_prefix", "longer than /24 or host bits set"))?,
            )
        }
        PREFIX_V6 => {
            let [len] = prefixes.array("ip_prefix column")?;
            let network = Ipv6Addr::from(prefixes.array::<16>("ip_prefix column")?);
            Some(
                IpPrefix::from_wire(IpAddr::V6(network), len)
                    .ok_or_else(|| bad("ip_prefix", "longer than /64 or host bits set"))?,
            )
        }
        _ => return Err(bad("flags", "ip prefix kind 3")),
    };

    Ok(Event {
        utc_micros: i64::from_le_bytes(columns.utc_micros.get(i)),
        visitor: Pseudonym::from_wire(columns.visitor.get(i)),
        key_id,
        cookie_visitor: flags & FLAG_COOKIE != 0,
        method,
        status,
        bytes: u64::from_le_bytes(columns.bytes.get(i)),
        page,
        page_group,
        query: QueryValues::from_wire(query),
        referrer,
        ip_prefix,
        bot,
        device,
        browser,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pseudonymizer;
    use crate::client::ClientPolicy;
    use crate::sanitize::{QueryAllow, RouteTemplates, SanitizePolicy};
    use logveil_parse::{LineParser, LogFormat};
    use proptest::prelude::*;
    use std::sync::LazyLock;

    fn pseudonymizer() -> Pseudonymizer {
        crate::test_keys::pseudonymizer("t-1", "ab")
    }

    /// The sample pipeline's sanitising: every utm parameter, its route templates.
    fn sanitize_policy() -> SanitizePolicy {
        let templates = [
            "/{lang}/{city}/hotels/{id}",
            "/{lang}/{city}/hotels",
            "/{lang}/{city}/temples",
            "/{lang}/{city}/food",
            "/{lang}/guides/{guide}",
            "/{lang}/{city}/{topic}",
            "/account/*",
            "/api/*",
            "/search",
            "/en",
            "/ja",
            "/",
        ];
        SanitizePolicy {
            query_allow: QueryParam::ALL.into_iter().collect::<QueryAllow>(),
            routes: RouteTemplates::parse(&templates.map(str::to_owned)).unwrap(),
        }
    }

    /// Events from log lines, through the real path (parse, then pseudonymize).
    fn events(format: &str, lines: &[&str]) -> Vec<Event> {
        let p = pseudonymizer();
        let parser = LineParser::new(
            LogFormat::from_name_or_format(format).unwrap(),
            Some("jt_uid"),
        );
        let (clients, sanitize) = (ClientPolicy::default(), sanitize_policy());
        lines
            .iter()
            .map(|l| {
                let record = parser.parse(l.as_bytes()).unwrap();
                p.event(&record, &clients, &sanitize).unwrap()
            })
            .collect()
    }

    const MIXED: &[&str] = &[
        r#"192.0.2.77 - - [01/Nov/2026:09:00:00 +0900] "GET /en/tokyo/hotels/0a1b2c3d4e5f60718293a4b5c6d7e8f9?utm_source=News&utm_medium=Email&utm_campaign=Autumn+2026&email=a%40b.example HTTP/1.1" 200 5120 "https://www.Google.com/search?q=x" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36" "jt_uid=u-1111aaaa2222bbbb""#,
        r#"2001:db8:3f08:100b:1461:f218:c9d7:d8bd - - [01/Nov/2026:09:00:01 +0900] "POST http://h.example/api/x?q=1 HTTP/1.1" 302 - "-" "Googlebot/2.1 (+http://www.google.com/bot.html)" "-""#,
        r#"host.example - - [01/Nov/2026:09:00:02 +0900] "GET /u/alice@example.com HTTP/1.1" 404 0 "bad referer" "curl/8.5.0" "jt_uid=""#,
        r#"192.0.2.78 - - [01/Nov/2026:09:00:03 +0900] "-" 400 - "-" "-" "-""#,
        r#"[::ffff:198.51.100.9]:443 - - [01/Nov/2026:09:00:04 +0900] "HEAD /ja/ HTTP/1.1" 304 0 "http://[2001:db8::1]:80/" "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1" "jt_uid=u-1111aaaa2222bbbb""#,
        r#"192.0.2.77 - - [01/Nov/2026:09:00:05 +0900] "OPTIONS * HTTP/1.1" 200 0 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36" "jt_uid=u-1111aaaa2222bbbb""#,
    ];

    /// A format without `%s`: events without a status.
    const NO_STATUS: &str = r#"%h %l %u %t "%r" %b "%{Referer}i" "%{User-agent}i""#;
    const NO_STATUS_LINES: &[&str] = &[
        r#"203.0.113.9 - - [01/Nov/2026:09:00:06 +0900] "GET /en/kyoto/temples?utm_campaign=x HTTP/1.1" 123 "-" "Mozilla/5.0 (Android 14; Mobile; rv:131.0) Gecko/131.0 Firefox/131.0""#,
    ];

    fn mixed_events() -> Vec<Event> {
        let mut all = events("combined_cookie", MIXED);
        all.extend(events(NO_STATUS, NO_STATUS_LINES));
        all
    }

    fn header() -> BatchHeader {
        BatchHeader {
            host: "edge-1".to_owned(),
            site: "example".to_owned(),
            partition: 1,
            partitions: 4,
            watermark_micros: 1_793_491_205_000_000,
            last: false,
            lines_read: 9,
            lines_parsed: 7,
            lines_rejected: BTreeMap::from([
                ("bad_status".to_owned(), 1),
                ("too_long".to_owned(), 1),
            ]),
            lines_late: 2,
        }
    }

    /// The decompressed body of a batch.
    fn body_of(batch: &[u8]) -> Vec<u8> {
        assert_eq!(batch[..5], [b'L', b'V', b'E', b'B', WIRE_VERSION]);
        decompress(&batch[5..]).unwrap()
    }

    /// A batch around a body (as the encoder frames it).
    fn rewrap(body: &[u8]) -> Vec<u8> {
        let mut out = WIRE_MAGIC.to_vec();
        out.push(WIRE_VERSION);
        out.extend_from_slice(&compress(body));
        out
    }

    #[test]
    fn real_events_round_trip() {
        let events = mixed_events();
        // The lines cover what the format must carry.
        assert!(
            events
                .iter()
                .any(|e| e.ip_prefix.is_some_and(|p| p.network().is_ipv6()))
        );
        assert!(
            events
                .iter()
                .any(|e| e.ip_prefix.is_some_and(|p| p.network().is_ipv4()))
        );
        assert!(events.iter().any(|e| e.ip_prefix.is_none()));
        assert!(events.iter().any(|e| e.status.is_none()));
        assert!(events.iter().any(|e| e.page.is_none()));
        assert!(
            events
                .iter()
                .any(|e| e.bot && e.browser == BrowserFamily::Bot)
        );
        assert!(
            events
                .iter()
                .any(|e| e.bot && e.browser == BrowserFamily::Tool)
        );
        assert!(
            events.iter().any(|e| e.cookie_visitor) && events.iter().any(|e| !e.cookie_visitor)
        );
        assert!(
            QueryParam::ALL
                .iter()
                .all(|&p| events[0].query.get(p).is_some())
        );
        assert!(events.iter().any(|e| e.method == Method::Head));
        assert!(events.iter().any(|e| e.method == Method::Other));
        for header in [header(), BatchHeader::default()] {
            let batch = encode(&header, &events);
            let decoded = decode(&batch).unwrap();
            assert_eq!(
                decoded,
                EventBatch {
                    header,
                    events: events.clone()
                }
            );
            // One Arc per distinct text in a batch.
            assert!(Arc::ptr_eq(
                &decoded.events[0].key_id,
                &decoded.events[1].key_id
            ));
            assert!(Arc::ptr_eq(
                &decoded.events[1].referrer.shared(),
                &decoded.events[3].referrer.shared(),
            ));
        }
    }

    #[test]
    fn empty_and_final_batches_round_trip() {
        let last = BatchHeader {
            watermark_micros: i64::MAX,
            last: true,
            ..header()
        };
        let batch = encode(&last, &[]);
        assert_eq!(
            decode(&batch).unwrap(),
            EventBatch {
                header: last,
                events: Vec::new()
            }
        );
        assert!(batch.len() < 200, "{}", batch.len());
    }

    #[test]
    fn wire_codes_are_pinned() {
        use BrowserFamily as B;
        use DeviceClass as D;
        let methods = [
            (Method::Get, 0),
            (Method::Head, 1),
            (Method::Post, 2),
            (Method::Other, 3),
        ];
        for (m, code) in methods {
            assert_eq!(
                (m.wire_code(), Method::from_wire_code(code)),
                (code, Some(m))
            );
        }
        let devices = [
            (D::Desktop, 0),
            (D::Mobile, 1),
            (D::Tablet, 2),
            (D::Bot, 3),
            (D::Other, 4),
        ];
        for (d, code) in devices {
            assert_eq!((d.wire_code(), D::from_wire_code(code)), (code, Some(d)));
        }
        assert_eq!(devices.len(), D::ALL.len());
        let browsers = [
            (B::Chrome, 0),
            (B::Edge, 1),
            (B::Firefox, 2),
            (B::Safari, 3),
            (B::Opera, 4),
            (B::Samsung, 5),
            (B::Ie, 6),
            (B::Bot, 7),
            (B::Tool, 8),
            (B::Other, 9),
        ];
        for (b, code) in browsers {
            assert_eq!((b.wire_code(), B::from_wire_code(code)), (code, Some(b)));
        }
        assert_eq!(browsers.len(), B::ALL.len());
        for code in 4..=u8::MAX {
            assert_eq!(Method::from_wire_code(code), None);
        }
        for code in 5..=u8::MAX {
            assert_eq!(D::from_wire_code(code), None);
        }
        for code in 10..=u8::MAX {
            assert_eq!(B::from_wire_code(code), None);
        }
    }

    fn hex(bytes: &[u8]) -> String {
        crate::keys::hex(bytes)
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `tests/golden/wire-v{WIRE_VERSION}.hex`: `body` lines (the decompressed body of
    /// the golden batch) and `batch` lines (the whole batch as first encoded).
    fn golden_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/wire-v{WIRE_VERSION}.hex"))
    }

    fn golden_part(text: &str, key: &str) -> Vec<u8> {
        unhex(
            &text
                .lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .collect::<String>(),
        )
    }

    #[test]
    fn golden_batch_pins_the_format() {
        use std::fmt::Write as _;
        // If this fails, the encoding changed: never rewrite this version's golden file;
        // bump WIRE_VERSION (old batches then fail with UnsupportedVersion) and create
        // the new version's file with UPDATE_GOLDEN=1.
        let mut events = mixed_events();
        // The golden batch was encoded before an IP-literal referrer became `(ip)` (#15):
        // it pins the events as first encoded, which decode must always read (edges of the
        // older version may still send them).
        for event in &mut events {
            if event.referrer.as_str() == crate::sanitize::IP_REFERRER {
                event.referrer = crate::sanitize::ReferrerDomain::from_wire("[2001:db8::1]".into())
                    .expect("a host as the older sanitiser kept it");
            }
        }
        let batch = encode(&header(), &events);
        let path = golden_path();
        if !path.exists() && std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            let mut text = format!(
                "# logveil event batch, wire version {WIRE_VERSION}: the golden batch of wire.rs\n\
                 # (`body`: the decompressed body encode must write; `batch`: the batch as first\n\
                 # encoded, which decode must always read). Never edit: bump WIRE_VERSION instead.\n"
            );
            for (key, bytes) in [("body", body_of(&batch)), ("batch", batch.clone())] {
                for chunk in bytes.chunks(32) {
                    writeln!(text, "{key} {}", hex(chunk)).unwrap();
                }
            }
            std::fs::write(&path, text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (UPDATE_GOLDEN=1 creates it for a new version)",
                path.display()
            )
        });
        let body = golden_part(&golden, "body");
        assert_eq!(
            hex(&body_of(&batch)),
            hex(&body),
            "the body encode writes changed"
        );
        assert_eq!(batch[..5], *b"LVEB\x01");
        // The stored batch (compressed by whichever zstd wrote it) still decodes to it.
        let stored = golden_part(&golden, "batch");
        assert_eq!(
            decode(&stored).unwrap(),
            EventBatch {
                header: header(),
                events
            }
        );
    }

    fn sample_lines() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-logs");
        ["access-2026-11-01.log", "access-2026-11-02.log"]
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(dir.join(f))
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// 10 000 events of the bundled sample logs (the daily pipeline's format and routes),
    /// through the cached path the edge uses.
    fn typical_events(lines: &[String]) -> Vec<Event> {
        let p = pseudonymizer();
        let parser = LineParser::new(
            LogFormat::from_name_or_format("combined_cookie").unwrap(),
            Some("jt_uid"),
        );
        let (clients, sanitize) = (ClientPolicy::default(), sanitize_policy());
        let records: Vec<_> = lines
            .iter()
            .filter_map(|l| parser.parse(l.as_bytes()).ok())
            .collect();
        let mut cache = crate::pseudonym::EventCache::new(&p);
        records
            .iter()
            .filter_map(|r| p.event_cached(r, &clients, &sanitize, &mut cache))
            .take(10_000)
            .collect()
    }

    #[test]
    fn typical_events_are_small() {
        let lines = sample_lines();
        let events = typical_events(&lines);
        assert_eq!(events.len(), 10_000);
        let batch = encode(&header(), &events);
        let body = body_of(&batch);
        eprintln!(
            "10 000 sample events: {} bytes ({:.1} bytes/event; body {} bytes, {:.1}/event)",
            batch.len(),
            batch.len() as f64 / 1e4,
            body.len(),
            body.len() as f64 / 1e4,
        );
        // Measured 13.3 bytes per event (72.3 before compression); the bound leaves 25 %.
        assert!(batch.len() <= SIZE_BOUND_10K, "{} bytes", batch.len());
        assert_eq!(decode(&batch).unwrap().events, events);
    }

    const SIZE_BOUND_10K: usize = 165_000;

    #[test]
    fn batches_hold_no_raw_identifier() {
        let lines = sample_lines();
        let lines = &lines[..10_000];
        let events = typical_events(lines);
        let body = body_of(&encode(&header(), &events));
        let mut raw: Vec<String> = Vec::new();
        for line in lines {
            // The client address, each cookie value and the user agent.
            raw.push(line.split(' ').next().unwrap().to_owned());
            let quoted: Vec<&str> = line.split('"').collect();
            if let Some(agent) = quoted.get(quoted.len().saturating_sub(4)) {
                raw.push((*agent).to_owned());
            }
            if let Some(cookies) = quoted.get(quoted.len().saturating_sub(2)) {
                for pair in cookies.split("; ") {
                    if let Some((_, value)) = pair.split_once('=') {
                        raw.push(value.to_owned());
                    }
                }
            }
        }
        raw.retain(|r| r.len() >= 6);
        raw.sort();
        raw.dedup();
        assert!(
            raw.iter().any(|r| r.starts_with("u-")),
            "cookie values collected"
        );
        assert!(
            raw.iter().any(|r| r.starts_with("2001:db8:")),
            "IPv6 clients collected"
        );
        assert!(
            raw.iter().any(|r| r.starts_with("Mozilla/5.0")),
            "user agents collected"
        );
        let finder = |r: &String| memchr::memmem::find(&body, r.as_bytes()).is_some();
        let found: Vec<&String> = raw.iter().filter(|r| finder(r)).collect();
        assert!(
            found.is_empty(),
            "raw identifiers in the batch body: {found:?}"
        );
    }

    /// The body of a one-event batch (an IPv4 client) and where its columns start.
    fn one_event_body() -> (Vec<u8>, usize) {
        let events = events("combined_cookie", &MIXED[..1]);
        let body = body_of(&encode(&header(), &events));
        let mut r = Reader { rest: &body };
        let json = r.count("header length").unwrap();
        r.take(json, "header").unwrap();
        for _ in 0..r.count("strings").unwrap() {
            let len = r.count("string").unwrap();
            r.take(len, "string").unwrap();
        }
        assert_eq!(r.count("event count").unwrap(), 1);
        let start = body.len() - r.rest.len();
        (body, start)
    }

    // Offsets of a one-event body's columns from the first column.
    const AT_KEY_ID: usize = 24;
    const AT_FLAGS: usize = 28;
    const AT_METHOD: usize = 29;
    const AT_STATUS: usize = 30;
    const AT_PAGE: usize = 40;
    const AT_PAGE_GROUP: usize = 44;
    const AT_UTM_SOURCE: usize = 48;
    const AT_REFERRER: usize = 60;
    const AT_DEVICE: usize = 64;
    const AT_BROWSER: usize = 65;
    const AT_PREFIX: usize = 66;

    fn mutated(edit: impl FnOnce(&mut Vec<u8>, usize)) -> Result<EventBatch, WireError> {
        let (mut body, start) = one_event_body();
        edit(&mut body, start);
        decode(&rewrap(&body))
    }

    fn bad_event(field: &'static str) -> impl Fn(Result<EventBatch, WireError>) {
        move |r| match r {
            Err(WireError::BadEvent {
                event: 0, field: f, ..
            }) if f == field => {}
            other => panic!("expected a bad {field}, got {other:?}"),
        }
    }

    fn put_u32_at(body: &mut [u8], at: usize, value: u32) {
        body[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn one_event_layout_is_as_documented() {
        let (body, start) = one_event_body();
        let cols = &body[start..];
        assert_eq!(cols.len(), FIXED_EVENT_BYTES + 5);
        let e = &events("combined_cookie", &MIXED[..1])[0];
        assert_eq!(cols[..8], e.utc_micros.to_le_bytes());
        assert_eq!(cols[8..24], *e.visitor.as_bytes());
        assert_eq!(
            cols[AT_FLAGS],
            FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | FLAG_PAGE_GROUP | PREFIX_V4 << 5
        );
        assert_eq!(cols[AT_METHOD], 0);
        assert_eq!(cols[AT_STATUS..AT_STATUS + 2], 200u16.to_le_bytes());
        assert_eq!(cols[AT_DEVICE], DeviceClass::Desktop.wire_code());
        assert_eq!(cols[AT_BROWSER], BrowserFamily::Chrome.wire_code());
        assert_eq!(cols[AT_PREFIX..], [24, 192, 0, 2, 0]);
        assert!(mutated(|_, _| {}).is_ok());
    }

    #[test]
    fn malformed_events_are_rejected() {
        let at = |offset: usize, byte: u8| move |b: &mut Vec<u8>, s: usize| b[s + offset] = byte;
        bad_event("flags")(mutated(at(
            AT_FLAGS,
            FLAG_COOKIE
                | FLAG_STATUS
                | FLAG_PAGE
                | FLAG_PAGE_GROUP
                | PREFIX_V4 << 5
                | FLAG_RESERVED,
        )));
        bad_event("flags")(mutated(at(
            AT_FLAGS,
            FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | FLAG_PAGE_GROUP | 3 << 5,
        )));
        bad_event("method")(mutated(at(AT_METHOD, 4)));
        bad_event("device")(mutated(at(AT_DEVICE, 5)));
        bad_event("browser")(mutated(at(AT_BROWSER, 10)));
        bad_event("bot")(mutated(at(AT_DEVICE, DeviceClass::Bot.wire_code())));
        bad_event("bot")(mutated(at(AT_BROWSER, BrowserFamily::Tool.wire_code())));
        bad_event("bot")(mutated(at(
            AT_FLAGS,
            FLAG_BOT | FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | FLAG_PAGE_GROUP | PREFIX_V4 << 5,
        )));
        // Status: without its flag it must be 0.
        bad_event("status")(mutated(at(
            AT_FLAGS,
            FLAG_COOKIE | FLAG_PAGE | FLAG_PAGE_GROUP | PREFIX_V4 << 5,
        )));
        // String indexes: out of the table, missing where required, disagreeing with a flag.
        bad_event("page")(mutated(|b, s| put_u32_at(b, s + AT_PAGE, 1000)));
        bad_event("page")(mutated(|b, s| put_u32_at(b, s + AT_PAGE, NO_STRING)));
        bad_event("key_id")(mutated(|b, s| put_u32_at(b, s + AT_KEY_ID, NO_STRING)));
        bad_event("page_group")(mutated(|b, s| put_u32_at(b, s + AT_PAGE_GROUP, NO_STRING)));
        bad_event("referrer")(mutated(|b, s| put_u32_at(b, s + AT_REFERRER, NO_STRING)));
        bad_event("utm_source")(mutated(|b, s| put_u32_at(b, s + AT_UTM_SOURCE, 7)));
        bad_event("page_group")(mutated(at(
            AT_FLAGS,
            FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | PREFIX_V4 << 5,
        )));
        // A page group without a page.
        bad_event("page_group")(mutated(|b, s| {
            b[s + AT_FLAGS] = FLAG_STATUS | FLAG_PAGE_GROUP;
            put_u32_at(b, s + AT_PAGE, NO_STRING);
            b.truncate(b.len() - 5);
        }));
        // Strings of the wrong shape: the key id (entry 0) as a page; a page as key id.
        bad_event("page")(mutated(|b, s| put_u32_at(b, s + AT_PAGE, 0)));
        bad_event("key_id")(mutated(|b, s| {
            let page = b[s + AT_PAGE..s + AT_PAGE + 4].to_vec();
            b[s + AT_KEY_ID..s + AT_KEY_ID + 4].copy_from_slice(&page);
        }));
        bad_event("referrer")(mutated(|b, s| {
            let page = b[s + AT_PAGE..s + AT_PAGE + 4].to_vec();
            b[s + AT_REFERRER..s + AT_REFERRER + 4].copy_from_slice(&page);
        }));
        // Prefixes: over the cap, host bits, IPv6 over /64.
        bad_event("ip_prefix")(mutated(at(AT_PREFIX, 25)));
        bad_event("ip_prefix")(mutated(at(AT_PREFIX + 4, 1)));
        bad_event("ip_prefix")(mutated(|b, s| {
            b[s + AT_FLAGS] =
                FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | FLAG_PAGE_GROUP | PREFIX_V6 << 5;
            b.truncate(b.len() - 5);
            b.push(65);
            b.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        }));
        let v6 = mutated(|b, s| {
            b[s + AT_FLAGS] =
                FLAG_COOKIE | FLAG_STATUS | FLAG_PAGE | FLAG_PAGE_GROUP | PREFIX_V6 << 5;
            b.truncate(b.len() - 5);
            b.push(64);
            b.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        });
        assert_eq!(
            v6.unwrap().events[0].ip_prefix.unwrap().to_string(),
            "2001:db8::/64"
        );
        // The prefix column ends early, or bytes follow it.
        assert_eq!(
            mutated(|b, _| b.truncate(b.len() - 1)),
            Err(WireError::Truncated("ip_prefix column"))
        );
        assert_eq!(mutated(|b, _| b.push(0)), Err(WireError::TrailingBytes(1)));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let (body, start) = one_event_body();
        // Every strict prefix of the body is truncated (or its header JSON is).
        for len in 0..body.len() {
            let err = decode(&rewrap(&body[..len])).unwrap_err();
            assert!(
                matches!(err, WireError::Truncated(_) | WireError::HeaderJson(..)),
                "{len}: {err:?}"
            );
        }
        // An event count the body cannot hold is refused before anything is allocated.
        let mut huge = body.clone();
        put_u32_at(&mut huge, start - 4, u32::MAX);
        assert_eq!(decode(&rewrap(&huge)), Err(WireError::Truncated("events")));
        // A string table longer than the body.
        let json = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        let mut strings = body.clone();
        put_u32_at(&mut strings, 4 + json, u32::MAX - 1);
        assert_eq!(
            decode(&rewrap(&strings)),
            Err(WireError::Truncated("string table"))
        );
        // A string that is not UTF-8 (the first string's first byte).
        let mut latin1 = body.clone();
        latin1[4 + json + 8] = 0xff;
        assert_eq!(decode(&rewrap(&latin1)), Err(WireError::NotUtf8(0)));
        // A header that is not a BatchHeader; the message quotes none of it.
        let mut bad_header = body.clone();
        bad_header[4..4 + json].copy_from_slice(&vec![b' '; json]);
        let err = decode(&rewrap(&bad_header)).unwrap_err();
        assert!(
            matches!(err, WireError::HeaderJson("end of input", _)),
            "{err:?}"
        );
        let mut typed = body.clone();
        let text = String::from_utf8(typed[4..4 + json].to_vec()).unwrap();
        let text = text.replace(r#""host":"edge-1""#, r#""host":12345678"#);
        typed.splice(4..4 + json, text.bytes());
        put_u32_at(&mut typed, 0, text.len() as u32);
        let err = decode(&rewrap(&typed)).unwrap_err();
        assert!(matches!(err, WireError::HeaderJson("data", _)), "{err:?}");
        assert!(!err.to_string().contains("12345678"), "{err}");
    }

    #[test]
    fn framing_is_checked() {
        let batch = encode(&header(), &mixed_events());
        assert_eq!(decode(b""), Err(WireError::NotABatch));
        assert_eq!(decode(b"LVE"), Err(WireError::NotABatch));
        assert_eq!(decode(b"PAR1\x01"), Err(WireError::NotABatch));
        assert_eq!(decode(b"LVEB"), Err(WireError::Truncated("version")));
        assert_eq!(decode(b"LVEB\x01"), Err(WireError::Truncated("zstd frame")));
        let mut v2 = batch.clone();
        v2[4] = 2;
        assert_eq!(decode(&v2), Err(WireError::UnsupportedVersion(2)));
        v2[4] = 0;
        assert_eq!(decode(&v2), Err(WireError::UnsupportedVersion(0)));
        // Every strict prefix of the batch is refused.
        for len in 5..batch.len() {
            assert!(decode(&batch[..len]).is_err(), "{len}");
        }
        // A corrupted frame fails its checksum (or earlier).
        let mut flipped = batch.clone();
        let last = flipped.len() - 6;
        flipped[last] ^= 0x55;
        assert!(matches!(decode(&flipped), Err(WireError::Decompress(_))));
        let mut garbage = batch.clone();
        garbage.extend_from_slice(b"junk");
        assert!(decode(&garbage).is_err());
    }

    #[test]
    fn zip_bombs_are_refused() {
        // Declared in the frame header: refused before decompressing.
        let zeros = vec![0u8; MAX_BODY_BYTES + 1];
        let declared = rewrap(&zeros);
        assert!(declared.len() < 64 << 10, "{}", declared.len());
        assert_eq!(decode(&declared), Err(WireError::TooLarge));
        // Not declared (a streamed frame): refused as it grows past the limit.
        let mut streamed = WIRE_MAGIC.to_vec();
        streamed.push(WIRE_VERSION);
        let mut encoder = zstd::stream::write::Encoder::new(streamed, 3).unwrap();
        std::io::Write::write_all(&mut encoder, &zeros).unwrap();
        let streamed = encoder.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&streamed[5..]),
            Ok(None)
        ));
        assert_eq!(decode(&streamed), Err(WireError::TooLarge));
        // Exactly the limit decompresses (and then is not a batch body).
        assert!(matches!(
            decode(&rewrap(&zeros[..MAX_BODY_BYTES])),
            Err(WireError::HeaderJson(..))
        ));
    }

    #[test]
    fn errors_never_quote_the_payload() {
        let (body, _) = one_event_body();
        let mut cases = vec![decode(&rewrap(&body[..body.len() / 2])).unwrap_err()];
        let mut texts = body.clone();
        // Replace the referrer's index by the page's: its text is not a domain.
        let start = body.len() - FIXED_EVENT_BYTES - 5;
        let page = texts[start + AT_PAGE..start + AT_PAGE + 4].to_vec();
        texts[start + AT_REFERRER..start + AT_REFERRER + 4].copy_from_slice(&page);
        cases.push(decode(&rewrap(&texts)).unwrap_err());
        for err in cases {
            let message = err.to_string();
            assert!(
                !["/en/tokyo", "google", "news", "t-1"]
                    .iter()
                    .any(|t| message.contains(t)),
                "{message}"
            );
        }
    }

    /// A valid batch of varied events, for the mutation properties.
    static VALID: LazyLock<Vec<u8>> = LazyLock::new(|| encode(&header(), &mixed_events()));
    static VALID_BODY: LazyLock<Vec<u8>> = LazyLock::new(|| body_of(&VALID));

    /// Whatever decodes re-encodes to a batch that decodes to the same.
    fn check(bytes: &[u8]) {
        if let Ok(batch) = decode(bytes) {
            let again = encode(&batch.header, &batch.events);
            assert_eq!(decode(&again).as_ref(), Ok(&batch));
        }
    }

    fn mutate(
        mut bytes: Vec<u8>,
        edits: &[(prop::sample::Index, u8)],
        cut: Option<prop::sample::Index>,
    ) -> Vec<u8> {
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        bytes
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            check(&bytes);
            let mut framed = b"LVEB\x01".to_vec();
            framed.extend_from_slice(&bytes);
            check(&framed);
            check(&rewrap(&bytes));
        }

        #[test]
        fn mutated_batches_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::weighted(0.2, any::<prop::sample::Index>()),
        ) {
            check(&mutate(VALID.clone(), &edits, cut));
            check(&rewrap(&mutate(VALID_BODY.clone(), &edits, cut)));
        }
    }
}
