//! The referee: makes every game end, whatever its players do.
//!
//! Each server runs one referee task per game it has seen a `find` or a lobby for (a
//! find the store failed to answer included: the game may exist all the same). The
//! referee follows the game's signals and acts at its deadlines. It backs the lobbies
//! up: a game still in its lobby twice LOBBY_TIMEOUT after its last join (so no lobby
//! session timed it out, as no one waits in one) is timed out if it is not full, and
//! started if it is (whoever did not come then forfeits at their turn). A player who has not acted TURN_TIMEOUT after
//! their turn was announced forfeits. When the game is over it logs `Cleaning Game
//! Records` for every participant whose record no lobby has logged yet, so a game
//! whose players are gone is still written and cleaned.
//!
//! Several servers may referee the same game: every action is a compare-and-set in
//! the store, so exactly one of them succeeds and the others see it in the signals.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::App;
use super::handlers::{cleaning_records, store_error};
use crate::events::{self, GameUserTask, Queue};
use crate::game::protocol::timestamp_now;
use crate::game::rules::ForfeitReason;
use crate::game::{GameStatus, GameToken, UserToken};
use crate::store::{ClaimId, GameStore, Signal, StoreError};
use crate::timer::LazyTimer;

/// How long a referee waits before trying again when the store failed.
const RETRY: Duration = Duration::from_secs(1);
/// How many times a referee or a lobby tries to log a finished game's cleaning
/// records while the store is down before it gives up, saying so.
const CLEAN_UP_ATTEMPTS: u32 = 60;
/// How many times a referee tries to watch its game while the store is down before
/// it gives up, saying so.
const WATCH_ATTEMPTS: u32 = 60;

/// Starts a referee for `game` on this server unless one already runs.
pub(super) fn ensure<S: GameStore>(app: &Arc<App<S>>, game: &GameToken) {
    {
        let mut refereed = app.refereed.lock().unwrap_or_else(|e| e.into_inner());
        if !refereed.insert(game.clone()) {
            return;
        }
    }
    let app = app.clone();
    let game = game.clone();
    tokio::spawn(async move {
        referee(&app, &game).await;
        let mut refereed = app.refereed.lock().unwrap_or_else(|e| e.into_inner());
        refereed.remove(&game);
    });
}

/// The turn whose deadline runs: who must act, and since when.
struct Turn {
    turns: u32,
    user: UserToken,
    deadline: Option<Instant>,
}

async fn referee<S: GameStore>(app: &App<S>, game: &GameToken) {
    let mut attempts = 0;
    let mut watch = loop {
        match app.store.watch(game).await {
            Ok(w) => break w,
            Err(StoreError::UnknownGame) => return,
            Err(e @ StoreError::Unavailable(_)) if attempts < WATCH_ATTEMPTS => {
                tracing::debug!("game {game}: {e}; watching again in {RETRY:?}");
                attempts += 1;
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => {
                store_error(e);
                return;
            }
        }
    };
    let backstop = app.settings.lobby_timeout.saturating_mul(2);
    let mut lobby_deadline = None;
    let mut joined = None;
    let mut turn: Option<Turn> = None;
    let mut timer = LazyTimer::default();
    loop {
        let signal = watch.latest();
        if signal.status.is_open() && joined != Some(signal.joined) {
            joined = Some(signal.joined);
            lobby_deadline = Instant::now().checked_add(backstop);
        }
        let deadline = match signal.status {
            GameStatus::Completed | GameStatus::TimedOut => {
                clean_up(app, game).await;
                return;
            }
            GameStatus::Initializing | GameStatus::WaitingLobby => lobby_deadline,
            GameStatus::Starting => None,
            GameStatus::InProgress => turn_deadline(app, &signal, &mut turn),
        };
        tokio::select! {
            changed = watch.changed() => if changed.is_err() {
                return;
            },
            () = timer.until_some(deadline) => {
                let acted = match signal.status {
                    GameStatus::InProgress => time_out_turn(app, game, &signal).await,
                    _ => close_lobby(app, game).await,
                };
                // An action the game refused because it moved on means a signal went
                // missing (a store failover drops those in flight): read the game
                // again. Until a new turn is heard, this one is looked at again after
                // RETRY.
                if acted.is_ok()
                    && let Err(e) = app.store.reread(game).await
                {
                    store_error(e);
                }
                let retry = Instant::now().checked_add(RETRY);
                match (signal.status, acted) {
                    (GameStatus::InProgress, _) => {
                        if let Some(t) = turn.as_mut() {
                            t.deadline = retry;
                        }
                    }
                    (_, Ok(())) => lobby_deadline = None,
                    (_, Err(())) => lobby_deadline = retry,
                }
            }
        }
    }
}

/// The deadline of the turn `signal` announces, kept while the same player's turn
/// lasts (a forfeit of someone else does not give them more time).
fn turn_deadline<S>(app: &App<S>, signal: &Signal, turn: &mut Option<Turn>) -> Option<Instant> {
    if app.settings.turn_timeout.is_zero() {
        return None;
    }
    let user = signal.current.as_ref()?;
    let same = turn
        .as_ref()
        .is_some_and(|t| t.turns == signal.turns && t.user == *user);
    if !same {
        // The turn is announced after SERVER_SLEEP; the player's time starts then.
        let allowed = app
            .settings
            .server_sleep
            .saturating_add(app.settings.turn_timeout);
        *turn = Some(Turn {
            turns: signal.turns,
            user: user.clone(),
            deadline: Instant::now().checked_add(allowed),
        });
    }
    turn.as_ref().and_then(|t| t.deadline)
}

/// The player whose turn `signal` announced did not act in time: they forfeit,
/// unless they acted meanwhile. `Err` when the store could not be asked.
async fn time_out_turn<S: GameStore>(
    app: &App<S>,
    game: &GameToken,
    signal: &Signal,
) -> Result<(), ()> {
    let Some(user) = &signal.current else {
        return Ok(());
    };
    forfeit(
        app,
        game,
        user,
        ForfeitReason::TurnTimeout,
        Some(signal.turn()),
    )
    .await
}

/// Eliminates a player who is out of time or gone, and logs it. A refusal by the
/// rules (they acted, or are already out) is not a failure: the game moved on.
pub(super) async fn forfeit<S: GameStore>(
    app: &App<S>,
    game: &GameToken,
    user: &UserToken,
    reason: ForfeitReason,
    turn: Option<(u32, u32)>,
) -> Result<(), ()> {
    match app
        .store
        .forfeit(game, user, reason, turn, timestamp_now().as_str())
        .await
    {
        Ok(forfeited) => {
            events::emit(Queue::Game, "Player Forfeited", &forfeited.record);
            if let Some(finish) = &forfeited.forfeit.finish {
                super::count_finish(finish);
            }
            Ok(())
        }
        Err(StoreError::Rule(_) | StoreError::UnknownGame) => Ok(()),
        Err(e) => {
            store_error(e);
            Err(())
        }
    }
}

/// The lobby deadline passed: a full game starts, any other times out.
async fn close_lobby<S: GameStore>(app: &App<S>, game: &GameToken) -> Result<(), ()> {
    match app.store.time_out(game).await {
        Ok(timed_out) => super::count_timed_out(timed_out),
        Err(e) => {
            store_error(e);
            return Err(());
        }
    }
    start(app, game).await
}

/// Starts a full game still in its lobby; several lobbies and referees may try, one
/// succeeds and logs `Game Started`.
pub(super) async fn start<S: GameStore>(app: &App<S>, game: &GameToken) -> Result<(), ()> {
    match app.store.start(game).await {
        Ok(Some(started)) => {
            metrics::counter!(crate::telemetry::names::GAMES_STARTED).increment(1);
            events::emit_task(
                Queue::Lobby,
                "Game Started",
                &GameUserTask {
                    game_token: game.as_str(),
                    user_token: started.host.as_str(),
                },
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            store_error(e);
            Err(())
        }
    }
}

/// The game is over: its cleaning records for every participant no lobby logged
/// yet, the host's first (the one a worker writes the game on), claimed in one store
/// call, retried while the store is down (see [`claim_retried`]), so a game is not
/// left unwritten for a passing outage.
async fn clean_up<S: GameStore>(app: &App<S>, game: &GameToken) {
    let lost = || "its cleaning records were not logged".to_string();
    let claimed = claim_retried(game, lost, |claim| async move {
        app.store.claim_cleanings(game, &claim).await
    })
    .await;
    for user in claimed.iter().flatten() {
        cleaning_records(game, user);
    }
}

/// Runs a claim of `game`'s cleaning records for one fresh [`ClaimId`], tried again
/// every [`RETRY`] while the store is unavailable, [`CLEAN_UP_ATTEMPTS`] times at
/// most. Every try claims for the same id, so a try that took effect though its
/// answer was lost leaves its claims to the next. `None` when it failed: the error
/// is reported, and, when the store stayed down, what was not done (`lost`).
pub(super) async fn claim_retried<T, F>(
    game: &GameToken,
    lost: impl FnOnce() -> String,
    mut claim: impl FnMut(ClaimId) -> F,
) -> Option<T>
where
    F: Future<Output = Result<T, StoreError>>,
{
    let id = ClaimId::new_random();
    for _ in 0..CLEAN_UP_ATTEMPTS {
        match claim(id.clone()).await {
            Ok(claimed) => return Some(claimed),
            Err(e @ StoreError::Unavailable(_)) => {
                store_error(e);
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => {
                store_error(e);
                return None;
            }
        }
    }
    tracing::error!("game {game}: the store stayed down; {}", lost());
    None
}
