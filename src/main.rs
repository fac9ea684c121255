//! The `superhero` command: parses flags and environment, then calls into the library.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tokio::net::TcpListener;

use superhero::audit;
use superhero::bench;
use superhero::broker::{
    self, Broker, BrokerChoice, BrokerDefaults, ConnectOptions, Fanout, MemoryBroker,
    RedisPubSubBroker,
};
use superhero::config::{
    self, AuditArgs, BenchArgs, BuildDbArgs, Cli, Command, DashboardArgs, DashboardServeArgs,
    EtlArgs, FanoutArgs, GameArgs, GlobalArgs, PlayerArgs, PlaysArgs, RosterArgs, ServerArgs,
    SimulateArgs, StoreChoice, WorkerArgs,
};
use superhero::dashboard::pipeline::{LocalPipeline, PipelineFeed};
use superhero::dashboard::{self, Dashboard};
use superhero::events::transport::DEFAULT_BUFFER;
use superhero::events::{EventLayer, EventPipe, EventSink, Queue};
use superhero::player::{self, PlayerSettings};
use superhero::plays::{self, PlaysSettings, feed::PlaysFeed};
use superhero::roster::{self, RosterHero};
use superhero::server::{self, ServerSettings};
use superhero::simulate::{self, SimulateSettings};
use superhero::store::{GameStore, MemoryStore, RedisConfig, RedisStore};
use superhero::worker::{self, BatchPolicy, EtlCounts, EtlProgress, WorkerSettings};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

// Many small allocations per message: mimalloc serves them faster than the system's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A .env file fills in variables that are not already set, as in the original.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse_from(config::expand_plays_names(std::env::args_os().collect()));
    // Whole runs in one process: the game's records would drown their report.
    let default_level = match cli.command {
        Command::Simulate(_) | Command::Bench(_) | Command::Plays(_) => "WARNING",
        _ => "INFO",
    };
    // Commands whose stdout is a report log to stderr.
    let to_stderr = matches!(cli.command, Command::Bench(_) | Command::Plays(_));
    init_logging(
        cli.global.log_level.as_deref().unwrap_or(default_level),
        to_stderr,
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints records at LOG_LEVEL to stdout (stderr with `to_stderr`), and hands every
/// queue record to the event transport whatever LOG_LEVEL says (events are data, not
/// chatter).
fn init_logging(level: &str, to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(config::log_filter(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let print = if to_stderr {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .boxed()
    }
    .with_filter(filter);
    let events = EventLayer::new(events_sink().clone()).with_filter(
        tracing_subscriber::filter::filter_fn(|m| Queue::from_target(m.target()).is_some()),
    );
    tracing_subscriber::registry()
        .with(print)
        .with(events)
        .init();
}

/// The sink the event layer of this process feeds.
fn events_sink() -> &'static Arc<EventSink> {
    static SINK: OnceLock<Arc<EventSink>> = OnceLock::new();
    SINK.get_or_init(EventSink::new)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::BuildDb(args) => with_store(g, |store| build_db(store, args, g.json)).await,
        Command::Server(args) => with_store(g, |store| serve(store, args, g)).await,
        Command::Worker(args) => with_store(g, |store| run_workers(store, args, g)).await,
        Command::Player(args) => play(args, g.json).await,
        Command::Simulate(args) => with_store(g, |store| run_simulation(store, args, g)).await,
        Command::Audit(args) => run_audit(args, g).await,
        Command::Fanout(args) => run_fanout(args, g).await,
        Command::Bench(args) => run_bench(args, g).await,
        Command::Plays(args) => run_plays(args, g).await,
        Command::Dashboard(args) => run_dashboard(args, g).await,
    }
}

/// Opens the chosen store and hands it to `f`.
async fn with_store<F, Fut>(g: &GlobalArgs, f: F) -> Result<ExitCode>
where
    F: FnOnce(AnyStore) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let store = match g.store_choice().map_err(anyhow::Error::msg)? {
        StoreChoice::Memory => AnyStore::Memory(MemoryStore::new()),
        StoreChoice::Redis(cfg) => AnyStore::Redis(
            RedisStore::connect(&cfg)
                .await
                .with_context(|| format!("opening the Redis store at {cfg}"))?,
        ),
    };
    f(store).await
}

/// The store chosen at run time.
enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

fn load_roster(args: &RosterArgs) -> Result<Vec<RosterHero>> {
    match &args.from {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            roster::parse_api(&text).with_context(|| format!("importing {}", path.display()))
        }
        None => {
            if args.heroes < 3 {
                bail!(
                    "--heroes must be at least 3 so that games of 2 and 3 players can be dealt heroes"
                );
            }
            Ok(roster::synthetic(args.heroes, args.seed))
        }
    }
}

#[derive(Serialize)]
struct BuildDbSummary {
    heroes: usize,
    source: String,
    first_id: u32,
    first_name: String,
    first_health: u64,
    first_attack: u64,
}

async fn build_db(store: AnyStore, args: &BuildDbArgs, json: bool) -> Result<ExitCode> {
    let heroes = load_roster(&args.roster)?;
    match &store {
        AnyStore::Memory(s) => {
            s.replace_roster(&heroes).await?;
            eprintln!(
                "note: the embedded store lives in this process only; use --store redis to keep the roster"
            );
        }
        AnyStore::Redis(s) => s
            .replace_roster(&heroes)
            .await
            .context("writing the roster to Redis")?,
    }
    let first = &heroes[0];
    let summary = BuildDbSummary {
        heroes: heroes.len(),
        source: match &args.roster.from {
            Some(p) => p.display().to_string(),
            None => format!("synthetic (seed {})", args.roster.seed),
        },
        first_id: first.id,
        first_name: first.name.clone(),
        first_health: first.hero().health,
        first_attack: first.hero().attack,
    };
    print_summary(&summary, json)?;
    Ok(ExitCode::SUCCESS)
}

fn server_settings(game: &GameArgs) -> Result<ServerSettings> {
    Ok(ServerSettings {
        lobby_timeout: config::seconds(game.lobby_timeout, "--lobby-timeout")
            .map_err(anyhow::Error::msg)?,
        server_sleep: config::seconds(game.server_sleep, "--server-sleep")
            .map_err(anyhow::Error::msg)?,
        turn_cap: game.turn_cap,
    })
}

fn worker_settings(args: &EtlArgs, output_dir: &std::path::Path) -> Result<WorkerSettings> {
    let batch = match args.batch_games {
        None => None,
        Some(0) => bail!("--batch-games must be at least 1"),
        Some(games) => Some(BatchPolicy {
            games,
            max_age: config::seconds(args.batch_seconds, "--batch-seconds")
                .map_err(anyhow::Error::msg)?,
        }),
    };
    Ok(WorkerSettings {
        output_dir: output_dir.to_path_buf(),
        clean: args.clean,
        keep: Duration::from_secs(args.redis_expiry),
        batch,
    })
}

/// The broker the flags and environment ask for; LOGGER_MODULE=default means
/// `default_module` (`simulate` publishes to the embedded broker then).
fn broker_choice(g: &GlobalArgs, default_module: &str) -> Result<BrokerChoice> {
    let module = match g.logger_module.as_str() {
        "default" => default_module,
        other => other,
    };
    Ok(BrokerChoice::parse(
        g.broker.as_deref(),
        module,
        &broker_defaults(g),
    )?)
}

/// Where LOGGER_MODULE's brokers are, from the broker variables.
fn broker_defaults(g: &GlobalArgs) -> BrokerDefaults {
    BrokerDefaults {
        redis_url: RedisConfig::from_parts(&g.redis_host, g.redis_port, g.redis_db).url,
        amqp_url: format!(
            "amqp://{}:{}@{}:{}/%2f",
            g.rabbit_user, g.rabbit_pass, g.amqp_host, g.amqp_port
        ),
        nats_url: g.nats_url.clone(),
        nsq_url: format!("nsq://{}", g.nsqd_address),
        kafka_url: format!("kafka://{}:{}", g.kafka_host, g.kafka_port),
    }
}

/// The broker LOGGER_MODULE=`module` would name, at the broker variables' addresses.
fn broker_choice_for(g: &GlobalArgs, module: &str) -> Result<BrokerChoice> {
    Ok(BrokerChoice::parse(None, module, &broker_defaults(g))?)
}

/// `in_process`: everything runs in this process (`simulate`), so it runs the Redis
/// fan-out middleware too.
fn connect_options(g: &GlobalArgs, in_process: bool) -> Result<ConnectOptions> {
    let claim_after =
        config::seconds(g.claim_after, "--claim-after").map_err(anyhow::Error::msg)?;
    if claim_after < Duration::from_millis(100) {
        bail!("--claim-after must be at least 0.1 seconds");
    }
    if g.kafka_partitions < 1 {
        bail!("KAFKA_PARTITIONS must be at least 1");
    }
    Ok(ConnectOptions {
        claim_after,
        embedded_fanout: in_process,
        kafka_partitions: g.kafka_partitions,
        kafka_single_message_batches: g.kafka_single_message_batches,
    })
}

/// A broker that other processes can reach, for `server` and `worker`.
async fn network_broker(g: &GlobalArgs, command: &str) -> Result<Option<Arc<dyn Broker>>> {
    let choice = broker_choice(g, "default")?;
    if choice == BrokerChoice::Memory {
        bail!(
            "the embedded broker lives inside one process, so `{command}` cannot share it: \
             use `superhero simulate`, or a network broker such as --broker redis-streams://HOST:PORT/DB"
        );
    }
    broker::connect(&choice, connect_options(g, false)?)
        .await
        .with_context(|| format!("opening the broker for `{command}`"))
}

/// The broker of `simulate`: the embedded one unless another is configured.
async fn simulate_broker(g: &GlobalArgs) -> Result<Arc<dyn Broker>> {
    match broker::connect(&broker_choice(g, "memory")?, connect_options(g, true)?).await? {
        Some(b) => Ok(b),
        None => Ok(Arc::new(MemoryBroker::new())),
    }
}

async fn run_simulation(store: AnyStore, args: &SimulateArgs, g: &GlobalArgs) -> Result<ExitCode> {
    if args.bots < 2 {
        bail!("--bots must be at least 2: a game needs two players");
    }
    if args.workers == 0 {
        bail!("--workers must be at least 1: the workers write the tables");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a number of games per second > 0, not {rate}");
    }
    let broker = simulate_broker(g).await?;
    let settings = SimulateSettings {
        bots: args.bots,
        games: i64::from(args.games),
        seed: args.seed,
        heroes: args.heroes,
        server: server_settings(&args.game)?,
        workers: args.workers,
        rate: args.rate,
        etl: worker_settings(&args.etl, &g.output_dir)?,
        progress: !args.no_progress && !g.json,
        drain_idle: config::seconds(args.drain_timeout, "--drain-timeout")
            .map_err(anyhow::Error::msg)?,
    };
    let sink = events_sink();
    let progress = Arc::new(EtlProgress::tracking_games());
    let mut sources = dashboard::Sources::default();
    if args.dashboard.dashboard {
        let feed = PipelineFeed::start(broker.clone())
            .await
            .context("the dashboard cannot observe the broker")?;
        feed.attach(LocalPipeline {
            sink: sink.clone(),
            progress: progress.clone(),
            broadcast: !broker.semantics().work_sharing,
        });
        sources.pipeline = Some(feed);
    }
    let page = start_dashboard(&args.dashboard, sources.clone()).await?;
    let summary = match store {
        AnyStore::Memory(s) => simulate::run_with(s, broker, sink, settings, progress).await?,
        AnyStore::Redis(s) => simulate::run_with(s, broker, sink, settings, progress).await?,
    };
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
    let code =
        if summary.bot_errors == 0 && summary.missing_games == 0 && summary.events_dropped == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    stay_up(page).await?;
    Ok(code)
}

/// `superhero dashboard`: the game pipeline of other processes, seen on the broker.
async fn run_dashboard(args: &DashboardServeArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let Some(broker) = network_broker(g, "dashboard").await? else {
        bail!(
            "`dashboard` watches a broker: give one with --broker URL (or LOGGER_MODULE); \
             `simulate --dashboard` and `plays --dashboard` show their own runs"
        );
    };
    let feed = PipelineFeed::start(broker)
        .await
        .context("the dashboard cannot observe the broker")?;
    let sources = dashboard::Sources {
        pipeline: Some(feed),
        ..dashboard::Sources::default()
    };
    let page = start_dashboard(
        &DashboardArgs {
            dashboard: true,
            dashboard_host: args.host.clone(),
            dashboard_port: args.port,
        },
        sources,
    )
    .await?;
    stay_up(page).await?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps serving a dashboard that was started until Ctrl-C.
async fn stay_up(page: Option<tokio::task::JoinHandle<std::io::Result<()>>>) -> Result<()> {
    if let Some(page) = page {
        eprintln!("the dashboard stays up until Ctrl-C");
        page.await.context("serving the dashboard")??;
    }
    Ok(())
}

/// The brokers `superhero bench` measures unless told otherwise.
const BENCH_BROKERS: [&str; 8] = [
    "memory",
    "redis",
    "redis-fanout",
    "redis-streams",
    "rabbitmq",
    "kafka",
    "nats",
    "nsq",
];

async fn run_bench(args: &BenchArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let file = match &args.workload {
        Some(path) => bench::WorkloadFile::load(path)?,
        None => bench::WorkloadFile::default(),
    };
    let names = args
        .brokers
        .clone()
        .or_else(|| file.brokers.clone())
        .unwrap_or_else(|| BENCH_BROKERS.map(String::from).to_vec());
    let mut targets = Vec::new();
    for name in names.iter().map(|b| b.trim()).filter(|b| !b.is_empty()) {
        let choice = if name.contains("://") {
            BrokerChoice::parse(Some(name), "default", &BrokerDefaults::default())?
        } else {
            let module = if name == "rabbitmq" { "rabbit" } else { name };
            broker_choice_for(g, module)?
        };
        targets.push(bench::Target {
            name: name.to_string(),
            choice,
        });
    }
    if targets.is_empty() {
        bail!("--brokers names no broker");
    }
    let which = args
        .workloads
        .clone()
        .or_else(|| file.workloads.clone())
        .unwrap_or_else(|| vec!["raw".into(), "game".into()]);
    bench::workload::check_workloads(&which)?;

    let raw = file.raw(bench::RawWorkload {
        messages: if args.quick { 2_000 } else { 100_000 },
        size: 200,
        producers: 1,
        consumers: 1,
        rate: None,
        idle: if args.quick {
            Duration::from_secs(2)
        } else {
            bench::raw::DEFAULT_IDLE
        },
    });
    let raw = bench::RawWorkload {
        messages: args.messages.unwrap_or(raw.messages),
        size: args.size.unwrap_or(raw.size),
        producers: args.producers.unwrap_or(raw.producers),
        consumers: args.consumers.unwrap_or(raw.consumers),
        rate: args.rate.or(raw.rate),
        idle: raw.idle,
    };
    let game = file.game(if args.quick {
        bench::GameWorkload::quick()
    } else {
        bench::GameWorkload::default()
    });
    let game = bench::GameWorkload {
        bots: args.bots.unwrap_or(game.bots),
        games_per_bot: args.games.unwrap_or(game.games_per_bot),
        workers: args.workers.unwrap_or(game.workers),
        rate: args.game_rate.or(game.rate),
        ..game
    };
    let workloads = bench::Workloads {
        raw: which.iter().any(|w| w == "raw").then_some(raw),
        game: which.iter().any(|w| w == "game").then_some(game),
    };
    if let Some(raw) = &workloads.raw {
        bench::workload::check_raw(raw)?;
    }
    if let Some(game) = &workloads.game {
        bench::workload::check_game(game)?;
    }

    let ctx = bench::BenchContext {
        options: connect_options(g, true)?,
        sink: events_sink(),
        scratch: args.out.join("tables.tmp"),
        progress: !args.no_progress && !g.json,
    };
    let report = bench::run(&targets, &workloads, &ctx).await;
    if let Err(e) = std::fs::remove_dir(&ctx.scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!("leaving {}: {e}", ctx.scratch.display());
    }
    report
        .write(&args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    if g.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.markdown());
        println!(
            "\nreport: {} (also report.json, report.md)",
            args.out.join("report.html").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_plays(args: &PlaysArgs, g: &GlobalArgs) -> Result<ExitCode> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.videos == 0 {
        bail!("--videos must be at least 1");
    }
    if args.pc_ratio == 0 {
        bail!("--pc-ratio must be at least 1 producer per consumer thread");
    }
    let settings = PlaysSettings {
        threads: args.threads,
        messages: args.messages,
        videos: args.videos,
        update_interval: config::seconds(args.update_interval, "--update-interval")
            .map_err(anyhow::Error::msg)?,
        pc_ratio: args.pc_ratio,
        real_life: args.real_life,
        seed: args.seed,
        idle: config::seconds(args.idle_timeout, "--idle-timeout").map_err(anyhow::Error::msg)?,
        topic: None,
    };
    if settings.update_interval.is_zero() {
        bail!("--update-interval must be more than 0 seconds");
    }
    let broker = simulate_broker(g).await?;
    let feed = PlaysFeed::new();
    let page = start_dashboard(
        &args.dashboard,
        dashboard::Sources {
            plays: Some(feed.clone()),
            ..dashboard::Sources::default()
        },
    )
    .await?;
    let summary = plays::run(broker, &settings, feed)
        .await
        .context("running the plays scenario")?;
    print_summary(&summary, g.json)?;
    let code = if summary.messages_lost > 0 || !summary.counts_published {
        eprintln!(
            "error: {} of {} messages were never counted",
            summary.messages_lost, summary.messages_produced
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    stay_up(page).await?;
    Ok(code)
}

/// Starts the dashboard when asked for; it serves until Ctrl-C.
async fn start_dashboard(
    args: &DashboardArgs,
    sources: dashboard::Sources,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    if !args.dashboard {
        return Ok(None);
    }
    let page = Dashboard::bind(&args.dashboard_host, args.dashboard_port, sources)
        .await
        .with_context(|| {
            format!(
                "the dashboard cannot listen on {}:{}",
                args.dashboard_host, args.dashboard_port
            )
        })?;
    eprintln!("dashboard: {}", page.url()?);
    Ok(Some(tokio::spawn(page.serve(async {
        let _ = tokio::signal::ctrl_c().await;
    }))))
}

async fn run_audit(args: &AuditArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| g.output_dir.clone());
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let audit = tokio::task::spawn_blocking(move || audit::audit(&dir)).await??;
    let report = audit.report;
    print_summary(&report, g.json)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn serve(store: AnyStore, args: &ServerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = server_settings(&args.game)?;
    let pipe = match network_broker(g, "server").await? {
        Some(b) => Some(EventPipe::for_broker(events_sink(), &*b, DEFAULT_BUFFER).await?),
        None => None,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match store {
        AnyStore::Memory(s) => {
            let heroes = load_roster(&args.roster)?;
            s.replace_roster(&heroes).await?;
            tracing::info!(
                "serving on ws://{local} with the embedded store ({} heroes)",
                heroes.len()
            );
            server::serve(listener, s, settings, shutdown).await?;
        }
        AnyStore::Redis(s) => {
            let heroes = s.roster().await?.len();
            if heroes == 0 {
                tracing::warn!(
                    "the superheros hash is empty: run `superhero build-db --store redis` first"
                );
            }
            println!("superhero server listening on ws://{local} (Redis store, {heroes} heroes)");
            server::serve(listener, s, settings, shutdown).await?;
        }
    }
    if let Some(pipe) = pipe {
        let stats = pipe.finish(Duration::from_secs(10)).await;
        tracing::info!(
            "events: {} published, {} dropped",
            stats.published,
            stats.dropped
        );
        if stats.dropped > 0 {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `fanout --json` summary.
#[derive(Serialize)]
struct FanoutSummary {
    channel: String,
    to: String,
    forwarded: u64,
    lost: u64,
    elapsed_s: f64,
}

/// The Redis the fan-out reads: `--broker redis://` or `redis-fanout://`, else REDIS_*.
fn fanout_source(g: &GlobalArgs) -> Result<String> {
    match g.broker.as_deref() {
        Some(url) if url.starts_with("redis://") => Ok(url.to_string()),
        Some(url) if url.starts_with("redis-fanout://") => {
            Ok(url.replacen("redis-fanout://", "redis://", 1))
        }
        Some(other) => bail!(
            "`fanout` reads Redis pub/sub: --broker must be redis:// or redis-fanout://, not {}",
            config::redact_url(other)
        ),
        None => Ok(RedisConfig::from_parts(&g.redis_host, g.redis_port, g.redis_db).url),
    }
}

async fn run_fanout(args: &FanoutArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let source = fanout_source(g)?;
    let client = redis::Client::open(source.as_str())
        .with_context(|| format!("bad Redis address {}", config::redact_url(&source)))?;
    let started = std::time::Instant::now();
    let (forwarded, lost, to) = match &args.to {
        None => {
            let fanout = Fanout::start(&client, &args.channel).await?;
            let stats = fanout.stats.clone();
            println!(
                "superhero fanout: {} to one live worker each, on {}",
                args.channel,
                config::redact_url(&source)
            );
            tokio::select! {
                r = fanout.run() => r?,
                _ = tokio::signal::ctrl_c() => {}
            }
            (
                stats.forwarded.load(std::sync::atomic::Ordering::Relaxed),
                stats.lost.load(std::sync::atomic::Ordering::Relaxed),
                "workers".to_string(),
            )
        }
        Some(url) => {
            let choice = BrokerChoice::parse(Some(url), "default", &BrokerDefaults::default())?;
            let Some(target) = broker::connect(&choice, connect_options(g, false)?).await? else {
                bail!("--to needs a broker URL");
            };
            let topic = target.topic_for(worker::CHANNEL);
            let mut input = RedisPubSubBroker::connect(&source)
                .await?
                .consumer(&args.channel, "fanout")
                .await?;
            let publisher = target.publisher().await?;
            println!(
                "superhero fanout: {} bridged to {} ({})",
                args.channel,
                topic,
                config::redact_url(url)
            );
            let mut forwarded = 0u64;
            let mut lost = 0u64;
            loop {
                let next = tokio::select! {
                    n = input.next() => n,
                    _ = tokio::signal::ctrl_c() => break,
                };
                let payload = next?.payload;
                match publisher
                    .publish(&topic, std::slice::from_ref(&payload))
                    .await
                {
                    Ok(()) => forwarded += 1,
                    Err(e) => {
                        lost += 1;
                        tracing::error!("fanout: a message could not be bridged: {e}");
                    }
                }
            }
            (forwarded, lost, config::redact_url(url))
        }
    };
    print_summary(
        &FanoutSummary {
            channel: args.channel.clone(),
            to,
            forwarded,
            lost,
            elapsed_s: started.elapsed().as_secs_f64(),
        },
        g.json,
    )?;
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

async fn run_workers(store: AnyStore, args: &WorkerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let AnyStore::Redis(store) = store else {
        bail!(
            "`worker` reads games from the store the servers write: give it the same Redis \
             (--store redis or redis://HOST:PORT/DB); the embedded store lives inside one process"
        );
    };
    let Some(broker) = network_broker(g, "worker").await? else {
        bail!(
            "`worker` needs a broker to consume: --broker redis-streams://HOST:PORT/DB \
             (or LOGGER_MODULE=redis-streams)"
        );
    };
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let settings = worker_settings(&args.etl, &g.output_dir)?;
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| broker.topic_for(worker::CHANNEL));
    let progress = Arc::new(EtlProgress::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.workers {
        let consumer = broker.consumer(&channel, &args.group).await?;
        tasks.spawn(worker::run(
            store.clone(),
            consumer,
            format!("{}-{i}", &run_id[..8]),
            settings.clone(),
            progress.clone(),
            stop_rx.clone(),
        ));
    }
    println!(
        "superhero worker: {} workers consuming {} (group {}) on {}, writing to {}",
        args.workers,
        channel,
        args.group,
        broker.kind(),
        settings.output_dir.display()
    );
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(true);
    let mut failed = false;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a worker task failed: {e}");
            failed = true;
        }
    }
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
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn play(args: &PlayerArgs, json: bool) -> Result<ExitCode> {
    if args.bots == 0 {
        bail!("--bots must be at least 1");
    }
    let urls = if args.url.is_empty() {
        vec![format!("ws://{}:{}", args.host, args.port)]
    } else {
        args.url.clone()
    };
    for url in &urls {
        if !url.starts_with("ws://") && !url.starts_with("wss://") {
            bail!(
                "--url must start with ws:// or wss://, not {}",
                config::redact_url(url)
            );
        }
    }
    let summary = player::run(PlayerSettings {
        urls,
        bots: args.bots,
        games: args.games,
        seed: args.seed,
        first_user: args.first_user,
        closed_world: args.closed_world,
        ..PlayerSettings::default()
    })
    .await;
    print_summary(&summary, json)?;
    Ok(if summary.bot_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints a summary as a two-column table, or as one JSON object.
fn print_summary<T: Serialize>(summary: &T, json: bool) -> Result<()> {
    let value = serde_json::to_value(summary)?;
    if json {
        println!("{value}");
        return Ok(());
    }
    if let serde_json::Value::Object(fields) = value {
        let width = fields.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in fields {
            let v = match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    format!("{:.2}", n.as_f64().unwrap_or(0.0))
                }
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            println!("{k:<width$}  {v}");
        }
    }
    Ok(())
}
