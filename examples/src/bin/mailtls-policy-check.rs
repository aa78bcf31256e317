//! mailtls-policy-check: resolves a recipient domain's MX hosts, MTA-STS
//! policy and TLSA records through a chosen name server and prints the
//! delivery plan `mailtls_policy::plan` makes from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mailtls_core::DnsName;
use mailtls_policy::dane::TlsaSet;
use mailtls_policy::dns::{
    DnsResolver, HickoryResolver, HickoryResolverConfig, QueryName, Validation,
};
use mailtls_policy::mta_sts::{
    FetcherConfig, MtaSts, NoPolicyReason, PolicyCache, PolicyFetcher, PolicyOutcome, Profile,
    parse_policy,
};
use mailtls_policy::plan::{
    AddressFacts, DeliveryPlan, DomainFacts, FailureAction, HostAction, HostFacts, MxFacts,
    TlsaFacts, Verification, gather, plan,
};
use mailtls_policy::requiretls::TlsDemand;
use mailtls_policy::tlsrpt::TlsRptRecord;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Prints the delivery plan for a recipient domain: its MX hosts, MTA-STS
/// policy and TLSA records, resolved through the given name server.
#[derive(Parser)]
#[command(
    name = "mailtls-policy-check",
    version,
    args_override_self = true,
    override_usage = "\
mailtls-policy-check --domain DOMAIN --resolver IP:PORT
                            [--trust-anchor FILE | --no-validation]
                            [--policy-root PEM]... [--requiretls] [--policy-port N]",
    after_help = "exit status: 0 a plan, 1 no plan or failure, 2 usage error",
    arg_required_else_help = true
)]
struct Cli {
    /// The recipient domain.
    #[arg(long, value_name = "DOMAIN", value_parser = DnsName::parse)]
    domain: DnsName,
    /// The name server to ask (UDP with TCP fallback).
    #[arg(long, value_name = "IP:PORT")]
    resolver: SocketAddr,
    /// Validate DNSSEC from the DNSKEY records in FILE (default: validate
    /// from the IANA root keys).
    #[arg(long, value_name = "FILE", conflicts_with = "no_validation")]
    trust_anchor: Option<PathBuf>,
    /// Do not validate DNSSEC (DANE cannot apply).
    #[arg(long)]
    no_validation: bool,
    /// A PEM file of roots for the MTA-STS policy host (repeatable; without
    /// one, no policy fetch can succeed).
    #[arg(long = "policy-root", value_name = "PEM")]
    policy_roots: Vec<PathBuf>,
    /// Plan for a message carrying REQUIRETLS (RFC 8689).
    #[arg(long)]
    requiretls: bool,
    /// HTTPS port of the policy host.
    #[arg(long, value_name = "N", default_value_t = 443,
          value_parser = clap::value_parser!(u16).range(1..))]
    policy_port: u16,
}

type AnyError = Box<dyn std::error::Error>;

struct Opts {
    domain: DnsName,
    resolver: SocketAddr,
    validation: Validation,
    roots: Vec<PathBuf>,
    demand: TlsDemand,
    policy_port: u16,
}

impl From<Cli> for Opts {
    fn from(cli: Cli) -> Self {
        // --trust-anchor and --no-validation exclude each other (clap).
        let validation = match (cli.trust_anchor, cli.no_validation) {
            (Some(file), _) => Validation::AnchorFile(file),
            (None, true) => Validation::Off,
            (None, false) => Validation::Root,
        };
        Opts {
            domain: cli.domain,
            resolver: cli.resolver,
            validation,
            roots: cli.policy_roots,
            demand: if cli.requiretls {
                TlsDemand::RequireTls
            } else {
                TlsDemand::Default
            },
            policy_port: cli.policy_port,
        }
    }
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
    print_tlsrpt(dns.as_ref(), &opts.domain).await;
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
            // What a strict reader (RFC 8461 §3.2 grammar) says about the
            // same text; the lenient reading above is what delivery uses.
            match parse_policy(policy.raw().as_bytes(), Profile::Strict) {
                Ok(strict) => {
                    for d in &strict.diagnostics {
                        println!("  strict reading: {d}");
                    }
                }
                Err(e) => {
                    for d in e.errors() {
                        println!("  strict reading refuses it: {d}");
                    }
                }
            }
        }
        PolicyOutcome::Failed {
            result_type,
            detail,
        } => println!("MTA-STS: policy fetch failed, result type {result_type}: {detail}"),
        other => println!("MTA-STS: {other:?}"),
    }
}

/// The `_smtp._tls` record, read with the same selector and parser a
/// sender uses before reporting (RFC 8460 §3).
async fn print_tlsrpt(dns: &dyn DnsResolver, domain: &DnsName) {
    let q = match QueryName::with_service(&["_smtp", "_tls"], domain) {
        Ok(q) => q,
        Err(e) => return println!("TLS-RPT: {e}"),
    };
    let answer = match dns.txt(&q).await {
        Ok(answer) => answer,
        Err(e) if e.is_negative_answer() => {
            return println!("TLS-RPT: no {q} record, so no reports are sent");
        }
        Err(e) => return println!("TLS-RPT: {q} lookup failed: {e}"),
    };
    match TlsRptRecord::from_txt_answer(&answer.records) {
        Ok(record) => {
            let rua: Vec<String> = record.rua().iter().map(ToString::to_string).collect();
            println!("TLS-RPT: reports to {}", rua.join(", "));
            for d in record.diagnostics() {
                println!("  {d}");
            }
        }
        Err(e) => println!("TLS-RPT: {e}"),
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
            HostAction::RequireTlsUnauthenticated => {
                "require TLS, unauthenticated (every TLSA record unusable; reported as tlsa-invalid)"
                    .into()
            }
            HostAction::FailNow { status, reason } => format!("fail now {status}: {reason}"),
        };
        // The SNI only matters for an entry the client connects to.
        let sni = match &e.action {
            HostAction::Skip { .. } | HostAction::FailNow { .. } => String::new(),
            _ => format!("; SNI {}", e.sni()),
        };
        println!(
            "  {}. {} (preference {}, policy {}): {action}{sni}; on failure: {}{}",
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
    // Usage mistakes end here: clap prints them with the usage, exit 2.
    let opts = Opts::from(Cli::parse());
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
