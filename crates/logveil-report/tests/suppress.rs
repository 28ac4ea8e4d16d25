//! Secondary suppression checked against an independent oracle: linear algebra over the
//! published equations, not the graph argument the implementation uses.
//!
//! The unknowns are the suppressed cells of the table with margins; every row and column
//! of it (totals row and column included) gives one equation, `Σ interior = total`, whose
//! right-hand side after moving the published cells over is known. A suppressed cell is
//! determined exactly when every solution of these equations gives it the same value:
//! in reduced row echelon form, it is a pivot unknown whose row involves no free unknown.
//! Elimination runs modulo the prime 2^61 − 1. The entries of the reduced form are ratios
//! of minors of the original matrix, whose entries are 0 and ±1 with at most 6 non-zero
//! per equation here (tables up to 5×5), so every minor is at most 6^6 in absolute value
//! (Hadamard's bound, 12 equations) — far below p: the elimination mod p has the same
//! pivots and zero pattern as over the rationals.

use std::collections::BTreeSet;

use logveil_report::suppress::{secondary_1d, secondary_2d, unprotected_2d};
use proptest::prelude::*;

const P: u64 = (1 << 61) - 1;

fn mul(a: u64, b: u64) -> u64 {
    (u128::from(a) * u128::from(b) % u128::from(P)) as u64
}

fn pow(mut a: u64, mut e: u64) -> u64 {
    let mut r = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, a);
        }
        a = mul(a, a);
        e >>= 1;
    }
    r
}

/// Reduced row echelon form in place; returns the pivot column of each pivot row.
fn reduce(m: &mut [Vec<u64>]) -> Vec<usize> {
    let cols = m.first().map_or(0, Vec::len);
    let mut pivots = Vec::new();
    for col in 0..cols {
        let rank = pivots.len();
        let Some(pivot) = (rank..m.len()).find(|&r| m[r][col] != 0) else {
            continue;
        };
        m.swap(rank, pivot);
        let inv = pow(m[rank][col], P - 2);
        for x in &mut m[rank] {
            *x = mul(*x, inv);
        }
        let pivot_row = m[rank].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != rank && row[col] != 0 {
                let f = row[col];
                for (x, &p) in row.iter_mut().zip(&pivot_row) {
                    *x = (*x + P - mul(f, p)) % P;
                }
            }
        }
        pivots.push(col);
    }
    pivots
}

/// The suppressed cells whose values the published cells and margins determine: in the
/// reduced equations, a pivot unknown whose row has no free unknown (every solution has
/// the same value there); free unknowns and the others can vary.
fn determined(
    rows: usize,
    cols: usize,
    suppressed: &BTreeSet<(usize, usize)>,
) -> Vec<(usize, usize)> {
    let unknowns: Vec<(usize, usize)> = suppressed.iter().copied().collect();
    let minus_one = P - 1;
    let mut equations = Vec::new();
    for i in 0..=rows {
        equations.push(
            unknowns
                .iter()
                .map(|&(r, c)| match (r == i, c == cols) {
                    (false, _) => 0,
                    (true, false) => 1,
                    (true, true) => minus_one,
                })
                .collect::<Vec<u64>>(),
        );
    }
    for j in 0..=cols {
        equations.push(
            unknowns
                .iter()
                .map(|&(r, c)| match (c == j, r == rows) {
                    (false, _) => 0,
                    (true, false) => 1,
                    (true, true) => minus_one,
                })
                .collect(),
        );
    }
    let pivots = reduce(&mut equations);
    let free: Vec<usize> = (0..unknowns.len())
        .filter(|c| !pivots.contains(c))
        .collect();
    pivots
        .iter()
        .enumerate()
        .filter(|&(row, _)| free.iter().all(|&f| equations[row][f] == 0))
        .map(|(_, &col)| unknowns[col])
        .collect()
}

fn line_counts(rows: usize, cols: usize, suppressed: &BTreeSet<(usize, usize)>) -> Vec<usize> {
    let mut counts = vec![0; rows + 1 + cols + 1];
    for &(r, c) in suppressed {
        counts[r] += 1;
        counts[rows + 1 + c] += 1;
    }
    counts
}

/// Runs secondary suppression and checks every promise; returns all suppressed cells.
fn check_2d(table: &[Vec<u64>], primary: &BTreeSet<(usize, usize)>) -> BTreeSet<(usize, usize)> {
    let rows = table.len();
    let cols = table[0].len();
    let extra = secondary_2d(table, primary).unwrap();
    assert!(
        extra.is_disjoint(primary),
        "secondary cells repeat primaries"
    );
    let all: BTreeSet<_> = primary.union(&extra).copied().collect();
    let counts = line_counts(rows, cols, &all);
    assert!(
        counts.iter().all(|&n| n != 1),
        "a line with one suppressed cell: {counts:?} {all:?}"
    );
    assert_eq!(
        determined(rows, cols, &all),
        Vec::<(usize, usize)>::new(),
        "table {table:?} primary {primary:?} suppressed {all:?}"
    );
    assert!(unprotected_2d(rows, cols, &all).unwrap().is_empty());
    all
}

#[test]
fn graph_check_agrees_with_linear_algebra() {
    // unprotected_2d (bridges) against the rank oracle on every pattern of a 2×3 table
    // with margins (12 cells) and every interior pattern of a 3×3 one.
    for (rows, cols, cells) in [(2, 3, None), (3, 2, None), (3, 3, Some(3))] {
        let (r, c) = (rows + 1, cols + 1);
        let (pr, pc) = cells.map_or((r, c), |n| (n, n));
        for mask in 0_u32..1 << (pr * pc) {
            let suppressed: BTreeSet<_> = (0..pr * pc)
                .filter(|k| mask >> k & 1 == 1)
                .map(|k| (k / pc, k % pc))
                .collect();
            let mut oracle = determined(rows, cols, &suppressed);
            oracle.sort_unstable();
            let graph: Vec<_> = unprotected_2d(rows, cols, &suppressed)
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(graph, oracle, "{rows}×{cols} {suppressed:?}");
        }
    }
}

#[test]
fn exhaustive_small_tables_leave_nothing_determined() {
    // Every primary pattern over the table with margins for 1×1 … 2×3 and 3×2, and every
    // interior pattern of 3×3; values fixed but uneven so the greedy choices vary.
    let value = |i: usize, j: usize| ((i * 7 + j * 13 + 3) % 11) as u64;
    for (rows, cols, margins) in [
        (1, 1, true),
        (1, 2, true),
        (2, 1, true),
        (1, 3, true),
        (2, 2, true),
        (2, 3, true),
        (3, 2, true),
        (3, 3, false),
    ] {
        let table: Vec<Vec<u64>> = (0..rows)
            .map(|i| (0..cols).map(|j| value(i, j)).collect())
            .collect();
        let (pr, pc) = if margins {
            (rows + 1, cols + 1)
        } else {
            (rows, cols)
        };
        for mask in 0_u32..1 << (pr * pc) {
            let primary: BTreeSet<_> = (0..pr * pc)
                .filter(|k| mask >> k & 1 == 1)
                .map(|k| (k / pc, k % pc))
                .collect();
            check_2d(&table, &primary);
        }
    }
}

fn table_and_primary() -> impl Strategy<Value = (Vec<Vec<u64>>, BTreeSet<(usize, usize)>)> {
    (1_usize..=5, 1_usize..=5).prop_flat_map(|(rows, cols)| {
        (
            proptest::collection::vec(proptest::collection::vec(0_u64..40, cols), rows),
            proptest::collection::vec(proptest::bool::weighted(0.2), (rows + 1) * (cols + 1)),
            1_u64..12,
            proptest::bool::ANY,
        )
            .prop_map(move |(table, mask, k, by_threshold)| {
                let primary = if by_threshold {
                    // What a k-threshold would withhold: small non-zero interior cells.
                    let mut p = BTreeSet::new();
                    for (i, row) in table.iter().enumerate() {
                        for (j, &v) in row.iter().enumerate() {
                            if v > 0 && v < k {
                                p.insert((i, j));
                            }
                        }
                    }
                    p
                } else {
                    (0..mask.len())
                        .filter(|&x| mask[x])
                        .map(|x| (x / (cols + 1), x % (cols + 1)))
                        .collect()
                };
                (table, primary)
            })
    })
}

proptest! {
    #[test]
    fn random_tables_are_protected((table, primary) in table_and_primary()) {
        let all = check_2d(&table, &primary);
        prop_assert!(primary.is_subset(&all));
    }

    #[test]
    fn one_dimension_never_leaves_a_lone_cell(
        values in proptest::collection::vec(0_u64..50, 1..12),
        mask in proptest::collection::vec(proptest::bool::weighted(0.25), 12),
    ) {
        let primary: BTreeSet<usize> = (0..values.len()).filter(|&i| mask[i]).collect();
        let out = secondary_1d(&values, &primary).unwrap();
        prop_assert!(out.cells.is_disjoint(&primary));
        let suppressed: BTreeSet<usize> = primary.union(&out.cells).copied().collect();
        if out.total {
            prop_assert_eq!(values.len(), 1);
        } else {
            // total − published cells = sum of the suppressed ones, which reveals a cell
            // only when it is alone.
            prop_assert!(suppressed.len() != 1, "{:?}", suppressed);
        }
        // At most one cell is added, and only when needed.
        prop_assert!(out.cells.len() <= 1);
        prop_assert_eq!(out.cells.is_empty() && !out.total, primary.len() != 1);
        if let Some(&added) = out.cells.iter().next() {
            let cheapest = (0..values.len())
                .filter(|i| !primary.contains(i))
                .map(|i| values[i])
                .min()
                .unwrap();
            prop_assert_eq!(values[added], cheapest);
        }
    }
}
