//! The request/reply endpoints: login, find, hero and action.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::seq::index::sample;
use serde::Serialize;
use smallvec::{SmallVec, smallvec};

use super::{App, Endpoint, Requests};
use crate::events::{self, GameUserTask, Queue};
use crate::game::protocol::{
    self, Action, ActionRecord, Find, GAME_HERO_SPEC, GameStatusField, GameUserText, HeroPayload,
    HeroReply, HeroView, JoinedReply, Login, LoginPayload, LoginReply, ProtocolError, StatusReply,
    USER_CREATED, to_frame,
};
use crate::game::rules::Finish;
use crate::game::{GameToken, Hero, UserToken};
use crate::store::{GameStore, StoreError};

/// The frames that answer one request: one but for a new user's login, kept
/// without an allocation of their own.
pub(super) type Frames = SmallVec<[String; 1]>;

/// The frames that answer one request.
pub(super) async fn answer<S: GameStore>(
    app: &Arc<App<S>>,
    requests: &Requests,
    text: &str,
) -> Frames {
    let result = match requests.endpoint() {
        Endpoint::Login => login(app, text).await,
        Endpoint::Find => find(app, text).await.map(|f| smallvec![f]),
        Endpoint::Hero => hero(app, text).await.map(|f| smallvec![f]),
        Endpoint::Action => action(app, text).await.map(|f| smallvec![f]),
        // The lobby is a session of its own, see `lobby.rs`.
        Endpoint::Lobby => Ok(Frames::new()),
    };
    requests.count(result.as_ref().map(drop));
    result.unwrap_or_else(|e| smallvec![e.to_frame()])
}

/// A store failure as the client sees it; outages are also logged here, once.
pub(super) fn store_error(e: StoreError) -> ProtocolError {
    match e {
        StoreError::Rule(r) => ProtocolError::Rule(r),
        StoreError::UnknownGame => ProtocolError::UnknownGame,
        StoreError::UnknownUser => ProtocolError::UnknownUser,
        StoreError::Contended => ProtocolError::StoreUnavailable,
        StoreError::Unavailable(why) => {
            tracing::warn!("store unavailable: {why}");
            ProtocolError::StoreUnavailable
        }
    }
}

#[derive(Serialize)]
struct LoginTask<'a> {
    user: &'a str,
    user_token: &'a str,
}

async fn login<S: GameStore>(app: &App<S>, text: &str) -> Result<Frames, ProtocolError> {
    let req = Login::parse(text)?;
    let (token, created) = app.store.login(&req.user).await.map_err(store_error)?;
    let task = LoginTask {
        user: &req.user,
        user_token: token.as_str(),
    };
    let mut frames = Frames::new();
    if created {
        events::emit_task(Queue::Login, "User Created", &task);
        frames.push(to_frame(&StatusReply {
            payload: protocol::Empty {},
            status: USER_CREATED.into(),
        }));
    }
    events::emit_task(Queue::Login, "User Logged In", &task);
    frames.push(to_frame(&LoginReply {
        payload: LoginPayload { user_token: token },
    }));
    Ok(frames)
}

/// The roster, held by the server once read (see [`super::roster::Roster`]).
async fn roster<S: GameStore>(app: &App<S>) -> Result<Arc<Vec<Hero>>, ProtocolError> {
    app.roster
        .get(|| app.store.roster())
        .await
        .map_err(store_error)
}

#[derive(Serialize)]
struct JoinTask<'a> {
    game_token: &'a str,
    user_token: &'a str,
    hero_id: u32,
    participants: u8,
}

async fn find<S: GameStore>(app: &Arc<App<S>>, text: &str) -> Result<String, ProtocolError> {
    let req = Find::parse(text)?;
    if app.draining.load(Ordering::Acquire) {
        return Err(ProtocolError::ShuttingDown);
    }
    let roster = roster(app).await?;
    if roster.is_empty() {
        return Err(ProtocolError::NoSuperheroes);
    }
    let n = usize::from(req.participants);
    if roster.len() < n {
        return Err(ProtocolError::ParticipantsOutOfRange);
    }
    // Enough distinct heroes that one is always free, whoever joined before.
    let candidates: Vec<Hero> = sample(&mut rand::rng(), roster.len(), n)
        .into_iter()
        .map(|i| roster[i])
        .collect();
    let new_game = GameToken::new_random();
    let joined = match app
        .store
        .join(&req.user_token, req.participants, &new_game, &candidates)
        .await
    {
        Ok(joined) => joined,
        Err(e) => {
            // A store that failed to answer may have made the game first (its reply
            // lost with a failing node): a referee looks for it, and ends it if so.
            if matches!(e, StoreError::Unavailable(_)) {
                super::referee::ensure(app, &new_game);
            }
            return Err(store_error(e));
        }
    };
    app.expected
        .found(&joined.game, &req.user_token, app.settings.lobby_timeout);
    let task = JoinTask {
        game_token: joined.game.as_str(),
        user_token: req.user_token.as_str(),
        hero_id: joined.hero,
        participants: req.participants,
    };
    if joined.created {
        events::emit_task(Queue::Lobby, "Game Created", &task);
    }
    super::referee::ensure(app, &joined.game);
    events::emit_task(Queue::Lobby, "Player Joined", &task);
    Ok(to_frame(&JoinedReply::new(joined.game, joined.hero)))
}

async fn hero<S: GameStore>(app: &App<S>, text: &str) -> Result<String, ProtocolError> {
    let req = GameUserText::parse(text)?;
    let hero = app
        .store
        .hero(&req.game_token, &req.user_token)
        .await
        .map_err(store_error)?;
    Ok(to_frame(&HeroReply {
        payload: HeroPayload {
            game_token: &req.game_token,
            hero: HeroView::new(&req.user_token, hero),
            user_token: &req.user_token,
        },
        status: GameStatusField {
            game: GAME_HERO_SPEC,
        },
    }))
}

#[derive(Serialize)]
struct CapTask<'a> {
    game_token: &'a str,
    turns: u32,
    ranking: &'a [UserToken],
}

async fn action<S: GameStore>(app: &App<S>, text: &str) -> Result<String, ProtocolError> {
    let req = Action::parse(text)?;
    let timestamp = protocol::timestamp_now();
    let Some(enemy) = &req.enemy_token else {
        app.store
            .finish_without_enemy(&req.game_token, &req.user_token)
            .await
            .map_err(store_error)?;
        let record = to_frame(&ActionRecord::no_enemy(
            &req.game_token,
            &req.user_token,
            timestamp.as_str(),
        ));
        events::emit(Queue::Game, "No Enemy Left", &record);
        return Ok(record);
    };
    let attacked = app
        .store
        .attack(
            &req.game_token,
            &req.user_token,
            enemy,
            app.settings.turn_cap,
            timestamp.as_str(),
        )
        .await
        .map_err(store_error)?;
    events::emit(Queue::Game, "Attack Completed", &attacked.record);
    if let Some(finish) = &attacked.attack.finish {
        super::count_finish(finish);
    }
    if let Some(Finish::TurnCap(ranking)) = &attacked.attack.finish {
        events::emit_task(
            Queue::Game,
            "Turn Cap Reached",
            &CapTask {
                game_token: &req.game_token,
                turns: attacked.attack.turns,
                ranking,
            },
        );
    }
    Ok(attacked.record)
}

/// Logs the record a worker acts on when a player's game is over.
pub(super) fn cleaning_records(game: &GameToken, user: &UserToken) {
    events::emit_task(
        Queue::Lobby,
        events::CLEANING_GAME_RECORDS,
        &GameUserTask {
            game_token: game.as_str(),
            user_token: user.as_str(),
        },
    );
}
