//! Workers lose nothing: a worker killed while it holds a batch leaves its games to
//! another worker, a write that fails gives the games back to the broker, and the
//! audit then shows every game once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use superhero::audit;
use superhero::broker::{Broker, MemoryBroker};
use superhero::etl::{self, tables};
use superhero::events;
use superhero::fixtures;
use superhero::game::GameToken;
use superhero::store::{GameStore, MemoryStore};
use superhero::worker::{self, BatchPolicy, EtlProgress, WorkerSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("superhero-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` finished games and their Cleaning events (host and guest) on the broker,
/// `copies` times over.
async fn finished_games(
    store: &MemoryStore,
    broker: &MemoryBroker,
    n: usize,
    copies: usize,
) -> Vec<GameToken> {
    store
        .replace_roster(&common::uniform_roster(20, 30, 5))
        .await
        .unwrap();
    let publisher = broker.publisher().await.unwrap();
    let mut games = Vec::new();
    for i in 0..n {
        let finished = fixtures::play_two_player_game(store, i).await.unwrap();
        for _ in 0..copies {
            publisher
                .publish(events::WORKER_QUEUE, &finished.events)
                .await
                .unwrap();
        }
        games.push(finished.game);
    }
    games
}

struct Running {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    finishing: watch::Sender<bool>,
    progress: Arc<EtlProgress>,
}

async fn start_worker(
    store: &MemoryStore,
    broker: &MemoryBroker,
    id: &str,
    output_dir: &Path,
    batch: Option<BatchPolicy>,
) -> Running {
    let consumer = broker
        .consumer(events::WORKER_QUEUE, events::WORKER_GROUP)
        .await
        .unwrap();
    let progress = Arc::new(EtlProgress::default());
    let (stop, stop_rx) = watch::channel(false);
    let (finishing, finishing_rx) = watch::channel(false);
    let signals = worker::Signals {
        stop: stop_rx,
        finishing: finishing_rx,
    };
    let settings = WorkerSettings {
        output_dir: output_dir.to_path_buf(),
        clean: true,
        keep: Duration::from_secs(30),
        batch,
        shared: true,
    };
    let task = tokio::spawn({
        let (store, progress, id) = (store.clone(), progress.clone(), id.to_string());
        async move { worker::run(store, consumer, id, settings, progress, signals).await }
    });
    Running {
        task,
        stop,
        finishing,
        progress,
    }
}

/// Polls `done` until it holds, failing after [`WAIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A worker whose batches wait for 1,000 games or an hour, holding `n` finished games
/// it took (none left ready on the queue) and wrote none of.
async fn holding_worker(
    store: &MemoryStore,
    broker: &MemoryBroker,
    id: &str,
    out: &Path,
    n: usize,
) -> (Running, Vec<GameToken>) {
    let batch = BatchPolicy {
        games: 1000,
        max_age: Duration::from_secs(3600),
    };
    let running = start_worker(store, broker, id, out, Some(batch)).await;
    let games = finished_games(store, broker, n, 1).await;
    until("the worker to take every event", || {
        let depth = broker.depth(events::WORKER_QUEUE, events::WORKER_GROUP);
        depth.ready == 0 && depth.unacked == games.len()
    })
    .await;
    assert_eq!(running.progress.counts().games_written, 0);
    (running, games)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_no_game() {
    let store = MemoryStore::new();
    let broker = MemoryBroker::new();
    let out = scratch_dir("killed");
    // The first worker never gets to write.
    let (doomed, games) = holding_worker(&store, &broker, "doomed", &out, 40).await;

    doomed.task.abort();
    assert!(doomed.task.await.unwrap_err().is_cancelled());
    // Its host events are back in the queue (the guests' were acknowledged).
    assert_eq!(
        broker
            .depth(events::WORKER_QUEUE, events::WORKER_GROUP)
            .ready,
        games.len()
    );

    let heir = start_worker(&store, &broker, "heir", &out, None).await;
    until("the second worker to write every game", || {
        heir.progress.counts().games_written == games.len() as u64
    })
    .await;
    heir.stop.send(true).unwrap();
    heir.task.await.unwrap();

    let audit = audit::audit(&out).unwrap();
    let r = &audit.report;
    assert_eq!(r.games, games.len() as u64);
    assert_eq!((r.duplicate_games, r.incomplete_games), (0, 0));
    assert!(r.schema_ok, "{:?}", r.bad_files);
    assert_eq!(r.files, 2 * games.len() as u64);
    for g in &games {
        assert!(audit.files_per_game.contains_key(g.as_str()));
        // Cleaned after its tables were written.
        assert!(store.extract(g).await.unwrap().is_none());
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_writes_its_batch_without_waiting_for_its_age() {
    let store = MemoryStore::new();
    let broker = MemoryBroker::new();
    let out = scratch_dir("finishing");
    let (running, games) = holding_worker(&store, &broker, "finishing", &out, 12).await;

    running.finishing.send(true).unwrap();
    until("the held batch to be written", || {
        running.progress.counts().games_written == games.len() as u64
    })
    .await;
    assert_eq!(running.progress.counts().files_written, 2);
    // Games that end after the word still go out, in a batch of their own.
    let late = finished_games(&store, &broker, 3, 1).await;
    until("the late games to be written", || {
        running.progress.counts().games_written == (games.len() + late.len()) as u64
    })
    .await;
    // One batch, unless the machine paused between the late games for longer than
    // the worker waits for more.
    assert!(running.progress.counts().files_written >= 4);
    running.stop.send(true).unwrap();
    running.task.await.unwrap();

    let audit = audit::audit(&out).unwrap();
    assert_eq!(audit.report.games, (games.len() + late.len()) as u64);
    assert_eq!(audit.report.duplicate_games, 0);
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_gives_the_games_back_and_cleans_nothing() {
    let store = MemoryStore::new();
    let broker = MemoryBroker::new();
    let out = scratch_dir("unwritable");
    // A regular file where the table folders should go: every write fails.
    let blocked = out.join("blocked");
    std::fs::write(&blocked, b"not a folder").unwrap();
    let failing = start_worker(&store, &broker, "failing", &blocked, None).await;
    let games = finished_games(&store, &broker, 5, 1).await;
    until("a failed write", || failing.progress.counts().retries > 0).await;
    failing.stop.send(true).unwrap();
    failing.task.await.unwrap();
    assert_eq!(failing.progress.counts().games_written, 0);
    for g in &games {
        assert!(
            store.extract(g).await.unwrap().is_some(),
            "nothing is cleaned before its tables are written"
        );
    }
    let depth = broker.depth(events::WORKER_QUEUE, events::WORKER_GROUP);
    // Every host event is still there (guest events may be, too, if not reached).
    assert!(depth.ready + depth.unacked >= games.len(), "{depth:?}");

    let good = start_worker(&store, &broker, "good", &out, None).await;
    until("every game written", || {
        good.progress.counts().games_written == games.len() as u64
    })
    .await;
    good.stop.send(true).unwrap();
    good.task.await.unwrap();
    let r = audit::audit(&out).unwrap().report;
    assert_eq!(r.games, games.len() as u64);
    assert_eq!(r.duplicate_games, 0);
    std::fs::remove_dir_all(&out).unwrap();
}

/// A game's host event that comes twice (a replayed lobby, or a redelivery) while the
/// game waits in a batch: the game is written once, and both messages are settled
/// with its write, none left holding the broker (an unsettled one would stop a Kafka
/// group's offset or a RabbitMQ prefetch slot for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_event_that_comes_twice_is_settled_twice() {
    let store = MemoryStore::new();
    let broker = MemoryBroker::new();
    let out = scratch_dir("twice");
    let worker = start_worker(
        &store,
        &broker,
        "twice",
        &out,
        Some(BatchPolicy {
            games: 1000,
            max_age: Duration::from_millis(300),
        }),
    )
    .await;
    // Every event of each game, twice over.
    let games = finished_games(&store, &broker, 5, 2).await;
    until("every game written and every message settled", || {
        let depth = broker.depth(events::WORKER_QUEUE, events::WORKER_GROUP);
        worker.progress.counts().games_written == games.len() as u64
            && depth.ready == 0
            && depth.unacked == 0
    })
    .await;
    let counts = worker.progress.counts();
    assert_eq!(counts.settled(), counts.events, "{counts:?}");
    worker.stop.send(true).unwrap();
    worker.task.await.unwrap();
    let r = audit::audit(&out).unwrap().report;
    assert_eq!(r.games, games.len() as u64);
    assert_eq!(r.duplicate_games, 0);
    std::fs::remove_dir_all(&out).unwrap();
}

/// A worker that died after renaming its files but before acknowledging left games
/// the broker hands over again; one that died between its two renames left a
/// GAME_META file without its GAME_PODIUM. Written alone or in batches, by an heir
/// that batches or not (workers of both kinds may share a group), every game ends up
/// in the tables once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_died_before_its_acknowledgement_is_not_repeated() {
    let batching = Some(BatchPolicy {
        games: 1000,
        max_age: Duration::from_millis(200),
    });
    for (dead, heir) in [
        (None, None),
        (batching, batching),
        (None, batching),
        (batching, None),
    ] {
        let modes = format!("dead {dead:?}, heir {heir:?}");
        let store = MemoryStore::new();
        let broker = MemoryBroker::new();
        let out = scratch_dir("died-after-rename");
        // The group keeps the events until a worker comes, as the dead one's did.
        broker
            .declare(events::WORKER_QUEUE, &[events::WORKER_GROUP])
            .await
            .unwrap();
        let games = finished_games(&store, &broker, 4, 1).await;
        let tables = |g: &GameToken| {
            let store = store.clone();
            let g = g.clone();
            async move { etl::transform(&store.extract(&g).await.unwrap().unwrap()).unwrap() }
        };
        let (t0, t1, t2) = (
            tables(&games[0]).await,
            tables(&games[1]).await,
            tables(&games[2]).await,
        );
        // What the dead workers left.
        let (done, done_games, half) = match dead {
            None => (games[0].to_string(), vec![t0], games[2].to_string()),
            Some(_) => (
                "batch-dead_x-0".to_string(),
                vec![t0, t1],
                "batch-half_x-0".into(),
            ),
        };
        if dead.is_some() {
            store.mark_batch(&games[..2], &done).await.unwrap();
            store.mark_batch(&games[2..3], &half).await.unwrap();
        }
        let files = tables::encode_games(&done_games).unwrap();
        tables::write_durable(&out, &done, &files).unwrap();
        let files = tables::encode_games(&[t2]).unwrap();
        tables::write_durable(&out, &half, &files[..1]).unwrap();

        let heir = start_worker(&store, &broker, "heir", &out, heir).await;
        until("every message settled", || {
            let depth = broker.depth(events::WORKER_QUEUE, events::WORKER_GROUP);
            let counts = heir.progress.counts();
            depth.ready == 0 && depth.unacked == 0 && counts.settled() == counts.events
        })
        .await;
        heir.stop.send(true).unwrap();
        heir.task.await.unwrap();
        let counts = heir.progress.counts();
        let already = done_games.len() as u64;
        // Guests' events of games cleaned meanwhile are skipped too.
        assert!(counts.games_skipped >= already, "{modes}: {counts:?}");
        assert_eq!(counts.games_written, 4 - already, "{modes}: {counts:?}");

        let r = audit::audit(&out).unwrap().report;
        assert_eq!(r.games, 4, "{modes}");
        assert_eq!(
            (r.duplicate_games, r.incomplete_games),
            (0, 0),
            "{modes}: {r:?}"
        );
        assert!(r.schema_ok, "{:?}", r.bad_files);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
