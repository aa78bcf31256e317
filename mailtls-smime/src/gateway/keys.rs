//! The gateway's own keys as the rules see them: who a key belongs to and
//! its certificate, without the private key itself.

use mailtls_core::DnsName;

use super::address::Address;
use super::certificate::{Fingerprint, SmimeCertificate};

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// One user's key, for the addresses its certificate names.
    User(Address),
    /// A domain key: signs or decrypts for every address of the domain.
    Domain(DnsName),
}

/// A key the gateway holds, named by owner and certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Whose it is.
    pub owner: KeyOwner,
    /// Its certificate.
    pub certificate: SmimeCertificate,
}

impl KeyRef {
    /// The certificate's fingerprint, which names the key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.certificate.fingerprint()
    }
}

/// Which keys the gateway holds. The rules ask through this trait so they
/// can be tested without key files; [`KeyStore`](super::KeyStore) is the
/// implementation backed by a directory.
pub trait KeyDirectory {
    /// The key of a user, for an address its certificate names.
    fn user_key(&self, address: &Address) -> Option<KeyRef>;
    /// The key of a domain.
    fn domain_key(&self, domain: &DnsName) -> Option<KeyRef>;
}
