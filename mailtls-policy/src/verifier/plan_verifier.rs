//! [`PlanVerifier`]: the certificate check a plan entry asks for, as a rustls
//! verifier.

use std::sync::{Arc, Mutex, PoisonError};

use mailtls_core::DnsName;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::classify::{VerificationFailure, classify_rustls_error};
use crate::dane::{UsableTlsa, verify_chain};
use crate::plan::{HostAction, PlanEntry, Verification};
use crate::requiretls::PeerAuthentication;
use crate::result_type::ResultType;

/// Why a verifier cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// The entry says not to connect to this host at all.
    #[error("plan entry for {host} is not connectable (skip or fail now)")]
    NotConnectable {
        /// The host.
        host: String,
    },
    /// WebPKI verification was asked for with no trusted roots.
    #[error("WebPKI verification needs at least one trusted root: {detail}")]
    NoRoots {
        /// What rustls said.
        detail: String,
    },
    /// WebPKI verification was asked for with no allowed names.
    #[error("WebPKI verification needs at least one allowed name")]
    NoNames,
}

/// What the last handshake's certificate check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationOutcome {
    /// The certificate was verified.
    Verified(PeerAuthentication),
    /// Nothing was checked (opportunistic TLS).
    NotChecked,
    /// The check failed. In audit mode the handshake went on anyway, and
    /// so it does when every TLSA record was unusable: that is recorded as
    /// a `tlsa-invalid` failure for TLS-RPT although the handshake goes on
    /// unauthenticated (RFC 7672 §2.2).
    Failed(VerificationFailure),
}

impl VerificationOutcome {
    /// How the peer ended up authenticated, for
    /// [`crate::requiretls::check_session`]: a failed or skipped check means
    /// unverified.
    pub fn peer_authentication(&self) -> PeerAuthentication {
        match self {
            Self::Verified(how) => *how,
            Self::NotChecked | Self::Failed(_) => PeerAuthentication::Unverified,
        }
    }
}

enum Check {
    WebPki {
        verifier: Arc<WebPkiServerVerifier>,
        names: Vec<ServerName<'static>>,
    },
    Dane {
        records: Vec<UsableTlsa>,
        reference_names: Vec<DnsName>,
    },
}

/// A rustls server certificate verifier enforcing one plan entry.
///
/// - `RequireTls{WebPki}`: the chain must lead to one of the given roots and
///   the certificate must be valid for one of the allowed names (the name
///   rustls passes, the SNI, is not used: the plan decides).
/// - `RequireTls{Dane}`: DANE-EE or DANE-TA as in [`crate::dane::verify_chain`].
/// - `RequireTlsUnauthenticated`, `OpportunisticTls`: anything is accepted;
///   an `audit` check is run and its failure recorded, never enforced.
///   `RequireTlsUnauthenticated` (every TLSA record unusable) records a
///   `tlsa-invalid` failure: the domain owner published DANE records no
///   sender can use, which TLS-RPT exists to tell them (RFC 8460 §4.3.2),
///   while delivery goes on over unauthenticated TLS as RFC 7672 §2.2
///   demands.
///
/// Handshake signatures are always checked against the presented key.
/// Refusals are [`VerificationFailure`]s inside the rustls error; the outcome
/// of the last check is also kept ([`PlanVerifier::last_outcome`]) so audited
/// failures can be counted for TLS-RPT.
pub struct PlanVerifier {
    check: Option<Check>,
    enforce: bool,
    /// Every TLSA record was unusable: accept, but report `tlsa-invalid`.
    tlsa_unusable: bool,
    algorithms: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
    outcome: Mutex<Option<VerificationOutcome>>,
}

impl std::fmt::Debug for PlanVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.check {
            None => "none",
            Some(Check::WebPki { .. }) => "webpki",
            Some(Check::Dane { .. }) => "dane",
        };
        f.debug_struct("PlanVerifier")
            .field("check", &kind)
            .field("enforce", &self.enforce)
            .finish_non_exhaustive()
    }
}

impl PlanVerifier {
    /// Builds the verifier for a plan entry. `roots` are the trust anchors
    /// for WebPKI checks (the embedder's CA bundle); `provider` verifies
    /// signatures and chains, and should be the one of the `ClientConfig`
    /// this verifier goes into.
    pub fn for_entry(
        entry: &PlanEntry,
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, VerifierError> {
        let (verification, enforce) = match &entry.action {
            HostAction::Skip { .. } | HostAction::FailNow { .. } => {
                return Err(VerifierError::NotConnectable {
                    host: entry.host.to_string(),
                });
            }
            HostAction::OpportunisticTls { audit } => (audit.as_ref(), false),
            HostAction::RequireTls { verify } => (Some(verify), true),
            HostAction::RequireTlsUnauthenticated => (None, true),
        };
        let check = match verification {
            None => None,
            Some(v) => Some(Self::check_for(v, roots, &provider)?),
        };
        Ok(Self {
            check,
            enforce,
            tlsa_unusable: entry.action == HostAction::RequireTlsUnauthenticated,
            algorithms: provider.signature_verification_algorithms,
            provider,
            outcome: Mutex::new(None),
        })
    }

    /// A verifier that accepts any certificate (opportunistic TLS); the
    /// handshake signature is still checked with `provider`.
    pub fn opportunistic(provider: Arc<CryptoProvider>) -> Self {
        Self {
            check: None,
            enforce: false,
            tlsa_unusable: false,
            algorithms: provider.signature_verification_algorithms,
            provider,
            outcome: Mutex::new(None),
        }
    }

    fn check_for(
        v: &Verification,
        roots: Arc<RootCertStore>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Check, VerifierError> {
        Ok(match v {
            Verification::WebPki { allowed_names } => {
                let names: Vec<ServerName<'static>> = allowed_names
                    .iter()
                    .filter_map(|n| ServerName::try_from(n.as_str().to_owned()).ok())
                    .collect();
                if names.is_empty() {
                    return Err(VerifierError::NoNames);
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| VerifierError::NoRoots {
                        detail: e.to_string(),
                    })?;
                Check::WebPki { verifier, names }
            }
            Verification::Dane {
                records,
                reference_names,
            } => Check::Dane {
                records: records.clone(),
                reference_names: reference_names.clone(),
            },
        })
    }

    /// The outcome of the most recent certificate check, if a handshake got
    /// that far.
    pub fn last_outcome(&self) -> Option<VerificationOutcome> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: VerificationOutcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }

    fn run_check(
        check: &Check,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &Arc<CryptoProvider>,
    ) -> Result<PeerAuthentication, VerificationFailure> {
        match check {
            Check::WebPki { verifier, names } => {
                let mut last = None;
                for name in names {
                    match verifier.verify_server_cert(end_entity, intermediates, name, &[], now) {
                        Ok(_) => return Ok(PeerAuthentication::WebPki),
                        Err(
                            e @ rustls::Error::InvalidCertificate(
                                CertificateError::NotValidForName
                                | CertificateError::NotValidForNameContext { .. },
                            ),
                        ) => last = Some(e),
                        Err(e) => {
                            return Err(VerificationFailure {
                                result_type: classify_rustls_error(&e),
                                detail: e.to_string(),
                            });
                        }
                    }
                }
                Err(VerificationFailure {
                    result_type: ResultType::CertificateHostMismatch,
                    detail: last.map_or_else(|| "no allowed name".to_owned(), |e| e.to_string()),
                })
            }
            Check::Dane {
                records,
                reference_names,
            } => verify_chain(
                records,
                end_entity,
                intermediates,
                reference_names,
                now,
                provider,
            )
            .map(|_| PeerAuthentication::Dane)
            .map_err(|f| VerificationFailure {
                result_type: f.result_type(),
                detail: f.to_string(),
            }),
        }
    }
}

impl ServerCertVerifier for PlanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(check) = &self.check else {
            self.record(if self.tlsa_unusable {
                VerificationOutcome::Failed(VerificationFailure {
                    result_type: ResultType::TlsaInvalid,
                    detail: "every TLSA record is unusable; TLS without authentication \
                             (RFC 7672 §2.2)"
                        .to_owned(),
                })
            } else {
                VerificationOutcome::NotChecked
            });
            return Ok(ServerCertVerified::assertion());
        };
        match Self::run_check(check, end_entity, intermediates, now, &self.provider) {
            Ok(how) => {
                self.record(VerificationOutcome::Verified(how));
                Ok(ServerCertVerified::assertion())
            }
            Err(failure) => {
                self.record(VerificationOutcome::Failed(failure.clone()));
                if self.enforce {
                    Err(failure.into_rustls_error())
                } else {
                    Ok(ServerCertVerified::assertion())
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
