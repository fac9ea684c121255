//! The deployment of the original, as separate processes: `superhero server`
//! publishing to Redis Streams, `superhero player` bots, and `superhero worker`
//! processes writing the tables, all sharing one Redis (database 0). Every completed
//! game ends up on disk exactly once, and nothing is left pending on the stream.

mod common;

use common::{Service, fresh_db, redis_url};
use serde_json::Value;

fn last_json(lines: &[String]) -> Value {
    lines
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .unwrap_or_else(|| panic!("no JSON summary in:\n{}", lines.join("\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_player_and_workers_as_separate_processes() {
    let mut conn = fresh_db(0).await;
    let store = redis_url(0);
    let broker = store.replacen("redis://", "redis-streams://", 1);
    let out = std::env::temp_dir().join(format!("superhero-services-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap();

    let built = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store])
        .output()
        .unwrap();
    assert!(built.status.success());

    let server = Service::start(
        &[
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--store",
            &store,
            "--broker",
            &broker,
            "--log-level",
            "WARNING",
        ],
        "listening on ws://",
    );
    // Two worker processes share the stream's consumer group.
    let workers: Vec<Service> = (0..2)
        .map(|_| {
            Service::start(
                &[
                    "worker",
                    "--workers",
                    "2",
                    "--store",
                    &store,
                    "--broker",
                    &broker,
                    "--output-dir",
                    out_arg,
                    "--clean",
                    "--json",
                    "--log-level",
                    "WARNING",
                ],
                "superhero worker:",
            )
        })
        .collect();

    let player = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args([
            "player",
            "--url",
            &server.url(),
            "--bots",
            "20",
            "--games",
            "3",
        ])
        .args(["--closed-world", "--json", "--log-level", "WARNING"])
        .output()
        .unwrap();
    assert!(player.status.success(), "{player:?}");
    let played: Value = last_json(
        &String::from_utf8_lossy(&player.stdout)
            .lines()
            .map(String::from)
            .collect::<Vec<_>>(),
    );
    let completed = played["games_completed"].as_u64().unwrap();
    assert!(completed > 0, "{played}");

    common::until_games_written(&out, completed, "separate processes").await;

    let mut written = 0;
    for w in workers {
        let (ok, lines) = w.interrupt();
        assert!(ok, "{}", lines.join("\n"));
        let summary = last_json(&lines);
        written += summary["games_written"].as_u64().unwrap();
        assert_eq!(summary["rejected"], 0, "{summary}");
    }
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));

    assert_eq!(written, completed, "each game written by one worker");
    let audit = superhero::audit::audit(&out).unwrap().report;
    assert_eq!(audit.games, completed);
    assert_eq!((audit.duplicate_games, audit.incomplete_games), (0, 0));
    assert!(audit.schema_ok, "{:?}", audit.bad_files);

    // Every event was acknowledged: nothing is pending.
    let pending_count: i64 = redis::cmd("XPENDING")
        .arg("lib.server.lobby")
        .arg("superhero_sim")
        .query_async::<(i64, redis::Value, redis::Value, redis::Value)>(&mut conn)
        .await
        .unwrap()
        .0;
    assert_eq!(pending_count, 0);
    std::fs::remove_dir_all(&out).unwrap();
}
