//! A person at the business takes over a conversation, through the real binary on PostgreSQL: the stand-in
//! posts what a person wrote in the Page Inbox (an echo naming the inbox app), and the bot stays silent with
//! that customer only, across a restart; an echo of the bot's own reply silences nothing. A customer who asks
//! for a person is told so, the conversation is passed to the Page Inbox (Handover Protocol), and the bot
//! answers again once the person marks it done there.

use std::time::Duration;

use meta_sim::webhook::{Entry, Envelope, echo, signature, text_message, to_meta_json};

use crate::app::{PAGE_A, SECRET};
use crate::rig::{Rig, SETTLE};
use crate::support::{Server, TestDb, eventually_within};

/// Two customers of page A.
const HANDLED: &str = "7100001";
const OTHER: &str = "7100002";

struct Meta<'a> {
    rig: &'a Rig,
    seq: u32,
}

impl Meta<'_> {
    /// Meta delivers `body`, signed, to `server`; its status.
    async fn deliver(&self, server: &Server, body: Vec<u8>) -> u16 {
        let sent = self
            .rig
            .http
            .post(server.url("/api/facebook-webhook"))
            .header("x-hub-signature-256", signature(SECRET, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        sent.status().as_u16()
    }

    /// `person` writes to page A.
    async fn customer_writes(&mut self, server: &Server, person: &str) {
        self.seq += 1;
        let ts = chrono::Utc::now().timestamp_millis();
        let body = text_message(PAGE_A, person, &format!("m_takeover_{}_{person}", self.seq), "hours?", ts);
        assert_eq!(self.deliver(server, body).await, 200);
    }

    /// The stand-in's control API: `POST /_sim/pages/{page A}/{what}`, with the webhook's URL added.
    async fn control(&self, server: &Server, what: &str, mut body: serde_json::Value) -> serde_json::Value {
        body["webhook"] = server.url("/api/facebook-webhook").into();
        let url = self.rig.meta.url() + &format!("/_sim/pages/{PAGE_A}/{what}");
        self.rig.http.post(url).json(&body).send().await.unwrap().json().await.unwrap()
    }

    /// Texts the stand-in accepted for `person`.
    fn texts_to(&self, person: &str) -> Vec<String> {
        let sent = self.rig.meta.sim().messages();
        sent.into_iter().filter(|m| m.recipient_id == person).filter_map(|m| m.text).collect()
    }

    /// Replies the stand-in accepted for `person`.
    fn replies_to(&self, person: &str) -> usize {
        self.rig.meta.sim().messages().iter().filter(|m| m.recipient_id == person).count()
    }

    async fn answered(&self, person: &str, n: usize) {
        eventually_within(SETTLE, &format!("{person} answered {n} times"), || async {
            let got = self.replies_to(person);
            if got >= n { Ok(()) } else { Err(format!("{got} replies")) }
        })
        .await;
    }

    /// No inbox row is pending (every event was finished, answered or not).
    async fn all_finished(&self) {
        eventually_within(SETTLE, "no inbox row pending", || async {
            let counts = self.rig.db.store.inbox_counts().await.map_err(|e| e.to_string())?;
            if counts.iter().any(|(s, _)| s == "pending") { Err(format!("{counts:?}")) } else { Ok(()) }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_answering_in_the_page_inbox_silences_the_bot_in_that_conversation_only() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve();
    let mut meta = Meta { rig: &rig, seq: 0 };

    meta.customer_writes(&server, HANDLED).await;
    meta.answered(HANDLED, 1).await;

    // Someone at the store answers HANDLED in the Page Inbox.
    let person = meta
        .control(&server, "person-reply", serde_json::json!({"recipient": HANDLED, "text": "Hi, this is Ana"}))
        .await;
    assert_eq!(person["webhook_status"], 200, "{person}");
    eventually_within(SETTLE, "the hold is kept", || async {
        let holds = rig.db.store.conversation_holds(PAGE_A, 0).await.map_err(|e| e.to_string())?;
        if holds.iter().any(|(p, _)| p == HANDLED) { Ok(()) } else { Err(format!("{holds:?}")) }
    })
    .await;

    // The echo of the bot's own reply (this app's id) silences nobody.
    let ts = chrono::Utc::now().timestamp_millis();
    let own = to_meta_json(&Envelope {
        object: "page",
        entry: vec![Entry {
            id: PAGE_A.to_owned(),
            time: ts,
            messaging: vec![echo(PAGE_A, OTHER, ts, "m_own_echo_1".to_owned(), 1_234_567_890, "We're open 9 to 9.")],
        }],
    });
    assert_eq!(meta.deliver(&server, own).await, 200);

    meta.customer_writes(&server, HANDLED).await;
    meta.customer_writes(&server, OTHER).await;
    meta.answered(OTHER, 1).await;
    meta.all_finished().await;
    assert_eq!(meta.replies_to(HANDLED), 1, "the bot stayed silent while a person handles the conversation");
    for said in ["hours?", "Hi, this is Ana", "We're open 9 to 9."] {
        assert_eq!(server.logged(said), Vec::<String>::new(), "what customers and people write is never logged");
    }

    // A restart does not forget it.
    server.stop_cleanly();
    let server = rig.serve();
    meta.customer_writes(&server, HANDLED).await;
    meta.customer_writes(&server, OTHER).await;
    meta.answered(OTHER, 2).await;
    meta.all_finished().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(meta.replies_to(HANDLED), 1, "still silent after a restart");
    let ignored = reqwest::get(server.metrics_url()).await.unwrap().text().await.unwrap();
    assert!(ignored.contains("reason=\"person_handling\""), "counted as handled by a person");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_who_asks_for_a_person_is_passed_to_the_page_inbox_until_it_is_marked_done() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve();
    let mut meta = Meta { rig: &rig, seq: 0 };
    let ts = chrono::Utc::now().timestamp_millis();
    let ask = text_message(PAGE_A, HANDLED, "m_ask_1", "Can I talk to a person?", ts);
    assert_eq!(meta.deliver(&server, ask).await, 200);
    meta.answered(HANDLED, 1).await;
    assert_eq!(meta.texts_to(HANDLED), ["Thanks! Someone from our team will answer you here shortly."]);
    eventually_within(SETTLE, "the conversation passed to the Page Inbox", || async {
        let threads = rig.meta.sim().thread_owners();
        let owner = &threads[format!("{PAGE_A}:{HANDLED}")];
        if owner == "263902037430900" { Ok(()) } else { Err(format!("{threads}")) }
    })
    .await;

    meta.customer_writes(&server, HANDLED).await;
    meta.customer_writes(&server, OTHER).await;
    meta.answered(OTHER, 1).await;
    meta.all_finished().await;
    assert_eq!(meta.replies_to(HANDLED), 1, "silent while the Page Inbox has the conversation");

    // The person marks it done: Meta passes the conversation back, and the bot answers again.
    let done = meta.control(&server, "inbox-done", serde_json::json!({"recipient": HANDLED})).await;
    assert_eq!(done["webhook_status"], 200, "{done}");
    eventually_within(SETTLE, "the hold released", || async {
        let holds = rig.db.store.conversation_holds(PAGE_A, 0).await.map_err(|e| e.to_string())?;
        if holds.is_empty() { Ok(()) } else { Err(format!("{holds:?}")) }
    })
    .await;
    meta.customer_writes(&server, HANDLED).await;
    meta.answered(HANDLED, 2).await;
}
