//! Civil-calendar arithmetic on Unix seconds (proleptic Gregorian, UTC), no dependencies.

pub const DAY: i64 = 86_400;
/// 2026-11-01T00:00:00Z.
pub const START: i64 = days_from_civil(2026, 11, 1) * DAY;
/// 2026-11-03T00:00:00Z (exclusive).
pub const END: i64 = START + 2 * DAY;
/// The site's offset, +09:00 (Japan).
pub const JST: i64 = 9 * 3600;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// Day number (since the epoch) of a UTC instant.
pub const fn utc_day(secs: i64) -> i64 {
    secs.div_euclid(DAY)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:00:00Z`: the start of the UTC hour holding `secs`.
pub fn hour_string(secs: i64) -> String {
    let hour = secs.rem_euclid(DAY) / 3600;
    format!("{}T{hour:02}:00:00Z", date_string(utc_day(secs)))
}

/// Apache `%t` body (without brackets) in +0900: `01/Nov/2026:09:15:02 +0900`.
pub fn apache_jst(secs: i64) -> String {
    let local = secs + JST;
    let (y, m, d) = civil_from_days(utc_day(local));
    let sod = local.rem_euclid(DAY);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0900",
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(START, 1_793_491_200);
        for day in -800_000..800_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(apache_jst(START), "01/Nov/2026:09:00:00 +0900");
        assert_eq!(apache_jst(END - 1), "03/Nov/2026:08:59:59 +0900");
        assert_eq!(hour_string(START + DAY + 3599), "2026-11-02T00:00:00Z");
        assert_eq!(date_string(utc_day(END - 1)), "2026-11-02");
    }
}
