//! `[smime]`: the S/MIME gateway on the message path (which mail is signed,
//! encrypted, decrypted, verified and marked, with which certificates).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mailtls_core::DnsName;
use mailtls_smime::gateway::{
    Address, EncryptionPolicy, EncryptionScope, Fingerprint, RecipientMatch, RelayAllowance,
    StatusHeaders, SubjectMarks, TrustedRelay, WeakSignatures,
};
use serde::Deserialize;

use crate::config::ConfigError;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `[smime]` as written in the file (strings are parsed afterwards so that
/// every error names its key).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSmime {
    enabled: bool,
    data_dir: Option<PathBuf>,
    trust_anchors_file: Option<PathBuf>,
    harvest: bool,
    approval_queue: bool,
    encrypt_to_sender: bool,
    default_policy: String,
    encryption_scope: String,
    policies: BTreeMap<String, String>,
    domain_signing: Vec<String>,
    status_header_prefix: String,
    weak_signatures: String,
    rsa_pss: bool,
    marks: RawMarks,
    trusted_relays: Vec<RawTrustedRelay>,
    send_as: BTreeMap<String, Vec<String>>,
}

impl Default for RawSmime {
    fn default() -> Self {
        RawSmime {
            enabled: false,
            data_dir: None,
            trust_anchors_file: None,
            harvest: true,
            approval_queue: false,
            encrypt_to_sender: true,
            default_policy: "when-possible".into(),
            encryption_scope: "per-recipient".into(),
            policies: BTreeMap::new(),
            domain_signing: Vec::new(),
            status_header_prefix: "X-Mailtls-".into(),
            weak_signatures: "mark".into(),
            rsa_pss: false,
            marks: RawMarks::default(),
            trusted_relays: Vec::new(),
            send_as: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMarks {
    signed: String,
    signed_by_domain: String,
    encrypted: String,
    signature_invalid: String,
    failed: String,
    signature_weak: String,
}

impl Default for RawMarks {
    fn default() -> Self {
        RawMarks {
            signed: "[signed]".into(),
            signed_by_domain: "[signed by <*@{domain}>]".into(),
            encrypted: "[encrypted]".into(),
            signature_invalid: "[signature invalid]".into(),
            failed: "[S/MIME failed]".into(),
            signature_weak: "[weak signature]".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustedRelay {
    network: String,
    #[serde(default)]
    senders: Vec<String>,
    #[serde(default)]
    sender_domains: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
}

/// `[smime]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmimeSection {
    /// Whether the gateway is on the message path at all. When off, mail
    /// passes untouched and nothing is loaded.
    pub enabled: bool,
    /// The gateway's directory (own keys in `keys/`, partner store in
    /// `partners.json`); `None`: `<data_dir>/smime`.
    pub data_dir: Option<PathBuf>,
    /// PEM file of the CAs partner signatures must chain to; `None`: no
    /// anchors, so incoming signatures never verify (and nothing is
    /// harvested).
    pub trust_anchors_file: Option<PathBuf>,
    /// Take certificates (and capabilities) of verified signers into the
    /// partner store.
    pub harvest: bool,
    /// Harvested certificates wait for an operator's approval instead of
    /// being used at once.
    pub approval_queue: bool,
    /// Also encrypt to the sender's own certificate (when the gateway holds
    /// the sender's key), so the sent copy stays readable.
    pub encrypt_to_sender: bool,
    /// Encryption policy for recipient domains not listed in `policies`.
    pub default_policy: EncryptionPolicy,
    /// `per-recipient` (recipients with a certificate get an encrypted
    /// copy, the others a signed-only one) or `all-or-nothing` (one copy,
    /// encrypted only when everyone has a certificate).
    pub encryption_scope: EncryptionScope,
    /// Encryption policy per recipient domain (a subdomain takes its
    /// closest listed parent's).
    pub policies: HashMap<DnsName, EncryptionPolicy>,
    /// Recipients (addresses or whole domains) that get mail signed with the
    /// sender's domain key instead of the sender's own key.
    pub domain_signing: Vec<RecipientMatch>,
    /// Internal servers whose mail is signed without login, with what they
    /// may have signed.
    pub trusted_relays: Vec<TrustedRelay>,
    /// Subject marks for verified, domain-signed, decrypted, invalid and
    /// unreadable S/MIME mail.
    pub marks: SubjectMarks,
    /// The status headers' name prefix (`X-Mailtls-`).
    pub status_headers: StatusHeaders,
    /// What a signature over SHA-1 (Outlook, older NSS) gets: its own mark
    /// (`marks.signature_weak`), or nothing, as if unsigned.
    pub weak_signatures: WeakSignatures,
    /// RSA keys sign with RSASSA-PSS instead of PKCS #1 v1.5.
    pub rsa_pss: bool,
    /// `smime.send_as`: the addresses each login (`[[users]]` name) may
    /// have mail signed as. A login not listed may sign as itself when it
    /// is an address, else as nothing.
    pub send_as: HashMap<String, Vec<Address>>,
}

impl SmimeSection {
    /// The addresses `login` may have mail signed as: its `smime.send_as`
    /// list, else the login itself when it is an address (`alice@example.test`
    /// logging in signs as alice@example.test), else none.
    pub fn may_send_as(&self, login: &str) -> Vec<Address> {
        match self.send_as.get(login) {
            Some(list) => list.clone(),
            None => Address::parse(login).ok().into_iter().collect(),
        }
    }

    /// The gateway's directory in effect for a server data directory.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("smime"))
    }
}

/// A policy word: `never`, `when-possible`, `always` (refuse with 4.7.5 when
/// a certificate is missing, so the sender retries), `reject` (refuse with
/// 5.7.5) or `bounce` (never in clear: a recipient without a certificate is
/// left out and reported to the sender in a DSN, the others get the mail).
fn parse_policy(key: &str, word: &str) -> Result<EncryptionPolicy, ConfigError> {
    match word.trim().to_ascii_lowercase().as_str() {
        "never" => Ok(EncryptionPolicy::Never),
        "when-possible" => Ok(EncryptionPolicy::WhenPossible),
        "always" => Ok(EncryptionPolicy::Always),
        "reject" => Ok(EncryptionPolicy::AlwaysOrReject),
        "bounce" => Ok(EncryptionPolicy::AlwaysOrBounce),
        _ => Err(invalid(
            key,
            format!(
                "unknown encryption policy {word:?} (never, when-possible, always, reject or bounce)"
            ),
        )),
    }
}

fn parse_scope(word: &str) -> Result<EncryptionScope, ConfigError> {
    match word.trim().to_ascii_lowercase().as_str() {
        "per-recipient" => Ok(EncryptionScope::PerRecipient),
        "all-or-nothing" => Ok(EncryptionScope::AllOrNothing),
        _ => Err(invalid(
            "smime.encryption_scope",
            format!("unknown encryption scope {word:?} (per-recipient or all-or-nothing)"),
        )),
    }
}

fn parse_domain(key: String, text: &str) -> Result<DnsName, ConfigError> {
    DnsName::parse(text).map_err(|e| invalid(key, e.to_string()))
}

fn parse_address(key: String, text: &str) -> Result<Address, ConfigError> {
    Address::parse(text).map_err(|e| invalid(key, e.to_string()))
}

fn parse_relay(i: usize, raw: &RawTrustedRelay) -> Result<TrustedRelay, ConfigError> {
    let key = format!("smime.trusted_relays[{i}]");
    let text = raw.network.trim();
    // A bare address is a network of one.
    let network = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            invalid(
                format!("{key}.network"),
                format!("{text:?} is neither an IP address nor a network (such as 10.0.0.0/8)"),
            )
        })?;
    let mut allowed = Vec::new();
    for (j, s) in raw.senders.iter().enumerate() {
        allowed.push(RelayAllowance::Sender(parse_address(
            format!("{key}.senders[{j}]"),
            s,
        )?));
    }
    for (j, d) in raw.sender_domains.iter().enumerate() {
        allowed.push(RelayAllowance::SenderDomain(parse_domain(
            format!("{key}.sender_domains[{j}]"),
            d,
        )?));
    }
    for (j, k) in raw.keys.iter().enumerate() {
        let fp = Fingerprint::parse_hex(k.trim()).ok_or_else(|| {
            invalid(
                format!("{key}.keys[{j}]"),
                format!("{k:?} is not a SHA-256 certificate fingerprint (64 hex digits)"),
            )
        })?;
        allowed.push(RelayAllowance::Key(fp));
    }
    if allowed.is_empty() {
        return Err(invalid(
            key,
            "a trusted relay needs at least one of senders, sender_domains or keys",
        ));
    }
    Ok(allowed
        .into_iter()
        .fold(TrustedRelay::new(network), TrustedRelay::allow))
}

impl RawSmime {
    /// Parses every value; errors name their key (`smime.policies."x"`).
    pub(crate) fn into_section(self) -> Result<SmimeSection, ConfigError> {
        let default_policy = parse_policy("smime.default_policy", &self.default_policy)?;
        let encryption_scope = parse_scope(&self.encryption_scope)?;
        let mut policies = HashMap::new();
        for (domain, word) in &self.policies {
            let key = format!("smime.policies.{domain:?}");
            let name = parse_domain(key.clone(), domain)?;
            let policy = parse_policy(&key, word)?;
            if policies.insert(name.clone(), policy).is_some() {
                return Err(invalid(key, format!("domain {name} is listed twice")));
            }
        }
        let domain_signing = self
            .domain_signing
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let key = format!("smime.domain_signing[{i}]");
                if t.contains('@') {
                    parse_address(key, t).map(RecipientMatch::Address)
                } else {
                    parse_domain(key, t).map(RecipientMatch::Domain)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trusted_relays = self
            .trusted_relays
            .iter()
            .enumerate()
            .map(|(i, r)| parse_relay(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut send_as = HashMap::new();
        for (login, list) in &self.send_as {
            let key = format!("smime.send_as.{login:?}");
            if login.is_empty() {
                return Err(invalid(key, "the login name is empty"));
            }
            let list = list
                .iter()
                .enumerate()
                .map(|(i, a)| parse_address(format!("{key}[{i}]"), a))
                .collect::<Result<Vec<_>, _>>()?;
            send_as.insert(login.clone(), list);
        }
        let m = &self.marks;
        let marks = SubjectMarks::new(
            &m.signed,
            &m.signed_by_domain,
            &m.encrypted,
            &m.signature_invalid,
        )
        .and_then(|marks| marks.with_failed(&m.failed))
        .and_then(|marks| marks.with_weak_signature(&m.signature_weak))
        .map_err(|e| {
            let which = match &e {
                mailtls_smime::gateway::MarkError::Empty { which }
                | mailtls_smime::gateway::MarkError::Placeholder { which }
                | mailtls_smime::gateway::MarkError::Control { which } => *which,
                _ => "",
            };
            let key = if which.is_empty() {
                "smime.marks".to_owned()
            } else {
                format!("smime.marks.{which}")
            };
            invalid(key, e.to_string())
        })?;
        let weak_signatures = match self.weak_signatures.trim().to_ascii_lowercase().as_str() {
            "mark" => WeakSignatures::Mark,
            "unsigned" => WeakSignatures::Unsigned,
            other => {
                return Err(invalid(
                    "smime.weak_signatures",
                    format!("unknown rule {other:?} (mark or unsigned)"),
                ));
            }
        };
        let status_headers = StatusHeaders::new(&self.status_header_prefix)
            .map_err(|e| invalid("smime.status_header_prefix", e.to_string()))?;
        if self
            .data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(invalid("smime.data_dir", "must not be empty"));
        }
        Ok(SmimeSection {
            enabled: self.enabled,
            data_dir: self.data_dir,
            trust_anchors_file: self.trust_anchors_file,
            harvest: self.harvest,
            approval_queue: self.approval_queue,
            encrypt_to_sender: self.encrypt_to_sender,
            default_policy,
            encryption_scope,
            policies,
            domain_signing,
            trusted_relays,
            marks,
            status_headers,
            weak_signatures,
            rsa_pss: self.rsa_pss,
            send_as,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<SmimeSection, ConfigError> {
        #[derive(Deserialize)]
        struct Wrap {
            smime: RawSmime,
        }
        let w: Wrap = toml::from_str(text).unwrap();
        w.smime.into_section()
    }

    #[test]
    fn defaults_are_off_and_when_possible() {
        let s = RawSmime::default().into_section().unwrap();
        assert!(!s.enabled);
        assert_eq!(s.default_policy, EncryptionPolicy::WhenPossible);
        assert!(s.harvest && !s.approval_queue && s.encrypt_to_sender);
        assert_eq!(
            s.dir_in(Path::new("/srv/mail")),
            PathBuf::from("/srv/mail/smime")
        );
        assert!(s.status_headers.is_status_header("X-Mailtls-Signed"));
        assert_eq!(s.encryption_scope, EncryptionScope::PerRecipient);
    }

    #[test]
    fn a_full_section_parses() {
        let s = parse(
            r#"[smime]
enabled = true
data_dir = "/var/lib/gw"
default_policy = "never"
encryption_scope = "all-or-nothing"
domain_signing = ["partner.example", "bob@other.example"]
status_header_prefix = "X-Gw-"
weak_signatures = "unsigned"
rsa_pss = true
[smime.policies]
"secure.example" = "reject"
"retry.example" = "always"
"bank.example" = "bounce"
[smime.marks]
signed = "(S)"
failed = "(broken)"
[[smime.trusted_relays]]
network = "10.1.0.0/16"
sender_domains = ["example.test"]
[[smime.trusted_relays]]
network = "192.0.2.7"
senders = ["alice@example.test"]
keys = ["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]
"#,
        )
        .unwrap();
        assert!(s.enabled);
        assert_eq!(s.dir_in(Path::new("/x")), PathBuf::from("/var/lib/gw"));
        assert_eq!(s.default_policy, EncryptionPolicy::Never);
        let secure = DnsName::parse("secure.example").unwrap();
        assert_eq!(s.policies[&secure], EncryptionPolicy::AlwaysOrReject);
        let retry = DnsName::parse("retry.example").unwrap();
        assert_eq!(s.policies[&retry], EncryptionPolicy::Always);
        let bank = DnsName::parse("bank.example").unwrap();
        assert_eq!(s.policies[&bank], EncryptionPolicy::AlwaysOrBounce);
        assert_eq!(s.encryption_scope, EncryptionScope::AllOrNothing);
        assert_eq!(
            s.marks.text(mailtls_smime::gateway::Mark::Failed),
            "(broken)"
        );
        assert_eq!(s.domain_signing.len(), 2);
        assert!(matches!(s.domain_signing[1], RecipientMatch::Address(_)));
        assert_eq!(s.trusted_relays.len(), 2);
        assert!(
            s.trusted_relays[1]
                .network
                .contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap())
        );
        assert_eq!(s.trusted_relays[1].allowed.len(), 2);
        assert_eq!(s.marks.text(mailtls_smime::gateway::Mark::Signed), "(S)");
        assert!(s.status_headers.is_status_header("x-gw-signed"));
        assert_eq!(s.weak_signatures, WeakSignatures::Unsigned);
        assert!(s.rsa_pss);
        assert_eq!(
            RawSmime::default().into_section().unwrap().weak_signatures,
            WeakSignatures::Mark
        );
    }

    #[test]
    fn send_as_lists_then_the_login_address() {
        let s = parse(
            "[smime.send_as]\nalice = [\"alice@example.test\", \"sales@example.test\"]\nbob = []\n",
        )
        .unwrap();
        let names = |v: Vec<Address>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(s.may_send_as("alice")),
            ["alice@example.test", "sales@example.test"]
        );
        // Listed with nothing: signs as nobody, not even a look-alike.
        assert!(s.may_send_as("bob").is_empty());
        assert_eq!(
            names(s.may_send_as("carol@example.test")),
            ["carol@example.test"]
        );
        assert!(s.may_send_as("carol").is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[smime]\ndefault_policy = \"sometimes\"\n",
                "smime.default_policy",
            ),
            (
                "[smime.policies]\n\"a.example\" = \"maybe\"\n",
                "smime.policies.\"a.example\"",
            ),
            (
                "[smime.policies]\n\"bad domain\" = \"never\"\n",
                "smime.policies.\"bad domain\"",
            ),
            (
                "[smime]\ndomain_signing = [\"ok.example\", \"x@@\"]\n",
                "smime.domain_signing[1]",
            ),
            (
                "[[smime.trusted_relays]]\nnetwork = \"10.0.0.0/33\"\nsenders = [\"a@b.example\"]\n",
                "smime.trusted_relays[0].network",
            ),
            (
                "[[smime.trusted_relays]]\nnetwork = \"10.0.0.1\"\n",
                "smime.trusted_relays[0]",
            ),
            (
                "[[smime.trusted_relays]]\nnetwork = \"10.0.0.1\"\nkeys = [\"abc\"]\n",
                "smime.trusted_relays[0].keys[0]",
            ),
            (
                "[[smime.trusted_relays]]\nnetwork = \"10.0.0.1\"\nsenders = [\"nobody\"]\n",
                "smime.trusted_relays[0].senders[0]",
            ),
            (
                "[smime.marks]\nsigned_by_domain = \"{domain} {domain}\"\n",
                "smime.marks.signed_by_domain",
            ),
            (
                "[smime.marks]\nencrypted = \"  \"\n",
                "smime.marks.encrypted",
            ),
            (
                "[smime]\nencryption_scope = \"some\"\n",
                "smime.encryption_scope",
            ),
            ("[smime.marks]\nfailed = \"\"\n", "smime.marks.failed"),
            (
                "[smime]\nstatus_header_prefix = \"X\"\n",
                "smime.status_header_prefix",
            ),
            ("[smime]\ndata_dir = \"\"\n", "smime.data_dir"),
            (
                "[smime.send_as]\nalice = [\"alice@example.test\", \"nope\"]\n",
                "smime.send_as.\"alice\"[1]",
            ),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
