//! A store in a PostgreSQL database, in the tables of Go's `store/pg`, so that
//! a database either implementation made is read and extended by the other.
//!
//! The specs `postgres://USER@HOST[:PORT]/DB` and `postgresql://...` open it,
//! with libpq's URL forms: a Unix-socket directory as the host, percent-encoded
//! (`postgres://user@%2Fvar%2Frun%2Fpostgresql/db`) or as a parameter
//! (`postgres:///db?host=/tmp/sock`). The password comes from the URL,
//! `PGPASSWORD` or the password file ([`ConnConfig::parse`]); it is never needed
//! on a command line. Connections are plain (no TLS): a local socket or a
//! trusted network.
//!
//! # Tables
//!
//! Go's `blobs (ref, data)` and `anchor_map_ref (ref, singleton)`, made with
//! Go's own DDL ([`GO_SCHEMA`]); this store's `anchorfs_written` (write times,
//! for gc), `anchorfs_sync` and `anchorfs_settings` (the store's settings, in
//! `settings.rs`) ([`OUR_SCHEMA`]). Opening checks every table of
//! those names against the schema and refuses a database where one differs,
//! changing nothing ([`StoreError::NotAStore`]). [`OpenMode::Create`] makes what
//! is missing; [`OpenMode::Existing`] refuses a database without Go's tables
//! (this store's own it makes in either mode, so a database Go made opens as it
//! is). A missing database is not made: that is the server's administrator's.
//!
//! Values the server compresses (past about 2 KB) this store's connections
//! compress with LZ4 where the server has it, a session setting ([`SETUP`]):
//! an anchor's history, rewritten whole by each new version, costs the server a
//! third less time per update than with its default, pglz.
//!
//! # The compare-and-swap
//!
//! As Go does it: with no map yet, `INSERT` the one row (a second insert
//! violates the row's unique, always-true `singleton`: a conflict); otherwise
//! `UPDATE anchor_map_ref SET ref = new WHERE ref = old`, where no row updated
//! is a conflict. Under read committed, a concurrent update of the same row
//! makes the second wait for the first and then find that `ref` no longer
//! matches. If the connection is lost during the swap, the outcome is not known;
//! it is then read back on a new connection: `new` means the swap happened,
//! `old` that it did not (the conditional update is then tried once more there,
//! which is safe because it is conditional), anything else that another writer
//! moved the ref (a conflict).
//!
//! # Durability
//!
//! Each connection runs with `synchronous_commit = off` by default, so a put
//! returns once its rows are committed and visible, without waiting for the
//! server to flush its write-ahead log. The swap (and [`Store::sync`]) commits
//! with `synchronous_commit` on for its transaction (`SET LOCAL`, or in the swap's
//! one statement `set_config(.., true)`): its commit returns only once the log
//! is flushed up to its commit record, and the new ref becomes visible only
//! after that flush. The log is one sequence for the whole server, written and
//! flushed in order (PostgreSQL's documentation on asynchronous commit: a
//! synchronous commit waits for its log records to reach disk, and records are
//! flushed in the order they were written). A put that returned before the swap
//! was called has its commit record earlier in that sequence than the swap's,
//! whichever connection or process made it, so the swap's flush covers it: no
//! map is visible that reaches a blob a crash can lose. A blob lost in a crash
//! before any swap reached it is simply not there, as if never put. The swap's
//! transaction is where a notification of the new ref would be sent, so that it
//! goes out only if the swap commits. The nodes an update made for the new map
//! ([`AnchorStore::put_and_swap`]) are put in that same transaction, in the same
//! message, so an update costs the reading of the ref and one round trip.
//!
//! That order holds within one run of the server only. A server that crashes
//! and restarts between a put and the swap that anchors it (a file being
//! written through a mount while the server restarts, its early chunks put
//! before) has lost the put's rows, and the swap's flush, in the new run's log,
//! covers nothing of the old one. So the store keeps each blob it put until a
//! flushed commit on the same run of the server (a swap or [`Store::sync`])
//! covers it; each connection knows its run by the server's start time. A
//! flushed commit on a later run puts the kept blobs of earlier runs again, in
//! its own transaction, before it commits. What is kept is bounded: past
//! `UNFLUSHED_CAP` bytes a put ends with a flush of its own.
//!
//! # Connections
//!
//! A small pool of our own (`pg/pool.rs`). Calls that may be repeated (reads,
//! puts, which only add what is missing) are run once more on a new connection
//! when a pooled one turns out to have broken while idle, so a restarted server
//! is reconnected to without a remount. Failures are [`StoreError::Backend`],
//! retryable where trying again may help (a lost or refused connection, a server
//! shutting down, a serialization failure).
//!
//! Locks: the pool's `idle` (see `pg/pool.rs`) and the store's `unflushed`,
//! each held only to add, take or drop entries; none is held across a query.

mod listen;
mod pool;
mod schema;
mod settings;

pub use listen::CHANNEL;
pub use pool::{ConnConfig, PgError};
pub use schema::{GO_SCHEMA, OUR_SCHEMA};

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use self::pool::{backend_error, Conn, Pool};
use super::{
    copy_blob_into, verified, verified_slice, AnchorGetter, AnchorStore, DeletingStore, Getter,
    MapWatch, OpenMode, Opened, Store, StoreError, StoreSettings, MAX_BLOB_SIZE,
};
use crate::blob::{Blob, Ref};

/// Run on every new connection: puts commit without waiting for a log flush
/// (see the module docs for why that is safe), and values the server compresses
/// (those over about 2 KB: an anchor's history, large map nodes, chunks) are
/// compressed with LZ4 where the server was built with it (PostgreSQL 14 and
/// later), else with its default. A session setting: neither table changes, and
/// every reader, Go's too, gets the bytes back as they were put.
const SETUP: &str = "SET synchronous_commit = off;
SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings
WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)";

/// How many refs one listing query returns.
const LIST_PAGE: i64 = 1000;

/// How many refs one batched get asks for.
const GET_BATCH: usize = 256;

/// How many bytes of blobs put without a log flush are kept for putting again
/// after a restart before the store flushes the log itself (see "Durability").
const UNFLUSHED_CAP: usize = 8 << 20;

/// The most bytes of blobs a swap carries in its own statement
/// ([`AnchorStore::put_and_swap`]); more are put first, in statements of their
/// own, so that one message stays a bounded size.
const FOLD_MAX: usize = 4 << 20;

const GET: &str = "SELECT data FROM blobs WHERE ref = $1";
const GET_MANY: &str = "SELECT ref, data FROM blobs WHERE ref = ANY($1)";
const CONTAINS: &str = "SELECT 1 FROM blobs WHERE ref = $1";
const SIZE: &str = "SELECT octet_length(data)::int8 FROM blobs WHERE ref = $1";
const LIST: &str = "SELECT ref FROM blobs WHERE ref > $1 ORDER BY ref LIMIT $2";
const PUT: &str = "
WITH input AS (
  SELECT * FROM unnest($1::bytea[], $2::bytea[]) AS t(ref, data)
), added AS (
  INSERT INTO blobs (ref, data) SELECT ref, data FROM input
  ON CONFLICT DO NOTHING RETURNING ref
), touched AS (
  INSERT INTO anchorfs_written (ref, at) SELECT ref, now() FROM input
  ON CONFLICT (ref) DO UPDATE SET at = EXCLUDED.at
)
SELECT ref FROM added";
const MAP_REF: &str = "SELECT ref FROM anchor_map_ref";
/// The text of a swap statement ([`swap_on`]) whose change of `anchor_map_ref`
/// is `$change`, returning the ref: $1 the new ref, $2 and $3 the refs and bytes
/// of the blobs it needs, $4 the notification channel.
macro_rules! swap_statement {
    ($change:literal) => {
        concat!(
            "
WITH input AS (
  SELECT * FROM unnest($2::bytea[], $3::bytea[]) AS t(ref, data)
), added AS (
  INSERT INTO blobs (ref, data) SELECT ref, data FROM input ON CONFLICT DO NOTHING
), touched AS (
  INSERT INTO anchorfs_written (ref, at) SELECT ref, now() FROM input
  ON CONFLICT (ref) DO UPDATE SET at = EXCLUDED.at
), changed AS (
  ",
            $change,
            "
)
SELECT set_config('synchronous_commit', 'on', true), pg_notify($4, encode(ref, 'hex'))
FROM changed"
        )
    };
}
/// The swap with no map yet. A second first map violates `singleton`'s
/// uniqueness: an error, a conflict.
const SWAP_FIRST: &str =
    swap_statement!("INSERT INTO anchor_map_ref (ref) VALUES ($1) RETURNING ref");
/// The swap from the map $5: no row returned, no row changed, a conflict.
const SWAP_UPDATE: &str =
    swap_statement!("UPDATE anchor_map_ref SET ref = $1 WHERE ref = $5 RETURNING ref");
const DELETE: &str = "
WITH gone AS (DELETE FROM blobs WHERE ref = $1 RETURNING ref),
     times AS (DELETE FROM anchorfs_written WHERE ref = $1)
SELECT count(*) FROM gone";
/// A blob's write time; a blob with none (Go wrote it) gets the present one, so
/// gc's grace period starts when gc first sees it.
const WRITTEN_AT: &str = "
WITH b AS (SELECT ref FROM blobs WHERE ref = $1),
     made AS (INSERT INTO anchorfs_written (ref, at) SELECT ref, now() FROM b
              ON CONFLICT (ref) DO NOTHING RETURNING at)
SELECT COALESCE((SELECT at FROM made), (SELECT at FROM anchorfs_written WHERE ref = $1))
FROM b";
const SYNC: &str = "INSERT INTO anchorfs_sync (singleton, at) VALUES (TRUE, now())
ON CONFLICT (singleton) DO UPDATE SET at = EXCLUDED.at";

/// The opener of `postgres:` for [`super::open`].
pub(super) fn open_postgres(rest: &OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    open_spec("postgres", rest, mode)
}

/// The opener of `postgresql:` for [`super::open`].
pub(super) fn open_postgresql(rest: &OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    open_spec("postgresql", rest, mode)
}

fn open_spec(scheme: &str, rest: &OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    let bad = |why: &str| {
        let spec = format!("{scheme}:{}", rest.to_string_lossy());
        StoreError::BadSpec {
            why: format!("store {spec:?}: {why}"),
            spec,
        }
    };
    let rest = rest
        .to_str()
        .ok_or_else(|| bad("a PostgreSQL URL must be UTF-8"))?;
    if !rest.starts_with("//") {
        return Err(bad(&format!("want {scheme}://USER@HOST[:PORT]/DB")));
    }
    let (store, created) = PgStore::open(&format!("{scheme}:{rest}"), mode)?;
    Ok(Opened {
        label: store.label().to_string(),
        store: Arc::new(store),
        created,
        fresh: created,
    })
}

/// A store in a PostgreSQL database (see the module docs).
pub struct PgStore {
    pool: Pool,
    identity: String,
    /// The thread listening for other writers' swaps, started by the first
    /// [`AnchorGetter::watch`]; locked only to start it or take its signal.
    listener: parking_lot::Mutex<Option<listen::Listener>>,
    unflushed: Mutex<Unflushed>,
    /// The map ref as last read or installed here ([`AnchorGetter::known_map_ref`]);
    /// locked only to set or copy it.
    known: Mutex<Option<Option<Ref>>>,
    /// The new refs of this store's latest swaps (each added before its swap is
    /// sent, taken out if it fails), whose notifications the listener ignores;
    /// locked only to add, take out or look.
    own_swaps: OwnSwaps,
}

/// The new refs of a store's latest swaps that may have been made, newest last.
pub(super) type OwnSwaps = Arc<Mutex<VecDeque<Ref>>>;

/// How many of its latest swaps a store remembers as its own.
const OWN_SWAPS: usize = 16;

/// Blobs whose puts returned before the server's log was known to be flushed
/// past them, in the order they returned, each with the run of the server that
/// took it (see "Durability" in the module docs).
#[derive(Default)]
struct Unflushed {
    /// The number the next blob kept gets.
    next: u64,
    blobs: VecDeque<(u64, Arc<str>, Ref, Blob)>,
    bytes: usize,
}

impl Unflushed {
    /// Before a commit with the log flushed on a connection to the server run
    /// `epoch`: how far it will cover (every blob numbered below the mark
    /// returned), and the blobs among those that another run took, which must
    /// be put again in that commit.
    fn before_flush(&self, epoch: &str) -> (u64, Vec<(Ref, Blob)>) {
        let stale = self
            .blobs
            .iter()
            .filter(|(_, e, _, _)| &**e != epoch)
            .map(|(_, _, r, b)| (*r, b.clone()))
            .collect();
        (self.next, stale)
    }

    /// After such a commit: the blobs below `mark` are durable.
    fn flushed(&mut self, mark: u64) {
        while self.blobs.front().is_some_and(|(n, ..)| *n < mark) {
            if let Some((_, _, _, b)) = self.blobs.pop_front() {
                self.bytes -= b.len();
            }
        }
    }
}

/// The error of each blob of a batched read whose query failed with `e`.
fn batch_failed<'a>(refs: &'a [Ref], e: &StoreError) -> impl Iterator<Item = StoreError> + 'a {
    let retryable = e.is_retryable();
    let why = match e {
        StoreError::Backend { source, .. } => source.to_string(),
        e => e.to_string(),
    };
    refs.iter()
        .map(move |r| StoreError::backend(format!("reading blob {r}"), retryable, why.clone()))
}

/// The stored form of a ref.
fn key(r: &Ref) -> &[u8] {
    r.as_bytes()
}

impl PgStore {
    /// One query's worth of [`Getter::get_many_into`]: at most [`GET_BATCH`] jobs.
    fn get_batch_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        let count = jobs.len();
        let op = || format!("reading {count} blobs from {}", self.label());
        let refs: Vec<Ref> = jobs.iter().map(|(r, _)| *r).collect();
        let keys: Vec<&[u8]> = refs.iter().map(key).collect();
        let mut slots: HashMap<Ref, Vec<usize>> = HashMap::new();
        for (i, r) in refs.iter().enumerate() {
            slots.entry(*r).or_default().push(i);
        }
        let mut got: Vec<Option<usize>> = vec![None; jobs.len()];
        let fetched = self.pool.run(&op, |c| {
            // Run again on a new connection after a lost one: start clean.
            got.iter_mut().for_each(|g| *g = None);
            let st = c.prepared(GET_MANY)?;
            let params: [&(dyn ToSql + Sync); 1] = [&keys];
            let mut rows = c.client().query_raw(&st, params)?;
            while let Some(row) = rows.next()? {
                let Ok(r) = Ref::from_slice(row.try_get::<_, &[u8]>(0)?) else {
                    continue;
                };
                let data: &[u8] = row.try_get(1)?;
                for &i in slots.get(&r).into_iter().flatten() {
                    got[i] = Some(copy_blob_into(data, &mut *jobs[i].1));
                }
            }
            Ok(())
        });
        match fetched {
            Ok(()) => got
                .into_iter()
                .zip(jobs.iter())
                .map(|(n, (r, dst))| {
                    let n = n.ok_or(StoreError::NotFound(*r))?;
                    if let Some(data) = dst.get(..n) {
                        verified_slice(r, data)?;
                    }
                    Ok(n)
                })
                .collect(),
            Err(e) => batch_failed(&refs, &e).map(Err).collect(),
        }
    }

    /// Opens the store at `url`; with [`OpenMode::Create`], makes its tables if
    /// the database has none. Returns whether it made Go's tables.
    pub fn open(url: &str, mode: OpenMode) -> Result<(PgStore, bool), StoreError> {
        PgStore::open_config(ConnConfig::parse(url)?, mode)
    }

    /// Opens the store the settings `config` reach (as [`PgStore::open`]).
    pub fn open_config(config: ConnConfig, mode: OpenMode) -> Result<(PgStore, bool), StoreError> {
        let label = config.label().to_string();
        let pool = Pool::new(config, SETUP);
        let op = || format!("connecting to {label}");
        let mut conn = pool.fresh(&op)?;
        let not_store = |why: String| StoreError::NotAStore {
            path: PathBuf::from(&label),
            why,
        };
        let check = |conn: &mut Conn| match schema::check(conn.client()) {
            Ok(found) => Ok(found),
            Err(schema::CheckError::Mismatch(why)) => Err(not_store(format!(
                "{why} (the tables of Go's store/pg are: {})",
                GO_SCHEMA.split_whitespace().collect::<Vec<_>>().join(" ")
            ))),
            Err(schema::CheckError::Db(e)) => Err(backend_error(op(), e)),
        };
        let found = check(&mut conn)?;
        let go: Vec<&str> = schema::TABLES
            .iter()
            .filter(|t| t.go)
            .map(|t| t.name)
            .collect();
        let go_present = go.iter().filter(|t| found.has(t)).count();
        let mut created = false;
        if go_present < go.len() {
            if mode == OpenMode::Existing {
                let why = if go_present == 0 {
                    "the database has no table blobs or anchor_map_ref".to_string()
                } else {
                    let missing: Vec<&str> = go.iter().filter(|t| !found.has(t)).copied().collect();
                    format!("the database lacks table {}", missing.join(", "))
                };
                return Err(not_store(why));
            }
            created = go_present == 0;
        }
        if found.present.len() < schema::TABLES.len() {
            schema::create(conn.client(), go_present < go.len())
                .map_err(|e| backend_error(format!("{}: making its tables", op()), e))?;
            let found = check(&mut conn)?;
            if found.present.len() < schema::TABLES.len() {
                return Err(not_store("its tables could not be made".into()));
            }
        }
        let identity = identity(&mut conn, &label).map_err(|e| backend_error(op(), e))?;
        drop(conn);
        let store = PgStore {
            pool,
            identity,
            listener: parking_lot::Mutex::new(None),
            unflushed: Mutex::new(Unflushed::default()),
            known: Mutex::new(None),
            own_swaps: OwnSwaps::default(),
        };
        Ok((store, created))
    }

    /// How messages name the store: its URL without the password.
    pub fn label(&self) -> &str {
        self.pool.config().label()
    }

    /// The anchor map ref as a connection reads it.
    fn read_map_ref(&self, conn: &mut Conn) -> Result<Option<Vec<u8>>, postgres::Error> {
        let st = conn.prepared(MAP_REF)?;
        match conn.client().query_opt(&st, &[])? {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    fn decode_map_ref(&self, raw: Option<Vec<u8>>) -> Result<Option<Ref>, StoreError> {
        match raw {
            None => Ok(None),
            Some(b) => Ref::from_slice(&b)
                .map(Some)
                .map_err(|_| StoreError::BadAnchorMapRef {
                    path: PathBuf::from(format!("{} table anchor_map_ref", self.label())),
                    len: b.len(),
                }),
        }
    }

    /// The swap after its connection was lost: read the ref on a new connection
    /// and decide (see the module docs).
    fn resolve_swap(
        &self,
        old: Option<Ref>,
        new: Ref,
        with: &[(Ref, Blob)],
        op: &dyn Fn() -> String,
        lost: postgres::Error,
        mark: u64,
    ) -> Result<(), StoreError> {
        log::warn!(
            "{}: connection lost ({}); reading the ref back",
            op(),
            pool::describe(&lost)
        );
        let mut conn = self.pool.fresh(op)?;
        let read = |conn: &mut pool::Pooled<'_>| match self.read_map_ref(conn) {
            Ok(raw) => self.decode_map_ref(raw),
            Err(e) => {
                self.pool.note_failure(conn, &e);
                Err(backend_error(op(), e))
            }
        };
        let cur = read(&mut conn)?;
        if cur == Some(new) {
            // Visible, so committed with the log flushed past it.
            self.unflushed.lock().flushed(mark);
            log::info!("{}: the swap had been made", op());
            return Ok(());
        }
        if cur != old {
            return Err(StoreError::Conflict);
        }
        let (_, stale) = self.unflushed.lock().before_flush(&conn.epoch);
        let res = swap_on(&mut conn, old, new, with, &stale);
        if res.is_ok() {
            self.unflushed.lock().flushed(mark);
        }
        match res {
            Ok(true) => Ok(()),
            Ok(false) => match read(&mut conn)? {
                // The lost attempt committed after all, after the read above.
                cur if cur == Some(new) => Ok(()),
                _ => Err(StoreError::Conflict),
            },
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => {
                self.pool.note_failure(&mut conn, &e);
                Err(backend_error(op(), e))
            }
        }
    }
}

/// The store's identity: the server's system identifier, the database and the
/// schema; the URL's server where the identifier may not be read.
fn identity(conn: &mut Conn, label: &str) -> Result<String, postgres::Error> {
    let row = conn.client().query_one(
        "SELECT current_database()::text, current_schema()::text",
        &[],
    )?;
    let db: String = row.try_get(0)?;
    let schema: Option<String> = row.try_get(1)?;
    let schema = schema.unwrap_or_default();
    let sysid = conn
        .client()
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .and_then(|row| row.try_get::<_, String>(0));
    Ok(match sysid {
        Ok(id) => format!("pg:{id}/{db}/{schema}"),
        Err(e) => {
            log::debug!(
                "reading the server's system identifier: {}",
                pool::describe(&e)
            );
            let server = label.rsplit_once('/').map_or(label, |(s, _)| s);
            format!("pg:{server}/{db}/{schema}")
        }
    })
}

/// Whether `e` is a unique or check violation: a first map inserted over one.
fn is_conflict(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code() == "23505" || c.code() == "23514")
}

/// Runs `f` in a transaction that commits with `synchronous_commit` on.
fn durably<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    conn.client()
        .batch_execute("BEGIN; SET LOCAL synchronous_commit = on")?;
    let out = f(conn).and_then(|v| conn.client().batch_execute("COMMIT").map(|()| v));
    if out.is_err() && !conn.client().is_closed() {
        if let Err(e) = conn.client().batch_execute("ROLLBACK") {
            log::debug!("rolling back: {}", pool::describe(&e));
            conn.poisoned = true;
        }
    }
    out
}

/// Puts `blobs` again on `conn` (blobs an earlier run of the server took, whose
/// rows its restart may have lost), in ref order.
fn put_again(conn: &mut Conn, blobs: &[(Ref, Blob)]) -> Result<(), postgres::Error> {
    if blobs.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&(Ref, Blob)> = blobs.iter().collect();
    sorted.sort_by_key(|(r, _)| *r);
    sorted.dedup_by_key(|(r, _)| *r);
    let keys: Vec<&[u8]> = sorted.iter().map(|(r, _)| key(r)).collect();
    let data: Vec<&[u8]> = sorted.iter().map(|(_, b)| &b[..]).collect();
    let st = conn.prepared(PUT)?;
    let params: [&(dyn ToSql + Sync); 2] = [&keys, &data];
    conn.client().query(&st, &params).map(|_| ())
}

/// One compare-and-swap on `conn`, with the blobs `with` (those the new map
/// needs) and `stale` put in its transaction: whether it was made. `Ok(true)`
/// means the transaction committed with the log flushed.
///
/// One statement ([`SWAP_FIRST`] or [`SWAP_UPDATE`]), prepared once per
/// connection and sent with binary parameters, so one round trip and one plan:
/// the blobs and their write times (in ref order, as every put takes its row
/// locks), the conditional change, and, only if the change was made, the
/// transaction's synchronous commit (`set_config(.., true)` lasts until its
/// commit) and the notification of other listeners ([`CHANNEL`]), which the
/// server sends only once the transaction commits. A swap that changes nothing
/// commits its blobs as any put does, without waiting for the log; the next
/// attempt puts what it needs again. An error rolls the statement's
/// transaction back whole.
fn swap_on(
    conn: &mut Conn,
    old: Option<Ref>,
    new: Ref,
    with: &[(Ref, Blob)],
    stale: &[(Ref, Blob)],
) -> Result<bool, postgres::Error> {
    let mut sorted: Vec<&(Ref, Blob)> = stale.iter().chain(with).collect();
    sorted.sort_by_key(|(r, _)| *r);
    sorted.dedup_by_key(|(r, _)| *r);
    let keys: Vec<&[u8]> = sorted.iter().map(|(r, _)| key(r)).collect();
    let data: Vec<&[u8]> = sorted.iter().map(|(_, b)| &b[..]).collect();
    let rows = match old {
        None => {
            let st = conn.prepared(SWAP_FIRST)?;
            let params: [&(dyn ToSql + Sync); 4] = [&key(&new), &keys, &data, &CHANNEL];
            conn.client().query(&st, &params)?
        }
        Some(old) => {
            let st = conn.prepared(SWAP_UPDATE)?;
            let params: [&(dyn ToSql + Sync); 5] = [&key(&new), &keys, &data, &CHANNEL, &key(&old)];
            conn.client().query(&st, &params)?
        }
    };
    Ok(rows.len() == 1)
}

impl Getter for PgStore {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        let op = || format!("reading blob {r} from {}", self.label());
        let data = self.pool.run(&op, |c| {
            let st = c.prepared(GET)?;
            match c.client().query_opt(&st, &[&key(r)])? {
                Some(row) => Ok(Some(row.try_get::<_, Vec<u8>>(0)?)),
                None => Ok(None),
            }
        })?;
        match data {
            Some(d) => verified(r, Blob::from(d)),
            None => Err(StoreError::NotFound(*r)),
        }
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        let op = || format!("looking up blob {r} in {}", self.label());
        self.pool.run(&op, |c| {
            let st = c.prepared(CONTAINS)?;
            Ok(c.client().query_opt(&st, &[&key(r)])?.is_some())
        })
    }

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        let op = || format!("sizing blob {r} in {}", self.label());
        let size = self.pool.run(&op, |c| {
            let st = c.prepared(SIZE)?;
            match c.client().query_opt(&st, &[&key(r)])? {
                Some(row) => Ok(Some(row.try_get::<_, i64>(0)?)),
                None => Ok(None),
            }
        })?;
        size.map(|n| n.max(0) as u64)
            .ok_or(StoreError::NotFound(*r))
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = *after;
        loop {
            let op = || format!("listing the blobs of {} after {after}", self.label());
            // A page at a time, with no connection held while `f` runs.
            let page: Vec<Vec<u8>> = self.pool.run(&op, |c| {
                let st = c.prepared(LIST)?;
                c.client()
                    .query(&st, &[&key(&after), &LIST_PAGE])?
                    .iter()
                    .map(|row| row.try_get(0))
                    .collect()
            })?;
            let full = page.len() as i64 == LIST_PAGE;
            for raw in page {
                let r = Ref::from_slice(&raw).map_err(|_| {
                    StoreError::backend(
                        format!("listing the blobs of {}", self.label()),
                        false,
                        format!("table blobs has a ref of {} bytes, not 32", raw.len()),
                    )
                })?;
                if !f(r)? {
                    return Ok(());
                }
                after = r;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        let mut out = Vec::with_capacity(refs.len());
        for chunk in refs.chunks(GET_BATCH) {
            let op = || format!("reading {} blobs from {}", chunk.len(), self.label());
            let keys: Vec<&[u8]> = chunk.iter().map(key).collect();
            let rows = self.pool.run(&op, |c| {
                let st = c.prepared(GET_MANY)?;
                c.client()
                    .query(&st, &[&keys])?
                    .iter()
                    .map(|row| Ok((row.try_get::<_, Vec<u8>>(0)?, row.try_get::<_, Vec<u8>>(1)?)))
                    .collect::<Result<Vec<_>, postgres::Error>>()
            });
            match rows {
                Ok(rows) => {
                    let found: HashMap<Ref, Blob> = rows
                        .into_iter()
                        .filter_map(|(r, d)| Some((Ref::from_slice(&r).ok()?, Blob::from(d))))
                        .collect();
                    out.extend(chunk.iter().map(|r| match found.get(r) {
                        Some(d) => verified(r, d.clone()),
                        None => Err(StoreError::NotFound(*r)),
                    }));
                }
                Err(e) => out.extend(batch_failed(chunk, &e).map(Err)),
            }
        }
        out
    }

    /// The row's bytes go straight into `out` and are checked there: no buffer of
    /// their own per chunk.
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        let op = || format!("reading blob {r} from {}", self.label());
        let n = self.pool.run(&op, |c| {
            let st = c.prepared(GET)?;
            Ok(match c.client().query_opt(&st, &[&key(r)])? {
                Some(row) => Some(copy_blob_into(row.try_get::<_, &[u8]>(0)?, out)),
                None => None,
            })
        })?;
        let n = n.ok_or(StoreError::NotFound(*r))?;
        // A longer blob is left uncopied; the caller sees its length.
        if let Some(data) = out.get(..n) {
            verified_slice(r, data)?;
        }
        Ok(n)
    }

    /// As [`get_many`](Getter::get_many), a batch per query, each row copied into
    /// the buffers of its ref as it arrives and checked there.
    fn get_many_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        let mut out = Vec::with_capacity(jobs.len());
        for batch in jobs.chunks_mut(GET_BATCH) {
            out.extend(self.get_batch_into(batch));
        }
        out
    }

    /// Each call is a round trip to the server.
    fn prefers_batches(&self) -> bool {
        true
    }

    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }

    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        self.read_settings()
    }
}

impl Store for PgStore {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let mut v = self.put_many(&[blob])?;
        v.pop()
            .ok_or_else(|| StoreError::backend("putting a blob", false, "no result"))
    }

    /// All in one statement: the blobs new to the store are inserted, every
    /// blob's write time is set to now. A blob given twice is new the first
    /// time only. Idempotent, so run again if a pooled connection had broken
    /// (then a blob the lost attempt added counts as not new).
    fn put_many(&self, blobs: &[&[u8]]) -> Result<Vec<(Ref, bool)>, StoreError> {
        for b in blobs {
            if b.len() as u64 > MAX_BLOB_SIZE {
                return Err(StoreError::BlobTooLarge {
                    size: b.len() as u64,
                    max: MAX_BLOB_SIZE,
                });
            }
        }
        let refs: Vec<Ref> = blobs.iter().map(|b| Ref::of(b)).collect();
        // Each ref once, in ref order, so two puts that share blobs take their
        // row locks in the same order and never deadlock.
        let mut order: Vec<usize> = (0..blobs.len()).collect();
        order.sort_by_key(|&i| refs[i]);
        order.dedup_by_key(|i| refs[*i]);
        let keys: Vec<&[u8]> = order.iter().map(|&i| key(&refs[i])).collect();
        let data: Vec<&[u8]> = order.iter().map(|&i| blobs[i]).collect();
        let op = || format!("putting {} blobs into {}", order.len(), self.label());
        let (added, epoch) = self.pool.run(&op, |c| {
            let st = c.prepared(PUT)?;
            let params: [&(dyn ToSql + Sync); 2] = [&keys, &data];
            let added = c
                .client()
                .query(&st, &params)?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<Vec<Vec<u8>>, _>>()?;
            Ok((added, c.epoch.clone()))
        })?;
        // Kept until a flushed commit on the same run of the server covers
        // them, also those the store already had: they may be unflushed rows of
        // another writer.
        let full = {
            let mut u = self.unflushed.lock();
            for &i in &order {
                let n = u.next;
                u.next += 1;
                u.bytes += blobs[i].len();
                u.blobs
                    .push_back((n, epoch.clone(), refs[i], Blob::copy_from_slice(blobs[i])));
            }
            u.bytes > UNFLUSHED_CAP
        };
        if full {
            if let Err(e) = self.sync() {
                log::debug!("flushing {}: {e}", self.label());
            }
        }
        let mut new: HashSet<Ref> = added
            .iter()
            .filter_map(|r| Ref::from_slice(r).ok())
            .collect();
        Ok(refs.into_iter().map(|r| (r, new.remove(&r))).collect())
    }

    /// Rewrites one row of `anchorfs_sync` in a transaction that commits with
    /// `synchronous_commit` on: its flush covers every put committed before on
    /// this run of the server; blobs an earlier run took are put again in it.
    fn sync(&self) -> Result<(), StoreError> {
        let op = || format!("flushing {}", self.label());
        let mark = self.pool.run(&op, |c| {
            let (mark, stale) = self.unflushed.lock().before_flush(&c.epoch);
            durably(c, |c| {
                put_again(c, &stale)?;
                let st = c.prepared(SYNC)?;
                c.client().execute(&st, &[]).map(|_| ())
            })?;
            Ok(mark)
        })?;
        self.unflushed.lock().flushed(mark);
        Ok(())
    }

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        self.insert_settings(settings)
    }
}

impl AnchorGetter for PgStore {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        let op = || format!("reading the anchor map ref of {}", self.label());
        let raw = self.pool.run(&op, |c| self.read_map_ref(c))?;
        let cur = self.decode_map_ref(raw)?;
        *self.known.lock() = Some(cur);
        cur.ok_or(StoreError::NoAnchorMap)
    }

    fn known_map_ref(&self) -> Option<Option<Ref>> {
        *self.known.lock()
    }

    /// Wakes on every swap of this database by a writer that notifies (every
    /// anchorfs process), heard on a connection of its own (`pg/listen.rs`).
    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        let mut listener = self.listener.lock();
        if listener.is_none() {
            match listen::Listener::start(self.pool.config().clone(), self.own_swaps.clone()) {
                Ok(l) => *listener = Some(l),
                Err(e) => {
                    log::warn!("not listening for changes on {}: {e}", self.label());
                    return None;
                }
            }
        }
        listener.as_ref().map(|l| l.signal().watch())
    }
}

impl AnchorStore for PgStore {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        self.swap_with(old, new, &[])
    }

    /// Up to [`FOLD_MAX`] bytes of blobs go in the swap's own message; more are
    /// put first, as any put is.
    fn put_and_swap(
        &self,
        blobs: &[(Ref, Blob)],
        old: Option<Ref>,
        new: Ref,
    ) -> Result<(), StoreError> {
        if blobs.iter().map(|(_, b)| b.len()).sum::<usize>() > FOLD_MAX {
            let slices: Vec<&[u8]> = blobs.iter().map(|(_, b)| &b[..]).collect();
            self.put_many(&slices)?;
            return self.swap_with(old, new, &[]);
        }
        self.swap_with(old, new, blobs)
    }
}

impl PgStore {
    /// The swap, with `with` put in its transaction; what it comes to is the
    /// known map ref: `new`, or unknown.
    fn swap_with(
        &self,
        old: Option<Ref>,
        new: Ref,
        with: &[(Ref, Blob)],
    ) -> Result<(), StoreError> {
        // Before the swap is sent: its notification may be heard before it returns.
        {
            let mut own = self.own_swaps.lock();
            if own.len() == OWN_SWAPS {
                own.pop_front();
            }
            own.push_back(new);
        }
        let res = self.swap_once(old, new, with);
        if res.is_err() {
            self.own_swaps.lock().retain(|r| *r != new);
        }
        *self.known.lock() = res.is_ok().then_some(Some(new));
        res
    }

    fn swap_once(
        &self,
        old: Option<Ref>,
        new: Ref,
        with: &[(Ref, Blob)],
    ) -> Result<(), StoreError> {
        let op = || format!("setting the anchor map ref of {} to {new}", self.label());
        let mut conn = self.pool.get(&op)?;
        let (mark, stale) = self.unflushed.lock().before_flush(&conn.epoch);
        let res = swap_on(&mut conn, old, new, with, &stale);
        if res.is_ok() {
            self.unflushed.lock().flushed(mark);
        }
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Conflict),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict),
            Err(e) => {
                if !self.pool.note_failure(&mut conn, &e) {
                    return Err(backend_error(op(), e));
                }
                drop(conn);
                self.resolve_swap(old, new, with, &op, e, mark)
            }
        }
    }
}

impl DeletingStore for PgStore {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        let op = || format!("deleting blob {r} from {}", self.label());
        self.pool.run(&op, |c| {
            let st = c.prepared(DELETE)?;
            let n: i64 = c.client().query_one(&st, &[&key(r)])?.try_get(0)?;
            Ok(n > 0)
        })
    }

    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        let op = || format!("reading the write time of blob {r} in {}", self.label());
        let at = self.pool.run(&op, |c| {
            let st = c.prepared(WRITTEN_AT)?;
            match c.client().query_opt(&st, &[&key(r)])? {
                Some(row) => Ok(Some(row.try_get::<_, SystemTime>(0)?)),
                None => Ok(None),
            }
        })?;
        at.ok_or(StoreError::NotFound(*r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(u: &mut Unflushed, epoch: &str, data: &'static [u8]) {
        let n = u.next;
        u.next += 1;
        u.bytes += data.len();
        u.blobs
            .push_back((n, epoch.into(), Ref::of(data), Blob::from_static(data)));
    }

    #[test]
    fn kept_blobs_of_another_run_are_put_again_and_a_flush_drops_what_it_covers() {
        let mut u = Unflushed::default();
        keep(&mut u, "run 1", b"a");
        keep(&mut u, "run 1", b"bb");
        let (mark, stale) = u.before_flush("run 1");
        assert!(stale.is_empty(), "same run: the flush covers them");
        keep(&mut u, "run 1", b"ccc");
        u.flushed(mark);
        assert_eq!(u.blobs.len(), 1, "kept after the mark: not covered");
        assert_eq!(u.bytes, 3);
        keep(&mut u, "run 2", b"dddd");
        let (mark, stale) = u.before_flush("run 2");
        assert_eq!(stale.len(), 1, "the blob an earlier run took");
        assert_eq!(stale[0].0, Ref::of(b"ccc"));
        u.flushed(mark);
        assert!(u.blobs.is_empty());
        assert_eq!(u.bytes, 0);
    }
}
