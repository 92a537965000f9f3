//! AI answers through the real binary: `client set-responder … ai` from the CLI, `serve` against the stand-in's
//! chat completions endpoint, and customers' texts delivered as Meta would. The answer comes from the
//! knowledge, the conversation so far goes with each call, the model's hand-over passes the conversation,
//! every kind of model failure is answered by the client's rules, a used-up budget makes no call at all, and
//! the API key is sent as a Bearer token and appears nowhere else.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use meta_sim::{AiFault, AiFaultSwitch, SimConfig};
use switchboard::store::ResponderSetting;

use crate::app::{IG_A, PAGE_A, PAGE_B, text_event};
use crate::rig::{Rig, SETTLE};
use crate::support::{Server, TestDb, eventually_within};

const KEY: &str = "sk-test-a1b2c3d4e5f6-never-shown";
const KNOWLEDGE: &str = "# Woodstock Outlet\n\
- Opening hours: open 9am to 9pm Monday to Saturday, 11am to 6pm Sunday.\n\
- Delivery: we deliver within 50 miles; delivery takes 3 to 5 days.\n\
- Returns: unused items come back within 30 days with the receipt.\n";
const RULES: &str = r#"{"keywords":[{"match":["hours"],"reply":"RULES: open 9 to 9."}],"fallback":"RULES: a person will answer soon."}"#;

fn ai_env(rig: &Rig) -> Vec<(&'static str, String)> {
    vec![
        ("SWITCHBOARD__AI__BASE_URL", format!("{}/v1", rig.meta.url().trim_end_matches('/'))),
        ("SWITCHBOARD__AI__MODEL", "test-model".to_owned()),
        ("SWITCHBOARD_AI_API_KEY", KEY.to_owned()),
        ("SWITCHBOARD__AI__TIMEOUT_SECS", "2".to_owned()),
        ("SWITCHBOARD__AI__HISTORY_TURNS", "4".to_owned()),
    ]
}

/// `switchboard ARGS` on the rig's database, with `env`.
fn cli(rig: &Rig, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_clear()
        .env("DATABASE_URL", &rig.db.url)
        .env("SWITCHBOARD_ENCRYPTION_KEYS", &rig.key_entry)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn serve(rig: &Rig) -> Server {
    let env = ai_env(rig);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    rig.serve_with(&env)
}

/// The texts the stand-in accepted for `customer`, in order.
fn sent_to(rig: &Rig, customer: &str) -> Vec<String> {
    rig.meta.sim().messages().iter().filter(|m| m.recipient_id == customer).filter_map(|m| m.text.clone()).collect()
}

async fn answered(rig: &Rig, customer: &str, n: usize) -> Vec<String> {
    eventually_within(SETTLE, &format!("{n} replies to {customer}"), || async {
        let texts = sent_to(rig, customer);
        if texts.len() >= n { Ok(texts) } else { Err(format!("{texts:?}")) }
    })
    .await
}

/// The stored outcome of the inbox row of `mid`: (status, reason).
async fn outcome(rig: &Rig, mid: &str) -> (String, String) {
    let sql = format!("SELECT status || '|' || COALESCE(reason, '') FROM webhook_inbox WHERE dedup_key = 'm:{mid}'");
    let row = eventually_within(SETTLE, &format!("{mid} finished"), || async {
        match rig.db.scalar(&sql).await {
            Some(row) if !row.starts_with("pending") => Ok(row),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (status, reason) = row.split_once('|').unwrap();
    (status.to_owned(), reason.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_answers_from_the_knowledge_with_the_conversation_and_hands_over_when_the_model_asks() {
    let rig =
        Rig::with_sim(TestDb::postgres().await, SimConfig { ai_key: Some(KEY.to_owned()), ..SimConfig::default() })
            .await;
    let woodstock = &rig.db.store.client_by_slug(&"woodstock-outlet".parse().unwrap()).await.unwrap().unwrap();
    rig.db.store.set_responder(woodstock.id, &ResponderSetting::Rules { rules_json: RULES.to_owned() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("knowledge.md");
    std::fs::write(&file, KNOWLEDGE).unwrap();
    let file = file.to_str().unwrap();

    // Without a model server the ai responder is refused in one line, and nothing changes.
    let refused = cli(&rig, &[], &["client", "set-responder", "woodstock-outlet", "ai", "--knowledge", file]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("ai.base_url"), "{err}");
    let empty = dir.path().join("empty.md");
    std::fs::write(&empty, "  \n").unwrap();
    let refused = cli(
        &rig,
        &ai_env(&rig),
        &["client", "set-responder", "woodstock-outlet", "ai", "--knowledge", empty.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is empty"), "{refused:?}");
    let kept = rig.db.store.client_settings(woodstock.id).await.unwrap().unwrap().responder;
    assert_eq!(kept.kind(), "rules", "a refused command changes nothing");

    let set = cli(&rig, &ai_env(&rig), &["client", "set-responder", "woodstock-outlet", "ai", "--knowledge", file]);
    assert_eq!(set.status.code(), Some(0), "{}", String::from_utf8_lossy(&set.stderr));
    let server = serve(&rig);

    // The answer comes from the knowledge line that matches the question.
    assert_eq!(
        rig.deliver(&server, text_event(PAGE_A, "7001", "m_ai_1", "What are your opening hours?", 1)).await,
        200
    );
    let first = answered(&rig, "7001", 1).await;
    assert_eq!(first, ["Opening hours: open 9am to 9pm Monday to Saturday, 11am to 6pm Sunday."]);
    let (status, reason) = outcome(&rig, "m_ai_1").await;
    assert_eq!((status.as_str(), reason.starts_with("answered by AI (")), ("done", true), "{reason}");

    // The next question carries the conversation so far; the customer's words never reach the system message.
    assert_eq!(rig.deliver(&server, text_event(PAGE_A, "7001", "m_ai_2", "Do you deliver to my town?", 2)).await, 200);
    let both = answered(&rig, "7001", 2).await;
    assert_eq!(both[1], "Delivery: we deliver within 50 miles; delivery takes 3 to 5 days.");
    let requests = rig.meta.sim().ai_requests();
    assert_eq!(requests.calls, 2);
    let second = &requests.requests[1];
    let roles: Vec<&str> = second["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "{second}");
    let messages = &second["messages"];
    assert!(messages[0]["content"].as_str().unwrap().contains("Returns: unused items"), "the knowledge is there");
    assert!(!messages[0]["content"].as_str().unwrap().contains("deliver to my town"));
    assert_eq!(messages[1]["content"], "What are your opening hours?");
    assert_eq!(messages[2]["content"], first[0].as_str());
    assert_eq!(messages[3]["content"], "Do you deliver to my town?");
    assert_eq!(second["model"], "test-model");
    assert!(second.get("max_completion_tokens").is_some(), "{second}");
    let user = second["user"].as_str().unwrap();
    assert!(!user.contains("7001") && !user.contains(PAGE_A), "the end-user id names no one: {user}");
    assert!(requests.authorization.iter().all(|a| a.as_deref() == Some(&format!("Bearer {KEY}")[..])));

    // Instagram: the conversation is kept under the Facebook Page, and its history is found there.
    let ig = |mid: &str, text: &str, ts: i64| {
        String::from_utf8(text_event(IG_A, "8001", mid, text, ts))
            .unwrap()
            .replace(r#""object":"page""#, r#""object":"instagram""#)
            .into_bytes()
    };
    assert_eq!(rig.deliver(&server, ig("m_ig_1", "What are your opening hours?", 5)).await, 200);
    answered(&rig, "8001", 1).await;
    assert_eq!(rig.deliver(&server, ig("m_ig_2", "Do you deliver?", 6)).await, 200);
    answered(&rig, "8001", 2).await;
    let requests = rig.meta.sim().ai_requests();
    let last = requests.requests.last().unwrap();
    let roles: Vec<&str> = last["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "the Instagram conversation's history: {last}");

    // A question the knowledge cannot answer: the model asks for a person, and the conversation is passed.
    assert_eq!(rig.deliver(&server, text_event(PAGE_A, "7002", "m_ai_3", "Quelle est la météo?", 3)).await, 200);
    let handed = answered(&rig, "7002", 1).await;
    assert_eq!(handed, ["I don't have that in my notes, so I'm passing you to a person on our team."]);
    eventually_within(SETTLE, "the conversation passed to the Page Inbox", || async {
        let owners = rig.meta.sim().thread_owners();
        if owners.to_string().contains("7002") { Ok(()) } else { Err(owners.to_string()) }
    })
    .await;
    // The bot stays silent with that customer now.
    assert_eq!(rig.deliver(&server, text_event(PAGE_A, "7002", "m_ai_4", "hello?", 4)).await, 200);
    let (status, _) = outcome(&rig, "m_ai_4").await;
    assert_eq!(status, "done");
    assert_eq!(sent_to(&rig, "7002").len(), 1, "no answer while a person handles the conversation");
    assert_eq!(rig.meta.sim().ai_requests().calls, 5, "and no model call");

    // The key was sent as a Bearer token and nowhere else: not in the log.
    let log = server.stop_cleanly();
    assert!(log.iter().all(|line| !line.contains(KEY)), "the API key is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_failure_is_answered_by_the_rules_and_a_used_up_budget_makes_no_call() {
    let rig =
        Rig::with_sim(TestDb::postgres().await, SimConfig { ai_key: Some(KEY.to_owned()), ..SimConfig::default() })
            .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("knowledge.md");
    std::fs::write(&file, KNOWLEDGE).unwrap();
    let file = file.to_str().unwrap();
    for slug in ["woodstock-outlet", "rural-king"] {
        let client = rig.db.store.client_by_slug(&slug.parse().unwrap()).await.unwrap().unwrap();
        rig.db.store.set_responder(client.id, &ResponderSetting::Rules { rules_json: RULES.to_owned() }).await.unwrap();
    }
    let set = cli(&rig, &ai_env(&rig), &["client", "set-responder", "woodstock-outlet", "ai", "--knowledge", file]);
    assert_eq!(set.status.code(), Some(0), "{}", String::from_utf8_lossy(&set.stderr));
    // Rural King's month holds 1 token: the first call reserves it (and uses more), then nothing is left.
    let tiny = ["client", "set-responder", "rural-king", "ai", "--knowledge", file, "--monthly-tokens", "1"];
    assert_eq!(cli(&rig, &ai_env(&rig), &tiny).status.code(), Some(0));
    let server = serve(&rig);

    // Each failure: the rules answer, and the event's outcome says why.
    let cases: [(AiFault, &str, &str); 5] = [
        (AiFault::ServerError, "7101", "the model server failed (HTTP 500)"),
        (AiFault::RateLimited, "7102", "rate limiting"),
        (AiFault::Slow, "7103", "did not answer within 2 s"),
        (AiFault::Empty, "7104", "no usable answer"),
        (AiFault::Quota, "7105", "no quota left"),
    ];
    for (i, (fault, customer, why)) in cases.into_iter().enumerate() {
        // A 429 holds calls back for its Retry-After (1 s): let it pass before the next case.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        rig.meta.sim().set_ai_fault(AiFaultSwitch { mode: fault, slow_ms: 6000, times: None });
        let mid = format!("m_fail_{i}");
        let ts = 10 + i64::try_from(i).unwrap();
        assert_eq!(rig.deliver(&server, text_event(PAGE_A, customer, &mid, "What are your hours?", ts)).await, 200);
        assert_eq!(answered(&rig, customer, 1).await, ["RULES: open 9 to 9."], "{fault:?}");
        let (status, reason) = outcome(&rig, &mid).await;
        assert_eq!(status, "done", "{fault:?}");
        assert!(reason.starts_with("answered by the rules:") && reason.contains(why), "{fault:?}: {reason}");
    }
    rig.meta.sim().set_ai_fault(AiFaultSwitch { mode: AiFault::None, slow_ms: 0, times: None });

    // A wrong key: refused by the server, answered by the rules, and the key shows up nowhere.
    rig.meta.sim().set_ai_key(Some("sk-the-right-one".to_owned()));
    assert_eq!(rig.deliver(&server, text_event(PAGE_A, "7106", "m_fail_key", "hours?", 20)).await, 200);
    assert_eq!(answered(&rig, "7106", 1).await, ["RULES: open 9 to 9."]);
    assert!(outcome(&rig, "m_fail_key").await.1.contains("refused the API key (HTTP 401)"));
    rig.meta.sim().set_ai_key(Some(KEY.to_owned()));

    // The budget: one call, then none; the rules answer and the month says so.
    let before = rig.meta.sim().ai_requests().calls;
    assert_eq!(rig.deliver(&server, text_event(PAGE_B, "7201", "m_budget_1", "Do you deliver?", 30)).await, 200);
    assert_eq!(answered(&rig, "7201", 1).await, ["Delivery: we deliver within 50 miles; delivery takes 3 to 5 days."]);
    assert_eq!(rig.meta.sim().ai_requests().calls, before + 1);
    for (i, customer) in ["7202", "7203"].into_iter().enumerate() {
        let mid = format!("m_budget_{}", i + 2);
        assert_eq!(rig.deliver(&server, text_event(PAGE_B, customer, &mid, "What are your hours?", 31)).await, 200);
        assert_eq!(answered(&rig, customer, 1).await, ["RULES: open 9 to 9."]);
        assert!(outcome(&rig, &mid).await.1.contains("budget is used up"));
    }
    assert_eq!(rig.meta.sim().ai_requests().calls, before + 1, "no call once the budget is used up");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let used = rig
        .db
        .scalar(&format!("SELECT CAST(used_tokens AS TEXT) FROM ai_months WHERE month = '{month}' AND client_id = (SELECT id FROM clients WHERE slug = 'rural-king')"))
        .await
        .unwrap();
    assert!(used.parse::<u64>().unwrap() > 1, "the month counts the call's usage, not its reservation: {used}");

    let metrics = reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap();
    for needle in [
        r#"switchboard_ai_fallbacks_total{client="rural-king",page="209822223344556",reason="budget"} 2"#,
        r#"switchboard_ai_fallbacks_total{client="woodstock-outlet",page="104711112233445",reason="timeout"} 1"#,
        r#"switchboard_ai_failures_total{client="woodstock-outlet",page="104711112233445",kind="server_error"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in the metrics");
    }
    assert!(!metrics.contains(KEY));
    let log = server.stop_cleanly();
    assert!(log.iter().all(|line| !line.contains(KEY) && !line.contains("sk-the-right-one")), "a key is in the log");
}
