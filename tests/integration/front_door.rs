//! The front door against hostile connections and every body Meta sends, through the real `switchboard serve`
//! binary on PostgreSQL: floods of silent and trickling connections, a flood from one address, trickled
//! bodies, and a corpus of webhook bodies recorded by other projects and Meta's documentation.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::app::{PAGE_A, PAGE_B, SECRET, text_event};
use crate::rig::Rig;
use crate::support::{TestDb, eventually, eventually_within};

const OTHER_ADDRESS: &str = "127.0.0.2";

/// A plain client, bound to `from` when given (loopback answers from any 127.0.0.0/8 address).
fn client(from: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(20)).pool_max_idle_per_host(0);
    if let Some(ip) = from {
        builder = builder.local_address(ip.parse::<IpAddr>().unwrap());
    }
    builder.build().unwrap()
}

async fn post_signed(http: &reqwest::Client, addr: SocketAddr, body: Vec<u8>) -> (u16, String) {
    let resp = http
        .post(format!("http://{addr}/api/facebook-webhook"))
        .header("x-hub-signature-256", meta_sim::webhook::signature(SECRET, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A connection from `from` that never sends a byte.
async fn silent(addr: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server closed `conn` (a read sees the end, or an error).
async fn closed_by_server(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(within, conn.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

async fn wait_for_reply_to(rig: &Rig, sender: &str) {
    eventually_within(Duration::from_secs(20), &format!("{sender} answered"), || async {
        if rig.meta.sim().messages().iter().any(|m| m.recipient_id == sender) { Ok(()) } else { Err(String::new()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_and_trickling_connections_cannot_keep_a_signed_webhook_from_its_200() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve_with(&[
        ("SWITCHBOARD__SERVER__MAX_CONNECTIONS", "50"),
        // No per-address cap: the flood and the webhook come from the same address, so only the timeouts and
        // the slot queue can save the webhook.
        ("SWITCHBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "0"),
        ("SWITCHBOARD__SERVER__FIRST_BYTE_TIMEOUT_SECS", "2"),
        ("SWITCHBOARD__SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
    ]);
    let addr = server.addr();
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(silent(addr, "127.0.0.1").await);
    }
    // Twenty more that start a request and trickle its headers, a byte every 200 ms, for up to 15 s.
    let trickling: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                let _ = conn.write_all(b"POST /api/facebook-webhook HTTP/1.1\r\nX-Slow: ").await;
                for _ in 0..75 {
                    if conn.write_all(b"a").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // More connections than slots are open or queued: the signed webhook waits behind them, until the silent
    // ones overstay the first-byte timeout (the server is pressed) and the trickling ones the header timeout.
    let started = Instant::now();
    let body = text_event(PAGE_A, "7100000001", "m_flood_1", "still there?", 1_767_225_600_000);
    let (status, text) = post_signed(&client(None), addr, body).await;
    let took = started.elapsed();
    assert_eq!((status, text.as_str()), (200, "EVENT_RECEIVED"));
    assert!(took <= Duration::from_secs(3), "answered {took:?} after the flood; the first-byte timeout is 2 s");
    wait_for_reply_to(&rig, "7100000001").await;
    let mut culled = 0;
    for conn in &mut flood {
        culled += usize::from(closed_by_server(conn, Duration::from_secs(1)).await);
    }
    // Silent connections are culled while the server is pressed (more than half its slots taken), so at least
    // enough of them to bring it back to half.
    assert!(culled >= 25, "only {culled} silent connections were closed by the server");
    for t in trickling {
        t.abort();
    }
    eprintln!("flood of 60 on 50 slots: the signed webhook got its 200 after {took:?}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_other_addresses_their_slots() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve_with(&[
        ("SWITCHBOARD__SERVER__MAX_CONNECTIONS", "50"),
        ("SWITCHBOARD__SERVER__MAX_CONNECTIONS_PER_ADDRESS", "10"),
        // Long enough that only the per-address cap can be what keeps the flood in check here.
        ("SWITCHBOARD__SERVER__FIRST_BYTE_TIMEOUT_SECS", "60"),
    ]);
    let addr = server.addr();
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(silent(addr, "127.0.0.1").await);
    }
    let mut refused = 0;
    for conn in &mut flood {
        refused += usize::from(closed_by_server(conn, Duration::from_millis(300)).await);
    }
    assert_eq!(refused, 50, "the address keeps 10 connections; the other 50 are closed at once");

    let started = Instant::now();
    let body = text_event(PAGE_B, "7100000002", "m_flood_2", "hello from elsewhere", 1_767_225_600_000);
    assert_eq!(post_signed(&client(Some(OTHER_ADDRESS)), addr, body).await.0, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "another address is served at once: {took:?}");
    wait_for_reply_to(&rig, "7100000002").await;

    let health = client(None).get(server.url("/healthz")).send().await;
    assert!(health.is_err(), "the flooding address itself gets nothing more while it holds its 10");
    drop(flood);
    eventually("the address served again", || async {
        match client(None).get(server.url("/healthz")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    server.terminate();
}

/// One attacking connection from `from`, again and again until `until`: a webhook POST announcing a 1–3 MiB
/// body, then nothing (`trickle` = 0) or `trickle` bytes every 100 ms, reconnecting whenever the server answers or
/// closes. How many times the server cut it off.
async fn slow_body(addr: SocketAddr, from: &'static str, trickle: usize, until: Instant, seed: u64) -> u32 {
    let mut cut = 0;
    let mut n = seed;
    while Instant::now() < until {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = 1_048_576 + (n >> 33) % 2_097_152;
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let Ok(mut conn) = socket.connect(addr).await else { continue };
        let head = format!("POST /api/facebook-webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
        if conn.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let chunk = vec![b'x'; trickle];
        let mut buf = [0u8; 256];
        loop {
            if Instant::now() >= until {
                return cut;
            }
            match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
                Ok(_) => {
                    cut += 1;
                    break;
                }
                Err(_) if trickle > 0 && conn.write_all(&chunk).await.is_err() => break,
                Err(_) => {}
            }
        }
    }
    cut
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_from_several_addresses_never_keep_a_signed_webhook_from_its_200() {
    // The real binary with its default limits (64 MiB of bodies, 3 MiB each, 10,000 connections).
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve();
    let addr = server.addr();
    let until = Instant::now() + Duration::from_secs(30);
    // Five addresses, six connections each: two announce a body and send nothing, two trickle 1 KiB every
    // 100 ms, two send 16 KiB every 100 ms (fast enough to go on, so they hold what they sent).
    let mut attackers = Vec::new();
    for (a, from) in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"].into_iter().enumerate() {
        for (c, trickle) in [0, 0, 1024, 1024, 16 * 1024, 16 * 1024].into_iter().enumerate() {
            attackers.push(tokio::spawn(slow_body(addr, from, trickle, until, (a * 10 + c) as u64)));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meta, from an address that has delivered nothing yet: one signed webhook a second, each answered 200
    // within a second, every time.
    let meta = client(Some("127.0.0.9"));
    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while Instant::now() + Duration::from_secs(1) < until {
        let sender = format!("71000001{i:02}");
        let body = text_event(PAGE_A, &sender, &format!("m_slow_{i}"), "hello", 1_767_225_600_000 + i);
        let started = Instant::now();
        let (status, text) = post_signed(&meta, addr, body).await;
        let took = started.elapsed();
        assert_eq!((status, text.as_str()), (200, "EVENT_RECEIVED"), "webhook {i}, {took:?} in");
        assert!(took < Duration::from_secs(1), "webhook {i} took {took:?}");
        slowest = slowest.max(took);
        i += 1;
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(took)).await;
    }
    let mut cut = 0;
    for a in attackers {
        cut += a.await.unwrap();
    }
    assert!(cut >= 30, "the slow bodies were cut off and came back ({cut} times)");
    wait_for_reply_to(&rig, &format!("71000001{:02}", i - 1)).await;
    eprintln!(
        "30 s of slow bodies from 5 addresses: {i} signed webhooks, each 200, the slowest in {slowest:?}; {cut} attacking requests cut off"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_culled_to_a_low_watermark_not_to_half_the_slots() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve_with(&[
        ("SWITCHBOARD__SERVER__MAX_CONNECTIONS", "40"),
        ("SWITCHBOARD__SERVER__FIRST_BYTE_TIMEOUT_SECS", "1"),
    ]);
    let addr = server.addr();
    let mut flood = Vec::new();
    for _ in 0..30 {
        flood.push(silent(addr, OTHER_ADDRESS).await);
    }
    // More than half the slots are taken: the server is pressed, and stays so until fewer than an eighth (5)
    // are, so every silent connection is culled, not just the 10 above half.
    let mut culled = 0;
    for conn in &mut flood {
        culled += usize::from(closed_by_server(conn, Duration::from_secs(3)).await);
    }
    assert!(culled >= 26, "only {culled} of 30 silent connections were culled");
    let started = Instant::now();
    let body = text_event(PAGE_A, "7100000004", "m_watermark", "hi", 1_767_225_600_000);
    assert_eq!(post_signed(&client(None), addr, body).await.0, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    server.terminate();
}

/// A Messenger body of `n` text events for `page` (senders `7200000000 + i`), with `odd` events of kinds or
/// shapes Switchboard does not understand in between.
fn batch(page: &str, n: usize, odd: &[serde_json::Value]) -> Vec<u8> {
    let mut items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "sender": {"id": format!("{}", 7_200_000_000u64 + i as u64)},
                "recipient": {"id": page},
                "timestamp": 1_767_225_600_000u64 + i as u64,
                "message": {"mid": format!("m_batch_{page}_{i}"), "text": format!("question {i}")},
            })
        })
        .collect();
    for (k, o) in odd.iter().enumerate() {
        items.insert((k + 1) * n / (odd.len() + 1), o.clone());
    }
    serde_json::to_vec(&serde_json::json!({"object": "page", "entry": [{"id": page, "time": 1_767_225_600_000u64, "messaging": items}]}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_body_gets_its_200_and_one_odd_event_costs_only_itself() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve_with(&[("SWITCHBOARD__ENGINE__SEND_RATE_PER_PAGE", "1000")]);
    let addr = server.addr();
    let http = client(None);

    let dir = format!("{}/tests/fixtures/webhooks/corpus", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in &files {
        let (status, text) = post_signed(&http, addr, std::fs::read(file).unwrap()).await;
        assert_eq!(status, 200, "{}: {text}", file.display());
    }
    let (status, text) = post_signed(&http, addr, b"{\"object\":\"page\",\"entry\":[".to_vec()).await;
    assert_eq!((status, text.contains("not JSON")), (400, true), "only a body that is not JSON is refused: {text}");

    // 500 questions to each page with one event of an unknown kind and one malformed event among them.
    let odd = [
        serde_json::json!({"sender": {"id": "7299999998"}, "recipient": {"id": PAGE_A}, "timestamp": 1,
            "request_thread_control": {"requested_owner_app_id": "263902037430900", "metadata": "to the inbox"}}),
        serde_json::json!({"sender": {"id": "7299999999"}, "recipient": {"id": PAGE_A}, "timestamp": 2,
            "message": {"mid": "m_odd", "text": {"not": "a string"}}}),
    ];
    for page in [PAGE_A, PAGE_B] {
        assert_eq!(post_signed(&http, addr, batch(page, 500, &odd)).await.0, 200);
    }
    eventually_within(Duration::from_secs(60), "the 1000 questions answered", || async {
        let answered: std::collections::HashSet<String> =
            rig.meta.sim().messages().into_iter().map(|m| format!("{}:{}", m.page_id, m.recipient_id)).collect();
        let missing = (0..500)
            .flat_map(|i| [PAGE_A, PAGE_B].map(|p| format!("{p}:{}", 7_200_000_000u64 + i)))
            .filter(|k| !answered.contains(k))
            .count();
        if missing == 0 { Ok(()) } else { Err(format!("{missing} missing")) }
    })
    .await;

    // What was not understood is kept, and an operator can see it.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env_clear()
            .env("DATABASE_URL", &rig.db.url)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let stats = cli(&["inbox", "stats"]);
    for line in ["not understood", "request_thread_control", "unknown_event", "malformed_event", "change"] {
        assert!(stats.contains(line), "{line:?} in:\n{stats}");
    }
    let listed = cli(&["inbox", "unhandled", "--json", "--limit", "1000"]);
    let parts: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expected = std::fs::read_to_string(format!("{dir}/EXPECTED.txt")).unwrap();
    let kept_in_corpus: usize = expected
        .lines()
        .map(|l| l.split("kept=[").nth(1).unwrap().trim_end_matches(']').split_whitespace().count())
        .sum();
    assert_eq!(
        parts.len(),
        kept_in_corpus + 4,
        "every part of the corpus that was not understood, and the 4 odd events"
    );
    let odd_one = parts.iter().find(|p| p["raw"].as_str().is_some_and(|r| r.contains("m_odd"))).unwrap();
    assert_eq!(odd_one["detail"], "entry 0, messaging item 333: field message.text has the wrong type");
    assert!(parts.iter().all(|p| !p["detail"].as_str().unwrap().contains("a string")), "no detail quotes a value");
    server.terminate();
}
