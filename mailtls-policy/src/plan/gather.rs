//! Gathering [`DomainFacts`] through a [`DnsResolver`]: MX lookup, CNAME
//! expansion of each host, authentic address records, TLSA at
//! `_25._tcp.HOST` (RFC 7672 §2.2).

use std::net::IpAddr;
use std::sync::Arc;

use mailtls_core::DnsName;

use super::facts::{AddressFacts, DomainFacts, HostFacts, MxFacts, TlsaFacts};
use crate::dns::{DnsError, DnsResolver, DnssecStatus, QueryName};
use crate::mta_sts::MtaStsPolicy;

/// The SMTP port the TLSA records are looked up for.
const SMTP_PORT: u16 = 25;

/// Looks up everything [`super::plan`] needs for `domain`. `mta_sts` is the
/// policy the caller's MTA-STS cache holds for the domain, if any.
pub async fn gather(
    resolver: &dyn DnsResolver,
    domain: &DnsName,
    mta_sts: Option<Arc<MtaStsPolicy>>,
) -> DomainFacts {
    let mx = match resolver.mx(domain).await {
        Ok(answer) if answer.dnssec == DnssecStatus::Bogus => MxFacts::LookupFailed {
            bogus: true,
            detail: format!("MX records of {domain} are bogus"),
        },
        Ok(answer) => {
            let exchanges: Vec<(u16, DnsName)> = answer
                .records
                .iter()
                .filter_map(|r| r.exchange.clone().map(|e| (r.preference, e)))
                .collect();
            if exchanges.is_empty() {
                // Only `MX 0 .` records: RFC 7505 null MX.
                MxFacts::NullMx
            } else {
                let mut hosts = Vec::with_capacity(exchanges.len());
                for (preference, name) in exchanges {
                    hosts.push(host_facts(resolver, preference, name, answer.dnssec).await);
                }
                MxFacts::Hosts {
                    dnssec: answer.dnssec,
                    hosts,
                }
            }
        }
        Err(DnsError::NxDomain { .. }) => MxFacts::NoSuchDomain,
        Err(DnsError::NoData { dnssec, .. }) => MxFacts::Implicit {
            dnssec,
            host: host_facts(resolver, 0, domain.clone(), dnssec).await,
        },
        Err(e) => MxFacts::LookupFailed {
            // A validating upstream's SERVFAIL with a DNSSEC EDE is bogus,
            // not a transient failure.
            bogus: e.is_bogus(),
            detail: e.to_string(),
        },
    };
    DomainFacts {
        domain: domain.clone(),
        mx,
        mta_sts,
    }
}

async fn host_facts(
    resolver: &dyn DnsResolver,
    preference: u16,
    name: DnsName,
    mx_dnssec: DnssecStatus,
) -> HostFacts {
    let addresses = address_facts(resolver, &name).await;
    let tlsa = match &addresses {
        AddressFacts::Found {
            canonical, dnssec, ..
        } if mx_dnssec.is_authentic() && dnssec.is_authentic() => {
            tlsa_facts(resolver, &name, canonical).await
        }
        _ => TlsaFacts::NotApplicable,
    };
    HostFacts {
        preference,
        name,
        addresses,
        tlsa,
    }
}

async fn address_facts(resolver: &dyn DnsResolver, host: &DnsName) -> AddressFacts {
    let v4 = resolver.a(host).await;
    let v6 = resolver.aaaa(host).await;
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut dnssec: Option<DnssecStatus> = None;
    let mut canonical: Option<DnsName> = None;
    let mut errors = Vec::new();
    let mut temporary = false;
    let mut merge = |status: DnssecStatus| {
        dnssec = Some(dnssec.map_or(status, |d| d.combine(status)));
    };
    match v4 {
        Ok(a) => {
            merge(a.dnssec);
            canonical = Some(a.canonical_name.host().clone());
            addresses.extend(a.records.into_iter().map(IpAddr::V4));
        }
        Err(e) => {
            if let Some(s) = e.denial_status() {
                merge(s);
            }
            temporary |= e.is_temporary();
            errors.push(e.to_string());
        }
    }
    match v6 {
        Ok(a) => {
            merge(a.dnssec);
            canonical.get_or_insert_with(|| a.canonical_name.host().clone());
            addresses.extend(a.records.into_iter().map(IpAddr::V6));
        }
        Err(e) => {
            if let Some(s) = e.denial_status() {
                merge(s);
            }
            temporary |= e.is_temporary();
            errors.push(e.to_string());
        }
    }
    match (canonical, dnssec) {
        (Some(canonical), Some(dnssec)) if !addresses.is_empty() => AddressFacts::Found {
            canonical,
            dnssec,
            addresses,
        },
        _ => AddressFacts::Failed {
            temporary,
            detail: errors.join("; "),
        },
    }
}

/// RFC 7672 §2.2.3: TLSA records are looked up at the CNAME-expanded host
/// first, then at the original MX name.
async fn tlsa_facts(resolver: &dyn DnsResolver, name: &DnsName, canonical: &DnsName) -> TlsaFacts {
    let mut bases = vec![canonical];
    if canonical != name {
        bases.push(name);
    }
    let mut last = TlsaFacts::NotApplicable;
    for base in bases {
        let query = QueryName::tlsa(SMTP_PORT, base);
        match resolver.tlsa(&query).await {
            Ok(answer) => {
                return TlsaFacts::Records {
                    base: base.clone(),
                    dnssec: answer.dnssec,
                    records: answer.records,
                };
            }
            Err(e) => match e.denial_status() {
                Some(DnssecStatus::Bogus) => {
                    return TlsaFacts::Failed {
                        bogus: true,
                        detail: e.to_string(),
                    };
                }
                Some(dnssec) => last = TlsaFacts::Absent { dnssec },
                None => {
                    return TlsaFacts::Failed {
                        bogus: e.is_bogus(),
                        detail: e.to_string(),
                    };
                }
            },
        }
    }
    last
}
