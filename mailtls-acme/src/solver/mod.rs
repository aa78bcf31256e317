//! Challenge solvers: the traits an order drives, and the three standard
//! solvers (http-01, tls-alpn-01, dns-01).

use std::future::Future;
use std::pin::Pin;

use mailtls_core::name::DnsName;

use crate::error::AcmeError;
use crate::key::b64;

pub mod dns01;
pub mod http01;
#[cfg(feature = "dns01-rfc2136")]
pub mod rfc2136;
pub mod tls_alpn01;

#[cfg(feature = "dns01-hook")]
pub use dns01::HookDnsUpdater;
pub use dns01::{Dns01Solver, DnsUpdater};
pub use http01::Http01Responder;
#[cfg(feature = "http01-server")]
pub use http01::Http01Server;
#[cfg(feature = "dns01-rfc2136")]
pub use rfc2136::{Rfc2136Updater, TsigKey};
pub use tls_alpn01::TlsAlpn01Solver;

/// The future a solver returns.
pub type SolverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AcmeError>> + Send + 'a>>;

/// Everything a solver needs to answer one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChallengeContext {
    /// The name being validated (without `*.` for wildcards).
    pub identifier: DnsName,
    /// Whether the authorisation is for the wildcard `*.identifier`.
    pub wildcard: bool,
    /// The challenge token.
    pub token: String,
    /// The key authorisation `token.thumbprint` (RFC 8555 §8.1).
    pub key_authorization: String,
}

impl ChallengeContext {
    /// Builds a context.
    pub fn new(
        identifier: DnsName,
        wildcard: bool,
        token: String,
        key_authorization: String,
    ) -> Self {
        ChallengeContext {
            identifier,
            wildcard,
            token,
            key_authorization,
        }
    }

    /// SHA-256 of the key authorisation.
    pub fn key_authorization_sha256(&self) -> [u8; 32] {
        crate::crypto::sha256(self.key_authorization.as_bytes())
    }

    /// The dns-01 TXT value: base64url(SHA-256(key authorisation)) (RFC 8555 §8.4).
    pub fn dns01_value(&self) -> String {
        b64(&self.key_authorization_sha256())
    }

    /// The dns-01 record name `_acme-challenge.NAME` (no trailing dot).
    pub fn dns01_record_name(&self) -> String {
        format!("_acme-challenge.{}", self.identifier)
    }
}

/// Publishes and withdraws the response to one kind of challenge.
pub trait ChallengeSolver: Send + Sync {
    /// The challenge type handled, e.g. `"http-01"`.
    fn challenge_type(&self) -> &'static str;
    /// Makes the response visible to the CA. Returns once it is.
    fn present<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a>;
    /// Withdraws the response (called whatever the outcome).
    fn cleanup<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 8555 §8.4: the TXT value is base64url(SHA-256(keyAuthorization)),
    /// checked against a digest computed outside this crate (Python's
    /// hashlib).
    #[test]
    fn dns01_value_is_b64url_sha256() {
        let ctx = ChallengeContext::new(
            DnsName::parse("www.example.org").unwrap(),
            false,
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA".into(),
            "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI".into(),
        );
        assert_eq!(ctx.dns01_record_name(), "_acme-challenge.www.example.org");
        let v = ctx.dns01_value();
        assert_eq!(v.len(), 43);
        assert!(!v.contains('='));
        assert_eq!(v, "lCM7cZyQXcVHK2nnW3jjAhNT3Fvm18UN-kWZZknKoYM");
    }
}
