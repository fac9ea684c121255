//! 300 bots on two `superhero server` processes sharing one Redis. Each bot's lobby
//! sits on one instance and its hero look-ups and actions on the other, so every turn
//! crosses instances through the store. No game may get more players than it asked
//! for, every game must complete or time out, and no server may panic. And bots the
//! open-file limit cannot hold are refused up front.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{RunWithin, WAIT, fresh_db, redis_url};
use redis::AsyncCommands;
use superhero::player::{self, PlayerSettings};

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
        urls: vec![a.url.clone(), b.url.clone()],
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

/// Bots that the open-file limit cannot hold are refused up front, with the numbers;
/// a soft limit below the hard one is raised first, so the same run then fits.
#[test]
fn bots_beyond_the_open_file_limit_are_refused_up_front() {
    let bin = env!("CARGO_BIN_EXE_superhero");
    let out = std::env::temp_dir().join(format!("superhero-fds-{}", uuid::Uuid::new_v4()));
    let run = |ulimit: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{ulimit} && exec {bin} --json --output-dir {} simulate --bots 200 --games 1",
                out.display()
            ))
            .env_remove("LOG_LEVEL")
            .output_within()
    };
    // Soft and hard limit 1,024: 200 bots and their server need about 2,512.
    let refused = run("ulimit -n 1024");
    assert!(!refused.status.success(), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("200 bots need about 2512 open files"), "{err}");
    assert!(err.contains("may open 1024 (hard limit 1024)"), "{err}");
    assert!(err.contains("ask for at most 51 bots"), "{err}");
    // Only the soft limit at 1,024: raised to the hard one, the run fits.
    let fits = run("ulimit -Sn 1024");
    assert!(fits.status.success(), "{fits:?}");
    let summary = common::summary(&fits);
    assert_eq!(common::n(&summary, "bot_errors"), 0, "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}
