//! tls-alpn-01 (RFC 8737): a self-signed certificate for the one name with
//! the critical acmeIdentifier extension, handed to the TLS server's
//! challenge slot (`mailtls_core::challenge`).

use std::sync::Arc;

use mailtls_core::challenge::{TlsAlpnChallenge, TlsAlpnChallengeSlot};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{ChallengeContext, ChallengeSolver, SolverFuture};
use crate::error::AcmeError;

/// Makes the RFC 8737 §3 challenge certificate for `ctx`.
pub fn challenge_certificate(ctx: &ChallengeContext) -> Result<TlsAlpnChallenge, AcmeError> {
    let err = |reason: String| AcmeError::Solver {
        kind: "tls-alpn-01".into(),
        identifier: ctx.identifier.to_string(),
        reason,
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| err(format!("key generation: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![ctx.identifier.to_string()])
        .map_err(|e| err(format!("certificate parameters: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    // rcgen marks this extension critical, as RFC 8737 §3 requires.
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(
            &ctx.key_authorization_sha256(),
        ));
    let cert = params
        .self_signed(&key)
        .map_err(|e| err(format!("self-signing: {e}")))?;
    Ok(TlsAlpnChallenge {
        name: ctx.identifier.clone(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// Answers tls-alpn-01 by installing challenge certificates into a slot (the
/// SNI resolver of the server listening on port 443).
#[derive(Clone)]
pub struct TlsAlpn01Solver {
    slot: Arc<dyn TlsAlpnChallengeSlot>,
}

impl std::fmt::Debug for TlsAlpn01Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpn01Solver").finish_non_exhaustive()
    }
}

impl TlsAlpn01Solver {
    /// A solver that installs into `slot`.
    pub fn new(slot: Arc<dyn TlsAlpnChallengeSlot>) -> Self {
        TlsAlpn01Solver { slot }
    }
}

impl ChallengeSolver for TlsAlpn01Solver {
    fn challenge_type(&self) -> &'static str {
        "tls-alpn-01"
    }

    fn present<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            let challenge = challenge_certificate(ctx)?;
            self.slot
                .install_challenge(challenge)
                .map_err(|e| AcmeError::Solver {
                    kind: "tls-alpn-01".into(),
                    identifier: ctx.identifier.to_string(),
                    reason: e.to_string(),
                })
        })
    }

    fn cleanup<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            self.slot.remove_challenge(&ctx.identifier);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mailtls_core::name::DnsName;

    #[test]
    fn certificate_has_critical_acme_identifier_with_digest() {
        let ctx = ChallengeContext::new(
            DnsName::parse("mail.example.com").unwrap(),
            false,
            "tok".into(),
            "tok.thumb".into(),
        );
        let ch = challenge_certificate(&ctx).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&ch.chain[0]).unwrap();
        // id-pe-acmeIdentifier, RFC 8737 §6.1.
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .unwrap();
        assert!(ext.critical);
        // The value is an OCTET STRING (0x04, 32) holding the digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &ctx.key_authorization_sha256());
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert_eq!(sans, vec!["DNSName(mail.example.com)".to_string()]);
    }
}
