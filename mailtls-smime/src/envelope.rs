//! Content encryption shared by the encryptor and the decryptor: the
//! AuthEnvelopedData structure (which `cms` 0.2 lacks) and the AES-CBC /
//! AES-GCM / 3DES primitives from aws-lc-rs.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{EncryptedContentInfo, OriginatorInfo, RecipientInfos};
use der::asn1::{Any, AnyRef, ObjectIdentifier, OctetString};
use der::{Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attributes;

use crate::algorithms::{ContentEncryption, DES_EDE3_CBC, ID_DATA};
use crate::error::{Error, Result};

/// AuthEnvelopedData (RFC 5083 section 2.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct AuthEnvelopedData {
    pub(crate) version: CmsVersion,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) originator_info: Option<OriginatorInfo>,
    pub(crate) recip_infos: RecipientInfos,
    pub(crate) auth_encrypted_content: EncryptedContentInfo,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) auth_attrs: Option<Attributes>,
    pub(crate) mac: OctetString,
    #[asn1(
        context_specific = "2",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub(crate) unauth_attrs: Option<Attributes>,
}

/// GCMParameters (RFC 5084 section 3.2); ICV length DEFAULT 12.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct GcmParameters {
    pub(crate) nonce: OctetString,
    pub(crate) icv_len: Option<u8>,
}

/// The GCM tag length written and accepted (aws-lc-rs uses 16 bytes).
const TAG_LEN: usize = 16;

pub(crate) fn random(len: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut v)
        .map_err(|_| Error::Crypto("random bytes"))?;
    Ok(v)
}

fn aes(alg: ContentEncryption) -> &'static cipher::Algorithm {
    aes_cipher(alg.key_len())
}

/// AES with a key of `key_len` bytes (16, 24 or 32; the lengths
/// [`ContentEncryption`] has).
pub(crate) fn aes_cipher(key_len: usize) -> &'static cipher::Algorithm {
    match key_len {
        16 => &cipher::AES_128,
        24 => &cipher::AES_192,
        _ => &cipher::AES_256,
    }
}

/// AES-GCM with a key of `key_len` bytes (16, 24 or 32).
pub(crate) fn aes_gcm(key_len: usize) -> &'static aead::Algorithm {
    match key_len {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        _ => &aead::AES_256_GCM,
    }
}

/// ContentInfo (RFC 5652 section 3) whose content borrows from the input,
/// so that decoding a large message does not copy its content first.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct ContentInfoRef<'a> {
    pub(crate) content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub(crate) content: AnyRef<'a>,
}

/// DER of a ContentInfo holding `content`, encoded straight into one
/// buffer of the final size (no intermediate `Any` copy of the content).
pub(crate) fn content_info_der<T: Encode>(
    content_type: ObjectIdentifier,
    content: &T,
    what: &'static str,
) -> Result<Vec<u8>> {
    let inner_len = content.encoded_len().map_err(|e| Error::cms(what, e))?;
    // The whole [0] EXPLICIT TLV: tag, length field, then the content TLV.
    let explicit_len = (inner_len + der::Length::ONE)
        .and_then(|l| l + header_len(u32::from(inner_len) as usize))
        .map_err(|e| Error::cms(what, e))?;
    let oid_len = content_type
        .encoded_len()
        .map_err(|e| Error::cms("ContentInfo", e))?;
    let body_len = (oid_len + explicit_len).map_err(|e| Error::cms("ContentInfo", e))?;
    let body = u32::from(body_len) as usize;
    let mut out = Vec::with_capacity(body + 6);
    out.push(0x30);
    crate::ber::write_len(&mut out, body);
    content_type
        .encode_to_vec(&mut out)
        .map_err(|e| Error::cms("ContentInfo", e))?;
    out.push(0xa0);
    crate::ber::write_len(&mut out, u32::from(inner_len) as usize);
    content
        .encode_to_vec(&mut out)
        .map_err(|e| Error::cms(what, e))?;
    Ok(out)
}

/// Bytes of a definite DER length field for `len`.
fn header_len(len: usize) -> der::Length {
    let mut v = Vec::with_capacity(6);
    crate::ber::write_len(&mut v, len);
    der::Length::new(v.len() as u16)
}

/// Ciphertext and the content-encryption EncryptedContentInfo, plus the
/// GCM tag when authenticated.
pub(crate) struct Sealed {
    pub(crate) info: EncryptedContentInfo,
    pub(crate) tag: Option<Vec<u8>>,
}

/// Encrypts `content` under `key` with `alg`.
pub(crate) fn seal(alg: ContentEncryption, key: &[u8], content: &[u8]) -> Result<Sealed> {
    let crypto = |_| Error::Crypto("content encryption");
    let (params, data, tag) = if alg.is_authenticated() {
        let aead_alg = aes_gcm(alg.key_len());
        let nonce_bytes = random(12)?;
        let key = LessSafeKey::new(UnboundKey::new(aead_alg, key).map_err(crypto)?);
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(crypto)?;
        let mut data = content.to_vec();
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut data)
            .map_err(crypto)?;
        let params = GcmParameters {
            nonce: OctetString::new(nonce_bytes).map_err(|e| Error::cms("GCMParameters", e))?,
            icv_len: Some(TAG_LEN as u8),
        };
        let params = Any::encode_from(&params).map_err(|e| Error::cms("GCMParameters", e))?;
        (params, data, Some(tag.as_ref().to_vec()))
    } else {
        let iv = random(16)?;
        let iv_arr: [u8; 16] = iv
            .as_slice()
            .try_into()
            .map_err(|_| Error::Crypto("IV length"))?;
        let key = PaddedBlockEncryptingKey::cbc_pkcs7(
            UnboundCipherKey::new(aes(alg), key).map_err(crypto)?,
        )
        .map_err(crypto)?;
        // Room for the padding up front: growing a 10 MB buffer by one
        // block would copy all of it.
        let mut data = Vec::with_capacity(content.len() + 16);
        data.extend_from_slice(content);
        key.less_safe_encrypt(
            &mut data,
            EncryptionContext::Iv128(FixedLength::from(iv_arr)),
        )
        .map_err(crypto)?;
        let params = Any::encode_from(&OctetString::new(iv).map_err(|e| Error::cms("IV", e))?)
            .map_err(|e| Error::cms("IV", e))?;
        (params, data, None)
    };
    Ok(Sealed {
        info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: alg.oid(),
                parameters: Some(params),
            },
            encrypted_content: Some(
                OctetString::new(data).map_err(|e| Error::cms("encryptedContent", e))?,
            ),
        },
        tag,
    })
}

/// The content cipher of a received message, including 3DES, which the
/// engine reads (old mail) but never writes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCipher {
    /// One of the ciphers the engine also writes.
    Modern(ContentEncryption),
    /// DES-EDE3-CBC (RFC 3370 section 5.1), read-only.
    TripleDes,
}

impl ContentCipher {
    pub(crate) fn from_identifier(alg: &AlgorithmIdentifierOwned) -> Result<Self> {
        if alg.oid == DES_EDE3_CBC {
            return Ok(Self::TripleDes);
        }
        ContentEncryption::from_oid(&alg.oid)
            .map(Self::Modern)
            .ok_or_else(|| Error::UnsupportedAlgorithm {
                what: "content encryption",
                oid: alg.oid.to_string(),
            })
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::Modern(c) => c.key_len(),
            Self::TripleDes => 24,
        }
    }
}

/// Decrypts an EncryptedContentInfo. `tag_and_aad` is the GCM tag and the
/// additional data for AuthEnvelopedData. Every failure is the same
/// [`Error::DecryptionFailed`], so that it is no padding or tag oracle.
pub(crate) fn open(
    cipher: ContentCipher,
    key: &[u8],
    info: EncryptedContentInfo,
    tag_and_aad: Option<(&[u8], &[u8])>,
) -> Result<Vec<u8>> {
    let params = info
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| Error::cms("contentEncryptionAlgorithm", "parameters missing"))?;
    // Decrypted in place in the decoded octets: no copy of the content.
    let mut data = info
        .encrypted_content
        .ok_or_else(|| Error::cms("EncryptedContentInfo", "no encryptedContent (detached)"))?
        .into_bytes();
    let fail = |_| Error::DecryptionFailed;
    match cipher {
        ContentCipher::Modern(alg) if alg.is_authenticated() => {
            let (tag, aad) = tag_and_aad.ok_or_else(|| {
                Error::cms("EnvelopedData", "GCM is only valid in AuthEnvelopedData")
            })?;
            let p: GcmParameters = params
                .decode_as()
                .map_err(|e| Error::cms("GCMParameters", e))?;
            if p.icv_len.unwrap_or(12) as usize != TAG_LEN || tag.len() != TAG_LEN {
                return Err(Error::UnsupportedAlgorithm {
                    what: "GCM tag length other than 16 for",
                    oid: alg.oid().to_string(),
                });
            }
            let aead_alg = aes_gcm(alg.key_len());
            let key = LessSafeKey::new(UnboundKey::new(aead_alg, key).map_err(fail)?);
            let nonce = Nonce::try_assume_unique_for_key(p.nonce.as_bytes())
                .map_err(|_| Error::cms("GCMParameters", "nonce is not 12 bytes"))?;
            data.extend_from_slice(tag);
            let len = key
                .open_in_place(nonce, Aad::from(aad), &mut data)
                .map_err(fail)?
                .len();
            data.truncate(len);
            Ok(data)
        }
        ContentCipher::Modern(alg) => {
            let iv: OctetString = params.decode_as().map_err(|e| Error::cms("IV", e))?;
            let iv: [u8; 16] = iv
                .as_bytes()
                .try_into()
                .map_err(|_| Error::cms("IV", "AES-CBC IV is not 16 bytes"))?;
            let key = PaddedBlockDecryptingKey::cbc_pkcs7(
                UnboundCipherKey::new(aes(alg), key).map_err(fail)?,
            )
            .map_err(fail)?;
            let len = key
                .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(fail)?
                .len();
            data.truncate(len);
            Ok(data)
        }
        ContentCipher::TripleDes => {
            let iv: OctetString = params.decode_as().map_err(|e| Error::cms("IV", e))?;
            let iv: [u8; 8] = iv
                .as_bytes()
                .try_into()
                .map_err(|_| Error::cms("IV", "3DES-CBC IV is not 8 bytes"))?;
            #[allow(deprecated)]
            let alg = &cipher::DES_EDE3_FOR_LEGACY_USE_ONLY;
            let key =
                PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(alg, key).map_err(fail)?)
                    .map_err(fail)?;
            let len = key
                .decrypt(&mut data, DecryptionContext::Iv64(FixedLength::from(iv)))
                .map_err(fail)?
                .len();
            data.truncate(len);
            Ok(data)
        }
    }
}

/// DER of authenticated attributes as a SET, the GCM additional data
/// (RFC 5083 section 2.2); empty when there are none.
pub(crate) fn aad(attrs: Option<&Attributes>) -> Result<Vec<u8>> {
    match attrs {
        Some(a) => a.to_der().map_err(|e| Error::cms("authAttrs", e)),
        None => Ok(Vec::new()),
    }
}
