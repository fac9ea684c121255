//! The paced workloads, each a series of runs of the raw one at set producer rates
//! (the raw workload's messages, producers, consumers and batches):
//!
//! - the highest sustainable rate ([`sustainable`]): probes at rising and falling
//!   rates until the highest rate at which the backlog does not grow and the p99
//!   latency stays under a bound is known within a set precision;
//! - latency at fixed rates ([`fixed_rates`]): runs at fractions of that rate (or of
//!   the throughput workload's consumed/s when the search did not run, or at rates
//!   given outright), each reporting the end-to-end and publish latencies from the
//!   messages' intended send times, p50 to p99.99 and the maximum.

use std::time::Duration;

use serde::Serialize;

use super::process::{BrokerProcess, ProcessUsage, watch};
use super::raw::{self, RawResult, RawWorkload};
use crate::broker::{Broker, BrokerError};

/// The lowest rate a search goes down to, messages per second.
pub const MIN_SEARCH_RATE: f64 = 1.0;
/// A probe keeps up when it publishes at least this share of its rate...
const KEPT_UP: f64 = 0.95;
/// ...and its backlog grows by at most this share of what it published meanwhile.
const BACKLOG_SLACK: f64 = 0.05;

/// How the highest sustainable rate is searched for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SustainableWorkload {
    /// The p99 end-to-end latency a sustained rate stays under, in milliseconds.
    pub p99_bound_ms: f64,
    /// How long each probe publishes, in seconds.
    pub probe_seconds: f64,
    /// Probes at most.
    pub max_probes: usize,
    /// The search ends when the lowest failing rate is at most this fraction above
    /// the highest sustained one (0.1: within 10%).
    pub precision: f64,
    /// The first rate tried; none: the throughput workload's consumed/s on the same
    /// broker, or 1,000 messages/s when it did not run.
    pub start_rate: Option<f64>,
}

impl SustainableWorkload {
    /// The search of a full run.
    pub fn full() -> Self {
        Self {
            p99_bound_ms: 100.0,
            probe_seconds: 5.0,
            max_probes: 10,
            precision: 0.1,
            start_rate: None,
        }
    }

    /// A search of a few seconds.
    pub fn quick() -> Self {
        Self {
            probe_seconds: 1.0,
            max_probes: 8,
            precision: 0.25,
            ..Self::full()
        }
    }
}

/// One probe of the search.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// The producers' rate, messages per second.
    pub rate: f64,
    pub published_per_s: f64,
    pub consumed_per_s: f64,
    /// How much the backlog grew over the second half of publishing, in messages.
    pub backlog_growth: i64,
    pub p99_ms: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub sustained: bool,
    /// What failed, when it was not sustained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The broker's process during the probe, when it runs here: near a core busy
    /// at the highest sustained rate says the broker, not the bench, set the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_process: Option<ProcessUsage>,
}

/// What the search found on one broker.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SustainableResult {
    /// The highest rate sustained, messages per second; none if even the lowest
    /// rate tried was not.
    pub rate_per_s: Option<f64>,
    /// The lowest rate that was not sustained, if one was tried.
    pub fails_at: Option<f64>,
    /// Whether the two are within the search's precision.
    pub converged: bool,
    /// The p99 latency at the highest sustained rate, in milliseconds.
    pub p99_ms: Option<f64>,
    pub probes: Vec<Probe>,
}

/// The workload of the latency runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyWorkload {
    /// Fractions of the reference rate (the highest sustainable one, else the
    /// throughput workload's consumed/s) to run at.
    pub fractions: Vec<f64>,
    /// Rates to run at outright, messages per second, beside the fractions.
    pub rates: Vec<f64>,
    /// How long each run publishes, in seconds.
    pub seconds: f64,
}

impl LatencyWorkload {
    /// The runs of a full evaluation.
    pub fn full() -> Self {
        Self {
            fractions: vec![0.1, 0.5, 0.9],
            rates: Vec::new(),
            seconds: 10.0,
        }
    }

    /// Runs of a second or two.
    pub fn quick() -> Self {
        Self {
            seconds: 2.0,
            ..Self::full()
        }
    }
}

/// One run at a fixed rate.
#[derive(Clone, Debug, Serialize)]
pub struct FixedRateRun {
    /// The fraction of the reference rate, when the rate is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// The producers' rate, messages per second.
    pub rate: f64,
    pub result: RawResult,
}

/// A paced run of `base` at `rate` for `seconds`: messages enough for that time, the
/// first tenth of it (at most a second) left out of the latencies, publishing cut at
/// a fifth over time so a rate beyond the broker ends anyway, and at most as long
/// again to drain.
pub(super) fn paced(base: &RawWorkload, rate: f64, seconds: f64) -> RawWorkload {
    let span = Duration::from_secs_f64(seconds.max(0.001));
    RawWorkload {
        messages: ((rate * seconds).ceil() as u64).max(1),
        rate: Some(rate),
        warmup: (span / 10).min(Duration::from_secs(1)),
        deadline: Some(span + span / 5),
        drain: Some(span.max(Duration::from_secs(2))),
        ..base.clone()
    }
}

/// Searches for the highest sustainable rate on `broker`. `copies`: deliveries each
/// message gets (see [`raw::run`]); `start`: the first rate when the workload names
/// none; `probing` is told of each rate before it is tried.
pub async fn sustainable(
    broker: &dyn Broker,
    base: &RawWorkload,
    w: &SustainableWorkload,
    copies: u64,
    start: Option<f64>,
    process: Option<&BrokerProcess>,
    probing: impl Fn(f64),
) -> Result<SustainableResult, BrokerError> {
    let mut found = SustainableResult::default();
    let mut rate = w
        .start_rate
        .or(start)
        .unwrap_or(1_000.0)
        .max(MIN_SEARCH_RATE);
    let mut best_p99 = None;
    for _ in 0..w.max_probes.max(1) {
        probing(rate);
        let workload = paced(base, rate, w.probe_seconds);
        let running = raw::run(broker, &workload, copies, |_| {});
        let (run, usage) = watch(process, running).await;
        let probe = Probe {
            broker_process: usage,
            ..judge(rate, &run?, w, base)
        };
        if probe.sustained {
            if found.rate_per_s.is_none_or(|best| rate > best) {
                found.rate_per_s = Some(rate);
                best_p99 = Some(probe.p99_ms);
            }
        } else if found.fails_at.is_none_or(|low| rate < low) {
            found.fails_at = Some(rate);
        }
        found.probes.push(probe);
        rate = match (found.rate_per_s, found.fails_at) {
            (Some(ok), None) => ok * 2.0,
            (None, Some(bad)) if bad / 2.0 >= MIN_SEARCH_RATE => bad / 2.0,
            (None, Some(_)) => break,
            (Some(ok), Some(bad)) if bad <= ok * (1.0 + w.precision) => {
                found.converged = true;
                break;
            }
            (Some(ok), Some(bad)) => (ok * bad).sqrt(),
            (None, None) => break,
        };
    }
    found.p99_ms = best_p99;
    Ok(found)
}

/// Whether a probe at `rate` was sustained, and if not, why.
fn judge(rate: f64, run: &RawResult, w: &SustainableWorkload, base: &RawWorkload) -> Probe {
    let end = run.publish_s;
    let growth = match (run.backlog_at(end / 2.0), run.backlog_at(end)) {
        (Some(mid), Some(last)) => last as i64 - mid as i64,
        _ => 0,
    };
    let second_half = rate * w.probe_seconds / 2.0;
    // Messages a consumer holds unsettled come and go a batch at a time.
    let slack = BACKLOG_SLACK * second_half + (base.ack_batch * base.consumers) as f64;
    let mut why = Vec::new();
    if run.publish_per_s < KEPT_UP * rate {
        why.push(format!(
            "the producers reached {:.0} msg/s",
            run.publish_per_s
        ));
    }
    if growth as f64 > slack {
        why.push(format!("the backlog grew by {growth} messages"));
    }
    if run.latency.p99_ms > w.p99_bound_ms {
        why.push(format!(
            "p99 {:.1} ms over the bound of {} ms",
            run.latency.p99_ms, w.p99_bound_ms
        ));
    }
    if run.consumed < run.published {
        why.push(format!(
            "{} messages not consumed in time",
            run.published - run.consumed
        ));
    }
    Probe {
        rate,
        published_per_s: run.publish_per_s,
        consumed_per_s: run.consume_per_s,
        backlog_growth: growth,
        p99_ms: run.latency.p99_ms,
        lost: run.lost,
        duplicates: run.duplicates,
        sustained: why.is_empty(),
        why: (!why.is_empty()).then(|| why.join("; ")),
        broker_process: None,
    }
}

/// The rates of the latency runs: the fractions of `reference` (none when there is
/// no reference), then the rates given outright.
pub fn run_rates(w: &LatencyWorkload, reference: Option<f64>) -> Vec<(Option<f64>, f64)> {
    let fractions = reference
        .into_iter()
        .flat_map(|r| w.fractions.iter().map(move |&f| (Some(f), f * r)));
    fractions
        .chain(w.rates.iter().map(|&r| (None, r)))
        .filter(|&(_, r)| r >= MIN_SEARCH_RATE)
        .collect()
}

/// Runs `base` paced at each rate of [`run_rates`], watching the broker's `process`
/// during each; `running` is told of each rate.
pub async fn fixed_rates(
    broker: &dyn Broker,
    base: &RawWorkload,
    w: &LatencyWorkload,
    copies: u64,
    reference: Option<f64>,
    process: Option<&BrokerProcess>,
    running: impl Fn(f64),
) -> Result<Vec<FixedRateRun>, BrokerError> {
    let mut runs = Vec::new();
    for (fraction, rate) in run_rates(w, reference) {
        running(rate);
        let workload = paced(base, rate, w.seconds);
        let (result, usage) = watch(process, raw::run(broker, &workload, copies, |_| {})).await;
        runs.push(FixedRateRun {
            fraction,
            rate,
            result: RawResult {
                broker_process: usage,
                ..result?
            },
        });
    }
    Ok(runs)
}

/// A sentence on one broker's search, from its numbers alone.
pub fn sustainable_verdict(name: &str, w: &SustainableWorkload, r: &SustainableResult) -> String {
    let probes = r.probes.len();
    match (r.rate_per_s, r.fails_at) {
        (Some(ok), Some(bad)) if r.converged => format!(
            "{name} (sustainable): {ok:.0} msg/s with p99 {:.1} ms (not at {bad:.0}; \
             {probes} probes of {} s).",
            r.p99_ms.unwrap_or(0.0),
            w.probe_seconds
        ),
        (Some(ok), _) => format!(
            "{name} (sustainable): at least {ok:.0} msg/s, with p99 {:.1} ms; the search \
             stopped after {probes} probes before it found the limit within {:.0}%.",
            r.p99_ms.unwrap_or(0.0),
            w.precision * 100.0
        ),
        (None, Some(bad)) => format!(
            "{name} (sustainable): no rate tried was sustained, down to {bad:.0} msg/s \
             ({}).",
            r.probes
                .last()
                .and_then(|p| p.why.as_deref())
                .unwrap_or("no reason recorded")
        ),
        (None, None) => format!("{name} (sustainable): nothing was probed."),
    }
}

/// A sentence per run at a fixed rate.
pub fn latency_verdict(name: &str, runs: &[FixedRateRun]) -> Vec<String> {
    runs.iter()
        .map(|run| {
            let r = &run.result;
            let at = match run.fraction {
                Some(f) => format!("{:.0}% ({:.0} msg/s)", f * 100.0, run.rate),
                None => format!("{:.0} msg/s", run.rate),
            };
            let mut line = format!(
                "{name} (latency at {at}): p50 {:.2} ms, p99 {:.2} ms, p99.99 {:.2} ms, \
                 max {:.2} ms from the intended send time",
                r.latency.p50_ms, r.latency.p99_ms, r.latency.p99_99_ms, r.latency.max_ms
            );
            if r.publish_per_s < KEPT_UP * run.rate {
                line.push_str(&format!(
                    "; the producers fell behind, at {:.0} msg/s",
                    r.publish_per_s
                ));
            }
            if r.lost > 0 {
                line.push_str(&format!("; {} of {} not consumed", r.lost, r.published));
            }
            line.push('.');
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::MemoryBroker;
    use crate::latency::Latency;

    fn base() -> RawWorkload {
        RawWorkload {
            messages: 1,
            size: 32,
            ack_batch: 64,
            publish_batch: 64,
            idle: Duration::from_secs(1),
            ..RawWorkload::default()
        }
    }

    fn result(publish_per_s: f64, backlog: [(f64, u64, u64); 2], p99_ms: f64) -> RawResult {
        RawResult {
            published: backlog[1].1,
            consumed: backlog[1].1,
            publish_per_s,
            publish_s: backlog[1].0,
            latency: Latency {
                p99_ms,
                ..Latency::default()
            },
            series: backlog
                .iter()
                .map(|&(t_s, published, consumed)| raw::Sample {
                    t_s,
                    published,
                    consumed,
                })
                .collect(),
            ..RawResult::default()
        }
    }

    #[test]
    fn a_probe_fails_on_each_of_its_limits() {
        let w = SustainableWorkload::full();
        let rate = 1_000.0;
        let steady = result(1_000.0, [(2.5, 2_500, 2_400), (5.0, 5_000, 4_900)], 3.0);
        let p = judge(rate, &steady, &w, &base());
        assert!(p.sustained, "{p:?}");
        assert_eq!(p.backlog_growth, 0);

        let behind = result(800.0, [(2.5, 2_500, 2_400), (5.0, 5_000, 4_900)], 3.0);
        let p = judge(rate, &behind, &w, &base());
        assert!(!p.sustained);
        assert!(p.why.unwrap().contains("producers reached 800"));

        let growing = result(1_000.0, [(2.5, 2_500, 2_000), (5.0, 5_000, 3_000)], 3.0);
        let p = judge(rate, &growing, &w, &base());
        assert_eq!(p.backlog_growth, 1_500);
        assert!(p.why.unwrap().contains("backlog grew by 1500"));

        let slow = result(1_000.0, [(2.5, 2_500, 2_400), (5.0, 5_000, 4_900)], 250.0);
        assert!(
            judge(rate, &slow, &w, &base())
                .why
                .unwrap()
                .contains("p99 250.0 ms")
        );
    }

    #[test]
    fn latency_rates_come_from_the_reference_and_the_list() {
        let w = LatencyWorkload {
            fractions: vec![0.1, 0.5],
            rates: vec![300.0, 0.5],
            seconds: 1.0,
        };
        assert_eq!(
            run_rates(&w, Some(1_000.0)),
            [(Some(0.1), 100.0), (Some(0.5), 500.0), (None, 300.0)]
        );
        assert_eq!(run_rates(&w, None), [(None, 300.0)]);
    }

    #[tokio::test]
    async fn the_search_brackets_the_embedded_brokers_rate() {
        let w = SustainableWorkload {
            p99_bound_ms: 1_000.0,
            probe_seconds: 0.3,
            max_probes: 12,
            precision: 0.5,
            start_rate: Some(2_000.0),
        };
        let found = sustainable(&MemoryBroker::new(), &base(), &w, 1, None, None, |_| {})
            .await
            .unwrap();
        assert!(found.converged, "{found:?}");
        let (ok, bad) = (found.rate_per_s.unwrap(), found.fails_at.unwrap());
        assert!(bad <= ok * 1.5 && ok < bad, "{found:?}");
        assert!(found.probes.iter().any(|p| p.sustained && p.rate == ok));
        assert!(
            found.probes.iter().all(|p| p.sustained == (p.rate <= ok)),
            "{found:?}"
        );
    }
}
