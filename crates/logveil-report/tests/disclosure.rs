//! Disclosure control end to end over random tables: every published cell of a k-audience
//! report has at least k true distinct visitors, and with complementary suppression no
//! withheld cell (or withheld total) can be recomputed from what is published.
//!
//! The attacker modelled here knows every published cell and total, and knows that a
//! combination absent from the data is zero (the strongest assumption: a real reader cannot
//! tell "absent" from "withheld"). Column totals of two-dimensional tables are not printed by
//! the report, so they are unknowns.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use logveil_privacy::{Dimension, Pseudonym, Purpose};
use logveil_report::disclose::{Total, disclose};
use logveil_report::suppress::unprotected_2d;
use logveil_report::{Bucket, CellKey, CellState, Filters, LegalClass, Metric, ReportSpec};
use proptest::prelude::*;

fn spec(dims: usize, k_min: u32, totals: bool, complementary: bool) -> ReportSpec {
    ReportSpec {
        name: "t".into(),
        audience: "a".into(),
        purpose_name: "p".into(),
        purpose: Purpose {
            description: String::new(),
            join_accounts: false,
            consent: None,
            contact: false,
        },
        bucket: Bucket::Day,
        dimensions: [Dimension::Page, Dimension::ReferrerDomain][..dims].to_vec(),
        metrics: vec![Metric::Views, Metric::Visitors],
        include_bots: false,
        k_min,
        visitor_id: false,
        filters: Filters::default(),
        totals,
        complementary_suppression: complementary,
        dp: None,
        legal_class: LegalClass::Statistics,
        external: false,
        perturbation: None,
    }
}

fn pseudonym(i: u8) -> Pseudonym {
    // Pseudonyms are opaque; any distinct 16 bytes do (serde is the public constructor).
    serde_json::from_value(serde_json::json!([
        i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    ]))
    .unwrap()
}

/// (visitor, bucket, row value, column value).
type Event = (u8, i64, u8, u8);

/// A cell or total of the truth: bucket, which total (none for a cell), dimension values.
type CellId = (i64, Option<Total>, Vec<String>);

fn cells(events: &[Event], dims: usize) -> Vec<(CellKey, CellState)> {
    let mut map: BTreeMap<CellKey, CellState> = BTreeMap::new();
    for &(v, bucket, r, c) in events {
        let all: [Arc<str>; 2] = [Arc::from(format!("r{r}")), Arc::from(format!("c{c}"))];
        let key = CellKey {
            bucket,
            partition_day: 0,
            dims: all[..dims].to_vec().into_boxed_slice(),
            visitor: None,
        };
        let cell = map.entry(key).or_default();
        cell.views += 1;
        *cell.visitors.entry(pseudonym(v)).or_default() += 1;
    }
    map.into_iter().collect()
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0u8..40, 0i64..2, 0u8..4, 0u8..4), 1..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn published_cells_have_k_visitors_and_withheld_cells_stay_hidden(
        events in events(),
        dims in 1usize..=2,
        k in 1u32..8,
        totals in any::<bool>(),
    ) {
        let spec = spec(dims, k, totals, true);
        let input = cells(&events, dims);
        let disclosed = disclose(&spec, input.clone(), None, 0, &[0]).unwrap();

        // True distinct visitors of every cell and total, from the events.
        let key_of = |r: u8, c: u8| -> Vec<String> {
            [format!("r{r}"), format!("c{c}")][..dims].to_vec()
        };
        let mut truth: BTreeMap<CellId, HashSet<u8>> = BTreeMap::new();
        for &(v, b, r, c) in &events {
            truth.entry((b, None, key_of(r, c))).or_default().insert(v);
            truth.entry((b, Some(Total::Bucket), vec![String::new(); dims])).or_default().insert(v);
            if dims == 2 {
                truth.entry((b, Some(Total::FirstDimension), vec![format!("r{r}"), String::new()]))
                    .or_default()
                    .insert(v);
            }
        }
        let mut published = BTreeSet::new();
        for row in &disclosed.rows {
            let dims_text: Vec<String> = row.key.dims.iter().map(ToString::to_string).collect();
            let id = (row.key.bucket, row.total, dims_text);
            let true_visitors = truth.get(&id).map_or(0, HashSet::len);
            prop_assert!(true_visitors >= k as usize, "published {id:?} has {true_visitors} < {k}");
            prop_assert_eq!(row.visitors as usize, true_visitors, "exact counts");
            prop_assert!(totals || row.total.is_none());
            published.insert(id);
        }
        // Every cell at or above k is published unless complementary suppression took it.
        let withheld_big = input
            .iter()
            .filter(|(key, cell)| {
                cell.visitors.len() >= k as usize
                    && !published.contains(&(
                        key.bucket,
                        None,
                        key.dims.iter().map(ToString::to_string).collect(),
                    ))
            })
            .count() as u64;
        prop_assert!(withheld_big <= disclosed.secondary);

        // Recoverability, bucket by bucket.
        for bucket in 0..2 {
            let interior: Vec<(&CellId, usize)> = truth
                .iter()
                .filter(|((b, t, _), _)| *b == bucket && t.is_none())
                .map(|(id, v)| (id, v.len()))
                .collect();
            if interior.is_empty() {
                continue;
            }
            let grand_known = published.contains(&(bucket, Some(Total::Bucket), vec![String::new(); dims]));
            if dims == 1 {
                let hidden = interior.iter().filter(|(id, _)| !published.contains(id)).count();
                // With the total printed, one hidden cell is the total minus the others.
                prop_assert!(!(grand_known && hidden == 1), "bucket {bucket}: a lone withheld cell beside a printed total");
                continue;
            }
            let rows: BTreeSet<&String> = interior.iter().map(|(id, _)| &id.2[0]).collect();
            let cols: BTreeSet<&String> = interior.iter().map(|(id, _)| &id.2[1]).collect();
            let ri: BTreeMap<&String, usize> = rows.iter().enumerate().map(|(i, v)| (*v, i)).collect();
            let ci: BTreeMap<&String, usize> = cols.iter().enumerate().map(|(i, v)| (*v, i)).collect();
            let (nr, nc) = (rows.len(), cols.len());
            let mut unknown = BTreeSet::new();
            for (id, _) in &interior {
                if !published.contains(*id) {
                    unknown.insert((ri[&id.2[0]], ci[&id.2[1]]));
                }
            }
            for (value, r) in &ri {
                let id = (bucket, Some(Total::FirstDimension), vec![(*value).clone(), String::new()]);
                if !published.contains(&id) {
                    unknown.insert((*r, nc));
                }
            }
            for c in 0..nc {
                unknown.insert((nr, c)); // column totals are never printed
            }
            if !grand_known {
                unknown.insert((nr, nc));
            }
            let determined = unprotected_2d(nr, nc, &unknown).unwrap();
            let leaked: Vec<_> = determined
                .iter()
                // Withheld cells, and withheld printed totals (row totals, the grand total).
                // A determined column total was never secret: the report does not print it.
                .filter(|(r, c)| (*r < nr && *c < nc) || (totals && *c == nc))
                .collect();
            prop_assert!(leaked.is_empty(), "bucket {bucket}: determined {leaked:?} from {unknown:?}");
        }
    }

    #[test]
    fn without_complementary_suppression_only_small_cells_go(
        events in events(),
        dims in 1usize..=2,
        k in 1u32..8,
    ) {
        let spec = spec(dims, k, false, false);
        let input = cells(&events, dims);
        let big = input.iter().filter(|(_, c)| c.visitors.len() >= k as usize).count();
        let disclosed = disclose(&spec, input.clone(), None, 0, &[0]).unwrap();
        prop_assert_eq!(disclosed.rows.len(), big);
        prop_assert_eq!(disclosed.suppressed as usize, input.len() - big);
        prop_assert_eq!(disclosed.secondary, 0);
    }
}

#[test]
fn a_lone_small_cell_beside_a_total_takes_a_partner() {
    // Bucket 0: r0 has 1 visitor, r1 has 5, r2 has 6; k = 3, total printed.
    let mut events = vec![(0, 0, 0, 0)];
    events.extend((1..6).map(|v| (v, 0, 1, 0)));
    events.extend((6..12).map(|v| (v, 0, 2, 0)));
    let spec = spec(1, 3, true, true);
    let disclosed = disclose(&spec, cells(&events, 1), None, 0, &[0]).unwrap();
    let printed: Vec<(Option<Total>, String, u64)> = disclosed
        .rows
        .iter()
        .map(|r| (r.total, r.key.dims[0].to_string(), r.visitors))
        .collect();
    // r0 (primary) and r1 (the smallest other cell) withheld; r2 and the total printed.
    assert_eq!(
        printed,
        vec![
            (None, "r2".into(), 6),
            (Some(Total::Bucket), String::new(), 12)
        ]
    );
    assert_eq!((disclosed.suppressed, disclosed.secondary), (1, 1));
}
