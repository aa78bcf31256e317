#![doc = include_str!("../README.md")]

mod crypto;
pub mod dane;
pub mod dns;
pub mod manual;
pub mod mta_sts;
pub mod own_domain;
pub mod plan;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod requiretls;
pub mod result_type;
pub mod tlsrpt;
pub mod verifier;

/// The rustls `CryptoProvider` of this build's provider feature
/// (`aws-lc-rs`, or `ring` when only that is enabled), for embedders and
/// tests that have no provider of their own. A server that already has
/// one passes its own to [`verifier::PlanVerifier::for_entry`] and the
/// other constructors instead, so mailtls never adds a second provider.
pub fn default_crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(crypto::default_provider())
}
