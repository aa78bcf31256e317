//! Counting session outcomes (RFC 8460 §4: the data a report summarises).
//!
//! One [`Collector`] per MTA instance. Each session outcome is folded into a
//! counter keyed by UTC day x policy x failure tuple, so memory grows with the
//! number of distinct tuples, never with the number of sessions. A repeated
//! tuple costs one hash and one comparison of a compact byte encoding of the
//! tuple (built in a reused scratch buffer), and no allocation; with
//! [`Durability::EveryRecord`] also one small `write(2)` to the append-only
//! log in the data directory.
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

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use time::Date;

use super::TlsRptError;
use crate::result_type::{PolicyType, ResultType};

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

const LOG_NAME: &str = "tlsrpt-counts.log";
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

#[derive(Clone)]
struct Entry {
    key: TupleKey,
    count: u64,
}

struct State {
    /// The tuple's identity encoded as bytes (see [`encode_outcome`]) ->
    /// index into `entries`. One contiguous key per tuple: a lookup hashes
    /// and compares one byte string instead of chasing every policy string.
    index: HashMap<Box<[u8]>, usize, foldhash::fast::FixedState>,
    /// Reused for encoding the caller's outcome, so lookups do not allocate.
    scratch: Vec<u8>,
    entries: Vec<Entry>,
    /// Buffered mode: sessions counted in memory but not yet in the log,
    /// per entry (parallel to `entries`), and which entries have any.
    pending: Vec<u64>,
    dirty: Vec<usize>,
    /// Buffered mode: the bytes the pending sessions would take as one
    /// `"{id} 1"` line each, so the buffer fills at the same pace as before
    /// coalescing and a crash loses no more than it used to.
    pending_bytes: usize,
    log: File,
    /// Bytes in the log file (to undo a partial write).
    log_len: u64,
    /// Bytes of the log right after the last compaction.
    compacted_len: u64,
    /// The log is not compacted below this size.
    compact_floor: u64,
    buf: Vec<u8>,
    durability: Durability,
}

/// Records session outcomes and keeps their counts in a data directory.
pub struct Collector {
    dir: PathBuf,
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
        let path = dir.join(LOG_NAME);
        let entries = replay(&path)?;
        let (log, log_len) = write_compacted(&dir, &entries)?;
        let mut state = State {
            compacted_len: log_len,
            compact_floor: COMPACT_FLOOR,
            index: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            scratch: Vec::with_capacity(256),
            pending: vec![0; entries.len()],
            dirty: Vec::new(),
            pending_bytes: 0,
            entries,
            log,
            log_len,
            buf: Vec::with_capacity(match durability {
                Durability::EveryRecord => 256,
                Durability::Buffered { max_bytes } => max_bytes.saturating_add(256),
            }),
            durability,
        };
        state.rebuild_index();
        Ok(Self {
            dir,
            state: Mutex::new(state),
        })
    }

    /// Records one session on today's UTC day.
    pub fn record(&self, outcome: &SessionOutcome<'_>) -> Result<(), TlsRptError> {
        self.record_on(time::OffsetDateTime::now_utc().date(), outcome)
    }

    /// Records one session on the given UTC day.
    pub fn record_on(&self, day: Date, outcome: &SessionOutcome<'_>) -> Result<(), TlsRptError> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        state.scratch.clear();
        encode_outcome(&mut state.scratch, day, outcome);
        let id = match state.index.get(state.scratch.as_slice()) {
            Some(&i) => i,
            None => {
                let key = owned_key(day, outcome);
                let i = state.entries.len();
                serde_json::to_writer(&mut state.buf, &Definition { id: i, key: &key })?;
                state.buf.push(b'\n');
                state.entries.push(Entry { key, count: 0 });
                state.pending.push(0);
                state.index.insert(state.scratch.as_slice().into(), i);
                i
            }
        };
        let entry = &mut state.entries[id];
        entry.count = entry.count.saturating_add(1);
        let write_now = match state.durability {
            Durability::EveryRecord => {
                let _ = writeln!(state.buf, "{id} 1");
                true
            }
            Durability::Buffered { max_bytes } => {
                // Coalesce: repeated sessions of a tuple become one
                // "{id} {n}" line when the buffer is written.
                let p = &mut state.pending[id];
                if *p == 0 {
                    state.dirty.push(id);
                }
                *p += 1;
                state.pending_bytes += decimal_len(id) + 3;
                state.buf.len() + state.pending_bytes >= max_bytes
            }
        };
        if write_now {
            state.write_buffer(&self.dir)?;
            // The log grows per session; rewrite it from the counts once it
            // is several times what the counts need, so disk use stays
            // proportional to distinct tuples too.
            if state.log_len
                > state
                    .compact_floor
                    .max(state.compacted_len.saturating_mul(4))
            {
                (state.log, state.log_len) = write_compacted(&self.dir, &state.entries)?;
                state.compacted_len = state.log_len;
            }
        }
        Ok(())
    }

    /// Writes buffered records to the log (a no-op with
    /// [`Durability::EveryRecord`]).
    pub fn flush(&self) -> Result<(), TlsRptError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.write_buffer(&self.dir)
    }

    /// Writes buffered records and flushes the log to stable storage (fsync).
    pub fn sync(&self) -> Result<(), TlsRptError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.write_buffer(&self.dir)?;
        state
            .log
            .sync_data()
            .map_err(|e| TlsRptError::io(self.dir.join(LOG_NAME), e))
    }

    /// A copy of all counts.
    pub fn snapshot(&self) -> Aggregate {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Aggregate::default();
        for e in &state.entries {
            out.add(e.key.clone(), e.count);
        }
        out
    }

    /// Forgets one policy domain's counts for one day (after its report was
    /// queued, or skipped by the schedule) and rewrites the log compactly.
    pub fn forget(&self, day: Date, domain: &str) -> Result<(), TlsRptError> {
        self.retain(|k| !(k.day == day && k.policy.domain == domain))
    }

    /// [`Collector::forget`] for many (day, domain) pairs with one rewrite.
    pub fn forget_all(&self, done: &[(Date, String)]) -> Result<(), TlsRptError> {
        let done: std::collections::HashSet<(Date, &str)> =
            done.iter().map(|(d, s)| (*d, s.as_str())).collect();
        self.retain(|k| !done.contains(&(k.day, k.policy.domain.as_str())))
    }

    /// Forgets every day up to and including `last_reported` (after those
    /// reports went out) and rewrites the log compactly.
    pub fn forget_through(&self, last_reported: Date) -> Result<(), TlsRptError> {
        self.retain(|k| k.day > last_reported)
    }

    fn retain(&self, keep: impl Fn(&TupleKey) -> bool) -> Result<(), TlsRptError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Copy, not take: if the rewrite fails, nothing is lost in memory.
        let kept: Vec<Entry> = state
            .entries
            .iter()
            .filter(|e| keep(&e.key))
            .cloned()
            .collect();
        (state.log, state.log_len) = write_compacted(&self.dir, &kept)?;
        state.compacted_len = state.log_len;
        // Buffered lines use the old tuple ids; the compacted log already
        // holds their counts.
        state.buf.clear();
        state.dirty.clear();
        state.pending_bytes = 0;
        state.pending = vec![0; kept.len()];
        state.entries = kept;
        state.rebuild_index();
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
            if let Some(p) = self.pending.get_mut(id) {
                put_count_line(&mut self.buf, id as u64, *p);
                *p = 0;
            }
        }
        self.pending_bytes = 0;
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.log.write_all(&self.buf) {
            // A partial write (disk full) would leave half a line that later
            // appends glue onto: cut the log back to where it was.
            let _ = self.log.set_len(self.log_len);
            return Err(TlsRptError::io(dir.join(LOG_NAME), e));
        }
        self.log_len = self.log_len.saturating_add(self.buf.len() as u64);
        self.buf.clear();
        Ok(())
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        self.index.reserve(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let mut bytes = Vec::new();
            encode_key(&mut bytes, &e.key);
            self.index.insert(bytes.into_boxed_slice(), i);
        }
    }
}

#[derive(Serialize)]
struct Definition<'a> {
    id: usize,
    key: &'a TupleKey,
}

#[derive(Deserialize)]
struct OwnedDefinition {
    id: usize,
    key: TupleKey,
}

fn replay(path: &Path) -> Result<Vec<Entry>, TlsRptError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TlsRptError::io(path, e)),
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| TlsRptError::io(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        // A line without its newline is the one being written when the
        // process died: it was never acknowledged, so it is dropped.
        let Some(text) = line.strip_suffix('\n') else {
            break;
        };
        let corrupt = |reason: String| TlsRptError::Corrupt {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        if text.starts_with('{') {
            let def: OwnedDefinition = serde_json::from_str(text)
                .map_err(|e| corrupt(format!("bad tuple definition: {e}")))?;
            if def.id != entries.len() {
                return Err(corrupt(format!("tuple id {} out of sequence", def.id)));
            }
            entries.push(Entry {
                key: def.key,
                count: 0,
            });
        } else {
            let (id, count) = text
                .split_once(' ')
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<u64>().ok()?)))
                .ok_or_else(|| corrupt(format!("bad count line {text:?}")))?;
            let entry = entries
                .get_mut(id)
                .ok_or_else(|| corrupt(format!("count for undefined tuple {id}")))?;
            entry.count = entry.count.saturating_add(count);
        }
    }
    Ok(entries)
}

/// Writes `entries` to a temporary file, fsyncs it and renames it over the
/// log, so a crash leaves either the old or the new log, never half of one.
fn write_compacted(dir: &Path, entries: &[Entry]) -> Result<(File, u64), TlsRptError> {
    let tmp = dir.join(format!("{LOG_NAME}.tmp"));
    let path = dir.join(LOG_NAME);
    let mut buf = Vec::new();
    for (id, e) in entries.iter().enumerate() {
        serde_json::to_writer(&mut buf, &Definition { id, key: &e.key })?;
        buf.push(b'\n');
        let _ = writeln!(buf, "{id} {}", e.count);
    }
    let mut f = File::create(&tmp).map_err(|e| TlsRptError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| TlsRptError::io(&tmp, e))?;
    f.sync_all().map_err(|e| TlsRptError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| TlsRptError::io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        // Make the rename itself durable; not all platforms allow this.
        let _ = d.sync_all();
    }
    let log = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| TlsRptError::io(&path, e))?;
    Ok((log, buf.len() as u64))
}

fn owned_key(day: Date, o: &SessionOutcome<'_>) -> TupleKey {
    TupleKey {
        day,
        policy: PolicyKey {
            policy_type: o.policy.policy_type,
            domain: o.policy.domain.to_owned(),
            strings: o.policy.strings.iter().map(|s| (*s).to_owned()).collect(),
            mx_hosts: o.policy.mx_hosts.iter().map(|s| (*s).to_owned()).collect(),
        },
        failure: o.failure.map(|f| FailureKey {
            result_type: f.result_type,
            sending_mta_ip: f.sending_mta_ip,
            receiving_ip: f.receiving_ip,
            receiving_mx_hostname: o.mx_host.to_owned(),
            receiving_mx_helo: f.receiving_mx_helo.map(str::to_owned),
            failure_reason_code: f.failure_reason_code.map(str::to_owned),
            additional_information: f.additional_information.map(str::to_owned),
        }),
    }
}

/// Appends `"{id} {count}\n"` without the `fmt` machinery: with many
/// tuples the buffer holds one such line per tuple touched since the last
/// write, and `write!` was a visible share of the aggregation time.
fn put_count_line(out: &mut Vec<u8>, id: u64, count: u64) {
    put_decimal(out, id);
    out.push(b' ');
    put_decimal(out, count);
    out.push(b'\n');
}

fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// result type, sending IP, receiving IP, MX host, HELO, reason code, info.
type FailureParts<'a> = (
    ResultType,
    Option<IpAddr>,
    Option<IpAddr>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Length-prefixed, so the encoding of a sequence of parts is injective:
    // equal bytes mean equal tuples, and the lookup needs no other check.
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => out.push(0),
        Some(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// The identity of a tuple as one byte string (in memory only, never
/// persisted), built the same way from the caller's borrowed outcome and
/// from an owned key.
fn encode_parts<'a>(
    out: &mut Vec<u8>,
    day: Date,
    policy_type: PolicyType,
    domain: &str,
    strings: impl ExactSizeIterator<Item = &'a str>,
    mx_hosts: impl ExactSizeIterator<Item = &'a str>,
    failure: Option<FailureParts<'_>>,
) {
    out.extend_from_slice(&day.to_julian_day().to_le_bytes());
    put_str(out, policy_type.as_str());
    put_str(out, domain);
    out.extend_from_slice(&(strings.len() as u64).to_le_bytes());
    for s in strings {
        put_str(out, s);
    }
    out.extend_from_slice(&(mx_hosts.len() as u64).to_le_bytes());
    for s in mx_hosts {
        put_str(out, s);
    }
    match failure {
        None => out.push(0),
        Some((result_type, sending, receiving, mx_host, helo, code, info)) => {
            out.push(1);
            put_str(out, result_type.as_str());
            put_ip(out, sending);
            put_ip(out, receiving);
            put_str(out, mx_host);
            put_opt_str(out, helo);
            put_opt_str(out, code);
            put_opt_str(out, info);
        }
    }
}

fn encode_outcome(out: &mut Vec<u8>, day: Date, o: &SessionOutcome<'_>) {
    encode_parts(
        out,
        day,
        o.policy.policy_type,
        o.policy.domain,
        o.policy.strings.iter().copied(),
        o.policy.mx_hosts.iter().copied(),
        o.failure.map(|f| {
            (
                f.result_type,
                f.sending_mta_ip,
                f.receiving_ip,
                o.mx_host,
                f.receiving_mx_helo,
                f.failure_reason_code,
                f.additional_information,
            )
        }),
    );
}

fn encode_key(out: &mut Vec<u8>, k: &TupleKey) {
    encode_parts(
        out,
        k.day,
        k.policy.policy_type,
        &k.policy.domain,
        k.policy.strings.iter().map(String::as_str),
        k.policy.mx_hosts.iter().map(String::as_str),
        k.failure.as_ref().map(|f| {
            (
                f.result_type,
                f.sending_mta_ip,
                f.receiving_ip,
                f.receiving_mx_hostname.as_str(),
                f.receiving_mx_helo.as_deref(),
                f.failure_reason_code.as_deref(),
                f.additional_information.as_deref(),
            )
        }),
    );
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
}
