//! Ground truth, computed from the generated events (never by re-reading the files).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::accounts::Account;
use crate::logs::Event;
use crate::time::{self, civil_from_days, utc_day};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Visitor {
    Cookie(String),
    /// (client address, full user agent, UTC day number).
    Anon(String, String, i64),
}

impl Visitor {
    pub fn of(e: &Event) -> Self {
        match &e.jt_uid {
            Some(uid) => Self::Cookie(uid.clone()),
            None => Self::Anon(e.ip.clone(), e.ua.to_owned(), utc_day(e.t)),
        }
    }
}

pub const K_MIN: usize = 10;

#[derive(Debug, Serialize)]
pub struct HourlyRow {
    pub hour: String,
    pub page: String,
    pub views: u64,
    pub visitors: u64,
}

#[derive(Debug, Serialize)]
pub struct DailyRow {
    pub date: String,
    pub views: u64,
    pub visitors: u64,
}

#[derive(Debug, Serialize)]
pub struct ReferrerRow {
    pub date: String,
    pub referrer_domain: String,
    pub views: u64,
    pub visitors: u64,
}

#[derive(Debug, Serialize)]
pub struct DemographicsRow {
    pub date: String,
    pub age_band: String,
    pub gender: String,
    pub views: u64,
    pub visitors: u64,
}

/// The generalised account dimensions with a truth report `<name>_daily`: one row per date
/// and value, every cell (no suppression), joined like `demographics_daily`.
pub const ACCOUNT_DIMENSIONS: [&str; 4] = ["area", "occupation", "industry", "interests"];

#[derive(Debug)]
pub struct Truth {
    pub seed: u64,
    pub lines_total: u64,
    pub lines_rejected: BTreeMap<&'static str, u64>,
    pub page_views_hourly: Vec<HourlyRow>,
    pub visitors_daily: Vec<DailyRow>,
    pub referrers_daily: Vec<ReferrerRow>,
    pub demographics_daily: Vec<DemographicsRow>,
    pub demographics_daily_suppressed: u64,
    /// `area_daily`, `occupation_daily`, `industry_daily`, `interests_daily` (in
    /// [`ACCOUNT_DIMENSIONS`] order): rows `{date, <dimension>, views, visitors}`.
    pub account_dimensions_daily: [Vec<serde_json::Value>; 4],
    /// Not in truth.json: distinct visitors over both days, and suppressed cells per date.
    pub distinct_visitors: usize,
    pub suppressed_by_date: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Cell {
    views: u64,
    visitors: BTreeSet<Visitor>,
}

impl Cell {
    fn add(&mut self, v: &Visitor) {
        self.views += 1;
        if !self.visitors.contains(v) {
            self.visitors.insert(v.clone());
        }
    }
}

pub fn age_band(birth: (i64, u32, u32), on: (i64, u32, u32)) -> String {
    let age = on.0 - birth.0 - i64::from((on.1, on.2) < (birth.1, birth.2));
    match age {
        ..20 => "<20".to_owned(),
        90.. => "90+".to_owned(),
        _ => {
            let decade = age / 10 * 10;
            format!("{decade}-{}", decade + 9)
        }
    }
}

fn rows<K: Ord, R>(cells: BTreeMap<K, Cell>, mut f: impl FnMut(K, u64, u64) -> R) -> Vec<R> {
    cells
        .into_iter()
        .map(|(k, c)| f(k, c.views, c.visitors.len() as u64))
        .collect()
}

pub fn compute(
    seed: u64,
    events: &[Event],
    rejected: &BTreeMap<&'static str, u64>,
    accounts: &[Account],
) -> Truth {
    let joinable: HashMap<&str, &Account> = accounts
        .iter()
        .filter(|a| a.researchable())
        .flat_map(|a| a.cookies.iter().map(move |c| (c.as_str(), a)))
        .collect();

    let mut hourly: BTreeMap<(String, &str), Cell> = BTreeMap::new();
    let mut daily: BTreeMap<String, Cell> = BTreeMap::new();
    let mut referrers: BTreeMap<(String, &str), Cell> = BTreeMap::new();
    let mut demo: BTreeMap<(String, String, String), Cell> = BTreeMap::new();
    let mut by_dimension: [BTreeMap<(String, &str), Cell>; 4] = Default::default();
    let mut all = BTreeSet::new();

    for e in events.iter().filter(|e| e.is_view()) {
        let v = Visitor::of(e);
        let day = utc_day(e.t);
        let date = time::date_string(day);
        hourly
            .entry((time::hour_string(e.t), e.path))
            .or_default()
            .add(&v);
        daily.entry(date.clone()).or_default().add(&v);
        referrers
            .entry((date.clone(), e.referer_domain))
            .or_default()
            .add(&v);
        let account = e.jt_uid.as_deref().and_then(|c| joinable.get(c));
        let (band, gender) = match account {
            Some(a) => (
                a.birth_date.map_or_else(
                    || "unknown".to_owned(),
                    |b| age_band(b, civil_from_days(day)),
                ),
                a.labels.gender.to_owned(),
            ),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let unknown = vec!["unknown"];
        let values: [Vec<&str>; 4] = match account {
            Some(a) => [
                vec![a.labels.area],
                vec![a.labels.occupation],
                vec![a.labels.industry],
                if a.labels.interests.is_empty() {
                    unknown
                } else {
                    a.labels.interests.clone()
                },
            ],
            None => [unknown.clone(), unknown.clone(), unknown.clone(), unknown],
        };
        for (cells, values) in by_dimension.iter_mut().zip(values) {
            for value in values {
                cells.entry((date.clone(), value)).or_default().add(&v);
            }
        }
        demo.entry((date, band, gender)).or_default().add(&v);
        all.insert(v);
    }

    let mut suppressed_by_date: BTreeMap<String, u64> = BTreeMap::new();
    let mut demographics_daily = Vec::new();
    for ((date, age_band, gender), cell) in demo {
        if cell.visitors.len() >= K_MIN {
            demographics_daily.push(DemographicsRow {
                date,
                age_band,
                gender,
                views: cell.views,
                visitors: cell.visitors.len() as u64,
            });
        } else {
            *suppressed_by_date.entry(date).or_default() += 1;
        }
    }
    for date in daily.keys() {
        suppressed_by_date.entry(date.clone()).or_default();
    }

    let well_formed = events.len() as u64;
    Truth {
        seed,
        lines_total: well_formed + rejected.values().sum::<u64>(),
        lines_rejected: rejected.clone(),
        page_views_hourly: rows(hourly, |(hour, page), views, visitors| HourlyRow {
            hour,
            page: page.to_owned(),
            views,
            visitors,
        }),
        visitors_daily: rows(daily, |date, views, visitors| DailyRow {
            date,
            views,
            visitors,
        }),
        referrers_daily: rows(referrers, |(date, domain), views, visitors| ReferrerRow {
            date,
            referrer_domain: domain.to_owned(),
            views,
            visitors,
        }),
        demographics_daily_suppressed: suppressed_by_date.values().sum(),
        demographics_daily,
        account_dimensions_daily: {
            let mut k = 0;
            by_dimension.map(|cells| {
                let name = ACCOUNT_DIMENSIONS[k];
                k += 1;
                rows(cells, |(date, value), views, visitors| {
                    serde_json::json!({
                        "date": date,
                        name: value,
                        "views": views,
                        "visitors": visitors,
                    })
                })
            })
        },
        distinct_visitors: all.len(),
        suppressed_by_date,
    }
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

fn array<T: Serialize>(out: &mut String, name: &str, rows: &[T], last: bool) {
    let _ = writeln!(out, "    {}: [", json(name));
    for (i, row) in rows.iter().enumerate() {
        let comma = if i + 1 == rows.len() { "" } else { "," };
        let _ = writeln!(out, "      {}{comma}", json(row));
    }
    let _ = writeln!(out, "    ]{}", if last { "" } else { "," });
}

impl Truth {
    pub fn lines_parsed(&self) -> u64 {
        self.lines_total - self.lines_rejected.values().sum::<u64>()
    }

    /// `truth.json`: valid JSON, one report row per line so diffs stay readable.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"seed\": {},", self.seed);
        let _ = writeln!(out, "  \"lines_total\": {},", self.lines_total);
        let _ = writeln!(out, "  \"lines_rejected\": {},", json(&self.lines_rejected));
        let _ = writeln!(out, "  \"lines_parsed\": {},", self.lines_parsed());
        out.push_str("  \"reports\": {\n");
        array(
            &mut out,
            "page_views_hourly",
            &self.page_views_hourly,
            false,
        );
        array(&mut out, "visitors_daily", &self.visitors_daily, false);
        array(&mut out, "referrers_daily", &self.referrers_daily, false);
        array(
            &mut out,
            "demographics_daily",
            &self.demographics_daily,
            false,
        );
        let _ = writeln!(
            out,
            "    \"demographics_daily_suppressed\": {},",
            self.demographics_daily_suppressed
        );
        for (k, name) in ACCOUNT_DIMENSIONS.iter().enumerate() {
            array(
                &mut out,
                &format!("{name}_daily"),
                &self.account_dimensions_daily[k],
                k + 1 == ACCOUNT_DIMENSIONS.len(),
            );
        }
        out.push_str("  }\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::age_band;

    #[test]
    fn age_bands_use_full_years() {
        assert_eq!(age_band((1996, 11, 2), (2026, 11, 1)), "20-29");
        assert_eq!(age_band((1996, 11, 2), (2026, 11, 2)), "30-39");
        assert_eq!(age_band((2006, 11, 2), (2026, 11, 1)), "<20");
        assert_eq!(age_band((1936, 11, 2), (2026, 11, 2)), "90+");
        assert_eq!(age_band((1988, 2, 29), (2026, 11, 1)), "30-39");
    }
}
