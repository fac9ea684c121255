//! The embedded broker: work queues in process, for `simulate` and tests.
//!
//! Like a RabbitMQ exchange, a topic routes each message to every group that exists
//! when it is published (a topic no group consumes drops it, counted as unrouted).
//! Inside a group each message goes to one consumer. A delivery stays with its
//! consumer until acked; a nack, or the consumer being dropped, puts it back at the
//! front of the group's queue, marked redelivered.
//!
//! Every group is bounded: a group holds at most [`GROUP_CAPACITY`] messages, waiting
//! or unacknowledged. A publish that would overfill a group is refused as a whole
//! (the publisher retries, and what its own buffer cannot hold is counted as dropped);
//! an observer's group, which must not hold publishers back, drops and counts instead.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::Tuning;
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, FlowSettings, OBSERVER_GROUP, Publisher,
    Semantics, Settle,
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
    /// Messages a group holds at most; [`GROUP_CAPACITY`] unless set.
    capacity: Option<usize>,
}

/// Messages one group holds at most, waiting or unacknowledged.
pub const GROUP_CAPACITY: usize = 1_000_000;

#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    ready: Notify,
    /// Messages an observer's group could not hold.
    overflowed: AtomicU64,
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

/// Whether a group is an observer's own (`superhero_dashboard#<n>`).
fn is_observers(group: &str) -> bool {
    group
        .strip_prefix(OBSERVER_GROUP)
        .is_some_and(|rest| rest.starts_with('#'))
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

    /// A broker whose groups hold at most `capacity` messages each.
    pub fn with_group_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: Some(capacity.max(1)),
                ..Inner::default()
            }),
        }
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

    fn publish_now(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        // Each group with whether it is an observer's.
        let groups: Vec<(Arc<Group>, bool)> = lock(&self.inner.topics)
            .get(topic)
            .map(|g| {
                g.iter()
                    .map(|(name, group)| (group.clone(), is_observers(name)))
                    .collect()
            })
            .unwrap_or_default();
        let n = payloads.len();
        let capacity = self.inner.capacity.unwrap_or(GROUP_CAPACITY);
        for (group, observer) in &groups {
            let s = lock(&group.state);
            if !observer && s.queue.len() + s.unacked.len() + n > capacity {
                return Err(BrokerError::Unavailable(format!(
                    "the embedded broker: a group of {topic} holds {capacity} messages; \
                     publish again once its consumers have taken some"
                )));
            }
        }
        self.inner.published.fetch_add(n as u64, Ordering::Relaxed);
        if groups.is_empty() {
            self.inner.unrouted.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(());
        }
        for (group, _) in groups {
            let taken = {
                let mut s = lock(&group.state);
                let room = capacity.saturating_sub(s.queue.len() + s.unacked.len());
                let taken = n.min(room);
                s.queue.extend(payloads[..taken].iter().map(|p| Message {
                    payload: Arc::from(p.as_slice()),
                    redelivered: false,
                }));
                taken
            };
            group
                .overflowed
                .fetch_add((n - taken) as u64, Ordering::Relaxed);
            for _ in 0..taken {
                group.ready.notify_one();
            }
        }
        Ok(())
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

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: "none: a consumer takes what it asks for from its group's queue".into(),
            acks: "none needed: a publish returns once the message is queued in memory".into(),
        }
    }

    async fn version(&self) -> Option<String> {
        Some(format!(
            "the embedded broker of superhero {} (in process)",
            env!("CARGO_PKG_VERSION")
        ))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        // In this process: reachable while the process runs.
        Ok(())
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("ready")
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

    async fn delete(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // A consumer still holding a group keeps it alive, unreachable: nothing is
        // published to it again.
        lock(&self.inner.topics).remove(topic);
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
        self.publish_now(topic, payloads)
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

    fn overflowed(&self) -> u64 {
        self.group.overflowed.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| i.to_string().into_bytes()).collect()
    }

    /// A full group refuses a publish as a whole and takes it again once drained; an
    /// observer's group never holds the publisher back, and counts what it drops.
    #[tokio::test]
    async fn groups_are_bounded() {
        let broker = MemoryBroker::with_group_capacity(10);
        let mut group = broker.consumer("t", "g").await.unwrap();
        let observer = broker.observer("t").await.unwrap();
        broker.publish("t", &messages(8)).await.unwrap();
        assert!(matches!(
            broker.publish("t", &messages(3)).await,
            Err(BrokerError::Unavailable(_))
        ));
        assert_eq!(
            broker.depth("t", "g").ready,
            8,
            "nothing of a refused publish"
        );
        for _ in 0..4 {
            group.next().await.unwrap().ack().await.unwrap();
        }
        broker.publish("t", &messages(3)).await.unwrap();
        assert_eq!(broker.depth("t", "g").ready, 7);
        // The observer read nothing: it held 10 of the 11 and dropped one.
        assert_eq!(observer.overflowed(), 1);
        assert_eq!(broker.published(), 11);
    }
}
