//! NATS JetStream (`nats://host:port`).
//!
//! A topic is a subject (`lib.server.lobby`) captured by a stream named after it with
//! dots as underscores (`lib_server_lobby`), created by whoever comes first, keeping
//! at most [`STREAM_MAX`] messages. A group is a durable pull consumer
//! (`superhero_sim` for the workers) with explicit acks: the clients of one durable
//! consumer share its messages, and each durable consumer sees the whole stream, so
//! events published before the first worker started wait for it.
//!
//! Messages a consumer nacks come back at once; messages a consumer held when it went
//! away (dropped, or its process died) come back after the ack wait ([`ACK_WAIT`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use self::pulls::{PullSettings, Pulls, PullsLost};
use super::fetched::{FEED, FetchedConsumer};
use super::{Acks, FlowSettings, Tuning};
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, Publisher, Semantics, Settle, split_own,
};
use crate::url::redact;

mod pulls;

const NAME: &str = "NATS JetStream";

/// Opens NATS JetStream at `nats://…` (its registry entry).
pub(super) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    let options = NatsOptions {
        ack_wait: tuning.claim_after,
        pull_batch: tuning.flow.prefetch.unwrap_or(PULL_BATCH).max(1),
        await_publish_acks: tuning.flow.acks != Acks::None,
        ..NatsOptions::default()
    };
    async move { Ok(Arc::new(NatsBroker::connect(&url, options).await?) as Arc<dyn Broker>) }
        .boxed()
}

/// Messages a stream keeps at most.
pub const STREAM_MAX: i64 = 1_000_000;
/// How long a delivered message may stay unacknowledged before redelivery.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long the server's word on a batch of acks may take.
const ACK_REPLY_WAIT: Duration = Duration::from_secs(10);
/// Unacknowledged messages one group may have out, at least.
const MAX_ACK_PENDING: i64 = 10_000;
/// Messages one pull asks for, unless the tuning's prefetch says.
pub const PULL_BATCH: usize = 16;
/// How long the server holds one pull open, unless the options say.
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server tells a held pull that it is alive, at most.
const PULL_HEARTBEAT: Duration = Duration::from_millis(500);
/// The pause before pulling again after a pull failed.
const PULL_RETRY: Duration = Duration::from_millis(100);

/// NATS JetStream: a stream per subject, a durable pull consumer per group.
#[derive(Clone)]
pub struct NatsBroker {
    js: jetstream::Context,
    options: NatsOptions,
    streams: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Held while one call's messages are handed to the client, so that calls
    /// awaiting their acknowledgements together keep their messages in call order.
    sending: Arc<tokio::sync::Mutex<()>>,
    /// Times this broker's consumers found their pulls lost and pulled afresh.
    renewed: Arc<AtomicU64>,
    /// Changes each time the client (re)connects: the server forgot every pull then.
    connections: tokio::sync::watch::Receiver<u64>,
}

/// How streams and consumers are created.
#[derive(Clone, Copy, Debug)]
pub struct NatsOptions {
    /// Messages expire, and consumers go when inactive, after this long (tests and
    /// throwaway topics); None: they stay.
    pub expiry: Option<Duration>,
    /// How long a delivered message may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Messages one pull asks for at most (the consumer's prefetch).
    pub pull_batch: usize,
    /// Publishers wait for the stream's acknowledgement of each message.
    pub await_publish_acks: bool,
    /// How long the server holds one pull open (a pull that ends unfilled is
    /// replaced at once).
    pub pull_expires: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            expiry: None,
            ack_wait: ACK_WAIT,
            pull_batch: PULL_BATCH,
            await_publish_acks: true,
            pull_expires: PULL_EXPIRES,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    super::unavailable(NAME)(e)
}

/// The stream that captures a subject.
fn stream_name(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl NatsBroker {
    /// Connects to `nats://…`, failing if the server does not answer within 5 s.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<Self, BrokerError> {
        let (reconnected, connections) = tokio::sync::watch::channel(0u64);
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    reconnected.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            })
            .connect(url)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot reach {}: {e}", redact(url))))?;
        // retry_on_initial_connect returns at once; make sure the server answers.
        tokio::time::timeout(Duration::from_secs(5), client.flush())
            .await
            .map_err(|_| {
                BrokerError::Unavailable(format!("cannot reach {}: no answer", redact(url)))
            })?
            .map_err(unavailable)?;
        Ok(Self {
            js: jetstream::new(client),
            options,
            streams: Arc::default(),
            sending: Arc::default(),
            renewed: Arc::default(),
            connections,
        })
    }

    async fn ensure_stream(&self, subject: &str) -> Result<stream::Stream, BrokerError> {
        let config = stream::Config {
            name: stream_name(subject),
            subjects: vec![subject.to_string()],
            max_messages: STREAM_MAX,
            max_age: self.options.expiry.unwrap_or_default(),
            ..stream::Config::default()
        };
        let s = self
            .js
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
        if let Ok(mut known) = self.streams.lock() {
            known.insert(subject.to_string());
        }
        Ok(s)
    }

    fn knows(&self, subject: &str) -> bool {
        self.streams.lock().is_ok_and(|s| s.contains(subject))
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Queue {
            retains_unconsumed: true,
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.clone()))
    }

    async fn declare(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // The stream keeps every message for every durable consumer made later.
        self.ensure_stream(topic).await.map(drop)
    }

    async fn delete(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // A stream's durable consumers, the groups, go with it.
        if let Ok(mut known) = self.streams.lock() {
            known.remove(topic);
        }
        match self.js.delete_stream(stream_name(topic)).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e.kind(), jetstream::context::DeleteStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let config = pull::Config {
            durable_name: Some(group.to_string()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_ack_pending: self.max_ack_pending(),
            inactive_threshold: self.options.expiry.unwrap_or_default(),
            ..pull::Config::default()
        };
        self.subscribe(topic, config).await
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // An ephemeral consumer of new messages only, which the server removes soon
        // after its observer is gone.
        let config = pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.options.ack_wait,
            max_ack_pending: self.max_ack_pending(),
            inactive_threshold: Duration::from_secs(60),
            ..pull::Config::default()
        };
        self.subscribe(topic, config).await
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: format!(
                "{} messages per pull; at most {} unacknowledged per group (max_ack_pending)",
                self.options.pull_batch,
                self.max_ack_pending()
            ),
            acks: if self.options.await_publish_acks {
                "the stream's publish acknowledgement, awaited per batch".into()
            } else {
                "none: publish acknowledgements not awaited".into()
            },
        }
    }

    async fn version(&self) -> Option<String> {
        let info = self.js.client().server_info();
        (!info.version.is_empty()).then(|| format!("NATS {}", info.version))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        // A flush is a PING the server answers with PONG.
        self.js.client().flush().await.map_err(unavailable)
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("pending")
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        let mut stream = self.ensure_stream(topic).await?;
        let messages = stream.info().await.map_err(unavailable)?.state.messages;
        let mut stats = vec![BrokerStat::new("stream messages", messages)];
        match stream.consumer_info(group).await {
            Ok(info) => {
                stats.push(BrokerStat::new("pending", info.num_pending));
                stats.push(BrokerStat::new("ack pending", info.num_ack_pending as u64));
            }
            // No consumer of the group yet: the durable one made for it will be
            // delivered the stream from its first message.
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
                stats.push(BrokerStat::new("pending", messages));
            }
            Err(_) => {}
        }
        stats.push(BrokerStat::new(
            "pulls renewed after silence (client)",
            self.renewed.load(Ordering::Relaxed),
        ));
        Ok(stats)
    }
}

impl NatsBroker {
    /// Room for every consumer's pulls and a batch being settled, several times over.
    fn max_ack_pending(&self) -> i64 {
        MAX_ACK_PENDING.max(self.options.pull_batch as i64 * 4)
    }

    async fn subscribe(
        &self,
        topic: &str,
        config: pull::Config,
    ) -> Result<Box<dyn Consumer>, BrokerError> {
        let stream = self.ensure_stream(topic).await?;
        // Creates the durable consumer, or updates its settings (the ack wait may
        // differ from the last run's).
        let consumer = stream.create_consumer(config).await.map_err(unavailable)?;
        let settings = PullSettings {
            batch: self.options.pull_batch,
            expires: self.options.pull_expires,
            heartbeat: heartbeat(self.options.pull_expires),
        };
        let lost = PullsLost {
            reconnected: self.connections.clone(),
            renewed: self.renewed.clone(),
        };
        let mut pulls = Pulls::open(&self.js, &consumer, settings, lost).await?;
        Ok(Box::new(FetchedConsumer::spawn(FEED, |tx| async move {
            while let Some(pulled) = pulls.next().await {
                let failed = pulled.is_err();
                let item = pulled.map(|msg| {
                    let redelivered = msg.info().is_ok_and(|i| i.delivered > 1);
                    let payload = msg.payload.to_vec();
                    Delivery::new(payload, redelivered, Box::new(NatsSettle { msg }))
                });
                if tx.send(item).await.is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(PULL_RETRY).await;
                }
            }
        })))
    }
}

/// How often the server tells a held pull of `expires` that it is alive: at most
/// [`PULL_HEARTBEAT`], and at most a quarter of the expiry (the server asks for half
/// or less), but not so often that the consumer does little else.
fn heartbeat(expires: Duration) -> Duration {
    PULL_HEARTBEAT
        .min(expires / 4)
        .max(Duration::from_millis(10))
}

#[async_trait]
impl Publisher for NatsBroker {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        if !self.knows(topic) {
            self.ensure_stream(topic).await?;
        }
        let mut acks = Vec::with_capacity(payloads.len());
        let sending = self.sending.lock().await;
        for p in payloads {
            let ack = self
                .js
                .publish(topic.to_string(), p.clone().into())
                .await
                .map_err(unavailable)?;
            acks.push(ack);
        }
        drop(sending);
        if self.options.await_publish_acks {
            for ack in acks {
                ack.await.map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

struct NatsSettle {
    msg: jetstream::Message,
}

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        // Waits for the server's word that the ack was taken (a plain ack is five
        // times faster here but stalled a 100,000-message run: see the README).
        self.msg.double_ack().await.map_err(unavailable)
    }

    /// Every ack sent at once, each asking for the server's word on one inbox, then
    /// all the words awaited: one round trip for the lot instead of one each.
    async fn ack_with(
        self: Box<Self>,
        more: Vec<Box<dyn Settle>>,
    ) -> (Result<(), BrokerError>, Vec<Box<dyn Settle>>) {
        let (mine, others) = split_own(more, |_: &NatsSettle| true);
        let client = self.msg.context.client();
        let replies = std::iter::once(*self)
            .chain(mine)
            .map(|s| s.msg.message.reply)
            .collect::<Option<Vec<_>>>();
        let ours = async {
            let replies = replies.ok_or(BrokerError::Stale)?;
            let inbox = client.new_inbox();
            let mut words = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
            for reply in &replies {
                client
                    .publish_with_reply(reply.clone(), inbox.clone(), AckKind::Ack.into())
                    .await
                    .map_err(unavailable)?;
            }
            let heard = tokio::time::timeout(ACK_REPLY_WAIT, async {
                let mut heard = 0;
                while heard < replies.len() && words.next().await.is_some() {
                    heard += 1;
                }
                heard
            })
            .await
            .unwrap_or(0);
            let _ = words.unsubscribe().await;
            if heard < replies.len() {
                return Err(BrokerError::Unavailable(format!(
                    "{NAME}: {heard} of {} acks confirmed within {ACK_REPLY_WAIT:?}",
                    replies.len()
                )));
            }
            Ok(())
        };
        (ours.await, others)
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        self.msg
            .ack_with(AckKind::Nak(None))
            .await
            .map_err(unavailable)
    }
}
