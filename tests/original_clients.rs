//! The original's clients on our pipeline, on the two brokers where they differ from
//! ours: a worker that declares, names and acknowledges as the original's does
//! (`tests/original/worker.py`: aiormq on RabbitMQ, aiokafka on Kafka) consumes what
//! `superhero server` publishes and reads the games from our Redis keyspace; a
//! publisher that sends as the original's server does (`tests/original/publisher.py`)
//! reaches `superhero worker`.
//!
//! Both run on the Python of SUPERHERO_TEST_PYTHON (scripts/test installs aiormq,
//! aiokafka and redis from PyPI there). The cases share the original's fixed names
//! (`task_lib.server.lobby`, `lib.server.lobby`, group `superhero_sim`) and Redis
//! database 0, so they run one after the other in one test.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{RunWithin, Service, fresh_db, redis_url};
use serde_json::Value;

const QUEUE: &str = "task_lib.server.lobby";
const TOPIC: &str = "lib.server.lobby";
/// How long the original's clients may take to start and to see every game.
const PATIENCE: Duration = Duration::from_secs(60);

fn python() -> Command {
    let python = std::env::var("SUPERHERO_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(python)
}

fn script(name: &str) -> String {
    format!("{}/tests/original/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The original's worker on `kind` (`rabbit` or `kafka`) at `address`, once it
/// consumes.
fn original_worker(kind: &str, address: &str) -> Service {
    let mut command = python();
    command
        .arg(script("worker.py"))
        .args([kind, address, &redis_url(0)]);
    Service::spawn(command, "ready", PATIENCE)
}

/// The games the original's worker has printed so far.
fn games_seen(worker: &Service) -> Vec<Value> {
    worker
        .lines()
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn completed(seen: &[Value]) -> usize {
    seen.iter().filter(|g| g["status"] == "Completed").count()
}

/// Waits until the original's worker has seen `games` completed games (games whose
/// lobby timed out are logged too); checks that each was read whole from the
/// keyspace, and each game once.
async fn until_the_original_saw(worker: Service, games: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while (completed(&games_seen(&worker)) as u64) < games && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = games_seen(&worker);
    let (_, lines) = worker.close_stdin();
    let distinct: BTreeSet<&str> = seen.iter().filter_map(|g| g["game"].as_str()).collect();
    assert_eq!(
        (completed(&seen) as u64, distinct.len()),
        (games, seen.len()),
        "{what}: the original's worker saw {} events for {} games, {} completed of {games}; \
         it printed:\n{}",
        seen.len(),
        distinct.len(),
        completed(&seen),
        lines.join("\n")
    );
    for game in &seen {
        if game["status"] == "Completed" {
            assert!(game["participants"].as_u64() >= Some(2), "{what}: {game}");
            assert!(game["attacks"].as_u64() >= Some(1), "{what}: {game}");
        } else {
            assert_eq!(game["status"], "Timed Out", "{what}: {game}");
        }
    }
}

/// Fills the roster of database 0, emptied first.
async fn fresh_store() -> String {
    let _ = fresh_db(0).await;
    let store = redis_url(0);
    let built = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store])
        .output_within();
    assert!(built.status.success(), "{built:?}");
    store
}

/// `superhero server` on the test store, publishing to `broker` (None: to no broker).
fn server(store: &str, broker: Option<&str>) -> Service {
    let mut args = vec!["server", "--host", "127.0.0.1", "--port", "0"];
    args.extend(["--store", store, "--log-level", "WARNING"]);
    match broker {
        Some(url) => args.extend(["--broker", url]),
        None => args.extend(["--logger-module", "default"]),
    }
    Service::start(&args, "listening on ws://")
}

/// Deletes the workers' queue, so that a case starts with none (or with what it
/// declares itself).
async fn delete_rabbit_queue() {
    let conn =
        lapin::Connection::connect(&common::amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("RabbitMQ is reachable (scripts/test starts it)");
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_delete(QUEUE.into(), lapin::options::QueueDeleteOptions::default())
        .await
        .unwrap();
    conn.close(200, "done".into()).await.unwrap();
}

/// Deletes the workers' Kafka topic and waits until it is gone, so that a worker
/// subscribing next finds no topic unless the server declares it.
async fn delete_kafka_topic() {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let servers = common::kafka_url().replacen("kafka://", "", 1);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .unwrap();
    let _ = admin
        .delete_topics(&[TOPIC], &AdminOptions::new())
        .await
        .expect("Kafka is reachable (scripts/test starts it)");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            .unwrap();
        let present = metadata
            .topics()
            .iter()
            .any(|t| t.name() == TOPIC && t.error().is_none());
        if !present {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{TOPIC} is not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The original's RabbitMQ worker declared its queue before the server started: the
/// server accepts that declaration and routes every event to it.
async fn rabbit_worker_before_the_server() {
    let store = fresh_store().await;
    delete_rabbit_queue().await;
    let worker = original_worker("rabbit", &common::amqp_url());
    let server = server(&store, Some(&common::amqp_url()));
    let games = common::play(&server.url(), 12);
    until_the_original_saw(worker, games, "RabbitMQ, the original's worker first").await;
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));
}

/// The original's RabbitMQ worker starts after the games were played: the queue the
/// server declared at start kept every event for it.
async fn rabbit_worker_after_the_games() {
    let store = fresh_store().await;
    delete_rabbit_queue().await;
    let server = server(&store, Some(&common::amqp_url()));
    let games = common::play(&server.url(), 12);
    let worker = original_worker("rabbit", &common::amqp_url());
    until_the_original_saw(worker, games, "RabbitMQ, the original's worker last").await;
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));
}

/// The original's Kafka worker subscribes (from the latest offset) once the server
/// has started, before any game: the topic exists, so the group gives it partitions,
/// and it sees every game.
async fn kafka_worker_before_the_first_game() {
    let store = fresh_store().await;
    delete_kafka_topic().await;
    let kafka = common::kafka_url();
    let server = server(&store, Some(&kafka));
    let worker = original_worker("kafka", &kafka.replacen("kafka://", "", 1));
    let games = common::play(&server.url(), 12);
    until_the_original_saw(worker, games, "Kafka, the original's worker").await;
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));
}

/// Games played with no broker, then published by the original's publisher on
/// `kind`: `superhero worker` on `broker` writes each of them once.
async fn original_publisher_to_our_worker(kind: &str, address: &str, broker: &str) {
    let store = fresh_store().await;
    let server = server(&store, None);
    let games = common::play(&server.url(), 12);
    let (ok, lines) = server.interrupt();
    assert!(ok, "{}", lines.join("\n"));

    let out = std::env::temp_dir().join(format!("superhero-original-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap();
    let worker = Service::start_within(
        &[
            "worker",
            "--store",
            &store,
            "--broker",
            broker,
            "--output-dir",
            out_arg,
            "--log-level",
            "WARNING",
        ],
        "superhero worker:",
        PATIENCE,
    );
    let published = python()
        .arg(script("publisher.py"))
        .args([kind, address, &store])
        .output_within();
    assert!(published.status.success(), "{published:?}");
    let said = common::summary(&published);
    assert_eq!(common::n(&said, "games"), games, "{kind}: {said}");

    let written = common::games_written_within(&out, games).await;
    let (ok, lines) = worker.interrupt();
    assert_eq!(
        written,
        games,
        "{kind}: games written from the original's events; the worker printed:\n{}",
        lines.join("\n")
    );
    assert!(ok, "{}", lines.join("\n"));
    let report = superhero::audit::audit(&out).unwrap().report;
    assert_eq!(report.games, games, "{kind}");
    assert_eq!(report.duplicate_games, 0, "{kind}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_clients_share_our_pipeline() {
    rabbit_worker_before_the_server().await;
    rabbit_worker_after_the_games().await;
    kafka_worker_before_the_first_game().await;

    delete_rabbit_queue().await;
    let amqp = common::amqp_url();
    original_publisher_to_our_worker("rabbit", &amqp, &amqp).await;
    let kafka = common::kafka_url();
    let servers = kafka.replacen("kafka://", "", 1);
    original_publisher_to_our_worker("kafka", &servers, &kafka).await;
}
