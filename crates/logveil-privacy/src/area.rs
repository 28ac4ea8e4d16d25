//! Japanese postal code → prefecture, for the `area` dimension.
//!
//! Source: the ranges of the first three digits that Japan Post (日本郵便) assigns to each
//! prefecture, as published in its postal code lists (郵便番号データ, `ken_all`). A
//! three-digit prefix is a delivery region, and the regions nest inside prefectures with
//! few exceptions, so a prefix decides the prefecture.
//!
//! Known coarse approximations (the table has 3-digit granularity, nothing finer):
//! - a handful of 7-digit codes lie across a prefectural border from the rest of their
//!   prefix: e.g. `498-08xx` (Kisosaki, Mie) under Aichi's `498`, and `618-00xx`
//!   (Shimamoto, Osaka) under Kyoto's `618`; they are counted in the prefix's prefecture;
//! - prefixes that Japan Post has not assigned inside a prefecture's block (e.g. some of
//!   `008`–`009`, `217`–`219`) map to that block's prefecture; codes are not checked
//!   against the full list of assigned codes;
//! - `209` and `499` fall between blocks and, like `000`, give `unknown`.
//!
//! Anything that is not a 7-digit code (`NNN-NNNN` or `NNNNNNN`; full-width digits and
//! hyphens, and a leading `〒`, are accepted) is `unknown`.

use crate::generalize::UNKNOWN;

/// Every prefecture label [`area`] can return, besides [`UNKNOWN`]: the romanised name in
/// lower case, without `-to`/`-fu`/`-ken`, in the JIS X 0401 order.
pub const PREFECTURES: [&str; 47] = [
    "hokkaido",
    "aomori",
    "iwate",
    "miyagi",
    "akita",
    "yamagata",
    "fukushima",
    "ibaraki",
    "tochigi",
    "gunma",
    "saitama",
    "chiba",
    "tokyo",
    "kanagawa",
    "niigata",
    "toyama",
    "ishikawa",
    "fukui",
    "yamanashi",
    "nagano",
    "gifu",
    "shizuoka",
    "aichi",
    "mie",
    "shiga",
    "kyoto",
    "osaka",
    "hyogo",
    "nara",
    "wakayama",
    "tottori",
    "shimane",
    "okayama",
    "hiroshima",
    "yamaguchi",
    "tokushima",
    "kagawa",
    "ehime",
    "kochi",
    "fukuoka",
    "saga",
    "nagasaki",
    "kumamoto",
    "oita",
    "miyazaki",
    "kagoshima",
    "okinawa",
];

/// `(first prefix, last prefix, prefecture)`, sorted and non-overlapping; a prefix in no
/// range is [`UNKNOWN`].
pub const PREFIX_RANGES: [(u16, u16, &str); 48] = [
    (1, 9, "hokkaido"), // Sapporo
    (10, 19, "akita"),
    (20, 29, "iwate"),
    (30, 39, "aomori"),
    (40, 99, "hokkaido"),
    (100, 208, "tokyo"), // 100-0xxx includes the Izu and Ogasawara islands
    (210, 259, "kanagawa"),
    (260, 299, "chiba"),
    (300, 319, "ibaraki"),
    (320, 329, "tochigi"),
    (330, 369, "saitama"),
    (370, 379, "gunma"),
    (380, 399, "nagano"),
    (400, 409, "yamanashi"),
    (410, 439, "shizuoka"),
    (440, 498, "aichi"),
    (500, 509, "gifu"),
    (510, 519, "mie"),
    (520, 529, "shiga"),
    (530, 599, "osaka"),
    (600, 629, "kyoto"),
    (630, 639, "nara"),
    (640, 649, "wakayama"),
    (650, 679, "hyogo"),
    (680, 689, "tottori"),
    (690, 699, "shimane"),
    (700, 719, "okayama"),
    (720, 739, "hiroshima"),
    (740, 759, "yamaguchi"),
    (760, 769, "kagawa"),
    (770, 779, "tokushima"),
    (780, 789, "kochi"),
    (790, 799, "ehime"),
    (800, 839, "fukuoka"),
    (840, 849, "saga"),
    (850, 859, "nagasaki"),
    (860, 869, "kumamoto"),
    (870, 879, "oita"),
    (880, 889, "miyazaki"),
    (890, 899, "kagoshima"),
    (900, 909, "okinawa"),
    (910, 919, "fukui"),
    (920, 929, "ishikawa"),
    (930, 939, "toyama"),
    (940, 959, "niigata"),
    (960, 979, "fukushima"),
    (980, 989, "miyagi"),
    (990, 999, "yamagata"),
];

/// The prefecture of a three-digit prefix (`0..=999`), or [`UNKNOWN`].
pub fn prefecture_of_prefix(prefix: u16) -> &'static str {
    let i = PREFIX_RANGES.partition_point(|&(_, last, _)| last < prefix);
    match PREFIX_RANGES.get(i) {
        Some(&(first, _, name)) if first <= prefix => name,
        _ => UNKNOWN,
    }
}

/// The three-digit prefix of a Japanese postal code, if `zip` is one: seven digits with an
/// optional hyphen after the third, surrounding white space and a leading `〒` ignored;
/// full-width digits and the usual hyphen look-alikes are accepted.
pub fn postal_prefix(zip: &str) -> Option<u16> {
    let zip = zip.trim();
    let zip = zip.strip_prefix('〒').unwrap_or(zip).trim_start();
    let mut digits = [0u8; 7];
    let mut n = 0;
    let mut hyphen = false;
    for c in zip.chars() {
        let digit = match c {
            '0'..='9' => Some(c as u32 - '0' as u32),
            '０'..='９' => Some(c as u32 - '０' as u32),
            '-' | '－' | '‐' | '‑' | '–' | '−' | 'ー' => None,
            _ => return None,
        };
        match digit {
            Some(d) if n < 7 => {
                digits[n] = d as u8;
                n += 1;
            }
            None if n == 3 && !hyphen => hyphen = true,
            _ => return None,
        }
    }
    (n == 7).then(|| u16::from(digits[0]) * 100 + u16::from(digits[1]) * 10 + u16::from(digits[2]))
}

/// The prefecture of a Japanese postal code; [`UNKNOWN`] for anything else (empty, foreign,
/// malformed, or a prefix no prefecture has).
pub fn area(zip: &str) -> &'static str {
    postal_prefix(zip).map_or(UNKNOWN, prefecture_of_prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_disjoint_and_names_every_prefecture() {
        for w in PREFIX_RANGES.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
        for name in PREFECTURES {
            assert!(
                PREFIX_RANGES.iter().any(|r| r.2 == name),
                "{name} has no range"
            );
        }
        for r in PREFIX_RANGES {
            assert!(PREFECTURES.contains(&r.2), "{}", r.2);
        }
        assert_eq!(PREFIX_RANGES.last().unwrap().1, 999);
    }

    #[test]
    fn prefecture_boundaries() {
        let cases = [
            ("000-0000", "unknown"),
            ("001-0010", "hokkaido"),
            ("009-9999", "hokkaido"),
            ("010-0001", "akita"),
            ("019-0000", "akita"),
            ("020-0001", "iwate"),
            ("039-9999", "aomori"),
            ("040-0001", "hokkaido"),
            ("060-0001", "hokkaido"),
            ("099-9999", "hokkaido"),
            ("100-0001", "tokyo"),
            ("150-0002", "tokyo"),
            ("208-0001", "tokyo"),
            ("209-0000", "unknown"),
            ("210-0001", "kanagawa"),
            ("259-0000", "kanagawa"),
            ("260-0001", "chiba"),
            ("299-9999", "chiba"),
            ("300-0001", "ibaraki"),
            ("440-0001", "aichi"),
            ("498-0001", "aichi"),
            ("499-0000", "unknown"),
            ("500-0001", "gifu"),
            ("529-9999", "shiga"),
            ("530-0001", "osaka"),
            ("599-8531", "osaka"),
            ("600-8216", "kyoto"),
            ("629-9999", "kyoto"),
            ("630-8501", "nara"),
            ("650-0001", "hyogo"),
            ("679-9999", "hyogo"),
            ("800-0001", "fukuoka"),
            ("839-9999", "fukuoka"),
            ("900-0001", "okinawa"),
            ("909-9999", "okinawa"),
            ("910-0001", "fukui"),
            ("980-0001", "miyagi"),
            ("990-0001", "yamagata"),
            ("999-9999", "yamagata"),
        ];
        for (i, (zip, want)) in cases.into_iter().enumerate() {
            assert_eq!(area(zip), want, "case {i}");
        }
    }

    #[test]
    fn accepted_spellings() {
        for zip in [
            "1500002",
            " 150-0002 ",
            "〒150-0002",
            "〒 1500002",
            "１５０－０００２",
            "１５００００２",
            "150ー0002",
            "150−0002",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(area(zip.1), "tokyo", "spelling {}", zip.0);
        }
    }

    #[test]
    fn invalid_codes_are_unknown() {
        for zip in [
            "",
            "   ",
            "150",
            "150-000",
            "150-00021",
            "15-00002",
            "1500-002",
            "150--0002",
            "150 0002",
            "-1500002",
            "1500002-",
            "SW1A 1AA",
            "90210",
            "90210-1234",
            "abc-defg",
            "１５０-000a",
            "〒",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(area(zip.1), UNKNOWN, "case {}", zip.0);
        }
    }
}
