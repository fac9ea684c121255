//! The raw messaging workload: P producers publish N messages of S bytes to a fresh
//! topic while C consumers of one group take them, acknowledging them in batches.
//! Every message carries its sequence number and its send time, so the consumers
//! tell losses, duplicates and the end-to-end latency without any help from the
//! broker.
//!
//! Unpaced, the producers send as fast as the broker confirms (the throughput
//! workload). Paced at a rate, each message has an intended send time, and that is
//! the time it carries: a producer held up by a slow confirm sends what fell due
//! meanwhile at once, and the wait counts in those messages' latency instead of
//! vanishing from it (coordinated omission). The other workloads ([`super::rates`])
//! are paced runs of this one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::OptionFuture;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::task::JoinSet;

use super::process::ProcessUsage;
use crate::broker::{Broker, BrokerError, BrokerStat, Consumer, Delivery, Publisher, stats_within};
use crate::latency::{Latency, LatencyRecorder};

/// Bytes of the header every message starts with: sequence number and send time.
pub const HEADER: usize = 16;
/// Messages a consumer acknowledges together at most, unless the workload says.
pub const ACK_BATCH: usize = 256;
/// Messages a producer has published and not yet seen confirmed at most (its confirm
/// window), unless the workload says.
pub const PUBLISH_BATCH: usize = 1024;
/// Publishing calls a producer keeps unconfirmed at once: its window is sent in
/// calls of a quarter of it, so the pipe never drains while confirms come back.
pub const CALLS_IN_FLIGHT: usize = 4;
/// How long the consumers wait for one more message once publishing has ended.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(5);
/// Keys per producer the audit of order spreads messages over: message `seq` of P
/// producers has key `seq mod (KEYS × P)`, so that every key is one producer's and
/// its messages go out in order. Each message is published with its key, so that a
/// broker that spreads a topic over partitions (Kafka) keeps a key in one of them.
pub const KEYS: u64 = 16;

/// The key of message `seq` among `keys` keys, as published.
fn key_of(seq: u64, keys: u64) -> Vec<u8> {
    (seq % keys.max(1)).to_string().into_bytes()
}
/// How often a run notes what was published and consumed so far.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The consumers' group.
const GROUP: &str = "bench";
/// How long reading the broker's figures at the end may take.
const STATS_WAIT: Duration = Duration::from_secs(5);
/// How long a consumer waits before it asks a hiccuping broker again.
const RETRY_AFTER: Duration = Duration::from_millis(50);
/// How often the end of a run looks at what was delivered.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// What the raw workload runs.
#[derive(Clone, Debug, Serialize)]
pub struct RawWorkload {
    /// Messages published in all.
    pub messages: u64,
    /// Bytes per message (at least [`HEADER`]).
    pub size: usize,
    pub producers: usize,
    pub consumers: usize,
    /// Messages per second all producers together aim at; none: as fast as they can.
    pub rate: Option<f64>,
    /// Messages a consumer takes and acknowledges together at most (the broker's
    /// batched acknowledgement: one XACK, `basic.ack` with `multiple`...).
    pub ack_batch: usize,
    /// Messages a producer sends before it waits for the broker's confirms.
    pub publish_batch: usize,
    /// How long consumers wait for a next message after publishing ended.
    #[serde(skip)]
    pub idle: Duration,
    /// Messages meant to be sent in this first part of the run count in every total
    /// but not in the latencies (consumers joining, connections warming up).
    #[serde(skip)]
    pub warmup: Duration,
    /// Publishing stops this long after it began, sent or not (a paced run at a rate
    /// the broker cannot take still ends); none: when every message is sent.
    #[serde(skip)]
    pub deadline: Option<Duration>,
    /// The longest the run waits for the consumers once publishing has ended; what
    /// has not come by then is reported as not consumed. None: until `idle` passes
    /// with nothing new.
    #[serde(skip)]
    pub drain: Option<Duration>,
}

impl Default for RawWorkload {
    /// The throughput workload of a full run: 500,000 messages of 200 bytes, one
    /// producer and one consumer, unpaced (a second or more on every broker here,
    /// so that the broker's CPU is sampled over the run and not a sliver of it).
    fn default() -> Self {
        Self {
            messages: 500_000,
            size: 200,
            producers: 1,
            consumers: 1,
            rate: None,
            ack_batch: ACK_BATCH,
            publish_batch: PUBLISH_BATCH,
            idle: DEFAULT_IDLE,
            warmup: Duration::ZERO,
            deadline: None,
            drain: None,
        }
    }
}

/// One point of a run's time series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since publishing began.
    pub t_s: f64,
    /// Messages the broker had confirmed by then.
    pub published: u64,
    /// Distinct messages consumed by then.
    pub consumed: u64,
}

/// What one broker did with the raw workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RawResult {
    /// Messages the producers had confirmed by the broker.
    pub published: u64,
    /// Distinct messages the consumers received.
    pub consumed: u64,
    /// Deliveries beyond the first of a message.
    pub duplicates: u64,
    /// Published messages no consumer received.
    pub lost: u64,
    /// First deliveries that came after a later message of the same key ([`KEYS`]).
    pub reordered: u64,
    /// Messages whose publishing failed.
    pub publish_errors: u64,
    pub publish_per_s: f64,
    pub consume_per_s: f64,
    /// How long publishing took, in seconds.
    pub publish_s: f64,
    /// From a message's send time (its intended one when paced) to its first
    /// delivery, past the warm-up.
    pub latency: Latency,
    /// From a message's send time (intended when paced) to the broker's confirm.
    pub publish_latency: Latency,
    /// What the broker itself said of the consumers' group at the end of the run, in
    /// its own terms (NSQ's requeued and timed out messages, Kafka's lag...).
    pub broker_stats: Vec<BrokerStat>,
    /// What the broker's process used meanwhile, when it runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_process: Option<ProcessUsage>,
    /// Published and consumed so far, every [`SAMPLE_EVERY`].
    pub series: Vec<Sample>,
}

impl RawResult {
    /// Messages published but not consumed by `t_s` seconds into the run, read from
    /// the last sample taken by then.
    pub fn backlog_at(&self, t_s: f64) -> Option<u64> {
        self.series
            .iter()
            .take_while(|s| s.t_s <= t_s)
            .last()
            .map(|s| s.published.saturating_sub(s.consumed))
    }
}

/// The header and padding of message `seq`, sent `sent_ns` after the run's start.
pub fn encode(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size.max(HEADER));
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&sent_ns.to_be_bytes());
    payload.resize(size.max(HEADER), b'x');
    payload
}

/// The sequence number and send time of a message, or `None` if it is not one of ours.
pub fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let sent = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// The audit of order per key: a message first delivered after a later message of
/// its key is out of order.
#[derive(Clone, Debug)]
pub(super) struct KeyOrder {
    /// The highest sequence number first delivered, per key.
    highest: Vec<Option<u64>>,
    pub(super) reordered: u64,
}

impl KeyOrder {
    /// The audit of the messages of `producers` producers.
    pub(super) fn new(producers: usize) -> Self {
        Self {
            highest: vec![None; (KEYS * producers.max(1) as u64) as usize],
            reordered: 0,
        }
    }

    /// Message `seq`, delivered for the first time.
    pub(super) fn first_delivery(&mut self, seq: u64) {
        let keys = self.highest.len() as u64;
        let highest = &mut self.highest[(seq % keys.max(1)) as usize];
        match highest {
            Some(h) if seq < *h => self.reordered += 1,
            _ => *highest = Some(seq),
        }
    }
}

/// What the consumers saw.
struct Seen {
    ids: HashSet<u64>,
    duplicates: u64,
    order: KeyOrder,
    latency: LatencyRecorder,
    last: Option<Instant>,
}

/// Counters the consumers, producers and the sampler share.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) published: AtomicU64,
    pub(super) consumed: AtomicU64,
}

/// Runs the workload on `broker`; `progress` is told of every message consumed.
/// `copies`: deliveries each message should get (the consumers, on a broker that
/// broadcasts; else 1), so the run waits for all of them.
/// The topic is the run's own, deleted at its end.
pub async fn run(
    broker: &dyn Broker,
    workload: &RawWorkload,
    copies: u64,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<RawResult, BrokerError> {
    on_scratch_topic(broker, "bench", &[GROUP], |topic| async move {
        run_on(broker, &topic, workload, copies, progress).await
    })
    .await
}

/// What `work` makes of a topic named `<prefix>.<a new id>`, which is deleted
/// afterwards with `groups`, whatever came of the work (its consumers are gone by
/// then). A deletion the broker refuses is logged: the run's figures still hold.
pub(super) async fn on_scratch_topic<T, F>(
    broker: &dyn Broker,
    prefix: &str,
    groups: &[&str],
    work: impl FnOnce(String) -> F,
) -> Result<T, BrokerError>
where
    F: Future<Output = Result<T, BrokerError>>,
{
    let topic = format!("{prefix}.{}", uuid::Uuid::new_v4().simple());
    let outcome = work(topic.clone()).await;
    delete_scratch(broker, &topic, groups).await;
    outcome
}

/// Deletes a scratch topic with `groups`; a refusal is logged, not returned.
pub(super) async fn delete_scratch(broker: &dyn Broker, topic: &str, groups: &[&str]) {
    if let Err(e) = broker.delete(topic, groups).await {
        tracing::warn!("bench: the scratch topic {topic} is left on the broker: {e}");
    }
}

async fn run_on(
    broker: &dyn Broker,
    topic: &str,
    workload: &RawWorkload,
    copies: u64,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<RawResult, BrokerError> {
    let mut subscribed = Vec::new();
    for _ in 0..workload.consumers.max(1) {
        subscribed.push(broker.consumer(topic, GROUP).await?);
    }
    let mut publishers = Vec::new();
    for _ in 0..workload.producers.max(1) {
        publishers.push(broker.publisher().await?);
    }
    // Every time in the run counts from here, when the first message may go.
    let start = Instant::now();
    let warm_ns = workload.warmup.as_nanos() as u64;
    let seen = Arc::new(Mutex::new(Seen {
        ids: HashSet::new(),
        duplicates: 0,
        order: KeyOrder::new(workload.producers),
        latency: LatencyRecorder::new(),
        last: None,
    }));
    let counts = Arc::new(Counts::default());
    let progress = Arc::new(progress);
    let mut consumers = JoinSet::new();
    for mut consumer in subscribed {
        let seen = seen.clone();
        let counts = counts.clone();
        let progress = progress.clone();
        let ack_batch = workload.ack_batch.max(1);
        consumers.spawn(async move {
            let mut acks = Acks::new(ack_batch);
            while let Some(batch) = acks.next(consumer.as_mut()).await {
                let now = start.elapsed().as_nanos() as u64;
                let decoded: Vec<_> = batch.iter().map(|d| decode(&d.payload)).collect();
                let Ok(mut s) = seen.lock() else { return };
                let mut new = 0;
                for (seq, sent) in decoded.into_iter().flatten() {
                    if s.ids.insert(seq) {
                        s.order.first_delivery(seq);
                        if sent >= warm_ns {
                            s.latency
                                .record(Duration::from_nanos(now.saturating_sub(sent)));
                        }
                        new += 1;
                    } else {
                        s.duplicates += 1;
                    }
                }
                s.last = Some(Instant::now());
                drop(s);
                counts.consumed.fetch_add(new, Ordering::Relaxed);
                progress(new);
                acks.ack(batch);
            }
            acks.finish().await;
        });
    }
    let sampler = Sampler::start(&counts, start);

    let published = publish_all(
        publishers,
        topic,
        workload,
        0..workload.messages,
        start,
        &counts,
    )
    .await?;
    let publish_s = start.elapsed().as_secs_f64();

    // Consume until every copy of every message has come, none came for `idle`, or
    // the drain time is up.
    let deliveries = || {
        let s = seen.lock().ok()?;
        Some((s.ids.len() as u64 + s.duplicates, s.last))
    };
    wait_for_deliveries(
        published.ok * copies.max(1),
        workload.idle,
        workload.drain,
        deliveries,
    )
    .await;
    // The broker's own view of the group, while its consumers still hold on.
    let broker_stats = stats_within(broker, topic, GROUP, STATS_WAIT)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("bench: the broker's figures could not be read: {e}");
            Vec::new()
        });
    consumers.abort_all();
    while consumers.join_next().await.is_some() {}
    let series = sampler.finish().await;

    let s = seen.lock().map_err(|_| BrokerError::Closed)?;
    let consumed = s.ids.len() as u64;
    let consume_s = s
        .last
        .map_or(0.0, |last| last.duration_since(start).as_secs_f64());
    Ok(RawResult {
        published: published.ok,
        consumed,
        duplicates: s.duplicates,
        lost: published.ok.saturating_sub(consumed),
        reordered: s.order.reordered,
        publish_errors: published.failed,
        publish_per_s: per_s(published.ok, publish_s),
        consume_per_s: per_s(consumed, consume_s),
        publish_s,
        latency: s.latency.summary(),
        publish_latency: published.latency.summary(),
        broker_stats,
        broker_process: None,
        series,
    })
}

/// Notes the counts every [`SAMPLE_EVERY`] while a run goes on.
pub(super) struct Sampler {
    counts: Arc<Counts>,
    start: Instant,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `counts`, times counted from `start`.
    pub(super) fn start(counts: &Arc<Counts>, start: Instant) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let counts = counts.clone();
            async move {
                let mut series = Vec::new();
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = &mut stopped => return series,
                    }
                    series.push(counts.sample(start));
                }
            }
        });
        Self {
            counts: counts.clone(),
            start,
            stop,
            task,
        }
    }

    /// Stops sampling; the series, ending with the counts as they are now.
    pub(super) async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        let mut series = self.task.await.unwrap_or_default();
        series.push(self.counts.sample(self.start));
        series
    }
}

impl Counts {
    fn sample(&self, start: Instant) -> Sample {
        Sample {
            t_s: start.elapsed().as_secs_f64(),
            published: self.published.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
        }
    }
}

/// A bench consumer's acknowledgements, sent while it takes its next batches: one
/// exchange with the broker at a time, of at most the ack batch, made of what was
/// handed over meanwhile. A consumer that waited for each acknowledgement before it
/// took more would measure its own round trips, not the broker. A batch is handed
/// over once it has been audited, so nothing is acknowledged before it counts; what
/// a killed consumer had not acknowledged yet comes again and shows as duplicates.
pub(super) struct Acks {
    batch: usize,
    /// The acknowledgement under way.
    sending: Option<futures_util::future::BoxFuture<'static, ()>>,
    /// Deliveries handed over and not yet in an acknowledgement.
    held: Vec<Delivery>,
}

impl Acks {
    /// Acknowledges in exchanges of at most `batch` messages.
    pub(super) fn new(batch: usize) -> Self {
        Self {
            batch: batch.max(1),
            sending: None,
            held: Vec::new(),
        }
    }

    /// Has `batch`, audited, acknowledged with the next exchange.
    pub(super) fn ack(&mut self, batch: Vec<Delivery>) {
        self.held.extend(batch);
    }

    /// `consumer`'s next batch of at most the ack batch, sending what is held
    /// meanwhile; none once the consumer is closed. At most a few batches wait
    /// unacknowledged: beyond that, the acknowledgement under way is waited for first.
    pub(super) async fn next(&mut self, consumer: &mut dyn Consumer) -> Option<Vec<Delivery>> {
        loop {
            self.send_held();
            let (size, room) = (self.batch, self.held.len() < self.batch * HELD_BATCHES);
            let sending = self.sending.as_mut();
            let busy = sending.is_some();
            tokio::select! {
                biased;
                Some(()) = OptionFuture::from(sending), if busy => self.sending = None,
                // `next_batch` loses nothing when it does not finish.
                batch = next_batch(consumer, size), if room => return batch,
            }
        }
    }

    /// Waits until everything handed over is acknowledged.
    pub(super) async fn finish(mut self) {
        loop {
            self.send_held();
            match self.sending.take() {
                Some(sending) => sending.await,
                None => return,
            }
        }
    }

    fn send_held(&mut self) {
        if self.sending.is_none() && !self.held.is_empty() {
            let take = self.held.len().min(self.batch);
            let batch: Vec<Delivery> = self.held.drain(..take).collect();
            // What fails to be acknowledged comes again and shows as a duplicate.
            self.sending = Some(Box::pin(async move {
                let _ = Delivery::ack_all(batch).await;
            }));
        }
    }
}

/// Batches a consumer holds handed over and unacknowledged at most, beside the
/// one being acknowledged.
const HELD_BATCHES: usize = 4;

/// The consumer's next batch of at most `n` messages; none once the consumer is
/// closed. When the broker hiccups, the consumer resubscribes by itself and this
/// tries again a moment later: what never comes back shows as lost in the audit.
pub(super) async fn next_batch(consumer: &mut dyn Consumer, n: usize) -> Option<Vec<Delivery>> {
    loop {
        match consumer.next_batch(n.max(1)).await {
            Ok(batch) => return Some(batch),
            Err(BrokerError::Closed) => return None,
            Err(e) => {
                tracing::debug!("bench consumer: {e}");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Waits until `delivered` (deliveries so far and when the last came; none when the
/// consumers' record is gone) reaches `target`, nothing more came for `idle`, or
/// `drain` has passed since the call.
pub(super) async fn wait_for_deliveries(
    target: u64,
    idle: Duration,
    drain: Option<Duration>,
    delivered: impl Fn() -> Option<(u64, Option<Instant>)>,
) {
    let called = Instant::now();
    let mut waited_since = called;
    while let Some((count, last)) = delivered() {
        if count >= target {
            return;
        }
        if let Some(last) = last {
            waited_since = waited_since.max(last);
        }
        if waited_since.elapsed() >= idle || drain.is_some_and(|d| called.elapsed() >= d) {
            return;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

pub(super) fn per_s(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Whether a producer's calls are failing: an outage is told once, not once per
/// call, and a broker that refuses and accepts by turns (a full group) at most every
/// [`TELL_EVERY`].
#[derive(Default)]
struct Failing {
    now: bool,
    told: Option<Instant>,
}

const TELL_EVERY: Duration = Duration::from_secs(5);

impl Failing {
    /// Marks a failure; true when it is to be told.
    fn tell(&mut self) -> bool {
        let new = !std::mem::replace(&mut self.now, true);
        if new && self.told.is_none_or(|t| t.elapsed() >= TELL_EVERY) {
            self.told = Some(Instant::now());
            return true;
        }
        false
    }
}

/// What the producers did.
#[derive(Default)]
pub(super) struct Published {
    pub(super) ok: u64,
    pub(super) failed: u64,
    /// The sequence numbers of the messages whose publishing failed (the broker may
    /// still have taken some).
    pub(super) unconfirmed: Vec<u64>,
    pub(super) latency: LatencyRecorder,
}

impl Published {
    /// Adds what another producer (or another part of the run) published.
    pub(super) fn add(&mut self, other: Published) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.unconfirmed.extend(other.unconfirmed);
        self.latency.merge(&other.latency);
    }
}

/// Publishes the messages numbered `seqs` (the workload's rate and sizes) from
/// `publishers`.
pub(super) async fn publish_all(
    publishers: Vec<Box<dyn Publisher>>,
    topic: &str,
    workload: &RawWorkload,
    seqs: std::ops::Range<u64>,
    start: Instant,
    counts: &Arc<Counts>,
) -> Result<Published, BrokerError> {
    let producers = publishers.len().max(1) as u64;
    let mut tasks = JoinSet::new();
    for (p, publisher) in (0u64..).zip(publishers) {
        // Producer p sends the sequence numbers first + p, first + p + P, ...
        let seqs: Vec<u64> = (seqs.start + p..seqs.end)
            .step_by(producers as usize)
            .collect();
        let producer = Producer {
            topic: topic.to_string(),
            size: workload.size,
            rate: workload.rate.map(|r| r / producers as f64),
            window: workload.publish_batch.max(1),
            keys: KEYS * producers,
            deadline: workload.deadline.and_then(|d| start.checked_add(d)),
            start,
            counts: counts.clone(),
        };
        tasks.spawn(async move { producer.send(&*publisher, &seqs).await });
    }
    let mut all = Published::default();
    while let Some(done) = tasks.join_next().await {
        let one = done.map_err(|e| BrokerError::Unavailable(format!("a producer failed: {e}")))?;
        all.add(one);
    }
    Ok(all)
}

/// One producer's settings.
struct Producer {
    topic: String,
    size: usize,
    /// This producer's share of the rate.
    rate: Option<f64>,
    window: usize,
    /// Keys of all producers together.
    keys: u64,
    start: Instant,
    /// When to stop sending, sent or not.
    deadline: Option<Instant>,
    counts: Arc<Counts>,
}

impl Producer {
    /// When message `k` of this producer is due, paced from `began`.
    fn due(began: Instant, k: usize, rate: f64) -> Instant {
        Duration::try_from_secs_f64(k as f64 / rate)
            .ok()
            .and_then(|d| began.checked_add(d))
            .unwrap_or(began + Duration::from_secs(365 * 24 * 3600))
    }

    /// Sends `seqs` in calls of a quarter of the window each, keeping at most
    /// [`CALLS_IN_FLIGHT`] calls (the window) unconfirmed: the next call goes out
    /// while the earlier ones are confirmed, as a client with a confirm window does.
    /// Unpaced, as fast as the window allows; paced, what has fallen due, each
    /// message stamped with its intended time.
    async fn send(&self, publisher: &dyn Publisher, seqs: &[u64]) -> Published {
        let began = Instant::now();
        let stamp = |at: Instant| at.saturating_duration_since(self.start).as_nanos() as u64;
        let chunk = self.window.div_ceil(CALLS_IN_FLIGHT).max(1);
        let topic = self.topic.as_str();
        let mut done = Published::default();
        let mut failing = Failing::default();
        let mut in_flight = FuturesUnordered::new();
        let mut next = 0;
        loop {
            let open = next < seqs.len() && self.deadline.is_none_or(|d| Instant::now() < d);
            if !open || in_flight.len() >= CALLS_IN_FLIGHT {
                match in_flight.next().await {
                    Some(call) => self.settle(call, began, seqs, &mut done, &mut failing),
                    None => break,
                }
                continue;
            }
            let upto = match self.rate {
                None => (next + chunk).min(seqs.len()),
                Some(rate) => {
                    // Messages 0..=floor(elapsed × rate) are due by now.
                    let due = (began.elapsed().as_secs_f64() * rate) as usize + 1;
                    if due <= next {
                        let at = Self::due(began, next, rate);
                        let at = self.deadline.map_or(at, |d| at.min(d));
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {}
                            Some(call) = in_flight.next() => {
                                self.settle(call, began, seqs, &mut done, &mut failing);
                            }
                        }
                        continue;
                    }
                    due.min(next + chunk).min(seqs.len())
                }
            };
            let sent = Instant::now();
            let batch: Vec<Vec<u8>> = (next..upto)
                .map(|k| encode(seqs[k], stamp(self.intended(began, sent, k)), self.size))
                .collect();
            let keys: Vec<Vec<u8>> = seqs[next..upto]
                .iter()
                .map(|&seq| key_of(seq, self.keys))
                .collect();
            let from = next;
            let mut call = Box::pin(async move {
                let result = publisher.publish_keyed(topic, &batch, &keys).await;
                Call {
                    from,
                    upto,
                    sent,
                    confirmed: Instant::now(),
                    result,
                }
            });
            // Started at once, so that calls reach the broker's client in the order
            // they were made (a later one must not overtake one not yet polled).
            match futures_util::poll!(call.as_mut()) {
                Poll::Ready(call) => self.settle(call, began, seqs, &mut done, &mut failing),
                Poll::Pending => in_flight.push(call),
            }
            next = upto;
        }
        done
    }

    /// When message `k` was meant to go: paced, its due time; unpaced, when its call
    /// was sent.
    fn intended(&self, began: Instant, sent: Instant, k: usize) -> Instant {
        match self.rate {
            Some(rate) => Self::due(began, k, rate),
            None => sent,
        }
    }

    /// Counts a call's messages as confirmed or failed.
    fn settle(
        &self,
        call: Call,
        began: Instant,
        seqs: &[u64],
        done: &mut Published,
        failing: &mut Failing,
    ) {
        let n = (call.upto - call.from) as u64;
        match call.result {
            Ok(()) => {
                failing.now = false;
                for k in call.from..call.upto {
                    let intended = self.intended(began, call.sent, k);
                    done.latency
                        .record(call.confirmed.saturating_duration_since(intended));
                }
                done.ok += n;
                self.counts.published.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                if failing.tell() {
                    tracing::warn!("bench: publishing failed: {e}");
                }
                done.failed += n;
                done.unconfirmed
                    .extend_from_slice(&seqs[call.from..call.upto]);
            }
        }
    }
}

/// One publishing call of a producer, once the broker has answered it.
struct Call {
    /// The producer's messages `from..upto`.
    from: usize,
    upto: usize,
    sent: Instant,
    confirmed: Instant,
    result: Result<(), BrokerError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;

    /// An outage is told once; a broker refusing and accepting by turns is not told
    /// at every refusal.
    #[test]
    fn failures_are_told_once_an_outage_and_not_at_every_turn() {
        let mut failing = Failing::default();
        assert!(failing.tell());
        assert!(!failing.tell());
        failing.now = false;
        assert!(!failing.tell(), "told again within {TELL_EVERY:?}");
        failing.now = false;
        failing.told = Some(Instant::now() - TELL_EVERY);
        assert!(failing.tell());
    }

    #[test]
    fn messages_carry_their_number_and_time() {
        let m = encode(7, 123_456, 200);
        assert_eq!(m.len(), 200);
        assert_eq!(decode(&m), Some((7, 123_456)));
        assert_eq!(encode(1, 2, 3).len(), HEADER);
        assert_eq!(decode(b"short"), None);
    }

    #[test]
    fn order_is_audited_per_key_of_one_producer() {
        // Two producers: 32 keys; 0, 32 and 64 share key 0.
        let mut order = KeyOrder::new(2);
        for seq in [0, 1, 64, 33, 32, 65] {
            order.first_delivery(seq);
        }
        // 32 came after 64 (key 0); 65 after 33 (key 1) is in order.
        assert_eq!(order.reordered, 1);
    }

    #[tokio::test]
    async fn one_consumer_gets_each_producer_s_keys_in_order() {
        let workload = RawWorkload {
            messages: 3_000,
            size: 32,
            producers: 3,
            consumers: 1,
            ack_batch: 50,
            publish_batch: 40,
            idle: Duration::from_secs(2),
            ..RawWorkload::default()
        };
        let r = run(&MemoryBroker::new(), &workload, 1, |_| {})
            .await
            .unwrap();
        assert_eq!(r.consumed, 3_000);
        assert_eq!(r.reordered, 0, "the embedded broker keeps publishing order");
    }

    #[tokio::test]
    async fn every_message_is_counted_once_on_a_work_queue() {
        let workload = RawWorkload {
            messages: 2_000,
            size: 64,
            producers: 2,
            consumers: 3,
            ack_batch: 100,
            publish_batch: 64,
            idle: Duration::from_secs(2),
            ..RawWorkload::default()
        };
        let r = run(&MemoryBroker::new(), &workload, 1, |_| {})
            .await
            .unwrap();
        assert_eq!(r.published, 2_000);
        assert_eq!(r.consumed, 2_000);
        assert_eq!((r.duplicates, r.lost, r.publish_errors), (0, 0, 0));
        assert!(r.latency.p50_ms <= r.latency.p99_ms);
        assert!(r.latency.p99_ms <= r.latency.max_ms);
        assert!(r.publish_per_s > 0.0 && r.consume_per_s > 0.0);
    }
}
