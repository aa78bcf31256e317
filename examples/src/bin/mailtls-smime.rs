//! mailtls-smime: sign, verify, encrypt and decrypt a message file with the
//! `mailtls_smime` engine, interoperable with `openssl cms`.
//!
//! Messages are streamed (the engine's `*_stream` API): memory stays at a
//! few chunks whatever the message size. Output goes to a temporary file
//! beside `--out`, renamed into place only when the command succeeded.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailtls_smime::{
    Certificate, Check, ContentEncryption, Decryptor, DigestAlgorithm, Encryptor, Error, Failure,
    KeyManagement, PrivateKey, SignatureForm, Signer, Verdict, Verifier, VerifyReport,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Sign, verify, encrypt and decrypt a message file (S/MIME), interoperable
/// with `openssl cms`.
#[derive(Parser)]
#[command(
    name = "mailtls-smime",
    version,
    args_override_self = true,
    override_usage = "\
mailtls-smime sign    --cert CERT --key KEY [--chain PEM] [--opaque]
                             [--digest sha256|sha384|sha512] [--pss] --in FILE --out FILE
       mailtls-smime cosign  --cert CERT --key KEY [--chain PEM]
                             [--digest sha256|sha384|sha512] [--pss] --in FILE --out FILE
       mailtls-smime verify  --ca CA [--ca CA]... --in FILE [--out FILE] [--at TIME]
       mailtls-smime encrypt --recip CERT [--recip CERT]... [--cipher CIPHER] [--oaep]
                             --in FILE --out FILE
       mailtls-smime decrypt --cert CERT --key KEY [--ca CA]... [--at TIME]
                             --in FILE --out FILE",
    after_help = "\
FILE is a whole RFC 5322 message (header fields other than Content-* stay
outside the S/MIME layer).

exit status: 0 success (verify, and decrypt of signed content: every signer
valid), 1 failure, 2 usage error",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign a message (multipart/signed, or opaque).
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-smime sign --cert CERT --key KEY [--chain PEM] [--opaque]
                          [--digest sha256|sha384|sha512] [--pss] --in FILE --out FILE"
    )]
    Sign(SignArgs),
    /// Add a signature to a message that is already signed (in its form:
    /// multipart/signed or opaque), keeping the signatures it has.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-smime cosign --cert CERT --key KEY [--chain PEM]
                            [--digest sha256|sha384|sha512] [--pss] --in FILE --out FILE"
    )]
    Cosign(CosignArgs),
    /// Verify a signed message against trust anchors and print the report.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-smime verify --ca CA [--ca CA]... --in FILE [--out FILE] [--at TIME]"
    )]
    Verify(VerifyArgs),
    /// Encrypt a message to one or more recipients.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-smime encrypt --recip CERT [--recip CERT]... [--cipher CIPHER] [--oaep]
                             --in FILE --out FILE"
    )]
    Encrypt(EncryptArgs),
    /// Decrypt a message and remove every layer, verifying a signature inside.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-smime decrypt --cert CERT --key KEY [--ca CA]... [--at TIME]
                             --in FILE --out FILE"
    )]
    Decrypt(DecryptArgs),
}

/// The signing key and how it signs (sign and cosign).
#[derive(Args)]
struct SignerArgs {
    /// PEM (or DER) certificate; further certificates in the file are sent
    /// along as the chain.
    #[arg(long, value_name = "CERT")]
    cert: PathBuf,
    /// PKCS #8 PEM private key (RSA, ECDSA P-256/P-384/P-521, Ed25519).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// PEM file of intermediate certificates to include.
    #[arg(long, value_name = "PEM")]
    chain: Option<PathBuf>,
    /// RSA keys only; ECDSA and Ed25519 keys use their own. Never SHA-1.
    #[arg(long, value_name = "DIGEST")]
    digest: Option<Digest>,
    /// RSA-PSS (salt as long as the digest, MGF1 with the same digest)
    /// instead of PKCS #1 v1.5. RSA keys only.
    #[arg(long)]
    pss: bool,
    /// The message to sign.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Where the signed message is written.
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    signer: SignerArgs,
    /// application/pkcs7-mime signed-data instead of multipart/signed.
    #[arg(long)]
    opaque: bool,
}

#[derive(Args)]
struct CosignArgs {
    #[command(flatten)]
    signer: SignerArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Trust anchor PEM file (repeatable; each may hold several).
    #[arg(long = "ca", value_name = "CA", required = true)]
    cas: Vec<PathBuf>,
    /// The signed message.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Where to write the verified message.
    #[arg(long = "out", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Verify as of this RFC 3339 time, e.g. 2030-01-01T00:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    at: Option<SystemTime>,
}

#[derive(Args)]
struct EncryptArgs {
    /// Recipient certificate (repeatable): RSA, or EC on P-256, P-384 or
    /// P-521 (ECDH with the KDF hash matching the curve).
    #[arg(long = "recip", value_name = "CERT", required = true)]
    recips: Vec<PathBuf>,
    /// Content encryption.
    #[arg(long, value_name = "CIPHER", default_value = "aes256-cbc")]
    cipher: Cipher,
    /// RSA-OAEP with SHA-256 instead of PKCS #1 v1.5 for RSA recipients.
    #[arg(long)]
    oaep: bool,
    /// The message to encrypt.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Where the encrypted message is written.
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
struct DecryptArgs {
    /// PEM (or DER) certificate of the recipient.
    #[arg(long, value_name = "CERT")]
    cert: PathBuf,
    /// PKCS #8 PEM private key of the recipient.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Trust anchor PEM file (repeatable) a signature inside the encryption
    /// is checked against.
    #[arg(long = "ca", value_name = "CA")]
    cas: Vec<PathBuf>,
    /// Verify a signature inside as of this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    at: Option<SystemTime>,
    /// The encrypted message.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// The message with every layer removed (a signature inside is verified
    /// and its report printed).
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,
}

/// `--digest` words.
#[derive(Clone, Copy, ValueEnum)]
enum Digest {
    #[value(name = "sha256")]
    Sha256,
    #[value(name = "sha384")]
    Sha384,
    #[value(name = "sha512")]
    Sha512,
}

impl From<Digest> for DigestAlgorithm {
    fn from(d: Digest) -> Self {
        match d {
            Digest::Sha256 => DigestAlgorithm::Sha256,
            Digest::Sha384 => DigestAlgorithm::Sha384,
            Digest::Sha512 => DigestAlgorithm::Sha512,
        }
    }
}

/// `--cipher` words.
#[derive(Clone, Copy, ValueEnum)]
enum Cipher {
    #[value(name = "aes128-cbc")]
    Aes128Cbc,
    #[value(name = "aes192-cbc")]
    Aes192Cbc,
    #[value(name = "aes256-cbc")]
    Aes256Cbc,
    #[value(name = "aes128-gcm")]
    Aes128Gcm,
    #[value(name = "aes192-gcm")]
    Aes192Gcm,
    #[value(name = "aes256-gcm")]
    Aes256Gcm,
}

impl From<Cipher> for ContentEncryption {
    fn from(c: Cipher) -> Self {
        match c {
            Cipher::Aes128Cbc => ContentEncryption::Aes128Cbc,
            Cipher::Aes192Cbc => ContentEncryption::Aes192Cbc,
            Cipher::Aes256Cbc => ContentEncryption::Aes256Cbc,
            Cipher::Aes128Gcm => ContentEncryption::Aes128Gcm,
            Cipher::Aes192Gcm => ContentEncryption::Aes192Gcm,
            Cipher::Aes256Gcm => ContentEncryption::Aes256Gcm,
        }
    }
}

/// `--at`: an RFC 3339 time.
fn rfc3339(v: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(v, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// A signature that parsed but did not verify: exit code 1, report printed.
#[derive(Debug)]
struct NotValid;

type AnyError = Box<dyn std::error::Error>;

fn read(path: &Path) -> Result<Vec<u8>, AnyError> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// The input message, buffered.
fn open_input(path: &Path) -> Result<BufReader<File>, AnyError> {
    File::open(path)
        .map(|f| BufReader::with_capacity(64 * 1024, f))
        .map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// An output file written under a temporary name beside its final path and
/// renamed into place by [`Output::commit`]; dropped without a commit, the
/// temporary file is removed (a failed command leaves no partial output).
struct Output {
    path: PathBuf,
    file: tempfile::NamedTempFile,
}

impl Output {
    fn create(path: &Path) -> Result<Self, AnyError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let file = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    fn writer(&mut self) -> BufWriter<&mut File> {
        BufWriter::with_capacity(64 * 1024, self.file.as_file_mut())
    }

    /// The content written so far, from the start.
    fn reader(&self) -> Result<BufReader<File>, AnyError> {
        open_input(self.file.path())
    }

    fn commit(self) -> Result<(), AnyError> {
        self.file
            .persist(&self.path)
            .map(drop)
            .map_err(|e| format!("cannot write {}: {}", self.path.display(), e.error).into())
    }
}

/// Streams through `f` from `input` into a new [`Output`] at `path`.
fn stream_to<T>(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T, Error>,
) -> Result<(Output, T), AnyError> {
    let mut out = Output::create(path)?;
    let value = {
        let mut w = out.writer();
        let value = f(&mut w)?;
        w.flush()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        value
    };
    Ok((out, value))
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

/// The signer `--cert`, `--key`, `--chain`, `--digest` and `--pss` describe.
fn signer(o: &SignerArgs) -> Result<Signer, AnyError> {
    let cert = &o.cert;
    let key = private_key(&o.key)?;
    let mut chain = certificates(cert)?;
    if let Some(p) = &o.chain {
        chain.extend(certificates(p)?);
    }
    let mut signer = Signer::new(key, chain).map_err(|e| format!("{}: {e}", cert.display()))?;
    if let Some(d) = o.digest {
        signer = signer.with_digest(d.into())?;
    }
    if o.pss {
        signer = signer
            .with_rsa_pss()
            .map_err(|e| format!("--pss: {}: {e}", o.key.display()))?;
    }
    Ok(signer)
}

fn cmd_sign(o: &SignArgs) -> Result<(), AnyError> {
    let mut signer = signer(&o.signer)?;
    if o.opaque {
        signer = signer.with_form(SignatureForm::Opaque);
    }
    let input = open_input(&o.signer.input)?;
    let (out, ()) = stream_to(&o.signer.output, |w| signer.sign_stream(input, w))?;
    out.commit()
}

/// Co-signing reads the message whole (the engine's co-signature is
/// one-shot).
fn cmd_cosign(o: &CosignArgs) -> Result<(), AnyError> {
    let signer = signer(&o.signer)?;
    let message = read(&o.signer.input)?;
    let cosigned = signer.cosign_message(&message)?;
    let (out, ()) = stream_to(&o.signer.output, |w| Ok(w.write_all(&cosigned)?))?;
    out.commit()
}

/// A verifier trusting every `--ca` file, as of `--at` when given.
fn verifier(cas: &[PathBuf], at: Option<SystemTime>) -> Result<Verifier, AnyError> {
    let mut anchors = Vec::new();
    for p in cas {
        anchors.extend(certificates(p)?);
    }
    let mut verifier = Verifier::new(anchors);
    if let Some(t) = at {
        verifier = verifier.at_time(t);
    }
    Ok(verifier)
}

fn cmd_verify(o: &VerifyArgs) -> Result<(), AnyError> {
    let verifier = verifier(&o.cas, o.at)?;
    let input = open_input(&o.input)?;
    // The content streams out before the signature (after it) is checked:
    // the output is kept only when the report says valid.
    let (out, report) = match &o.output {
        Some(path) => {
            let (out, report) = stream_to(path, |w| verifier.verify_stream_to(input, w))?;
            (Some(out), report)
        }
        None => (None, verifier.verify_stream(input)?),
    };
    print_report(&report);
    if !report.is_valid() {
        return Err(Box::new(NotValid));
    }
    match out {
        Some(out) => out.commit(),
        None => Ok(()),
    }
}

fn cmd_encrypt(o: &EncryptArgs) -> Result<(), AnyError> {
    let mut encryptor = Encryptor::new(o.cipher.into());
    for p in &o.recips {
        let certs = certificates(p)?;
        let cert = certs.into_iter().next().ok_or("no certificate")?;
        let transport = match KeyManagement::for_certificate(&cert) {
            Ok(KeyManagement::RsaPkcs1v15) if o.oaep => KeyManagement::RsaOaepSha256,
            Ok(method) => method,
            Err(e) => return Err(format!("{}: {e}", p.display()).into()),
        };
        encryptor
            .add_recipient(cert, transport)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let input = open_input(&o.input)?;
    let (out, ()) = stream_to(&o.output, |w| encryptor.encrypt_stream(input, w))?;
    out.commit()
}

/// More nested layers than this are refused (a triple wrap is 3).
const MAX_LAYERS: usize = 8;

fn cmd_decrypt(o: &DecryptArgs) -> Result<(), AnyError> {
    let cert_path = &o.cert;
    let key = private_key(&o.key)?;
    let cert = certificates(cert_path)?
        .into_iter()
        .next()
        .ok_or("no certificate")?;
    let decryptor =
        Decryptor::new(key, cert).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let verifier = verifier(&o.cas, o.at)?;
    // Every layer comes off, each streamed into the next temporary file:
    // the encryption, a signature inside it (sign-then-encrypt), and
    // further layers (triple wrap).
    let mut current: Option<Output> = None;
    let mut decrypted = false;
    let mut all_valid = true;
    for _ in 0..MAX_LAYERS {
        let reader = match &current {
            Some(out) => out.reader()?,
            None => open_input(&o.input)?,
        };
        match stream_to(&o.output, |w| verifier.verify_stream_to(reader, w)) {
            Ok((next, report)) => {
                println!("signed layer inside:");
                if o.cas.is_empty() {
                    println!("  (no --ca given: the chain cannot be checked)");
                }
                print_report(&report);
                all_valid &= report.is_valid();
                current = Some(next);
                continue;
            }
            Err(e) if !is_not_smime(&e) => return Err(e),
            Err(_) => {}
        }
        let reader = match &current {
            Some(out) => out.reader()?,
            None => open_input(&o.input)?,
        };
        match stream_to(&o.output, |w| decryptor.decrypt_stream(reader, w)) {
            Ok((next, cipher)) => {
                println!("decrypted: {cipher:?}");
                decrypted = true;
                current = Some(next);
            }
            Err(e) if !is_not_smime(&e) => return Err(e),
            Err(_) => break,
        }
    }
    let Some(current) = current.filter(|_| decrypted) else {
        return Err("the message is not encrypted".into());
    };
    // The decrypted content is written even when a signature inside does
    // not verify: decryption worked; the exit status tells about the
    // signature.
    current.commit()?;
    if !all_valid {
        return Err(Box::new(NotValid));
    }
    Ok(())
}

/// Whether a layer attempt failed only because the message is not of that
/// kind (so the next kind is tried, or the layers are all off).
fn is_not_smime(e: &AnyError) -> bool {
    matches!(e.downcast_ref::<Error>(), Some(Error::NotSmime(_)))
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
        for weak in &s.weak_algorithms {
            println!("  weak algorithm:     {weak}");
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
    let result = match report.verdict() {
        Verdict::Valid => "valid".to_owned(),
        Verdict::ValidWeak(weak) => {
            let names: Vec<String> = weak.iter().map(ToString::to_string).collect();
            format!("VALID BUT WEAK ({}): not trusted", names.join(", "))
        }
        _ => "NOT VALID".to_owned(),
    };
    println!("result: {result}");
}

impl std::fmt::Display for NotValid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the signature is not valid")
    }
}

impl std::error::Error for NotValid {}

fn main() -> ExitCode {
    // Usage mistakes end here: clap prints them with the usage, exit 2.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Sign(a) => cmd_sign(a),
        Command::Cosign(a) => cmd_cosign(a),
        Command::Verify(a) => cmd_verify(a),
        Command::Encrypt(a) => cmd_encrypt(a),
        Command::Decrypt(a) => cmd_decrypt(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtls-smime: error: {e}");
            ExitCode::FAILURE
        }
    }
}
