//! The little cryptography core needs outside the certificate maker: a
//! SHA-256 digest for fingerprints, random bytes, and reading the public half
//! of a private key so a key can be checked against its certificate.
//!
//! Each function has one body per provider feature. When both `aws-lc-rs` and
//! `ring` are enabled (two crates in one build asked for different ones),
//! aws-lc-rs is used, as rustls itself prefers it.

use rustls_pki_types::PrivateKeyDer;

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs as provider;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring as provider;

use crate::key::{KeyAlgorithm, PublicKeyInfo};

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = provider::digest::digest(&provider::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Fills `buf` from the operating system's random source; false when that
/// source failed (only possible when the OS entropy source is gone).
#[cfg_attr(not(feature = "maker"), allow(dead_code))]
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    use provider::rand::SecureRandom;
    provider::rand::SystemRandom::new().fill(buf).is_ok()
}

/// The public half of a PKCS#8, PKCS#1 or SEC1 private key, or `None` when
/// the provider cannot read the key (malformed, or a type it lacks: ring has
/// no P-521).
pub(crate) fn public_key_of(key: &PrivateKeyDer<'_>) -> Option<PublicKeyInfo> {
    use provider::signature::{self as sig, KeyPair};
    match key {
        PrivateKeyDer::Pkcs1(der) => {
            let pair = sig::RsaKeyPair::from_der(der.secret_pkcs1_der()).ok()?;
            rsa_info(pair.public_key().as_ref())
        }
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            if let Ok(pair) = sig::RsaKeyPair::from_pkcs8(der) {
                return rsa_info(pair.public_key().as_ref());
            }
            if let Ok(pair) = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                return Some(PublicKeyInfo {
                    algorithm: KeyAlgorithm::Ed25519,
                    raw: pair.public_key().as_ref().to_vec(),
                });
            }
            ecdsa_pkcs8(der)
        }
        PrivateKeyDer::Sec1(der) => ecdsa_sec1(der.secret_sec1_der()),
        _ => None,
    }
}

#[cfg(feature = "aws-lc-rs")]
fn ecdsa_pkcs8(der: &[u8]) -> Option<PublicKeyInfo> {
    use aws_lc_rs::signature::{self as sig, KeyPair};
    ECDSA_CURVES.iter().find_map(|(alg, algorithm)| {
        let pair = sig::EcdsaKeyPair::from_pkcs8(alg, der).ok()?;
        Some(PublicKeyInfo {
            algorithm: *algorithm,
            raw: pair.public_key().as_ref().to_vec(),
        })
    })
}

#[cfg(feature = "aws-lc-rs")]
fn ecdsa_sec1(der: &[u8]) -> Option<PublicKeyInfo> {
    use aws_lc_rs::signature::{self as sig, KeyPair};
    ECDSA_CURVES.iter().find_map(|(alg, algorithm)| {
        let pair = sig::EcdsaKeyPair::from_private_key_der(alg, der).ok()?;
        Some(PublicKeyInfo {
            algorithm: *algorithm,
            raw: pair.public_key().as_ref().to_vec(),
        })
    })
}

#[cfg(feature = "aws-lc-rs")]
static ECDSA_CURVES: [(&aws_lc_rs::signature::EcdsaSigningAlgorithm, KeyAlgorithm); 3] = [
    (
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP256,
    ),
    (
        &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP384,
    ),
    (
        &aws_lc_rs::signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP521,
    ),
];

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
static ECDSA_CURVES: [(&ring::signature::EcdsaSigningAlgorithm, KeyAlgorithm, &[u8]); 2] = [
    (
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP256,
        // OID 1.2.840.10045.3.1.7 (prime256v1), DER.
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    ),
    (
        &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeyAlgorithm::EcdsaP384,
        // OID 1.3.132.0.34 (secp384r1), DER.
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    ),
];

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn ecdsa_pkcs8(der: &[u8]) -> Option<PublicKeyInfo> {
    use ring::signature::{self as sig, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    ECDSA_CURVES.iter().find_map(|(alg, algorithm, _)| {
        let pair = sig::EcdsaKeyPair::from_pkcs8(alg, der, &rng).ok()?;
        Some(PublicKeyInfo {
            algorithm: *algorithm,
            raw: pair.public_key().as_ref().to_vec(),
        })
    })
}

/// ring reads ECDSA keys only as PKCS#8, so a SEC1 key (what `openssl
/// ecparam -genkey` writes) is wrapped in a PKCS#8 envelope for each curve
/// ring knows until one fits, as rustls does for its ring provider.
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn ecdsa_sec1(der: &[u8]) -> Option<PublicKeyInfo> {
    use ring::signature::{self as sig, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    ECDSA_CURVES.iter().find_map(|(alg, algorithm, curve_oid)| {
        let pkcs8 = wrap_sec1_in_pkcs8(der, curve_oid);
        let pair = sig::EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng).ok()?;
        Some(PublicKeyInfo {
            algorithm: *algorithm,
            raw: pair.public_key().as_ref().to_vec(),
        })
    })
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn wrap_sec1_in_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    // OID 1.2.840.10045.2.1 (id-ecPublicKey), DER.
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let mut algorithm = EC_PUBLIC_KEY.to_vec();
    algorithm.extend_from_slice(curve_oid);
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    der_push(&mut body, 0x30, &algorithm);
    der_push(&mut body, 0x04, sec1);
    let mut out = Vec::with_capacity(body.len() + 4);
    der_push(&mut out, 0x30, &body);
    out
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// The algorithm of an RSA key from its DER RSAPublicKey (SEQUENCE of modulus
/// and exponent), the bytes a certificate's SubjectPublicKeyInfo holds.
fn rsa_info(rsa_public_key: &[u8]) -> Option<PublicKeyInfo> {
    let modulus = der_first_integer(rsa_public_key)?;
    Some(PublicKeyInfo {
        algorithm: KeyAlgorithm::Rsa {
            bits: crate::key::bit_length(modulus),
        },
        raw: rsa_public_key.to_vec(),
    })
}

/// The contents of the first INTEGER inside a DER SEQUENCE.
fn der_first_integer(der: &[u8]) -> Option<&[u8]> {
    let (tag, inner, _) = der_read(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, integer, _) = der_read(inner)?;
    (tag == 0x02).then_some(integer)
}

/// One DER element: its tag, its contents and what follows it.
fn der_read(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256(b"")[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256 of nothing begins e3b0c442"
        );
    }

    #[test]
    fn der_reader_refuses_truncation() {
        assert_eq!(
            der_first_integer(&[0x30, 0x03, 0x02, 0x01, 0x05]),
            Some(&[5u8][..])
        );
        assert_eq!(der_first_integer(&[0x30, 0x04, 0x02, 0x01, 0x05]), None);
        assert_eq!(der_first_integer(&[0x30, 0x82, 0x00]), None);
        assert_eq!(der_first_integer(&[0x31, 0x03, 0x02, 0x01, 0x05]), None);
        assert_eq!(der_first_integer(&[]), None);
    }

    #[test]
    fn garbage_is_no_key() {
        let key = PrivateKeyDer::try_from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        if let Ok(key) = key {
            assert!(public_key_of(&key).is_none());
        }
    }
}
