//! What is inside a certificate: names, validity, key, fingerprint, usages.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::key::KeyAlgorithm;
use crate::pattern::{NamePattern, PatternError};

/// Why a certificate could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {reason}")]
    Malformed {
        /// What the parser reported.
        reason: String,
    },
    /// Bytes follow the certificate's outer SEQUENCE.
    #[error("{count} trailing bytes after the certificate")]
    TrailingData {
        /// How many bytes were left.
        count: usize,
    },
    /// An extension the inspection needs (SAN, EKU) is malformed or repeated.
    #[error("bad {extension} extension: {reason}")]
    BadExtension {
        /// Which extension.
        extension: &'static str,
        /// What the parser reported.
        reason: String,
    },
}

/// One extended key usage purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtendedKeyUsage {
    /// anyExtendedKeyUsage.
    Any,
    /// id-kp-serverAuth (TLS server).
    ServerAuth,
    /// id-kp-clientAuth (TLS client).
    ClientAuth,
    /// id-kp-emailProtection (S/MIME).
    EmailProtection,
    /// id-kp-codeSigning.
    CodeSigning,
    /// id-kp-timeStamping.
    TimeStamping,
    /// id-kp-OCSPSigning.
    OcspSigning,
    /// Any other purpose, by dotted OID.
    Other(String),
}

/// Where a certificate stands relative to a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// notBefore is still in the future by this much.
    NotYetValid(Duration),
    /// Valid now, for this much longer.
    ValidFor(Duration),
    /// notAfter passed this long ago.
    Expired(Duration),
}

/// The facts about one certificate that a mail server operator or a resolver
/// needs, read once with x509-parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// Serial number as colon-separated hex.
    pub serial: String,
    /// The subject's first commonName, if any.
    pub common_name: Option<String>,
    /// dNSName SANs exactly as written in the certificate.
    pub dns_names: Vec<String>,
    /// rfc822Name SANs (e-mail addresses) exactly as written.
    pub email_addresses: Vec<String>,
    /// Legacy emailAddress attributes in the subject.
    pub subject_email_addresses: Vec<String>,
    /// iPAddress SANs.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Subject key algorithm and size.
    pub key: KeyAlgorithm,
    /// The subjectPublicKey BIT STRING contents (compare with a private key).
    pub public_key_raw: Vec<u8>,
    /// SHA-256 over the whole DER certificate.
    pub sha256_fingerprint: [u8; 32],
    /// Extended key usages; empty when the extension is absent.
    pub extended_key_usage: Vec<ExtendedKeyUsage>,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// Whether subject equals issuer.
    pub self_issued: bool,
}

impl CertInfo {
    /// Inspects a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, InspectError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| InspectError::Malformed {
            reason: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(InspectError::TrailingData { count: rest.len() });
        }
        Self::from_parsed(&cert, der)
    }

    fn from_parsed(cert: &X509Certificate<'_>, der: &[u8]) -> Result<Self, InspectError> {
        let mut dns_names = Vec::new();
        let mut email_addresses = Vec::new();
        let mut ip_addresses = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| InspectError::BadExtension {
                extension: "subjectAltName",
                reason: e.to_string(),
            })?;
        if let Some(san) = san {
            for gn in &san.value.general_names {
                match gn {
                    GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                    GeneralName::RFC822Name(m) => email_addresses.push((*m).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let extended_key_usage = cert
            .extended_key_usage()
            .map_err(|e| InspectError::BadExtension {
                extension: "extendedKeyUsage",
                reason: e.to_string(),
            })?
            .map(|eku| {
                let e = eku.value;
                let mut out = Vec::new();
                for (set, purpose) in [
                    (e.any, ExtendedKeyUsage::Any),
                    (e.server_auth, ExtendedKeyUsage::ServerAuth),
                    (e.client_auth, ExtendedKeyUsage::ClientAuth),
                    (e.email_protection, ExtendedKeyUsage::EmailProtection),
                    (e.code_signing, ExtendedKeyUsage::CodeSigning),
                    (e.time_stamping, ExtendedKeyUsage::TimeStamping),
                    (e.ocsp_signing, ExtendedKeyUsage::OcspSigning),
                ] {
                    if set {
                        out.push(purpose);
                    }
                }
                out.extend(
                    e.other
                        .iter()
                        .map(|o| ExtendedKeyUsage::Other(o.to_id_string())),
                );
                out
            })
            .unwrap_or_default();
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let subject_email_addresses = subject
            .iter_email()
            .filter_map(|e| e.as_str().ok().map(str::to_owned))
            .collect();
        let sha256_fingerprint = crate::crypto::sha256(der);
        let validity = cert.validity();
        Ok(CertInfo {
            subject: subject.to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            common_name,
            dns_names,
            email_addresses,
            subject_email_addresses,
            ip_addresses,
            not_before: unix_to_system_time(validity.not_before.timestamp()),
            not_after: unix_to_system_time(validity.not_after.timestamp()),
            key: KeyAlgorithm::from_spki(cert.public_key()),
            public_key_raw: cert.public_key().subject_public_key.data.to_vec(),
            sha256_fingerprint,
            extended_key_usage,
            is_ca: cert.is_ca(),
            self_issued: cert.subject() == cert.issuer(),
        })
    }

    /// The SHA-256 fingerprint as uppercase colon-separated hex, the way
    /// `openssl x509 -fingerprint -sha256` prints it.
    pub fn fingerprint_hex(&self) -> String {
        let mut s = String::with_capacity(95);
        for (i, b) in self.sha256_fingerprint.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02X}");
        }
        s
    }

    /// Where the certificate stands at `now`.
    pub fn expiry_at(&self, now: SystemTime) -> Expiry {
        if now < self.not_before {
            Expiry::NotYetValid(self.not_before.duration_since(now).unwrap_or_default())
        } else if now <= self.not_after {
            Expiry::ValidFor(self.not_after.duration_since(now).unwrap_or_default())
        } else {
            Expiry::Expired(now.duration_since(self.not_after).unwrap_or_default())
        }
    }

    /// How long until notAfter, measured from the system clock; `None` once it
    /// has passed.
    pub fn expires_in(&self) -> Option<Duration> {
        self.not_after.duration_since(SystemTime::now()).ok()
    }

    /// Whether `now` lies inside the validity window.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        matches!(self.expiry_at(now), Expiry::ValidFor(_))
    }

    /// The host names this certificate serves: its dNSName SANs, or, only when
    /// it has no dNSName SAN at all, its subject commonName (the legacy rule).
    /// Entries that are not valid names or patterns are returned separately so
    /// a loader can report them instead of silently serving nothing.
    pub fn server_name_patterns(&self) -> (Vec<NamePattern>, Vec<PatternError>) {
        let sources: Vec<&str> = if self.dns_names.is_empty() {
            self.common_name.as_deref().into_iter().collect()
        } else {
            self.dns_names.iter().map(String::as_str).collect()
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for s in sources {
            match NamePattern::parse(s) {
                Ok(p) if !good.contains(&p) => good.push(p),
                Ok(_) => {}
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }

    /// Whether the certificate allows the given purpose (no EKU extension
    /// means any purpose, RFC 5280 §4.2.1.12).
    pub fn allows(&self, purpose: &ExtendedKeyUsage) -> bool {
        self.extended_key_usage.is_empty()
            || self.extended_key_usage.contains(&ExtendedKeyUsage::Any)
            || self.extended_key_usage.contains(purpose)
    }
}

fn unix_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            CertInfo::from_der(b"not a cert"),
            Err(InspectError::Malformed { .. })
        ));
        assert!(matches!(
            CertInfo::from_der(&[]),
            Err(InspectError::Malformed { .. })
        ));
    }

    #[test]
    fn reads_names_key_and_eku() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "mail.example.com".to_owned(),
            "*.example.org".to_owned(),
        ])
        .unwrap();
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "postmaster@example.com".try_into().unwrap(),
        ));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.dns_names, ["mail.example.com", "*.example.org"]);
        assert_eq!(info.email_addresses, ["postmaster@example.com"]);
        assert_eq!(info.key, KeyAlgorithm::EcdsaP256);
        assert!(info.allows(&ExtendedKeyUsage::ServerAuth));
        assert!(!info.allows(&ExtendedKeyUsage::EmailProtection));
        assert_eq!(info.fingerprint_hex().len(), 95);
        let (patterns, bad) = info.server_name_patterns();
        assert_eq!(patterns.len(), 2);
        assert!(bad.is_empty());
        assert!(info.is_valid_at(SystemTime::now()));
    }
}
