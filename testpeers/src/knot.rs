//! Knot DNS (`knotd`, Debian `knot`) as an authoritative server for one
//! zone on loopback, taking RFC 2136 dynamic updates signed with one TSIG
//! key (hmac-sha256). Pebble can resolve through it
//! ([`PebbleOptions::dns_server`](crate::PebbleOptions::dns_server)) so a
//! dns-01 order is validated against what the client published. Knot is
//! killed and its directory removed on drop.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailtls_acme::solver::Rfc2136Updater;

use crate::process::{KillOnDrop, free_port, write_private};

/// A running `knotd`; see the [module docs](self).
#[derive(Debug)]
pub struct Knot {
    _child: KillOnDrop,
    dir: tempfile::TempDir,
    /// Where Knot answers (UDP and TCP).
    pub addr: SocketAddr,
    zone: String,
}

impl Knot {
    /// Serves `zone` (e.g. `example.com`, holding only its SOA, NS and
    /// `ns1 A 127.0.0.1`) and accepts updates signed with the key
    /// `key_id`/`secret_b64` (base64, hmac-sha256); returns once Knot
    /// answers queries.
    ///
    /// # Panics
    ///
    /// When `knotd` is missing (`apt-get install -y knot`) or does not
    /// answer within 20 seconds.
    pub async fn start(zone: &str, key_id: &str, secret_b64: &str) -> Knot {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let port = free_port();
        std::fs::create_dir(dir.path().join("db")).expect("creating Knot's database directory");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join(format!("{zone}.zone")),
            format!(
                "$ORIGIN {zone}.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
                 @ NS ns1\nns1 A 127.0.0.1\n"
            ),
        )
        .expect("writing the zone file");
        // The configuration holds the TSIG secret.
        let conf = dir.path().join("knot.conf");
        write_private(
            &conf,
            &format!(
                "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n  user: root\n\
                 database:\n  storage: {d}/db\n\
                 key:\n  - id: {key_id}\n    algorithm: hmac-sha256\n    secret: {secret_b64}\n\
                 acl:\n  - id: update\n    key: {key_id}\n    action: update\n\
                 template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    \
                 zonefile-sync: -1\n\
                 zone:\n  - domain: {zone}\n    acl: update\n"
            ),
        );
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd is not installed (apt-get install -y knot)");
        let knot = Knot {
            _child: KillOnDrop(child),
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            zone,
        };
        // Ready once a query gets an answer (the name need not exist).
        let probe = Rfc2136Updater::new(knot.addr, &knot.zone);
        let start = Instant::now();
        while probe
            .serves_txt(&format!("probe.{}", knot.zone), "x")
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "knotd did not answer on {}",
                knot.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        knot
    }

    /// The zone Knot serves, without a trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Knot's directory (configuration, zone file, journal).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
