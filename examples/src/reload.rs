//! Reloading a running server (SIGHUP in `mailtls-server`): the
//! certificate directory is loaded again into the shared resolver and the
//! policy settings (`[mta_sts]`, `[tls_rpt]`) take effect at once, as does
//! `[smime]` (the running S/MIME gateway is rebuilt: rules, trust anchors,
//! and its key and partner stores re-read from disk); keys
//! that only take effect at start (ports, bind address, data directory...)
//! are named in the [`ReloadReport`] and logged, never silently ignored.
//!
//! A reload is all or nothing: a configuration that fails validation, or a
//! certificate directory with nothing usable in it, changes nothing. A
//! certificate file that does not load is not such a failure: the others
//! are served and the bad one is named in the report's warnings and the
//! resolver's stats (see `mailtls_sni::ReloadPolicy`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use mailtls_sni::SniResolver;
use serde::Serialize;

use crate::certs;
use crate::config::{Config, ConfigError, MailListener};
use crate::server::ServerError;
use crate::smime_path::SmimePath;
use crate::tls::TlsError;

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The resolver's generation after the reload.
    pub generation: u64,
    /// Certificates served now.
    pub certificates: usize,
    /// Test certificates made for names nothing covered (new MTA-STS
    /// policy hosts, when `tls.make_test_certificates` is on).
    pub certificates_made: Vec<PathBuf>,
    /// Reloadable keys whose new values took effect (`mta_sts`,
    /// `tls_rpt.rua`, `tls.make_test_certificates`, `tls.rsa_certificate`,
    /// `smime`: the S/MIME rules, trust anchors and `send_as`).
    pub applied: Vec<String>,
    /// Keys that changed but only take effect after a restart, by name.
    pub restart_required: Vec<String>,
    /// Notes from the certificate load that did not stop it.
    pub warnings: Vec<String>,
}

/// The reload history shown on the status page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Successful reloads since start.
    pub reloads: u64,
    /// Refused reloads since start.
    pub failed: u64,
    /// When the last reload was asked for, RFC 3339.
    pub last_at: Option<String>,
    /// Why the last reload was refused, if it was.
    pub last_error: Option<String>,
    /// Keys changed by the last successful reload that wait for a restart.
    pub restart_required: Vec<String>,
}

/// The settings that a reload can change, shared by the handlers that read
/// them (the MTA-STS route, the status page) and [`RunningServer::reload`].
///
/// [`RunningServer::reload`]: crate::RunningServer::reload
#[derive(Debug)]
pub(crate) struct Live {
    /// The configuration in effect: the start configuration with every
    /// reloaded part replaced (restart-only keys keep their start values,
    /// so this always describes what the server does).
    current: RwLock<Arc<Config>>,
    /// One reload at a time: two SIGHUPs in a row must not interleave.
    running: tokio::sync::Mutex<()>,
    history: Mutex<ReloadStatus>,
    /// The S/MIME gateway started with the server (`None` when
    /// `smime.enabled` was off): its rules, trust anchors, key store and
    /// partner store are reloaded in place.
    smime: Option<Arc<SmimePath>>,
}

impl Live {
    pub(crate) fn new(config: Config, smime: Option<Arc<SmimePath>>) -> Self {
        Live {
            current: RwLock::new(Arc::new(config)),
            running: tokio::sync::Mutex::new(()),
            history: Mutex::new(ReloadStatus::default()),
            smime,
        }
    }

    /// The configuration in effect now.
    pub(crate) fn current(&self) -> Arc<Config> {
        // A panic while holding the lock cannot leave a half-written Arc.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set_current(&self, config: Config) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// The reload history.
    pub(crate) fn status(&self) -> ReloadStatus {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, result: Result<&ReloadReport, String>) {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        h.last_at = Some(crate::status::rfc3339(SystemTime::now()));
        match result {
            Ok(report) => {
                h.reloads += 1;
                h.last_error = None;
                h.restart_required = report.restart_required.clone();
            }
            Err(e) => {
                h.failed += 1;
                h.last_error = Some(e);
            }
        }
    }

    /// A reload that failed before it reached the server (the file did not
    /// load): logged and counted like one the server refused.
    pub(crate) fn refused(&self, error: &ConfigError) {
        tracing::error!(error = %error, "reload refused; the previous configuration stays in effect");
        self.record(Err(error.to_string()));
    }
}

/// Applies `new` to the running server; see the module docs.
pub(crate) async fn reload(
    live: &Live,
    resolver: &Arc<SniResolver>,
    new: Config,
) -> Result<ReloadReport, ServerError> {
    let _one_at_a_time = live.running.lock().await;
    let result = apply(live, resolver, new).await;
    live.record(result.as_ref().map_err(ToString::to_string));
    match &result {
        Ok(report) => {
            tracing::info!(
                generation = report.generation,
                certificates = report.certificates,
                applied = ?report.applied,
                "configuration reloaded"
            );
            for key in &report.restart_required {
                tracing::warn!(key = %key, "config key changed; it takes effect after a restart");
            }
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the previous configuration stays in effect");
        }
    }
    result
}

async fn apply(
    live: &Live,
    resolver: &Arc<SniResolver>,
    new: Config,
) -> Result<ReloadReport, ServerError> {
    new.validate()?;
    let old = live.current();
    let restart_required = restart_keys(&old, &new);
    let mut applied = Vec::new();
    let mut effective = (*old).clone();
    if old
        .mta_sts
        .publications
        .iter()
        .map(|p| (&p.domain, &p.policy))
        .ne(new
            .mta_sts
            .publications
            .iter()
            .map(|p| (&p.domain, &p.policy)))
    {
        applied.push("mta_sts".to_owned());
    }
    if old.mta_sts.publications.iter().map(|p| &p.rua).ne(new
        .mta_sts
        .publications
        .iter()
        .map(|p| &p.rua))
    {
        applied.push("tls_rpt.rua".to_owned());
    }
    if old.tls.make_test_certificates != new.tls.make_test_certificates {
        applied.push("tls.make_test_certificates".to_owned());
    }
    if old.tls.rsa_certificate != new.tls.rsa_certificate {
        applied.push("tls.rsa_certificate".to_owned());
    }
    if old.outbound.mta_sts_exceptions != new.outbound.mta_sts_exceptions {
        applied.push("outbound.mta_sts_exceptions".to_owned());
    }
    effective.outbound.mta_sts_exceptions = new.outbound.mta_sts_exceptions.clone();
    effective.mta_sts = new.mta_sts;
    effective.tls.make_test_certificates = new.tls.make_test_certificates;
    effective.tls.rsa_certificate = new.tls.rsa_certificate;
    // `[smime]`: everything but `enabled` and `data_dir` (restart_keys
    // names those); the gateway's stores are re-read from disk on every
    // reload, so uploads made with the `mailtls-smime` tool show.
    let mut smime_section = new.smime;
    smime_section.enabled = old.smime.enabled;
    smime_section.data_dir = old.smime.data_dir.clone();
    if smime_section != old.smime {
        applied.push("smime".to_owned());
    }
    effective.smime = smime_section;

    // Certificates and the S/MIME gateway first: if either does not load,
    // the policy stays as it was too, so a reload never half-happens.
    let (made, loaded) = {
        let effective = effective.clone();
        let resolver = Arc::clone(resolver);
        let smime = live.smime.clone();
        tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
            // The gateway's lock is held from reading its stores until the
            // new one is in place (see `SmimePath::lock_for_reload`).
            let mut gateway = match &smime {
                Some(s) => {
                    let guard = s.lock_for_reload()?;
                    let staged = s.stage(&effective.smime)?;
                    Some((guard, staged))
                }
                None => None,
            };
            let made = certs::ensure_certificates(&effective)?;
            let dir = effective.cert_dir();
            let loaded = resolver
                .reload_from_dir(&dir)
                .map_err(|source| TlsError::Certificates { dir, source })?;
            if let Some((guard, staged)) = gateway.as_mut() {
                std::mem::swap(&mut **guard, staged);
            }
            Ok((made, loaded))
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??
    };
    live.set_current(effective);
    Ok(ReloadReport {
        generation: loaded.generation,
        certificates: loaded.certificates,
        certificates_made: made.written,
        applied,
        restart_required,
        warnings: loaded
            .warnings
            .into_iter()
            .chain(loaded.bad_files.iter().map(|b| format!("{b} (not served)")))
            .collect(),
    })
}

/// Every key that differs between `old` and `new` and is only read at
/// start, by its dotted name.
fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |key: &str, differs: bool| {
        if differs {
            keys.push(key.to_owned());
        }
    };
    let (o, n) = (&old.server, &new.server);
    check("server.hostname", o.hostname != n.hostname);
    check("server.names", o.names != n.names);
    check("server.bind", o.bind != n.bind);
    check("server.data_dir", o.data_dir != n.data_dir);
    check("server.local_domains", o.local_domains != n.local_domains);
    check(
        "server.max_message_size",
        o.max_message_size != n.max_message_size,
    );
    check(
        "server.max_connections",
        o.max_connections != n.max_connections,
    );
    check(
        "server.max_connections_per_address",
        o.max_connections_per_address != n.max_connections_per_address,
    );
    check(
        "server.auth_failures_per_address",
        o.auth_limits.per_address != n.auth_limits.per_address,
    );
    check(
        "server.auth_failures_per_account",
        o.auth_limits.per_account != n.auth_limits.per_account,
    );
    check(
        "server.auth_failure_window_seconds",
        o.auth_limits.window != n.auth_limits.window,
    );
    check("store", old.store != new.store);
    let (o, n) = (&old.tls, &new.tls);
    check("tls.cert_dir", o.cert_dir != n.cert_dir);
    check("tls.watch", o.watch != n.watch);
    check("tls.client_ca_file", o.client_ca_file != n.client_ca_file);
    for which in MailListener::ALL {
        let (o, n) = (old.listener(which), new.listener(which));
        let name = which.name();
        check(&format!("{name}.enabled"), o.enabled != n.enabled);
        check(&format!("{name}.port"), o.port != n.port);
        check(&format!("{name}.security"), o.security != n.security);
        check(
            &format!("{name}.bare_newline"),
            o.bare_newline != n.bare_newline,
        );
    }
    let (o, n) = (&old.web, &new.web);
    check("web.enabled", o.enabled != n.enabled);
    check("web.mode", o.mode != n.mode);
    check("web.http_port", o.http_port != n.http_port);
    check("web.https_port", o.https_port != n.https_port);
    check(
        "web.status_allowed_networks",
        o.status_allowed_networks != n.status_allowed_networks,
    );
    check("web.status_users", o.status_users != n.status_users);
    check("users", old.users != new.users);
    // Subsystems read their own sections once, when they start.
    // The MTA-STS exception list is reloaded; the rest of [outbound] is
    // read at start.
    let mut outbound = new.outbound.clone();
    outbound.mta_sts_exceptions = old.outbound.mta_sts_exceptions.clone();
    check("outbound", old.outbound != outbound);
    check("tlsrpt_reports", old.tlsrpt_reports != new.tlsrpt_reports);
    // The rest of [smime] is reloaded (the gateway's directory and whether
    // it runs at all are fixed at start).
    check("smime.enabled", old.smime.enabled != new.smime.enabled);
    check("smime.data_dir", old.smime.data_dir != new.smime.data_dir);
    check("acme", old.acme != new.acme);
    // Whatever is left (a section added after this list was written) is
    // read at start too: say so rather than pretend it was applied.
    let mut probe = old.clone();
    probe.server = new.server.clone();
    probe.tls = new.tls.clone();
    for which in MailListener::ALL {
        *probe.listener_mut(which) = *new.listener(which);
    }
    probe.web = new.web.clone();
    probe.users = new.users.clone();
    probe.mta_sts = new.mta_sts.clone();
    probe.outbound = new.outbound.clone();
    probe.tlsrpt_reports = new.tlsrpt_reports.clone();
    probe.smime = new.smime.clone();
    probe.acme = new.acme.clone();
    probe.store = new.store.clone();
    if probe != *new {
        keys.push("another section (read at start)".to_owned());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named() {
        let old = Config::embedded().unwrap();
        let new = Config::from_toml_str(
            "[server]\nbind = \"127.0.0.2\"\n[imaps]\nport = 3993\n[web]\nmode = \"https-only\"\n\
             [mta_sts]\nmode = \"enforce\"\n[[users]]\nname = \"test\"\npassword = \"test\"\n",
        )
        .unwrap();
        assert_eq!(
            restart_keys(&old, &new),
            ["server.bind", "imaps.port", "web.mode"]
        );
        // Only reloadable keys changed: nothing waits for a restart.
        let mut policy_only = old.clone();
        policy_only.mta_sts = new.mta_sts.clone();
        policy_only.tls.rsa_certificate = false;
        assert!(restart_keys(&old, &policy_only).is_empty());
        assert!(restart_keys(&old, &old).is_empty());
    }
}
