//! The `switchboard` binary as an operator runs it: real processes, a clean environment, real databases.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Server, TestDb, client, eventually_within, key_entry, new_integration, ring};

/// Meta's settings, and both listeners on free ports: two tests' `serve` runs that fail after binding must not
/// collide on a default port (that failure would replace the error a test checks for).
const APP_ENV: [(&str, &str); 5] = [
    ("META_APP_ID", "1234567890"),
    ("META_APP_SECRET", "fixture-app-secret-do-not-use"),
    ("META_VERIFY_TOKEN", "vt"),
    ("SWITCHBOARD_BIND", "127.0.0.1:0"),
    ("SWITCHBOARD_METRICS_BIND", "127.0.0.1:0"),
];

/// The binary with an empty environment, run in `dir`.
fn switchboard(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.current_dir(dir).env_clear();
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("the binary runs")
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure reported as exactly one line on stderr containing `needle`, with `code`.
fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected, got: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[test]
fn keygen_prints_an_entry_the_vault_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(switchboard(dir.path()).args(["keygen", "--id", "prod-2026"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = stdout(&out).trim().to_owned();
    assert!(entry.starts_with("prod-2026:"), "{entry}");
    assert_eq!(ring(&entry).current_key_id().as_str(), "prod-2026");

    let bad = run(switchboard(dir.path()).args(["keygen", "--id", "no spaces"]));
    assert_one_line_error(&bad, 2, "--id");
}

#[test]
fn serve_refuses_to_start_without_meta_settings_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(switchboard(dir.path()).arg("serve"));
    assert_one_line_error(&out, 2, "META_APP_SECRET");
    assert!(stderr(&out).contains("META_VERIFY_TOKEN") && stderr(&out).contains("META_APP_ID"));

    let out = run(switchboard(dir.path()).arg("serve").envs(APP_ENV).env("META_VERIFY_TOKEN", ""));
    assert_one_line_error(&out, 2, "META_VERIFY_TOKEN");
    assert!(!stderr(&out).contains("META_APP_SECRET"), "only what is missing is named");
    assert!(!dir.path().join("data").exists(), "nothing was created before refusing");
}

#[test]
fn invalid_settings_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("SWITCHBOARD_BIND", "nope")], "server.bind (SWITCHBOARD_BIND)"),
        (&[("SWITCHBOARD_PUBLIC_URL", "ftp://x")], "server.public_url (SWITCHBOARD_PUBLIC_URL)"),
        (&[("DATABASE_URL", "mysql://localhost/x")], "database.url (DATABASE_URL)"),
        (&[("META_API_VERSION", "25.0")], "meta.api_version (META_API_VERSION)"),
        (&[("META_GRAPH_URL", "not a url")], "meta.graph_url (META_GRAPH_URL)"),
        (&[("META_APP_ID", "abc")], "meta.app_id (META_APP_ID)"),
        (&[("META_APP_SECRET", "short")], "meta.app_secret (META_APP_SECRET)"),
        (&[("SWITCHBOARD__DATABASE__MAX_CONNECTIONS", "0")], "database.max_connections"),
        (&[("SWITCHBOARD__DATABASE__MAX_CONNECTIONS", "many")], "database.max_connections"),
        (&[("SWITCHBOARD__SERVER__NO_SUCH_KEY", "1")], "no_such_key"),
        (&[("SWITCHBOARD__INBOX__RETENTION_DAYS", "3")], "inbox.retention_days"),
        (&[("SWITCHBOARD__INBOX__RECEIPTS", "disk")], "inbox.receipts"),
        (&[("SWITCHBOARD__INBOX__COMMIT_WRITERS", "0")], "inbox.commit_writers"),
        (&[("SWITCHBOARD__INBOX__COMMIT_WRITERS", "10")], "below database.max_connections (10)"),
        // The default database is SQLite: a cluster needs PostgreSQL.
        (
            &[("SWITCHBOARD_CLUSTER_MODE", "postgres")],
            "cluster.mode (SWITCHBOARD_CLUSTER_MODE): \"postgres\" needs a PostgreSQL",
        ),
        (&[("SWITCHBOARD_CLUSTER_MODE", "raft")], "cluster.mode"),
        (&[("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", "0")], "cluster.lease_ttl_secs"),
    ];
    for (env, needle) in cases {
        let out = run(switchboard(dir.path()).arg("migrate").envs(env.iter().copied()));
        assert_one_line_error(&out, 2, needle);
    }

    let out = run(switchboard(dir.path()).args(["--config", "absent.toml", "migrate"]));
    assert_one_line_error(&out, 2, "absent.toml does not exist");

    std::fs::write(dir.path().join("typo.toml"), "[server]\nbnid = \"127.0.0.1:1\"\n").unwrap();
    let out = run(switchboard(dir.path()).args(["--config", "typo.toml", "migrate"]));
    assert_one_line_error(&out, 2, "bnid");

    std::fs::write(dir.path().join("ok.toml"), "[database]\nurl = \"sqlite:from-file.db\"\n").unwrap();
    let out = run(switchboard(dir.path()).args(["--config", "ok.toml", "migrate"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("from-file.db").exists(), "the config file's database was used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sqlite_fails_closed_without_a_key_and_runs_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(switchboard(dir.path()).arg("serve").envs(APP_ENV));
    assert_one_line_error(&out, 1, "no encryption key configured");
    assert!(!dir.path().join("data/switchboard.db.keys").exists(), "only `switchboard demo` makes a key of its own");

    let mut cmd = switchboard(dir.path());
    cmd.envs(APP_ENV).env("SWITCHBOARD_ENCRYPTION_KEYS", key_entry("k1"));
    let server = Server::start(cmd).unwrap();
    assert_eq!(get(&server.url("/healthz")).await, (200, "ok\n".to_owned()));
    assert_eq!(get(&server.url("/readyz")).await, (200, "ready\n".to_owned()));
    assert_eq!(get(&server.url("/nope")).await.0, 404);
    assert_eq!(get(&server.url("/metrics")).await.0, 404, "metrics are not served on the public listener");
    let (status, metrics) = get(&server.metrics_url()).await;
    assert!(status == 200 && metrics.contains("switchboard_http_requests_total"), "{status}: {metrics}");
    server.stop_cleanly();
    assert!(dir.path().join("data/switchboard.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_closes_idle_and_unused_connections_at_once_instead_of_waiting_out_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = switchboard(dir.path());
    cmd.envs(APP_ENV)
        .env("SWITCHBOARD_ENCRYPTION_KEYS", key_entry("k1"))
        .env("SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECS", "60");
    let server = Server::start(cmd).unwrap();
    // A client pool's spares (connected, nothing sent yet) and a kept-alive connection after one request.
    let spares: Vec<std::net::TcpStream> =
        (0..3).map(|_| std::net::TcpStream::connect(server.addr()).unwrap()).collect();
    let pooled = reqwest::Client::new();
    assert_eq!(pooled.get(server.url("/healthz")).send().await.unwrap().status(), 200);

    let stopping = std::time::Instant::now();
    let status = server.terminate();
    let took = stopping.elapsed();
    assert!(status.success(), "serve exited {status} on SIGTERM");
    assert!(took < Duration::from_secs(5), "the drain waited {took:?} for connections that carry no request");
    for mut spare in spares {
        use std::io::{ErrorKind, Read as _};
        spare.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let read = spare.read(&mut [0u8; 64]);
        let still_open = read.as_ref().is_err_and(|e| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        assert!(!still_open && !matches!(read, Ok(n) if n > 0), "a spare connection is closed, not answered: {read:?}");
    }
}

#[test]
fn a_database_url_is_never_printed_with_its_password() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://switchboard:hunter2-s3cret@127.0.0.1:1/switchboard",
        "postgres://switchboard@127.0.0.1:1/switchboard?password=hunter2-s3cret",
        "postgres://switchboard@127.0.0.1:1/switchboard?sslmode=disable&PASSWORD=hunter2-s3cret",
        "postgres://switchboard:hunter2-s3cret@[not-an-address/switchboard",
        "postgres://switchboard:hunter2-s3cret@127.0.0.1:notaport/switchboard",
    ] {
        let out = run(switchboard(dir.path()).arg("migrate").env("DATABASE_URL", url));
        let stderr = stderr(&out);
        assert!(!out.status.success(), "{url}");
        assert!(!stderr.contains("hunter2") && !stdout(&out).contains("hunter2"), "{url}: {stderr}");
        assert!(stderr.contains("database"), "the error still says what failed: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_fails_closed_without_a_key_and_runs_with_one() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();

    let out = run(switchboard(dir.path()).arg("serve").envs(APP_ENV).env("DATABASE_URL", &db.url));
    assert_one_line_error(&out, 1, "no encryption key configured");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no key file was generated for PostgreSQL");

    let out = run(switchboard(dir.path())
        .arg("serve")
        .envs(APP_ENV)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_ENCRYPTION_KEYS", "k1:dG9vLXNob3J0"));
    assert_one_line_error(&out, 1, "must be 32 bytes");

    let mut cmd = switchboard(dir.path());
    cmd.envs(APP_ENV).env("DATABASE_URL", &db.url).env("SWITCHBOARD_ENCRYPTION_KEYS", key_entry("k1"));
    let server = Server::start(cmd).unwrap();
    assert_eq!(get(&server.url("/readyz")).await, (200, "ready\n".to_owned()));
    server.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_when_stored_tokens_use_an_unknown_key() {
    let db = TestDb::postgres().await;
    let acme = client(&db.store, "acme").await;
    db.store.upsert_integration(&new_integration(&ring(&key_entry("retired")), &acme, "1", "t")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(switchboard(dir.path())
        .arg("serve")
        .envs(APP_ENV)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_ENCRYPTION_KEYS", key_entry("current")));
    assert_one_line_error(&out, 1, "key id(s) retired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_user_and_integration_commands_work_on_sqlite() {
    let db = TestDb::sqlite().await;
    let dir = db.dir().unwrap().to_owned();
    let sb = || {
        let mut cmd = switchboard(&dir);
        cmd.env("DATABASE_URL", &db.url);
        cmd
    };

    let out = run(sb().args(["client", "add", "--name", "Woodstock Outlet"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("with slug woodstock-outlet"), "{}", stdout(&out));
    assert_one_line_error(&run(sb().args(["client", "add", "--name", "Woodstock Outlet"])), 2, "already exists");
    assert_one_line_error(&run(sb().args(["client", "add", "--name", "RK", "--slug", "Rural King"])), 2, "--slug");
    assert!(run(sb().args(["client", "add", "--name", "Rural King"])).status.success());
    let listed: serde_json::Value =
        serde_json::from_slice(&run(sb().args(["client", "list", "--json"])).stdout).unwrap();
    let slugs: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["rural-king", "woodstock-outlet"]);

    let password = "a long enough passphrase\n";
    let out = run_with_stdin(sb().args(["user", "add", "--email", "Ops@Example.com", "--role", "operator"]), password);
    assert!(out.status.success(), "{}", stderr(&out));
    let user = db.store.user_by_email(&switchboard::domain::Email::parse("ops@example.com").unwrap()).await.unwrap();
    let user = user.expect("the operator was stored");
    assert!(
        switchboard::secrets::password::verify("a long enough passphrase".to_owned().into(), user.password_hash)
            .await
            .unwrap()
    );

    let add_client_user = ["user", "add", "--email", "owner@woodstock.example", "--role", "client"];
    assert_one_line_error(&run_with_stdin(sb().args(add_client_user), password), 2, "--client SLUG");
    let out = run_with_stdin(sb().args(add_client_user).args(["--client", "nobody"]), password);
    assert_one_line_error(&out, 2, "no client with slug nobody");
    let out = run_with_stdin(sb().args(add_client_user).args(["--client", "woodstock-outlet"]), "short\n");
    assert_one_line_error(&out, 2, "at least 12 characters");
    assert_one_line_error(&run(sb().args(add_client_user).args(["--client", "woodstock-outlet"])), 2, "no password");
    let out = run_with_stdin(sb().args(add_client_user).args(["--client", "woodstock-outlet"]), password);
    assert!(stdout(&out).contains("for client woodstock-outlet"), "{}", stderr(&out));
    let op_with_client = ["user", "add", "--email", "x@y.example", "--role", "operator", "--client", "rural-king"];
    assert_one_line_error(&run_with_stdin(sb().args(op_with_client), password), 2, "drop --client");
    assert_one_line_error(
        &run_with_stdin(sb().args(["user", "add", "--email", "nope", "--role", "operator"]), password),
        2,
        "--email",
    );

    let clients = db.store.list_clients().await.unwrap();
    let wo = clients.iter().find(|c| c.slug.as_str() == "woodstock-outlet").unwrap();
    let token = "EAAGplaintextTokenNeverPrinted";
    db.store.upsert_integration(&new_integration(&ring(&key_entry("k1")), wo, "104711112233445", token)).await.unwrap();
    let out = run(sb().args(["integration", "list", "--json"]));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["page_id"], "104711112233445");
    assert_eq!(listed[0]["client_slug"], "woodstock-outlet");
    assert_eq!(listed[0]["status"], "connected");
    assert_eq!(listed[0]["token_expires_at"], serde_json::Value::Null);
    assert_eq!(listed[0]["token_key_id"], "k1");
    let table = stdout(&run(sb().args(["integration", "list"])));
    assert!(table.contains("104711112233445") && table.contains("woodstock-outlet") && table.contains("never"));
    for text in [stdout(&out), table] {
        assert!(!text.contains(token) && !text.contains("sealed"), "{text}");
    }

    let audit = db.store.recent_audit(10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["user.created", "user.created", "client.created", "client.created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_reports_counts_and_is_idempotent_on_postgres() {
    let db = TestDb::postgres().await;
    let old = key_entry("old");
    let acme = client(&db.store, "acme").await;
    for i in 0..3 {
        db.store.upsert_integration(&new_integration(&ring(&old), &acme, &format!("{}", 10 + i), "t")).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let new = key_entry("new");
    let rotate = || {
        run(switchboard(dir.path())
            .args(["rotate-keys", "--batch-size", "2"])
            .env("DATABASE_URL", &db.url)
            .env("SWITCHBOARD_ENCRYPTION_KEYS", format!("{new},{old}")))
    };
    let out = rotate();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("rotated 3 secret(s) to key new"), "{}", stdout(&out));
    assert!(stdout(&rotate()).contains("rotated 0 secret(s)"));
    assert_eq!(db.store.token_key_ids().await.unwrap(), vec!["new"]);

    let out = run(switchboard(dir.path())
        .arg("rotate-keys")
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_ENCRYPTION_KEYS", &old));
    assert_one_line_error(&out, 1, "key id(s) new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_and_rate_commands_store_per_client_settings() {
    use switchboard::store::ResponderSetting;

    let db = TestDb::sqlite().await;
    let dir = db.dir().unwrap().to_owned();
    let entry = key_entry("k1");
    let sb = || {
        let mut cmd = switchboard(&dir);
        cmd.env("DATABASE_URL", &db.url).env("SWITCHBOARD_ENCRYPTION_KEYS", &entry);
        cmd
    };
    let acme = client(&db.store, "acme").await;

    std::fs::write(dir.join("rules.json"), r#"{"keywords":[{"match":["hours"],"reply":"9 to 5"}],"fallback":"Hi!"}"#)
        .unwrap();
    let out = run(sb().args(["client", "set-responder", "acme", "rules", "--file", "rules.json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let settings = db.store.client_settings(acme.id).await.unwrap().unwrap();
    assert!(matches!(&settings.responder, ResponderSetting::Rules { rules_json } if rules_json.contains("9 to 5")));

    std::fs::write(dir.join("bad.json"), r#"{"keywords":[{"match":[],"reply":"x"}]}"#).unwrap();
    assert_one_line_error(
        &run(sb().args(["client", "set-responder", "acme", "rules", "--file", "bad.json"])),
        2,
        "no keyword",
    );
    std::fs::write(dir.join("typo.json"), r#"{"keyword":[]}"#).unwrap();
    assert_one_line_error(
        &run(sb().args(["client", "set-responder", "acme", "rules", "--file", "typo.json"])),
        2,
        "not valid rules",
    );
    assert_one_line_error(
        &run(sb().args(["client", "set-responder", "nobody", "rules", "--file", "rules.json"])),
        2,
        "no client",
    );

    let relay = ["client", "set-responder", "acme", "relay", "--url", "https://bot.acme.example/hook"];
    assert_one_line_error(&run_with_stdin(sb().args(relay), "short\n"), 2, "at least 16 characters");
    let out = run_with_stdin(sb().args(relay), "a-long-relay-secret-value\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let settings = db.store.client_settings(acme.id).await.unwrap().unwrap();
    let ResponderSetting::Relay { url, secret } = settings.responder else { panic!("relay expected") };
    assert_eq!(url, "https://bot.acme.example/hook");
    use secrecy::ExposeSecret as _;
    assert_eq!(ring(&entry).open_relay_secret(acme.id, &secret).unwrap().expose_secret(), "a-long-relay-secret-value");
    assert!(!db.raw_integration_bytes().await.is_empty());
    assert_one_line_error(
        &run_with_stdin(
            sb().args(["client", "set-responder", "acme", "relay", "--url", "ftp://x"]),
            "a-long-relay-secret-value\n",
        ),
        2,
        "--url",
    );

    assert!(run(sb().args(["client", "set-rate", "acme", "20"])).status.success());
    assert_eq!(db.store.client_settings(acme.id).await.unwrap().unwrap().send_rate_per_second, Some(20));
    assert!(run(sb().args(["client", "set-rate", "acme", "default"])).status.success());
    assert_eq!(db.store.client_settings(acme.id).await.unwrap().unwrap().send_rate_per_second, None);
    assert_one_line_error(&run(sb().args(["client", "set-rate", "acme", "0"])), 2, "1 to 1000");
    let pause = run(sb().args(["client", "set-human-pause", "acme", "2h"]));
    assert!(pause.status.success());
    assert!(String::from_utf8_lossy(&pause.stdout).contains("silent for 2h"));
    assert_eq!(db.store.client_settings(acme.id).await.unwrap().unwrap().human_pause_secs, Some(7200));
    assert_one_line_error(&run(sb().args(["client", "set-human-pause", "acme", "10s"])), 2, "from 1m to 7d");
    assert_one_line_error(&run(sb().args(["client", "set-human-pause", "acme", "soon"])), 2, "from 1m to 7d");
    assert_eq!(db.store.client_settings(acme.id).await.unwrap().unwrap().human_pause_secs, Some(7200), "kept");
    assert!(run(sb().args(["client", "set-human-pause", "acme", "default"])).status.success());
    assert_eq!(db.store.client_settings(acme.id).await.unwrap().unwrap().human_pause_secs, None);
    // The relay secret's key id counts for the start-up key check.
    assert_eq!(db.store.token_key_ids().await.unwrap(), vec!["k1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_working_credentials_drives_events_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = switchboard(dir.path()).arg("demo").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while lines.iter().all(|l: &String| !l.contains("Meta stand-in:")) {
        lines.push(rx.recv_timeout(Duration::from_secs(30)).expect("the demo prints its credentials"));
    }
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.split_once(key))
            .map(|(_, v)| v.split_whitespace().next().unwrap().to_owned())
            .unwrap()
    };
    let (portal, email, password) = (value("Portal:"), value("Sign in as:"), value("Password:"));
    let keys = dir.path().join("data/demo.db.keys");
    assert!(keys.exists(), "the demo makes a key file of its own for its database");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let meta = lines
        .iter()
        .find_map(|l| l.split_once("Meta stand-in: "))
        .map(|(_, v)| v.split_whitespace().next().unwrap().to_owned())
        .unwrap();
    let base = portal.trim_end_matches("/portal").to_owned();

    let b = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = b.get(format!("{base}/portal/login")).send().await.unwrap().text().await.unwrap();
    let csrf = login.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let resp = b
        .post(format!("{base}/portal/login"))
        .form(&[("csrf", csrf.as_str()), ("email", &email), ("password", &password)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "the printed credentials sign in");
    let home = b.get(&portal).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Demo Outlet") && home.contains("Connect with Facebook"), "{home}");

    // Connect through the stand-in's consent page, then the demo's own events get answered.
    let csrf = home.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let resp = b.post(format!("{base}/portal/connect")).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    let dialog = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let callback = crate::app::decide(&b, &dialog, &["104711112233445"], "continue").await;
    assert_eq!(b.get(&callback).send().await.unwrap().status().as_u16(), 302);
    eventually_within(Duration::from_secs(20), "the demo's events answered", || async {
        let state: serde_json::Value = b.get(format!("{meta}/_sim/state")).send().await.unwrap().json().await.unwrap();
        if state["counters"]["messages_sent"].as_u64().unwrap_or(0) > 0 { Ok(()) } else { Err(state.to_string()) }
    })
    .await;
    // The demo's story: a person at the store answers one customer, another asks for a person; the Page's
    // conversations show both handled by a person.
    let conversations = format!("{base}/portal/pages/104711112233445/conversations");
    eventually_within(Duration::from_secs(30), "two conversations handled by a person", || async {
        let threads: serde_json::Value =
            b.get(format!("{meta}/_sim/threads")).send().await.unwrap().json().await.unwrap();
        let page = b.get(&conversations).send().await.unwrap().text().await.unwrap();
        let handled = page.matches("A person is handling this conversation").count();
        let passed = threads.as_object().is_some_and(|t| t.values().any(|app| app == "263902037430900"));
        if handled == 2 && passed { Ok(()) } else { Err(format!("{handled} handled, threads {threads}")) }
    })
    .await;

    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = eventually_within(Duration::from_secs(15), "the demo stopped on Ctrl-C", || {
        std::future::ready(child.try_wait().unwrap().ok_or_else(|| "still running".to_owned()))
    })
    .await;
    assert!(status.success(), "{status}");
}
