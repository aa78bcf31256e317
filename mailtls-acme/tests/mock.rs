//! An in-process mock ACME server for what Pebble 2.4 cannot show: ARI,
//! Retry-After on 429 and 503, persistent badNonce, odd fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mailtls_acme::{
    AccountKey, AcmeClient, ClientConfig, ErrorClass, NewAccountOptions, SigningAlgorithm,
};

#[derive(Default)]
struct State {
    base: String,
    /// How many newAccount requests answer badNonce before success.
    bad_nonces: usize,
    new_account_posts: usize,
    nonce_heads: usize,
    issued: usize,
    used: HashSet<String>,
    reused: bool,
    wrong_url: bool,
    /// The chain /cert/1 serves.
    chain_pem: String,
    /// Order status the next poll reports.
    order_status: &'static str,
    /// Payloads of every newOrder.
    new_orders: Vec<serde_json::Value>,
    /// Drop this many authorisation requests without an answer (outage).
    authz_outages: usize,
    /// Answer the next finalize with orderNotReady (someone finalised already).
    finalize_not_ready: bool,
    finalizes: usize,
    /// Answer newOrder with `replaces` by alreadyReplaced.
    already_replaced: bool,
    /// Serve an ARI window in the past (renew now).
    ari_due_now: bool,
    /// Answer newOrder with userActionRequired (new terms of service).
    terms_changed: bool,
    /// Payloads of every newAuthz.
    new_authzs: Vec<serde_json::Value>,
    /// Answer every request signed with a `kid` by accountDoesNotExist,
    /// until the next newAccount (the CA lost its accounts).
    forget_accounts: bool,
}

type Shared = Arc<Mutex<State>>;

impl State {
    /// A CA without quirks whose certificate URL serves `chain_pem`.
    fn serving(chain_pem: &str) -> Self {
        State {
            chain_pem: chain_pem.to_owned(),
            ..State::default()
        }
    }
}

fn problem(
    status: u16,
    kind: &str,
    extra: &[(&str, &str)],
    nonce: String,
) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .header("replay-nonce", nonce);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(
        serde_json::json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": "mock", "status": status})
            .to_string(),
    )))
    .unwrap()
}

#[derive(Debug)]
struct Outage;
impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outage")
    }
}
impl std::error::Error for Outage {}

fn json_resp(
    status: u16,
    body: serde_json::Value,
    nonce: String,
    location: Option<String>,
) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("replay-nonce", nonce);
    if let Some(l) = location {
        b = b.header("location", l);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn handle(
    state: Shared,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Outage> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut s = state.lock().unwrap();
    s.issued += 1;
    let nonce = format!("nonce-{}", s.issued);
    let mut payload = serde_json::Value::Null;
    if method == hyper::Method::POST {
        let jws: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let protected: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jws["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let used = protected["nonce"].as_str().unwrap().to_owned();
        if !s.used.insert(used) {
            s.reused = true;
        }
        if protected["url"] != format!("{}{path}", s.base) {
            s.wrong_url = true;
        }
        if s.forget_accounts && protected.get("kid").is_some() {
            return Ok(problem(400, "accountDoesNotExist", &[], nonce));
        }
        let p = jws["payload"].as_str().unwrap();
        if !p.is_empty() {
            payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        }
    }
    let order = |status: &str, base: &str| {
        let mut o = serde_json::json!({
            "status": status,
            "identifiers": [{"type": "dns", "value": "mail.example.com"}],
            "authorizations": [format!("{base}/authz/1")],
            "finalize": format!("{base}/order/1/finalize"),
            "profile": "classic",
        });
        if status == "valid" {
            o["certificate"] = format!("{base}/cert/1").into();
        }
        o
    };
    let base = s.base.clone();
    let resp = match (method.as_str(), path.as_str()) {
        ("GET", "/dir") => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/new-acct"),
                    "newOrder": format!("{base}/new-order"),
                    "renewalInfo": format!("{base}/ari"),
                    "newAuthz": format!("{base}/new-authz"),
                    "meta": {"termsOfService": "https://x/tos", "profiles": {"classic": "x"}, "caaIdentities": ["x"]},
                    "randomExtension": {"deep": [1, 2, 3]},
                })
                .to_string(),
            )))
            .unwrap(),
        ("HEAD", "/nonce") => {
            s.nonce_heads += 1;
            Response::builder()
                .header("replay-nonce", nonce)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        ("POST", "/new-acct") => {
            s.new_account_posts += 1;
            s.forget_accounts = false;
            if s.new_account_posts <= s.bad_nonces {
                problem(400, "badNonce", &[], nonce)
            } else {
                Response::builder()
                    .status(201)
                    .header("location", format!("{base}/acct/1"))
                    .header("replay-nonce", nonce)
                    .body(Full::new(Bytes::from(
                        r#"{"status":"valid","orders":"x","unknown":null}"#,
                    )))
                    .unwrap()
            }
        }
        ("POST", "/new-order") if s.terms_changed => problem(
            403,
            "userActionRequired",
            &[
                ("link", "<https://x/tos-v2>;rel=\"terms-of-service\""),
                ("link", "<https://x/dir>;rel=\"index\""),
            ],
            nonce,
        ),
        ("POST", "/new-authz") => {
            s.new_authzs.push(payload.clone());
            json_resp(
                201,
                serde_json::json!({"identifier": payload["identifier"].clone(),
                    "status": "valid", "challenges": []}),
                nonce,
                Some(format!("{base}/authz/1")),
            )
        }
        ("POST", "/new-order") if s.chain_pem.is_empty() => {
            problem(503, "serverInternal", &[("retry-after", "120")], nonce)
        }
        ("POST", "/new-order") => {
            s.new_orders.push(payload.clone());
            if s.already_replaced && payload.get("replaces").is_some() {
                problem(409, "alreadyReplaced", &[], nonce)
            } else {
                s.order_status = "pending";
                json_resp(201, order("pending", &base), nonce, Some(format!("{base}/order/1")))
            }
        }
        ("POST", "/authz/1") => {
            if s.authz_outages > 0 {
                s.authz_outages -= 1;
                // The CA vanishes: the connection closes without an answer.
                return Err(Outage);
            }
            if s.order_status == "pending" {
                s.order_status = "ready";
            }
            json_resp(
                200,
                serde_json::json!({"identifier": {"type": "dns", "value": "mail.example.com"},
                    "status": "valid", "challenges": [], "expires": "2030-01-01T00:00:00Z"}),
                nonce,
                None,
            )
        }
        ("POST", "/order/1") => {
            let status = s.order_status;
            if status == "processing" {
                s.order_status = "valid";
            }
            let mut r = json_resp(200, order(status, &base), nonce, None);
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        }
        ("POST", "/order/1/finalize") => {
            s.finalizes += 1;
            if s.finalize_not_ready {
                s.finalize_not_ready = false;
                s.order_status = "processing";
                problem(403, "orderNotReady", &[], nonce)
            } else if s.order_status != "ready" {
                problem(403, "orderNotReady", &[], nonce)
            } else {
                s.order_status = "processing";
                json_resp(200, order("processing", &base), nonce, None)
            }
        }
        ("POST", "/cert/1") => Response::builder()
            .header("content-type", "application/pem-certificate-chain")
            .header("replay-nonce", nonce)
            .body(Full::new(Bytes::from(s.chain_pem.clone())))
            .unwrap(),
        ("GET", p) if p.starts_with("/ari/") && s.ari_due_now => Response::builder()
            .body(Full::new(Bytes::from(
                r#"{"suggestedWindow":{"start":"2020-01-01T00:00:00Z","end":"2020-01-02T00:00:00Z"}}"#,
            )))
            .unwrap(),
        ("GET", p) if p.starts_with("/ari/limited") => {
            problem(429, "rateLimited", &[("retry-after", "Sun, 06 Nov 2044 08:49:37 GMT")], nonce)
        }
        ("GET", p) if p.starts_with("/ari/") => Response::builder()
            .header("retry-after", "21600")
            .body(Full::new(Bytes::from(
                r#"{"suggestedWindow":{"start":"2030-01-02T04:00:00Z","end":"2030-01-03T04:00:00Z"},
                    "explanationURL":"https://ca.example/why","future":true}"#,
            )))
            .unwrap(),
        _ => problem(404, "malformed", &[], nonce),
    };
    Ok(resp)
}

async fn start(bad_nonces: usize) -> (Shared, AcmeClient, tokio::task::JoinHandle<()>) {
    start_with(State {
        bad_nonces,
        ..State::default()
    })
    .await
}

async fn start_with(state: State) -> (Shared, AcmeClient, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(State {
        base: base.clone(),
        ..state
    }));
    let st = state.clone();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let st = st.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(move |r| handle(st.clone(), r)),
                    )
                    .await;
            });
        }
    });
    let client = AcmeClient::new(ClientConfig::new(format!("{base}/dir")).only_extra_roots())
        .await
        .unwrap();
    (state, client, task)
}

fn key() -> AccountKey {
    AccountKey::generate(SigningAlgorithm::Es256).unwrap()
}

#[tokio::test]
async fn bad_nonce_retried_with_harvested_nonces_and_bounded() {
    let (state, client, task) = start(3).await;
    let account = client
        .new_account(key(), &NewAccountOptions::with_email("a@example.com"))
        .await
        .unwrap();
    assert!(account.url().ends_with("/acct/1"));
    {
        let s = state.lock().unwrap();
        assert_eq!(s.new_account_posts, 4);
        // Only the first nonce came from newNonce; the rest from the errors.
        assert_eq!(s.nonce_heads, 1);
        assert!(!s.reused, "a nonce was sent twice");
        assert!(!s.wrong_url, "JWS url differs from the request URL");
    }
    task.abort();

    // A server that never accepts a nonce: the client stops after 1 + 6
    // tries, having backed off between them (none, then 50 ms doubling).
    let (state, _, task) = start(usize::MAX).await;
    let base = state.lock().unwrap().base.clone();
    let client = AcmeClient::new(
        ClientConfig::new(format!("{base}/dir"))
            .only_extra_roots()
            .with_max_bad_nonce_retries(6),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .new_account(key(), &NewAccountOptions::default())
        .await
        .unwrap_err();
    assert!(err.problem().unwrap().is("badNonce"));
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(state.lock().unwrap().new_account_posts, 7);
    let waited: Duration = (1..=6).map(mailtls_acme::client::bad_nonce_delay).sum();
    assert_eq!(waited, Duration::from_millis(50 + 100 + 200 + 400 + 800));
    assert!(started.elapsed() >= waited, "{:?}", started.elapsed());
    // The default is high enough for a CA rejecting most nonces.
    assert_eq!(
        ClientConfig::new("https://ca.test/dir").max_bad_nonce_retries,
        mailtls_acme::client::DEFAULT_BAD_NONCE_RETRIES
    );
    task.abort();
}

#[tokio::test]
async fn retry_after_on_503_and_429_schedules() {
    let (_state, client, task) = start(0).await;
    let account = client
        .new_account(key(), &NewAccountOptions::default())
        .await
        .unwrap();
    let before = SystemTime::now();
    let err = account
        .new_order(&["a.example".to_owned()], None)
        .await
        .unwrap_err();
    match err.class() {
        ErrorClass::RateLimited { until } => {
            let d = until.duration_since(before).unwrap();
            assert!(
                d >= Duration::from_secs(119) && d <= Duration::from_secs(125),
                "{d:?}"
            );
        }
        other => panic!("503 with Retry-After should schedule, got {other:?}"),
    }
    // ARI endpoint answering 429 with an HTTP-date.
    let err = client.renewal_info("limited.x").await.unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::RateLimited {
            until: SystemTime::UNIX_EPOCH + Duration::from_secs(2_362_034_977)
        }
    );
    task.abort();
}

#[tokio::test]
async fn renewal_information_window_and_poll_time() {
    let (_state, client, task) = start(0).await;
    assert!(client.directory().renewal_info.is_some());
    let before = SystemTime::now();
    let w = client
        .renewal_info("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        w.start,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_556_800)
    );
    assert_eq!(w.end, w.start + Duration::from_secs(86_400));
    let poll = w.poll_after.unwrap().duration_since(before).unwrap();
    assert!(poll >= Duration::from_secs(21_599) && poll <= Duration::from_secs(21_605));
    assert_eq!(w.explanation_url.as_deref(), Some("https://ca.example/why"));
    let pick = mailtls_acme::renewal::random_instant(w.start, w.end);
    assert!(pick >= w.start && pick < w.end);
    task.abort();
}

fn made_chain() -> (String, String) {
    use mailtls_core::maker::{CaSpec, CertificateAuthority, ServerCertSpec};
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(
            mailtls_core::name::DnsName::parse("mail.example.com").unwrap(),
        ))
        .unwrap();
    (leaf.chain_pem(), leaf.key_pem().to_owned())
}

fn fast_poll() -> mailtls_acme::PollPolicy {
    mailtls_acme::PollPolicy::new(
        Duration::from_millis(10),
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
}

/// A mock CA with `state`'s quirks, and a fresh account there.
async fn account_at(state: State) -> (Shared, mailtls_acme::Account, tokio::task::JoinHandle<()>) {
    let (shared, client, task) = start_with(state).await;
    let account = client
        .new_account(key(), &NewAccountOptions::default())
        .await
        .unwrap();
    (shared, account, task)
}

/// Issues `request` without solvers (the mock's authorisations are valid)
/// and without a journal, polling fast.
async fn issue_plain(
    account: &mailtls_acme::Account,
    request: &mailtls_acme::CertificateRequest,
) -> Result<mailtls_acme::IssuedCertificate, mailtls_acme::AcmeError> {
    account.issue(request, &[], None, fast_poll()).await
}

/// The CA drops the connection mid-order, then comes back: the journaled
/// order resumes and no second order is created.
#[tokio::test]
async fn ca_outage_mid_order_then_resume() {
    let (chain, _) = made_chain();
    let (state, client, task) = start_with(State {
        chain_pem: chain.clone(),
        authz_outages: 1,
        ..State::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let storage = mailtls_acme::FileStorage::new(tmp.path().join("d")).unwrap();
    let account = client
        .new_account(key(), &NewAccountOptions::default())
        .await
        .unwrap();
    let request = mailtls_acme::CertificateRequest::new(["mail.example.com"]);
    let err = account
        .issue(&request, &[], Some(&storage), fast_poll())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    let issued = account
        .issue(&request, &[], Some(&storage), fast_poll())
        .await
        .unwrap();
    assert_eq!(issued.chain_pem, chain);
    let s = state.lock().unwrap();
    assert_eq!(
        s.new_orders.len(),
        1,
        "the order was resumed, not recreated"
    );
    assert_eq!(s.finalizes, 1);
    drop(s);
    task.abort();
}

/// finalize answers orderNotReady because another run finalised already:
/// the client waits through `processing` instead of failing.
#[tokio::test]
async fn order_not_ready_on_finalize_is_waited_out() {
    let (chain, _) = made_chain();
    let (state, account, task) = account_at(State {
        chain_pem: chain.clone(),
        finalize_not_ready: true,
        ..State::default()
    })
    .await;
    let issued = issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]),
    )
    .await
    .unwrap();
    assert_eq!(issued.chain_pem, chain);
    assert_eq!(state.lock().unwrap().finalizes, 1);
    assert!(state.lock().unwrap().new_orders[0].get("profile").is_none());
    // Profiles: one the directory lists is sent, an unknown one is refused.
    issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]).with_profile("classic"),
    )
    .await
    .unwrap();
    assert_eq!(state.lock().unwrap().new_orders[1]["profile"], "classic");
    let err = issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]).with_profile("shortlived"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("shortlived"), "{err}");
    assert_eq!(state.lock().unwrap().new_orders.len(), 2);
    task.abort();
}

#[derive(Default)]
struct Hooks(Mutex<Vec<String>>);
impl mailtls_acme::RenewalHooks for Hooks {
    fn renewed(&self, id: &str, _c: &mailtls_acme::IssuedCertificate) {
        self.0.lock().unwrap().push(format!("renewed {id}"));
    }
    fn failed(&self, id: &str, e: &mailtls_acme::AcmeError, _n: SystemTime) {
        self.0.lock().unwrap().push(format!("failed {id}: {e}"));
    }
}

/// ARI says renew now; `replaces` is sent for a certificate of this account,
/// the CA answers alreadyReplaced, and the manager orders without it.
#[tokio::test]
async fn ari_due_replaces_and_already_replaced() {
    use mailtls_acme::Storage;
    let (old_chain, old_key) = made_chain();
    let (new_chain, _) = made_chain();
    let (state, client, task) = start_with(State {
        chain_pem: new_chain.clone(),
        already_replaced: true,
        ari_due_now: true,
        ..State::default()
    })
    .await;
    let account = client
        .new_account(key(), &NewAccountOptions::default())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(mailtls_acme::FileStorage::new(tmp.path().join("d")).unwrap());
    storage
        .save_certificate(
            "mail",
            &mailtls_acme::storage::StoredCertificate::new(old_chain.clone(), old_key),
        )
        .await
        .unwrap();
    let mut st = mailtls_acme::storage::RenewalState::default();
    st.issued_by_account = Some(account.url().to_owned());
    storage.save_state("mail", &st).await.unwrap();
    let hooks = Arc::new(Hooks::default());
    let manager = mailtls_acme::RenewalManager::new(
        account,
        storage.clone(),
        vec![],
        vec![mailtls_acme::ManagedCertificate::new(
            "mail",
            mailtls_acme::CertificateRequest::new(["mail.example.com"]),
        )],
        hooks.clone(),
    )
    .with_poll_policy(fast_poll());
    let next = manager.check_all().await.unwrap();
    assert_eq!(*hooks.0.lock().unwrap(), vec!["renewed mail".to_string()]);
    // The old certificate's ARI id, computed independently of the client.
    use rustls_pki_types::pem::PemObject;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(old_chain.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let aki = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "2.5.29.35")
        .unwrap();
    // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }: skip 2+2 bytes.
    let key_id = &aki.value[4..4 + aki.value[3] as usize];
    let want = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(key_id),
        URL_SAFE_NO_PAD.encode(parsed.raw_serial())
    );
    {
        let s = state.lock().unwrap();
        assert_eq!(s.new_orders.len(), 2);
        assert_eq!(s.new_orders[0]["replaces"], want.as_str());
        assert!(s.new_orders[1].get("replaces").is_none());
    }
    assert_eq!(
        storage
            .load_certificate("mail")
            .await
            .unwrap()
            .unwrap()
            .chain_pem,
        new_chain
    );
    // The ARI window of the new certificate is in the past too: due now.
    assert!(next <= SystemTime::now() + Duration::from_secs(1));
    task.abort();
}

/// A second run for the same names after a valid order makes a new order
/// (the valid one is history, not work to resume), and a journaled order
/// for another key type is not resumed either.
#[tokio::test]
async fn valid_or_mismatched_orders_are_not_resumed() {
    use mailtls_acme::OrderJournal;
    let (chain, _) = made_chain();
    let (state, account, task) = account_at(State::serving(&chain)).await;
    let tmp = tempfile::tempdir().unwrap();
    let storage = mailtls_acme::FileStorage::new(tmp.path().join("d")).unwrap();
    let request = mailtls_acme::CertificateRequest::new(["mail.example.com"]);
    let first = account
        .issue(&request, &[], Some(&storage), fast_poll())
        .await
        .unwrap();
    // The journal still names the (now valid) order: nobody cleared it.
    let names = vec!["mail.example.com".to_owned()];
    assert!(storage.load_pending(&names).await.unwrap().is_some());
    let second = account
        .issue(&request, &[], Some(&storage), fast_poll())
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().new_orders.len(), 2);
    assert_ne!(first.key_pem, second.key_pem, "a new key for a new order");

    // An order interrupted mid-way for P-256, then a run asking for P-384:
    // a new order with a P-384 key, not the P-256 order resumed.
    state.lock().unwrap().authz_outages = 1;
    account
        .issue(&request, &[], Some(&storage), fast_poll())
        .await
        .unwrap_err();
    assert_eq!(state.lock().unwrap().new_orders.len(), 3);
    let p384 = request
        .clone()
        .with_key_type(mailtls_core::maker::KeyType::EcdsaP384);
    let third = account
        .issue(&p384, &[], Some(&storage), fast_poll())
        .await
        .unwrap();
    assert_eq!(state.lock().unwrap().new_orders.len(), 4);
    let key = rcgen::KeyPair::from_pem(&third.key_pem).unwrap();
    assert!(
        key.is_compatible(&rcgen::PKCS_ECDSA_P384_SHA384),
        "{:?}",
        key.algorithm()
    );
    task.abort();
}

/// New terms of service (RFC 8555 §7.3.3): the error names the terms URL
/// from the Link header and is not worth retrying unchanged.
#[tokio::test]
async fn user_action_required_reports_the_new_terms() {
    let (chain, _) = made_chain();
    let (_state, account, task) = account_at(State {
        chain_pem: chain,
        terms_changed: true,
        ..State::default()
    })
    .await;
    let err = issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]),
    )
    .await
    .unwrap_err();
    let problem = err.problem().unwrap();
    assert!(problem.is("userActionRequired"), "{err}");
    assert_eq!(
        problem.terms_of_service.as_deref(),
        Some("https://x/tos-v2")
    );
    assert!(err.to_string().contains("https://x/tos-v2"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    task.abort();
}

/// Pre-authorisation (RFC 8555 §7.4.1): with the request asking for it and
/// the directory offering newAuthz, each non-wildcard name is authorised
/// before the order.
#[tokio::test]
async fn pre_authorization_through_new_authz() {
    let (chain, _) = made_chain();
    let (state, account, task) = account_at(State::serving(&chain)).await;
    assert!(account.client().directory().new_authz.is_some());
    let issued = issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]).with_pre_authorization(),
    )
    .await
    .unwrap();
    assert_eq!(issued.chain_pem, chain);
    {
        let s = state.lock().unwrap();
        assert_eq!(s.new_authzs.len(), 1);
        assert_eq!(
            s.new_authzs[0]["identifier"],
            serde_json::json!({"type": "dns", "value": "mail.example.com"})
        );
        assert_eq!(s.new_orders.len(), 1);
    }
    // Without asking, no newAuthz.
    issue_plain(
        &account,
        &mailtls_acme::CertificateRequest::new(["mail.example.com"]),
    )
    .await
    .unwrap();
    assert_eq!(state.lock().unwrap().new_authzs.len(), 1);
    task.abort();
}

/// The CA forgot the account: a manager given the account options
/// registers the key again and renews; one without them reports the error.
#[tokio::test]
async fn a_forgotten_account_is_registered_again_by_the_manager() {
    let (chain, _) = made_chain();
    let (state, account, task) = account_at(State::serving(&chain)).await;
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(mailtls_acme::FileStorage::new(tmp.path().join("d")).unwrap());
    let certificates = vec![mailtls_acme::ManagedCertificate::new(
        "mail",
        mailtls_acme::CertificateRequest::new(["mail.example.com"]),
    )];
    let hooks = Arc::new(Hooks::default());
    state.lock().unwrap().forget_accounts = true;
    let without = mailtls_acme::RenewalManager::new(
        account.clone(),
        storage.clone(),
        vec![],
        certificates.clone(),
        hooks.clone(),
    )
    .with_poll_policy(fast_poll());
    without.check_all().await.unwrap();
    assert!(
        hooks.0.lock().unwrap()[0].contains("accountDoesNotExist"),
        "{:?}",
        hooks.0.lock().unwrap()
    );
    assert_eq!(state.lock().unwrap().new_account_posts, 1);

    let hooks = Arc::new(Hooks::default());
    let tmp = tempfile::tempdir().unwrap();
    let storage = Arc::new(mailtls_acme::FileStorage::new(tmp.path().join("d")).unwrap());
    let with = mailtls_acme::RenewalManager::new(
        account.clone(),
        storage.clone(),
        vec![],
        certificates,
        hooks.clone(),
    )
    .with_poll_policy(fast_poll())
    .with_account_options(NewAccountOptions::with_email("a@example.com"));
    with.check_all().await.unwrap();
    assert_eq!(*hooks.0.lock().unwrap(), vec!["renewed mail".to_string()]);
    assert_eq!(state.lock().unwrap().new_account_posts, 2);
    // The same key, registered again, and stored.
    assert_eq!(
        with.account().key().thumbprint(),
        account.key().thumbprint()
    );
    use mailtls_acme::Storage;
    let stored = storage
        .load_account(account.client().directory_url())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.url, with.account().url());
    task.abort();
}
