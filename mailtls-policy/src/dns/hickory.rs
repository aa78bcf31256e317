//! [`DnsResolver`] over hickory-resolver 0.25.
//!
//! With [`Validation::Off`] hickory asks its name servers and reports every
//! answer as [`DnssecStatus::NotValidated`]. With a trust anchor hickory
//! validates the chain itself (it does not trust an upstream's AD bit) and
//! every record carries its proof, which maps onto [`DnssecStatus`].
//!
//! Behind a validating recursive resolver two more things matter. With
//! [`HickoryResolverConfig::checking_disabled`] queries carry the CD bit so
//! the upstream hands over data it finds bogus and our validator says so;
//! and when a SERVFAIL comes back anyway, the RFC 8914 Extended DNS Error of
//! that answer is read, so a strict upstream's bogus verdict becomes
//! [`DnsError::Bogus`] rather than a transient [`DnsError::ServerFailure`].
//! [`Validation::TrustUpstreamAd`] instead takes the upstream's AD bit as
//! the verdict (RFC 6698 / RFC 7672 deployments with a local validator).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::ProtoErrorKind;
use hickory_proto::dnssec::{Proof, TrustAnchors};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType as HRecordType};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::{ResolveError, ResolveErrorKind, Resolver};
use mailtls_core::DnsName;

use super::cache::DnsCache;
use super::ede_probe as ede;
use super::error::DnsSetupError;
use super::upstream::{HeaderBits, UpstreamConnector};
use super::{
    Answer, DnsCacheConfig, DnsCacheStats, DnsError, DnsFuture, DnsResolver, DnssecStatus,
    MxRecord, QueryName, RecordType, TlsaRecord, TxtRecord,
};

/// Whether and how the resolver validates DNSSEC.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validation {
    /// No validation: every answer is [`DnssecStatus::NotValidated`].
    Off,
    /// Validate from the IANA root keys built into hickory.
    Root,
    /// Validate from the DNSKEY records in a zone-format file (a private
    /// test world signs its own root or apex with these keys).
    AnchorFile(PathBuf),
    /// Do not validate; take the upstream resolver's AD bit as the verdict
    /// (RFC 6698 §A.3 / RFC 7672 §1.3 "local validating resolver"): an
    /// answer with AD is [`DnssecStatus::Authentic`], one without is
    /// [`DnssecStatus::Insecure`].
    ///
    /// Risk: the AD bit is one unauthenticated header bit. Anyone on the
    /// path between this process and the resolver, or the resolver itself,
    /// decides what is "authentic" and so which TLSA records DANE pins. It
    /// is only safe when that path cannot be tampered with and the resolver
    /// validates strictly (bogus answered with SERVFAIL, not passed on
    /// without AD). [`HickoryResolver::new`] therefore accepts this mode
    /// only for explicitly listed name servers that are each on a loopback
    /// address or listed in [`HickoryResolverConfig::trusted_upstreams`].
    TrustUpstreamAd,
}

/// Where a [`HickoryResolver`] sends its queries and how.
///
/// Built from [`Default`] (or [`HickoryResolverConfig::nameserver`]) and
/// the `with_*` setters, so that new options can be added without
/// breaking embedders.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HickoryResolverConfig {
    /// Name servers (UDP with TCP fallback); empty means the system's
    /// `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// DNSSEC validation.
    pub validation: Validation,
    /// Time allowed for one query to one server.
    pub timeout: Duration,
    /// How many times a query is tried.
    pub attempts: usize,
    /// Send queries with the CD (checking disabled) bit when validating
    /// ourselves ([`Validation::Root`] or [`Validation::AnchorFile`]): a
    /// validating upstream then passes on data it finds bogus, and our
    /// validator reports [`DnssecStatus::Bogus`] instead of the upstream's
    /// SERVFAIL. Ignored in the other modes. Default off.
    pub checking_disabled: bool,
    /// Name servers not on loopback whose AD bit
    /// [`Validation::TrustUpstreamAd`] may trust (a resolver on a link the
    /// operator controls, or reached over an authenticated channel).
    /// Loopback servers need no entry.
    pub trusted_upstreams: Vec<IpAddr>,
    /// The answer cache (on by default; see [`DnsCacheConfig`]).
    pub cache: DnsCacheConfig,
}

impl Default for HickoryResolverConfig {
    fn default() -> Self {
        HickoryResolverConfig {
            nameservers: Vec::new(),
            validation: Validation::Root,
            timeout: Duration::from_secs(5),
            attempts: 2,
            checking_disabled: false,
            trusted_upstreams: Vec::new(),
            cache: DnsCacheConfig::default(),
        }
    }
}

impl HickoryResolverConfig {
    /// One name server (for example a validating resolver on loopback).
    pub fn nameserver(addr: SocketAddr, validation: Validation) -> Self {
        HickoryResolverConfig {
            nameservers: vec![addr],
            validation,
            ..Self::default()
        }
    }

    /// Sets [`Self::nameservers`].
    pub fn with_nameservers(mut self, nameservers: Vec<SocketAddr>) -> Self {
        self.nameservers = nameservers;
        self
    }

    /// Sets [`Self::validation`].
    pub fn with_validation(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }

    /// Sets [`Self::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Self::attempts`].
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }

    /// Sets [`Self::checking_disabled`].
    pub fn with_checking_disabled(mut self, checking_disabled: bool) -> Self {
        self.checking_disabled = checking_disabled;
        self
    }

    /// Sets [`Self::trusted_upstreams`].
    pub fn with_trusted_upstreams(mut self, trusted_upstreams: Vec<IpAddr>) -> Self {
        self.trusted_upstreams = trusted_upstreams;
        self
    }

    /// Sets [`Self::cache`].
    pub fn with_cache(mut self, cache: DnsCacheConfig) -> Self {
        self.cache = cache;
        self
    }
}

/// Where the DNSSEC verdict of an answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nobody gives one: every answer is not validated.
    None,
    /// Hickory's own validator.
    Own,
    /// The upstream's AD bit (see [`Validation::TrustUpstreamAd`]).
    UpstreamAd,
}

/// A [`DnsResolver`] backed by hickory-resolver.
///
/// Results are cached (see [`DnsCacheConfig`]); clones share the cache.
#[derive(Clone)]
pub struct HickoryResolver {
    inner: Resolver<UpstreamConnector>,
    verdict: Verdict,
    /// The configured name servers, asked directly for the Extended DNS
    /// Error of a SERVFAIL (empty with the system configuration).
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
    cache: Arc<DnsCache>,
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryResolver")
            .field("verdict", &self.verdict)
            .field("nameservers", &self.nameservers)
            .finish_non_exhaustive()
    }
}

impl HickoryResolver {
    /// Builds a resolver. Must run inside a tokio runtime when used.
    ///
    /// Fails when a trust anchor cannot be loaded, or when
    /// [`Validation::TrustUpstreamAd`] is asked for without explicit name
    /// servers or with one that is neither loopback nor trusted.
    pub fn new(config: HickoryResolverConfig) -> Result<Self, DnsSetupError> {
        let verdict = match config.validation {
            Validation::Off => Verdict::None,
            Validation::Root | Validation::AnchorFile(_) => Verdict::Own,
            Validation::TrustUpstreamAd => Verdict::UpstreamAd,
        };
        if verdict == Verdict::UpstreamAd {
            // resolv.conf may name any server: the AD bit is trusted only
            // from servers named here.
            if config.nameservers.is_empty() {
                return Err(DnsSetupError::AdTrustWithoutNameservers);
            }
            if let Some(addr) = config
                .nameservers
                .iter()
                .find(|a| !a.ip().is_loopback() && !config.trusted_upstreams.contains(&a.ip()))
            {
                return Err(DnsSetupError::UntrustedUpstream { addr: *addr });
            }
        }
        let provider = UpstreamConnector::new(HeaderBits {
            checking_disabled: config.checking_disabled && verdict == Verdict::Own,
            trust_ad: verdict == Verdict::UpstreamAd,
        });
        let mut builder = if config.nameservers.is_empty() {
            Resolver::builder(provider).map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for addr in &config.nameservers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[addr.ip()],
                    addr.port(),
                    true,
                ));
            }
            Resolver::builder_with_config(ResolverConfig::from_parts(None, vec![], group), provider)
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        // Queries are always fully qualified: no search list expansion.
        opts.ndots = 0;
        opts.edns0 = true;
        opts.validate = verdict == Verdict::Own;
        // Hickory's own cache stays (it spares the CNAME and SOA steps),
        // bounded by the same caps as ours so neither outlives the other.
        opts.positive_max_ttl = Some(config.cache.max_positive_ttl);
        opts.negative_max_ttl = Some(config.cache.max_negative_ttl);
        builder = builder.with_options(opts);
        match &config.validation {
            Validation::Off | Validation::Root | Validation::TrustUpstreamAd => {}
            Validation::AnchorFile(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| DnsSetupError::TrustAnchor {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                let anchors =
                    text.parse::<TrustAnchors>()
                        .map_err(|e| DnsSetupError::TrustAnchor {
                            path: path.clone(),
                            detail: e.to_string(),
                        })?;
                builder = builder.with_trust_anchor(Arc::new(anchors));
            }
        }
        Ok(HickoryResolver {
            inner: builder.build(),
            verdict,
            nameservers: config.nameservers,
            timeout: config.timeout,
            cache: Arc::new(DnsCache::new(config.cache)),
        })
    }

    /// Counters of the answer cache.
    pub fn cache_stats(&self) -> DnsCacheStats {
        self.cache.stats()
    }

    /// Drops every cached answer (ours and hickory's), for example after the
    /// trust anchor or the upstream changed.
    pub fn clear_cache(&self) {
        self.cache.clear();
        self.inner.clear_cache();
    }

    fn status(&self, proof: Proof) -> DnssecStatus {
        if self.verdict == Verdict::None {
            return DnssecStatus::NotValidated;
        }
        match proof {
            Proof::Secure => DnssecStatus::Authentic,
            Proof::Insecure => DnssecStatus::Insecure,
            // Indeterminate under validation means the DNSSEC records that
            // would decide could not be had: not safe to call it insecure
            // (that would let an attacker strip DANE), so it is bogus.
            Proof::Bogus | Proof::Indeterminate => DnssecStatus::Bogus,
        }
    }

    /// A lookup answered from the cache when it holds one.
    async fn lookup<T: Clone + Send + Sync + 'static>(
        &self,
        query: &QueryName,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<Result<T, String>>,
    ) -> Result<Answer<T>, DnsError> {
        if let Some(cached) = self.cache.get(query, rtype) {
            return cached;
        }
        let (result, negative_ttl) = self.lookup_uncached(query, rtype, pick).await;
        self.cache.put(query, rtype, &result, negative_ttl);
        result
    }

    /// A lookup sent to the name servers (through hickory's cache), with
    /// the RFC 2308 negative TTL of a negative answer.
    async fn lookup_uncached<T>(
        &self,
        query: &QueryName,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<Result<T, String>>,
    ) -> (Result<Answer<T>, DnsError>, Option<u32>) {
        match self.lookup_records(query, rtype, pick).await {
            Ok(answer) => (Ok(answer), None),
            Err(Failure::Dns(e)) => (Err(e), None),
            Err(Failure::Resolve(name, htype, e)) => {
                let negative_ttl = negative_ttl(&e);
                let e = self.map_error(query, rtype, (&name, htype), e).await;
                (Err(e), negative_ttl)
            }
        }
    }

    async fn lookup_records<T>(
        &self,
        query: &QueryName,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<Result<T, String>>,
    ) -> Result<Answer<T>, Failure> {
        let htype = match rtype {
            RecordType::Mx => HRecordType::MX,
            RecordType::Txt => HRecordType::TXT,
            RecordType::Tlsa => HRecordType::TLSA,
            RecordType::A => HRecordType::A,
            RecordType::Aaaa => HRecordType::AAAA,
            RecordType::Cname => HRecordType::CNAME,
        };
        let name =
            Name::from_ascii(format!("{}.", query.as_str())).map_err(|e| DnsError::Malformed {
                name: query.clone(),
                rtype,
                detail: e.to_string(),
            })?;
        let lookup = match self.inner.lookup(name.clone(), htype).await {
            Ok(l) => l,
            Err(e) => return Err(Failure::Resolve(name, htype, e)),
        };
        let mut dnssec = DnssecStatus::Authentic;
        let mut chain = Vec::new();
        let mut canonical = query.clone();
        let mut records = Vec::new();
        let mut ttl = u32::MAX;
        for record in lookup.records() {
            // Only the RRsets that make up the answer count: the CNAMEs
            // followed and the records asked for (not RRSIGs or extras).
            if let RData::CNAME(target) = record.data() {
                dnssec = dnssec.combine(self.status(record.proof()));
                ttl = ttl.min(record.ttl());
                let target = owner(&target.0).map_err(|detail| DnsError::Malformed {
                    name: query.clone(),
                    rtype,
                    detail,
                })?;
                canonical = target.clone();
                chain.push(target);
                continue;
            }
            if record.record_type() != htype {
                continue;
            }
            if let Some(item) = pick(record.data()) {
                dnssec = dnssec.combine(self.status(record.proof()));
                ttl = ttl.min(record.ttl());
                records.push(item.map_err(|detail| DnsError::Malformed {
                    name: query.clone(),
                    rtype,
                    detail,
                })?);
                if let Ok(o) = owner(record.name()) {
                    canonical = o;
                }
            }
        }
        if records.is_empty() {
            return Err(Failure::Dns(DnsError::NoData {
                name: query.clone(),
                rtype,
                dnssec,
            }));
        }
        Ok(Answer {
            query: query.clone(),
            canonical_name: canonical,
            cname_chain: chain,
            records,
            dnssec,
            ttl,
        })
    }

    /// The DNSSEC status of the zone holding `name`: the proof of the SOA
    /// of the closest enclosing zone (resolver-level negative answers do
    /// not keep their authority records, so this asks again).
    ///
    /// The walk ends at the root zone itself, not at the last label: a
    /// name directly under a signed root (`_mta-sts.nomta.` or `nomta.` in
    /// a private world whose trust anchor is the root key) is denied by the
    /// root's own NSEC, and its status is that of the root's SOA. Stopping
    /// one label short called those authentic denials bogus.
    async fn zone_status(&self, name: &QueryName) -> DnssecStatus {
        let full = name.as_str();
        // `Some(suffix)` for a suffix of the name, `None` once at the root.
        let mut suffix = Some(full);
        loop {
            let fqdn = match suffix {
                Some(s) => format!("{s}."),
                None => String::from("."),
            };
            let Ok(qname) = Name::from_ascii(fqdn) else {
                return DnssecStatus::Bogus;
            };
            match self.inner.lookup(qname, HRecordType::SOA).await {
                Ok(lookup) => {
                    return lookup
                        .records()
                        .iter()
                        .filter(|r| r.record_type() == HRecordType::SOA)
                        .map(|r| self.status(r.proof()))
                        .min()
                        .unwrap_or(DnssecStatus::Bogus);
                }
                Err(e) if e.is_no_records_found() => {}
                Err(_) => return DnssecStatus::Bogus,
            }
            suffix = match suffix {
                Some(s) => match s.split_once('.') {
                    Some((_, rest)) if !rest.is_empty() => Some(rest),
                    _ => None,
                },
                // The root has no SOA we could get: nothing vouches for
                // the denial.
                None => return DnssecStatus::Bogus,
            };
        }
    }

    /// A server failure, unless the upstream says (RFC 8914 EDE on its
    /// SERVFAIL) that DNSSEC validation failed: then [`DnsError::Bogus`].
    async fn server_failure(
        &self,
        name: QueryName,
        rtype: RecordType,
        question: (&Name, HRecordType),
        detail: String,
    ) -> DnsError {
        for server in &self.nameservers {
            let codes = ede::probe(*server, question.0, question.1, self.timeout).await;
            if let Some(first) = codes.into_iter().next() {
                return DnsError::Bogus {
                    name,
                    rtype,
                    ede: first,
                };
            }
        }
        DnsError::ServerFailure {
            name,
            rtype,
            detail,
        }
    }

    async fn map_error(
        &self,
        name: &QueryName,
        rtype: RecordType,
        question: (&Name, HRecordType),
        e: ResolveError,
    ) -> DnsError {
        let name = name.clone();
        let proto = match e.kind() {
            ResolveErrorKind::Proto(p) => p,
            _ => {
                return self
                    .server_failure(name, rtype, question, e.to_string())
                    .await;
            }
        };
        match proto.kind() {
            ProtoErrorKind::NoRecordsFound { response_code, .. } => {
                // A negative answer that reached us under validation passed
                // hickory's NSEC/NSEC3 check (a failed one is an Nsec
                // error); whether it is authentic or provably insecure is
                // the status of the zone it came from.
                let dnssec = if self.verdict != Verdict::None {
                    self.zone_status(&name).await
                } else {
                    DnssecStatus::NotValidated
                };
                match *response_code {
                    ResponseCode::NXDomain => DnsError::NxDomain { name, dnssec },
                    ResponseCode::NoError => DnsError::NoData {
                        name,
                        rtype,
                        dnssec,
                    },
                    other => {
                        self.server_failure(name, rtype, question, format!("response code {other}"))
                            .await
                    }
                }
            }
            ProtoErrorKind::Nsec { proof, .. } => DnsError::NoData {
                name,
                rtype,
                dnssec: self.status(*proof),
            },
            ProtoErrorKind::Timeout => DnsError::Timeout { name, rtype },
            _ => {
                self.server_failure(name, rtype, question, proto.to_string())
                    .await
            }
        }
    }
}

/// Why [`HickoryResolver::lookup_records`] has no answer: an error of ours,
/// or hickory's, still to be mapped (which may take more queries).
enum Failure {
    Dns(DnsError),
    Resolve(Name, HRecordType, ResolveError),
}

impl From<DnsError> for Failure {
    fn from(e: DnsError) -> Self {
        Failure::Dns(e)
    }
}

/// The RFC 2308 §5 negative TTL of an NXDOMAIN or no-data answer: the
/// smaller of the SOA record's TTL and its MINIMUM field. Hickory drops its
/// own `negative_ttl` for a validated NXDOMAIN (it does not cache those),
/// so it is taken from the SOA when there is one. `None` without an SOA:
/// such an answer is not cached.
fn negative_ttl(e: &ResolveError) -> Option<u32> {
    let ResolveErrorKind::Proto(p) = e.kind() else {
        return None;
    };
    let ProtoErrorKind::NoRecordsFound {
        soa, negative_ttl, ..
    } = p.kind()
    else {
        return None;
    };
    soa.as_ref()
        .map(|soa| soa.ttl().min(soa.data().minimum()))
        .or(*negative_ttl)
}

fn owner(name: &Name) -> Result<QueryName, String> {
    let text = name.to_ascii();
    QueryName::parse(&text).map_err(|e| e.to_string())
}

impl DnsResolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a DnsName) -> DnsFuture<'a, MxRecord> {
        Box::pin(async move {
            let q = QueryName::from(domain);
            self.lookup(&q, RecordType::Mx, |d| match d {
                RData::MX(mx) => {
                    let exchange = mx.exchange();
                    Some(if exchange.is_root() {
                        Ok(MxRecord {
                            preference: mx.preference(),
                            exchange: None,
                        })
                    } else {
                        DnsName::parse(&exchange.to_ascii())
                            .map(|h| MxRecord {
                                preference: mx.preference(),
                                exchange: Some(h),
                            })
                            .map_err(|e| e.to_string())
                    })
                }
                _ => None,
            })
            .await
        })
    }

    fn txt<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TxtRecord> {
        Box::pin(async move {
            self.lookup(name, RecordType::Txt, |d| match d {
                RData::TXT(t) => Some(Ok(TxtRecord {
                    strings: t.txt_data().iter().map(|s| s.to_vec()).collect(),
                })),
                _ => None,
            })
            .await
        })
    }

    fn tlsa<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TlsaRecord> {
        Box::pin(async move {
            self.lookup(name, RecordType::Tlsa, |d| match d {
                RData::TLSA(t) => Some(Ok(TlsaRecord {
                    usage: u8::from(t.cert_usage()).into(),
                    selector: u8::from(t.selector()).into(),
                    matching: u8::from(t.matching()).into(),
                    data: t.cert_data().to_vec(),
                })),
                _ => None,
            })
            .await
        })
    }

    fn a<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv4Addr> {
        Box::pin(async move {
            let q = QueryName::from(host);
            self.lookup(&q, RecordType::A, |d| match d {
                RData::A(a) => Some(Ok(a.0)),
                _ => None,
            })
            .await
        })
    }

    fn aaaa<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv6Addr> {
        Box::pin(async move {
            let q = QueryName::from(host);
            self.lookup(&q, RecordType::Aaaa, |d| match d {
                RData::AAAA(a) => Some(Ok(a.0)),
                _ => None,
            })
            .await
        })
    }
}
