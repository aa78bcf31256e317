//! Streaming sign and verify: OpenSSL interop, and a 100 MB message with
//! bounded memory. One test per concern; the memory test reads the
//! process's peak resident size, so this file keeps it alone with small
//! tests that allocate little.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufReader, BufWriter, Read};

use mailtls_smime::{
    Certificate, ContentCipher, ContentEncryption, Decryptor, Encryptor, KeyManagement, Signer,
    Verifier,
};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use support::*;

/// A message of `lines` 7-bit lines (LF only), generated on the fly.
struct Generated {
    header: Vec<u8>,
    lines: usize,
    produced: usize,
    pos: usize,
}

const LINE: &[u8] = b"The quick brown fox jumps over the lazy dog, line after line.\n";

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.header.len() {
            let n = buf.len().min(self.header.len() - self.pos);
            buf[..n].copy_from_slice(&self.header[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let mut n = 0;
        while self.produced < self.lines && n + LINE.len() <= buf.len() {
            buf[n..n + LINE.len()].copy_from_slice(LINE);
            n += LINE.len();
            self.produced += 1;
        }
        Ok(n)
    }
}

fn generated(lines: usize) -> Generated {
    Generated {
        header: b"From: alice@example.org\nTo: bob@example.net\nSubject: big\nContent-Type: text/plain\n\n"
            .to_vec(),
        lines,
        produced: 0,
        pos: 0,
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn streamed_signature_matches_openssl_and_one_shot_verification() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signer = Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);

    // 7-bit text, an 8bit single part (base64 on the fly), a binary part.
    for msg in [
        b"From: alice@example.org\nContent-Type: text/plain\n\nline one\nline two\n".to_vec(),
        "From: alice@example.org\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\nnoch eine Zeile\n"
            .as_bytes()
            .to_vec(),
        b"From: alice@example.org\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n\x80"
            .to_vec(),
    ] {
        let mut signed = Vec::new();
        signer.sign_stream(msg.as_slice(), &mut signed).unwrap();
        assert!(signed.iter().all(|b| *b < 0x80));
        let dir = tempfile::tempdir().unwrap();
        let ca_p = write(dir.path(), "ca.pem", ca.pem.as_bytes());
        let (ok, _, err) = openssl_cms(&["-verify", "-CAfile", ca_p.to_str().unwrap()], &signed);
        assert!(ok, "{err}");
        let report = verifier.verify_stream(signed.as_slice()).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert!(verifier.verify_message(&signed).unwrap().report.is_valid());
    }

    // 8-bit data in a body declared 7-bit is refused.
    let bad = "From: alice@example.org\nContent-Type: text/plain\n\nGrüße\n";
    assert!(signer.sign_stream(bad.as_bytes(), Vec::new()).is_err());
}

#[test]
fn openssl_signatures_verify_streaming_and_tampering_is_caught() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "a.pem", alice.cert_pem.as_bytes());
    let key = write(dir.path(), "a.key", alice.key_pem.as_bytes());
    let body = b"Content-Type: text/plain\r\n\r\nsigned by openssl\r\n";
    let (ok, out, err) = openssl_cms(
        &[
            "-sign",
            "-signer",
            cert.to_str().unwrap(),
            "-inkey",
            key.to_str().unwrap(),
        ],
        body,
    );
    assert!(ok, "{err}");
    let mut msg = b"From: alice@example.org\r\n".to_vec();
    msg.extend_from_slice(&out);
    assert!(verifier.verify_stream(msg.as_slice()).unwrap().is_valid());
    // Stored with LF line ends: still verifies (canonicalised on the fly).
    let lf = String::from_utf8(msg.clone())
        .unwrap()
        .replace("\r\n", "\n");
    assert!(verifier.verify_stream(lf.as_bytes()).unwrap().is_valid());
    let tampered = String::from_utf8(msg)
        .unwrap()
        .replace("signed by", "forged by");
    assert!(
        !verifier
            .verify_stream(tampered.as_bytes())
            .unwrap()
            .is_valid()
    );
    assert!(
        verifier
            .verify_stream(&b"From: a@b.c\r\n\r\nplain"[..])
            .is_err()
    );
}

#[test]
fn hundred_megabytes_stream_in_bounded_memory() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let signer = Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let lines = 100 * 1024 * 1024 / LINE.len();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.eml");

    let before = peak_rss_kib();
    let file = std::fs::File::create(&path).unwrap();
    signer
        .sign_stream(generated(lines), BufWriter::new(file))
        .unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 100 * 1024 * 1024, "{size}");
    let report = verifier
        .verify_stream(BufReader::new(std::fs::File::open(&path).unwrap()))
        .unwrap();
    assert!(report.is_valid(), "{report:?}");

    // Encrypt and decrypt the same 100 MB.
    let enc_path = dir.path().join("big.p7m");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(bob.certificate(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap()
        .encrypt_stream(
            generated(lines),
            BufWriter::new(std::fs::File::create(&enc_path).unwrap()),
        )
        .unwrap();
    let mut sink = Counting::default();
    Decryptor::new(bob.key(), bob.certificate())
        .unwrap()
        .decrypt_stream(
            BufReader::new(std::fs::File::open(&enc_path).unwrap()),
            &mut sink,
        )
        .unwrap();
    assert!(sink.len > lines * (LINE.len() + 1), "{}", sink.len);
    assert!(sink.tail.ends_with(b"line after line.\r\n"));

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB");
}

/// A writer that only counts and keeps the last bytes.
#[derive(Default)]
struct Counting {
    len: usize,
    tail: Vec<u8>,
}

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len();
        self.tail.extend_from_slice(buf);
        if self.tail.len() > 64 {
            self.tail.drain(..self.tail.len() - 64);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streamed_encryption_interoperates_with_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let bob_d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "b.pem", bob.cert_pem.as_bytes());
    let key = write(dir.path(), "b.key", bob.key_pem.as_bytes());
    let msg = b"From: alice@example.org\nTo: bob@example.net\nContent-Type: text/plain\n\nsecret\nlines\n";
    for cipher in [ContentEncryption::Aes128Cbc, ContentEncryption::Aes256Cbc] {
        let mut enc = Vec::new();
        Encryptor::new(cipher)
            .with_recipient(bob.certificate(), KeyManagement::RsaOaepSha256)
            .unwrap()
            .encrypt_stream(&msg[..], &mut enc)
            .unwrap();
        let (ok, out, err) = openssl_cms(
            &[
                "-decrypt",
                "-recip",
                cert.to_str().unwrap(),
                "-inkey",
                key.to_str().unwrap(),
            ],
            &enc,
        );
        assert!(ok, "{err}");
        assert_eq!(out, b"Content-Type: text/plain\r\n\r\nsecret\r\nlines\r\n");
        let whole = bob_d.decrypt_message(&enc).unwrap();
        assert_eq!(whole.content, out);
        let mut streamed = Vec::new();
        assert_eq!(
            bob_d.decrypt_stream(enc.as_slice(), &mut streamed).unwrap(),
            ContentCipher::Modern(cipher)
        );
        assert_eq!(streamed, whole.message());
    }
    // OpenSSL's output, streamed (BER chunks) or not, and 3DES.
    let entity = b"Content-Type: text/plain\r\n\r\nfrom openssl\r\n";
    for args in [
        vec!["-aes-256-cbc"],
        vec!["-aes-128-cbc", "-stream"],
        vec!["-des3", "-stream"],
    ] {
        let mut a = vec!["-encrypt"];
        a.extend_from_slice(&args);
        a.extend_from_slice(&["-recip", cert.to_str().unwrap()]);
        let (ok, out, err) = openssl_cms(&a, entity);
        assert!(ok, "{err}");
        let mut streamed = Vec::new();
        bob_d.decrypt_stream(out.as_slice(), &mut streamed).unwrap();
        assert!(streamed.ends_with(entity), "{args:?}");
    }
    // GCM is refused both ways, with a typed error.
    let gcm = Encryptor::new(ContentEncryption::Aes256Gcm)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap();
    assert!(gcm.encrypt_stream(&msg[..], Vec::new()).is_err());
    let whole = gcm.encrypt_message(msg).unwrap();
    assert!(bob_d.decrypt_stream(whole.as_slice(), Vec::new()).is_err());
    // Truncated input is an error, not a panic.
    let mut enc = Vec::new();
    Encryptor::new(ContentEncryption::Aes128Cbc)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_stream(&msg[..], &mut enc)
        .unwrap();
    for cut in [enc.len() / 2, enc.len() - 30] {
        assert!(bob_d.decrypt_stream(&enc[..cut], Vec::new()).is_err());
    }
}
