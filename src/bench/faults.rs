//! The faults workload: one producer paced at a share of the broker's sustainable
//! rate while one consumer at a time takes the messages; part way through, the
//! consumer is killed without warning and a new one joins the group. The audit counts
//! what was lost (confirmed by the broker, never delivered), delivered twice, and
//! delivered out of order per key, and how long the new consumer took to get its
//! first message.
//!
//! On a network broker the consumer is a process of its own (this program's hidden
//! `bench-consumer` command), killed with SIGKILL: its connections drop as a crashed
//! worker's do, with whatever it held unacknowledged. It writes the sequence numbers
//! of each batch to its stdout before acknowledging the batch, so nothing it
//! acknowledged escapes the audit. The embedded broker lives in this process, so its
//! consumer is a task, aborted instead.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

use super::rates::paced;
use super::raw::{self, Counts, KeyOrder, RawWorkload, Sample, Sampler, decode};
use crate::broker::{Broker, BrokerError, Consumer, Delivery};

/// The environment variable that gives a consumer process its broker's URL (not an
/// argument: the URL may hold a password, and arguments are public).
pub const BROKER_VAR: &str = "SUPERHERO_BENCH_BROKER";
/// The consumers' group.
const GROUP: &str = "bench-faults";
/// This process's own program, as the kernel holds it.
const SELF_EXE: &str = "/proc/self/exe";
/// How long the end of a run with a restarted broker waits for one more message at
/// least.
const RESTART_IDLE: Duration = Duration::from_secs(30);
/// How long a producer publishes once the broker is back, when its restart outlasted
/// the run's publishing.
const TAIL: Duration = Duration::from_secs(2);
/// How long a consumer process may take to subscribe.
const READY_WAIT: Duration = Duration::from_secs(30);

/// What the faults workload runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultsWorkload {
    /// How long the producer publishes, in seconds.
    pub seconds: f64,
    /// The producer's rate, as a share of the sustainable rate (of the throughput
    /// run's consumed/s when the search did not run).
    pub fraction: f64,
    /// When the consumer is killed, as a share of `seconds`.
    pub kill_at: f64,
    /// Restart the broker's server too, where it runs on this machine (it stops
    /// everything else using it for a while: opt in).
    pub restart: bool,
    /// When the broker is restarted, as a share of `seconds`.
    pub restart_at: f64,
}

impl FaultsWorkload {
    /// The run of a full evaluation.
    pub fn full() -> Self {
        Self {
            seconds: 20.0,
            fraction: 0.5,
            kill_at: 0.3,
            restart: false,
            restart_at: 0.6,
        }
    }

    /// A run of a few seconds.
    pub fn quick() -> Self {
        Self {
            seconds: 3.0,
            ..Self::full()
        }
    }
}

/// A fault and what followed it.
#[derive(Clone, Debug, Serialize)]
pub struct Recovery {
    /// What was done (`SIGKILL of the consumer process 1234`...).
    pub fault: String,
    /// When, in seconds from the start of publishing.
    pub at_s: f64,
    /// From the fault to the first message delivered after it (for a restart,
    /// once the broker was back); none if none came.
    pub resumed_after_s: Option<f64>,
    /// How long the broker was unreachable (a restart: from the stop signal to its
    /// port accepting connections again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_s: Option<f64>,
    /// The broker was back only after the producer had stopped; two more seconds of
    /// messages were then published, and nothing delivered after it means that tail
    /// could not be published either.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub back_after_publishing: bool,
}

/// What one broker did under the faults workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultsResult {
    /// The producer's rate, messages per second.
    pub rate: f64,
    /// Messages the broker confirmed.
    pub published: u64,
    pub publish_errors: u64,
    /// Distinct messages delivered.
    pub consumed: u64,
    /// Confirmed, never delivered.
    pub lost: u64,
    /// Delivered though their publishing failed (the broker took them, its answer
    /// did not come back).
    pub unconfirmed_delivered: u64,
    /// Messages published once a restarted broker was back after the producer's
    /// time was up (two seconds' worth), counted in `published`.
    #[serde(skip_serializing_if = "is_zero")]
    pub tail: u64,
    /// Deliveries beyond a message's first.
    pub duplicates: u64,
    /// First deliveries that came after a later message of the same key.
    pub reordered: u64,
    pub faults: Vec<Recovery>,
    /// Faults asked for that could not be made, and why.
    pub not_done: Vec<String>,
    pub series: Vec<Sample>,
}

/// How the workload reaches the broker's consumers.
pub enum Consumers<'a> {
    /// Consumer processes of this program, on the broker at `url`.
    Processes {
        url: &'a str,
        /// `--claim-after`, handed on.
        claim_after: Duration,
        /// `--prefetch`, handed on.
        prefetch: Option<usize>,
    },
    /// Consumer tasks in this process.
    Tasks,
}

/// What the consumers delivered, as the audit sees it.
struct Audit {
    seen: HashSet<u64>,
    duplicates: u64,
    /// One producer's keys.
    order: KeyOrder,
    /// Moments marked (a fault, a broker back up), each with the first delivery at
    /// or after it.
    marks: Vec<(Instant, Option<Instant>)>,
    last: Option<Instant>,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            seen: HashSet::new(),
            duplicates: 0,
            order: KeyOrder::new(1),
            marks: Vec::new(),
            last: None,
        }
    }
}

impl Audit {
    /// Marks `at`; the mark's number.
    fn mark(&mut self, at: Instant) -> usize {
        self.marks.push((at, None));
        self.marks.len() - 1
    }

    /// The first delivery at or after mark `n`.
    fn after(&self, n: usize) -> Option<Instant> {
        self.marks.get(n).and_then(|m| m.1)
    }

    fn record(&mut self, seqs: &[u64], counts: &Counts) {
        let now = Instant::now();
        for (at, first) in &mut self.marks {
            if first.is_none() && now >= *at {
                *first = Some(now);
            }
        }
        self.last = Some(now);
        let mut new = 0;
        for &seq in seqs {
            if self.seen.insert(seq) {
                new += 1;
                self.order.first_delivery(seq);
            } else {
                self.duplicates += 1;
            }
        }
        counts.consumed.fetch_add(new, Ordering::Relaxed);
    }
}

/// A consumer the workload can kill.
enum Running {
    Process {
        child: tokio::process::Child,
        reader: JoinHandle<()>,
    },
    Task(JoinHandle<()>),
}

impl Running {
    /// Kills it without warning; what it was (for the report).
    async fn kill(self) -> String {
        match self {
            Self::Process { mut child, reader } => {
                let pid = child.id().unwrap_or(0);
                // SIGKILL: tokio's kill sends it on Unix.
                if let Err(e) = child.kill().await {
                    tracing::warn!("bench: killing consumer process {pid}: {e}");
                }
                // What it wrote before dying is still in the pipe: read it all.
                let _ = reader.await;
                format!("SIGKILL of the consumer process {pid}")
            }
            Self::Task(task) => {
                task.abort();
                let _ = task.await;
                "the consumer task aborted (the broker runs in this process)".into()
            }
        }
    }
}

/// Starts a consumer and waits until it is subscribed.
async fn start(
    broker: &dyn Broker,
    how: &Consumers<'_>,
    topic: &str,
    ack_batch: usize,
    audit: &Arc<Mutex<Audit>>,
    counts: &Arc<Counts>,
) -> Result<Running, BrokerError> {
    match how {
        Consumers::Tasks => {
            let mut consumer = broker.consumer(topic, GROUP).await?;
            let (audit, counts) = (audit.clone(), counts.clone());
            Ok(Running::Task(tokio::spawn(async move {
                let mut acks = raw::Acks::new(ack_batch);
                while let Some(batch) = acks.next(consumer.as_mut()).await {
                    let seqs = sequence_numbers(&batch);
                    if let Ok(mut a) = audit.lock() {
                        a.record(&seqs, &counts);
                    }
                    acks.ack(batch);
                }
                acks.finish().await;
            })))
        }
        Consumers::Processes {
            url,
            claim_after,
            prefetch,
        } => {
            // This very program, even if its file was replaced since it started (a
            // rebuild): the kernel keeps the running image at /proc/self/exe.
            let mut command = tokio::process::Command::new(SELF_EXE);
            command
                .arg("--claim-after")
                .arg(claim_after.as_secs_f64().to_string())
                .args(["bench-consumer", topic, GROUP, "--ack-batch"])
                .arg(ack_batch.to_string());
            if let Some(n) = prefetch {
                command.arg("--prefetch").arg(n.to_string());
            }
            let mut child = command
                .env(BROKER_VAR, url)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    BrokerError::Unavailable(format!("cannot start a consumer process: {e}"))
                })?;
            let stdout = child.stdout.take().ok_or_else(|| {
                BrokerError::Unavailable("the consumer process has no stdout".into())
            })?;
            let mut lines = BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(READY_WAIT, lines.next_line()).await;
            match ready {
                Ok(Ok(Some(line))) if line == "ready" => {}
                Ok(Ok(other)) => {
                    return Err(BrokerError::Unavailable(format!(
                        "the consumer process did not subscribe ({})",
                        other.unwrap_or_else(|| "it ended; see its errors above".into())
                    )));
                }
                Ok(Err(e)) => {
                    return Err(BrokerError::Unavailable(format!(
                        "reading the consumer process: {e}"
                    )));
                }
                Err(_) => {
                    return Err(BrokerError::Unavailable(format!(
                        "the consumer process did not subscribe within {READY_WAIT:?}"
                    )));
                }
            }
            let (audit, counts) = (audit.clone(), counts.clone());
            let reader = tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let seqs: Vec<u64> = line
                        .strip_prefix("d ")
                        .unwrap_or("")
                        .split(' ')
                        .filter_map(|s| s.parse().ok())
                        .collect();
                    if let Ok(mut a) = audit.lock() {
                        a.record(&seqs, &counts);
                    }
                }
            });
            Ok(Running::Process { child, reader })
        }
    }
}

fn sequence_numbers(batch: &[Delivery]) -> Vec<u64> {
    batch
        .iter()
        .filter_map(|d| decode(&d.payload).map(|(seq, _)| seq))
        .collect()
}

/// The consumer process's side (`superhero bench-consumer`): says `ready` once
/// subscribed, then for each batch writes `d` and its messages' sequence numbers on
/// one line, flushed, before it acknowledges the batch.
pub async fn serve_consumer(
    mut consumer: Box<dyn Consumer>,
    ack_batch: usize,
    mut out: impl AsyncWrite + Unpin,
) -> Result<(), BrokerError> {
    let gone = |e: std::io::Error| BrokerError::Unavailable(format!("writing to the bench: {e}"));
    out.write_all(b"ready\n").await.map_err(gone)?;
    out.flush().await.map_err(gone)?;
    let mut acks = raw::Acks::new(ack_batch);
    while let Some(batch) = acks.next(consumer.as_mut()).await {
        let mut line = String::from("d");
        for seq in sequence_numbers(&batch) {
            line.push(' ');
            line.push_str(&seq.to_string());
        }
        line.push('\n');
        out.write_all(line.as_bytes()).await.map_err(gone)?;
        out.flush().await.map_err(gone)?;
        acks.ack(batch);
    }
    acks.finish().await;
    Ok(())
}

/// Runs the faults workload on `broker` at `rate` messages/s. `base` gives the
/// messages and batches (one producer, one consumer at a time); `idle`: how long the
/// run waits for a next delivery once publishing ended (a broker that redelivers a
/// dead consumer's messages only after a while needs that while); `restart`: the
/// broker's URL, when the workload restarts it.
pub async fn run(
    broker: &dyn Broker,
    how: &Consumers<'_>,
    base: &RawWorkload,
    w: &FaultsWorkload,
    rate: f64,
    idle: Duration,
    restart: Option<&str>,
) -> Result<FaultsResult, BrokerError> {
    raw::on_scratch_topic(broker, "bench.faults", &[GROUP], |topic| async move {
        let workload = RawWorkload {
            producers: 1,
            consumers: 1,
            ..paced(base, rate, w.seconds)
        };
        let audit = Arc::new(Mutex::new(Audit::default()));
        let counts = Arc::new(Counts::default());
        let ack_batch = workload.ack_batch.max(1);
        let first = start(broker, how, &topic, ack_batch, &audit, &counts).await?;
        let publisher = broker.publisher().await?;
        let began = Instant::now();
        let sampler = Sampler::start(&counts, began);
        let at = |share: f64| began + Duration::from_secs_f64(w.seconds * share.clamp(0.0, 1.0));
        let mark = |moment: Instant| audit.lock().map(|mut a| a.mark(moment)).ok();

        let faults = async {
            let mut done = Vec::new();
            let mut not_done = Vec::new();
            tokio::time::sleep_until(at(w.kill_at).into()).await;
            let killed = Instant::now();
            let what = first.kill().await;
            // What the dead consumer wrote before it died is in; from here on, only
            // the new consumer delivers.
            done.push((killed, what, mark(Instant::now()), None, None));
            let second = start(broker, how, &topic, ack_batch, &audit, &counts).await;
            if let Some(url) = restart.filter(|_| second.is_ok()) {
                tokio::time::sleep_until(at(w.restart_at).into()).await;
                let stopping = Instant::now();
                match super::restart::restart(url).await {
                    Ok(r) => done.push((
                        stopping,
                        format!(
                            "the broker's server restarted ({} of process {}, now {})",
                            r.stopped_by, r.pids.0, r.pids.1
                        ),
                        mark(r.up_at),
                        Some(r.down.as_secs_f64()),
                        Some(r.up_at),
                    )),
                    Err(e) => not_done.push(format!("the broker was not restarted: {e}")),
                }
            }
            (done, not_done, second)
        };
        let (published, (done, mut not_done, second)) = tokio::join!(
            raw::publish_all(
                vec![publisher],
                &topic,
                &workload,
                0..workload.messages,
                began,
                &counts
            ),
            faults
        );
        let mut published = published?;
        let second = second?;
        let publishing_ended = at(1.0);

        // A broker back only once the producer had stopped (a slow start) gets a tail
        // of messages, so that its recovery is measured as every other broker's is.
        let back_late = done
            .iter()
            .filter_map(|d| d.4)
            .any(|up| up >= publishing_ended);
        let mut tail_published = 0;
        if back_late {
            let tail = RawWorkload {
                messages: ((rate * TAIL.as_secs_f64()).ceil() as u64).max(1),
                deadline: Some(began.elapsed() + 2 * TAIL),
                ..workload.clone()
            };
            let seqs = workload.messages..workload.messages + tail.messages;
            let more = match broker.publisher().await {
                Ok(p) => raw::publish_all(vec![p], &topic, &tail, seqs, began, &counts).await,
                Err(e) => Err(e),
            };
            match more {
                Ok(more) => {
                    tail_published = more.ok;
                    published.add(more);
                }
                Err(e) => not_done.push(format!("no tail published after the restart: {e}")),
            }
        }

        // Wait for every message, or until nothing came for `idle` (a restarted broker's
        // clients may need a while to find it again).
        let idle = if done.iter().any(|d| d.3.is_some()) {
            idle.max(RESTART_IDLE)
        } else {
            idle
        };
        let delivered = || {
            let a = audit.lock().ok()?;
            Some((a.seen.len() as u64, a.last))
        };
        raw::wait_for_deliveries(published.ok, idle, None, delivered).await;
        second.kill().await;
        let series = sampler.finish().await;

        let a = audit
            .lock()
            .map_err(|_| BrokerError::Unavailable("the audit was poisoned".into()))?;
        let consumed = a.seen.len() as u64;
        let unconfirmed_delivered = published
            .unconfirmed
            .iter()
            .filter(|seq| a.seen.contains(seq))
            .count() as u64;
        let faults = done
            .into_iter()
            .map(|(when, fault, mark, down_s, up_at)| Recovery {
                fault,
                at_s: when.saturating_duration_since(began).as_secs_f64(),
                resumed_after_s: mark
                    .and_then(|m| a.after(m))
                    .map(|t| t.saturating_duration_since(when).as_secs_f64()),
                down_s,
                back_after_publishing: up_at.is_some_and(|up| up >= publishing_ended),
            })
            .collect();
        Ok(FaultsResult {
            rate,
            published: published.ok,
            publish_errors: published.failed,
            consumed,
            lost: published
                .ok
                .saturating_sub(consumed - unconfirmed_delivered),
            unconfirmed_delivered,
            tail: tail_published,
            duplicates: a.duplicates,
            reordered: a.order.reordered,
            faults,
            not_done,
            series,
        })
    })
    .await
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A sentence on one broker's faults run.
pub fn verdict(name: &str, r: &FaultsResult) -> String {
    let mut parts = Vec::new();
    for f in &r.faults {
        let down = f
            .down_s
            .map_or(String::new(), |d| format!(", down {d:.1} s"));
        parts.push(match f.resumed_after_s {
            Some(s) => format!(
                "{} at {:.1} s{down}, messages flowing again after {s:.2} s",
                f.fault, f.at_s
            ),
            None if f.back_after_publishing => format!(
                "{} at {:.1} s{down}, back after the producer had stopped (a longer \
                 --fault-seconds shows the recovery)",
                f.fault, f.at_s
            ),
            None => format!(
                "{} at {:.1} s{down}, and no message was delivered after it",
                f.fault, f.at_s
            ),
        });
    }
    parts.extend(r.not_done.iter().cloned());
    parts.push(if r.lost == 0 {
        "nothing lost".into()
    } else {
        format!("{} of {} messages lost", r.lost, r.published)
    });
    parts.push(format!("{} delivered twice", r.duplicates));
    parts.push(format!("{} out of order per key", r.reordered));
    format!(
        "{name} (faults, {:.0} msg/s): {}.",
        r.rate,
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;

    #[test]
    fn the_audit_counts_duplicates_and_order_per_key() {
        let counts = Counts::default();
        let mut a = Audit::default();
        let mark = a.mark(Instant::now());
        a.record(&[0, 1, 16, 2], &counts);
        // 16 and 0 share a key: 0 again is a duplicate, not a reordering.
        a.record(&[0, 32, 17], &counts);
        assert_eq!((a.duplicates, a.order.reordered), (1, 0));
        // 49 and 33 share key 1 with 17: 33 after 49 is out of order.
        a.record(&[49, 33], &counts);
        assert_eq!(a.order.reordered, 1);
        assert_eq!(counts.consumed.load(Ordering::Relaxed), 8);
        assert!(a.after(mark).is_some());
        let later = a.mark(Instant::now() + Duration::from_secs(3600));
        a.record(&[50], &counts);
        assert!(a.after(later).is_none(), "no delivery after the mark yet");
    }

    #[tokio::test]
    async fn a_killed_consumer_loses_nothing_on_a_work_queue() {
        let base = RawWorkload {
            size: 32,
            ack_batch: 32,
            publish_batch: 32,
            ..RawWorkload::default()
        };
        let w = FaultsWorkload {
            seconds: 1.0,
            kill_at: 0.4,
            ..FaultsWorkload::full()
        };
        let r = run(
            &MemoryBroker::new(),
            &Consumers::Tasks,
            &base,
            &w,
            2_000.0,
            Duration::from_secs(2),
            None,
        )
        .await
        .unwrap();
        assert!(r.published >= 1_500, "{r:?}");
        assert_eq!(r.lost, 0, "{r:?}");
        assert_eq!(r.consumed, r.published);
        let fault = &r.faults[0];
        assert!(fault.fault.contains("aborted"), "{fault:?}");
        assert!((0.3..0.6).contains(&fault.at_s), "{fault:?}");
        assert!(fault.resumed_after_s.is_some(), "{fault:?}");
    }
}
