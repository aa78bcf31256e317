//! The few digests and random bytes this crate needs outside rustls, from
//! whichever provider feature is enabled (`aws-lc-rs` wins when both are).
//!
//! rustls' `CryptoProvider` offers neither SHA-512 (TLSA matching type 2)
//! nor random bytes for a DNS query id in a form usable here, so these
//! come from the provider crate itself, the one rustls already links: a
//! build with `ring` never pulls in aws-lc-rs because of this module.

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("mailtls-policy needs a crypto provider: enable feature `aws-lc-rs` or `ring`");

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs as backend;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring as backend;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = backend::digest::digest(&backend::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-512 of `data`.
pub(crate) fn sha512(data: &[u8]) -> [u8; 64] {
    let digest = backend::digest::digest(&backend::digest::SHA512, data);
    let mut out = [0; 64];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Fills `buf` from the provider's system random source; `false` when
/// that source failed.
#[cfg(feature = "hickory")]
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    use backend::rand::SecureRandom;
    backend::rand::SystemRandom::new().fill(buf).is_ok()
}

/// The rustls provider of the enabled feature.
pub(crate) fn default_provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    {
        rustls::crypto::aws_lc_rs::default_provider()
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        rustls::crypto::ring::default_provider()
    }
}

/// A DKIM signing key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
#[cfg(feature = "tlsrpt-deliver")]
pub(crate) enum SigningKey {
    /// `rsa-sha256`.
    Rsa(backend::signature::RsaKeyPair),
    /// `ed25519-sha256` (RFC 8463).
    Ed25519(backend::signature::Ed25519KeyPair),
}

#[cfg(feature = "tlsrpt-deliver")]
impl SigningKey {
    /// Reads a private key; says what it is not when it is neither kind.
    pub(crate) fn from_der(key: &rustls_pki_types::PrivateKeyDer<'_>) -> Result<Self, String> {
        use backend::signature::{Ed25519KeyPair, RsaKeyPair};
        use rustls_pki_types::PrivateKeyDer;
        match key {
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(Self::Rsa)
                .map_err(|e| format!("DKIM key is not a usable RSA key: {e}")),
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(k) => Ok(Self::Rsa(k)),
                    Err(rsa_err) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                        .map(Self::Ed25519)
                        .map_err(|ed_err| {
                            format!("DKIM key is neither RSA ({rsa_err}) nor Ed25519 ({ed_err})")
                        }),
                }
            }
            _ => Err("DKIM key must be RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8)".to_owned()),
        }
    }

    /// The `a=` tag value.
    pub(crate) fn dkim_algorithm(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "rsa-sha256",
            Self::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// Signs the DKIM signing input: RSA PKCS#1 v1.5 over SHA-256 of it,
    /// or Ed25519 over its SHA-256 (RFC 8463 §3 signs the hash).
    pub(crate) fn sign_dkim(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Self::Rsa(key) => {
                #[cfg(feature = "aws-lc-rs")]
                let len = key.public_modulus_len();
                #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
                let len = key.public().modulus_len();
                let mut sig = vec![0; len];
                key.sign(
                    &backend::signature::RSA_PKCS1_SHA256,
                    &backend::rand::SystemRandom::new(),
                    input,
                    &mut sig,
                )
                .map_err(|e| format!("RSA signing failed: {e}"))?;
                Ok(sig)
            }
            Self::Ed25519(key) => Ok(key.sign(&sha256(input)).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_fips_180_examples() {
        // FIPS 180-2 appendix B.1 / C.1: "abc".
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha512(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }
}
