//! Where the partner store keeps its state: a small trait over one snapshot,
//! with a data-directory default and an in-memory one.
//!
//! The store hands over a whole snapshot each time it changes, so a backend
//! only has to replace one blob atomically; a cluster can keep that blob in a
//! shared database without the store knowing.
//!
//! The trait is async: a save is awaited before the change shows. The file
//! default does its reading, fsync and rename on Tokio's blocking pool.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {source}")]
pub struct StorageError {
    /// The file or backend that failed.
    pub location: String,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// What a [`SnapshotStorage`] call returns: a boxed future, so that the
/// trait stays object-safe (`Box<dyn SnapshotStorage>`).
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// Keeps the serialised snapshot of a store.
///
/// Async, so that a backend may be a database or a cluster store, and
/// object-safe, so that the partner store takes any backend as
/// `Box<dyn SnapshotStorage>`. The methods return boxed futures
/// ([`StorageFuture`]) rather than being `async fn`: an `async fn` in a
/// trait cannot be called through `dyn`, and boxing by hand spares an
/// embedder the `async-trait` macro. An implementation written with
/// `async-trait` fits the same signatures.
///
/// The futures must not block the thread that polls them: do file or
/// network work on a blocking pool or with async I/O, as [`FileStorage`]
/// does.
pub trait SnapshotStorage: Send + Sync {
    /// The last saved snapshot, or `None` when nothing was ever saved.
    fn load(&self) -> StorageFuture<'_, Option<Vec<u8>>>;
    /// Replaces the snapshot, all at once or not at all; done when the new
    /// snapshot is durable.
    fn save(&self, snapshot: Vec<u8>) -> StorageFuture<'_, ()>;
    /// Names the storage in error messages.
    fn describe(&self) -> String;
}

/// A snapshot in one file of a data directory, replaced atomically (write a
/// temporary file, fsync, rename) so a crash leaves the old or the new state,
/// never half of one.
#[derive(Debug, Clone)]
pub struct FileStorage {
    path: PathBuf,
}

impl FileStorage {
    /// Keeps the snapshot at `dir/file_name`; `dir` is created (mode 0700) if
    /// missing. Blocking (it creates the directory): call it at start-up or
    /// off the async runtime; loading and saving are async.
    pub fn in_dir(dir: &Path, file_name: &str) -> Result<Self, StorageError> {
        mailtls_core::secret_file::ensure_private_dir(dir).map_err(|source| StorageError {
            location: dir.display().to_string(),
            source,
        })?;
        Ok(FileStorage {
            path: dir.join(file_name),
        })
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SnapshotStorage for FileStorage {
    fn load(&self) -> StorageFuture<'_, Option<Vec<u8>>> {
        let path = self.path.clone();
        Box::pin(off_runtime(self.describe(), move || {
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }))
    }

    fn save(&self, snapshot: Vec<u8>) -> StorageFuture<'_, ()> {
        let path = self.path.clone();
        // 0600: the snapshot says who corresponds with whom.
        Box::pin(off_runtime(self.describe(), move || {
            mailtls_core::secret_file::write_atomic(&path, &snapshot, 0o600)
        }))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Runs blocking file work on Tokio's blocking pool when a Tokio runtime is
/// current, so the thread polling the future is never held up by a read,
/// fsync or rename. Without a runtime (a command-line tool driving the
/// future with its own executor) there is no async thread to protect and
/// the work runs in place.
async fn off_runtime<T, F>(location: String, work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!(
                "the blocking file task did not finish: {e}"
            ))),
        },
        Err(_) => work(),
    };
    result.map_err(|source| StorageError { location, source })
}

/// A snapshot kept in memory only (tests, or an embedder that persists
/// elsewhere).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    snapshot: Mutex<Option<Vec<u8>>>,
}

impl SnapshotStorage for MemoryStorage {
    fn load(&self) -> StorageFuture<'_, Option<Vec<u8>>> {
        let result = self
            .snapshot
            .lock()
            .map(|s| s.clone())
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }

    fn save(&self, snapshot: Vec<u8>) -> StorageFuture<'_, ()> {
        let result = self
            .snapshot
            .lock()
            .map(|mut s| *s = Some(snapshot))
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

fn poisoned() -> StorageError {
    StorageError {
        location: "memory".to_owned(),
        source: io::Error::other("lock poisoned by a panicking writer"),
    }
}
