//! The S/MIME gateway on the message path: after DATA, before a message is
//! spooled or queued, `prepare` gives the copy for local recipients
//! (decrypted when the gateway holds the recipient's key, verified, marked,
//! forged marks removed, the signer's certificate harvested) and the copy
//! for remote recipients (signed and/or encrypted as the gateway's rules
//! say, for mail from an authenticated submission or a trusted relay).
//!
//! The gateway itself (rules, partner store, key store, engine) is
//! [`mailtls_smime::gateway::Gateway`]; this module loads it from the
//! `[smime]` section, runs it off the async runtime and turns its refusals
//! into SMTP replies.
//!
//! Layout of the gateway directory (`smime.data_dir`, default
//! `<data_dir>/smime`):
//!
//! ```text
//! keys/users/ADDRESS+FP.crt|.key    the users' own keys (key 0600)
//! keys/domains/DOMAIN+FP.crt|.key   domain keys
//! partners.json                     partner certificates and approvals
//! ```

pub mod admin;
pub mod config;
mod fallback;
pub mod status;

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::SystemTime;

use mailtls_core::DnsName;
use mailtls_smime::Certificate;
use mailtls_smime::gateway::{
    Address, FileStorage, Gateway, Harvest, HarvestMode, IncomingRules, KeyStore, KeyStoreError,
    OutgoingRules, OutgoingSplitOutcome, PartnerStore, ProcessError, SenderAuth, StoreError,
};

use crate::config::Config;
use crate::requiretls_mark;
use crate::server::Shared;
use crate::spool::Envelope;

pub use config::SmimeSection;
pub use status::{OwnKeyStatus, PartnerStatus, PendingStatus, SmimeStatus};

/// Why the gateway could not start, or could not process a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmimePathError {
    /// The gateway directory could not be created.
    #[error("S/MIME gateway directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key store did not load (names the file).
    #[error("S/MIME key store {path}: {source}")]
    KeyStore {
        /// The key directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: KeyStoreError,
    },
    /// The partner store did not load or save.
    #[error("S/MIME partner store {path}: {source}")]
    PartnerStore {
        /// The snapshot file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The trust anchors file (config key `smime.trust_anchors_file`) could
    /// not be read or holds no certificate.
    #[error("config key smime.trust_anchors_file: {path}: {message}")]
    TrustAnchors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The gateway's rules refuse the message (an encryption policy that
    /// needs a certificate nobody has).
    #[error("{code} {status} {reason}")]
    Rejected {
        /// The SMTP reply code (451 or 554).
        code: u16,
        /// The enhanced status code, such as `5.7.5`.
        status: String,
        /// The reply text.
        reason: String,
    },
    /// Signing or encrypting failed (a key file the rules chose is unusable,
    /// say): the message is not sent unprotected.
    #[error("S/MIME processing: {0}")]
    Process(#[from] ProcessError),
    /// An administrative action could not be carried out (a bad upload,
    /// the admin socket, the server's answer).
    #[error("S/MIME administration: {0}")]
    Admin(String),
    /// A blocking task failed, or the gateway's lock was poisoned by an
    /// earlier panic.
    #[error("S/MIME gateway task: {0}")]
    Task(String),
}

impl SmimePathError {
    /// The SMTP reply line (without CRLF) for the client that sent the
    /// message: the rules' own code for a refusal, else a transient 451 so
    /// the client keeps the message and retries.
    pub fn smtp_reply(&self) -> String {
        match self {
            SmimePathError::Rejected {
                code,
                status,
                reason,
            } => format!("{code} {status} {}", one_line(reason)),
            _ => "451 4.3.0 S/MIME processing failed, try again later".to_owned(),
        }
    }
}

/// Keeps a reply on one line of printable text.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect()
}

/// The message for each side of delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// For the local recipients (to the spool), one copy per group of
    /// recipients that get the same bytes (an encrypted message is
    /// decrypted only for those whose key the gateway holds); empty when
    /// none is local. Together the copies name every local recipient once.
    pub for_local: Vec<LocalCopy>,
    /// For the remote recipients (to the outbound queue), one copy per
    /// group of recipients that get the same bytes (with encryption decided
    /// per recipient, those with a certificate get the encrypted copy);
    /// empty when none is remote.
    pub for_remote: Vec<RemoteCopy>,
    /// Remote recipients the gateway's rules left out (no certificate, and
    /// a `bounce` policy), with the status and reason for a DSN.
    pub bounced: Option<Bounced>,
}

/// One outbound queue copy: the recipients (as given in RCPT TO) and their
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteCopy {
    /// The envelope recipients of this copy.
    pub rcpt_to: Vec<String>,
    /// The message.
    pub message: Vec<u8>,
}

/// Recipients not sent to, for a DSN to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bounced {
    /// The recipients, as given in RCPT TO.
    pub rcpt_to: Vec<String>,
    /// The enhanced status code (`5.7.5`).
    pub status: String,
    /// Why, for the sender.
    pub reason: String,
    /// The message as the client sent it, to return in the DSN.
    pub original: Vec<u8>,
}

/// Who wrote a message: the outgoing S/MIME rules apply to mail from SMTP
/// clients only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An SMTP client (submission, a trusted relay, another MTA).
    Smtp,
    /// The server itself (`submit_internal`: delivery status notifications,
    /// ACME administrator mail, TLS reports). Its remote copy skips the
    /// outgoing rules: a `reject` or `always` encryption policy for the
    /// recipient's domain would refuse it, and a refused bounce or report
    /// has no sender to go back to, so it would be lost (and the server
    /// holds no key to sign it as its null or postmaster sender anyway).
    Server,
}

/// One spool copy: the recipients (as given in RCPT TO) and their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalCopy {
    /// The envelope recipients of this copy.
    pub rcpt_to: Vec<String>,
    /// The message.
    pub message: Vec<u8>,
}

/// The gateway, loaded from `[smime]`, shared by every SMTP session.
#[derive(Debug)]
pub struct SmimePath {
    // Incoming processing harvests into the partner store (a write);
    // outgoing processing only reads. One lock for the gateway and the
    // logins' addresses, so a reload swaps both at once.
    loaded: RwLock<Loaded>,
    dir: PathBuf,
    local_domains: Vec<DnsName>,
}

/// What a (re)load of `[smime]` and the gateway directory gives.
#[derive(Debug)]
pub(crate) struct Loaded {
    gateway: Gateway,
    /// `smime.send_as`, see [`SmimeSection::may_send_as`].
    section: SmimeSection,
}

impl SmimePath {
    /// Loads the gateway for a configuration: `None` when `[smime]` is not
    /// enabled. Blocking (reads key files); call it off the runtime.
    pub fn from_config(config: &Config) -> Result<Option<SmimePath>, SmimePathError> {
        if !config.smime.enabled {
            return Ok(None);
        }
        SmimePath::open(
            &config.smime,
            &config.server.data_dir,
            config.local_domains(),
        )
        .map(Some)
    }

    /// Loads the gateway from `section` (its directory relative to
    /// `data_dir` unless configured), serving `local_domains`. Blocking.
    pub fn open(
        section: &SmimeSection,
        data_dir: &Path,
        local_domains: Vec<DnsName>,
    ) -> Result<SmimePath, SmimePathError> {
        let dir = section.dir_in(data_dir);
        let gateway = load_gateway(section, &dir)?;
        Ok(SmimePath {
            loaded: RwLock::new(Loaded {
                gateway,
                section: section.clone(),
            }),
            dir,
            local_domains,
        })
    }

    /// The gateway directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Builds the gateway of `section` afresh from this gateway's
    /// directory (key store and partner store re-read from disk, rules and
    /// trust anchors from `section`) without putting it in place: a reload
    /// stages it first so that nothing changes if another part of the
    /// reload fails. `section.data_dir` and `section.enabled` are not
    /// looked at (the directory is fixed at start). Blocking.
    pub(crate) fn stage(&self, section: &SmimeSection) -> Result<Loaded, SmimePathError> {
        Ok(Loaded {
            gateway: load_gateway(section, &self.dir)?,
            section: section.clone(),
        })
    }

    /// The gateway's write lock, for a reload: held while the staged
    /// gateway is built from disk and until it is put in place, so no
    /// harvest lands in the old partner store in between (and is lost).
    pub(crate) fn lock_for_reload(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, Loaded>, SmimePathError> {
        self.write()
    }

    /// The partner store, pending approvals and own keys, for the status
    /// page. Takes the gateway's read lock briefly.
    pub fn status(&self) -> SmimeStatus {
        match self.loaded.read() {
            Ok(l) => SmimeStatus::of(&l.gateway, &self.dir, SystemTime::now()),
            // A poisoned lock still holds consistent stores (every store
            // change is committed before it becomes visible).
            Err(poisoned) => {
                SmimeStatus::of(&poisoned.into_inner().gateway, &self.dir, SystemTime::now())
            }
        }
    }

    /// Whether `ip` is in a network listed in `smime.trusted_relays`: such
    /// an internal server may relay without login, and its mail is signed
    /// as far as its allowance goes.
    pub fn is_trusted_relay(&self, ip: IpAddr) -> bool {
        self.loaded.read().is_ok_and(|l| {
            l.gateway
                .outgoing
                .trusted_relays
                .iter()
                .any(|r| r.network.contains(&ip))
        })
    }

    fn is_local(&self, address: &str) -> bool {
        is_local(address, &self.local_domains)
    }

    /// How the sender reached the server, as the outgoing rules see it;
    /// `None`: the message is not outgoing mail of ours (nothing is signed
    /// or encrypted for it).
    ///
    /// A login signs only as the addresses `smime.send_as` gives it (see
    /// [`SmimeSection::may_send_as`]), so one user cannot get mail signed
    /// as another. A session authenticated only by a client certificate
    /// has no login and signs as nobody.
    fn sender_auth(envelope: &Envelope, loaded: &Loaded) -> Option<SenderAuth> {
        if envelope.authenticated {
            return Some(match &envelope.login {
                Some(login) => SenderAuth::Authenticated {
                    login: login.clone(),
                    may_send_as: loaded.section.may_send_as(login),
                },
                None => SenderAuth::Authenticated {
                    login: "client certificate".to_owned(),
                    may_send_as: Vec::new(),
                },
            });
        }
        // Not through `is_trusted_relay`: the caller holds the read lock
        // already, and a second read may deadlock behind a waiting writer.
        let ip: IpAddr = envelope.peer.ip();
        loaded
            .gateway
            .outgoing
            .trusted_relays
            .iter()
            .any(|r| r.network.contains(&ip))
            .then_some(SenderAuth::Relay { ip })
    }

    /// Processes one message (blocking): see [`prepare`]. With `outbound`
    /// off every recipient is served from the spool, so counts as local.
    fn prepare_blocking(
        &self,
        envelope: &Envelope,
        body: &[u8],
        outbound: bool,
        origin: Origin,
        now: SystemTime,
    ) -> Result<Prepared, SmimePathError> {
        // The REQUIRETLS marker is the server's envelope note, not part of
        // the message: it must survive the gateway (whose header prefix may
        // match it) and stay outside any signature or encryption.
        let bare = requiretls_mark::remove_marker(body);
        let requiretls = bare.len() != body.len();
        let (local, remote): (Vec<&String>, Vec<&String>) = envelope
            .rcpt_to
            .iter()
            .partition(|r| !outbound || self.is_local(r));
        let sender = (!envelope.mail_from.is_empty())
            .then(|| Address::parse(&envelope.mail_from).ok())
            .flatten();
        let as_it_came = |rcpts: &[&String]| {
            vec![RemoteCopy {
                rcpt_to: rcpts.iter().map(|r| (*r).clone()).collect(),
                message: body.to_vec(),
            }]
        };
        let mut bounced = None;
        let for_remote = if remote.is_empty() {
            Vec::new()
        } else if origin == Origin::Server {
            // See `Origin::Server`: server-written mail leaves as written.
            as_it_came(&remote)
        } else {
            let l = self.read()?;
            match Self::sender_auth(envelope, &l) {
                Some(auth) => {
                    let parsed: Vec<(&String, Option<Address>)> = remote
                        .iter()
                        .map(|r| (*r, Address::parse(r).ok()))
                        .collect();
                    let gw_envelope = mailtls_smime::gateway::Envelope {
                        sender: sender.clone(),
                        recipients: parsed.iter().filter_map(|(_, a)| a.clone()).collect(),
                    };
                    match l
                        .gateway
                        .process_outgoing_split(&bare, &gw_envelope, auth, now)?
                    {
                        OutgoingSplitOutcome::Deliver { copies, bounced: b } => {
                            let spelled = |set: &[Address]| -> Vec<String> {
                                parsed
                                    .iter()
                                    .filter(|(_, a)| a.as_ref().is_some_and(|a| set.contains(a)))
                                    .map(|(r, _)| (*r).clone())
                                    .collect()
                            };
                            let mut out = Vec::new();
                            for c in copies {
                                tracing::info!(
                                    from = %envelope.mail_from,
                                    recipients = c.recipients.len(),
                                    signed = ?c.summary.signed.as_ref().map(ToString::to_string),
                                    encrypted = c.summary.encrypted.is_ok(),
                                    "S/MIME outgoing"
                                );
                                out.push(RemoteCopy {
                                    rcpt_to: spelled(&c.recipients),
                                    message: requiretls_mark::mark(&c.message, requiretls),
                                });
                            }
                            if let Some(r) = b {
                                tracing::info!(status = %r.status, reason = %r.reason, "S/MIME policy bounced recipients");
                                bounced = Some(Bounced {
                                    rcpt_to: spelled(&r.recipients),
                                    status: r.status.to_string(),
                                    reason: r.reason,
                                    original: body.to_vec(),
                                });
                            }
                            // A recipient the gateway cannot name (no
                            // address it can parse) joins a copy that is
                            // not encrypted, or gets the message as it came.
                            let unnamed: Vec<String> = parsed
                                .iter()
                                .filter(|(_, a)| a.is_none())
                                .map(|(r, _)| (*r).clone())
                                .collect();
                            if !unnamed.is_empty() {
                                match out.iter_mut().rev().find(|c| !is_encrypted(&c.message)) {
                                    Some(c) => c.rcpt_to.extend(unnamed),
                                    None => out.push(RemoteCopy {
                                        rcpt_to: unnamed,
                                        message: body.to_vec(),
                                    }),
                                }
                            }
                            out
                        }
                        OutgoingSplitOutcome::Reject(r) => {
                            let code = r.status.reply_code();
                            tracing::info!(%code, status = %r.status, reason = %r.reason, "S/MIME policy refused a message");
                            return Err(SmimePathError::Rejected {
                                code,
                                status: r.status.to_string(),
                                reason: r.reason,
                            });
                        }
                    }
                }
                None => as_it_came(&remote),
            }
        };
        let for_local = if local.is_empty() {
            Vec::new()
        } else {
            let parsed: Vec<(&String, Option<Address>)> =
                local.iter().map(|r| (*r, Address::parse(r).ok())).collect();
            let gw_envelope = mailtls_smime::gateway::Envelope {
                sender,
                recipients: parsed.iter().filter_map(|(_, a)| a.clone()).collect(),
            };
            // Processing is CPU work under the read lock (many messages at
            // once); only the harvest it offers takes the write lock.
            let l = self.read()?;
            let copies = if gw_envelope.recipients.is_empty() {
                Ok(Vec::new())
            } else {
                l.gateway.process_incoming_split(&bare, &gw_envelope, now)
            };
            let mut out: Vec<(Vec<String>, Vec<u8>, bool)> = Vec::new();
            let mut offers: Vec<Harvest> = Vec::new();
            match copies {
                Ok(copies) => {
                    for c in copies {
                        let s = &c.outcome.summary;
                        tracing::info!(
                            recipients = c.recipients.len(),
                            decrypted = s.result.decrypted,
                            signature = ?s.result.signature,
                            harvest_offered = c.outcome.harvest.is_some(),
                            "S/MIME incoming"
                        );
                        if let Some(offer) = c.outcome.harvest.clone() {
                            offers.push(offer);
                        }
                        // Back to the RCPT TO spelling of each recipient.
                        let rcpts = parsed
                            .iter()
                            .filter(|(_, a)| a.as_ref().is_some_and(|a| c.recipients.contains(a)))
                            .map(|(r, _)| (*r).clone())
                            .collect();
                        out.push((rcpts, c.outcome.message, s.result.decrypted));
                    }
                }
                // Mail the engine cannot read (broken CMS) comes back
                // from the gateway marked as failed. What is left here is
                // the gateway itself failing (a key file it cannot use):
                // the message is still delivered, as it came, so nothing
                // is lost; forged marks and status headers are removed.
                Err(e) => {
                    tracing::warn!(error = %e, "S/MIME incoming processing failed; delivering as received");
                }
            }
            // Whoever no copy names (the engine failed, or a bare
            // `postmaster` the gateway cannot name) gets the message as it
            // came: a copy that was not decrypted, else forged marks removed.
            let named: Vec<&String> = out.iter().flat_map(|(r, _, _)| r).collect();
            let rest: Vec<String> = local
                .iter()
                .filter(|r| !named.contains(r))
                .map(|r| (*r).clone())
                .collect();
            if !rest.is_empty() {
                match out.iter_mut().find(|(_, _, decrypted)| !decrypted) {
                    Some((rcpts, _, _)) => {
                        rcpts.extend(rest);
                        rcpts.sort_by_key(|r| local.iter().position(|l| l == &r));
                    }
                    None => out.push((
                        rest,
                        fallback::strip_forged(&bare, &l.gateway.incoming),
                        false,
                    )),
                }
            }
            drop(l);
            if !offers.is_empty() {
                self.harvest(offers, now)?;
            }
            out.into_iter()
                .map(|(rcpt_to, message, _)| LocalCopy {
                    rcpt_to,
                    message: requiretls_mark::mark(&message, requiretls),
                })
                .collect()
        };
        Ok(Prepared {
            for_local,
            for_remote,
            bounced,
        })
    }

    /// Hands the harvests incoming mail offered to the partner store
    /// (saved before they show). Blocking: runs on the message's blocking
    /// thread, under the write lock so a reload cannot lose them.
    fn harvest(&self, offers: Vec<Harvest>, now: SystemTime) -> Result<(), SmimePathError> {
        let mut l = self.write()?;
        for offer in offers {
            let fingerprint = offer.certificate.fingerprint();
            match block_on(l.gateway.harvest(offer, now)) {
                Ok(outcome) => {
                    tracing::info!(%fingerprint, ?outcome, "S/MIME harvest");
                }
                // The message itself is fine: it is delivered, and the
                // certificate comes again with the sender's next signature.
                Err(e) => {
                    tracing::warn!(%fingerprint, error = %e, "S/MIME harvest not saved");
                }
            }
        }
        Ok(())
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Loaded>, SmimePathError> {
        self.loaded
            .read()
            .map_err(|_| SmimePathError::Task("the gateway lock is poisoned".into()))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Loaded>, SmimePathError> {
        self.loaded
            .write()
            .map_err(|_| SmimePathError::Task("the gateway lock is poisoned".into()))
    }
}

/// Whether the gateway encrypted a copy (its top-level Content-Type is
/// enveloped S/MIME); only for choosing a copy for recipients it could not
/// name, which must never get another recipient's encrypted copy.
fn is_encrypted(message: &[u8]) -> bool {
    let head = crate::outbound::dsn::header_section(message);
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.contains("application/pkcs7-mime")
        && (text.contains("enveloped-data") || text.contains("authenveloped-data"))
}

/// Whether a recipient is delivered here (the same test as the SMTP
/// listener's relay decision).
fn is_local(address: &str, local_domains: &[DnsName]) -> bool {
    match address.rsplit_once('@') {
        // RFC 5321 §4.5.1: "postmaster" without a domain is always local.
        None => address.eq_ignore_ascii_case("postmaster"),
        Some((_, domain)) => DnsName::parse(domain).is_ok_and(|d| local_domains.contains(&d)),
    }
}

/// Opens the gateway directory `dir` (created if missing) and builds the
/// gateway of `section`: key store, partner store, rules, trust anchors.
/// Blocking.
fn load_gateway(section: &SmimeSection, dir: &Path) -> Result<Gateway, SmimePathError> {
    let dir = dir.to_owned();
    mailtls_core::secret_file::ensure_private_dir(&dir).map_err(|source| SmimePathError::Dir {
        path: dir.clone(),
        source,
    })?;
    let keys_dir = dir.join("keys");
    let keys = KeyStore::open(&keys_dir).map_err(|source| SmimePathError::KeyStore {
        path: keys_dir.clone(),
        source,
    })?;
    let partners_file = dir.join("partners.json");
    let storage =
        FileStorage::in_dir(&dir, "partners.json").map_err(|e| SmimePathError::PartnerStore {
            path: partners_file.clone(),
            source: StoreError::from(e),
        })?;
    let mode = if section.approval_queue {
        HarvestMode::ManualApproval
    } else {
        HarvestMode::Automatic
    };
    let partners = block_on(PartnerStore::open(Box::new(storage), mode)).map_err(|source| {
        SmimePathError::PartnerStore {
            path: partners_file,
            source,
        }
    })?;
    let trust_anchors = match &section.trust_anchors_file {
        Some(path) => load_anchors(path)?,
        None => Vec::new(),
    };
    if trust_anchors.is_empty() {
        tracing::warn!("smime.trust_anchors_file is not set: incoming signatures cannot verify");
    }
    let gateway = Gateway {
        keys,
        partners,
        outgoing: outgoing_rules(section),
        incoming: IncomingRules::default()
            .with_harvest(section.harvest)
            .with_marks(section.marks.clone())
            .with_headers(section.status_headers.clone())
            .with_weak_signatures(section.weak_signatures),
        trust_anchors,
    };
    tracing::info!(
        dir = %dir.display(),
        keys = gateway.keys.list().count(),
        partners = gateway.partners.list().count(),
        "S/MIME gateway loaded"
    );
    Ok(gateway)
}

fn outgoing_rules(section: &SmimeSection) -> OutgoingRules {
    let mut rules = OutgoingRules::default()
        .with_default_policy(section.default_policy)
        .with_encrypt_to_sender(section.encrypt_to_sender)
        .with_scope(section.encryption_scope)
        .with_rsa_pss(section.rsa_pss);
    for relay in &section.trusted_relays {
        rules = rules.with_trusted_relay(relay.clone());
    }
    for recipients in &section.domain_signing {
        rules = rules.with_domain_signing(recipients.clone());
    }
    for (domain, policy) in &section.policies {
        rules = rules.with_policy(domain.clone(), *policy);
    }
    rules
}

/// Wakes the thread parked in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives one of the partner store's async calls to completion from the
/// blocking code of this module (its callers are on blocking threads, or a
/// command-line listing without a runtime). The store's file storage does
/// its own file work on the runtime's blocking pool when there is one, so
/// parking this thread until it is woken is all that is needed; no second
/// runtime is started.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // A spurious unpark only polls once more.
            Poll::Pending => std::thread::park(),
        }
    }
}

fn load_anchors(path: &Path) -> Result<Vec<Certificate>, SmimePathError> {
    let err = |message: String| SmimePathError::TrustAnchors {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = Certificate::from_pem(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The copies of a message for local and remote recipients: unchanged
/// when no gateway is configured, else processed by the gateway (blocking
/// crypto off the runtime). A refusal by the gateway's rules is an error
/// whose [`SmimePathError::smtp_reply`] goes back to the client.
pub(crate) async fn prepare(
    shared: &Shared,
    envelope: &Envelope,
    body: Vec<u8>,
    origin: Origin,
) -> Result<Prepared, SmimePathError> {
    // With outbound delivery off every copy goes to the spool (see
    // accept.rs): every recipient counts as local then.
    let outbound = shared.outbound.is_enabled();
    let Some(smime) = shared.smime.clone() else {
        let (local, remote): (Vec<String>, Vec<String>) = envelope
            .rcpt_to
            .iter()
            .cloned()
            .partition(|r| !outbound || is_local(r, &shared.local_domains));
        let for_local = if local.is_empty() {
            Vec::new()
        } else {
            vec![LocalCopy {
                rcpt_to: local,
                message: body.clone(),
            }]
        };
        let for_remote = if remote.is_empty() {
            Vec::new()
        } else {
            vec![RemoteCopy {
                rcpt_to: remote,
                message: body,
            }]
        };
        return Ok(Prepared {
            for_local,
            for_remote,
            bounced: None,
        });
    };
    let envelope = envelope.clone();
    tokio::task::spawn_blocking(move || {
        smime.prepare_blocking(&envelope, &body, outbound, origin, SystemTime::now())
    })
    .await
    .map_err(|e| SmimePathError::Task(e.to_string()))?
}

/// The partner store, pending approvals and own keys of the gateway a
/// configuration names, read from its directory without starting a server
/// (for a `mailtls-server smime` listing). Works whether or not
/// `smime.enabled` is set; a missing gateway directory is an error, not
/// created.
pub fn list(config: &Config) -> Result<SmimeStatus, SmimePathError> {
    Ok(open_existing(config)?.status())
}

/// The gateway a configuration names, opened from its directory without
/// starting a server; a missing directory is an error (a listing or an
/// administrative command must not create a gateway where there is none).
/// Blocking.
pub(crate) fn open_existing(config: &Config) -> Result<SmimePath, SmimePathError> {
    let dir = config.smime.dir_in(&config.server.data_dir);
    if !dir.is_dir() {
        return Err(SmimePathError::Dir {
            path: dir,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no S/MIME gateway directory (set smime.enabled and start the server once)",
            ),
        });
    }
    SmimePath::open(
        &config.smime,
        &config.server.data_dir,
        config.local_domains(),
    )
}

#[cfg(test)]
#[path = "../../../mailtls-smime/tests/gateway_common/mod.rs"]
mod test_certs;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::test_certs::{Spec, TestCa};
    use super::*;

    fn section() -> SmimeSection {
        let mut s = Config::embedded().unwrap().smime;
        s.enabled = true;
        s
    }

    /// A gateway in `dir` holding the key of sender@example.test.
    fn gateway(dir: &Path) -> SmimePath {
        gateway_with(dir, &section())
    }

    fn gateway_with(dir: &Path, section: &SmimeSection) -> SmimePath {
        let ca = TestCa::new();
        let sender = ca.issue(&Spec::email(&["sender@example.test"]));
        let smime = dir.join("smime");
        let mut keys = KeyStore::open(&smime.join("keys")).unwrap();
        keys.add_user_key(sender.pem.as_bytes(), sender.key_pem.as_bytes(), "t")
            .unwrap();
        let local = vec![DnsName::parse("example.test").unwrap()];
        SmimePath::open(section, dir, local).unwrap()
    }

    fn signed(gw: &SmimePath, login: Option<&str>) -> bool {
        let mut e = envelope(&["x@remote.example"], true);
        e.login = login.map(str::to_owned);
        let p = gw
            .prepare_blocking(&e, MESSAGE, true, Origin::Smtp, SystemTime::now())
            .unwrap();
        String::from_utf8_lossy(&remote(&p)).contains("multipart/signed")
    }

    #[test]
    fn a_login_signs_only_as_its_own_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = section();
        s.send_as.insert(
            "test".into(),
            vec![Address::parse("sender@example.test").unwrap()],
        );
        s.send_as.insert(
            "mallory".into(),
            vec![Address::parse("mallory@example.test").unwrap()],
        );
        let gw = gateway_with(dir.path(), &s);
        // The key's owner, by login address or by send_as.
        assert!(signed(&gw, Some("sender@example.test")));
        assert!(signed(&gw, Some("test")));
        // Another user of the same server may not sign as sender@.
        assert!(!signed(&gw, Some("bob@example.test")));
        assert!(!signed(&gw, Some("mallory")));
        // A login that is no address and not listed signs as nobody; so
        // does a client certificate without login.
        assert!(!signed(&gw, Some("guest")));
        assert!(!signed(&gw, None));
    }

    #[test]
    fn server_written_mail_skips_the_reject_policy() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = section();
        s.default_policy = mailtls_smime::gateway::EncryptionPolicy::AlwaysOrReject;
        let gw = gateway_with(dir.path(), &s);
        let e = envelope(&["x@remote.example"], true);
        let refused = gw
            .prepare_blocking(&e, MESSAGE, true, Origin::Smtp, SystemTime::now())
            .unwrap_err();
        assert!(refused.smtp_reply().starts_with("554 5.7.5"), "{refused}");
        let p = gw
            .prepare_blocking(&e, MESSAGE, true, Origin::Server, SystemTime::now())
            .unwrap();
        assert_eq!(remote(&p), MESSAGE);
    }

    /// The one remote copy's bytes.
    fn remote(p: &Prepared) -> Vec<u8> {
        assert_eq!(p.for_remote.len(), 1, "{:?}", p.for_remote);
        p.for_remote[0].message.clone()
    }

    fn envelope(rcpts: &[&str], authenticated: bool) -> Envelope {
        Envelope {
            mail_from: "sender@example.test".into(),
            rcpt_to: rcpts.iter().map(|r| (*r).to_owned()).collect(),
            helo: "client.example".into(),
            esmtp: true,
            peer: "192.0.2.1:4000".parse().unwrap(),
            tls: None,
            authenticated,
            login: authenticated.then(|| "sender@example.test".to_owned()),
        }
    }

    const MESSAGE: &[u8] = b"From: sender@example.test\r\nTo: x@remote.example\r\n\
        Subject: hello\r\n\r\nHello there.\r\n";

    #[test]
    fn the_requiretls_marker_stays_outside_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let gw = gateway(dir.path());
        let body = requiretls_mark::mark(MESSAGE, true);
        let p = gw
            .prepare_blocking(
                &envelope(&["x@remote.example"], true),
                &body,
                true,
                Origin::Smtp,
                SystemTime::now(),
            )
            .unwrap();
        assert!(p.for_local.is_empty());
        let out = String::from_utf8(remote(&p)).unwrap();
        assert!(out.starts_with("X-Mailtls-Requiretls:"), "{out}");
        assert_eq!(out.matches("X-Mailtls-Requiretls").count(), 1, "{out}");
        assert!(out.contains("multipart/signed"), "{out}");
    }

    #[test]
    fn with_outbound_off_every_recipient_is_local() {
        let dir = tempfile::tempdir().unwrap();
        let gw = gateway(dir.path());
        let body = requiretls_mark::mark(MESSAGE, true);
        let p = gw
            .prepare_blocking(
                &envelope(&["x@remote.example"], true),
                &body,
                false,
                Origin::Smtp,
                SystemTime::now(),
            )
            .unwrap();
        assert!(p.for_remote.is_empty());
        assert_eq!(p.for_local.len(), 1);
        assert_eq!(p.for_local[0].rcpt_to, ["x@remote.example"]);
        let out = String::from_utf8(p.for_local[0].message.clone()).unwrap();
        assert!(!out.contains("multipart/signed"), "{out}");
        assert!(out.starts_with("X-Mailtls-Requiretls:"), "{out}");
        assert!(out.contains("Hello there."));
    }

    #[test]
    fn anonymous_mail_to_both_sides_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let gw = gateway(dir.path());
        let p = gw
            .prepare_blocking(
                &envelope(&["bob@example.test", "x@remote.example"], false),
                MESSAGE,
                true,
                Origin::Smtp,
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(remote(&p), MESSAGE);
        assert_eq!(p.for_local.len(), 1);
        let local = String::from_utf8(p.for_local[0].message.clone()).unwrap();
        assert!(local.contains("Subject: hello\r\n"), "{local}");
        assert!(!gw.is_trusted_relay("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn an_authenticated_session_signs_only_local_senders() {
        let dir = tempfile::tempdir().unwrap();
        let gw = gateway(dir.path());
        let mut e = envelope(&["x@remote.example"], true);
        e.mail_from = "someone@elsewhere.example".into();
        let p = gw
            .prepare_blocking(&e, MESSAGE, true, Origin::Smtp, SystemTime::now())
            .unwrap();
        assert!(!String::from_utf8_lossy(&remote(&p)).contains("multipart/signed"));
    }

    #[test]
    fn replies_carry_the_rules_code_or_a_transient_failure() {
        let r = SmimePathError::Rejected {
            code: 554,
            status: "5.7.5".into(),
            reason: "no certificate\r\nfor x".into(),
        };
        assert_eq!(r.smtp_reply(), "554 5.7.5 no certificate  for x");
        let t = SmimePathError::Task("boom".into());
        assert!(t.smtp_reply().starts_with("451 4.3.0 "));
    }

    #[test]
    fn a_missing_anchors_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = section();
        s.trust_anchors_file = Some(dir.path().join("nope.pem"));
        let e = SmimePath::open(&s, dir.path(), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("smime.trust_anchors_file"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "not pem").unwrap();
        s.trust_anchors_file = Some(dir.path().join("empty.pem"));
        let e = SmimePath::open(&s, dir.path(), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("smime.trust_anchors_file"), "{e}");
    }
}
