//! Schema V1, the JSON text frames of the original simulator.
//!
//! Requests are parsed field by field so that each missing or mistyped field gets the
//! error string an existing client expects (`MISSING USER TOKEN IN PAYLOAD`, ...), in
//! the order the original server checked them. Replies are plain serde structs whose
//! field order is the original's, so the bytes on the wire read the same.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
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

/// Room for most frames (an attack's reply is some 320 bytes) in the buffer each
/// thread writes its frames into; a rare larger frame's room is given back past
/// [`FRAME_BYTES_KEPT`].
const FRAME_BYTES: usize = 512;
const FRAME_BYTES_KEPT: usize = 64 * 1024;

thread_local! {
    /// Where this thread writes a frame before copying it out at its exact size. A
    /// frame with spare room would cost the WebSocket layer an allocation of its own
    /// to share it, and serde_json's `to_string` grows, copying, on the way.
    static FRAME: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(FRAME_BYTES));
}

/// Serializes a reply. Serializing these plain structs cannot fail.
pub fn to_frame<T: Serialize>(reply: &T) -> String {
    FRAME
        .with_borrow_mut(|buf| {
            buf.clear();
            let written = serde_json::to_writer(&mut *buf, reply).ok();
            let frame = written.and_then(|()| std::str::from_utf8(buf).ok().map(String::from));
            if buf.capacity() > FRAME_BYTES_KEPT {
                *buf = Vec::with_capacity(FRAME_BYTES);
            }
            frame
        })
        .unwrap_or_else(|| String::from("{}"))
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

/// [`GameUser`] with its tokens as the frame wrote them, borrowed unless a JSON escape
/// had to be undone: the hero look-up's, some thirty a game, whose tokens are only
/// looked up and written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameUserText<'a> {
    pub game_token: Cow<'a, str>,
    pub user_token: Cow<'a, str>,
}

/// `{"PAYLOAD": {"GAME_TOKEN", "USER_TOKEN", "ENEMY_TOKEN", "ACTION": "ATTACK"}}`, its
/// tokens borrowed as in [`GameUserText`]. A null ENEMY_TOKEN means the client saw no
/// opponent left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action<'a> {
    pub game_token: Cow<'a, str>,
    pub user_token: Cow<'a, str>,
    pub enemy_token: Option<Cow<'a, str>>,
}

/// The outer object of every request, read in one pass with its payload.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "PAYLOAD", borrow, default)]
    payload: Payload<'a>,
}

/// PAYLOAD: missing, something other than an object, or the fields an endpoint reads.
#[derive(Default)]
enum Payload<'a> {
    #[default]
    Missing,
    NotObject,
    Object(RawPayload<'a>),
}

/// The payload fields any endpoint reads, each as it came, so that absence, null and
/// a wrong type are told apart.
#[derive(Default)]
struct RawPayload<'a> {
    user: Field<'a>,
    user_token: Field<'a>,
    game_token: Field<'a>,
    participants: Field<'a>,
    enemy_token: Field<'a>,
    action: Field<'a>,
}

/// One payload field. Unlike `Option`, a JSON `null` counts as present. Strings are
/// borrowed from the frame unless an escape in them had to be undone.
#[derive(Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    /// Any other value: a float, a boolean, an array or an object.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Payload<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};

        struct Visit;

        impl<'de> Visitor<'de> for Visit {
            type Value = Payload<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload<'de>, A::Error> {
                let mut p = RawPayload::default();
                let mut repeated = false;
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::User => &mut p.user,
                        Key::UserToken => &mut p.user_token,
                        Key::GameToken => &mut p.game_token,
                        Key::Participants => &mut p.participants,
                        Key::EnemyToken => &mut p.enemy_token,
                        Key::Action => &mut p.action,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    repeated |= !matches!(slot, Field::Absent);
                    *slot = map.next_value()?;
                }
                // A field given twice is as ambiguous as a payload that is no object.
                Ok(if repeated {
                    Payload::NotObject
                } else {
                    Payload::Object(p)
                })
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Payload<'de>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Payload::NotObject)
            }

            fn visit_unit<E>(self) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }

            fn visit_str<E>(self, _: &str) -> Result<Payload<'de>, E> {
                Ok(Payload::NotObject)
            }
        }

        deserializer.deserialize_any(Visit)
    }
}

/// The payload keys the endpoints read; any other is skipped.
enum Key {
    User,
    UserToken,
    GameToken,
    Participants,
    EnemyToken,
    Action,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;

        impl serde::de::Visitor<'_> for Visit {
            type Value = Key;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a payload key")
            }

            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "USER" => Key::User,
                    "USER_TOKEN" => Key::UserToken,
                    "GAME_TOKEN" => Key::GameToken,
                    "PARTICIPANTS" => Key::Participants,
                    "ENEMY_TOKEN" => Key::EnemyToken,
                    "ACTION" => Key::Action,
                    _ => Key::Other,
                })
            }
        }

        deserializer.deserialize_identifier(Visit)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct Visit;

        impl<'de> Visitor<'de> for Visit {
            type Value = Field<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Null)
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
                Ok(Field::Int(v))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
                Ok(i64::try_from(v).map_or(Field::Other, Field::Int))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
                Ok(Field::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Field::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Field::Other)
            }
        }

        deserializer.deserialize_any(Visit)
    }
}

impl<'a> Field<'a> {
    fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    /// A present, non-empty string, taken out of the payload as the frame holds it.
    fn into_string(
        self,
        missing: ProtocolError,
        invalid: ProtocolError,
    ) -> Result<Cow<'a, str>, ProtocolError> {
        match self {
            Field::Absent => Err(missing),
            Field::Str(s) if !s.is_empty() && s.len() <= MAX_USER_NAME => Ok(s),
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
    match envelope.payload {
        Payload::Missing => Err(ProtocolError::MissingPayload),
        Payload::NotObject => Err(ProtocolError::PayloadNotObject),
        Payload::Object(p) => Ok(p),
    }
}

fn user_token<'a>(field: Field<'a>) -> Result<Cow<'a, str>, ProtocolError> {
    field.into_string(
        ProtocolError::MissingUserToken,
        ProtocolError::InvalidUserToken,
    )
}

fn game_token<'a>(field: Field<'a>) -> Result<Cow<'a, str>, ProtocolError> {
    field.into_string(
        ProtocolError::MissingGameToken,
        ProtocolError::InvalidGameToken,
    )
}

/// The original read PARTICIPANTS with `int()`, so `3` and `"3"` both work.
fn participants(field: &Field<'_>) -> Result<u8, ProtocolError> {
    let n: i64 = match field {
        Field::Absent => return Err(ProtocolError::MissingParticipants),
        Field::Int(n) => *n,
        Field::Str(s) => s
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
            .into_string(ProtocolError::MissingUser, ProtocolError::InvalidUser)?
            .into_owned();
        Ok(Self { user })
    }
}

impl Find {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = UserToken::from(&*user_token(p.user_token)?);
        let participants = participants(&p.participants)?;
        Ok(Self {
            user_token,
            participants,
        })
    }
}

impl GameUser {
    pub fn parse(frame: &str) -> Result<Self, ProtocolError> {
        let req = GameUserText::parse(frame)?;
        Ok(Self {
            game_token: GameToken::from(&*req.game_token),
            user_token: UserToken::from(&*req.user_token),
        })
    }
}

impl<'a> GameUserText<'a> {
    pub fn parse(frame: &'a str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = user_token(p.user_token)?;
        let game_token = game_token(p.game_token)?;
        Ok(Self {
            game_token,
            user_token,
        })
    }
}

impl<'a> Action<'a> {
    pub fn parse(frame: &'a str) -> Result<Self, ProtocolError> {
        let p = payload(frame)?;
        let user_token = user_token(p.user_token)?;
        let game_token = game_token(p.game_token)?;
        let enemy_token = if p.enemy_token.is_null() {
            None
        } else {
            Some(p.enemy_token.into_string(
                ProtocolError::MissingEnemyToken,
                ProtocolError::InvalidEnemyToken,
            )?)
        };
        match &p.action {
            Field::Absent => return Err(ProtocolError::MissingAction),
            Field::Str(action) if action == "ATTACK" => {}
            _ => return Err(ProtocolError::UnknownAction),
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeroView<'a> {
    pub token: &'a str,
    pub id: Option<HeroId>,
    pub attack: u64,
    pub health: u64,
}

impl<'a> HeroView<'a> {
    pub fn new(token: &'a str, hero: Option<Hero>) -> Self {
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
pub struct StartReply<'a> {
    #[serde(rename = "PAYLOAD")]
    pub payload: StartPayload<'a>,
    #[serde(rename = "STATUS")]
    pub status: GameStatusField,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartPayload<'a> {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: GameToken,
    #[serde(rename = "PARTICIPANTS")]
    pub participants: Vec<UserToken>,
    #[serde(rename = "PARTICIPANTS_HEROS")]
    pub participants_heros: BTreeMap<UserToken, HeroView<'a>>,
}

/// The hero look-up's reply, its tokens as the request wrote them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeroReply<'a> {
    #[serde(rename = "PAYLOAD")]
    pub payload: HeroPayload<'a>,
    #[serde(rename = "STATUS")]
    pub status: GameStatusField,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeroPayload<'a> {
    #[serde(rename = "GAME_TOKEN")]
    pub game_token: &'a str,
    #[serde(rename = "USER_TOKEN")]
    pub user_token: &'a str,
    #[serde(rename = "HERO")]
    pub hero: HeroView<'a>,
}

/// The action reply, which is also the record pushed on `games:<game>:logs` and the
/// task of the `Attack Completed` event. Its strings are borrowed both ways: from the
/// game's tokens when the server writes it, from the record's text when the ETL
/// reads it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord<'a> {
    #[serde(rename = "TIMESTAMP", borrow)]
    pub timestamp: Text<'a>,
    #[serde(rename = "PAYLOAD", borrow)]
    pub payload: ActionPayload<'a>,
    #[serde(rename = "STATUS", borrow)]
    pub status: ActionStatus<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPayload<'a> {
    #[serde(rename = "GAME_TOKEN", borrow)]
    pub game_token: Text<'a>,
    #[serde(rename = "USER_TOKEN", borrow)]
    pub user_token: Text<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionStatus<'a> {
    /// `ATTACK`, `NA` when there was no enemy left, or `FORFEIT`.
    #[serde(rename = "ACTION", borrow)]
    pub action: Text<'a>,
    #[serde(rename = "DETAILS", borrow)]
    pub details: ActionDetails<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ActionDetails<'a> {
    Attack {
        #[serde(rename = "ENEMY_TOKEN")]
        enemy_token: Text<'a>,
        #[serde(rename = "ENEMY_DAMAGE")]
        enemy_damage: u64,
        #[serde(rename = "ENEMY_HEALTH_PRIOR")]
        enemy_health_prior: u64,
        #[serde(rename = "ENEMY_HEALTH_POST")]
        enemy_health_post: u64,
    },
    Forfeit {
        #[serde(rename = "REASON")]
        reason: Text<'a>,
        #[serde(rename = "HEALTH_PRIOR")]
        health_prior: u64,
    },
    NoEnemy {
        #[serde(rename = "ENEMY_TOKEN")]
        enemy_token: Option<Text<'a>>,
        #[serde(rename = "ENEMY_STATUS")]
        enemy_status: Text<'a>,
    },
}

/// Read as serde's untagged enums read it (the first variant whose fields are all
/// there: an attack, a forfeit, no enemy left; other fields ignored), but in one pass:
/// serde's untagged enums first copy the whole value into a buffer of their own and
/// try each variant on it, which was most of what the ETL spent reading a game's log.
impl<'de: 'a, 'a> Deserialize<'de> for ActionDetails<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(rename = "ENEMY_TOKEN", borrow)]
            enemy_token: Option<Text<'a>>,
            #[serde(rename = "ENEMY_DAMAGE")]
            enemy_damage: Option<u64>,
            #[serde(rename = "ENEMY_HEALTH_PRIOR")]
            enemy_health_prior: Option<u64>,
            #[serde(rename = "ENEMY_HEALTH_POST")]
            enemy_health_post: Option<u64>,
            #[serde(rename = "REASON", borrow)]
            reason: Option<Text<'a>>,
            #[serde(rename = "HEALTH_PRIOR")]
            health_prior: Option<u64>,
            #[serde(rename = "ENEMY_STATUS", borrow)]
            enemy_status: Option<Text<'a>>,
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

impl<'a> ActionRecord<'a> {
    /// The record of an attack.
    pub fn attack(game: &'a str, attack: &'a super::rules::Attack, timestamp: &'a str) -> Self {
        Self {
            timestamp: timestamp.into(),
            payload: ActionPayload {
                game_token: game.into(),
                user_token: attack.attacker.as_str().into(),
            },
            status: ActionStatus {
                action: "ATTACK".into(),
                details: ActionDetails::Attack {
                    enemy_token: attack.enemy.as_str().into(),
                    enemy_damage: attack.damage,
                    enemy_health_prior: attack.enemy_health_prior,
                    enemy_health_post: attack.enemy_health_post,
                },
            },
        }
    }

    /// The record of a forfeit: the player is out, no one attacked.
    pub fn forfeit(game: &'a str, forfeit: &'a super::rules::Forfeit, timestamp: &'a str) -> Self {
        Self {
            timestamp: timestamp.into(),
            payload: ActionPayload {
                game_token: game.into(),
                user_token: forfeit.user.as_str().into(),
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
    pub fn no_enemy(game: &'a str, user: &'a str, timestamp: &'a str) -> Self {
        Self {
            timestamp: timestamp.into(),
            payload: ActionPayload {
                game_token: game.into(),
                user_token: user.into(),
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

/// A record's time, `YYYY-MM-DDTHH:MM:SSZ` in UTC, held in place: every action
/// takes one, and a string of its own would cost an allocation each.
#[derive(Clone, Copy)]
pub struct Timestamp {
    len: u8,
    text: [u8; Timestamp::CAPACITY],
}

impl Timestamp {
    /// Room for any year chrono formats (a sign and more than four digits past 9999).
    const CAPACITY: usize = 32;

    pub fn as_str(&self) -> &str {
        // Only ever filled from a `&str` cut at its end, in `timestamp_now`.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The record time format, `YYYY-MM-DDTHH:MM:SSZ` in UTC.
pub fn timestamp_now() -> Timestamp {
    with_utc_second(&chrono::Utc::now(), |second| {
        let mut out = Timestamp {
            len: 0,
            text: [0; Timestamp::CAPACITY],
        };
        // A year past what fits in `CAPACITY` is out of chrono's range anyway.
        let n = second.len().min(Timestamp::CAPACITY - 1);
        out.text[..n].copy_from_slice(&second.as_bytes()[..n]);
        out.text[n] = b'Z';
        out.len = (n + 1) as u8;
        out
    })
}

/// Calls `f` with `now` as `YYYY-MM-DDTHH:MM:SS` in UTC, which each thread formats
/// once a second.
pub(crate) fn with_utc_second<R>(
    now: &chrono::DateTime<chrono::Utc>,
    f: impl FnOnce(&str) -> R,
) -> R {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let second = now.timestamp();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = now.format("%Y-%m-%dT%H:%M:%S").to_string();
        }
        f(text)
    })
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
/// optional. STATUS is either a string (errors) or an object. Strings are borrowed
/// from the frame's text, and what a client never reads (PARTICIPANTS_HEROS, an
/// action's DETAILS, TIMESTAMP) is skipped without being copied: a bot reads a frame
/// for every request it makes.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerFrame<'a> {
    #[serde(rename = "PAYLOAD", borrow, default)]
    pub payload: ServerPayload<'a>,
    #[serde(rename = "STATUS", borrow, default)]
    pub status: Option<StatusValue<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerPayload<'a> {
    #[serde(rename = "USER_TOKEN", borrow)]
    pub user_token: Option<Text<'a>>,
    #[serde(rename = "GAME_TOKEN", borrow)]
    pub game_token: Option<Text<'a>>,
    #[serde(rename = "PARTICIPANTS", borrow)]
    pub participants: Option<Vec<Text<'a>>>,
    #[serde(rename = "HERO", borrow)]
    pub hero: Option<HeroSeen<'a>>,
}

/// A hero as a client reads it from the hero look-up: whose it is, whether the game
/// knows it (`id`), and its health.
#[derive(Clone, Debug, Deserialize)]
pub struct HeroSeen<'a> {
    #[serde(borrow)]
    pub token: Text<'a>,
    pub id: Option<HeroId>,
    pub health: u64,
}

/// A string of a server frame, borrowed from the frame's text unless a JSON escape in
/// it had to be undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Self {
        Text(Cow::Borrowed(text))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Serde's own `Cow<str>` is always owned once inside an `Option` or a `Vec`; this
/// one borrows wherever the text allows it.
impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;

        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(Visit)
    }
}

#[derive(Clone, Debug)]
pub enum StatusValue<'a> {
    Message(Text<'a>),
    Fields(StatusFields<'a>),
}

/// A string or an object, told apart by what the parser meets first. (Serde's
/// untagged enums first copy the whole value, DETAILS included, into a buffer of
/// their own, and try each variant on it: most of what a bot spent reading replies.)
impl<'de: 'a, 'a> Deserialize<'de> for StatusValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;

        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = StatusValue<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status message or an object of status fields")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<StatusValue<'de>, E> {
                Ok(StatusValue::Message(Text(Cow::Borrowed(v))))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusValue<'de>, E> {
                Ok(StatusValue::Message(Text(Cow::Owned(v.to_owned()))))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StatusValue<'de>, E> {
                Ok(StatusValue::Message(Text(Cow::Owned(v))))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StatusValue<'de>, A::Error> {
                let fields = serde::de::value::MapAccessDeserializer::new(map);
                StatusFields::deserialize(fields).map(StatusValue::Fields)
            }
        }

        deserializer.deserialize_any(Either)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StatusFields<'a> {
    #[serde(rename = "GAME", borrow)]
    pub game: Option<Text<'a>>,
    #[serde(rename = "JOINED", borrow)]
    pub joined: Option<Text<'a>>,
    #[serde(rename = "ACTION", borrow)]
    pub action: Option<Text<'a>>,
}

impl<'a> ServerFrame<'a> {
    pub fn parse(frame: &'a str) -> Option<Self> {
        serde_json::from_str(frame).ok()
    }

    /// The `STATUS.GAME` value, if any.
    pub fn game(&self) -> Option<&str> {
        match &self.status {
            Some(StatusValue::Fields(f)) => f.game.as_ref().map(Text::as_str),
            _ => None,
        }
    }

    /// The error or notice string of a `{"PAYLOAD": {}, "STATUS": "..."}` frame.
    pub fn message(&self) -> Option<&str> {
        match &self.status {
            Some(StatusValue::Message(m)) => Some(m.as_str()),
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
                enemy_token: "e".into(),
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
                enemy_token: Some("e".into()),
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
        let game = GameToken::from("g\"1");
        let user = UserToken::from("u1");
        let enemy = UserToken::from("e1");
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
                    game_token: game.as_str().into(),
                    user_token: user.as_str().into(),
                    enemy_token: enemy.as_ref().map(|e| e.as_str().into()),
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
                user_token: UserToken::from("u"),
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
        assert_eq!(a.enemy_token.as_deref(), Some("e"));
    }

    /// The frame and its payload are read in one pass: what the field-by-field
    /// reading told apart, this one tells apart the same way.
    #[test]
    fn one_pass_reading_tells_the_same_cases_apart() {
        let find = |payload: &str| Find::parse(&format!(r#"{{"PAYLOAD": {payload}}}"#));
        // Escapes are undone in keys and values alike.
        assert_eq!(
            find(r#"{"USER\u005fTOKEN": "\u0075", "PARTICIPANTS": 2}"#),
            Ok(Find {
                user_token: UserToken::from("u"),
                participants: 2
            })
        );
        // A field given twice is refused, as an unknown one given twice is not.
        assert_eq!(
            find(r#"{"USER_TOKEN": "u", "USER_TOKEN": "v", "PARTICIPANTS": 2}"#),
            Err(ProtocolError::PayloadNotObject)
        );
        assert!(find(r#"{"X": 1, "X": {"y": [2]}, "USER_TOKEN": "u", "PARTICIPANTS": 2}"#).is_ok());
        assert_eq!(
            Find::parse(r#"{"PAYLOAD": {}, "PAYLOAD": {}}"#),
            Err(ProtocolError::MalformedJson)
        );
        for odd in ["null", "true", "2.5", "-1", "\"x\"", "[]"] {
            assert_eq!(find(odd), Err(ProtocolError::PayloadNotObject), "{odd}");
        }
        // Broken JSON anywhere, inside the payload too, is malformed.
        assert_eq!(
            find(r#"{"USER_TOKEN": "u", "PARTICIPANTS": [2}"#),
            Err(ProtocolError::MalformedJson)
        );
        // PARTICIPANTS: an integer, or a string holding one; nothing else.
        for (n, expected) in [
            ("3", Ok(3)),
            ("\" 3 \"", Ok(3)),
            ("3.0", Err(ProtocolError::InvalidParticipants)),
            (
                "18446744073709551615",
                Err(ProtocolError::InvalidParticipants),
            ),
            (
                "-9223372036854775808",
                Err(ProtocolError::ParticipantsOutOfRange),
            ),
            ("null", Err(ProtocolError::InvalidParticipants)),
            ("{\"n\": 3}", Err(ProtocolError::InvalidParticipants)),
        ] {
            let read = find(&format!(r#"{{"USER_TOKEN": "u", "PARTICIPANTS": {n}}}"#));
            assert_eq!(read.map(|f| f.participants), expected, "{n}");
        }
        // A null ACTION is no missing one.
        assert_eq!(
            Action::parse(
                r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g", "ENEMY_TOKEN": "e", "ACTION": null}}"#
            ),
            Err(ProtocolError::UnknownAction)
        );
    }

    #[test]
    fn reply_shapes_are_byte_exact() {
        assert_eq!(
            ProtocolError::MissingPayload.to_frame(),
            r#"{"PAYLOAD":{},"STATUS":"MISSING PAYLOAD IN MESSAGE"}"#
        );
        assert_eq!(
            to_frame(&JoinedReply::new(GameToken::from("g"), 7)),
            r#"{"PAYLOAD":{"GAME_TOKEN":"g","HERO_ID":7},"STATUS":{"JOINED":"SUCCESS"}}"#
        );
        assert_eq!(
            to_frame(&LobbyReply::new(GameToken::from("g"), GAME_TURN)),
            r#"{"PAYLOAD":{"GAME_TOKEN":"g"},"STATUS":{"GAME":"USER'S TURN"}}"#
        );
        let (game, user) = (GameToken::from("g"), UserToken::from("u"));
        let na = ActionRecord::no_enemy(&game, &user, "2026-01-02T03:04:05Z");
        assert_eq!(
            to_frame(&na),
            r#"{"TIMESTAMP":"2026-01-02T03:04:05Z","PAYLOAD":{"GAME_TOKEN":"g","USER_TOKEN":"u"},"STATUS":{"ACTION":"NA","DETAILS":{"ENEMY_TOKEN":null,"ENEMY_STATUS":"DEAD"}}}"#
        );
    }

    /// A frame leaves the thread's buffer at its exact size, so the WebSocket layer
    /// can take it over as it is; a frame larger than the buffer keeps is written
    /// whole, and the next small frame is unharmed.
    #[test]
    fn frames_are_written_at_their_exact_size() {
        let small = LobbyReply::new(GameToken::from("g"), GAME_TURN);
        let frame = to_frame(&small);
        assert_eq!(frame.capacity(), frame.len());
        let big_token = "t".repeat(FRAME_BYTES_KEPT * 2);
        let big = to_frame(&LobbyReply::new(
            GameToken::from(big_token.as_str()),
            GAME_TURN,
        ));
        assert!(big.contains(&big_token));
        assert_eq!(big.capacity(), big.len());
        assert_eq!(to_frame(&small), frame);
        assert!(FRAME.with_borrow(Vec::capacity) <= FRAME_BYTES_KEPT);
    }

    #[test]
    fn timestamp_format() {
        let t = timestamp_now();
        assert_eq!(t.as_str().len(), 20);
        assert!(chrono::NaiveDateTime::parse_from_str(t.as_str(), "%Y-%m-%dT%H:%M:%SZ").is_ok());
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
                proptest::prop_assert!(!a.user_token.is_empty());
            }
            let _ = Login::parse(&frame);
            let _ = GameUser::parse(&frame);
        }

        #[test]
        fn valid_requests_round_trip(user in "[a-zA-Z0-9-]{1,40}", n in 2u8..=MAX_PARTICIPANTS) {
            let frame = serde_json::json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}}).to_string();
            proptest::prop_assert_eq!(
                Find::parse(&frame),
                Ok(Find { user_token: UserToken::from(user.clone()), participants: n })
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
        let text = ProtocolError::UnknownGame.to_frame();
        let f = ServerFrame::parse(&text).unwrap();
        assert_eq!(f.message(), Some("UNKNOWN GAME TOKEN"));
        let text = to_frame(&LobbyReply::new(GameToken::from("g"), GAME_COMPLETE));
        let f = ServerFrame::parse(&text).unwrap();
        assert_eq!(f.game(), Some("COMPLETE"));
        assert_eq!(
            f.payload.game_token.map(Text::into_owned).as_deref(),
            Some("g")
        );
        let f = ServerFrame::parse(
            r#"{"PAYLOAD": {"GAME_TOKEN": "g"}, "STATUS": {"ACTION": "ATTACK",
                "DETAILS": {"ENEMY_TOKEN": "e", "ENEMY_DAMAGE": 3}}}"#,
        )
        .unwrap();
        assert_eq!(f.message(), None, "an action's reply is no error");
        assert!(
            matches!(&f.status, Some(StatusValue::Fields(s)) if s.action.as_ref().map(Text::as_str) == Some("ATTACK"))
        );
        // A hero look-up's reply, and START: what a bot acts on, the heroes skipped.
        let hero = |token, health| HeroView {
            token,
            id: Some(7),
            attack: 2,
            health,
        };
        let text = to_frame(&HeroReply {
            payload: HeroPayload {
                game_token: "g",
                user_token: "u",
                hero: hero("u", 5),
            },
            status: GameStatusField {
                game: GAME_HERO_SPEC,
            },
        });
        let f = ServerFrame::parse(&text).unwrap();
        let seen = f.payload.hero.unwrap();
        assert_eq!(
            (seen.token.as_str(), seen.id, seen.health),
            ("u", Some(7), 5)
        );
        let text = to_frame(&StartReply {
            payload: StartPayload {
                game_token: GameToken::from("g"),
                participants: vec![UserToken::from("a"), UserToken::from("b")],
                participants_heros: BTreeMap::from([
                    (UserToken::from("a"), hero("a", 1)),
                    (UserToken::from("b"), hero("b", 2)),
                ]),
            },
            status: GameStatusField { game: GAME_START },
        });
        let f = ServerFrame::parse(&text).unwrap();
        assert_eq!(f.game(), Some(GAME_START));
        let all: Vec<&str> = f
            .payload
            .participants
            .iter()
            .flatten()
            .map(Text::as_str)
            .collect();
        assert_eq!(all, ["a", "b"]);
        // Strings are borrowed from the frame, unless an escape had to be undone.
        let f =
            ServerFrame::parse(r#"{"PAYLOAD": {"GAME_TOKEN": "g1"}, "STATUS": "a\"b"}"#).unwrap();
        assert!(matches!(
            f.payload.game_token,
            Some(Text(Cow::Borrowed("g1")))
        ));
        assert_eq!(f.message(), Some("a\"b"));
        let f = ServerFrame::parse(r#"{"PAYLOAD": {"GAME_TOKEN": "g\u0031"}}"#).unwrap();
        assert_eq!(
            f.payload.game_token.map(Text::into_owned).as_deref(),
            Some("g1")
        );
        let f = ServerFrame::parse(r#"{"PAYLOAD": {}, "STATUS": null}"#).unwrap();
        assert!(f.status.is_none());
        for odd in ["1", "[]", "true"] {
            let frame = format!(r#"{{"PAYLOAD": {{}}, "STATUS": {odd}}}"#);
            assert!(ServerFrame::parse(&frame).is_none(), "{frame}");
        }
    }
}
