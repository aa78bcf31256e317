//! Decryption of EnvelopedData and AuthEnvelopedData for an RSA key.

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey,
};
use cms::enveloped_data::{
    EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use der::Decode;
#[cfg(feature = "mailtls-core")]
use mailtls_core::CertificateWithKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::algorithms::{ID_AUTH_ENVELOPED_DATA, ID_ENVELOPED_DATA, KeyManagement};
use crate::ber;
use crate::cert::Certificate;
use crate::ecdh;
pub use crate::envelope::ContentCipher;
use crate::envelope::{self, AuthEnvelopedData, ContentInfoRef};
use crate::error::{Error, Result};
use crate::key::PrivateKey;
use crate::mime::parse::{self, Layer};

/// A decrypted message.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The decrypted MIME entity.
    pub content: Vec<u8>,
    /// The message's header fields other than Content-*, CRLF-ended.
    pub outer_headers: Vec<u8>,
    /// The content cipher the sender used.
    pub cipher: ContentCipher,
}

impl Decrypted {
    /// The message with the encryption layer removed.
    pub fn message(&self) -> Vec<u8> {
        let mut m = self.outer_headers.clone();
        m.extend_from_slice(b"MIME-Version: 1.0\r\n");
        m.extend_from_slice(&self.content);
        m
    }
}

/// Decrypts messages addressed to one key and certificate.
#[derive(Debug)]
pub struct Decryptor {
    key: PrivateKey,
    certificate: Certificate,
}

/// A decryptor for the leaf of a certificate and key loaded by
/// mailtls-core.
#[cfg(feature = "mailtls-core")]
impl TryFrom<&CertificateWithKey> for Decryptor {
    type Error = Error;

    fn try_from(credentials: &CertificateWithKey) -> Result<Self> {
        let leaf = credentials
            .chain
            .first()
            .ok_or_else(|| Error::Certificate("the chain is empty".into()))?;
        Self::from_der(leaf, &credentials.key)
    }
}

#[cfg(feature = "mailtls-core")]
impl TryFrom<CertificateWithKey> for Decryptor {
    type Error = Error;

    fn try_from(credentials: CertificateWithKey) -> Result<Self> {
        Self::try_from(&credentials)
    }
}

impl Decryptor {
    /// A decryptor for `key`, whose certificate is `certificate`.
    pub fn new(key: PrivateKey, certificate: Certificate) -> Result<Self> {
        if key.rsa_decrypting_key().is_none() && key.ecdh_key().is_none() {
            return Err(Error::Key(
                "only RSA and EC (P-256, P-384, P-521) keys can decrypt".into(),
            ));
        }
        if certificate.public_key().2 != key.public_key_bits() {
            return Err(Error::Key(
                "the private key does not belong to the certificate".into(),
            ));
        }
        Ok(Self { key, certificate })
    }

    /// A decryptor from a certificate and key as rustls and mailtls-core
    /// hold them; the key may be PKCS #8, PKCS #1 or SEC1.
    pub fn from_der(certificate: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<Self> {
        Self::new(
            PrivateKey::from_der(key)?,
            Certificate::try_from(certificate)?,
        )
    }

    /// The certificate this decryptor answers for.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Decrypts a received application/pkcs7-mime message (also the `x-`
    /// and `.p7m` variants).
    pub fn decrypt_message(&self, message: &[u8]) -> Result<Decrypted> {
        let received = parse::parse(message)?;
        let Layer::Opaque { cms } = received.layer else {
            return Err(Error::NotSmime("the message is not encrypted".into()));
        };
        let (content, cipher) = self.decrypt_cms_inner(&cms)?;
        Ok(Decrypted {
            content,
            outer_headers: received.outer,
            cipher,
        })
    }

    /// Decrypts a CMS EnvelopedData or AuthEnvelopedData (DER or BER) and
    /// returns the content.
    pub fn decrypt_cms(&self, cms: &[u8]) -> Result<Vec<u8>> {
        self.decrypt_cms_inner(cms).map(|(c, _)| c)
    }

    fn decrypt_cms_inner(&self, cms: &[u8]) -> Result<(Vec<u8>, ContentCipher)> {
        let der = ber::to_der(cms)?;
        let ci = ContentInfoRef::from_der(&der).map_err(|e| Error::cms("ContentInfo", e))?;
        if ci.content_type == ID_ENVELOPED_DATA {
            let ed: EnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| Error::cms("EnvelopedData", e))?;
            let cipher = ContentCipher::from_identifier(&ed.encrypted_content.content_enc_alg)?;
            if matches!(cipher, ContentCipher::Modern(c) if c.is_authenticated()) {
                return Err(Error::cms(
                    "EnvelopedData",
                    "GCM content needs AuthEnvelopedData",
                ));
            }
            let cek = self.content_key(&ed.recip_infos, cipher)?;
            let content = envelope::open(cipher, &cek, ed.encrypted_content, None)?;
            Ok((content, cipher))
        } else if ci.content_type == ID_AUTH_ENVELOPED_DATA {
            let ad: AuthEnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| Error::cms("AuthEnvelopedData", e))?;
            let cipher =
                ContentCipher::from_identifier(&ad.auth_encrypted_content.content_enc_alg)?;
            if !matches!(cipher, ContentCipher::Modern(c) if c.is_authenticated()) {
                return Err(Error::cms(
                    "AuthEnvelopedData",
                    "content cipher is not an authenticated mode",
                ));
            }
            let cek = self.content_key(&ad.recip_infos, cipher)?;
            let aad = envelope::aad(ad.auth_attrs.as_ref())?;
            let content = envelope::open(
                cipher,
                &cek,
                ad.auth_encrypted_content,
                Some((ad.mac.as_bytes(), &aad)),
            )?;
            Ok((content, cipher))
        } else {
            Err(Error::NotSmime(format!(
                "CMS content type {} is not (auth-)enveloped-data",
                ci.content_type
            )))
        }
    }

    /// Whether this decryptor's certificate is among the recipients of an
    /// encrypted message (application/pkcs7-mime enveloped-data or
    /// authEnveloped-data), found without decrypting anything. `Err` when
    /// the message is not encrypted or its CMS cannot be read.
    pub fn is_recipient_of(&self, message: &[u8]) -> Result<bool> {
        let received = parse::parse(message)?;
        let Layer::Opaque { cms } = received.layer else {
            return Err(Error::NotSmime("the message is not encrypted".into()));
        };
        let der = ber::to_der(&cms)?;
        let ci = ContentInfoRef::from_der(&der).map_err(|e| Error::cms("ContentInfo", e))?;
        let infos = if ci.content_type == ID_ENVELOPED_DATA {
            let ed: EnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| Error::cms("EnvelopedData", e))?;
            ed.recip_infos
        } else if ci.content_type == ID_AUTH_ENVELOPED_DATA {
            let ad: AuthEnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| Error::cms("AuthEnvelopedData", e))?;
            ad.recip_infos
        } else {
            return Err(Error::NotSmime(format!(
                "CMS content type {} is not (auth-)enveloped-data",
                ci.content_type
            )));
        };
        Ok(self.find_recipient(&infos).is_some()
            || infos.0.iter().any(|ri| match ri {
                RecipientInfo::Kari(kari) => {
                    ecdh::encrypted_key_for(kari, &self.certificate).is_some()
                }
                _ => false,
            }))
    }

    fn find_recipient<'a>(&self, infos: &'a RecipientInfos) -> Option<&'a KeyTransRecipientInfo> {
        let ias = self.certificate.issuer_and_serial();
        let ski = self.certificate.subject_key_identifier();
        infos.0.iter().find_map(|ri| match ri {
            RecipientInfo::Ktri(k) => match &k.rid {
                RecipientIdentifier::IssuerAndSerialNumber(i) if *i == ias => Some(k),
                RecipientIdentifier::SubjectKeyIdentifier(s)
                    if ski.as_deref() == Some(s.0.as_bytes()) =>
                {
                    Some(k)
                }
                _ => None,
            },
            _ => None,
        })
    }

    pub(crate) fn content_key(
        &self,
        infos: &RecipientInfos,
        cipher: ContentCipher,
    ) -> Result<Vec<u8>> {
        let expected = cipher.key_len();
        let Some(ktri) = self.find_recipient(infos) else {
            // Key agreement (ECDH) recipients.
            for ri in infos.0.iter() {
                let RecipientInfo::Kari(kari) = ri else {
                    continue;
                };
                let Some(ek) = ecdh::encrypted_key_for(kari, &self.certificate) else {
                    continue;
                };
                let (private, curve) = self.key.ecdh_key().ok_or(Error::DecryptionFailed)?;
                let cek = ecdh::unwrap_key(kari, ek, private, curve)?;
                if cek.len() != expected {
                    return Err(Error::DecryptionFailed);
                }
                return Ok(cek);
            }
            return Err(Error::NoMatchingRecipient);
        };
        let private = self
            .key
            .rsa_decrypting_key()
            .ok_or(Error::DecryptionFailed)?;
        let transport = KeyManagement::from_identifier(&ktri.key_enc_alg)?;
        let enc = ktri.enc_key.as_bytes();
        match transport {
            KeyManagement::RsaPkcs1v15 => {
                // RFC 3218 section 2.3.2: on any failure carry on with a
                // random key, so that the outcome (a content decryption
                // failure) is the same whether the padding was bad or not.
                let fake = envelope::random(expected)?;
                let k = Pkcs1PrivateDecryptingKey::new(private.clone())
                    .map_err(|_| Error::DecryptionFailed)?;
                let mut buf = vec![0u8; k.min_output_size()];
                let (ok, real) = match k.decrypt(enc, &mut buf) {
                    Ok(p) if p.len() == expected => (0xffu8, p.to_vec()),
                    _ => (0u8, vec![0u8; expected]),
                };
                Ok(real
                    .iter()
                    .zip(fake.iter())
                    .map(|(r, f)| (r & ok) | (f & !ok))
                    .collect())
            }
            KeyManagement::EcdhP256Sha256Kdf
            | KeyManagement::EcdhP256Sha1Kdf
            | KeyManagement::EcdhP384Sha384Kdf
            | KeyManagement::EcdhP521Sha512Kdf => Err(Error::DecryptionFailed),
            KeyManagement::RsaOaepSha1 | KeyManagement::RsaOaepSha256 => {
                let alg = if transport == KeyManagement::RsaOaepSha1 {
                    &OAEP_SHA1_MGF1SHA1
                } else {
                    &OAEP_SHA256_MGF1SHA256
                };
                let k = OaepPrivateDecryptingKey::new(private.clone())
                    .map_err(|_| Error::DecryptionFailed)?;
                let mut buf = vec![0u8; k.min_output_size()];
                let p = k
                    .decrypt(alg, enc, &mut buf, None)
                    .map_err(|_| Error::DecryptionFailed)?;
                if p.len() != expected {
                    return Err(Error::DecryptionFailed);
                }
                Ok(p.to_vec())
            }
        }
    }
}
