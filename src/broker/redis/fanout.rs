//! Redis fan-out (`redis-fanout://host:port/db`), the original's answer to pub/sub
//! duplicates: publishers publish on the plain pub/sub channel (`redis.<queue>`); a
//! fan-out middleware ([`Fanout`], `superhero fanout`) subscribes it and
//! republishes each message to ONE live worker, on that worker's own channel
//! `redis.<queue>-<worker>`. It forwards what has arrived together, up to
//! 512 messages in one pipeline of PUBLISHes.
//!
//! Workers register in the set `<channel>:fanout:<group>` (and their group in
//! `<channel>:fanout-groups`) when they subscribe, and leave when they go. The
//! middleware takes the group's workers in turn; PUBLISH
//! tells how many subscribers got a message, so a worker that died without leaving
//! is noticed at its first message, dropped from the set, and the message goes to the
//! next one. A message with no live worker is lost, counted and logged. Nothing is
//! acknowledged or redelivered: underneath it is pub/sub.
//!
//! Run exactly one middleware per channel; two would deliver every message twice.
//! `simulate` runs its own in process.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::pubsub::{RedisPubSubBroker, subscribe, subscribers};
use crate::broker::Tuning;
use crate::broker::fetched::FetchedConsumer;
use crate::broker::{
    Broker, BrokerError, BrokerStat, Consumer, FlowSettings, OBSERVER_GROUP, Publisher, Semantics,
};

const NAME: &str = "Redis fan-out";

/// Opens Redis fan-out at `redis-fanout://…` (its registry entry); a process that
/// runs the whole pipeline runs the middleware too.
pub(crate) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    let options = FanoutOptions {
        run_middleware: tuning.in_process,
    };
    async move { Ok(Arc::new(RedisFanoutBroker::connect(&url, options).await?) as Arc<dyn Broker>) }
        .boxed()
}

/// How a fan-out broker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutOptions {
    /// Run the middleware in this process for every topic consumed (`simulate`,
    /// tests); otherwise `superhero fanout` runs it.
    pub run_middleware: bool,
}

/// How often the middleware re-reads the groups and their workers.
const REFRESH: Duration = Duration::from_secs(1);
/// How often the middleware logs lost messages at most.
const WARN_EVERY: Duration = Duration::from_secs(5);
/// Messages the middleware takes at once at most and forwards in one pipeline.
const DISPATCH_BATCH: usize = 512;

fn unavailable(e: redis::RedisError) -> BrokerError {
    crate::broker::unavailable(NAME)(e)
}

/// The set of a group's live workers.
fn registry(channel: &str, group: &str) -> String {
    format!("{channel}:fanout:{group}")
}

/// The set of a channel's groups.
fn groups_key(channel: &str) -> String {
    format!("{channel}:fanout-groups")
}

/// Enters `worker` in its group and the group in the channel's groups.
async fn register(
    conn: &mut ConnectionManager,
    channel: &str,
    group: &str,
    worker: &str,
) -> Result<(), redis::RedisError> {
    redis::pipe()
        .sadd(groups_key(channel), group)
        .ignore()
        .sadd(registry(channel, group), worker)
        .ignore()
        .query_async(conn)
        .await
}

/// A worker's own channel.
fn worker_channel(channel: &str, worker: &str) -> String {
    format!("{channel}-{worker}")
}

/// Redis fan-out: pub/sub in, one live worker of each group per message out.
#[derive(Clone)]
pub struct RedisFanoutBroker {
    pubsub: RedisPubSubBroker,
    options: FanoutOptions,
    middlewares: Arc<Mutex<HashMap<String, Arc<FanoutTask>>>>,
}

struct FanoutTask {
    task: JoinHandle<()>,
}

impl Drop for FanoutTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisFanoutBroker {
    /// Connects to `redis-fanout://…` or `redis://…`.
    pub async fn connect(url: &str, options: FanoutOptions) -> Result<Self, BrokerError> {
        Ok(Self {
            pubsub: RedisPubSubBroker::connect(url).await?,
            options,
            middlewares: Arc::default(),
        })
    }
}

#[async_trait]
impl Broker for RedisFanoutBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Dispatch
    }

    fn topic_for(&self, queue: &str) -> String {
        self.pubsub.topic_for(queue)
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        self.pubsub.publisher().await
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        if self.options.run_middleware {
            let mut running = self.middlewares.lock().await;
            if !running.contains_key(topic) {
                let fanout = Fanout::start(self.pubsub.client(), topic).await?;
                let task = tokio::spawn(async move {
                    if let Err(e) = fanout.run().await {
                        tracing::error!("Redis fan-out stopped: {e}");
                    }
                });
                running.insert(topic.to_string(), Arc::new(FanoutTask { task }));
            }
        }
        let worker = uuid::Uuid::new_v4().simple().to_string();
        let consumer = subscribe(self.pubsub.client(), &worker_channel(topic, &worker)).await?;
        let mut conn = self.pubsub.connection();
        let set = registry(topic, group);
        register(&mut conn, topic, group, &worker)
            .await
            .map_err(unavailable)?;
        // The registration is renewed while the consumer lives: a Redis restarted
        // without its data, or a middleware that took this worker for dead while
        // its subscription was being restored, would otherwise never send it
        // anything again.
        let renewal = tokio::spawn({
            let (mut conn, topic, group, worker) = (
                conn.clone(),
                topic.to_string(),
                group.to_string(),
                worker.clone(),
            );
            async move {
                loop {
                    tokio::time::sleep(REFRESH).await;
                    if let Err(e) = register(&mut conn, &topic, &group, &worker).await {
                        tracing::debug!("Redis fan-out: renewing a worker's registration: {e}");
                    }
                }
            }
        });
        // Leaving the group when the consumer goes; a worker that dies without
        // leaving is dropped by the middleware at its first message.
        Ok(Box::new(consumer.on_drop(async move {
            renewal.abort();
            let _: Result<(), _> = conn.srem(&set, &worker).await;
        })))
    }

    async fn delete(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        // The channel itself keeps nothing; what stays is this process's middleware
        // and the registries, of the groups named and of those the channel lists.
        self.middlewares.lock().await.remove(topic);
        let mut conn = self.pubsub.connection();
        let listed: Vec<String> = conn
            .smembers(groups_key(topic))
            .await
            .map_err(unavailable)?;
        let mut keys: Vec<String> = groups
            .iter()
            .copied()
            .chain(listed.iter().map(String::as_str))
            .map(|group| registry(topic, group))
            .collect();
        keys.push(groups_key(topic));
        conn.del::<_, ()>(keys).await.map_err(unavailable)
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: "none: the middleware pushes each message to one worker's channel".into(),
            acks: "none: PUBLISH's reply counts the subscribers reached; nothing is stored".into(),
        }
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // Publishers publish on the pub/sub channel: listening there sees everything
        // without registering as a worker or needing a middleware per queue.
        self.pubsub.consumer(topic, OBSERVER_GROUP).await
    }

    async fn version(&self) -> Option<String> {
        super::server_version(&mut self.pubsub.connection()).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.pubsub.ping().await
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        let mut conn = self.pubsub.connection();
        let workers: u64 = conn
            .scard(registry(topic, group))
            .await
            .map_err(unavailable)?;
        Ok(vec![
            BrokerStat::new("live workers", workers),
            BrokerStat::new("channel subscribers", subscribers(&mut conn, topic).await?),
        ])
    }
}

/// What the middleware did.
#[derive(Debug, Default)]
pub struct FanoutStats {
    /// Messages handed to a live worker of a group (counted once per group).
    pub forwarded: AtomicU64,
    /// Messages no live worker of a group could take (lost, as pub/sub loses them).
    pub lost: AtomicU64,
}

/// The fan-out middleware of one channel.
pub struct Fanout {
    channel: String,
    input: FetchedConsumer,
    conn: ConnectionManager,
    pub stats: Arc<FanoutStats>,
    /// When a loss was last logged, and what was lost since.
    warned: Option<Instant>,
    unreported: u64,
}

impl Fanout {
    /// Subscribes `channel`; from then on nothing published there is missed.
    pub async fn start(client: &redis::Client, channel: &str) -> Result<Self, BrokerError> {
        let conn = crate::redis_client::connection_manager(client)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            channel: channel.to_string(),
            input: subscribe(client, channel).await?,
            conn,
            stats: Arc::default(),
            warned: None,
            unreported: 0,
        })
    }

    /// Dispatches until the subscription ends.
    pub async fn run(mut self) -> Result<(), BrokerError> {
        let mut groups = Groups::default();
        let mut overflowed = 0;
        loop {
            let batch = self.input.next_batch(DISPATCH_BATCH).await?;
            // What the subscription itself dropped, falling behind, is lost too.
            let now = self.input.overflowed();
            self.stats
                .lost
                .fetch_add(now.saturating_sub(overflowed), Ordering::Relaxed);
            overflowed = overflowed.max(now);
            groups.refresh(&mut self.conn, &self.channel).await;
            if groups.by_name.is_empty() {
                // No worker seen yet: one may have come since the last look.
                groups.read_at = None;
                groups.refresh(&mut self.conn, &self.channel).await;
            }
            if groups.by_name.is_empty() {
                self.lose(
                    batch.len(),
                    &format!("no worker listens on {}", self.channel),
                );
                continue;
            }
            let payloads: Vec<&[u8]> = batch.iter().map(|d| d.payload.as_slice()).collect();
            for (group, workers) in &mut groups.by_name {
                let mut todo = payloads.clone();
                let mut reread = false;
                while !todo.is_empty() {
                    if workers.ids.is_empty() && !reread {
                        // Every worker we knew is gone: a new one may have come since.
                        reread = true;
                        *workers = Groups::workers(&mut self.conn, &self.channel, group, 0).await;
                    }
                    if workers.ids.is_empty() {
                        let why = format!("no live worker in group {group} of {}", self.channel);
                        self.lose(todo.len(), &why);
                        break;
                    }
                    match self.dispatch(group, workers, &todo).await {
                        Ok(refused) => todo = refused,
                        Err(e) => {
                            let why = format!("publishing to the workers of group {group}: {e}");
                            self.lose(todo.len(), &why);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Counts lost messages; warns at the first loss and then at most once every
    /// [`WARN_EVERY`], with what was lost in between, so that an outage is one line
    /// every few seconds and not one per batch.
    fn lose(&mut self, messages: usize, why: &str) {
        self.stats
            .lost
            .fetch_add(messages as u64, Ordering::Relaxed);
        self.unreported += messages as u64;
        if self.warned.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let lost = std::mem::take(&mut self.unreported);
        match self.warned.replace(Instant::now()) {
            None => tracing::warn!("Redis fan-out: {why}; {lost} message(s) lost"),
            Some(t) => tracing::warn!(
                "Redis fan-out: {why}; {lost} message(s) lost in the last {:.1} s",
                t.elapsed().as_secs_f64()
            ),
        }
    }

    /// Publishes `payloads` to a group's workers in turn, in one pipeline; returns
    /// those that reached no subscriber, whose workers are forgotten (gone without
    /// leaving).
    async fn dispatch<'p>(
        &mut self,
        group: &str,
        workers: &mut Workers,
        payloads: &[&'p [u8]],
    ) -> Result<Vec<&'p [u8]>, redis::RedisError> {
        let mut pipe = redis::pipe();
        let mut sent_to = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let i = workers.next % workers.ids.len();
            workers.next = workers.next.wrapping_add(1);
            pipe.publish(worker_channel(&self.channel, &workers.ids[i]), payload);
            sent_to.push(i);
        }
        let received: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        let mut refused = Vec::new();
        let mut gone = Vec::new();
        for ((payload, i), n) in payloads.iter().zip(sent_to).zip(received) {
            if n > 0 {
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            } else {
                refused.push(*payload);
                if !gone.contains(&i) {
                    gone.push(i);
                }
            }
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            let id = workers.ids.remove(i);
            let _: Result<(), _> = self.conn.srem(registry(&self.channel, group), &id).await;
        }
        Ok(refused)
    }
}

#[derive(Default)]
struct Workers {
    ids: Vec<String>,
    next: usize,
}

/// The groups of a channel and their workers, re-read every [`REFRESH`].
#[derive(Default)]
struct Groups {
    by_name: HashMap<String, Workers>,
    read_at: Option<Instant>,
}

impl Groups {
    async fn workers(
        conn: &mut ConnectionManager,
        channel: &str,
        group: &str,
        next: usize,
    ) -> Workers {
        let ids: Vec<String> = conn
            .smembers(registry(channel, group))
            .await
            .unwrap_or_default();
        Workers { ids, next }
    }

    async fn refresh(&mut self, conn: &mut ConnectionManager, channel: &str) {
        if self.read_at.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        let groups: Vec<String> = match conn.smembers(groups_key(channel)).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("Redis fan-out: reading the groups: {e}");
                return;
            }
        };
        let mut by_name = HashMap::new();
        for group in groups {
            let next = self.by_name.get(&group).map_or(0, |w| w.next);
            let workers = Self::workers(conn, channel, &group, next).await;
            by_name.insert(group, workers);
        }
        self.by_name = by_name;
        self.read_at = Some(Instant::now());
    }
}
