//! `superhero server`: the game's WebSocket endpoints, publishing every queue record
//! to a network broker when one is configured.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::build_db::RosterArgs;
use super::metrics::MetricsArgs;
use super::{GlobalArgs, StopRequests, events_sink, seconds};
use crate::events::EventPipe;
use crate::events::transport::DEFAULT_BUFFER;
use crate::game::protocol::MAX_REQUEST_BYTES;
use crate::net::ConnectionLimits;
use crate::server::{self, MAX_MESSAGE_BYTES, ServerSettings};
use crate::store::{AnyStore, GameStore};

/// How long a broker that is down gets, once the server stops, to take the buffered
/// events.
const PUBLISH_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to bind.
    #[arg(long, env = "WEBSOCKET_HOST", default_value = "localhost")]
    pub host: String,
    #[arg(long, env = "WEBSOCKET_PORT", default_value_t = 5678)]
    pub port: u16,
    #[command(flatten)]
    pub game: GameArgs,
    /// Seconds the server, asked to stop (Ctrl-C, SIGTERM), goes on serving the games
    /// it has while it refuses new ones; then it stops anyway.
    #[arg(long, env = "STOP_TIMEOUT", default_value_t = 30.0)]
    pub stop_timeout: f64,
    /// With the embedded store: the roster the server starts with.
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// How the server runs games (`server` and `simulate`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Game")]
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
    /// Seconds a player has to act once its turn is announced; a player who lets
    /// it pass forfeits, and the game goes on (0: wait for ever).
    #[arg(long, env = "TURN_TIMEOUT", default_value_t = 5.0)]
    pub turn_timeout: f64,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// The bounds that protect a server from its clients (`server`, `simulate`,
/// `dashboard`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionArgs {
    /// Open connections a server holds at most; more are answered 503.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Open connections from one address at most (0: no limit of its own).
    #[arg(long, env = "MAX_CONNECTIONS_PER_PEER", default_value_t = 0)]
    pub max_connections_per_peer: usize,
    /// Seconds a client has to send a request's headers (the WebSocket handshake, or
    /// the next request of a kept-alive connection).
    #[arg(long, env = "HEADER_TIMEOUT", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a WebSocket outside a lobby may stay silent before it is closed
    /// (0: never).
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Seconds between pings on a lobby connection; one that answers nothing between
    /// two pings is closed (0: no pings).
    #[arg(long, env = "PING_INTERVAL", default_value_t = 20.0)]
    pub ping_interval: f64,
    /// Largest WebSocket message read, in bytes; larger ones close the connection with
    /// code 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

impl TryFrom<&ConnectionArgs> for ConnectionLimits {
    type Error = anyhow::Error;

    fn try_from(c: &ConnectionArgs) -> Result<Self> {
        if c.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        let header_timeout = seconds(c.header_timeout, "--header-timeout")?;
        if header_timeout.is_zero() {
            anyhow::bail!("--header-timeout must be more than 0 seconds");
        }
        Ok(Self {
            max_connections: c.max_connections,
            max_per_peer: c.max_connections_per_peer,
            header_timeout,
        })
    }
}

impl TryFrom<&GameArgs> for ServerSettings {
    type Error = anyhow::Error;

    fn try_from(game: &GameArgs) -> Result<Self> {
        Ok(Self {
            lobby_timeout: seconds(game.lobby_timeout, "--lobby-timeout")?,
            server_sleep: seconds(game.server_sleep, "--server-sleep")?,
            turn_cap: game.turn_cap,
            turn_timeout: seconds(game.turn_timeout, "--turn-timeout")?,
            limits: ConnectionLimits::try_from(&game.connections)?,
            idle_timeout: seconds(game.connections.idle_timeout, "--idle-timeout")?,
            ping_interval: seconds(game.connections.ping_interval, "--ping-interval")?,
            max_message_bytes: message_limit(game.connections.max_message_bytes)?,
            ..Self::default()
        })
    }
}

/// A message limit that lets every request through and stays bounded.
fn message_limit(bytes: usize) -> Result<usize> {
    const MOST: usize = 64 * 1024 * 1024;
    if (MAX_REQUEST_BYTES..=MOST).contains(&bytes) {
        Ok(bytes)
    } else {
        anyhow::bail!(
            "--max-message-bytes must be from {MAX_REQUEST_BYTES} (the request limit) to {MOST}, not {bytes}"
        )
    }
}

/// Runs `superhero server`; the exit code says whether it went cleanly.
pub async fn run(args: &ServerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = ServerSettings {
        stop_timeout: seconds(args.stop_timeout, "--stop-timeout")?,
        ..ServerSettings::try_from(&args.game)?
    };
    let metrics = args.metrics.start().await?;
    let store = g.open_store().await?;
    metrics.store(&store);
    let pipe = match g.network_broker("server").await? {
        Some(b) => {
            metrics.broker("broker", &b);
            metrics.events();
            Some(EventPipe::for_broker(events_sink(), &*b, DEFAULT_BUFFER).await?)
        }
        None => None,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let listener = crate::net::bind(addr.as_str())
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // Caught before the address is printed: a server that says it listens drains.
    let stop = StopRequests::follow("refusing new games while the running ones end");
    if let AnyStore::Memory(_) = store {
        let heroes = args.roster.load()?;
        store.replace_roster(&heroes).await?;
        println!(
            "superhero server listening on ws://{local} (embedded store, {} heroes)",
            heroes.len()
        );
    } else {
        let heroes = store.roster().await?.len();
        if heroes == 0 {
            tracing::warn!(
                "the superheros hash is empty: run `superhero build-db --store redis` first"
            );
        }
        println!("superhero server listening on ws://{local} (Redis store, {heroes} heroes)");
    }
    server::serve(listener, store, settings, stop.requested()).await?;
    if let Some(pipe) = pipe {
        let stats = pipe.finish(PUBLISH_GRACE).await;
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
