//! The game pipeline workload: a whole `simulate` run (server, bots, W workers) on
//! the broker under test, with the embedded store, its tables written to a scratch
//! folder and read back. What it measures is what a user of the pipeline sees: games
//! played and written, duplicate and missing games, events per second, and the time
//! from a game's end to its rows on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::process::ProcessUsage;
use crate::broker::Broker;
use crate::events::EventSink;
use crate::latency::Latency;
use crate::player;
use crate::server::ServerSettings;
use crate::simulate::{self, SimulateError, SimulateSettings, Transport};
use crate::store::MemoryStore;
use crate::worker::{BatchPolicy, WorkerSettings};

/// Games per table file unless the workload says.
pub const BATCH_GAMES: usize = 1_000;
/// The longest a batch's first game waits unless the workload says, in seconds.
pub const BATCH_SECONDS: f64 = 1.0;

/// What the game pipeline workload runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GameWorkload {
    pub bots: usize,
    /// Games each bot plays (a game has 2 or 3 players).
    pub games_per_bot: u32,
    pub workers: usize,
    /// About this many games per second; none: as fast as the pipeline goes.
    pub rate: Option<f64>,
    pub seed: u64,
    /// Games per table file (0: one pair of files per game, bound by the disk's rate
    /// for durable files rather than by the broker).
    pub batch_games: usize,
    /// ...or when a batch's first game has waited this long, in seconds.
    pub batch_seconds: f64,
    /// How long the workers may settle nothing before their games count as missing.
    #[serde(skip)]
    pub drain_idle: Duration,
}

impl Default for GameWorkload {
    fn default() -> Self {
        Self {
            bots: 100,
            games_per_bot: 10,
            workers: 3,
            rate: None,
            seed: 42,
            batch_games: BATCH_GAMES,
            batch_seconds: BATCH_SECONDS,
            drain_idle: Duration::from_secs(10),
        }
    }
}

impl GameWorkload {
    /// How the workers batch their tables; none: a pair of files per game.
    pub fn batch_policy(&self) -> Option<BatchPolicy> {
        (self.batch_games > 0).then(|| BatchPolicy {
            games: self.batch_games,
            max_age: Duration::try_from_secs_f64(self.batch_seconds).unwrap_or(Duration::MAX),
        })
    }

    /// A run of a few seconds.
    pub fn quick() -> Self {
        Self {
            bots: 20,
            games_per_bot: 5,
            drain_idle: Duration::from_secs(5),
            ..Self::default()
        }
    }
}

/// What one broker did with the game pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GameResult {
    pub workers: usize,
    /// Games played to the end.
    pub games_simulated: u64,
    pub games_timed_out: u64,
    /// Played games found in both tables on disk.
    pub games_written: u64,
    /// Played games written more than once.
    pub duplicate_games: u64,
    /// Played games missing from a table.
    pub missing_games: u64,
    pub events_published: u64,
    pub events_dropped: u64,
    pub events_per_s: f64,
    pub games_per_s: f64,
    pub elapsed_s: f64,
    /// From a game's end to its rows durably on disk.
    pub completion_to_parquet: Latency,
    /// What the broker's process used meanwhile, when it runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_process: Option<ProcessUsage>,
}

/// Runs the game pipeline once on `broker`; the tables go to `scratch`, which is
/// removed afterwards. `sink` must be the one the process's tracing layer feeds.
pub async fn run(
    broker: Arc<dyn Broker>,
    sink: &Arc<EventSink>,
    workload: &GameWorkload,
    scratch: &Path,
) -> Result<GameResult, SimulateError> {
    let settings = SimulateSettings {
        first_user: 0,
        bots: workload.bots,
        games: i64::from(workload.games_per_bot),
        seed: workload.seed,
        heroes: 732,
        server: ServerSettings::default(),
        transport: Transport::default(),
        workers: workload.workers,
        rate: workload.rate,
        concurrent_bots: player::CONCURRENT_BOTS,
        max_backlog: simulate::MAX_BACKLOG,
        etl: WorkerSettings {
            output_dir: scratch.to_path_buf(),
            clean: false,
            keep: Duration::from_secs(30),
            batch: workload.batch_policy(),
            shared: true,
        },
        progress: false,
        drain_idle: workload.drain_idle,
        stop: None,
    };
    let summary = simulate::run(MemoryStore::new(), broker, sink, settings).await;
    if let Err(e) = std::fs::remove_dir_all(scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("bench: cannot remove {}: {e}", scratch.display());
    }
    let s = summary?;
    Ok(GameResult {
        workers: s.workers,
        games_simulated: s.games_completed,
        games_timed_out: s.games_timed_out,
        games_written: s.games_written,
        duplicate_games: s.duplicate_games,
        missing_games: s.missing_games,
        events_published: s.events_published,
        events_dropped: s.events_dropped,
        events_per_s: s.events_per_s,
        games_per_s: s.games_per_s,
        elapsed_s: s.elapsed_s,
        completion_to_parquet: s.completion_to_parquet,
        broker_process: None,
    })
}

/// A sentence on one broker's game pipeline, from its numbers alone.
pub fn verdict(name: &str, r: &GameResult) -> String {
    let played = r.games_simulated;
    let mut parts = Vec::new();
    if played == 0 {
        parts.push("no game was played".to_string());
    } else if r.missing_games == 0 && r.duplicate_games == played && r.workers > 1 {
        parts.push(format!(
            "every game written {} times by {} workers (each worker gets every event)",
            r.workers, r.workers
        ));
    } else if r.missing_games == 0 && r.duplicate_games == 0 {
        parts.push(format!(
            "each of {played} games written exactly once by {} workers",
            r.workers
        ));
    } else {
        if r.missing_games > 0 {
            parts.push(format!("{} of {played} games missing", r.missing_games));
        }
        if r.duplicate_games > 0 {
            parts.push(format!(
                "{} of {played} games written more than once",
                r.duplicate_games
            ));
        }
    }
    if r.events_dropped > 0 {
        parts.push(format!("{} events dropped", r.events_dropped));
    }
    parts.push(format!(
        "{:.0} events/s, game end to Parquet p99 {:.0} ms",
        r.events_per_s, r.completion_to_parquet.p99_ms
    ));
    format!("{name} (game pipeline): {}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(played: u64, written: u64, dup: u64, missing: u64) -> GameResult {
        GameResult {
            workers: 3,
            games_simulated: played,
            games_written: written,
            duplicate_games: dup,
            missing_games: missing,
            ..GameResult::default()
        }
    }

    #[test]
    fn verdicts_tell_broadcast_from_work_sharing() {
        let v = verdict("redis", &result(40, 40, 40, 0));
        assert!(v.contains("every game written 3 times by 3 workers"), "{v}");
        let v = verdict("rabbitmq", &result(40, 40, 0, 0));
        assert!(v.contains("each of 40 games written exactly once"), "{v}");
        let v = verdict("x", &result(40, 38, 1, 2));
        assert!(v.contains("2 of 40 games missing"), "{v}");
        assert!(v.contains("1 of 40 games written more than once"), "{v}");
    }
}
