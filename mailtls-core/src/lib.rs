// The README's example uses the certificate maker, so it is the crate page
// (and a doctest) when `maker` is on, as on docs.rs.
#![cfg_attr(feature = "maker", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "maker"),
    doc = "Shared ground of the mailtls crates: host names, name patterns, PEM/DER loading, certificate inspection, listener modes. Enable `maker` for the certificate maker and the full crate page."
)]

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "mailtls-core needs a crypto provider: enable the `aws-lc-rs` (default) or the `ring` feature"
);

pub mod challenge;
mod crypto;
pub mod error;
pub mod inspect;
pub mod key;
pub mod listener;
pub mod load;
#[cfg(feature = "maker")]
pub mod maker;
pub mod name;
pub mod pattern;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod secret_file;

pub use challenge::{ACME_TLS_ALPN_PROTOCOL, TlsAlpnChallenge, TlsAlpnChallengeSlot};
pub use error::Error;
pub use inspect::{CertInfo, Expiry, ExtendedKeyUsage};
pub use key::{KeyAlgorithm, KeyFamily};
pub use listener::{MailSecurity, WebSecurity};
pub use load::{CertificateWithKey, LoadError, LoadErrorKind};
#[cfg(feature = "maker")]
pub use maker::{
    CaSpec, CertificateAuthority, KeyType, MadeCertificate, MadeCsr, Purpose, ServerCertSpec,
    Subject, make_csr, self_signed,
};
pub use name::{DnsName, NameError};
pub use pattern::{NamePattern, PatternError};

/// Re-exported so callers name the same certificate and key types.
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
