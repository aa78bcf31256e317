//! The gateway at work: the rules of this module's siblings applied to
//! message bytes with the engine (sign, encrypt, open, verify), the partner
//! store fed from verified signatures, and the result marked.

mod headers;

use std::time::SystemTime;

use mailtls_core::DnsName;

use super::address::Address;
use super::certificate::{Fingerprint, SmimeCertificate};
use super::incoming::{
    DecryptDecision, IncomingMessage, IncomingRules, SecurityResult, SignatureStatus,
};
use super::key_store::{KeyStore, OwnKey};
use super::keys::{KeyOwner, KeyRef};
use super::outgoing::{
    EncryptDecision, NotEncrypted, NotSigned, OutgoingDecision, OutgoingMessage, OutgoingRules,
    Rejection, SenderAuth, SignDecision,
};
use super::partner_store::{Binding, Harvest, HarvestOutcome, PartnerStore, StoreError};
use crate::algorithms::EC_PUBLIC_KEY;
use crate::verify::VerifyReport;
use crate::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, OpenedLayer, PrivateKey,
    Signer, SmimeCapabilities, Verifier,
};

/// The SMTP envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM; `None` for the null reverse path.
    pub sender: Option<Address>,
    /// RCPT TO.
    pub recipients: Vec<Address>,
}

/// Why processing failed (the message itself is not at fault for a
/// rejection: that is [`OutgoingOutcome::Reject`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The engine failed to sign, encrypt or read the message.
    #[error("S/MIME {stage}: {source}")]
    Engine {
        /// What was being done.
        stage: &'static str,
        /// The engine's error.
        source: crate::Error,
    },
    /// The rules chose a key the key store no longer holds.
    #[error("the key {fingerprint} chosen by the rules is not in the key store")]
    KeyGone {
        /// The key's certificate fingerprint.
        fingerprint: Fingerprint,
    },
    /// The partner store could not save a harvested certificate.
    #[error("partner store: {0}")]
    Store(#[from] StoreError),
}

fn engine(stage: &'static str) -> impl FnOnce(crate::Error) -> ProcessError {
    move |source| ProcessError::Engine { stage, source }
}

/// What was done to an outgoing message.
#[derive(Debug, Clone)]
pub struct OutgoingSummary {
    /// Signed with the key of this certificate, or why not.
    pub signed: Result<Fingerprint, NotSigned>,
    /// Encrypted with this algorithm to these certificates (recipients,
    /// then the sender's copy), or why not.
    pub encrypted: Result<(ContentEncryption, Vec<Fingerprint>), NotEncrypted>,
}

/// The result of [`Gateway::process_outgoing`].
#[derive(Debug, Clone)]
pub enum OutgoingOutcome {
    /// Deliver these bytes.
    Deliver {
        /// The message as it leaves the gateway.
        message: Vec<u8>,
        /// What was done.
        summary: OutgoingSummary,
    },
    /// Refuse the message with this status.
    Reject(Rejection),
}

/// What was done to an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSummary {
    /// Decrypted, and signature status, as marked.
    pub result: SecurityResult,
    /// The decryption decision (a [`DecryptDecision::Split`] is not
    /// decrypted: the caller must deliver per recipient group).
    pub decrypt: DecryptDecision,
    /// The encrypted message named none of the keys tried.
    pub not_for_our_keys: bool,
    /// What harvesting the signer's certificate did, if it was tried.
    pub harvest: Option<HarvestOutcome>,
}

/// The result of [`Gateway::process_incoming`].
#[derive(Debug, Clone)]
pub struct IncomingOutcome {
    /// The message to deliver: decrypted and opened when the gateway
    /// decrypted it, else as it came; forged marks and status headers gone,
    /// the gateway's own added.
    pub message: Vec<u8>,
    /// What was done.
    pub summary: IncomingSummary,
    /// The signature layer's report, if the message was signed.
    pub report: Option<VerifyReport>,
}

/// One gateway: its own keys, its partners, its rules and the trust anchors
/// incoming signatures are verified against.
#[derive(Debug)]
pub struct Gateway {
    /// The gateway's own user and domain keys.
    pub keys: KeyStore,
    /// Partner certificates.
    pub partners: PartnerStore,
    /// Rules for mail leaving.
    pub outgoing: OutgoingRules,
    /// Rules for mail arriving.
    pub incoming: IncomingRules,
    /// CAs partner signatures must chain to.
    pub trust_anchors: Vec<Certificate>,
}

impl Gateway {
    /// Processes a message leaving through the gateway: the Subject marks
    /// and status headers of a quoted reply are removed, then the message is
    /// signed and/or encrypted as [`OutgoingRules::decide`] says, or refused.
    ///
    /// When the rules pick two keys (sender's and domain key for mixed
    /// recipients), the first is used: the engine writes one signer per
    /// message.
    pub fn process_outgoing(
        &self,
        message: &[u8],
        envelope: &Envelope,
        auth: SenderAuth,
        now: SystemTime,
    ) -> Result<OutgoingOutcome, ProcessError> {
        let split = headers::split(message);
        let header_from = headers::get(&split, "From").and_then(|v| first_address(&v));
        let subject = headers::get(&split, "Subject").map(|s| self.incoming.outgoing_subject(&s));
        let cleaned = headers::rebuild(
            &split,
            |n| self.incoming.headers.is_status_header(n),
            subject.as_deref(),
            &[],
        );
        let question = OutgoingMessage {
            envelope_sender: envelope.sender.clone(),
            header_from,
            recipients: envelope.recipients.clone(),
            auth,
        };
        let plan = match self
            .outgoing
            .decide(&question, &self.partners, &self.keys, now)
        {
            OutgoingDecision::Reject(r) => return Ok(OutgoingOutcome::Reject(r)),
            OutgoingDecision::Deliver(plan) => plan,
        };
        let mut out = cleaned;
        let signed = match plan.sign {
            SignDecision::Sign(keys) => match keys.first() {
                Some(key) => {
                    let own = self.own_key(key)?;
                    out = signer(own)?.sign_message(&out).map_err(engine("signing"))?;
                    Ok(key.fingerprint())
                }
                None => Err(NotSigned::NotAuthenticated),
            },
            SignDecision::DoNotSign(why) => Err(why),
        };
        let encrypted = match plan.encrypt {
            EncryptDecision::Encrypt {
                recipients,
                sender_copy,
                content_encryption,
            } => {
                let mut enc = Encryptor::new(content_encryption);
                let mut to = Vec::new();
                let certs = recipients
                    .iter()
                    .map(|r| &r.certificate)
                    .chain(sender_copy.as_ref());
                for cert in certs {
                    let fp = cert.fingerprint();
                    // A domain certificate serves several recipients: one
                    // RecipientInfo is enough.
                    if to.contains(&fp) {
                        continue;
                    }
                    let cert = engine_cert(cert)?;
                    let km = key_management(&cert);
                    enc.add_recipient(cert, km).map_err(engine("encryption"))?;
                    to.push(fp);
                }
                out = enc.encrypt_message(&out).map_err(engine("encryption"))?;
                Ok((content_encryption, to))
            }
            EncryptDecision::Plain(why) => Err(why),
        };
        Ok(OutgoingOutcome::Deliver {
            message: out,
            summary: OutgoingSummary { signed, encrypted },
        })
    }

    /// Processes a message arriving for `envelope.recipients`: decrypts it
    /// when a key is held for every recipient, verifies a signature against
    /// the trust anchors (the From address must be in the certificate, or a
    /// domain certificate held for its domain), harvests the certificate and
    /// capabilities of a signature valid for the sender's own address, and
    /// marks the Subject and status headers after removing look-alikes.
    pub fn process_incoming(
        &mut self,
        message: &[u8],
        envelope: &Envelope,
        now: SystemTime,
    ) -> Result<IncomingOutcome, ProcessError> {
        let decision = self.incoming.decrypt_decision(
            &IncomingMessage {
                envelope_recipients: envelope.recipients.clone(),
                encrypted: true,
            },
            &self.keys,
        );
        let decryptors = match &decision {
            DecryptDecision::Decrypt(keys) => self.decryptors(keys)?,
            _ => Vec::new(),
        };
        let verifier = Verifier::new(self.trust_anchors.clone()).at_time(now);
        let (opened, not_for_our_keys) = match crate::open(message, &verifier, &decryptors) {
            Ok(o) => (Some(o), false),
            Err(crate::Error::NoMatchingRecipient) => (None, !decryptors.is_empty()),
            Err(e) => return Err(engine("opening")(e)),
        };
        let decrypted = opened.as_ref().is_some_and(|o| o.was_encrypted());
        let report = opened.as_ref().and_then(|o| {
            o.layers.iter().find_map(|l| match l {
                OpenedLayer::Signed(r) => Some(r.clone()),
                OpenedLayer::Encrypted(_) => None,
            })
        });
        // The layers are gone only when the gateway decrypted; a message
        // only signed keeps its signature for the reader's own client.
        let body: &[u8] = match &opened {
            Some(o) if decrypted => &o.message,
            _ => message,
        };
        let split = headers::split(body);
        let from = headers::get(&split, "From").and_then(|v| first_address(&v));
        let signature = report
            .as_ref()
            .map(|r| self.signature_status(r, from.as_ref()));
        let mut harvest = None;
        if let (Some(status), Some(r)) = (&signature, &report) {
            if self.incoming.should_harvest(status) {
                harvest = self.harvest(r, now)?;
            }
        }
        let result = SecurityResult {
            decrypted,
            signature,
        };
        let subject = headers::get(&split, "Subject");
        let subject = self.incoming.subject(subject.as_deref(), &result);
        let add = self.incoming.headers.headers(&result);
        let out = headers::rebuild(
            &split,
            |n| self.incoming.headers.is_status_header(n),
            Some(&subject),
            &add,
        );
        Ok(IncomingOutcome {
            message: out,
            summary: IncomingSummary {
                result,
                decrypt: decision,
                not_for_our_keys,
                harvest,
            },
            report,
        })
    }

    fn own_key(&self, key: &KeyRef) -> Result<&OwnKey, ProcessError> {
        self.keys
            .get(&key.fingerprint())
            .ok_or(ProcessError::KeyGone {
                fingerprint: key.fingerprint(),
            })
    }

    /// Every key held for the recipients (older ones too: mail encrypted
    /// before a renewal must still open).
    fn decryptors(&self, keys: &[(Address, KeyRef)]) -> Result<Vec<Decryptor>, ProcessError> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (rcpt, key) in keys {
            let own: Vec<&OwnKey> = match &key.owner {
                KeyOwner::User(_) => self.keys.keys_for_address(rcpt),
                KeyOwner::Domain(d) => self.keys.keys_for_domain(d),
            };
            for k in own {
                let fp = k.certificate.fingerprint();
                if seen.contains(&fp) {
                    continue;
                }
                seen.push(fp);
                let cert = engine_cert(&k.certificate)?;
                let private = private_key(k)?;
                out.push(Decryptor::new(private, cert).map_err(engine("loading a key"))?);
            }
        }
        Ok(out)
    }

    /// The status of the first signer: valid for the From address, valid
    /// with a domain certificate held for From's domain, or invalid.
    fn signature_status(&self, report: &VerifyReport, from: Option<&Address>) -> SignatureStatus {
        if let Some(from) = from {
            if report.is_valid() {
                return SignatureStatus::Valid {
                    signer: from.clone(),
                };
            }
            if let Some(domain) = self.domain_signature(report, from.domain()) {
                return SignatureStatus::ValidForDomain { domain };
            }
        }
        let reason = report
            .signers
            .first()
            .map(|s| {
                s.failures()
                    .iter()
                    .map(|(check, why)| format!("{check}: {why:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| {
                if from.is_none() {
                    "no From address".to_owned()
                } else {
                    "no signer".to_owned()
                }
            });
        SignatureStatus::Invalid { reason }
    }

    /// A signer that passed every check but the address one, whose
    /// certificate the partner store holds, enabled, for `domain`.
    fn domain_signature(&self, report: &VerifyReport, domain: &DnsName) -> Option<DnsName> {
        report.signers.iter().find_map(|s| {
            let only_address_failed = s
                .checks()
                .iter()
                .all(|(name, c)| c.passed() || *name == "address");
            let cert = s.certificate.as_ref()?;
            let smime = SmimeCertificate::from_der(cert.der().to_vec().into(), "signer").ok()?;
            let entry = self.partners.get(&smime.fingerprint())?;
            (only_address_failed
                && entry.is_enabled()
                && *entry.binding() == Binding::Domain(domain.clone()))
            .then(|| domain.clone())
        })
    }

    /// Offers the valid signer's certificate (its encryption key preference
    /// certificate when it named one) with its capabilities to the store.
    fn harvest(
        &mut self,
        report: &VerifyReport,
        now: SystemTime,
    ) -> Result<Option<HarvestOutcome>, ProcessError> {
        let Some(signer) = report.signers.iter().find(|s| s.is_valid()) else {
            return Ok(None);
        };
        let Some(cert) = signer
            .encryption_certificate
            .as_ref()
            .or(signer.certificate.as_ref())
        else {
            return Ok(None);
        };
        let Ok(certificate) = SmimeCertificate::from_der(cert.der().to_vec().into(), "signature")
        else {
            return Ok(None);
        };
        let outcome = self.partners.harvest(
            Harvest {
                certificate,
                capabilities: signer
                    .capabilities
                    .clone()
                    .unwrap_or_else(|| SmimeCapabilities::new(Vec::new())),
                // Without a signingTime any later dated signature wins.
                signing_time: signer.signing_time.unwrap_or(SystemTime::UNIX_EPOCH),
            },
            now,
        )?;
        Ok(Some(outcome))
    }
}

/// The first address of a From (or similar) header value.
fn first_address(value: &str) -> Option<Address> {
    let header = format!("From: {value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(header.as_bytes())?;
    let addr = parsed.from()?.first()?.address()?;
    Address::parse(addr).ok()
}

fn engine_cert(cert: &SmimeCertificate) -> Result<Certificate, ProcessError> {
    Certificate::from_der(cert.der()).map_err(engine("reading a certificate"))
}

fn private_key(key: &OwnKey) -> Result<PrivateKey, ProcessError> {
    PrivateKey::from_pkcs8_der(key.credentials.key.secret_der()).map_err(engine("reading a key"))
}

fn signer(key: &OwnKey) -> Result<Signer, ProcessError> {
    let chain = key
        .credentials
        .chain
        .iter()
        .map(|c| Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(engine("reading a certificate"))?;
    Signer::new(private_key(key)?, chain).map_err(engine("loading a key"))
}

/// RSA PKCS #1 v1.5 key transport (what every client reads) for RSA
/// certificates, ECDH with the SHA-256 KDF (RFC 8551's MUST) for P-256 ones.
fn key_management(cert: &Certificate) -> KeyManagement {
    if cert.public_key().0 == EC_PUBLIC_KEY {
        KeyManagement::EcdhP256Sha256Kdf
    } else {
        KeyManagement::RsaPkcs1v15
    }
}
