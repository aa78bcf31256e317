//! Outgoing mail: whether to sign, with which key, and whether to encrypt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use mailtls_core::DnsName;

use super::address::Address;
use crate::ContentEncryption;

use super::capabilities::Capabilities;
use super::certificate::{Fingerprint, SmimeCertificate, Unusable};
use super::keys::{KeyDirectory, KeyOwner, KeyRef};
use super::partner_store::{MatchedBy, PartnerStore};
use super::status::{EnhancedStatus, StatusClass};

/// How the sender reached the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAuth {
    /// Logged in (SMTP AUTH or a client certificate). `may_send_as` lists
    /// the addresses the login owns, as the embedding server's user database
    /// says; mail is signed only for those.
    Authenticated {
        /// The login name, for logs.
        login: String,
        /// Addresses the login may sign as.
        may_send_as: Vec<Address>,
    },
    /// Handed over without login by a server at this IP address (an internal
    /// mail server relaying through the gateway).
    Relay {
        /// The connecting address.
        ip: IpAddr,
    },
    /// Neither: nothing is signed on its behalf.
    Anonymous,
}

/// One outgoing message as the rules see it.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The envelope sender (MAIL FROM); `None` for the null reverse path.
    pub envelope_sender: Option<Address>,
    /// The header From address, if the caller parsed it: a signature the
    /// recipient can verify needs From to match the signer's certificate, so
    /// a From that differs from the envelope sender is not signed.
    pub header_from: Option<Address>,
    /// The envelope recipients.
    pub recipients: Vec<Address>,
    /// How the sender authenticated.
    pub auth: SenderAuth,
}

/// What to do about encryption for a recipient domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionPolicy {
    /// Never encrypt mail that includes this domain's recipients.
    Never,
    /// Encrypt when the recipient has a usable certificate, else send in
    /// clear (under [`EncryptionScope::AllOrNothing`]: when every recipient
    /// has one).
    #[default]
    WhenPossible,
    /// Encrypt; when that is impossible, refuse with a transient 4.7.5 so the
    /// sending server retries while a certificate is uploaded or harvested.
    Always,
    /// Encrypt; when that is impossible, refuse with a permanent 5.7.5 and the
    /// message bounces.
    AlwaysOrReject,
    /// Never send in clear: a recipient of this domain without a usable
    /// certificate is left out and bounced (the embedding server sends the
    /// sender a DSN naming it), while the other recipients still get the
    /// message. See [`OutgoingRules::decide_per_recipient`]. Under
    /// [`EncryptionScope::AllOrNothing`] a recipient of this domain that has
    /// a certificate makes the whole message need encryption, as
    /// [`EncryptionPolicy::AlwaysOrReject`] does.
    AlwaysOrBounce,
}

/// Whether encryption is decided for each recipient or for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionScope {
    /// Recipients with a usable partner or domain certificate get an
    /// encrypted copy; the others get a signed-only (or plain) copy. One
    /// recipient without a certificate does not cost the others their
    /// encryption.
    #[default]
    PerRecipient,
    /// One copy for everyone: encrypted only when every recipient has a
    /// usable certificate, else in clear for all (the behaviour of
    /// [`OutgoingRules::decide`]).
    AllOrNothing,
}

/// What a trusted relay may have signed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAllowance {
    /// This sender address.
    Sender(Address),
    /// Every sender in this domain.
    SenderDomain(DnsName),
    /// Whatever sender: this key (by certificate fingerprint) may be used.
    Key(Fingerprint),
}

/// An internal mail server whose mail is signed although it does not log
/// in, limited to the senders or keys listed.
///
/// ```
/// use mailtls_smime::gateway::{Address, RelayAllowance, TrustedRelay};
///
/// let relay = TrustedRelay::new("192.0.2.0/24".parse().unwrap())
///     .allow(RelayAllowance::Sender(Address::parse("billing@example.com").unwrap()));
/// assert_eq!(relay.allowed.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustedRelay {
    /// The relay's address or network.
    pub network: IpNet,
    /// What may be signed for mail it hands over.
    pub allowed: Vec<RelayAllowance>,
}

impl TrustedRelay {
    /// A relay at `network` that may have nothing signed yet; add what it
    /// may with [`TrustedRelay::allow`].
    pub fn new(network: IpNet) -> Self {
        TrustedRelay {
            network,
            allowed: Vec::new(),
        }
    }

    /// Also allows `allowance` for mail this relay hands over.
    pub fn allow(mut self, allowance: RelayAllowance) -> Self {
        self.allowed.push(allowance);
        self
    }

    fn allows(&self, sender: &Address, key: &KeyRef) -> bool {
        self.allowed.iter().any(|a| match a {
            RelayAllowance::Sender(s) => s == sender,
            RelayAllowance::SenderDomain(d) => d == sender.domain(),
            RelayAllowance::Key(fp) => *fp == key.fingerprint(),
        })
    }
}

/// Recipients matched by address or by whole domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientMatch {
    /// This address.
    Address(Address),
    /// Every address in this domain.
    Domain(DnsName),
}

impl RecipientMatch {
    fn matches(&self, a: &Address) -> bool {
        match self {
            RecipientMatch::Address(x) => x == a,
            RecipientMatch::Domain(d) => d == a.domain(),
        }
    }
}

/// The outgoing rules: configuration, built once.
///
/// Made from `OutgoingRules::default()` (sign what may be signed, encrypt
/// when possible, no relays) with the `with_*` builder methods; the fields
/// stay public to read and to change in place.
///
/// ```
/// use mailtls_core::DnsName;
/// use mailtls_smime::gateway::{EncryptionPolicy, OutgoingRules, RecipientMatch};
///
/// let rules = OutgoingRules::default()
///     .with_policy(DnsName::parse("bank.example").unwrap(), EncryptionPolicy::AlwaysOrReject)
///     .with_domain_signing(RecipientMatch::Domain(DnsName::parse("partner.example").unwrap()))
///     .with_encrypt_to_sender(true);
/// assert!(rules.encrypt_to_sender);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OutgoingRules {
    /// Internal relays allowed to have mail signed.
    pub trusted_relays: Vec<TrustedRelay>,
    /// Recipients that get mail signed with the sender's domain key (a
    /// partner gateway that checks one key per domain) instead of the
    /// sender's own key.
    pub domain_signing: Vec<RecipientMatch>,
    /// Policy per recipient domain; a domain without an entry takes its
    /// closest listed parent's, then [`default_policy`](Self::default_policy).
    pub policies: HashMap<DnsName, EncryptionPolicy>,
    /// Policy for domains not listed.
    pub default_policy: EncryptionPolicy,
    /// Also encrypt to the sender's own certificate (when the gateway holds
    /// the sender's key) so the sent copy stays readable.
    pub encrypt_to_sender: bool,
    /// Per recipient (default) or all or nothing; used by
    /// [`OutgoingRules::decide_per_recipient`].
    pub scope: EncryptionScope,
    /// Sign with RSASSA-PSS instead of PKCS #1 v1.5 where the key is RSA
    /// (EC and Ed25519 keys sign as they always do).
    pub rsa_pss: bool,
}

impl OutgoingRules {
    /// Adds an internal relay allowed to have mail signed.
    pub fn with_trusted_relay(mut self, relay: TrustedRelay) -> Self {
        self.trusted_relays.push(relay);
        self
    }

    /// Signs mail to these recipients with the sender's domain key.
    pub fn with_domain_signing(mut self, recipients: RecipientMatch) -> Self {
        self.domain_signing.push(recipients);
        self
    }

    /// Sets the encryption policy of a recipient domain (and its
    /// subdomains that have none of their own).
    pub fn with_policy(mut self, domain: DnsName, policy: EncryptionPolicy) -> Self {
        self.policies.insert(domain, policy);
        self
    }

    /// Whether RSA keys sign with RSASSA-PSS (salt as long as the digest,
    /// MGF1 with the same digest) instead of PKCS #1 v1.5.
    pub fn with_rsa_pss(mut self, on: bool) -> Self {
        self.rsa_pss = on;
        self
    }

    /// Sets the policy for domains not listed.
    pub fn with_default_policy(mut self, policy: EncryptionPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Whether to encrypt to the sender's own certificate too.
    pub fn with_encrypt_to_sender(mut self, on: bool) -> Self {
        self.encrypt_to_sender = on;
        self
    }

    /// Decides encryption per recipient or for the whole message.
    pub fn with_scope(mut self, scope: EncryptionScope) -> Self {
        self.scope = scope;
        self
    }
}

/// Why a message is not signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSigned {
    /// The null reverse path: bounces are not signed.
    NullSender,
    /// The sender did not authenticate and is no trusted relay.
    NotAuthenticated,
    /// The login does not own the sender address.
    SenderNotOwned {
        /// The login.
        login: String,
        /// The envelope sender.
        sender: Address,
    },
    /// The connecting IP is not a trusted relay.
    UntrustedRelay {
        /// The connecting address.
        ip: IpAddr,
    },
    /// The trusted relay is not allowed to have this sender (or key) signed.
    RelayNotAllowed {
        /// The envelope sender.
        sender: Address,
    },
    /// The header From is not the envelope sender.
    FromMismatch {
        /// The header From.
        from: Address,
        /// The envelope sender.
        sender: Address,
    },
    /// The gateway holds no key for this owner.
    NoKey {
        /// Whose key was looked for.
        owner: KeyOwner,
    },
    /// The key's certificate cannot sign now (expired, wrong usage).
    KeyUnusable {
        /// Whose key.
        owner: KeyOwner,
        /// Why.
        reason: Unusable,
    },
}

/// The signing part of the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignDecision {
    /// Sign with these keys (two when some recipients get the domain key and
    /// others the sender's key: one signature each, in one SignedData).
    Sign(Vec<KeyRef>),
    /// Do not sign, and why.
    DoNotSign(NotSigned),
}

/// One recipient's certificate to encrypt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptTo {
    /// The recipient.
    pub recipient: Address,
    /// Its certificate.
    pub certificate: SmimeCertificate,
    /// Found by address or by domain.
    pub matched_by: MatchedBy,
}

/// Why a message goes out unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotEncrypted {
    /// No recipient's policy asks for encryption.
    PolicyNever,
    /// Encryption was wanted where possible, but these recipients have no
    /// usable certificate.
    MissingCertificates(Vec<Address>),
    /// There are no recipients.
    NoRecipients,
}

/// The encryption part of the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncryptDecision {
    /// Encrypt to every recipient.
    Encrypt {
        /// One certificate per recipient (a domain certificate may appear
        /// for several recipients).
        recipients: Vec<EncryptTo>,
        /// The sender's certificate, for a readable sent copy.
        sender_copy: Option<SmimeCertificate>,
        /// The content encryption every recipient can read.
        content_encryption: ContentEncryption,
    },
    /// Send in clear, and why.
    Plain(NotEncrypted),
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingPlan {
    /// Signing.
    pub sign: SignDecision,
    /// Encryption.
    pub encrypt: EncryptDecision,
}

/// The message must be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The enhanced status code.
    pub status: EnhancedStatus,
    /// Text for the SMTP reply.
    pub reason: String,
    /// The recipients the refusal is about.
    pub recipients: Vec<Address>,
}

/// The outcome of the outgoing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingDecision {
    /// Process and deliver as planned.
    Deliver(OutgoingPlan),
    /// Refuse the message.
    Reject(Rejection),
}

/// The plan for one group of recipients that get the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// The recipients of this copy, in envelope order.
    pub recipients: Vec<Address>,
    /// What to do with their copy.
    pub plan: OutgoingPlan,
}

/// The outcome of [`OutgoingRules::decide_per_recipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitDecision {
    /// Deliver these copies; `bounced` names the recipients left out
    /// (policy [`EncryptionPolicy::AlwaysOrBounce`] without a usable
    /// certificate), for a DSN to the sender.
    Deliver {
        /// One plan per group of recipients, the encrypted copy first.
        copies: Vec<CopyPlan>,
        /// The recipients not sent to, with the status and reason for the
        /// DSN; `None` when every recipient gets a copy.
        bounced: Option<Rejection>,
    },
    /// Refuse the whole message (an `Always` or `AlwaysOrReject` recipient
    /// without a certificate, or every recipient bounced).
    Reject(Rejection),
}

fn address_list(v: &[Address]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl OutgoingRules {
    /// The policy for a recipient domain: its own entry, else its closest
    /// listed parent's, else the default.
    pub fn policy_for(&self, domain: &DnsName) -> EncryptionPolicy {
        let mut name = domain.as_str();
        loop {
            if let Some(p) = DnsName::parse(name)
                .ok()
                .and_then(|d| self.policies.get(&d))
            {
                return *p;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => return self.default_policy,
            }
        }
    }

    /// Decides what to do with `message` at `now`, with the partner
    /// certificates in `partners` and the gateway's own keys in `keys`:
    /// one plan for every recipient, so encryption is all or nothing
    /// whatever [`OutgoingRules::scope`] says. For a copy per group of
    /// recipients use [`OutgoingRules::decide_per_recipient`].
    pub fn decide(
        &self,
        message: &OutgoingMessage,
        partners: &PartnerStore,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> OutgoingDecision {
        let encrypt = match self.decide_encryption(message, partners, keys, now) {
            Ok(e) => e,
            Err(rejection) => return OutgoingDecision::Reject(rejection),
        };
        let sign = self.sign_decision(message, keys, now);
        OutgoingDecision::Deliver(OutgoingPlan { sign, encrypt })
    }

    fn sign_decision(
        &self,
        message: &OutgoingMessage,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> SignDecision {
        match self.signing_keys(message, keys, now) {
            Ok(k) => SignDecision::Sign(k),
            Err(why) => SignDecision::DoNotSign(why),
        }
    }

    fn signing_keys(
        &self,
        message: &OutgoingMessage,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> Result<Vec<KeyRef>, NotSigned> {
        let sender = message
            .envelope_sender
            .as_ref()
            .ok_or(NotSigned::NullSender)?;
        let relay = match &message.auth {
            SenderAuth::Anonymous => return Err(NotSigned::NotAuthenticated),
            SenderAuth::Authenticated { login, may_send_as } => {
                if !may_send_as.contains(sender) {
                    return Err(NotSigned::SenderNotOwned {
                        login: login.clone(),
                        sender: sender.clone(),
                    });
                }
                None
            }
            SenderAuth::Relay { ip } => Some(
                self.trusted_relays
                    .iter()
                    .find(|r| r.network.contains(ip))
                    .ok_or(NotSigned::UntrustedRelay { ip: *ip })?,
            ),
        };
        if let Some(from) = &message.header_from
            && from != sender
        {
            return Err(NotSigned::FromMismatch {
                from: from.clone(),
                sender: sender.clone(),
            });
        }
        let (domain_signed, user_signed): (Vec<&Address>, Vec<&Address>) = message
            .recipients
            .iter()
            .partition(|r| self.domain_signing.iter().any(|m| m.matches(r)));
        let mut owners = Vec::new();
        if !user_signed.is_empty() || message.recipients.is_empty() {
            owners.push(KeyOwner::User(sender.clone()));
        }
        if !domain_signed.is_empty() {
            owners.push(KeyOwner::Domain(sender.domain().clone()));
        }
        let mut chosen = Vec::new();
        let mut first_problem = None;
        for owner in owners {
            let found = match &owner {
                KeyOwner::User(a) => keys.user_key(a),
                KeyOwner::Domain(d) => keys.domain_key(d),
            };
            let problem = match found {
                None => Some(NotSigned::NoKey {
                    owner: owner.clone(),
                }),
                Some(key) => match key.certificate.check_signing(now) {
                    Err(reason) => Some(NotSigned::KeyUnusable {
                        owner: owner.clone(),
                        reason,
                    }),
                    Ok(()) if relay.is_some_and(|r| !r.allows(sender, &key)) => {
                        Some(NotSigned::RelayNotAllowed {
                            sender: sender.clone(),
                        })
                    }
                    Ok(()) => {
                        chosen.push(key);
                        None
                    }
                },
            };
            if first_problem.is_none() {
                first_problem = problem;
            }
        }
        match (chosen.is_empty(), first_problem) {
            (true, Some(problem)) => Err(problem),
            (true, None) => Err(NotSigned::NoKey {
                owner: KeyOwner::User(sender.clone()),
            }),
            (false, _) => Ok(chosen),
        }
    }

    fn decide_encryption(
        &self,
        message: &OutgoingMessage,
        partners: &PartnerStore,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> Result<EncryptDecision, Rejection> {
        if message.recipients.is_empty() {
            return Ok(EncryptDecision::Plain(NotEncrypted::NoRecipients));
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut never = Vec::new();
        let mut required: Vec<(&Address, EncryptionPolicy)> = Vec::new();
        for r in &message.recipients {
            let policy = self.policy_for(r.domain());
            match policy {
                EncryptionPolicy::Never => never.push(r.clone()),
                EncryptionPolicy::Always
                | EncryptionPolicy::AlwaysOrReject
                | EncryptionPolicy::AlwaysOrBounce => required.push((r, policy)),
                EncryptionPolicy::WhenPossible => {}
            }
            match partners.lookup(r, now) {
                Ok(c) => found.push((
                    EncryptTo {
                        recipient: r.clone(),
                        certificate: c.entry.certificate().clone(),
                        matched_by: c.matched_by,
                    },
                    c.entry.capabilities().cloned(),
                )),
                Err(_) => missing.push(r.clone()),
            }
        }
        if !required.is_empty() && (!missing.is_empty() || !never.is_empty()) {
            let permanent = required.iter().any(|(_, p)| {
                matches!(
                    p,
                    EncryptionPolicy::AlwaysOrReject | EncryptionPolicy::AlwaysOrBounce
                )
            });
            let class = if permanent {
                StatusClass::Permanent
            } else {
                StatusClass::Transient
            };
            let list = |v: &[Address]| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let required_list: Vec<Address> = required.iter().map(|(a, _)| (*a).clone()).collect();
            let mut blockers = Vec::new();
            if !missing.is_empty() {
                blockers.push(format!(
                    "no usable certificate is held for {}",
                    list(&missing)
                ));
            }
            if !never.is_empty() {
                blockers.push(format!(
                    "policy forbids encrypting to {} (send separately)",
                    list(&never)
                ));
            }
            let reason = format!(
                "encryption is required for {} but {}",
                list(&required_list),
                blockers.join(", and ")
            );
            let mut recipients = missing;
            for n in never {
                if !recipients.contains(&n) {
                    recipients.push(n);
                }
            }
            return Err(Rejection {
                status: EnhancedStatus::cryptographic_failure(class),
                reason,
                recipients,
            });
        }
        if !never.is_empty() {
            return Ok(EncryptDecision::Plain(NotEncrypted::PolicyNever));
        }
        if !missing.is_empty() {
            return Ok(EncryptDecision::Plain(NotEncrypted::MissingCertificates(
                missing,
            )));
        }
        Ok(self.encrypt_to(found, message, keys, now))
    }

    /// Encryption to `found` (each with what its partner advertised), the
    /// sender's copy added when configured.
    fn encrypt_to(
        &self,
        found: Vec<(EncryptTo, Option<Capabilities>)>,
        message: &OutgoingMessage,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> EncryptDecision {
        let caps: Vec<_> = found
            .iter()
            .map(|(_, c)| c.as_ref().map(|c| &c.algorithms))
            .collect();
        let content_encryption = ContentEncryption::choose_common(&caps);
        let sender_copy = if self.encrypt_to_sender {
            message
                .envelope_sender
                .as_ref()
                .and_then(|s| keys.user_key(s))
                .map(|k| k.certificate)
                .filter(|c| c.check_encryption(now).is_ok())
        } else {
            None
        };
        EncryptDecision::Encrypt {
            recipients: found.into_iter().map(|(e, _)| e).collect(),
            sender_copy,
            content_encryption,
        }
    }

    /// Decides what each recipient gets, as [`OutgoingRules::scope`] says.
    ///
    /// [`EncryptionScope::PerRecipient`]: recipients with a usable
    /// certificate (and a policy other than `Never`) share one encrypted
    /// copy; the rest share one copy that is only signed (or plain), and
    /// [`NotEncrypted`] in its plan says why. Each copy is signed for its
    /// own recipients (the domain key for `domain_signing` ones). A
    /// recipient whose policy is `Always` or `AlwaysOrReject` and who has no
    /// certificate still refuses the whole message (4.7.5 / 5.7.5): after
    /// DATA nothing can be refused for one recipient only, and these
    /// policies promise the sender an SMTP refusal. An `AlwaysOrBounce`
    /// recipient without one is left out and named in `bounced`.
    ///
    /// [`EncryptionScope::AllOrNothing`]: `AlwaysOrBounce` recipients
    /// without a certificate are bounced, and the others get one copy as
    /// [`OutgoingRules::decide`] plans it.
    ///
    /// When every recipient would be bounced, the message is refused
    /// instead (permanent 5.7.5): the sending client then reports it.
    pub fn decide_per_recipient(
        &self,
        message: &OutgoingMessage,
        partners: &PartnerStore,
        keys: &dyn KeyDirectory,
        now: SystemTime,
    ) -> SplitDecision {
        let mut encrypt: Vec<(EncryptTo, Option<Capabilities>)> = Vec::new();
        let mut never = Vec::new();
        let mut missing = Vec::new();
        let mut bounce = Vec::new();
        let mut refuse: Vec<(Address, EncryptionPolicy)> = Vec::new();
        for r in &message.recipients {
            let policy = self.policy_for(r.domain());
            if policy == EncryptionPolicy::Never {
                never.push(r.clone());
                continue;
            }
            match partners.lookup(r, now) {
                Ok(c) => encrypt.push((
                    EncryptTo {
                        recipient: r.clone(),
                        certificate: c.entry.certificate().clone(),
                        matched_by: c.matched_by,
                    },
                    c.entry.capabilities().cloned(),
                )),
                Err(_) => match policy {
                    EncryptionPolicy::AlwaysOrBounce => bounce.push(r.clone()),
                    EncryptionPolicy::Always | EncryptionPolicy::AlwaysOrReject => {
                        refuse.push((r.clone(), policy));
                        missing.push(r.clone());
                    }
                    _ => missing.push(r.clone()),
                },
            }
        }
        let bounced = (!bounce.is_empty()).then(|| Rejection {
            status: EnhancedStatus::cryptographic_failure(StatusClass::Permanent),
            reason: format!(
                "policy forbids sending unencrypted to {}, and no usable certificate is held",
                address_list(&bounce)
            ),
            recipients: bounce.clone(),
        });
        let rest: Vec<Address> = message
            .recipients
            .iter()
            .filter(|r| !bounce.contains(r))
            .cloned()
            .collect();
        if rest.is_empty() {
            if let Some(b) = bounced {
                return SplitDecision::Reject(b);
            }
            return SplitDecision::Deliver {
                copies: Vec::new(),
                bounced: None,
            };
        }
        let for_group = |recipients: Vec<Address>| OutgoingMessage {
            recipients,
            ..message.clone()
        };
        if self.scope == EncryptionScope::AllOrNothing {
            return match self.decide(&for_group(rest.clone()), partners, keys, now) {
                OutgoingDecision::Reject(r) => SplitDecision::Reject(r),
                OutgoingDecision::Deliver(plan) => SplitDecision::Deliver {
                    copies: vec![CopyPlan {
                        recipients: rest,
                        plan,
                    }],
                    bounced,
                },
            };
        }
        if !refuse.is_empty() {
            let permanent = refuse
                .iter()
                .any(|(_, p)| *p == EncryptionPolicy::AlwaysOrReject);
            let class = if permanent {
                StatusClass::Permanent
            } else {
                StatusClass::Transient
            };
            let list: Vec<Address> = refuse.into_iter().map(|(a, _)| a).collect();
            return SplitDecision::Reject(Rejection {
                status: EnhancedStatus::cryptographic_failure(class),
                reason: format!(
                    "encryption is required for {} but no usable certificate is held",
                    address_list(&list)
                ),
                recipients: list,
            });
        }
        let mut copies = Vec::new();
        if !encrypt.is_empty() {
            let recipients: Vec<Address> =
                encrypt.iter().map(|(e, _)| e.recipient.clone()).collect();
            let group = for_group(recipients.clone());
            let sign = self.sign_decision(&group, keys, now);
            let encrypt = self.encrypt_to(encrypt, &group, keys, now);
            copies.push(CopyPlan {
                recipients,
                plan: OutgoingPlan { sign, encrypt },
            });
        }
        let plain: Vec<Address> = rest
            .iter()
            .filter(|r| never.contains(r) || missing.contains(r))
            .cloned()
            .collect();
        if !plain.is_empty() {
            let group = for_group(plain.clone());
            let sign = self.sign_decision(&group, keys, now);
            let why = if missing.is_empty() {
                NotEncrypted::PolicyNever
            } else {
                NotEncrypted::MissingCertificates(missing)
            };
            copies.push(CopyPlan {
                recipients: plain,
                plan: OutgoingPlan {
                    sign,
                    encrypt: EncryptDecision::Plain(why),
                },
            });
        }
        SplitDecision::Deliver { copies, bounced }
    }
}
