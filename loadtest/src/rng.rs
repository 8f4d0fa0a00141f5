//! A tiny deterministic random number generator (xorshift64*), so that scenarios can pick
//! topics, payload sizes and client ids without another crate, and a run can be repeated.

/// A xorshift64* generator: fast, small, and good enough for choosing load shapes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`; any seed works (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (`bound` must be above 0; 0 gives 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        // The remainder is below `bound`, a usize, so the cast cannot truncate.
        (self.next_u64() % bound as u64) as usize
    }

    /// A value in `low..=high` (returns `low` when `high <= low`).
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        low + self.below(high - low + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_in_range_and_repeat_for_a_seed() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.between(10, 20);
            assert!((10..=20).contains(&x));
            assert_eq!(x, b.between(10, 20));
        }
        assert_eq!(Rng::new(0).below(0), 0);
        assert_eq!(Rng::new(1).between(5, 5), 5);
    }
}
