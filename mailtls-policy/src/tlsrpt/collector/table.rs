//! The in-memory counters: (UTC day, policy id, failure id) -> count.
//!
//! Policies and failures are interned once ([`Interner`]); a tuple is three
//! small integers and its counts. Recording a session hashes the policy's
//! bytes once and looks them up in the policy interner, whose entry also
//! remembers the policy's success tuple of its latest day, so a successful
//! session (most of them) touches one slot, one entry, the policy bytes and
//! one counter. A failure is first compared field by field with the failure
//! the policy counted last; only when it differs is it interned too and its
//! tuple found (through the failure's own cached tuple, else a small
//! open-addressing index keyed by the three integers).

use std::hash::BuildHasher;

use time::Date;

use super::intern::{Full, Interner};
use super::{
    FailureKey, FailureOutcome, PolicyKey, SessionOutcome, TupleKey, encode, owned_failure,
    owned_policy,
};

/// The failure id of a success tuple.
pub(super) const NO_FAILURE: u32 = u32::MAX;
const NO_TUPLE: u32 = u32::MAX;

/// One counter.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuple {
    pub(super) day: Date,
    pub(super) policy: u32,
    /// [`NO_FAILURE`] for successful sessions.
    pub(super) failure: u32,
    /// Sessions counted, in memory and (up to `pending`) in the log.
    pub(super) count: u64,
    /// Buffered mode: sessions counted but not yet written to the log.
    pub(super) pending: u64,
}

/// Kept beside each interned policy: its success tuple of the latest day
/// seen, so a repeated success needs no tuple index lookup.
#[derive(Debug, Clone, Copy)]
struct SuccessCache {
    day: Date,
    tuple: u32,
}

impl Default for SuccessCache {
    fn default() -> Self {
        Self {
            day: Date::MIN,
            tuple: NO_TUPLE,
        }
    }
}

/// Kept beside each interned failure: the tuple it last counted into. A
/// failure names the MX host, so it nearly always belongs to one policy,
/// and a repeated failure needs no tuple index lookup either.
#[derive(Debug, Clone, Copy)]
struct FailureCache {
    day: Date,
    policy: u32,
    tuple: u32,
}

impl Default for FailureCache {
    fn default() -> Self {
        Self {
            day: Date::MIN,
            policy: u32::MAX,
            tuple: NO_TUPLE,
        }
    }
}

/// Per policy: the failure tuple it last counted. A failing MX tends to
/// fail the same way session after session; comparing the session's
/// failure field by field with that one failure costs less than encoding,
/// hashing and looking it up.
#[derive(Debug, Clone, Copy)]
struct LastFailure {
    day: Date,
    failure: u32,
    tuple: u32,
}

impl Default for LastFailure {
    fn default() -> Self {
        Self {
            day: Date::MIN,
            failure: NO_FAILURE,
            tuple: NO_TUPLE,
        }
    }
}

/// Whether a session's failure is the owned failure `k`.
fn same_failure(k: &FailureKey, f: &FailureOutcome<'_>, mx_host: &str) -> bool {
    k.result_type == f.result_type
        && k.sending_mta_ip == f.sending_mta_ip
        && k.receiving_ip == f.receiving_ip
        && k.receiving_mx_hostname == mx_host
        && k.receiving_mx_helo.as_deref() == f.receiving_mx_helo
        && k.failure_reason_code.as_deref() == f.failure_reason_code
        && k.additional_information.as_deref() == f.additional_information
}

/// A slot of the tuple index: the tuple's identity inline, so a probe
/// reads one 16-byte slot and nothing else. `tuple_plus_one == 0` is empty.
#[derive(Debug, Clone, Copy, Default)]
struct IndexSlot {
    day: i32,
    policy: u32,
    failure: u32,
    tuple_plus_one: u32,
}

/// All counters of one collector.
pub(super) struct Table {
    /// Seeded per process: remote parties write the policy text, and a
    /// random seed keeps them from aiming collisions at one slot.
    hasher: foldhash::fast::RandomState,
    policies: Interner<SuccessCache>,
    policy_keys: Vec<PolicyKey>,
    /// Per policy id: the failure tuple it last counted.
    last_failure: Vec<LastFailure>,
    failures: Interner<FailureCache>,
    failure_keys: Vec<FailureKey>,
    tuples: Vec<Tuple>,
    index: Vec<IndexSlot>,
    /// Reused for encodings, so lookups do not allocate.
    scratch: Vec<u8>,
}

impl Table {
    pub(super) fn new() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            policies: Interner::new(),
            policy_keys: Vec::new(),
            last_failure: Vec::new(),
            failures: Interner::new(),
            failure_keys: Vec::new(),
            tuples: Vec::new(),
            index: vec![IndexSlot::default(); 16],
            scratch: Vec::with_capacity(256),
        }
    }

    pub(super) fn tuples(&self) -> &[Tuple] {
        &self.tuples
    }

    pub(super) fn tuple_mut(&mut self, id: usize) -> Option<&mut Tuple> {
        self.tuples.get_mut(id)
    }

    /// The policy and failure of a tuple, for snapshots and the log.
    pub(super) fn keys(&self, t: &Tuple) -> Option<(&PolicyKey, Option<&FailureKey>)> {
        let policy = self.policy_keys.get(t.policy as usize)?;
        if t.failure == NO_FAILURE {
            return Some((policy, None));
        }
        Some((policy, Some(self.failure_keys.get(t.failure as usize)?)))
    }

    /// The whole key of a tuple.
    pub(super) fn tuple_key(&self, t: &Tuple) -> Option<TupleKey> {
        let (policy, failure) = self.keys(t)?;
        Some(TupleKey {
            day: t.day,
            policy: policy.clone(),
            failure: failure.cloned(),
        })
    }

    /// The tuple of one session (created if new; the bool says so). No
    /// allocation unless the policy, failure or tuple is new.
    pub(super) fn tuple_of(
        &mut self,
        day: Date,
        o: &SessionOutcome<'_>,
    ) -> Result<(usize, bool), Full> {
        // Probing starts at a hash of the type and domain alone, so the
        // slot can be read before the whole policy is encoded and hashed:
        // the likely cache miss overlaps with that work instead of following
        // it. (Policies of one domain share the place; the tag from the full
        // hash keeps them apart.) Likewise the failure's slot, placed by its
        // result type and MX host.
        let place = self
            .hasher
            .hash_one((o.policy.policy_type, o.policy.domain));
        let first = self.policies.peek(place);
        let failure_place = o
            .failure
            .as_ref()
            .map(|f| self.hasher.hash_one((f.result_type, o.mx_host)));
        let failure_first = failure_place.map(|p| self.failures.peek(p));
        self.scratch.clear();
        encode::policy_ref(&mut self.scratch, &o.policy);
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let (policy, new) = self
            .policies
            .intern_from(&self.scratch, place, hash, first)?;
        if new {
            self.policy_keys.push(owned_policy(&o.policy));
            self.last_failure.push(LastFailure::default());
        }
        let (Some(f), Some(failure_place), Some(failure_first)) =
            (&o.failure, failure_place, failure_first)
        else {
            return self.success_tuple(day, policy);
        };
        if let Some(last) = self.last_failure.get(policy as usize)
            && last.day == day
            && last.tuple != NO_TUPLE
            && self
                .failure_keys
                .get(last.failure as usize)
                .is_some_and(|k| same_failure(k, f, o.mx_host))
        {
            return Ok((last.tuple as usize, false));
        }
        self.scratch.clear();
        encode::failure_outcome(&mut self.scratch, f, o.mx_host);
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let (failure, new) =
            self.failures
                .intern_from(&self.scratch, failure_place, hash, failure_first)?;
        if new {
            self.failure_keys.push(owned_failure(f, o.mx_host));
        }
        let (tuple, new) = self.failure_tuple(day, policy, failure)?;
        if let Some(last) = self.last_failure.get_mut(policy as usize)
            && (last.tuple == NO_TUPLE || day >= last.day)
        {
            *last = LastFailure {
                day,
                failure,
                tuple: tuple as u32,
            };
        }
        Ok((tuple, new))
    }

    /// The tuple of an owned key (replaying the log, rebuilding after
    /// forgetting); equal keys get the same tuple.
    pub(super) fn tuple_of_key(&mut self, key: &TupleKey) -> Result<usize, Full> {
        let place = self
            .hasher
            .hash_one((key.policy.policy_type, key.policy.domain.as_str()));
        self.scratch.clear();
        encode::policy_key(&mut self.scratch, &key.policy);
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let (policy, new) = self.policies.intern(&self.scratch, place, hash)?;
        if new {
            self.policy_keys.push(key.policy.clone());
            self.last_failure.push(LastFailure::default());
        }
        let Some(f) = &key.failure else {
            return Ok(self.success_tuple(key.day, policy)?.0);
        };
        self.scratch.clear();
        encode::failure_key(&mut self.scratch, f);
        let hash = self.hasher.hash_one(self.scratch.as_slice());
        let place = self
            .hasher
            .hash_one((f.result_type, f.receiving_mx_hostname.as_str()));
        let (failure, new) = self.failures.intern(&self.scratch, place, hash)?;
        if new {
            self.failure_keys.push(f.clone());
        }
        Ok(self.failure_tuple(key.day, policy, failure)?.0)
    }

    fn failure_tuple(
        &mut self,
        day: Date,
        policy: u32,
        failure: u32,
    ) -> Result<(usize, bool), Full> {
        if let Some(c) = self.failures.extra(failure)
            && c.day == day
            && c.policy == policy
            && c.tuple != NO_TUPLE
        {
            return Ok((c.tuple as usize, false));
        }
        let (tuple, new) = self.tuple(day, policy, failure)?;
        if let Some(c) = self.failures.extra_mut(failure)
            && (c.tuple == NO_TUPLE || day >= c.day)
        {
            *c = FailureCache {
                day,
                policy,
                tuple: tuple as u32,
            };
        }
        Ok((tuple, new))
    }

    fn success_tuple(&mut self, day: Date, policy: u32) -> Result<(usize, bool), Full> {
        if let Some(c) = self.policies.extra(policy)
            && c.day == day
            && c.tuple != NO_TUPLE
        {
            return Ok((c.tuple as usize, false));
        }
        let (tuple, new) = self.tuple(day, policy, NO_FAILURE)?;
        if let Some(c) = self.policies.extra_mut(policy) {
            // Around midnight late sessions of yesterday may still come in:
            // the cache keeps the newer day.
            if c.tuple == NO_TUPLE || day >= c.day {
                *c = SuccessCache {
                    day,
                    tuple: tuple as u32,
                };
            }
        }
        Ok((tuple, new))
    }

    fn tuple(&mut self, day: Date, policy: u32, failure: u32) -> Result<(usize, bool), Full> {
        let jd = day.to_julian_day();
        let mask = self.index.len() - 1;
        let mut i = self.hasher.hash_one((jd, policy, failure)) as usize & mask;
        while let Some(s) = self.index.get(i) {
            if s.tuple_plus_one == 0 {
                break;
            }
            if s.day == jd && s.policy == policy && s.failure == failure {
                return Ok(((s.tuple_plus_one - 1) as usize, false));
            }
            i = (i + 1) & mask;
        }
        let id = self.tuples.len();
        if id >= super::intern::MAX_IDS {
            return Err(Full);
        }
        self.tuples.push(Tuple {
            day,
            policy,
            failure,
            count: 0,
            pending: 0,
        });
        let slot = IndexSlot {
            day: jd,
            policy,
            failure,
            tuple_plus_one: id as u32 + 1,
        };
        if self.tuples.len() * 4 > self.index.len() * 3 {
            self.grow_index();
        } else if let Some(s) = self.index.get_mut(i) {
            *s = slot;
        }
        Ok((id, true))
    }

    /// Doubles the index and places every tuple again (the newest included).
    fn grow_index(&mut self) {
        let n = self.index.len() * 2;
        let mask = n - 1;
        let mut index = vec![IndexSlot::default(); n];
        for (id, t) in self.tuples.iter().enumerate() {
            let jd = t.day.to_julian_day();
            let mut i = self.hasher.hash_one((jd, t.policy, t.failure)) as usize & mask;
            while index.get(i).is_some_and(|s| s.tuple_plus_one != 0) {
                i = (i + 1) & mask;
            }
            if let Some(s) = index.get_mut(i) {
                *s = IndexSlot {
                    day: jd,
                    policy: t.policy,
                    failure: t.failure,
                    tuple_plus_one: id as u32 + 1,
                };
            }
        }
        self.index = index;
    }

    /// A copy with the count `new_count` gives each tuple (tuples at 0
    /// are left out).
    pub(super) fn rebuilt(&self, new_count: impl Fn(&TupleKey, u64) -> u64) -> Result<Table, Full> {
        let mut out = Table::new();
        for t in &self.tuples {
            let Some(key) = self.tuple_key(t) else {
                continue;
            };
            let count = new_count(&key, t.count);
            if count == 0 {
                continue;
            }
            let id = out.tuple_of_key(&key)?;
            if let Some(n) = out.tuple_mut(id) {
                n.count = n.count.saturating_add(count);
            }
        }
        Ok(out)
    }

    /// A new table with the tuples `keep` says yes to (by day and policy
    /// domain), in their order, with their counts and nothing pending;
    /// policies and failures no other kept tuple uses are dropped.
    pub(super) fn retained(&self, keep: impl Fn(Date, &str) -> bool) -> Result<Table, Full> {
        let mut out = Table::new();
        for t in &self.tuples {
            let Some((policy, _)) = self.keys(t) else {
                continue;
            };
            if !keep(t.day, &policy.domain) {
                continue;
            }
            let Some(key) = self.tuple_key(t) else {
                continue;
            };
            let id = out.tuple_of_key(&key)?;
            if let Some(n) = out.tuple_mut(id) {
                n.count = n.count.saturating_add(t.count);
            }
        }
        Ok(out)
    }

    /// How many policies and failures are interned (for tests).
    #[cfg(test)]
    pub(super) fn interned(&self) -> (usize, usize) {
        (self.policies.len(), self.failures.len())
    }
}
