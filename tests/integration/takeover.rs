//! A person at the business takes over a conversation, through the real binary on PostgreSQL: the stand-in
//! posts what a person wrote in the Page Inbox (an echo naming the inbox app), and the bot stays silent with
//! that customer only, across a restart; an echo of the bot's own reply silences nothing.

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
    let person: serde_json::Value = rig
        .http
        .post(rig.meta.url() + &format!("/_sim/pages/{PAGE_A}/person-reply"))
        .json(&serde_json::json!({
            "recipient": HANDLED, "text": "Hi, this is Ana from the store", "webhook": server.url("/api/facebook-webhook")
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    // A restart does not forget it.
    assert!(server.terminate().success());
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
