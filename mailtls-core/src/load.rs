//! Loading certificate chains and private keys from PEM (or DER) files and bytes.
//!
//! PEM parsing goes through `rustls_pki_types::pem::PemObject`, the code that
//! the archived `rustls-pemfile` crate wrapped. Every error names its source
//! (a file path, or the label the caller gave for in-memory bytes).

use std::fmt;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::inspect::{CertInfo, InspectError};
use crate::key::{KeyAlgorithm, public_key_of};

/// A loading failure and where it happened.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {kind}")]
pub struct LoadError {
    /// The file path, or the caller's label for in-memory bytes.
    pub source_name: String,
    /// What went wrong.
    #[source]
    pub kind: LoadErrorKind,
}

/// What went wrong while loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The PEM text is malformed (bad base64, missing END line...).
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// No CERTIFICATE section was found.
    #[error("no certificate found")]
    NoCertificate,
    /// No private key section was found.
    #[error("no private key found (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoPrivateKey,
    /// The key is encrypted with a passphrase; mail servers need it in clear.
    #[error("the private key is encrypted; decrypt it first (openssl pkey -in KEY -out KEY.plain)")]
    EncryptedPrivateKey,
    /// More than one private key where exactly one was expected.
    #[error("{count} private keys found where one was expected")]
    SeveralPrivateKeys {
        /// How many were found.
        count: usize,
    },
    /// A certificate in the chain is not a valid X.509 certificate.
    #[error("certificate #{index} in the chain: {error}")]
    Certificate {
        /// Position in the chain, 0 for the leaf.
        index: usize,
        /// What inspection reported.
        error: InspectError,
    },
    /// The private key is of an unsupported type or malformed.
    #[error("unsupported or malformed private key")]
    UnsupportedKey,
    /// The private key does not belong to the leaf certificate.
    #[error("private key ({key}) does not match the certificate's public key ({certificate})")]
    KeyMismatch {
        /// The certificate's key algorithm.
        certificate: KeyAlgorithm,
        /// The private key's algorithm.
        key: KeyAlgorithm,
    },
}

impl LoadError {
    fn new(source_name: &str, kind: impl Into<LoadErrorKind>) -> Self {
        LoadError {
            source_name: source_name.to_owned(),
            kind: kind.into(),
        }
    }
}

/// One PEM section of a kind mailtls cares about.
enum Section {
    Certificate(CertificateDer<'static>),
    Key(PrivateKeyDer<'static>),
}

impl PemObject for Section {
    fn from_pem(kind: SectionKind, der: Vec<u8>) -> Option<Self> {
        Some(match kind {
            SectionKind::Certificate => Section::Certificate(CertificateDer::from(der)),
            SectionKind::PrivateKey => Section::Key(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => Section::Key(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => Section::Key(PrivateSec1KeyDer::from(der).into()),
            _ => return None,
        })
    }
}

fn pem_error(e: pem::Error) -> LoadErrorKind {
    match e {
        pem::Error::Io(io) => LoadErrorKind::Io(io),
        other => LoadErrorKind::Pem(format!("{other:?}")),
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn has_encrypted_key(bytes: &[u8]) -> bool {
    const MARK: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    bytes.windows(MARK.len()).any(|w| w == MARK)
        || bytes.windows(17).any(|w| w == b"Proc-Type: 4,ENCR")
}

/// Everything found in one PEM input.
struct Sections {
    certificates: Vec<CertificateDer<'static>>,
    keys: Vec<PrivateKeyDer<'static>>,
}

fn read_sections(bytes: &[u8], source: &str) -> Result<Sections, LoadError> {
    let mut out = Sections {
        certificates: Vec::new(),
        keys: Vec::new(),
    };
    if !looks_like_pem(bytes) {
        // Binary DER: one certificate or one key.
        if let Ok(key) = PrivateKeyDer::try_from(bytes.to_vec())
            && public_key_of(&key).is_some()
        {
            out.keys.push(key);
        } else if !bytes.is_empty() {
            out.certificates.push(CertificateDer::from(bytes.to_vec()));
        }
        return Ok(out);
    }
    for item in Section::pem_slice_iter(bytes) {
        match item.map_err(|e| LoadError::new(source, pem_error(e)))? {
            Section::Certificate(c) => out.certificates.push(c),
            Section::Key(k) => out.keys.push(k),
        }
    }
    if out.keys.is_empty() && has_encrypted_key(bytes) {
        return Err(LoadError::new(source, LoadErrorKind::EncryptedPrivateKey));
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::new(&path.display().to_string(), e))
}

/// Reads every certificate from PEM (any number of CERTIFICATE sections, other
/// sections ignored) or from a single DER certificate. Each is checked to be a
/// parseable X.509 certificate.
pub fn certificates_from_bytes(
    bytes: &[u8],
    source: &str,
) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let sections = read_sections(bytes, source)?;
    if sections.certificates.is_empty() {
        return Err(LoadError::new(source, LoadErrorKind::NoCertificate));
    }
    for (index, c) in sections.certificates.iter().enumerate() {
        CertInfo::from_der(c)
            .map_err(|error| LoadError::new(source, LoadErrorKind::Certificate { index, error }))?;
    }
    Ok(sections.certificates)
}

/// Reads certificates from a file; see [`certificates_from_bytes`].
pub fn certificates_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    certificates_from_bytes(&read_file(path)?, &path.display().to_string())
}

/// Reads exactly one private key (PKCS#8, PKCS#1 or SEC1) from PEM or DER.
pub fn private_key_from_bytes(
    bytes: &[u8],
    source: &str,
) -> Result<PrivateKeyDer<'static>, LoadError> {
    let mut sections = read_sections(bytes, source)?;
    match sections.keys.len() {
        0 => Err(LoadError::new(source, LoadErrorKind::NoPrivateKey)),
        1 => Ok(sections.keys.remove(0)),
        count => Err(LoadError::new(
            source,
            LoadErrorKind::SeveralPrivateKeys { count },
        )),
    }
}

/// Reads a private key from a file; see [`private_key_from_bytes`].
pub fn private_key_from_file(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    private_key_from_bytes(&read_file(path)?, &path.display().to_string())
}

/// A certificate chain (leaf first) with its private key, checked to belong
/// together, and the inspected facts of the leaf.
pub struct CertificateWithKey {
    /// Leaf first, then intermediates, as sent in a TLS handshake.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// What the leaf says.
    pub info: CertInfo,
}

impl fmt::Debug for CertificateWithKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateWithKey")
            .field("chain_len", &self.chain.len())
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Clone for CertificateWithKey {
    fn clone(&self) -> Self {
        CertificateWithKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            info: self.info.clone(),
        }
    }
}

impl CertificateWithKey {
    /// Builds from parts, inspecting the leaf and checking that the key matches
    /// it. `source` names where the parts came from, for errors.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        source: &str,
    ) -> Result<Self, LoadError> {
        let leaf = chain
            .first()
            .ok_or_else(|| LoadError::new(source, LoadErrorKind::NoCertificate))?;
        let info = CertInfo::from_der(leaf).map_err(|error| {
            LoadError::new(source, LoadErrorKind::Certificate { index: 0, error })
        })?;
        let public = public_key_of(&key)
            .ok_or_else(|| LoadError::new(source, LoadErrorKind::UnsupportedKey))?;
        if public.raw != info.public_key_raw {
            return Err(LoadError::new(
                source,
                LoadErrorKind::KeyMismatch {
                    certificate: info.key,
                    key: public.algorithm,
                },
            ));
        }
        Ok(CertificateWithKey { chain, key, info })
    }

    /// Loads a chain and a key from separate PEM inputs.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], source: &str) -> Result<Self, LoadError> {
        let chain = certificates_from_bytes(cert_pem, source)?;
        let key = private_key_from_bytes(key_pem, source)?;
        Self::new(chain, key, source)
    }

    /// Loads from one PEM input holding the chain and the key.
    pub fn from_combined_pem(pem: &[u8], source: &str) -> Result<Self, LoadError> {
        Self::from_pem(pem, pem, source)
    }

    /// Loads a chain file and a key file. Errors name the file at fault.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, LoadError> {
        let chain = certificates_from_file(cert_path)?;
        let key = private_key_from_file(key_path)?;
        Self::new(chain, key, &cert_path.display().to_string())
    }

    /// Loads from one file holding the chain and the key.
    pub fn from_combined_file(path: &Path) -> Result<Self, LoadError> {
        Self::from_combined_pem(&read_file(path)?, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_pair_and_combined() {
        let (c, k) = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let pair = CertificateWithKey::from_pem(c.as_bytes(), k.as_bytes(), "t").unwrap();
        assert_eq!(pair.info.dns_names, ["a.example"]);
        let combined = format!("{c}{k}");
        assert!(CertificateWithKey::from_combined_pem(combined.as_bytes(), "t").is_ok());
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (c, _) = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other) = make(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err =
            CertificateWithKey::from_pem(c.as_bytes(), other.as_bytes(), "x.pem").unwrap_err();
        assert!(matches!(err.kind, LoadErrorKind::KeyMismatch { .. }));
        assert!(err.to_string().starts_with("x.pem: "));
    }

    #[test]
    fn typed_errors_for_bad_input() {
        let e = certificates_from_bytes(b"hello", "f").unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::Certificate { .. }), "{e}");
        let e = certificates_from_bytes(b"", "f").unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::NoCertificate), "{e}");
        let e = private_key_from_bytes(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "f",
        )
        .unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::EncryptedPrivateKey), "{e}");
        let e = certificates_from_bytes(b"-----BEGIN CERTIFICATE-----\n!!!\n", "f").unwrap_err();
        assert!(matches!(e.kind, LoadErrorKind::Pem(_)), "{e}");
        let (_, k) = make(&rcgen::PKCS_ED25519);
        let e = private_key_from_bytes(format!("{k}{k}").as_bytes(), "f").unwrap_err();
        assert!(
            matches!(e.kind, LoadErrorKind::SeveralPrivateKeys { count: 2 }),
            "{e}"
        );
        let e = certificates_from_file(Path::new("/nonexistent/x.pem")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.pem"));
    }

    #[test]
    fn der_inputs_load() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = certificates_from_bytes(cert.der(), "d").unwrap();
        let k = private_key_from_bytes(&key.serialize_der(), "d").unwrap();
        assert!(CertificateWithKey::new(chain, k, "d").is_ok());
    }

    proptest::proptest! {
        /// Any bytes, and PEM with a damaged body, give errors, never panics.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = certificates_from_bytes(&data, "p");
            let _ = private_key_from_bytes(&data, "p");
            let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            pem.extend(&data);
            pem.extend(b"\n-----END CERTIFICATE-----\n");
            let _ = certificates_from_bytes(&pem, "p");
            let _ = CertificateWithKey::from_combined_pem(&pem, "p");
        }
    }
}
