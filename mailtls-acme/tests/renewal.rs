//! The renewal scheduler and storage against Pebble with short-lived
//! certificates: issues, persists (0600), renews by itself, resumes orders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailtls_acme::order::{OrderJournal, PendingOrder};
use mailtls_acme::solver::{Http01Responder, Http01Server};
use mailtls_acme::{
    AcmeError, CertificateRequest, ChallengeSolver, FileStorage, ManagedCertificate,
    NewAccountOptions, PollPolicy, RenewalHooks, RenewalManager, RetryPolicy, SigningAlgorithm,
    Storage,
};
use mailtls_core::maker::KeyType;
use mailtls_testpeers::{Pebble, PebbleOptions, leaf_names};

#[derive(Default)]
struct Recorder {
    renewed: Mutex<Vec<(String, String)>>,
    failed: Mutex<Vec<String>>,
}

impl RenewalHooks for Recorder {
    fn renewed(&self, id: &str, c: &mailtls_acme::IssuedCertificate) {
        self.renewed
            .lock()
            .unwrap()
            .push((id.to_owned(), c.chain_pem.clone()));
    }
    fn failed(&self, id: &str, e: &AcmeError, _next: SystemTime) {
        self.failed.lock().unwrap().push(format!("{id}: {e}"));
    }
}

async fn setup(pebble: &Pebble) -> (Http01Server, Arc<dyn ChallengeSolver>) {
    let responder = Http01Responder::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", pebble.http_port).parse().unwrap();
    let server = Http01Server::bind(addr, responder.clone()).await.unwrap();
    (server, Arc::new(responder))
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_issues_then_renews_short_lived_certificates() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(6),
        ..PebbleOptions::default()
    });
    let (_server, solver) = setup(&pebble).await;
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(FileStorage::new(tmp.path().join("acme")).unwrap());
    let client = pebble.client().await;
    let opts = NewAccountOptions::with_email("postmaster@example.com");
    let account = client
        .load_or_create_account(&*storage, SigningAlgorithm::Es256, &opts)
        .await
        .unwrap();
    // A second load finds the stored account without creating another.
    let again = client
        .load_or_create_account(&*storage, SigningAlgorithm::Es256, &opts)
        .await
        .unwrap();
    assert_eq!(again.url(), account.url());

    let hooks = Arc::new(Recorder::default());
    let manager = RenewalManager::new(
        account.clone(),
        storage.clone(),
        vec![solver],
        vec![ManagedCertificate::new(
            "mail.example.com",
            CertificateRequest::new(["mail.example.com", "imap.example.com"]),
        )],
        hooks.clone(),
    )
    .with_max_sleep(Duration::from_millis(500))
    .with_retry_policy(RetryPolicy::new(
        Duration::from_secs(1),
        Duration::from_secs(2),
    ));
    // 6-second certificates renew with half their life left: the manager
    // issues once and then renews by itself; wait for three issuances (about
    // 9 s on an idle machine; the limit only catches a manager that stopped
    // renewing). `run` is a loop of `check_all` and sleeps; drive the same
    // loop here so the test stops between checks, not in the middle of an
    // order.
    let start = std::time::Instant::now();
    while hooks.renewed.lock().unwrap().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "only {} issuances after 90 s: {:?}",
            hooks.renewed.lock().unwrap().len(),
            hooks.failed
        );
        let next = manager.check_all().await.unwrap();
        let sleep = next
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(Duration::from_millis(500));
        tokio::time::sleep(sleep).await;
    }
    // `run` itself stops when told to.
    tokio::time::timeout(Duration::from_secs(5), manager.run(async {}))
        .await
        .unwrap();
    let renewed = hooks.renewed.lock().unwrap().clone();
    assert!(
        hooks.failed.lock().unwrap().is_empty(),
        "{:?}",
        hooks.failed
    );
    assert!(renewed.len() >= 3, "only {} issuances", renewed.len());
    // Every issuance is a different certificate for the same names.
    assert_ne!(renewed[0].1, renewed[1].1);
    assert_eq!(
        leaf_names(&renewed[2].1),
        vec!["imap.example.com", "mail.example.com"]
    );

    let stored = storage
        .load_certificate("mail.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.chain_pem, renewed.last().unwrap().1);
    let dir = storage.certificate_dir("mail.example.com");
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    assert_eq!(mode(&dir.join("chain.pem")), 0o600);
    let state = storage.load_state("mail.example.com").await.unwrap();
    assert_eq!(state.failures, 0);
    assert_eq!(state.issued_by_account.as_deref(), Some(account.url()));
    assert!(state.next_attempt().unwrap() > SystemTime::now() - Duration::from_secs(6));
    // No order left half-done.
    let names = vec!["mail.example.com".to_owned(), "imap.example.com".to_owned()];
    assert!(storage.load_pending(&names).await.unwrap().is_none());
}

/// A crash mid-issuance: an order journaled while still `ready` is picked
/// up again (no second order, the journaled key kept); one that became
/// `valid` before the crash is history, and the next run orders anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_issuance_resumes_only_unfinished_orders() {
    let pebble = Pebble::start(PebbleOptions::default());
    let (_server, solver) = setup(&pebble).await;
    let tmp = tempfile::tempdir().unwrap();
    let storage = FileStorage::new(tmp.path().join("acme")).unwrap();
    let client = pebble.client().await;
    let account = client
        .load_or_create_account(
            &storage,
            SigningAlgorithm::Es256,
            &NewAccountOptions::with_email("a@example.com"),
        )
        .await
        .unwrap();
    let names = vec!["resume.example.com".to_owned()];
    let request = CertificateRequest::new(names.clone());
    // What `issue` journals before authorising, then authorised: the run
    // "crashes" with the order `ready`.
    let (order_url, order) = account.new_order(&names, None).await.unwrap();
    let key_pem = KeyType::EcdsaP256.generate().unwrap().serialize_pem();
    storage
        .save_pending(&PendingOrder::new(
            order_url.clone(),
            key_pem.clone(),
            names.clone(),
            KeyType::EcdsaP256,
        ))
        .await
        .unwrap();
    account
        .authorize(&order, std::slice::from_ref(&solver), PollPolicy::default())
        .await
        .unwrap();
    let order_file = std::fs::read_dir(tmp.path().join("acme/orders"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        mode(&order_file),
        0o600,
        "the journal holds the certificate key"
    );

    // No solver at all: a new order could not be authorised, so success
    // proves the ready order was resumed.
    let first = account
        .issue(&request, &[], Some(&storage), PollPolicy::default())
        .await
        .unwrap();
    assert_eq!(first.order_url, order_url);
    assert_eq!(first.key_pem, key_pem);

    // "Crash" again, now after the order became valid: the journal still
    // names it, but a finished order is not handed back.
    let pending = storage.load_pending(&names).await.unwrap().unwrap();
    assert_eq!(pending.order_url, order_url);
    let second = account
        .issue(
            &request,
            std::slice::from_ref(&solver),
            Some(&storage),
            PollPolicy::default(),
        )
        .await
        .unwrap();
    assert_ne!(second.order_url, first.order_url);
    assert_ne!(second.key_pem, first.key_pem);
    assert_ne!(second.chain_pem, first.chain_pem);
}
