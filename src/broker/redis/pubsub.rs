//! Redis pub/sub (`redis://host:port/db`), as the original used it: a queue's records
//! go to the channel `redis.<queue>` (`redis.lib.server.lobby`), and every subscriber
//! gets every message. Nothing is kept: a message published while no one listens is
//! gone, and there is nothing to acknowledge or redeliver (ack does nothing; nack
//! reports the message lost).
//! Groups do not exist either: every consumer is a subscriber of its own.
//!
//! That broadcast is what the evaluation shows: with three workers on pub/sub, every
//! game is written three times.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::Link;
use super::subscription::Subscription;
use crate::backoff::Backoff;
use crate::broker::Tuning;
use crate::broker::fetched::{FetchedConsumer, LossyFeed};
use crate::broker::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, FlowSettings, Publisher, Semantics, Settle,
};

/// Messages a subscriber holds for its consumer. Redis pushes whatever is published
/// and the client library reads it all into a buffer of its own, so a subscriber
/// cannot make Redis wait: past this many, messages are dropped and counted
/// ([`Consumer::overflowed`]).
const BUFFER: usize = 65_536;

const NAME: &str = "Redis pub/sub";

/// Opens Redis pub/sub at `redis://…` (its registry entry).
pub(crate) fn open(
    url: String,
    _tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    async move { Ok(Arc::new(RedisPubSubBroker::connect(&url).await?) as Arc<dyn Broker>) }.boxed()
}

/// Redis pub/sub: channels, every subscriber gets every message.
#[derive(Clone)]
pub struct RedisPubSubBroker {
    link: Link,
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    crate::broker::unavailable(NAME)(e)
}

impl RedisPubSubBroker {
    /// Connects to `redis://host:port/db`.
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        Ok(Self {
            link: Link::open(url).await?,
        })
    }

    pub(super) fn client(&self) -> &redis::Client {
        &self.link.client
    }

    pub(super) fn connection(&self) -> ConnectionManager {
        self.link.conn.clone()
    }
}

#[async_trait]
impl Broker for RedisPubSubBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Broadcast
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: "none: Redis pushes every message to every subscriber as published".into(),
            acks: "none: PUBLISH's reply counts the subscribers reached; nothing is stored".into(),
        }
    }

    fn topic_for(&self, queue: &str) -> String {
        format!("redis.{queue}")
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.clone()))
    }

    async fn consumer(&self, topic: &str, _group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        Ok(Box::new(subscribe(self.client(), topic).await?))
    }

    async fn version(&self) -> Option<String> {
        super::server_version(&mut self.connection()).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        super::ping(&mut self.connection(), NAME).await
    }

    async fn stats(&self, topic: &str, _group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        Ok(vec![BrokerStat::new(
            "subscribers",
            subscribers(&mut self.connection(), topic).await?,
        )])
    }
}

/// How many subscribers a channel has (PUBSUB NUMSUB).
pub(super) async fn subscribers(
    conn: &mut ConnectionManager,
    channel: &str,
) -> Result<u64, BrokerError> {
    let reply: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(match reply.get(1) {
        Some(redis::Value::Int(n)) => (*n).max(0) as u64,
        _ => 0,
    })
}

/// A subscriber of `channel`, subscribed when this returns.
pub(super) async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<FetchedConsumer, BrokerError> {
    let (subscribed_tx, subscribed) = oneshot::channel();
    let (client, channel) = (client.clone(), channel.to_string());
    let consumer = FetchedConsumer::spawn_lossy(BUFFER, |tx| {
        listen(client, channel, tx, Some(subscribed_tx))
    });
    match subscribed.await {
        Ok(Ok(())) => Ok(consumer),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BrokerError::Unavailable(
            "Redis pub/sub: the subscriber stopped".into(),
        )),
    }
}

#[async_trait]
impl Publisher for RedisPubSubBroker {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        for p in payloads {
            pipe.cmd("PUBLISH").arg(topic).arg(p.as_slice()).ignore();
        }
        pipe.query_async::<()>(&mut self.connection())
            .await
            .map_err(unavailable)
    }
}

/// Subscribes and forwards messages; resubscribes after a lost connection (what was
/// published meanwhile is lost, as pub/sub does).
async fn listen(
    client: redis::Client,
    channel: String,
    tx: LossyFeed,
    mut subscribed: Option<oneshot::Sender<Result<(), BrokerError>>>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let mut subscription =
            match Subscription::open(client.get_connection_info(), &channel).await {
                Ok(s) => s,
                Err(e) => {
                    // The first subscription fails at once; later ones are retried.
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(Err(crate::broker::unavailable(NAME)(e)));
                        return;
                    }
                    backoff.wait().await;
                    continue;
                }
            };
        backoff.reset();
        if let Some(s) = subscribed.take() {
            let _ = s.send(Ok(()));
        }
        let lost = loop {
            match subscription.next().await {
                Ok(payload) => {
                    if !tx.offer(Delivery::new(payload, false, Box::new(NoAck))) {
                        return;
                    }
                }
                Err(e) => break e,
            }
        };
        tracing::warn!("Redis pub/sub: lost the subscription to {channel} ({lost}); resubscribing");
    }
}

/// Pub/sub has nothing to settle; a nack says that the message is gone.
struct NoAck;

#[async_trait]
impl Settle for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        Err(BrokerError::Lost(
            "Redis pub/sub cannot redeliver: this message is lost".into(),
        ))
    }
}
