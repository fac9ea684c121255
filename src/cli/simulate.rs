//! `superhero simulate`: server, bots and workers in one process; exits non-zero when
//! a completed game is missing, an event was dropped or a bot failed.

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::dashboard::{self, DashboardArgs};
use super::metrics::MetricsArgs;
use super::server::GameArgs;
use super::worker::EtlArgs;
use super::{GlobalArgs, StopRequests, events_sink, print_summary, seconds};
use crate::dashboard::Sources;
use crate::dashboard::pipeline::{LocalPipeline, PipelineFeed};
use crate::player;
use crate::server::ServerSettings;
use crate::simulate::{self, SimulateSettings, Transport};
use crate::store::StoreChoice;
use crate::worker::EtlProgress;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Bots to run (at least 2).
    #[arg(long, default_value_t = 100)]
    pub bots: usize,
    /// Games each bot plays.
    #[arg(long, env = "CLIENT_GAMES", default_value_t = 10)]
    pub games: u32,
    /// Seed of the synthetic roster (when the store has none) and of the bots' choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Heroes of the synthetic roster.
    #[arg(long, default_value_t = 732)]
    pub heroes: u32,
    /// ETL workers consuming the game events.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Pace the run to about this many games per second (default: as fast as possible).
    #[arg(long, value_name = "GAMES_PER_S")]
    pub rate: Option<f64>,
    /// How the bots reach the game server: through in-process streams (no sockets,
    /// the same HTTP upgrade and WebSocket frames) or through loopback TCP sockets.
    #[arg(long, value_enum, default_value_t = TransportArg::InProcess)]
    pub transport: TransportArg,
    /// Also serve the game to outside clients on this address (HOST:PORT, port 0 for
    /// any free one) while the simulation runs; with `--transport tcp` the bots use
    /// it too.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Bots in a game at once, at most; the others wait their turn, first come first
    /// served, so that a crowd of bots does not stretch every turn past the turn
    /// timeout (0: all at once).
    #[arg(long, value_name = "N", default_value_t = player::CONCURRENT_BOTS)]
    pub concurrent_bots: usize,
    /// Completed games not yet in the tables, at most, before bots wait to start more
    /// (0: no limit): when the workers fall behind, the run goes at their pace instead
    /// of holding the difference in memory.
    #[arg(long, value_name = "GAMES", default_value_t = simulate::MAX_BACKLOG)]
    pub max_backlog: u64,
    /// Independent copies of the pipeline, each on a thread of its own with its own
    /// embedded store and broker, workers, game server and share of the bots.
    /// Default: one per runtime thread (at most one per 20 bots) when the store and
    /// the broker are the embedded ones and nothing outside watches the run (no
    /// `--listen`, `--dashboard` or `--metrics`); otherwise 1.
    #[arg(long, value_name = "N")]
    pub shards: Option<NonZeroUsize>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Seconds to wait for workers that make no progress at the end of the run
    /// before counting their games as missing.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub drain_timeout: f64,
    #[command(flatten)]
    pub game: GameArgs,
    #[command(flatten)]
    pub etl: EtlArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The values of `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    InProcess,
    Tcp,
}

impl From<TransportArg> for Transport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::InProcess => Transport::InProcess,
            TransportArg::Tcp => Transport::Tcp,
        }
    }
}

impl SimulateArgs {
    /// How many shards the run uses (see `--shards`), on `threads` runtime threads.
    pub fn shards(
        &self,
        g: &GlobalArgs,
        settings: &SimulateSettings,
        threads: usize,
    ) -> Result<usize> {
        let embedded_store = matches!(g.store_choice()?, StoreChoice::Memory);
        let embedded_broker = g
            .broker_spec("memory")?
            .is_none_or(|spec| spec.backend().name == "memory");
        // What watches the run's one pipeline from outside, if anything.
        let watched = if self.listen.is_some() {
            Some("--listen serves one game server")
        } else if self.dashboard.dashboard {
            Some("--dashboard watches one broker")
        } else if self.metrics.metrics.is_some() {
            Some("--metrics reports one store and broker")
        } else {
            None
        };
        let Some(asked) = self.shards.map(NonZeroUsize::get) else {
            return Ok(if embedded_store && embedded_broker && watched.is_none() {
                simulate::default_shards(settings, threads)
            } else {
                1
            });
        };
        if asked > 1 {
            let why = if !embedded_store {
                Some("the store is not the embedded one")
            } else if !embedded_broker {
                Some("the broker is not the embedded one")
            } else if settings.transport == Transport::Tcp {
                Some("the bots reach the server over TCP")
            } else {
                watched
            };
            if let Some(why) = why {
                bail!("--shards {asked}: a run has one shard when {why}");
            }
        }
        Ok(asked)
    }

    /// The run's settings; `g` gives the output folder and whether a progress bar
    /// may be drawn (not under `--json`).
    pub fn settings(&self, g: &GlobalArgs) -> Result<SimulateSettings> {
        if self.bots < 2 {
            bail!("--bots must be at least 2: a game needs two players");
        }
        if self.workers == 0 {
            bail!("--workers must be at least 1: the workers write the tables");
        }
        if let Some(rate) = self.rate {
            super::rate(rate, "--rate", "games")?;
        }
        Ok(SimulateSettings {
            bots: self.bots,
            first_user: 0,
            games: i64::from(self.games),
            seed: self.seed,
            heroes: self.heroes,
            server: ServerSettings::try_from(&self.game)?,
            transport: self.transport.into(),
            workers: self.workers,
            rate: self.rate,
            concurrent_bots: self.concurrent_bots,
            max_backlog: self.max_backlog,
            etl: self.etl.settings(&g.output_dir)?,
            progress: !self.no_progress && !g.json,
            drain_idle: seconds(self.drain_timeout, "--drain-timeout")?,
            stop: None,
        })
    }
}

/// Runs `superhero simulate`; the exit code says whether it went cleanly.
pub async fn run(args: &SimulateArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = args.settings(g)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shards = args.shards(g, &settings, g.worker_threads(cores))?;
    let metrics = args.metrics.start().await?;
    let store = g.open_store().await?;
    // In-process bots need no descriptors; over TCP each socket has two ends here.
    if settings.transport == Transport::Tcp {
        super::check_bots_fit(settings.bots, true)?;
    }
    // Caught before the address is printed: a run that says it serves drains.
    let stop = StopRequests::follow("the bots finish their games, then the tables are written");
    let outside = match &args.listen {
        Some(addr) => {
            let listener = crate::net::bind(addr.as_str())
                .await
                .with_context(|| format!("simulate cannot listen on {addr}"))?;
            eprintln!("game server: ws://{}", listener.local_addr()?);
            Some(listener)
        }
        None => None,
    };
    let broker = g.local_broker().await?;
    let sink = events_sink();
    let progress = Arc::new(EtlProgress::tracking_games());
    metrics.store(&store);
    metrics.broker("broker", &broker);
    metrics.events();
    metrics.workers(
        &progress,
        &broker,
        &broker.topic_for(crate::events::WORKER_QUEUE),
        crate::events::WORKER_GROUP,
    );
    let mut sources = Sources::default();
    if args.dashboard.dashboard {
        let feed = PipelineFeed::start(broker.clone())
            .await
            .context("the dashboard cannot observe the broker")?;
        feed.attach(LocalPipeline {
            sink: sink.clone(),
            progress: progress.clone(),
            broadcast: !broker.semantics().work_sharing(),
        });
        sources.pipeline = Some(feed);
    }
    let page = dashboard::start(&args.dashboard, sources.clone()).await?;
    let settings = SimulateSettings {
        stop: Some(stop.watch()),
        ..settings
    };
    let summary = if shards > 1 {
        simulate::run_sharded(shards, settings).await?
    } else {
        simulate::run_with(store, broker, sink, settings, progress, outside).await?
    };
    drop(stop);
    if let Some(feed) = &sources.pipeline {
        feed.finished();
    }
    print_summary(&summary, g.json)?;
    if summary.missing_games > 0 {
        eprintln!(
            "error: {} completed games are missing from {}",
            summary.missing_games, summary.output_dir
        );
    }
    let clean =
        summary.bot_errors == 0 && summary.missing_games == 0 && summary.events_dropped == 0;
    dashboard::stay_up(page).await?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
