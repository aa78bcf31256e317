//! Classifying certificate verification failures for TLS-RPT.

use std::sync::Arc;

use rustls::{CertificateError, OtherError};

use crate::result_type::ResultType;

/// A refused certificate: why, as RFC 8460 counts it, and the details.
///
/// [`super::PlanVerifier`] returns it inside the rustls error, so the
/// handshake error itself says how to count it (see
/// [`VerificationFailure::from_rustls_error`] and
/// [`VerificationFailure::from_io_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{result_type}: {detail}")]
pub struct VerificationFailure {
    /// The RFC 8460 result type.
    pub result_type: ResultType,
    /// What the verifier said.
    pub detail: String,
}

impl VerificationFailure {
    /// Wraps the failure as the rustls error a verifier returns.
    pub fn into_rustls_error(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    /// Finds a failure made by [`super::PlanVerifier`] in a rustls error, or
    /// classifies any other rustls error.
    pub fn from_rustls_error(error: &rustls::Error) -> Self {
        if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = error
            && let Some(f) = inner.downcast_ref::<VerificationFailure>()
        {
            return f.clone();
        }
        Self {
            result_type: classify_rustls_error(error),
            detail: error.to_string(),
        }
    }

    /// Finds the failure in the I/O error a tokio-rustls handshake returns;
    /// `None` when the error did not come from rustls (a refused connection).
    pub fn from_io_error(error: &std::io::Error) -> Option<Self> {
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .map(Self::from_rustls_error)
    }
}

/// Maps a rustls error from WebPKI path validation to the RFC 8460 result
/// type (§4.3.2): validity dates, name mismatch, untrusted chain, anything
/// else a validation failure.
pub fn classify_rustls_error(error: &rustls::Error) -> ResultType {
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => ResultType::CertificateExpired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::Revoked => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_rfc8460_result_types() {
        let cert = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(
            classify_rustls_error(&cert(CertificateError::Expired)),
            ResultType::CertificateExpired
        );
        assert_eq!(
            classify_rustls_error(&cert(CertificateError::NotValidYet)),
            ResultType::CertificateExpired
        );
        assert_eq!(
            classify_rustls_error(&cert(CertificateError::NotValidForName)),
            ResultType::CertificateHostMismatch
        );
        assert_eq!(
            classify_rustls_error(&cert(CertificateError::UnknownIssuer)),
            ResultType::CertificateNotTrusted
        );
        assert_eq!(
            classify_rustls_error(&cert(CertificateError::BadEncoding)),
            ResultType::ValidationFailure
        );
        assert_eq!(
            classify_rustls_error(&rustls::Error::HandshakeNotComplete),
            ResultType::ValidationFailure
        );
    }

    #[test]
    fn a_wrapped_failure_survives_the_round_trip() {
        let f = VerificationFailure {
            result_type: ResultType::TlsaInvalid,
            detail: "no match".into(),
        };
        let e = f.clone().into_rustls_error();
        assert_eq!(VerificationFailure::from_rustls_error(&e), f);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(VerificationFailure::from_io_error(&io), Some(f));
        assert_eq!(
            VerificationFailure::from_io_error(&std::io::Error::other("refused")),
            None
        );
    }
}
