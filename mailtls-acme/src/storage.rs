//! Persistent state behind a trait, with a file-system default: account key
//! and URL, certificates and their keys, renewal state per certificate, and
//! orders in progress. Every file is written atomically with mode 0600
//! (`mailtls_core::secret_file`), so a crash never leaves half a file.
//!
//! [`Storage`] and [`OrderJournal`] are async and object-safe, so an
//! embedder can keep this state in its own store (a database, a cluster's
//! key-value store) behind an `Arc<dyn Storage>`. Their methods return boxed
//! futures ([`StorageFuture`]) rather than using `async-trait`: the solver
//! traits of this crate already have that shape, rustdoc shows the real
//! signature, and no proc-macro crate is needed. (Native `async fn` in
//! traits is not object-safe yet.)
//!
//! [`FileStorage`], the default, does its file work (reads, atomic writes
//! with fsync, directory creation) on tokio's blocking thread pool through
//! `spawn_blocking`, never on a runtime worker. Its `*_blocking` methods do
//! the same work on the calling thread, for code outside a runtime.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use mailtls_core::secret_file::{ensure_private_dir, write_atomic};
use serde::{Deserialize, Serialize};

use crate::error::AcmeError;
use crate::order::{OrderJournal, PendingOrder};

/// A stored account: its key and URL at one CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredAccount {
    /// The account URL.
    pub url: String,
    /// The account key, PKCS#8 PEM.
    pub key_pem: String,
}

impl StoredAccount {
    /// A stored account.
    pub fn new(url: impl Into<String>, key_pem: impl Into<String>) -> Self {
        StoredAccount {
            url: url.into(),
            key_pem: key_pem.into(),
        }
    }
}

/// A stored certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredCertificate {
    /// The chain, leaf first, PEM.
    pub chain_pem: String,
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
}

impl StoredCertificate {
    /// A stored certificate.
    pub fn new(chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        StoredCertificate {
            chain_pem: chain_pem.into(),
            key_pem: key_pem.into(),
        }
    }
}

/// Renewal bookkeeping for one certificate, persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RenewalState {
    /// Unix seconds of the next planned attempt (renewal or retry).
    pub next_attempt_unix: Option<u64>,
    /// Consecutive failures since the last success.
    pub failures: u32,
    /// The last error, for the administrator.
    pub last_error: Option<String>,
    /// The account URL that obtained the current certificate (ARI
    /// `replaces` is only sent for the same account).
    pub issued_by_account: Option<String>,
}

impl RenewalState {
    /// The next attempt as a time.
    pub fn next_attempt(&self) -> Option<SystemTime> {
        self.next_attempt_unix
            .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s))
    }

    /// Sets the next attempt.
    pub fn set_next_attempt(&mut self, at: SystemTime) {
        self.next_attempt_unix = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
}

/// The future a [`Storage`] or [`OrderJournal`] method returns.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AcmeError>> + Send + 'a>>;

/// Where the client keeps what it must not lose. A save must be durable
/// when its future completes: the client relies on the order of saves (the
/// account key before the account, the certificate key before its chain).
pub trait Storage: OrderJournal {
    /// The account for `directory_url`, if stored.
    fn load_account<'a>(
        &'a self,
        directory_url: &'a str,
    ) -> StorageFuture<'a, Option<StoredAccount>>;
    /// Stores the account for `directory_url`.
    fn save_account<'a>(
        &'a self,
        directory_url: &'a str,
        account: &'a StoredAccount,
    ) -> StorageFuture<'a, ()>;
    /// The certificate stored under `id`, if any.
    fn load_certificate<'a>(&'a self, id: &'a str) -> StorageFuture<'a, Option<StoredCertificate>>;
    /// Stores a certificate under `id`.
    fn save_certificate<'a>(
        &'a self,
        id: &'a str,
        cert: &'a StoredCertificate,
    ) -> StorageFuture<'a, ()>;
    /// The renewal state of `id` (the default state if none is stored).
    fn load_state<'a>(&'a self, id: &'a str) -> StorageFuture<'a, RenewalState>;
    /// Stores the renewal state of `id`.
    fn save_state<'a>(&'a self, id: &'a str, state: &'a RenewalState) -> StorageFuture<'a, ()>;
}

/// The file-system storage: under the data directory,
/// `accounts/<directory>/{account.json,key.pem}`,
/// `certs/<id>/{chain.pem,key.pem,state.json}` and `orders/<names>.json`.
///
/// Through the [`Storage`] trait every call runs on tokio's blocking pool;
/// the inherent `*_blocking` methods block the calling thread.
#[derive(Debug, Clone)]
pub struct FileStorage {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::Storage {
        path: path.display().to_string(),
        source,
    }
}

/// A file-name-safe form of `s`: keeps `[a-z0-9.-]`, maps `*` to `_wildcard`
/// and everything else to `_`.
fn safe_component(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => out.push(c.to_ascii_lowercase()),
            '*' => out.push_str("_wildcard"),
            _ => out.push('_'),
        }
    }
    // Never "." or "..": always prefix what starts with a dot.
    if out.starts_with('.') || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

fn short_hash(s: &str) -> String {
    crate::crypto::sha256(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FileStorage {
    /// Storage under `root` (created 0700 if missing; a directory others
    /// can read is refused). Blocks on the file system: call it at start-up,
    /// or through `spawn_blocking` from async code.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, AcmeError> {
        let root = root.into();
        ensure_private_dir(&root).map_err(io_err(&root))?;
        Ok(FileStorage { root })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn account_dir(&self, directory_url: &str) -> PathBuf {
        let host = directory_url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("ca");
        self.root.join("accounts").join(format!(
            "{}-{}",
            safe_component(host),
            short_hash(directory_url)
        ))
    }

    /// The directory holding certificate `id`.
    pub fn certificate_dir(&self, id: &str) -> PathBuf {
        self.root.join("certs").join(safe_component(id))
    }

    fn order_path(&self, names: &[String]) -> PathBuf {
        let mut sorted = names.to_vec();
        sorted.sort();
        self.root
            .join("orders")
            .join(format!("{}.json", short_hash(&sorted.join(","))))
    }

    fn write(&self, path: &Path, contents: &[u8]) -> Result<(), AcmeError> {
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir).map_err(io_err(dir))?;
        }
        write_atomic(path, contents, 0o600).map_err(io_err(path))
    }

    fn read(&self, path: &Path) -> Result<Option<String>, AcmeError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, AcmeError> {
        match self.read(path)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| AcmeError::CorruptStorage {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), AcmeError> {
        let s = serde_json::to_vec_pretty(value).map_err(|e| AcmeError::CorruptStorage {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.write(path, &s)
    }
}

#[derive(Serialize, Deserialize)]
struct AccountFile {
    url: String,
    directory: String,
}

impl FileStorage {
    /// [`load_pending`](OrderJournal::load_pending), on the calling thread.
    pub fn load_pending_blocking(
        &self,
        names: &[String],
    ) -> Result<Option<PendingOrder>, AcmeError> {
        self.read_json(&self.order_path(names))
    }

    /// [`save_pending`](OrderJournal::save_pending), on the calling thread.
    pub fn save_pending_blocking(&self, pending: &PendingOrder) -> Result<(), AcmeError> {
        // Holds the certificate key: 0600 like every file here.
        self.write_json(&self.order_path(&pending.names), pending)
    }

    /// [`clear_pending`](OrderJournal::clear_pending), on the calling thread.
    pub fn clear_pending_blocking(&self, names: &[String]) -> Result<(), AcmeError> {
        let path = self.order_path(names);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
    /// [`load_account`](Storage::load_account), on the calling thread.
    pub fn load_account_blocking(
        &self,
        directory_url: &str,
    ) -> Result<Option<StoredAccount>, AcmeError> {
        let dir = self.account_dir(directory_url);
        let Some(file) = self.read_json::<AccountFile>(&dir.join("account.json"))? else {
            return Ok(None);
        };
        let Some(key_pem) = self.read(&dir.join("key.pem"))? else {
            return Err(AcmeError::CorruptStorage {
                path: dir.display().to_string(),
                reason: "account.json without key.pem".into(),
            });
        };
        Ok(Some(StoredAccount {
            url: file.url,
            key_pem,
        }))
    }

    /// [`save_account`](Storage::save_account), on the calling thread.
    pub fn save_account_blocking(
        &self,
        directory_url: &str,
        account: &StoredAccount,
    ) -> Result<(), AcmeError> {
        let dir = self.account_dir(directory_url);
        // Key first: an account.json never points at a missing key.
        self.write(&dir.join("key.pem"), account.key_pem.as_bytes())?;
        self.write_json(
            &dir.join("account.json"),
            &AccountFile {
                url: account.url.clone(),
                directory: directory_url.to_owned(),
            },
        )
    }

    /// [`load_certificate`](Storage::load_certificate), on the calling thread.
    pub fn load_certificate_blocking(
        &self,
        id: &str,
    ) -> Result<Option<StoredCertificate>, AcmeError> {
        let dir = self.certificate_dir(id);
        let (Some(chain_pem), Some(key_pem)) = (
            self.read(&dir.join("chain.pem"))?,
            self.read(&dir.join("key.pem"))?,
        ) else {
            return Ok(None);
        };
        Ok(Some(StoredCertificate { chain_pem, key_pem }))
    }

    /// [`save_certificate`](Storage::save_certificate), on the calling thread.
    pub fn save_certificate_blocking(
        &self,
        id: &str,
        cert: &StoredCertificate,
    ) -> Result<(), AcmeError> {
        let dir = self.certificate_dir(id);
        ensure_private_dir(&dir).map_err(io_err(&dir))?;
        let key = dir.join("key.pem");
        write_pair(
            PairFile::new(&key, cert.key_pem.as_bytes(), 0o600),
            PairFile::new(&dir.join("chain.pem"), cert.chain_pem.as_bytes(), 0o600),
        )
        .map_err(io_err(&key))
    }

    /// [`load_state`](Storage::load_state), on the calling thread.
    pub fn load_state_blocking(&self, id: &str) -> Result<RenewalState, AcmeError> {
        Ok(self
            .read_json(&self.certificate_dir(id).join("state.json"))?
            .unwrap_or_default())
    }

    /// [`save_state`](Storage::save_state), on the calling thread.
    pub fn save_state_blocking(&self, id: &str, state: &RenewalState) -> Result<(), AcmeError> {
        self.write_json(&self.certificate_dir(id).join("state.json"), state)
    }
}

/// One file of a pair for [`write_pair`]: where, what, and its Unix mode.
#[derive(Debug, Clone, Copy)]
pub struct PairFile<'a> {
    path: &'a Path,
    contents: &'a [u8],
    mode: u32,
}

impl<'a> PairFile<'a> {
    /// `contents` for `path`, created with `mode` (ignored off Unix).
    pub fn new(path: &'a Path, contents: &'a [u8], mode: u32) -> Self {
        PairFile {
            path,
            contents,
            mode,
        }
    }
}

/// A temporary name beside `path`, unique per process and call.
fn temporary_beside(path: &Path) -> std::io::Result<PathBuf> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".pair{}-{seq}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Writes `contents` to a new file `path` with `mode` and fsyncs it.
fn write_synced(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn sync_parent(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Persists the renames; a file system that cannot fsync a directory
    // still has the data, so a failure here is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replaces a certificate key and its certificate as a pair, so that the
/// files on disk are the old pair or the new pair, never one of each that
/// stays: both are written in full to temporary files beside their targets
/// and fsynced before either is renamed into place, the key first (a
/// reader that sees the new certificate finds its key), and if the
/// certificate's rename fails the old key is put back.
///
/// Two files cannot change in one step: between the two renames (a few
/// microseconds) a reader can see the new key beside the old certificate.
/// A loader that checks that key and certificate match (as mailtls-core's
/// does) then keeps what it had and picks the pair up on its next reload.
/// A server that must never see that moment reads one combined file, as
/// the reference server's certificate directory does.
pub fn write_pair(key: PairFile<'_>, cert: PairFile<'_>) -> std::io::Result<()> {
    let key_tmp = temporary_beside(key.path)?;
    let cert_tmp = temporary_beside(cert.path)?;
    let cleanup = |e: std::io::Error| {
        let _ = std::fs::remove_file(&key_tmp);
        let _ = std::fs::remove_file(&cert_tmp);
        e
    };
    write_synced(&key_tmp, key.contents, key.mode).map_err(cleanup)?;
    write_synced(&cert_tmp, cert.contents, cert.mode).map_err(cleanup)?;
    // The old key, to put back if the certificate cannot follow.
    let old_key = match std::fs::read(key.path) {
        Ok(k) => Some(k),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(cleanup(e)),
    };
    std::fs::rename(&key_tmp, key.path).map_err(cleanup)?;
    if let Err(e) = std::fs::rename(&cert_tmp, cert.path) {
        let _ = std::fs::remove_file(&cert_tmp);
        let restored = match &old_key {
            Some(old) => write_atomic(key.path, old, key.mode),
            None => std::fs::remove_file(key.path),
        };
        sync_parent(key.path);
        return Err(match restored {
            Ok(()) => e,
            Err(r) => std::io::Error::new(
                e.kind(),
                format!(
                    "{e}; and putting the old key back at {} failed too: {r}",
                    key.path.display()
                ),
            ),
        });
    }
    sync_parent(key.path);
    sync_parent(cert.path);
    Ok(())
}

/// Runs `f` (file work) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    root: &Path,
    f: impl FnOnce() -> Result<T, AcmeError> + Send + 'static,
) -> Result<T, AcmeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AcmeError::Storage {
            path: root.display().to_string(),
            source: std::io::Error::other(format!("storage task failed: {e}")),
        })?
}

impl OrderJournal for FileStorage {
    fn load_pending<'a>(&'a self, names: &'a [String]) -> StorageFuture<'a, Option<PendingOrder>> {
        let (this, names) = (self.clone(), names.to_vec());
        Box::pin(blocking(&self.root, move || {
            this.load_pending_blocking(&names)
        }))
    }

    fn save_pending<'a>(&'a self, pending: &'a PendingOrder) -> StorageFuture<'a, ()> {
        let (this, pending) = (self.clone(), pending.clone());
        Box::pin(blocking(&self.root, move || {
            this.save_pending_blocking(&pending)
        }))
    }

    fn clear_pending<'a>(&'a self, names: &'a [String]) -> StorageFuture<'a, ()> {
        let (this, names) = (self.clone(), names.to_vec());
        Box::pin(blocking(&self.root, move || {
            this.clear_pending_blocking(&names)
        }))
    }
}

impl Storage for FileStorage {
    fn load_account<'a>(
        &'a self,
        directory_url: &'a str,
    ) -> StorageFuture<'a, Option<StoredAccount>> {
        let (this, url) = (self.clone(), directory_url.to_owned());
        Box::pin(blocking(&self.root, move || {
            this.load_account_blocking(&url)
        }))
    }

    fn save_account<'a>(
        &'a self,
        directory_url: &'a str,
        account: &'a StoredAccount,
    ) -> StorageFuture<'a, ()> {
        let (this, url, account) = (self.clone(), directory_url.to_owned(), account.clone());
        Box::pin(blocking(&self.root, move || {
            this.save_account_blocking(&url, &account)
        }))
    }

    fn load_certificate<'a>(&'a self, id: &'a str) -> StorageFuture<'a, Option<StoredCertificate>> {
        let (this, id) = (self.clone(), id.to_owned());
        Box::pin(blocking(&self.root, move || {
            this.load_certificate_blocking(&id)
        }))
    }

    fn save_certificate<'a>(
        &'a self,
        id: &'a str,
        cert: &'a StoredCertificate,
    ) -> StorageFuture<'a, ()> {
        let (this, id, cert) = (self.clone(), id.to_owned(), cert.clone());
        Box::pin(blocking(&self.root, move || {
            this.save_certificate_blocking(&id, &cert)
        }))
    }

    fn load_state<'a>(&'a self, id: &'a str) -> StorageFuture<'a, RenewalState> {
        let (this, id) = (self.clone(), id.to_owned());
        Box::pin(blocking(&self.root, move || this.load_state_blocking(&id)))
    }

    fn save_state<'a>(&'a self, id: &'a str, state: &'a RenewalState) -> StorageFuture<'a, ()> {
        let (this, id, state) = (self.clone(), id.to_owned(), state.clone());
        Box::pin(blocking(&self.root, move || {
            this.save_state_blocking(&id, &state)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Through the async trait, as the client uses it.
    #[tokio::test]
    async fn round_trips_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStorage::new(tmp.path().join("data")).unwrap();
        let dir_url = "https://acme.example/dir";
        assert_eq!(store.load_account(dir_url).await.unwrap(), None);
        let acct = StoredAccount::new("https://acme.example/acct/1", "KEY");
        store.save_account(dir_url, &acct).await.unwrap();
        assert_eq!(store.load_account(dir_url).await.unwrap(), Some(acct));
        assert_eq!(store.load_account("https://other/dir").await.unwrap(), None);

        let cert = StoredCertificate::new("CHAIN", "CERTKEY");
        store
            .save_certificate("*.example.com", &cert)
            .await
            .unwrap();
        assert_eq!(
            store.load_certificate("*.example.com").await.unwrap(),
            Some(cert)
        );
        let cdir = store.certificate_dir("*.example.com");
        assert!(cdir.ends_with("_wildcard.example.com"));
        assert_eq!(mode(&cdir.join("key.pem")), 0o600);
        assert_eq!(mode(&cdir.join("chain.pem")), 0o600);
        assert_eq!(mode(&cdir), 0o700);

        let mut state = RenewalState {
            failures: 2,
            ..RenewalState::default()
        };
        state.set_next_attempt(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(99));
        store.save_state("*.example.com", &state).await.unwrap();
        assert_eq!(store.load_state("*.example.com").await.unwrap(), state);

        let names = vec!["b.example".to_owned(), "a.example".to_owned()];
        let pending = PendingOrder {
            order_url: "https://acme.example/order/1".into(),
            key_pem: "K".into(),
            names: names.clone(),
            key_type: Some("ecdsa-p256".into()),
        };
        store.save_pending(&pending).await.unwrap();
        let reversed = vec!["a.example".to_owned(), "b.example".to_owned()];
        assert_eq!(store.load_pending(&reversed).await.unwrap(), Some(pending));
        store.clear_pending(&names).await.unwrap();
        assert_eq!(store.load_pending(&names).await.unwrap(), None);
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStorage::new(tmp.path().join("d")).unwrap();
        let dir = store.certificate_dir("x");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state.json"), "{not json").unwrap();
        let err = store.load_state_blocking("x").unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn a_pair_is_replaced_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, cert) = (tmp.path().join("k.pem"), tmp.path().join("c.pem"));
        write_pair(
            PairFile::new(&key, b"KEY1", 0o600),
            PairFile::new(&cert, b"CERT1", 0o644),
        )
        .unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"KEY1");
        assert_eq!(std::fs::read(&cert).unwrap(), b"CERT1");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        write_pair(
            PairFile::new(&key, b"KEY2", 0o600),
            PairFile::new(&cert, b"CERT2", 0o644),
        )
        .unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"KEY2");
        assert_eq!(std::fs::read(&cert).unwrap(), b"CERT2");

        // The certificate's rename fails (a non-empty directory is in the
        // way): the key written a moment before is put back.
        let blocked = tmp.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        let err = write_pair(
            PairFile::new(&key, b"KEY3", 0o600),
            PairFile::new(&blocked, b"CERT3", 0o644),
        )
        .unwrap_err();
        assert!(!err.to_string().is_empty());
        assert_eq!(std::fs::read(&key).unwrap(), b"KEY2");
        assert_eq!(mode(&key), 0o600);
        // With no old key, the new one is removed again.
        let fresh = tmp.path().join("fresh.pem");
        write_pair(
            PairFile::new(&fresh, b"KEY4", 0o600),
            PairFile::new(&blocked, b"CERT4", 0o644),
        )
        .unwrap_err();
        assert!(!fresh.exists());
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn safe_components_never_escape() {
        assert_eq!(safe_component("../etc"), "_.._etc");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("Mail.Example.COM"), "mail.example.com");
    }
}
