//! The hero collection: reading the Super Hero API format, cleaning its stats,
//! deriving health and attack, and a deterministic synthetic roster so that nothing
//! has to be downloaded ([`pull`] downloads the real one from the API, with the
//! user's token).
//!
//! The API gives powerstats as strings; `"null"` and `"0"` count as 1. Then
//! health = 10 × intelligence × strength × durability and
//! attack = speed × power × combat, as the original simulator computed them.

pub mod pull;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::game::{Hero, HeroId};

/// Why a roster file could not be read.
#[derive(Debug, Error)]
pub enum RosterError {
    #[error("the roster is not a JSON array of heroes: {0}")]
    Format(#[from] serde_json::Error),
    #[error("hero at position {index}: id {id:?} is not a positive whole number")]
    BadId { index: usize, id: String },
    #[error("hero {id}: powerstat {stat} is {value:?}, not a whole number from 0 to 10000")]
    BadStat {
        id: HeroId,
        stat: &'static str,
        value: String,
    },
    #[error("hero id {0} appears twice")]
    DuplicateId(HeroId),
    #[error("the roster is empty")]
    Empty,
}

/// The six powerstats after cleaning (each at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Powerstats {
    pub intelligence: u64,
    pub strength: u64,
    pub speed: u64,
    pub durability: u64,
    pub power: u64,
    pub combat: u64,
}

impl Powerstats {
    pub fn health(&self) -> u64 {
        10 * self.intelligence * self.strength * self.durability
    }
    pub fn attack(&self) -> u64 {
        self.speed * self.power * self.combat
    }
}

/// One hero of the roster, with everything the API gave kept for the store.
#[derive(Clone, Debug, PartialEq)]
pub struct RosterHero {
    pub id: HeroId,
    pub name: String,
    pub stats: Powerstats,
    /// biography, appearance, work, connections, image: kept as given.
    pub other: Map<String, Value>,
}

impl RosterHero {
    /// The hero as a game starts with it.
    pub fn hero(&self) -> Hero {
        Hero {
            id: self.id,
            attack: self.stats.attack(),
            health: self.stats.health(),
        }
    }

    /// The value stored in the `superheros` hash (field = id): the API object without
    /// `response` and `id`, powerstats cleaned and extended with health and attack.
    pub fn stored_json(&self) -> String {
        let mut obj = Map::new();
        obj.insert("name".into(), Value::String(self.name.clone()));
        let mut stats = match serde_json::to_value(self.stats) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        stats.insert("health".into(), self.stats.health().into());
        stats.insert("attack".into(), self.stats.attack().into());
        obj.insert("powerstats".into(), Value::Object(stats));
        for (k, v) in &self.other {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj).to_string()
    }
}

/// Reads a hero back from its stored JSON (as written by [`RosterHero::stored_json`]
/// or by the original simulator).
pub fn hero_from_stored(id: HeroId, json: &str) -> Option<Hero> {
    #[derive(Deserialize)]
    struct Stored {
        powerstats: StoredStats,
    }
    #[derive(Deserialize)]
    struct StoredStats {
        health: u64,
        attack: u64,
    }
    let s: Stored = serde_json::from_str(json).ok()?;
    Some(Hero {
        id,
        attack: s.powerstats.attack,
        health: s.powerstats.health,
    })
}

/// The API's hero object, read leniently: ids and stats may be strings or numbers.
#[derive(Deserialize)]
struct ApiHero {
    id: Value,
    #[serde(default)]
    name: String,
    powerstats: Map<String, Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

const STATS: [&str; 6] = [
    "intelligence",
    "strength",
    "speed",
    "durability",
    "power",
    "combat",
];

fn clean_stat(id: HeroId, stat: &'static str, value: Option<&Value>) -> Result<u64, RosterError> {
    let bad = |v: &Value| RosterError::BadStat {
        id,
        stat,
        value: v.to_string(),
    };
    let n = match value {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) if s == "null" || s.is_empty() => 0,
        Some(v @ Value::String(s)) => s.trim().parse::<u64>().map_err(|_| bad(v))?,
        Some(v @ Value::Number(n)) => n.as_u64().ok_or_else(|| bad(v))?,
        Some(v) => return Err(bad(v)),
    };
    if n > 10_000 {
        return Err(bad(value.unwrap_or(&Value::Null)));
    }
    Ok(n.max(1))
}

fn parse_id(index: usize, id: &Value) -> Result<HeroId, RosterError> {
    let parsed = match id {
        Value::String(s) => s.trim().parse::<HeroId>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| HeroId::try_from(n).ok()),
        _ => None,
    };
    match parsed {
        Some(n) if n > 0 => Ok(n),
        _ => Err(RosterError::BadId {
            index,
            id: id.to_string(),
        }),
    }
}

/// Parses a collection in the Super Hero API format (a JSON array of hero objects).
pub fn parse_api(json: &str) -> Result<Vec<RosterHero>, RosterError> {
    let raw: Vec<ApiHero> = serde_json::from_str(json)?;
    if raw.is_empty() {
        return Err(RosterError::Empty);
    }
    let mut seen = std::collections::HashSet::new();
    let mut heroes = Vec::with_capacity(raw.len());
    for (index, api) in raw.into_iter().enumerate() {
        let id = parse_id(index, &api.id)?;
        if !seen.insert(id) {
            return Err(RosterError::DuplicateId(id));
        }
        let s = |stat| clean_stat(id, stat, api.powerstats.get(stat));
        let stats = Powerstats {
            intelligence: s(STATS[0])?,
            strength: s(STATS[1])?,
            speed: s(STATS[2])?,
            durability: s(STATS[3])?,
            power: s(STATS[4])?,
            combat: s(STATS[5])?,
        };
        let mut other = api.other;
        other.remove("response");
        heroes.push(RosterHero {
            id,
            name: api.name,
            stats,
            other,
        });
    }
    Ok(heroes)
}

const SYLLABLES: [&str; 24] = [
    "ar", "bel", "cor", "dra", "el", "fen", "gar", "hex", "ion", "jax", "kor", "lum", "mor", "nyx",
    "or", "pyr", "quin", "rax", "sol", "tor", "ul", "vex", "wyn", "zed",
];
const TITLES: [&str; 8] = [
    "Captain", "Doctor", "Lady", "Mister", "The", "Iron", "Shadow", "Star",
];

/// A synthetic roster of `count` heroes numbered 1..=count. The same seed always
/// gives the same heroes. It has the shape of the real collection, so games last
/// about as long: about one hero in four has no stats at all (every powerstat
/// `"null"`, so 1), the others draw each powerstat from 10..=100, close to the real spread.
pub fn synthetic(count: u32, seed: u64) -> Vec<RosterHero> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (1..=count)
        .map(|id| {
            let unknown = rng.random_bool(0.23);
            let mut stat = || -> u64 {
                if unknown {
                    1
                } else {
                    rng.random_range(10..=100)
                }
            };
            let stats = Powerstats {
                intelligence: stat(),
                strength: stat(),
                speed: stat(),
                durability: stat(),
                power: stat(),
                combat: stat(),
            };
            let title = TITLES[rng.random_range(0..TITLES.len())];
            let parts = rng.random_range(2..=3);
            let mut word = String::new();
            for _ in 0..parts {
                word.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
            }
            let mut chars = word.chars();
            let word = match chars.next() {
                Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
                None => word,
            };
            let name = format!("{title} {word}");
            let mut other = Map::new();
            other.insert(
                "biography".into(),
                serde_json::json!({"full-name": name, "publisher": "superhero synthetic roster"}),
            );
            RosterHero {
                id,
                name,
                stats,
                other,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_and_formula() {
        let json = r#"[{"response":"success","id":"1","name":"A-Bomb","powerstats":
            {"intelligence":"38","strength":"100","speed":"17","durability":"80","power":"24","combat":"64"},
            "image":{"url":"x"}},
            {"id":"2","name":"Nobody","powerstats":
            {"intelligence":"null","strength":"0","speed":"null","durability":"2","power":"3","combat":"4"}}]"#;
        let heroes = parse_api(json).unwrap();
        assert_eq!(heroes.len(), 2);
        assert_eq!(heroes[0].hero().health, 3_040_000);
        assert_eq!(heroes[0].hero().attack, 26_112);
        assert_eq!(heroes[1].stats.intelligence, 1);
        assert_eq!(heroes[1].stats.strength, 1);
        assert_eq!(heroes[1].hero().health, 20);
        assert_eq!(heroes[1].hero().attack, 12);
        let stored = heroes[0].stored_json();
        assert!(!stored.contains("response"));
        assert!(!stored.contains("\"id\""));
        assert_eq!(hero_from_stored(1, &stored), Some(heroes[0].hero()));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(matches!(parse_api("{}"), Err(RosterError::Format(_))));
        assert!(matches!(parse_api("[]"), Err(RosterError::Empty)));
        let bad = r#"[{"id":"x","powerstats":{}}]"#;
        assert!(matches!(parse_api(bad), Err(RosterError::BadId { .. })));
        let bad = r#"[{"id":"3","powerstats":{"speed":"fast"}}]"#;
        let err = parse_api(bad).unwrap_err().to_string();
        assert!(err.contains("speed"), "{err}");
        let dup = r#"[{"id":"3","powerstats":{}},{"id":3,"powerstats":{}}]"#;
        assert!(matches!(parse_api(dup), Err(RosterError::DuplicateId(3))));
    }

    #[test]
    fn synthetic_is_deterministic_and_in_range() {
        let a = synthetic(50, 7);
        assert_eq!(a, synthetic(50, 7));
        assert_ne!(a, synthetic(50, 8));
        assert_eq!(a.len(), 50);
        assert_eq!(a[0].id, 1);
        for h in &a {
            for v in [h.stats.intelligence, h.stats.strength, h.stats.combat] {
                assert!((1..=100).contains(&v));
            }
            let back = hero_from_stored(h.id, &h.stored_json()).unwrap();
            assert_eq!(back, h.hero());
        }
    }
}
