//! The game pipeline part of the dashboard: what flows through a broker's queues and
//! the games it tells of, seen as an observer of the broker (its own group, so it takes
//! nothing from the workers); and, when the pipeline runs in this process
//! (`simulate --dashboard`), what its publisher and each of its workers did.
//!
//! A sampler reads it all every [`SAMPLE_EVERY`] into one [`Sample`] pushed to every
//! page, whatever the event rate: the page's cost does not grow with the pipeline's.
//! Memory is bounded: the rate history keeps [`HISTORY_POINTS`] samples, and the book
//! of games in flight at most [`GAMES_REMEMBERED`] games.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::{Broker, BrokerError, BrokerStat, Consumer, stats_within};
use crate::events::transport::{EventSink, TransportStats};
use crate::events::{self, CLEANING_GAME_RECORDS, Envelope, Queue};
use crate::worker::EtlProgress;

/// How often the pipeline is sampled and pages hear of it.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How often the broker is asked for its own figures.
const BROKER_STATS_EVERY: Duration = Duration::from_secs(2);
/// Samples of the rate chart kept (five minutes).
pub const HISTORY_POINTS: usize = 600;
/// Games the book follows at most; the oldest are forgotten first.
pub const GAMES_REMEMBERED: usize = 200_000;
/// Messages an observer takes in one call.
const OBSERVE_BATCH: usize = 1024;
/// Samples a page may fall behind by before it gets a fresh snapshot.
const CHANNEL: usize = 64;

/// Games by status, as the lobby queue's records tell it since the dashboard started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GameCounts {
    /// Created, not started.
    pub waiting_lobby: u64,
    pub in_progress: u64,
    /// Started, then over.
    pub completed: u64,
    /// Over without having started (the lobby timed out).
    pub timed_out: u64,
    /// Over, but begun before the dashboard saw it.
    pub ended_unseen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GameState {
    Waiting,
    Playing,
    Completed,
    TimedOut,
    EndedUnseen,
}

impl GameCounts {
    fn of(&mut self, state: GameState) -> &mut u64 {
        match state {
            GameState::Waiting => &mut self.waiting_lobby,
            GameState::Playing => &mut self.in_progress,
            GameState::Completed => &mut self.completed,
            GameState::TimedOut => &mut self.timed_out,
            GameState::EndedUnseen => &mut self.ended_unseen,
        }
    }
}

/// Follows games through their lobby records, at most [`GAMES_REMEMBERED`] at once.
///
/// Records may come out of order (Kafka spreads a queue over partitions, and the
/// order between partitions is lost): a game's start seen after its end still makes
/// it completed, and its creation seen after its end shows it began while watched.
#[derive(Default)]
struct GameBook {
    states: HashMap<String, GameState>,
    order: VecDeque<String>,
    counts: GameCounts,
}

impl GameBook {
    fn record(&mut self, message: &str, game: &str) {
        use GameState::*;
        let now = self.states.get(game).copied();
        let next = match (message, now) {
            ("Game Created" | "Player Joined", None) => Waiting,
            ("Game Created" | "Player Joined", Some(EndedUnseen)) => TimedOut,
            ("Game Started", None | Some(Waiting)) => Playing,
            ("Game Started", Some(TimedOut | EndedUnseen)) => Completed,
            (CLEANING_GAME_RECORDS, None) => EndedUnseen,
            (CLEANING_GAME_RECORDS, Some(Waiting)) => TimedOut,
            (CLEANING_GAME_RECORDS, Some(Playing)) => Completed,
            _ => return,
        };
        match now {
            Some(was) => *self.counts.of(was) -= 1,
            None => self.order.push_back(game.to_string()),
        }
        *self.counts.of(next) += 1;
        self.states.insert(game.to_string(), next);
        while self.order.len() > GAMES_REMEMBERED {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            // A game forgotten while in flight no longer counts as in flight.
            if let Some(state @ (Waiting | Playing)) = self.states.remove(&old) {
                *self.counts.of(state) -= 1;
            }
        }
    }
}

/// What the observers counted.
#[derive(Default)]
struct Observed {
    events: [AtomicU64; 3],
    /// Lobby messages that were not event envelopes.
    unreadable: AtomicU64,
    games: Mutex<GameBook>,
}

/// The parts of the pipeline that run in this process.
#[derive(Clone)]
pub struct LocalPipeline {
    pub sink: Arc<EventSink>,
    pub progress: Arc<EtlProgress>,
    /// Every worker gets every event (a broadcasting broker).
    pub broadcast: bool,
}

struct Attached {
    local: LocalPipeline,
    /// The sink's counts when this run started.
    before: TransportStats,
}

/// One queue in a sample.
#[derive(Clone, Debug, Serialize)]
pub struct QueueSample {
    pub queue: &'static str,
    /// Events the dashboard saw on it.
    pub observed: u64,
    pub per_s: f64,
    /// Events this process published to it, when the publisher is local.
    pub published: Option<u64>,
}

/// One worker in a sample.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerSample {
    pub worker: String,
    pub events: u64,
    pub games_written: u64,
    pub files_written: u64,
    /// Lobby events published that this worker has not taken yet (broadcasting
    /// brokers; on the others the group shares one backlog, `group_lag`).
    pub lag: Option<u64>,
}

/// The pipeline at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the dashboard started.
    pub t_s: f64,
    pub broker: &'static str,
    pub queues: Vec<QueueSample>,
    pub games: GameCounts,
    pub unreadable: u64,
    /// Events this process could not publish (local publisher only).
    pub events_dropped: Option<u64>,
    /// Events the broker lost before this process's workers could use them (local
    /// workers only; see [`crate::worker::EtlProgress::lost`]).
    pub events_lost: Option<u64>,
    pub workers: Vec<WorkerSample>,
    /// Lobby events published that no worker has taken yet (local pipeline on a
    /// work-sharing broker).
    pub group_lag: Option<u64>,
    /// The broker's own figures for the workers' group.
    pub broker_stats: Vec<BrokerStat>,
    /// The local run is over.
    pub finished: bool,
}

/// One point of the rate chart.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RatePoint {
    pub t_s: f64,
    /// Events per second, by queue (login, lobby, game).
    pub per_s: [f64; 3],
}

/// What a page starts from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineSnapshot {
    pub history: Vec<RatePoint>,
    pub latest: Option<Sample>,
}

#[derive(Default)]
struct FeedState {
    history: VecDeque<RatePoint>,
    latest: Option<Sample>,
}

/// The pipeline view of one dashboard.
pub struct PipelineFeed {
    broker: Arc<dyn Broker>,
    observed: Arc<Observed>,
    local: Mutex<Option<Attached>>,
    finished: AtomicBool,
    stats: Mutex<Vec<BrokerStat>>,
    state: Mutex<FeedState>,
    tx: broadcast::Sender<Arc<Sample>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PipelineFeed {
    /// Subscribes observers to the broker's three queues and starts sampling. Fails
    /// when the broker cannot be subscribed to.
    pub async fn start(broker: Arc<dyn Broker>) -> Result<Arc<Self>, BrokerError> {
        let observed = Arc::new(Observed::default());
        let mut consumers = Vec::new();
        for queue in Queue::ALL {
            consumers.push((
                queue,
                broker.observer(&broker.topic_for(queue.name())).await?,
            ));
        }
        let (tx, _) = broadcast::channel(CHANNEL);
        let feed = Arc::new(Self {
            broker,
            observed: observed.clone(),
            local: Mutex::new(None),
            finished: AtomicBool::new(false),
            stats: Mutex::new(Vec::new()),
            state: Mutex::new(FeedState::default()),
            tx,
            tasks: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let mut tasks = Vec::new();
        for (queue, consumer) in consumers {
            tasks.push(tokio::spawn(observe(consumer, queue, observed.clone())));
        }
        let weak = Arc::downgrade(&feed);
        tasks.push(tokio::spawn(async move {
            let mut last = Instant::now();
            let mut last_counts = [0u64; 3];
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                let Some(feed) = weak.upgrade() else { return };
                let now = Instant::now();
                last_counts = feed.sample(now.duration_since(last), last_counts);
                last = now;
            }
        }));
        let weak = Arc::downgrade(&feed);
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(feed) = weak.upgrade() else { return };
                feed.read_broker_stats().await;
                drop(feed);
                tokio::time::sleep(BROKER_STATS_EVERY).await;
            }
        }));
        *lock(&feed.tasks) = tasks;
        Ok(feed)
    }

    /// Shows a pipeline of this process from now on (a new run replaces the last).
    pub fn attach(&self, local: LocalPipeline) {
        let before = local.sink.stats();
        *lock(&self.local) = Some(Attached { local, before });
        self.finished.store(false, Ordering::Relaxed);
    }

    /// The local run is over; the next sample says so.
    pub fn finished(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// The state so far and every sample after it.
    pub fn subscribe(&self) -> (PipelineSnapshot, broadcast::Receiver<Arc<Sample>>) {
        let state = lock(&self.state);
        (snapshot_of(&state), self.tx.subscribe())
    }

    /// The pipeline as the page sees it now.
    pub fn snapshot(&self) -> PipelineSnapshot {
        snapshot_of(&lock(&self.state))
    }

    /// Events seen on each queue so far (in [`Queue::index`] order) and the games by
    /// status, read now rather than at the last sample.
    pub fn observed_now(&self) -> ([u64; 3], GameCounts) {
        let events = [0, 1, 2].map(|i| self.observed.events[i].load(Ordering::Relaxed));
        (events, lock(&self.observed.games).counts)
    }

    async fn read_broker_stats(&self) {
        let topic = self.broker.topic_for(events::WORKER_QUEUE);
        let read = stats_within(
            &*self.broker,
            &topic,
            events::WORKER_GROUP,
            BROKER_STATS_EVERY,
        );
        // Figures that cannot be read now are not shown as if they were current.
        let stats = read.await.unwrap_or_else(|e| {
            tracing::debug!("dashboard: reading the broker's figures: {e}");
            Vec::new()
        });
        *lock(&self.stats) = stats;
    }

    /// Takes one sample and pushes it; returns the observed counts it read.
    fn sample(&self, since_last: Duration, last_counts: [u64; 3]) -> [u64; 3] {
        let (counts, games) = self.observed_now();
        let secs = since_last.as_secs_f64().max(1e-3);
        let per_s = [0, 1, 2].map(|i| counts[i].saturating_sub(last_counts[i]) as f64 / secs);
        let local = lock(&self.local);
        let transport = local
            .as_ref()
            .map(|a| a.local.sink.stats().since(&a.before));
        let queues = Queue::ALL
            .iter()
            .map(|q| QueueSample {
                queue: q.name(),
                observed: counts[q.index()],
                per_s: per_s[q.index()],
                published: transport.map(|t| t.published_by_queue[q.index()]),
            })
            .collect();
        let lobby_published = transport.map(|t| t.published_by_queue[Queue::Lobby.index()]);
        let mut workers = Vec::new();
        let mut group_lag = None;
        let events_lost = local.as_ref().map(|a| a.local.progress.counts().lost);
        if let (Some(a), Some(published)) = (local.as_ref(), lobby_published) {
            let rows = a.local.progress.workers();
            let taken: u64 = rows.iter().map(|w| w.events).sum();
            if !a.local.broadcast {
                group_lag = Some(published.saturating_sub(taken));
            }
            workers = rows
                .into_iter()
                .map(|w| WorkerSample {
                    lag: a
                        .local
                        .broadcast
                        .then(|| published.saturating_sub(w.events)),
                    worker: w.worker,
                    events: w.events,
                    games_written: w.games_written,
                    files_written: w.files_written,
                })
                .collect();
        }
        drop(local);
        let sample = Sample {
            t_s: self.started.elapsed().as_secs_f64(),
            broker: self.broker.kind(),
            queues,
            games,
            unreadable: self.observed.unreadable.load(Ordering::Relaxed),
            events_dropped: transport.map(|t| t.dropped),
            events_lost,
            workers,
            group_lag,
            broker_stats: lock(&self.stats).clone(),
            finished: self.finished.load(Ordering::Relaxed),
        };
        let mut state = lock(&self.state);
        state.history.push_back(RatePoint {
            t_s: sample.t_s,
            per_s,
        });
        while state.history.len() > HISTORY_POINTS {
            state.history.pop_front();
        }
        state.latest = Some(sample.clone());
        // Sent under the lock, so no subscriber misses it or sees it twice.
        let _ = self.tx.send(Arc::new(sample));
        counts
    }
}

impl Drop for PipelineFeed {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

fn snapshot_of(state: &FeedState) -> PipelineSnapshot {
    PipelineSnapshot {
        history: state.history.iter().copied().collect(),
        latest: state.latest.clone(),
    }
}

/// Counts one queue's messages (and follows the games on the lobby queue), acking
/// each: an observer's group holds nothing back.
async fn observe(mut consumer: Box<dyn Consumer>, queue: Queue, observed: Arc<Observed>) {
    let mut warned = false;
    loop {
        let batch = match consumer.next_batch(OBSERVE_BATCH).await {
            Ok(b) => b,
            Err(BrokerError::Closed) => return,
            Err(e) => {
                if !warned {
                    tracing::warn!("dashboard: observing {}: {e}; retrying", queue.name());
                    warned = true;
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
                continue;
            }
        };
        warned = false;
        observed.events[queue.index()].fetch_add(batch.len() as u64, Ordering::Relaxed);
        if queue == Queue::Lobby {
            let mut book = lock(&observed.games);
            for d in &batch {
                match Envelope::parse(&d.payload) {
                    Ok(e) => {
                        if let Some(game) = e.task_str("game_token") {
                            book.record(&e.log_message, &game);
                        }
                    }
                    Err(_) => {
                        observed.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        for d in batch {
            if let Err(e) = d.ack().await {
                tracing::debug!("dashboard: acknowledging on {}: {e}", queue.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(book: &mut GameBook, game: &str, players: usize, started: bool) {
        book.record("Game Created", game);
        for _ in 0..players {
            book.record("Player Joined", game);
        }
        if started {
            book.record("Game Started", game);
        }
    }

    #[test]
    fn the_book_follows_games_through_their_records() {
        let mut book = GameBook::default();
        play(&mut book, "a", 3, true);
        play(&mut book, "b", 2, false);
        assert_eq!(book.counts.in_progress, 1);
        assert_eq!(book.counts.waiting_lobby, 1);
        // Every participant's end record: the game counts once.
        for _ in 0..3 {
            book.record(CLEANING_GAME_RECORDS, "a");
        }
        book.record(CLEANING_GAME_RECORDS, "b");
        book.record(CLEANING_GAME_RECORDS, "c");
        let c = book.counts;
        assert_eq!(
            (c.waiting_lobby, c.in_progress, c.completed, c.timed_out),
            (0, 0, 1, 1)
        );
        assert_eq!(c.ended_unseen, 1);
    }

    #[test]
    fn the_book_takes_records_out_of_order() {
        let mut book = GameBook::default();
        // The end first, then the start: completed.
        book.record(CLEANING_GAME_RECORDS, "a");
        book.record("Game Created", "a");
        book.record(CLEANING_GAME_RECORDS, "a");
        book.record("Game Started", "a");
        // The end, then the creation, no start: timed out.
        book.record(CLEANING_GAME_RECORDS, "b");
        book.record("Player Joined", "b");
        let c = book.counts;
        assert_eq!(
            (
                c.waiting_lobby,
                c.in_progress,
                c.completed,
                c.timed_out,
                c.ended_unseen
            ),
            (0, 0, 1, 1, 0)
        );
    }

    #[test]
    fn the_book_forgets_its_oldest_games_and_their_counts() {
        let mut book = GameBook::default();
        for i in 0..GAMES_REMEMBERED + 10 {
            book.record("Game Created", &i.to_string());
        }
        assert_eq!(book.order.len(), GAMES_REMEMBERED);
        assert_eq!(book.states.len(), GAMES_REMEMBERED);
        assert_eq!(book.counts.waiting_lobby, GAMES_REMEMBERED as u64);
    }

    #[tokio::test]
    async fn the_feed_counts_what_flows_through_the_broker() {
        let broker: Arc<dyn Broker> = Arc::new(crate::broker::MemoryBroker::new());
        let feed = PipelineFeed::start(broker.clone()).await.expect("start");
        let (_, mut rx) = feed.subscribe();
        let publisher = broker.publisher().await.expect("publisher");
        let event = |message: &str| {
            crate::events::transport::envelope_json(
                tracing::Level::INFO,
                "2026-11-28T00:00:00.000Z",
                "memory.lib.server.lobby",
                message,
                Some(r#"{"game_token":"g1","user_token":"u1"}"#),
            )
            .into_bytes()
        };
        let lobby = broker.topic_for(Queue::Lobby.name());
        publisher
            .publish(
                &lobby,
                &[
                    event("Game Created"),
                    event("Game Started"),
                    event(CLEANING_GAME_RECORDS),
                    b"not an event".to_vec(),
                ],
            )
            .await
            .expect("publish");
        publisher
            .publish(
                &broker.topic_for(Queue::Game.name()),
                &vec![b"{}".to_vec(); 5],
            )
            .await
            .expect("publish");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sample = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("a sample in time")
                .expect("a sample");
            if sample.games.completed == 1 && sample.queues[Queue::Game.index()].observed == 5 {
                assert_eq!(sample.queues[Queue::Lobby.index()].observed, 4);
                assert_eq!(sample.unreadable, 1);
                assert_eq!(sample.broker, "memory");
                break;
            }
        }
        assert!(!feed.snapshot().history.is_empty());
    }
}
