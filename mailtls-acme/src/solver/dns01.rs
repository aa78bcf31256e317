//! dns-01 (RFC 8555 §8.4): a solver over a [`DnsUpdater`] that adds and
//! removes TXT records, and (feature `dns01-hook`) a hook updater that runs
//! a command.

#[cfg(feature = "dns01-hook")]
use std::path::PathBuf;
use std::sync::Arc;

use super::{ChallengeContext, ChallengeSolver, SolverFuture};
#[cfg(feature = "dns01-hook")]
use crate::error::AcmeError;

/// The future a DNS updater returns.
pub type UpdateFuture<'a> = SolverFuture<'a>;

/// Adds and removes TXT records. Adding must not replace other values of the
/// same name: a wildcard and its apex share `_acme-challenge.NAME`.
pub trait DnsUpdater: Send + Sync {
    /// Adds the TXT value `value` at `name` (no trailing dot).
    fn add_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a>;
    /// Removes that TXT value.
    fn remove_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a>;
}

/// Answers dns-01 through a [`DnsUpdater`].
#[derive(Clone)]
pub struct Dns01Solver {
    updater: Arc<dyn DnsUpdater>,
    settle: std::time::Duration,
}

impl std::fmt::Debug for Dns01Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns01Solver")
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

impl Dns01Solver {
    /// A solver publishing through `updater`.
    pub fn new(updater: Arc<dyn DnsUpdater>) -> Self {
        Dns01Solver {
            updater,
            settle: std::time::Duration::ZERO,
        }
    }

    /// Waits this long after publishing before telling the CA, for
    /// secondaries to catch up.
    #[must_use]
    pub fn with_settle_time(mut self, settle: std::time::Duration) -> Self {
        self.settle = settle;
        self
    }
}

impl ChallengeSolver for Dns01Solver {
    fn challenge_type(&self) -> &'static str {
        "dns-01"
    }

    fn present<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            let name = ctx.dns01_record_name();
            let value = ctx.dns01_value();
            self.updater.add_txt(&name, &value).await?;
            if !self.settle.is_zero() {
                tokio::time::sleep(self.settle).await;
            }
            Ok(())
        })
    }

    fn cleanup<'a>(&'a self, ctx: &'a ChallengeContext) -> SolverFuture<'a> {
        Box::pin(async move {
            let name = ctx.dns01_record_name();
            let value = ctx.dns01_value();
            self.updater.remove_txt(&name, &value).await
        })
    }
}

/// Runs `program ACTION NAME VALUE` (ACTION `add` or `remove`) for each
/// update, like certbot's manual hooks; a non-zero exit is an error. The
/// command runs as a child process awaited by tokio (no thread is blocked);
/// it is killed if the update future is dropped.
#[cfg(feature = "dns01-hook")]
#[derive(Debug, Clone)]
pub struct HookDnsUpdater {
    program: PathBuf,
}

#[cfg(feature = "dns01-hook")]
impl HookDnsUpdater {
    /// A hook running `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        HookDnsUpdater {
            program: program.into(),
        }
    }

    async fn run(&self, action: &str, name: &str, value: &str) -> Result<(), AcmeError> {
        let err = |reason: String| AcmeError::Solver {
            kind: "dns-01".into(),
            identifier: name.to_owned(),
            reason,
        };
        let out = tokio::process::Command::new(&self.program)
            .arg(action)
            .arg(name)
            .arg(value)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| err(format!("cannot run {}: {e}", self.program.display())))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(err(format!(
                "{} {action} exited with {}: {}",
                self.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

#[cfg(feature = "dns01-hook")]
impl DnsUpdater for HookDnsUpdater {
    fn add_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a> {
        Box::pin(self.run("add", name, value))
    }

    fn remove_txt<'a>(&'a self, name: &'a str, value: &'a str) -> UpdateFuture<'a> {
        Box::pin(self.run("remove", name, value))
    }
}

#[cfg(all(test, feature = "dns01-hook"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mailtls_core::name::DnsName;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn hook_gets_action_name_value_and_failures_surface() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3\" >> {}\n[ \"$1\" = add ]\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let solver = Dns01Solver::new(Arc::new(HookDnsUpdater::new(&script)));
        let ctx = ChallengeContext::new(
            DnsName::parse("example.org").unwrap(),
            true,
            "t".into(),
            "t.k".into(),
        );
        solver.present(&ctx).await.unwrap();
        let err = solver.cleanup(&ctx).await.unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            logged,
            format!(
                "add _acme-challenge.example.org {v}\nremove _acme-challenge.example.org {v}\n",
                v = ctx.dns01_value()
            )
        );
    }
}
