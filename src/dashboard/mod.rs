//! The live dashboard: one page served by the binary, updated by Server-Sent Events.
//!
//! `GET /` is the page (HTML, styles and script inline: nothing is fetched from
//! elsewhere, so it works offline). `GET /events` is the event stream: a `snapshot`
//! event with the whole state when the page connects, then at most one `update`
//! event every [`PUSH_EVERY`] with what changed since the last (counts merged per
//! video), so a run of millions of messages or thousands of games a second costs
//! the page a few updates a second. `GET /api/plays` is the plays state as JSON.
//! Everything is read-only: no route changes anything.

mod plays;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::plays::feed::PlaysFeed;

/// How often the page hears of changes at most.
pub const PUSH_EVERY: Duration = Duration::from_millis(250);

const PAGE: &str = include_str!("page.html");

/// What the dashboard shows; a part left out is not shown.
#[derive(Clone, Default)]
pub struct Sources {
    pub plays: Option<Arc<PlaysFeed>>,
}

/// A dashboard bound to its address, ready to serve.
pub struct Dashboard {
    listener: TcpListener,
    sources: Sources,
}

impl Dashboard {
    /// Binds `host:port` (port 0: any free port).
    pub async fn bind(host: &str, port: u16, sources: Sources) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port)).await?;
        Ok(Self { listener, sources })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The page's address, for people.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("http://{}/", self.local_addr()?))
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.sources))
            .with_graceful_shutdown(shutdown)
            .await
    }
}

fn router(sources: Sources) -> Router {
    let sources = Arc::new(sources);
    let events = sources.clone();
    let api = sources.clone();
    Router::new()
        .route("/", get(page))
        .route("/events", get(move || plays::events(events.clone())))
        .route("/api/plays", get(move || plays::state(api.clone())))
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
