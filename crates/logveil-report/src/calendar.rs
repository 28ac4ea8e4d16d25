//! Which calendar day an instant belongs to: UTC unless the pipeline names a time zone.

use logveil_parse::time::{MICROS_PER_DAY, MICROS_PER_SECOND, civil_from_days, days_from_civil};

/// Maps instants to partition days.
#[derive(Debug, Clone)]
pub enum Calendar {
    Utc,
    Zone(jiff::tz::TimeZone),
}

impl Calendar {
    /// `UTC`, an IANA name (`Asia/Tokyo`) or a fixed offset (`+09:00`).
    pub fn from_name(name: &str) -> Result<Self, String> {
        if name.eq_ignore_ascii_case("utc") {
            return Ok(Self::Utc);
        }
        if let Some(offset) = parse_offset(name) {
            return Ok(Self::Zone(jiff::tz::TimeZone::fixed(
                jiff::tz::Offset::from_seconds(offset).map_err(|e| e.to_string())?,
            )));
        }
        jiff::tz::TimeZone::get(name)
            .map(Self::Zone)
            .map_err(|_| format!("unknown time zone `{name}` (allowed: UTC, an IANA name such as Asia/Tokyo, or an offset such as +09:00)"))
    }

    /// Days since 1970-01-01 of the local calendar date of `utc_micros`.
    pub fn day_of(&self, utc_micros: i64) -> i32 {
        match self {
            Self::Utc => utc_micros.div_euclid(MICROS_PER_DAY) as i32,
            Self::Zone(tz) => {
                let seconds = utc_micros.div_euclid(MICROS_PER_SECOND);
                let offset = jiff::Timestamp::from_second(seconds)
                    .map_or(0, |ts| tz.to_offset(ts).seconds());
                (utc_micros + i64::from(offset) * MICROS_PER_SECOND).div_euclid(MICROS_PER_DAY)
                    as i32
            }
        }
    }
}

fn parse_offset(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: Vec<u8> = b[1..].iter().copied().filter(|c| *c != b':').collect();
    if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| i32::from(digits[i] - b'0');
    let (h, m) = (n(0) * 10 + n(1), n(2) * 10 + n(3));
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// Monday of the week containing `day` (1970-01-01 was a Thursday).
pub fn week_start(day: i32) -> i32 {
    day - (day + 3).rem_euclid(7)
}

/// First day of the month containing `day`.
pub fn month_start(day: i32) -> i32 {
    let (y, m, _) = civil_from_days(day);
    days_from_civil(y, m, 1)
}

/// `YYYY-MM-DD` of a day number.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let d = |y, m, dd| days_from_civil(y, m, dd);
        assert_eq!(week_start(d(2026, 11, 1)), d(2026, 10, 26)); // a Sunday
        assert_eq!(week_start(d(2026, 11, 2)), d(2026, 11, 2)); // a Monday
        assert_eq!(month_start(d(2026, 11, 29)), d(2026, 11, 1));
        assert_eq!(format_day(d(2026, 1, 5)), "2026-01-05");
    }

    #[test]
    fn zones_shift_the_day() {
        let t = i64::from(days_from_civil(2026, 11, 1)) * MICROS_PER_DAY
            + 20 * 3600 * MICROS_PER_SECOND;
        assert_eq!(Calendar::Utc.day_of(t), days_from_civil(2026, 11, 1));
        assert_eq!(
            Calendar::from_name("+09:00").unwrap().day_of(t),
            days_from_civil(2026, 11, 2)
        );
        assert_eq!(
            Calendar::from_name("-0500").unwrap().day_of(t),
            days_from_civil(2026, 11, 1)
        );
        assert!(
            Calendar::from_name("Mars/Olympus")
                .unwrap_err()
                .contains("Asia/Tokyo")
        );
    }
}
