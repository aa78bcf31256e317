//! Where the partner store keeps its state: a small trait over one snapshot,
//! with a data-directory default and an in-memory one.
//!
//! The store hands over a whole snapshot each time it changes, so a backend
//! only has to replace one blob atomically; a cluster can keep that blob in a
//! shared database without the store knowing.

use std::io;
use std::path::{Path, PathBuf};
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

/// Keeps the serialised snapshot of a store.
pub trait SnapshotStorage: Send + Sync {
    /// The last saved snapshot, or `None` when nothing was ever saved.
    fn load(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces the snapshot, all at once or not at all.
    fn save(&self, snapshot: &[u8]) -> Result<(), StorageError>;
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
    /// missing.
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
    fn load(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StorageError {
                location: self.describe(),
                source,
            }),
        }
    }

    fn save(&self, snapshot: &[u8]) -> Result<(), StorageError> {
        // 0600: the snapshot says who corresponds with whom.
        mailtls_core::secret_file::write_atomic(&self.path, snapshot, 0o600).map_err(|source| {
            StorageError {
                location: self.describe(),
                source,
            }
        })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A snapshot kept in memory only (tests, or an embedder that persists
/// elsewhere).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    snapshot: Mutex<Option<Vec<u8>>>,
}

impl SnapshotStorage for MemoryStorage {
    fn load(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .snapshot
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
            .cloned())
    }

    fn save(&self, snapshot: &[u8]) -> Result<(), StorageError> {
        *self.snapshot.lock().map_err(|_| poisoned())? = Some(snapshot.to_vec());
        Ok(())
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
