//! The live dashboard: one page served by the binary, updated by Server-Sent Events.
//!
//! `GET /` is the page (HTML, styles and script inline: nothing is fetched from
//! elsewhere, so it works offline). `GET /events` is the event stream. For a plays
//! run: a `plays_snapshot` event with the whole state when the page connects, then
//! at most one `plays_update` event every [`PUSH_EVERY`] with what changed since the
//! last (counts merged per video). For a game pipeline: a `pipeline_snapshot`, then
//! one `pipeline_sample` every [`pipeline::SAMPLE_EVERY`]. So a run of millions of
//! messages or thousands of games a second costs the page a few events a second.
//! `GET /api/plays` and `GET /api/pipeline` are the same states as JSON. Everything
//! is read-only: no route changes anything.

pub mod pipeline;
mod plays;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use self::pipeline::PipelineFeed;
use crate::net::{ConnectionLimits, ConnectionStats};
use crate::plays::feed::PlaysFeed;

/// How often the page hears of changes at most.
pub const PUSH_EVERY: Duration = Duration::from_millis(250);

const PAGE: &str = include_str!("page.html");

/// What the dashboard shows; a part left out is not shown.
#[derive(Clone, Default)]
pub struct Sources {
    pub plays: Option<Arc<PlaysFeed>>,
    pub pipeline: Option<Arc<PipelineFeed>>,
}

/// A dashboard bound to its address, ready to serve.
pub struct Dashboard {
    listener: TcpListener,
    sources: Sources,
}

impl Dashboard {
    /// Binds `host:port` (port 0: any free port).
    pub async fn bind(host: &str, port: u16, sources: Sources) -> std::io::Result<Self> {
        let listener = crate::net::bind((host, port)).await?;
        Ok(Self { listener, sources })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The page's address, for people.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("http://{}/", self.local_addr()?))
    }

    /// Serves within `limits` until `shutdown` completes.
    pub async fn serve(
        self,
        limits: ConnectionLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stats = Arc::new(ConnectionStats::default());
        crate::net::serve(self.listener, router(self.sources), limits, stats, shutdown).await
    }
}

fn router(sources: Sources) -> Router {
    let sources = Arc::new(sources);
    let events = sources.clone();
    let api = sources.clone();
    let pipeline = sources.clone();
    Router::new()
        .route("/", get(page))
        .route("/events", get(move || events_of(events.clone())))
        .route("/api/plays", get(move || plays::state(api.clone())))
        .route(
            "/api/pipeline",
            get(move || async move {
                match &pipeline.pipeline {
                    Some(feed) => Json(feed.snapshot()).into_response(),
                    None => (StatusCode::NOT_FOUND, "no game pipeline on this dashboard")
                        .into_response(),
                }
            }),
        )
}

/// Every part's events, merged into one stream.
async fn events_of(sources: Arc<Sources>) -> Response {
    let mut streams: Vec<BoxStream<'static, Event>> = Vec::new();
    if let Some(feed) = &sources.plays {
        streams.push(plays::stream(feed.clone()));
    }
    if let Some(feed) = &sources.pipeline {
        streams.push(pipeline_stream(feed.clone()));
    }
    if streams.is_empty() {
        return (StatusCode::NOT_FOUND, "nothing to show on this dashboard").into_response();
    }
    // Counted open while the page's stream lives.
    let open = metrics::gauge!(crate::telemetry::names::DASHBOARD_CLIENTS);
    open.increment(1.0);
    let client = OpenClient(open);
    let merged = futures_util::stream::select_all(streams).map(move |event| {
        let _ = &client;
        Ok::<_, Infallible>(event)
    });
    Sse::new(merged)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A page connected to the event stream, counted while it is.
struct OpenClient(metrics::Gauge);

impl Drop for OpenClient {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The pipeline events of one page: a snapshot, then every sample; a page that fell
/// behind starts over from a fresh snapshot.
fn pipeline_stream(feed: Arc<PipelineFeed>) -> BoxStream<'static, Event> {
    let (snapshot, rx) = feed.subscribe();
    let first = json_event("pipeline_snapshot", &snapshot);
    let rest = futures_util::stream::unfold((feed, rx), |(feed, mut rx)| async move {
        let event = match rx.recv().await {
            Ok(sample) => json_event("pipeline_sample", &*sample),
            Err(RecvError::Lagged(_)) => {
                let (snapshot, fresh) = feed.subscribe();
                rx = fresh;
                json_event("pipeline_snapshot", &snapshot)
            }
            Err(RecvError::Closed) => return None,
        };
        Some((event, (feed, rx)))
    });
    futures_util::stream::once(async move { first })
        .chain(rest)
        .boxed()
}

pub(crate) fn json_event<T: Serialize>(name: &str, data: &T) -> Event {
    // Plain maps of strings and numbers always serialize.
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page needs nothing from anywhere else; say so to the browser.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:",
            ),
        ],
        Html(PAGE),
    )
}
