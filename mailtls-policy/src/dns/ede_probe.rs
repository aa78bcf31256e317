//! Reading the RFC 8914 Extended DNS Error of a SERVFAIL: hickory's
//! resolver does not hand the OPT record of a failed answer back, so
//! [`probe`] asks the same question once more over plain UDP and reads it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use super::ede::ExtendedDnsError;

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
const EDE_OPTION: u16 = 15;

/// Largest UDP answer the probe accepts (the DNS flag day 2020 size).
const PROBE_PAYLOAD: u16 = 1232;

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
    crate::crypto::fill_random(&mut id).then_some(())?;
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
