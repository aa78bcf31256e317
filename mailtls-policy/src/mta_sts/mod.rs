//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file, its HTTPS
//! fetch, a persistent cache and the service that ties them together.

mod cache;
mod fetch;
mod parser;
mod policy;
mod record;
mod service;

pub use cache::{
    CACHE_FILE, CacheEntry, CacheError, FAILURE_BACKOFF, FailureNote, FileCacheStore,
    MAX_REFRESH_INTERVAL, PolicyCache, PolicyCacheStore, StoreFuture,
};
pub use fetch::{
    DEFAULT_MAX_SIZE, FetchError, FetchFuture, FetchPolicy, StaticPolicies, policy_url,
};
#[cfg(feature = "fetch")]
pub use fetch::{FetcherConfig, PolicyFetcher};
pub(crate) use parser::valid_ext_name;
pub use parser::{
    Diagnostic, DiagnosticKind, ParsedPolicy, PolicyError, Profile, Severity, parse_policy,
};
pub use policy::{MAX_MAX_AGE, MtaStsPolicy, PolicyMode};
pub use record::{PolicyId, RecordError, StsRecord, is_sts_record, parse_record, select_record};
pub use service::{
    DEFAULT_SAVE_DELAY, MtaSts, NoPolicyReason, PolicyOutcome, PolicySource, SHARED_FETCH_LEASE,
};
