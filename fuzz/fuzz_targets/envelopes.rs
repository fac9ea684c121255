//! What a worker reads from a broker: an event envelope, in the original's form or
//! double-encoded; and a game's log records as the ETL reads them from the store.
//! Anything else is an error, never a panic.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use superhero::etl::{self, GameExtract};
use superhero::events::Envelope;
use superhero::game::{GameStatus, GameToken, Hero, UserToken};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        let _ = envelope.task_str("game_token");
        let _ = envelope.task_str("user_token");
    }
    let logs: Vec<String> = String::from_utf8_lossy(data)
        .lines()
        .map(str::to_string)
        .collect();
    let hero = |id| Hero {
        id,
        attack: 10,
        health: 0,
    };
    let heroes: BTreeMap<UserToken, Hero> = [
        (UserToken("a".into()), hero(1)),
        (UserToken("b".into()), hero(2)),
    ]
    .into_iter()
    .collect();
    let extract = GameExtract {
        game: GameToken("g".into()),
        status: GameStatus::Completed,
        participants: 2,
        host: UserToken("a".into()),
        heroes,
        logs,
        batch: None,
    };
    if let Ok(tables) = etl::transform(&extract) {
        let ranks: Vec<u8> = tables.podium.iter().map(|r| r.rank).collect();
        assert!(ranks.iter().all(|r| usize::from(*r) <= tables.podium.len()));
    }
});
