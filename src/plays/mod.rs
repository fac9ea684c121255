//! `superhero plays`: the video plays scenario. Producers put play messages
//! ([`message`]) for a set of videos on a queue of any broker; a processor with T
//! consumer threads counts plays per video ([`rules::Counter`], the source of truth)
//! and publishes changed counts to the dashboard feed ([`feed`]) under the
//! original's rules.
//!
//! Two modes, as in the original driver: backed-up (every message is enqueued before
//! the processor starts) and real-life (producers and consumers at once, R producers
//! per consumer thread). The processor's consumers join the broker before anything
//! is produced, so no broker drops a message for want of a subscriber. On a broker
//! that broadcasts (Redis pub/sub), the threads share one subscription instead of
//! each counting every message. A message delivered twice counts once.

pub mod feed;
pub mod message;
pub mod rules;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{Broker, BrokerError, Consumer, Delivery, Publisher};
use feed::{Consumption, PlaysFeed, SeriesPoint};
use message::{MAX_SEQ, PlayMessage, now_s};
use rules::Counter;

/// Messages a producer publishes in one call.
const PRODUCE_BATCH: usize = 256;
/// Messages a consumer thread takes before it counts them under one lock.
const CONSUME_BATCH: usize = 512;
/// How often consumption times go to the feed (and the chart gets a point).
const STATS_EVERY: Duration = Duration::from_millis(250);
/// Attempts to publish one batch before its messages count as failed.
const PUBLISH_ATTEMPTS: u32 = 5;

/// What a plays run does.
#[derive(Clone, Debug)]
pub struct PlaysSettings {
    /// Consumer threads of the processor.
    pub threads: usize,
    pub messages: u64,
    pub videos: usize,
    /// How often videos at 100 plays and over are published.
    pub update_interval: Duration,
    /// Producers per consumer thread.
    pub pc_ratio: usize,
    /// Produce and consume at once (else: enqueue everything first).
    pub real_life: bool,
    /// Seeds the video ids and which video each message plays.
    pub seed: u64,
    /// How long the processor waits for a message that does not come before the run
    /// ends with it counted as lost.
    pub idle: Duration,
    /// The topic or queue of the plays; None: a fresh one per run, so no message of
    /// an earlier run is counted.
    pub topic: Option<String>,
}

/// The closing summary (the `plays --json` fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlaysSummary {
    pub broker: String,
    pub mode: &'static str,
    pub threads: usize,
    pub producers: usize,
    pub messages_produced: u64,
    /// Distinct messages counted.
    pub messages_consumed: u64,
    /// Messages whose publishing failed.
    pub messages_failed: u64,
    /// Produced messages never counted.
    pub messages_lost: u64,
    /// Deliveries of a message already counted.
    pub duplicates: u64,
    /// Deliveries that were not play messages.
    pub rejected: u64,
    pub videos: usize,
    pub publications: u64,
    pub max_videos_per_publication: usize,
    pub latest_consumption_ms: f64,
    pub avg_consumption_ms: f64,
    /// Every video's last published count equals its true count.
    pub counts_published: bool,
    pub elapsed_s: f64,
    /// Messages counted per second, from the first to the last counted.
    pub messages_per_s: f64,
    /// The processor's final counts (not part of the printed summary).
    #[serde(skip)]
    pub counts: std::collections::HashMap<String, u64>,
}

/// The processor's shared state: the counts and the consumption times.
struct Processing {
    counter: Counter,
    rejected: u64,
    latest_ms: f64,
    sum_ms: f64,
    /// Consumption times since the chart's last point.
    window_sum: f64,
    window_n: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    publications: u64,
    widest: usize,
}

impl Processing {
    fn consumption(&self, produced: u64) -> Consumption {
        let n = self.counter.counted();
        Consumption {
            produced,
            consumed: n,
            latest_ms: self.latest_ms,
            average_ms: if n > 0 { self.sum_ms / n as f64 } else { 0.0 },
        }
    }

    /// Hands publications to the feed, keeping the summary's counts.
    fn publish(&mut self, feed: &PlaysFeed, publications: Vec<rules::Publication>) {
        for p in publications {
            self.publications += 1;
            self.widest = self.widest.max(p.videos.len());
            feed.published(p);
        }
    }
}

type Shared = Arc<Mutex<Processing>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Processing> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// `count` video ids, UUIDs drawn from `seed`.
pub fn video_ids(count: usize, seed: u64) -> Vec<String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string()
        })
        .collect()
}

/// Runs the scenario on `broker` to its end, feeding `feed` as it goes.
pub async fn run(
    broker: Arc<dyn Broker>,
    settings: &PlaysSettings,
    feed: Arc<PlaysFeed>,
) -> Result<PlaysSummary, BrokerError> {
    if settings.messages > MAX_SEQ {
        return Err(BrokerError::Config(format!(
            "a plays run carries at most {MAX_SEQ} messages"
        )));
    }
    feed.reset();
    let started = Instant::now();
    let topic = settings
        .topic
        .clone()
        .unwrap_or_else(|| format!("plays.{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let videos = Arc::new(video_ids(settings.videos.max(1), settings.seed));
    let threads = settings.threads.max(1);
    let producers = (settings.pc_ratio.max(1) * threads).min(settings.messages.max(1) as usize);

    // The processor joins first: on a broadcasting broker every thread shares one
    // subscription, elsewhere each has its own consumer in the group.
    let mut inputs = Vec::new();
    if broker.semantics().work_sharing() {
        for _ in 0..threads {
            let c = broker.consumer(&topic, "plays").await?;
            inputs.push(Arc::new(tokio::sync::Mutex::new(c)));
        }
    } else {
        let c = Arc::new(tokio::sync::Mutex::new(
            broker.consumer(&topic, "plays").await?,
        ));
        inputs.resize(threads, c);
    }

    let shared: Shared = Arc::new(Mutex::new(Processing {
        counter: Counter::new(),
        rejected: 0,
        latest_ms: 0.0,
        sum_ms: 0.0,
        window_sum: 0.0,
        window_n: 0,
        first: None,
        last: None,
        publications: 0,
        widest: 0,
    }));
    let (stop, stopped) = watch::channel(false);
    let produced = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let producing = {
        let broker = broker.clone();
        let topic = topic.clone();
        let videos = videos.clone();
        let messages = settings.messages;
        let seed = settings.seed;
        let produced = produced.clone();
        async move {
            produce(
                &*broker, &topic, &videos, messages, producers, seed, produced,
            )
            .await
        }
    };
    let mut producing = Some(producing);
    let mut failed = 0;
    if !settings.real_life
        && let Some(p) = producing.take()
    {
        failed = p.await?;
    }

    let mut tasks = JoinSet::new();
    for input in inputs {
        tasks.spawn(consume(
            input,
            shared.clone(),
            feed.clone(),
            stopped.clone(),
        ));
    }
    tasks.spawn(tick(
        settings.update_interval,
        shared.clone(),
        feed.clone(),
        stopped.clone(),
    ));
    tasks.spawn(report(
        started,
        shared.clone(),
        feed.clone(),
        produced.clone(),
        stopped.clone(),
    ));
    if let Some(p) = producing.take() {
        failed = p.await?;
    }
    let total = settings.messages - failed;

    // Wait until every produced message is counted, or none came for `idle`.
    let mut seen = 0;
    let mut quiet_since = Instant::now();
    loop {
        let counted = lock(&shared).counter.counted();
        if counted >= total {
            break;
        }
        if counted != seen {
            seen = counted;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= settings.idle {
            tracing::error!(
                "plays: {counted} of {total} messages counted and none for {:?}; giving up",
                settings.idle
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("plays: a processor task failed: {e}");
        }
    }

    // The end of the run is a last tick: every changed count goes out.
    let mut p = lock(&shared);
    let last = p.counter.due_at_tick();
    p.publish(&feed, last);
    let consumption = p.consumption(total);
    // The chart's last point: what was counted since the last report.
    let point = (p.window_n > 0).then(|| SeriesPoint {
        t_s: started.elapsed().as_secs_f64(),
        ms: p.window_sum / p.window_n as f64,
    });
    feed.consumption(consumption, point);
    feed.finished();

    let counted = p.counter.counted();
    let counts = p.counter.counts();
    let rate_s = match (p.first, p.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(PlaysSummary {
        broker: broker.kind().to_string(),
        mode: if settings.real_life {
            "real-life"
        } else {
            "backed-up"
        },
        threads,
        producers,
        messages_produced: total,
        messages_consumed: counted,
        messages_failed: failed,
        messages_lost: total.saturating_sub(counted),
        duplicates: p.counter.duplicates(),
        rejected: p.rejected,
        videos: p.counter.videos(),
        publications: p.publications,
        max_videos_per_publication: p.widest,
        latest_consumption_ms: consumption.latest_ms,
        avg_consumption_ms: consumption.average_ms,
        counts_published: p.counter.published() == counts,
        elapsed_s: started.elapsed().as_secs_f64(),
        messages_per_s: if rate_s > 0.0 {
            counted as f64 / rate_s
        } else {
            0.0
        },
        counts,
    })
}

/// Publishes `messages` plays from `producers` producers; returns how many failed.
async fn produce(
    broker: &dyn Broker,
    topic: &str,
    videos: &Arc<Vec<String>>,
    messages: u64,
    producers: usize,
    seed: u64,
    produced: Arc<std::sync::atomic::AtomicU64>,
) -> Result<u64, BrokerError> {
    let mut tasks = JoinSet::new();
    for p in 0..producers as u64 {
        let publisher = broker.publisher().await?;
        let topic = topic.to_string();
        let videos = videos.clone();
        let produced = produced.clone();
        tasks.spawn(async move {
            let mut rng =
                SmallRng::seed_from_u64(seed ^ (p + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Producer p sends the sequence numbers p, p + P, p + 2P, ...
            let seqs: Vec<u64> = (p..messages).step_by(producers).collect();
            let mut failed = 0;
            for chunk in seqs.chunks(PRODUCE_BATCH) {
                let at = now_s();
                let batch: Vec<Vec<u8>> = chunk
                    .iter()
                    .map(|&seq| {
                        let video = &videos[rng.random_range(0..videos.len())];
                        PlayMessage {
                            video_id: video.as_str().into(),
                            enqueued_at: at,
                            seq,
                        }
                        .to_bytes()
                    })
                    .collect();
                if publish(&*publisher, &topic, &batch).await {
                    produced.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::names::PLAYS_PRODUCED)
                        .increment(chunk.len() as u64);
                } else {
                    failed += chunk.len() as u64;
                }
            }
            failed
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        failed += done.map_err(|e| BrokerError::Unavailable(format!("a producer failed: {e}")))?;
    }
    Ok(failed)
}

/// Publishes one batch, retrying a few times with backoff; false if it never went.
async fn publish(publisher: &dyn Publisher, topic: &str, batch: &[Vec<u8>]) -> bool {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=PUBLISH_ATTEMPTS {
        match publisher.publish(topic, batch).await {
            Ok(()) => return true,
            Err(e) if attempt == PUBLISH_ATTEMPTS => {
                tracing::error!("plays: publishing {} messages failed: {e}", batch.len());
            }
            Err(e) => {
                tracing::warn!("plays: publishing failed, retrying: {e}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    false
}

/// One consumer thread of the processor.
async fn consume(
    input: Arc<tokio::sync::Mutex<Box<dyn Consumer>>>,
    shared: Shared,
    feed: Arc<PlaysFeed>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let batch = {
            let mut consumer = input.lock().await;
            let taken = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                taken = consumer.next_batch(CONSUME_BATCH) => taken,
            };
            match taken {
                Ok(taken) => taken,
                Err(BrokerError::Closed) => return,
                Err(e) => {
                    tracing::warn!("plays: {e}; retrying");
                    drop(consumer);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        count(&batch, &shared, &feed);
        for d in batch {
            // A lost ack means a redelivery, which counts once.
            if let Err(e) = d.ack().await {
                tracing::debug!("plays: ack failed: {e}");
            }
        }
    }
}

/// Counts a batch under one lock and publishes what is due.
fn count(batch: &[Delivery], shared: &Shared, feed: &PlaysFeed) {
    let parsed: Vec<_> = batch
        .iter()
        .map(|d| PlayMessage::parse(&d.payload))
        .collect();
    let now = now_s();
    let mut p = lock(shared);
    let at = Instant::now();
    p.first.get_or_insert(at);
    let consumed = metrics::counter!(crate::telemetry::names::PLAYS_CONSUMED);
    for m in parsed {
        match m {
            Ok(m) => {
                if p.counter.record(&m.video_id, m.seq) {
                    consumed.increment(1);
                    let ms = ((now - m.enqueued_at) * 1_000.0).max(0.0);
                    p.latest_ms = ms;
                    p.sum_ms += ms;
                    p.window_sum += ms;
                    p.window_n += 1;
                    p.last = Some(at);
                }
            }
            Err(e) => {
                if p.rejected == 0 {
                    tracing::warn!("plays: rejected a message: {e}");
                }
                p.rejected += 1;
            }
        }
    }
    let due = p.counter.due_now();
    p.publish(feed, due);
}

/// Publishes every changed count at each update interval.
async fn tick(
    every: Duration,
    shared: Shared,
    feed: Arc<PlaysFeed>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every.max(Duration::from_millis(1)));
    interval.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {
                let mut p = lock(&shared);
                let due = p.counter.due_at_tick();
                p.publish(&feed, due);
            }
        }
    }
}

/// Sends consumption times to the feed a few times a second.
async fn report(
    started: Instant,
    shared: Shared,
    feed: Arc<PlaysFeed>,
    produced: Arc<std::sync::atomic::AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(STATS_EVERY);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = interval.tick() => {
                let (now, point) = {
                    let mut p = lock(&shared);
                    let point = (p.window_n > 0).then(|| SeriesPoint {
                        t_s: started.elapsed().as_secs_f64(),
                        ms: p.window_sum / p.window_n as f64,
                    });
                    p.window_sum = 0.0;
                    p.window_n = 0;
                    (p.consumption(produced.load(std::sync::atomic::Ordering::Relaxed)), point)
                };
                feed.consumption(now, point);
            }
        }
    }
}
