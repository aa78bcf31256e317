//! ECDH key agreement recipients (RFC 5753 section 3.1): ephemeral-static
//! on P-256, P-384 or P-521, the ANSI X9.63 KDF over ECC-CMS-SharedInfo
//! (SHA-1, SHA-256, SHA-384 or SHA-512 read; the hash matching the curve
//! written), and AES key wrap.
//!
//! Written here because the `cms` crate's builder wraps the key under an
//! all-zero key-encryption key (see the crate notes).

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::digest;
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap};
use aws_lc_rs::rand::SystemRandom;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, OriginatorIdentifierOrKey,
    OriginatorPublicKey, RecipientEncryptedKey,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, OctetString};
use der::{Encode, Sequence};
use spki::AlgorithmIdentifierOwned;

use crate::algorithms::{EC_PUBLIC_KEY, KeyManagement};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::key::EcCurve;

const STD_DH_SHA1_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.133.16.840.63.0.2");
const STD_DH_SHA256_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.1");
const STD_DH_SHA384_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.2");
const STD_DH_SHA512_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.3");
const AES128_WRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.5");
const AES192_WRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.25");
const AES256_WRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.45");

/// ECC-CMS-SharedInfo (RFC 5753 section 7.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EccCmsSharedInfo {
    key_info: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

fn kdf_hash(scheme: ObjectIdentifier) -> Result<&'static digest::Algorithm> {
    Ok(match scheme {
        STD_DH_SHA1_KDF => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        STD_DH_SHA256_KDF => &digest::SHA256,
        STD_DH_SHA384_KDF => &digest::SHA384,
        STD_DH_SHA512_KDF => &digest::SHA512,
        other => {
            return Err(Error::UnsupportedAlgorithm {
                what: "key agreement",
                oid: other.to_string(),
            });
        }
    })
}

/// ANSI X9.63 KDF (SEC 1 section 3.6.1) as RFC 5753 section 7.2 uses it.
fn derive_kek(
    hash: &'static digest::Algorithm,
    z: &[u8],
    wrap: &AlgorithmIdentifierOwned,
    ukm: Option<&OctetString>,
    kek_len: usize,
) -> Result<Vec<u8>> {
    let bits = u32::try_from(kek_len * 8).map_err(|_| Error::Crypto("KEK length"))?;
    let info = EccCmsSharedInfo {
        key_info: wrap.clone(),
        entity_u_info: ukm.cloned(),
        supp_pub_info: OctetString::new(bits.to_be_bytes().to_vec())
            .map_err(|e| Error::cms("ECC-CMS-SharedInfo", e))?,
    }
    .to_der()
    .map_err(|e| Error::cms("ECC-CMS-SharedInfo", e))?;
    let mut out = Vec::with_capacity(kek_len + 64);
    let mut counter: u32 = 1;
    while out.len() < kek_len {
        let mut ctx = digest::Context::new(hash);
        ctx.update(z);
        ctx.update(&counter.to_be_bytes());
        ctx.update(&info);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(kek_len);
    Ok(out)
}

fn wrap_params(
    wrap_oid: ObjectIdentifier,
) -> Result<(&'static aws_lc_rs::key_wrap::AesBlockCipher, usize)> {
    match wrap_oid {
        AES128_WRAP => Ok((&AES_128, 16)),
        AES256_WRAP => Ok((&AES_256, 32)),
        other => Err(Error::UnsupportedAlgorithm {
            what: "key wrap",
            oid: other.to_string(),
        }),
    }
}

/// The curve an ECDH method works on (`None`: not ECDH).
pub(crate) fn curve_of(method: KeyManagement) -> Option<EcCurve> {
    match method {
        KeyManagement::EcdhP256Sha1Kdf | KeyManagement::EcdhP256Sha256Kdf => Some(EcCurve::P256),
        KeyManagement::EcdhP384Sha384Kdf => Some(EcCurve::P384),
        KeyManagement::EcdhP521Sha512Kdf => Some(EcCurve::P521),
        _ => None,
    }
}

/// Builds the KeyAgreeRecipientInfo delivering `cek` to `cert`, on the
/// method's curve.
pub(crate) fn recipient_info(
    cert: &Certificate,
    method: KeyManagement,
    cek: &[u8],
) -> Result<KeyAgreeRecipientInfo> {
    let scheme = match method {
        KeyManagement::EcdhP256Sha1Kdf => STD_DH_SHA1_KDF,
        KeyManagement::EcdhP256Sha256Kdf => STD_DH_SHA256_KDF,
        KeyManagement::EcdhP384Sha384Kdf => STD_DH_SHA384_KDF,
        KeyManagement::EcdhP521Sha512Kdf => STD_DH_SHA512_KDF,
        _ => return Err(Error::Crypto("not an ECDH method")),
    };
    let curve = curve_of(method).ok_or(Error::Crypto("not an ECDH method"))?;
    let (alg, cert_curve, point) = cert.public_key();
    if alg != EC_PUBLIC_KEY || EcCurve::from_oid(cert_curve) != Some(curve) {
        return Err(Error::Certificate(format!(
            "recipient \"{}\" has no {} key for ECDH",
            cert.subject(),
            curve.name()
        )));
    }
    // The key-encryption key is as strong as the content key, and at
    // least AES-256 on the larger curves (RFC 5753 section 8 pairs P-384
    // and P-521 with AES-256).
    let wrap_oid = if cek.len() > 16 || curve != EcCurve::P256 {
        AES256_WRAP
    } else {
        AES128_WRAP
    };
    let (wrap_cipher, kek_len) = wrap_params(wrap_oid)?;
    let wrap_alg = AlgorithmIdentifierOwned {
        oid: wrap_oid,
        parameters: None,
    };
    let crypto = |_| Error::Crypto("ECDH key agreement");
    let ephemeral =
        EphemeralPrivateKey::generate(curve.agreement(), &SystemRandom::new()).map_err(crypto)?;
    let eph_public = ephemeral.compute_public_key().map_err(crypto)?;
    let hash = kdf_hash(scheme)?;
    let kek = agreement::agree_ephemeral(
        ephemeral,
        UnparsedPublicKey::new(curve.agreement(), point),
        Error::Certificate(format!("recipient {} public key rejected", curve.name())),
        |z| derive_kek(hash, z, &wrap_alg, None, kek_len),
    )?;
    let kek = AesKek::new(wrap_cipher, &kek).map_err(crypto)?;
    let mut wrapped = vec![0u8; cek.len() + 8];
    let wrapped = kek.wrap(cek, &mut wrapped).map_err(crypto)?.to_vec();
    Ok(KeyAgreeRecipientInfo {
        version: CmsVersion::V3,
        originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
            algorithm: AlgorithmIdentifierOwned {
                oid: EC_PUBLIC_KEY,
                parameters: None,
            },
            public_key: BitString::from_bytes(eph_public.as_ref())
                .map_err(|e| Error::cms("originatorKey", e))?,
        }),
        ukm: None,
        key_enc_alg: AlgorithmIdentifierOwned {
            oid: scheme,
            parameters: Some(
                Any::encode_from(&wrap_alg).map_err(|e| Error::cms("keyEncryptionAlgorithm", e))?,
            ),
        },
        recipient_enc_keys: vec![RecipientEncryptedKey {
            rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(cert.issuer_and_serial()),
            enc_key: OctetString::new(wrapped).map_err(|e| Error::cms("encryptedKey", e))?,
        }],
    })
}

/// Whether this KeyAgreeRecipientInfo has an encrypted key for `cert`;
/// returns that key.
pub(crate) fn encrypted_key_for<'a>(
    kari: &'a KeyAgreeRecipientInfo,
    cert: &Certificate,
) -> Option<&'a OctetString> {
    let ias = cert.issuer_and_serial();
    let ski = cert.subject_key_identifier();
    kari.recipient_enc_keys
        .iter()
        .find(|rek| match &rek.rid {
            KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(i) => *i == ias,
            KeyAgreeRecipientIdentifier::RKeyId(r) => {
                ski.as_deref() == Some(r.subject_key_identifier.0.as_bytes())
            }
        })
        .map(|rek| &rek.enc_key)
}

/// Recovers the content key from a KeyAgreeRecipientInfo with our static
/// key on `curve`. Every cryptographic failure is
/// [`Error::DecryptionFailed`].
pub(crate) fn unwrap_key(
    kari: &KeyAgreeRecipientInfo,
    encrypted_key: &OctetString,
    private: &agreement::PrivateKey,
    curve: EcCurve,
) -> Result<Vec<u8>> {
    let OriginatorIdentifierOrKey::OriginatorKey(originator) = &kari.originator else {
        return Err(Error::UnsupportedAlgorithm {
            what: "ECDH originator (static-static)",
            oid: kari.key_enc_alg.oid.to_string(),
        });
    };
    let hash = kdf_hash(kari.key_enc_alg.oid)?;
    let wrap_alg: AlgorithmIdentifierOwned = kari
        .key_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| Error::cms("keyEncryptionAlgorithm", "key wrap algorithm missing"))?
        .decode_as()
        .map_err(|e| Error::cms("KeyWrapAlgorithm", e))?;
    // OpenSSL wraps an AES-192 content key with AES-192 key wrap, which
    // aws-lc-rs's key_wrap module lacks: that one is unwrapped here.
    let (wrap_cipher, kek_len) = if wrap_alg.oid == AES192_WRAP {
        (None, 24)
    } else {
        let (c, l) = wrap_params(wrap_alg.oid)?;
        (Some(c), l)
    };
    let point = originator
        .public_key
        .as_bytes()
        .ok_or_else(|| Error::cms("originatorKey", "unused bits in public key"))?;
    let kek = agreement::agree(
        private,
        UnparsedPublicKey::new(curve.agreement(), point),
        Error::DecryptionFailed,
        |z| derive_kek(hash, z, &wrap_alg, kari.ukm.as_ref(), kek_len),
    )?;
    let enc = encrypted_key.as_bytes();
    let Some(wrap_cipher) = wrap_cipher else {
        return unwrap_aes192(&kek, enc);
    };
    let kek = AesKek::new(wrap_cipher, &kek).map_err(|_| Error::DecryptionFailed)?;
    let mut out = vec![0u8; enc.len()];
    let cek = kek
        .unwrap(enc, &mut out)
        .map_err(|_| Error::DecryptionFailed)?;
    Ok(cek.to_vec())
}

/// AES-192 key unwrap (RFC 3394 section 2.2.2, index form) over AES-192
/// ECB block decryption. Every failure, the integrity check included, is
/// [`Error::DecryptionFailed`].
fn unwrap_aes192(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>> {
    use aws_lc_rs::cipher::{AES_192, DecryptingKey, DecryptionContext, UnboundCipherKey};
    const IV: [u8; 8] = [0xA6; 8];
    let fail = |_| Error::DecryptionFailed;
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return Err(Error::DecryptionFailed);
    }
    let key =
        DecryptingKey::ecb(UnboundCipherKey::new(&AES_192, kek).map_err(fail)?).map_err(fail)?;
    let n = wrapped.len() / 8 - 1;
    let mut a = [0u8; 8];
    a.copy_from_slice(&wrapped[..8]);
    let mut r = wrapped[8..].to_vec();
    for j in (0..6u64).rev() {
        for i in (1..=n).rev() {
            let t = (n as u64) * j + i as u64;
            let mut block = [0u8; 16];
            block[..8].copy_from_slice(&(u64::from_be_bytes(a) ^ t).to_be_bytes());
            block[8..].copy_from_slice(&r[(i - 1) * 8..i * 8]);
            key.decrypt(&mut block, DecryptionContext::None)
                .map_err(fail)?;
            a.copy_from_slice(&block[..8]);
            r[(i - 1) * 8..i * 8].copy_from_slice(&block[8..]);
        }
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(&a, &IV).map_err(fail)?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3394 section 4.3: 128 bits of key data wrapped with a 192-bit KEK.
    #[test]
    fn aes192_unwrap_matches_the_rfc_3394_vector() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let kek = hex("000102030405060708090A0B0C0D0E0F1011121314151617");
        let wrapped = hex("96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D");
        let key = unwrap_aes192(&kek, &wrapped).unwrap();
        assert_eq!(key, hex("00112233445566778899AABBCCDDEEFF"));
        let mut tampered = wrapped.clone();
        tampered[3] ^= 1;
        assert!(matches!(
            unwrap_aes192(&kek, &tampered),
            Err(Error::DecryptionFailed)
        ));
        assert!(matches!(
            unwrap_aes192(&kek, &wrapped[..16]),
            Err(Error::DecryptionFailed)
        ));
    }

    /// The KDF is Hash(Z || counter || SharedInfo) with the counter
    /// starting at 1 (SEC 1 section 3.6.1), truncated to the KEK length.
    #[test]
    fn kdf_counter_starts_at_one_and_truncates() {
        let wrap = AlgorithmIdentifierOwned {
            oid: AES128_WRAP,
            parameters: None,
        };
        let z = [7u8; 32];
        let k = derive_kek(&digest::SHA256, &z, &wrap, None, 16).unwrap();
        let info = EccCmsSharedInfo {
            key_info: wrap.clone(),
            entity_u_info: None,
            supp_pub_info: OctetString::new(128u32.to_be_bytes().to_vec()).unwrap(),
        }
        .to_der()
        .unwrap();
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&z);
        ctx.update(&[0, 0, 0, 1]);
        ctx.update(&info);
        assert_eq!(k, ctx.finish().as_ref()[..16]);
        // supp_pub_info is four bytes of key length in bits (RFC 5753 section 7.2).
        assert!(info.ends_with(&[0xa2, 0x06, 0x04, 0x04, 0, 0, 0, 0x80]));
    }
}
