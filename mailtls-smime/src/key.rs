//! Private keys for signing and decryption, held by aws-lc-rs.

use aws_lc_rs::agreement;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PrivateDecryptingKey;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString};
use der::{Encode, Sequence};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{
    DigestAlgorithm, ED25519, PssParams, RSA_ENCRYPTION, SECP256R1, SECP384R1, SECP521R1,
};
use crate::error::{Error, Result};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// The NIST curves an EC key may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EcCurve {
    P256,
    P384,
    P521,
}

impl EcCurve {
    const ALL: [Self; 3] = [Self::P256, Self::P384, Self::P521];

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    /// The ECDH algorithm on this curve.
    pub(crate) fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Self::P256 => &agreement::ECDH_P256,
            Self::P384 => &agreement::ECDH_P384,
            Self::P521 => &agreement::ECDH_P521,
        }
    }

    /// The curve's object identifier (namedCurve).
    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => SECP256R1,
            Self::P384 => SECP384R1,
            Self::P521 => SECP521R1,
        }
    }

    /// The curve of a namedCurve identifier.
    pub(crate) fn from_oid(oid: Option<ObjectIdentifier>) -> Option<Self> {
        Self::ALL.into_iter().find(|c| Some(c.oid()) == oid)
    }

    /// The digest a signature on this curve uses (RFC 5753 / RFC 8551
    /// pairing: the curve's strength).
    fn digest(self) -> DigestAlgorithm {
        match self {
            Self::P256 => DigestAlgorithm::Sha256,
            Self::P384 => DigestAlgorithm::Sha384,
            Self::P521 => DigestAlgorithm::Sha512,
        }
    }

    fn signature_oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => ECDSA_WITH_SHA256,
            Self::P384 => ECDSA_WITH_SHA384,
            Self::P521 => ECDSA_WITH_SHA512,
        }
    }

    /// Its name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
        }
    }
}

enum Inner {
    Rsa {
        sign: RsaKeyPair,
        decrypt: PrivateDecryptingKey,
    },
    /// ECDSA for signing and ECDH (same key) for decryption.
    Ec {
        curve: EcCurve,
        sign: EcdsaKeyPair,
        agree: agreement::PrivateKey,
    },
    Ed25519(Ed25519KeyPair),
}

/// A private key: RSA, ECDSA P-256 / P-384 / P-521 or Ed25519.
///
/// Made from PKCS #8 DER or PEM, or from a `rustls_pki_types::PrivateKeyDer`
/// (`TryFrom`, [`PrivateKey::from_der`]) as rustls and mailtls-core hold it.
pub struct PrivateKey {
    inner: Inner,
}

impl TryFrom<&PrivateKeyDer<'_>> for PrivateKey {
    type Error = Error;

    fn try_from(key: &PrivateKeyDer<'_>) -> Result<Self> {
        Self::from_der(key)
    }
}

impl TryFrom<PrivateKeyDer<'_>> for PrivateKey {
    type Error = Error;

    fn try_from(key: PrivateKeyDer<'_>) -> Result<Self> {
        Self::from_der(&key)
    }
}

/// PrivateKeyInfo (RFC 5208) around an RSAPrivateKey.
#[derive(Sequence)]
struct RsaPrivateKeyInfo {
    version: u8,
    algorithm: AlgorithmIdentifierOwned,
    private_key: OctetString,
}

fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>> {
    let info = RsaPrivateKeyInfo {
        version: 0,
        algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        private_key: OctetString::new(pkcs1)
            .map_err(|e| Error::Key(format!("PKCS #1 key: {e}")))?,
    };
    info.to_der()
        .map_err(|e| Error::Key(format!("PKCS #1 key: {e}")))
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Inner::Rsa { .. } => "RSA",
            Inner::Ec { curve, .. } => curve.name(),
            Inner::Ed25519(_) => "Ed25519",
        };
        f.debug_struct("PrivateKey").field("kind", &kind).finish()
    }
}

impl PrivateKey {
    /// Loads a PKCS #8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        if let Ok(sign) = RsaKeyPair::from_pkcs8(der) {
            let decrypt = PrivateDecryptingKey::from_pkcs8(der)
                .map_err(|e| Error::Key(format!("RSA key unusable for decryption: {e}")))?;
            return Ok(Self {
                inner: Inner::Rsa { sign, decrypt },
            });
        }
        for curve in EcCurve::ALL {
            if let Ok(sign) = EcdsaKeyPair::from_pkcs8(curve.signing(), der) {
                return Self::ec(curve, sign, der);
            }
        }
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self {
                inner: Inner::Ed25519(k),
            });
        }
        Err(Error::Key(
            "not a PKCS #8 RSA, ECDSA P-256/P-384/P-521 or Ed25519 key".into(),
        ))
    }

    /// Loads a key in any of the forms `rustls-pki-types` (and so rustls
    /// and mailtls-core) carries: PKCS #8, PKCS #1 (RSA) or SEC1 (EC).
    pub fn from_der(key: &PrivateKeyDer<'_>) -> Result<Self> {
        match key {
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8_der(k.secret_pkcs8_der()),
            // aws-lc-rs reads RSA decryption keys from PKCS #8 only: the
            // RSAPrivateKey is wrapped in a PrivateKeyInfo first.
            PrivateKeyDer::Pkcs1(k) => {
                Self::from_pkcs8_der(&rsa_pkcs1_to_pkcs8(k.secret_pkcs1_der())?)
            }
            PrivateKeyDer::Sec1(k) => Self::from_sec1_der(k.secret_sec1_der()),
            _ => Err(Error::Key("unknown private key encoding".into())),
        }
    }

    /// Loads an RFC 5915 ECPrivateKey (SEC1) on P-256, P-384 or P-521.
    fn from_sec1_der(der: &[u8]) -> Result<Self> {
        for curve in EcCurve::ALL {
            if let Ok(sign) = EcdsaKeyPair::from_private_key_der(curve.signing(), der) {
                return Self::ec(curve, sign, der);
            }
        }
        Err(Error::Key("not a SEC1 ECDSA P-256/P-384/P-521 key".into()))
    }

    /// An EC key from its signing half and the DER (PKCS #8 or SEC1) the
    /// ECDH half is read from.
    fn ec(curve: EcCurve, sign: EcdsaKeyPair, der: &[u8]) -> Result<Self> {
        let agree = agreement::PrivateKey::from_private_key_der(curve.agreement(), der)
            .map_err(|e| Error::Key(format!("{} key unusable for ECDH: {e}", curve.name())))?;
        Ok(Self {
            inner: Inner::Ec { curve, sign, agree },
        })
    }

    /// Loads the first private key block of a PEM text: `PRIVATE KEY`
    /// (PKCS #8), `RSA PRIVATE KEY` (PKCS #1) or `EC PRIVATE KEY` (SEC1).
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        match PrivateKeyDer::from_pem_slice(pem) {
            Ok(k) => Self::from_der(&k),
            Err(e) => Err(Error::Key(format!("PEM: {e}"))),
        }
    }

    /// The digest a signature with this key uses by default: SHA-256 for RSA
    /// and P-256, SHA-384 for P-384, SHA-512 for P-521 and Ed25519 (RFC 8419).
    pub fn default_digest(&self) -> DigestAlgorithm {
        match &self.inner {
            Inner::Rsa { .. } => DigestAlgorithm::Sha256,
            Inner::Ec { curve, .. } => curve.digest(),
            Inner::Ed25519(_) => DigestAlgorithm::Sha512,
        }
    }

    /// Whether the key can sign with this digest (ECDSA and Ed25519 keys are
    /// bound to one).
    /// Never SHA-1: it is read, not written.
    pub fn supports_digest(&self, digest: DigestAlgorithm) -> bool {
        if digest.is_weak() {
            return false;
        }
        match self.inner {
            Inner::Rsa { .. } => true,
            _ => digest == self.default_digest(),
        }
    }

    /// Whether this is an RSA key.
    pub fn is_rsa(&self) -> bool {
        matches!(self.inner, Inner::Rsa { .. })
    }

    /// The public key bits as they appear in a certificate's subjectPublicKey.
    pub(crate) fn public_key_bits(&self) -> &[u8] {
        match &self.inner {
            Inner::Rsa { sign, .. } => sign.public_key().as_ref(),
            Inner::Ec { sign: k, .. } => k.public_key().as_ref(),
            Inner::Ed25519(k) => k.public_key().as_ref(),
        }
    }

    /// The ECDH key and its curve (EC keys only).
    pub(crate) fn ecdh_key(&self) -> Option<(&agreement::PrivateKey, EcCurve)> {
        match &self.inner {
            Inner::Ec { agree, curve, .. } => Some((agree, *curve)),
            _ => None,
        }
    }

    pub(crate) fn rsa_decrypting_key(&self) -> Option<&PrivateDecryptingKey> {
        match &self.inner {
            Inner::Rsa { decrypt, .. } => Some(decrypt),
            _ => None,
        }
    }

    /// Signs `data`, returning the SignerInfo signatureAlgorithm and value.
    pub(crate) fn sign(
        &self,
        digest: DigestAlgorithm,
        rsa_pss: bool,
        data: &[u8],
    ) -> Result<(AlgorithmIdentifierOwned, Vec<u8>)> {
        if digest.is_weak() {
            return Err(weak_digest(digest));
        }
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa { sign, .. } => {
                let enc = match (rsa_pss, digest) {
                    (_, DigestAlgorithm::Sha1) => return Err(weak_digest(digest)),
                    (false, DigestAlgorithm::Sha256) => &signature::RSA_PKCS1_SHA256,
                    (false, DigestAlgorithm::Sha384) => &signature::RSA_PKCS1_SHA384,
                    (false, DigestAlgorithm::Sha512) => &signature::RSA_PKCS1_SHA512,
                    (true, DigestAlgorithm::Sha256) => &signature::RSA_PSS_SHA256,
                    (true, DigestAlgorithm::Sha384) => &signature::RSA_PSS_SHA384,
                    (true, DigestAlgorithm::Sha512) => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; sign.public_modulus_len()];
                sign.sign(enc, &rng, data, &mut sig)
                    .map_err(|_| Error::Crypto("RSA signature"))?;
                if rsa_pss {
                    return Ok((PssParams::for_digest(digest)?, sig));
                }
                // rsaEncryption with NULL parameters is what OpenSSL and most
                // clients write; RFC 5754 section 3.2 allows it.
                Ok((
                    AlgorithmIdentifierOwned {
                        oid: RSA_ENCRYPTION,
                        parameters: Some(Any::null()),
                    },
                    sig,
                ))
            }
            Inner::Ec { sign: k, curve, .. } => {
                if !self.supports_digest(digest) {
                    return Err(Error::Key(format!(
                        "this ECDSA key signs with {:?} only",
                        self.default_digest()
                    )));
                }
                let sig = k
                    .sign(&rng, data)
                    .map_err(|_| Error::Crypto("ECDSA signature"))?;
                Ok((
                    AlgorithmIdentifierOwned {
                        oid: curve.signature_oid(),
                        parameters: None,
                    },
                    sig.as_ref().to_vec(),
                ))
            }
            Inner::Ed25519(k) => {
                let sig = k.sign(data);
                Ok((
                    AlgorithmIdentifierOwned {
                        oid: ED25519,
                        parameters: None,
                    },
                    sig.as_ref().to_vec(),
                ))
            }
        }
    }
}

/// The refusal to sign with a weak digest (SHA-1).
pub(crate) fn weak_digest(digest: DigestAlgorithm) -> Error {
    Error::UnsupportedAlgorithm {
        what: "digest (too weak to sign with; accepted when verifying only)",
        oid: digest.oid().to_string(),
    }
}
