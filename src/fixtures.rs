//! Rosters and finished games made directly through the store API, without server or
//! bots: the input of tests and of the ETL benchmark.

use crate::events::{CLEANING_GAME_RECORDS, envelope_json};
use crate::game::{GameStatus, GameToken, UserToken};
use crate::roster::{Powerstats, RosterHero};
use crate::store::{GameStore, StoreError};

/// A roster of `n` identical heroes, for games whose course is known in advance:
/// health = 10 × `health_stat`, attack = `attack_stat`.
pub fn uniform_roster(n: u32, attack_stat: u64, health_stat: u64) -> Vec<RosterHero> {
    (1..=n)
        .map(|id| RosterHero {
            id,
            name: format!("Hero {id}"),
            // health = 10 × i × s × d, attack = sp × p × c
            stats: Powerstats {
                intelligence: 1,
                strength: 1,
                speed: 1,
                durability: health_stat,
                power: 1,
                combat: attack_stat,
            },
            other: serde_json::Map::new(),
        })
        .collect()
}

/// A finished game and its `Cleaning Game Records` events, one per participant.
pub struct FinishedGame {
    pub game: GameToken,
    pub host: UserToken,
    pub events: Vec<Vec<u8>>,
}

/// Plays game number `i` between two new users to its end, each attacking the other
/// in turn. The store must hold a roster.
pub async fn play_two_player_game<S: GameStore>(
    store: &S,
    i: usize,
) -> Result<FinishedGame, StoreError> {
    let roster = store.roster().await?;
    let (a, _) = store.login(&format!("FIXTURE-A{i}")).await?;
    let (b, _) = store.login(&format!("FIXTURE-B{i}")).await?;
    let game = store
        .join(&a, 2, &GameToken::new_random(), &roster)
        .await?
        .game;
    store.join(&b, 2, &GameToken::new_random(), &roster).await?;
    store.start(&game).await?;
    loop {
        let Some(snap) = store.snapshot(&game).await? else {
            return Err(StoreError::UnknownGame);
        };
        if snap.board.status != GameStatus::InProgress {
            break;
        }
        let (attacker, enemy) = (snap.board.order[0].clone(), snap.board.order[1].clone());
        store
            .attack(&game, &attacker, &enemy, 1000, "2026-01-01T00:00:00Z")
            .await?;
    }
    let events = [&a, &b]
        .iter()
        .map(|user| {
            let task = serde_json::json!({"game_token": game, "user_token": user}).to_string();
            envelope_json(
                tracing::Level::INFO,
                "2026-01-01T00:00:00.000Z",
                "memory.lib.server.lobby",
                CLEANING_GAME_RECORDS,
                Some(&task),
            )
            .into_bytes()
        })
        .collect();
    Ok(FinishedGame {
        game,
        host: a,
        events,
    })
}
