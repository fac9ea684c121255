//! Tokens, hero stats and the game status strings, each defined once.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a token type: immutable text shared, not copied, by every clone (a game's
/// board, its signals and its log records each hold its players' tokens).
macro_rules! token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// A fresh random token.
            pub fn new_random() -> Self {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                Self(Arc::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text)))
            }
            /// The token as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by tokens are looked up with the text alone: a token hashes,
        /// compares and orders as its text does.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// A token is its text: `&token` goes where a `&str` is asked for.
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(Arc::from(text))
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self(Arc::from(text))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(TokenVisitor).map(Self)
            }
        }
    };
}

/// Reads a token's text into one shared allocation, however the format hands it over.
struct TokenVisitor;

impl Visitor<'_> for TokenVisitor {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(v))
    }
}

token!(
    /// A player's token, as handed out by `/api/v1/login` (a UUIDv4 string).
    UserToken
);

token!(
    /// A game's token, as handed out by `/api/v1/game/find` (a UUIDv4 string).
    GameToken
);

/// A hero's id in the roster (the Super Hero API numbers them from 1).
pub type HeroId = u32;

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

    #[test]
    fn tokens_read_and_write_as_json_strings_and_share_their_text() {
        let plain: UserToken = serde_json::from_str(r#""ab-12""#).unwrap();
        assert_eq!(plain, UserToken::from("ab-12"));
        // An escaped string reaches the visitor as a copy, not borrowed from the input.
        let escaped: GameToken = serde_json::from_str(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(escaped.as_str(), "a\"b\u{e9}");
        assert_eq!(serde_json::to_string(&escaped).unwrap(), r#""a\"bé""#);
        assert!(serde_json::from_str::<UserToken>("7").is_err());
        assert!(serde_json::from_str::<UserToken>("null").is_err());

        let copy = plain.clone();
        assert!(std::ptr::eq(copy.as_str(), plain.as_str()));

        let fresh = UserToken::new_random();
        let parsed = uuid::Uuid::parse_str(fresh.as_str()).unwrap();
        assert_eq!(parsed.hyphenated().to_string(), fresh.as_str());
        assert_ne!(fresh, UserToken::new_random());
    }
}
