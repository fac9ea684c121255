//! What a running command tells an operator: with `--metrics HOST:PORT` it serves
//! its metrics in Prometheus's text format on `/metrics`, and on `/healthz` whether
//! the store and the broker it uses answer (200) or not (503, saying which).
//!
//! The code records through the `metrics` facade (`metrics::counter!` and kin, named
//! from [`names`]); [`Exporter::start`] installs the Prometheus recorder of
//! `metrics-exporter-prometheus` before a command builds anything, so that every
//! handle taken afterwards records. Without `--metrics` nothing is installed and a
//! recording does nothing. Counts a command keeps anyway for its summary are copied
//! into their metrics at each scrape by the collectors it registers
//! ([`Exporter::collect`]): the summary and the metrics are the same numbers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

/// The names of every metric, with the conventional suffixes: `_total` for
/// counters, `_seconds` for durations; gauges carry none.
pub mod names {
    /// WebSocket connections the game server upgraded, by `endpoint`.
    pub const CONNECTIONS: &str = "superhero_connections_total";
    /// WebSocket connections open now, by `endpoint`.
    pub const CONNECTIONS_OPEN: &str = "superhero_connections_open";
    /// TCP connections answered 503 at a connection cap.
    pub const CONNECTIONS_REFUSED: &str = "superhero_connections_refused_total";
    /// Requests answered, by `endpoint` and `status` (`ok`, or the error's code).
    pub const REQUESTS: &str = "superhero_requests_total";
    /// Games this server started.
    pub const GAMES_STARTED: &str = "superhero_games_started_total";
    /// Games this server ended, by `outcome` (`last_standing`, `turn_cap`,
    /// `timed_out`).
    pub const GAMES_ENDED: &str = "superhero_games_ended_total";
    /// Players in a lobby session of this server now: in a game it serves.
    pub const PLAYERS_IN_PLAY: &str = "superhero_players_in_play";
    /// 1 while the server drains before it stops (new games refused).
    pub const DRAINING: &str = "superhero_server_draining";
    /// Event envelopes the broker accepted, by `queue`.
    pub const EVENTS_PUBLISHED: &str = "superhero_events_published_total";
    /// Event envelopes lost, by `queue`: the buffer was full, or the broker stayed
    /// down at shutdown.
    pub const EVENTS_DROPPED: &str = "superhero_events_dropped_total";
    /// Messages the ETL workers received, redeliveries included.
    pub const WORKER_DELIVERIES: &str = "superhero_worker_deliveries_total";
    /// Deliveries settled with nothing to write, by `reason` (`ignored`: another
    /// record or a guest's; `skipped`: a game with no tables; `rejected`: not an
    /// event, or a game that cannot become rows).
    pub const WORKER_SETTLED_EMPTY: &str = "superhero_worker_settled_without_write_total";
    /// Games whose tables were written.
    pub const GAMES_WRITTEN: &str = "superhero_games_written_total";
    /// Parquet files written.
    pub const WRITES: &str = "superhero_worker_writes_total";
    /// Writes and store reads that failed and were retried.
    pub const RETRIES: &str = "superhero_worker_retries_total";
    /// Events a broker lost on the workers' side (see the worker's `lost`).
    pub const WORKER_LOST: &str = "superhero_worker_lost_total";
    /// Time to encode and write durably the tables of one game, or of one batch of
    /// games in batch mode (a successful write; failed ones count as retries).
    pub const WRITE_SECONDS: &str = "superhero_write_duration_seconds";
    /// Messages waiting for the workers' group, as the broker tells it, by `queue`.
    pub const CONSUMER_LAG: &str = "superhero_consumer_lag";
    /// Games the bots of this process completed.
    pub const BOT_GAMES: &str = "superhero_bot_games_completed_total";
    /// Bot errors (a failed connection or request, a game that did not end).
    pub const BOT_ERRORS: &str = "superhero_bot_errors_total";
    /// Messages the fan-out handed on, and lost.
    pub const FANOUT_FORWARDED: &str = "superhero_fanout_forwarded_total";
    pub const FANOUT_LOST: &str = "superhero_fanout_lost_total";
    /// Play messages the producers published.
    pub const PLAYS_PRODUCED: &str = "superhero_plays_produced_total";
    /// Play messages the processor counted.
    pub const PLAYS_CONSUMED: &str = "superhero_plays_consumed_total";
    /// Dashboard pages connected now (their event streams).
    pub const DASHBOARD_CLIENTS: &str = "superhero_dashboard_clients";
}

/// Histogram buckets of durations in seconds: 1 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The longest a scrape waits for one collector, and a health check for one answer.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);

/// The endpoints' connections: a few scrapers and probes at once.
const LIMITS: crate::net::ConnectionLimits = crate::net::ConnectionLimits {
    max_connections: 64,
    max_per_peer: 0,
    header_timeout: Duration::from_secs(10),
};

/// How often the recorder's histograms are folded up between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

type Collect = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;
type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The process's Prometheus recorder, installed at most once.
fn recorder() -> Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut handle = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = handle.as_ref() {
        return Ok(h.clone());
    }
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| anyhow!("cannot install the metrics recorder: {e}"))?;
    describe();
    *handle = Some(installed.clone());
    Ok(installed)
}

/// The HELP line of every metric.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(CONNECTIONS, "WebSocket connections upgraded, by endpoint");
    describe_gauge!(CONNECTIONS_OPEN, "WebSocket connections open, by endpoint");
    describe_counter!(CONNECTIONS_REFUSED, "TCP connections answered 503 at a cap");
    describe_counter!(REQUESTS, "Requests answered, by endpoint and status");
    describe_counter!(GAMES_STARTED, "Games started by this server");
    describe_counter!(GAMES_ENDED, "Games ended by this server, by outcome");
    describe_gauge!(PLAYERS_IN_PLAY, "Players in a game this server serves");
    describe_gauge!(DRAINING, "1 while the server drains before it stops");
    describe_counter!(
        EVENTS_PUBLISHED,
        "Event envelopes the broker accepted, by queue"
    );
    describe_counter!(EVENTS_DROPPED, "Event envelopes lost, by queue");
    describe_counter!(WORKER_DELIVERIES, "Messages the ETL workers received");
    describe_counter!(
        WORKER_SETTLED_EMPTY,
        "Deliveries settled without a write, by reason"
    );
    describe_counter!(GAMES_WRITTEN, "Games whose tables were written");
    describe_counter!(WRITES, "Parquet files written");
    describe_counter!(RETRIES, "Writes and store reads retried");
    describe_counter!(WORKER_LOST, "Events the broker lost on the workers' side");
    describe_histogram!(
        WRITE_SECONDS,
        metrics::Unit::Seconds,
        "Time to encode and write durably the tables of a game or a batch"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Messages waiting for the workers' group, by queue"
    );
    describe_counter!(BOT_GAMES, "Games the bots of this process completed");
    describe_counter!(BOT_ERRORS, "Bot errors");
    describe_counter!(FANOUT_FORWARDED, "Messages the fan-out handed on");
    describe_counter!(FANOUT_LOST, "Messages the fan-out lost");
    describe_counter!(PLAYS_PRODUCED, "Play messages published");
    describe_counter!(PLAYS_CONSUMED, "Play messages counted");
    describe_gauge!(DASHBOARD_CLIENTS, "Dashboard pages connected");
}

/// What the endpoints share.
#[derive(Default)]
struct Parts {
    collectors: Mutex<Vec<Collect>>,
    checks: Mutex<Vec<(&'static str, Check)>>,
}

/// `/metrics` and `/healthz` served on one address while it lives.
pub struct Exporter {
    addr: SocketAddr,
    parts: Arc<Parts>,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Installs the recorder and serves the endpoints on `addr` (port 0: any free
    /// port, see [`Self::addr`]).
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let handle = recorder()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let addr = listener.local_addr()?;
        let parts = Arc::new(Parts::default());
        let app = Router::new()
            .route("/metrics", get(scrape))
            .route("/healthz", get(health))
            .with_state((handle.clone(), parts.clone()));
        let task = tokio::spawn(async move {
            let upkeep = async {
                loop {
                    tokio::time::sleep(UPKEEP).await;
                    handle.run_upkeep();
                }
            };
            // Within caps of its own, as every server of the crate: a scraper that
            // never sends its request holds no slot for long.
            let stats = Arc::new(crate::net::ConnectionStats::default());
            let serving = crate::net::serve(listener, app, LIMITS, stats, std::future::pending());
            tokio::select! {
                served = serving => if let Err(e) = served {
                    tracing::error!("the metrics endpoint stopped: {e}");
                },
                () = upkeep => {}
            }
        });
        Ok(Self { addr, parts, task })
    }

    /// Where the endpoints listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `collect` at each scrape, before the metrics are rendered (within
    /// [`PROBE_WAIT`]; one that takes longer leaves its metrics as they were).
    pub fn collect<F, Fut>(&self, collect: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let collect: Collect = Arc::new(move || Box::pin(collect()));
        lock(&self.parts.collectors).push(collect);
    }

    /// Adds `what` (`store`, `broker`) to what `/healthz` asks: healthy while
    /// `check` answers `Ok` within [`PROBE_WAIT`].
    pub fn check<F, Fut>(&self, what: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        lock(&self.parts.checks).push((what, check));
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Shared = (PrometheusHandle, Arc<Parts>);

async fn scrape(State((handle, parts)): State<Shared>) -> impl IntoResponse {
    let collectors = lock(&parts.collectors).clone();
    futures_util::future::join_all(
        collectors
            .iter()
            .map(|c| tokio::time::timeout(PROBE_WAIT, c())),
    )
    .await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

async fn health(State((_, parts)): State<Shared>) -> impl IntoResponse {
    let checks = lock(&parts.checks).clone();
    let answers = futures_util::future::join_all(checks.iter().map(|(what, check)| async move {
        let answer = match tokio::time::timeout(PROBE_WAIT, check()).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {PROBE_WAIT:?}")),
        };
        (*what, answer)
    }))
    .await;
    let healthy = answers.iter().all(|(_, a)| a.is_ok());
    let mut body = String::new();
    for (what, answer) in &answers {
        match answer {
            Ok(()) => body.push_str(&format!("{what}: ok\n")),
            Err(e) => body.push_str(&format!("{what}: {e}\n")),
        }
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Collectors run at each scrape; `/healthz` is 503 while one check fails, and
    /// says which.
    #[tokio::test]
    async fn scrapes_collect_and_health_names_what_fails() {
        let exporter = Exporter::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = scrapes.clone();
        exporter.collect(move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            metrics::counter!("superhero_test_scrapes_total").absolute(n);
            std::future::ready(())
        });
        let first = get(exporter.addr(), "/metrics").await;
        assert!(first.starts_with("HTTP/1.0 200"), "{first}");
        assert!(first.contains("superhero_test_scrapes_total 1"), "{first}");
        let second = get(exporter.addr(), "/metrics").await;
        assert!(
            second.contains("superhero_test_scrapes_total 2"),
            "{second}"
        );

        let healthy = get(exporter.addr(), "/healthz").await;
        assert!(healthy.starts_with("HTTP/1.0 200"), "{healthy}");
        exporter.check("store", || async { Ok(()) });
        exporter.check("broker", || async { Err("connection refused".to_string()) });
        let sick = get(exporter.addr(), "/healthz").await;
        assert!(sick.starts_with("HTTP/1.0 503"), "{sick}");
        assert!(sick.contains("store: ok"), "{sick}");
        assert!(sick.contains("broker: connection refused"), "{sick}");
    }
}
