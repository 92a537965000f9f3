//! Peers the load benchmarks compare Switchboard with: the same webhook receiver written the usual way
//! elsewhere, driven by the same load generator. Each is started only if its runtime is installed, and skipped
//! with a note otherwise.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::SECRET;

/// A running peer server; stopped when dropped.
pub struct Peer {
    pub addr: std::net::SocketAddr,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Express + pg peer (`benches/peers/express`) on database `url`: its packages are installed the first
/// time (`npm ci`, or `npm install` without a lock file). `None`, with a note, if Node or its packages are
/// not at hand.
pub fn express(url: &str) -> Option<Peer> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/express");
    if Command::new("node").arg("--version").output().is_err() {
        println!("(the Express + pg peer is skipped: node is not installed)");
        return None;
    }
    if !dir.join("node_modules").exists() {
        let install = if dir.join("package-lock.json").exists() { "ci" } else { "install" };
        let done = Command::new("npm")
            .args([install, "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            println!("(the Express + pg peer is skipped: `npm {install}` in {} failed)", dir.display());
            return None;
        }
    }
    let mut child = Command::new("node")
        .arg("server.js")
        .current_dir(&dir)
        .env("PORT", "0")
        .env("DATABASE_URL", url)
        .env("APP_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?).read_line(&mut line).ok()?;
    match line.trim().strip_prefix("listening ").and_then(|p| p.parse::<u16>().ok()) {
        Some(port) => Some(Peer { addr: ([127, 0, 0, 1], port).into(), child }),
        None => {
            println!("(the Express + pg peer is skipped: it did not start: {line:?})");
            let _ = child.kill();
            None
        }
    }
}
