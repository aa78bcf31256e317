//! mailtls-policy-check against a loopback DNS responder serving an
//! unsigned test domain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const BIN: &str = env!("CARGO_BIN_EXE_mailtls-policy-check");

/// Answers MX for `test.example`, A for `mx.test.example`; every other
/// question gets an empty NOERROR answer (no data), so there is no
/// `_mta-sts` record and no TLSA record.
struct Responder {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Responder {
    fn start() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::new();
                reply
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(query.op_code())
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true)
                    .set_authoritative(true)
                    .set_response_code(ResponseCode::NoError);
                for q in query.queries() {
                    reply.add_query(q.clone());
                    let name = q.name().to_ascii().to_ascii_lowercase();
                    let name = name.trim_end_matches('.');
                    let rdata = match (name, q.query_type()) {
                        ("test.example", RecordType::MX) => Some(RData::MX(MX::new(
                            10,
                            Name::from_str("mx.test.example.").unwrap(),
                        ))),
                        ("mx.test.example", RecordType::A) => Some(RData::A(A::new(127, 0, 0, 1))),
                        _ => None,
                    };
                    if let Some(rdata) = rdata {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 300, rdata));
                    }
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
            }
        });
        Responder {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn prints_mx_mta_sts_and_plan() {
    let dns = Responder::start();
    let out = Command::new(BIN)
        .args([
            "--domain",
            "test.example",
            "--resolver",
            &dns.addr.to_string(),
            "--no-validation",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("MX (DNSSEC: "), "{stdout}");
    assert!(stdout.contains("10 mx.test.example"), "{stdout}");
    assert!(stdout.contains("127.0.0.1"), "{stdout}");
    assert!(
        stdout.contains("MTA-STS: no policy (no _mta-sts record)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mx.test.example: not applicable"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1. mx.test.example (preference 10"),
        "{stdout}"
    );
    assert!(stdout.contains("opportunistic TLS"), "{stdout}");
}

#[test]
fn requiretls_without_authentication_fails_the_host() {
    let dns = Responder::start();
    let out = Command::new(BIN)
        .args([
            "--domain",
            "test.example",
            "--resolver",
            &dns.addr.to_string(),
            "--no-validation",
            "--requiretls",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1. mx.test.example"), "{stdout}");
    assert!(stdout.contains(": fail now 5.7.30"), "{stdout}");
    assert!(!stdout.contains("opportunistic TLS"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage: mailtls-policy-check --domain DOMAIN"),
        (&["--resolver", "127.0.0.1:53"], "--domain <DOMAIN>"),
        (
            &["--domain", "test.example", "--resolver", "not-an-address"],
            "invalid value 'not-an-address' for '--resolver <IP:PORT>'",
        ),
        (
            &["--domain", "test.example", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            &[
                "--domain",
                "test.example",
                "--resolver",
                "127.0.0.1:53",
                "--no-validation",
                "--trust-anchor",
                "x",
            ],
            "'--no-validation' cannot be used with '--trust-anchor <FILE>'",
        ),
        (
            &[
                "--domain",
                "test.example",
                "--resolver",
                "127.0.0.1:53",
                "--policy-port",
                "0",
            ],
            "invalid value '0' for '--policy-port <N>'",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
}
