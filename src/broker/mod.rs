//! Message brokers: what the logging transport publishes to and the workers consume
//! from.
//!
//! A broker hands out [`Publisher`]s and [`Consumer`]s. A consumer belongs to a group:
//! on a work-queue broker each message goes to one consumer of each group, and a
//! message that was delivered but not acknowledged goes back to the group when the
//! consumer nacks it or goes away. Every broker keeps its own delivery semantics;
//! [`Semantics`] says which, so tests and the evaluation know what to expect.
//!
//! Each broker lives in one file; `tests/broker_contract.rs` is the suite every one
//! of them passes.

mod fetched;
mod kafka;
mod memory;
mod nats;
mod nsq;
mod rabbitmq;
mod redis_fanout;
mod redis_pubsub;
mod redis_streams;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use self::kafka::{KafkaBroker, KafkaOptions};
pub use self::memory::MemoryBroker;
pub use self::nats::{NatsBroker, NatsOptions};
pub use self::nsq::{NsqBroker, NsqOptions, address_from_url as nsqd_address};
pub use self::rabbitmq::RabbitBroker;
pub use self::redis_fanout::{Fanout, FanoutStats, RedisFanoutBroker};
pub use self::redis_pubsub::RedisPubSubBroker;
pub use self::redis_streams::RedisStreamsBroker;

/// What can go wrong talking to a broker.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// The broker did not answer or refused; the operation may be retried.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The delivery is no longer held by this consumer (it was redelivered).
    #[error("the delivery is no longer held by this consumer")]
    Stale,
    /// The broker shut down; nothing more will arrive.
    #[error("the broker is closed")]
    Closed,
    /// The broker URL or setting is not usable.
    #[error("{0}")]
    Config(String),
}

/// How a broker delivers, as the contract suite and the evaluation check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Semantics {
    /// Each message goes to one consumer of a group (else: to every consumer).
    pub work_sharing: bool,
    /// Unacknowledged messages come back when their consumer nacks or goes away.
    pub redelivery: bool,
    /// Messages published while no consumer exists are kept for later ones.
    pub retains_unconsumed: bool,
    /// A message delivered again says so (`Delivery::redelivered`); Kafka cannot
    /// tell after its partition moved to another member.
    pub marks_redelivery: bool,
}

/// A message broker.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name, also the `<LOGGER_MODULE>` part of event names (`memory`, `redis`, ...).
    fn kind(&self) -> &'static str;

    fn semantics(&self) -> Semantics;

    /// The topic, channel or queue a queue's records go to on this broker (and the
    /// workers' default WORKER_CHANNEL for `lib.server.lobby`).
    fn topic_for(&self, queue: &str) -> String {
        queue.to_string()
    }

    /// A publisher; cheap to share between tasks.
    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError>;

    /// A consumer of `topic` in `group`, subscribed before this returns: messages
    /// published afterwards reach the group.
    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError>;

    /// A consumer that sees every message of `topic` published from now on, as a group
    /// of its own ([`OBSERVER_GROUP`]), for watching a pipeline without taking part:
    /// it leaves nothing behind that would pile up once it is gone. Brokers that keep
    /// history may still hand it older messages first.
    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        self.consumer(topic, OBSERVER_GROUP).await
    }

    /// What the broker says about `group`'s share of `topic` (messages waiting,
    /// unacknowledged, subscribers...), in its own terms; empty where it tells nothing.
    async fn stats(&self, _topic: &str, _group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        Ok(Vec::new())
    }
}

/// The group of [`Broker::observer`]s.
pub const OBSERVER_GROUP: &str = "superhero_dashboard";

/// One figure a broker reports, named as the broker names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BrokerStat {
    pub name: String,
    pub value: u64,
}

impl BrokerStat {
    pub fn new(name: &str, value: u64) -> Self {
        Self {
            name: name.to_string(),
            value,
        }
    }
}

/// Publishes messages to a topic.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `payloads` in order; on error some of them may have been published.
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError>;
}

/// Receives the messages of one topic for one group.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next message. Cancel-safe: a call dropped before it returns
    /// loses no message.
    async fn next(&mut self) -> Result<Delivery, BrokerError>;

    /// Waits for the next message, then takes whatever else has already arrived, up
    /// to `max` in all. Cancel-safe: it only waits for the first.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        use futures_util::FutureExt;
        let mut batch = vec![self.next().await?];
        while batch.len() < max {
            // `next` is cancel-safe: a call that is not ready loses nothing.
            match self.next().now_or_never() {
                Some(Ok(d)) => batch.push(d),
                _ => break,
            }
        }
        Ok(batch)
    }
}

/// Settles one delivery with the broker.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Gives the message back to the group for redelivery.
    async fn nack(self: Box<Self>) -> Result<(), BrokerError>;
}

/// One message as delivered to a consumer; settle it with [`Delivery::ack`] or
/// [`Delivery::nack`]. Dropping it unsettled leaves it with its consumer until that
/// consumer goes away.
pub struct Delivery {
    pub payload: Vec<u8>,
    /// Whether the broker delivered this message before.
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(payload: Vec<u8>, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        Self {
            payload,
            redelivered,
            settle,
        }
    }

    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle.ack().await
    }

    pub async fn nack(self) -> Result<(), BrokerError> {
        self.settle.nack().await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.payload.len())
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

/// The broker a command was asked to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerChoice {
    /// No broker: records are printed only (`LOGGER_MODULE=default`).
    None,
    /// The embedded in-process broker (`memory://`).
    Memory,
    /// Redis pub/sub, with its `redis://` URL.
    RedisPubSub(String),
    /// Redis Streams, with a `redis://` URL.
    RedisStreams(String),
    /// RabbitMQ, with its `amqp://` URL.
    Rabbit(String),
    /// NATS JetStream, with its `nats://` URL.
    Nats(String),
    /// Redis fan-out: pub/sub in, one worker per message out; its `redis://` URL.
    RedisFanout(String),
    /// NSQ, with its `nsq://` URL (nsqd's TCP address).
    Nsq(String),
    /// Kafka, with its `kafka://` URL (bootstrap servers).
    Kafka(String),
}

/// Where LOGGER_MODULE's brokers are (from REDIS_*, AMQP_* and RABBIT_*).
#[derive(Clone, Debug, Default)]
pub struct BrokerDefaults {
    pub redis_url: String,
    pub amqp_url: String,
    pub nats_url: String,
    pub nsq_url: String,
    pub kafka_url: String,
}

impl BrokerChoice {
    /// Where the broker is: its URL, `memory://` for the embedded one, empty for none.
    pub fn url(&self) -> String {
        match self {
            Self::None => String::new(),
            Self::Memory => "memory://".into(),
            Self::RedisPubSub(u)
            | Self::RedisStreams(u)
            | Self::Rabbit(u)
            | Self::Nats(u)
            | Self::RedisFanout(u)
            | Self::Nsq(u)
            | Self::Kafka(u) => u.clone(),
        }
    }

    /// Reads `--broker URL` (or SUPERHERO_BROKER), else LOGGER_MODULE, whose
    /// brokers are at `defaults`.
    pub fn parse(
        url: Option<&str>,
        logger_module: &str,
        defaults: &BrokerDefaults,
    ) -> Result<Self, BrokerError> {
        if let Some(url) = url {
            let scheme = url.split_once("://").map_or(url, |(s, _)| s);
            return match scheme {
                "memory" => Ok(Self::Memory),
                "none" | "default" => Ok(Self::None),
                "redis-streams" => Ok(Self::RedisStreams(url.replacen(
                    "redis-streams://",
                    "redis://",
                    1,
                ))),
                "redis" | "rediss" => Ok(Self::RedisPubSub(url.to_string())),
                "amqp" => Ok(Self::Rabbit(url.to_string())),
                "nats" => Ok(Self::Nats(url.to_string())),
                "redis-fanout" => Ok(Self::RedisFanout(url.replacen(
                    "redis-fanout://",
                    "redis://",
                    1,
                ))),
                "nsq" => Ok(Self::Nsq(url.to_string())),
                "kafka" => Ok(Self::Kafka(url.to_string())),
                _ => Err(BrokerError::Config(format!(
                    "unknown broker URL scheme {scheme:?}: expected memory://, redis://, \
                     redis-fanout://, redis-streams://, amqp://, kafka://, nsq:// or nats://"
                ))),
            };
        }
        match logger_module {
            "default" | "" => Ok(Self::None),
            "memory" => Ok(Self::Memory),
            "redis-streams" => Ok(Self::RedisStreams(defaults.redis_url.clone())),
            "redis" => Ok(Self::RedisPubSub(defaults.redis_url.clone())),
            "rabbit" => Ok(Self::Rabbit(defaults.amqp_url.clone())),
            "nats" => Ok(Self::Nats(defaults.nats_url.clone())),
            "redis-fanout" => Ok(Self::RedisFanout(defaults.redis_url.clone())),
            "nsq" => Ok(Self::Nsq(defaults.nsq_url.clone())),
            "kafka" => Ok(Self::Kafka(defaults.kafka_url.clone())),
            other => Err(BrokerError::Config(format!(
                "unknown LOGGER_MODULE {other:?}: expected default, memory, redis, \
                 redis-fanout, redis-streams, rabbit, kafka, nsq or nats"
            ))),
        }
    }
}

/// How to open a broker.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// How long a message held by a consumer that died waits before another consumer
    /// takes it, on brokers that cannot tell at once (Redis Streams, NATS JetStream).
    pub claim_after: std::time::Duration,
    /// Redis fan-out: run the fan-out middleware in this process (`simulate`).
    pub embedded_fanout: bool,
    /// Kafka: partitions of the topics created (KAFKA_PARTITIONS).
    pub kafka_partitions: i32,
    /// Kafka: one message per record batch (see [`KafkaOptions`]).
    pub kafka_single_message_batches: bool,
}

/// Opens the chosen broker; `None` when records are only printed.
pub async fn connect(
    choice: &BrokerChoice,
    options: ConnectOptions,
) -> Result<Option<Arc<dyn Broker>>, BrokerError> {
    let claim_after = options.claim_after;
    Ok(match choice {
        BrokerChoice::None => None,
        BrokerChoice::Memory => Some(Arc::new(MemoryBroker::new())),
        BrokerChoice::RedisPubSub(url) => Some(Arc::new(RedisPubSubBroker::connect(url).await?)),
        BrokerChoice::RedisStreams(url) => Some(Arc::new(
            RedisStreamsBroker::connect_with(url, claim_after).await?,
        )),
        BrokerChoice::Rabbit(url) => Some(Arc::new(RabbitBroker::connect(url).await?)),
        BrokerChoice::Nats(url) => {
            let options = NatsOptions {
                ack_wait: claim_after,
                ..NatsOptions::default()
            };
            Some(Arc::new(NatsBroker::connect_with(url, options).await?))
        }
        BrokerChoice::RedisFanout(url) => Some(Arc::new(
            RedisFanoutBroker::connect(url, options.embedded_fanout).await?,
        )),
        BrokerChoice::Kafka(url) => {
            let options = KafkaOptions {
                partitions: options.kafka_partitions,
                single_message_batches: options.kafka_single_message_batches,
                ..KafkaOptions::default()
            };
            Some(Arc::new(KafkaBroker::connect(url, options).await?))
        }
        BrokerChoice::Nsq(url) => Some(Arc::new(
            NsqBroker::connect_with(
                url,
                NsqOptions {
                    msg_timeout: claim_after,
                    ..NsqOptions::default()
                },
            )
            .await?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_choice_from_url_and_module() {
        let redis = &BrokerDefaults {
            redis_url: "redis://h:1/2".into(),
            amqp_url: "amqp://guest:guest@h:5672/%2f".into(),
            nats_url: "nats://h:4222".into(),
            nsq_url: "nsq://h:4150".into(),
            kafka_url: "kafka://h:9092".into(),
        };
        assert_eq!(
            BrokerChoice::parse(Some("memory://"), "default", redis).unwrap(),
            BrokerChoice::Memory
        );
        assert_eq!(
            BrokerChoice::parse(None, "default", redis).unwrap(),
            BrokerChoice::None
        );
        assert_eq!(
            BrokerChoice::parse(None, "memory", redis).unwrap(),
            BrokerChoice::Memory
        );
        assert_eq!(
            BrokerChoice::parse(Some("redis-streams://:pw@x:7/3"), "default", redis).unwrap(),
            BrokerChoice::RedisStreams("redis://:pw@x:7/3".into())
        );
        assert_eq!(
            BrokerChoice::parse(None, "redis-streams", redis).unwrap(),
            BrokerChoice::RedisStreams("redis://h:1/2".into())
        );
        assert_eq!(
            BrokerChoice::parse(Some("nats://n:4222"), "default", redis).unwrap(),
            BrokerChoice::Nats("nats://n:4222".into())
        );
        assert_eq!(
            BrokerChoice::parse(None, "nats", redis).unwrap(),
            BrokerChoice::Nats("nats://h:4222".into())
        );
        assert_eq!(
            BrokerChoice::parse(None, "rabbit", redis).unwrap(),
            BrokerChoice::Rabbit("amqp://guest:guest@h:5672/%2f".into())
        );
        assert_eq!(
            BrokerChoice::parse(None, "nsq", redis).unwrap(),
            BrokerChoice::Nsq("nsq://h:4150".into())
        );
        assert_eq!(
            BrokerChoice::parse(Some("nsq://q:1"), "default", redis).unwrap(),
            BrokerChoice::Nsq("nsq://q:1".into())
        );
        assert_eq!(
            BrokerChoice::parse(None, "kafka", redis).unwrap(),
            BrokerChoice::Kafka("kafka://h:9092".into())
        );
        let err = BrokerChoice::parse(Some("bogus://x"), "default", redis).unwrap_err();
        assert!(err.to_string().contains("unknown broker URL scheme"));
        let err = BrokerChoice::parse(None, "carrier-pigeon", redis).unwrap_err();
        assert!(err.to_string().contains("LOGGER_MODULE"));
    }
}
