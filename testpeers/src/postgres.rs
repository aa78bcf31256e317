//! A PostgreSQL server of its own for a test: `initdb` in a temporary
//! directory, `pg_ctl start` on a free loopback port, stopped and removed on
//! drop. PostgreSQL refuses to run as root, so under root the server runs
//! as an unprivileged system user this module creates once
//! (`mailtls-pg`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::process::{find_tool, free_port};

/// The system user the server runs as when the tests run as root.
const USER: &str = "mailtls-pg";

/// A running PostgreSQL server; stopped and its files removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
}

/// PostgreSQL's binaries: Debian keeps them per major version.
fn bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    let dirs: Vec<String> = candidates
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .chain(["/usr/local/bin".to_owned(), "/usr/bin".to_owned()])
        .collect();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    find_tool("pg_ctl", &dirs, "postgresql")
        .parent()
        .expect("pg_ctl has a directory")
        .to_path_buf()
}

fn is_root() -> bool {
    // The effective uid of this process, from procfs (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Creates the unprivileged user once per process (and tolerates another
/// process having created it meanwhile).
fn ensure_user() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = Command::new("id")
            .arg("-u")
            .arg(USER)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ])
                .output()
                .expect("running useradd");
            // 9: the user exists (a parallel test created it first).
            assert!(
                out.status.success() || out.status.code() == Some(9),
                "useradd {USER}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    USER
}

impl Postgres {
    /// Starts a server with one database, `mailtls`, and a superuser,
    /// `mailtls`, that logs in without a password from loopback.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed or does not start, with its log.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let run_as = is_root().then(ensure_user);
        let dir = tempfile::tempdir().expect("temporary directory for PostgreSQL");
        if let Some(user) = run_as {
            chown(dir.path(), user);
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 on the PostgreSQL directory");
        let pg = Postgres {
            port: free_port(),
            bin,
            run_as,
            dir,
        };
        pg.run_ok(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                "mailtls",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=60",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.log().display().to_string();
        let data = pg.data().display().to_string();
        pg.run_ok(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
        pg.run_ok(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "mailtls",
                "mailtls",
            ],
        );
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"))
    }

    fn run_ok(&self, tool: &str, args: &[&str]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for database `mailtls` as user `mailtls`.
    pub fn url(&self) -> String {
        format!("postgresql://mailtls@127.0.0.1:{}/mailtls", self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Runs SQL with `psql` (for tests that inspect or tamper with state).
    ///
    /// # Panics
    ///
    /// When psql fails, with its output.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "mailtls",
                "-d",
                "mailtls",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: nothing in a test database needs a clean shutdown.
        let data = self.data().display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

fn chown(path: &Path, user: &str) {
    let out = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(path)
        .output()
        .expect("running chown");
    assert!(
        out.status.success(),
        "chown {user} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
