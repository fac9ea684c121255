//! The video plays scenario end to end, on the embedded broker, on a real Redis
//! (Streams and pub/sub), RabbitMQ and NATS, and on NSQ as in the original (the
//! protocol-level nsqd of the tests, or a real one at NSQD_ADDRESS): the producer makes the requested
//! messages for the requested videos, the processor's counts equal an independent
//! count of the queue, a dashboard-side table built only from the feed ends equal to
//! the processor's counts, every message is consumed, and the publication rules hold
//! as a dashboard sees them. Both modes, several thread counts. The rules themselves
//! are property-tested in `src/plays/rules.rs`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::RunWithin;
use serde_json::Value;
use superhero::broker::{
    Broker, MemoryBroker, NatsBroker, NatsOptions, NsqBroker, NsqOptions, RabbitBroker,
    RabbitOptions, RedisPubSubBroker, RedisStreamsBroker, StreamsOptions,
};
use superhero::plays::feed::{ClientCounts, PlaysFeed, PlaysUpdate};
use superhero::plays::rules::{MAX_PER_PUBLICATION, Publication};
use superhero::plays::{self, PlaysSettings, PlaysSummary};

fn settings(messages: u64, videos: usize, threads: usize, real_life: bool) -> PlaysSettings {
    PlaysSettings {
        threads,
        messages,
        videos,
        // No tick during a test run: 100 plays and over only in the final flush.
        update_interval: Duration::from_secs(3600),
        pc_ratio: 1,
        real_life,
        seed: 7,
        idle: Duration::from_secs(15),
        topic: Some(format!("plays.test.{}", uuid::Uuid::new_v4().simple())),
    }
}

/// What a dashboard saw: its table, and every publication in order.
struct Seen {
    client: ClientCounts,
    publications: Vec<Arc<Publication>>,
}

/// Runs the scenario with a dashboard-side subscriber and an auditor that counts the
/// queue itself, in its own consumer group, with its own JSON parsing.
async fn run_watched(
    broker: Arc<dyn Broker>,
    s: &PlaysSettings,
) -> (PlaysSummary, Seen, HashMap<String, u64>) {
    let topic = s.topic.clone().unwrap();
    let mut auditor = broker.consumer(&topic, "auditor").await.unwrap();
    let feed = PlaysFeed::new();
    let (snapshot, mut rx) = feed.subscribe();
    let watcher = tokio::spawn(async move {
        let mut seen = Seen {
            client: ClientCounts::from_snapshot(&snapshot),
            publications: Vec::new(),
        };
        loop {
            match rx.recv().await {
                Ok(PlaysUpdate::Published(p)) => {
                    seen.client.apply(&p);
                    seen.publications.push(p);
                }
                Ok(PlaysUpdate::Finished) => return seen,
                Ok(PlaysUpdate::Consumption(..)) => {}
                Err(e) => panic!("the dashboard fell behind: {e}"),
            }
        }
    });
    let summary = plays::run(broker, s, feed).await.unwrap();
    let seen = tokio::time::timeout(common::WAIT, watcher)
        .await
        .expect("the feed finishes")
        .unwrap();

    let mut audit: HashMap<String, u64> = HashMap::new();
    let mut seqs = HashSet::new();
    while (seqs.len() as u64) < summary.messages_produced {
        let d = tokio::time::timeout(common::WAIT, auditor.next())
            .await
            .expect("the auditor gets every message")
            .unwrap();
        let m: Value = serde_json::from_slice(&d.payload).unwrap();
        assert!(m["enqueued_at"].as_f64().unwrap() > 1.6e9, "{m}");
        if seqs.insert(m["seq"].as_u64().unwrap()) {
            *audit
                .entry(m["video_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        d.ack().await.unwrap();
    }
    (summary, seen, audit)
}

/// Every promise of the scenario, checked on one run.
fn check(summary: &PlaysSummary, seen: &Seen, audit: &HashMap<String, u64>, s: &PlaysSettings) {
    // The producer made the requested messages for the requested videos.
    assert_eq!(summary.messages_produced, s.messages, "{summary:?}");
    assert_eq!(audit.values().sum::<u64>(), s.messages);
    let ids: HashSet<String> = plays::video_ids(s.videos, s.seed).into_iter().collect();
    assert!(
        audit.keys().all(|v| ids.contains(v)),
        "a video nobody asked for"
    );
    assert_eq!(audit.len(), s.videos, "every video played");
    for id in &ids {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is a UUID");
    }
    // Every message consumed, once; the processor's counts are the queue's.
    assert_eq!(summary.messages_consumed, s.messages, "{summary:?}");
    assert_eq!(summary.messages_lost, 0);
    assert_eq!(summary.rejected, 0);
    assert_eq!(&summary.counts, audit);
    // The dashboard's table, built from publications only, is the processor's.
    assert_eq!(&seen.client.counts, audit);
    assert!(summary.counts_published);

    // The publication rules, as the dashboard saw them.
    assert_eq!(summary.publications, seen.publications.len() as u64);
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut at_100_and_over: HashMap<&str, u32> = HashMap::new();
    for p in &seen.publications {
        assert!(!p.videos.is_empty() && p.videos.len() <= MAX_PER_PUBLICATION);
        for v in &p.videos {
            let before = last.insert(&v.video_id, v.plays).unwrap_or(0);
            assert!(
                v.plays > before,
                "{} published unchanged or backwards",
                v.video_id
            );
            if v.plays >= 100 {
                *at_100_and_over.entry(&v.video_id).or_default() += 1;
            }
        }
    }
    // No tick fell in the run: a video at 100 and over went out once, at the end.
    assert!(
        at_100_and_over.values().all(|&n| n == 1),
        "{at_100_and_over:?}"
    );
    assert!(summary.max_videos_per_publication <= MAX_PER_PUBLICATION);
    // Consumption times were measured.
    assert!(summary.avg_consumption_ms >= 0.0 && summary.latest_consumption_ms >= 0.0);
    assert!(summary.messages_per_s > 0.0, "{summary:?}");
}

async fn scenario(broker: Arc<dyn Broker>, messages: u64, threads: usize, real_life: bool) {
    let s = settings(messages, 100, threads, real_life);
    let (summary, seen, audit) = run_watched(broker, &s).await;
    check(&summary, &seen, &audit, &s);
    // 10,000 plays of 100 videos: some cross 100, and the final flush shows them.
    assert!(audit.values().any(|&n| n >= 100), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_backed_up_with_one_two_and_four_threads() {
    for threads in [1, 2, 4] {
        scenario(Arc::new(MemoryBroker::new()), 10_000, threads, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_real_life_with_two_producers_per_thread() {
    let mut s = settings(10_000, 100, 2, true);
    s.pc_ratio = 2;
    let (summary, seen, audit) = run_watched(Arc::new(MemoryBroker::new()), &s).await;
    check(&summary, &seen, &audit, &s);
    assert_eq!((summary.producers, summary.mode), (4, "real-life"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interval_ticks_publish_videos_at_100_and_over_during_the_run() {
    // A paced real-life run with a short interval: counts at 100 and over go out at
    // ticks while the run goes on, not only at its end.
    let mut s = settings(20_000, 20, 2, true);
    s.update_interval = Duration::from_millis(20);
    let (summary, seen, _) = run_watched(Arc::new(MemoryBroker::new()), &s).await;
    assert_eq!(summary.messages_consumed, 20_000);
    assert_eq!(seen.client.counts, summary.counts);
    let mut over: HashMap<&str, u32> = HashMap::new();
    for p in &seen.publications {
        for v in p.videos.iter().filter(|v| v.plays >= 100) {
            *over.entry(&v.video_id).or_default() += 1;
        }
    }
    assert!(
        over.values().any(|&n| n > 1),
        "no tick published during the run: {over:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_streams_both_modes() {
    let url = common::redis_url(0);
    for real_life in [false, true] {
        let broker = RedisStreamsBroker::connect(&url, StreamsOptions::default())
            .await
            .unwrap();
        scenario(Arc::new(broker), 10_000, 2, real_life).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_both_modes() {
    for real_life in [false, true] {
        let broker = RabbitBroker::connect(
            &common::amqp_url(),
            RabbitOptions {
                expiry: Some(Duration::from_secs(60)),
                ..RabbitOptions::default()
            },
        )
        .await
        .unwrap();
        scenario(Arc::new(broker), 10_000, 2, real_life).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_jetstream_real_life() {
    let broker = NatsBroker::connect(&common::nats_url(), NatsOptions::default())
        .await
        .unwrap();
    scenario(Arc::new(broker), 10_000, 2, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nsq_as_in_the_original_both_modes() {
    // The protocol-level nsqd of tests/common/nsqd.rs, or NSQD_ADDRESS's real one.
    let url = format!("nsq://{}", common::nsqd::address());
    for real_life in [false, true] {
        let broker = NsqBroker::connect(&url, NsqOptions::default())
            .await
            .unwrap();
        scenario(Arc::new(broker), 10_000, 2, real_life).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_pubsub_threads_share_one_subscription() {
    // Pub/sub broadcasts: three threads that each subscribed would count every play
    // three times.
    let broker = RedisPubSubBroker::connect(&common::redis_url(0))
        .await
        .unwrap();
    scenario(Arc::new(broker), 10_000, 3, true).await;
}

#[test]
fn the_command_takes_the_original_options() {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args([
            "--json", "plays", "-nt", "3", "-nm", "5000", "-nv", "40", "-ui", "1",
        ])
        .args(["-pcr", "2", "-r"])
        .env_remove("LOG_LEVEL")
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let s = common::summary(&run);
    for (field, want) in [
        ("messages_produced", 5000),
        ("messages_consumed", 5000),
        ("videos", 40),
        ("threads", 3),
        ("producers", 6),
    ] {
        assert_eq!(common::n(&s, field), want, "{field} in {s}");
    }
    assert_eq!(s["mode"], "real-life");
    assert_eq!(s["broker"], "memory");
    assert!(common::n(&s, "publications") > 0);
    assert!(common::n(&s, "max_videos_per_publication") <= 20);
    for field in ["avg_consumption_ms", "elapsed_s", "messages_per_s"] {
        assert!(s[field].as_f64().is_some(), "{field} in {s}");
    }

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["plays", "-nt", "0"])
        .output_within();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--threads"));
}
