//! `superhero simulate`: the game server and its bots in one process, on the embedded
//! store by default or on Redis, with one summary at the end.

use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::player::{self, PlayerSettings};
use crate::roster;
use crate::server::{self, ServerSettings};
use crate::store::{GameStore, StoreError};

/// What a simulation runs.
#[derive(Clone, Debug)]
pub struct SimulateSettings {
    pub bots: usize,
    pub games: i64,
    pub seed: u64,
    /// Heroes of the synthetic roster used when the store has none.
    pub heroes: u32,
    pub server: ServerSettings,
}

/// The closing summary (the `simulate --json` fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulateSummary {
    pub bots: usize,
    pub games_completed: u64,
    pub games_timed_out: u64,
    pub bot_errors: u64,
    pub lobbies_abandoned: u64,
    pub games_skipped: u64,
    pub elapsed_s: f64,
    pub games_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open a local port for the game server: {0}")]
    Bind(std::io::Error),
}

/// Runs the simulation to its end. A store without heroes gets the synthetic roster.
pub async fn run<S: GameStore>(
    store: S,
    settings: SimulateSettings,
) -> Result<SimulateSummary, SimulateError> {
    if store.roster().await?.is_empty() {
        store
            .replace_roster(&roster::synthetic(settings.heroes, settings.seed))
            .await?;
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(SimulateError::Bind)?;
    let addr = listener.local_addr().map_err(SimulateError::Bind)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        store,
        settings.server.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let summary = player::run(PlayerSettings {
        urls: vec![format!("ws://{addr}")],
        bots: settings.bots,
        games: settings.games,
        seed: settings.seed,
        first_user: 0,
        idle_timeout: Duration::from_secs(60),
        closed_world: true,
    })
    .await;

    let _ = stop.send(());
    if let Err(e) = server.await {
        tracing::warn!("the game server task ended badly: {e}");
    }
    Ok(SimulateSummary {
        bots: summary.bots,
        games_completed: summary.games_completed,
        games_timed_out: summary.games_timed_out,
        bot_errors: summary.bot_errors,
        lobbies_abandoned: summary.lobbies_abandoned,
        games_skipped: summary.games_skipped,
        elapsed_s: summary.elapsed_s,
        games_per_s: summary.games_per_s,
    })
}
