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

/// Parses `dd/Mon/yyyy:HH:MM:SS +zzzz` (the inside of Apache's `%t` brackets).
///
/// Accepts offsets from -1200 to +1400 and a leap second (`:60`, folded into the next
/// second as every log consumer does). Returns `None` for anything else.
pub fn parse_clf_time(s: &[u8]) -> Option<Timestamp> {
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
}
