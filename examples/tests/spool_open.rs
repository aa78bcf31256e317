//! A crash during a spool write leaves a temporary file behind; the
//! server removes such files when it opens the spool at start, and only
//! those: acknowledged messages stay, and POP3 lists exactly them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::DirBuilderExt;

use common::*;
use mailtls_examples::MailListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_removes_temporary_files_of_interrupted_spool_writes() {
    let ts = start(|_, dir| {
        let spool = dir.join("spool");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&spool)
            .unwrap();
        // What an interrupted `write_atomic` leaves: `.ID.eml.tmpPID-SEQ`.
        std::fs::write(
            spool.join(".000000000001000000-00001-000000.eml.tmp4242-0"),
            b"Return-Path: <half@written.example>\r\n",
        )
        .unwrap();
        std::fs::write(
            spool.join("000000000002000000-00001-000001.eml"),
            b"Subject: acknowledged\r\n\r\nkept\r\n",
        )
        .unwrap();
    })
    .await;
    let names: Vec<String> = std::fs::read_dir(ts.data_dir().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["000000000002000000-00001-000001.eml"]);

    // POP3 over implicit TLS sees the acknowledged message only.
    let tcp = tokio::net::TcpStream::connect(ts.addr(MailListener::Pop3s))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
        .await
        .unwrap();
    let mut c = LineClient::new(tls);
    assert!(c.line().await.starts_with("+OK"));
    c.send("USER test").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send("PASS test").await;
    let l = c.line().await;
    assert!(l.starts_with("+OK Logged in, 1 messages"), "{l}");
}
