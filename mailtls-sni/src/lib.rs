#![doc = include_str!("../README.md")]

pub mod dir;
pub mod index;
pub mod resolver;
#[cfg(feature = "watch")]
pub mod watch;

pub use index::{CertIndex, KeyAcceptance, MatchKind};
pub use resolver::{
    CertSummary, MissEvent, PreparedCertificate, ReloadError, ReloadReport, ResolverOptions,
    ResolverStats, SniResolver, is_tls_alpn_01, key_acceptance,
};
#[cfg(feature = "watch")]
pub use watch::{DirWatcher, WatchOptions, watch_dir};
