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
    CopyPlan, EncryptDecision, NotEncrypted, NotSigned, OutgoingDecision, OutgoingMessage,
    OutgoingPlan, OutgoingRules, Rejection, SenderAuth, SignDecision, SplitDecision,
};
use super::partner_store::{Binding, Harvest, HarvestOutcome, PartnerStore, StoreError};
use crate::algorithms::RSA_ENCRYPTION;
use crate::verify::{Verdict, VerifyReport};
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
}

fn engine(stage: &'static str) -> impl FnOnce(crate::Error) -> ProcessError {
    move |source| ProcessError::Engine { stage, source }
}

/// What was done to an outgoing message.
#[derive(Debug, Clone)]
pub struct OutgoingSummary {
    /// Signed with the key of this certificate (the first key the rules
    /// chose), or why not.
    pub signed: Result<Fingerprint, NotSigned>,
    /// Encrypted with this algorithm to these certificates (recipients,
    /// then the sender's copy), or why not.
    pub encrypted: Result<(ContentEncryption, Vec<Fingerprint>), NotEncrypted>,
    /// The further keys that signed the same message beside `signed` (the
    /// domain key when the rules chose the sender's and the domain key):
    /// one SignerInfo each in the one SignedData.
    pub co_signed: Vec<Fingerprint>,
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

/// One copy of an outgoing message from
/// [`Gateway::process_outgoing_split`].
#[derive(Debug, Clone)]
pub struct OutgoingCopy {
    /// The envelope recipients this copy goes to, in envelope order.
    pub recipients: Vec<Address>,
    /// The message as it leaves the gateway for them.
    pub message: Vec<u8>,
    /// What was done.
    pub summary: OutgoingSummary,
}

/// The result of [`Gateway::process_outgoing_split`].
#[derive(Debug, Clone)]
pub enum OutgoingSplitOutcome {
    /// Deliver these copies; together with `bounced` they name every
    /// envelope recipient once.
    Deliver {
        /// One copy per group of recipients, the encrypted one first.
        copies: Vec<OutgoingCopy>,
        /// Recipients not sent to (no certificate, and a policy that
        /// forbids sending them mail in clear), with the status and reason
        /// to report to the sender in a DSN.
        bounced: Option<Rejection>,
    },
    /// Refuse the whole message with this status.
    Reject(Rejection),
}

/// What was done to an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSummary {
    /// Decrypted, and signature status, as marked.
    pub result: SecurityResult,
    /// The decryption decision. [`Gateway::process_incoming`] does not
    /// decrypt a [`DecryptDecision::Split`] (its copy is the message as it
    /// came); [`Gateway::process_incoming_split`] carries the split out and
    /// gives each copy the decision for its own recipients.
    pub decrypt: DecryptDecision,
    /// The encrypted message named none of the keys tried.
    pub not_for_our_keys: bool,
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
    /// What the message offers the partner store: the certificate and
    /// capabilities of a signature valid for the sender's own address, when
    /// the rules harvest. Processing does not change the store (it is
    /// synchronous, CPU-bound work); hand the offer to
    /// [`Gateway::harvest`] (async: it saves the store) afterwards.
    pub harvest: Option<Harvest>,
}

/// One copy of an incoming message from [`Gateway::process_incoming_split`]:
/// the message for a group of envelope recipients.
#[derive(Debug, Clone)]
pub struct IncomingCopy {
    /// The envelope recipients this copy goes to, in envelope order.
    pub recipients: Vec<Address>,
    /// The copy and what was done to it.
    pub outcome: IncomingOutcome,
}

/// One gateway: its own keys, its partners, its rules and the trust anchors
/// incoming signatures are verified against.
///
/// Processing ([`Gateway::process_outgoing`], [`Gateway::process_incoming`],
/// [`Gateway::process_incoming_split`]) takes `&self` and is synchronous
/// CPU work; the only change it leads to, a harvest into the partner
/// store, is returned as an offer and applied with the async
/// [`Gateway::harvest`]. Many messages can thus be processed at once under
/// a shared (read) lock, and the write lock is taken only to harvest.
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
    /// One copy for every recipient, so encryption is all or nothing; with
    /// [`Gateway::process_outgoing_split`] recipients with a certificate
    /// get an encrypted copy even when others have none.
    ///
    /// When the rules pick two keys (sender's and domain key for mixed
    /// recipients), both sign: the SignedData carries one SignerInfo per
    /// key ([`OutgoingSummary::co_signed`] lists the further ones).
    ///
    /// Synchronous and CPU-bound (signing, encryption): in an async server
    /// run it on a blocking thread (`tokio::task::spawn_blocking`).
    pub fn process_outgoing(
        &self,
        message: &[u8],
        envelope: &Envelope,
        auth: SenderAuth,
        now: SystemTime,
    ) -> Result<OutgoingOutcome, ProcessError> {
        let (cleaned, question) = self.outgoing_question(message, envelope, auth);
        let plan = match self
            .outgoing
            .decide(&question, &self.partners, &self.keys, now)
        {
            OutgoingDecision::Reject(r) => return Ok(OutgoingOutcome::Reject(r)),
            OutgoingDecision::Deliver(plan) => plan,
        };
        let (message, summary) = self.apply_plan(cleaned, plan)?;
        Ok(OutgoingOutcome::Deliver { message, summary })
    }

    /// Processes a message leaving through the gateway with encryption
    /// decided per recipient ([`OutgoingRules::decide_per_recipient`], as
    /// [`OutgoingRules::scope`] says): one copy per group of recipients
    /// that get the same bytes (the encrypted copy first), and the
    /// recipients bounced by an [`EncryptionPolicy::AlwaysOrBounce`]
    /// policy for the caller to report in a DSN. Quoted marks and status
    /// headers are removed from every copy, as in
    /// [`Gateway::process_outgoing`].
    ///
    /// Synchronous and CPU-bound, like [`Gateway::process_outgoing`].
    ///
    /// [`EncryptionPolicy::AlwaysOrBounce`]: super::EncryptionPolicy::AlwaysOrBounce
    pub fn process_outgoing_split(
        &self,
        message: &[u8],
        envelope: &Envelope,
        auth: SenderAuth,
        now: SystemTime,
    ) -> Result<OutgoingSplitOutcome, ProcessError> {
        let (cleaned, question) = self.outgoing_question(message, envelope, auth);
        match self
            .outgoing
            .decide_per_recipient(&question, &self.partners, &self.keys, now)
        {
            SplitDecision::Reject(r) => Ok(OutgoingSplitOutcome::Reject(r)),
            SplitDecision::Deliver { copies, bounced } => {
                let mut out = Vec::with_capacity(copies.len());
                for CopyPlan { recipients, plan } in copies {
                    let (message, summary) = self.apply_plan(cleaned.clone(), plan)?;
                    out.push(OutgoingCopy {
                        recipients,
                        message,
                        summary,
                    });
                }
                Ok(OutgoingSplitOutcome::Deliver {
                    copies: out,
                    bounced,
                })
            }
        }
    }

    /// The message with the quoted Subject marks and status headers of a
    /// reply removed, and the question for the outgoing rules.
    fn outgoing_question(
        &self,
        message: &[u8],
        envelope: &Envelope,
        auth: SenderAuth,
    ) -> (Vec<u8>, OutgoingMessage) {
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
        (cleaned, question)
    }

    /// Signs and/or encrypts `cleaned` as `plan` says.
    fn apply_plan(
        &self,
        cleaned: Vec<u8>,
        plan: OutgoingPlan,
    ) -> Result<(Vec<u8>, OutgoingSummary), ProcessError> {
        let mut out = cleaned;
        let mut co_signed = Vec::new();
        let signed = match plan.sign {
            SignDecision::Sign(keys) => match keys.split_first() {
                Some((first, rest)) => {
                    // Every chosen key signs the one SignedData: the
                    // sender's key for the recipients that get it, the
                    // domain key for the domain-signing ones.
                    let pss = self.outgoing.rsa_pss;
                    let mut all = signer(self.own_key(first)?, pss)?;
                    for key in rest {
                        all.add_co_signer(signer(self.own_key(key)?, pss)?);
                        if key.fingerprint() != first.fingerprint()
                            && !co_signed.contains(&key.fingerprint())
                        {
                            co_signed.push(key.fingerprint());
                        }
                    }
                    out = all.sign_message(&out).map_err(engine("signing"))?;
                    Ok(first.fingerprint())
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
        Ok((
            out,
            OutgoingSummary {
                signed,
                encrypted,
                co_signed,
            },
        ))
    }

    /// Processes a message arriving for `envelope.recipients`: decrypts it
    /// when a key is held for every recipient, verifies a signature against
    /// the trust anchors (the From address must be in the certificate, or a
    /// domain certificate held for its domain), offers the certificate and
    /// capabilities of a signature valid for the sender's own address for
    /// harvesting ([`IncomingOutcome::harvest`]), and marks the Subject and
    /// status headers after removing look-alikes.
    ///
    /// Synchronous and CPU-bound (decryption, verification): in an async
    /// server run it on a blocking thread (`tokio::task::spawn_blocking`).
    ///
    /// One copy for all recipients: when only some recipients have a key
    /// ([`DecryptDecision::Split`]) nothing is decrypted. Use
    /// [`Gateway::process_incoming_split`] to deliver the decrypted copy to
    /// those whose key opens the message and the message as it came to
    /// the rest.
    pub fn process_incoming(
        &self,
        message: &[u8],
        envelope: &Envelope,
        now: SystemTime,
    ) -> Result<IncomingOutcome, ProcessError> {
        let decision = self.incoming_decision(&envelope.recipients);
        let decryptors = match &decision {
            DecryptDecision::Decrypt(keys) => self.decryptors(keys)?,
            _ => Vec::new(),
        };
        let verifier = Verifier::new(self.trust_anchors.clone()).at_time(now);
        let (opened, not_for_our_keys) = match crate::open(message, &verifier, &decryptors) {
            Ok(o) => (Some(o), false),
            Err(crate::Error::NoMatchingRecipient) => (None, !decryptors.is_empty()),
            Err(e) => return Ok(self.unreadable_incoming(message, &e, decision)),
        };
        self.finish_incoming(message, opened, not_for_our_keys, decision)
    }

    /// Processes a message arriving for `envelope.recipients` and carries
    /// out a split delivery: the recipients whose own key (or whose
    /// domain's key) opens the message get the decrypted copy, every other
    /// recipient (no key held, or the message was not encrypted to the key
    /// held for them) gets the copy as it came, only with forged marks and
    /// status headers removed. Each key is tried only for its own
    /// recipients, so a recipient never gets plaintext through another
    /// recipient's key.
    ///
    /// Returns one copy per group, decrypted copy first; together the
    /// groups hold every envelope recipient exactly once. The decrypted
    /// copy's decision is [`DecryptDecision::Decrypt`] with the keys that
    /// opened it; the untouched copy's is [`DecryptDecision::NoKey`], with
    /// [`IncomingSummary::not_for_our_keys`] set when a key held for one of
    /// its recipients was tried and the message was not encrypted to it. A message that
    /// every recipient gets alike (not encrypted, or opened for all, or for
    /// none) is one copy, the same as [`Gateway::process_incoming`] gives.
    pub fn process_incoming_split(
        &self,
        message: &[u8],
        envelope: &Envelope,
        now: SystemTime,
    ) -> Result<Vec<IncomingCopy>, ProcessError> {
        let decision = self.incoming_decision(&envelope.recipients);
        let (with_key, mut untouched) = match &decision {
            DecryptDecision::Decrypt(k) => (k.clone(), Vec::new()),
            DecryptDecision::Split {
                with_key,
                without_key,
            } => (with_key.clone(), without_key.clone()),
            DecryptDecision::NotEncrypted | DecryptDecision::NoKey => {
                let outcome = self.process_incoming(message, envelope, now)?;
                return Ok(vec![IncomingCopy {
                    recipients: envelope.recipients.clone(),
                    outcome,
                }]);
            }
        };
        // Recipients grouped by the key the rules chose for them (a domain
        // key serves a whole domain), in envelope order.
        let mut groups: Vec<Vec<(Address, KeyRef)>> = Vec::new();
        for (rcpt, key) in with_key {
            match groups
                .iter_mut()
                .find(|g| g[0].1.fingerprint() == key.fingerprint())
            {
                Some(g) => g.push((rcpt, key)),
                None => groups.push(vec![(rcpt, key)]),
            }
        }
        let verifier = Verifier::new(self.trust_anchors.clone()).at_time(now);
        let mut opened = None;
        let mut opened_for: Vec<(Address, KeyRef)> = Vec::new();
        let mut refused = false;
        for group in groups {
            let decryptors = self.decryptors(&group)?;
            if opened.is_some() {
                // The content is the same for every key that opens it:
                // only whether this group's keys are recipients matters.
                if self.is_recipient(message, &decryptors)? {
                    opened_for.extend(group);
                } else {
                    refused = true;
                    untouched.extend(group.into_iter().map(|(a, _)| a));
                }
                continue;
            }
            match crate::open(message, &verifier, &decryptors) {
                Ok(o) if o.was_encrypted() => {
                    opened = Some(o);
                    opened_for.extend(group);
                }
                Ok(o) => {
                    // Not encrypted: every recipient gets the same copy.
                    let outcome =
                        self.finish_incoming(message, Some(o), false, decision.clone())?;
                    return Ok(vec![IncomingCopy {
                        recipients: envelope.recipients.clone(),
                        outcome,
                    }]);
                }
                Err(crate::Error::NoMatchingRecipient) => {
                    refused = true;
                    untouched.extend(group.into_iter().map(|(a, _)| a));
                }
                // Unreadable for one key is unreadable for all: every
                // recipient gets the message as it came, marked.
                Err(e) => {
                    let outcome = self.unreadable_incoming(message, &e, decision.clone());
                    return Ok(vec![IncomingCopy {
                        recipients: envelope.recipients.clone(),
                        outcome,
                    }]);
                }
            }
        }
        // Back in envelope order within each copy.
        let in_order = |set: &[Address]| -> Vec<Address> {
            envelope
                .recipients
                .iter()
                .filter(|r| set.contains(r))
                .cloned()
                .collect()
        };
        let mut copies = Vec::new();
        if let Some(o) = opened {
            let recipients: Vec<Address> = opened_for.iter().map(|(a, _)| a.clone()).collect();
            let outcome = self.finish_incoming(
                message,
                Some(o),
                false,
                DecryptDecision::Decrypt(opened_for),
            )?;
            copies.push(IncomingCopy {
                recipients: in_order(&recipients),
                outcome,
            });
        }
        if !untouched.is_empty() {
            let outcome = self.finish_incoming(message, None, refused, DecryptDecision::NoKey)?;
            copies.push(IncomingCopy {
                recipients: in_order(&untouched),
                outcome,
            });
        }
        Ok(copies)
    }

    fn incoming_decision(&self, recipients: &[Address]) -> DecryptDecision {
        self.incoming.decrypt_decision(
            &IncomingMessage {
                envelope_recipients: recipients.to_vec(),
                encrypted: true,
            },
            &self.keys,
        )
    }

    /// Whether one of `decryptors` is a recipient of the (encrypted)
    /// message, without decrypting the content.
    fn is_recipient(&self, message: &[u8], decryptors: &[Decryptor]) -> Result<bool, ProcessError> {
        for d in decryptors {
            match d.is_recipient_of(message) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => return Err(engine("opening")(e)),
            }
        }
        Ok(false)
    }

    /// Verification status, harvesting, marks and status headers for a
    /// message opened (or not) as `opened` says.
    fn finish_incoming(
        &self,
        message: &[u8],
        opened: Option<crate::Opened>,
        not_for_our_keys: bool,
        decision: DecryptDecision,
    ) -> Result<IncomingOutcome, ProcessError> {
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
        let signature = report.as_ref().and_then(|r| {
            self.incoming
                .weak_signature_rule(self.signature_status(r, from.as_ref()))
        });
        let mut harvest = None;
        if let (Some(status), Some(r)) = (&signature, &report)
            && self.incoming.should_harvest(status)
        {
            harvest = harvest_offer(r);
        }
        let result = SecurityResult {
            decrypted,
            signature,
            failed: None,
        };
        let out = self.marked(&split, &result);
        Ok(IncomingOutcome {
            message: out,
            summary: IncomingSummary {
                result,
                decrypt: decision,
                not_for_our_keys,
            },
            report,
            harvest,
        })
    }

    /// The message with forged marks and status headers removed and the
    /// marks and headers of `result` added.
    fn marked(&self, split: &headers::Split<'_>, result: &SecurityResult) -> Vec<u8> {
        let subject = headers::get(split, "Subject");
        let subject = self.incoming.subject(subject.as_deref(), result);
        let add = self.incoming.headers.headers(result);
        headers::rebuild(
            split,
            |n| self.incoming.headers.is_status_header(n),
            Some(&subject),
            &add,
        )
    }

    /// The outcome for a message the engine could not open (`error`): as it
    /// came, forged marks removed, and marked as failed when it is S/MIME
    /// by its Content-Type. Mail that is not S/MIME (a PGP/MIME signature,
    /// MIME the parser gives up on) only loses forged marks: the gateway
    /// has nothing to say about it.
    fn unreadable_incoming(
        &self,
        message: &[u8],
        error: &crate::Error,
        decision: DecryptDecision,
    ) -> IncomingOutcome {
        let split = headers::split(message);
        let is_smime = headers::get(&split, "Content-Type").is_some_and(|v| names_smime(&v));
        let result = SecurityResult {
            decrypted: false,
            signature: None,
            failed: is_smime.then(|| format!("the S/MIME structure could not be read: {error}")),
        };
        IncomingOutcome {
            message: self.marked(&split, &result),
            summary: IncomingSummary {
                result,
                decrypt: decision,
                not_for_our_keys: false,
            },
            report: None,
            harvest: None,
        }
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

    /// The signature status: valid for the From address, valid with a
    /// domain certificate held for From's domain, or invalid. With several
    /// signers (a sender's and a gateway's domain signature), one signer
    /// valid for the sender's address is enough as long as every signature
    /// value holds (a signer whose certificate names another address, such
    /// as the domain key's, does not make the message invalid).
    fn signature_status(&self, report: &VerifyReport, from: Option<&Address>) -> SignatureStatus {
        if let Some(from) = from {
            let every_signature_holds = report.signers.iter().all(|s| s.signature.passed());
            if report.is_valid()
                || (every_signature_holds && report.signers.iter().any(|s| s.is_valid()))
            {
                return SignatureStatus::Valid {
                    signer: from.clone(),
                };
            }
            // The same, with a signer that passed every check over SHA-1.
            let weak = report.signers.iter().find_map(|s| match s.verdict() {
                Verdict::ValidWeak(w) => w.first().copied(),
                _ => None,
            });
            if let Some(algorithm) = weak.filter(|_| every_signature_holds) {
                return SignatureStatus::ValidWeak {
                    signer: from.clone(),
                    algorithm: algorithm.to_string(),
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

    /// Offers a harvest from [`IncomingOutcome::harvest`] to the partner
    /// store and saves it (through the store's [`SnapshotStorage`]); the
    /// store decides what it does ([`HarvestOutcome`]).
    ///
    /// [`SnapshotStorage`]: super::SnapshotStorage
    pub async fn harvest(
        &mut self,
        offer: Harvest,
        now: SystemTime,
    ) -> Result<HarvestOutcome, StoreError> {
        self.partners.harvest(offer, now).await
    }
}

/// The valid signer's certificate (its encryption key preference
/// certificate when it named one) with its capabilities, as an offer to
/// the store.
fn harvest_offer(report: &VerifyReport) -> Option<Harvest> {
    let signer = report.signers.iter().find(|s| s.is_valid())?;
    let cert = signer
        .encryption_certificate
        .as_ref()
        .or(signer.certificate.as_ref())?;
    let certificate = SmimeCertificate::from_der(cert.der().to_vec().into(), "signature").ok()?;
    Some(Harvest {
        certificate,
        capabilities: signer
            .capabilities
            .clone()
            .unwrap_or_else(|| SmimeCapabilities::new(Vec::new())),
        // Without a signingTime any later dated signature wins.
        signing_time: signer.signing_time.unwrap_or(SystemTime::UNIX_EPOCH),
    })
}

/// Whether a Content-Type value announces S/MIME: `application/pkcs7-mime`
/// (or the `x-` form), a `multipart/signed` whose protocol is a PKCS #7
/// signature, or an octet stream named `*.p7m` / `*.p7s`.
fn names_smime(content_type: &str) -> bool {
    let v = content_type.to_ascii_lowercase();
    v.contains("pkcs7-mime")
        || v.contains("pkcs7-signature")
        || (v.contains("application/octet-stream") && (v.contains(".p7m") || v.contains(".p7s")))
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
    PrivateKey::from_der(&key.credentials.key).map_err(engine("reading a key"))
}

/// The signer of an own key; RSA keys with RSA-PSS when `rsa_pss`.
fn signer(key: &OwnKey, rsa_pss: bool) -> Result<Signer, ProcessError> {
    let signer = Signer::try_from(&key.credentials).map_err(engine("loading a key"))?;
    if rsa_pss && signer.certificate().public_key().0 == RSA_ENCRYPTION {
        return signer.with_rsa_pss().map_err(engine("loading a key"));
    }
    Ok(signer)
}

/// RSA PKCS #1 v1.5 key transport (what every client reads) for RSA
/// certificates, ECDH with the KDF hash matching the curve for P-256
/// (SHA-256, RFC 8551's MUST), P-384 and P-521 ones. Any other key gets
/// the RSA method, which the encryptor then refuses with a certificate
/// error naming the recipient.
fn key_management(cert: &Certificate) -> KeyManagement {
    KeyManagement::for_certificate(cert).unwrap_or(KeyManagement::RsaPkcs1v15)
}
