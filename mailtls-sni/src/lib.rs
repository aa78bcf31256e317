#![doc = include_str!("../README.md")]

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "mailtls-sni needs a crypto provider: enable the `aws-lc-rs` (default) or the `ring` feature"
);

pub mod dir;
pub mod index;
#[cfg(all(feature = "watch", feature = "aws-lc-rs"))]
pub mod manual;
pub mod resolver;
#[cfg(feature = "watch")]
pub mod watch;

pub use index::{CertIndex, KeyAcceptance, MatchKind, Resolved};
pub use resolver::{
    BadFile, CertSummary, MAX_BAD_FILES_IN_STATS, MissEvent, PreparedCertificate, ReloadError,
    ReloadPolicy, ReloadReport, ResolverOptions, ResolverStats, SniResolver, is_tls_alpn_01,
    key_acceptance,
};
#[cfg(feature = "watch")]
pub use watch::{DirWatcher, WatchOptions, watch_dir};
