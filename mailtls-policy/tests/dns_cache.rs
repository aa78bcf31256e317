//! The answer cache of `HickoryResolver`: a tiny UDP name server on loopback
//! (answers built with hickory-proto) counts the queries that reach it, so
//! each test sees whether a lookup came from the cache or the wire. The
//! last test checks that a DNSSEC-authentic answer stays authentic from the
//! cache, validating against Knot in the world of `dns_world` (Debian `knot`,
//! `unbound`, `ldnsutils`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dns_world;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType as HType};
use mailtls_core::DnsName;
use mailtls_policy::dns::{
    DnsCacheConfig, DnsError, DnsResolver, DnssecStatus, HickoryResolver, HickoryResolverConfig,
    QueryName, Validation,
};

fn h(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn q(s: &str) -> QueryName {
    QueryName::parse(s).unwrap()
}

/// The zone `test.` as the responder serves it; the SOA MINIMUM is 2 s, its
/// own TTL 3600 s, so negative answers may be cached for 2 s (RFC 2308 §5).
///
/// - `short.test` A 127.0.0.1, TTL 1; `long.test` TXT, TTL 300;
/// - `_mta-sts.nopolicy.test`: NXDOMAIN with the SOA;
/// - `nodata.test` TXT: no data (NOERROR, empty) with the SOA;
/// - `nosoa.test`: NXDOMAIN without an SOA (not cacheable).
struct Responder {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, HType)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

fn soa() -> Record {
    let soa = SOA::new(
        Name::from_str("ns.test.").unwrap(),
        Name::from_str("hostmaster.test.").unwrap(),
        1,
        3600,
        600,
        86_400,
        2,
    );
    Record::from_rdata(Name::from_str("test.").unwrap(), 3600, RData::SOA(soa))
}

impl Responder {
    fn start() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (stop.clone(), asked.clone());
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
                    .set_authoritative(true);
                let mut code = ResponseCode::NoError;
                for question in query.queries() {
                    reply.add_query(question.clone());
                    let name = question.name().to_ascii().to_ascii_lowercase();
                    let name = name.trim_end_matches('.').to_string();
                    let qtype = question.query_type();
                    log.lock().unwrap().push((name.clone(), qtype));
                    let owner = question.name().clone();
                    match (name.as_str(), qtype) {
                        ("short.test", HType::A) => {
                            reply.add_answer(Record::from_rdata(
                                owner,
                                1,
                                RData::A(A::new(127, 0, 0, 1)),
                            ));
                        }
                        ("long.test", HType::TXT) => {
                            reply.add_answer(Record::from_rdata(
                                owner,
                                300,
                                RData::TXT(TXT::new(vec!["v=STSv1; id=1".into()])),
                            ));
                        }
                        ("_mta-sts.nopolicy.test", _) => {
                            code = ResponseCode::NXDomain;
                            reply.add_name_server(soa());
                        }
                        ("nosoa.test", _) => code = ResponseCode::NXDomain,
                        _ => {
                            reply.add_name_server(soa());
                        }
                    }
                }
                reply.set_response_code(code);
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
            }
        });
        Responder {
            addr,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    /// How many queries for `name` and `qtype` arrived so far.
    fn count(&self, name: &str, qtype: HType) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == name && *t == qtype)
            .count()
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

fn resolver(addr: SocketAddr, cache: DnsCacheConfig) -> HickoryResolver {
    let mut config = HickoryResolverConfig::nameserver(addr, Validation::Off);
    config.timeout = Duration::from_secs(2);
    config.cache = cache;
    HickoryResolver::new(config).unwrap()
}

#[tokio::test]
async fn positive_answer_is_cached_until_its_ttl_runs_out() {
    let server = Responder::start();
    let dns = resolver(server.addr, DnsCacheConfig::default());

    let first = dns.txt(&q("long.test")).await.unwrap();
    assert_eq!(first.records[0].strings, vec![b"v=STSv1; id=1".to_vec()]);
    assert_eq!(first.ttl, 300);
    assert_eq!(server.count("long.test", HType::TXT), 1);
    let again = dns.txt(&q("long.test")).await.unwrap();
    assert_eq!(again.records, first.records);
    assert_eq!(again.dnssec, DnssecStatus::NotValidated);
    assert!(again.ttl <= 300 && again.ttl >= 299, "{again:?}");
    assert_eq!(
        server.count("long.test", HType::TXT),
        1,
        "second lookup hit"
    );

    // TTL 1: cached for a second, asked again after.
    dns.a(&h("short.test")).await.unwrap();
    dns.a(&h("short.test")).await.unwrap();
    assert_eq!(server.count("short.test", HType::A), 1);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let late = dns.a(&h("short.test")).await.unwrap();
    assert_eq!(late.records, vec![Ipv4Addr::new(127, 0, 0, 1)]);
    assert_eq!(server.count("short.test", HType::A), 2, "expired entry");

    let stats = dns.cache_stats();
    assert_eq!((stats.hits, stats.misses), (2, 3), "{stats:?}");
    dns.clear_cache();
    assert_eq!(dns.cache_stats().entries, 0);
    dns.txt(&q("long.test")).await.unwrap();
    assert_eq!(server.count("long.test", HType::TXT), 2, "after clear");
}

#[tokio::test]
async fn nxdomain_and_nodata_are_cached_for_the_soa_minimum() {
    let server = Responder::start();
    let dns = resolver(server.addr, DnsCacheConfig::default());
    let name = q("_mta-sts.nopolicy.test");

    for _ in 0..3 {
        let e = dns.txt(&name).await.unwrap_err();
        assert!(matches!(e, DnsError::NxDomain { .. }), "{e:?}");
    }
    assert_eq!(server.count("_mta-sts.nopolicy.test", HType::TXT), 1);
    for _ in 0..2 {
        let e = dns.txt(&q("nodata.test")).await.unwrap_err();
        assert!(matches!(e, DnsError::NoData { .. }), "{e:?}");
    }
    assert_eq!(server.count("nodata.test", HType::TXT), 1);

    // MINIMUM 2 s (smaller than the SOA's TTL of 3600 s): gone after it.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let e = dns.txt(&name).await.unwrap_err();
    assert!(matches!(e, DnsError::NxDomain { .. }), "{e:?}");
    assert_eq!(server.count("_mta-sts.nopolicy.test", HType::TXT), 2);
    dns.txt(&q("nodata.test")).await.unwrap_err();
    assert_eq!(server.count("nodata.test", HType::TXT), 2);

    // No SOA, no negative caching (RFC 2308 §5).
    dns.txt(&q("nosoa.test")).await.unwrap_err();
    dns.txt(&q("nosoa.test")).await.unwrap_err();
    assert_eq!(server.count("nosoa.test", HType::TXT), 2);
}

#[tokio::test]
async fn negative_cap_and_disabled_cache() {
    let server = Responder::start();
    let mut capped = DnsCacheConfig::default();
    capped.max_negative_ttl = Duration::from_secs(1);
    let dns = resolver(server.addr, capped);
    dns.txt(&q("nodata.test")).await.unwrap_err();
    dns.txt(&q("nodata.test")).await.unwrap_err();
    assert_eq!(server.count("nodata.test", HType::TXT), 1);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    dns.txt(&q("nodata.test")).await.unwrap_err();
    assert_eq!(server.count("nodata.test", HType::TXT), 2, "capped at 1 s");

    let uncached = resolver(server.addr, DnsCacheConfig::disabled());
    uncached.txt(&q("long.test")).await.unwrap();
    uncached.txt(&q("long.test")).await.unwrap();
    let stats = uncached.cache_stats();
    assert_eq!((stats.hits, stats.entries), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn small_cache_stays_bounded() {
    let server = Responder::start();
    let mut small = DnsCacheConfig::default();
    small.max_entries = 4;
    let dns = resolver(server.addr, small);
    for i in 0..20 {
        dns.txt(&q(&format!("n{i}.test"))).await.unwrap_err();
    }
    let stats = dns.cache_stats();
    assert_eq!(stats.entries, 4, "{stats:?}");
    assert_eq!(stats.evictions, 16, "{stats:?}");
}

#[tokio::test]
async fn authentic_answers_stay_authentic_from_the_cache() {
    let missing = dns_world::missing_tools();
    // A missing peer fails the test: CI installs them (scripts/install-test-deps.sh).
    assert!(
        missing.is_empty(),
        "the DNSSEC test world needs {missing:?} (apt-get install -y knot unbound ldnsutils)"
    );
    let world = dns_world::DnssecWorld::start(dns_world::UnboundMode::Strict);
    // Straight to Knot: the world's Unbound hands out TTL 0 (it caches
    // nothing, so tests can change zones), which nobody may cache.
    let mut config =
        HickoryResolverConfig::nameserver(world.knot, Validation::AnchorFile(world.anchor.clone()));
    config.timeout = Duration::from_secs(3);
    let dns = HickoryResolver::new(config).unwrap();

    let first = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(first.dnssec, DnssecStatus::Authentic, "{first:?}");
    let nx = dns.mx(&h("nothing.secure.example")).await.unwrap_err();
    let insecure = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let misses = dns.cache_stats().misses;

    let again = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(again.dnssec, DnssecStatus::Authentic, "{again:?}");
    assert_eq!(again.records, first.records);
    assert_eq!(dns.mx(&h("nothing.secure.example")).await.unwrap_err(), nx);
    assert_eq!(
        nx.denial_status(),
        Some(DnssecStatus::Authentic),
        "authenticated denial: {nx:?}"
    );
    let insecure_again = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure_again.dnssec, DnssecStatus::Insecure);
    let stats = dns.cache_stats();
    assert_eq!(stats.misses, misses, "all three from the cache: {stats:?}");
    assert_eq!(stats.hits, 3, "{stats:?}");

    // Bogus answers are not cached: asked again every time.
    for _ in 0..2 {
        let bogus = dns.mx(&h("bogus.example")).await.unwrap();
        assert_eq!(bogus.dnssec, DnssecStatus::Bogus, "{bogus:?}");
    }
    let after = dns.cache_stats();
    assert_eq!(after.misses, stats.misses + 2, "{after:?}");
    assert_eq!(after.entries, stats.entries, "{after:?}");
}
