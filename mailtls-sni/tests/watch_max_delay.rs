//! The watcher's debounce has an upper bound: a directory that never goes
//! quiet is still reloaded within `max_delay`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mailtls_core::KeyType;
use mailtls_sni::{ResolverOptions, SniResolver, WatchOptions, watch_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_reloaded_while_files_keep_changing() {
    let ca = ca();
    let tmp = private_tempdir();
    let dir = tmp.path().to_path_buf();
    write(
        &issue(&ca, "mail.example.com", &[], KeyType::EcdsaP256),
        &dir,
        "mail",
    );
    let resolver = Arc::new(SniResolver::new(ResolverOptions::default()));
    resolver.reload_from_dir(&dir).unwrap();
    // A debounce the writer below never lets expire (it writes every
    // 100 ms), events only, so only the upper bound can end the wait.
    let _watcher = watch_dir(
        resolver.clone(),
        dir.clone(),
        WatchOptions::default()
            .with_debounce(Duration::from_millis(400))
            .with_poll_interval(None)
            .with_max_delay(Duration::from_secs(1)),
    )
    .unwrap();

    // A file beside the certificates that keeps changing (a status file, a
    // busy deploy tool).
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, writes, path) = (stop.clone(), writes.clone(), dir.join("heartbeat.txt"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                std::fs::write(&path, n.to_string()).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    while writes.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The change that matters, in the middle of the stream.
    let generation = resolver.generation();
    let started = Instant::now();
    write(
        &issue(&ca, "new.example.com", &[], KeyType::EcdsaP256),
        &dir,
        "new",
    );
    let deadline = started + Duration::from_secs(20);
    while served(&resolver, Some("new.example.com")).unwrap().0 != "new.example.com" {
        assert!(
            Instant::now() < deadline,
            "not reloaded while files kept changing: {:?}",
            resolver.stats()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = started.elapsed();
    let writes_before_stop = writes.load(Ordering::Relaxed);
    // The stream was still flowing when the reload happened.
    assert!(!writer.is_finished());
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(resolver.generation() > generation);
    eprintln!("reloaded after {took:?} with {writes_before_stop} writes in the stream");
}
