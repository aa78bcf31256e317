//! DANE for SMTP (RFC 7672, with RFC 6698 and RFC 7671): which TLSA records are
//! usable, and whether a presented certificate chain matches them.
//!
//! Everything here is a pure function of already-resolved facts (the TLSA
//! records, the chain the server sent, the reference names): looking the
//! records up under DNSSEC is the delivery plan's job.
//!
//! - [`tlsa`] turns raw TLSA fields into [`UsableTlsa`] records or says why a
//!   record is unusable for SMTP, and sorts an RRset into a [`TlsaSet`].
//! - [`verify`] checks a chain against the usable records: DANE-EE(3) matches
//!   the leaf and ignores names and dates (RFC 7672 §3.1.1); DANE-TA(2) finds the
//!   trust anchor in the chain, then checks the chain up to it and the server
//!   name (RFC 7672 §3.1.2, §3.2.2).

pub mod tlsa;
pub mod verify;

pub use tlsa::{DaneUsage, MatchingType, Selector, TlsaSet, UnusableReason, UsableTlsa};
pub use verify::{DaneFailure, DaneFailureKind, DaneMatch, verify_chain};
