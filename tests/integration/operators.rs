//! What operators get: metrics a Prometheus user trusts (a live scrape is clean under `promtool check metrics`,
//! every family is in the catalog), alerting rules that pass `promtool` and their unit tests, a real Prometheus
//! scraping the real binary that fires the stuck-Page alert, and a Grafana dashboard whose every query runs
//! there and names only metrics the binary exports.
//!
//! They need Debian's `prometheus` package (`promtool`, `prometheus`), which `scripts/test` installs;
//! `SWITCHBOARD_SKIP_PROMETHEUS=1` skips them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard::telemetry::catalog;

use crate::app::{PAGE_A, PAGE_B, text_event};
use crate::rig::Rig;
use crate::support::{TestDb, eventually_within};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether the Prometheus tools are there; a missing one fails the test unless skipping was asked for.
fn prometheus_tools() -> bool {
    if std::env::var("SWITCHBOARD_SKIP_PROMETHEUS").is_ok_and(|v| v == "1") {
        return false;
    }
    for tool in ["promtool", "prometheus"] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "these tests need {tool} (apt-get install prometheus); set SWITCHBOARD_SKIP_PROMETHEUS=1 to skip them"
        );
    }
    true
}

/// `promtool` with `args` (and `stdin`): its exit status and what it printed.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo("deploy/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The `switchboard_…` metric names `text` mentions (a histogram's series by their metric's name).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchboard_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

fn catalog_names() -> BTreeSet<String> {
    catalog::ALL.iter().map(|m| m.name.to_owned()).collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !prometheus_tools() {
        return;
    }
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"], None);
    assert!(ok && out.contains("SUCCESS"), "{out}");
    // Every metric the rules name is one the binary exports.
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let unknown: Vec<String> = metric_names(&rules).difference(&catalog_names()).cloned().collect();
    assert!(unknown.is_empty(), "the alerts name metrics the binary does not export: {unknown:?}");
}

/// A Prometheus of the test's own, scraping `target` every second with the alerting rules loaded.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - \
             job_name: switchboard\n    static_configs:\n      - targets: ['{target}']\n",
            repo("deploy/prometheus/alerts.yml").display()
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    async fn api(
        &self,
        http: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let resp = http.get(format!("{}{path}", self.url)).query(query).send().await.map_err(|e| e.to_string())?;
        resp.json().await.map_err(|e| e.to_string())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_binary_fires_the_stuck_page_alert_and_runs_every_dashboard_query() {
    if !prometheus_tools() {
        return;
    }
    let rig = Rig::new(TestDb::postgres().await).await;
    // Meta throttles page A for ten minutes: its event waits, the watchdog calls it stuck after 2 s.
    rig.meta.sim().throttle(PAGE_A, 600, 80006);
    let server = rig.serve_with(&[
        ("SWITCHBOARD__INBOX__STUCK_AFTER_SECS", "2"),
        ("SWITCHBOARD__OAUTH__RECONCILE_INTERVAL_SECS", "1"),
    ]);
    assert_eq!(rig.deliver(&server, text_event(PAGE_A, "7000000001", "m_stuck", "hi", 1_700_000_000_000)).await, 200);
    for i in 0..5 {
        let body = text_event(PAGE_B, &format!("70000000{i:02}"), &format!("m_b{i}"), "hi", 1_700_000_000_000 + i);
        assert_eq!(rig.deliver(&server, body).await, 200);
    }
    eventually_within(Duration::from_secs(20), "page B answered", || async {
        if rig.meta.sim().messages().len() >= 5 { Ok(()) } else { Err(String::new()) }
    })
    .await;

    // A live scrape is clean, and every family in it is in the catalog (and so in the README's table).
    let scrape = rig.http.get(server.metrics_url()).send().await.unwrap().text().await.unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok && out.trim().is_empty(), "promtool check metrics on a live scrape:\n{out}");
    let exported = metric_names(&scrape);
    let unlisted: Vec<String> = exported.difference(&catalog_names()).cloned().collect();
    assert!(unlisted.is_empty(), "exported but not in the catalog: {unlisted:?}");
    for m in catalog::ALL.iter().filter(|m| m.labels.is_empty() && m.kind != catalog::Kind::Histogram) {
        assert!(exported.contains(m.name), "{} is not exported from the start", m.name);
    }
    assert!(scrape.contains("# HELP switchboard_webhook_reply_seconds "), "described");
    assert!(scrape.contains("switchboard_webhook_reply_seconds_bucket{client=\"rural-king\""), "webhook → reply timed");
    // The durable writes before page B's 200s and sends are timed, by writer.
    for writer in ["inbox", "replies"] {
        let series = format!("switchboard_store_write_seconds_bucket{{writer=\"{writer}\"");
        assert!(scrape.contains(&series), "the {writer} writes are timed");
    }

    // A real Prometheus scrapes the binary with the rules loaded, and the stuck Page's alert fires.
    let prometheus = Prometheus::start(&server.metrics_url().trim_start_matches("http://").replace("/metrics", ""));
    let firing = eventually_within(Duration::from_secs(120), "SwitchboardPageStuck firing", || async {
        let alerts = prometheus.api(&rig.http, "/api/v1/alerts", &[]).await?;
        let list = alerts["data"]["alerts"].as_array().cloned().unwrap_or_default();
        list.into_iter()
            .find(|a| a["labels"]["alertname"] == "SwitchboardPageStuck" && a["state"] == "firing")
            .ok_or_else(|| format!("{alerts}"))
    })
    .await;
    assert_eq!(firing["labels"]["page"], PAGE_A);
    assert_eq!(firing["labels"]["client"], "woodstock-outlet");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert!(firing["annotations"]["summary"].as_str().unwrap().contains(PAGE_A), "{firing}");

    // Every query of the dashboard parses and runs there, and names only metrics the binary exports.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/switchboard.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = variable["definition"].as_str().unwrap();
        let (metric, label) = query.trim_start_matches("label_values(").trim_end_matches(')').split_once(", ").unwrap();
        let values = prometheus.api(&rig.http, &format!("/api/v1/label/{label}/values"), &[("match[]", metric)]).await;
        assert_eq!(values.unwrap()["status"], "success", "variable {query}");
        exprs.push(metric.to_owned());
    }
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    for expr in &exprs {
        let query = expr.replace("$client", ".*").replace("$__rate_interval", "1m");
        let answer = prometheus.api(&rig.http, "/api/v1/query", &[("query", &query)]).await.unwrap();
        assert_eq!(answer["status"], "success", "{query}: {answer}");
    }
    let named = metric_names(&exprs.join("\n"));
    let unknown: Vec<String> = named.difference(&catalog_names()).cloned().collect();
    assert!(unknown.is_empty(), "the dashboard names metrics the binary does not export: {unknown:?}");
    server.stop_cleanly();
}

#[test]
fn every_metric_and_every_alert_has_its_place_in_the_readme() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    for m in catalog::ALL {
        assert!(readme.contains(&format!("| `{}` |", m.name)), "README's metrics table lacks {}", m.name);
    }
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(readme.contains(&format!("#### {alert}\n")), "README has no runbook for {alert}");
        assert!(rules.contains(&format!("runbook: \"README.md#{}\"", alert.to_lowercase())), "{alert}'s runbook link");
    }
}
