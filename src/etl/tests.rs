use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::game::protocol::{ActionRecord, to_frame};
use crate::game::rules::{self, Board, Finish, ForfeitReason};

fn user(i: usize) -> UserToken {
    UserToken::from(format!("user-{i}"))
}

/// A pick at or above this makes the player whose turn it is forfeit instead.
const FORFEIT_PICK: usize = 8;

/// Plays a whole game by the rules, each player attacking the living enemy `pick`
/// chooses (or forfeiting, for a pick of [`FORFEIT_PICK`] or more), and returns what
/// the store would hold at the end plus how it finished.
fn play(heroes: &[Hero], turn_cap: u32, picks: &[usize]) -> (GameExtract, Option<Finish>) {
    let game = GameToken::from("game-1");
    let members: BTreeMap<UserToken, Hero> = heroes
        .iter()
        .enumerate()
        .map(|(i, h)| (user(i), *h))
        .collect();
    let mut board = Board {
        status: GameStatus::InProgress,
        order: rules::turn_order(members.keys()),
        heroes: members,
        turns: 0,
        forfeits: 0,
    };
    let mut logs = Vec::new();
    let mut finish = None;
    let mut step = 0;
    while board.status == GameStatus::InProgress {
        let attacker = board.order[0].clone();
        let enemies: Vec<UserToken> = board.order[1..].to_vec();
        let pick = picks.get(step).copied().unwrap_or(0);
        step += 1;
        if pick >= FORFEIT_PICK {
            let turn = Some((board.turns, board.forfeits));
            let forfeit =
                rules::plan_forfeit(&board, &attacker, ForfeitReason::TurnTimeout, turn).unwrap();
            logs.push(to_frame(&ActionRecord::forfeit(
                &game,
                &forfeit,
                "2026-01-01T00:00:00Z",
            )));
            rules::apply_forfeit(&mut board, &forfeit);
            finish = forfeit.finish.clone();
            continue;
        }
        let enemy = enemies[pick % enemies.len()].clone();
        let attack = rules::plan_attack(&board, &attacker, &enemy, turn_cap).unwrap();
        logs.push(to_frame(&ActionRecord::attack(
            &game,
            &attack,
            "2026-01-01T00:00:00Z",
        )));
        rules::apply(&mut board, &attack);
        finish = attack.finish.clone();
    }
    let extract = GameExtract {
        game,
        status: board.status,
        participants: u8::try_from(heroes.len()).unwrap(),
        host: user(0),
        heroes: board.heroes,
        logs,
        batch: None,
    };
    (extract, finish)
}

fn hero(id: u32, attack: u64, health: u64) -> Hero {
    Hero { id, attack, health }
}

#[test]
fn three_player_game_ranks_the_first_eliminated_last() {
    // user-0 kills user-1 at once, then user-2 and user-0 trade blows; user-2 wins.
    let heroes = [hero(7, 100, 1000), hero(8, 1, 50), hero(9, 600, 5000)];
    let (extract, finish) = play(&heroes, 1000, &[0, 0, 0, 0, 0, 0]);
    assert_eq!(finish, Some(Finish::LastStanding(user(2))));
    let tables = transform(&extract).unwrap();

    let rank = |u: usize| {
        tables
            .podium
            .iter()
            .find(|r| r.user_token == user(u).as_str())
            .unwrap()
            .rank
    };
    assert_eq!((rank(2), rank(0), rank(1)), (1, 2, 3));
    assert_eq!(tables.meta.len(), 3);
    assert_eq!(
        tables
            .meta
            .iter()
            .map(|m| m.superhero_id)
            .collect::<Vec<_>>(),
        [7, 8, 9]
    );
    let p0 = tables
        .podium
        .iter()
        .find(|r| r.user_token == "user-0")
        .unwrap();
    // Damage is the attacker's attack, as in the original: user-0 hit user-1 for 100
    // (though it had 50 left) and user-2 once for 100, and took two hits of 600.
    assert_eq!(p0.rounds, 2);
    assert_eq!(p0.damage_sent, 200);
    assert_eq!(p0.damage_received, 1200);
}

#[test]
fn turn_cap_ranks_survivors_by_health_left() {
    let heroes = [hero(1, 1, 1_000_000), hero(2, 2, 1_000_000)];
    let (extract, finish) = play(&heroes, 10, &[]);
    let Some(Finish::TurnCap(ranking)) = finish else {
        panic!("expected the turn cap, got {finish:?}");
    };
    let tables = transform(&extract).unwrap();
    let by_rank: Vec<String> = {
        let mut rows = tables.podium.clone();
        rows.sort_by_key(|r| r.rank);
        rows.into_iter().map(|r| r.user_token).collect()
    };
    let expected: Vec<String> = ranking.iter().map(|u| u.as_str().to_owned()).collect();
    assert_eq!(by_rank, expected);
    assert_eq!(by_rank[0], "user-1");
}

#[test]
fn single_player_games_have_no_meta_and_no_podium() {
    let extract = GameExtract {
        game: GameToken::from("g"),
        status: GameStatus::TimedOut,
        participants: 2,
        host: user(0),
        heroes: [(user(0), hero(1, 1, 1))].into_iter().collect(),
        logs: vec![],
        batch: None,
    };
    assert_eq!(transform(&extract).unwrap(), GameTables::default());
}

#[test]
fn bad_records_are_reported_not_skipped() {
    let (mut extract, _) = play(&[hero(1, 10, 10), hero(2, 10, 10)], 100, &[]);
    extract.logs.push("{\"broken\":".into());
    let err = transform(&extract).unwrap_err();
    assert!(matches!(err, EtlError::BadLog { index: 1, .. }), "{err}");

    let (mut extract, _) = play(&[hero(1, 10, 10), hero(2, 10, 10)], 100, &[]);
    extract.heroes.remove(&user(1));
    assert!(matches!(
        transform(&extract).unwrap_err(),
        EtlError::Stranger { .. }
    ));

    let (mut extract, _) = play(&[hero(70_000, 10, 10), hero(2, 10, 10)], 100, &[]);
    extract.heroes.get_mut(&user(0)).unwrap().id = 70_000;
    assert!(matches!(
        transform(&extract).unwrap_err(),
        EtlError::OutOfRange {
            what: "superhero_id",
            ..
        }
    ));
}

fn arb_hero() -> impl Strategy<Value = Hero> {
    (1u32..700, 1u64..50, 1u64..400).prop_map(|(id, attack, health)| hero(id, attack, health))
}

proptest! {
    #[test]
    fn podium_properties(
        heroes in prop::collection::vec(arb_hero(), 2..=4),
        picks in prop::collection::vec(0usize..10, 0..64),
        cap in 1u32..60,
    ) {
        let (extract, finish) = play(&heroes, cap, &picks);
        let tables = transform(&extract).unwrap();
        let entries = parse_logs(&extract.game, &extract.logs).unwrap();
        let attacks: Vec<&AttackLog> = entries
            .iter()
            .filter_map(|e| match e {
                LogEntry::Attack(a) => Some(a),
                LogEntry::Forfeit { .. } => None,
            })
            .collect();
        let first_out = entries.iter().find_map(|e| match e {
            LogEntry::Attack(a) if a.health_post == 0 => Some(&a.enemy),
            LogEntry::Forfeit { user, .. } => Some(user),
            LogEntry::Attack(_) => None,
        });
        let k = tables.podium.len();

        // Ranks are a permutation of 1..=k.
        let mut ranks: Vec<u8> = tables.podium.iter().map(|r| r.rank).collect();
        ranks.sort_unstable();
        prop_assert_eq!(ranks, (1..=k as u8).collect::<Vec<_>>());

        // The winner has health left; the first eliminated ranks last.
        let winner = tables.podium.iter().find(|r| r.rank == 1).unwrap();
        prop_assert!(extract.heroes[&UserToken::from(winner.user_token.clone())].health > 0);
        if let Some(first_out) = first_out {
            let last = tables.podium.iter().find(|r| r.rank as usize == k).unwrap();
            prop_assert_eq!(last.user_token.as_str(), first_out.as_str());
        }
        // Whoever forfeited ranks below every survivor.
        for e in &entries {
            if let LogEntry::Forfeit { user, .. } = e {
                let rank = |u: &str| tables.podium.iter().find(|r| r.user_token == u).map(|r| r.rank);
                let mine = rank(user.as_str());
                prop_assert!(mine.is_some(), "a player who forfeited is ranked");
                for (other, h) in &extract.heroes {
                    if h.is_alive() {
                        prop_assert!(rank(other.as_str()) < mine);
                    }
                }
            }
        }
        if let Some(Finish::LastStanding(w)) = &finish {
            prop_assert_eq!(winner.user_token.as_str(), w.as_str());
        }

        // Damage and rounds add up to the attack log.
        for row in &tables.podium {
            let me = UserToken::from(row.user_token.clone());
            let sent: u64 = attacks.iter().filter(|a| a.attacker.as_str() == me.as_str()).map(|a| a.damage).sum();
            let got: u64 = attacks.iter().filter(|a| a.enemy.as_str() == me.as_str()).map(|a| a.damage).sum();
            let rounds = attacks.iter().filter(|a| a.attacker.as_str() == me.as_str()).count();
            prop_assert_eq!(row.damage_sent, sent);
            prop_assert_eq!(row.damage_received, got);
            prop_assert_eq!(usize::from(row.rounds), rounds);
        }
        let total_sent: u64 = tables.podium.iter().map(|r| r.damage_sent).sum();
        let total_received: u64 = tables.podium.iter().map(|r| r.damage_received).sum();
        prop_assert_eq!(total_sent, total_received);

        // Every participant is in GAME_META once.
        prop_assert_eq!(tables.meta.len(), heroes.len());
    }
}

#[test]
fn a_game_won_by_a_forfeit_ranks_both_players() {
    // One attack each way would take many turns; the second player forfeits at once.
    let (extract, finish) = play(&[hero(1, 1, 500), hero(2, 1, 500)], 0, &[0, FORFEIT_PICK]);
    assert_eq!(finish, Some(Finish::LastStanding(user(0))));
    let tables = transform(&extract).unwrap();
    let mut rows = tables.podium.clone();
    rows.sort_by_key(|r| r.rank);
    let order: Vec<(&str, u8, u16)> = rows
        .iter()
        .map(|r| (r.user_token.as_str(), r.rank, r.rounds))
        .collect();
    assert_eq!(order, vec![("user-0", 1, 1), ("user-1", 2, 0)]);
}

#[test]
fn an_unknown_forfeit_reason_is_a_bad_log() {
    let game = GameToken::from("g");
    let record = r#"{"TIMESTAMP":"2026-01-01T00:00:00Z","PAYLOAD":{"GAME_TOKEN":"g","USER_TOKEN":"u"},"STATUS":{"ACTION":"FORFEIT","DETAILS":{"REASON":"BORED","HEALTH_PRIOR":3}}}"#;
    let err = parse_logs(&game, &[record.to_string()]).unwrap_err();
    assert!(err.to_string().contains("BORED"), "{err}");
}

/// A record's tokens are read borrowed from its text, and one written with a JSON
/// escape reads as the same token: the game's tables do not change with the writing.
#[test]
fn log_tokens_read_the_same_borrowed_or_unescaped() {
    let record = |user: &str, enemy: &str| {
        format!(
            r#"{{"TIMESTAMP":"2026-01-01T00:00:00Z","PAYLOAD":{{"GAME_TOKEN":"g","USER_TOKEN":"{user}"}},"STATUS":{{"ACTION":"ATTACK","DETAILS":{{"ENEMY_TOKEN":"{enemy}","ENEMY_DAMAGE":5,"ENEMY_HEALTH_PRIOR":5,"ENEMY_HEALTH_POST":0}}}}}}"#
        )
    };
    let heroes: BTreeMap<UserToken, Hero> =
        [(user(0), hero(1, 5, 10)), (user(1), hero(2, 1, 0))].into();
    let extract = |logs: Vec<String>| GameExtract {
        game: GameToken::from("g"),
        status: GameStatus::Completed,
        participants: 2,
        host: user(0),
        heroes: heroes.clone(),
        logs,
        batch: None,
    };
    let plain = extract(vec![record("user-0", "user-1")]);
    let escaped = extract(vec![record(r"user\u002d0", r"user-\u0031")]);
    let entries = parse_logs(&plain.game, &plain.logs).unwrap();
    let LogEntry::Attack(a) = &entries[0] else {
        panic!("an attack: {entries:?}")
    };
    assert!(matches!(a.attacker.0, std::borrow::Cow::Borrowed(_)));
    let unescaped = parse_logs(&escaped.game, &escaped.logs).unwrap();
    assert_eq!(unescaped, entries);
    let tables = transform(&plain).unwrap();
    assert_eq!(transform(&escaped).unwrap(), tables);
    assert_eq!(tables.podium[0].user_token, "user-0");
    assert_eq!(tables.podium[0].rank, 1);
}
