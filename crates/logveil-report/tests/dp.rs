//! Statistical and reproducibility tests of the exact samplers in `logveil_report::dp`.
//!
//! The goodness-of-fit tests draw from a fixed seed, so they are deterministic: a correct
//! sampler passes each at the 0.1% level, and once it passes it always does. The discrete
//! Laplace at scale 2 always takes 10^6 draws; the other cases take 10^6 in optimised
//! builds and 2·10^5 in debug builds (`cfg!(debug_assertions)`), to keep `cargo test` in
//! debug under a few seconds. The χ² critical value depends only
//! on the degrees of freedom, not on the number of draws; bins are chosen so every
//! expected count is at least 20 at either size, which keeps the χ² approximation valid.
//! Fewer draws only lower the test's power (it detects a pmf error of ~1% in the central
//! bins at 2·10^5, ~0.5% at 10^6).

use std::collections::BTreeMap;
use std::fmt::Write;

use logveil_report::dp::{
    DiscreteGaussian, DiscreteLaplace, NoiseRng, Rational, bound_contributions,
    gaussian_sigma2_for, laplace_scale_for, release_threshold, seed_for,
};

fn draws() -> u32 {
    if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    }
}

fn r(num: u64, den: u64) -> Rational {
    Rational::new(num, den).unwrap()
}

/// Upper 0.1% point of χ² with `k` degrees of freedom (Wilson–Hilferty; within 1% for
/// k ≥ 10).
fn chi2_critical_001(k: usize) -> f64 {
    let k = k as f64;
    let z = 3.090_232; // standard normal 0.999 quantile
    let h = 2.0 / (9.0 * k);
    k * (1.0 - h + z * h.sqrt()).powi(3)
}

/// χ² goodness of fit of `counts` (value → count) against `pmf` over the integers: one bin
/// per value in [−L, L] and one per tail, with L the largest value whose expected count is
/// at least 20. Returns (statistic, degrees of freedom).
fn chi_square(counts: &BTreeMap<i64, u64>, n: u32, pmf: impl Fn(i64) -> f64) -> (f64, usize) {
    let n = f64::from(n);
    let mut l = 0;
    while n * pmf(l + 1) >= 20.0 && n * pmf(-(l + 1)) >= 20.0 {
        l += 1;
    }
    let central: f64 = (-l..=l).map(&pmf).sum();
    let (low_tail, high_tail) = {
        // The pmfs here are symmetric.
        let tail = (1.0 - central) / 2.0;
        (tail, tail)
    };
    let observed = |range: &dyn Fn(i64) -> bool| -> f64 {
        counts
            .iter()
            .filter(|(x, _)| range(**x))
            .map(|(_, c)| *c as f64)
            .sum()
    };
    let mut stat = 0.0;
    let mut bins = 0;
    let mut add = |obs: f64, p: f64| {
        let e = n * p;
        stat += (obs - e).powi(2) / e;
        bins += 1;
    };
    for x in -l..=l {
        add(observed(&|y| y == x), pmf(x));
    }
    add(observed(&|y| y < -l), low_tail);
    add(observed(&|y| y > l), high_tail);
    (stat, bins - 1)
}

fn histogram(n: u32, mut draw: impl FnMut() -> i64) -> BTreeMap<i64, u64> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(draw()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn discrete_laplace_fits_its_pmf() {
    for (scale, seed) in [(r(2, 1), 11_u8), (r(7, 2), 12), (r(1, 3), 13)] {
        let t = scale.to_f64();
        let q = (-1.0 / t).exp();
        let pmf = |x: i64| (1.0 - q) / (1.0 + q) * q.powi(x.abs() as i32);
        let lap = DiscreteLaplace::new(scale).unwrap();
        let mut rng = NoiseRng::from_seed(&[seed; 32]);
        // The configured scale of the sample pipelines' kind gets the full 10^6 draws in
        // every build (the test); the other scales fewer in debug builds.
        let n = if scale == r(2, 1) {
            1_000_000
        } else {
            draws() / 4
        };
        let counts = histogram(n, || lap.sample(&mut rng));
        let (stat, df) = chi_square(&counts, n, pmf);
        let critical = chi2_critical_001(df.max(10));
        assert!(
            stat < critical,
            "scale {scale}: χ² = {stat:.1} ≥ {critical:.1} (df {df}) {counts:?}"
        );
        if scale == r(2, 1) {
            // Bins |x| ≤ 10 plus the two tails, as the brief asks, at least.
            assert!(df >= 22, "df {df}");
        }
    }
}

#[test]
fn discrete_gaussian_fits_its_pmf() {
    for (sigma2, seed) in [(r(4, 1), 21_u8), (r(1, 2), 22), (r(25, 3), 23)] {
        let s2 = sigma2.to_f64();
        let weight = |x: i64| (-((x * x) as f64) / (2.0 * s2)).exp();
        let norm: f64 = (-200..=200).map(weight).sum();
        let pmf = |x: i64| weight(x) / norm;
        let g = DiscreteGaussian::new(sigma2).unwrap();
        let mut rng = NoiseRng::from_seed(&[seed; 32]);
        let n = if sigma2 == r(4, 1) {
            draws()
        } else {
            draws() / 4
        };
        let counts = histogram(n, || g.sample(&mut rng));
        let (stat, df) = chi_square(&counts, n, pmf);
        let critical = chi2_critical_001(df.max(10));
        assert!(
            stat < critical,
            "σ² {sigma2}: χ² = {stat:.1} ≥ {critical:.1} (df {df}) {counts:?}"
        );
    }
}

#[test]
fn bernoulli_exp_neg_has_the_right_mean() {
    let mut rng = NoiseRng::from_seed(&[31; 32]);
    let n = 100_000_u32;
    for gamma in [
        r(0, 1),
        r(1, 2),
        r(1, 1),
        r(3, 2),
        r(7, 3),
        r(5, 1),
        r(1, 1000),
    ] {
        let p = (-gamma.to_f64()).exp();
        let hits = (0..n).filter(|_| rng.bernoulli_exp_neg(gamma)).count() as f64;
        let sd = (f64::from(n) * p * (1.0 - p)).sqrt().max(1.0);
        assert!(
            (hits - f64::from(n) * p).abs() < 5.0 * sd,
            "γ = {gamma}: {hits} hits, expected {}",
            f64::from(n) * p
        );
    }
}

#[test]
fn same_seed_same_draws_other_seed_other_draws() {
    let run = |seed: &[u8; 32]| {
        let mut rng = NoiseRng::from_seed(seed);
        let lap = DiscreteLaplace::new(r(3, 1)).unwrap();
        let g = DiscreteGaussian::new(r(9, 2)).unwrap();
        let mut out = Vec::new();
        for _ in 0..200 {
            out.push(lap.sample(&mut rng));
            out.push(g.sample(&mut rng));
            out.push(rng.next_u64() as i64);
        }
        out
    };
    let seed = seed_for(&[7; 32], &[b"visitors_daily", b"2026-11-29", b"digest"]);
    assert_eq!(run(&seed), run(&seed));
    let other = seed_for(&[7; 32], &[b"visitors_daily", b"2026-11-30", b"digest"]);
    assert_ne!(run(&seed), run(&other));
}

#[test]
fn seed_derivation_separates_parts() {
    let secret = [9; 32];
    let a = seed_for(&secret, &[b"ab", b"c"]);
    assert_ne!(a, seed_for(&secret, &[b"a", b"bc"]));
    assert_ne!(a, seed_for(&secret, &[b"abc"]));
    assert_ne!(a, seed_for(&secret, &[b"ab", b"c", b""]));
    assert_ne!(a, seed_for(&[8; 32], &[b"ab", b"c"]));
    assert_eq!(a, seed_for(&secret, &[b"ab", b"c"]));
}

/// Old releases must stay reproducible: these values pin the seed derivation, the stream
/// and the samplers. If this test fails, every published release's noise has changed —
/// bump the derivation's version instead of updating the values.
#[test]
fn golden_values_are_stable() {
    let seed = seed_for(&[0; 32], &[b"report", b"2026-11-29", b"digest"]);
    let hex = seed.iter().fold(String::new(), |mut hex, b| {
        write!(hex, "{b:02x}").unwrap();
        hex
    });
    let mut rng = NoiseRng::from_seed(&seed);
    let words: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
    let lap = DiscreteLaplace::new(r(2, 1)).unwrap();
    let laplace: Vec<i64> = (0..12).map(|_| lap.sample(&mut rng)).collect();
    let g = DiscreteGaussian::new(r(4, 1)).unwrap();
    let gauss: Vec<i64> = (0..12).map(|_| g.sample(&mut rng)).collect();
    let got = format!("{hex}\n{words:?}\n{laplace:?}\n{gauss:?}");
    assert_eq!(got, GOLDEN, "\n{got}");
}

/// The seed and the first words were checked against the Python `blake3` package:
/// `blake3(secret ‖ (len ‖ part)…, derive_key_context=…)` and
/// `blake3(b"logveil dp noise stream v1", key=seed).digest(24)` read as little-endian u64s.
const GOLDEN: &str = "a2c297371803b952e9990a0d635d054f0854be092d417e91e79417c329d02b5f
[12011974920017831810, 10579840151391289119, 8122801661170473765]
[-1, 1, -2, -2, -2, -1, -5, 0, -1, -2, 3, -2]
[0, 0, -1, 1, -5, 1, 3, -2, 0, 5, -3, -1]";

#[test]
fn extreme_parameters_do_not_panic() {
    let mut rng = NoiseRng::from_seed(&[41; 32]);
    // γ huge: exp(−γ) underflows any float, and the answer is (all but surely) false.
    assert!(!rng.bernoulli_exp_neg(Rational::integer(u64::MAX)));
    assert!(!rng.bernoulli_exp_neg(r(u64::MAX, 3)));
    // γ tiny: (all but surely) true.
    assert!(rng.bernoulli_exp_neg(r(1, u64::MAX)));
    for scale in [
        r(1, 1000),
        r(1, u64::MAX),
        Rational::integer(1 << 40),
        Rational::integer(u64::MAX),
        r(u64::MAX, u64::MAX - 1),
    ] {
        let lap = DiscreteLaplace::new(scale).unwrap();
        for _ in 0..50 {
            let x = lap.sample(&mut rng);
            if scale < Rational::ONE {
                assert_eq!(x, 0, "scale {scale}");
            }
        }
    }
    for sigma2 in [
        r(1, 1000),
        r(1, u64::MAX),
        Rational::integer(1 << 40),
        Rational::integer(u64::MAX),
        r(u64::MAX, u64::MAX - 1),
        r(u64::MAX - 1, u64::MAX),
    ] {
        let g = DiscreteGaussian::new(sigma2).unwrap();
        for _ in 0..50 {
            let x = g.sample(&mut rng);
            if sigma2 < r(1, 100) {
                assert_eq!(x, 0, "σ² {sigma2}");
            }
        }
    }
    assert!(DiscreteLaplace::new(Rational::ZERO).is_err());
    assert!(DiscreteGaussian::new(Rational::ZERO).is_err());
}

#[test]
fn large_scales_spread_wide() {
    let mut rng = NoiseRng::from_seed(&[42; 32]);
    let lap = DiscreteLaplace::new(Rational::integer(1_000_000)).unwrap();
    let n = 4000;
    let mean_abs = (0..n)
        .map(|_| lap.sample(&mut rng).unsigned_abs())
        .sum::<u64>() as f64
        / f64::from(n);
    // E|X| ≈ t for large t.
    assert!((mean_abs / 1e6 - 1.0).abs() < 0.1, "{mean_abs}");
}

#[test]
fn parameters() {
    assert_eq!(laplace_scale_for(r(1, 2), 1).unwrap(), Rational::integer(2));
    assert_eq!(laplace_scale_for(r(3, 10), 4).unwrap(), r(40, 3));
    assert!(laplace_scale_for(r(1, u64::MAX), 2).is_err());
    assert!(laplace_scale_for(Rational::ZERO, 1).is_err());
    assert!(laplace_scale_for(Rational::ONE, 0).is_err());
    assert_eq!(
        DiscreteLaplace::for_epsilon(r(1, 2), 3).unwrap().scale(),
        Rational::integer(6)
    );
    assert_eq!(gaussian_sigma2_for(r(1, 2), 1).unwrap(), Rational::ONE);
    assert_eq!(
        gaussian_sigma2_for(r(1, 8), 3).unwrap(),
        Rational::integer(12)
    );
    assert_eq!(
        DiscreteGaussian::for_rho(r(1, 2), 4).unwrap().sigma2(),
        Rational::integer(4)
    );
    assert!(gaussian_sigma2_for(Rational::ZERO, 1).is_err());
}

#[test]
fn release_threshold_matches_the_discrete_laplace_tail() {
    for (eps, delta, cells) in [
        (r(1, 1), r(1, 100_000), 1_u64),
        (r(1, 2), r(1, 1_000_000), 3),
        (r(1, 10), r(1, 1_000_000_000), 10),
        (r(3, 1), r(1, 10), 1),
    ] {
        let tau = release_threshold(eps, delta, cells).unwrap();
        let b = cells as f64 / eps.to_f64();
        let q = (-1.0 / b).exp();
        // Δ₀ cells each released with probability P[1 + Z ≥ τ] = q^{τ−1}/(1+q).
        let leak = |tau: i64| cells as f64 * q.powi((tau - 1) as i32) / (1.0 + q);
        assert!(leak(tau) <= delta.to_f64(), "ε {eps} δ {delta}: τ {tau}");
        assert!(
            tau == 2 || leak(tau - 1) > delta.to_f64(),
            "ε {eps} δ {delta}: τ {tau} is not the smallest"
        );
        // Never below the continuous-Laplace formula it refines.
        let continuous = 1.0 + b * (cells as f64 / (2.0 * delta.to_f64())).ln();
        assert!(tau as f64 >= continuous.floor(), "{tau} < {continuous}");
    }
    // ε = 1, δ = 1e-5, one cell per visitor: ln(1/(1e-5·(1+e^{-1}))) = 11.20… → τ = 13.
    assert_eq!(release_threshold(r(1, 1), r(1, 100_000), 1), Ok(13));
    assert!(release_threshold(Rational::ZERO, r(1, 10), 1).is_err());
    assert!(release_threshold(Rational::ONE, Rational::ZERO, 1).is_err());
    assert!(release_threshold(Rational::ONE, Rational::ONE, 1).is_err());
    assert!(release_threshold(Rational::ONE, r(1, 10), 0).is_err());
    assert!(release_threshold(r(1, u64::MAX), r(1, u64::MAX), u64::MAX).is_err());
}

#[test]
fn bounding_keeps_at_most_the_limits() {
    let mut triples = Vec::new();
    for visitor in 0..200_u32 {
        for cell in 0..(visitor % 7) {
            triples.push((visitor, format!("cell{cell}"), u64::from(visitor % 5)));
        }
    }
    // A repeated pair is summed before clamping.
    triples.push((6, "cell0".to_owned(), 10));
    let total_pairs = 200 / 7 * 21 + (0..200 % 7).sum::<u32>();
    let mut rng = NoiseRng::from_seed(&[51; 32]);
    let bounded = bound_contributions(triples.clone(), 3, 2, &mut rng);
    let kept: u64 = bounded.cells.values().map(|c| c.visitors).sum();
    assert_eq!(kept + bounded.dropped_pairs, u64::from(total_pairs));
    // Each visitor with m cells keeps min(m, 3).
    let expected_kept: u64 = (0..200_u64).map(|v| (v % 7).min(3)).sum();
    assert_eq!(kept, expected_kept);
    for cell in bounded.cells.values() {
        assert!(cell.views <= 2 * cell.visitors);
    }
    // Deterministic given the stream, whatever the input order.
    let mut reversed = triples;
    reversed.reverse();
    let again = bound_contributions(reversed, 3, 2, &mut NoiseRng::from_seed(&[51; 32]));
    assert_eq!(again, bounded);
    // Nothing kept with a zero cell limit.
    let none = bound_contributions(vec![(1, 1, 5)], 0, 2, &mut rng);
    assert!(none.cells.is_empty());
    assert_eq!(none.dropped_pairs, 1);
}

#[test]
fn bounding_samples_cells_uniformly() {
    // One visitor with 5 cells keeps 2: each cell should be kept 2/5 of the time.
    let mut rng = NoiseRng::from_seed(&[52; 32]);
    let mut kept = [0_u32; 5];
    let n = 20_000;
    for _ in 0..n {
        let b = bound_contributions((0..5).map(|c| ((), c, 1)), 2, 1, &mut rng);
        for c in b.cells.keys() {
            kept[*c as usize] += 1;
        }
    }
    let expected = f64::from(n) * 0.4;
    let sd = (f64::from(n) * 0.4 * 0.6).sqrt();
    for k in kept {
        assert!((f64::from(k) - expected).abs() < 5.0 * sd, "{kept:?}");
    }
}
