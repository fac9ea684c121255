//! `superhero server`: the game's WebSocket endpoints, publishing every queue record
//! to a network broker when one is configured.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;

use super::build_db::RosterArgs;
use super::{GlobalArgs, events_sink, seconds};
use crate::events::EventPipe;
use crate::events::transport::DEFAULT_BUFFER;
use crate::server::{self, ServerSettings};
use crate::store::{AnyStore, GameStore};

/// How long a broker that is down gets, at Ctrl-C, to take the buffered events.
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
    /// With the embedded store: the roster the server starts with.
    #[command(flatten)]
    pub roster: RosterArgs,
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
}

impl TryFrom<&GameArgs> for ServerSettings {
    type Error = anyhow::Error;

    fn try_from(game: &GameArgs) -> Result<Self> {
        Ok(Self {
            lobby_timeout: seconds(game.lobby_timeout, "--lobby-timeout")?,
            server_sleep: seconds(game.server_sleep, "--server-sleep")?,
            turn_cap: game.turn_cap,
            turn_timeout: seconds(game.turn_timeout, "--turn-timeout")?,
        })
    }
}

/// Runs `superhero server`; the exit code says whether it went cleanly.
pub async fn run(args: &ServerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = ServerSettings::try_from(&args.game)?;
    let store = g.open_store().await?;
    let pipe = match g.network_broker("server").await? {
        Some(b) => Some(EventPipe::for_broker(events_sink(), &*b, DEFAULT_BUFFER).await?),
        None => None,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    if let AnyStore::Memory(_) = store {
        let heroes = args.roster.load()?;
        store.replace_roster(&heroes).await?;
        tracing::info!(
            "serving on ws://{local} with the embedded store ({} heroes)",
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
    server::serve(listener, store, settings, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
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
