//! The outbound queue in `<data_dir>/queue`: per message one `ID.eml` (the
//! bytes to send) and one `ID.json` (the envelope and each recipient's
//! state), both written to a temporary file and renamed into place.
//!
//! The body is written before the state file, and a message counts as
//! queued only once its state file exists: after a crash, a body without
//! state was never acknowledged to the client and is removed, and a state
//! file is removed before its body once the message is finished. Every
//! change of a recipient's state is written before the next attempt, so a
//! restart resumes where the queue stood.
//!
//! A state file that cannot be read at start (damaged, or naming another
//! message) does not stop the server: it and its body are moved to
//! `<queue>/quarantine/` under their own names, logged with the file name
//! and counted in the status; the rest of the queue runs on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A queue file or the directory could not be used.
    #[error("queue {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file did not parse.
    #[error("queue state file {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: serde_json::Error,
    },
    /// No such message in the queue.
    #[error("queue: no message {id}")]
    Unknown {
        /// The id asked for.
        id: String,
    },
}

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RecipientStatus {
    /// Still to be delivered (at `next_attempt`).
    Pending,
    /// Accepted by the next hop.
    Delivered {
        /// The host that took it.
        host: String,
        /// Its reply to the end of data.
        reply: String,
    },
    /// Given up on: a delivery status notification is owed to the sender.
    Failed(Failure),
    /// Given up on and the sender told (or there was nobody to tell).
    Returned(Failure),
}

/// Why delivery to a recipient failed, for its DSN (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The enhanced status code (`5.7.30`).
    pub status: String,
    /// The host that gave the answer, when one did (`Remote-MTA`).
    pub remote_mta: Option<String>,
    /// The SMTP reply, when one caused it (`Diagnostic-Code: smtp;`).
    pub smtp_reply: Option<String>,
    /// What happened, for people.
    pub reason: String,
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address (`user@domain`).
    pub address: String,
    /// Where it stands.
    #[serde(flatten)]
    pub status: RecipientStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds).
    pub next_attempt: u64,
    /// What the last failed attempt said (kept while pending).
    pub last_error: Option<String>,
}

/// The state file of one queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// The queue id (file stem).
    pub id: String,
    /// The reverse path; empty for the null sender (a bounce).
    pub mail_from: String,
    /// When it was queued (Unix seconds).
    pub created: u64,
    /// The recipients.
    pub recipients: Vec<Recipient>,
    /// Whether the sender was told that delivery is late (at most once).
    #[serde(default)]
    pub delay_warned: bool,
}

impl MessageState {
    /// Whether nothing is left to do: every recipient delivered or returned.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| {
            matches!(
                r.status,
                RecipientStatus::Delivered { .. } | RecipientStatus::Returned(_)
            )
        })
    }

    /// The earliest attempt due among pending recipients.
    pub fn next_due(&self) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Pending)
            .map(|r| r.next_attempt)
            .min()
    }

    /// Whether some recipient is still pending after a failed attempt.
    pub fn is_deferred(&self) -> bool {
        self.recipients
            .iter()
            .any(|r| r.status == RecipientStatus::Pending && r.attempts > 0)
    }

    /// Whether some work is due at `now`: a pending recipient whose time has
    /// come, or a failure whose DSN is still owed.
    pub fn is_due(&self, now: u64) -> bool {
        self.next_due().is_some_and(|t| t <= now)
            || self
                .recipients
                .iter()
                .any(|r| matches!(r.status, RecipientStatus::Failed(_)))
    }
}

/// Counts over the whole queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages in the queue.
    pub messages: usize,
    /// Recipients still pending.
    pub pending: usize,
    /// Pending recipients that have had at least one failed attempt.
    pub deferred: usize,
}

/// The queue directory and its state in memory.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    counter: AtomicU64,
    messages: Mutex<BTreeMap<String, MessageState>>,
    quarantined: usize,
}

/// The subdirectory of the queue that damaged messages are moved to.
pub const QUARANTINE: &str = "quarantine";

/// Moves `ID.json` and `ID.eml` (when present) into the quarantine
/// directory, keeping their names; an existing file of the same name there
/// is never overwritten (a suffix is added).
fn quarantine(dir: &Path, id: &str) -> std::io::Result<()> {
    let target = dir.join(QUARANTINE);
    mailtls_core::secret_file::ensure_private_dir(&target)?;
    for ext in ["json", "eml"] {
        let from = dir.join(format!("{id}.{ext}"));
        if !from.exists() {
            continue;
        }
        let mut to = target.join(format!("{id}.{ext}"));
        let mut n = 1;
        while to.exists() {
            to = target.join(format!("{id}.{ext}.{n}"));
            n += 1;
        }
        std::fs::rename(&from, &to)?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Queue {
    /// Opens the queue in `dir` (created owner-only if missing) and loads
    /// every message in it; leftovers of an interrupted write are removed.
    /// Blocking.
    pub fn open(dir: &Path) -> Result<Self, QueueError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| QueueError::Io { path, source }
        };
        mailtls_core::secret_file::ensure_private_dir(dir).map_err(io(dir))?;
        let mut messages = BTreeMap::new();
        let mut bodies = Vec::new();
        let mut quarantined = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !entry.file_type().map_err(io(&path))?.is_file() {
                // The quarantine directory, or something the operator put here.
                continue;
            }
            if name.starts_with('.') {
                // A temporary file of an interrupted atomic write.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(id) = name.strip_suffix(".json") {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let problem = match serde_json::from_slice::<MessageState>(&bytes) {
                    Ok(state) if state.id == id => {
                        messages.insert(id.to_owned(), state);
                        continue;
                    }
                    Ok(state) => format!("holds message {} instead of {id}", state.id),
                    Err(e) => e.to_string(),
                };
                // One damaged file must not keep the server (and every
                // other queued message) from running: it is set aside with
                // its body for the operator, never deleted.
                quarantine(dir, id).map_err(io(&dir.join(QUARANTINE)))?;
                tracing::error!(
                    file = %path.display(),
                    %problem,
                    quarantine = %dir.join(QUARANTINE).display(),
                    "unreadable queue state file moved to quarantine with its message"
                );
                quarantined.push(id.to_owned());
            } else if let Some(id) = name.strip_suffix(".eml") {
                bodies.push((id.to_owned(), path));
            }
        }
        for (id, path) in &bodies {
            if !messages.contains_key(id) && !quarantined.contains(id) {
                tracing::warn!(%id, "removing a queued body without state (never acknowledged)");
                std::fs::remove_file(path).map_err(io(path))?;
            }
        }
        let orphans: Vec<String> = messages
            .keys()
            .filter(|id| !bodies.iter().any(|(b, _)| b == *id))
            .cloned()
            .collect();
        for id in orphans {
            tracing::error!(%id, "queue state without its message body; dropping it");
            let path = dir.join(format!("{id}.json"));
            std::fs::remove_file(&path).map_err(io(&path))?;
            messages.remove(&id);
        }
        Ok(Queue {
            dir: dir.to_owned(),
            counter: AtomicU64::new(0),
            messages: Mutex::new(messages),
            quarantined: quarantined.len(),
        })
    }

    /// How many messages [`Queue::open`] moved to quarantine because their
    /// state file could not be read.
    pub fn quarantined(&self) -> usize {
        self.quarantined
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn new_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Fixed-width fields: name order is arrival order. The `Q` keeps
        // queue ids apart from spool ids in logs.
        format!(
            "Q{:012}{:06}-{:05}-{:06}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id() % 100_000,
            n % 1_000_000
        )
    }

    fn body_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MessageState>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a message for `rcpt_to`, due at once; returns its id.
    /// Blocking.
    pub fn enqueue(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        body: &[u8],
    ) -> Result<String, QueueError> {
        let id = self.new_id();
        let now = unix_now();
        let state = MessageState {
            id: id.clone(),
            mail_from: mail_from.to_owned(),
            created: now,
            recipients: rcpt_to
                .iter()
                .map(|a| Recipient {
                    address: a.clone(),
                    status: RecipientStatus::Pending,
                    attempts: 0,
                    next_attempt: now,
                    last_error: None,
                })
                .collect(),
            delay_warned: false,
        };
        let body_path = self.body_path(&id);
        mailtls_core::secret_file::write_atomic(&body_path, body, 0o600).map_err(|source| {
            QueueError::Io {
                path: body_path.clone(),
                source,
            }
        })?;
        if let Err(e) = self.write_state(&state) {
            let _ = std::fs::remove_file(&body_path);
            return Err(e);
        }
        self.lock().insert(id.clone(), state);
        Ok(id)
    }

    fn write_state(&self, state: &MessageState) -> Result<(), QueueError> {
        let path = self.state_path(&state.id);
        let json = serde_json::to_vec_pretty(state).map_err(|source| QueueError::Corrupt {
            path: path.clone(),
            source,
        })?;
        mailtls_core::secret_file::write_atomic(&path, &json, 0o600)
            .map_err(|source| QueueError::Io { path, source })
    }

    /// Stores a changed state (blocking). A finished message leaves the
    /// queue: its state file goes first, then its body.
    pub fn update(&self, state: MessageState) -> Result<(), QueueError> {
        if !self.lock().contains_key(&state.id) {
            return Err(QueueError::Unknown { id: state.id });
        }
        if state.is_finished() {
            for path in [self.state_path(&state.id), self.body_path(&state.id)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(QueueError::Io { path, source }),
                }
            }
            self.lock().remove(&state.id);
        } else {
            self.write_state(&state)?;
            self.lock().insert(state.id.clone(), state);
        }
        Ok(())
    }

    /// A copy of one message's state.
    pub fn get(&self, id: &str) -> Option<MessageState> {
        self.lock().get(id).cloned()
    }

    /// The message bytes (blocking).
    pub fn read_body(&self, id: &str) -> Result<Vec<u8>, QueueError> {
        let path = self.body_path(id);
        std::fs::read(&path).map_err(|source| QueueError::Io { path, source })
    }

    /// The ids of messages with work due at `now`, oldest first.
    pub fn due(&self, now: u64) -> Vec<String> {
        self.lock()
            .values()
            .filter(|m| m.is_due(now))
            .map(|m| m.id.clone())
            .collect()
    }

    /// When a delay warning (sent once a message has been queued for
    /// `after` seconds with a recipient still pending after a failed
    /// attempt) falls due: the earliest over the messages not yet warned.
    pub fn next_delay_warning(&self, after: u64) -> Option<u64> {
        self.lock()
            .values()
            .filter(|m| !m.delay_warned && m.is_deferred())
            .map(|m| m.created.saturating_add(after))
            .min()
    }

    /// The ids of messages whose delay warning is due at `now`.
    pub fn delay_warnings_due(&self, now: u64, after: u64) -> Vec<String> {
        self.lock()
            .values()
            .filter(|m| {
                !m.delay_warned && m.is_deferred() && m.created.saturating_add(after) <= now
            })
            .map(|m| m.id.clone())
            .collect()
    }

    /// When the next pending attempt is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.lock()
            .values()
            .filter_map(MessageState::next_due)
            .min()
    }

    /// Every message's state, oldest first.
    pub fn list(&self) -> Vec<MessageState> {
        self.lock().values().cloned().collect()
    }

    /// Counts for the status page.
    pub fn counts(&self) -> QueueCounts {
        let guard = self.lock();
        let mut c = QueueCounts {
            messages: guard.len(),
            ..QueueCounts::default()
        };
        for r in guard.values().flat_map(|m| &m.recipients) {
            if r.status == RecipientStatus::Pending {
                c.pending += 1;
                if r.attempts > 0 {
                    c.deferred += 1;
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_tempdir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn survives_a_restart_and_finishes() {
        let t = private_tempdir();
        let dir = t.path().join("queue");
        let q = Queue::open(&dir).unwrap();
        let rcpts = vec!["a@x.example".to_owned(), "b@y.example".to_owned()];
        let id = q
            .enqueue("s@example.test", &rcpts, b"Subject: x\r\n\r\nhi\r\n")
            .unwrap();
        let id2 = q.enqueue("", &rcpts[..1], b"Subject: y\r\n\r\n").unwrap();
        assert!(id < id2, "ids sort by arrival");
        let mut st = q.get(&id).unwrap();
        st.recipients[0].status = RecipientStatus::Delivered {
            host: "mx.x.example".into(),
            reply: "250 ok".into(),
        };
        st.recipients[1].attempts = 1;
        st.recipients[1].next_attempt = u64::MAX;
        st.recipients[1].last_error = Some("421 busy".into());
        q.update(st.clone()).unwrap();
        drop(q);

        let q = Queue::open(&dir).unwrap();
        assert_eq!(q.get(&id).unwrap(), st);
        assert_eq!(q.read_body(&id).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert_eq!(
            q.counts(),
            QueueCounts {
                messages: 2,
                pending: 2,
                deferred: 1
            }
        );
        // Only the second message is due now; the first waits.
        assert_eq!(q.due(unix_now()), vec![id2.clone()]);

        let mut st2 = q.get(&id2).unwrap();
        st2.recipients[0].status = RecipientStatus::Returned(Failure {
            status: "5.1.1".into(),
            remote_mta: None,
            smtp_reply: Some("550 5.1.1 no such user".into()),
            reason: "rejected".into(),
        });
        q.update(st2).unwrap();
        assert!(q.get(&id2).is_none());
        assert!(!dir.join(format!("{id2}.eml")).exists());
        assert!(!dir.join(format!("{id2}.json")).exists());
        assert_eq!(q.counts().messages, 1);
    }

    #[test]
    fn interrupted_writes_are_cleaned_up() {
        let t = private_tempdir();
        let dir = t.path().join("queue");
        let q = Queue::open(&dir).unwrap();
        let id = q
            .enqueue("s@example.test", &["a@x.example".into()], b"x")
            .unwrap();
        drop(q);
        // A body whose state was never written, a state whose body is gone,
        // and a temporary file of an atomic write.
        std::fs::write(dir.join("Q1-orphan.eml"), b"never acknowledged").unwrap();
        let mut lost = serde_json::from_slice::<MessageState>(
            &std::fs::read(dir.join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        lost.id = "Q2-lost".into();
        std::fs::write(dir.join("Q2-lost.json"), serde_json::to_vec(&lost).unwrap()).unwrap();
        std::fs::write(dir.join(".Q3.json.tmp1-1"), b"{").unwrap();
        let q = Queue::open(&dir).unwrap();
        assert_eq!(
            q.list().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            [id]
        );
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");

        assert_eq!(q.quarantined(), 0);
    }

    #[test]
    fn a_damaged_state_file_is_quarantined_with_its_body() {
        let t = private_tempdir();
        let dir = t.path().join("queue");
        let q = Queue::open(&dir).unwrap();
        let good = q
            .enqueue("s@example.test", &["a@x.example".into()], b"good")
            .unwrap();
        drop(q);
        std::fs::write(dir.join("Q4-bad.json"), b"{not json").unwrap();
        std::fs::write(dir.join("Q4-bad.eml"), b"the body").unwrap();
        // A state file naming another message is damaged too.
        let mut other = serde_json::from_slice::<MessageState>(
            &std::fs::read(dir.join(format!("{good}.json"))).unwrap(),
        )
        .unwrap();
        other.id = "Q6-elsewhere".into();
        std::fs::write(
            dir.join("Q5-moved.json"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        // A quarantined file of the same name from an earlier start stays.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join(QUARANTINE))
                .unwrap();
        }
        std::fs::write(dir.join(QUARANTINE).join("Q4-bad.json"), b"older").unwrap();

        let q = Queue::open(&dir).unwrap();
        assert_eq!(q.quarantined(), 2);
        assert_eq!(
            q.list().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            std::slice::from_ref(&good)
        );
        let qdir = dir.join(QUARANTINE);
        assert_eq!(std::fs::read(qdir.join("Q4-bad.json")).unwrap(), b"older");
        assert_eq!(
            std::fs::read(qdir.join("Q4-bad.json.1")).unwrap(),
            b"{not json"
        );
        assert_eq!(std::fs::read(qdir.join("Q4-bad.eml")).unwrap(), b"the body");
        assert!(qdir.join("Q5-moved.json").exists());
        assert!(!dir.join("Q4-bad.json").exists() && !dir.join("Q4-bad.eml").exists());
        // The next start finds nothing more to quarantine.
        drop(q);
        let q = Queue::open(&dir).unwrap();
        assert_eq!(q.quarantined(), 0);
        assert_eq!(q.list().len(), 1);
    }
}
