//! Accounts and the SASL PLAIN mechanism shared by SMTP AUTH, IMAP LOGIN and
//! POP3 USER/PASS, and the [`AuthGuard`] that counts failed logins across
//! connections.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::User;

/// Why a SASL PLAIN response was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not base64.
    #[error("the response is not base64")]
    NotBase64,
    /// Not `authzid NUL authcid NUL password` in UTF-8.
    #[error("the response is not a PLAIN message (authzid NUL authcid NUL password)")]
    Malformed,
}

/// The decoded PLAIN credentials (RFC 4616).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Who to act as; empty means the same as `authcid`.
    pub authzid: String,
    /// Who is logging in.
    pub authcid: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .finish_non_exhaustive()
    }
}

/// Decodes a base64 SASL PLAIN response.
pub fn decode_plain(base64_response: &str) -> Result<PlainCredentials, AuthError> {
    let bytes = STANDARD
        .decode(base64_response.trim())
        .map_err(|_| AuthError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| AuthError::Malformed)?;
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(authcid), Some(password), None) if !authcid.is_empty() => {
            Ok(PlainCredentials {
                authzid: authzid.to_owned(),
                authcid: authcid.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err(AuthError::Malformed),
    }
}

/// The accounts from `[[users]]`.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// The accounts of a configuration.
    pub fn new(users: &[User]) -> Self {
        Users {
            by_name: users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
        }
    }

    /// Whether `name` exists and `password` is its password. The comparison
    /// takes the same time whether or not the name exists or how much of the
    /// password matches, so timing says nothing about either.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        match self.by_name.get(name) {
            Some(expected) => constant_time_eq(expected.as_bytes(), password.as_bytes()),
            None => {
                let _ = constant_time_eq(password.as_bytes(), password.as_bytes());
                false
            }
        }
    }

    /// Checks PLAIN credentials: the password must match, and the client may
    /// not ask to act as somebody else.
    pub fn verify_plain(&self, c: &PlainCredentials) -> bool {
        let ok = self.verify(&c.authcid, &c.password);
        ok && (c.authzid.is_empty() || c.authzid == c.authcid)
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Limits on failed logins, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failures from one client address (an IPv6 client's /64) within
    /// `window` after which that address is refused; 0: no limit.
    pub per_address: u32,
    /// Failures for one account within `window` after which logins to it
    /// are refused from everywhere; 0: no limit.
    pub per_account: u32,
    /// How long a failure is remembered; a refusal ends this long after
    /// the last failure that counted.
    pub window: Duration,
}

/// Why a login attempt was refused before its password was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginRefusal {
    /// The client address failed too often.
    Address {
        /// When the refusal ends, at the earliest.
        retry_after: Duration,
    },
    /// The account failed too often.
    Account {
        /// When the refusal ends, at the earliest.
        retry_after: Duration,
    },
}

/// The first pause after a failed login; it doubles with each further
/// failure from the address (or for the account) up to [`MAX_DELAY`].
const BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_millis(3200);
/// Entries kept at most per table; beyond, expired ones go first, then
/// the oldest (a flood of addresses cannot grow memory without bound).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    last_wall: SystemTime,
}

#[derive(Debug, Default)]
struct GuardState {
    by_address: HashMap<IpAddr, Entry>,
    by_account: HashMap<String, Entry>,
    failures_total: u64,
    refusals_total: u64,
}

/// Failed logins counted per client address and per account across every
/// connection and protocol (SMTP AUTH, IMAP LOGIN, POP3 PASS, the status
/// page's basic authentication), like Postfix's anvil or Dovecot's auth
/// penalty: each failure earns a growing pause, and past a limit the
/// address (or account) is refused without a password check until the
/// window has passed since its last failure.
#[derive(Debug)]
pub struct AuthGuard {
    limits: AuthLimits,
    state: Mutex<GuardState>,
}

/// The address key: an IPv6 client is counted by its /64, which one
/// host usually owns whole; an IPv4-mapped address as IPv4.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn address_label(key: IpAddr) -> String {
    match key {
        IpAddr::V6(v6) => format!("{v6}/64"),
        v4 => v4.to_string(),
    }
}

impl AuthGuard {
    /// A guard with these limits.
    pub fn new(limits: AuthLimits) -> Self {
        AuthGuard {
            limits,
            state: Mutex::new(GuardState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        // A panic elsewhere while holding the lock leaves counts that are
        // still counts: keep using them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The failures still counting for an entry at `now`.
    fn live(&self, entry: Option<&Entry>, now: Instant) -> Option<Entry> {
        entry
            .filter(|e| now.saturating_duration_since(e.last) < self.limits.window)
            .copied()
    }

    fn refusal_left(&self, entry: Option<Entry>, limit: u32, now: Instant) -> Option<Duration> {
        let e = entry?;
        (limit > 0 && e.failures >= limit).then(|| {
            self.limits
                .window
                .saturating_sub(now.saturating_duration_since(e.last))
        })
    }

    /// Whether a login from `ip` (for `account`, once known) may be tried
    /// at all. A refused attempt is counted for the status page but not as
    /// a failure: the refusal ends on time even under a steady stream.
    pub fn check(&self, ip: IpAddr, account: Option<&str>) -> Result<(), LoginRefusal> {
        let now = Instant::now();
        let mut st = self.lock();
        let by_address = self.live(st.by_address.get(&address_key(ip)), now);
        if let Some(retry_after) = self.refusal_left(by_address, self.limits.per_address, now) {
            st.refusals_total += 1;
            return Err(LoginRefusal::Address { retry_after });
        }
        if let Some(account) = account {
            let by_account = self.live(st.by_account.get(account), now);
            if let Some(retry_after) = self.refusal_left(by_account, self.limits.per_account, now) {
                st.refusals_total += 1;
                return Err(LoginRefusal::Account { retry_after });
            }
        }
        Ok(())
    }

    /// Records a failed login and returns how long to pause before
    /// answering it.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        let now = Instant::now();
        let wall = SystemTime::now();
        let window = self.limits.window;
        let mut st = self.lock();
        st.failures_total += 1;
        let bump = |e: Option<&Entry>| {
            let failures = e
                .filter(|e| now.saturating_duration_since(e.last) < window)
                .map_or(0, |e| e.failures);
            Entry {
                failures: failures.saturating_add(1),
                last: now,
                last_wall: wall,
            }
        };
        let key = address_key(ip);
        let a = bump(st.by_address.get(&key));
        st.by_address.insert(key, a);
        let b = bump(st.by_account.get(account));
        st.by_account.insert(account.to_owned(), b);
        prune(&mut st.by_address, now, window);
        prune(&mut st.by_account, now, window);
        let n = a.failures.max(b.failures).min(16);
        BASE_DELAY
            .saturating_mul(1u32 << (n - 1).min(4))
            .min(MAX_DELAY)
    }

    /// Records a successful login: the account's failures are forgotten
    /// (the address's are not, so a working login cannot hide guessing at
    /// other accounts).
    pub fn succeeded(&self, account: &str) {
        self.lock().by_account.remove(account);
    }

    /// The counts for the status page.
    pub fn status(&self) -> AuthFailureStatus {
        let now = Instant::now();
        let st = self.lock();
        let rows = |limit: u32, entries: Vec<(String, Entry)>| {
            let mut rows: Vec<FailureRow> = entries
                .into_iter()
                .filter(|(_, e)| now.saturating_duration_since(e.last) < self.limits.window)
                .map(|(key, e)| FailureRow {
                    key,
                    failures: e.failures,
                    last_failure: crate::status::rfc3339(e.last_wall),
                    refused: limit > 0 && e.failures >= limit,
                })
                .collect();
            rows.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.key.cmp(&b.key)));
            rows
        };
        AuthFailureStatus {
            per_address_limit: self.limits.per_address,
            per_account_limit: self.limits.per_account,
            window_seconds: self.limits.window.as_secs(),
            failures_total: st.failures_total,
            refusals_total: st.refusals_total,
            addresses: rows(
                self.limits.per_address,
                st.by_address
                    .iter()
                    .map(|(k, e)| (address_label(*k), *e))
                    .collect(),
            ),
            accounts: rows(
                self.limits.per_account,
                st.by_account.iter().map(|(k, e)| (k.clone(), *e)).collect(),
            ),
        }
    }
}

fn prune<K: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<K, Entry>,
    now: Instant,
    window: Duration,
) {
    if map.len() <= MAX_ENTRIES {
        return;
    }
    map.retain(|_, e| now.saturating_duration_since(e.last) < window);
    while map.len() > MAX_ENTRIES {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, e)| e.last)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

/// Failed logins on the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthFailureStatus {
    /// `server.auth_failures_per_address` (0: no limit).
    pub per_address_limit: u32,
    /// `server.auth_failures_per_account` (0: no limit).
    pub per_account_limit: u32,
    /// `server.auth_failure_window_seconds`.
    pub window_seconds: u64,
    /// Failed logins since start.
    pub failures_total: u64,
    /// Attempts refused unchecked since start (address or account over
    /// its limit).
    pub refusals_total: u64,
    /// Client addresses (IPv6 by /64) with failures in the window, most first.
    pub addresses: Vec<FailureRow>,
    /// Accounts with failures in the window, most first.
    pub accounts: Vec<FailureRow>,
}

/// One address or account with recent failures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureRow {
    /// The address (`2001:db8::/64` for IPv6) or account name.
    pub key: String,
    /// Failures within the window.
    pub failures: u32,
    /// When the last one was, RFC 3339.
    pub last_failure: String,
    /// Whether logins are refused now.
    pub refused: bool,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip() {
        let users = Users::new(&[User {
            name: "test".into(),
            password: "test".into(),
        }]);
        let c = decode_plain(&STANDARD.encode("\0test\0test")).unwrap();
        assert!(users.verify_plain(&c));
        let c = decode_plain(&STANDARD.encode("other\0test\0test")).unwrap();
        assert!(!users.verify_plain(&c));
        let c = decode_plain(&STANDARD.encode("\0test\0tesT")).unwrap();
        assert!(!users.verify_plain(&c));
        assert_eq!(decode_plain("!!"), Err(AuthError::NotBase64));
        assert_eq!(
            decode_plain(&STANDARD.encode("test")),
            Err(AuthError::Malformed)
        );
        assert!(!users.verify("nobody", "test"));
        assert!(!users.verify("test", "tes"));
        assert!(!users.verify("test", "testt"));
    }

    #[test]
    fn failures_back_off_then_refuse_per_address_and_per_account() {
        let g = AuthGuard::new(AuthLimits {
            per_address: 3,
            per_account: 4,
            window: Duration::from_secs(60),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(g.check(a, Some("x")), Ok(()));
        assert_eq!(g.failed(a, "x"), Duration::from_millis(200));
        assert_eq!(g.failed(a, "x"), Duration::from_millis(400));
        assert_eq!(g.failed(a, "y"), Duration::from_millis(800));
        assert!(matches!(
            g.check(a, None),
            Err(LoginRefusal::Address { .. })
        ));
        // Another address is not refused, until the account is.
        assert_eq!(g.check(b, Some("x")), Ok(()));
        g.failed(b, "x");
        g.failed(b, "x");
        assert!(matches!(
            g.check(b, Some("x")),
            Err(LoginRefusal::Account { retry_after }) if retry_after <= Duration::from_secs(60)
        ));
        assert_eq!(g.check(b, Some("y")), Ok(()));
        // A success clears the account, not the address.
        g.succeeded("x");
        assert_eq!(g.check(b, Some("x")), Ok(()));
        assert!(g.check(a, Some("x")).is_err());
        let st = g.status();
        assert_eq!((st.failures_total, st.refusals_total), (5, 3));
        assert_eq!(st.addresses[0].key, "192.0.2.1");
        assert!(st.addresses[0].refused);
        // IPv6 clients count by /64.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        for _ in 0..3 {
            g.failed(v6a, "z");
        }
        assert!(g.check(v6b, None).is_err());
        assert!(
            g.status()
                .addresses
                .iter()
                .any(|r| r.key == "2001:db8::/64")
        );
    }

    #[test]
    fn failures_expire_after_the_window() {
        let g = AuthGuard::new(AuthLimits {
            per_address: 1,
            per_account: 0,
            window: Duration::from_millis(50),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        g.failed(a, "x");
        assert!(g.check(a, None).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(g.check(a, Some("x")), Ok(()));
        assert!(g.status().addresses.is_empty());
    }
}
