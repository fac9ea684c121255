//! Asked to stop with SIGTERM, as service managers and container runtimes ask, the
//! commands that run until stopped drain as at Ctrl-C: a server refuses new games
//! and serves the ones in play to their end (or to its stop timeout), bots finish
//! their games and stop, and `simulate` writes every game it completed before it
//! prints its summary. Real processes, real signals.

mod common;

use common::{Client, Service, error, last_json, login, n};
use serde_json::{Value, json};

const FIND: &str = "/api/v1/game/find";
const LOBBY: &str = "/api/v1/game/lobby";
const ACTION: &str = "/api/v1/game/action";

fn name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A `superhero server` on the embedded store, on a port of its own.
fn server(extra: &[&str]) -> Service {
    let args = [&["server", "--host", "127.0.0.1", "--port", "0"][..], extra].concat();
    Service::start(&args, "listening on ws://")
}

/// Two new players in one game, after START: the game and the lobbies in turn
/// order (the server orders players by token).
async fn two_in_a_game(base: &str) -> (String, Vec<(String, Client)>) {
    let mut find = Client::connect(base, FIND).await;
    let mut players = Vec::new();
    let mut game = String::new();
    for _ in 0..2 {
        let token = login(base, &name("STOP")).await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": token, "PARTICIPANTS": 2}}))
            .await;
        game = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .expect("a game token")
            .to_string();
        players.push((token, Client::connect(base, LOBBY).await));
    }
    players.sort_by(|a, b| a.0.cmp(&b.0));
    for (token, lobby) in &mut players {
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
            .await;
    }
    for (_, lobby) in &mut players {
        assert_eq!(lobby.recv().await["STATUS"], json!({"GAME": "START"}));
    }
    (game, players)
}

/// Plays the game to its end, each player attacking the other on its turn; the
/// attacks made.
async fn play_out(game: &str, players: &mut [(String, Client)], action: &mut Client) -> u32 {
    let tokens: Vec<String> = players.iter().map(|(t, _)| t.clone()).collect();
    for turn in 0..2000u32 {
        let me = turn as usize % 2;
        let heard: Value = players[me].1.recv().await;
        if heard["STATUS"] == json!({"GAME": "COMPLETE"}) {
            let other = players[1 - me].1.recv().await;
            assert_eq!(other["STATUS"], json!({"GAME": "COMPLETE"}), "{other}");
            return turn;
        }
        assert_eq!(heard["STATUS"], json!({"GAME": "USER'S TURN"}), "{heard}");
        let reply = action
            .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": tokens[me], "ENEMY_TOKEN": tokens[1 - me], "ACTION": "ATTACK"}}))
            .await;
        assert_eq!(reply["STATUS"]["ACTION"], json!("ATTACK"), "{reply}");
    }
    panic!("the game did not end");
}

/// SIGTERM mid-game: new games are refused, the game in play goes on over the
/// connections it has, and the server stops by itself once it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asked_to_stop_serves_its_games_to_their_end() {
    // Turns never time out: only the players end this game.
    let mut server = server(&["--turn-timeout", "0", "--stop-timeout", "60"]);
    let base = server.url();
    let (game, mut players) = two_in_a_game(&base).await;
    let late = login(&base, &name("LATE")).await;
    let mut find = Client::connect(&base, FIND).await;
    let mut action = Client::connect(&base, ACTION).await;

    server.signal("TERM");
    server.wait_for_line("new games refused");
    assert_eq!(
        find.ask(json!({"PAYLOAD": {"USER_TOKEN": late, "PARTICIPANTS": 2}}))
            .await,
        error("SERVER SHUTTING DOWN")
    );
    assert!(server.running(), "the server waits for its game");
    let attacks = play_out(&game, &mut players, &mut action).await;
    assert!(attacks >= 1);

    let (ok, lines) = server.wait();
    assert!(ok, "{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("the games in play ended")),
        "{}",
        lines.join("\n")
    );
}

/// A game whose players never act keeps a stopping server only until its stop
/// timeout; it says how many players it left in a game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_waits_no_longer_than_its_stop_timeout() {
    let server = server(&["--turn-timeout", "0", "--stop-timeout", "0.5"]);
    let base = server.url();
    let (_game, _players) = two_in_a_game(&base).await;
    server.signal("TERM");
    let (ok, lines) = server.wait();
    assert!(ok, "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopping with 2 players still in a game")),
        "{}",
        lines.join("\n")
    );
}

/// `player` at SIGTERM: its bots finish their games and stop, none in error, the
/// games not played counted as skipped; the server then stops at once.
#[test]
fn bots_asked_to_stop_finish_their_games() {
    let server = server(&[]);
    let url = server.url();
    let player = Service::start(
        &[
            "player",
            "--url",
            &url,
            "--bots",
            "10",
            "--games",
            "1000000",
            "--closed-world",
            "--json",
        ],
        "superhero player:",
    );
    // A game has ended on the server: the bots are playing.
    server.wait_for_line("Cleaning Game Records");
    player.signal("TERM");
    let (ok, lines) = player.wait();
    assert!(ok, "{}", lines.join("\n"));
    let summary = last_json(&lines);
    assert!(n(&summary, "games_completed") > 0, "{summary}");
    assert_eq!(n(&summary, "bot_errors"), 0, "{summary}");
    assert!(n(&summary, "games_skipped") > 0, "{summary}");

    server.signal("TERM");
    let (ok, lines) = server.wait();
    assert!(ok, "{}", lines.join("\n"));
}

/// `simulate` at SIGTERM: the bots stop taking new games, and every game completed
/// is on disk, once, when the summary is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_asked_to_stop_writes_every_game_it_completed() {
    let out = std::env::temp_dir().join(format!("superhero-stopping-{}", uuid::Uuid::new_v4()));
    let sim = Service::start(
        &[
            "--output-dir",
            out.to_str().unwrap(),
            "simulate",
            "--bots",
            "20",
            "--games",
            "1000000",
            "--no-progress",
            "--json",
            "--listen",
            "127.0.0.1:0",
        ],
        "game server: ws://",
    );
    assert!(common::games_written_within(&out, 1).await >= 1);
    sim.signal("TERM");
    let (ok, lines) = sim.wait();
    assert!(ok, "{}", lines.join("\n"));
    let summary = last_json(&lines);
    let completed = n(&summary, "games_completed");
    assert!(completed > 0, "{summary}");
    assert_eq!(n(&summary, "games_written"), completed, "{summary}");
    for zero in [
        "missing_games",
        "duplicate_games",
        "games_unfinished",
        "bot_errors",
    ] {
        assert_eq!(n(&summary, zero), 0, "{zero}: {summary}");
    }
    assert!(n(&summary, "games_skipped") > 0, "{summary}");
    let audit = superhero::audit::audit(&out).unwrap().report;
    assert_eq!(audit.games, completed);
    assert_eq!((audit.duplicate_games, audit.incomplete_games), (0, 0));
    std::fs::remove_dir_all(&out).unwrap();
}
