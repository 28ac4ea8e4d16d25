//! What a report is: bucket, dimensions, metrics, audience and purpose.

use std::fmt;

use logveil_privacy::{Dimension, Purpose};
use serde::Deserialize;

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
}

impl ReportSpec {
    /// Whether rows need an account join (a dimension or metric from accounts).
    pub fn needs_join(&self) -> bool {
        self.purpose.join_accounts
            && (self.dimensions.iter().any(|d| d.needs_account())
                || self.metrics.contains(&Metric::Accounts))
    }
}
