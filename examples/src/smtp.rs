//! SMTP (RFC 5321) with STARTTLS (RFC 3207) for incoming mail, and message
//! submission (RFC 6409) with AUTH PLAIN (RFC 4954) over TLS only.
//!
//! Accepted messages go to the spool; nothing is relayed onward (this is a
//! reference server for the TLS side), but the relay decision is made the
//! way a real MTA makes it: a recipient outside the local domains needs an
//! authenticated session or a verified client certificate.
//!
//! REQUIRETLS (RFC 8689) is offered in EHLO only once TLS is on; the MAIL
//! FROM parameter, or a `mailbox+requiretls@domain` recipient (the tag is
//! removed), sets the flag, which is kept with the spooled message as
//! [`crate::requiretls_mark::REQUIRETLS_HEADER`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::{DnsName, MailSecurity};
use mailtls_policy::requiretls::{requiretls_parameter, strip_requiretls_tag};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::auth;
use crate::config::BareNewline;
use crate::server::Shared;
use crate::spool::Envelope;
use crate::stream::{Conn, Line, Next, RawLine, acceptor, next_raw_line};

/// Whether a listener takes mail for local domains (port 25 style) or
/// submissions from users (ports 587/465).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpRole {
    /// Incoming mail: no AUTH offered; local recipients need no login.
    Mx,
    /// Submission: AUTH PLAIN after TLS, and MAIL only once authenticated
    /// (by AUTH or a verified client certificate).
    Submission,
}

/// RFC 5321 §4.5.3.1.4 allows 512 octets for a command line; extensions add
/// parameters, so a little more is accepted.
const MAX_COMMAND_LINE: usize = 2048;
/// Text lines in DATA: RFC 5321 says 1000 with CRLF; real mail sometimes
/// exceeds it, so up to this much is accepted.
const MAX_DATA_LINE: usize = 64 * 1024;
const MAX_RECIPIENTS: usize = 100;
const MAX_ERRORS: u32 = 20;
/// RFC 5321 §4.5.3.2.7: at least five minutes between commands.
const IDLE: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.6: ten minutes for the whole DATA block is generous.
const DATA_TIMEOUT: Duration = Duration::from_secs(600);

struct Transaction {
    from: String,
    rcpts: Vec<String>,
    /// Set by the REQUIRETLS MAIL FROM parameter or a tagged recipient.
    requiretls: bool,
}

struct Session {
    role: SmtpRole,
    security: MailSecurity,
    bare_newline: BareNewline,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    tx: Option<Transaction>,
    errors: u32,
}

impl Session {
    fn authorised(&self, conn: &Conn) -> bool {
        self.user.is_some() || conn.tls.as_ref().is_some_and(|t| t.client_cert_verified)
    }

    fn reset(&mut self) {
        self.tx = None;
    }
}

/// Serves one SMTP connection to its end.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    role: SmtpRole,
    security: MailSecurity,
    bare_newline: BareNewline,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let tls_acceptor = acceptor(&shared.tls.smtp);
    let mut conn = Conn::open(tcp, peer, security, &tls_acceptor).await?;
    if let Some(t) = &conn.tls {
        tracing::debug!(%peer, tls = %t.summary, sni = ?t.sni, "TLS established");
    }
    let host = shared.config.server.hostname.to_string();
    conn.send(&format!("220 {host} ESMTP mailtls ready\r\n"))
        .await?;
    let mut s = Session {
        role,
        security,
        bare_newline,
        helo: None,
        esmtp: false,
        user: None,
        tx: None,
        errors: 0,
    };
    loop {
        let raw = match next_raw_line(&mut conn, MAX_COMMAND_LINE, IDLE, &mut shutdown).await? {
            Next::Line(raw) => raw,
            Next::Idle => {
                conn.send("421 4.4.2 Idle too long, closing connection\r\n")
                    .await?;
                return Ok(());
            }
            Next::Shutdown => {
                conn.send(&format!("421 4.3.2 {host} Service shutting down\r\n"))
                    .await?;
                return Ok(());
            }
        };
        // A command line ended by a bare LF or holding a bare CR: refused
        // the way DATA refuses one (see `bare_newline_verdict`).
        if raw.line != Line::Eof {
            match bare_newline_verdict(&raw, s.bare_newline) {
                Verdict::Clean => {}
                Verdict::Disconnect(what) => {
                    tracing::info!(peer = %conn.peer, what, "bare newline in a command; disconnecting");
                    conn.send(&bare_newline_reply(&host, what)).await?;
                    conn.close_lingering().await;
                    return Ok(());
                }
                Verdict::Normalize => {
                    if raw.bare_cr {
                        conn.send("500 5.5.2 Bare <CR> in a command\r\n").await?;
                        if bump_errors(&mut s, &mut conn).await? {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        }
        let line = match raw.line {
            Line::Text(l) => l,
            Line::TooLong => {
                conn.send("500 5.5.6 Line too long\r\n").await?;
                if bump_errors(&mut s, &mut conn).await? {
                    return Ok(());
                }
                continue;
            }
            Line::Eof => return Ok(()),
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg.is_empty() || arg.contains(char::is_whitespace) {
                    conn.send("501 5.5.4 Syntax: EHLO domain\r\n").await?;
                    continue;
                }
                s.reset();
                s.helo = Some(arg.clone());
                s.esmtp = verb == "EHLO";
                if s.esmtp {
                    let reply = ehlo_reply(&host, &arg, &s, &conn, &shared);
                    conn.send(&reply).await?;
                } else {
                    conn.send(&format!("250 {host}\r\n")).await?;
                }
            }
            "STARTTLS" => {
                if conn.tls.is_some() {
                    conn.send("503 5.5.1 TLS already active\r\n").await?;
                } else if !s.security.offers_starttls() {
                    conn.send("502 5.5.1 STARTTLS not offered on this port\r\n")
                        .await?;
                } else if !arg.is_empty() {
                    conn.send("501 5.5.4 Syntax: STARTTLS\r\n").await?;
                } else {
                    conn.send("220 2.0.0 Ready to start TLS\r\n").await?;
                    if conn.has_buffered_input() {
                        tracing::warn!(%peer, "commands pipelined after STARTTLS were dropped");
                    }
                    conn = conn.start_tls(&tls_acceptor).await?;
                    if let Some(t) = &conn.tls {
                        tracing::debug!(%peer, tls = %t.summary, sni = ?t.sni, client_cert = t.client_cert_verified, "STARTTLS done");
                    }
                    // RFC 3207 §4.2: forget everything learnt in clear.
                    s.helo = None;
                    s.esmtp = false;
                    s.user = None;
                    s.tx = None;
                }
            }
            "AUTH" => {
                if auth_command(&mut s, &mut conn, &shared, &arg).await? {
                    return Ok(());
                }
            }
            "MAIL" => {
                let max = shared.config.server.max_message_size;
                mail_command(&mut s, &mut conn, &arg, max).await?;
            }
            "RCPT" => rcpt_command(&mut s, &mut conn, &shared, &arg).await?,
            "DATA" => {
                if !arg.is_empty() {
                    conn.send("501 5.5.4 Syntax: DATA\r\n").await?;
                } else if s.tx.is_none() {
                    conn.send("503 5.5.1 Need MAIL command\r\n").await?;
                } else if s.tx.as_ref().is_some_and(|t| t.rcpts.is_empty()) {
                    conn.send("554 5.5.1 No valid recipients\r\n").await?;
                } else if !data_command(&mut s, &mut conn, &shared).await? {
                    return Ok(());
                }
            }
            "RSET" => {
                s.reset();
                conn.send("250 2.0.0 Ok\r\n").await?;
            }
            "NOOP" => conn.send("250 2.0.0 Ok\r\n").await?,
            "QUIT" => {
                conn.send(&format!("221 2.0.0 {host} closing connection\r\n"))
                    .await?;
                conn.close().await;
                return Ok(());
            }
            "VRFY" => {
                conn.send("252 2.5.2 Cannot VRFY user, but will accept message\r\n")
                    .await?;
            }
            "HELP" => conn.send("214 2.0.0 See RFC 5321\r\n").await?,
            _ => {
                conn.send("500 5.5.2 Command not recognized\r\n").await?;
                if bump_errors(&mut s, &mut conn).await? {
                    return Ok(());
                }
            }
        }
    }
}

async fn bump_errors(s: &mut Session, conn: &mut Conn) -> io::Result<bool> {
    s.errors += 1;
    if s.errors >= MAX_ERRORS {
        conn.send("421 4.7.0 Too many errors, closing connection\r\n")
            .await?;
        return Ok(true);
    }
    Ok(false)
}

fn offers_auth(s: &Session, conn: &Conn) -> bool {
    s.role == SmtpRole::Submission && conn.tls.is_some()
}

fn ehlo_reply(host: &str, client: &str, s: &Session, conn: &Conn, shared: &Shared) -> String {
    let mut lines = vec![
        format!("{host} Hello {client}"),
        "PIPELINING".to_owned(),
        format!("SIZE {}", shared.config.server.max_message_size),
        "8BITMIME".to_owned(),
        "ENHANCEDSTATUSCODES".to_owned(),
    ];
    if conn.tls.is_none() && s.security.offers_starttls() {
        lines.push("STARTTLS".to_owned());
    }
    // RFC 8689 §4.1: REQUIRETLS is advertised only on a TLS session.
    if conn.tls.is_some() {
        lines.push("REQUIRETLS".to_owned());
    }
    if offers_auth(s, conn) && s.user.is_none() {
        lines.push("AUTH PLAIN".to_owned());
    }
    lines.push("HELP".to_owned());
    let mut out = String::new();
    let last = lines.len() - 1;
    for (i, l) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        out.push_str(&format!("250{sep}{l}\r\n"));
    }
    out
}

/// The reply to a login refused by the [`auth::AuthGuard`].
fn auth_refusal(r: &auth::LoginRefusal) -> String {
    let (whom, secs) = match r {
        auth::LoginRefusal::Address { retry_after } => ("from your address", retry_after.as_secs()),
        auth::LoginRefusal::Account { retry_after } => ("for this account", retry_after.as_secs()),
    };
    format!(
        "454 4.7.0 Too many failed logins {whom}; try again in {} seconds\r\n",
        secs.max(1)
    )
}

/// AUTH PLAIN. Returns true when the connection should end (the error
/// limit was reached: every failed or refused login counts towards it).
async fn auth_command(
    s: &mut Session,
    conn: &mut Conn,
    shared: &Shared,
    arg: &str,
) -> io::Result<bool> {
    if s.role != SmtpRole::Submission {
        conn.send("502 5.5.1 AUTH not available on this port; use submission\r\n")
            .await?;
        return Ok(false);
    }
    if conn.tls.is_none() {
        conn.send("530 5.7.0 Must issue a STARTTLS command first\r\n")
            .await?;
        return Ok(false);
    }
    if s.helo.is_none() {
        conn.send("503 5.5.1 Send EHLO first\r\n").await?;
        return Ok(false);
    }
    if s.user.is_some() {
        conn.send("503 5.5.1 Already authenticated\r\n").await?;
        return Ok(false);
    }
    if s.tx.is_some() {
        conn.send("503 5.5.1 AUTH not allowed during a mail transaction\r\n")
            .await?;
        return Ok(false);
    }
    let mut parts = arg.split_whitespace();
    let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next().map(str::to_owned);
    if mechanism != "PLAIN" {
        conn.send("504 5.5.4 Unrecognized authentication type\r\n")
            .await?;
        return Ok(false);
    }
    // An address over its limit is refused before it may send a password.
    if let Err(r) = shared.auth_guard.check(conn.peer.ip(), None) {
        tracing::debug!(peer = %conn.peer, "SMTP AUTH refused: too many failures from this address");
        conn.send(&auth_refusal(&r)).await?;
        return bump_errors(s, conn).await;
    }
    let response = match initial {
        // RFC 4954 §4: "=" is an empty initial response.
        Some(r) if r == "=" => String::new(),
        Some(r) => r,
        None => {
            conn.send("334 \r\n").await?;
            match conn.read_line(MAX_COMMAND_LINE).await? {
                Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
                Line::TooLong => {
                    conn.send("500 5.5.6 Authentication line too long\r\n")
                        .await?;
                    return bump_errors(s, conn).await;
                }
                Line::Eof => return Ok(true),
            }
        }
    };
    if response.trim() == "*" {
        conn.send("501 5.0.0 Authentication cancelled\r\n").await?;
        return Ok(false);
    }
    let c = match auth::decode_plain(&response) {
        Ok(c) => c,
        Err(_) => {
            conn.send("501 5.5.2 Cannot decode the PLAIN response\r\n")
                .await?;
            return bump_errors(s, conn).await;
        }
    };
    if let Err(r) = shared.auth_guard.check(conn.peer.ip(), Some(&c.authcid)) {
        tracing::debug!(peer = %conn.peer, user = %c.authcid, "SMTP AUTH refused: too many failures");
        conn.send(&auth_refusal(&r)).await?;
        return bump_errors(s, conn).await;
    }
    if shared.users.verify_plain(&c) {
        tracing::info!(peer = %conn.peer, user = %c.authcid, "SMTP AUTH succeeded");
        shared.auth_guard.succeeded(&c.authcid);
        s.user = Some(c.authcid);
        conn.send("235 2.7.0 Authentication successful\r\n").await?;
        return Ok(false);
    }
    tracing::info!(peer = %conn.peer, user = %c.authcid, "SMTP AUTH failed");
    // The pause grows with the failures from this address (or for this
    // account), across connections.
    let pause = shared.auth_guard.failed(conn.peer.ip(), &c.authcid);
    tokio::time::sleep(pause).await;
    conn.send("535 5.7.8 Authentication credentials invalid\r\n")
        .await?;
    bump_errors(s, conn).await
}

/// Splits `FROM:<addr> PARAMS` (or `TO:`) into the address and parameters.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let mut addr = &rest[..end];
    let params = rest[end + 1..].trim();
    // RFC 5321 §4.1.1.3: source routes are accepted and ignored.
    if addr.starts_with('@')
        && let Some((_, a)) = addr.split_once(':')
    {
        addr = a;
    }
    if addr.len() > 256
        || addr
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return None;
    }
    Some((addr.to_owned(), params))
}

async fn mail_command(
    s: &mut Session,
    conn: &mut Conn,
    arg: &str,
    max_size: usize,
) -> io::Result<()> {
    if s.helo.is_none() {
        return conn.send("503 5.5.1 Send EHLO/HELO first\r\n").await;
    }
    if s.security.requires_tls() && conn.tls.is_none() {
        return conn
            .send("530 5.7.0 Must issue a STARTTLS command first\r\n")
            .await;
    }
    if s.role == SmtpRole::Submission && !s.authorised(conn) {
        return conn.send("530 5.7.0 Authentication required\r\n").await;
    }
    if s.tx.is_some() {
        return conn.send("503 5.5.1 Nested MAIL command\r\n").await;
    }
    let Some((from, params)) = parse_path(arg, "FROM:") else {
        return conn.send("501 5.5.4 Syntax: MAIL FROM:<address>\r\n").await;
    };
    if !from.is_ascii() {
        return refuse_non_ascii(conn, "sender").await;
    }
    if !from.is_empty() && !from.contains('@') {
        return conn.send("501 5.1.7 Bad sender address syntax\r\n").await;
    }
    // Checked before the other parameters so that REQUIRETLS in clear gets
    // the RFC 8689 refusal rather than a generic "unsupported parameter".
    let requiretls = match requiretls_parameter(params, conn.tls.is_some()) {
        Ok(flag) => flag,
        Err(e) => {
            let (code, status) = e.reply();
            tracing::info!(peer = %conn.peer, error = %e, "REQUIRETLS refused");
            return conn
                .send(&format!("{code} {status} {}\r\n", requiretls_refusal(code)))
                .await;
        }
    };
    for p in params.split_whitespace() {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.to_ascii_uppercase().as_str() {
            "SIZE" if s.esmtp => match v.parse::<usize>() {
                Ok(n) if n > max_size => {
                    return conn
                        .send("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
                        .await;
                }
                Ok(_) => {}
                Err(_) => return conn.send("501 5.5.4 Bad SIZE parameter\r\n").await,
            },
            "BODY" if s.esmtp => {}
            "REQUIRETLS" if s.esmtp => {}
            _ => {
                return conn.send("555 5.5.4 Unsupported MAIL parameter\r\n").await;
            }
        }
    }
    s.tx = Some(Transaction {
        from,
        rcpts: Vec::new(),
        requiretls,
    });
    conn.send("250 2.1.0 Ok\r\n").await
}

/// RFC 6531 §3.7.4.1: this server does not offer SMTPUTF8, so an address
/// with anything but ASCII (UTF-8, or bytes that are not even that) is
/// refused rather than stored altered.
async fn refuse_non_ascii(conn: &mut Conn, which: &str) -> io::Result<()> {
    tracing::info!(peer = %conn.peer, which, "non-ASCII address refused (no SMTPUTF8)");
    conn.send(&format!(
        "553 5.6.7 Non-ASCII {which} address; this server does not offer SMTPUTF8\r\n"
    ))
    .await
}

/// The reply text for a refused REQUIRETLS parameter, by reply code.
fn requiretls_refusal(code: u16) -> &'static str {
    if code == 530 {
        "REQUIRETLS needs a TLS session; issue STARTTLS first"
    } else {
        "Syntax: REQUIRETLS takes no value and is given once"
    }
}

pub(crate) fn is_local(addr: &str, local: &[DnsName]) -> bool {
    match addr.rsplit_once('@') {
        // RFC 5321 §4.5.1: "postmaster" without a domain is always local.
        None => addr.eq_ignore_ascii_case("postmaster"),
        Some((_, domain)) => DnsName::parse(domain).is_ok_and(|d| local.contains(&d)),
    }
}

async fn rcpt_command(
    s: &mut Session,
    conn: &mut Conn,
    shared: &Shared,
    arg: &str,
) -> io::Result<()> {
    if s.tx.is_none() {
        return conn.send("503 5.5.1 Need MAIL command\r\n").await;
    }
    let Some((to, params)) = parse_path(arg, "TO:") else {
        return conn.send("501 5.5.4 Syntax: RCPT TO:<address>\r\n").await;
    };
    if !to.is_ascii() {
        return refuse_non_ascii(conn, "recipient").await;
    }
    if !params.is_empty() {
        return conn.send("555 5.5.4 Unsupported RCPT parameter\r\n").await;
    }
    if to.is_empty() || (!to.contains('@') && !to.eq_ignore_ascii_case("postmaster")) {
        return conn
            .send("501 5.1.3 Bad recipient address syntax\r\n")
            .await;
    }
    // `mailbox+requiretls@domain`: the flag for clients that cannot send
    // the MAIL FROM parameter. Like the parameter it needs TLS, since a
    // message received in clear can never have been protected end to end.
    let tagged = strip_requiretls_tag(&to);
    if tagged.requiretls && conn.tls.is_none() {
        return conn
            .send(&format!("530 5.7.0 {}\r\n", requiretls_refusal(530)))
            .await;
    }
    let to = tagged.address;
    let local = is_local(&to, &shared.local_domains);
    // An internal server listed in smime.trusted_relays relays without login.
    let trusted_relay = shared
        .smime
        .as_ref()
        .is_some_and(|g| g.is_trusted_relay(conn.peer.ip()));
    if !local && !s.authorised(conn) && !trusted_relay {
        tracing::info!(peer = %conn.peer, rcpt = %to, "relay refused");
        return conn.send("554 5.7.1 Relay access denied\r\n").await;
    }
    let Some(tx) = s.tx.as_mut() else {
        return conn.send("503 5.5.1 Need MAIL command\r\n").await;
    };
    if tx.rcpts.len() >= MAX_RECIPIENTS {
        return conn.send("452 4.5.3 Too many recipients\r\n").await;
    }
    tx.requiretls |= tagged.requiretls;
    tx.rcpts.push(to);
    conn.send("250 2.1.5 Ok\r\n").await
}

/// What to do with a line that may hold a bare LF or bare CR.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// CRLF-terminated, no bare CR.
    Clean,
    /// `reject`: answer [`bare_newline_reply`] for the named character
    /// (`<LF>` or `<CR>`) and disconnect.
    Disconnect(&'static str),
    /// `normalize`: bare CR and bare LF end lines.
    Normalize,
}

fn bare_newline_verdict(raw: &RawLine, mode: BareNewline) -> Verdict {
    let bare_lf = !raw.crlf && raw.line != Line::Eof;
    if !bare_lf && !raw.bare_cr {
        return Verdict::Clean;
    }
    match mode {
        BareNewline::Reject if bare_lf => Verdict::Disconnect("<LF>"),
        BareNewline::Reject => Verdict::Disconnect("<CR>"),
        BareNewline::Normalize => Verdict::Normalize,
    }
}

/// Postfix's wording for `smtpd_forbid_bare_newline = reject`; 521 because
/// the connection is closed after it (RFC 7504).
fn bare_newline_reply(host: &str, what: &str) -> String {
    format!("521 5.5.2 {host} Error: bare {what} received\r\n")
}

/// The lines of DATA as stored, each with whether it may end the message:
/// only a line that came after a CRLF and is itself ended by CRLF can be
/// the "." of `<CRLF>.<CRLF>`. Under `normalize` a bare CR splits a line
/// (each piece but the last ended by that bare CR, never an end marker).
fn data_pieces(text: &[u8], raw_crlf: bool, after_crlf: bool, bare_cr: bool) -> Vec<(&[u8], bool)> {
    if !bare_cr {
        return vec![(text, after_crlf && raw_crlf)];
    }
    // A piece after a bare CR follows no CRLF, a piece before one ends
    // with none: no piece of such a line can end the message.
    text.split(|b| *b == b'\r').map(|p| (p, false)).collect()
}

/// Reads the message after DATA and stores it. Returns false when the
/// connection should end.
///
/// The message ends only at `<CRLF>.<CRLF>`: a "." line reached through
/// a bare LF or bare CR, or ended by one, is never the end (the SMTP
/// smuggling look-alikes `<LF>.<LF>`, `<CR>.<CR>`, `<CRLF>.<LF>` ...).
/// Under `bare_newline = reject` the first bare LF or bare CR ends the
/// session with 521 and nothing is stored; under `normalize` each one is
/// stored as a CRLF line end.
async fn data_command(s: &mut Session, conn: &mut Conn, shared: &Shared) -> io::Result<bool> {
    conn.send("354 End data with <CR><LF>.<CR><LF>\r\n").await?;
    let host = shared.config.server.hostname.to_string();
    let max = shared.config.server.max_message_size;
    let mut body: Vec<u8> = Vec::new();
    let mut too_big = false;
    // The DATA command itself ended in CRLF (a bare LF there was refused
    // or, under `normalize`, accepted like any other line end).
    let mut after_crlf = true;
    let deadline = tokio::time::Instant::now() + DATA_TIMEOUT;
    loop {
        let raw = match tokio::time::timeout_at(deadline, conn.read_raw_line(MAX_DATA_LINE)).await {
            Ok(l) => l?,
            Err(_) => {
                conn.send("421 4.4.2 DATA took too long\r\n").await?;
                return Ok(false);
            }
        };
        if let Verdict::Disconnect(what) = bare_newline_verdict(&raw, s.bare_newline) {
            tracing::info!(peer = %conn.peer, what, "bare newline in message data; message refused, disconnecting");
            s.tx = None;
            conn.send(&bare_newline_reply(&host, what)).await?;
            conn.close_lingering().await;
            return Ok(false);
        }
        let line = match raw.line {
            Line::Eof => return Ok(false),
            Line::TooLong => {
                too_big = true;
                after_crlf = raw.crlf;
                continue;
            }
            Line::Text(l) => l,
        };
        let mut end = false;
        for (piece, may_end) in data_pieces(&line, raw.crlf, after_crlf, raw.bare_cr) {
            if may_end && piece == b"." {
                end = true;
                break;
            }
            // Dot-unstuffing; a lone "." that cannot end the message was
            // never stuffed and is kept as it came.
            let text = match piece {
                b"." => piece,
                _ => piece.strip_prefix(b".").unwrap_or(piece),
            };
            if body.len() + text.len() + 2 > max {
                too_big = true;
                body = Vec::new();
            }
            if !too_big {
                body.extend_from_slice(text);
                body.extend_from_slice(b"\r\n");
            }
        }
        if end {
            break;
        }
        after_crlf = raw.crlf;
    }
    let Some(tx) = s.tx.take() else {
        conn.send("503 5.5.1 Need MAIL command\r\n").await?;
        return Ok(true);
    };
    if too_big {
        conn.send("552 5.3.4 Message too big or lines too long\r\n")
            .await?;
        return Ok(true);
    }
    let body = crate::requiretls_mark::mark(&body, tx.requiretls);
    let requiretls = tx.requiretls;
    let envelope = Envelope {
        mail_from: tx.from,
        rcpt_to: tx.rcpts,
        helo: s.helo.clone().unwrap_or_default(),
        esmtp: s.esmtp,
        peer: conn.peer,
        tls: conn.tls.as_ref().map(|t| t.summary.clone()),
        authenticated: s.authorised(conn),
        login: s.user.clone(),
    };
    let (from, rcpts) = (envelope.mail_from.clone(), envelope.rcpt_to.clone());
    match crate::accept::accept(shared, envelope, body).await {
        Ok(id) => {
            tracing::info!(peer = %conn.peer, %id, %from, ?rcpts, requiretls, "message accepted");
            conn.send(&format!("250 2.0.0 Ok: queued as {id}\r\n"))
                .await?;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store message");
            conn.send(&format!("{}\r\n", e.smtp_reply())).await?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("FROM:<a@b.example> SIZE=10", "FROM:"),
            Some(("a@b.example".into(), "SIZE=10"))
        );
        assert_eq!(parse_path("from: <>", "FROM:"), Some((String::new(), "")));
        assert_eq!(
            parse_path("TO:<@relay.example:u@d.example>", "TO:"),
            Some(("u@d.example".into(), ""))
        );
        assert_eq!(parse_path("TO:u@d.example", "TO:"), None);
        assert_eq!(parse_path("TO:<u d@x>", "TO:"), None);
    }

    #[test]
    fn only_a_crlf_dot_crlf_line_ends_the_data() {
        assert_eq!(data_pieces(b".", true, true, false), [(&b"."[..], true)]);
        assert_eq!(data_pieces(b".", false, true, false), [(&b"."[..], false)]);
        assert_eq!(data_pieces(b".", true, false, false), [(&b"."[..], false)]);
        assert_eq!(
            data_pieces(b"a\r.\rb", true, true, true),
            [(&b"a"[..], false), (&b"."[..], false), (&b"b"[..], false)]
        );
    }

    #[test]
    fn local_domains() {
        let local = vec![DnsName::parse("example.test").unwrap()];
        assert!(is_local("a@Example.TEST", &local));
        assert!(is_local("postmaster", &local));
        assert!(!is_local("a@other.example", &local));
        assert!(!is_local("a@sub.example.test", &local));
        assert!(!is_local("a@[127.0.0.1]", &local));
    }
}
