//! Verification of signed messages (RFC 8551 section 3.5, RFC 5652 section
//! 5.6), with path building to configured trust anchors and the RFC 8550
//! certificate checks.

mod chain;
pub mod report;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    self, RsaParameters, RsaPssSaltLength, UnparsedPublicKey, VerificationAlgorithm,
};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::time::Time;

use crate::algorithms::{
    ATTR_CONTENT_TYPE, ATTR_ENCRYPTION_KEY_PREFERENCE, ATTR_MESSAGE_DIGEST,
    ATTR_SIGNING_CERTIFICATE_V2, ATTR_SIGNING_TIME, ATTR_SMIME_CAPABILITIES, DigestAlgorithm,
    EC_PUBLIC_KEY, ED25519, ID_SIGNED_DATA, PssParams, RSA_ENCRYPTION, RSASSA_PSS, SECP256R1,
    SECP384R1, SECP521R1, SmimeCapabilities,
};
use crate::ber;
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::mime::canon::to_crlf;
use crate::mime::parse::{self, Layer};
pub use report::{Check, Failure, SignerReport, Verdict, VerifyReport, WeakAlgorithm};

const EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
const ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const ECDSA_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// A verified (or not) signed message.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed MIME entity (Content-* headers and body), as signed.
    pub content: Vec<u8>,
    /// The message's header fields other than Content-*, CRLF-ended.
    pub outer_headers: Vec<u8>,
    /// What held and what failed.
    pub report: VerifyReport,
}

impl Verified {
    /// The message with the signature layer removed: outer headers, then
    /// the signed entity.
    pub fn message(&self) -> Vec<u8> {
        let mut m = self.outer_headers.clone();
        m.extend_from_slice(b"MIME-Version: 1.0\r\n");
        m.extend_from_slice(&self.content);
        m
    }
}

/// Verifies signed messages against a set of trust anchors.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    anchors: Vec<Certificate>,
    at: Option<SystemTime>,
}

impl Verifier {
    /// A verifier trusting `anchors` (root or intermediate CA certificates).
    pub fn new(anchors: Vec<Certificate>) -> Self {
        Self { anchors, at: None }
    }

    /// Checks validity at `time` instead of now (for archived mail, tests).
    pub fn at_time(mut self, time: SystemTime) -> Self {
        self.at = Some(time);
        self
    }

    /// Verifies a received message in either form (multipart/signed or
    /// application/pkcs7-mime signed-data, including the `x-` and `.p7m` /
    /// `.p7s` variants). `Err` means the input is not a signed message or
    /// its CMS cannot be read; a bad signature is an `Ok` whose report
    /// says what failed.
    pub fn verify_message(&self, message: &[u8]) -> Result<Verified> {
        let received = parse::parse(message)?;
        let (content, report) = match received.layer {
            Layer::Detached { content, signature } => {
                // Try the canonical (CRLF) form first, then the exact bytes
                // received, so LF-only stores still verify.
                let canonical = to_crlf(&content);
                let report = self.verify_cms(&signature, Some(&canonical), &received.from)?;
                if report.signers.iter().any(|s| s.signature.passed()) || canonical == content {
                    (canonical, report)
                } else {
                    let exact = self.verify_cms(&signature, Some(&content), &received.from)?;
                    if exact.signers.iter().any(|s| s.signature.passed()) {
                        (content, exact)
                    } else {
                        (canonical, report)
                    }
                }
            }
            Layer::Opaque { cms } => {
                let der = ber::to_der(&cms)?;
                let sd = signed_data(&der)?;
                let content = econtent(&sd)?;
                let report =
                    self.verify_signed_data(&sd, &Content::Bytes(&content), &received.from)?;
                (content, report)
            }
            Layer::Plain => return Err(Error::NotSmime("the message is not signed".into())),
        };
        Ok(Verified {
            content,
            outer_headers: received.outer,
            report,
        })
    }

    /// Verifies a CMS SignedData (DER or BER) over `detached_content`, or
    /// over its encapsulated content when that is `None`.
    pub fn verify_cms(
        &self,
        cms: &[u8],
        detached_content: Option<&[u8]>,
        sender_addresses: &[String],
    ) -> Result<VerifyReport> {
        let der = ber::to_der(cms)?;
        let sd = signed_data(&der)?;
        let content = match detached_content {
            Some(c) => c.to_vec(),
            None => econtent(&sd)?,
        };
        self.verify_signed_data(&sd, &Content::Bytes(&content), sender_addresses)
    }

    fn now(&self) -> u64 {
        self.at
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub(crate) fn verify_signed_data(
        &self,
        sd: &SignedData,
        content: &Content<'_>,
        senders: &[String],
    ) -> Result<VerifyReport> {
        let pool: Vec<Certificate> = sd
            .certificates
            .iter()
            .flat_map(|set| set.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c) => Certificate::from_parsed(c.clone()).ok(),
                CertificateChoices::Other(_) => None,
            })
            .collect();
        let now = self.now();
        let mut signers = Vec::new();
        for si in sd.signer_infos.0.iter() {
            let Some(cert) = pool
                .iter()
                .chain(self.anchors.iter())
                .find(|c| identifies(&si.sid, c))
            else {
                signers.push(SignerReport::not_found());
                continue;
            };
            let (signing_time, capabilities) = informational_attributes(si);
            // A SHA-1 digest is verified like any other; the weakness is
            // recorded so that the verdict is never plain "valid".
            let sha1_digest =
                DigestAlgorithm::from_oid(&si.digest_alg.oid).is_ok_and(DigestAlgorithm::is_weak);
            let sha1_signature = matches!(si.signature_algorithm.oid, SHA1_RSA | ECDSA_SHA1);
            let weak_algorithms = if sha1_digest || sha1_signature {
                vec![WeakAlgorithm::Sha1]
            } else {
                Vec::new()
            };
            let signature = Check::from_result(check_signature(
                si,
                sd.encap_content_info.econtent_type,
                content,
                cert,
            ));
            signers.push(SignerReport {
                certificate: Some(cert.clone()),
                signature,
                chain: Check::from_result(chain::path_to_anchor(cert, &pool, &self.anchors, now)),
                validity: Check::from_result(check_validity(cert, now)),
                key_usage: Check::from_result(check_key_usage(cert)),
                extended_key_usage: Check::from_result(check_eku(cert)),
                address: Check::from_result(check_address(cert, senders)),
                signing_time,
                capabilities,
                encryption_certificate: encryption_preference(si, &pool),
                weak_algorithms,
            });
        }
        Ok(VerifyReport {
            signers,
            sender_addresses: senders.to_vec(),
            certificates: pool,
        })
    }
}

/// The signed content: its bytes, or (streaming) only its digests.
pub(crate) enum Content<'a> {
    Bytes(&'a [u8]),
    Digests(&'a dyn Fn(DigestAlgorithm) -> Vec<u8>),
}

impl Content<'_> {
    fn digest(&self, alg: DigestAlgorithm) -> Vec<u8> {
        match self {
            Self::Bytes(b) => alg.digest(b),
            Self::Digests(f) => f(alg),
        }
    }
}

pub(crate) fn signed_data(der: &[u8]) -> Result<SignedData> {
    let ci = ContentInfo::from_der(der).map_err(|e| Error::cms("ContentInfo", e))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Error::NotSmime(format!(
            "CMS content type {} is not signed-data",
            ci.content_type
        )));
    }
    ci.content
        .decode_as::<SignedData>()
        .map_err(|e| Error::cms("SignedData", e))
}

pub(crate) fn econtent(sd: &SignedData) -> Result<Vec<u8>> {
    let any = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| Error::NotSmime("detached signature without content".into()))?;
    let os: OctetString = any.decode_as().map_err(|e| Error::cms("eContent", e))?;
    Ok(os.as_bytes().to_vec())
}

fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => *ias == cert.issuer_and_serial(),
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            cert.subject_key_identifier().as_deref() == Some(ski.0.as_bytes())
        }
    }
}

pub(crate) fn attr_value(si: &SignerInfo, oid: ObjectIdentifier) -> Option<&der::Any> {
    si.signed_attrs
        .as_ref()?
        .iter()
        .find(|a| a.oid == oid)
        .and_then(|a| a.values.get(0))
}

fn informational_attributes(si: &SignerInfo) -> (Option<SystemTime>, Option<SmimeCapabilities>) {
    let time = attr_value(si, ATTR_SIGNING_TIME)
        .and_then(|v| v.to_der().ok())
        .and_then(|d| Time::from_der(&d).ok())
        .map(|t| t.to_system_time());
    let caps = attr_value(si, ATTR_SMIME_CAPABILITIES)
        .and_then(|v| v.to_der().ok())
        .and_then(|d| SmimeCapabilities::from_der(&d).ok());
    (time, caps)
}

/// A verification algorithm: a fixed one, or RSA-PSS with the salt length
/// the signer's parameters name.
enum VerifyAlg {
    Fixed(&'static dyn VerificationAlgorithm),
    Pss(RsaParameters),
}

impl VerifyAlg {
    fn verify(&self, public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::Fixed(alg) => UnparsedPublicKey::new(*alg, public_key)
                .verify(msg, sig)
                .is_ok(),
            Self::Pss(params) => params.verify_sig(public_key, msg, sig).is_ok(),
        }
    }
}

/// Resolves SMIMEEncryptionKeyPreference (RFC 8551 section 2.5.3) against
/// the certificates of the message.
fn encryption_preference(si: &SignerInfo, pool: &[Certificate]) -> Option<Certificate> {
    let raw = attr_value(si, ATTR_ENCRYPTION_KEY_PREFERENCE)?
        .to_der()
        .ok()?;
    match raw.first()? {
        // issuerAndSerialNumber [0] IMPLICIT IssuerAndSerialNumber
        0xa0 => {
            let mut seq = raw.clone();
            seq[0] = 0x30;
            let ias = cms::cert::IssuerAndSerialNumber::from_der(&seq).ok()?;
            pool.iter().find(|c| c.issuer_and_serial() == ias).cloned()
        }
        // subjectAltKeyIdentifier [2] IMPLICIT SubjectKeyIdentifier
        0x82 => {
            let mut os = raw.clone();
            os[0] = 0x04;
            let ski = OctetString::from_der(&os).ok()?;
            pool.iter()
                .find(|c| c.subject_key_identifier().as_deref() == Some(ski.as_bytes()))
                .cloned()
        }
        _ => None,
    }
}

/// The verification algorithm for a SignerInfo.
fn signer_alg(si: &SignerInfo, cert: &Certificate) -> std::result::Result<VerifyAlg, Failure> {
    let unsupported = |oid: &ObjectIdentifier| Failure::UnsupportedAlgorithm(oid.to_string());
    let digest = DigestAlgorithm::from_oid(&si.digest_alg.oid)
        .map_err(|_| unsupported(&si.digest_alg.oid))?;
    let (key_alg, curve, _) = cert.public_key();
    let sig_oid = si.signature_algorithm.oid;
    use DigestAlgorithm::{Sha1, Sha256, Sha384, Sha512};
    if key_alg == RSA_ENCRYPTION && sig_oid == RSASSA_PSS {
        let (hash, salt) = PssParams::read(&si.signature_algorithm)
            .map_err(|e| Failure::UnsupportedAlgorithm(e.to_string()))?;
        if hash != digest {
            return Err(Failure::UnsupportedAlgorithm(
                "RSA-PSS hash differs from the SignerInfo digest".into(),
            ));
        }
        let salt = u16::try_from(salt)
            .map_err(|_| Failure::UnsupportedAlgorithm("RSA-PSS salt length".into()))?;
        let base = match hash {
            // aws-lc-rs has no RSA-PSS verification over SHA-1 (and no
            // client is known to write it).
            Sha1 => return Err(unsupported(&RSASSA_PSS)),
            Sha256 => signature::RSA_PSS_2048_8192_SHA256,
            Sha384 => signature::RSA_PSS_2048_8192_SHA384,
            Sha512 => signature::RSA_PSS_2048_8192_SHA512,
        };
        return Ok(VerifyAlg::Pss(
            base.with_pss_salt_length(RsaPssSaltLength::Custom(salt)),
        ));
    }
    let alg: &'static dyn VerificationAlgorithm = match (key_alg, sig_oid) {
        (RSA_ENCRYPTION, RSA_ENCRYPTION | SHA1_RSA | SHA256_RSA | SHA384_RSA | SHA512_RSA) => {
            // OpenSSL writes rsaEncryption; the hash is the SignerInfo's.
            let hash = match sig_oid {
                SHA1_RSA => Sha1,
                SHA256_RSA => Sha256,
                SHA384_RSA => Sha384,
                SHA512_RSA => Sha512,
                _ => digest,
            };
            match hash {
                Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            }
        }
        (
            EC_PUBLIC_KEY,
            ECDSA_SHA1 | ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512 | EC_PUBLIC_KEY,
        ) => {
            // OpenSSL hashes with the SignerInfo digest algorithm.
            match (curve, digest) {
                (Some(SECP256R1), Sha1) => &signature::ECDSA_P256_SHA1_ASN1,
                (Some(SECP521R1), Sha1) => &signature::ECDSA_P521_SHA1_ASN1,
                (Some(SECP521R1), Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
                (Some(SECP521R1), Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
                (Some(SECP521R1), Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
                (Some(SECP256R1), Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
                (Some(SECP256R1), Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
                (Some(SECP256R1), Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
                (Some(SECP384R1), Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
                (Some(SECP384R1), Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
                (Some(SECP384R1), Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
                (c, _) => {
                    return Err(Failure::UnsupportedAlgorithm(format!(
                        "ECDSA curve {}",
                        c.map(|o| o.to_string()).unwrap_or_default()
                    )));
                }
            }
        }
        (ED25519, ED25519) => &signature::ED25519,
        _ => return Err(unsupported(&sig_oid)),
    };
    Ok(VerifyAlg::Fixed(alg))
}

fn check_signature(
    si: &SignerInfo,
    econtent_type: ObjectIdentifier,
    content: &Content<'_>,
    cert: &Certificate,
) -> std::result::Result<(), Failure> {
    let alg = signer_alg(si, cert)?;
    let digest = DigestAlgorithm::from_oid(&si.digest_alg.oid)
        .map_err(|_| Failure::UnsupportedAlgorithm(si.digest_alg.oid.to_string()))?;
    let signed_bytes = match &si.signed_attrs {
        Some(attrs) => {
            let md = attr_value(si, ATTR_MESSAGE_DIGEST)
                .and_then(|v| v.decode_as::<OctetString>().ok())
                .ok_or(Failure::MissingAttribute("messageDigest"))?;
            if md.as_bytes() != content.digest(digest).as_slice() {
                return Err(Failure::DigestMismatch);
            }
            let ct = attr_value(si, ATTR_CONTENT_TYPE)
                .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
                .ok_or(Failure::MissingAttribute("contentType"))?;
            if ct != econtent_type {
                return Err(Failure::ContentTypeMismatch);
            }
            check_signing_certificate(si, cert)?;
            // The signature covers the DER of the attributes as a SET
            // (RFC 5652 section 5.4); signed attributes are DER already.
            attrs
                .to_der()
                .map_err(|_| Failure::MissingAttribute("signedAttrs (unencodable)"))?
        }
        None => match content {
            Content::Bytes(b) => b.to_vec(),
            // Without signed attributes the signature covers the content
            // itself, which a stream does not keep.
            Content::Digests(_) => return Err(Failure::MissingAttribute("signedAttrs")),
        },
    };
    if alg.verify(cert.public_key().2, &signed_bytes, si.signature.as_bytes()) {
        Ok(())
    } else {
        Err(Failure::BadSignature)
    }
}

/// ESSCertIDv2 (RFC 5035 section 4).
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
struct EssCertIdV2 {
    /// DEFAULT id-sha256, so absent in DER when SHA-256.
    hash_algorithm: Option<spki::AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    issuer_serial: Option<der::Any>,
}

/// SigningCertificateV2 (RFC 5035 section 3).
#[derive(Clone, Debug, Eq, PartialEq, der::Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    policies: Option<der::Any>,
}

/// If the signer named its certificate in signingCertificateV2, the
/// certificate found must be that one (RFC 5035 section 5.4: it binds the
/// signature to the certificate, against substitution).
fn check_signing_certificate(
    si: &SignerInfo,
    cert: &Certificate,
) -> std::result::Result<(), Failure> {
    let Some(value) = attr_value(si, ATTR_SIGNING_CERTIFICATE_V2) else {
        return Ok(());
    };
    let scv2: SigningCertificateV2 = value
        .decode_as()
        .map_err(|_| Failure::MissingAttribute("signingCertificateV2 (malformed)"))?;
    let first = scv2
        .certs
        .first()
        .ok_or(Failure::MissingAttribute("signingCertificateV2 (empty)"))?;
    let hash = match &first.hash_algorithm {
        None => DigestAlgorithm::Sha256,
        Some(a) => DigestAlgorithm::from_oid(&a.oid)
            .map_err(|_| Failure::UnsupportedAlgorithm(a.oid.to_string()))?,
    };
    if first.cert_hash.as_bytes() == hash.digest(cert.der()).as_slice() {
        Ok(())
    } else {
        Err(Failure::SigningCertificateMismatch)
    }
}

fn check_validity(cert: &Certificate, now: u64) -> std::result::Result<(), Failure> {
    let (nb, na) = cert.validity();
    if now < nb {
        Err(Failure::NotYetValid)
    } else if now > na {
        Err(Failure::Expired)
    } else {
        Ok(())
    }
}

fn check_key_usage(cert: &Certificate) -> std::result::Result<(), Failure> {
    match cert.key_usage() {
        None if cert.has_extension(ObjectIdentifier::new_unwrap("2.5.29.15")) => {
            Err(Failure::KeyUsageNotForSigning)
        }
        None => Ok(()),
        Some(ku) => {
            if ku.0.contains(KeyUsages::DigitalSignature)
                || ku.0.contains(KeyUsages::NonRepudiation)
            {
                Ok(())
            } else {
                Err(Failure::KeyUsageNotForSigning)
            }
        }
    }
}

fn check_eku(cert: &Certificate) -> std::result::Result<(), Failure> {
    match cert.extended_key_usage() {
        None if cert.has_extension(ObjectIdentifier::new_unwrap("2.5.29.37")) => {
            Err(Failure::NotForEmailProtection)
        }
        None => Ok(()),
        Some(eku)
            if eku
                .0
                .iter()
                .any(|o| *o == EMAIL_PROTECTION || *o == ANY_EKU) =>
        {
            Ok(())
        }
        Some(_) => Err(Failure::NotForEmailProtection),
    }
}

fn check_address(cert: &Certificate, senders: &[String]) -> std::result::Result<(), Failure> {
    if senders.is_empty() {
        return Err(Failure::NoSenderAddress);
    }
    if senders.iter().any(|s| cert.matches_address(s)) {
        Ok(())
    } else {
        Err(Failure::AddressMismatch {
            message: senders.to_vec(),
            certificate: cert.email_addresses(),
        })
    }
}
