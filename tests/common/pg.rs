//! A fresh database per test on the PostgreSQL server that `ANCHORFS_TEST_PG`
//! names (a URL), dropped when the test ends, so tests run in parallel.
//! `scripts/pg-test-cluster.sh start DIR` starts a throwaway server and prints
//! such a URL. Without one the tests fail, unless `ANCHORFS_SKIP_PG=1` skips
//! them on purpose.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use anchorfs::store::pg::ConnConfig;

/// The server's URL, or `None` when the tests are skipped on purpose; fails the
/// test when neither is set.
pub fn server() -> Option<String> {
    if std::env::var("ANCHORFS_SKIP_PG").as_deref() == Ok("1") {
        eprintln!("ANCHORFS_SKIP_PG=1: skipping a PostgreSQL test");
        return None;
    }
    match std::env::var("ANCHORFS_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => panic!(
            "ANCHORFS_TEST_PG is not set: the PostgreSQL tests need a server. Start a \
             throwaway one with\n  export ANCHORFS_TEST_PG=$(scripts/pg-test-cluster.sh start \
             /tmp/anchorfs-pg)\n(and scripts/pg-test-cluster.sh stop /tmp/anchorfs-pg after), \
             or set ANCHORFS_SKIP_PG=1 to skip them on purpose"
        ),
    }
}

/// `url` with its database replaced by `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with ://");
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = main.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{db}{query}")
}

/// A database made for one test and dropped with it.
pub struct TestDb {
    /// The server's URL as given.
    pub server: String,
    /// The database's name.
    pub name: String,
    /// The database's URL.
    pub url: String,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    /// A new, empty database; `None` when PostgreSQL tests are skipped.
    pub fn new() -> Option<TestDb> {
        let server = server()?;
        let name = format!(
            "anchorfs_test_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = admin(&server);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .and_then(|()| admin.batch_execute(&format!("CREATE DATABASE {name}")))
            .unwrap_or_else(|e| panic!("creating database {name} on {server}: {e:?}"));
        let url = with_db(&server, &name);
        Some(TestDb { server, name, url })
    }

    /// A new connection to this database.
    pub fn client(&self) -> postgres::Client {
        connect(&self.url)
    }

    /// Ends every connection to this database but the caller's own (as a
    /// server restart would); returns how many it ended.
    pub fn terminate_connections(&self) -> i64 {
        let mut admin = admin(&self.server);
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .expect("terminating connections");
        row.get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut admin = admin(&self.server);
        if let Err(e) = admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("dropping test database {}: {e:?}", self.name);
        }
    }
}

/// A connection to `url`, made as the store makes its own.
pub fn connect(url: &str) -> postgres::Client {
    ConnConfig::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .connect()
        .unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"))
}

/// A connection to the server's own database, for making and dropping others.
fn admin(server: &str) -> postgres::Client {
    connect(server)
}

/// Whether PostgreSQL tests are skipped on purpose (`ANCHORFS_SKIP_PG=1`), for
/// tests that start a server of their own and so need no `ANCHORFS_TEST_PG`.
pub fn skipped() -> bool {
    if std::env::var("ANCHORFS_SKIP_PG").as_deref() == Ok("1") {
        eprintln!("ANCHORFS_SKIP_PG=1: skipping a PostgreSQL test");
        return true;
    }
    false
}

/// A PostgreSQL server of one test's own, made by `scripts/pg-test-cluster.sh`
/// in a temp dir and listening on a socket there, for tests that stop and start
/// it (never the shared server, which other tests use at the same time).
/// Stopped and removed on drop.
pub struct OwnServer {
    dir: tempfile::TempDir,
    /// The server's URL (its `postgres` database).
    pub url: String,
}

/// Runs the cluster script with `cmd` on `dir`; returns its stdout.
fn cluster(cmd: &str, dir: &std::path::Path) -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(cmd)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "pg-test-cluster.sh {cmd} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl OwnServer {
    /// Makes a cluster and starts it.
    pub fn start() -> OwnServer {
        // A short path: the socket's path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("afs-pg")
            .tempdir_in("/tmp")
            .expect("temp dir for a server");
        let url = cluster("start", dir.path());
        OwnServer { dir, url }
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`):
    /// its processes exit and every connection to it is closed.
    pub fn kill(&self) {
        cluster("kill", self.dir.path());
    }

    /// Starts the server again, on the same socket; returns once it accepts
    /// connections.
    pub fn restart(&self) {
        cluster("start", self.dir.path());
    }

    /// The server's log, for messages when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster.sh");
        let _ = std::process::Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
