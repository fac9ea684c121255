//! Schema V1, the JSON text frames of the original simulator.
//!
//! Requests are parsed field by field so that each missing or mistyped field gets the
//! error string an existing client expects (`MISSING USER TOKEN IN PAYLOAD`, ...), in
//! the order the original server checked them. Replies are plain serde structs whose
//! field order is the original's, so the bytes on the wire read the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use super::types::{GameToken, Hero, HeroId, UserToken};

/// The WebSocket paths, one per endpoint.
pub const LOGIN_PATH: &str = "/api/v1/login";
pub const FIND_PATH: &str = "/api/v1/game/find";
pub const LOBBY_PATH: &str = "/api/v1/game/lobby";
pub const HERO_PATH: &str = "/api/v1/game/hero";
pub const ACTION_PATH: &str = "/api/v1/game/action";

/// The ACTION of a forfeit's log record.
pub const FORFEIT_ACTION: &str = "FORFEIT";

/// Largest frame the server reads as a request; larger ones get `FRAME TOO LARGE`.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Most players one game may ask for.
pub const MAX_PARTICIPANTS: u8 = 16;
/// Longest user name accepted at login.
pub const MAX_USER_NAME: usize = 128;

/// Every error reply the server sends, as `{"PAYLOAD": {}, "STATUS": "<message>"}`.
/// The first eight are the original server's strings; the rest cover what it never
/// checked.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("MISSING PAYLOAD IN MESSAGE")]
    MissingPayload,
    #[error("MISSING USER IN PAYLOAD")]
    MissingUser,
    #[error("MISSING USER TOKEN IN PAYLOAD")]
    MissingUserToken,
    #[error("MISSING PARTICIPANTS IN PAYLOAD")]
    MissingParticipants,
    #[error("MISSING GAME TOKEN IN PAYLOAD")]
    MissingGameToken,
    #[error("MISSING ENEMY TOKEN IN PAYLOAD")]
    MissingEnemyToken,
    #[error("MISSING ACTION IN PAYLOAD")]
    MissingAction,
    #[error("LIST OF SUPERHEROS NOT AVAILABLE")]
    NoSuperheroes,
    #[error("MALFORMED JSON IN MESSAGE")]
    MalformedJson,
    #[error("PAYLOAD IS NOT AN OBJECT")]
    PayloadNotObject,
    #[error("INVALID USER IN PAYLOAD")]
    InvalidUser,
    #[error("INVALID USER TOKEN IN PAYLOAD")]
    InvalidUserToken,
    #[error("INVALID GAME TOKEN IN PAYLOAD")]
    InvalidGameToken,
    #[error("INVALID ENEMY TOKEN IN PAYLOAD")]
    InvalidEnemyToken,
    #[error("INVALID PARTICIPANTS IN PAYLOAD")]
    InvalidParticipants,
    #[error("PARTICIPANTS OUT OF RANGE")]
    ParticipantsOutOfRange,
    #[error("UNKNOWN ACTION IN PAYLOAD")]
    UnknownAction,
    #[error("UNKNOWN USER TOKEN")]
    UnknownUser,
    #[error("UNKNOWN GAME TOKEN")]
    UnknownGame,
    #[error("FRAME TOO LARGE")]
    FrameTooLarge,
    /// A game request to a server that is draining before it stops: it serves the
    /// games it has, and no new one.
    #[error("SERVER SHUTTING DOWN")]
    ShuttingDown,
    #[error("BINARY FRAMES NOT SUPPORTED")]
    BinaryFrame,
    #[error("LOBBY ALREADY OPEN ON THIS CONNECTION")]
    LobbyBusy,
    #[error("LOBBY ALREADY OPEN FOR THIS PLAYER")]
    LobbyTaken,
    #[error("STORE UNAVAILABLE")]
    StoreUnavailable,
    /// A rule refused the action (not your turn, dead attacker, ...).
    #[error("{0}")]
    Rule(#[from] super::rules::RuleError),
}

impl ProtocolError {
    /// A short name for the error, fixed and few (a rule's refusal is `rule`), for
    /// counting requests by outcome.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingPayload => "missing_payload",
            Self::MissingUser => "missing_user",
            Self::MissingUserToken => "missing_user_token",
            Self::MissingParticipants => "missing_participants",
            Self::MissingGameToken => "missing_game_token",
            Self::MissingEnemyToken => "missing_enemy_token",
            Self::MissingAction => "missing_action",
            Self::NoSuperheroes => "no_superheroes",
            Self::MalformedJson => "malformed_json",
            Self::PayloadNotObject => "payload_not_object",
            Self::InvalidUser => "invalid_user",
            Self::InvalidUserToken => "invalid_user_token",
            Self::InvalidGameToken => "invalid_game_token",
            Self::InvalidEnemyToken => "invalid_enemy_token",
            Self::InvalidParticipants => "invalid_participants",
            Self::ParticipantsOutOfRange => "participants_out_of_range",
            Self::UnknownAction => "unknown_action",
            Self::UnknownUser => "unknown_user",
            Self::UnknownGame => "unknown_game",
            Self::FrameTooLarge => "frame_too_large",
            Self::ShuttingDown => "shutting_down",
            Self::BinaryFrame => "binary_frame",
            Self::LobbyBusy => "lobby_busy",
            Self::LobbyTaken => "lobby_taken",
            Self::StoreUnavailable => "store_unavailable",
            Self::Rule(_) => "rule",
        }
    }

    /// The error reply frame.
    pub fn to_frame(&self) -> String {
        to_frame(&StatusReply {
            payload: Empty {},
            status: self.to_string(),
        })
    }
}

/// Serializes a reply. Serializing these plain structs cannot fail.
pub fn to_frame<T: Serialize>(reply: &T) -> String {
    serde_json::to_string(reply).unwrap_or_else(|_| String::from("{}"))
}

// ---------------------------------------------------------------------------------
// Requests

/// `{"PAYLOAD": {"USER": name}}`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub user: String,
}

/// `{"PAYLOAD": {"USER_TOKEN", "PARTICIPANTS"}}`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Find {
    pub user_token: UserToken,
    pub participants: u8,
}

/// `{"PAYLOAD": {"GAME_TOKEN", "USER_TOKEN"}}`, for both the lobby and the hero look-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameUser {
    pub game_token: GameToken,
    pub user_token: UserToken,
}

/// `{"PAYLOAD": {"GAME_TOKEN", "USER_TOKEN", "ENEMY_TOKEN", "ACTION": "ATTACK"}}`.
/// A null ENEMY_TOKEN means the client saw no opponent left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub game_token: GameToken,
    pub user_token: UserToken,
    pub enemy_token: Option<UserToken>,
}

/// The outer object of every request; the payload stays raw until its fields are read.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "PAYLOAD", borrow, default)]
    payload: Field<'a>,
}

/// The payload fields any endpoint reads, each kept raw so that absence, null and a
/// wrong type are told apart.
#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(rename = "USER", borrow, default)]
    user: Field<'a>,
    #[serde(rename = "USER_TOKEN", borrow, default)]
    user_token: Field<'a>,
    #[serde(rename = "GAME_TOKEN", borrow, default)]
    game_token: Field<'a>,
    #[serde(rename = "PARTICIPANTS", borrow, default)]
    participants: Field<'a>,
    #[serde(rename = "ENEMY_TOKEN", borrow, default)]
    enemy_token: Field<'a>,
    #[serde(rename = "ACTION", borrow, default)]
    action: Field<'a>,
}

/// A field that may be absent; unlike `Option`, a JSON `null` counts as present.
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Field(Some(raw)))
    }
}

impl<'a> Field<'a> {
    fn is_null(&self) -> bool {
        self.0.is_some_and(|raw| raw.get() == "null")
    }

    /// A present, non-empty string.
    fn string(
        &self,
        missing: ProtocolError,
        invalid: ProtocolError,
    ) -> Result<String, ProtocolError> {
        let raw = self.0.ok_or(missing)?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) if !s.is_empty() && s.len() <= MAX_USER_NAME => Ok(s),
            _ => Err(invalid),
        }
    }
}

/// serde reads a struct from a JSON array too (by position); requests must be objects.
fn is_object(json: &str) -> bool {
    json.trim_start().starts_with('{')
}

fn payload(frame: &str) -> Result<RawPayload<'_>, ProtocolError> {
    if !is_object(frame) {
        return Err(ProtocolError::MalformedJson);
    }
    let envelope: Envelope<'_> =
        serde_json::from_str(frame).map_err(|_| ProtocolError::MalformedJson)?;
    let raw = envelope.payload.0.ok_or(ProtocolError::MissingPayload)?;
    if !is_object(raw.get()) {
        return Err(ProtocolError::PayloadNotObject);
    }
    serde_json::from_str(raw.get()).map_err(|_| ProtocolError::PayloadNotObject)
}

fn user_token(p: &RawPayload<'_>) -> Result<UserToken, ProtocolError> {
    p.user_token
        .string(
            ProtocolError::MissingUserToken,
            ProtocolError::InvalidUserToken,
        )
        .map(UserToken)
}

fn game_token(p: &RawPayload<'_>) -> Result<GameToken, ProtocolError> {
    p.game_token
        .string(
            ProtocolError::MissingGameToken,
            ProtocolError::InvalidGameToken,
        )
        .map(GameToken)
}

/// The original read PARTICIPANTS with `int()`, so `3` and `"3"` both work.
fn participants(p: &RawPayload<'_>) -> Result<u8, ProtocolError> {
    let raw = p.participants.0.ok_or(ProtocolError::MissingParticipants)?;
    let n: i64 = match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Number(n)) => n.as_i64().ok_or(ProtocolError::InvalidParticipants)?,
        Ok(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| ProtocolError::InvalidParticipants)?,
        _ => return Err(ProtocolError::InvalidParticipants),
    };
    match u8::try_from(n) {
        Ok(n) if (2..=MAX_PARTICIPANTS).contains(&n) => Ok(n),
        _ => Err(ProtocolError::ParticipantsOutOfRange),
    }
}

impl Login {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user = p
            .user
            .string(ProtocolError::MissingUser, ProtocolError::InvalidUser)?;
        Ok(Self { user })
    }
}

impl Find {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = user_token(&p)?;
        let participants = participants(&p)?;
        Ok(Self {
            user_token,
            participants,
        })
    }
}

impl GameUser {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = user_token(&p)?;
        let game_token = game_token(&p)?;
        Ok(Self {
            game_token,
            user_token,
        })
    }
}

impl Action {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = user_token(&p)?;
        let game_token = game_token(&p)?;
        let enemy_token = if p.enemy_token.is_null() {
            None
        } else {
            let token = p.enemy_token.string(
                ProtocolError::MissingEnemyToken,
                ProtocolError::InvalidEnemyToken,
            )?;
            Some(UserToken(token))
        };
        let action = p
            .action
            .string(ProtocolError::MissingAction, ProtocolError::UnknownAction)?;
        if action != "ATTACK" {
            return Err(ProtocolError::UnknownAction);
        }
        Ok(Self {
            game_token,
            user_token,
            enemy_token,
        })
    }
}

// ---------------------------------------------------------------------------------
// Replies

/// `{}`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `{"PAYLOAD": {}, "STATUS": "<message>"}`: errors and `USER CREATED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: Empty,
    #[serde(rename = "STATUS")]
    pub status: String,
}

/// The message sent before the token when a login creates its user.
pub const USER_CREATED: &str = "USER CREATED";

/// `{"PAYLOAD": {"USER_TOKEN": token}}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: LoginPayload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginPayload {
    #[serde(rename = "USER_TOKEN")]
    pub user_token: UserToken,
}

/// `{"PAYLOAD": {"GAME_TOKEN", "HERO_ID"}, "STATUS": {"JOINED": "SUCCESS"}}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JoinedReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: JoinedPayload,
    #[serde(rename = "STATUS")]
    pub status: Joined,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JoinedPayload {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
    #[serde(rename = "HERO_ID")]
    pub hero_id: HeroId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Joined {
    #[serde(rename = "JOINED")]
    pub joined: &'static str,
}

impl JoinedReply {
    pub fn new(game_token: GameToken, hero_id: HeroId) -> Self {
        Self {
            payload: JoinedPayload {
                game_token,
                hero_id,
            },
            status: Joined { joined: "SUCCESS" },
        }
    }
}

/// A hero as the lobby and the hero look-up show it. `id` is null for a player the
/// game does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeroView {
    pub token: UserToken,
    pub id: Option<HeroId>,
    pub attack: u64,
    pub health: u64,
}

impl HeroView {
    pub fn new(token: UserToken, hero: Option<Hero>) -> Self {
        match hero {
            Some(h) => Self {
                token,
                id: Some(h.id),
                attack: h.attack,
                health: h.health,
            },
            None => Self {
                token,
                id: None,
                attack: 0,
                health: 0,
            },
        }
    }
}

/// The `GAME` values of lobby messages.
pub const GAME_START: &str = "START";
pub const GAME_TURN: &str = "USER'S TURN";
pub const GAME_COMPLETE: &str = "COMPLETE";
pub const GAME_TIMED_OUT: &str = "TIMED OUT";
pub const GAME_HERO_SPEC: &str = "HERO SPEC";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GameStatusField {
    #[serde(rename = "GAME")]
    pub game: &'static str,
}

/// `{"PAYLOAD": {"GAME_TOKEN"}, "STATUS": {"GAME": ...}}`: USER'S TURN, COMPLETE, TIMED OUT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LobbyReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: GamePayload,
    #[serde(rename = "STATUS")]
    pub status: GameStatusField,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GamePayload {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
}

impl LobbyReply {
    pub fn new(game_token: GameToken, game: &'static str) -> Self {
        Self {
            payload: GamePayload { game_token },
            status: GameStatusField { game },
        }
    }
}

/// The lobby's START message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: StartPayload,
    #[serde(rename = "STATUS")]
    pub status: GameStatusField,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartPayload {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
    #[serde(rename = "PARTICIPANTS")]
    pub participants: Vec<UserToken>,
    #[serde(rename = "PARTICIPANTS_HEROS")]
    pub participants_heros: BTreeMap<UserToken, HeroView>,
}

/// The hero look-up's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeroReply {
    #[serde(rename = "PAYLOAD")]
    pub payload: HeroPayload,
    #[serde(rename = "STATUS")]
    pub status: GameStatusField,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeroPayload {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
    #[serde(rename = "USER_TOKEN")]
    pub user_token: UserToken,
    #[serde(rename = "HERO")]
    pub hero: HeroView,
}

/// The action reply, which is also the record pushed on `games:<game>:logs` and the
/// task of the `Attack Completed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    #[serde(rename = "TIMESTAMP")]
    pub timestamp: String,
    #[serde(rename = "PAYLOAD")]
    pub payload: ActionPayload,
    #[serde(rename = "STATUS")]
    pub status: ActionStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPayload {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
    #[serde(rename = "USER_TOKEN")]
    pub user_token: UserToken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionStatus {
    /// `ATTACK`, `NA` when there was no enemy left, or `FORFEIT`.
    #[serde(rename = "ACTION")]
    pub action: String,
    #[serde(rename = "DETAILS")]
    pub details: ActionDetails,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ActionDetails {
    Attack {
        #[serde(rename = "ENEMY_TOKEN")]
        enemy_token: UserToken,
        #[serde(rename = "ENEMY_DAMAGE")]
        enemy_damage: u64,
        #[serde(rename = "ENEMY_HEALTH_PRIOR")]
        enemy_health_prior: u64,
        #[serde(rename = "ENEMY_HEALTH_POST")]
        enemy_health_post: u64,
    },
    Forfeit {
        #[serde(rename = "REASON")]
        reason: String,
        #[serde(rename = "HEALTH_PRIOR")]
        health_prior: u64,
    },
    NoEnemy {
        #[serde(rename = "ENEMY_TOKEN")]
        enemy_token: Option<UserToken>,
        #[serde(rename = "ENEMY_STATUS")]
        enemy_status: String,
    },
}

/// Read as serde's untagged enums read it (the first variant whose fields are all
/// there: an attack, a forfeit, no enemy left; other fields ignored), but in one pass:
/// serde's untagged enums first copy the whole value into a buffer of their own and
/// try each variant on it, which was most of what the ETL spent reading a game's log.
impl<'de> Deserialize<'de> for ActionDetails {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            #[serde(rename = "ENEMY_TOKEN")]
            enemy_token: Option<UserToken>,
            #[serde(rename = "ENEMY_DAMAGE")]
            enemy_damage: Option<u64>,
            #[serde(rename = "ENEMY_HEALTH_PRIOR")]
            enemy_health_prior: Option<u64>,
            #[serde(rename = "ENEMY_HEALTH_POST")]
            enemy_health_post: Option<u64>,
            #[serde(rename = "REASON")]
            reason: Option<String>,
            #[serde(rename = "HEALTH_PRIOR")]
            health_prior: Option<u64>,
            #[serde(rename = "ENEMY_STATUS")]
            enemy_status: Option<String>,
        }

        let f = Fields::deserialize(deserializer)?;
        match f {
            Fields {
                enemy_token: Some(enemy_token),
                enemy_damage: Some(enemy_damage),
                enemy_health_prior: Some(enemy_health_prior),
                enemy_health_post: Some(enemy_health_post),
                ..
            } => Ok(Self::Attack {
                enemy_token,
                enemy_damage,
                enemy_health_prior,
                enemy_health_post,
            }),
            Fields {
                reason: Some(reason),
                health_prior: Some(health_prior),
                ..
            } => Ok(Self::Forfeit {
                reason,
                health_prior,
            }),
            Fields {
                enemy_token,
                enemy_status: Some(enemy_status),
                ..
            } => Ok(Self::NoEnemy {
                enemy_token,
                enemy_status,
            }),
            _ => Err(serde::de::Error::custom(
                "DETAILS are neither an attack's, a forfeit's nor those of no enemy left",
            )),
        }
    }
}

impl ActionRecord {
    /// The record of an attack.
    pub fn attack(game: &GameToken, attack: &super::rules::Attack, timestamp: String) -> Self {
        Self {
            timestamp,
            payload: ActionPayload {
                game_token: game.clone(),
                user_token: attack.attacker.clone(),
            },
            status: ActionStatus {
                action: "ATTACK".into(),
                details: ActionDetails::Attack {
                    enemy_token: attack.enemy.clone(),
                    enemy_damage: attack.damage,
                    enemy_health_prior: attack.enemy_health_prior,
                    enemy_health_post: attack.enemy_health_post,
                },
            },
        }
    }

    /// The record of a forfeit: the player is out, no one attacked.
    pub fn forfeit(game: &GameToken, forfeit: &super::rules::Forfeit, timestamp: String) -> Self {
        Self {
            timestamp,
            payload: ActionPayload {
                game_token: game.clone(),
                user_token: forfeit.user.clone(),
            },
            status: ActionStatus {
                action: FORFEIT_ACTION.into(),
                details: ActionDetails::Forfeit {
                    reason: forfeit.reason.as_str().into(),
                    health_prior: forfeit.health_prior,
                },
            },
        }
    }

    /// The record of an action with no enemy left.
    pub fn no_enemy(game: &GameToken, user: &UserToken, timestamp: String) -> Self {
        Self {
            timestamp,
            payload: ActionPayload {
                game_token: game.clone(),
                user_token: user.clone(),
            },
            status: ActionStatus {
                action: "NA".into(),
                details: ActionDetails::NoEnemy {
                    enemy_token: None,
                    enemy_status: "DEAD".into(),
                },
            },
        }
    }
}

/// The record time format, `YYYY-MM-DDTHH:MM:SSZ` in UTC (written directly, without
/// parsing a format string on every record).
pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------
// What a client sends: the requests above, written from borrowed fields (a bot sends
// tens of thousands a second, and building a JSON value first cost a map and a copy
// of every token per request).

/// `{"PAYLOAD": payload}`
#[derive(Serialize)]
struct Outgoing<P> {
    #[serde(rename = "PAYLOAD")]
    payload: P,
}

/// `{"PAYLOAD": {"USER": name}}`
pub fn login_request(user: &str) -> String {
    #[derive(Serialize)]
    struct P<'a> {
        #[serde(rename = "USER")]
        user: &'a str,
    }
    to_frame(&Outgoing {
        payload: P { user },
    })
}

/// `{"PAYLOAD": {"PARTICIPANTS": n, "USER_TOKEN": user}}`
pub fn find_request(user: &UserToken, participants: u8) -> String {
    #[derive(Serialize)]
    struct P<'a> {
        #[serde(rename = "PARTICIPANTS")]
        participants: u8,
        #[serde(rename = "USER_TOKEN")]
        user: &'a UserToken,
    }
    to_frame(&Outgoing {
        payload: P { participants, user },
    })
}

/// `{"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user}}`: a lobby or hero request.
pub fn game_user_request(game: &GameToken, user: &UserToken) -> String {
    #[derive(Serialize)]
    struct P<'a> {
        #[serde(rename = "GAME_TOKEN")]
        game: &'a GameToken,
        #[serde(rename = "USER_TOKEN")]
        user: &'a UserToken,
    }
    to_frame(&Outgoing {
        payload: P { game, user },
    })
}

/// `{"PAYLOAD": {"ACTION": "ATTACK", "ENEMY_TOKEN": enemy, "GAME_TOKEN": game,
/// "USER_TOKEN": user}}`; a null enemy when none is left.
pub fn attack_request(game: &GameToken, user: &UserToken, enemy: Option<&UserToken>) -> String {
    #[derive(Serialize)]
    struct P<'a> {
        #[serde(rename = "ACTION")]
        action: &'static str,
        #[serde(rename = "ENEMY_TOKEN")]
        enemy: Option<&'a UserToken>,
        #[serde(rename = "GAME_TOKEN")]
        game: &'a GameToken,
        #[serde(rename = "USER_TOKEN")]
        user: &'a UserToken,
    }
    to_frame(&Outgoing {
        payload: P {
            action: "ATTACK",
            enemy,
            game,
            user,
        },
    })
}

// ---------------------------------------------------------------------------------
// What a client reads

/// Any frame the server sends, read leniently: the fields a client acts on, each
/// optional. STATUS is either a string (errors) or an object.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerFrame {
    #[serde(rename = "PAYLOAD", default)]
    pub payload: ServerPayload,
    #[serde(rename = "STATUS", default)]
    pub status: Option<StatusValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerPayload {
    #[serde(rename = "USER_TOKEN")]
    pub user_token: Option<UserToken>,
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: Option<GameToken>,
    #[serde(rename = "HERO_ID")]
    pub hero_id: Option<HeroId>,
    #[serde(rename = "PARTICIPANTS")]
    pub participants: Option<Vec<UserToken>>,
    #[serde(rename = "PARTICIPANTS_HEROS")]
    pub participants_heros: Option<BTreeMap<UserToken, HeroView>>,
    #[serde(rename = "HERO")]
    pub hero: Option<HeroView>,
}

#[derive(Clone, Debug)]
pub enum StatusValue {
    Message(String),
    Fields(StatusFields),
}

/// A string or an object, told apart by what the parser meets first. (Serde's
/// untagged enums first copy the whole value, DETAILS included, into a buffer of
/// their own, and try each variant on it: most of what a bot spent reading replies.)
impl<'de> Deserialize<'de> for StatusValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;

        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = StatusValue;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status message or an object of status fields")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusValue, E> {
                Ok(StatusValue::Message(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StatusValue, E> {
                Ok(StatusValue::Message(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StatusValue, A::Error> {
                let fields = serde::de::value::MapAccessDeserializer::new(map);
                StatusFields::deserialize(fields).map(StatusValue::Fields)
            }
        }

        deserializer.deserialize_any(Either)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StatusFields {
    #[serde(rename = "GAME")]
    pub game: Option<String>,
    #[serde(rename = "JOINED")]
    pub joined: Option<String>,
    #[serde(rename = "ACTION")]
    pub action: Option<String>,
}

impl ServerFrame {
    pub fn parse(frame: &str) -> Option<Self> {
        serde_json::from_str(frame).ok()
    }

    /// The `STATUS.GAME` value, if any.
    pub fn game(&self) -> Option<&str> {
        match &self.status {
            Some(StatusValue::Fields(f)) => f.game.as_deref(),
            _ => None,
        }
    }

    /// The error or notice string of a `{"PAYLOAD": {}, "STATUS": "..."}` frame.
    pub fn message(&self) -> Option<&str> {
        match &self.status {
            Some(StatusValue::Message(m)) => Some(m),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three kinds of DETAILS read back as written; fields beyond a kind's are
    /// ignored, and DETAILS of no kind are refused.
    #[test]
    fn action_details_read_back_as_written() {
        let kinds = [
            ActionDetails::Attack {
                enemy_token: UserToken("e".into()),
                enemy_damage: 7,
                enemy_health_prior: 10,
                enemy_health_post: 3,
            },
            ActionDetails::Forfeit {
                reason: "TURN TIMEOUT".into(),
                health_prior: 4,
            },
            ActionDetails::NoEnemy {
                enemy_token: None,
                enemy_status: "DEAD".into(),
            },
            ActionDetails::NoEnemy {
                enemy_token: Some(UserToken("e".into())),
                enemy_status: "DEAD".into(),
            },
        ];
        for details in kinds {
            let json = serde_json::to_string(&details).unwrap();
            let back: ActionDetails = serde_json::from_str(&json).unwrap();
            assert_eq!(back, details, "{json}");
        }
        let extra = r#"{"ENEMY_TOKEN":"e","ENEMY_DAMAGE":1,"ENEMY_HEALTH_PRIOR":2,
            "ENEMY_HEALTH_POST":1,"NOTE":{"any":[1,2]}}"#;
        let read: ActionDetails = serde_json::from_str(extra).unwrap();
        assert!(matches!(
            read,
            ActionDetails::Attack {
                enemy_damage: 1,
                ..
            }
        ));
        // An attack's fields but one: not an attack, and not any other kind either.
        let short = r#"{"ENEMY_TOKEN":"e","ENEMY_DAMAGE":1,"ENEMY_HEALTH_PRIOR":2}"#;
        assert!(serde_json::from_str::<ActionDetails>(short).is_err());
        assert!(serde_json::from_str::<ActionDetails>("[]").is_err());
    }

    #[test]
    fn what_a_bot_sends_is_what_the_server_reads() {
        let game = GameToken("g\"1".into());
        let user = UserToken("u1".into());
        let enemy = UserToken("e1".into());
        assert_eq!(
            Login::parse(&login_request("USER001")),
            Ok(Login {
                user: "USER001".into()
            })
        );
        assert_eq!(
            Find::parse(&find_request(&user, 3)),
            Ok(Find {
                user_token: user.clone(),
                participants: 3
            })
        );
        assert_eq!(
            GameUser::parse(&game_user_request(&game, &user)),
            Ok(GameUser {
                game_token: game.clone(),
                user_token: user.clone()
            })
        );
        for enemy in [Some(enemy), None] {
            assert_eq!(
                Action::parse(&attack_request(&game, &user, enemy.as_ref())),
                Ok(Action {
                    game_token: game.clone(),
                    user_token: user.clone(),
                    enemy_token: enemy.clone()
                })
            );
        }
    }

    #[test]
    fn errors_in_the_original_order() {
        assert_eq!(Find::parse("nope"), Err(ProtocolError::MalformedJson));
        assert_eq!(Find::parse("[1]"), Err(ProtocolError::MalformedJson));
        assert_eq!(Find::parse("{}"), Err(ProtocolError::MissingPayload));
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": 3}"#),
            Err(ProtocolError::PayloadNotObject)
        );
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": ["u", 2]}"#),
            Err(ProtocolError::PayloadNotObject)
        );
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {}}"#),
            Err(ProtocolError::MissingUserToken)
        );
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {"USER_TOKEN": "u"}}"#),
            Err(ProtocolError::MissingParticipants)
        );
        assert_eq!(
            GameUser::parse(r#"{"PAYLOAD": {"USER_TOKEN": "u"}}"#),
            Err(ProtocolError::MissingGameToken)
        );
        assert_eq!(
            Action::parse(r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g"}}"#),
            Err(ProtocolError::MissingEnemyToken)
        );
        assert_eq!(
            Action::parse(
                r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g", "ENEMY_TOKEN": "e"}}"#
            ),
            Err(ProtocolError::MissingAction)
        );
        assert_eq!(
            Login::parse(r#"{"PAYLOAD": {}}"#),
            Err(ProtocolError::MissingUser)
        );
    }

    #[test]
    fn mistyped_fields() {
        assert_eq!(
            Login::parse(r#"{"PAYLOAD": {"USER": 7}}"#),
            Err(ProtocolError::InvalidUser)
        );
        assert_eq!(
            Login::parse(r#"{"PAYLOAD": {"USER": ""}}"#),
            Err(ProtocolError::InvalidUser)
        );
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {"USER_TOKEN": ["u"], "PARTICIPANTS": 2}}"#),
            Err(ProtocolError::InvalidUserToken)
        );
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {"USER_TOKEN": "u", "PARTICIPANTS": "two"}}"#),
            Err(ProtocolError::InvalidParticipants)
        );
        for n in ["1", "0", "-3", "17", "300"] {
            let frame = format!(r#"{{"PAYLOAD": {{"USER_TOKEN": "u", "PARTICIPANTS": {n}}}}}"#);
            assert_eq!(
                Find::parse(&frame),
                Err(ProtocolError::ParticipantsOutOfRange)
            );
        }
        assert_eq!(
            Action::parse(
                r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g", "ENEMY_TOKEN": "e", "ACTION": "HUG"}}"#
            ),
            Err(ProtocolError::UnknownAction)
        );
        assert_eq!(
            Action::parse(
                r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g", "ENEMY_TOKEN": 5, "ACTION": "ATTACK"}}"#
            ),
            Err(ProtocolError::InvalidEnemyToken)
        );
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {"USER_TOKEN": "u", "PARTICIPANTS": "3"}}"#),
            Ok(Find {
                user_token: UserToken("u".into()),
                participants: 3
            })
        );
        let a = Action::parse(
            r#"{"PAYLOAD": {"GAME_TOKEN": "g", "USER_TOKEN": "u", "ENEMY_TOKEN": null, "ACTION": "ATTACK"}}"#,
        )
        .unwrap();
        assert_eq!(a.enemy_token, None);
        let a = Action::parse(
            r#"{"PAYLOAD": {"GAME_TOKEN": "g", "USER_TOKEN": "u", "ENEMY_TOKEN": "e", "ACTION": "ATTACK", "EXTRA": [1]}}"#,
        )
        .unwrap();
        assert_eq!(a.enemy_token, Some(UserToken("e".into())));
    }

    #[test]
    fn reply_shapes_are_byte_exact() {
        assert_eq!(
            ProtocolError::MissingPayload.to_frame(),
            r#"{"PAYLOAD":{},"STATUS":"MISSING PAYLOAD IN MESSAGE"}"#
        );
        assert_eq!(
            to_frame(&JoinedReply::new(GameToken("g".into()), 7)),
            r#"{"PAYLOAD":{"GAME_TOKEN":"g","HERO_ID":7},"STATUS":{"JOINED":"SUCCESS"}}"#
        );
        assert_eq!(
            to_frame(&LobbyReply::new(GameToken("g".into()), GAME_TURN)),
            r#"{"PAYLOAD":{"GAME_TOKEN":"g"},"STATUS":{"GAME":"USER'S TURN"}}"#
        );
        let na = ActionRecord::no_enemy(
            &GameToken("g".into()),
            &UserToken("u".into()),
            "2026-01-02T03:04:05Z".into(),
        );
        assert_eq!(
            to_frame(&na),
            r#"{"TIMESTAMP":"2026-01-02T03:04:05Z","PAYLOAD":{"GAME_TOKEN":"g","USER_TOKEN":"u"},"STATUS":{"ACTION":"NA","DETAILS":{"ENEMY_TOKEN":null,"ENEMY_STATUS":"DEAD"}}}"#
        );
    }

    #[test]
    fn timestamp_format() {
        let t = timestamp_now();
        assert_eq!(t.len(), 20);
        assert!(chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%SZ").is_ok());
    }

    proptest::proptest! {
        /// Whatever arrives, parsing answers with a request or an error, never a panic.
        #[test]
        fn parsing_never_panics(frame in ".{0,200}") {
            let _ = Login::parse(&frame);
            let _ = Find::parse(&frame);
            let _ = GameUser::parse(&frame);
            let _ = Action::parse(&frame);
            let _ = ServerFrame::parse(&frame);
        }

        /// Near-valid JSON: random values in every field the server reads.
        #[test]
        fn any_field_values_are_handled(
            user in proptest::option::of(json_value()),
            token in proptest::option::of(json_value()),
            game in proptest::option::of(json_value()),
            n in proptest::option::of(json_value()),
            enemy in proptest::option::of(json_value()),
            action in proptest::option::of(json_value()),
        ) {
            let mut payload = serde_json::Map::new();
            for (key, value) in [("USER", user), ("USER_TOKEN", token), ("GAME_TOKEN", game),
                                 ("PARTICIPANTS", n), ("ENEMY_TOKEN", enemy), ("ACTION", action)] {
                if let Some(v) = value {
                    payload.insert(key.into(), v);
                }
            }
            let frame = serde_json::json!({"PAYLOAD": payload}).to_string();
            if let Ok(find) = Find::parse(&frame) {
                proptest::prop_assert!((2..=MAX_PARTICIPANTS).contains(&find.participants));
            }
            if let Ok(a) = Action::parse(&frame) {
                proptest::prop_assert!(!a.user_token.as_str().is_empty());
            }
            let _ = Login::parse(&frame);
            let _ = GameUser::parse(&frame);
        }

        #[test]
        fn valid_requests_round_trip(user in "[a-zA-Z0-9-]{1,40}", n in 2u8..=MAX_PARTICIPANTS) {
            let frame = serde_json::json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}}).to_string();
            proptest::prop_assert_eq!(
                Find::parse(&frame),
                Ok(Find { user_token: UserToken(user.clone()), participants: n })
            );
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
            proptest::collection::vec(any::<u8>(), 0..3).prop_map(serde_json::Value::from),
            Just(serde_json::json!({"nested": {"x": 1}})),
        ]
    }

    #[test]
    fn client_reads_every_reply() {
        let f = ServerFrame::parse(&ProtocolError::UnknownGame.to_frame()).unwrap();
        assert_eq!(f.message(), Some("UNKNOWN GAME TOKEN"));
        let f = ServerFrame::parse(&to_frame(&LobbyReply::new(
            GameToken("g".into()),
            GAME_COMPLETE,
        )))
        .unwrap();
        assert_eq!(f.game(), Some("COMPLETE"));
        assert_eq!(f.payload.game_token, Some(GameToken("g".into())));
        let f = ServerFrame::parse(
            r#"{"PAYLOAD": {"GAME_TOKEN": "g"}, "STATUS": {"ACTION": "ATTACK",
                "DETAILS": {"ENEMY_TOKEN": "e", "ENEMY_DAMAGE": 3}}}"#,
        )
        .unwrap();
        assert_eq!(f.message(), None, "an action's reply is no error");
        assert!(
            matches!(&f.status, Some(StatusValue::Fields(s)) if s.action.as_deref() == Some("ATTACK"))
        );
        let f = ServerFrame::parse(r#"{"PAYLOAD": {}, "STATUS": null}"#).unwrap();
        assert!(f.status.is_none());
        for odd in ["1", "[]", "true"] {
            let frame = format!(r#"{{"PAYLOAD": {{}}, "STATUS": {odd}}}"#);
            assert!(ServerFrame::parse(&frame).is_none(), "{frame}");
        }
    }
}
