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
//! 1. **E-mail**: an `@` after the first byte (a leading `@` is a scoped package:
//!    `/node_modules/@scope/pkg`, `/@scope/pkg`), the full-width `＠`, the spellings
//!    `(at)`, `[at]`, `{at}` and Mailman's `--at--` (any case), or ` at ` followed by a
//!    domain (`example.com`, `example dot com`). Text holding `%25` is decoded twice,
//!    so `alice%2540example.com` is an address too.
//! 2. **Hex token**: 16 or more hex digits in a row (`[0-9A-Fa-f]`): session ids
//!    (Tomcat's `JSESSIONID` is 32), hashes, reset tokens; also any 16+ digit number.
//! 3. **UUID**: `8-4-4-4-12` hex digits joined by `-`.
//! 4. **Phone or card number**: see `PhoneRun` — a leading `+` and 8–15 digits, a
//!    leading `0` and 10–11 digits, or (without `.` separators) 3+ groups of 9+ digits
//!    or 13+ digits, with `-`, `.`, space, `(`, `)` between them and full-width digits
//!    alike (`03-1234-5678`, `090.1234.5678`, `+81 3 1234 5678`, `4111 1111 1111 1111`).
//!    Every card number (13–19 digits) is such a run, so no Luhn check is made. Versions
//!    and dotted dates (`xdotool-2.20110530`) stay: no leading `0` or `+`, and `.`; an
//!    ISO date has 8 digits and stays, ids of up to 12 digits without a leading `0` stay,
//!    but a date with a time (`2026-11-01-1230`) does not.
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
//! 6. **IP literal**: an IPv6 address or a dotted quad (see `ip_literal_in`):
//!    `203.0.113.77`, `2001:db8::1`, `::ffff:198.51.100.7`.
//! 7. **Announced token**: 12+ letters and digits (with a digit, or both cases) after a
//!    `sess`, `session`, `sid`, `token`, `auth` or `otp` part: `sess_QdYyoyNqpKbABPSfkcNRKBRm`
//!    (see `announced_token`; found by the generated leak corpus of `tests/it/leaks.rs`).
//!
//! Every rule is a single pass over the bytes with a few counters: no regular expression
//! and no allocation (except to decode text holding `%25` a second time). A segment
//! shorter than 16 bytes without `%` is first screened by counting digits, dots and
//! colons (most path segments end there).
//! The rules are pinned by the table tests below (real paths from the corpora in
//! `../shared/corpora`) and by `crates/logveil/tests/it/sanitize.rs`, which runs them
//! over every path of those corpora.

use crate::client::parse_ip;
use std::fmt;
use std::sync::{Arc, LazyLock};

/// Replaces a path segment or query value that looks like personal data.
pub const REDACTED: &str = ":redacted";

/// Hex digits in a row that make a hex token.
const HEX_TOKEN_MIN: u32 = 16;
/// The fewest digits a phone number has (E.164 with a `+`); the short-segment screen
/// checks no further below it.
const PHONE_MIN_DIGITS: u32 = 8;
/// Length of a base64-like run before it can be a token.
const TOKEN_MIN: u32 = 20;
/// The UUID's hex groups.
const UUID_GROUPS: [u32; 5] = [8, 4, 4, 4, 12];

/// Bytes of `raw`, percent-decoded on the fly (`%4` or `%zz` stay as they are); with
/// `plus_is_space`, `+` is a space (query strings, `application/x-www-form-urlencoded`).
#[derive(Clone)]
struct Decoded<'a> {
    raw: &'a [u8],
    plus_is_space: bool,
}

/// Lengths only: `raw` is logged text (paths, query values) that may hold identifiers.
impl fmt::Debug for Decoded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decoded({} bytes)", self.raw.len())
    }
}

impl fmt::Debug for IpRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpRun({} bytes)", self.len)
    }
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
    /// Letters and digits of the current part, its digits, and `pieces` when it began.
    part_alnum: u32,
    part_digits: u32,
    part_pieces_from: u32,
    /// Some part is a token by itself (`sess_<token>`).
    token_part: bool,
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
        self.part_alnum += 1;
        self.part_digits += u32::from(class == CharClass::Digit);
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
        // A part that is a token by itself: 20+ letters and digits, mixing both, as
        // dense in pieces as the run rule asks (`sess_k3i9v0d9o5e4b8p3g2c1`).
        let part_pieces = self.pieces - self.part_pieces_from;
        self.token_part |= self.part_alnum >= TOKEN_MIN
            && self.part_digits > 0
            && self.part_digits < self.part_alnum
            && 3 * part_pieces > self.part_alnum;
        self.part_pieces_from = self.pieces;
        self.part_alnum = 0;
        self.part_digits = 0;
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
        let token = self.token_part
            || (self.len >= TOKEN_MIN
                && !(self.separators > 0 && self.has_word)
                && 3 * self.pieces > self.alnum);
        *self = Self::default();
        token
    }
}

/// The IP-literal rule's buffer: the current run of `[0-9A-Fa-f:.]`. Its `Debug` shows
/// only the length: the buffer holds address bytes.
struct IpRun {
    buf: [u8; IP_RUN_MAX],
    len: usize,
    /// The run is longer than any address.
    overflow: bool,
}

/// The longest run an IP literal is looked for in (`::ffff:255.255.255.255` and a full
/// IPv6 address fit; longer runs are hex tokens anyway).
const IP_RUN_MAX: usize = 48;

impl Default for IpRun {
    fn default() -> Self {
        Self {
            buf: [0; IP_RUN_MAX],
            len: 0,
            overflow: false,
        }
    }
}

impl IpRun {
    /// Feeds one byte; returns whether a run just ended holding an IP literal.
    fn feed(&mut self, b: u8) -> bool {
        if b.is_ascii_hexdigit() || b == b':' || b == b'.' {
            if self.len < IP_RUN_MAX {
                self.buf[self.len] = b;
                self.len += 1;
            } else {
                self.overflow = true;
            }
            return false;
        }
        self.end()
    }

    fn end(&mut self) -> bool {
        let hit = !self.overflow && self.len >= 7 && ip_literal_in(&self.buf[..self.len]);
        self.len = 0;
        self.overflow = false;
        hit
    }
}

/// Whether a run of `[0-9A-Fa-f:.]` is or holds an IP literal: an IPv6 address (at least
/// two groups and six characters, so `std::v` or `12:30` are none) possibly ending in
/// dots (`…::1.html`), or four decimal numbers 0–255 joined by single dots that are not
/// part of a longer dotted number (`1.2.3.4.5` is a version, `2.20110530` a date).
fn ip_literal_in(run: &[u8]) -> bool {
    let trimmed = run.trim_ascii_end();
    let trimmed = {
        let end = trimmed
            .iter()
            .rposition(|b| *b != b'.')
            .map_or(0, |i| i + 1);
        &trimmed[..end]
    };
    let colons = memchr::memchr_iter(b':', trimmed).count();
    if colons >= 2 && trimmed.len() >= 6 {
        let groups = trimmed
            .split(|b| *b == b':')
            .filter(|g| !g.is_empty())
            .count();
        if groups >= 2
            && std::str::from_utf8(trimmed)
                .ok()
                .is_some_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
        {
            return true;
        }
    }
    // Dotted quads: maximal runs of digits and dots between the other bytes.
    trimmed
        .split(|b| !(b.is_ascii_digit() || *b == b'.'))
        .any(|part| {
            let part = {
                let start = part.iter().position(|b| *b != b'.').unwrap_or(part.len());
                let end = part
                    .iter()
                    .rposition(|b| *b != b'.')
                    .map_or(start, |i| i + 1);
                &part[start..end]
            };
            let mut n = 0;
            part.split(|b| *b == b'.').all(|num| {
                n += 1;
                (1..=3).contains(&num.len())
                    && std::str::from_utf8(num)
                        .ok()
                        .and_then(|t| t.parse::<u16>().ok())
                        .is_some_and(|v| v <= 255)
            }) && n == 4
        })
}

/// The phone-number rule's counters over one run of digits (ASCII or full-width
/// `０`–`９`) joined by separators (`-`, `.`, space, `(`, `)`, full-width `－`), with a
/// leading `+` (or `＋`).
///
/// A run is a phone or card number when it has
/// 1. a leading `+` and 8–15 digits (E.164: `+81 90 1234 5678`, `+819012345678`), or
/// 2. a leading `0` and 10 or 11 digits (Japanese: `090-1234-5678`, `03-1234-5678`,
///    `0312345678`, `090.1234.5678`, `０９０－１２３４－５６７８`), or
/// 3. no `.` separator, and 3 or more groups holding 9 or more digits (`555-123-4567`,
///    `4111 1111 1111 1111`, a date with a time `2026-11-01-1230`), or
/// 4. no `.` separator, and 13 or more digits (card numbers, `378282246310005`).
///
/// So versions and dotted dates (`xdotool-2.20110530`, `xdotool-2.20101014.3063`: no
/// leading `0` or `+`, and `.`-separated), dates (`2026-11-01`, `20261101`: 8 digits),
/// and numeric ids of up to 12 digits that do not start with `0` (`/item/1234567890`)
/// are none. Up to two separators may follow each other (`(03) 1234-5678`).
#[derive(Debug, Default)]
struct PhoneRun {
    digits: u32,
    groups: u32,
    first: u8,
    plus: bool,
    /// A `+` was just seen: the run that starts next is E.164.
    plus_pending: bool,
    dot: bool,
    seps: u8,
    /// Bytes of a full-width character seen so far (`EF`, `EF BC`).
    wide: u8,
}

impl PhoneRun {
    /// Feeds one byte; returns whether a run just ended as a phone or card number.
    fn feed(&mut self, b: u8) -> bool {
        let c = match (self.wide, b) {
            (0, 0xEF) => {
                self.wide = 1;
                return false;
            }
            (1, 0xBC) => {
                self.wide = 2;
                return false;
            }
            (2, 0x90..=0x99) => b'0' + (b - 0x90),
            (2, 0x8B) => b'+',
            (2, 0x8D) => b'-',
            (1 | 2, _) => 0,
            (_, b) => b,
        };
        self.wide = 0;
        match c {
            b'0'..=b'9' => {
                if self.digits == 0 {
                    self.first = c;
                    self.groups = 1;
                    self.plus = self.plus_pending;
                } else if self.seps > 0 {
                    self.groups += 1;
                }
                self.plus_pending = false;
                self.digits += 1;
                self.seps = 0;
                false
            }
            b'+' => {
                let hit = self.end();
                self.plus_pending = true;
                hit
            }
            b'-' | b'.' | b' ' | b'(' | b')' => {
                if self.digits == 0 {
                    // Before the first digit: `(03)`, `+ 81`.
                    return false;
                }
                self.seps += 1;
                self.dot |= c == b'.';
                if self.seps > 2 { self.end() } else { false }
            }
            _ => self.end(),
        }
    }

    fn end(&mut self) -> bool {
        let d = self.digits;
        let hit = d > 0
            && ((self.plus && (8..=15).contains(&d))
                || (!self.plus && self.first == b'0' && (10..=11).contains(&d))
                || (!self.dot && self.groups >= 3 && d >= 9)
                || (!self.dot && d >= 13));
        *self = Self::default();
        hit
    }
}

/// All rules' counters, fed one decoded byte at a time.
#[derive(Debug, Default)]
struct Detector {
    hit: bool,
    /// Bytes fed so far (saturating).
    pos: u32,
    ip: IpRun,
    hex_run: u32,
    /// UUID groups matched so far (0–4).
    uuid_groups: usize,
    phone: PhoneRun,
    /// The last 8 bytes, ASCII lower-cased, the latest in the low byte.
    window: u64,
    /// After ` at `: the spelled-out e-mail's domain so far.
    spelled: Option<SpelledAt>,
    token: TokenRun,
}

/// The domain after a spelled-out ` at ` (`alice at example.com`, `… at example dot com`).
#[derive(Debug, Default, Clone, Copy)]
struct SpelledAt {
    chars: u32,
    spaces: u32,
    dot: bool,
}

/// Whether the low bytes of `window` are `suffix`.
fn ends_with(window: u64, suffix: &[u8]) -> bool {
    let n = suffix.len();
    let want = suffix.iter().fold(0u64, |w, &b| w << 8 | u64::from(b));
    let mask = if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    window & mask == want
}

impl Detector {
    /// The e-mail rule: `@` (not as the first byte: `@scope` is a scoped package), the
    /// full-width `＠`, and the spellings `(at)`, `[at]`, `{at}`, `--at--` (any case) and
    /// ` at ` followed by a domain (`example.com`, `example dot com`).
    fn feed_email(&mut self, b: u8) {
        let lower = b.to_ascii_lowercase();
        self.window = self.window << 8 | u64::from(lower);
        if b == b'@' && self.pos > 0 {
            self.hit = true;
        }
        let w = self.window;
        if ends_with(w, "＠".as_bytes())
            || ends_with(w, b"(at)")
            || ends_with(w, b"[at]")
            || ends_with(w, b"{at}")
            || ends_with(w, b"--at--")
        {
            self.hit = true;
        }
        if let Some(mut at) = self.spelled.take() {
            let keep = match lower {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                    self.hit |= at.dot;
                    at.chars += 1;
                    true
                }
                b'.' => {
                    at.dot = at.chars > 0 && at.spaces == 0;
                    true
                }
                b' ' => {
                    self.hit |= at.chars > 0 && ends_with(w, b" dot ");
                    at.spaces += 1;
                    at.dot = false;
                    at.spaces < 2
                }
                _ => false,
            };
            if keep {
                self.spelled = Some(at);
            }
        }
        if ends_with(w, b" at ") {
            self.spelled = Some(SpelledAt::default());
        }
        self.pos = self.pos.saturating_add(1);
    }

    fn feed(&mut self, b: u8) {
        self.feed_email(b);
        if b.is_ascii_hexdigit() {
            self.hex_run += 1;
            self.hit |= self.hex_run >= HEX_TOKEN_MIN;
        } else {
            self.end_hex_group(b == b'-');
            self.hex_run = 0;
        }
        self.hit |= self.phone.feed(b);
        self.hit |= self.token.feed(b);
        self.hit |= self.ip.feed(b);
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
        self.hit | self.token.end_run() | self.ip.end() | self.phone.end()
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

/// Words that announce a session or access token in the part after them
/// (`sess_k3i9…`, `token-…`, `sid=…`): see [`announced_token`].
const TOKEN_WORDS: &[&[u8]] = &[
    b"sess",
    b"session",
    b"sessid",
    b"sessionid",
    b"sid",
    b"token",
    b"tok",
    b"auth",
    b"otp",
];

/// Rule 7 (**announced token**): a part that follows one of [`TOKEN_WORDS`] (parts are
/// separated by `_ - . = :`, case ignored) and is 12 or more ASCII letters and digits with
/// a digit or both cases is a token, whatever its shape: `/reset/sess_QdYyoyNqpKbABPSfkcNRKBRm`.
/// Rule 5 catches most random tokens by shape alone; this catches the ones it misses when
/// the site names them. `session-timeout-settings` stays (no digit, one case).
fn announced_token(raw: &[u8]) -> bool {
    let mut parts = raw.split(|b| matches!(b, b'_' | b'-' | b'.' | b'=' | b':'));
    let mut announced = false;
    for part in &mut parts {
        if announced
            && part.len() >= 12
            && part.iter().all(u8::is_ascii_alphanumeric)
            && (part.iter().any(u8::is_ascii_digit)
                || (part.iter().any(u8::is_ascii_lowercase)
                    && part.iter().any(u8::is_ascii_uppercase)))
        {
            return true;
        }
        announced = TOKEN_WORDS.iter().any(|w| part.eq_ignore_ascii_case(w));
    }
    false
}

/// Whether a path segment or query value, as logged, looks like personal data.
fn raw_looks_personal(raw: &[u8], plus_is_space: bool) -> bool {
    if raw.len() >= 15 && announced_token(raw) {
        return true;
    }
    if raw.len() < HEX_TOKEN_MIN as usize {
        // Too short for a hex token, UUID or base64-like token (decoding only shortens):
        // without `%`, only an `@` after the first byte, `--` (of `--at--`), `(`, `[`,
        // `{`, a space (`(at)`, ` at `), a non-ASCII byte (`＠`), 9 digits or an IP
        // literal's 3 dots or 2 colons can make it personal.
        let (mut digits, mut dashes, mut prev_dash) = (0u32, false, false);
        let (mut dots, mut colons) = (0u32, 0u32);
        for (i, &b) in raw.iter().enumerate() {
            match b {
                b'@' if i > 0 => return true,
                b'%' => return decoded_looks_personal(raw, plus_is_space),
                b'(' | b'[' | b'{' | b' ' | 0x80.. => {
                    return decoded_looks_personal(raw, plus_is_space);
                }
                b'+' if plus_is_space => return decoded_looks_personal(raw, plus_is_space),
                b'0'..=b'9' => digits += 1,
                b'.' => dots += 1,
                b':' => colons += 1,
                _ => {}
            }
            dashes |= prev_dash && b == b'-';
            prev_dash = b == b'-';
        }
        if digits < PHONE_MIN_DIGITS && !dashes && dots < 3 && colons < 2 {
            return false;
        }
    }
    decoded_looks_personal(raw, plus_is_space)
}

/// [`looks_personal`] on `raw` percent-decoded — twice when it holds `%25` (an encoded
/// `%`: `alice%2540example.com`).
fn decoded_looks_personal(raw: &[u8], plus_is_space: bool) -> bool {
    if memchr::memmem::find(raw, b"%25").is_some() {
        let once: Vec<u8> = Decoded { raw, plus_is_space }.collect();
        return looks_personal(Decoded {
            raw: &once,
            plus_is_space: false,
        });
    }
    looks_personal(Decoded { raw, plus_is_space })
}

/// A whole free-text field (a request line, a Referer, a user agent, a dead-lettered
/// line's quoted field) with every piece that [looks personal](looks_personal) replaced
/// by [`REDACTED`]: the field is cut into pieces at `/ ? & ; # = ,` (kept as they are),
/// and each piece is tested as a path segment is, on its percent-decoded text (twice for
/// `%25`); a personal piece loses only its personal words when that is enough. `GET /u/alice%2540example.com HTTP/1.1` becomes `GET /u/:redacted HTTP/1.1`;
/// `Mozilla/5.0 (X11; tel 090-1234-5678) Gecko` becomes `Mozilla/5.0 (X11; tel :redacted
/// Gecko`; `tel +81 3 1234 5678; x` becomes `:redacted; x`.
/// Borrowed when nothing looks personal.
pub fn redact_free_text(text: &str) -> std::borrow::Cow<'_, str> {
    let is_cut = |b: &u8| matches!(b, b'/' | b'?' | b'&' | b';' | b'#' | b'=' | b',');
    let bytes = text.as_bytes();
    if !bytes
        .split(is_cut)
        .any(|piece| raw_looks_personal(piece, false))
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    // Cuts are ASCII: every piece is whole characters.
    for end in bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| is_cut(b))
        .map(|(i, _)| i)
        .chain([bytes.len()])
    {
        redact_piece(&text[start..end], &mut out);
        out.push_str(text.get(end..=end).unwrap_or_default());
        start = end + 1;
    }
    std::borrow::Cow::Owned(out)
}

/// One piece of [`redact_free_text`] onto `out`: as it is when it does not look personal;
/// else with only its personal words (white-space delimited) replaced, when that is
/// enough (`alice(at)example.com HTTP` → `:redacted HTTP`); else whole, but for the white
/// space around it (a spaced phone number, `alice at example.com`).
fn redact_piece(piece: &str, out: &mut String) {
    let personal = |t: &str| raw_looks_personal(t.as_bytes(), false);
    if !personal(piece) {
        out.push_str(piece);
        return;
    }
    let mut narrowed = String::with_capacity(piece.len());
    let mut word = 0;
    // White space is ASCII: every word is whole characters.
    for (i, b) in piece.bytes().enumerate().chain([(piece.len(), b' ')]) {
        if b.is_ascii_whitespace() {
            let w = &piece[word..i];
            narrowed.push_str(if personal(w) { REDACTED } else { w });
            narrowed.push_str(piece.get(i..=i).unwrap_or_default());
            word = i + 1;
        }
    }
    if !personal(&narrowed) {
        out.push_str(&narrowed);
        return;
    }
    let lead = piece.len() - piece.trim_ascii_start().len();
    let inner = piece.trim_ascii();
    out.push_str(&piece[..lead]);
    out.push_str(REDACTED);
    out.push_str(&piece[lead + inner.len()..]);
}

/// The most bytes of a page kept before [`PAGE_CUT_MARKER`]: a longer sanitised page is
/// cut at the last character boundary at or before it.
pub const PAGE_MAX_BYTES: usize = 1024;
/// Appended to a page cut to [`PAGE_MAX_BYTES`]: a segment of its own, so the cut-off
/// segment before it is judged alone. Servers log non-ASCII request bytes escaped
/// (`\xE2`) and browsers send them percent-encoded, so a logged path does not end in a
/// raw `…(cut)` segment; one that did would be counted as cut and kept as it is.
pub const PAGE_CUT_MARKER: &str = "/\u{2026}(cut)";

/// A sanitised page cut to at most [`PAGE_MAX_BYTES`] bytes plus [`PAGE_CUT_MARKER`].
/// The cut-off segment is judged again on its own (a prefix of a kept segment can look
/// personal: `1.2.3.4.5` → `1.2.3.4`) and dropped if it does. Idempotent: a page already
/// cut (ends with the marker, within the bound) is left as it is.
fn cut_page(text: std::borrow::Cow<'_, str>) -> std::borrow::Cow<'_, str> {
    if text.len() <= PAGE_MAX_BYTES
        || (text.len() <= PAGE_MAX_BYTES + PAGE_CUT_MARKER.len() && text.ends_with(PAGE_CUT_MARKER))
    {
        return text;
    }
    let mut end = PAGE_MAX_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = &text[..end];
    if let Some(slash) = memchr::memrchr(b'/', kept.as_bytes())
        && raw_looks_personal(&kept.as_bytes()[slash + 1..], false)
    {
        kept = &kept[..slash];
    }
    let mut out = String::with_capacity(kept.len() + PAGE_CUT_MARKER.len());
    out.push_str(kept);
    out.push_str(PAGE_CUT_MARKER);
    std::borrow::Cow::Owned(out)
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
    /// When nothing needs redacting, the only allocation is the page's own text. A page
    /// longer than [`PAGE_MAX_BYTES`] is cut on a character boundary and ends with
    /// [`PAGE_CUT_MARKER`] ([`Page::is_cut`]).
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
            return Self(Arc::from(cut_page(String::from_utf8_lossy(path))));
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
        Self(Arc::from(cut_page(String::from_utf8_lossy(&out))))
    }

    /// Whether the page was cut to [`PAGE_MAX_BYTES`] (it ends with [`PAGE_CUT_MARKER`]).
    pub fn is_cut(&self) -> bool {
        self.0.ends_with(PAGE_CUT_MARKER)
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
        // Decoded twice (`%2540`); a value still holding an escape after that is
        // redacted, so no value that comes out decodes any further.
        let twice: Vec<u8>;
        let decoded = if memchr::memchr(b'%', decoded).is_some() {
            twice = Decoded {
                raw: decoded,
                plus_is_space: false,
            }
            .collect();
            if memchr::memchr(b'%', &twice).is_some_and(|_| {
                Decoded {
                    raw: &twice,
                    plus_is_space: false,
                }
                .count()
                    != twice.len()
            }) {
                return Some(Self(Arc::from(REDACTED)));
            }
            twice.trim_ascii()
        } else {
            decoded
        };
        if decoded.is_empty() {
            return None;
        }
        // A `+` logged unencoded may still be a phone number's (`+819012345678`).
        let plus_kept = memchr::memchr(b'+', raw).is_some()
            && looks_personal(Decoded {
                raw,
                plus_is_space: false,
            });
        if plus_kept || announced_token(decoded) || looks_personal(decoded.iter().copied()) {
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
/// Label for a Referer whose host is an IP literal (`http://203.0.113.9/`,
/// `http://[2001:db8::1]:8080/`): the address itself is never kept.
pub const IP_REFERRER: &str = "(ip)";

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
            // A host that [`LineIdentifiers`] redacted starts with the marker's `:`.
            let skip = if host_port.starts_with(REDACTED.as_bytes()) {
                REDACTED.len()
            } else {
                0
            };
            memchr::memchr(b':', &host_port[skip..]).map_or(host_port, |i| &host_port[..skip + i])
        };
        let bracketed = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]"));
        let ip_literal = match bracketed {
            Some(inner) => inner == REDACTED.as_bytes() || parse_ip(inner).is_some(),
            // A bare IPv6 host (no brackets) was cut at its first `:` above.
            None => parse_ip(host).is_some() || parse_ip(host_port).is_some(),
        } || host
            // An address inside a name (`203.0.113.9.nip.io`) is one too.
            .split(|b| !(b.is_ascii_hexdigit() || matches!(b, b':' | b'.')))
            .any(|run| run.len() >= 7 && ip_literal_in(run));
        if ip_literal {
            return Self(Arc::from(IP_REFERRER));
        }
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
        let shaped = [NO_REFERRER, INVALID_REFERRER, IP_REFERRER].contains(&&*text)
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

/// The line's own identifiers — its client address(es) and visitor cookie — found in its
/// other free-text fields (path, query, Referer) and replaced there by [`REDACTED`].
///
/// The forms are **generated from the parsed address**, not recognised by a pattern:
///
/// - IPv4 `203.0.113.77`: dotted, with `-` or `_` (`203-0-113-77`, `203_0_113_77`) and
///   IPv4-mapped (`::ffff:203.0.113.77`);
/// - IPv6 `2001:db8::1`: compressed (RFC 5952), expanded with and without leading zeros
///   (`2001:0db8:0000:0000:0000:0000:0000:0001`, `2001:db8:0:0:0:0:0:1`) and with `-` for
///   `:` (`2001-db8--1`, as ipv6-literal.net writes it); an IPv4-mapped address also in its
///   IPv4 forms. Brackets (`[2001:db8::1]`) need no form of their own.
/// - the visitor cookie value, when at least [`OWN_TOKEN_MIN`] bytes long, and a client
///   that is a host name rather than an address (NASA logs them) of that length, as a
///   whole token: not preceded or followed by an ASCII letter or digit.
///
/// The text is matched after percent-decoding (twice, so `%252E` is a `.` too) and ASCII
/// lower-casing, so `203%2E0%2E113%2E77` and `2001:DB8::1` are found; the logged bytes of
/// a match (its encoding included) become [`REDACTED`]. An address form does not match
/// where a digit continues its first or last number into another address (`1.2.3.45` is
/// not `1.2.3.4`, `2001:db8::10` not `2001:db8::1`); other neighbours do not matter
/// (`a2001:db8::1` and `2001:db8::1:5` are redacted: they contain it).
///
/// Cheap when nothing is there (most lines): without a `%`, a field is searched only for
/// the address's longest octet or group and for the cookie bytes (case-insensitive
/// `memchr`), and the forms are generated only after such a hit.
///
/// It holds borrowed raw bytes: its `Debug` prints only what kinds it holds, and it has
/// no way to give them back.
pub struct LineIdentifiers<'a> {
    addrs: [Option<std::net::IpAddr>; 2],
    /// Per address: the text every form of it contains (its longest octet or group).
    anchors: [Anchor; 2],
    /// The visitor cookie (percent-decoded) and a host-name client, ASCII lower-cased
    /// when needed for matching.
    tokens: [Option<std::borrow::Cow<'a, [u8]>>; 2],
}

/// Shortest cookie value (or host-name client) that is redacted as a token.
pub const OWN_TOKEN_MIN: usize = 8;

#[derive(Clone, Copy, Default)]
struct Anchor {
    text: [u8; 4],
    len: u8,
}

impl Anchor {
    fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    fn of(ip: std::net::IpAddr) -> Self {
        use std::io::Write as _;
        let mut best = Self::default();
        let mut consider = |args: std::fmt::Arguments<'_>| {
            let mut a = Self::default();
            let mut cursor = std::io::Cursor::new(&mut a.text[..]);
            if cursor.write_fmt(args).is_ok() {
                a.len = cursor.position() as u8;
                if a.len > best.len {
                    best = a;
                }
            }
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for o in v4.octets() {
                    consider(format_args!("{o}"));
                }
            }
            std::net::IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::of(std::net::IpAddr::V4(v4));
                }
                for g in v6.segments().into_iter().filter(|g| *g != 0) {
                    consider(format_args!("{g:x}"));
                }
            }
        }
        best
    }
}

impl fmt::Debug for LineIdentifiers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kinds only: the values are raw identifiers.
        f.debug_struct("LineIdentifiers")
            .field("addresses", &self.addrs.iter().flatten().count())
            .field("tokens", &self.tokens.iter().flatten().count())
            .finish()
    }
}

/// ASCII-case-insensitive search for `needle` (non-empty) in `hay`.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return false;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lo, up, &hay[..=last_start])
        .any(|i| hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

/// How a generated form may sit in the text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FormKind {
    /// An IPv4 form: not next to a digit.
    V4,
    /// An IPv6 form (or IPv4-mapped): not continued into another address.
    V6,
    /// A token: not next to an ASCII letter or digit.
    Token,
}

impl<'a> LineIdentifiers<'a> {
    /// From the raw client (peer) address, the client chosen behind trusted proxies (when
    /// it differs) and the visitor cookie value, all as logged.
    pub fn new(clients: [Option<&'a [u8]>; 2], cookie: Option<&'a [u8]>) -> Self {
        let mut addrs = [None; 2];
        let mut anchors = [Anchor::default(); 2];
        let mut host = None;
        for (i, client) in clients.into_iter().enumerate() {
            let Some(client) = client else { continue };
            match parse_ip(client) {
                Some(ip) if addrs[0] != Some(ip) => {
                    let anchor = Anchor::of(ip);
                    if anchor.len > 0 {
                        addrs[i] = Some(ip);
                        anchors[i] = anchor;
                    }
                }
                None if host.is_none() && client.len() >= OWN_TOKEN_MIN => {
                    host = Some(std::borrow::Cow::Borrowed(client));
                }
                Some(_) | None => {}
            }
        }
        let cookie = cookie.filter(|c| c.len() >= OWN_TOKEN_MIN).map(|c| {
            if memchr::memchr(b'%', c).is_some() {
                std::borrow::Cow::Owned(
                    Decoded {
                        raw: c,
                        plus_is_space: false,
                    }
                    .collect(),
                )
            } else {
                std::borrow::Cow::Borrowed(c)
            }
        });
        let cookie = cookie.filter(|c| c.len() >= OWN_TOKEN_MIN);
        Self {
            addrs,
            anchors,
            tokens: [cookie, host],
        }
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.addrs.iter().all(Option::is_none) && self.tokens.iter().all(Option::is_none)
    }

    /// Whether `text` may hold one of the identifiers (a cheap pre-check: `false` means
    /// it certainly does not).
    fn might_occur(&self, text: &[u8]) -> bool {
        memchr::memchr(b'%', text).is_some()
            || self
                .addrs
                .iter()
                .zip(&self.anchors)
                .any(|(a, anchor)| a.is_some() && contains_ci(text, anchor.as_bytes()))
            || self.tokens.iter().flatten().any(|t| contains_ci(text, t))
    }

    /// Every form to look for, ASCII lower-cased.
    fn forms(&self) -> Vec<(Vec<u8>, FormKind)> {
        use std::net::IpAddr;
        let mut forms: Vec<(Vec<u8>, FormKind)> = Vec::new();
        let v4_forms = |v4: std::net::Ipv4Addr, forms: &mut Vec<(Vec<u8>, FormKind)>| {
            let [a, b, c, d] = v4.octets();
            for sep in ['.', '-', '_'] {
                forms.push((
                    format!("{a}{sep}{b}{sep}{c}{sep}{d}").into_bytes(),
                    FormKind::V4,
                ));
            }
            forms.push((format!("::ffff:{v4}").into_bytes(), FormKind::V6));
        };
        for ip in self.addrs.iter().flatten() {
            match *ip {
                IpAddr::V4(v4) => v4_forms(v4, &mut forms),
                IpAddr::V6(v6) => {
                    if let Some(v4) = v6.to_ipv4_mapped() {
                        v4_forms(v4, &mut forms);
                        continue;
                    }
                    let g = v6.segments();
                    let compressed = v6.to_string();
                    forms.push((compressed.replace(':', "-").into_bytes(), FormKind::V6));
                    forms.push((compressed.into_bytes(), FormKind::V6));
                    let full: Vec<String> = g.iter().map(|g| format!("{g:04x}")).collect();
                    forms.push((full.join(":").into_bytes(), FormKind::V6));
                    let short: Vec<String> = g.iter().map(|g| format!("{g:x}")).collect();
                    forms.push((short.join(":").into_bytes(), FormKind::V6));
                }
            }
        }
        for token in self.tokens.iter().flatten() {
            forms.push((token.to_ascii_lowercase(), FormKind::Token));
        }
        forms.sort();
        forms.dedup();
        forms
    }

    /// `text` with every occurrence of the line's identifiers replaced by [`REDACTED`];
    /// `None` when there is none (the common case, found without allocating).
    pub fn redact(&self, text: &[u8]) -> Option<Vec<u8>> {
        if self.is_empty() || !self.might_occur(text) {
            return None;
        }
        // Decoded, lower-cased bytes with the logged span each came from; twice over.
        let mut decoded: Vec<(u8, usize, usize)> = decode_spans(text, |i| (i, i + 1));
        if decoded.iter().any(|(b, ..)| *b == b'%') {
            let once: Vec<u8> = decoded.iter().map(|(b, ..)| *b).collect();
            let spans: Vec<(usize, usize)> = decoded.iter().map(|(_, s, e)| (*s, *e)).collect();
            decoded = decode_spans(&once, |i| (spans[i].0, spans[i].1));
        }
        let hay: Vec<u8> = decoded
            .iter()
            .map(|(b, ..)| b.to_ascii_lowercase())
            .collect();
        let mut hits: Vec<(usize, usize)> = Vec::new();
        for (form, kind) in self.forms() {
            for start in memchr::memmem::find_iter(&hay, &form) {
                let end = start + form.len();
                if standalone(&hay, start, end, &form, kind) {
                    hits.push((start, end));
                }
            }
        }
        if hits.is_empty() {
            return None;
        }
        hits.sort_unstable();
        let mut out = Vec::with_capacity(text.len());
        let mut raw_pos = 0;
        let mut i = 0;
        while i < hits.len() {
            let (start, mut end) = hits[i];
            i += 1;
            while i < hits.len() && hits[i].0 <= end {
                end = end.max(hits[i].1);
                i += 1;
            }
            let (raw_start, raw_end) = (decoded[start].1, decoded[end - 1].2);
            out.extend_from_slice(&text[raw_pos..raw_start]);
            out.extend_from_slice(REDACTED.as_bytes());
            raw_pos = raw_end;
        }
        out.extend_from_slice(&text[raw_pos..]);
        Some(out)
    }
}

/// Percent-decodes `raw` (as [`Decoded`], without `+`), each byte with the logged span
/// `span(i)` of the input bytes it came from.
fn decode_spans(raw: &[u8], span: impl Fn(usize) -> (usize, usize)) -> Vec<(u8, usize, usize)> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex_value),
                raw.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push((h << 4 | l, span(i).0, span(i + 2).1));
            i += 3;
        } else {
            let (s, e) = span(i);
            out.push((raw[i], s, e));
            i += 1;
        }
    }
    out
}

/// Whether the match `hay[start..end]` of `form` stands alone (see [`FormKind`]).
fn standalone(hay: &[u8], start: usize, end: usize, form: &[u8], kind: FormKind) -> bool {
    let before = start.checked_sub(1).map(|i| hay[i]);
    let after = hay.get(end).copied();
    match kind {
        FormKind::Token => {
            !before.is_some_and(|b| b.is_ascii_alphanumeric())
                && !after.is_some_and(|b| b.is_ascii_alphanumeric())
        }
        FormKind::V4 => {
            !before.is_some_and(|b| b.is_ascii_digit())
                && !after.is_some_and(|b| b.is_ascii_digit())
        }
        FormKind::V6 => {
            // A hex digit next to an edge group shorter than 4 makes another address
            // (`2001:db8::1` in `2001:db8::10`); anything else next to it may be
            // another address around this one (`3:2001:db8::1`), redacted all the same.
            let lead = form.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let trail = form
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
            let continued_before = (1..4).contains(&lead) && hex(before);
            let continued_after = if form.contains(&b'.') {
                after.is_some_and(|b| b.is_ascii_digit())
            } else {
                (1..4).contains(&trail) && hex(after)
            };
            !continued_before && !continued_after
        }
    }
}

/// The bot definition now lives with the device and browser tables in [`crate::classify`].
pub use crate::classify::{BOT_MARKERS, is_bot};

/// Helpers for the tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    /// `raw` percent-decoded once (lenient, `+` kept).
    pub(crate) fn decode(raw: &[u8]) -> Vec<u8> {
        super::Decoded {
            raw,
            plus_is_space: false,
        }
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(target: &str) -> String {
        Page::from_target(target.as_bytes()).as_str().to_owned()
    }

    /// A long page is cut on a character boundary to the cap plus the marker, stays valid
    /// UTF-8 and decodable from the wire, and sanitising it again changes nothing.
    #[test]
    fn long_pages_are_cut_on_a_character_boundary() {
        // 5,000+ bytes of 1-, 2-, 3- and 4-byte characters, in segments, with a
        // personal-looking segment inside.
        let mut target = String::from("/shop");
        while target.len() < 5_000 {
            target.push_str("/aé東🦀-x");
            if target.len() % 7 == 0 {
                target.push_str("/alice@example.com");
            }
        }
        target.push_str("?utm_source=x");
        let page = Page::from_target(target.as_bytes());
        let text = page.as_str();
        assert!(page.is_cut(), "{text}");
        assert!(text.len() <= PAGE_MAX_BYTES + PAGE_CUT_MARKER.len());
        assert!(text.len() > PAGE_MAX_BYTES - 4 * "/aé東🦀-x".len());
        let kept = text.strip_suffix(PAGE_CUT_MARKER).unwrap();
        assert!(
            target.starts_with(kept) || kept.contains(REDACTED),
            "{kept}"
        );
        assert!(!kept.contains('\u{fffd}'), "cut inside a character: {kept}");
        assert!(!kept.contains("alice"), "{kept}");
        let again = Page::from_target(text.as_bytes());
        assert_eq!(again, page);
        assert!(Page::from_wire(page.shared()).is_some());
        // Short pages, and pages of exactly the cap, are not cut.
        let exact = format!("/{}", "ab/".repeat(PAGE_MAX_BYTES / 3));
        let exact = &exact[..PAGE_MAX_BYTES];
        let page = Page::from_target(exact.as_bytes());
        assert_eq!(page.as_str(), exact);
        assert!(!page.is_cut());
        assert!(!Page::from_target(b"/en/tokyo/hotels").is_cut());
        // A cut-off segment that looks personal only as a prefix is dropped.
        let ip_at_cut = format!("/{}/1.2.3.4.5", "z".repeat(PAGE_MAX_BYTES - 9));
        let page = Page::from_target(ip_at_cut.as_bytes());
        assert_eq!(
            page.as_str(),
            format!("/{}{PAGE_CUT_MARKER}", "z".repeat(PAGE_MAX_BYTES - 9))
        );
        assert_eq!(Page::from_target(page.as_str().as_bytes()), page);
    }

    /// The free-text rules on a whole field: only the pieces that look personal go, the
    /// cuts and the white space stay; nothing personal, nothing allocated.
    #[test]
    fn free_text_fields_lose_only_their_personal_pieces() {
        let cases = [
            (
                "GET /u/alice%2540example.com/m/alice(at)example.com HTTP/1.1",
                "GET /u/:redacted/m/:redacted HTTP/1.1",
            ),
            (
                "Mozilla/5.0 (X11; tel 090-1234-5678) Gecko/20100101",
                "Mozilla/5.0 (X11; tel :redacted Gecko/20100101",
            ),
            (
                "http://203.0.113.7/a, 2001:db8::1",
                "http://:redacted/a, :redacted",
            ),
            (
                "/node_modules/@scope/pkg/x.html",
                "/node_modules/@scope/pkg/x.html",
            ),
        ];
        for (text, expected) in cases {
            let out = redact_free_text(text);
            assert_eq!(out, expected, "{text}");
            assert_eq!(redact_free_text(&out), out, "idempotent: {text}");
            assert!(out.len() <= text.len().max(REDACTED.len()), "{text}");
        }
        assert!(matches!(
            redact_free_text("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            std::borrow::Cow::Borrowed(_)
        ));
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
        // not phone numbers: versions, dates, numeric ids (no leading 0 or +)
        "/item/1234567890",
        "/archive/20261101",
        "/files/pkg-2.20101014.3063.tar.gz",
        "/v/10.0.19041.1234",
        "/news/01.02.2026",
        // not IP literals: versions, times, C++ names, dates
        "/dl/app-1.2.3.4.5.zip",
        "/dl/app-1.2.3.zip",
        "/docs/std::vector",
        "/at/12:30:00",
        "/news/26.11.2026",
        "/v/10.256.1.1",
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
            // Session segments: a token part next to a word part.
            ("/reset/sess_k3i9v0d9o5e4b8p3g2c1", "/reset/:redacted"),
            ("/reset/session-k3i9v0d9o5e4b8p3g2c1m7", "/reset/:redacted"),
            ("/s/PHPSESSID_q8v3k1m0c7n2b5x4z9l6j3h1", "/s/:redacted"),
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
            // IP literals, either family, anywhere in a segment.
            ("/geo/203.0.113.77", "/geo/:redacted"),
            ("/geo/ip-203.0.113.77.json", "/geo/:redacted"),
            ("/geo/203%2E0%2E113%2E77", "/geo/:redacted"),
            ("/geo/2001:db8::1/x", "/geo/:redacted/x"),
            ("/geo/fe80::1", "/geo/:redacted"),
            ("/geo/%5B2001:DB8:0:0:0:0:0:1%5D", "/geo/:redacted"),
            ("/geo/::ffff:198.51.100.7", "/geo/:redacted"),
            // Card numbers (Luhn-valid or not: both are 13+ digit runs).
            ("/pay/4111111111111111", "/pay/:redacted"),
            ("/pay/4111%201111%201111%201111/ok", "/pay/:redacted/ok"),
            ("/pay/4111-1111-1111-1112", "/pay/:redacted"),
            // Phone numbers: Japanese and E.164, any separators, full-width digits.
            ("/callback/090-1234-5678", "/callback/:redacted"),
            ("/callback/090.1234.5678", "/callback/:redacted"),
            ("/callback/090%201234%205678", "/callback/:redacted"),
            ("/callback/09012345678", "/callback/:redacted"),
            ("/callback/0312345678", "/callback/:redacted"),
            ("/callback/+81%2090%201234%205678", "/callback/:redacted"),
            ("/callback/+81.90.1234.5678", "/callback/:redacted"),
            ("/callback/+819012345678", "/callback/:redacted"),
            ("/callback/tel:555-123-4567", "/callback/:redacted"),
            (
                "/callback/%EF%BC%90%EF%BC%99%EF%BC%90%EF%BC%8D%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%8D%EF%BC%95%EF%BC%96%EF%BC%97%EF%BC%98",
                "/callback/:redacted",
            ),
            ("/callback/０９０１２３４５６７８", "/callback/:redacted"),
            ("/pay/378282246310005", "/pay/:redacted"),
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
        // Phone: 3 groups of 9 digits, not 8; a leading 0 and 10 digits, not 9; a `+` and
        // 8 digits, not 7; 13 digits without a `.`.
        assert!(personal("123-456-789"));
        assert!(!personal("1234-5678"));
        assert!(!personal("2026-11-01"));
        assert!(!personal("1234.56789"));
        assert!(personal("0123456789"));
        assert!(!personal("012345678"));
        assert!(!personal("123456789012"));
        assert!(personal("1234567890123"));
        assert!(!personal("1.234567890123"));
        assert!(personal("+12345678"));
        assert!(!personal("+1234567"));
        assert!(!personal("a+b 12345678"));
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
        // An IP-literal host is `(ip)`, whatever its form.
        for ip in [
            "http://[2001:db8::1]:80/",
            "http://203.0.113.9/x",
            "https://203.0.113.9:8443",
            "http://2001:db8::1/",
            "http://[::ffff:203.0.113.9]/",
            "http://user@198.51.100.7/",
        ] {
            assert_eq!(d(ip), IP_REFERRER, "{ip}");
        }
        assert_eq!(d("http://203.0.113.9.nip.io/"), IP_REFERRER);
        assert_eq!(d("http://www.example.com/1.2.3.4"), "www.example.com");
        assert_eq!(
            d("android-app://com.google.android.gm"),
            "com.google.android.gm"
        );
        assert_eq!(d("\u{7f}junk"), INVALID_REFERRER);
        assert_eq!(ReferrerDomain::from_referer(None).as_str(), NO_REFERRER);
    }

    fn own(client: &str, cookie: Option<&str>, text: &str) -> String {
        let ids = LineIdentifiers::new([Some(client.as_bytes()), None], cookie.map(str::as_bytes));
        ids.redact(text.as_bytes())
            .map_or_else(|| text.to_owned(), |r| String::from_utf8(r).unwrap())
    }

    #[test]
    fn own_ipv4_is_redacted_in_every_form() {
        let c = "203.0.113.77";
        for (text, want) in [
            ("/geo/203.0.113.77", "/geo/:redacted"),
            ("/geo/203-0-113-77.html", "/geo/:redacted.html"),
            ("/geo/ip_203_0_113_77", "/geo/ip_:redacted"),
            ("/geo/203%2E0%2E113%2E77/x", "/geo/:redacted/x"),
            ("/geo/203%2e0%2e113%2e77", "/geo/:redacted"),
            ("/geo/203%252E0%252E113%252E77", "/geo/:redacted"),
            ("/geo/%32%30%33.0.113.77", "/geo/:redacted"),
            ("/geo/::ffff:203.0.113.77", "/geo/:redacted"),
            ("/geo/[::FFFF:203.0.113.77]", "/geo/[:redacted]"),
            (
                "/?ip=203.0.113.77&utm_source=203.0.113.77",
                "/?ip=:redacted&utm_source=:redacted",
            ),
            ("https://203.0.113.77:8080/x", "https://:redacted:8080/x"),
            // Another address, or none.
            ("/geo/203.0.113.7", "/geo/203.0.113.7"),
            ("/geo/203.0.113.770", "/geo/203.0.113.770"),
            ("/geo/1203.0.113.77", "/geo/1203.0.113.77"),
            ("/v/113.77", "/v/113.77"),
        ] {
            assert_eq!(own(c, None, text), want, "{text}");
        }
        // As a port-suffixed or mapped client, the same address.
        assert_eq!(
            own("203.0.113.77:4431", None, "/a/203.0.113.77"),
            "/a/:redacted"
        );
        assert_eq!(
            own("::ffff:203.0.113.77", None, "/a/203-0-113-77"),
            "/a/:redacted"
        );
    }

    #[test]
    fn own_ipv6_is_redacted_in_every_form() {
        let c = "2001:db8::1";
        for (text, want) in [
            ("/geo/2001:db8::1", "/geo/:redacted"),
            ("/geo/2001:DB8::1/x", "/geo/:redacted/x"),
            (
                "/geo/2001:0db8:0000:0000:0000:0000:0000:0001",
                "/geo/:redacted",
            ),
            ("/geo/2001:db8:0:0:0:0:0:1", "/geo/:redacted"),
            ("/geo/[2001:db8::1]", "/geo/[:redacted]"),
            ("/geo/2001%3Adb8%3A%3A1", "/geo/:redacted"),
            (
                "/geo/2001-db8--1.ipv6-literal.net",
                "/geo/:redacted.ipv6-literal.net",
            ),
            ("http://[2001:db8::1]:80/", "http://[:redacted]:80/"),
            ("/ip-2001:db8::1", "/ip-:redacted"),
            // Other addresses that contain its text.
            ("/geo/2001:db8::10", "/geo/2001:db8::10"),
            ("/geo/2001:db8::1a", "/geo/2001:db8::1a"),
            ("/geo/a2001:db8::1", "/geo/a:redacted"),
            ("/geo/2001:db8::1:5", "/geo/:redacted:5"),
        ] {
            assert_eq!(own(c, None, text), want, "{text}");
        }
        assert_eq!(
            own("[2001:DB8::1]:443", None, "/x/2001:db8::1"),
            "/x/:redacted"
        );
        let c = "2001:db8:3f08:100b:1461:f218:c9d7:d8bd";
        assert_eq!(
            own(c, None, "/x/2001:DB8:3F08:100B:1461:F218:C9D7:D8BD"),
            "/x/:redacted"
        );
    }

    #[test]
    fn own_cookie_is_redacted_as_a_whole_token() {
        let c = "192.0.2.1";
        let cookie = Some("u-a4d71a51df963e6c");
        for (text, want) in [
            ("/reset/u-a4d71a51df963e6c", "/reset/:redacted"),
            ("/reset/U-A4D71A51DF963E6C/x", "/reset/:redacted/x"),
            ("/?uid=u-a4d71a51df963e6c&x=1", "/?uid=:redacted&x=1"),
            (
                "https://u-a4d71a51df963e6c.example.com/",
                "https://:redacted.example.com/",
            ),
            ("/r/u%2Da4d71a51df963e6c", "/r/:redacted"),
            // Not a whole token: part of a longer word.
            ("/r/xu-a4d71a51df963e6c", "/r/xu-a4d71a51df963e6c"),
            ("/r/u-a4d71a51df963e6c0", "/r/u-a4d71a51df963e6c0"),
        ] {
            assert_eq!(own(c, cookie, text), want, "{text}");
        }
        // Shorter than 8 bytes: not a token of its own.
        assert_eq!(own(c, Some("ab12cd3"), "/x/ab12cd3"), "/x/ab12cd3");
        assert_eq!(own(c, Some("ab12cd34"), "/x/ab12cd34"), "/x/:redacted");
        // A host-name client is a token too.
        assert_eq!(
            own(
                "pc-tanaka.example.jp",
                None,
                "https://pc-tanaka.example.jp/"
            ),
            "https://:redacted/"
        );
        let nothing = LineIdentifiers::new([None, None], Some(b"short"));
        assert!(nothing.is_empty() && nothing.redact(b"/short").is_none());
        assert_eq!(
            format!(
                "{:?}",
                LineIdentifiers::new([Some(b"192.0.2.1"), None], cookie.map(str::as_bytes))
            ),
            "LineIdentifiers { addresses: 1, tokens: 1 }"
        );
    }

    #[test]
    fn own_identifiers_in_a_referrer_host() {
        let ids = LineIdentifiers::new([Some(b"203.0.113.77"), None], Some(b"k3i9v0d9o5e4"));
        let d = |r: &str| {
            let r = ids.redact(r.as_bytes()).unwrap();
            ReferrerDomain::from_referer(Some(&r)).as_str().to_owned()
        };
        assert_eq!(d("http://203.0.113.77:8080/x"), REDACTED);
        assert_eq!(d("https://k3i9v0d9o5e4/"), REDACTED);
        assert_eq!(
            d("https://K3I9V0D9O5E4.example.com/"),
            ":redacted.example.com"
        );
        assert_eq!(d("http://[::ffff:203.0.113.77]/"), IP_REFERRER);
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
