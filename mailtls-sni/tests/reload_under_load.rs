//! Hot reload while handshakes run: the certificate directory is replaced
//! several times (Kubernetes-style `..data` symlink swaps, picked up by the
//! watcher) with a broken file lying beside it all along; no handshake
//! fails, every reload goes through, and afterwards only the new set is
//! served.
// Helpers outside #[test] fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mailtls_core::{CertificateAuthority, KeyType};
use mailtls_sni::{ResolverOptions, SniResolver, WatchOptions, watch_dir};

const NAMES: [&str; 4] = [
    "mail.example.com",
    "imap.example.com",
    "pop.example.com",
    "web.example.com",
];

/// Writes version `v` of the certificate set into `root/..vN` and swaps the
/// `..data` symlink to it atomically, as the kubelet does; the old version
/// directory is then removed. Version 0 creates the visible file symlinks.
/// Returns the fingerprints served per name in this version.
fn publish(
    root: &Path,
    ca: &CertificateAuthority,
    v: usize,
    names: &[&str],
) -> Vec<(String, [u8; 32])> {
    let vdir = root.join(format!("..v{v}"));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&vdir)
        .unwrap();
    let mut prints = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let made = issue(ca, n, &[], KeyType::EcdsaP256);
        made.write_files(&vdir, &format!("c{i}")).unwrap();
        let fp = made
            .to_certificate_with_key()
            .unwrap()
            .info
            .sha256_fingerprint;
        prints.push(((*n).to_owned(), fp));
    }
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..v{v}"), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    // Visible names: one symlink per file of the largest set, created once.
    for i in 0..NAMES.len() {
        for ext in ["crt", "key"] {
            let link = root.join(format!("c{i}.{ext}"));
            let target = format!("..data/c{i}.{ext}");
            let exists = vdir.join(format!("c{i}.{ext}")).exists();
            if exists && std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(&target, &link).unwrap();
            }
            if !exists && std::fs::symlink_metadata(&link).is_ok() {
                std::fs::remove_file(&link).unwrap();
            }
        }
    }
    if v > 0 {
        let _ = std::fs::remove_dir_all(root.join(format!("..v{}", v - 1)));
    }
    prints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_handshake() {
    let ca = ca();
    let tmp = private_tempdir();
    let root = tmp.path().to_path_buf();
    let mut expected = publish(&root, &ca, 0, &NAMES);
    // A certificate without its key, present from start to end: it is
    // reported on every reload and holds none of them back.
    let broken = issue(&ca, "broken.example.com", &[], KeyType::EcdsaP256);
    std::fs::write(root.join("broken.crt"), &broken.cert_pem).unwrap();
    let resolver = Arc::new(SniResolver::new(ResolverOptions::default()));
    let report = resolver.reload_from_dir(&root).unwrap();
    assert_eq!(report.bad_files.len(), 1, "{report:?}");
    let _watcher = watch_dir(
        resolver.clone(),
        root.clone(),
        WatchOptions::default()
            .with_debounce(Duration::from_millis(50))
            .with_poll_interval(Some(Duration::from_millis(500))),
    )
    .unwrap();
    let server = serve(resolver.clone(), vec![]).await;
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let cfg = client_config(&all_schemes(), vec![]);
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let name = NAMES[i % NAMES.len()];
                match handshake(addr, cfg.clone(), Some(name)).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("handshake for {name} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        }));
    }

    // Replace the directory five times; the last version drops one name.
    let start_generation = resolver.generation();
    for v in 1..=5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let names: &[&str] = if v == 5 { &NAMES[..3] } else { &NAMES };
        let (root, ca_ref) = (root.clone(), &ca);
        expected = publish(&root, ca_ref, v, names);
    }

    // Wait until the final set is served (deadline, not a fixed sleep), and
    // until at least 1,000 handshakes ran.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cfg = client_config(&all_schemes(), vec![]);
    loop {
        let mut all_new = true;
        for (name, fp) in &expected {
            let got = handshake(addr, cfg.clone(), Some(name)).await.unwrap();
            all_new &= got.sha256_fingerprint == *fp;
        }
        if all_new && done.load(Ordering::Relaxed) >= 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "final set not served in time: {:?}",
            resolver.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let stats = resolver.stats();
    eprintln!(
        "handshakes: {}, stats: {stats:?}",
        done.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "handshakes failed during reloads"
    );
    assert!(done.load(Ordering::Relaxed) >= 1000);
    assert!(resolver.generation() > start_generation);
    // The broken file never made a reload fail, and it is still reported.
    assert_eq!(stats.failed_reloads, 0, "{stats:?}");
    assert_eq!(stats.bad_file_count, 1, "{stats:?}");
    assert!(stats.bad_files[0].file.ends_with("broken.crt"), "{stats:?}");
    // Only the new certificates: three entries, and the dropped name now gets
    // the default (a certificate for another name).
    assert_eq!(resolver.certificates().len(), 3);
    let dropped = handshake(addr, cfg.clone(), Some(NAMES[3])).await.unwrap();
    assert_ne!(dropped.dns_names[0], NAMES[3]);
    let served: Vec<[u8; 32]> = expected.iter().map(|(_, fp)| *fp).collect();
    assert!(served.contains(&dropped.sha256_fingerprint));
}

/// certbot's layout: `live/NAME/{fullchain,privkey}.pem` are symlinks into
/// `archive/NAME/`; a renewal writes `fullchain2.pem` etc. and re-points the
/// links. The watcher (on `live/`) must notice and serve the renewed one.
#[tokio::test]
async fn certbot_renewal_is_picked_up() {
    let ca = ca();
    let tmp = private_tempdir();
    let archive = tmp.path().join("archive/mail.example.com");
    let live = tmp.path().join("live/mail.example.com");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let put = |n: u32| {
        let made = issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256);
        std::fs::write(archive.join(format!("fullchain{n}.pem")), made.chain_pem()).unwrap();
        std::fs::write(archive.join(format!("privkey{n}.pem")), made.key_pem()).unwrap();
        for f in ["fullchain", "privkey"] {
            let tmp_link = live.join(format!(".{f}.tmp"));
            std::os::unix::fs::symlink(archive.join(format!("{f}{n}.pem")), &tmp_link).unwrap();
            std::fs::rename(&tmp_link, live.join(format!("{f}.pem"))).unwrap();
        }
        made.to_certificate_with_key()
            .unwrap()
            .info
            .sha256_fingerprint
    };
    let first = put(1);
    let live_root = tmp.path().join("live");
    let resolver = Arc::new(SniResolver::new(ResolverOptions::default()));
    resolver.reload_from_dir(&live_root).unwrap();
    let _w = watch_dir(
        resolver.clone(),
        live_root,
        WatchOptions::default()
            .with_debounce(Duration::from_millis(50))
            .with_poll_interval(Some(Duration::from_millis(300))),
    )
    .unwrap();
    let served = || {
        let k = resolver
            .resolve_name(Some("mail.example.com"), mailtls_sni::KeyAcceptance::ALL)
            .unwrap();
        mailtls_core::CertInfo::from_der(&k.cert[0])
            .unwrap()
            .sha256_fingerprint
    };
    assert_eq!(served(), first);
    let second = put(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served() != second {
        assert!(
            Instant::now() < deadline,
            "renewal not picked up: {:?}",
            resolver.stats()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(resolver.certificates().len(), 1);
}
