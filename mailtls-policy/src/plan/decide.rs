//! The decision: from [`DomainFacts`] and a message's [`TlsDemand`] to an
//! ordered [`DeliveryPlan`].
//!
//! Precedence (RFC 8461 §2, RFC 7672 §2.2): DANE when the MX, address and
//! TLSA records are DNSSEC-authentic; otherwise MTA-STS in enforce mode;
//! otherwise opportunistic TLS. MTA-STS in testing mode never blocks: the
//! entry carries the check only so failures can be reported.

use std::net::IpAddr;

use mailtls_core::DnsName;

use super::EnhancedStatus;
use super::facts::{AddressFacts, DomainFacts, HostFacts, MxFacts, TlsaFacts};
use crate::dane::{TlsaSet, UsableTlsa};
use crate::dns::DnssecStatus;
use crate::mta_sts::{MtaStsPolicy, PolicyMode};
use crate::requiretls::{MxAuthority, RequireTlsFailure, TlsDemand, check_mx};
use crate::result_type::{PolicyType, ResultType};

/// How a peer certificate is to be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// WebPKI: chain to a trusted root and be valid for one of the names.
    WebPki {
        /// The names the certificate may be valid for (the MX host name).
        allowed_names: Vec<DnsName>,
    },
    /// DANE (RFC 7672): match one of the usable records.
    Dane {
        /// The usable TLSA records.
        records: Vec<UsableTlsa>,
        /// The names a DANE-TA server certificate may carry: the TLSA base
        /// domain first, then the MX name (RFC 7672 §3.2.2).
        reference_names: Vec<DnsName>,
    },
}

/// What to do with one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// Do not connect to this host.
    Skip {
        /// Why.
        reason: SkipReason,
    },
    /// Use TLS if offered, deliver anyway if not. `audit` is the check a
    /// testing-mode MTA-STS policy or a `TLS-Required: No` message asks to
    /// run and report without enforcing.
    OpportunisticTls {
        /// The verification to run for reporting only.
        audit: Option<Verification>,
    },
    /// TLS is mandatory and the certificate must pass `verify`.
    RequireTls {
        /// How to verify the certificate.
        verify: Verification,
    },
    /// TLS is mandatory but the certificate is not checked: every TLSA record
    /// was unusable (RFC 7672 §2.2).
    RequireTlsUnauthenticated,
    /// This host cannot take the message: stop and report `status`.
    FailNow {
        /// The enhanced status code for the DSN or log.
        status: EnhancedStatus,
        /// Why.
        reason: FailReason,
    },
}

/// Why a host is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkipReason {
    /// An MTA-STS policy in enforce mode does not list this host (RFC 8461 §4.1).
    #[error("not listed in the MTA-STS policy")]
    NotInStsPolicy,
    /// The TLSA lookup failed for a host whose addresses are DNSSEC-signed
    /// (RFC 7672 §2.2: the host is unusable, try another).
    #[error("TLSA lookup failed: {detail}")]
    TlsaLookupFailed {
        /// Whether the answer was bogus.
        bogus: bool,
        /// What went wrong.
        detail: String,
    },
    /// The host's addresses could not be found.
    #[error("address lookup failed: {detail}")]
    AddressLookupFailed {
        /// Whether trying later may help.
        temporary: bool,
        /// What went wrong.
        detail: String,
    },
}

impl SkipReason {
    /// The TLS-RPT result type to count, if any.
    pub fn result_type(&self) -> Option<ResultType> {
        match self {
            Self::TlsaLookupFailed { bogus: true, .. } => Some(ResultType::DnssecInvalid),
            Self::TlsaLookupFailed { bogus: false, .. } => Some(ResultType::TlsaInvalid),
            Self::NotInStsPolicy | Self::AddressLookupFailed { .. } => None,
        }
    }

    /// Whether the same decision may come out differently later.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::NotInStsPolicy => false,
            Self::TlsaLookupFailed { .. } => true,
            Self::AddressLookupFailed { temporary, .. } => *temporary,
        }
    }
}

/// Why a host or the whole domain cannot take the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// REQUIRETLS conditions are not met (RFC 8689 §4.2.1).
    #[error(transparent)]
    RequireTls(#[from] RequireTlsFailure),
}

/// What the MTA does when an attempt on a host fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Try the next entry of the plan.
    TryNextMx,
    /// Stop and retry the message later.
    Defer(EnhancedStatus),
    /// Stop and return the message to its sender.
    Bounce(EnhancedStatus),
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// The MX host.
    pub host: DnsName,
    /// Its preference.
    pub preference: u16,
    /// The addresses it was planned for, as [`super::gather()`] found them
    /// (IPv4, then IPv6; the embedder picks the order it prefers); empty
    /// when the lookup failed (the entry is then a skip).
    pub addresses: Vec<IpAddr>,
    /// What to do with it.
    pub action: HostAction,
    /// The policy that governs it, for TLS-RPT (RFC 8460 §4.4).
    pub policy: PolicyType,
    /// Whether the peer must advertise REQUIRETLS after STARTTLS before the
    /// message is sent (check with [`crate::requiretls::check_session`]).
    pub peer_must_advertise_requiretls: bool,
    /// What a failed attempt on this host leads to.
    pub on_failure: FailureAction,
}

/// What to do when a host does not offer STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StarttlsMissing {
    /// Whether the message may still go to this host in cleartext.
    pub proceed_in_cleartext: bool,
    /// The TLS-RPT result type to count for the session, if a policy applied.
    pub report: Option<ResultType>,
}

impl PlanEntry {
    /// The name to send as SNI for this entry.
    ///
    /// With DANE (the check to run is [`Verification::Dane`]) it is the
    /// TLSA base domain: RFC 7672 §8.1 asks for it, and when the MX name is
    /// an alias with a signed CNAME chain that is the fully expanded name,
    /// not the name in the MX record; a peer that picks its certificate by
    /// SNI would otherwise present the wrong one. Otherwise it is the MX
    /// host name as listed in the MX record, which MTA-STS and WebPKI
    /// match the certificate against (RFC 8461 §4.1). An entry whose TLSA
    /// records were all unusable (TLS without authentication) also sends
    /// the MX name.
    pub fn sni(&self) -> &DnsName {
        let check = match &self.action {
            HostAction::RequireTls { verify } => Some(verify),
            HostAction::OpportunisticTls { audit } => audit.as_ref(),
            _ => None,
        };
        match check {
            Some(Verification::Dane {
                reference_names, ..
            }) => reference_names.first().unwrap_or(&self.host),
            _ => &self.host,
        }
    }

    /// What a missing STARTTLS means for this entry: a failure for entries
    /// that require TLS (RFC 7672 §2.2, RFC 8461 §5, RFC 8689 §4.2.1),
    /// cleartext delivery for opportunistic ones, reported when an audited
    /// policy (MTA-STS testing) applied.
    pub fn on_starttls_missing(&self) -> StarttlsMissing {
        match &self.action {
            HostAction::RequireTls { .. } | HostAction::RequireTlsUnauthenticated => {
                StarttlsMissing {
                    proceed_in_cleartext: false,
                    report: Some(ResultType::StarttlsNotSupported),
                }
            }
            HostAction::OpportunisticTls { audit } => StarttlsMissing {
                proceed_in_cleartext: true,
                report: audit.as_ref().map(|_| ResultType::StarttlsNotSupported),
            },
            HostAction::Skip { .. } | HostAction::FailNow { .. } => StarttlsMissing {
                proceed_in_cleartext: false,
                report: None,
            },
        }
    }
}

/// Why the plan has no host to try at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainFailure {
    /// Null MX (RFC 7505).
    #[error("the domain accepts no mail (null MX)")]
    NullMx,
    /// NXDOMAIN.
    #[error("the domain does not exist")]
    NoSuchDomain,
    /// The MX lookup failed.
    #[error("MX lookup failed: {detail}")]
    MxLookupFailed {
        /// Whether the answer was bogus.
        bogus: bool,
        /// What went wrong.
        detail: String,
    },
}

/// The plan for one domain and one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPlan {
    /// The recipient domain.
    pub domain: DnsName,
    /// The hosts in the order to try them.
    pub entries: Vec<PlanEntry>,
    /// A failure that stops delivery before any host is tried.
    pub domain_failure: Option<DomainFailure>,
    /// What happens when every entry was tried (or skipped) without success.
    pub when_exhausted: FailureAction,
}

impl DeliveryPlan {
    /// The entries worth connecting to (neither skipped nor failed).
    pub fn usable(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| {
            !matches!(
                e.action,
                HostAction::Skip { .. } | HostAction::FailNow { .. }
            )
        })
    }
}

/// How DANE stands for one host.
enum DaneState {
    /// DANE does not apply.
    None,
    /// Usable records.
    Usable {
        records: Vec<UsableTlsa>,
        reference_names: Vec<DnsName>,
    },
    /// TLSA records exist but none is usable.
    AllUnusable,
    /// The host must be skipped.
    Unusable(SkipReason),
}

fn dane_state(mx_dnssec: DnssecStatus, host: &HostFacts) -> DaneState {
    let canonical = match &host.addresses {
        AddressFacts::Found {
            canonical, dnssec, ..
        } if mx_dnssec.is_authentic() && dnssec.is_authentic() => canonical,
        _ => return DaneState::None,
    };
    match &host.tlsa {
        TlsaFacts::NotApplicable | TlsaFacts::Absent { .. } => DaneState::None,
        TlsaFacts::Failed { bogus, detail } => DaneState::Unusable(SkipReason::TlsaLookupFailed {
            bogus: *bogus,
            detail: detail.clone(),
        }),
        TlsaFacts::Records {
            base,
            dnssec,
            records,
        } => match dnssec {
            DnssecStatus::Authentic => match TlsaSet::from_records(records) {
                None => DaneState::None,
                Some(TlsaSet::AllUnusable { .. }) => DaneState::AllUnusable,
                Some(TlsaSet::Usable { usable, .. }) => {
                    let mut reference_names = vec![base.clone()];
                    for n in [&host.name, canonical] {
                        if !reference_names.contains(n) {
                            reference_names.push(n.clone());
                        }
                    }
                    DaneState::Usable {
                        records: usable,
                        reference_names,
                    }
                }
            },
            // Unsigned TLSA under a signed address: RFC 7672 §2.2.2 says
            // such records are not used.
            DnssecStatus::Insecure => DaneState::None,
            _ => DaneState::Unusable(SkipReason::TlsaLookupFailed {
                bogus: *dnssec == DnssecStatus::Bogus,
                detail: format!("TLSA records at {base} are {dnssec}"),
            }),
        },
    }
}

/// Decides the plan. Pure: no I/O, same facts give the same plan.
pub fn plan(facts: &DomainFacts, demand: TlsDemand) -> DeliveryPlan {
    let (mx_dnssec, mut hosts): (DnssecStatus, Vec<&HostFacts>) = match &facts.mx {
        MxFacts::Hosts { dnssec, hosts } => (*dnssec, hosts.iter().collect()),
        MxFacts::Implicit { dnssec, host } => (*dnssec, vec![host]),
        MxFacts::NullMx => {
            return domain_failed(facts, DomainFailure::NullMx, EnhancedStatus::NULL_MX, true);
        }
        MxFacts::NoSuchDomain => {
            return domain_failed(
                facts,
                DomainFailure::NoSuchDomain,
                EnhancedStatus::NO_SUCH_DOMAIN,
                true,
            );
        }
        MxFacts::LookupFailed { bogus, detail } => {
            let failure = DomainFailure::MxLookupFailed {
                bogus: *bogus,
                detail: detail.clone(),
            };
            return domain_failed(facts, failure, EnhancedStatus::DNS_TEMPORARY, false);
        }
    };
    // Stable: equal preferences keep the resolver's order (RFC 5321 §5.1
    // lets the embedder shuffle them).
    hosts.sort_by_key(|h| h.preference);
    let sts = facts
        .mta_sts
        .as_deref()
        .filter(|p| p.mode() != PolicyMode::None);
    let entries: Vec<PlanEntry> = hosts
        .into_iter()
        .map(|h| entry_for(h, mx_dnssec, sts, demand))
        .collect();
    let when_exhausted = exhausted(&entries, demand);
    DeliveryPlan {
        domain: facts.domain.clone(),
        entries,
        domain_failure: None,
        when_exhausted,
    }
}

fn domain_failed(
    facts: &DomainFacts,
    failure: DomainFailure,
    status: EnhancedStatus,
    permanent: bool,
) -> DeliveryPlan {
    DeliveryPlan {
        domain: facts.domain.clone(),
        entries: Vec::new(),
        domain_failure: Some(failure),
        when_exhausted: if permanent {
            FailureAction::Bounce(status)
        } else {
            FailureAction::Defer(status)
        },
    }
}

fn entry_for(
    host: &HostFacts,
    mx_dnssec: DnssecStatus,
    sts: Option<&MtaStsPolicy>,
    demand: TlsDemand,
) -> PlanEntry {
    let mut entry = PlanEntry {
        host: host.name.clone(),
        preference: host.preference,
        addresses: match &host.addresses {
            AddressFacts::Found { addresses, .. } => addresses.clone(),
            AddressFacts::Failed { .. } => Vec::new(),
        },
        action: HostAction::OpportunisticTls { audit: None },
        policy: PolicyType::NoPolicyFound,
        peer_must_advertise_requiretls: false,
        on_failure: FailureAction::TryNextMx,
    };
    if let AddressFacts::Failed { temporary, detail } = &host.addresses {
        entry.action = HostAction::Skip {
            reason: SkipReason::AddressLookupFailed {
                temporary: *temporary,
                detail: detail.clone(),
            },
        };
        return entry;
    }
    let webpki = || Verification::WebPki {
        allowed_names: vec![host.name.clone()],
    };
    let sts_listed = sts.map(|p| p.matches_mx(&host.name));
    // What recipient policy alone asks for.
    let (policy, required): (PolicyType, HostAction) = match dane_state(mx_dnssec, host) {
        DaneState::Unusable(reason) => (PolicyType::Tlsa, HostAction::Skip { reason }),
        DaneState::Usable {
            records,
            reference_names,
        } => (
            PolicyType::Tlsa,
            HostAction::RequireTls {
                verify: Verification::Dane {
                    records,
                    reference_names,
                },
            },
        ),
        DaneState::AllUnusable => (PolicyType::Tlsa, HostAction::RequireTlsUnauthenticated),
        DaneState::None => match (sts.map(MtaStsPolicy::mode), sts_listed) {
            (Some(PolicyMode::Enforce), Some(false)) => (
                PolicyType::Sts,
                HostAction::Skip {
                    reason: SkipReason::NotInStsPolicy,
                },
            ),
            (Some(PolicyMode::Enforce), _) => {
                (PolicyType::Sts, HostAction::RequireTls { verify: webpki() })
            }
            // Testing mode: verify and report, never block (RFC 8461 §5).
            (Some(PolicyMode::Testing), _) => (
                PolicyType::Sts,
                HostAction::OpportunisticTls {
                    audit: Some(webpki()),
                },
            ),
            _ => (
                PolicyType::NoPolicyFound,
                HostAction::OpportunisticTls { audit: None },
            ),
        },
    };
    entry.policy = policy;
    entry.action = match demand {
        TlsDemand::Default => required,
        TlsDemand::IgnorePolicyFailures => match required {
            // RFC 8689 §4.2.2: recipient policy failures are ignored; keep the
            // check so the outcome can still be reported.
            HostAction::RequireTls { verify } => HostAction::OpportunisticTls {
                audit: Some(verify),
            },
            HostAction::Skip {
                reason: SkipReason::NotInStsPolicy | SkipReason::TlsaLookupFailed { .. },
            }
            | HostAction::RequireTlsUnauthenticated => HostAction::OpportunisticTls { audit: None },
            other => other,
        },
        TlsDemand::RequireTls => {
            let authority = if mx_dnssec.is_authentic() {
                MxAuthority::DnssecValidated
            } else if sts.map(MtaStsPolicy::mode) == Some(PolicyMode::Enforce)
                && sts_listed == Some(true)
            {
                MxAuthority::MtaStsEnforce
            } else {
                MxAuthority::Unauthenticated
            };
            entry.peer_must_advertise_requiretls = true;
            match check_mx(authority) {
                Err(f) => HostAction::FailNow {
                    status: f.status(),
                    reason: FailReason::RequireTls(f),
                },
                Ok(()) => match required {
                    skip @ HostAction::Skip { .. } => skip,
                    dane @ HostAction::RequireTls { .. } => dane,
                    // RFC 8689 §4.2.1: the certificate must verify, by a
                    // trusted chain or by DANE; unusable TLSA or no policy
                    // falls back to WebPKI for the MX name.
                    _ => HostAction::RequireTls { verify: webpki() },
                },
            }
        }
    };
    entry.on_failure = match (&entry.action, demand) {
        (HostAction::FailNow { status, .. }, _) => FailureAction::Bounce(*status),
        _ => FailureAction::TryNextMx,
    };
    entry
}

/// What happens once every entry failed.
fn exhausted(entries: &[PlanEntry], demand: TlsDemand) -> FailureAction {
    if demand.is_requiretls() {
        // RFC 8689 §4.2.1: return the message, never fall back to cleartext.
        // Temporary trouble (a host unreachable now) still defers while some
        // host could have qualified.
        let any_usable = entries
            .iter()
            .any(|e| !matches!(e.action, HostAction::FailNow { .. }));
        return if any_usable {
            FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
        } else {
            FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)
        };
    }
    let strict = entries.iter().any(|e| {
        matches!(
            e.action,
            HostAction::RequireTls { .. }
                | HostAction::RequireTlsUnauthenticated
                | HostAction::Skip { .. }
        )
    });
    if strict {
        // DANE and MTA-STS failures are temporary (RFC 7672 §2.2, RFC 8461 §5).
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    } else {
        FailureAction::Defer(EnhancedStatus::UNABLE_TO_ROUTE)
    }
}
