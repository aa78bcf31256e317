//! Account keys and JSON Web Signatures (RFC 7515 flattened JSON, as RFC 8555
//! §6.2 requires), with ES256 (default), ES384 and RS256 through the
//! provider feature (`aws-lc-rs` or `ring`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::crypto::{self, PublicParts, SigningKey};
use crate::error::AcmeError;

/// base64url without padding, as JOSE uses everywhere.
pub(crate) fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The signature algorithm of an account key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (the default; small and accepted everywhere).
    #[default]
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key. With only the
    /// `ring` feature such a key can be loaded but not generated.
    Rs256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }
}

/// An ACME account key pair. Its PKCS#8 form is kept so it can be stored.
pub struct AccountKey {
    inner: SigningKey,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("alg", &self.algorithm())
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl AccountKey {
    /// Generates a fresh key for `alg`. Synchronous CPU work: from async
    /// code prefer [`generate_off_runtime`](Self::generate_off_runtime) for
    /// RS256.
    pub fn generate(alg: SigningAlgorithm) -> Result<Self, AcmeError> {
        Self::from_pkcs8_der(&crypto::generate_pkcs8(alg)?)
    }

    /// [`generate`](Self::generate) on tokio's blocking pool, so an RSA key
    /// (tens to hundreds of milliseconds of CPU) does not stall a runtime
    /// worker. `load_or_create_account` uses this.
    pub async fn generate_off_runtime(alg: SigningAlgorithm) -> Result<Self, AcmeError> {
        tokio::task::spawn_blocking(move || Self::generate(alg))
            .await
            .map_err(|e| AcmeError::Key(format!("key generation task failed: {e}")))?
    }

    /// Loads a PKCS#8 DER key: ECDSA P-256, P-384 or RSA.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, AcmeError> {
        Ok(AccountKey {
            inner: SigningKey::from_pkcs8(der)?,
            pkcs8: der.to_vec(),
        })
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem: &str) -> Result<Self, AcmeError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| AcmeError::Key(format!("no PKCS#8 PEM private key: {e}")))?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// The key as PKCS#8 PEM, for storage (mode 0600).
    pub fn to_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.inner.algorithm()
    }

    /// The public key as a JWK (RFC 7517), members in lexicographic order so
    /// that its serialisation is also the RFC 7638 thumbprint input.
    pub fn jwk(&self) -> Value {
        match self.inner.public_parts() {
            PublicParts::Ec { crv, x, y } => {
                json!({"crv": crv, "kty": "EC", "x": b64(&x), "y": b64(&y)})
            }
            PublicParts::Rsa { n, e } => json!({"e": b64(&e), "kty": "RSA", "n": b64(&n)}),
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> String {
        // serde_json's Map keeps keys sorted (no preserve_order feature), and
        // to_string emits no whitespace: exactly RFC 7638's canonical form.
        b64(&crypto::sha256(self.jwk().to_string().as_bytes()))
    }

    /// Signs `message` with the key's algorithm; ECDSA signatures are the
    /// fixed-width r||s JOSE wants, not DER.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, AcmeError> {
        self.inner.sign(message)
    }

    /// The key authorisation for a challenge token (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }
}

/// Encodes DER as PEM with 64-column lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// How the JWS identifies its signer (RFC 8555 §6.2).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyRef<'a> {
    /// Embed the public key (newAccount, revocation by certificate key).
    Jwk,
    /// Name the account URL.
    Kid(&'a str),
}

/// Builds a flattened JWS. `payload` `None` is POST-as-GET (empty payload).
pub(crate) fn sign_jws(
    key: &AccountKey,
    key_ref: KeyRef<'_>,
    nonce: Option<&str>,
    url: &str,
    payload: Option<&Value>,
) -> Result<Value, AcmeError> {
    let mut protected = serde_json::Map::new();
    protected.insert("alg".into(), key.algorithm().jose_name().into());
    match key_ref {
        KeyRef::Jwk => protected.insert("jwk".into(), key.jwk()),
        KeyRef::Kid(kid) => protected.insert("kid".into(), kid.into()),
    };
    if let Some(nonce) = nonce {
        protected.insert("nonce".into(), nonce.into());
    }
    protected.insert("url".into(), url.into());
    let protected = b64(Value::Object(protected).to_string().as_bytes());
    let payload = match payload {
        Some(p) => b64(p.to_string().as_bytes()),
        None => String::new(),
    };
    let signature = key.sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(json!({"protected": protected, "payload": payload, "signature": b64(&signature)}))
}

/// The inner JWS of External Account Binding (RFC 8555 §7.3.4): HS256 over
/// the account JWK, `kid` = the CA's key id, `url` = newAccount, no nonce.
pub(crate) fn eab_jws(account_jwk: &Value, key_id: &str, hmac_key: &[u8], url: &str) -> Value {
    let protected = b64(json!({"alg": "HS256", "kid": key_id, "url": url})
        .to_string()
        .as_bytes());
    let payload = b64(account_jwk.to_string().as_bytes());
    let tag = crypto::hmac_sha256(hmac_key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(&tag)})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn decode(v: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap()
    }

    /// Checks the JWS against the key's published JWK (not its private half).
    fn verify(key: &AccountKey, jws: &Value) {
        let input = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let sig = decode(&jws["signature"]);
        let jwk = key.jwk();
        let public = match key.algorithm() {
            SigningAlgorithm::Es256 | SigningAlgorithm::Es384 => {
                let (crv, len) = if key.algorithm() == SigningAlgorithm::Es256 {
                    ("P-256", 64)
                } else {
                    ("P-384", 96)
                };
                assert_eq!(jwk["crv"], crv);
                assert_eq!(sig.len(), len, "ECDSA in JOSE is raw r||s");
                PublicParts::Ec {
                    crv,
                    x: decode(&jwk["x"]),
                    y: decode(&jwk["y"]),
                }
            }
            SigningAlgorithm::Rs256 => PublicParts::Rsa {
                n: decode(&jwk["n"]),
                e: decode(&jwk["e"]),
            },
        };
        assert!(crypto::verify(
            key.algorithm(),
            &public,
            input.as_bytes(),
            &sig
        ));
    }

    /// The algorithms this build can generate (ring cannot make RSA keys).
    fn generatable() -> Vec<SigningAlgorithm> {
        let mut algs = vec![SigningAlgorithm::Es256, SigningAlgorithm::Es384];
        if cfg!(feature = "aws-lc-rs") {
            algs.push(SigningAlgorithm::Rs256);
        }
        algs
    }

    #[test]
    fn every_algorithm_signs_verifiably_and_round_trips() {
        for alg in generatable() {
            let key = AccountKey::generate(alg).unwrap();
            let jws = sign_jws(
                &key,
                KeyRef::Kid("https://ca/acct/1"),
                Some("n1"),
                "https://ca/x",
                Some(&json!({"a":1})),
            )
            .unwrap();
            verify(&key, &jws);
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(jws["protected"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], alg.jose_name());
            assert_eq!(header["nonce"], "n1");
            assert_eq!(header["kid"], "https://ca/acct/1");
            let again = AccountKey::from_pem(&key.to_pem()).unwrap();
            assert_eq!(again.algorithm(), alg);
            assert_eq!(again.thumbprint(), key.thumbprint());
        }
    }

    /// RS256 with a key this crate did not make (under ring, the only way
    /// to have one): `openssl genpkey` output loads, signs verifiably and
    /// keeps its thumbprint through PEM.
    #[test]
    fn rsa_key_from_openssl_signs_verifiably() {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let key = AccountKey::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
        assert_eq!(key.algorithm(), SigningAlgorithm::Rs256);
        let jws = sign_jws(
            &key,
            KeyRef::Jwk,
            Some("n"),
            "https://ca/x",
            Some(&json!({})),
        )
        .unwrap();
        verify(&key, &jws);
        assert_eq!(jws_header(&jws)["jwk"], key.jwk());
        let again = AccountKey::from_pem(&key.to_pem()).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
    }

    fn jws_header(jws: &Value) -> Value {
        serde_json::from_slice(&decode(&jws["protected"])).unwrap()
    }

    #[test]
    fn post_as_get_has_empty_payload() {
        let key = AccountKey::generate(SigningAlgorithm::Es256).unwrap();
        let jws = sign_jws(&key, KeyRef::Jwk, Some("n"), "https://ca/o", None).unwrap();
        assert_eq!(jws["payload"], "");
        verify(&key, &jws);
    }

    /// RFC 7638 §3.1: the thumbprint of the example RSA key.
    #[test]
    fn rfc7638_thumbprint_vector() {
        let jwk = json!({"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        let t = b64(&crypto::sha256(jwk.to_string().as_bytes()));
        assert_eq!(t, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
