//! Message brokers: what the logging transport publishes to and the workers consume
//! from.
//!
//! A broker hands out [`Publisher`]s and [`Consumer`]s. A consumer belongs to a group:
//! on a work-sharing broker each message goes to one consumer of each group, and a
//! message that was delivered but not acknowledged goes back to the group when the
//! consumer nacks it or goes away. Every broker keeps its own delivery model;
//! [`Semantics`] says which, so tests and the evaluation know what to expect.
//!
//! Each backend is one folder ([`memory`], [`redis`] with pub/sub, fan-out and
//! Streams, [`rabbitmq`], [`nats`], [`kafka`], [`nsq`]) and one entry of the
//! [`registry`], which maps URL schemes and LOGGER_MODULE names to it. [`bridge`]
//! forwards one broker's messages into another. `tests/broker_contract.rs` is the
//! suite every backend passes. Nothing here knows the game: names of queues and
//! groups come from the callers.

mod fetched;

pub mod bridge;
pub mod kafka;
pub mod memory;
pub mod nats;
pub mod nsq;
pub mod rabbitmq;
pub mod redis;
pub mod registry;
pub mod tuning;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use self::kafka::{KafkaBroker, KafkaOptions};
pub use self::memory::MemoryBroker;
pub use self::nats::{NatsBroker, NatsOptions};
pub use self::nsq::{NsqBroker, NsqOptions};
pub use self::rabbitmq::{RabbitBroker, RabbitOptions};
pub use self::redis::fanout::{Fanout, FanoutOptions, FanoutStats, RedisFanoutBroker};
pub use self::redis::pubsub::RedisPubSubBroker;
pub use self::redis::streams::{RedisStreamsBroker, StreamsOptions};
pub use self::registry::{Backend, BrokerSpec, Variables};
pub use self::tuning::{Acks, Flow, FlowSettings, Tuning};

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
    /// A message given back cannot be delivered again: it is lost (Redis pub/sub).
    #[error("{0}")]
    Lost(String),
    /// The broker URL or setting is not usable.
    #[error("{0}")]
    Config(String),
}

/// Turns a client error of the broker called `broker` into [`BrokerError::Unavailable`],
/// for `map_err`.
pub(crate) fn unavailable<E: fmt::Display>(broker: &'static str) -> impl Fn(E) -> BrokerError {
    move |e| BrokerError::Unavailable(format!("{broker}: {e}"))
}

/// How a broker delivers: the delivery models of the backends, as the contract suite
/// and the evaluation check them. Each model fixes what it promises, so no
/// combination contradicts itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// Every consumer gets every message; nothing is kept for later consumers,
    /// acknowledged or redelivered (Redis pub/sub).
    Broadcast,
    /// Each message goes to one live consumer of each group; nothing is kept,
    /// acknowledged or redelivered (Redis fan-out).
    Dispatch,
    /// A queue per group: each message to one consumer of the group, held until
    /// acknowledged, redelivered (and marked so) after a nack or when its consumer
    /// goes away. `retains_unconsumed`: messages published before the group existed
    /// wait for it (else they go nowhere).
    Queue { retains_unconsumed: bool },
    /// A partitioned log with a committed offset per partition (Kafka): kept,
    /// shared by partition, read again from the committed offset when a member goes,
    /// without saying that it was read before.
    Log,
}

impl Semantics {
    /// Each message goes to one consumer of a group (else: to every consumer).
    pub fn work_sharing(self) -> bool {
        !matches!(self, Self::Broadcast)
    }

    /// Unacknowledged messages come back when their consumer nacks or goes away.
    pub fn redelivery(self) -> bool {
        matches!(self, Self::Queue { .. } | Self::Log)
    }

    /// Messages published while no consumer exists are kept for later ones.
    pub fn retains_unconsumed(self) -> bool {
        match self {
            Self::Queue { retains_unconsumed } => retains_unconsumed,
            Self::Log => true,
            Self::Broadcast | Self::Dispatch => false,
        }
    }

    /// A message delivered again says so ([`Delivery::redelivered`]).
    pub fn marks_redelivery(self) -> bool {
        matches!(self, Self::Queue { .. })
    }
}

/// A message broker.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Short name, also the `<LOGGER_MODULE>` part of event names (`memory`, `redis`, ...).
    fn kind(&self) -> &'static str;

    /// The broker's delivery model.
    fn semantics(&self) -> Semantics;

    /// The topic, channel or queue a queue's records go to on this broker (and the
    /// workers' default WORKER_CHANNEL for `lib.server.lobby`).
    fn topic_for(&self, queue: &str) -> String {
        queue.to_string()
    }

    /// A publisher; cheap to share between tasks.
    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError>;

    /// Makes `topic` exist, and for each of `groups` the place that keeps the group's
    /// messages until a consumer takes them, where the broker has such places (a
    /// queue, a channel, a consumer group on a stream). From then on a consumer of
    /// one of `groups` that joins later, ours or another program's, finds what was
    /// published since. Publishers call it before their first message. Harmless to
    /// repeat; a no-op where the broker keeps nothing for absent consumers.
    async fn declare(&self, _topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Removes `topic` with every message it holds, and what [`Self::declare`] or a
    /// consumer made for each of `groups` where that would outlive the topic (a
    /// queue, a consumer group's offsets, a registry), so that scratch topics (a bench
    /// run's, a test's) do not pile up on a broker that stays up. Call it once the
    /// topic's consumers are gone. Harmless when they are gone already; a no-op where
    /// the broker keeps nothing.
    async fn delete(&self, _topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        Ok(())
    }

    /// A consumer of `topic` in `group`, subscribed before this returns: messages
    /// published afterwards reach the group.
    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError>;

    /// A consumer that sees every message of `topic` published from now on, as a group
    /// of its own ([`OBSERVER_GROUP`]), for watching a pipeline without taking part:
    /// it leaves nothing behind that would pile up once it is gone, and is not shown
    /// what was published while no observer watched.
    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        self.consumer(topic, OBSERVER_GROUP).await
    }

    /// The server's name and version as it tells them (`Redis 7.0.15`, `NATS
    /// 2.10.24`...); none where its protocol does not say, or it cannot be asked.
    async fn version(&self) -> Option<String> {
        None
    }

    /// The prefetch and publisher acknowledgement it runs with, in its own terms
    /// ([`Flow`] is what was asked; this is what the broker made of it).
    fn flow(&self) -> FlowSettings;

    /// What the broker says about `group`'s share of `topic` (messages waiting,
    /// unacknowledged, subscribers...), in its own terms; empty where it tells nothing.
    async fn stats(&self, _topic: &str, _group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        Ok(Vec::new())
    }

    /// The figure of [`Self::stats`] that counts the messages waiting for the group,
    /// not delivered yet (its lag; on Kafka, those past its committed offsets); none
    /// where the broker keeps nothing for a group.
    fn lag_figure(&self) -> Option<&'static str> {
        None
    }

    /// Asks the broker something it must answer over the network (one round trip,
    /// no message): an error when it cannot be reached now.
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// [`Broker::stats`] within `wait`: a broker that does not answer in time is as
/// unavailable as one that refuses, and its figures are not to be shown.
pub async fn stats_within(
    broker: &dyn Broker,
    topic: &str,
    group: &str,
    wait: std::time::Duration,
) -> Result<Vec<BrokerStat>, BrokerError> {
    tokio::time::timeout(wait, broker.stats(topic, group))
        .await
        .map_err(|_| BrokerError::Unavailable(format!("no figures within {wait:?}")))?
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
    /// The figure `name` with `value`.
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

    /// Publishes `payloads` in order, the one at `i` with key `keys[i]`: a broker that
    /// spreads a topic over partitions (Kafka) puts every message of a key in the same
    /// partition, so that a key's messages keep their order. Elsewhere a topic has
    /// one order for all and the keys change nothing.
    async fn publish_keyed(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        _keys: &[Vec<u8>],
    ) -> Result<(), BrokerError> {
        self.publish(topic, payloads).await
    }
}

/// A publisher shared by every handle a broker gives out (one connection, one
/// confirm channel...).
#[async_trait]
impl<P: Publisher + ?Sized> Publisher for Arc<P> {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        (**self).publish(topic, payloads).await
    }

    async fn publish_keyed(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        keys: &[Vec<u8>],
    ) -> Result<(), BrokerError> {
        (**self).publish_keyed(topic, payloads, keys).await
    }
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

    /// Messages lost because this consumer did not keep up with a broker that does
    /// not wait (Redis pub/sub), counted since it was made.
    fn overflowed(&self) -> u64 {
        0
    }
}

/// Settles one delivery with the broker.
#[async_trait]
pub trait Settle: AsAny + Sync {
    /// Tells the broker the message is done with.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Gives the message back to the group for redelivery.
    async fn nack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Tells the broker this message and those of `more` it can take with it are
    /// done with, in as few exchanges as the broker allows, and never settles a
    /// message that is not among them; returns the settles it left untouched (another
    /// consumer's, another broker's). The default acknowledges all of them, all at
    /// once (pipelined where they share a connection). On error, some may have been
    /// acknowledged; the others come back as unacknowledged messages do.
    async fn ack_with(
        self: Box<Self>,
        more: Vec<Box<dyn Settle>>,
    ) -> (Result<(), BrokerError>, Vec<Box<dyn Settle>>) {
        let all = std::iter::once(self.ack()).chain(more.into_iter().map(|s| s.ack()));
        let results = futures_util::future::join_all(all).await;
        (results.into_iter().collect(), Vec::new())
    }
}

/// Lets a backend find its own settles among those handed to [`Settle::ack_with`].
pub trait AsAny: Send {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Any + Send> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Splits `settles` into those of type `T` for which `same` holds, and the others.
pub(crate) fn split_own<T: Settle + 'static>(
    settles: Vec<Box<dyn Settle>>,
    same: impl Fn(&T) -> bool,
) -> (Vec<T>, Vec<Box<dyn Settle>>) {
    let (mut own, mut others) = (Vec::new(), Vec::new());
    for settle in settles {
        // Through the trait object: `settle.as_any()` would be the box's own.
        if (*settle).as_any().downcast_ref::<T>().is_some_and(&same) {
            // Always a T, as just checked.
            if let Ok(mine) = settle.into_any().downcast::<T>() {
                own.push(*mine);
            }
        } else {
            others.push(settle);
        }
    }
    (own, others)
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
    /// A delivery that `settle` acknowledges or gives back.
    pub fn new(payload: Vec<u8>, redelivered: bool, settle: Box<dyn Settle>) -> Self {
        Self {
            payload,
            redelivered,
            settle,
        }
    }

    /// Acknowledges the message: the broker will not deliver it again.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle.ack().await
    }

    /// Gives the message back for redelivery, where the broker redelivers.
    pub async fn nack(self) -> Result<(), BrokerError> {
        self.settle.nack().await
    }

    /// Acknowledges every one of `deliveries` in as few exchanges as their broker
    /// allows (one XACK, one `basic.ack` with `multiple`, pipelined JetStream acks,
    /// one write of FINs...); the first error, if any. Nothing else is acknowledged.
    pub async fn ack_all(deliveries: Vec<Delivery>) -> Result<(), BrokerError> {
        let mut left: Vec<Box<dyn Settle>> = deliveries.into_iter().map(|d| d.settle).collect();
        let mut result = Ok(());
        // Each round, the first one left settles those of its kind it can take.
        while !left.is_empty() {
            let mut settles = left.into_iter();
            let Some(first) = settles.next() else { break };
            let (done, untouched) = first.ack_with(settles.collect()).await;
            result = result.and(done);
            left = untouched;
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_models_agree_with_themselves() {
        let all = [
            Semantics::Broadcast,
            Semantics::Dispatch,
            Semantics::Queue {
                retains_unconsumed: false,
            },
            Semantics::Queue {
                retains_unconsumed: true,
            },
            Semantics::Log,
        ];
        for s in all {
            // Only what can come again can be marked as coming again.
            assert!(!s.marks_redelivery() || s.redelivery(), "{s:?}");
            // What is redelivered is held per group, so it is shared within one.
            assert!(!s.redelivery() || s.work_sharing(), "{s:?}");
        }
        assert!(!Semantics::Broadcast.work_sharing());
        assert!(Semantics::Dispatch.work_sharing() && !Semantics::Dispatch.redelivery());
        assert!(Semantics::Log.redelivery() && !Semantics::Log.marks_redelivery());
    }
}
