//! A worker process killed with SIGKILL while it holds games loses none of them, on
//! every broker that redelivers: the first worker batches everything and never gets
//! to write; it is killed; a second worker takes its games over. The audit then finds
//! every completed game once. Then workers are killed at random points of their cycle
//! while games finish, and again every game is written once.
//!
//! Uses Redis database 0 (one test, brokers in turn). NSQ is the tests' protocol-level
//! peer unless NSQD_ADDRESS names a real nsqd (see `common::nsqd`).

mod common;

use common::{Service, fresh_db, redis_url};

/// How long a worker may take to join: a Kafka consumer group waits out its killed
/// member's session (10 s) before it hands the partitions to the heir.
const JOIN: std::time::Duration = std::time::Duration::from_secs(60);

/// An empty Redis database 0 with the roster, and a fresh output folder (and its
/// path as an argument).
async fn fresh_run(name: &str) -> (String, std::path::PathBuf, String) {
    let _ = fresh_db(0).await;
    let store = redis_url(0);
    let out = std::env::temp_dir().join(format!("superhero-{name}-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap().to_string();
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store])
        .output()
        .unwrap();
    assert!(built.status.success());
    (store, out, out_arg)
}

/// A worker that outlives the killed ones writes every game they left; then the
/// server stops cleanly and the audit finds each of the `completed` games once.
async fn heir_writes_the_rest(
    context: &str,
    common_args: &[&str],
    out: &std::path::Path,
    completed: u64,
    server: Service,
) {
    let out_arg = out.to_str().unwrap();
    // The heir tells what its broker client does, for the failure message.
    let heir_args = [
        &["worker", "--clean", "--json", "--output-dir", out_arg][..],
        common_args,
        &["--log-level", "warn,superhero::broker=debug"][..],
    ]
    .concat();
    let heir = Service::start_within(&heir_args, "superhero worker:", JOIN);
    let written = common::games_written_within(out, completed).await;
    let (ok, lines) = heir.interrupt();
    assert_eq!(
        written,
        completed,
        "{context}, after the kill: games written; the heir printed:\n{}",
        lines.join("\n")
    );
    assert!(ok, "{}", lines.join("\n"));
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));

    let report = superhero::audit::audit(out).unwrap().report;
    assert_eq!(report.games, completed, "{context}");
    assert_eq!(report.duplicate_games, 0, "{context}");
    assert_eq!(report.incomplete_games, 0, "{context}");
    std::fs::remove_dir_all(out).unwrap();
}

async fn kill_a_worker_holding_games(broker: &str) {
    let (store, out, out_arg) = fresh_run("kill").await;
    let common_args = ["--store", &store, "--broker", broker, "--claim-after", "2"];
    let quiet = ["--log-level", "WARNING"];
    let server = Service::start(
        &[
            &["server", "--host", "127.0.0.1", "--port", "0"][..],
            &common_args[..],
            &quiet[..],
        ]
        .concat(),
        "listening on ws://",
    );
    let holder_args = [
        &[
            "worker",
            "--batch-games",
            "100000",
            "--batch-seconds",
            "600",
            "--clean",
            "--output-dir",
            &out_arg,
        ][..],
        &common_args[..],
        &quiet[..],
    ]
    .concat();
    let holder = Service::start_within(&holder_args, "superhero worker:", JOIN);

    let completed = common::play(&server.url(), 12);
    assert_eq!(
        superhero::audit::audit(&out).unwrap().report.files,
        0,
        "{broker}: the first worker holds its batch"
    );

    // The heir starts at once: on Kafka the group hands it the dead member's
    // partitions when that member's session runs out.
    holder.kill();

    heir_writes_the_rest(broker, &common_args, &out, completed, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_game() {
    let redis = redis_url(0);
    let seed: u64 = rand::random();
    let kafka = common::kafka_url();
    for broker in [
        redis.replacen("redis://", "redis-streams://", 1),
        common::amqp_url(),
        common::nats_url(),
        format!("nsq://{}", common::nsqd::address()),
        kafka,
    ] {
        let started = std::time::Instant::now();
        kill_a_worker_holding_games(&broker).await;
        kill_workers_at_random(&broker, seed).await;
        eprintln!("{broker}: {:?}", started.elapsed());
    }
}

/// Workers killed with SIGKILL at random points of their cycle (taking, writing,
/// renaming, acknowledging), alone and in batches, one after another while games
/// finish; an heir finishes. Every completed game is in the tables once.
async fn kill_workers_at_random(broker: &str, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let (store, out, out_arg) = fresh_run("kills").await;
    let common_args = ["--store", &store, "--broker", broker, "--claim-after", "2"];
    let quiet = ["--log-level", "WARNING"];
    // A pause before each turn spreads the games over the kills.
    let server = Service::start(
        &[
            &["server", "--host", "127.0.0.1", "--port", "0"][..],
            &["--server-sleep", "0.03"][..],
            &common_args[..],
            &quiet[..],
        ]
        .concat(),
        "listening on ws://",
    );
    let url = server.url();
    let bots = std::thread::spawn(move || common::play(&url, 12));
    for round in 0..3 {
        let batch: &[&str] = if round % 2 == 0 {
            &[]
        } else {
            &["--batch-games", "4", "--batch-seconds", "0.2"]
        };
        let args = [
            &["worker", "--clean", "--output-dir", &out_arg][..],
            batch,
            &common_args[..],
            &quiet[..],
        ]
        .concat();
        let victim = Service::start_within(&args, "superhero worker:", JOIN);
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(200..900)));
        victim.kill();
    }
    let completed = bots.join().unwrap();
    let context = format!("{broker} (seed {seed})");
    heir_writes_the_rest(&context, &common_args, &out, completed, server).await;
}
