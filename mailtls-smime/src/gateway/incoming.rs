//! Incoming mail: whether to decrypt and with which key, whether to harvest
//! the signer's certificate, and how the result is shown (Subject marks and
//! status headers, with forged ones removed).

use mailtls_core::DnsName;

use super::address::Address;
use super::keys::{KeyDirectory, KeyOwner, KeyRef};
use super::subject::{Mark, SubjectMarks, decode_subject, encode_subject};

/// One incoming message as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The envelope recipients (RCPT TO) this copy is for.
    pub envelope_recipients: Vec<Address>,
    /// Whether the message is S/MIME encrypted (enveloped or
    /// auth-enveloped data).
    pub encrypted: bool,
}

/// Whether and with what to decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptDecision {
    /// The message is not encrypted.
    NotEncrypted,
    /// Decrypt: every recipient has a key (one per recipient, in order; try
    /// them until one opens the message).
    Decrypt(Vec<(Address, KeyRef)>),
    /// Some recipients have a key and some do not. The copy for those with
    /// a key may be decrypted; the others must receive the message as it
    /// came, so the delivery has to be split.
    Split {
        /// Recipients with a key, and the key.
        with_key: Vec<(Address, KeyRef)>,
        /// Recipients without one.
        without_key: Vec<Address>,
    },
    /// No recipient has a key: deliver as it came.
    NoKey,
}

/// What signature verification found, as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Verified, and the signer's certificate names the From address.
    Valid {
        /// The From address the certificate matched.
        signer: Address,
    },
    /// Verified with a domain certificate held for the From address's
    /// domain (a partner gateway's signature).
    ValidForDomain {
        /// The domain.
        domain: DnsName,
    },
    /// Verified and names the From address, but over a weak algorithm
    /// (SHA-1): what it gets is [`IncomingRules::weak_signatures`].
    ValidWeak {
        /// The From address the certificate matched.
        signer: Address,
        /// The weak algorithm, e.g. `SHA-1`.
        algorithm: String,
    },
    /// Signed, but verification failed.
    Invalid {
        /// What failed, for the status header.
        reason: String,
    },
}

/// The outcome of processing one incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityResult {
    /// The gateway decrypted it.
    pub decrypted: bool,
    /// The signature found, if any.
    pub signature: Option<SignatureStatus>,
    /// The message is S/MIME (its Content-Type says so) but its signature
    /// or envelope could not be read: why. Such a message is delivered as
    /// it came, marked as failed, so that a broken (or deliberately
    /// mangled) signature never passes as if the message had none.
    pub failed: Option<String>,
}

/// Status headers: the gateway's own, named with one prefix, which incoming
/// mail must not bring along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusHeaders {
    prefix: String,
}

impl Default for StatusHeaders {
    fn default() -> Self {
        StatusHeaders {
            prefix: "X-Mailtls-".into(),
        }
    }
}

/// Why a header prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{prefix:?} is not a usable header name prefix (at least 3 printable ASCII characters, no ':' or space)"
)]
pub struct HeaderPrefixError {
    /// The refused prefix.
    pub prefix: String,
}

impl StatusHeaders {
    /// Uses `prefix` (such as `X-Gateway-`) for every status header.
    pub fn new(prefix: &str) -> Result<Self, HeaderPrefixError> {
        // A short prefix ("X") would swallow unrelated headers.
        if prefix.len() < 3 || !prefix.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(HeaderPrefixError {
                prefix: prefix.to_owned(),
            });
        }
        Ok(StatusHeaders {
            prefix: prefix.to_owned(),
        })
    }

    /// Whether a header with this name is one of the gateway's, and so must
    /// be removed from mail arriving (or replies leaving) before the gateway
    /// adds its own. Case-insensitive, surrounding whitespace ignored.
    pub fn is_status_header(&self, name: &str) -> bool {
        let name = name.trim();
        name.len() >= self.prefix.len()
            && name.is_char_boundary(self.prefix.len())
            && name[..self.prefix.len()].eq_ignore_ascii_case(&self.prefix)
    }

    /// The headers that report `result` (name, value), to add after the
    /// forged ones are gone.
    pub fn headers(&self, result: &SecurityResult) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(reason) = &result.failed {
            out.push((
                format!("{}Failed", self.prefix),
                format!("unreadable; reason=\"{}\"", header_safe(reason)),
            ));
        }
        if result.decrypted {
            out.push((format!("{}Encrypted", self.prefix), "decrypted".to_owned()));
        }
        if let Some(sig) = &result.signature {
            let value = match sig {
                SignatureStatus::Valid { signer } => format!("valid; signer={signer}"),
                SignatureStatus::ValidForDomain { domain } => {
                    format!("valid; domain={}", domain.as_str())
                }
                SignatureStatus::ValidWeak { signer, algorithm } => format!(
                    "weak; signer={signer}; algorithm=\"{}\"",
                    header_safe(algorithm)
                ),
                SignatureStatus::Invalid { reason } => {
                    format!("invalid; reason=\"{}\"", header_safe(reason))
                }
            };
            out.push((format!("{}Signed", self.prefix), value));
        }
        out
    }
}

/// Printable ASCII only, no quotes, at most 200 characters: the reason
/// comes from parsing outside input and must not break the header.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                ' '
            }
        })
        .take(200)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a signature that verified over a weak algorithm (SHA-1, as
/// Outlook and older NSS sign) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WeakSignatures {
    /// Its own Subject mark ([`Mark::SignedWeak`], `[weak signature]` by
    /// default) and a `weak` status header; never the "signed" mark.
    #[default]
    Mark,
    /// Treated as unsigned: no mark, no signature status header, no
    /// harvest.
    Unsigned,
}

/// The incoming rules: configuration, built once.
///
/// Made from `IncomingRules::default()` (no harvesting, the default marks
/// and `X-Mailtls-` status headers) with the `with_*` builder methods; the
/// fields stay public to read and to change in place.
///
/// ```
/// use mailtls_smime::gateway::{IncomingRules, StatusHeaders};
///
/// let rules = IncomingRules::default()
///     .with_harvest(true)
///     .with_headers(StatusHeaders::new("X-Gateway-").unwrap());
/// assert!(rules.harvest);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IncomingRules {
    /// Take the certificates (and capabilities) of verified signers into the
    /// partner store.
    pub harvest: bool,
    /// Subject marks.
    pub marks: SubjectMarks,
    /// Status headers.
    pub headers: StatusHeaders,
    /// What a signature over a weak algorithm gets.
    pub weak_signatures: WeakSignatures,
}

impl IncomingRules {
    /// Whether to harvest the certificates of verified signers.
    pub fn with_harvest(mut self, on: bool) -> Self {
        self.harvest = on;
        self
    }

    /// Uses these Subject marks.
    pub fn with_marks(mut self, marks: SubjectMarks) -> Self {
        self.marks = marks;
        self
    }

    /// Uses these status headers.
    pub fn with_headers(mut self, headers: StatusHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// What signatures over a weak algorithm (SHA-1) get.
    pub fn with_weak_signatures(mut self, rule: WeakSignatures) -> Self {
        self.weak_signatures = rule;
        self
    }

    /// Applies [`IncomingRules::weak_signatures`] to a verification status:
    /// `None` (unsigned) for a weak signature when the rule says so, the
    /// status unchanged otherwise.
    pub fn weak_signature_rule(&self, status: SignatureStatus) -> Option<SignatureStatus> {
        match (&status, self.weak_signatures) {
            (SignatureStatus::ValidWeak { .. }, WeakSignatures::Unsigned) => None,
            _ => Some(status),
        }
    }

    /// Whether to decrypt, and with which keys. A user key counts for a
    /// recipient only when its certificate names that recipient; otherwise
    /// the domain key of the recipient's domain is used, if held. Validity is
    /// not checked: an expired key still opens mail encrypted while it was
    /// valid.
    pub fn decrypt_decision(
        &self,
        message: &IncomingMessage,
        keys: &dyn KeyDirectory,
    ) -> DecryptDecision {
        if !message.encrypted {
            return DecryptDecision::NotEncrypted;
        }
        let mut with_key = Vec::new();
        let mut without_key = Vec::new();
        for r in &message.envelope_recipients {
            let key = keys
                .user_key(r)
                .filter(|k| matches!(&k.owner, KeyOwner::User(_)) && k.certificate.names(r))
                .or_else(|| {
                    keys.domain_key(r.domain())
                        .filter(|k| k.owner == KeyOwner::Domain(r.domain().clone()))
                });
            match key {
                Some(k) => with_key.push((r.clone(), k)),
                None => without_key.push(r.clone()),
            }
        }
        match (with_key.is_empty(), without_key.is_empty()) {
            (true, _) => DecryptDecision::NoKey,
            (false, true) => DecryptDecision::Decrypt(with_key),
            (false, false) => DecryptDecision::Split {
                with_key,
                without_key,
            },
        }
    }

    /// Whether the signer's certificate should be harvested: only from a
    /// signature verified for the sender's own address (a domain signature's
    /// certificate is already held; an invalid one proves nothing).
    pub fn should_harvest(&self, status: &SignatureStatus) -> bool {
        self.harvest && matches!(status, SignatureStatus::Valid { .. })
    }

    /// The marks for a result, in display order.
    pub fn marks_for<'a>(&self, result: &'a SecurityResult) -> Vec<Mark<'a>> {
        let mut marks = Vec::new();
        if result.decrypted {
            marks.push(Mark::Encrypted);
        }
        match &result.signature {
            Some(SignatureStatus::Valid { .. }) => marks.push(Mark::Signed),
            Some(SignatureStatus::ValidForDomain { domain }) => {
                marks.push(Mark::SignedByDomain(domain.as_str()));
            }
            Some(SignatureStatus::ValidWeak { .. }) => marks.push(Mark::SignedWeak),
            Some(SignatureStatus::Invalid { .. }) => marks.push(Mark::SignatureInvalid),
            None => {}
        }
        if result.failed.is_some() {
            marks.push(Mark::Failed);
        }
        marks
    }

    /// The new Subject header value for an incoming message: the raw value
    /// (`None` when the message has no Subject) decoded, look-alike marks
    /// removed, the result's marks prefixed, encoded again for the header.
    pub fn subject(&self, raw: Option<&str>, result: &SecurityResult) -> String {
        let decoded = raw.map(decode_subject).unwrap_or_default();
        encode_subject(&self.marks.mark(&decoded, &self.marks_for(result)))
    }

    /// The Subject header value for a message leaving (a reply quoting a
    /// marked Subject): marks removed, nothing added.
    pub fn outgoing_subject(&self, raw: &str) -> String {
        encode_subject(&self.marks.strip(&decode_subject(raw)))
    }
}
