//! One delivery attempt for the recipients of one domain: the
//! mailtls-policy plan decides per MX host (MTA-STS, DANE, REQUIRETLS), the
//! SMTP client runs STARTTLS with the plan's verifier, and each TLS
//! outcome is counted for TLS-RPT. Or, with a relay host, the same session
//! against the relay under its configured TLS requirement.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mailtls_core::DnsName;
use mailtls_policy::dns::TlsaRecord;
use mailtls_policy::mta_sts::{MtaStsPolicy, PolicyOutcome};
use mailtls_policy::plan::{
    AddressFacts, DomainFacts, FailureAction, HostAction, HostFacts, MxFacts, PlanEntry, TlsaFacts,
    gather, plan,
};
use mailtls_policy::requiretls::{PeerAuthentication, SessionFacts, TlsDemand, check_session};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{FailureOutcome, PolicyRef, SessionOutcome};
use mailtls_policy::verifier::{PlanVerifier, VerificationFailure, VerificationOutcome};
use rustls::ClientConfig;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;

use super::Outbound;
use super::client::{Client, ClientError, Reply};
use super::config::{RelayAddress, RelayHost, RelayTls};
use super::queue::Failure;

/// The `mx_host` of a TLS-RPT outcome that concerns no MX session (an
/// MTA-STS policy fetch failure), kept empty in the collector: such a
/// failure has no `receiving-mx-hostname` (RFC 8460 §4.3.2.2), and naming
/// the policy domain there would report it as an MX host.
pub const NO_MX_HOST: &str = "";

/// The message as it goes out.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The reverse path.
    pub mail_from: &'a str,
    /// The bytes to send (the spool's REQUIRETLS marker removed).
    pub message: &'a [u8],
    /// What the message asks of TLS.
    pub demand: TlsDemand,
    /// Whether TLS outcomes are counted for TLS-RPT (not for TLS reports
    /// themselves, RFC 8460 §5.3.1).
    pub count_tls: bool,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// Accepted by `host`.
    Delivered {
        /// The host.
        host: String,
        /// Its final reply.
        reply: String,
    },
    /// Try again later.
    Deferred(String),
    /// Give up and tell the sender.
    Failed(Failure),
}

/// How a session ended short of a transaction result.
enum SessionEnd {
    /// The transaction got a result for every recipient.
    Done(Vec<RcptResult>),
    /// Try the next address or MX host.
    Next {
        reason: String,
        /// The host failed a REQUIRETLS condition (RFC 8689 §4.2.1).
        requiretls: bool,
    },
}

/// The policy a session is counted under (RFC 8460 §4.4).
struct ReportPolicy {
    policy_type: PolicyType,
    domain: String,
    strings: Vec<String>,
    mx_hosts: Vec<String>,
}

/// How STARTTLS is used in a session.
enum TlsUse {
    /// Never (a relay with `relay_tls = "none"`).
    Never,
    /// STARTTLS when offered.
    Starttls {
        config: Arc<ClientConfig>,
        /// The plan's verifier, to read the outcome after the handshake.
        verifier: Option<Arc<PlanVerifier>>,
        /// Whether the message may go in clear when STARTTLS is missing.
        cleartext_ok: bool,
        /// What to count when STARTTLS is missing.
        missing_report: Option<ResultType>,
        /// A completed handshake means a verified peer (rustls's own WebPKI
        /// verifier for a relay host).
        verified_by_handshake: bool,
    },
}

struct SessionSpec {
    host: String,
    sni: ServerName<'static>,
    tls: TlsUse,
    report: Option<ReportPolicy>,
    must_requiretls: bool,
}

fn all(n: usize, r: &RcptResult) -> Vec<RcptResult> {
    vec![r.clone(); n]
}

/// The server's one crypto provider: the plan verifier and the client
/// configuration it sits in use the same one.
fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

/// The failure details of a session (RFC 8460 §4.4 `failure-details`).
fn failed<'a>(
    result_type: ResultType,
    sending_mta_ip: Option<IpAddr>,
    receiving_ip: Option<IpAddr>,
    receiving_mx_helo: Option<&'a str>,
    detail: &'a str,
) -> FailureOutcome<'a> {
    FailureOutcome {
        result_type,
        sending_mta_ip,
        receiving_ip,
        receiving_mx_helo,
        failure_reason_code: None,
        additional_information: Some(detail),
    }
}

fn tlsa_text(r: &TlsaRecord) -> String {
    let hex: String = r.data.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{} {} {} {hex}",
        u8::from(r.usage),
        u8::from(r.selector),
        u8::from(r.matching)
    )
}

impl Outbound {
    fn record(&self, policy: &ReportPolicy, mx_host: &str, failure: Option<FailureOutcome<'_>>) {
        let strings: Vec<&str> = policy.strings.iter().map(String::as_str).collect();
        let mx_hosts: Vec<&str> = policy.mx_hosts.iter().map(String::as_str).collect();
        let outcome = SessionOutcome {
            policy: PolicyRef {
                policy_type: policy.policy_type,
                domain: &policy.domain,
                strings: &strings,
                mx_hosts: &mx_hosts,
            },
            mx_host,
            failure,
        };
        if let Err(e) = self.collector.record(&outcome) {
            tracing::warn!(error = %e, "cannot record the TLS-RPT outcome");
        }
    }

    /// Delivers to the MX hosts of `domain` by the plan.
    pub(crate) async fn deliver_mx(
        &self,
        out: &Outgoing<'_>,
        domain: &DnsName,
        rcpts: &[String],
    ) -> Vec<RcptResult> {
        let n = rcpts.len();
        let sts: Option<Arc<MtaStsPolicy>> = match &self.mta_sts {
            None => None,
            Some(service) => match service.policy_for(domain).await {
                PolicyOutcome::Policy { policy, .. } => Some(policy),
                PolicyOutcome::Failed {
                    result_type,
                    detail,
                } => {
                    tracing::info!(%domain, %result_type, %detail, "MTA-STS policy unavailable");
                    if out.count_tls {
                        // RFC 8460 §4.3.2.2 (sts-policy-fetch-error,
                        // sts-policy-invalid, sts-webpki-invalid): the
                        // failure is the policy domain's, before any MX
                        // session, so there is no policy string, no MX
                        // pattern, no address and no receiving MX host.
                        let p = ReportPolicy {
                            policy_type: PolicyType::Sts,
                            domain: domain.to_string(),
                            strings: Vec::new(),
                            mx_hosts: Vec::new(),
                        };
                        self.record(
                            &p,
                            NO_MX_HOST,
                            Some(failed(result_type, None, None, None, &detail)),
                        );
                    }
                    None
                }
                _ => None,
            },
        };
        let mut facts = gather(self.resolver.as_ref(), domain, sts.clone()).await;
        if !self.config.dane {
            strip_tlsa(&mut facts);
        }
        let plan = plan(&facts, out.demand);
        if let Some(failure) = &plan.domain_failure {
            let reason = format!("{domain}: {failure}");
            return all(
                n,
                &exhausted(plan.when_exhausted, reason, false, out.demand),
            );
        }
        let mut reasons = Vec::new();
        let mut tried = false;
        let mut only_requiretls = true;
        for entry in &plan.entries {
            let host_facts = find_host(&facts, &entry.host);
            let report = out
                .count_tls
                .then(|| report_policy(entry, domain, sts.as_deref(), host_facts));
            match &entry.action {
                HostAction::Skip { reason } => {
                    if let (Some(rt), Some(p)) = (reason.result_type(), &report) {
                        self.record(
                            p,
                            entry.host.as_str(),
                            Some(failed(rt, None, None, None, &reason.to_string())),
                        );
                    }
                    reasons.push(format!("{}: skipped: {reason}", entry.host));
                    continue;
                }
                HostAction::FailNow { status, reason } => {
                    let f = Failure {
                        status: status.to_string(),
                        remote_mta: None,
                        smtp_reply: None,
                        reason: format!("{}: {reason}", entry.host),
                    };
                    return all(n, &RcptResult::Failed(f));
                }
                _ => {}
            }
            let spec = match self.spec_for_entry(entry, report) {
                Ok(s) => s,
                Err(e) => {
                    reasons.push(format!("{}: {e}", entry.host));
                    continue;
                }
            };
            let addresses = match host_facts.map(|h| &h.addresses) {
                Some(AddressFacts::Found { addresses, .. }) => addresses.clone(),
                _ => Vec::new(),
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, self.config.mx_port);
                match self.session(out, &spec, addr, rcpts).await {
                    SessionEnd::Done(results) => return results,
                    SessionEnd::Next { reason, requiretls } => {
                        tracing::info!(host = %entry.host, %addr, %reason, "MX attempt failed");
                        tried = true;
                        only_requiretls &= requiretls;
                        reasons.push(reason);
                    }
                }
            }
        }
        let reason = if reasons.is_empty() {
            format!("{domain}: no usable MX host")
        } else {
            reasons.join("; ")
        };
        all(
            n,
            &exhausted(
                plan.when_exhausted,
                reason,
                tried && only_requiretls,
                out.demand,
            ),
        )
    }

    fn spec_for_entry(
        &self,
        entry: &PlanEntry,
        report: Option<ReportPolicy>,
    ) -> Result<SessionSpec, String> {
        let provider = tls_provider();
        let verifier = Arc::new(
            PlanVerifier::for_entry(entry, Arc::clone(&self.roots), Arc::clone(&provider))
                .map_err(|e| e.to_string())?,
        );
        let config = client_config(
            Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>,
            provider,
        )
        .map_err(|e| e.to_string())?;
        // RFC 7672 §8.1: the TLSA base domain for DANE (the expanded name
        // of a CNAME'd MX), the MX name otherwise; the plan knows which.
        let sni =
            ServerName::try_from(entry.sni().as_str().to_owned()).map_err(|e| e.to_string())?;
        let missing = entry.on_starttls_missing();
        Ok(SessionSpec {
            host: entry.host.to_string(),
            sni,
            tls: TlsUse::Starttls {
                config,
                verifier: Some(verifier),
                cleartext_ok: missing.proceed_in_cleartext,
                missing_report: missing.report,
                verified_by_handshake: false,
            },
            report,
            must_requiretls: entry.peer_must_advertise_requiretls,
        })
    }

    /// Delivers everything to the relay host.
    pub(crate) async fn deliver_relay(
        &self,
        out: &Outgoing<'_>,
        relay: &RelayHost,
        rcpts: &[String],
    ) -> Vec<RcptResult> {
        let n = rcpts.len();
        if out.demand.is_requiretls() && relay.tls != RelayTls::StartTlsRequired {
            // RFC 8689 §4.2.1: never hand the message to an unverified hop.
            return all(
                n,
                &RcptResult::Failed(Failure {
                    status: "5.7.30".into(),
                    remote_mta: Some(relay.address.to_string()),
                    smtp_reply: None,
                    reason: "REQUIRETLS: the relay host is not configured with starttls-required"
                        .into(),
                }),
            );
        }
        let (addresses, sni) = match &relay.address {
            RelayAddress::Ip(ip) => (vec![*ip], ServerName::IpAddress((*ip).into())),
            RelayAddress::Name(name) => {
                let sni = match ServerName::try_from(name.as_str().to_owned()) {
                    Ok(s) => s,
                    Err(e) => return all(n, &RcptResult::Deferred(format!("relay {name}: {e}"))),
                };
                match mailtls_policy::dns::addresses(self.resolver.as_ref(), name).await {
                    Ok(a) => (a, sni),
                    Err(e) => {
                        return all(n, &RcptResult::Deferred(format!("relay {name}: {e}")));
                    }
                }
            }
        };
        let tls = match relay.tls {
            RelayTls::None => TlsUse::Never,
            RelayTls::StartTls => {
                let provider = tls_provider();
                let verifier = Arc::new(PlanVerifier::opportunistic(Arc::clone(&provider)));
                match client_config(
                    Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>,
                    provider,
                ) {
                    Ok(config) => TlsUse::Starttls {
                        config,
                        verifier: Some(verifier),
                        cleartext_ok: true,
                        missing_report: None,
                        verified_by_handshake: false,
                    },
                    Err(e) => return all(n, &RcptResult::Deferred(format!("relay TLS: {e}"))),
                }
            }
            RelayTls::StartTlsRequired => {
                let config = ClientConfig::builder_with_provider(tls_provider())
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(Arc::clone(&self.relay_roots))
                            .with_no_client_auth()
                    });
                match config {
                    Ok(config) => TlsUse::Starttls {
                        config: Arc::new(config),
                        verifier: None,
                        cleartext_ok: false,
                        missing_report: None,
                        verified_by_handshake: true,
                    },
                    Err(e) => return all(n, &RcptResult::Deferred(format!("relay TLS: {e}"))),
                }
            }
        };
        let spec = SessionSpec {
            host: relay.address.to_string(),
            sni,
            tls,
            report: None,
            must_requiretls: out.demand.is_requiretls(),
        };
        let mut reasons = Vec::new();
        let mut only_requiretls = true;
        for ip in &addresses {
            let addr = SocketAddr::new(*ip, relay.port);
            match self.session(out, &spec, addr, rcpts).await {
                SessionEnd::Done(results) => return results,
                SessionEnd::Next { reason, requiretls } => {
                    tracing::info!(%addr, %reason, "relay attempt failed");
                    only_requiretls &= requiretls;
                    reasons.push(reason);
                }
            }
        }
        let reason = if reasons.is_empty() {
            format!("relay {}: no address", relay.address)
        } else {
            reasons.join("; ")
        };
        if !addresses.is_empty() && only_requiretls && out.demand.is_requiretls() {
            return all(
                n,
                &RcptResult::Failed(Failure {
                    status: "5.7.30".into(),
                    remote_mta: Some(relay.address.to_string()),
                    smtp_reply: None,
                    reason,
                }),
            );
        }
        all(n, &RcptResult::Deferred(reason))
    }

    /// One SMTP session with one address.
    async fn session(
        &self,
        out: &Outgoing<'_>,
        spec: &SessionSpec,
        addr: SocketAddr,
        rcpts: &[String],
    ) -> SessionEnd {
        let host = &spec.host;
        let next = |reason: String| SessionEnd::Next {
            reason,
            requiretls: false,
        };
        let timeout = self.config.timeout;
        let (mut c, greeting) = match Client::connect(addr, timeout).await {
            Ok(x) => x,
            Err(e) => return next(format!("{host} [{addr}]: {e}")),
        };
        if greeting.code != 220 {
            c.quit().await;
            return next(format!("{host} [{addr}]: greeting {}", greeting.text()));
        }
        let ehlo_line = format!("EHLO {}", self.hostname);
        let mut ehlo = match c.command(&ehlo_line, "EHLO").await {
            Ok(r) if r.is_positive() => r,
            Ok(r) => {
                c.quit().await;
                return next(format!("{host} [{addr}]: EHLO: {}", r.text()));
            }
            Err(e) => return next(format!("{host} [{addr}]: {e}")),
        };
        let helo_name = |r: &Reply| {
            r.lines
                .first()
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_owned)
        };
        let local_ip = c.local.map(|a| a.ip());
        let peer_ip = Some(addr.ip());
        let mut peer = PeerAuthentication::Unverified;
        if let TlsUse::Starttls {
            config,
            verifier,
            cleartext_ok,
            missing_report,
            verified_by_handshake,
        } = &spec.tls
        {
            let missing = |c_helo: Option<String>, why: String| {
                if let (Some(rt), Some(p)) = (missing_report, &spec.report) {
                    self.record(
                        p,
                        host,
                        Some(failed(*rt, local_ip, peer_ip, c_helo.as_deref(), &why)),
                    );
                }
            };
            let offered = ehlo.ehlo_keywords().iter().any(|k| k == "STARTTLS");
            if offered {
                c = match c.starttls(Arc::clone(config), spec.sni.clone()).await {
                    Ok(Ok(tls)) => {
                        let outcome = verifier.as_ref().and_then(|v| v.last_outcome());
                        peer = match &outcome {
                            Some(o) => o.peer_authentication(),
                            None if *verified_by_handshake => PeerAuthentication::WebPki,
                            None => PeerAuthentication::Unverified,
                        };
                        if let Some(p) = &spec.report {
                            match &outcome {
                                Some(VerificationOutcome::Failed(f)) => self.record(
                                    p,
                                    host,
                                    Some(failed(
                                        f.result_type,
                                        local_ip,
                                        peer_ip,
                                        helo_name(&ehlo).as_deref(),
                                        &f.detail,
                                    )),
                                ),
                                _ => self.record(p, host, None),
                            }
                        }
                        tls
                    }
                    Ok(Err((plain, reply))) => {
                        let why = format!("STARTTLS refused: {}", reply.text());
                        missing(helo_name(&ehlo), why.clone());
                        if !cleartext_ok {
                            plain.quit().await;
                            return next(format!("{host} [{addr}]: {why}"));
                        }
                        plain
                    }
                    Err(ClientError::Handshake(e)) => {
                        let f = VerificationFailure::from_io_error(&e).unwrap_or_else(|| {
                            VerificationFailure {
                                result_type: ResultType::ValidationFailure,
                                detail: e.to_string(),
                            }
                        });
                        if let Some(p) = &spec.report {
                            self.record(
                                p,
                                host,
                                Some(failed(
                                    f.result_type,
                                    local_ip,
                                    peer_ip,
                                    helo_name(&ehlo).as_deref(),
                                    &f.detail,
                                )),
                            );
                        }
                        return next(format!("{host} [{addr}]: TLS handshake failed: {f}"));
                    }
                    Err(e) => return next(format!("{host} [{addr}]: STARTTLS: {e}")),
                };
                if c.is_tls() {
                    ehlo = match c.command(&ehlo_line, "EHLO after STARTTLS").await {
                        Ok(r) if r.is_positive() => r,
                        Ok(r) => {
                            c.quit().await;
                            return next(format!(
                                "{host} [{addr}]: EHLO after STARTTLS: {}",
                                r.text()
                            ));
                        }
                        Err(e) => return next(format!("{host} [{addr}]: {e}")),
                    };
                }
            } else {
                missing(helo_name(&ehlo), "STARTTLS not offered".into());
                if !cleartext_ok {
                    c.quit().await;
                    return next(format!("{host} [{addr}]: STARTTLS not offered"));
                }
            }
        }
        let keywords = ehlo.ehlo_keywords();
        if spec.must_requiretls {
            let facts = SessionFacts {
                tls: c.is_tls(),
                peer,
                peer_advertises_requiretls: keywords.iter().any(|k| k == "REQUIRETLS"),
            };
            if let Err(f) = check_session(facts) {
                c.quit().await;
                return SessionEnd::Next {
                    reason: format!("{host} [{addr}]: {f}"),
                    requiretls: true,
                };
            }
        }
        transaction(c, out, host, &keywords, rcpts).await
    }
}

/// MAIL, RCPT and DATA on an established session.
async fn transaction(
    mut c: Client,
    out: &Outgoing<'_>,
    host: &str,
    keywords: &[String],
    rcpts: &[String],
) -> SessionEnd {
    let has = |k: &str| keywords.iter().any(|x| x == k);
    let mut mail = format!("MAIL FROM:<{}>", out.mail_from);
    if has("SIZE") {
        mail.push_str(&format!(" SIZE={}", out.message.len()));
    }
    if has("8BITMIME") && !out.message.is_ascii() {
        mail.push_str(" BODY=8BITMIME");
    }
    if out.demand.is_requiretls() {
        // RFC 8689 §4.2.1: sent only to a peer that advertised it (checked).
        mail.push_str(" REQUIRETLS");
    }
    let from_reply = |r: &Reply| {
        if r.is_transient() {
            RcptResult::Deferred(format!("{host}: {}", r.text()))
        } else {
            RcptResult::Failed(Failure {
                status: r.enhanced_status().unwrap_or_else(|| "5.0.0".into()),
                remote_mta: Some(host.to_owned()),
                smtp_reply: Some(r.text()),
                reason: "refused by the receiving server".into(),
            })
        }
    };
    let r = match c.command(&mail, "MAIL FROM").await {
        Ok(r) => r,
        Err(e) => {
            return SessionEnd::Next {
                reason: format!("{host}: {e}"),
                requiretls: false,
            };
        }
    };
    if !r.is_positive() {
        c.quit().await;
        return SessionEnd::Done(all(rcpts.len(), &from_reply(&r)));
    }
    let mut results: Vec<Option<RcptResult>> = vec![None; rcpts.len()];
    let mut accepted = Vec::new();
    for (i, rcpt) in rcpts.iter().enumerate() {
        match c.command(&format!("RCPT TO:<{rcpt}>"), "RCPT TO").await {
            Ok(r) if r.is_positive() => accepted.push(i),
            Ok(r) => results[i] = Some(from_reply(&r)),
            Err(e) => {
                return SessionEnd::Next {
                    reason: format!("{host}: {e}"),
                    requiretls: false,
                };
            }
        }
    }
    if !accepted.is_empty() {
        let outcome = match c.command("DATA", "DATA").await {
            Ok(r) if r.code == 354 => match c.send_data(out.message).await {
                Ok(r) if r.is_positive() => RcptResult::Delivered {
                    host: host.to_owned(),
                    reply: r.text(),
                },
                Ok(r) => from_reply(&r),
                // No reply to the end of data: it may or may not have been
                // taken (RFC 5321 §6.1 accepts the duplicate risk).
                Err(e) => RcptResult::Deferred(format!("{host}: {e}")),
            },
            Ok(r) => from_reply(&r),
            Err(e) => RcptResult::Deferred(format!("{host}: {e}")),
        };
        for i in accepted {
            results[i] = Some(outcome.clone());
        }
    }
    c.quit().await;
    SessionEnd::Done(
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| RcptResult::Deferred(format!("{host}: no result"))))
            .collect(),
    )
}

/// What happens once every MX host failed.
fn exhausted(
    action: FailureAction,
    reason: String,
    only_requiretls_failures: bool,
    demand: TlsDemand,
) -> RcptResult {
    match action {
        FailureAction::Bounce(status) => RcptResult::Failed(Failure {
            status: status.to_string(),
            remote_mta: None,
            smtp_reply: None,
            reason,
        }),
        // Every host that was tried refused a REQUIRETLS condition: waiting
        // will not change that, so the message is returned (RFC 8689 §4.2.1).
        _ if only_requiretls_failures && demand.is_requiretls() => RcptResult::Failed(Failure {
            status: "5.7.30".into(),
            remote_mta: None,
            smtp_reply: None,
            reason,
        }),
        FailureAction::Defer(status) => RcptResult::Deferred(format!("{status} {reason}")),
        FailureAction::TryNextMx => RcptResult::Deferred(reason),
    }
}

fn strip_tlsa(facts: &mut DomainFacts) {
    match &mut facts.mx {
        MxFacts::Hosts { hosts, .. } => {
            for h in hosts {
                h.tlsa = TlsaFacts::NotApplicable;
            }
        }
        MxFacts::Implicit { host, .. } => host.tlsa = TlsaFacts::NotApplicable,
        _ => {}
    }
}

fn find_host<'a>(facts: &'a DomainFacts, name: &DnsName) -> Option<&'a HostFacts> {
    match &facts.mx {
        MxFacts::Hosts { hosts, .. } => hosts.iter().find(|h| &h.name == name),
        MxFacts::Implicit { host, .. } => (&host.name == name).then_some(host),
        _ => None,
    }
}

fn report_policy(
    entry: &PlanEntry,
    domain: &DnsName,
    sts: Option<&MtaStsPolicy>,
    host: Option<&HostFacts>,
) -> ReportPolicy {
    match entry.policy {
        PolicyType::Sts => ReportPolicy {
            policy_type: PolicyType::Sts,
            domain: domain.to_string(),
            strings: sts.map(MtaStsPolicy::policy_strings).unwrap_or_default(),
            mx_hosts: sts
                .map(|p| p.mx().iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        },
        PolicyType::Tlsa => {
            // RFC 8460 §4.4 with RFC 7672: the policy domain is the TLSA
            // base domain.
            let (base, strings) = match host.map(|h| &h.tlsa) {
                Some(TlsaFacts::Records { base, records, .. }) => {
                    (base.to_string(), records.iter().map(tlsa_text).collect())
                }
                _ => (entry.host.to_string(), Vec::new()),
            };
            ReportPolicy {
                policy_type: PolicyType::Tlsa,
                domain: base,
                strings,
                mx_hosts: vec![entry.host.to_string()],
            }
        }
        _ => ReportPolicy {
            policy_type: PolicyType::NoPolicyFound,
            domain: domain.to_string(),
            strings: Vec::new(),
            mx_hosts: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtls_policy::plan::EnhancedStatus;

    #[test]
    fn exhausted_requiretls_failures_bounce_with_5_7_30() {
        let defer = FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY);
        match exhausted(defer, "x".into(), true, TlsDemand::RequireTls) {
            RcptResult::Failed(f) => assert_eq!(f.status, "5.7.30"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            exhausted(defer, "x".into(), false, TlsDemand::RequireTls),
            RcptResult::Deferred(_)
        ));
        assert!(matches!(
            exhausted(defer, "x".into(), true, TlsDemand::Default),
            RcptResult::Deferred(_)
        ));
        match exhausted(
            FailureAction::Bounce(EnhancedStatus::NULL_MX),
            "null".into(),
            false,
            TlsDemand::Default,
        ) {
            RcptResult::Failed(f) => assert_eq!(f.status, "5.1.10"),
            other => panic!("{other:?}"),
        }
    }
}
