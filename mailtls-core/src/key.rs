//! Key algorithms and private keys.

use std::fmt;

use rustls_pki_types::PrivateKeyDer;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};
use x509_parser::public_key::PublicKey;

/// The algorithm and size of a public or private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA with a modulus of this many bits.
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
    /// Anything else (DSA, GOST, unknown curves).
    Other,
}

/// The broad family of a key, which is what TLS signature-scheme negotiation
/// and certificate selection care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyFamily {
    /// ECDSA on any curve.
    Ecdsa,
    /// Ed25519.
    Ed25519,
    /// RSA.
    Rsa,
    /// Anything else.
    Other,
}

impl KeyAlgorithm {
    /// The key's family.
    pub fn family(self) -> KeyFamily {
        match self {
            KeyAlgorithm::Rsa { .. } => KeyFamily::Rsa,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::EcdsaP521 => {
                KeyFamily::Ecdsa
            }
            KeyAlgorithm::Ed25519 => KeyFamily::Ed25519,
            KeyAlgorithm::Other => KeyFamily::Other,
        }
    }

    /// Key size in bits (RSA modulus, curve size; 256 for Ed25519; 0 if unknown).
    pub fn bits(self) -> u32 {
        match self {
            KeyAlgorithm::Rsa { bits } => bits,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519 => 256,
            KeyAlgorithm::EcdsaP384 => 384,
            KeyAlgorithm::EcdsaP521 => 521,
            KeyAlgorithm::Other => 0,
        }
    }

    /// Reads the algorithm from a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(spki: &[u8]) -> Option<Self> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki).ok()?;
        Some(Self::from_spki(&spki))
    }

    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Self {
        let oid = &spki.algorithm.algorithm;
        if *oid == OID_PKCS1_RSAENCRYPTION || *oid == OID_PKCS1_RSASSAPSS {
            return match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => KeyAlgorithm::Rsa {
                    bits: bit_length(rsa.modulus),
                },
                _ => KeyAlgorithm::Other,
            };
        }
        if *oid == OID_SIG_ED25519 {
            return KeyAlgorithm::Ed25519;
        }
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            return match curve {
                Some(c) if c == OID_EC_P256 => KeyAlgorithm::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => KeyAlgorithm::EcdsaP384,
                Some(c) if c == OID_NIST_EC_P521 => KeyAlgorithm::EcdsaP521,
                _ => KeyAlgorithm::Other,
            };
        }
        KeyAlgorithm::Other
    }
}

/// Bit length of a big-endian unsigned integer (x509-parser's own count
/// assumes a leading zero byte, which not every encoder writes).
pub(crate) fn bit_length(be: &[u8]) -> u32 {
    let trimmed = match be.iter().position(|b| *b != 0) {
        Some(i) => &be[i..],
        None => return 0,
    };
    let lead = trimmed[0].leading_zeros();
    // A modulus longer than u32::MAX bits cannot be parsed out of a certificate.
    u32::try_from(trimmed.len() * 8).unwrap_or(u32::MAX) - lead
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyAlgorithm::EcdsaP521 => f.write_str("ECDSA P-521"),
            KeyAlgorithm::Ed25519 => f.write_str("Ed25519"),
            KeyAlgorithm::Other => f.write_str("other"),
        }
    }
}

/// The public half of a parsed private key: its algorithm and the raw public
/// key bytes, as they appear inside a certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Algorithm and size.
    pub algorithm: KeyAlgorithm,
    /// The subjectPublicKey BIT STRING contents.
    pub raw: Vec<u8>,
}

/// Parses a private key (PKCS#8, PKCS#1 or SEC1) and returns its public half,
/// or `None` when the key is of no supported type or malformed.
///
/// Needs a provider feature (`aws-lc-rs` or `ring`); with ring, P-521 keys
/// are not supported.
pub fn public_key_of(key: &PrivateKeyDer<'_>) -> Option<PublicKeyInfo> {
    crate::crypto::public_key_of(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_without_leading_zero() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
    }

    #[test]
    #[cfg(all(feature = "maker", any(feature = "aws-lc-rs", feature = "ring")))]
    fn detects_generated_key_types() {
        for (alg, want) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyAlgorithm::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyAlgorithm::EcdsaP384),
            (&rcgen::PKCS_ED25519, KeyAlgorithm::Ed25519),
        ] {
            let kp = rcgen::KeyPair::generate_for(alg).unwrap();
            let der = PrivateKeyDer::try_from(kp.serialize_der()).unwrap();
            assert_eq!(public_key_of(&der).unwrap().algorithm, want);
        }
    }

    // ring cannot generate RSA keys, so this half runs on aws-lc-rs only.
    #[test]
    #[cfg(all(feature = "maker", feature = "aws-lc-rs"))]
    fn detects_generated_rsa_key() {
        let kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let der = PrivateKeyDer::try_from(kp.serialize_der()).unwrap();
        assert_eq!(
            public_key_of(&der).unwrap().algorithm,
            KeyAlgorithm::Rsa { bits: 2048 }
        );
    }
}
