//! The per-MX delivery plan: which hosts to try, in which order, how hard to
//! insist on TLS, how to verify each peer, and what a failure means.
//!
//! - [`facts`]: the resolved inputs ([`DomainFacts`]).
//! - [`decide`]: [`plan`], a pure function from facts and the message's
//!   [`crate::requiretls::TlsDemand`] to a [`DeliveryPlan`].
//! - [`gather`](mod@gather): fills in the facts through a
//!   [`crate::dns::DnsResolver`].
//! - [`status`]: enhanced status codes for failures.

pub mod decide;
pub mod facts;
pub mod gather;
pub mod status;

pub use decide::{
    DeliveryPlan, DomainFailure, FailReason, FailureAction, HostAction, PlanEntry, SkipReason,
    StarttlsMissing, Verification, plan,
};
pub use facts::{AddressFacts, DomainFacts, HostFacts, MxFacts, TlsaFacts};
pub use gather::gather;
pub use status::EnhancedStatus;
