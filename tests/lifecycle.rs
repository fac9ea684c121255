//! Every game ends, whatever its players do, and its life-cycle is idempotent: silent
//! players and players who leave forfeit, a game no one waits for ends, a replayed
//! lobby logs nothing again, a second lobby for one player is refused, and a user
//! holds one unfinished game at a time. Over real WebSockets, on the embedded store
//! and on a real Redis.

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{Client, error, login, start_server, uniform_roster};
use serde_json::{Value, json};
use superhero::game::{GameStatus, GameToken};
use superhero::server::ServerSettings;
use superhero::store::{GameStore, MemoryStore, RedisStore};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The queue records (`lib.server.*`) every server of this test binary logged, as
/// (message, task).
fn records() -> &'static Mutex<Vec<(String, Value)>> {
    static RECORDS: OnceLock<Mutex<Vec<(String, Value)>>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Recorder);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        Mutex::new(Vec::new())
    })
}

struct Recorder;

#[derive(Default)]
struct Fields {
    message: String,
    task: Option<Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "task" => self.task = serde_json::from_str(&text).ok(),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().target().starts_with("lib.server.") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(task) = fields.task {
            records().lock().unwrap().push((fields.message, task));
        }
    }
}

/// How many times `message` was logged for `game` (and `user`, if given).
fn logged(message: &str, game: &str, user: Option<&str>) -> usize {
    let found = |t: &Value, field: &str| t[field].as_str().map(str::to_string);
    records()
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, task)| {
            m == message
                && (found(task, "game_token").as_deref() == Some(game)
                    || found(&task["PAYLOAD"], "GAME_TOKEN").as_deref() == Some(game))
                && user.is_none_or(|u| {
                    found(task, "user_token").as_deref() == Some(u)
                        || found(&task["PAYLOAD"], "USER_TOKEN").as_deref() == Some(u)
                })
        })
        .count()
}

/// Waits until `message` was logged for `game` and `user` (records of a game's end
/// may come from its referee a moment after the players heard), then says how often.
async fn logged_once_ended(message: &str, game: &str, user: &str) -> usize {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while logged(message, game, Some(user)) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {message} for {user}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    logged(message, game, Some(user))
}

/// A name no other run uses.
fn name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn quick() -> ServerSettings {
    ServerSettings {
        lobby_timeout: Duration::from_millis(300),
        turn_timeout: Duration::from_millis(300),
        ..ServerSettings::default()
    }
}

/// A Redis store on a database of this binary's own, emptied.
async fn redis() -> RedisStore {
    common::fresh_redis_store(15).await.0
}

/// Logs `n` new users in, has them find one game and open their lobbies; returns the
/// game and the lobbies by token, after START.
async fn started(base: &str, n: usize) -> (String, BTreeMap<String, Client>) {
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let mut game = None;
    let mut lobbies = BTreeMap::new();
    for _ in 0..n {
        let token = login(base, &name("LIFE")).await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": token, "PARTICIPANTS": n}}))
            .await;
        let g = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(game.get_or_insert(g.clone()), &g, "one game for all");
        lobbies.insert(token, Client::connect(base, "/api/v1/game/lobby").await);
    }
    let game = game.unwrap();
    for (token, lobby) in &mut lobbies {
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
            .await;
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "START"}));
    }
    (game, lobbies)
}

/// The FORFEIT records of a game's log, as (player, reason).
async fn forfeits<S: GameStore>(store: &S, game: &str) -> Vec<(String, String)> {
    let extract = store
        .extract(&GameToken::from(game.to_string()))
        .await
        .unwrap()
        .expect("the game is still in the store");
    extract
        .logs
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["STATUS"]["ACTION"] == "FORFEIT")
        .map(|r| {
            (
                r["PAYLOAD"]["USER_TOKEN"].as_str().unwrap().to_string(),
                r["STATUS"]["DETAILS"]["REASON"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

/// Three players who never act: each forfeits in turn when their time is up, the last
/// one wins, every lobby hears COMPLETE, and each participant's cleaning record is
/// logged once.
async fn silent_players_forfeit<S: GameStore>(store: S) {
    records();
    store
        .replace_roster(&uniform_roster(5, 50, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), quick()).await;
    let (game, mut lobbies) = started(&server.url, 3).await;
    let order: Vec<String> = lobbies.keys().cloned().collect();
    for me in &order[..2] {
        let turn = lobbies.get_mut(me).unwrap().recv().await;
        assert_eq!(turn["STATUS"], json!({"GAME": "USER'S TURN"}), "{me}");
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "COMPLETE"}));
    }
    let timed_out = |u: &String| (u.clone(), "TURN TIMEOUT".to_string());
    assert_eq!(
        forfeits(&store, &game).await,
        vec![timed_out(&order[0]), timed_out(&order[1])]
    );
    let snap = store
        .snapshot(&GameToken::from(game.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.board.status, GameStatus::Completed);
    assert_eq!(
        snap.board.order,
        vec![superhero::game::UserToken::from(order[2].clone())]
    );
    assert_eq!(logged("Player Forfeited", &game, None), 2);
    for user in &order {
        assert_eq!(
            logged_once_ended("Cleaning Game Records", &game, user).await,
            1,
            "{user}"
        );
    }
}

/// A player whose lobby closes mid-game forfeits at once, out of turn; the other wins.
async fn a_player_who_leaves_forfeits<S: GameStore>(store: S) {
    records();
    store
        .replace_roster(&uniform_roster(5, 1, 100))
        .await
        .unwrap();
    let settings = ServerSettings {
        turn_timeout: Duration::ZERO,
        ..quick()
    };
    let server = start_server(store.clone(), settings).await;
    let (game, mut lobbies) = started(&server.url, 2).await;
    let order: Vec<String> = lobbies.keys().cloned().collect();
    // The player whose turn it is not leaves.
    drop(lobbies.remove(&order[1]));
    let mut stays = lobbies.remove(&order[0]).unwrap();
    assert_eq!(stays.recv().await["STATUS"], json!({"GAME": "USER'S TURN"}));
    assert_eq!(stays.recv().await["STATUS"], json!({"GAME": "COMPLETE"}));
    assert_eq!(
        forfeits(&store, &game).await,
        vec![(order[1].clone(), "LEFT GAME".to_string())]
    );
    for user in &order {
        assert_eq!(
            logged_once_ended("Cleaning Game Records", &game, user).await,
            1,
            "{user}"
        );
    }
}

/// Replaying a finished game's lobby answers COMPLETE and logs nothing again; a second
/// lobby of one player is refused while the first is open; one unfinished game per
/// user.
async fn the_life_cycle_is_idempotent<S: GameStore>(store: S) {
    records();
    store
        .replace_roster(&uniform_roster(5, 50, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), quick()).await;
    let base = server.url.as_str();
    let (game, mut lobbies) = started(base, 2).await;
    let order: Vec<String> = lobbies.keys().cloned().collect();

    let mut find = Client::connect(base, "/api/v1/game/find").await;
    assert_eq!(
        find.ask(json!({"PAYLOAD": {"USER_TOKEN": order[0], "PARTICIPANTS": 2}}))
            .await,
        error("USER ALREADY IN AN UNFINISHED GAME")
    );
    let mut second = Client::connect(base, "/api/v1/game/lobby").await;
    assert_eq!(
        second
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": order[0]}}))
            .await,
        error("LOBBY ALREADY OPEN FOR THIS PLAYER")
    );

    // Attack 50 against health 100 (10 × 10): two hits each way end it.
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    for turn in 0..3 {
        let (me, enemy) = (&order[turn % 2], &order[(turn + 1) % 2]);
        let t = lobbies.get_mut(me).unwrap().recv().await;
        assert_eq!(t["STATUS"], json!({"GAME": "USER'S TURN"}));
        let reply = action
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": me, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}}))
            .await;
        assert_eq!(reply["STATUS"]["ACTION"], json!("ATTACK"), "{reply}");
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "COMPLETE"}));
    }
    for _ in 0..5 {
        for user in &order {
            let mut replay = Client::connect(base, "/api/v1/game/lobby").await;
            assert_eq!(
                replay
                    .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user}}))
                    .await["STATUS"],
                json!({"GAME": "COMPLETE"})
            );
        }
    }
    for user in &order {
        assert_eq!(
            logged_once_ended("Cleaning Game Records", &game, user).await,
            1,
            "{user}"
        );
    }
    // The game is over: its players may look for the next one.
    let next = find
        .ask(json!({"PAYLOAD": {"USER_TOKEN": order[0], "PARTICIPANTS": 2}}))
        .await;
    assert_eq!(next["STATUS"], json!({"JOINED": "SUCCESS"}), "{next}");
}

/// Players who find a game (for four, a size no other case leaves open) and never open
/// its lobby: a full game is started and its players forfeit by time; a game that did
/// not fill times out. Either way each participant's cleaning record is logged once.
async fn a_game_no_one_waits_for_ends<S: GameStore>(store: S) {
    records();
    store
        .replace_roster(&uniform_roster(5, 50, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), quick()).await;
    let base = server.url.as_str();
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let mut full = None;
    let mut users = Vec::new();
    for _ in 0..4 {
        let token = login(base, &name("AWAY")).await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": token, "PARTICIPANTS": 4}}))
            .await;
        full = joined["PAYLOAD"]["GAME_TOKEN"].as_str().map(str::to_string);
        users.push(token);
    }
    let full = full.unwrap();
    let alone = login(base, &name("AWAY")).await;
    let unfilled = find
        .ask(json!({"PAYLOAD": {"USER_TOKEN": alone, "PARTICIPANTS": 3}}))
        .await["PAYLOAD"]["GAME_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();

    let deadline = tokio::time::Instant::now() + common::WAIT;
    let status = |g: &str| {
        let store = store.clone();
        let g = GameToken::from(g.to_string());
        async move { store.snapshot(&g).await.unwrap().unwrap().board.status }
    };
    while !(status(&full).await.is_over() && status(&unfilled).await.is_over()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the games never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&full).await, GameStatus::Completed);
    assert_eq!(status(&unfilled).await, GameStatus::TimedOut);
    assert_eq!(forfeits(&store, &full).await.len(), 3);
    for user in &users {
        assert_eq!(
            logged_once_ended("Cleaning Game Records", &full, user).await,
            1
        );
    }
    assert_eq!(
        logged_once_ended("Cleaning Game Records", &unfilled, &alone).await,
        1
    );
}

/// Each case on an embedded store of its own, and all of them one after the other on
/// one Redis database (games for the same number of players would meet in its open
/// games).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::MemoryStore::new()).await;
                }
            )*
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_case_on_redis() {
            let store = redis().await;
            $( $name(store.clone()).await; )*
        }
    };
}

on_both_stores!(
    silent_players_forfeit,
    a_player_who_leaves_forfeits,
    the_life_cycle_is_idempotent,
    a_game_no_one_waits_for_ends,
);
