//! The meeting point between an ACME client and a TLS server for tls-alpn-01
//! (RFC 8737): plain data plus a small trait, so neither crate depends on the
//! other.

use std::fmt;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::name::DnsName;

/// The ALPN protocol id a tls-alpn-01 validator offers, and the only one
/// (RFC 8737 §3).
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// A tls-alpn-01 challenge certificate for one name: the self-signed
/// certificate carrying the critical acmeIdentifier extension, and its key.
pub struct TlsAlpnChallenge {
    /// The identifier being validated.
    pub name: DnsName,
    /// The challenge certificate (normally just one).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsAlpnChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAlpnChallenge")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Clone for TlsAlpnChallenge {
    fn clone(&self) -> Self {
        TlsAlpnChallenge {
            name: self.name.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Why a challenge certificate could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The TLS stack could not use the key.
    #[error("challenge key for {name} is unusable: {reason}")]
    UnusableKey {
        /// The identifier.
        name: String,
        /// Why.
        reason: String,
    },
    /// The chain is empty.
    #[error("challenge for {name} has no certificate")]
    NoCertificate {
        /// The identifier.
        name: String,
    },
}

/// Something that can serve tls-alpn-01 challenge certificates (a TLS
/// server's certificate resolver). An ACME client installs a challenge before
/// telling the CA to validate and removes it afterwards.
pub trait TlsAlpnChallengeSlot: Send + Sync {
    /// Installs (or replaces) the challenge certificate for `challenge.name`.
    fn install_challenge(&self, challenge: TlsAlpnChallenge) -> Result<(), ChallengeError>;
    /// Removes the challenge certificate for `name`, if any.
    fn remove_challenge(&self, name: &DnsName);
}
