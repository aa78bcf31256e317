//! The whole loop in the running server: counts in the outbound collector,
//! the `_smtp._tls` record from a DNSSEC-signed test zone (NSD, through the
//! server's own resolver), the report mail through `submit_internal`, the
//! outbound queue and the relay host to a real SMTP server (aiosmtpd, PyPI);
//! dkimpy (PyPI) verifies what arrived. Needs `nsd` and `ldnsutils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod outbound_support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_examples::outbound::{RelayAddress, RelayHost, RelayTls};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{
    FailureOutcome, PolicyRef, ReceivedSummary, SessionOutcome, parse_received,
};
use outbound_support::{SignedRoot, eventually, free_port};
use time::{OffsetDateTime, Time};

struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SMTP_SERVER: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
class H:
    async def handle_DATA(self, server, session, envelope):
        open(sys.argv[1] + '/msg.env', 'w').write('%s %s' % (envelope.mail_from, ','.join(envelope.rcpt_tos)))
        open(sys.argv[1] + '/msg.tmp', 'wb').write(envelope.original_content)
        import os; os.rename(sys.argv[1] + '/msg.tmp', sys.argv[1] + '/msg.eml')
        return '250 OK'
c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[2]))
c.start()
print('ready', flush=True)
while True:
    time.sleep(3600)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mail_goes_through_the_outbound_queue_and_verifies_with_dkimpy() {
    let world = SignedRoot::start(
        "relay.test. A 127.0.0.1\n\
         _smtp._tls.rpt.test. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@rpt.test\"\n",
    );
    let inbox = tempfile::tempdir().unwrap();
    let port = free_port(&[Ipv4Addr::LOCALHOST]);
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SMTP_SERVER)
        .arg(inbox.path())
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let _smtp = Reaper(child);
    assert_eq!(
        ready.trim(),
        "ready",
        "aiosmtpd did not start (pip install aiosmtpd)"
    );

    let ts = common::start(|c, _| {
        let o = &mut c.outbound;
        o.enabled = true;
        o.relay = Some(RelayHost {
            address: RelayAddress::Name(DnsName::parse("relay.test").unwrap()),
            port,
            tls: RelayTls::None,
            ca_file: None,
        });
        o.dns_server = Some(world.addr);
        o.trust_anchor = Some(world.anchor.clone());
        o.retry = vec![Duration::from_secs(1)];
        o.timeout = Duration::from_secs(10);
        let r = &mut c.tlsrpt_reports;
        r.enabled = true;
        r.submitter = DnsName::parse("sender.example").unwrap();
        r.sender = "tlsrpt@sender.example".into();
    })
    .await;
    let run = ts.server.tlsrpt().unwrap();
    assert!(run.sending());
    // The server's own schedule runs once as it starts; wait for that run so
    // it cannot take the report recorded below before the run this test makes.
    eventually(Duration::from_secs(20), "the schedule's first run", || {
        run.last_run().map(|_| ())
    })
    .await;

    let today = OffsetDateTime::now_utc().date();
    let yesterday = today.previous_day().unwrap();
    let strings = [
        "version: STSv1",
        "mode: enforce",
        "mx: mx.rpt.test",
        "max_age: 86400",
    ];
    let mx = ["mx.rpt.test"];
    let ok = SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::Sts,
            domain: "rpt.test",
            strings: &strings,
            mx_hosts: &mx,
        },
        mx_host: "mx.rpt.test",
        failure: None,
    };
    for _ in 0..11 {
        run.collector().record_on(yesterday, &ok).unwrap();
    }
    let bad = SessionOutcome {
        failure: Some(FailureOutcome {
            result_type: ResultType::CertificateHostMismatch,
            sending_mta_ip: None,
            receiving_ip: Some("203.0.113.9".parse().unwrap()),
            receiving_mx_helo: None,
            failure_reason_code: None,
            additional_information: None,
        }),
        ..ok
    };
    for _ in 0..2 {
        run.collector().record_on(yesterday, &bad).unwrap();
    }

    // Noon today: yesterday's report is due under the default window.
    let noon = today
        .with_time(Time::from_hms(12, 0, 0).unwrap())
        .assume_utc();
    let summary = run.run_at(noon).await.unwrap();
    assert_eq!((summary.queued, summary.delivered), (1, 1), "{summary:?}");

    let mail_path = inbox.path().join("msg.eml");
    eventually(
        Duration::from_secs(40),
        "the report mail at the relay",
        || mail_path.exists().then_some(()),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(inbox.path().join("msg.env")).unwrap(),
        "tlsrpt@sender.example tlsrpt@rpt.test"
    );
    let mail = std::fs::read(&mail_path).unwrap();
    let s = ReceivedSummary::of(&parse_received(&mail).unwrap());
    assert_eq!(s.per_day[&(yesterday, Some("rpt.test".into()))], (11, 2));

    let key = run.dkim_key().unwrap();
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
        "dkimpy did not verify the report mail after the server's queue"
    );

    let status = run.status().await;
    let [sent] = status.last_sent.as_slice() else {
        panic!("{status:?}")
    };
    assert_eq!(sent.target, "mailto:tlsrpt@rpt.test");
    assert_eq!((sent.successful, sent.failed), (11, 2));
}
