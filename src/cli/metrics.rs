//! `--metrics HOST:PORT` (`server`, `worker`, `fanout`, `simulate`, `plays`,
//! `dashboard`): the [`Exporter`] of a command, and what each command tells it:
//! the store and broker `/healthz` asks, and the counts copied into the metrics at
//! each scrape.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use crate::broker::{Broker, stats_within};
use crate::events::Queue;
use crate::store::GameStore;
use crate::telemetry::{Exporter, PROBE_WAIT, names};
use crate::worker::EtlProgress;

#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://HOST:PORT/metrics, and on /healthz a
    /// health check (200 while the store and the broker answer, else 503).
    #[arg(long, env = "METRICS_ADDRESS", value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

impl MetricsArgs {
    /// Starts the endpoints when asked for, saying where on stderr.
    pub async fn start(&self) -> Result<Metrics> {
        let Some(address) = &self.metrics else {
            return Ok(Metrics(None));
        };
        let addr = tokio::net::lookup_host(address)
            .await
            .with_context(|| format!("--metrics {address}: not a HOST:PORT"))?
            .next()
            .ok_or_else(|| anyhow!("--metrics {address}: the host has no address"))?;
        let exporter = Exporter::start(addr).await?;
        eprintln!(
            "metrics: http://{0}/metrics, health: http://{0}/healthz",
            exporter.addr()
        );
        Ok(Metrics(Some(exporter)))
    }
}

/// A command's exporter, if it has one; each call does nothing without.
pub struct Metrics(Option<Exporter>);

impl Metrics {
    /// Whether `--metrics` was given.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// `/healthz` asks the store for a PING.
    pub fn store<S: GameStore>(&self, store: &S) {
        if let Some(e) = &self.0 {
            let store = store.clone();
            e.check("store", move || {
                let store = store.clone();
                async move { store.ping().await.map_err(|e| e.to_string()) }
            });
        }
    }

    /// `/healthz` asks `broker` for a ping, as `what` (`broker`; a fan-out's
    /// `source` and `target`).
    pub fn broker(&self, what: &'static str, broker: &Arc<dyn Broker>) {
        if let Some(e) = &self.0 {
            let broker = broker.clone();
            e.check(what, move || {
                let broker = broker.clone();
                async move { broker.ping().await.map_err(|e| e.to_string()) }
            });
        }
    }

    /// The event transport's counts of this process, by queue.
    pub fn events(&self) {
        if let Some(e) = &self.0 {
            e.collect(|| async {
                let stats = super::events_sink().stats();
                for queue in Queue::ALL {
                    let i = queue.index();
                    let name = queue.name();
                    metrics::counter!(names::EVENTS_PUBLISHED, "queue" => name)
                        .absolute(stats.published_by_queue[i]);
                    metrics::counter!(names::EVENTS_DROPPED, "queue" => name)
                        .absolute(stats.dropped_by_queue[i]);
                }
            });
        }
    }

    /// The workers' counts (the summary's), and the lag of their group on `topic`
    /// where the broker tells it.
    pub fn workers(
        &self,
        progress: &Arc<EtlProgress>,
        broker: &Arc<dyn Broker>,
        topic: &str,
        group: &str,
    ) {
        let Some(e) = &self.0 else {
            return;
        };
        let progress = progress.clone();
        e.collect(move || {
            let c = progress.counts();
            metrics::counter!(names::WORKER_DELIVERIES).absolute(c.events);
            metrics::counter!(names::GAMES_WRITTEN).absolute(c.games_written);
            metrics::counter!(names::WRITES).absolute(c.files_written);
            metrics::counter!(names::RETRIES).absolute(c.retries);
            metrics::counter!(names::WORKER_LOST).absolute(c.lost);
            for (reason, n) in [
                ("ignored", c.ignored),
                ("skipped", c.games_skipped),
                ("rejected", c.rejected),
            ] {
                metrics::counter!(names::WORKER_SETTLED_EMPTY, "reason" => reason).absolute(n);
            }
            std::future::ready(())
        });
        let Some(figure) = broker.lag_figure() else {
            return;
        };
        let (broker, topic, group) = (broker.clone(), topic.to_string(), group.to_string());
        e.collect(move || {
            let (broker, topic, group) = (broker.clone(), topic.clone(), group.clone());
            async move {
                // A broker that does not answer leaves the last reading.
                let Ok(stats) = stats_within(&*broker, &topic, &group, PROBE_WAIT).await else {
                    return;
                };
                if let Some(lag) = stats.iter().find(|s| s.name == figure) {
                    metrics::gauge!(names::CONSUMER_LAG, "queue" => topic).set(lag.value as f64);
                }
            }
        });
    }

    /// A fan-out's counts: messages forwarded, and lost.
    pub fn fanout(&self, counts: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
        if let Some(e) = &self.0 {
            e.collect(move || {
                let (forwarded, lost) = counts();
                metrics::counter!(names::FANOUT_FORWARDED).absolute(forwarded);
                metrics::counter!(names::FANOUT_LOST).absolute(lost);
                std::future::ready(())
            });
        }
    }
}
