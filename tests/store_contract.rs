//! The store contract: one suite, run on the embedded store and on a real Redis.
//! A new store passes these before anything else builds on it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{WAIT, fresh_redis_store, uniform_roster};
use futures_util::FutureExt;
use superhero::game::rules::{ForfeitReason, RuleError, turn_order};
use superhero::game::{GameStatus, GameToken, Hero, UserToken};
use superhero::store::{
    ClaimId, Extracted, GameStore, LobbyEntry, MemoryStore, Signal, SignalWatch, StoreError,
};

fn heroes(n: u32) -> Vec<Hero> {
    uniform_roster(n, 50, 10).iter().map(|h| h.hero()).collect()
}

async fn users<S: GameStore>(store: &S, prefix: &str, n: usize) -> Vec<UserToken> {
    let mut out = Vec::new();
    for i in 0..n {
        let (token, created) = store.login(&format!("{prefix}{i:03}")).await.unwrap();
        assert!(created);
        out.push(token);
    }
    out
}

/// Logins are idempotent and tokens are known afterwards.
async fn login_and_tokens<S: GameStore>(store: S) {
    let (t1, created) = store.login("USER001").await.unwrap();
    assert!(created);
    let (t2, created) = store.login("USER001").await.unwrap();
    assert!(!created);
    assert_eq!(t1, t2);
    assert!(matches!(
        store
            .join(
                &UserToken::from("nope"),
                2,
                &GameToken::new_random(),
                &heroes(2)
            )
            .await,
        Err(StoreError::UnknownUser)
    ));
}

/// Concurrent joins never overfill a game, never put a user in a game twice, and
/// never give one hero to two players of a game.
async fn joins_are_atomic<S: GameStore>(store: S) {
    let players = users(&store, "J", 60).await;
    let candidates = heroes(3);
    let mut tasks = Vec::new();
    for user in players.clone() {
        let store = store.clone();
        let candidates = candidates.clone();
        tasks.push(tokio::spawn(async move {
            store
                .join(&user, 3, &GameToken::new_random(), &candidates)
                .await
                .map(|j| (user, j))
        }));
    }
    let mut games: HashMap<GameToken, Vec<(UserToken, u32)>> = HashMap::new();
    for task in tasks {
        let (user, joined) = task.await.unwrap().unwrap();
        games
            .entry(joined.game)
            .or_default()
            .push((user, joined.hero));
    }
    let mut total = 0;
    for (game, members) in &games {
        let snap = store.snapshot(game).await.unwrap().unwrap();
        assert!(snap.joined() <= 3, "{game} has {} players", snap.joined());
        assert_eq!(snap.joined(), members.len());
        let mut ids: Vec<u32> = members.iter().map(|(_, h)| *h).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), members.len(), "distinct heroes in {game}");
        total += members.len();
    }
    assert_eq!(total, 60);
    assert!(games.len() >= 20);

    // A user holds one unfinished game at a time, and never joins a game twice: with
    // one open game, timed out, the same user gets another.
    let solo = users(&store, "S", 1).await.remove(0);
    let first = store
        .join(&solo, 2, &GameToken::new_random(), &candidates)
        .await
        .unwrap();
    let refused = store
        .join(&solo, 2, &GameToken::new_random(), &candidates)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Rule(RuleError::StillPlaying))),
        "{refused:?}"
    );
    assert!(store.time_out(&first.game).await.unwrap());
    let second = store
        .join(&solo, 2, &GameToken::new_random(), &candidates)
        .await
        .unwrap();
    assert!(first.created && second.created);
    assert_ne!(first.game, second.game);
}

/// Start needs a full lobby, time-out needs one that is not full, and each happens once.
async fn lobby_life_cycle<S: GameStore>(store: S) {
    let p = users(&store, "L", 3).await;
    let h = heroes(3);
    let g = store
        .join(&p[0], 2, &GameToken::new_random(), &h)
        .await
        .unwrap()
        .game;
    let mut watch = store.watch(&g).await.unwrap();
    let first = watch.latest();
    assert_eq!((first.status, first.joined), (GameStatus::WaitingLobby, 1));
    assert_eq!(store.start(&g).await.unwrap(), None, "not full yet");

    let joined = store
        .join(&p[1], 2, &GameToken::new_random(), &h)
        .await
        .unwrap();
    assert_eq!(joined.game, g);
    assert_eq!(joined.joined, 2);
    watch.changed().await.unwrap();
    assert_eq!(watch.latest().joined, 2);
    assert!(
        !store.time_out(&g).await.unwrap(),
        "a full lobby does not time out"
    );

    // Every lobby of a full game asks to start it, often at the same moment.
    let starts = futures_util::future::join_all((0..4).map(|_| store.start(&g))).await;
    let mut won: Vec<_> = starts.into_iter().filter_map(|s| s.unwrap()).collect();
    assert_eq!(won.len(), 1, "one of four starts at once starts the game");
    let started = won.remove(0);
    assert_eq!(started.host, p[0], "the host");
    assert_eq!(started.board.status, GameStatus::InProgress);
    assert_eq!(started.board.order, turn_order(&p[..2]));
    assert_eq!(
        store.snapshot_at(&g, (0, 0)).await.unwrap().as_ref(),
        Some(&started),
        "the game at its first turn"
    );
    assert_eq!(store.start(&g).await.unwrap(), None, "only one start");
    watch.changed().await.unwrap();
    let s = watch.latest();
    assert_eq!(s.status, GameStatus::InProgress);
    // The turn order is the players sorted.
    let order = turn_order(&p[..2]);
    assert_eq!(s.current, Some(order[0].clone()));
    let snap = store.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(snap.board.order, order);
    // Another watch of a game watched already starts from its state.
    let mut second = store.watch(&g).await.unwrap();
    assert_eq!(second.latest(), s);
    drop(second);

    // A full game is not joined again.
    let other = store
        .join(&p[2], 2, &GameToken::new_random(), &h)
        .await
        .unwrap();
    assert_ne!(other.game, g);
    assert!(store.time_out(&other.game).await.unwrap());
    assert!(
        !store.time_out(&other.game).await.unwrap(),
        "only one time-out"
    );
    assert_eq!(store.start(&other.game).await.unwrap(), None);
    let snap = store.snapshot(&other.game).await.unwrap().unwrap();
    assert_eq!(snap.board.status, GameStatus::TimedOut);
    assert_eq!(snap.host, p[2]);

    assert!(
        store
            .snapshot(&GameToken::from("nope"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.watch(&GameToken::from("nope")).await,
        Err(StoreError::UnknownGame)
    ));
}

/// Attacks go through the rules; of two identical attacks sent at once, one lands.
async fn attacks_follow_the_rules<S: GameStore>(store: S) {
    let p = users(&store, "A", 2).await;
    let h = heroes(2);
    let g = store
        .join(&p[0], 2, &GameToken::new_random(), &h)
        .await
        .unwrap()
        .game;
    store
        .join(&p[1], 2, &GameToken::new_random(), &h)
        .await
        .unwrap();
    let mut order = p.clone();
    order.sort();
    assert!(store.start(&g).await.unwrap().is_some());
    let mut watch = store.watch(&g).await.unwrap();
    let (first, second) = (order[0].clone(), order[1].clone());

    let refused = store
        .attack(&g, &second, &first, 0, "2026-01-01T00:00:00Z")
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Rule(RuleError::NotYourTurn))
    ));

    let racing: Vec<_> = (0..4)
        .map(|_| {
            let (store, g, a, e) = (store.clone(), g.clone(), first.clone(), second.clone());
            tokio::spawn(async move { store.attack(&g, &a, &e, 0, "2026-01-01T00:00:00Z").await })
        })
        .collect();
    let mut landed = 0;
    for r in racing {
        match r.await.unwrap() {
            Ok(a) => {
                landed += 1;
                assert_eq!(
                    (a.attack.enemy_health_prior, a.attack.enemy_health_post),
                    (100, 50)
                );
                assert!(
                    a.record.contains(r#""ENEMY_HEALTH_POST":50"#),
                    "{}",
                    a.record
                );
            }
            Err(StoreError::Rule(RuleError::NotYourTurn)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(landed, 1, "exactly one of the racing attacks lands");
    assert_eq!(store.hero(&g, &second).await.unwrap().unwrap().health, 50);
    let snap = store.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(
        snap.board.order,
        [second.clone(), first.clone()],
        "the attacker goes last"
    );

    // The next signal names the next player.
    loop {
        let s = watch.latest();
        if s.turns == 1 {
            assert_eq!(s.current, Some(second.clone()));
            break;
        }
        watch.changed().await.unwrap();
    }

    let back = store.attack(&g, &second, &first, 0, "t").await.unwrap();
    assert_eq!(back.attack.enemy_health_post, 50);
    let win = store.attack(&g, &first, &second, 0, "t").await.unwrap();
    assert!(win.attack.finish.is_some());
    let snap = store.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(snap.board.status, GameStatus::Completed);
    assert_eq!(snap.board.turns, 3);
    assert_eq!(
        snap.board.order,
        std::slice::from_ref(&first),
        "the dead leave the order"
    );
    assert!(matches!(
        store.attack(&g, &second, &first, 0, "t").await,
        Err(StoreError::Rule(RuleError::NotInProgress))
    ));
    store.finish_without_enemy(&g, &first).await.unwrap();
}

/// Two servers on one store take turns on one game: each plans on what it last saw
/// of the game (the Redis store remembers the board its last change left), which the
/// other's attacks have made stale; every attack still lands on the game as it is,
/// and none is refused for a turn that has passed.
async fn servers_take_turns<S: GameStore>(a: S, b: S) {
    let p = users(&a, "T", 2).await;
    let h: Vec<Hero> = uniform_roster(2, 10, 10).iter().map(|h| h.hero()).collect();
    let g = a
        .join(&p[0], 2, &GameToken::new_random(), &h)
        .await
        .unwrap()
        .game;
    b.join(&p[1], 2, &GameToken::new_random(), &h)
        .await
        .unwrap();
    let mut order = p.clone();
    order.sort();
    // Both servers' lobbies ask to start the game at once: one start wins.
    let starts = [a.start(&g), b.start(&g), a.start(&g), b.start(&g)];
    let started = futures_util::future::join_all(starts).await;
    assert_eq!(
        started.iter().filter(|s| matches!(s, Ok(Some(_)))).count(),
        1,
        "{started:?}"
    );
    assert!(started.iter().all(Result::is_ok), "{started:?}");
    let (first, second) = (&order[0], &order[1]);
    let hit = |(store, attacker, enemy): (&S, &UserToken, &UserToken)| {
        let (store, g) = (store.clone(), g.clone());
        let (attacker, enemy) = (attacker.clone(), enemy.clone());
        async move {
            let a = store.attack(&g, &attacker, &enemy, 0, "t").await.unwrap();
            (a.attack.enemy_health_prior, a.attack.enemy_health_post)
        }
    };
    // A server's hero lookups agree with the game as soon as a change is made,
    // whichever server made it, before it could have heard of it: a client's
    // connections may be on different servers, and it looks its opponents up on one
    // as soon as the other tells it its turn.
    let health = |user: &UserToken| {
        let (a, g, user) = (a.clone(), g.clone(), user.clone());
        async move { a.hero(&g, &user).await.unwrap().unwrap().health }
    };
    assert_eq!(hit((&a, first, second)).await, (100, 90));
    assert_eq!(health(second).await, 90);
    assert_eq!(hit((&b, second, first)).await, (100, 90));
    assert_eq!(health(first).await, 90);
    assert_eq!(hit((&b, first, second)).await, (90, 80));
    // `a` last saw the game after the first attack, with the second player to act
    // and the first at full health.
    assert_eq!(hit((&a, second, first)).await, (90, 80));
    // `b` last saw the second player to act.
    assert_eq!(hit((&b, first, second)).await, (80, 70));
    let snap = a.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(snap.board.turns, 5);
    assert_eq!(snap.board.heroes[first].health, 80);
    assert_eq!(snap.board.heroes[second].health, 70);
    assert_eq!(snap.board.order.first(), Some(second));
}

/// A game of three that `players` join, the first of them making it.
async fn game_of_three<S: GameStore>(store: &S, players: &[UserToken], h: &[Hero]) -> GameToken {
    let g = store
        .join(&players[0], 3, &GameToken::new_random(), h)
        .await
        .unwrap()
        .game;
    for u in &players[1..] {
        let joined = store.join(u, 3, &GameToken::new_random(), h).await;
        assert_eq!(joined.unwrap().game, g);
    }
    g
}

/// Waits until a watch's latest signal satisfies `done`.
async fn hears(watch: &mut SignalWatch, done: impl Fn(&Signal) -> bool) -> Signal {
    loop {
        let signal = watch.latest();
        if done(&signal) {
            return signal;
        }
        tokio::time::timeout(WAIT, watch.changed())
            .await
            .unwrap_or_else(|_| panic!("no signal after {signal:?} within {WAIT:?}"))
            .unwrap();
    }
}

/// A player's watch of a game (`watch_for`) hears every signal that concerns the
/// player: the start, each turn that is the player's, the end, and nothing else:
/// another player's turn leaves it be.
async fn each_player_hears_its_turns<S: GameStore>(store: S) {
    let p = users(&store, "W", 3).await;
    let g = game_of_three(&store, &p, &heroes(3)).await;
    let mut watches = Vec::new();
    for u in &p {
        watches.push((u.clone(), store.watch_for(&g, u).await.unwrap()));
    }
    assert!(store.start(&g).await.unwrap().is_some());
    for (_, watch) in &mut watches {
        hears(watch, |s| s.status == GameStatus::InProgress).await;
    }
    let mut attacks = 0;
    loop {
        let board = store.snapshot(&g).await.unwrap().unwrap().board;
        if board.status.is_over() {
            break;
        }
        let attacker = board.order[0].clone();
        let enemy = board.order[1].clone();
        store.attack(&g, &attacker, &enemy, 0, "t").await.unwrap();
        attacks += 1;
        let board = store.snapshot(&g).await.unwrap().unwrap().board;
        if board.status.is_over() {
            for (_, watch) in &mut watches {
                hears(watch, |s| s.status == GameStatus::Completed).await;
            }
            continue;
        }
        // A store delivers a signal to all the watches of a game at once: once the
        // player whose turn it is heard it, the others would have too.
        let next = &board.order[0];
        let (_, watch) = watches.iter_mut().find(|(p, _)| p == next).unwrap();
        let signal = hears(watch, |s| s.turns == board.turns).await;
        assert_eq!(signal.current.as_ref(), Some(next));
        for (player, watch) in watches.iter_mut().filter(|(p, _)| p != next) {
            assert!(
                watch.changed().now_or_never().is_none(),
                "{player} woken for {next:?}'s turn"
            );
        }
    }
    assert!(attacks >= 2, "{attacks} attacks");
}

/// Forfeits eliminate only the player whose turn the caller saw (of racing referees,
/// one lands), pass the turn without counting an attack, and free the player for
/// another game; a player's lobby is open once at a time; the cleaning record of each
/// participant is claimed once, only when the game is over.
async fn forfeits_lobbies_and_claims<S: GameStore>(store: S) {
    let p = users(&store, "F", 4).await;
    let h = heroes(3);
    let g = game_of_three(&store, &p[..3], &h).await;
    let entered = LobbyEntry::Entered { participants: 3 };
    assert_eq!(store.enter_lobby(&g, &p[0]).await.unwrap(), entered);
    assert_eq!(
        store.enter_lobby(&g, &p[0]).await.unwrap(),
        LobbyEntry::AlreadyOpen,
        "a second lobby is refused"
    );
    store.leave_lobby(&g, &p[0]).await.unwrap();
    assert_eq!(
        store.enter_lobby(&g, &p[0]).await.unwrap(),
        entered,
        "a closed lobby may reopen"
    );
    assert_eq!(
        store.enter_lobby(&g, &p[3]).await.unwrap(),
        LobbyEntry::NotInGame,
        "only a player of the game"
    );
    assert!(matches!(
        store.enter_lobby(&GameToken::new_random(), &p[0]).await,
        Err(StoreError::UnknownGame)
    ));
    let claim = || ClaimId::new_random();
    assert!(
        !store.close_lobby(&g, &p[0], &claim()).await.unwrap(),
        "not over yet"
    );
    assert_eq!(
        store.enter_lobby(&g, &p[0]).await.unwrap(),
        entered,
        "closed, whether or not the game is over"
    );
    let unclaimed = store.claim_cleanings(&g, &claim()).await.unwrap();
    assert!(unclaimed.is_empty(), "not over yet: {unclaimed:?}");

    let mut order: Vec<UserToken> = p[..3].to_vec();
    order.sort();
    assert!(store.start(&g).await.unwrap().is_some());
    let timeout = ForfeitReason::TurnTimeout;
    assert!(matches!(
        store
            .forfeit(&g, &order[1], timeout, Some((0, 0)), "t")
            .await,
        Err(StoreError::Rule(RuleError::NotYourTurn))
    ));
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let (store, g, u) = (store.clone(), g.clone(), order[0].clone());
            tokio::spawn(async move { store.forfeit(&g, &u, timeout, Some((0, 0)), "t").await })
        })
        .collect();
    let mut landed = 0;
    for r in racing {
        match r.await.unwrap() {
            Ok(f) => {
                landed += 1;
                assert!(f.record.contains(r#""ACTION":"FORFEIT""#), "{}", f.record);
                assert!(
                    f.record.contains(r#""REASON":"TURN TIMEOUT""#),
                    "{}",
                    f.record
                );
            }
            Err(StoreError::Rule(RuleError::OutOfPlay | RuleError::NotYourTurn)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(landed, 1, "exactly one of the racing forfeits lands");
    let snap = store.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(snap.board.order, order[1..].to_vec());
    assert_eq!((snap.board.turns, snap.board.forfeits), (0, 1));
    assert_eq!(snap.board.heroes[&order[0]].health, 0);
    let mut watch = store.watch(&g).await.unwrap();
    let s = watch.latest();
    assert_eq!(
        (s.turns, s.forfeits, s.current.clone()),
        (0, 1, Some(order[1].clone()))
    );

    // Out of play, the player may look for another game; the others may not.
    let elsewhere = store
        .join(&order[0], 2, &GameToken::new_random(), &h)
        .await
        .unwrap();
    assert_ne!(elsewhere.game, g);
    assert!(matches!(
        store.join(&order[1], 2, &GameToken::new_random(), &h).await,
        Err(StoreError::Rule(RuleError::StillPlaying))
    ));

    // A player who left forfeits out of turn; the last one standing wins.
    store
        .forfeit(&g, &order[2], ForfeitReason::LeftGame, None, "t")
        .await
        .unwrap();
    let snap = store.snapshot(&g).await.unwrap().unwrap();
    assert_eq!(snap.board.status, GameStatus::Completed);
    assert_eq!(snap.board.order, vec![order[1].clone()]);
    let logs = store.extract(&g).await.unwrap().unwrap().logs;
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs[1].contains(r#""REASON":"LEFT GAME""#), "{}", logs[1]);
    // A worker's read: the host's event gets the game, a guest's is told so.
    let Extracted::Game(extract) = store.extract_for(&g, &snap.host).await.unwrap() else {
        panic!("the host's event reads the game");
    };
    assert_eq!(extract.logs, logs);
    let guest = order.iter().find(|u| **u != snap.host).unwrap();
    assert_eq!(
        store.extract_for(&g, guest).await.unwrap(),
        Extracted::Guest
    );
    let unknown = GameToken::new_random();
    assert_eq!(
        store.extract_for(&unknown, guest).await.unwrap(),
        Extracted::Gone
    );

    // A lobby claims its player's cleaning record; the referee claims the others',
    // the host's first; each has one claimant, and a claimant asking again (its first
    // answer lost) is told its claims again.
    let lobby = order.iter().find(|u| **u != snap.host).unwrap();
    let lobby_claim = claim();
    assert!(
        store.close_lobby(&g, lobby, &lobby_claim).await.unwrap(),
        "first claim"
    );
    assert!(
        store.close_lobby(&g, lobby, &lobby_claim).await.unwrap(),
        "the same claimant again"
    );
    assert!(
        !store.close_lobby(&g, lobby, &claim()).await.unwrap(),
        "another claimant"
    );
    let referee = claim();
    let rest = store.claim_cleanings(&g, &referee).await.unwrap();
    assert_eq!(rest.first(), Some(&snap.host), "the host's first: {rest:?}");
    let mut rest_sorted = rest.clone();
    rest_sorted.sort();
    let others: Vec<UserToken> = order.iter().filter(|u| *u != lobby).cloned().collect();
    assert_eq!(rest_sorted, others);
    assert_eq!(
        store.claim_cleanings(&g, &referee).await.unwrap(),
        rest,
        "the same claimant again"
    );
    let unclaimed = store.claim_cleanings(&g, &claim()).await.unwrap();
    assert!(unclaimed.is_empty(), "each claimed already: {unclaimed:?}");
    for u in &order {
        assert!(
            !store.close_lobby(&g, u, &claim()).await.unwrap(),
            "claimed already"
        );
    }
    assert!(
        !store.close_lobby(&g, &p[3], &claim()).await.unwrap(),
        "not a member"
    );
    assert!(
        store
            .join(&order[1], 2, &GameToken::new_random(), &h)
            .await
            .is_ok()
    );

    // Once cleaned, the game is gone for every participant's event.
    store.clean(&g, Duration::from_secs(30)).await.unwrap();
    for u in &order {
        assert_eq!(store.extract_for(&g, u).await.unwrap(), Extracted::Gone);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forfeits_lobbies_and_claims_embedded() {
    forfeits_lobbies_and_claims(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forfeits_lobbies_and_claims_redis() {
    forfeits_lobbies_and_claims(fresh_redis_store(14).await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_tokens_embedded() {
    login_and_tokens(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_tokens_redis() {
    login_and_tokens(fresh_redis_store(6).await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_atomic_embedded() {
    joins_are_atomic(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_atomic_redis() {
    joins_are_atomic(fresh_redis_store(7).await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_life_cycle_embedded() {
    lobby_life_cycle(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_life_cycle_redis() {
    lobby_life_cycle(fresh_redis_store(8).await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_follow_the_rules_embedded() {
    attacks_follow_the_rules(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_follow_the_rules_redis() {
    attacks_follow_the_rules(fresh_redis_store(9).await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_take_turns_embedded() {
    let store = MemoryStore::new();
    servers_take_turns(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_take_turns_redis() {
    let (a, _) = fresh_redis_store(12).await;
    let b = superhero::store::RedisStore::connect(&superhero::store::RedisConfig {
        url: common::redis_url(12),
    })
    .await
    .unwrap();
    servers_take_turns(a, b.clone()).await;
    // On the same database: each test of this suite has one of its own.
    each_player_hears_its_turns(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_player_hears_its_turns_embedded() {
    each_player_hears_its_turns(MemoryStore::new()).await;
}

/// The whole contract on a real Redis Cluster (three masters, three replicas), on
/// its hash-tagged keys: one cluster, emptied between suites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_on_a_redis_cluster() {
    let cluster = common::RedisCluster::start();
    let config = superhero::store::RedisConfig { url: cluster.url() };
    let open = || async {
        superhero::store::RedisStore::connect(&config)
            .await
            .unwrap()
    };
    login_and_tokens(open().await).await;
    cluster.flush();
    joins_are_atomic(open().await).await;
    cluster.flush();
    lobby_life_cycle(open().await).await;
    cluster.flush();
    attacks_follow_the_rules(open().await).await;
    cluster.flush();
    servers_take_turns(open().await, open().await).await;
    cluster.flush();
    each_player_hears_its_turns(open().await).await;
    cluster.flush();
    forfeits_lobbies_and_claims(open().await).await;
    // Every key is hash-tagged: a game's by the game, an index shard by its count
    // and shard, a user's by the user; the original's cross-slot keys are not used.
    let keys = cluster.keys("*");
    assert!(keys.iter().any(|k| k.starts_with("games:{")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("games:players:{")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("users:tokens:{")),
        "{keys:?}"
    );
    for key in &keys {
        assert!(
            key == "superheros" || (key.contains('{') && key.contains('}')),
            "{key} is not hash-tagged"
        );
    }
}
