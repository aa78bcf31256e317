//! # The outbound loop
//!
//! For every recipient domain of a message, an MTA that enforces MTA-STS
//! (RFC 8461), DANE (RFC 7672) and REQUIRETLS (RFC 8689) and reports with
//! TLS-RPT (RFC 8460) goes through the same steps. This crate does the
//! deciding; the MTA keeps its own queue, SMTP client and sockets.
//!
//! 1. **MTA-STS.** [`MtaSts::policy_for`](crate::mta_sts::MtaSts::policy_for)
//!    checks the `_mta-sts` TXT record, fetches the policy when its id
//!    changed (through any [`FetchPolicy`](crate::mta_sts::FetchPolicy); the
//!    HTTPS `PolicyFetcher` with feature `fetch`) and keeps it in the
//!    [`PolicyCache`](crate::mta_sts::PolicyCache). Call it on every
//!    delivery attempt: a cached, unchanged policy costs one TXT lookup.
//!    The outcome's policy is an `Arc`, shared with the cache.
//! 2. **Facts.** [`gather`](crate::plan::gather()) looks up MX, addresses and
//!    TLSA records (under DNSSEC) through a
//!    [`DnsResolver`](crate::dns::DnsResolver); `HickoryResolver` (feature
//!    `hickory`) validates itself, or the embedder implements the trait over
//!    its own resolver.
//! 3. **Plan.** [`plan`](crate::plan::plan()) turns the facts and the message's
//!    [`TlsDemand`](crate::requiretls::TlsDemand) into an ordered list of
//!    [`PlanEntry`](crate::plan::PlanEntry): which MX to try, at which
//!    addresses, how hard to insist on TLS, how to verify, and what a failure
//!    means (next MX, defer, bounce). No I/O happens here.
//! 4. **Verifier in a `ClientConfig`.**
//!    [`PlanVerifier::for_entry`](crate::verifier::PlanVerifier::for_entry)
//!    builds a rustls `ServerCertVerifier` for one entry. Give it the same
//!    `CryptoProvider` the `ClientConfig` is built with, so a server that
//!    chose `ring` never loads aws-lc-rs because of this crate. One
//!    verifier per connection: it remembers the outcome of its handshake.
//! 5. **STARTTLS.** Connect to one of [`PlanEntry::addresses`](crate::plan::PlanEntry::addresses),
//!    read the greeting, EHLO, and look for STARTTLS. If it is missing,
//!    [`PlanEntry::on_starttls_missing`](crate::plan::PlanEntry::on_starttls_missing)
//!    says whether cleartext is allowed and what to report.
//! 6. **SNI.** Send [`PlanEntry::sni`](crate::plan::PlanEntry::sni) as SNI.
//!    For a DANE entry it is the TLSA base domain (RFC 7672 §8.1): when
//!    the MX name is an alias with a signed CNAME chain, that is the fully
//!    expanded name, not the name in the MX record, and a peer choosing its
//!    certificate by SNI would otherwise present the wrong one and defer
//!    delivery. For every other entry it is the MX host name as listed
//!    ([`PlanEntry::host`](crate::plan::PlanEntry::host)), which MTA-STS
//!    and WebPKI match against (RFC 8461 §4.1). The verifier does not use
//!    the name rustls passes; the plan decides which names are acceptable
//!    (the MX name for MTA-STS and WebPKI, the TLSA base domain and MX name
//!    for DANE-TA).
//! 7. **Outcome.** A refused handshake carries its RFC 8460 result type:
//!    [`VerificationFailure::from_io_error`](crate::verifier::VerificationFailure::from_io_error)
//!    finds it in tokio-rustls' I/O error. After a handshake,
//!    [`PlanVerifier::last_outcome`](crate::verifier::PlanVerifier::last_outcome)
//!    tells verified (WebPKI or DANE), not checked, or failed-but-audited
//!    (MTA-STS `testing`). With REQUIRETLS,
//!    [`check_session`](crate::requiretls::check_session) decides whether
//!    the message may go to this peer.
//! 8. **TLS-RPT.** Record one
//!    [`SessionOutcome`](crate::tlsrpt::SessionOutcome) per session with
//!    [`Collector::record`](crate::tlsrpt::Collector::record): the policy the
//!    entry names ([`PlanEntry::policy`](crate::plan::PlanEntry::policy)),
//!    its strings (for MTA-STS
//!    [`MtaStsPolicy::policy_strings`](crate::mta_sts::MtaStsPolicy::policy_strings)),
//!    and the failure if there was one. Once a day
//!    [`queue_due_reports`](crate::tlsrpt::queue_due_reports) builds the
//!    reports from a [`CounterStore`](crate::tlsrpt::CounterStore) (on one
//!    node [`LocalCounters`](crate::tlsrpt::LocalCounters) over the
//!    collector; on several, a shared store each node's collector feeds
//!    with [`Collector::flush_to`](crate::tlsrpt::Collector::flush_to)) and
//!    an [`Outbox`](crate::tlsrpt::delivery::Outbox) delivers them. The
//!    report mails' own sessions must not be recorded.
//!
//! ## In code
//!
//! The example runs offline: DNS answers and the policy file come from
//! memory (see [`super::testing`]); only the SMTP conversation, which
//! belongs to the MTA, is left out.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mailtls_core::DnsName;
//! use mailtls_policy::dns::StaticResolver;
//! use mailtls_policy::mta_sts::{MtaSts, PolicyCache, PolicyOutcome, StaticPolicies};
//! use mailtls_policy::plan::{HostAction, gather, plan};
//! use mailtls_policy::requiretls::TlsDemand;
//! use mailtls_policy::tlsrpt::{Collector, FailureOutcome, PolicyRef, SessionOutcome};
//! use mailtls_policy::verifier::{PlanVerifier, VerificationOutcome};
//! use rustls::pki_types::ServerName;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let domain = DnsName::parse("example.com")?;
//! let dns = Arc::new(
//!     StaticResolver::builder()
//!         .mx("example.com", 10, "mx1.example.com")
//!         .a("mx1.example.com", "192.0.2.25".parse()?)
//!         .txt("_mta-sts.example.com", "v=STSv1; id=20261207")
//!         .build()?,
//! );
//! let fetcher = StaticPolicies::new().with_policy(
//!     domain.clone(),
//!     "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n",
//! );
//! let sts = MtaSts::new(dns.clone(), fetcher, PolicyCache::in_memory());
//! // The embedder's provider and roots (webpki-roots, the system's, ...);
//! // here one made-up CA.
//! let provider = mailtls_policy::default_crypto_provider();
//! let mut roots = rustls::RootCertStore::empty();
//! # let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()])?;
//! # let ca_der = ca.cert.der().clone();
//! roots.add(ca_der)?;
//! let roots = Arc::new(roots);
//! let data = tempfile::tempdir()?; // the MTA's data directory
//! let collector = Collector::open(data.path())?;
//!
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     // 1. MTA-STS.
//!     let outcome = sts.policy_for(&domain).await;
//!     assert!(matches!(outcome, PolicyOutcome::Policy { .. }));
//!     let policy = outcome.policy().cloned();
//!     // 2. and 3. Facts and plan.
//!     let facts = gather(dns.as_ref(), &domain, policy.clone()).await;
//!     let delivery = plan(&facts, TlsDemand::Default);
//!
//!     for entry in &delivery.entries {
//!         if matches!(entry.action, HostAction::Skip { .. } | HostAction::FailNow { .. }) {
//!             continue;
//!         }
//!         // 4. A verifier and a ClientConfig for this entry.
//!         let verifier = Arc::new(PlanVerifier::for_entry(
//!             entry,
//!             Arc::clone(&roots),
//!             Arc::clone(&provider),
//!         )?);
//!         let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
//!             .with_safe_default_protocol_versions()?
//!             .dangerous()
//!             .with_custom_certificate_verifier(verifier.clone())
//!             .with_no_client_auth();
//!         // 5. and 6. Connect to `entry.addresses`, EHLO, STARTTLS, then
//!         // hand the stream to tokio-rustls with the entry's SNI (the TLSA
//!         // base domain for DANE, the MX name otherwise):
//!         let sni = ServerName::try_from(entry.sni().as_str().to_owned())?;
//!         let _connector = (tokio_rustls::TlsConnector::from(Arc::new(config)), sni);
//!         assert_eq!(entry.addresses, vec!["192.0.2.25".parse::<std::net::IpAddr>()?]);
//!
//!         // 7. Here no handshake ran; after one, `last_outcome` says how
//!         // it went (or `VerificationFailure::from_io_error` why it was
//!         // refused).
//!         let failure = match verifier.last_outcome() {
//!             Some(VerificationOutcome::Failed(f)) => Some(FailureOutcome {
//!                 result_type: f.result_type,
//!                 sending_mta_ip: None,
//!                 receiving_ip: entry.addresses.first().copied(),
//!                 receiving_mx_helo: None,
//!                 failure_reason_code: None,
//!                 additional_information: None,
//!             }),
//!             _ => None,
//!         };
//!
//!         // 8. One TLS-RPT record per session.
//!         let strings = policy.as_ref().map(|p| p.policy_strings()).unwrap_or_default();
//!         let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
//!         collector.record(&SessionOutcome {
//!             policy: PolicyRef {
//!                 policy_type: entry.policy,
//!                 domain: domain.as_str(),
//!                 strings: &strings,
//!                 mx_hosts: &["mx1.example.com"],
//!             },
//!             mx_host: entry.host.as_str(),
//!             failure,
//!         })?;
//!     }
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! assert_eq!(collector.tuple_count(), 1);
//! # Ok(())
//! # }
//! ```
