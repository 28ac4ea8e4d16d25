//! Generalised quasi-identifiers: what an account's attributes may become in a report.

use logveil_parse::time::civil_from_days;

/// Label for any account dimension of a visitor that is not joined, or a missing value.
pub const UNKNOWN: &str = "unknown";

/// Age bands: `<20`, `20-29`, …, `80-89`, `90+` (ages of 90 and over are grouped, as HIPAA does).
pub const AGE_BANDS: [&str; 9] = [
    "<20", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+",
];

/// Age in whole years on `on_day` of someone born on `birth_day` (both days since 1970-01-01).
/// Someone born on 29 February becomes a year older on 1 March in common years.
pub fn age_on(birth_day: i32, on_day: i32) -> Option<u32> {
    if on_day < birth_day {
        return None;
    }
    let (by, bm, bd) = civil_from_days(birth_day);
    let (y, m, d) = civil_from_days(on_day);
    let mut age = y - by;
    if (m, d) < (bm, bd) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

/// The age band of a birth date on a given day; [`UNKNOWN`] without a usable birth date.
pub fn age_band(birth_day: Option<i32>, on_day: i32) -> &'static str {
    match birth_day.and_then(|b| age_on(b, on_day)) {
        None => UNKNOWN,
        Some(age) if age < 20 => AGE_BANDS[0],
        Some(age) if age >= 90 => AGE_BANDS[8],
        Some(age) => AGE_BANDS[(age / 10 - 1) as usize],
    }
}

/// Gender as stored, trimmed and lower-cased; empty → [`UNKNOWN`].
pub fn gender(stored: &str) -> Box<str> {
    let g = stored.trim();
    if g.is_empty() {
        UNKNOWN.into()
    } else {
        g.to_lowercase().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::parse_date;

    fn day(s: &str) -> i32 {
        parse_date(s).unwrap()
    }

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age_on(day("2000-11-02"), day("2026-11-01")), Some(25));
        assert_eq!(age_on(day("2000-11-01"), day("2026-11-01")), Some(26));
        assert_eq!(age_on(day("2000-02-29"), day("2026-02-28")), Some(25));
        assert_eq!(age_on(day("2000-02-29"), day("2026-03-01")), Some(26));
        assert_eq!(age_on(day("2027-01-01"), day("2026-11-01")), None);
    }

    #[test]
    fn bands_cover_every_age() {
        let on = day("2026-11-01");
        assert_eq!(age_band(Some(day("2010-01-01")), on), "<20");
        assert_eq!(age_band(Some(day("2006-11-01")), on), "20-29");
        assert_eq!(age_band(Some(day("1997-11-02")), on), "20-29");
        assert_eq!(age_band(Some(day("1937-01-01")), on), "80-89");
        assert_eq!(age_band(Some(day("1936-11-01")), on), "90+");
        assert_eq!(age_band(None, on), "unknown");
    }

    #[test]
    fn gender_is_lowercased_or_unknown() {
        assert_eq!(&*gender("Female"), "female");
        assert_eq!(&*gender("  "), "unknown");
        assert_eq!(&*gender("M"), "m");
    }
}
