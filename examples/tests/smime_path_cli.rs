//! `mailtls-server smime`: the S/MIME gateway's listing (own keys, partner
//! certificates, approvals) printed from the gateway directory without
//! starting a server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../mailtls-smime/tests/gateway_common/mod.rs"]
mod gateway_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use gateway_common::{Spec, TestCa};
use mailtls_examples::Config;
use mailtls_smime::gateway::{Binding, FileStorage, HarvestMode, KeyStore, PartnerStore};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("the binary runs")
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("server.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ndata_dir = \"{}\"\n[smime]\nenabled = true\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn the_listing_shows_own_keys_and_partners() {
    let dir = common::private_tempdir();
    let config_file = write_config(dir.path(), "");
    let smime = dir.path().join("data").join("smime");
    for d in [smime.parent().unwrap(), smime.as_path()] {
        std::fs::create_dir_all(d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let ca = TestCa::new();
    let own = ca.issue(&Spec::email(&["sender@example.test"]));
    let partner = ca.issue(&Spec::rsa(&["carol@remote.example"]));
    let mut keys = KeyStore::open(&smime.join("keys")).unwrap();
    keys.add_user_key(own.pem.as_bytes(), own.key_pem.as_bytes(), "test")
        .unwrap();
    let storage = FileStorage::in_dir(&smime, "partners.json").unwrap();
    // The partner store is async; this test has no runtime of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut partners = PartnerStore::open(Box::new(storage), HarvestMode::Automatic)
            .await
            .unwrap();
        partners
            .upload(
                partner.pem.as_bytes(),
                "carol.pem",
                Binding::Addresses,
                SystemTime::now(),
            )
            .await
            .unwrap();
    });

    let out = run(&["smime", "--config", config_file.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("own keys: 1"), "{stdout}");
    assert!(stdout.contains("sender@example.test"), "{stdout}");
    assert!(stdout.contains("partner certificates: 1"), "{stdout}");
    assert!(stdout.contains("carol@remote.example"), "{stdout}");
    assert!(stdout.contains("awaiting approval: 0"), "{stdout}");
    // Exactly the library's listing of the same configuration.
    let config = Config::load(&config_file).unwrap();
    let expected = mailtls_examples::smime_path::list(&config)
        .unwrap()
        .to_text();
    assert_eq!(stdout, expected);

    // --data-dir points the listing at another (empty) data directory.
    let other = dir.path().join("other");
    let out = run(&[
        "smime",
        "--config",
        config_file.to_str().unwrap(),
        "--data-dir",
        other.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&other.join("smime").display().to_string()),
        "{stderr}"
    );
    assert!(!other.exists(), "the listing created a directory");
}

#[test]
fn errors_name_the_key_or_the_argument() {
    let dir = common::private_tempdir();
    let config_file = write_config(dir.path(), "default_policy = \"sometimes\"\n");
    let out = run(&["smime", "--config", config_file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("smime.default_policy"), "{stderr}");

    let out = run(&["smime", "dns-records"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'dns-records'"), "{stderr}");
}
