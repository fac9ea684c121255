//! The embedded broker: work queues in process, for `simulate` and tests.
//!
//! Like a RabbitMQ exchange, a topic routes each message to every group that exists
//! when it is published (a topic no group consumes drops it, counted as unrouted).
//! Inside a group each message goes to one consumer. A delivery stays with its
//! consumer until acked; a nack, or the consumer being dropped, puts it back at the
//! front of the group's queue, marked redelivered.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::Tuning;
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, OBSERVER_GROUP, Publisher, Semantics,
    Settle,
};

/// Opens a new embedded broker (its registry entry: `memory://`).
pub(super) fn open(
    _url: String,
    _tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    async { Ok(Arc::new(MemoryBroker::new()) as Arc<dyn Broker>) }.boxed()
}

/// The embedded broker. Clones share the same topics.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Topic → group name → group.
    topics: Mutex<HashMap<String, HashMap<String, Arc<Group>>>>,
    published: AtomicU64,
    unrouted: AtomicU64,
    next_consumer: AtomicU64,
}

#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    ready: Notify,
}

#[derive(Default)]
struct GroupState {
    queue: VecDeque<Message>,
    /// Delivery tag → (consumer, message).
    unacked: HashMap<u64, (u64, Message)>,
    next_tag: u64,
}

#[derive(Clone)]
struct Message {
    payload: Arc<[u8]>,
    redelivered: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of one group, for progress reports and draining.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupDepth {
    /// Waiting for a consumer.
    pub ready: usize,
    /// Delivered, not yet acknowledged.
    pub unacked: usize,
}

impl MemoryBroker {
    /// A broker with no topic yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages published so far (routed or not).
    pub fn published(&self) -> u64 {
        self.inner.published.load(Ordering::Relaxed)
    }

    /// Messages published to a topic no group consumed.
    pub fn unrouted(&self) -> u64 {
        self.inner.unrouted.load(Ordering::Relaxed)
    }

    /// How many messages a group holds; zero for a group that does not exist.
    pub fn depth(&self, topic: &str, group: &str) -> GroupDepth {
        let topics = lock(&self.inner.topics);
        topics
            .get(topic)
            .and_then(|g| g.get(group))
            .map(|g| {
                let s = lock(&g.state);
                GroupDepth {
                    ready: s.queue.len(),
                    unacked: s.unacked.len(),
                }
            })
            .unwrap_or_default()
    }

    /// The group's queue, made empty if it does not exist yet.
    fn group(&self, topic: &str, group: &str) -> Arc<Group> {
        lock(&self.inner.topics)
            .entry(topic.to_string())
            .or_default()
            .entry(group.to_string())
            .or_default()
            .clone()
    }

    fn publish_now(&self, topic: &str, payloads: &[Vec<u8>]) {
        let groups: Vec<Arc<Group>> = lock(&self.inner.topics)
            .get(topic)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default();
        let n = payloads.len() as u64;
        self.inner.published.fetch_add(n, Ordering::Relaxed);
        if groups.is_empty() {
            self.inner.unrouted.fetch_add(n, Ordering::Relaxed);
            return;
        }
        for group in groups {
            {
                let mut s = lock(&group.state);
                s.queue.extend(payloads.iter().map(|p| Message {
                    payload: Arc::from(p.as_slice()),
                    redelivered: false,
                }));
            }
            for _ in 0..payloads.len() {
                group.ready.notify_one();
            }
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Queue {
            retains_unconsumed: false,
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.clone()))
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        let depth = self.depth(topic, group);
        Ok(vec![
            BrokerStat::new("ready", depth.ready as u64),
            BrokerStat::new("unacked", depth.unacked as u64),
            BrokerStat::new("published", self.published()),
            BrokerStat::new("unrouted", self.unrouted()),
        ])
    }

    async fn declare(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        for group in groups {
            self.group(topic, group);
        }
        Ok(())
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let group = self.group(topic, group);
        let id = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryConsumer {
            group,
            id,
            owned: None,
        }))
    }

    /// A group of the observer's own, gone with it.
    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let id = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        let name = format!("{OBSERVER_GROUP}#{id}");
        Ok(Box::new(MemoryConsumer {
            group: self.group(topic, &name),
            id,
            owned: Some((self.clone(), topic.to_string(), name)),
        }))
    }
}

#[async_trait]
impl Publisher for MemoryBroker {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        self.publish_now(topic, payloads);
        Ok(())
    }
}

struct MemoryConsumer {
    group: Arc<Group>,
    id: u64,
    /// The broker, topic and name of a group this consumer alone reads (an
    /// observer's), removed when it goes.
    owned: Option<(MemoryBroker, String, String)>,
}

impl MemoryConsumer {
    /// Up to `max` waiting messages, taken under one lock.
    fn take(&self, max: usize) -> Vec<Delivery> {
        let mut s = lock(&self.group.state);
        let n = max.min(s.queue.len());
        let mut taken = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(message) = s.queue.pop_front() else {
                break;
            };
            let tag = s.next_tag;
            s.next_tag += 1;
            s.unacked.insert(tag, (self.id, message.clone()));
            taken.push(Delivery::new(
                message.payload.to_vec(),
                message.redelivered,
                Box::new(MemorySettle {
                    group: self.group.clone(),
                    tag,
                }),
            ));
        }
        // Another consumer may be waiting for what is left.
        if !taken.is_empty() && !s.queue.is_empty() {
            self.group.ready.notify_one();
        }
        taken
    }

    async fn wait_for(&self, max: usize) -> Vec<Delivery> {
        loop {
            let notified = self.group.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = self.take(max);
            if !taken.is_empty() {
                return taken;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        // `take` hands out what it took, so a dropped call loses nothing.
        let mut one = self.wait_for(1).await;
        one.pop().ok_or(BrokerError::Closed)
    }

    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        Ok(self.wait_for(max.max(1)).await)
    }
}

impl Drop for MemoryConsumer {
    /// A consumer that goes away gives back everything it did not acknowledge; an
    /// observer's group goes with it.
    fn drop(&mut self) {
        if let Some((broker, topic, name)) = self.owned.take() {
            if let Some(groups) = lock(&broker.inner.topics).get_mut(&topic) {
                groups.remove(&name);
            }
            return;
        }
        let mut s = lock(&self.group.state);
        let mut mine: Vec<u64> = s
            .unacked
            .iter()
            .filter(|(_, (owner, _))| *owner == self.id)
            .map(|(tag, _)| *tag)
            .collect();
        mine.sort_unstable();
        for tag in mine.into_iter().rev() {
            if let Some((_, mut m)) = s.unacked.remove(&tag) {
                m.redelivered = true;
                s.queue.push_front(m);
                self.group.ready.notify_one();
            }
        }
    }
}

struct MemorySettle {
    group: Arc<Group>,
    tag: u64,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        match lock(&self.group.state).unacked.remove(&self.tag) {
            Some(_) => Ok(()),
            None => Err(BrokerError::Stale),
        }
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        let mut s = lock(&self.group.state);
        let (_, mut m) = s.unacked.remove(&self.tag).ok_or(BrokerError::Stale)?;
        m.redelivered = true;
        s.queue.push_front(m);
        drop(s);
        self.group.ready.notify_one();
        Ok(())
    }
}
