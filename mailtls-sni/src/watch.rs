//! Watching a certificate directory and reloading on change.
//!
//! Changes are noticed two ways: inotify-style events (through `notify`) for
//! speed, and a periodic check of [`dir_signature`] as a fallback for file
//! systems without events and for changes outside the watched tree (a certbot
//! `archive/` file behind a `live/` symlink). Bursts of events are debounced,
//! and a reload only happens when the signature really changed, so a renewal
//! that writes four files triggers one reload. The debounce has an upper
//! bound ([`WatchOptions::max_delay`]): a directory that never stops changing
//! (a log file beside the certificates, a busy deploy tool) is still
//! reloaded at least that often.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dir::dir_signature;
use crate::resolver::{ReloadError, ReloadReport, SniResolver};

/// Settings for [`watch_dir`]: `WatchOptions::default()` and the `with_*`
/// methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Quiet time after the last event before reloading.
    pub debounce: Duration,
    /// How often to compare the directory signature without any event;
    /// `None` to rely on events only.
    pub poll_interval: Option<Duration>,
    /// The longest a change waits for a reload while events keep coming:
    /// the debounce ends at `max_delay` after the first event of a burst
    /// even if the directory never goes quiet.
    pub max_delay: Duration,
}

impl WatchOptions {
    /// Quiet time after the last event before reloading.
    pub fn with_debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// How often to compare the directory signature without any event;
    /// `None` to rely on events only.
    pub fn with_poll_interval(mut self, poll_interval: Option<Duration>) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The longest a change waits for its reload while events keep coming
    /// (default 2 s).
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(250),
            poll_interval: Some(Duration::from_secs(30)),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// The watcher could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The platform watcher failed.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// The directory.
        path: PathBuf,
        /// The notify error.
        #[source]
        source: notify::Error,
    },
    /// No tokio runtime is running.
    #[error("watch_dir must be called inside a tokio runtime")]
    NoRuntime,
}

/// A running watcher; dropping it (or calling [`stop`](Self::stop)) ends it.
#[derive(Debug)]
pub struct DirWatcher {
    task: JoinHandle<()>,
    /// Re-ranks at validity boundaries ([`watch_dir`] only).
    revalidate: Option<JoinHandle<()>>,
    _watcher: notify::RecommendedWatcher,
}

impl DirWatcher {
    /// Stops watching.
    pub fn stop(self) {
        // Drop aborts both tasks.
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(t) = &self.revalidate {
            t.abort();
        }
    }
}

/// What to run when the directory changed. The default reloads the resolver
/// from the directory; a server that adds certificates from its own
/// configuration passes a closure that does that too.
pub type ReloadFn = Arc<dyn Fn(&Path) -> Result<ReloadReport, ReloadError> + Send + Sync>;

/// Watches `dir` and reloads `resolver` from it on every real change. Call it
/// right after the initial load: changes before the call are not seen.
/// Reloads run on `spawn_blocking` (they read files). Bad files are handled
/// by the resolver's [`ReloadPolicy`](crate::resolver::ReloadPolicy); a
/// refused reload keeps the old certificates; every outcome is logged and
/// visible in [`SniResolver::stats`].
pub fn watch_dir(
    resolver: Arc<SniResolver>,
    dir: PathBuf,
    options: WatchOptions,
) -> Result<DirWatcher, WatchError> {
    let reloader = Arc::clone(&resolver);
    let reload: ReloadFn = Arc::new(move |d: &Path| reloader.reload_from_dir(d));
    let mut watcher = watch_dir_with(dir, options, reload)?;
    watcher.revalidate = Some(tokio::spawn(revalidate_at_boundaries(resolver)));
    Ok(watcher)
}

/// Sleeps until a served certificate starts or stops being valid, then has
/// the resolver re-rank (see [`SniResolver::revalidate`]). Wakes at least
/// hourly, so a wall-clock jump is caught up with.
async fn revalidate_at_boundaries(resolver: Arc<SniResolver>) {
    const MAX_SLEEP: Duration = Duration::from_secs(3600);
    loop {
        let wait = resolver.validity_changes_at().map_or(MAX_SLEEP, |at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .min(MAX_SLEEP)
        });
        // A second past the boundary: X.509 times have whole seconds.
        tokio::time::sleep(wait + Duration::from_secs(1)).await;
        let r = Arc::clone(&resolver);
        match tokio::task::spawn_blocking(move || r.revalidate()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "re-ranking after a validity change failed");
            }
            Err(e) => tracing::error!(error = %e, "re-ranking task failed"),
        }
    }
}

/// Like [`watch_dir`], running `reload` on each change instead.
pub fn watch_dir_with(
    dir: PathBuf,
    options: WatchOptions,
    reload: ReloadFn,
) -> Result<DirWatcher, WatchError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => !matches!(e.kind, EventKind::Access(_)),
            Err(_) => true, // an error may mean lost events: re-check
        };
        if relevant {
            let _ = tx.send(());
        }
    })
    .map_err(|source| WatchError::Notify {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify {
            path: dir.clone(),
            source,
        })?;
    // The baseline is taken now, before returning, not when the task first
    // runs: on a busy or single-threaded runtime that could be after a
    // change, which would then look like no change at all. Call this right
    // after the initial load so the two describe the same state.
    let mut last = dir_signature(&dir).ok();
    let task = runtime.spawn(async move {
        let poll = options.poll_interval.unwrap_or(Duration::from_secs(3600 * 24 * 365));
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() {
                        return;
                    }
                    // Debounce: wait until events stop for `debounce`, but
                    // never past `max_delay` after the first one.
                    let limit = tokio::time::Instant::now() + options.max_delay;
                    loop {
                        let quiet = tokio::time::Instant::now() + options.debounce;
                        match tokio::time::timeout_at(quiet.min(limit), rx.recv()).await {
                            Ok(Some(())) if tokio::time::Instant::now() < limit => continue,
                            Ok(Some(())) => break,
                            Ok(None) => return,
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep(poll) => {}
            }
            let now = signature(&dir).await;
            if now == last {
                continue;
            }
            let dir2 = dir.clone();
            let reload2 = Arc::clone(&reload);
            let outcome = tokio::task::spawn_blocking(move || reload2(&dir2)).await;
            match outcome {
                Ok(Ok(report)) => {
                    tracing::info!(
                        dir = %dir.display(),
                        generation = report.generation,
                        bad_files = report.bad_files.len(),
                        "certificate directory reloaded"
                    );
                    last = now;
                }
                Ok(Err(e)) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "certificate directory changed but reload failed; old set kept");
                    // Remember this state so a broken directory is not retried in
                    // a loop; the next real change triggers a new attempt.
                    last = now;
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    });
    Ok(DirWatcher {
        task,
        revalidate: None,
        _watcher: watcher,
    })
}

async fn signature(dir: &Path) -> Option<u64> {
    let d = dir.to_owned();
    tokio::task::spawn_blocking(move || dir_signature(&d).ok())
        .await
        .ok()
        .flatten()
}
