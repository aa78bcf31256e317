//! RFC 8914 Extended DNS Errors: why an upstream resolver answered SERVFAIL.
//!
//! A strict validating resolver (unbound with `val-permissive-mode: no`)
//! answers bogus data with SERVFAIL, which on its own looks like a transient
//! failure. With `ede: yes` it adds an EDE option to the OPT record naming
//! the DNSSEC cause (RFC 8914 §4.6-§4.13), which turns that SERVFAIL into a
//! verdict: bogus. Hickory's resolver does not hand the OPT record of a
//! failed answer back, so [`probe`] asks the same question once more over
//! plain UDP and reads it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
const EDE_OPTION: u16 = 15;

/// Largest UDP answer the probe accepts (the DNS flag day 2020 size).
const PROBE_PAYLOAD: u16 = 1232;

/// One RFC 8914 Extended DNS Error: the INFO-CODE and the EXTRA-TEXT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtendedDnsError {
    /// The INFO-CODE (RFC 8914 §4, IANA "Extended DNS Error Codes").
    pub code: u16,
    /// The EXTRA-TEXT, empty when the resolver sent none (lossy UTF-8).
    pub text: String,
}

impl ExtendedDnsError {
    /// Reads the option data of an EDE option: a two-byte INFO-CODE and
    /// UTF-8 EXTRA-TEXT (RFC 8914 §2). `None` when shorter than two bytes.
    pub fn from_option_data(data: &[u8]) -> Option<Self> {
        let (code, text) = data.split_first_chunk::<2>()?;
        Some(ExtendedDnsError {
            code: u16::from_be_bytes(*code),
            // RFC 8914 §2: the text "SHOULD NOT" be NUL-terminated; some
            // resolvers do it anyway.
            text: String::from_utf8_lossy(text)
                .trim_end_matches('\0')
                .to_owned(),
        })
    }

    /// Whether the code says DNSSEC validation failed (RFC 8914 §4.6-§4.13:
    /// DNSSEC Indeterminate, DNSSEC Bogus, Signature Expired, Signature Not
    /// Yet Valid, DNSKEY Missing, RRSIGs Missing, No Zone Key Bit Set, NSEC
    /// Missing). Codes 1 and 2 (unsupported algorithm or digest) make a zone
    /// insecure, not bogus, and are not counted.
    pub fn is_dnssec_failure(&self) -> bool {
        (5..=12).contains(&self.code)
    }

    /// The name IANA gives the code, for messages.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            0 => "Other Error",
            1 => "Unsupported DNSKEY Algorithm",
            2 => "Unsupported DS Digest Type",
            3 => "Stale Answer",
            4 => "Forged Answer",
            5 => "DNSSEC Indeterminate",
            6 => "DNSSEC Bogus",
            7 => "Signature Expired",
            8 => "Signature Not Yet Valid",
            9 => "DNSKEY Missing",
            10 => "RRSIGs Missing",
            11 => "No Zone Key Bit Set",
            12 => "NSEC Missing",
            13 => "Cached Error",
            14 => "Not Ready",
            15 => "Blocked",
            16 => "Censored",
            17 => "Filtered",
            18 => "Prohibited",
            19 => "Stale NXDomain Answer",
            20 => "Not Authoritative",
            21 => "Not Supported",
            22 => "No Reachable Authority",
            23 => "Network Error",
            24 => "Invalid Data",
            _ => "unassigned",
        }
    }
}

impl fmt::Display for ExtendedDnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EDE {} ({})", self.code, self.code_name())?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

/// The Extended DNS Errors in a message's OPT record, in order.
pub(super) fn from_message(message: &Message) -> Vec<ExtendedDnsError> {
    let Some(edns) = message.extensions() else {
        return Vec::new();
    };
    edns.options()
        .get_all(EdnsCode::from(EDE_OPTION))
        .into_iter()
        .filter_map(|o| match o {
            EdnsOption::Unknown(_, data) => ExtendedDnsError::from_option_data(data),
            _ => None,
        })
        .collect()
}

/// Asks `server` for `name`/`rtype` once over UDP (RD and DO set, CD clear,
/// as a stub behind a validating resolver asks) and returns the DNSSEC
/// Extended DNS Errors of a SERVFAIL answer. Empty when the answer is not a
/// SERVFAIL, carries no DNSSEC EDE, or does not come in time: the caller
/// then keeps calling it a server failure.
pub(super) async fn probe(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Vec<ExtendedDnsError> {
    tokio::time::timeout(timeout, probe_once(server, name, rtype))
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(ExtendedDnsError::is_dnssec_failure)
        .collect()
}

async fn probe_once(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Option<Vec<ExtendedDnsError>> {
    let mut id = [0u8; 2];
    // A random query id: the probe is a query like any other and must not
    // be easier to spoof.
    aws_lc_rs::rand::fill(&mut id).ok()?;
    let id = u16::from_be_bytes(id);
    let mut query = Message::new();
    query
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(PROBE_PAYLOAD).set_dnssec_ok(true);
    query.set_edns(edns);
    let bytes = query.to_vec().ok()?;

    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(local).await.ok()?;
    socket.connect(server).await.ok()?;
    socket.send(&bytes).await.ok()?;
    let mut buf = vec![0u8; usize::from(PROBE_PAYLOAD) * 4];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        let Some(reply) = buf.get(..n).and_then(|b| Message::from_vec(b).ok()) else {
            continue;
        };
        // Only the answer to this very question counts.
        if reply.id() != id
            || reply.message_type() != MessageType::Response
            || reply.query().map(|q| (q.name(), q.query_type())) != Some((name, rtype))
        {
            continue;
        }
        if reply.response_code() != ResponseCode::ServFail {
            return Some(Vec::new());
        }
        return Some(from_message(&reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_data_is_code_then_text() {
        // RFC 8914 §2: INFO-CODE 7 (Signature Expired) with EXTRA-TEXT.
        let e = ExtendedDnsError::from_option_data(b"\x00\x07sig expired\0").unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.text, "sig expired");
        assert!(e.is_dnssec_failure());
        assert_eq!(e.to_string(), "EDE 7 (Signature Expired): sig expired");
        assert_eq!(ExtendedDnsError::from_option_data(b"\x00"), None);
        let bare = ExtendedDnsError::from_option_data(b"\x00\x16").unwrap();
        assert_eq!(bare.to_string(), "EDE 22 (No Reachable Authority)");
        assert!(!bare.is_dnssec_failure());
    }

    #[test]
    fn only_validation_failures_are_dnssec_failures() {
        let codes: Vec<u16> = (0..30)
            .filter(|&code| {
                ExtendedDnsError {
                    code,
                    text: String::new(),
                }
                .is_dnssec_failure()
            })
            .collect();
        assert_eq!(codes, (5..=12).collect::<Vec<_>>());
    }

    #[test]
    fn reads_every_ede_option_of_a_message() {
        let mut m = Message::new();
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Unknown(EDE_OPTION, b"\x00\x06bogus".to_vec()));
        m.set_edns(edns);
        let bytes = m.to_vec().unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            from_message(&back),
            vec![ExtendedDnsError {
                code: 6,
                text: "bogus".into()
            }]
        );
        assert!(from_message(&Message::new()).is_empty());
    }
}
