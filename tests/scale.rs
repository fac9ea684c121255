//! 300 bots on two `superhero server` processes sharing one Redis. Each bot's lobby
//! sits on one instance and its hero look-ups and actions on the other, so every turn
//! crosses instances through the store. No game may get more players than it asked
//! for, every game must complete or time out, and no server may panic. Bots the
//! open-file limit cannot hold over TCP are refused up front; in-process bots hold
//! none, and `simulate --listen` lets outside clients in while they play.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{RunWithin, WAIT, fresh_db, redis_url};
use redis::AsyncCommands;
use superhero::net::Dial;
use superhero::player::{self, PlayerSettings};
use superhero::store::GameStore;

/// A `superhero server` process; killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
    /// Lines of its output that speak of a panic.
    panics: mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(store: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_superhero"))
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--lobby-timeout",
                "2",
            ])
            .args(["--store", store, "--log-level", "WARNING"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the superhero binary starts");
        let (ready_tx, ready) = mpsc::channel();
        let (panic_tx, panics) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // Drain both streams for the whole run so the server never blocks on a full pipe.
        let watch = move |stream: Box<dyn std::io::Read + Send>,
                          ready: Option<mpsc::Sender<String>>,
                          panics: mpsc::Sender<String>| {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let (Some(tx), Some(url)) = (
                        &ready,
                        line.split_whitespace().find(|w| w.starts_with("ws://")),
                    ) {
                        let _ = tx.send(url.to_string());
                    }
                    if line.contains("panicked") {
                        let _ = panics.send(line);
                    }
                }
            });
        };
        watch(Box::new(stdout), Some(ready_tx), panic_tx.clone());
        watch(Box::new(stderr), None, panic_tx);
        let url = ready
            .recv_timeout(WAIT)
            .expect("the server says where it listens");
        Self { child, url, panics }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_on_two_servers_sharing_redis() {
    let mut redis = fresh_db(4).await;
    let store = redis_url(4);
    let built = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store, "--seed", "7"])
        .output_within();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let mut a = ServerProcess::start(&store);
    let mut b = ServerProcess::start(&store);
    let summary = player::run(PlayerSettings {
        servers: vec![Dial::Url(a.url.clone()), Dial::Url(b.url.clone())],
        bots: 300,
        games: 3,
        seed: 11,
        closed_world: true,
        ..PlayerSettings::default()
    })
    .await;
    assert_eq!(summary.bot_errors, 0, "{summary:?}");
    assert!(summary.games_completed >= 200, "{summary:?}");

    let mut completed = 0;
    let mut timed_out = 0;
    for n in [2usize, 3] {
        let games: Vec<String> = redis
            .lrange(format!("games:players:{n}"), 0, -1)
            .await
            .unwrap();
        for g in games {
            let players: usize = redis.scard(format!("games:{g}")).await.unwrap();
            assert!(players <= n, "game {g} has {players} players for {n}");
            let joined: f64 = redis.zscore("games:participants", &g).await.unwrap();
            assert_eq!(joined as usize, players, "game {g}: joins counted once");
            let status: String = redis.get(format!("games:{g}:status")).await.unwrap();
            match status.as_str() {
                "Completed" => {
                    assert_eq!(players, n, "a completed game {g} was full");
                    completed += 1;
                }
                "Timed Out" => timed_out += 1,
                other => panic!("game {g} ended as {other:?}"),
            }
        }
    }
    assert_eq!(completed, summary.games_completed, "{summary:?}");
    assert!(timed_out >= summary.games_timed_out);

    for server in [&mut a, &mut b] {
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server is still running"
        );
        if let Ok(line) = server.panics.try_recv() {
            panic!("a server panicked: {line}");
        }
    }
}

/// Runs `superhero --json --output-dir OUT ARGS` under a shell's `ulimit` setting.
fn simulate_under(ulimit: &str, out: &std::path::Path, args: &str) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_superhero");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{ulimit} && exec {bin} --json --output-dir {} simulate {args}",
            out.display()
        ))
        .env_remove("LOG_LEVEL")
        .output_within()
}

/// Bots that the open-file limit cannot hold over TCP are refused up front, with the
/// numbers; a soft limit below the hard one is raised first, so the same run then
/// fits.
#[test]
fn tcp_bots_beyond_the_open_file_limit_are_refused_up_front() {
    let out = std::env::temp_dir().join(format!("superhero-fds-{}", uuid::Uuid::new_v4()));
    let args = "--transport tcp --bots 200 --games 1";
    // Soft and hard limit 1,024: 200 bots and their server need about 2,512.
    let refused = simulate_under("ulimit -n 1024", &out, args);
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("200 bots need about 2512 open files"), "{err}");
    assert!(err.contains("may open 1024 (hard limit 1024)"), "{err}");
    assert!(err.contains("ask for at most 51 bots"), "{err}");
    // Only the soft limit at 1,024: raised to the hard one, the run fits.
    let fits = simulate_under("ulimit -Sn 1024", &out, args);
    assert!(fits.status.success(), "{fits:?}");
    let summary = common::summary(&fits);
    assert_eq!(common::n(&summary, "bot_errors"), 0, "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

/// In-process bots hold no descriptors: thousands of them play under a hard limit
/// of 1,024 open files, which over TCP would hold 51, and every completed game is
/// written.
#[test]
fn thousands_of_in_process_bots_need_no_descriptors() {
    let out = std::env::temp_dir().join(format!("superhero-many-{}", uuid::Uuid::new_v4()));
    let run = simulate_under(
        "ulimit -n 1024",
        &out,
        "--bots 3000 --games 1 --batch-games 1000 --batch-seconds 1",
    );
    let summary = common::summary(&run);
    assert!(run.status.success(), "{summary}");
    assert_eq!(common::n(&summary, "bots"), 3000, "{summary}");
    assert_eq!(common::n(&summary, "bot_errors"), 0, "{summary}");
    let completed = common::n(&summary, "games_completed");
    // 3,000 bots × 1 game, 2.5 players a game, less the few left without partners.
    assert!(completed >= 1000, "{summary}");
    assert_eq!(common::n(&summary, "games_written"), completed, "{summary}");
    assert_eq!(common::n(&summary, "games_unfinished"), 0, "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `simulate --listen` serves the running simulation to clients from outside: one
/// logs in over TCP while the bots play in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_simulation_serves_outside_clients() {
    let out = std::env::temp_dir().join(format!("superhero-listen-{}", uuid::Uuid::new_v4()));
    let out_arg = out.display().to_string();
    // About 3 s of games at 10 a second: time for the outside client.
    let args = [
        "--json",
        "--output-dir",
        &out_arg,
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--bots",
        "4",
        "--games",
        "20",
        "--rate",
        "10",
    ];
    let sim = common::Service::start(&args, "game server: ws://");
    let token = common::login(&sim.url(), "OUTSIDER").await;
    assert_eq!(token.len(), 36, "a user token: {token}");
    let (ok, lines) = sim.wait();
    let summary = common::last_json(&lines);
    assert!(ok, "{lines:?}");
    assert_eq!(common::n(&summary, "bot_errors"), 0, "{summary}");
    assert!(common::n(&summary, "games_written") > 0, "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A server may close connections left idle; bots open them again before their next
/// request instead of failing. Here a game outlasts the idle timeout, so every bot's
/// find connection is closed while it plays, and half the bots wait for a place in
/// a game longer than that, so all their connections, the lobby's too, are closed
/// before their first game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_reopen_connections_the_server_closed_for_idleness() {
    // Attack 1 against health 10: a game of 2 is 19 turns of at least 30 ms.
    let settings = superhero::server::ServerSettings {
        idle_timeout: std::time::Duration::from_millis(200),
        server_sleep: std::time::Duration::from_millis(30),
        ..Default::default()
    };
    let bots = PlayerSettings {
        bots: 10,
        games: 2,
        concurrent_bots: 5,
        ..PlayerSettings::default()
    };
    let summary = play_in_process((1, 1), settings, bots).await;
    assert_eq!(summary.bot_errors, 0, "{summary:?}");
    assert!(summary.games_completed >= 6, "{summary:?}");
    // Each of the 5 late bots reopens at least its find and lobby connections.
    assert!(summary.connections_reopened >= 10, "{summary:?}");
}

/// With fewer places in games than bots, bots wait their turn; the fewest places
/// allowed still fill every lobby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_beyond_the_concurrency_cap_wait_their_turn() {
    let bots = PlayerSettings {
        bots: 30,
        games: 2,
        concurrent_bots: 1,
        ..PlayerSettings::default()
    };
    let summary = play_in_process((50, 1), Default::default(), bots).await;
    assert_eq!(summary.bot_errors, 0, "{summary:?}");
    // At the closed world's end the last two bots may have chosen a game of three
    // just as the third one finished: that one lobby times out. Any other would
    // be a lobby the cap kept from filling.
    assert!(summary.games_timed_out <= 1, "{summary:?}");
    assert!(summary.games_completed >= 20, "{summary:?}");
}

/// Closed-world `bots` on an in-process server with `settings`, on the embedded store
/// with a roster of identical heroes of `(attack_stat, health_stat)`.
async fn play_in_process(
    (attack, health): (u64, u64),
    settings: superhero::server::ServerSettings,
    bots: PlayerSettings,
) -> player::PlayerSummary {
    let store = superhero::store::MemoryStore::new();
    store
        .replace_roster(&common::uniform_roster(10, attack, health))
        .await
        .unwrap();
    let server = common::start_server_over(store, settings, common::Transport::InProcess).await;
    player::run(PlayerSettings {
        servers: vec![server.dial()],
        closed_world: true,
        ..bots
    })
    .await
}
