//! What verification found, check by check.

use std::time::SystemTime;

use crate::algorithms::SmimeCapabilities;
use crate::cert::Certificate;

/// Why one check failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No certificate in the message (or given) matches the signer identifier.
    SignerCertificateNotFound,
    /// A required signed attribute is missing or malformed.
    MissingAttribute(&'static str),
    /// The messageDigest attribute does not match the content.
    DigestMismatch,
    /// The contentType attribute does not match the encapsulated content type.
    ContentTypeMismatch,
    /// The signingCertificateV2 attribute names another certificate than
    /// the one the signer identifier selected.
    SigningCertificateMismatch,
    /// The signature value does not verify under the signer's key.
    BadSignature,
    /// An algorithm (digest, signature, key) the engine does not support.
    UnsupportedAlgorithm(String),
    /// The certificate's validity period has ended.
    Expired,
    /// The certificate's validity period has not begun.
    NotYetValid,
    /// No path from the signer to a trust anchor.
    UnknownIssuer(String),
    /// A certificate on the path is invalid (bad signature, not a CA,
    /// out of validity): names which and why.
    BadChain(String),
    /// Key usage present without digitalSignature or nonRepudiation.
    KeyUsageNotForSigning,
    /// Extended key usage present without emailProtection (or any).
    NotForEmailProtection,
    /// The message has no From or Sender address.
    NoSenderAddress,
    /// None of the From/Sender addresses is in the certificate.
    AddressMismatch {
        /// Addresses of the From and Sender fields.
        message: Vec<String>,
        /// Addresses the certificate names.
        certificate: Vec<String>,
    },
}

/// An algorithm that verified but is too weak to rely on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeakAlgorithm {
    /// The signature is over a SHA-1 digest (as Outlook and older NSS
    /// still write): SHA-1 collisions are practical, so a forger who
    /// chose the content can have a real signature cover other content.
    Sha1,
}

impl std::fmt::Display for WeakAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "SHA-1",
        })
    }
}

/// The overall verdict on a signer, or on a whole message.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held with algorithms this engine considers sound.
    Valid,
    /// Every check held, but over a weak algorithm (named): a real
    /// signature, which a forger may have been able to reuse. Never
    /// counted as [`Verdict::Valid`]; what it gets is the caller's rule.
    ValidWeak(Vec<WeakAlgorithm>),
    /// Some check failed (or, for a message, there is no signer).
    Invalid,
}

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The check was made and held.
    Passed,
    /// The check was made and failed.
    Failed(Failure),
    /// The check could not be made (e.g. no signer certificate).
    NotChecked,
}

impl Check {
    /// Whether the check held.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }

    pub(crate) fn from_result(r: Result<(), Failure>) -> Self {
        match r {
            Ok(()) => Self::Passed,
            Err(f) => Self::Failed(f),
        }
    }
}

/// Verification of one SignerInfo.
#[derive(Debug, Clone)]
pub struct SignerReport {
    /// The signer's certificate, when it was found.
    pub certificate: Option<Certificate>,
    /// Signature value, messageDigest and contentType attributes.
    pub signature: Check,
    /// Path to a configured trust anchor (intermediates checked too).
    pub chain: Check,
    /// The signer certificate's validity period at the verification time.
    pub validity: Check,
    /// Key usage allows signing (digitalSignature or nonRepudiation).
    pub key_usage: Check,
    /// Extended key usage, if present, allows emailProtection.
    pub extended_key_usage: Check,
    /// A From or Sender address is in the certificate.
    pub address: Check,
    /// The signingTime attribute, if present.
    pub signing_time: Option<SystemTime>,
    /// The SMIMECapabilities attribute, if present.
    pub capabilities: Option<SmimeCapabilities>,
    /// The certificate the signer asked to be encrypted to (the
    /// SMIMEEncryptionKeyPreference attribute, RFC 8551 section 2.5.3),
    /// when the message carries it.
    pub encryption_certificate: Option<Certificate>,
    /// Weak algorithms the signature relies on (empty when none): a
    /// signature that passed every check with one of these is
    /// [`Verdict::ValidWeak`], not valid.
    pub weak_algorithms: Vec<WeakAlgorithm>,
}

impl SignerReport {
    pub(crate) fn not_found() -> Self {
        Self {
            certificate: None,
            signature: Check::Failed(Failure::SignerCertificateNotFound),
            chain: Check::NotChecked,
            validity: Check::NotChecked,
            key_usage: Check::NotChecked,
            extended_key_usage: Check::NotChecked,
            address: Check::NotChecked,
            signing_time: None,
            capabilities: None,
            encryption_certificate: None,
            weak_algorithms: Vec::new(),
        }
    }

    /// All checks, named, in a fixed order.
    pub fn checks(&self) -> [(&'static str, &Check); 6] {
        [
            ("signature", &self.signature),
            ("chain", &self.chain),
            ("validity", &self.validity),
            ("key usage", &self.key_usage),
            ("extended key usage", &self.extended_key_usage),
            ("address", &self.address),
        ]
    }

    /// Whether every check held with sound algorithms (a weak signature,
    /// see [`SignerReport::verdict`], is not valid).
    pub fn is_valid(&self) -> bool {
        self.verdict() == Verdict::Valid
    }

    /// Valid, valid over a weak algorithm, or invalid.
    pub fn verdict(&self) -> Verdict {
        if !self.checks().iter().all(|(_, c)| c.passed()) {
            Verdict::Invalid
        } else if self.weak_algorithms.is_empty() {
            Verdict::Valid
        } else {
            Verdict::ValidWeak(self.weak_algorithms.clone())
        }
    }

    /// The failed checks with their reasons.
    pub fn failures(&self) -> Vec<(&'static str, &Failure)> {
        self.checks()
            .into_iter()
            .filter_map(|(n, c)| match c {
                Check::Failed(f) => Some((n, f)),
                _ => None,
            })
            .collect()
    }
}

/// Result of verifying a signed message.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// One report per SignerInfo, in message order.
    pub signers: Vec<SignerReport>,
    /// The From and Sender addresses the address check used.
    pub sender_addresses: Vec<String>,
    /// Every certificate the message carried (for harvesting partner
    /// certificates once the signature is trusted).
    pub certificates: Vec<Certificate>,
}

impl VerifyReport {
    /// Whether the message has at least one signer and every signer passed
    /// every check (the strict rule OpenSSL applies).
    /// A message whose signers all passed, one of them over a weak
    /// algorithm, is not valid: see [`VerifyReport::verdict`].
    pub fn is_valid(&self) -> bool {
        self.verdict() == Verdict::Valid
    }

    /// The message's verdict: [`Verdict::Valid`] when it has signers and
    /// every one is valid; [`Verdict::ValidWeak`] (with every weak
    /// algorithm met) when every signer passed every check and some relied
    /// on a weak algorithm; otherwise [`Verdict::Invalid`].
    pub fn verdict(&self) -> Verdict {
        if self.signers.is_empty() {
            return Verdict::Invalid;
        }
        let mut weak = Vec::new();
        for s in &self.signers {
            match s.verdict() {
                Verdict::Valid => {}
                Verdict::ValidWeak(w) => {
                    for a in w {
                        if !weak.contains(&a) {
                            weak.push(a);
                        }
                    }
                }
                _ => return Verdict::Invalid,
            }
        }
        if weak.is_empty() {
            Verdict::Valid
        } else {
            Verdict::ValidWeak(weak)
        }
    }
}
