//! The gateway's own keys: users' and domains' certificates with their
//! private keys, kept as PEM pairs in a directory.
//!
//! Layout (the maker's `STEM.crt` / `STEM.key` pairs):
//!
//! ```text
//! DIR/users/alice@example.com+1a2b3c4d.crt   chain, leaf first (0644)
//! DIR/users/alice@example.com+1a2b3c4d.key   private key (0600)
//! DIR/domains/example.com+5e6f7a8b.crt       domain certificate
//! DIR/domains/example.com+5e6f7a8b.key
//! ```
//!
//! A user key serves the addresses its certificate names (the file name is
//! only a label); a domain key serves the domain its file name starts with
//! (up to `+`). Several keys per owner are kept, so mail encrypted to a
//! renewed-away certificate can still be read; signing picks the newest
//! usable one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use mailtls_core::{CertificateWithKey, DnsName, LoadError};

use super::address::Address;
use super::certificate::{CertificateError, Fingerprint, SmimeCertificate};
use super::keys::{KeyDirectory, KeyOwner, KeyRef};

/// Why the key store could not load or save a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// A directory or file could not be read, created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate/key pair did not load (names the file).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The certificate could not be inspected.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// A `.crt` file has no `.key` beside it, or the other way round.
    #[error("{path}: the other half of the pair ({missing}) is missing")]
    Unpaired {
        /// The file found.
        path: PathBuf,
        /// The file expected.
        missing: PathBuf,
    },
    /// A private key file others can read.
    #[error(
        "{path} has mode {mode:04o}; a private key must be readable by its owner only (chmod 600)"
    )]
    LooseKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A user certificate names no mail address.
    #[error("{path}: the certificate names no mail address, so it serves no user")]
    NoAddress {
        /// The certificate file, or the upload label.
        path: PathBuf,
    },
    /// A domain key's file name does not start with a domain.
    #[error("{path}: the file name does not start with a domain name")]
    BadDomainFileName {
        /// The file.
        path: PathBuf,
    },
    /// The key is already in the store.
    #[error("key {fingerprint} is already in the store")]
    Duplicate {
        /// The certificate's fingerprint.
        fingerprint: Fingerprint,
    },
    /// No key with this fingerprint.
    #[error("no key {fingerprint} in the store")]
    Unknown {
        /// The fingerprint asked for.
        fingerprint: Fingerprint,
    },
}

/// One of the gateway's keys.
#[derive(Clone)]
pub struct OwnKey {
    /// Whose key it is.
    pub owner: KeyOwner,
    /// The chain and private key, as loaded by mailtls-core.
    pub credentials: CertificateWithKey,
    /// The leaf certificate, inspected for S/MIME.
    pub certificate: SmimeCertificate,
    /// Where it is stored (the `.crt` file).
    pub path: PathBuf,
}

impl fmt::Debug for OwnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnKey")
            .field("owner", &self.owner)
            .field("certificate", &self.certificate)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl OwnKey {
    fn key_ref(&self, owner: KeyOwner) -> KeyRef {
        KeyRef {
            owner,
            certificate: self.certificate.clone(),
        }
    }
}

/// The gateway's own keys, loaded from and saved to a directory.
///
/// Nothing here is async, and the calls that touch the directory block on
/// file I/O: [`KeyStore::open`] (reads every pair),
/// [`KeyStore::add_user_key`] and [`KeyStore::add_domain_key`] (write and
/// fsync a pair) and [`KeyStore::remove`] (deletes one). Make them at
/// start-up or on a blocking thread (`tokio::task::spawn_blocking`), never
/// from an async task. Lookups ([`KeyStore::get`], [`KeyStore::list`], the
/// [`KeyDirectory`] methods) are served from memory and do not block.
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
    keys: BTreeMap<Fingerprint, OwnKey>,
    users: HashMap<Address, Vec<Fingerprint>>,
    domains: HashMap<DnsName, Vec<Fingerprint>>,
}

const USERS: &str = "users";
const DOMAINS: &str = "domains";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl KeyStore {
    /// Opens (creating with mode 0700 if missing) the key directory and loads
    /// every pair in it. Any broken pair, unpaired file or private key file
    /// others can read is an error naming the file: a gateway should not
    /// start with half its keys.
    pub fn open(dir: &Path) -> Result<Self, KeyStoreError> {
        for d in [dir.to_owned(), dir.join(USERS), dir.join(DOMAINS)] {
            mailtls_core::secret_file::ensure_private_dir(&d).map_err(io_err(&d))?;
        }
        let mut store = KeyStore {
            dir: dir.to_owned(),
            keys: BTreeMap::new(),
            users: HashMap::new(),
            domains: HashMap::new(),
        };
        for (sub, is_domain) in [(USERS, false), (DOMAINS, true)] {
            for (crt, key) in pairs(&dir.join(sub))? {
                check_key_mode(&key)?;
                let credentials = CertificateWithKey::from_files(&crt, &key)?;
                let owner = if is_domain {
                    Some(domain_of(&crt)?)
                } else {
                    None
                };
                store.insert(credentials, owner, crt)?;
            }
        }
        Ok(store)
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn insert(
        &mut self,
        credentials: CertificateWithKey,
        domain: Option<DnsName>,
        path: PathBuf,
    ) -> Result<Fingerprint, KeyStoreError> {
        let leaf = credentials
            .chain
            .first()
            .cloned()
            .ok_or_else(|| KeyStoreError::NoAddress { path: path.clone() })?;
        let certificate = SmimeCertificate::from_der(leaf, &path.display().to_string())?;
        let fingerprint = certificate.fingerprint();
        if self.keys.contains_key(&fingerprint) {
            return Err(KeyStoreError::Duplicate { fingerprint });
        }
        let owner = match domain {
            Some(d) => {
                self.domains.entry(d.clone()).or_default().push(fingerprint);
                KeyOwner::Domain(d)
            }
            None => {
                let first = certificate
                    .addresses()
                    .first()
                    .cloned()
                    .ok_or_else(|| KeyStoreError::NoAddress { path: path.clone() })?;
                for a in certificate.addresses() {
                    self.users.entry(a.clone()).or_default().push(fingerprint);
                }
                KeyOwner::User(first)
            }
        };
        self.keys.insert(
            fingerprint,
            OwnKey {
                owner,
                credentials,
                certificate,
                path,
            },
        );
        Ok(fingerprint)
    }

    fn write_pair(
        &self,
        sub: &str,
        stem: &str,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<PathBuf, KeyStoreError> {
        let dir = self.dir.join(sub);
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        // The key first, then the certificate; if the second write fails the
        // first is removed, so no half pair is left to fail the next start.
        mailtls_core::secret_file::write_atomic(&key, key_pem, 0o600).map_err(io_err(&key))?;
        if let Err(e) = mailtls_core::secret_file::write_atomic(&crt, cert_pem, 0o644) {
            let _ = std::fs::remove_file(&key);
            return Err(io_err(&crt)(e));
        }
        Ok(crt)
    }

    /// Adds a user's key from PEM (chain and key), writes it to the
    /// directory (key 0600) and returns its fingerprint.
    pub fn add_user_key(
        &mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
        label: &str,
    ) -> Result<Fingerprint, KeyStoreError> {
        let credentials = CertificateWithKey::from_pem(cert_pem, key_pem, label)?;
        let certificate = SmimeCertificate::from_der(
            credentials
                .chain
                .first()
                .cloned()
                .ok_or_else(|| KeyStoreError::NoAddress { path: label.into() })?,
            label,
        )?;
        let first = certificate
            .addresses()
            .first()
            .ok_or_else(|| KeyStoreError::NoAddress { path: label.into() })?;
        let fingerprint = certificate.fingerprint();
        if self.keys.contains_key(&fingerprint) {
            return Err(KeyStoreError::Duplicate { fingerprint });
        }
        let stem = format!("{first}+{}", &fingerprint.to_string()[..16]);
        let path = self.write_pair(USERS, &stem, cert_pem, key_pem)?;
        self.insert(credentials, None, path)
    }

    /// Adds a domain's key from PEM, writes it (key 0600) and returns its
    /// fingerprint.
    pub fn add_domain_key(
        &mut self,
        domain: &DnsName,
        cert_pem: &[u8],
        key_pem: &[u8],
        label: &str,
    ) -> Result<Fingerprint, KeyStoreError> {
        let credentials = CertificateWithKey::from_pem(cert_pem, key_pem, label)?;
        let leaf = credentials
            .chain
            .first()
            .cloned()
            .ok_or_else(|| KeyStoreError::NoAddress { path: label.into() })?;
        let fingerprint = SmimeCertificate::from_der(leaf, label)?.fingerprint();
        if self.keys.contains_key(&fingerprint) {
            return Err(KeyStoreError::Duplicate { fingerprint });
        }
        let stem = format!("{}+{}", domain.as_str(), &fingerprint.to_string()[..16]);
        let path = self.write_pair(DOMAINS, &stem, cert_pem, key_pem)?;
        self.insert(credentials, Some(domain.clone()), path)
    }

    /// Removes a key and its files.
    pub fn remove(&mut self, fingerprint: &Fingerprint) -> Result<OwnKey, KeyStoreError> {
        let key = self.keys.get(fingerprint).ok_or(KeyStoreError::Unknown {
            fingerprint: *fingerprint,
        })?;
        let key_path = key.path.with_extension("key");
        for p in [&key.path, &key_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p)(e)),
            }
        }
        let removed = self
            .keys
            .remove(fingerprint)
            .ok_or(KeyStoreError::Unknown {
                fingerprint: *fingerprint,
            })?;
        for list in self.users.values_mut().chain(self.domains.values_mut()) {
            list.retain(|f| f != fingerprint);
        }
        self.users.retain(|_, v| !v.is_empty());
        self.domains.retain(|_, v| !v.is_empty());
        Ok(removed)
    }

    /// Every key, in fingerprint order.
    pub fn list(&self) -> impl Iterator<Item = &OwnKey> {
        self.keys.values()
    }

    /// One key by fingerprint.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&OwnKey> {
        self.keys.get(fingerprint)
    }

    /// Every key whose certificate names `address`, newest first (to try
    /// when decrypting).
    pub fn keys_for_address(&self, address: &Address) -> Vec<&OwnKey> {
        self.newest_first(self.users.get(address))
    }

    /// Every key of `domain`, newest first.
    pub fn keys_for_domain(&self, domain: &DnsName) -> Vec<&OwnKey> {
        self.newest_first(self.domains.get(domain))
    }

    fn newest_first(&self, fps: Option<&Vec<Fingerprint>>) -> Vec<&OwnKey> {
        let mut v: Vec<&OwnKey> = fps
            .into_iter()
            .flatten()
            .filter_map(|f| self.keys.get(f))
            .collect();
        v.sort_by_key(|k| std::cmp::Reverse(k.certificate.info().not_before));
        v
    }

    /// The key to use: the newest that can sign now, else the newest.
    fn preferred(keys: Vec<&OwnKey>, now: SystemTime) -> Option<&OwnKey> {
        keys.iter()
            .find(|k| k.certificate.check_signing(now).is_ok())
            .or(keys.first())
            .copied()
    }
}

impl KeyDirectory for KeyStore {
    fn user_key(&self, address: &Address) -> Option<KeyRef> {
        Self::preferred(self.keys_for_address(address), SystemTime::now())
            .map(|k| k.key_ref(KeyOwner::User(address.clone())))
    }

    fn domain_key(&self, domain: &DnsName) -> Option<KeyRef> {
        Self::preferred(self.keys_for_domain(domain), SystemTime::now())
            .map(|k| k.key_ref(KeyOwner::Domain(domain.clone())))
    }
}

/// The `.crt`/`.key` pairs in `dir`, sorted; a half without the other is an
/// error. Hidden files (the atomic writer's temporaries) are skipped.
fn pairs(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, KeyStoreError> {
    let mut crts = Vec::new();
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden || !path.is_file() {
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => crts.push(path),
            Some("key") => keys.push(path),
            _ => {}
        }
    }
    crts.sort();
    for k in &keys {
        let c = k.with_extension("crt");
        if !crts.contains(&c) {
            return Err(KeyStoreError::Unpaired {
                path: k.clone(),
                missing: c,
            });
        }
    }
    crts.into_iter()
        .map(|c| {
            let k = c.with_extension("key");
            if keys.contains(&k) {
                Ok((c, k))
            } else {
                Err(KeyStoreError::Unpaired {
                    path: c,
                    missing: k,
                })
            }
        })
        .collect()
}

fn check_key_mode(path: &Path) -> Result<(), KeyStoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(io_err(path))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyStoreError::LooseKeyFile {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn domain_of(crt: &Path) -> Result<DnsName, KeyStoreError> {
    crt.file_stem()
        .and_then(|s| s.to_str())
        .map(|s| s.split_once('+').map_or(s, |(d, _)| d))
        .and_then(|d| DnsName::parse(d).ok())
        .ok_or_else(|| KeyStoreError::BadDomainFileName {
            path: crt.to_owned(),
        })
}
