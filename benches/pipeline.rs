//! Speed of the event pipeline, measured on this machine's disk:
//!
//! - the disk's own rate for the durable write of one small file (write, fsync,
//!   rename, folder fsync): the ceiling of per-game ETL;
//! - ETL games/s of one worker in per-game mode and in batch mode, through the real
//!   worker (embedded store and broker, extract, transform, gzip Parquet, durable
//!   write, clean, ack);
//! - events/s through the logging transport onto the embedded broker;
//! - games/s the dashboard's observer follows on the embedded broker (every event of a
//!   two-player game of 20 attacks, published as fast as possible).
//!
//! Run: `cargo bench --bench pipeline` (SUPERHERO_BENCH_DIR picks the folder written
//! to, default ./bench-data; it must be on the disk to measure, not a tmpfs).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superhero::broker::{Broker, MemoryBroker};
use superhero::dashboard::pipeline::PipelineFeed;
use superhero::etl::tables;
use superhero::events::{
    self, CLEANING_GAME_RECORDS, EventLayer, EventPipe, EventSink, GameUserTask, Queue,
};
use superhero::fixtures;
use superhero::roster::RosterHero;
use superhero::store::{GameStore, MemoryStore};
use superhero::worker::{self, BatchPolicy, EtlProgress, WorkerSettings};
use tokio::sync::watch;
use tracing_subscriber::layer::SubscriberExt;

// The allocator of the `superhero` binary, so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How much each measure does.
struct Sizes {
    disk_files: usize,
    per_game_games: usize,
    batch_games: usize,
    batch_size: usize,
    events: usize,
    dashboard_games: usize,
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs this file without
/// it, and then a quick pass only checks that every measure works.
fn sizes() -> Sizes {
    if std::env::args().any(|a| a == "--bench") {
        Sizes {
            disk_files: 2_000,
            per_game_games: 2_000,
            batch_games: 100_000,
            batch_size: 10_000,
            events: 1_000_000,
            dashboard_games: 100_000,
        }
    } else {
        Sizes {
            disk_files: 20,
            per_game_games: 20,
            batch_games: 200,
            batch_size: 50,
            events: 1_000,
            dashboard_games: 100,
        }
    }
}

/// Heroes that finish a game in two attacks, so games are cheap to make.
fn roster() -> Vec<RosterHero> {
    fixtures::uniform_roster(50, 30, 5)
}

struct Row {
    what: &'static str,
    value: f64,
    unit: &'static str,
    note: String,
}

/// Runs one worker over `games` finished games; returns games/s and files written.
async fn etl_rate(dir: &Path, games: usize, batch: Option<BatchPolicy>) -> (f64, u64) {
    let store = MemoryStore::new();
    store.replace_roster(&roster()).await.unwrap();
    let broker = MemoryBroker::new();
    let consumer = broker
        .consumer(events::WORKER_QUEUE, events::WORKER_GROUP)
        .await
        .unwrap();
    let publisher = broker.publisher().await.unwrap();
    for i in 0..games {
        let g = fixtures::play_two_player_game(&store, i).await.unwrap();
        publisher
            .publish(events::WORKER_QUEUE, &g.events)
            .await
            .unwrap();
    }
    let progress = Arc::new(EtlProgress::default());
    let (stop, stop_rx) = watch::channel(false);
    let settings = WorkerSettings {
        output_dir: dir.to_path_buf(),
        clean: true,
        keep: Duration::from_secs(30),
        batch,
        shared: true,
    };
    let started = Instant::now();
    let task = tokio::spawn(worker::run(
        store,
        consumer,
        "bench-0".into(),
        settings,
        progress.clone(),
        worker::Signals::stop_only(stop_rx),
    ));
    while progress.counts().games_written < games as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = games as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = task.await;
    (rate, progress.counts().files_written)
}

/// Logs `n` queue records through the transport onto the embedded broker.
async fn events_rate(n: usize) -> f64 {
    let sink = EventSink::new();
    let subscriber = tracing_subscriber::registry().with(EventLayer::new(sink.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let broker = MemoryBroker::new();
    // A consumer group keeps what is published, as a worker's would.
    let _consumer = broker.consumer("lib.server.lobby", "bench").await.unwrap();
    let pipe = EventPipe::start(
        &sink,
        broker.publisher().await.unwrap(),
        "memory",
        events::transport::DEFAULT_BUFFER,
    )
    .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let game = format!("game-{i}");
        events::emit_task(
            Queue::Lobby,
            CLEANING_GAME_RECORDS,
            &GameUserTask {
                game_token: &game,
                user_token: "6a1f2e0c-5d4b-4c3a-9e8f-7a6b5c4d3e2f",
            },
        );
        if i % 4096 == 0 {
            // Let the publishing task run on this single-threaded runtime.
            tokio::task::yield_now().await;
        }
    }
    let stats = pipe.finish(Duration::from_secs(60)).await;
    assert_eq!(stats.dropped, 0, "the bench overran the buffer");
    stats.published as f64 / started.elapsed().as_secs_f64()
}

/// The events of one two-player game of 20 attacks, by queue.
fn game_events(game: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let event = |queue: &str, message: &str, task: &str| {
        events::transport::envelope_json(
            tracing::Level::INFO,
            "2026-11-28T00:00:00.000Z",
            &format!("memory.{queue}"),
            message,
            Some(task),
        )
        .into_bytes()
    };
    let lobby_task = format!(r#"{{"game_token":"{game}","user_token":"u"}}"#);
    let lobby = [
        "Game Created",
        "Player Joined",
        "Player Joined",
        "Game Started",
        CLEANING_GAME_RECORDS,
        CLEANING_GAME_RECORDS,
    ]
    .iter()
    .map(|m| event(Queue::Lobby.name(), m, &lobby_task))
    .collect();
    let attack = format!(
        r#"{{"game_token":"{game}","user_token":"u","enemy_token":"v","damage":1234,"timestamp":"2026-11-28T00:00:00Z"}}"#
    );
    let attacks = (0..20)
        .map(|_| event(Queue::Game.name(), "Attack Completed", &attack))
        .collect();
    (lobby, attacks)
}

/// Publishes `games` games' events onto the embedded broker as fast as it can while
/// a dashboard observes it; the rate is until the dashboard has seen every game end.
async fn dashboard_rate(games: usize) -> (f64, f64) {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let feed = PipelineFeed::start(broker.clone()).await.unwrap();
    let publisher = broker.publisher().await.unwrap();
    let started = Instant::now();
    let lobby_topic = broker.topic_for(Queue::Lobby.name());
    let game_topic = broker.topic_for(Queue::Game.name());
    let publishing = tokio::spawn(async move {
        for chunk in (0..games).collect::<Vec<_>>().chunks(100) {
            let (mut lobby, mut attacks) = (Vec::new(), Vec::new());
            for g in chunk {
                let (l, a) = game_events(&format!("game-{g}"));
                lobby.extend(l);
                attacks.extend(a);
            }
            publisher.publish(&lobby_topic, &lobby).await.unwrap();
            publisher.publish(&game_topic, &attacks).await.unwrap();
        }
    });
    loop {
        let (events, counts) = feed.observed_now();
        if counts.completed == games as u64 && events[Queue::Game.index()] == 20 * games as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    publishing.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    (games as f64 / secs, 26.0 * games as f64 / secs)
}

fn main() {
    let Sizes {
        disk_files,
        per_game_games,
        batch_games,
        batch_size,
        events,
        dashboard_games,
    } = sizes();
    let dir = common::bench_dir();
    std::fs::create_dir_all(&dir).expect("creating the bench folder");
    let mut rows = Vec::new();

    // One game's GAME_PODIUM file, as the per-game mode writes it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sample = runtime.block_on(async {
        let store = MemoryStore::new();
        store.replace_roster(&roster()).await.unwrap();
        let g = fixtures::play_two_player_game(&store, 0).await.unwrap();
        let extract = store.extract(&g.game).await.unwrap().unwrap();
        let t = superhero::etl::transform(&extract).unwrap();
        tables::encode_games(&[t]).unwrap()[1].1.clone()
    });

    let disk = common::disk_rate(&dir.join("disk"), &sample, disk_files);
    rows.push(Row {
        what: "disk: write + fsync + rename + folder fsync",
        value: disk,
        unit: "files/s",
        note: format!("{disk_files} files of {} bytes", sample.len()),
    });

    let (per_game, files) = runtime.block_on(etl_rate(&dir.join("per-game"), per_game_games, None));
    let per_game_files = per_game * files as f64 / per_game_games as f64;
    rows.push(Row {
        what: "ETL per-game mode, 1 worker",
        value: per_game,
        unit: "games/s",
        note: format!(
            "{per_game_files:.0} files/s = {:.0}% of the disk's rate (2 files per game)",
            100.0 * per_game_files / disk
        ),
    });

    let (batch, files) = runtime.block_on(etl_rate(
        &dir.join("batch"),
        batch_games,
        Some(BatchPolicy {
            games: batch_size,
            max_age: Duration::from_secs(3600),
        }),
    ));
    rows.push(Row {
        what: "ETL batch mode, 1 worker",
        value: batch,
        unit: "games/s",
        note: format!("{batch_games} games, {batch_size} per batch, {files} files"),
    });

    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let event_rate = single.block_on(events_rate(events));
    rows.push(Row {
        what: "events through the transport to the embedded broker",
        value: event_rate,
        unit: "events/s",
        note: format!("{events} Cleaning Game Records envelopes"),
    });

    let (dash_games, dash_events) = runtime.block_on(dashboard_rate(dashboard_games));
    rows.push(Row {
        what: "dashboard observer on the embedded broker",
        value: dash_games,
        unit: "games/s",
        note: format!(
            "{dashboard_games} games of 26 events, {dash_events:.0} events/s, published as fast as possible"
        ),
    });

    println!("\n| measure | rate | unit | notes |\n|---|---:|---|---|");
    for r in rows {
        println!("| {} | {:.0} | {} | {} |", r.what, r.value, r.unit, r.note);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
