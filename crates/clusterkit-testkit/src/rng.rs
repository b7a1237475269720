//! A seedable random number generator for randomized tests.

use std::time::SystemTime;

/// A small deterministic generator (xorshift64). Randomized tests need no
/// statistical quality, only the same numbers again for the same seed, so
/// a failing run can be replayed with [`XorShift::new`].
#[derive(Debug, Clone)]
pub struct XorShift {
    state: u64,
    seed: u64,
}

impl XorShift {
    /// A generator starting from `seed`, which must not be 0 (xorshift
    /// stays at 0 forever).
    pub fn new(seed: u64) -> XorShift {
        assert_ne!(seed, 0, "xorshift needs a seed other than 0");
        XorShift { state: seed, seed }
    }

    /// A generator seeded from the clock. Prints the seed (`seed <n>`): the
    /// test harness shows it with a failure's output.
    pub fn from_clock() -> XorShift {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos() as u64
            | 1;
        println!("seed {seed}");
        XorShift::new(seed)
    }

    /// The seed it started from, for failure messages.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let mut a = XorShift::new(42);
        let mut b = XorShift::new(42);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        // The xorshift64 (13, 7, 17) sequence the chaos tests always drew.
        assert_eq!(first[0], 45_454_805_674);
        assert!((0..100).all(|_| a.below(3) < 3));
        assert_eq!(a.seed(), 42);
    }
}
