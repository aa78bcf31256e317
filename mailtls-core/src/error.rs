//! The shared error vocabulary: one enum that any mailtls error converts into,
//! for callers that want a single error type.

use crate::challenge::ChallengeError;
use crate::inspect::InspectError;
use crate::listener::ModeParseError;
use crate::load::LoadError;
#[cfg(feature = "maker")]
use crate::maker::MakerError;
use crate::name::NameError;
use crate::pattern::PatternError;

/// Any error from `mailtls-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A host name was invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A name pattern was invalid.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A certificate or key could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A certificate could not be inspected.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The certificate maker failed.
    #[cfg(feature = "maker")]
    #[error(transparent)]
    Maker(#[from] MakerError),
    /// A listener mode word was not understood.
    #[error(transparent)]
    Mode(#[from] ModeParseError),
    /// A tls-alpn-01 challenge could not be installed.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
}
