//! Listener security modes for mail and web listeners, as types.
//!
//! A listener's mode decides what a client may do before TLS. The mail modes
//! cover SMTP (25/587/465), IMAP (143/993) and POP3 (110/995); the web modes
//! cover the four ways an HTTP(S) server can be set up. Both parse from and
//! print as short config words.

use std::fmt;
use std::str::FromStr;

/// Why a mode word was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct ModeParseError {
    /// Which kind of mode was being parsed.
    pub what: &'static str,
    /// The word given.
    pub value: String,
    /// The words accepted.
    pub expected: &'static str,
}

/// How a mail listener (SMTP, submission, IMAP, POP3) treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailSecurity {
    /// No TLS at all. For loopback tests only.
    Plain,
    /// STARTTLS (STLS for POP3) is offered; clients may continue in clear.
    /// The normal mode for SMTP on port 25.
    StartTlsOffered,
    /// STARTTLS is offered and must be done before authentication or mail
    /// transactions (submission on 587, IMAP on 143, POP3 on 110).
    StartTlsRequired,
    /// TLS from the first byte (465, 993, 995).
    ImplicitTls,
}

impl MailSecurity {
    /// Whether STARTTLS/STLS is advertised while the session is in clear.
    pub fn offers_starttls(self) -> bool {
        matches!(
            self,
            MailSecurity::StartTlsOffered | MailSecurity::StartTlsRequired
        )
    }

    /// Whether commands other than the pre-TLS basics (EHLO, STARTTLS, NOOP,
    /// QUIT, CAPABILITY...) must wait until TLS is up.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            MailSecurity::StartTlsRequired | MailSecurity::ImplicitTls
        )
    }

    /// Whether the TLS handshake starts as soon as the client connects.
    pub fn is_implicit(self) -> bool {
        self == MailSecurity::ImplicitTls
    }

    /// Whether any TLS is involved.
    pub fn uses_tls(self) -> bool {
        self != MailSecurity::Plain
    }
}

impl fmt::Display for MailSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailSecurity::Plain => "plain",
            MailSecurity::StartTlsOffered => "starttls",
            MailSecurity::StartTlsRequired => "starttls-required",
            MailSecurity::ImplicitTls => "implicit-tls",
        })
    }
}

impl FromStr for MailSecurity {
    type Err = ModeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plain" | "none" => Ok(MailSecurity::Plain),
            "starttls" | "starttls-offered" | "stls" => Ok(MailSecurity::StartTlsOffered),
            "starttls-required" | "require-starttls" => Ok(MailSecurity::StartTlsRequired),
            "implicit-tls" | "tls" | "ssl" | "implicit" => Ok(MailSecurity::ImplicitTls),
            _ => Err(ModeParseError {
                what: "mail security mode",
                value: s.to_owned(),
                expected: "plain, starttls, starttls-required, implicit-tls",
            }),
        }
    }
}

/// How the web listener pair (HTTP and HTTPS) is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebSecurity {
    /// Only plain HTTP is served.
    HttpOnly,
    /// Both HTTP and HTTPS serve the same content.
    HttpAndHttps,
    /// Only HTTPS is served; nothing listens for HTTP.
    HttpsOnly,
    /// HTTPS serves content; HTTP answers every request with a permanent
    /// redirect to the same path on HTTPS at `https_port`.
    RedirectToHttps {
        /// The port the redirect points to (443 is left out of the URL).
        https_port: u16,
    },
}

impl WebSecurity {
    /// Whether a plain HTTP listener is needed.
    pub fn listens_http(self) -> bool {
        !matches!(self, WebSecurity::HttpsOnly)
    }

    /// Whether an HTTPS listener is needed.
    pub fn listens_https(self) -> bool {
        !matches!(self, WebSecurity::HttpOnly)
    }

    /// What the plain HTTP listener does with a request for `host` and
    /// `path_and_query` (which must start with `/`; anything else is treated
    /// as `/`): `None` to serve it, or the `Location` of a 301/308 redirect.
    /// The host's own port, if any, is replaced by the HTTPS port; an IPv6
    /// literal keeps its brackets.
    pub fn redirect_location(self, host: &str, path_and_query: &str) -> Option<String> {
        let WebSecurity::RedirectToHttps { https_port } = self else {
            return None;
        };
        let bare = strip_port(host);
        let path = if path_and_query.starts_with('/') {
            path_and_query
        } else {
            "/"
        };
        Some(if https_port == 443 {
            format!("https://{bare}{path}")
        } else {
            format!("https://{bare}:{https_port}{path}")
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // "[::1]:8080" -> "[::1]"
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl fmt::Display for WebSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebSecurity::HttpOnly => f.write_str("http-only"),
            WebSecurity::HttpAndHttps => f.write_str("http-and-https"),
            WebSecurity::HttpsOnly => f.write_str("https-only"),
            WebSecurity::RedirectToHttps { https_port } => {
                write!(f, "redirect-to-https:{https_port}")
            }
        }
    }
}

impl FromStr for WebSecurity {
    type Err = ModeParseError;
    /// Accepts `http-only`, `http-and-https`, `https-only`, and
    /// `redirect-to-https` optionally followed by `:PORT` (default 443).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModeParseError {
            what: "web security mode",
            value: s.to_owned(),
            expected: "http-only, http-and-https, https-only, redirect-to-https[:PORT]",
        };
        let lower = s.trim().to_ascii_lowercase();
        let (word, port) = match lower.split_once(':') {
            Some((w, p)) => (w.to_owned(), Some(p.parse::<u16>().map_err(|_| err())?)),
            None => (lower.clone(), None),
        };
        match (word.as_str(), port) {
            ("http-only" | "http", None) => Ok(WebSecurity::HttpOnly),
            ("http-and-https" | "both", None) => Ok(WebSecurity::HttpAndHttps),
            ("https-only" | "https", None) => Ok(WebSecurity::HttpsOnly),
            ("redirect-to-https" | "redirect", p) => Ok(WebSecurity::RedirectToHttps {
                https_port: p.unwrap_or(443),
            }),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_modes_round_trip() {
        for m in [
            MailSecurity::Plain,
            MailSecurity::StartTlsOffered,
            MailSecurity::StartTlsRequired,
            MailSecurity::ImplicitTls,
        ] {
            assert_eq!(m.to_string().parse::<MailSecurity>().unwrap(), m);
        }
        assert!(MailSecurity::StartTlsRequired.requires_tls());
        assert!(!MailSecurity::StartTlsOffered.requires_tls());
        assert!(!MailSecurity::ImplicitTls.offers_starttls());
        assert!("tls1.3".parse::<MailSecurity>().is_err());
    }

    #[test]
    fn web_redirect_keeps_path_and_uses_port() {
        let m: WebSecurity = "redirect-to-https:8443".parse().unwrap();
        assert_eq!(
            m.redirect_location("mail.example.com:8080", "/status?x=1")
                .unwrap(),
            "https://mail.example.com:8443/status?x=1"
        );
        assert_eq!(
            m.redirect_location("[::1]:8080", "/a").unwrap(),
            "https://[::1]:8443/a"
        );
        let m: WebSecurity = "redirect-to-https".parse().unwrap();
        assert_eq!(
            m.redirect_location("h.example", "x").unwrap(),
            "https://h.example/"
        );
        assert_eq!(WebSecurity::HttpAndHttps.redirect_location("h", "/"), None);
        assert!(!WebSecurity::HttpsOnly.listens_http());
        assert!(!WebSecurity::HttpOnly.listens_https());
        for m in [
            WebSecurity::HttpOnly,
            WebSecurity::HttpAndHttps,
            WebSecurity::HttpsOnly,
            WebSecurity::RedirectToHttps { https_port: 8443 },
        ] {
            assert_eq!(m.to_string().parse::<WebSecurity>().unwrap(), m);
        }
        assert!("redirect:abc".parse::<WebSecurity>().is_err());
    }
}
