//! Exactly-once ingest: the index of `(tenant_id, event_id)` pairs seen.
//!
//! Two parts per tenant:
//! - **hot ids**: the ids (as 128-bit hashes) of events still in the write
//!   buffer (bounded by the buffer's size; dropped from here once their
//!   partition is persisted);
//! - a **scalable Bloom filter** over every id ever accepted (1 % false
//!   positives, 10 bits per id in cache-line blocks: about 1.2 MB per
//!   million events).
//!
//! An id that is in neither is new. An id the Bloom filter may have seen but
//! that is not hot is checked exactly against the tenant's Parquet files
//! (whose own per-row-group Bloom filters on `event_id` skip most of the
//! reading). The check is per tenant, not per date partition, so a re-sent
//! event is a duplicate even if its `event_time` changed.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_128;

/// Bits per id in each filter stage: ~1 % false positives with 7 probes.
const BITS_PER_ID: usize = 10;
const PROBES: u32 = 7;
const FIRST_STAGE_IDS: usize = 1 << 16;
/// Bits of one filter block: one 64-byte cache line.
const BLOCK_BITS: u32 = 512;

/// A Bloom filter that grows by adding stages of doubling capacity.
#[derive(Debug, Default)]
struct ScalableBloom {
    stages: Vec<Stage>,
}

/// One cache line of filter bits.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; 8]);

/// A blocked Bloom filter: all probes of an id fall into one 512-bit block,
/// chosen by the high half of the id's hash, so a lookup or an insert
/// touches one cache line instead of seven (the filter of a busy tenant is
/// megabytes: every line is a cache miss). At 10 bits per id the blocks
/// raise the false-positive rate from ~0.8 % to ~1.2 %.
#[derive(Debug)]
struct Stage {
    blocks: Vec<Block>,
    capacity: usize,
    len: usize,
}

impl Stage {
    fn new(capacity: usize) -> Self {
        let blocks = (capacity * BITS_PER_ID)
            .div_ceil(BLOCK_BITS as usize)
            .max(1);
        Self {
            blocks: vec![Block::default(); blocks],
            capacity,
            len: 0,
        }
    }

    /// The block of `hash` and, in it, the (word, bit mask) of each probe
    /// (double hashing on the low half).
    fn probes(&self, hash: u128) -> (usize, impl Iterator<Item = (usize, u64)> + use<>) {
        let high = (hash >> 64) as u64;
        // Multiply-shift maps the high half onto 0..blocks without a division.
        let block = ((u128::from(high) * self.blocks.len() as u128) >> 64) as usize;
        let low = hash as u64;
        let (h1, h2) = (low as u32, ((low >> 32) as u32) | 1);
        let bits = (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % BLOCK_BITS;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, bits)
    }

    fn contains(&self, hash: u128) -> bool {
        let (block, mut bits) = self.probes(hash);
        let words = &self.blocks[block].0;
        bits.all(|(w, mask)| words[w] & mask != 0)
    }

    fn insert(&mut self, hash: u128) {
        let (block, bits) = self.probes(hash);
        let words = &mut self.blocks[block].0;
        for (w, mask) in bits {
            words[w] |= mask;
        }
        self.len += 1;
    }
}

impl ScalableBloom {
    fn contains(&self, hash: u128) -> bool {
        self.stages.iter().any(|s| s.contains(hash))
    }

    fn insert(&mut self, hash: u128) {
        let full = self.stages.last().is_none_or(|s| s.len >= s.capacity);
        if full {
            let capacity = self
                .stages
                .last()
                .map_or(FIRST_STAGE_IDS, |s| s.capacity * 2);
            self.stages.push(Stage::new(capacity));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(hash);
        }
    }

    fn bytes(&self) -> usize {
        self.stages
            .iter()
            .map(|s| s.blocks.len() * std::mem::size_of::<Block>())
            .sum()
    }
}

/// Hashes the 128-bit id hashes of the hot set: they are uniformly random
/// already, so folding them is enough (no second hash function per id).
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys (`write_u128`); a plain fold otherwise.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = ((v >> 64) as u64) ^ (v as u64);
    }
}

#[derive(Debug, Default)]
struct TenantIndex {
    /// The 128-bit xxh3 of each hot id, not the id: no allocation per
    /// event and 16 bytes per id. Two different ids of one tenant are
    /// taken for one only if their 128-bit hashes collide (about 1 in 10^20
    /// for a billion ids). Every hot id is also in the Bloom filter.
    hot: HashSet<u128, BuildHasherDefault<IdHasher>>,
    bloom: ScalableBloom,
}

/// The id's 128-bit hash, for the hot ids and the Bloom filter.
fn id_hash(id: &str) -> u128 {
    xxh3_128(id.as_bytes())
}

/// The hashes [`DedupIndex::persisted`] takes, computed without the lock.
pub(crate) fn id_hashes<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<u128> {
    ids.map(id_hash).collect()
}

/// What [`DedupIndex::reserve`] made of one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Never seen: now reserved (hot) and must be written or released.
    New,
    /// Hot: a certain duplicate.
    Duplicate,
    /// Possibly persisted: check the tenant's files, then call `reserve`
    /// again with `checked = true`.
    Check,
}

#[derive(Debug, Default)]
pub(crate) struct DedupIndex {
    tenants: HashMap<String, TenantIndex, ahash::RandomState>,
}

impl DedupIndex {
    /// Decides about one id. With `checked`, the caller has verified that
    /// the id is not in any persisted file, so a Bloom hit no longer matters.
    pub(crate) fn reserve(&mut self, tenant: &str, id: &str, checked: bool) -> Verdict {
        let t = match self.tenants.get_mut(tenant) {
            Some(t) => t,
            None => self.tenants.entry(tenant.to_string()).or_default(),
        };
        let key = id_hash(id);
        // Hot ids are in the Bloom filter too: an id the filter has not
        // seen is new without a look at the hot set, and a new id costs one
        // filter block and one hot-set slot.
        if !checked && t.bloom.contains(key) {
            return if t.hot.contains(&key) {
                Verdict::Duplicate
            } else {
                Verdict::Check
            };
        }
        if !t.hot.insert(key) {
            return Verdict::Duplicate;
        }
        t.bloom.insert(key);
        Verdict::New
    }

    /// Undoes a reservation whose write failed. The Bloom filter keeps the
    /// bit (a false positive later costs one exact check, nothing more).
    pub(crate) fn release(&mut self, tenant: &str, id: &str) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.hot.remove(&id_hash(id));
        }
    }

    /// Records an id that is already persisted (start-up rebuild).
    pub(crate) fn insert_persisted(&mut self, tenant: &str, id: &str) {
        self.tenants
            .entry(tenant.to_string())
            .or_default()
            .bloom
            .insert(id_hash(id));
    }

    /// Records an id replayed from the WAL into the buffer.
    pub(crate) fn insert_hot(&mut self, tenant: &str, id: &str) {
        let t = self.tenants.entry(tenant.to_string()).or_default();
        let key = id_hash(id);
        t.hot.insert(key);
        t.bloom.insert(key);
    }

    /// The ids (their [`id_hashes`]) are persisted now: keep them only in
    /// the Bloom filter. Called in chunks by the persister, which hashes
    /// outside the lock and lets writers in between chunks.
    pub(crate) fn persisted(&mut self, tenant: &str, hashes: &[u128]) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            for hash in hashes {
                t.hot.remove(hash);
            }
            if t.hot.is_empty() {
                t.hot.shrink_to_fit();
            }
        }
    }

    pub(crate) fn hot_ids(&self) -> usize {
        self.tenants.values().map(|t| t.hot.len()).sum()
    }

    pub(crate) fn bloom_bytes(&self) -> usize {
        self.tenants.values().map(|t| t.bloom.bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let mut d = DedupIndex::default();
        assert_eq!(d.reserve("a", "e1", false), Verdict::New);
        assert_eq!(d.reserve("a", "e1", false), Verdict::Duplicate);
        assert_eq!(
            d.reserve("b", "e1", false),
            Verdict::New,
            "tenants are separate"
        );
        d.persisted("a", &id_hashes(["e1"].into_iter()));
        assert_eq!(d.reserve("a", "e1", false), Verdict::Check);
        assert_eq!(d.reserve("a", "e1", true), Verdict::New);
        d.release("a", "e1");
        assert_eq!(d.reserve("a", "e1", true), Verdict::New);
    }

    #[test]
    fn a_full_blocked_stage_has_about_one_percent_false_positives() {
        let mut stage = Stage::new(100_000);
        for i in 0..100_000u64 {
            stage.insert(id_hash(&format!("in-{i}")));
        }
        assert!((0..100_000u64).all(|i| stage.contains(id_hash(&format!("in-{i}")))));
        let fp = (0..100_000u64)
            .filter(|i| stage.contains(id_hash(&format!("out-{i}"))))
            .count();
        // 10 bits and 7 probes per id in 512-bit blocks: ~1.2 % (0.8 % if
        // the probes were spread over the whole filter).
        assert!((500..2_000).contains(&fp), "{fp} false positives in 100k");
    }

    #[test]
    fn false_positive_rate_is_about_one_percent() {
        let mut b = ScalableBloom::default();
        for i in 0..200_000u64 {
            b.insert(id_hash(&format!("in-{i}")));
        }
        let fp = (0..100_000u64)
            .filter(|i| b.contains(id_hash(&format!("out-{i}"))))
            .count();
        // Several stages each at ~1 %: the union stays below 3 %.
        assert!(fp < 3_000, "{fp} false positives in 100k");
        // 64k + 128k + 256k capacity stages at 10 bits per id.
        assert_eq!(b.bytes(), (65_536 + 131_072 + 262_144) * 10 / 8);
    }
}
