//! mailtls-smime: sign, verify, encrypt and decrypt a message file with the
//! `mailtls_smime` engine, interoperable with `openssl cms`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use mailtls_core::{CertInfo, KeyAlgorithm};
use mailtls_examples::cli_args::{ArgParser, UsageError, subcommand_main};
use mailtls_smime::{
    Certificate, Check, ContentEncryption, Decryptor, DigestAlgorithm, Encryptor, Failure,
    KeyManagement, OpenedLayer, PrivateKey, SignatureForm, Signer, Verifier, VerifyReport,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const USAGE: &str = "\
usage:
  mailtls-smime sign    --cert CERT --key KEY [--chain PEM] [--opaque]
                        [--digest sha256|sha512] --in FILE --out FILE
  mailtls-smime verify  --ca CA [--ca CA]... --in FILE [--out FILE] [--at TIME]
  mailtls-smime encrypt --recip CERT [--recip CERT]... [--cipher CIPHER] [--oaep]
                        --in FILE --out FILE
  mailtls-smime decrypt --cert CERT --key KEY [--ca CA]... [--at TIME]
                        --in FILE --out FILE

  FILE        a whole RFC 5322 message (header fields other than Content-*
              stay outside the S/MIME layer)
  --cert      PEM (or DER) certificate; for sign, further certificates in the
              file are sent along as the chain
  --key       PKCS #8 PEM private key (RSA, ECDSA P-256/P-384, Ed25519)
  --chain     PEM file of intermediate certificates to include
  --opaque    application/pkcs7-mime signed-data instead of multipart/signed
  --digest    RSA keys only; ECDSA and Ed25519 keys use their own
  --ca        trust anchor PEM file (repeatable; each may hold several); for
              decrypt, what a signature inside the encryption is checked
              against
  --out       for verify: where to write the verified message; for decrypt:
              the message with every layer removed (a signature inside is
              verified and its report printed)
  --at        verify as of this RFC 3339 time, e.g. 2030-01-01T00:00:00Z
  --recip     recipient certificate (repeatable): RSA or ECDSA P-256
  --cipher    aes128-cbc | aes192-cbc | aes256-cbc (default) | aes128-gcm |
              aes192-gcm | aes256-gcm
  --oaep      RSA-OAEP with SHA-256 instead of PKCS #1 v1.5 for RSA recipients

exit status: 0 success (verify, and decrypt of signed content: every signer
valid), 1 failure, 2 usage error";

/// A signature that parsed but did not verify: exit code 1, report printed.
#[derive(Debug)]
struct NotValid;

type AnyError = Box<dyn std::error::Error>;

#[derive(Default)]
struct Opts {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    chain: Option<PathBuf>,
    opaque: bool,
    digest: Option<DigestAlgorithm>,
    cas: Vec<PathBuf>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    at: Option<SystemTime>,
    recips: Vec<PathBuf>,
    cipher: Option<ContentEncryption>,
    oaep: bool,
}

fn usage(msg: impl Into<String>) -> AnyError {
    Box::new(UsageError(msg.into()))
}

fn parse_opts(args: &[String]) -> Result<Opts, UsageError> {
    let mut o = Opts::default();
    let mut p = ArgParser::new(args);
    while let Some(arg) = p.next() {
        match arg.as_str() {
            "--cert" => o.cert = Some(PathBuf::from(p.value()?)),
            "--key" => o.key = Some(PathBuf::from(p.value()?)),
            "--chain" => o.chain = Some(PathBuf::from(p.value()?)),
            "--opaque" => o.opaque = true,
            "--digest" => {
                o.digest = Some(p.choice(&[
                    ("sha256", DigestAlgorithm::Sha256),
                    ("sha512", DigestAlgorithm::Sha512),
                ])?)
            }
            "--ca" => o.cas.push(PathBuf::from(p.value()?)),
            "--in" => o.input = Some(PathBuf::from(p.value()?)),
            "--out" => o.output = Some(PathBuf::from(p.value()?)),
            "--at" => {
                let v = p.value()?;
                let t = OffsetDateTime::parse(&v, &Rfc3339)
                    .map_err(|e| UsageError(format!("--at: {v:?} is not an RFC 3339 time: {e}")))?;
                o.at = Some(SystemTime::from(t));
            }
            "--recip" => o.recips.push(PathBuf::from(p.value()?)),
            "--cipher" => {
                o.cipher = Some(p.choice(&[
                    ("aes128-cbc", ContentEncryption::Aes128Cbc),
                    ("aes192-cbc", ContentEncryption::Aes192Cbc),
                    ("aes256-cbc", ContentEncryption::Aes256Cbc),
                    ("aes128-gcm", ContentEncryption::Aes128Gcm),
                    ("aes192-gcm", ContentEncryption::Aes192Gcm),
                    ("aes256-gcm", ContentEncryption::Aes256Gcm),
                ])?)
            }
            "--oaep" => o.oaep = true,
            f => return Err(UsageError(format!("unknown argument {f}"))),
        }
    }
    Ok(o)
}

/// Rejects options that the command does not use, so a typo such as
/// `verify --cert` is not silently ignored.
fn only(o: &Opts, command: &str, allowed: &[&str]) -> Result<(), AnyError> {
    let given = [
        ("--cert", o.cert.is_some()),
        ("--key", o.key.is_some()),
        ("--chain", o.chain.is_some()),
        ("--opaque", o.opaque),
        ("--digest", o.digest.is_some()),
        ("--ca", !o.cas.is_empty()),
        ("--at", o.at.is_some()),
        ("--recip", !o.recips.is_empty()),
        ("--cipher", o.cipher.is_some()),
        ("--oaep", o.oaep),
    ];
    for (flag, present) in given {
        if present && !allowed.contains(&flag) {
            return Err(usage(format!("{command}: {flag} does not apply")));
        }
    }
    Ok(())
}

fn required<'a>(v: &'a Option<PathBuf>, command: &str, flag: &str) -> Result<&'a Path, AnyError> {
    v.as_deref()
        .ok_or_else(|| usage(format!("{command}: give {flag} FILE")))
}

fn read(path: &Path) -> Result<Vec<u8>, AnyError> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

fn write(path: &Path, data: &[u8]) -> Result<(), AnyError> {
    std::fs::write(path, data).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// Every certificate of a PEM file, or the one certificate of a DER file.
fn certificates(path: &Path) -> Result<Vec<Certificate>, AnyError> {
    let data = read(path)?;
    let certs = if data.trim_ascii_start().starts_with(b"-----") {
        Certificate::from_pem(&data)
    } else {
        Certificate::from_der(&data).map(|c| vec![c])
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()).into());
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKey, AnyError> {
    let data = read(path)?;
    PrivateKey::from_pem(&data).map_err(|e| format!("{}: {e}", path.display()).into())
}

fn cmd_sign(o: &Opts) -> Result<(), AnyError> {
    only(
        o,
        "sign",
        &["--cert", "--key", "--chain", "--opaque", "--digest"],
    )?;
    let cert = required(&o.cert, "sign", "--cert")?;
    let key = private_key(required(&o.key, "sign", "--key")?)?;
    let input = read(required(&o.input, "sign", "--in")?)?;
    let out = required(&o.output, "sign", "--out")?;
    let mut chain = certificates(cert)?;
    if let Some(p) = &o.chain {
        chain.extend(certificates(p)?);
    }
    let mut signer = Signer::new(key, chain).map_err(|e| format!("{}: {e}", cert.display()))?;
    if let Some(d) = o.digest {
        signer = signer.with_digest(d)?;
    }
    if o.opaque {
        signer = signer.with_form(SignatureForm::Opaque);
    }
    write(out, &signer.sign_message(&input)?)
}

/// A verifier trusting every `--ca` file, as of `--at` when given.
fn verifier(o: &Opts) -> Result<Verifier, AnyError> {
    let mut anchors = Vec::new();
    for p in &o.cas {
        anchors.extend(certificates(p)?);
    }
    let mut verifier = Verifier::new(anchors);
    if let Some(t) = o.at {
        verifier = verifier.at_time(t);
    }
    Ok(verifier)
}

fn cmd_verify(o: &Opts) -> Result<(), AnyError> {
    only(o, "verify", &["--ca", "--at"])?;
    if o.cas.is_empty() {
        return Err(usage("verify: give at least one --ca FILE"));
    }
    let input = read(required(&o.input, "verify", "--in")?)?;
    let verifier = verifier(o)?;
    let verified = verifier.verify_message(&input)?;
    print_report(&verified.report);
    if !verified.report.is_valid() {
        return Err(Box::new(NotValid));
    }
    if let Some(out) = &o.output {
        write(out, &verified.message())?;
    }
    Ok(())
}

fn cmd_encrypt(o: &Opts) -> Result<(), AnyError> {
    only(o, "encrypt", &["--recip", "--cipher", "--oaep"])?;
    if o.recips.is_empty() {
        return Err(usage("encrypt: give at least one --recip CERT"));
    }
    let input = read(required(&o.input, "encrypt", "--in")?)?;
    let out = required(&o.output, "encrypt", "--out")?;
    let mut encryptor = Encryptor::new(o.cipher.unwrap_or(ContentEncryption::Aes256Cbc));
    for p in &o.recips {
        let certs = certificates(p)?;
        let cert = certs.into_iter().next().ok_or("no certificate")?;
        let info = CertInfo::from_der(cert.der()).map_err(|e| format!("{}: {e}", p.display()))?;
        let transport = match info.key {
            KeyAlgorithm::Rsa { .. } if o.oaep => KeyManagement::RsaOaepSha256,
            KeyAlgorithm::Rsa { .. } => KeyManagement::RsaPkcs1v15,
            KeyAlgorithm::EcdsaP256 => KeyManagement::EcdhP256Sha256Kdf,
            other => {
                return Err(format!(
                    "{}: a {other} key cannot receive encrypted mail (RSA or P-256 only)",
                    p.display()
                )
                .into());
            }
        };
        encryptor
            .add_recipient(cert, transport)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    write(out, &encryptor.encrypt_message(&input)?)
}

fn cmd_decrypt(o: &Opts) -> Result<(), AnyError> {
    only(o, "decrypt", &["--cert", "--key", "--ca", "--at"])?;
    let cert_path = required(&o.cert, "decrypt", "--cert")?;
    let key = private_key(required(&o.key, "decrypt", "--key")?)?;
    let input = read(required(&o.input, "decrypt", "--in")?)?;
    let out = required(&o.output, "decrypt", "--out")?;
    let cert = certificates(cert_path)?
        .into_iter()
        .next()
        .ok_or("no certificate")?;
    let decryptor =
        Decryptor::new(key, cert).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let verifier = verifier(o)?;
    // Every layer comes off: the encryption, a signature inside it
    // (sign-then-encrypt), and further layers (triple wrap).
    let opened = mailtls_smime::open(&input, &verifier, std::slice::from_ref(&decryptor))?;
    if !opened.was_encrypted() {
        return Err("the message is not encrypted".into());
    }
    let mut all_valid = true;
    for layer in &opened.layers {
        match layer {
            OpenedLayer::Encrypted(cipher) => println!("decrypted: {cipher:?}"),
            OpenedLayer::Signed(report) => {
                println!("signed layer inside:");
                if o.cas.is_empty() {
                    println!("  (no --ca given: the chain cannot be checked)");
                }
                print_report(report);
                all_valid &= report.is_valid();
            }
            other => println!("layer: {other:?}"),
        }
    }
    // The decrypted content is written even when a signature inside does
    // not verify: decryption worked; the exit status tells about the
    // signature.
    write(out, &opened.message)?;
    if !all_valid {
        return Err(Box::new(NotValid));
    }
    Ok(())
}

fn when(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::SignerCertificateNotFound => "no certificate matches the signer".into(),
        Failure::MissingAttribute(a) => format!("signed attribute {a} missing or malformed"),
        Failure::DigestMismatch => "message digest does not match the content".into(),
        Failure::ContentTypeMismatch => "contentType attribute does not match".into(),
        Failure::SigningCertificateMismatch => {
            "signingCertificateV2 names another certificate".into()
        }
        Failure::BadSignature => "signature value does not verify".into(),
        Failure::UnsupportedAlgorithm(a) => format!("unsupported algorithm {a}"),
        Failure::Expired => "certificate expired".into(),
        Failure::NotYetValid => "certificate not yet valid".into(),
        Failure::UnknownIssuer(i) => format!("no path to a trust anchor (issuer {i})"),
        Failure::BadChain(why) => format!("bad chain: {why}"),
        Failure::KeyUsageNotForSigning => "key usage does not allow signing".into(),
        Failure::NotForEmailProtection => "extended key usage lacks emailProtection".into(),
        Failure::NoSenderAddress => "the message has no From or Sender address".into(),
        Failure::AddressMismatch {
            message,
            certificate,
        } => format!(
            "message address {} not in certificate ({})",
            message.join(", "),
            certificate.join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn print_report(report: &VerifyReport) {
    if report.signers.is_empty() {
        println!("no signers");
    }
    for (i, s) in report.signers.iter().enumerate() {
        let subject = s.certificate.as_ref().map_or_else(
            || "(certificate not found)".to_owned(),
            Certificate::subject,
        );
        println!("signer {}: {subject}", i + 1);
        if let Some(t) = s.signing_time {
            println!("  signing time:       {}", when(t));
        }
        for (name, check) in s.checks() {
            let result = match check {
                Check::Passed => "ok".to_owned(),
                Check::Failed(f) => format!("FAILED: {}", describe(f)),
                Check::NotChecked => "not checked".to_owned(),
            };
            println!("  {:<19} {result}", format!("{name}:"));
        }
    }
    println!(
        "result: {}",
        if report.is_valid() {
            "valid"
        } else {
            "NOT VALID"
        }
    );
}

impl std::fmt::Display for NotValid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the signature is not valid")
    }
}

impl std::error::Error for NotValid {}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    subcommand_main("mailtls-smime", USAGE, &args, |command, rest| {
        parse_opts(rest)
            .map_err(|e| Box::new(e) as AnyError)
            .and_then(|o| match command {
                "sign" => cmd_sign(&o),
                "verify" => cmd_verify(&o),
                "encrypt" => cmd_encrypt(&o),
                "decrypt" => cmd_decrypt(&o),
                other => Err(usage(format!("unknown command {other:?}"))),
            })
    })
}
