//! Administration of the gateway's partner store: `mailtls-server smime
//! partners add|list|disable|enable|delete` and `smime approvals
//! list|approve|reject`.
//!
//! A running server listens on a Unix socket in the gateway directory
//! (`<smime dir>/admin.sock`). The directory is the server user's alone
//! (mode 0700) and the socket is 0600, so the file system decides who may
//! administer the gateway: no password, nothing on the network. The
//! command sends one JSON request line and reads one JSON reply line; the
//! server applies the change to the store it serves from, under the
//! gateway's write lock, so the next message sees it and no harvest
//! running at the same moment is lost (editing `partners.json` behind the
//! server's back would race with it).
//!
//! When no server answers on the socket, the command opens the store from
//! the directory and changes it there; a server started later loads it.
//!
//! The actions themselves are the library's
//! [`mailtls_smime::gateway::PartnerStore`] calls: `upload`, `list`,
//! `disable`, `enable`, `delete`, `pending`, `approve`, `reject`.

#[cfg(unix)]
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::sync::Arc;
#[cfg(unix)]
use std::time::Duration;
use std::time::SystemTime;

use base64::Engine as _;
use mailtls_core::DnsName;
use mailtls_smime::gateway::{Binding, Listed, PartnerStore, StoreError};
use serde::{Deserialize, Serialize};

use super::{SmimePath, SmimePathError, block_on};
use crate::config::Config;

/// The socket's file name in the gateway directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// The longest request line the server reads (a certificate upload with a
/// chain fits many times over).
#[cfg(unix)]
const MAX_REQUEST: u64 = 1024 * 1024;

/// How long one connection may take to send its request.
#[cfg(unix)]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One administrative action, as sent over the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AdminRequest {
    /// List the partner certificates.
    PartnersList,
    /// Add the certificates of a PEM or DER upload: under the addresses
    /// they name, or (with `domain`) for every address of that domain.
    PartnersAdd {
        /// The upload, base64 (PEM text or DER bytes).
        certificate: String,
        /// Where it came from, for error messages (a file name).
        name: String,
        /// A domain certificate for this domain, instead of by address.
        domain: Option<String>,
    },
    /// Stop using a certificate (it stays known, and is not harvested
    /// again).
    PartnersDisable {
        /// The fingerprint, or a unique start of it.
        fingerprint: String,
    },
    /// Use a disabled certificate again.
    PartnersEnable {
        /// The fingerprint, or a unique start of it.
        fingerprint: String,
    },
    /// Forget a certificate (a later signature may harvest it again).
    PartnersDelete {
        /// The fingerprint, or a unique start of it.
        fingerprint: String,
    },
    /// List the harvested certificates awaiting approval.
    ApprovalsList,
    /// Move a waiting certificate into the store.
    ApprovalsApprove {
        /// The fingerprint, or a unique start of it.
        fingerprint: String,
    },
    /// Drop a waiting certificate.
    ApprovalsReject {
        /// The fingerprint, or a unique start of it.
        fingerprint: String,
    },
}

/// The answer to an [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// Whether the action was done.
    pub ok: bool,
    /// What was done (a listing, a confirmation) or why not.
    pub text: String,
}

impl AdminRequest {
    /// A `partners add` request for the certificate file `path` (read
    /// here, so a server need not be able to read the operator's files).
    pub fn add_file(path: &Path, domain: Option<String>) -> Result<Self, SmimePathError> {
        let bytes = std::fs::read(path)
            .map_err(|e| SmimePathError::Admin(format!("{}: {e}", path.display())))?;
        Ok(AdminRequest::PartnersAdd {
            certificate: base64::engine::general_purpose::STANDARD.encode(bytes),
            name: path.display().to_string(),
            domain,
        })
    }
}

fn store_error(path: &SmimePath, source: StoreError) -> SmimePathError {
    SmimePathError::PartnerStore {
        path: path.dir().join("partners.json"),
        source,
    }
}

impl SmimePath {
    /// Carries out `request` on this gateway's partner store and describes
    /// the result. Blocking: takes the gateway's write lock and waits for
    /// the store's save; call it on a blocking thread.
    pub fn admin(&self, request: &AdminRequest) -> Result<String, SmimePathError> {
        match request {
            AdminRequest::PartnersList => return Ok(self.status().partners_text()),
            AdminRequest::ApprovalsList => return Ok(self.status().pending_text()),
            _ => {}
        }
        let now = SystemTime::now();
        let err = |e| store_error(self, e);
        let find =
            |store: &PartnerStore, given: &str, listed| store.find(given, listed).map_err(err);
        let mut loaded = self.write()?;
        let partners = &mut loaded.gateway.partners;
        let text = match request {
            AdminRequest::PartnersList | AdminRequest::ApprovalsList => String::new(),
            AdminRequest::PartnersAdd {
                certificate,
                name,
                domain,
            } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(certificate.trim())
                    .map_err(|e| {
                        SmimePathError::Admin(format!("{name}: the upload is not base64: {e}"))
                    })?;
                let binding = match domain {
                    Some(d) => Binding::Domain(
                        DnsName::parse(d)
                            .map_err(|e| SmimePathError::Admin(format!("--domain {d:?}: {e}")))?,
                    ),
                    None => Binding::Addresses,
                };
                let added =
                    block_on(partners.upload(&bytes, name, binding.clone(), now)).map_err(err)?;
                let whom = match &binding {
                    Binding::Domain(d) => format!("for every address of {d}"),
                    Binding::Addresses => "for the addresses it names".to_owned(),
                };
                added
                    .iter()
                    .map(|fp| format!("added {fp} {whom}\n"))
                    .collect()
            }
            AdminRequest::PartnersDisable { fingerprint } => {
                let fp = find(partners, fingerprint, Listed::Stored)?;
                block_on(partners.disable(&fp)).map_err(err)?;
                format!("disabled {fp}\n")
            }
            AdminRequest::PartnersEnable { fingerprint } => {
                let fp = find(partners, fingerprint, Listed::Stored)?;
                block_on(partners.enable(&fp)).map_err(err)?;
                format!("enabled {fp}\n")
            }
            AdminRequest::PartnersDelete { fingerprint } => {
                let fp = find(partners, fingerprint, Listed::Stored)?;
                block_on(partners.delete(&fp)).map_err(err)?;
                format!("deleted {fp}\n")
            }
            AdminRequest::ApprovalsApprove { fingerprint } => {
                let fp = find(partners, fingerprint, Listed::Pending)?;
                block_on(partners.approve(&fp, now)).map_err(err)?;
                format!("approved {fp}: it is used from now on\n")
            }
            AdminRequest::ApprovalsReject { fingerprint } => {
                let fp = find(partners, fingerprint, Listed::Pending)?;
                block_on(partners.reject(&fp)).map_err(err)?;
                format!("rejected {fp}\n")
            }
        };
        // The result names the certificate; the request may hold a whole
        // upload, too much for a log line.
        tracing::info!(
            result = %text.trim_end(),
            "S/MIME partner store changed by the administrator"
        );
        Ok(text)
    }
}

/// Where a configuration's gateway keeps its admin socket.
pub fn socket_path(config: &Config) -> PathBuf {
    config
        .smime
        .dir_in(&config.server.data_dir)
        .join(SOCKET_NAME)
}

/// Runs `request` against the gateway of `config`: through the running
/// server's socket when one answers, else on the store in the gateway
/// directory. Returns the text to show. Blocking. Without Unix sockets
/// (not on Unix) only the files are changed, so a running server sees the
/// change at its next reload.
pub fn run(config: &Config, request: &AdminRequest) -> Result<String, SmimePathError> {
    #[cfg(unix)]
    {
        let socket = socket_path(config);
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(stream) => return ask(stream, request, &socket),
            // No socket, or one left by a server that is gone: no server
            // runs on this directory, so the files are ours to change.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                return Err(SmimePathError::Admin(format!("{}: {e}", socket.display())));
            }
        }
    }
    super::open_existing(config)?.admin(request)
}

/// Sends one request over a connected socket and reads the reply.
#[cfg(unix)]
fn ask(
    mut stream: std::os::unix::net::UnixStream,
    request: &AdminRequest,
    socket: &Path,
) -> Result<String, SmimePathError> {
    let err = |what: String| SmimePathError::Admin(format!("{}: {what}", socket.display()));
    let timeout = Some(Duration::from_secs(60));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| err(e.to_string()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| err(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| err(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_line(&mut reply)
        .map_err(|e| err(e.to_string()))?;
    let reply: AdminReply = serde_json::from_str(&reply)
        .map_err(|e| err(format!("the server's reply is not understood: {e}")))?;
    if reply.ok {
        Ok(reply.text)
    } else {
        Err(SmimePathError::Admin(reply.text))
    }
}

/// Serves the admin socket of `smime` until `shutdown`, then removes it.
/// Fails when another process already answers on the socket (two servers
/// on one gateway directory would overwrite each other's store).
#[cfg(unix)]
pub(crate) fn spawn(
    smime: Arc<SmimePath>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SmimePathError> {
    use std::os::unix::fs::PermissionsExt;
    let socket = smime.dir().join(SOCKET_NAME);
    let io = |e: std::io::Error| SmimePathError::Admin(format!("{}: {e}", socket.display()));
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(SmimePathError::Admin(format!(
            "{}: another server administers this S/MIME gateway directory",
            socket.display()
        )));
    }
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(io)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    tracing::info!(socket = %socket.display(), "S/MIME admin socket listening");
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = crate::stream::shutdown_signalled(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(Arc::clone(&smime), stream));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "S/MIME admin socket accept failed");
                        // A persistent failure (out of descriptors) must
                        // not spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&socket);
    }))
}

/// One admin connection: a request line in, a reply line out.
#[cfg(unix)]
async fn serve(smime: Arc<SmimePath>, stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => AdminReply {
            ok: false,
            text: "no request within 30 seconds".to_owned(),
        },
        Ok(Err(e)) => AdminReply {
            ok: false,
            text: format!("reading the request: {e}"),
        },
        Ok(Ok(_)) => match serde_json::from_str::<AdminRequest>(&line) {
            Err(e) => AdminReply {
                ok: false,
                text: format!("not an admin request: {e}"),
            },
            Ok(request) => {
                let result = tokio::task::spawn_blocking(move || smime.admin(&request)).await;
                match result {
                    Ok(Ok(text)) => AdminReply { ok: true, text },
                    Ok(Err(e)) => AdminReply {
                        ok: false,
                        text: e.to_string(),
                    },
                    Err(e) => AdminReply {
                        ok: false,
                        text: format!("the admin task failed: {e}"),
                    },
                }
            }
        },
    };
    let Ok(mut bytes) = serde_json::to_vec(&reply) else {
        return;
    };
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn gateway(data_dir: &Path) -> Arc<SmimePath> {
        let mut section = Config::embedded().unwrap().smime;
        section.enabled = true;
        Arc::new(SmimePath::open(&section, data_dir, Vec::new()).unwrap())
    }

    /// Sends `line` on the socket and reads the reply line.
    async fn exchange(socket: &Path, line: &[u8]) -> AdminReply {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        stream.write_all(line).await.unwrap();
        let mut reply = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut reply)
            .await
            .unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    #[tokio::test]
    async fn one_server_per_directory_and_bad_requests_get_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (stop, _) = tokio::sync::watch::channel(false);
        let first = gateway(dir.path());
        let task = spawn(Arc::clone(&first), stop.subscribe()).unwrap();
        let socket = first.dir().join(SOCKET_NAME);
        // A second server on the same gateway directory is refused the
        // socket while the first answers on it.
        let second = spawn(gateway(dir.path()), stop.subscribe()).unwrap_err();
        assert!(second.to_string().contains("another server"), "{second}");

        let reply = exchange(&socket, b"{\"action\":\"partners-explode\"}\n").await;
        assert!(
            !reply.ok && reply.text.contains("not an admin request"),
            "{reply:?}"
        );
        let reply = exchange(
            &socket,
            b"{\"action\":\"partners-disable\",\"fingerprint\":\"zz\"}\n",
        )
        .await;
        assert!(!reply.ok && reply.text.contains("\"zz\""), "{reply:?}");
        let reply = exchange(&socket, b"{\"action\":\"partners-list\"}\n").await;
        assert!(
            reply.ok && reply.text.contains("partner certificates: 0"),
            "{reply:?}"
        );

        // Stopping removes the socket; a later server binds again.
        stop.send(true).unwrap();
        task.await.unwrap();
        assert!(!socket.exists());
        let (stop, _) = tokio::sync::watch::channel(false);
        let again = spawn(gateway(dir.path()), stop.subscribe()).unwrap();
        stop.send(true).unwrap();
        again.await.unwrap();
    }
}
