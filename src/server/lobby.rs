//! The lobby session: from `/api/v1/game/lobby` until the game is over for this
//! player. It waits for the players, starts the game, announces each of the player's
//! turns exactly once, and ends with COMPLETE or TIMED OUT. One lobby per player and
//! game is open at a time, on any server; a player whose lobby closes while the game
//! runs forfeits. Deadlines that must hold with no lobby open are the referee's
//! (`referee.rs`).
//!
//! It is driven by the game's signals, not by polling: every change to a game raises
//! a signal (see [`crate::store::Signal`]), and this session reacts to the latest one.
//! That works across server instances too, since signals travel through the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, close_code};
use tokio::time::{Instant, sleep};

use super::handlers::{cleaning_records, store_error};
use super::{App, ConnectionTimers, Endpoint, Flow, InPlay, close, next_request, referee, send};
use crate::game::protocol::{
    GAME_COMPLETE, GAME_START, GAME_TIMED_OUT, GAME_TURN, GameStatusField, GameUser, HeroView,
    LobbyReply, ProtocolError, StartPayload, StartReply, to_frame,
};
use crate::game::rules::{ForfeitReason, RuleError};
use crate::game::{GameStatus, GameToken, UserToken};
use crate::store::{GameStore, LobbyEntry, Signal, SignalWatch};

/// Runs one lobby request to its end.
pub(super) async fn session<S: GameStore>(
    socket: &mut WebSocket,
    app: &Arc<App<S>>,
    text: &str,
    heard: &mut Instant,
    timers: &mut ConnectionTimers,
) -> Flow {
    let (req, participants, watch) = match enter(app, text).await {
        Ok(entered) => entered,
        Err(e) => {
            super::count_request(Endpoint::Lobby, Err(&e));
            return send(socket, e.to_frame()).await;
        }
    };
    super::count_request(Endpoint::Lobby, Ok(()));
    referee::ensure(app, &req.game_token);
    // Counted in play before it is no longer expected, so that a stopping server
    // never sees the player in neither.
    let in_play = InPlay::enter(&app.in_play);
    app.expected.joined(&req.game_token, &req.user_token);
    let mut lobby = Lobby {
        app,
        game: req.game_token.clone(),
        user: req.user_token.clone(),
        participants,
        watch,
        // A timeout too long for the clock is no timeout.
        deadline: Instant::now().checked_add(app.settings.lobby_timeout),
        started: false,
        last_turn: None,
        heard,
        pinged: None,
        timers,
        closed: false,
    };
    let flow = lobby.run(socket).await;
    drop(in_play);
    if !lobby.closed {
        leave(app, &req).await;
    }
    flow
}

/// What a lobby request gets before its session starts: an error frame, or nothing
/// when a session would start (see [`super::Answerer`]).
pub(super) async fn check<S: GameStore>(app: &App<S>, text: &str) -> Option<String> {
    match enter(app, text).await {
        Ok((req, _, _)) => {
            leave(app, &req).await;
            None
        }
        Err(e) => Some(e.to_frame()),
    }
}

/// Reads a lobby request and opens the player's lobby (see [`open`]).
async fn enter<S: GameStore>(
    app: &App<S>,
    text: &str,
) -> Result<(GameUser, u8, SignalWatch), ProtocolError> {
    let req = GameUser::parse(text)?;
    let (participants, watch) = open(app, &req).await?;
    Ok((req, participants, watch))
}

/// Marks the player's lobby closed again.
async fn leave<S: GameStore>(app: &App<S>, req: &GameUser) {
    if let Err(e) = app
        .store
        .leave_lobby(&req.game_token, &req.user_token)
        .await
    {
        store_error(e);
    }
}

/// Checks that the game exists, the user plays in it and has no other lobby open for
/// it (one store call), and subscribes to it.
async fn open<S: GameStore>(
    app: &App<S>,
    req: &GameUser,
) -> Result<(u8, SignalWatch), ProtocolError> {
    let entry = app
        .store
        .enter_lobby(&req.game_token, &req.user_token)
        .await
        .map_err(store_error)?;
    let participants = match entry {
        LobbyEntry::Entered { participants } => participants,
        LobbyEntry::AlreadyOpen => return Err(ProtocolError::LobbyTaken),
        LobbyEntry::NotInGame => return Err(ProtocolError::Rule(RuleError::NotInGame)),
    };
    match app.store.watch_for(&req.game_token, &req.user_token).await {
        Ok(watch) => Ok((participants, watch)),
        Err(e) => {
            // No session follows: the lobby must not stay marked open.
            leave(app, req).await;
            Err(store_error(e))
        }
    }
}

struct Lobby<'a, S> {
    app: &'a App<S>,
    game: GameToken,
    user: UserToken,
    participants: u8,
    watch: SignalWatch,
    /// When the lobby gives up waiting for players; `None` once it tried.
    deadline: Option<Instant>,
    started: bool,
    /// The turn number of the last USER'S TURN sent, so each turn is announced once.
    last_turn: Option<u32>,
    /// When the client last sent anything.
    heard: &'a mut Instant,
    /// When the last ping went out.
    pinged: Option<Instant>,
    /// The connection's timers, for the next ping and the deadline.
    timers: &'a mut ConnectionTimers,
    /// Whether the lobby was marked closed in the store already.
    closed: bool,
}

/// What woke the session up.
enum Wake {
    Signal,
    Deadline,
    Closed,
    Request,
    Ping,
}

impl<S: GameStore> Lobby<'_, S> {
    async fn run(&mut self, socket: &mut WebSocket) -> Flow {
        loop {
            let signal = self.watch.latest();
            match signal.status {
                GameStatus::Completed => return self.finish(socket, GAME_COMPLETE).await,
                GameStatus::TimedOut => return self.finish(socket, GAME_TIMED_OUT).await,
                GameStatus::Starting | GameStatus::InProgress => {
                    if let Flow::Close = self.announce(socket, &signal).await {
                        return Flow::Close;
                    }
                }
                GameStatus::Initializing | GameStatus::WaitingLobby => {
                    if signal.joined >= u32::from(self.participants) {
                        self.start().await;
                    }
                }
            }
            match self.wait(socket, &signal).await {
                Wake::Signal => {}
                Wake::Closed => {
                    self.left().await;
                    return Flow::Close;
                }
                Wake::Deadline => {
                    self.deadline = None;
                    match self.app.store.time_out(&self.game).await {
                        Ok(timed_out) => super::count_timed_out(timed_out),
                        Err(e) => {
                            let _ = send(socket, store_error(e).to_frame()).await;
                        }
                    }
                }
                Wake::Request => {
                    super::count_request(Endpoint::Lobby, Err(&ProtocolError::LobbyBusy));
                    if let Flow::Close = send(socket, ProtocolError::LobbyBusy.to_frame()).await {
                        return Flow::Close;
                    }
                }
                Wake::Ping => {
                    // Nothing heard since the last ping: the client is gone.
                    if self.pinged.is_some_and(|at| *self.heard < at) {
                        close(socket, close_code::POLICY, "no answer to ping").await;
                        self.left().await;
                        return Flow::Close;
                    }
                    self.pinged = Some(Instant::now());
                    if socket
                        .send(Message::Ping(Default::default()))
                        .await
                        .is_err()
                    {
                        self.left().await;
                        return Flow::Close;
                    }
                }
            }
        }
    }

    /// Waits for the next signal that concerns this player after `seen`, the lobby
    /// deadline (while the game has not started), the client, or the time to ping it.
    async fn wait(&mut self, socket: &mut WebSocket, seen: &Signal) -> Wake {
        let deadline = self.deadline.filter(|_| !self.started);
        let every = self.app.settings.ping_interval;
        let ping = (!every.is_zero())
            .then(|| self.pinged.unwrap_or(*self.heard).checked_add(every))
            .flatten();
        tokio::select! {
            () = self.timers.idle.until_some(ping) => Wake::Ping,
            changed = self.watch.changed_until(|s| s.concerns(seen, &self.user)) => match changed {
                Ok(()) => Wake::Signal,
                Err(_) => Wake::Closed,
            },
            () = self.timers.deadline.until_some(deadline) => Wake::Deadline,
            request = next_request(socket, self.heard) => match request {
                Some(_) => Wake::Request,
                None => Wake::Closed,
            },
        }
    }

    /// The client closed its lobby. Before the start the game is timed out unless it
    /// filled meanwhile (the player will never play); once it runs, the player
    /// forfeits and the others play on.
    async fn left(&mut self) {
        if self.started {
            let _ = referee::forfeit(
                self.app,
                &self.game,
                &self.user,
                ForfeitReason::LeftGame,
                None,
            )
            .await;
            return;
        }
        match self.app.store.time_out(&self.game).await {
            Ok(true) => {
                super::count_timed_out(true);
                self.close().await;
            }
            Ok(false) => {}
            Err(e) => {
                store_error(e);
            }
        }
    }

    /// Marks the lobby closed and, the game being over, logs the player's cleaning
    /// record unless someone did already (one store call, retried while the store is
    /// down as the referee's clean-up is: see [`referee::claim_retried`]).
    async fn close(&mut self) {
        let (store, game, user) = (&self.app.store, &self.game, &self.user);
        let lost = || format!("the cleaning record of {user} was not logged");
        let closed = referee::claim_retried(game, lost, |claim| async move {
            store.close_lobby(game, user, &claim).await
        })
        .await;
        if let Some(claimed) = closed {
            self.closed = true;
            if claimed {
                cleaning_records(&self.game, &self.user);
            }
        }
    }

    /// A full lobby starts its game; several lobbies may try, one succeeds.
    async fn start(&self) {
        let _ = referee::start(self.app, &self.game).await;
    }

    /// Sends START once, then USER'S TURN when the turn is this player's.
    async fn announce(&mut self, socket: &mut WebSocket, signal: &Signal) -> Flow {
        if !self.started {
            self.started = true;
            let frame = match self.start_frame(signal).await {
                Ok(f) => f,
                Err(e) => e.to_frame(),
            };
            if let Flow::Close = send(socket, frame).await {
                return Flow::Close;
            }
        }
        let my_turn =
            signal.status == GameStatus::InProgress && signal.current.as_ref() == Some(&self.user);
        if !my_turn || self.last_turn == Some(signal.turns) {
            return Flow::Continue;
        }
        self.last_turn = Some(signal.turns);
        if !self.app.settings.server_sleep.is_zero() {
            sleep(self.app.settings.server_sleep).await;
        }
        send(
            socket,
            to_frame(&LobbyReply::new(self.game.clone(), GAME_TURN)),
        )
        .await
    }

    /// START with every participant's hero as of the signal that announced the game
    /// (or later, when this server does not remember the game at that turn).
    async fn start_frame(&self, signal: &Signal) -> Result<String, ProtocolError> {
        let snapshot = self
            .app
            .store
            .snapshot_at(&self.game, signal.turn())
            .await
            .map_err(store_error)?
            .ok_or(ProtocolError::UnknownGame)?;
        let heroes: BTreeMap<UserToken, HeroView> = snapshot
            .board
            .heroes
            .iter()
            .map(|(p, h)| (p.clone(), HeroView::new(p, Some(*h))))
            .collect();
        Ok(to_frame(&StartReply {
            payload: StartPayload {
                game_token: self.game.clone(),
                participants: heroes.keys().cloned().collect(),
                participants_heros: heroes,
            },
            status: GameStatusField { game: GAME_START },
        }))
    }

    /// Closes the lobby and logs the game's end for the workers (unless it was logged
    /// for this player already: a replayed lobby logs nothing), then tells the
    /// player. In this order,
    /// whoever sees the game over can count on its event being on its way.
    async fn finish(&mut self, socket: &mut WebSocket, game: &'static str) -> Flow {
        self.close().await;
        send(socket, to_frame(&LobbyReply::new(self.game.clone(), game))).await
    }
}
