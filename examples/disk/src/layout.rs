//! The on-disk layout: block 0 holds the signature and the reservation
//! record, block 1 is the probe block; everything after is the workload's.
//!
//! Block 0 (all integers little-endian; the record and its lease fit in the
//! first 512-byte sector, so a device writes them atomically):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | signature `CKDISK02` (layout 2; `CKDISK01` was layout 1) |
//! | 8..16 | generation (u64) |
//! | 16..18 | owner length in bytes (u16, at most 255) |
//! | 18..24 | reserved, zero |
//! | 24..279 | owner, UTF-8, zero-padded (empty: the disk is free) |
//! | 279..280 | zero |
//! | 280..288 | lease renewals (u64): grows at each renewal by the holder |
//! | 288..292 | lease timeout the holder announces, in ms (u32) |
//! | 292..296 | reserved, zero |
//! | 296..304 | checksum: FNV-1a 64 of bytes 0..296 |
//! | 304..4096 | zero |

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clusterkit::{Error, Result};

/// The size of a block: the unit of every I/O, and the alignment of direct I/O.
pub const BLOCK_SIZE: usize = 4096;
/// The block holding the signature and the reservation record.
pub const RECORD_BLOCK: u64 = 0;
/// The block `is_alive` writes, reads back and verifies.
pub const PROBE_BLOCK: u64 = 1;
/// The smallest usable disk: the record block and the probe block.
pub const MIN_DISK_SIZE: u64 = 2 * BLOCK_SIZE as u64;
/// The first 8 bytes of a formatted disk (layout 2: the record with its
/// lease).
pub const SIGNATURE: [u8; 8] = *b"CKDISK02";
/// The signature of layout 1 (the record without a lease), which FORMAT
/// rewrites and everything else refuses.
pub const OLD_SIGNATURE: [u8; 8] = *b"CKDISK01";
/// The longest owner, in bytes.
pub const MAX_OWNER_LEN: usize = 255;
/// The first 8 bytes of a probe block written by `is_alive`.
pub const PROBE_MAGIC: [u8; 8] = *b"CKPROBE1";

const GENERATION_AT: usize = 8;
const OWNER_LEN_AT: usize = 16;
const RESERVED_AT: usize = 18;
const OWNER_AT: usize = 24;
const RENEWALS_AT: usize = OWNER_AT + MAX_OWNER_LEN + 1; // 280
const LEASE_TIMEOUT_AT: usize = RENEWALS_AT + 8; // 288
const LEASE_RESERVED_AT: usize = LEASE_TIMEOUT_AT + 4; // 292
const CHECKSUM_AT: usize = LEASE_RESERVED_AT + 4; // 296
const RECORD_END: usize = CHECKSUM_AT + 8; // 304

/// The reservation record in block 0: who holds the disk, and the how-many-th
/// reservation this is.
///
/// `online` writes its owner with the generation after the one it found;
/// `offline` writes an empty owner and keeps the generation, so the
/// generation only ever grows (until the disk is formatted again).
///
/// # Layout
///
/// Block 0 ([`BLOCK_SIZE`] bytes at offset 0; integers little-endian; the
/// record and its [`LeaseStamp`] fit in the first 512-byte sector, which a
/// device writes atomically):
///
/// | bytes | field |
/// |---|---|
/// | 0..8 | [`SIGNATURE`] `CKDISK02` |
/// | 8..16 | generation (u64) |
/// | 16..18 | owner length in bytes (u16, at most [`MAX_OWNER_LEN`]) |
/// | 18..24 | reserved, zero |
/// | 24..279 | owner, UTF-8, zero-padded (empty: the disk is free) |
/// | 279..280 | zero |
/// | 280..288 | [`LeaseStamp::renewals`] (u64) |
/// | 288..292 | [`LeaseStamp::timeout_ms`] (u32) |
/// | 292..296 | reserved, zero |
/// | 296..304 | checksum: FNV-1a 64 of bytes 0..296 |
/// | 304..4096 | zero |
///
/// Block 1 ([`PROBE_BLOCK`]) is the probe block: [`PROBE_MAGIC`], the
/// probe's seed (u64), then pseudo-random bytes. Everything from byte 8192
/// ([`MIN_DISK_SIZE`]) on is the workload's.
///
/// ```
/// use clusterkit_disk::Record;
///
/// let record = Record::new("node-a/data", 7);
/// let block = record.to_block().unwrap();
/// assert_eq!(&block[..8], b"CKDISK02");
/// assert_eq!(Record::from_block(&block).unwrap(), record);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who holds the reservation (`<hostname>/<resource name>` by default);
    /// empty when the disk is free.
    pub owner: String,
    /// How many reservations the disk has seen since it was formatted.
    pub generation: u64,
}

/// Why block 0 does not hold a reservation record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Block 0 does not start with [`SIGNATURE`]: never formatted, or
    /// overwritten. `blank` when blocks 0 and 1 are all zeros.
    NotFormatted {
        /// Whether the inspected bytes are all zero.
        blank: bool,
    },
    /// Block 0 holds layout 1 ([`OLD_SIGNATURE`], a record without a
    /// lease), written by an earlier version of this type.
    OldLayout,
    /// The signature is there but the record is damaged.
    Corrupt(String),
}

/// The lease fields of block 0, next to the [`Record`] they belong to.
///
/// The holder rewrites block 0 every renewal interval with `renewals` one
/// higher; a newcomer that sees neither the record nor the stamp change for
/// the lease timeout concludes the holder stopped renewing. Nobody compares
/// clocks: the stamp is a counter, judged by whether it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseStamp {
    /// How many times the holder has renewed the lease (it starts at 0 with
    /// each claim).
    pub renewals: u64,
    /// The lease timeout the holder announces, in milliseconds: a newcomer
    /// waits for the longer of this and its own before taking the disk.
    pub timeout_ms: u32,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::NotFormatted { blank: true } => {
                f.write_str("it is not formatted (block 0 is blank)")
            }
            LayoutError::NotFormatted { blank: false } => write!(
                f,
                "it is not formatted for clusterkit (block 0 does not start with the signature {})",
                String::from_utf8_lossy(&SIGNATURE)
            ),
            LayoutError::OldLayout => write!(
                f,
                "it has layout 1 (signature {}, a record without a lease), written by an older \
                 version of the disk type",
                String::from_utf8_lossy(&OLD_SIGNATURE)
            ),
            LayoutError::Corrupt(why) => write!(f, "its reservation record is corrupt: {why}"),
        }
    }
}

impl std::error::Error for LayoutError {}

impl Record {
    /// A record naming `owner` at `generation`.
    pub fn new(owner: impl Into<String>, generation: u64) -> Record {
        Record {
            owner: owner.into(),
            generation,
        }
    }

    /// A free record (no owner) at `generation`.
    pub fn free(generation: u64) -> Record {
        Record::new("", generation)
    }

    /// Whether nobody holds the disk.
    pub fn is_free(&self) -> bool {
        self.owner.is_empty()
    }

    /// Block 0 holding this record, [`BLOCK_SIZE`] bytes. Fails when the
    /// owner is longer than [`MAX_OWNER_LEN`] bytes.
    /// The lease stamp is zero (as a record nobody renews).
    pub fn to_block(&self) -> Result<Vec<u8>> {
        self.to_block_with(LeaseStamp::default())
    }

    /// Block 0 holding this record and `stamp`, [`BLOCK_SIZE`] bytes.
    pub fn to_block_with(&self, stamp: LeaseStamp) -> Result<Vec<u8>> {
        let mut block = vec![0; BLOCK_SIZE];
        self.encode_into(stamp, &mut block)?;
        Ok(block)
    }

    /// Writes this record and `stamp` over `block` (at least [`BLOCK_SIZE`]
    /// bytes; the rest of the block is zeroed).
    pub(crate) fn encode_into(&self, stamp: LeaseStamp, block: &mut [u8]) -> Result<()> {
        let owner = self.owner.as_bytes();
        if owner.len() > MAX_OWNER_LEN {
            return Err(Error::InvalidInput(format!(
                "the owner {:?} is {} bytes long; at most {MAX_OWNER_LEN} fit in the record",
                self.owner,
                owner.len()
            )));
        }
        let block = &mut block[..BLOCK_SIZE];
        block.fill(0);
        block[..8].copy_from_slice(&SIGNATURE);
        block[GENERATION_AT..GENERATION_AT + 8].copy_from_slice(&self.generation.to_le_bytes());
        // At most 255: checked above.
        block[OWNER_LEN_AT..OWNER_LEN_AT + 2].copy_from_slice(&(owner.len() as u16).to_le_bytes());
        block[OWNER_AT..OWNER_AT + owner.len()].copy_from_slice(owner);
        block[RENEWALS_AT..RENEWALS_AT + 8].copy_from_slice(&stamp.renewals.to_le_bytes());
        block[LEASE_TIMEOUT_AT..LEASE_TIMEOUT_AT + 4]
            .copy_from_slice(&stamp.timeout_ms.to_le_bytes());
        let checksum = fnv1a64(&block[..CHECKSUM_AT]);
        block[CHECKSUM_AT..RECORD_END].copy_from_slice(&checksum.to_le_bytes());
        Ok(())
    }

    /// Decodes block 0 (at least the first 304 bytes of it), leaving out
    /// the lease stamp.
    pub fn from_block(block: &[u8]) -> std::result::Result<Record, LayoutError> {
        Record::with_stamp_from_block(block).map(|(record, _)| record)
    }

    /// Decodes block 0 (at least the first 304 bytes of it): the record and
    /// its lease stamp.
    pub fn with_stamp_from_block(
        block: &[u8],
    ) -> std::result::Result<(Record, LeaseStamp), LayoutError> {
        if block.len() < RECORD_END {
            return Err(LayoutError::Corrupt(format!(
                "block 0 is {} bytes, shorter than a record ({RECORD_END})",
                block.len()
            )));
        }
        if block[..8] == OLD_SIGNATURE {
            return Err(LayoutError::OldLayout);
        }
        if block[..8] != SIGNATURE {
            return Err(LayoutError::NotFormatted {
                blank: block.iter().all(|&b| b == 0),
            });
        }
        let stored = u64::from_le_bytes(le8(&block[CHECKSUM_AT..RECORD_END]));
        let computed = fnv1a64(&block[..CHECKSUM_AT]);
        if stored != computed {
            return Err(LayoutError::Corrupt(format!(
                "checksum mismatch (stored {stored:#018x}, computed {computed:#018x})"
            )));
        }
        let len = u16::from_le_bytes([block[OWNER_LEN_AT], block[OWNER_LEN_AT + 1]]) as usize;
        if len > MAX_OWNER_LEN {
            return Err(LayoutError::Corrupt(format!(
                "owner length {len} is above {MAX_OWNER_LEN}"
            )));
        }
        if block[RESERVED_AT..OWNER_AT].iter().any(|&b| b != 0) {
            return Err(LayoutError::Corrupt(
                "reserved bytes 18..24 are not zero".into(),
            ));
        }
        if block[LEASE_RESERVED_AT..CHECKSUM_AT]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(LayoutError::Corrupt(
                "reserved bytes 292..296 are not zero".into(),
            ));
        }
        let owner = std::str::from_utf8(&block[OWNER_AT..OWNER_AT + len])
            .map_err(|e| LayoutError::Corrupt(format!("the owner is not UTF-8: {e}")))?;
        let record = Record {
            owner: owner.to_owned(),
            generation: u64::from_le_bytes(le8(&block[GENERATION_AT..GENERATION_AT + 8])),
        };
        let mut timeout = [0; 4];
        timeout.copy_from_slice(&block[LEASE_TIMEOUT_AT..LEASE_RESERVED_AT]);
        let stamp = LeaseStamp {
            renewals: u64::from_le_bytes(le8(&block[RENEWALS_AT..RENEWALS_AT + 8])),
            timeout_ms: u32::from_le_bytes(timeout),
        };
        Ok((record, stamp))
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_free() {
            write!(f, "nobody (free, generation {})", self.generation)
        } else {
            write!(f, "{} (generation {})", self.owner, self.generation)
        }
    }
}

fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// FNV-1a, 64 bits: enough to tell a damaged or half-written record from a
/// real one (it is no defence against a malicious writer).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A seed no other probe (in this process, or likely any other) has used.
pub(crate) fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix64(nanos ^ (u64::from(std::process::id()) << 32) ^ splitmix64(count))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fills `block` with the probe pattern of `seed`: [`PROBE_MAGIC`], the
/// seed, then pseudo-random bytes.
pub(crate) fn fill_probe(block: &mut [u8], seed: u64) {
    block[..8].copy_from_slice(&PROBE_MAGIC);
    block[8..16].copy_from_slice(&seed.to_le_bytes());
    let mut state = seed;
    for chunk in block[16..].chunks_mut(8) {
        state = splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_fit_in_one_sector() {
        for record in [
            Record::free(0),
            Record::new("node-a/data", 1),
            Record::new("x".repeat(MAX_OWNER_LEN), u64::MAX),
            Record::new("nœud-β/données", 42),
        ] {
            let block = record.to_block().unwrap();
            assert_eq!(block.len(), BLOCK_SIZE);
            assert!(block[512..].iter().all(|&b| b == 0));
            assert_eq!(Record::from_block(&block).unwrap(), record);
        }
        assert!(
            Record::new("x".repeat(MAX_OWNER_LEN + 1), 1)
                .to_block()
                .is_err()
        );
    }

    #[test]
    fn damage_is_detected() {
        let good = Record::new("node-a/data", 3).to_block().unwrap();
        assert_eq!(
            Record::from_block(&[0; BLOCK_SIZE]),
            Err(LayoutError::NotFormatted { blank: true })
        );
        let mut foreign = vec![0; BLOCK_SIZE];
        foreign[510] = 0x55;
        foreign[511] = 0xaa; // an MBR
        assert_eq!(
            Record::from_block(&foreign),
            Err(LayoutError::NotFormatted { blank: false })
        );
        for at in [8, 16, 30, 279, 280, 290, 295, 296, 303] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            match Record::from_block(&bad) {
                Err(LayoutError::Corrupt(why)) => assert!(why.contains("checksum"), "{why}"),
                other => panic!("flipping byte {at}: {other:?}"),
            }
        }
        assert!(Record::from_block(&good[..100]).is_err());
        let mut old = good.clone();
        old[..8].copy_from_slice(&OLD_SIGNATURE);
        assert_eq!(Record::from_block(&old), Err(LayoutError::OldLayout));
    }

    #[test]
    fn the_lease_stamp_round_trips_beside_the_record() {
        let record = Record::new("node-a/data", 9);
        let stamp = LeaseStamp {
            renewals: 12_345,
            timeout_ms: 10_000,
        };
        let block = record.to_block_with(stamp).unwrap();
        assert!(block[512..].iter().all(|&b| b == 0));
        assert_eq!(
            Record::with_stamp_from_block(&block).unwrap(),
            (record.clone(), stamp)
        );
        assert_eq!(Record::from_block(&block).unwrap(), record);
    }

    #[test]
    fn probe_patterns_differ_per_seed() {
        let (mut a, mut b) = (vec![0; BLOCK_SIZE], vec![0; BLOCK_SIZE]);
        fill_probe(&mut a, fresh_seed());
        fill_probe(&mut b, fresh_seed());
        assert_eq!(&a[..8], b"CKPROBE1");
        assert_ne!(a, b);
        let mut again = vec![0; BLOCK_SIZE];
        fill_probe(&mut again, u64::from_le_bytes(le8(&a[8..16])));
        assert_eq!(a, again);
    }
}
