//! The durable webhook inbox and its reply outbox. With `inbox.mode = "durable"`, the events of a POST
//! are committed before Meta gets its 200 (Meta retries for about 36 hours what it did not get a 200 for,
//! and never replays what it did); a failed commit answers 503 so Meta retries.
//!
//! Tenants record an event's replies in the outbox before sending any, store Meta's `message_id` for
//! each reply it accepts, and mark the event done (or failed, with the reason). On start-up, pending events
//! are handed to the engine again; a recovered event reuses its recorded replies and skips those Meta
//! accepted. The window left: a reply Meta accepted whose answer was not stored yet when the process died
//! (in flight, or its `message_id` not yet committed) is sent again.
//!
//! Every write goes through a [`GroupCommit`] writer: requests that arrive while a transaction runs share
//! the next one, so concurrent webhooks (or tenants) do not each pay for a commit.
//!
//! A webhook waits at most `inbox.commit_timeout_ms` for its commit (Meta wants an answer within 5 s), then
//! gets 503. A commit that was still running then may yet succeed: such a row, like any row whose event
//! the engine lost (a quarantine, storage refusing its replies), is pending and not in flight, and the
//! sweeper hands it over again. [`InFlight`] is what keeps the sweeper from handing over an event the engine
//! still holds; what a failed tenant held is due again once its Send API calls in flight are over.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use switchboard_actors::{
    Dispatched, EventSink, InboundEvent, InboxId, PageId, Progress, RecordedReply, Router, SinkError,
};
use tokio::sync::{mpsc, oneshot};

use crate::meta::webhook::{RAW_LIMIT, Unhandled};
use crate::store::{InboxRow, NewReply, Store, StoreError, UnhandledRow};

/// The most items one group commit writes.
const MAX_ITEMS: usize = 1000;

/// Where a request's outputs (or the write's error) go.
type Reply<O> = oneshot::Sender<Result<Vec<O>, String>>;

struct Request<I, O> {
    items: Vec<I>,
    /// A request still queued at its deadline is answered with an error, never written.
    deadline: Option<tokio::time::Instant>,
    reply: Reply<O>,
}

/// A group-commit writer task: requests queued while the writes run are written together by the next one,
/// and each request gets back its own outputs, in order. A failed write fails every request in it.
///
/// Up to `concurrency` writes run at once (each on its own database connection), so the next group is
/// being written while the answers to the last one go out. With one, writes are strictly sequential: a
/// request's answer then means everything submitted before it is written too.
pub struct GroupCommit<I, O> {
    tx: mpsc::Sender<Request<I, O>>,
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Starts the writer; `write` must return one output per item, in order. A write starts `linger` after
    /// the first request of its group arrived (zero: at once), gathering what arrives meanwhile.
    pub fn start<F, Fut>(concurrency: usize, linger: Duration, mut write: F) -> Self
    where
        F: FnMut(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, String>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Request<I, O>>(4096);
        let writers = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            loop {
                // Wait for a free writer before taking requests, so they gather into one group meanwhile.
                let Ok(writer) = writers.clone().acquire_owned().await else { break };
                let Some(first) = rx.recv().await else { break };
                if !linger.is_zero() {
                    tokio::time::sleep(linger).await;
                }
                let mut requests = vec![first];
                let mut n = requests[0].items.len();
                while n < MAX_ITEMS {
                    match rx.try_recv() {
                        Ok(request) => {
                            n += request.items.len();
                            requests.push(request);
                        }
                        Err(_) => break,
                    }
                }
                let now = tokio::time::Instant::now();
                let mut all = Vec::with_capacity(n);
                let mut answers = Vec::with_capacity(requests.len());
                for request in requests {
                    if request.deadline.is_some_and(|d| d <= now) {
                        let _ = request.reply.send(Err("timed out waiting for the commit".to_owned()));
                        continue;
                    }
                    answers.push((request.items.len(), request.reply));
                    all.extend(request.items);
                }
                if answers.is_empty() {
                    continue;
                }
                let n = all.len();
                let written = write(all);
                tokio::spawn(async move {
                    let result = written.await;
                    drop(writer);
                    answer(answers, n, result);
                });
            }
        });
        Self { tx }
    }

    /// Writes `items` (with whatever else is queued) and returns their outputs.
    pub async fn submit(&self, items: Vec<I>) -> Result<Vec<O>, String> {
        self.submit_by(items, None).await
    }

    /// Like `submit`, but items still queued at `deadline` are not written, and the answer is an error if
    /// none came by then (the write may still be running, and may yet succeed).
    pub async fn submit_by(&self, items: Vec<I>, deadline: Option<tokio::time::Instant>) -> Result<Vec<O>, String> {
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.tx.send(Request { items, deadline, reply }).await.map_err(|_| "the writer stopped".to_owned())?;
            answer.await.map_err(|_| "the writer stopped".to_owned())?
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, wait)
                .await
                .unwrap_or_else(|_| Err("timed out waiting for the commit".to_owned())),
            None => wait.await,
        }
    }
}

/// Hands each request its share of a write's outputs, or the write's error.
fn answer<O>(answers: Vec<(usize, Reply<O>)>, n: usize, result: Result<Vec<O>, String>) {
    match result {
        Ok(outputs) if outputs.len() == n => {
            let mut outputs = outputs.into_iter();
            for (len, reply) in answers {
                let _ = reply.send(Ok(outputs.by_ref().take(len).collect()));
            }
        }
        Ok(outputs) => {
            let problem = format!("the writer returned {} results for {n} items", outputs.len());
            for (_, reply) in answers {
                let _ = reply.send(Err(problem.clone()));
            }
        }
        Err(problem) => {
            for (_, reply) in answers {
                let _ = reply.send(Err(problem.clone()));
            }
        }
    }
}

/// Inbox events the engine holds: handed over and not finished, with when they were handed over and to
/// which tenant.
pub struct InFlight {
    held: dashmap::DashMap<InboxId, Held>,
    /// How long after its tenant failed an event counts as lost: past the Send API calls still in flight.
    lost_grace: Duration,
}

struct Held {
    since: tokio::time::Instant,
    page: PageId,
    /// When its tenant failed, if it did.
    lost_at: Option<tokio::time::Instant>,
}

impl InFlight {
    pub fn new(lost_grace: Duration) -> Self {
        Self { held: dashmap::DashMap::new(), lost_grace }
    }

    fn handed(&self, id: InboxId, page: PageId) {
        self.held.insert(id, Held { since: tokio::time::Instant::now(), page, lost_at: None });
    }

    fn finished(&self, ids: impl IntoIterator<Item = InboxId>) {
        for id in ids {
            self.held.remove(&id);
        }
    }

    /// The tenant of `page` failed; what it held is due once `lost_grace` has passed.
    fn lost(&self, page: &PageId) {
        let now = tokio::time::Instant::now();
        for mut held in self.held.iter_mut() {
            if held.page == *page && held.lost_at.is_none() {
                held.lost_at = Some(now);
            }
        }
    }

    /// Not held, held by a tenant that failed at least `lost_grace` ago, or held for longer than `stale`
    /// (the engine lost it some other way).
    fn due(&self, id: InboxId, stale: Duration) -> bool {
        self.held.get(&id).is_none_or(|held| {
            held.since.elapsed() >= stale || held.lost_at.is_some_and(|at| at.elapsed() >= self.lost_grace)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The durable inbox of a running server: webhook commits, and handing pending events to the engine.
/// Cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    writer: GroupCommit<InboxRow, Option<InboxId>>,
    store: Store,
    router: Router,
    in_flight: Arc<InFlight>,
    events: Arc<StoreEvents>,
    commit_timeout: Duration,
}

impl Inbox {
    /// Starts the writer task. `in_flight` must be the one `events` (the engine's sink) reports to.
    pub fn start(
        store: Store,
        router: Router,
        in_flight: Arc<InFlight>,
        events: Arc<StoreEvents>,
        commit_timeout: Duration,
        commit_writers: usize,
    ) -> Self {
        let writer = {
            let store = store.clone();
            GroupCommit::start(commit_writers, Duration::ZERO, move |rows: Vec<InboxRow>| {
                let store = store.clone();
                async move {
                    store.inbox_insert(&rows).await.map_err(|err| {
                        tracing::error!(error = %err, rows = rows.len(), "inbox commit failed; answering 503");
                        err.to_string()
                    })
                }
            })
        };
        Self { writer, store, router, in_flight, events, commit_timeout }
    }

    /// Waits until the progress reported so far (sent replies, finished events) is stored; at shutdown,
    /// after the engine stopped and before storage closes, so no confirmed reply is sent again at the next
    /// start.
    pub async fn flush(&self) {
        self.events.progress(Progress::default()).await;
    }

    /// Commits `events` (with their tenant page) and returns each one's inbox id, `None` for one already
    /// stored (a redelivery). `Err` means the commit failed or did not finish in time: answer 503.
    pub async fn commit(&self, events: &[(&InboundEvent, &str)]) -> Result<Vec<Option<InboxId>>, String> {
        let rows = events.iter().map(|(e, page)| row(e, page)).collect::<Result<Vec<_>, _>>()?;
        self.writer.submit_by(rows, Some(tokio::time::Instant::now() + self.commit_timeout)).await
    }

    /// Keeps the parts of a webhook body Switchboard does not understand, before the 200 like the events (a
    /// redelivery is kept once). Rare, so a plain transaction rather than a group commit.
    pub async fn keep_unhandled(&self, parts: &[Unhandled]) -> Result<(), String> {
        let rows: Vec<UnhandledRow> = parts.iter().map(unhandled_row).collect();
        match tokio::time::timeout(self.commit_timeout, self.store.unhandled_insert(&rows)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::error!(error = %err, parts = rows.len(), "cannot keep unhandled webhook parts; answering 503");
                Err(err.to_string())
            }
            Err(_) => Err("timed out keeping unhandled webhook parts".to_owned()),
        }
    }

    /// Hands a committed event of tenant `page` to the engine. One the router could not take (its tenant is
    /// quarantined, or its start buffer is full) is not held: the next sweep hands it over again.
    pub fn dispatch(&self, mut event: InboundEvent, id: InboxId, page: PageId) {
        event.inbox_id = Some(id);
        self.in_flight.handed(id, page);
        if self.router.dispatch(event) != Dispatched::Routed {
            self.in_flight.finished([id]);
        }
    }

    /// Hands every pending row received before `received_before` that the engine does not hold (or has
    /// held for longer than `stale`) to the engine again, oldest first; returns how many. At start-up this
    /// is every pending row.
    pub async fn recover(&self, received_before: Duration, stale: Duration) -> Result<usize, StoreError> {
        let before = crate::clock::now() - chrono::Duration::from_std(received_before).unwrap_or_default();
        let pending = if self.in_flight.is_empty() {
            // Start-up: everything pending is due; read it in one go.
            self.store.inbox_pending(before, 1_000_000).await?
        } else {
            // A sweep: most pending rows are usually held (waiting behind a throttled page, say); read the
            // ids, and the bodies of the due ones only.
            let mut due = Vec::new();
            for id in self.store.inbox_pending_ids(before, 1_000_000).await? {
                if self.in_flight.due(id, stale)
                    && let Some(json) = self.store.inbox_pending_event(id).await?
                {
                    due.push((id, json));
                }
            }
            due
        };
        let mut handed = 0;
        for (id, json) in pending {
            match serde_json::from_str::<InboundEvent>(&json) {
                Ok(mut event) => {
                    event.recovered = true;
                    let page =
                        self.router.route(event.account_id.as_str()).map_or(event.account_id.clone(), |r| r.page);
                    self.dispatch(event, id, page);
                    handed += 1;
                }
                Err(err) => {
                    self.store.inbox_finish(&[(id, Some(format!("stored event unreadable: {err}")))]).await?;
                }
            }
        }
        Ok(handed)
    }

    /// Every `every`, hands over again pending rows at least `every` old that the engine does not hold
    /// (a commit answered 503 after its deadline that succeeded after all, an event a crashed or
    /// quarantined tenant lost, replies storage refused, a replayed dead letter) or has held for longer
    /// than `stale`.
    pub async fn run_sweeper(self, every: Duration, stale: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.recover(every, stale).await {
                Ok(0) => {}
                Ok(handed) => tracing::info!(handed, "pending inbox events handed to the engine again"),
                Err(err) => tracing::warn!(error = %err, "cannot sweep the inbox; will try again"),
            }
        }
    }
}

/// The inbox row the webhook commits for `event` of tenant page `page`.
pub fn row(event: &InboundEvent, page: &str) -> Result<InboxRow, String> {
    let json = serde_json::to_string(event).map_err(|e| e.to_string())?;
    let dedup_key = event.dedup_key().unwrap_or_else(|| format!("h:{}", hex::encode(Sha256::digest(json.as_bytes()))));
    Ok(InboxRow { page_id: page.to_owned(), dedup_key, event: json, done: !event.wants_reply() })
}

/// The row that keeps `part`: its raw JSON cut at `RAW_LIMIT` bytes (on a character boundary), and a hash of
/// the whole part so a redelivery is kept once.
fn unhandled_row(part: &Unhandled) -> UnhandledRow {
    let mut hash = Sha256::new();
    for piece in [part.object, part.kind, part.account.as_deref().unwrap_or_default(), part.raw.as_str()] {
        hash.update(piece.as_bytes());
        hash.update([0]);
    }
    let (raw, detail) = if part.raw.len() > RAW_LIMIT {
        let mut cut = RAW_LIMIT;
        while !part.raw.is_char_boundary(cut) {
            cut -= 1;
        }
        (part.raw[..cut].to_owned(), format!("{} (raw cut at {cut} of {} bytes)", part.detail, part.raw.len()))
    } else {
        (part.raw.clone(), part.detail.clone())
    };
    UnhandledRow {
        object: part.object.to_owned(),
        kind: part.kind.to_owned(),
        reason: part.reason.label().to_owned(),
        detail,
        account_id: part.account.clone(),
        raw,
        raw_hash: hex::encode(hash.finalize()),
    }
}

/// How long the progress writer gathers marks before it writes them. Progress is off every event's path
/// (a reply is sent before its mark is stored), but its writes took turns with the inbox and outbox commits
/// that are on it: at 5,000 events/s, lingering 5 ms cut the webhook → Send API p50 from 5.4 to 2.6–2.9 ms.
/// The price: a reply Meta accepted has its `message_id` stored up to 5 ms later, which widens the window in
/// which a crash resends it by as much.
const PROGRESS_LINGER: Duration = Duration::from_millis(5);

/// The engine's view of the inbox and outbox, on the store.
pub struct StoreEvents {
    store: Store,
    record: GroupCommit<NewReply, RecordedReply>,
    progress: GroupCommit<Progress, ()>,
    in_flight: Arc<InFlight>,
}

impl StoreEvents {
    pub fn new(store: Store, in_flight: Arc<InFlight>) -> Self {
        let record = {
            let store = store.clone();
            GroupCommit::start(1, Duration::ZERO, move |rows: Vec<NewReply>| {
                let store = store.clone();
                async move { store.replies_record(&rows).await.map_err(|e| e.to_string()) }
            })
        };
        let progress = {
            let store = store.clone();
            // One writer: a progress write's answer means all progress before it is stored (`flush`).
            let in_flight = in_flight.clone();
            GroupCommit::start(1, PROGRESS_LINGER, move |batches: Vec<Progress>| {
                let (store, in_flight) = (store.clone(), in_flight.clone());
                async move {
                    let n = batches.len();
                    let mut all = Progress::default();
                    for batch in batches {
                        all.sent.extend(batch.sent);
                        all.finished.extend(batch.finished);
                        all.released.extend(batch.released);
                    }
                    write_progress(&store, &all).await;
                    in_flight.finished(all.finished.iter().map(|(id, _)| *id).chain(all.released));
                    Ok(vec![(); n])
                }
            })
        };
        Self { store, record, progress, in_flight }
    }
}

/// Writes progress, retrying until storage takes it: a reply not marked sent would be sent again after a
/// restart. Later progress queues behind this (and is then written together).
async fn write_progress(store: &Store, progress: &Progress) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.inbox_progress(&progress.sent, &progress.finished).await {
            Ok(()) => return,
            Err(err) => {
                tracing::error!(error = %err, sent = progress.sent.len(), finished = progress.finished.len(), ?delay,
                    "cannot store inbox progress; retrying");
                metrics::counter!(PROGRESS_RETRIES).increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How often storing inbox progress had to be retried.
pub const PROGRESS_RETRIES: &str = "switchboard_inbox_progress_retries_total";

#[async_trait]
impl EventSink for StoreEvents {
    async fn recorded(&self, inbox_id: InboxId) -> Result<Vec<RecordedReply>, SinkError> {
        self.store.replies_of(inbox_id).await.map_err(|e| SinkError::Unavailable(e.to_string()))
    }

    async fn record(&self, events: &[(InboxId, Vec<String>)]) -> Result<Vec<Vec<RecordedReply>>, SinkError> {
        let rows = events
            .iter()
            .flat_map(|(inbox_id, texts)| {
                texts.iter().enumerate().map(|(seq, text)| NewReply {
                    inbox_id: *inbox_id,
                    seq: i32::try_from(seq).unwrap_or(i32::MAX),
                    text: text.clone(),
                })
            })
            .collect();
        let mut recorded = self.record.submit(rows).await.map_err(SinkError::Unavailable)?.into_iter();
        Ok(events.iter().map(|(_, texts)| recorded.by_ref().take(texts.len()).collect()).collect())
    }

    async fn progress(&self, progress: Progress) {
        let _ = self.progress.submit(vec![progress]).await;
    }

    fn lost(&self, page: &PageId) {
        self.in_flight.lost(page);
    }
}

/// Deletes finished inbox rows (and their replies) and kept unhandled parts older than `retention`, in
/// batches, until none are left; returns how many. Pending rows are kept whatever their age.
pub async fn prune(store: &Store, retention: Duration) -> Result<u64, StoreError> {
    const BATCH: i64 = 5000;
    let before = crate::clock::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let n = store.inbox_prune(before, BATCH).await? + store.unhandled_prune(before, BATCH).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Prunes every `every` (the first time right away), logging what it removed.
pub async fn run_prune(store: Store, retention: Duration, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match prune(&store, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned finished inbox rows past retention"),
            Err(err) => tracing::warn!(error = %err, "cannot prune the inbox; will try again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A writer that doubles each item, records its groups and the most writes that ran at once, and holds
    /// each write until `release` says so.
    fn doubling(
        concurrency: usize,
        release: Arc<tokio::sync::Semaphore>,
    ) -> (GroupCommit<u32, u32>, Groups, Arc<AtomicUsize>) {
        lingering(concurrency, Duration::ZERO, release)
    }

    /// `doubling`, with a linger.
    fn lingering(
        concurrency: usize,
        linger: Duration,
        release: Arc<tokio::sync::Semaphore>,
    ) -> (GroupCommit<u32, u32>, Groups, Arc<AtomicUsize>) {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (groups, most_at_once) = (groups.clone(), most_at_once.clone());
            GroupCommit::start(concurrency, linger, move |items: Vec<u32>| {
                groups.lock().unwrap().push(items.clone());
                let (release, running, most_at_once) = (release.clone(), running.clone(), most_at_once.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most_at_once.fetch_max(now, Ordering::SeqCst);
                    release.acquire().await.unwrap().forget();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(items.into_iter().map(|i| i * 2).collect())
                }
            })
        };
        (writer, groups, most_at_once)
    }

    /// Submits `items` from a task of its own; the handle answers with the outputs.
    fn in_background(
        writer: &GroupCommit<u32, u32>,
        items: Vec<u32>,
    ) -> tokio::task::JoinHandle<Result<Vec<u32>, String>> {
        let writer = writer.clone();
        tokio::spawn(async move { writer.submit(items).await })
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn requests_queued_during_a_write_share_the_next_one_and_each_gets_its_own_outputs() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (writer, groups, most_at_once) = doubling(1, release.clone());
        let first = in_background(&writer, vec![1]);
        until("the first write started", || groups.lock().unwrap().len() == 1).await;
        let queued: Vec<_> =
            [vec![2, 3], vec![4], vec![5, 6, 7]].into_iter().map(|items| in_background(&writer, items)).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(groups.lock().unwrap().len(), 1, "one writer: nothing else is written while the first runs");
        release.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        let mut answers = Vec::new();
        for request in queued {
            answers.push(request.await.unwrap().unwrap());
        }
        assert_eq!(answers, vec![vec![4, 6], vec![8], vec![10, 12, 14]]);
        assert_eq!(groups.lock().unwrap().len(), 2, "the three queued requests were one group");
        assert_eq!(most_at_once.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn with_two_writers_a_second_group_is_written_while_the_first_runs() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (writer, groups, most_at_once) = doubling(2, release.clone());
        let first = in_background(&writer, vec![1]);
        until("the first write started", || groups.lock().unwrap().len() == 1).await;
        let second = in_background(&writer, vec![2]);
        until("the second write started", || groups.lock().unwrap().len() == 2).await;
        assert_eq!(most_at_once.load(Ordering::SeqCst), 2);
        release.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        assert_eq!(second.await.unwrap().unwrap(), vec![4]);
    }

    #[tokio::test]
    async fn a_request_still_queued_at_its_deadline_is_never_written() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (writer, groups, _) = doubling(1, release.clone());
        let first = in_background(&writer, vec![1]);
        until("the first write started", || groups.lock().unwrap().len() == 1).await;
        let late = writer.submit_by(vec![9], Some(tokio::time::Instant::now() + Duration::from_millis(30))).await;
        assert_eq!(late, Err("timed out waiting for the commit".to_owned()));
        release.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        assert_eq!(writer.submit(vec![3]).await.unwrap(), vec![6]);
        assert_eq!(*groups.lock().unwrap(), vec![vec![1], vec![3]], "the timed-out request was dropped unwritten");
    }

    #[tokio::test]
    async fn a_lingering_writer_gathers_what_arrives_within_its_linger_into_one_write() {
        let release = Arc::new(tokio::sync::Semaphore::new(10));
        let linger = Duration::from_millis(300);
        let (writer, groups, _) = lingering(1, linger, release);
        let first = in_background(&writer, vec![1]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = in_background(&writer, vec![2]);
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        assert_eq!(second.await.unwrap().unwrap(), vec![4]);
        assert_eq!(*groups.lock().unwrap(), vec![vec![1, 2]], "one write for both");
        let started = tokio::time::Instant::now();
        assert_eq!(writer.submit(vec![3]).await.unwrap(), vec![6]);
        assert!(started.elapsed() >= linger, "a lone request waits out the linger");
    }
}
