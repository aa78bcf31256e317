//! A certificate maker: a test CA, server certificates signed by it or
//! self-signed, S/MIME certificates ([`SmimeCertSpec`]), and certificate
//! signing requests for a real CA.
//!
//! It gives what a `MAKE.CERT.sh` script or a mail server's "create
//! certificate" dialog gives. Certificates made for testing carry
//! [`TEST_MARKER_OU`] in their subject so nobody mistakes them for real ones.
//! Keys below 2048 bits are refused; private keys written to disk get mode
//! 0600 inside a directory only the owner can enter.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The rcgen release the maker is built on, for callers that match on
/// [`MakerError::Generation`].
pub use rcgen;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::load::{CertificateWithKey, LoadError};
use crate::name::DnsName;
use crate::pattern::NamePattern;
use crate::secret_file;

/// The organisational unit every test certificate carries in its subject.
pub const TEST_MARKER_OU: &str = "mailtls test certificate - not for production";

/// Smallest RSA modulus the maker will create.
pub const MIN_RSA_BITS: u32 = 2048;

/// Longest validity the maker accepts, in days (100 years).
pub const MAX_VALIDITY_DAYS: u32 = 36_500;

/// Why a certificate could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MakerError {
    /// RSA below 2048 bits, or a size the maker does not offer.
    #[error("RSA key size {bits} refused: use 2048, 3072 or 4096")]
    KeyTooSmallOrUnsupported {
        /// The requested size.
        bits: u32,
    },
    /// A key type name that is not known.
    #[error(
        "unknown key type {0:?} (use rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384 or ed25519)"
    )]
    UnknownKeyType(String),
    /// Validity of zero days or more than [`MAX_VALIDITY_DAYS`].
    #[error("validity of {days} days refused (1 to {MAX_VALIDITY_DAYS})")]
    BadValidity {
        /// The requested number of days.
        days: u32,
    },
    /// An S/MIME certificate without addresses, or with one that is not a
    /// plain ASCII `local@domain` (an rfc822Name is IA5String).
    #[error("mail address {0:?} refused: an S/MIME certificate needs ASCII local@domain addresses")]
    BadAddress(String),
    /// A country that is not two ASCII letters (ISO 3166-1 alpha-2).
    #[error("country {0:?} must be two letters (ISO 3166-1 alpha-2)")]
    BadCountry(String),
    /// An RSA key was asked for on the ring provider, which cannot make one
    /// (build with the `aws-lc-rs` feature, or choose an ECDSA/Ed25519 key).
    #[error("RSA key generation needs the aws-lc-rs provider; ring cannot generate RSA keys")]
    RsaNeedsAwsLc,
    /// rcgen could not generate a key or sign.
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    /// The made certificate did not load back (should not happen; reported, not hidden).
    #[error("made certificate does not load: {0}")]
    Reload(#[from] LoadError),
    /// Writing files failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The key a certificate is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA 2048, signed with SHA-256.
    Rsa2048,
    /// RSA 3072, signed with SHA-256.
    Rsa3072,
    /// RSA 4096, signed with SHA-256.
    Rsa4096,
    /// ECDSA P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// ECDSA P-384 (paired with SHA-384, the only pairing CAs and rcgen use).
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// The RSA key type for `bits`, refusing anything below 2048 bits.
    pub fn rsa(bits: u32) -> Result<Self, MakerError> {
        match bits {
            2048 => Ok(KeyType::Rsa2048),
            3072 => Ok(KeyType::Rsa3072),
            4096 => Ok(KeyType::Rsa4096),
            bits => Err(MakerError::KeyTooSmallOrUnsupported { bits }),
        }
    }

    /// Generates a fresh key pair of this type.
    ///
    /// RSA keys need the `aws-lc-rs` feature: ring cannot generate them, and
    /// asks for one then fail with [`MakerError::RsaNeedsAwsLc`].
    pub fn generate(self) -> Result<KeyPair, MakerError> {
        #[cfg(feature = "aws-lc-rs")]
        use rcgen::RsaKeySize;
        let kp = match self {
            #[cfg(not(feature = "aws-lc-rs"))]
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                return Err(MakerError::RsaNeedsAwsLc);
            }
            #[cfg(feature = "aws-lc-rs")]
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)?
            }
            #[cfg(feature = "aws-lc-rs")]
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)?
            }
            #[cfg(feature = "aws-lc-rs")]
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)?
            }
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        };
        Ok(kp)
    }

    fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
        })
    }
}

impl FromStr for KeyType {
    type Err = MakerError;
    /// Accepts `rsa2048`, `rsa-3072`, `rsa:4096`, `rsa` (2048), `ecdsa-p256`,
    /// `p256`, `ec`, `ecdsa-p384`, `p384`, `ed25519`; any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(bits) = lower.strip_prefix("rsa") {
            let bits = bits.trim_start_matches(['-', ':', '_']);
            if bits.is_empty() {
                return Ok(KeyType::Rsa2048);
            }
            return bits
                .parse::<u32>()
                .map_err(|_| MakerError::UnknownKeyType(s.to_owned()))
                .and_then(KeyType::rsa);
        }
        match lower.as_str() {
            "ecdsa-p256" | "ecdsa" | "ec" | "p256" | "p-256" | "ec256" | "prime256v1" => {
                Ok(KeyType::EcdsaP256)
            }
            "ecdsa-p384" | "p384" | "p-384" | "ec384" | "secp384r1" => Ok(KeyType::EcdsaP384),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(MakerError::UnknownKeyType(s.to_owned())),
        }
    }
}

/// Whether a made certificate is for testing (marked in its subject) or meant
/// for real use (a self-signed certificate an operator chooses to deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    /// Marked with [`TEST_MARKER_OU`].
    #[default]
    Testing,
    /// Not marked.
    Production,
}

/// Subject fields shared by every kind of request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// Organisation (O).
    pub organisation: Option<String>,
    /// Country (C), two letters.
    pub country: Option<String>,
}

impl Subject {
    fn validate(&self) -> Result<(), MakerError> {
        if let Some(c) = &self.country
            && !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(MakerError::BadCountry(c.clone()));
        }
        Ok(())
    }

    fn distinguished_name(&self, common_name: &str, purpose: Purpose) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        if let Some(c) = &self.country {
            dn.push(DnType::CountryName, c.to_ascii_uppercase());
        }
        if let Some(o) = &self.organisation {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        if purpose == Purpose::Testing {
            dn.push(DnType::OrganizationalUnitName, TEST_MARKER_OU);
        }
        dn.push(DnType::CommonName, common_name);
        dn
    }
}

/// What to put in a test CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    /// The CA's common name.
    pub common_name: String,
    /// Organisation and country.
    pub subject: Subject,
    /// Validity in days.
    pub validity_days: u32,
    /// The CA key.
    pub key_type: KeyType,
}

impl Default for CaSpec {
    fn default() -> Self {
        CaSpec {
            common_name: "mailtls Test CA".to_owned(),
            subject: Subject::default(),
            validity_days: 3650,
            key_type: KeyType::EcdsaP256,
        }
    }
}

/// What to put in a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertSpec {
    /// The main host name (also the subject CN).
    pub host: DnsName,
    /// More names or wildcards for the SAN list.
    pub extra_names: Vec<NamePattern>,
    /// Organisation and country.
    pub subject: Subject,
    /// Validity in days.
    pub validity_days: u32,
    /// The key to make.
    pub key_type: KeyType,
    /// Testing (marked) or production.
    pub purpose: Purpose,
    /// Also allow TLS client authentication (for a relay that presents it).
    pub client_auth: bool,
}

impl ServerCertSpec {
    /// A one-year ECDSA P-256 test certificate for `host`.
    pub fn new(host: DnsName) -> Self {
        ServerCertSpec {
            host,
            extra_names: Vec::new(),
            subject: Subject::default(),
            validity_days: 365,
            key_type: KeyType::EcdsaP256,
            purpose: Purpose::Testing,
            client_auth: false,
        }
    }

    /// The SAN list: the host first, then the extra names, without repeats.
    pub fn names(&self) -> Vec<NamePattern> {
        let mut out = vec![NamePattern::Exact(self.host.clone())];
        for n in &self.extra_names {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    fn params(&self) -> Result<CertificateParams, MakerError> {
        self.subject.validate()?;
        let mut params = CertificateParams::default();
        validity(&mut params, self.validity_days)?;
        params.serial_number = Some(random_serial());
        params.distinguished_name = self
            .subject
            .distinguished_name(self.host.as_str(), self.purpose);
        params.subject_alt_names = self
            .names()
            .iter()
            .map(|p| {
                p.to_string()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(MakerError::Generation)
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.key_type.is_rsa() {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if self.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

/// What to put in an S/MIME certificate (RFC 8550): mailbox addresses as
/// rfc822Name SANs, the emailProtection extended key usage, and the key
/// usages S/MIME needs: digitalSignature (and nonRepudiation) for signing,
/// plus keyEncipherment for an RSA key (key transport) or keyAgreement for
/// an EC key (ECDH); an Ed25519 key only signs.
///
/// A gateway's domain certificate is one with the domain as common name
/// and the gateway's own address (e.g. `postmaster@example.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmimeCertSpec {
    /// The mailbox addresses, at least one (the first is the subject CN
    /// unless [`SmimeCertSpec::common_name`] is set).
    pub addresses: Vec<String>,
    /// The subject common name; `None`: the first address.
    pub common_name: Option<String>,
    /// Organisation and country.
    pub subject: Subject,
    /// Validity in days.
    pub validity_days: u32,
    /// The key to make.
    pub key_type: KeyType,
    /// Testing (marked) or production.
    pub purpose: Purpose,
}

impl SmimeCertSpec {
    /// A one-year ECDSA P-256 test certificate for `address`.
    pub fn new(address: &str) -> Self {
        SmimeCertSpec {
            addresses: vec![address.to_owned()],
            common_name: None,
            subject: Subject::default(),
            validity_days: 365,
            key_type: KeyType::EcdsaP256,
            purpose: Purpose::Testing,
        }
    }

    fn params(&self) -> Result<CertificateParams, MakerError> {
        self.subject.validate()?;
        let first = self
            .addresses
            .first()
            .ok_or_else(|| MakerError::BadAddress(String::new()))?;
        for a in &self.addresses {
            check_address(a)?;
        }
        let mut params = CertificateParams::default();
        validity(&mut params, self.validity_days)?;
        params.serial_number = Some(random_serial());
        let cn = self.common_name.as_deref().unwrap_or(first);
        params.distinguished_name = self.subject.distinguished_name(cn, self.purpose);
        params.subject_alt_names = self
            .addresses
            .iter()
            .map(|a| {
                a.as_str()
                    .try_into()
                    .map(SanType::Rfc822Name)
                    .map_err(MakerError::Generation)
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        match self.key_type {
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
                params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                params.key_usages.push(KeyUsagePurpose::KeyAgreement);
            }
            KeyType::Ed25519 => {}
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        params.use_authority_key_identifier_extension = true;
        // basicConstraints CA:FALSE and a subject key identifier, which
        // S/MIME clients use to name the recipient.
        params.is_ca = IsCa::ExplicitNoCa;
        Ok(params)
    }
}

/// An address fit for an rfc822Name: printable ASCII without spaces, one
/// `@` with something on both sides, a dotted domain.
fn check_address(a: &str) -> Result<(), MakerError> {
    let bad = || MakerError::BadAddress(a.to_owned());
    let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
    let printable = a.bytes().all(|b| b.is_ascii_graphic());
    if local.is_empty() || local.contains('@') || !printable {
        return Err(bad());
    }
    DnsName::parse(domain).map_err(|_| bad())?;
    Ok(())
}

/// Makes a self-signed S/MIME certificate (no CA): what a user without a
/// CA exchanges with a partner who pins it.
pub fn self_signed_smime(spec: &SmimeCertSpec) -> Result<MadeCertificate, MakerError> {
    let key = spec.key_type.generate()?;
    let cert = spec.params()?.self_signed(&key)?;
    Ok(MadeCertificate::new(cert, &key, String::new()))
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), MakerError> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(MakerError::BadValidity { days });
    }
    // Back-date by an hour so a peer whose clock is a little behind accepts it.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // The RNG only fails if the OS entropy source is gone; a zero serial is
    // then still a valid (if not unique) serial, and rcgen signs it fine.
    let _ = crate::crypto::fill_random(&mut bytes);
    bytes[0] &= 0x7f; // keep it positive
    SerialNumber::from_slice(&bytes)
}

/// A made certificate with its private key, in PEM and DER.
pub struct MadeCertificate {
    /// The certificate DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate PEM.
    pub cert_pem: String,
    /// The issuer's certificate PEM (empty when self-signed), appended to make
    /// the chain file.
    pub issuer_pem: String,
    /// The private key, PKCS#8 PEM.
    key_pem: String,
    key_der: Vec<u8>,
}

impl fmt::Debug for MadeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MadeCertificate")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl MadeCertificate {
    fn new(cert: rcgen::Certificate, key: &KeyPair, issuer_pem: String) -> Self {
        let (key_der, key_pem) = portable_pkcs8(key);
        MadeCertificate {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer_pem,
            key_pem,
            key_der,
        }
    }

    /// The chain as PEM: the certificate, then its issuer (if not self-signed).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.issuer_pem)
    }

    /// The private key as PKCS#8 PEM. Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key as PKCS#8 DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    /// The chain and key, loaded and checked as any other certificate would be.
    pub fn to_certificate_with_key(&self) -> Result<CertificateWithKey, MakerError> {
        Ok(CertificateWithKey::from_pem(
            self.chain_pem().as_bytes(),
            self.key_pem.as_bytes(),
            "made certificate",
        )?)
    }

    /// Writes `DIR/STEM.crt` (the chain, mode 0644) and `DIR/STEM.key` (mode
    /// 0600). `DIR` is created with mode 0700 if missing. Returns both paths.
    pub fn write_files(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), MakerError> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        secret_file::ensure_private_dir(dir).map_err(|source| MakerError::Write {
            path: dir.to_owned(),
            source,
        })?;
        secret_file::write_atomic(&key_path, self.key_pem.as_bytes(), 0o600).map_err(|source| {
            MakerError::Write {
                path: key_path.clone(),
                source,
            }
        })?;
        secret_file::write_atomic(&cert_path, self.chain_pem().as_bytes(), 0o644).map_err(
            |source| MakerError::Write {
                path: cert_path.clone(),
                source,
            },
        )?;
        Ok((cert_path, key_path))
    }
}

/// A certificate authority that signs server certificates: a freshly made
/// test CA, or one loaded back from its PEM files.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert: MadeCertificate,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Makes a new self-signed test CA (always marked as a test certificate).
    pub fn new_test_ca(spec: &CaSpec) -> Result<Self, MakerError> {
        spec.subject.validate()?;
        let key = spec.key_type.generate()?;
        let mut params = CertificateParams::default();
        validity(&mut params, spec.validity_days)?;
        params.serial_number = Some(random_serial());
        params.distinguished_name = spec
            .subject
            .distinguished_name(&spec.common_name, Purpose::Testing);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        let made = MadeCertificate::new(cert, &key, String::new());
        let issuer = Issuer::new(params, key);
        Ok(CertificateAuthority { issuer, cert: made })
    }

    /// Loads a CA from its certificate and key PEM (as written by
    /// [`write_files`](Self::write_files)).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, MakerError> {
        let loaded = CertificateWithKey::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), "CA")?;
        let key = KeyPair::try_from(&loaded.key)?;
        let leaf = &loaded.chain[0];
        let issuer = Issuer::from_ca_cert_der(leaf, KeyPair::try_from(&loaded.key)?)?;
        let cert = MadeCertificate {
            cert_der: leaf.clone(),
            cert_pem: rustls_pki_types::pem::PemObject::pem_slice_iter(cert_pem.as_bytes())
                .next()
                .and_then(Result::ok)
                .map(|c: CertificateDer<'static>| pem_of_cert(&c))
                .unwrap_or_default(),
            issuer_pem: String::new(),
            key_pem: portable_pkcs8(&key).1,
            key_der: portable_pkcs8(&key).0,
        };
        Ok(CertificateAuthority { issuer, cert })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &MadeCertificate {
        &self.cert
    }

    /// Issues a server certificate signed by this CA.
    pub fn issue(&self, spec: &ServerCertSpec) -> Result<MadeCertificate, MakerError> {
        let key = spec.key_type.generate()?;
        let cert = spec.params()?.signed_by(&key, &self.issuer)?;
        Ok(MadeCertificate::new(cert, &key, self.cert.cert_pem.clone()))
    }

    /// Issues an S/MIME certificate signed by this CA.
    pub fn issue_smime(&self, spec: &SmimeCertSpec) -> Result<MadeCertificate, MakerError> {
        let key = spec.key_type.generate()?;
        let cert = spec.params()?.signed_by(&key, &self.issuer)?;
        Ok(MadeCertificate::new(cert, &key, self.cert.cert_pem.clone()))
    }

    /// Writes `DIR/STEM.crt` and `DIR/STEM.key` like [`MadeCertificate::write_files`].
    pub fn write_files(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), MakerError> {
        self.cert.write_files(dir, stem)
    }
}

/// The key as PKCS#8 DER and PEM in the form every tool reads. aws-lc and
/// ring write Ed25519 keys as PKCS#8 v2 (with the public key attached), which
/// OpenSSL 3.0 refuses to load; those are rewritten as PKCS#8 v1.
fn portable_pkcs8(key: &KeyPair) -> (Vec<u8>, String) {
    let der = key.serialize_der();
    let der = if key.algorithm() == &rcgen::PKCS_ED25519 {
        ed25519_pkcs8_v1(&der).unwrap_or(der)
    } else {
        der
    };
    let block = pem::Pem::new("PRIVATE KEY", der.clone());
    let pem = pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    (der, pem)
}

/// The RFC 8410 PKCS#8 v1 form of an Ed25519 key given as PKCS#8 v2: v2 is
/// the v1 prefix with version 1 instead of 0, then the same 32-byte seed,
/// then the public key; v1 is the prefix and the seed alone. `None` for any
/// other shape (the key is then written as it came).
fn ed25519_pkcs8_v1(v2: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE, INTEGER version, AlgorithmIdentifier id-Ed25519, OCTET STRING
    // holding the OCTET STRING seed; byte 1 (length) and 4 (version) differ.
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let prefix = v2.get(..16)?;
    let same_shape =
        prefix[0] == 0x30 && prefix[2..4] == V1_PREFIX[2..4] && prefix[5..] == V1_PREFIX[5..];
    if !same_shape || prefix[4] != 0x01 {
        return None;
    }
    let seed = v2.get(16..48)?;
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Some(v1)
}

fn pem_of_cert(c: &CertificateDer<'_>) -> String {
    let block = pem::Pem::new("CERTIFICATE", c.as_ref().to_vec());
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Makes a self-signed server certificate (no CA).
pub fn self_signed(spec: &ServerCertSpec) -> Result<MadeCertificate, MakerError> {
    let key = spec.key_type.generate()?;
    let cert = spec.params()?.self_signed(&key)?;
    Ok(MadeCertificate::new(cert, &key, String::new()))
}

/// A certificate signing request and the private key it was made for.
pub struct MadeCsr {
    /// The CSR, PEM (`CERTIFICATE REQUEST`).
    pub csr_pem: String,
    /// The CSR, DER.
    pub csr_der: Vec<u8>,
    key_pem: String,
}

impl fmt::Debug for MadeCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MadeCsr")
            .field("csr_pem", &self.csr_pem)
            .finish_non_exhaustive()
    }
}

impl MadeCsr {
    /// The private key (PKCS#8 PEM). Handle with care.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes `DIR/STEM.csr` (0644) and `DIR/STEM.key` (0600, directory 0700).
    pub fn write_files(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), MakerError> {
        let csr_path = dir.join(format!("{stem}.csr"));
        let key_path = dir.join(format!("{stem}.key"));
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| MakerError::Write { path, source }
        };
        secret_file::ensure_private_dir(dir).map_err(werr(dir))?;
        secret_file::write_atomic(&key_path, self.key_pem.as_bytes(), 0o600)
            .map_err(werr(&key_path))?;
        secret_file::write_atomic(&csr_path, self.csr_pem.as_bytes(), 0o644)
            .map_err(werr(&csr_path))?;
        Ok((csr_path, key_path))
    }
}

/// Makes a CSR (for a real CA: never marked as a test certificate) with a
/// fresh key of the spec's type. The spec's purpose and validity are ignored.
pub fn make_csr(spec: &ServerCertSpec) -> Result<MadeCsr, MakerError> {
    let key = spec.key_type.generate()?;
    let full = spec.params()?;
    // A CSR carries only what the requester may ask for: subject, names and
    // usages. Serial, validity and key identifiers are the CA's to choose.
    let mut params = CertificateParams::default();
    params.distinguished_name = spec
        .subject
        .distinguished_name(spec.host.as_str(), Purpose::Production);
    params.subject_alt_names = full.subject_alt_names;
    params.key_usages = full.key_usages;
    params.extended_key_usages = full.extended_key_usages;
    let csr = params.serialize_request(&key)?;
    Ok(MadeCsr {
        csr_pem: csr.pem()?,
        csr_der: csr.der().to_vec(),
        key_pem: portable_pkcs8(&key).1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyAlgorithm;

    #[test]
    fn key_type_parsing_refuses_small_rsa() {
        assert_eq!("RSA".parse::<KeyType>().unwrap(), KeyType::Rsa2048);
        assert_eq!("rsa:4096".parse::<KeyType>().unwrap(), KeyType::Rsa4096);
        assert_eq!("p384".parse::<KeyType>().unwrap(), KeyType::EcdsaP384);
        assert!(matches!(
            "rsa1024".parse::<KeyType>(),
            Err(MakerError::KeyTooSmallOrUnsupported { bits: 1024 })
        ));
        assert!(matches!(
            KeyType::rsa(512),
            Err(MakerError::KeyTooSmallOrUnsupported { .. })
        ));
        assert!(matches!(
            "dsa".parse::<KeyType>(),
            Err(MakerError::UnknownKeyType(_))
        ));
    }

    #[test]
    fn ca_issues_marked_certificate() {
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        let mut spec = ServerCertSpec::new(DnsName::parse("mail.example.com").unwrap());
        spec.extra_names
            .push(NamePattern::parse("*.example.org").unwrap());
        spec.subject.organisation = Some("Example Ltd".into());
        spec.subject.country = Some("de".into());
        spec.key_type = KeyType::Ed25519;
        let made = ca.issue(&spec).unwrap();
        let loaded = made.to_certificate_with_key().unwrap();
        assert_eq!(loaded.chain.len(), 2);
        assert_eq!(loaded.info.dns_names, ["mail.example.com", "*.example.org"]);
        assert!(
            loaded.info.subject.contains(TEST_MARKER_OU),
            "{}",
            loaded.info.subject
        );
        assert!(loaded.info.subject.contains("C=DE"));
        assert_eq!(loaded.info.key, KeyAlgorithm::Ed25519);
        assert!(!loaded.info.self_issued);
        assert_eq!(
            loaded.info.issuer,
            ca.certificate()
                .to_certificate_with_key()
                .unwrap()
                .info
                .subject
        );
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        let again =
            CertificateAuthority::from_pem(&ca.certificate().cert_pem, ca.certificate().key_pem())
                .unwrap();
        assert_eq!(again.certificate().cert_pem, ca.certificate().cert_pem);
        let made = again
            .issue(&ServerCertSpec::new(DnsName::parse("a.example").unwrap()))
            .unwrap();
        assert!(made.to_certificate_with_key().is_ok());
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        let mut spec = ServerCertSpec::new(DnsName::parse("a.example").unwrap());
        spec.validity_days = 0;
        assert!(matches!(
            self_signed(&spec),
            Err(MakerError::BadValidity { days: 0 })
        ));
        spec.validity_days = 10;
        spec.subject.country = Some("DEU".into());
        assert!(matches!(self_signed(&spec), Err(MakerError::BadCountry(_))));
    }
}
