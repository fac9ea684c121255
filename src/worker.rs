//! ETL workers: consume `Cleaning Game Records` events, extract the finished game from
//! the store, write GAME_META and GAME_PODIUM durably, optionally clean the store, and
//! only then acknowledge.
//!
//! Each game is written once, for its host's event (every participant's lobby logs
//! one); the other events are acknowledged at once. Nothing is cleaned before its
//! tables are on disk, so a backlog of any length loses nothing. A failed write gives
//! the messages back to the broker and backs off; a worker that dies leaves its
//! unacknowledged games to the broker, which hands them to another worker. A [`Pool`]
//! runs the workers of one process (`superhero worker`, `simulate`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::broker::{Broker, BrokerError, Consumer, Delivery};
use crate::etl::{self, GameTables, tables};
use crate::events::{CLEANING_GAME_RECORDS, Envelope};
use crate::game::protocol::Text;
use crate::game::{GameStatus, GameToken, UserToken};
use crate::store::{Extracted, GameStore};
use crate::telemetry::names;

/// The pause after a failure, doubling while failures go on.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
/// Writes one worker keeps going at once: durable writes wait on the disk, and
/// several in flight let it commit them together.
const WRITES_IN_FLIGHT: usize = 8;
/// Messages a worker takes at once at most; those with nothing to write are
/// acknowledged together.
const TAKE: usize = 256;
/// Once the producers are done ([`Pool::finish`]), a batch is written as soon as its
/// worker has taken nothing new for this long, instead of at its age.
const QUIET: Duration = Duration::from_millis(50);

/// Writing one file per batch of games instead of one per game.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// A batch is written when it holds this many games...
    pub games: usize,
    /// ...or when its first game has waited this long.
    pub max_age: Duration,
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub output_dir: PathBuf,
    /// Clean the store after the ETL (CLEAN_ROUTINE).
    pub clean: bool,
    /// How long cleaned records are kept (REDIS_EXPIRY).
    pub keep: Duration,
    /// `None`: one file per game.
    pub batch: Option<BatchPolicy>,
    /// Whether the workers share the games (every broker but Redis pub/sub, where
    /// each worker gets every event): then each game is written once whatever
    /// crashes (see the README). [`Pool::start`] sets it from the
    /// broker.
    pub shared: bool,
}

/// What the workers of one process did, counted live.
#[derive(Default)]
pub struct EtlProgress {
    pub games_written: AtomicU64,
    pub files_written: AtomicU64,
    /// Events consumed (every queue message the workers received, redeliveries too).
    pub events: AtomicU64,
    /// Events acknowledged with nothing to do: other records, and guests' events.
    pub ignored: AtomicU64,
    /// Games acknowledged without tables: timed out, already cleaned or unknown, or
    /// already written by a worker that died before it acknowledged them.
    pub games_skipped: AtomicU64,
    /// Messages that were not event envelopes, and games whose records could not be
    /// turned into rows; acknowledged and reported, since a retry cannot help.
    pub rejected: AtomicU64,
    /// Writes or store reads that failed and were retried.
    pub retries: AtomicU64,
    /// Events the broker lost: dropped because a worker fell behind a broker that
    /// does not wait (Redis pub/sub), or given back by a failed write to a broker
    /// that cannot deliver them again.
    pub lost: AtomicU64,
    /// The games written so far and when each was first durable, if asked for (see
    /// [`EtlProgress::tracking_games`]).
    written: Option<std::sync::Mutex<HashMap<GameToken, std::time::Instant>>>,
    /// Each worker's own counts, in the order the workers started.
    workers: std::sync::Mutex<Vec<(String, Arc<WorkerCounts>)>>,
}

/// What one worker did, counted live.
#[derive(Default)]
pub struct WorkerCounts {
    pub events: AtomicU64,
    pub games_written: AtomicU64,
    pub files_written: AtomicU64,
}

/// A copy of one worker's counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    pub worker: String,
    pub events: u64,
    pub games_written: u64,
    pub files_written: u64,
}

/// A copy of [`EtlProgress`] (the worker fields of summaries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EtlCounts {
    pub games_written: u64,
    pub files_written: u64,
    pub events: u64,
    pub ignored: u64,
    pub games_skipped: u64,
    pub rejected: u64,
    pub retries: u64,
    pub lost: u64,
}

impl EtlCounts {
    /// Events settled for good (or lost for good); a worker that retries without end
    /// does not move it.
    pub fn settled(&self) -> u64 {
        self.games_written + self.ignored + self.games_skipped + self.rejected + self.lost
    }
}

impl EtlProgress {
    /// Progress that also remembers which games were written.
    pub fn tracking_games() -> Self {
        Self {
            written: Some(std::sync::Mutex::default()),
            ..Self::default()
        }
    }

    /// Whether every one of `games` was written (false when games are not tracked).
    pub fn wrote_all<'a>(&self, games: impl IntoIterator<Item = &'a GameToken>) -> bool {
        match &self.written {
            Some(set) => set
                .lock()
                .is_ok_and(|set| games.into_iter().all(|g| set.contains_key(g))),
            None => false,
        }
    }

    /// When each of `games` was first written durably, if it was (and games are
    /// tracked).
    pub fn first_written(&self, games: &[GameToken]) -> Vec<Option<std::time::Instant>> {
        match self.written.as_ref().map(|s| s.lock()) {
            Some(Ok(set)) => games.iter().map(|g| set.get(g).copied()).collect(),
            _ => vec![None; games.len()],
        }
    }

    fn record_written(&self, game: &GameToken, at: std::time::Instant) {
        if let Some(Ok(mut set)) = self.written.as_ref().map(|s| s.lock()) {
            set.entry(game.clone()).or_insert(at);
        }
    }

    /// The counts of the worker `id`, which the workers of this progress add to.
    pub fn worker(&self, id: &str) -> Arc<WorkerCounts> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = workers.iter().find(|(w, _)| w == id) {
            return c.clone();
        }
        let counts = Arc::new(WorkerCounts::default());
        workers.push((id.to_string(), counts.clone()));
        counts
    }

    /// Every worker's counts so far.
    pub fn workers(&self) -> Vec<WorkerRow> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, c)| WorkerRow {
                worker: id.clone(),
                events: get(&c.events),
                games_written: get(&c.games_written),
                files_written: get(&c.files_written),
            })
            .collect()
    }

    pub fn counts(&self) -> EtlCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EtlCounts {
            games_written: get(&self.games_written),
            files_written: get(&self.files_written),
            events: get(&self.events),
            ignored: get(&self.ignored),
            games_skipped: get(&self.games_skipped),
            rejected: get(&self.rejected),
            retries: get(&self.retries),
            lost: get(&self.lost),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Where the workers of a [`Pool`] consume, and what they are called.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// The topic, queue or channel they consume.
    pub topic: String,
    /// The consumer group they share.
    pub group: String,
    /// How many workers.
    pub workers: usize,
    /// The first part of every worker's id (`<run>-<n>`), which its file names carry.
    pub run_id: String,
}

/// The workers of one process, started and stopped together.
pub struct Pool {
    stop: watch::Sender<bool>,
    finishing: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Pool {
    /// Starts the workers of `assignment`, each subscribed before this returns, so
    /// that nothing published afterwards passes them by.
    pub async fn start<S: GameStore>(
        store: S,
        broker: &dyn Broker,
        assignment: &Assignment,
        settings: &WorkerSettings,
        progress: &Arc<EtlProgress>,
    ) -> Result<Self, BrokerError> {
        let (stop, stop_rx) = watch::channel(false);
        let (finishing, finishing_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let settings = WorkerSettings {
            shared: broker.semantics().work_sharing(),
            ..settings.clone()
        };
        for i in 0..assignment.workers {
            let consumer = broker
                .consumer(&assignment.topic, &assignment.group)
                .await?;
            tasks.spawn(run(
                store.clone(),
                consumer,
                format!("{}-{i}", assignment.run_id),
                settings.clone(),
                progress.clone(),
                Signals {
                    stop: stop_rx.clone(),
                    finishing: finishing_rx.clone(),
                },
            ));
        }
        Ok(Self {
            stop,
            finishing,
            tasks,
        })
    }

    /// Tells every worker that nothing more will be published but what is on its way:
    /// a worker then writes its batch once it has taken nothing new for a moment,
    /// without waiting for the batch's age, so that the end of a run is not held up
    /// by a timer. The workers go on consuming until [`Self::stop`].
    pub fn finish(&self) {
        self.finishing.send_replace(true);
    }

    /// Tells every worker to stop, each writing what it holds, and waits up to
    /// `grace` for them; workers still running then are stopped where they are
    /// (what they did not acknowledge goes back to the broker). False if a worker
    /// failed or had to be stopped.
    pub async fn stop(mut self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut clean = true;
        let stopping = async {
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = done {
                    tracing::error!("a worker task failed: {e}");
                    clean = false;
                }
            }
        };
        if tokio::time::timeout(grace, stopping).await.is_err() {
            tracing::error!(
                "{} worker(s) did not stop within {grace:?}; stopping them now",
                self.tasks.len()
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            return false;
        }
        clean
    }
}

/// A game read and transformed, waiting to be written.
struct Pending {
    /// The host's event, and any copy of it that came while the game waited: all
    /// are settled with the game's write.
    deliveries: Vec<Delivery>,
    game: GameToken,
    tables: GameTables,
}

/// Games of a written batch cleaned at once, at most.
const CLEANS_IN_FLIGHT: usize = 64;

/// Games whose files are being written, with the messages to settle after.
type Written = (Vec<(Vec<Delivery>, GameToken)>, Result<usize, String>);

/// What a [`Pool`] tells its workers.
pub struct Signals {
    /// True: write what you hold and stop.
    pub stop: watch::Receiver<bool>,
    /// True: the producers are done ([`Pool::finish`]).
    pub finishing: watch::Receiver<bool>,
}

impl Signals {
    /// A worker told only when to stop: its batches go by their count and age.
    pub fn stop_only(stop: watch::Receiver<bool>) -> Self {
        Self {
            stop,
            finishing: watch::channel(false).1,
        }
    }
}

/// One worker: runs until `signals.stop` turns true (then writes what it holds) or
/// the broker closes. Broker and store failures are retried, never fatal.
pub async fn run<S: GameStore>(
    store: S,
    mut consumer: Box<dyn Consumer>,
    worker_id: String,
    settings: WorkerSettings,
    progress: Arc<EtlProgress>,
    signals: Signals,
) {
    let Signals {
        mut stop,
        mut finishing,
    } = signals;
    let mut w = Worker {
        mine: progress.worker(&worker_id),
        store,
        worker_id,
        settings,
        progress,
        pending: Vec::new(),
        pending_games: HashMap::new(),
        writing: JoinSet::new(),
        oldest: None,
        last_taken: None,
        backoff: BACKOFF,
        resume_at: None,
        acks: Vec::new(),
    };
    let batch_games = w.settings.batch.map_or(1, |b| b.games.max(1));
    let mut overflowed = 0;
    loop {
        let now = consumer.overflowed();
        EtlProgress::add(&w.progress.lost, now.saturating_sub(overflowed));
        overflowed = overflowed.max(now);
        let finished = *finishing.borrow();
        let deadline = w.deadline(finished);
        tokio::select! {
            biased;
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
            Some(done) = w.writing.join_next() => w.written(done).await,
            _ = sleep_until(deadline), if deadline.is_some() => w.flush().await,
            // Only to look at the deadline again; with no pool to say so, never.
            _ = async {
                if finishing.wait_for(|f| *f).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }, if !finished => {}
            _ = sleep_until(w.resume_at), if w.resume_at.is_some() => w.resume_at = None,
            next = consumer.next_batch(TAKE), if w.resume_at.is_none() && w.writing.len() < WRITES_IN_FLIGHT => {
                match next {
                    Ok(taken) => {
                        if !taken.is_empty() {
                            w.last_taken = Some(Instant::now());
                        }
                        for delivery in taken {
                            w.handle(delivery).await;
                            if w.pending.len() >= batch_games {
                                w.flush().await;
                            }
                        }
                        w.ack_held().await;
                    }
                    Err(BrokerError::Closed) => break,
                    Err(e) => {
                        tracing::warn!("worker {}: {e}; retrying", w.worker_id);
                        w.back_off();
                    }
                }
            }
        }
    }
    w.flush().await;
    while let Some(done) = w.writing.join_next().await {
        w.written(done).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Worker<S> {
    store: S,
    worker_id: String,
    settings: WorkerSettings,
    progress: Arc<EtlProgress>,
    /// This worker's own share of `progress`.
    mine: Arc<WorkerCounts>,
    pending: Vec<Pending>,
    /// The games of `pending`, with their hosts.
    pending_games: HashMap<GameToken, UserToken>,
    writing: JoinSet<Written>,
    /// When the oldest pending game arrived.
    oldest: Option<Instant>,
    /// When the consumer last handed over messages.
    last_taken: Option<Instant>,
    backoff: Backoff,
    /// While backing off, no message is taken.
    resume_at: Option<Instant>,
    /// Messages done with, acknowledged together by [`Self::ack_held`].
    acks: Vec<Delivery>,
}

/// What a worker makes of an event.
enum Event {
    /// The game and player of a `Cleaning Game Records` event.
    Cleaning(GameToken, UserToken),
    /// A `Cleaning Game Records` event whose task lacks either.
    Incomplete,
    /// Any other event, which the worker passes over.
    Other,
}

/// The fields of a `Cleaning Game Records` task the worker reads, borrowed from the
/// event; a task that is no object of string fields counts as lacking them.
#[derive(Deserialize)]
struct CleaningTask<'a> {
    #[serde(borrow, default)]
    game_token: Option<Text<'a>>,
    #[serde(borrow, default)]
    user_token: Option<Text<'a>>,
}

impl<S: GameStore> Worker<S> {
    /// When the pending batch is due: at its age, or, once the producers are done
    /// (`finishing`), after a [`QUIET`] moment if that comes first.
    fn deadline(&self, finishing: bool) -> Option<Instant> {
        let age = self.settings.batch?.max_age;
        let oldest = self.oldest?;
        let quiet = self
            .last_taken
            .filter(|_| finishing)
            .map(|taken| taken.max(oldest) + QUIET);
        // An age too long for the clock: the batch goes by its count only.
        match (oldest.checked_add(age), quiet) {
            (Some(aged), Some(quiet)) => Some(aged.min(quiet)),
            (aged, quiet) => aged.or(quiet),
        }
    }

    /// Takes no message for a while after a failure; the wait doubles while
    /// failures go on. Failures during the wait (other writes in flight) add nothing.
    fn back_off(&mut self) {
        EtlProgress::add(&self.progress.retries, 1);
        if self.resume_at.is_none() {
            self.resume_at = Some(Instant::now() + self.backoff.step());
        }
    }

    /// Acknowledges the delivery with the next [`Self::ack_held`], or gives it back
    /// now.
    async fn settle(&mut self, delivery: Delivery, ok: bool) {
        if ok {
            return self.acks.push(delivery);
        }
        match delivery.nack().await {
            Ok(()) => {}
            Err(BrokerError::Lost(why)) => {
                EtlProgress::add(&self.progress.lost, 1);
                tracing::error!("worker {}: {why}", self.worker_id);
            }
            Err(e) => tracing::warn!("worker {}: giving a message back: {e}", self.worker_id),
        }
    }

    /// Acknowledges what [`Self::settle`] held, together: one exchange with the
    /// broker where it allows. What fails to be acknowledged comes again and is
    /// found done.
    async fn ack_held(&mut self) {
        let acks = std::mem::take(&mut self.acks);
        if let Err(e) = Delivery::ack_all(acks).await {
            tracing::warn!("worker {}: acknowledging messages: {e}", self.worker_id);
        }
    }

    async fn handle(&mut self, delivery: Delivery) {
        EtlProgress::add(&self.progress.events, 1);
        EtlProgress::add(&self.mine.events, 1);
        let read = Envelope::read(&delivery.payload, |envelope| {
            if envelope.log_message != CLEANING_GAME_RECORDS {
                return Event::Other;
            }
            let task = envelope
                .task
                .and_then(|t| serde_json::from_str::<CleaningTask<'_>>(t.get()).ok());
            match task {
                Some(CleaningTask {
                    game_token: Some(game),
                    user_token: Some(user),
                }) => Event::Cleaning(
                    GameToken::from(game.as_str()),
                    UserToken::from(user.as_str()),
                ),
                _ => Event::Incomplete,
            }
        });
        let (game, user) = match read {
            Ok(Event::Cleaning(game, user)) => (game, user),
            Ok(Event::Other) => {
                EtlProgress::add(&self.progress.ignored, 1);
                return self.settle(delivery, true).await;
            }
            Ok(Event::Incomplete) => {
                tracing::warn!(
                    "worker {}: a {CLEANING_GAME_RECORDS} event without game_token and user_token",
                    self.worker_id
                );
                EtlProgress::add(&self.progress.rejected, 1);
                return self.settle(delivery, true).await;
            }
            Err(e) => {
                tracing::warn!("worker {}: skipping a message: {e}", self.worker_id);
                EtlProgress::add(&self.progress.rejected, 1);
                return self.settle(delivery, true).await;
            }
        };
        if let Some(host) = self.pending_games.get(&game) {
            if *host != user {
                // A guest's copy of the event of a game this batch holds.
                EtlProgress::add(&self.progress.ignored, 1);
                return self.settle(delivery, true).await;
            }
            // The host's event again: a redelivery (the broker's ack wait ran out) or
            // a second message (a replayed lobby). Either way it is settled with the
            // game's write, never before it: an early ack of a redelivery would ack
            // the message itself, and a message left unsettled would hold the
            // broker's offset (Kafka) or a prefetch slot (RabbitMQ) for good.
            if let Some(p) = self.pending.iter_mut().find(|p| p.game == game) {
                p.deliveries.push(delivery);
            }
            return;
        }
        let extract = match self.store.extract_for(&game, &user).await {
            Ok(Extracted::Game(e)) => e,
            Ok(Extracted::Guest) => {
                EtlProgress::add(&self.progress.ignored, 1);
                return self.settle(delivery, true).await;
            }
            Ok(Extracted::Gone) => {
                // Unknown or already cleaned: written before, or never a real game.
                EtlProgress::add(&self.progress.games_skipped, 1);
                return self.settle(delivery, true).await;
            }
            Err(e) => {
                tracing::warn!("worker {}: reading game {game}: {e}", self.worker_id);
                self.settle(delivery, false).await;
                return self.back_off();
            }
        };
        if self.committed_before(&game, extract.batch.as_deref()) {
            if self.settings.clean {
                self.clean(&game).await;
            }
            EtlProgress::add(&self.progress.games_skipped, 1);
            return self.settle(delivery, true).await;
        }
        match extract.status {
            GameStatus::Completed => match etl::transform(&extract) {
                Ok(tables) => {
                    self.oldest.get_or_insert_with(Instant::now);
                    self.pending_games.insert(game.clone(), user);
                    self.pending.push(Pending {
                        deliveries: vec![delivery],
                        game,
                        tables,
                    });
                }
                Err(e) => {
                    tracing::error!("worker {}: {e}; the game is not written", self.worker_id);
                    EtlProgress::add(&self.progress.rejected, 1);
                    self.settle(delivery, true).await;
                }
            },
            _ => {
                // A timed-out lobby had no combat: nothing to write.
                if self.settings.clean {
                    self.clean(&game).await;
                }
                EtlProgress::add(&self.progress.games_skipped, 1);
                self.settle(delivery, true).await;
            }
        }
    }

    /// Whether a worker that died between its write and its acknowledgement wrote
    /// `game` already (workers sharing the games only). A game written alone has a
    /// file named after it; a game of a batch was marked in the store with its batch
    /// before the batch was written. Either is committed once its GAME_PODIUM file,
    /// renamed last, exists. Both are looked for whatever this worker's own mode, since
    /// the dead worker may have batched when this one does not, or the other way
    /// round. What a write that died between its renames left is hidden, unless this
    /// worker's rewrite goes to the same name and replaces it, and the game is written
    /// again.
    fn committed_before(&self, game: &GameToken, batch: Option<&str>) -> bool {
        if !self.settings.shared {
            return false;
        }
        let rewritten_alone = self.settings.batch.is_none();
        let stems = [(Some(game.as_str()), !rewritten_alone), (batch, true)];
        for (stem, hide) in stems {
            let Some(stem) = stem else { continue };
            match tables::committed_or_hide(&self.settings.output_dir, stem, hide) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!("worker {}: {e}", self.worker_id),
            }
        }
        false
    }

    async fn clean(&self, game: &GameToken) {
        if let Err(e) = self.store.clean(game, self.settings.keep).await {
            tracing::warn!(
                "worker {}: cleaning game {game}: {e}; its records stay",
                self.worker_id
            );
        }
    }

    /// Starts writing the pending games; [`Self::written`] settles them.
    async fn flush(&mut self) {
        self.oldest = None;
        if self.pending.is_empty() {
            return;
        }
        self.pending_games.clear();
        let pending = std::mem::take(&mut self.pending);
        // Shared games written alone are named after the game, so a game written
        // again replaces its file; on a broadcast each worker writes its own copy.
        let stem = match (self.settings.batch, pending.first()) {
            (None, Some(p)) if self.settings.shared => p.game.to_string(),
            (None, Some(p)) => format!("{}_{}", p.game, self.worker_id),
            _ => format!("batch-{}_{}", uuid::Uuid::new_v4(), self.worker_id),
        };
        if self.settings.shared && self.settings.batch.is_some() {
            let games: Vec<GameToken> = pending.iter().map(|p| p.game.clone()).collect();
            if let Err(e) = self.store.mark_batch(&games, &stem).await {
                tracing::warn!(
                    "worker {}: marking a batch: {e}; {} games go back to the broker",
                    self.worker_id,
                    games.len()
                );
                for delivery in pending.into_iter().flat_map(|p| p.deliveries) {
                    self.settle(delivery, false).await;
                }
                return self.back_off();
            }
        }
        let mut games = Vec::with_capacity(pending.len());
        let mut settle = Vec::with_capacity(pending.len());
        for p in pending {
            games.push(p.tables);
            settle.push((p.deliveries, p.game));
        }
        let dir = self.settings.output_dir.clone();
        self.writing.spawn(async move {
            let written = tokio::task::spawn_blocking(move || {
                let began = std::time::Instant::now();
                let files = tables::encode_games(&games)?;
                let written = tables::write_durable(&dir, &stem, &files)?;
                metrics::histogram!(names::WRITE_SECONDS).record(began.elapsed());
                Ok::<_, tables::TableError>(written)
            })
            .await;
            let result = match written {
                Ok(Ok(files)) => Ok(files.len()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the write task failed: {e}")),
            };
            (settle, result)
        });
    }

    /// Settles written games: cleans and acknowledges them, or, when the write
    /// failed, gives every message back to the broker and backs off.
    async fn written(&mut self, done: Result<Written, tokio::task::JoinError>) {
        let (settle, result) = match done {
            Ok(w) => w,
            Err(e) => {
                // The messages went with the task; the broker redelivers them.
                tracing::error!("worker {}: a write task was lost: {e}", self.worker_id);
                return;
            }
        };
        match result {
            Ok(files) => {
                self.backoff.reset();
                EtlProgress::add(&self.progress.files_written, files as u64);
                EtlProgress::add(&self.mine.files_written, files as u64);
                let n = settle.len() as u64;
                let durable = std::time::Instant::now();
                if self.settings.clean {
                    // Many at once: on Redis the requests share round trips.
                    futures_util::stream::iter(&settle)
                        .for_each_concurrent(CLEANS_IN_FLIGHT, |(_, game)| self.clean(game))
                        .await;
                }
                for (deliveries, game) in settle {
                    self.progress.record_written(&game, durable);
                    // The copies of the host's event had nothing more to do.
                    EtlProgress::add(&self.progress.ignored, deliveries.len() as u64 - 1);
                    self.acks.extend(deliveries);
                }
                self.ack_held().await;
                EtlProgress::add(&self.progress.games_written, n);
                EtlProgress::add(&self.mine.games_written, n);
            }
            Err(e) => {
                tracing::error!(
                    "worker {}: {e}; {} games go back to the broker",
                    self.worker_id,
                    settle.len()
                );
                for delivery in settle.into_iter().flat_map(|(d, _)| d) {
                    self.settle(delivery, false).await;
                }
                self.back_off();
            }
        }
    }
}
