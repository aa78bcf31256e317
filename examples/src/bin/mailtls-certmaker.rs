//! mailtls-certmaker: a test CA, server certificates, CSRs and certificate
//! inspection from the command line, built on `mailtls_core::maker`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use mailtls_core::maker::{self, Subject};
use mailtls_core::{
    CaSpec, CertInfo, CertificateAuthority, DnsName, Expiry, ExtendedKeyUsage, KeyType,
    NamePattern, Purpose, ServerCertSpec,
};
use mailtls_examples::cli_args::{ArgError, ArgParser, UsageError, subcommand_main};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const USAGE: &str = "\
usage:
  mailtls-certmaker ca      --out DIR [--stem ca] [--cn NAME] [--org O] [--country CC]
                            [--days N] [--key TYPE]
  mailtls-certmaker server  HOST [--name NAME]... (--ca-dir DIR | --self-signed)
                            [--org O] [--country CC] [--days N] [--key TYPE]
                            [--production] [--client-auth] --out DIR [--stem NAME]
  mailtls-certmaker csr     HOST [--name NAME]... [--org O] [--country CC] [--key TYPE]
                            --out DIR [--stem NAME]
  mailtls-certmaker inspect FILE

  --name      another SAN: a host name or a *. wildcard (repeatable)
  --key       rsa2048 | rsa3072 | rsa4096 | ecdsa-p256 (default) | ecdsa-p384 | ed25519
  --ca-dir    directory holding ca.crt and ca.key (as written by `ca`)
  --production  leave out the test-certificate marker in the subject
  --out       output directory; it is created or made owner-only (0700) and
              keys get mode 0600, so give a directory of its own
  --stem      file name without extension (default: ca, or the host name)";

type AnyError = Box<dyn std::error::Error>;

#[derive(Default)]
struct Opts {
    positional: Vec<String>,
    names: Vec<String>,
    out: Option<PathBuf>,
    stem: Option<String>,
    cn: Option<String>,
    org: Option<String>,
    country: Option<String>,
    days: Option<u32>,
    key: Option<KeyType>,
    ca_dir: Option<PathBuf>,
    self_signed: bool,
    production: bool,
    client_auth: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts, UsageError> {
    let mut o = Opts::default();
    let mut p = ArgParser::new(args);
    while let Some(arg) = p.next() {
        match arg.as_str() {
            "--name" => o.names.push(p.value()?),
            "--out" => o.out = Some(PathBuf::from(p.value()?)),
            "--stem" => o.stem = Some(p.value()?),
            "--cn" => o.cn = Some(p.value()?),
            "--org" => o.org = Some(p.value()?),
            "--country" => o.country = Some(p.value()?),
            "--days" => o.days = Some(p.parse_value("a number")?),
            "--key" => {
                let v = p.value()?;
                o.key = Some(v.parse().map_err(|e| UsageError(format!("--key: {e}")))?);
            }
            "--ca-dir" => o.ca_dir = Some(PathBuf::from(p.value()?)),
            "--self-signed" => o.self_signed = true,
            "--production" => o.production = true,
            "--client-auth" => o.client_auth = true,
            _ if arg.is_flag() => {
                return Err(ArgError::UnknownFlag {
                    flag: arg.into_string(),
                }
                .into());
            }
            _ => o.positional.push(arg.into_string()),
        }
    }
    Ok(o)
}

fn subject(o: &Opts) -> Subject {
    Subject {
        organisation: o.org.clone(),
        country: o.country.clone(),
    }
}

fn host_spec(o: &Opts, command: &str) -> Result<ServerCertSpec, AnyError> {
    let host = match o.positional.as_slice() {
        [h] => h,
        [] => return Err(Box::new(UsageError(format!("{command}: give a HOST")))),
        _ => {
            return Err(Box::new(UsageError(format!(
                "{command}: one HOST only; add more names with --name"
            ))));
        }
    };
    let mut spec = ServerCertSpec::new(DnsName::parse(host).map_err(|e| format!("HOST: {e}"))?);
    for n in &o.names {
        spec.extra_names
            .push(NamePattern::parse(n).map_err(|e| format!("--name: {e}"))?);
    }
    spec.subject = subject(o);
    if let Some(d) = o.days {
        spec.validity_days = d;
    }
    if let Some(k) = o.key {
        spec.key_type = k;
    }
    spec.purpose = if o.production {
        Purpose::Production
    } else {
        Purpose::Testing
    };
    spec.client_auth = o.client_auth;
    Ok(spec)
}

/// The output directory is required: the maker makes it owner-only (0700),
/// which must never happen to the current directory by default.
fn out_dir(o: &Opts, command: &str) -> Result<PathBuf, AnyError> {
    o.out
        .clone()
        .ok_or_else(|| Box::new(UsageError(format!("{command}: give --out DIR"))) as AnyError)
}

fn cmd_ca(o: &Opts) -> Result<(), AnyError> {
    if !o.positional.is_empty() {
        return Err(Box::new(UsageError("ca takes no HOST".into())));
    }
    if o.production || o.self_signed || o.ca_dir.is_some() || !o.names.is_empty() {
        return Err(Box::new(UsageError(
            "ca: --production, --self-signed, --ca-dir and --name do not apply".into(),
        )));
    }
    let Some(out) = &o.out else {
        return Err(Box::new(UsageError("ca: give --out DIR".into())));
    };
    let mut spec = CaSpec {
        subject: subject(o),
        ..CaSpec::default()
    };
    if let Some(cn) = &o.cn {
        spec.common_name = cn.clone();
    }
    if let Some(d) = o.days {
        spec.validity_days = d;
    }
    if let Some(k) = o.key {
        spec.key_type = k;
    }
    let ca = CertificateAuthority::new_test_ca(&spec)?;
    let stem = o.stem.as_deref().unwrap_or("ca");
    let (crt, key) = ca.write_files(out, stem)?;
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

fn cmd_server(o: &Opts) -> Result<(), AnyError> {
    let out = out_dir(o, "server")?;
    let spec = host_spec(o, "server")?;
    if o.cn.is_some() {
        return Err(Box::new(UsageError(
            "server: the CN is the HOST; --cn does not apply".into(),
        )));
    }
    let made = match (&o.ca_dir, o.self_signed) {
        (Some(dir), false) => load_ca(dir)?.issue(&spec)?,
        (None, true) => maker::self_signed(&spec)?,
        (Some(_), true) => {
            return Err(Box::new(UsageError(
                "server: --ca-dir and --self-signed exclude each other".into(),
            )));
        }
        (None, false) => {
            return Err(Box::new(UsageError(
                "server: choose --ca-dir DIR or --self-signed".into(),
            )));
        }
    };
    let stem = o.stem.clone().unwrap_or_else(|| spec.host.to_string());
    let (crt, key) = made.write_files(&out, &stem)?;
    println!("wrote {}\nwrote {}", crt.display(), key.display());
    print_info(&CertInfo::from_der(&made.cert_der)?);
    Ok(())
}

fn cmd_csr(o: &Opts) -> Result<(), AnyError> {
    if o.ca_dir.is_some() || o.self_signed || o.days.is_some() || o.client_auth {
        return Err(Box::new(UsageError(
            "csr: --ca-dir, --self-signed, --days and --client-auth do not apply".into(),
        )));
    }
    let out = out_dir(o, "csr")?;
    let spec = host_spec(o, "csr")?;
    let csr = maker::make_csr(&spec)?;
    let stem = o.stem.clone().unwrap_or_else(|| spec.host.to_string());
    let (path, key) = csr.write_files(&out, &stem)?;
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

fn cmd_inspect(o: &Opts) -> Result<(), AnyError> {
    let [file] = o.positional.as_slice() else {
        return Err(Box::new(UsageError("inspect: give one FILE".into())));
    };
    let certs = mailtls_core::load::certificates_from_file(Path::new(file))?;
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    subcommand_main("mailtls-certmaker", USAGE, &args, |command, rest| {
        parse_opts(rest)
            .map_err(|e| Box::new(e) as AnyError)
            .and_then(|o| match command {
                "ca" => cmd_ca(&o),
                "server" => cmd_server(&o),
                "csr" => cmd_csr(&o),
                "inspect" => cmd_inspect(&o),
                other => {
                    Err(Box::new(UsageError(format!("unknown command {other:?}"))) as AnyError)
                }
            })
    })
}
