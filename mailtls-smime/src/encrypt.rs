//! Encryption: EnvelopedData (AES-CBC) and AuthEnvelopedData (AES-GCM) to
//! one or more RSA recipients, as application/pkcs7-mime.

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey,
    PublicEncryptingKey,
};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier, RecipientInfo, RecipientInfos,
};
use der::Encode;
use der::asn1::OctetString;
use x509_cert::ext::pkix::KeyUsages;

use crate::algorithms::{
    ContentEncryption, EC_PUBLIC_KEY, ID_AUTH_ENVELOPED_DATA, ID_ENVELOPED_DATA, KeyManagement,
    RSA_ENCRYPTION,
};
use crate::cert::Certificate;
use crate::ecdh;
use crate::envelope::{self, AuthEnvelopedData};
use crate::error::{Error, Result};
use crate::key::EcCurve;
use crate::mime::{build, canon};
use crate::sign::set_of;

/// Encrypts messages to a set of recipients.
///
/// Add the sender's own certificate as a recipient so that the sent copy
/// stays readable.
#[derive(Debug, Clone)]
pub struct Encryptor {
    cipher: ContentEncryption,
    recipients: Vec<(Certificate, KeyManagement)>,
}

impl Encryptor {
    /// An encryptor with `cipher` and no recipients yet. Use
    /// [`ContentEncryption::choose`] to follow a partner's capabilities.
    pub fn new(cipher: ContentEncryption) -> Self {
        Self {
            cipher,
            recipients: Vec::new(),
        }
    }

    /// Adds a recipient. RSA key transport needs an RSA certificate whose
    /// key usage (if present) allows keyEncipherment; ECDH needs a certificate
    /// on the method's curve (P-256, P-384 or P-521)
    /// certificate whose key usage (if present) allows keyAgreement.
    pub fn add_recipient(
        &mut self,
        certificate: Certificate,
        transport: KeyManagement,
    ) -> Result<()> {
        let (alg, curve, _) = certificate.public_key();
        let (usable, usage, usage_name) = if transport.is_key_agreement() {
            (
                alg == EC_PUBLIC_KEY && ecdh::curve_of(transport) == EcCurve::from_oid(curve),
                KeyUsages::KeyAgreement,
                "keyAgreement",
            )
        } else {
            (
                alg == RSA_ENCRYPTION,
                KeyUsages::KeyEncipherment,
                "keyEncipherment",
            )
        };
        if !usable {
            return Err(Error::Certificate(format!(
                "recipient \"{}\" has a {alg} key, which {transport:?} cannot use",
                certificate.subject()
            )));
        }
        if let Some(ku) = certificate.key_usage()
            && !ku.0.contains(usage)
        {
            return Err(Error::Certificate(format!(
                "recipient \"{}\": key usage does not allow {usage_name}",
                certificate.subject()
            )));
        }
        self.recipients.push((certificate, transport));
        Ok(())
    }

    /// Builder form of [`Encryptor::add_recipient`].
    pub fn with_recipient(
        mut self,
        certificate: Certificate,
        transport: KeyManagement,
    ) -> Result<Self> {
        self.add_recipient(certificate, transport)?;
        Ok(self)
    }

    /// Encrypts a whole RFC 5322 message: header fields other than
    /// Content-* stay outside, the MIME entity (CRLF) is encrypted, and the
    /// result is an application/pkcs7-mime message.
    pub fn encrypt_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        let split = canon::split_message(message, false)?;
        let der = self.encrypt_content(&split.entity)?;
        let smime_type = if self.cipher.is_authenticated() {
            "authEnveloped-data"
        } else {
            "enveloped-data"
        };
        Ok(build::pkcs7_mime(&split.outer, smime_type, &der))
    }

    /// Encrypts `content` and returns a DER ContentInfo holding
    /// EnvelopedData (CBC) or AuthEnvelopedData (GCM).
    pub fn encrypt_content(&self, content: &[u8]) -> Result<Vec<u8>> {
        if self.recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        let cek = envelope::random(self.cipher.key_len())?;
        let (recip_infos, version) = self.recipient_infos(&cek)?;
        let sealed = envelope::seal(self.cipher, &cek, content)?;
        // Encoded straight into the output buffer: going through `Any`
        // and ContentInfo would copy the ciphertext twice more.
        match sealed.tag {
            None => envelope::content_info_der(
                ID_ENVELOPED_DATA,
                &EnvelopedData {
                    version,
                    originator_info: None,
                    recip_infos,
                    encrypted_content: sealed.info,
                    unprotected_attrs: None,
                },
                "EnvelopedData",
            ),
            Some(tag) => envelope::content_info_der(
                ID_AUTH_ENVELOPED_DATA,
                &AuthEnvelopedData {
                    version: CmsVersion::V0,
                    originator_info: None,
                    recip_infos,
                    auth_encrypted_content: sealed.info,
                    auth_attrs: None,
                    mac: OctetString::new(tag).map_err(|e| Error::cms("mac", e))?,
                    unauth_attrs: None,
                },
                "AuthEnvelopedData",
            ),
        }
    }
}

impl Encryptor {
    /// The content cipher.
    pub fn cipher(&self) -> ContentEncryption {
        self.cipher
    }

    /// One RecipientInfo per recipient for `cek`, and the EnvelopedData
    /// version they imply.
    pub(crate) fn recipient_infos(&self, cek: &[u8]) -> Result<(RecipientInfos, CmsVersion)> {
        if self.recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        let mut infos = Vec::with_capacity(self.recipients.len());
        for (cert, method) in &self.recipients {
            infos.push(if method.is_key_agreement() {
                RecipientInfo::Kari(ecdh::recipient_info(cert, *method, cek)?)
            } else {
                RecipientInfo::Ktri(key_trans(cert, *method, cek)?)
            });
        }
        // RFC 5652 section 6.1: version 0 only when every recipient info
        // is version 0 (key transport by issuer and serial), else 2.
        let version = if self.recipients.iter().all(|(_, m)| !m.is_key_agreement()) {
            CmsVersion::V0
        } else {
            CmsVersion::V2
        };
        Ok((RecipientInfos(set_of(infos, "recipientInfos")?), version))
    }
}

fn key_trans(
    cert: &Certificate,
    transport: KeyManagement,
    cek: &[u8],
) -> Result<KeyTransRecipientInfo> {
    let spki = cert
        .x509()
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::cms("SubjectPublicKeyInfo", e))?;
    let public = PublicEncryptingKey::from_der(&spki)
        .map_err(|e| Error::Certificate(format!("recipient RSA key rejected: {e}")))?;
    let crypto = |_| Error::Crypto("RSA key transport");
    let enc_key = match transport {
        KeyManagement::RsaPkcs1v15 => {
            let k = Pkcs1PublicEncryptingKey::new(public).map_err(crypto)?;
            let mut out = vec![0u8; k.ciphertext_size()];
            k.encrypt(cek, &mut out).map_err(crypto)?.to_vec()
        }
        KeyManagement::EcdhP256Sha256Kdf
        | KeyManagement::EcdhP256Sha1Kdf
        | KeyManagement::EcdhP384Sha384Kdf
        | KeyManagement::EcdhP521Sha512Kdf => {
            return Err(Error::Crypto("ECDH is not key transport"));
        }
        KeyManagement::RsaOaepSha1 | KeyManagement::RsaOaepSha256 => {
            let alg = if transport == KeyManagement::RsaOaepSha1 {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let k = OaepPublicEncryptingKey::new(public).map_err(crypto)?;
            let mut out = vec![0u8; k.ciphertext_size()];
            k.encrypt(alg, cek, &mut out, None)
                .map_err(crypto)?
                .to_vec()
        }
    };
    Ok(KeyTransRecipientInfo {
        version: CmsVersion::V0,
        rid: RecipientIdentifier::IssuerAndSerialNumber(cert.issuer_and_serial()),
        key_enc_alg: transport.identifier()?,
        enc_key: OctetString::new(enc_key).map_err(|e| Error::cms("encryptedKey", e))?,
    })
}
