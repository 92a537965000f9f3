//! The tenant actor with fake ports and paused time: Meta's throttling, transient failures and the
//! "already delivered" answer, without a network or a clock to wait on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_actors::{
    AccessToken, BotAnswer, BotError, Channel, Dispatched, EngineDeps, EngineSettings, EventKind, EventSink, EveryPage,
    GraphApi, GraphFailure, InboundEvent, InboxId, LoadError, NoInbox, OutgoingMessage, PageId, Progress,
    RecordedReply, ReplyId, Responder, Router, RulesResponder, SendOk, SinkError, StatusSink, TenantProfile,
    TenantSource, Tenure, ToRecord, Usage,
};
use tokio::time::Instant;

/// A Graph API that answers from a script (then succeeds) and records when it was called.
#[derive(Default)]
struct ScriptedGraph {
    script: Mutex<VecDeque<Result<SendOk, GraphFailure>>>,
    calls: Mutex<Vec<Instant>>,
    /// Texts sent, in order.
    texts: Mutex<Vec<String>>,
    /// Whom each call went to, and when.
    sent_to: Mutex<Vec<(String, Instant)>>,
    /// Conversations passed: (recipient, target app).
    passed: Mutex<Vec<(String, String)>>,
    /// The texts sent before each pass.
    sent_before_pass: Mutex<Vec<Vec<String>>>,
    /// How long each send takes.
    latency: Duration,
}

#[async_trait]
impl GraphApi for ScriptedGraph {
    async fn send_message(&self, _: &AccessToken, message: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.calls.lock().unwrap().push(Instant::now());
        self.texts.lock().unwrap().push(message.text.clone());
        self.sent_to.lock().unwrap().push((message.recipient.clone(), Instant::now()));
        self.script.lock().unwrap().pop_front().unwrap_or(Ok(SendOk { message_id: "m".into(), usage: None }))
    }

    async fn pass_thread_control(
        &self,
        _: &AccessToken,
        _: &PageId,
        recipient: &str,
        target_app_id: &str,
    ) -> Result<(), GraphFailure> {
        self.passed.lock().unwrap().push((recipient.to_owned(), target_app_id.to_owned()));
        self.sent_before_pass.lock().unwrap().push(self.texts.lock().unwrap().clone());
        Ok(())
    }
}

struct Source;

#[async_trait]
impl TenantSource for Source {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        Ok(profile(page, Arc::new(RulesResponder::new(Default::default(), "ok".into()))))
    }
}

/// A page whose bot takes a second to answer each event.
struct SlowBotSource;

#[async_trait]
impl TenantSource for SlowBotSource {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        Ok(profile(page, Arc::new(SlowBot)))
    }
}

struct SlowBot;

#[async_trait]
impl Responder for SlowBot {
    async fn respond(&self, _: &InboundEvent) -> Result<BotAnswer, BotError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(BotAnswer::replies(vec!["ok".into()]))
    }
}

fn profile(page: &PageId, responder: Arc<dyn Responder>) -> TenantProfile {
    TenantProfile {
        client_slug: Arc::from("test"),
        page_id: page.clone(),
        instagram_account_id: None,
        token: Some(AccessToken::new("EAAtest".into())),
        blocked: None,
        responder,
        send_rate_per_second: 100,
        human_pause: std::time::Duration::from_secs(1800),
        held: Vec::new(),
        ask_for_person: Default::default(),
    }
}

#[derive(Default)]
struct Status {
    reauth: Mutex<Vec<String>>,
    holds: Mutex<Vec<(String, i64)>>,
}

#[async_trait]
impl StatusSink for Status {
    async fn needs_reauth(&self, _: &PageId, reason: &str) {
        self.reauth.lock().unwrap().push(reason.to_owned());
    }
    async fn permission_error(&self, _: &PageId, _: &str) {}
    async fn person_handling(&self, _: &PageId, person: &str, until: i64) {
        self.holds.lock().unwrap().push((person.to_owned(), until));
    }
    async fn bot_handling(&self, _: &PageId, person: &str) {
        self.holds.lock().unwrap().retain(|(p, _)| p != person);
    }
}

async fn engine(script: Vec<Result<SendOk, GraphFailure>>) -> (Router, Arc<ScriptedGraph>, Arc<Status>) {
    engine_with(script, EngineSettings { retry_base: Duration::from_millis(100), ..EngineSettings::default() }).await
}

async fn engine_with(
    script: Vec<Result<SendOk, GraphFailure>>,
    settings: EngineSettings,
) -> (Router, Arc<ScriptedGraph>, Arc<Status>) {
    let graph = Arc::new(ScriptedGraph { script: Mutex::new(script.into()), ..ScriptedGraph::default() });
    let status = Arc::new(Status::default());
    let router = started(EngineDeps {
        source: Arc::new(Source),
        graph: graph.clone(),
        status: status.clone(),
        events: Arc::new(NoInbox),
        tenure: Arc::new(EveryPage),
        settings,
    })
    .await;
    (router, graph, status)
}

/// An engine on `deps`, with the test page registered.
async fn started(deps: EngineDeps) -> Router {
    let router = Router::start(deps).await.unwrap();
    router.register(page(), None, "test");
    router
}

fn page() -> PageId {
    PageId::parse("104711112233445").unwrap()
}

fn message(mid: &str) -> InboundEvent {
    InboundEvent {
        inbox_id: None,
        recovered: false,
        received: None,
        account_id: page(),
        channel: Channel::Messenger,
        sender: "7001".into(),
        recipient: page().to_string(),
        timestamp: 1,
        standby: false,
        kind: EventKind::Message {
            mid: mid.into(),
            text: Some("hi".into()),
            quick_reply: None,
            is_echo: false,
            app_id: None,
            attachments: vec![],
        },
    }
}

/// The echo of a message page A sent customer 7001 through the app `app_id` (none: Meta did not say).
fn echo(mid: &str, app_id: Option<&str>, timestamp: i64) -> InboundEvent {
    let mut event = message(mid);
    event.sender = page().to_string();
    event.recipient = "7001".into();
    event.timestamp = timestamp;
    event.kind = EventKind::Message {
        mid: mid.into(),
        text: Some("Hi, this is Ana".into()),
        quick_reply: None,
        is_echo: true,
        app_id: app_id.map(str::to_owned),
        attachments: vec![],
    };
    event
}

fn failure(code: u32, subcode: Option<u32>) -> GraphFailure {
    GraphFailure { http_status: Some(400), code: Some(code), subcode, message: "scripted".into(), usage: None }
}

/// Lets the actors run until nothing is left to do at the current (paused) instant.
async fn run_for(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_page_waits_for_the_regain_time_before_calling_again() {
    let mut throttled = failure(613, None);
    throttled.usage = Some(Usage { max_pct: 100, regain: Some(Duration::from_secs(60)) });
    let (router, graph, _) = engine(vec![Err(throttled)]).await;
    let t0 = Instant::now();
    router.dispatch(message("m1"));
    run_for(Duration::from_secs(59)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 1, "nothing is sent before the regain time");
    run_for(Duration::from_secs(10)).await;
    let calls = graph.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "the reply goes out once Meta's regain time (plus jitter) has passed");
    let waited = calls[1] - t0;
    assert!(waited >= Duration::from_secs(60) && waited <= Duration::from_secs(67), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff_a_bounded_number_of_times() {
    let (router, graph, _) = engine((0..10).map(|_| Err(failure(2, None))).collect()).await;
    router.dispatch(message("m1"));
    run_for(Duration::from_secs(30)).await;
    let calls = graph.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 5, "max_send_attempts (5) in all, then the reply is dropped");
    for pair in calls.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(100), "backoff between attempts: {calls:?}");
    }
    assert!(calls[4] - calls[3] > calls[1] - calls[0], "the backoff grows");
}

#[tokio::test(start_paused = true)]
async fn already_delivered_and_dead_tokens_are_never_resent() {
    let (router, graph, status) = engine(vec![Err(failure(1, Some(1_357_046)))]).await;
    router.dispatch(message("m1"));
    run_for(Duration::from_secs(10)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 1, "1/1357046: Meta delivered it; no resend");

    graph.script.lock().unwrap().push_back(Err(failure(190, Some(460))));
    router.dispatch(message("m2"));
    router.dispatch(message("m3"));
    run_for(Duration::from_secs(10)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 2, "after 190 the page stops calling");
    assert_eq!(status.reauth.lock().unwrap().len(), 1, "needs_reauth is reported once");
    assert!(status.reauth.lock().unwrap()[0].contains("190/460"));
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_mid_is_answered_once() {
    let (router, graph, _) = engine(vec![]).await;
    for _ in 0..3 {
        router.dispatch(message("same"));
    }
    run_for(Duration::from_secs(2)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 1);
}

/// An inbox that records which events each `record` call held, and holds the first call until released.
struct SlowInbox {
    calls: Mutex<Vec<Vec<i64>>>,
    first: tokio::sync::Semaphore,
    /// Inbox events reported finished, with the failure if any.
    finished: Mutex<Vec<(i64, Option<String>)>>,
    /// Inbox events given back unfinished (left pending for the sweeper).
    released: Mutex<Vec<i64>>,
    /// Replies marked as about to be sent, and when each write was done (each takes 100 ms).
    marks: Mutex<Vec<(Vec<i64>, Instant)>>,
    /// Whether `record` keeps replies asked to be recorded marked as about to be sent so (else it records
    /// every reply unmarked, as if it could not).
    premarks: std::sync::atomic::AtomicBool,
    /// Each recorded event, and whether its replies were asked to be recorded marked.
    asked: Mutex<Vec<(i64, bool)>>,
    /// Replies reported never sent.
    unattempted: Mutex<Vec<i64>>,
}

#[async_trait]
impl EventSink for SlowInbox {
    async fn recorded(&self, _: InboxId) -> Result<Vec<RecordedReply>, SinkError> {
        Ok(vec![])
    }

    async fn record(&self, events: &[ToRecord]) -> Result<Vec<Vec<RecordedReply>>, SinkError> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(events.iter().map(|e| e.inbox_id.0).collect());
            calls.len() == 1
        };
        self.asked.lock().unwrap().extend(events.iter().map(|e| (e.inbox_id.0, e.attempting)));
        let premarks = self.premarks.load(std::sync::atomic::Ordering::SeqCst);
        if first {
            self.first.acquire().await.unwrap().forget();
        }
        Ok(events
            .iter()
            .map(|e| {
                let id = ReplyId(e.inbox_id.0 * 100);
                e.texts
                    .iter()
                    .map(|text| RecordedReply {
                        id,
                        text: text.clone(),
                        sent: false,
                        unknown: premarks && e.attempting,
                        recorded_unix: 0,
                    })
                    .collect()
            })
            .collect())
    }

    async fn attempting(&self, replies: &[(InboxId, ReplyId)]) -> Result<(), SinkError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.marks.lock().unwrap().push((replies.iter().map(|(_, r)| r.0).collect(), Instant::now()));
        Ok(())
    }

    async fn sent_ids(&self, _: &PageId, _: &str, _: i64) -> Result<Vec<String>, SinkError> {
        Ok(Vec::new())
    }

    async fn progress(&self, progress: Progress) {
        self.finished.lock().unwrap().extend(
            progress.finished.into_iter().map(|(id, outcome)| {
                (id.0, outcome.is_failed().then(|| outcome.reason().unwrap_or_default().to_owned()))
            }),
        );
        self.released.lock().unwrap().extend(progress.released.into_iter().map(|id| id.0));
        self.unattempted.lock().unwrap().extend(progress.unattempted.into_iter().map(|(_, reply)| reply.0));
    }
}

/// An engine on `SlowInbox`, with the page's bot from `source`.
async fn slow_inbox_engine(source: Arc<dyn TenantSource>) -> (Router, Arc<ScriptedGraph>, Arc<SlowInbox>) {
    slow_inbox_engine_with(source, EngineSettings::default()).await
}

/// `slow_inbox_engine` with rules, whose sink records replies already marked when asked to.
async fn premarking_engine() -> (Router, Arc<ScriptedGraph>, Arc<SlowInbox>) {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(Source)).await;
    inbox.premarks.store(true, std::sync::atomic::Ordering::SeqCst);
    (router, graph, inbox)
}

async fn slow_inbox_engine_with(
    source: Arc<dyn TenantSource>,
    settings: EngineSettings,
) -> (Router, Arc<ScriptedGraph>, Arc<SlowInbox>) {
    slow_inbox_engine_on(source, settings, Arc::new(EveryPage)).await
}

/// A node's say over which pages it runs, that a test changes: the page under an epoch, or not at all.
struct Epoch(Mutex<Option<i64>>);

impl Tenure for Epoch {
    fn epoch(&self, _: &PageId) -> Option<i64> {
        *self.0.lock().unwrap()
    }
}

async fn slow_inbox_engine_on(
    source: Arc<dyn TenantSource>,
    settings: EngineSettings,
    tenure: Arc<dyn Tenure>,
) -> (Router, Arc<ScriptedGraph>, Arc<SlowInbox>) {
    let graph = Arc::new(ScriptedGraph::default());
    let inbox = Arc::new(SlowInbox {
        calls: Mutex::new(vec![]),
        first: tokio::sync::Semaphore::new(0),
        finished: Mutex::new(vec![]),
        released: Mutex::new(vec![]),
        marks: Mutex::new(vec![]),
        premarks: std::sync::atomic::AtomicBool::new(false),
        asked: Mutex::new(vec![]),
        unattempted: Mutex::new(vec![]),
    });
    let router = started(EngineDeps {
        source,
        graph: graph.clone(),
        status: Arc::new(Status::default()),
        events: inbox.clone(),
        tenure,
        settings,
    })
    .await;
    (router, graph, inbox)
}

/// An inbox event (row `id`) from `sender` at `timestamp`.
fn inbox_event(id: i64, sender: &str, timestamp: i64) -> InboundEvent {
    InboundEvent { inbox_id: Some(InboxId(id)), sender: sender.into(), timestamp, ..message(&format!("m{id}")) }
}

#[tokio::test(start_paused = true)]
async fn events_waiting_while_replies_are_recorded_are_recorded_together_one_per_conversation() {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(Source)).await;
    let event = inbox_event;
    router.dispatch(event(1, "a", 1));
    run_for(Duration::from_secs(1)).await;
    assert_eq!(*inbox.calls.lock().unwrap(), vec![vec![1]], "the first event is recorded at once");
    // While its recording hangs: two more of b's messages (the later one delivered first), and one each
    // of a and c.
    router.dispatch(event(2, "b", 5));
    router.dispatch(event(3, "a", 2));
    router.dispatch(event(4, "b", 3));
    router.dispatch(event(5, "c", 1));
    run_for(Duration::from_secs(1)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 0, "nothing is sent before its replies are recorded");
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(2)).await;
    assert_eq!(
        *inbox.calls.lock().unwrap(),
        vec![vec![1], vec![4, 3, 5], vec![2]],
        "the waiting events are recorded in one call, b's earlier message first; b's later one waits for it"
    );
    assert_eq!(graph.calls.lock().unwrap().len(), 5, "every event is answered once");
}

#[tokio::test(start_paused = true)]
async fn a_slow_bot_is_asked_about_the_waiting_conversations_at_once() {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(SlowBotSource)).await;
    router.dispatch(inbox_event(1, "first", 1));
    run_for(Duration::from_secs(2)).await;
    assert_eq!(inbox.calls.lock().unwrap().len(), 1, "the first event's replies are being recorded");
    for id in 2..=11 {
        router.dispatch(inbox_event(id, &format!("person{id}"), 1));
    }
    run_for(Duration::from_millis(200)).await;
    let released = Instant::now();
    inbox.first.add_permits(1);
    while graph.calls.lock().unwrap().len() < 11 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = released.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "ten conversations waiting on a bot that takes 1 s each are answered in about 1 s, not 10: {took:?}"
    );
    assert_eq!(inbox.calls.lock().unwrap()[1], (2..=11).collect::<Vec<i64>>());
}

#[tokio::test(start_paused = true)]
async fn a_page_disconnected_while_its_batch_is_with_the_responder_finishes_that_batch_too() {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(Source)).await;
    router.dispatch(inbox_event(1, "a", 1));
    router.dispatch(inbox_event(2, "b", 1));
    run_for(Duration::from_secs(1)).await;
    assert_eq!(*inbox.calls.lock().unwrap(), vec![vec![1]], "1 is being recorded, 2 waits for it");
    router.disconnect(&page());
    run_for(Duration::from_secs(1)).await;
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(2)).await;
    let mut finished = inbox.finished.lock().unwrap().clone();
    finished.sort();
    let disconnected = Some("the page was disconnected".to_owned());
    assert_eq!(finished, vec![(1, disconnected.clone()), (2, disconnected)], "not left pending");
    assert_eq!(graph.calls.lock().unwrap().len(), 0, "nothing is sent for a disconnected page");
}

#[tokio::test(start_paused = true)]
async fn a_page_whose_backlog_is_full_sets_new_events_aside_for_the_sweeper_and_answers_them_later() {
    let settings = EngineSettings { pending_capacity: 3, ..EngineSettings::default() };
    let (router, graph, inbox) = slow_inbox_engine_with(Arc::new(Source), settings).await;
    router.dispatch(inbox_event(1, "a", 1));
    run_for(Duration::from_secs(1)).await;
    // One conversation: while 1's replies are recorded, the rest wait; three fit, the next three do not.
    for id in 2..=7 {
        router.dispatch(inbox_event(id, "a", id));
    }
    run_for(Duration::from_secs(1)).await;
    assert_eq!(*inbox.released.lock().unwrap(), vec![5, 6, 7], "set aside, still pending in the inbox");
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 4, "the events that fit are answered");
    // The sweeper hands the set-aside events over again: they are not mistaken for duplicates.
    for id in 5..=7 {
        router.dispatch(inbox_event(id, "a", id));
    }
    run_for(Duration::from_secs(3)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 7, "and the set-aside ones once handed over again");
}

/// Real time: a hold runs on Meta's wall-clock timestamps.
#[tokio::test]
async fn a_persons_answer_silences_the_bot_with_that_customer_until_the_pause_has_passed() {
    const OWN_APP: &str = "1234567890";
    let pause = Duration::from_secs(1800);
    let settings = EngineSettings { own_app_id: OWN_APP.into(), human_pause: pause, ..EngineSettings::default() };
    let (router, graph, status) = engine_with(vec![], settings).await;
    let sent = || graph.calls.lock().unwrap().len();
    router.dispatch(message("m1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent(), 1);

    // Echoes of the bot's own replies: named by this app, or naming none but carrying a message id it sent.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    router.dispatch(echo("m_own", Some(OWN_APP), now));
    router.dispatch(echo("m", None, now));
    router.dispatch(message("m2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent(), 2, "the bot's own echoes silence nobody");
    assert!(status.holds.lock().unwrap().is_empty());

    // A person answers in the Page Inbox; the pause ends 1.5 s from now.
    let answered_at = now - pause.as_millis() as i64 + 1500;
    router.dispatch(echo("m_person", Some("263902037430900"), answered_at));
    router.dispatch(message("m3"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent(), 2, "silent while the person handles the conversation");
    assert_eq!(status.holds.lock().unwrap().clone(), vec![("7001".to_owned(), answered_at + pause.as_millis() as i64)]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    router.dispatch(message("m4"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sent(), 3, "the bot answers again once the pause has passed");
}

#[tokio::test]
async fn a_customer_who_asks_for_a_person_is_told_so_passed_to_the_inbox_and_answered_again_once_passed_back() {
    const OWN_APP: &str = "1234567890";
    let settings = EngineSettings { own_app_id: OWN_APP.into(), ..EngineSettings::default() };
    let (router, graph, status) = engine_with(vec![], settings).await;
    let texts = || graph.texts.lock().unwrap().clone();
    let mut ask = message("m1");
    if let EventKind::Message { text, .. } = &mut ask.kind {
        *text = Some("Can I talk to a person please?".into());
    }
    router.dispatch(ask);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts(), vec![switchboard_actors::AskForPerson::default().reply]);
    assert_eq!(graph.passed.lock().unwrap().clone(), vec![("7001".to_owned(), "263902037430900".to_owned())]);
    assert_eq!(status.holds.lock().unwrap().len(), 1, "the hold is kept");

    router.dispatch(message("m2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts().len(), 1, "silent while the inbox has the conversation");

    // A person marks it done: Meta passes the conversation back to this app.
    let mut back = message("m_back");
    back.kind = EventKind::ThreadControl { to_app: Some(OWN_APP.into()) };
    router.dispatch(back);
    router.dispatch(message("m3"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts().len(), 2, "the bot answers again");
    assert!(status.holds.lock().unwrap().is_empty(), "the hold is released in storage too");
}

#[tokio::test(start_paused = true)]
async fn a_reply_marked_ahead_is_sent_only_once_its_mark_is_stored() {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(Source)).await;
    router.dispatch(inbox_event(1, "a", 1));
    run_for(Duration::from_millis(200)).await;
    // Three people write while the first reply is recorded: their replies are recorded, queued and marked
    // together, and go out on separate calls at once (one in flight per person).
    for (id, who) in [(2, "b"), (3, "c"), (4, "d")] {
        router.dispatch(inbox_event(id, who, 1));
    }
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(2)).await;
    let marks = inbox.marks.lock().unwrap().clone();
    let sent = graph.sent_to.lock().unwrap().clone();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(marks.iter().any(|(replies, _)| replies.len() > 1), "replies were marked ahead: {marks:?}");
    for (who, at) in sent {
        let reply = 100 * (i64::from(who.as_bytes()[0] - b'a') + 1);
        let stored = marks.iter().find(|(replies, _)| replies.contains(&reply)).map(|(_, done)| *done);
        assert!(stored.is_some_and(|done| done <= at), "the reply to {who} went out before its mark was stored");
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_recorded_as_about_to_be_sent_goes_out_with_no_mark_write_of_its_own() {
    let (router, graph, inbox) = premarking_engine().await;
    inbox.first.add_permits(1);
    router.dispatch(inbox_event(1, "a", 1));
    run_for(Duration::from_secs(1)).await;
    assert_eq!(*inbox.asked.lock().unwrap(), vec![(1, true)], "an idle Page records its reply marked");
    assert_eq!(graph.sent_to.lock().unwrap().len(), 1);
    assert!(inbox.marks.lock().unwrap().is_empty(), "no second write before the send");
}

#[tokio::test(start_paused = true)]
async fn a_reply_recorded_marked_for_a_tenant_that_stopped_before_queueing_it_is_stored_as_never_sent() {
    let (router, graph, inbox) = premarking_engine().await;
    router.dispatch(inbox_event(1, "a", 1));
    run_for(Duration::from_millis(200)).await;
    assert_eq!(*inbox.asked.lock().unwrap(), vec![(1, true)], "its reply is being recorded marked");
    // The watchdog restarts the tenant while the recording hangs; then the recording is stored.
    assert!(router.restart(&page()));
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(2)).await;
    assert!(graph.calls.lock().unwrap().is_empty(), "the stopped tenant sent nothing");
    assert_eq!(*inbox.unattempted.lock().unwrap(), vec![100], "whoever takes the event next sends it unsettled");
}

#[tokio::test(start_paused = true)]
async fn no_more_replies_are_recorded_marked_than_go_out_at_once_and_the_rest_are_marked_before_their_send() {
    let (router, graph, inbox) = premarking_engine().await;
    router.dispatch(inbox_event(1, "a", 1));
    run_for(Duration::from_millis(200)).await;
    // Thirty people write while the first reply is recorded: one batch, more than go out at once.
    let people: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    for (i, who) in people.iter().enumerate() {
        router.dispatch(inbox_event(i as i64 + 2, who, 1));
    }
    inbox.first.add_permits(1);
    run_for(Duration::from_secs(5)).await;
    let asked = inbox.asked.lock().unwrap().clone();
    let premarked: Vec<i64> = asked.iter().filter(|(_, marked)| *marked).map(|(id, _)| *id).collect();
    // In flight (4) plus the marks written ahead (4), less the first reply still queued or in flight.
    assert!(premarked.len() <= 8, "at most a send window recorded marked: {asked:?}");
    assert!(premarked.len() > 1, "the batch's first replies were recorded marked: {asked:?}");
    let sent = graph.sent_to.lock().unwrap().clone();
    assert_eq!(sent.len(), 31, "{sent:?}");
    let marks = inbox.marks.lock().unwrap().clone();
    for (who, at) in &sent {
        let Some(i) = people.iter().position(|p| p == who) else { continue };
        let (id, reply) = (i as i64 + 2, (i as i64 + 2) * 100);
        let mark = marks.iter().find(|(replies, _)| replies.contains(&reply)).map(|(_, done)| *done);
        if premarked.contains(&id) {
            assert!(mark.is_none(), "a reply recorded marked is not marked again: {marks:?}");
        } else {
            assert!(mark.is_some_and(|done| done <= *at), "the reply to {who} went out before its mark was stored");
        }
    }
}

/// Holds in storage whose writes wait at a gate the test opens; a load reads what is stored by then.
struct GatedHolds {
    stored: Mutex<Vec<(String, i64)>>,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl StatusSink for GatedHolds {
    async fn needs_reauth(&self, _: &PageId, _: &str) {}
    async fn permission_error(&self, _: &PageId, _: &str) {}
    async fn person_handling(&self, _: &PageId, person: &str, until: i64) {
        let _open = self.gate.acquire().await.unwrap();
        self.stored.lock().unwrap().push((person.to_owned(), until));
    }
    async fn bot_handling(&self, _: &PageId, person: &str) {
        self.stored.lock().unwrap().retain(|(p, _)| p != person);
    }
}

#[async_trait]
impl TenantSource for GatedHolds {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        let held = self.stored.lock().unwrap().clone();
        Ok(TenantProfile { held, ..profile(page, Arc::new(RulesResponder::new(Default::default(), "ok".into()))) })
    }
}

#[tokio::test]
async fn a_reload_while_a_hold_is_being_written_keeps_the_hold() {
    let holds = Arc::new(GatedHolds { stored: Mutex::default(), gate: tokio::sync::Semaphore::new(0) });
    let graph = Arc::new(ScriptedGraph::default());
    let settings = EngineSettings { own_app_id: "1234567890".into(), ..EngineSettings::default() };
    let router = started(EngineDeps {
        source: holds.clone(),
        graph: graph.clone(),
        status: holds.clone(),
        events: Arc::new(NoInbox),
        tenure: Arc::new(EveryPage),
        settings,
    })
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // A person answers: the tenant holds the customer at once, and its write to storage waits at the gate.
    router.dispatch(echo("m_person", Some("263902037430900"), now));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The client's settings change meanwhile: the tenant reloads what storage says.
    router.reload(&page());
    tokio::time::sleep(Duration::from_millis(200)).await;
    holds.gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    router.dispatch(message("m1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(holds.stored.lock().unwrap().len(), 1, "the hold was stored");
    assert!(graph.calls.lock().unwrap().is_empty(), "the reload kept the hold: the bot did not talk over the person");
}

#[tokio::test]
async fn the_conversation_is_passed_only_after_the_answer_to_asking_for_a_person_is_delivered() {
    let graph = Arc::new(ScriptedGraph { latency: Duration::from_millis(100), ..ScriptedGraph::default() });
    let status = Arc::new(Status::default());
    let settings = EngineSettings { own_app_id: "1234567890".into(), ..EngineSettings::default() };
    let deps = EngineDeps {
        source: Arc::new(Source),
        graph: graph.clone(),
        status,
        events: Arc::new(NoInbox),
        tenure: Arc::new(EveryPage),
        settings,
    };
    let router = Router::start(deps).await.unwrap();
    router.register(page(), None, "test");
    // A first message's reply is still on its way when the customer asks for a person.
    router.dispatch(message("m1"));
    let mut ask = message("m2");
    if let EventKind::Message { text, .. } = &mut ask.kind {
        *text = Some("talk to a person".into());
    }
    ask.timestamp = 2;
    router.dispatch(ask);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let answer = switchboard_actors::AskForPerson::default().reply;
    assert_eq!(graph.texts.lock().unwrap().clone(), vec!["ok".to_owned(), answer.clone()]);
    let before = graph.sent_before_pass.lock().unwrap().clone();
    assert_eq!(before.len(), 1, "passed once");
    assert!(before[0].contains(&answer), "passed after the answer, not after the earlier reply: {before:?}");
}

/// A Graph API whose Conversations API always fails (Meta is down for reads); sends are counted.
#[derive(Default)]
struct UnreadableConversations {
    reads: Mutex<u32>,
    sends: Mutex<u32>,
}

#[async_trait]
impl GraphApi for UnreadableConversations {
    async fn send_message(&self, _: &AccessToken, _: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        *self.sends.lock().unwrap() += 1;
        Ok(SendOk { message_id: "m".into(), usage: None })
    }

    async fn conversation(
        &self,
        _: &AccessToken,
        _: &PageId,
        _: Channel,
        _: &str,
    ) -> Result<Option<String>, GraphFailure> {
        *self.reads.lock().unwrap() += 1;
        Err(GraphFailure { http_status: Some(500), message: "down".into(), ..GraphFailure::default() })
    }
}

/// An inbox whose one event comes back after a crash with a reply of unknown outcome.
#[derive(Default)]
struct UnknownReplyInbox {
    finished: Mutex<Vec<i64>>,
}

#[async_trait]
impl EventSink for UnknownReplyInbox {
    async fn recorded(&self, _: InboxId) -> Result<Vec<RecordedReply>, SinkError> {
        Ok(vec![RecordedReply { id: ReplyId(7), text: "hi".into(), sent: false, unknown: true, recorded_unix: 0 }])
    }

    async fn record(&self, _: &[ToRecord]) -> Result<Vec<Vec<RecordedReply>>, SinkError> {
        unreachable!("a recovered event's replies are recorded already")
    }

    async fn sent_ids(&self, _: &PageId, _: &str, _: i64) -> Result<Vec<String>, SinkError> {
        Ok(Vec::new())
    }

    async fn progress(&self, progress: Progress) {
        self.finished.lock().unwrap().extend(progress.finished.into_iter().map(|(id, _)| id.0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopping_engine_gives_up_settling_at_once_and_leaves_the_event_pending() {
    let (graph, inbox) = (Arc::new(UnreadableConversations::default()), Arc::new(UnknownReplyInbox::default()));
    let router = started(EngineDeps {
        source: Arc::new(Source),
        graph: graph.clone(),
        status: Arc::new(Status::default()),
        events: inbox.clone(),
        tenure: Arc::new(EveryPage),
        settings: EngineSettings { retry_base: Duration::from_secs(1), ..EngineSettings::default() },
    })
    .await;
    router.dispatch(InboundEvent { recovered: true, ..inbox_event(1, "7001", 1) });
    // The first read (1.3 s after the tenant started: a previous tenant may have used the Page's second)
    // failed; the next would come after the backoff.
    run_for(Duration::from_millis(1_000)).await;
    assert_eq!(*graph.reads.lock().unwrap(), 0, "no read within the first window");
    run_for(Duration::from_millis(500)).await;
    assert_eq!(*graph.reads.lock().unwrap(), 1);

    let stopping = Instant::now();
    router.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_millis(200), "shutdown waited {:?} for settling", stopping.elapsed());
    assert_eq!(*graph.reads.lock().unwrap(), 1, "no read after the engine began to stop");
    assert_eq!(*graph.sends.lock().unwrap(), 0, "the reply of unknown outcome is not sent unsettled");
    assert!(inbox.finished.lock().unwrap().is_empty(), "the event stays pending for the next start");
}

#[tokio::test(start_paused = true)]
async fn a_send_whose_page_moved_while_its_mark_was_written_is_not_made_even_once_the_page_is_back() {
    let tenure = Arc::new(Epoch(Mutex::new(Some(1))));
    let (router, graph, inbox) =
        slow_inbox_engine_on(Arc::new(Source), EngineSettings::default(), tenure.clone()).await;
    inbox.first.add_permits(1);
    router.dispatch(inbox_event(1, "a", 1));
    // The reply is recorded and its mark (100 ms) is being written when the page moves away and comes back
    // (a node paused past its lease that joined again and claimed it under a new epoch).
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(inbox.marks.lock().unwrap().is_empty(), "the mark is still being written");
    *tenure.0.lock().unwrap() = None;
    router.disown(&page());
    *tenure.0.lock().unwrap() = Some(2);
    run_for(Duration::from_secs(2)).await;
    assert_eq!(inbox.marks.lock().unwrap().len(), 1, "the mark was written");
    assert!(graph.calls.lock().unwrap().is_empty(), "the tenant that lost the page sent nothing");
}

/// An engine whose say over the test page is `tenure`, with nothing registered yet.
async fn engine_on(tenure: Arc<dyn Tenure>) -> (Router, Arc<ScriptedGraph>) {
    let graph = Arc::new(ScriptedGraph::default());
    let deps = EngineDeps {
        source: Arc::new(Source),
        graph: graph.clone(),
        status: Arc::new(Status::default()),
        events: Arc::new(NoInbox),
        tenure,
        settings: EngineSettings::default(),
    };
    (Router::start(deps).await.unwrap(), graph)
}

#[tokio::test(start_paused = true)]
async fn a_page_claimed_before_the_directory_knows_it_is_answered_once_it_learns_it() {
    let (router, graph) = engine_on(Arc::new(Epoch(Mutex::new(Some(1))))).await;
    // The node claimed the page; the NOTIFY of its connection has not arrived yet.
    assert_eq!(router.dispatch(message("m1")), Dispatched::UnknownPage);
    router.register(page(), None, "test");
    assert_eq!(router.dispatch(message("m2")), Dispatched::Routed, "known now, and run here since the claim");
    // The connection's NOTIFY arrives late and registers the page again: it stays this node's.
    router.register(page(), None, "test");
    assert_eq!(router.dispatch(message("m3")), Dispatched::Routed);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 2, "both routed events answered");
}

#[tokio::test(start_paused = true)]
async fn whether_a_page_is_run_here_is_asked_of_the_tenure_whatever_the_directory_saw_first() {
    let tenure = Arc::new(Epoch(Mutex::new(None)));
    let (router, graph) = engine_on(tenure.clone()).await;
    router.register(page(), None, "test");
    assert_eq!(router.dispatch(message("m1")), Dispatched::Elsewhere, "another node owns it");
    // This node claims it: nothing else has to tell the engine.
    *tenure.0.lock().unwrap() = Some(3);
    assert_eq!(router.dispatch(message("m2")), Dispatched::Routed);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 1);
    // It moves away: the running tenant stops, and events are not taken here any more.
    *tenure.0.lock().unwrap() = None;
    router.disown(&page());
    assert_eq!(router.dispatch(message("m3")), Dispatched::Elsewhere);
    // A disconnect and a reconnect while it is run here (the directory forgets it, then learns it again).
    *tenure.0.lock().unwrap() = Some(4);
    router.disconnect(&page());
    assert_eq!(router.dispatch(message("m4")), Dispatched::UnknownPage);
    router.connected(page(), None, "test");
    assert_eq!(router.dispatch(message("m5")), Dispatched::Routed);
    run_for(Duration::from_secs(1)).await;
    assert_eq!(graph.calls.lock().unwrap().len(), 2, "m2 and m5 answered, none of the others");
}

#[tokio::test(start_paused = true)]
async fn a_tenant_restarted_from_outside_sends_nothing_it_had_decided_before() {
    let (router, graph, inbox) = slow_inbox_engine(Arc::new(Source)).await;
    inbox.first.add_permits(1);
    router.dispatch(inbox_event(1, "a", 1));
    // The reply is recorded and its mark (100 ms) is being written when the watchdog restarts the tenant (it
    // made no progress): the page is still run here, under the same epoch.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(inbox.marks.lock().unwrap().is_empty(), "the mark is still being written");
    assert!(router.restart(&page()));
    run_for(Duration::from_secs(2)).await;
    assert_eq!(inbox.marks.lock().unwrap().len(), 1, "the mark was written");
    assert!(graph.calls.lock().unwrap().is_empty(), "the stopped tenant sent nothing; the next one settles it");
}

/// A bot that answers events one by one, at most four at once: customer 7001's answers take two seconds, every
/// other customer's come at once; each answer names the message it answers.
struct OneByOneBot;

#[async_trait]
impl Responder for OneByOneBot {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError> {
        if event.sender == "7001" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let EventKind::Message { mid, .. } = &event.kind else { return Ok(BotAnswer::default()) };
        Ok(BotAnswer::replies(vec![format!("re {mid}")]))
    }

    fn parallel(&self) -> usize {
        4
    }
}

struct OneByOneSource;

/// An engine with default settings whose pages are loaded from `source`, and its Graph API.
async fn engine_from(source: Arc<dyn TenantSource>) -> (Router, Arc<ScriptedGraph>) {
    let graph = Arc::new(ScriptedGraph::default());
    let router = started(EngineDeps {
        source,
        graph: graph.clone(),
        status: Arc::new(Status::default()),
        events: Arc::new(NoInbox),
        tenure: Arc::new(EveryPage),
        settings: EngineSettings::default(),
    })
    .await;
    (router, graph)
}

#[async_trait]
impl TenantSource for OneByOneSource {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        Ok(profile(page, Arc::new(OneByOneBot)))
    }
}

#[tokio::test]
async fn a_slow_answer_holds_up_only_its_own_conversation_when_the_bot_answers_one_by_one() {
    let (router, graph) = engine_from(Arc::new(OneByOneSource)).await;
    let from = |sender: &str, mid: &str, ts: i64| {
        let mut e = message(mid);
        e.sender = sender.into();
        e.timestamp = ts;
        e
    };
    let started = Instant::now();
    // The slow customer writes twice; five others once each, after.
    router.dispatch(from("7001", "slow1", 1));
    router.dispatch(from("7001", "slow2", 2));
    for (i, who) in ["7002", "7003", "7004", "7005", "7006"].into_iter().enumerate() {
        router.dispatch(from(who, &format!("quick{i}"), 3 + i64::try_from(i).unwrap()));
    }
    // The others are answered while the slow customer's first answer is still being made.
    tokio::time::timeout(Duration::from_secs(10), async {
        while graph.texts.lock().unwrap().iter().filter(|t| t.starts_with("re quick")).count() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other conversations are answered");
    assert!(!graph.texts.lock().unwrap().iter().any(|t| t.starts_with("re slow")), "the slow answer is not out yet");
    // The slow conversation is answered in its order, one message after the other.
    tokio::time::timeout(Duration::from_secs(10), async {
        while graph.texts.lock().unwrap().iter().filter(|t| t.starts_with("re slow")).count() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow conversation is answered");
    let slow: Vec<String> = graph.texts.lock().unwrap().iter().filter(|t| t.starts_with("re slow")).cloned().collect();
    assert_eq!(slow, ["re slow1", "re slow2"]);
    assert!(started.elapsed() >= Duration::from_secs(4), "one at a time within a conversation");
}

/// A Page whose replies wait for the send limit keeps one timer for its next send, however many events reach it
/// meanwhile. Real time, not paused: the instant of a limiter slot, worked out again by each pump, moves by some
/// nanoseconds between pumps, and that drift is what used to schedule one more timer per event (each of which
/// then scheduled its own successor, every slot, until the backlog was sent).
/// A page whose Send API calls may go at `self.0` a second.
struct SendingAt(u32);

#[async_trait]
impl TenantSource for SendingAt {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        let responder = Arc::new(RulesResponder::new(Default::default(), "ok".into()));
        Ok(TenantProfile { send_rate_per_second: self.0, ..profile(page, responder) })
    }
}

#[tokio::test]
async fn a_backlogged_page_keeps_one_timer_for_its_next_send_however_many_events_reach_it() {
    let (router, graph) = engine_from(Arc::new(SendingAt(20))).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    router.dispatch(message("warm"));
    tokio::time::timeout(Duration::from_secs(5), async {
        while graph.calls.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first reply goes out");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let idle = metrics.num_alive_tasks();
    // 60 customers write 2 ms apart; at 20 sends a second the Page falls behind by most of them.
    let mut most = idle;
    for i in 0..60 {
        let mut event = message(&format!("m{i}"));
        event.sender = format!("8{i:03}");
        router.dispatch(event);
        tokio::time::sleep(Duration::from_millis(2)).await;
        most = most.max(metrics.num_alive_tasks());
    }
    let backlog = 60 - graph.calls.lock().unwrap().len().saturating_sub(1);
    assert!(backlog >= 20, "the Page fell behind (backlog {backlog})");
    // Beside what ran before: the pump timer, and the calls in flight with their storage writes.
    let limit = idle + 1 + 2 * EngineSettings::default().max_in_flight;
    assert!(
        most <= limit,
        "{most} tasks alive at most with a backlog of {backlog}, against {idle} before (limit {limit})"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while graph.calls.lock().unwrap().len() < 61 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the backlog is sent");
}
