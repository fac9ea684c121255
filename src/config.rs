//! Command-line flags and environment variables, turned into typed settings.
//!
//! Every setting is a flag and, where the original simulator had one, the same
//! environment variable; a `.env` file in the working directory is read first (see
//! `main.rs`). Defaults are the original's.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::store::RedisConfig;

#[derive(Debug, Parser)]
#[command(
    name = "superhero",
    version,
    about = "Streaming-data simulator and broker test bench: a bot-vs-bot superhero combat game"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Game store: `memory` (embedded, in process), `redis` (REDIS_HOST/PORT/DB) or a
    /// `redis://host:port/db` URL.
    #[arg(long, global = true, env = "SUPERHERO_STORE", default_value = "memory")]
    pub store: String,
    #[arg(long, global = true, env = "REDIS_HOST", default_value = "localhost")]
    pub redis_host: String,
    #[arg(long, global = true, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,
    #[arg(long, global = true, env = "REDIS_DB", default_value_t = 0)]
    pub redis_db: u32,
    /// Log filter for what is printed: DEBUG, INFO, WARNING, ERROR (or a tracing
    /// filter directive). Default INFO; WARNING for `simulate`, whose events go to the
    /// broker whatever is printed.
    #[arg(long, global = true, env = "LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Broker the game events are published to: memory://, redis://, redis-fanout://,
    /// redis-streams://, amqp://, kafka://, nsq://, nats:// (overrides LOGGER_MODULE).
    #[arg(long, global = true, env = "SUPERHERO_BROKER")]
    pub broker: Option<String>,
    /// The original's broker selector, also the first part of event names:
    /// default (print only), memory, redis, rabbit, kafka, nsq, nats.
    #[arg(long, global = true, env = "LOGGER_MODULE", default_value = "default")]
    pub logger_module: String,
    #[arg(long, global = true, env = "AMQP_HOST", default_value = "localhost")]
    pub amqp_host: String,
    #[arg(long, global = true, env = "AMQP_PORT", default_value_t = 5672)]
    pub amqp_port: u16,
    #[arg(long, global = true, env = "RABBIT_USER", default_value = "guest")]
    pub rabbit_user: String,
    #[arg(
        long,
        global = true,
        env = "RABBIT_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    pub rabbit_pass: String,
    /// NATS server for `LOGGER_MODULE=nats`.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = "nats://localhost:4222"
    )]
    pub nats_url: String,
    /// nsqd's TCP address for `LOGGER_MODULE=nsq`.
    #[arg(
        long,
        global = true,
        env = "NSQD_ADDRESS",
        default_value = "localhost:4150"
    )]
    pub nsqd_address: String,
    /// Kafka broker for `LOGGER_MODULE=kafka`.
    #[arg(long, global = true, env = "KAFKA_HOST", default_value = "localhost")]
    pub kafka_host: String,
    #[arg(long, global = true, env = "KAFKA_PORT", default_value_t = 9092)]
    pub kafka_port: u16,
    /// Partitions of the Kafka topics superhero creates: at most this many workers of
    /// a group are busy at once.
    #[arg(long, global = true, env = "KAFKA_PARTITIONS", default_value_t = 2)]
    pub kafka_partitions: i32,
    /// Send each Kafka message in a record batch of its own (slower): for brokers
    /// that cannot resume a group inside a batch, such as tansu 0.6's memory engine.
    #[arg(long, global = true, env = "KAFKA_SINGLE_MESSAGE_BATCHES")]
    pub kafka_single_message_batches: bool,
    /// Seconds a message held by a worker that died waits before another worker takes
    /// it (Redis Streams, NATS JetStream, NSQ). Keep it above --batch-seconds.
    #[arg(
        long,
        global = true,
        env = "SUPERHERO_CLAIM_AFTER",
        default_value_t = 30.0
    )]
    pub claim_after: f64,
    /// Root of the Parquet output.
    #[arg(long, global = true, env = "OUTPUT_DIR", default_value = "./data")]
    pub output_dir: PathBuf,
    /// Print the closing summary as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill the store's `superheros` hash with a roster.
    BuildDb(BuildDbArgs),
    /// Serve the game's WebSocket endpoints.
    Server(ServerArgs),
    /// Run bot players against a server.
    Player(PlayerArgs),
    /// Run ETL workers: consume game events, write the Parquet tables.
    Worker(WorkerArgs),
    /// Run the server, its bots and the ETL workers in one process.
    Simulate(SimulateArgs),
    /// Read the Parquet tables under a folder back and check them.
    Audit(AuditArgs),
    /// Redis fan-out middleware: each message of the pub/sub channel to one live worker,
    /// or, with --to, to another broker.
    Fanout(FanoutArgs),
    /// Measure the brokers side by side and report which suits the pipeline.
    Bench(BenchArgs),
    /// The video plays scenario: producers, a multi-threaded processor, live counts.
    Plays(PlaysArgs),
    /// Serve the live dashboard of a game pipeline running on a network broker.
    Dashboard(DashboardServeArgs),
}

#[derive(Debug, Args)]
pub struct RosterArgs {
    /// Import a file in the Super Hero API format instead of the synthetic roster.
    #[arg(long = "from", value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Heroes in the synthetic roster.
    #[arg(long, default_value_t = 732)]
    pub heroes: u32,
    /// Seed of the synthetic roster.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BuildDbArgs {
    #[command(flatten)]
    pub roster: RosterArgs,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to bind.
    #[arg(long, env = "WEBSOCKET_HOST", default_value = "localhost")]
    pub host: String,
    #[arg(long, env = "WEBSOCKET_PORT", default_value_t = 5678)]
    pub port: u16,
    #[command(flatten)]
    pub game: GameArgs,
    /// With the embedded store: the roster the server starts with.
    #[command(flatten)]
    pub roster: RosterArgs,
}

/// How the server runs games (`server` and `simulate`).
#[derive(Debug, Args)]
pub struct GameArgs {
    /// Seconds a lobby waits for its players before the game times out.
    #[arg(long, env = "LOBBY_TIMEOUT", default_value_t = 5.0)]
    pub lobby_timeout: f64,
    /// Seconds to pause before each turn, for a realistic pace.
    #[arg(long, env = "SERVER_SLEEP", default_value_t = 0.0)]
    pub server_sleep: f64,
    /// Attacks after which a game ends, survivors ranked by health (0: no cap).
    #[arg(long, env = "TURN_CAP", default_value_t = 1000)]
    pub turn_cap: u32,
}

#[derive(Debug, Args)]
pub struct PlayerArgs {
    /// Server to play on; give it several times to spread each bot's connections over
    /// several server instances (lobby on one, actions on the next).
    #[arg(long, env = "SUPERHERO_URL", value_delimiter = ',')]
    pub url: Vec<String>,
    #[arg(long, env = "WEBSOCKET_HOST", default_value = "localhost")]
    pub host: String,
    #[arg(long, env = "WEBSOCKET_PORT", default_value_t = 5678)]
    pub port: u16,
    /// Bots to run in this process.
    #[arg(long, default_value_t = 1)]
    pub bots: usize,
    /// Games each bot plays (-1: no limit).
    #[arg(
        long,
        env = "CLIENT_GAMES",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub games: i64,
    /// Seed of the bots' choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of the first bot's user name (`USER%03d`).
    #[arg(long, default_value_t = 0)]
    pub first_user: usize,
    /// These bots are the only players on the servers: leave a lobby at once when too
    /// few of them still play to fill it, instead of waiting out the lobby timeout.
    #[arg(long)]
    pub closed_world: bool,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Bots to run.
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
    #[command(flatten)]
    pub game: GameArgs,
    /// ETL workers consuming the game events.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Pace the run to about this many games per second (default: as fast as possible).
    #[arg(long, value_name = "GAMES_PER_S")]
    pub rate: Option<f64>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Seconds to wait for workers that make no progress at the end of the run
    /// before counting their games as missing.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub drain_timeout: f64,
    #[command(flatten)]
    pub etl: EtlArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// How workers write and clean.
#[derive(Debug, Args)]
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
    #[arg(long, default_value = crate::worker::GROUP)]
    pub group: String,
    #[command(flatten)]
    pub etl: EtlArgs,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The Redis pub/sub channel to fan out.
    #[arg(long, env = "WORKER_CHANNEL", default_value = "redis.lib.server.lobby")]
    pub channel: String,
    /// Bridge the channel into this broker (amqp://, nats://, redis-streams://, ...)
    /// instead of fanning out to Redis workers.
    #[arg(long, value_name = "BROKER_URL")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Brokers to measure, comma-separated: memory, redis, redis-fanout,
    /// redis-streams, rabbitmq, kafka, nats, nsq (at the addresses the broker
    /// variables give), or broker URLs [default: all eight names].
    #[arg(long, value_delimiter = ',')]
    pub brokers: Option<Vec<String>>,
    /// Workloads to run, comma-separated: raw (messages), game (the pipeline)
    /// [default: raw,game].
    #[arg(long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// A TOML workload file (brokers, workloads, [raw] and [game] settings); flags
    /// win over it.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Raw: messages in all [default: 100,000; 2,000 with --quick].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Raw: bytes per message, at least 16 (sequence number and send time) [default: 200].
    #[arg(long)]
    pub size: Option<usize>,
    /// Raw: producers [default: 1].
    #[arg(long)]
    pub producers: Option<usize>,
    /// Raw: consumers, in one group [default: 1].
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Raw: messages per second all producers aim at together [default: as fast as
    /// they can].
    #[arg(long, value_name = "MSG_PER_S")]
    pub rate: Option<f64>,
    /// Game: ETL workers [default: 3].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Game: bots [default: 100; 20 with --quick].
    #[arg(long)]
    pub bots: Option<usize>,
    /// Game: games each bot plays [default: 10; 5 with --quick].
    #[arg(long)]
    pub games: Option<u32>,
    /// Game: about this many games per second [default: as fast as the pipeline goes].
    #[arg(long, value_name = "GAMES_PER_S")]
    pub game_rate: Option<f64>,
    /// Small workloads: the whole report in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Folder for report.md, report.json and report.html.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// The original driver's options; its single-dash names (`-nt 4`) work too.
#[derive(Debug, Args)]
pub struct PlaysArgs {
    /// Consumer threads of the processor (-nt).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Play messages to produce (-nm).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Videos, with UUID ids (-nv).
    #[arg(long, default_value_t = 100)]
    pub videos: usize,
    /// Seconds between publications of videos at 100 plays and over (-ui).
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub update_interval: f64,
    /// Producers per consumer thread (-pcr).
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub pc_ratio: usize,
    /// Produce and consume at the same time, instead of enqueueing everything first.
    #[arg(short = 'r', long)]
    pub real_life: bool,
    /// Seed of the video ids and of which video each message plays.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seconds to wait for messages that do not come before counting them as lost.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub idle_timeout: f64,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

/// The live dashboard of a run.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Serve the live dashboard during the run (and after it, until Ctrl-C); its
    /// address is printed on stderr.
    #[arg(long)]
    pub dashboard: bool,
    /// Address the dashboard binds to (read-only; 0.0.0.0 exposes it).
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub dashboard_host: String,
    /// Port of the dashboard (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8765)]
    pub dashboard_port: u16,
}

/// `superhero dashboard`: watches the broker's queues as a group of its own.
#[derive(Debug, Args)]
pub struct DashboardServeArgs {
    /// Address to bind to (read-only; 0.0.0.0 exposes it).
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8765)]
    pub port: u16,
}

/// The original plays driver's single-dash option names, and ours.
const PLAYS_SHORT_NAMES: [(&str, &str); 5] = [
    ("-nt", "--threads"),
    ("-nm", "--messages"),
    ("-nv", "--videos"),
    ("-ui", "--update-interval"),
    ("-pcr", "--pc-ratio"),
];

/// Rewrites the original driver's `-nt 4`, `-nm=500` and the like after `plays` into
/// their long names, which clap can parse (its short options are one letter).
pub fn expand_plays_names(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(at) = args.iter().position(|a| a == "plays") else {
        return args;
    };
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            if i <= at {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            let (name, value) = match text.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (text, None),
            };
            match PLAYS_SHORT_NAMES.iter().find(|(short, _)| *short == name) {
                Some((_, long)) => match value {
                    Some(v) => format!("{long}={v}").into(),
                    None => (*long).into(),
                },
                None => arg,
            }
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The OUTPUT_DIR to audit (default: the global --output-dir).
    pub dir: Option<PathBuf>,
}

/// Which store to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    Memory,
    Redis(RedisConfig),
}

impl GlobalArgs {
    pub fn store_choice(&self) -> Result<StoreChoice, String> {
        match self.store.as_str() {
            "memory" | "memory://" => Ok(StoreChoice::Memory),
            "redis" => Ok(StoreChoice::Redis(RedisConfig::from_parts(
                &self.redis_host,
                self.redis_port,
                self.redis_db,
            ))),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(StoreChoice::Redis(RedisConfig {
                    url: url.to_string(),
                }))
            }
            other => Err(format!(
                "unknown store {:?}: use memory, redis or redis://host:port/db",
                redact_url(other)
            )),
        }
    }
}

/// Seconds from a flag, refusing negative or non-finite values.
pub fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{flag} must be a number of seconds ≥ 0, not {value}"))
}

/// A URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// The tracing filter for a LOG_LEVEL value; the original's Python level names work.
pub fn log_filter(level: &str) -> String {
    match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug".into(),
        "INFO" => "info".into(),
        "WARN" | "WARNING" => "warn".into(),
        "ERROR" | "CRITICAL" | "FATAL" => "error".into(),
        "TRACE" => "trace".into(),
        "OFF" | "NONE" => "off".into(),
        _ => level.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(store: &str, redis_host: &str, redis_port: u16, redis_db: u32) -> GlobalArgs {
        GlobalArgs {
            store: store.into(),
            redis_host: redis_host.into(),
            redis_port,
            redis_db,
            log_level: None,
            broker: None,
            logger_module: "default".into(),
            output_dir: "./data".into(),
            amqp_host: "localhost".into(),
            amqp_port: 5672,
            rabbit_user: "guest".into(),
            rabbit_pass: "guest".into(),
            nats_url: "nats://localhost:4222".into(),
            nsqd_address: "localhost:4150".into(),
            kafka_host: "localhost".into(),
            kafka_port: 9092,
            kafka_partitions: 2,
            kafka_single_message_batches: false,
            claim_after: 30.0,
            json: false,
        }
    }

    #[test]
    fn the_original_plays_options_parse() {
        let args = [
            "superhero",
            "--json",
            "plays",
            "-nt",
            "4",
            "-nm=500",
            "-pcr",
            "2",
            "-r",
        ]
        .map(std::ffi::OsString::from)
        .to_vec();
        let cli = Cli::try_parse_from(expand_plays_names(args)).unwrap();
        let Command::Plays(p) = cli.command else {
            panic!("not plays: {:?}", cli.command);
        };
        assert_eq!((p.threads, p.messages, p.pc_ratio), (4, 500, 2));
        assert!(p.real_life);
        assert_eq!((p.videos, p.update_interval), (100, 30.0));
        // Elsewhere the names mean nothing special.
        let args = ["superhero", "simulate", "-nt"]
            .map(std::ffi::OsString::from)
            .to_vec();
        assert_eq!(expand_plays_names(args.clone()), args);
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672"),
            "amqp://guest:***@127.0.0.1:5672"
        );
        assert_eq!(redact_url("redis://h:6379/2"), "redis://h:6379/2");
        let bad = global("postgres://u:pw@h/db", "h", 1, 0);
        let err = bad.store_choice().unwrap_err();
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn store_choices() {
        let mut g = global("redis", "db.local", 6380, 3);
        assert_eq!(
            g.store_choice(),
            Ok(StoreChoice::Redis(RedisConfig {
                url: "redis://db.local:6380/3".into()
            }))
        );
        g.store = "memory".into();
        assert_eq!(g.store_choice(), Ok(StoreChoice::Memory));
    }

    #[test]
    fn python_level_names() {
        assert_eq!(log_filter("WARNING"), "warn");
        assert_eq!(log_filter("info"), "info");
        assert_eq!(log_filter("superhero=debug"), "superhero=debug");
    }

    #[test]
    fn seconds_refuses_nonsense() {
        assert_eq!(seconds(0.5, "--x"), Ok(Duration::from_millis(500)));
        assert!(seconds(-1.0, "--x").is_err());
        assert!(seconds(f64::NAN, "--x").is_err());
    }
}
