//! Test databases and helpers shared by the suites.

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// A running `serve` on a free port; killed if the test ends early.
pub struct Server {
    child: Child,
    addr: String,
    metrics: Option<String>,
    log: std::sync::mpsc::Receiver<String>,
    /// What `logged` read from `log` so far.
    seen: std::sync::Mutex<Vec<String>>,
}

impl Server {
    /// Starts `serve` on 127.0.0.1:0 and waits for the address it logs.
    pub fn start(mut cmd: Command) -> Result<Self, String> {
        cmd.arg("serve")
            .env("SWITCHBOARD_BIND", "127.0.0.1:0")
            .env("SWITCHBOARD_METRICS_BIND", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let mut addr = None;
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    if let Some(a) = line.split(" addr=").nth(1).filter(|_| line.contains("listening")) {
                        addr = Some(a.split_whitespace().next().unwrap().to_owned());
                    } else if let Some(m) = line.split(" metrics=").nth(1).filter(|_| line.contains("/metrics")) {
                        let metrics = Some(m.split_whitespace().next().unwrap().to_owned());
                        let addr = addr.take().expect("the public address is logged first");
                        return Ok(Self { child, addr, metrics, log: rx, seen: Default::default() });
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let status = child.wait().unwrap();
                    return Err(format!("serve exited ({status}) before listening:\n{}", seen.join("\n")));
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address it listens on, host:port.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr.parse().unwrap()
    }

    /// `/metrics` on its own listener.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics.as_deref().unwrap_or_default())
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm_and_wait()
    }

    /// SIGTERM, and the process must exit 0; its log is shown if it does not.
    /// Returns what the process logged.
    pub fn stop_cleanly(mut self) -> Vec<String> {
        let status = self.sigterm_and_wait();
        // The reader thread may still hold the last lines; give it a moment.
        std::thread::sleep(Duration::from_millis(100));
        let logged = self.logged("");
        // The reason comes last: a CI log shows a failure's tail.
        assert!(status.success(), "{}\n(that was its log) serve exited {status} on SIGTERM", logged.join("\n"));
        logged
    }

    fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{}\n(that was its log) serve did not stop within 10 s of SIGTERM", self.logged("").join("\n"));
    }
}

impl Server {
    /// SIGKILL: the process dies at once, with no shutdown of any kind.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Lines the process logged so far that contain `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(self.log.try_iter());
        seen.iter().filter(|line| line.contains(needle)).cloned().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while self.log.try_recv().is_ok() {}
    }
}

/// A PostgreSQL server of a test's own (initdb in a temporary directory, on a free loopback port), so a
/// test can stop and start it. Uses the server binaries of the installed PostgreSQL (`PG_BIN` overrides
/// the directory); as root, they run as the `postgres` user, as PostgreSQL requires.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePg {
    pub fn start() -> Self {
        let bin = std::env::var_os("PG_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .expect("PostgreSQL server binaries (apt-get install postgresql) or PG_BIN")
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|b| b.join("initdb").exists())
                .collect();
            found.sort();
            found.pop().expect("initdb under /usr/lib/postgresql/*/bin (or set PG_BIN)")
        });
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Self { dir, bin, port };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The admin URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["start", "-w", "-t", "60", "-D", &self.data(), "-l", &log, "-o", &options]);
    }

    /// Stops the server (fast: open connections are cut, running transactions roll back).
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &self.data()]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["stop", "-m", "immediate", "-D", data.as_str()];
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
