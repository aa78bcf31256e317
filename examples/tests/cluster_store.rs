//! Two reference servers on one PostgreSQL database (`[store] kind =
//! "postgres"`): TLS-RPT counts from both nodes come out as one report per
//! domain and day with the sum of both, counts a node left in its local log
//! when it stopped are not lost, and the status page shows the store and
//! the nodes. PostgreSQL runs as an unprivileged user on loopback; the
//! `_smtp._tls` record comes from a DNSSEC-signed test zone (NSD).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod outbound_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailtls_core::postgres::PgSchema;
use mailtls_examples::Config;
use mailtls_examples::store::{PostgresSection, StoreSection};
use mailtls_examples::tlsrpt_run::{MailerFuture, ReportMailer};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{
    Collector, FailureOutcome, PolicyRef, ReceivedSummary, SessionOutcome, parse_received,
};
use mailtls_testpeers::Postgres;
use outbound_support::{SignedRoot, eventually};
use time::{Date, OffsetDateTime, Time};

const STRINGS: [&str; 4] = [
    "version: STSv1",
    "mode: enforce",
    "mx: mx.rpt.test",
    "max_age: 86400",
];
const MX: [&str; 1] = ["mx.rpt.test"];

fn ok() -> SessionOutcome<'static> {
    SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::Sts,
            domain: "rpt.test",
            strings: &STRINGS,
            mx_hosts: &MX,
        },
        mx_host: "mx.rpt.test",
        failure: None,
    }
}

fn failed() -> SessionOutcome<'static> {
    SessionOutcome {
        failure: Some(FailureOutcome {
            result_type: ResultType::CertificateExpired,
            sending_mta_ip: None,
            receiving_ip: Some("203.0.113.9".parse().unwrap()),
            receiving_mx_helo: None,
            failure_reason_code: None,
            additional_information: None,
        }),
        ..ok()
    }
}

/// Keeps every report mail handed to it.
#[derive(Default)]
struct Captured(Mutex<Vec<(String, Vec<u8>)>>);

impl ReportMailer for Captured {
    fn send(&self, _from: String, rcpt: String, message: Vec<u8>) -> MailerFuture<'_> {
        self.0.lock().unwrap().push((rcpt, message));
        Box::pin(async { Ok("captured".to_owned()) })
    }
}

/// A node: the embedded defaults with the shared store, TLS-RPT reports on,
/// DNS from the signed test zone, its data in `data_dir`.
fn node_config(c: &mut Config, pg: &Postgres, world: &SignedRoot, name: &str, data_dir: &Path) {
    c.server.data_dir = data_dir.to_owned();
    c.web.mode = mailtls_core::WebSecurity::HttpAndHttps;
    c.store = StoreSection::Postgres(
        PostgresSection::new(pg.url(), name)
            .with_schema(PgSchema::new("cluster").unwrap())
            .with_flush_interval(Duration::from_secs(1)),
    );
    c.outbound.dns_server = Some(world.addr);
    c.outbound.trust_anchor = Some(world.anchor.clone());
    let r = &mut c.tlsrpt_reports;
    r.enabled = true;
    r.submitter = mailtls_core::DnsName::parse("sender.example").unwrap();
    r.sender = "tlsrpt@sender.example".into();
}

/// Counts are recorded for today and reported by runs made as if it were
/// noon tomorrow: the servers' own schedules (running at the real time) do
/// not find them due, so only the runs this test makes send reports.
fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_one_report_with_both_counts_and_lose_none_at_a_stop() {
    let pg = Postgres::start();
    let world =
        SignedRoot::start("_smtp._tls.rpt.test. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@rpt.test\"\n");
    let dir_a = common::private_tempdir();
    let dir_b = common::private_tempdir();
    let a = common::start(|c, _| node_config(c, &pg, &world, "node-a", dir_a.path())).await;
    let b = common::start(|c, _| node_config(c, &pg, &world, "node-b", dir_b.path())).await;
    let (run_a, run_b) = (a.server.tlsrpt().unwrap(), b.server.tlsrpt().unwrap());
    // The schedules' first runs must not take the counts recorded below
    // before the runs this test makes.
    for run in [run_a, run_b] {
        eventually(Duration::from_secs(20), "the schedule's first run", || {
            run.last_run().map(|_| ())
        })
        .await;
    }

    let day = today();
    for _ in 0..7 {
        run_a.collector().record_on(day, &ok()).unwrap();
    }
    run_a.collector().record_on(day, &failed()).unwrap();
    for _ in 0..5 {
        run_b.collector().record_on(day, &ok()).unwrap();
    }
    assert_eq!(run_a.flush_shared().await.unwrap(), 8);
    assert_eq!(run_b.flush_shared().await.unwrap(), 5);

    // Node B stops; then three sessions it had counted in its local log but
    // not moved yet (as when it dies before its next flush) are found there
    // by the next start, which moves them first.
    b.server.shutdown().await;
    {
        let log = Collector::open(dir_b.path().join("tlsrpt")).unwrap();
        for _ in 0..3 {
            log.record_on(day, &ok()).unwrap();
        }
    }
    let b = common::start(|c, _| node_config(c, &pg, &world, "node-b", dir_b.path())).await;
    let run_b = b.server.tlsrpt().unwrap();
    eventually(Duration::from_secs(20), "node B's first flush", || {
        run_b.collector().snapshot().is_empty().then_some(())
    })
    .await;

    // Both nodes run the daily step at the same moment, at noon tomorrow.
    let noon = day
        .next_day()
        .unwrap()
        .with_time(Time::from_hms(12, 0, 0).unwrap())
        .assume_utc();
    let mailer = Arc::new(Captured::default());
    let (ra, rb) = tokio::join!(
        run_a.run_with(mailer.as_ref(), noon),
        run_b.run_with(mailer.as_ref(), noon)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 1, "{ra:?} {rb:?}");
    let mails = mailer.0.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "one report for the whole cluster");
    assert_eq!(mails[0].0, "tlsrpt@rpt.test");
    let summary = ReceivedSummary::of(&parse_received(&mails[0].1).unwrap());
    assert_eq!(
        summary.per_day[&(day, Some("rpt.test".into()))],
        (15, 1),
        "7 + 5 + 3 successful sessions from both nodes, 1 failed"
    );

    let status = common::status_json(&a).await;
    assert_eq!(status["store"]["kind"], "postgres", "{}", status["store"]);
    assert_eq!(status["store"]["node"], "node-a");
    let nodes: Vec<&str> = status["store"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(
        nodes.contains(&"node-a") && nodes.contains(&"node-b"),
        "{nodes:?}"
    );
    let sent = status["tlsrpt"]["last_sent"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "node A sees the report node B may have sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_store_setting_names_its_key() {
    let mut text = mailtls_examples::config::DEFAULT_CONFIG_TOML.replace(
        "kind = \"file\"",
        "kind = \"postgres\"\nurl = \"postgresql://mailtls@127.0.0.1/mailtls\"\nschema = \"Bad-Name\"",
    );
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("store.schema"), "{err}");
    text = mailtls_examples::config::DEFAULT_CONFIG_TOML
        .replace("kind = \"file\"", "kind = \"postgres\"");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("store.url"), "{err}");
    text = mailtls_examples::config::DEFAULT_CONFIG_TOML
        .replace("kind = \"file\"", "kind = \"redis\"");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("store.kind"), "{err}");
}
