//! Every endpoint's reply shapes and every error message of Schema V1, over real
//! WebSockets, on the embedded store and on a real Redis, through TCP sockets and
//! through the in-process streams `simulate`'s bots use.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Client, Transport, error, fresh_redis_store, login, start_server_over, uniform_roster,
};
use futures_util::SinkExt;
use serde_json::{Value, json};
use superhero::game::GameToken;
use superhero::server::ServerSettings;
use superhero::store::{GameStore, MemoryStore};
use tokio_tungstenite::tungstenite::Message;

/// Plays a started game to its end the way the rules say it goes, attacking the first
/// living opponent in turn order, and checks each reply against an independent model.
/// Returns the attack records.
async fn play_scripted(
    base: &str,
    game: &str,
    lobbies: &mut BTreeMap<String, Client>,
    heroes: &BTreeMap<String, (u64, u64)>,
) -> Vec<Value> {
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    let mut health: BTreeMap<String, u64> =
        heroes.iter().map(|(p, (_, h))| (p.clone(), *h)).collect();
    let mut order: Vec<String> = heroes.keys().cloned().collect();
    let mut records = Vec::new();
    while order.len() > 1 {
        let me = order[0].clone();
        let turn = lobbies.get_mut(&me).unwrap().recv().await;
        assert_eq!(
            turn,
            json!({"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": "USER'S TURN"}})
        );
        let enemy = order[1].clone();
        let reply = action
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": me, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}}))
            .await;
        let damage = heroes[&me].0;
        let prior = health[&enemy];
        let post = prior.saturating_sub(damage);
        let timestamp = reply["TIMESTAMP"].as_str().expect("a TIMESTAMP");
        assert!(
            chrono::NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
            "{timestamp}"
        );
        assert_eq!(
            reply,
            json!({
                "TIMESTAMP": timestamp,
                "PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": me},
                "STATUS": {"ACTION": "ATTACK", "DETAILS": {
                    "ENEMY_TOKEN": enemy, "ENEMY_DAMAGE": damage,
                    "ENEMY_HEALTH_PRIOR": prior, "ENEMY_HEALTH_POST": post}}
            })
        );
        records.push(reply);
        health.insert(enemy.clone(), post);
        if post == 0 {
            order.retain(|p| *p != enemy);
        }
        order.rotate_left(1);
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(
            lobby.recv().await,
            json!({"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": "COMPLETE"}})
        );
    }
    records
}

/// Logs in `names`, puts them in one game of that many players and opens their
/// lobbies. Returns the game, the lobbies (by token) and each hero's attack and health.
pub async fn start_game(
    base: &str,
    names: &[&str],
) -> (
    String,
    BTreeMap<String, Client>,
    BTreeMap<String, (u64, u64)>,
) {
    let n = names.len();
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let mut game = None;
    let mut tokens = Vec::new();
    for name in names {
        let token = login(base, name).await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": token, "PARTICIPANTS": n}}))
            .await;
        let g = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            joined,
            json!({"PAYLOAD": {"GAME_TOKEN": g, "HERO_ID": joined["PAYLOAD"]["HERO_ID"]}, "STATUS": {"JOINED": "SUCCESS"}})
        );
        assert!(joined["PAYLOAD"]["HERO_ID"].as_u64().is_some());
        assert_eq!(
            game.get_or_insert(g.clone()),
            &g,
            "every player joins the one open game"
        );
        tokens.push(token);
    }
    let game = game.unwrap();
    let mut lobbies = BTreeMap::new();
    for t in &tokens {
        let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": t}}))
            .await;
        lobbies.insert(t.clone(), lobby);
    }
    let mut sorted = tokens.clone();
    sorted.sort();
    let mut heroes = BTreeMap::new();
    for lobby in lobbies.values_mut() {
        let start = lobby.recv().await;
        assert_eq!(start["STATUS"], json!({"GAME": "START"}));
        assert_eq!(start["PAYLOAD"]["GAME_TOKEN"], json!(game));
        assert_eq!(start["PAYLOAD"]["PARTICIPANTS"], json!(sorted));
        for t in &tokens {
            let h = &start["PAYLOAD"]["PARTICIPANTS_HEROS"][t];
            assert_eq!(h["token"], json!(t));
            assert!(h["id"].as_u64().is_some());
            heroes.insert(
                t.clone(),
                (h["attack"].as_u64().unwrap(), h["health"].as_u64().unwrap()),
            );
        }
    }
    (game, lobbies, heroes)
}

async fn endpoints_reply_as_specified<S: GameStore>(store: S, transport: Transport) {
    // Every hero: attack 50, health 100: each enemy falls on the second hit.
    store
        .replace_roster(&uniform_roster(10, 50, 10))
        .await
        .unwrap();
    let server = start_server_over(store.clone(), ServerSettings::default(), transport).await;
    let base = server.url.as_str();

    // Login: a new user hears USER CREATED first; the same name gets the same token.
    let mut c = Client::connect(base, "/api/v1/login").await;
    assert_eq!(
        c.ask(json!({"PAYLOAD": {"USER": "USER001"}})).await,
        error("USER CREATED")
    );
    let token = c.recv().await["PAYLOAD"]["USER_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&token).is_ok(), "{token}");
    assert_eq!(
        c.ask(json!({"PAYLOAD": {"USER": "USER001"}})).await,
        json!({"PAYLOAD": {"USER_TOKEN": token}})
    );

    let (game, mut lobbies, heroes) = start_game(base, &["USER001", "USER002"]).await;
    assert!(uuid::Uuid::parse_str(&game).is_ok());

    // Hero look-ups, known and unknown.
    let mut hero = Client::connect(base, "/api/v1/game/hero").await;
    let reply = hero
        .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
        .await;
    assert_eq!(reply["STATUS"], json!({"GAME": "HERO SPEC"}));
    assert_eq!(reply["PAYLOAD"]["GAME_TOKEN"], json!(game));
    assert_eq!(reply["PAYLOAD"]["USER_TOKEN"], json!(token));
    assert_eq!(reply["PAYLOAD"]["HERO"]["token"], json!(token));
    assert_eq!(reply["PAYLOAD"]["HERO"]["attack"], json!(50));
    assert_eq!(reply["PAYLOAD"]["HERO"]["health"], json!(100));
    assert_eq!(
        hero.ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": "nobody"}}))
            .await,
        json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": "nobody",
               "HERO": {"token": "nobody", "id": null, "attack": 0, "health": 0}},
               "STATUS": {"GAME": "HERO SPEC"}})
    );

    // Requests pipelined in one write are each answered, in order; a client that
    // closes right after its requests still gets their replies.
    let asks = [token.as_str(), "nobody", token.as_str()];
    for who in asks {
        let ask = json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": who}});
        hero.ws.feed(Message::text(ask.to_string())).await.unwrap();
    }
    hero.ws.flush().await.unwrap();
    for who in asks {
        assert_eq!(hero.recv().await["PAYLOAD"]["USER_TOKEN"], json!(who));
    }
    let ask = json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}});
    hero.ws.feed(Message::text(ask.to_string())).await.unwrap();
    hero.ws.feed(Message::Close(None)).await.unwrap();
    hero.ws.flush().await.unwrap();
    assert_eq!(hero.recv().await["PAYLOAD"]["HERO"]["health"], json!(100));

    let records = play_scripted(base, &game, &mut lobbies, &heroes).await;
    assert_eq!(records.len(), 3, "A hits B, B hits A, A kills B");

    // A null enemy once no opponent is left: ACTION NA, game stays complete.
    let winner = records.last().unwrap()["PAYLOAD"]["USER_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    let na = action
        .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": winner, "ENEMY_TOKEN": null, "ACTION": "ATTACK"}}))
        .await;
    assert_eq!(
        na,
        json!({"TIMESTAMP": na["TIMESTAMP"], "PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": winner},
               "STATUS": {"ACTION": "NA", "DETAILS": {"ENEMY_TOKEN": null, "ENEMY_STATUS": "DEAD"}}})
    );
    let snap = store
        .snapshot(&GameToken::from(game.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.board.status.as_str(), "Completed");
    assert_eq!(snap.board.turns, 3);
}

async fn original_error_messages<S: GameStore>(store: S, transport: Transport) {
    let server = start_server_over(store.clone(), ServerSettings::default(), transport).await;
    let base = server.url.as_str();
    let user = login(base, "USER007").await;

    let mut login_c = Client::connect(base, "/api/v1/login").await;
    assert_eq!(
        login_c.ask(json!({"USER": "x"})).await,
        error("MISSING PAYLOAD IN MESSAGE")
    );
    assert_eq!(
        login_c.ask(json!({"PAYLOAD": {}})).await,
        error("MISSING USER IN PAYLOAD")
    );

    let mut find = Client::connect(base, "/api/v1/game/find").await;
    assert_eq!(
        find.ask(json!({"PAYLOAD": {"PARTICIPANTS": 2}})).await,
        error("MISSING USER TOKEN IN PAYLOAD")
    );
    assert_eq!(
        find.ask(json!({"PAYLOAD": {"USER_TOKEN": user}})).await,
        error("MISSING PARTICIPANTS IN PAYLOAD")
    );
    // No roster yet.
    assert_eq!(
        find.ask(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 2}}))
            .await,
        error("LIST OF SUPERHEROS NOT AVAILABLE")
    );

    let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;
    assert_eq!(
        lobby.ask(json!({"PAYLOAD": {"USER_TOKEN": user}})).await,
        error("MISSING GAME TOKEN IN PAYLOAD")
    );
    assert_eq!(
        lobby.ask(json!({"PAYLOAD": {"GAME_TOKEN": "g"}})).await,
        error("MISSING USER TOKEN IN PAYLOAD")
    );

    let mut action = Client::connect(base, "/api/v1/game/action").await;
    assert_eq!(
        action
            .ask(json!({"PAYLOAD": {"USER_TOKEN": user, "GAME_TOKEN": "g", "ACTION": "ATTACK"}}))
            .await,
        error("MISSING ENEMY TOKEN IN PAYLOAD")
    );
    assert_eq!(
        action
            .ask(json!({"PAYLOAD": {"USER_TOKEN": user, "GAME_TOKEN": "g", "ENEMY_TOKEN": "e"}}))
            .await,
        error("MISSING ACTION IN PAYLOAD")
    );
    let mut hero = Client::connect(base, "/api/v1/game/hero").await;
    assert_eq!(
        hero.ask(json!({"PAYLOAD": 1})).await,
        error("PAYLOAD IS NOT AN OBJECT")
    );

    // Once a roster is there, the same find works (the server re-reads an empty roster).
    store
        .replace_roster(&uniform_roster(5, 1, 1))
        .await
        .unwrap();
    let joined = find
        .ask(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 2}}))
        .await;
    assert_eq!(joined["STATUS"], json!({"JOINED": "SUCCESS"}));
}

async fn lobby_times_out<S: GameStore>(store: S, transport: Transport) {
    store
        .replace_roster(&uniform_roster(5, 1, 1))
        .await
        .unwrap();
    let settings = ServerSettings {
        lobby_timeout: Duration::from_millis(300),
        ..ServerSettings::default()
    };
    let server = start_server_over(store.clone(), settings, transport).await;
    let base = server.url.as_str();
    let alone = login(base, "USER100").await;
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let joined = find
        .ask(json!({"PAYLOAD": {"USER_TOKEN": alone, "PARTICIPANTS": 3}}))
        .await;
    let game = joined["PAYLOAD"]["GAME_TOKEN"]
        .as_str()
        .unwrap()
        .to_string();
    let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;
    let reply = lobby
        .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": alone}}))
        .await;
    assert_eq!(
        reply,
        json!({"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": "TIMED OUT"}})
    );
    let snap = store
        .snapshot(&GameToken::from(game.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.board.status.as_str(), "Timed Out");

    // A timed-out game is never joined again.
    let other = login(base, "USER101").await;
    let joined = find
        .ask(json!({"PAYLOAD": {"USER_TOKEN": other, "PARTICIPANTS": 3}}))
        .await;
    assert_ne!(joined["PAYLOAD"]["GAME_TOKEN"], json!(game));
}

async fn turn_cap_ends_pathological_games<S: GameStore>(store: S, transport: Transport) {
    // Attack 1 against health 1,000: a thousand turns without a cap.
    store
        .replace_roster(&uniform_roster(5, 1, 100))
        .await
        .unwrap();
    let settings = ServerSettings {
        turn_cap: 6,
        ..ServerSettings::default()
    };
    let server = start_server_over(store.clone(), settings, transport).await;
    let base = server.url.as_str();
    let (game, mut lobbies, _) = start_game(base, &["USER200", "USER201"]).await;
    let tokens: Vec<String> = lobbies.keys().cloned().collect();
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    for turn in 0..6 {
        let me = &tokens[turn % 2];
        let enemy = &tokens[(turn + 1) % 2];
        let t = lobbies.get_mut(me).unwrap().recv().await;
        assert_eq!(t["STATUS"], json!({"GAME": "USER'S TURN"}));
        let reply = action
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": me, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}}))
            .await;
        assert_eq!(reply["STATUS"]["ACTION"], json!("ATTACK"));
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "COMPLETE"}));
    }
    let snap = store
        .snapshot(&GameToken::from(game))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.board.status.as_str(), "Completed");
    assert_eq!(snap.board.turns, 6);
    assert!(snap.board.heroes.values().all(|h| h.health > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_reply_as_specified_embedded() {
    endpoints_reply_as_specified(MemoryStore::new(), Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_reply_as_specified_embedded_in_process() {
    endpoints_reply_as_specified(MemoryStore::new(), Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_reply_as_specified_redis() {
    // One database, so one transport after the other.
    for transport in [Transport::Tcp, Transport::InProcess] {
        endpoints_reply_as_specified(fresh_redis_store(1).await.0, transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_error_messages_embedded() {
    original_error_messages(MemoryStore::new(), Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_error_messages_embedded_in_process() {
    original_error_messages(MemoryStore::new(), Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_error_messages_redis() {
    // One database, so one transport after the other.
    for transport in [Transport::Tcp, Transport::InProcess] {
        original_error_messages(fresh_redis_store(10).await.0, transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_times_out_embedded() {
    lobby_times_out(MemoryStore::new(), Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_times_out_embedded_in_process() {
    lobby_times_out(MemoryStore::new(), Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_times_out_redis() {
    // One database, so one transport after the other.
    for transport in [Transport::Tcp, Transport::InProcess] {
        lobby_times_out(fresh_redis_store(11).await.0, transport).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_cap_ends_pathological_games_embedded() {
    turn_cap_ends_pathological_games(MemoryStore::new(), Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_cap_ends_pathological_games_embedded_in_process() {
    turn_cap_ends_pathological_games(MemoryStore::new(), Transport::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_cap_ends_pathological_games_redis() {
    // One database, so one transport after the other.
    for transport in [Transport::Tcp, Transport::InProcess] {
        turn_cap_ends_pathological_games(fresh_redis_store(12).await.0, transport).await;
    }
}
