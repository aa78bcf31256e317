//! S/MIME engine beside OpenSSL (through the `openssl` crate's `cms`
//! module) in the same run: sign+verify (detached SignedData, RSA-2048 and
//! P-256) and encrypt+decrypt (EnvelopedData AES-256-CBC; RSA-2048 PKCS #1
//! v1.5 key transport and P-256 ECDH with OpenSSL's default SHA-1 KDF) at
//! 1 KB, 100 KB and 10 MB. Both sides work on the CMS layer (no MIME), and
//! both verify the signer's chain to the same CA.
//!
//! Before the groups, a measurement run streams 100 MB through
//! sign/verify (detached and opaque) and encrypt/decrypt (AES-CBC and
//! AES-GCM) and prints each step's peak resident memory
//! growth (VmHWM, reset between steps through /proc/self/clear_refs). After
//! them it prints the ours/OpenSSL ratio table read back from criterion's
//! estimates of this run.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, PrivateKey, SignatureForm,
    Signer, Verifier,
};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, SanType, SignatureAlgorithm,
};

const SIZES: [(usize, &str); 3] = [
    (1024, "1KB"),
    (100 * 1024, "100KB"),
    (10 * 1024 * 1024, "10MB"),
];
const EMAIL: &str = "alice@example.org";

/// One key and certificate, in both libraries' types.
struct Party {
    key_der: Vec<u8>,
    cert: Certificate,
    ossl_key: PKey<Private>,
    ossl_cert: X509,
}

impl Party {
    fn key(&self) -> PrivateKey {
        PrivateKey::from_pkcs8_der(&self.key_der).unwrap()
    }
}

struct Fixtures {
    ca: Certificate,
    ossl_store: X509Store,
    rsa: Party,
    p256: Party,
}

impl Fixtures {
    fn new() -> Self {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let party = |alg: &'static SignatureAlgorithm| {
            let key = KeyPair::generate_for(alg).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, EMAIL);
            params.subject_alt_names = vec![SanType::Rfc822Name(EMAIL.try_into().unwrap())];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
            let cert = params.signed_by(&key, &issuer).unwrap();
            let der = key.serialize_der();
            Party {
                key_der: der.clone(),
                cert: Certificate::from_der(cert.der()).unwrap(),
                ossl_key: PKey::private_key_from_der(&der).unwrap(),
                ossl_cert: X509::from_der(cert.der()).unwrap(),
            }
        };
        let mut store = X509StoreBuilder::new().unwrap();
        store
            .add_cert(X509::from_der(ca_cert.der()).unwrap())
            .unwrap();
        Fixtures {
            ca: Certificate::from_der(ca_cert.der()).unwrap(),
            ossl_store: store.build(),
            rsa: party(&PKCS_RSA_SHA256),
            p256: party(&PKCS_ECDSA_P256_SHA256),
        }
    }

    fn parties(&self) -> [(&'static str, &Party, KeyManagement); 2] {
        [
            ("rsa2048", &self.rsa, KeyManagement::RsaPkcs1v15),
            ("p256", &self.p256, KeyManagement::EcdhP256Sha1Kdf),
        ]
    }
}

fn content(size: usize) -> Vec<u8> {
    let line = b"The quick brown fox jumps over the lazy dog, line after line.\r\n";
    line.iter().copied().cycle().take(size).collect()
}

fn ossl_sign(p: &Party, data: &[u8]) -> Vec<u8> {
    let flags = CMSOptions::DETACHED | CMSOptions::BINARY;
    CmsContentInfo::sign(
        Some(&p.ossl_cert),
        Some(&p.ossl_key),
        None,
        Some(data),
        flags,
    )
    .unwrap()
    .to_der()
    .unwrap()
}

fn ossl_verify(store: &X509Store, sig: &[u8], data: &[u8]) {
    let mut cms = CmsContentInfo::from_der(sig).unwrap();
    let flags = CMSOptions::DETACHED | CMSOptions::BINARY;
    cms.verify(None, Some(store), Some(data), None, flags)
        .unwrap();
}

fn ossl_encrypt(p: &Party, data: &[u8]) -> Vec<u8> {
    let mut certs = Stack::new().unwrap();
    certs.push(p.ossl_cert.clone()).unwrap();
    CmsContentInfo::encrypt(
        &certs,
        data,
        openssl::symm::Cipher::aes_256_cbc(),
        CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap()
}

fn ossl_decrypt(p: &Party, cms: &[u8]) -> Vec<u8> {
    CmsContentInfo::from_der(cms)
        .unwrap()
        .decrypt(&p.ossl_key, &p.ossl_cert)
        .unwrap()
}

fn sign_verify(c: &mut Criterion, fx: &Fixtures) {
    let verifier = Verifier::new(vec![fx.ca.clone()]);
    let senders = [EMAIL.to_string()];
    for (alg, party, _) in fx.parties() {
        let signer = Signer::new(party.key(), vec![party.cert.clone()]).unwrap();
        let mut g = c.benchmark_group(format!("smime_sign_verify_{alg}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (size, label) in SIZES {
            let data = content(size);
            // Both sides must really verify: check once outside the timing,
            // including each side reading the other's signature.
            let ours = signer.sign_content(&data, true).unwrap();
            let report = verifier.verify_cms(&ours, Some(&data), &senders).unwrap();
            assert!(report.is_valid(), "{report:?}");
            ossl_verify(&fx.ossl_store, &ours, &data);
            let theirs = ossl_sign(party, &data);
            assert!(
                verifier
                    .verify_cms(&theirs, Some(&data), &senders)
                    .unwrap()
                    .is_valid()
            );
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("mailtls", label), &data, |b, data| {
                b.iter(|| {
                    let sig = signer.sign_content(black_box(data), true).unwrap();
                    let report = verifier.verify_cms(&sig, Some(data), &senders).unwrap();
                    assert!(report.is_valid());
                })
            });
            g.bench_with_input(BenchmarkId::new("openssl", label), &data, |b, data| {
                b.iter(|| {
                    let sig = ossl_sign(party, black_box(data));
                    ossl_verify(&fx.ossl_store, &sig, data);
                })
            });
        }
        g.finish();
    }
}

fn encrypt_decrypt(c: &mut Criterion, fx: &Fixtures) {
    for (alg, party, km) in fx.parties() {
        let encryptor = Encryptor::new(ContentEncryption::Aes256Cbc)
            .with_recipient(party.cert.clone(), km)
            .unwrap();
        let decryptor = Decryptor::new(party.key(), party.cert.clone()).unwrap();
        let mut g = c.benchmark_group(format!("smime_encrypt_decrypt_{alg}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (size, label) in SIZES {
            let data = content(size);
            let ours = encryptor.encrypt_content(&data).unwrap();
            assert_eq!(ossl_decrypt(party, &ours), data);
            assert_eq!(
                decryptor.decrypt_cms(&ossl_encrypt(party, &data)).unwrap(),
                data
            );
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("mailtls", label), &data, |b, data| {
                b.iter(|| {
                    let cms = encryptor.encrypt_content(black_box(data)).unwrap();
                    let plain = decryptor.decrypt_cms(&cms).unwrap();
                    assert_eq!(plain.len(), data.len());
                })
            });
            g.bench_with_input(BenchmarkId::new("openssl", label), &data, |b, data| {
                b.iter(|| {
                    let cms = ossl_encrypt(party, black_box(data));
                    let plain = ossl_decrypt(party, &cms);
                    assert_eq!(plain.len(), data.len());
                })
            });
        }
        g.finish();
    }
}

/// A 100 MB message of 7-bit lines, generated on the fly.
struct Generated {
    header: &'static [u8],
    left: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let line: &[u8] = b"The quick brown fox jumps over the lazy dog, line after line.\n";
        if !self.header.is_empty() {
            let n = buf.len().min(self.header.len());
            buf[..n].copy_from_slice(&self.header[..n]);
            self.header = &self.header[n..];
            return Ok(n);
        }
        let mut n = 0;
        while self.left > 0 && n + line.len() <= buf.len() {
            buf[n..n + line.len()].copy_from_slice(line);
            n += line.len();
            self.left -= 1;
        }
        Ok(n)
    }
}

fn generated() -> Generated {
    Generated {
        header: b"From: alice@example.org\nTo: bob@example.net\nSubject: big\nContent-Type: text/plain\n\n",
        left: 100 * 1024 * 1024 / 63,
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Streams 100 MB through each operation; prints the peak RSS growth of
/// each step over the resident size before it.
fn streaming_memory(fx: &Fixtures) -> Vec<(&'static str, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("signed.eml");
    let enveloped = dir.path().join("enveloped.eml");
    let p = &fx.p256;
    let signer = Signer::new(p.key(), vec![p.cert.clone()]).unwrap();
    let verifier = Verifier::new(vec![fx.ca.clone()]);
    let encryptor = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(p.cert.clone(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap();
    let decryptor = Decryptor::new(p.key(), p.cert.clone()).unwrap();
    let mut out = Vec::new();
    let mut step = |name: &'static str, f: &mut dyn FnMut()| {
        // Resetting the high-water mark needs Linux >= 4.0; if it fails the
        // numbers are cumulative (an overestimate, never an under one).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kib("VmRSS:");
        f();
        out.push((name, status_kib("VmHWM:").saturating_sub(before) / 1024));
    };
    step("sign_stream", &mut || {
        let w = BufWriter::new(std::fs::File::create(&signed).unwrap());
        signer.sign_stream(generated(), w).unwrap();
    });
    step("verify_stream", &mut || {
        let r = BufReader::new(std::fs::File::open(&signed).unwrap());
        assert!(verifier.verify_stream(r).unwrap().is_valid());
    });
    step("encrypt_stream", &mut || {
        let w = BufWriter::new(std::fs::File::create(&enveloped).unwrap());
        encryptor.encrypt_stream(generated(), w).unwrap();
    });
    step("decrypt_stream", &mut || {
        let r = BufReader::new(std::fs::File::open(&enveloped).unwrap());
        let mut sink = std::io::sink();
        decryptor.decrypt_stream(r, &mut sink).unwrap();
        sink.flush().unwrap();
    });
    // Opaque signed-data and AES-GCM AuthEnvelopedData stream too.
    let opaque = Signer::new(p.key(), vec![p.cert.clone()])
        .unwrap()
        .with_form(SignatureForm::Opaque);
    step("sign_stream opaque", &mut || {
        let w = BufWriter::new(std::fs::File::create(&signed).unwrap());
        opaque.sign_stream(generated(), w).unwrap();
    });
    step("verify_stream opaque", &mut || {
        let r = BufReader::new(std::fs::File::open(&signed).unwrap());
        let report = verifier.verify_stream_to(r, std::io::sink()).unwrap();
        assert!(report.is_valid());
    });
    let gcm = Encryptor::new(ContentEncryption::Aes256Gcm)
        .with_recipient(p.cert.clone(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap();
    step("encrypt_stream gcm", &mut || {
        let w = BufWriter::new(std::fs::File::create(&enveloped).unwrap());
        gcm.encrypt_stream(generated(), w).unwrap();
    });
    step("decrypt_stream gcm", &mut || {
        let r = BufReader::new(std::fs::File::open(&enveloped).unwrap());
        decryptor.decrypt_stream(r, std::io::sink()).unwrap();
    });
    out
}

fn report(since: SystemTime, memory: &[(&'static str, u64)]) {
    let home = criterion_home();
    println!();
    println!("| operation | key | size | mailtls | OpenSSL | ratio | target |");
    println!("|---|---|---|---:|---:|---:|---|");
    for op in ["sign_verify", "encrypt_decrypt"] {
        for alg in ["rsa2048", "p256"] {
            let group = format!("smime_{op}_{alg}");
            for (_, label) in SIZES {
                let ours = read_estimate(&home, &group, "mailtls", label, since);
                let theirs = read_estimate(&home, &group, "openssl", label, since);
                match (ours, theirs) {
                    (Ok(o), Ok(t)) => {
                        let ratio = o.median / t.median;
                        let (limit, name) = match label {
                            "10MB" => (1.0, "<= 1.0"),
                            "1KB" => (1.5, "<= 1.5"),
                            _ => (f64::INFINITY, "-"),
                        };
                        let verdict = if limit.is_infinite() {
                            "-".to_string()
                        } else if ratio <= limit {
                            format!("{name} MET")
                        } else {
                            format!("{name} MISSED")
                        };
                        println!(
                            "| {op} | {alg} | {label} | {} | {} | {ratio:.2} | {verdict} |",
                            format_ns(o.median),
                            format_ns(t.median)
                        );
                    }
                    (o, t) => println!(
                        "| {op} | {alg} | {label} | n/a | n/a | n/a | {} |",
                        o.err().or(t.err()).unwrap_or_default()
                    ),
                }
            }
        }
    }
    println!();
    println!("100 MB streamed, peak RSS growth (target < 64 MiB):");
    for (name, mib) in memory {
        let verdict = if *mib < 64 { "MET" } else { "MISSED" };
        println!("  {name}: {mib} MiB {verdict}");
    }
}

fn main() {
    // Estimates older than this are from another run and are never reported.
    let since = SystemTime::now() - Duration::from_secs(1);
    let fx = Fixtures::new();
    let memory = if is_measurement_run() {
        streaming_memory(&fx)
    } else {
        Vec::new()
    };
    let mut c = Criterion::default().configure_from_args();
    sign_verify(&mut c, &fx);
    encrypt_decrypt(&mut c, &fx);
    c.final_summary();
    if is_measurement_run() {
        report(since, &memory);
    }
}
