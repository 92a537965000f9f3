//! The engine end to end: signed webhooks in, replies out at the Meta stand-in, through the real server,
//! the actors, the Graph client and PostgreSQL.

use std::time::Duration;

use meta_sim::{Channel, SimConfig};
use switchboard::domain::PageId;
use switchboard::store::IntegrationStatus;

use crate::app::{Options, PAGE_A, PAGE_B, VERIFY_TOKEN, fixture, spawn_app, text_event};
use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_event_gets_exactly_one_reply_with_the_pages_token() {
    let app = spawn_app(Options::default()).await;
    let (status, body) = app.post_webhook(&fixture("messenger_text.json")).await;
    assert_eq!((status, body.as_str()), (200, "EVENT_RECEIVED"));
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].page_id, PAGE_A, "the stand-in accepted page A's token (and proof) for page A");
    assert_eq!(sent[0].recipient_id, "7001234567890123");
    assert_eq!(sent[0].channel, Channel::Messenger);
    assert_eq!(sent[0].messaging_type.as_deref(), Some("RESPONSE"));
    assert_eq!(sent[0].text.as_deref(), Some("Thanks for your message! We'll get back to you shortly."));
    assert_eq!(app.settle().await.len(), 1, "exactly one reply");
    assert!(app.meta.sim().errors().is_empty(), "no call was refused: {:?}", app.meta.sim().errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_handshake_echoes_the_challenge_or_refuses() {
    let app = spawn_app(Options { connect: false, ..Options::default() }).await;
    let get = |query: Vec<(&'static str, &'static str)>| {
        let req = app.http.get(app.url("/api/facebook-webhook")).query(&query);
        async move {
            let resp = req.send().await.unwrap();
            let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), ctype, resp.text().await.unwrap())
        }
    };
    let ok =
        get(vec![("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "1158201444")]).await;
    assert_eq!(ok, (200, Some("text/plain".to_owned()), "1158201444".to_owned()));
    let odd =
        get(vec![("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "a-Z_09.~")]).await;
    assert_eq!(odd.2, "a-Z_09.~", "echoed byte for byte, not parsed as a number");
    assert_eq!(
        get(vec![("hub.mode", "subscribe"), ("hub.verify_token", "wrong"), ("hub.challenge", "1")]).await.0,
        403
    );
    assert_eq!(
        get(vec![("hub.mode", "unsubscribe"), ("hub.verify_token", VERIFY_TOKEN), ("hub.challenge", "1")]).await.0,
        403
    );
    assert_eq!(get(vec![("hub.mode", "subscribe"), ("hub.verify_token", VERIFY_TOKEN)]).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_or_a_body_that_is_not_json_is_refused_and_nothing_is_sent() {
    let app = spawn_app(Options::default()).await;
    let body = fixture("messenger_text.json");
    let (status, text) =
        app.post_webhook_signed(&body, "sha256=0000000000000000000000000000000000000000000000000000000000000000").await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("does not match"), "{text}");
    let resp = app.http.post(app.url("/api/facebook-webhook")).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().await.unwrap().contains("missing X-Hub-Signature-256"));

    let (status, text) = app.post_webhook(b"{\"object\":\"page\",\"entry\":[").await;
    assert_eq!((status, text.as_str()), (400, "body is not JSON\n"));
    assert!(app.settle().await.is_empty(), "nothing was processed");
    assert!(app.metrics().await.contains("switchboard_webhook_signature_failures_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_is_acknowledged_whole_and_only_what_is_not_understood_is_set_aside() {
    let app = spawn_app(Options::default()).await;
    let body = fixture("messenger_text.json");
    // A valid first entry, then an entry whose id is not a page id: the first is answered, the second kept.
    let half = format!(
        r#"{{"object":"page","entry":[{},{{"id":"not-a-page","messaging":[]}}]}}"#,
        String::from_utf8(body.clone()).unwrap().split_once("\"entry\":[").unwrap().1.rsplit_once("]}").unwrap().0
    );
    assert_eq!(app.post_webhook(half.as_bytes()).await.0, 200);
    assert_eq!(app.post_webhook(br#"{"object":"user","entry":[{"id":"1","changes":[]}]}"#).await.0, 200);
    assert_eq!(app.wait_for_sent(1).await.len(), 1, "the valid entry was answered");
    let kept = app.db.store.unhandled_recent(10).await.unwrap();
    let mut got: Vec<(&str, &str, &str)> =
        kept.iter().map(|k| (k.object.as_str(), k.kind.as_str(), k.reason.as_str())).collect();
    got.sort_unstable();
    assert_eq!(got, [("page", "entry", "bad_entry_id"), ("user", "user", "unknown_object")]);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"switchboard_webhook_unhandled_total{object="page",kind="entry",reason="bad_entry_id"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_pages_in_one_batch_are_each_answered_with_their_own_token() {
    let app = spawn_app(Options::default()).await;
    assert_eq!(app.post_webhook(&fixture("messenger_batch_two_pages.json")).await.0, 200);
    let mut sent = app.wait_for_sent(3).await;
    sent.sort_by(|a, b| (&a.page_id, &a.recipient_id).cmp(&(&b.page_id, &b.recipient_id)));
    let routed: Vec<(&str, &str)> = sent.iter().map(|m| (m.page_id.as_str(), m.recipient_id.as_str())).collect();
    assert_eq!(
        routed,
        [(PAGE_A, "7001234567890123"), (PAGE_A, "7009876543210987"), (PAGE_B, "7009876543210987")],
        "each page answered by its own tenant; the stand-in refuses a token on another page"
    );
    assert!(app.meta.sim().errors().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_mid_gets_one_reply_and_echoes_none() {
    let app = spawn_app(Options::default()).await;
    let body = fixture("messenger_text.json");
    for _ in 0..5 {
        assert_eq!(app.post_webhook(&body).await.0, 200);
    }
    assert_eq!(app.post_webhook(&fixture("messenger_echo.json")).await.0, 200);
    assert_eq!(app.post_webhook(&fixture("messenger_read_delivery.json")).await.0, 200);
    assert_eq!(app.post_webhook(&fixture("messenger_standby.json")).await.0, 200);
    app.wait_for_sent(1).await;
    let sent = app.settle().await;
    assert_eq!(sent.len(), 1, "one reply for five deliveries of one mid, none for the echo: {sent:?}");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"reason="duplicate""#), "duplicates are counted");
    assert!(metrics.contains(r#"reason="own_message""#), "echoes are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instagram_event_is_answered_on_the_instagram_path() {
    let app = spawn_app(Options::default()).await;
    app.meta.sim().register_instagram_users(["6543210987654321"]);
    assert_eq!(app.post_webhook(&fixture("instagram_text.json")).await.0, 200);
    assert_eq!(app.post_webhook(&fixture("instagram_echo.json")).await.0, 200);
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].channel, Channel::Instagram);
    assert_eq!((sent[0].page_id.as_str(), sent[0].recipient_id.as_str()), (PAGE_A, "6543210987654321"));
    assert_eq!(app.settle().await.len(), 1, "no reply to the Instagram echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_to_one_page_paced_under_metas_20_per_second_causes_no_violations() {
    // Paced at 18/s against Meta's 20/s sliding window: at exactly the limit, one call delayed by the
    // network (or a busy machine) and the next on time would put 21 calls in some second.
    let app = spawn_app(Options {
        sim: SimConfig { rate_limit_per_page: 20, ..SimConfig::default() },
        ..Options::with(|s| {
            s.engine.send_rate_per_page = 18;
            s.engine.engine.max_in_flight = 8;
        })
    })
    .await;
    let started = std::time::Instant::now();
    for i in 0..500 {
        let body = text_event(
            PAGE_A,
            &format!("70000000000{:05}", i % 50),
            &format!("m_burst_{i}"),
            "hi",
            1_767_225_600_000 + i,
        );
        assert_eq!(app.post_webhook(&body).await.0, 200);
    }
    let ingest = started.elapsed();
    assert!(ingest < Duration::from_secs(20), "ingest never waits on sending: {ingest:?}");
    let sent = app.wait_for_sent_within(500, Duration::from_secs(60)).await;
    assert_eq!(sent.len(), 500);
    assert_eq!(app.meta.sim().violations().get(PAGE_A).copied().unwrap_or(0), 0, "Meta's rate was never exceeded");
    assert!(app.meta.sim().errors().is_empty());
    assert!(started.elapsed() >= Duration::from_secs(24), "500 calls at 18/s take about 28 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_page_pauses_until_regain_and_other_tenants_are_unaffected() {
    let app = spawn_app(Options::default()).await;
    app.meta.sim().throttle(PAGE_A, 120, 613);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_t1", "hi", 1)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7002", "m_t2", "hi", 2)).await.0, 200);
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7003", "m_t3", "hi", 3)).await.0, 200);
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].page_id, PAGE_B);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_a = app.meta.sim().calls().into_iter().filter(|c| c.page_id.as_deref() == Some(PAGE_A)).count();
    assert_eq!(calls_a, 1, "one call met the throttle; nothing was sent to page A before the regain time");
    assert_eq!(app.sent().len(), 1);
    assert!(app.metrics().await.contains("switchboard_throttled_pauses_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_marks_needs_reauth_and_stops_calls() {
    let app = spawn_app(Options::default()).await;
    app.meta.sim().invalidate_page_tokens(PAGE_A, 460);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_r1", "hi", 1)).await.0, 200);
    let page = PageId::parse(PAGE_A).unwrap();
    let row = eventually("the integration needs_reauth, with an audit row", || async {
        let row = app.db.store.integration_by_page(&page).await.unwrap().unwrap();
        // The audit row is written right after the status.
        let audit = app.db.store.recent_audit(5).await.unwrap();
        let audited =
            audit.iter().any(|a| a.action == "integration.needs_reauth" && a.page_id.as_deref() == Some(PAGE_A));
        if row.status == IntegrationStatus::NeedsReauth && audited {
            Ok(row)
        } else {
            Err(format!("status {}, audited {audited}", row.status))
        }
    })
    .await;
    assert!(row.status_reason.as_deref().unwrap().contains("190/460"), "{:?}", row.status_reason);
    for i in 2..5 {
        assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", &format!("m_r{i}"), "again", i)).await.0, 200);
    }
    // The replies are held in the tenant's queue: what a send would have taken from.
    let page = PageId::parse(PAGE_A).unwrap();
    eventually("the three replies held", || async {
        let held = app.router.stats(&page).queue_depth;
        if held >= 3 { Ok(()) } else { Err(format!("{held} held")) }
    })
    .await;
    let calls = app.meta.sim().calls().into_iter().filter(|c| c.page_id.as_deref() == Some(PAGE_A)).count();
    assert_eq!(calls, 1, "no further Graph calls after 190");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_tenant_restarts_and_others_keep_answering() {
    let app = spawn_app(Options::default()).await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_p1", "hi", 1)).await.0, 200);
    app.wait_for_sent(1).await;
    let page_a = PageId::parse(PAGE_A).unwrap();
    app.router.crash(&page_a);
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7002", "m_p2", "hi", 2)).await.0, 200);
    app.wait_for_sent(2).await;
    // An event that reaches the tenant's mailbox before it has died is lost with it (in memory mode; the
    // durable inbox hands it over again), so the next one is sent once the supervisor saw the failure and
    // the new actor runs. A fixed pause was not enough: on a loaded machine the panic hook (printing a
    // backtrace under RUST_BACKTRACE) kept the dying actor accepting messages for over 400 ms.
    let restarts = eventually("page A's tenant restarted", || async {
        let metrics = app.metrics().await;
        let restarts =
            metrics.lines().find(|l| l.starts_with("switchboard_actor_restarts_total") && l.contains(PAGE_A));
        match restarts {
            Some(restarts) if app.router.is_active(&page_a) => Ok(restarts.to_owned()),
            _ => Err(format!("metrics:\n{metrics}")),
        }
    })
    .await;
    assert!(restarts.ends_with(" 1"), "{restarts}");
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7003", "m_p3", "hi again", 3)).await.0, 200);
    let sent = app.wait_for_sent(3).await;
    assert_eq!(sent[2].page_id, PAGE_A, "the restarted tenant answers again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pages_are_acknowledged_and_counted_and_health_endpoints_answer() {
    let app = spawn_app(Options::default()).await;
    let body = text_event("555000111", "7001", "m_u1", "hi", 1);
    assert_eq!(app.post_webhook(&body).await.0, 200);
    assert!(app.settle().await.is_empty());
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"switchboard_unknown_page_events_total{page="555000111"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"switchboard_http_requests_total{route="webhook",status="2xx"}"#));
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(app.http.get(app.url("/readyz")).send().await.unwrap().text().await.unwrap(), "ready\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_no_client_owns_get_a_bounded_number_of_metric_labels() {
    let app = spawn_app(Options { connect: false, ..Options::default() }).await;
    for i in 0..150 {
        let page = format!("9990001{i:05}");
        assert_eq!(app.post_webhook(&text_event(&page, "7001", &format!("m_n{i}"), "hi", 1)).await.0, 200);
    }
    let metrics = app.metrics().await;
    let own = metrics.lines().filter(|l| l.starts_with("switchboard_unknown_page_events_total{page=\"9990001")).count();
    assert_eq!(own, 100, "the first 100 unknown ids get a label of their own");
    assert!(metrics.contains(r#"switchboard_unknown_page_events_total{page="other"}"#), "the rest share one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_metrics_are_labelled_by_client_and_page() {
    let app = spawn_app(Options::default()).await;
    // The default rules answer text, not postbacks (they have no payload map): one reply of two events.
    assert_eq!(app.post_webhook(&fixture("messenger_postback.json")).await.0, 200);
    assert_eq!(app.post_webhook(&fixture("messenger_text.json")).await.0, 200);
    app.wait_for_sent(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = app.metrics().await;
    for needle in [
        r#"switchboard_webhook_events_total{client="woodstock-outlet",page="104711112233445",kind="postback"}"#,
        // Counters are process-wide and other tests also answer for this page: presence, not an exact value.
        r#"switchboard_replies_sent_total{client="woodstock-outlet",page="104711112233445"} "#,
        r#"switchboard_send_latency_seconds_bucket{client="woodstock-outlet",page="104711112233445""#,
        "switchboard_last_event_timestamp_seconds",
        "switchboard_active_actors",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("EAA"), "no token in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let app = spawn_app(Options { connect: false, ..Options::with(|s| s.server.max_body_bytes = 2048) }).await;
    let big = vec![b'x'; 4096];
    assert_eq!(app.post_webhook(&big).await.0, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_rules_responders_answer_per_client() {
    use hmac::{Hmac, KeyInit, Mac};
    use secrecy::SecretString;
    use sha2::Sha256;
    use switchboard::store::ResponderSetting;
    use warp::Filter as _;

    // The client's own bot: checks the signature with its own HMAC, answers with two replies.
    const RELAY_SECRET: &str = "relay-secret-for-woodstock";
    let bot = warp::post().and(warp::header::<String>("x-switchboard-signature-256")).and(warp::body::bytes()).map(
        |sig: String, body: bytes::Bytes| {
            let mut mac = Hmac::<Sha256>::new_from_slice(RELAY_SECRET.as_bytes()).unwrap();
            mac.update(&body);
            let ok = sig
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .is_some_and(|s| mac.verify_slice(&s).is_ok());
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let text = event["event"]["kind"]["text"].as_str().unwrap_or_default().to_owned();
            let reply =
                warp::reply::json(&serde_json::json!({ "replies": [format!("relay heard: {text}"), "second"] }));
            if ok && event["client"] == "woodstock-outlet" {
                warp::reply::with_status(reply, warp::http::StatusCode::OK)
            } else {
                warp::reply::with_status(reply, warp::http::StatusCode::FORBIDDEN)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot_url = format!("http://{}/bot", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(bot).incoming(listener).run());

    let app = spawn_app(Options::default()).await;
    let (woodstock, rural_king) = (&app.clients[0], &app.clients[1]);
    // Woodstock's rules say how its customers ask for a person; they hold while its own bot answers too.
    let person = r#"{"person":{"keywords":["agente"],"payloads":[],"reply":"Un momento, por favor."}}"#;
    app.db.store.set_responder(woodstock.id, &ResponderSetting::Rules { rules_json: person.to_owned() }).await.unwrap();
    let secret = app.keys.seal_relay_secret(woodstock.id, &SecretString::from(RELAY_SECRET.to_owned())).unwrap();
    app.db.store.set_responder(woodstock.id, &ResponderSetting::Relay { url: bot_url, secret }).await.unwrap();
    let rules = r#"{"keywords":[{"match":["hours"],"reply":"Open 8 to 8."}],"fallback":"Ask us about our hours."}"#;
    app.db.store.set_responder(rural_king.id, &ResponderSetting::Rules { rules_json: rules.to_owned() }).await.unwrap();

    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_relay", "do you deliver?", 1)).await.0, 200);
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7002", "m_rules1", "What are your HOURS?", 2)).await.0, 200);
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7003", "m_rules2", "hello", 3)).await.0, 200);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7004", "m_person", "un agente por favor", 4)).await.0, 200);
    let sent = app.wait_for_sent(5).await;
    let texts = |page: &str| -> Vec<String> {
        sent.iter().filter(|m| m.page_id == page).map(|m| m.text.clone().unwrap()).collect()
    };
    let to = |who: &str| -> Vec<String> {
        sent.iter().filter(|m| m.recipient_id == who).map(|m| m.text.clone().unwrap()).collect()
    };
    assert_eq!(to("7001"), ["relay heard: do you deliver?", "second"], "relay replies are sent in order");
    assert_eq!(to("7004"), ["Un momento, por favor."], "asking for a person is answered as the client chose");
    let mut rk = texts(PAGE_B);
    rk.sort();
    assert_eq!(rk, ["Ask us about our hours.", "Open 8 to 8."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_connections_beyond_the_cap_wait_for_a_slot() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let app = spawn_app(Options {
        connect: false,
        ..Options::with(|s| {
            s.server.header_read_timeout = Duration::from_secs(1);
            s.server.first_byte_timeout = Duration::from_secs(1);
            s.server.max_connections = 3;
        })
    })
    .await;
    // A client that starts a request and never finishes its headers is cut off.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /api/facebook-webhook HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the slow connection was closed by the server");

    // Silent connections fill the slots: a request beyond them waits for one, and gets its answer once the
    // silent ones overstay the first-byte timeout (the server is pressed: every slot is taken).
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let mut extra = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_secs(2), "within the first-byte timeout and a second");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"switchboard_connections_closed_total{reason="first_byte_timeout"}"#), "{metrics}");
    assert!(metrics.contains(r#"switchboard_connections_closed_total{reason="header_timeout"}"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tenants_stop_and_the_next_event_starts_them_again() {
    let app = spawn_app(Options::with(|s| s.engine.engine.idle_timeout = Duration::from_secs(1))).await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_i1", "hi", 1)).await.0, 200);
    app.wait_for_sent(1).await;
    assert_eq!(app.router.active_tenants(), 1);
    eventually("the idle tenant stopped", || async {
        match app.router.active_tenants() {
            0 => Ok(()),
            n => Err(format!("{n} running")),
        }
    })
    .await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_i2", "back", 2)).await.0, 200);
    app.wait_for_sent(2).await;
    assert_eq!(app.router.active_tenants(), 1, "started again by the next event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_swaps_the_token_in_place_and_sends_what_was_queued() {
    let app = spawn_app(Options::default()).await;
    app.meta.sim().invalidate_page_tokens(PAGE_A, 460);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_q1", "first", 1)).await.0, 200);
    let page = PageId::parse(PAGE_A).unwrap();
    eventually("the integration needs_reauth", || async {
        match app.db.store.integration_by_page(&page).await.unwrap().unwrap().status {
            IntegrationStatus::NeedsReauth => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7002", "m_q2", "second", 2)).await.0, 200);
    eventually("the second reply held", || async {
        let held = app.router.stats(&page).queue_depth;
        if held >= 2 { Ok(()) } else { Err(format!("{held} held")) }
    })
    .await;
    assert!(app.sent().is_empty(), "nothing is sent while the token is dead");

    // The client reconnects: a new token is stored and the live actor reloads it in place.
    let tokens = crate::app::sim_page_tokens(&app.meta).await;
    crate::app::connect(&app.db.store, &app.keys, &app.clients[0], PAGE_A, Some(crate::app::IG_A), &tokens[PAGE_A])
        .await;
    app.router.connected(page.clone(), None, "woodstock-outlet");
    let sent = app.wait_for_sent(2).await;
    let mut recipients: Vec<&str> = sent.iter().map(|m| m.recipient_id.as_str()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, ["7001", "7002"], "both replies queued during needs_reauth went out with the new token");
    assert_eq!(app.db.store.integration_by_page(&page).await.unwrap().unwrap().status, IntegrationStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_delivered_shuffled_is_answered_in_timestamp_order() {
    use meta_sim::webhook::{Entry, Envelope, Event, Id, Message, Messaging, to_meta_json};
    use switchboard::store::ResponderSetting;

    let app = spawn_app(Options::default()).await;
    let rules =
        r#"{"keywords":[{"match":["one"],"reply":"1"},{"match":["two"],"reply":"2"},{"match":["three"],"reply":"3"}]}"#;
    app.db
        .store
        .set_responder(app.clients[0].id, &ResponderSetting::Rules { rules_json: rules.to_owned() })
        .await
        .unwrap();
    let item = |text: &str, ts: i64| Messaging {
        sender: Id { id: "7001".into() },
        recipient: Id { id: PAGE_A.into() },
        timestamp: ts,
        event: Event::Message(Message { mid: format!("m_{text}"), text: Some(text.into()), ..Message::default() }),
    };
    let body = to_meta_json(&Envelope {
        object: "page",
        entry: vec![Entry {
            id: PAGE_A.into(),
            time: 10,
            messaging: vec![item("three", 3), item("one", 1), item("two", 2)],
        }],
    });
    assert_eq!(app.post_webhook(&body).await.0, 200);
    let sent = app.wait_for_sent(3).await;
    let order: Vec<&str> = sent.iter().map(|m| m.text.as_deref().unwrap()).collect();
    assert_eq!(order, ["1", "2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_keeps_crashing_is_quarantined_and_its_dropped_events_are_counted() {
    let app = spawn_app(Options::with(|s| {
        s.engine.engine.quarantine = Duration::from_secs(2);
        s.inbox.sweep_interval = Duration::from_secs(1);
        s.inbox.stale_after = Duration::from_secs(60);
    }))
    .await;
    // Page B: no other test crashes it, so the process-wide counters below are this test's alone.
    let page = PageId::parse(PAGE_B).unwrap();
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7001", "m_q0", "hi", 1)).await.0, 200);
    app.wait_for_sent(1).await;
    // Spend the restart budget (5 restarts within 60 s): crash it each time it is back.
    for _ in 0..6 {
        eventually("the tenant restarted", || async {
            if app.router.is_active(&page) { Ok(()) } else { Err("not running".to_owned()) }
        })
        .await;
        app.router.crash(&page);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!app.router.is_active(&page), "quarantined, not restarted");
    assert_eq!(app.post_webhook(&text_event(PAGE_B, "7001", "m_q1", "anyone?", 2)).await.0, 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"switchboard_events_dropped_total{page="209822223344556",reason="quarantined"} 1"#),
        "{metrics}"
    );
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7002", "m_q2", "hi", 3)).await.0, 200);
    assert_eq!(app.wait_for_sent(2).await[1].page_id, PAGE_A, "other tenants keep answering");
    // The dropped event stayed pending in the inbox, and the engine does not hold it: once the quarantine
    // is over, the sweeper hands it over and it is answered.
    let sent = app.wait_for_sent(3).await;
    assert_eq!((sent[2].page_id.as_str(), sent[2].recipient_id.as_str()), (PAGE_B, "7001"));
}
