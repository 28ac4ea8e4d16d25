//! Timestamps: the Apache `%t` layout, parsed by hand (fixed width beats any strptime here).

use crate::record::Timestamp;

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count from 1970-01-01.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

fn month_number(b: &[u8]) -> Option<u32> {
    // Case-insensitive: some servers and converters write `NOV`.
    let m = [
        b[0].to_ascii_lowercase(),
        b[1].to_ascii_lowercase(),
        b[2].to_ascii_lowercase(),
    ];
    Some(match &m {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// The minute most recently parsed on this thread: `dd/Mon/yyyy:HH:MM:` and ` +zzzz` (the
/// bytes around the seconds) → UTC seconds at the minute's start and the offset.
#[derive(Clone, Copy)]
struct MinuteCache {
    valid: bool,
    key: [u8; 23],
    minute_utc_seconds: i64,
    offset_seconds: i32,
}

thread_local! {
    static LAST_MINUTE: std::cell::Cell<MinuteCache> = const {
        std::cell::Cell::new(MinuteCache {
            valid: false,
            key: [0; 23],
            minute_utc_seconds: 0,
            offset_seconds: 0,
        })
    };
}

fn minute_key(s: &[u8]) -> [u8; 23] {
    let mut key = [0u8; 23];
    key[..18].copy_from_slice(&s[..18]);
    key[18..].copy_from_slice(&s[21..26]);
    key
}

/// Parses `dd/Mon/yyyy:HH:MM:SS +zzzz` (the inside of Apache's `%t` brackets).
///
/// Accepts offsets from -1200 to +1400 and a leap second (`:60`, folded into the next
/// second as every log consumer does). Returns `None` for anything else.
///
/// Logs are written in time order, so consecutive lines almost always share their minute:
/// the last minute parsed on this thread is remembered and only the seconds are read when
/// everything else matches (the key is every byte but the seconds, so a hit is exactly
/// what a full parse of the same bytes would give).
pub fn parse_clf_time(s: &[u8]) -> Option<Timestamp> {
    if s.len() == 26 && s[20] == b' ' {
        let cached = LAST_MINUTE.with(std::cell::Cell::get);
        if cached.valid && cached.key == minute_key(s) {
            let second = two_digits(&s[18..20])?;
            if second > 60 {
                return None;
            }
            return Some(Timestamp {
                utc_micros: (cached.minute_utc_seconds + i64::from(second)) * MICROS_PER_SECOND,
                offset_seconds: cached.offset_seconds,
            });
        }
        let parsed = parse_clf_time_uncached(s)?;
        let second = i64::from(two_digits(&s[18..20])?);
        LAST_MINUTE.with(|c| {
            c.set(MinuteCache {
                valid: true,
                key: minute_key(s),
                minute_utc_seconds: parsed.utc_micros / MICROS_PER_SECOND - second,
                offset_seconds: parsed.offset_seconds,
            });
        });
        return Some(parsed);
    }
    parse_clf_time_uncached(s)
}

/// [`parse_clf_time`] without the minute cache.
pub fn parse_clf_time_uncached(s: &[u8]) -> Option<Timestamp> {
    if s.len() != 26
        || s[2] != b'/'
        || s[6] != b'/'
        || s[11] != b':'
        || s[14] != b':'
        || s[17] != b':'
        || s[20] != b' '
    {
        return None;
    }
    let day = two_digits(&s[0..2])?;
    let month = month_number(&s[3..6])?;
    let year = (two_digits(&s[7..9])? * 100 + two_digits(&s[9..11])?) as i32;
    let hour = two_digits(&s[12..14])?;
    let minute = two_digits(&s[15..17])?;
    let second = two_digits(&s[18..20])?;
    let sign: i32 = match s[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off_h = two_digits(&s[22..24])? as i32;
    let off_m = two_digits(&s[24..26])? as i32;
    if day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || off_m > 59
    {
        return None;
    }
    let offset_seconds = sign * (off_h * 3600 + off_m * 60);
    if !(-12 * 3600..=14 * 3600).contains(&offset_seconds) {
        return None;
    }
    let local_seconds = i64::from(days_from_civil(year, month, day)) * 86_400
        + i64::from(hour * 3600 + minute * 60 + second);
    let utc_seconds = local_seconds - i64::from(offset_seconds);
    Some(Timestamp {
        utc_micros: utc_seconds * MICROS_PER_SECOND,
        offset_seconds,
    })
}

fn digits_n(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// `.123456` (any number of digits, up to microseconds kept) → (microseconds, bytes used).
fn fraction(s: &[u8]) -> (i64, usize) {
    if s.first() != Some(&b'.') && s.first() != Some(&b',') {
        return (0, 0);
    }
    let n = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut micros = 0i64;
    for (i, &d) in s[1..=n].iter().enumerate().take(6) {
        micros += i64::from(d - b'0') * 10i64.pow(5 - i as u32);
    }
    (micros, n + 1)
}

#[allow(
    clippy::too_many_arguments,
    reason = "the six civil-time fields plus fraction and offset"
)]
fn to_timestamp(
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    sec: u32,
    micros: i64,
    offset_seconds: i32,
) -> Option<Timestamp> {
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    if !(-12 * 3600..=14 * 3600).contains(&offset_seconds) {
        return None;
    }
    let local = i64::from(days_from_civil(y, mo, d)) * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    Some(Timestamp {
        utc_micros: (local - i64::from(offset_seconds)) * MICROS_PER_SECOND + micros,
        offset_seconds,
    })
}

/// `Z`, `+09:00`, `+0900`, `+09` → seconds east of UTC, and bytes used.
fn iso_offset(s: &[u8]) -> Option<(i32, usize)> {
    match s.first()? {
        b'Z' | b'z' => Some((0, 1)),
        sign @ (b'+' | b'-') => {
            let sign = if *sign == b'+' { 1 } else { -1 };
            let h = two_digits(s.get(1..3)?)? as i32;
            let (m, used) = match s.get(3) {
                Some(b':') => (two_digits(s.get(4..6)?)? as i32, 6),
                Some(c) if c.is_ascii_digit() => (two_digits(s.get(3..5)?)? as i32, 5),
                _ => (0, 3),
            };
            (m < 60).then_some((sign * (h * 3600 + m * 60), used))
        }
        _ => None,
    }
}

/// ISO 8601 / RFC 3339: `2026-11-01T09:15:02+09:00`, with `T` or a space, optional
/// fraction, offset `Z`, `±HH:MM`, `±HHMM` or `±HH`. Without an offset the time is UTC
/// (W3C extended logs write UTC without a zone). Nothing may follow.
pub fn parse_iso8601(s: &[u8]) -> Option<Timestamp> {
    if s.len() < 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let y = digits_n(&s[0..4])? as i32;
    let (mo, d) = (two_digits(&s[5..7])?, two_digits(&s[8..10])?);
    let (h, mi, sec) = (
        two_digits(&s[11..13])?,
        two_digits(&s[14..16])?,
        two_digits(&s[17..19])?,
    );
    let (micros, used) = fraction(&s[19..]);
    let rest = &s[19 + used..];
    let offset = if rest.is_empty() {
        0
    } else {
        let (offset, used) = iso_offset(rest)?;
        if used != rest.len() {
            return None;
        }
        offset
    };
    to_timestamp(y, mo, d, h, mi, sec, micros, offset)
}

/// W3C extended logs: separate `date` (`2026-11-01`) and `time` (`09:15:02`, optional fraction) fields, in UTC.
pub fn parse_date_and_time(date: &[u8], time: &[u8]) -> Option<Timestamp> {
    if date.len() != 10
        || date[4] != b'-'
        || date[7] != b'-'
        || time.len() < 8
        || time[2] != b':'
        || time[5] != b':'
    {
        return None;
    }
    let (micros, used) = fraction(&time[8..]);
    if 8 + used != time.len() {
        return None;
    }
    to_timestamp(
        digits_n(&date[0..4])? as i32,
        two_digits(&date[5..7])?,
        two_digits(&date[8..10])?,
        two_digits(&time[0..2])?,
        two_digits(&time[3..5])?,
        two_digits(&time[6..8])?,
        micros,
        0,
    )
}

/// Seconds since the Unix epoch with an optional fraction (`1762000000.123`, nginx `$msec`, Caddy `ts`).
pub fn parse_epoch_seconds(s: &[u8]) -> Option<Timestamp> {
    let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if int_len == 0 || int_len > 12 {
        return None;
    }
    let (micros, used) = fraction(&s[int_len..]);
    if int_len + used != s.len() {
        return None;
    }
    let secs = i64::from(digits_n(&s[..int_len.min(9)])?)
        * 10i64.pow((int_len.saturating_sub(9)) as u32)
        + if int_len > 9 {
            i64::from(digits_n(&s[9..int_len])?)
        } else {
            0
        };
    Some(Timestamp {
        utc_micros: secs * MICROS_PER_SECOND + micros,
        offset_seconds: 0,
    })
}

/// An integer count of `unit_micros` since the epoch (Apache `%{msec}t` = 1000, `%{usec}t` = 1).
pub fn parse_epoch_units(s: &[u8], unit_micros: i64) -> Option<Timestamp> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s
        .iter()
        .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
    Some(Timestamp {
        utc_micros: n.checked_mul(unit_micros)?,
        offset_seconds: 0,
    })
}

/// A compiled `strftime` pattern, as Apache's `%{FORMAT}t` writes times.
///
/// Supported conversions: `%d %e %m %b %h %Y %y %H %M %S %z %T %F %D %R %%`, plus
/// `%f` (fraction, logveil extension) ; anything else is refused at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePattern {
    items: Vec<TimeItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeItem {
    Literal(u8),
    Day,
    Month,
    MonthName,
    Year4,
    Year2,
    Hour,
    Minute,
    Second,
    Fraction,
    Offset,
}

impl TimePattern {
    /// Compiles a strftime pattern; `Err` names the unsupported conversion.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                let mut buf = [0u8; 4];
                items.extend(c.encode_utf8(&mut buf).bytes().map(TimeItem::Literal));
                continue;
            }
            let expand: &[TimeItem] = match chars.next() {
                Some('d' | 'e') => &[TimeItem::Day],
                Some('m') => &[TimeItem::Month],
                Some('b' | 'h') => &[TimeItem::MonthName],
                Some('Y') => &[TimeItem::Year4],
                Some('y') => &[TimeItem::Year2],
                Some('H') => &[TimeItem::Hour],
                Some('M') => &[TimeItem::Minute],
                Some('S') => &[TimeItem::Second],
                Some('f') => &[TimeItem::Fraction],
                Some('z') => &[TimeItem::Offset],
                Some('T') => &[
                    TimeItem::Hour,
                    TimeItem::Literal(b':'),
                    TimeItem::Minute,
                    TimeItem::Literal(b':'),
                    TimeItem::Second,
                ],
                Some('R') => &[TimeItem::Hour, TimeItem::Literal(b':'), TimeItem::Minute],
                Some('F') => &[
                    TimeItem::Year4,
                    TimeItem::Literal(b'-'),
                    TimeItem::Month,
                    TimeItem::Literal(b'-'),
                    TimeItem::Day,
                ],
                Some('D') => &[
                    TimeItem::Month,
                    TimeItem::Literal(b'/'),
                    TimeItem::Day,
                    TimeItem::Literal(b'/'),
                    TimeItem::Year2,
                ],
                Some('%') => &[TimeItem::Literal(b'%')],
                Some(other) => return Err(format!("%{other}")),
                None => return Err("%".to_owned()),
            };
            items.extend_from_slice(expand);
        }
        if !items.contains(&TimeItem::Year4) && !items.contains(&TimeItem::Year2) {
            return Err("a time pattern without a year (%Y or %y)".to_owned());
        }
        Ok(Self { items })
    }

    /// Parses a time written with this pattern. Without `%z` the time is taken as UTC.
    pub fn parse(&self, s: &[u8]) -> Option<Timestamp> {
        let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut micros, mut off) =
            (1970i32, 1u32, 1u32, 0u32, 0u32, 0u32, 0i64, 0i32);
        let mut pos = 0usize;
        let num = |pos: &mut usize, max_len: usize, allow_space: bool| -> Option<u32> {
            if allow_space && s.get(*pos) == Some(&b' ') {
                *pos += 1;
            }
            let n = s[*pos..]
                .iter()
                .take(max_len)
                .take_while(|b| b.is_ascii_digit())
                .count();
            let v = digits_n(&s[*pos..*pos + n])?;
            *pos += n;
            Some(v)
        };
        for item in &self.items {
            match item {
                TimeItem::Literal(b) => {
                    if s.get(pos) != Some(b) {
                        return None;
                    }
                    pos += 1;
                }
                TimeItem::Day => d = num(&mut pos, 2, true)?,
                TimeItem::Month => mo = num(&mut pos, 2, false)?,
                TimeItem::MonthName => {
                    mo = month_number(s.get(pos..pos + 3)?)?;
                    pos += 3;
                }
                TimeItem::Year4 => y = num(&mut pos, 4, false)? as i32,
                TimeItem::Year2 => y = 2000 + num(&mut pos, 2, false)? as i32,
                TimeItem::Hour => h = num(&mut pos, 2, false)?,
                TimeItem::Minute => mi = num(&mut pos, 2, false)?,
                TimeItem::Second => sec = num(&mut pos, 2, false)?,
                TimeItem::Fraction => {
                    let (m, used) = fraction(&[&b"."[..], &s[pos..]].concat());
                    micros = m;
                    pos += used.saturating_sub(1);
                }
                TimeItem::Offset => {
                    let (o, used) = iso_offset(&s[pos..])?;
                    off = o;
                    pos += used;
                }
            }
        }
        if pos != s.len() {
            return None;
        }
        to_timestamp(y, mo, d, h, mi, sec, micros, off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in (-200_000..200_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 1), 20_758);
    }

    #[test]
    fn converts_offset_to_utc() {
        let t = parse_clf_time(b"01/Nov/2026:09:15:02 +0900").unwrap();
        assert_eq!(t.offset_seconds, 9 * 3600);
        // 2026-11-01T00:15:02Z
        assert_eq!(
            t.utc_micros,
            (20_758 * 86_400 + 15 * 60 + 2) * MICROS_PER_SECOND
        );
        let t = parse_clf_time(b"01/Jul/1995:00:00:01 -0400").unwrap();
        assert_eq!(
            t.utc_micros,
            (i64::from(days_from_civil(1995, 7, 1)) * 86_400 + 4 * 3600 + 1) * MICROS_PER_SECOND
        );
    }

    #[test]
    fn iso8601_variants() {
        let base = (20_758 * 86_400 + 15 * 60 + 2) * MICROS_PER_SECOND; // 2026-11-01T00:15:02Z
        assert_eq!(
            parse_iso8601(b"2026-11-01T09:15:02+09:00")
                .unwrap()
                .utc_micros,
            base
        );
        assert_eq!(
            parse_iso8601(b"2026-11-01T09:15:02+0900")
                .unwrap()
                .utc_micros,
            base
        );
        assert_eq!(
            parse_iso8601(b"2026-11-01T00:15:02Z").unwrap().utc_micros,
            base
        );
        assert_eq!(
            parse_iso8601(b"2026-11-01 00:15:02").unwrap().utc_micros,
            base
        );
        assert_eq!(
            parse_iso8601(b"2026-11-01T00:15:02.250Z")
                .unwrap()
                .utc_micros,
            base + 250_000
        );
        assert_eq!(
            parse_iso8601(b"2026-11-01T00:15:02.1234567Z")
                .unwrap()
                .utc_micros,
            base + 123_456
        );
        assert!(parse_iso8601(b"2026-11-01T00:15:02+15:00").is_none());
        assert!(parse_iso8601(b"2026-13-01T00:15:02Z").is_none());
        assert!(parse_iso8601(b"2026-11-01T00:15:02Zjunk").is_none());
        assert_eq!(
            parse_date_and_time(b"2026-11-01", b"00:15:02.5")
                .unwrap()
                .utc_micros,
            base + 500_000
        );
    }

    #[test]
    fn epoch_and_strftime() {
        let base = (20_758 * 86_400 + 15 * 60 + 2) * MICROS_PER_SECOND;
        assert_eq!(
            parse_epoch_seconds(b"1793492102.123").unwrap().utc_micros,
            base + 123_000
        );
        assert_eq!(parse_epoch_seconds(b"1793492102").unwrap().utc_micros, base);
        assert!(parse_epoch_seconds(b"-1").is_none() && parse_epoch_seconds(b"1.2.3").is_none());
        assert_eq!(
            parse_epoch_units(b"1793492102123", 1000)
                .unwrap()
                .utc_micros,
            base + 123_000
        );
        let p = TimePattern::compile("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(
            p.parse(b"01/Nov/2026:09:15:02 +0900").unwrap().utc_micros,
            base
        );
        let p = TimePattern::compile("%F %T.%f").unwrap();
        assert_eq!(
            p.parse(b"2026-11-01 00:15:02.5").unwrap().utc_micros,
            base + 500_000
        );
        assert!(TimePattern::compile("%H:%M").is_err());
        assert_eq!(TimePattern::compile("%Y %Q").unwrap_err(), "%Q");
    }

    #[test]
    fn rejects_impossible_dates_and_offsets() {
        for bad in [
            &b"32/Nov/2026:09:15:02 +0900"[..],
            b"29/Feb/2026:09:15:02 +0900",
            b"01/Foo/2026:09:15:02 +0900",
            b"01/Nov/2026:24:00:00 +0000",
            b"01/Nov/2026:09:15:02 +1500",
            b"01/Nov/2026:09:15:02 -1300",
            b"01/Nov/2026:09:15:02 0900",
            b"1/Nov/2026:09:15:02 +0900",
        ] {
            assert!(
                parse_clf_time(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_clf_time(b"29/Feb/2024:09:15:02 +1400").is_some());
    }

    proptest::proptest! {
        /// The minute cache never changes an answer: lines that share a minute, lines that
        /// differ in one byte around the seconds, and junk, parsed in sequence on one thread.
        #[test]
        fn minute_cache_agrees_with_a_full_parse(
            steps in proptest::collection::vec((0usize..26, proptest::prelude::any::<u8>(), 0u8..4), 1..64)
        ) {
            let mut line = *b"01/Nov/2026:09:15:02 +0900";
            for (at, byte, kind) in steps {
                match kind {
                    0 => line[at] = byte,
                    1 => line[18 + at % 2] = b'0' + byte % 10,
                    2 => line[at] = b"0123456789/: +-NovDec"[usize::from(byte) % 21],
                    _ => line = *b"01/Nov/2026:09:15:02 +0900",
                }
                proptest::prop_assert_eq!(parse_clf_time(&line), parse_clf_time_uncached(&line));
            }
        }
    }
}
