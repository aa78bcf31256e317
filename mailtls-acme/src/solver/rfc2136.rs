//! A [`DnsUpdater`] speaking RFC 2136 dynamic update (optionally signed
//! with TSIG, RFC 8945) to the zone's primary server, with a propagation
//! check that queries the server until the TXT value is served.
//!
//! Messages are built with hickory-proto and sent over tokio's UDP socket;
//! the TSIG MAC comes from hickory's `dnssec-aws-lc-rs` or `dnssec-ring`,
//! following this crate's provider feature. Nothing blocks a thread.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

use super::dns01::{DnsUpdater, UpdateFuture};
use crate::error::AcmeError;

/// A TSIG key (RFC 8945) with HMAC-SHA256.
#[derive(Clone)]
pub struct TsigKey {
    name: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key named `name` with the standard-base64 `secret` (as in
    /// `knotc`/`tsig-keygen` output).
    pub fn hmac_sha256(name: impl Into<String>, secret_b64: &str) -> Result<Self, AcmeError> {
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|e| AcmeError::Config(format!("TSIG secret is not base64: {e}")))?;
        Ok(TsigKey {
            name: name.into(),
            secret,
        })
    }
}

/// Publishes dns-01 TXT records by RFC 2136 UPDATE to `server`.
#[derive(Debug, Clone)]
pub struct Rfc2136Updater {
    server: SocketAddr,
    zone: String,
    tsig: Option<TsigKey>,
    ttl: u32,
    timeout: Duration,
    propagation_timeout: Duration,
}

fn dns_err(name: &str, reason: String) -> AcmeError {
    AcmeError::Solver {
        kind: "dns-01".into(),
        identifier: name.to_owned(),
        reason,
    }
}

fn fqdn(name: &str) -> Result<Name, AcmeError> {
    let mut n = Name::from_ascii(name).map_err(|e| dns_err(name, format!("bad DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

impl Rfc2136Updater {
    /// Updates `zone` at the primary `server`; TTL 60 s.
    pub fn new(server: SocketAddr, zone: impl Into<String>) -> Self {
        Rfc2136Updater {
            server,
            zone: zone.into(),
            tsig: None,
            ttl: 60,
            timeout: Duration::from_secs(5),
            propagation_timeout: Duration::from_secs(60),
        }
    }

    /// Signs updates with `key`.
    #[must_use]
    pub fn with_tsig(mut self, key: TsigKey) -> Self {
        self.tsig = Some(key);
        self
    }

    /// Publishes with this TTL (default 60 s).
    #[must_use]
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Waits this long for each answer from the server (default 5 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Gives up waiting for the record to be served after `timeout`.
    #[must_use]
    pub fn with_propagation_timeout(mut self, timeout: Duration) -> Self {
        self.propagation_timeout = timeout;
        self
    }

    async fn exchange(&self, name: &str, mut message: Message) -> Result<Message, AcmeError> {
        // A random id: an off-path forger must guess it (with the port).
        message.set_id(crate::crypto::random_u64()? as u16);
        let mut verifier = None;
        if let Some(key) = &self.tsig {
            let signer = TSigner::new(
                key.secret.clone(),
                TsigAlgorithm::HmacSha256,
                fqdn(&key.name)?,
                300,
            )
            .map_err(|e| dns_err(name, format!("TSIG key: {e}")))?;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            verifier = message
                .finalize(&signer, u32::try_from(now).unwrap_or(u32::MAX))
                .map_err(|e| dns_err(name, format!("TSIG signing: {e}")))?;
        }
        let bytes = message
            .to_vec()
            .map_err(|e| dns_err(name, format!("encoding: {e}")))?;
        let bind: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| dns_err(name, format!("socket: {e}")))?;
        sock.connect(self.server)
            .await
            .map_err(|e| dns_err(name, format!("connect {}: {e}", self.server)))?;
        sock.send(&bytes)
            .await
            .map_err(|e| dns_err(name, format!("send to {}: {e}", self.server)))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = tokio::time::timeout(self.timeout, sock.recv(&mut buf))
                .await
                .map_err(|_| dns_err(name, format!("no answer from {}", self.server)))?
                .map_err(|e| dns_err(name, format!("receive: {e}")))?;
            let reply = &buf[..n];
            let response = match verifier.as_mut() {
                Some(verify) => verify(reply)
                    .map_err(|e| dns_err(name, format!("TSIG check of the answer: {e}")))?
                    .into_message(),
                None => Message::from_vec(reply)
                    .map_err(|e| dns_err(name, format!("bad answer: {e}")))?,
            };
            // A stray datagram with another id is not our answer.
            if response.id() == message.id() {
                return Ok(response);
            }
        }
    }

    async fn update(&self, name: &str, value: &str, add: bool) -> Result<(), AcmeError> {
        let zone = fqdn(&self.zone)?;
        let mut message = Message::new();
        message
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .set_recursion_desired(false);
        let mut zone_query = Query::new();
        zone_query
            .set_name(zone)
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        message.add_zone(zone_query);
        let mut record = Record::from_rdata(
            fqdn(name)?,
            self.ttl,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        );
        if !add {
            // RFC 2136 §2.5.4: delete one RR from an RRset: class NONE, TTL 0.
            record.set_dns_class(DNSClass::NONE).set_ttl(0);
        }
        // Adding (§2.5.1) leaves other values of the RRset alone, so a
        // wildcard's and its apex's values coexist.
        message.add_update(record);
        let response = self.exchange(name, message).await?;
        if response.response_code() != ResponseCode::NoError {
            return Err(dns_err(
                name,
                format!(
                    "{} refused the update: {}",
                    self.server,
                    response.response_code()
                ),
            ));
        }
        Ok(())
    }

    /// Whether `server` serves `value` in the TXT RRset of `name`.
    pub async fn serves_txt(&self, name: &str, value: &str) -> Result<bool, AcmeError> {
        let mut message = Message::new();
        message
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(false);
        message.add_query(Query::query(fqdn(name)?, RecordType::TXT));
        // Queries go unsigned: the check must see what validators see.
        let plain = Rfc2136Updater {
            tsig: None,
            ..self.clone()
        };
        let response = plain.exchange(name, message).await?;
        Ok(response.answers().iter().any(|r| match r.data() {
            RData::TXT(txt) => txt.txt_data().iter().any(|d| &**d == value.as_bytes()),
            _ => false,
        }))
    }
}

impl DnsUpdater for Rfc2136Updater {
    fn add_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a> {
        Box::pin(async move {
            self.update(name, value, true).await?;
            let start = Instant::now();
            let mut wait = Duration::from_millis(100);
            while !self.serves_txt(name, value).await? {
                if start.elapsed() > self.propagation_timeout {
                    return Err(dns_err(
                        name,
                        format!("{} still does not serve the TXT value", self.server),
                    ));
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Ok(())
        })
    }

    fn remove_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a> {
        Box::pin(self.update(name, value, false))
    }
}
