//! Kafka (`kafka://host:port[,host:port...]`), through librdkafka (the rdkafka crate,
//! with its bundled librdkafka).
//!
//! A topic is a Kafka topic (`lib.server.lobby`) with KAFKA_PARTITIONS partitions,
//! created by whoever comes first; a group is a consumer group (`superhero_sim`).
//! Kafka shares work by partition: each partition is read by one member of a group,
//! so at most KAFKA_PARTITIONS workers of a group are busy and the others wait as
//! standbys. A new group starts at the beginning of the topic, so events published
//! before the first worker started reach it.
//!
//! Kafka acknowledges by committing an offset per partition, not per message. A
//! consumer commits, for each partition, up to its oldest delivered message that is
//! not yet acknowledged (committed every [`COMMIT_INTERVAL_MS`] ms and when the
//! consumer closes); a member that goes away hands its partitions to the others,
//! which read on from the committed offsets: unacknowledged messages come again (and
//! acknowledged ones after an unacknowledged one, which `audit` would show as
//! duplicates). Kafka cannot say that a message was read before, so such messages
//! are not marked redelivered. A nack gives the message to the same consumer again
//! (Kafka has no per-message nack), marked redelivered.
//!
//! Publishing waits for every message's acknowledgement by all in-sync replicas
//! (`acks=all`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio::sync::mpsc;

use super::fetched::FetchedConsumer;
use super::{Acks, Flow, FlowSettings, Tuning};
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, OBSERVER_GROUP, Publisher, Semantics,
    Settle,
};

const NAME: &str = "Kafka";

/// Opens Kafka at `kafka://…` (its registry entry).
pub(super) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    let options = KafkaOptions {
        partitions: tuning.partitions,
        flow: tuning.flow,
        ..KafkaOptions::default()
    };
    async move { Ok(Arc::new(KafkaBroker::connect(&url, options).await?) as Arc<dyn Broker>) }
        .boxed()
}

pub use super::tuning::DEFAULT_PARTITIONS;
/// How often a consumer commits what was acknowledged.
pub const COMMIT_INTERVAL_MS: u32 = 200;
/// How long the broker and the client wait for each other.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new consumer waits for its group to take it in before it returns.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// How topics and consumers are set up.
#[derive(Clone, Copy, Debug)]
pub struct KafkaOptions {
    /// Partitions of the topics this broker creates.
    pub partitions: i32,
    /// How long a group member may go unheard before its partitions go to others.
    pub session_timeout: Duration,
    /// The producer's `acks`, and the consumers' `queued.min.messages` when a
    /// prefetch is given.
    pub flow: Flow,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            session_timeout: Duration::from_secs(10),
            flow: Flow::default(),
        }
    }
}

/// The longest a client waits between attempts to reach a broker that went away
/// (librdkafka's default is 10 s, which a restarted broker's clients would wait out
/// after it was back).
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";
/// librdkafka's own `queued.min.messages`, kept unless a prefetch is given.
const QUEUED_MIN_MESSAGES: usize = 100_000;

/// The producer's `acks` for a policy.
fn producer_acks(acks: Acks) -> &'static str {
    match acks {
        Acks::All => "all",
        Acks::Leader => "1",
        Acks::None => "0",
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    super::unavailable(NAME)(e)
}

/// The bootstrap servers of `kafka://host:port[,host:port...][/]`.
pub(crate) fn bootstrap_from_url(url: &str) -> Result<String, BrokerError> {
    let servers = url
        .strip_prefix("kafka://")
        .map(|rest| rest.split(['/', '?']).next().unwrap_or_default())
        .unwrap_or_default();
    if servers.is_empty() || servers.contains('@') {
        return Err(BrokerError::Config(
            "a Kafka URL is kafka://host:port[,host:port...]".into(),
        ));
    }
    Ok(servers.to_string())
}

/// Kafka: a topic per topic, a consumer group per group.
pub struct KafkaBroker {
    bootstrap: String,
    options: KafkaOptions,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
    topics: Arc<Mutex<HashSet<String>>>,
    /// One offset reader per group asked about in [`Broker::stats`], kept so that
    /// each reading does not open a new client.
    offset_readers: Arc<Mutex<HashMap<String, Arc<BaseConsumer>>>>,
}

impl KafkaBroker {
    /// Connects to the cluster, failing if no broker answers.
    pub async fn connect(url: &str, options: KafkaOptions) -> Result<Self, BrokerError> {
        let bootstrap = bootstrap_from_url(url)?;
        if options.partitions < 1 {
            return Err(BrokerError::Config(
                "KAFKA_PARTITIONS must be at least 1".into(),
            ));
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", producer_acks(options.flow.acks))
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(|e| BrokerError::Config(format!("Kafka producer: {e}")))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .map_err(|e| BrokerError::Config(format!("Kafka admin client: {e}")))?;
        // librdkafka connects lazily: ask for the cluster's metadata to know it is up.
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, TIMEOUT))
            .await
            .map_err(unavailable)?
            .map_err(|e| unavailable(format!("no broker answers at {bootstrap}: {e}")))?;
        Ok(Self {
            bootstrap,
            options,
            producer,
            admin: Arc::new(admin),
            topics: Arc::default(),
            offset_readers: Arc::default(),
        })
    }

    fn queued_min_messages(&self) -> usize {
        self.options
            .flow
            .prefetch
            .unwrap_or(QUEUED_MIN_MESSAGES)
            .max(1)
    }

    /// Creates the topic with the configured partitions unless it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BrokerError> {
        if self.topics.lock().is_ok_and(|t| t.contains(topic)) {
            return Ok(());
        }
        let new = NewTopic::new(topic, self.options.partitions, TopicReplication::Fixed(1));
        let results = self
            .admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
            )
            .await
            .map_err(unavailable)?;
        admin_outcome(
            results,
            &[RDKafkaErrorCode::TopicAlreadyExists],
            "creating topic",
        )?;
        if let Ok(mut t) = self.topics.lock() {
            t.insert(topic.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Log
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: format!(
                "{} messages queued ahead per partition (queued.min.messages); \
                 offsets committed every {COMMIT_INTERVAL_MS} ms",
                self.queued_min_messages()
            ),
            acks: format!("acks={}", producer_acks(self.options.flow.acks)),
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(KafkaPublisher {
            broker: KafkaBroker {
                bootstrap: self.bootstrap.clone(),
                options: self.options,
                producer: self.producer.clone(),
                admin: self.admin.clone(),
                topics: self.topics.clone(),
                offset_readers: self.offset_readers.clone(),
            },
        }))
    }

    async fn declare(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // A group keeps its place by its committed offsets, made by its consumers: the
        // topic is all there is to make, so that a consumer subscribing before the
        // first message (the original's, reading from the latest offset) gets its
        // partitions.
        self.ensure_topic(topic).await
    }

    async fn delete(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        if let Ok(mut t) = self.topics.lock() {
            t.remove(topic);
        }
        let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(unavailable)?;
        admin_outcome(
            results,
            &[RDKafkaErrorCode::UnknownTopicOrPartition],
            "deleting topic",
        )?;
        // Deletion goes on in the background: until the metadata no longer lists the
        // topic, creating it again would find the old one.
        let producer = self.producer.clone();
        let name = topic.to_string();
        let gone = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + TIMEOUT;
            loop {
                let listed = producer
                    .client()
                    .fetch_metadata(None, TIMEOUT)
                    .map_err(unavailable)?
                    .topics()
                    .iter()
                    .any(|t| t.name() == name);
                if !listed {
                    return Ok(());
                }
                if std::time::Instant::now() >= deadline {
                    return Err(unavailable(format!(
                        "topic {name} still listed {TIMEOUT:?} after its deletion"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        gone.await.map_err(|e| unavailable(e.to_string()))??;
        // The group's offsets of the topic went with it. A group is also known by
        // name on every topic it reads: one still reading another topic stays.
        if groups.is_empty() {
            return Ok(());
        }
        let results = self
            .admin
            .delete_groups(groups, &options)
            .await
            .map_err(unavailable)?;
        admin_outcome(
            results,
            &[
                RDKafkaErrorCode::GroupIdNotFound,
                RDKafkaErrorCode::NonEmptyGroup,
            ],
            "deleting group",
        )
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // A new group starts at the beginning: events published before the first
        // worker started are work too.
        self.subscribe(topic, group, "earliest").await
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // A group of its own each time, starting at the end: only what comes next.
        let group = format!(
            "{OBSERVER_GROUP}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        self.subscribe(topic, &group, "latest").await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        // The cluster's metadata, which a broker of the cluster must send.
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(drop)
                .map_err(unavailable)
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("group lag")
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        let consumer = self.offset_reader(group)?;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || group_lag(&consumer, &topic))
            .await
            .map_err(|e| unavailable(e.to_string()))?
    }
}

/// The first failure among an admin request's per-name results, past the codes that
/// mean it is done already (`harmless`); `doing` names the request in the error.
fn admin_outcome(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    harmless: &[RDKafkaErrorCode],
    doing: &str,
) -> Result<(), BrokerError> {
    for r in results {
        if let Err((name, code)) = r
            && !harmless.contains(&code)
        {
            return Err(unavailable(format!("{doing} {name}: {code}")));
        }
    }
    Ok(())
}

impl KafkaBroker {
    /// The group's offset reader, made at the first call. Reading offsets does not
    /// join the group: a plain consumer that never subscribes asks for the group's
    /// committed offsets and the topic's ends.
    fn offset_reader(&self, group: &str) -> Result<Arc<BaseConsumer>, BrokerError> {
        let mut readers = self
            .offset_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(reader) = readers.get(group) {
            return Ok(reader.clone());
        }
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| BrokerError::Config(format!("Kafka consumer: {e}")))?;
        let reader = Arc::new(reader);
        readers.insert(group.to_string(), reader.clone());
        Ok(reader)
    }
}

/// A group's backlog on a topic: messages past its committed offsets, summed over
/// the partitions, and the messages the topic holds.
fn group_lag(consumer: &BaseConsumer, topic: &str) -> Result<Vec<BrokerStat>, BrokerError> {
    const ASK: Duration = Duration::from_secs(2);
    let metadata = consumer
        .fetch_metadata(Some(topic), ASK)
        .map_err(unavailable)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in &partitions {
        list.add_partition(topic, *p);
    }
    let committed = consumer.committed_offsets(list, ASK).map_err(unavailable)?;
    let (mut lag, mut held) = (0u64, 0u64);
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, ASK)
            .map_err(unavailable)?;
        held += (high - low).max(0) as u64;
        let from = match committed.find_partition(topic, *p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => o,
            // Nothing committed yet: the group reads from the start.
            _ => low,
        };
        lag += (high - from).max(0) as u64;
    }
    Ok(vec![
        BrokerStat::new("partitions", partitions.len() as u64),
        BrokerStat::new("messages held", held),
        BrokerStat::new("group lag", lag),
    ])
}

impl KafkaBroker {
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
        offset_reset: &str,
    ) -> Result<Box<dyn Consumer>, BrokerError> {
        self.ensure_topic(topic).await?;
        let partitions = Partitions::default();
        let (joined, mut joining) = tokio::sync::watch::channel(false);
        let context = GroupContext {
            partitions: partitions.clone(),
            joined,
        };
        let consumer: StreamConsumer<GroupContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", offset_reset)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS.to_string())
            .set(
                "session.timeout.ms",
                self.options.session_timeout.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
            .set(
                "queued.min.messages",
                self.queued_min_messages().to_string(),
            )
            .create_with_context(context)
            .map_err(|e| BrokerError::Config(format!("Kafka consumer: {e}")))?;
        consumer.subscribe(&[topic]).map_err(unavailable)?;
        let (retry, mut retries) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            consumer,
            topic: topic.to_string(),
            partitions,
            retry,
        });
        let topic_name = topic.to_string();
        let consumer = FetchedConsumer::spawn(1, |tx| async move {
            loop {
                let item = tokio::select! {
                    biased;
                    Some(again) = retries.recv() => Ok(shared.delivery(again, true)),
                    m = shared.consumer.recv() => match m {
                        Ok(m) => {
                            let message = Held {
                                partition: m.partition(),
                                offset: m.offset(),
                                payload: m.payload().unwrap_or_default().to_vec(),
                            };
                            shared.track(&message);
                            Ok(shared.delivery(message, false))
                        }
                        // A topic just created (ensured above) may not be known to
                        // every part of the cluster yet: it soon is, and the consumer
                        // goes on by itself.
                        Err(KafkaError::MessageConsumption(
                            RDKafkaErrorCode::UnknownTopicOrPartition,
                        )) => {
                            tracing::debug!("Kafka: {topic_name} is not known everywhere yet");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        Err(e) => Err(unavailable(e)),
                    },
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        // Joining rebalances the group: wait for it to settle (with this member in,
        // with or without partitions), so that a run started next does not see its
        // first messages move between members, which would deliver them twice.
        if tokio::time::timeout(JOIN_WAIT, joining.wait_for(|j| *j))
            .await
            .is_err()
        {
            tracing::warn!(
                "Kafka: group {group} has not taken this consumer in after {JOIN_WAIT:?}"
            );
        }
        Ok(Box::new(consumer))
    }
}

type Partitions = Arc<Mutex<HashMap<i32, Track>>>;

/// Follows the group's rebalances: forgets what revoked partitions delivered (their
/// messages go to other members, from the committed offsets) and tells the consumer
/// when the group has taken it in.
struct GroupContext {
    partitions: Partitions,
    joined: tokio::sync::watch::Sender<bool>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let revoked: Vec<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
            tracing::debug!("Kafka: partitions {revoked:?} revoked");
            if let Ok(mut p) = self.partitions.lock() {
                for partition in revoked {
                    p.remove(&partition);
                }
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let assigned: Vec<i32> =
                    assigned.elements().iter().map(|e| e.partition()).collect();
                tracing::debug!("Kafka: partitions {assigned:?} assigned");
                self.joined.send_replace(true);
            }
            Rebalance::Error(e) => tracing::warn!("Kafka: rebalancing failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// A delivered message, as kept for its settle.
struct Held {
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
}

/// What one partition has delivered and not yet had acknowledged.
#[derive(Default)]
struct Track {
    pending: BTreeSet<i64>,
    /// One past the highest offset delivered.
    next: i64,
}

struct Shared {
    consumer: StreamConsumer<GroupContext>,
    topic: String,
    partitions: Partitions,
    /// Nacked messages, delivered again before new ones.
    retry: mpsc::UnboundedSender<Held>,
}

impl Shared {
    fn track(&self, m: &Held) {
        if let Ok(mut p) = self.partitions.lock() {
            let t = p.entry(m.partition).or_default();
            t.pending.insert(m.offset);
            t.next = t.next.max(m.offset + 1);
        }
    }

    fn delivery(self: &Arc<Self>, m: Held, redelivered: bool) -> Delivery {
        let payload = m.payload.clone();
        Delivery::new(
            payload,
            redelivered,
            Box::new(KafkaSettle {
                shared: Arc::downgrade(self),
                held: m,
            }),
        )
    }

    /// Marks the message done and stores, for the next commit, the oldest offset of
    /// the partition still unacknowledged.
    fn ack(&self, partition: i32, offset: i64) -> Result<(), BrokerError> {
        let commit = {
            let mut p = self.partitions.lock().map_err(|_| BrokerError::Stale)?;
            let t = p.get_mut(&partition).ok_or(BrokerError::Stale)?;
            t.pending.remove(&offset);
            t.pending.first().copied().unwrap_or(t.next)
        };
        if commit == 0 {
            return Ok(());
        }
        // rdkafka stores one past the offset it is given (the message's own offset).
        self.consumer
            .store_offset(&self.topic, partition, commit - 1)
            .map_err(|_| BrokerError::Stale)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Leave the group now (committing what was acknowledged), so the partitions
        // go to the other members at once rather than after the session timeout.
        self.consumer.unsubscribe();
    }
}

struct KafkaSettle {
    shared: Weak<Shared>,
    held: Held,
}

#[async_trait]
impl Settle for KafkaSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        let shared = self.shared.upgrade().ok_or(BrokerError::Stale)?;
        shared.ack(self.held.partition, self.held.offset)
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        let shared = self.shared.upgrade().ok_or(BrokerError::Stale)?;
        shared.retry.send(self.held).map_err(|_| BrokerError::Stale)
    }
}

struct KafkaPublisher {
    broker: KafkaBroker,
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        self.publish_keyed(topic, payloads, &[]).await
    }

    /// Each message with its key, if it has one (`keys` may be shorter than
    /// `payloads`): the partitioner hashes it to a partition.
    async fn publish_keyed(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        keys: &[Vec<u8>],
    ) -> Result<(), BrokerError> {
        self.broker.ensure_topic(topic).await?;
        let mut waiting = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(p.as_slice());
            if let Some(key) = keys.get(i) {
                record = record.key(key.as_slice());
            }
            loop {
                match self.broker.producer.send_result(record) {
                    Ok(delivery) => {
                        waiting.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The client's queue is full: let what is waiting go out first.
                        record = back;
                        for d in waiting.drain(..) {
                            confirm(d.await)?;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(unavailable(e)),
                }
            }
        }
        for d in waiting {
            confirm(d.await)?;
        }
        Ok(())
    }
}

fn confirm<E>(result: Result<OwnedDeliveryResult, E>) -> Result<(), BrokerError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(unavailable(e)),
        Err(_) => Err(unavailable("the producer went away")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_bootstrap_servers() {
        assert_eq!(bootstrap_from_url("kafka://h:9092").unwrap(), "h:9092");
        assert_eq!(bootstrap_from_url("kafka://a:1,b:2/").unwrap(), "a:1,b:2");
        assert!(bootstrap_from_url("kafka://").is_err());
        assert!(bootstrap_from_url("nats://h:1").is_err());
    }
}
