//! Differential-privacy building blocks (issue #6): exact discrete noise, per-release seeds,
//! the public parameters that turn ε and δ into noise scales and release thresholds, and
//! contribution bounding. Wiring into reports is the caller's job; this module owns only the
//! mathematics.
//!
//! # Exact sampling, no floating point
//!
//! Textbook Laplace noise computed with `f64` is not differentially private: the set of
//! doubles a floating-point sampler can output depends on the true value, and an attacker
//! who sees the low-order bits learns it (Mironov 2012, "On Significance of the Least
//! Significant Bits for Differential Privacy", CCS). The samplers here therefore use
//! integers only, following Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for
//! Differential Privacy" (Advances in Neural Information Processing Systems
//! 33; arXiv 2004.00010), Algorithms 1–3:
//!
//! - [`NoiseRng::uniform_below`]: uniform integers by rejection (Lemire's multiply-shift
//!   with the exact rejection step), [`NoiseRng::bernoulli`] for a rational probability by
//!   comparing a uniform integer with the numerator;
//! - [`NoiseRng::bernoulli_exp_neg`]: Bernoulli(exp(−γ)) for rational γ ≥ 0 (CKS20
//!   Algorithm 1);
//! - [`DiscreteLaplace`]: P(x) ∝ exp(−|x|/t) for a rational scale t (Algorithm 2);
//! - [`DiscreteGaussian`]: P(x) ∝ exp(−x²/(2σ²)) for a rational σ² (Algorithm 3).
//!
//! Parameters are [`Rational`]s (two `u64`s). The Gaussian's acceptance test needs about
//! 2·(64 + 64 + 33 + 64) bits, so it runs on a private fixed-width 512-bit integer; every
//! other step fits `u128`. The only `f64` in this module is in [`release_threshold`], a
//! public parameter computed once from ε and δ, never from data.
//!
//! # Randomness and reproducible noise
//!
//! [`NoiseRng`] is BLAKE3 in extendable-output mode, keyed with a 32-byte seed: a
//! deterministic cryptographic stream. [`seed_for`] derives the seed of one release from a
//! secret and the parts that identify the release (the caller passes report name,
//! partition day and a digest of the input). Re-running the same report over the same
//! input therefore reproduces *exactly* the same noise, so publishing it again reveals
//! nothing new and asking for the same table many times cannot average the noise away;
//! [`crate::ledger`] charges such an identical re-release nothing. Any change to the
//! input gives an unrelated seed, and the ledger charges it. The secret must stay
//! secret (knowing it, one can subtract the noise) and must not change between re-runs.
//!
//! Because old releases must stay reproducible, the derivation and the samplers are
//! pinned by golden tests. Changing either changes every release's noise: bump the `v1`
//! in the derivation context and treat every release as new.
//!
//! # Parameters
//!
//! - [`laplace_scale_for`]: discrete Laplace scale `Δ₁/ε` for ε-DP with L1 sensitivity Δ₁
//!   (Ghosh, Roughgarden and Sundararajan 2009, the geometric mechanism; CKS20 §2).
//! - [`gaussian_sigma2_for`]: σ² = Δ₂²/(2ρ) gives ρ-zCDP (CKS20 Theorem 4).
//! - [`release_threshold`]: the threshold a noisy count must reach before its cell (key)
//!   is published at all, which makes releasing data-dependent keys (ε, δ)-DP.
//! - [`parse_rational`]: ε and δ from configuration (`0.5`, `1e-6`, `1/3`), exactly.
//!
//! # Contribution bounding
//!
//! Sensitivities above assume each visitor touches at most `max_cells_per_visitor` cells
//! and adds at most `max_views_per_cell` views to each. [`bound_contributions`] enforces
//! that before noise is added (Wilson et al. 2020, "Differentially Private SQL with Bounded
//! User Contribution", Proceedings on Privacy Enhancing Technologies).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `blake3::derive_key` context of [`seed_for`].
const SEED_CONTEXT: &str = "logveil 2026-11-29 dp noise seed v1";
/// Hashed under the seed key to start the XOF stream of [`NoiseRng`].
const RNG_LABEL: &[u8] = b"logveil dp noise stream v1";
/// Bytes of XOF output buffered at a time (BLAKE3 produces several 64-byte blocks at once).
const BUFFER: usize = 512;

/// Errors of this module: a bad number or a parameter outside what is meaningful.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpError {
    /// The text is not a non-negative decimal or fraction that fits the representation.
    #[error("{0}")]
    Parse(String),
    /// A parameter outside its domain (ε = 0, scale 0, δ ≥ 1, …).
    #[error("{0}")]
    Parameter(String),
}

// ---------------------------------------------------------------------------------------
// Rational numbers
// ---------------------------------------------------------------------------------------

/// A non-negative rational `num/den`, always in lowest terms with `den > 0`.
///
/// Serialised as a string: an exact decimal when one exists (`0.5`, `0.000001`), else
/// `num/den` (`1/3`). [`FromStr`] reads the same forms and scientific notation (`1e-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rational {
    num: u64,
    den: u64,
}

impl Rational {
    pub const ZERO: Self = Self { num: 0, den: 1 };
    pub const ONE: Self = Self { num: 1, den: 1 };

    /// `num/den` in lowest terms; an error when `den` is 0.
    pub fn new(num: u64, den: u64) -> Result<Self, DpError> {
        if den == 0 {
            return Err(DpError::Parameter(format!(
                "{num}/0: the denominator is zero"
            )));
        }
        let g = gcd(num, den);
        Ok(Self {
            num: num / g,
            den: den / g,
        })
    }

    /// The integer `n`.
    pub const fn integer(n: u64) -> Self {
        Self { num: n, den: 1 }
    }

    pub const fn num(self) -> u64 {
        self.num
    }

    pub const fn den(self) -> u64 {
        self.den
    }

    pub const fn is_zero(self) -> bool {
        self.num == 0
    }

    /// Reads `3`, `0.5`, `.5`, `1e-6`, `2.5E3`, `1/3` or `0.5/3` (see [`parse_rational`]).
    pub fn parse(text: &str) -> Result<Self, DpError> {
        parse_rational(text)
            .map(|(num, den)| Self { num, den })
            .map_err(DpError::Parse)
    }

    /// `self + other`, or `None` when the reduced result does not fit two `u64`s.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        let g = u128::from(gcd(self.den, other.den));
        let (b, d) = (u128::from(self.den), u128::from(other.den));
        let num = u128::from(self.num)
            .checked_mul(d / g)?
            .checked_add(u128::from(other.num).checked_mul(b / g)?)?;
        let den = (b / g).checked_mul(d)?;
        from_u128_pair(num, den)
    }

    /// The nearest `f64`: for public parameters only, never for sampling.
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// Reduces `num/den` (`den > 0`) and fits it into [`Rational`].
fn from_u128_pair(num: u128, den: u128) -> Option<Rational> {
    let g = gcd128(num, den);
    let (num, den) = (num / g, den / g);
    Some(Rational {
        num: u64::try_from(num).ok()?,
        den: u64::try_from(den).ok()?,
    })
}

impl Ord for Rational {
    fn cmp(&self, other: &Self) -> Ordering {
        // Both products fit u128 exactly.
        (u128::from(self.num) * u128::from(other.den))
            .cmp(&(u128::from(other.num) * u128::from(self.den)))
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            return write!(f, "{}", self.num);
        }
        // An exact decimal exists when den divides 10^k; 10^19 < 2^64 bounds k.
        let mut pow: u128 = 1;
        for k in 1..=19_usize {
            pow *= 10;
            if pow.is_multiple_of(u128::from(self.den)) {
                let scaled = u128::from(self.num) * (pow / u128::from(self.den));
                let (int, frac) = (scaled / pow, scaled % pow);
                let digits = format!("{frac:0k$}");
                return write!(f, "{int}.{}", digits.trim_end_matches('0'));
            }
        }
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl FromStr for Rational {
    type Err = DpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Rational {
    type Error = DpError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Rational> for String {
    fn from(r: Rational) -> Self {
        r.to_string()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    if a == 0 { 1 } else { a }
}

fn gcd128(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    if a == 0 { 1 } else { a }
}

/// Parses a non-negative number exactly into `(num, den)` in lowest terms.
///
/// Accepted: integers (`3`), decimals (`0.5`, `.5`, `5.`), scientific notation (`1e-6`,
/// `2.5E+3`) and fractions of those (`1/3`, `0.5/3`). Surrounding whitespace is ignored.
/// Refused, with a message saying why: signs other than in the exponent, `inf`/`nan`,
/// empty parts, a zero denominator, and values whose reduced numerator or denominator does
/// not fit a `u64`.
pub fn parse_rational(text: &str) -> Result<(u64, u64), String> {
    let s = text.trim();
    let fail = |reason: &str| {
        format!(
            "invalid number `{text}`: {reason} (expected a non-negative decimal such as 0.5 or 1e-6, or a fraction such as 1/3)"
        )
    };
    let (num, den) = match s.split_once('/') {
        Some((a, b)) => {
            let (an, ad) = parse_decimal(a.trim()).map_err(fail)?;
            let (bn, bd) = parse_decimal(b.trim()).map_err(fail)?;
            if bn == 0 {
                return Err(fail("the denominator is zero"));
            }
            (
                an.checked_mul(bd).ok_or_else(|| fail("too large"))?,
                ad.checked_mul(bn).ok_or_else(|| fail("too large"))?,
            )
        }
        None => parse_decimal(s).map_err(fail)?,
    };
    let r = from_u128_pair(num, den)
        .ok_or_else(|| fail("too large or too precise for two 64-bit integers"))?;
    Ok((r.num, r.den))
}

/// A decimal with optional exponent as an unreduced `(num, den)` in `u128`.
fn parse_decimal(s: &str) -> Result<(u128, u128), &'static str> {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return Err("no digits");
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err("only digits, one `.` and an exponent are allowed");
    }
    // Trailing zeros after the point add nothing but would inflate the denominator.
    let frac = frac.trim_end_matches('0');
    let mut num: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        num = num
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(b - b'0')))
            .ok_or("too many digits")?;
    }
    let mut scale: i64 = -(frac.len() as i64);
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
            return Err("bad exponent");
        }
        let value: i64 = digits.parse().map_err(|_| "bad exponent")?;
        scale += if exp.starts_with('-') { -value } else { value };
    }
    if num == 0 {
        return Ok((0, 1));
    }
    let pow = |k: i64| {
        u32::try_from(k)
            .ok()
            .and_then(|k| 10_u128.checked_pow(k))
            .ok_or("exponent out of range")
    };
    if scale >= 0 {
        Ok((num.checked_mul(pow(scale)?).ok_or("too large")?, 1))
    } else {
        Ok((num, pow(-scale)?))
    }
}

// ---------------------------------------------------------------------------------------
// The random stream
// ---------------------------------------------------------------------------------------

/// Derives the noise seed of one release from a secret and the parts naming the release.
///
/// `blake3::derive_key("logveil 2026-11-29 dp noise seed v1", secret ‖ len(p₁) ‖ p₁ ‖ …)`
/// with each length a little-endian `u64`, so distinct part lists never collide. Pass the
/// report name, the partition day and a digest of everything the release depends on
/// (input data and report definition): the same release then gets the same noise on every
/// re-run and cannot be averaged away, while any change gives independent noise. Derive
/// separate seeds for separate purposes (append a part such as `b"bound"` for
/// [`bound_contributions`]).
pub fn seed_for(secret: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // Holds a copy of the secret: wiped when dropped.
    let mut material = Zeroizing::new(Vec::with_capacity(
        32 + parts.iter().map(|p| 8 + p.len()).sum::<usize>(),
    ));
    material.extend_from_slice(secret);
    for part in parts {
        material.extend_from_slice(&(part.len() as u64).to_le_bytes());
        material.extend_from_slice(part);
    }
    blake3::derive_key(SEED_CONTEXT, &material)
}

/// A deterministic cryptographic random stream: BLAKE3 keyed with a 32-byte seed, in
/// extendable-output mode. Not `Clone`: two copies would repeat the same noise.
pub struct NoiseRng {
    reader: blake3::OutputReader,
    buf: [u8; BUFFER],
    pos: usize,
    /// Spare random bits for fair coins, consumed from the low end.
    bits: u64,
    nbits: u32,
}

impl fmt::Debug for NoiseRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoiseRng { .. }")
    }
}

impl NoiseRng {
    /// The stream for `seed` (usually from [`seed_for`]).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut hasher = blake3::Hasher::new_keyed(seed);
        hasher.update(RNG_LABEL);
        Self {
            reader: hasher.finalize_xof(),
            buf: [0; BUFFER],
            pos: BUFFER,
            bits: 0,
            nbits: 0,
        }
    }

    /// The next 64 bits of the stream (little-endian).
    pub fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > BUFFER {
            self.reader.fill(&mut self.buf);
            self.pos = 0;
        }
        let mut word = [0; 8];
        word.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(word)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        if self.nbits == 0 {
            self.bits = self.next_u64();
            self.nbits = 64;
        }
        let bit = self.bits & 1 == 1;
        self.bits >>= 1;
        self.nbits -= 1;
        bit
    }

    /// A uniform integer in `[0, n)`, exactly: Lemire's multiply-shift with rejection of
    /// the `2^64 mod n` biased values.
    ///
    /// # Panics
    /// When `n` is 0 (the range is empty).
    pub fn uniform_below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "uniform_below(0): empty range");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform integer in `[0, n)` for `n > 0`.
    fn uniform_below_u128(&mut self, n: u128) -> u128 {
        if let Ok(small) = u64::try_from(n) {
            return u128::from(self.uniform_below(small));
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if x >= threshold {
                return x % n;
            }
        }
    }

    /// True with probability `p` (1 when `p ≥ 1`).
    pub fn bernoulli(&mut self, p: Rational) -> bool {
        bernoulli_ratio(self, u128::from(p.num), u128::from(p.den))
    }

    /// True with probability `exp(−γ)`, exactly (CKS20 Algorithm 1).
    pub fn bernoulli_exp_neg(&mut self, gamma: Rational) -> bool {
        bernoulli_exp_neg(self, u128::from(gamma.num), u128::from(gamma.den))
    }
}

// ---------------------------------------------------------------------------------------
// Exact Bernoulli trials over u128 and a 512-bit integer
// ---------------------------------------------------------------------------------------

/// The unsigned integers the Bernoulli trials run on.
trait Uint: Copy + Ord {
    const ONE: Self;
    fn is_zero(self) -> bool;
    /// `self − other` for `self ≥ other`.
    fn minus(self, other: Self) -> Self;
    fn checked_mul_u64(self, k: u64) -> Option<Self>;
    /// Uniform in `[0, n)`, `n > 0`.
    fn uniform_below(rng: &mut NoiseRng, n: Self) -> Self;
}

impl Uint for u128 {
    const ONE: Self = 1;

    fn is_zero(self) -> bool {
        self == 0
    }

    fn minus(self, other: Self) -> Self {
        self - other
    }

    fn checked_mul_u64(self, k: u64) -> Option<Self> {
        self.checked_mul(u128::from(k))
    }

    fn uniform_below(rng: &mut NoiseRng, n: Self) -> Self {
        rng.uniform_below_u128(n)
    }
}

/// Bernoulli(num/den), `den > 0`: compare a uniform integer below `den` with `num`.
fn bernoulli_ratio<U: Uint>(rng: &mut NoiseRng, num: U, den: U) -> bool {
    if num >= den {
        return true;
    }
    !num.is_zero() && U::uniform_below(rng, den) < num
}

/// Bernoulli(exp(−num/den)), `den > 0` (CKS20 Algorithm 1).
///
/// Each whole unit of γ costs one Bernoulli(exp(−1)) that must come up 1, so the loop stops
/// early (each pass continues with probability 1/e) however large γ is. `den` must leave
/// room for a factor of 2^64 in `U` (callers keep `den < 2^64` for `u128`).
fn bernoulli_exp_neg<U: Uint>(rng: &mut NoiseRng, mut num: U, den: U) -> bool {
    while num > den {
        if !bernoulli_exp_neg_at_most_one(rng, U::ONE, U::ONE) {
            return false;
        }
        num = num.minus(den);
    }
    bernoulli_exp_neg_at_most_one(rng, num, den)
}

/// Bernoulli(exp(−γ)) for γ = num/den ∈ [0, 1]: the number K of successive successes of
/// Bernoulli(γ/k), k = 1, 2, …, plus one, is odd with probability exp(−γ).
fn bernoulli_exp_neg_at_most_one<U: Uint>(rng: &mut NoiseRng, num: U, den: U) -> bool {
    let mut k: u64 = 1;
    loop {
        // k grows by one per success of probability ≤ 1/k: it never gets near 2^64.
        let den_k = den
            .checked_mul_u64(k)
            .expect("denominator has 64 bits of headroom");
        if !bernoulli_ratio(rng, num, den_k) {
            return k % 2 == 1;
        }
        k += 1;
    }
}

/// Little-endian 512-bit unsigned integer: enough for the discrete Gaussian's acceptance
/// test with 64-bit parameters (at most 2·(64+64+33+64) bits before the loop's factor k).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct U512([u64; 8]);

impl U512 {
    const ZERO: Self = Self([0; 8]);

    fn from_u128(x: u128) -> Self {
        let mut limbs = [0; 8];
        limbs[0] = x as u64;
        limbs[1] = (x >> 64) as u64;
        Self(limbs)
    }

    fn to_u128(self) -> Option<u128> {
        if self.0[2..].iter().any(|&l| l != 0) {
            return None;
        }
        Some(u128::from(self.0[0]) | (u128::from(self.0[1]) << 64))
    }

    fn checked_mul(self, other: Self) -> Option<Self> {
        let mut out = [0_u64; 16];
        for (i, &a) in self.0.iter().enumerate() {
            if a == 0 {
                continue;
            }
            let mut carry: u128 = 0;
            for (j, &b) in other.0.iter().enumerate() {
                let t = u128::from(a) * u128::from(b) + u128::from(out[i + j]) + carry;
                out[i + j] = t as u64;
                carry = t >> 64;
            }
            out[i + 8] = carry as u64;
        }
        if out[8..].iter().any(|&l| l != 0) {
            return None;
        }
        let mut limbs = [0; 8];
        limbs.copy_from_slice(&out[..8]);
        Some(Self(limbs))
    }

    fn bits(self) -> u32 {
        for i in (0..8).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + (64 - self.0[i].leading_zeros());
            }
        }
        0
    }
}

impl Ord for U512 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for U512 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Uint for U512 {
    const ONE: Self = Self([1, 0, 0, 0, 0, 0, 0, 0]);

    fn is_zero(self) -> bool {
        self == Self::ZERO
    }

    fn minus(self, other: Self) -> Self {
        let mut out = [0; 8];
        let mut borrow = false;
        for (o, (&a, &b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            let (d, b1) = a.overflowing_sub(b);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            *o = d;
            borrow = b1 || b2;
        }
        Self(out)
    }

    fn checked_mul_u64(self, k: u64) -> Option<Self> {
        self.checked_mul(Self::from_u128(u128::from(k)))
    }

    fn uniform_below(rng: &mut NoiseRng, n: Self) -> Self {
        // Rejection from the smallest power of two ≥ n: fewer than 2 draws on average.
        let bits = n.bits();
        let limbs = bits.div_ceil(64) as usize;
        let top_bits = bits - 64 * (limbs as u32 - 1);
        loop {
            let mut x = [0; 8];
            for limb in &mut x[..limbs] {
                *limb = rng.next_u64();
            }
            if top_bits < 64 {
                x[limbs - 1] &= (1 << top_bits) - 1;
            }
            let x = Self(x);
            if x < n {
                return x;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Discrete Laplace and discrete Gaussian
// ---------------------------------------------------------------------------------------

/// The discrete Laplace (two-sided geometric) distribution with rational scale `t`:
/// `P(x) = (1 − e^{−1/t}) / (1 + e^{−1/t}) · e^{−|x|/t}` for every integer `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteLaplace {
    scale: Rational,
}

impl DiscreteLaplace {
    /// An error for scale 0 (no noise is never what a caller of this module wants).
    pub fn new(scale: Rational) -> Result<Self, DpError> {
        if scale.is_zero() {
            return Err(DpError::Parameter(
                "discrete Laplace scale must be positive".into(),
            ));
        }
        Ok(Self { scale })
    }

    /// Scale `sensitivity/ε`: ε-DP for a query with that L1 sensitivity.
    pub fn for_epsilon(epsilon: Rational, sensitivity: u64) -> Result<Self, DpError> {
        Self::new(laplace_scale_for(epsilon, sensitivity)?)
    }

    pub const fn scale(self) -> Rational {
        self.scale
    }

    /// One draw (CKS20 Algorithm 2 with `t/s` = the scale). Draws beyond the `i64` range,
    /// which need scales above about 2^57, saturate.
    pub fn sample(&self, rng: &mut NoiseRng) -> i64 {
        discrete_laplace(rng, self.scale.num, self.scale.den)
    }
}

/// `Lap_Z(t/s)` for `t, s ≥ 1`.
fn discrete_laplace(rng: &mut NoiseRng, t: u64, s: u64) -> i64 {
    loop {
        // X = U + t·V with U uniform below t and V geometric is geometric with parameter
        // e^{−1/t}: U is accepted with probability e^{−U/t}, V counts successes of e^{−1}.
        let u = rng.uniform_below(t);
        if !bernoulli_exp_neg(rng, u128::from(u), u128::from(t)) {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_neg(rng, 1_u128, 1_u128) {
            v += 1;
        }
        let x = u128::from(t)
            .saturating_mul(u128::from(v))
            .saturating_add(u128::from(u));
        // Y = floor(X/s) is geometric with parameter e^{−s/t}; a random sign, rejecting
        // −0, makes it two-sided.
        let y = x / u128::from(s);
        let negative = rng.coin();
        if negative && y == 0 {
            continue;
        }
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

/// The discrete Gaussian with rational variance parameter `σ²`:
/// `P(x) ∝ e^{−x²/(2σ²)}` for every integer `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscreteGaussian {
    sigma2: Rational,
}

impl DiscreteGaussian {
    /// An error for σ² = 0.
    pub fn new(sigma2: Rational) -> Result<Self, DpError> {
        if sigma2.is_zero() {
            return Err(DpError::Parameter(
                "discrete Gaussian σ² must be positive".into(),
            ));
        }
        Ok(Self { sigma2 })
    }

    /// σ² = Δ₂²/(2ρ): ρ-zCDP for a query with squared L2 sensitivity Δ₂².
    pub fn for_rho(rho: Rational, l2_sensitivity_squared: u64) -> Result<Self, DpError> {
        Self::new(gaussian_sigma2_for(rho, l2_sensitivity_squared)?)
    }

    pub const fn sigma2(self) -> Rational {
        self.sigma2
    }

    /// One draw (CKS20 Algorithm 3).
    pub fn sample(&self, rng: &mut NoiseRng) -> i64 {
        let (n, d) = (self.sigma2.num, self.sigma2.den);
        // t = ⌊σ⌋ + 1, exactly: ⌊√⌊n/d⌋⌋ = ⌊√(n/d)⌋.
        let t = (n / d).isqrt() + 1;
        let big = |x: u64| U512::from_u128(u128::from(x));
        let mul = |a: U512, b: U512| a.checked_mul(b).expect("fits 512 bits");
        // den = 2·n·d·t², the same for every round.
        let den = mul(mul(mul(big(2), big(n)), big(d)), mul(big(t), big(t)));
        loop {
            let y = discrete_laplace(rng, t, 1);
            // Accept with probability exp(−(|y| − σ²/t)² / (2σ²))
            //   = exp(−(|y|·d·t − n)² / (2·n·d·t²)).
            let a = mul(mul(big(y.unsigned_abs()), big(d)), big(t));
            let diff = if a >= big(n) {
                a.minus(big(n))
            } else {
                big(n).minus(a)
            };
            let num = mul(diff, diff);
            let accept = match (num.to_u128(), den.to_u128()) {
                (Some(num), Some(den)) if den <= u128::from(u64::MAX) => {
                    bernoulli_exp_neg(rng, num, den)
                }
                _ => bernoulli_exp_neg(rng, num, den),
            };
            if accept {
                return y;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// The discrete Laplace scale `sensitivity/ε` that makes a query with that L1 sensitivity
/// ε-differentially private (the geometric mechanism; CKS20 §2). Errors: ε = 0,
/// sensitivity 0, or a scale that does not fit a [`Rational`].
pub fn laplace_scale_for(epsilon: Rational, sensitivity: u64) -> Result<Rational, DpError> {
    if epsilon.is_zero() {
        return Err(DpError::Parameter("ε must be positive".into()));
    }
    if sensitivity == 0 {
        return Err(DpError::Parameter("sensitivity must be at least 1".into()));
    }
    from_u128_pair(
        u128::from(sensitivity) * u128::from(epsilon.den),
        u128::from(epsilon.num),
    )
    .ok_or_else(|| DpError::Parameter(format!("scale {sensitivity}/{epsilon} is too large")))
}

/// The discrete Gaussian σ² = Δ₂²/(2ρ) that makes a query with squared L2 sensitivity
/// Δ₂² ρ-zCDP (CKS20 Theorem 4). For visitor counts where each visitor adds 1 to at most
/// m cells, Δ₂² = m.
pub fn gaussian_sigma2_for(
    rho: Rational,
    l2_sensitivity_squared: u64,
) -> Result<Rational, DpError> {
    if rho.is_zero() {
        return Err(DpError::Parameter("ρ must be positive".into()));
    }
    if l2_sensitivity_squared == 0 {
        return Err(DpError::Parameter("sensitivity must be at least 1".into()));
    }
    from_u128_pair(
        u128::from(l2_sensitivity_squared) * u128::from(rho.den),
        2 * u128::from(rho.num),
    )
    .ok_or_else(|| DpError::Parameter("σ² is too large".into()))
}

/// The smallest noisy count at which a cell (a key that exists only because of the data)
/// may be published, for distinct-visitor counts with discrete Laplace noise of scale
/// `b = Δ₀/ε`, where Δ₀ = `max_cells_per_visitor` (each visitor adds 1 to at most Δ₀ cells,
/// so the counts have L1 sensitivity Δ₀).
///
/// A visitor's removal can make at most Δ₀ cells vanish, each with true count 1. Each is
/// still published with probability `P[1 + Z ≥ τ] = q^{τ−1}/(1+q)`, `q = e^{−1/b}` (the
/// discrete Laplace tail, for τ ≥ 2); requiring the Δ₀ of them together to stay below δ
/// gives
///
/// `τ = 1 + max(1, ⌈b · ln(Δ₀ / (δ·(1 + e^{−1/b})))⌉)`,
///
/// and then publishing the noisy counts of the cells that pass is (ε, δ)-DP. This is the
/// discrete form of the usual continuous-Laplace bound `τ = 1 + (Δ₀/ε)·ln(Δ₀/(2δ))`
/// (Korolova, Kenthapadi, Mishra and Ntoulas 2009, "Releasing Search Queries and Clicks
/// Privately", WWW; Wilson et al. 2020, "Differentially Private SQL with Bounded User
/// Contribution", Proceedings on Privacy Enhancing Technologies, §3): the discrete tail's `1 + q` replaces the continuous `2`,
/// raising τ by at most `b·ln 2`. τ is a public parameter, so `f64` is fine here; the
/// result is rounded up and checked again so rounding never lowers it.
///
/// Errors: ε = 0, δ = 0 or δ ≥ 1, `max_cells_per_visitor` = 0, or τ beyond `i64`.
pub fn release_threshold(
    epsilon: Rational,
    delta: Rational,
    max_cells_per_visitor: u64,
) -> Result<i64, DpError> {
    // Below 2^53 every integer is an f64, so `k + 1` below is exact.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if epsilon.is_zero() {
        return Err(DpError::Parameter("ε must be positive".into()));
    }
    if delta.is_zero() || delta >= Rational::ONE {
        return Err(DpError::Parameter(format!(
            "δ must be in (0, 1), not {delta}"
        )));
    }
    if max_cells_per_visitor == 0 {
        return Err(DpError::Parameter(
            "max_cells_per_visitor must be at least 1".into(),
        ));
    }
    let cells = max_cells_per_visitor as f64;
    let b = cells / epsilon.to_f64();
    let q = (-1.0 / b).exp();
    let delta_f = delta.to_f64();
    let too_large = || {
        DpError::Parameter(format!(
            "release threshold for ε = {epsilon}, δ = {delta}, {max_cells_per_visitor} cells per visitor is too large"
        ))
    };
    let mut k = (b * (cells / (delta_f * (1.0 + q))).ln()).ceil().max(1.0);
    if !k.is_finite() || k >= EXACT {
        return Err(too_large());
    }
    // Rounding guard: the union bound must hold at the chosen k. The logarithm is exact to
    // a few ulps, so one step suffices; a few more cost nothing.
    let mut steps = 0;
    while cells * (-k / b).exp() / (1.0 + q) > delta_f {
        steps += 1;
        if steps > 8 {
            return Err(too_large());
        }
        k += 1.0;
    }
    Ok(1 + k as i64)
}

// ---------------------------------------------------------------------------------------
// Contribution bounding
// ---------------------------------------------------------------------------------------

/// What the visitors kept after bounding contribute to one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundedCell {
    /// Distinct visitors kept in this cell.
    pub visitors: u64,
    /// Their views, each visitor's clamped to `max_views_per_cell`.
    pub views: u64,
}

/// The result of [`bound_contributions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<C> {
    /// Per cell, in key order. A cell every one of whose visitors dropped it is absent.
    pub cells: BTreeMap<C, BoundedCell>,
    /// (visitor, cell) pairs dropped because the visitor had too many cells.
    pub dropped_pairs: u64,
    /// Views removed by clamping (not counting those of dropped pairs).
    pub clamped_views: u64,
}

/// Bounds each visitor's contribution: at most `max_cells_per_visitor` cells per visitor
/// (a uniformly random subset when it has more: a partial Fisher–Yates shuffle driven by
/// `rng`), and at most `max_views_per_cell` views per visitor and cell.
///
/// Input: `(visitor, cell, views)` triples in any order; repeated (visitor, cell) pairs are
/// summed. The result depends only on the multiset of triples and the state of `rng`:
/// visitors are processed in key order and their cells in key order before sampling. Use a
/// stream seeded for this purpose ([`seed_for`] with an extra part), so that re-runs keep
/// the same cells.
pub fn bound_contributions<V, C, I>(
    per_visitor: I,
    max_cells_per_visitor: usize,
    max_views_per_cell: u64,
    rng: &mut NoiseRng,
) -> Bounded<C>
where
    V: Ord,
    C: Ord,
    I: IntoIterator<Item = (V, C, u64)>,
{
    let mut by_visitor: BTreeMap<V, BTreeMap<C, u64>> = BTreeMap::new();
    for (visitor, cell, views) in per_visitor {
        let slot = by_visitor
            .entry(visitor)
            .or_default()
            .entry(cell)
            .or_default();
        *slot = slot.saturating_add(views);
    }
    let mut out = Bounded {
        cells: BTreeMap::new(),
        dropped_pairs: 0,
        clamped_views: 0,
    };
    for cells in by_visitor.into_values() {
        let mut cells: Vec<(C, u64)> = cells.into_iter().collect();
        if cells.len() > max_cells_per_visitor {
            let n = cells.len();
            for i in 0..max_cells_per_visitor {
                let j = i + rng.uniform_below((n - i) as u64) as usize;
                cells.swap(i, j);
            }
            out.dropped_pairs += (n - max_cells_per_visitor) as u64;
            cells.truncate(max_cells_per_visitor);
        }
        for (cell, views) in cells {
            let kept = views.min(max_views_per_cell);
            out.clamped_views += views - kept;
            let slot = out.cells.entry(cell).or_default();
            slot.visitors += 1;
            slot.views = slot.views.saturating_add(kept);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(num: u64, den: u64) -> Rational {
        Rational::new(num, den).unwrap()
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_rational("0.5"), Ok((1, 2)));
        assert_eq!(parse_rational(" .25 "), Ok((1, 4)));
        assert_eq!(parse_rational("3"), Ok((3, 1)));
        assert_eq!(parse_rational("5."), Ok((5, 1)));
        assert_eq!(parse_rational("1e-6"), Ok((1, 1_000_000)));
        assert_eq!(parse_rational("2.5E+3"), Ok((2500, 1)));
        assert_eq!(parse_rational("1/3"), Ok((1, 3)));
        assert_eq!(parse_rational("0.5/3"), Ok((1, 6)));
        assert_eq!(
            parse_rational("0.100000000000000000000000000000"),
            Ok((1, 10))
        );
        assert_eq!(parse_rational("0"), Ok((0, 1)));
        assert_eq!(parse_rational("0e999"), Ok((0, 1)));
        for bad in [
            "", ".", "-1", "+1", "1/0", "abc", "inf", "NaN", "1e", "1e+", "1..2", "1/2/3", "1e99",
            "1e-20", "0x10", "1 2",
        ] {
            let err = parse_rational(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_exactly_and_round_trips() {
        for (num, den, text) in [
            (1, 2, "0.5"),
            (1, 1_000_000, "0.000001"),
            (3, 1, "3"),
            (1, 3, "1/3"),
            (7, 8, "0.875"),
            (5, 2, "2.5"),
            (u64::MAX - 1, 3, "18446744073709551614/3"),
        ] {
            let value = r(num, den);
            assert_eq!(value.to_string(), text);
            assert_eq!(Rational::parse(text).unwrap(), value);
        }
        let json = serde_json::to_string(&r(1, 20)).unwrap();
        assert_eq!(json, "\"0.05\"");
        assert_eq!(serde_json::from_str::<Rational>(&json).unwrap(), r(1, 20));
        assert!(serde_json::from_str::<Rational>("\"-1\"").is_err());
    }

    #[test]
    fn rational_arithmetic() {
        assert_eq!(r(1, 2).checked_add(r(1, 3)), Some(r(5, 6)));
        assert_eq!(r(1, 10).checked_add(r(2, 10)), Some(r(3, 10)));
        assert_eq!(Rational::integer(u64::MAX).checked_add(Rational::ONE), None);
        assert!(r(1, 3) < r(1, 2));
        assert!(r(u64::MAX - 1, u64::MAX) < Rational::ONE);
        assert_eq!(r(2, 4), r(1, 2));
        assert!(Rational::new(1, 0).is_err());
    }

    #[test]
    fn u512_arithmetic() {
        let a = U512::from_u128(u128::MAX);
        let sq = a.checked_mul(a).unwrap();
        // (2^128 − 1)² = 2^256 − 2^129 + 1
        assert_eq!(sq.0, [1, 0, u64::MAX - 1, u64::MAX, 0, 0, 0, 0]);
        assert_eq!(sq.bits(), 256);
        assert!(sq.checked_mul(sq).unwrap().checked_mul(a).is_none());
        assert_eq!(sq.minus(sq), U512::ZERO);
        assert_eq!(
            U512::from_u128(1 << 64).minus(U512::ONE).to_u128(),
            Some(u64::MAX.into())
        );
        assert_eq!(sq.cmp(&a), Ordering::Greater);
        assert_eq!(a.cmp(&sq), Ordering::Less);
        assert_eq!(sq.to_u128(), None);
        let mut rng = NoiseRng::from_seed(&[3; 32]);
        for _ in 0..200 {
            assert!(U512::uniform_below(&mut rng, sq) < sq);
            assert!(U512::uniform_below(&mut rng, U512::ONE).is_zero());
        }
    }

    #[test]
    fn uniform_below_is_uniform_and_in_range() {
        let mut rng = NoiseRng::from_seed(&[1; 32]);
        let mut counts = [0_u32; 6];
        for _ in 0..60_000 {
            counts[rng.uniform_below(6) as usize] += 1;
        }
        // χ² with 5 degrees of freedom, 0.1% critical value 20.5.
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - 10_000.0).powi(2) / 10_000.0)
            .sum();
        assert!(chi2 < 20.5, "{counts:?} χ² = {chi2}");
        assert_eq!(rng.uniform_below(1), 0);
        for _ in 0..100 {
            assert!(rng.uniform_below(u64::MAX) < u64::MAX);
            let n = (1_u128 << 64) + 3;
            assert!(rng.uniform_below_u128(n) < n);
        }
    }

    #[test]
    fn bernoulli_of_rationals() {
        let mut rng = NoiseRng::from_seed(&[2; 32]);
        assert!(rng.bernoulli(Rational::ONE));
        assert!(rng.bernoulli(r(5, 1)));
        assert!(!rng.bernoulli(Rational::ZERO));
        let n = 100_000;
        let hits = (0..n).filter(|_| rng.bernoulli(r(1, 3))).count();
        let sd = (f64::from(n) * (2.0 / 9.0)).sqrt();
        assert!(
            (hits as f64 - f64::from(n) / 3.0).abs() < 5.0 * sd,
            "{hits}"
        );
    }

    #[test]
    fn coins_are_fair() {
        let mut rng = NoiseRng::from_seed(&[4; 32]);
        let heads = (0..100_000).filter(|_| rng.coin()).count();
        assert!((heads as f64 - 50_000.0).abs() < 5.0 * 158.2, "{heads}");
    }

    #[test]
    fn gaussian_takes_the_u512_path_for_large_parameters() {
        // σ² with a 64-bit denominator forces den = 2·n·d·t² past u128.
        let g = DiscreteGaussian::new(r(u64::MAX - 2, u64::MAX - 1)).unwrap();
        let mut rng = NoiseRng::from_seed(&[5; 32]);
        let draws: Vec<i64> = (0..2000).map(|_| g.sample(&mut rng)).collect();
        assert!(draws.iter().all(|x| x.abs() < 10));
        let mean = draws.iter().sum::<i64>() as f64 / 2000.0;
        let var = draws.iter().map(|&x| (x * x) as f64).sum::<f64>() / 2000.0;
        assert!(mean.abs() < 0.15, "{mean}");
        // The discrete Gaussian with σ² = 1 has variance ≈ 0.99995.
        assert!((var - 1.0).abs() < 0.15, "{var}");
    }
}
