//! `simulate` with three workers on each network broker: the broker's semantics show
//! in the tables. Redis pub/sub broadcasts, so every game is written by all three
//! workers; the Redis fan-out, Redis Streams, RabbitMQ, NATS JetStream, NSQ and
//! Kafka share the work, so each game is written once.
//!
//! Uses Redis database 0; one test, so the runs never overlap. NSQ is the tests'
//! protocol-level peer unless NSQD_ADDRESS names a real nsqd (see `common::nsqd`).

mod common;

use common::{RunWithin, n};

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn simulate(broker: &str, out: &PathBuf) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["simulate", "--json", "--bots", "30", "--games", "4"])
        .args(["--workers", "3", "--broker", broker, "--output-dir"])
        .arg(out)
        .env_remove("LOG_LEVEL")
        .env_remove("LOGGER_MODULE")
        .env_remove("SUPERHERO_STORE")
        .output_within();
    let summary = common::summary(&output);
    assert!(output.status.success(), "{broker}: {summary}");
    summary
}

#[tokio::test]
async fn each_broker_keeps_its_semantics() {
    let _ = common::fresh_db(0).await;
    let redis = common::redis_url(0);
    let kafka = common::kafka_url();
    let cases = [
        (redis.clone(), 3u64),
        (redis.replacen("redis://", "redis-streams://", 1), 1),
        (redis.replacen("redis://", "redis-fanout://", 1), 1),
        (common::amqp_url(), 1),
        (common::nats_url(), 1),
        (format!("nsq://{}", common::nsqd::address()), 1),
        (kafka, 1),
    ];
    for (broker, copies) in cases {
        let out = std::env::temp_dir().join(format!("superhero-brokers-{}", uuid::Uuid::new_v4()));
        let s = tokio::task::spawn_blocking({
            let (broker, out) = (broker.clone(), out.clone());
            move || simulate(&broker, &out)
        })
        .await
        .unwrap();
        let completed = n(&s, "games_completed");
        assert!(completed > 0, "{broker}: {s}");
        assert_eq!(n(&s, "games_written"), completed, "{broker}: {s}");
        assert_eq!(n(&s, "missing_games"), 0, "{broker}: {s}");
        assert_eq!(n(&s, "events_dropped"), 0, "{broker}: {s}");
        let expected_duplicates = if copies > 1 { completed } else { 0 };
        assert_eq!(
            n(&s, "duplicate_games"),
            expected_duplicates,
            "{broker}: {s}"
        );
        assert_eq!(
            n(&s, "files_written"),
            2 * completed * copies,
            "{broker}: {s}"
        );

        let audit = superhero::audit::audit(&out).unwrap();
        assert_eq!(audit.report.games, completed, "{broker}");
        for (game, files) in &audit.files_per_game {
            assert_eq!(
                files,
                &[copies as u32, copies as u32],
                "{broker}: game {game} in {files:?} files"
            );
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}
