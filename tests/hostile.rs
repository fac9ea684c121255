//! A game server under hostile clients while real bots play: half-open sockets,
//! silent WebSockets, malformed and oversized frames, lobbies that never answer a
//! ping, players who never act, replayed lobbies, and more connections than the cap.
//! The bots' games all end, every bad frame gets a STATUS or a close code, the server
//! closes what is silent within its timeouts, and its memory stays bounded.

mod common;

use std::time::Duration;

use common::{Client, RunWithin, login, start_server, uniform_roster};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use superhero::game::protocol::{LOGIN_PATH, login_request};
use superhero::net::ConnectionLimits;
use superhero::server::{IDLE_CLOSE_REASON, ServerSettings};
use superhero::store::{GameStore, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Bounds small enough that the test sees each of them act.
fn strict() -> ServerSettings {
    ServerSettings {
        lobby_timeout: Duration::from_secs(1),
        turn_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_millis(500),
        limits: ConnectionLimits {
            header_timeout: Duration::from_secs(1),
            ..ConnectionLimits::default()
        },
        ..ServerSettings::default()
    }
}

/// The time the server has to close what it must: its timeouts, with room for a
/// loaded machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(8);

/// Whether the server closes a raw socket (end of stream or reset) in time.
async fn server_closes(mut tcp: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// The close code the server ends a WebSocket with, reading (and so answering pings)
/// until then; `None` if it stays open or ends without a close frame.
async fn close_code(client: &mut Client) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, client.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Err(_) | Ok(None) | Ok(Some(Err(_))) => return None,
        }
    }
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_cannot_stop_the_games() {
    let store = MemoryStore::new();
    store
        .replace_roster(&uniform_roster(20, 50, 10))
        .await
        .unwrap();
    let server = start_server(store.clone(), strict()).await;
    let base = server.url.clone();
    let addr = base.trim_start_matches("ws://").to_string();
    let rss_before = rss_kib();

    // Real bots play all along.
    let bots = {
        let url = base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
                .args(["player", "--url", &url, "--bots", "30", "--games", "3"])
                .args(["--closed-world", "--json", "--log-level", "WARNING"])
                .output_within()
        })
    };

    // Half-open sockets: connected, never a byte.
    let mut silent_tcp = Vec::new();
    for _ in 0..200 {
        silent_tcp.push(TcpStream::connect(&addr).await.unwrap());
    }
    // WebSockets that say nothing after the handshake.
    let mut silent_ws = Vec::new();
    for _ in 0..50 {
        silent_ws.push(Client::connect(&base, "/api/v1/game/hero").await);
    }
    // Malformed frames get a STATUS each and the connection serves on; a frame over
    // the message limit ends it with 1009.
    let mut bad = Vec::new();
    for i in 0..50 {
        let mut c = Client::connect(&base, "/api/v1/game/find").await;
        for junk in [
            "{",
            "[]",
            r#"{"PAYLOAD": 7}"#,
            "\u{0}\u{1}",
            &"x".repeat(20_000),
        ] {
            let reply = c.ask_text(junk).await;
            assert!(reply["STATUS"].is_string(), "{junk:?} got {reply}");
        }
        c.send_message(Message::binary(vec![0u8; 10])).await;
        assert_eq!(c.recv().await["STATUS"], "BINARY FRAMES NOT SUPPORTED");
        if i % 5 == 0 {
            let huge = "y".repeat(superhero::server::MAX_MESSAGE_BYTES + 1);
            let _ = c.try_send_text(&huge).await;
            assert_eq!(close_code(&mut c).await, Some(CloseCode::Size), "oversized");
        }
        bad.push(c);
    }

    // Players who find a game, open its lobby, and never act or answer a ping.
    let mut afk = Vec::new();
    for _ in 0..10 {
        let token = login(&base, &format!("AFK-{}", uuid::Uuid::new_v4().simple())).await;
        let mut find = Client::connect(&base, "/api/v1/game/find").await;
        let joined = find
            .ask(json!({"PAYLOAD": {"USER_TOKEN": token, "PARTICIPANTS": 2}}))
            .await;
        let game = joined["PAYLOAD"]["GAME_TOKEN"]
            .as_str()
            .unwrap()
            .to_string();
        let mut lobby = Client::connect(&base, "/api/v1/game/lobby").await;
        lobby
            .send(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
            .await;
        afk.push((game, token, lobby));
    }

    // Every half-open socket and silent WebSocket is closed within the timeouts.
    let closes: Vec<_> = silent_tcp.into_iter().map(server_closes).collect();
    for closed in futures_util::future::join_all(closes).await {
        assert!(closed, "a half-open socket stayed open");
    }
    for mut c in silent_ws {
        assert_eq!(close_code(&mut c).await, Some(CloseCode::Normal), "idle");
    }
    // Games with players who never act, nor answer a ping (a client that does not
    // read sends no pong), end: they forfeit or leave. Then their lobbies close.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    for (game, token, mut lobby) in afk {
        let game = superhero::game::GameToken::from(game);
        while !store
            .snapshot(&game)
            .await
            .unwrap()
            .unwrap()
            .board
            .status
            .is_over()
        {
            assert!(tokio::time::Instant::now() < deadline, "{game} never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            close_code(&mut lobby).await.is_some(),
            "{game}: lobby left open"
        );
        // Replaying the finished game's lobby answers its end again, over and over.
        let mut replay = Client::connect(&base, "/api/v1/game/lobby").await;
        for _ in 0..20 {
            let end = replay
                .ask(json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": token}}))
                .await;
            assert!(end["STATUS"]["GAME"].is_string(), "{end}");
        }
    }

    let run = bots.await.unwrap();
    assert!(run.status.success(), "{run:?}");
    let summary = common::summary(&run);
    assert_eq!(common::n(&summary, "bot_errors"), 0, "{summary}");
    assert!(common::n(&summary, "games_completed") > 0, "{summary}");

    // The connections that sent bad frames served on; now silent, they are closed.
    for (i, mut c) in bad.into_iter().enumerate() {
        if i % 5 != 0 {
            assert_eq!(close_code(&mut c).await, Some(CloseCode::Normal), "idle");
        }
    }
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "memory grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_answered_503() {
    let settings = ServerSettings {
        limits: ConnectionLimits {
            max_connections: 20,
            max_per_peer: 0,
            header_timeout: Duration::from_secs(5),
        },
        ..ServerSettings::default()
    };
    let server = start_server(MemoryStore::new(), settings).await;
    let addr = server.url.trim_start_matches("ws://").to_string();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // The server takes them in order; one more is refused with a reply.
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(CLOSED_WITHIN, extra.read_to_string(&mut reply))
        .await
        .expect("an answer in time")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    // A slot given back is free again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + CLOSED_WITHIN;
    loop {
        let mut again = TcpStream::connect(&addr).await.unwrap();
        again
            .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        let _ = tokio::time::timeout(CLOSED_WITHIN, again.read_to_string(&mut reply)).await;
        if reply.starts_with("HTTP/1.1 404") {
            break;
        }
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request that crosses the server's idle close goes unanswered and unread: the
/// server reads nothing after that close. That is what lets a bot whose request
/// crossed it send the request again on a new connection without doing it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_crossing_the_idle_close_is_not_read() {
    let store = MemoryStore::new();
    let server = start_server(store.clone(), strict()).await;
    let addr = server.url.trim_start_matches("ws://").to_string();
    let url = format!("{}{}", server.url, LOGIN_PATH);
    let (mut ws, _) =
        tokio_tungstenite::client_async(url, TcpStream::connect(&addr).await.unwrap())
            .await
            .unwrap();
    // Silent for the idle timeout: the close frame arrives, and stays unread.
    tokio::time::timeout(CLOSED_WITHIN, ws.get_ref().readable())
        .await
        .expect("the idle close in time")
        .unwrap();
    ws.send(Message::text(login_request("CROSSED")))
        .await
        .unwrap();
    let mut replies = Vec::new();
    let mut reason = None;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(CLOSED_WITHIN, ws.next()).await {
        match message {
            Message::Close(frame) => reason = frame.map(|f| f.reason.to_string()),
            other => replies.push(other),
        }
    }
    assert_eq!(reason.as_deref(), Some(IDLE_CLOSE_REASON));
    assert!(replies.is_empty(), "{replies:?}");
    let (_, created) = store.login("CROSSED").await.unwrap();
    assert!(created, "the crossing login was not carried out");
}
