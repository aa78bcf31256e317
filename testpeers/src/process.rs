//! Pieces every starter shares: free ports, waiting for a listener, a child
//! process killed on drop, and temporary directories daemons can enter.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before it is returned, so another process may take
/// it first; on a quiet test machine that is rare enough.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("local address of a bound socket")
        .port()
}

/// Waits until something accepts TCP connections on `addr`.
///
/// # Panics
///
/// After `limit`, with `what` and whatever `diagnostics` returns (a log).
pub fn wait_for_port(
    addr: SocketAddr,
    limit: Duration,
    what: &str,
    diagnostics: impl Fn() -> String,
) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < limit,
            "{what} did not listen on {addr} within {limit:?}: {}",
            diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed and reaped when dropped (also when the
/// test panics).
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already gone is fine: either way nothing is left running.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory that is root-owned but traversable (mode 0755), for
/// daemons that drop privileges and must reach files below it.
pub fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 on a temporary directory");
    dir
}

/// Writes a private key (or any secret) with mode 0600.
pub fn write_private(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod 0600 {}: {e}", path.display()));
}

/// The first of `dirs` that holds an executable `tool`.
///
/// # Panics
///
/// When none does, naming the package to install.
pub fn find_tool(tool: &str, dirs: &[&str], package: &str) -> PathBuf {
    dirs.iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed (apt-get install -y {package})"))
}
