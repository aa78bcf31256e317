//! Enough POP3 (RFC 1939) to show TLS and read the spool: CAPA (RFC 2449),
//! STLS (RFC 2595), USER/PASS only once TLS is up, STAT, LIST, UIDL, RETR,
//! NOOP, RSET, QUIT. The maildrop of every user is the whole shared spool,
//! read-only.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::MailSecurity;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::server::Shared;
use crate::spool::SpoolEntry;
use crate::stream::{Conn, Line, Next, acceptor, next_line};

/// RFC 2449: 255 octets per command line.
const MAX_LINE: usize = 512;
/// RFC 1939 §3: the autologout timer is at least 10 minutes.
const IDLE: Duration = Duration::from_secs(600);
const MAX_ERRORS: u32 = 20;

enum State {
    Authorization { user: Option<String> },
    Transaction { maildrop: Vec<SpoolEntry> },
}

/// Serves one POP3 connection to its end.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    security: MailSecurity,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let tls_acceptor = acceptor(&shared.tls.mail);
    let mut conn = Conn::open(tcp, peer, security, &tls_acceptor).await?;
    let mut state = State::Authorization { user: None };
    let mut errors = 0u32;
    conn.send(&format!(
        "+OK {} POP3 mailtls ready\r\n",
        shared.config.server.hostname
    ))
    .await?;
    loop {
        let line = match next_line(&mut conn, MAX_LINE, IDLE, &mut shutdown).await? {
            Next::Line(Line::Text(l)) => String::from_utf8_lossy(&l).into_owned(),
            Next::Line(Line::TooLong) => {
                conn.send("-ERR Line too long\r\n").await?;
                errors += 1;
                if errors >= MAX_ERRORS {
                    return Ok(());
                }
                continue;
            }
            Next::Line(Line::Eof) => return Ok(()),
            Next::Idle => {
                conn.send("-ERR Idle for too long, closing\r\n").await?;
                return Ok(());
            }
            Next::Shutdown => {
                conn.send("-ERR [SYS/TEMP] Server shutting down\r\n")
                    .await?;
                return Ok(());
            }
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_owned()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        match (verb.as_str(), &mut state) {
            ("CAPA", _) => {
                let mut caps = String::from("+OK Capability list follows\r\n");
                let in_auth = matches!(state, State::Authorization { .. });
                if conn.tls.is_none() && security.offers_starttls() && in_auth {
                    caps.push_str("STLS\r\n");
                }
                if conn.tls.is_some() && in_auth {
                    caps.push_str("USER\r\n");
                }
                caps.push_str(
                    "UIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION mailtls\r\n.\r\n",
                );
                conn.send(&caps).await?;
            }
            ("NOOP", State::Transaction { .. }) => conn.send("+OK\r\n").await?,
            ("QUIT", _) => {
                conn.send("+OK Bye\r\n").await?;
                conn.close().await;
                return Ok(());
            }
            ("STLS", State::Authorization { .. }) => {
                if conn.tls.is_some() {
                    conn.send("-ERR Command not permitted when TLS active\r\n")
                        .await?;
                } else if !security.offers_starttls() {
                    conn.send("-ERR STLS not offered here\r\n").await?;
                } else {
                    conn.send("+OK Begin TLS negotiation\r\n").await?;
                    if conn.has_buffered_input() {
                        tracing::warn!(%peer, "commands pipelined after STLS were dropped");
                    }
                    conn = conn.start_tls(&tls_acceptor).await?;
                    state = State::Authorization { user: None };
                }
            }
            ("USER", State::Authorization { user }) => {
                if conn.tls.is_none() {
                    conn.send(
                        "-ERR [AUTH] Credentials are accepted only over TLS; use STLS first\r\n",
                    )
                    .await?;
                } else if arg.trim().is_empty() {
                    conn.send("-ERR Syntax: USER name\r\n").await?;
                } else {
                    *user = Some(arg.trim().to_owned());
                    conn.send("+OK Send PASS\r\n").await?;
                }
            }
            ("PASS", State::Authorization { user }) => {
                if conn.tls.is_none() {
                    conn.send(
                        "-ERR [AUTH] Credentials are accepted only over TLS; use STLS first\r\n",
                    )
                    .await?;
                    continue;
                }
                let Some(name) = user.take() else {
                    conn.send("-ERR Send USER first\r\n").await?;
                    continue;
                };
                if shared.auth_guard.check(peer.ip(), Some(&name)).is_err() {
                    // RFC 3206 SYS/TEMP: try again later.
                    tracing::debug!(%peer, user = %name, "POP3 login refused: too many failures");
                    conn.send("-ERR [SYS/TEMP] Too many failed logins; try again later\r\n")
                        .await?;
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        return Ok(());
                    }
                    continue;
                }
                // RFC 1939 §7: the password may contain spaces.
                if !shared.users.verify(&name, &arg) {
                    tracing::info!(%peer, user = %name, "POP3 login failed");
                    let pause = shared.auth_guard.failed(peer.ip(), &name);
                    tokio::time::sleep(pause).await;
                    conn.send("-ERR [AUTH] Invalid user name or password\r\n")
                        .await?;
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        return Ok(());
                    }
                    continue;
                }
                shared.auth_guard.succeeded(&name);
                let spool = shared.spool.clone();
                let listed = tokio::task::spawn_blocking(move || spool.list()).await;
                match listed {
                    Ok(Ok(maildrop)) => {
                        tracing::info!(%peer, user = %name, messages = maildrop.len(), "POP3 login");
                        let total: u64 = maildrop.iter().map(|e| e.size).sum();
                        conn.send(&format!(
                            "+OK Logged in, {} messages ({total} octets)\r\n",
                            maildrop.len()
                        ))
                        .await?;
                        state = State::Transaction { maildrop };
                    }
                    _ => {
                        conn.send("-ERR [SYS/TEMP] Cannot open the maildrop\r\n")
                            .await?;
                    }
                }
            }
            ("STAT", State::Transaction { maildrop }) => {
                let total: u64 = maildrop.iter().map(|e| e.size).sum();
                conn.send(&format!("+OK {} {total}\r\n", maildrop.len()))
                    .await?;
            }
            ("LIST" | "UIDL", State::Transaction { maildrop }) => {
                let uidl = verb == "UIDL";
                let show = |n: usize, e: &SpoolEntry| {
                    if uidl {
                        format!("{n} {}", e.id)
                    } else {
                        format!("{n} {}", e.size)
                    }
                };
                if arg.trim().is_empty() {
                    let mut out = format!("+OK {} messages\r\n", maildrop.len());
                    for (i, e) in maildrop.iter().enumerate() {
                        out.push_str(&show(i + 1, e));
                        out.push_str("\r\n");
                    }
                    out.push_str(".\r\n");
                    conn.send(&out).await?;
                } else {
                    match message(maildrop, &arg) {
                        Some((n, e)) => conn.send(&format!("+OK {}\r\n", show(n, e))).await?,
                        None => conn.send("-ERR No such message\r\n").await?,
                    }
                }
            }
            ("RETR", State::Transaction { maildrop }) => {
                let Some((_, entry)) = message(maildrop, &arg) else {
                    conn.send("-ERR No such message\r\n").await?;
                    continue;
                };
                let spool = shared.spool.clone();
                let entry = entry.clone();
                let read = tokio::task::spawn_blocking(move || spool.read(&entry)).await;
                match read {
                    Ok(Ok(bytes)) => {
                        let mut out = format!("+OK {} octets\r\n", bytes.len()).into_bytes();
                        dot_stuff(&bytes, &mut out);
                        conn.send_bytes(&out).await?;
                    }
                    _ => {
                        conn.send("-ERR [SYS/TEMP] Cannot read the message\r\n")
                            .await?
                    }
                }
            }
            ("DELE", State::Transaction { .. }) => {
                conn.send("-ERR [SYS/PERM] This maildrop is read-only\r\n")
                    .await?;
            }
            ("RSET", State::Transaction { .. }) => conn.send("+OK\r\n").await?,
            _ => {
                conn.send("-ERR Unknown command or not allowed in this state\r\n")
                    .await?;
                errors += 1;
                if errors >= MAX_ERRORS {
                    return Ok(());
                }
            }
        }
    }
}

fn message<'a>(maildrop: &'a [SpoolEntry], arg: &str) -> Option<(usize, &'a SpoolEntry)> {
    let n: usize = arg.trim().parse().ok()?;
    maildrop.get(n.checked_sub(1)?).map(|e| (n, e))
}

/// RFC 1939 §3: lines starting with "." get another "."; the response ends
/// with a line holding only ".".
fn dot_stuff(message: &[u8], out: &mut Vec<u8>) {
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !message.is_empty() && !message.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        dot_stuff(b"a\r\n.b\r\n..\r\nc", &mut out);
        assert_eq!(out, b"a\r\n..b\r\n...\r\nc\r\n.\r\n");
    }
}
