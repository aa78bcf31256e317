//! Loading a certificate directory.
//!
//! Layouts understood, in every directory below the root (hidden entries,
//! whose name starts with `.`, are skipped: that includes the `..data` and
//! `..2024_…` directories of a Kubernetes secret volume, whose visible files
//! are symlinks into them):
//!
//! - certbot's `live/NAME/`: `fullchain.pem` + `privkey.pem` (its `cert.pem`
//!   and `chain.pem` are then ignored);
//! - a Kubernetes TLS secret: `tls.crt` + `tls.key`;
//! - a pair of files `NAME.crt|.pem|.cer|.cert` + `NAME.key` (or
//!   `NAME.key.pem`, `NAME-key.pem`);
//! - a combined PEM file holding the chain and the key.
//!
//! A certificate file without a key, or one that does not parse, is an error
//! for that file only: the scan goes on and lists every such file in
//! [`Scanned::errors`] (whether a reload then serves the rest is the
//! resolver's [`ReloadPolicy`](crate::resolver::ReloadPolicy)). A key file
//! nobody uses is a warning. A CA certificate (basicConstraints CA:TRUE),
//! with or without its key, is not a server certificate: it is skipped with
//! a warning. Symlinks are followed. Files load in path order, in parallel on
//! all cores.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use mailtls_core::load::{LoadErrorKind, certificates_from_bytes, private_key_from_bytes};
use mailtls_core::{CertificateWithKey, LoadError};

/// How deep below the root directories are searched.
const MAX_DEPTH: usize = 4;

/// The directory itself could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read certificate directory {path}: {source}")]
pub struct DirError {
    /// The directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// What a directory scan found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Loaded certificates with their source label, in path order.
    pub certificates: Vec<(CertificateWithKey, String)>,
    /// Files that failed to load, every one of them.
    pub errors: Vec<LoadError>,
    /// Things worth telling the operator that did not fail the scan.
    pub warnings: Vec<String>,
}

/// One certificate to load: a chain file and a key file (the same path for
/// a combined file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    cert: PathBuf,
    key: Option<PathBuf>,
}

const CERT_EXTENSIONS: [&str; 4] = ["crt", "pem", "cer", "cert"];

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Lists the visible regular files (after following symlinks) of every
/// directory below `root`, grouped by directory.
fn list_files(root: &Path) -> Result<BTreeMap<PathBuf, BTreeSet<String>>, DirError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|source| DirError {
            path: dir.clone(),
            source,
        })?;
        let mut files = BTreeSet::new();
        for entry in rd.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_hidden(&name) {
                continue;
            }
            let path = entry.path();
            // metadata() follows symlinks; a dangling link is skipped.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            } else if meta.is_file() {
                files.insert(name);
            }
        }
        out.insert(dir, files);
    }
    Ok(out)
}

fn key_partner(files: &BTreeSet<String>, name: &str) -> Option<String> {
    let (stem, ext) = name.rsplit_once('.')?;
    if !CERT_EXTENSIONS.contains(&ext) {
        return None;
    }
    [
        format!("{stem}.key"),
        format!("{stem}.key.pem"),
        format!("{stem}-key.pem"),
    ]
    .into_iter()
    .find(|k| k != name && files.contains(k))
}

fn plan(dirs: &BTreeMap<PathBuf, BTreeSet<String>>, warnings: &mut Vec<String>) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (dir, files) in dirs {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for (cert, key, also) in [
            (
                "fullchain.pem",
                "privkey.pem",
                &["cert.pem", "chain.pem"][..],
            ),
            ("tls.crt", "tls.key", &[][..]),
        ] {
            if files.contains(cert) && files.contains(key) {
                jobs.push(Job {
                    cert: dir.join(cert),
                    key: Some(dir.join(key)),
                });
                used.insert(cert);
                used.insert(key);
                used.extend(also.iter().copied());
            }
        }
        let mut keys_taken = BTreeSet::new();
        for name in files {
            if used.contains(name.as_str()) {
                continue;
            }
            let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            if ext == "key"
                || name.ends_with(".key.pem")
                || name.ends_with("-key.pem")
                || name == "privkey.pem"
            {
                continue; // keys are taken by their certificate below
            }
            if !CERT_EXTENSIONS.contains(&ext) {
                continue;
            }
            let key = key_partner(files, name);
            if let Some(k) = &key {
                keys_taken.insert(k.clone());
            }
            jobs.push(Job {
                cert: dir.join(name),
                key: key.map(|k| dir.join(k)),
            });
        }
        for name in files {
            let is_key =
                name.ends_with(".key") || name.ends_with(".key.pem") || name.ends_with("-key.pem");
            if is_key && !keys_taken.contains(name) && !used.contains(name.as_str()) {
                warnings.push(format!(
                    "{}: key file with no certificate beside it",
                    dir.join(name).display()
                ));
            }
        }
    }
    jobs.sort();
    jobs
}

enum Outcome {
    Loaded(Box<CertificateWithKey>, String),
    /// A PEM file that holds only a key (a key named unusually): not an error.
    KeyOnly(String),
    /// A CA certificate (with or without its key): not served, not an error.
    Ca(String),
    Failed(LoadError),
}

/// Whether the leaf of a chain says it is a CA. A leaf that does not parse
/// is not one (the load reports it).
fn leaf_is_ca(chain: &[rustls::pki_types::CertificateDer<'_>]) -> bool {
    chain
        .first()
        .and_then(|leaf| mailtls_core::CertInfo::from_der(leaf).ok())
        .is_some_and(|info| info.is_ca)
}

fn load_job(job: &Job) -> Outcome {
    let source = job.cert.display().to_string();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| LoadError {
            source_name: p.display().to_string(),
            kind: LoadErrorKind::Io(e),
        })
    };
    let result = (|| {
        let cert_bytes = read(&job.cert)?;
        let key_bytes = match &job.key {
            Some(k) => read(k)?,
            None => cert_bytes.clone(),
        };
        let chain = match certificates_from_bytes(&cert_bytes, &source) {
            Ok(c) => c,
            Err(e) if matches!(e.kind, LoadErrorKind::NoCertificate) && job.key.is_none() => {
                if private_key_from_bytes(&cert_bytes, &source).is_ok() {
                    return Ok(None);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let key_source = job
            .key
            .as_ref()
            .map_or(source.clone(), |k| k.display().to_string());
        let key = match private_key_from_bytes(&key_bytes, &key_source) {
            Ok(k) => k,
            // A CA certificate on its own (a chain file beside the server
            // certificates) is not missing a key: it is not ours to serve.
            Err(_) if leaf_is_ca(&chain) => return Ok(Some(None)),
            Err(e) => return Err(e),
        };
        CertificateWithKey::new(chain, key, &source).map(|c| Some(Some(c)))
    })();
    match result {
        Ok(Some(Some(c))) if c.info.is_ca => Outcome::Ca(source),
        Ok(Some(Some(c))) => Outcome::Loaded(Box::new(c), source),
        Ok(Some(None)) => Outcome::Ca(source),
        Ok(None) => Outcome::KeyOnly(source),
        Err(e) => Outcome::Failed(e),
    }
}

/// Scans `root` and loads every certificate found; see the module docs.
pub fn scan_dir(root: &Path) -> Result<Scanned, DirError> {
    let dirs = list_files(root)?;
    let mut scanned = Scanned::default();
    let jobs = plan(&dirs, &mut scanned.warnings);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len().max(1));
    let chunk = jobs.len().div_ceil(threads).max(1);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(load_job).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Outcome::Failed(LoadError {
                        source_name: root.display().to_string(),
                        kind: LoadErrorKind::Pem("loader thread panicked".into()),
                    })]
                })
            })
            .collect()
    });
    for o in outcomes {
        match o {
            Outcome::Loaded(c, s) => scanned.certificates.push((*c, s)),
            Outcome::KeyOnly(s) => scanned
                .warnings
                .push(format!("{s}: holds a key but no certificate")),
            Outcome::Ca(s) => scanned.warnings.push(format!(
                "{s}: a CA certificate (basicConstraints CA:TRUE), not a server certificate; skipped"
            )),
            Outcome::Failed(e) => scanned.errors.push(e),
        }
    }
    Ok(scanned)
}

/// A cheap fingerprint of what a scan would see: every visible file's path
/// with the size, modification time and inode of what it resolves to. A
/// symlink swap (certbot renew, a Kubernetes secret update) changes it.
pub fn dir_signature(root: &Path) -> Result<u64, DirError> {
    let dirs = list_files(root)?;
    let mut h = std::hash::DefaultHasher::new();
    for (dir, files) in &dirs {
        for f in files {
            let p = dir.join(f);
            p.hash(&mut h);
            if let Ok(m) = std::fs::metadata(&p) {
                m.len().hash(&mut h);
                m.modified().ok().hash(&mut h);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    m.ino().hash(&mut h);
                    m.ctime().hash(&mut h);
                    m.ctime_nsec().hash(&mut h);
                }
            }
        }
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec};

    fn made(name: &str) -> mailtls_core::maker::MadeCertificate {
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        ca.issue(&ServerCertSpec::new(DnsName::parse(name).unwrap()))
            .unwrap()
    }

    #[test]
    fn understands_the_layouts() {
        let t = private_tempdir();
        let root = t.path();
        // pair
        made("pair.example").write_files(root, "pair").unwrap();
        // combined
        let c = made("combined.example");
        std::fs::write(
            root.join("combined.pem"),
            format!("{}{}", c.chain_pem(), c.key_pem()),
        )
        .unwrap();
        // certbot
        let live = root.join("live/cb.example");
        std::fs::create_dir_all(&live).unwrap();
        let cb = made("cb.example");
        std::fs::write(live.join("fullchain.pem"), cb.chain_pem()).unwrap();
        std::fs::write(live.join("cert.pem"), &cb.cert_pem).unwrap();
        std::fs::write(live.join("chain.pem"), &cb.issuer_pem).unwrap();
        std::fs::write(live.join("privkey.pem"), cb.key_pem()).unwrap();
        // kubernetes
        let k8s = root.join("k8s");
        let data = k8s.join("..2026_01_01");
        std::fs::create_dir_all(&data).unwrap();
        let k = made("k8s.example");
        std::fs::write(data.join("tls.crt"), k.chain_pem()).unwrap();
        std::fs::write(data.join("tls.key"), k.key_pem()).unwrap();
        std::os::unix::fs::symlink("..2026_01_01", k8s.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/tls.crt", k8s.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", k8s.join("tls.key")).unwrap();
        // stray key and readme
        std::fs::write(root.join("orphan.key"), made("x.example").key_pem()).unwrap();
        std::fs::write(root.join("README.txt"), "hello").unwrap();

        let s = scan_dir(root).unwrap();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let mut names: Vec<String> = s
            .certificates
            .iter()
            .map(|(c, _)| c.info.dns_names[0].clone())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cb.example",
                "combined.example",
                "k8s.example",
                "pair.example"
            ]
        );
        assert!(
            s.warnings.iter().any(|w| w.contains("orphan.key")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn certificate_without_key_is_an_error() {
        let t = private_tempdir();
        std::fs::write(t.path().join("lonely.crt"), made("a.example").cert_pem).unwrap();
        let s = scan_dir(t.path()).unwrap();
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].to_string().contains("lonely.crt"));
    }

    #[test]
    fn signature_changes_on_symlink_swap() {
        let t = private_tempdir();
        let root = t.path();
        std::fs::write(root.join("a-v1.pem"), "one").unwrap();
        std::fs::write(root.join("a-v2.pem"), "two!").unwrap();
        let sub = root.join("live");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink(root.join("a-v1.pem"), sub.join("cert.pem")).unwrap();
        let before = dir_signature(&sub).unwrap();
        assert_eq!(before, dir_signature(&sub).unwrap());
        std::os::unix::fs::symlink(root.join("a-v2.pem"), sub.join("tmp")).unwrap();
        std::fs::rename(sub.join("tmp"), sub.join("cert.pem")).unwrap();
        assert_ne!(before, dir_signature(&sub).unwrap());
    }

    /// A temporary directory only its owner can read: where private keys may go
    /// (the maker refuses directories others can read).
    fn private_tempdir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap()
    }
}
