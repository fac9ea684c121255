//! The ETL of a finished game: pure functions from the game's records (its players,
//! their heroes and the attack log) to the rows of GAME_META and GAME_PODIUM.
//!
//! Ranks count the right way: 1 for the winner, then the survivors of a capped game by
//! health left, then the eliminated, the last one eliminated first, so the first hero
//! eliminated gets the last rank. A player who forfeited (out of time, or gone) is
//! eliminated at the moment of the forfeit, like a hero killed then.

pub mod tables;

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::game::protocol::{ActionDetails, ActionRecord, Text};
use crate::game::rules::ForfeitReason;
use crate::game::{GameStatus, GameToken, Hero, UserToken};

/// A finished game as read from the store in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GameExtract {
    pub game: GameToken,
    pub status: GameStatus,
    pub participants: u8,
    pub host: UserToken,
    /// Every member's hero, with the health it has now.
    pub heroes: BTreeMap<UserToken, Hero>,
    /// The records of `games:<game>:logs`, oldest first.
    pub logs: Vec<String>,
    /// The batch a worker put the game in before writing it, if one did.
    pub batch: Option<String>,
}

/// A GAME_META row: who played which hero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaRow {
    pub game_token: String,
    pub user_token: String,
    pub superhero_id: u16,
}

/// A GAME_PODIUM row: how one player did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodiumRow {
    pub game_token: String,
    pub user_token: String,
    pub rank: u8,
    pub rounds: u16,
    pub damage_received: u64,
    pub damage_sent: u64,
}

/// Both tables of one game.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GameTables {
    pub meta: Vec<MetaRow>,
    pub podium: Vec<PodiumRow>,
}

#[derive(Debug, Error, PartialEq, Eq)]
/// Why a game's records cannot become rows.
pub enum EtlError {
    #[error("game {game}: log record {index} is not an attack record: {reason}")]
    BadLog {
        game: String,
        index: usize,
        reason: String,
    },
    #[error("game {game}: log record {index} names {user}, who is not in the game")]
    Stranger {
        game: String,
        index: usize,
        user: String,
    },
    #[error("game {game}: {what} {value} does not fit the column type")]
    OutOfRange {
        game: String,
        what: &'static str,
        value: u64,
    },
}

/// One attack as the log records it, its tokens borrowed from the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackLog<'a> {
    pub attacker: Text<'a>,
    pub enemy: Text<'a>,
    pub damage: u64,
    pub health_post: u64,
}

/// One record of a game's log that the tables count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry<'a> {
    Attack(AttackLog<'a>),
    Forfeit {
        user: Text<'a>,
        reason: ForfeitReason,
    },
}

/// Reads the attack and forfeit records of a game's log, borrowing their tokens from
/// the records' text. Records without an attack (the `NA` action of a game with no
/// enemy left) carry no damage and are skipped.
pub fn parse_logs<'a>(game: &GameToken, logs: &'a [String]) -> Result<Vec<LogEntry<'a>>, EtlError> {
    let mut out = Vec::with_capacity(logs.len());
    for (index, text) in logs.iter().enumerate() {
        let record: ActionRecord<'a> =
            serde_json::from_str(text).map_err(|e| EtlError::BadLog {
                game: game.to_string(),
                index,
                reason: e.to_string(),
            })?;
        match record.status.details {
            ActionDetails::Attack {
                enemy_token,
                enemy_damage,
                enemy_health_post,
                ..
            } => out.push(LogEntry::Attack(AttackLog {
                attacker: record.payload.user_token,
                enemy: enemy_token,
                damage: enemy_damage,
                health_post: enemy_health_post,
            })),
            ActionDetails::Forfeit { reason, .. } => {
                let reason =
                    ForfeitReason::parse(reason.as_str()).ok_or_else(|| EtlError::BadLog {
                        game: game.to_string(),
                        index,
                        reason: format!("unknown forfeit reason {:?}", reason.as_str()),
                    })?;
                out.push(LogEntry::Forfeit {
                    user: record.payload.user_token,
                    reason,
                });
            }
            ActionDetails::NoEnemy { .. } => {}
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    sent: u64,
    received: u64,
    /// Position in the elimination sequence, if eliminated.
    eliminated: Option<usize>,
}

/// Turns a finished game into its rows. GAME_META has one row per participant, only
/// for games with more than one; GAME_PODIUM one row per participant who attacked or
/// was attacked, ranked 1..=k among those k. In a game with forfeits, those who
/// forfeited and every survivor are ranked too, so a game won by a forfeit has a
/// winner.
pub fn transform(extract: &GameExtract) -> Result<GameTables, EtlError> {
    let game = extract.game.as_str();
    let entries = parse_logs(&extract.game, &extract.logs)?;

    let mut meta = Vec::new();
    if extract.heroes.len() > 1 {
        for (user, hero) in &extract.heroes {
            meta.push(MetaRow {
                game_token: game.to_string(),
                user_token: user.to_string(),
                superhero_id: fit(game, "superhero_id", u64::from(hero.id))?,
            });
        }
    }

    let mut tallies: HashMap<&str, Tally> = HashMap::new();
    let mut eliminations = 0usize;
    let mut eliminate = |t: &mut Tally| {
        if t.eliminated.is_none() {
            t.eliminated = Some(eliminations);
            eliminations += 1;
        }
    };
    let stranger = |index: usize, user: &str| {
        (!extract.heroes.contains_key(user)).then(|| EtlError::Stranger {
            game: game.to_string(),
            index,
            user: user.to_string(),
        })
    };
    let mut forfeits = false;
    for (index, entry) in entries.iter().enumerate() {
        match entry {
            LogEntry::Attack(a) => {
                let (attacker, enemy) = (a.attacker.as_str(), a.enemy.as_str());
                if let Some(e) = stranger(index, attacker).or_else(|| stranger(index, enemy)) {
                    return Err(e);
                }
                let attacker = tallies.entry(attacker).or_default();
                attacker.rounds += 1;
                attacker.sent = attacker.sent.saturating_add(a.damage);
                let enemy = tallies.entry(enemy).or_default();
                enemy.received = enemy.received.saturating_add(a.damage);
                if a.health_post == 0 {
                    eliminate(enemy);
                }
            }
            LogEntry::Forfeit { user, .. } => {
                if let Some(e) = stranger(index, user.as_str()) {
                    return Err(e);
                }
                forfeits = true;
                eliminate(tallies.entry(user.as_str()).or_default());
            }
        }
    }
    if forfeits {
        for (user, hero) in &extract.heroes {
            if hero.is_alive() {
                tallies.entry(user.as_str()).or_default();
            }
        }
    }

    // Survivors first, most health left first (ties by token, as the turn cap ranks
    // them); then the eliminated, the last eliminated first.
    let health = |u: &str| extract.heroes.get(u).map_or(0, |h| h.health);
    let mut ranked: Vec<(&str, &Tally)> = tallies.iter().map(|(u, t)| (*u, t)).collect();
    ranked.sort_by(|(ua, ta), (ub, tb)| match (ta.eliminated, tb.eliminated) {
        (None, None) => health(ub).cmp(&health(ua)).then_with(|| ua.cmp(ub)),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    });

    let mut podium = Vec::with_capacity(ranked.len());
    for (place, (user, t)) in ranked.into_iter().enumerate() {
        podium.push(PodiumRow {
            game_token: game.to_string(),
            user_token: user.to_string(),
            rank: fit(game, "rank", place as u64 + 1)?,
            rounds: fit(game, "rounds", t.rounds)?,
            damage_received: t.received,
            damage_sent: t.sent,
        });
    }
    Ok(GameTables { meta, podium })
}

fn fit<T: TryFrom<u64>>(game: &str, what: &'static str, value: u64) -> Result<T, EtlError> {
    T::try_from(value).map_err(|_| EtlError::OutOfRange {
        game: game.to_string(),
        what,
        value,
    })
}

#[cfg(test)]
mod tests;
