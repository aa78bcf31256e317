//! Integration tests against Debian's Pebble (a real, independently written
//! ACME server) on loopback: accounts, EAB, orders over all three challenge
//! types, revocation, alternate chains, badNonce retries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use mailtls_acme::solver::dns01::UpdateFuture;
use mailtls_acme::solver::{
    Dns01Solver, DnsUpdater, Http01Responder, Http01Server, TlsAlpn01Solver,
};
use mailtls_acme::{
    AccountKey, CertificateRequest, ChallengeSolver, ErrorClass, ExternalAccountBinding,
    NewAccountOptions, PollPolicy, SigningAlgorithm,
};
use mailtls_testpeers::{Pebble, PebbleOptions, leaf_names};

async fn http01_solver(pebble: &Pebble) -> (Http01Server, Arc<dyn ChallengeSolver>) {
    let responder = Http01Responder::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", pebble.http_port).parse().unwrap();
    let server = Http01Server::bind(addr, responder.clone()).await.unwrap();
    (server, Arc::new(responder))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_create_find_update_rollover_deactivate() {
    let pebble = Pebble::start(PebbleOptions::default());
    let client = pebble.client().await;
    let key = AccountKey::generate(SigningAlgorithm::Es256).unwrap();
    let pem = key.to_pem();
    let account = client
        .new_account(
            key,
            &NewAccountOptions::with_email("postmaster@example.com"),
        )
        .await
        .unwrap();
    assert!(account.url().starts_with("https://127.0.0.1:"));
    let obj = account.fetch().await.unwrap();
    assert_eq!(
        obj.contact,
        vec!["mailto:postmaster@example.com".to_string()]
    );

    // onlyReturnExisting finds the same account.
    let found = client
        .find_account(AccountKey::from_pem(&pem).unwrap())
        .await
        .unwrap();
    assert_eq!(found.url(), account.url());
    // An unknown key is refused, permanently.
    let err = client
        .find_account(AccountKey::generate(SigningAlgorithm::Es384).unwrap())
        .await
        .unwrap_err();
    assert!(err.problem().unwrap().is("accountDoesNotExist"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    let updated = account
        .update_contact(&["mailto:admin@example.com".to_string()])
        .await
        .unwrap();
    assert_eq!(
        updated.contact,
        vec!["mailto:admin@example.com".to_string()]
    );

    // Key rollover to an RSA key: the new key finds the account, the old does not.
    let new_key = AccountKey::generate(SigningAlgorithm::Rs256).unwrap();
    let new_pem = new_key.to_pem();
    let rolled = account.rollover(new_key).await.unwrap();
    assert_eq!(rolled.fetch().await.unwrap().status, "valid");
    let again = client
        .find_account(AccountKey::from_pem(&new_pem).unwrap())
        .await
        .unwrap();
    assert_eq!(again.url(), account.url());
    assert!(
        client
            .find_account(AccountKey::from_pem(&pem).unwrap())
            .await
            .is_err()
    );

    let deactivated = rolled.deactivate().await.unwrap();
    assert_eq!(deactivated.status, "deactivated");
    assert!(rolled.fetch().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_required_and_accepted() {
    // A 32-byte MAC key, base64url.
    let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(PebbleOptions {
        eab_keys: vec![("kid-1".into(), mac.into())],
        ..PebbleOptions::default()
    });
    let client = pebble.client().await;
    assert!(client.directory().meta.external_account_required);
    let err = client
        .new_account(
            AccountKey::generate(SigningAlgorithm::Es256).unwrap(),
            &NewAccountOptions::with_email("a@example.com"),
        )
        .await
        .unwrap_err();
    assert!(
        err.problem().unwrap().is("externalAccountRequired"),
        "{err}"
    );

    let mut opts = NewAccountOptions::with_email("a@example.com");
    opts.external_account_binding = Some(ExternalAccountBinding::new("kid-1", mac).unwrap());
    let account = client
        .new_account(
            AccountKey::generate(SigningAlgorithm::Es256).unwrap(),
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(account.fetch().await.unwrap().status, "valid");

    // A wrong MAC key is refused.
    opts.external_account_binding = Some(
        ExternalAccountBinding::new("kid-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .unwrap(),
    );
    assert!(
        client
            .new_account(
                AccountKey::generate(SigningAlgorithm::Es256).unwrap(),
                &opts
            )
            .await
            .is_err()
    );
}

/// Several names over http-01 with half of all nonces rejected, then revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_several_names_with_nonce_rejection_then_revoke() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: Some(50),
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let (_server, solver) = http01_solver(&pebble).await;
    let account = pebble.new_account(SigningAlgorithm::Es256).await;
    let names = [
        "mail.example.com",
        "imap.example.com",
        "mta-sts.example.com",
    ];
    for _ in 0..3 {
        let issued = account
            .issue(
                &CertificateRequest::new(names),
                std::slice::from_ref(&solver),
                None,
                PollPolicy::default(),
            )
            .await
            .unwrap();
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(leaf_names(&issued.chain_pem), want);
        // The certificate key is not the account key, and is a P-256 key.
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        assert_ne!(issued.key_pem, account.key().to_pem());

        let chain = issued.chain_der().unwrap();
        account.revoke(&chain[0], Some(4)).await.unwrap();
        let err = account.revoke(&chain[0], None).await.unwrap_err();
        assert!(err.problem().unwrap().is("alreadyRevoked"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_key_and_no_solver_error() {
    let pebble = Pebble::start(PebbleOptions::default());
    let (_server, solver) = http01_solver(&pebble).await;
    let client = pebble.client().await;
    let account = pebble.new_account(SigningAlgorithm::Es384).await;
    let issued = account
        .issue(
            &CertificateRequest::new(["rsa.example.com"])
                .with_key_type(mailtls_core::maker::KeyType::Rsa2048),
            std::slice::from_ref(&solver),
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    let chain = issued.chain_der().unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        leaf.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1"
    );
    // Revoked by proving control of the (RSA) certificate key, not the account.
    client
        .revoke_with_certificate_key(&chain[0], &issued.key_pem, Some(1))
        .await
        .unwrap();
    let err = account.revoke(&chain[0], None).await.unwrap_err();
    assert!(err.problem().unwrap().is("alreadyRevoked"), "{err}");
    // Key reuse: the next certificate carries the same public key.
    let reused = account
        .issue(
            &CertificateRequest::new(["rsa.example.com"]).with_key_reuse(issued.key_pem.clone()),
            std::slice::from_ref(&solver),
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    let reused_chain = reused.chain_der().unwrap();
    let (_, reused_leaf) = x509_parser::parse_x509_certificate(&reused_chain[0]).unwrap();
    assert_eq!(reused_leaf.public_key().raw, leaf.public_key().raw);
    assert_ne!(reused_leaf.raw_serial(), leaf.raw_serial());
    // Someone else's key cannot revoke.
    let other = account
        .issue(
            &CertificateRequest::new(["other.example.com"]),
            std::slice::from_ref(&solver),
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    let other_chain = other.chain_der().unwrap();
    assert!(
        client
            .revoke_with_certificate_key(&other_chain[0], &issued.key_pem, None)
            .await
            .is_err()
    );

    // A wildcard cannot be validated by http-01: the error names what was offered.
    let (_s2, http) = http01_solver_unbound();
    let err = account
        .issue(
            &CertificateRequest::new(["*.example.net"]),
            &[http],
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dns-01"), "{err}");
}

fn http01_solver_unbound() -> ((), Arc<dyn ChallengeSolver>) {
    ((), Arc::new(Http01Responder::new()))
}

/// tls-alpn-01 answered by a real rustls listener whose certificate resolver
/// is mailtls-sni's `SniResolver`, fed through the mailtls-core slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_through_sni_resolver() {
    let pebble = Pebble::start(PebbleOptions::default());
    let resolver = Arc::new(mailtls_sni::SniResolver::new(
        mailtls_sni::ResolverOptions::default(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![mailtls_core::challenge::ACME_TLS_ALPN_PROTOCOL.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", pebble.tls_port))
        .await
        .unwrap();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served2 = served.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let served = served2.clone();
            tokio::spawn(async move {
                if acceptor.accept(stream).await.is_ok() {
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    let account = pebble.new_account(SigningAlgorithm::Es256).await;
    let solver: Arc<dyn ChallengeSolver> = Arc::new(TlsAlpn01Solver::new(resolver.clone()));
    let issued = account
        .issue(
            &CertificateRequest::new(["mail.example.org", "smtp.example.org"]),
            &[solver],
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        leaf_names(&issued.chain_pem),
        vec!["mail.example.org", "smtp.example.org"]
    );
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    server.abort();
}

/// A [`DnsUpdater`] over pebble-challtestsrv's management API, standing in
/// for an authoritative server's dynamic update.
struct ChallTestSrv {
    base: String,
    http: reqwest::Client,
}

impl ChallTestSrv {
    async fn call(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(), mailtls_acme::AcmeError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| mailtls_acme::AcmeError::Config(e.to_string()))?;
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        Ok(())
    }
}

impl DnsUpdater for ChallTestSrv {
    fn add_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a> {
        Box::pin(self.call(
            "/set-txt",
            serde_json::json!({"host": format!("{name}."), "value": value}),
        ))
    }
    fn remove_txt<'a>(&'a self, name: &'a str, _value: &'a str) -> UpdateFuture<'a> {
        Box::pin(self.call(
            "/clear-txt",
            serde_json::json!({"host": format!("{name}.")}),
        ))
    }
}

/// dns-01 for a wildcard plus its apex: both TXT values live at the same
/// name at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_wildcard_and_apex() {
    let pebble = Pebble::start(PebbleOptions {
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let updater = Arc::new(ChallTestSrv {
        base: pebble.challtest_url.clone(),
        http: mailtls_testpeers::plain_http_client(),
    });
    let solver: Arc<dyn ChallengeSolver> = Arc::new(Dns01Solver::new(updater));
    let account = pebble.new_account(SigningAlgorithm::Es256).await;
    let issued = account
        .issue(
            &CertificateRequest::new(["*.example.com", "example.com"]),
            &[solver],
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        leaf_names(&issued.chain_pem),
        vec!["*.example.com", "example.com"]
    );
}

/// Pebble with alternate roots: the preferred issuer picks the matching chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_chains_and_preferred_issuer() {
    let pebble = Pebble::start(PebbleOptions {
        alternate_roots: Some(1),
        ..PebbleOptions::default()
    });
    let (_server, solver) = http01_solver(&pebble).await;
    let account = pebble.new_account(SigningAlgorithm::Es256).await;
    let issued = account
        .issue(
            &CertificateRequest::new(["alt.example.com"]),
            std::slice::from_ref(&solver),
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    let order = account.order(&issued.order_url).await.unwrap();
    let chains = account
        .all_chains(order.certificate.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(chains.len(), 2, "Pebble offers one alternate");
    // The alternate's top issuer name, read independently of the client.
    let top_issuer = |pem: &str| {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
        let (_, top) = x509_parser::parse_x509_certificate(certs.last().unwrap()).unwrap();
        top.issuer()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (default_root, alt_root) = (top_issuer(&chains[0]), top_issuer(&chains[1]));
    assert_ne!(default_root, alt_root);
    let chosen = account
        .download(order.certificate.as_deref().unwrap(), Some(&alt_root))
        .await
        .unwrap();
    assert_eq!(top_issuer(&chosen), alt_root);
    let chosen = account
        .download(order.certificate.as_deref().unwrap(), Some("No Such CA"))
        .await
        .unwrap();
    assert_eq!(top_issuer(&chosen), default_root);
    // The issuing root served by Pebble's management API is the default one.
    let root0 = pebble.management_get("/roots/0").await;
    assert!(root0.contains("BEGIN CERTIFICATE"));
}
