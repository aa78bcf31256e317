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
use hickory_proto::rr::rdata::{A, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const BIN: &str = env!("CARGO_BIN_EXE_mailtls-policy-check");

/// Answers MX for `test.example` and `sts.example`, A for
/// `mx.test.example`, and for `_mta-sts.sts.example` one MTA-STS record
/// beside a `v=STSv10` record (which RFC 8461 §3.1 discards); every other
/// question gets an empty NOERROR answer (no data), so `test.example` has
/// no `_mta-sts` record and nothing has a TLSA record.
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
                    let txt = |t: &str| RData::TXT(TXT::new(vec![t.to_owned()]));
                    let rdata = match (name, q.query_type()) {
                        ("test.example" | "sts.example", RecordType::MX) => vec![RData::MX(
                            MX::new(10, Name::from_str("mx.test.example.").unwrap()),
                        )],
                        ("mx.test.example", RecordType::A) => vec![RData::A(A::new(127, 0, 0, 1))],
                        ("_mta-sts.sts.example", RecordType::TXT) => {
                            vec![txt("v=STSv10; id=other"), txt("v=STSv1; id=real1")]
                        }
                        ("_smtp._tls.sts.example", RecordType::TXT) => vec![
                            txt("v=TLSRPTv10; rua=mailto:other@sts.example"),
                            txt("v=TLSRPTv1; rua=mailto:bang!path@sts.example"),
                        ],
                        ("_smtp._tls.test.example", RecordType::TXT) => vec![txt(
                            "v=TLSRPTv1; rua=mailto:tls%21rpt@test.example; rua=https://r.test.example/t",
                        )],
                        _ => Vec::new(),
                    };
                    for rdata in rdata {
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

/// Runs the tool for `domain` against a fresh responder, without DNSSEC
/// validation, with `extra` arguments.
fn check(domain: &str, extra: &[&str]) -> std::process::Output {
    let dns = Responder::start();
    let server = dns.addr.to_string();
    let mut args = vec!["--domain", domain, "--resolver", &server, "--no-validation"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().unwrap()
}

#[test]
fn prints_mx_mta_sts_and_plan() {
    let out = check("test.example", &[]);
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
    assert!(stdout.contains("SNI mx.test.example"), "{stdout}");
    // RFC 8460 §3: both rua fields count; %21 is a '!'.
    assert!(
        stdout
            .contains("TLS-RPT: reports to mailto:tls!rpt@test.example, https://r.test.example/t"),
        "{stdout}"
    );
}

/// RFC 8461 §3.1: `v=STSv10` beside the real record is not a second
/// MTA-STS record, so the tool goes on to fetch the policy (which fails
/// here: the policy host does not resolve) instead of reporting "more than
/// one record".
#[test]
fn sts_record_selection_follows_rfc_8461_section_3_1() {
    let out = check("sts.example", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MTA-STS: policy fetch failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("invalid _mta-sts record"), "{stdout}");
    // RFC 8460 §3: v=TLSRPTv10 is not a second record; the real one has an
    // unencoded '!', so it is invalid and nothing is reported.
    assert!(
        stdout.contains("TLS-RPT: invalid TLS-RPT record, so no reports are sent"),
        "{stdout}"
    );
}

#[test]
fn requiretls_without_authentication_fails_the_host() {
    let out = check("test.example", &["--requiretls"]);
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
