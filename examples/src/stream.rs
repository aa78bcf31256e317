//! A mail connection that starts in clear or in TLS and can be upgraded in
//! place by STARTTLS/STLS, with bounded line reading.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long [`Conn::close_lingering`] waits for the client to stop sending.
const LINGER: Duration = Duration::from_secs(2);
/// How much [`Conn::close_lingering`] reads and discards at most.
const LINGER_BYTES: usize = 1024 * 1024;

/// How long a TLS handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The transport under a mail session.
pub(crate) enum MailStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the TLS layer of a session negotiated.
#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    /// Version and cipher suite, e.g. `TLSv1_3 TLS13_AES_256_GCM_SHA384`.
    pub(crate) summary: String,
    /// The SNI the client sent.
    pub(crate) sni: Option<String>,
    /// Whether the client presented a certificate that the configured client
    /// CA verified (rustls refuses the handshake for one that does not verify).
    pub(crate) client_cert_verified: bool,
}

impl TlsInfo {
    fn of(s: &TlsStream<TcpStream>) -> Self {
        let conn = s.get_ref().1;
        let version = conn
            .protocol_version()
            .map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
        let suite = conn
            .negotiated_cipher_suite()
            .map_or_else(String::new, |s| format!("{:?}", s.suite()));
        TlsInfo {
            summary: format!("{version} {suite}").trim().to_owned(),
            sni: conn.server_name().map(str::to_owned),
            client_cert_verified: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        }
    }
}

/// Result of reading one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line, without its CRLF or LF.
    Text(Vec<u8>),
    /// A line longer than the limit (it was read and discarded).
    TooLong,
    /// The peer closed the connection.
    Eof,
}

/// Reads one line of at most `max` bytes, never buffering more than that.
/// The line ends at LF; the LF and any CRs before it are removed.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> io::Result<Line> {
    Ok(match read_raw_line(r, max).await?.line {
        Line::Text(mut buf) => {
            while buf.last() == Some(&b'\r') {
                buf.pop();
            }
            Line::Text(buf)
        }
        other => other,
    })
}

/// One line as it came, with what ended it: what SMTP DATA needs to tell
/// the only real end of a message (`<CRLF>.<CRLF>`) from look-alikes made
/// of bare LF or bare CR (the 2023 "SMTP smuggling" disclosures).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawLine {
    /// The line without its final LF and the one CR before that LF (a
    /// bare CR elsewhere stays in the text).
    pub(crate) line: Line,
    /// Whether it ended in CRLF (false: a bare LF, or end of input).
    pub(crate) crlf: bool,
    /// Whether a CR not followed by LF occurred in the line (also in a
    /// line too long to keep).
    pub(crate) bare_cr: bool,
}

/// Reads one line of at most `max` bytes (the LF ends it), reporting how
/// it ended and whether it held a bare CR; never buffers more than `max`.
pub(crate) async fn read_raw_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<RawLine> {
    let mut buf = Vec::new();
    let mut too_long = false;
    let mut bare_cr = false;
    // The byte before the current one, across buffer refills.
    let mut prev: Option<u8> = None;
    let mut crlf = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(RawLine {
                line: Line::Eof,
                crlf: false,
                bare_cr,
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        for &b in chunk {
            if prev == Some(b'\r') {
                if b == b'\n' {
                    crlf = true;
                } else {
                    bare_cr = true;
                }
            }
            prev = Some(b);
        }
        let n = chunk.len();
        if !too_long {
            if buf.len() + n > max + 2 {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(n);
        if done {
            if too_long {
                return Ok(RawLine {
                    line: Line::TooLong,
                    crlf,
                    bare_cr,
                });
            }
            buf.pop();
            if crlf {
                buf.pop();
            }
            return Ok(RawLine {
                line: Line::Text(buf),
                crlf,
                bare_cr,
            });
        }
    }
}

/// One mail connection.
pub(crate) struct Conn {
    io: BufReader<MailStream>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: Option<TlsInfo>,
}

impl Conn {
    /// A connection in clear.
    pub(crate) fn plain(tcp: TcpStream, peer: SocketAddr) -> Self {
        Conn {
            io: BufReader::new(MailStream::Plain(tcp)),
            peer,
            tls: None,
        }
    }

    /// A newly accepted connection as its listener's mode wants it: the TLS
    /// handshake done first for implicit TLS, in clear otherwise.
    pub(crate) async fn open(
        tcp: TcpStream,
        peer: SocketAddr,
        security: mailtls_core::MailSecurity,
        acceptor: &TlsAcceptor,
    ) -> io::Result<Self> {
        if security.is_implicit() {
            Self::implicit_tls(tcp, peer, acceptor).await
        } else {
            Ok(Self::plain(tcp, peer))
        }
    }

    /// A connection that does the TLS handshake first (implicit TLS).
    pub(crate) async fn implicit_tls(
        tcp: TcpStream,
        peer: SocketAddr,
        acceptor: &TlsAcceptor,
    ) -> io::Result<Self> {
        let tls = handshake(tcp, acceptor).await?;
        let info = TlsInfo::of(&tls);
        Ok(Conn {
            io: BufReader::new(MailStream::Tls(Box::new(tls))),
            peer,
            tls: Some(info),
        })
    }

    /// Whether the client sent more than the STARTTLS command before the
    /// handshake (RFC 3207 §5: such bytes must not be trusted).
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.io.buffer().is_empty()
    }

    /// Upgrades a clear connection to TLS. Anything the client pipelined
    /// after the STARTTLS command is dropped, never read as a command.
    pub(crate) async fn start_tls(self, acceptor: &TlsAcceptor) -> io::Result<Self> {
        let peer = self.peer;
        match self.io.into_inner() {
            MailStream::Plain(tcp) => {
                let tls = handshake(tcp, acceptor).await?;
                let info = TlsInfo::of(&tls);
                Ok(Conn {
                    io: BufReader::new(MailStream::Tls(Box::new(tls))),
                    peer,
                    tls: Some(info),
                })
            }
            MailStream::Tls(_) => Err(io::Error::other("TLS is already active")),
        }
    }

    /// Reads one line of at most `max` bytes.
    pub(crate) async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        read_line(&mut self.io, max).await
    }

    /// Reads one line of at most `max` bytes with how it ended.
    pub(crate) async fn read_raw_line(&mut self, max: usize) -> io::Result<RawLine> {
        read_raw_line(&mut self.io, max).await
    }

    /// Writes and flushes.
    pub(crate) async fn send(&mut self, text: &str) -> io::Result<()> {
        self.send_bytes(text.as_bytes()).await
    }

    /// Writes and flushes.
    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.io.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    /// Closes the write side (sends TLS close_notify first when in TLS).
    pub(crate) async fn close(mut self) {
        let _ = self.io.get_mut().shutdown().await;
    }

    /// Closes the write side, then reads and discards what the client is
    /// still sending (up to [`LINGER_BYTES`], for at most [`LINGER`])
    /// before dropping the socket: closing with unread input makes the
    /// kernel send a reset, which can destroy the final reply before the
    /// client has read it.
    pub(crate) async fn close_lingering(&mut self) {
        let _ = self.io.get_mut().shutdown().await;
        let drain = async {
            let mut seen = 0usize;
            let mut scratch = [0u8; 4096];
            while seen < LINGER_BYTES {
                match tokio::io::AsyncReadExt::read(&mut self.io, &mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

async fn handshake(tcp: TcpStream, acceptor: &TlsAcceptor) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

/// What a session's wait for the next line ended with.
pub(crate) enum Next<L = Line> {
    Line(L),
    /// The server is shutting down.
    Shutdown,
    /// The client said nothing for too long.
    Idle,
}

/// Waits for the next line, the idle timeout, or server shutdown.
pub(crate) async fn next_line(
    conn: &mut Conn,
    max: usize,
    idle: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<Next> {
    tokio::select! {
        r = tokio::time::timeout(idle, conn.read_line(max)) => match r {
            Ok(line) => line.map(Next::Line),
            Err(_) => Ok(Next::Idle),
        },
        () = shutdown_signalled(shutdown) => Ok(Next::Shutdown),
    }
}

/// Waits for the next line as it came ([`RawLine`]), the idle timeout,
/// or server shutdown.
pub(crate) async fn next_raw_line(
    conn: &mut Conn,
    max: usize,
    idle: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<Next<RawLine>> {
    tokio::select! {
        r = tokio::time::timeout(idle, conn.read_raw_line(max)) => match r {
            Ok(line) => line.map(Next::Line),
            Err(_) => Ok(Next::Idle),
        },
        () = shutdown_signalled(shutdown) => Ok(Next::Shutdown),
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
pub(crate) async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// A TLS acceptor for a shared server configuration.
pub(crate) fn acceptor(config: &Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(Arc::clone(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let data: &[u8] = b"short\r\nthis one is far too long\r\nlast\nno-newline";
        let mut r = BufReader::with_capacity(4, data);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"short".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::TooLong);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"last".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn raw_lines_tell_crlf_from_bare_lf_and_bare_cr() {
        // A small buffer so that a CR and its LF arrive in different reads.
        let data: &[u8] = b"a\r\nb\nc\rd\r\n.\r\r\n0123456789abc\r\n0123456789\rxyz\n";
        let mut r = BufReader::with_capacity(2, data);
        let text = |t: &[u8], crlf, bare_cr| RawLine {
            line: Line::Text(t.to_vec()),
            crlf,
            bare_cr,
        };
        assert_eq!(
            read_raw_line(&mut r, 10).await.unwrap(),
            text(b"a", true, false)
        );
        assert_eq!(
            read_raw_line(&mut r, 10).await.unwrap(),
            text(b"b", false, false)
        );
        assert_eq!(
            read_raw_line(&mut r, 10).await.unwrap(),
            text(b"c\rd", true, true)
        );
        assert_eq!(
            read_raw_line(&mut r, 10).await.unwrap(),
            text(b".\r", true, true)
        );
        let long = read_raw_line(&mut r, 10).await.unwrap();
        assert_eq!(
            (long.line, long.crlf, long.bare_cr),
            (Line::TooLong, true, false)
        );
        let long = read_raw_line(&mut r, 10).await.unwrap();
        assert_eq!(
            (long.line, long.crlf, long.bare_cr),
            (Line::TooLong, false, true)
        );
        assert_eq!(read_raw_line(&mut r, 10).await.unwrap().line, Line::Eof);
    }
}
