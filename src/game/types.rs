//! Tokens, hero stats and the game status strings, each defined once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A player's token, as handed out by `/api/v1/login` (a UUIDv4 string).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserToken(pub String);

/// A game's token, as handed out by `/api/v1/game/find` (a UUIDv4 string).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GameToken(pub String);

/// A hero's id in the roster (the Super Hero API numbers them from 1).
pub type HeroId = u32;

impl UserToken {
    /// A fresh random token.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl GameToken {
    /// A fresh random token.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for GameToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A hero as it stands in one game: the roster id and its current numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hero {
    pub id: HeroId,
    pub attack: u64,
    pub health: u64,
}

impl Hero {
    /// Whether the hero has health left.
    pub fn is_alive(&self) -> bool {
        self.health > 0
    }
}

/// The value of `games:<game>:status`. The strings are the original server's, so a
/// `GET games:<g>:status` in redis-cli reads the same as it always did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GameStatus {
    #[serde(rename = "Initializing")]
    Initializing,
    #[serde(rename = "Waiting Lobby")]
    WaitingLobby,
    #[serde(rename = "Starting")]
    Starting,
    #[serde(rename = "In-Progress")]
    InProgress,
    #[serde(rename = "Completed")]
    Completed,
    #[serde(rename = "Timed Out")]
    TimedOut,
}

impl GameStatus {
    /// The exact string the original stores and sends.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "Initializing",
            Self::WaitingLobby => "Waiting Lobby",
            Self::Starting => "Starting",
            Self::InProgress => "In-Progress",
            Self::Completed => "Completed",
            Self::TimedOut => "Timed Out",
        }
    }

    /// The status an original string names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Initializing" => Some(Self::Initializing),
            "Waiting Lobby" => Some(Self::WaitingLobby),
            "Starting" => Some(Self::Starting),
            "In-Progress" => Some(Self::InProgress),
            "Completed" => Some(Self::Completed),
            "Timed Out" => Some(Self::TimedOut),
            _ => None,
        }
    }

    /// A game a new player may still join.
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Initializing | Self::WaitingLobby)
    }

    /// A game that will never change again.
    pub const fn is_over(self) -> bool {
        matches!(self, Self::Completed | Self::TimedOut)
    }

    /// How far along the life-cycle a status is; later states never go back.
    pub const fn phase(self) -> u8 {
        match self {
            Self::Initializing | Self::WaitingLobby => 0,
            Self::Starting => 1,
            Self::InProgress => 2,
            Self::Completed | Self::TimedOut => 3,
        }
    }
}

impl fmt::Display for GameStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_round_trip() {
        for s in [
            GameStatus::Initializing,
            GameStatus::WaitingLobby,
            GameStatus::Starting,
            GameStatus::InProgress,
            GameStatus::Completed,
            GameStatus::TimedOut,
        ] {
            assert_eq!(GameStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(GameStatus::parse("Waiting Player"), None);
    }
}
