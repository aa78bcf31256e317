//! DNS lookups with their DNSSEC status, behind a small trait.
//!
//! [`DnsResolver`] is what MTA-STS, DANE and the delivery plan ask. It comes
//! in two implementations: `HickoryResolver` (feature `hickory`:
//! hickory-resolver, optionally validating DNSSEC itself, pointed at the
//! system's or given name servers) and [`StaticResolver`] (scripted in memory, for tests and for embedders
//! that already have their answers). An embedder with its own resolver
//! implements the trait.
//!
//! Every [`Answer`] carries a [`DnssecStatus`] that tells "this resolver does
//! not validate" ([`DnssecStatus::NotValidated`]) apart from "validation
//! failed" ([`DnssecStatus::Bogus`]); every [`DnsError`] tells NXDOMAIN, no
//! data, server failure and timeout apart.

#[cfg(feature = "hickory")]
mod cache;
mod ede;
#[cfg(feature = "hickory")]
mod ede_probe;
mod error;
#[cfg(feature = "hickory")]
mod hickory;
mod name;
mod records;
mod static_resolver;
#[cfg(feature = "hickory")]
mod upstream;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

use mailtls_core::DnsName;

#[cfg(feature = "hickory")]
pub use cache::{DnsCacheConfig, DnsCacheStats};
pub use ede::ExtendedDnsError;
#[cfg(feature = "hickory")]
pub use error::DnsSetupError;
pub use error::{DnsError, RecordType};
#[cfg(feature = "hickory")]
pub use hickory::{HickoryResolver, HickoryResolverConfig, Validation};
pub use name::{QueryName, QueryNameError};
pub use records::{
    Answer, DnssecStatus, MxRecord, TlsaMatching, TlsaRecord, TlsaSelector, TlsaUsage, TxtRecord,
};
pub use static_resolver::{ScriptedFailure, StaticResolver, StaticResolverBuilder};

/// The future a [`DnsResolver`] method returns: boxed so the trait can be used
/// as `dyn DnsResolver`.
pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<Answer<T>, DnsError>> + Send + 'a>>;

/// The lookups outbound mail policy needs. Every method follows CNAMEs and
/// reports the chain in [`Answer::cname_chain`].
pub trait DnsResolver: Send + Sync {
    /// MX records of a domain.
    fn mx<'a>(&'a self, domain: &'a DnsName) -> DnsFuture<'a, MxRecord>;
    /// TXT records at a name (`_mta-sts.example.com`, `_smtp._tls.example.com`).
    fn txt<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TxtRecord>;
    /// TLSA records at a name (see [`QueryName::tlsa`]).
    fn tlsa<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TlsaRecord>;
    /// IPv4 addresses of a host.
    fn a<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv4Addr>;
    /// IPv6 addresses of a host.
    fn aaaa<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv6Addr>;
}

impl<R: DnsResolver + ?Sized> DnsResolver for std::sync::Arc<R> {
    fn mx<'a>(&'a self, domain: &'a DnsName) -> DnsFuture<'a, MxRecord> {
        (**self).mx(domain)
    }
    fn txt<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TxtRecord> {
        (**self).txt(name)
    }
    fn tlsa<'a>(&'a self, name: &'a QueryName) -> DnsFuture<'a, TlsaRecord> {
        (**self).tlsa(name)
    }
    fn a<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv4Addr> {
        (**self).a(host)
    }
    fn aaaa<'a>(&'a self, host: &'a DnsName) -> DnsFuture<'a, Ipv6Addr> {
        (**self).aaaa(host)
    }
}

/// The addresses of a host, IPv6 first, from a [`DnsResolver`]; NXDOMAIN or
/// no data for one family is not an error when the other has addresses.
pub async fn addresses<R: DnsResolver + ?Sized>(
    dns: &R,
    host: &DnsName,
) -> Result<Vec<IpAddr>, DnsError> {
    let (v6, v4) = (dns.aaaa(host).await, dns.a(host).await);
    let mut out: Vec<IpAddr> = Vec::new();
    let mut first_err = None;
    match v6 {
        Ok(a) => out.extend(a.records.into_iter().map(IpAddr::V6)),
        Err(e) => first_err = Some(e),
    }
    match v4 {
        Ok(a) => out.extend(a.records.into_iter().map(IpAddr::V4)),
        Err(e) => {
            first_err.get_or_insert(e);
        }
    }
    match (out.is_empty(), first_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}
