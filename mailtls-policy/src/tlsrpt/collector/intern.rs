//! Byte strings interned to dense `u32` ids in one open-addressing table.
//!
//! The collector interns each distinct policy and each distinct failure
//! once, so the counters can be keyed by small integers. The table is split
//! like a Swiss table: one control byte per slot (empty, or 7 bits of the
//! hash) and, beside it, the slot's `u32` id. A lookup probes control bytes
//! (1 byte a slot, so 100,000 policies take 128 KiB of them and stay in
//! the CPU's cache even while a busy MTA streams other data through it),
//! reads the id of a slot whose tag matches, then that entry and its
//! bytes. The bytes of all entries live back to back in one arena, so there
//! is no per-entry allocation and no pointer chasing through owned strings.

/// The most ids an interner hands out; above it [`Interner::intern`] says
/// [`Full`]. (`u32::MAX` is kept free as the collector's "no failure".)
pub(super) const MAX_IDS: usize = u32::MAX as usize - 1;

/// Returned when [`MAX_IDS`] ids are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

struct Entry<T> {
    start: usize,
    len: usize,
    /// Where probing starts and the control byte, kept so growing never
    /// hashes the bytes again.
    place: u64,
    tag: u8,
    extra: T,
}

/// Interned byte strings with a small value `T` kept beside each.
pub(super) struct Interner<T> {
    /// Power-of-two many; 0 is empty, else [`tag`] of the hash.
    ctrl: Vec<u8>,
    /// The id in each slot whose control byte is not 0.
    ids: Vec<u32>,
    entries: Vec<Entry<T>>,
    arena: Vec<u8>,
}

const MIN_SLOTS: usize = 16;

impl<T: Default> Interner<T> {
    pub(super) fn new() -> Self {
        Self {
            ctrl: vec![0; MIN_SLOTS],
            ids: vec![0; MIN_SLOTS],
            entries: Vec::new(),
            arena: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The control byte and id at the first slot `place` probes: a caller
    /// that reads them early (before it has finished hashing the bytes)
    /// lets the memory load overlap with that work.
    pub(super) fn peek(&self, place: u64) -> (u8, u32) {
        let i = place as usize & (self.ctrl.len() - 1);
        (
            self.ctrl.get(i).copied().unwrap_or(0),
            self.ids.get(i).copied().unwrap_or(0),
        )
    }

    /// The id of `bytes`, adding it with `T::default()` if it is new; the
    /// bool says whether it was. `place` says where probing starts and must
    /// be the same for equal bytes (a hash of all or part of them); `hash`,
    /// a hash of all of them, gives the 7-bit tag that spares comparing the
    /// bytes of entries that merely share the place.
    pub(super) fn intern(
        &mut self,
        bytes: &[u8],
        place: u64,
        hash: u64,
    ) -> Result<(u32, bool), Full> {
        let first = self.peek(place);
        self.intern_from(bytes, place, hash, first)
    }

    /// [`Interner::intern`] with the result of [`Interner::peek`]`(place)`,
    /// taken since without changing the interner.
    pub(super) fn intern_from(
        &mut self,
        bytes: &[u8],
        place: u64,
        hash: u64,
        first: (u8, u32),
    ) -> Result<(u32, bool), Full> {
        let mask = self.ctrl.len() - 1;
        let tag = tag(hash);
        let mut i = place as usize & mask;
        let (mut c, mut id) = first;
        // Never endless: the load stays below 4/5, so an empty slot comes.
        while c != 0 {
            if c == tag && self.bytes(id) == Some(bytes) {
                return Ok((id, false));
            }
            i = (i + 1) & mask;
            c = self.ctrl.get(i).copied().unwrap_or(0);
            id = self.ids.get(i).copied().unwrap_or(0);
        }
        let id = self.entries.len();
        if id >= MAX_IDS {
            return Err(Full);
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.entries.push(Entry {
            start,
            len: bytes.len(),
            place,
            tag,
            extra: T::default(),
        });
        // Keep the load at or below 4/5: linear probing stays short, and
        // 100,000 policies fit 131,072 slots (128 KiB of control bytes,
        // 512 KiB of ids).
        if self.entries.len() * 5 > self.ctrl.len() * 4 {
            self.grow();
        } else if let (Some(c), Some(slot)) = (self.ctrl.get_mut(i), self.ids.get_mut(i)) {
            *c = tag;
            *slot = id as u32;
        }
        Ok((id as u32, true))
    }

    /// The bytes interned as `id`.
    pub(super) fn bytes(&self, id: u32) -> Option<&[u8]> {
        let e = self.entries.get(id as usize)?;
        self.arena.get(e.start..e.start + e.len)
    }

    /// The value kept beside `id`.
    pub(super) fn extra(&self, id: u32) -> Option<&T> {
        self.entries.get(id as usize).map(|e| &e.extra)
    }

    /// The value kept beside `id`, to change.
    pub(super) fn extra_mut(&mut self, id: u32) -> Option<&mut T> {
        self.entries.get_mut(id as usize).map(|e| &mut e.extra)
    }

    /// Doubles the slots and places every id again from its stored place
    /// (every id, the newest included).
    fn grow(&mut self) {
        let n = self.ctrl.len() * 2;
        let mask = n - 1;
        let mut ctrl = vec![0u8; n];
        let mut ids = vec![0u32; n];
        for (id, e) in self.entries.iter().enumerate() {
            let mut i = e.place as usize & mask;
            while ctrl.get(i).is_some_and(|&c| c != 0) {
                i = (i + 1) & mask;
            }
            if let (Some(c), Some(slot)) = (ctrl.get_mut(i), ids.get_mut(i)) {
                *c = e.tag;
                *slot = id as u32;
            }
        }
        self.ctrl = ctrl;
        self.ids = ids;
    }
}

/// The control byte of a hash: its top 7 bits with the high bit set, so
/// never 0 (empty). The slot index uses the low bits.
fn tag(hash: u64) -> u8 {
    (hash >> 57) as u8 | 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_get_one_id_and_growth_keeps_them() {
        let mut t: Interner<u8> = Interner::new();
        let keys: Vec<Vec<u8>> = (0..5000u32).map(|i| i.to_le_bytes().repeat(3)).collect();
        let hash = |b: &[u8]| {
            use std::hash::BuildHasher;
            foldhash::fast::FixedState::with_seed(7).hash_one(b)
        };
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.intern(k, hash(k), hash(k)), Ok((i as u32, true)));
        }
        assert!(t.ctrl.len() >= 5000 * 5 / 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.intern(k, hash(k), hash(k)), Ok((i as u32, false)));
            assert_eq!(t.bytes(i as u32), Some(k.as_slice()));
        }
        *t.extra_mut(17).unwrap() = 9;
        assert_eq!(t.extra(17), Some(&9));
        assert_eq!(t.extra(16), Some(&0));
        assert_eq!(t.len(), 5000);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_their_bytes() {
        // Every key with the same full hash: tags match, only the bytes
        // can tell them apart, and probing must walk past each.
        let mut t: Interner<()> = Interner::new();
        let keys: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; usize::from(i)]).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.intern(k, 42, 42), Ok((i as u32, true)));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.intern(k, 42, 42), Ok((i as u32, false)));
        }
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn one_place_many_tags() {
        // Many entries starting at one place (one domain, many policies):
        // tags keep them apart without comparing bytes, growth keeps them.
        let mut t: Interner<()> = Interner::new();
        let hash = |b: &[u8]| {
            use std::hash::BuildHasher;
            foldhash::fast::FixedState::with_seed(3).hash_one(b)
        };
        let keys: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.intern(k, 7, hash(k)), Ok((i as u32, true)));
        }
        for (i, k) in keys.iter().enumerate() {
            let first = t.peek(7);
            assert_eq!(t.intern_from(k, 7, hash(k), first), Ok((i as u32, false)));
        }
    }
}
