//! REQUIRETLS (RFC 8689): the per-message TLS demand, how it is set, and the
//! conditions a sending MTA must meet before it hands such a message on.
//!
//! - [`demand`]: [`TlsDemand`], what a message asks for (default, REQUIRETLS,
//!   or `TLS-Required: No`), built from the MAIL FROM flag, the header and
//!   API calls, with REQUIRETLS always winning (RFC 8689 §5).
//! - [`mail_from`]: the `REQUIRETLS` MAIL FROM parameter on the receiving side.
//! - [`address`]: `mailbox+requiretls@domain` tagging, detected and stripped.
//! - [`sending`]: the sending-side conditions (RFC 8689 §4.2), failing with
//!   5.7.30 and never falling back to cleartext.

pub mod address;
pub mod demand;
pub mod mail_from;
pub mod sending;

pub use address::{TaggedRecipient, strip_requiretls_tag};
pub use demand::{TlsDemand, TlsRequiredHeader};
pub use mail_from::{MailFromError, requiretls_parameter};
pub use sending::{
    MxAuthority, PeerAuthentication, RequireTlsFailure, SessionFacts, check_mx, check_session,
};
