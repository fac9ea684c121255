//! The logging transport: records logged by game code arrive on the broker as the
//! original's envelopes; a broker that fails is retried, and what cannot be
//! published is counted as dropped, never lost silently.
//!
//! The failing broker here is a wrapper around the embedded one that refuses calls on
//! purpose (fault injection); outages of real brokers are tested with those brokers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use superhero::broker::{Broker, BrokerError, Consumer, MemoryBroker, Publisher};
use superhero::events::{
    self, CLEANING_GAME_RECORDS, Envelope, EventLayer, EventPipe, EventSink, GameUserTask, Queue,
};
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(10);

fn subscriber(sink: &Arc<EventSink>) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::registry().with(EventLayer::new(sink.clone()))
}

fn log_cleaning(i: usize) {
    let game = format!("game-{i}");
    events::emit_task(
        Queue::Lobby,
        CLEANING_GAME_RECORDS,
        &GameUserTask {
            game_token: &game,
            user_token: "user-1",
        },
    );
}

/// The next envelope a consumer receives, acknowledged.
async fn next_envelope(consumer: &mut dyn Consumer) -> Envelope {
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    let e = Envelope::parse(&d.payload).unwrap();
    d.ack().await.unwrap();
    e
}

#[tokio::test]
async fn queue_records_arrive_as_envelopes() {
    let sink = EventSink::new();
    let _guard = tracing::subscriber::set_default(subscriber(&sink));
    let broker = MemoryBroker::new();
    let mut lobby = broker.consumer("lib.server.lobby", "g").await.unwrap();
    let mut game = broker.consumer("lib.server.game", "g").await.unwrap();
    let pipe = EventPipe::start(&sink, broker.publisher().await.unwrap(), "memory", 1024).unwrap();

    for i in 0..50 {
        log_cleaning(i);
    }
    events::emit(Queue::Game, "Attack Completed", r#"{"TIMESTAMP":"t"}"#);
    // A record on a queue's target logged elsewhere than by `emit`: its task is
    // checked, and one that is not JSON travels as a string.
    tracing::info!(target: "lib.server.game", task = "not {json", "Logged by hand");
    // Records of other targets are not events.
    tracing::info!(target: "superhero::server", "not an event");

    for i in 0..50 {
        let e = next_envelope(&mut *lobby).await;
        assert_eq!(e.level, "INFO");
        assert_eq!(e.name, "memory.lib.server.lobby");
        assert_eq!(e.log_message, CLEANING_GAME_RECORDS);
        assert_eq!(e.task_str("game_token"), Some(format!("game-{i}")));
        assert_eq!(e.task_str("user_token").as_deref(), Some("user-1"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(&e.timestamp).is_ok(),
            "{}",
            e.timestamp
        );
    }
    let e = next_envelope(&mut *game).await;
    assert_eq!(e.name, "memory.lib.server.game");
    assert_eq!(e.task_value().unwrap()["TIMESTAMP"], "t");
    let e = next_envelope(&mut *game).await;
    assert_eq!(e.log_message, "Logged by hand");
    assert_eq!(e.task_value().unwrap(), "not {json");

    let stats = pipe.finish(WAIT).await;
    assert_eq!(stats.offered, 52);
    assert_eq!(stats.published, 52);
    assert_eq!(stats.dropped, 0);
    // After finishing, records go nowhere and count nothing.
    log_cleaning(99);
    assert_eq!(sink.stats().offered, 52);
}

/// Refuses the first `failures` calls, then forwards to the embedded broker.
struct Flaky {
    inner: MemoryBroker,
    failures: AtomicU32,
}

#[async_trait]
impl Publisher for Flaky {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(BrokerError::Unavailable("injected failure".into()));
        }
        self.inner.publish(topic, payloads).await
    }
}

#[tokio::test]
async fn a_failing_broker_is_retried_until_it_takes_the_events() {
    let sink = EventSink::new();
    let _guard = tracing::subscriber::set_default(subscriber(&sink));
    let broker = MemoryBroker::new();
    let mut lobby = broker.consumer("lib.server.lobby", "g").await.unwrap();
    let flaky = Flaky {
        inner: broker.clone(),
        failures: AtomicU32::new(3),
    };
    let pipe = EventPipe::start(&sink, Box::new(flaky), "memory", 1024).unwrap();
    for i in 0..10 {
        log_cleaning(i);
    }
    let stats = pipe.finish(WAIT).await;
    assert_eq!((stats.offered, stats.published, stats.dropped), (10, 10, 0));
    for _ in 0..10 {
        let d = tokio::time::timeout(WAIT, lobby.next())
            .await
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn a_broker_that_stays_down_has_its_events_counted_as_dropped() {
    let sink = EventSink::new();
    let _guard = tracing::subscriber::set_default(subscriber(&sink));
    let down = Flaky {
        inner: MemoryBroker::new(),
        failures: AtomicU32::new(u32::MAX),
    };
    // A buffer of 4: the rest is dropped at once, the buffered ones at shutdown.
    let pipe = EventPipe::start(&sink, Box::new(down), "memory", 4).unwrap();
    for i in 0..20 {
        log_cleaning(i);
    }
    let stats = pipe.finish(Duration::from_millis(300)).await;
    assert_eq!(stats.offered, 20);
    assert_eq!(stats.published, 0);
    assert_eq!(stats.dropped, 20);
}

#[tokio::test]
async fn one_transport_per_sink() {
    let sink = EventSink::new();
    let broker = MemoryBroker::new();
    let pipe = EventPipe::start(&sink, broker.publisher().await.unwrap(), "memory", 8).unwrap();
    assert!(EventPipe::start(&sink, broker.publisher().await.unwrap(), "memory", 8).is_err());
    pipe.finish(WAIT).await;
    let again = EventPipe::start(&sink, broker.publisher().await.unwrap(), "memory", 8).unwrap();
    again.finish(WAIT).await;
}
