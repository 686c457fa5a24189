//! The tables: Go's two, verbatim, and this store's own, each checked against
//! what the database has before anything is used or made.
//!
//! Go's `store/pg` keeps blobs in `blobs` and the anchor map ref in the one row
//! of `anchor_map_ref` (no row: no map yet). Its DDL is [`GO_SCHEMA`], byte for
//! byte, so either implementation reads and writes a database the other made.
//! What only this store needs lives in tables named `anchorfs_*`
//! ([`OUR_SCHEMA`]); Go's tables are never altered. A database whose tables of
//! these names have other columns, types, defaults or constraints is refused
//! before anything is changed.

use postgres::Client;

/// The schema of Go's `store/pg`, as it runs it (`CREATE TABLE IF NOT EXISTS`).
pub const GO_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
  ref BYTEA PRIMARY KEY NOT NULL,
  data BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS anchor_map_ref (
  ref BYTEA NOT NULL,
  singleton BOOLEAN NOT NULL UNIQUE DEFAULT TRUE CHECK (singleton)
);
";

/// This store's own tables: when each blob was last written (for gc's grace
/// period; a blob Go wrote has no row until gc first asks), the one row that
/// `sync` rewrites to make the server flush its log, and the one row of the
/// store's settings (none: Go's; see `settings.rs`).
pub const OUR_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS anchorfs_written (
  ref BYTEA PRIMARY KEY NOT NULL,
  at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE IF NOT EXISTS anchorfs_sync (
  singleton BOOLEAN PRIMARY KEY NOT NULL DEFAULT TRUE CHECK (singleton),
  at TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE TABLE IF NOT EXISTS anchorfs_settings (
  singleton BOOLEAN PRIMARY KEY NOT NULL DEFAULT TRUE CHECK (singleton),
  settings TEXT NOT NULL
);
";

/// Taken (as a transaction's advisory lock) while the tables are made, so two
/// stores opened at once do not race in `CREATE TABLE IF NOT EXISTS`.
const DDL_LOCK: i64 = 0x616e_6368_6f72_6673; // "anchorfs"

/// One table as the schema has it: its columns `(name, type, nullable,
/// default)` in order, and its constraints other than NOT NULL, each as
/// `KIND (columns or clause)`.
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Whether it is one of Go's.
    pub go: bool,
    columns: &'static [(&'static str, &'static str, bool, Option<&'static str>)],
    constraints: &'static [&'static str],
}

/// Every table, Go's first.
pub const TABLES: &[Table] = &[
    Table {
        name: "blobs",
        go: true,
        columns: &[
            ("ref", "bytea", false, None),
            ("data", "bytea", false, None),
        ],
        constraints: &["PRIMARY KEY (ref)"],
    },
    Table {
        name: "anchor_map_ref",
        go: true,
        columns: &[
            ("ref", "bytea", false, None),
            ("singleton", "boolean", false, Some("true")),
        ],
        constraints: &["CHECK (singleton)", "UNIQUE (singleton)"],
    },
    Table {
        name: "anchorfs_written",
        go: false,
        columns: &[
            ("ref", "bytea", false, None),
            ("at", "timestamp with time zone", false, None),
        ],
        constraints: &["PRIMARY KEY (ref)"],
    },
    Table {
        name: "anchorfs_sync",
        go: false,
        columns: &[
            ("singleton", "boolean", false, Some("true")),
            ("at", "timestamp with time zone", false, None),
        ],
        constraints: &["CHECK (singleton)", "PRIMARY KEY (singleton)"],
    },
    Table {
        name: "anchorfs_settings",
        go: false,
        columns: &[
            ("singleton", "boolean", false, Some("true")),
            ("settings", "text", false, None),
        ],
        constraints: &["CHECK (singleton)", "PRIMARY KEY (singleton)"],
    },
];

/// What a database holds of the schema.
pub struct Found {
    /// The names of the tables present (and matching).
    pub present: Vec<&'static str>,
}

impl Found {
    /// Whether `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.present.contains(&name)
    }
}

/// Why the tables are not what they must be.
#[derive(Debug)]
pub enum CheckError {
    /// A query failed.
    Db(postgres::Error),
    /// A table has other columns or constraints: what differs.
    Mismatch(String),
}

impl From<postgres::Error> for CheckError {
    fn from(e: postgres::Error) -> CheckError {
        CheckError::Db(e)
    }
}

const COLUMNS: &str = "
SELECT table_name::text, column_name::text, data_type::text, is_nullable::text = 'YES',
       column_default::text
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1)
ORDER BY table_name, ordinal_position";

const CONSTRAINTS: &str = "
SELECT tc.table_name::text, tc.constraint_type::text,
       COALESCE(cc.check_clause::text,
                string_agg(kcu.column_name::text, ', ' ORDER BY kcu.ordinal_position), '')
FROM information_schema.table_constraints tc
LEFT JOIN information_schema.key_column_usage kcu
  ON kcu.constraint_schema = tc.constraint_schema
 AND kcu.constraint_name = tc.constraint_name
 AND kcu.table_name = tc.table_name
LEFT JOIN information_schema.check_constraints cc
  ON cc.constraint_schema = tc.constraint_schema
 AND cc.constraint_name = tc.constraint_name
WHERE tc.table_schema = current_schema() AND tc.table_name = ANY($1)
GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type, cc.check_clause";

/// Compares the database's tables of these names with [`TABLES`]; changes
/// nothing.
pub fn check(client: &mut Client) -> Result<Found, CheckError> {
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    let mut columns: Vec<(String, String, String, bool, Option<String>)> = Vec::new();
    for row in client.query(COLUMNS, &[&names])? {
        columns.push((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        ));
    }
    let mut constraints: Vec<(String, String)> = Vec::new();
    for row in client.query(CONSTRAINTS, &[&names])? {
        let table: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let what: String = row.try_get(2)?;
        if kind == "CHECK" && what.ends_with(" IS NOT NULL") {
            continue; // NOT NULL, which the columns already say
        }
        let what = what.trim_start_matches('(').trim_end_matches(')');
        constraints.push((table, format!("{kind} ({what})")));
    }
    let mut present = Vec::new();
    for t in TABLES {
        let have: Vec<_> = columns.iter().filter(|c| c.0 == t.name).collect();
        if have.is_empty() {
            continue;
        }
        let want: Vec<String> = t
            .columns
            .iter()
            .map(|c| describe(c.0, c.1, c.2, c.3))
            .collect();
        let got: Vec<String> = have
            .iter()
            .map(|c| describe(&c.1, &c.2, c.3, c.4.as_deref()))
            .collect();
        if got != want {
            return Err(CheckError::Mismatch(format!(
                "table {} has columns ({}), not ({})",
                t.name,
                got.join(", "),
                want.join(", ")
            )));
        }
        let mut got: Vec<&str> = constraints
            .iter()
            .filter(|c| c.0 == t.name)
            .map(|c| c.1.as_str())
            .collect();
        got.sort_unstable();
        if got != t.constraints {
            return Err(CheckError::Mismatch(format!(
                "table {} has constraints [{}], not [{}]",
                t.name,
                got.join(", "),
                t.constraints.join(", ")
            )));
        }
        present.push(t.name);
    }
    Ok(Found { present })
}

fn describe(name: &str, ty: &str, nullable: bool, default: Option<&str>) -> String {
    let mut s = format!("{name} {ty}");
    if !nullable {
        s.push_str(" NOT NULL");
    }
    if let Some(d) = default {
        s.push_str(" DEFAULT ");
        s.push_str(d);
    }
    s
}

/// Makes the missing tables: Go's (only with `go`), then ours, in one durable
/// transaction under an advisory lock. Run only after [`check`] passed.
pub fn create(client: &mut Client, go: bool) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL synchronous_commit = on")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])?;
    if go {
        tx.batch_execute(GO_SCHEMA)?;
    }
    tx.batch_execute(OUR_SCHEMA)?;
    tx.commit()
}
