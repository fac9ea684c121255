//! The raw messaging workload: P producers publish N messages of S bytes to a fresh
//! topic while C consumers of one group take them, acknowledging each. Every message
//! carries its sequence number and its send time, so the consumers tell losses,
//! duplicates and the end-to-end latency without any help from the broker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::process::ProcessUsage;
use crate::broker::{Broker, BrokerError, BrokerStat, Delivery, stats_within};
use crate::latency::{Latency, LatencyRecorder};

/// Bytes of the header every message starts with: sequence number and send time.
pub const HEADER: usize = 16;
/// Messages a consumer acknowledges together at most, unless the workload says.
pub const ACK_BATCH: usize = 256;
/// Messages a producer sends before waiting for confirms, unless the workload says.
pub const PUBLISH_BATCH: usize = 256;
/// How long the consumers wait for one more message once publishing has ended.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(5);
/// The consumers' group.
const GROUP: &str = "bench";
/// How long reading the broker's figures at the end may take.
const STATS_WAIT: Duration = Duration::from_secs(5);

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
    /// Messages whose publishing failed.
    pub publish_errors: u64,
    pub publish_per_s: f64,
    pub consume_per_s: f64,
    pub latency: Latency,
    /// What the broker itself said of the consumers' group at the end of the run, in
    /// its own terms (NSQ's requeued and timed out messages, Kafka's lag...).
    pub broker_stats: Vec<BrokerStat>,
    /// What the broker's process used meanwhile, when it runs on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_process: Option<ProcessUsage>,
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

/// What the consumers saw.
struct Seen {
    ids: HashSet<u64>,
    duplicates: u64,
    latency: LatencyRecorder,
    last: Option<Instant>,
}

impl Seen {
    fn new() -> Self {
        Self {
            ids: HashSet::new(),
            duplicates: 0,
            latency: LatencyRecorder::new(),
            last: None,
        }
    }
}

/// Runs the workload on `broker`; `progress` is told of every message consumed.
/// `copies`: deliveries each message should get (the consumers, on a broker that
/// broadcasts; else 1), so the run waits for all of them.
pub async fn run(
    broker: &dyn Broker,
    workload: &RawWorkload,
    copies: u64,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<RawResult, BrokerError> {
    let topic = format!("bench.{}", uuid::Uuid::new_v4().simple());
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::new()));
    let progress = Arc::new(progress);
    let mut consumers = JoinSet::new();
    for _ in 0..workload.consumers.max(1) {
        let mut consumer = broker.consumer(&topic, GROUP).await?;
        let seen = seen.clone();
        let progress = progress.clone();
        let ack_batch = workload.ack_batch.max(1);
        consumers.spawn(async move {
            loop {
                let batch = match consumer.next_batch(ack_batch).await {
                    Ok(batch) => batch,
                    Err(BrokerError::Closed) => return,
                    // The broker hiccuped: the consumer resubscribes by itself; what
                    // never comes back is counted as lost.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let now = start.elapsed().as_nanos() as u64;
                let decoded: Vec<_> = batch.iter().map(|d| decode(&d.payload)).collect();
                // What is not acknowledged comes again and shows as a duplicate.
                let _ = Delivery::ack_all(batch).await;
                let Ok(mut s) = seen.lock() else { return };
                let mut new = 0;
                for (seq, sent) in decoded.into_iter().flatten() {
                    if s.ids.insert(seq) {
                        s.latency
                            .record(Duration::from_nanos(now.saturating_sub(sent)));
                        new += 1;
                    } else {
                        s.duplicates += 1;
                    }
                }
                s.last = Some(Instant::now());
                drop(s);
                progress(new);
            }
        });
    }

    let publishing = Instant::now();
    let (published, publish_errors) = publish_all(broker, &topic, workload, start).await?;
    let publish_s = publishing.elapsed().as_secs_f64();

    // Consume until every copy of every message has come, or none came for `idle`.
    let mut waited_since = Instant::now();
    loop {
        let (deliveries, last) = {
            let s = seen.lock().map_err(|_| BrokerError::Closed)?;
            (s.ids.len() as u64 + s.duplicates, s.last)
        };
        if deliveries >= published * copies.max(1) {
            break;
        }
        if let Some(last) = last {
            waited_since = waited_since.max(last);
        }
        if waited_since.elapsed() >= workload.idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The broker's own view of the group, while its consumers still hold on.
    let broker_stats = stats_within(broker, &topic, GROUP, STATS_WAIT)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("bench: the broker's figures could not be read: {e}");
            Vec::new()
        });
    consumers.abort_all();
    while consumers.join_next().await.is_some() {}

    let s = seen.lock().map_err(|_| BrokerError::Closed)?;
    let consumed = s.ids.len() as u64;
    let consume_s = s
        .last
        .map_or(0.0, |last| last.duration_since(publishing).as_secs_f64());
    Ok(RawResult {
        published,
        consumed,
        duplicates: s.duplicates,
        lost: published.saturating_sub(consumed),
        publish_errors,
        publish_per_s: per_s(published, publish_s),
        consume_per_s: per_s(consumed, consume_s),
        latency: s.latency.summary(),
        broker_stats,
        broker_process: None,
    })
}

fn per_s(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Publishes the workload's messages from its producers; returns how many the broker
/// confirmed and how many failed.
async fn publish_all(
    broker: &dyn Broker,
    topic: &str,
    workload: &RawWorkload,
    start: Instant,
) -> Result<(u64, u64), BrokerError> {
    let producers = workload.producers.max(1) as u64;
    let mut tasks = JoinSet::new();
    for p in 0..producers {
        let publisher = broker.publisher().await?;
        let topic = topic.to_string();
        let size = workload.size;
        // Producer p sends the sequence numbers p, p + P, p + 2P, ...
        let seqs: Vec<u64> = (p..workload.messages).step_by(producers as usize).collect();
        let rate = workload.rate.map(|r| r / producers as f64);
        let window = workload.publish_batch.max(1);
        tasks.spawn(async move {
            let began = Instant::now();
            let (mut ok, mut failed) = (0u64, 0u64);
            for chunk in seqs.chunks(window) {
                if let Some(rate) = rate {
                    // Hold back until this chunk is due at the target rate.
                    let due = Duration::try_from_secs_f64(ok as f64 / rate)
                        .ok()
                        .and_then(|d| began.checked_add(d));
                    if let Some(due) = due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                let batch: Vec<Vec<u8>> = chunk
                    .iter()
                    .map(|&seq| encode(seq, start.elapsed().as_nanos() as u64, size))
                    .collect();
                match publisher.publish(&topic, &batch).await {
                    Ok(()) => ok += chunk.len() as u64,
                    Err(e) => {
                        tracing::warn!("bench: publishing failed: {e}");
                        failed += chunk.len() as u64;
                    }
                }
            }
            (ok, failed)
        });
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (o, f) =
            done.map_err(|e| BrokerError::Unavailable(format!("a producer failed: {e}")))?;
        ok += o;
        failed += f;
    }
    Ok((ok, failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;

    #[test]
    fn messages_carry_their_number_and_time() {
        let m = encode(7, 123_456, 200);
        assert_eq!(m.len(), 200);
        assert_eq!(decode(&m), Some((7, 123_456)));
        assert_eq!(encode(1, 2, 3).len(), HEADER);
        assert_eq!(decode(b"short"), None);
    }

    #[tokio::test]
    async fn every_message_is_counted_once_on_a_work_queue() {
        let workload = RawWorkload {
            messages: 2_000,
            size: 64,
            producers: 2,
            consumers: 3,
            rate: None,
            ack_batch: 100,
            publish_batch: 64,
            idle: Duration::from_secs(2),
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
