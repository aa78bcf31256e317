//! Delivery: HTTPS POST to a real server on loopback (Python's http.server
//! over TLS), report mail checked with an independent DKIM verifier (dkimpy)
//! and parsed by parsedmarc, outbox retries and keeps what fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use mail_parser::MimeHeaders;
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::delivery::{
    Deliverer, DkimConfig, HttpsPoster, MailIdentity, MailSubmitter, Outbox, RetryPolicy,
};
use mailtls_policy::tlsrpt::{
    Collector, FailureOutcome, PolicyRef, ReceivedSummary, ReportMeta, ReportUri, SessionOutcome,
    TlsReport, parse_received,
};
use rustls_pki_types::PrivateKeyDer;
use time::OffsetDateTime;
use time::macros::{date, datetime};

/// Kills and reaps the child when the test ends, also on panic.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct CapturedMail(Mutex<Vec<(String, String, Vec<u8>)>>);

impl MailSubmitter for CapturedMail {
    fn submit(
        &self,
        from: &str,
        rcpt: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        self.0
            .lock()
            .unwrap()
            .push((from.to_owned(), rcpt.to_owned(), message.to_vec()));
        std::future::ready(Ok(()))
    }
}

struct FailingMail;

impl MailSubmitter for FailingMail {
    fn submit(
        &self,
        _: &str,
        _: &str,
        _: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Err("452 4.3.1 queue full".to_owned()))
    }
}

fn report() -> TlsReport {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::open(dir.path()).unwrap();
    let day = date!(2026 - 11 - 24);
    let policy = PolicyRef {
        policy_type: PolicyType::Sts,
        domain: "example.org",
        strings: &[
            "version: STSv1",
            "mode: testing",
            "mx: mx.example.org",
            "max_age: 604800",
        ],
        mx_hosts: &["mx.example.org"],
    };
    for _ in 0..17 {
        c.record_on(
            day,
            &SessionOutcome {
                policy,
                mx_host: "mx.example.org",
                failure: None,
            },
        )
        .unwrap();
    }
    for _ in 0..3 {
        let failure = FailureOutcome {
            result_type: ResultType::CertificateHostMismatch,
            sending_mta_ip: Some("192.0.2.1".parse().unwrap()),
            receiving_ip: Some("192.0.2.25".parse().unwrap()),
            receiving_mx_helo: Some("mail.hoster.example"),
            failure_reason_code: None,
            additional_information: None,
        };
        c.record_on(
            day,
            &SessionOutcome {
                policy,
                mx_host: "mx.example.org",
                failure: Some(failure),
            },
        )
        .unwrap();
    }
    let meta = ReportMeta {
        organization_name: "Sender Org".into(),
        contact_info: "mailto:postmaster@sender.example".into(),
        submitter: "sender.example".into(),
    };
    TlsReport::build(&c.snapshot(), day, "example.org", &meta).unwrap()
}

/// An RSA key made by OpenSSL at test time: PKCS#1 DER and the base64
/// SubjectPublicKeyInfo for the DKIM TXT record.
fn dkim_key(dir: &Path) -> (Vec<u8>, String) {
    let key = dir.join("dkim.der");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkey", "-inform", "DER", "-pubout", "-outform", "DER", "-in",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    use std::io::Write;
    let mut b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    b64.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let pubkey = String::from_utf8(b64.wait_with_output().unwrap().stdout).unwrap();
    (std::fs::read(&key).unwrap(), pubkey)
}

fn dummy_https() -> HttpsPoster {
    HttpsPoster::new(
        rustls::RootCertStore::empty(),
        Duration::from_secs(5),
        mailtls_policy::default_crypto_provider(),
    )
    .unwrap()
}

fn dkimpy_verifies(message: &Path, selector_record: &str) -> bool {
    let st = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, dkim\n\
             msg = open(sys.argv[1], 'rb').read()\n\
             def dns(name, timeout=5):\n\
             \x20   name = name.decode() if isinstance(name, bytes) else name\n\
             \x20   return sys.argv[2].encode() if name.rstrip('.') == 'sel1._domainkey.sender.example' else None\n\
             sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)",
        )
        .arg(message)
        .arg(selector_record)
        .status()
        .expect("python3 with dkimpy (pip install dkimpy)");
    st.success()
}

#[tokio::test]
async fn report_mail_is_signed_marked_and_parses_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (der, pubkey) = dkim_key(dir.path());
    let deliverer = Deliverer {
        https: dummy_https(),
        mail: CapturedMail::default(),
        identity: MailIdentity {
            from: "tlsrpt@sender.example".into(),
            submitter: "sender.example".into(),
        },
        dkim: DkimConfig::new(
            "sender.example",
            "sel1",
            &PrivateKeyDer::Pkcs1(der.clone().into()),
        )
        .unwrap(),
    };
    let r = report();
    let to = ReportUri::Mailto("tls-reports@example.org".into());
    deliverer
        .deliver(&r, &to, datetime!(2026-11-25 03:00 UTC))
        .await
        .unwrap();
    let mails = deliverer.mail.0.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let (from, rcpt, msg) = &mails[0];
    assert_eq!(
        (from.as_str(), rcpt.as_str()),
        ("tlsrpt@sender.example", "tls-reports@example.org")
    );

    let parsed = mail_parser::MessageParser::default().parse(msg).unwrap();
    let header = |name: &str| parsed.header_raw(name).map(str::trim).map(str::to_owned);
    assert_eq!(header("TLS-Report-Domain").as_deref(), Some("example.org"));
    assert_eq!(
        header("TLS-Report-Submitter").as_deref(),
        Some("sender.example")
    );
    assert_eq!(header("TLS-Required").as_deref(), Some("No"));
    assert!(
        header("DKIM-Signature")
            .unwrap()
            .contains("d=sender.example")
    );
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("tlsrpt"));
    let text = String::from_utf8_lossy(msg);
    assert!(text.contains("application/tlsrpt+gzip"));
    assert!(text.contains(&r.filename("sender.example")));

    // Independent DKIM verifier, with the key served by a stub DNS function.
    let path = dir.path().join("report.eml");
    std::fs::write(&path, msg).unwrap();
    let record = format!("v=DKIM1; k=rsa; p={pubkey}");
    assert!(
        dkimpy_verifies(&path, &record),
        "dkimpy rejected our signature"
    );
    let tampered = text.replacen(
        "TLS-Report-Domain: example.org",
        "TLS-Report-Domain: example.net",
        1,
    );
    std::fs::write(&path, tampered).unwrap();
    assert!(
        !dkimpy_verifies(&path, &record),
        "a changed TLS-Report-Domain must break the signature"
    );

    // Our parser and parsedmarc read the same counts out of the mail.
    let ours = ReceivedSummary::of(&parse_received(msg).unwrap());
    assert_eq!(
        ours.per_day[&(date!(2026 - 11 - 24), Some("example.org".into()))],
        (17, 3)
    );
    std::fs::write(&path, msg).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, json, parsedmarc\n\
             r = parsedmarc.parse_report_email(open(sys.argv[1], 'rb').read(), offline=True)\n\
             p = r['report']['policies'][0]\n\
             print(r['report_type'], p['successful_session_count'], p['failed_session_count'])",
        )
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "smtp_tls 17 3");
}

/// A TLS server on loopback: Python's http.server behind ssl, answering
/// `status` and saving what it received.
fn start_https(dir: &Path, status: u16) -> (Reaper, u16, rustls::RootCertStore) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let script = "import ssl, sys, http.server\n\
        class H(http.server.BaseHTTPRequestHandler):\n\
        \x20   def do_POST(self):\n\
        \x20       body = self.rfile.read(int(self.headers['Content-Length']))\n\
        \x20       open(sys.argv[3] + '/body', 'wb').write(body)\n\
        \x20       open(sys.argv[3] + '/meta', 'w').write(self.headers['Content-Type'] + ' ' + self.path)\n\
        \x20       self.send_response(int(sys.argv[4]))\n\
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
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&cert_pem)
        .arg(&key_pem)
        .arg(dir)
        .arg(status.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    (Reaper(child), port, roots)
}

#[tokio::test]
async fn https_post_reaches_a_real_server_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, roots) = start_https(dir.path(), 200);
    let (der, _) = dkim_key(dir.path());
    let deliverer = Deliverer {
        https: HttpsPoster::new(
            roots,
            Duration::from_secs(10),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
        mail: CapturedMail::default(),
        identity: MailIdentity {
            from: "tlsrpt@sender.example".into(),
            submitter: "sender.example".into(),
        },
        dkim: DkimConfig::new(
            "sender.example",
            "sel1",
            &PrivateKeyDer::Pkcs1(der.clone().into()),
        )
        .unwrap(),
    };
    let r = report();
    let outbox = Outbox::open(dir.path().join("outbox"), RetryPolicy::default()).unwrap();
    let url = format!("https://127.0.0.1:{port}/v1/tlsrpt");
    outbox
        .enqueue(&r, &[ReportUri::Https(url)], OffsetDateTime::now_utc())
        .await
        .unwrap();
    let run = outbox
        .deliver_due(&deliverer, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        (run.delivered, run.deferred),
        (1, 0),
        "{:?}",
        outbox.pending().await.unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("meta")).unwrap(),
        "application/tlsrpt+gzip /v1/tlsrpt"
    );
    let body = std::fs::read(dir.path().join("body")).unwrap();
    assert_eq!(body, r.to_gzip().unwrap());
    assert!(outbox.pending().await.unwrap().is_empty());
    let sent = outbox.recently_sent(10).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].policy_domain.as_str(),
            sent[0].successful,
            sent[0].failed
        ),
        ("example.org", 17, 3)
    );
    assert!(sent[0].target.ends_with("/v1/tlsrpt"));

    // The same server is not trusted by a poster with other roots.
    let untrusting = HttpsPoster::new(
        rustls::RootCertStore::empty(),
        Duration::from_secs(10),
        mailtls_policy::default_crypto_provider(),
    )
    .unwrap();
    let err = untrusting
        .post(&format!("https://127.0.0.1:{port}/"), b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn failures_back_off_and_end_undeliverable_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, roots) = start_https(dir.path(), 503);
    let (der, _) = dkim_key(dir.path());
    let deliverer = Deliverer {
        https: HttpsPoster::new(
            roots,
            Duration::from_secs(10),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
        mail: FailingMail,
        identity: MailIdentity {
            from: "tlsrpt@sender.example".into(),
            submitter: "sender.example".into(),
        },
        dkim: DkimConfig::new(
            "sender.example",
            "sel1",
            &PrivateKeyDer::Pkcs1(der.clone().into()),
        )
        .unwrap(),
    };
    let retry = RetryPolicy::default()
        .with_first_delay(Duration::from_secs(60))
        .with_max_delay(Duration::from_secs(600))
        .with_max_attempts(3);
    let outbox = Outbox::open(dir.path().join("outbox"), retry).unwrap();
    let r = report();
    let t0 = datetime!(2026-11-25 03:00 UTC);
    let rua = [
        ReportUri::Https(format!("https://127.0.0.1:{port}/r")),
        ReportUri::Mailto("a@example.org".into()),
    ];
    outbox.enqueue(&r, &rua, t0).await.unwrap();
    outbox.enqueue(&r, &rua, t0).await.unwrap();
    assert_eq!(
        outbox.pending().await.unwrap().len(),
        2,
        "enqueueing twice is idempotent"
    );

    let run = outbox.deliver_due(&deliverer, t0).await.unwrap();
    assert_eq!(run.deferred, 2);
    let pending = outbox.pending().await.unwrap();
    assert!(
        pending
            .iter()
            .all(|j| j.attempts == 1 && j.next_attempt == t0 + time::Duration::seconds(60))
    );
    assert!(
        pending
            .iter()
            .any(|j| j.last_error.as_deref().unwrap().contains("503"))
    );
    assert!(
        pending
            .iter()
            .any(|j| j.last_error.as_deref().unwrap().contains("queue full"))
    );

    // Not due yet: nothing is tried.
    let run = outbox
        .deliver_due(&deliverer, t0 + time::Duration::seconds(59))
        .await
        .unwrap();
    assert_eq!((run.delivered, run.deferred, run.undeliverable), (0, 0, 0));
    // Reopening the outbox (a restart) keeps the jobs.
    let outbox = Outbox::open(dir.path().join("outbox"), retry).unwrap();
    let run = outbox
        .deliver_due(&deliverer, t0 + time::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(run.deferred, 2);
    assert!(
        outbox
            .pending()
            .await
            .unwrap()
            .iter()
            .all(|j| j.next_attempt == t0 + time::Duration::seconds(180))
    );
    let run = outbox
        .deliver_due(&deliverer, t0 + time::Duration::seconds(180))
        .await
        .unwrap();
    assert_eq!(run.undeliverable, 2);
    assert!(outbox.pending().await.unwrap().is_empty());
    assert!(outbox.recently_sent(10).await.unwrap().is_empty());
    let kept = outbox.undeliverable().await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(
        kept.iter()
            .all(|j| j.report_id == r.report_id && j.attempts == 3)
    );
}
