//! `[acme]`: certificates for the server's names from an ACME (RFC 8555)
//! CA, read from the file and checked so that every error names its key.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mailtls_core::{DnsName, KeyType, NamePattern};
use serde::Deserialize;

use crate::config::{Config, ConfigError};

/// Let's Encrypt's production directory: the default `acme.directory`.
pub const DEFAULT_DIRECTORY: &str = mailtls_acme::client::LETS_ENCRYPT_PRODUCTION;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The certificate key to order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeKeyType {
    /// ECDSA P-256 (`ecdsa-p256`, the default).
    EcdsaP256,
    /// RSA 2048 (`rsa2048`), for clients that know no ECDSA.
    Rsa2048,
}

impl AcmeKeyType {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeKeyType::EcdsaP256 => "ecdsa-p256",
            AcmeKeyType::Rsa2048 => "rsa2048",
        }
    }

    /// The maker's key type.
    pub fn key_type(self) -> KeyType {
        match self {
            AcmeKeyType::EcdsaP256 => KeyType::EcdsaP256,
            AcmeKeyType::Rsa2048 => KeyType::Rsa2048,
        }
    }
}

/// dns-01 through RFC 2136 dynamic updates to the zone's primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns01Settings {
    /// The primary server that takes the updates (and is asked whether
    /// the record is served before the CA is told).
    pub server: SocketAddr,
    /// The zone the `_acme-challenge` records go into.
    pub zone: DnsName,
    /// A TSIG key file (BIND `key "name" { algorithm hmac-sha256; secret
    /// "..."; };` as `tsig-keygen` writes it, or one line
    /// `hmac-sha256:NAME:SECRET` as `nsupdate -y` takes it); `None`:
    /// unsigned updates.
    pub tsig_key_file: Option<PathBuf>,
}

/// How the CA checks that the server controls its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// http-01 (RFC 8555 §8.3), answered by the plain HTTP listener. The CA
    /// connects to port 80, so `web.http_port` must be 80 (or forwarded).
    Http01,
    /// tls-alpn-01 (RFC 8737), answered by the HTTPS listener through the
    /// certificate resolver. The CA connects to port 443.
    TlsAlpn01,
    /// dns-01 (RFC 8555 §8.4) through an RFC 2136 server; the only one
    /// for wildcard names.
    Dns01(Dns01Settings),
}

impl AcmeChallenge {
    /// The challenge type, as ACME names it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
            AcmeChallenge::Dns01(_) => "dns-01",
        }
    }
}

/// `[acme]`, validated; present in [`Config`] only when `acme.enabled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSection {
    /// The CA's directory URL (`https://`).
    pub directory: String,
    /// Extra trusted roots (PEM) for HTTPS to the directory, on top of the
    /// public web roots (a test CA such as Pebble's).
    pub ca_file: Option<PathBuf>,
    /// Whether the operator agreed to the CA's terms of service (needed to
    /// create an account at a CA that has terms).
    pub agree_tos: bool,
    /// Account contacts (addresses, sent as `mailto:`).
    pub contact: Vec<String>,
    /// Who is mailed when a run fails.
    pub admin: String,
    /// The names to order; `None`: see [`AcmeSection::effective_names`].
    pub names: Option<Vec<NamePattern>>,
    /// The certificate key.
    pub key_type: AcmeKeyType,
    /// The challenge answered.
    pub challenge: AcmeChallenge,
    /// Renew this long before expiry, or earlier when the certificate's
    /// lifetime is short (then with a third of it left, half under ten
    /// days) or when the CA's renewal information (ARI) says so.
    pub renew_before: Duration,
    /// Ask the CA for renewal information (RFC 9773) where it offers it.
    pub use_ari: bool,
    /// Longest time between two checks.
    pub check_interval: Duration,
    /// Retries of one request after `badNonce` (with back-off, see
    /// `mailtls_acme::client::bad_nonce_delay`).
    pub bad_nonce_retries: u32,
    /// External account binding (RFC 8555 §7.3.4) for a CA that needs it:
    /// the key id and the file holding the MAC key.
    pub eab: Option<EabSettings>,
    /// Prefer the chain up to the issuer with this common name, among
    /// those the CA offers.
    pub preferred_chain: Option<String>,
}

/// `acme.eab_kid` and `acme.eab_hmac_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EabSettings {
    /// The key id the CA gave.
    pub kid: String,
    /// A file holding the base64url MAC key (read at start; keep it 0600).
    pub hmac_key_file: PathBuf,
}

impl AcmeSection {
    /// The names in effect: `acme.names`, or else the host name, every
    /// `server.names` entry and the MTA-STS policy hosts (their
    /// certificate must be publicly trusted for senders to fetch the
    /// policy); wildcards only with dns-01, the one challenge that can
    /// prove them.
    pub fn effective_names(&self, config: &Config) -> Vec<NamePattern> {
        if let Some(names) = &self.names {
            return names.clone();
        }
        let dns01 = matches!(self.challenge, AcmeChallenge::Dns01(_));
        let mut names: Vec<NamePattern> = config
            .all_names()
            .into_iter()
            .filter(|n| dns01 || !n.is_wildcard())
            .collect();
        // A policy host left out of all_names() because a wildcard covers
        // it still needs its own name once the wildcard is dropped.
        for host in config.mta_sts.policy_hosts() {
            if !names.iter().any(|n| n.matches(&host)) {
                names.push(NamePattern::Exact(host));
            }
        }
        names
    }

    /// The contacts in effect (`acme.contact`, or else the admin address),
    /// as `mailto:` URIs.
    pub fn contact_uris(&self) -> Vec<String> {
        let list = if self.contact.is_empty() {
            std::slice::from_ref(&self.admin)
        } else {
            self.contact.as_slice()
        };
        list.iter().map(|a| format!("mailto:{a}")).collect()
    }

    /// Checks what depends on other sections: the listener the challenge
    /// needs must be there.
    pub fn check_against(&self, config: &Config) -> Result<(), ConfigError> {
        let web = &config.web;
        match self.challenge {
            AcmeChallenge::Http01 if !(web.enabled && web.mode.listens_http()) => Err(invalid(
                "acme.challenge",
                "http-01 is answered by the plain HTTP listener: needs web.enabled and a \
                 web.mode with HTTP (http-only, http-and-https or redirect-to-https)",
            )),
            AcmeChallenge::TlsAlpn01 if !(web.enabled && web.mode.listens_https()) => Err(invalid(
                "acme.challenge",
                "tls-alpn-01 is answered by the HTTPS listener: needs web.enabled and a \
                     web.mode with HTTPS",
            )),
            _ if self.effective_names(config).is_empty() => Err(invalid(
                "acme.names",
                "no name to order (the defaults had only wildcards, which need dns-01)",
            )),
            _ => Ok(()),
        }
    }
}

/// The file's shape of `[acme]`.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAcme {
    enabled: bool,
    directory: String,
    ca_file: Option<PathBuf>,
    agree_tos: bool,
    contact: Vec<String>,
    admin: Option<String>,
    names: Option<Vec<String>>,
    key_type: String,
    challenge: String,
    dns_server: Option<String>,
    dns_zone: Option<String>,
    tsig_key_file: Option<PathBuf>,
    renew_before_days: u32,
    use_ari: bool,
    check_interval_secs: u64,
    bad_nonce_retries: u32,
    eab_kid: Option<String>,
    eab_hmac_key_file: Option<PathBuf>,
    preferred_chain: Option<String>,
}

impl Default for RawAcme {
    fn default() -> Self {
        RawAcme {
            enabled: false,
            directory: DEFAULT_DIRECTORY.to_owned(),
            ca_file: None,
            agree_tos: false,
            contact: Vec::new(),
            admin: None,
            names: None,
            key_type: "ecdsa-p256".into(),
            challenge: "http-01".into(),
            dns_server: None,
            dns_zone: None,
            tsig_key_file: None,
            renew_before_days: 30,
            use_ari: true,
            check_interval_secs: 12 * 3600,
            bad_nonce_retries: mailtls_acme::client::DEFAULT_BAD_NONCE_RETRIES,
            eab_kid: None,
            eab_hmac_key_file: None,
            preferred_chain: None,
        }
    }
}

/// A mailbox `local@domain` with a valid domain: what `mailto:` and an
/// envelope recipient need.
fn check_address(key: &str, addr: &str) -> Result<String, ConfigError> {
    let addr = addr.trim();
    let ok = addr.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && local
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'(' | b')' | b','))
            && DnsName::parse(domain).is_ok()
    });
    if ok {
        Ok(addr.to_owned())
    } else {
        Err(invalid(
            key,
            format!("{addr:?} is not a mail address (local@domain)"),
        ))
    }
}

impl RawAcme {
    /// Validates the section; `None` when `acme.enabled` is off (every key
    /// is still checked, so a mistake shows before it is switched on).
    pub(crate) fn into_section(
        self,
        hostname: &DnsName,
    ) -> Result<Option<AcmeSection>, ConfigError> {
        let directory = self.directory.trim().to_owned();
        let has_host = directory
            .strip_prefix("https://")
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|host| !host.is_empty());
        if !has_host {
            return Err(invalid(
                "acme.directory",
                format!("{directory:?} is not an https:// URL (RFC 8555 §6.1 requires HTTPS)"),
            ));
        }
        let contact = self
            .contact
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c = c.strip_prefix("mailto:").unwrap_or(c);
                check_address(&format!("acme.contact[{i}]"), c)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let admin = match &self.admin {
            Some(a) => check_address("acme.admin", a)?,
            None => format!("postmaster@{hostname}"),
        };
        let key_type = match self.key_type.trim().to_ascii_lowercase().as_str() {
            "ecdsa-p256" => AcmeKeyType::EcdsaP256,
            "rsa2048" => AcmeKeyType::Rsa2048,
            other => {
                return Err(invalid(
                    "acme.key_type",
                    format!("unknown key type {other:?} (ecdsa-p256 or rsa2048)"),
                ));
            }
        };
        let challenge_word = self.challenge.trim().to_ascii_lowercase();
        let challenge = match challenge_word.as_str() {
            "http-01" => AcmeChallenge::Http01,
            "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
            "dns-01" => AcmeChallenge::Dns01(self.dns01_settings()?),
            other => {
                return Err(invalid(
                    "acme.challenge",
                    format!("unknown challenge {other:?} (http-01, tls-alpn-01 or dns-01)"),
                ));
            }
        };
        if !matches!(challenge, AcmeChallenge::Dns01(_)) {
            for (key, set) in [
                ("acme.dns_server", self.dns_server.is_some()),
                ("acme.dns_zone", self.dns_zone.is_some()),
                ("acme.tsig_key_file", self.tsig_key_file.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        key,
                        "applies only with acme.challenge = \"dns-01\"",
                    ));
                }
            }
        }
        let names = match &self.names {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "acme.names",
                    "an empty list orders nothing; leave the key out for the defaults",
                ));
            }
            Some(list) => {
                let mut out: Vec<NamePattern> = Vec::new();
                for (i, n) in list.iter().enumerate() {
                    let key = format!("acme.names[{i}]");
                    let p =
                        NamePattern::parse(n).map_err(|e| invalid(key.clone(), e.to_string()))?;
                    if p.is_wildcard() && !matches!(challenge, AcmeChallenge::Dns01(_)) {
                        return Err(invalid(
                            key,
                            format!("the wildcard {p} can only be proved with dns-01"),
                        ));
                    }
                    if out.contains(&p) {
                        return Err(invalid(key, format!("{p} is listed twice")));
                    }
                    out.push(p);
                }
                Some(out)
            }
        };
        if !(1..=365).contains(&self.renew_before_days) {
            return Err(invalid(
                "acme.renew_before_days",
                format!("{} is not between 1 and 365", self.renew_before_days),
            ));
        }
        if !(1..=7 * 86_400).contains(&self.check_interval_secs) {
            return Err(invalid(
                "acme.check_interval_secs",
                format!(
                    "{} is not between 1 and 604800 (a week)",
                    self.check_interval_secs
                ),
            ));
        }
        if self.bad_nonce_retries > 100 {
            return Err(invalid(
                "acme.bad_nonce_retries",
                format!("{} is more than 100", self.bad_nonce_retries),
            ));
        }
        let eab = match (self.eab_kid, self.eab_hmac_key_file) {
            (None, None) => None,
            (Some(kid), Some(hmac_key_file)) if !kid.trim().is_empty() => Some(EabSettings {
                kid: kid.trim().to_owned(),
                hmac_key_file,
            }),
            (Some(_), Some(_)) => return Err(invalid("acme.eab_kid", "is empty")),
            (Some(_), None) => {
                return Err(invalid(
                    "acme.eab_hmac_key_file",
                    "acme.eab_kid needs the file holding the MAC key the CA gave",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "acme.eab_kid",
                    "acme.eab_hmac_key_file needs the key id the CA gave with it",
                ));
            }
        };
        let preferred_chain = match self.preferred_chain {
            Some(cn) if cn.trim().is_empty() => {
                return Err(invalid(
                    "acme.preferred_chain",
                    "is empty; leave it out for the CA's default chain",
                ));
            }
            other => other.map(|cn| cn.trim().to_owned()),
        };
        if !self.enabled {
            return Ok(None);
        }
        Ok(Some(AcmeSection {
            directory,
            ca_file: self.ca_file,
            agree_tos: self.agree_tos,
            contact,
            admin,
            names,
            key_type,
            challenge,
            renew_before: Duration::from_secs(u64::from(self.renew_before_days) * 86_400),
            use_ari: self.use_ari,
            check_interval: Duration::from_secs(self.check_interval_secs),
            bad_nonce_retries: self.bad_nonce_retries,
            eab,
            preferred_chain,
        }))
    }

    fn dns01_settings(&self) -> Result<Dns01Settings, ConfigError> {
        let server = self.dns_server.as_deref().ok_or_else(|| {
            invalid(
                "acme.dns_server",
                "dns-01 needs the RFC 2136 server (IP or IP:PORT) that takes updates",
            )
        })?;
        let server = server
            .parse::<SocketAddr>()
            .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| {
                invalid(
                    "acme.dns_server",
                    format!("{server:?} is not an IP address or IP:PORT"),
                )
            })?;
        let zone = self.dns_zone.as_deref().ok_or_else(|| {
            invalid(
                "acme.dns_zone",
                "dns-01 needs the zone the _acme-challenge records go into",
            )
        })?;
        let zone = DnsName::parse(zone).map_err(|e| invalid("acme.dns_zone", e.to_string()))?;
        Ok(Dns01Settings {
            server,
            zone,
            tsig_key_file: self.tsig_key_file.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn acme(text: &str) -> Result<Option<AcmeSection>, ConfigError> {
        let raw: RawAcme = toml::from_str(text).unwrap();
        raw.into_section(&DnsName::parse("mail.example.test").unwrap())
    }

    #[test]
    fn disabled_by_default_and_defaults_when_enabled() {
        assert_eq!(acme("").unwrap(), None);
        let s = acme("enabled = true\n").unwrap().unwrap();
        assert_eq!(s.directory, DEFAULT_DIRECTORY);
        assert_eq!(s.admin, "postmaster@mail.example.test");
        assert_eq!(s.contact_uris(), ["mailto:postmaster@mail.example.test"]);
        assert_eq!(s.challenge, AcmeChallenge::Http01);
        assert_eq!(s.key_type, AcmeKeyType::EcdsaP256);
        assert_eq!(s.renew_before, Duration::from_secs(30 * 86_400));
        assert!(s.use_ari);
        assert_eq!(s.names, None);
        assert_eq!(s.eab, None);
        assert_eq!(s.preferred_chain, None);
        assert_eq!(
            s.bad_nonce_retries,
            mailtls_acme::client::DEFAULT_BAD_NONCE_RETRIES
        );
        let s = acme(
            "enabled = true\neab_kid = \"kid-1\"\neab_hmac_key_file = \"eab.key\"\n\
             preferred_chain = \"ISRG Root X1\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.eab,
            Some(EabSettings {
                kid: "kid-1".into(),
                hmac_key_file: "eab.key".into()
            })
        );
        assert_eq!(s.preferred_chain.as_deref(), Some("ISRG Root X1"));
    }

    #[test]
    fn default_names_skip_wildcards_unless_dns01() {
        let mut config = Config::from_toml_str("[acme]\nenabled = true\n").unwrap();
        let section = config.acme.clone().unwrap();
        let names: Vec<String> = section
            .effective_names(&config)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "mail.example.test",
                "imap.example.test",
                "pop.example.test",
                "mta-sts.example.test"
            ]
        );
        config.acme = acme(
            "enabled = true\nchallenge = \"dns-01\"\ndns_server = \"127.0.0.1\"\ndns_zone = \"example.test\"\n",
        )
        .unwrap();
        let section = config.acme.clone().unwrap();
        let AcmeChallenge::Dns01(d) = &section.challenge else {
            panic!("{:?}", section.challenge)
        };
        assert_eq!(d.server, "127.0.0.1:53".parse().unwrap());
        assert!(
            section
                .effective_names(&config)
                .contains(&NamePattern::parse("*.example.test").unwrap())
        );
    }

    #[test]
    fn listener_the_challenge_needs_must_be_there() {
        let c = Config::from_toml_str("[acme]\nenabled = true\n[web]\nmode = \"https-only\"\n")
            .unwrap();
        let e = c.acme.as_ref().unwrap().check_against(&c).unwrap_err();
        assert!(e.to_string().contains("acme.challenge"), "{e}");
        let c = Config::from_toml_str(
            "[acme]\nenabled = true\nchallenge = \"tls-alpn-01\"\n[web]\nmode = \"https-only\"\n",
        )
        .unwrap();
        c.acme.as_ref().unwrap().check_against(&c).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("directory = \"http://ca.example/dir\"\n", "acme.directory"),
            ("directory = \"https:///dir\"\n", "acme.directory"),
            (
                "contact = [\"a@example.test\", \"nobody\"]\n",
                "acme.contact[1]",
            ),
            ("admin = \"root@bad domain\"\n", "acme.admin"),
            ("names = []\n", "acme.names"),
            ("names = [\"ok.example\", \"bad name\"]\n", "acme.names[1]"),
            ("names = [\"*.example.test\"]\n", "acme.names[0]"),
            ("names = [\"a.example\", \"A.example\"]\n", "acme.names[1]"),
            ("key_type = \"dsa\"\n", "acme.key_type"),
            ("challenge = \"smtp-01\"\n", "acme.challenge"),
            (
                "challenge = \"dns-01\"\ndns_zone = \"example.test\"\n",
                "acme.dns_server",
            ),
            (
                "challenge = \"dns-01\"\ndns_server = \"localhost\"\ndns_zone = \"example.test\"\n",
                "acme.dns_server",
            ),
            (
                "challenge = \"dns-01\"\ndns_server = \"127.0.0.1\"\n",
                "acme.dns_zone",
            ),
            ("dns_zone = \"example.test\"\n", "acme.dns_zone"),
            ("renew_before_days = 0\n", "acme.renew_before_days"),
            ("check_interval_secs = 0\n", "acme.check_interval_secs"),
            ("bad_nonce_retries = 1000\n", "acme.bad_nonce_retries"),
            ("eab_kid = \"k\"\n", "acme.eab_hmac_key_file"),
            ("eab_hmac_key_file = \"f\"\n", "acme.eab_kid"),
            (
                "eab_kid = \" \"\neab_hmac_key_file = \"f\"\n",
                "acme.eab_kid",
            ),
            ("preferred_chain = \"\"\n", "acme.preferred_chain"),
        ];
        for (text, key) in cases {
            let e = acme(&format!("enabled = true\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text:?}: {e}");
            // Checked even while switched off.
            let e = acme(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        let e = Config::from_toml_str("[acme]\nenabeld = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabeld"), "{e}");
    }
}
