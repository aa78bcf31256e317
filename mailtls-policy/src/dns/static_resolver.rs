//! A resolver that answers from records given in code.
//!
//! Tests use it to script a DNS world (including DNSSEC verdicts, server
//! failures and timeouts); an embedder can use it for fixed routes.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError, RwLock};

use mailtls_core::DnsName;

use super::{
    Answer, DnsError, DnsFuture, DnsResolver, DnssecStatus, MxRecord, QueryName, QueryNameError,
    RecordType, TlsaRecord, TxtRecord,
};

/// How deep a CNAME chain may go before it counts as a loop.
const MAX_CNAME_DEPTH: usize = 8;

#[derive(Debug, Clone)]
enum Data {
    Mx(MxRecord),
    Txt(TxtRecord),
    Tlsa(TlsaRecord),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
}

/// A scripted failure for one name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptedFailure {
    /// Answer as if the server said SERVFAIL.
    ServerFailure,
    /// Answer as if no reply came.
    Timeout,
    /// Answer as a validating upstream does for bogus data: SERVFAIL with
    /// Extended DNS Error 6, "DNSSEC Bogus" (RFC 8914 §4.7).
    BogusServerFailure,
}

#[derive(Debug, Clone, Default)]
struct Zone {
    rrsets: HashMap<(QueryName, RecordType), Vec<Data>>,
    cnames: HashMap<QueryName, QueryName>,
    status: HashMap<QueryName, DnssecStatus>,
    failures: HashMap<(QueryName, RecordType), ScriptedFailure>,
    existing: HashSet<QueryName>,
    default_status: Option<DnssecStatus>,
    ttl: Option<u32>,
}

/// Builds a [`StaticResolver`]. Names are given as strings and checked when
/// [`build`](Self::build) runs, so a chain of calls stays readable; the first
/// bad name is the error.
#[derive(Debug, Clone, Default)]
pub struct StaticResolverBuilder {
    zone: Zone,
    error: Option<QueryNameError>,
}

impl StaticResolverBuilder {
    fn name(&mut self, name: &str) -> Option<QueryName> {
        match QueryName::parse(name) {
            Ok(n) => {
                self.zone.existing.insert(n.clone());
                Some(n)
            }
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn host(&mut self, name: &str) -> Option<DnsName> {
        match DnsName::parse(name) {
            Ok(n) => Some(n),
            Err(source) => {
                self.error.get_or_insert(QueryNameError::Host {
                    input: name.to_owned(),
                    source,
                });
                None
            }
        }
    }

    fn add(mut self, name: &str, rtype: RecordType, data: Data) -> Self {
        if let Some(n) = self.name(name) {
            self.zone.rrsets.entry((n, rtype)).or_default().push(data);
        }
        self
    }

    /// The DNSSEC status of every RRset and denial without its own status.
    /// Defaults to [`DnssecStatus::Insecure`], an unsigned world.
    pub fn default_status(mut self, status: DnssecStatus) -> Self {
        self.zone.default_status = Some(status);
        self
    }

    /// The TTL reported on every answer (default 300 s).
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.zone.ttl = Some(seconds);
        self
    }

    /// The DNSSEC status of everything at `name` (its RRsets and a denial
    /// of a type it lacks).
    pub fn status(mut self, name: &str, status: DnssecStatus) -> Self {
        if let Some(n) = self.name(name) {
            self.zone.status.insert(n, status);
        }
        self
    }

    /// An MX record.
    pub fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        match self.host(exchange) {
            Some(h) => self.add(
                domain,
                RecordType::Mx,
                Data::Mx(MxRecord {
                    preference,
                    exchange: Some(h),
                }),
            ),
            None => self,
        }
    }

    /// A null MX (RFC 7505).
    pub fn null_mx(self, domain: &str) -> Self {
        self.add(
            domain,
            RecordType::Mx,
            Data::Mx(MxRecord {
                preference: 0,
                exchange: None,
            }),
        )
    }

    /// A TXT record of one string.
    pub fn txt(self, name: &str, text: &str) -> Self {
        self.add(name, RecordType::Txt, Data::Txt(TxtRecord::from_text(text)))
    }

    /// A TXT record of several character-strings.
    pub fn txt_strings(self, name: &str, strings: &[&str]) -> Self {
        let record = TxtRecord {
            strings: strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
        };
        self.add(name, RecordType::Txt, Data::Txt(record))
    }

    /// A TLSA record.
    pub fn tlsa(self, name: &str, record: TlsaRecord) -> Self {
        self.add(name, RecordType::Tlsa, Data::Tlsa(record))
    }

    /// An A record.
    pub fn a(self, host: &str, addr: Ipv4Addr) -> Self {
        self.add(host, RecordType::A, Data::A(addr))
    }

    /// An AAAA record.
    pub fn aaaa(self, host: &str, addr: Ipv6Addr) -> Self {
        self.add(host, RecordType::Aaaa, Data::Aaaa(addr))
    }

    /// A CNAME from `alias` to `target`.
    pub fn cname(mut self, alias: &str, target: &str) -> Self {
        if let (Some(a), Some(t)) = (self.name(alias), self.name(target)) {
            self.zone.cnames.insert(a, t);
        }
        self
    }

    /// Makes lookups of `rtype` at `name` fail.
    pub fn fail(mut self, name: &str, rtype: RecordType, failure: ScriptedFailure) -> Self {
        if let Some(n) = self.name(name) {
            self.zone.failures.insert((n, rtype), failure);
        }
        self
    }

    /// Removes every record of `rtype` at `name` (the name keeps existing).
    pub fn remove(mut self, name: &str, rtype: RecordType) -> Self {
        if let Some(n) = self.name(name) {
            self.zone.rrsets.remove(&(n.clone(), rtype));
            self.zone.failures.remove(&(n, rtype));
        }
        self
    }

    /// Checks the names and makes the resolver.
    pub fn build(self) -> Result<StaticResolver, QueryNameError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(StaticResolver {
                zone: RwLock::new(self.zone),
                log: Mutex::new(Vec::new()),
            }),
        }
    }
}

/// A [`DnsResolver`] over records given in code.
///
/// ```
/// use mailtls_policy::dns::{DnsResolver, DnssecStatus, StaticResolver};
/// use mailtls_core::DnsName;
///
/// let dns = StaticResolver::builder()
///     .default_status(DnssecStatus::Authentic)
///     .mx("example.com", 10, "mx.example.com")
///     .build()
///     .unwrap();
/// let domain = DnsName::parse("example.com").unwrap();
/// let answer = tokio::runtime::Builder::new_current_thread()
///     .build()
///     .unwrap()
///     .block_on(dns.mx(&domain))
///     .unwrap();
/// assert!(answer.is_authentic());
/// ```
#[derive(Debug)]
pub struct StaticResolver {
    zone: RwLock<Zone>,
    log: Mutex<Vec<(QueryName, RecordType)>>,
}

impl StaticResolver {
    /// Starts an empty world.
    pub fn builder() -> StaticResolverBuilder {
        StaticResolverBuilder::default()
    }

    /// Changes the world in place (a test publishing a new policy id).
    pub fn edit(
        &self,
        change: impl FnOnce(StaticResolverBuilder) -> StaticResolverBuilder,
    ) -> Result<(), QueryNameError> {
        let mut zone = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        let builder = StaticResolverBuilder {
            zone: zone.clone(),
            error: None,
        };
        let changed = change(builder);
        if let Some(e) = changed.error {
            return Err(e);
        }
        *zone = changed.zone;
        Ok(())
    }

    /// Every query asked so far, in order.
    pub fn queries(&self) -> Vec<(QueryName, RecordType)> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lookup<T>(
        &self,
        query: QueryName,
        rtype: RecordType,
        pick: fn(&Data) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((query.clone(), rtype));
        let zone = self.zone.read().unwrap_or_else(PoisonError::into_inner);
        let default = zone.default_status.unwrap_or(DnssecStatus::Insecure);
        let status_of = |n: &QueryName| zone.status.get(n).copied().unwrap_or(default);
        let mut name = query.clone();
        let mut chain = Vec::new();
        let mut dnssec = DnssecStatus::Authentic;
        loop {
            if let Some(failure) = zone.failures.get(&(name.clone(), rtype)) {
                return Err(match failure {
                    ScriptedFailure::ServerFailure => DnsError::ServerFailure {
                        name: query,
                        rtype,
                        detail: "SERVFAIL (scripted)".to_owned(),
                    },
                    ScriptedFailure::Timeout => DnsError::Timeout { name: query, rtype },
                    ScriptedFailure::BogusServerFailure => DnsError::Bogus {
                        name: query,
                        rtype,
                        ede: crate::dns::ExtendedDnsError {
                            code: 6,
                            text: "scripted".to_owned(),
                        },
                    },
                });
            }
            dnssec = dnssec.combine(status_of(&name));
            if let Some(data) = zone.rrsets.get(&(name.clone(), rtype)) {
                let records: Vec<T> = data.iter().filter_map(pick).collect();
                if !records.is_empty() {
                    return Ok(Answer {
                        query,
                        canonical_name: name,
                        cname_chain: chain,
                        records,
                        dnssec,
                        ttl: zone.ttl.unwrap_or(300),
                    });
                }
            }
            if let Some(target) = zone.cnames.get(&name) {
                if chain.len() >= MAX_CNAME_DEPTH || chain.contains(target) {
                    return Err(DnsError::Malformed {
                        name: query,
                        rtype,
                        detail: format!("CNAME chain loops or is longer than {MAX_CNAME_DEPTH}"),
                    });
                }
                chain.push(target.clone());
                name = target.clone();
                continue;
            }
            return Err(if zone.existing.contains(&name) {
                DnsError::NoData {
                    name: query,
                    rtype,
                    dnssec,
                }
            } else {
                DnsError::NxDomain {
                    name: query,
                    dnssec,
                }
            });
        }
    }
}

impl DnsResolver for StaticResolver {
    fn mx<'a>(&'a self, domain: &'a DnsName) -> DnsFuture<'a, MxRecord> {
        let r = self.lookup(domain.into(), RecordType::Mx, |d| match d {
            Data::Mx(m) => Some(m.clone()),
            _ => None,
        });
        Box::pin(async move { r })
    }

    fn txt<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TxtRecord> {
        let r = self.lookup(name.clone(), RecordType::Txt, |d| match d {
            Data::Txt(t) => Some(t.clone()),
            _ => None,
        });
        Box::pin(async move { r })
    }

    fn tlsa<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TlsaRecord> {
        let r = self.lookup(name.clone(), RecordType::Tlsa, |d| match d {
            Data::Tlsa(t) => Some(t.clone()),
            _ => None,
        });
        Box::pin(async move { r })
    }

    fn a<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv4Addr> {
        let r = self.lookup(host.into(), RecordType::A, |d| match d {
            Data::A(a) => Some(*a),
            _ => None,
        });
        Box::pin(async move { r })
    }

    fn aaaa<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv6Addr> {
        let r = self.lookup(host.into(), RecordType::Aaaa, |d| match d {
            Data::Aaaa(a) => Some(*a),
            _ => None,
        });
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn host(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn follows_cnames_and_keeps_the_weakest_status() {
        let dns = StaticResolver::builder()
            .default_status(DnssecStatus::Authentic)
            .cname("mx.example.com", "mx.provider.example")
            .status("mx.provider.example", DnssecStatus::Insecure)
            .a("mx.provider.example", Ipv4Addr::LOCALHOST)
            .build()
            .unwrap();
        let ans = block(dns.a(&host("mx.example.com"))).unwrap();
        assert_eq!(ans.records, vec![Ipv4Addr::LOCALHOST]);
        assert_eq!(ans.canonical_name.as_str(), "mx.provider.example");
        assert_eq!(ans.cname_chain.len(), 1);
        assert_eq!(ans.dnssec, DnssecStatus::Insecure);
    }

    #[test]
    fn tells_nxdomain_nodata_servfail_and_timeout_apart() {
        let dns = StaticResolver::builder()
            .a("mx.example.com", Ipv4Addr::LOCALHOST)
            .fail("a.example", RecordType::Mx, ScriptedFailure::ServerFailure)
            .fail("b.example", RecordType::Mx, ScriptedFailure::Timeout)
            .build()
            .unwrap();
        assert!(matches!(
            block(dns.aaaa(&host("mx.example.com"))),
            Err(DnsError::NoData {
                rtype: RecordType::Aaaa,
                ..
            })
        ));
        assert!(matches!(
            block(dns.a(&host("nx.example.com"))),
            Err(DnsError::NxDomain { .. })
        ));
        assert!(matches!(
            block(dns.mx(&host("a.example"))),
            Err(DnsError::ServerFailure { .. })
        ));
        let t = block(dns.mx(&host("b.example"))).unwrap_err();
        assert!(t.is_temporary() && !t.is_negative_answer());
        assert_eq!(dns.queries().len(), 4);
    }

    #[test]
    fn detects_cname_loops_and_bad_names() {
        let dns = StaticResolver::builder()
            .cname("a.example", "b.example")
            .cname("b.example", "a.example")
            .build()
            .unwrap();
        assert!(matches!(
            block(dns.a(&host("a.example"))),
            Err(DnsError::Malformed { .. })
        ));
        assert!(
            StaticResolver::builder()
                .a("bad name", Ipv4Addr::LOCALHOST)
                .build()
                .is_err()
        );
    }

    #[test]
    fn edit_changes_the_world_in_place() {
        let dns = StaticResolver::builder()
            .txt("_mta-sts.example.com", "v=STSv1; id=1")
            .build()
            .unwrap();
        let q = QueryName::parse("_mta-sts.example.com").unwrap();
        dns.edit(|b| {
            b.remove("_mta-sts.example.com", RecordType::Txt)
                .txt("_mta-sts.example.com", "v=STSv1; id=2")
        })
        .unwrap();
        let ans = block(dns.txt(&q)).unwrap();
        assert_eq!(ans.records, vec![TxtRecord::from_text("v=STSv1; id=2")]);
    }
}
