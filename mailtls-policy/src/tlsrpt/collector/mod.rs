//! Counting session outcomes (RFC 8460 §4: the data a report summarises).
//!
//! One [`Collector`] per MTA instance. Each session outcome is folded into a
//! counter keyed by UTC day x policy x failure tuple, so memory grows with the
//! number of distinct tuples, never with the number of sessions. Policies and
//! failures are interned once to small integer ids; a repeated tuple costs one
//! hash of the policy's bytes (encoded into a reused scratch buffer), one
//! probe of a compact open-addressing table and one comparison, and no
//! allocation. With [`Durability::EveryRecord`] it also costs one small
//! `write(2)` to the append-only log in the data directory.
//!
//! Durability is chosen with [`Durability`]: by default every record is
//! written to the operating system before [`Collector::record`] returns, so a
//! crash of the process loses nothing (one `write(2)` per session). With
//! [`Durability::Buffered`] records collect in memory and reach the log when
//! the buffer fills, on [`Collector::flush`] (call it every second or so) and
//! on drop: much cheaper, but a crash loses what was not flushed yet. Call
//! [`Collector::sync`] periodically to survive power loss as well.
//! Several instances each keep their own directory; their [`Aggregate`]s
//! merge by adding counts.
//!
//! Reports are built from a [`CounterStore`]. On one node the collector's
//! own log is that store ([`LocalCounters`]). Where several nodes report for
//! one organisation, each node counts in a collector (in memory with
//! [`Collector::in_memory`], or over its local log) and moves its counts to
//! a shared store in batches with [`Collector::flush_to`]; the record path
//! stays the same.

mod encode;
mod intern;
mod log;
mod store;
mod table;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::Date;

use log::{LOG_NAME, decimal_len, put_count_line, put_definition, write_compacted};
use table::Table;

use super::TlsRptError;
use crate::result_type::{PolicyType, ResultType};

pub use store::{CounterStore, LocalCounters, MemoryCounters, StoreFuture};

/// The policy that applied to a session, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRef<'a> {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: PolicyType,
    /// The policy domain: the recipient domain for MTA-STS, the TLSA base
    /// domain for DANE (RFC 8460 §4.4).
    pub domain: &'a str,
    /// `policy-string`: the MTA-STS policy lines or the TLSA records as text.
    pub strings: &'a [&'a str],
    /// `mx-host`: the MX names or patterns of the policy.
    pub mx_hosts: &'a [&'a str],
}

/// Details of a failed session (RFC 8460 §4.4 `failure-details`).
#[derive(Debug, Clone, Copy)]
pub struct FailureOutcome<'a> {
    /// Why it failed.
    pub result_type: ResultType,
    /// Our address for the connection, when known.
    pub sending_mta_ip: Option<IpAddr>,
    /// The peer's address, when a connection was made.
    pub receiving_ip: Option<IpAddr>,
    /// The name the peer gave in its greeting, when it got that far.
    pub receiving_mx_helo: Option<&'a str>,
    /// `failure-reason-code`: a short machine-oriented code, e.g. a TLS alert.
    pub failure_reason_code: Option<&'a str>,
    /// `additional-information`: a URI or text for humans.
    pub additional_information: Option<&'a str>,
}

/// One outbound session, as the delivery path reports it.
#[derive(Debug, Clone, Copy)]
pub struct SessionOutcome<'a> {
    /// The policy that applied.
    pub policy: PolicyRef<'a>,
    /// The MX host the session was with (`receiving-mx-hostname`).
    pub mx_host: &'a str,
    /// `None` for a successful session.
    pub failure: Option<FailureOutcome<'a>>,
}

/// The policy part of a counted tuple (owned; RFC 8460 §4.4 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyKey {
    /// The policy type.
    #[serde(with = "policy_type_serde")]
    pub policy_type: PolicyType,
    /// The policy domain.
    pub domain: String,
    /// The policy strings.
    pub strings: Vec<String>,
    /// The MX names or patterns of the policy.
    pub mx_hosts: Vec<String>,
}

/// The failure part of a counted tuple (owned).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FailureKey {
    /// Why it failed.
    #[serde(with = "result_type_serde")]
    pub result_type: ResultType,
    /// Our address.
    pub sending_mta_ip: Option<IpAddr>,
    /// The peer's address.
    pub receiving_ip: Option<IpAddr>,
    /// The MX host.
    pub receiving_mx_hostname: String,
    /// The peer's greeting name.
    pub receiving_mx_helo: Option<String>,
    /// The reason code.
    pub failure_reason_code: Option<String>,
    /// Additional information.
    pub additional_information: Option<String>,
}

/// What one counter counts: a UTC day, a policy and, for failures, the failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TupleKey {
    /// The UTC day of the sessions.
    pub day: Date,
    /// The policy that applied.
    pub policy: PolicyKey,
    /// `None`: the counter counts successful sessions.
    pub failure: Option<FailureKey>,
}

/// Counts per tuple: a snapshot of one collector, or the merge of several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    counts: BTreeMap<TupleKey, u64>,
}

#[derive(Serialize, Deserialize)]
struct AggregateEntry {
    #[serde(flatten)]
    key: TupleKey,
    count: u64,
}

impl Aggregate {
    /// Adds `count` sessions to `key`.
    pub fn add(&mut self, key: TupleKey, count: u64) {
        let c = self.counts.entry(key).or_insert(0);
        *c = c.saturating_add(count);
    }

    /// Adds every count of `other` (e.g. another MTA instance's same day).
    pub fn merge(&mut self, other: &Aggregate) {
        for (k, v) in &other.counts {
            self.add(k.clone(), *v);
        }
    }

    /// The count of one tuple (0 when it was not counted).
    pub fn count(&self, key: &TupleKey) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// All sessions counted, successful and failed.
    pub fn sessions(&self) -> u64 {
        self.counts.values().fold(0u64, |a, v| a.saturating_add(*v))
    }

    /// Drops every tuple of the given (day, policy domain) pairs.
    pub fn forget(&mut self, done: &[(Date, String)]) {
        let done: std::collections::HashSet<(Date, &str)> =
            done.iter().map(|(d, s)| (*d, s.as_str())).collect();
        self.counts
            .retain(|k, _| !done.contains(&(k.day, k.policy.domain.as_str())));
    }

    /// Every tuple with its count, ordered by day, policy, failure.
    pub fn iter(&self) -> impl Iterator<Item = (&TupleKey, u64)> {
        self.counts.iter().map(|(k, v)| (k, *v))
    }

    /// The number of distinct tuples.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The distinct (day, policy domain) pairs with any traffic.
    pub fn days_and_domains(&self) -> Vec<(Date, String)> {
        self.grouped()
            .into_keys()
            .map(|(d, s)| (d, s.to_owned()))
            .collect()
    }

    /// The tuples grouped by (day, policy domain), in one pass: reports and
    /// schedules for many domains use this instead of filtering per domain.
    pub fn grouped(&self) -> BTreeMap<(Date, &str), Vec<(&TupleKey, u64)>> {
        let mut out: BTreeMap<(Date, &str), Vec<(&TupleKey, u64)>> = BTreeMap::new();
        for (k, v) in &self.counts {
            out.entry((k.day, k.policy.domain.as_str()))
                .or_default()
                .push((k, *v));
        }
        out
    }

    /// Successful and failed session counts for one day and policy domain.
    pub fn totals(&self, day: Date, domain: &str) -> (u64, u64) {
        sum_counts(
            self.iter()
                .filter(|(k, _)| k.day == day && k.policy.domain == domain),
        )
    }

    /// Serialises for exchange between instances (a JSON array).
    pub fn to_json(&self) -> Result<Vec<u8>, TlsRptError> {
        let entries: Vec<AggregateEntry> = self
            .counts
            .iter()
            .map(|(k, v)| AggregateEntry {
                key: k.clone(),
                count: *v,
            })
            .collect();
        Ok(serde_json::to_vec(&entries)?)
    }

    /// Reads what [`Aggregate::to_json`] wrote.
    pub fn from_json(json: &[u8]) -> Result<Self, TlsRptError> {
        let entries: Vec<AggregateEntry> = serde_json::from_slice(json)?;
        let mut out = Self::default();
        for e in entries {
            out.add(e.key, e.count);
        }
        Ok(out)
    }
}

/// (successful, failed) over some tuples.
pub(crate) fn sum_counts<'a>(tuples: impl Iterator<Item = (&'a TupleKey, u64)>) -> (u64, u64) {
    let mut ok = 0u64;
    let mut failed = 0u64;
    for (k, v) in tuples {
        match k.failure {
            None => ok = ok.saturating_add(v),
            Some(_) => failed = failed.saturating_add(v),
        }
    }
    (ok, failed)
}

/// Below this size the log is never rewritten during recording.
const COMPACT_FLOOR: u64 = 16 * 1024 * 1024;

/// When recorded outcomes reach the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Each record is written before `record` returns: survives a crash.
    #[default]
    EveryRecord,
    /// Records are buffered up to `max_bytes` of log text, then written;
    /// [`Collector::flush`] and drop write the rest.
    Buffered {
        /// Buffer size that triggers a write.
        max_bytes: usize,
    },
}

/// Seconds in a UTC day of Unix time (which has no leap seconds).
const SECS_PER_DAY: u64 = 86_400;
/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

struct State {
    table: Table,
    /// Buffered mode: the tuples with sessions counted in memory but not yet
    /// in the log (their `pending` is not 0).
    dirty: Vec<usize>,
    /// Buffered mode: the bytes the pending sessions would take as one
    /// `"{id} 1"` line each, so the buffer fills at the same pace as before
    /// coalescing and a crash loses no more than it used to.
    pending_bytes: usize,
    /// `None` for a collector that counts in memory only.
    log: Option<File>,
    /// Bytes in the log file (to undo a partial write).
    log_len: u64,
    /// Bytes of the log right after the last compaction.
    compacted_len: u64,
    /// Bytes of tuple definitions appended since the last compaction: they
    /// are live data a compaction would write again, not garbage.
    defined_len: u64,
    /// The log is not compacted below this size.
    compact_floor: u64,
    buf: Vec<u8>,
    durability: Durability,
    /// The Unix day number and UTC date [`Collector::record`] last used:
    /// the clock is read on every record, the calendar computed once a day.
    today: Option<(u64, Date)>,
}

/// Records session outcomes and keeps their counts in a data directory (or
/// in memory only, see [`Collector::in_memory`]).
pub struct Collector {
    /// `None` for a collector that counts in memory only.
    dir: Option<PathBuf>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Opens (or creates) the collector's data directory and replays what was
    /// recorded before, including after a crash: a torn last line is dropped,
    /// everything before it is kept.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TlsRptError> {
        Self::open_with(dir, Durability::EveryRecord)
    }

    /// [`Collector::open`] with a chosen [`Durability`].
    pub fn open_with(dir: impl AsRef<Path>, durability: Durability) -> Result<Self, TlsRptError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| TlsRptError::io(&dir, e))?;
        let table = log::replay(&dir.join(LOG_NAME))?;
        let (log, log_len) = write_compacted(&dir, &table)?;
        let state = State {
            table,
            dirty: Vec::new(),
            pending_bytes: 0,
            log: Some(log),
            log_len,
            compacted_len: log_len,
            defined_len: 0,
            compact_floor: COMPACT_FLOOR,
            buf: Vec::with_capacity(match durability {
                Durability::EveryRecord => 256,
                Durability::Buffered { max_bytes } => max_bytes.saturating_add(256),
            }),
            durability,
            today: None,
        };
        Ok(Self {
            dir: Some(dir),
            state: Mutex::new(state),
        })
    }

    /// A collector that keeps its counts in memory only: nothing is written
    /// and a crash loses what was not moved to a [`CounterStore`] with
    /// [`Collector::flush_to`] yet. For nodes that report through a shared
    /// store and flush every few seconds.
    pub fn in_memory() -> Self {
        Self {
            dir: None,
            state: Mutex::new(State {
                table: Table::new(),
                dirty: Vec::new(),
                pending_bytes: 0,
                log: None,
                log_len: 0,
                compacted_len: 0,
                defined_len: 0,
                compact_floor: COMPACT_FLOOR,
                buf: Vec::new(),
                durability: Durability::Buffered { max_bytes: 0 },
                today: None,
            }),
        }
    }

    /// The data directory, `None` for an in-memory collector.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The log's path, for error messages (a placeholder in memory).
    fn log_path(&self) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(LOG_NAME),
            None => PathBuf::from("(in-memory TLS-RPT collector)"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one session on today's UTC day (from the system clock).
    ///
    /// On Linux and FreeBSD the day comes from `CLOCK_REALTIME_COARSE` (a
    /// few nanoseconds instead of some thirty for the precise clock, which
    /// would be a third of the time the rest of this call takes); it lags
    /// the precise time by at most a clock tick (a few milliseconds), so a
    /// session in the first milliseconds after midnight UTC may count for
    /// the day before.
    pub fn record(&self, outcome: &SessionOutcome<'_>) -> Result<(), TlsRptError> {
        let unix_day = unix_seconds_now().map(|s| s / SECS_PER_DAY);
        let mut state = self.lock();
        let day = match (unix_day, state.today) {
            (Some(u), Some((cached, day))) if u == cached => day,
            (Some(u), _) => match date_of_unix_day(u) {
                Some(day) => {
                    state.today = Some((u, day));
                    day
                }
                None => time::OffsetDateTime::now_utc().date(),
            },
            // A clock before 1970: let `time` make sense of it.
            (None, _) => time::OffsetDateTime::now_utc().date(),
        };
        self.record_locked(&mut state, day, outcome)
    }

    /// Records one session on the given UTC day.
    pub fn record_on(&self, day: Date, outcome: &SessionOutcome<'_>) -> Result<(), TlsRptError> {
        let mut state = self.lock();
        self.record_locked(&mut state, day, outcome)
    }

    fn record_locked(
        &self,
        state: &mut State,
        day: Date,
        outcome: &SessionOutcome<'_>,
    ) -> Result<(), TlsRptError> {
        let (id, new) = state
            .table
            .tuple_of(day, outcome)
            .map_err(|_| full(&self.log_path()))?;
        if state.log.is_none() {
            if let Some(tuple) = state.table.tuple_mut(id) {
                tuple.count = tuple.count.saturating_add(1);
            }
            return Ok(());
        }
        if new {
            let before = state.buf.len();
            put_definition(&mut state.buf, &state.table, id)?;
            state.defined_len = state
                .defined_len
                .saturating_add((state.buf.len() - before) as u64);
        }
        let Some(tuple) = state.table.tuple_mut(id) else {
            return Ok(());
        };
        tuple.count = tuple.count.saturating_add(1);
        let write_now = match state.durability {
            Durability::EveryRecord => {
                put_count_line(&mut state.buf, id as u64, 1);
                true
            }
            Durability::Buffered { max_bytes } => {
                // Coalesce: repeated sessions of a tuple become one
                // "{id} {n}" line when the buffer is written.
                if tuple.pending == 0 {
                    state.dirty.push(id);
                }
                tuple.pending += 1;
                state.pending_bytes += decimal_len(id) + 3;
                state.buf.len() + state.pending_bytes >= max_bytes
            }
        };
        if write_now {
            self.write_out(state)?;
            // The log grows per session; rewrite it from the counts once
            // the count lines since the last rewrite are several times what
            // the rewrite would write, so disk use stays proportional to
            // distinct tuples too. (Definitions do not shrink by rewriting:
            // compacting because many new tuples came in would only write
            // them all again.)
            let live = state.compacted_len.saturating_add(state.defined_len);
            let garbage = state.log_len.saturating_sub(live);
            if state.log_len > state.compact_floor && garbage > live.saturating_mul(3) {
                self.compact(state)?;
            }
        }
        Ok(())
    }

    /// Writes the buffer to the log (nothing in memory-only mode).
    fn write_out(&self, state: &mut State) -> Result<(), TlsRptError> {
        match &self.dir {
            Some(dir) => state.write_buffer(dir),
            None => {
                state.buf.clear();
                Ok(())
            }
        }
    }

    /// Rewrites the log from the table (nothing in memory-only mode).
    fn compact(&self, state: &mut State) -> Result<(), TlsRptError> {
        if let Some(dir) = &self.dir {
            let (log, len) = write_compacted(dir, &state.table)?;
            state.log = Some(log);
            state.log_len = len;
            state.compacted_len = len;
            state.defined_len = 0;
        }
        Ok(())
    }

    /// Adds counts from elsewhere (another node's increments, or counts moved
    /// back after a failed hand-over). With a data directory they reach the
    /// log before this returns.
    ///
    /// Blocks on the log write: from async code call it in `spawn_blocking`
    /// (as [`LocalCounters`] does).
    pub fn add_counts(&self, counts: &Aggregate) -> Result<(), TlsRptError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        for (key, n) in counts.iter() {
            if n == 0 {
                continue;
            }
            let before = state.table.tuples().len();
            let id = state
                .table
                .tuple_of_key(key)
                .map_err(|_| full(&self.log_path()))?;
            if state.log.is_some() && state.table.tuples().len() > before {
                let before = state.buf.len();
                put_definition(&mut state.buf, &state.table, id)?;
                state.defined_len = state
                    .defined_len
                    .saturating_add((state.buf.len() - before) as u64);
            }
            if let Some(tuple) = state.table.tuple_mut(id) {
                tuple.count = tuple.count.saturating_add(n);
            }
            if state.log.is_some() {
                put_count_line(&mut state.buf, id as u64, n);
            }
        }
        self.write_out(state)
    }

    /// Takes `sent` away from the counts (what [`Collector::flush_to`] handed
    /// to a store); tuples that reach zero are dropped and the log is
    /// rewritten compactly. Sessions recorded after `sent` was taken stay.
    ///
    /// Blocks on the log rewrite when there is a data directory.
    pub fn subtract(&self, sent: &Aggregate) -> Result<(), TlsRptError> {
        self.rebuild(|key, count| count.saturating_sub(sent.count(key)))
    }

    /// Writes buffered records to the log (a no-op with
    /// [`Durability::EveryRecord`] and in memory).
    pub fn flush(&self) -> Result<(), TlsRptError> {
        let mut state = self.lock();
        self.write_out(&mut state)
    }

    /// Writes buffered records and flushes the log to stable storage (fsync).
    pub fn sync(&self) -> Result<(), TlsRptError> {
        let mut state = self.lock();
        self.write_out(&mut state)?;
        match &state.log {
            Some(log) => log
                .sync_data()
                .map_err(|e| TlsRptError::io(self.log_path(), e)),
            None => Ok(()),
        }
    }

    /// Moves every count to `store` and takes what the store accepted away
    /// from this collector: the batch step of a node that reports through a
    /// shared store. Returns the number of sessions moved.
    ///
    /// Nothing is lost: when the store fails the counts stay here for the
    /// next call. A crash between the store's commit and the subtraction can
    /// count a batch twice (at least once, never lost). Call it every few
    /// seconds; the rewrite of the local log runs in `spawn_blocking`
    /// (needs a tokio runtime).
    pub async fn flush_to(
        self: &std::sync::Arc<Self>,
        store: &dyn CounterStore,
    ) -> Result<u64, TlsRptError> {
        let taken = self.snapshot();
        if taken.is_empty() {
            return Ok(0);
        }
        let sessions = taken.sessions();
        store.add(taken.clone()).await?;
        if self.dir.is_some() {
            let me = std::sync::Arc::clone(self);
            let path = self.log_path();
            tokio::task::spawn_blocking(move || me.subtract(&taken))
                .await
                .map_err(|e| TlsRptError::io(path, std::io::Error::other(e.to_string())))??;
        } else {
            self.subtract(&taken)?;
        }
        Ok(sessions)
    }

    /// A copy of all counts.
    pub fn snapshot(&self) -> Aggregate {
        let state = self.lock();
        let mut out = Aggregate::default();
        for t in state.table.tuples() {
            if let Some(key) = state.table.tuple_key(t) {
                out.add(key, t.count);
            }
        }
        out
    }

    /// The number of distinct tuples counted (what memory grows with).
    pub fn tuple_count(&self) -> usize {
        self.lock().table.tuples().len()
    }

    /// Forgets one policy domain's counts for one day (after its report was
    /// queued, or skipped by the schedule) and rewrites the log compactly.
    pub fn forget(&self, day: Date, domain: &str) -> Result<(), TlsRptError> {
        self.retain(|d, s| !(d == day && s == domain))
    }

    /// [`Collector::forget`] for many (day, domain) pairs with one rewrite.
    pub fn forget_all(&self, done: &[(Date, String)]) -> Result<(), TlsRptError> {
        let done: std::collections::HashSet<(Date, &str)> =
            done.iter().map(|(d, s)| (*d, s.as_str())).collect();
        self.retain(|d, s| !done.contains(&(d, s)))
    }

    /// Forgets every day up to and including `last_reported` (after those
    /// reports went out) and rewrites the log compactly.
    pub fn forget_through(&self, last_reported: Date) -> Result<(), TlsRptError> {
        self.retain(|d, _| d > last_reported)
    }

    /// Keeps the tuples `keep` says yes to, by day and policy domain.
    fn retain(&self, keep: impl Fn(Date, &str) -> bool) -> Result<(), TlsRptError> {
        let mut state = self.lock();
        // Build the new table beside the old: if the rewrite fails, nothing
        // is lost in memory.
        let kept = state
            .table
            .retained(keep)
            .map_err(|_| full(&self.log_path()))?;
        self.replace_table(&mut state, kept)
    }

    /// Gives every tuple the count `new_count` returns for it; tuples at 0
    /// are dropped.
    fn rebuild(&self, new_count: impl Fn(&TupleKey, u64) -> u64) -> Result<(), TlsRptError> {
        let mut state = self.lock();
        let kept = state
            .table
            .rebuilt(new_count)
            .map_err(|_| full(&self.log_path()))?;
        self.replace_table(&mut state, kept)
    }

    /// Swaps in a rebuilt table and rewrites the log from it.
    fn replace_table(&self, state: &mut State, kept: Table) -> Result<(), TlsRptError> {
        if let Some(dir) = &self.dir {
            let (log, len) = write_compacted(dir, &kept)?;
            state.log = Some(log);
            state.log_len = len;
            state.compacted_len = len;
            state.defined_len = 0;
        }
        // Buffered lines use the old tuple ids; the compacted log already
        // holds their counts.
        state.buf.clear();
        state.dirty.clear();
        state.pending_bytes = 0;
        state.table = kept;
        Ok(())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Best effort: an error here has nowhere to go, and records written
        // so far are already in the log.
        let _ = self.flush();
    }
}

impl State {
    /// Writes and clears the buffer. On error the buffer is kept, so the
    /// records are written with the next successful write.
    fn write_buffer(&mut self, dir: &Path) -> Result<(), TlsRptError> {
        // Pending counts go after the definitions already in the buffer, so
        // every count line follows the definition of its tuple.
        for id in self.dirty.drain(..) {
            if let Some(t) = self.table.tuple_mut(id) {
                put_count_line(&mut self.buf, id as u64, t.pending);
                t.pending = 0;
            }
        }
        self.pending_bytes = 0;
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(log) = self.log.as_mut() else {
            self.buf.clear();
            return Ok(());
        };
        if let Err(e) = std::io::Write::write_all(log, &self.buf) {
            // A partial write (disk full) would leave half a line that later
            // appends glue onto: cut the log back to where it was.
            let _ = log.set_len(self.log_len);
            return Err(TlsRptError::io(dir.join(LOG_NAME), e));
        }
        self.log_len = self.log_len.saturating_add(self.buf.len() as u64);
        self.buf.clear();
        Ok(())
    }
}

/// Seconds since the Unix epoch from the coarse real-time clock, or `None`
/// before 1970.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn unix_seconds_now() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(t.tv_sec).ok()
}

/// Seconds since the Unix epoch, or `None` before 1970.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn unix_seconds_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The UTC date of Unix day `unix_day` (days since 1970-01-01).
fn date_of_unix_day(unix_day: u64) -> Option<Date> {
    let jd = i64::try_from(unix_day).ok()? + UNIX_EPOCH_JULIAN_DAY;
    Date::from_julian_day(i32::try_from(jd).ok()?).ok()
}

/// More distinct tuples, policies or failures than ids: memory would have
/// run out long before, but say so rather than wrap.
fn full(log: &Path) -> TlsRptError {
    TlsRptError::io(
        log,
        std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            "more than 4294967294 distinct TLS-RPT tuples, policies or failures",
        ),
    )
}

fn owned_policy(p: &PolicyRef<'_>) -> PolicyKey {
    PolicyKey {
        policy_type: p.policy_type,
        domain: p.domain.to_owned(),
        strings: p.strings.iter().map(|s| (*s).to_owned()).collect(),
        mx_hosts: p.mx_hosts.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn owned_failure(f: &FailureOutcome<'_>, mx_host: &str) -> FailureKey {
    FailureKey {
        result_type: f.result_type,
        sending_mta_ip: f.sending_mta_ip,
        receiving_ip: f.receiving_ip,
        receiving_mx_hostname: mx_host.to_owned(),
        receiving_mx_helo: f.receiving_mx_helo.map(str::to_owned),
        failure_reason_code: f.failure_reason_code.map(str::to_owned),
        additional_information: f.additional_information.map(str::to_owned),
    }
}

/// The owned key of one session.
#[cfg(test)]
fn owned_key(day: Date, o: &SessionOutcome<'_>) -> TupleKey {
    TupleKey {
        day,
        policy: owned_policy(&o.policy),
        failure: o.failure.as_ref().map(|f| owned_failure(f, o.mx_host)),
    }
}
mod policy_type_serde {
    use crate::result_type::PolicyType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &PolicyType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PolicyType, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod result_type_serde {
    use crate::result_type::ResultType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &ResultType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResultType, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn sts<'a>(strings: &'a [&'a str], mx: &'a [&'a str]) -> PolicyRef<'a> {
        PolicyRef {
            policy_type: PolicyType::Sts,
            domain: "example.com",
            strings,
            mx_hosts: mx,
        }
    }

    #[test]
    fn repeated_tuples_share_one_counter() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        let strings = ["version: STSv1", "mode: enforce"];
        let mx = ["*.mail.example.com"];
        let ok = SessionOutcome {
            policy: sts(&strings, &mx),
            mx_host: "a.mail.example.com",
            failure: None,
        };
        let bad = SessionOutcome {
            failure: Some(FailureOutcome {
                result_type: ResultType::CertificateExpired,
                sending_mta_ip: None,
                receiving_ip: Some("192.0.2.1".parse().unwrap()),
                receiving_mx_helo: None,
                failure_reason_code: None,
                additional_information: None,
            }),
            ..ok
        };
        let d = date!(2026 - 11 - 24);
        for _ in 0..5 {
            c.record_on(d, &ok).unwrap();
        }
        c.record_on(d, &bad).unwrap();
        c.record_on(d, &bad).unwrap();
        c.record_on(date!(2026 - 11 - 25), &ok).unwrap();
        let snap = c.snapshot();
        assert_eq!(snap.len(), 3);
        assert_eq!(snap.totals(d, "example.com"), (5, 2));
        c.forget_through(d).unwrap();
        assert_eq!(c.snapshot().len(), 1);
        drop(c);
        let c = Collector::open(dir.path()).unwrap();
        assert_eq!(
            c.snapshot().totals(date!(2026 - 11 - 25), "example.com"),
            (1, 0)
        );
    }

    #[test]
    fn buffered_records_coalesce_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open_with(dir.path(), Durability::Buffered { max_bytes: 64 }).unwrap();
        let strings = ["version: STSv1"];
        let ok = SessionOutcome {
            policy: sts(&strings, &[]),
            mx_host: "mx.example.com",
            failure: None,
        };
        let other = SessionOutcome {
            mx_host: "mx2.example.com",
            failure: Some(FailureOutcome {
                result_type: ResultType::StarttlsNotSupported,
                sending_mta_ip: Some("2001:db8::1".parse().unwrap()),
                receiving_ip: None,
                receiving_mx_helo: Some("mx2"),
                failure_reason_code: None,
                additional_information: None,
            }),
            ..ok
        };
        let mut line = Vec::new();
        put_count_line(&mut line, 0, 18_446_744_073_709_551_615);
        put_count_line(&mut line, 1207, 1);
        assert_eq!(line, b"0 18446744073709551615\n1207 1\n");
        let d = date!(2026 - 11 - 24);
        for i in 0..100 {
            c.record_on(d, &ok).unwrap();
            if i % 3 == 0 {
                c.record_on(d, &other).unwrap();
            }
        }
        // 64 bytes of "{id} 1" lines: the buffer was written several times.
        let log = std::fs::read_to_string(dir.path().join(LOG_NAME)).unwrap();
        assert!(log.lines().count() > 2, "{log}");
        drop(c);
        let snap = Collector::open(dir.path()).unwrap().snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap.totals(d, "example.com"), (100, 34));
    }

    #[test]
    fn the_log_is_compacted_while_recording() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        c.state.lock().unwrap().compact_floor = 200;
        let strings = ["version: STSv1"];
        let ok = SessionOutcome {
            policy: sts(&strings, &[]),
            mx_host: "mx.example.com",
            failure: None,
        };
        let d = date!(2026 - 11 - 24);
        let log = dir.path().join(LOG_NAME);
        let mut max_len = 0;
        for _ in 0..1000 {
            c.record_on(d, &ok).unwrap();
            max_len = max_len.max(std::fs::metadata(&log).unwrap().len());
        }
        // 1000 records would be 4000+ bytes of "0 1" lines without compaction.
        assert!(max_len < 1000, "log grew to {max_len}");
        drop(c);
        assert_eq!(
            Collector::open(dir.path())
                .unwrap()
                .snapshot()
                .totals(d, "example.com"),
            (1000, 0)
        );
    }

    #[test]
    fn unix_days_map_to_utc_dates() {
        assert_eq!(date_of_unix_day(0), Some(date!(1970 - 01 - 01)));
        // 2026-11-24T00:00:00Z is 1795478400 seconds after the epoch.
        assert_eq!(
            date_of_unix_day(1_795_478_400 / SECS_PER_DAY),
            Some(date!(2026 - 11 - 24))
        );
        assert_eq!(date_of_unix_day(u64::MAX), None);
    }

    #[test]
    fn record_counts_on_today() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        let strings = ["version: STSv1"];
        let ok = SessionOutcome {
            policy: sts(&strings, &[]),
            mx_host: "mx.example.com",
            failure: None,
        };
        let before = time::OffsetDateTime::now_utc().date();
        c.record(&ok).unwrap();
        c.record(&ok).unwrap();
        let after = time::OffsetDateTime::now_utc().date();
        let snap = c.snapshot();
        // Two calls, one day (or, across midnight, the two days around it).
        let days: Vec<Date> = snap.iter().map(|(k, _)| k.day).collect();
        assert!(days.iter().all(|d| *d == before || *d == after), "{days:?}");
        let total: u64 = snap.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn days_interleaved_around_midnight_keep_apart() {
        // The success and failure caches remember one day per policy and
        // failure; late sessions of the day before must not land on today.
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open_with(dir.path(), Durability::Buffered { max_bytes: 4096 }).unwrap();
        let strings = ["version: STSv1"];
        let ok = SessionOutcome {
            policy: sts(&strings, &[]),
            mx_host: "mx.example.com",
            failure: None,
        };
        let bad = SessionOutcome {
            failure: Some(FailureOutcome {
                result_type: ResultType::ValidationFailure,
                sending_mta_ip: None,
                receiving_ip: None,
                receiving_mx_helo: None,
                failure_reason_code: None,
                additional_information: None,
            }),
            ..ok
        };
        let (d1, d2) = (date!(2026 - 11 - 24), date!(2026 - 11 - 25));
        for (day, n) in [(d1, 3), (d2, 5), (d1, 2), (d2, 1), (d1, 1)] {
            for _ in 0..n {
                c.record_on(day, &ok).unwrap();
                c.record_on(day, &bad).unwrap();
            }
        }
        let snap = c.snapshot();
        assert_eq!(snap.len(), 4);
        assert_eq!(snap.totals(d1, "example.com"), (6, 6));
        assert_eq!(snap.totals(d2, "example.com"), (6, 6));
        drop(c);
        assert_eq!(Collector::open(dir.path()).unwrap().snapshot(), snap);
    }

    #[test]
    fn one_failure_under_two_policies_is_two_tuples() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        let (s1, s2) = (["mode: enforce"], ["mode: testing"]);
        let failure = Some(FailureOutcome {
            result_type: ResultType::CertificateExpired,
            sending_mta_ip: None,
            receiving_ip: Some("192.0.2.1".parse().unwrap()),
            receiving_mx_helo: None,
            failure_reason_code: None,
            additional_information: None,
        });
        let a = SessionOutcome {
            policy: sts(&s1, &[]),
            mx_host: "mx.example.com",
            failure,
        };
        let b = SessionOutcome {
            policy: sts(&s2, &[]),
            ..a
        };
        let d = date!(2026 - 11 - 24);
        for o in [&a, &b, &a, &b, &b] {
            c.record_on(d, o).unwrap();
        }
        let counts: Vec<(String, u64)> = c
            .snapshot()
            .iter()
            .map(|(k, n)| (k.policy.strings.join("|"), n))
            .collect();
        assert_eq!(
            counts,
            [
                ("mode: enforce".to_owned(), 2),
                ("mode: testing".to_owned(), 3)
            ]
        );
        let state = c.state.lock().unwrap();
        assert_eq!(state.table.interned(), (2, 1));
    }

    #[test]
    fn forgetting_drops_policies_no_tuple_uses() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        let strings = ["version: STSv1"];
        let domains: Vec<String> = (0..50).map(|i| format!("d{i}.example")).collect();
        let d = date!(2026 - 11 - 24);
        for domain in &domains {
            let o = SessionOutcome {
                policy: PolicyRef {
                    domain,
                    ..sts(&strings, &[])
                },
                mx_host: "mx.example.com",
                failure: None,
            };
            c.record_on(d, &o).unwrap();
            c.record_on(date!(2026 - 11 - 25), &o).unwrap();
        }
        assert_eq!(c.tuple_count(), 100);
        let done: Vec<(Date, String)> = domains[..40].iter().map(|s| (d, s.clone())).collect();
        c.forget_all(&done).unwrap();
        assert_eq!(c.tuple_count(), 60);
        assert_eq!(c.state.lock().unwrap().table.interned(), (50, 0));
        c.forget_through(d).unwrap();
        assert_eq!(c.tuple_count(), 50);
        c.forget(date!(2026 - 11 - 25), "d7.example").unwrap();
        assert_eq!(c.state.lock().unwrap().table.interned(), (49, 0));
        assert_eq!(
            c.snapshot().totals(date!(2026 - 11 - 25), "d7.example"),
            (0, 0)
        );
        assert_eq!(
            c.snapshot().totals(date!(2026 - 11 - 25), "d8.example"),
            (1, 0)
        );
    }

    #[test]
    fn many_new_tuples_do_not_trigger_a_rewrite() {
        // The log is mostly definitions: rewriting it would shrink nothing.
        let dir = tempfile::tempdir().unwrap();
        let c = Collector::open(dir.path()).unwrap();
        c.state.lock().unwrap().compact_floor = 200;
        let d = date!(2026 - 11 - 24);
        let domains: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        for domain in &domains {
            let o = SessionOutcome {
                policy: PolicyRef {
                    domain,
                    ..sts(&[], &[])
                },
                mx_host: "mx.example.com",
                failure: None,
            };
            c.record_on(d, &o).unwrap();
        }
        assert_eq!(c.state.lock().unwrap().compacted_len, 0);
    }

    #[test]
    fn logs_written_before_interning_replay() {
        // The exact lines the collector wrote before policies were interned
        // (and still writes): the on-disk format did not change.
        let dir = tempfile::tempdir().unwrap();
        let log = concat!(
            r#"{"id":0,"key":{"day":"2026-11-24","policy":{"policy_type":"sts","domain":"example.com","strings":["version: STSv1","mode: enforce"],"mx_hosts":["*.mail.example.com"]},"failure":null}}"#,
            "\n0 5\n",
            r#"{"id":1,"key":{"day":"2026-11-24","policy":{"policy_type":"sts","domain":"example.com","strings":["version: STSv1","mode: enforce"],"mx_hosts":["*.mail.example.com"]},"failure":{"result_type":"certificate-expired","sending_mta_ip":null,"receiving_ip":"192.0.2.1","receiving_mx_hostname":"a.mail.example.com","receiving_mx_helo":null,"failure_reason_code":null,"additional_information":null}}}"#,
            "\n1 2\n0 1\n",
        );
        std::fs::write(dir.path().join(LOG_NAME), log).unwrap();
        let c = Collector::open(dir.path()).unwrap();
        assert_eq!(
            c.snapshot().totals(date!(2026 - 11 - 24), "example.com"),
            (6, 2)
        );
        // Rewritten on open in the same format.
        let text = std::fs::read_to_string(dir.path().join(LOG_NAME)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let first = log.lines().next().unwrap();
        assert_eq!(lines, [first, "0 6", log.lines().nth(2).unwrap(), "1 2"]);
    }
}
