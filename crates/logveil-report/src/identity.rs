//! Release identities: explicit, versioned encodings of what decides a release's numbers.
//!
//! A release is one partition of one report given to one audience. Its identity
//! ([`ReleaseId`], `lvr1-` + 64 hex digits) is BLAKE3 over:
//!
//! 1. the context `logveil release id v1`;
//! 2. the report's **definition** ([`definition_encoding`]): what the report counts and how
//!    it is protected, as resolved from the pipeline and the policy — name, audience,
//!    purpose (whether it joins accounts, the consent flag, the contact opt-out; not its
//!    description), bucket, dimensions, metrics, bots, filters, totals, `k_min`,
//!    complementary suppression, the DP parameters and the perturbation table. Budgets are
//!    not in it (they decide whether a release may happen, not its numbers), nor the
//!    policy file's bytes: editing a description or a comment, or upgrading a dependency,
//!    leaves the identity alone;
//! 3. the id of the key whose secret seeds the noise;
//! 4. the partition day;
//! 5. the **true aggregated state** of the partition in canonical order: every cell (bucket,
//!    dimension values, views, bytes, each visitor pseudonym with its views, each account
//!    pseudonym), sorted. This one digest covers the inputs, the accounts snapshot and the
//!    key at once (pseudonyms are keyed hashes), costs nothing per input byte, and is the
//!    same whichever of `run`, `daemon` or `merge` built the state, over any split of the
//!    input and any thread count.
//!
//! Every variable-length part is written as a little-endian `u64` length and its bytes, so
//! two different states never encode alike. Same identity ⇒ same noise and no new charge;
//! anything else is a new release ([`crate::release`]).

use std::fmt;

use crate::aggregate::{CellKey, CellState};
use crate::spec::ReportSpec;

/// The version prefix of [`ReleaseId`]s this code writes.
pub const RELEASE_ID_PREFIX: &str = "lvr1-";

const RELEASE_CONTEXT: &[u8] = b"logveil release id v1";
const DEFINITION_VERSION: &str = "logveil report definition v1";

/// The identity of one release (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(String);

impl ReleaseId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A length-prefixed byte encoder: every part is `len (u64 LE) ‖ bytes`.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn new(context: &[u8]) -> Self {
        let mut e = Self(blake3::Hasher::new());
        e.bytes(context);
        e
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.update(&v.to_le_bytes());
    }

    fn flag(&mut self, v: bool) {
        self.0.update(&[u8::from(v)]);
    }
}

/// The canonical encoding of a report's definition, as text (one `key=value` per line, in
/// a fixed order; values that come from users are length-prefixed). Stable across
/// releases of logveil for the same definition: a change here changes every identity, so
/// it is versioned (`logveil report definition v1`).
pub fn definition_encoding(spec: &ReportSpec) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = format!("{DEFINITION_VERSION}\n");
    let mut field = |key: &str, value: &str| {
        let _ = writeln!(out, "{key}={}:{value}", value.len());
    };
    field("name", &spec.name);
    field("audience", &spec.audience);
    field("purpose", &spec.purpose_name);
    field(
        "purpose.join_accounts",
        bool_text(spec.purpose.join_accounts),
    );
    field(
        "purpose.consent",
        spec.purpose.consent.map_or("", |c| c.as_str()),
    );
    field("purpose.contact", bool_text(spec.purpose.contact));
    field("bucket", spec.bucket.column());
    let dims: Vec<&str> = spec.dimensions.iter().map(|d| d.as_str()).collect();
    field("dimensions", &dims.join(","));
    let metrics: Vec<&str> = spec.metrics.iter().map(|m| m.as_str()).collect();
    field("metrics", &metrics.join(","));
    field("include_bots", bool_text(spec.include_bots));
    field("k_min", &spec.k_min.to_string());
    field("visitor_id", bool_text(spec.visitor_id));
    let classes: Vec<String> = spec
        .filters
        .status_classes
        .iter()
        .map(ToString::to_string)
        .collect();
    field("filters.status_classes", &classes.join(","));
    field(
        "filters.path_prefixes",
        &spec.filters.path_prefixes.len().to_string(),
    );
    for prefix in &spec.filters.path_prefixes {
        field("filters.path_prefix", prefix);
    }
    field("totals", bool_text(spec.totals));
    field(
        "complementary_suppression",
        bool_text(spec.complementary_suppression),
    );
    field("external", bool_text(spec.external));
    field("legal_class", spec.legal_class.as_str());
    match &spec.dp {
        Some(dp) => {
            field("dp.epsilon", &dp.epsilon.to_string());
            field("dp.delta", &dp.delta.to_string());
            field(
                "dp.max_cells_per_visitor",
                &dp.max_cells_per_visitor.to_string(),
            );
            field("dp.max_views_per_cell", &dp.max_views_per_cell.to_string());
            field("dp.public_keys", bool_text(dp.public_keys));
        }
        None => field("dp", "none"),
    }
    match &spec.perturbation {
        Some(method) => field("perturbation", &method.metadata_json()),
        None => field("perturbation", "none"),
    }
    out.into_bytes()
}

fn bool_text(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

/// The identity of the release of `cells` (one partition's true state) for `spec`, with
/// noise seeded by the key `noise_key_id`.
pub fn release_id(
    spec: &ReportSpec,
    noise_key_id: &str,
    partition_day: i32,
    cells: &[(CellKey, CellState)],
) -> ReleaseId {
    let mut e = Encoder::new(RELEASE_CONTEXT);
    e.bytes(&definition_encoding(spec));
    e.text(noise_key_id);
    e.i64(i64::from(partition_day));
    let mut sorted: Vec<&(CellKey, CellState)> = cells.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    e.u64(sorted.len() as u64);
    for (key, cell) in sorted {
        e.i64(key.bucket);
        e.i64(i64::from(key.partition_day));
        e.u64(key.dims.len() as u64);
        for d in &key.dims {
            e.text(d);
        }
        match &key.visitor {
            Some((visitor, key_id)) => {
                e.flag(true);
                e.bytes(visitor.as_bytes());
                e.text(key_id);
            }
            None => e.flag(false),
        }
        e.u64(cell.views);
        e.u64(cell.bytes);
        let mut visitors: Vec<(&logveil_privacy::Pseudonym, &u64)> = cell.visitors.iter().collect();
        visitors.sort_unstable();
        e.u64(visitors.len() as u64);
        for (visitor, views) in visitors {
            e.0.update(visitor.as_bytes());
            e.u64(*views);
        }
        let mut accounts: Vec<&logveil_privacy::Pseudonym> = cell.accounts.iter().collect();
        accounts.sort_unstable();
        e.u64(accounts.len() as u64);
        for account in accounts {
            e.0.update(account.as_bytes());
        }
    }
    ReleaseId(format!(
        "{RELEASE_ID_PREFIX}{}",
        e.0.finalize().to_hex().as_str()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use logveil_privacy::{Dimension, Pseudonym, Purpose};

    use super::*;
    use crate::spec::{Bucket, Filters, LegalClass, Metric};

    fn spec() -> ReportSpec {
        ReportSpec {
            name: "demographics_daily".into(),
            audience: "partner".into(),
            purpose_name: "anonymous_reporting".into(),
            purpose: Purpose {
                description: "vi) anonymous reporting".into(),
                join_accounts: true,
                consent: Some(logveil_privacy::ConsentColumn::ConsentResearch),
                contact: false,
            },
            bucket: Bucket::Day,
            dimensions: vec![Dimension::AgeBand, Dimension::Gender],
            metrics: vec![Metric::Views, Metric::Visitors],
            include_bots: false,
            k_min: 10,
            visitor_id: false,
            filters: Filters::default(),
            totals: false,
            complementary_suppression: true,
            dp: None,
            legal_class: LegalClass::Statistics,
            external: true,
            perturbation: None,
        }
    }

    fn pseudonym(i: u8) -> Pseudonym {
        serde_json::from_str(&format!("[{i},1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]")).unwrap()
    }

    fn cells(order: &[u8]) -> Vec<(CellKey, CellState)> {
        let mut cell = CellState::default();
        for i in order {
            cell.views += 2;
            cell.visitors.insert(pseudonym(*i), 2);
        }
        vec![(
            CellKey {
                bucket: 20_393,
                partition_day: 20_393,
                dims: vec![Arc::from("30-39"), Arc::from("f")].into_boxed_slice(),
                visitor: None,
            },
            cell,
        )]
    }

    /// Pins the encoding: a change here changes every release identity (and so every
    /// DP noise draw and ledger entry), so it must be a new version, on purpose.
    #[test]
    fn release_id_is_pinned() {
        let id = release_id(&spec(), "demo-2026", 20_393, &cells(&[1, 2, 3]));
        assert_eq!(
            id.as_str(),
            "lvr1-62200917d5d46c52a792bb4c69d23c5c9256ea57ee8c10371411612d0eeabbf4",
            "the release identity encoding changed"
        );
    }

    #[test]
    fn release_id_depends_on_the_set_not_the_order() {
        assert_eq!(
            release_id(&spec(), "k", 1, &cells(&[1, 2, 3])),
            release_id(&spec(), "k", 1, &cells(&[3, 1, 2]))
        );
    }

    #[test]
    fn a_description_does_not_change_the_identity_but_the_rules_do() {
        let base = release_id(&spec(), "k", 1, &cells(&[1, 2]));
        let mut described = spec();
        described.purpose.description = "edited".into();
        assert_eq!(release_id(&described, "k", 1, &cells(&[1, 2])), base);
        let mut stricter = spec();
        stricter.purpose.contact = true;
        assert_ne!(release_id(&stricter, "k", 1, &cells(&[1, 2])), base);
        assert_ne!(release_id(&spec(), "other-key", 1, &cells(&[1, 2])), base);
        assert_ne!(release_id(&spec(), "k", 2, &cells(&[1, 2])), base);
        assert_ne!(release_id(&spec(), "k", 1, &cells(&[1, 2, 3])), base);
        let mut k = spec();
        k.k_min = 11;
        assert_ne!(release_id(&k, "k", 1, &cells(&[1, 2])), base);
    }

    #[test]
    fn the_definition_encoding_is_versioned_text() {
        let text = String::from_utf8(definition_encoding(&spec())).unwrap();
        assert!(text.starts_with("logveil report definition v1\n"), "{text}");
        assert!(text.contains("dimensions=15:age_band,gender\n"), "{text}");
        assert!(
            !text.contains("anonymous reporting"),
            "descriptions stay out: {text}"
        );
    }
}
