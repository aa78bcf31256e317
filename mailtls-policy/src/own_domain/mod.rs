//! Publishing MTA-STS and TLS-RPT for your own domain, and checking what is
//! published before switching a policy to `enforce`.
//!
//! A domain needs three things (RFC 8461 §3, RFC 8460 §3): the policy file
//! at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, a TXT record
//! `_mta-sts.DOMAIN` whose `id` changes whenever the policy does, and
//! (for reports) a TXT record `_smtp._tls.DOMAIN`. [`Publication`] writes
//! all three; [`check_setup`] reads them back through DNS and HTTPS the way
//! a sending server would.

mod check;
mod publish;

pub use check::{Check, CheckStatus, SetupReport, check_setup};
pub use publish::{Publication, PublishError, id_from_content, id_from_time};
