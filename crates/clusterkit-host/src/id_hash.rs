//! A hasher for maps keyed by the host's integer ids (resources, libraries).
//!
//! The ids are chosen by the host, not by an adversary, so the default
//! SipHash's flooding resistance buys nothing here, and it was about a tenth
//! of the monitor's instructions per health check. A multiplication by an odd
//! constant (Fibonacci hashing) is a bijection, so distinct ids never
//! collide, and it spreads them into the high bits the standard map's
//! control bytes are taken from.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// 2^64 divided by the golden ratio, made odd.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hashes one integer with a multiplication; see the module docs.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; correct (if slower) for anything else.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(GOLDEN);
    }
}

/// A map keyed by a host-chosen `u32` id.
pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_hash_apart_and_round_trip_through_a_map() {
        let mut map = IdMap::default();
        for id in 0..10_000u32 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000u32).all(|id| map[&id] == id * 2));
        // A bijection: no two of these ids share a hash, high bits included.
        let mut tops: Vec<u64> = (0..10_000u32)
            .map(|id| {
                let mut h = IdHasher::default();
                h.write_u32(id);
                h.finish()
            })
            .collect();
        tops.sort_unstable();
        tops.dedup();
        assert_eq!(tops.len(), 10_000);
    }
}
