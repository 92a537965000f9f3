//! A group-commit writer: requests that arrive while a transaction runs share the next one, so concurrent
//! webhooks (or tenants) do not each pay for a commit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// The most items one group commit writes.
const MAX_ITEMS: usize = 1000;

/// How long each group-commit write took, by writer.
pub const WRITE_SECONDS: &str = "switchboard_store_write_seconds";

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
    /// Starts the writer `name` (the `writer` label of its writes' durations); `write` must return one output
    /// per item, in order. A write starts `linger` after the first request of its group arrived (zero: at
    /// once), gathering what arrives meanwhile.
    pub fn start<F, Fut>(name: &'static str, concurrency: usize, linger: Duration, mut write: F) -> Self
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
                    let started = tokio::time::Instant::now();
                    let result = written.await;
                    metrics::histogram!(WRITE_SECONDS, "writer" => name).record(started.elapsed().as_secs_f64());
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
            GroupCommit::start("test", concurrency, linger, move |items: Vec<u32>| {
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
