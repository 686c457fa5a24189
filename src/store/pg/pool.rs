//! Connections to the server: the connection settings parsed from a URL (with the
//! password from where libpq would look), a small pool of open connections, and
//! the sorting of the driver's errors into retryable and not.
//!
//! The settings ([`ConnConfig`]) are a value of their own so that a second kind of
//! connection (one that waits for notifications, say) is made from the same URL
//! the same way.
//!
//! # Why a pool of our own
//!
//! The pool is a `Vec` of idle connections behind one `parking_lot` mutex, with a
//! cap on how many it keeps. A caller takes one out (or, if there is none, makes a
//! new one with the lock released), uses it, and gives it back; one that broke is
//! dropped instead, so the next call makes a new one and a restarted server is
//! reached again with nothing reopened by hand. That is all this store needs: its
//! calls are short and its callers block anyway. The pooling crates for the
//! `postgres` driver add threads of their own, health checks on a timer, and
//! configuration this store would not use, for no behaviour it lacks.
//!
//! Locks: `idle`, held only to push or pop a connection, never while connecting
//! or talking to the server.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use postgres::config::Host;
use postgres::{Client, Config, NoTls, Statement};

use crate::store::StoreError;

/// How many idle connections the pool keeps.
const IDLE_CAP: usize = 8;

/// How long making a connection may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP connection may sit silent before the first keepalive probe,
/// unless the URL says (the driver's own default is two hours).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// How long sent data may stay unacknowledged before a TCP connection counts as
/// lost, unless the URL says.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// The run of the server a connection reached (see [`Conn::epoch`]).
const EPOCH: &str = "SELECT pg_postmaster_start_time()::text";

/// Where libpq looks for the server's socket when no host is named (Debian's
/// choice first, then libpq's compiled-in default).
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

/// The settings of a connection, from a `postgres://` or `postgresql://` URL.
#[derive(Clone)]
pub struct ConnConfig {
    config: Config,
    label: String,
}

impl ConnConfig {
    /// Parses `url` as libpq does (both schemes; a host in the authority or as
    /// `?host=`, a socket directory percent-encoded or as a path), filling in
    /// what it leaves out from `PGHOST`, `PGPORT`, `PGUSER` and `PGDATABASE`, and
    /// a missing password from `PGPASSWORD` or the password file (`PGPASSFILE`,
    /// else `~/.pgpass`).
    pub fn parse(url: &str) -> Result<ConnConfig, StoreError> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            let spec = redact(url);
            StoreError::BadSpec {
                why: format!("store {spec:?}: not a PostgreSQL URL: {e}"),
                spec,
            }
        })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    config.host(&h);
                }
                None => {
                    let dir = DEFAULT_SOCKET_DIRS
                        .iter()
                        .find(|d| Path::new(d).is_dir())
                        .unwrap_or(&DEFAULT_SOCKET_DIRS[0]);
                    config.host_path(dir);
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = env("PGPORT").and_then(|p| p.parse::<u16>().ok()) {
                config.port(p);
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").or_else(os_user).unwrap_or_default();
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            if let Some(db) = env("PGDATABASE") {
                config.dbname(&db);
            }
        }
        if config.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD").or_else(|| password_from_file(&config)) {
                config.password(pw);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A peer that vanished from the network is noticed within about a minute
        // (these apply to TCP only; a Unix socket fails at once).
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("anchorfs");
        }
        let label = label_of(&config);
        Ok(ConnConfig { config, label })
    }

    /// The URL as messages name it: user, hosts, ports and database, never the
    /// password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The database named, or the user's name (the server's default).
    pub fn dbname(&self) -> &str {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or_default()
    }

    /// These settings with another database.
    pub fn with_dbname(&self, db: &str) -> ConnConfig {
        let mut config = self.config.clone();
        config.dbname(db);
        let label = label_of(&config);
        ConnConfig { config, label }
    }

    /// Opens a plain connection (no TLS: a Unix socket or a trusted network).
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        self.config.connect(NoTls)
    }
}

/// The name the operating system gives the user running this process.
fn os_user() -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers given, with their sizes.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() || pw.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pw.pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

/// A URL with any password in it replaced, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{hosts}{tail}")
        }
        None => url.to_string(),
    }
}

/// `postgres://USER@HOST[:PORT][,...]/DB`, a socket directory percent-encoded.
fn label_of(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string().replace('/', "%2F"),
            };
            match ports.get(i).or(ports.first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or_default(),
        hosts.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

/// The password libpq's password file gives for the first host, if any: lines
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:`
/// and `\`. A Unix-socket connection matches `localhost` as well as its
/// directory. A file that others may read is ignored, as libpq ignores it.
fn password_from_file(config: &Config) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "password file {} is readable by others: ignored",
            path.display()
        );
        return None;
    }
    let text = fs::read_to_string(&path).ok()?;
    password_in(&text, config)
}

/// The password the password file `text` gives for `config`'s first host.
fn password_in(text: &str, config: &Config) -> Option<String> {
    let hosts = match config.get_hosts().first()? {
        Host::Tcp(h) => vec![h.clone()],
        Host::Unix(d) => vec![d.display().to_string(), "localhost".into()],
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    let user = config.get_user().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let f = pgpass_fields(line)?;
            let ok = |field: &str, want: &str| field == "*" || field == want;
            let host_ok = f[0] == "*" || hosts.iter().any(|h| *h == f[0]);
            (host_ok && ok(&f[1], &port) && ok(&f[2], db) && ok(&f[3], user)).then(|| f[4].clone())
        })
}

/// The five fields of a password-file line, unescaped; `None` for a line with
/// fewer.
fn pgpass_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut()?.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

/// Whether the same call may succeed if tried again: the connection was lost or
/// refused, the server is shutting down or out of connections, or the
/// transaction lost a serialization or deadlock check.
pub fn is_retryable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08")
            || c.starts_with("57P")
            || c.starts_with("53")
            || c == "40001"
            || c == "40P01";
    }
    has_io_source(e)
}

/// Whether the connection that gave `e` is unusable from now on.
fn breaks_connection(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
        None => has_io_source(e),
    }
}

fn has_io_source(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<io::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A driver error as a [`StoreError::Backend`], saying whether a retry may help.
pub fn backend_error(op: impl Into<String>, e: postgres::Error) -> StoreError {
    let retryable = is_retryable(&e);
    StoreError::backend(op, retryable, PgError(e))
}

/// The driver's error, shown with its cause (the server's message, the I/O
/// error), which the driver's own message leaves out.
#[derive(Debug)]
pub struct PgError(pub postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

/// The driver's error with its cause.
pub fn describe(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl std::error::Error for PgError {}

/// One open connection and the statements prepared on it.
pub struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    /// Set when its session is in a state no later call expects (a transaction
    /// that could not be rolled back): it is dropped, never given back.
    pub poisoned: bool,
    /// Which run of the server it reached: the time the server started, which
    /// changes when it restarts (and with it what its unflushed log held).
    pub epoch: Arc<str>,
}

impl Conn {
    /// The driver's client.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// `sql` prepared on this connection (once; later calls reuse it).
    pub fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }
}

/// A small pool of connections made from one [`ConnConfig`].
pub struct Pool {
    config: ConnConfig,
    /// Statements run on every new connection before its first use.
    setup: &'static str,
    idle: Mutex<Vec<Conn>>,
}

/// A connection taken from a [`Pool`], given back when dropped unless it broke.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Whether it came from the idle list (and so may have broken while idle).
    pub reused: bool,
    /// Set when it must not be given back.
    pub broken: bool,
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.poisoned || conn.client.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock();
        if idle.len() < IDLE_CAP {
            idle.push(conn);
        }
    }
}

impl Pool {
    /// A pool for `config`; `setup` runs on each connection it makes.
    pub fn new(config: ConnConfig, setup: &'static str) -> Pool {
        Pool {
            config,
            setup,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The settings its connections are made with.
    pub fn config(&self) -> &ConnConfig {
        &self.config
    }

    /// An idle connection, or a new one.
    pub fn get(&self, op: &dyn Fn() -> String) -> Result<Pooled<'_>, StoreError> {
        let idle = self.idle.lock().pop();
        match idle {
            Some(conn) => Ok(Pooled {
                pool: self,
                conn: Some(conn),
                reused: true,
                broken: false,
            }),
            None => self.fresh(op),
        }
    }

    /// A new connection, never an idle one.
    pub fn fresh(&self, op: &dyn Fn() -> String) -> Result<Pooled<'_>, StoreError> {
        let fail = |e| backend_error(op(), e);
        let mut client = self.config.connect().map_err(fail)?;
        client.batch_execute(self.setup).map_err(fail)?;
        let epoch: String = client
            .query_one(EPOCH, &[])
            .and_then(|row| row.try_get(0))
            .map_err(fail)?;
        Ok(Pooled {
            pool: self,
            conn: Some(Conn {
                client,
                prepared: HashMap::new(),
                poisoned: false,
                epoch: epoch.into(),
            }),
            reused: false,
            broken: false,
        })
    }

    /// Drops every idle connection (after one of them was found broken, the
    /// others likely are too: the server restarted).
    fn drain(&self) {
        let drained = std::mem::take(&mut *self.idle.lock());
        drop(drained);
    }

    /// Runs `f` on a connection. If it fails because an idle connection had
    /// broken meanwhile, runs it once more on a new one. Only for calls that may
    /// be repeated: reads, and puts that insert what is missing.
    pub fn run<T>(
        &self,
        op: &dyn Fn() -> String,
        mut f: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.get(op)?;
        match f(&mut conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                let lost = self.note_failure(&mut conn, &e);
                if !(lost && conn.reused) {
                    return Err(backend_error(op(), e));
                }
                drop(conn);
                log::info!(
                    "{}: the connection to {} was lost ({}); trying once more on a new one",
                    op(),
                    self.config.label,
                    describe(&e)
                );
                let mut conn = self.fresh(op)?;
                f(&mut conn).map_err(|e| {
                    self.note_failure(&mut conn, &e);
                    backend_error(op(), e)
                })
            }
        }
    }

    /// Marks `conn` broken if `e` says it is, emptying the idle list too; returns
    /// whether it was.
    pub fn note_failure(&self, conn: &mut Pooled<'_>, e: &postgres::Error) -> bool {
        let lost = breaks_connection(e) || conn.client.is_closed();
        if lost {
            conn.broken = true;
            self.drain();
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_lines() {
        let f = pgpass_fields(r"h:5432:db:u\:x:p\\w:d").unwrap();
        assert_eq!(f, ["h", "5432", "db", "u:x", r"p\w:d"].map(String::from));
        assert!(pgpass_fields("a:b:c").is_none());
    }

    #[test]
    fn the_first_matching_password_file_line_wins() {
        let text = "# comment\n\
                    otherhost:*:*:*:nope\n\
                    localhost:5433:*:u:socket\n\
                    db.example:5432:app:u:tcp\\:pw\n\
                    *:*:*:*:fallback\n";
        let cfg = |url: &str| -> Config { url.parse().unwrap() };
        let pw = |url: &str| password_in(text, &cfg(url));
        assert_eq!(pw("postgres://u@db.example/app").as_deref(), Some("tcp:pw"));
        assert_eq!(
            pw("postgres://u@db.example/other").as_deref(),
            Some("fallback")
        );
        // A socket directory matches `localhost`.
        assert_eq!(
            pw("postgres://u@%2Frun%2Fpg:5433/x").as_deref(),
            Some("socket")
        );
        assert_eq!(
            pw("postgres://v@%2Frun%2Fpg:5433/x").as_deref(),
            Some("fallback")
        );
        assert_eq!(password_in("h:1:d:u", &cfg("postgres://u@h:1/d")), None);
    }

    #[test]
    fn passwords_stay_out_of_labels() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db?x=1"),
            "postgres://u:***@h:1/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        let c = ConnConfig::parse("postgresql://u:secret@%2Ftmp%2Fs:5433/db").unwrap();
        assert_eq!(c.label(), "postgres://u@%2Ftmp%2Fs:5433/db");
        assert!(!c.label().contains("secret"));
        let c = ConnConfig::parse("postgres:///d?host=/tmp/x&user=v").unwrap();
        assert_eq!(c.label(), "postgres://v@%2Ftmp%2Fx/d");
        assert_eq!(c.with_dbname("e").dbname(), "e");
    }
}
