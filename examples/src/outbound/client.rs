//! A small SMTP client (RFC 5321) for outbound delivery: greeting, EHLO,
//! STARTTLS (RFC 3207) with a caller-supplied rustls configuration (the
//! plan's verifier), MAIL/RCPT/DATA with dot-stuffing, QUIT. Every read and
//! write is bounded by a timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The largest reply accepted (all lines together).
const MAX_REPLY: usize = 64 * 1024;

/// Why a session step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection failed or broke.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The peer took too long.
    #[error("{what}: timed out")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
    },
    /// The peer's reply is not SMTP.
    #[error("bad reply: {0}")]
    Protocol(String),
    /// The TLS handshake failed (the error carries the verifier's
    /// classification, see `VerificationFailure::from_io_error`).
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line (after the code and separator).
    pub lines: Vec<String>,
}

impl Reply {
    /// `2xx`.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// `4xx`: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as one line, for logs and DSNs.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }

    /// The EHLO keywords (every line but the first, first word, upper case).
    pub fn ehlo_keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_ascii_uppercase)
            .collect()
    }

    /// The enhanced status code at the start of the text (RFC 2034), if any.
    pub fn enhanced_status(&self) -> Option<String> {
        let first = self.lines.first()?.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| first.to_owned())
    }
}

/// Parses one complete reply from `buf`; `None` until the last line is in.
/// Returns the reply and how many bytes it took.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ClientError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut code = None;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let raw = &buf[pos..pos + nl];
        pos += nl + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(line);
        let bad = || ClientError::Protocol(text.chars().take(100).collect());
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let this: u16 = text[..3].parse().map_err(|_| bad())?;
        if *code.get_or_insert(this) != this {
            return Err(bad());
        }
        let sep = line.get(3).copied();
        lines.push(text.get(4..).unwrap_or("").to_owned());
        match sep {
            None | Some(b' ') => {
                return Ok(Some((Reply { code: this, lines }, pos)));
            }
            Some(b'-') => {}
            Some(_) => return Err(bad()),
        }
    }
    Ok(None)
}

/// Dot-stuffs a message (RFC 5321 §4.5.2) and appends the end-of-data
/// line. Bare LF line ends become CRLF; a missing final line end is added.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An open SMTP session.
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    timeout: Duration,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Our address for the connection.
    pub local: Option<SocketAddr>,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(Client, Reply), ClientError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout { what: "connect" })?
            .map_err(|source| ClientError::Io {
                what: "connect",
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let mut c = Client {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            timeout,
            peer: addr,
            local,
        };
        let greeting = c.read_reply("greeting").await?;
        Ok((c, greeting))
    }

    /// Whether the session is protected by TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    async fn write_all(&mut self, bytes: &[u8], what: &'static str) -> Result<(), ClientError> {
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
            }
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .map_err(|_| ClientError::Timeout { what })?
            .map_err(|source| ClientError::Io { what, source })
    }

    async fn read_reply(&mut self, what: &'static str) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > MAX_REPLY {
                return Err(ClientError::Protocol(format!(
                    "reply to {what} longer than {MAX_REPLY} bytes"
                )));
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                }
            };
            let n = tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| ClientError::Timeout { what })?
                .map_err(|source| ClientError::Io { what, source })?;
            if n == 0 {
                return Err(ClientError::Io {
                    what,
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command line (without CRLF) and reads the reply.
    pub async fn command(&mut self, line: &str, what: &'static str) -> Result<Reply, ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write_all(&bytes, what).await?;
        self.read_reply(what).await
    }

    /// Sends STARTTLS; on `220` runs the handshake with `config`, sending
    /// `server_name` as SNI. Returns the reply when the peer refused.
    pub async fn starttls(
        mut self,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Result<Client, (Client, Reply)>, ClientError> {
        let reply = self.command("STARTTLS", "STARTTLS").await?;
        if reply.code != 220 {
            return Ok(Err((self, reply)));
        }
        if !self.buf.is_empty() {
            return Err(ClientError::Protocol(
                "data after the STARTTLS reply (possible injection)".into(),
            ));
        }
        let Stream::Plain(tcp) = self.stream else {
            return Err(ClientError::Protocol("TLS is already on".into()));
        };
        let connector = TlsConnector::from(config);
        let tls = tokio::time::timeout(self.timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| ClientError::Timeout {
                what: "TLS handshake",
            })?
            .map_err(ClientError::Handshake)?;
        Ok(Ok(Client {
            stream: Stream::Tls(Box::new(tls)),
            buf: Vec::new(),
            timeout: self.timeout,
            peer: self.peer,
            local: self.local,
        }))
    }

    /// Sends the message after a `354`: dot-stuffed, then the end-of-data
    /// line; returns the final reply.
    pub async fn send_data(&mut self, message: &[u8]) -> Result<Reply, ClientError> {
        let stuffed = dot_stuff(message);
        self.write_all(&stuffed, "message data").await?;
        self.read_reply("end of data").await
    }

    /// Says goodbye (best effort) and closes.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT").await;
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Tls(s) => {
                let _ = s.shutdown().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_rfc5321_4_2() {
        let (r, used) =
            parse_reply(b"250-mx.example Hello\r\n250-STARTTLS\r\n250 requiretls x\r\nrest")
                .unwrap()
                .unwrap();
        assert_eq!(used, 54);
        assert_eq!(r.code, 250);
        assert_eq!(r.ehlo_keywords(), ["STARTTLS", "REQUIRETLS"]);
        assert!(parse_reply(b"250-partial\r\n").unwrap().is_none());
        assert!(
            parse_reply(b"250-a\r\n251 b\r\n").is_err(),
            "codes must agree"
        );
        assert!(parse_reply(b"hello\r\n").is_err());
        let (r, _) = parse_reply(b"550 5.7.30 REQUIRETLS needed\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.enhanced_status().as_deref(), Some("5.7.30"));
        assert!(!r.is_transient() && !r.is_positive());
        let (r, _) = parse_reply(b"421\r\n").unwrap().unwrap();
        assert!(r.is_transient());
        assert_eq!(r.enhanced_status(), None);
    }

    #[test]
    fn dot_stuffing_rfc5321_4_5_2() {
        assert_eq!(
            dot_stuff(b"Subject: x\r\n\r\n.hidden\r\n..two\r\nend"),
            b"Subject: x\r\n\r\n..hidden\r\n...two\r\nend\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\nx\n"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
