//! The plays part of the dashboard: the feed of a plays run, turned into a snapshot
//! event and batched update events.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use super::{PUSH_EVERY, Sources, json_event};
use crate::plays::feed::{Consumption, PlaysFeed, PlaysUpdate, SeriesPoint, Snapshot};

pub(super) async fn state(sources: Arc<Sources>) -> Response {
    match &sources.plays {
        Some(feed) => Json(feed.snapshot()).into_response(),
        None => (StatusCode::NOT_FOUND, "no plays run on this dashboard").into_response(),
    }
}

/// The plays events of one page: a snapshot, then batched updates.
pub(super) fn stream(feed: Arc<PlaysFeed>) -> BoxStream<'static, Event> {
    let pusher = Pusher::new(feed);
    futures_util::stream::unfold(pusher, |mut p| async move {
        let event = match p.next().await? {
            Out::Snapshot(s) => json_event("plays_snapshot", &s),
            Out::Update(u) => json_event("plays_update", &u),
        };
        Some((event, p))
    })
    .boxed()
}

/// What a page is sent next.
enum Out {
    /// The whole state: first, and after the page fell behind.
    Snapshot(Snapshot),
    Update(Update),
}

/// Changes since the last event, merged.
#[derive(Debug, Default, Serialize)]
struct Update {
    counts: HashMap<String, u64>,
    consumption: Option<Consumption>,
    points: Vec<SeriesPoint>,
    publications: u64,
    finished: bool,
}

/// One page's stream: a snapshot, then batched updates.
struct Pusher {
    feed: Arc<PlaysFeed>,
    rx: broadcast::Receiver<PlaysUpdate>,
    first: Option<Snapshot>,
    pending: Update,
    changed: bool,
    publications: u64,
    last_push: Instant,
}

impl Pusher {
    fn new(feed: Arc<PlaysFeed>) -> Self {
        let (snapshot, rx) = feed.subscribe();
        Self {
            feed,
            rx,
            publications: snapshot.publications,
            first: Some(snapshot),
            pending: Update::default(),
            changed: false,
            last_push: Instant::now(),
        }
    }

    fn absorb(&mut self, update: PlaysUpdate) {
        self.changed = true;
        match update {
            PlaysUpdate::Published(p) => {
                self.publications += 1;
                for v in &p.videos {
                    self.pending.counts.insert(v.video_id.clone(), v.plays);
                }
            }
            PlaysUpdate::Consumption(c, point) => {
                self.pending.consumption = Some(c);
                self.pending.points.extend(point);
            }
            PlaysUpdate::Finished => self.pending.finished = true,
        }
    }

    /// The page fell behind the feed: it starts over from a fresh snapshot.
    fn resync(&mut self) -> Out {
        let (snapshot, rx) = self.feed.subscribe();
        self.rx = rx;
        self.pending = Update::default();
        self.changed = false;
        self.publications = snapshot.publications;
        Out::Snapshot(snapshot)
    }

    /// The next thing to send; None when the feed is gone.
    async fn next(&mut self) -> Option<Out> {
        if let Some(s) = self.first.take() {
            return Some(Out::Snapshot(s));
        }
        loop {
            match self.rx.recv().await {
                Ok(u) => self.absorb(u),
                Err(RecvError::Lagged(_)) => return Some(self.resync()),
                Err(RecvError::Closed) => return None,
            }
            tokio::time::sleep_until(self.last_push + PUSH_EVERY).await;
            loop {
                match self.rx.try_recv() {
                    Ok(u) => self.absorb(u),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                    Err(TryRecvError::Lagged(_)) => return Some(self.resync()),
                }
            }
            if self.changed {
                self.changed = false;
                self.last_push = Instant::now();
                let mut update = std::mem::take(&mut self.pending);
                update.publications = self.publications;
                return Some(Out::Update(update));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plays::rules::{Publication, VideoCount};

    fn publication(id: &str, plays: u64) -> Publication {
        Publication {
            videos: vec![VideoCount {
                video_id: id.into(),
                plays,
            }],
        }
    }

    #[tokio::test]
    async fn a_page_gets_the_snapshot_then_merged_updates() {
        let feed = PlaysFeed::new();
        feed.published(publication("a", 1));
        let mut p = Pusher::new(feed.clone());
        let Some(Out::Snapshot(s)) = p.next().await else {
            panic!("the snapshot comes first");
        };
        assert_eq!(s.counts["a"], 1);
        for plays in 2..=5 {
            feed.published(publication("a", plays));
        }
        feed.published(publication("b", 1));
        feed.finished();
        let Some(Out::Update(u)) = p.next().await else {
            panic!("an update");
        };
        assert_eq!(u.counts.len(), 2, "{u:?}");
        assert_eq!((u.counts["a"], u.counts["b"]), (5, 1));
        assert_eq!(u.publications, 6);
        assert!(u.finished);
    }

    #[tokio::test]
    async fn a_page_that_falls_behind_starts_over() {
        let feed = PlaysFeed::new();
        let mut p = Pusher::new(feed.clone());
        let _ = p.next().await;
        for plays in 1..=10_000 {
            feed.published(publication("a", plays));
        }
        let Some(Out::Snapshot(s)) = p.next().await else {
            panic!("a fresh snapshot");
        };
        assert_eq!(s.counts["a"], 10_000);
    }
}
