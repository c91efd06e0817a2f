//! Exactly-once ingest: the index of `(tenant_id, event_id)` pairs seen.
//!
//! Two parts per tenant:
//! - **hot ids**: the ids (as 128-bit hashes) of events still in the write
//!   buffer (bounded by the buffer's size; dropped from here once their
//!   partition is persisted);
//! - a **scalable Bloom filter** over every id ever accepted (1 % false
//!   positives, ~9.6 bits per id: about 1.2 MB per million events).
//!
//! An id that is in neither is new. An id the Bloom filter may have seen but
//! that is not hot is checked exactly against the tenant's Parquet files
//! (whose own per-row-group Bloom filters on `event_id` skip most of the
//! reading). The check is per tenant, not per date partition, so a re-sent
//! event is a duplicate even if its `event_time` changed.

use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::xxh3_128;

/// Bits per id in each filter stage: ~1 % false positives with 7 probes.
const BITS_PER_ID: usize = 10;
const PROBES: u32 = 7;
const FIRST_STAGE_IDS: usize = 1 << 16;

/// A Bloom filter that grows by adding stages of doubling capacity.
#[derive(Debug, Default)]
struct ScalableBloom {
    stages: Vec<Stage>,
}

#[derive(Debug)]
struct Stage {
    bits: Vec<u64>,
    capacity: usize,
    len: usize,
}

impl Stage {
    fn new(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_ID).div_ceil(64).max(1);
        Self {
            bits: vec![0; words],
            capacity,
            len: 0,
        }
    }

    /// The bit positions of `hash` (double hashing); no borrow of the
    /// stage, so `insert` sets them without collecting them first.
    fn positions(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let nbits = (self.bits.len() * 64) as u64;
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        (0..PROBES).map(move |i| (h1.wrapping_add(u64::from(i).wrapping_mul(h2)) % nbits) as usize)
    }

    fn contains(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    fn insert(&mut self, hash: u64) {
        for p in self.positions(hash) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.len += 1;
    }
}

impl ScalableBloom {
    fn contains(&self, hash: u64) -> bool {
        self.stages.iter().any(|s| s.contains(hash))
    }

    fn insert(&mut self, hash: u64) {
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
        self.stages.iter().map(|s| s.bits.len() * 8).sum()
    }
}

#[derive(Debug, Default)]
struct TenantIndex {
    /// The 128-bit xxh3 of each hot id, not the id: no allocation per
    /// event and 16 bytes per id. Two different ids of one tenant are
    /// taken for one only if their 128-bit hashes collide (about 1 in 10^20
    /// for a billion ids). The Bloom filter uses the hash's low 64 bits.
    hot: HashSet<u128, ahash::RandomState>,
    bloom: ScalableBloom,
}

/// The id's 128-bit hash (hot ids) and its low 64 bits (Bloom filter).
fn id_hash(id: &str) -> (u128, u64) {
    let h = xxh3_128(id.as_bytes());
    (h, h as u64)
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
        let (key, hash) = id_hash(id);
        if t.hot.contains(&key) {
            return Verdict::Duplicate;
        }
        if !checked && t.bloom.contains(hash) {
            return Verdict::Check;
        }
        t.hot.insert(key);
        t.bloom.insert(hash);
        Verdict::New
    }

    /// Undoes a reservation whose write failed. The Bloom filter keeps the
    /// bit (a false positive later costs one exact check, nothing more).
    pub(crate) fn release(&mut self, tenant: &str, id: &str) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.hot.remove(&id_hash(id).0);
        }
    }

    /// Records an id that is already persisted (start-up rebuild).
    pub(crate) fn insert_persisted(&mut self, tenant: &str, id: &str) {
        self.tenants
            .entry(tenant.to_string())
            .or_default()
            .bloom
            .insert(id_hash(id).1);
    }

    /// Records an id replayed from the WAL into the buffer.
    pub(crate) fn insert_hot(&mut self, tenant: &str, id: &str) {
        let t = self.tenants.entry(tenant.to_string()).or_default();
        let (key, hash) = id_hash(id);
        t.hot.insert(key);
        t.bloom.insert(hash);
    }

    /// The ids are persisted now: keep them only in the Bloom filter.
    pub(crate) fn persisted<'a>(&mut self, tenant: &str, ids: impl Iterator<Item = &'a str>) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            for id in ids {
                t.hot.remove(&id_hash(id).0);
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
        d.persisted("a", ["e1"].into_iter());
        assert_eq!(d.reserve("a", "e1", false), Verdict::Check);
        assert_eq!(d.reserve("a", "e1", true), Verdict::New);
        d.release("a", "e1");
        assert_eq!(d.reserve("a", "e1", true), Verdict::New);
    }

    #[test]
    fn false_positive_rate_is_about_one_percent() {
        let mut b = ScalableBloom::default();
        for i in 0..200_000u64 {
            b.insert(id_hash(&format!("in-{i}")).1);
        }
        let fp = (0..100_000u64)
            .filter(|i| b.contains(id_hash(&format!("out-{i}")).1))
            .count();
        // Several stages each at ~1 %: the union stays below 3 %.
        assert!(fp < 3_000, "{fp} false positives in 100k");
        // 64k + 128k + 256k capacity stages at 10 bits per id.
        assert_eq!(b.bytes(), (65_536 + 131_072 + 262_144) * 10 / 8);
    }
}
