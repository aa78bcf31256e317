//! Algorithms the engine writes and reads, with their object identifiers.

use const_oid::ObjectIdentifier;
use der::asn1::{Any, ObjectIdentifier as Oid};
use der::{Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;

use crate::error::{Error, Result};

/// `id-sha1`.
pub(crate) const SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// `id-sha256`.
pub(crate) const SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// `id-sha384`.
pub(crate) const SHA_384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// `id-sha512`.
pub(crate) const SHA_512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// `id-aes128-GCM` (RFC 5084 section 3.2).
pub(crate) const AES_128_GCM: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6");
/// `id-aes192-GCM` (RFC 5084 section 3.2).
pub(crate) const AES_192_GCM: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.26");
/// `id-aes256-GCM` (RFC 5084 section 3.2).
pub(crate) const AES_256_GCM: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
/// `id-aes128-CBC`.
pub(crate) const AES_128_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
/// `id-aes192-CBC` (what `openssl cms -aes192` and gpgsm write on request).
pub(crate) const AES_192_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
/// `id-aes256-CBC`.
pub(crate) const AES_256_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
/// `des-ede3-cbc` (RFC 3370 section 5.1), read-only.
pub(crate) const DES_EDE3_CBC: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.3.7");
/// `rsaEncryption`.
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-RSAES-OAEP` (RFC 8017 / RFC 4055).
pub(crate) const RSAES_OAEP: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
/// `id-mgf1`.
pub(crate) const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// `id-ecPublicKey`.
pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1`.
pub(crate) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1`.
pub(crate) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `secp521r1`.
pub(crate) const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
/// `id-Ed25519` (RFC 8410).
pub(crate) const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// `id-data`.
pub(crate) const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// `id-signedData`.
pub(crate) const ID_SIGNED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-envelopedData`.
pub(crate) const ID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// `id-ct-authEnvelopedData` (RFC 5083).
pub(crate) const ID_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
/// `id-contentType` attribute.
pub(crate) const ATTR_CONTENT_TYPE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// `id-messageDigest` attribute.
pub(crate) const ATTR_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// `id-signingTime` attribute.
pub(crate) const ATTR_SIGNING_TIME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// `smimeCapabilities` attribute (RFC 8551 section 2.5.2).
pub(crate) const ATTR_SMIME_CAPABILITIES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
/// `id-aa-signingCertificateV2` (RFC 5035).
pub(crate) const ATTR_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// `id-aa-encrypKeyPref` (RFC 8551 section 2.5.3).
pub(crate) const ATTR_ENCRYPTION_KEY_PREFERENCE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.11");

/// Message digest used for signatures.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-1: read only. Outlook and older NSS still sign with it, so
    /// signatures over SHA-1 are verified, and reported as weak
    /// ([`crate::verify::Verdict::ValidWeak`]), never as plainly valid
    /// (RFC 8551 section 2.1: collisions are practical). This engine never
    /// signs with it: [`crate::Signer::with_digest`] refuses it.
    Sha1,
    /// SHA-256 (RFC 8551 MUST).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512 (RFC 8551 MUST).
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's object identifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => SHA_1,
            Self::Sha256 => SHA_256,
            Self::Sha384 => SHA_384,
            Self::Sha512 => SHA_512,
        }
    }

    /// The `micalg` parameter value of multipart/signed (RFC 8551 section 3.5.3.2).
    pub fn micalg(self) -> &'static str {
        match self {
            Self::Sha1 => "sha-1",
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }

    /// Whether the digest is too weak to trust a signature made with it
    /// (SHA-1): such signatures verify but are reported as weak.
    pub fn is_weak(self) -> bool {
        matches!(self, Self::Sha1)
    }

    pub(crate) fn from_oid(oid: &ObjectIdentifier) -> Result<Self> {
        match *oid {
            SHA_1 => Ok(Self::Sha1),
            SHA_256 => Ok(Self::Sha256),
            SHA_384 => Ok(Self::Sha384),
            SHA_512 => Ok(Self::Sha512),
            _ => Err(Error::UnsupportedAlgorithm {
                what: "digest",
                oid: oid.to_string(),
            }),
        }
    }

    pub(crate) fn ring(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(self.ring(), data)
            .as_ref()
            .to_vec()
    }

    /// Identifier with absent parameters, as RFC 5754 section 2 asks.
    pub(crate) fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: None,
        }
    }
}

/// Content-encryption algorithm.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentEncryption {
    /// AES-128 in CBC mode (EnvelopedData).
    Aes128Cbc,
    /// AES-192 in CBC mode (EnvelopedData).
    Aes192Cbc,
    /// AES-256 in CBC mode (EnvelopedData).
    Aes256Cbc,
    /// AES-128 in GCM mode (AuthEnvelopedData, RFC 5083/5084).
    Aes128Gcm,
    /// AES-192 in GCM mode (AuthEnvelopedData, RFC 5083/5084).
    Aes192Gcm,
    /// AES-256 in GCM mode (AuthEnvelopedData, RFC 5083/5084).
    Aes256Gcm,
}

impl ContentEncryption {
    /// The algorithm's object identifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Aes128Cbc => AES_128_CBC,
            Self::Aes192Cbc => AES_192_CBC,
            Self::Aes256Cbc => AES_256_CBC,
            Self::Aes128Gcm => AES_128_GCM,
            Self::Aes192Gcm => AES_192_GCM,
            Self::Aes256Gcm => AES_256_GCM,
        }
    }

    /// Whether this is an authenticated mode (written as AuthEnvelopedData).
    pub fn is_authenticated(self) -> bool {
        matches!(self, Self::Aes128Gcm | Self::Aes192Gcm | Self::Aes256Gcm)
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::Aes128Cbc | Self::Aes128Gcm => 16,
            Self::Aes192Cbc | Self::Aes192Gcm => 24,
            Self::Aes256Cbc | Self::Aes256Gcm => 32,
        }
    }

    pub(crate) fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [
            Self::Aes128Cbc,
            Self::Aes192Cbc,
            Self::Aes256Cbc,
            Self::Aes128Gcm,
            Self::Aes192Gcm,
            Self::Aes256Gcm,
        ]
        .into_iter()
        .find(|c| c.oid() == *oid)
    }

    /// Picks the strongest algorithm a partner advertised, following RFC 8551
    /// section 2.7.1 and the interop note: GCM only when advertised, else
    /// AES-256-CBC if advertised, else AES-128-CBC (the MUST- floor). `None`
    /// (no capabilities known) gives AES-256-CBC, which every current client
    /// reads.
    pub fn choose(capabilities: Option<&SmimeCapabilities>) -> Self {
        Self::choose_common(&[capabilities])
    }

    /// Picks one algorithm for a message to several recipients, from what
    /// each advertised (`None`: nothing known about that recipient).
    ///
    /// GCM only when every recipient advertised it: Outlook's and OpenSSL's
    /// own capability lists do not include it, so a recipient that said
    /// nothing is assumed to read AES-CBC only. A recipient with a list
    /// accepts what is on it. When no algorithm this engine writes is common
    /// to all, AES-128-CBC, the RFC 8551 floor, is returned; no recipients
    /// gives AES-256-CBC.
    pub fn choose_common(recipients: &[Option<&SmimeCapabilities>]) -> Self {
        if recipients.is_empty() {
            return Self::Aes256Cbc;
        }
        let accepts = |caps: &Option<&SmimeCapabilities>, alg: Self| match caps {
            Some(c) => c.advertises(&alg.oid()),
            None => !alg.is_authenticated(),
        };
        // AES-192 only where a recipient lists it but not AES-256.
        [
            Self::Aes256Gcm,
            Self::Aes192Gcm,
            Self::Aes128Gcm,
            Self::Aes256Cbc,
            Self::Aes192Cbc,
            Self::Aes128Cbc,
        ]
        .into_iter()
        .find(|alg| recipients.iter().all(|caps| accepts(caps, *alg)))
        .unwrap_or(Self::Aes128Cbc)
    }
}

/// How the content-encryption key reaches a recipient: RSA key transport
/// for RSA certificates, ECDH key agreement (RFC 5753) for P-256, P-384
/// and P-521 ones ([`KeyManagement::for_certificate`] picks the usual one).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyManagement {
    /// RSAES-PKCS1-v1_5 (RFC 8551 MUST-; what most clients read).
    RsaPkcs1v15,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 4055 parameters).
    RsaOaepSha256,
    /// RSAES-OAEP with the default SHA-1 parameters (OpenSSL's default OAEP).
    RsaOaepSha1,
    /// Ephemeral-static ECDH on P-256, `dhSinglePass-stdDH-sha256kdf-scheme`,
    /// AES key wrap (RFC 5753 section 3.1, RFC 8551 MUST).
    EcdhP256Sha256Kdf,
    /// As [`KeyManagement::EcdhP256Sha256Kdf`] with the SHA-1 KDF
    /// (`dhSinglePass-stdDH-sha1kdf-scheme`, OpenSSL's default).
    EcdhP256Sha1Kdf,
    /// Ephemeral-static ECDH on P-384, `dhSinglePass-stdDH-sha384kdf-scheme`,
    /// AES-256 key wrap (RFC 5753 section 8: the KDF hash matching the
    /// curve; what `openssl cms -keyopt ecdh_kdf_md:sha384` writes).
    EcdhP384Sha384Kdf,
    /// Ephemeral-static ECDH on P-521, `dhSinglePass-stdDH-sha512kdf-scheme`,
    /// AES-256 key wrap.
    EcdhP521Sha512Kdf,
}

impl KeyManagement {
    /// Whether this is ECDH key agreement (needs an EC certificate) rather
    /// than RSA key transport.
    pub fn is_key_agreement(self) -> bool {
        matches!(
            self,
            Self::EcdhP256Sha256Kdf
                | Self::EcdhP256Sha1Kdf
                | Self::EcdhP384Sha384Kdf
                | Self::EcdhP521Sha512Kdf
        )
    }

    /// The usual method for a recipient certificate: RSAES-PKCS1-v1_5 for
    /// RSA (what every client reads), ECDH with the KDF hash matching the
    /// curve for P-256, P-384 and P-521. Other keys (Ed25519 signs only;
    /// X25519 recipients are not supported) are an
    /// [`Error::Certificate`].
    pub fn for_certificate(certificate: &crate::Certificate) -> Result<Self> {
        let (alg, curve, _) = certificate.public_key();
        match (alg, curve) {
            (RSA_ENCRYPTION, _) => Ok(Self::RsaPkcs1v15),
            (EC_PUBLIC_KEY, Some(SECP256R1)) => Ok(Self::EcdhP256Sha256Kdf),
            (EC_PUBLIC_KEY, Some(SECP384R1)) => Ok(Self::EcdhP384Sha384Kdf),
            (EC_PUBLIC_KEY, Some(SECP521R1)) => Ok(Self::EcdhP521Sha512Kdf),
            _ => Err(Error::Certificate(format!(
                "recipient \"{}\" has a key that cannot receive encrypted mail \
                 (RSA, or EC on P-256, P-384 or P-521)",
                certificate.subject()
            ))),
        }
    }
}

/// RSASSA-OAEP-params (RFC 4055 section 4.1), with all fields explicit.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) label: Option<AlgorithmIdentifierOwned>,
}

impl KeyManagement {
    pub(crate) fn identifier(self) -> Result<AlgorithmIdentifierOwned> {
        match self {
            Self::EcdhP256Sha256Kdf
            | Self::EcdhP256Sha1Kdf
            | Self::EcdhP384Sha384Kdf
            | Self::EcdhP521Sha512Kdf => Err(Error::UnsupportedAlgorithm {
                what: "key transport (ECDH is key agreement)",
                oid: EC_PUBLIC_KEY.to_string(),
            }),
            Self::RsaPkcs1v15 => Ok(AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            }),
            Self::RsaOaepSha1 => Ok(AlgorithmIdentifierOwned {
                oid: RSAES_OAEP,
                parameters: Some(
                    Any::from_der(&[0x30, 0x00]).map_err(|e| Error::cms("OAEP parameters", e))?,
                ),
            }),
            Self::RsaOaepSha256 => {
                let sha256 = DigestAlgorithm::Sha256.identifier();
                let params = OaepParams {
                    hash: Some(sha256.clone()),
                    mask_gen: Some(AlgorithmIdentifierOwned {
                        oid: MGF1,
                        parameters: Some(
                            Any::encode_from(&sha256).map_err(|e| Error::cms("MGF1", e))?,
                        ),
                    }),
                    label: None,
                };
                Ok(AlgorithmIdentifierOwned {
                    oid: RSAES_OAEP,
                    parameters: Some(
                        Any::encode_from(&params).map_err(|e| Error::cms("OAEP parameters", e))?,
                    ),
                })
            }
        }
    }

    /// Reads the key-transport algorithm of a KeyTransRecipientInfo.
    pub(crate) fn from_identifier(alg: &AlgorithmIdentifierOwned) -> Result<Self> {
        if alg.oid == RSA_ENCRYPTION {
            return Ok(Self::RsaPkcs1v15);
        }
        if alg.oid != RSAES_OAEP {
            return Err(Error::UnsupportedAlgorithm {
                what: "key transport",
                oid: alg.oid.to_string(),
            });
        }
        // Absent parameters, or absent fields, mean SHA-1 / MGF1-SHA-1.
        let params = match &alg.parameters {
            None => return Ok(Self::RsaOaepSha1),
            Some(any) => any
                .decode_as::<OaepParams>()
                .map_err(|e| Error::cms("RSAES-OAEP-params", e))?,
        };
        if params.label.is_some() {
            return Err(Error::UnsupportedAlgorithm {
                what: "OAEP label source",
                oid: RSAES_OAEP.to_string(),
            });
        }
        let hash = params.hash.map(|h| h.oid).unwrap_or(SHA_1);
        let mgf_hash = match params.mask_gen {
            None => SHA_1,
            Some(mg) => {
                if mg.oid != MGF1 {
                    return Err(Error::UnsupportedAlgorithm {
                        what: "OAEP mask generation",
                        oid: mg.oid.to_string(),
                    });
                }
                mg.parameters
                    .and_then(|p| p.decode_as::<AlgorithmIdentifierOwned>().ok())
                    .map(|a| a.oid)
                    .unwrap_or(SHA_1)
            }
        };
        match (hash, mgf_hash) {
            (SHA_1, SHA_1) => Ok(Self::RsaOaepSha1),
            (SHA_256, SHA_256) => Ok(Self::RsaOaepSha256),
            (h, _) => Err(Error::UnsupportedAlgorithm {
                what: "OAEP hash",
                oid: h.to_string(),
            }),
        }
    }
}

/// `id-RSASSA-PSS` (RFC 4055 section 3.1).
pub(crate) const RSASSA_PSS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// RSASSA-PSS-params (RFC 4055 section 3.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) salt_len: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) trailer: Option<u32>,
}

impl PssParams {
    /// Parameters for `digest` with MGF1 over the same digest and a salt as
    /// long as the digest (RFC 8702 style, what aws-lc-rs signs with).
    pub(crate) fn for_digest(digest: DigestAlgorithm) -> Result<AlgorithmIdentifierOwned> {
        let h = digest.identifier();
        let salt = digest.ring().output_len() as u32;
        let params = Self {
            hash: Some(h.clone()),
            mask_gen: Some(AlgorithmIdentifierOwned {
                oid: MGF1,
                parameters: Some(Any::encode_from(&h).map_err(|e| Error::cms("MGF1", e))?),
            }),
            salt_len: Some(salt),
            trailer: None,
        };
        Ok(AlgorithmIdentifierOwned {
            oid: RSASSA_PSS,
            parameters: Some(
                Any::encode_from(&params).map_err(|e| Error::cms("RSASSA-PSS-params", e))?,
            ),
        })
    }

    /// Reads the digest (hash and MGF1 hash must agree) and salt length.
    pub(crate) fn read(alg: &AlgorithmIdentifierOwned) -> Result<(DigestAlgorithm, u32)> {
        let p: Self = alg
            .parameters
            .as_ref()
            .ok_or_else(|| Error::cms("RSASSA-PSS-params", "parameters missing"))?
            .decode_as()
            .map_err(|e| Error::cms("RSASSA-PSS-params", e))?;
        // Absent hash means SHA-1: verified, and reported as weak.
        let hash = p.hash.map(|h| h.oid).unwrap_or(SHA_1);
        let digest = DigestAlgorithm::from_oid(&hash)?;
        let mgf_hash = p
            .mask_gen
            .filter(|m| m.oid == MGF1)
            .and_then(|m| m.parameters)
            .and_then(|p| p.decode_as::<AlgorithmIdentifierOwned>().ok())
            .map(|a| a.oid);
        if mgf_hash != Some(hash) {
            return Err(Error::UnsupportedAlgorithm {
                what: "RSA-PSS mask generation (MGF1 hash differs)",
                oid: RSASSA_PSS.to_string(),
            });
        }
        if p.trailer.unwrap_or(1) != 1 {
            return Err(Error::cms("RSASSA-PSS-params", "trailer field must be 1"));
        }
        Ok((digest, p.salt_len.unwrap_or(20)))
    }
}

/// One SMIMECapability (RFC 8551 section 2.5.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct SmimeCapability {
    pub(crate) capability_id: Oid,
    pub(crate) parameters: Option<Any>,
}

/// The algorithms a correspondent announced in its SMIMECapabilities
/// signed attribute, in its order of preference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmimeCapabilities {
    oids: Vec<ObjectIdentifier>,
}

impl SmimeCapabilities {
    /// Capabilities from object identifiers, most preferred first.
    pub fn new(oids: Vec<ObjectIdentifier>) -> Self {
        Self { oids }
    }

    /// The announced algorithms, most preferred first.
    pub fn oids(&self) -> &[ObjectIdentifier] {
        &self.oids
    }

    /// Whether the correspondent announced this algorithm.
    pub fn advertises(&self, oid: &ObjectIdentifier) -> bool {
        self.oids.contains(oid)
    }

    /// What this engine announces when it signs: the content ciphers it
    /// reads (GCM first), then its digests.
    pub fn ours() -> Self {
        Self::new(vec![
            AES_256_GCM,
            AES_128_GCM,
            AES_256_CBC,
            AES_128_CBC,
            RSAES_OAEP,
            RSA_ENCRYPTION,
            SHA_512,
            SHA_256,
        ])
    }

    pub(crate) fn to_der(&self) -> Result<Vec<u8>> {
        let caps: Vec<SmimeCapability> = self
            .oids
            .iter()
            .map(|oid| SmimeCapability {
                capability_id: *oid,
                parameters: None,
            })
            .collect();
        caps.to_der()
            .map_err(|e| Error::cms("SMIMECapabilities", e))
    }

    pub(crate) fn from_der(der: &[u8]) -> Result<Self> {
        let caps = Vec::<SmimeCapability>::from_der(der)
            .map_err(|e| Error::cms("SMIMECapabilities", e))?;
        Ok(Self::new(
            caps.into_iter().map(|c| c.capability_id).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_only_when_advertised() {
        assert_eq!(
            ContentEncryption::choose(None),
            ContentEncryption::Aes256Cbc
        );
        let cbc = SmimeCapabilities::new(vec![AES_128_CBC]);
        assert_eq!(
            ContentEncryption::choose(Some(&cbc)),
            ContentEncryption::Aes128Cbc
        );
        let gcm = SmimeCapabilities::new(vec![AES_128_GCM, AES_256_CBC]);
        assert_eq!(
            ContentEncryption::choose(Some(&gcm)),
            ContentEncryption::Aes128Gcm
        );
    }

    #[test]
    fn common_choice_needs_every_recipient() {
        use ContentEncryption::*;
        let caps = |algs: &[ContentEncryption]| {
            SmimeCapabilities::new(algs.iter().map(|a| a.oid()).collect())
        };
        let a = caps(&[Aes128Gcm, Aes128Cbc]);
        let b = caps(&[Aes256Gcm, Aes128Gcm, Aes256Cbc]);
        assert_eq!(
            ContentEncryption::choose_common(&[Some(&a), Some(&b)]),
            Aes128Gcm
        );
        assert_eq!(ContentEncryption::choose_common(&[Some(&b)]), Aes256Gcm);
        assert_eq!(
            ContentEncryption::choose_common(&[Some(&b), None]),
            Aes256Cbc
        );
        assert_eq!(ContentEncryption::choose_common(&[None]), Aes256Cbc);
        assert_eq!(ContentEncryption::choose_common(&[]), Aes256Cbc);
        // An OpenSSL-style list (AES-192 and 3DES, no GCM): AES-256-CBC.
        let openssl = SmimeCapabilities::new(vec![
            AES_256_CBC,
            ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22"),
            AES_128_CBC,
            DES_EDE3_CBC,
        ]);
        assert_eq!(
            ContentEncryption::choose_common(&[Some(&b), Some(&openssl)]),
            Aes256Cbc
        );
        // Nothing writable in common: the floor, never 3DES.
        let des = SmimeCapabilities::new(vec![DES_EDE3_CBC]);
        assert_eq!(ContentEncryption::choose_common(&[Some(&des)]), Aes128Cbc);
    }

    #[test]
    fn capabilities_round_trip() {
        let ours = SmimeCapabilities::ours();
        let der = ours.to_der().unwrap();
        assert_eq!(SmimeCapabilities::from_der(&der).unwrap(), ours);
    }

    #[test]
    fn oaep_identifiers_round_trip() {
        for kt in [
            KeyManagement::RsaPkcs1v15,
            KeyManagement::RsaOaepSha1,
            KeyManagement::RsaOaepSha256,
        ] {
            let id = kt.identifier().unwrap();
            assert_eq!(KeyManagement::from_identifier(&id).unwrap(), kt);
        }
        let absent = AlgorithmIdentifierOwned {
            oid: RSAES_OAEP,
            parameters: None,
        };
        assert_eq!(
            KeyManagement::from_identifier(&absent).unwrap(),
            KeyManagement::RsaOaepSha1
        );
    }
}
