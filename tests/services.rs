//! The deployments of the original, as separate processes sharing one Redis (database
//! 0): `superhero server` publishing its events, `superhero player` bots, and two
//! `superhero worker` processes writing the tables, in three set-ups:
//!
//! - Redis Streams end to end;
//! - Redis pub/sub, with `superhero fanout` handing each event to one live worker;
//! - Redis pub/sub bridged by `superhero fanout --to amqp://…` into RabbitMQ;
//! - the same bridged into Kafka (`--to kafka://…`).
//!
//! In each, every completed game ends up on disk exactly once. The set-ups share the
//! pub/sub channel, so they run one after the other in one test.

mod common;

use common::{RunWithin, Service, fresh_db, last_json, redis_url};

/// Runs one deployment; returns the games completed and written.
async fn deployment(server_broker: &str, fanout: Option<&[&str]>, worker_broker: &str) -> u64 {
    let _ = fresh_db(0).await;
    let store = redis_url(0);
    let out = std::env::temp_dir().join(format!("superhero-services-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap();
    let quiet = ["--log-level", "WARNING"];

    let built = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store])
        .output_within();
    assert!(built.status.success());

    // Workers first: on pub/sub, what is published before anyone listens is gone.
    let workers: Vec<Service> = (0..2)
        .map(|_| {
            let args = [
                "worker",
                "--workers",
                "2",
                "--store",
                &store,
                "--broker",
                worker_broker,
                "--output-dir",
                out_arg,
                "--clean",
                "--json",
            ];
            // A Kafka worker starts once its group has taken it in.
            Service::start_within(
                &[&args[..], &quiet[..]].concat(),
                "superhero worker:",
                std::time::Duration::from_secs(60),
            )
        })
        .collect();
    let fanout = fanout.map(|extra| {
        let args = [
            &["fanout", "--broker", &store, "--json"][..],
            extra,
            &quiet[..],
        ]
        .concat();
        Service::start(&args, "superhero fanout:")
    });
    let server_args = [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--store",
        &store,
        "--broker",
        server_broker,
    ];
    let server = Service::start(
        &[&server_args[..], &quiet[..]].concat(),
        "listening on ws://",
    );

    let completed = common::play(&server.url(), 20);

    common::until_games_written(&out, completed, server_broker).await;

    let mut written = 0;
    // SIGTERM, as a service manager stops them; the server below gets Ctrl-C.
    for w in workers {
        let (ok, lines) = w.terminate();
        assert!(ok, "{}", lines.join("\n"));
        let summary = last_json(&lines);
        written += summary["games_written"].as_u64().unwrap();
        assert_eq!(summary["rejected"], 0, "{summary}");
    }
    if let Some(f) = fanout {
        let (ok, lines) = f.terminate();
        assert!(ok, "fanout lost messages:\n{}", lines.join("\n"));
        assert_eq!(last_json(&lines)["lost"], 0);
    }
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));

    assert_eq!(
        written, completed,
        "{server_broker}: each game by one worker"
    );
    let audit = superhero::audit::audit(&out).unwrap().report;
    assert_eq!(audit.games, completed);
    assert_eq!((audit.duplicate_games, audit.incomplete_games), (0, 0));
    assert!(audit.schema_ok, "{:?}", audit.bad_files);
    std::fs::remove_dir_all(&out).unwrap();
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_deployments_as_processes() {
    let redis = redis_url(0);
    let streams = redis.replacen("redis://", "redis-streams://", 1);
    let fanout = redis.replacen("redis://", "redis-fanout://", 1);
    let amqp = common::amqp_url();

    deployment(&streams, None, &streams).await;
    // Every event was acknowledged: nothing is pending on the stream.
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let (pending, ..): (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("lib.server.lobby")
        .arg("superhero_sim")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 0);

    deployment(&redis, Some(&[]), &fanout).await;
    deployment(&redis, Some(&["--to", &amqp]), &amqp).await;
    let kafka = common::kafka_url();
    deployment(&redis, Some(&["--to", &kafka]), &kafka).await;
}
