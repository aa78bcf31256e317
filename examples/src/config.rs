//! The server's configuration: one TOML file over embedded defaults, checked
//! as a whole before anything binds or writes.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use mailtls_core::{DnsName, MailSecurity, NamePattern, WebSecurity};
use mailtls_policy::mta_sts::{MAX_MAX_AGE, MtaStsPolicy, PolicyMode};
use mailtls_policy::own_domain::{Publication, PublishError};
use serde::Deserialize;

/// The embedded default configuration, also the reference for every key.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default-config.toml");

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse, or a key has the wrong type or is unknown.
    #[error("config {origin}: {source}")]
    Parse {
        /// The file, or "embedded defaults".
        origin: String,
        /// The parser's message (it names the key and line).
        #[source]
        source: toml::de::Error,
    },
    /// A value parsed but is not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The dotted key, such as `smtp.security` or `users[1].name`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: names, address, data directory, limits.
    pub server: ServerSection,
    /// `[tls]`: certificates.
    pub tls: TlsSection,
    /// `[smtp]`: SMTP for incoming mail (port-25 style).
    pub smtp: ListenerSection,
    /// `[submission]`: message submission with STARTTLS (port-587 style).
    pub submission: ListenerSection,
    /// `[submissions]`: message submission over implicit TLS (port-465 style).
    pub submissions: ListenerSection,
    /// `[imap]`: IMAP with STARTTLS (port-143 style).
    pub imap: ListenerSection,
    /// `[imaps]`: IMAP over implicit TLS (port-993 style).
    pub imaps: ListenerSection,
    /// `[pop3]`: POP3 with STLS (port-110 style).
    pub pop3: ListenerSection,
    /// `[pop3s]`: POP3 over implicit TLS (port-995 style).
    pub pop3s: ListenerSection,
    /// `[web]`: the status page over HTTP and/or HTTPS.
    pub web: WebSection,
    /// `[[users]]`: accounts for SMTP AUTH, IMAP LOGIN and POP3 USER/PASS.
    pub users: Vec<User>,
    /// `[mta_sts]` and `[tls_rpt]`: what this server publishes for its own
    /// domains (RFC 8461 policy over HTTPS, RFC 8460 report address).
    pub mta_sts: MtaStsSection,
    /// `[outbound]`: delivery of mail for other domains (queue, MX or
    /// relay host, MTA-STS, DANE, REQUIRETLS, TLS-RPT counting).
    pub outbound: crate::outbound::OutboundSection,
    /// `[tlsrpt_reports]`: the daily TLS reports this server sends.
    pub tlsrpt_reports: crate::tlsrpt_run::TlsRptReportsSection,
    /// `[smime]`: the S/MIME gateway on the message path.
    pub smime: crate::smime_path::SmimeSection,
    /// `[acme]`: certificates from an ACME CA; `None` unless `acme.enabled`.
    pub acme: Option<crate::acme_run::AcmeSection>,
    /// `[store]`: where state shared between nodes lives (the data
    /// directory, or PostgreSQL).
    pub store: crate::store::StoreSection,
}

/// `[mta_sts]` with `[tls_rpt]`, validated into one [`Publication`] per
/// domain (policy file, `_mta-sts` and `_smtp._tls` records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsSection {
    /// One per domain in `mta_sts.domains`, in order; empty: nothing is
    /// published.
    pub publications: Vec<Publication>,
}

impl MtaStsSection {
    /// The publication whose policy host (`mta-sts.DOMAIN`) is `host`
    /// (case-insensitive, without a port).
    pub fn for_policy_host(&self, host: &str) -> Option<&Publication> {
        let prefix = "mta-sts.";
        let domain = host
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| host.get(prefix.len()..))?;
        let domain = DnsName::parse(domain).ok()?;
        self.publications.iter().find(|p| p.domain == domain)
    }

    /// The host names the policies are served on (`mta-sts.DOMAIN`).
    pub fn policy_hosts(&self) -> Vec<DnsName> {
        self.publications
            .iter()
            .filter_map(|p| DnsName::parse(&format!("mta-sts.{}", p.domain)).ok())
            .collect()
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSection {
    /// The main host name.
    pub hostname: DnsName,
    /// More names (or wildcards) to make test certificates for.
    pub names: Vec<NamePattern>,
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// Data directory (CA, certificates, spool).
    pub data_dir: PathBuf,
    /// Recipient domains accepted without authentication; `None`: derived
    /// from the host names (see [`Config::local_domains`]).
    pub local_domains: Option<Vec<DnsName>>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Concurrent connections per listener.
    pub max_connections: usize,
    /// Concurrent connections per listener from one client address.
    pub max_connections_per_address: usize,
    /// Failed-login limits (`auth_failures_per_address`,
    /// `auth_failures_per_account`, `auth_failure_window_seconds`).
    pub auth_limits: crate::auth::AuthLimits,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSection {
    /// Certificate directory; `None`: `<data_dir>/certs`.
    pub cert_dir: Option<PathBuf>,
    /// Make a test CA and certificates for names no certificate covers.
    pub make_test_certificates: bool,
    /// Also make an RSA certificate for the main host name.
    pub rsa_certificate: bool,
    /// Watch the certificate directory and reload on change.
    pub watch: bool,
    /// CAs whose client certificates authorise relaying over SMTP.
    pub client_ca_file: Option<PathBuf>,
}

/// One mail listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSection {
    /// Whether it listens at all.
    pub enabled: bool,
    /// TCP port; 0 lets the system pick one.
    pub port: u16,
    /// How it treats TLS.
    pub security: MailSecurity,
    /// SMTP listeners only: what a bare LF or bare CR in a command or in
    /// message data gets (`bare_newline`). Always [`BareNewline::Reject`]
    /// for IMAP and POP3, which do not read it.
    pub bare_newline: BareNewline,
}

/// What an SMTP listener does with a line ended by a bare LF, or holding a
/// bare CR (`[smtp] bare_newline`). Either way the message data ends only
/// at `<CRLF>.<CRLF>`, so a look-alike end such as `<LF>.<LF>` cannot end
/// one message and start a second (SMTP smuggling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareNewline {
    /// `reject` (the default): the client gets `521 5.5.2 ... Error: bare
    /// <LF> received` (or `<CR>`) and is disconnected, as Postfix does
    /// with `smtpd_forbid_bare_newline = reject`; nothing is stored.
    #[default]
    Reject,
    /// `normalize`: a bare LF or bare CR ends a line and is stored as CRLF
    /// (Postfix's `normalize` also keeps bare CR as it came; turning it into
    /// CRLF here means no later hop can read it as a line end differently).
    Normalize,
}

impl std::str::FromStr for BareNewline {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reject" => Ok(BareNewline::Reject),
            "normalize" | "normalise" => Ok(BareNewline::Normalize),
            _ => Err(format!("unknown value {s:?} (reject or normalize)")),
        }
    }
}

impl std::fmt::Display for BareNewline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BareNewline::Reject => "reject",
            BareNewline::Normalize => "normalize",
        })
    }
}

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSection {
    /// Whether the web listeners run at all.
    pub enabled: bool,
    /// Which of HTTP and HTTPS listen and what HTTP does.
    /// `RedirectToHttps { https_port: 0 }` redirects to the port the HTTPS
    /// listener actually got (what `redirect-to-https` without a port means).
    pub mode: WebSecurity,
    /// Plain HTTP port.
    pub http_port: u16,
    /// HTTPS port.
    pub https_port: u16,
    /// Client networks that see the status page (`/`, `/status.json`)
    /// without a password; default: loopback only (`127.0.0.0/8`, `::1`).
    pub status_allowed_networks: Vec<ipnet::IpNet>,
    /// `[[users]]` names that may see the status page from anywhere else,
    /// with HTTP basic authentication over HTTPS (never over plain HTTP).
    pub status_users: Vec<String>,
}

/// One account.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password (plain text: this is a reference and test server).
    pub password: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Which listener a [`ListenerSection`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailListener {
    /// `[smtp]`.
    Smtp,
    /// `[submission]`.
    Submission,
    /// `[submissions]`.
    Submissions,
    /// `[imap]`.
    Imap,
    /// `[imaps]`.
    Imaps,
    /// `[pop3]`.
    Pop3,
    /// `[pop3s]`.
    Pop3s,
}

impl MailListener {
    /// Every mail listener, in start order.
    pub const ALL: [MailListener; 7] = [
        MailListener::Smtp,
        MailListener::Submission,
        MailListener::Submissions,
        MailListener::Imap,
        MailListener::Imaps,
        MailListener::Pop3,
        MailListener::Pop3s,
    ];

    /// The config section name.
    pub fn name(self) -> &'static str {
        match self {
            MailListener::Smtp => "smtp",
            MailListener::Submission => "submission",
            MailListener::Submissions => "submissions",
            MailListener::Imap => "imap",
            MailListener::Imaps => "imaps",
            MailListener::Pop3 => "pop3",
            MailListener::Pop3s => "pop3s",
        }
    }
}

impl MailListener {
    /// Whether it speaks SMTP (`smtp`, `submission`, `submissions`).
    pub fn is_smtp(self) -> bool {
        matches!(
            self,
            MailListener::Smtp | MailListener::Submission | MailListener::Submissions
        )
    }

    /// The config key of its port, for error messages.
    pub fn port_key(self) -> &'static str {
        match self {
            MailListener::Smtp => "smtp.port",
            MailListener::Submission => "submission.port",
            MailListener::Submissions => "submissions.port",
            MailListener::Imap => "imap.port",
            MailListener::Imaps => "imaps.port",
            MailListener::Pop3 => "pop3.port",
            MailListener::Pop3s => "pop3s.port",
        }
    }
}

impl Config {
    /// The embedded defaults (the test user included).
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::from_toml_str_with_origin(DEFAULT_CONFIG_TOML, "embedded defaults")
    }

    /// Parses and validates a config file's text; missing keys take the
    /// embedded defaults, except `[[users]]`.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str_with_origin(text, "text")
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str_with_origin(&text, &path.display().to_string())
    }

    fn from_toml_str_with_origin(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source,
        })?;
        let config = raw.into_config()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types cannot: distinct ports, sane limits, unique users.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_message_size == 0 {
            return Err(invalid("server.max_message_size", "must be at least 1"));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if self.server.max_connections_per_address == 0 {
            return Err(invalid(
                "server.max_connections_per_address",
                "must be at least 1",
            ));
        }
        if self.server.auth_limits.window.is_zero() {
            return Err(invalid(
                "server.auth_failure_window_seconds",
                "must be at least 1",
            ));
        }
        let mut ports: HashMap<u16, String> = HashMap::new();
        let mut claim = |key: String, port: u16| -> Result<(), ConfigError> {
            if port == 0 {
                return Ok(());
            }
            if let Some(other) = ports.insert(port, key.clone()) {
                return Err(invalid(key, format!("port {port} is also used by {other}")));
            }
            Ok(())
        };
        for which in MailListener::ALL {
            let l = self.listener(which);
            if l.enabled {
                claim(format!("{}.port", which.name()), l.port)?;
            }
        }
        if self.web.enabled {
            if self.web.mode.listens_http() {
                claim("web.http_port".to_owned(), self.web.http_port)?;
            }
            if self.web.mode.listens_https() {
                claim("web.https_port".to_owned(), self.web.https_port)?;
            }
        }
        for (i, name) in self.web.status_users.iter().enumerate() {
            if !self.users.iter().any(|u| &u.name == name) {
                return Err(invalid(
                    format!("web.status_users[{i}]"),
                    format!("{name:?} is not a [[users]] name"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() || u.name.chars().any(|c| c.is_control() || c == ' ') {
                return Err(invalid(
                    format!("users[{i}].name"),
                    "must be non-empty, without spaces or control characters",
                ));
            }
            if u.password.is_empty() || u.password.chars().any(char::is_control) {
                return Err(invalid(
                    format!("users[{i}].password"),
                    "must be non-empty, without control characters",
                ));
            }
            if !seen.insert(u.name.as_str()) {
                return Err(invalid(
                    format!("users[{i}].name"),
                    format!("user {:?} is listed twice", u.name),
                ));
            }
        }
        Ok(())
    }

    /// The section of one mail listener.
    pub fn listener(&self, which: MailListener) -> &ListenerSection {
        match which {
            MailListener::Smtp => &self.smtp,
            MailListener::Submission => &self.submission,
            MailListener::Submissions => &self.submissions,
            MailListener::Imap => &self.imap,
            MailListener::Imaps => &self.imaps,
            MailListener::Pop3 => &self.pop3,
            MailListener::Pop3s => &self.pop3s,
        }
    }

    /// The section of one mail listener, to change it.
    pub fn listener_mut(&mut self, which: MailListener) -> &mut ListenerSection {
        match which {
            MailListener::Smtp => &mut self.smtp,
            MailListener::Submission => &mut self.submission,
            MailListener::Submissions => &mut self.submissions,
            MailListener::Imap => &mut self.imap,
            MailListener::Imaps => &mut self.imaps,
            MailListener::Pop3 => &mut self.pop3,
            MailListener::Pop3s => &mut self.pop3s,
        }
    }

    /// Sets every port to 0 so the system picks free ones (for tests and for
    /// running beside another instance).
    pub fn use_ephemeral_ports(&mut self) {
        for which in MailListener::ALL {
            self.listener_mut(which).port = 0;
        }
        self.web.http_port = 0;
        self.web.https_port = 0;
    }

    /// The certificate directory in effect.
    pub fn cert_dir(&self) -> PathBuf {
        self.tls
            .cert_dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("certs"))
    }

    /// Where the test CA lives.
    pub fn ca_dir(&self) -> PathBuf {
        self.server.data_dir.join("ca")
    }

    /// Where accepted messages are stored.
    pub fn spool_dir(&self) -> PathBuf {
        self.server.data_dir.join("spool")
    }

    /// The host name and every configured name, as patterns, plus the
    /// MTA-STS policy hosts (`mta-sts.DOMAIN`), which need a certificate
    /// too.
    pub fn all_names(&self) -> Vec<NamePattern> {
        let mut out = self.mail_names();
        for h in self.mta_sts.policy_hosts() {
            // A configured wildcard (`*.example.test`) already covers it.
            if !out.iter().any(|p| p.matches(&h)) {
                out.push(NamePattern::Exact(h));
            }
        }
        out
    }

    /// The host name and every configured name (not the policy hosts).
    fn mail_names(&self) -> Vec<NamePattern> {
        let mut out = vec![NamePattern::Exact(self.server.hostname.clone())];
        for n in &self.server.names {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    /// Recipient domains accepted without authentication: the configured
    /// list, or else every host name, each name's parent domain (a
    /// wildcard's base), and `localhost`.
    pub fn local_domains(&self) -> Vec<DnsName> {
        if let Some(list) = &self.server.local_domains {
            return list.clone();
        }
        let mut out: Vec<DnsName> = Vec::new();
        let mut add = |n: DnsName| {
            if !out.contains(&n) {
                out.push(n);
            }
        };
        // Policy hosts are web names, not mail domains.
        for p in self.mail_names() {
            match p {
                NamePattern::Exact(n) => {
                    if n.label_count() > 2
                        && let Some(parent) = n.parent().and_then(|p| DnsName::parse(p).ok())
                    {
                        add(parent);
                    }
                    add(n);
                }
                NamePattern::Wildcard(base) => add(base),
            }
        }
        if let Ok(l) = DnsName::parse("localhost") {
            add(l);
        }
        out
    }
}

// The file's shape. Strings are parsed into typed values afterwards so every
// error can name its key.

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    tls: RawTls,
    smtp: Option<RawListener>,
    submission: Option<RawListener>,
    submissions: Option<RawListener>,
    imap: Option<RawListener>,
    imaps: Option<RawListener>,
    pop3: Option<RawListener>,
    pop3s: Option<RawListener>,
    web: RawWeb,
    users: Vec<User>,
    mta_sts: RawMtaSts,
    tls_rpt: RawTlsRpt,
    outbound: crate::outbound::config::RawOutbound,
    tlsrpt_reports: crate::tlsrpt_run::config::RawTlsRptReports,
    smime: crate::smime_path::config::RawSmime,
    acme: crate::acme_run::config::RawAcme,
    store: crate::store::RawStore,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMtaSts {
    domains: Vec<String>,
    mode: String,
    mx: Option<Vec<String>>,
    max_age: u64,
}

impl Default for RawMtaSts {
    fn default() -> Self {
        RawMtaSts {
            domains: vec!["example.test".into()],
            mode: "testing".into(),
            mx: None,
            max_age: 604_800,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTlsRpt {
    rua: Vec<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    hostname: String,
    names: Vec<String>,
    bind: String,
    data_dir: PathBuf,
    local_domains: Option<Vec<String>>,
    max_message_size: usize,
    max_connections: usize,
    max_connections_per_address: usize,
    auth_failures_per_address: u32,
    auth_failures_per_account: u32,
    auth_failure_window_seconds: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            hostname: "mail.example.test".into(),
            names: vec![
                "imap.example.test".into(),
                "pop.example.test".into(),
                "*.example.test".into(),
            ],
            bind: "127.0.0.1".into(),
            data_dir: PathBuf::from("./data"),
            local_domains: None,
            max_message_size: 10 * 1024 * 1024,
            max_connections: 256,
            max_connections_per_address: 32,
            auth_failures_per_address: 10,
            auth_failures_per_account: 30,
            auth_failure_window_seconds: 900,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTls {
    cert_dir: Option<PathBuf>,
    make_test_certificates: bool,
    rsa_certificate: bool,
    watch: bool,
    client_ca_file: Option<PathBuf>,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            cert_dir: None,
            make_test_certificates: true,
            rsa_certificate: true,
            watch: true,
            client_ca_file: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawListener {
    enabled: Option<bool>,
    port: Option<u16>,
    security: Option<String>,
    bare_newline: Option<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWeb {
    enabled: bool,
    mode: String,
    http_port: u16,
    https_port: u16,
    status_allowed_networks: Vec<String>,
    status_users: Vec<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            enabled: true,
            mode: "redirect-to-https".into(),
            http_port: 8080,
            https_port: 8443,
            status_allowed_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            status_users: Vec::new(),
        }
    }
}

/// A network in CIDR notation, or one address (a host route).
fn parse_network(key: &str, s: &str) -> Result<ipnet::IpNet, ConfigError> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    s.parse::<ipnet::IpNet>().map(|n| n.trunc()).map_err(|_| {
        invalid(
            key,
            format!("{s:?} is not a network (ADDRESS/PREFIX) or an address"),
        )
    })
}

fn listener(
    raw: Option<RawListener>,
    which: MailListener,
    port: u16,
    security: MailSecurity,
) -> Result<ListenerSection, ConfigError> {
    let raw = raw.unwrap_or_default();
    let security = match raw.security {
        Some(s) => s
            .parse::<MailSecurity>()
            .map_err(|e| invalid(format!("{}.security", which.name()), e.to_string()))?,
        None => security,
    };
    let key = || format!("{}.bare_newline", which.name());
    let bare_newline = match raw.bare_newline {
        None => BareNewline::default(),
        Some(_) if !which.is_smtp() => {
            return Err(invalid(key(), "only SMTP listeners read this key"));
        }
        Some(s) => s.parse::<BareNewline>().map_err(|e| invalid(key(), e))?,
    };
    Ok(ListenerSection {
        enabled: raw.enabled.unwrap_or(true),
        port: raw.port.unwrap_or(port),
        security,
        bare_newline,
    })
}

impl RawConfig {
    fn into_config(self) -> Result<Config, ConfigError> {
        let s = self.server;
        let hostname =
            DnsName::parse(&s.hostname).map_err(|e| invalid("server.hostname", e.to_string()))?;
        let names = s
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                NamePattern::parse(n)
                    .map_err(|e| invalid(format!("server.names[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bind = s
            .bind
            .parse::<IpAddr>()
            .map_err(|_| invalid("server.bind", format!("{:?} is not an IP address", s.bind)))?;
        let local_domains = s
            .local_domains
            .map(|list| {
                list.iter()
                    .enumerate()
                    .map(|(i, d)| {
                        DnsName::parse(d).map_err(|e| {
                            invalid(format!("server.local_domains[{i}]"), e.to_string())
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let mode = parse_web_mode(&self.web.mode)?;
        let mta_sts = mta_sts_section(&self.mta_sts, &self.tls_rpt, &hostname)?;
        let tlsrpt_reports = self.tlsrpt_reports.into_section(&hostname)?;
        let acme = self.acme.into_section(&hostname)?;
        let store = self.store.into_section(&hostname)?;
        use MailSecurity::{ImplicitTls, StartTlsOffered, StartTlsRequired};
        Ok(Config {
            server: ServerSection {
                hostname,
                names,
                bind,
                data_dir: s.data_dir,
                local_domains,
                max_message_size: s.max_message_size,
                max_connections: s.max_connections,
                max_connections_per_address: s.max_connections_per_address,
                auth_limits: crate::auth::AuthLimits {
                    per_address: s.auth_failures_per_address,
                    per_account: s.auth_failures_per_account,
                    window: std::time::Duration::from_secs(s.auth_failure_window_seconds),
                },
            },
            tls: TlsSection {
                cert_dir: self.tls.cert_dir,
                make_test_certificates: self.tls.make_test_certificates,
                rsa_certificate: self.tls.rsa_certificate,
                watch: self.tls.watch,
                client_ca_file: self.tls.client_ca_file,
            },
            smtp: listener(self.smtp, MailListener::Smtp, 2525, StartTlsOffered)?,
            submission: listener(
                self.submission,
                MailListener::Submission,
                2587,
                StartTlsRequired,
            )?,
            submissions: listener(
                self.submissions,
                MailListener::Submissions,
                2465,
                ImplicitTls,
            )?,
            imap: listener(self.imap, MailListener::Imap, 2143, StartTlsRequired)?,
            imaps: listener(self.imaps, MailListener::Imaps, 2993, ImplicitTls)?,
            pop3: listener(self.pop3, MailListener::Pop3, 2110, StartTlsRequired)?,
            pop3s: listener(self.pop3s, MailListener::Pop3s, 2995, ImplicitTls)?,
            web: WebSection {
                enabled: self.web.enabled,
                mode,
                http_port: self.web.http_port,
                https_port: self.web.https_port,
                status_allowed_networks: self
                    .web
                    .status_allowed_networks
                    .iter()
                    .enumerate()
                    .map(|(i, n)| parse_network(&format!("web.status_allowed_networks[{i}]"), n))
                    .collect::<Result<Vec<_>, _>>()?,
                status_users: self.web.status_users,
            },
            users: self.users,
            mta_sts,
            outbound: crate::outbound::config::from_raw(self.outbound)?,
            tlsrpt_reports,
            smime: self.smime.into_section()?,
            acme,
            store,
        })
    }
}

fn parse_policy_mode(s: &str) -> Result<PolicyMode, ConfigError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "enforce" => Ok(PolicyMode::Enforce),
        "testing" => Ok(PolicyMode::Testing),
        "none" => Ok(PolicyMode::None),
        _ => Err(invalid(
            "mta_sts.mode",
            format!("unknown MTA-STS mode {s:?} (enforce, testing or none)"),
        )),
    }
}

/// Builds one publication per domain, checking every value on the way
/// so that errors name their key.
fn mta_sts_section(
    raw: &RawMtaSts,
    rpt: &RawTlsRpt,
    hostname: &DnsName,
) -> Result<MtaStsSection, ConfigError> {
    let mode = parse_policy_mode(&raw.mode)?;
    let mx = match &raw.mx {
        // Default: the server itself is the MX.
        None => vec![NamePattern::Exact(hostname.clone())],
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                NamePattern::parse(m)
                    .map_err(|e| invalid(format!("mta_sts.mx[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if mx.is_empty() && mode != PolicyMode::None {
        return Err(invalid(
            "mta_sts.mx",
            format!("a policy in mode {mode} needs at least one MX pattern"),
        ));
    }
    // RFC 8461 §3.2: max_age is at most 31557600; 0 would make every
    // sender refetch on every message.
    let max_age = u32::try_from(raw.max_age)
        .ok()
        .filter(|a| (1..=MAX_MAX_AGE).contains(a))
        .ok_or_else(|| {
            invalid(
                "mta_sts.max_age",
                format!("{} is not between 1 and {MAX_MAX_AGE} seconds", raw.max_age),
            )
        })?;
    let mut publications = Vec::new();
    for (i, d) in raw.domains.iter().enumerate() {
        let key = format!("mta_sts.domains[{i}]");
        let domain = DnsName::parse(d).map_err(|e| invalid(key.clone(), e.to_string()))?;
        if publications
            .iter()
            .any(|p: &Publication| p.domain == domain)
        {
            return Err(invalid(key, format!("domain {domain} is listed twice")));
        }
        let policy = MtaStsPolicy::new(mode, mx.clone(), max_age);
        let mut publication = Publication::new(domain, policy);
        if !rpt.rua.is_empty() {
            publication = publication.with_rua(rpt.rua.clone()).map_err(|e| {
                let index = match &e {
                    PublishError::BadRua(bad) => rpt.rua.iter().position(|r| r == bad),
                    _ => None,
                };
                let key =
                    index.map_or_else(|| "tls_rpt.rua".to_owned(), |i| format!("tls_rpt.rua[{i}]"));
                invalid(key, e.to_string())
            })?;
        }
        publications.push(publication);
    }
    if publications.is_empty()
        && let Some((i, _)) = rpt.rua.iter().enumerate().next()
    {
        return Err(invalid(
            format!("tls_rpt.rua[{i}]"),
            "a TLS-RPT address needs a domain in mta_sts.domains",
        ));
    }
    Ok(MtaStsSection { publications })
}

/// `redirect-to-https` without a port means "this server's HTTPS port",
/// which `WebSecurity`'s own parser would read as 443.
fn parse_web_mode(s: &str) -> Result<WebSecurity, ConfigError> {
    let word = s.trim().to_ascii_lowercase();
    if word == "redirect-to-https" || word == "redirect" {
        return Ok(WebSecurity::RedirectToHttps { https_port: 0 });
    }
    let mode = s
        .parse::<WebSecurity>()
        .map_err(|e| invalid("web.mode", e.to_string()))?;
    if mode == (WebSecurity::RedirectToHttps { https_port: 0 }) {
        return Err(invalid("web.mode", "redirect port 0 is not a port"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_sts_defaults_and_policy_hosts() {
        let c = Config::embedded().unwrap();
        let [p] = c.mta_sts.publications.as_slice() else {
            panic!("{:?}", c.mta_sts)
        };
        assert_eq!(p.domain.as_str(), "example.test");
        assert_eq!(p.policy.mode(), PolicyMode::Testing);
        assert_eq!(
            p.policy.mx(),
            [NamePattern::parse("mail.example.test").unwrap()]
        );
        assert!(p.rua.is_empty());
        assert!(c.mta_sts.for_policy_host("MTA-STS.Example.Test").is_some());
        assert!(c.mta_sts.for_policy_host("mail.example.test").is_none());
        assert!(c.mta_sts.for_policy_host("mta-sts.other.example").is_none());
        // The policy host gets a certificate but is no mail domain.
        let host = DnsName::parse("mta-sts.example.test").unwrap();
        assert!(c.all_names().iter().any(|p| p.matches(&host)));
        let own = Config::from_toml_str("[server]\nnames = []\n").unwrap();
        assert!(own.all_names().contains(&NamePattern::Exact(host)));
        let domains: Vec<_> = c.local_domains().iter().map(ToString::to_string).collect();
        assert!(
            !domains.contains(&"mta-sts.example.test".to_owned()),
            "{domains:?}"
        );

        let c = Config::from_toml_str(
            "[mta_sts]\ndomains = [\"a.example\", \"b.example\"]\nmode = \"enforce\"\nmx = [\"*.mx.a.example\"]\nmax_age = 86400\n[tls_rpt]\nrua = [\"mailto:tlsrpt@a.example\"]\n",
        )
        .unwrap();
        assert_eq!(c.mta_sts.publications.len(), 2);
        let b = c.mta_sts.for_policy_host("mta-sts.b.example").unwrap();
        assert_eq!(b.policy.max_age(), 86400);
        assert_eq!(b.rua, ["mailto:tlsrpt@a.example"]);
        let none = Config::from_toml_str("[mta_sts]\ndomains = []\n").unwrap();
        assert!(none.mta_sts.publications.is_empty());
    }

    #[test]
    fn embedded_defaults_parse() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.server.hostname.as_str(), "mail.example.test");
        assert_eq!(c.smtp.port, 2525);
        assert_eq!(c.submissions.security, MailSecurity::ImplicitTls);
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.web.mode, WebSecurity::RedirectToHttps { https_port: 0 });
        let domains: Vec<_> = c.local_domains().iter().map(ToString::to_string).collect();
        assert!(domains.contains(&"example.test".to_owned()), "{domains:?}");
        assert!(domains.contains(&"localhost".to_owned()));
    }

    #[test]
    fn the_embedded_file_matches_the_built_in_defaults() {
        // The TOML file documents the defaults; the code applies them to
        // missing keys. They must not drift apart.
        let mut empty = Config::from_toml_str("").unwrap();
        let embedded = Config::embedded().unwrap();
        empty.users = embedded.users.clone();
        assert_eq!(empty, embedded);
    }

    #[test]
    fn a_partial_file_keeps_defaults_but_not_users() {
        let c = Config::from_toml_str("[smtp]\nport = 25\n").unwrap();
        assert_eq!(c.smtp.port, 25);
        assert_eq!(c.imap.port, 2143);
        assert!(c.users.is_empty());
    }

    #[test]
    fn limits_users_and_web_errors_name_the_key() {
        let cases = [
            (
                "[server]\nmax_message_size = 0\n",
                "server.max_message_size",
            ),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            (
                "[server]\nlocal_domains = [\"ok.example\", \"not a domain\"]\n",
                "server.local_domains[1]",
            ),
            (
                "[submission]\nsecurity = \"maybe\"\n",
                "submission.security",
            ),
            ("[pop3s]\nport = 2525\n", "pop3s.port"),
            ("[web]\nmode = \"redirect-to-https:0\"\n", "web.mode"),
            ("[web]\nhttps_port = 2525\n", "web.https_port"),
            (
                "[web]\nmode = \"http-only\"\nhttp_port = 2993\n",
                "web.http_port",
            ),
            (
                "[[users]]\nname = \"a b\"\npassword = \"x\"\n",
                "users[0].name",
            ),
            (
                "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"b\"\npassword = \"\"\n",
                "users[1].password",
            ),
        ];
        for (text, key) in cases {
            let e = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        // A disabled listener's port is nobody's: no clash.
        Config::from_toml_str("[imap]\nenabled = false\nport = 2525\n").unwrap();
        // Wrong types and unknown keys or sections: the parser's message
        // shows the offending line, key included.
        for (text, key) in [
            ("[smtp]\nport = \"x\"\n", "port"),
            ("[server]\nmax_connections = -1\n", "max_connections"),
            ("[tls]\nwatch = \"yes\"\n", "watch"),
            ("[bogus]\nx = 1\n", "bogus"),
            ("[web]\nenabled = true\nhttps = 1\n", "https"),
        ] {
            let e = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[smtp]\nsecurity = \"sometimes\"\n", "smtp.security"),
            ("[server]\nhostname = \"bad name!\"\n", "server.hostname"),
            (
                "[server]\nnames = [\"ok.example\", \"w*.example\"]\n",
                "server.names[1]",
            ),
            ("[server]\nbind = \"localhost\"\n", "server.bind"),
            ("[web]\nmode = \"sometimes\"\n", "web.mode"),
            ("[mta_sts]\nmode = \"strict\"\n", "mta_sts.mode"),
            (
                "[mta_sts]\nmx = [\"ok.example\", \"mx*.example\"]\n",
                "mta_sts.mx[1]",
            ),
            ("[mta_sts]\nmx = []\nmode = \"enforce\"\n", "mta_sts.mx"),
            ("[mta_sts]\nmax_age = 0\n", "mta_sts.max_age"),
            ("[mta_sts]\nmax_age = 31557601\n", "mta_sts.max_age"),
            (
                "[mta_sts]\ndomains = [\"a.example\", \"bad domain\"]\n",
                "mta_sts.domains[1]",
            ),
            (
                "[mta_sts]\ndomains = [\"a.example\", \"A.example\"]\n",
                "mta_sts.domains[1]",
            ),
            (
                "[tls_rpt]\nrua = [\"mailto:r@example.test\", \"http://x.example/\"]\n",
                "tls_rpt.rua[1]",
            ),
            (
                "[mta_sts]\ndomains = []\n[tls_rpt]\nrua = [\"mailto:r@x.example\"]\n",
                "tls_rpt.rua[0]",
            ),
            ("[imap]\nport = 2525\n", "imap.port"),
            (
                "[web]\nstatus_allowed_networks = [\"10.0.0.0/8\", \"10.1/16\"]\n",
                "web.status_allowed_networks[1]",
            ),
            (
                "[web]\nstatus_users = [\"nobody\"]\n",
                "web.status_users[0]",
            ),
            ("[smtp]\nbare_newline = \"accept\"\n", "smtp.bare_newline"),
            ("[imap]\nbare_newline = \"reject\"\n", "imap.bare_newline"),
            (
                "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"\n",
                "users[1].name",
            ),
        ];
        for (text, key) in cases {
            let e = Config::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
        let e = Config::from_toml_str("[mta_sts]\nmaxage = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("maxage"), "{e}");
        let e = Config::from_toml_str("[smtp]\nprot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot"), "{e}");
    }
}
