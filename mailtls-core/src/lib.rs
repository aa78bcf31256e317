#![doc = include_str!("../README.md")]

pub mod challenge;
pub mod error;
pub mod inspect;
pub mod key;
pub mod listener;
pub mod load;
pub mod maker;
pub mod name;
pub mod pattern;
pub mod secret_file;

pub use challenge::{ACME_TLS_ALPN_PROTOCOL, TlsAlpnChallenge, TlsAlpnChallengeSlot};
pub use error::Error;
pub use inspect::{CertInfo, Expiry, ExtendedKeyUsage};
pub use key::{KeyAlgorithm, KeyFamily};
pub use listener::{MailSecurity, WebSecurity};
pub use load::{CertificateWithKey, LoadError, LoadErrorKind};
pub use maker::{
    CaSpec, CertificateAuthority, KeyType, MadeCertificate, MadeCsr, Purpose, ServerCertSpec,
    Subject, make_csr, self_signed,
};
pub use name::{DnsName, NameError};
pub use pattern::{NamePattern, PatternError};

/// Re-exported so callers name the same certificate and key types.
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
