//! mailtls-certmaker: a test CA, server certificates, CSRs and certificate
//! inspection from the command line, built on `mailtls_core::maker`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, Parser, Subcommand};
use mailtls_core::maker::{self, Subject};
use mailtls_core::{
    CaSpec, CertInfo, CertificateAuthority, DnsName, Expiry, ExtendedKeyUsage, KeyType,
    NamePattern, Purpose, ServerCertSpec,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A test CA, server certificates, CSRs and certificate inspection.
#[derive(Parser)]
#[command(
    name = "mailtls-certmaker",
    version,
    args_override_self = true,
    override_usage = "\
mailtls-certmaker ca      --out DIR [--stem ca] [--cn NAME] [--org O] [--country CC]
                                 [--days N] [--key TYPE]
       mailtls-certmaker server  HOST [--name NAME]... (--ca-dir DIR | --self-signed)
                                 [--org O] [--country CC] [--days N] [--key TYPE]
                                 [--production] [--client-auth] --out DIR [--stem NAME]
       mailtls-certmaker csr     HOST [--name NAME]... [--org O] [--country CC] [--key TYPE]
                                 --out DIR [--stem NAME]
       mailtls-certmaker inspect FILE",
    after_help = "exit status: 0 success, 1 failure, 2 usage error",
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a test CA: CA certificate and key in --out DIR.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-certmaker ca --out DIR [--stem ca] [--cn NAME] [--org O] [--country CC]
                            [--days N] [--key TYPE]"
    )]
    Ca(CaArgs),
    /// Make a server certificate, signed by the CA in --ca-dir or self-signed.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-certmaker server HOST [--name NAME]... (--ca-dir DIR | --self-signed)
                                [--org O] [--country CC] [--days N] [--key TYPE]
                                [--production] [--client-auth] --out DIR [--stem NAME]"
    )]
    Server(ServerArgs),
    /// Make a key and a certificate signing request for a real CA.
    #[command(
        args_override_self = true,
        override_usage = "\
mailtls-certmaker csr HOST [--name NAME]... [--org O] [--country CC] [--key TYPE]
                             --out DIR [--stem NAME]"
    )]
    Csr(CsrArgs),
    /// Print what a certificate file holds (every certificate of a chain).
    #[command(
        args_override_self = true,
        override_usage = "mailtls-certmaker inspect FILE"
    )]
    Inspect {
        /// PEM or DER certificate file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Key type and subject fields, for every command that makes a key.
#[derive(Args)]
struct KeyAndSubject {
    /// Organisation (O) of the subject.
    #[arg(long, value_name = "O")]
    org: Option<String>,
    /// Country (C) of the subject: two letters.
    #[arg(long, value_name = "CC")]
    country: Option<String>,
    /// rsa2048 | rsa3072 | rsa4096 | ecdsa-p256 (default) | ecdsa-p384 | ed25519
    #[arg(long, value_name = "TYPE")]
    key: Option<KeyType>,
}

impl KeyAndSubject {
    fn subject(&self) -> Subject {
        Subject {
            organisation: self.org.clone(),
            country: self.country.clone(),
        }
    }
}

/// The host a certificate or CSR is for, its further names and where the
/// files go.
#[derive(Args)]
struct HostArgs {
    /// The host name: subject CN and first SAN.
    #[arg(value_name = "HOST", value_parser = DnsName::parse)]
    host: DnsName,
    /// Another SAN: a host name or a *. wildcard (repeatable).
    #[arg(long = "name", value_name = "NAME", value_parser = NamePattern::parse)]
    names: Vec<NamePattern>,
    #[command(flatten)]
    subject: KeyAndSubject,
    /// Output directory; it is created or made owner-only (0700) and keys get
    /// mode 0600, so give a directory of its own.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// File name without extension (default: the host name).
    #[arg(long, value_name = "NAME")]
    stem: Option<String>,
}

impl HostArgs {
    fn spec(&self) -> ServerCertSpec {
        let mut spec = ServerCertSpec::new(self.host.clone());
        spec.extra_names.extend(self.names.iter().cloned());
        spec.subject = self.subject.subject();
        if let Some(k) = self.subject.key {
            spec.key_type = k;
        }
        spec
    }

    fn stem(&self) -> String {
        self.stem.clone().unwrap_or_else(|| self.host.to_string())
    }
}

#[derive(Args)]
struct CaArgs {
    /// Output directory; it is created or made owner-only (0700) and keys get
    /// mode 0600, so give a directory of its own.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// File name without extension.
    #[arg(long, value_name = "NAME", default_value = "ca")]
    stem: String,
    /// Common name of the CA.
    #[arg(long, value_name = "NAME")]
    cn: Option<String>,
    #[command(flatten)]
    subject: KeyAndSubject,
    /// Days the certificate is valid.
    #[arg(long, value_name = "N")]
    days: Option<u32>,
}

// The issuer is required: the CA of a directory or none (self-signed).
#[derive(Args)]
#[command(group(ArgGroup::new("issuer").required(true).args(["ca_dir", "self_signed"])))]
struct ServerArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Directory holding ca.crt and ca.key (as written by `ca`).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Sign the certificate with its own key.
    #[arg(long)]
    self_signed: bool,
    /// Days the certificate is valid.
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// Leave out the test-certificate marker in the subject.
    #[arg(long)]
    production: bool,
    /// Allow TLS client authentication too (clientAuth EKU).
    #[arg(long)]
    client_auth: bool,
}

#[derive(Args)]
struct CsrArgs {
    #[command(flatten)]
    host: HostArgs,
}

type AnyError = Box<dyn std::error::Error>;

fn cmd_ca(a: &CaArgs) -> Result<(), AnyError> {
    let mut spec = CaSpec {
        subject: a.subject.subject(),
        ..CaSpec::default()
    };
    if let Some(cn) = &a.cn {
        spec.common_name = cn.clone();
    }
    if let Some(d) = a.days {
        spec.validity_days = d;
    }
    if let Some(k) = a.subject.key {
        spec.key_type = k;
    }
    let ca = CertificateAuthority::new_test_ca(&spec)?;
    let (crt, key) = ca.write_files(&a.out, &a.stem)?;
    println!("wrote {}\nwrote {}", crt.display(), key.display());
    print_info(&CertInfo::from_der(&ca.certificate().cert_der)?);
    Ok(())
}

fn load_ca(dir: &Path) -> Result<CertificateAuthority, AnyError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = CertificateAuthority::from_pem(&read("ca.crt")?, &read("ca.key")?)
        .map_err(|e| format!("CA in {}: {e}", dir.display()))?;
    Ok(ca)
}

fn cmd_server(a: &ServerArgs) -> Result<(), AnyError> {
    let mut spec = a.host.spec();
    if let Some(d) = a.days {
        spec.validity_days = d;
    }
    spec.purpose = if a.production {
        Purpose::Production
    } else {
        Purpose::Testing
    };
    spec.client_auth = a.client_auth;
    // clap's "issuer" group guarantees exactly one of the two.
    let made = match &a.ca_dir {
        Some(dir) => load_ca(dir)?.issue(&spec)?,
        None => maker::self_signed(&spec)?,
    };
    let (crt, key) = made.write_files(&a.host.out, &a.host.stem())?;
    println!("wrote {}\nwrote {}", crt.display(), key.display());
    print_info(&CertInfo::from_der(&made.cert_der)?);
    Ok(())
}

fn cmd_csr(a: &CsrArgs) -> Result<(), AnyError> {
    let spec = a.host.spec();
    let csr = maker::make_csr(&spec)?;
    let (path, key) = csr.write_files(&a.host.out, &a.host.stem())?;
    println!("wrote {}\nwrote {}", path.display(), key.display());
    println!(
        "names: {}",
        spec.names()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn cmd_inspect(file: &Path) -> Result<(), AnyError> {
    let certs = mailtls_core::load::certificates_from_file(file)?;
    let total = certs.len();
    for (i, der) in certs.iter().enumerate() {
        if total > 1 {
            println!("certificate {} of {total}", i + 1);
        }
        print_info(&CertInfo::from_der(der)?);
    }
    Ok(())
}

fn when(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

fn eku_name(e: &ExtendedKeyUsage) -> String {
    match e {
        ExtendedKeyUsage::Any => "any".into(),
        ExtendedKeyUsage::ServerAuth => "serverAuth".into(),
        ExtendedKeyUsage::ClientAuth => "clientAuth".into(),
        ExtendedKeyUsage::EmailProtection => "emailProtection".into(),
        ExtendedKeyUsage::CodeSigning => "codeSigning".into(),
        ExtendedKeyUsage::TimeStamping => "timeStamping".into(),
        ExtendedKeyUsage::OcspSigning => "OCSPSigning".into(),
        ExtendedKeyUsage::Other(oid) => oid.clone(),
        other => format!("{other:?}"),
    }
}

fn print_info(info: &CertInfo) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    let ips: Vec<String> = info.ip_addresses.iter().map(ToString::to_string).collect();
    let ekus: Vec<String> = info.extended_key_usage.iter().map(eku_name).collect();
    let expiry = match info.expiry_at(SystemTime::now()) {
        Expiry::ValidFor(d) => format!("{} days left", days(d)),
        Expiry::Expired(d) => format!("EXPIRED {} days ago", days(d)),
        Expiry::NotYetValid(d) => format!("not valid for another {} days", days(d)),
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("  subject:      {}", info.subject);
    println!("  issuer:       {}", info.issuer);
    println!("  serial:       {}", info.serial);
    println!("  DNS names:    {}", list(&info.dns_names));
    println!("  e-mail:       {}", list(&info.email_addresses));
    println!("  IP addresses: {}", list(&ips));
    println!("  not before:   {}", when(info.not_before));
    println!("  not after:    {}", when(info.not_after));
    println!("  validity:     {expiry}");
    println!("  key:          {}", info.key);
    println!("  SHA-256:      {}", info.fingerprint_hex());
    println!(
        "  EKU:          {}",
        if ekus.is_empty() {
            "- (any purpose)".to_owned()
        } else {
            ekus.join(", ")
        }
    );
    println!("  CA:           {}", yes_no(info.is_ca));
    println!("  self-issued:  {}", yes_no(info.self_issued));
}

fn main() -> ExitCode {
    // Usage mistakes end here: clap prints them with the usage, exit 2.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Ca(a) => cmd_ca(a),
        Command::Server(a) => cmd_server(a),
        Command::Csr(a) => cmd_csr(a),
        Command::Inspect { file } => cmd_inspect(file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtls-certmaker: error: {e}");
            ExitCode::FAILURE
        }
    }
}
