//! A scripted 3-player game on a real Redis, checked message by message and then key
//! by key, the way the original tutorial explores a run with redis-cli.

mod common;

use std::collections::BTreeMap;

use common::{Client, fresh_redis_store, login, start_server, uniform_roster};
use redis::AsyncCommands;
use serde_json::{Value, json};
use superhero::server::ServerSettings;
use superhero::store::GameStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_player_game_leaves_the_original_keys() {
    let (store, mut redis) = fresh_redis_store(2).await;
    // attack 40, health 100: three hits kill.
    store
        .replace_roster(&uniform_roster(6, 40, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), ServerSettings::default()).await;
    let base = server.url.as_str();

    let names = ["USER001", "USER002", "USER003"];
    let mut tokens = Vec::new();
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let mut game = String::new();
    let mut hero_ids = BTreeMap::new();
    for name in names {
        let t = login(base, name).await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": t, "PARTICIPANTS": 3}}))
            .await;
        game = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
        hero_ids.insert(t.clone(), joined["PAYLOAD"]["HERO_ID"].as_u64().unwrap());
        tokens.push(t);
    }
    let host = tokens[0].clone();
    // Before the lobby: the game waits, with its three players.
    let status: String = redis.get(format!("games:{game}:status")).await.unwrap();
    assert_eq!(status, "Waiting Lobby");

    let mut lobbies = BTreeMap::new();
    for t in &tokens {
        let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": t}}))
            .await;
        lobbies.insert(t.clone(), lobby);
    }
    let mut order = tokens.clone();
    order.sort();
    for lobby in lobbies.values_mut() {
        let start = lobby.recv().await;
        assert_eq!(start["STATUS"], json!({"GAME": "START"}));
        assert_eq!(start["PAYLOAD"]["PARTICIPANTS"], json!(order));
    }
    let stored_order: Vec<String> = redis
        .lrange(format!("games:{game}:order"), 0, -1)
        .await
        .unwrap();
    assert_eq!(stored_order, order, "turn order: the participants sorted");
    let status: String = redis.get(format!("games:{game}:status")).await.unwrap();
    assert_eq!(status, "In-Progress");

    // Everyone attacks the next player in order until one is left; each lobby hears
    // USER'S TURN exactly when its player is first in line.
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    let mut health: BTreeMap<String, u64> = tokens.iter().map(|t| (t.clone(), 100)).collect();
    let mut records: Vec<Value> = Vec::new();
    let mut turns_heard: BTreeMap<String, usize> = BTreeMap::new();
    while order.len() > 1 {
        let me = order[0].clone();
        let enemy = order[1].clone();
        let frame = lobbies.get_mut(&me).unwrap().recv().await;
        assert_eq!(
            frame,
            json!({"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": "USER'S TURN"}})
        );
        *turns_heard.entry(me.clone()).or_default() += 1;
        let reply = action
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": me, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}}))
            .await;
        let post = health[&enemy].saturating_sub(40);
        assert_eq!(reply["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"], json!(post));
        health.insert(enemy.clone(), post);
        if post == 0 {
            order.retain(|p| *p != enemy);
        }
        order.rotate_left(1);
        records.push(reply);
    }
    for lobby in lobbies.values_mut() {
        assert_eq!(
            lobby.recv().await,
            json!({"PAYLOAD": {"GAME_TOKEN": game}, "STATUS": {"GAME": "COMPLETE"}})
        );
    }
    let attacks: usize = turns_heard.values().sum();
    assert_eq!(attacks, records.len(), "one USER'S TURN per attack");

    // The keys, as the original tutorial reads them.
    let games_waiting: usize = redis.llen("games:players:3").await.unwrap();
    assert_eq!(games_waiting, 1);
    let listed: Vec<String> = redis.lrange("games:players:3", 0, -1).await.unwrap();
    assert_eq!(listed, vec![game.clone()]);
    let status: String = redis.get(format!("games:{game}:status")).await.unwrap();
    assert_eq!(status, "Completed");
    let participants: u32 = redis
        .get(format!("games:{game}:participants"))
        .await
        .unwrap();
    assert_eq!(participants, 3);
    let stored_host: String = redis.get(format!("games:{game}:host")).await.unwrap();
    assert_eq!(stored_host, host, "the host is the creator's token");
    let joined: f64 = redis.zscore("games:participants", &game).await.unwrap();
    assert_eq!(joined, 3.0);
    let mut members: Vec<String> = redis.smembers(format!("games:{game}")).await.unwrap();
    members.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(members, expected);
    let mut taken: Vec<u64> = redis
        .smembers(format!("games:{game}:superheros"))
        .await
        .unwrap();
    taken.sort();
    let mut ids: Vec<u64> = hero_ids.values().copied().collect();
    ids.sort();
    assert_eq!(taken, ids, "three distinct heroes");
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for t in &tokens {
        let hash: BTreeMap<String, u64> = redis
            .hgetall(format!("games:{game}:superheros:{t}"))
            .await
            .unwrap();
        assert_eq!(
            hash,
            BTreeMap::from([
                ("id".into(), hero_ids[t]),
                ("attack".into(), 40),
                ("health".into(), health[t])
            ])
        );
    }
    let winner = order[0].clone();
    assert!(health[&winner] > 0);
    assert_eq!(health.values().filter(|h| **h > 0).count(), 1);
    let stored_order: Vec<String> = redis
        .lrange(format!("games:{game}:order"), 0, -1)
        .await
        .unwrap();
    assert_eq!(stored_order, vec![winner]);

    // games:<g>:logs holds every attack record, in order, in the documented shape.
    let logs: Vec<String> = redis
        .lrange(format!("games:{game}:logs"), 0, -1)
        .await
        .unwrap();
    assert_eq!(logs.len(), records.len());
    for (log, reply) in logs.iter().zip(&records) {
        let log: Value = serde_json::from_str(log).unwrap();
        assert_eq!(&log, reply);
        let keys: Vec<&String> = log.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["PAYLOAD", "STATUS", "TIMESTAMP"]);
        let details: Vec<&String> = log["STATUS"]["DETAILS"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            details,
            vec![
                "ENEMY_DAMAGE",
                "ENEMY_HEALTH_POST",
                "ENEMY_HEALTH_PRIOR",
                "ENEMY_TOKEN"
            ]
        );
    }
    // The raw text keeps the original key order.
    assert!(logs[0].starts_with(r#"{"TIMESTAMP":"#), "{}", logs[0]);

    // Users: name -> token in `users`, as the original.
    let users: BTreeMap<String, String> = redis.hgetall("users").await.unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users["USER001"], tokens[0]);
}
