//! # Seeding policies and DNS for tests
//!
//! Nothing in the outbound loop needs the network when its inputs come
//! from memory:
//!
//! - **DNS**: [`StaticResolver`](crate::dns::StaticResolver) answers MX,
//!   TXT, TLSA, A and AAAA from a script, with a DNSSEC status per answer
//!   (`default_status`, or per record) and scripted failures (NXDOMAIN,
//!   SERVFAIL, timeouts, bogus answers).
//! - **MTA-STS policy files**: [`StaticPolicies`](crate::mta_sts::StaticPolicies)
//!   is a [`FetchPolicy`](crate::mta_sts::FetchPolicy) that serves policy
//!   text per domain (a missing domain fails as a 404 would), so
//!   [`MtaSts`](crate::mta_sts::MtaSts) runs its real logic: TXT id
//!   check, fetch on a new id, cache, back-off.
//! - **The cache itself**: [`PolicyCache::store`](crate::mta_sts::PolicyCache::store)
//!   puts a policy in as if it had just been fetched, for tests that start
//!   from a warm cache (or replay a production cache file).
//! - **The plan without any lookups**: [`plan`](crate::plan::plan()) takes
//!   [`DomainFacts`](crate::plan::DomainFacts), plain values a test can
//!   write down directly.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::SystemTime;
//!
//! use mailtls_core::DnsName;
//! use mailtls_policy::dns::{DnssecStatus, StaticResolver};
//! use mailtls_policy::mta_sts::{
//!     MtaSts, PolicyCache, PolicyId, PolicyMode, PolicySource, PolicyOutcome, Profile,
//!     StaticPolicies, parse_policy,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let domain = DnsName::parse("example.net")?;
//! let dns = Arc::new(
//!     StaticResolver::builder()
//!         .default_status(DnssecStatus::Insecure)
//!         .txt("_mta-sts.example.net", "v=STSv1; id=seeded")
//!         .build()?,
//! );
//! // A warm cache: the policy under the id DNS publishes.
//! let cache = PolicyCache::in_memory();
//! let text = "version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 604800\n";
//! let parsed = parse_policy(text.as_bytes(), Profile::Strict)?;
//! cache.store(&domain, PolicyId::parse("seeded").ok_or("bad id")?, parsed.policy, SystemTime::now());
//! // No policy files at all: a fetch would fail, and is not needed.
//! let sts = MtaSts::new(dns, StaticPolicies::new(), cache);
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let outcome = rt.block_on(sts.policy_for(&domain));
//! let PolicyOutcome::Policy { policy, source, .. } = outcome else {
//!     return Err("expected the seeded policy".into());
//! };
//! assert_eq!(source, PolicySource::Cache);
//! assert_eq!(policy.mode(), PolicyMode::Testing);
//! # Ok(())
//! # }
//! ```
