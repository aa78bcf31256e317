//! The report mail submitted over SMTP with STARTTLS to a real SMTP server
//! (aiosmtpd, PyPI) on loopback; what the server received carries a DKIM
//! signature that dkimpy verifies and a report our parser reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mailtls_policy::result_type::PolicyType;
use mailtls_policy::tlsrpt::delivery::{
    Deliverer, DkimConfig, HttpsPoster, MailIdentity, SmtpSubmitter, SubmissionTls,
};
use mailtls_policy::tlsrpt::{
    Collector, PolicyRef, ReceivedSummary, ReportMeta, ReportUri, SessionOutcome, TlsReport,
    parse_received,
};
use rustls_pki_types::PrivateKeyDer;
use time::macros::{date, datetime};

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER: &str = r#"
import sys, ssl, time
from aiosmtpd.controller import Controller
class H:
    async def handle_DATA(self, server, session, envelope):
        open(sys.argv[3] + '/received.eml', 'wb').write(envelope.original_content)
        open(sys.argv[3] + '/envelope', 'w').write('%s %s %s' % (envelope.mail_from, ','.join(envelope.rcpt_tos), session.ssl is not None))
        return '250 OK'
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[4]), tls_context=ctx, require_starttls=True)
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

fn rsa_key(dir: &Path) -> (Vec<u8>, String) {
    let key = dir.join("dkim.der");
    assert!(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
                "-out"
            ])
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let spki = Command::new("openssl")
        .args([
            "pkey", "-inform", "DER", "-pubout", "-outform", "DER", "-in",
        ])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let mut b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    b64.stdin.take().unwrap().write_all(&spki).unwrap();
    (
        std::fs::read(&key).unwrap(),
        String::from_utf8(b64.wait_with_output().unwrap().stdout).unwrap(),
    )
}

#[tokio::test]
async fn report_mail_over_starttls_to_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .arg(&cert_pem)
        .arg(&key_pem)
        .arg(dir.path())
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd (pip install aiosmtpd)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Reaper(child);
    assert_eq!(
        line.trim(),
        "ready",
        "aiosmtpd did not start (pip install aiosmtpd)"
    );

    let day = date!(2026 - 11 - 24);
    let counts = tempfile::tempdir().unwrap();
    let c = Collector::open(counts.path()).unwrap();
    let policy = PolicyRef {
        policy_type: PolicyType::NoPolicyFound,
        domain: "example.org",
        strings: &[],
        mx_hosts: &[],
    };
    for _ in 0..8 {
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
    let meta = ReportMeta {
        organization_name: "Sender".into(),
        contact_info: "mailto:postmaster@sender.example".into(),
        submitter: "sender.example".into(),
    };
    let report = TlsReport::build(&c.snapshot(), day, "example.org", &meta).unwrap();

    let (der, pubkey) = rsa_key(dir.path());
    let smtp = SmtpSubmitter::new(
        "localhost",
        port,
        SubmissionTls::Required {
            roots: vec![cert.cert.der().clone()],
        },
        Duration::from_secs(10),
    )
    .unwrap();
    let deliverer = Deliverer {
        https: HttpsPoster::new(
            rustls::RootCertStore::empty(),
            Duration::from_secs(5),
            mailtls_policy::default_crypto_provider(),
        )
        .unwrap(),
        mail: smtp,
        identity: MailIdentity {
            from: "tlsrpt@sender.example".into(),
            submitter: "sender.example".into(),
        },
        dkim: DkimConfig::new("sender.example", "sel1", &PrivateKeyDer::Pkcs1(der.into())).unwrap(),
    };
    deliverer
        .deliver(
            &report,
            &ReportUri::Mailto("tlsrpt@example.org".into()),
            datetime!(2026-11-25 02:00 UTC),
        )
        .await
        .unwrap();

    assert_eq!(
        std::fs::read_to_string(dir.path().join("envelope")).unwrap(),
        "tlsrpt@sender.example tlsrpt@example.org True"
    );
    let received = std::fs::read(dir.path().join("received.eml")).unwrap();
    let s = ReceivedSummary::of(&parse_received(&received).unwrap());
    assert_eq!(s.per_day[&(day, Some("example.org".into()))], (8, 0));
    let verified = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, dkim\n\
             msg = open(sys.argv[1], 'rb').read()\n\
             def dns(name, timeout=5):\n\
             \x20   name = name.decode() if isinstance(name, bytes) else name\n\
             \x20   return sys.argv[2].encode() if name.rstrip('.') == 'sel1._domainkey.sender.example' else None\n\
             sys.exit(0 if dkim.verify(msg, dnsfunc=dns) else 1)",
        )
        .arg(dir.path().join("received.eml"))
        .arg(format!("v=DKIM1; k=rsa; p={pubkey}"))
        .status()
        .unwrap();
    assert!(
        verified.success(),
        "dkimpy did not verify the mail the SMTP server received"
    );

    // A relay whose certificate we do not trust is refused, not used in clear.
    let untrusting = SmtpSubmitter::new(
        "localhost",
        port,
        SubmissionTls::Required {
            roots: vec![
                rcgen::generate_simple_self_signed(vec!["x".into()])
                    .unwrap()
                    .cert
                    .der()
                    .clone(),
            ],
        },
        Duration::from_secs(10),
    )
    .unwrap();
    use mailtls_policy::tlsrpt::delivery::MailSubmitter;
    assert!(
        untrusting
            .submit(
                "a@sender.example",
                "b@example.org",
                b"Subject: x\r\n\r\nx\r\n"
            )
            .await
            .is_err()
    );
}
