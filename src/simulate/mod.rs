//! `superhero simulate`: the game server, its bots and the ETL workers in one process,
//! on the embedded store and broker by default. The run ends when every completed
//! game's tables are on disk (or the workers stop making progress); the summary is
//! checked against the files actually written, read back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::audit;
use crate::broker::{Broker, BrokerError};
use crate::events::transport::{DEFAULT_BUFFER, PipeError};
use crate::events::{self, EventPipe, EventSink, Queue};
use crate::game::GameToken;
use crate::latency::{Latency, LatencyRecorder};
use crate::net::{self, Dial, Listeners};
use crate::player::{self, PlayerSettings};
use crate::roster;
use crate::server::{self, ServerSettings};
use crate::store::{GameStore, StoreError};
use crate::worker::{self, EtlProgress, WorkerSettings};

mod shards;

pub use self::shards::{MIN_BOTS_PER_SHARD, default_shards, run_sharded};

/// How long a broker that is down gets, at the end, to take the buffered events.
const PUBLISH_GRACE: Duration = Duration::from_secs(10);
/// How long the workers get to finish their batches once told to stop.
const WORKER_STOP: Duration = Duration::from_secs(30);

/// Completed games waiting for their tables, at most, by default (`--max-backlog`):
/// some 100 MB of events and game records.
pub const MAX_BACKLOG: u64 = 10_000;

/// How a simulation's bots reach its game server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// In-process streams: the same HTTP upgrade and WebSocket frames, no sockets.
    #[default]
    InProcess,
    /// Loopback TCP sockets, as separate processes would connect.
    Tcp,
}

/// What a simulation runs.
#[derive(Clone, Debug)]
pub struct SimulateSettings {
    pub bots: usize,
    /// The first bot is `USER{first_user:03}`.
    pub first_user: usize,
    pub games: i64,
    pub seed: u64,
    /// Heroes of the synthetic roster used when the store has none.
    pub heroes: u32,
    pub server: ServerSettings,
    /// How the bots reach the server.
    pub transport: Transport,
    pub workers: usize,
    /// About this many games per second; None: as fast as possible.
    pub rate: Option<f64>,
    /// Bots in a game at once, at most (0: all).
    pub concurrent_bots: usize,
    /// Completed games not yet in the tables, at most, before bots wait to start
    /// more (0: no limit): when the workers fall behind (per-game tables on a slow
    /// disk), the run goes at their pace instead of holding the difference in memory.
    pub max_backlog: u64,
    pub etl: WorkerSettings,
    /// Draw a progress bar on stderr (only where stderr is a terminal).
    pub progress: bool,
    /// How long the workers may settle no event before the run stops waiting for
    /// them (the games they did not write count as missing).
    pub drain_idle: Duration,
    /// Once this says true, the bots start no new game: the run ends as if their
    /// games were all played (see [`PlayerSettings::stop`]).
    pub stop: Option<watch::Receiver<bool>>,
}

/// The closing summary (the `simulate --json` fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulateSummary {
    pub bots: usize,
    pub workers: usize,
    /// Independent copies of the pipeline the run was split into (see
    /// [`run_sharded`]); 1 for one pipeline.
    pub shards: usize,
    pub games_completed: u64,
    pub games_timed_out: u64,
    /// Games neither completed nor timed out when the run ended (embedded store only):
    /// every game ends, so this is 0 once the players are gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub games_unfinished: Option<u64>,
    /// Completed games of this run found in both tables on disk.
    pub games_written: u64,
    /// Completed games of this run found in more than one file of a table.
    pub duplicate_games: u64,
    /// Completed games of this run missing from at least one table.
    pub missing_games: u64,
    pub files_written: u64,
    pub events_published: u64,
    pub events_dropped: u64,
    /// Events the workers could not use (not an envelope, or a corrupt game).
    pub events_rejected: u64,
    /// Events the broker lost before a worker could use them (see
    /// [`crate::worker::EtlProgress::lost`]).
    pub events_lost: u64,
    pub bot_errors: u64,
    pub lobbies_abandoned: u64,
    pub games_skipped: u64,
    /// Bot connections the server had closed for idleness, opened again.
    pub connections_reopened: u64,
    pub output_dir: String,
    pub elapsed_s: f64,
    pub games_per_s: f64,
    /// Completed games per second from the first game's end to the last's (the pace
    /// `--rate` sets; `games_per_s` also counts the start and the drain).
    pub completion_rate: f64,
    pub events_per_s: f64,
    /// From a game's end (its last player told) to its rows durably on disk, over
    /// the games written.
    pub completion_to_parquet: Latency,
    /// The most completed games seen waiting for their tables at once (sampled every
    /// 10 ms; in a sharded run, the sum of each shard's most).
    pub backlog_peak: u64,
    /// Seconds the bots waited for the tables to catch up (`max_backlog`).
    pub held_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Transport(#[from] PipeError),
    #[error("cannot open a local port for the game server: {0}")]
    Bind(std::io::Error),
    #[error("cannot run a shard of the simulation: {0}")]
    Shard(std::io::Error),
}

/// How long the games left by bots that stopped take to end at most: a lobby's
/// back-stop, then a turn timeout for each player; none without turn timeouts.
fn ending_time(server: &server::ServerSettings) -> Duration {
    if server.turn_timeout.is_zero() {
        return Duration::ZERO;
    }
    let players = u32::from(crate::game::protocol::MAX_PARTICIPANTS);
    server
        .lobby_timeout
        .saturating_mul(2)
        .saturating_add(
            server
                .server_sleep
                .saturating_add(server.turn_timeout)
                .saturating_mul(players),
        )
        .min(Duration::from_secs(120))
}

/// Runs the simulation to its end. A store without heroes gets the synthetic roster.
pub async fn run<S: GameStore>(
    store: S,
    broker: Arc<dyn Broker>,
    sink: &Arc<EventSink>,
    settings: SimulateSettings,
) -> Result<SimulateSummary, SimulateError> {
    let progress = Arc::new(EtlProgress::tracking_games());
    run_with(store, broker, sink, settings, progress, None).await
}

/// As [`run`], with the workers counting into `progress` (which must track games),
/// so that others can follow them live, and the game server also serving clients
/// from outside on `outside` while the run lasts.
pub async fn run_with<S: GameStore>(
    store: S,
    broker: Arc<dyn Broker>,
    sink: &Arc<EventSink>,
    settings: SimulateSettings,
    progress: Arc<EtlProgress>,
    outside: Option<TcpListener>,
) -> Result<SimulateSummary, SimulateError> {
    if store.roster().await?.is_empty() {
        store
            .replace_roster(&roster::synthetic(settings.heroes, settings.seed))
            .await?;
    }
    let gauges = Gauges {
        completed: Arc::default(),
        progress,
        sink: sink.clone(),
    };
    let bar = Bar::start(settings.progress, vec![gauges.clone()]);
    let played = play(store, broker, gauges, settings, outside).await;
    bar.finish();
    Ok(played?.summary)
}

/// `n` over `elapsed_s` seconds (0 for no time).
fn per_second(n: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 {
        n as f64 / elapsed_s
    } else {
        0.0
    }
}

/// What a run counts as it goes, for a progress bar to show.
#[derive(Clone)]
struct Gauges {
    /// Games the bots completed.
    completed: Arc<std::sync::atomic::AtomicU64>,
    /// What the workers did (tracking games).
    progress: Arc<EtlProgress>,
    /// Where the server's events go.
    sink: Arc<EventSink>,
}

/// A run's summary, with what it was computed from that a sum over shards needs.
struct Played {
    summary: SimulateSummary,
    /// From each game's end to its rows on disk.
    latency: LatencyRecorder,
    /// When each completed game ended.
    ends: Vec<Instant>,
}

/// Plays the simulation on a store that has its roster.
async fn play<S: GameStore>(
    store: S,
    broker: Arc<dyn Broker>,
    gauges: Gauges,
    settings: SimulateSettings,
    outside: Option<TcpListener>,
) -> Result<Played, SimulateError> {
    let Gauges {
        completed,
        progress,
        sink,
    } = gauges;
    let sink = &sink;
    let started = Instant::now();
    // The sink may have served earlier runs of this process: count from here.
    let before = sink.stats();
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    // Workers subscribe before anything is published, so no event passes them by.
    let assignment = worker::Assignment {
        topic: broker.topic_for(events::WORKER_QUEUE),
        group: events::WORKER_GROUP.to_string(),
        workers: settings.workers,
        run_id: run_id.clone(),
    };
    let workers = worker::Pool::start(
        store.clone(),
        &*broker,
        &assignment,
        &settings.etl,
        &progress,
    )
    .await?;
    let pipe = EventPipe::for_broker(sink, &*broker, DEFAULT_BUFFER).await?;

    // Every worker writes every game on a broadcasting broker.
    let copies = if broker.semantics().work_sharing() {
        1
    } else {
        settings.workers as u64
    };
    let (hold, held) = watch::channel(false);
    let batch_wait = settings.etl.batch.map_or(Duration::ZERO, |b| b.max_age);
    let (end_backlog, backlog_ended) = oneshot::channel();
    let backlog = tokio::spawn(watch_backlog(
        Backlog {
            completed: completed.clone(),
            progress: progress.clone(),
            copies,
            max: settings.max_backlog,
            stalled: batch_wait.saturating_add(STALLED).min(STALLED_MOST),
        },
        hold,
        backlog_ended,
    ));

    let (listeners, bots_dial) = listeners(settings.transport, outside).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    // Asked at the end how many games did not end.
    let unfinished = store.clone();
    let server = tokio::spawn(server::serve(
        listeners,
        store,
        settings.server.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let bots = player::run(PlayerSettings {
        servers: vec![bots_dial],
        bots: settings.bots,
        games: settings.games,
        seed: settings.seed,
        first_user: settings.first_user,
        idle_timeout: Duration::from_secs(60),
        closed_world: true,
        rate: settings.rate,
        concurrent_bots: settings.concurrent_bots,
        completed,
        hold: (settings.max_backlog > 0).then_some(held),
        stop: settings.stop.clone(),
    })
    .await;
    // What is still to come are the events of games ending now: the workers write
    // their batches as soon as those stop coming.
    workers.finish();
    let _ = end_backlog.send(());
    let (backlog_peak, held_s) = backlog.await.unwrap_or_default();
    // The games of bots that stopped (a connection refused, a timeout) end by
    // forfeits and time-outs: the server stays up for as long as that takes.
    let ending = ending_time(&settings.server);
    let deadline = std::time::Instant::now() + ending;
    while unfinished.unfinished_games().await.is_some_and(|n| n > 0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    if let Err(e) = server.await {
        tracing::warn!("the game server task ended badly: {e}");
    }

    let transport = pipe.finish(PUBLISH_GRACE).await.since(&before);
    // Every worker sees every event on a broadcasting broker, one worker each on the
    // others: the work is done when the workers settled that many events.
    let lobby_events = transport.published_by_queue[Queue::Lobby.index()];
    drain(
        &progress,
        &bots.completed_games,
        lobby_events * copies,
        settings.drain_idle,
    )
    .await;
    // A worker that had to be stopped left its games to the broker; the read-back
    // below counts them as missing.
    workers.stop(WORKER_STOP).await;
    let elapsed_s = started.elapsed().as_secs_f64();

    // Read back what this run's workers wrote: files named after their worker (a
    // batch, or a copy of a broadcast), or after one of this run's games.
    let dir = settings.etl.output_dir.clone();
    let marker = format!("_{run_id}-");
    let ours: std::collections::HashSet<String> = bots
        .completed_games
        .iter()
        .map(|g| format!("{g}.{}", crate::etl::tables::EXTENSION))
        .collect();
    let found = tokio::task::spawn_blocking(move || {
        audit::audit_matching(&dir, |name| name.contains(&marker) || ours.contains(name))
    })
    .await;
    let found = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::error!("reading the tables back: {e}");
            audit::Audit::default()
        }
        Err(e) => {
            tracing::error!("reading the tables back: {e}");
            audit::Audit::default()
        }
    };
    let mut written = 0;
    let mut duplicates = 0;
    for game in &bots.completed_games {
        match found.files_per_game.get(game.as_str()) {
            Some(n) if n[0] > 0 && n[1] > 0 => {
                written += 1;
                if n[0] > 1 || n[1] > 1 {
                    duplicates += 1;
                }
            }
            _ => {}
        }
    }
    if !found.report.schema_ok {
        for bad in &found.report.bad_files {
            tracing::error!("unreadable table file: {bad}");
        }
    }

    let mut latency = LatencyRecorder::new();
    let ends = bots.completed_at.clone();
    let written_at = progress.first_written(&bots.completed_games);
    for (ended, durable) in bots.completed_at.iter().zip(written_at) {
        if let Some(durable) = durable {
            latency.record(durable.saturating_duration_since(*ended));
        }
    }

    let etl = progress.counts();
    let games_unfinished = unfinished.unfinished_games().await;
    let per_s = |n: u64| per_second(n, elapsed_s);
    let summary = SimulateSummary {
        bots: bots.bots,
        workers: settings.workers,
        shards: 1,
        games_completed: bots.games_completed,
        games_timed_out: bots.games_timed_out,
        games_unfinished,
        games_written: written,
        duplicate_games: duplicates,
        missing_games: bots.games_completed.saturating_sub(written),
        files_written: etl.files_written,
        events_published: transport.published,
        events_dropped: transport.dropped,
        events_rejected: etl.rejected,
        events_lost: etl.lost,
        bot_errors: bots.bot_errors,
        lobbies_abandoned: bots.lobbies_abandoned,
        games_skipped: bots.games_skipped,
        connections_reopened: bots.connections_reopened,
        output_dir: settings.etl.output_dir.display().to_string(),
        elapsed_s,
        games_per_s: per_s(bots.games_completed),
        completion_rate: bots.completion_rate,
        events_per_s: per_s(transport.published),
        completion_to_parquet: latency.summary(),
        backlog_peak,
        held_s,
    };
    Ok(Played {
        summary,
        latency,
        ends,
    })
}

/// What the game server listens on, and how the bots reach it: in-process, or through
/// the outside listener (or a loopback port of their own) over TCP.
async fn listeners(
    transport: Transport,
    outside: Option<TcpListener>,
) -> Result<(Listeners, Dial), SimulateError> {
    match transport {
        Transport::InProcess => {
            let (dialer, local) = net::local();
            let listeners = Listeners {
                tcp: outside,
                local: Some(local),
            };
            Ok((listeners, Dial::Local(dialer)))
        }
        Transport::Tcp => {
            let tcp = match outside {
                Some(tcp) => tcp,
                None => crate::net::bind("127.0.0.1:0")
                    .await
                    .map_err(SimulateError::Bind)?,
            };
            let mut addr = tcp.local_addr().map_err(SimulateError::Bind)?;
            // Listening on every interface: the bots take the loopback one.
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            Ok((Listeners::from(tcp), Dial::Url(format!("ws://{addr}"))))
        }
    }
}

/// Waits until the workers have written every one of `games` and settled `events`
/// events (redeliveries and retried publishes can add events, never games), or have
/// settled none for `idle`.
/// How long the workers may write nothing, past their batches' wait, before a hold
/// is lifted: a backlog that does not drain (events lost on a broker that keeps
/// nothing) is no reason to wait.
const STALLED: Duration = Duration::from_secs(1);
/// The longest such wait, however long batches wait.
const STALLED_MOST: Duration = Duration::from_secs(10);

/// What [`watch_backlog`] follows.
struct Backlog {
    /// Games the bots completed.
    completed: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<EtlProgress>,
    /// Copies of each game the workers write (all of them on a broadcast).
    copies: u64,
    /// Games waiting for their tables, at most (0: no limit).
    max: u64,
    /// Writing nothing for this long lifts a hold.
    stalled: Duration,
}

/// Follows the completed games waiting for their tables until `end`; while more than
/// `max` wait, holds the bots, until the backlog is down to three quarters of that,
/// as long as the workers keep writing. Returns the largest backlog seen and the
/// seconds the bots were held.
async fn watch_backlog(
    backlog: Backlog,
    hold: watch::Sender<bool>,
    mut end: oneshot::Receiver<()>,
) -> (u64, f64) {
    let mut written = 0;
    let mut wrote_at = Instant::now();
    let mut peak = 0;
    let mut held_since: Option<Instant> = None;
    let mut held_for = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = tick.tick() => {}
        }
        let now_written = backlog.progress.counts().games_written / backlog.copies.max(1);
        if now_written != written {
            written = now_written;
            wrote_at = Instant::now();
        }
        let waiting = backlog
            .completed
            .load(Ordering::Relaxed)
            .saturating_sub(written);
        peak = peak.max(waiting);
        let limit = match held_since {
            Some(_) => backlog.max / 4 * 3,
            None => backlog.max,
        };
        let hold_now = backlog.max > 0 && waiting > limit && wrote_at.elapsed() < backlog.stalled;
        match (hold_now, held_since) {
            (true, None) => held_since = Some(Instant::now()),
            (false, Some(since)) => {
                held_for += since.elapsed();
                held_since = None;
            }
            _ => {}
        }
        hold.send_if_modified(|h| std::mem::replace(h, hold_now) != hold_now);
    }
    if let Some(since) = held_since {
        held_for += since.elapsed();
    }
    hold.send_replace(false);
    (peak, held_for.as_secs_f64())
}

async fn drain(progress: &EtlProgress, games: &[GameToken], events: u64, idle: Duration) {
    let mut last = u64::MAX;
    let mut idle_since = Instant::now();
    loop {
        let c = progress.counts();
        if c.settled() >= events && progress.wrote_all(games) {
            return;
        }
        if c.settled() != last {
            last = c.settled();
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= idle {
            tracing::error!(
                "the workers settled {} of {events} events and none for {idle:?}; \
                 giving up on the rest",
                c.settled()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The progress line on stderr.
struct Bar {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Bar {
    /// A bar showing the sums of `gauges`.
    fn start(enabled: bool, gauges: Vec<Gauges>) -> Self {
        let target = ProgressDrawTarget::stderr();
        if !enabled || target.is_hidden() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let (mut completed, mut written, mut published) = (0, 0, 0);
                for g in &gauges {
                    completed += g.completed.load(Ordering::Relaxed);
                    written += g.progress.counts().games_written;
                    published += g.sink.stats().published;
                }
                shown.set_message(format!(
                    "{completed} games completed · {written} written · {published} events published"
                ));
                shown.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until the hold says `want`.
    async fn until_held(hold: &mut watch::Receiver<bool>, want: bool) {
        tokio::time::timeout(Duration::from_secs(10), hold.wait_for(|h| *h == want))
            .await
            .expect("the hold changes")
            .expect("the backlog watch runs");
    }

    #[tokio::test]
    async fn a_backlog_holds_the_bots_until_the_tables_catch_up() {
        let completed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = Arc::new(EtlProgress::default());
        let (hold, mut held) = watch::channel(false);
        let (end, ended) = oneshot::channel();
        let task = tokio::spawn(watch_backlog(
            Backlog {
                completed: completed.clone(),
                progress: progress.clone(),
                copies: 1,
                max: 8,
                stalled: Duration::from_secs(60),
            },
            hold,
            ended,
        ));
        completed.store(8, Ordering::Relaxed);
        completed.store(9, Ordering::Relaxed);
        until_held(&mut held, true).await;
        // Released at three quarters of the limit, not before.
        progress.games_written.store(2, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(*held.borrow(), "7 games still wait");
        progress.games_written.store(3, Ordering::Relaxed);
        until_held(&mut held, false).await;
        let _ = end.send(());
        let (peak, held_s) = task.await.unwrap();
        assert_eq!(peak, 9);
        assert!(held_s > 0.0);
    }

    #[tokio::test]
    async fn workers_that_write_nothing_hold_no_one() {
        let completed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (hold, mut held) = watch::channel(false);
        let (end, ended) = oneshot::channel();
        let task = tokio::spawn(watch_backlog(
            Backlog {
                completed: completed.clone(),
                progress: Arc::default(),
                copies: 1,
                max: 1,
                stalled: Duration::from_secs(2),
            },
            hold,
            ended,
        ));
        completed.store(5, Ordering::Relaxed);
        until_held(&mut held, true).await;
        // Nothing is written (the events were lost): the hold is lifted.
        until_held(&mut held, false).await;
        let _ = end.send(());
        assert_eq!(task.await.unwrap().0, 5);
    }
}
