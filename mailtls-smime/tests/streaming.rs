//! Streaming sign, verify, encrypt and decrypt (detached and opaque
//! signatures, AES-CBC and AES-GCM): OpenSSL interop, and a 100 MB message
//! through each with bounded memory (piped from writer to reader: only the
//! GCM decryptor's plaintext spool touches the disk). One test per concern; the memory test reads the
//! process's peak resident size, so this file keeps it alone with small
//! tests that allocate little.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufWriter, Read};

use mailtls_smime::{
    Certificate, ContentCipher, ContentEncryption, Decryptor, Encryptor, Error, KeyManagement,
    SignatureForm, Signer, Verifier,
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

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Peak resident memory growth of one step, in MiB: the high-water mark
/// is reset first (/proc/self/clear_refs, Linux >= 4.0). If the reset is
/// refused the growth is counted from the earlier peak, which hides a step
/// that stays below an earlier one; the cumulative bound still holds then.
fn step_growth_mib(f: impl FnOnce()) -> u64 {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = if reset {
        status_kib("VmRSS:")
    } else {
        peak_rss_kib()
    };
    f();
    peak_rss_kib().saturating_sub(before) / 1024
}

/// Each step (a writer and a reader at once) may grow the peak by this
/// much: a few chunks of 64 KiB plus allocator slack and a thread stack,
/// far below the 100 MB streamed.
const STEP_BOUND_MIB: u64 = 8;

/// The writing end of an in-process pipe: each write is sent as one chunk
/// through a channel of a few slots, so the writer waits for the reader.
struct PipeWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl std::io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading end: end of input when the writer is dropped.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `produce` (writing) and `consume` (reading) on the two ends of a
/// pipe at once, so 100 MB pass from one step to the next without being
/// held in memory or written to disk.
fn piped<P, C, T>(produce: P, consume: C) -> T
where
    P: FnOnce(BufWriter<PipeWriter>) + Send,
    C: FnOnce(PipeReader) -> T,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || produce(BufWriter::new(PipeWriter(tx))));
        let out = consume(PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        });
        producer.join().unwrap();
        out
    })
}

#[test]
fn hundred_megabytes_stream_in_bounded_memory() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    let signer = Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
    let opaque = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .with_form(SignatureForm::Opaque);
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let bob_d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    let lines = 100 * 1024 * 1024 / LINE.len();
    let start = peak_rss_kib();
    let mut growth = Vec::new();
    // The measurement itself works: a step that holds 32 MiB shows it.
    let control = step_growth_mib(|| {
        let held = vec![1u8; 32 * 1024 * 1024];
        assert_eq!(std::hint::black_box(&held)[12345], 1);
    });
    assert!(
        control >= 24,
        "control step grew the peak by {control} MiB only"
    );

    // Sign and verify, detached and opaque: the signer writes into a pipe
    // the verifier reads (both run during the step; each alone is bounded,
    // so both together are too).
    for (name, s) in [("detached", &signer), ("opaque", &opaque)] {
        let mut sink = Counting::default();
        let mut signed_len = 0;
        growth.push((
            format!("sign_stream + verify_stream_to {name}"),
            step_growth_mib(|| {
                let report = piped(
                    |w| s.sign_stream(generated(lines), w).unwrap(),
                    |r| {
                        let mut counted = CountingReader { inner: r, len: 0 };
                        let report = verifier.verify_stream_to(&mut counted, &mut sink);
                        signed_len = counted.len;
                        report.unwrap()
                    },
                );
                assert!(report.is_valid(), "{report:?}");
            }),
        ));
        assert!(signed_len > 100 * 1024 * 1024, "{signed_len}");
        assert!(sink.len > lines * (LINE.len() + 1), "{}", sink.len);
        assert!(sink.tail.ends_with(b"line after line.\r\n"));
    }

    // Encrypt and decrypt the same 100 MB, AES-CBC and AES-GCM (whose
    // plaintext goes through the decryptor's temporary-file spool).
    for cipher in [ContentEncryption::Aes256Cbc, ContentEncryption::Aes256Gcm] {
        let encryptor = Encryptor::new(cipher)
            .with_recipient(bob.certificate(), KeyManagement::EcdhP256Sha256Kdf)
            .unwrap();
        let mut sink = Counting::default();
        growth.push((
            format!("encrypt_stream + decrypt_stream {cipher:?}"),
            step_growth_mib(|| {
                let opened = piped(
                    |w| encryptor.encrypt_stream(generated(lines), w).unwrap(),
                    |r| bob_d.decrypt_stream(r, &mut sink).unwrap(),
                );
                assert_eq!(opened, ContentCipher::Modern(cipher));
            }),
        ));
        assert!(sink.len > lines * (LINE.len() + 1), "{}", sink.len);
        assert!(sink.tail.ends_with(b"line after line.\r\n"));
    }

    eprintln!("peak memory growth per 100 MB step (MiB): {growth:?}");
    for (step, mib) in &growth {
        assert!(
            *mib < STEP_BOUND_MIB,
            "{step} grew the peak by {mib} MiB: {growth:?}"
        );
    }
    let total = peak_rss_kib().saturating_sub(start) / 1024;
    assert!(total < 64, "peak memory grew by {total} MiB overall");
}

/// A reader that counts the bytes it passed on.
struct CountingReader<R> {
    inner: R,
    len: usize,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.len += n;
        Ok(n)
    }
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

#[test]
fn streamed_gcm_interoperates_with_openssl_and_releases_nothing_unauthenticated() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let bob_d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "b.pem", bob.cert_pem.as_bytes());
    let key = write(dir.path(), "b.key", bob.key_pem.as_bytes());
    let msg = b"From: alice@example.org\nTo: bob@example.net\nContent-Type: text/plain\n\nsecret\nlines\n";
    let entity = b"Content-Type: text/plain\r\n\r\nsecret\r\nlines\r\n";
    for cipher in [ContentEncryption::Aes128Gcm, ContentEncryption::Aes256Gcm] {
        let mut enc = Vec::new();
        Encryptor::new(cipher)
            .with_recipient(bob.certificate(), KeyManagement::RsaOaepSha256)
            .unwrap()
            .encrypt_stream(&msg[..], &mut enc)
            .unwrap();
        assert!(String::from_utf8_lossy(&enc).contains("smime-type=authEnveloped-data"));
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
        assert_eq!(out, entity);
        let whole = bob_d.decrypt_message(&enc).unwrap();
        assert_eq!(whole.content, entity);
        let mut streamed = Vec::new();
        assert_eq!(
            bob_d.decrypt_stream(enc.as_slice(), &mut streamed).unwrap(),
            ContentCipher::Modern(cipher)
        );
        assert_eq!(streamed, whole.message());
        // The one-shot encryptor's DER output streams too, through a
        // caller-chosen spool.
        let one_shot = Encryptor::new(cipher)
            .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
            .unwrap()
            .encrypt_message(msg)
            .unwrap();
        let mut spooled = Vec::new();
        bob_d
            .decrypt_stream_with_spool(
                one_shot.as_slice(),
                &mut spooled,
                std::io::Cursor::new(Vec::new()),
            )
            .unwrap();
        assert!(spooled.ends_with(entity));
    }
    // OpenSSL's GCM, DER and -stream BER.
    for args in [vec!["-aes-256-gcm"], vec!["-aes-128-gcm", "-stream"]] {
        let mut a = vec!["-encrypt"];
        a.extend_from_slice(&args);
        a.extend_from_slice(&["-recip", cert.to_str().unwrap()]);
        let (ok, out, err) = openssl_cms(&a, entity);
        assert!(ok, "{err}");
        let mut streamed = Vec::new();
        bob_d.decrypt_stream(out.as_slice(), &mut streamed).unwrap();
        assert!(streamed.ends_with(entity), "{args:?}");
    }

    // A flipped ciphertext bit: the tag check fails and not one byte
    // (not even the headers) reaches the output.
    let mut enc = Vec::new();
    Encryptor::new(ContentEncryption::Aes256Gcm)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_stream(&msg[..], &mut enc)
        .unwrap();
    let der = der_of(&enc);
    // The ciphertext is the 37 bytes (CRLF entity) just before the
    // end-of-contents octets, the mac and the closing end-of-contents.
    let ct_end = der.len() - (4 + 2 + 16 + 6);
    let mut tampered = der.clone();
    tampered[ct_end - 3] ^= 0x01;
    let mut out = Vec::new();
    let err = bob_d
        .decrypt_stream(p7m(&tampered).as_slice(), &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::DecryptionFailed), "{err:?}");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // So is a wrong tag.
    let mut bad_tag = der.clone();
    bad_tag[der.len() - 7] ^= 0x80;
    let mut out = Vec::new();
    assert!(matches!(
        bob_d.decrypt_stream(p7m(&bad_tag).as_slice(), &mut out),
        Err(Error::DecryptionFailed)
    ));
    assert!(out.is_empty());
    // The untampered bytes, re-wrapped the same way, still open.
    let mut out = Vec::new();
    bob_d
        .decrypt_stream(p7m(&der).as_slice(), &mut out)
        .unwrap();
    assert!(out.ends_with(entity));
}

/// The CMS bytes of an application/pkcs7-mime message.
fn der_of(message: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(message);
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// `der` as an application/pkcs7-mime message.
fn p7m(der: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let mut m = b"From: alice@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    m.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(der)
            .as_bytes(),
    );
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn streamed_opaque_signatures_interoperate_with_openssl() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let signer = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .with_form(SignatureForm::Opaque);
    let dir = tempfile::tempdir().unwrap();
    let ca_p = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let msg = b"From: alice@example.org\nTo: bob@example.net\nContent-Type: text/plain\n\nopaque\nand streamed\n";
    let entity = b"Content-Type: text/plain\r\n\r\nopaque\r\nand streamed\r\n";

    // Ours, streamed: OpenSSL verifies and gives back the entity.
    let mut signed = Vec::new();
    signer.sign_stream(&msg[..], &mut signed).unwrap();
    assert!(String::from_utf8_lossy(&signed).contains("smime-type=signed-data"));
    let (ok, out, err) = openssl_cms(&["-verify", "-CAfile", ca_p.to_str().unwrap()], &signed);
    assert!(ok, "{err}");
    assert_eq!(out, entity);
    assert!(verifier.verify_message(&signed).unwrap().report.is_valid());
    let mut content = Vec::new();
    let report = verifier
        .verify_stream_to(signed.as_slice(), &mut content)
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    let one_shot = verifier.verify_message(&signed).unwrap();
    assert_eq!(content, one_shot.message());

    // OpenSSL's, DER and -stream BER: verified streaming.
    let cert = write(dir.path(), "a.pem", alice.cert_pem.as_bytes());
    let key = write(dir.path(), "a.key", alice.key_pem.as_bytes());
    for extra in [&[][..], &["-stream"][..]] {
        let mut args = vec![
            "-sign",
            "-nodetach",
            "-signer",
            cert.to_str().unwrap(),
            "-inkey",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = openssl_cms(&args, entity);
        assert!(ok, "{err}");
        let mut m = b"From: alice@example.org\r\n".to_vec();
        m.extend_from_slice(&out);
        let mut content = Vec::new();
        let report = verifier
            .verify_stream_to(m.as_slice(), &mut content)
            .unwrap();
        assert!(report.is_valid(), "{extra:?} {report:?}");
        assert!(content.ends_with(entity), "{extra:?}");
        assert!(content.starts_with(b"From: alice@example.org\r\nMIME-Version: 1.0\r\n"));
    }

    // A changed content byte: still read, but the report says invalid.
    let der = der_of(&signed);
    let at = der
        .windows(b"and streamed".len())
        .position(|w| w == b"and streamed")
        .unwrap();
    let mut tampered = der.clone();
    tampered[at] = b'A';
    let mut m = b"From: alice@example.org\r\nMIME-Version: 1.0\r\n\
Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    use base64::Engine as _;
    m.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(&tampered)
            .as_bytes(),
    );
    let report = verifier.verify_stream(m.as_slice()).unwrap();
    assert!(!report.is_valid());
    // Truncated: an error, not a panic.
    for cut in [signed.len() / 3, signed.len() - 20] {
        assert!(verifier.verify_stream(&signed[..cut]).is_err());
    }
}
