//! A deterministic pseudo-random stream: the BLAKE3 extendable output of (seed, stream name).
//!
//! Integer-only draws, so the output is identical on every platform and build.

use std::fmt;

const CONTEXT: &str = "logveil samplegen v1";

pub struct Rng {
    reader: blake3::OutputReader,
    buf: [u8; 256],
    pos: usize,
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rng")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Rng {
    /// An independent stream per purpose, so changing one part of the generator does not
    /// reshuffle the others.
    pub fn new(seed: u64, stream: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
        hasher.update(&seed.to_le_bytes());
        hasher.update(stream.as_bytes());
        Self {
            reader: hasher.finalize_xof(),
            buf: [0; 256],
            pos: 256,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > self.buf.len() {
            self.reader.fill(&mut self.buf);
            self.pos = 0;
        }
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(bytes)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-40 for our `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    pub fn weighted(&mut self, weights: impl IntoIterator<Item = u32> + Clone) -> usize {
        let total: u64 = weights.clone().into_iter().map(u64::from).sum();
        let mut x = self.below(total);
        for (i, w) in weights.into_iter().enumerate() {
            let w = u64::from(w);
            if x < w {
                return i;
            }
            x -= w;
        }
        unreachable!("x < total")
    }

    /// `chars` lowercase hex digits.
    pub fn hex(&mut self, chars: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..chars)
            .map(|_| char::from(DIGITS[self.index(16)]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42, "x");
            (0..100).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42, "x");
            (0..100).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(42, "y");
            (0..100).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(7, "z");
        for _ in 0..1000 {
            assert!(r.range(3, 5) >= 3 && r.range(3, 5) <= 5);
            assert!(r.weighted([0, 5, 0]) == 1);
        }
    }
}
