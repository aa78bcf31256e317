//! Certificate path to a trust anchor, and certificate signature checks.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use const_oid::ObjectIdentifier;
use der::Encode;

use crate::algorithms::{EC_PUBLIC_KEY, ED25519, RSA_ENCRYPTION, SECP256R1, SECP384R1};
use crate::cert::Certificate;
use crate::verify::report::Failure;

/// Longest path accepted (leaf, intermediates, anchor).
const MAX_PATH: usize = 8;

const SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// The verification algorithm for a signature `sig_oid` made with the key
/// of `signer` (hash fixed by the OID).
fn cert_sig_alg(
    sig_oid: ObjectIdentifier,
    signer: &Certificate,
) -> Option<&'static dyn VerificationAlgorithm> {
    let (key_alg, curve, _) = signer.public_key();
    Some(match (sig_oid, key_alg, curve) {
        (SHA256_RSA, RSA_ENCRYPTION, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SHA384_RSA, RSA_ENCRYPTION, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (SHA512_RSA, RSA_ENCRYPTION, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_SHA256, EC_PUBLIC_KEY, Some(SECP256R1)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, EC_PUBLIC_KEY, Some(SECP256R1)) => &signature::ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA256, EC_PUBLIC_KEY, Some(SECP384R1)) => &signature::ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, EC_PUBLIC_KEY, Some(SECP384R1)) => &signature::ECDSA_P384_SHA384_ASN1,
        (ECDSA_SHA512, EC_PUBLIC_KEY, Some(SECP256R1)) => &signature::ECDSA_P256_SHA512_ASN1,
        (ECDSA_SHA512, EC_PUBLIC_KEY, Some(SECP384R1)) => &signature::ECDSA_P384_SHA512_ASN1,
        (ED25519, ED25519, _) => &signature::ED25519,
        _ => return None,
    })
}

/// Whether `cert` carries a valid signature by `issuer`'s key.
pub(crate) fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let x = cert.x509();
    let alg = cert_sig_alg(x.signature_algorithm.oid, issuer).ok_or_else(|| {
        format!(
            "unsupported certificate signature algorithm {}",
            x.signature_algorithm.oid
        )
    })?;
    let tbs = x
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("cannot encode TBSCertificate: {e}"))?;
    let sig = x
        .signature
        .as_bytes()
        .ok_or_else(|| "certificate signature has unused bits".to_string())?;
    UnparsedPublicKey::new(alg, issuer.public_key().2)
        .verify(&tbs, sig)
        .map_err(|_| format!("signature of \"{}\" does not verify", cert.subject()))
}

fn check_time(cert: &Certificate, now: u64) -> Result<(), String> {
    let (nb, na) = cert.validity();
    if now < nb {
        return Err(format!("\"{}\" is not yet valid", cert.subject()));
    }
    if now > na {
        return Err(format!("\"{}\" has expired", cert.subject()));
    }
    Ok(())
}

/// Builds a path from `leaf` through `pool` (certificates carried by the
/// message) to one of `anchors`, checking each link's signature, that
/// issuers are CAs, and the validity of issuers at `now` (Unix seconds; the
/// leaf's own validity is reported separately).
pub(crate) fn path_to_anchor(
    leaf: &Certificate,
    pool: &[Certificate],
    anchors: &[Certificate],
    now: u64,
) -> Result<(), Failure> {
    let mut current = leaf.clone();
    let mut last_problem: Option<String> = None;
    for _ in 0..MAX_PATH {
        if anchors.iter().any(|a| a.der() == current.der()) {
            return Ok(());
        }
        for anchor in anchors.iter().filter(|a| current.is_named_by(a)) {
            match signed_by(&current, anchor) {
                Ok(()) if !anchor.can_sign_certificates() => {
                    last_problem = Some(format!(
                        "trust anchor \"{}\" may not sign certificates",
                        anchor.subject()
                    ));
                }
                Ok(()) => {
                    return check_time(anchor, now).map_err(Failure::BadChain);
                }
                Err(e) => last_problem = Some(e),
            }
        }
        let next = pool.iter().find(|c| {
            c.der() != current.der() && current.is_named_by(c) && signed_by(&current, c).is_ok()
        });
        match next {
            Some(issuer) => {
                if !issuer.can_sign_certificates() {
                    return Err(Failure::BadChain(format!(
                        "\"{}\" issued a certificate but is not a CA",
                        issuer.subject()
                    )));
                }
                check_time(issuer, now).map_err(Failure::BadChain)?;
                current = issuer.clone();
            }
            None => {
                return Err(match last_problem {
                    Some(p) => Failure::BadChain(p),
                    None => Failure::UnknownIssuer(current.issuer()),
                });
            }
        }
    }
    Err(Failure::BadChain("certificate path too long".into()))
}
