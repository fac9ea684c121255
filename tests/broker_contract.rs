//! The contract every broker passes: delivery to groups, work sharing, ack, nack and
//! redelivery when a consumer goes away, payloads intact. Each broker runs the same
//! suite through `broker_contract!`; what a broker does not promise (see
//! `Semantics`) is checked the other way round.

use std::collections::HashSet;
use std::time::Duration;

mod common;

use superhero::broker::{
    Broker, Consumer, Delivery, FanoutOptions, KafkaBroker, KafkaOptions, MemoryBroker, NatsBroker,
    NatsOptions, NsqBroker, NsqOptions, RabbitBroker, RabbitOptions, RedisFanoutBroker,
    RedisPubSubBroker, RedisStreamsBroker, Semantics, StreamsOptions,
};

/// Longest wait for one message; a healthy broker answers in milliseconds.
const WAIT: Duration = Duration::from_secs(10);

fn topic(test: &str) -> String {
    format!("contract.{test}.{}", uuid::Uuid::new_v4().simple())
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("no message within the wait")
        .expect("the broker failed to deliver")
}

async fn next_batch(consumer: &mut Box<dyn Consumer>, max: usize) -> Vec<Delivery> {
    tokio::time::timeout(WAIT, consumer.next_batch(max))
        .await
        .expect("no batch within the wait")
        .expect("the broker failed to deliver")
}

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

async fn publish(broker: &dyn Broker, topic: &str, messages: &[Vec<u8>]) {
    let publisher = broker.publisher().await.expect("publisher");
    publisher.publish(topic, messages).await.expect("publish");
}

/// Two consumers of one group: on a work-sharing broker every message reaches
/// exactly one of them; on a broadcasting one, each of them.
pub async fn work_is_shared_within_a_group(broker: Box<dyn Broker>) {
    let topic = topic("share");
    let a = broker.consumer(&topic, "g").await.unwrap();
    let b = broker.consumer(&topic, "g").await.unwrap();
    let sent = payloads("m", 200);
    publish(&*broker, &topic, &sent).await;
    let sharing = broker.semantics().work_sharing();
    let expected = if sharing { sent.len() } else { 2 * sent.len() };

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (who, mut c) in [a, b].into_iter().enumerate() {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Ok(d)) = tokio::time::timeout(WAIT, c.next()).await {
                let payload = d.payload.clone();
                d.ack().await.expect("ack");
                if tx.send((who, payload)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut got: [Vec<Vec<u8>>; 2] = Default::default();
    while got[0].len() + got[1].len() < expected {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some((who, p))) => got[who].push(p),
            _ => break,
        }
    }
    for t in &tasks {
        t.abort();
    }
    let all: HashSet<Vec<u8>> = sent.iter().cloned().collect();
    if sharing {
        let union: HashSet<_> = got.iter().flatten().cloned().collect();
        assert_eq!(got[0].len() + got[1].len(), sent.len(), "each message once");
        assert_eq!(union, all);
    } else {
        for mine in &got {
            assert_eq!(
                mine.len(),
                sent.len(),
                "every subscriber gets every message"
            );
            assert_eq!(mine.iter().cloned().collect::<HashSet<_>>(), all);
        }
    }
}

/// Each group gets every message.
pub async fn every_group_gets_every_message(broker: Box<dyn Broker>) {
    let topic = topic("groups");
    let mut a = broker.consumer(&topic, "g1").await.unwrap();
    let mut b = broker.consumer(&topic, "g2").await.unwrap();
    let sent = payloads("x", 20);
    publish(&*broker, &topic, &sent).await;
    for c in [&mut a, &mut b] {
        let mut got = HashSet::new();
        for _ in 0..sent.len() {
            let d = next(c).await;
            got.insert(d.payload.clone());
            d.ack().await.unwrap();
        }
        assert_eq!(got, sent.iter().cloned().collect::<HashSet<_>>());
    }
}

/// No message within `wait`: what a broker that keeps nothing promises.
async fn nothing_within(consumer: &mut Box<dyn Consumer>, wait: Duration) {
    if let Ok(got) = tokio::time::timeout(wait, consumer.next()).await {
        let payload = got.map(|d| String::from_utf8_lossy(&d.payload).into_owned());
        panic!("nothing was to come, got {payload:?}");
    }
}

/// A nacked message comes back, marked redelivered; on a broker that does not
/// redeliver, the nack says the message is lost and it does not come back.
pub async fn nack_redelivers(broker: Box<dyn Broker>) {
    let topic = topic("nack");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&*broker, &topic, &[b"once more".to_vec()]).await;
    let first = next(&mut c).await;
    assert!(!first.redelivered);
    if !broker.semantics().redelivery() {
        let nacked = first.nack().await;
        assert!(
            matches!(nacked, Err(superhero::broker::BrokerError::Lost(_))),
            "a nack that cannot redeliver says so: {nacked:?}"
        );
        nothing_within(&mut c, Duration::from_millis(500)).await;
        return;
    }
    first.nack().await.unwrap();
    let again = next(&mut c).await;
    assert_eq!(again.payload, b"once more");
    assert!(again.redelivered);
    again.ack().await.unwrap();
}

/// What a consumer did not acknowledge goes to another consumer when it goes away;
/// what it acknowledged does not.
pub async fn unacked_messages_survive_their_consumer(broker: Box<dyn Broker>) {
    let topic = topic("die");
    let mut doomed = broker.consumer(&topic, "g").await.unwrap();
    let sent = payloads("job", 3);
    publish(&*broker, &topic, &sent).await;
    let first = next(&mut doomed).await;
    let second = next(&mut doomed).await;
    let third = next(&mut doomed).await;
    first.ack().await.unwrap();
    drop(doomed);

    let mut heir = broker.consumer(&topic, "g").await.unwrap();
    if !broker.semantics().redelivery() {
        // Nothing held comes back: the heir's first message is the next one sent.
        publish(&*broker, &topic, &[b"sentinel".to_vec()]).await;
        let d = next(&mut heir).await;
        assert_eq!(
            d.payload, b"sentinel",
            "an unacknowledged message came back"
        );
        d.ack().await.unwrap();
        nothing_within(&mut heir, Duration::from_millis(500)).await;
        drop((second, third));
        return;
    }
    let mut back = HashSet::new();
    for _ in 0..2 {
        let d = next(&mut heir).await;
        assert!(
            d.redelivered || !broker.semantics().marks_redelivery(),
            "a redelivery is marked: {:?}",
            String::from_utf8_lossy(&d.payload)
        );
        back.insert(d.payload.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(
        back,
        [second.payload.clone(), third.payload.clone()]
            .into_iter()
            .collect()
    );
    // The acknowledged message is not among what comes next.
    publish(&*broker, &topic, &[b"sentinel".to_vec()]).await;
    let d = next(&mut heir).await;
    assert_eq!(d.payload, b"sentinel");
    d.ack().await.unwrap();
}

/// Acknowledging many messages together settles those and nothing else: with a
/// message held back after a run of acknowledged ones (where one RabbitMQ ack with
/// `multiple` could cover too much) and between others, the ones held back come
/// back when their consumer goes away, and the acknowledged ones do not.
pub async fn batched_acks_settle_only_those(broker: Box<dyn Broker>) {
    let topic = topic("batch-ack");
    let mut doomed = broker.consumer(&topic, "g").await.unwrap();
    let sent = payloads("b", 30);
    publish(&*broker, &topic, &sent).await;
    let mut taken = Vec::new();
    while taken.len() < sent.len() {
        let batch = next_batch(&mut doomed, sent.len() - taken.len()).await;
        taken.extend(batch);
    }
    let (mut held, mut done) = (Vec::new(), Vec::new());
    for (i, d) in taken.into_iter().enumerate() {
        if i % 7 == 6 {
            held.push(d)
        } else {
            done.push(d)
        }
    }
    let held_back: HashSet<Vec<u8>> = held.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(held_back.len(), 4);
    Delivery::ack_all(done)
        .await
        .expect("acknowledging a batch");
    drop(doomed);
    if !broker.semantics().redelivery() {
        drop(held);
        return;
    }

    let mut heir = broker.consumer(&topic, "g").await.unwrap();
    let mut back = HashSet::new();
    let mut again = Vec::new();
    while !held_back.is_subset(&back) {
        let d = next(&mut heir).await;
        back.insert(d.payload.clone());
        again.push(d);
    }
    if broker.semantics() != Semantics::Log {
        // A log starts again from the oldest message not acknowledged, so it may
        // send acknowledged ones again; a queue sends back only what was held.
        assert_eq!(back, held_back, "an acknowledged message came back");
    }
    Delivery::ack_all(again)
        .await
        .expect("acknowledging a batch");
    drop(held);
    publish(&*broker, &topic, &[b"sentinel".to_vec()]).await;
    loop {
        let d = next(&mut heir).await;
        let sentinel = d.payload == b"sentinel";
        assert!(
            sentinel || broker.semantics() == Semantics::Log,
            "a message acknowledged in a batch came back: {:?}",
            String::from_utf8_lossy(&d.payload)
        );
        d.ack().await.unwrap();
        if sentinel {
            break;
        }
    }
}

/// Bytes arrive as sent: binary, multi-byte text, large.
pub async fn payloads_arrive_intact(broker: Box<dyn Broker>) {
    let topic = topic("bytes");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = vec![
        vec![0u8, 255, 10, 13, 0],
        "héros — 英雄 🦸".as_bytes().to_vec(),
        big,
    ];
    publish(&*broker, &topic, &sent).await;
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        let d = next(&mut c).await;
        got.push(d.payload.clone());
        d.ack().await.unwrap();
    }
    got.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(got, expected);
}

/// A message published before any consumer of the topic existed is kept or lost, as
/// the broker's semantics say.
pub async fn early_messages_follow_the_semantics(broker: Box<dyn Broker>) {
    let topic = topic("early");
    publish(&*broker, &topic, &[b"early".to_vec()]).await;
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&*broker, &topic, &[b"late".to_vec()]).await;
    let first = next(&mut c).await;
    let payload = first.payload.clone();
    first.ack().await.unwrap();
    if broker.semantics().retains_unconsumed() {
        // Both arrive (in either order: Kafka orders within a partition only).
        let second = next(&mut c).await;
        let got: HashSet<Vec<u8>> = [payload, second.payload.clone()].into_iter().collect();
        assert_eq!(
            got,
            [b"early".to_vec(), b"late".to_vec()].into_iter().collect()
        );
        second.ack().await.unwrap();
    } else {
        assert_eq!(payload, b"late");
    }
}

/// A group declared before anything is published finds, at its first consumer,
/// everything published since, on every broker that keeps messages for a group
/// (even after another group's consumer came first: on NSQ the first channel of a
/// topic takes what the topic held); a broker that keeps nothing gives it nothing.
pub async fn declared_groups_keep_what_comes_next(broker: Box<dyn Broker>) {
    let topic = topic("declared");
    broker.declare(&topic, &["g"]).await.expect("declare");
    broker
        .declare(&topic, &["g"])
        .await
        .expect("declaring again is harmless");
    let mut other = broker.consumer(&topic, "other").await.unwrap();
    let sent = payloads("d", 5);
    publish(&*broker, &topic, &sent).await;
    let all: HashSet<Vec<u8>> = sent.iter().cloned().collect();
    let mut got = HashSet::new();
    for _ in 0..sent.len() {
        let d = next(&mut other).await;
        got.insert(d.payload.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(got, all, "the group that came first");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    if broker.semantics().redelivery() {
        let mut got = HashSet::new();
        for _ in 0..sent.len() {
            let d = next(&mut c).await;
            got.insert(d.payload.clone());
            d.ack().await.unwrap();
        }
        assert_eq!(got, all, "the declared group");
    } else {
        nothing_within(&mut c, Duration::from_millis(500)).await;
    }
}

/// Waiting messages come in batches of at most the size asked for, each message once.
pub async fn batches_take_what_waits(broker: Box<dyn Broker>) {
    let topic = topic("batch");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    let sent = payloads("b", 10);
    publish(&*broker, &topic, &sent).await;
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let batch = next_batch(&mut c, 3).await;
        assert!(
            (1..=3).contains(&batch.len()),
            "a batch of {} for at most 3",
            batch.len()
        );
        for d in batch {
            got.push(d.payload.clone());
            d.ack().await.unwrap();
        }
    }
    assert_eq!(
        got.iter().cloned().collect::<HashSet<_>>(),
        sent.iter().cloned().collect::<HashSet<_>>()
    );
    assert_eq!(got.len(), sent.len(), "each message once");
}

/// Probes `topic` until `observer` sees a probe (an observer watches "from now on",
/// which some brokers settle a moment after it is made: Kafka resolves `latest` at its
/// first fetch), and returns the first payload it saw.
async fn first_seen(broker: &dyn Broker, topic: &str, observer: &mut Box<dyn Consumer>) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut probes = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the observer saw none of {probes} probes"
        );
        publish(broker, topic, &[format!("probe-{probes}").into_bytes()]).await;
        probes += 1;
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(300), observer.next()).await {
            let d = d.expect("the broker failed to deliver");
            let payload = d.payload.clone();
            d.ack().await.unwrap();
            return payload;
        }
    }
}

/// An observer sees what is published once it is watching, without taking it from
/// the groups: the workers' group still gets every message. What was published while
/// no observer watched is not shown to the next one.
pub async fn observers_see_everything_and_take_nothing(broker: Box<dyn Broker>) {
    let topic = topic("observe");
    let mut group = broker.consumer(&topic, "g").await.unwrap();
    let mut observer = broker.observer(&topic).await.unwrap();
    first_seen(&*broker, &topic, &mut observer).await;
    let sent = payloads("seen", 20);
    publish(&*broker, &topic, &sent).await;
    let wanted: HashSet<Vec<u8>> = sent.iter().cloned().collect();
    for c in [&mut observer, &mut group] {
        let mut got = HashSet::new();
        while !wanted.is_subset(&got) {
            let d = next(c).await;
            got.insert(d.payload.clone());
            d.ack().await.unwrap();
        }
    }

    drop(observer);
    publish(&*broker, &topic, &payloads("unwatched", 5)).await;
    let mut next_observer = broker.observer(&topic).await.unwrap();
    let first = first_seen(&*broker, &topic, &mut next_observer).await;
    assert!(
        first.starts_with(b"probe-"),
        "a new observer was shown {:?}, published before it watched",
        String::from_utf8_lossy(&first)
    );
}

/// The figures each broker gives of a group (see `Figures`).
pub async fn stats_follow_the_group(broker: Box<dyn Broker>, figures: Figures) {
    let topic = topic("stats");
    let consumer = broker.consumer(&topic, "g").await.unwrap();
    publish(&*broker, &topic, &payloads("s", 3)).await;
    let read = || async {
        let stats = broker.stats(&topic, "g").await.expect("stats");
        for s in &stats {
            assert!(!s.name.is_empty());
        }
        let names: HashSet<&str> = stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names.len(),
            stats.len(),
            "figures are named once: {stats:?}"
        );
        stats
    };
    let value = |stats: &[superhero::broker::BrokerStat], name: &str| {
        stats.iter().find(|s| s.name == name).map_or(0, |s| s.value)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = read().await;
        if figures.alive.iter().all(|n| value(&stats, n) >= 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} do not show the consumer: {stats:?}",
            figures.alive
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(consumer);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = read().await;
        let backlog: u64 = figures.backlog.iter().map(|n| value(&stats, n)).sum();
        if figures.backlog.is_empty() || backlog == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} do not add up to the 3 unacknowledged messages: {stats:?}",
            figures.backlog
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reachable broker answers pings; its lag figure, where it names one, counts what
/// was published for a group that took nothing yet.
pub async fn pings_and_names_its_lag(broker: Box<dyn Broker>, figures: Figures) {
    tokio::time::timeout(WAIT, broker.ping())
        .await
        .expect("a ping answered within the wait")
        .expect("a reachable broker answers pings");
    let Some(lag) = broker.lag_figure() else {
        assert!(
            figures.backlog.is_empty(),
            "{} keeps a backlog ({:?}) but names no lag",
            broker.kind(),
            figures.backlog
        );
        return;
    };
    // A peer that tells no figures at all has no lag to check.
    if figures.backlog.is_empty() {
        return;
    }
    assert!(
        figures.backlog.contains(&lag),
        "{lag} is not a backlog figure"
    );
    let topic = topic("lag");
    broker.declare(&topic, &["g"]).await.expect("declare");
    publish(&*broker, &topic, &payloads("l", 3)).await;
    lag_reaches(&*broker, &topic, lag, 3).await;
}

/// Waits until `broker`'s `lag` figure of group `g` of `topic` counts `n` messages.
async fn lag_reaches(broker: &dyn Broker, topic: &str, lag: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = broker.stats(topic, "g").await.expect("stats");
        if stats.iter().any(|s| s.name == lag && s.value == n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{lag} does not count the {n} messages no consumer took: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A deleted topic takes what it held along: a group on the same name afterwards
/// finds none of the old messages, and the name works again from scratch. Deleting
/// again is harmless.
pub async fn deleting_takes_the_messages_along(broker: Box<dyn Broker>, figures: Figures) {
    let topic = topic("delete");
    broker.declare(&topic, &["g"]).await.expect("declare");
    publish(&*broker, &topic, &payloads("old", 3)).await;
    // Where the broker counts them, the old messages are seen waiting first, so the
    // deletion has something to take.
    if let Some(lag) = broker.lag_figure().filter(|_| !figures.backlog.is_empty()) {
        lag_reaches(&*broker, &topic, lag, 3).await;
    }
    match broker.delete(&topic, &["g"]).await {
        Ok(()) => {}
        // A peer that tells no figures (the in-test nsqd, without an HTTP API)
        // cannot be asked to delete either, and says so.
        Err(superhero::broker::BrokerError::Config(why)) if figures.backlog.is_empty() => {
            eprintln!("{} deletes nothing here: {why}", broker.kind());
            return;
        }
        Err(e) => panic!("delete: {e}"),
    }
    broker
        .delete(&topic, &["g"])
        .await
        .expect("deleting again is harmless");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&*broker, &topic, &[b"new".to_vec()]).await;
    let d = next(&mut c).await;
    assert_eq!(
        String::from_utf8_lossy(&d.payload),
        "new",
        "an old message outlived its topic"
    );
    d.ack().await.unwrap();
    nothing_within(&mut c, Duration::from_millis(500)).await;
    drop(c);
    broker.delete(&topic, &["g"]).await.expect("delete");
}

/// A settle after its consumer went away, once the message went to another consumer
/// of the group: stale where the broker can tell, else harmless; never another error.
/// On a broker that does not redeliver, the settle has nothing to do and succeeds.
pub async fn settles_after_the_consumer_went_away(broker: Box<dyn Broker>, figures: Figures) {
    let topic = topic("stale");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&*broker, &topic, &[b"held".to_vec()]).await;
    let held = next(&mut c).await;
    drop(c);
    if broker.semantics().redelivery() {
        let mut heir = broker.consumer(&topic, "g").await.unwrap();
        let again = next(&mut heir).await;
        assert_eq!(again.payload, b"held");
        let old = held.ack().await;
        match old {
            Err(superhero::broker::BrokerError::Stale) => {}
            Ok(()) => assert!(
                !figures.stale_after_drop,
                "this broker knows the delivery is no longer held"
            ),
            Err(e) => panic!("a settle after the consumer went away: {e}"),
        }
        again.ack().await.unwrap();
    } else {
        held.ack().await.expect("nothing to settle");
    }
}

/// What a broker's figures show (`Broker::stats`), by name: figures that count a live
/// consumer of the group, figures that add up to the group's unacknowledged
/// messages once its consumer is gone (none for brokers that keep nothing), and
/// whether a settle after the consumer went away is known to be stale.
#[derive(Clone, Copy)]
pub struct Figures {
    pub alive: &'static [&'static str],
    pub backlog: &'static [&'static str],
    pub stale_after_drop: bool,
}

macro_rules! broker_contract {
    ($name:ident, $make:expr, $figures:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batches_take_what_waits() {
                super::batches_take_what_waits($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn observers_see_everything_and_take_nothing() {
                super::observers_see_everything_and_take_nothing($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stats_follow_the_group() {
                super::stats_follow_the_group($make, $figures).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pings_and_names_its_lag() {
                super::pings_and_names_its_lag($make, $figures).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deleting_takes_the_messages_along() {
                super::deleting_takes_the_messages_along($make, $figures).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn settles_after_the_consumer_went_away() {
                super::settles_after_the_consumer_went_away($make, $figures).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn work_is_shared_within_a_group() {
                super::work_is_shared_within_a_group($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_group_gets_every_message() {
                super::every_group_gets_every_message($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nack_redelivers() {
                super::nack_redelivers($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unacked_messages_survive_their_consumer() {
                super::unacked_messages_survive_their_consumer($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batched_acks_settle_only_those() {
                super::batched_acks_settle_only_those($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn payloads_arrive_intact() {
                super::payloads_arrive_intact($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn early_messages_follow_the_semantics() {
                super::early_messages_follow_the_semantics($make).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn declared_groups_keep_what_comes_next() {
                super::declared_groups_keep_what_comes_next($make).await;
            }
        }
    };
}

broker_contract!(
    memory,
    Box::new(MemoryBroker::new()),
    Figures {
        alive: &[],
        backlog: &["ready"],
        stale_after_drop: true,
    }
);

/// Redis Streams on the test Redis, database 0 (topics are unique per test).
async fn redis_streams() -> Box<dyn Broker> {
    let url = common::redis_url(0).replacen("redis://", "redis-streams://", 1);
    Box::new(
        RedisStreamsBroker::connect(&url, StreamsOptions::default())
            .await
            .expect("Redis is reachable (scripts/test starts it)"),
    )
}

broker_contract!(
    redis_streams,
    redis_streams().await,
    Figures {
        alive: &["consumers"],
        backlog: &["pending", "lag"],
        stale_after_drop: false,
    }
);

/// Redis pub/sub on the test Redis (channels span databases; names are unique).
async fn redis_pubsub() -> Box<dyn Broker> {
    Box::new(
        RedisPubSubBroker::connect(&common::redis_url(0))
            .await
            .expect("Redis is reachable (scripts/test starts it)"),
    )
}

broker_contract!(
    redis_pubsub,
    redis_pubsub().await,
    Figures {
        alive: &["subscribers"],
        backlog: &[],
        stale_after_drop: false,
    }
);

/// The embedded broker drops what no group consumes (as an exchange with no queue
/// bound), and counts it.
#[tokio::test]
async fn memory_counts_unrouted_messages() {
    let broker = MemoryBroker::new();
    let topic = topic("unrouted");
    publish(&broker, &topic, &payloads("lost", 4)).await;
    assert_eq!(broker.published(), 4);
    assert_eq!(broker.unrouted(), 4);
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&broker, &topic, &payloads("kept", 1)).await;
    assert_eq!(broker.depth(&topic, "g").ready, 1);
    let d = next(&mut c).await;
    assert_eq!(d.payload, b"kept-0");
    assert_eq!(broker.depth(&topic, "g").unacked, 1);
    d.ack().await.unwrap();
    assert_eq!(broker.depth(&topic, "g").unacked, 0);
    assert_eq!(broker.unrouted(), 4);
}

/// RabbitMQ; the tests' queues go a minute after their last use.
async fn rabbitmq() -> Box<dyn Broker> {
    Box::new(
        RabbitBroker::connect(
            &common::amqp_url(),
            RabbitOptions {
                expiry: Some(Duration::from_secs(60)),
                ..RabbitOptions::default()
            },
        )
        .await
        .expect("RabbitMQ is reachable (scripts/test starts it)"),
    )
}

broker_contract!(
    rabbitmq,
    rabbitmq().await,
    Figures {
        alive: &["consumers"],
        backlog: &["messages ready"],
        stale_after_drop: true,
    }
);

/// RabbitMQ names itself and its version in the frame that opens every connection.
#[tokio::test]
async fn rabbitmq_names_its_version() {
    let version = rabbitmq().await.version().await;
    let version = version.as_deref().unwrap_or_default();
    let number = version.strip_prefix("RabbitMQ ").unwrap_or_default();
    assert!(
        !number.is_empty() && number.split('.').all(|part| part.parse::<u32>().is_ok()),
        "{version:?}"
    );
}

/// NATS JetStream; the tests' messages and consumers go a minute after their last use,
/// and held messages come back after 2 s instead of 30.
async fn nats() -> Box<dyn Broker> {
    let options = NatsOptions {
        expiry: Some(Duration::from_secs(60)),
        ack_wait: Duration::from_secs(2),
        ..NatsOptions::default()
    };
    Box::new(
        NatsBroker::connect(&common::nats_url(), options)
            .await
            .expect("NATS is reachable (scripts/test starts it)"),
    )
}

broker_contract!(
    nats,
    nats().await,
    Figures {
        alive: &[],
        backlog: &["pending", "ack pending"],
        stale_after_drop: false,
    }
);

/// NATS JetStream: a pull that expires unfilled says what it still owed and is replaced
/// at once, so a consumer idle through many expiries does not wait for its pulls to go
/// silent (which renews them, and counts it). Pulls of one message and of 400 ms:
/// heartbeats every 100 ms, silence after 200 ms. Were expiries not given back, every
/// one would end in a silence (about 6 in this test); a loaded machine may delay a
/// heartbeat past the silence now and then, hence a bound rather than none.
#[tokio::test]
async fn nats_pulls_that_expire_unfilled_are_replaced_at_once() {
    let options = NatsOptions {
        expiry: Some(Duration::from_secs(60)),
        ack_wait: Duration::from_secs(2),
        pull_batch: 1,
        pull_expires: Duration::from_millis(400),
        ..NatsOptions::default()
    };
    let broker = NatsBroker::connect(&common::nats_url(), options)
        .await
        .expect("NATS is reachable (scripts/test starts it)");
    let topic = topic("nats-expiring-pulls");
    broker.declare(&topic, &["g"]).await.expect("declare");
    let mut consumer = broker.consumer(&topic, "g").await.expect("consumer");
    let publisher = broker.publisher().await.expect("publisher");
    for round in 0..2 {
        // The idle spell under test: about five pulls expire unfilled meanwhile.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        let sent = payloads(&format!("round{round}"), 5);
        publisher.publish(&topic, &sent).await.expect("publish");
        for expected in &sent {
            let d = next(&mut consumer).await;
            assert_eq!(&d.payload, expected, "in order, one pull at a time");
            d.ack().await.expect("ack");
        }
    }
    let stats = broker.stats(&topic, "g").await.expect("stats");
    let renewed = stats
        .iter()
        .find(|s| s.name.starts_with("pulls renewed"))
        .expect("the consumer's figure is reported");
    assert!(
        renewed.value <= 2,
        "expired pulls are replaced when they end, not after a silence: {} renewed",
        renewed.value
    );
}

/// Redis fan-out, with its middleware running in this process.
async fn redis_fanout() -> Box<dyn Broker> {
    Box::new(
        RedisFanoutBroker::connect(
            &common::redis_url(0),
            FanoutOptions {
                run_middleware: true,
            },
        )
        .await
        .expect("Redis is reachable (scripts/test starts it)"),
    )
}

broker_contract!(
    redis_fanout,
    redis_fanout().await,
    Figures {
        alive: &["live workers"],
        backlog: &[],
        stale_after_drop: false,
    }
);

/// The fan-out counts what no live worker could take (pub/sub keeps nothing).
#[tokio::test]
async fn fanout_counts_messages_no_worker_takes() {
    let channel = topic("fanout-lost");
    let client = redis::Client::open(common::redis_url(0)).unwrap();
    let fanout = superhero::broker::Fanout::start(&client, &channel)
        .await
        .unwrap();
    let stats = fanout.stats.clone();
    let task = tokio::spawn(fanout.run());
    let publisher = RedisPubSubBroker::connect(&common::redis_url(0))
        .await
        .unwrap();
    publish(&publisher, &channel, &payloads("nobody", 3)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.lost.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost messages not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        stats.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    task.abort();
}

/// Publishes one message and takes it back, acknowledged: the consumer works.
async fn passes_one(broker: &dyn Broker, topic: &str, consumer: &mut Box<dyn Consumer>) {
    publish(broker, topic, &[b"before".to_vec()]).await;
    let d = next(consumer).await;
    assert_eq!(d.payload, b"before");
    d.ack().await.unwrap();
}

/// A fan-out worker whose registration is gone (Redis restarted without its data)
/// enters it again, and a middleware that starts afresh finds it: messages reach
/// it again.
#[tokio::test]
async fn fanout_workers_register_again_when_redis_forgets_them() {
    let broker = redis_fanout().await;
    let topic = topic("fanout-forgotten");
    let mut consumer = broker.consumer(&topic, "g").await.unwrap();
    passes_one(&*broker, &topic, &mut consumer).await;
    // The middleware goes with its broker; the consumer stays subscribed.
    drop(broker);
    let client = redis::Client::open(common::redis_url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{topic}:fanout:g"))
        .arg(format!("{topic}:fanout-groups"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let fanout = superhero::broker::Fanout::start(&client, &topic)
        .await
        .unwrap();
    let middleware = tokio::spawn(fanout.run());
    let publisher = RedisPubSubBroker::connect(&common::redis_url(0))
        .await
        .unwrap();
    // What is published before the worker is known again is lost, as pub/sub loses
    // it; one of the messages sent until then must arrive.
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivered = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker was never sent anything again"
        );
        publish(&publisher, &topic, &[b"after".to_vec()]).await;
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
            break d;
        }
    };
    assert_eq!(delivered.payload, b"after");
    delivered.ack().await.unwrap();
    middleware.abort();
}

/// Deleting a fan-out topic leaves none of its registries in Redis: not the group
/// named, not one only the channel's list of groups knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_deletes_its_registries() {
    let broker = redis_fanout().await;
    let topic = topic("fanout-delete");
    let mut consumer = broker.consumer(&topic, "g").await.unwrap();
    passes_one(&*broker, &topic, &mut consumer).await;
    let client = redis::Client::open(common::redis_url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // A worker of another group that died without leaving.
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(format!("{topic}:fanout:h"))
        .arg("gone")
        .cmd("SADD")
        .arg(format!("{topic}:fanout-groups"))
        .arg("h")
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys = [
        format!("{topic}:fanout:g"),
        format!("{topic}:fanout:h"),
        format!("{topic}:fanout-groups"),
    ];
    let exists = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut ask = redis::cmd("EXISTS");
        ask.arg(&keys);
        let mut conn = conn.clone();
        async move { ask.query_async::<usize>(&mut conn).await.unwrap() }
    };
    assert_eq!(exists(&mut conn).await, 3, "the registries made");
    drop(consumer);
    broker.delete(&topic, &["g"]).await.unwrap();
    assert_eq!(exists(&mut conn).await, 0, "a registry outlived its topic");
}

/// A pub/sub subscriber that does not keep up holds a bounded number of messages and
/// counts the ones it had to drop: received and dropped add up to what was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubsub_subscriber_that_falls_behind_counts_what_it_drops() {
    let channel = topic("overflow");
    let broker = RedisPubSubBroker::connect(&common::redis_url(0))
        .await
        .unwrap();
    let mut slow = broker.consumer(&channel, "g").await.unwrap();
    let sent = 70_000;
    for chunk in payloads("flood", sent).chunks(5_000) {
        publish(&broker, &channel, chunk).await;
    }
    // Nothing is read yet: once the subscriber has taken what Redis pushed, it has
    // had to drop some.
    let deadline = tokio::time::Instant::now() + WAIT;
    while slow.overflowed() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing dropped: the flood did not fill the buffer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut received = 0;
    while received + slow.overflowed() < sent as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{received} received and {} dropped of {sent}",
            slow.overflowed()
        );
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(100), slow.next()).await {
            d.ack().await.unwrap();
            received += 1;
        }
    }
    assert!(
        slow.overflowed() > 0,
        "nothing dropped: the flood did not fill the buffer"
    );
    assert_eq!(received + slow.overflowed(), sent as u64);
}

/// A `redis-server` of the test's own on `port` that asks for a password: `wonder`
/// for the default user and for the ACL user `alice`.
fn redis_with_password(port: u16) -> common::Service {
    let mut command = std::process::Command::new("redis-server");
    command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
    command.args([
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        "wonder",
    ]);
    command.args(["--user", "alice", "on", ">wonder", "~*", "&*", "+@all"]);
    common::Service::spawn(command, "Ready to accept connections", WAIT)
}

/// Publishes `payload` until `consumer` gets it: a subscriber that lost its
/// connection takes a moment to subscribe again, and what is published meanwhile
/// is gone.
async fn passes_through(broker: &dyn Broker, topic: &str, consumer: &mut Box<dyn Consumer>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing came through within the wait"
        );
        if let Ok(publisher) = broker.publisher().await {
            let _ = publisher.publish(topic, &[b"through".to_vec()]).await;
        }
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
            assert_eq!(d.payload, b"through");
            return;
        }
    }
}

/// Subscribers authenticate as the URL says (a password alone, or a user and its
/// password), a wrong password is refused with Redis's reason, and a subscription
/// comes back by itself after Redis restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_subscribers_authenticate_and_outlive_a_restart() {
    let port = common::free_port();
    let redis = redis_with_password(port);
    assert!(
        RedisPubSubBroker::connect(&format!("redis://:nope@127.0.0.1:{port}/0"))
            .await
            .is_err(),
        "a wrong password is refused"
    );
    for url in [
        format!("redis://:wonder@127.0.0.1:{port}/0"),
        format!("redis://alice:wonder@127.0.0.1:{port}/0"),
    ] {
        let broker = RedisPubSubBroker::connect(&url).await.unwrap();
        let topic = topic("auth");
        let mut consumer = broker.consumer(&topic, "g").await.unwrap();
        publish(&broker, &topic, &payloads("m", 3)).await;
        for expected in payloads("m", 3) {
            assert_eq!(next(&mut consumer).await.payload, expected);
        }
    }

    // A subscription outlives a restart of Redis.
    let url = format!("redis://alice:wonder@127.0.0.1:{port}/0");
    let broker = RedisPubSubBroker::connect(&url).await.unwrap();
    let topic = topic("restart");
    let mut consumer = broker.consumer(&topic, "g").await.unwrap();
    passes_through(&broker, &topic, &mut consumer).await;
    redis.kill();
    let _redis = redis_with_password(port);
    passes_through(&broker, &topic, &mut consumer).await;

    // A password changed after the broker connected: the subscription's own
    // connection is refused, and says why.
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", "wonder", "--no-auth-warning"])
        .args(["ACL", "SETUSER", "alice", "resetpass", ">other"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let refused = broker.consumer(&topic, "g").await.err();
    let refused = refused.expect("a wrong password is refused").to_string();
    assert!(refused.contains("WRONGPASS"), "{refused}");
}

/// Redis Streams trims what every group acknowledged and nothing else: entries
/// pending or unread stay and are still delivered; a group that read nothing keeps the
/// whole stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_trims_only_what_every_group_acknowledged() {
    let broker = RedisStreamsBroker::connect(&common::redis_url(0), StreamsOptions::default())
        .await
        .unwrap();
    let conn = redis::Client::open(common::redis_url(0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let length = |topic: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("XLEN")
                .arg(topic)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };
    for idle_group in [false, true] {
        let topic = topic("trim");
        let mut c = broker.consumer(&topic, "g").await.unwrap();
        let _idle = if idle_group {
            Some(broker.consumer(&topic, "idle").await.unwrap())
        } else {
            None
        };
        publish(&broker, &topic, &payloads("entry", 100)).await;
        let mut held = Vec::new();
        for i in 0..60 {
            let d = next(&mut c).await;
            if i < 50 {
                d.ack().await.unwrap();
            } else {
                held.push(d);
            }
        }
        broker.trim_consumed(&topic).await.unwrap();
        let left = length(topic.clone()).await;
        if idle_group {
            assert_eq!(left, 100, "a group that read nothing keeps everything");
        } else {
            assert_eq!(left, 50, "10 pending and 40 unread stay");
        }
        for _ in 0..40 {
            next(&mut c).await.ack().await.unwrap();
        }
        for d in held {
            d.ack().await.unwrap();
        }
    }
}

/// NSQ: the real nsqd at NSQD_ADDRESS (scripts/test builds and starts it), its
/// figures read from its HTTP API; else the tests' protocol-level peer
/// (`common::nsqd`, for machines without Go). Held messages come back after 2 s
/// instead of 30.
async fn nsq() -> Box<dyn Broker> {
    let options = NsqOptions {
        msg_timeout: Duration::from_secs(2),
        http_address: common::nsqd::http_address(),
        ..NsqOptions::default()
    };
    Box::new(
        NsqBroker::connect(&format!("nsq://{}", common::nsqd::address()), options)
            .await
            .expect("nsqd is reachable"),
    )
}

broker_contract!(
    nsq,
    nsq().await,
    if common::nsqd::http_address().is_some() {
        // nsqd's /stats: the unfinished messages are in flight, then back in the
        // channel once their timeout ran out.
        Figures {
            alive: &["clients"],
            backlog: &["depth", "in flight"],
            stale_after_drop: true,
        }
    } else {
        // The in-test peer serves no HTTP API.
        Figures {
            alive: &[],
            backlog: &[],
            stale_after_drop: true,
        }
    }
);

/// An NSQ consumer answers nsqd's heartbeats: idle through several of them, it keeps
/// its connection, so the message it holds can still be finished on it.
#[tokio::test]
async fn nsq_consumer_survives_heartbeats() {
    let options = NsqOptions {
        msg_timeout: Duration::from_secs(60),
        heartbeat: Duration::from_secs(1),
        ..NsqOptions::default()
    };
    let url = format!("nsq://{}", common::nsqd::address());
    let broker = NsqBroker::connect(&url, options).await.unwrap();
    let topic = topic("heartbeat");
    let mut c = broker.consumer(&topic, "g").await.unwrap();
    publish(&broker, &topic, &[b"held".to_vec()]).await;
    let d = next(&mut c).await;
    // nsqd closes a connection that misses two heartbeats (2 s here).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    d.ack()
        .await
        .expect("the connection is the same: the ack is not stale");
    publish(&broker, &topic, &[b"after".to_vec()]).await;
    let d = next(&mut c).await;
    assert_eq!(
        d.payload, b"after",
        "the finished message does not come again"
    );
    d.ack().await.unwrap();
}

/// Kafka: the test broker at SUPERHERO_TEST_KAFKA_URL (scripts/test starts Apache
/// Kafka on 127.0.0.1:9092); a member that goes away is noticed within 6 s.
async fn kafka() -> Box<dyn Broker> {
    let options = KafkaOptions {
        session_timeout: Duration::from_secs(6),
        ..KafkaOptions::default()
    };
    Box::new(GroupPerTopic(Box::new(
        KafkaBroker::connect(&common::kafka_url(), options)
            .await
            .expect("Kafka is reachable (scripts/test starts Apache Kafka)"),
    )))
}

/// `group` made the test's own by `topic`'s name.
fn own_group(topic: &str, group: &str) -> String {
    format!("{group}.{topic}")
}

/// Each of `groups` made the test's own, as [`own_group`] does.
fn own_groups(topic: &str, groups: &[&str]) -> Vec<String> {
    groups.iter().map(|g| own_group(topic, g)).collect()
}

/// A Kafka consumer group spans topics: every join or leave rebalances all of its
/// members, whatever topic they read. The suite's tests run in parallel with the
/// same group names on their own topics, so on Kafka each test's groups are made its
/// own, as its topics are.
struct GroupPerTopic(Box<dyn Broker>);

#[async_trait::async_trait]
impl Broker for GroupPerTopic {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn semantics(&self) -> superhero::broker::Semantics {
        self.0.semantics()
    }

    fn flow(&self) -> superhero::broker::FlowSettings {
        self.0.flow()
    }

    fn lag_figure(&self) -> Option<&'static str> {
        self.0.lag_figure()
    }

    async fn ping(&self) -> Result<(), superhero::broker::BrokerError> {
        self.0.ping().await
    }

    async fn publisher(
        &self,
    ) -> Result<Box<dyn superhero::broker::Publisher>, superhero::broker::BrokerError> {
        self.0.publisher().await
    }

    async fn declare(
        &self,
        topic: &str,
        groups: &[&str],
    ) -> Result<(), superhero::broker::BrokerError> {
        let groups = own_groups(topic, groups);
        self.0
            .declare(
                topic,
                &groups.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await
    }

    async fn consumer(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Consumer>, superhero::broker::BrokerError> {
        self.0.consumer(topic, &own_group(topic, group)).await
    }

    async fn observer(
        &self,
        topic: &str,
    ) -> Result<Box<dyn Consumer>, superhero::broker::BrokerError> {
        self.0.observer(topic).await
    }

    async fn stats(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Vec<superhero::broker::BrokerStat>, superhero::broker::BrokerError> {
        self.0.stats(topic, &own_group(topic, group)).await
    }

    async fn delete(
        &self,
        topic: &str,
        groups: &[&str],
    ) -> Result<(), superhero::broker::BrokerError> {
        let groups = own_groups(topic, groups);
        self.0
            .delete(
                topic,
                &groups.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await
    }
}

broker_contract!(
    kafka,
    kafka().await,
    Figures {
        alive: &["partitions"],
        backlog: &["group lag"],
        stale_after_drop: true,
    }
);

/// A consumer that acknowledges nothing holds at most its prefetch: the rest of the
/// group's messages go to the other consumer. Where the broker bounds what it sends
/// ahead (RabbitMQ's basic.qos, nsqd's RDY), the bench's `--prefetch` must reach it.
async fn prefetch_bounds_what_a_consumer_holds(broker: Box<dyn Broker>, prefetch: usize) {
    // The report prints the setting as the broker applied it.
    assert!(
        broker.flow().prefetch.starts_with(&format!("{prefetch} ")),
        "{:?}",
        broker.flow()
    );
    let topic = topic("prefetch");
    broker.declare(&topic, &["g"]).await.unwrap();
    let mut holder = broker.consumer(&topic, "g").await.unwrap();
    let mut worker = broker.consumer(&topic, "g").await.unwrap();
    let sent = payloads("p", 40);
    publish(&*broker, &topic, &sent).await;
    let mut held = Vec::new();
    let mut done = HashSet::new();
    // The holder takes what it was sent and acknowledges none of it; the worker
    // acknowledges each message, so it keeps taking the rest.
    while held.len() + done.len() < sent.len() {
        tokio::select! {
            d = next(&mut holder) => held.push(d),
            d = next(&mut worker) => {
                done.insert(d.payload.clone());
                d.ack().await.unwrap();
            }
        }
    }
    assert!(
        held.len() <= prefetch,
        "the holder got {} messages with a prefetch of {prefetch}",
        held.len()
    );
    assert_eq!(held.len() + done.len(), sent.len());
    for d in held {
        d.ack().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_prefetch_bounds_what_a_consumer_holds() {
    let broker = RabbitBroker::connect(
        &common::amqp_url(),
        RabbitOptions {
            expiry: Some(Duration::from_secs(60)),
            prefetch: 3,
            ..RabbitOptions::default()
        },
    )
    .await
    .unwrap();
    prefetch_bounds_what_a_consumer_holds(Box::new(broker), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_prefetch_bounds_what_a_consumer_holds() {
    let options = NsqOptions {
        msg_timeout: Duration::from_secs(30),
        max_in_flight: 3,
        ..NsqOptions::default()
    };
    let url = format!("nsq://{}", common::nsqd::address());
    let broker = NsqBroker::connect(&url, options).await.unwrap();
    prefetch_bounds_what_a_consumer_holds(Box::new(broker), 3).await;
}

/// A Redis that comes back without its data (restarted with no persistence, or the
/// stream deleted) has lost the consumers' group: the consumer makes the group again
/// and takes what is published from then on, instead of failing for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_consumers_outlive_their_group() {
    let broker = redis_streams().await;
    let topic = topic("regroup");
    let mut consumer = broker.consumer(&topic, "g").await.unwrap();
    passes_one(&*broker, &topic, &mut consumer).await;
    let mut conn = redis::Client::open(common::redis_url(0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&topic)
        .query_async(&mut conn)
        .await
        .unwrap();
    publish(&*broker, &topic, &[b"after".to_vec()]).await;
    // The first read after the loss reports it; the next ones deliver.
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivered = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing after the group was lost"
        );
        match tokio::time::timeout(WAIT, consumer.next()).await {
            Ok(Ok(d)) => break d,
            Ok(Err(_)) => continue,
            Err(_) => panic!("no message within the wait"),
        }
    };
    assert_eq!(delivered.payload, b"after");
    delivered.ack().await.unwrap();
}
