//! One S/MIME certificate, inspected once, and whether it may be used to
//! encrypt to or to sign for an address.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use mailtls_core::inspect::InspectError;
use mailtls_core::{CertInfo, CertificateDer, Expiry, ExtendedKeyUsage, KeyFamily, LoadError};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::address::Address;

/// Why bytes could not be taken as certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// PEM/DER loading failed (names the source).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The certificate could not be inspected.
    #[error("{source_name}: {error}")]
    Inspect {
        /// Where the certificate came from.
        source_name: String,
        /// What inspection reported.
        error: InspectError,
    },
    /// The keyUsage extension is malformed.
    #[error("{source_name}: bad keyUsage extension: {reason}")]
    KeyUsage {
        /// Where the certificate came from.
        source_name: String,
        /// What the parser reported.
        reason: String,
    },
}

/// The keyUsage bits S/MIME cares about (RFC 8550 §4.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyUsageBits {
    /// digitalSignature.
    pub digital_signature: bool,
    /// nonRepudiation (contentCommitment).
    pub non_repudiation: bool,
    /// keyEncipherment (RSA key transport).
    pub key_encipherment: bool,
    /// keyAgreement (ECDH).
    pub key_agreement: bool,
}

/// Why a certificate cannot be used for what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    /// notBefore is in the future.
    #[error("not valid yet")]
    NotYetValid,
    /// notAfter has passed.
    #[error("expired")]
    Expired,
    /// The extendedKeyUsage extension lists neither emailProtection nor
    /// anyExtendedKeyUsage.
    #[error("extended key usage does not include emailProtection")]
    NoEmailProtection,
    /// keyUsage is present but lacks the bit the operation needs.
    #[error("key usage lacks {needed}")]
    KeyUsage {
        /// The missing bit (or bits, for signing).
        needed: &'static str,
    },
    /// The key type cannot do this (Ed25519 cannot encrypt, for example).
    #[error("a {family:?} key cannot be used for this")]
    KeyType {
        /// The key family.
        family: KeyFamily,
    },
    /// A CA certificate is not an end-entity certificate.
    #[error("is a CA certificate")]
    CaCertificate,
    /// Disabled by the operator.
    #[error("disabled")]
    Disabled,
}

/// A certificate's SHA-256 fingerprint: the identity the stores key on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses 64 hex digits (colons allowed, any case).
    pub fn parse_hex(s: &str) -> Option<Self> {
        let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Fingerprint::parse_hex(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a SHA-256 fingerprint")))
    }
}

/// A certificate with what the gateway needs to know about it, read once.
/// Cloning is cheap (shared).
#[derive(Clone)]
pub struct SmimeCertificate(Arc<Inner>);

struct Inner {
    der: CertificateDer<'static>,
    info: CertInfo,
    key_usage: Option<KeyUsageBits>,
    addresses: Vec<Address>,
}

impl fmt::Debug for SmimeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmimeCertificate")
            .field("subject", &self.0.info.subject)
            .field("addresses", &self.0.addresses)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl PartialEq for SmimeCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.0.der == other.0.der
    }
}

impl Eq for SmimeCertificate {}

impl SmimeCertificate {
    /// Inspects one DER certificate; `source` names it in errors.
    pub fn from_der(der: CertificateDer<'static>, source: &str) -> Result<Self, CertificateError> {
        let info = CertInfo::from_der(&der).map_err(|error| CertificateError::Inspect {
            source_name: source.to_owned(),
            error,
        })?;
        let key_usage = match X509Certificate::from_der(&der) {
            Ok((_, cert)) => cert
                .key_usage()
                .map_err(|e| CertificateError::KeyUsage {
                    source_name: source.to_owned(),
                    reason: e.to_string(),
                })?
                .map(|ku| KeyUsageBits {
                    digital_signature: ku.value.digital_signature(),
                    non_repudiation: ku.value.non_repudiation(),
                    key_encipherment: ku.value.key_encipherment(),
                    key_agreement: ku.value.key_agreement(),
                }),
            // CertInfo parsed the same bytes; report rather than assume.
            Err(e) => {
                return Err(CertificateError::Inspect {
                    source_name: source.to_owned(),
                    error: InspectError::Malformed {
                        reason: e.to_string(),
                    },
                });
            }
        };
        let mut addresses: Vec<Address> = Vec::new();
        // Names that are not valid addresses cannot be looked up, so they
        // are left out rather than refusing the whole certificate.
        for a in info
            .email_addresses
            .iter()
            .chain(&info.subject_email_addresses)
            .filter_map(|s| Address::parse(s).ok())
        {
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        Ok(SmimeCertificate(Arc::new(Inner {
            der,
            info,
            key_usage,
            addresses,
        })))
    }

    /// Reads every certificate from PEM (several sections allowed) or one DER
    /// certificate, as an upload form or a file delivers them.
    pub fn from_pem_or_der(bytes: &[u8], source: &str) -> Result<Vec<Self>, CertificateError> {
        mailtls_core::load::certificates_from_bytes(bytes, source)?
            .into_iter()
            .enumerate()
            .map(|(i, der)| Self::from_der(der, &format!("{source} #{i}")))
            .collect()
    }

    /// The DER bytes.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.0.der
    }

    /// What inspection found.
    pub fn info(&self) -> &CertInfo {
        &self.0.info
    }

    /// The keyUsage bits, `None` when the extension is absent.
    pub fn key_usage(&self) -> Option<KeyUsageBits> {
        self.0.key_usage
    }

    /// The mail addresses the certificate names: rfc822Name SANs, then legacy
    /// emailAddress attributes of the subject, without repeats.
    pub fn addresses(&self) -> &[Address] {
        &self.0.addresses
    }

    /// Whether the certificate names `address`.
    pub fn names(&self, address: &Address) -> bool {
        self.0.addresses.contains(address)
    }

    /// The SHA-256 fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.0.info.sha256_fingerprint)
    }

    fn check_common(&self, now: SystemTime) -> Result<(), Unusable> {
        match self.0.info.expiry_at(now) {
            Expiry::NotYetValid(_) => return Err(Unusable::NotYetValid),
            Expiry::Expired(_) => return Err(Unusable::Expired),
            Expiry::ValidFor(_) => {}
        }
        if self.0.info.is_ca {
            return Err(Unusable::CaCertificate);
        }
        if !self.0.info.allows(&ExtendedKeyUsage::EmailProtection) {
            return Err(Unusable::NoEmailProtection);
        }
        Ok(())
    }

    /// Whether mail may be encrypted to this certificate at `now`: valid,
    /// an end-entity certificate, emailProtection allowed, and a key (and
    /// keyUsage, when present) fit for key transport (RSA: keyEncipherment)
    /// or key agreement (EC: keyAgreement).
    pub fn check_encryption(&self, now: SystemTime) -> Result<(), Unusable> {
        self.check_common(now)?;
        let needed = match self.0.info.key.family() {
            KeyFamily::Rsa => "keyEncipherment",
            KeyFamily::Ecdsa => "keyAgreement",
            family => return Err(Unusable::KeyType { family }),
        };
        if let Some(ku) = self.0.key_usage {
            let ok = match needed {
                "keyEncipherment" => ku.key_encipherment,
                _ => ku.key_agreement,
            };
            if !ok {
                return Err(Unusable::KeyUsage { needed });
            }
        }
        Ok(())
    }

    /// Whether the certificate's key may sign mail at `now`: valid, an
    /// end-entity certificate, emailProtection allowed, and keyUsage (when
    /// present) with digitalSignature or nonRepudiation (RFC 8550 §4.4.2).
    pub fn check_signing(&self, now: SystemTime) -> Result<(), Unusable> {
        self.check_common(now)?;
        if let KeyFamily::Other = self.0.info.key.family() {
            return Err(Unusable::KeyType {
                family: KeyFamily::Other,
            });
        }
        if let Some(ku) = self.0.key_usage
            && !(ku.digital_signature || ku.non_repudiation)
        {
            return Err(Unusable::KeyUsage {
                needed: "digitalSignature or nonRepudiation",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::test_certs::{Spec, TestCa};
    use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

    fn cert(ca: &TestCa, spec: &Spec) -> SmimeCertificate {
        SmimeCertificate::from_der(CertificateDer::from(ca.issue(spec).der), "test").unwrap()
    }

    #[test]
    fn addresses_from_san_and_legacy_subject_without_repeats() {
        let ca = TestCa::new();
        let mut spec = Spec::email(&["Alice@Example.com", "alice@example.com", "not an address"]);
        spec.subject_email = Some("a.legacy@example.com".into());
        let c = cert(&ca, &spec);
        let got: Vec<String> = c.addresses().iter().map(ToString::to_string).collect();
        assert_eq!(got, ["alice@example.com", "a.legacy@example.com"]);
        assert!(c.names(&Address::parse("ALICE@example.COM").unwrap()));
    }

    #[test]
    fn encryption_and_signing_checks() {
        let ca = TestCa::new();
        let now = SystemTime::now();
        let ok = cert(&ca, &Spec::email(&["a@example.com"]));
        assert_eq!(ok.check_encryption(now), Ok(()));
        assert_eq!(ok.check_signing(now), Ok(()));
        let rsa = cert(&ca, &Spec::rsa(&["a@example.com"]));
        assert_eq!(rsa.check_encryption(now), Ok(()));

        let mut s = Spec::email(&["a@example.com"]);
        s.eku = Some(vec![Eku::ServerAuth]);
        assert_eq!(
            cert(&ca, &s).check_encryption(now),
            Err(Unusable::NoEmailProtection)
        );
        // No EKU extension at all means any purpose.
        s.eku = None;
        assert_eq!(cert(&ca, &s).check_encryption(now), Ok(()));
        s.eku = Some(vec![Eku::Any]);
        assert_eq!(cert(&ca, &s).check_encryption(now), Ok(()));

        let mut s = Spec::email(&["a@example.com"]);
        s.key_usage = Some(vec![Ku::DigitalSignature]);
        let sign_only = cert(&ca, &s);
        assert_eq!(
            sign_only.check_encryption(now),
            Err(Unusable::KeyUsage {
                needed: "keyAgreement"
            })
        );
        assert_eq!(sign_only.check_signing(now), Ok(()));
        s.key_usage = Some(vec![Ku::KeyAgreement]);
        assert!(matches!(
            cert(&ca, &s).check_signing(now),
            Err(Unusable::KeyUsage { .. })
        ));
        // RSA needs keyEncipherment, keyAgreement does not do.
        let mut s = Spec::rsa(&["a@example.com"]);
        s.key_usage = Some(vec![Ku::KeyAgreement]);
        assert_eq!(
            cert(&ca, &s).check_encryption(now),
            Err(Unusable::KeyUsage {
                needed: "keyEncipherment"
            })
        );

        let mut s = Spec::email(&["a@example.com"]);
        s.alg = &rcgen::PKCS_ED25519;
        s.key_usage = None;
        let ed = cert(&ca, &s);
        assert!(matches!(
            ed.check_encryption(now),
            Err(Unusable::KeyType { .. })
        ));
        assert_eq!(ed.check_signing(now), Ok(()));

        let mut s = Spec::email(&["a@example.com"]);
        s.not_before_days = -30;
        s.not_after_days = -1;
        assert_eq!(cert(&ca, &s).check_encryption(now), Err(Unusable::Expired));
        s.not_before_days = 2;
        s.not_after_days = 30;
        assert_eq!(cert(&ca, &s).check_signing(now), Err(Unusable::NotYetValid));

        let mut s = Spec::email(&["a@example.com"]);
        s.is_ca = true;
        assert_eq!(
            cert(&ca, &s).check_encryption(now),
            Err(Unusable::CaCertificate)
        );
    }

    #[test]
    fn fingerprint_hex_round_trip() {
        let ca = TestCa::new();
        let c = cert(&ca, &Spec::email(&["a@example.com"]));
        let fp = c.fingerprint();
        assert_eq!(Fingerprint::parse_hex(&fp.to_string()), Some(fp));
        assert_eq!(
            Fingerprint::parse_hex(&c.info().fingerprint_hex()),
            Some(fp)
        );
        assert_eq!(Fingerprint::parse_hex("abcd"), None);
        assert_eq!(Fingerprint::parse_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn garbage_uploads_are_typed_errors() {
        assert!(matches!(
            SmimeCertificate::from_pem_or_der(b"garbage", "upload"),
            Err(CertificateError::Load(_))
        ));
        assert!(SmimeCertificate::from_pem_or_der(b"", "upload").is_err());
    }
}
