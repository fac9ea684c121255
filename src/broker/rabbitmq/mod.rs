//! RabbitMQ (`amqp://user:pass@host:port/vhost`).
//!
//! A topic is a durable fanout exchange; a group is a durable queue bound to it. One
//! group, the workers' ([`RabbitOptions::topic_named_group`]), gets the queue named
//! after the topic itself, `task_lib.server.lobby`, declared exactly as the original's
//! worker declares it (durable, no arguments), so that either side may declare it
//! first, and a publisher of the original (default exchange, routing key
//! `task_lib.server.lobby`) reaches it too; other groups get `<topic>.<group>`.
//! [`Broker::declare`] (the server, at start) makes the exchange and binds the
//! workers' queue to it, whoever declared that queue; consumers declare and bind
//! their own. What is published to an exchange no queue is bound to goes nowhere
//! (records no one consumes, such as attacks, do not pile up); a bound queue keeps
//! its messages for its group however long the group is away. No queue has a length
//! limit (`x-max-length` would drop the oldest messages without telling anyone):
//! RabbitMQ's memory and disk alarms hold publishers back instead.
//!
//! Publishing waits for the broker's confirms. Each consumer has its own channel with
//! a prefetch of [`PREFETCH`]: enough for a worker's writes in flight and batches
//! (the original's prefetch of 1 would allow one game at a time). Unacknowledged
//! messages go back to the queue when their channel closes; nack requeues.

mod version;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, watch};

use super::fetched::{FEED, FetchedConsumer};
use super::{Acks, FlowSettings, Tuning};
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, OBSERVER_GROUP, Publisher, Semantics,
    Settle, split_own,
};
use crate::backoff::{self, Backoff};
use crate::url::redact;

const NAME: &str = "RabbitMQ";

/// Unacknowledged messages one consumer may hold, unless the tuning's prefetch says.
pub const PREFETCH: u16 = 1024;
/// How long one attempt to subscribe again may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ack or nack may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a consumer checks its connection's status besides listening to its
/// events.
const STATUS_CHECK: Duration = Duration::from_secs(1);
/// How long an observer's queue outlives its observer.
const OBSERVER_EXPIRY: Duration = Duration::from_secs(60);
/// Opens RabbitMQ at `amqp://…` (its registry entry).
pub(super) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    let options = RabbitOptions {
        expiry: None,
        topic_named_group: tuning.topic_named_group,
        prefetch: tuning
            .flow
            .prefetch
            .map_or(PREFETCH, |n| n.clamp(1, u16::MAX as usize) as u16),
        confirms: tuning.flow.acks != Acks::None,
    };
    async move { Ok(Arc::new(RabbitBroker::connect(&url, options).await?) as Arc<dyn Broker>) }
        .boxed()
}

/// How queues are named and kept, and how far consumers and publishers run ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RabbitOptions {
    /// Queues go when unused this long (`x-expires`; for tests and throwaway topics);
    /// None: workers' queues stay.
    pub expiry: Option<Duration>,
    /// The group whose queue takes its topic's own name (the workers', so that the
    /// original's publisher reaches it).
    pub topic_named_group: Option<String>,
    /// Unacknowledged messages one consumer may hold (`basic.qos`).
    pub prefetch: u16,
    /// Publishers wait for the broker's confirms; without, a message counts as
    /// published once written to the socket.
    pub confirms: bool,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            expiry: None,
            topic_named_group: None,
            prefetch: PREFETCH,
            confirms: true,
        }
    }
}

/// RabbitMQ: an exchange per topic, a queue per group.
pub struct RabbitBroker {
    url: String,
    publisher: Arc<RabbitPublisher>,
    options: RabbitOptions,
    /// The connection [`Broker::stats`] reads through, kept between readings.
    stats_conn: Mutex<Option<Connection>>,
}

fn unavailable(e: lapin::Error) -> BrokerError {
    super::unavailable(NAME)(e)
}

async fn open_channel(url: &str) -> Result<(Connection, Channel), BrokerError> {
    let connecting = Connection::connect(url, ConnectionProperties::default());
    let conn = tokio::time::timeout(OPEN_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            BrokerError::Unavailable(format!(
                "{} did not answer within {OPEN_TIMEOUT:?}",
                redact(url)
            ))
        })?
        .map_err(|e| BrokerError::Unavailable(format!("cannot reach {}: {e}", redact(url))))?;
    let channel = conn.create_channel().await.map_err(unavailable)?;
    Ok((conn, channel))
}

impl RabbitOptions {
    fn queue_name(&self, topic: &str, group: &str) -> String {
        if self.topic_named_group.as_deref() == Some(group) {
            topic.to_string()
        } else {
            format!("{topic}.{group}")
        }
    }

    /// The `x-expires` of a group's queue: none for the workers' queue, which must
    /// match the original's declaration.
    fn queue_expiry(&self, group: &str) -> Option<Duration> {
        if self.topic_named_group.as_deref() == Some(group) {
            None
        } else {
            self.expiry
        }
    }
}

/// Declares a topic's exchange.
async fn declare_exchange(channel: &Channel, topic: &str) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            topic.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

/// Declares the topic's exchange and the group's queue, bound to it; `expiry`: the
/// queue goes when unused that long (`x-expires`); None: a durable queue with no
/// arguments, as the original declares its workers' queue.
async fn declare(
    channel: &Channel,
    topic: &str,
    queue: &str,
    expiry: Option<Duration>,
) -> Result<(), BrokerError> {
    declare_exchange(channel, topic).await?;
    let mut args = FieldTable::default();
    if let Some(expiry) = expiry {
        let ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    }
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(|e| match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp)
                if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) =>
            {
                BrokerError::Config(format!(
                    "RabbitMQ queue {queue} exists with other arguments ({e}); delete it \
                     (rabbitmqctl delete_queue {queue}) to let superhero declare it \
                     as a durable queue with no arguments"
                ))
            }
            _ => unavailable(e),
        })?;
    channel
        .queue_bind(
            queue.into(),
            topic.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

impl RabbitBroker {
    /// Connects to `amqp://…`; fails at once if RabbitMQ cannot be reached.
    pub async fn connect(url: &str, options: RabbitOptions) -> Result<Self, BrokerError> {
        let publisher = RabbitPublisher {
            url: url.to_string(),
            confirms: options.confirms,
            state: Mutex::new(None),
        };
        publisher.channel().await?;
        Ok(Self {
            url: url.to_string(),
            publisher: Arc::new(publisher),
            options,
            stats_conn: Mutex::new(None),
        })
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    fn kind(&self) -> &'static str {
        "rabbit"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Queue {
            retains_unconsumed: false,
        }
    }

    fn topic_for(&self, queue: &str) -> String {
        format!("task_{queue}")
    }

    async fn version(&self) -> Option<String> {
        version::server_version(&self.url).await
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: format!(
                "{} unacknowledged per consumer channel (basic.qos)",
                self.options.prefetch
            ),
            acks: if self.options.confirms {
                "publisher confirms of persistent messages".into()
            } else {
                "none: persistent messages, no publisher confirms".into()
            },
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.publisher.clone()))
    }

    async fn declare(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        let (conn, channel) = open_channel(&self.url).await?;
        let declared = async {
            declare_exchange(&channel, topic).await?;
            for group in groups {
                let queue = self.options.queue_name(topic, group);
                declare(&channel, topic, &queue, self.options.queue_expiry(group)).await?;
            }
            Ok(())
        }
        .await;
        let _ = conn.close(200, "declared".into()).await;
        declared
    }

    async fn delete(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        // RabbitMQ deletes what does not exist without complaint.
        let (conn, channel) = open_channel(&self.url).await?;
        let deleted = async {
            for group in groups {
                let queue = self.options.queue_name(topic, group);
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(unavailable)?;
            }
            channel
                .exchange_delete(topic.into(), ExchangeDeleteOptions::default())
                .await
                .map_err(unavailable)
        }
        .await;
        let _ = conn.close(200, "deleted".into()).await;
        deleted
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let queue = self.options.queue_name(topic, group);
        self.subscribe(topic, queue, self.options.queue_expiry(group))
            .await
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // The observer's queue goes soon after its observer, so nothing piles up in it.
        let expiry = self
            .options
            .expiry
            .unwrap_or(OBSERVER_EXPIRY)
            .min(OBSERVER_EXPIRY);
        // A queue of its own: one left by an earlier observer holds what was published
        // while no one watched.
        let group = format!("{OBSERVER_GROUP}.{}", uuid::Uuid::new_v4().simple());
        let queue = self.options.queue_name(topic, &group);
        self.subscribe(topic, queue, Some(expiry)).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        // Opening a channel is a round trip (channel.open, channel.open-ok).
        let channel = self.reading_channel().await?;
        let _ = channel.close(200, "ping".into()).await;
        Ok(())
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("messages ready")
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        // A passive declare of a missing queue closes its channel: a channel of its
        // own each time.
        let channel = self.reading_channel().await?;
        let queue = self.options.queue_name(topic, group);
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if channel.status().connected() {
            let _ = channel.close(200, "stats read".into()).await;
        }
        Ok(match declared {
            Ok(q) => vec![
                BrokerStat::new("messages ready", u64::from(q.message_count())),
                BrokerStat::new("consumers", u64::from(q.consumer_count())),
            ],
            // No such queue (yet): nothing waits for the group.
            Err(_) => Vec::new(),
        })
    }
}

impl RabbitBroker {
    /// A new channel on the connection kept for readings (stats, pings), opened
    /// again when it was lost.
    async fn reading_channel(&self) -> Result<Channel, BrokerError> {
        let mut kept = self.stats_conn.lock().await;
        match kept.as_ref().filter(|c| c.status().connected()) {
            Some(conn) => conn.create_channel().await.map_err(unavailable),
            None => {
                let (conn, channel) = open_channel(&self.url).await?;
                *kept = Some(conn);
                Ok(channel)
            }
        }
    }

    async fn subscribe(
        &self,
        topic: &str,
        queue: String,
        expiry: Option<Duration>,
    ) -> Result<Box<dyn Consumer>, BrokerError> {
        let target = Subscription {
            url: self.url.clone(),
            topic: topic.to_string(),
            queue,
            expiry,
            prefetch: self.options.prefetch,
        };
        // The first subscription fails fast; later ones are retried for ever.
        let mut live = target.open().await?;
        let current = Arc::new(std::sync::Mutex::new(Some(live.conn.clone())));
        let held = current.clone();
        let consumer = FetchedConsumer::spawn(FEED, |tx| async move {
            loop {
                while let Some(item) = live.next().await {
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() {
                        return;
                    }
                    if failed {
                        break;
                    }
                }
                // The connection is gone; its unacknowledged messages go back to the
                // queue, and this consumer subscribes again.
                tracing::warn!(
                    "RabbitMQ: lost the consumer of {}; reconnecting",
                    target.queue
                );
                let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
                live = backoff::until_ok("RabbitMQ: subscribing again", backoff, || async {
                    match tokio::time::timeout(OPEN_TIMEOUT, target.open()).await {
                        Ok(opened) => opened,
                        Err(_) => Err(BrokerError::Unavailable(format!(
                            "subscribing to {} took over {OPEN_TIMEOUT:?}",
                            target.queue
                        ))),
                    }
                })
                .await;
                if let Ok(mut c) = held.lock() {
                    *c = Some(live.conn.clone());
                }
            }
        });
        // Closing the connection gives every unacknowledged message back to the queue.
        Ok(Box::new(consumer.on_drop(async move {
            let conn = current.lock().ok().and_then(|mut c| c.take());
            if let Some(conn) = conn {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    conn.close(200, "consumer dropped".into()),
                )
                .await;
            }
        })))
    }
}

/// Where a consumer subscribes.
struct Subscription {
    url: String,
    topic: String,
    queue: String,
    expiry: Option<Duration>,
    prefetch: u16,
}

impl Subscription {
    /// Connects, declares the exchange and queue, and starts consuming.
    async fn open(&self) -> Result<Live, BrokerError> {
        let (conn, channel) = open_channel(&self.url).await?;
        let conn = Arc::new(conn);
        let lost = watch_connection(conn.clone());
        declare(&channel, &self.topic, &self.queue, self.expiry).await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let stream = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(Live {
            conn,
            stream,
            lost,
            unsettled: Arc::default(),
        })
    }
}

/// A subscription's connection and its deliveries.
struct Live {
    conn: Arc<Connection>,
    stream: lapin::Consumer,
    /// Turns true once the connection is known to be lost (see [`watch_connection`]).
    lost: watch::Receiver<bool>,
    /// The delivery tags of the channel not settled yet.
    unsettled: Unsettled,
}

/// The delivery tags of one channel not settled yet, so that one `basic.ack` with
/// `multiple` is sent only where it covers nothing but the messages to acknowledge.
type Unsettled = Arc<std::sync::Mutex<BTreeSet<u64>>>;

impl Live {
    /// The next delivery, or an error once the connection has failed (even when the
    /// delivery stream itself is not told); `None` once the subscription has ended.
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        let lost = self.lost.clone();
        let conn = self.conn.clone();
        let unsettled = self.unsettled.clone();
        tokio::select! {
            next = self.stream.next() => next.map(|d| match d {
                Ok(d) => {
                    if let Ok(mut tags) = unsettled.lock() {
                        tags.insert(d.delivery_tag);
                    }
                    Ok(Delivery::new(
                        d.data,
                        d.redelivered,
                        Box::new(RabbitSettle {
                            acker: d.acker,
                            tag: d.delivery_tag,
                            unsettled,
                            conn,
                            lost,
                        }),
                    ))
                }
                Err(e) => Err(unavailable(e)),
            }),
            _ = self.lost.wait_for(|l| *l) => Some(Err(BrokerError::Unavailable(
                "RabbitMQ: the connection was lost".into(),
            ))),
        }
    }
}

/// Tells, through the returned flag, when `conn` fails: on its error events, and by
/// checking its status every [`STATUS_CHECK`]. Runs until nobody watches the flag.
fn watch_connection(conn: Arc<Connection>) -> watch::Receiver<bool> {
    let (lost, watching) = watch::channel(false);
    let mut events = Box::pin(conn.events_listener());
    tokio::spawn(async move {
        let mut check = tokio::time::interval(STATUS_CHECK);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(lapin::Event::Error(_)) | None => break,
                    Some(_) => {}
                },
                _ = check.tick() => {
                    let status = conn.status();
                    if status.errored() || status.closed() {
                        break;
                    }
                }
                _ = lost.closed() => return,
            }
        }
        lost.send_replace(true);
    });
    watching
}

/// One channel, confirming unless told not to, reopened after a failure.
struct RabbitPublisher {
    url: String,
    confirms: bool,
    state: Mutex<Option<(Connection, Channel, Vec<String>)>>,
}

impl RabbitPublisher {
    async fn channel(&self) -> Result<(), BrokerError> {
        let mut state = self.state.lock().await;
        if state
            .as_ref()
            .is_some_and(|(c, ch, _)| c.status().connected() && ch.status().connected())
        {
            return Ok(());
        }
        let (conn, channel) = open_channel(&self.url).await?;
        if self.confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
        }
        *state = Some((conn, channel, Vec::new()));
        Ok(())
    }
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        self.channel().await?;
        let mut state = self.state.lock().await;
        let Some((_, channel, declared)) = state.as_mut() else {
            return Err(BrokerError::Unavailable("RabbitMQ: no channel".into()));
        };
        if !declared.iter().any(|t| t == topic) {
            declare_exchange(channel, topic).await?;
            declared.push(topic.to_string());
        }
        let mut confirms = Vec::with_capacity(payloads.len());
        for p in payloads {
            let sent = channel
                .basic_publish(
                    topic.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    p,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    // Start afresh next time.
                    *state = None;
                    return Err(unavailable(e));
                }
            }
        }
        // The channel is free for the next call while this one's confirms come back;
        // a channel that broke meanwhile is opened afresh by the next call, which
        // finds it no longer connected.
        drop(state);
        for c in confirms {
            let confirmation = c.await.map_err(unavailable)?;
            if confirmation.is_nack() {
                return Err(BrokerError::Unavailable(
                    "RabbitMQ refused a message (nack)".into(),
                ));
            }
        }
        Ok(())
    }
}

struct RabbitSettle {
    acker: lapin::Acker,
    tag: u64,
    unsettled: Unsettled,
    /// The connection the delivery came on: once it is closing, the broker gives
    /// the message back to the queue, and lapin would report a settle sent there as
    /// done.
    conn: Arc<Connection>,
    lost: watch::Receiver<bool>,
}

impl RabbitSettle {
    fn held(&self) -> Result<(), BrokerError> {
        if self.conn.status().connected() {
            Ok(())
        } else {
            Err(BrokerError::Stale)
        }
    }

    /// Counts the message as settled on its channel.
    fn forget(&self) {
        if let Ok(mut tags) = self.unsettled.lock() {
            tags.remove(&self.tag);
        }
    }
}

/// Of `tags` (sorted) to acknowledge on a channel whose unsettled tags are
/// `unsettled`, the highest one that a `multiple` acknowledgement may carry: every
/// unsettled tag up to it is among `tags`. `None` when the lowest unsettled tag is not.
fn covered_up_to(tags: &[u64], unsettled: &BTreeSet<u64>) -> Option<u64> {
    let mut top = None;
    for (want, held) in tags.iter().zip(unsettled) {
        if want != held {
            break;
        }
        top = Some(*want);
    }
    top
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.held()?;
        self.forget();
        settled(self.acker.ack(BasicAckOptions::default()), self.lost).await
    }

    /// One `basic.ack` with `multiple` for the longest run of the channel's oldest
    /// unsettled deliveries that are all among these; the others one by one (an ack
    /// has no reply, so these cost a frame each, not a round trip).
    async fn ack_with(
        self: Box<Self>,
        more: Vec<Box<dyn Settle>>,
    ) -> (Result<(), BrokerError>, Vec<Box<dyn Settle>>) {
        let (mut mine, others) = split_own(more, |s: &RabbitSettle| {
            Arc::ptr_eq(&s.unsettled, &self.unsettled)
        });
        if let Err(e) = self.held() {
            return (Err(e), others);
        }
        let unsettled = self.unsettled.clone();
        mine.push(*self);
        mine.sort_unstable_by_key(|s| s.tag);
        let top = {
            let Ok(mut held) = unsettled.lock() else {
                return (Err(BrokerError::Stale), others);
            };
            let tags: Vec<u64> = mine.iter().map(|s| s.tag).collect();
            let top = covered_up_to(&tags, &held);
            for tag in &tags {
                held.remove(tag);
            }
            top
        };
        // The last of the covered run carries `multiple`; the ones before it need
        // no frame of their own.
        let split = top.map_or(0, |top| mine.partition_point(|s| s.tag <= top));
        let single = mine.split_off(split);
        let acks = mine
            .pop()
            .map(|last| (last, true))
            .into_iter()
            .chain(single.into_iter().map(|s| (s, false)))
            .map(|(s, multiple)| {
                let options = BasicAckOptions { multiple };
                settled(async move { s.acker.ack(options).await }, s.lost)
            });
        let results = futures_util::future::join_all(acks).await;
        (results.into_iter().collect(), others)
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        self.held()?;
        self.forget();
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        settled(self.acker.nack(options), self.lost).await
    }
}

/// An ack or nack, bounded: on a connection that has failed, lapin may never answer.
/// The broker requeues what a closed channel held, so a settle that fails, times out
/// or belongs to a lost connection is stale (and fails at once once the loss is
/// known, rather than one timeout per message).
async fn settled<T>(
    settle: impl std::future::Future<Output = Result<T, lapin::Error>>,
    mut lost: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    if *lost.borrow() {
        return Err(BrokerError::Stale);
    }
    tokio::select! {
        done = tokio::time::timeout(SETTLE_TIMEOUT, settle) => match done {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(BrokerError::Stale),
        },
        _ = lost.wait_for(|l| *l) => Err(BrokerError::Stale),
    }
}
