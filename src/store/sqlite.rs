//! The SQLite backend: the embedded default, so Switchboard runs with no database set up.
//! WAL mode lets readers proceed while one writer commits; foreign keys are enforced.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::Backend;
use super::StoreError;
use super::sql::sql_store;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Unavailable)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let in_memory = is_in_memory(url);
        if !in_memory && let Some(parent) = options.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        // An in-memory database lives in its one connection: keep exactly one, forever.
        let pool = if in_memory {
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(max_connections)
        }
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(StoreError::Unavailable)?;
        Ok(Self { pool })
    }

    /// The pool, for tests and tools that inspect the raw tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The database file a `sqlite:` URL names, if it names one.
pub fn database_path(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    (!is_in_memory(url)).then(|| options.get_filename().to_owned())
}

/// `sqlite::memory:` and `sqlite:file:x?mode=memory` name databases that exist only in the process.
pub fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

sql_store!(SqliteStore, Backend::Sqlite, MIGRATOR);
