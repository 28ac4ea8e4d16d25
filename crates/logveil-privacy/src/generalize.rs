//! Generalised quasi-identifiers: what an account's attributes may become in a report.
//!
//! Every function maps stored text to a `&'static str` from a documented list, so the
//! stored text can be dropped as soon as a row is read: age band, gender, area
//! ([`crate::area`]), occupation ([`OCCUPATIONS`]), industry ([`INDUSTRIES`]) and
//! interests ([`INTERESTS`], multi-valued).

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

/// Label for a non-empty value that is not in a dimension's documented list.
pub const OTHER: &str = "other";

/// Top-level occupations: the values of the `occupation` dimension (besides [`OTHER`] and
/// [`UNKNOWN`]).
pub const OCCUPATIONS: [&str; 10] = [
    "office_worker",
    "executive",
    "professional",
    "public_servant",
    "self_employed",
    "part_time",
    "student",
    "homemaker",
    "retired",
    "unemployed",
];

/// Other spellings of [`OCCUPATIONS`] that registration forms produce (compared like
/// values: trimmed, case-insensitive, `-`, `_` and space alike).
const OCCUPATION_ALIASES: &[(&str, &str)] = &[
    ("company_employee", "office_worker"),
    ("employee", "office_worker"),
    ("salaried", "office_worker"),
    ("salaryman", "office_worker"),
    ("manager", "executive"),
    ("company_executive", "executive"),
    ("civil_servant", "public_servant"),
    ("government_employee", "public_servant"),
    ("self_employed_business_owner", "self_employed"),
    ("business_owner", "self_employed"),
    ("freelancer", "self_employed"),
    ("part_timer", "part_time"),
    ("arubaito", "part_time"),
    ("housewife", "homemaker"),
    ("househusband", "homemaker"),
    ("pensioner", "retired"),
    ("job_seeker", "unemployed"),
];

/// The industry divisions of the Japan Standard Industrial Classification (JSIC, rev. 14,
/// divisions A–S) in short English: the values of the `industry` dimension (besides
/// [`OTHER`], which includes division T "industries unable to classify", and [`UNKNOWN`]).
pub const INDUSTRIES: [&str; 19] = [
    "agriculture_forestry",       // A
    "fisheries",                  // B
    "mining",                     // C
    "construction",               // D
    "manufacturing",              // E
    "utilities",                  // F electricity, gas, heat supply and water
    "information_communications", // G
    "transport_postal",           // H
    "wholesale_retail",           // I
    "finance_insurance",          // J
    "real_estate",                // K real estate and goods rental and leasing
    "professional_services",      // L scientific research, professional and technical services
    "accommodation_food",         // M accommodations, eating and drinking services
    "personal_services",          // N living-related and personal services, amusement
    "education",                  // O education, learning support
    "healthcare_welfare",         // P medical, health care and welfare
    "compound_services",          // Q post offices, cooperatives
    "other_services",             // R services, n.e.c.
    "government",                 // S
];

const INDUSTRY_ALIASES: &[(&str, &str)] = &[
    ("agriculture", "agriculture_forestry"),
    ("forestry", "agriculture_forestry"),
    ("fishing", "fisheries"),
    ("energy", "utilities"),
    ("it", "information_communications"),
    ("information_technology", "information_communications"),
    ("telecommunications", "information_communications"),
    ("media", "information_communications"),
    ("transport", "transport_postal"),
    ("transportation", "transport_postal"),
    ("logistics", "transport_postal"),
    ("retail", "wholesale_retail"),
    ("wholesale", "wholesale_retail"),
    ("finance", "finance_insurance"),
    ("banking", "finance_insurance"),
    ("insurance", "finance_insurance"),
    ("hotels,_restaurants_&_leisure", "accommodation_food"),
    ("hospitality", "accommodation_food"),
    ("restaurants", "accommodation_food"),
    ("healthcare", "healthcare_welfare"),
    ("medical", "healthcare_welfare"),
    ("public_sector", "government"),
    ("public_administration", "government"),
];

/// Interests a registration form offers: the values of the `interests` dimension (besides
/// [`OTHER`] and [`UNKNOWN`]). At most 31, so that [`Interests`] fits a `u32`.
pub const INTERESTS: [&str; 14] = [
    "travel",
    "food",
    "onsen",
    "hiking",
    "history",
    "shopping",
    "nightlife",
    "culture",
    "nature",
    "skiing",
    "beaches",
    "festivals",
    "anime",
    "photography",
];

const INTEREST_ALIASES: &[(&str, &str)] = &[
    ("hot_springs", "onsen"),
    ("hot_spring", "onsen"),
    ("gourmet", "food"),
    ("temples", "history"),
    ("outdoors", "nature"),
    ("ski", "skiing"),
    ("beach", "beaches"),
    ("manga", "anime"),
];

/// Whether `value` (already trimmed) spells `canonical`: ASCII case-insensitive, with `-`,
/// `_` and space treated alike.
fn spells(value: &str, canonical: &str) -> bool {
    let fold = |b: u8| match b {
        b'-' | b' ' => b'_',
        b => b.to_ascii_lowercase(),
    };
    value.len() == canonical.len()
        && value
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// `stored`, trimmed, as one of `values` (directly or through `aliases`); non-empty text
/// that matches none is [`OTHER`], empty text [`UNKNOWN`].
fn one_of(stored: &str, values: &[&'static str], aliases: &[(&str, &'static str)]) -> &'static str {
    let v = stored.trim();
    if v.is_empty() {
        return UNKNOWN;
    }
    values
        .iter()
        .copied()
        .find(|c| spells(v, c))
        .or_else(|| aliases.iter().find(|(a, _)| spells(v, a)).map(|(_, c)| *c))
        .unwrap_or(OTHER)
}

/// The top-level occupation ([`OCCUPATIONS`]) of a stored occupation, or [`OTHER`] /
/// [`UNKNOWN`].
pub fn occupation(stored: &str) -> &'static str {
    one_of(stored, &OCCUPATIONS, OCCUPATION_ALIASES)
}

/// The JSIC division ([`INDUSTRIES`]) of a stored industry, or [`OTHER`] / [`UNKNOWN`].
pub fn industry(stored: &str) -> &'static str {
    one_of(stored, &INDUSTRIES, INDUSTRY_ALIASES)
}

/// A set of [`INTERESTS`] plus [`OTHER`]: bit `i` is `INTERESTS[i]`, bit `INTERESTS.len()`
/// is [`OTHER`]. Empty means unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Interests(u32);

impl Interests {
    const OTHER_BIT: u32 = 1 << INTERESTS.len();

    /// Parses a stored `|`-separated list (`food|onsen`): each item trimmed and matched
    /// like [`occupation`]; items not in [`INTERESTS`] count once as [`OTHER`]; empty
    /// items are skipped.
    pub fn parse(stored: &str) -> Self {
        let mut bits = 0;
        for item in stored.split('|').map(str::trim).filter(|i| !i.is_empty()) {
            bits |= match one_of(item, &INTERESTS, INTEREST_ALIASES) {
                OTHER => Self::OTHER_BIT,
                v => INTERESTS
                    .iter()
                    .position(|c| *c == v)
                    .map_or(Self::OTHER_BIT, |i| 1 << i),
            };
        }
        Self(bits)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The values in [`INTERESTS`] order, [`OTHER`] last.
    pub fn iter(self) -> impl Iterator<Item = &'static str> {
        INTERESTS
            .iter()
            .copied()
            .chain(std::iter::once(OTHER))
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, v)| v)
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

    #[test]
    fn occupations_map_to_top_level_values() {
        for (stored, want) in [
            ("Company employee", "office_worker"),
            ("  office worker ", "office_worker"),
            ("Self-employed", "self_employed"),
            ("self_employed", "self_employed"),
            ("Student", "student"),
            ("RETIRED", "retired"),
            ("Homemaker", "homemaker"),
            ("Public servant", "public_servant"),
            ("Part-time", "part_time"),
            ("Consultant, independent", "other"),
            ("Artist (\"freelance\")", "other"),
            ("Other", "other"),
            ("", "unknown"),
            ("   ", "unknown"),
        ] {
            assert_eq!(occupation(stored), want, "{stored}");
        }
        for v in OCCUPATIONS {
            assert_eq!(occupation(v), v);
        }
    }

    #[test]
    fn industries_map_to_jsic_divisions() {
        for (stored, want) in [
            ("IT", "information_communications"),
            ("it", "information_communications"),
            ("Manufacturing", "manufacturing"),
            ("Finance", "finance_insurance"),
            ("Retail", "wholesale_retail"),
            ("Healthcare", "healthcare_welfare"),
            ("Education", "education"),
            ("Hotels, restaurants & leisure", "accommodation_food"),
            ("Public sector", "government"),
            ("Tourism", "other"),
            ("Information and communications", "other"),
            ("", "unknown"),
        ] {
            assert_eq!(industry(stored), want, "{stored}");
        }
        for v in INDUSTRIES {
            assert_eq!(industry(v), v);
            assert!(!v.contains(' ') && v == v.to_lowercase());
        }
    }

    #[test]
    fn interests_are_a_set_with_other() {
        let i = Interests::parse("food|onsen");
        assert_eq!(i.iter().collect::<Vec<_>>(), ["food", "onsen"]);
        assert_eq!(i.len(), 2);
        let i = Interests::parse(" Onsen | hot springs|karaoke||FOOD|bowling|food ");
        assert_eq!(i.iter().collect::<Vec<_>>(), ["food", "onsen", "other"]);
        assert_eq!(i.len(), 3);
        assert!(Interests::parse("").is_empty());
        assert!(Interests::parse(" | ").is_empty());
        assert_eq!(Interests::parse("").iter().count(), 0);
        let all = Interests::parse(&INTERESTS.join("|"));
        assert_eq!(all.iter().collect::<Vec<_>>(), INTERESTS);
        assert!(INTERESTS.len() < 31);
    }
}
