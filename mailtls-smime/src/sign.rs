//! Signing: CMS SignedData with the S/MIME signed attributes, wrapped as
//! multipart/signed or application/pkcs7-mime.

use std::time::SystemTime;

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec, UtcTime};
use der::{Encode, Sequence};
#[cfg(feature = "mailtls-core")]
use mailtls_core::CertificateWithKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

use crate::algorithms::{
    ATTR_CONTENT_TYPE, ATTR_ENCRYPTION_KEY_PREFERENCE, ATTR_MESSAGE_DIGEST,
    ATTR_SIGNING_CERTIFICATE_V2, ATTR_SIGNING_TIME, ATTR_SMIME_CAPABILITIES, DigestAlgorithm,
    ED25519, ID_DATA, ID_SIGNED_DATA, SmimeCapabilities,
};
use crate::cert::Certificate;
use crate::error::{Error, Result};
use crate::key::PrivateKey;
use crate::mime::{build, canon};

/// How the signature is attached to the message.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureForm {
    /// multipart/signed with a detached signature: readable without S/MIME.
    #[default]
    Detached,
    /// application/pkcs7-mime; smime-type=signed-data: content inside CMS.
    Opaque,
}

/// ESSCertIDv2 (RFC 5035 section 4) with the default SHA-256 hash.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
}

/// SigningCertificateV2 (RFC 5035 section 3) without policies.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// Signs messages with one key and its certificate chain, and optionally
/// with further keys ([`Signer::with_co_signer`]): one SignedData then
/// carries one SignerInfo per key (RFC 5652 section 5.1).
#[derive(Debug)]
pub struct Signer {
    key: PrivateKey,
    chain: Vec<Certificate>,
    digest: DigestAlgorithm,
    form: SignatureForm,
    capabilities: SmimeCapabilities,
    rsa_pss: bool,
    /// Further signers of the same SignedData (never nested: adding a
    /// signer with co-signers flattens them into this list).
    co_signers: Vec<Signer>,
}

/// A signer for a certificate and key loaded by mailtls-core (a pair of
/// PEM files, or one made by its certificate maker).
#[cfg(feature = "mailtls-core")]
impl TryFrom<&CertificateWithKey> for Signer {
    type Error = Error;

    fn try_from(credentials: &CertificateWithKey) -> Result<Self> {
        Self::from_der(&credentials.chain, &credentials.key)
    }
}

#[cfg(feature = "mailtls-core")]
impl TryFrom<CertificateWithKey> for Signer {
    type Error = Error;

    fn try_from(credentials: CertificateWithKey) -> Result<Self> {
        Self::try_from(&credentials)
    }
}

impl Signer {
    /// A signer for `key`, whose certificate is `chain[0]`; the rest of the
    /// chain (intermediates) is included in every signature so that
    /// receivers can build the path.
    pub fn new(key: PrivateKey, chain: Vec<Certificate>) -> Result<Self> {
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Certificate("signer chain is empty".into()))?;
        if leaf.public_key().2 != key.public_key_bits() {
            return Err(Error::Key(
                "the private key does not belong to the first certificate of the chain".into(),
            ));
        }
        Ok(Self {
            digest: key.default_digest(),
            key,
            chain,
            form: SignatureForm::Detached,
            capabilities: SmimeCapabilities::ours(),
            rsa_pss: false,
            co_signers: Vec::new(),
        })
    }

    /// A signer from a chain (leaf first) and key as rustls and
    /// mailtls-core hold them; the key may be PKCS #8, PKCS #1 or SEC1.
    pub fn from_der(chain: &[CertificateDer<'_>], key: &PrivateKeyDer<'_>) -> Result<Self> {
        Self::new(PrivateKey::from_der(key)?, Certificate::from_chain(chain)?)
    }

    /// Adds another signer: every signature this signer makes then holds a
    /// SignerInfo for `other` too (its key, digest, RSA-PSS choice and
    /// capabilities; its form is ignored, this signer's applies), and
    /// `other`'s chain is included. The content is hashed once per distinct
    /// digest algorithm. A signer whose certificate is already among the
    /// signers is not added twice.
    pub fn with_co_signer(mut self, other: Signer) -> Self {
        self.add_co_signer(other);
        self
    }

    /// In-place form of [`Signer::with_co_signer`].
    pub fn add_co_signer(&mut self, mut other: Signer) {
        let nested = std::mem::take(&mut other.co_signers);
        for signer in std::iter::once(other).chain(nested) {
            let known = self
                .signers()
                .any(|s| s.certificate().der() == signer.certificate().der());
            if !known {
                self.co_signers.push(signer);
            }
        }
    }

    /// How many SignerInfos each signature holds (1 plus the co-signers).
    pub fn signer_count(&self) -> usize {
        1 + self.co_signers.len()
    }

    /// The certificates of every signer, this one first.
    pub fn certificates(&self) -> Vec<&Certificate> {
        self.signers().map(Signer::certificate).collect()
    }

    /// The distinct digest algorithms of all signers, this signer's first:
    /// the content is hashed once with each.
    pub fn digest_algorithms(&self) -> Vec<DigestAlgorithm> {
        let mut out: Vec<DigestAlgorithm> = Vec::new();
        for s in self.signers() {
            if !out.contains(&s.digest) {
                out.push(s.digest);
            }
        }
        out
    }

    /// The `micalg` parameter for multipart/signed: one value, or a quoted
    /// comma-separated list when the signers use several digests (RFC 8551
    /// section 3.5.3.2).
    pub fn micalg(&self) -> String {
        let algs = self.digest_algorithms();
        if algs.len() == 1 {
            return algs[0].micalg().to_owned();
        }
        let list: Vec<&str> = algs.iter().map(|d| d.micalg()).collect();
        format!("\"{}\"", list.join(","))
    }

    /// This signer and its co-signers.
    fn signers(&self) -> impl Iterator<Item = &Signer> {
        std::iter::once(self).chain(self.co_signers.iter())
    }

    /// Chooses the digest (RSA keys only; ECDSA and Ed25519 keys are bound
    /// to theirs).
    ///
    /// SHA-1 is refused ([`Error::UnsupportedAlgorithm`]): it is verified,
    /// never signed with.
    pub fn with_digest(mut self, digest: DigestAlgorithm) -> Result<Self> {
        if digest.is_weak() {
            return Err(crate::key::weak_digest(digest));
        }
        if !self.key.supports_digest(digest) {
            return Err(Error::Key(format!(
                "this key signs with {:?} only",
                self.key.default_digest()
            )));
        }
        self.digest = digest;
        Ok(self)
    }

    /// Signs with RSASSA-PSS (salt as long as the digest, MGF1 with the
    /// same digest) instead of PKCS #1 v1.5. RSA keys only.
    pub fn with_rsa_pss(mut self) -> Result<Self> {
        if !self.key.is_rsa() {
            return Err(Error::Key("RSA-PSS needs an RSA key".into()));
        }
        self.rsa_pss = true;
        Ok(self)
    }

    /// Chooses detached (multipart/signed, the default) or opaque form.
    pub fn with_form(mut self, form: SignatureForm) -> Self {
        self.form = form;
        self
    }

    /// The form signatures take.
    pub fn form(&self) -> SignatureForm {
        self.form
    }

    /// Replaces the SMIMECapabilities announced in each signature.
    pub fn with_capabilities(mut self, capabilities: SmimeCapabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The signer's certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }

    /// Signs a whole RFC 5322 message. Header fields other than Content-*
    /// stay outside; the MIME entity is canonicalised (CRLF, 7-bit) and
    /// signed; the result is a complete message.
    pub fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>> {
        let split = canon::split_message(message, true)?;
        match self.form {
            SignatureForm::Detached => {
                let sig = self.sign_content(&split.entity, true)?;
                build::multipart_signed(&split.outer, &split.entity, &sig, &self.micalg())
            }
            SignatureForm::Opaque => {
                let sig = self.sign_content(&split.entity, false)?;
                Ok(build::pkcs7_mime(&split.outer, "signed-data", &sig))
            }
        }
    }

    /// Signs `content` (already canonical) and returns a DER ContentInfo
    /// holding SignedData, with the content inside unless `detached`.
    pub fn sign_content(&self, content: &[u8], detached: bool) -> Result<Vec<u8>> {
        let digests: Vec<(DigestAlgorithm, Vec<u8>)> = self
            .digest_algorithms()
            .into_iter()
            .map(|d| (d, d.digest(content)))
            .collect();
        self.sign_digests(&digests, if detached { None } else { Some(content) })
    }

    /// The digest algorithm this signer uses (the first signer's; see
    /// [`Signer::digest_algorithms`] for all).
    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        self.digest
    }

    /// Builds the ContentInfo from the content's digests (one per
    /// algorithm of [`Signer::digest_algorithms`]); `econtent` is the
    /// content to encapsulate (opaque form), `None` for detached.
    pub(crate) fn sign_digests(
        &self,
        digests: &[(DigestAlgorithm, Vec<u8>)],
        econtent: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let econtent = match econtent {
            None => None,
            Some(content) => {
                let os = OctetString::new(content).map_err(|e| Error::cms("eContent", e))?;
                Some(Any::encode_from(&os).map_err(|e| Error::cms("eContent", e))?)
            }
        };
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: self.digest_algorithm_set()?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent,
            },
            certificates: Some(self.certificate_set()?),
            crls: None,
            signer_infos: self.signer_infos(digests)?,
        };
        let info = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed).map_err(|e| Error::cms("SignedData", e))?,
        };
        info.to_der().map_err(|e| Error::cms("ContentInfo", e))
    }

    /// digestAlgorithms: each distinct algorithm once.
    pub(crate) fn digest_algorithm_set(&self) -> Result<SetOfVec<AlgorithmIdentifierOwned>> {
        let ids = self
            .digest_algorithms()
            .into_iter()
            .map(DigestAlgorithm::identifier)
            .collect();
        set_of(ids, "digestAlgorithms")
    }

    /// Every signer's chain, each certificate once.
    pub(crate) fn certificate_set(&self) -> Result<CertificateSet> {
        let mut seen: Vec<&[u8]> = Vec::new();
        let mut certs = Vec::new();
        for c in self.signers().flat_map(|s| s.chain.iter()) {
            if seen.contains(&c.der()) {
                continue;
            }
            seen.push(c.der());
            certs.push(CertificateChoices::Certificate(c.x509().clone()));
        }
        Ok(CertificateSet(set_of(certs, "certificates")?))
    }

    /// One SignerInfo per signer, each over the digest of its algorithm.
    pub(crate) fn signer_infos(
        &self,
        digests: &[(DigestAlgorithm, Vec<u8>)],
    ) -> Result<SignerInfos> {
        let mut infos = Vec::with_capacity(self.signer_count());
        for s in self.signers() {
            let digest = digests
                .iter()
                .find(|(d, _)| *d == s.digest)
                .map(|(_, v)| v.as_slice())
                .ok_or(Error::UnsupportedAlgorithm {
                    what: "digest not computed for a signer:",
                    oid: s.digest.oid().to_string(),
                })?;
            infos.push(s.signer_info(digest)?);
        }
        Ok(SignerInfos(set_of(infos, "signerInfos")?))
    }

    /// This signer's own SignerInfo over `digest` (of its algorithm).
    fn signer_info(&self, digest: &[u8]) -> Result<SignerInfo> {
        let attrs = self.signed_attributes(digest)?;
        let attrs_der = attrs
            .to_der()
            .map_err(|e| Error::cms("SignedAttributes", e))?;
        let (signature_algorithm, signature) =
            self.key.sign(self.digest, self.rsa_pss, &attrs_der)?;
        Ok(SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(self.certificate().issuer_and_serial()),
            digest_alg: self.digest.identifier(),
            signed_attrs: Some(attrs),
            signature_algorithm,
            signature: OctetString::new(signature).map_err(|e| Error::cms("SignerInfo", e))?,
            unsigned_attrs: None,
        })
    }

    fn signed_attributes(&self, digest: &[u8]) -> Result<SetOfVec<Attribute>> {
        let leaf = self.certificate();
        let now = UtcTime::from_system_time(SystemTime::now())
            .map_err(|e| Error::cms("signingTime", e))?;
        let cert_hash = DigestAlgorithm::Sha256.digest(leaf.der());
        let scv2 = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(cert_hash).map_err(|e| Error::cms("ESSCertIDv2", e))?,
            }],
        };
        let mut attrs = vec![
            attribute(ATTR_CONTENT_TYPE, Any::encode_from(&ID_DATA))?,
            attribute(ATTR_SIGNING_TIME, Any::encode_from(&now))?,
            attribute(
                ATTR_MESSAGE_DIGEST,
                Any::encode_from(
                    &OctetString::new(digest).map_err(|e| Error::cms("messageDigest", e))?,
                ),
            )?,
            attribute(
                ATTR_SMIME_CAPABILITIES,
                Any::from_der_bytes(&self.capabilities.to_der()?),
            )?,
            attribute(ATTR_SIGNING_CERTIFICATE_V2, Any::encode_from(&scv2))?,
        ];
        let (alg, _, _) = leaf.public_key();
        if alg != ED25519 {
            // SMIMEEncryptionKeyPreference ::= CHOICE {
            //   issuerAndSerialNumber [0] IMPLICIT IssuerAndSerialNumber, ...}
            let ias = leaf
                .issuer_and_serial()
                .to_der()
                .map_err(|e| Error::cms("encryptionKeyPreference", e))?;
            let mut pref = ias;
            pref[0] = 0xa0;
            attrs.push(attribute(
                ATTR_ENCRYPTION_KEY_PREFERENCE,
                Any::from_der_bytes(&pref),
            )?);
        }
        set_of(attrs, "SignedAttributes")
    }
}

trait AnyFromDer {
    fn from_der_bytes(der: &[u8]) -> der::Result<Any>;
}

impl AnyFromDer for Any {
    fn from_der_bytes(der: &[u8]) -> der::Result<Any> {
        <Any as der::Decode<'_>>::from_der(der)
    }
}

fn attribute(oid: ObjectIdentifier, value: der::Result<Any>) -> Result<Attribute> {
    let value = value.map_err(|e| Error::cms("signed attribute", e))?;
    Ok(Attribute {
        oid,
        values: set_of(vec![value], "attribute values")?,
    })
}

pub(crate) fn set_of<T>(items: Vec<T>, what: &'static str) -> Result<SetOfVec<T>>
where
    T: der::DerOrd,
{
    SetOfVec::try_from(items).map_err(|e| Error::cms(what, e))
}
