//! The one place this crate does cryptography outside rustls: account-key
//! generation and JWS signatures (ES256, ES384, RS256), SHA-256 (JWK
//! thumbprints, dns-01 and tls-alpn-01 digests, storage names), HMAC-SHA256
//! (External Account Binding) and random numbers, through whichever
//! provider feature is on: `aws-lc-rs` or `ring` (aws-lc-rs when both are).
//!
//! aws-lc-rs mirrors ring's API, so one body serves both; the few calls
//! that differ (ECDSA key loading and generation, RSA key generation) are
//! split by `cfg`.

use std::sync::Arc;

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs as backend;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring as backend;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "mailtls-acme needs a crypto provider: enable the `aws-lc-rs` or the `ring` feature"
);

use backend::rand::{SecureRandom, SystemRandom};
use backend::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RsaKeyPair,
};
use rustls::crypto::CryptoProvider;

use crate::error::AcmeError;
use crate::key::SigningAlgorithm;

/// The name of the provider in use, for error messages and docs.
pub(crate) const PROVIDER_NAME: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// The rustls provider to use when the caller named none: the process
/// default if the application installed one, else this crate's feature.
pub(crate) fn default_provider() -> Arc<CryptoProvider> {
    if let Some(p) = CryptoProvider::get_default() {
        return Arc::clone(p);
    }
    #[cfg(feature = "aws-lc-rs")]
    let p = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let p = rustls::crypto::ring::default_provider();
    Arc::new(p)
}

fn failed(what: &str) -> impl FnOnce(backend::error::Unspecified) -> AcmeError + '_ {
    move |_| AcmeError::Key(format!("{what} failed ({PROVIDER_NAME})"))
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = backend::digest::digest(&backend::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = backend::hmac::Key::new(backend::hmac::HMAC_SHA256, key);
    backend::hmac::sign(&key, data).as_ref().to_vec()
}

/// A random `u64` from the system's secure generator.
pub(crate) fn random_u64() -> Result<u64, AcmeError> {
    let mut buf = [0u8; 8];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(failed("random number generation"))?;
    Ok(u64::from_le_bytes(buf))
}

/// A fresh key for `alg`, as PKCS#8 DER.
pub(crate) fn generate_pkcs8(alg: SigningAlgorithm) -> Result<Vec<u8>, AcmeError> {
    let rng = SystemRandom::new();
    match alg {
        SigningAlgorithm::Es256 => ecdsa_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
        SigningAlgorithm::Es384 => ecdsa_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng),
        SigningAlgorithm::Rs256 => rsa2048_pkcs8(),
    }
}

fn ecdsa_pkcs8(
    alg: &'static signature::EcdsaSigningAlgorithm,
    rng: &SystemRandom,
) -> Result<Vec<u8>, AcmeError> {
    Ok(EcdsaKeyPair::generate_pkcs8(alg, rng)
        .map_err(failed("ECDSA key generation"))?
        .as_ref()
        .to_vec())
}

#[cfg(feature = "aws-lc-rs")]
fn rsa2048_pkcs8() -> Result<Vec<u8>, AcmeError> {
    use aws_lc_rs::encoding::AsDer;
    let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(failed("RSA key generation"))?;
    Ok(kp
        .as_der()
        .map_err(failed("RSA key encoding"))?
        .as_ref()
        .to_vec())
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn rsa2048_pkcs8() -> Result<Vec<u8>, AcmeError> {
    Err(AcmeError::Key(
        "ring cannot generate RSA keys: load an existing RS256 key, or enable the `aws-lc-rs` feature"
            .into(),
    ))
}

fn ecdsa_from_pkcs8(
    alg: &'static signature::EcdsaSigningAlgorithm,
    der: &[u8],
) -> Result<EcdsaKeyPair, backend::error::KeyRejected> {
    #[cfg(feature = "aws-lc-rs")]
    return EcdsaKeyPair::from_pkcs8(alg, der);
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return EcdsaKeyPair::from_pkcs8(alg, der, &SystemRandom::new());
}

/// A public key in the parts a JWK (RFC 7517) needs, big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicParts {
    /// An EC point: the curve (`P-256`/`P-384`) and its coordinates.
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// An RSA key: modulus and exponent without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

enum Pair {
    Ec(EcdsaKeyPair, SigningAlgorithm),
    Rsa(RsaKeyPair),
}

/// A loaded signing key.
pub(crate) struct SigningKey {
    pair: Pair,
}

impl SigningKey {
    /// Loads PKCS#8 DER: ECDSA P-256, P-384, or RSA.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, AcmeError> {
        let pair = if let Ok(kp) = ecdsa_from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Pair::Ec(kp, SigningAlgorithm::Es256)
        } else if let Ok(kp) = ecdsa_from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            Pair::Ec(kp, SigningAlgorithm::Es384)
        } else {
            let kp = RsaKeyPair::from_pkcs8(der).map_err(|e| {
                AcmeError::Key(format!("not a PKCS#8 ECDSA P-256/P-384 or RSA key ({e})"))
            })?;
            Pair::Rsa(kp)
        };
        Ok(SigningKey { pair })
    }

    /// The JOSE algorithm this key signs with.
    pub(crate) fn algorithm(&self) -> SigningAlgorithm {
        match &self.pair {
            Pair::Ec(_, a) => *a,
            Pair::Rsa(_) => SigningAlgorithm::Rs256,
        }
    }

    /// The public key's parts.
    pub(crate) fn public_parts(&self) -> PublicParts {
        match &self.pair {
            Pair::Ec(kp, alg) => {
                // Uncompressed point: 0x04 || X || Y.
                let point = kp.public_key().as_ref();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                PublicParts::Ec {
                    crv: if *alg == SigningAlgorithm::Es256 {
                        "P-256"
                    } else {
                        "P-384"
                    },
                    x: x.to_vec(),
                    y: y.to_vec(),
                }
            }
            Pair::Rsa(kp) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                PublicParts::Rsa {
                    n: strip_zeros(&c.n).to_vec(),
                    e: strip_zeros(&c.e).to_vec(),
                }
            }
        }
    }

    /// Signs `message`; ECDSA signatures come as the fixed-width r||s JOSE
    /// wants (RFC 7518 §3.4), not DER.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AcmeError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(kp, _) => Ok(kp
                .sign(&rng, message)
                .map_err(failed("ECDSA signing"))?
                .as_ref()
                .to_vec()),
            Pair::Rsa(kp) => {
                let mut sig = vec![0; kp.public_key().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(failed("RSA signing"))?;
                Ok(sig)
            }
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}

/// Checks a JWS signature against public parts: for the tests, which must
/// not trust the signing code to check itself through the same path.
#[cfg(test)]
pub(crate) fn verify(
    alg: SigningAlgorithm,
    public: &PublicParts,
    message: &[u8],
    sig: &[u8],
) -> bool {
    match (alg, public) {
        (SigningAlgorithm::Es256 | SigningAlgorithm::Es384, PublicParts::Ec { x, y, .. }) => {
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            let verify_alg = if alg == SigningAlgorithm::Es256 {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P384_SHA384_FIXED
            };
            signature::UnparsedPublicKey::new(verify_alg, &point)
                .verify(message, sig)
                .is_ok()
        }
        (SigningAlgorithm::Rs256, PublicParts::Rsa { n, e }) => signature::RsaPublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
        .is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// FIPS 180-2 / RFC 4231 vectors: the provider is wired the right way.
    #[test]
    fn digest_and_hmac_vectors() {
        assert_eq!(
            sha256(b"abc")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn random_numbers_differ() {
        let a = random_u64().unwrap();
        let b = random_u64().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_signature_over_other_bytes_does_not_verify() {
        let key =
            SigningKey::from_pkcs8(&generate_pkcs8(SigningAlgorithm::Es256).unwrap()).unwrap();
        let sig = key.sign(b"one").unwrap();
        let public = key.public_parts();
        assert!(verify(SigningAlgorithm::Es256, &public, b"one", &sig));
        assert!(!verify(SigningAlgorithm::Es256, &public, b"two", &sig));
    }

    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    #[test]
    fn ring_refuses_rsa_generation_with_a_reason() {
        let err = generate_pkcs8(SigningAlgorithm::Rs256).unwrap_err();
        assert!(
            err.to_string().contains("ring cannot generate RSA"),
            "{err}"
        );
    }
}
