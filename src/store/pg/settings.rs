//! The store's settings ([`crate::store::settings`]) in a table of our own,
//! `anchorfs_settings`: one row, its record as text. No row: Go's settings.
//! Go's tables are not touched.
//!
//! The record is inserted only if there is no row (`ON CONFLICT DO NOTHING` on
//! the row's always-true `singleton` key), so two first writers agree on one,
//! and committed with `synchronous_commit = on`, so it is durable before any
//! writer uses it. Both calls may be repeated on a new connection. Locks: none
//! of their own.

use super::{PgStore, StoreError};
use crate::store::StoreSettings;

const READ: &str = "SELECT settings FROM anchorfs_settings";

const INSERT: &str = "INSERT INTO anchorfs_settings (settings) VALUES ($1) \
                      ON CONFLICT (singleton) DO NOTHING";

impl PgStore {
    /// The recorded settings, if any.
    pub(super) fn read_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        let op = || format!("reading the settings of {}", self.label());
        let text = self.pool.run(&op, |c| {
            let st = c.prepared(READ)?;
            match c.client().query_opt(&st, &[])? {
                Some(row) => Ok(Some(row.try_get::<_, String>(0)?)),
                None => Ok(None),
            }
        })?;
        self.decode_settings(text)
    }

    /// Records `settings` unless a record is there; returns the one in force.
    pub(super) fn insert_settings(
        &self,
        settings: &StoreSettings,
    ) -> Result<StoreSettings, StoreError> {
        let op = || format!("recording the settings of {}", self.label());
        let record = settings.encode();
        let text = self.pool.run(&op, |c| {
            let mut tx = c.client().transaction()?;
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
            tx.execute(INSERT, &[&record])?;
            let row = tx.query_opt(READ, &[])?;
            let text = match row {
                Some(row) => Some(row.try_get::<_, String>(0)?),
                None => None,
            };
            tx.commit()?;
            Ok(text)
        })?;
        match self.decode_settings(text)? {
            Some(s) => Ok(s),
            None => Err(StoreError::backend(
                op(),
                true,
                "the settings row is missing after it was inserted",
            )),
        }
    }

    fn decode_settings(&self, text: Option<String>) -> Result<Option<StoreSettings>, StoreError> {
        text.map(|t| {
            StoreSettings::decode(t.as_bytes()).map_err(|source| StoreError::BadSettings {
                store: format!("{} table anchorfs_settings", self.label()),
                source,
            })
        })
        .transpose()
    }
}
