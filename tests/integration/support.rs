//! Test databases and helpers shared by the suites.

#[path = "../common/login.rs"]
pub mod login;
#[path = "../common/processes.rs"]
mod processes;
#[path = "../common/replies.rs"]
pub mod replies;
pub use processes::{PrivatePg, Server};

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::Connection as _;
use switchboard::domain::{AccessToken, ClientSlug, PageId};
use switchboard::secrets::vault::{self, KeyId, KeyRing};
use switchboard::store::{self, Client, NewIntegration, Store};

/// How long what a test waits for may take on a loaded machine before the test fails.
pub const WITHIN: Duration = Duration::from_secs(10);

/// Polls `check` until it gives `Ok`, within [`WITHIN`]; then panics with `what` and the last `Err` (what
/// was seen instead). The one way the tests wait for something to happen.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_within(WITHIN, what, check).await
}

/// [`eventually`], for what may take longer (a process starting or stopping, a large batch).
pub async fn eventually_within<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if started.elapsed() >= within => panic!("{what}: not within {within:?}; {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// The PostgreSQL server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    kind: Kind,
}

enum Kind {
    Postgres { name: String, admin: String },
    Sqlite { dir: tempfile::TempDir, file: PathBuf },
}

impl TestDb {
    pub async fn postgres() -> Self {
        Self::postgres_on(&admin_url()).await
    }

    /// A fresh database on the server `admin` connects to.
    pub async fn postgres_on(admin: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("sb_test_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), rand_suffix());
        let admin = admin.to_owned();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin} (set DATABASE_URL): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        let url = database_url(&admin, &name);
        let store = store::connect(&url, 5).await.unwrap();
        store.migrate().await.unwrap();
        Self { url, store, kind: Kind::Postgres { name, admin } }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchboard.db");
        let url = format!("sqlite:{}", file.display());
        let store = store::connect(&url, 5).await.unwrap();
        store.migrate().await.unwrap();
        Self { url, store, kind: Kind::Sqlite { dir, file } }
    }

    /// Every byte the database holds for `client_integrations`, as a dump would show it: the rows as
    /// PostgreSQL's text form (bytea in hex), or the SQLite database and WAL files as they are on disk.
    pub async fn raw_integration_bytes(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT t::text FROM client_integrations t").fetch_all(&mut conn).await.unwrap();
                rows.into_iter().flat_map(|(r,)| r.into_bytes()).collect()
            }
            Kind::Sqlite { file, .. } => {
                let mut bytes = std::fs::read(file).unwrap();
                let mut wal = file.clone().into_os_string();
                wal.push("-wal");
                if let Ok(w) = std::fs::read(PathBuf::from(wal)) {
                    bytes.extend(w);
                }
                bytes
            }
        }
    }

    /// Rows in `table`, counted directly.
    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT CAST(count(*) AS TEXT) FROM {table}")).await.unwrap().parse().unwrap()
    }

    /// The first column of the first row of `sql` (a text value), read directly.
    pub async fn scalar(&self, sql: &str) -> Option<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let row: Option<(Option<String>,)> = match self.kind {
            Kind::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_as(sql).fetch_optional(&mut conn).await.unwrap()
            }
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_as(sql).fetch_optional(&mut conn).await.unwrap()
            }
        };
        row.and_then(|(value,)| value)
    }

    /// Runs one SQL statement directly (PostgreSQL test databases).
    pub async fn exec(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
    }

    /// The directory a SQLite test database lives in.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::Sqlite { dir, .. } => Some(dir.path()),
            Kind::Postgres { .. } => None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Kind::Postgres { name, admin } = &self.kind {
            let (name, admin) = (name.clone(), admin.clone());
            // Drop runs outside any runtime we may block: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// `admin` with its database name replaced by `name`.
pub fn database_url(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn rand_suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Generates a `postgres` and a `sqlite` test for each named `async fn(TestDb)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::support::TestDb::postgres().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::support::TestDb::sqlite().await).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

pub fn page(id: &str) -> PageId {
    PageId::parse(id).unwrap()
}

pub fn key_entry(id: &str) -> String {
    use secrecy::ExposeSecret as _;
    vault::generate_key_entry(&KeyId::parse(id).unwrap()).expose_secret().to_owned()
}

pub fn ring(spec: &str) -> KeyRing {
    KeyRing::parse(&SecretString::from(spec.to_owned())).unwrap()
}

pub async fn client(store: &Store, slug: &str) -> Client {
    store.create_client(&format!("Client {slug}"), &ClientSlug::parse(slug).unwrap()).await.unwrap()
}

/// A new integration for `page_id` with `token` sealed under `keys`' current key.
pub fn new_integration(keys: &KeyRing, client: &Client, page_id: &str, token: &str) -> NewIntegration {
    let page = page(page_id);
    NewIntegration {
        client_id: client.id,
        sealed_token: keys.seal(&page, &AccessToken::new(token.to_owned())).unwrap(),
        page_id: page,
        page_name: Some(format!("Page {page_id}")),
        instagram_account_id: None,
        permissions_granted: vec!["pages_messaging".to_owned(), "pages_manage_metadata".to_owned()],
        token_expires_at: None,
        connected_by: Some("10215241773831025".to_owned()),
    }
}
