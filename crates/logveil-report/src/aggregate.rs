//! Mergeable, serialisable aggregation state.
//!
//! A [`ReportState`] holds exact per-cell state (view and byte counts, the set of visitor
//! pseudonyms, the set of account pseudonyms). Two states built from disjoint inputs merge
//! into the state of their union, which is what lets batch runs split work across threads
//! now, and edge agents ship partial states to an aggregator later. Disclosure control
//! runs only on the final, merged state ([`crate::disclose`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use logveil_accounts::JoinOutcome;
use logveil_parse::time::MICROS_PER_SECOND;
use logveil_privacy::generalize::{self, UNKNOWN};
use logveil_privacy::sanitize::{PageGroup, QueryValue};
use logveil_privacy::{Dimension, Event, Pseudonym};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, month_start, week_start};
use crate::spec::{Bucket, ReportSpec};

const MICROS_PER_HOUR: i64 = 3600 * MICROS_PER_SECOND;

/// The maps and sets of the per-event path: foldhash (seeded per process) instead of `SipHash`.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// Identifies a cell: bucket start plus one value per dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellKey {
    /// Start of the bucket: UTC microseconds for hourly reports, a day number otherwise.
    pub bucket: i64,
    /// The partition day (local calendar) this cell is written under.
    pub partition_day: i32,
    pub dims: Box<[Arc<str>]>,
    /// Pseudonymous exports only (`visitor_id = true`): the audience pseudonym of the
    /// visitor and the id of the key that made it. `None` in every aggregate report.
    #[serde(default)]
    pub visitor: Option<(Pseudonym, Arc<str>)>,
}

/// Exact state of one cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellState {
    pub views: u64,
    pub bytes: u64,
    /// Each visitor pseudonym with its views in this cell: the distinct count is the
    /// map's length; the per-visitor views are what differential privacy bounds.
    #[serde(with = "visitors_as_pairs")]
    pub visitors: FastMap<Pseudonym, u64>,
    pub accounts: FastSet<Pseudonym>,
}

impl CellState {
    /// Folds `other` (the same cell over other lines) into `self`.
    pub fn merge(&mut self, mut other: CellState) {
        // The smaller visitor table is folded into the larger (merging is commutative).
        if other.visitors.len() > self.visitors.len() {
            std::mem::swap(self, &mut other);
        }
        self.views += other.views;
        self.bytes += other.bytes;
        for (visitor, views) in other.visitors {
            *self.visitors.entry(visitor).or_default() += views;
        }
        self.accounts.extend(other.accounts);
    }

    /// Like [`CellState::merge`], without consuming `other`.
    pub fn merge_ref(&mut self, other: &CellState) {
        self.views += other.views;
        self.bytes += other.bytes;
        for (visitor, views) in &other.visitors {
            *self.visitors.entry(*visitor).or_default() += views;
        }
        self.accounts.extend(other.accounts.iter().copied());
    }
}

/// Join outcomes counted over a report's views.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCounts {
    pub joined: u64,
    pub no_account: u64,
    pub no_consent: u64,
    pub deleted: u64,
}

impl JoinCounts {
    fn add(&mut self, outcome: &JoinOutcome<'_>) {
        match outcome {
            JoinOutcome::Joined(_) => self.joined += 1,
            JoinOutcome::NoAccount => self.no_account += 1,
            JoinOutcome::NoConsent => self.no_consent += 1,
            JoinOutcome::Deleted => self.deleted += 1,
        }
    }

    fn merge(&mut self, other: &JoinCounts) {
        self.joined += other.joined;
        self.no_account += other.no_account;
        self.no_consent += other.no_consent;
        self.deleted += other.deleted;
    }
}

/// The state of one report over some part of the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    #[serde(with = "cells_as_pairs")]
    pub cells: FastMap<CellKey, CellState>,
    /// Every partition that had any parsed line, view or not (its partition is rewritten,
    /// possibly empty, so re-running a day replaces what was there), with the ids of the
    /// keys that pseudonymized its lines (for the file's `logveil.key_id`).
    pub partitions: BTreeMap<i32, BTreeSet<Arc<str>>>,
    /// Only for reports that join accounts.
    pub joins: Option<JoinCounts>,
}

impl ReportState {
    pub fn new(spec: &ReportSpec) -> Self {
        Self {
            joins: spec.needs_join().then(JoinCounts::default),
            ..Self::default()
        }
    }

    /// Folds `other` (built from other lines) into `self`.
    pub fn merge(&mut self, other: ReportState) {
        for (key, cell) in other.cells {
            match self.cells.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut mine) => mine.get_mut().merge(cell),
                // A cell only `other` has moves over whole: its tables are not rebuilt.
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(cell);
                }
            }
        }
        for (day, keys) in other.partitions {
            self.partitions.entry(day).or_default().extend(keys);
        }
        if let (Some(mine), Some(theirs)) = (&mut self.joins, &other.joins) {
            mine.merge(theirs);
        }
    }

    /// Adds one event. `join` is the account join for this report's purpose
    /// (only consulted when the report needs it).
    ///
    /// `visitor_id` is the visitor's audience pseudonym, given only for pseudonymous
    /// exports (`spec.visitor_id`); it splits cells per visitor.
    pub fn observe(
        &mut self,
        spec: &ReportSpec,
        calendar: &Calendar,
        event: &Event,
        join: JoinOutcome<'_>,
        visitor_id: Option<Pseudonym>,
    ) {
        let local_day = calendar.day_of(event.utc_micros);
        let (bucket, partition_day) = match spec.bucket {
            Bucket::Hour => {
                let hour = event.utc_micros.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR;
                (hour, calendar.day_of(hour))
            }
            Bucket::Day => (i64::from(local_day), local_day),
            Bucket::Week => (i64::from(week_start(local_day)), week_start(local_day)),
            Bucket::Month => (i64::from(month_start(local_day)), month_start(local_day)),
        };
        let keys = self.partitions.entry(partition_day).or_default();
        if !keys.contains(&event.key_id) {
            keys.insert(Arc::clone(&event.key_id));
        }
        if !spec.filters.admits(event, spec.include_bots) {
            return;
        }
        if let Some(joins) = &mut self.joins {
            joins.add(&join);
        }
        let account = match join {
            JoinOutcome::Joined(a) => Some(a),
            _ => None,
        };
        let dims: Box<[Arc<str>]> = spec
            .dimensions
            .iter()
            .map(|d| dimension_value(*d, event, account, local_day))
            .collect();
        // `interests` is multi-valued: the view also counts in the cell of each further interest.
        let more = other_interest_dims(spec, account, &dims);
        for dims in std::iter::once(dims).chain(more) {
            let cell = self
                .cells
                .entry(CellKey {
                    bucket,
                    partition_day,
                    dims,
                    visitor: visitor_id.map(|v| (v, Arc::clone(&event.key_id))),
                })
                .or_default();
            cell.views += 1;
            cell.bytes += event.bytes;
            *cell.visitors.entry(event.visitor).or_default() += 1;
            if let Some(account) = account {
                cell.accounts.insert(account.key);
            }
        }
    }

    /// Cells grouped by partition day (sorted), with every seen partition present, and
    /// the key ids used in each.
    pub fn into_partitions(self) -> BTreeMap<i32, Partition> {
        let mut parts: BTreeMap<i32, Partition> = self
            .partitions
            .into_iter()
            .map(|(day, keys)| {
                (
                    day,
                    Partition {
                        cells: Vec::new(),
                        key_ids: keys.iter().map(ToString::to_string).collect(),
                    },
                )
            })
            .collect();
        for (key, cell) in self.cells {
            parts
                .entry(key.partition_day)
                .or_default()
                .cells
                .push((key, cell));
        }
        for part in parts.values_mut() {
            part.cells.sort_by(|a, b| a.0.cmp(&b.0));
        }
        parts
    }
}

/// One partition's cells and the ids of the keys behind them.
#[derive(Debug, Default)]
pub struct Partition {
    pub cells: Vec<(CellKey, CellState)>,
    pub key_ids: Vec<String>,
}

fn status_class(status: Option<u16>) -> Arc<str> {
    match status {
        Some(s) => Arc::from(format!("{}xx", s / 100)),
        None => Arc::from("-"),
    }
}

/// For a report with `interests` and a joined account with several interests: `dims` (whose
/// `interests` value is the first interest, see [`dimension_value`]) with each further
/// interest instead. Empty (and no allocation) otherwise.
fn other_interest_dims(
    spec: &ReportSpec,
    account: Option<&logveil_accounts::Account>,
    dims: &[Arc<str>],
) -> Vec<Box<[Arc<str>]>> {
    let Some(account) = account.filter(|a| a.interests.len() > 1) else {
        return Vec::new();
    };
    let Some(i) = spec
        .dimensions
        .iter()
        .position(|d| *d == Dimension::Interests)
    else {
        return Vec::new();
    };
    account
        .interests
        .iter()
        .skip(1)
        .map(|interest| {
            let mut other: Box<[Arc<str>]> = dims.into();
            other[i] = Arc::from(interest);
            other
        })
        .collect()
}

fn dimension_value(
    dim: Dimension,
    event: &Event,
    account: Option<&logveil_accounts::Account>,
    day: i32,
) -> Arc<str> {
    match dim {
        Dimension::IpPrefix => event
            .ip_prefix
            .map_or_else(|| Arc::from(UNKNOWN), |p| Arc::from(p.to_string())),
        Dimension::Page => event
            .page
            .as_ref()
            .map_or_else(|| Arc::from("-"), logveil_privacy::Page::shared),
        Dimension::ReferrerDomain => event.referrer.shared(),
        Dimension::StatusClass => status_class(event.status),
        Dimension::AgeBand => {
            Arc::from(account.map_or(UNKNOWN, |a| generalize::age_band(a.birth_day, day)))
        }
        Dimension::Gender => Arc::from(account.map_or(UNKNOWN, |a| &*a.gender)),
        Dimension::DeviceClass => event.device.shared(),
        Dimension::BrowserFamily => event.browser.shared(),
        Dimension::UtmSource | Dimension::UtmMedium | Dimension::UtmCampaign => dim
            .query_param()
            .and_then(|p| event.query.get(p))
            .map_or_else(QueryValue::none_shared, QueryValue::shared),
        Dimension::PageGroup => event
            .page_group
            .as_ref()
            .map_or_else(|| Arc::from("-"), PageGroup::shared),
        Dimension::Area => Arc::from(account.map_or(UNKNOWN, |a| a.area)),
        Dimension::Occupation => Arc::from(account.map_or(UNKNOWN, |a| a.occupation)),
        Dimension::Industry => Arc::from(account.map_or(UNKNOWN, |a| a.industry)),
        // Multi-valued: the first interest here, the others from `other_interest_dims`.
        Dimension::Interests => Arc::from(
            account
                .and_then(|a| a.interests.iter().next())
                .unwrap_or(UNKNOWN),
        ),
    }
}

/// Visitor maps go as a list of pairs, like cells.
mod visitors_as_pairs {
    use super::{FastMap, Pseudonym};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &FastMap<Pseudonym, u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&Pseudonym, &u64)> = map.iter().collect();
        pairs.sort_unstable();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FastMap<Pseudonym, u64>, D::Error> {
        Ok(Vec::<(Pseudonym, u64)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// JSON and other self-describing formats need string map keys; cells go as a list of pairs.
mod cells_as_pairs {
    use super::{CellKey, CellState, FastMap};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        cells: &FastMap<CellKey, CellState>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&CellKey, &CellState)> = cells.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FastMap<CellKey, CellState>, D::Error> {
        Ok(Vec::<(CellKey, CellState)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}
