//! What a report is: bucket, dimensions, metrics, audience and purpose.

use std::fmt;

use logveil_privacy::{Dimension, Event, Purpose};
use serde::Deserialize;

use crate::dp::Rational;
use crate::ledger::Budget;

/// The time bucket of a report row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Start of the UTC hour, a `TIMESTAMP(MICROS, UTC)` column named `hour`.
    Hour,
    /// Calendar day in the pipeline's time zone, a `DATE` column named `date`.
    Day,
    /// Monday of the ISO week, a `DATE` column named `week`.
    Week,
    /// First day of the month, a `DATE` column named `month`.
    Month,
}

impl Bucket {
    pub const fn column(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "date",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// A number a report publishes per cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Number of views.
    Views,
    /// Distinct visitor pseudonyms.
    Visitors,
    /// Sum of response bytes of the views.
    Bytes,
    /// Distinct joined accounts.
    Accounts,
}

impl Metric {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Views => "views",
            Self::Visitors => "visitors",
            Self::Bytes => "bytes",
            Self::Accounts => "accounts",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated report definition, with what the policy says about it resolved.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    pub name: String,
    pub audience: String,
    pub purpose_name: String,
    pub purpose: Purpose,
    pub bucket: Bucket,
    pub dimensions: Vec<Dimension>,
    pub metrics: Vec<Metric>,
    pub include_bots: bool,
    /// From the audience: minimum distinct visitors behind a published cell.
    pub k_min: u32,
    /// A pseudonymous export: one row per visitor and cell, with `visitor_id` and
    /// `key_id` columns; only for audiences with `pseudonymous = true`.
    pub visitor_id: bool,
    /// Which requests count, besides `include_bots`.
    pub filters: Filters,
    /// Also publish a total per bucket and per value of the first dimension (rows marked
    /// in the `total` column, the dimensions they sum over left null).
    pub totals: bool,
    /// From the audience: withhold further cells so no withheld cell can be derived from
    /// published cells and totals ([`crate::suppress`]).
    pub complementary_suppression: bool,
    /// From the audience: differential privacy for this report's releases.
    pub dp: Option<DpSpec>,
    /// From the audience: what the files are in law (`logveil.legal_class`).
    pub legal_class: LegalClass,
    /// From the audience: a client outside the site. Its files carry no count that did
    /// not go through the same protection as the cells ([`crate::release`]).
    pub external: bool,
    /// From the audience: cell-key perturbation of published cells
    /// ([`crate::cellkey`]); the default for external audiences without DP.
    pub perturbation: Option<std::sync::Arc<crate::cellkey::CellKeyMethod>>,
}

/// Request filters of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    /// Status classes counted (`2` for `2xx`); views are `2xx` and `3xx` by default.
    pub status_classes: Vec<u16>,
    /// When non-empty, only pages starting with one of these (sanitised paths).
    pub path_prefixes: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            status_classes: vec![2, 3],
            path_prefixes: Vec::new(),
        }
    }
}

impl Filters {
    /// Whether `event` counts for a report with these filters: a GET of a page with a
    /// status in the report's classes, not a bot unless `include_bots`.
    pub fn admits(&self, event: &Event, include_bots: bool) -> bool {
        use logveil_privacy::Method;
        if event.method != Method::Get || (event.bot && !include_bots) {
            return false;
        }
        let Some(status) = event.status else {
            return false;
        };
        if !self.status_classes.contains(&(status / 100)) {
            return false;
        }
        let Some(page) = &event.page else {
            return false;
        };
        self.path_prefixes.is_empty()
            || self
                .path_prefixes
                .iter()
                .any(|prefix| page.as_str().starts_with(prefix.as_str()))
    }

    /// The filters as written into file metadata.
    pub fn describe(&self) -> String {
        let classes: Vec<String> = self
            .status_classes
            .iter()
            .map(|c| format!("{c}xx"))
            .collect();
        format!(
            "status in [{}]; path prefixes [{}]",
            classes.join(","),
            self.path_prefixes.join(",")
        )
    }
}

/// What a release is, legally, as the policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum LegalClass {
    /// Pseudonymous data (仮名加工情報-like): internal use only.
    #[serde(rename = "internal-pseudonymous")]
    InternalPseudonymous,
    /// Statistics from which no individual can be identified.
    #[serde(rename = "statistics")]
    Statistics,
}

impl LegalClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InternalPseudonymous => "internal-pseudonymous",
            Self::Statistics => "statistics",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "internal-pseudonymous" => Some(Self::InternalPseudonymous),
            "statistics" => Some(Self::Statistics),
            _ => None,
        }
    }
}

/// The budget period a ledger entry is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

/// Differential privacy for a report (from its audience).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpSpec {
    /// ε of one bucket's release (split between the metrics; see [`crate::release`]).
    pub epsilon: Rational,
    /// δ of one bucket's release: the chance a key with one visitor is released anyway.
    pub delta: Rational,
    pub max_cells_per_visitor: u64,
    pub max_views_per_cell: u64,
    /// Publish every combination of the dimensions' public value lists (noise on zeros
    /// too, no threshold) instead of thresholding data-dependent keys.
    pub public_keys: bool,
    pub budget: Budget,
    pub period: BudgetPeriod,
}

impl ReportSpec {
    /// Whether rows need an account join (a dimension or metric from accounts).
    pub fn needs_join(&self) -> bool {
        self.purpose.join_accounts
            && (self.dimensions.iter().any(|d| d.needs_account())
                || self.metrics.contains(&Metric::Accounts))
    }
}
