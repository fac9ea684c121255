//! The command line: flags and environment variables (a `.env` file is read first, as
//! in the original), turned into the library's typed settings.
//!
//! [`Cli`] is the whole command line: the options every command shares
//! ([`GlobalArgs`]: store, broker, output) and one [`Command`]. Each command is one
//! file holding its flags, the conversion of its flags into settings (every check
//! beside the setting it checks) and its `run`, which calls into the library and
//! prints the summary. Defaults are the original's.

pub mod audit;
pub mod bench;
pub mod build_db;
pub mod dashboard;
pub mod fanout;
pub mod global;
pub mod metrics;
pub mod player;
pub mod plays;
pub mod server;
pub mod simulate;
pub mod worker;

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::events::{EventLayer, EventSink, Queue};

pub use self::global::GlobalArgs;

// The whole command line (a doc comment here would become the long help).
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

impl Cli {
    /// Parses the process's arguments, with the original plays driver's option
    /// names ([`plays::expand_names`]).
    pub fn from_args() -> Self {
        Self::parse_from(plays::expand_names(std::env::args_os().collect()))
    }
}

// The commands; each variant's doc comment is its line in `--help`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill the store's `superheros` hash with a roster.
    BuildDb(build_db::BuildDbArgs),
    /// Serve the game's WebSocket endpoints.
    Server(server::ServerArgs),
    /// Run bot players against a server.
    Player(player::PlayerArgs),
    /// Run ETL workers: consume game events, write the Parquet tables.
    Worker(worker::WorkerArgs),
    /// Run the server, its bots and the ETL workers in one process.
    Simulate(simulate::SimulateArgs),
    /// Read the Parquet tables under a folder back and check them.
    Audit(audit::AuditArgs),
    /// Redis fan-out middleware: each message of the pub/sub channel to one live worker,
    /// or, with --to, to another broker.
    Fanout(fanout::FanoutArgs),
    /// Measure the brokers side by side and report which suits the pipeline.
    Bench(bench::BenchArgs),
    /// The consumer process `superhero bench` kills in its faults workload.
    #[command(hide = true)]
    BenchConsumer(bench::ConsumerArgs),
    /// The video plays scenario: producers, a multi-threaded processor, live counts.
    Plays(plays::PlaysArgs),
    /// Serve the live dashboard of a game pipeline running on a network broker.
    Dashboard(dashboard::DashboardServeArgs),
}

impl Command {
    /// What is printed unless LOG_LEVEL says otherwise: whole runs in one process
    /// would drown their report in the game's records.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Self::Simulate(_) | Self::Bench(_) | Self::BenchConsumer(_) | Self::Plays(_) => {
                "WARNING"
            }
            _ => "INFO",
        }
    }

    /// Commands whose stdout is a report log to stderr.
    pub fn logs_to_stderr(&self) -> bool {
        matches!(
            self,
            Self::Bench(_) | Self::BenchConsumer(_) | Self::Plays(_)
        )
    }
}

/// The sink the event layer of this process feeds.
pub fn events_sink() -> &'static Arc<EventSink> {
    static SINK: OnceLock<Arc<EventSink>> = OnceLock::new();
    SINK.get_or_init(EventSink::new)
}

/// Prints records at `level` to stdout (stderr with `to_stderr`), and hands every
/// queue record to the event transport whatever the level says (events are data,
/// not chatter).
pub fn init_logging(level: &str, to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(level))
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
    // Queue records are INFO: saying so lets every DEBUG and TRACE call site, and every
    // `log` record of a dependency below INFO, be skipped where it stands instead of
    // reaching the subscriber (a few frames' worth of CPU on each WebSocket message).
    let events = EventLayer::new(events_sink().clone()).with_filter(
        tracing_subscriber::filter::filter_fn(|m| Queue::from_target(m.target()).is_some())
            .with_max_level_hint(tracing::Level::INFO),
    );
    tracing_subscriber::registry()
        .with(print)
        .with(events)
        .init();
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

/// The longest time a flag takes, in seconds: ten years, beyond any run, and far
/// from where a deadline that far ahead would overflow the clock.
pub const MAX_SECONDS: u64 = 315_360_000;
/// The lowest rate a flag takes, per second: one every 1,000 s.
pub const MIN_RATE: f64 = 0.001;

/// Seconds from a flag, refusing negative, non-finite and too large values.
pub fn seconds(value: f64, flag: &str) -> Result<Duration> {
    if !(0.0..=MAX_SECONDS as f64).contains(&value) {
        bail!(
            "{flag} must be a number of seconds from 0 to {MAX_SECONDS} (ten years), not {value}"
        );
    }
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow!("{flag} must be a number of seconds ≥ 0, not {value}"))
}

/// Refuses to start `bots` bots (and their server, when it runs in this process)
/// that the open-file limit cannot hold, saying so with the numbers, instead of
/// failing bot by bot.
pub fn check_bots_fit(bots: usize, with_server: bool) -> Result<()> {
    match crate::net::raise_file_limit() {
        Ok(limit) => {
            crate::net::bots_fit(bots as u64, with_server, limit).map_err(|why| anyhow!(why))
        }
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            Ok(())
        }
    }
}

/// A rate from a flag, refusing what is not a number from [`MIN_RATE`] up.
pub fn rate(value: f64, flag: &str, what: &str) -> Result<f64> {
    if value.is_finite() && value >= MIN_RATE {
        Ok(value)
    } else {
        bail!("{flag} must be a number of {what} per second, at least {MIN_RATE}, not {value}")
    }
}

/// The signals that ask the process to stop: Ctrl-C (SIGINT) and SIGTERM, which
/// service managers and container runtimes send. Caught from the moment this is
/// made, so that a command made ready (its address printed) already drains on them.
pub struct StopSignals {
    #[cfg(unix)]
    caught: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    /// Catches them from now on.
    pub fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Self {
                    caught: Some((int, term)),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("stop signals cannot be caught ({e}): only Ctrl-C works");
                    Self { caught: None }
                }
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next one; its name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.caught {
            return tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Stop requests followed while a run lasts: the first (see [`StopSignals`]) says
/// the run should stop taking new work and drain; the second ends the process at
/// once, with status 130. Dropping it stops following them.
pub struct StopRequests {
    stopping: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl StopRequests {
    /// Follows stop requests from now on; `draining` says what the first one does.
    pub fn follow(draining: &'static str) -> Self {
        let mut signals = StopSignals::catch();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let signal = signals.next().await;
            eprintln!("{signal}: {draining} (send it again to quit at once)");
            stop.send_replace(true);
            let again = signals.next().await;
            eprintln!("{again} again: quitting without draining");
            std::process::exit(130);
        });
        Self { stopping, task }
    }

    /// True once the first request came.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// Done at the first request; it borrows nothing, so a server may hold it.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.watch();
        async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }
}

impl Drop for StopRequests {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Prints a summary as a two-column table, or as one JSON object.
pub fn print_summary<T: Serialize>(summary: &T, json: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn python_level_names() {
        assert_eq!(log_filter("WARNING"), "warn");
        assert_eq!(log_filter("info"), "info");
        assert_eq!(log_filter("superhero=debug"), "superhero=debug");
    }

    #[test]
    fn seconds_refuses_nonsense() {
        assert_eq!(seconds(0.5, "--x").unwrap(), Duration::from_millis(500));
        assert!(seconds(-1.0, "--x").is_err());
        assert!(seconds(f64::NAN, "--x").is_err());
        assert!(seconds(1e30, "--x").is_err());
        assert!(seconds(f64::INFINITY, "--x").is_err());
        assert_eq!(
            seconds(MAX_SECONDS as f64, "--x").unwrap(),
            Duration::from_secs(MAX_SECONDS)
        );
    }

    #[test]
    fn rates_refuse_nonsense() {
        assert_eq!(rate(2.5, "--rate", "games").unwrap(), 2.5);
        for bad in [0.0, -1.0, 1e-300, f64::NAN, f64::INFINITY] {
            assert!(rate(bad, "--rate", "games").is_err(), "{bad}");
        }
    }

    /// `--help` of a command: its own options first, then the groups.
    #[test]
    fn help_lists_the_command_s_own_options_first() {
        let mut cli = Cli::command();
        // Global options reach the subcommands when the command is built.
        cli.build();
        let help = cli
            .find_subcommand_mut("simulate")
            .expect("simulate")
            .render_help()
            .to_string();
        let at = |text: &str| {
            help.find(text)
                .unwrap_or_else(|| panic!("{text:?} not in:\n{help}"))
        };
        assert!(at("--bots") < at("Game:"), "{help}");
        assert!(at("Game:") < at("--lobby-timeout"), "{help}");
        assert!(at("--batch-games") < at("Broker:"), "{help}");
        assert!(at("Broker:") < at("--amqp-port"), "{help}");
        assert!(at("Store:") < at("--redis-host"), "{help}");
    }
}
