//! `superhero worker`: ETL workers against the Redis store the servers use and a
//! network broker, until Ctrl-C or SIGTERM; then they write what they hold.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use serde::Serialize;

use super::metrics::MetricsArgs;
use super::{GlobalArgs, StopRequests, print_summary, seconds};
use crate::events;
use crate::store::AnyStore;
use crate::worker::{Assignment, BatchPolicy, EtlCounts, EtlProgress, Pool, WorkerSettings};

/// How long the workers get to write what they hold once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Workers in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Topic, queue or channel the workers consume (default: the broker's name for
    /// `lib.server.lobby`).
    #[arg(long, env = "WORKER_CHANNEL")]
    pub channel: Option<String>,
    /// Consumer group the workers share.
    #[arg(long, default_value = events::WORKER_GROUP)]
    pub group: String,
    #[command(flatten)]
    pub etl: EtlArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// How workers write and clean (`worker` and `simulate`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Tables")]
pub struct EtlArgs {
    /// Batch mode: write one file per this many games instead of one per game.
    #[arg(long, value_name = "N")]
    pub batch_games: Option<usize>,
    /// Batch mode: write a batch after this many seconds even if not full.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub batch_seconds: f64,
    /// Clean the store after each game's ETL.
    #[arg(long = "clean", env = "CLEAN_ROUTINE")]
    pub clean: bool,
    /// Seconds to keep a cleaned game's keys.
    #[arg(long, env = "REDIS_EXPIRY", default_value_t = 30)]
    pub redis_expiry: u64,
}

impl EtlArgs {
    /// The workers' settings, writing under `output_dir`.
    pub fn settings(&self, output_dir: &Path) -> Result<WorkerSettings> {
        let batch = match self.batch_games {
            None => None,
            Some(0) => bail!("--batch-games must be at least 1"),
            Some(games) => Some(BatchPolicy {
                games,
                max_age: seconds(self.batch_seconds, "--batch-seconds")?,
            }),
        };
        if self.redis_expiry > super::MAX_SECONDS {
            bail!(
                "--redis-expiry must be at most {} seconds (ten years), not {}",
                super::MAX_SECONDS,
                self.redis_expiry
            );
        }
        Ok(WorkerSettings {
            output_dir: output_dir.to_path_buf(),
            clean: self.clean,
            keep: Duration::from_secs(self.redis_expiry),
            batch,
            shared: true,
        })
    }
}

/// The `worker --json` summary.
#[derive(Serialize)]
struct WorkerSummary {
    workers: usize,
    #[serde(flatten)]
    counts: EtlCounts,
    elapsed_s: f64,
    games_per_s: f64,
}

/// Runs `superhero worker`; the exit code says whether it went cleanly.
pub async fn run(args: &WorkerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let metrics = args.metrics.start().await?;
    let AnyStore::Redis(store) = g.open_store().await? else {
        bail!(
            "`worker` reads games from the store the servers write: give it the same Redis \
             (--store redis or redis://HOST:PORT/DB); the embedded store lives inside one process"
        );
    };
    let Some(broker) = g.network_broker("worker").await? else {
        bail!(
            "`worker` needs a broker to consume: --broker redis-streams://HOST:PORT/DB \
             (or LOGGER_MODULE=redis-streams)"
        );
    };
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let settings = args.etl.settings(&g.output_dir)?;
    let assignment = Assignment {
        topic: args
            .channel
            .clone()
            .unwrap_or_else(|| broker.topic_for(events::WORKER_QUEUE)),
        group: args.group.clone(),
        workers: args.workers,
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
    };
    let progress = Arc::new(EtlProgress::default());
    metrics.store(&store);
    metrics.broker("broker", &broker);
    metrics.workers(&progress, &broker, &assignment.topic, &assignment.group);
    let started = std::time::Instant::now();
    let pool = Pool::start(store, &*broker, &assignment, &settings, &progress).await?;
    // Caught before the workers say they run, and kept to the end: a second request
    // quits without waiting for them.
    let stop = StopRequests::follow("the workers write what they hold, then stop");
    println!(
        "superhero worker: {} workers consuming {} (group {}) on {}, writing to {}",
        assignment.workers,
        assignment.topic,
        assignment.group,
        broker.kind(),
        settings.output_dir.display()
    );
    stop.requested().await;
    let stopped_cleanly = pool.stop(STOP_GRACE).await;
    let elapsed_s = started.elapsed().as_secs_f64();
    let counts = progress.counts();
    print_summary(
        &WorkerSummary {
            workers: args.workers,
            counts,
            elapsed_s,
            games_per_s: if elapsed_s > 0.0 {
                counts.games_written as f64 / elapsed_s
            } else {
                0.0
            },
        },
        g.json,
    )?;
    Ok(if stopped_cleanly {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
