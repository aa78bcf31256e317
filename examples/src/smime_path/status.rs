//! What the gateway holds, for the status page and the `smime` listing: the
//! partner store (address or domain, subject, expiry, capabilities,
//! enabled), harvested certificates awaiting approval, and the own keys.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use mailtls_smime::ContentEncryption;
use mailtls_smime::gateway::{
    Binding, CertSource, Gateway, HarvestMode, PartnerEntry, PendingHarvest, SmimeCertificate,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The gateway's stores at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmimeStatus {
    /// The gateway directory.
    pub dir: String,
    /// `automatic`, `manual-approval` or `off`.
    pub harvest: &'static str,
    /// Partner certificates, in fingerprint order.
    pub partners: Vec<PartnerStatus>,
    /// Harvested certificates waiting for approval.
    pub pending: Vec<PendingStatus>,
    /// The gateway's own keys (users' and domains').
    pub own_keys: Vec<OwnKeyStatus>,
}

/// One partner certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerStatus {
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    /// `address` (used for the addresses it names) or `domain` (used for a
    /// whole partner domain).
    pub binding: &'static str,
    /// The addresses the certificate names.
    pub addresses: Vec<String>,
    /// The domain, for a domain certificate.
    pub domain: Option<String>,
    /// The certificate's subject.
    pub subject: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// Already expired.
    pub expired: bool,
    /// Content ciphers the partner advertised, most preferred first (`[]`:
    /// nothing known, AES-256-CBC is used).
    pub capabilities: Vec<String>,
    /// Left enabled by the operator.
    pub enabled: bool,
    /// `uploaded` or `harvested`.
    pub source: &'static str,
}

/// One harvested certificate waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingStatus {
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    /// The addresses it names.
    pub addresses: Vec<String>,
    /// Its subject.
    pub subject: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// When it was queued, RFC 3339.
    pub queued: String,
}

/// One of the gateway's own keys (the certificate only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnKeyStatus {
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
    /// `user ADDRESS` or `domain DOMAIN`.
    pub owner: String,
    /// The certificate's subject.
    pub subject: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".to_owned())
}

fn addresses(c: &SmimeCertificate) -> Vec<String> {
    c.addresses().iter().map(ToString::to_string).collect()
}

/// Names for the content ciphers a partner can advertise; other
/// capabilities (digests, key transport) do not decide anything here.
fn cipher_names(entry: &PartnerEntry) -> Vec<String> {
    let known = [
        (ContentEncryption::Aes256Gcm, "aes256-gcm"),
        (ContentEncryption::Aes192Gcm, "aes192-gcm"),
        (ContentEncryption::Aes128Gcm, "aes128-gcm"),
        (ContentEncryption::Aes256Cbc, "aes256-cbc"),
        (ContentEncryption::Aes192Cbc, "aes192-cbc"),
        (ContentEncryption::Aes128Cbc, "aes128-cbc"),
    ];
    entry
        .capabilities()
        .map(|c| {
            c.algorithms
                .oids()
                .iter()
                .filter_map(|oid| {
                    known
                        .iter()
                        .find(|(alg, _)| alg.oid() == *oid)
                        .map(|(_, n)| (*n).to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn partner(entry: &PartnerEntry, now: SystemTime) -> PartnerStatus {
    let c = entry.certificate();
    let (binding, domain) = match entry.binding() {
        Binding::Addresses => ("address", None),
        Binding::Domain(d) => ("domain", Some(d.to_string())),
    };
    PartnerStatus {
        fingerprint: c.fingerprint().to_string(),
        binding,
        addresses: addresses(c),
        domain,
        subject: c.info().subject.clone(),
        not_after: rfc3339(c.info().not_after),
        expired: c.info().not_after < now,
        capabilities: cipher_names(entry),
        enabled: entry.is_enabled(),
        source: match entry.source() {
            CertSource::Uploaded => "uploaded",
            CertSource::Harvested => "harvested",
        },
    }
}

fn pending(p: &PendingHarvest) -> PendingStatus {
    PendingStatus {
        fingerprint: p.certificate.fingerprint().to_string(),
        addresses: addresses(&p.certificate),
        subject: p.certificate.info().subject.clone(),
        not_after: rfc3339(p.certificate.info().not_after),
        queued: rfc3339(p.queued),
    }
}

impl SmimeStatus {
    /// The status of `gateway`, whose directory is `dir`, at `now`.
    pub(crate) fn of(gateway: &Gateway, dir: &Path, now: SystemTime) -> SmimeStatus {
        let harvest = if !gateway.incoming.harvest {
            "off"
        } else {
            match gateway.partners.harvest_mode() {
                HarvestMode::ManualApproval => "manual-approval",
                HarvestMode::Automatic => "automatic",
            }
        };
        SmimeStatus {
            dir: dir.display().to_string(),
            harvest,
            partners: gateway.partners.list().map(|e| partner(e, now)).collect(),
            pending: gateway.partners.pending().map(pending).collect(),
            own_keys: gateway
                .keys
                .list()
                .map(|k| OwnKeyStatus {
                    fingerprint: k.certificate.fingerprint().to_string(),
                    owner: match &k.owner {
                        mailtls_smime::gateway::KeyOwner::User(a) => format!("user {a}"),
                        mailtls_smime::gateway::KeyOwner::Domain(d) => format!("domain {d}"),
                    },
                    subject: k.certificate.info().subject.clone(),
                    not_after: rfc3339(k.certificate.info().not_after),
                })
                .collect(),
        }
    }

    /// A plain-text listing, one line per certificate, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "S/MIME gateway in {} (harvest: {})",
            self.dir, self.harvest
        );
        let _ = writeln!(out, "own keys: {}", self.own_keys.len());
        for k in &self.own_keys {
            let _ = writeln!(
                out,
                "  {}  {}  expires {}",
                k.fingerprint, k.owner, k.not_after
            );
        }
        out.push_str(&self.partners_text());
        out.push_str(&self.pending_text());
        out
    }

    /// The partner certificates, one line each (`smime partners list`).
    pub fn partners_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "partner certificates: {}", self.partners.len());
        for p in &self.partners {
            let who = match &p.domain {
                Some(d) => format!("domain {d}"),
                None => p.addresses.join(", "),
            };
            let caps = if p.capabilities.is_empty() {
                "-".to_owned()
            } else {
                p.capabilities.join(",")
            };
            let _ = writeln!(
                out,
                "  {}  {who}  {}  expires {}{}  ciphers {caps}  {}{}",
                p.fingerprint,
                p.source,
                p.not_after,
                if p.expired { " (expired)" } else { "" },
                if p.enabled { "enabled" } else { "disabled" },
                if p.subject.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", p.subject)
                },
            );
        }
        out
    }

    /// The certificates awaiting approval, one line each (`smime approvals
    /// list`).
    pub fn pending_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "awaiting approval: {}", self.pending.len());
        for p in &self.pending {
            let _ = writeln!(
                out,
                "  {}  {}  queued {}  expires {}",
                p.fingerprint,
                p.addresses.join(", "),
                p.queued,
                p.not_after
            );
        }
        out
    }
}
