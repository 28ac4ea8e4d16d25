//! Complementary (secondary) cell suppression (issue #6): which further cells to withhold so
//! that the cells withheld for being small (primary suppression, below `k_min`) cannot be
//! recomputed from what is published.
//!
//! A table that publishes its margins publishes linear equations: every row sums to its
//! row total, every column to its column total, and the totals to the grand total. A row
//! with exactly one withheld cell gives that cell away by subtraction. The classic rule
//! (Cox 1980, "Suppression Methodology and Statistical Disclosure Control", JASA 75;
//! Hundepool et al. 2012, "Statistical Disclosure Control", Wiley, §4.4) is therefore that
//! no line of the table — row, column, the totals row or the totals column — may hold
//! exactly one suppressed cell.
//!
//! That rule alone is not enough. Model the table with margins as a bipartite graph: one
//! node per row and per column (the totals row and totals column included), one edge per
//! suppressed cell. After substituting signs, every line equation says the suppressed
//! cells at a node sum to a published number, so the unknown part of the table is a flow
//! on this graph, and the freedom left is exactly its cycle space: a suppressed cell can
//! be changed without changing any published number if and only if its edge lies on a
//! cycle. A suppressed cell on no cycle (a *bridge*) is uniquely determined even when every
//! line holds two or more suppressed cells: two 2×2 blocks of suppressed cells joined by
//! one more suppressed cell pin that cell down. [`unprotected_2d`] finds such cells.
//!
//! [`secondary_2d`] is a greedy heuristic in two phases, repeated until neither applies:
//!
//! 1. *No singleton*: take the first line (rows, then columns) with exactly one suppressed
//!    cell and suppress the line's cell with the lowest count (ties: a cell whose crossing
//!    line already has a suppressed cell, so no new singleton is made; then position).
//! 2. *No bridge*: take the first suppressed cell on no cycle; removing it splits its
//!    component in two, and suppressing any cell that joins the two parts puts it on a
//!    cycle; suppress the one with the lowest count.
//!
//! The result guarantees that no suppressed value is determined by the published values
//! and the line equations. It is not optimal (fewest cells or least total value is an
//! integer program), and it does not give *interval* protection: with non-negativity and
//! the known totals, an attacker can still bound a suppressed cell, possibly tightly (a
//! 1 next to a 0). Protection levels, the linear-programming audit of the feasible
//! intervals and hierarchical tables are what τ-ARGUS and the R package `sdcTable`
//! (Meindl; its `protectTable()` methods `"HITAS"`, `"SIMPLEHEURISTIC"`, `"OPT"`) do; this
//! module does not.
//!
//! [`secondary_1d`] is the one-line case: a list of cells and a published total.

use std::collections::{BTreeSet, VecDeque};

/// A table value marking a combination with no data (a structural zero): it counts 0 in the
/// margins, and a reader may know it is zero, so it is picked as a complementary cell only
/// as a last resort.
pub const STRUCTURAL_ZERO: u64 = u64::MAX;

/// Why a suppression problem was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressError {
    #[error("row {row} has {len} cells, but row 0 has {expected}")]
    Ragged {
        row: usize,
        len: usize,
        expected: usize,
    },
    #[error(
        "cell ({row}, {col}) is outside the table with margins ({rows} rows + totals × {cols} columns + totals)"
    )]
    OutOfRange {
        row: usize,
        col: usize,
        rows: usize,
        cols: usize,
    },
    #[error("cell {index} is outside the list of {len} cells")]
    OutOfRange1d { index: usize, len: usize },
    #[error(
        "a table with {rows} rows and {cols} columns has lines of a single cell: its suppressed cells cannot be protected"
    )]
    Degenerate { rows: usize, cols: usize },
}

/// The table with its margins as one grid: `rows + 1` by `cols + 1`, the last row being the
/// column totals and the last column the row totals.
struct Grid {
    /// Grid rows (table rows + 1).
    r: usize,
    /// Grid columns (table columns + 1).
    c: usize,
    value: Vec<u128>,
    suppressed: Vec<bool>,
    row_count: Vec<usize>,
    col_count: Vec<usize>,
}

impl Grid {
    fn new(table: &[Vec<u64>]) -> Result<Self, SuppressError> {
        let rows = table.len();
        let cols = table.first().map_or(0, Vec::len);
        for (row, line) in table.iter().enumerate() {
            if line.len() != cols {
                return Err(SuppressError::Ragged {
                    row,
                    len: line.len(),
                    expected: cols,
                });
            }
        }
        let (r, c) = (rows + 1, cols + 1);
        let mut value = vec![0_u128; r * c];
        for (i, line) in table.iter().enumerate() {
            for (j, &v) in line.iter().enumerate() {
                if v == STRUCTURAL_ZERO {
                    // Adds nothing to the margins; chosen only when nothing else will do.
                    value[i * c + j] = u128::MAX;
                    continue;
                }
                let v = u128::from(v);
                value[i * c + j] = v;
                value[i * c + cols] += v;
                value[rows * c + j] += v;
                value[rows * c + cols] += v;
            }
        }
        Ok(Self {
            r,
            c,
            value,
            suppressed: vec![false; r * c],
            row_count: vec![0; r],
            col_count: vec![0; c],
        })
    }

    fn check(&self, (row, col): (usize, usize)) -> Result<(), SuppressError> {
        if row < self.r && col < self.c {
            Ok(())
        } else {
            Err(SuppressError::OutOfRange {
                row,
                col,
                rows: self.r - 1,
                cols: self.c - 1,
            })
        }
    }

    fn suppress(&mut self, i: usize, j: usize) {
        let k = i * self.c + j;
        if !self.suppressed[k] {
            self.suppressed[k] = true;
            self.row_count[i] += 1;
            self.col_count[j] += 1;
        }
    }

    fn is_suppressed(&self, i: usize, j: usize) -> bool {
        self.suppressed[i * self.c + j]
    }

    /// Phase 1: fixes the first line with exactly one suppressed cell. False if none.
    fn fix_singleton(&mut self) -> bool {
        let cell = if let Some(i) = (0..self.r).find(|&i| self.row_count[i] == 1) {
            (0..self.c)
                .filter(|&j| !self.is_suppressed(i, j))
                .min_by_key(|&j| (self.value[i * self.c + j], self.col_count[j] == 0, j))
                .map(|j| (i, j))
        } else if let Some(j) = (0..self.c).find(|&j| self.col_count[j] == 1) {
            (0..self.r)
                .filter(|&i| !self.is_suppressed(i, j))
                .min_by_key(|&i| (self.value[i * self.c + j], self.row_count[i] == 0, i))
                .map(|i| (i, j))
        } else {
            return false;
        };
        // A line of at least two cells with one suppressed has an unsuppressed cell.
        let (i, j) = cell.expect("lines have at least two cells");
        self.suppress(i, j);
        true
    }

    /// Phase 2: puts the first bridge on a cycle. False if there is none.
    fn fix_bridge(&mut self) -> bool {
        let Some((i, j)) = bridges(self.r, self.c, &self.suppressed).into_iter().next() else {
            return false;
        };
        // Nodes: rows 0..r, columns r..r+c. Sides of the bridge without it.
        let side_a = self.reach(i, (i, j));
        let side_b = self.reach(self.r + j, (i, j));
        let mut best: Option<(u128, usize, usize)> = None;
        for a in 0..self.r {
            for b in 0..self.c {
                let joins = (side_a[a] && side_b[self.r + b]) || (side_b[a] && side_a[self.r + b]);
                if joins && !self.is_suppressed(a, b) {
                    let key = (self.value[a * self.c + b], a, b);
                    if best.is_none_or(|best| key < best) {
                        best = Some(key);
                    }
                }
            }
        }
        // After phase 1 both ends have another suppressed cell, so each side has a row and
        // a column node, and a joining cell other than the bridge exists.
        let (_, a, b) = best.expect("a bridge between lines of degree ≥ 2 can be closed");
        self.suppress(a, b);
        true
    }

    /// Nodes reachable from `start` over suppressed cells other than `skip`.
    fn reach(&self, start: usize, skip: (usize, usize)) -> Vec<bool> {
        let mut seen = vec![false; self.r + self.c];
        seen[start] = true;
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            let neighbours: Vec<usize> = if node < self.r {
                (0..self.c)
                    .filter(|&j| self.is_suppressed(node, j) && (node, j) != skip)
                    .map(|j| self.r + j)
                    .collect()
            } else {
                let j = node - self.r;
                (0..self.r)
                    .filter(|&i| self.is_suppressed(i, j) && (i, j) != skip)
                    .collect()
            };
            for next in neighbours {
                if !seen[next] {
                    seen[next] = true;
                    queue.push_back(next);
                }
            }
        }
        seen
    }
}

/// The suppressed cells of an `r × c` grid (margins included) that lie on no cycle of the
/// row–column graph, sorted: Tarjan's bridge-finding, iteratively.
fn bridges(r: usize, c: usize, suppressed: &[bool]) -> Vec<(usize, usize)> {
    const UNSEEN: usize = usize::MAX;
    let n = r + c;
    let mut adjacency: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut edges = Vec::new();
    for i in 0..r {
        for j in 0..c {
            if suppressed[i * c + j] {
                let e = edges.len();
                edges.push((i, j));
                adjacency[i].push((r + j, e));
                adjacency[r + j].push((i, e));
            }
        }
    }
    let mut discovered = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut time = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if discovered[root] != UNSEEN {
            continue;
        }
        discovered[root] = time;
        low[root] = time;
        time += 1;
        // (node, edge it was reached by, next adjacency index)
        let mut stack = vec![(root, UNSEEN, 0)];
        while let Some(top) = stack.last_mut() {
            let (node, via, next) = *top;
            if let Some(&(to, e)) = adjacency[node].get(next) {
                top.2 += 1;
                if e == via {
                    continue;
                }
                if discovered[to] == UNSEEN {
                    discovered[to] = time;
                    low[to] = time;
                    time += 1;
                    stack.push((to, e, 0));
                } else {
                    low[node] = low[node].min(discovered[to]);
                }
            } else {
                stack.pop();
                if let Some(&(parent, _, _)) = stack.last() {
                    low[parent] = low[parent].min(low[node]);
                    if low[node] > discovered[parent] {
                        out.push(edges[via]);
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// The cells to suppress in addition to `primary` so that no suppressed cell of `table`
/// can be derived from the published cells and margins (see the module documentation).
///
/// `table` holds the interior counts, row by row. Cells are `(row, column)` in the table
/// *with margins*: row `table.len()` is the column-totals row and column `cols` the
/// row-totals column, so `(rows, cols)` is the grand total; margins may be primary too.
/// The result never contains a primary cell; suppress `primary ∪ result`.
pub fn secondary_2d(
    table: &[Vec<u64>],
    primary: &BTreeSet<(usize, usize)>,
) -> Result<BTreeSet<(usize, usize)>, SuppressError> {
    let mut grid = Grid::new(table)?;
    for &cell in primary {
        grid.check(cell)?;
    }
    if primary.is_empty() {
        return Ok(BTreeSet::new());
    }
    if grid.r < 2 || grid.c < 2 {
        return Err(SuppressError::Degenerate {
            rows: grid.r - 1,
            cols: grid.c - 1,
        });
    }
    for &(i, j) in primary {
        grid.suppress(i, j);
    }
    while grid.fix_singleton() || grid.fix_bridge() {}
    let mut extra = BTreeSet::new();
    for i in 0..grid.r {
        for j in 0..grid.c {
            if grid.is_suppressed(i, j) && !primary.contains(&(i, j)) {
                extra.insert((i, j));
            }
        }
    }
    Ok(extra)
}

/// The suppressed cells (coordinates as in [`secondary_2d`]) of a `rows × cols` table with
/// margins whose values the published cells and margins determine exactly: those on no
/// cycle of suppressed cells, which includes every cell alone in its line. Empty means
/// every suppressed cell is protected against exact recomputation.
pub fn unprotected_2d(
    rows: usize,
    cols: usize,
    suppressed: &BTreeSet<(usize, usize)>,
) -> Result<BTreeSet<(usize, usize)>, SuppressError> {
    let (r, c) = (rows + 1, cols + 1);
    let mut grid = vec![false; r * c];
    for &(row, col) in suppressed {
        if row >= r || col >= c {
            return Err(SuppressError::OutOfRange {
                row,
                col,
                rows,
                cols,
            });
        }
        grid[row * c + col] = true;
    }
    Ok(bridges(r, c, &grid).into_iter().collect())
}

/// Secondary suppression for a list of cells with a published total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secondary1d {
    /// Cells to suppress in addition to the primary ones.
    pub cells: BTreeSet<usize>,
    /// The total must be withheld too: only when the list has a single cell, which the
    /// total would repeat.
    pub total: bool,
}

/// The cells to suppress in addition to `primary` in a list of cells whose total is
/// published: when exactly one cell is suppressed, the total minus the others gives it
/// away, so the lowest other cell (ties: the first) is suppressed with it. Two or more
/// suppressed cells only reveal their sum.
pub fn secondary_1d(
    values: &[u64],
    primary: &BTreeSet<usize>,
) -> Result<Secondary1d, SuppressError> {
    if let Some(&index) = primary.iter().find(|&&i| i >= values.len()) {
        return Err(SuppressError::OutOfRange1d {
            index,
            len: values.len(),
        });
    }
    let mut out = Secondary1d::default();
    if primary.len() == 1 {
        let lowest = (0..values.len())
            .filter(|i| !primary.contains(i))
            .min_by_key(|&i| (values[i], i));
        match lowest {
            Some(i) => {
                out.cells.insert(i);
            }
            None => out.total = true,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cells: &[(usize, usize)]) -> BTreeSet<(usize, usize)> {
        cells.iter().copied().collect()
    }

    #[test]
    fn a_lone_suppressed_cell_gets_the_cheapest_partners() {
        let table = vec![vec![2, 50, 40], vec![30, 60, 35], vec![45, 70, 80]];
        let extra = secondary_2d(&table, &set(&[(0, 0)])).unwrap();
        // Row 0: the lowest other cell is (0, 2) = 40; column 0: (1, 0) = 30; then row 1
        // and column 2 each have one suppressed cell, closed by (1, 2) = 35.
        assert_eq!(extra, set(&[(0, 2), (1, 0), (1, 2)]));
        let all: BTreeSet<_> = extra.union(&set(&[(0, 0)])).copied().collect();
        assert!(unprotected_2d(3, 3, &all).unwrap().is_empty());
    }

    #[test]
    fn no_singleton_is_not_enough_bridges_are_closed() {
        // Two 2×2 blocks of suppressed cells joined by (1, 2): every line holds two or
        // more suppressed cells, yet (1, 2) = (row 0 + row 1 unknowns) − (column 0 +
        // column 1 unknowns) is determined.
        let suppressed = set(&[
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (1, 2),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
        ]);
        assert_eq!(unprotected_2d(4, 4, &suppressed).unwrap(), set(&[(1, 2)]));
        let table = vec![vec![5; 4]; 4];
        let extra = secondary_2d(&table, &suppressed).unwrap();
        assert_eq!(extra.len(), 1, "{extra:?}");
        let all: BTreeSet<_> = suppressed.union(&extra).copied().collect();
        assert!(unprotected_2d(4, 4, &all).unwrap().is_empty());
    }

    #[test]
    fn margins_can_be_primary() {
        let table = vec![vec![1, 2], vec![20, 30]];
        // The row total of row 0 (3) is small too.
        let primary = set(&[(0, 0), (0, 1), (0, 2)]);
        let extra = secondary_2d(&table, &primary).unwrap();
        let all: BTreeSet<_> = primary.union(&extra).copied().collect();
        assert!(unprotected_2d(2, 2, &all).unwrap().is_empty(), "{all:?}");
    }

    #[test]
    fn nothing_to_do_without_primaries() {
        assert!(
            secondary_2d(&[vec![1, 2]], &BTreeSet::new())
                .unwrap()
                .is_empty()
        );
        assert!(secondary_2d(&[], &BTreeSet::new()).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            secondary_2d(&[vec![1, 2], vec![3]], &BTreeSet::new()),
            Err(SuppressError::Ragged {
                row: 1,
                len: 1,
                expected: 2
            })
        );
        assert!(matches!(
            secondary_2d(&[vec![1, 2]], &set(&[(2, 0)])),
            Err(SuppressError::OutOfRange { .. })
        ));
        assert!(matches!(
            secondary_2d(&[vec![], vec![]], &set(&[(0, 0)])),
            Err(SuppressError::Degenerate { .. })
        ));
        assert!(unprotected_2d(1, 1, &set(&[(0, 5)])).is_err());
        assert!(secondary_1d(&[1, 2], &[2].into()).is_err());
    }

    #[test]
    fn one_dimension() {
        let values = [3, 40, 12, 25];
        assert_eq!(
            secondary_1d(&values, &[0].into()).unwrap(),
            Secondary1d {
                cells: [2].into(),
                total: false
            }
        );
        assert_eq!(
            secondary_1d(&values, &[0, 1].into()).unwrap(),
            Secondary1d::default()
        );
        assert_eq!(
            secondary_1d(&values, &BTreeSet::new()).unwrap(),
            Secondary1d::default()
        );
        assert_eq!(
            secondary_1d(&[4], &[0].into()).unwrap(),
            Secondary1d {
                cells: BTreeSet::new(),
                total: true
            }
        );
        // Ties go to the first.
        assert_eq!(
            secondary_1d(&[1, 7, 7], &[0].into()).unwrap().cells,
            [1].into()
        );
    }
}
