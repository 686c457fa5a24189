//! The PostgreSQL store on a real server: its tables are Go's, a database with
//! other tables is refused untouched, the compare-and-swap across handles, a
//! lost connection recovered from, the URL forms, gc's write times, damage.
//! Each test has its own database (see `common/pg.rs`).

#[path = "common/pg.rs"]
mod pg_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anchorfs::anchor;
use anchorfs::store::pg::{PgStore, GO_SCHEMA};
use anchorfs::store::{
    self, AnchorGetter, AnchorStore, DeletingStore, Getter, OpenMode, Store, StoreError,
};
use anchorfs::{Ref, Timestamp};
use pg_common::TestDb;

/// Go's `store/pg` schema as its source has it, kept here apart from the
/// library's copy so that a change to either is noticed.
const GO_DDL: &str = "
CREATE TABLE IF NOT EXISTS blobs (
  ref BYTEA PRIMARY KEY NOT NULL,
  data BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS anchor_map_ref (
  ref BYTEA NOT NULL,
  singleton BOOLEAN NOT NULL UNIQUE DEFAULT TRUE CHECK (singleton)
);
";

fn create(db: &TestDb) -> PgStore {
    PgStore::open(&db.url, OpenMode::Create).unwrap().0
}

/// The tables of the public schema, as rows of text: columns with types,
/// nullability and defaults; constraints with their kind, columns and clause;
/// indexes with their definitions (less their names).
fn described_tables(db: &TestDb, tables: &[&str]) -> Vec<String> {
    let mut c = db.client();
    let mut out = Vec::new();
    for row in c
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text,
                    COALESCE(column_default::text, '')
             FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = ANY($1)
             ORDER BY table_name, ordinal_position",
            &[&tables],
        )
        .unwrap()
    {
        let f: Vec<String> = (0..5).map(|i| row.get(i)).collect();
        out.push(format!("column {}", f.join(" ")));
    }
    for row in c
        .query(
            "SELECT tc.table_name::text, tc.constraint_type::text,
                    COALESCE(string_agg(ccu.column_name::text, ',' ORDER BY ccu.column_name), ''),
                    COALESCE(cc.check_clause::text, '')
             FROM information_schema.table_constraints tc
             LEFT JOIN information_schema.constraint_column_usage ccu
               ON ccu.constraint_name = tc.constraint_name
              AND ccu.constraint_schema = tc.constraint_schema
             LEFT JOIN information_schema.check_constraints cc
               ON cc.constraint_name = tc.constraint_name
              AND cc.constraint_schema = tc.constraint_schema
             WHERE tc.table_schema = 'public' AND tc.table_name = ANY($1)
               AND COALESCE(cc.check_clause::text, '') NOT LIKE '% IS NOT NULL'
             GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type, cc.check_clause
             ORDER BY 1, 2, 3, 4",
            &[&tables],
        )
        .unwrap()
    {
        let f: Vec<String> = (0..4).map(|i| row.get(i)).collect();
        out.push(format!("constraint {}", f.join(" ")));
    }
    for row in c
        .query(
            "SELECT tablename::text, regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON')
             FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1)
             ORDER BY 1, 2",
            &[&tables],
        )
        .unwrap()
    {
        out.push(format!(
            "index {} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1)
        ));
    }
    out
}

fn table_names(db: &TestDb) -> BTreeSet<String> {
    db.client()
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_tables_are_go_s_and_ours_are_apart() {
    let Some(ours) = TestDb::new() else { return };
    let Some(go) = TestDb::new() else { return };
    assert_eq!(GO_SCHEMA, GO_DDL, "the library's copy of Go's schema");
    let (_store, created) = PgStore::open(&ours.url, OpenMode::Create).unwrap();
    assert!(created);
    go.client().batch_execute(GO_DDL).unwrap();
    let go_tables = ["blobs", "anchor_map_ref"];
    let want = described_tables(&go, &go_tables);
    assert!(
        want.iter()
            .any(|l| l.contains("CHECK") && l.contains("singleton")),
        "{want:#?}"
    );
    assert_eq!(described_tables(&ours, &go_tables), want);
    // Ours are named anchorfs_*, and Go's database has none of them.
    let names = table_names(&ours);
    assert!(
        names
            .iter()
            .all(|n| go_tables.contains(&n.as_str()) || n.starts_with("anchorfs_")),
        "{names:?}"
    );
    assert!(names.contains("anchorfs_written"));
    assert_eq!(table_names(&go).len(), 2);
}

#[test]
fn a_database_go_made_is_opened_and_shared() {
    let Some(db) = TestDb::new() else { return };
    // Go's New, then a blob and a first map as Go's Put and UpdateAnchorMap write them.
    let mut c = db.client();
    c.batch_execute(GO_DDL).unwrap();
    let blob = b"written by go".to_vec();
    let r = Ref::of(&blob);
    c.execute(
        "INSERT INTO blobs (ref, data) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&r.as_bytes().as_slice(), &blob],
    )
    .unwrap();
    c.execute(
        "INSERT INTO anchor_map_ref (ref) VALUES ($1)",
        &[&r.as_bytes().as_slice()],
    )
    .unwrap();
    let (s, created) = PgStore::open(&db.url, OpenMode::Existing).unwrap();
    assert!(!created, "the store was there");
    assert_eq!(s.get(&r).unwrap().as_ref(), blob.as_slice());
    assert_eq!(s.anchor_map_ref().unwrap(), r);
    // A blob Go wrote has no write time of ours: gc's grace period starts now.
    let t = s.written_at(&r).unwrap();
    assert!(t > SystemTime::now() - Duration::from_secs(60));
    assert_eq!(s.written_at(&r).unwrap(), t, "recorded once");
    // What this store writes, Go's queries read.
    let (r2, _) = s.put(b"written by rust").unwrap();
    s.swap_anchor_map(Some(r), r2).unwrap();
    let row = c.query_one("SELECT ref FROM anchor_map_ref", &[]).unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), r2.as_bytes().to_vec());
    let row = c
        .query_one(
            "SELECT data FROM blobs WHERE ref = $1",
            &[&r2.as_bytes().as_slice()],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), b"written by rust".to_vec());
}

#[test]
fn an_empty_database_is_a_store_only_when_created() {
    let Some(db) = TestDb::new() else { return };
    let e = PgStore::open(&db.url, OpenMode::Existing).err().unwrap();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    assert!(e.to_string().contains("no table blobs"), "{e}");
    assert!(
        !e.to_string().contains('@') || !e.to_string().contains(":***"),
        "{e}"
    );
    assert!(table_names(&db).is_empty(), "nothing was made");
    let o = store::open(db.url.as_ref(), OpenMode::Create).unwrap();
    assert!(o.created);
    let o = store::open(db.url.as_ref(), OpenMode::Existing).unwrap();
    assert!(!o.created);
    assert!(o.label.starts_with("postgres://"), "{}", o.label);
    assert!(matches!(
        o.store.anchor_map_ref(),
        Err(StoreError::NoAnchorMap)
    ));
}

#[test]
fn tables_that_differ_are_refused_and_left_alone() {
    let cases: &[(&str, &str)] = &[
        // Go's older schema, with a type column.
        (
            "CREATE TABLE blobs (ref BYTEA PRIMARY KEY NOT NULL, data BYTEA NOT NULL, typ BYTEA)",
            "blobs",
        ),
        ("CREATE TABLE blobs (ref TEXT PRIMARY KEY NOT NULL, data BYTEA NOT NULL)", "blobs"),
        ("CREATE TABLE blobs (ref BYTEA NOT NULL, data BYTEA NOT NULL)", "blobs"),
        (
            "CREATE TABLE anchor_map_ref (ref BYTEA NOT NULL, singleton BOOLEAN NOT NULL DEFAULT TRUE)",
            "anchor_map_ref",
        ),
        (
            "CREATE TABLE anchorfs_written (ref BYTEA NOT NULL, at TEXT NOT NULL)",
            "anchorfs_written",
        ),
    ];
    for (ddl, table) in cases {
        let Some(db) = TestDb::new() else { return };
        db.client().batch_execute(ddl).unwrap();
        let before = table_names(&db);
        for mode in [OpenMode::Create, OpenMode::Existing] {
            let e = PgStore::open(&db.url, mode).err().unwrap();
            assert!(matches!(e, StoreError::NotAStore { .. }), "{ddl}: {e}");
            assert!(
                e.to_string().contains(&format!("table {table} ")),
                "{ddl}: {e}"
            );
            assert_eq!(table_names(&db), before, "{ddl}: nothing was made");
        }
    }
}

#[test]
fn both_socket_url_forms_and_both_schemes() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let row = db
        .client()
        .query_one(
            "SELECT current_setting('unix_socket_directories'), current_user::text",
            &[],
        )
        .unwrap();
    let dir: String = row.get(0);
    let dir = dir.split(',').next().unwrap().trim().to_string();
    let user: String = row.get(1);
    assert!(dir.starts_with('/'), "{dir}");
    let encoded = dir.replace('/', "%2F");
    for url in [
        format!("postgres://{user}@{encoded}/{}", db.name),
        format!("postgresql://{user}@{encoded}/{}", db.name),
        format!("postgres:///{}?host={dir}&user={user}", db.name),
        format!("POSTGRES:///{}?host={dir}&user={user}", db.name),
    ] {
        let o =
            store::open(url.as_ref(), OpenMode::Existing).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(o.store.identity(), s.identity(), "{url}");
        assert!(o.label.contains(&encoded), "{}", o.label);
    }
    let other = TestDb::new().unwrap();
    assert_ne!(create(&other).identity(), s.identity());
    assert!(s.local_dir().is_none());
}

#[test]
fn connection_failures_say_whether_a_retry_helps() {
    let Some(db) = TestDb::new() else { return };
    let nowhere = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres:///x?host={}&user=postgres",
        nowhere.path().display()
    );
    let e = PgStore::open(&url, OpenMode::Create).err().unwrap();
    assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    assert!(e.is_retryable(), "no server yet: {e}");
    let missing = pg_common::with_db(&db.server, "anchorfs_no_such_database");
    let e = PgStore::open(&missing, OpenMode::Create).err().unwrap();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        e.to_string().contains("does not exist"),
        "the server's word: {e}"
    );
    for bad in ["postgres:x", "postgres://u@h/db?nonsense=1"] {
        let e = store::open(bad.as_ref(), OpenMode::Create).err().unwrap();
        assert!(matches!(e, StoreError::BadSpec { .. }), "{bad}: {e}");
    }
}

#[test]
fn swaps_across_handles_conflict_and_never_lose() {
    let Some(db) = TestDb::new() else { return };
    let a = create(&db);
    let b = PgStore::open(&db.url, OpenMode::Existing).unwrap().0;
    let (x, y, z) = (Ref::of(b"x"), Ref::of(b"y"), Ref::of(b"z"));
    a.swap_anchor_map(None, x).unwrap();
    assert!(matches!(
        b.swap_anchor_map(None, y),
        Err(StoreError::Conflict)
    ));
    b.swap_anchor_map(Some(x), y).unwrap();
    let e = a.swap_anchor_map(Some(x), z).unwrap_err();
    assert!(matches!(e, StoreError::Conflict) && !e.is_retryable());
    assert_eq!(a.anchor_map_ref().unwrap(), y);
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM anchor_map_ref", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one row, always");

    // Writers on two handles of a new store, each through anchor::update's one
    // retry loop.
    let db = TestDb::new().unwrap();
    let a = create(&db);
    let b = PgStore::open(&db.url, OpenMode::Existing).unwrap().0;
    let stores: Vec<Arc<PgStore>> = vec![Arc::new(a), Arc::new(b)];
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let s = stores[t % 2].clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let name = format!("w{t}-{i}");
                    let (r, _) = s.put(name.as_bytes()).unwrap();
                    anchor::put(&*s, name.as_bytes(), r, Timestamp::now()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..6 {
        for i in 0..10 {
            let name = format!("w{t}-{i}");
            let got = anchor::get(&*stores[1 - t % 2], name.as_bytes(), Timestamp::now()).unwrap();
            assert_eq!(got, Ref::of(name.as_bytes()), "{name} was kept");
        }
    }
}

#[test]
fn a_lost_connection_is_made_again_on_the_next_call() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let (r, _) = s.put(b"before").unwrap();
    s.swap_anchor_map(None, r).unwrap();
    // Several connections in the pool, all idle.
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..20 {
                    s.get(&r).unwrap();
                }
            });
        }
    });
    type Step<'a> = Box<dyn Fn(&PgStore) -> Result<(), StoreError> + 'a>;
    let steps: Vec<(&str, Step<'_>)> = vec![
        ("get", Box::new(|s| s.get(&r).map(|_| ()))),
        (
            "get_many",
            Box::new(|s| {
                s.get_many(&[r, r])
                    .into_iter()
                    .try_for_each(|x| x.map(|_| ()))
            }),
        ),
        ("put", Box::new(|s| s.put(b"after").map(|_| ()))),
        ("map ref", Box::new(|s| s.anchor_map_ref().map(|_| ()))),
        (
            "swap",
            Box::new(|s| {
                let cur = s.anchor_map_ref()?;
                s.swap_anchor_map(Some(cur), Ref::of(cur.as_bytes()))
            }),
        ),
        (
            "list",
            Box::new(|s| s.list_refs(&Ref::ZERO, &mut |_| Ok(true))),
        ),
        ("sync", Box::new(|s| s.sync())),
        ("written_at", Box::new(|s| s.written_at(&r).map(|_| ()))),
    ];
    for (what, step) in &steps {
        step(&s).unwrap_or_else(|e| panic!("{what} before: {e}"));
        let ended = db.terminate_connections();
        assert!(ended >= 1, "{what}: the pool had a connection to end");
        step(&s).unwrap_or_else(|e| panic!("{what} after its connection was ended: {e}"));
    }
    // A swap that loses its connection between the read and the swap still
    // installs exactly once: the map moved by one step.
    let cur = s.anchor_map_ref().unwrap();
    db.terminate_connections();
    let next = Ref::of(b"next");
    s.swap_anchor_map(Some(cur), next).unwrap();
    assert_eq!(s.anchor_map_ref().unwrap(), next);
    assert!(matches!(
        s.swap_anchor_map(Some(cur), next),
        Err(StoreError::Conflict)
    ));
}

#[test]
fn batches_write_times_deletes_and_damage() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let got = s.put_many(&[b"a", b"b", b"a"]).unwrap();
    let (ra, rb) = (Ref::of(b"a"), Ref::of(b"b"));
    assert_eq!(got, vec![(ra, true), (rb, true), (ra, false)]);
    assert_eq!(s.put_many(&[b"b"]).unwrap(), vec![(rb, false)]);
    let missing = Ref::of(b"missing");
    let many = s.get_many(&[rb, missing, ra, rb]);
    assert_eq!(many[0].as_ref().unwrap().as_ref(), b"b");
    assert!(matches!(many[1], Err(StoreError::NotFound(m)) if m == missing));
    assert_eq!(many[2].as_ref().unwrap().as_ref(), b"a");
    assert_eq!(many[3].as_ref().unwrap().as_ref(), b"b");
    let refs: Vec<Ref> = (0..600u32)
        .map(|i| s.put(&i.to_be_bytes()).unwrap().0)
        .collect();
    assert!(
        s.get_many(&refs).iter().all(|r| r.is_ok()),
        "more than one batch"
    );
    // The same straight into buffers: a repeated ref fills every buffer it has,
    // and more refs than one query asks for are all read.
    let mut bufs: Vec<Vec<u8>> = (0..refs.len() + 4).map(|_| vec![0u8; 8]).collect();
    let wanted: Vec<Ref> = [rb, missing, ra, rb]
        .into_iter()
        .chain(refs.iter().copied())
        .collect();
    let mut jobs: Vec<(Ref, &mut [u8])> = wanted
        .iter()
        .zip(bufs.iter_mut())
        .map(|(r, b)| (*r, b.as_mut_slice()))
        .collect();
    let got = s.get_many_into(&mut jobs);
    drop(jobs);
    assert_eq!(*got[0].as_ref().unwrap(), 1);
    assert!(matches!(got[1], Err(StoreError::NotFound(m)) if m == missing));
    assert_eq!((*got[2].as_ref().unwrap(), bufs[2][0]), (1, b'a'));
    assert_eq!((*got[3].as_ref().unwrap(), bufs[3][0]), (1, b'b'));
    assert_eq!(bufs[0][0], b'b');
    for (i, (n, buf)) in got[4..].iter().zip(&bufs[4..]).enumerate() {
        assert_eq!(*n.as_ref().unwrap(), 4);
        assert_eq!(buf[..4], (i as u32).to_be_bytes(), "blob {i}");
    }

    // Written again: young again, as in the file store.
    let mut c = db.client();
    c.execute(
        "UPDATE anchorfs_written SET at = now() - interval '2 hours' WHERE ref = $1",
        &[&ra.as_bytes().as_slice()],
    )
    .unwrap();
    assert!(s.written_at(&ra).unwrap() < SystemTime::now() - Duration::from_secs(3600));
    assert_eq!(s.put(b"a").unwrap(), (ra, false));
    assert!(s.written_at(&ra).unwrap() > SystemTime::now() - Duration::from_secs(60));
    s.sync().unwrap();

    assert!(s.delete(&ra).unwrap());
    assert!(!s.delete(&ra).unwrap());
    assert!(matches!(s.written_at(&ra), Err(StoreError::NotFound(_))));
    assert!(!s.contains(&ra).unwrap());

    // Bytes that do not match their ref are never returned.
    c.execute(
        "UPDATE blobs SET data = 'tampered' WHERE ref = $1",
        &[&rb.as_bytes().as_slice()],
    )
    .unwrap();
    assert!(matches!(s.get(&rb), Err(StoreError::Damaged(d)) if d == rb));
    assert!(matches!(s.get_many(&[rb])[0], Err(StoreError::Damaged(_))));
    let mut buf = vec![0u8; 16];
    assert!(matches!(s.get_into(&rb, &mut buf), Err(StoreError::Damaged(d)) if d == rb));
    let mut jobs: Vec<(Ref, &mut [u8])> = vec![(rb, &mut buf)];
    assert!(matches!(s.get_many_into(&mut jobs)[0], Err(StoreError::Damaged(d)) if d == rb));
    assert_eq!(s.blob_size(&rb).unwrap(), 8);
    // A map ref of the wrong length is an error, not a panic.
    c.batch_execute("INSERT INTO anchor_map_ref (ref) VALUES ('\\x0102')")
        .unwrap();
    let e = s.anchor_map_ref().unwrap_err();
    assert!(
        matches!(e, StoreError::BadAnchorMapRef { len: 2, .. }),
        "{e}"
    );
}

/// A thread that, within two seconds, ends the connection to `db` whose
/// active statement is `LIKE pattern`; it returns how many it ended.
fn end_connection_running(db: &TestDb, pattern: &'static str) -> std::thread::JoinHandle<i64> {
    let server = db.server.clone();
    let name = db.name.clone();
    std::thread::spawn(move || {
        let mut admin = pg_common::connect(&server);
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let n: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND state = 'active'
                       AND pid <> pg_backend_pid() AND query LIKE $2",
                    &[&name, &pattern],
                )
                .unwrap()
                .get(0);
            if n > 0 {
                return n;
            }
        }
        0
    })
}

#[test]
fn a_swap_whose_connection_is_lost_mid_statement_is_resolved() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let (old, new) = (Ref::of(b"old"), Ref::of(b"new"));
    s.swap_anchor_map(None, old).unwrap();
    // Every update of the map row now takes a second, long enough to end the
    // connection running it.
    db.client()
        .batch_execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
             CREATE TRIGGER slow BEFORE UPDATE ON anchor_map_ref
               FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .unwrap();
    let killer = end_connection_running(&db, "%UPDATE anchor_map_ref%");
    // The lost attempt did not commit: the ref read back is still `old`, so the
    // conditional update is made once more, on a new connection.
    s.swap_anchor_map(Some(old), new).unwrap();
    assert_eq!(killer.join().unwrap(), 1, "the first attempt was ended");
    assert_eq!(s.anchor_map_ref().unwrap(), new);
    // From a stale ref, the same path ends in a conflict, with nothing changed.
    let e = s.swap_anchor_map(Some(old), Ref::of(b"other")).unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e}");
    assert_eq!(s.anchor_map_ref().unwrap(), new);
}

/// The nodes an update made travel with its swap: stored when the swap is, also
/// when the swap's connection is lost and the swap is made again on a new one;
/// more than fit one message are put first.
#[test]
fn a_swap_carries_the_blobs_its_map_needs() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let other = PgStore::open(&db.url, OpenMode::Existing).unwrap().0;
    let made = |tag: &str, n: usize, size: usize| -> Vec<(Ref, anchorfs::Blob)> {
        (0..n)
            .map(|i| {
                let mut b = format!("{tag} {i} ").into_bytes();
                b.resize(size, i as u8);
                (Ref::of(&b), anchorfs::Blob::from(b))
            })
            .collect()
    };
    let all_there = |blobs: &[(Ref, anchorfs::Blob)]| {
        blobs
            .iter()
            .all(|(r, b)| other.get(r).is_ok_and(|got| got == *b))
    };

    let first = made("first", 3, 300);
    s.put_and_swap(&first, None, first[0].0).unwrap();
    assert!(all_there(&first), "the blobs came with the swap");
    assert_eq!(other.anchor_map_ref().unwrap(), first[0].0);
    let timed: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM anchorfs_written WHERE ref = ANY($1)",
            &[&first
                .iter()
                .map(|(r, _)| r.as_bytes().to_vec())
                .collect::<Vec<_>>()],
        )
        .unwrap()
        .get(0);
    assert_eq!(timed, 3, "each has a write time for gc's grace");

    // A blob given twice is stored once; a stale old ref is a conflict that
    // changes no ref.
    let mut twice = made("twice", 2, 100);
    twice.push(twice[0].clone());
    let e = s
        .put_and_swap(&twice, Some(Ref::of(b"stale")), twice[1].0)
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e}");
    assert_eq!(other.anchor_map_ref().unwrap(), first[0].0);
    s.put_and_swap(&twice, Some(first[0].0), twice[1].0)
        .unwrap();
    assert!(all_there(&twice));

    // More than one message carries: put first, then swapped.
    let big = made("big", 3, 200 << 10);
    s.put_and_swap(&big, Some(twice[1].0), big[2].0).unwrap();
    assert!(all_there(&big));
    assert_eq!(other.anchor_map_ref().unwrap(), big[2].0);

    // The connection ended during the swap: read back, made again with its blobs.
    // (The statement's text as the server shows it is cut after its start.)
    db.client()
        .batch_execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
             CREATE TRIGGER slow BEFORE UPDATE ON anchor_map_ref
               FOR EACH ROW EXECUTE FUNCTION slow();",
        )
        .unwrap();
    let killer = end_connection_running(&db, "%INSERT INTO blobs%UPDATE anchor_map_ref%");
    let last = made("last", 4, 500);
    s.put_and_swap(&last, Some(big[2].0), last[3].0).unwrap();
    assert_eq!(killer.join().unwrap(), 1, "the first attempt was ended");
    assert_eq!(other.anchor_map_ref().unwrap(), last[3].0);
    assert!(all_there(&last), "the swap made again carried its blobs");
}

/// A relay between the store and the server, on a Unix socket of its own, that
/// can lose the reply to a committed swap: armed, it ends the connection that
/// gets the completion of a one-row `SELECT` (the swap's statement: the server
/// sends it with the ready-for-query that follows the statement's commit)
/// instead of passing it on, so the transaction is committed and the client
/// never hears so.
struct ReplyLosingRelay {
    dir: tempfile::TempDir,
    port: String,
    armed: Arc<std::sync::atomic::AtomicBool>,
    lost: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReplyLosingRelay {
    fn start(db: &TestDb) -> ReplyLosingRelay {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let mut c = db.client();
        let dirs: String = c
            .query_one("SHOW unix_socket_directories", &[])
            .unwrap()
            .get(0);
        let port: String = c.query_one("SHOW port", &[]).unwrap().get(0);
        let server_dir = dirs
            .split(',')
            .map(str::trim)
            .find(|d| d.starts_with('/'))
            .expect("the test server listens on a Unix socket")
            .to_string();
        let upstream = Path::new(&server_dir).join(format!(".s.PGSQL.{port}"));
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(format!(".s.PGSQL.{port}"))).unwrap();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, l) = (armed.clone(), lost.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut &c2, &mut &s2);
                    let _ = s2.shutdown(std::net::Shutdown::Both);
                });
                let (a, l) = (a.clone(), l.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = match (&server).read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let commit = b"C\0\0\0\x0dSELECT 1\0";
                        if buf[..n].windows(commit.len()).any(|w| w == commit)
                            && a.swap(false, Ordering::SeqCst)
                        {
                            l.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if (&client).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        ReplyLosingRelay {
            dir,
            port,
            armed,
            lost,
        }
    }

    /// The URL of `db` through the relay.
    fn url(&self, db: &TestDb) -> String {
        let user = db
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map_or("postgres", |(u, _)| u);
        let host = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://{user}@{host}:{}/{}", self.port, db.name)
    }
}

/// The reply to a committed swap lost with its connection: the ref read back on
/// a new connection is the new one, so the swap succeeded, once, with its blobs.
#[test]
fn a_swap_committed_whose_reply_is_lost_is_known_to_have_been_made() {
    use std::sync::atomic::Ordering;
    let Some(db) = TestDb::new() else { return };
    let first = create(&db);
    let relay = ReplyLosingRelay::start(&db);
    let s = PgStore::open(&relay.url(&db), OpenMode::Existing)
        .unwrap()
        .0;
    let (a, _) = s.put(b"first map").unwrap();
    s.swap_anchor_map(None, a).unwrap();
    let node = anchorfs::Blob::from_static(b"a node of the second map");
    let b = Ref::of(&node);
    relay.armed.store(true, Ordering::SeqCst);
    s.put_and_swap(&[(b, node.clone())], Some(a), b).unwrap();
    assert_eq!(relay.lost.load(Ordering::SeqCst), 1, "the reply was lost");
    assert_eq!(first.anchor_map_ref().unwrap(), b);
    assert_eq!(first.get(&b).unwrap(), node);
    // Not made twice: a swap from the old ref now is a conflict, and the store
    // carries on through the relay.
    let e = s.swap_anchor_map(Some(a), Ref::of(b"other")).unwrap_err();
    assert!(matches!(e, StoreError::Conflict), "{e}");
    let (c, _) = s.put(b"third map").unwrap();
    s.swap_anchor_map(Some(b), c).unwrap();
    assert_eq!(first.anchor_map_ref().unwrap(), c);
}

/// Puts commit without waiting for the server's log flush; the swap after them
/// waits for it, and its flush covers them (the module docs' argument).
#[test]
fn a_swap_flushes_the_log_past_every_put_before_it() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let mut c = db.client();
    let mut cur = None;
    for i in 0..20u32 {
        let (r, _) = s.put(format!("blob {i}").as_bytes()).unwrap();
        // Where the log's end is now: past the put's commit record.
        let written: String = c
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .unwrap()
            .get(0);
        s.swap_anchor_map(cur, r).unwrap();
        cur = Some(r);
        let flushed_past: bool = c
            .query_one(
                "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn",
                &[&written],
            )
            .unwrap()
            .get(0);
        assert!(
            flushed_past,
            "step {i}: the swap returned before the log was flushed past the put"
        );
    }
}

/// The store's connections compress with LZ4 where the server has it, both in a
/// put and in a swap's own statement; another client's session keeps the server's
/// default; every reader gets the bytes back as put.
#[test]
fn compressed_values_use_lz4_where_the_server_has_it() {
    let Some(db) = TestDb::new() else { return };
    let s = create(&db);
    let mut c = db.client();
    let has_lz4: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_settings
             WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))",
            &[],
        )
        .unwrap()
        .get(0);
    let server_default: String = c
        .query_one("SHOW default_toast_compression", &[])
        .unwrap()
        .get(0);
    // Compressible and past the size at which the server compresses (~2 KB).
    let text = |tag: &str| tag.repeat(4000).into_bytes();
    let (put, _) = s.put(&text("put ")).unwrap();
    let held = text("held in the swap ");
    let held_ref = Ref::of(&held);
    s.put_and_swap(&[(held_ref, held.clone().into())], None, held_ref)
        .unwrap();
    let method = |c: &mut postgres::Client, r: &Ref| -> String {
        c.query_one(
            "SELECT COALESCE(pg_column_compression(data), 'none') FROM blobs WHERE ref = $1",
            &[&r.as_bytes().as_slice()],
        )
        .unwrap()
        .get(0)
    };
    let want = if has_lz4 {
        "lz4"
    } else {
        server_default.as_str()
    };
    assert_eq!(method(&mut c, &put), want, "a put");
    assert_eq!(method(&mut c, &held_ref), want, "a blob put in a swap");
    // This client's own session is untouched by the store's.
    let other = text("another client ");
    let other_ref = Ref::of(&other);
    c.execute(
        "INSERT INTO blobs (ref, data) VALUES ($1, $2)",
        &[&other_ref.as_bytes().as_slice(), &other],
    )
    .unwrap();
    assert_eq!(method(&mut c, &other_ref), server_default, "another client");
    for (r, bytes) in [(put, text("put ")), (held_ref, held), (other_ref, other)] {
        assert_eq!(&s.get(&r).unwrap()[..], &bytes[..]);
    }
}

#[test]
fn a_watch_wakes_on_another_handle_s_swap_not_its_own_and_after_the_server_ends_its_connection() {
    let Some(db) = TestDb::new() else { return };
    let watcher = create(&db);
    let writer = create(&db);
    let watch = watcher
        .watch()
        .expect("the PostgreSQL store can be watched");
    // The first wake-up says "look": the listener may have missed changes
    // before it listened.
    assert!(
        watch.wait(Duration::from_secs(10)),
        "the first listen wakes"
    );
    while watch.wait(Duration::from_millis(300)) {}

    assert!(
        !watch.wait(Duration::from_millis(300)),
        "nothing changed yet"
    );
    // The watched handle's own swaps wake nobody: their writer shows them.
    for i in 0..5u8 {
        anchor::put(&watcher, b"own", Ref::of(&[i]), Timestamp::now()).unwrap();
    }
    assert!(
        !watch.wait(Duration::from_millis(500)),
        "its own swaps do not wake it"
    );
    let start = std::time::Instant::now();
    anchor::put(&writer, b"a", Ref::of(b"one"), Timestamp::now()).unwrap();
    assert!(
        watch.wait(Duration::from_secs(10)),
        "another handle's swap wakes it"
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "heard after {took:?}");

    // A swap that loses its race changes nothing, and may or may not wake it;
    // after it settles, nothing more is reported.
    let cur = writer.anchor_map_ref().unwrap();
    assert!(matches!(
        writer.swap_anchor_map(Some(Ref::of(b"not the map")), cur),
        Err(StoreError::Conflict)
    ));
    while watch.wait(Duration::from_millis(300)) {}

    // The server ends the listening connection (as a restart would): the listener
    // connects again, wakes the watch, and hears the next swap.
    assert!(db.terminate_connections() >= 1);
    assert!(
        watch.wait(Duration::from_secs(10)),
        "listening again wakes it"
    );
    while watch.wait(Duration::from_millis(300)) {}
    anchor::put(&writer, b"a", Ref::of(b"two"), Timestamp::now()).unwrap();
    assert!(
        watch.wait(Duration::from_secs(10)),
        "a swap after the reconnection wakes it"
    );
}

#[test]
fn settings_are_one_row_of_a_table_of_ours_recorded_once() {
    use anchorfs::store::StoreSettings;
    let Some(db) = TestDb::new() else { return };
    let o = store::open(db.url.as_ref(), OpenMode::Create).unwrap();
    assert!(o.created && o.fresh);
    assert_eq!(
        o.store.recorded_settings().unwrap(),
        Some(StoreSettings::NEW_STORE)
    );
    let row: String = db
        .client()
        .query_one("SELECT settings FROM anchorfs_settings", &[])
        .unwrap()
        .get(0);
    assert_eq!(row, StoreSettings::NEW_STORE.encode());
    // A second record keeps the first, from another handle too.
    let s = create(&db);
    assert_eq!(
        s.record_settings(&StoreSettings::GO).unwrap(),
        StoreSettings::NEW_STORE
    );
    let e = store::create(db.url.as_ref(), &StoreSettings::GO)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::AlreadyAStore { .. }), "{e}");
    let n: i64 = db
        .client()
        .query_one("SELECT count(*) FROM anchorfs_settings", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A record that does not decode stops writers, with a typed error.
    db.client()
        .execute(
            "UPDATE anchorfs_settings SET settings = 'anchorfs-settings 9'",
            &[],
        )
        .unwrap();
    match s.settings() {
        Err(StoreError::BadSettings { store, .. }) => {
            assert!(store.contains("anchorfs_settings"), "{store}")
        }
        other => panic!("{other:?}"),
    }
    assert!(anchorfs::content::store(&s, &b"data"[..]).is_err());
}

#[test]
fn a_database_go_made_has_no_settings_and_gets_none() {
    use anchorfs::store::StoreSettings;
    let Some(db) = TestDb::new() else { return };
    db.client().batch_execute(GO_DDL).unwrap();
    let go_tables = ["blobs", "anchor_map_ref"];
    let before = described_tables(&db, &go_tables);
    let o = store::open(db.url.as_ref(), OpenMode::Create).unwrap();
    assert!(!o.created && !o.fresh, "the store was there");
    assert_eq!(o.store.recorded_settings().unwrap(), None);
    assert_eq!(o.store.settings().unwrap(), StoreSettings::GO);
    assert!(table_names(&db).contains("anchorfs_settings"));
    assert_eq!(
        described_tables(&db, &go_tables),
        before,
        "Go's tables untouched"
    );
    let e = store::create(db.url.as_ref(), &StoreSettings::NEW_STORE)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::AlreadyAStore { .. }), "{e}");
    assert_eq!(o.store.recorded_settings().unwrap(), None);
}
