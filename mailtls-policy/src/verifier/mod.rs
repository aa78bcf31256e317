//! A rustls [`ServerCertVerifier`](rustls::client::danger::ServerCertVerifier)
//! built from a delivery-plan entry, whose refusals carry their RFC 8460
//! result type.
//!
//! - [`classify`]: mapping rustls certificate errors to
//!   [`ResultType`](crate::result_type::ResultType).
//! - [`plan_verifier`]: [`PlanVerifier`], enforcing (or, in audit mode,
//!   only recording) WebPKI or DANE verification, and remembering the outcome
//!   of the last handshake for TLS-RPT.

pub mod classify;
pub mod plan_verifier;

pub use classify::{VerificationFailure, classify_rustls_error};
pub use plan_verifier::{PlanVerifier, VerificationOutcome, VerifierError};
