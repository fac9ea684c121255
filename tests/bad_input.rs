//! Bad input never hurts the server: each case gets a clear reply (or a clean close),
//! writes nothing to the store, and the server still serves full games afterwards.

mod common;

use common::{Client, error, fresh_redis_store, keyspace, login, start_server, uniform_roster};
use serde_json::json;
use superhero::player::{self, PlayerSettings};
use superhero::server::ServerSettings;
use superhero::store::GameStore;
use tokio_tungstenite::tungstenite::Message;

/// The next lobby frame that is not a USER'S TURN (this test acts without waiting for
/// its turns).
async fn next_but_turns(lobby: &mut Client) -> serde_json::Value {
    loop {
        let frame = lobby.recv().await;
        if frame["STATUS"]["GAME"] != "USER'S TURN" {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_writes_nothing() {
    let (store, mut redis) = fresh_redis_store(5).await;
    // attack 50, health 100: two hits kill, so a 3-player game has dead players soon.
    store
        .replace_roster(&uniform_roster(10, 50, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), ServerSettings::default()).await;
    let base = server.url.as_str();

    // A 3-player game where the first in turn order has killed the second.
    let mut tokens = vec![
        login(base, "USER001").await,
        login(base, "USER002").await,
        login(base, "USER003").await,
    ];
    let mut find = Client::connect(base, "/api/v1/game/find").await;
    let mut game = String::new();
    for t in &tokens {
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": t, "PARTICIPANTS": 3}}))
            .await;
        game = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
    }
    tokens.sort();
    let (a, b, c) = (tokens[0].clone(), tokens[1].clone(), tokens[2].clone());
    let mut lobbies = Vec::new();
    for t in &tokens {
        let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": t}}))
            .await;
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "START"}));
        lobbies.push(lobby);
    }
    let mut action = Client::connect(base, "/api/v1/game/action").await;
    let attack = |user: &str, enemy: &str| json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user, "ENEMY_TOKEN": enemy, "ACTION": "ATTACK"}});
    // a hits b, b hits c, c hits a, a kills b: order is now c, a.
    for (me, enemy) in [(&a, &b), (&b, &c), (&c, &a), (&a, &b)] {
        let reply = action.ask(attack(me, enemy)).await;
        assert_eq!(reply["STATUS"]["ACTION"], "ATTACK", "{reply}");
    }
    assert_eq!(
        store
            .snapshot(&superhero::game::GameToken::from(game.clone()))
            .await
            .unwrap()
            .unwrap()
            .board
            .order,
        vec![
            superhero::game::UserToken::from(c.clone()),
            superhero::game::UserToken::from(a.clone())
        ]
    );

    let before = keyspace(&mut redis).await;
    let mut hero = Client::connect(base, "/api/v1/game/hero").await;
    let mut lobby = Client::connect(base, "/api/v1/game/lobby").await;

    // Malformed and mistyped requests, on every endpoint.
    let cases = [
        ("/api/v1/login", "{not json", "MALFORMED JSON IN MESSAGE"),
        ("/api/v1/login", "[1, 2]", "MALFORMED JSON IN MESSAGE"),
        (
            "/api/v1/login",
            r#"{"PAYLOAD": {"USER": 42}}"#,
            "INVALID USER IN PAYLOAD",
        ),
        (
            "/api/v1/game/find",
            r#"{"PAYLOAD": "x"}"#,
            "PAYLOAD IS NOT AN OBJECT",
        ),
        (
            "/api/v1/game/find",
            r#"{"PAYLOAD": {"USER_TOKEN": 5, "PARTICIPANTS": 2}}"#,
            "INVALID USER TOKEN IN PAYLOAD",
        ),
        (
            "/api/v1/game/find",
            r#"{"PAYLOAD": {"USER_TOKEN": "x", "PARTICIPANTS": {}}}"#,
            "INVALID PARTICIPANTS IN PAYLOAD",
        ),
        (
            "/api/v1/game/find",
            r#"{"PAYLOAD": {"USER_TOKEN": "no-such-user", "PARTICIPANTS": 2}}"#,
            "UNKNOWN USER TOKEN",
        ),
        (
            "/api/v1/game/lobby",
            r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": 7}}"#,
            "INVALID GAME TOKEN IN PAYLOAD",
        ),
        (
            "/api/v1/game/lobby",
            r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "no-such-game"}}"#,
            "UNKNOWN GAME TOKEN",
        ),
        ("/api/v1/game/hero", "", "MALFORMED JSON IN MESSAGE"),
        (
            "/api/v1/game/action",
            r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "g", "ENEMY_TOKEN": "e", "ACTION": "HUG"}}"#,
            "UNKNOWN ACTION IN PAYLOAD",
        ),
        (
            "/api/v1/game/action",
            r#"{"PAYLOAD": {"USER_TOKEN": "u", "GAME_TOKEN": "no-such-game", "ENEMY_TOKEN": "e", "ACTION": "ATTACK"}}"#,
            "UNKNOWN GAME TOKEN",
        ),
    ];
    let mut clients = std::collections::BTreeMap::new();
    for (path, frame, message) in cases {
        if !clients.contains_key(path) {
            clients.insert(path, Client::connect(base, path).await);
        }
        let client = clients.get_mut(path).unwrap();
        client.send_text(frame).await;
        assert_eq!(
            client.recv().await,
            error(message),
            "for {frame:?} on {path}"
        );
    }
    let user = login(base, "USER001").await;
    for n in [json!(1), json!(0), json!(-2), json!(17), json!(1000)] {
        let reply = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}}))
            .await;
        assert_eq!(reply, error("PARTICIPANTS OUT OF RANGE"), "for {n}");
    }

    // Rule breaches in the running game.
    let refusals = [
        (attack(&b, &c), "ATTACKER IS DEAD"),
        (attack(&a, &c), "NOT USER'S TURN"),
        (attack(&c, &b), "ENEMY IS DEAD"),
        (attack(&c, &c), "CANNOT ATTACK SELF"),
        (attack(&c, "no-such-enemy"), "UNKNOWN ENEMY TOKEN"),
        (attack("no-such-user", &a), "USER NOT IN GAME"),
        (
            json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": c, "ENEMY_TOKEN": null, "ACTION": "ATTACK"}}),
            "OPPONENTS STILL ALIVE",
        ),
    ];
    for (request, message) in refusals {
        assert_eq!(
            action.ask(request.clone()).await,
            error(message),
            "for {request}"
        );
    }
    assert_eq!(
        lobby
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": "no-such-user"}}))
            .await,
        error("USER NOT IN GAME")
    );

    // Oversized and binary frames get a reply; the connection keeps serving.
    hero.send_text(&"x".repeat(20 * 1024)).await;
    assert_eq!(hero.recv().await, error("FRAME TOO LARGE"));
    hero.send_message(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(hero.recv().await, error("BINARY FRAMES NOT SUPPORTED"));
    let ok = hero
        .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": a}}))
        .await;
    assert_eq!(ok["STATUS"], json!({"GAME": "HERO SPEC"}));

    // A second lobby request on a connection whose lobby is still open.
    lobbies[0]
        .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": a}}))
        .await;
    assert_eq!(
        next_but_turns(&mut lobbies[0]).await,
        error("LOBBY ALREADY OPEN ON THIS CONNECTION")
    );

    assert_eq!(
        keyspace(&mut redis).await,
        before,
        "refused requests wrote nothing"
    );

    // Beyond 1 MiB the server closes that connection; others are unaffected.
    let mut huge = Client::connect(base, "/api/v1/game/hero").await;
    let sent = huge.try_send_text(&"x".repeat(2 * 1024 * 1024)).await;
    assert!(
        !sent || huge.closed().await,
        "an over-large frame closes its connection"
    );

    // Unknown paths are refused at the handshake.
    let refused = tokio_tungstenite::connect_async(format!("{base}/api/v1/nope")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("an unknown path must be refused, got {other:?}"),
    }

    // The game in progress goes on: c (50 health left) kills a (50 left) and wins.
    let reply = action.ask(attack(&c, &a)).await;
    assert_eq!(
        reply["STATUS"]["DETAILS"]["ENEMY_HEALTH_POST"], 0,
        "{reply}"
    );
    for lobby in lobbies.iter_mut() {
        assert_eq!(
            next_but_turns(lobby).await["STATUS"],
            json!({"GAME": "COMPLETE"})
        );
    }

    // And the server serves full games to bots.
    let summary = player::run(PlayerSettings {
        servers: vec![server.dial()],
        bots: 6,
        games: 3,
        first_user: 500,
        closed_world: true,
        ..PlayerSettings::default()
    })
    .await;
    assert_eq!(summary.bot_errors, 0);
    assert!(summary.games_completed >= 1, "{summary:?}");
}

/// Operator values beyond what the clock can hold get a clear error naming the flag,
/// never a panic.
#[test]
fn operator_values_out_of_range_are_refused_clearly() {
    use common::RunWithin;
    let cases: [(&[&str], &str); 7] = [
        (&["server", "--lobby-timeout", "1e30"], "--lobby-timeout"),
        (
            &["simulate", "--batch-games", "5", "--batch-seconds", "1e300"],
            "--batch-seconds",
        ),
        (
            &["simulate", "--redis-expiry", "18446744073709551615"],
            "--redis-expiry",
        ),
        (&["simulate", "--rate", "1e-300"], "--rate"),
        (&["simulate", "--drain-timeout", "inf"], "--drain-timeout"),
        (&["--claim-after", "1e20", "simulate"], "--claim-after"),
        (
            &[
                "bench",
                "--brokers",
                "memory",
                "--workloads",
                "raw",
                "--rate",
                "1e-300",
            ],
            "a rate must be",
        ),
    ];
    for (args, says) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
            .args(args)
            .env_remove("LOG_LEVEL")
            .output_within();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A lobby timeout too long for the clock is no timeout: the game starts as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lobby_timeout_beyond_the_clock_is_no_timeout() {
    let store = superhero::store::MemoryStore::new();
    store
        .replace_roster(&uniform_roster(10, 50, 10))
        .await
        .unwrap();
    let settings = ServerSettings {
        lobby_timeout: std::time::Duration::MAX,
        ..ServerSettings::default()
    };
    let server = start_server(store, settings).await;
    let summary = player::run(PlayerSettings {
        servers: vec![server.dial()],
        bots: 4,
        games: 2,
        closed_world: true,
        ..PlayerSettings::default()
    })
    .await;
    assert_eq!(summary.bot_errors, 0, "{summary:?}");
    assert!(summary.games_completed >= 1, "{summary:?}");
}

/// The socket-less answerer the fuzz targets drive replies as a connection does, the
/// fuzz corpus's sequences included: every committed input runs here without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuzzed_answerer_replies_as_a_connection_does() {
    use superhero::server::Answerer;
    use superhero::store::MemoryStore;
    let store = MemoryStore::new();
    store
        .replace_roster(&uniform_roster(5, 30, 10))
        .await
        .unwrap();
    let server = Answerer::new(store, ServerSettings::default());
    let created = server
        .answer("/api/v1/login", r#"{"PAYLOAD": {"USER": "FUZZ"}}"#)
        .await
        .unwrap();
    assert_eq!(created[0], error("USER CREATED").to_string());
    let user =
        serde_json::from_str::<serde_json::Value>(&created[1]).unwrap()["PAYLOAD"]["USER_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
    let joined = server
        .answer(
            "/api/v1/game/find",
            &json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": 2}}).to_string(),
        )
        .await
        .unwrap();
    let joined: serde_json::Value = serde_json::from_str(&joined[0]).unwrap();
    assert_eq!(joined["STATUS"], json!({"JOINED": "SUCCESS"}));
    let game = joined["PAYLOAD"]["GAME_TOKEN"].as_str().unwrap();
    let lobby = json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user}}).to_string();
    assert_eq!(
        server.answer("/api/v1/game/lobby", &lobby).await,
        Some(vec![]),
        "a lobby that would open"
    );
    assert_eq!(
        server.answer("/api/v1/game/lobby", "{").await,
        Some(vec![error("MALFORMED JSON IN MESSAGE").to_string()])
    );
    assert_eq!(server.answer("/elsewhere", "{}").await, None);
    let huge = "x".repeat(20_000);
    assert_eq!(
        server.answer("/api/v1/login", &huge).await,
        Some(vec![error("FRAME TOO LARGE").to_string()])
    );

    // The committed fuzz corpus: one request per line, its first byte the endpoint.
    let paths = [
        "/api/v1/login",
        "/api/v1/game/find",
        "/api/v1/game/lobby",
        "/api/v1/game/hero",
        "/api/v1/game/action",
        "/nowhere",
    ];
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/requests");
    for entry in std::fs::read_dir(corpus).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for line in data.split(|b| *b == b'\n').take(64) {
            if let Some((&which, frame)) = line.split_first() {
                let path = paths[usize::from(which) % paths.len()];
                let _ = server.answer(path, &String::from_utf8_lossy(frame)).await;
            }
        }
    }
}
