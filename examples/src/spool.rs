//! The spool: one `.eml` file per accepted message, written atomically
//! (a reader never sees half a message), read back by POP3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool directory or a message file could not be used.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// How a message came in, for its `Received:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (empty for the null sender).
    pub mail_from: String,
    /// The recipients.
    pub rcpt_to: Vec<String>,
    /// The client's HELO/EHLO argument.
    pub helo: String,
    /// Whether EHLO (not HELO) was used.
    pub esmtp: bool,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The TLS version and cipher suite, if TLS was on.
    pub tls: Option<String>,
    /// Whether the client authenticated (AUTH or a client certificate).
    pub authenticated: bool,
    /// The SMTP AUTH login name, if the client logged in (a session
    /// authenticated only by a client certificate has none): the S/MIME
    /// gateway signs only as the addresses this login may send as.
    pub login: Option<String>,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    /// Its id (the file stem), unique and ordered by arrival.
    pub id: String,
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes, as stored (CRLF line endings).
    pub size: u64,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    hostname: String,
    counter: Arc<AtomicU64>,
}

impl Spool {
    /// A spool in `dir` (created, owner-only, if missing); `hostname` goes
    /// into `Received:` headers. Temporary files of writes a crash
    /// interrupted are removed: their message was never acknowledged.
    pub fn open(dir: &Path, hostname: &str) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SpoolError::Io { path, source }
        };
        mailtls_core::secret_file::ensure_private_dir(dir).map_err(io(dir))?;
        let mut removed = 0usize;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // `write_atomic` writes `.NAME.tmpPID-SEQ` and renames it.
            if name.starts_with('.') && name.contains(".eml.tmp") && entry.path().is_file() {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                spool = %dir.display(),
                removed,
                "removed temporary files of interrupted spool writes"
            );
        }
        Ok(Spool {
            dir: dir.to_owned(),
            hostname: hostname.to_owned(),
            counter: Arc::new(AtomicU64::new(0)),
        })
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
        // Fixed-width fields so that name order is arrival order.
        format!(
            "{:012}{:06}-{:05}-{:06}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id() % 100_000,
            n % 1_000_000
        )
    }

    /// Stores a message (body with CRLF line endings, already dot-unstuffed)
    /// under a `Return-Path:` and a `Received:` header; returns its id.
    /// Blocking; call it off the async runtime.
    pub fn store(&self, envelope: &Envelope, body: &[u8]) -> Result<String, SpoolError> {
        let id = self.new_id();
        let mut out = Vec::with_capacity(body.len() + 512);
        out.extend_from_slice(self.trace_headers(envelope, &id).as_bytes());
        out.extend_from_slice(body);
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        let path = self.dir.join(format!("{id}.eml"));
        mailtls_core::secret_file::write_atomic(&path, &out, 0o600).map_err(|source| {
            SpoolError::Io {
                path: path.clone(),
                source,
            }
        })?;
        Ok(id)
    }

    fn trace_headers(&self, e: &Envelope, id: &str) -> String {
        let with = match (e.esmtp, e.tls.is_some(), e.authenticated) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, true, true) => "ESMTPSA",
        };
        let date = OffsetDateTime::now_utc()
            .format(&Rfc2822)
            .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
        let ip = e.peer.ip();
        let mut h = format!(
            "Return-Path: <{}>\r\nReceived: from {} ({ip} [{ip}])\r\n\tby {} (mailtls) with {with} id {id}",
            sanitize(&e.mail_from),
            sanitize(&e.helo),
            self.hostname,
        );
        if let Some(tls) = &e.tls {
            h.push_str(&format!("\r\n\t({})", sanitize(tls)));
        }
        if let [one] = e.rcpt_to.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(one)));
        }
        h.push_str(&format!("; {date}\r\n"));
        h
    }

    /// Every stored message, oldest first.
    pub fn list(&self) -> Result<Vec<SpoolEntry>, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name.strip_suffix(".eml") else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(SpoolEntry {
                id: id.to_owned(),
                path: entry.path(),
                size: meta.len(),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Reads one stored message.
    pub fn read(&self, entry: &SpoolEntry) -> Result<Vec<u8>, SpoolError> {
        std::fs::read(&entry.path).map_err(|source| SpoolError::Io {
            path: entry.path.clone(),
            source,
        })
    }
}

/// Client-supplied text that goes into a header: printable ASCII only, and
/// nothing that could end the header or a comment early.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '(' && c != ')' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_lists_in_order() {
        let t = private_tempdir();
        let spool = Spool::open(&t.path().join("spool"), "mail.example.test").unwrap();
        let env = Envelope {
            mail_from: "a@example.org".into(),
            rcpt_to: vec!["b@example.test".into()],
            helo: "client\r\nX-Evil: 1".into(),
            esmtp: true,
            peer: "127.0.0.1:1234".parse().unwrap(),
            tls: Some("TLSv1_3 TLS13_AES_128_GCM_SHA256".into()),
            authenticated: false,
            login: None,
        };
        let a = spool.store(&env, b"Subject: one\r\n\r\nhi\r\n").unwrap();
        let b = spool.store(&env, b"Subject: two\r\n\r\nho").unwrap();
        let list = spool.list().unwrap();
        assert_eq!(
            list.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            [a, b]
        );
        let text = String::from_utf8(spool.read(&list[1]).unwrap()).unwrap();
        assert!(
            text.starts_with("Return-Path: <a@example.org>\r\nReceived: from client??X-Evil: 1")
        );
        assert!(text.contains("with ESMTPS id"));
        assert!(text.contains("for <b@example.test>; "));
        assert!(text.ends_with("ho\r\n"));
    }

    #[test]
    fn opening_removes_temporary_files_of_interrupted_writes() {
        let t = private_tempdir();
        let dir = t.path().join("spool");
        let spool = Spool::open(&dir, "mail.example.test").unwrap();
        let env = Envelope {
            mail_from: String::new(),
            rcpt_to: vec!["b@example.test".into()],
            helo: "client".into(),
            esmtp: true,
            peer: "127.0.0.1:1234".parse().unwrap(),
            tls: None,
            authenticated: false,
            login: None,
        };
        let kept = spool.store(&env, b"Subject: kept\r\n\r\nhi\r\n").unwrap();
        let leftover = dir.join(format!(".{kept}9.eml.tmp4242-7"));
        std::fs::write(&leftover, b"half a mess").unwrap();
        let other = dir.join(".operator-note");
        std::fs::write(&other, b"not ours").unwrap();
        let spool = Spool::open(&dir, "mail.example.test").unwrap();
        assert!(!leftover.exists());
        assert!(other.exists(), "only interrupted spool writes are removed");
        let list = spool.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, kept);
    }

    /// A temporary directory only its owner can read: where private keys may go
    /// (the maker refuses directories others can read).
    fn private_tempdir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }
}
