//! A simulation split into shards: independent copies of the whole pipeline (an
//! embedded store and broker, the event pipe, the workers, a game server and a share
//! of the bots), each on a thread of its own with a single-threaded runtime.
//!
//! Nothing crosses from one shard to another while they run: a game's players, its
//! events and its tables stay in one shard, so no lock, channel or wake-up is shared
//! between threads. The shards write into the same output folder and their summaries
//! add up to the run's.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Gauges, Played, SimulateError, SimulateSettings, SimulateSummary, Transport};
use crate::broker::MemoryBroker;
use crate::events::EventSink;
use crate::events::transport::route_thread_events;
use crate::latency::LatencyRecorder;
use crate::roster::{self, RosterHero};
use crate::store::{GameStore, MemoryStore};
use crate::worker::EtlProgress;

/// Bots a shard gets at least: fewer would make lobbies slower to fill than the one
/// thread they would save.
pub const MIN_BOTS_PER_SHARD: usize = 20;

/// The shards a run on `threads` threads uses by default: one per thread, at most one
/// per [`MIN_BOTS_PER_SHARD`] bots, and one when the bots reach the server over TCP.
pub fn default_shards(settings: &SimulateSettings, threads: usize) -> usize {
    match settings.transport {
        Transport::Tcp => 1,
        Transport::InProcess => threads.min(settings.bots / MIN_BOTS_PER_SHARD).max(1),
    }
}

impl SimulateSettings {
    /// The part of these settings shard `k` of `n` runs: its share of the bots (the
    /// bots keep their numbers, so their names are those of an unsharded run), of the
    /// workers (at least one), of the rate, of the bots playing at once and of the
    /// backlog.
    fn shard(&self, k: usize, n: usize) -> SimulateSettings {
        let share = |total: usize, k: usize| total / n + usize::from(k < total % n);
        let share_u64 = |total: u64| total.div_ceil(n as u64);
        SimulateSettings {
            bots: share(self.bots, k),
            first_user: self.first_user + (0..k).map(|j| share(self.bots, j)).sum::<usize>(),
            workers: share(self.workers, k).max(1),
            rate: self.rate.map(|r| r / n as f64),
            concurrent_bots: self.concurrent_bots.div_ceil(n),
            max_backlog: share_u64(self.max_backlog),
            progress: false,
            ..self.clone()
        }
    }
}

/// Runs the simulation as `shards` shards on the embedded store and broker, each
/// store starting with the synthetic roster; one shard is an ordinary run on a thread
/// of its own.
pub async fn run_sharded(
    shards: usize,
    settings: SimulateSettings,
) -> Result<SimulateSummary, SimulateError> {
    let shards = shards.max(1);
    let roster = Arc::new(roster::synthetic(settings.heroes, settings.seed));
    let mut gauges = Vec::with_capacity(shards);
    let mut results = Vec::with_capacity(shards);
    let mut threads = Vec::with_capacity(shards);
    for k in 0..shards {
        let shard = Gauges {
            completed: Arc::default(),
            progress: Arc::new(EtlProgress::tracking_games()),
            sink: EventSink::new(),
        };
        gauges.push(shard.clone());
        let (done, result) = oneshot::channel();
        results.push(result);
        let settings = settings.shard(k, shards);
        let roster = roster.clone();
        let thread = std::thread::Builder::new()
            .name(format!("simulate-shard-{k}"))
            .spawn(move || {
                let _ = done.send(run_shard(shard, settings, &roster));
            })
            .map_err(SimulateError::Shard)?;
        threads.push(thread);
    }
    let bar = super::Bar::start(settings.progress, gauges);
    let mut played = Vec::with_capacity(shards);
    let mut failed = None;
    for result in results {
        match result.await {
            Ok(Ok(shard)) => played.push(shard),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(_) => {
                failed = failed.or(Some(SimulateError::Shard(std::io::Error::other(
                    "a shard's thread ended without a summary",
                ))))
            }
        }
    }
    bar.finish();
    // Each has sent its result: what is left of a thread is its runtime's shutdown.
    for thread in threads {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(sum(played)),
    }
}

/// One shard, on the calling thread: a store of its own with `roster`, a broker of
/// its own, and the events logged on this thread going to the shard's sink.
fn run_shard(
    gauges: Gauges,
    settings: SimulateSettings,
    roster: &[RosterHero],
) -> Result<Played, SimulateError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimulateError::Shard)?;
    route_thread_events(gauges.sink.clone());
    runtime.block_on(async {
        let store = MemoryStore::new();
        store.replace_roster(roster).await?;
        super::play(store, Arc::new(MemoryBroker::new()), gauges, settings, None).await
    })
}

/// The run's summary from its shards': counts add up, the run lasted as long as its
/// longest shard, and the latencies and completion rate are those of all games.
fn sum(shards: Vec<Played>) -> SimulateSummary {
    let mut latency = LatencyRecorder::new();
    let mut ends: Vec<Instant> = Vec::new();
    let mut shards = shards.into_iter();
    let Some(first) = shards.next() else {
        unreachable!("a run has at least one shard")
    };
    latency.merge(&first.latency);
    ends.extend(first.ends);
    let mut total = first.summary;
    for shard in shards {
        latency.merge(&shard.latency);
        ends.extend(shard.ends);
        let s = shard.summary;
        total.shards += s.shards;
        total.bots += s.bots;
        total.workers += s.workers;
        total.games_completed += s.games_completed;
        total.games_timed_out += s.games_timed_out;
        total.games_unfinished = match (total.games_unfinished, s.games_unfinished) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        total.games_written += s.games_written;
        total.duplicate_games += s.duplicate_games;
        total.missing_games += s.missing_games;
        total.files_written += s.files_written;
        total.events_published += s.events_published;
        total.events_dropped += s.events_dropped;
        total.events_rejected += s.events_rejected;
        total.events_lost += s.events_lost;
        total.bot_errors += s.bot_errors;
        total.lobbies_abandoned += s.lobbies_abandoned;
        total.games_skipped += s.games_skipped;
        total.connections_reopened += s.connections_reopened;
        total.elapsed_s = total.elapsed_s.max(s.elapsed_s);
        total.backlog_peak += s.backlog_peak;
        total.held_s = total.held_s.max(s.held_s);
    }
    total.games_per_s = super::per_second(total.games_completed, total.elapsed_s);
    total.events_per_s = super::per_second(total.events_published, total.elapsed_s);
    total.completion_rate = crate::player::completion_rate(ends);
    total.completion_to_parquet = latency.summary();
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerSettings;
    use crate::worker::WorkerSettings;

    fn settings(bots: usize, workers: usize) -> SimulateSettings {
        SimulateSettings {
            bots,
            first_user: 10,
            games: 5,
            seed: 1,
            heroes: 20,
            server: ServerSettings::default(),
            transport: Transport::InProcess,
            workers,
            rate: Some(90.0),
            concurrent_bots: 101,
            max_backlog: 1000,
            etl: WorkerSettings {
                output_dir: "out".into(),
                clean: false,
                keep: std::time::Duration::ZERO,
                batch: None,
                shared: true,
            },
            progress: true,
            drain_idle: std::time::Duration::from_secs(1),
            stop: None,
        }
    }

    #[test]
    fn shards_share_the_bots_and_keep_their_numbers() {
        let whole = settings(103, 2);
        let parts: Vec<_> = (0..3).map(|k| whole.shard(k, 3)).collect();
        assert_eq!(
            parts.iter().map(|p| p.bots).collect::<Vec<_>>(),
            [35, 34, 34]
        );
        // Bot numbers follow on from shard to shard: USER010 to USER112, once each.
        assert_eq!(
            parts.iter().map(|p| p.first_user).collect::<Vec<_>>(),
            [10, 45, 79]
        );
        // Every shard has a worker, even when there are fewer workers than shards.
        assert_eq!(
            parts.iter().map(|p| p.workers).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        let rate: f64 = parts.iter().filter_map(|p| p.rate).sum();
        assert!((rate - 90.0).abs() < 1e-9, "{rate}");
        assert!(parts.iter().all(|p| p.concurrent_bots == 34));
        assert!(parts.iter().all(|p| p.max_backlog == 334));
        // One bar for the run, drawn by the caller.
        assert!(parts.iter().all(|p| !p.progress));
        // 0 stays "no limit".
        let unlimited = SimulateSettings {
            concurrent_bots: 0,
            max_backlog: 0,
            ..whole
        };
        let part = unlimited.shard(1, 3);
        assert_eq!((part.concurrent_bots, part.max_backlog), (0, 0));
    }

    #[test]
    fn a_shard_per_thread_with_enough_bots_each() {
        assert_eq!(default_shards(&settings(200, 2), 2), 2);
        assert_eq!(default_shards(&settings(200, 2), 8), 8);
        assert_eq!(default_shards(&settings(100, 2), 8), 5);
        assert_eq!(default_shards(&settings(40, 2), 2), 2);
        assert_eq!(default_shards(&settings(39, 2), 2), 1);
        assert_eq!(default_shards(&settings(2, 2), 2), 1);
        assert_eq!(default_shards(&settings(200, 2), 1), 1);
        let tcp = SimulateSettings {
            transport: Transport::Tcp,
            ..settings(200, 2)
        };
        assert_eq!(default_shards(&tcp, 2), 1);
    }
}
