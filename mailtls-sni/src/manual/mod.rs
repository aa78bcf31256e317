//! Longer guidance for embedders, one page per topic. These pages hold no
//! code of the crate; their examples are compiled as doctests.

/// Inbound TLS for a mail server: a STARTTLS listener on [`SniResolver`],
/// hot reload of a certificate directory and ACME tls-alpn-01.
///
/// [`SniResolver`]: crate::SniResolver
pub mod inbound {
    #![doc = include_str!("inbound.md")]
}
