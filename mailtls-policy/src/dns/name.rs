//! Owner names for DNS queries.
//!
//! A [`DnsName`] is a host name: it refuses underscores, because no host may
//! carry one. The names this crate queries often do (`_mta-sts.example.com`,
//! `_25._tcp.mx.example.com`, `_smtp._tls.example.com`), so queries take a
//! [`QueryName`]: a host name with optional underscore-prefixed service labels
//! in front.

use std::fmt;

use mailtls_core::DnsName;

/// Why a string cannot be a query name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryNameError {
    /// The host part is not a host name.
    #[error("{input:?} is not a DNS query name: {source}")]
    Host {
        /// The offending input.
        input: String,
        /// Why the host part was refused.
        source: mailtls_core::NameError,
    },
    /// A service label (`_x`) is empty, too long or holds a character other
    /// than letters, digits, `-` and `_`.
    #[error("{input:?} has an invalid service label {label:?}")]
    ServiceLabel {
        /// The offending input.
        input: String,
        /// The label.
        label: String,
    },
    /// The whole name is longer than 253 octets.
    #[error("{input:?} is longer than 253 octets")]
    TooLong {
        /// The offending input.
        input: String,
    },
}

/// A canonical DNS owner name: zero or more leading service labels that start
/// with `_` (lowercase), then a [`DnsName`]. No trailing root dot.
///
/// ```
/// use mailtls_core::DnsName;
/// use mailtls_policy::dns::QueryName;
///
/// let host = DnsName::parse("Example.COM").unwrap();
/// let q = QueryName::with_service(&["_mta-sts"], &host).unwrap();
/// assert_eq!(q.as_str(), "_mta-sts.example.com");
/// assert_eq!(q.host(), &host);
/// assert!(QueryName::parse("_25._tcp.mx.example.com").is_ok());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryName {
    full: Box<str>,
    host: DnsName,
}

impl QueryName {
    /// Parses a name such as `_25._tcp.mx.example.com` or `mx.example.com`.
    pub fn parse(input: &str) -> Result<Self, QueryNameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        let mut service = Vec::new();
        let mut rest = trimmed;
        while rest.starts_with('_') {
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            service.push(label);
            rest = tail;
        }
        let host = DnsName::parse(rest).map_err(|source| QueryNameError::Host {
            input: input.to_owned(),
            source,
        })?;
        Self::build(input, &service, host)
    }

    /// Puts service labels (each starting with `_`) in front of a host name.
    pub fn with_service(labels: &[&str], host: &DnsName) -> Result<Self, QueryNameError> {
        let input = format!("{}.{}", labels.join("."), host);
        Self::build(&input, labels, host.clone())
    }

    /// The name of the TLSA records for a TCP service (RFC 6698 §3,
    /// RFC 7672 §2.2.3): `_PORT._tcp.HOST`.
    pub fn tlsa(port: u16, host: &DnsName) -> Self {
        let full = format!("_{port}._tcp.{host}");
        QueryName {
            full: full.into_boxed_str(),
            host: host.clone(),
        }
    }

    fn build(input: &str, service: &[&str], host: DnsName) -> Result<Self, QueryNameError> {
        let mut full = String::new();
        for label in service {
            let ok = label.len() > 1
                && label.len() <= 63
                && label.starts_with('_')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(QueryNameError::ServiceLabel {
                    input: input.to_owned(),
                    label: (*label).to_owned(),
                });
            }
            full.push_str(&label.to_ascii_lowercase());
            full.push('.');
        }
        full.push_str(host.as_str());
        if full.len() > 253 {
            return Err(QueryNameError::TooLong {
                input: input.to_owned(),
            });
        }
        Ok(QueryName {
            full: full.into_boxed_str(),
            host,
        })
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The host part (everything after the service labels).
    pub fn host(&self) -> &DnsName {
        &self.host
    }

    /// Whether the name has service labels in front of the host.
    pub fn has_service_labels(&self) -> bool {
        self.full.len() != self.host.as_str().len()
    }
}

impl From<DnsName> for QueryName {
    fn from(host: DnsName) -> Self {
        QueryName {
            full: host.as_str().into(),
            host,
        }
    }
}

impl From<&DnsName> for QueryName {
    fn from(host: &DnsName) -> Self {
        Self::from(host.clone())
    }
}

impl fmt::Display for QueryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for QueryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryName({:?})", &*self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_labels_and_normalises_the_host() {
        let q = QueryName::parse("_MTA-STS.Example.COM.").unwrap();
        assert_eq!(q.as_str(), "_mta-sts.example.com");
        assert_eq!(q.host().as_str(), "example.com");
        assert!(q.has_service_labels());
        let t = QueryName::tlsa(25, &DnsName::parse("mx.example.com").unwrap());
        assert_eq!(t.as_str(), "_25._tcp.mx.example.com");
        assert_eq!(QueryName::parse("_25._tcp.mx.example.com").unwrap(), t);
        assert!(!QueryName::from(DnsName::parse("a.example").unwrap()).has_service_labels());
    }

    #[test]
    fn refuses_bad_names() {
        assert!(QueryName::parse("_.example.com").is_err());
        assert!(QueryName::parse("_a b.example.com").is_err());
        assert!(QueryName::parse("_x.1.2.3.4").is_err());
        assert!(QueryName::parse("a._x.example").is_err());
        assert!(QueryName::parse("").is_err());
    }
}
