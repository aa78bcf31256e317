//! `[outbound]`: how the server delivers mail for recipients outside its
//! local domains (MX delivery with the mailtls-policy plan, or a relay host).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mailtls_core::DnsName;
use serde::Deserialize;

use crate::config::ConfigError;

/// `[outbound]` as written in the file (strings parsed afterwards so that
/// errors name their key).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawOutbound {
    enabled: bool,
    relay_host: Option<String>,
    relay_tls: String,
    relay_ca_file: Option<PathBuf>,
    dns_server: Option<String>,
    dnssec: bool,
    trust_anchor: Option<PathBuf>,
    mta_sts: bool,
    mta_sts_exceptions: Vec<String>,
    dane: bool,
    ca_file: Option<PathBuf>,
    mta_sts_fetch_port: u16,
    mx_port: u16,
    retry_seconds: Vec<u64>,
    max_age_seconds: u64,
    max_concurrent: usize,
    timeout_seconds: u64,
    delay_warning_seconds: u64,
    dsn_return_limit_bytes: usize,
}

impl Default for RawOutbound {
    fn default() -> Self {
        RawOutbound {
            enabled: false,
            relay_host: None,
            relay_tls: "starttls-required".into(),
            relay_ca_file: None,
            dns_server: None,
            dnssec: true,
            trust_anchor: None,
            mta_sts: true,
            mta_sts_exceptions: Vec::new(),
            dane: true,
            ca_file: None,
            mta_sts_fetch_port: 443,
            mx_port: 25,
            retry_seconds: vec![60, 300, 900, 3600, 14_400],
            max_age_seconds: 5 * 86_400,
            max_concurrent: 8,
            timeout_seconds: 60,
            delay_warning_seconds: 4 * 3600,
            dsn_return_limit_bytes: 1024 * 1024,
        }
    }
}

/// How the connection to a relay host is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS must succeed and the certificate must be valid for the
    /// relay's name (WebPKI, with `relay_ca_file` as extra roots).
    StartTlsRequired,
    /// STARTTLS when offered, certificate not checked; cleartext otherwise.
    StartTls,
    /// Never STARTTLS.
    None,
}

impl RelayTls {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls-required" => Some(Self::StartTlsRequired),
            "starttls" => Some(Self::StartTls),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Where a relay host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAddress {
    /// A host name, resolved through the outbound resolver.
    Name(DnsName),
    /// An IP address.
    Ip(IpAddr),
}

impl std::fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => write!(f, "{n}"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A relay host every outbound message goes to instead of the MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHost {
    /// The host.
    pub address: RelayAddress,
    /// The port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: RelayTls,
    /// Extra trusted roots (PEM) for `starttls-required`.
    pub ca_file: Option<PathBuf>,
}

/// `[outbound]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSection {
    /// Whether mail for other domains is queued and delivered. When off,
    /// every accepted message stays in the local spool (a pure sink).
    pub enabled: bool,
    /// Deliver everything through this host instead of the MX hosts.
    pub relay: Option<RelayHost>,
    /// The DNS server to ask; `None`: the system's resolvers.
    pub dns_server: Option<SocketAddr>,
    /// Whether answers are DNSSEC-validated (needed for DANE and for
    /// REQUIRETLS without MTA-STS).
    pub dnssec: bool,
    /// A zone-format DNSKEY file to validate from instead of the IANA root
    /// keys (a private test world).
    pub trust_anchor: Option<PathBuf>,
    /// Whether MTA-STS policies (RFC 8461) are applied.
    pub mta_sts: bool,
    /// Domains MTA-STS is not applied to (their policy is neither fetched
    /// nor enforced; DANE and the rest still apply). Reloaded on SIGHUP.
    pub mta_sts_exceptions: Vec<DnsName>,
    /// Whether DANE (RFC 7672) is applied.
    pub dane: bool,
    /// Extra trusted roots (PEM) for MX certificates and MTA-STS policy
    /// hosts, besides the built-in WebPKI roots. For tests.
    pub ca_file: Option<PathBuf>,
    /// The port MTA-STS policies are fetched from (443; tests change it).
    pub mta_sts_fetch_port: u16,
    /// The port MX hosts are connected to (25; tests change it).
    pub mx_port: u16,
    /// Waits between attempts; the last one repeats.
    pub retry: Vec<Duration>,
    /// How long a message may stay queued before it is returned.
    pub max_age: Duration,
    /// Deliveries in flight at once.
    pub max_concurrent: usize,
    /// Time allowed for each connection and each SMTP reply.
    pub timeout: Duration,
    /// After how long in the queue a message still not delivered to some
    /// recipient earns its sender one "delayed" DSN (`None`: never).
    pub delay_warning: Option<Duration>,
    /// A failure DSN returns the whole message up to this size, only its
    /// header section beyond.
    pub dsn_return_limit: usize,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: format!("outbound.{key}"),
        message: message.into(),
    }
}

/// Checks every value of `[outbound]`; errors name the key.
pub(crate) fn from_raw(raw: RawOutbound) -> Result<OutboundSection, ConfigError> {
    let relay = match &raw.relay_host {
        None => None,
        Some(text) => Some(parse_relay(text, &raw)?),
    };
    if raw.relay_host.is_none() && raw.relay_ca_file.is_some() {
        return Err(invalid("relay_ca_file", "needs outbound.relay_host"));
    }
    let dns_server = raw
        .dns_server
        .as_deref()
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    invalid(
                        "dns_server",
                        format!("{s:?} is not an IP address or IP:port"),
                    )
                })
        })
        .transpose()?;
    if raw.trust_anchor.is_some() && !raw.dnssec {
        return Err(invalid("trust_anchor", "needs outbound.dnssec = true"));
    }
    if raw.mta_sts_fetch_port == 0 {
        return Err(invalid("mta_sts_fetch_port", "must not be 0"));
    }
    if raw.mx_port == 0 {
        return Err(invalid("mx_port", "must not be 0"));
    }
    if raw.retry_seconds.is_empty() {
        return Err(invalid("retry_seconds", "needs at least one interval"));
    }
    if let Some(i) = raw.retry_seconds.iter().position(|&s| s == 0) {
        return Err(invalid(
            &format!("retry_seconds[{i}]"),
            "must be at least 1",
        ));
    }
    if raw.max_age_seconds == 0 {
        return Err(invalid("max_age_seconds", "must be at least 1"));
    }
    if raw.max_concurrent == 0 {
        return Err(invalid("max_concurrent", "must be at least 1"));
    }
    if raw.timeout_seconds == 0 {
        return Err(invalid("timeout_seconds", "must be at least 1"));
    }
    if raw.delay_warning_seconds >= raw.max_age_seconds {
        return Err(invalid(
            "delay_warning_seconds",
            format!(
                "{} is not below outbound.max_age_seconds ({}); 0 turns the warning off",
                raw.delay_warning_seconds, raw.max_age_seconds
            ),
        ));
    }
    let mut mta_sts_exceptions = Vec::with_capacity(raw.mta_sts_exceptions.len());
    for (i, d) in raw.mta_sts_exceptions.iter().enumerate() {
        let name = DnsName::parse(d)
            .map_err(|e| invalid(&format!("mta_sts_exceptions[{i}]"), e.to_string()))?;
        if !mta_sts_exceptions.contains(&name) {
            mta_sts_exceptions.push(name);
        }
    }
    Ok(OutboundSection {
        enabled: raw.enabled,
        mta_sts_exceptions,
        relay,
        dns_server,
        dnssec: raw.dnssec,
        trust_anchor: raw.trust_anchor,
        mta_sts: raw.mta_sts,
        dane: raw.dane,
        ca_file: raw.ca_file,
        mta_sts_fetch_port: raw.mta_sts_fetch_port,
        mx_port: raw.mx_port,
        retry: raw
            .retry_seconds
            .iter()
            .map(|&s| Duration::from_secs(s))
            .collect(),
        max_age: Duration::from_secs(raw.max_age_seconds),
        max_concurrent: raw.max_concurrent,
        timeout: Duration::from_secs(raw.timeout_seconds),
        delay_warning: (raw.delay_warning_seconds > 0)
            .then(|| Duration::from_secs(raw.delay_warning_seconds)),
        dsn_return_limit: raw.dsn_return_limit_bytes,
    })
}

fn parse_relay(text: &str, raw: &RawOutbound) -> Result<RelayHost, ConfigError> {
    let bad = || {
        invalid(
            "relay_host",
            format!("{text:?} is not HOST:PORT (IPv6 as [ADDR]:PORT)"),
        )
    };
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => RelayAddress::Ip(ip),
        Err(_) => RelayAddress::Name(
            DnsName::parse(host).map_err(|e| invalid("relay_host", e.to_string()))?,
        ),
    };
    let tls = RelayTls::parse(&raw.relay_tls).ok_or_else(|| {
        invalid(
            "relay_tls",
            format!(
                "unknown value {:?} (starttls-required, starttls or none)",
                raw.relay_tls
            ),
        )
    })?;
    Ok(RelayHost {
        address,
        port,
        tls,
        ca_file: raw.relay_ca_file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OutboundSection, ConfigError> {
        let raw: RawOutbound = toml::from_str(text).unwrap();
        from_raw(raw)
    }

    #[test]
    fn defaults_and_relay() {
        let d = parse("").unwrap();
        assert!(!d.enabled);
        assert_eq!(d.retry.len(), 5);
        assert_eq!(d.max_age, Duration::from_secs(432_000));
        assert_eq!(d.delay_warning, Some(Duration::from_secs(14_400)));
        assert_eq!(d.dsn_return_limit, 1_048_576);
        assert_eq!(
            parse("delay_warning_seconds = 0\n").unwrap().delay_warning,
            None
        );
        let r = parse("relay_host = \"[::1]:2525\"\nrelay_tls = \"none\"\n").unwrap();
        let relay = r.relay.unwrap();
        assert_eq!(relay.address, RelayAddress::Ip("::1".parse().unwrap()));
        assert_eq!(relay.port, 2525);
        assert_eq!(relay.tls, RelayTls::None);
        let r = parse("relay_host = \"Smart.Example:587\"\n").unwrap();
        assert_eq!(
            r.relay.unwrap().address,
            RelayAddress::Name(DnsName::parse("smart.example").unwrap())
        );
        let d = parse("dns_server = \"127.0.0.1\"\n").unwrap();
        assert_eq!(d.dns_server, Some("127.0.0.1:53".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("relay_host = \"nohost\"\n", "outbound.relay_host"),
            ("relay_host = \"a.example:0\"\n", "outbound.relay_host"),
            ("relay_host = \"bad name!:25\"\n", "outbound.relay_host"),
            (
                "relay_host = \"a.example:25\"\nrelay_tls = \"maybe\"\n",
                "outbound.relay_tls",
            ),
            ("relay_ca_file = \"x.pem\"\n", "outbound.relay_ca_file"),
            ("dns_server = \"localhost\"\n", "outbound.dns_server"),
            (
                "dnssec = false\ntrust_anchor = \"a.key\"\n",
                "outbound.trust_anchor",
            ),
            ("retry_seconds = []\n", "outbound.retry_seconds"),
            ("retry_seconds = [60, 0]\n", "outbound.retry_seconds[1]"),
            ("max_age_seconds = 0\n", "outbound.max_age_seconds"),
            ("max_concurrent = 0\n", "outbound.max_concurrent"),
            ("mx_port = 0\n", "outbound.mx_port"),
            ("max_age_seconds = 3600\n", "outbound.delay_warning_seconds"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
