//! Session outcomes and report metadata the TLS-RPT store tests share.
#![allow(dead_code, clippy::unwrap_used)]

use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{FailureOutcome, PolicyRef, ReportMeta, SessionOutcome};

const STS: [&str; 3] = ["version: STSv1", "mode: enforce", "mx: *.mx.example.org"];
const MX: [&str; 1] = ["*.mx.example.org"];

/// One session under an MTA-STS policy for `domain`; failed ones as
/// `validation-failure` from 192.0.2.25.
pub(crate) fn outcome(domain: &'static str, failed: bool) -> SessionOutcome<'static> {
    SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::Sts,
            domain,
            strings: &STS,
            mx_hosts: &MX,
        },
        mx_host: "a.mx.example.org",
        failure: failed.then(|| FailureOutcome {
            result_type: ResultType::ValidationFailure,
            sending_mta_ip: None,
            receiving_ip: Some("192.0.2.25".parse().unwrap()),
            receiving_mx_helo: None,
            failure_reason_code: None,
            additional_information: None,
        }),
    }
}

/// The reporting organisation.
pub(crate) fn meta() -> ReportMeta {
    ReportMeta {
        organization_name: "Sender".into(),
        contact_info: "mailto:postmaster@sender.example".into(),
        submitter: "sender.example".into(),
    }
}
