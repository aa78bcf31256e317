//! Enough IMAP4rev1 (RFC 3501) to show TLS: CAPABILITY, STARTTLS, LOGIN
//! (only once TLS is up; before that LOGINDISABLED is advertised, RFC 3501
//! §6.2.3 and RFC 2595), NOOP and LOGOUT. Mailbox commands answer NO.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::MailSecurity;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::server::Shared;
use crate::stream::{Conn, Line, Next, acceptor, next_line};

const MAX_LINE: usize = 8 * 1024;
/// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX_ERRORS: u32 = 20;

/// Mailbox-level commands that exist in IMAP4rev1 but not in this server.
const NOT_IMPLEMENTED: &[&str] = &[
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "UID",
    "AUTHENTICATE",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
];

fn capabilities(conn: &Conn, security: MailSecurity) -> String {
    let mut caps = vec!["IMAP4rev1"];
    if conn.tls.is_none() {
        if security.offers_starttls() {
            caps.push("STARTTLS");
        }
        caps.push("LOGINDISABLED");
    }
    caps.join(" ")
}

/// Parses one IMAP astring (atom or quoted string) from the front of `s`.
fn astring(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => return Some((out, &rest[i + 1..])),
                c => out.push(c),
            }
        }
        return None;
    }
    if s.starts_with('{') {
        return None; // literals are not supported by this small server
    }
    let end = s.find(' ').unwrap_or(s.len());
    let atom = &s[..end];
    if atom.is_empty()
        || atom
            .chars()
            .any(|c| c.is_control() || matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\'))
    {
        return None;
    }
    Some((atom.to_owned(), &s[end..]))
}

/// Serves one IMAP connection to its end.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    security: MailSecurity,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let tls_acceptor = acceptor(&shared.tls.mail);
    let mut conn = Conn::open(tcp, peer, security, &tls_acceptor).await?;
    let host = shared.config.server.hostname.to_string();
    let mut user: Option<String> = None;
    let mut errors = 0u32;
    conn.send(&format!(
        "* OK [CAPABILITY {}] {host} IMAP4rev1 mailtls ready\r\n",
        capabilities(&conn, security)
    ))
    .await?;
    loop {
        let line = match next_line(&mut conn, MAX_LINE, IDLE, &mut shutdown).await? {
            Next::Line(Line::Text(l)) => String::from_utf8_lossy(&l).into_owned(),
            Next::Line(Line::TooLong) => {
                conn.send("* BAD Line too long\r\n").await?;
                errors += 1;
                if errors >= MAX_ERRORS {
                    conn.send("* BYE Too many errors\r\n").await?;
                    return Ok(());
                }
                continue;
            }
            Next::Line(Line::Eof) => return Ok(()),
            Next::Idle => {
                conn.send("* BYE Autologout; idle for too long\r\n").await?;
                return Ok(());
            }
            Next::Shutdown => {
                conn.send("* BYE Server shutting down\r\n").await?;
                return Ok(());
            }
        };
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or("");
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let args = words.next().unwrap_or("");
        if tag.is_empty()
            || tag.chars().any(|c| {
                c.is_control() || matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | '+')
            })
        {
            conn.send("* BAD Missing or invalid tag\r\n").await?;
            errors += 1;
            if errors >= MAX_ERRORS {
                conn.send("* BYE Too many errors\r\n").await?;
                return Ok(());
            }
            continue;
        }
        match command.as_str() {
            "CAPABILITY" => {
                conn.send(&format!(
                    "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed\r\n",
                    capabilities(&conn, security)
                ))
                .await?;
            }
            "NOOP" => conn.send(&format!("{tag} OK NOOP completed\r\n")).await?,
            "LOGOUT" => {
                conn.send(&format!(
                    "* BYE {host} logging out\r\n{tag} OK LOGOUT completed\r\n"
                ))
                .await?;
                conn.close().await;
                return Ok(());
            }
            "STARTTLS" => {
                if conn.tls.is_some() {
                    conn.send(&format!("{tag} BAD TLS is already active\r\n"))
                        .await?;
                } else if !security.offers_starttls() {
                    conn.send(&format!("{tag} BAD STARTTLS is not offered here\r\n"))
                        .await?;
                } else {
                    conn.send(&format!("{tag} OK Begin TLS negotiation now\r\n"))
                        .await?;
                    if conn.has_buffered_input() {
                        tracing::warn!(%peer, "commands pipelined after STARTTLS were dropped");
                    }
                    conn = conn.start_tls(&tls_acceptor).await?;
                }
            }
            "LOGIN" => {
                if user.is_some() {
                    conn.send(&format!("{tag} BAD Already logged in\r\n"))
                        .await?;
                } else if conn.tls.is_none() {
                    // RFC 5530 PRIVACYREQUIRED: the same credentials would work over TLS.
                    conn.send(&format!(
                        "{tag} NO [PRIVACYREQUIRED] LOGIN is disabled until TLS is active; use STARTTLS\r\n"
                    ))
                    .await?;
                } else {
                    let parsed = astring(args).and_then(|(name, rest)| {
                        let (password, rest) = astring(rest)?;
                        rest.trim().is_empty().then_some((name, password))
                    });
                    match parsed {
                        None => {
                            conn.send(&format!(
                                "{tag} BAD Syntax: LOGIN user password (atoms or quoted strings)\r\n"
                            ))
                            .await?;
                        }
                        Some((name, _))
                            if shared.auth_guard.check(peer.ip(), Some(&name)).is_err() =>
                        {
                            // RFC 5530 UNAVAILABLE: a temporary refusal.
                            tracing::debug!(%peer, user = %name, "IMAP LOGIN refused: too many failures");
                            conn.send(&format!(
                                "{tag} NO [UNAVAILABLE] Too many failed logins; try again later\r\n"
                            ))
                            .await?;
                            errors += 1;
                            if errors >= MAX_ERRORS {
                                conn.send("* BYE Too many errors\r\n").await?;
                                return Ok(());
                            }
                        }
                        Some((name, password)) if shared.users.verify(&name, &password) => {
                            tracing::info!(%peer, user = %name, "IMAP LOGIN succeeded");
                            shared.auth_guard.succeeded(&name);
                            user = Some(name);
                            conn.send(&format!(
                                "{tag} OK [CAPABILITY {}] LOGIN completed\r\n",
                                capabilities(&conn, security)
                            ))
                            .await?;
                        }
                        Some((name, _)) => {
                            tracing::info!(%peer, user = %name, "IMAP LOGIN failed");
                            let pause = shared.auth_guard.failed(peer.ip(), &name);
                            tokio::time::sleep(pause).await;
                            conn.send(&format!(
                                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
                            ))
                            .await?;
                            errors += 1;
                            if errors >= MAX_ERRORS {
                                conn.send("* BYE Too many errors\r\n").await?;
                                return Ok(());
                            }
                        }
                    }
                }
            }
            c if NOT_IMPLEMENTED.contains(&c) => {
                if user.is_some() {
                    conn.send(&format!(
                        "{tag} NO Mailbox access is not part of this reference server\r\n"
                    ))
                    .await?;
                } else {
                    conn.send(&format!("{tag} BAD Log in first\r\n")).await?;
                }
            }
            _ => {
                conn.send(&format!("{tag} BAD Command unknown\r\n")).await?;
                errors += 1;
                if errors >= MAX_ERRORS {
                    conn.send("* BYE Too many errors\r\n").await?;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn astrings() {
        assert_eq!(astring("test pw"), Some(("test".into(), " pw")));
        assert_eq!(astring("\"a \\\"b\\\\\" x"), Some(("a \"b\\".into(), " x")));
        assert_eq!(astring("{4}"), None);
        assert_eq!(astring("\"open"), None);
    }
}
