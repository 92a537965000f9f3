//! Processes the end-to-end tests run: the real `switchboard serve` binary ([`Server`]) and a PostgreSQL
//! server of a test's own ([`PrivatePg`]), so a test can kill, pause, restart or stop them. Shared by the
//! integration suite and the chaos run (each includes this file).

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
