//! mailtls-policy-check: resolves a recipient domain's MX hosts, MTA-STS
//! policy and TLSA records through a chosen name server and prints the
//! delivery plan `mailtls_policy::plan` makes from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use mailtls_core::DnsName;
use mailtls_examples::cli_args::{ArgParser, UsageError};
use mailtls_policy::dane::TlsaSet;
use mailtls_policy::dns::{DnsResolver, HickoryResolver, HickoryResolverConfig, Validation};
use mailtls_policy::mta_sts::{
    FetcherConfig, MtaSts, NoPolicyReason, PolicyCache, PolicyFetcher, PolicyOutcome,
};
use mailtls_policy::plan::{
    AddressFacts, DeliveryPlan, DomainFacts, FailureAction, HostAction, HostFacts, MxFacts,
    TlsaFacts, Verification, gather, plan,
};
use mailtls_policy::requiretls::TlsDemand;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const USAGE: &str = "\
usage:
  mailtls-policy-check --domain DOMAIN --resolver IP:PORT
                       [--trust-anchor FILE | --no-validation]
                       [--policy-root PEM]... [--requiretls] [--policy-port N]

  --resolver      the name server to ask (UDP with TCP fallback)
  --trust-anchor  validate DNSSEC from the DNSKEY records in FILE
                  (default: validate from the IANA root keys)
  --no-validation do not validate DNSSEC (DANE cannot apply)
  --policy-root   a PEM file of roots for the MTA-STS policy host (repeatable;
                  without one, no policy fetch can succeed)
  --requiretls    plan for a message carrying REQUIRETLS (RFC 8689)
  --policy-port   HTTPS port of the policy host (default 443)";

type AnyError = Box<dyn std::error::Error>;

struct Opts {
    domain: DnsName,
    resolver: SocketAddr,
    validation: Validation,
    roots: Vec<PathBuf>,
    demand: TlsDemand,
    policy_port: u16,
}

fn parse_opts(args: &[String]) -> Result<Opts, UsageError> {
    let mut domain = None;
    let mut resolver = None;
    let mut anchor = None;
    let mut no_validation = false;
    let mut roots = Vec::new();
    let mut requiretls = false;
    let mut policy_port = 443;
    let mut p = ArgParser::new(args);
    while let Some(arg) = p.next() {
        match arg.as_str() {
            "--domain" => {
                let v = p.value()?;
                let name =
                    DnsName::parse(&v).map_err(|e| UsageError(format!("--domain {v:?}: {e}")))?;
                domain = Some(name);
            }
            "--resolver" => {
                let v = p.value()?;
                let addr = v
                    .parse::<SocketAddr>()
                    .map_err(|_| UsageError(format!("--resolver {v:?}: expected IP:PORT")))?;
                resolver = Some(addr);
            }
            "--trust-anchor" => anchor = Some(PathBuf::from(p.value()?)),
            "--no-validation" => no_validation = true,
            "--policy-root" => roots.push(PathBuf::from(p.value()?)),
            "--requiretls" => requiretls = true,
            "--policy-port" => {
                let v = p.value()?;
                policy_port = v
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| UsageError(format!("--policy-port {v:?}: not a port")))?;
            }
            "-h" | "--help" => return Err(UsageError(String::new())),
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    let validation = match (anchor, no_validation) {
        (Some(_), true) => {
            return Err(UsageError(
                "--trust-anchor and --no-validation exclude each other".into(),
            ));
        }
        (Some(file), false) => Validation::AnchorFile(file),
        (None, true) => Validation::Off,
        (None, false) => Validation::Root,
    };
    Ok(Opts {
        domain: domain.ok_or_else(|| UsageError("--domain is required".into()))?,
        resolver: resolver.ok_or_else(|| UsageError("--resolver is required".into()))?,
        validation,
        roots,
        demand: if requiretls {
            TlsDemand::RequireTls
        } else {
            TlsDemand::Default
        },
        policy_port,
    })
}

fn load_roots(files: &[PathBuf]) -> Result<RootCertStore, AnyError> {
    let mut store = RootCertStore::empty();
    for file in files {
        let mut any = false;
        for cert in CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?
        {
            let cert = cert.map_err(|e| format!("reading {}: {e}", file.display()))?;
            store
                .add(cert)
                .map_err(|e| format!("root in {}: {e}", file.display()))?;
            any = true;
        }
        if !any {
            return Err(format!("{}: no certificate found", file.display()).into());
        }
    }
    Ok(store)
}

async fn run(opts: Opts) -> Result<DeliveryPlan, AnyError> {
    let roots = load_roots(&opts.roots)?;
    let resolver = HickoryResolver::new(HickoryResolverConfig::nameserver(
        opts.resolver,
        opts.validation.clone(),
    ))
    .map_err(|e| format!("resolver {}: {e}", opts.resolver))?;
    let dns: Arc<dyn DnsResolver> = Arc::new(resolver);

    let mut config = FetcherConfig::new(roots);
    config.port = opts.policy_port;
    let fetcher = PolicyFetcher::new(
        config,
        dns.clone(),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .map_err(|e| format!("policy fetcher: {e}"))?;
    let sts = MtaSts::new(dns.clone(), fetcher, PolicyCache::in_memory());
    let outcome = sts.policy_for(&opts.domain).await;
    let policy = outcome.policy().cloned();

    let facts = gather(dns.as_ref(), &opts.domain, policy).await;
    println!("domain: {}", opts.domain);
    print_mx(&facts);
    print_mta_sts(&outcome);
    print_dane(&facts);
    let delivery = plan(&facts, opts.demand);
    print_plan(&delivery);
    Ok(delivery)
}

fn hosts(facts: &DomainFacts) -> Vec<&HostFacts> {
    match &facts.mx {
        MxFacts::Hosts { hosts, .. } => hosts.iter().collect(),
        MxFacts::Implicit { host, .. } => vec![host],
        _ => Vec::new(),
    }
}

fn print_mx(facts: &DomainFacts) {
    match &facts.mx {
        MxFacts::Hosts { dnssec, .. } => println!("MX (DNSSEC: {dnssec}):"),
        MxFacts::Implicit { dnssec, .. } => {
            println!("MX: none, the domain is its own host (denial DNSSEC: {dnssec}):")
        }
        MxFacts::NullMx => println!("MX: null MX, the domain accepts no mail"),
        MxFacts::NoSuchDomain => println!("MX: the domain does not exist"),
        MxFacts::LookupFailed { bogus, detail } => {
            println!(
                "MX: lookup failed{}: {detail}",
                if *bogus { " (bogus)" } else { "" }
            )
        }
        other => println!("MX: {other:?}"),
    }
    for host in hosts(facts) {
        match &host.addresses {
            AddressFacts::Found {
                canonical,
                dnssec,
                addresses,
            } => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                println!(
                    "  {} {} (canonical {canonical}, DNSSEC {dnssec}): {}",
                    host.preference,
                    host.name,
                    list.join(", ")
                );
            }
            AddressFacts::Failed { temporary, detail } => println!(
                "  {} {}: address lookup failed ({}): {detail}",
                host.preference,
                host.name,
                if *temporary { "temporary" } else { "permanent" }
            ),
        }
    }
}

fn print_mta_sts(outcome: &PolicyOutcome) {
    match outcome {
        PolicyOutcome::Exempt => println!("MTA-STS: exempt"),
        PolicyOutcome::NoPolicy(NoPolicyReason::NoRecord) => {
            println!("MTA-STS: no policy (no _mta-sts record)")
        }
        PolicyOutcome::NoPolicy(NoPolicyReason::InvalidRecord(e)) => {
            println!("MTA-STS: no policy (invalid _mta-sts record: {e})")
        }
        PolicyOutcome::NoPolicy(NoPolicyReason::DnsFailure(e)) => {
            println!("MTA-STS: no policy (_mta-sts lookup failed: {e})")
        }
        PolicyOutcome::Policy { id, policy, source } => {
            let mx: Vec<String> = policy.mx().iter().map(|p| format!("{p:?}")).collect();
            println!(
                "MTA-STS: policy id {id:?} ({source:?}): mode {}, mx [{}], max_age {}",
                policy.mode(),
                mx.join(", "),
                policy.max_age()
            );
        }
        PolicyOutcome::Failed {
            result_type,
            detail,
        } => println!("MTA-STS: policy fetch failed, result type {result_type}: {detail}"),
        other => println!("MTA-STS: {other:?}"),
    }
}

fn print_dane(facts: &DomainFacts) {
    println!("DANE:");
    for host in hosts(facts) {
        match &host.tlsa {
            TlsaFacts::NotApplicable => {
                println!(
                    "  {}: not applicable (MX or addresses not authentic)",
                    host.name
                )
            }
            TlsaFacts::Absent { dnssec } => {
                println!("  {}: no TLSA records (DNSSEC {dnssec})", host.name)
            }
            TlsaFacts::Records {
                base,
                dnssec,
                records,
            } => {
                println!("  {}: TLSA at {base} (DNSSEC {dnssec})", host.name);
                match TlsaSet::from_records(records) {
                    Some(TlsaSet::Usable { usable, unusable }) => {
                        for r in &usable {
                            println!("    usable: {r:?}");
                        }
                        for r in &unusable {
                            println!("    unusable: {r}");
                        }
                    }
                    Some(TlsaSet::AllUnusable { unusable }) => {
                        for r in &unusable {
                            println!("    unusable: {r}");
                        }
                    }
                    None => println!("    (empty)"),
                }
            }
            TlsaFacts::Failed { bogus, detail } => println!(
                "  {}: TLSA lookup failed{}: {detail}",
                host.name,
                if *bogus { " (bogus)" } else { "" }
            ),
        }
    }
}

fn describe_verification(v: &Verification) -> String {
    match v {
        Verification::WebPki { allowed_names } => {
            let names: Vec<String> = allowed_names.iter().map(ToString::to_string).collect();
            format!("WebPKI for {}", names.join(", "))
        }
        Verification::Dane {
            records,
            reference_names,
        } => {
            let names: Vec<String> = reference_names.iter().map(ToString::to_string).collect();
            format!(
                "DANE ({} records, names {})",
                records.len(),
                names.join(", ")
            )
        }
    }
}

fn describe_failure(a: FailureAction) -> String {
    match a {
        FailureAction::TryNextMx => "try the next MX".into(),
        FailureAction::Defer(s) => format!("defer ({s})"),
        FailureAction::Bounce(s) => format!("bounce ({s})"),
    }
}

fn print_plan(delivery: &DeliveryPlan) {
    println!("plan:");
    if let Some(f) = &delivery.domain_failure {
        println!("  domain failure: {f}");
    }
    for (i, e) in delivery.entries.iter().enumerate() {
        let action = match &e.action {
            HostAction::Skip { reason } => format!("skip: {reason}"),
            HostAction::OpportunisticTls { audit: None } => "opportunistic TLS".into(),
            HostAction::OpportunisticTls { audit: Some(v) } => {
                format!("opportunistic TLS, audit {}", describe_verification(v))
            }
            HostAction::RequireTls { verify } => {
                format!("require TLS, verify {}", describe_verification(verify))
            }
            HostAction::RequireTlsUnauthenticated => "require TLS, unauthenticated".into(),
            HostAction::FailNow { status, reason } => format!("fail now {status}: {reason}"),
        };
        println!(
            "  {}. {} (preference {}, policy {}): {action}; on failure: {}{}",
            i + 1,
            e.host,
            e.preference,
            e.policy,
            describe_failure(e.on_failure),
            if e.peer_must_advertise_requiretls {
                "; peer must advertise REQUIRETLS"
            } else {
                ""
            }
        );
    }
    println!(
        "  when exhausted: {}",
        describe_failure(delivery.when_exhausted)
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_opts(&args) {
        Ok(o) => o,
        Err(UsageError(msg)) => {
            if !msg.is_empty() {
                eprintln!("mailtls-policy-check: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailtls-policy-check: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts)) {
        Ok(delivery) if delivery.domain_failure.is_none() && !delivery.entries.is_empty() => {
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("mailtls-policy-check: no delivery plan for this domain");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mailtls-policy-check: {e}");
            ExitCode::FAILURE
        }
    }
}
