//! TLS-RPT in the reference server, against real peers on loopback:
//! - a daily report built from recorded outcomes is POSTed to an HTTPS
//!   endpoint (Python's http.server behind ssl), retried after a 503, and
//!   parsedmarc (PyPI) reads the same counts from what arrived;
//! - the mail form reaches an SMTP server (aiosmtpd, PyPI) and its DKIM
//!   signature verifies with dkimpy (PyPI);
//! - reports made and mailed by sys4's tlsrpt-reporter (PyPI) into the
//!   running server show up in the received summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_examples::tlsrpt_run::{DkimAlgorithm, MailerFuture, ReportMailer, TlsRptRun};
use mailtls_examples::{Config, MailListener};
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::delivery::{MailSubmitter, SmtpSubmitter, SubmissionTls};
use mailtls_policy::tlsrpt::{
    Collector, FailureOutcome, PolicyRef, ReceivedSummary, SessionOutcome, parse_received,
};
use serde_json::Value;
use time::{Date, OffsetDateTime, Time};

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `python3 -c script args...` and waits for its first stdout line.
fn start_python(script: &str, args: &[&str]) -> (Reaper, String) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Reaper(child), line.trim().to_owned())
}

/// An HTTPS endpoint answering with the status in DIR/status and saving
/// the last POST body and its content type.
const HTTPS_SERVER: &str = "import ssl, sys, http.server\n\
class H(http.server.BaseHTTPRequestHandler):\n\
\x20   def do_POST(self):\n\
\x20       body = self.rfile.read(int(self.headers['Content-Length']))\n\
\x20       status = int(open(sys.argv[3] + '/status').read())\n\
\x20       if status == 200:\n\
\x20           open(sys.argv[3] + '/body', 'wb').write(body)\n\
\x20           open(sys.argv[3] + '/meta', 'w').write(self.headers['Content-Type'] + ' ' + self.path)\n\
\x20       self.send_response(status)\n\
\x20       self.send_header('Content-Length', '0')\n\
\x20       self.end_headers()\n\
\x20   def log_message(self, *a):\n\
\x20       pass\n\
srv = http.server.HTTPServer(('127.0.0.1', 0), H)\n\
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n\
print(srv.server_address[1], flush=True)\n\
srv.serve_forever()\n";

/// An SMTP server (aiosmtpd) saving each message as DIR/N.eml and its
/// envelope as DIR/N.env.
const SMTP_SERVER: &str = r#"
import sys, time, itertools
from aiosmtpd.controller import Controller
n = itertools.count()
class H:
    async def handle_DATA(self, server, session, envelope):
        i = next(n)
        open('%s/%d.eml' % (sys.argv[1], i), 'wb').write(envelope.original_content)
        open('%s/%d.env' % (sys.argv[1], i), 'w').write('%s %s' % (envelope.mail_from, ','.join(envelope.rcpt_tos)))
        return '250 OK'
c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[2]))
c.start()
print('ready', flush=True)
while True:
    time.sleep(3600)
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mailer that must not be used (HTTPS-only tests).
struct NoMail;

impl ReportMailer for NoMail {
    fn send(&self, _from: String, rcpt: String, _message: Vec<u8>) -> MailerFuture<'_> {
        Box::pin(async move { Err(format!("no mail expected (to {rcpt})")) })
    }
}

/// Report mails submitted over SMTP to a real server.
struct SmtpMailer(SmtpSubmitter);

impl ReportMailer for SmtpMailer {
    fn send(&self, from: String, rcpt: String, message: Vec<u8>) -> MailerFuture<'_> {
        Box::pin(async move {
            self.0.submit(&from, &rcpt, &message).await?;
            Ok("smtp".to_owned())
        })
    }
}

/// The UTC day before today, and noon today: the report for yesterday is
/// due then under the default window (00:30 to 04:30).
fn yesterday_and_noon() -> (Date, OffsetDateTime) {
    let today = OffsetDateTime::now_utc().date();
    let noon = today
        .with_time(Time::from_hms(12, 0, 0).unwrap())
        .assume_utc();
    (today.previous_day().unwrap(), noon)
}

/// Records 57 successful and 5 failed sessions (3 certificate-expired,
/// 2 starttls-not-supported) under an MTA-STS policy of example.org.
fn record_sample(c: &Collector, day: Date) {
    let strings = [
        "version: STSv1",
        "mode: enforce",
        "mx: mx.example.org",
        "max_age: 86400",
    ];
    let mx = ["mx.example.org"];
    let policy = PolicyRef {
        policy_type: PolicyType::Sts,
        domain: "example.org",
        strings: &strings,
        mx_hosts: &mx,
    };
    let ok = SessionOutcome {
        policy,
        mx_host: "mx.example.org",
        failure: None,
    };
    for _ in 0..57 {
        c.record_on(day, &ok).unwrap();
    }
    let fail = |rt| SessionOutcome {
        failure: Some(FailureOutcome {
            result_type: rt,
            sending_mta_ip: Some("192.0.2.1".parse().unwrap()),
            receiving_ip: Some("203.0.113.25".parse().unwrap()),
            receiving_mx_helo: None,
            failure_reason_code: None,
            additional_information: None,
        }),
        ..ok
    };
    for _ in 0..3 {
        c.record_on(day, &fail(ResultType::CertificateExpired))
            .unwrap();
    }
    for _ in 0..2 {
        c.record_on(day, &fail(ResultType::StarttlsNotSupported))
            .unwrap();
    }
}

fn sending_config(data: &Path) -> Config {
    let mut config = common::test_config(data);
    let r = &mut config.tlsrpt_reports;
    r.enabled = true;
    r.submitter = DnsName::parse("sender.example").unwrap();
    r.sender = "tlsrpt@sender.example".into();
    r.organization_name = "mailtls test sender".into();
    r.contact_info = "mailto:postmaster@sender.example".into();
    config
}

fn parsedmarc_counts(path: &Path) -> (String, u64, u64, u64) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, json, parsedmarc\n\
             r = parsedmarc.parse_report_file(sys.argv[1], offline=True)\n\
             print(json.dumps(r, default=str))",
        )
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "parsedmarc failed (pip install parsedmarc): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report_type"], "smtp_tls", "{v}");
    let report = &v["report"];
    let (mut ok, mut failed, mut detail) = (0, 0, 0);
    for p in report["policies"].as_array().unwrap() {
        assert_eq!(p["policy_domain"], "example.org");
        ok += p["successful_session_count"].as_u64().unwrap();
        failed += p["failed_session_count"].as_u64().unwrap();
        for d in p["failure_details"].as_array().into_iter().flatten() {
            detail += d["failed_session_count"].as_u64().unwrap();
        }
    }
    (
        report["report_id"].as_str().unwrap_or_default().to_owned(),
        ok,
        failed,
        detail,
    )
}

#[tokio::test]
async fn https_report_is_retried_then_read_by_parsedmarc_with_the_same_counts() {
    let dir = common::private_tempdir();
    let web = dir.path().join("web");
    std::fs::create_dir(&web).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert_pem, key_pem) = (web.join("cert.pem"), web.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(web.join("status"), "503").unwrap();
    let (_endpoint, port) = start_python(
        HTTPS_SERVER,
        &[
            cert_pem.to_str().unwrap(),
            key_pem.to_str().unwrap(),
            web.to_str().unwrap(),
        ],
    );
    let port: u16 = port.parse().expect("the HTTPS endpoint prints its port");

    let mut config = sending_config(&dir.path().join("data"));
    config.tlsrpt_reports.dkim_algorithm = DkimAlgorithm::Ed25519;
    config.tlsrpt_reports.https_ca_file = Some(cert_pem.clone());
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let (yesterday, noon) = yesterday_and_noon();
    record_sample(&collector, yesterday);
    // Today's sessions are counted on the status page and not reported yet.
    let strings: [&str; 0] = [];
    for _ in 0..4 {
        collector
            .record_on(
                noon.date(),
                &SessionOutcome {
                    policy: PolicyRef {
                        policy_type: PolicyType::NoPolicyFound,
                        domain: "example.net",
                        strings: &strings,
                        mx_hosts: &strings,
                    },
                    mx_host: "mx.example.net",
                    failure: None,
                },
            )
            .unwrap();
    }
    let dns = StaticResolver::builder()
        .txt(
            "_smtp._tls.example.org",
            &format!("v=TLSRPTv1; rua=https://127.0.0.1:{port}/v1/tlsrpt"),
        )
        .build()
        .unwrap();
    let run = TlsRptRun::new(&config, Arc::clone(&collector), Arc::new(dns)).unwrap();
    assert!(run.sending());

    // The endpoint is down: the report is queued, kept and the counts are
    // forgotten only because the report is safely in the outbox.
    let first = run.run_with(&NoMail, noon).await.unwrap();
    assert_eq!((first.queued, first.delivered, first.deferred), (1, 0, 1));
    assert_eq!(
        collector.snapshot().totals(yesterday, "example.org"),
        (0, 0)
    );
    let status = run.status().await;
    let [pending] = status.pending.as_slice() else {
        panic!("{status:?}")
    };
    assert!(
        pending.last_error.as_deref().unwrap_or("").contains("503"),
        "{pending:?}"
    );
    assert!(status.last_sent.is_empty());

    // Too early for the retry: nothing happens.
    let early = run
        .run_with(&NoMail, noon + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((early.queued, early.delivered, early.deferred), (0, 0, 0));

    std::fs::write(web.join("status"), "200").unwrap();
    let second = run
        .run_with(&NoMail, noon + Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!((second.queued, second.delivered), (0, 1), "{second:?}");
    let meta = std::fs::read_to_string(web.join("meta")).unwrap();
    assert_eq!(meta, "application/tlsrpt+gzip /v1/tlsrpt");

    let status = run.status().await;
    assert!(status.pending.is_empty(), "{status:?}");
    let [sent] = status.last_sent.as_slice() else {
        panic!("{status:?}")
    };
    assert_eq!(sent.policy_domain, "example.org");
    assert_eq!((sent.successful, sent.failed), (57, 5));
    assert_eq!(sent.target, format!("https://127.0.0.1:{port}/v1/tlsrpt"));
    assert_eq!(status.last_run.as_ref().unwrap().delivered, 1);
    assert!(status.dkim_record.as_deref().unwrap().contains("k=ed25519"));
    let today: Vec<_> = status
        .today
        .iter()
        .map(|d| (d.domain.as_str(), d.successful, d.failed))
        .collect();
    if status.day == noon.date().to_string() {
        assert_eq!(today, [("example.net", 4, 0)]);
    }

    // parsedmarc reads what the endpoint received.
    let file = web.join(format!(
        "sender.example!example.org!{}!x.json.gz",
        yesterday.midnight().assume_utc().unix_timestamp()
    ));
    std::fs::rename(web.join("body"), &file).unwrap();
    let (report_id, ok, failed, detail) = parsedmarc_counts(&file);
    assert_eq!((ok, failed, detail), (57, 5, 5));
    assert_eq!(report_id, sent.report_id);
}

#[tokio::test]
async fn report_mail_reaches_smtp_and_its_dkim_signature_verifies_with_dkimpy() {
    let dir = common::private_tempdir();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let port = free_port();
    let (_smtp, ready) = start_python(SMTP_SERVER, &[inbox.to_str().unwrap(), &port.to_string()]);
    assert_eq!(
        ready, "ready",
        "aiosmtpd did not start (pip install aiosmtpd)"
    );

    let config = sending_config(&dir.path().join("data"));
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let (yesterday, noon) = yesterday_and_noon();
    record_sample(&collector, yesterday);
    let dns = StaticResolver::builder()
        .txt(
            "_smtp._tls.example.org",
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org",
        )
        .build()
        .unwrap();
    let run = TlsRptRun::new(&config, Arc::clone(&collector), Arc::new(dns)).unwrap();
    let mailer = SmtpMailer(
        SmtpSubmitter::new(
            "127.0.0.1",
            port,
            SubmissionTls::None,
            Duration::from_secs(10),
        )
        .unwrap(),
    );
    let summary = run.run_with(&mailer, noon).await.unwrap();
    assert_eq!((summary.queued, summary.delivered), (1, 1), "{summary:?}");

    assert_eq!(
        std::fs::read_to_string(inbox.join("0.env")).unwrap(),
        "tlsrpt@sender.example tlsrpt@example.org"
    );
    let mail_path = inbox.join("0.eml");
    let mail = std::fs::read(&mail_path).unwrap();
    let text = String::from_utf8_lossy(&mail);
    for header in [
        "TLS-Report-Domain: example.org",
        "TLS-Report-Submitter: sender.example",
        "TLS-Required: No",
        "report-type",
    ] {
        assert!(text.contains(header), "{header} missing:\n{text}");
    }
    let s = ReceivedSummary::of(&parse_received(&mail).unwrap());
    assert_eq!(s.per_day[&(yesterday, Some("example.org".into()))], (57, 5));

    let key = run.dkim_key().unwrap();
    assert!(key.record_text().contains("k=rsa"));
    let verified = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, dkim\n\
             msg = open(sys.argv[1], 'rb').read()\n\
             def dns(name, timeout=5):\n\
             \x20   name = name.decode() if isinstance(name, bytes) else name\n\
             \x20   return sys.argv[3].encode() if name.rstrip('.') == sys.argv[2] else None\n\
             sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)",
        )
        .arg(&mail_path)
        .arg(key.record_name())
        .arg(key.record_text())
        .status()
        .unwrap();
    assert!(
        verified.success(),
        "dkimpy did not verify the report mail (pip install dkimpy)"
    );
    // The same signature does not verify under another key: the check is real.
    let other = mailtls_examples::tlsrpt_run::DkimKey::load_or_generate(
        &{
            let mut s = config.tlsrpt_reports.clone();
            s.dkim_key_file = Some(dir.path().join("other.key"));
            s
        },
        dir.path(),
    )
    .unwrap();
    let refused = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, dkim\n\
             msg = open(sys.argv[1], 'rb').read()\n\
             def dns(name, timeout=5):\n\
             \x20   return sys.argv[2].encode()\n\
             sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)",
        )
        .arg(&mail_path)
        .arg(other.record_text())
        .status()
        .unwrap();
    assert!(!refused.success());
}

/// Feeds tlsrpt-reporter's collectd, rolls the day over and lets its reportd
/// build the reports and mail them with its own mail code, through a
/// sendmail script that submits to the reference server over SMTP.
const REPORTER_DRIVER: &str = r#"
import sys, time, logging
from tlsrpt_reporter import tlsrpt as t
d, sendmail, port, rcpt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
db = f"sqlite://{d}/collectd.sqlite"
cc = {k: v["default"] for k, v in t.options_collectd.items()}
cc.update(storage=db)
col = t.TLSRPTCollectdSQLite(db, t.ConfigCollectd(**cc))
sts = {"policy-type": 2, "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.example.org", "max_age: 604800"],
       "policy-domain": "example.org", "mx-host": ["mx.example.org"]}
for _ in range(37):
    col.add_datagram({"dpv": "1", "d": "example.org", "pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.org", "policies": [dict(sts, f=0, t=0)]})
for _ in range(4):
    col.add_datagram({"dpv": "1", "d": "example.org", "pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.org", "policies": [dict(sts, f=1, t=1, **{
        "failure-details": [{"c": 204, "n": "mx.example.org", "r": "192.0.2.25", "s": "192.0.2.1"}]})]})
for _ in range(6):
    col.add_datagram({"dpv": "1", "d": "example.com", "pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
                      "policies": [{"policy-type": 9, "policy-domain": "example.com", "f": 1, "t": 1,
                                    "failure-details": [{"c": 201, "n": "mx.example.com", "h": "mx.example.com"}]}]})
col.switch_to_next_day(t.RolloverReason.MANUALLYINDUCED)
rc = {k: v["default"] for k, v in t.options_reportd.items()}
rc.update(dbname=f"{d}/reportd.sqlite", fetchers=f"tlsrpt-fetcher --storage {db}",
          organization_name="sys4 tlsrpt-reporter test", contact_info="mailto:tlsrpt@sender.example",
          sender_address="tlsrpt@sender.example", sendmail_script=f"{sys.executable} {sendmail} {port} {rcpt}",
          debug_send_mail_dest=rcpt, spread_out_delivery=1)
rep = t.TLSRPTReportd(t.ConfigReportd(**rc))
rep.check_day(); rep.collect_domains(); rep.fetch_data(); rep.create_reports()
time.sleep(1.5)
rep.send_out_reports()
sent = rep.con.execute("SELECT COUNT(*) FROM destinations WHERE status='sent'").fetchone()[0]
print(sent)
"#;

/// `sendmail -i -t` stand-in: the message on stdin to the server by SMTP.
const SENDMAIL: &str = r#"
import sys, smtplib
msg = sys.stdin.buffer.read()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    s.sendmail("tlsrpt@sender.example", [sys.argv[2]], msg)
"#;

#[tokio::test]
async fn reports_mailed_by_tlsrpt_reporter_show_up_in_the_received_summary() {
    let ts = common::start(|c: &mut Config, dir: &Path| {
        let mut new = Config::from_toml_str(
            "[mta_sts]\ndomains = [\"example.test\"]\n[tls_rpt]\nrua = [\"mailto:TLSRPT@example.test\"]\n",
        )
        .unwrap();
        new.server.data_dir = dir.to_owned();
        new.use_ephemeral_ports();
        *c = new;
    })
    .await;
    let run = ts.server.tlsrpt().expect("TLS-RPT is always set up");
    assert!(!run.sending());
    assert!(run.is_report_mailbox("tlsrpt@EXAMPLE.test"));

    let work = tempfile::tempdir().unwrap();
    let sendmail: PathBuf = work.path().join("sendmail.py");
    std::fs::write(&sendmail, SENDMAIL).unwrap();
    let port = ts.addr(MailListener::Smtp).port();
    let out = tokio::task::spawn_blocking({
        let work = work.path().to_owned();
        move || {
            Command::new("python3")
                .arg("-c")
                .arg(REPORTER_DRIVER)
                .arg(&work)
                .arg(&sendmail)
                .arg(port.to_string())
                .arg("tlsrpt@example.test")
                .output()
                .expect("python3")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "tlsrpt-reporter driver failed (pip install tlsrpt-reporter): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        // The last line: tlsrpt-reporter prints its SQL before it.
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("2"),
        "both report mails were handed to the server: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = run.status().await;
    assert_eq!(status.received_mailboxes, ["tlsrpt@example.test"]);
    let org = status
        .received
        .iter()
        .find(|d| d.policy_domain.as_deref() == Some("example.org"))
        .unwrap_or_else(|| panic!("{status:#?}"));
    assert_eq!((org.successful, org.failed), (37, 4));
    assert_eq!(org.failures["certificate-expired"], 4);
    assert_eq!(org.reporters, ["sys4 tlsrpt-reporter test"]);
    let com = status
        .received
        .iter()
        .find(|d| d.policy_domain.as_deref() == Some("example.com"))
        .unwrap_or_else(|| panic!("{status:#?}"));
    assert_eq!((com.successful, com.failed), (0, 6));
    assert_eq!(com.failures["starttls-not-supported"], 6);
    // The mailbox still gets the mails.
    assert_eq!(ts.spool_files().len(), 2);
}

/// Which counts are forgotten: a domain without a record (nobody asked) and
/// one skipped by `only_with_failures` are; one whose lookup failed is kept
/// for the next run, until it is a week old.
#[tokio::test]
async fn counts_are_kept_while_the_record_lookup_fails() {
    use mailtls_policy::dns::{RecordType, ScriptedFailure};
    let dir = common::private_tempdir();
    let mut config = sending_config(&dir.path().join("data"));
    config.tlsrpt_reports.dkim_algorithm = DkimAlgorithm::Ed25519;
    config.tlsrpt_reports.only_with_failures = true;
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let (yesterday, noon) = yesterday_and_noon();
    // example.org: failures, its lookup fails. example.net: no record.
    // example.com: only successes (skipped under only_with_failures).
    record_sample(&collector, yesterday);
    let none: [&str; 0] = [];
    for domain in ["example.net", "example.com"] {
        let ok = SessionOutcome {
            policy: PolicyRef {
                policy_type: PolicyType::NoPolicyFound,
                domain,
                strings: &none,
                mx_hosts: &none,
            },
            mx_host: "mx",
            failure: None,
        };
        collector.record_on(yesterday, &ok).unwrap();
        if domain == "example.net" {
            collector
                .record_on(
                    yesterday,
                    &SessionOutcome {
                        failure: Some(FailureOutcome {
                            result_type: ResultType::StarttlsNotSupported,
                            sending_mta_ip: None,
                            receiving_ip: None,
                            receiving_mx_helo: None,
                            failure_reason_code: None,
                            additional_information: None,
                        }),
                        ..ok
                    },
                )
                .unwrap();
        }
    }
    let dns = StaticResolver::builder()
        .txt(
            "_smtp._tls.example.com",
            "v=TLSRPTv1; rua=mailto:r@example.com",
        )
        .fail(
            "_smtp._tls.example.org",
            RecordType::Txt,
            ScriptedFailure::ServerFailure,
        )
        .build()
        .unwrap();
    let run = TlsRptRun::new(&config, Arc::clone(&collector), Arc::new(dns)).unwrap();
    let s = run.run_with(&NoMail, noon).await.unwrap();
    assert_eq!(
        (s.queued, s.no_record, s.skipped, s.lookup_failed),
        (0, 1, 1, 1),
        "{s:?}"
    );
    let left = collector.snapshot();
    assert_eq!(left.totals(yesterday, "example.org"), (57, 5));
    assert_eq!(left.totals(yesterday, "example.net"), (0, 0));
    assert_eq!(left.totals(yesterday, "example.com"), (0, 0));
    // A week later the stale counts are dropped.
    let later = run
        .run_with(&NoMail, noon + Duration::from_secs(8 * 86_400))
        .await
        .unwrap();
    assert_eq!(later.lookup_failed, 1);
    assert!(collector.snapshot().is_empty());
}

/// The report mailboxes follow the configuration in effect (a SIGHUP
/// reload may change `[tls_rpt] rua`); mail to other mailboxes is not read.
#[tokio::test]
async fn received_mailboxes_follow_the_configuration_in_effect() {
    let dir = common::private_tempdir();
    let config = |rua: &str| {
        let mut c = Config::from_toml_str(&format!(
            "[mta_sts]\ndomains = [\"example.test\"]\n[tls_rpt]\nrua = [\"{rua}\", \"https://r.example.test/x\"]\n"
        ))
        .unwrap();
        c.server.data_dir = dir.path().join("data");
        c
    };
    let first = config("mailto:a@example.test");
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let dns = Arc::new(StaticResolver::builder().build().unwrap());
    let run = TlsRptRun::new(&first, collector, dns).unwrap();
    // Yesterday: the status sums up the last month.
    let (day, _) = yesterday_and_noon();
    let report = format!(
        r#"{{"organization-name":"Org","date-range":{{"start-datetime":"{day}T00:00:00Z","end-datetime":"{day}T23:59:59Z"}},"contact-info":"x@org.example","report-id":"r1","policies":[{{"policy":{{"policy-type":"no-policy-found","policy-domain":"example.test"}},"summary":{{"total-successful-session-count":3,"total-failure-session-count":0}}}}]}}"#
    );
    let report = report.as_bytes();
    let b = vec!["b@example.test".to_owned()];
    assert_eq!(run.receive(&b, report).await, None);
    let second = config("mailto:B@example.test?subject=tlsrpt");
    run.update_mailboxes(&second);
    assert_eq!(run.receive(&b, report).await, Some(1));
    assert!(!run.is_report_mailbox("a@example.test"));
    let status = run.status().await;
    assert_eq!(status.received_mailboxes, ["b@example.test"]);
    assert_eq!(status.received[0].successful, 3);
    // Not a report: counted as none, the mailbox still gets it.
    assert_eq!(
        run.receive(&b, b"Subject: hi\r\n\r\nhello\r\n").await,
        Some(0)
    );
}
