//! The embedder's manual: how a mail server uses this crate, end to end.
//!
//! This module holds documentation only (as `rustls::manual` does). Each
//! submodule is one chapter:
//!
//! - [`outbound`]: the whole outbound loop of an MTA, from the recipient
//!   domain to the TLS-RPT record of the session, with the rustls
//!   configuration in between and which SNI to send.
//! - [`testing`]: seeding policies and DNS answers so that tests (and
//!   staging setups) run without network.
//! - [`blocking`]: which calls block, which spawn tasks or threads, and
//!   what runs on the async runtime.
//! - [`conformance`]: how the MTA-STS and TLS-RPT records and policies are
//!   read, rule by rule, beside mox, postfix-mta-sts-resolver and
//!   Stalwart; the DANE choices; the RFC 8461 errata.
//! - `cluster` (feature `postgres`): several nodes sharing the MTA-STS
//!   cache and the TLS-RPT state in PostgreSQL; what stays per node, what
//!   happens while the database is away, and how to recover.

pub mod blocking;
#[cfg(feature = "postgres")]
pub mod cluster;
pub mod conformance;
pub mod outbound;
pub mod testing;
