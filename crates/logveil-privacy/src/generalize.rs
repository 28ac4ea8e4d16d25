//! Generalised quasi-identifiers: what an account's attributes may become in a report.
//!
//! Every function maps stored text to a `&'static str` from a documented list, so the
//! stored text can be dropped as soon as a row is read: age band, gender ([`GENDERS`]), area
//! ([`crate::area`]), occupation ([`OCCUPATIONS`]), industry ([`INDUSTRIES`]) and
//! interests ([`INTERESTS`], multi-valued). The functions for the account columns take the
//! stored bytes as the source gives them and say whether they were recognised ([`Mapped`]):
//! text that is none of a dimension's spellings (an e-mail address typed into `gender`, a
//! value that is not UTF-8, a megabyte of anything) never becomes a value of its own, only
//! `unknown` or `other`, and the account loader counts it. This is the one place where
//! stored account text becomes a dimension value, for every source.

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

/// Label for a non-empty value that is not in a dimension's documented list.
pub const OTHER: &str = "other";

/// What one stored account value became: `value` is from the dimension's closed list;
/// `recognised` is false when the stored text was not one of the dimension's spellings
/// (it became [`UNKNOWN`] or [`OTHER`] and is counted as unrecognised). Empty text is
/// recognised: it means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub value: &'static str,
    pub recognised: bool,
}

impl Mapped {
    const fn known(value: &'static str) -> Self {
        Self {
            value,
            recognised: true,
        }
    }

    const fn unrecognised(value: &'static str) -> Self {
        Self {
            value,
            recognised: false,
        }
    }
}

/// Stored text, trimmed: `None` when it is not UTF-8.
fn stored_text(stored: &[u8]) -> Option<&str> {
    std::str::from_utf8(stored).ok().map(str::trim)
}

/// The values of the `gender` dimension (besides [`UNKNOWN`]).
pub const GENDERS: [&str; 3] = ["female", "male", "other"];

/// The other spellings of [`GENDERS`] (compared like values: trimmed, case-insensitive,
/// `-`, `_` and space alike).
const GENDER_ALIASES: &[(&str, &str)] = &[
    ("f", "female"),
    ("woman", "female"),
    ("m", "male"),
    ("man", "male"),
    ("x", "other"),
    ("non_binary", "other"),
];

/// Gender: `female` (`f`, `female`, `woman`), `male` (`m`, `male`, `man`), `other`
/// (`other`, `x`, `non-binary`), any case, surrounding white space ignored; empty →
/// [`UNKNOWN`]; anything else → [`UNKNOWN`], unrecognised.
pub fn gender(stored: &[u8]) -> Mapped {
    match stored_text(stored) {
        Some("") => Mapped::known(UNKNOWN),
        Some(g) => {
            lookup(g, &GENDERS, GENDER_ALIASES).map_or(Mapped::unrecognised(UNKNOWN), Mapped::known)
        }
        None => Mapped::unrecognised(UNKNOWN),
    }
}

/// The prefecture of a stored postal code ([`crate::area::area`]); empty → [`UNKNOWN`];
/// anything that is not a Japanese postal code → [`UNKNOWN`], unrecognised.
pub fn area(stored: &[u8]) -> Mapped {
    match stored_text(stored) {
        Some("") => Mapped::known(UNKNOWN),
        Some(zip) => match crate::area::area(zip) {
            UNKNOWN => Mapped::unrecognised(UNKNOWN),
            prefecture => Mapped::known(prefecture),
        },
        None => Mapped::unrecognised(UNKNOWN),
    }
}

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

/// `v` (trimmed, non-empty) as one of `values`, directly or through `aliases`.
fn lookup(
    v: &str,
    values: &[&'static str],
    aliases: &[(&str, &'static str)],
) -> Option<&'static str> {
    values
        .iter()
        .copied()
        .find(|c| spells(v, c))
        .or_else(|| aliases.iter().find(|(a, _)| spells(v, a)).map(|(_, c)| *c))
}

/// `stored`, trimmed, as one of `values` (directly or through `aliases`); empty text is
/// [`UNKNOWN`], `other` itself [`OTHER`], and any other text (or bytes that are not UTF-8)
/// [`OTHER`], unrecognised.
fn one_of(stored: &[u8], values: &[&'static str], aliases: &[(&str, &'static str)]) -> Mapped {
    match stored_text(stored) {
        Some("") => Mapped::known(UNKNOWN),
        Some(v) if spells(v, OTHER) => Mapped::known(OTHER),
        Some(v) => lookup(v, values, aliases).map_or(Mapped::unrecognised(OTHER), Mapped::known),
        None => Mapped::unrecognised(OTHER),
    }
}

/// The top-level occupation ([`OCCUPATIONS`]) of a stored occupation, or [`OTHER`] /
/// [`UNKNOWN`].
pub fn occupation(stored: &[u8]) -> Mapped {
    one_of(stored, &OCCUPATIONS, OCCUPATION_ALIASES)
}

/// The JSIC division ([`INDUSTRIES`]) of a stored industry, or [`OTHER`] / [`UNKNOWN`].
pub fn industry(stored: &[u8]) -> Mapped {
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
    /// items are skipped. Also returns how many items were unrecognised (neither a listed
    /// interest, an alias nor `other`); an item that is not UTF-8 is an unrecognised one.
    pub fn parse(stored: &[u8]) -> (Self, u64) {
        let (mut bits, mut unrecognised) = (0, 0);
        for item in stored
            .split(|&b| b == b'|')
            .map(<[u8]>::trim_ascii)
            .filter(|i| !i.is_empty())
        {
            let m = one_of(item, &INTERESTS, INTEREST_ALIASES);
            if m.value == UNKNOWN {
                continue; // white space other than ASCII only
            }
            unrecognised += u64::from(!m.recognised);
            bits |= INTERESTS
                .iter()
                .position(|c| *c == m.value)
                .map_or(Self::OTHER_BIT, |i| 1 << i);
        }
        (Self(bits), unrecognised)
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

    fn g(stored: &str) -> (&'static str, bool) {
        let m = gender(stored.as_bytes());
        (m.value, m.recognised)
    }

    #[test]
    fn gender_maps_every_listed_spelling() {
        for (spellings, want) in [
            (
                &[
                    "f", "F", "female", "Female", "FEMALE", "woman", "Woman", "WOMAN", "fEmAlE",
                ][..],
                "female",
            ),
            (
                &["m", "M", "male", "Male", "MALE", "man", "Man", "MAN"][..],
                "male",
            ),
            (
                &[
                    "other",
                    "Other",
                    "OTHER",
                    "x",
                    "X",
                    "non-binary",
                    "Non-Binary",
                    "NON-BINARY",
                    "non_binary",
                    "non binary",
                ][..],
                "other",
            ),
        ] {
            for s in spellings {
                for padded in [s.to_string(), format!("  {s}\t"), format!("\n{s} ")] {
                    assert_eq!(g(&padded), (want, true), "{padded:?}");
                }
            }
        }
        for empty in ["", " ", "\t\n  "] {
            assert_eq!(g(empty), ("unknown", true), "{empty:?}");
        }
        for v in GENDERS {
            assert_eq!(g(v), (v, true));
        }
    }

    #[test]
    fn unrecognised_gender_is_unknown_never_the_text() {
        let long = "f".repeat(1 << 20);
        for stored in [
            "Alice@example.com",
            "alice@example.com",
            "+81 90-1234-5678",
            "090-1234-5678",
            "unknown",
            "fem",
            "females",
            "m f",
            "w",
            "prefer not to say",
            "女性",
            "Ｆ",
            long.as_str(),
        ] {
            assert_eq!(g(stored), ("unknown", false), "{stored:.40}");
        }
        for bytes in [&b"\xff"[..], b"f\xff", b"\xc3", b"\x80male"] {
            assert_eq!(gender(bytes), Mapped::unrecognised(UNKNOWN), "{bytes:?}");
        }
    }

    #[test]
    fn area_counts_what_is_not_a_postal_code() {
        assert_eq!(area(b" 100-0001 "), Mapped::known("tokyo"));
        assert_eq!(area(b""), Mapped::known(UNKNOWN));
        assert_eq!(area(b"  "), Mapped::known(UNKNOWN));
        for stored in [
            &b"alice@example.com"[..],
            b"+81 90-1234-5678",
            b"SW1A 1AA",
            b"000-0000",
            b"\xff100-0001",
            "1".repeat(1 << 20).as_bytes(),
        ] {
            assert_eq!(area(stored), Mapped::unrecognised(UNKNOWN), "{stored:.40?}");
        }
    }

    #[test]
    fn unrecognised_occupation_and_industry_are_other_and_counted() {
        assert_eq!(occupation(b" Other "), Mapped::known(OTHER));
        assert_eq!(industry(b"other"), Mapped::known(OTHER));
        assert_eq!(occupation(b" "), Mapped::known(UNKNOWN));
        let long = "x".repeat(1 << 20);
        for stored in [
            &b"alice@example.com"[..],
            b"+81 90-1234-5678",
            b"\xff\xfe",
            long.as_bytes(),
        ] {
            assert_eq!(occupation(stored), Mapped::unrecognised(OTHER));
            assert_eq!(industry(stored), Mapped::unrecognised(OTHER));
        }
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
            assert_eq!(occupation(stored.as_bytes()).value, want, "{stored}");
        }
        for v in OCCUPATIONS {
            assert_eq!(occupation(v.as_bytes()), Mapped::known(v));
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
            assert_eq!(industry(stored.as_bytes()).value, want, "{stored}");
        }
        for v in INDUSTRIES {
            assert_eq!(industry(v.as_bytes()), Mapped::known(v));
            assert!(!v.contains(' ') && v == v.to_lowercase());
        }
    }

    #[test]
    fn interests_are_a_set_with_other() {
        let (i, n) = Interests::parse(b"food|onsen");
        assert_eq!(i.iter().collect::<Vec<_>>(), ["food", "onsen"]);
        assert_eq!((i.len(), n), (2, 0));
        let (i, n) = Interests::parse(b" Onsen | hot springs|karaoke||FOOD|bowling|food ");
        assert_eq!(i.iter().collect::<Vec<_>>(), ["food", "onsen", "other"]);
        assert_eq!((i.len(), n), (3, 2), "karaoke and bowling are unrecognised");
        assert_eq!(Interests::parse(b"Other|food").1, 0);
        assert!(Interests::parse(b"").0.is_empty());
        assert!(Interests::parse(b" | ").0.is_empty());
        assert_eq!(Interests::parse(b"").0.iter().count(), 0);
        let (all, n) = Interests::parse(INTERESTS.join("|").as_bytes());
        assert_eq!(all.iter().collect::<Vec<_>>(), INTERESTS);
        assert_eq!(n, 0);
        let (i, n) = Interests::parse(b"food|\xff");
        assert_eq!(
            (i.iter().collect::<Vec<_>>(), n),
            (vec!["food", "other"], 1)
        );
        assert!(INTERESTS.len() < 31);
    }
}
