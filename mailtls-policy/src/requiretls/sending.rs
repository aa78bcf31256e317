//! The conditions RFC 8689 §4.2.1 puts on relaying a REQUIRETLS message.
//!
//! They are checked in two steps because the facts arrive at two moments:
//! before connecting (how the MX host was found) and after EHLO on the TLS
//! session (how the certificate was verified, what the peer advertised).
//! Any failure is a permanent 5.7.30 bounce: the message is never sent in
//! cleartext and never sent to an unverified peer.

use crate::plan::EnhancedStatus;

/// How the sender knows an MX host really serves the recipient domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MxAuthority {
    /// The MX lookup was DNSSEC-authentic (RFC 8689 §4.2.1 item 1).
    DnssecValidated,
    /// An MTA-STS policy in enforce mode lists the MX host (RFC 8689 §4.2.1
    /// item 1, second branch).
    MtaStsEnforce,
    /// Neither: an insecure MX lookup and no enforcing MTA-STS policy.
    Unauthenticated,
}

/// How the peer's certificate was checked during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAuthentication {
    /// Chained to a trusted root and valid for the MX name (WebPKI).
    WebPki,
    /// Matched usable TLSA records (RFC 7672).
    Dane,
    /// Not verified (opportunistic TLS, or all-unusable TLSA records).
    Unverified,
}

/// The facts of an established SMTP session, after EHLO over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionFacts {
    /// Whether STARTTLS completed.
    pub tls: bool,
    /// How the certificate was verified.
    pub peer: PeerAuthentication,
    /// Whether the peer listed REQUIRETLS in its EHLO reply after STARTTLS.
    pub peer_advertises_requiretls: bool,
}

/// Why a REQUIRETLS message cannot go to this MX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RequireTlsFailure {
    /// The MX host is neither DNSSEC-validated nor allowed by an enforcing
    /// MTA-STS policy.
    #[error(
        "REQUIRETLS: the MX host is neither DNSSEC-validated nor listed by an MTA-STS policy in enforce mode"
    )]
    MxNotAuthenticated,
    /// No TLS session.
    #[error("REQUIRETLS: the session is not protected by TLS")]
    NoTls,
    /// TLS, but the certificate was not verified for the MX name.
    #[error("REQUIRETLS: the server certificate was not verified by WebPKI or DANE")]
    PeerNotAuthenticated,
    /// The peer did not advertise REQUIRETLS after STARTTLS.
    #[error("REQUIRETLS: the next hop does not support REQUIRETLS")]
    PeerLacksRequireTls,
}

impl RequireTlsFailure {
    /// The status of the bounce: always 5.7.30 (RFC 8689 §6.3).
    pub fn status(self) -> EnhancedStatus {
        EnhancedStatus::REQUIRETLS_REQUIRED
    }
}

/// Checks, before connecting, whether a REQUIRETLS message may use an MX host
/// found this way.
pub fn check_mx(authority: MxAuthority) -> Result<(), RequireTlsFailure> {
    match authority {
        MxAuthority::DnssecValidated | MxAuthority::MtaStsEnforce => Ok(()),
        MxAuthority::Unauthenticated => Err(RequireTlsFailure::MxNotAuthenticated),
    }
}

/// Checks, after EHLO on the TLS session, whether the message may be sent.
pub fn check_session(facts: SessionFacts) -> Result<(), RequireTlsFailure> {
    if !facts.tls {
        return Err(RequireTlsFailure::NoTls);
    }
    if facts.peer == PeerAuthentication::Unverified {
        return Err(RequireTlsFailure::PeerNotAuthenticated);
    }
    if !facts.peer_advertises_requiretls {
        return Err(RequireTlsFailure::PeerLacksRequireTls);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_must_be_dnssec_or_sts_enforce_rfc8689_4_2_1() {
        assert_eq!(check_mx(MxAuthority::DnssecValidated), Ok(()));
        assert_eq!(check_mx(MxAuthority::MtaStsEnforce), Ok(()));
        let e = check_mx(MxAuthority::Unauthenticated).unwrap_err();
        assert_eq!(e.status().to_string(), "5.7.30");
    }

    #[test]
    fn session_needs_tls_verified_peer_and_advertisement() {
        let ok = SessionFacts {
            tls: true,
            peer: PeerAuthentication::Dane,
            peer_advertises_requiretls: true,
        };
        assert_eq!(check_session(ok), Ok(()));
        assert_eq!(
            check_session(SessionFacts {
                peer: PeerAuthentication::WebPki,
                ..ok
            }),
            Ok(())
        );
        assert_eq!(
            check_session(SessionFacts { tls: false, ..ok }),
            Err(RequireTlsFailure::NoTls)
        );
        assert_eq!(
            check_session(SessionFacts {
                peer: PeerAuthentication::Unverified,
                ..ok
            }),
            Err(RequireTlsFailure::PeerNotAuthenticated)
        );
        assert_eq!(
            check_session(SessionFacts {
                peer_advertises_requiretls: false,
                ..ok
            }),
            Err(RequireTlsFailure::PeerLacksRequireTls)
        );
    }
}
